/** Renders docs/metrics.md and docs/events.md from the tables in code (a test fails when they are stale). */
import type { EventCode } from './codes.js';
import { METRIC_DEFINITIONS } from './metrics.js';

export function renderMetricsReference(): string {
  const out = [
    '# Metrics reference',
    '',
    '<!-- Generated from src/observe/metrics.ts by `npm run docs:reference`; do not edit by hand. -->',
    '',
    'Served at `http://127.0.0.1:10063/metrics` (Prometheus text format). Process metrics from prom-client',
    '(`postwarden_process_*`, `postwarden_nodejs_*`) are exported too and are not listed here.',
    '',
    '| metric | type | labels | meaning |',
    '|---|---|---|---|',
  ];
  for (const def of METRIC_DEFINITIONS) {
    const labels = def.labels.length > 0 ? def.labels.map((l) => `\`${l}\``).join(', ') : '—';
    out.push(`| \`${def.name}\` | ${def.type} | ${labels} | ${def.help} |`);
  }
  return `${out.join('\n')}\n`;
}

export function renderEventsReference(codes: readonly EventCode[]): string {
  const out = [
    '# Event and error codes',
    '',
    '<!-- Generated from src/observe/codes.ts, src/maps and src/store by `npm run docs:reference`; do not edit by hand. -->',
    '',
    'Every log line that reports trouble carries a `code`. Counted in `postwarden_errors_total{code}`.',
    '',
    '| code | level | what happened | what to do |',
    '|---|---|---|---|',
  ];
  for (const c of [...codes].sort((a, b) => a.code.localeCompare(b.code))) {
    out.push(
      `| \`${c.code}\` | ${c.level} | ${c.summary.replace(/\|/g, '\\|')} | ${c.fix.replace(/\|/g, '\\|')} |`,
    );
  }
  return `${out.join('\n')}\n`;
}
