/**
 * The built `postwarden` bin as an admin runs it: check-config's exit codes and messages, serve with its HTTP
 * face, policy-query, a unix socket, map reloads (file change, SIGHUP, a map file that disappears), a port in
 * use, and a clean stop on SIGTERM.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { PolicyClient } from '../../src/policy/client.js';
import { BIN, Postwarden } from '../harness/postwarden.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'pw-serve-'));
const POLICY = '127.0.0.1:20160';
const server = new Postwarden('serve', work, '127.0.0.1:20163', POLICY);
const HTTP = `http://${server.http}`;
const SOCKET = path.join(work, 'policy.sock');
const blockFile = path.join(work, 'block-clients');
const configFile = server.configFile;

function run(...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000 });
}

const request = (client: string) => ({
  request: 'smtpd_access_policy',
  protocol_state: 'RCPT',
  client_address: client,
  helo_name: 'mail.remote.test',
  sender: 'a@remote.test',
  recipient: 'alice@example.org',
});

async function query(client: string, at = POLICY): Promise<string> {
  const c = await PolicyClient.connect(at);
  try {
    return await c.query(request(client));
  } finally {
    c.close();
  }
}

async function until(what: string, condition: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  writeFileSync(blockFile, '# clients we refuse\n198.51.100.1\n');
  await server.start(
    `local_domains: [example.org]
policy:
  # The DNS checks have their own test: test/integration/dns-postfix.test.ts
  spf: { mode: off }
  dns_sanity: { mode: off }
  listen: [${POLICY}, "unix:${SOCKET}"]
  greylist: { mode: off }
  lists:
    block:
      client: file:block-clients
http:
  listen: ${server.http}
`,
  );
});

after(async () => {
  await server.kill();
  rmSync(work, { recursive: true, force: true });
});

test('check-config: a valid config exits 0', () => {
  const r = run('check-config', '--config', configFile);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /config OK/);
});

test('check-config: a config with ten mistakes reports all ten as key: value — problem; fix, and exits 78', () => {
  const bad = path.join(work, 'bad.yml');
  writeFileSync(
    bad,
    `hostname: "not a host!"
local_domains: [example.org]
colour: blue
policy:
  listen: nowhere
  on_error: shrug
  check_timeout_ms: 0
  checks: [relay, rbl]
  relay: { mode: enforcing }
  helo: { bare_ip_score: "two" }
  limits: { max_recipients: -1 }
  lists: { block: { client: "hash:/etc/postfix/block" } }
`,
  );
  const r = run('check-config', '--config', bad);
  assert.equal(r.status, 78);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('  '));
  assert.equal(lines.length, 10, r.stderr);
  for (const line of lines) assert.match(line, /^ {2}[\w.[\]]+: .+ — .+; .+$/, line);
  for (const key of ['hostname', 'colour', 'policy.listen', 'policy.on_error', 'policy.check_timeout_ms']) {
    assert.ok(
      lines.some((l) => l.startsWith(`  ${key}: `)),
      `${key} not reported`,
    );
  }
});

test('check-config: a map file that cannot be opened exits 78 and names the key', () => {
  const missing = path.join(work, 'missing.yml');
  writeFileSync(
    missing,
    'local_domains: [example.org]\npolicy: { lists: { block: { sender: "file:/nonexistent/x" } } }\n',
  );
  const r = run('check-config', '--config', missing);
  assert.equal(r.status, 78);
  assert.match(r.stderr, /policy\.lists\.block\.sender: file:\/nonexistent\/x — cannot read/);
});

test('serve refuses a bad config with 78 and starts nothing', () => {
  const r = run('serve', '--config', path.join(work, 'bad.yml'));
  assert.equal(r.status, 78);
  assert.match(r.stderr, /PW-C001/);
});

test('policy-query answers from a running server (TCP and unix socket) and exits 69 when nothing listens', () => {
  const blocked = run(
    'policy-query',
    '--server',
    POLICY,
    'client_address=198.51.100.1',
    'helo_name=a.b.test',
    'recipient=x@example.org',
  );
  assert.equal(blocked.status, 0, blocked.stderr);
  assert.equal(blocked.stdout.trim(), '554 5.7.1 Access denied');
  const viaSocket = run(
    'policy-query',
    '--server',
    `unix:${SOCKET}`,
    'client_address=192.0.2.9',
    'helo_name=a.b.test',
    'recipient=x@example.org',
  );
  assert.equal(viaSocket.stdout.trim(), 'DUNNO', viaSocket.stderr);
  const none = run('policy-query', '--server', '127.0.0.1:1', 'recipient=x@example.org');
  assert.equal(none.status, 69);
});

test('HTTP face: /healthz, /readyz and /metrics with the policy counters', async () => {
  assert.equal((await fetch(`${HTTP}/healthz`)).status, 200);
  const ready = await fetch(`${HTTP}/readyz`);
  assert.equal(ready.status, 200, await ready.clone().text());
  const metrics = await (await fetch(`${HTTP}/metrics`)).text();
  assert.match(metrics, /^postwarden_policy_decisions_total\{action="reject"\} \d+$/m);
  assert.match(
    metrics,
    /^postwarden_policy_verdicts_total\{check="lists",symbol="BLOCK_CLIENT",mode="enforce"\} \d+$/m,
  );
  assert.match(metrics, /^postwarden_policy_request_duration_seconds_bucket/m);
  assert.match(metrics, /^postwarden_map_healthy\{map="file:.*block-clients"\} 1$/m);
});

test('a map file replaced on disk is reloaded without a restart and without dropping connections', async () => {
  const held = await PolicyClient.connect(POLICY);
  assert.equal(await held.query(request('198.51.100.2')), 'DUNNO');
  writeFileSync(`${blockFile}.new`, '198.51.100.2\n');
  renameSync(`${blockFile}.new`, blockFile);
  await until('the new entry to apply', async () => (await held.query(request('198.51.100.2'))) !== 'DUNNO');
  assert.equal(await held.query(request('198.51.100.1')), 'DUNNO');
  held.close();
});

test('a map file that disappears: the last good content keeps serving, /readyz says why, and it recovers', async () => {
  rmSync(blockFile);
  server.signal('SIGHUP');
  await until('readyz to turn 503', async () => (await fetch(`${HTTP}/readyz`)).status === 503);
  const body = (await (await fetch(`${HTTP}/readyz`)).json()) as {
    checks: { name: string; ready: boolean; reason?: string }[];
  };
  const map = body.checks.find((c) => c.name.includes('block-clients'));
  assert.equal(map?.ready, false);
  assert.match(map?.reason ?? '', /ENOENT|no such file/i);
  assert.equal(await query('198.51.100.2'), '554 5.7.1 Access denied', 'last good content still serves');
  assert.match(server.log(), /"code":"PW-M011"/);
  writeFileSync(blockFile, '198.51.100.3\n');
  server.signal('SIGHUP');
  await until('readyz to recover', async () => (await fetch(`${HTTP}/readyz`)).status === 200);
  assert.equal(await query('198.51.100.3'), '554 5.7.1 Access denied');
});

test('a second serve on the same ports exits 69 (PW-C003) and leaves the first one running', async () => {
  const r = run('serve', '--config', configFile);
  assert.equal(r.status, 69);
  assert.match(r.stdout + r.stderr, /PW-C003/);
  assert.equal(await query('192.0.2.1'), 'DUNNO');
});

test('SIGTERM stops serve cleanly with exit 0', async () => {
  const exit = await server.stop();
  assert.equal(exit?.code, 0, JSON.stringify(exit));
  await new Promise<void>((resolve) => {
    const probe = net.connect(20160, '127.0.0.1');
    probe.on('error', () => resolve());
    probe.on('connect', () => assert.fail('still listening'));
  });
});
