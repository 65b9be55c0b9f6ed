/**
 * Runtime list entries: block and allow entries an admin adds while postwarden runs (CLI or admin API), kept in
 * the state store so they survive a restart and reach every host sharing the store. Each named list (e.g.
 * `block.client`) has one stable LookupTable that the policy check searches before the entries of the config,
 * so an entry added here wins over a config entry of the same key.
 *
 * Contract: `table(name)` answers from memory, synchronously compiled like an inline table (same entry syntax and
 * matching). The contents are reloaded from the store by `refresh` — at once after a local add or remove, and
 * every `refreshMs` for the changes other hosts or the CLI made. Keys are stored as `listentry:<list>|<key>`
 * with the key in its canonical form, the value as JSON `{ value, by, at }`. Every change also counts up
 * `listentry-version`, so a periodic refresh costs one read and scans the entries only when they changed (a
 * scan walks the whole keyspace on Redis, where Bayes tokens may number millions).
 *
 * Failure behaviour: a refresh that cannot reach the store keeps the contents loaded last (before the first
 * good load: none, so lookups say "not found" and the config entries still apply); the failure is returned to
 * the caller, never thrown from a lookup. At most MAX_RUNTIME_ENTRIES entries are read; more are ignored.
 */
import type { LookupQuery, LookupResult, LookupTable } from '../core/ports.js';
import { MAX_SCAN_LIMIT, type Store } from '../core/store.js';
import { compileInline, type MapEnv, type TableContents } from './drivers.js';
import { parseKey } from './matcher.js';

export const RUNTIME_ENTRY_PREFIX = 'listentry:';
/** Counts changes to the runtime entries: a reader scans again only when it moved. */
export const RUNTIME_VERSION_KEY = 'listentry-version';
/** The most runtime entries across all lists (one store scan). */
export const MAX_RUNTIME_ENTRIES = MAX_SCAN_LIMIT;
/** The longest value (reply text) of an entry. */
export const MAX_RUNTIME_VALUE_CHARS = 200;

export interface RuntimeEntry {
  readonly list: string;
  /** Canonical form of the key (an IP, CIDR, address, domain, `.domain`, `user@`). */
  readonly key: string;
  readonly value: string;
  /** Who added it, and when (ISO). */
  readonly by: string;
  readonly at: string;
}

/** A key an admin gave, in canonical form, or the problem with it. */
export function runtimeKey(text: string): { key: string } | { problem: string } {
  const given = text.trim();
  if (given.includes('=') || /\s/.test(given)) {
    return { problem: `'${text}' holds '=' or a space; such keys belong in a file: table` };
  }
  const parsed = parseKey(given);
  return parsed.kind === 'invalid' ? { problem: parsed.problem } : { key: parsed.display };
}

const storeKey = (list: string, key: string): string => `${RUNTIME_ENTRY_PREFIX}${list}|${key}`;

function entryOf(key: string, value: string): RuntimeEntry | undefined {
  const rest = key.slice(RUNTIME_ENTRY_PREFIX.length);
  const bar = rest.indexOf('|');
  if (bar < 0) return undefined;
  try {
    const data = JSON.parse(value) as { value?: unknown; by?: unknown; at?: unknown };
    return {
      list: rest.slice(0, bar),
      key: rest.slice(bar + 1),
      value: typeof data.value === 'string' ? data.value : '',
      by: typeof data.by === 'string' ? data.by : '',
      at: typeof data.at === 'string' ? data.at : '',
    };
  } catch {
    return undefined;
  }
}

const EMPTY: TableContents = { entries: 0, warnings: [], lookup: () => ({ status: 'notfound' }) };

class RuntimeTable implements LookupTable {
  contents: TableContents = EMPTY;
  constructor(readonly name: string) {}
  lookup(query: LookupQuery): Promise<LookupResult> {
    return Promise.resolve(this.contents.lookup(query));
  }

  lookupNow(query: LookupQuery): LookupResult {
    return this.contents.lookup(query);
  }
}

export class RuntimeEntries {
  private readonly tables = new Map<string, RuntimeTable>();
  private timer: NodeJS.Timeout | undefined;
  private loadedAt: Date | null = null;
  private failure: string | undefined;
  /** The version the contents were loaded at (null: never loaded). */
  private version: string | undefined | null = null;

  constructor(
    private readonly store: Store,
    private readonly env: MapEnv = {},
  ) {}

  /** The table of a list's runtime entries (empty until the first refresh). */
  table(list: string): LookupTable {
    let table = this.tables.get(list);
    if (!table) {
      table = new RuntimeTable(`runtime:${list}`);
      this.tables.set(list, table);
    }
    return table;
  }

  /** Every runtime entry of `list` (or of every list), sorted by list and key. */
  async entries(list?: string): Promise<RuntimeEntry[]> {
    const prefix = list === undefined ? RUNTIME_ENTRY_PREFIX : `${RUNTIME_ENTRY_PREFIX}${list}|`;
    const found = await this.store.scan(prefix, MAX_RUNTIME_ENTRIES);
    return found.flatMap((e) => entryOf(e.key, e.value) ?? []);
  }

  /** Adds (or replaces) an entry; the key must be canonical (runtimeKey). Visible to lookups when it resolves. */
  async add(list: string, key: string, value: string, by: string): Promise<RuntimeEntry> {
    const entry: RuntimeEntry = { list, key, value, by, at: new Date().toISOString() };
    await this.store.set(storeKey(list, key), JSON.stringify({ value, by, at: entry.at }));
    await this.store.increment(RUNTIME_VERSION_KEY, 1);
    await this.refresh();
    return entry;
  }

  /** Removes an entry; false when there was none. */
  async remove(list: string, key: string): Promise<boolean> {
    const removed = await this.store.delete(storeKey(list, key));
    if (removed) await this.store.increment(RUNTIME_VERSION_KEY, 1);
    await this.refresh();
    return removed;
  }

  /**
   * Reloads every table from the store when the entries changed since the last load; resolves with the failure
   * reason, if any (the old contents stay).
   */
  async refresh(): Promise<string | undefined> {
    let all: RuntimeEntry[];
    let version: string | undefined;
    try {
      // Read before the scan: a change made during the scan moves it again, and the next refresh sees it.
      version = await this.store.get(RUNTIME_VERSION_KEY);
      if (this.version !== null && version === this.version) return undefined;
      all = await this.entries();
    } catch (error) {
      this.failure = (error as Error).message;
      return this.failure;
    }
    const byList = new Map<string, string[]>();
    for (const e of all) {
      const lines = byList.get(e.list) ?? [];
      lines.push(`${e.key} ${e.value || 'OK'}`);
      byList.set(e.list, lines);
    }
    for (const list of byList.keys()) this.table(list);
    for (const [list, table] of this.tables) {
      const compiled = compileInline(byList.get(list) ?? [], table.name, this.env);
      // An entry that no longer compiles (written by a newer version?) leaves the list as it was.
      if (compiled.ok) table.contents = compiled.contents;
    }
    this.loadedAt = new Date();
    this.version = version;
    this.failure = undefined;
    return undefined;
  }

  /** Refreshes every `intervalMs` (the timer never keeps the process alive). */
  start(intervalMs: number): void {
    this.stop();
    this.timer = setInterval(() => void this.refresh(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  health(): { readonly healthy: boolean; readonly reason?: string; readonly loadedAt: Date | null } {
    return {
      healthy: this.failure === undefined,
      loadedAt: this.loadedAt,
      ...(this.failure !== undefined ? { reason: this.failure } : {}),
    };
  }
}
