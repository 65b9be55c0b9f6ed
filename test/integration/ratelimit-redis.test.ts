/**
 * Rate limits shared by two instances (primary and backup MX) through one real Redis (port 21512): messages racing
 * through both spend each token once, exactly one of them opens the incident (one admin notice), and with Redis
 * down the check fails with PW-S001 instead of letting the message pass as counted.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createRatelimitCheck, ratelimitSchema, RATE_KINDS } from '../../src/core/checks/ratelimit.js';
import { newSession } from '../../src/core/pipeline.js';
import type { Incident } from '../../src/core/ratelimit-incidents.js';
import { toPolicyRequest } from '../../src/core/request.js';
import type { Store } from '../../src/core/store.js';
import { openStore } from '../../src/store/index.js';
import { startRedis, type RedisServer } from '../harness/redis.js';

let redis: RedisServer | undefined;
const stores: Store[] = [];

before(async () => {
  redis = await startRedis({ port: 21512 });
});
after(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await redis?.stop();
});

const opened: Incident[] = [];

async function instance() {
  if (!redis) throw new Error('redis not started');
  const store = await openStore({
    driver: 'redis',
    url: redis.url,
    keyPrefix: 'pw-h-rate:',
    timeoutMs: 1000,
  });
  stores.push(store);
  const tables = { exempt: [], overrides: Object.fromEntries(RATE_KINDS.map((k) => [k, []])) as never };
  const settings = ratelimitSchema.parse({ per_sasl_user: '10/1h' });
  return createRatelimitCheck(settings, tables, store, { incidentOpened: (i) => opened.push(i) }, '+');
}

const endOfMessage = (i: number) =>
  toPolicyRequest({
    request: 'smtpd_access_policy',
    protocol_state: 'END-OF-MESSAGE',
    instance: `m${i}`,
    queue_id: `QID${i}`,
    sasl_username: 'alice@example.test',
    sender: 'alice@example.test',
    recipient: 'friend@remote.test',
    recipient_count: '1',
  });

const ctx = () => ({ session: newSession(), score: 0, earlier: [], signal: new AbortController().signal });

test('two instances on one Redis: 10 of 30 racing messages pass, 20 are held, one incident', async () => {
  const [primary, backup] = [await instance(), await instance()];
  const results = await Promise.all(
    Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? primary : backup).run(endOfMessage(i), ctx())),
  );
  assert.equal(results.filter((r) => r.length === 0).length, 10);
  const held = results.filter((r) => r[0]?.action === 'hold');
  assert.equal(held.length, 20);
  assert.equal(opened.length, 1, 'one incident, one notice');
  assert.equal(opened[0]?.user, 'alice@example.test');
});

test('Redis down: the check fails with PW-S001 (policy.on_error decides), nothing passes as counted', async () => {
  const check = await instance();
  await redis?.stop();
  await assert.rejects(
    Promise.resolve(check.run(endOfMessage(99), ctx())),
    (e: Error & { code?: string }) => {
      assert.equal(e.code, 'PW-S001');
      return true;
    },
  );
});
