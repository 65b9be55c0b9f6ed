/**
 * Installing postwarden on this very host, for the package tests (test/integration/deb.test.ts, install-sh.test.ts):
 * run a command, leave the host as found (an earlier aborted run removed first, a foreign /etc/postwarden or
 * /var/lib/postwarden set aside and put back), check the installed layout (docs/install.md), serve with the
 * installed command as the postwarden user (no systemd here: runuser), and check that nothing is left.
 * Needs root; the callers skip without it.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sleep } from './postwarden.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const IS_ROOT = process.getuid?.() === 0;
/** What an install makes; a purge or `install.sh --uninstall --purge` removes all of it. */
export const INSTALLED_PATHS = [
  '/opt/postwarden',
  '/usr/bin/postwarden',
  '/lib/systemd/system/postwarden.service',
  '/etc/postwarden',
  '/var/lib/postwarden',
];
const DATA_DIRS = ['/etc/postwarden', '/var/lib/postwarden'];
const POSTFIX_FILES = ['/etc/postfix/main.cf', '/etc/postfix/master.cf'];

export interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (bounded), with /usr/sbin on PATH as root's shell has it. */
export function sh(command: string, args: string[], timeoutMs = 300_000, env: NodeJS.ProcessEnv = {}): Ran {
  const r = spawnSync(command, args, {
    cwd: '/',
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, PATH: `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin`, ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Asserts exit 0 and returns the run, naming the command and its output otherwise. */
export function ok(command: string, args: string[], timeoutMs?: number): Ran {
  const r = sh(command, args, timeoutMs);
  assert.equal(r.status, 0, `${command} ${args.join(' ')} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

export const packageInstalled = (): boolean =>
  sh('dpkg-query', ['-W', '-f=${Status}', 'postwarden']).stdout.endsWith(' installed');
export const userExists = (name = 'postwarden'): boolean => sh('getent', ['passwd', name]).status === 0;
export const groupExists = (name = 'postwarden'): boolean => sh('getent', ['group', name]).status === 0;

/**
 * Makes the host ready for a fresh install: removes what an earlier aborted run left (the package, or an
 * install.sh install), and sets aside a /etc/postwarden or /var/lib/postwarden that no postwarden install made
 * (another test's files). Returns the function that puts them back after the test's purge.
 */
export function prepareHost(): () => void {
  if (packageInstalled()) ok('dpkg', ['--purge', 'postwarden']);
  else if (userExists() || existsSync('/opt/postwarden')) {
    ok('bash', [path.join(ROOT, 'deploy/install.sh'), '--uninstall', '--purge']);
  }
  const aside = mkdtempSync(path.join(os.tmpdir(), 'pw-pk-aside-'));
  const moved = DATA_DIRS.filter((dir) => existsSync(dir));
  for (const dir of moved) {
    cpSync(dir, path.join(aside, path.basename(dir)), { recursive: true, preserveTimestamps: true });
    rmSync(dir, { recursive: true, force: true });
  }
  return () => {
    for (const dir of moved) {
      if (!existsSync(dir)) {
        cpSync(path.join(aside, path.basename(dir)), dir, { recursive: true, preserveTimestamps: true });
      }
    }
    rmSync(aside, { recursive: true, force: true });
  };
}

/** sha256 of Postfix's main.cf and master.cf (absent: ''), to show an install and a purge leave them alone. */
export function postfixFiles(): Record<string, string> {
  return Object.fromEntries(
    POSTFIX_FILES.map((f) => [
      f,
      existsSync(f) ? createHash('sha256').update(readFileSync(f)).digest('hex') : '',
    ]),
  );
}

function owner(file: string): { user: string; group: string; mode: string } {
  const [user = '', group = '', mode = ''] = sh('stat', ['-c', '%U %G %a', file]).stdout.trim().split(' ');
  return { user, group, mode };
}

/** The layout of docs/install.md: user, groups, directories and their permissions, the command, the unit. */
export function assertInstalled(): void {
  const passwd = sh('getent', ['passwd', 'postwarden']).stdout.trim().split(':');
  assert.equal(passwd[5], '/var/lib/postwarden', 'home');
  assert.equal(passwd[6], '/usr/sbin/nologin', 'shell');
  assert.ok(Number(passwd[2]) < 1000, `a system user, uid ${passwd[2]}`);
  assert.deepEqual(sh('id', ['-nG', 'postwarden']).stdout.trim().split(' ').sort(), [
    'postfix',
    'postwarden',
  ]);
  assert.deepEqual(owner('/etc/postwarden'), { user: 'root', group: 'postwarden', mode: '750' });
  assert.deepEqual(owner('/var/lib/postwarden'), { user: 'postwarden', group: 'postwarden', mode: '750' });
  for (const file of ['/etc/postwarden/postwarden.yml', '/etc/postwarden/admin.token']) {
    if (existsSync(file))
      assert.deepEqual(owner(file), { user: 'root', group: 'postwarden', mode: '640' }, file);
  }
  assert.deepEqual(owner('/usr/bin/postwarden'), { user: 'root', group: 'root', mode: '755' });
  assert.match(
    readFileSync('/usr/bin/postwarden', 'utf8'),
    /^exec \/usr\/bin\/node \/opt\/postwarden\/dist\/src\/cli\/main\.js "\$@"$/m,
  );
  assert.deepEqual(owner('/opt/postwarden/dist/src/cli/main.js').user, 'root');
  for (const dir of [
    'node_modules/better-sqlite3',
    'postfix-snippets',
    'dovecot-snippets',
    'deploy',
    'docs',
  ]) {
    assert.ok(statSync(path.join('/opt/postwarden', dir)).isDirectory(), dir);
  }
  // Production modules only: no compiler, linter or test tool came along.
  for (const dev of ['typescript', 'eslint', 'prettier', 'fast-check']) {
    assert.ok(!existsSync(path.join('/opt/postwarden/node_modules', dev)), `dev dependency ${dev} installed`);
  }
  const unit = readFileSync('/lib/systemd/system/postwarden.service', 'utf8');
  assert.match(unit, /^ExecStart=\/usr\/bin\/postwarden serve --config \/etc\/postwarden\/postwarden\.yml$/m);
  // The hardening and the lifecycle issue 8 asks for.
  for (const line of [
    'User=postwarden',
    'SupplementaryGroups=postfix',
    'ProtectSystem=strict',
    'PrivateTmp=yes',
    'NoNewPrivileges=yes',
    'StateDirectory=postwarden',
    'ConfigurationDirectory=postwarden',
    'RuntimeDirectory=postwarden',
    'Restart=on-failure',
    'ExecReload=/bin/kill -HUP $MAINPID',
    'StandardOutput=journal',
  ]) {
    assert.ok(unit.split('\n').includes(line), `the unit has no line ${line}`);
  }
}

/** Nothing of postwarden is left: files, directories, user, group. */
export function assertGone(): void {
  for (const p of INSTALLED_PATHS) assert.ok(!existsSync(p), `${p} left behind`);
  assert.ok(!userExists(), 'user postwarden left behind');
  assert.ok(!groupExists(), 'group postwarden left behind');
}

/**
 * Writes a test config into /etc/postwarden (root:postwarden 0640, as the package's own), starts the installed
 * `/usr/bin/postwarden serve` as the postwarden user, waits for /readyz, sends one policy request with the
 * installed `policy-query`, and stops it with SIGTERM. The request is greylisted: the service wrote its state in
 * /var/lib/postwarden (the default store) as the postwarden user.
 */
export async function serveAndQuery(policy: string, http: string): Promise<void> {
  const config = '/etc/postwarden/pk-test.yml';
  writeFileSync(
    config,
    `local_domains: [example.org]
policy:
  listen: ${policy}
  spf: { mode: off }
  dns_sanity: { mode: off }
http:
  listen: ${http}
`,
  );
  ok('chown', ['root:postwarden', config]);
  ok('chmod', ['0640', config]);
  ok('runuser', ['-u', 'postwarden', '--', '/usr/bin/postwarden', 'check-config', '--config', config]);
  let log = '';
  const child: ChildProcess = spawn(
    'runuser',
    ['-u', 'postwarden', '--', '/usr/bin/postwarden', 'serve', '--config', config],
    { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const ready = await readyz(http, child);
    assert.equal(ready, 'ready', log);
    const r = ok('runuser', [
      '-u',
      'postwarden',
      '--',
      '/usr/bin/postwarden',
      'policy-query',
      '--server',
      policy,
      'protocol_state=RCPT',
      'client_address=192.0.2.7',
      'client_name=mail.remote.test',
      'helo_name=mail.remote.test',
      'sender=a@remote.test',
      'recipient=alice@example.org',
    ]);
    assert.match(r.stdout, /^DEFER_IF_PERMIT 4\.7\.1 Greylisted/);
    assert.equal(owner('/var/lib/postwarden/state.db').user, 'postwarden');
  } finally {
    // To serve itself, not to runuser: runuser would answer a signal by killing it 2 s later and dying of it.
    const serve = childOf(child.pid);
    if (serve) process.kill(serve, 'SIGTERM');
    else child.kill('SIGTERM');
  }
  assert.equal(await exited, 0, `serve did not stop cleanly:\n${log}`);
  assert.match(log, /"event":"policy\.decision"/, 'the decision is logged (JSON on stdout, for journald)');
}

/** The pid of a child process of `pid`, from /proc (no procps on a minimal image). */
function childOf(pid: number | undefined): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after the last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/** /readyz's status once it answers 200 (bounded: 60 s on a loaded machine); throws if serve exits first. */
async function readyz(http: string, child: ChildProcess): Promise<string> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode} before it was ready`);
    try {
      const res = await fetch(`http://${http}/readyz`);
      if (res.ok) return ((await res.json()) as { status: string }).status;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`no /readyz on ${http} within 60 s`);
    await sleep(250);
  }
}
