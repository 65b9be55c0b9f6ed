/**
 * postwarden's policy face behind a real Postfix (test/harness): the built `postwarden` bin runs as a child
 * process, Postfix asks it about every RCPT through check_policy_service, and real SMTP sessions (swaks) from
 * real loopback addresses show the SMTP replies and the Postfix log. Postfix's mynetworks and postwarden's
 * local_networks are 127.0.0.1/32, so 127.0.0.20 is an outside client.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PolicyClient } from '../../src/policy/client.js';
import { type Harness, startHarness } from '../harness/harness.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BIN = path.join(ROOT, 'dist/src/cli/main.js');
const POLICY = '127.0.0.1:20060';
const HTTP = '127.0.0.1:20063';
const OUTSIDE = ['--local-interface', '127.0.0.20', '--helo', 'mail.remote.test'];
const BLOCKED = ['--local-interface', '127.0.0.66', '--helo', 'mail.remote.test'];
const ALICE = ['--auth', 'PLAIN', '--auth-user', 'alice@example.test', '--auth-password', 'alice-secret'];

const work = mkdtempSync(path.join(os.tmpdir(), 'pw-policy-it-'));
const logFile = path.join(work, 'postwarden.log');
const configFile = path.join(work, 'postwarden.yml');
writeFileSync(
  configFile,
  `hostname: mx.example.test
local_domains: [example.test]
local_networks: [127.0.0.1/32]
policy:
  # The DNS checks have their own test: test/integration/dns-postfix.test.ts
  spf: { mode: off }
  dns_sanity: { mode: off }
  listen: ${POLICY}
  greylist: { mode: off } # test/integration/greylist-postfix.test.ts greylists through Postfix
  lists:
    block:
      client: [127.0.0.66]
http:
  listen: ${HTTP}
`,
);

let postwarden: ChildProcess | undefined;
let harness: Harness | undefined;

function h(): Harness {
  if (!harness) throw new Error('harness not started');
  return harness;
}

async function startPostwarden(): Promise<void> {
  const out = openSync(logFile, 'a');
  postwarden = spawn(process.execPath, [BIN, 'serve', '--config', configFile], {
    stdio: ['ignore', out, out],
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const client = await PolicyClient.connect(POLICY, 500);
      client.close();
      return;
    } catch {
      if (Date.now() > deadline)
        throw new Error(`postwarden did not start: ${readFileSync(logFile, 'utf8')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function stopPostwarden(): Promise<void> {
  const child = postwarden;
  postwarden = undefined;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

interface DecisionLine {
  event?: string;
  recipient?: string;
  sender?: string;
  client?: string;
  action: string;
  verdicts: { symbol: string }[];
}

function decisions(): DecisionLine[] {
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as DecisionLine)
    .filter((l) => l.event === 'policy.decision');
}

/** The decision log line matching `match`, waiting a little: the log is a file another process writes. */
async function decisionFor(match: (line: DecisionLine) => boolean): Promise<DecisionLine | undefined> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const found = decisions().find(match);
    if (found || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  await startPostwarden();
  harness = await startHarness({ policy: `inet:${POLICY}` });
});

after(async () => {
  await harness?.stop();
  await stopPostwarden();
  rmSync(work, { recursive: true, force: true });
});

test('an outside client may send to a local user: postwarden answers DUNNO and the mail is delivered', async () => {
  const inbox = h().maildirCount('alice');
  const r = await h().swaks([...OUTSIDE, '--from', 'friend@remote.test', '--to', 'alice@example.test']);
  assert.equal(r.code, 0, r.transcript);
  const d = await decisionFor(
    (l) => l.recipient === 'alice@example.test' && l.sender === 'friend@remote.test',
  );
  assert.equal(d?.action, 'DUNNO');
  assert.equal(d?.client, '127.0.0.20');
  const id = /queued as ([0-9A-F]+)/.exec(r.lastReply)?.[1] ?? 'none';
  await h().waitForLog(new RegExp(`${id}: to=<alice@example\\.test>.* status=sent`), 0, 15_000);
  assert.equal(h().maildirCount('alice'), inbox + 1);
});

test("relay denied for an outside client to an outside recipient: Postfix's reject_unauth_destination stays in front", async () => {
  const before = decisions().length;
  const r = await h().swaks([...OUTSIDE, '--from', 'friend@remote.test', '--to', 'victim@remote.test']);
  assert.equal(r.code, 24, r.transcript);
  assert.equal(r.lastReply, '554 5.7.1 <victim@remote.test>: Relay access denied');
  // Postfix refused before asking: no decision was needed.
  assert.equal(
    decisions()
      .slice(before)
      .filter((l) => l.recipient === 'victim@remote.test').length,
    0,
  );
});

test('a forged local sender from an outside client is refused at RCPT', async () => {
  const mark = h().logMark();
  const r = await h().swaks([...OUTSIDE, '--from', 'ceo@example.test', '--to', 'alice@example.test']);
  assert.equal(r.code, 24, r.transcript);
  assert.equal(
    r.lastReply,
    '554 5.7.1 <alice@example.test>: Recipient address rejected: Sender address <ceo@example.test> is in a local domain: authenticate to send as it',
  );
  await h().waitForLog(
    /NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.20\]: 554 5\.7\.1 <alice@example\.test>/,
    mark,
    5000,
  );
  const d = await decisionFor((l) => l.sender === 'ceo@example.test');
  assert.deepEqual(
    d?.verdicts.map((v) => v.symbol),
    ['FORGED_LOCAL_SENDER'],
  );
});

test('a client in local_networks relays to a remote recipient', async () => {
  const sink = h().sinkFiles().length;
  const r = await h().swaks([
    '--local-interface',
    '127.0.0.1',
    '--from',
    'app@example.test',
    '--to',
    'x@remote.test',
  ]);
  assert.equal(r.code, 0, r.transcript);
  const d = await decisionFor((l) => l.recipient === 'x@remote.test' && l.sender === 'app@example.test');
  assert.deepEqual(
    d?.verdicts.map((v) => v.symbol),
    ['CLIENT_LOCAL_NETWORK'],
  );
  const deadline = Date.now() + 15_000;
  while (h().sinkFiles().length === sink && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 100));
  assert.equal(h().sinkFiles().length, sink + 1);
});

test('an authenticated client relays as its own address', async () => {
  const r = await h().swaks([...OUTSIDE, ...ALICE, '--from', 'alice@example.test', '--to', 'y@remote.test']);
  assert.equal(r.code, 0, r.transcript);
  const d = await decisionFor((l) => l.recipient === 'y@remote.test');
  assert.deepEqual(
    d?.verdicts.map((v) => v.symbol),
    ['CLIENT_AUTHENTICATED', 'SENDER_OWNED'],
  );
});

test('an authenticated client may not send as an address it does not own', async () => {
  const r = await h().swaks([...OUTSIDE, ...ALICE, '--from', 'bob@example.test', '--to', 'z@remote.test']);
  assert.equal(r.code, 24, r.transcript);
  assert.equal(
    r.lastReply,
    '553 5.7.1 <z@remote.test>: Recipient address rejected: Sender address not owned by user alice@example.test',
  );
});

test('a client on the block list is refused', async () => {
  const r = await h().swaks([...BLOCKED, '--from', 'friend@remote.test', '--to', 'alice@example.test']);
  assert.equal(r.code, 24, r.transcript);
  assert.equal(r.lastReply, '554 5.7.1 <alice@example.test>: Recipient address rejected: Access denied');
});

test('a non-FQDN HELO from an outside client is refused', async () => {
  const r = await h().swaks([
    ...OUTSIDE,
    '--helo',
    'PC01',
    '--from',
    'friend@remote.test',
    '--to',
    'alice@example.test',
  ]);
  assert.equal(r.code, 24, r.transcript);
  assert.equal(
    r.lastReply,
    '504 5.5.2 <alice@example.test>: Recipient address rejected: Helo command rejected: need fully-qualified hostname',
  );
});

test('defence in depth: with the policy service placed before reject_unauth_destination, postwarden still refuses the relay', async () => {
  await h().postconf([
    '-e',
    `smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, check_policy_service inet:${POLICY}, reject_unauth_destination`,
  ]);
  await h().reload();
  try {
    const r = await h().swaks([...OUTSIDE, '--from', 'friend@remote.test', '--to', 'victim2@remote.test']);
    assert.equal(r.code, 24, r.transcript);
    // Postwarden's answer, which Postfix words as a recipient restriction (its own lacks that prefix).
    assert.equal(
      r.lastReply,
      '554 5.7.1 <victim2@remote.test>: Recipient address rejected: Relay access denied',
    );
    const d = await decisionFor((l) => l.recipient === 'victim2@remote.test');
    assert.deepEqual(
      d?.verdicts.map((v) => v.symbol),
      ['RELAY_DENIED'],
    );
  } finally {
    await h().postconf([
      '-e',
      'smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination',
    ]);
    await h().reload();
  }
});

test('postwarden stopped: Postfix answers 4xx (the mail stays with the sender), never 5xx', async () => {
  await stopPostwarden();
  try {
    const r = await h().swaks([...OUTSIDE, '--from', 'friend@remote.test', '--to', 'alice@example.test']);
    assert.equal(r.code, 24, r.transcript);
    assert.match(r.lastReply, /^451 4\.3\.5 /);
  } finally {
    await startPostwarden();
  }
  const again = await h().swaks([...OUTSIDE, '--from', 'friend@remote.test', '--to', 'alice@example.test']);
  assert.equal(again.code, 0, again.transcript);
});
