/**
 * `postwarden setup` against a real, plain Postfix (the harness with no policy service and no filter), with the
 * built bin as a child process:
 *
 * - without --apply it prints the plan and changes nothing; without a config it writes one from the host's
 *   values, with an admin token (0640) beside it;
 * - --apply wires the chain: the policy service after reject_unauth_destination, content_filter, the scan
 *   transport and the re-injection smtpd in master.cf; a real message then goes through postwarden (policy and
 *   filter) into the Maildir;
 * - a second --apply changes nothing: main.cf and master.cf byte-identical, no backup written;
 * - --rollback restores the original files byte for byte;
 * - a failing `postfix check` (a `postfix` on PATH that refuses `check`) rolls back byte for byte, exit 78;
 * - bad input, each leaving the host as it was: no postconf on PATH (69, the apt-get command), no main.cf (78),
 *   an existing content_filter of amavisd-new (78, named), a read-only config dir (73, a read-only bind mount),
 *   a port postwarden wants held by another process (78, the process named).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, startHarness, tagged } from '../harness/harness.js';
import { BIN, Postwarden } from '../harness/postwarden.js';

const POLICY = '127.0.0.1:22060';
const FILTER = '127.0.0.1:22061';
const REINJECT_PORT = 22062;
const HTTP = '127.0.0.1:22063';
const work = mkdtempSync('/tmp/pw-su-it-');
const backups = path.join(work, 'backup');
const configFile = path.join(work, 'postwarden-setup.yml');

let harness: Harness | undefined;
const pw = new Postwarden('setup', work, HTTP, POLICY);

function h(): Harness {
  if (!harness) throw new Error('harness not started');
  return harness;
}

const config = `hostname: mx.example.test
local_domains: [example.test]
local_networks: [127.0.0.1/32]
store: { driver: sqlite, path: ${work}/state.db }
policy:
  listen: ${POLICY}
  checks: [relay]
filter:
  enabled: true
  listen: ${FILTER}
  reinject: 127.0.0.1:${REINJECT_PORT}
  spool_dir: ${work}/spool
  scanners: [loop, sanity]
  quarantine: { dir: ${work}/quarantine }
http:
  listen: ${HTTP}
  token_file: ${work}/admin.token
`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function setup(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'setup', ...args], { env }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

/** setup against the harness: its Postfix and Dovecot dirs, the test's config and backup dir. */
function setupHere(extra: string[], env?: NodeJS.ProcessEnv, configPath = configFile): Promise<Run> {
  return setup(
    [
      '--config',
      configPath,
      '--postfix-config-dir',
      h().postfixConfDir,
      '--dovecot-config-dir',
      path.join(h().dir, 'dovecot'),
      '--backup-dir',
      backups,
      ...extra,
    ],
    env,
  );
}

/** main.cf and master.cf as bytes. */
function snapshot(): Buffer[] {
  return ['main.cf', 'master.cf'].map((f) => readFileSync(path.join(h().postfixConfDir, f)));
}

function assertUnchanged(before: Buffer[], what: string): void {
  const now = snapshot();
  assert.ok(before[0]?.equals(now[0] ?? Buffer.alloc(0)), `${what}: main.cf changed`);
  assert.ok(before[1]?.equals(now[1] ?? Buffer.alloc(0)), `${what}: master.cf changed`);
}

/** An environment whose PATH finds `name` as this shell script first (a tool that fails on purpose). */
function shimmed(name: string, script: string): NodeJS.ProcessEnv {
  const dir = path.join(work, `shim-${name}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, name), `#!/bin/sh\n${script}\n`);
  chmodSync(path.join(dir, name), 0o755);
  return { ...process.env, PATH: `${dir}:${process.env['PATH'] ?? ''}` };
}

const backupDirs = () => (existsSync(backups) ? readdirSync(backups).sort() : []);

describe('setup on a plain Postfix', () => {
  let original: Buffer[] = [];

  before(async () => {
    harness = await startHarness({
      policy: 'off',
      env: {
        HARNESS_DIR: '/tmp/pw-su-h',
        HARNESS_FILTER: 'off',
        SMTP_PORT: '22025',
        SINK_PORT: '22026',
        LMTP_PORT: '22024',
        IMAP_PORT: '22043',
        DOVECOT_AUTH_PORT: '22044',
        REINJECT_PORT: String(REINJECT_PORT),
      },
    });
    writeFileSync(configFile, config);
    original = snapshot();
  });

  after(async () => {
    await pw.stop();
    await harness?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('writes a config from the host when there is none, and without --apply changes nothing', async () => {
    const fresh = path.join(work, 'fresh', 'postwarden.yml');
    const r = await setupHere([], process.env, fresh);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /would change \(run with --apply\):/);
    assert.match(r.stdout, /main\.cf: content_filter = scan:\[127\.0\.0\.1\]:10061/);
    const text = readFileSync(fresh, 'utf8');
    assert.match(text, /^hostname: mx\.example\.test$/m);
    assert.match(text, /^ {2}- example\.test$/m, text);
    assert.equal(statSync(fresh).mode & 0o777, 0o640);
    const token = path.join(work, 'fresh', 'admin.token');
    assert.equal(statSync(token).mode & 0o777, 0o640);
    assert.match(readFileSync(token, 'utf8'), /^[A-Za-z0-9_-]{43}\n$/);
    const again = await setupHere([], process.env, fresh);
    assert.doesNotMatch(again.stdout, /^wrote /m, 'an existing config is never rewritten');
    assertUnchanged(original, 'setup without --apply');
    assert.deepEqual(backupDirs(), []);
  });

  it('generate all --out writes every file from the live host and touches nothing live', async () => {
    const out = path.join(work, 'generated');
    const r = await new Promise<Run>((resolve) => {
      execFile(
        process.execPath,
        [
          BIN,
          'generate',
          'all',
          '--config',
          configFile,
          '--postfix-config-dir',
          h().postfixConfDir,
          '--out',
          out,
        ],
        (error, stdout, stderr) => resolve({ code: error ? 1 : 0, stdout, stderr }),
      );
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readdirSync(out).sort(), [
      'dovecot-postwarden.conf',
      'main.cf.postwarden',
      'master.cf.postwarden',
      'postwarden-junk.sieve',
      'postwarden-report-ham.sieve',
      'postwarden-report-spam.sieve',
      'postwarden.service',
      'prometheus-postwarden.yml',
    ]);
    const main = readFileSync(path.join(out, 'main.cf.postwarden'), 'utf8');
    // The harness's relay control is kept as it is, and the policy service comes after it.
    assert.match(
      main,
      /^smtpd_relay_restrictions =\n {4}permit_mynetworks,\n {4}permit_sasl_authenticated,\n {4}reject_unauth_destination$/m,
    );
    assert.match(main, /^content_filter = scan:\[127\.0\.0\.1\]:22061$/m);
    assert.match(
      readFileSync(path.join(out, 'postwarden.service'), 'utf8'),
      new RegExp(`--config ${configFile}$`, 'm'),
    );
    assertUnchanged(original, 'generate');
  });

  it('--apply wires the chain, and a message goes through postwarden', async () => {
    const r = await setupHere(['--apply']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /applied; backup in /);
    const main = await h().postconf([
      'smtpd_relay_restrictions',
      'smtpd_recipient_restrictions',
      'postwarden_policy',
      'content_filter',
      'receive_override_options',
    ]);
    assert.match(
      main,
      /^smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination$/m,
    );
    assert.match(main, /^smtpd_recipient_restrictions = \$postwarden_policy$/m);
    assert.match(
      main,
      /^postwarden_policy = check_policy_service \{ inet:127\.0\.0\.1:22060, timeout=10s, default_action=DUNNO \}$/m,
    );
    assert.match(main, /^content_filter = scan:\[127\.0\.0\.1\]:22061$/m);
    assert.match(main, /^receive_override_options = no_address_mappings$/m);
    const master = await h().postconf(['-M', 'scan/unix', `127.0.0.1:${REINJECT_PORT}/inet`]);
    assert.match(
      master,
      /^scan +unix .* smtp -o syslog_name=postfix\/scan -o smtp_send_xforward_command=yes -o disable_mime_output_conversion=yes/m,
    );
    assert.match(master, /smtp_data_done_timeout=1200s/);
    assert.match(
      master,
      new RegExp(`^127\\.0\\.0\\.1:${REINJECT_PORT} +inet .* smtpd .*-o content_filter= `, 'm'),
    );

    await pw.start(config);
    const tag = `setup-${process.pid}`;
    const sent = await h().swaks([
      '--from',
      'sender@remote.test',
      '--to',
      'alice@example.test',
      '--header',
      `X-Pw-Test: ${tag}`,
    ]);
    assert.equal(sent.code, 0, sent.transcript);
    const message = await h().waitForMessage('alice', tagged(tag), 20_000);
    assert.match(message, /^X-Postwarden-Status: /m, 'the filter saw it');
    const decisions = await pw.decisionsFor('sender@remote.test');
    assert.equal(decisions[0]?.action, 'DUNNO', 'the policy service was asked');
  });

  it('a second --apply changes nothing: files byte-identical, no backup', async () => {
    const applied = snapshot();
    const dirs = backupDirs();
    const r = await setupHere(['--apply']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^nothing to change$/m);
    assertUnchanged(applied, 'second --apply');
    assert.deepEqual(backupDirs(), dirs);
  });

  it('--rollback restores the original files byte for byte', async () => {
    await pw.stop();
    const r = await setup([
      '--rollback',
      '--backup-dir',
      backups,
      '--postfix-config-dir',
      h().postfixConfDir,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assertUnchanged(original, 'rollback');
  });

  it('a failing postfix check rolls back byte for byte (exit 78)', async () => {
    const env = shimmed(
      'postfix',
      'for a in "$@"; do [ "$a" = check ] && { echo "fatal: refused by the test" >&2; exit 1; }; done\nexec /usr/sbin/postfix "$@"',
    );
    const dirs = backupDirs();
    const r = await setupHere(['--apply'], env);
    assert.equal(r.code, 78, r.stdout + r.stderr);
    assert.match(r.stderr, /postfix -c \S+ check failed \(exit 1\): fatal: refused by the test; rolled back/);
    assertUnchanged(original, 'failed check');
    assert.equal(backupDirs().length, dirs.length + 1, 'the backup it restored from is kept');
  });

  it('no Postfix installed: exit 69 with the command that installs it', async () => {
    const empty = path.join(work, 'empty-path');
    mkdirSync(empty, { recursive: true });
    const r = await setupHere([], { ...process.env, PATH: empty });
    assert.equal(r.code, 69, r.stderr);
    assert.match(r.stderr, /postconf is not on PATH.*apt-get install postfix/);
  });

  it('a Postfix without main.cf: exit 78, named', async () => {
    const r = await setup(['--config', configFile, '--postfix-config-dir', path.join(work, 'empty-path')]);
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /main\.cf does not exist/);
  });

  it('an existing content_filter (amavisd-new): exit 78, named, host untouched', async () => {
    await h().postconf(['-e', 'content_filter = amavis:[127.0.0.1]:10024']);
    const before = snapshot();
    try {
      const r = await setupHere(['--apply']);
      assert.equal(r.code, 78, r.stderr);
      assert.match(r.stderr, /content_filter is already set: amavis:\[127\.0\.0\.1\]:10024 \(amavisd-new\)/);
      assertUnchanged(before, 'amavis');
    } finally {
      await h().postconf(['-X', 'content_filter']);
    }
  });

  it('a read-only config dir: exit 73, nothing changed', async () => {
    const dir = h().postfixConfDir;
    const before = snapshot();
    await run('mount', ['--bind', '-o', 'ro', dir, dir]);
    try {
      const r = await setupHere(['--apply']);
      assert.equal(r.code, 73, r.stderr);
      assert.match(r.stderr, /main\.cf: EROFS; nothing was changed/);
    } finally {
      await run('umount', [dir]);
    }
    assertUnchanged(before, 'read-only');
  });

  it('a port it wants held by another process: exit 78, the process named', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(22061, '127.0.0.1', resolve));
    try {
      const before = snapshot();
      const r = await setupHere(['--apply']);
      assert.equal(r.code, 78, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`filter\\.listen 127\\.0\\.0\\.1:22061 is taken by node \\(pid ${process.pid}\\)`),
      );
      assertUnchanged(before, 'port taken');
    } finally {
      server.close();
    }
  });

  it('Dovecot with conf.d: the fragment and compiled Sieve scripts; a failing doveconf removes them again', async () => {
    const dovecotDir = path.join(work, 'dovecot');
    mkdirSync(path.join(dovecotDir, 'conf.d'), { recursive: true });
    // Dovecot refuses an !include glob that matches nothing; Debian's conf.d is never empty either.
    writeFileSync(path.join(dovecotDir, 'conf.d', '10-test.conf'), '# the test host\n');
    // The harness's own config, then conf.d as Debian's dovecot.conf includes it.
    writeFileSync(
      path.join(dovecotDir, 'dovecot.conf'),
      `!include ${path.join(h().dir, 'dovecot', 'dovecot.conf')}\n!include conf.d/*.conf\n`,
    );
    const withDovecot = (extra: string[], env?: NodeJS.ProcessEnv) =>
      setup(
        [
          '--config',
          configFile,
          '--postfix-config-dir',
          h().postfixConfDir,
          '--dovecot-config-dir',
          dovecotDir,
          '--backup-dir',
          backups,
          ...extra,
        ],
        env,
      );
    const fragment = path.join(dovecotDir, 'conf.d', '90-postwarden.conf');
    const junk = path.join(dovecotDir, 'sieve', 'postwarden-junk.sieve');
    const before = snapshot();
    const failed = await withDovecot(
      ['--apply'],
      shimmed('doveconf', 'echo "doveconf: Fatal: refused by the test" >&2\nexit 89'),
    );
    assert.equal(failed.code, 78, failed.stdout + failed.stderr);
    assert.match(
      failed.stderr,
      /doveconf -c \S+ -n failed \(exit 89\): doveconf: Fatal: refused by the test; rolled back/,
    );
    assertUnchanged(before, 'failed doveconf');
    assert.equal(existsSync(fragment), false, 'a file that did not exist is removed');
    assert.equal(existsSync(junk.replace(/\.sieve$/, '.svbin')), false);

    const r = await withDovecot(['--apply']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`write ${fragment}`));
    const text = readFileSync(fragment, 'utf8');
    assert.match(text, new RegExp(`^  sieve_before = ${junk}$`, 'm'));
    assert.match(text, /^# Generated by postwarden from dovecot-snippets\/dovecot-2\.3-postwarden\.conf/m);
    assert.ok(existsSync(junk.replace(/\.sieve$/, '.svbin')), 'sievec compiled the global script');
    const again = await withDovecot(['--apply']);
    assert.match(again.stdout, /^nothing to change$/m);
  });
});

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, (error, _stdout, stderr) =>
      error ? reject(new Error(`${command}: ${stderr}`)) : resolve(),
    );
  });
}
