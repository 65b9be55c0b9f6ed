/**
 * MapRegistry: opens tables from specs and config lists, shares one table per spec (two config keys naming the
 * same file share it), and reloads file tables on SIGHUP (`reloadAll`) and when their files change.
 *
 * Contract: `open` returns a table already loaded (or a stand-in), synchronously, so no request ever meets a
 * table still loading. Each table is a stable LookupTable whose contents are swapped whole — a reload compiles
 * the new contents completely, then replaces one reference, so a lookup sees the old or the new table, never a
 * mix. Changes are noticed by watching the file's directory (editors, `install` and `mv` replace files rather
 * than write them), debounced, and acted on only when the file's stat and then its content hash changed.
 *
 * Failure behaviour: nothing throws and nothing logs; events go to `onEvent` with stable codes (events.ts).
 * A table that cannot be opened becomes a stand-in whose every lookup is an error with the reason (PW-M010);
 * a reload that fails keeps the last good contents and marks the table unhealthy (PW-M011); the next good load
 * makes it healthy again (PW-M012). A directory that cannot be watched (it does not exist yet) is retried at
 * each `reloadAll`. Watchers and timers never keep the process alive.
 */
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { LookupQuery, LookupResult, LookupTable } from '../core/ports.js';
import {
  compileInline,
  fileStatKey,
  loadTable,
  type FileState,
  type MapEnv,
  type TableContents,
} from './drivers.js';
import { MAP_EVENT_CODES, type MapEvent, type MapEventCode } from './events.js';
import type { LdapMaps, RemoteTable } from './ldap.js';
import { isSpec, MapSpecError, parseSpec, type MapSpec } from './spec.js';

export interface MapHealth {
  readonly name: string;
  readonly healthy: boolean;
  /** Why it is unhealthy. */
  readonly reason?: string;
  readonly entries: number;
  /** When the contents being served were loaded; null if none ever were. */
  readonly loadedAt: Date | null;
}

export interface MapRegistryOptions {
  readonly env?: MapEnv;
  readonly onEvent?: (event: MapEvent) => void;
  /** Watch files for changes (default true); off, only `reloadAll` reloads. */
  readonly watch?: boolean;
  /** Quiet time after the last change event before reloading, so a burst of writes is read once. */
  readonly debounceMs?: number;
  /** The `ldap:NAME` tables (the config's `ldap` section); without it, such specs give failing stand-ins. */
  readonly ldap?: LdapMaps;
}

interface Context {
  readonly env: MapEnv;
  emit(code: MapEventCode, map: string, message: string): void;
  isClosed(): boolean;
}

const MAX_WARNINGS_SHOWN = 3;

class ManagedTable implements LookupTable {
  /** The one reference a reload replaces. */
  private contents: TableContents | undefined;
  private failure: string | undefined;
  private loadedAt: Date | null = null;
  private file: FileState | undefined;
  /** A table answered elsewhere (an LDAP directory): lookups and health are its own. */
  private remote: RemoteTable | undefined;
  /** The stat last seen, good or bad: an event that leaves it unchanged costs no read. */
  private seenStat: string | undefined;

  private constructor(
    readonly name: string,
    private readonly spec: MapSpec | undefined,
    private readonly ctx: Context,
  ) {}

  /** A file table, not loaded yet: `refresh(true)` loads it. */
  static file(spec: MapSpec, ctx: Context): ManagedTable {
    return new ManagedTable(spec.name, spec, ctx);
  }

  static inline(name: string, contents: TableContents, ctx: Context): ManagedTable {
    const table = new ManagedTable(name, undefined, ctx);
    table.install(contents, undefined);
    ctx.emit('PW-M001', name, `loaded ${contents.entries} entries`);
    table.reportWarnings();
    return table;
  }

  static standIn(name: string, reason: string, ctx: Context): ManagedTable {
    const table = new ManagedTable(name, undefined, ctx);
    table.failure = reason;
    return table;
  }

  /** A table whose lookups go to a remote backend; it is never reloaded, and healthy while the backend is. */
  static remote(table: RemoteTable, ctx: Context): ManagedTable {
    const managed = new ManagedTable(table.name, undefined, ctx);
    managed.remote = table;
    managed.loadedAt = new Date();
    ctx.emit('PW-M001', table.name, 'opened: lookups go to the LDAP directory');
    return managed;
  }

  get path(): string | undefined {
    return this.spec &&
      (this.spec.type === 'file' || this.spec.type === 'cidr' || this.spec.type === 'regexp')
      ? this.spec.path
      : undefined;
  }

  lookup(query: LookupQuery): Promise<LookupResult> {
    return this.remote ? this.remote.lookup(query) : Promise.resolve(this.inMemory(query));
  }

  lookupNow(query: LookupQuery): LookupResult | undefined {
    return this.remote ? undefined : this.inMemory(query);
  }

  private inMemory(query: LookupQuery): LookupResult {
    const contents = this.contents;
    if (!contents) return { status: 'error', reason: this.failure ?? 'not loaded' };
    try {
      return contents.lookup(query);
    } catch (error) {
      return { status: 'error', reason: `lookup failed: ${(error as Error).message}` };
    }
  }

  health(): MapHealth {
    if (this.remote) {
      const { healthy, reason } = this.remote.health();
      return {
        name: this.name,
        entries: 0,
        loadedAt: this.loadedAt,
        healthy,
        ...(reason !== undefined && !healthy ? { reason } : {}),
      };
    }
    const base = { name: this.name, entries: this.contents?.entries ?? 0, loadedAt: this.loadedAt };
    return this.failure === undefined
      ? { ...base, healthy: true }
      : { ...base, healthy: false, reason: this.failure };
  }

  /** Reloads a file table; without `force`, only if the file's stat changed since last seen. */
  refresh(force: boolean): void {
    const file = this.path;
    if (file === undefined || !this.spec || this.ctx.isClosed()) return;
    if (!force && this.seenStat !== undefined && fileStatKey(file) === this.seenStat) return;
    const loaded = loadTable(this.spec, this.ctx.env);
    if (!loaded.ok) {
      this.seenStat = loaded.stat;
      this.fail(loaded.reason);
      return;
    }
    this.seenStat = loaded.file?.stat;
    if (this.contents && loaded.file?.hash === this.file?.hash) {
      // Same content as the contents being served (e.g. a deleted file restored): nothing to swap.
      if (this.failure !== undefined) this.recovered();
      return;
    }
    const firstLoad = this.loadedAt === null && this.failure === undefined;
    const wasFailing = this.failure !== undefined;
    this.install(loaded.contents, loaded.file);
    if (firstLoad) this.ctx.emit('PW-M001', this.name, `loaded ${loaded.contents.entries} entries`);
    else if (wasFailing) this.recovered();
    else this.ctx.emit('PW-M002', this.name, `reloaded: ${loaded.contents.entries} entries`);
    this.reportWarnings();
  }

  private install(contents: TableContents, file: FileState | undefined): void {
    this.contents = contents;
    this.file = file;
    this.loadedAt = new Date();
    this.failure = undefined;
  }

  /** One event for all of a load's warnings: a file with thousands of duplicates must not flood the log. */
  private reportWarnings(): void {
    const warnings = this.contents?.warnings ?? [];
    if (warnings.length === 0) return;
    const more =
      warnings.length > MAX_WARNINGS_SHOWN ? ` (and ${warnings.length - MAX_WARNINGS_SHOWN} more)` : '';
    this.ctx.emit('PW-M003', this.name, `${warnings.slice(0, MAX_WARNINGS_SHOWN).join('; ')}${more}`);
  }

  private recovered(): void {
    this.failure = undefined;
    this.ctx.emit('PW-M012', this.name, `recovered: ${this.contents?.entries ?? 0} entries`);
  }

  private fail(reason: string): void {
    this.failure = reason;
    if (this.contents) {
      const since = this.loadedAt?.toISOString() ?? 'start';
      this.ctx.emit(
        'PW-M011',
        this.name,
        `reload failed: ${reason}; still serving the ${this.contents.entries} entries loaded at ${since}`,
      );
    } else {
      this.ctx.emit(
        'PW-M010',
        this.name,
        `cannot open: ${reason}; every lookup in it fails until this is fixed`,
      );
    }
  }
}

interface DirWatch {
  readonly watcher: FSWatcher;
  readonly tables: Set<ManagedTable>;
  /** Base names of the watched files. */
  readonly names: Set<string>;
  timer: NodeJS.Timeout | undefined;
}

/** A short name for an inline list: its first entries. */
function inlineName(entries: readonly string[]): string {
  const text = entries.join(', ');
  return `inline:{ ${text.length > 60 ? `${text.slice(0, 60)}…` : text} }`;
}

export class MapRegistry {
  /** File and spec tables by canonical spec; lists of entries are not shared (they are small and named per key). */
  private readonly bySpec = new Map<string, ManagedTable>();
  private readonly all: ManagedTable[] = [];
  private readonly dirs = new Map<string, DirWatch>();
  private readonly ctx: Context;
  private closed = false;

  constructor(private readonly options: MapRegistryOptions = {}) {
    const onEvent = options.onEvent;
    this.ctx = {
      env: options.env ?? {},
      emit: (code, map, message) => onEvent?.({ code, level: MAP_EVENT_CODES[code].level, map, message }),
      isClosed: () => this.closed,
    };
  }

  /**
   * The table for a spec, loaded. Never throws: a bad spec or an unreadable file gives a stand-in that answers
   * every lookup with an error (and an event says why).
   */
  open(spec: string): LookupTable {
    let parsed: MapSpec;
    try {
      parsed = parseSpec(spec, this.ctx.env.baseDir);
    } catch (error) {
      if (!(error instanceof MapSpecError)) throw error;
      const name = spec.trim();
      return this.share(name, () => {
        this.ctx.emit('PW-M020', name, error.problem);
        return ManagedTable.standIn(name, error.problem, this.ctx);
      });
    }
    if (parsed.type === 'inline') {
      return this.share(parsed.name, () => this.compile(parsed.entries, parsed.name));
    }
    if (parsed.type === 'ldap') {
      return this.share(parsed.name, () => {
        const opened = this.options.ldap?.open(parsed.query) ?? {
          ok: false as const,
          reason: 'no LDAP directory is configured; set ldap.url and define the query under ldap.queries',
        };
        if (opened.ok) return ManagedTable.remote(opened.table, this.ctx);
        this.ctx.emit('PW-M010', parsed.name, `cannot open: ${opened.reason}`);
        return ManagedTable.standIn(parsed.name, opened.reason, this.ctx);
      });
    }
    return this.share(parsed.name, () => {
      const table = ManagedTable.file(parsed, this.ctx);
      // Watched before the first read, so a change made while it is read is not missed.
      if (table.path !== undefined) this.watchFile(table, table.path);
      table.refresh(true);
      return table;
    });
  }

  /** A table of entries already split (a YAML list); a bad entry gives a stand-in, as in `open`. */
  openEntries(entries: readonly string[], name: string = inlineName(entries)): LookupTable {
    const table = this.compile(entries, name);
    this.all.push(table);
    return table;
  }

  /**
   * The tables of a config map reference, in search order: a spec, or a list whose runs of plain entries become
   * one inline table each (named `name`, or `name[i]` when there are several) and whose `type:name` items are
   * opened as specs.
   */
  openRef(ref: string | readonly string[], name?: string): LookupTable[] {
    const items = typeof ref === 'string' ? [ref] : ref;
    const runs: (string[] | string)[] = [];
    for (const item of items) {
      const last = runs.at(-1);
      if (isSpec(item)) runs.push(item);
      else if (Array.isArray(last)) last.push(item);
      else runs.push([item]);
    }
    const several = runs.filter((run) => Array.isArray(run)).length > 1;
    return runs.map((run, index) => {
      if (typeof run === 'string') return this.open(run);
      return this.openEntries(run, name === undefined ? undefined : several ? `${name}[${index}]` : name);
    });
  }

  /** Re-reads every file table now (SIGHUP). Unchanged content is not swapped and reports nothing. */
  reloadAll(): void {
    for (const table of this.all) {
      if (table.path === undefined) continue;
      this.watchFile(table, table.path);
      table.refresh(true);
    }
  }

  health(): MapHealth[] {
    return this.all.map((table) => table.health());
  }

  /** Stops watching; tables keep answering from their last contents. */
  close(): void {
    this.closed = true;
    for (const dir of this.dirs.values()) {
      clearTimeout(dir.timer);
      dir.watcher.close();
    }
    this.dirs.clear();
  }

  private compile(entries: readonly string[], name: string): ManagedTable {
    const compiled = compileInline(entries, name, this.ctx.env);
    if (compiled.ok) return ManagedTable.inline(name, compiled.contents, this.ctx);
    this.ctx.emit('PW-M020', name, compiled.reason);
    return ManagedTable.standIn(name, compiled.reason, this.ctx);
  }

  private share(key: string, create: () => ManagedTable): ManagedTable {
    const known = this.bySpec.get(key);
    if (known) return known;
    const table = create();
    this.bySpec.set(key, table);
    this.all.push(table);
    return table;
  }

  private watchFile(table: ManagedTable, file: string): void {
    if (this.closed || this.options.watch === false) return;
    const dirName = path.dirname(file);
    let dir = this.dirs.get(dirName);
    if (!dir) {
      let watcher: FSWatcher;
      try {
        watcher = watch(dirName, { persistent: false });
      } catch {
        return; // the directory does not exist (yet): reloadAll tries again
      }
      const created: DirWatch = { watcher, tables: new Set(), names: new Set(), timer: undefined };
      // A change to a table's own name, or to a `..name` entry (the symlink swaps of Kubernetes config maps),
      // triggers a stat of the directory's tables; other files there (a log, say) are none of our business.
      watcher.on('change', (_event, name) => {
        const changed = typeof name === 'string' ? name : undefined;
        if (changed === undefined || changed.startsWith('..') || created.names.has(changed))
          this.schedule(created);
      });
      watcher.on('error', () => {
        clearTimeout(created.timer);
        watcher.close();
        if (this.dirs.get(dirName) === created) this.dirs.delete(dirName);
      });
      this.dirs.set(dirName, created);
      dir = created;
    }
    dir.tables.add(table);
    dir.names.add(path.basename(file));
  }

  /** Coalesces a burst of events into one refresh at most `debounceMs` after the first: a steady stream of
   * events must not postpone the reload for ever. */
  private schedule(dir: DirWatch): void {
    if (dir.timer !== undefined) return;
    dir.timer = setTimeout(() => {
      dir.timer = undefined;
      for (const table of dir.tables) table.refresh(false);
    }, this.options.debounceMs ?? 200);
    dir.timer.unref();
  }
}
