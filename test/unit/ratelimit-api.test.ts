/**
 * The rate-limit incidents API through fastify's inject(): the bearer token guards it, listing and one user's
 * view, release/delete touching only the recorded queue ids (a stand-in hold queue records the calls), reset,
 * 404 for an unknown user, 503 when the store is down and 502 when postsuper fails. The real postsuper and
 * postqueue are exercised in test/integration/ratelimit-postfix.test.ts.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { PostfixQueueError, parseQueueLine } from '../../src/adapters/postfix-queue.js';
import { bucketKey } from '../../src/core/checks/ratelimit.js';
import { getIncident, openIncident, recordHeld } from '../../src/core/ratelimit-incidents.js';
import { toPolicyRequest } from '../../src/core/request.js';
import { statusOnlyAdmin } from '../harness/admin.js';
import { buildHttpApp } from '../../src/http/app.js';
import type { HoldQueue } from '../../src/http/api/ratelimit.js';
import { createLogger } from '../../src/observe/logger.js';
import { Metrics } from '../../src/observe/metrics.js';
import { ratelimitRuntime } from '../../src/cli/ratelimit.js';
import { configSchema } from '../../src/config/schema.js';
import { openStore } from '../../src/store/index.js';

const TOKEN = 'x'.repeat(40);
const store = await openStore({ driver: 'sqlite', path: ':memory:' });
after(() => store.close());

const calls: string[] = [];
let failing = false;
const queue: HoldQueue = {
  release: (ids) => {
    calls.push(`release ${ids.join(',')}`);
    if (failing) return Promise.reject(new PostfixQueueError('postsuper', 'exit 1: fatal: not permitted'));
    return Promise.resolve(ids.filter((id) => id !== 'GONE1'));
  },
  remove: (ids) => {
    calls.push(`remove ${ids.join(',')}`);
    return Promise.resolve([...ids]);
  },
};

const app = buildHttpApp({
  metrics: new Metrics({ processMetrics: false }),
  logger: createLogger('fatal'),
  readiness: () => [],
  admin: statusOnlyAdmin(),
  adminToken: TOKEN,
  ratelimit: { store, queue, recipientDelimiter: '+' },
});
after(() => app.close());

const call = (method: 'GET' | 'POST', url: string, token = TOKEN) =>
  app.inject({ method, url: `/api/v1/ratelimit${url}`, headers: { authorization: `Bearer ${token}` } });

async function holdFor(user: string, ids: string[], into = store): Promise<void> {
  await openIncident(
    into,
    {
      user,
      openedAt: 1,
      limit: 'per_sasl_user 2/1h',
      client: '192.0.2.1',
      sender: user,
      queueId: ids[0] ?? '',
    },
    3600,
  );
  for (const id of ids) {
    const request = toPolicyRequest({
      request: 'smtpd_access_policy',
      queue_id: id,
      sender: user,
      recipient_count: '2',
    });
    await recordHeld(into, user, request, 1000, 3600);
  }
}

test('the token guards the routes', async () => {
  assert.equal((await call('GET', '/users', 'y'.repeat(40))).statusCode, 401);
});

test('list, view, release (only recorded ids; vanished ones forgotten), reset', async () => {
  await holdFor('carol@example.org', ['AAA111', 'GONE1']);
  await store.set(bucketKey('messages', 'sasl_user', 'carol@example.org'), '123', 60);
  const list = (await call('GET', '/users')).json<{ users: { user: string; held: number }[] }>();
  assert.deepEqual(
    list.users.map((u) => [u.user, u.held]),
    [['carol@example.org', 2]],
  );
  const one = (await call('GET', '/users/Carol@Example.org')).json<{
    held: { queueId: string; recipients: number }[];
  }>();
  assert.deepEqual(
    one.held.map((h) => [h.queueId, h.recipients]),
    [
      ['AAA111', 2],
      ['GONE1', 2],
    ],
  );
  const released = await call('POST', '/users/carol@example.org/release');
  assert.equal(released.statusCode, 200);
  assert.deepEqual(released.json(), { user: 'carol@example.org', released: ['AAA111'], not_held: ['GONE1'] });
  assert.deepEqual(calls, ['release AAA111,GONE1']);
  // Released and vanished ids are forgotten; the incident stays until the reset.
  assert.equal((await call('GET', '/users/carol@example.org')).json<{ held: unknown[] }>().held.length, 0);
  assert.ok(await getIncident(store, 'carol@example.org'));
  const reset = await call('POST', '/users/carol@example.org/reset');
  assert.deepEqual(reset.json(), { user: 'carol@example.org', incident_closed: true });
  assert.equal(await store.get(bucketKey('messages', 'sasl_user', 'carol@example.org')), undefined);
  assert.equal((await call('GET', '/users/carol@example.org')).statusCode, 404);
});

test('delete drops the held mail', async () => {
  calls.length = 0;
  await holdFor('dave@example.org', ['BBB222']);
  const deleted = await call('POST', '/users/dave@example.org/delete');
  assert.deepEqual(deleted.json(), { user: 'dave@example.org', deleted: ['BBB222'], not_held: [] });
  assert.deepEqual(calls, ['remove BBB222']);
});

test('postsuper failing answers 502 and keeps the record; the store down answers 503', async () => {
  await holdFor('erin@example.org', ['CCC333']);
  failing = true;
  const r = await call('POST', '/users/erin@example.org/release');
  assert.equal(r.statusCode, 502);
  assert.match(r.json<{ error: string }>().error, /postsuper: exit 1: fatal: not permitted/);
  failing = false;
  assert.equal((await call('GET', '/users/erin@example.org')).json<{ held: unknown[] }>().held.length, 1);
  const closed = await openStore({ driver: 'sqlite', path: ':memory:' });
  await closed.close();
  const down = buildHttpApp({
    metrics: new Metrics({ processMetrics: false }),
    logger: createLogger('fatal'),
    readiness: () => [],
    admin: statusOnlyAdmin(),
    adminToken: TOKEN,
    ratelimit: { store: closed, queue, recipientDelimiter: '+' },
  });
  const r2 = await down.inject({
    method: 'GET',
    url: '/api/v1/ratelimit/users',
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  assert.equal(r2.statusCode, 503);
  assert.equal(r2.json<{ code: string }>().code, 'PW-S001');
  await down.close();
});

test('gauges of open incidents and held mail: read from the store at scrape time, no sample while it fails', async () => {
  const own = await openStore({ driver: 'sqlite', path: ':memory:' });
  const metrics = new Metrics({ processMetrics: false });
  const sample = /^postwarden_ratelimit_(open_incidents|held_messages) (\S+)$/gm;
  const samples = async () =>
    Object.fromEntries([...(await metrics.registry.metrics()).matchAll(sample)].map((m) => [m[1], m[2]]));
  assert.deepEqual(await samples(), {}, 'no sample where the ratelimit check is not used');
  const runtime = ratelimitRuntime(
    configSchema.parse({ local_domains: ['example.com'] }),
    '.',
    own,
    createLogger('fatal'),
    metrics,
  );
  assert.deepEqual(await samples(), { open_incidents: '0', held_messages: '0' });
  await holdFor('ann@example.com', ['AAA1', 'AAA2'], own);
  await holdFor('bob@example.com', ['BBB1'], own);
  assert.deepEqual(await samples(), { open_incidents: '2', held_messages: '3' });
  runtime.close();
  await own.close();
  assert.deepEqual(await samples(), {}, 'a store that fails: no sample rather than a wrong 0');
});

test('postqueue -j lines: hold entries parsed, junk skipped', () => {
  const line =
    '{"queue_name": "hold", "queue_id": "4F2C1A", "arrival_time": 1700000000, "message_size": 321, "forced_expire": false, "sender": "a@example.org", "recipients": [{"address": "b@remote.test"}]}';
  assert.deepEqual(parseQueueLine(line), {
    queueId: '4F2C1A',
    queueName: 'hold',
    sender: 'a@example.org',
    recipients: ['b@remote.test'],
    arrivalTime: 1700000000,
  });
  assert.equal(parseQueueLine('Mail queue is empty'), undefined);
  assert.equal(parseQueueLine('{"queue_id": 5}'), undefined);
});
