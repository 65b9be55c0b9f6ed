/**
 * `postwarden reference config|metrics|events|openapi|rules [--out FILE]` — prints (or writes) a reference
 * document generated from the code: the config schema, the metric table, the event codes, the admin API's OpenAPI
 * document, the built-in content rules. `npm run docs:reference` writes them all
 * into docs/, and a test fails when a checked-in copy is stale.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { renderConfigReference } from '../config/reference.js';
import { renderOpenApi } from '../http/openapi.js';
import { renderRulesReference } from '../core/scanners/rules/reference.js';
import { MAP_EVENT_CODES } from '../maps/index.js';
import { STORE_EVENT_CODES } from '../store/index.js';
import { EVENT_CODES, type EventCode } from '../observe/codes.js';
import { renderEventsReference, renderMetricsReference } from '../observe/reference.js';
import { EXIT } from '../util/sysexits.js';
import { parse, UsageError } from './args.js';

export function allEventCodes(): EventCode[] {
  const layerCodes = [...Object.entries(MAP_EVENT_CODES), ...Object.entries(STORE_EVENT_CODES)].map(
    ([code, doc]) => ({ code, ...doc }),
  );
  return [...EVENT_CODES, ...layerCodes];
}

export const REFERENCES: Record<string, { file: string; render: () => string | Promise<string> }> = {
  config: { file: 'docs/config-reference.md', render: renderConfigReference },
  metrics: { file: 'docs/metrics.md', render: renderMetricsReference },
  events: { file: 'docs/events.md', render: () => renderEventsReference(allEventCodes()) },
  openapi: { file: 'docs/openapi.json', render: renderOpenApi },
  rules: { file: 'docs/rules.md', render: renderRulesReference },
};

export async function reference(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { out: { type: 'string' }, root: { type: 'string' } }, true);
  const which = positionals[0];
  if (which === 'all' && positionals.length === 1) {
    // Writes every reference to its place under --root (the repository), as `npm run docs:reference` does.
    const root = values.root ?? '.';
    for (const doc of Object.values(REFERENCES)) writeFileSync(path.join(root, doc.file), await doc.render());
    return EXIT.OK;
  }
  const doc = which === undefined ? undefined : REFERENCES[which];
  if (!doc || positionals.length > 1) {
    throw new UsageError(`name one of: ${Object.keys(REFERENCES).join(', ')}, all`);
  }
  const text = await doc.render();
  if (values.out) writeFileSync(values.out, text);
  else process.stdout.write(text);
  return EXIT.OK;
}
