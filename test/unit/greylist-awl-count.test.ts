/**
 * Greylisting's auto-whitelist counting with a real SQLite store on a clock the test moves: one pass per
 * network per hour counts, the hourly marker is asked about once per hour (not on every known delivery), a
 * marker another instance set is asked about again after a minute, and the network is whitelisted after
 * `awl_after` counted passes. Each case runs twice: with the store answering at once (SQLite's `immediate`) and
 * only through promises, as Redis does, where the check reads the triplet together with the network's count.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { awlHourKey, createGreylistCheck, greylistSchema } from '../../src/core/checks/greylist.js';
import { Locality } from '../../src/core/locality.js';
import { CheckDeadlines, newSession } from '../../src/core/pipeline.js';
import { toPolicyRequest } from '../../src/core/request.js';
import type { Store } from '../../src/core/store.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import type { Verdict } from '../../src/core/verdict.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'pw-awl-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/**
 * A greylist check (delay 60 s, awl_after 3) over a fresh SQLite file; counts the hourly marker's writes.
 * `answers`: `at once` as SQLite gives them (`immediate`), or `as promises` only, as a remote store (Redis) does,
 * where the check reads the triplet together with the network's count.
 */
function setUp(file: string, answers: 'at once' | 'as promises') {
  let clock = Date.parse('2026-11-01T00:00:00Z');
  const store = new SqliteStore({ path: path.join(dir, file), now: () => clock });
  const immediate = store.immediate;
  const markerWrites: string[] = [];
  const note = (key: string) => {
    if (key.startsWith('awlh:')) markerWrites.push(key);
  };
  const counted: Store =
    answers === 'at once'
      ? Object.assign(Object.create(store) as Store, {
          immediate: {
            ...immediate,
            setIfAbsent: (key: string, value: string, ttlS?: number) => {
              note(key);
              return immediate.setIfAbsent(key, value, ttlS);
            },
          },
        })
      : new Proxy(store, {
          get(target, property) {
            if (property === 'immediate') return undefined;
            if (property === 'setIfAbsent') {
              return (key: string, value: string, ttlS?: number) => {
                note(key);
                return target.setIfAbsent(key, value, ttlS);
              };
            }
            const value: unknown = Reflect.get(target, property, target);
            return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
          },
        });
  const settings = greylistSchema.parse({ delay_s: 60, awl_after: 3 });
  const locality = new Locality({ localNetworks: [], localDomains: [] });
  const check = createGreylistCheck(settings, locality, [], [], [], counted, '+', () => clock);
  const ask = async (sender: string): Promise<string> => {
    const request = toPolicyRequest({
      request: 'smtpd_access_policy',
      protocol_state: 'RCPT',
      client_address: '198.51.100.7',
      client_name: 'unknown',
      sender,
      recipient: 'bob@example.org',
      instance: `i-${sender}-${clock}`,
    });
    const ctx = { session: newSession(), score: 0, earlier: [], signal: new CheckDeadlines().signal };
    const verdicts: readonly Verdict[] = await check.run(request, ctx);
    return verdicts[0]?.symbol ?? '';
  };
  /** First sight, then the retry after the delay: the triplet has passed. */
  const pass = async (sender: string) => {
    assert.equal(await ask(sender), 'GREYLIST_NEW');
    clock += 2 * MINUTE;
    assert.equal(await ask(sender), 'GREYLIST_PASSED');
  };
  return {
    store,
    markerWrites,
    ask,
    pass,
    wait: (ms: number) => {
      clock += ms;
    },
  };
}

for (const answers of ['at once', 'as promises'] as const) {
  test(`a known sender asks about the hourly marker once an hour, and every hour one pass counts (answers ${answers})`, async () => {
    const t = setUp(`own-${answers}.db`, answers);
    await t.pass('alice@sender.test'); // counted pass 1: the marker is written
    assert.equal(t.markerWrites.length, 1);
    for (let i = 0; i < 20; i++) assert.equal(await t.ask('alice@sender.test'), 'GREYLIST_KNOWN');
    assert.equal(t.markerWrites.length, 1, 'known deliveries within the hour do not ask again');
    t.wait(HOUR);
    assert.equal(await t.ask('alice@sender.test'), 'GREYLIST_KNOWN'); // counted pass 2
    assert.equal(await t.ask('alice@sender.test'), 'GREYLIST_KNOWN');
    assert.equal(t.markerWrites.length, 2);
    assert.equal(await t.store.get('awl:198.51.100.0/24'), '2');
    t.wait(HOUR);
    assert.equal(await t.ask('alice@sender.test'), 'GREYLIST_KNOWN'); // counted pass 3: whitelisted from now on
    assert.equal(
      await t.ask('carol@other.test'),
      'GREYLIST_AWL',
      'a new sender from the network is not greylisted',
    );
    await t.store.close();
  });

  test(`a marker another instance set is asked about again after a minute, not on every delivery (answers ${answers})`, async () => {
    const t = setUp(`foreign-${answers}.db`, answers);
    await t.pass('alice@sender.test');
    // Another MX host counted this network's pass of the hour: its marker is there, its expiry unknown here.
    await t.store.delete(awlHourKey('198.51.100.0/24'));
    t.wait(HOUR);
    await t.store.set(awlHourKey('198.51.100.0/24'), '1', 3600);
    assert.equal(await t.ask('alice@sender.test'), 'GREYLIST_KNOWN');
    assert.equal(t.markerWrites.length, 2, 'asked once: found the other host’s marker');
    assert.equal(await t.ask('alice@sender.test'), 'GREYLIST_KNOWN');
    assert.equal(t.markerWrites.length, 2, 'not asked again within the minute');
    t.wait(MINUTE + 1);
    assert.equal(await t.ask('alice@sender.test'), 'GREYLIST_KNOWN');
    assert.equal(t.markerWrites.length, 3, 'asked again after the minute');
    assert.equal(
      await t.store.get('awl:198.51.100.0/24'),
      '1',
      'the other host’s hour was not counted twice',
    );
    await t.store.close();
  });
}
