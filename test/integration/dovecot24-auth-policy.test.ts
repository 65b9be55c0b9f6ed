/**
 * Dovecot 2.4 (Debian 13's, run in a trixie root: test/harness/dovecot24.ts) asks postwarden's auth policy
 * through the shipped 2.4 fragment, dovecot-snippets/auth-policy-2.4.conf, rendered with this test's URL and
 * key. The IMAP logins come from 127.0.0.x, each address a distinct client on loopback.
 *
 * 2.4 renamed the variables that the policy request carries (`%{requested_username}`, `%{remote_ip}`,
 * `%{hashed_password}`) and added `%{fail_type}`. If one of them were wrong, postwarden would see the same
 * password hash every time, or no address. A stale password repeated then could not be told from a guess,
 * and a block could not be scoped. This test shows both: a stale password repeated does not block, and the
 * right one then logs in. Distinct wrong passwords block that address and login, so that even the right
 * password is refused by the policy server. The same login from another address still gets in.
 *
 * Ports 21470–21473 only.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { AUTH_POLICY_KEY, authPolicyConfig, authPolicyFragment } from '../harness/auth-policy.js';
import { type Dovecot24, startDovecot24 } from '../harness/dovecot24.js';
import { imapLoginFrom } from '../harness/imap-login.js';
import { Postwarden } from '../harness/postwarden.js';

const NAME = 'pw-h-auth24';
const IMAP_PORT = 21470;
const LMTP_PORT = 21471;
const HTTP = '127.0.0.1:21472';
const work = mkdtempSync('/tmp/pw-h-auth24-');
const server = new Postwarden('auth24', work, HTTP, '127.0.0.1:21473');
let dovecot: Dovecot24 | undefined;

function d(): Dovecot24 {
  if (!dovecot) throw new Error('Dovecot 2.4 not started');
  return dovecot;
}

before(
  async () => {
    writeFileSync(path.join(work, 'auth-policy.key'), `${AUTH_POLICY_KEY}\n`, { mode: 0o600 });
    await server.start(
      authPolicyConfig({ policy: server.policy, http: HTTP, blockS: 60, addressBlockAfter: 100 }),
    );
    const fragment = authPolicyFragment('2.4', HTTP);
    dovecot = await startDovecot24({ name: NAME, imapPort: IMAP_PORT, lmtpPort: LMTP_PORT, fragment });
  },
  // The first run of the 2.4 tests builds the trixie root (debootstrap): minutes, not seconds.
  { timeout: 900_000 },
);

after(async () => {
  await dovecot?.stop();
  await server.stop();
  if (dovecot) rmSync(dovecot.outside(`/${NAME}`), { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

const imapLogin = (user: string, password: string, from: string) =>
  imapLoginFrom(IMAP_PORT, user, password, from);
const ok = (reply: string) => /^a1 OK/.test(reply);

async function metric(name: string, labels: string): Promise<number> {
  const line = (await server.metrics()).split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

test('Dovecot 2.4 asks the policy: a stale password repeated does not block; the right one then logs in', async () => {
  for (let i = 0; i < 8; i++) {
    assert.match(await imapLogin('alice@example.test', 'old-secret', '127.0.0.3'), /^a1 NO/);
  }
  assert.ok(ok(await imapLogin('alice@example.test', 'alice-secret', '127.0.0.3')), d().log().slice(-2000));
  assert.ok(
    (await metric('postwarden_auth_policy_requests_total', 'command="report",result="repeat"')) >= 7,
    server.log().slice(-2000),
  );
  assert.equal(await metric('postwarden_auth_policy_blocks_total', 'scope="login"'), 0);
});

test('Dovecot 2.4: distinct wrong passwords block that address+login; the same login elsewhere still logs in', async () => {
  for (let i = 0; i < 4; i++) {
    assert.match(await imapLogin('alice@example.test', `guess-${i}`, '127.0.0.4'), /^a1 NO/);
  }
  const mark = d().log().length;
  assert.match(
    await imapLogin('alice@example.test', 'alice-secret', '127.0.0.4'),
    /^a1 NO/,
    'right password, refused',
  );
  const refusals = d()
    .log()
    .slice(mark)
    .split('\n')
    .filter((l) => l.includes('policy server refusal'));
  assert.equal(refusals.length, 1, `refused by the policy server:\n${d().log().slice(mark)}`);
  assert.ok(ok(await imapLogin('alice@example.test', 'alice-secret', '127.0.0.2')), 'another address');
  assert.equal(await metric('postwarden_auth_policy_blocks_total', 'scope="login"'), 1);
  const blocked = server.lines().find((l) => l['code'] === 'PW-G004');
  assert.equal(blocked?.['target'], '127.0.0.4|alice@example.test');
  assert.ok(!server.log().includes('guess-'), 'no password in the log');
});
