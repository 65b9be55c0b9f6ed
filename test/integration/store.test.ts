/**
 * The shared store suite: one list of cases (`storeCases`) run against both drivers — SQLite in a temp dir, with
 * an injected clock, and a real redis-server (test/harness/redis.ts) on a free loopback port, with short real
 * TTLs — then what only one driver has: SQLite's file, purge, full disk, lock and open failure, and two threads
 * on one file (counters, batches, first sight); Redis's key prefix, a stopped server (fail fast, then the same
 * store serves again), a hung server (deadline), a read-only replica (READONLY) and a Sentinel failover.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import {
  MAX_BATCH,
  MAX_SCAN_LIMIT,
  StoreBadValue,
  StoreUnavailable,
  type Store,
  type StoreDriver,
} from '../../src/core/store.js';
import { openStore, STORE_EVENT_CODES, type StoreEvent, type StoreOptions } from '../../src/store/index.js';
import { freeLoopbackPort, startRedis, type RedisServer } from '../harness/redis.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'pw-store-'));
const unhandled: unknown[] = [];
process.on('unhandledRejection', (error) => unhandled.push(error));
process.on('uncaughtException', (error) => unhandled.push(error));
after(() => rmSync(tmp, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `store.ping()` until it answers (after a restart or reconnect). */
async function answers(store: Store, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await store.ping();
      return;
    } catch (e) {
      assert.ok(e instanceof StoreUnavailable, String(e));
      if (Date.now() > deadline) assert.fail(`${what}: no answer within ${timeoutMs} ms`);
      await sleep(20);
    }
  }
}

let nsCount = 0;
/** A key namespace of its own for each test, so tests on one shared backend never see each other's keys. */
const freshNs = () => `t${++nsCount}:`;

/**
 * Runs `body` in two worker threads at once, each with its own SqliteStore (`store`) on one file under `dir`,
 * `workerData.name` 'one' or 'two'. `body` is the text of an async function body (plain JavaScript); what it
 * returns is that thread's report. Resolves with a store on the same file in this thread and both reports; a
 * thread that threw fails the test.
 */
async function inTwoThreads<T>(dir: string, body: string): Promise<{ main: Store; reports: T[] }> {
  const file = path.join(tmp, dir, 'state.db');
  const main = await openStore({ driver: 'sqlite', path: file });
  await main.ping(); // creates the file and schema before the threads race
  const module = new URL('../../src/store/sqlite.js', import.meta.url).href;
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.module).then(async ({ SqliteStore }) => {
      const store = new SqliteStore({ path: workerData.file, timeoutMs: 5000 });
      const report = await (async () => { ${body} })();
      await store.close();
      parentPort.postMessage({ report });
    }).catch((e) => parentPort.postMessage({ error: e.message }));`;
  const run = (name: string) =>
    new Promise<{ report?: T; error?: string }>((resolve, reject) => {
      const worker = new Worker(code, { eval: true, workerData: { module, file, name } });
      worker.once('message', resolve);
      worker.once('error', reject);
    });
  const answers = await Promise.all([run('one'), run('two')]);
  for (const answer of answers) assert.equal(answer.error, undefined, `a thread failed: ${answer.error}`);
  return { main, reports: answers.map((answer) => answer.report as T) };
}

/** What the shared cases need of a driver. */
interface Backend {
  readonly driver: StoreDriver;
  /** A new store instance on the shared backend: another connection, or another MX host. */
  open(): Promise<Store>;
  /** Lets `s` seconds of store time pass: the injected clock for SQLite, real time for Redis. */
  pass(s: number): Promise<void>;
  /** A ttl worth waiting for: long for SQLite (the clock jumps), short for Redis (real time). */
  readonly shortTtlS: number;
  /** The store's idea of now (ms), for expiresAt. */
  now(): number;
  /** Slack allowed on expiresAt, ms. */
  readonly slackMs: number;
}

/** Asserts that `operation` rejects with StoreUnavailable within `maxMs`, and returns the error. */
async function unavailable(
  what: string,
  operation: () => Promise<unknown>,
  maxMs: number,
  reason?: RegExp,
): Promise<StoreUnavailable> {
  const started = performance.now();
  const error = await operation().then(
    () => assert.fail(`${what}: resolved, expected StoreUnavailable`),
    (e: unknown) => e,
  );
  const ms = performance.now() - started;
  assert.ok(error instanceof StoreUnavailable, `${what}: ${String(error)}`);
  assert.equal(error.code, 'PW-S001');
  assert.ok(ms < maxMs, `${what}: took ${ms.toFixed(0)} ms, more than ${maxMs}`);
  if (reason) assert.match(error.reason, reason, what);
  return error;
}

/** Every operation of the port, each as a thunk, for the "backend is down" tests. */
function everyOperation(store: Store, key: string): [string, () => Promise<unknown>][] {
  return [
    ['get', () => store.get(key)],
    ['getEntry', () => store.getEntry(key)],
    ['set', () => store.set(key, 'v', 10)],
    ['getOrCreate', () => store.getOrCreate(key, 'v', 10)],
    ['setIfAbsent', () => store.setIfAbsent(key, 'v', 10)],
    ['compareAndSet', () => store.compareAndSet(key, 'v', 'w', 10)],
    ['compareAndSet absent', () => store.compareAndSet(key, undefined, 'w')],
    ['increment', () => store.increment(`${key}:n`, 1, 10)],
    ['getMany', () => store.getMany([key, `${key}:n`, `${key}:m`])],
    [
      'incrementMany',
      () =>
        store.incrementMany([
          { key: `${key}:n`, by: 1, ttlS: 10 },
          { key: `${key}:m`, by: 2 },
        ]),
    ],
    ['delete', () => store.delete(key)],
    ['expire', () => store.expire(key, 10)],
    ['scan', () => store.scan(key, 10)],
    ['ping', () => store.ping()],
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// The shared cases: the same tests for every driver.

function storeCases(backend: Backend): void {
  const opened: Store[] = [];
  const open = async () => {
    const store = await backend.open();
    opened.push(store);
    return store;
  };
  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close();
  });

  test('get, set, overwrite; set without a ttl leaves no expiry', async () => {
    const s = await open();
    const k = `${freshNs()}a`;
    assert.equal(await s.get(k), undefined);
    assert.equal(await s.getEntry(k), undefined);
    await s.set(k, 'one');
    assert.equal(await s.get(k), 'one');
    assert.deepEqual(await s.getEntry(k), { key: k, value: 'one' });
    await s.set(k, 'two', 100);
    assert.equal(await s.get(k), 'two');
    const entry = await s.getEntry(k);
    assert.ok(entry?.expiresAt !== undefined, 'a ttl gives an expiry');
    assert.ok(Math.abs(entry.expiresAt - (backend.now() + 100_000)) <= backend.slackMs, `${entry.expiresAt}`);
    await s.set(k, 'three');
    assert.deepEqual(await s.getEntry(k), { key: k, value: 'three' }, 'set without ttl replaces the expiry');
    await s.set(k, '');
    assert.equal(await s.get(k), '', 'an empty value is a value, not absence');
  });

  test('setIfAbsent: true on first sight only, and the first value stays', async () => {
    const s = await open();
    const k = `${freshNs()}grey:192.0.2.0/24:a@b.example:c@d.example`;
    assert.equal(await s.setIfAbsent(k, 'first', 100), true);
    assert.equal(await s.setIfAbsent(k, 'second', 100), false);
    assert.equal(await s.setIfAbsent(k, 'third'), false);
    const entry = await s.getEntry(k);
    assert.equal(entry?.value, 'first');
    assert.ok(entry?.expiresAt !== undefined, 'the first write’s ttl stays');
  });

  test('getOrCreate: first sight stores and answers nothing; later calls get that entry unchanged', async () => {
    const s = await open();
    const ns = freshNs();
    const k = `${ns}grey:192.0.2.0/24|a@b.example|c@d.example`;
    assert.equal(await s.getOrCreate(k, 'first', 100), undefined, 'absent: created');
    const entry = await s.getEntry(k);
    assert.equal(entry?.value, 'first');
    assert.ok(entry.expiresAt !== undefined, 'with the ttl given');
    assert.ok(Math.abs(entry.expiresAt - (backend.now() + 100_000)) <= backend.slackMs, `${entry.expiresAt}`);
    const again = await s.getOrCreate(k, 'second', 5);
    assert.equal(again?.value, 'first', 'present: the stored value, not replaced');
    assert.ok(
      again.expiresAt !== undefined && Math.abs(again.expiresAt - entry.expiresAt) <= backend.slackMs,
    );
    assert.equal((await s.getEntry(k))?.value, 'first');

    assert.equal(await s.getOrCreate(`${ns}forever`, 'v'), undefined);
    assert.deepEqual(await s.getOrCreate(`${ns}forever`, 'w'), { key: `${ns}forever`, value: 'v' }, 'no ttl');

    const ttl = backend.shortTtlS;
    assert.equal(await s.getOrCreate(`${ns}short`, 'old', ttl), undefined);
    await backend.pass(ttl);
    assert.equal(await s.getOrCreate(`${ns}short`, 'new', 100), undefined, 'an expired entry is absent');
    assert.equal(await s.get(`${ns}short`), 'new');
  });

  test('getOrCreate: of instances racing on a new key, exactly one creates it and the rest read it', async () => {
    const stores = [await open(), await open(), await open(), await open()];
    const k = `${freshNs()}race`;
    const answers = await Promise.all(stores.map((s, i) => s.getOrCreate(k, `v${i}`, 100)));
    const created = answers.flatMap((a, i) => (a === undefined ? [i] : []));
    assert.equal(created.length, 1, `created by ${JSON.stringify(created)}`);
    for (const a of answers) if (a) assert.equal(a.value, `v${created[0]}`);
    assert.equal(await stores[0]?.get(k), `v${created[0]}`);
  });

  test('compareAndSet: absent, match, mismatch; value and expiry replaced together', async () => {
    const s = await open();
    const k = `${freshNs()}cas`;
    assert.equal(await s.compareAndSet(k, 'x', 'y'), false, 'expected a value, key absent');
    assert.equal(await s.get(k), undefined);
    assert.equal(await s.compareAndSet(k, undefined, 'v1', 100), true, 'undefined = must be absent');
    assert.equal(await s.compareAndSet(k, undefined, 'v1b'), false, 'now present');
    assert.equal(await s.compareAndSet(k, 'nope', 'v2'), false, 'mismatch');
    assert.equal(await s.get(k), 'v1');
    assert.equal(await s.compareAndSet(k, 'v1', 'v2'), true, 'match');
    assert.deepEqual(await s.getEntry(k), { key: k, value: 'v2' }, 'no ttl: no expiry');
    assert.equal(await s.compareAndSet(k, 'v2', 'v3', 50), true);
    const entry = await s.getEntry(k);
    assert.equal(entry?.value, 'v3');
    assert.ok(entry?.expiresAt !== undefined);
    assert.ok(Math.abs(entry.expiresAt - (backend.now() + 50_000)) <= backend.slackMs);
    assert.equal(await s.compareAndSet(k, 'v2', 'v4'), false, 'the old value no longer matches');
    assert.equal(await s.compareAndSet(k, 'V3', 'v4'), false, 'comparison is exact (case)');
    await s.set(k, '');
    assert.equal(await s.compareAndSet(k, '', 'filled'), true, 'an empty value can be expected');
    assert.equal(await s.get(k), 'filled');
  });

  test('increment: starts at 0, adds, goes negative; values are decimal strings', async () => {
    const s = await open();
    const ns = freshNs();
    const k = `${ns}rate:n`;
    assert.equal(await s.increment(k, 1), 1);
    assert.equal(await s.increment(k, 41), 42);
    assert.equal(await s.increment(k, -50), -8);
    assert.equal(await s.increment(k, 0), -8);
    assert.equal(await s.get(k), '-8');
    await s.set(`${ns}preset`, '10');
    assert.equal(await s.increment(`${ns}preset`, 5), 15);
    assert.equal(await s.increment(`${ns}big`, 2 ** 52), 2 ** 52);
    assert.equal(await s.increment(`${ns}big`, 2 ** 52 - 1), Number.MAX_SAFE_INTEGER);
    assert.equal(await s.increment(`${ns}fresh`, 5, 100), 5);
    assert.ok((await s.getEntry(`${ns}fresh`))?.expiresAt !== undefined, 'a new counter gets the ttl');
  });

  test('increment of a value that is not an integer is StoreBadValue (PW-S002), and changes nothing', async () => {
    const s = await open();
    const ns = freshNs();
    for (const bad of ['abc', '1.5', ' 1', '1e3', '', '007', '-0', '+5', '9007199254740993']) {
      const k = `${ns}${bad}`;
      await s.set(k, bad);
      await assert.rejects(s.increment(k, 1), (e: unknown) => {
        assert.ok(e instanceof StoreBadValue, `${JSON.stringify(bad)}: ${String(e)}`);
        assert.equal(e.code, 'PW-S002');
        assert.equal(e.key, k);
        return true;
      });
      assert.equal(await s.get(k), bad);
    }
    assert.equal(s.health().healthy, true, 'a bad value is not an outage');
  });

  test('arguments that are programming errors reject with RangeError', async () => {
    const s = await open();
    const k = `${freshNs()}x`;
    for (const ttl of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await assert.rejects(s.set(k, 'v', ttl), RangeError, `ttl ${ttl}`);
      await assert.rejects(s.setIfAbsent(k, 'v', ttl), RangeError);
      await assert.rejects(s.compareAndSet(k, 'a', 'v', ttl), RangeError);
      await assert.rejects(s.increment(k, 1, ttl), RangeError);
      await assert.rejects(s.expire(k, ttl), RangeError);
    }
    await assert.rejects(s.increment(k, 1.5), RangeError);
    await assert.rejects(s.increment(k, Number.MAX_SAFE_INTEGER + 1), RangeError);
    await assert.rejects(s.scan('', -1), RangeError);
    await assert.rejects(s.scan('', MAX_SCAN_LIMIT + 1), RangeError);
    await assert.rejects(s.scan('', 1.5), RangeError);
    assert.equal(await s.get(k), undefined, 'nothing was written');
  });

  test('delete and expire: true only for a key that is there', async () => {
    const s = await open();
    const k = `${freshNs()}d`;
    assert.equal(await s.delete(k), false);
    assert.equal(await s.expire(k, 10), false);
    assert.equal(await s.get(k), undefined, 'expire does not create');
    await s.set(k, 'v');
    assert.equal(await s.expire(k, 30), true);
    const entry = await s.getEntry(k);
    assert.ok(entry?.expiresAt !== undefined);
    assert.ok(Math.abs(entry.expiresAt - (backend.now() + 30_000)) <= backend.slackMs);
    assert.equal(await s.delete(k), true);
    assert.equal(await s.delete(k), false);
    assert.equal(await s.get(k), undefined);
  });

  test('expiry: an expired entry is absent to every operation; an existing counter keeps its expiry', async () => {
    const s = await open();
    const ns = freshNs();
    const ttl = backend.shortTtlS;
    await s.set(`${ns}get`, 'v', ttl);
    await s.set(`${ns}scan:1`, 'v', ttl);
    await s.set(`${ns}scan:2`, 'kept');
    await s.set(`${ns}sia`, 'old', ttl);
    await s.set(`${ns}cas`, 'old', ttl);
    await s.set(`${ns}casabsent`, 'old', ttl);
    await s.set(`${ns}del`, 'v', ttl);
    await s.set(`${ns}exp`, 'v', ttl);
    await s.set(`${ns}persist`, 'v', ttl);
    await s.set(`${ns}persist`, 'forever'); // set without ttl: no expiry any more
    await s.set(`${ns}shortened`, 'v');
    assert.equal(await s.expire(`${ns}shortened`, ttl), true);
    assert.equal(await s.increment(`${ns}counter`, 1, ttl), 1);
    assert.equal(await s.increment(`${ns}counter-reset`, 1, ttl), 1);
    assert.equal(await s.get(`${ns}get`), 'v', 'live before its ttl');

    await backend.pass(ttl / 2);
    // Incrementing an existing counter, even with a ttl, keeps the expiry it has.
    assert.equal(await s.increment(`${ns}counter`, 1, ttl), 2);
    assert.equal(await s.get(`${ns}counter`), '2');

    await backend.pass(ttl / 2);
    assert.equal(await s.get(`${ns}get`), undefined, 'get');
    assert.equal(await s.getEntry(`${ns}get`), undefined, 'getEntry');
    assert.deepEqual(
      (await s.scan(`${ns}scan:`, 10)).map((e) => e.key),
      [`${ns}scan:2`],
      'scan',
    );
    assert.equal(
      await s.setIfAbsent(`${ns}sia`, 'new', ttl),
      true,
      'setIfAbsent sees an expired key as absent',
    );
    assert.equal(await s.get(`${ns}sia`), 'new');
    assert.equal(await s.compareAndSet(`${ns}cas`, 'old', 'new'), false, 'CAS on an expired value fails');
    assert.equal(await s.compareAndSet(`${ns}casabsent`, undefined, 'new'), true, 'expired = absent for CAS');
    assert.equal(await s.delete(`${ns}del`), false, 'delete of an expired key');
    assert.equal(await s.expire(`${ns}exp`, 100), false, 'expire does not revive');
    assert.equal(await s.get(`${ns}exp`), undefined);
    assert.equal(await s.get(`${ns}persist`), 'forever', 'set without ttl removed the old expiry');
    assert.equal(await s.get(`${ns}shortened`), undefined, 'expire shortened an entry');
    assert.equal(await s.get(`${ns}counter`), undefined, 'the counter kept its first expiry');
    assert.equal(await s.increment(`${ns}counter-reset`, 5), 5, 'an expired counter starts again at 0');
  });

  test('scan: prefix, sorted, bounded; glob characters in the prefix are literal', async () => {
    const s = await open();
    const ns = freshNs();
    const keys = [
      'grey:c',
      'grey:a',
      'grey:b',
      'grey:b:sub',
      'greyish',
      'awl:a',
      'x*y',
      'x?y',
      'x[y]',
      'xzy',
    ];
    for (const k of keys) await s.set(ns + k, `v-${k}`, k === 'grey:a' ? 100 : undefined);
    const grey = await s.scan(`${ns}grey:`, 100);
    assert.deepEqual(
      grey.map((e) => e.key),
      ['grey:a', 'grey:b', 'grey:b:sub', 'grey:c'].map((k) => ns + k),
    );
    assert.equal(grey[0]?.value, 'v-grey:a');
    assert.ok(grey[0]?.expiresAt !== undefined, 'entries carry their expiry');
    assert.equal(grey[1]?.expiresAt, undefined);
    assert.equal((await s.scan(`${ns}grey:`, 2)).length, 2, 'limit bounds the answer');
    assert.deepEqual(await s.scan(`${ns}grey:`, 0), []);
    assert.deepEqual(await s.scan(`${ns}nothing`, 10), []);
    assert.deepEqual(
      (await s.scan(`${ns}x*`, 10)).map((e) => e.key),
      [`${ns}x*y`],
    );
    assert.deepEqual(
      (await s.scan(`${ns}x?`, 10)).map((e) => e.key),
      [`${ns}x?y`],
    );
    assert.deepEqual(
      (await s.scan(`${ns}x[`, 10)).map((e) => e.key),
      [`${ns}x[y]`],
    );
    assert.equal((await s.scan(ns, MAX_SCAN_LIMIT)).length, keys.length);
  });

  test('keys with odd characters and values with any text round-trip', async () => {
    const s = await open();
    const ns = freshNs();
    const keys = [
      'grey:192.0.2.0/24:sender@example.org:rcpt@example.net',
      'grey:2001:db8:85a3::/64:a@b:c@d',
      'rep:[::ffff:192.0.2.1]',
      'rate:fe80::1%eth0',
      'key with spaces  and\ttabs',
      'awl:müller@bücher.example',
      'ключ:日本語:😀',
      'line\nbreak\r\n',
      'quote"\'`\\',
      '%s%d{}$1',
    ];
    const values = ['', 'plain', 'ünïcødé 😀 日本', 'nul\u0000inside', 'multi\nline\r\n', '{"json":[1,2]}'];
    for (const [i, k] of keys.entries()) {
      const key = ns + k;
      const value = values[i % values.length] as string;
      await s.set(key, value);
      assert.equal(await s.get(key), value, JSON.stringify(k));
      assert.deepEqual(await s.scan(key, 5), [{ key, value }], `scan ${JSON.stringify(k)}`);
      assert.equal(await s.compareAndSet(key, value, `${value}!`), true, `cas ${JSON.stringify(k)}`);
      assert.equal(await s.increment(`${key}#n`, 3), 3);
    }
    assert.equal((await s.scan(ns, 100)).length, keys.length * 2);
    for (const k of keys) assert.equal(await s.delete(ns + k), true, JSON.stringify(k));
  });

  test('large values (1 MiB) round-trip and can be compared', async () => {
    const s = await open();
    const k = `${freshNs()}big`;
    const big = 'x'.repeat(512 * 1024) + 'ÿ😀'.repeat(128 * 1024);
    await s.set(k, big);
    assert.equal(await s.get(k), big);
    assert.equal(await s.compareAndSet(k, big, `${big}+`), true);
    assert.equal((await s.get(k))?.length, big.length + 1);
  });

  test('two instances on one backend see each other’s writes (two MX hosts)', async () => {
    const a = await open();
    const b = await open();
    const ns = freshNs();
    await a.set(`${ns}k`, 'from-a', 100);
    assert.equal(await b.get(`${ns}k`), 'from-a');
    assert.equal(await b.setIfAbsent(`${ns}k`, 'from-b'), false, 'b sees a’s triplet as known');
    assert.equal(await b.compareAndSet(`${ns}k`, 'from-a', 'from-b'), true);
    assert.equal(await a.get(`${ns}k`), 'from-b');
    assert.equal(await a.increment(`${ns}n`, 2), 2);
    assert.equal(await b.increment(`${ns}n`, 3), 5);
    assert.equal(await a.delete(`${ns}k`), true);
    assert.equal(await b.get(`${ns}k`), undefined);
    assert.deepEqual(
      (await b.scan(ns, 10)).map((e) => e.value),
      ['5'],
    );
  });

  test('atomic under concurrency: 200 increments on two instances give exactly 200', async () => {
    const a = await open();
    const b = await open();
    const k = `${freshNs()}rate:burst`;
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? a : b).increment(k, 1, 100)),
    );
    assert.deepEqual(
      results.sort((x, y) => x - y),
      Array.from({ length: 200 }, (_, i) => i + 1),
      'every increment saw a distinct count',
    );
    assert.equal(await a.get(k), '200');
    assert.equal(await b.get(k), '200');
  });

  test('atomic under concurrency: 50 setIfAbsent on one key, exactly one first sight', async () => {
    const a = await open();
    const b = await open();
    const k = `${freshNs()}grey:first`;
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? a : b).setIfAbsent(k, `w${i}`, 100)),
    );
    assert.equal(results.filter(Boolean).length, 1);
    assert.equal(await a.get(k), `w${results.indexOf(true)}`, 'the stored value is the winner’s');
  });

  test('atomic under concurrency: CAS races have one winner; a CAS retry loop loses no update', async () => {
    const a = await open();
    const b = await open();
    const ns = freshNs();
    await a.set(`${ns}race`, 'v0');
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? a : b).compareAndSet(`${ns}race`, 'v0', `w${i}`)),
    );
    assert.equal(results.filter(Boolean).length, 1);
    assert.equal(await b.get(`${ns}race`), `w${results.indexOf(true)}`);
    const racesOnAbsent = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 === 0 ? a : b).compareAndSet(`${ns}new`, undefined, `n${i}`),
      ),
    );
    assert.equal(racesOnAbsent.filter(Boolean).length, 1);

    // A token-bucket style read-modify-write: 10 workers × 10 updates through CAS retries.
    const k = `${ns}bucket`;
    await a.set(k, '0');
    let retries = 0;
    const worker = async (store: Store) => {
      for (let done = 0; done < 10;) {
        const current = (await store.get(k)) as string;
        if (await store.compareAndSet(k, current, String(Number(current) + 1), 100)) done += 1;
        else retries += 1;
      }
    };
    await Promise.all(Array.from({ length: 10 }, (_, i) => worker(i % 2 === 0 ? a : b)));
    assert.equal(await a.get(k), '100', `no update lost (${retries} retries)`);
  });

  test('getMany: values in the order asked; absent, expired and repeated keys are undefined', async () => {
    const s = await open();
    const ns = freshNs();
    const ttl = backend.shortTtlS;
    // Keys with odd characters, a lone surrogate (a token cut inside an emoji) and an empty value among them.
    const odd = ['bayes:日本語:😀', 'bayes:cut:\ud83d', 'key with spaces\nand\ttabs', 'x*y?[z]'];
    await s.set(`${ns}a`, 'A');
    await s.set(`${ns}short`, 'S', ttl);
    await s.set(`${ns}empty`, '');
    for (const [i, k] of odd.entries()) await s.set(ns + k, `odd${i}`);
    const keys = [`${ns}short`, `${ns}missing`, `${ns}a`, `${ns}empty`, `${ns}a`, ...odd.map((k) => ns + k)];
    const live = ['S', undefined, 'A', '', 'A', 'odd0', 'odd1', 'odd2', 'odd3'];
    assert.deepEqual(await s.getMany(keys), live);
    assert.deepEqual(await s.getMany(keys), await Promise.all(keys.map((k) => s.get(k))), 'as get would');
    assert.deepEqual(await s.getMany([]), []);
    assert.deepEqual(await s.getMany([`${ns}missing`]), [undefined]);
    await backend.pass(ttl);
    assert.deepEqual(
      await s.getMany(keys),
      [undefined, ...live.slice(1)],
      'an expired key is absent at once',
    );
  });

  test('incrementMany: new and existing counters in order; a repeated key sees the earlier deltas', async () => {
    const s = await open();
    const ns = freshNs();
    await s.set(`${ns}forever`, '10');
    await s.set(`${ns}expiring`, '-3', 100);
    const before = (await s.getEntry(`${ns}expiring`))?.expiresAt as number;
    const results = await s.incrementMany([
      { key: `${ns}forever`, by: 5, ttlS: 10 },
      { key: `${ns}expiring`, by: 3, ttlS: 10 },
      { key: `${ns}new:ttl`, by: 7, ttlS: 10 },
      { key: `${ns}new:plain`, by: -2 },
      { key: `${ns}new:zero`, by: 0 },
      { key: `${ns}rep`, by: 1, ttlS: 20 },
      { key: `${ns}rep`, by: 2 },
      { key: `${ns}rep`, by: -10, ttlS: 5 },
    ]);
    assert.deepEqual(results, [15, 0, 7, -2, 0, 1, 3, -7]);
    assert.deepEqual(
      await s.getMany(['forever', 'expiring', 'new:ttl', 'new:plain', 'new:zero', 'rep'].map((k) => ns + k)),
      ['15', '0', '7', '-2', '0', '-7'],
      'stored as decimal strings',
    );
    const expiry = async (k: string) => (await s.getEntry(ns + k))?.expiresAt;
    assert.equal(await expiry('forever'), undefined, 'an existing counter without expiry keeps none');
    const kept = await expiry('expiring');
    assert.ok(
      kept !== undefined && Math.abs(kept - before) <= backend.slackMs,
      'an existing counter keeps its own',
    );
    const fresh = await expiry('new:ttl');
    assert.ok(
      fresh !== undefined && Math.abs(fresh - (backend.now() + 10_000)) <= backend.slackMs,
      'new: the ttl',
    );
    assert.equal(await expiry('new:plain'), undefined, 'new without a ttl: no expiry');
    const rep = await expiry('rep');
    assert.ok(
      rep !== undefined && Math.abs(rep - (backend.now() + 20_000)) <= backend.slackMs,
      'the first ttl',
    );
    assert.deepEqual(await s.incrementMany([]), []);
    assert.equal(await s.increment(`${ns}new:ttl`, 1), 8, 'increment and incrementMany share counters');
  });

  test('incrementMany: expired counters start again at 0; touch gives a sliding expiry', async () => {
    const s = await open();
    const ns = freshNs();
    const ttl = backend.shortTtlS;
    assert.deepEqual(
      await s.incrementMany([
        { key: `${ns}kept`, by: 1, ttlS: ttl },
        { key: `${ns}touched`, by: 1, ttlS: ttl },
        { key: `${ns}gone`, by: 1, ttlS: ttl },
      ]),
      [1, 1, 1],
    );
    await backend.pass(ttl / 2);
    assert.deepEqual(
      await s.incrementMany([
        { key: `${ns}kept`, by: 1, ttlS: ttl },
        { key: `${ns}touched`, by: 1, ttlS: ttl, touch: true },
      ]),
      [2, 2],
    );
    await backend.pass(ttl / 2);
    assert.deepEqual(
      await s.getMany([`${ns}kept`, `${ns}touched`, `${ns}gone`]),
      [undefined, '2', undefined],
      'without touch a counter keeps its first expiry; touch restarted it',
    );
    assert.deepEqual(
      await s.incrementMany([
        { key: `${ns}gone`, by: 5 },
        { key: `${ns}kept`, by: 5, ttlS: ttl },
      ]),
      [5, 5],
      'expired counters start again at 0',
    );
    assert.equal((await s.getEntry(`${ns}gone`))?.expiresAt, undefined, 'restarted without a ttl: no expiry');
    await backend.pass(ttl / 2);
    assert.equal(await s.get(`${ns}touched`), undefined, 'the touched counter expires ttl after its touch');
  });

  test('incrementMany is all or nothing: a bad value or an overflow anywhere changes no counter', async () => {
    const s = await open();
    const ns = freshNs();
    await s.set(`${ns}a`, '1');
    await s.set(`${ns}text`, 'abc');
    await s.set(`${ns}max`, String(Number.MAX_SAFE_INTEGER));
    await s.set(`${ns}min`, String(-Number.MAX_SAFE_INTEGER));
    const keys = ['a', 'text', 'max', 'min', 'new', 'new2'].map((k) => ns + k);
    const before = ['1', 'abc', String(Number.MAX_SAFE_INTEGER), String(-Number.MAX_SAFE_INTEGER)];
    const untouched = async () => assert.deepEqual(await s.getMany(keys), [...before, undefined, undefined]);
    const badValue = (key: string) => (e: unknown) => {
      assert.ok(e instanceof StoreBadValue, String(e));
      assert.equal(e.code, 'PW-S002');
      assert.equal(e.operation, 'incrementMany');
      assert.equal(e.key, key, e.message);
      return true;
    };
    const cases: [string, { key: string; by: number; ttlS?: number }[]][] = [
      [
        `${ns}text`,
        [
          { key: `${ns}a`, by: 1 },
          { key: `${ns}new`, by: 1, ttlS: 100 },
          { key: `${ns}text`, by: 1 },
          { key: `${ns}new2`, by: 1 },
        ],
      ],
      [
        `${ns}max`,
        [
          { key: `${ns}a`, by: 1 },
          { key: `${ns}max`, by: 1 },
        ],
      ],
      [
        `${ns}new`,
        [
          { key: `${ns}new`, by: 2 ** 52 },
          { key: `${ns}a`, by: 1 },
          { key: `${ns}new`, by: 2 ** 52 },
        ],
      ],
      [
        `${ns}min`,
        [
          { key: `${ns}new2`, by: 1 },
          { key: `${ns}min`, by: -1 },
        ],
      ],
    ];
    for (const [key, deltas] of cases) {
      await assert.rejects(s.incrementMany(deltas), badValue(key));
      await untouched();
    }
    assert.equal(s.health().healthy, true, 'a bad value is not an outage');
  });

  test('batch arguments that are programming errors reject with RangeError before anything is written', async () => {
    const s = await open();
    const ns = freshNs();
    const many = Array.from({ length: MAX_BATCH + 1 }, (_, i) => `${ns}${i}`);
    await assert.rejects(s.getMany(many), /getMany takes at most 10000 keys/);
    await assert.rejects(
      s.incrementMany(many.map((key) => ({ key, by: 1 }))),
      (e: unknown) => e instanceof RangeError && /incrementMany takes at most 10000/.test(e.message),
    );
    assert.equal((await s.getMany(many.slice(0, MAX_BATCH))).length, MAX_BATCH, 'MAX_BATCH is allowed');
    const first = { key: `${ns}first`, by: 1 };
    for (const bad of [
      { key: `${ns}x`, by: 1.5 },
      { key: `${ns}x`, by: Number.MAX_SAFE_INTEGER + 1 },
      { key: `${ns}x`, by: 1, ttlS: 0 },
      { key: `${ns}x`, by: 1, ttlS: Number.NaN },
      { key: `${ns}x`, by: 1, touch: true },
    ]) {
      await assert.rejects(s.incrementMany([first, bad]), RangeError, JSON.stringify(bad));
    }
    assert.deepEqual(
      await s.getMany([`${ns}first`, `${ns}x`]),
      [undefined, undefined],
      'nothing was written',
    );
  });

  test('large batches: 5000 counters in one incrementMany, read back in one getMany', async (t) => {
    const s = await open();
    const ns = freshNs();
    const keys = Array.from({ length: 5000 }, (_, i) => `${ns}bayes:tok${i}`);
    let started = performance.now();
    const created = await s.incrementMany(keys.map((key, i) => ({ key, by: i + 1, ttlS: 100 })));
    const createMs = performance.now() - started;
    assert.deepEqual(
      created,
      keys.map((_, i) => i + 1),
    );
    started = performance.now();
    const added = await s.incrementMany(keys.map((key) => ({ key, by: -1, ttlS: 100 })));
    const addMs = performance.now() - started;
    assert.deepEqual(
      added,
      keys.map((_, i) => i),
    );
    // 10 000 keys: each counter followed by an absent key.
    const asked = keys.flatMap((key) => [key, `${key}:absent`]);
    started = performance.now();
    const values = await s.getMany(asked);
    const getMs = performance.now() - started;
    assert.deepEqual(
      values,
      keys.flatMap((_, i) => [String(i), undefined]),
    );
    assert.equal(await s.get(keys[4321] as string), '4321');
    t.diagnostic(
      `${backend.driver}: incrementMany 5000 new ${createMs.toFixed(1)} ms, 5000 existing ${addMs.toFixed(1)} ms; ` +
        `getMany 10000 ${getMs.toFixed(1)} ms`,
    );
  });

  test('atomic under concurrency: concurrent incrementMany on overlapping keys on two instances', async () => {
    const a = await open();
    const b = await open();
    const ns = freshNs();
    // 40 batches, each adding 1 to 200 shared counters and 1 to 100 counters shared by half of the batches.
    const shared = Array.from({ length: 200 }, (_, i) => `${ns}shared:${i}`);
    const half = (parity: number) => Array.from({ length: 100 }, (_, i) => `${ns}half${parity}:${i}`);
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        (i % 2 === 0 ? a : b).incrementMany(
          [...shared, ...half(i % 2)].map((key) => ({ key, by: 1, ttlS: 100 })),
        ),
      ),
    );
    for (const result of results) {
      // All or nothing, also as others see it: a batch's shared counters all moved together.
      assert.equal(new Set(result.slice(0, 200)).size, 1, 'one batch saw one count on every shared counter');
    }
    assert.deepEqual(
      results.map((r) => r[0]).sort((x, y) => (x as number) - (y as number)),
      Array.from({ length: 40 }, (_, i) => i + 1),
      'every batch saw a distinct count',
    );
    assert.deepEqual(new Set(await a.getMany(shared)), new Set(['40']));
    assert.deepEqual(new Set(await b.getMany([...half(0), ...half(1)])), new Set(['20']));
  });

  test('health and ping', async () => {
    const s = await open();
    assert.equal(s.driver, backend.driver);
    await s.ping();
    assert.deepEqual(s.health(), { driver: backend.driver, healthy: true });
    assert.ok((await s.purgeExpired()) >= 0);
    assert.equal(await s.purgeExpired(), 0, 'a second purge finds nothing');
  });

  test('a closed store rejects every operation with StoreUnavailable; close is idempotent', async () => {
    const s = await backend.open();
    await s.close();
    await s.close();
    for (const [name, operation] of everyOperation(s, `${freshNs()}k`)) {
      await unavailable(name, operation, 100, /closed/);
    }
    assert.deepEqual(s.health(), { driver: backend.driver, healthy: false, reason: 'closed' });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// SQLite

describe('sqlite', () => {
  const dir = path.join(tmp, 'sqlite');
  const file = path.join(dir, 'state', 'state.db');
  let clock = Date.UTC(2030, 0, 1);
  const now = () => clock;
  const sqlite: Backend = {
    driver: 'sqlite',
    open: () => openStore({ driver: 'sqlite', path: file, now }),
    pass: (s) => {
      clock += Math.round(s * 1000);
      return Promise.resolve();
    },
    shortTtlS: 300,
    now,
    slackMs: 0,
  };

  storeCases(sqlite);

  test('immediate: the hot-path operations answer with values, and fail by throwing', async () => {
    const s = await openStore({ driver: 'sqlite', path: path.join(tmp, 'immediate', 'state.db') });
    const now = s.immediate;
    assert.ok(now !== undefined);
    assert.equal(now.setIfAbsent('k', 'v', 60), true);
    assert.equal(now.setIfAbsent('k', 'w', 60), false);
    assert.equal(now.get('k'), 'v');
    assert.equal(now.getEntry('k')?.value, 'v');
    assert.equal(now.increment('n', 2), 2);
    assert.equal(now.expire('n', 60), true);
    now.set('k', 'x');
    assert.equal(await s.get('k'), 'x');
    assert.throws(() => now.increment('n', 0.5), RangeError);
    await s.close();
    assert.throws(() => now.get('k'), StoreUnavailable);
    await assert.rejects(s.get('k'), StoreUnavailable);
  });

  test('creates its directory (0750) and file (0640); WAL; the documented table', async () => {
    const nested = path.join(tmp, 'fresh', 'var', 'lib', 'postwarden', 'state.db');
    const s = await openStore({ driver: 'sqlite', path: nested });
    await s.set('k', 'v');
    assert.equal(statSync(path.dirname(nested)).mode & 0o777, 0o750);
    assert.equal(statSync(nested).mode & 0o777, 0o640);
    await s.close();
    const raw = new Database(nested, { readonly: true });
    try {
      assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
      const sql = raw.prepare("SELECT sql FROM sqlite_master WHERE name = 'kv'").pluck().get() as string;
      assert.match(sql, /WITHOUT ROWID/);
      assert.deepEqual(raw.prepare('SELECT key, value, expires_at FROM kv').all(), [
        { key: 'k', value: 'v', expires_at: null },
      ]);
      const indexes = raw.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'kv'");
      assert.ok(indexes.pluck().all().includes('kv_expires_at'));
    } finally {
      raw.close();
    }
  });

  test('purgeExpired removes expired rows in batches and keeps live ones', async () => {
    let t = Date.UTC(2031, 0, 1);
    const purgeFile = path.join(tmp, 'purge', 'state.db');
    const s = await openStore({ driver: 'sqlite', path: purgeFile, now: () => t });
    const raw = new Database(purgeFile);
    raw.transaction(() => {
      const insert = raw.prepare('INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?)');
      for (let i = 0; i < 12_000; i++) insert.run(`grey:${i}`, 'v', t + 1000);
    })();
    await s.set('live', 'v', 3600);
    await s.set('forever', 'v');
    assert.equal(await s.purgeExpired(), 0, 'nothing has expired yet');
    t += 1001;
    assert.equal(await s.get('grey:1'), undefined, 'expired before any purge');
    assert.equal(raw.prepare('SELECT count(*) FROM kv').pluck().get(), 12_002, 'still stored');
    assert.equal(await s.purgeExpired(), 12_000);
    assert.equal(raw.prepare('SELECT count(*) FROM kv').pluck().get(), 2);
    assert.equal(await s.get('live'), 'v');
    raw.close();
    await s.close();
  });

  test('a full disk (max size reached) is StoreUnavailable with SQLITE_FULL; reads go on; it recovers', async () => {
    const events: StoreEvent[] = [];
    const fullFile = path.join(tmp, 'full', 'state.db');
    const s = await openStore({ driver: 'sqlite', path: fullFile, maxBytes: 64 * 1024 }, (e) =>
      events.push(e),
    );
    assert.equal(await s.increment('rate:before', 1), 1);
    // Fill it: big values until one fails, then ever smaller ones, until not even a small one fits.
    const written: string[] = [];
    let error: StoreUnavailable | undefined;
    for (const size of [8192, 1024, 128, 16]) {
      for (let i = 0; i < 10_000; i++) {
        try {
          await s.set(`blob:${size}:${i}`, 'z'.repeat(size));
          written.push(`blob:${size}:${i}`);
        } catch (e) {
          assert.ok(e instanceof StoreUnavailable, String(e));
          error = e;
          break;
        }
      }
    }
    assert.ok(error, 'the size limit was reached');
    assert.ok(written.length > 0 && written.length < 1000, `${written.length} values fit`);
    assert.match(error.reason, /SQLITE_FULL/);
    assert.match(error.message, /store \(sqlite\) unavailable in set: SQLITE_FULL/);
    const longKey = `rate:${'n'.repeat(100)}`;
    await unavailable('increment when full', () => s.increment(longKey, 1), 1000, /SQLITE_FULL/);
    await unavailable('setIfAbsent when full', () => s.setIfAbsent(longKey, 'v'), 1000, /SQLITE_FULL/);
    // A batch whose first delta fits (an update in place) and whose new counters do not: all rolled back.
    const batch = [
      { key: 'rate:before', by: 1 },
      ...Array.from({ length: 200 }, (_, i) => ({ key: `${longKey}${i}`, by: 1 })),
    ];
    await unavailable('incrementMany when full', () => s.incrementMany(batch), 1000, /SQLITE_FULL/);
    assert.equal(s.health().healthy, false);
    assert.match(s.health().reason ?? '', /SQLITE_FULL/);
    assert.equal(await s.get(written[0] as string), 'z'.repeat(8192), 'reads still work');
    assert.deepEqual(
      await s.getMany(['rate:before', `${longKey}0`]),
      ['1', undefined],
      'nothing of the batch',
    );
    for (const k of written) assert.equal(await s.delete(k), true);
    await s.set('after', 'ok');
    assert.equal(await s.get('after'), 'ok');
    assert.deepEqual(s.health(), { driver: 'sqlite', healthy: true });
    // Each failing write after a successful one is a new outage: reports alternate, and end with "answers again".
    const codes = events.map((e) => e.code);
    assert.ok(codes.length >= 2 && codes.length % 2 === 0, codes.join(' '));
    codes.forEach((code, i) => assert.equal(code, i % 2 === 0 ? 'PW-S010' : 'PW-S011'));
    for (const e of events) assert.equal(e.level, STORE_EVENT_CODES[e.code].level);
    await s.close();
  });

  test('a locked database (another process writing) is StoreUnavailable with SQLITE_BUSY within timeoutMs', async () => {
    const lockFile = path.join(tmp, 'lock', 'state.db');
    const s = await openStore({ driver: 'sqlite', path: lockFile, timeoutMs: 100 });
    await s.set('k', 'before');
    const other = new Database(lockFile, { timeout: 0 });
    other.exec('BEGIN IMMEDIATE');
    other.prepare("INSERT INTO kv (key, value) VALUES ('other', 'x')").run();
    const started = performance.now();
    await unavailable('set while locked', () => s.set('k', 'during'), 1000, /SQLITE_BUSY/);
    const waited = performance.now() - started;
    assert.ok(waited >= 80, `waited ${waited.toFixed(0)} ms for the lock (busy_timeout 100)`);
    await unavailable('increment while locked', () => s.increment('n', 1), 1000, /SQLITE_BUSY/);
    await unavailable('CAS while locked', () => s.compareAndSet('k', 'before', 'x'), 1000, /SQLITE_BUSY/);
    await unavailable(
      'incrementMany while locked',
      () =>
        s.incrementMany([
          { key: 'n', by: 1 },
          { key: 'm', by: 1 },
        ]),
      1000,
      /SQLITE_BUSY/,
    );
    assert.equal(await s.get('k'), 'before', 'WAL: readers are not blocked by a writer');
    assert.deepEqual(await s.getMany(['k', 'other', 'n']), ['before', undefined, undefined], 'getMany too');
    other.exec('COMMIT');
    other.close();
    await s.set('k', 'after');
    assert.equal(await s.get('other'), 'x');
    assert.equal(await s.increment('n', 1), 1);
    await s.close();
  });

  test('a file that cannot be opened: the store starts unhealthy, fails each operation, then recovers', async () => {
    const events: StoreEvent[] = [];
    const blocker = path.join(tmp, 'blocker');
    writeFileSync(blocker, 'a file where a directory should be');
    const badFile = path.join(blocker, 'state.db');
    const s = await openStore({ driver: 'sqlite', path: badFile, reopenIntervalMs: 0 }, (e) =>
      events.push(e),
    );
    const health = s.health();
    assert.equal(health.healthy, false);
    assert.match(health.reason ?? '', /cannot open .*blocker.*(ENOTDIR|EEXIST)/);
    for (const [name, operation] of everyOperation(s, 'k')) {
      await unavailable(name, operation, 200, /cannot open/);
    }
    await unavailable('purgeExpired', () => s.purgeExpired(), 200, /cannot open/);
    unlinkSync(blocker);
    mkdirSync(blocker);
    await s.set('k', 'v');
    assert.equal(await s.get('k'), 'v');
    assert.deepEqual(s.health(), { driver: 'sqlite', healthy: true });
    assert.deepEqual(
      events.map((e) => e.code),
      ['PW-S010', 'PW-S011'],
    );
    await s.close();
  });

  test('two threads with their own connections increment one file: exactly every update', async () => {
    const { main, reports } = await inTwoThreads<string>(
      'threads',
      `for (let i = 0; i < 400; i++) await store.increment('rate:shared', 1);
       return 'done';`,
    );
    assert.deepEqual(reports, ['done', 'done']);
    assert.equal(await main.get('rate:shared'), '800');
    await main.close();
  });

  test('two threads getOrCreate the same new keys of one file: each key created exactly once', async () => {
    // Both walk the same 2000 new keys; each reports the keys it created and any answer that is not either
    // "created" or the entry the other thread stored.
    const { main, reports } = await inTwoThreads<{ created: number[]; wrong: number }>(
      'threads-first-sight',
      `const created = [];
       let wrong = 0;
       for (let i = 0; i < 2000; i++) {
         const entry = await store.getOrCreate('grey:' + i, workerData.name + i, 3600);
         if (entry === undefined) created.push(i);
         else if (!/^(one|two)[0-9]+$/.test(entry.value) || entry.value.startsWith(workerData.name)) wrong += 1;
       }
       return { created, wrong };`,
    );
    const [one, two] = reports;
    assert.deepEqual([one?.wrong, two?.wrong], [0, 0]);
    const createdBoth = [...(one?.created ?? []), ...(two?.created ?? [])].sort((a, b) => a - b);
    assert.deepEqual(
      createdBoth,
      Array.from({ length: 2000 }, (_, i) => i),
      'every key created exactly once',
    );
    for (const i of [0, 999, 1999]) {
      const owner = one?.created.includes(i) ? 'one' : 'two';
      assert.equal(await main.get(`grey:${i}`), `${owner}${i}`);
    }
    await main.close();
  });

  test('two threads incrementMany overlapping counters of one file: exact sums, each batch all at once', async () => {
    // Each worker adds 1 to 300 counters per batch: 200 shared by both, 100 of its own.
    const { main, reports } = await inTwoThreads<string>(
      'threads-many',
      `const keys = [];
       for (let i = 0; i < 200; i++) keys.push('bayes:shared:' + i);
       for (let i = 0; i < 100; i++) keys.push('bayes:' + workerData.name + ':' + i);
       let torn = 0;
       for (let i = 0; i < 100; i++) {
         const values = await store.incrementMany(keys.map((key) => ({ key, by: 1, ttlS: 3600 })));
         if (new Set(values.slice(0, 200)).size !== 1) torn += 1;
       }
       return torn === 0 ? 'done' : torn + ' torn batches';`,
    );
    assert.deepEqual(reports, ['done', 'done']);
    const shared = Array.from({ length: 200 }, (_, i) => `bayes:shared:${i}`);
    assert.deepEqual(new Set(await main.getMany(shared)), new Set(['200']));
    assert.deepEqual(new Set(await main.getMany(['bayes:one:0', 'bayes:two:99'])), new Set(['100']));
    await main.close();
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Redis

describe('redis', () => {
  let server: RedisServer;
  const PREFIX = 'pwtest:';
  const redisOpts = (extra: Partial<StoreOptions & { driver: 'redis' }> = {}): StoreOptions => ({
    driver: 'redis',
    url: server.url,
    keyPrefix: PREFIX,
    timeoutMs: 200,
    ...extra,
  });
  const redis: Backend = {
    driver: 'redis',
    open: () => openStore(redisOpts()),
    pass: (s) => sleep(s * 1000 + 25),
    shortTtlS: 0.3,
    now: Date.now,
    slackMs: 1000,
  };

  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    await server?.destroy();
  });

  storeCases(redis);

  test('keys live under the key prefix; two prefixes on one Redis do not see each other', async () => {
    const raw = new Redis(server.url, { lazyConnect: true });
    await raw.connect();
    const plain = await openStore({ driver: 'redis', url: server.url });
    const a = await openStore(redisOpts({ keyPrefix: 'siteA:' }));
    const b = await openStore(redisOpts({ keyPrefix: 'siteB:' }));
    try {
      await plain.set('grey:k', 'default');
      assert.equal(await raw.get('postwarden:grey:k'), 'default', 'default prefix postwarden:');
      await a.set('grey:k', 'A');
      assert.equal(await b.get('grey:k'), undefined);
      assert.equal(await b.setIfAbsent('grey:k', 'B'), true);
      assert.equal(await a.get('grey:k'), 'A');
      assert.equal(await b.increment('n', 7), 7);
      assert.deepEqual(await a.scan('', 100), [{ key: 'grey:k', value: 'A' }], 'scan sees only its prefix');
      assert.deepEqual(
        (await b.scan('', 100)).map((e) => e.key),
        ['grey:k', 'n'],
      );
      assert.equal(await raw.get('siteA:grey:k'), 'A');
      assert.equal(await raw.get('siteB:n'), '7');
      assert.deepEqual(await b.getMany(['n', 'grey:k', 'absent']), ['7', 'B', undefined]);
      assert.deepEqual(await a.getMany(['n', 'grey:k']), [undefined, 'A']);
      assert.deepEqual(
        await a.incrementMany([
          { key: 'n', by: 1 },
          { key: 'm', by: 2, ttlS: 100 },
        ]),
        [1, 2],
      );
      assert.deepEqual(await raw.mget('siteA:n', 'siteA:m', 'siteB:n', 'n', 'm'), [
        '1',
        '2',
        '7',
        null,
        null,
      ]);
      assert.ok((await raw.pttl('siteA:m')) > 0, 'the ttl is on the prefixed key');
      await raw.lpush('siteA:list', 'x');
      await assert.rejects(a.increment('list', 1), { code: 'PW-S002' });
      await assert.rejects(
        a.incrementMany([
          { key: 'n', by: 1 },
          { key: 'list', by: 1 },
        ]),
        (e: unknown) => e instanceof StoreBadValue && e.key === 'list' && /WRONGTYPE/.test(e.reason),
      );
      assert.equal(await raw.get('siteA:n'), '1', 'a key of another type: nothing of the batch written');
      assert.deepEqual(
        await a.getMany(['list', 'n']),
        [undefined, '1'],
        'getMany: another type reads as absent',
      );
      assert.deepEqual(
        (await a.scan('', 100)).map((e) => e.key),
        ['grey:k', 'm', 'n'],
        'a key of another type is skipped',
      );
    } finally {
      await Promise.all([plain.close(), a.close(), b.close()]);
      raw.disconnect();
    }
  });

  test('Redis stopped: every operation fails fast with StoreUnavailable; started again, the same store serves', async () => {
    const events: StoreEvent[] = [];
    const a = await openStore(redisOpts(), (e) => events.push(e));
    const b = await openStore(redisOpts());
    try {
      await a.set('grey:before', 'v');
      assert.equal(await b.get('grey:before'), 'v');
      await server.stop();
      const timings: number[] = [];
      for (const store of [a, b]) {
        for (const [name, operation] of everyOperation(store, 'grey:k')) {
          const started = performance.now();
          await unavailable(`${name} while Redis is stopped`, operation, 1000);
          timings.push(performance.now() - started);
        }
      }
      // Batches of Bayes size fail as fast.
      const tokens = Array.from({ length: 2000 }, (_, i) => `bayes:t${i}`);
      for (const [name, operation] of [
        ['getMany of 2000 keys', () => a.getMany(tokens)],
        [
          'incrementMany of 2000 keys',
          () => a.incrementMany(tokens.map((key) => ({ key, by: 1, ttlS: 10 }))),
        ],
      ] as const) {
        const started = performance.now();
        await unavailable(`${name} while Redis is stopped`, operation, 1000);
        timings.push(performance.now() - started);
      }
      assert.ok(Math.max(...timings) < 250, `slowest failure ${Math.max(...timings).toFixed(0)} ms`);
      const health = a.health();
      assert.equal(health.healthy, false);
      assert.ok(health.reason, 'health says why');
      assert.ok(events.some((e) => e.code === 'PW-S010'));

      await server.start();
      const restarted = performance.now();
      await Promise.all([answers(a, 'a after restart'), answers(b, 'b after restart')]);
      const back = performance.now() - restarted;
      assert.ok(back < 1500, `both stores answered ${back.toFixed(0)} ms after the restart`);
      // The restarted Redis lost its data (no persistence in tests) and its script cache: scripts load again.
      assert.equal(await a.get('grey:before'), undefined);
      assert.equal(await a.increment('n', 2, 10), 2);
      assert.equal(await b.increment('n', 3, 10), 5);
      assert.deepEqual(
        await b.incrementMany([
          { key: 'n', by: 1 },
          { key: 'c2', by: 4, ttlS: 10 },
        ]),
        [6, 4],
      );
      assert.deepEqual(await a.getMany(['n', 'c2']), ['6', '4']);
      assert.equal(await b.compareAndSet('n', '6', 'six'), true);
      assert.equal((await a.getEntry('n'))?.value, 'six');
      assert.deepEqual(await a.scan('n', 10), [{ key: 'n', value: 'six' }]);
      assert.deepEqual(a.health(), { driver: 'redis', healthy: true });
      assert.equal(events.at(-1)?.code, 'PW-S011');
      for (const e of events) assert.equal(e.level, STORE_EVENT_CODES[e.code].level);
      assert.ok(
        events.filter((e) => e.code === 'PW-S010').length === 1,
        `one outage, one report: ${events.map((e) => e.code).join(' ')}`,
      );
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('Redis hung (SIGSTOP): every operation rejects within its deadline (timeoutMs 200)', async () => {
    const s = await openStore(redisOpts());
    try {
      await s.set('kept', 'v');
      server.pause();
      try {
        const started = performance.now();
        const results = await Promise.allSettled(everyOperation(s, 'k').map(([, operation]) => operation()));
        const ms = performance.now() - started;
        for (const r of results) {
          assert.equal(r.status, 'rejected');
          assert.ok(r.reason instanceof StoreUnavailable, String(r.reason));
          assert.match(r.reason.reason, /no answer within 200 ms/);
        }
        assert.ok(ms >= 190 && ms < 700, `all failed after ${ms.toFixed(0)} ms`);
        assert.equal(s.health().healthy, false);
      } finally {
        server.resume();
      }
      // The timed-out writes may still have been applied after SIGCONT: the port says so. Other keys are intact.
      assert.equal(await s.get('kept'), 'v');
      assert.equal(s.health().healthy, true);
    } finally {
      await s.close();
    }
  });

  test('a store opened while Redis is down opens at once and fails each operation', async () => {
    const port = await freeLoopbackPort();
    const started = performance.now();
    const s = await openStore(redisOpts({ url: `redis://127.0.0.1:${port}` }));
    try {
      assert.ok(performance.now() - started < 1000, 'openStore does not wait for a dead Redis');
      assert.equal(s.health().healthy, false);
      await unavailable('get', () => s.get('k'), 500);
      await unavailable('increment', () => s.increment('k', 1), 500);
    } finally {
      await s.close();
    }
  });

  test('a write that reaches a read-only replica fails with READONLY, and the client reconnects', async () => {
    server.cli('CONFIG', 'SET', 'repl-diskless-sync-delay', '0');
    const replica = await startRedis({
      port: await freeLoopbackPort(),
      args: ['--replicaof', '127.0.0.1', String(server.port)],
    });
    const events: StoreEvent[] = [];
    const master = await openStore(redisOpts());
    const s = await openStore(redisOpts({ url: replica.url }), (e) => events.push(e));
    try {
      await master.set('seen', 'from-master');
      const deadline = Date.now() + 5000;
      while ((await s.get('seen')) !== 'from-master') {
        if (Date.now() > deadline) assert.fail('replica never synced');
        await sleep(50);
      }
      await unavailable('set on a replica', () => s.set('k', 'v'), 1000, /READONLY/);
      assert.ok(
        events.some((e) => e.code === 'PW-S012'),
        'PW-S012 reported',
      );
      // Each READONLY drops the connection; once it is back, scripts meet READONLY too.
      await answers(s, 'reconnect after READONLY');
      await unavailable('increment on a replica', () => s.increment('ro:n', 1), 1000, /READONLY/);
      await answers(s, 'reconnect after READONLY');
      await unavailable(
        'incrementMany on a replica',
        () =>
          s.incrementMany([
            { key: 'ro:n', by: 1 },
            { key: 'ro:m', by: 1, ttlS: 10 },
          ]),
        1000,
        /READONLY/,
      );
      await answers(s, 'reconnect after READONLY');
      assert.deepEqual(
        await s.getMany(['seen', 'ro:n']),
        ['from-master', undefined],
        'getMany reads the replica',
      );
      await unavailable(
        'CAS on a replica',
        () => s.compareAndSet('seen', 'from-master', 'x'),
        1000,
        /READONLY/,
      );
      await answers(s, 'reconnect after READONLY');
      assert.equal(await s.get('seen'), 'from-master', 'reads from the replica work');
      assert.deepEqual(await master.getMany(['ro:n', 'ro:m']), [undefined, undefined], 'nothing was written');
      assert.equal(await master.get('seen'), 'from-master');
    } finally {
      await s.close();
      await master.close();
      await replica.destroy();
    }
  });

  test('Sentinel failover: writes move to the new master; none go on to the old one', async () => {
    const m = await startRedis({ port: await freeLoopbackPort(), args: ['--repl-diskless-sync-delay', '0'] });
    const r = await startRedis({
      port: await freeLoopbackPort(),
      args: ['--replicaof', '127.0.0.1', String(m.port)],
    });
    const sentinel = await startRedis({
      port: await freeLoopbackPort(),
      sentinel: [
        `sentinel monitor pwtest 127.0.0.1 ${m.port} 1`,
        'sentinel down-after-milliseconds pwtest 1000',
        'sentinel failover-timeout pwtest 3000',
        '',
      ].join('\n'),
    });
    const s = await openStore({
      driver: 'redis',
      sentinels: [{ host: '127.0.0.1', port: sentinel.port }],
      name: 'pwtest',
      keyPrefix: PREFIX,
      timeoutMs: 200,
    });
    try {
      assert.equal(await s.increment('n', 1), 1);
      assert.equal(m.cli('GET', `${PREFIX}n`), '1', 'writes go to the master Sentinel names');
      const known = Date.now() + 5000;
      while (!sentinel.cli('SENTINEL', 'REPLICAS', 'pwtest').includes(String(r.port))) {
        if (Date.now() > known) assert.fail('Sentinel never saw the replica');
        await sleep(50);
      }
      while (!r.cli('INFO', 'replication').includes('master_link_status:up')) await sleep(50);

      // Sentinel refuses (NOGOODSLAVE) until it has heard from the replica itself.
      const ready = Date.now() + 5000;
      for (let answer = ''; answer !== 'OK';) {
        answer = sentinel.cli('SENTINEL', 'FAILOVER', 'pwtest');
        if (answer !== 'OK' && Date.now() > ready) assert.fail(`SENTINEL FAILOVER: ${answer}`);
        if (answer !== 'OK') await sleep(100);
      }
      const promoted = Date.now() + 5000;
      while (r.cli('ROLE').split('\n')[0] !== 'master') {
        if (Date.now() > promoted) assert.fail('the replica was never promoted');
        await sleep(20);
      }
      // The old master still accepts writes for a while (Sentinel demotes it only later): the client must
      // follow Sentinel's +switch-master rather than wait for a READONLY. A write counts as moved when the new
      // master has it and the old one, not replicating from it yet, does not.
      const oldIsMaster = () => m.cli('ROLE').split('\n')[0] === 'master';
      const deadline = Date.now() + 5000;
      for (let i = 0; ; i++) {
        try {
          await s.set('after', `v${i}`);
          if (r.cli('GET', `${PREFIX}after`) === `v${i}`) break;
        } catch (e) {
          assert.ok(e instanceof StoreUnavailable, String(e));
        }
        if (Date.now() > deadline) assert.fail('writes never reached the new master');
        await sleep(20);
      }
      assert.equal(await s.increment('n2', 1), 1);
      assert.equal(r.cli('GET', `${PREFIX}n2`), '1', 'the next write went to the new master too');
      if (oldIsMaster()) assert.equal(m.cli('GET', `${PREFIX}n2`), '', 'and not to the old one');
    } finally {
      await s.close();
      await sentinel.destroy();
      await r.destroy();
      await m.destroy();
    }
  });
});

test('options no driver can use throw StoreOptionsError (PW-S003)', async () => {
  await assert.rejects(openStore({ driver: 'sqlite', path: '' }), { code: 'PW-S003' });
  await assert.rejects(openStore({ driver: 'sqlite', path: path.join(tmp, 'x.db'), timeoutMs: 0 }), {
    code: 'PW-S003',
  });
  await assert.rejects(openStore({ driver: 'redis' }), { code: 'PW-S003' });
  await assert.rejects(openStore({ driver: 'redis', sentinels: [{ host: '127.0.0.1', port: 1 }] }), {
    code: 'PW-S003',
  });
  await assert.rejects(openStore({ driver: 'memcached' } as unknown as StoreOptions), { code: 'PW-S003' });
});

test('no unhandled rejection and no uncaught exception during the suite', () => {
  assert.deepEqual(unhandled, []);
});
