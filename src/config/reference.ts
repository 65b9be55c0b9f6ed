/**
 * Renders docs/config-reference.md from the schema itself, so the reference cannot drift from the code: a test
 * renders it again and fails when the checked-in file differs.
 */
import { z } from 'zod';
import { configSchema } from './schema.js';

interface Node {
  type?: string | string[];
  title?: string;
  description?: string;
  default?: unknown;
  properties?: Record<string, Node>;
  /** A map of named entries (`ldap.queries.<name>`): the schema of each. */
  additionalProperties?: Node | boolean;
  items?: Node;
  anyOf?: Node[];
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  maxItems?: number;
  pattern?: string;
}

function typeOf(node: Node): string {
  if (node.title === 'map') return 'map';
  if (node.enum) return node.enum.map((v) => `\`${String(v)}\``).join(' | ');
  if (node.anyOf) return node.anyOf.map(typeOf).join(' or ');
  if (node.type === 'array') return `list of ${node.items ? typeOf(node.items) : 'values'}`;
  if (node.type === 'integer') return 'integer';
  return Array.isArray(node.type) ? node.type.join(' or ') : (node.type ?? 'value');
}

function bounds(node: Node): string {
  const parts: string[] = [];
  if (node.minimum !== undefined && node.maximum !== undefined)
    parts.push(`${node.minimum} – ${node.maximum}`);
  else if (node.minimum !== undefined) parts.push(`≥ ${node.minimum}`);
  else if (node.maximum !== undefined) parts.push(`≤ ${node.maximum}`);
  if (node.maxLength !== undefined) parts.push(`≤ ${node.maxLength} chars`);
  if (node.maxItems !== undefined) parts.push(`≤ ${node.maxItems} items`);
  return parts.join(', ');
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function render(node: Node, path: string, out: string[], depth: number): void {
  const leaves: [string, Node][] = [];
  const groups: [string, Node][] = [];
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    (child.properties ? groups : leaves).push([key, child]);
  }
  if (path) {
    out.push(`${'#'.repeat(Math.min(depth + 1, 6))} \`${path}\``, '');
    if (node.description) out.push(node.description, '');
  }
  if (leaves.length > 0) {
    out.push('| key | type | default | bounds | meaning |', '|---|---|---|---|---|');
    for (const [key, child] of leaves) {
      const full = path ? `${path}.${key}` : key;
      const def = child.default === undefined ? '' : `\`${JSON.stringify(child.default)}\``;
      out.push(
        `| \`${full}\` | ${cell(typeOf(child))} | ${cell(def)} | ${cell(bounds(child))} | ${cell(child.description ?? '')} |`,
      );
    }
    out.push('');
  }
  for (const [key, child] of groups) render(child, path ? `${path}.${key}` : key, out, depth + 1);
  for (const [key, child] of leaves) {
    const entry = child.additionalProperties;
    if (typeof entry === 'object' && entry.properties) {
      render(entry, `${path ? `${path}.${key}` : key}.<name>`, out, depth + 1);
    }
  }
}

export function renderConfigReference(): string {
  const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Node;
  const out = [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/schema.ts by `npm run docs:reference`; do not edit by hand. -->',
    '',
    'The file is YAML: `--config FILE`, else `/etc/postwarden/postwarden.yml`, else the embedded default',
    '(loopback faces, `local_domains: [localhost]`). Every key has a default; unknown keys are errors;',
    '`postwarden check-config` reports every problem at once as `key: value — problem; fix` and exits 78.',
    '',
    'A **map** value is either one `type:name` spec (`file:/etc/postwarden/block`, `cidr:…`, `regexp:…`,',
    '`inline:{ a, b }`) or a list whose items are entries (IPs, CIDRs, addresses, domains) or specs; see',
    '[maps](admin-guide.md#lookup-tables-maps).',
    '',
  ];
  render(schema, '', out, 1);
  return `${out.join('\n').trimEnd()}\n`;
}
