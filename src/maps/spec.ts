/**
 * Map specs in Postfix's `type:name` form — `inline:{ a, b value }`, `file:/path`, `cidr:/path`,
 * `regexp:/path`, `ldap:NAME` (a query of the config's `ldap.queries`) — and the entry syntax shared by
 * `inline:` and config lists.
 *
 * Contract: `parseSpec` returns the parsed spec or throws `MapSpecError` (a configuration error, code PW-M020,
 * whose message reads `problem; fix`); `validateSpec` returns that text instead of throwing. Parsing does no
 * I/O: whether a file exists or parses is a load outcome, not a spec problem. The `validate*` functions serve
 * `check-config`, which reports every problem as `key: value — problem; fix`.
 */
import path from 'node:path';
import { parseCidr, parseIp } from '../util/ip.js';
import { parseKey } from './matcher.js';

export const MAP_TYPES = ['inline', 'file', 'cidr', 'regexp', 'ldap'] as const;
export type MapType = (typeof MAP_TYPES)[number];

export type MapSpec =
  | { readonly type: 'inline'; readonly name: string; readonly entries: readonly string[] }
  | { readonly type: 'file' | 'cidr' | 'regexp'; readonly name: string; readonly path: string }
  | { readonly type: 'ldap'; readonly name: string; readonly query: string };

/** The name of an `ldap.queries` entry, as `ldap:NAME` refers to it. */
export const LDAP_QUERY_NAME = /^[A-Za-z0-9_-]{1,64}$/;

export class MapSpecError extends Error {
  readonly code = 'PW-M020';
  constructor(
    readonly spec: string,
    readonly problem: string,
  ) {
    super(problem);
    this.name = 'MapSpecError';
  }
}

const TYPE_PREFIX = /^([A-Za-z][A-Za-z0-9_-]*):/;
const COMPILED_TYPES = new Set(['hash', 'btree', 'lmdb', 'cdb', 'dbm', 'sdbm', 'texthash']);
const USE_ONE_OF = `use one of ${MAP_TYPES.map((t) => `${t}:`).join(', ')}`;

function unknownType(type: string): string {
  const lower = type.toLowerCase();
  if (COMPILED_TYPES.has(lower)) {
    return `map type '${type}' needs postmap, which postwarden does not use; name the source text file with file: instead`;
  }
  if (lower === 'pcre') return `unknown map type 'pcre'; use regexp: (same /pattern/flags syntax)`;
  return `unknown map type '${type}'; ${USE_ONE_OF}`;
}

/**
 * Whether a config list item is a `type:name` spec rather than an entry. IPv6 entries contain colons too, so
 * anything that parses as an address or network is an entry.
 */
export function isSpec(item: string): boolean {
  return TYPE_PREFIX.test(item) && !parseIp(item) && !parseCidr(item);
}

/**
 * Splits `inline:` braces content into entries at top-level commas. A nested `{ … }` is one entry taken as
 * written, so a value may contain commas (Postfix's inline: convention).
 */
function splitInline(body: string): string[] | string {
  const items: string[] = [];
  let depth = 0;
  let current = '';
  for (const char of body) {
    if (char === '{') depth++;
    if (char === '}' && --depth < 0) {
      return 'unbalanced } in inline: entries; remove it or enclose the entry in { }';
    }
    if (char === ',' && depth === 0) {
      items.push(current);
      current = '';
    } else {
      current += char;
    }
  }
  if (depth !== 0) return 'unbalanced { in inline: entries; close it with }';
  items.push(current);
  return items
    .map((item) => item.trim())
    .map((item) => (item.startsWith('{') && item.endsWith('}') ? item.slice(1, -1).trim() : item))
    .filter((item) => item !== '');
}

/**
 * Splits an inline or config-list entry into key and value: `key=value`, `key = value` or `key value`. A key
 * holding `=` (an SRS address) therefore needs a value after whitespace: `SRS0=…@example.com OK`.
 */
export function splitInlineEntry(text: string): { key: string; value: string } {
  const trimmed = text.trim();
  const assigned = /^([^\s=]+)\s*=\s*(.*)$/s.exec(trimmed);
  if (assigned) {
    return { key: assigned[1] ?? '', value: (assigned[2] ?? '').trim() };
  }
  return splitEntryLine(trimmed);
}

/** Splits a table line into key and value at the first whitespace; the value may be empty. */
export function splitEntryLine(text: string): { key: string; value: string } {
  const match = /^(\S+)(?:\s+(.*))?$/s.exec(text.trim());
  return { key: match?.[1] ?? '', value: (match?.[2] ?? '').trim() };
}

/** Parses a spec; relative paths resolve against `baseDir` (the config file's directory). */
export function parseSpec(spec: string, baseDir: string = process.cwd()): MapSpec {
  const text = spec.trim();
  const match = TYPE_PREFIX.exec(text);
  if (!match) {
    throw new MapSpecError(spec, `not a type:name map spec; ${USE_ONE_OF}, e.g. file:/etc/postwarden/block`);
  }
  const type = match[1] ?? '';
  const rest = text.slice(match[0].length).trim();
  switch (type) {
    case 'inline': {
      if (!rest.startsWith('{') || !rest.endsWith('}')) {
        throw new MapSpecError(spec, 'inline: entries must be enclosed in { }; write inline:{ a, b value }');
      }
      const entries = splitInline(rest.slice(1, -1));
      if (typeof entries === 'string') throw new MapSpecError(spec, entries);
      return { type, name: text, entries };
    }
    case 'file':
    case 'cidr':
    case 'regexp': {
      if (rest === '') throw new MapSpecError(spec, `${type}: needs a path; write ${type}:/etc/postwarden/…`);
      if (rest.includes('\0')) throw new MapSpecError(spec, 'the path contains a NUL byte; remove it');
      const resolved = path.resolve(baseDir, rest);
      return { type, name: `${type}:${resolved}`, path: resolved };
    }
    case 'ldap': {
      if (!LDAP_QUERY_NAME.test(rest)) {
        throw new MapSpecError(
          spec,
          'ldap: needs the name of a query under ldap.queries (letters, digits, _ and -); write ldap:users',
        );
      }
      return { type, name: `ldap:${rest}`, query: rest };
    }
    default:
      throw new MapSpecError(spec, unknownType(type));
  }
}

/** The problem with one config-list or `inline:` entry, or `undefined` if its key is valid. */
export function entryProblem(entry: string): string | undefined {
  const parsed = parseKey(splitInlineEntry(entry).key);
  return parsed.kind === 'invalid' ? parsed.problem : undefined;
}

/** The first bad entry of a list, as `entry N: problem`; `undefined` if all are valid. */
export function validateEntries(entries: readonly string[]): string | undefined {
  for (const [index, entry] of entries.entries()) {
    const problem = entryProblem(entry);
    if (problem !== undefined) return `entry ${index + 1}: ${problem}`;
  }
  return undefined;
}

/** The problem with a spec (`problem; fix`), or `undefined` if it is valid. Does no I/O. */
export function validateSpec(spec: string): string | undefined {
  try {
    const parsed = parseSpec(spec, '/');
    return parsed.type === 'inline' ? validateEntries(parsed.entries) : undefined;
  } catch (error) {
    if (error instanceof MapSpecError) return error.problem;
    throw error;
  }
}

/**
 * The problems of a config map reference: one spec, or a list mixing entries and specs, each with the item it
 * concerns so the caller can write `key: item — problem`.
 */
export function validateMapRef(ref: string | readonly string[]): { item: string; problem: string }[] {
  const items = typeof ref === 'string' ? [ref] : ref;
  const problems: { item: string; problem: string }[] = [];
  for (const item of items) {
    const problem = isSpec(item) ? validateSpec(item) : entryProblem(item);
    if (problem !== undefined) problems.push({ item, problem });
  }
  return problems;
}
