/**
 * The `sqlite` store driver: the embedded default for one host. One file (better-sqlite3, WAL), one table:
 *
 *   kv(key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at INTEGER) WITHOUT ROWID
 *
 * with a partial index on expires_at; expires_at is milliseconds since the epoch by the injected clock `now`.
 *
 * Contract (see src/core/store.ts for the port): every read filters `expires_at > now` itself, so an expired row
 * is absent whether or not `purgeExpired` has run. Each operation is one prepared statement — `setIfAbsent` and
 * `compareAndSet` are single UPSERT/UPDATE statements whose change count is the answer; `getOrCreate` reads, then
 * (absent) runs setIfAbsent's statement, and reads again if another process won — except `increment`,
 * which reads, checks and writes inside one `BEGIN IMMEDIATE` transaction so that another process on the same
 * file cannot interleave. `incrementMany` does the same for all its deltas in one such transaction: a bad value
 * or a failing write (SQLITE_FULL) throws inside it and rolls every delta back. `getMany` runs one statement per
 * chunk of at most GET_MANY_CHUNK keys (a VALUES list joined to the primary key; far below SQLite's variable
 * limit, and chunks are padded to a power of two, so a connection prepares at most ten such statements) inside
 * one read transaction, so all chunks see one snapshot. better-sqlite3 is synchronous: an operation blocks the
 * event loop for its few microseconds (a batch of 2000 keys: 2–6 ms), and for at most `timeoutMs` (SQLite's
 * busy_timeout) when another process holds the write lock.
 * WAL checkpoints run in a worker thread with its own connection (src/store/sqlite-checkpoint.ts), off the event
 * loop; SQLite's automatic checkpoint stays on, at 10 000 pages, as a safety net.
 * `synchronous = NORMAL` in WAL mode: a power cut may lose the last transactions, never the file.
 * `purgeExpired` deletes in batches and yields to the event loop between them, so a large purge does not stall
 * requests. The directory is created if missing (mode 0750), the file with mode 0640. `maxBytes` caps the file
 * (`PRAGMA max_page_count`), so a flood of new triplets cannot fill the disk.
 *
 * Failure behaviour: any SQLite error (SQLITE_BUSY, SQLITE_FULL, SQLITE_IOERR_*, SQLITE_READONLY, SQLITE_CORRUPT,
 * …) rejects as StoreUnavailable with the SQLite code in the reason. A file that cannot be opened does not throw
 * from `openSqliteStore`: the store starts unhealthy, every operation fails with the reason, and opening is
 * retried at most once per `reopenIntervalMs`. Outages are reported once through `onEvent` (PW-S010, PW-S011).
 */
import { once } from 'node:events';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import {
  checkBatch,
  checkDeltas,
  checkScanLimit,
  checkStep,
  parseCounter,
  StoreBadValue,
  StoreUnavailable,
  ttlToMs,
  type ImmediateStore,
  type CheckedDelta,
  type CounterDelta,
  type Store,
  type StoreEntry,
  type StoreHealth,
} from '../core/store.js';
import { HealthTracker, type StoreEventListener } from './events.js';

export interface SqliteStoreOptions {
  /** The database file, or `:memory:` (one connection only; for tests). */
  readonly path: string;
  /** The clock expiry is measured by, in ms since the epoch (default Date.now). */
  readonly now?: () => number;
  /** How long an operation waits for another process's write lock (busy_timeout), ms. */
  readonly timeoutMs?: number;
  /** Upper bound of the file's size; writes beyond it fail with SQLITE_FULL. */
  readonly maxBytes?: number;
  /** Least time between two attempts to open a file that failed to open, ms (default 1000). */
  readonly reopenIntervalMs?: number;
  readonly onEvent?: StoreEventListener;
}

export const SQLITE_DEFAULT_TIMEOUT_MS = 250;
/** How often the checkpointer thread moves the WAL into the database file. */
export const CHECKPOINT_INTERVAL_MS = 1000;
/**
 * SQLite's automatic checkpoint (in pages of WAL) while the checkpointer thread runs: only a safety net that
 * bounds the WAL (≈ 40 MiB) should the thread fall behind. Without the thread, SQLite's default 1000.
 */
const WAL_AUTOCHECKPOINT_PAGES = 10_000;
const WAL_AUTOCHECKPOINT_DEFAULT = 1000;
const PURGE_BATCH = 5000;
/** Read-then-insert rounds of getOrCreate; a further round needs another process to change that key meanwhile. */
const GET_OR_CREATE_ROUNDS = 3;
/** Keys per `getMany` statement: a power of two, well below SQLite's variable limit (999 before 3.32). */
export const GET_MANY_CHUNK = 512;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS kv (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  expires_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL;
`;

const LIVE = '(expires_at IS NULL OR expires_at > @now)';

interface Row {
  readonly key: string;
  readonly value: string;
  readonly expires_at: number | null;
}

type Db = Database.Database;
type Stmt = Database.Statement;

/** The prepared statements of one open connection. */
class Statements {
  readonly get: Stmt;
  readonly getEntry: Stmt;
  readonly set: Stmt;
  readonly setIfAbsent: Stmt;
  readonly compareAndSet: Stmt;
  readonly updateValue: Stmt;
  readonly delete: Stmt;
  readonly expire: Stmt;
  readonly scanRange: Stmt;
  readonly scanFrom: Stmt;
  readonly purge: Stmt;
  readonly ping: Stmt;
  readonly updateValueExpiry: Stmt;
  readonly increment: (key: string, by: number, expiresAt: number | null, now: number) => number;
  readonly incrementMany: (deltas: readonly CheckedDelta[], now: number) => number[];
  readonly getMany: (keys: readonly string[], now: number) => (string | undefined)[];
  /** The getMany statement by number of keys (powers of two up to GET_MANY_CHUNK). */
  private readonly getManyBySize = new Map<number, Stmt>();

  constructor(readonly db: Db) {
    this.get = db.prepare(`SELECT value FROM kv WHERE key = @key AND ${LIVE}`).pluck();
    this.getEntry = db.prepare(`SELECT key, value, expires_at FROM kv WHERE key = @key AND ${LIVE}`);
    this.set = db.prepare(
      `INSERT INTO kv (key, value, expires_at) VALUES (@key, @value, @expiresAt)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`,
    );
    // Inserts, or replaces a row that has expired; a live row stays and the change count is 0.
    this.setIfAbsent = db.prepare(
      `INSERT INTO kv (key, value, expires_at) VALUES (@key, @value, @expiresAt)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
       WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= @now`,
    );
    this.compareAndSet = db.prepare(
      `UPDATE kv SET value = @value, expires_at = @expiresAt
       WHERE key = @key AND value = @expected AND ${LIVE}`,
    );
    this.updateValue = db.prepare('UPDATE kv SET value = @value WHERE key = @key');
    this.delete = db.prepare('DELETE FROM kv WHERE key = @key RETURNING expires_at');
    this.expire = db.prepare(`UPDATE kv SET expires_at = @expiresAt WHERE key = @key AND ${LIVE}`);
    this.scanRange = db.prepare(
      `SELECT key, value, expires_at FROM kv WHERE key >= @from AND key < @to AND ${LIVE}
       ORDER BY key LIMIT @limit`,
    );
    this.scanFrom = db.prepare(
      `SELECT key, value, expires_at FROM kv WHERE key >= @from AND ${LIVE} ORDER BY key LIMIT @limit`,
    );
    this.purge = db.prepare(
      'DELETE FROM kv WHERE key IN (SELECT key FROM kv WHERE expires_at <= @now LIMIT @batch)',
    );
    this.ping = db.prepare('SELECT 1').pluck();
    this.updateValueExpiry = db.prepare(
      'UPDATE kv SET value = @value, expires_at = @expiresAt WHERE key = @key',
    );

    /** One counter step; call it inside a write transaction. `touch`: an existing counter gets `expiresAt` too. */
    const add = (
      operation: string,
      key: string,
      by: number,
      expiresAt: number | null,
      touch: boolean,
      now: number,
    ): number => {
      const current = this.get.get({ key, now }) as string | undefined;
      if (current === undefined) {
        this.set.run({ key, value: String(by), expiresAt });
        return by;
      }
      const n = parseCounter(current);
      if (n === undefined) throw new StoreBadValue('sqlite', operation, key, 'the value is not an integer');
      const next = n + by;
      if (!Number.isSafeInteger(next)) {
        throw new StoreBadValue('sqlite', operation, key, 'the counter would leave the safe integer range');
      }
      if (touch) this.updateValueExpiry.run({ key, value: String(next), expiresAt });
      else this.updateValue.run({ key, value: String(next) });
      return next;
    };
    const increment = db.transaction((key: string, by: number, expiresAt: number | null, now: number) =>
      add('increment', key, by, expiresAt, false, now),
    );
    this.increment = (key, by, expiresAt, now) => increment.immediate(key, by, expiresAt, now);
    // A StoreBadValue thrown by any delta rolls the whole transaction back: no counter changes.
    const incrementMany = db.transaction((deltas: readonly CheckedDelta[], now: number) =>
      deltas.map((d) =>
        add('incrementMany', d.key, d.by, d.ttlMs === undefined ? null : now + d.ttlMs, d.touch, now),
      ),
    );
    this.incrementMany = (deltas, now) => incrementMany.immediate(deltas, now);
    const getMany = db.transaction((keys: readonly string[], now: number) => {
      const values = Array<string | undefined>(keys.length).fill(undefined);
      for (let start = 0; start < keys.length; start += GET_MANY_CHUNK) {
        const chunk = keys.slice(start, start + GET_MANY_CHUNK);
        const size = 2 ** Math.ceil(Math.log2(chunk.length));
        const padded = chunk.concat(Array<string>(size - chunk.length).fill(chunk[0] as string));
        for (const [i, value] of this.selectMany(size).all(...padded, { now }) as [number, string][]) {
          if (i < chunk.length) values[start + i] = value;
        }
      }
      return values;
    });
    this.getMany = (keys, now) => getMany.deferred(keys, now);
  }

  /**
   * `size` keys → (position, value) of the live ones: the keys as a VALUES list joined to the primary key, one
   * lookup each. Rows are matched by position, not by the key read back, which may not be the string asked for
   * (a lone UTF-16 surrogate, as in a token cut inside an emoji, does not survive the way back from UTF-8).
   */
  private selectMany(size: number): Stmt {
    let statement = this.getManyBySize.get(size);
    if (statement === undefined) {
      const rows = Array.from({ length: size }, (_, i) => `(${i}, ?)`).join(', ');
      statement = this.db
        .prepare(
          `WITH ask (i, key) AS (VALUES ${rows})
           SELECT ask.i, kv.value FROM ask CROSS JOIN kv ON kv.key = ask.key WHERE ${LIVE}`,
        )
        .raw();
      this.getManyBySize.set(size, statement);
    }
    return statement;
  }
}

/**
 * The smallest string greater than every string that starts with `prefix`, in SQLite's BINARY order (UTF-8
 * bytes, which is code point order); undefined when there is none.
 */
export function prefixEnd(prefix: string): string | undefined {
  const points = Array.from(prefix);
  while (points.length > 0) {
    const last = (points.pop() as string).codePointAt(0) as number;
    if (last < 0x10ffff) {
      const next = last + 1 >= 0xd800 && last + 1 <= 0xdfff ? 0xe000 : last + 1;
      return points.join('') + String.fromCodePoint(next);
    }
  }
  return undefined;
}

function toEntry(row: Row): StoreEntry {
  return row.expires_at === null
    ? { key: row.key, value: row.value }
    : { key: row.key, value: row.value, expiresAt: row.expires_at };
}

function explain(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return typeof code === 'string' && !message.startsWith(code) ? `${code}: ${message}` : message;
}

/** A synchronous operation's result as a promise: its value, or its thrown error as the rejection. */
function promised<T>(operation: () => T): Promise<T> {
  try {
    return Promise.resolve(operation());
  } catch (error) {
    return Promise.reject(error as Error);
  }
}

export class SqliteStore implements Store {
  readonly driver = 'sqlite' as const;
  private statements: Statements | undefined;
  private closed = false;
  private lastOpenAttempt = -Infinity;
  private readonly now: () => number;
  private readonly timeoutMs: number;
  private readonly tracker: HealthTracker;
  private checkpointer: Worker | undefined;

  constructor(private readonly options: SqliteStoreOptions) {
    this.now = options.now ?? Date.now;
    this.timeoutMs = options.timeoutMs ?? SQLITE_DEFAULT_TIMEOUT_MS;
    this.tracker = new HealthTracker('sqlite', options.onEvent);
    this.open();
  }

  readonly immediate: ImmediateStore = {
    get: (key) => this.runNow('get', (s) => s.get.get({ key, now: this.now() }) as string | undefined),
    getEntry: (key) =>
      this.runNow('getEntry', (s) => {
        const row = s.getEntry.get({ key, now: this.now() }) as Row | undefined;
        return row && toEntry(row);
      }),
    getOrCreate: (key, value, ttlS) =>
      this.runNow('getOrCreate', (s) => {
        // Read first, so a known key costs no write lock. Another process may create or remove the key between
        // the read and the insert: then read again. Each further round needs another such change in between.
        for (let round = 0; round < GET_OR_CREATE_ROUNDS; round++) {
          const now = this.now();
          const row = s.getEntry.get({ key, now }) as Row | undefined;
          if (row) return toEntry(row);
          const expiresAt = this.expiresAt(ttlS, now);
          if (s.setIfAbsent.run({ key, value, expiresAt, now }).changes > 0) return undefined;
        }
        throw new Error(`the key changed under ${GET_OR_CREATE_ROUNDS} attempts in a row`);
      }),
    set: (key, value, ttlS) =>
      this.runNow('set', (s) => {
        s.set.run({ key, value, expiresAt: this.expiresAt(ttlS) });
      }),
    setIfAbsent: (key, value, ttlS) =>
      this.runNow('setIfAbsent', (s) => {
        const now = this.now();
        return s.setIfAbsent.run({ key, value, expiresAt: this.expiresAt(ttlS, now), now }).changes > 0;
      }),
    increment: (key, by, ttlS) =>
      this.runNow('increment', (s) => {
        checkStep(by);
        const now = this.now();
        return s.increment(key, by, this.expiresAt(ttlS, now), now);
      }),
    expire: (key, ttlS) =>
      this.runNow('expire', (s) => {
        const now = this.now();
        const ms = ttlToMs(ttlS) as number;
        return s.expire.run({ key, expiresAt: now + ms, now }).changes > 0;
      }),
  };

  get(key: string): Promise<string | undefined> {
    return promised(() => this.immediate.get(key));
  }

  getEntry(key: string): Promise<StoreEntry | undefined> {
    return promised(() => this.immediate.getEntry(key));
  }

  set(key: string, value: string, ttlS?: number): Promise<void> {
    return promised(() => this.immediate.set(key, value, ttlS));
  }

  getOrCreate(key: string, value: string, ttlS?: number): Promise<StoreEntry | undefined> {
    return promised(() => this.immediate.getOrCreate(key, value, ttlS));
  }

  setIfAbsent(key: string, value: string, ttlS?: number): Promise<boolean> {
    return promised(() => this.immediate.setIfAbsent(key, value, ttlS));
  }

  compareAndSet(key: string, expected: string | undefined, value: string, ttlS?: number): Promise<boolean> {
    return this.run('compareAndSet', (s) => {
      const now = this.now();
      const expiresAt = this.expiresAt(ttlS, now);
      if (expected === undefined) return s.setIfAbsent.run({ key, value, expiresAt, now }).changes > 0;
      return s.compareAndSet.run({ key, value, expiresAt, expected, now }).changes > 0;
    });
  }

  increment(key: string, by: number, ttlS?: number): Promise<number> {
    return promised(() => this.immediate.increment(key, by, ttlS));
  }

  getMany(keys: readonly string[]): Promise<(string | undefined)[]> {
    return this.run('getMany', (s) => {
      checkBatch('getMany', keys.length);
      return keys.length === 0 ? [] : s.getMany(keys, this.now());
    });
  }

  incrementMany(deltas: readonly CounterDelta[]): Promise<number[]> {
    return this.run('incrementMany', (s) => {
      const checked = checkDeltas(deltas);
      return checked.length === 0 ? [] : s.incrementMany(checked, this.now());
    });
  }

  delete(key: string): Promise<boolean> {
    return this.run('delete', (s) => {
      const row = s.delete.get({ key }) as { expires_at: number | null } | undefined;
      return row !== undefined && (row.expires_at === null || row.expires_at > this.now());
    });
  }

  expire(key: string, ttlS: number): Promise<boolean> {
    return promised(() => this.immediate.expire(key, ttlS));
  }

  scan(prefix: string, limit: number): Promise<StoreEntry[]> {
    return this.run('scan', (s) => {
      checkScanLimit(limit);
      if (limit === 0) return [];
      const now = this.now();
      const to = prefixEnd(prefix);
      const rows = (
        to === undefined
          ? s.scanFrom.all({ from: prefix, limit, now })
          : s.scanRange.all({ from: prefix, to, limit, now })
      ) as Row[];
      return rows.map(toEntry);
    });
  }

  async purgeExpired(): Promise<number> {
    let total = 0;
    for (;;) {
      const removed = await this.run(
        'purgeExpired',
        (s) => s.purge.run({ now: this.now(), batch: PURGE_BATCH }).changes,
      );
      total += removed;
      if (removed < PURGE_BATCH) return total;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  compact(): Promise<void> {
    return this.run('compact', (s) => {
      // TRUNCATE shrinks the -wal file back to zero once every reader has moved past it.
      s.db.pragma('wal_checkpoint(TRUNCATE)');
      s.db.pragma('optimize');
    });
  }

  ping(): Promise<void> {
    return this.run('ping', (s) => {
      s.ping.get();
    });
  }

  health(): StoreHealth {
    if (this.closed) return { driver: 'sqlite', healthy: false, reason: 'closed' };
    const reason = this.tracker.reason;
    return reason === undefined
      ? { driver: 'sqlite', healthy: true }
      : { driver: 'sqlite', healthy: false, reason };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const checkpointer = this.checkpointer;
    this.checkpointer = undefined;
    // The checkpointer's connection goes first and ours last: the last connection to close folds the WAL into the
    // file and removes the -wal and -shm files, so nothing writes beside the database once close() resolves.
    if (checkpointer) await stopCheckpointer(checkpointer);
    const db = this.statements?.db;
    this.statements = undefined;
    try {
      db?.close();
    } catch {
      // Closing a connection that failed is not worth an error.
    }
  }

  private expiresAt(ttlS: number | undefined, now = this.now()): number | null {
    const ms = ttlToMs(ttlS);
    return ms === undefined ? null : now + ms;
  }

  /** Runs one operation on the open connection, turning every SQLite failure into StoreUnavailable. */
  private runNow<T>(operation: string, body: (s: Statements) => T): T {
    try {
      if (this.closed) throw new StoreUnavailable('sqlite', operation, 'the store is closed');
      const statements = this.statements ?? this.reopen(operation);
      const result = body(statements);
      this.tracker.ok();
      return result;
    } catch (error) {
      throw this.failure(operation, error);
    }
  }

  private run<T>(operation: string, body: (s: Statements) => T): Promise<T> {
    return promised(() => this.runNow(operation, body));
  }

  private failure(operation: string, error: unknown): Error {
    if (error instanceof RangeError || error instanceof StoreBadValue) return error;
    if (error instanceof StoreUnavailable) return error;
    const reason = explain(error);
    this.tracker.failed(reason);
    return new StoreUnavailable('sqlite', operation, reason);
  }

  private reopen(operation: string): Statements {
    const interval = this.options.reopenIntervalMs ?? 1000;
    if (Date.now() - this.lastOpenAttempt >= interval) this.open();
    if (this.statements) return this.statements;
    throw new StoreUnavailable('sqlite', operation, this.tracker.reason ?? 'not open');
  }

  /** Moves WAL checkpoints off the event loop (src/store/sqlite-checkpoint.ts); once per store. */
  private startCheckpointer(db: Db, file: string): void {
    if (this.checkpointer) return;
    const worker = new Worker(new URL('./sqlite-checkpoint.js', import.meta.url), {
      workerData: { path: file, intervalMs: CHECKPOINT_INTERVAL_MS, timeoutMs: this.timeoutMs },
    });
    worker.unref(); // never what keeps the process alive
    db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
    const gone = () => {
      if (this.checkpointer !== worker) return;
      this.checkpointer = undefined;
      // SQLite checkpoints on commit again: slower requests now and then, but the WAL stays small.
      this.statements?.db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_DEFAULT}`);
    };
    worker.on('error', gone);
    worker.on('exit', gone);
    this.checkpointer = worker;
  }

  private open(): void {
    this.lastOpenAttempt = Date.now();
    const file = this.options.path;
    let db: Db | undefined;
    try {
      if (file !== ':memory:' && file !== '') {
        mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o750 });
        // Create the file ourselves, so state (addresses of senders and clients) is not world-readable. SQLite
        // gives the -wal and -shm files the same mode.
        const fd = openSync(file, 'a', 0o640);
        closeSync(fd);
      }
      db = new Database(file, { timeout: this.timeoutMs });
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      if (this.options.maxBytes !== undefined) {
        const pageSize = db.pragma('page_size', { simple: true }) as number;
        db.pragma(`max_page_count = ${Math.max(1, Math.floor(this.options.maxBytes / pageSize))}`);
      }
      db.exec(SCHEMA);
      this.statements = new Statements(db);
      this.tracker.ok();
      if (file !== ':memory:' && file !== '') this.startCheckpointer(db, file);
    } catch (error) {
      try {
        db?.close();
      } catch {
        // Already failing; the first error is the one to report.
      }
      this.tracker.failed(`cannot open ${file}: ${explain(error)}`);
    }
  }
}

/** How long close() waits for the checkpointer thread to close its connection before terminating it. */
const CHECKPOINTER_STOP_MS = 2000;

/** Asks the checkpointer thread to close its connection and waits until it has exited (or kills it). */
async function stopCheckpointer(worker: Worker): Promise<void> {
  const exited = once(worker, 'exit').then(() => undefined);
  worker.postMessage('close');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), CHECKPOINTER_STOP_MS);
  });
  try {
    if ((await Promise.race([exited, late])) === 'late') await worker.terminate();
  } catch {
    // A thread that already failed has nothing left to close.
  } finally {
    clearTimeout(timer);
  }
}
