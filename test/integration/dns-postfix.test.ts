/**
 * The DNS checks through a real Postfix (test/harness) and a real dnsmasq (test/harness/dns.ts): DNS block and
 * allow lists (scored, self-tested, one answering error codes), SPF with its header, the null sender's HELO
 * identity, a resolver that never answers, and `postwarden dnsbl-check`. No other DNS server is ever asked:
 * `dns.servers` names only the dnsmasq (or the silent server) on 127.0.0.1, which forwards nothing.
 *
 * Clients are documentation addresses (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) set with XCLIENT: the
 * dnsbl check never queries loopback or private clients. swaks connects from 127.0.0.1, which Postfix allows to
 * send XCLIENT; Postfix's mynetworks and postwarden's local_networks are 127.0.0.1/32, so every XCLIENT address
 * is an outside client.
 *
 * Three postwarden instances run from the start, and Postfix's check_policy_service is pointed at one at a time
 * (postconf + reload, ~0.2 s):
 *   main    20360/20363  dnsmasq; block lists bl.test (weight 10), low.test (3), err.test (answers error codes,
 *                        test points included), flip.test (passes its self-test, answers one client an error
 *                        code); allow list wl.test; SPF reject_fail, header Received-SPF
 *   ar      20370/20373  the same with `spf.header: authentication-results`
 *   silent  20380/20383  the same lists, but dns.servers is a server that never answers
 * The Postfix stack runs in its own HARNESS_DIR and ports (2545...), so it never meets another test file's.
 *
 * `policy.checks` is written out (without greylist and dns_sanity): this file is about the lists and SPF, and the
 * zone does not give the sender domains MX records.
 *
 * The lists are `ipv6: false`: the zone has IPv4 test points only, and every client here is IPv4.
 *
 * Header once per message: besides several recipients, the file sends two messages on one SMTP connection, a
 * message whose first RCPT Postfix refuses after postwarden's PREPEND, and asks postwarden twice per message
 * (END-OF-MESSAGE; smtpd_relay_restrictions). Postfix opens one policy connection per check_policy_service
 * spelling, so postwarden keeps "header sent" per message (Postfix's `instance`), not per connection, and never
 * prepends at END-OF-MESSAGE, where Postfix refuses PREPEND.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { type DnsServer, type DnsZone, startDns, startSilentDns } from '../harness/dns.js';
import { type Harness, type SwaksResult, startHarness, tagged } from '../harness/harness.js';
import { BIN, type DecisionLine, Postwarden } from '../harness/postwarden.js';
import { RawSmtpClient, type SmtpReply } from '../harness/smtp.js';

const HARNESS_ENV = {
  HARNESS_DIR: '/tmp/pw-dns-it',
  SMTP_PORT: '2545',
  SINK_PORT: '2546',
  LMTP_PORT: '2444',
  IMAP_PORT: '1163',
  DOVECOT_AUTH_PORT: '12365',
};

const work = mkdtempSync(path.join(os.tmpdir(), 'pw-dns-it-'));
const reversed = (ip: string) => ip.split('.').reverse().join('.');

// ------------------------------------------------------------------------------------------------ the zone

/** Listed on bl.test only: rejected. */
const C_BL = '192.0.2.10';
/** Listed on bl.test and low.test: rejected, the reply names both. */
const C_BOTH = '192.0.2.11';
/** Listed on low.test only (weight 3): accepted. */
const C_LOW = '192.0.2.20';
/** "Listed" on err.test, whose every answer is the error code 127.255.255.254: accepted. */
const C_ERR = '192.0.2.30';
/** On bl.test (10) and on the allow list wl.test at trust medium (-6): 4 < reject_at 10, accepted. */
const C_WL = '192.0.2.40';
/** flip.test passes its self-test but answers this client with the error code: the list goes unhealthy at once. */
const C_FLIP = '192.0.2.60';
/** On no list; inside pass.test's SPF range. */
const C_CLEAN = '192.0.2.50';
/** On no list; only the second domain of chain.test's include designates it. */
const C_CHAIN = '198.51.100.25';
/** On no list; the null sender's HELO name designates it. */
const C_HELO = '203.0.113.5';

const BL_TXT = `Listed in bl.test, see https://bl.test/q?ip=${C_BL}`;
const BOTH_TXT = `Listed in bl.test, see https://bl.test/q?ip=${C_BOTH}`;
const ERR_CODE = '127.255.255.254';

const zone: DnsZone = {
  a: {
    // RFC 5782 §5 test points: 127.0.0.2 listed, 127.0.0.1 not (NXDOMAIN: simply absent here).
    '2.0.0.127.bl.test': ['127.0.0.2'],
    '2.0.0.127.low.test': ['127.0.0.2'],
    '2.0.0.127.wl.test': ['127.0.10.2'],
    '2.0.0.127.flip.test': ['127.0.0.2'],
    [`${reversed(C_FLIP)}.flip.test`]: [ERR_CODE],
    [`${reversed(C_BL)}.bl.test`]: ['127.0.0.2'],
    [`${reversed(C_BOTH)}.bl.test`]: ['127.0.0.2'],
    [`${reversed(C_BOTH)}.low.test`]: ['127.0.0.2'],
    [`${reversed(C_LOW)}.low.test`]: ['127.0.0.2'],
    [`${reversed(C_WL)}.bl.test`]: ['127.0.0.2'],
    [`${reversed(C_WL)}.wl.test`]: ['127.0.10.2'],
    // err.test answers the error code for every name this file asks it about, its test points included.
    '2.0.0.127.err.test': [ERR_CODE],
    '1.0.0.127.err.test': [ERR_CODE],
    [`${reversed(C_ERR)}.err.test`]: [ERR_CODE],
    [`${reversed(C_BL)}.err.test`]: [ERR_CODE],
    [`${reversed(C_CLEAN)}.err.test`]: [ERR_CODE],
  },
  txt: {
    '2.0.0.127.bl.test': ['Test point of bl.test'],
    [`${reversed(C_BL)}.bl.test`]: [BL_TXT],
    [`${reversed(C_BOTH)}.bl.test`]: [BOTH_TXT],
    [`${reversed(C_BOTH)}.low.test`]: ['low.test lists it too'],
    [`${reversed(C_LOW)}.low.test`]: ['Listed in low.test'],
    [`${reversed(C_WL)}.bl.test`]: [`Listed in bl.test, see https://bl.test/q?ip=${C_WL}`],
    [`${reversed(C_ERR)}.err.test`]: ['err.test: you are querying through an open resolver'],
    // SPF
    'pass.test': ['v=spf1 ip4:192.0.2.0/24 -all', 'site-verification=not-spf'],
    'fail.test': ['v=spf1 ip4:203.0.113.0/24 -all'],
    'soft.test': ['v=spf1 ip4:203.0.113.0/24 ~all'],
    'twice.test': ['v=spf1 ip4:192.0.2.0/24 -all', 'v=spf1 -all'],
    'typo.test': ['v=spf1 ip4:192.0.2.0/24 bogus:x -all'],
    'chain.test': ['v=spf1 include:spf.partner.test -all'],
    'spf.partner.test': ['v=spf1 ip4:198.51.100.0/24 -all'],
    'mail.helo.test': ['v=spf1 ip4:203.0.113.0/24 -all'],
    // nospf.test has no record at all: SPF none
  },
};

// ------------------------------------------------------------------------------------------------ postwarden

interface ConfigOptions {
  policy: string;
  http: string;
  dns: string;
  header?: 'received-spf' | 'authentication-results';
  /** false: leave err.test out (a setup whose lists are all healthy). */
  errList?: boolean;
}

function configText(o: ConfigOptions): string {
  return `hostname: mx.example.test
local_domains: [example.test]
local_networks: [127.0.0.1/32]
dns:
  servers: ['${o.dns}']
policy:
  listen: ${o.policy}
  checks: [relay, sender_ownership, limits, lists, helo, dnsbl, spf]
  greylist: { mode: off }
  dnsbl:
    reject_at: 10
    lists:
      - { zone: bl.test, codes: { '127.0.0.2': 10 }, ipv6: false }
      - { zone: low.test, codes: { '127.0.0.2': 3 }, ipv6: false }
${
  o.errList === false
    ? ''
    : `      # codes that would match any 127/8 answer: only the error-code rule keeps 127.255.255.254 out
      - { zone: err.test, codes: ['127.[0..255].[0..255].[0..255]'], weight: 10, ipv6: false }
`
}      - { zone: flip.test, codes: ['127.[0..255].[0..255].[0..255]'], weight: 10, ipv6: false }
    dnswl:
      - { zone: wl.test, ipv6: false }
  spf:
    reject_fail: true
    header: ${o.header ?? 'received-spf'}
http:
  listen: ${o.http}
`;
}

/** Starts `i` with configText(o) on its own policy and HTTP addresses. */
function startWith(i: Postwarden, o: Omit<ConfigOptions, 'policy' | 'http'>): Promise<void> {
  return i.start(configText({ ...o, policy: i.policy, http: i.http }));
}

const MAIN = new Postwarden('main', work, '127.0.0.1:20363', '127.0.0.1:20360');
const AR = new Postwarden('ar', work, '127.0.0.1:20373', '127.0.0.1:20370');
const SILENT = new Postwarden('silent', work, '127.0.0.1:20383', '127.0.0.1:20380');

let harness: Harness | undefined;
let dns: DnsServer | undefined;
let silentDns: DnsServer | undefined;

function h(): Harness {
  if (!harness) throw new Error('harness not started');
  return harness;
}

// ------------------------------------------------------------------------------------------------ mail

interface Mail {
  client: string;
  from: string;
  to: string[];
  helo?: string;
}

let tags = 0;

/** One SMTP session posing (XCLIENT) as `client`; the message carries a unique X-Pw-Test header to find it by. */
async function send(mail: Mail): Promise<SwaksResult & { tag: string; elapsedMs: number }> {
  const tag = `dns-it-${process.pid}-${++tags}`;
  const started = Date.now();
  const result = await h().swaks([
    '--xclient-addr',
    mail.client,
    '--helo',
    mail.helo ?? 'mail.sender.test',
    '--from',
    mail.from,
    '--to',
    mail.to.join(','),
    '--header',
    `X-Pw-Test: ${tag}`,
  ]);
  return { ...result, tag, elapsedMs: Date.now() - started };
}

/** Asserts that every recipient was accepted and delivered; returns each recipient's copy of the message. */
async function assertDelivered(
  result: SwaksResult & { tag: string },
  recipients: string[],
): Promise<string[]> {
  assert.equal(result.code, 0, result.transcript);
  const id = /queued as ([0-9A-F]+)/.exec(result.lastReply)?.[1];
  assert.ok(id, `no queue id in: ${result.lastReply}`);
  const copies: string[] = [];
  for (const to of recipients) {
    await h().waitForLog(new RegExp(`${id}: to=<${to.replace(/\./g, '\\.')}>.* status=sent`), 0, 15_000);
    copies.push(await h().waitForMessage(to, tagged(result.tag)));
  }
  return copies;
}

/** The header lines (unfolded) called `name` in a message's header section. */
function headers(message: string, name: string): string[] {
  const head = message.split(/\r?\n\r?\n/)[0] ?? '';
  return head
    .replace(/\r?\n[ \t]+/g, ' ')
    .split(/\r?\n/)
    .filter((line) => line.toLowerCase().startsWith(`${name.toLowerCase()}:`));
}

const symbols = (line: DecisionLine | undefined) => line?.verdicts.map((v) => v.symbol) ?? [];

/** The harness's recipient line (harness.sh), as harness.sh writes it. */
const recipientSpec = (policy: string) =>
  `check_policy_service { inet:${policy}, timeout=10s, { default_action = 451 4.3.5 policy service unavailable } }`;

/** Points Postfix's check_policy_service at `policy` (the line harness.sh writes) and reloads. */
async function usePolicy(policy: string): Promise<void> {
  await h().postconf(['-e', `smtpd_recipient_restrictions = ${recipientSpec(policy)}`]);
  await h().reload();
}

/**
 * A raw SMTP session (for what swaks cannot do, e.g. two messages on one connection): sends each command after
 * the previous reply (the greeting first) and resolves with every final reply line. A command after DATA is the
 * message, ending with its "." line.
 */
async function smtpSession(commands: string[]): Promise<string[]> {
  const client = await RawSmtpClient.connect('127.0.0.1', h().smtpPort);
  const lastLine = (reply: SmtpReply) => reply.text.slice(reply.text.lastIndexOf('\n') + 1);
  try {
    const replies = [lastLine(await client.reply(20_000))];
    for (const command of commands) replies.push(lastLine(await client.command(command, 20_000)));
    return replies;
  } finally {
    await client.destroy();
  }
}

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 20_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

// ------------------------------------------------------------------------------------------------ setup

before(async () => {
  [dns, silentDns] = await Promise.all([startDns(zone), startSilentDns()]);
  await Promise.all([
    startWith(MAIN, { dns: dns.address }),
    startWith(AR, { dns: dns.address, header: 'authentication-results' }),
    startWith(SILENT, { dns: silentDns.address }),
  ]);
  harness = await startHarness({ policy: `inet:${MAIN.policy}`, env: HARNESS_ENV });
  // Its start-up self-test has run: err.test is not ready.
  await MAIN.readyzUntil('showing err.test failed its self-test', (r) =>
    r.body.checks.some((c) => c.name.startsWith('dnsbl err.test') && !c.ready),
  );
});

after(async () => {
  try {
    await harness?.stop();
  } finally {
    await Promise.allSettled([MAIN.stop(), AR.stop(), SILENT.stop()]);
    await Promise.allSettled([dns?.stop(), silentDns?.stop()]);
    rmSync(work, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------------------------------------ DNS lists

test('a client on a DNS block list is rejected at RCPT with 554 5.7.1, naming the list and its TXT reason', async () => {
  const from = 'news@pass.test';
  const r = await send({ client: C_BL, from, to: ['alice@example.test'] });
  assert.equal(r.code, 24, r.transcript);
  assert.equal(
    r.lastReply,
    `554 5.7.1 <alice@example.test>: Recipient address rejected: Service unavailable; client [${C_BL}] blocked using bl.test; ${BL_TXT}`,
  );
  const [line] = await MAIN.decisionsFor(from);
  assert.equal(line?.client, C_BL);
  assert.deepEqual(
    line?.verdicts.filter((v) => v.check === 'dnsbl').map((v) => [v.symbol, v.score]),
    [
      ['DNSBL_UNHEALTHY', 0],
      ['DNSBL_LISTED', 10],
      ['DNSBL_REJECT', 0],
    ],
  );
  assert.equal(
    line?.verdicts.find((v) => v.symbol === 'DNSBL_LISTED')?.reason,
    `listed by bl.test (127.0.0.2): ${BL_TXT}`,
  );
});

test('a client on two block lists: the reply names both, with the first list’s reason', async () => {
  const r = await send({ client: C_BOTH, from: 'both@pass.test', to: ['bob@example.test'] });
  assert.equal(r.code, 24, r.transcript);
  assert.equal(
    r.lastReply,
    `554 5.7.1 <bob@example.test>: Recipient address rejected: Service unavailable; client [${C_BOTH}] blocked using bl.test, low.test; ${BOTH_TXT}`,
  );
});

test('a client only on a low-weight list (3 < reject_at 10) is accepted and delivered', async () => {
  const from = 'low@pass.test';
  const r = await send({ client: C_LOW, from, to: ['alice@example.test'] });
  await assertDelivered(r, ['alice@example.test']);
  const [line] = await MAIN.decisionsFor(from);
  const listed = line?.verdicts.find((v) => v.symbol === 'DNSBL_LISTED');
  assert.equal(listed?.score, 3);
  assert.equal(listed?.reason, 'listed by low.test (127.0.0.2): Listed in low.test');
  assert.ok(!symbols(line).includes('DNSBL_REJECT'));
});

test('a list answering error codes never rejects: the mail is delivered, the list is skipped as unhealthy', async () => {
  const from = 'err@pass.test';
  const r = await send({ client: C_ERR, from, to: ['alice@example.test'] });
  const [message = ''] = await assertDelivered(r, ['alice@example.test']);
  assert.equal(headers(message, 'Received-SPF').length, 1);
  const [line] = await MAIN.decisionsFor(from);
  assert.deepEqual(
    line?.verdicts.filter((v) => v.check === 'dnsbl').map((v) => [v.symbol, v.score, v.reason]),
    [['DNSBL_UNHEALTHY', 0, 'err.test skipped: its self-test fails']],
  );
  // The skipped list was not even asked about this client.
  const asked = (list: string) =>
    new RegExp(`query\\[A\\] ${reversed(C_ERR)}.${list} `.replace(/\./g, '\\.'));
  assert.match(dns?.log() ?? '', asked('bl.test'));
  assert.doesNotMatch(dns?.log() ?? '', asked('err.test'));
});

test('the unhealthy list: /readyz 200 "degraded", its gauge 0, PW-D001 in the log with the fix', async () => {
  const ready = await MAIN.readyz();
  assert.equal(ready.status, 200);
  assert.equal(ready.body.status, 'degraded');
  const dnsbl = ready.body.checks.filter((c) => c.name.startsWith('dnsbl '));
  assert.deepEqual(
    dnsbl.map((c) => [c.name, c.ready]),
    [
      ['dnsbl bl.test ipv4', true],
      ['dnsbl low.test ipv4', true],
      ['dnsbl err.test ipv4', false],
      ['dnsbl flip.test ipv4', true],
      ['dnsbl wl.test ipv4', true],
    ],
  );
  const err = dnsbl.find((c) => c.name === 'dnsbl err.test ipv4');
  assert.equal(err?.critical, false);
  assert.match(err?.reason ?? '', /127\.255\.255\.254 is an error code of the list/);
  assert.match(err?.reason ?? '', /local recursive resolver/);

  const metrics = await MAIN.metrics();
  assert.match(metrics, /^postwarden_dnsbl_list_healthy\{list="err\.test",family="ipv4"\} 0$/m);
  for (const list of ['bl.test', 'low.test', 'flip.test', 'wl.test'])
    assert.match(
      metrics,
      new RegExp(`^postwarden_dnsbl_list_healthy\\{list="${list}",family="ipv4"\\} 1$`, 'm'),
    );
  assert.match(metrics, /^postwarden_errors_total\{code="PW-D001"\} 1$/m);

  const d001 = MAIN.lines().filter((l) => l['code'] === 'PW-D001');
  assert.equal(d001.length, 1, JSON.stringify(d001));
  assert.equal(d001[0]?.['list'], 'err.test');
  assert.equal(d001[0]?.['family'], 'ipv4');
  assert.equal(d001[0]?.['level'], 'error');
  assert.equal(
    d001[0]?.['reason'],
    `err.test answered ${ERR_CODE} is an error code of the list, not a listing`,
  );
  assert.match(String(d001[0]?.['fix']), /^query through a local recursive resolver/);
});

test('a DNSWL listing offsets a block listing below reject_at: accepted and delivered', async () => {
  const from = 'wl@pass.test';
  const r = await send({ client: C_WL, from, to: ['bob@example.test'] });
  await assertDelivered(r, ['bob@example.test']);
  const [line] = await MAIN.decisionsFor(from);
  const dnsbl = line?.verdicts.filter((v) => v.check === 'dnsbl' && v.symbol !== 'DNSBL_UNHEALTHY');
  assert.deepEqual(
    dnsbl?.map((v) => [v.symbol, v.score]),
    [
      ['DNSBL_LISTED', 10],
      ['DNSWL_MEDIUM', -6],
    ],
  );
  assert.equal(dnsbl?.[1]?.reason, 'on allow list wl.test (127.0.10.2)');
  assert.ok(!symbols(line).includes('DNSBL_REJECT'));
});

test('a private client address is never sent to a DNS list', async () => {
  const [client, from] = ['10.20.30.40', 'news@nospf.test'];
  const r = await send({ client, from, to: ['alice@example.test'] });
  const [message = ''] = await assertDelivered(r, ['alice@example.test']);
  assert.match(headers(message, 'Received-SPF')[0] ?? '', /^Received-SPF: none \(/);
  const [line] = await MAIN.decisionsFor(from);
  assert.deepEqual(
    line?.verdicts.filter((v) => v.check === 'dnsbl'),
    [],
  );
  assert.doesNotMatch(dns?.log() ?? '', /40\.30\.20\.10\./);
});

test('a healthy list that answers a client with an error code: not counted, and the list is unhealthy at once', async () => {
  const from = 'flip@pass.test';
  const r = await send({ client: C_FLIP, from, to: ['alice@example.test'] });
  await assertDelivered(r, ['alice@example.test']);
  const [line] = await MAIN.decisionsFor(from);
  assert.deepEqual(
    line?.verdicts.filter((v) => v.check === 'dnsbl').map((v) => v.symbol),
    ['DNSBL_UNHEALTHY'], // err.test's; flip.test answered, but nothing counted
  );
  const ready = await MAIN.readyz();
  assert.equal(ready.status, 200);
  assert.equal(ready.body.checks.find((c) => c.name === 'dnsbl flip.test ipv4')?.ready, false);
  const d001 = MAIN.lines().filter((l) => l['code'] === 'PW-D001' && l['list'] === 'flip.test');
  assert.equal(d001.length, 1, JSON.stringify(d001));
  assert.equal(
    d001[0]?.['reason'],
    `flip.test answered ${ERR_CODE} is an error code of the list, not a listing`,
  );
  assert.match(await MAIN.metrics(), /^postwarden_dnsbl_list_healthy\{list="flip\.test",family="ipv4"\} 0$/m);
});

// ------------------------------------------------------------------------------------------------ SPF

/** Sends one message from `client`, asserts it is delivered with exactly one Received-SPF header, returns it. */
async function spfHeaderOf(client: string, from: string, helo?: string): Promise<string> {
  const r = await send({ client, from, to: ['alice@example.test'], ...(helo ? { helo } : {}) });
  const [message = ''] = await assertDelivered(r, ['alice@example.test']);
  const found = headers(message, 'Received-SPF');
  assert.equal(found.length, 1, `one Received-SPF header expected:\n${message}`);
  return found[0] ?? '';
}

test('SPF pass (ip4 covers the client): one Received-SPF header, on every copy of a two-recipient message', async () => {
  const from = 'team@pass.test';
  const r = await send({ client: C_CLEAN, from, to: ['alice@example.test', 'bob@example.test'] });
  const copies = await assertDelivered(r, ['alice@example.test', 'bob@example.test']);
  for (const message of copies) {
    assert.deepEqual(headers(message, 'Received-SPF'), [
      `Received-SPF: pass (mx.example.test: domain of ${from} designates ${C_CLEAN} as permitted sender) client-ip=${C_CLEAN}; envelope-from="${from}"; helo=mail.sender.test; receiver=mx.example.test; identity=mailfrom;`,
    ]);
  }
  const lines = await MAIN.decisionsFor(from, 2);
  assert.deepEqual(
    lines.map((l) => [l.recipient, l.action.split(' ')[0], symbols(l).filter((s) => s.startsWith('SPF_'))]),
    [
      ['alice@example.test', 'PREPEND', ['SPF_PASS']],
      ['bob@example.test', 'DUNNO', ['SPF_PASS']],
    ],
  );
});

test('SPF fail (-all, the client not covered) is rejected at RCPT with 550 5.7.23', async () => {
  const from = 'ceo@fail.test';
  const r = await send({ client: C_CLEAN, from, to: ['alice@example.test'] });
  assert.equal(r.code, 24, r.transcript);
  assert.equal(
    r.lastReply,
    `550 5.7.23 <alice@example.test>: Recipient address rejected: SPF fail: ${from} does not designate ${C_CLEAN} as permitted sender`,
  );
  const [line] = await MAIN.decisionsFor(from);
  assert.deepEqual(
    symbols(line).filter((s) => s.startsWith('SPF_')),
    ['SPF_FAIL'],
  );
});

test('SPF softfail (~all) is delivered with Received-SPF: softfail', async () => {
  const from = 'news@soft.test';
  const header = await spfHeaderOf(C_CLEAN, from);
  assert.match(
    header,
    /^Received-SPF: softfail \(mx\.example\.test: domain of transitioning news@soft\.test /,
  );
  assert.ok(
    header.endsWith(
      `client-ip=${C_CLEAN}; envelope-from="${from}"; helo=mail.sender.test; receiver=mx.example.test; identity=mailfrom;`,
    ),
    header,
  );
});

test('SPF permerror (two v=spf1 records; an unknown mechanism) is delivered with Received-SPF: permerror', async () => {
  const twice = await spfHeaderOf(C_CLEAN, 'news@twice.test');
  assert.match(twice, /^Received-SPF: permerror \(.*multiple SPF records found for twice\.test\) client-ip=/);
  const typo = await spfHeaderOf(C_CLEAN, 'news@typo.test');
  assert.match(
    typo,
    /^Received-SPF: permerror \(.*\) client-ip=192\.0\.2\.50; envelope-from="news@typo\.test";/,
  );
});

test('SPF include chain: pass through the second domain', async () => {
  const header = await spfHeaderOf(C_CHAIN, 'orders@chain.test');
  assert.match(
    header,
    /^Received-SPF: pass \(mx\.example\.test: domain of orders@chain\.test designates 198\.51\.100\.25 as permitted sender\) client-ip=198\.51\.100\.25; envelope-from="orders@chain\.test";/,
  );
  assert.match(dns?.log() ?? '', /query\[TXT\] spf\.partner\.test from 127\.0\.0\.1/);
});

test('the null sender is checked on its HELO name: delivered with identity=helo', async () => {
  const header = await spfHeaderOf(C_HELO, '<>', 'mail.helo.test');
  assert.equal(
    header,
    `Received-SPF: pass (mx.example.test: domain of postmaster@mail.helo.test designates ${C_HELO} as permitted sender) client-ip=${C_HELO}; envelope-from="<>"; helo=mail.helo.test; receiver=mx.example.test; identity=helo;`,
  );
});

test('a first recipient refused by Postfix after postwarden prepended the header: the message still carries it once', async () => {
  // Postfix asks the policy service before its own unknown-recipient check, so postwarden answers PREPEND for
  // nobody@ and DUNNO for alice@; whether the header survives depends on Postfix keeping a refused RCPT's PREPEND.
  const from = 'late@pass.test';
  const r = await send({ client: C_CLEAN, from, to: ['nobody@example.test', 'alice@example.test'] });
  assert.ok(
    r.replies.some((l) => /^550 5\.1\.1 <nobody@example\.test>: Recipient address rejected/.test(l)),
    r.transcript,
  );
  const id = /queued as ([0-9A-F]+)/.exec(r.lastReply)?.[1];
  assert.ok(id, r.transcript);
  await h().waitForLog(new RegExp(`${id}: to=<alice@example\\.test>.* status=sent`), 0, 15_000);
  const message = await h().waitForMessage('alice', tagged(r.tag));
  assert.equal(headers(message, 'Received-SPF').length, 1, message);
  const lines = await MAIN.decisionsFor(from, 2);
  assert.deepEqual(
    lines.map((l) => [l.recipient, l.action.split(' ')[0]]),
    [
      ['nobody@example.test', 'PREPEND'],
      ['alice@example.test', 'DUNNO'],
    ],
  );
});

test('two messages in one SMTP session: each carries its own Received-SPF header, once', async () => {
  const tag = (n: number) => `dns-it-${process.pid}-session-${n}`;
  const message = (n: number, from: string) =>
    [
      `From: <${from}>`,
      'To: <alice@example.test>',
      `X-Pw-Test: ${tag(n)}`,
      `Subject: ${n}`,
      '',
      'hello',
      '.',
    ].join('\r\n');
  const replies = await smtpSession([
    'EHLO probe.test',
    `XCLIENT ADDR=${C_CLEAN}`,
    'EHLO mail.sender.test',
    'MAIL FROM:<one@pass.test>',
    'RCPT TO:<alice@example.test>',
    'RCPT TO:<bob@example.test>',
    'DATA',
    message(1, 'one@pass.test'),
    'MAIL FROM:<two@soft.test>',
    'RCPT TO:<alice@example.test>',
    'DATA',
    message(2, 'two@soft.test'),
    'QUIT',
  ]);
  const ids = replies.flatMap((l) => /^250 2\.0\.0 Ok: queued as ([0-9A-F]+)/.exec(l)?.[1] ?? []);
  assert.equal(ids.length, 2, replies.join('\n'));
  await h().waitForLog(new RegExp(`${ids[1] ?? ''}: to=<alice@example\\.test>.* status=sent`), 0, 15_000);
  const first = headers(await h().waitForMessage('alice', tagged(tag(1))), 'Received-SPF');
  const second = headers(await h().waitForMessage('alice', tagged(tag(2))), 'Received-SPF');
  assert.equal(first.length, 1, first.join('\n'));
  assert.match(first[0] ?? '', /^Received-SPF: pass .*envelope-from="one@pass\.test";/);
  assert.equal(second.length, 1, second.join('\n'));
  assert.match(second[0] ?? '', /^Received-SPF: softfail .*envelope-from="two@soft\.test";/);
});

test('asked again at END-OF-MESSAGE (the optional smtpd_end_of_data_restrictions line): still one header', async () => {
  const spec = `check_policy_service { inet:${MAIN.policy}, timeout=10s, default_action=DUNNO }`;
  await h().postconf([
    '-e',
    `smtpd_recipient_restrictions = ${spec}`,
    `smtpd_end_of_data_restrictions = ${spec}`,
  ]);
  await h().reload();
  try {
    const from = 'eod@pass.test';
    const r = await send({ client: C_CLEAN, from, to: ['alice@example.test', 'bob@example.test'] });
    const copies = await assertDelivered(r, ['alice@example.test', 'bob@example.test']);
    for (const message of copies) assert.equal(headers(message, 'Received-SPF').length, 1, message);
    const lines = await MAIN.decisionsFor(from, 3, { allStates: true });
    assert.deepEqual(
      lines.map((l) => [l.state, l.recipient, l.action.split(' ')[0]]),
      [
        ['RCPT', 'alice@example.test', 'PREPEND'],
        ['RCPT', 'bob@example.test', 'DUNNO'],
        ['END-OF-MESSAGE', undefined, 'DUNNO'],
      ],
    );
  } finally {
    await h().postconf(['-e', 'smtpd_end_of_data_restrictions =']);
    await usePolicy(MAIN.policy);
  }
});

test('fail-closed recipient line (no default_action) plus the optional END-OF-MESSAGE line: no PREPEND at END-OF-MESSAGE', async () => {
  // The snippet's advice: drop default_action from the recipient line to fail closed; its optional end-of-data
  // line keeps default_action=DUNNO. Two specs, so Postfix opens two policy connections, and the END-OF-MESSAGE
  // request arrives on one that never saw the message's RCPTs.
  await h().postconf([
    '-e',
    `smtpd_recipient_restrictions = check_policy_service { inet:${MAIN.policy}, timeout=10s }`,
    `smtpd_end_of_data_restrictions = check_policy_service { inet:${MAIN.policy}, timeout=10s, default_action=DUNNO }`,
  ]);
  await h().reload();
  const mark = h().logMark();
  try {
    const from = 'eod2@pass.test';
    const r = await send({ client: C_CLEAN, from, to: ['alice@example.test'] });
    const [message = ''] = await assertDelivered(r, ['alice@example.test']);
    assert.equal(headers(message, 'Received-SPF').length, 1, message);
    const lines = await MAIN.decisionsFor(from, 2, { allStates: true });
    assert.deepEqual(
      lines.map((l) => [l.state, l.action.split(' ')[0]]),
      [
        ['RCPT', 'PREPEND'],
        ['END-OF-MESSAGE', 'DUNNO'],
      ],
    );
    assert.doesNotMatch(
      h().logSince(mark),
      /action PREPEND must be used before smtpd_end_of_data_restrictions/,
    );
  } finally {
    await h().postconf(['-e', 'smtpd_end_of_data_restrictions =']);
    await usePolicy(MAIN.policy);
  }
});

/** Sends one message with the policy service also in smtpd_relay_restrictions (as `relaySpec`); returns its headers. */
async function viaRelayAndRecipient(relaySpec: string, from: string): Promise<string[]> {
  await h().postconf([
    '-e',
    `smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, ${relaySpec}, reject_unauth_destination`,
  ]);
  await h().reload();
  try {
    const r = await send({ client: C_CLEAN, from, to: ['alice@example.test'] });
    const [message = ''] = await assertDelivered(r, ['alice@example.test']);
    const lines = await MAIN.decisionsFor(from, 2);
    assert.deepEqual(
      lines.map((l) => [l.recipient, l.action.split(' ')[0]]).slice(0, 1),
      [['alice@example.test', 'PREPEND']],
      'asked twice for the one RCPT',
    );
    assert.equal(lines.length, 2);
    return headers(message, 'Received-SPF');
  } finally {
    await h().postconf([
      '-e',
      'smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination',
    ]);
    await h().reload();
  }
}

test('the policy service in smtpd_relay_restrictions too, with the same spec: one header (one policy connection)', async () => {
  const found = await viaRelayAndRecipient(recipientSpec(MAIN.policy), 'same@pass.test');
  assert.equal(found.length, 1, found.join('\n'));
});

test('the policy service in smtpd_relay_restrictions too, written differently: still one header', async () => {
  // As test/integration/policy-postfix.test.ts's defence-in-depth setup: a plain spec before
  // reject_unauth_destination, the harness's braced one in smtpd_recipient_restrictions.
  const found = await viaRelayAndRecipient(`check_policy_service inet:${MAIN.policy}`, 'other@pass.test');
  assert.equal(found.length, 1, found.join('\n'));
});

test('header: authentication-results gives one Authentication-Results header instead', async () => {
  await usePolicy(AR.policy);
  try {
    const from = 'team@pass.test';
    const r = await send({ client: C_CLEAN, from, to: ['alice@example.test', 'bob@example.test'] });
    const copies = await assertDelivered(r, ['alice@example.test', 'bob@example.test']);
    for (const message of copies) {
      const found = headers(message, 'Authentication-Results');
      assert.equal(found.length, 1, message);
      // RFC 8601 allows the address bare or as a quoted-string; postwarden writes the quoted form today.
      assert.match(
        found[0] ?? '',
        /^Authentication-Results: mx\.example\.test; spf=pass smtp\.mailfrom=("?)team@pass\.test\1$/,
      );
      assert.deepEqual(headers(message, 'Received-SPF'), []);
    }
  } finally {
    await usePolicy(MAIN.policy);
  }
});

// ------------------------------------------------------------------------------------------------ no answer

test('a resolver that never answers: the mail gets an answer within ~2 s and is delivered with SPF temperror', async () => {
  await usePolicy(SILENT.policy);
  try {
    const from = 'news@pass.test';
    const r = await send({ client: C_BL, from, to: ['alice@example.test'] });
    assert.ok(
      r.replies.every((l) => !/^5/.test(l)),
      r.transcript,
    );
    const [message = ''] = await assertDelivered(r, ['alice@example.test']);
    const found = headers(message, 'Received-SPF');
    assert.equal(found.length, 1, message);
    assert.match(found[0] ?? '', /^Received-SPF: temperror \(/);
    const [line] = await SILENT.decisionsFor(from);
    assert.ok(line && line.ms < 4000, `decision took ${line?.ms} ms`);
    assert.ok(
      r.elapsedMs < 6000,
      `the SMTP session took ${r.elapsedMs} ms (Postfix's policy timeout is 10 s)`,
    );
    assert.equal(line?.action.split(' ')[0], 'PREPEND');
    assert.deepEqual(
      symbols(line).filter((s) => s.startsWith('DNSBL') || s.startsWith('SPF')),
      ['DNSBL_ERROR', 'DNSBL_ERROR', 'DNSBL_ERROR', 'DNSBL_ERROR', 'DNSBL_ERROR', 'SPF_TEMPERROR'],
    );
  } finally {
    await usePolicy(MAIN.policy);
  }
  assert.match(silentDns?.log() ?? '', /query\[A\] 10\.2\.0\.192\.bl\.test from 127\.0\.0\.1/);
  assert.match(silentDns?.log() ?? '', /query\[TXT\] pass\.test from 127\.0\.0\.1/);
});

// ------------------------------------------------------------------------------------------------ the CLI

test('dnsbl-check prints the listing and the unhealthy list with its fix, and exits 69', async () => {
  const r = await runCli(['dnsbl-check', '--config', MAIN.configFile, C_BL]);
  assert.equal(r.code, 69, r.stdout + r.stderr);
  const out = r.stdout;
  assert.match(
    out,
    new RegExp(`^${C_BL}: asking 5 list\\(s\\) through ${dns?.address ?? ''}$`.replace(/\./g, '\\.'), 'm'),
  );
  assert.match(
    out,
    /^ {2}block bl\.test +healthy +127\.0\.0\.2 → DNSBL_LISTED score 10 "Listed in bl\.test, see https:\/\/bl\.test\/q\?ip=192\.0\.2\.10"$/m,
  );
  assert.match(out, /^ {2}block low\.test +healthy +not listed$/m);
  assert.match(
    out,
    /^ {2}block err\.test +UNHEALTHY +127\.255\.255\.254 → answered, no counting code; never counted: 127\.255\.255\.254 is an error code of the list, not a listing$/m,
  );
  assert.match(
    out,
    /^ {6}err\.test answered 127\.255\.255\.254 is an error code of the list, not a listing$/m,
  );
  assert.match(out, /^ {6}fix: query through a local recursive resolver/m);
  assert.match(out, /^ {2}block flip\.test +healthy +not listed$/m);
  assert.match(out, /^ {2}allow wl\.test +healthy +not listed$/m);
  assert.match(out, /^sum 10 \(reject_at 10\): would reject; healthy lists only$/m);
});

test('dnsbl-check with healthy lists only exits 0', async () => {
  const file = path.join(work, 'healthy.yml');
  writeFileSync(
    file,
    configText({
      policy: '127.0.0.1:20390',
      http: '127.0.0.1:20393',
      dns: dns?.address ?? '',
      errList: false,
    }),
  );
  const r = await runCli(['dnsbl-check', '--config', file, C_WL]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^ {2}block bl\.test +healthy +127\.0\.0\.2 → DNSBL_LISTED score 10 /m);
  assert.match(r.stdout, /^ {2}allow wl\.test +healthy +127\.0\.10\.2 → DNSWL_MEDIUM score -6$/m);
  assert.match(r.stdout, /^sum 4 \(reject_at 10\): would not reject on its own; healthy lists only$/m);
});
