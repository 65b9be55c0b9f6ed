/**
 * Greylisting through a real Postfix (test/harness), on a real Redis (test/harness/redis.ts) shared by two
 * postwarden instances: the built bin runs twice as a child process, A on the harness's policy port and B on
 * another, both with `store: { driver: redis }` and tiny delays (delay_s 2, awl_after 1), so the whole cycle —
 * 450 on first sight, 450 on a retry too early, 250 after the delay — runs in seconds. swaks sends from real
 * loopback addresses; each test uses its own client /24 (127.0.N.0/24), sender and recipient, because every
 * 127.0.0.x client is one greylisting network and awl_after 1 whitelists a network after its first pass.
 * Postfix's mynetworks and postwarden's local_networks are 127.0.0.1/32, so any other 127.x address is an
 * outside client.
 *
 * The harness's Postfix runs with `inet_protocols = ipv4`, and then refuses `XCLIENT ADDR=IPV6:...` with
 * "501 5.5.4 Bad ADDR syntax". This file starts it with `inet_protocols = all` (inet_interfaces stays
 * 127.0.0.1, so all traffic is still IPv4 loopback), which lets XCLIENT pose as an IPv6 client: the IPv6 /64
 * grouping is shown through Postfix too, with the client_address Postfix itself sends.
 *
 * Order matters inside this file: the auto-whitelist test follows the first pass, and the Redis restart (which
 * empties Redis) comes last.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { type Harness, type SwaksResult, startHarness } from '../harness/harness.js';
import { type DecisionLine, Postwarden, sleep } from '../harness/postwarden.js';
import { type RedisServer, startRedis } from '../harness/redis.js';

const DELAY_S = 2;
const PREFIX = 'postwarden:'; // store.key_prefix's default

const work = mkdtempSync(path.join(os.tmpdir(), 'pw-grey-it-'));

/** Starts `i` on the shared Redis at `redisUrl`, with tiny greylisting delays. */
function start(i: Postwarden, redisUrl: string): Promise<void> {
  return i.start(
    `hostname: mx.example.test
local_domains: [example.test]
local_networks: [127.0.0.1/32]
store:
  driver: redis
  url: ${redisUrl}/0
policy:
  # The DNS checks have their own test: test/integration/dns-postfix.test.ts
  spf: { mode: off }
  dns_sanity: { mode: off }
  listen: ${i.policy}
  greylist:
    delay_s: ${DELAY_S}
    retry_window_s: 600
    max_age_s: 3600
    awl_after: 1
    allow: [partner.test]
http:
  listen: ${i.http}
`,
  );
}

const A = new Postwarden('a', work, '127.0.0.1:20063', '127.0.0.1:20060');
const B = new Postwarden('b', work, '127.0.0.1:20073', '127.0.0.1:20070');

/** Polls the instance's /readyz until it answers `status` (bounded). */
const readyzStatus = (i: Postwarden, status: 200 | 503) =>
  i.readyzUntil(String(status), (r) => r.status === status);

let harness: Harness | undefined;
let redis: RedisServer | undefined;

function h(): Harness {
  if (!harness) throw new Error('harness not started');
  return harness;
}

function r(): RedisServer {
  if (!redis) throw new Error('redis not started');
  return redis;
}

/** The Redis key of a triplet, as greylist.ts builds it. */
const greyKey = (network: string, sender: string, recipient: string) =>
  `${PREFIX}grey:${network}|${sender}|${recipient}`;

/** One SMTP session from `client` (a loopback address swaks binds to), plus extra swaks arguments. */
function send(client: string, from: string, to: string, extra: string[] = []): Promise<SwaksResult> {
  return h().swaks([
    '--local-interface',
    client,
    '--helo',
    'mail.remote.test',
    '--from',
    from,
    '--to',
    to,
    ...extra,
  ]);
}

const greylisted = (to: string) =>
  new RegExp(
    `^450 4\\.7\\.1 <${to.replace(/\./g, '\\.')}>: Recipient address rejected: Greylisted, please try again in (\\d+) seconds?$`,
  );

/** Asserts a 450 greylisting reply and returns the seconds it asks to wait. */
function assertGreylisted(result: SwaksResult, to: string): number {
  assert.equal(result.code, 24, result.transcript);
  const m = greylisted(to).exec(result.lastReply);
  assert.ok(m, `expected a greylisting 450, got: ${result.lastReply}`);
  return Number(m[1]);
}

/** Asserts the mail was accepted, and waits (bounded) for Postfix to log its delivery. */
async function assertDelivered(result: SwaksResult, to: string): Promise<void> {
  assert.equal(result.code, 0, result.transcript);
  const id = /queued as ([0-9A-F]+)/.exec(result.lastReply)?.[1];
  assert.ok(id, `no queue id in: ${result.lastReply}`);
  await h().waitForLog(new RegExp(`${id}: to=<${to.replace(/\./g, '\\.')}>.* status=sent`), 0, 15_000);
}

const symbols = (line: DecisionLine | undefined) => line?.verdicts.map((v) => v.symbol) ?? [];

/** Points Postfix's check_policy_service at `policy` (the line harness.sh writes) and reloads. */
async function usePolicy(policy: string): Promise<void> {
  await h().postconf([
    '-e',
    `smtpd_recipient_restrictions = check_policy_service { inet:${policy}, timeout=10s, { default_action = 451 4.3.5 policy service unavailable } }`,
  ]);
  await h().reload();
}

/** Sleeps until `ms` after `since` (a Date.now() value). */
async function sleepUntil(since: number, ms: number): Promise<void> {
  const left = since + ms - Date.now();
  if (left > 0) await sleep(left);
}

before(async () => {
  redis = await startRedis();
  await Promise.all([start(A, redis.url), start(B, redis.url)]);
  harness = await startHarness({
    policy: `inet:${A.policy}`,
    extraMainCf: ['inet_protocols = all'],
  });
});

after(async () => {
  try {
    await harness?.stop();
  } finally {
    await Promise.allSettled([A.stop(), B.stop()]);
    await redis?.destroy();
  }
});

test('a new triplet is greylisted (450), a retry too early again, a retry after delay_s passes and is delivered', async () => {
  const [client, from, to] = ['127.0.0.30', 'first@remote.test', 'alice@example.test'];
  const key = greyKey('127.0.0.0/24', from, to);

  const first = await send(client, from, to);
  const firstSeen = Date.now(); // no earlier than postwarden's first sight
  assert.equal(assertGreylisted(first, to), DELAY_S);
  assert.match(r().cli('GET', key), /^W\d+$/);

  const early = await send(client, from, to);
  const left = assertGreylisted(early, to);
  assert.ok(left >= 1 && left <= DELAY_S, `seconds left: ${left}`);

  await sleepUntil(firstSeen, DELAY_S * 1000 + 100);
  const retry = await send(client, from, to);
  await assertDelivered(retry, to);
  assert.match(r().cli('GET', key), /^P\d+$/, 'the pass is recorded');

  const lines = await A.decisionsFor(from, 3);
  assert.deepEqual(
    lines.map((l) => [symbols(l).filter((s) => s.startsWith('GREYLIST_')), l.action.split(' ')[0]]),
    [
      [['GREYLIST_NEW'], 'DEFER_IF_PERMIT'],
      [['GREYLIST_TOO_EARLY'], 'DEFER_IF_PERMIT'],
      [['GREYLIST_PASSED'], 'DUNNO'],
    ],
  );
  assert.equal(
    lines[0]?.verdicts.find((v) => v.symbol === 'GREYLIST_NEW')?.reason,
    `new triplet 127.0.0.0/24 ${from} ${to}; Greylisted, please try again in ${DELAY_S} seconds`,
  );
});

test('auto-whitelist: after one pass (awl_after 1), a new sender and recipient from the same /24 pass at once', async () => {
  const [client, from, to] = ['127.0.0.31', 'someone-new@other.test', 'bob@example.test'];
  assert.equal(r().cli('GET', `${PREFIX}awl:127.0.0.0/24`), '1', 'the first test counted one pass');

  const result = await send(client, from, to);
  await assertDelivered(result, to);
  const [line] = await A.decisionsFor(from, 1);
  assert.deepEqual(symbols(line), ['GREYLIST_AWL']);
  assert.equal(line?.verdicts[0]?.reason, 'network 127.0.0.0/24 auto-whitelisted after 1 passes');
  assert.equal(r().cli('EXISTS', greyKey('127.0.0.0/24', from, to)), '0', 'no triplet stored');
});

test('IPv6: two client addresses of one /64 share a triplet; an address of another /64 does not', async () => {
  const [from, to] = ['v6@remote.test', 'alice@example.test'];
  // swaks connects from 127.0.0.32; Postfix's XCLIENT makes the session the IPv6 client's.
  const as = (address: string) => send('127.0.0.32', from, to, ['--xclient-addr', `IPV6:${address}`]);

  const first = await as('2001:db8:1:2::10');
  const firstSeen = Date.now();
  assert.equal(assertGreylisted(first, to), DELAY_S);

  await sleepUntil(firstSeen, DELAY_S * 1000 + 100);
  assertGreylisted(await as('2001:db8:1:3::10'), to);
  const sibling = await as('2001:db8:1:2:ffff::1');
  await assertDelivered(sibling, to);

  const lines = await A.decisionsFor(from, 3);
  assert.deepEqual(
    lines.map((l) => [l.client, symbols(l).filter((s) => s.startsWith('GREYLIST_'))]),
    [
      ['2001:db8:1:2::10', ['GREYLIST_NEW']],
      ['2001:db8:1:3::10', ['GREYLIST_NEW']],
      ['2001:db8:1:2:ffff::1', ['GREYLIST_PASSED']],
    ],
  );
  assert.match(lines[0]?.verdicts.at(-1)?.reason ?? '', /^new triplet 2001:db8:1:2::\/64 /);
  assert.match(lines[1]?.verdicts.at(-1)?.reason ?? '', /^new triplet 2001:db8:1:3::\/64 /);
  assert.match(r().cli('GET', greyKey('2001:db8:1:2::/64', from, to)), /^P\d+$/);
});

test('bypass: a sender domain on greylist.allow passes at once', async () => {
  const [client, from, to] = ['127.0.4.30', 'orders@partner.test', 'alice@example.test'];
  const result = await send(client, from, to);
  await assertDelivered(result, to);
  const [line] = await A.decisionsFor(from, 1);
  assert.deepEqual(symbols(line), ['GREYLIST_BYPASS_ALLOW']);
  assert.equal(line?.verdicts[0]?.reason, 'greylist.allow entry partner.test');
  assert.equal(r().cli('EXISTS', greyKey('127.0.4.0/24', from, to)), '0');
});

test('bypass: a client in local_networks is not greylisted', async () => {
  const [client, from, to] = ['127.0.0.1', 'local@remote.test', 'bob@example.test'];
  const result = await send(client, from, to);
  await assertDelivered(result, to);
  const [line] = await A.decisionsFor(from, 1);
  assert.equal(line?.client, '127.0.0.1');
  assert.equal(line?.action, 'DUNNO');
  assert.deepEqual(
    symbols(line).filter((s) => s.startsWith('GREYLIST_')),
    [],
  );
  assert.equal(r().cli('EXISTS', greyKey('127.0.0.0/24', from, to)), '0');
});

test('two instances on one Redis: a triplet first seen through A is passed by B after the delay', async () => {
  const [client, from, to] = ['127.0.5.30', 'shared@remote.test', 'bob@example.test'];
  const first = await send(client, from, to);
  const firstSeen = Date.now();
  assert.equal(assertGreylisted(first, to), DELAY_S);
  assert.deepEqual(
    symbols((await A.decisionsFor(from, 1))[0]).filter((s) => s.startsWith('GREYLIST_')),
    ['GREYLIST_NEW'],
  );

  await usePolicy(B.policy);
  try {
    // The switch takes ~0.2 s: B's first answer comes well inside delay_s, and it is not GREYLIST_NEW.
    const early = await send(client, from, to);
    assert.ok(Date.now() - firstSeen < DELAY_S * 1000, 'the retry through B came too early, as meant');
    assertGreylisted(early, to);
    await sleepUntil(firstSeen, DELAY_S * 1000 + 100);
    const retry = await send(client, from, to);
    await assertDelivered(retry, to);
  } finally {
    await usePolicy(A.policy);
  }
  // B never saw this triplet's first try: it deferred and then passed it on what A stored.
  const lines = await B.decisionsFor(from, 2);
  assert.deepEqual(
    lines.map((l) => symbols(l).filter((s) => s.startsWith('GREYLIST_'))),
    [['GREYLIST_TOO_EARLY'], ['GREYLIST_PASSED']],
  );
  assert.equal(A.decisions().filter((l) => l.sender === from).length, 1, 'A answered only the first try');
});

test('Redis restart: both instances keep answering (fail open, PW-S001, /readyz 503), then greylist again without a restart', async () => {
  const to = 'alice@example.test';

  await r().stop();
  for (const i of [A, B]) {
    const ready = await readyzStatus(i, 503);
    assert.deepEqual(
      ready.body.checks.filter((c) => !c.ready).map((c) => c.name),
      ['store redis'],
      JSON.stringify(ready.body),
    );
  }

  const down = async (i: Postwarden, from: string) => {
    const result = await send('127.0.6.30', from, to);
    await assertDelivered(result, to);
    const [line] = await i.decisionsFor(from, 1);
    assert.equal(line?.action, 'DUNNO');
    assert.equal(line?.on_error, true);
    assert.deepEqual(
      line?.failures?.map((f) => [f.check, f.code]),
      [['greylist', 'PW-S001']],
    );
  };
  const again = async (i: Postwarden, client: string, from: string) => {
    assert.equal(assertGreylisted(await send(client, from, to), to), DELAY_S);
    const [line] = await i.decisionsFor(from, 1);
    assert.deepEqual(
      symbols(line).filter((s) => s.startsWith('GREYLIST_')),
      ['GREYLIST_NEW'],
    );
    assert.equal(line?.failures, undefined);
  };

  await down(A, 'down-a@remote.test');
  await usePolicy(B.policy);
  try {
    await down(B, 'down-b@remote.test');
    await r().start();
    await Promise.all([readyzStatus(A, 200), readyzStatus(B, 200)]);
    await again(B, '127.0.7.30', 'back-b@remote.test');
  } finally {
    await usePolicy(A.policy);
  }
  await again(A, '127.0.8.30', 'back-a@remote.test');

  for (const i of [A, B]) {
    const codes = i.lines().map((l) => l['code']);
    assert.ok(codes.includes('PW-S010'), `${i.name}: the outage is logged (PW-S010)`);
    assert.ok(codes.includes('PW-S011'), `${i.name}: the recovery is logged (PW-S011)`);
    assert.ok(i.running, `${i.name} kept running`);
  }
});
