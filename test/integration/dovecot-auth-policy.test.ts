/**
 * A real Dovecot (the harness) asks postwarden's auth policy through the shipped 2.3 fragment
 * (dovecot-snippets/auth-policy-2.3.conf, rendered with this test's URL and key): IMAP logins from 127.0.0.x
 * (each a distinct client address on loopback) and SMTP AUTH through Postfix, which authenticates via Dovecot.
 *
 * Shows: a stale password repeated many times does not block and the right one then works; distinct wrong
 * passwords block that address+login (even the right password is refused) while the same login from another
 * address still gets in; many logins guessed from one address block the address, except for a login that
 * succeeded there before (the exemption); SMTP AUTH is refused from the blocked address too, and the policy
 * service refuses it at CONNECT; the block ends after auth_block_s.
 *
 * Ports 21201-21211 and /tmp/pw-h-auth* only (this file's own range), so it can run beside other suites.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startHarness, type Harness } from '../harness/harness.js';
import { AUTH_POLICY_KEY, authPolicyConfig, authPolicyFragment } from '../harness/auth-policy.js';
import { imapLoginFrom } from '../harness/imap-login.js';
import { PolicyClient } from '../../src/policy/client.js';
import { Postwarden, sleep } from '../harness/postwarden.js';

const HTTP = '127.0.0.1:21210';
const BLOCK_S = 6;
const work = mkdtempSync('/tmp/pw-h-auth-pw-');
const server = new Postwarden('auth', work, HTTP, '127.0.0.1:21211');
let harness: Harness;

before(async () => {
  writeFileSync(path.join(work, 'auth-policy.key'), `${AUTH_POLICY_KEY}\n`, { mode: 0o600 });
  await server.start(
    authPolicyConfig({ policy: server.policy, http: HTTP, blockS: BLOCK_S, addressBlockAfter: 6 }),
  );
  const fragment = authPolicyFragment('2.3', HTTP);
  const include = path.join(work, 'auth-policy.conf');
  writeFileSync(include, fragment);
  harness = await startHarness({
    policy: 'off',
    dovecotInclude: include,
    env: {
      HARNESS_DIR: '/tmp/pw-h-auth',
      IMAP_PORT: '21201',
      SMTP_PORT: '21202',
      SINK_PORT: '21203',
      LMTP_PORT: '21204',
      DOVECOT_AUTH_PORT: '21205',
      REINJECT_PORT: '21206',
    },
  });
});

after(async () => {
  await harness?.stop();
  await server.stop();
  rmSync(work, { recursive: true, force: true });
});

/** One IMAP LOGIN from `from` to the harness's Dovecot: the tagged reply. */
const imapLogin = (user: string, password: string, from: string) =>
  imapLoginFrom(harness.imapPort, user, password, from);

const ok = (reply: string) => /^a1 OK/.test(reply);

/** Lines Dovecot logged since `mark` (bytes) that say the policy server refused a login. */
function policyRefusals(mark: number): string[] {
  const log = readFileSync(path.join(harness.dir, 'log/dovecot.log'), 'utf8').slice(mark);
  return log.split('\n').filter((l) => l.includes('policy server refusal'));
}
const dovecotLogSize = () => readFileSync(path.join(harness.dir, 'log/dovecot.log')).length;

async function metric(name: string, labels: string): Promise<number> {
  const text = await server.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

test('a stale password repeated does not block; the right one then logs in', async () => {
  for (let i = 0; i < 12; i++) {
    assert.match(await imapLogin('alice@example.test', 'old-secret', '127.0.0.3'), /^a1 NO/);
  }
  assert.ok(ok(await imapLogin('alice@example.test', 'alice-secret', '127.0.0.3')));
  assert.ok(
    (await metric('postwarden_auth_policy_requests_total', 'command="report",result="repeat"')) >= 11,
  );
  assert.equal(await metric('postwarden_auth_policy_blocks_total', 'scope="login"'), 0);
});

test('distinct wrong passwords block that address+login; the same login elsewhere still logs in', async () => {
  for (let i = 0; i < 4; i++) {
    assert.match(await imapLogin('bob@example.test', `guess-${i}`, '127.0.0.4'), /^a1 NO/);
  }
  const mark = dovecotLogSize();
  assert.match(
    await imapLogin('bob@example.test', 'bob-secret', '127.0.0.4'),
    /^a1 NO/,
    'right password, refused',
  );
  assert.equal(policyRefusals(mark).length, 1, 'refused by the policy server, not by the password');
  assert.ok(ok(await imapLogin('bob@example.test', 'bob-secret', '127.0.0.2')), 'another address');
  assert.ok(ok(await imapLogin('alice@example.test', 'alice-secret', '127.0.0.4')), 'another login');
  assert.equal(await metric('postwarden_auth_policy_blocks_total', 'scope="login"'), 1);
  const blocked = server.lines().find((l) => l['code'] === 'PW-G004');
  assert.equal(blocked?.['target'], '127.0.0.4|bob@example.test');
  assert.ok(!server.log().includes('guess-'), 'no password in the log');
});

test('guessing many logins blocks the address (IMAP and SMTP AUTH) except an exempt login; it ends on time', async () => {
  // alice logged in from 127.0.0.1 before the attack: exempt from an address block there.
  assert.ok(ok(await imapLogin('alice@example.test', 'alice-secret', '127.0.0.1')));
  for (let i = 0; i < 6; i++) {
    assert.match(await imapLogin(`nobody${i}@example.test`, 'password1', '127.0.0.1'), /^a1 NO/);
  }
  const blockedAt = Date.now();
  const mark = dovecotLogSize();
  assert.match(await imapLogin('bob@example.test', 'bob-secret', '127.0.0.1'), /^a1 NO/);
  assert.equal(policyRefusals(mark).length, 1);
  assert.ok(ok(await imapLogin('alice@example.test', 'alice-secret', '127.0.0.1')), 'exempt');
  assert.ok(ok(await imapLogin('bob@example.test', 'bob-secret', '127.0.0.2')), 'another address');

  const auth = (from: string) =>
    harness.swaks([
      '--local-interface',
      from,
      '--quit-after',
      'AUTH',
      '--auth',
      'PLAIN',
      '--auth-user',
      'bob@example.test',
      '--auth-password',
      'bob-secret',
    ]);
  const refused = await auth('127.0.0.1');
  assert.equal(refused.code, 28, refused.transcript);
  const accepted = await auth('127.0.0.2');
  assert.equal(accepted.code, 0, accepted.transcript);
  assert.equal(await metric('postwarden_auth_policy_blocks_total', 'scope="address"'), 1);

  // The policy face reads the same block list: at CONNECT, and for a SASL client that is not exempt.
  const policy = await PolicyClient.connect(server.policy);
  try {
    const ask = (attributes: Record<string, string>) =>
      policy.query({ request: 'smtpd_access_policy', client_address: '127.0.0.1', ...attributes });
    assert.match(await ask({ protocol_state: 'CONNECT' }), /^450 4\.7\.1 Too many failed logins/);
    assert.match(
      await ask({
        protocol_state: 'RCPT',
        sasl_username: 'bob@example.test',
        sender: 'bob@example.test',
        recipient: 'x@remote.test',
      }),
      /^450 4\.7\.1/,
    );
    assert.match(await ask({ protocol_state: 'CONNECT', client_address: '127.0.0.2' }), /^DUNNO/);
  } finally {
    policy.close();
  }

  await sleep(Math.max(0, blockedAt + BLOCK_S * 1000 + 500 - Date.now()));
  assert.ok(ok(await imapLogin('bob@example.test', 'bob-secret', '127.0.0.1')), 'the block ended');
});
