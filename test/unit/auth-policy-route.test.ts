/**
 * POST /dovecot/auth-policy through fastify's inject(): Dovecot's request and answer format, the API key,
 * malformed and oversize bodies, fail-open when the store is down (counted), shedding beyond max_in_flight, and
 * metrics without addresses or logins.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Writable } from 'node:stream';
import { AuthGuard, authPolicySchema } from '../../src/core/auth-guard.js';
import { statusOnlyAdmin } from '../harness/admin.js';
import { buildHttpApp } from '../../src/http/app.js';
import { createLogger } from '../../src/observe/logger.js';
import { Metrics } from '../../src/observe/metrics.js';
import { SqliteStore } from '../../src/store/sqlite.js';

const KEY = 'k3y-for-the-unit-tests';
const lines: string[] = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, done) {
    lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    done();
  },
});

function build(overrides: Record<string, unknown>, apiKey: string | null) {
  const settings = authPolicySchema.parse({ tarpit_steps_s: [], login_block_after: 3, ...overrides });
  const store = new SqliteStore({ path: ':memory:' });
  const metrics = new Metrics({ processMetrics: false });
  const guard = new AuthGuard(settings, store, []);
  const app = buildHttpApp({
    metrics,
    logger: createLogger('info', sink),
    readiness: () => [],
    admin: statusOnlyAdmin(),
    authPolicy: { guard, settings, ...(apiKey !== null ? { apiKey } : {}) },
  });
  return { app, store, metrics, guard };
}

const apps: ReturnType<typeof build>[] = [];
after(async () => {
  for (const { app, store } of apps) {
    await app.close();
    await store.close();
  }
});
function fresh(overrides: Record<string, unknown> = {}, apiKey: string | null = KEY) {
  const built = build(overrides, apiKey);
  apps.push(built);
  return built;
}

/** What Dovecot 2.3 sends with its default auth_policy_request_attributes. */
const body = (remote: string, pwhash: string, extra: Record<string, unknown> = {}) => ({
  device_id: '',
  login: 'alice@example.test',
  protocol: 'imap',
  pwhash,
  remote,
  session_id: 'Xyz123',
  ...extra,
});

function post(app: ReturnType<typeof build>['app'], command: string, payload: unknown, key = KEY) {
  return app.inject({
    method: 'POST',
    url: `/dovecot/auth-policy?command=${command}`,
    headers: { 'content-type': 'application/json', ...(key ? { 'x-api-key': key } : {}) },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  });
}

async function counter(metrics: Metrics, command: string, result: string): Promise<number> {
  const values = (await metrics.get('postwarden_auth_policy_requests_total').get()).values;
  return values.find((v) => v.labels.command === command && v.labels.result === result)?.value ?? 0;
}

test('allow answers {status, msg}; failures block the address+login; a report answers 0', async () => {
  const { app, metrics } = fresh();
  const first = await post(app, 'allow', body('192.0.2.1', '0a1'));
  assert.equal(first.statusCode, 200);
  assert.deepEqual(first.json(), { status: 0, msg: '' });
  for (const hash of ['0a1', '0a2', '0a3']) {
    const report = await post(
      app,
      'report',
      body('192.0.2.1', hash, { success: false, policy_reject: false }),
    );
    assert.deepEqual(report.json(), { status: 0, msg: '' });
  }
  const refused = await post(app, 'allow', body('192.0.2.1', 'fff'));
  assert.deepEqual(refused.json(), { status: -1, msg: 'Too many failed logins; try again later' });
  assert.equal(await counter(metrics, 'report', 'counted'), 3);
  assert.equal(await counter(metrics, 'allow', 'reject'), 1);
  const blocks = (await metrics.get('postwarden_auth_policy_blocks_total').get()).values;
  assert.deepEqual(
    blocks.map((v) => [v.labels.scope, v.value]),
    [['login', 1]],
  );
  const logged = lines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((l) => l['code'] === 'PW-G004');
  assert.equal(logged?.['target'], '192.0.2.1|alice@example.test');
  assert.ok(!lines.some((l) => l.includes('0a2')), 'no password hash in the log');
  // Metrics name no address, login or hash.
  const text = await metrics.registry.metrics();
  assert.ok(!/192\.0\.2\.1|alice|0a2/.test(text));
});

test('the API key: missing or wrong is 401 before the body is read; no key configured is 503', async () => {
  const { app, metrics } = fresh();
  assert.equal((await post(app, 'allow', body('192.0.2.1', '1'), '')).statusCode, 401);
  assert.equal((await post(app, 'allow', '{not json', 'wrong-key-wrong-key')).statusCode, 401);
  assert.equal(await counter(metrics, 'allow', 'unauthorized'), 2);
  const keyless = fresh({}, null);
  const r = await post(keyless.app, 'allow', body('192.0.2.1', '1'));
  assert.equal(r.statusCode, 503);
  assert.equal(r.json<{ status: number }>().status, 0);
});

test('auth policy off: 503 with a hint, and Dovecot fails open on it', async () => {
  const app = buildHttpApp({
    metrics: new Metrics({ processMetrics: false }),
    logger: createLogger('silent'),
    readiness: () => [],
    admin: statusOnlyAdmin(),
  });
  const r = await post(app, 'allow', body('192.0.2.1', '1'));
  assert.equal(r.statusCode, 503);
  assert.match(r.json<{ msg: string }>().msg, /auth_policy\.enabled/);
  await app.close();
});

test('bad input: malformed JSON, wrong types, unknown command, oversize body → 4xx, counted', async () => {
  const { app, metrics } = fresh({ max_body_bytes: 2048 });
  const malformed = await post(app, 'report', '{"login": "alice", ');
  assert.equal(malformed.statusCode, 400);
  assert.equal(malformed.json<{ status: number }>().status, 0);
  assert.equal((await post(app, 'allow', { login: { nested: 1 } })).statusCode, 400);
  assert.equal((await post(app, 'report', { success: 'maybe' })).statusCode, 400);
  assert.equal((await post(app, 'allow', '[1,2]')).statusCode, 400);
  assert.equal((await post(app, 'reset', body('192.0.2.1', '1'))).statusCode, 400);
  assert.equal(
    (await post(app, 'allow', { ...body('192.0.2.1', '1'), pad: 'x'.repeat(4096) })).statusCode,
    413,
  );
  assert.equal(await counter(metrics, 'report', 'bad_request'), 2);
  assert.equal(await counter(metrics, 'allow', 'bad_request'), 2);
  assert.equal(await counter(metrics, 'allow', 'too_large'), 1);
  // Extra attributes an admin adds (nested with `/`) pass.
  const nested = await post(app, 'allow', { ...body('192.0.2.1', '1'), attrs: { cos: 'premium' }, tls: '' });
  assert.equal(nested.statusCode, 200);
});

test('store down: allow and report fail open with status 0, counted and logged once (PW-G001)', async () => {
  const { app, store, metrics } = fresh();
  await store.close();
  const before = lines.length;
  for (let i = 0; i < 3; i++) {
    assert.deepEqual((await post(app, 'allow', body('192.0.2.1', '1'))).json(), { status: 0, msg: '' });
    assert.equal((await post(app, 'report', body('192.0.2.1', '1', { success: false }))).statusCode, 200);
  }
  assert.equal(await counter(metrics, 'allow', 'fail_open'), 3);
  assert.equal(await counter(metrics, 'report', 'fail_open'), 3);
  const errors = (await metrics.get('postwarden_errors_total').get()).values;
  assert.equal(errors.find((v) => v.labels.code === 'PW-G001')?.value, 6);
  const logged = lines.slice(before).filter((l) => l.includes('PW-G001'));
  assert.equal(logged.length, 1, 'throttled');
});

test('beyond max_in_flight requests are answered at once with 0 and not counted (shed)', async () => {
  const { app, metrics, guard } = fresh({ max_in_flight: 2 });
  // Hold every store read until released, so requests pile up in flight.
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const original = guard.allow.bind(guard);
  guard.allow = async (remote, login) => {
    await gate;
    return original(remote, login);
  };
  const pending = Array.from({ length: 5 }, () => post(app, 'allow', body('192.0.2.1', '1')));
  // The three beyond the limit are answered while two wait for the store.
  for (let i = 0; i < 200 && (await counter(metrics, 'allow', 'shed')) < 3; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  release();
  const answers = await Promise.all(pending);
  assert.ok(answers.every((a) => a.statusCode === 200 && a.json<{ status: number }>().status === 0));
  assert.equal(await counter(metrics, 'allow', 'shed'), 3);
  assert.equal(await counter(metrics, 'allow', 'accept'), 2);
});
