/**
 * Loading config: find the file (`--config`, else /etc/postwarden/postwarden.yml, else the embedded default),
 * parse YAML, validate against the schema, apply defaults, freeze. Every problem is returned at once; the
 * caller decides (serve exits 78, check-config prints them and exits 78).
 */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { type ConfigProblem, problemsFromZod } from './problems.js';
import type { MapRef } from '../core/schema.js';
import { type Config, configSchema } from './schema.js';

export const SYSTEM_CONFIG_PATH = '/etc/postwarden/postwarden.yml';

/** What runs when there is no config file: loopback faces, a harmless local domain, state under ./var. */
export const EMBEDDED_DEFAULT: Readonly<Record<string, unknown>> = Object.freeze({
  local_domains: ['localhost'],
  store: { driver: 'sqlite', path: './var/state.db' },
  filter: { enabled: true, spool_dir: './var/spool', quarantine: { dir: './var/quarantine' } },
});

export type ConfigSource = { kind: 'file'; path: string } | { kind: 'embedded' };

/** `input` is the parsed document before validation (undefined when the file could not be read or parsed). */
export type LoadResult =
  | { ok: true; config: Readonly<Config>; source: ConfigSource; input: unknown }
  | { ok: false; problems: ConfigProblem[]; source: ConfigSource; input: unknown };

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

function isMapRef(value: unknown): value is MapRef {
  return (
    typeof value === 'string' || (Array.isArray(value) && value.every((item) => typeof item === 'string'))
  );
}

type JsonSchema = { title?: string; properties?: Record<string, JsonSchema> };
let jsonSchema: JsonSchema | undefined;

/** The keys the schema knows at a dotted object path, for "unknown key" fixes. */
export function knownKeys(path: string): string[] {
  jsonSchema ??= z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  let node: JsonSchema | undefined = jsonSchema;
  for (const step of path === '(root)' ? [] : path.split('.')) node = node?.properties?.[step];
  return Object.keys(node?.properties ?? {});
}

/** Validates an already-parsed document. */
export function validateConfig(input: unknown, source: ConfigSource): LoadResult {
  const parsed = configSchema.safeParse(input ?? {});
  if (!parsed.success) {
    return { ok: false, problems: problemsFromZod(parsed.error, input, knownKeys), source, input };
  }
  const config = parsed.data;
  if (config.hostname === '') config.hostname = os.hostname();
  return { ok: true, config: deepFreeze(config), source, input };
}

export function parseConfigText(text: string, source: ConfigSource): LoadResult {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => ({
      key: '(file)',
      value: e.linePos ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '(unknown position)',
      problem: `YAML syntax: ${e.message.split('\n')[0] ?? e.code}`,
      fix: 'correct the YAML at that position',
    }));
    return { ok: false, problems, source, input: undefined };
  }
  let input: unknown;
  try {
    input = doc.toJS();
  } catch (error) {
    // yaml refuses here, not while parsing, a document whose aliases expand past its limit ("billion laughs").
    const problem = {
      key: '(file)',
      value: '(document)',
      problem: `YAML: ${(error as Error).message}`,
      fix: 'write the values out instead of repeating aliases of aliases',
    };
    return { ok: false, problems: [problem], source, input: undefined };
  }
  return validateConfig(input, source);
}

export function loadConfig(explicitPath?: string): LoadResult {
  const path = explicitPath ?? (existsSync(SYSTEM_CONFIG_PATH) ? SYSTEM_CONFIG_PATH : undefined);
  if (path === undefined) return validateConfig(EMBEDDED_DEFAULT, { kind: 'embedded' });
  const source: ConfigSource = { kind: 'file', path };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    return {
      ok: false,
      problems: [
        {
          key: '(file)',
          value: path,
          problem: `cannot read (${reason})`,
          fix: 'check the path and its permissions',
        },
      ],
      source,
      input: undefined,
    };
  }
  return parseConfigText(text, source);
}

/**
 * Every map reference in a config (validated, or raw input: values that are not strings or string lists are
 * skipped there), with its dotted key. The schema marks map fields with the title `map`.
 */
export function mapRefsOf(config: unknown): { key: string; ref: MapRef }[] {
  jsonSchema ??= z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const found: { key: string; ref: MapRef }[] = [];
  const walk = (node: JsonSchema | undefined, value: unknown, path: string) => {
    if (!node || value === null || typeof value !== 'object') return;
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      const childValue = (value as Record<string, unknown>)[key];
      const childPath = path ? `${path}.${key}` : key;
      if (child.title !== 'map') walk(child, childValue, childPath);
      else if (isMapRef(childValue)) found.push({ key: childPath, ref: childValue });
    }
  };
  walk(jsonSchema as JsonSchema, config, '');
  return found;
}
