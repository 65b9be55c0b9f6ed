/**
 * Drivers: turn a spec into table contents. `inline:` compiles its entries; `file:`, `cidr:` and `regexp:` read
 * the file whole (bounded), split it into lines — `#` comments and blank lines ignored, surrounding whitespace
 * trimmed, no continuation lines — and compile them:
 * - `file:` entries `key [value]` of any key kind (see matcher.ts), IPs by longest prefix;
 * - `cidr:` entries whose keys are IPs or networks only, first match in file order (Postfix cidr_table(5));
 * - `regexp:` rules (see regexp.ts).
 *
 * Contract: nothing here throws for a bad spec, a missing or unreadable file, a file over the size, line or
 * entry bounds, or a bad line: the result is `{ ok: false, reason }`, naming file:line where there is one.
 * Contents are built completely before they are returned, so a caller swapping them in never sees half a table.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, statSync, type BigIntStats } from 'node:fs';
import type { LookupQuery, LookupResult, LookupTable } from '../core/ports.js';
import { compileEntries, type SourceEntry } from './matcher.js';
import { compileRegexp, type SourceLine } from './regexp.js';
import { MapSpecError, parseSpec, splitEntryLine, splitInlineEntry, type MapSpec } from './spec.js';

export interface MapLimits {
  readonly maxFileBytes: number;
  readonly maxLineLength: number;
  /** Entries of inline:, file: and cidr: tables. */
  readonly maxEntries: number;
  /** Rules of regexp: tables, which are tried one by one. */
  readonly maxRegexpRules: number;
  /** Longer queries are answered with an error. */
  readonly maxQueryLength: number;
}

export const DEFAULT_MAP_LIMITS: MapLimits = Object.freeze({
  maxFileBytes: 16 * 1024 * 1024,
  maxLineLength: 4096,
  maxEntries: 1_000_000,
  maxRegexpRules: 10_000,
  maxQueryLength: 1024,
});

export interface MapEnv {
  /** Relative map paths resolve against it (the config file's directory); default: the working directory. */
  readonly baseDir?: string;
  /** Postfix's recipient_delimiter: characters that start an address extension; default '+', '' for none. */
  readonly recipientDelimiter?: string;
  readonly limits?: Partial<MapLimits>;
}

/** Compiled contents, answering synchronously: swapping them is one reference assignment. */
export interface TableContents {
  readonly entries: number;
  /** Non-fatal findings, e.g. duplicate keys (the first wins). */
  readonly warnings: readonly string[];
  lookup(query: LookupQuery): LookupResult;
}

/** What a file looked like when read: its stat (to skip unchanged files cheaply) and content hash. */
export interface FileState {
  readonly stat: string;
  readonly hash: string;
}

export type LoadResult =
  | { readonly ok: true; readonly contents: TableContents; readonly file?: FileState }
  | { readonly ok: false; readonly reason: string; readonly stat?: string };

export interface LoadedTable extends LookupTable {
  readonly entries: number;
  readonly warnings: readonly string[];
}

export type OpenResult =
  { readonly ok: true; readonly table: LoadedTable } | { readonly ok: false; readonly reason: string };

function limitsOf(env: MapEnv): MapLimits {
  return { ...DEFAULT_MAP_LIMITS, ...env.limits };
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
}

function statKeyOf(stats: BigIntStats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}`;
}

/** A string that changes when the file is replaced or modified, or names the error that stat met. */
export function fileStatKey(path: string): string {
  try {
    return statKeyOf(statSync(path, { bigint: true }));
  } catch (error) {
    return `error:${errorCode(error)}`;
  }
}

type ReadResult =
  | { readonly ok: true; readonly text: string; readonly file: FileState }
  | { readonly ok: false; readonly reason: string; readonly stat: string };

function unreadable(error: unknown): ReadResult {
  return { ok: false, reason: `cannot read: ${(error as Error).message}`, stat: `error:${errorCode(error)}` };
}

function readSource(path: string, limits: MapLimits): ReadResult {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    return unreadable(error);
  }
  try {
    const stats = fstatSync(fd, { bigint: true });
    const key = statKeyOf(stats);
    if (!stats.isFile()) return { ok: false, reason: `${path} is not a regular file`, stat: key };
    const tooBig = (size: number | bigint) => ({
      ok: false as const,
      reason: `${path} has ${size} bytes, over the limit of ${limits.maxFileBytes}; split it or raise the limit`,
      stat: key,
    });
    if (stats.size > BigInt(limits.maxFileBytes)) return tooBig(stats.size);
    const data = readFileSync(fd);
    // The file may have grown between stat and read.
    if (data.length > limits.maxFileBytes) return tooBig(data.length);
    const hash = createHash('sha256').update(data).digest('hex');
    return { ok: true, text: data.toString('utf8').replace(/^\uFEFF/, ''), file: { stat: key, hash } };
  } catch (error) {
    return unreadable(error);
  } finally {
    closeSync(fd);
  }
}

function tableLines(text: string, path: string, limits: MapLimits): SourceLine[] | string {
  const lines: SourceLine[] = [];
  const raw = text.split(/\r?\n/);
  for (const [index, line] of raw.entries()) {
    const where = `${path}:${index + 1}`;
    if (line.length > limits.maxLineLength) {
      return `${where}: line longer than ${limits.maxLineLength} characters`;
    }
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    if (lines.length === limits.maxEntries) {
      return `${where}: more than ${limits.maxEntries} entries; split the table`;
    }
    lines.push({ text: trimmed, where });
  }
  return lines;
}

function compileList(
  entries: readonly SourceEntry[],
  type: 'inline' | 'file' | 'cidr',
  env: MapEnv,
): LoadResult {
  const limits = limitsOf(env);
  const compiled = compileEntries(entries, {
    recipientDelimiter: env.recipientDelimiter ?? '+',
    ipOrder: type === 'cidr' ? 'first-match' : 'longest-prefix',
    ipOnly: type === 'cidr',
    maxQueryLength: limits.maxQueryLength,
  });
  if (!compiled.ok) return compiled;
  const { matcher, warnings } = compiled;
  return {
    ok: true,
    contents: { entries: matcher.size, warnings, lookup: (query) => matcher.lookup(query) },
  };
}

/** Compiles inline entries (`key`, `key value`, `key=value`); `name` prefixes problems. */
export function compileInline(entries: readonly string[], name: string, env: MapEnv = {}): LoadResult {
  const limits = limitsOf(env);
  if (entries.length > limits.maxEntries) {
    return { ok: false, reason: `${name}: more than ${limits.maxEntries} entries` };
  }
  const sources = entries.map((entry, index) => ({
    ...splitInlineEntry(entry),
    where: `${name} entry ${index + 1}`,
  }));
  return compileList(sources, 'inline', env);
}

/**
 * Loads a parsed spec: reads and compiles the file, or compiles the inline entries. Never throws. Synchronous on
 * purpose: compiling is CPU-bound anyway, and callers get a complete table from `open` with no window in which
 * lookups would fail for want of a first load.
 */
export function loadTable(spec: MapSpec, env: MapEnv = {}): LoadResult {
  if (spec.type === 'inline') return compileInline(spec.entries, spec.name, env);
  if (spec.type === 'ldap') {
    return {
      ok: false,
      reason: `${spec.name} is answered by the LDAP directory (the daemon's maps), not loaded`,
    };
  }
  const limits = limitsOf(env);
  const source = readSource(spec.path, limits);
  if (!source.ok) return source;
  const failed = (reason: string): LoadResult => ({ ok: false, reason, stat: source.file.stat });
  const lines = tableLines(source.text, spec.path, limits);
  if (typeof lines === 'string') return failed(lines);
  if (spec.type === 'regexp') {
    const compiled = compileRegexp(lines, {
      maxRules: limits.maxRegexpRules,
      maxQueryLength: limits.maxQueryLength,
    });
    if (!compiled.ok) return failed(compiled.reason);
    const matcher = compiled.value;
    const contents = {
      entries: matcher.size,
      warnings: [],
      lookup: (query: LookupQuery) => matcher.lookup(query),
    };
    return { ok: true, contents, file: source.file };
  }
  const entries = lines.map((line) => ({ ...splitEntryLine(line.text), where: line.where }));
  const compiled = compileList(entries, spec.type, env);
  return compiled.ok ? { ...compiled, file: source.file } : failed(compiled.reason);
}

function asTable(name: string, contents: TableContents): LoadedTable {
  return {
    name,
    entries: contents.entries,
    warnings: contents.warnings,
    lookup: (query) => Promise.resolve(contents.lookup(query)),
    lookupNow: (query) => contents.lookup(query),
  };
}

/**
 * Opens a table once, without reload (for `check-config` and one-off tools; the daemon uses MapRegistry). A bad
 * spec is `{ ok: false }` like any other failure.
 */
export function openTable(spec: string, env: MapEnv = {}): OpenResult {
  let parsed: MapSpec;
  try {
    parsed = parseSpec(spec, env.baseDir);
  } catch (error) {
    if (error instanceof MapSpecError) return { ok: false, reason: error.problem };
    throw error;
  }
  const loaded = loadTable(parsed, env);
  return loaded.ok ? { ok: true, table: asTable(parsed.name, loaded.contents) } : loaded;
}

/** Opens a table from entries already split (a YAML list). */
export function openInline(entries: readonly string[], name: string, env: MapEnv = {}): OpenResult {
  const loaded = compileInline(entries, name, env);
  return loaded.ok ? { ok: true, table: asTable(name, loaded.contents) } : loaded;
}
