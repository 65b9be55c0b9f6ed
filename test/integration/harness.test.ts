/**
 * test/integration/harness.test.ts: proves the mail harness itself with real SMTP, no postwarden code
 * in the path (policy hook off).
 *
 * Postfix's mynetworks is 127.0.0.1/32, so swaks from 127.0.0.20 is an outside client. Checked:
 * outside -> local user: 250 and delivered into the Maildir over LMTP; outside -> remote domain:
 * Postfix's own 554 5.7.1 Relay access denied; SASL PLAIN as alice -> remote domain: relayed to the
 * smtp-sink relayhost (one file); wrong password: 535. Failure messages carry the swaks transcript or
 * the log text; the stack is stopped in `after` whatever happened.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startHarness, type Harness } from '../harness/harness.js';

const OUTSIDE = ['--local-interface', '127.0.0.20'];
let started: Harness | undefined;

function h(): Harness {
  if (!started) throw new Error('harness not started (see the before hook)');
  return started;
}

function queueId(reply: string): string {
  const id = /queued as ([0-9A-F]+)/.exec(reply)?.[1];
  if (!id) throw new Error(`no queue id in '${reply}'`);
  return id;
}

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

before(async () => {
  started = await startHarness({ policy: 'off' });
});

after(async () => {
  await started?.stop();
});

test('an outside client can send to a local user; the mail lands in the Maildir via LMTP', async () => {
  const inboxBefore = h().maildirCount('alice');
  const mark = h().logMark();
  const r = await h().swaks([
    ...OUTSIDE,
    ...['--from', 'sender@remote.test', '--to', 'alice@example.test'],
    ...['--header', 'Subject: harness inbound'],
  ]);
  assert.equal(r.code, 0, r.transcript);
  assert.match(r.lastReply, /^250 2\.0\.0 Ok: queued as [0-9A-F]+$/, r.transcript);
  const id = queueId(r.lastReply);

  await h().waitForLog(new RegExp(`${id}: client=unknown\\[127\\.0\\.0\\.20\\]`), mark, 5_000);
  const sent = await h().waitForLog(
    new RegExp(`${id}: to=<alice@example\\.test>.* status=sent`),
    mark,
    15_000,
  );
  assert.match(sent, new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${h().lmtpPort}`));
  assert.equal(h().maildirCount('alice'), inboxBefore + 1);
});

test('an outside client gets Postfix’s own relay denial for a remote domain', async () => {
  const sinkBefore = h().sinkFiles().length;
  const mark = h().logMark();
  const r = await h().swaks([...OUTSIDE, '--from', 'sender@remote.test', '--to', 'someone@remote.test']);
  assert.equal(r.code, 24, r.transcript); // swaks: rejected at RCPT
  assert.equal(r.lastReply, '554 5.7.1 <someone@remote.test>: Relay access denied', r.transcript);
  await h().waitForLog(
    /NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.20\]: 554 5\.7\.1 <someone@remote\.test>: Relay access denied/,
    mark,
    5_000,
  );
  assert.equal(h().sinkFiles().length, sinkBefore);
});

test('a client authenticated with SASL PLAIN may relay; the mail reaches the sink', async () => {
  const sinkBefore = h().sinkFiles();
  const mark = h().logMark();
  const subject = `harness relay ${process.pid}-${Date.now()}`;
  const r = await h().swaks([
    ...OUTSIDE,
    ...['--auth', 'PLAIN', '--auth-user', 'alice@example.test', '--auth-password', 'alice-secret'],
    ...['--from', 'alice@example.test', '--to', 'someone@remote.test', '--header', `Subject: ${subject}`],
  ]);
  assert.equal(r.code, 0, r.transcript);
  assert.ok(r.replies.includes('235 2.7.0 Authentication successful'), r.transcript);
  assert.match(r.lastReply, /^250 2\.0\.0 Ok: queued as /, r.transcript);
  const id = queueId(r.lastReply);

  await h().waitForLog(
    new RegExp(
      `${id}: client=unknown\\[127\\.0\\.0\\.20\\], sasl_method=PLAIN, sasl_username=alice@example\\.test`,
    ),
    mark,
    5_000,
  );
  await h().waitForLog(
    new RegExp(
      `${id}: to=<someone@remote\\.test>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${h().sinkPort}.* status=sent`,
    ),
    mark,
    15_000,
  );
  const added = h()
    .sinkFiles()
    .filter((f) => !sinkBefore.includes(f));
  assert.equal(added.length, 1, `new sink files: ${added.join(', ')}`);
  const message = readFileSync(added[0] ?? '', 'utf8');
  assert.match(message, /^X-Rcpt-Args: <someone@remote\.test>/m);
  assert.match(message, new RegExp(`^Subject: ${esc(subject)}$`, 'm'));
});

test('a wrong password gets 535', async () => {
  const mark = h().logMark();
  const r = await h().swaks([
    ...OUTSIDE,
    ...['--auth', 'PLAIN', '--auth-user', 'alice@example.test', '--auth-password', 'not-alice-secret'],
    ...['--from', 'alice@example.test', '--to', 'someone@remote.test'],
  ]);
  assert.notEqual(r.code, 0, r.transcript);
  assert.match(r.lastReply, /^535 5\.7\.8 Error: authentication failed/, r.transcript);
  await h().waitForLog(/warning: unknown\[127\.0\.0\.20\]: SASL PLAIN authentication failed/, mark, 5_000);
});
