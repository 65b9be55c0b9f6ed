/**
 * The auth policy shared through Redis: two postwarden instances (the built bin) on one real redis-server, each
 * answering Dovecot's HTTP requests. Failures reported to one block logins at the other; with Redis down both
 * fail open (status 0, counted as fail_open, PW-G001 logged) and stay responsive; with Redis back they decide
 * again.
 *
 * Ports 21212-21217 (this file's own), work dir under /tmp/pw-h-auth-redis-*.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Postwarden } from '../harness/postwarden.js';
import { startRedis, type RedisServer } from '../harness/redis.js';

const KEY = 'redis-it-key-0123456789';
const work = mkdtempSync('/tmp/pw-h-auth-redis-');
const a = new Postwarden('a', work, '127.0.0.1:21212', '127.0.0.1:21213');
const b = new Postwarden('b', work, '127.0.0.1:21214', '127.0.0.1:21216');
let redis: RedisServer;

const config = (instance: Postwarden) => `local_domains: [example.test]
store: { driver: redis, url: "${redis.url}", timeout_ms: 200 }
policy:
  listen: ${instance.policy}
  greylist: { mode: off }
  spf: { mode: off }
  dns_sanity: { mode: off }
http: { listen: ${instance.http}, token_file: admin.token }
auth_policy: { enabled: true, api_key_file: auth-policy.key, login_block_after: 3, tarpit_after: 0 }
`;

before(async () => {
  writeFileSync(path.join(work, 'auth-policy.key'), `${KEY}\n`, { mode: 0o600 });
  redis = await startRedis({ port: 21217 });
  await a.start(config(a));
  await b.start(config(b));
});

after(async () => {
  await Promise.all([a.stop(), b.stop()]);
  await redis?.stop();
  rmSync(work, { recursive: true, force: true });
});

async function ask(instance: Postwarden, command: 'allow' | 'report', body: Record<string, unknown>) {
  const response = await fetch(`http://${instance.http}/dovecot/auth-policy?command=${command}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': KEY },
    body: JSON.stringify({ login: 'alice@example.test', remote: '192.0.2.7', protocol: 'imap', ...body }),
  });
  assert.equal(response.status, 200);
  return (await response.json()) as { status: number; msg: string };
}

async function failOpenCount(instance: Postwarden, command: string): Promise<number> {
  const line = (await instance.metrics())
    .split('\n')
    .find((l) =>
      l.startsWith(`postwarden_auth_policy_requests_total{command="${command}",result="fail_open"}`),
    );
  return line ? Number(line.split(' ').pop()) : 0;
}

test('failures reported to one instance block the login at the other', async () => {
  for (const [instance, pwhash] of [
    [a, '0a1'],
    [b, '0a2'],
    [a, '0a3'],
  ] as const) {
    await ask(instance, 'report', { pwhash, success: false, policy_reject: false });
  }
  assert.deepEqual(await ask(b, 'allow', { pwhash: 'fff' }), {
    status: -1,
    msg: 'Too many failed logins; try again later',
  });
  assert.equal((await ask(a, 'allow', { pwhash: 'fff', remote: '192.0.2.8' })).status, 0);
});

test('Redis down: both fail open, counted and logged, and answer quickly; Redis back: they decide again', async () => {
  await redis.stop();
  const started = Date.now();
  for (const instance of [a, b]) {
    assert.deepEqual(await ask(instance, 'allow', { pwhash: 'fff' }), { status: 0, msg: '' });
    assert.equal((await ask(instance, 'report', { pwhash: '0b1', success: false })).status, 0);
  }
  assert.ok(Date.now() - started < 5000, 'each answer within the store deadline, not Dovecot’s 2 s timeout');
  for (const instance of [a, b]) {
    assert.ok((await failOpenCount(instance, 'allow')) >= 1);
    assert.ok((await failOpenCount(instance, 'report')) >= 1);
    assert.ok(instance.lines().some((l) => l['code'] === 'PW-G001'));
  }

  await redis.start(); // an empty Redis (no persistence): the block is gone, counting starts again
  const deadline = Date.now() + 10_000;
  let before = await failOpenCount(a, 'allow');
  for (;;) {
    await ask(a, 'allow', { pwhash: 'fff' });
    const now = await failOpenCount(a, 'allow');
    if (now === before) break; // decided without failing open
    before = now;
    assert.ok(Date.now() < deadline, 'postwarden did not reconnect to Redis within 10 s');
    await new Promise((r) => setTimeout(r, 200));
  }
  for (const pwhash of ['0c1', '0c2', '0c3']) await ask(b, 'report', { pwhash, success: false });
  assert.equal((await ask(a, 'allow', { pwhash: 'fff' })).status, -1);
});
