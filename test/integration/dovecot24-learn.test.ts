/**
 * The Dovecot 2.4 fragment against a real Dovecot 2.4: Debian 13's packages (2.4.1, Pigeonhole 2.4.1), run in
 * a Debian trixie root (test/harness/dovecot24.ts) because this Debian 12 host has 2.3.
 *
 * - What `postwarden generate dovecot --dovecot-version 2.4` writes, dropped into the stock Debian 13 config as
 *   an admin would (conf.d/95-postwarden.conf, the scripts in /etc/dovecot/sieve): `doveconf -n` accepts it and
 *   shows its settings, and `sievec` compiles the three scripts.
 * - dovecot-snippets/dovecot-2.4-postwarden.conf in a running Dovecot 2.4, with this test's paths. Mail tagged
 *   `X-Spam-Flag: YES` and delivered over LMTP is filed into Junk by the before script, and nothing is
 *   reported. A real IMAP client (imapflow) then moves messages: Junk → INBOX trains ham, Junk → Trash trains
 *   nothing, INBOX → Junk trains spam. Each report goes through Dovecot's pipe to postwarden's learn socket.
 *
 * The Postfix and content-filter half of the chain (tagging) does not depend on the Dovecot version. It is
 * shown with Dovecot 2.3 in dovecot-learn.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { type Dovecot24, startDovecot24 } from '../harness/dovecot24.js';
import { learned as learnedOf, moveTagged, reports as reportsOf } from '../harness/learn-moves.js';
import { BIN, Postwarden, sleep } from '../harness/postwarden.js';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SNIPPETS = path.join(ROOT, 'dovecot-snippets');
const NAME = 'pw-h-learn24';
const IMAP_PORT = 21461;
const LMTP_PORT = 21462;
const HTTP = '127.0.0.1:21463';
const work = mkdtempSync('/tmp/pw-h-learn24-');

let dovecot: Dovecot24 | undefined;
let imap: ImapFlow | undefined;
const pw = new Postwarden('learn24', work, HTTP);

function d(): Dovecot24 {
  if (!dovecot) throw new Error('Dovecot 2.4 not started');
  return dovecot;
}

function client(): ImapFlow {
  if (!imap) throw new Error('IMAP client not connected');
  return imap;
}

/** The fragment with this instance's paths: scripts in /<name>/sieve, the learn socket in /<name>/learn. */
function renderFragment(): string {
  const fragment = readFileSync(path.join(SNIPPETS, 'dovecot-2.4-postwarden.conf'), 'utf8')
    .replaceAll('/etc/dovecot/sieve/', `/${NAME}/sieve/`)
    // Relative to base_dir (/<name>/run), as Pigeonhole always joins the two.
    .replace(/^(\s*sieve_pipe_socket_dir = ).*$/m, '$1../learn');
  assert.match(fragment, /^sieve_pipe_socket_dir = \.\.\/learn$/m);
  return fragment;
}

function config(socket: string): string {
  return `hostname: mx.example.test
local_domains: [example.test]
store: { driver: sqlite, path: ${path.join(work, 'state.db')} }
policy: { listen: 127.0.0.1:21464, checks: [relay] }
filter:
  enabled: true
  listen: 127.0.0.1:21465
  reinject: 127.0.0.1:21466
  spool_dir: ${path.join(work, 'spool')}
  scanners: [rules, bayes]
  bayes: { autolearn: { enabled: false } }
  quarantine: { dir: ${path.join(work, 'quarantine')} }
http: { listen: ${HTTP} }
learn: { socket: ${socket}, socket_mode: '0666' }
`;
}

let tags = 0;
const newTag = () => `learn24-${process.pid}-${++tags}`;

/** Delivers a message over LMTP, tagged spam by the filter or not. */
async function deliver(tag: string, spam: boolean): Promise<void> {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: LMTP_PORT,
    lmtp: true,
    secure: false,
    ignoreTLS: true,
  });
  const raw = [
    'From: Sender <sender@example.net>',
    'To: alice@example.test',
    `Subject: ${spam ? 'Casino jackpot' : 'Quarterly figures'} ${tag}`,
    `Message-ID: <${tag}@example.net>`,
    'Date: Mon, 23 Nov 2026 01:00:00 +0000',
    ...(spam ? ['X-Spam-Flag: YES', 'X-Spam-Score: 14.0'] : []),
    `X-Pw-Test: ${tag}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    `A message for the Dovecot 2.4 learning test, ${tag}.`,
    '',
  ].join('\r\n');
  try {
    const info = await transport.sendMail({
      envelope: { from: 'sender@example.net', to: ['alice@example.test'] },
      raw,
    });
    assert.deepEqual(info.accepted, ['alice@example.test'], JSON.stringify(info));
  } finally {
    transport.close();
  }
}

/** The messages tagged `tag` in one of alice's Maildir folders ('' is INBOX). */
function inFolder(folder: string, tag: string): string[] {
  const maildir = d().outside(`/${NAME}/mail/example.test/alice/Maildir`);
  const root = folder === '' ? maildir : path.join(maildir, `.${folder}`);
  return ['new', 'cur']
    .map((sub) => path.join(root, sub))
    .filter((dir) => existsSync(dir))
    .flatMap((dir) => readdirSync(dir).map((name) => readFileSync(path.join(dir, name), 'utf8')))
    .filter((text) => text.includes(`X-Pw-Test: ${tag}`));
}

async function waitInFolder(folder: string, tag: string, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [copy] = inFolder(folder, tag);
    if (copy) return copy;
    if (Date.now() > deadline)
      throw new Error(`${tag} not in ${folder || 'INBOX'}:\n${d().log().slice(-2000)}`);
    await sleep(100);
  }
}

const reports = (cls: string) => reportsOf(pw, cls);
const learned = (cls: string, count: number) => learnedOf(pw, cls, count);
const move = (tag: string, from: string, to: string) => moveTagged(client(), tag, from, to);

before(
  async () => {
    dovecot = await startDovecot24({
      name: NAME,
      imapPort: IMAP_PORT,
      lmtpPort: LMTP_PORT,
      fragment: renderFragment(),
    });
    // The scripts and the socket's directory, inside the instance's directory that startDovecot24 made afresh.
    const sieveDir = d().outside(`/${NAME}/sieve`);
    const learnDir = d().outside(`/${NAME}/learn`);
    mkdirSync(sieveDir, { recursive: true });
    mkdirSync(learnDir, { recursive: true });
    chmodSync(learnDir, 0o755);
    for (const name of readdirSync(path.join(SNIPPETS, 'sieve'))) {
      copyFileSync(path.join(SNIPPETS, 'sieve', name), path.join(sieveDir, name));
      await d().exec('sievec', ['-c', `/${NAME}/dovecot.conf`, `/${NAME}/sieve/${name}`]);
    }
    await pw.start(config(path.join(learnDir, 'postwarden-learn')));
    imap = new ImapFlow({
      host: '127.0.0.1',
      port: IMAP_PORT,
      secure: false,
      auth: { user: 'alice@example.test', pass: 'alice-secret' },
      logger: false,
    });
    await imap.connect();
    // The first run builds the trixie root (debootstrap): minutes, not seconds.
  },
  { timeout: 900_000 },
);

after(async () => {
  await imap?.logout().catch(() => undefined);
  await pw.stop();
  await dovecot?.stop();
  if (dovecot) rmSync(dovecot.outside(`/${NAME}`), { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

describe('the generated 2.4 fragment in the stock Debian 13 config', () => {
  it('doveconf -n accepts it and shows its settings; sievec compiles the scripts', async () => {
    const out = path.join(work, 'generated');
    await run(process.execPath, [BIN, 'generate', 'dovecot', '--dovecot-version', '2.4', '--out', out]);
    const root = d().root;
    const confd = path.join(root, 'etc/dovecot/conf.d/95-postwarden.conf');
    const scripts = path.join(root, 'etc/dovecot/sieve');
    mkdirSync(scripts, { recursive: true });
    try {
      copyFileSync(path.join(out, 'dovecot-postwarden.conf'), confd);
      for (const name of readdirSync(out).filter((n) => n.endsWith('.sieve'))) {
        copyFileSync(path.join(out, name), path.join(scripts, name));
        await d().exec('sievec', [`/etc/dovecot/sieve/${name}`]);
        assert.ok(existsSync(path.join(scripts, name.replace(/\.sieve$/, '.svbin'))), `sievec ${name}`);
      }
      const { stdout } = await d().exec('doveconf', ['-n']);
      assert.match(stdout, /^# 2\.4\./m);
      assert.match(
        stdout,
        /^sieve_script postwarden-junk \{\n {2}path = \/etc\/dovecot\/sieve\/postwarden-junk\.sieve\n {2}type = before\n\}/m,
      );
      assert.match(stdout, /^imapsieve_from Junk \{\n {2}sieve_script postwarden-report-ham \{/m);
      assert.match(stdout, /^ {2}vnd\.dovecot\.pipe = yes$/m);
    } finally {
      rmSync(confd, { force: true });
      rmSync(scripts, { recursive: true, force: true });
    }
  });
});

describe('learning from users moving mail in Dovecot 2.4', () => {
  const spam = newTag();

  it('files mail tagged X-Spam-Flag: YES into Junk at delivery, and reports nothing then', async () => {
    await deliver(spam, true);
    await waitInFolder('Junk', spam);
    assert.equal(inFolder('', spam).length, 0, 'also in INBOX');
    assert.equal(await reports('spam'), 0);
    assert.equal(await reports('ham'), 0);
  });

  it('moving it out of Junk to INBOX trains it as ham', async () => {
    await move(spam, 'Junk', 'INBOX');
    assert.equal(await reports('ham'), 1, `${pw.log().slice(-2000)}\n${d().log().slice(-2000)}`);
    assert.equal(await learned('ham', 1), 1);
    assert.equal(await reports('spam'), 0);
  });

  it('moving spam from Junk to Trash trains nothing', async () => {
    const trashed = newTag();
    await deliver(trashed, true);
    await waitInFolder('Junk', trashed);
    await move(trashed, 'Junk', 'Trash');
    await waitInFolder('Trash', trashed);
    assert.equal(await reports('ham'), 1);
    assert.equal(await reports('spam'), 0);
  });

  it('moving a message from INBOX into Junk trains it as spam; Dovecot logged no Sieve error', async () => {
    const missed = newTag();
    await deliver(missed, false);
    await waitInFolder('', missed);
    await move(missed, 'INBOX', 'Junk');
    assert.equal(await reports('spam'), 1, `${pw.log().slice(-2000)}\n${d().log().slice(-2000)}`);
    assert.equal(await learned('spam', 1), 1);
    const errors = d()
      .log()
      .split('\n')
      .filter((line) => /sieve|pipe|program/i.test(line) && /error|warning|fatal/i.test(line));
    assert.deepEqual(errors, []);
  });
});
