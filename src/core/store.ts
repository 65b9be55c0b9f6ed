/**
 * The state port: one key-value interface for everything postwarden keeps — greylist triplets, the
 * auto-whitelist, rate counters, reputation, later Bayes tokens and the quarantine index. Drivers (src/store:
 * `sqlite` for one host, `redis` for several MX hosts sharing state) implement it; the core never imports one.
 *
 * Contract:
 * - Keys are strings the callers namespace (`grey:…`, `awl:…`, `rate:…`); any characters are allowed (colons,
 *   spaces, unicode, IPv6 addresses). Values are strings.
 * - Every entry may expire: `ttlS` is in seconds (fractions allowed, rounded to the millisecond; absent = no
 *   expiry). An expired entry is absent to every operation at once, whether or not it has been purged yet.
 * - Writes that take a `ttlS` replace value and expiry together: `set(k, v)` without a ttl leaves an entry that
 *   never expires, even if the old one did. Only `increment` and `incrementMany` keep the expiry of an entry that
 *   exists (unless a delta asks to `touch` it).
 * - Every operation is atomic, also across store instances sharing one backend (two MX hosts on one Redis, two
 *   processes on one SQLite file): `getOrCreate` (or `setIfAbsent`), `compareAndSet` and `increment` are the
 *   building blocks for first sight, read-modify-write (token buckets) and counters. `incrementMany` is atomic
 *   as a whole (all or none of its deltas, in one transaction or one script); `getMany` reads one consistent
 *   snapshot on SQLite and one per chunk of keys on Redis (another writer's batch may land between two chunks).
 * - Batches (`getMany`, `incrementMany`, for Bayes token counters) take at most MAX_BATCH keys and cost one round
 *   trip (Redis) or one transaction (SQLite), not one per key.
 * - Clocks: the SQLite driver reads an injectable `now()` (tests control time); Redis expires entries by its
 *   own clock, and `expiresAt` is then computed from the local clock plus the remaining TTL Redis reports.
 *
 * Failure behaviour: "not found" is a value (`undefined`, `false`); trouble is an exception with a stable code.
 * When the backend cannot answer in time (down, locked, disk full, failover under way) every operation rejects
 * with StoreUnavailable (PW-S001) carrying the driver's reason — never a silent "not found". Every operation has a
 * deadline (the driver's `timeoutMs`) and never hangs. A write that timed out may or may not have been applied.
 * A stored value that does not suit the operation (increment of a non-integer) rejects with StoreBadValue
 * (PW-S002). Arguments that are programming errors (a ttl that is not positive, a fractional increment, a scan
 * limit out of range) reject with RangeError.
 */
import type { Answer } from './answer.js';

export type StoreDriver = 'sqlite' | 'redis';

export interface StoreEntry {
  readonly key: string;
  readonly value: string;
  /** When the entry expires, in milliseconds since the epoch; absent when it never does. */
  readonly expiresAt?: number;
}

/** A snapshot for /readyz: cheap, synchronous, from what the store saw last. */
export interface StoreHealth {
  readonly driver: StoreDriver;
  readonly healthy: boolean;
  /** Why it is unhealthy. */
  readonly reason?: string;
}

/** The most entries one `scan` may return. */
export const MAX_SCAN_LIMIT = 10_000;

/** The most keys one `getMany` or deltas one `incrementMany` may take. */
export const MAX_BATCH = 10_000;

/** One counter change of an `incrementMany`. */
export interface CounterDelta {
  readonly key: string;
  /** A safe integer, may be negative or 0. */
  readonly by: number;
  /** Expiry of a counter this delta creates (seconds); absent = never expires. */
  readonly ttlS?: number;
  /**
   * With `ttlS`: also restart the expiry of a counter that exists (a sliding expiry: Bayes tokens that keep being
   * learned stay, a token not learned for `ttlS` goes). Without it an existing counter keeps its expiry, as with
   * `increment`. RangeError without `ttlS`.
   */
  readonly touch?: boolean;
}

/** The operations a store may also offer synchronously (see `Store.immediate`). */
export type ImmediateOperation =
  'get' | 'getEntry' | 'getOrCreate' | 'set' | 'setIfAbsent' | 'increment' | 'expire';

/**
 * A store's operations answered at once: the same meaning, the value instead of a promise, and a thrown error
 * (StoreUnavailable, StoreBadValue, RangeError) instead of a rejection.
 */
export type ImmediateStore = {
  readonly [K in ImmediateOperation]: (...args: Parameters<Store[K]>) => Awaited<ReturnType<Store[K]>>;
};

/** A store's operations as answers: values where the store can give them at once, else promises. */
export type AnswerStore = {
  readonly [K in ImmediateOperation]: (
    ...args: Parameters<Store[K]>
  ) => Answer<Awaited<ReturnType<Store[K]>>>;
};

/** The store's immediate operations when it has them (SQLite), else its promised ones (Redis). */
export function answerStore(store: Store): AnswerStore {
  return store.immediate ?? store;
}

export interface Store {
  readonly driver: StoreDriver;
  /**
   * The hot-path operations answered synchronously, when the backend needs no I/O wait for them (SQLite: an
   * embedded database, whose every call is synchronous anyway). A request whose checks all answer at once is
   * answered without a turn of the event loop (src/core/answer.ts).
   */
  readonly immediate?: ImmediateStore;
  /** The value, or undefined when the key is absent or expired. */
  get(key: string): Promise<string | undefined>;
  /** The value with its expiry, or undefined when the key is absent or expired. */
  getEntry(key: string): Promise<StoreEntry | undefined>;
  /**
   * The live entry at `key`, as getEntry; when there is none, stores `value` (with `ttlS`, as setIfAbsent) and
   * answers undefined. One step: of several instances racing on a new key, exactly one gets undefined and the
   * others get its entry. First sight in one round trip where getEntry then setIfAbsent would take two.
   */
  getOrCreate(key: string, value: string, ttlS?: number): Promise<StoreEntry | undefined>;
  /** Stores the value; the entry expires after `ttlS` seconds, or never when it is absent. */
  set(key: string, value: string, ttlS?: number): Promise<void>;
  /** Stores the value only if the key is absent (or expired); true when it did (first sight). */
  setIfAbsent(key: string, value: string, ttlS?: number): Promise<boolean>;
  /**
   * Replaces the value (and expiry) only if the current value is `expected` — or, with `expected` undefined, only
   * if the key is absent. True when it did; exactly one of several racing writers wins.
   */
  compareAndSet(key: string, expected: string | undefined, value: string, ttlS?: number): Promise<boolean>;
  /**
   * Adds `by` (a safe integer, may be negative) to the integer stored at `key` and returns the result. An absent
   * key starts at 0 and gets `ttlS`; an existing counter keeps its expiry. A non-integer value is StoreBadValue.
   */
  increment(key: string, by: number, ttlS?: number): Promise<number>;
  /**
   * The values of `keys` (at most MAX_BATCH), in their order: undefined for a key that is absent or expired (and,
   * on Redis, for a key holding another type). Keys may repeat. One read, not one per key.
   */
  getMany(keys: readonly string[]): Promise<(string | undefined)[]>;
  /**
   * Applies each delta (at most MAX_BATCH) as `increment` would, in order, and returns the new values in that
   * order; a key that repeats sees the earlier deltas. Atomic as a whole: when one stored value is not an integer
   * or a counter would leave the safe integer range, StoreBadValue names that key and no counter has changed; a
   * batch that timed out (StoreUnavailable) was applied wholly or not at all. Arguments are all checked
   * (RangeError) before the backend is touched.
   */
  incrementMany(deltas: readonly CounterDelta[]): Promise<number[]>;
  /** Removes the key; true when it was there (and not expired). */
  delete(key: string): Promise<boolean>;
  /** Sets a new expiry on an existing entry; false when the key is absent. */
  expire(key: string, ttlS: number): Promise<boolean>;
  /**
   * Up to `limit` (at most MAX_SCAN_LIMIT) live entries whose keys start with `prefix`, sorted by key (UTF-8
   * byte order). For admin listings, not the hot path. SQLite returns the first keys in that order; Redis returns
   * whichever it meets first.
   */
  scan(prefix: string, limit: number): Promise<StoreEntry[]>;
  /** Removes expired entries and returns how many; 0 where the backend expires entries by itself (Redis). */
  purgeExpired(): Promise<number>;
  /** Gives back space the backend no longer needs (SQLite: a WAL checkpoint and `PRAGMA optimize`); a no-op
   * where the backend manages its own memory (Redis). */
  compact(): Promise<void>;
  /** Resolves when the backend answers. */
  ping(): Promise<void>;
  health(): StoreHealth;
  /** Releases the connection; later operations reject with StoreUnavailable. Idempotent. */
  close(): Promise<void>;
}

/** The backend could not answer (in time): down, locked, full, read-only, closed. */
export class StoreUnavailable extends Error {
  readonly code = 'PW-S001';
  constructor(
    readonly driver: StoreDriver,
    readonly operation: string,
    readonly reason: string,
  ) {
    super(`store (${driver}) unavailable in ${operation}: ${reason}`);
  }
}

/** The stored value does not suit the operation (e.g. increment of a value that is not an integer). */
export class StoreBadValue extends Error {
  readonly code = 'PW-S002';
  constructor(
    readonly driver: StoreDriver,
    readonly operation: string,
    readonly key: string,
    readonly reason: string,
  ) {
    super(`store (${driver}) ${operation} of ${JSON.stringify(key)}: ${reason}`);
  }
}

/** A ttl in seconds as whole milliseconds (at least 1), or undefined for no expiry; RangeError when invalid. */
export function ttlToMs(ttlS: number | undefined): number | undefined {
  if (ttlS === undefined) return undefined;
  if (!Number.isFinite(ttlS) || ttlS <= 0)
    throw new RangeError(`ttl must be a positive number of seconds: ${ttlS}`);
  const ms = Math.round(ttlS * 1000);
  if (!Number.isSafeInteger(ms)) throw new RangeError(`ttl is too large: ${ttlS}`);
  return Math.max(1, ms);
}

/** Checks an increment step; RangeError unless it is a safe integer. */
export function checkStep(by: number): void {
  if (!Number.isSafeInteger(by)) throw new RangeError(`increment must be a safe integer: ${by}`);
}

/** Checks the size of a batch; RangeError beyond MAX_BATCH. */
export function checkBatch(operation: string, size: number): void {
  if (size > MAX_BATCH) {
    throw new RangeError(
      `${operation} takes at most ${MAX_BATCH} keys per call, not ${size}: split the batch`,
    );
  }
}

/** A checked delta: the step and the ttl in ms (undefined: none). */
export interface CheckedDelta {
  readonly key: string;
  readonly by: number;
  readonly ttlMs: number | undefined;
  readonly touch: boolean;
}

/** Checks every delta of an `incrementMany` before anything is written; RangeError for the first bad one. */
export function checkDeltas(deltas: readonly CounterDelta[]): CheckedDelta[] {
  checkBatch('incrementMany', deltas.length);
  return deltas.map(({ key, by, ttlS, touch = false }) => {
    checkStep(by);
    const ttlMs = ttlToMs(ttlS);
    if (touch && ttlMs === undefined) {
      throw new RangeError(`incrementMany of ${JSON.stringify(key)}: touch needs a ttlS`);
    }
    return { key, by, ttlMs, touch };
  });
}

/** Checks a scan limit; RangeError unless it is an integer from 0 to MAX_SCAN_LIMIT. */
export function checkScanLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 0 || limit > MAX_SCAN_LIMIT) {
    throw new RangeError(`scan limit must be an integer from 0 to ${MAX_SCAN_LIMIT}: ${limit}`);
  }
}

/**
 * Parses a stored counter: the canonical decimal form of a safe integer (no sign on 0, no `+`, no leading zeros,
 * no spaces: what Redis's INCRBY accepts), else undefined.
 */
export function parseCounter(value: string): number | undefined {
  if (value.length > 17 || !/^(?:0|-?[1-9]\d*)$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}
