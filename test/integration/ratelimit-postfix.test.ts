/**
 * Rate limits behind a real Postfix (test/harness): postwarden's built bin serves the policy (asked at RCPT,
 * DATA and END-OF-MESSAGE) and the HTTP face. alice@example.test authenticates (SASL through Dovecot) and goes
 * over `per_sasl_user`: her next message lands in Postfix's hold queue (`postqueue -j`), the admin notice arrives
 * in bob's Maildir (sent through the same Postfix), and releasing through the API delivers the message to the
 * relayhost (smtp-sink). An anonymous outside client (127.0.0.20) over `per_client` gets 450 4.7.1 at DATA.
 *
 * Own ports 21500–21519 and HARNESS_DIR=/tmp/pw-h-rate, so it runs beside the other integration tests.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { type Harness, startHarness, TAG_HEADER, tagged } from '../harness/harness.js';
import { Postwarden, sleep } from '../harness/postwarden.js';

const POLICY = '127.0.0.1:21510';
const HTTP = '127.0.0.1:21511';
const TOKEN = 'rate-test-token-0123456789abcdef0123456789';
const HARNESS_ENV = {
  HARNESS_DIR: '/tmp/pw-h-rate',
  SMTP_PORT: '21500',
  SINK_PORT: '21501',
  LMTP_PORT: '21502',
  IMAP_PORT: '21503',
  DOVECOT_AUTH_PORT: '21504',
  REINJECT_PORT: '21505',
};
const ASK = `check_policy_service { inet:${POLICY}, timeout=10s }`;
const ALICE = ['--auth', 'PLAIN', '--auth-user', 'alice@example.test', '--auth-password', 'alice-secret'];
const OUTSIDE = ['--local-interface', '127.0.0.20', '--helo', 'mail.remote.test'];

const work = mkdtempSync(path.join(os.tmpdir(), 'pw-h-rate-it-'));
let harness: Harness | undefined;
const postwarden = new Postwarden('rate', work, HTTP, POLICY);

function h(): Harness {
  if (!harness) throw new Error('harness not started');
  return harness;
}

interface QueueEntry {
  queue_name: string;
  queue_id: string;
  sender: string;
}

async function queue(): Promise<QueueEntry[]> {
  const { stdout } = await promisify(execFile)('postqueue', ['-c', h().postfixConfDir, '-j']);
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as QueueEntry);
}

/** The API's answers, as far as the test reads them. */
interface Body {
  users: { user: string; held: number; incident?: { limit: string; notice: string } }[];
  held: { queueId: string }[];
  released: string[];
  deleted: string[];
}

async function api(method: 'GET' | 'POST', route: string): Promise<{ status: number; body: Body }> {
  const response = await fetch(`http://${HTTP}/api/v1/ratelimit${route}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  return { status: response.status, body: (await response.json()) as Body };
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

const queueId = (reply: string) => /queued as ([0-9A-Za-z]+)/.exec(reply)?.[1];

function sendAsAlice(tag: string) {
  return h().swaks([
    ...ALICE,
    '--from',
    'alice@example.test',
    '--to',
    'friend@remote.test',
    '--header',
    `${TAG_HEADER}: ${tag}`,
  ]);
}

function sinkHas(tag: string): boolean {
  return h()
    .sinkFiles()
    .some((f) => tagged(tag)(readFileSync(f, 'utf8')));
}

before(async () => {
  harness = await startHarness({
    policy: `inet:${POLICY}`,
    extraMainCf: [`smtpd_data_restrictions = ${ASK}`, `smtpd_end_of_data_restrictions = ${ASK}`],
    env: HARNESS_ENV,
  });
  writeFileSync(path.join(work, 'admin.token'), `${TOKEN}\n`, { mode: 0o600 });
  await postwarden.start(`hostname: mx.example.test
local_domains: [example.test]
local_networks: [127.0.0.1/32]
store: { driver: sqlite, path: ${path.join(work, 'state.db')} }
policy:
  listen: ${POLICY}
  spf: { mode: off }
  dns_sanity: { mode: off }
  greylist: { mode: off }
  ratelimit:
    per_sasl_user: 2/1h
    per_client: 2/1h
    notify: { to: bob@example.test, smtp: "127.0.0.1:${HARNESS_ENV.SMTP_PORT}" }
    postfix_config_dir: ${h().postfixConfDir}
http:
  listen: ${HTTP}
  token_file: ${path.join(work, 'admin.token')}
`);
});

after(async () => {
  await postwarden.stop();
  await harness?.stop();
  rmSync(work, { recursive: true, force: true });
});

test('alice over her limit: held in the hold queue, the admin is told once, release delivers, reset ends it', async () => {
  for (const tag of ['rate-1', 'rate-2']) {
    const r = await sendAsAlice(tag);
    assert.equal(r.code, 0, r.transcript);
  }
  await until(
    'the first two messages at the sink',
    () => (sinkHas('rate-1') && sinkHas('rate-2')) || undefined,
  );

  // The third is accepted (250: an authenticated user is never refused) and held.
  const third = await sendAsAlice('rate-3');
  assert.equal(third.code, 0, third.transcript);
  assert.match(third.lastReply, /^250 /);
  const id = queueId(third.lastReply);
  assert.ok(id, third.lastReply);
  const held = await until('the hold queue', async () =>
    (await queue()).find((e) => e.queue_id === id && e.queue_name === 'hold'),
  );
  assert.equal(held.sender, 'alice@example.test');
  await h().waitForLog(new RegExp(`${id}: hold: END-OF-MESSAGE from `), 0, 5000);

  // The fourth, although the incident is already open: held too, and no second notice.
  const fourth = await sendAsAlice('rate-4');
  assert.equal(fourth.code, 0, fourth.transcript);
  const id4 = queueId(fourth.lastReply);
  await until('the fourth in the hold queue', async () =>
    (await queue()).find((e) => e.queue_id === id4 && e.queue_name === 'hold'),
  );

  const notice = await h().waitForMessage('bob', (m) =>
    m.includes('X-Postwarden-Incident: alice@example.test'),
  );
  assert.match(notice, /Subject: Rate limit: mail of alice@example\.test is being held/);
  assert.match(notice, /per_sasl_user 2\/1h/);
  assert.match(notice, new RegExp(`First held: +${id}`));

  const listed = await until('the notice recorded as sent', async () => {
    const { body } = await api('GET', '/users');
    const alice = body.users.find((u) => u.user === 'alice@example.test');
    return alice?.incident?.notice === 'sent' ? alice : undefined;
  });
  assert.equal(listed.held, 2);
  assert.equal(listed.incident?.limit, 'per_sasl_user 2/1h');
  const one = await api('GET', '/users/alice@example.test');
  assert.deepEqual(one.body.held.map((m) => m.queueId).sort(), [id, id4].sort());

  // Release through the API: both leave the hold queue and reach the relayhost.
  const released = await api('POST', '/users/alice@example.test/release');
  assert.equal(released.status, 200, JSON.stringify(released.body));
  assert.deepEqual([...released.body.released].sort(), [id, id4].sort());
  await until(
    'the released messages at the sink',
    () => (sinkHas('rate-3') && sinkHas('rate-4')) || undefined,
    30_000,
  );
  assert.equal((await queue()).filter((e) => e.queue_name === 'hold').length, 0);

  // Still held until reset: the next message goes to the hold queue again.
  const fifth = await sendAsAlice('rate-5');
  const id5 = queueId(fifth.lastReply);
  await until('the fifth in the hold queue', async () =>
    (await queue()).find((e) => e.queue_id === id5 && e.queue_name === 'hold'),
  );
  // Delete it (spam from a stolen account), then reset the user: her next message is delivered.
  const deleted = await api('POST', '/users/alice@example.test/delete');
  assert.deepEqual(deleted.body.deleted, [id5]);
  assert.equal(
    (await queue()).some((e) => e.queue_id === id5),
    false,
  );
  const reset = await api('POST', '/users/alice@example.test/reset');
  assert.deepEqual(reset.body as unknown, { user: 'alice@example.test', incident_closed: true });
  assert.equal((await api('GET', '/users/alice@example.test')).status, 404);
  const sixth = await sendAsAlice('rate-6');
  assert.equal(sixth.code, 0, sixth.transcript);
  await until('the sixth at the sink', () => sinkHas('rate-6') || undefined);

  // One notice for the one incident.
  assert.equal(
    h()
      .maildirMessages('bob')
      .filter((m) => m.includes('X-Postwarden-Incident')).length,
    1,
  );
  assert.match(await postwarden.metrics(), /^postwarden_ratelimit_incidents_total 1$/m);
  assert.match(await postwarden.metrics(), /^postwarden_ratelimit_notices_total\{outcome="sent"\} 1$/m);
});

test('an anonymous client over its limit gets 450 4.7.1 at DATA, before it sends the body', async () => {
  for (let i = 0; i < 2; i++) {
    const r = await h().swaks([...OUTSIDE, '--from', 'friend@remote.test', '--to', 'bob@example.test']);
    assert.equal(r.code, 0, r.transcript);
  }
  const mark = h().logMark();
  const r = await h().swaks([...OUTSIDE, '--from', 'friend@remote.test', '--to', 'bob@example.test']);
  assert.notEqual(r.code, 0, r.transcript);
  assert.match(
    r.lastReply,
    /^450 4\.7\.1 <DATA>: Data command rejected: Rate limit exceeded, try again later$/,
  );
  await h().waitForLog(/: reject: DATA from unknown\[127\.0\.0\.20\]: 450 4\.7\.1/, mark, 5000);
  // postwarden's log is written asynchronously: wait for its decision line.
  const d = await until('the DATA decision in the log', () =>
    postwarden
      .decisions()
      .filter((l) => l.state === 'DATA' && l.client === '127.0.0.20' && l.verdicts.length > 0)
      .at(-1),
  );
  assert.equal(d.verdicts[0]?.symbol, 'RATELIMIT_DEFER');
  assert.match(d.verdicts[0]?.reason ?? '', /^client 127\.0\.0\.20 over 2\/1h messages/);
});
