/**
 * The .deb on this host: deploy/build-deb.sh builds it (from the dist/ the test command built, production modules
 * copied from the checkout: --no-build --modules copy, gzip), `dpkg -i` installs it with the user (in group
 * postfix), the directories and their permissions, the command and the unit (systemd-analyze verify, when
 * present), enabled by deb-systemd-helper. No systemd runs here: the test starts the installed command as the
 * postwarden user, waits for /readyz and sends a policy request. `dpkg --purge` leaves nothing: files, config,
 * state, user, the enablement, dpkg's record; Postfix's main.cf and master.cf are the same bytes throughout.
 *
 * The built .deb is kept in /tmp/pw-pk-deb-cache/<hash of what goes into it>/ for the next run. Needs root (the
 * test command runs as root on CI); skipped otherwise. Ports 22210 (policy) and 22211 (http).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  assertGone,
  assertInstalled,
  IS_ROOT,
  ok,
  packageInstalled,
  postfixFiles,
  prepareHost,
  ROOT,
  serveAndQuery,
  sh,
} from '../harness/host-install.js';

const CACHE = '/tmp/pw-pk-deb-cache';
const skip = IS_ROOT ? false : 'needs root (dpkg -i)';
let deb = '';
let restore = () => {};
let postfixBefore: Record<string, string> = {};

/** A hash of everything that goes into the package, and of the Node that built its native module. */
function inputsHash(): string {
  const hash = createHash('sha256').update(process.version);
  const walk = (p: string): void => {
    if (statSync(p).isDirectory()) {
      for (const name of readdirSync(p).sort()) walk(path.join(p, name));
    } else {
      hash.update(`${path.relative(ROOT, p)}\0`).update(readFileSync(p));
    }
  };
  for (const p of ['dist/src', 'deploy', 'postfix-snippets', 'dovecot-snippets', 'docs'])
    walk(path.join(ROOT, p));
  for (const f of ['package.json', 'package-lock.json', 'README.md', 'CHANGELOG.md', 'LICENSE']) {
    walk(path.join(ROOT, f));
  }
  walk(path.join(ROOT, 'node_modules/.package-lock.json'));
  return hash.digest('hex').slice(0, 16);
}

before(() => {
  if (skip) return;
  const dir = path.join(CACHE, inputsHash());
  const cached = existsSync(dir) ? readdirSync(dir).find((f) => f.endsWith('.deb')) : undefined;
  if (cached) {
    deb = path.join(dir, cached);
    console.log(`# deb: cached ${deb}`);
  } else {
    rmSync(CACHE, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const started = Date.now();
    const script = path.join(ROOT, 'deploy/build-deb.sh');
    const r = ok(
      'bash',
      [script, '--out', dir, '--compress', 'gzip', '--no-build', '--modules', 'copy'],
      600_000,
    );
    deb = r.stdout.trim();
    console.log(`# deb: built ${deb} in ${Math.round((Date.now() - started) / 1000)} s`);
  }
  restore = prepareHost();
  postfixBefore = postfixFiles();
});

after(() => {
  if (skip) return;
  if (packageInstalled()) sh('dpkg', ['--purge', 'postwarden']);
  restore();
});

test('the package is named by version and architecture and declares its dependencies', { skip }, () => {
  const version = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string })
    .version;
  const arch = sh('dpkg', ['--print-architecture']).stdout.trim();
  assert.equal(path.basename(deb), `postwarden_${version}_${arch}.deb`);
  const field = (name: string) => ok('dpkg-deb', ['--field', deb, name]).stdout.trim();
  const major = process.versions.node.split('.')[0];
  assert.match(
    field('Depends'),
    new RegExp(`^nodejs \\(>= [\\d.]+\\), nodejs \\(<< ${Number(major) + 1}\\), postfix`),
  );
  assert.equal(field('Recommends'), 'dovecot-core, clamav-daemon, redis-server');
  // Nothing in /etc is shipped, so no conffile: postinst writes the config and purge removes it.
  const files = ok('dpkg-deb', ['--contents', deb]).stdout;
  assert.doesNotMatch(files, / \.\/etc\//);
  assert.match(files, / \.\/usr\/bin\/postwarden$/m);
  assert.match(files, / \.\/lib\/systemd\/system\/postwarden\.service$/m);
  assert.match(files, /better-sqlite3\/build\/Release\/better_sqlite3\.node$/m);
  assert.doesNotMatch(files, /better-sqlite3\/build\/Release\/obj/, 'compiler leftovers are dropped');
});

test('dpkg -i installs the release, the user, the directories, the command and the unit', { skip }, () => {
  const r = ok('dpkg', ['-i', deb]);
  assert.ok(packageInstalled());
  assertInstalled();
  const help = ok('/usr/bin/postwarden', ['help']).stdout;
  // postinst runs `postwarden setup` when the release has it (its outcome depends on this host's Postfix).
  if (/^ {2}setup /m.test(help)) assert.doesNotMatch(r.stderr, /this release has no 'postwarden setup'/);
  else assert.match(r.stderr, /this release has no 'postwarden setup'/, 'postinst says it skipped setup');
  // Enabled the Debian way, though no systemd runs here to start it.
  assert.ok(existsSync('/etc/systemd/system/multi-user.target.wants/postwarden.service'));
  if (sh('sh', ['-c', 'command -v systemd-analyze']).status === 0) {
    const verify = sh('systemd-analyze', ['verify', '/lib/systemd/system/postwarden.service']);
    assert.equal(verify.status, 0, verify.stderr);
    assert.equal(verify.stderr.trim(), '', 'systemd-analyze verify has no complaint');
  } else {
    console.log('# systemd-analyze not installed: the unit was not verified');
  }
});

test(
  'the installed command serves as the postwarden user and answers a policy request',
  { skip },
  async () => {
    await serveAndQuery('127.0.0.1:22210', '127.0.0.1:22211');
  },
);

test('installing the same package again keeps the config and the state', { skip }, () => {
  ok('dpkg', ['-i', deb]);
  assert.ok(existsSync('/etc/postwarden/pk-test.yml'));
  assert.ok(existsSync('/var/lib/postwarden/state.db'));
  assertInstalled();
});

test('dpkg --purge leaves nothing behind and never touches Postfix', { skip }, () => {
  ok('dpkg', ['--purge', 'postwarden']);
  assert.ok(!packageInstalled());
  assert.notEqual(sh('dpkg-query', ['-W', 'postwarden']).status, 0, 'dpkg forgot the package');
  assertGone();
  assert.ok(!existsSync('/etc/systemd/system/multi-user.target.wants/postwarden.service'));
  assert.ok(!existsSync('/var/lib/systemd/deb-systemd-helper-enabled/postwarden.service.dsh-also'));
  assert.deepEqual(postfixFiles(), postfixBefore);
});
