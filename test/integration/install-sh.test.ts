/**
 * deploy/install.sh on this host: it refuses, before touching anything, a run that is not root (77), an
 * unsupported system (69) and bad usage (64); as root it installs this checkout (the dist/ the test command built:
 * --no-build) into /opt/postwarden with the user, the directories, the command and the unit, and the installed
 * command serves as the postwarden user; a second run upgrades in place and keeps config and state;
 * `--uninstall` keeps /etc/postwarden and /var/lib/postwarden, `--uninstall --purge` removes them and the user.
 * Postfix's main.cf and master.cf are the same bytes throughout. Checked in temp dirs, with deploy/lib.sh's paths
 * moved there: the warning for a Postfix still wired to postwarden, a purge keeping setup's backups then, and
 * `postwarden setup` as postinst and install.sh run it (a stand-in release whose help lists it).
 *
 * The full install needs root and is skipped otherwise. Ports 22220 (policy) and 22221 (http).
 */
import assert from 'node:assert/strict';
import {
  chmodSync,
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
import { after, before, test } from 'node:test';
import {
  assertGone,
  assertInstalled,
  IS_ROOT,
  ok,
  postfixFiles,
  prepareHost,
  ROOT,
  serveAndQuery,
  sh,
} from '../harness/host-install.js';

const SCRIPT = path.join(ROOT, 'deploy/install.sh');
const work = mkdtempSync(path.join(os.tmpdir(), 'pw-pk-install-'));
const skip = IS_ROOT ? false : 'needs root';
let restore = () => {};
let postfixBefore: Record<string, string> = {};

before(() => {
  chmodSync(work, 0o755);
  if (skip) return;
  restore = prepareHost();
  postfixBefore = postfixFiles();
});

after(() => {
  if (!skip && existsSync('/opt/postwarden')) sh('bash', [SCRIPT, '--uninstall', '--purge']);
  restore();
  rmSync(work, { recursive: true, force: true });
});

test('install.sh refuses to run as another user than root, and says so', { skip }, () => {
  // As nobody, from a copy nobody can read (the checkout may not be).
  const copy = path.join(work, 'deploy');
  ok('cp', ['-r', path.join(ROOT, 'deploy'), copy]);
  ok('chmod', ['-R', 'a+rX', copy]);
  const r = sh('runuser', ['-u', 'nobody', '--', 'bash', path.join(copy, 'install.sh')]);
  assert.equal(r.status, 77, r.stderr);
  assert.match(r.stderr, /^install\.sh: must run as root/m);
  assert.ok(!existsSync('/opt/postwarden'));
});

test('install.sh refuses an unsupported system before touching anything', { skip }, () => {
  const osRelease = path.join(work, 'os-release');
  for (const [id, version] of [
    ['centos', '9'],
    ['debian', '11'],
    ['ubuntu', '20.04'],
  ]) {
    writeFileSync(osRelease, `ID=${id}\nVERSION_ID="${version}"\n`);
    const r = sh('bash', [SCRIPT], 30_000, { POSTWARDEN_OS_RELEASE: osRelease });
    assert.equal(r.status, 69, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `unsupported system '${id} ${version}': supported are Debian 12/13 and Ubuntu 22\\.04/24\\.04`,
      ),
    );
  }
  assert.ok(!existsSync('/opt/postwarden'));
  assert.ok(!sh('getent', ['passwd', 'postwarden']).stdout);
});

test('install.sh: bad usage exits 64 with the usage line', () => {
  for (const args of [['--bogus'], ['--purge']]) {
    const r = sh('bash', [SCRIPT, ...args]);
    assert.equal(r.status, 64, r.stderr);
    assert.match(r.stderr, /^usage: deploy\/install\.sh/m);
  }
});

test('install.sh installs this checkout, and the installed command serves', { skip }, async () => {
  const r = ok('bash', [SCRIPT, '--no-build'], 600_000);
  assert.match(r.stderr, /postwarden: installed \d+\.\d+\.\d+ in \/opt\/postwarden/);
  assert.match(r.stderr, /systemd is not running here/);
  assertInstalled();
  await serveAndQuery('127.0.0.1:22220', '127.0.0.1:22221');
});

test('install.sh again upgrades in place and keeps config and state', { skip }, () => {
  const r = ok('bash', [SCRIPT, '--no-build', '--no-setup'], 600_000);
  assert.match(r.stderr, /upgraded \/opt\/postwarden .*; kept \/etc\/postwarden and \/var\/lib\/postwarden/);
  assert.ok(existsSync('/etc/postwarden/pk-test.yml'));
  assert.ok(existsSync('/var/lib/postwarden/state.db'));
  assertInstalled();
});

test('--uninstall keeps config and state; --uninstall --purge removes them and the user', { skip }, () => {
  const r = ok('bash', [SCRIPT, '--uninstall']);
  assert.match(r.stderr, /removed; kept \/etc\/postwarden and \/var\/lib\/postwarden/);
  for (const p of ['/opt/postwarden', '/usr/bin/postwarden', '/lib/systemd/system/postwarden.service']) {
    assert.ok(!existsSync(p), `${p} left behind`);
  }
  assert.ok(existsSync('/etc/postwarden/pk-test.yml'));
  assert.ok(existsSync('/var/lib/postwarden/state.db'));
  ok('bash', [SCRIPT, '--uninstall', '--purge']);
  assertGone();
  assert.deepEqual(postfixFiles(), postfixBefore);
});

/**
 * deploy/lib.sh's function `fn` under sh, with a postconf that names `postfixDir` as Postfix's config_directory
 * and the paths of a purge moved below `work` (`PW_ETC` etc.); the user `pw-pk-none` does not exist.
 */
function lib(fn: string, postfixDir: string, vars = '') {
  const bin = path.join(work, 'bin');
  ok('mkdir', ['-p', bin]);
  writeFileSync(path.join(bin, 'postconf'), `#!/bin/sh\necho ${postfixDir}\n`, { mode: 0o755 });
  return sh('sh', ['-c', `. ${path.join(ROOT, 'deploy/lib.sh')} && ${vars} ${fn}`], 10_000, {
    PATH: `${bin}:/usr/bin:/bin:/usr/sbin:/sbin`,
  });
}

test('a Postfix still wired to postwarden is named, with the way to undo it', () => {
  const dir = path.join(work, 'postfix');
  ok('mkdir', ['-p', dir]);
  writeFileSync(path.join(dir, 'main.cf'), 'myhostname = mx.example.org\n');
  assert.equal(lib('pw_warn_wired', dir).stderr, '', 'a clean main.cf gets no warning');
  writeFileSync(path.join(dir, 'main.cf'), 'content_filter = postwarden:[127.0.0.1]:10061\n');
  const r = lib('pw_warn_wired', dir);
  assert.equal(r.status, 0);
  assert.match(r.stderr, new RegExp(`WARNING: Postfix still uses postwarden \\(${dir}/main\\.cf\\)`));
  assert.match(r.stderr, /postwarden setup --rollback/);
});

test("a purge removes config and state, but keeps setup's backups while Postfix still names postwarden", () => {
  const dir = path.join(work, 'postfix-wired');
  const [etc, state, run, backups] = ['etc', 'state', 'run', 'backups'].map((d) =>
    path.join(work, 'purge', d),
  );
  ok('mkdir', ['-p', dir, etc!, path.join(state!, 'backup/20260101T000000Z'), run!, backups!]);
  writeFileSync(path.join(dir, 'master.cf'), '127.0.0.1:10062 inet n - n - - smtpd\n');
  writeFileSync(path.join(state!, 'backup/20260101T000000Z/main.cf'), 'myhostname = mx.example.org\n');
  const vars = `PW_USER=pw-pk-none PW_ETC=${etc} PW_STATE=${state} PW_RUN=${run} PW_BACKUPS=${backups};`;
  const r = lib('pw_purge', dir, vars);
  assert.equal(r.status, 0, r.stderr);
  for (const d of [etc!, state!, run!]) assert.ok(!existsSync(d), `${d} left behind`);
  const kept = readdirSync(backups!);
  assert.equal(kept.length, 1);
  assert.match(kept[0]!, /^postwarden-\d{8}T\d{6}Z$/);
  assert.ok(existsSync(path.join(backups!, kept[0]!, '20260101T000000Z/main.cf')));
  assert.match(
    r.stderr,
    /kept the backups of Postfix's files in .*: copy them back and run 'postfix reload'/,
  );
});

test(
  'postwarden setup runs without --apply when the release has it; its failure is reported, not fatal',
  { skip },
  () => {
    const etc = path.join(work, 'setup-etc');
    const fake = path.join(work, 'fake-postwarden');
    ok('mkdir', ['-p', etc]);
    // A release whose help lists setup, and whose setup writes the config (exit 0) or fails (exit 78).
    const script = (status: number) =>
      `#!/bin/sh\ncase "$1" in\n  help) echo '  setup [--config FILE]' ;;\n  setup) echo "$*" >${etc}/args; echo 'x: 1' >${etc}/postwarden.yml; exit ${status} ;;\nesac\n`;
    writeFileSync(fake, script(0), { mode: 0o755 });
    const vars = `PW_USER=root PW_ETC=${etc} PW_BIN=${fake};`;
    let r = lib('pw_setup', '/nonexistent', vars);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(path.join(etc, 'args'), 'utf8'), 'setup\n', 'setup, and no --apply');
    assert.equal(statSync(path.join(etc, 'postwarden.yml')).mode & 0o777, 0o640);
    writeFileSync(fake, script(78), { mode: 0o755 });
    r = lib('pw_setup', '/nonexistent', vars);
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stderr,
      /warning: 'postwarden setup' exited 78; fix what it says, then run 'postwarden setup' again/,
    );
  },
);
