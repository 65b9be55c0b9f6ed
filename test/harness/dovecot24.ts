/**
 * Dovecot 2.4, the version Debian 13 ships, for tests on a Debian 12 host. The host's own packages stop at 2.3,
 * and the 2.4 fragment's settings are not the 2.3 ones.
 *
 * - `ensureTrixieRoot()` builds a Debian trixie root once, with debootstrap (minbase, plus dovecot-core,
 *   dovecot-imapd, dovecot-lmtpd, dovecot-sieve and nodejs), from the same Debian mirror that apt uses. The root lives in
 *   TRIXIE_ROOT, is about 370 MB, and takes 40–90 s to build. It is built in a `.partial` directory and renamed
 *   into place, so an interrupted build is never used. A user `vmail` is added for the mail processes.
 * - `startDovecot24()` runs a Dovecot instance inside that root with `chroot`, in its own directory `/<name>`. The
 *   network is shared, so it listens on loopback ports of the host. It has IMAP and LMTP, one passwd-file user
 *   (alice@example.test / alice-secret), Maildir under `/<name>/mail`, and Junk and Trash with their special-use
 *   flags. Its dovecot.conf ends with `!include` of the fragment under test.
 *
 * Failure: a root that cannot be built, a config `doveconf` refuses, or a Dovecot that does not answer on its
 * ports within 10 s each throws, with the command's output or Dovecot's log.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const TRIXIE_ROOT = process.env['PW_TEST_TRIXIE_ROOT'] ?? '/var/cache/postwarden-test/trixie-dovecot';
// nodejs: Debian 13's Node, the runtime floor (package.json engines), for test/integration/node-floor.test.ts.
const PACKAGES = ['dovecot-core', 'dovecot-imapd', 'dovecot-lmtpd', 'dovecot-sieve', 'nodejs'];
/** A file of each package: a root that lacks one (an older build) is built again. */
const MARKERS = ['usr/lib/dovecot/lmtp', 'usr/lib/dovecot/imap', 'usr/bin/sievec', 'usr/bin/node'];

/** The Debian mirror apt uses here (deb822 or one-line sources), else deb.debian.org. */
function debianMirror(): string {
  if (process.env['PW_TEST_DEBIAN_MIRROR']) return process.env['PW_TEST_DEBIAN_MIRROR'];
  for (const file of ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list']) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    const uri =
      /^URIs:\s*(\S+\/debian)\/?\s*$/m.exec(text)?.[1] ??
      /^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\/?\s/m.exec(text)?.[1];
    if (uri) return uri;
  }
  return 'http://deb.debian.org/debian';
}

/** Mount points at or below `dir`, from /proc/self/mounts. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((point) => point === dir || point.startsWith(`${dir}/`));
}

/** The root, built once (see the file comment). */
export async function ensureTrixieRoot(): Promise<string> {
  if (MARKERS.every((file) => existsSync(path.join(TRIXIE_ROOT, file)))) return TRIXIE_ROOT;
  const partial = `${TRIXIE_ROOT}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(path.dirname(TRIXIE_ROOT), { recursive: true });
  const args = ['--variant=minbase', `--include=${PACKAGES.join(',')}`, 'trixie', partial, debianMirror()];
  try {
    await run('debootstrap', args, { maxBuffer: 64 * 1024 * 1024, timeout: 600_000 });
    await run('chroot', [
      partial,
      'useradd',
      '--system',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      'vmail',
    ]);
  } catch (error) {
    const detail = error as { stderr?: string; stdout?: string; message?: string };
    throw new Error(
      `debootstrap ${args.join(' ')} failed: ${detail.message ?? ''}\n${(detail.stderr ?? '').slice(-2000)}${(detail.stdout ?? '').slice(-2000)}`,
    );
  }
  // A mount left inside the old root (node-floor.test.ts bind-mounts the checkout there) must never be removed
  // through: refuse rather than delete what it shows.
  const inside = mountsUnder(TRIXIE_ROOT);
  if (inside.length > 0) {
    throw new Error(`${TRIXIE_ROOT} has mounts inside (${inside.join(', ')}): unmount them, then run again`);
  }
  rmSync(TRIXIE_ROOT, { recursive: true, force: true });
  renameSync(partial, TRIXIE_ROOT);
  return TRIXIE_ROOT;
}

export interface Dovecot24Options {
  /** The instance's directory inside the root: `/<name>`. */
  readonly name: string;
  readonly imapPort: number;
  readonly lmtpPort: number;
  /** The fragment under test, with paths as seen inside the root. */
  readonly fragment: string;
}

export interface Dovecot24 {
  readonly root: string;
  /** The instance's directory as seen inside the root (`/<name>`). */
  readonly dir: string;
  /** A path inside the root, as seen from the host. */
  outside(inside: string): string;
  /** Runs a program inside the root (`chroot ROOT ...`). */
  exec(program: string, args: readonly string[]): Promise<{ stdout: string; stderr: string }>;
  log(): string;
  stop(): Promise<void>;
}

async function answers(port: number, greeting: RegExp, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      let text = '';
      socket.setTimeout(1000, () => socket.destroy());
      socket.on('data', (chunk) => {
        text += chunk.toString('latin1');
        if (greeting.test(text)) {
          socket.destroy();
          resolve(true);
        }
      });
      socket.on('close', () => resolve(false));
      socket.on('error', () => resolve(false));
    });
    if (ok) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

/** Stops a Dovecot by its master's pid (not doveadm: it must work even when the config no longer does). */
async function stopMaster(pidFile: string): Promise<void> {
  const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : NaN;
  if (!Number.isInteger(pid) || pid <= 0) return;
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 50 && alive(); i++) await new Promise((resolve) => setTimeout(resolve, 100));
  if (alive()) process.kill(pid, 'SIGKILL');
}

export async function startDovecot24(options: Dovecot24Options): Promise<Dovecot24> {
  const root = await ensureTrixieRoot();
  const dir = `/${options.name}`;
  const outside = (inside: string) => path.join(root, inside);
  const exec = (program: string, args: readonly string[]) => run('chroot', [root, program, ...args]);
  await stopMaster(outside(`${dir}/run/master.pid`)); // one a killed test run left behind
  rmSync(outside(dir), { recursive: true, force: true });
  for (const sub of ['run', 'state', 'log', 'mail']) mkdirSync(outside(`${dir}/${sub}`), { recursive: true });
  const uid = (await exec('id', ['-u', 'vmail'])).stdout.trim();
  const gid = (await exec('id', ['-g', 'vmail'])).stdout.trim();
  await exec('chown', [`${uid}:${gid}`, `${dir}/mail`]);
  writeFileSync(outside(`${dir}/users`), 'alice@example.test:{PLAIN}alice-secret::::::\n');
  writeFileSync(outside(`${dir}/postwarden.conf`), options.fragment);
  const home = `${dir}/mail/%{user | domain}/%{user | username}`;
  writeFileSync(
    outside(`${dir}/dovecot.conf`),
    `# written by test/harness/dovecot24.ts: Dovecot 2.4 syntax, no conf.d
dovecot_config_version = 2.4.1
dovecot_storage_version = 2.4.1
protocols = imap lmtp
listen = 127.0.0.1
hostname = mx.example.test
base_dir = ${dir}/run
state_dir = ${dir}/state
instance_name = ${options.name}
log_path = ${dir}/log/dovecot.log
info_log_path = ${dir}/log/dovecot.log
ssl = no
auth_allow_cleartext = yes
auth_mechanisms = plain login
auth_failure_delay = 0
auth_verbose = yes
mail_uid = ${uid}
mail_gid = ${gid}
first_valid_uid = ${uid}
last_valid_uid = ${uid}
first_valid_gid = ${gid}
last_valid_gid = ${gid}
mail_driver = maildir
mail_home = ${home}
mail_path = ~/Maildir
passdb passwd-file {
  passwd_file_path = ${dir}/users
  default_password_scheme = PLAIN
}
userdb passwd-file {
  passwd_file_path = ${dir}/users
  fields {
    uid = ${uid}
    gid = ${gid}
    home = ${home}
  }
}
service imap-login {
  inet_listener imap {
    listen = 127.0.0.1
    port = ${options.imapPort}
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    listen = 127.0.0.1
    port = ${options.lmtpPort}
  }
}
protocol lmtp {
  postmaster_address = postmaster@example.test
}
namespace inbox {
  inbox = yes
  mailbox Junk {
    special_use = \\Junk
  }
  mailbox Trash {
    special_use = \\Trash
    auto = create
  }
}
!include ${dir}/postwarden.conf
`,
  );
  const conf = `${dir}/dovecot.conf`;
  const log = () =>
    existsSync(outside(`${dir}/log/dovecot.log`))
      ? readFileSync(outside(`${dir}/log/dovecot.log`), 'utf8')
      : '';
  try {
    await exec('doveconf', ['-c', conf, '-n']);
    // Not execFile: the daemon keeps the pipes it inherited open, so their end never comes. Its errors are in
    // its log (and the exit code says whether it started).
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn('chroot', [root, '/usr/sbin/dovecot', '-c', conf], { stdio: 'ignore' });
      child.on('error', reject);
      child.on('exit', resolve);
    });
    if (code !== 0) throw new Error(`dovecot -c ${conf} exited with ${String(code)}`);
  } catch (error) {
    const detail = error as { stderr?: string; message?: string };
    throw new Error(`Dovecot 2.4 did not start: ${detail.message ?? ''}\n${detail.stderr ?? ''}\n${log()}`);
  }
  const stop = () => stopMaster(outside(`${dir}/run/master.pid`));
  if (
    !(await answers(options.imapPort, /^\* OK .*Dovecot ready/m, 10_000)) ||
    !(await answers(options.lmtpPort, /^220 /m, 10_000))
  ) {
    await stop();
    throw new Error(
      `Dovecot 2.4 does not answer on 127.0.0.1:${options.imapPort}/${options.lmtpPort}:\n${log()}`,
    );
  }
  return { root, dir, outside, exec, log, stop };
}
