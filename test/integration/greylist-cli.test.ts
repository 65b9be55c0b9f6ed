/**
 * `postwarden greylist list|delete|allow` as an admin runs it: the built bin against a config whose store is a
 * SQLite file in a temp dir. The state comes from a real `postwarden serve` on that file (policy-query sends it
 * requests, as Postfix would) and, for bulk, from openStore on the same file (WAL: several readers and writers).
 * Then: the table and JSON listings with their filters and --limit, delete by triplet, network and sender,
 * allow (a new triplet from that network then passes with GREYLIST_AWL in serve's decision log) and its undo,
 * bad usage (64), config problems (78) and a store that is down (69, quickly).
 *
 * Ports 20260 (policy) and 20263 (http): no other test file uses them. The tests run in order and share state.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { openStore } from '../../src/store/index.js';
import { BIN, Postwarden, sleep } from '../harness/postwarden.js';

const POLICY = '127.0.0.1:20260';
const work = mkdtempSync(path.join(os.tmpdir(), 'pw-greylist-cli-'));
const stateFile = path.join(work, 'state.db');
const AWL_AFTER = 3;
const server = new Postwarden('serve', work, '127.0.0.1:20263', POLICY);
const configFile = server.configFile;

function run(...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000 });
}

/** `postwarden greylist <args> --config <the test config>`. */
function greylist(...args: string[]) {
  return run('greylist', ...args, '--config', configFile);
}

/** One RCPT request through policy-query (the bin), as Postfix would send it; the action it printed. */
function query(client: string, sender: string, recipient: string): string {
  const r = run(
    'policy-query',
    '--server',
    POLICY,
    'protocol_state=RCPT',
    `client_address=${client}`,
    'helo_name=mail.remote.test',
    `sender=${sender}`,
    `recipient=${recipient}`,
  );
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

interface TripletLine {
  network: string;
  sender: string;
  recipient: string;
  state: string;
  first_seen: string | null;
  expires: string | null;
}

interface AwlLine {
  network: string;
  passes: number;
  whitelisted: boolean;
  expires: string | null;
}

function jsonLines<T>(stdout: string): T[] {
  return stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as T);
}

/** The triplets `list --json <filter>` prints, as `network|sender|recipient|state`, sorted. */
function listed(...filter: string[]): string[] {
  const r = greylist('list', '--json', ...filter);
  assert.equal(r.status, 0, r.stderr);
  return jsonLines<TripletLine>(r.stdout)
    .map((t) => `${t.network}|${t.sender}|${t.recipient}|${t.state}`)
    .sort();
}

before(async () => {
  await server.start(
    `hostname: mx.example.org
local_domains: [example.org]
local_networks: [127.0.0.1/32]
store: { driver: sqlite, path: state.db }
policy:
  # The DNS checks have their own test: test/integration/dns-postfix.test.ts
  spf: { mode: off }
  dns_sanity: { mode: off }
  listen: ${POLICY}
  greylist: { delay_s: 1, retry_window_s: 600, max_age_s: 3600, awl_after: ${AWL_AFTER} }
http:
  listen: ${server.http}
`,
  );
  // Four waiting triplets, then one of them passes after the delay (and counts one AWL pass for its network).
  assert.match(query('198.51.100.7', 'Bob+news@remote.test', 'Alice@example.org'), /^DEFER_IF_PERMIT /);
  assert.match(query('198.51.100.8', 'carol@other.test', 'alice@example.org'), /^DEFER_IF_PERMIT /);
  assert.match(query('2001:db8:1:2::5', 'bob@remote.test', 'dave@example.org'), /^DEFER_IF_PERMIT /);
  assert.match(query('203.0.113.9', '', 'alice@example.org'), /^DEFER_IF_PERMIT /);
  await sleep(1100);
  assert.equal(query('203.0.113.10', '', 'alice@example.org'), 'DUNNO');
});

after(async () => {
  await server.stop();
  rmSync(work, { recursive: true, force: true });
});

const SEEDED = [
  '198.51.100.0/24|bob@remote.test|alice@example.org|waiting',
  '198.51.100.0/24|carol@other.test|alice@example.org|waiting',
  '2001:db8:1:2::/64|bob@remote.test|dave@example.org|waiting',
  '203.0.113.0/24|<>|alice@example.org|passed',
];

test('list prints every triplet as an aligned table', () => {
  const r = greylist('list');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  const [header, ...rows] = r.stdout.trimEnd().split('\n');
  assert.ok(header !== undefined);
  assert.match(header, /^NETWORK +SENDER +RECIPIENT +STATE +FIRST SEEN +EXPIRES$/);
  assert.equal(rows.length, 4, r.stdout);
  for (const column of ['SENDER', 'RECIPIENT', 'STATE', 'FIRST SEEN', 'EXPIRES']) {
    const at = header.indexOf(column);
    for (const row of rows) {
      assert.equal(row[at - 1], ' ', `${column} misaligned in: ${row}`);
      assert.notEqual(row[at], ' ', `${column} misaligned in: ${row}`);
    }
  }
  const cells = rows.map((row) => row.split(/ {2,}/));
  assert.deepEqual(cells.map((c) => c.slice(0, 4).join('|')).sort(), SEEDED);
  for (const c of cells) {
    assert.match(c[4] ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.match(c[5] ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  }
});

test('list --json prints one object per triplet with ISO first-seen and expiry times', () => {
  const r = greylist('list', '--json');
  assert.equal(r.status, 0, r.stderr);
  const lines = jsonLines<TripletLine>(r.stdout);
  assert.equal(lines.length, 4);
  const now = Date.now();
  for (const t of lines) {
    assert.deepEqual(Object.keys(t), ['network', 'sender', 'recipient', 'state', 'first_seen', 'expires']);
    const firstSeen = Date.parse(t.first_seen ?? '');
    const expires = Date.parse(t.expires ?? '');
    assert.ok(firstSeen <= now && firstSeen > now - 60_000, `first_seen ${t.first_seen}`);
    // Waiting: retry_window_s (600) after first sight; passed: max_age_s (3600) after the pass.
    const ttl = t.state === 'passed' ? 3600_000 : 600_000;
    assert.ok(Math.abs(expires - (firstSeen + ttl)) < 30_000, `${t.state} expires ${t.expires}`);
  }
});

test('list filters by network (an address, a CIDR, a wider CIDR), sender and recipient, combined', () => {
  const v4 = SEEDED.slice(0, 2);
  assert.deepEqual(listed('--network', '198.51.100.200'), v4);
  assert.deepEqual(listed('--network', '198.51.100.0/24'), v4);
  assert.deepEqual(listed('--network', '::ffff:198.51.100.1'), v4);
  assert.deepEqual(listed('--network', '198.51.0.0/16'), v4);
  assert.deepEqual(listed('--network', '2001:db8::/32'), [SEEDED[2]]);
  assert.deepEqual(listed('--network', '2001:DB8:1:2:ffff::1'), [SEEDED[2]]);
  assert.deepEqual(listed('--network', '192.0.2.0/24'), []);
  // The sender as the check normalises it: case and extension do not matter.
  assert.deepEqual(listed('--sender', 'BOB+other@Remote.test'), [SEEDED[0], SEEDED[2]]);
  assert.deepEqual(listed('--sender', '<>'), [SEEDED[3]]);
  assert.deepEqual(listed('--recipient', 'ALICE@example.org'), [SEEDED[0], SEEDED[1], SEEDED[3]]);
  assert.deepEqual(listed('--network', '198.51.100.0/24', '--sender', 'carol@other.test'), [SEEDED[1]]);
  const none = greylist('list', '--network', '192.0.2.1');
  assert.equal(none.status, 0);
  assert.equal(none.stdout, 'no triplets\n');
});

test('list --limit bounds the output and says that it was cut', async () => {
  const store = await openStore({ driver: 'sqlite', path: stateFile });
  try {
    for (let i = 0; i < 30; i++) {
      await store.set(
        `grey:192.0.2.0/24|s${String(i).padStart(2, '0')}@bulk.test|rcpt@example.org`,
        `W${Date.now()}`,
        600,
      );
    }
  } finally {
    await store.close();
  }
  const cut = greylist('list', '--network', '192.0.2.0/24', '--limit', '10', '--json');
  assert.equal(cut.status, 0, cut.stderr);
  assert.equal(jsonLines(cut.stdout).length, 10);
  assert.match(cut.stderr, /output cut at 10 triplets \(--limit\)/);
  const whole = greylist('list', '--network', '192.0.2.0/24', '--limit', '30', '--json');
  assert.equal(jsonLines(whole.stdout).length, 30);
  assert.equal(whole.stderr, '');
  const filtered = greylist('list', '--sender', 's07@bulk.test', '--limit', '1');
  assert.equal(filtered.stderr, '');
  assert.match(filtered.stdout, /s07@bulk\.test/);
  const all = greylist('list', '--limit', '5');
  assert.equal(all.stdout.trimEnd().split('\n').length, 6, 'a header and five rows');
  assert.match(all.stderr, /output cut at 5/);
  for (const limit of ['0', '10001', 'many', '-1']) {
    const r = greylist('list', `--limit=${limit}`);
    assert.equal(r.status, 64, `--limit ${limit}`);
    assert.match(r.stderr, /--limit takes a number from 1 to 10000/);
  }
});

test('list --awl shows the networks counting passes, with the count and expiry', () => {
  const r = greylist('list', '--awl');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^NETWORK +PASSES +WHITELISTED +EXPIRES\n203\.0\.113\.0\/24 +1 +no +\d{4}-\S+Z\n$/);
  const json = jsonLines<AwlLine>(greylist('list', '--awl', '--json').stdout);
  assert.equal(json.length, 1);
  assert.equal(json[0]?.network, '203.0.113.0/24');
  assert.equal(json[0]?.passes, 1);
  assert.equal(json[0]?.whitelisted, false);
  assert.ok(Date.parse(json[0]?.expires ?? '') > Date.now() + 3000_000);
  assert.equal(greylist('list', '--awl', '--network', '198.51.100.1').stdout, 'no auto-whitelist entries\n');
});

test('delete by triplet, network and sender prints how many it removed, 0 included', () => {
  const triplet = greylist('delete', '--triplet', '198.51.100.0/24|Bob+x@remote.test|ALICE@example.org');
  assert.equal(triplet.status, 0, triplet.stderr);
  assert.equal(triplet.stdout, '1 removed\n');
  const again = greylist('delete', '--triplet', '198.51.100.0/24|bob@remote.test|alice@example.org');
  assert.equal(again.status, 0);
  assert.equal(again.stdout, '0 removed\n');
  const network = greylist('delete', '--network', '192.0.2.0/24');
  assert.equal(network.stdout, '30 removed\n', network.stderr);
  const sender = greylist('delete', '--sender', 'CAROL@other.test');
  assert.equal(sender.stdout, '1 removed\n', sender.stderr);
  const none = greylist('delete', '--network', '10.0.0.0/8');
  assert.equal(none.status, 0);
  assert.equal(none.stdout, '0 removed\n');
  assert.deepEqual(listed(), [SEEDED[2], SEEDED[3]]);
});

test('allow whitelists a network at once: a new triplet from it passes with GREYLIST_AWL; delete --awl undoes it', async () => {
  const r = greylist('allow', '--network', '192.0.2.77');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^192\.0\.2\.0\/24 auto-whitelisted \(3 passes\) until \d{4}-\S+Z\n$/);
  const awl = jsonLines<AwlLine>(greylist('list', '--awl', '--json', '--network', '192.0.2.0/24').stdout);
  assert.deepEqual(
    awl.map((a) => [a.network, a.passes, a.whitelisted]),
    [['192.0.2.0/24', AWL_AFTER, true]],
  );

  assert.equal(query('192.0.2.55', 'new@fresh.test', 'alice@example.org'), 'DUNNO');
  const [decision] = await server.decisionsFor('new@fresh.test', 1, { timeoutMs: 3000 });
  assert.ok(decision, 'no decision line for the allowed network');
  assert.ok(
    decision.verdicts.some((v) => v.symbol === 'GREYLIST_AWL'),
    JSON.stringify(decision),
  );

  const removed = greylist('delete', '--awl', '--network', '192.0.2.0/24');
  assert.equal(removed.stdout, '1 removed\n', removed.stderr);
  assert.match(query('192.0.2.56', 'other@fresh.test', 'alice@example.org'), /^DEFER_IF_PERMIT /);

  const v6 = greylist('allow', '--network', '2001:db8:9:9::1');
  assert.match(v6.stdout, /^2001:db8:9:9::\/64 auto-whitelisted/, v6.stderr);
});

test('bad usage exits 64 with a message, and touches nothing', () => {
  const cases: [string[], RegExp][] = [
    [['allow', '--network', '999.1.1.1'], /not an IP address or network: '999\.1\.1\.1'/],
    [['allow', '--network', '198.51.0.0/16'], /wider than one greylisting network \(\/24 for IPv4/],
    [['allow', '--network', '198.51.100.0/28'], /narrower than the \/24 networks/],
    [['allow', '--network', 'mail.example.com'], /not an IP address or network/],
    [['allow'], /--network/],
    [['delete'], /name what to delete/],
    [['delete', '--triplet', 'nonsense'], /not a triplet/],
    [['delete', '--triplet', '1.2.3.0/24|a@b.test|c@d.test', '--network', '1.2.3.4'], /--triplet .* alone/],
    [['delete', '--awl', '--sender', 'a@b.test'], /--awl/],
    [['list', '--network', '2001:db8::/80'], /narrower than the \/64 networks/],
    [['list', '--awl', '--sender', 'a@b.test'], /--awl/],
    [['list', '--colour'], /Unknown option '--colour'/],
    [['frobnicate'], /unknown action 'frobnicate'/],
  ];
  const before = listed();
  for (const [args, message] of cases) {
    const r = greylist(...args);
    assert.equal(r.status, 64, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
  }
  const bare = run('greylist');
  assert.equal(bare.status, 64);
  assert.match(bare.stderr, /usage: postwarden greylist/);
  assert.deepEqual(listed(), before);

  const off = path.join(work, 'awl-off.yml');
  writeFileSync(
    off,
    'local_domains: [example.org]\nstore: { path: state.db }\npolicy: { greylist: { awl_after: 0 } }\n',
  );
  const refused = run('greylist', 'allow', '--network', '192.0.2.1', '--config', off);
  assert.equal(refused.status, 64);
  assert.match(refused.stderr, /auto-whitelist is off \(policy\.greylist\.awl_after: 0\)/);
});

test('help lists the command; greylist help prints its usage', () => {
  const help = run('help');
  assert.match(help.stdout, /^ {2}greylist list\|delete\|allow/m);
  const own = run('greylist', 'help');
  assert.equal(own.status, 0);
  assert.match(own.stdout, /^usage: postwarden greylist/);
});

test('a config with problems exits 78', () => {
  const bad = path.join(work, 'bad.yml');
  writeFileSync(bad, 'local_domains: [example.org]\nstore: { driver: mongo }\n');
  const r = run('greylist', 'list', '--config', bad);
  assert.equal(r.status, 78);
  assert.match(r.stderr, /store\.driver/);
});

test('a store that is down exits 69 quickly with the reason', () => {
  const down = path.join(work, 'redis-down.yml');
  writeFileSync(
    down,
    'local_domains: [example.org]\nstore: { driver: redis, url: "redis://127.0.0.1:1/0" }\n',
  );
  for (const args of [
    ['list'],
    ['list', '--awl'],
    ['delete', '--network', '192.0.2.1'],
    ['allow', '--network', '192.0.2.1'],
  ]) {
    const started = Date.now();
    const r = run('greylist', ...args, '--config', down);
    assert.equal(r.status, 69, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /store \(redis\) unavailable .*\(PW-S001\)/);
    assert.ok(Date.now() - started < 5000, `${args.join(' ')} took ${Date.now() - started} ms`);
  }
});
