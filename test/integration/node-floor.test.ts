/**
 * The runtime floor, for real. package.json's `engines.node` is Debian 13's Node, 20.19. This host runs a newer
 * Node 20, so this test runs postwarden under Debian 13's own `nodejs` package, inside the trixie root that the
 * Dovecot 2.4 tests use (test/harness/dovecot24.ts). The checkout is bind-mounted into the root, and /proc is
 * mounted there too, because some unit tests read it.
 *
 * Shows: that Node satisfies `engines.node`; the unit and golden suites pass under it, with the same build and
 * the same node_modules (better-sqlite3's addon included: Node 20's ABI); `serve` on the embedded default
 * answers /healthz and a policy request.
 *
 * Both mounts are removed afterwards, and any left by a killed run are removed first. The HTTP face's default
 * port and the policy port are the embedded default's (10063, 10060): this file runs alone, as every
 * integration file does.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ensureTrixieRoot, mountsUnder } from '../harness/dovecot24.js';
import { PolicyClient } from '../../src/policy/client.js';
import { sleep } from '../harness/postwarden.js';

const run = promisify(execFile);
const CHECKOUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const MOUNT = '/pw-floor-src';
// Nothing else in the chroot: the host's NODE_OPTIONS or NODE_EXTRA_CA_CERTS name host paths.
const ENV = { PATH: '/usr/bin:/bin:/usr/sbin:/sbin', HOME: '/root', LANG: 'C.UTF-8' };
let root = '';

const mounted = (dir: string) => mountsUnder(dir).includes(dir);

async function unmountAll(): Promise<void> {
  for (const dir of [path.join(root, 'proc'), path.join(root, MOUNT)]) {
    if (mounted(dir)) await run('umount', [dir]);
  }
  if (existsSync(path.join(root, MOUNT))) rmdirSync(path.join(root, MOUNT));
}

/** Runs a shell command inside the root as Debian 13's Node sees it. */
const inRoot = (command: string, timeout = 300_000) =>
  run('chroot', [root, 'sh', '-c', command], { env: ENV, timeout, maxBuffer: 64 * 1024 * 1024 });

before(
  async () => {
    root = await ensureTrixieRoot();
    await unmountAll();
    mkdirSync(path.join(root, MOUNT));
    await run('mount', ['--bind', CHECKOUT, path.join(root, MOUNT)]);
    await run('mount', ['-t', 'proc', 'proc', path.join(root, 'proc')]);
  },
  // The first run of the trixie tests builds the root (debootstrap): minutes, not seconds.
  { timeout: 900_000 },
);

after(async () => {
  if (root) await unmountAll();
});

test("Debian 13's Node satisfies engines.node", async () => {
  const { stdout } = await inRoot('node --version');
  const floor = (
    JSON.parse(readFileSync(path.join(CHECKOUT, 'package.json'), 'utf8')) as {
      engines: { node: string };
    }
  ).engines.node;
  const [fMajor, fMinor] = (/>=\s*(\d+)\.(\d+)/.exec(floor) ?? []).slice(1).map(Number);
  const [major, minor] = (/^v(\d+)\.(\d+)\./.exec(stdout.trim()) ?? []).slice(1).map(Number);
  assert.ok(fMajor !== undefined && fMinor !== undefined, `engines.node ${floor}`);
  assert.ok(major !== undefined && minor !== undefined, `node --version: ${stdout}`);
  assert.ok(major > fMajor || (major === fMajor && minor >= fMinor), `${stdout.trim()} below ${floor}`);
  assert.equal(major, fMajor, `Debian 13's Node is ${stdout.trim()}: the floor ${floor} is its major`);
});

test("the unit and golden suites pass under Debian 13's Node", async () => {
  const { stdout } = await inRoot(
    `cd ${MOUNT} && node --test --test-concurrency=2 dist/test/unit/*.test.js dist/test/golden/*.test.js`,
  ).catch((error: { stdout?: string; stderr?: string }) => {
    const failures = (error.stdout ?? '').split('\n').filter((l) => /^\s*not ok/.test(l));
    assert.fail(
      `failures under Debian 13's Node:\n${failures.join('\n')}\n${(error.stderr ?? '').slice(-2000)}`,
    );
  });
  assert.match(stdout, /^# fail 0$/m);
  const passed = Number(/^# pass (\d+)$/m.exec(stdout)?.[1] ?? 0);
  assert.ok(passed > 500, `${passed} tests passed`);
});

test("serve on the embedded default answers /healthz and a policy request under Debian 13's Node", async () => {
  const child = spawn(
    'chroot',
    [root, 'sh', '-c', `cd /tmp && exec node ${MOUNT}/dist/src/cli/main.js serve`],
    {
      env: ENV,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  try {
    let healthy = false;
    for (let i = 0; i < 100 && !healthy; i++) {
      healthy = await fetch('http://127.0.0.1:10063/healthz')
        .then((r) => r.ok)
        .catch(() => false);
      if (!healthy) await sleep(100);
    }
    assert.ok(healthy, `no /healthz within 10 s:\n${output}`);
    const client = await PolicyClient.connect('127.0.0.1:10060');
    try {
      const action = await client.query(
        {
          request: 'smtpd_access_policy',
          protocol_state: 'RCPT',
          client_address: '192.0.2.1',
          helo_name: 'mail.example.net',
          sender: 'a@example.net',
          recipient: 'b@example.org',
        },
        5000,
      );
      assert.match(action, /^554 5\.7\.1 .*Relay access denied/);
    } finally {
      client.close();
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  }
});
