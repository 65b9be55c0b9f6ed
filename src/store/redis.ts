/**
 * The `redis` store driver: for several postwarden instances (primary and secondary MX) that must share exactly
 * the same state. A single server (`url`) or a Sentinel-managed master (`sentinels` + `name`); every key is
 * stored under `keyPrefix` (default `postwarden:`), so several sites or test runs can share one Redis.
 *
 * Contract (see src/core/store.ts for the port): `get`, `set`, `setIfAbsent` (SET NX), `delete`, `expire`
 * (PEXPIRE) are single commands; `compareAndSet`, `increment` with its ttl, `incrementMany`, `getEntry`,
 * `getOrCreate` (GET, else SET: not `SET NX GET`, which Redis before 7.0 refuses) and the
 * values of a `scan` are Lua scripts (defineCommand: EVALSHA, and EVAL after a restart emptied the script cache),
 * so each is atomic across every instance on the same Redis. `incrementMany` is one script call over all its keys
 * (at most MAX_BATCH): it reads and checks every counter first and writes only when all are good, so a bad value
 * leaves nothing changed, and a call that timed out was applied wholly or not at all. Redis runs nothing else
 * meanwhile: some 3 µs a key (2000 keys ≈ 6 ms, 10 000 ≈ 30 ms), within the deadline. `getMany` sends one MGET
 * per chunk of GET_MANY_CHUNK keys, all at once (one round trip), so Redis serves other clients between chunks;
 * MGET reads a key of another type as absent. Both address one server (or the Sentinel master) in one call: keys
 * of one batch may live in different hash slots, so Redis Cluster is not supported. Expiry is Redis's own
 * (PX/PEXPIRE, in ms, by Redis's clock); there is no injectable clock, and `purgeExpired` returns 0. `scan` uses
 * SCAN MATCH on the escaped prefix, so it sees only this store's keys, and is bounded by its limit and a total
 * deadline of 10 × timeoutMs.
 *
 * Failure behaviour: no command is queued while the connection is down (`enableOfflineQueue: false`), none is
 * retried or re-sent after a reconnect (`maxRetriesPerRequest: 0`, `autoResendUnfulfilledCommands: false`), and
 * each has a deadline (`commandTimeout` = timeoutMs): Redis down, hung or failing over rejects every operation
 * with StoreUnavailable at once or within timeoutMs. The client reconnects by itself (backing off to 1 s) and
 * the same store object serves again when Redis is back. Failover: the client asks Sentinel for the master
 * (`role: 'master'`, and ioredis checks the role it reaches), listens for Sentinel's +switch-master
 * (`failoverDetector`), and a READONLY reply — a write that reached a demoted master — makes it drop the
 * connection and resolve the master again (`reconnectOnError`), so it never keeps writing to a replica
 * (rspamd #6215); that one operation fails with StoreUnavailable and PW-S012 is reported. `openRedisStore` never
 * throws for an unreachable Redis: it waits for the first connection attempt to end, then returns a store that
 * reports unhealthy until Redis answers. Outages are reported once through `onEvent` (PW-S010, PW-S011).
 */
import { Redis, type RedisOptions } from 'ioredis';
import {
  checkBatch,
  checkDeltas,
  checkScanLimit,
  checkStep,
  StoreBadValue,
  StoreUnavailable,
  ttlToMs,
  type CounterDelta,
  type Store,
  type StoreEntry,
  type StoreHealth,
} from '../core/store.js';
import { HealthTracker, StoreOptionsError, type StoreEventListener } from './events.js';

export interface RedisStoreOptions {
  /** `redis://[user:password@]host:port/db` for a single server. */
  readonly url?: string;
  /** Sentinels to ask for the master `name` (instead of url). */
  readonly sentinels?: readonly { readonly host: string; readonly port: number }[];
  /** The Sentinel master group name. */
  readonly name?: string;
  readonly username?: string;
  readonly password?: string;
  readonly sentinelPassword?: string;
  /** Database number with Sentinel (with url, put it in the url). */
  readonly db?: number;
  /** Prepended to every key (default `postwarden:`). */
  readonly keyPrefix?: string;
  /** Deadline of each command, ms. */
  readonly timeoutMs?: number;
  /** Deadline of a connection attempt, ms (default 2000). */
  readonly connectTimeoutMs?: number;
  readonly onEvent?: StoreEventListener;
}

export const REDIS_DEFAULT_TIMEOUT_MS = 250;
export const REDIS_DEFAULT_PREFIX = 'postwarden:';
const SCAN_COUNT = 1000;
/** Keys per MGET of a `getMany`. */
export const GET_MANY_CHUNK = 1000;

// KEYS[1] key; ARGV expected, value, ttl ms or ''. 1 when the value was `expected` and is now `value`.
const CAS = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1`;

// KEYS[1] key; ARGV by, ttl ms or ''. A new counter gets the ttl; an existing one keeps its expiry. A result
// beyond JavaScript's safe integers is undone (the script is atomic, so nobody sees it) and refused.
const INCREMENT = `
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n > 9007199254740991 or n < -9007199254740991 then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return redis.error_reply('ERR counter out of range (beyond 2^53 - 1)')
end
if fresh and ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n`;

// KEYS: counters; ARGV: by, ttl ms or '', touch ('1' or '') per key. Pass 1 reads and checks every counter
// (the running sum of a key that repeats included) and returns '<index> <reason>' for the first bad one, having
// written nothing; pass 2 applies them with INCRBY (keeps the expiry) and gives a ttl to the counters it created
// (or, with touch, to every one). Returns the new values, in order. Lua numbers are doubles: exact up to 2^53, and
// a sum beyond still compares correctly with the bound.
const INCREMENT_MANY = `
local max = 9007199254740991
local running = {}
local fresh = {}
for i, k in ipairs(KEYS) do
  local n = running[k]
  if n == nil then
    local v = redis.pcall('GET', k)
    if type(v) == 'table' then return i .. ' ' .. tostring(v.err) end
    if v then
      if not (v == '0' or (#v <= 17 and string.find(v, '^%-?[1-9]%d*$'))) then
        return i .. ' the value is not an integer'
      end
      n = tonumber(v)
      if n > max or n < -max then return i .. ' the value is not an integer' end
    else
      n = 0
      fresh[i] = true
    end
  end
  n = n + tonumber(ARGV[3 * i - 2])
  if n > max or n < -max then return i .. ' the counter would leave the safe integer range' end
  running[k] = n
end
local out = {}
for i, k in ipairs(KEYS) do
  out[i] = redis.call('INCRBY', k, ARGV[3 * i - 2])
  local ttl = ARGV[3 * i - 1]
  if ttl ~= '' and (fresh[i] or ARGV[3 * i] == '1') then redis.call('PEXPIRE', k, ttl) end
end
return out`;

// KEYS[1] key. nil when absent, else { value, pttl } (pttl -1: no expiry).
const ENTRY = `
local v = redis.call('GET', KEYS[1])
if not v then return false end
return { v, redis.call('PTTL', KEYS[1]) }`;

// KEYS: key; ARGV: value, ttl ms or ''. { value, pttl } of a live key; else stores the value and answers nil.
const ENTRY_OR_SET = `
local v = redis.call('GET', KEYS[1])
if v then return { v, redis.call('PTTL', KEYS[1]) } end
if ARGV[2] == '' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return false`;

// KEYS: keys. { value or nil, pttl } per key; keys that vanished or hold another type come back as nil.
const ENTRIES = `
local out = {}
for i, k in ipairs(KEYS) do
  local v = redis.pcall('GET', k)
  if type(v) == 'string' then
    out[2 * i - 1] = v
    out[2 * i] = redis.call('PTTL', k)
  else
    out[2 * i - 1] = false
    out[2 * i] = -2
  end
end
return out`;

interface Scripted {
  pwCas(key: string, expected: string, value: string, ttlMs: string): Promise<number>;
  pwIncrement(key: string, by: string, ttlMs: string): Promise<number>;
  pwEntry(key: string): Promise<[string, number] | null>;
  pwEntryOrSet(key: string, value: string, ttlMs: string): Promise<[string, number] | null>;
  pwEntries(numKeys: number, ...keys: string[]): Promise<(string | number | null)[]>;
  /** New values in order, or '<1-based index> <reason>' for a bad value (nothing written). */
  pwIncrementMany(numKeys: number, ...keysThenArgs: string[]): Promise<number[] | string>;
}

type Client = Redis & Scripted;

/** Escapes Redis glob characters, so a prefix matches literally in SCAN MATCH. */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

function byKey(a: StoreEntry, b: StoreEntry): number {
  return Buffer.compare(Buffer.from(a.key), Buffer.from(b.key));
}

/** An entry from a `{ value, pttl }` script reply (nil: absent); pttl -1 is a key without expiry. */
function toEntry(key: string, reply: [string, number] | null): StoreEntry | undefined {
  if (!reply) return undefined;
  const [value, pttl] = reply;
  return pttl >= 0 ? { key, value, expiresAt: Date.now() + pttl } : { key, value };
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function validateRedisOptions(options: RedisStoreOptions): void {
  const sentinels = options.sentinels?.length ?? 0;
  if ((options.url === undefined) === (sentinels === 0)) {
    throw new StoreOptionsError('redis store: give either url or sentinels (with name), not both or neither');
  }
  if (sentinels > 0 && !options.name) {
    throw new StoreOptionsError('redis store: sentinels need the master name');
  }
  for (const [key, value] of [
    ['timeoutMs', options.timeoutMs],
    ['connectTimeoutMs', options.connectTimeoutMs],
  ] as const) {
    if (value !== undefined && (!Number.isInteger(value) || value < 1)) {
      throw new StoreOptionsError(`redis store: ${key} must be a positive integer (ms): ${value}`);
    }
  }
}

export class RedisStore implements Store {
  readonly driver = 'redis' as const;
  readonly keyPrefix: string;
  private readonly client: Client;
  private readonly timeoutMs: number;
  private readonly tracker: HealthTracker;
  private closed = false;

  constructor(options: RedisStoreOptions) {
    validateRedisOptions(options);
    this.keyPrefix = options.keyPrefix ?? REDIS_DEFAULT_PREFIX;
    this.timeoutMs = options.timeoutMs ?? REDIS_DEFAULT_TIMEOUT_MS;
    this.tracker = new HealthTracker('redis', options.onEvent, 'not connected yet');
    const backoff = (attempt: number) => Math.min(100 * attempt, 1000);
    const common: RedisOptions = {
      keyPrefix: this.keyPrefix,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: this.timeoutMs,
      connectTimeout: options.connectTimeoutMs ?? 2000,
      retryStrategy: backoff,
      reconnectOnError: (error) => {
        if (!/\bREADONLY\b/.test(error.message)) return false;
        this.tracker.emit('PW-S012', `a write reached a read-only replica, reconnecting: ${error.message}`);
        return 1;
      },
      ...(options.username !== undefined ? { username: options.username } : {}),
      ...(options.password !== undefined ? { password: options.password } : {}),
    };
    const client =
      options.url !== undefined
        ? new Redis(options.url, common)
        : new Redis({
            ...common,
            sentinels: options.sentinels?.map((s) => ({ host: s.host, port: s.port })) ?? [],
            name: options.name as string,
            role: 'master',
            failoverDetector: true,
            sentinelRetryStrategy: backoff,
            sentinelCommandTimeout: this.timeoutMs,
            ...(options.sentinelPassword !== undefined ? { sentinelPassword: options.sentinelPassword } : {}),
            ...(options.db !== undefined ? { db: options.db } : {}),
          });
    client.defineCommand('pwCas', { numberOfKeys: 1, lua: CAS });
    client.defineCommand('pwIncrement', { numberOfKeys: 1, lua: INCREMENT });
    client.defineCommand('pwEntry', { numberOfKeys: 1, lua: ENTRY });
    client.defineCommand('pwEntries', { lua: ENTRIES });
    client.defineCommand('pwEntryOrSet', { numberOfKeys: 1, lua: ENTRY_OR_SET });
    client.defineCommand('pwIncrementMany', { lua: INCREMENT_MANY });
    client.on('ready', () => this.tracker.ok());
    client.on('error', (error: Error) => this.tracker.failed(message(error)));
    client.on('close', () => {
      if (!this.closed) this.tracker.failed('connection closed');
    });
    this.client = client as Client;
  }

  /** Resolves when the first connection attempt has ended, either way, or after `ms`. */
  settled(ms: number): Promise<void> {
    if (this.client.status === 'ready') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.client.off('ready', done);
        this.client.off('error', done);
        this.client.off('end', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.client.once('ready', done);
      this.client.once('error', done);
      this.client.once('end', done);
    });
  }

  get(key: string): Promise<string | undefined> {
    return this.run('get', key, async (c) => (await c.get(key)) ?? undefined);
  }

  getEntry(key: string): Promise<StoreEntry | undefined> {
    return this.run('getEntry', key, async (c) => toEntry(key, await c.pwEntry(key)));
  }

  getOrCreate(key: string, value: string, ttlS?: number): Promise<StoreEntry | undefined> {
    return this.run('getOrCreate', key, async (c) => {
      const ms = ttlToMs(ttlS);
      return toEntry(key, await c.pwEntryOrSet(key, value, ms === undefined ? '' : String(ms)));
    });
  }

  set(key: string, value: string, ttlS?: number): Promise<void> {
    return this.run('set', key, async (c) => {
      const ms = ttlToMs(ttlS);
      await (ms === undefined ? c.set(key, value) : c.set(key, value, 'PX', ms));
    });
  }

  setIfAbsent(key: string, value: string, ttlS?: number): Promise<boolean> {
    return this.setNx('setIfAbsent', key, value, ttlS);
  }

  compareAndSet(key: string, expected: string | undefined, value: string, ttlS?: number): Promise<boolean> {
    if (expected === undefined) return this.setNx('compareAndSet', key, value, ttlS);
    return this.run('compareAndSet', key, async (c) => {
      const ms = ttlToMs(ttlS);
      return (await c.pwCas(key, expected, value, ms === undefined ? '' : String(ms))) === 1;
    });
  }

  increment(key: string, by: number, ttlS?: number): Promise<number> {
    return this.run('increment', key, async (c) => {
      checkStep(by);
      const ms = ttlToMs(ttlS);
      const n = await c.pwIncrement(key, String(by), ms === undefined ? '' : String(ms));
      if (!Number.isSafeInteger(n)) {
        throw new StoreBadValue('redis', 'increment', key, 'the counter left the safe integer range');
      }
      return n;
    });
  }

  getMany(keys: readonly string[]): Promise<(string | undefined)[]> {
    return this.run('getMany', '', async (c) => {
      checkBatch('getMany', keys.length);
      const chunks: Promise<(string | null)[]>[] = [];
      for (let start = 0; start < keys.length; start += GET_MANY_CHUNK) {
        // Issued together: ioredis writes each at once, so all chunks share one round trip.
        chunks.push(c.mget(...keys.slice(start, start + GET_MANY_CHUNK)));
      }
      return (await Promise.all(chunks)).flat().map((value) => value ?? undefined);
    });
  }

  incrementMany(deltas: readonly CounterDelta[]): Promise<number[]> {
    return this.run('incrementMany', '', async (c) => {
      const checked = checkDeltas(deltas);
      if (checked.length === 0) return [];
      const args = checked.flatMap((d) => [
        String(d.by),
        d.ttlMs === undefined ? '' : String(d.ttlMs),
        d.touch ? '1' : '',
      ]);
      const reply = await c.pwIncrementMany(checked.length, ...checked.map((d) => d.key), ...args);
      if (typeof reply === 'string') {
        const space = reply.indexOf(' ');
        const key = checked[Number(reply.slice(0, space)) - 1]?.key ?? '';
        throw new StoreBadValue('redis', 'incrementMany', key, reply.slice(space + 1));
      }
      return reply;
    });
  }

  delete(key: string): Promise<boolean> {
    return this.run('delete', key, async (c) => (await c.del(key)) > 0);
  }

  expire(key: string, ttlS: number): Promise<boolean> {
    return this.run('expire', key, async (c) => (await c.pexpire(key, ttlToMs(ttlS) as number)) === 1);
  }

  scan(prefix: string, limit: number): Promise<StoreEntry[]> {
    return this.run('scan', prefix, async (c) => {
      checkScanLimit(limit);
      if (limit === 0) return [];
      const deadline = Date.now() + 10 * this.timeoutMs;
      // SCAN does not apply ioredis's keyPrefix: match and strip it here; the script adds it back.
      const match = `${escapeGlob(this.keyPrefix + prefix)}*`;
      const keys = new Set<string>();
      let cursor = '0';
      do {
        if (Date.now() > deadline) {
          throw new StoreUnavailable('redis', 'scan', `no answer within ${10 * this.timeoutMs} ms`);
        }
        const [next, found] = await c.scan(cursor, 'MATCH', match, 'COUNT', SCAN_COUNT);
        cursor = next;
        for (const full of found) {
          if (keys.size < limit) keys.add(full.slice(this.keyPrefix.length));
        }
      } while (cursor !== '0' && keys.size < limit);
      if (keys.size === 0) return [];
      const list = [...keys];
      const reply = await c.pwEntries(list.length, ...list);
      const now = Date.now();
      const entries: StoreEntry[] = [];
      list.forEach((key, i) => {
        const value = reply[2 * i];
        const pttl = Number(reply[2 * i + 1]);
        if (typeof value !== 'string') return;
        entries.push(pttl >= 0 ? { key, value, expiresAt: now + pttl } : { key, value });
      });
      return entries.sort(byKey);
    });
  }

  purgeExpired(): Promise<number> {
    return this.run('purgeExpired', '', () => Promise.resolve(0));
  }

  compact(): Promise<void> {
    return this.run('compact', '', () => Promise.resolve());
  }

  ping(): Promise<void> {
    return this.run('ping', '', async (c) => {
      await c.ping();
    });
  }

  health(): StoreHealth {
    if (this.closed) return { driver: 'redis', healthy: false, reason: 'closed' };
    const reason = this.tracker.reason ?? (this.client.status === 'ready' ? undefined : this.client.status);
    return reason === undefined
      ? { driver: 'redis', healthy: true }
      : { driver: 'redis', healthy: false, reason };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.client.status === 'ready') {
      try {
        await this.client.quit();
      } catch {
        // Going away anyway.
      }
    }
    this.client.disconnect();
  }

  /** SET NX: true when the key was absent (Redis has already dropped an expired key). */
  private setNx(operation: string, key: string, value: string, ttlS: number | undefined): Promise<boolean> {
    return this.run(operation, key, async (c) => {
      const ms = ttlToMs(ttlS);
      const reply = await (ms === undefined ? c.set(key, value, 'NX') : c.set(key, value, 'PX', ms, 'NX'));
      return reply === 'OK';
    });
  }

  /** Runs one operation, turning every connection or server failure into StoreUnavailable. */
  private async run<T>(operation: string, key: string, body: (c: Client) => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreUnavailable('redis', operation, 'the store is closed');
    try {
      const result = await body(this.client);
      this.tracker.ok();
      return result;
    } catch (error) {
      throw this.failure(operation, key, error);
    }
  }

  private failure(operation: string, key: string, error: unknown): Error {
    if (error instanceof RangeError || error instanceof StoreBadValue || error instanceof StoreUnavailable) {
      return error;
    }
    const text = message(error);
    const isReply = (error as { name?: unknown } | null)?.name === 'ReplyError';
    if (isReply && /WRONGTYPE|not an integer|out of range|overflow/.test(text)) {
      return new StoreBadValue('redis', operation, key, text);
    }
    const reason = text === 'Command timed out' ? `no answer within ${this.timeoutMs} ms` : text;
    this.tracker.failed(reason);
    return new StoreUnavailable('redis', operation, reason);
  }
}
