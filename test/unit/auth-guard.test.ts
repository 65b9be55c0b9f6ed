/**
 * The auth guard: its pure decisions (tables), then the guard on a real in-memory SQLite store with a controlled
 * clock — stale password vs guessing, thresholds per login, address and network, tarpit steps, blocks that end,
 * the exemption a success gives, trusted networks, and the auth_block policy check reading the same blocks.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import {
  addPassword,
  AuthGuard,
  authPolicySchema,
  authSubject,
  crossedScopes,
  decideAllow,
  tarpitSeconds,
  type AuthPolicySettings,
  type AuthReport,
} from '../../src/core/auth-guard.js';
import { createAuthBlockCheck } from '../../src/core/checks/auth-block.js';
import { newSession } from '../../src/core/pipeline.js';
import type { LookupTable } from '../../src/core/ports.js';
import { toPolicyRequest } from '../../src/core/request.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { ipInCidr } from '../../src/util/ip.js';

const defaults = authPolicySchema.parse({});

test('authSubject: canonical address, /24 and /64 networks, login folded; no subject without an address', () => {
  assert.deepEqual(authSubject('::ffff:192.0.2.7', ' Alice@Example.TEST ', defaults), {
    address: '192.0.2.7',
    network: '192.0.2.0/24',
    login: 'alice@example.test',
  });
  assert.equal(authSubject('2001:DB8:1:2::10', 'bob', defaults)?.network, '2001:db8:1:2::/64');
  assert.equal(authSubject('', 'bob', defaults), undefined);
  assert.equal(authSubject('not-an-ip', 'bob', defaults), undefined);
  assert.equal(authSubject('192.0.2.7', 'x'.repeat(1000), defaults)?.login.length, 256);
});

test('tarpitSeconds: nothing below tarpit_after, then the steps, the last one held', () => {
  const s = { tarpit_after: 3, tarpit_steps_s: [1, 2, 4] };
  assert.deepEqual(
    [0, 2, 3, 4, 5, 6, 50].map((n) => tarpitSeconds(n, s)),
    [0, 0, 1, 2, 4, 4, 4],
  );
  assert.equal(tarpitSeconds(10, { tarpit_after: 0, tarpit_steps_s: [1] }), 0);
  assert.equal(tarpitSeconds(10, { tarpit_after: 1, tarpit_steps_s: [] }), 0);
});

const rows: [string, Parameters<typeof decideAllow>[0], number, string][] = [
  ['nothing known', { blocked: new Set(), exempt: false, addressFailures: 0 }, 0, 'accept'],
  ['a few failures: tarpit', { blocked: new Set(), exempt: false, addressFailures: 4 }, 2, 'tarpit'],
  ['address blocked', { blocked: new Set(['address']), exempt: false, addressFailures: 9 }, -1, 'reject'],
  ['network blocked', { blocked: new Set(['network']), exempt: false, addressFailures: 0 }, -1, 'reject'],
  [
    'address blocked, exempt',
    { blocked: new Set(['address']), exempt: true, addressFailures: 9 },
    0,
    'exempt',
  ],
  [
    'login blocked, even exempt',
    { blocked: new Set(['login']), exempt: true, addressFailures: 0 },
    -1,
    'reject',
  ],
];
for (const [name, snapshot, status, outcome] of rows) {
  test(`decideAllow: ${name} → ${status}`, () => {
    const answer = decideAllow(snapshot, defaults);
    assert.equal(answer.status, status);
    assert.equal(answer.outcome, outcome);
    assert.equal(answer.msg, status < 0 ? defaults.block_text : '');
  });
}

test('crossedScopes: each threshold on its own counter; 0 never blocks', () => {
  const counts = { login: 5, address: 10, network: 30, tries: 1 };
  assert.deepEqual(crossedScopes(counts, defaults), ['login', 'address', 'network']);
  assert.deepEqual(crossedScopes({ login: 4, address: 9, network: 29, tries: 99 }, defaults), []);
  assert.deepEqual(crossedScopes({ login: 1, address: 1, network: 1, tries: 100 }, defaults), ['login']);
  const never = { ...defaults, login_block_after: 0, address_block_after: 0, network_block_after: 0 };
  assert.deepEqual(crossedScopes({ login: 1e4, address: 1e4, network: 1e4, tries: 0 }, never), []);
});

test('addPassword keeps the newest max hashes', () => {
  assert.equal(addPassword(undefined, 'a1', 3), 'a1');
  assert.equal(addPassword('a1,a2,a3', 'a4', 3), 'a2,a3,a4');
});

/** A guard on a fresh in-memory store whose clock the test moves. */
function guardWith(overrides: Partial<AuthPolicySettings> = {}, trusted: readonly LookupTable[] = []) {
  let now = 1_700_000_000_000;
  const store = new SqliteStore({ path: ':memory:', now: () => now });
  const settings = authPolicySchema.parse({ tarpit_steps_s: [], ...overrides });
  const guard = new AuthGuard(settings, store, trusted, () => now);
  const fail = (remote: string, login: string, pwhash: string, extra: Partial<AuthReport> = {}) =>
    guard.report({ remote, login, pwhash, success: false, policyReject: false, failType: '', ...extra });
  const succeed = (remote: string, login: string) =>
    guard.report({ remote, login, pwhash: 'fff', success: true, policyReject: false, failType: '' });
  return {
    guard,
    store,
    fail,
    succeed,
    advance: (s: number) => {
      now += s * 1000;
    },
  };
}

test('a stale password repeated does not block; distinct passwords do', async () => {
  const { guard, fail } = guardWith();
  for (let i = 0; i < 40; i++)
    assert.equal((await fail('192.0.2.1', 'alice', 'abc')).outcome, i === 0 ? 'counted' : 'repeat');
  assert.equal((await guard.allow('192.0.2.1', 'alice')).status, 0);

  const results = [];
  for (let i = 0; i < 5; i++) results.push(await fail('192.0.2.2', 'alice', `a0${i}`));
  assert.deepEqual(
    results.map((r) => r.blocked.map((b) => b.scope)),
    [[], [], [], [], ['login']],
  );
  assert.deepEqual(results[4]?.blocked[0], { scope: 'login', target: '192.0.2.2|alice', failures: 5 });
  const answer = await guard.allow('192.0.2.2', 'ALICE');
  assert.equal(answer.status, -1);
  assert.equal(answer.scope, 'login');
  // Another login from the same address, and the same login elsewhere, are not blocked.
  assert.equal((await guard.allow('192.0.2.2', 'bob')).status, 0);
  assert.equal((await guard.allow('192.0.2.3', 'alice')).status, 0);
});

test('repeats alone block the address+login at repeat_block_after (no password hash to tell guesses apart)', async () => {
  const { guard, fail } = guardWith({ repeat_block_after: 20 });
  for (let i = 0; i < 19; i++) await fail('192.0.2.1', 'alice', '');
  assert.equal((await guard.allow('192.0.2.1', 'alice')).status, 0);
  const last = await fail('192.0.2.1', 'alice', '');
  assert.deepEqual(last.blocked, [{ scope: 'login', target: '192.0.2.1|alice', failures: 20 }]);
  assert.equal((await guard.allow('192.0.2.1', 'alice')).status, -1);
});

test('spraying many logins from one address blocks the address; then the network', async () => {
  const { guard, fail } = guardWith({ address_block_after: 4, network_block_after: 6 });
  for (let i = 0; i < 4; i++) await fail('192.0.2.1', `user${i}`, '123');
  assert.equal((await guard.allow('192.0.2.1', 'someone')).scope, 'address');
  assert.equal((await guard.allow('192.0.2.9', 'someone')).status, 0);
  const r1 = await fail('192.0.2.9', 'x', '1');
  const r2 = await fail('192.0.2.9', 'y', '1');
  assert.deepEqual(r1.blocked, []);
  assert.deepEqual(r2.blocked, [{ scope: 'network', target: '192.0.2.0/24', failures: 6 }]);
  assert.equal((await guard.allow('192.0.2.200', 'someone')).scope, 'network');
  assert.equal((await guard.allow('198.51.100.1', 'someone')).status, 0);
});

test('tarpit seconds grow with the address failures before the block', async () => {
  const { guard, fail } = guardWith({ tarpit_after: 2, tarpit_steps_s: [1, 3], login_block_after: 0 });
  const statuses = [];
  for (let i = 0; i < 5; i++) {
    statuses.push((await guard.allow('192.0.2.1', 'alice')).status);
    await fail('192.0.2.1', 'alice', `${i}0`);
  }
  assert.deepEqual(statuses, [0, 0, 1, 3, 3]);
});

test('a block lasts auth_block_s; refusals it causes are not counted again', async () => {
  const { guard, fail, advance } = guardWith({ login_block_after: 2, auth_block_s: 60, window_s: 600 });
  await fail('192.0.2.1', 'alice', '1');
  await fail('192.0.2.1', 'alice', '2');
  assert.equal((await guard.allow('192.0.2.1', 'alice')).status, -1);
  const refused = await fail('192.0.2.1', 'alice', '3', { policyReject: true });
  assert.equal(refused.outcome, 'ignored');
  assert.equal((await fail('192.0.2.1', 'alice', '4', { failType: 'policy' })).outcome, 'ignored');
  assert.equal((await fail('192.0.2.1', 'alice', '5', { failType: 'internal' })).outcome, 'ignored');
  advance(61);
  assert.equal((await guard.allow('192.0.2.1', 'alice')).status, 0);
});

test('failures are counted within window_s of the first one', async () => {
  const { guard, fail, advance } = guardWith({ login_block_after: 3, window_s: 60 });
  await fail('192.0.2.1', 'alice', '1');
  await fail('192.0.2.1', 'alice', '2');
  advance(61);
  await fail('192.0.2.1', 'alice', '3');
  assert.equal((await guard.allow('192.0.2.1', 'alice')).status, 0);
});

test('a success clears the address+login and exempts it from address and network blocks', async () => {
  const { guard, fail, succeed } = guardWith({ login_block_after: 3, address_block_after: 3 });
  await fail('192.0.2.1', 'alice', '1');
  await fail('192.0.2.1', 'alice', '2');
  assert.equal((await succeed('192.0.2.1', 'alice')).outcome, 'success');
  await fail('192.0.2.1', 'alice', '3');
  assert.equal((await guard.allow('192.0.2.1', 'alice')).status, 0, 'the success reset the login count');
  // Someone else behind the same address guesses: the address is blocked, alice is not.
  await fail('192.0.2.1', 'mallory', '7');
  assert.equal((await guard.allow('192.0.2.1', 'bob')).scope, 'address');
  const alice = await guard.allow('192.0.2.1', 'alice');
  assert.equal(alice.status, 0);
  assert.equal(alice.outcome, 'exempt');
});

test('the exemption lasts exempt_s and later successes renew it once half of it has passed', async () => {
  const { guard, store, fail, succeed, advance } = guardWith({
    exempt_s: 100,
    address_block_after: 1,
    auth_block_s: 1000,
  });
  const exempt = () => store.getEntry('auth:ok:192.0.2.1|alice');
  await succeed('192.0.2.1', 'alice');
  const first = await exempt();
  advance(30);
  await succeed('192.0.2.1', 'alice');
  assert.deepEqual(await exempt(), first, 'not rewritten before half of exempt_s');
  advance(30);
  await succeed('192.0.2.1', 'alice');
  assert.notDeepEqual(await exempt(), first, 'renewed after half of it');
  await fail('192.0.2.1', 'mallory', '1');
  advance(90);
  assert.equal((await guard.allow('192.0.2.1', 'alice')).outcome, 'exempt');
  advance(20);
  assert.equal((await guard.allow('192.0.2.1', 'alice')).scope, 'address', 'the exemption ended');
});

test('trusted networks are never counted or refused; no address means no opinion', async () => {
  const trusted: LookupTable = {
    name: 'inline:test',
    lookup: async (q) =>
      q.kind === 'ip' && ipInCidr(q.value, '10.0.0.0/8')
        ? { status: 'found', key: '10.0.0.0/8', value: '' }
        : { status: 'notfound' },
  };
  const { guard, fail } = guardWith({ login_block_after: 1 }, [trusted]);
  assert.equal((await fail('10.1.2.3', 'alice', '1')).outcome, 'trusted');
  assert.equal((await guard.allow('10.1.2.3', 'alice')).outcome, 'trusted');
  assert.equal((await fail('', 'alice', '1')).outcome, 'ignored');
  assert.equal((await guard.allow('', 'alice')).outcome, 'no_address');
});

test('two instances on one store agree: failures seen by one block logins at the other', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pw-auth-guard-'));
  const file = path.join(dir, 'state.db');
  const settings = authPolicySchema.parse({ login_block_after: 3, tarpit_steps_s: [] });
  const stores = [new SqliteStore({ path: file }), new SqliteStore({ path: file })];
  try {
    const [a, b] = stores.map((store) => new AuthGuard(settings, store, []));
    const report = (guard: AuthGuard | undefined, pwhash: string) =>
      guard?.report({
        remote: '192.0.2.1',
        login: 'alice',
        pwhash,
        success: false,
        policyReject: false,
        failType: '',
      });
    await report(a, '1');
    await report(b, '2');
    await report(a, '2'); // seen by b: a repeat, whichever instance sees it
    assert.equal((await b?.allow('192.0.2.1', 'alice'))?.status, 0);
    await report(a, '3');
    assert.equal((await b?.allow('192.0.2.1', 'alice'))?.status, -1);
  } finally {
    await Promise.all(stores.map((store) => store.close()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a store that cannot answer rejects (callers fail open or go through on_error)', async () => {
  const { guard, store, fail } = guardWith();
  await store.close();
  await assert.rejects(guard.allow('192.0.2.1', 'alice'), { code: 'PW-S001' });
  await assert.rejects(fail('192.0.2.1', 'alice', '1'), { code: 'PW-S001' });
});

test('auth_block check: CONNECT by address, SASL by address+login with the exemption, nothing otherwise', async () => {
  const { guard, fail, succeed } = guardWith({ login_block_after: 2, address_block_after: 3 });
  const check = createAuthBlockCheck({ at_connect: true, sasl: true }, guard, 'Too many failed logins');
  const run = (attributes: Record<string, string>) =>
    check.run(toPolicyRequest({ request: 'smtpd_access_policy', ...attributes }), {
      session: newSession(),
      score: 0,
      earlier: [],
      signal: new AbortController().signal,
    });
  await succeed('192.0.2.1', 'alice@example.test');
  await fail('192.0.2.1', 'bob@example.test', '1');
  await fail('192.0.2.1', 'bob@example.test', '2');
  const bob = await run({
    protocol_state: 'RCPT',
    client_address: '192.0.2.1',
    sasl_username: 'bob@example.test',
  });
  assert.equal(bob[0]?.symbol, 'AUTH_BLOCKED_LOGIN');
  assert.deepEqual(bob[0]?.reply, { code: 450, dsn: '4.7.1', text: 'Too many failed logins' });
  assert.deepEqual(await run({ protocol_state: 'CONNECT', client_address: '192.0.2.1' }), []);

  await fail('192.0.2.1', 'carol@example.test', '3');
  const connect = await run({ protocol_state: 'CONNECT', client_address: '192.0.2.1' });
  assert.equal(connect[0]?.symbol, 'AUTH_BLOCKED_ADDRESS');
  assert.equal(connect[0]?.action, 'defer');
  // alice logged in from there: exempt; an unauthenticated RCPT is not asked about.
  assert.deepEqual(
    await run({ protocol_state: 'RCPT', client_address: '192.0.2.1', sasl_username: 'alice@example.test' }),
    [],
  );
  assert.deepEqual(await run({ protocol_state: 'RCPT', client_address: '192.0.2.1' }), []);
  const off = createAuthBlockCheck({ at_connect: false, sasl: true }, guard, 'x');
  assert.deepEqual(
    await off.run(
      toPolicyRequest({
        request: 'smtpd_access_policy',
        protocol_state: 'CONNECT',
        client_address: '192.0.2.1',
      }),
      {
        session: newSession(),
        score: 0,
        earlier: [],
        signal: new AbortController().signal,
      },
    ),
    [],
  );
});
