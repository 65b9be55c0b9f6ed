/**
 * Learning from users' moves, end to end: a real Postfix hands mail to postwarden's content filter, which
 * re-injects it; Dovecot delivers it over LMTP, where dovecot-snippets/sieve/postwarden-junk.sieve (sieve_before)
 * files X-Spam-Flag: YES into Junk; a real IMAP client (imapflow) then moves messages, and Dovecot's IMAPSieve
 * scripts pipe them to postwarden's learn socket (Dovecot's script-service protocol, no process per message).
 * The fragment is dovecot-snippets/dovecot-2.3-postwarden.conf rendered for this harness (Debian 12: Dovecot
 * 2.3.19, Pigeonhole 0.5.19) and its scripts are precompiled with sievec, as an admin would.
 *
 * - spam is tagged, filed into Junk at delivery, and delivery reports nothing;
 * - Junk → INBOX trains ham; Junk → Trash (by name, or by its \Trash flag) trains nothing; INBOX → Junk trains
 *   spam.
 * The report reaches postwarden before Dovecot finishes the MOVE (the pipe waits for its answer), so report
 * counters are read right after a move; learning itself is asynchronous and is polled, with a bound.
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
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ImapFlow } from 'imapflow';
import { type Harness, startHarness, tagged } from '../harness/harness.js';
import { learned as learnedOf, moveTagged, reports as reportsOf } from '../harness/learn-moves.js';
import { Postwarden, sleep } from '../harness/postwarden.js';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SNIPPETS = path.join(ROOT, 'dovecot-snippets');
const HARNESS_DIR = '/tmp/pw-h-learn';
const PORTS = {
  SMTP_PORT: '21000',
  SINK_PORT: '21001',
  LMTP_PORT: '21002',
  IMAP_PORT: '21003',
  DOVECOT_AUTH_PORT: '21004',
  REINJECT_PORT: '21005',
};
const FILTER = '127.0.0.1:21006';
const HTTP = '127.0.0.1:21008';
// Dovecot's mail processes (user vmail) reach the sieve scripts and the socket: the work dir is world-readable.
const work = mkdtempSync('/tmp/pw-h-learn-');
chmodSync(work, 0o755);
const socket = path.join(work, 'postwarden-learn');
const sieveDir = path.join(work, 'sieve');
const TOKEN = 't'.repeat(40);

let harness: Harness | undefined;
let imap: ImapFlow | undefined;
const pw = new Postwarden('learn', work, HTTP);

function h(): Harness {
  if (!harness) throw new Error('harness not started');
  return harness;
}

function client(): ImapFlow {
  if (!imap) throw new Error('IMAP client not connected');
  return imap;
}

/**
 * The 2.3 fragment with this harness's paths: the scripts in the work dir, and sieve_pipe_socket_dir as the
 * path from Dovecot's base_dir to the socket's dir (Pigeonhole always joins the two). The harness's dovecot.conf
 * has no namespace of its own, so Junk and Trash get their special-use flags here, as Debian's 15-mailboxes.conf
 * gives them.
 */
function renderFragment(): string {
  const baseDir = path.join(HARNESS_DIR, 'run', 'dovecot');
  const fragment = readFileSync(path.join(SNIPPETS, 'dovecot-2.3-postwarden.conf'), 'utf8')
    .replaceAll('/etc/dovecot/sieve/', `${sieveDir}/`)
    .replace(/^(\s*sieve_pipe_socket_dir = ).*$/m, `$1${path.relative(baseDir, work)}`);
  assert.match(
    fragment,
    new RegExp(`sieve_pipe_socket_dir = \\.\\./\\.\\./\\.\\./${path.basename(work)}$`, 'm'),
  );
  return `${fragment}
namespace inbox {
  inbox = yes
  mailbox Junk {
    special_use = \\Junk
  }
  mailbox Trash {
    special_use = \\Trash
    auto = create
  }
  mailbox Papierkorb {
    special_use = \\Trash
    auto = create
  }
}
`;
}

function config(): string {
  return `hostname: mx.example.test
local_domains: [example.test]
local_networks: [127.0.0.1/32]
store: { driver: sqlite, path: ${path.join(work, 'state.db')} }
policy:
  listen: 127.0.0.1:21007
  checks: [relay]
filter:
  enabled: true
  listen: ${FILTER}
  reinject: 127.0.0.1:${PORTS.REINJECT_PORT}
  spool_dir: ${path.join(work, 'spool')}
  scanners: [loop, rules, bayes]
  rules:
    custom:
      - symbol: LEARN_TEST_JACKPOT
        target: header:Subject
        pattern: /casino jackpot/i
        weight: 10
        description: the test's spam
  bayes: { autolearn: { enabled: false } }
  quarantine: { dir: ${path.join(work, 'quarantine')} }
http: { listen: ${HTTP}, token_file: ${path.join(work, 'admin.token')} }
learn: { socket: ${socket}, socket_mode: '0660', socket_group: vmail }
`;
}

let tags = 0;
const newTag = () => `learn-${process.pid}-${++tags}`;

async function send(tag: string, subject: string): Promise<void> {
  const file = path.join(work, `${tag}.eml`);
  writeFileSync(
    file,
    [
      'From: Sender <sender@example.net>',
      'To: alice@example.test',
      `Subject: ${subject} ${tag}`,
      `Message-ID: <${tag}@example.net>`,
      'Date: Mon, 23 Nov 2026 01:00:00 +0000',
      `X-Pw-Test: ${tag}`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
      `A message for the learning test, ${tag}.`,
      '',
    ].join('\r\n'),
  );
  const result = await h().swaks([
    '--from',
    'sender@example.net',
    '--to',
    'alice@example.test',
    '--data',
    `@${file}`,
  ]);
  assert.equal(result.code, 0, result.transcript);
}

/** The messages tagged `tag` in one of alice's Maildir folders ('' is INBOX). */
function inFolder(folder: string, tag: string): string[] {
  const root = path.join(h().dir, 'mail/example.test/alice/Maildir', folder === '' ? '' : `.${folder}`);
  return ['new', 'cur']
    .map((sub) => path.join(root, sub))
    .filter((dir) => existsSync(dir))
    .flatMap((dir) => readdirSync(dir).map((name) => readFileSync(path.join(dir, name), 'utf8')))
    .filter(tagged(tag));
}

async function waitInFolder(folder: string, tag: string, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [copy] = inFolder(folder, tag);
    if (copy) return copy;
    if (Date.now() > deadline) {
      throw new Error(
        `${tag} not in ${folder || 'INBOX'}: ${h().postfixLog().slice(-2000)}\n${pw.log().slice(-2000)}`,
      );
    }
    await sleep(100);
  }
}

const reports = (cls: string) => reportsOf(pw, cls);
const learned = (cls: string, count: number) => learnedOf(pw, cls, count);
const move = (tag: string, from: string, to: string) => moveTagged(client(), tag, from, to);

before(async () => {
  mkdirSync(sieveDir, { mode: 0o755 });
  for (const name of readdirSync(path.join(SNIPPETS, 'sieve'))) {
    writeFileSync(path.join(sieveDir, name), readFileSync(path.join(SNIPPETS, 'sieve', name)));
  }
  const include = path.join(work, 'dovecot-postwarden.conf');
  writeFileSync(include, renderFragment());
  harness = await startHarness({
    policy: 'off',
    dovecotInclude: include,
    env: {
      HARNESS_DIR,
      ...PORTS,
      HARNESS_FILTER: `scan:[${FILTER.replace(':', ']:')}`,
    },
  });
  // Global scripts are precompiled, with the same config (so the same extensions) Dovecot runs.
  const dovecotConf = path.join(h().dir, 'dovecot', 'dovecot.conf');
  for (const name of readdirSync(sieveDir).filter((n) => n.endsWith('.sieve'))) {
    await run('sievec', ['-c', dovecotConf, path.join(sieveDir, name)]);
    assert.ok(existsSync(path.join(sieveDir, name.replace(/\.sieve$/, '.svbin'))), `sievec ${name}`);
  }
  writeFileSync(path.join(work, 'admin.token'), `${TOKEN}\n`, { mode: 0o600 });
  await pw.start(config());
  imap = new ImapFlow({
    host: '127.0.0.1',
    port: Number(PORTS.IMAP_PORT),
    secure: false,
    auth: { user: 'alice@example.test', pass: 'alice-secret' },
    logger: false,
  });
  await imap.connect();
});

after(async () => {
  await imap?.logout().catch(() => undefined);
  await pw.stop();
  await harness?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('learning from users moving mail in Dovecot', () => {
  const spam = newTag();

  it('tags spam, files it into Junk at delivery, and reports nothing then', async () => {
    await send(spam, 'Casino jackpot waiting');
    const copy = await waitInFolder('Junk', spam);
    assert.match(copy, /^X-Spam-Flag: YES$/m);
    assert.equal(inFolder('', spam).length, 0, 'also in INBOX');
    assert.equal(await reports('spam'), 0);
    assert.equal(await reports('ham'), 0);
  });

  it('moving it out of Junk to INBOX trains it as ham', async () => {
    await move(spam, 'Junk', 'INBOX');
    assert.equal(await reports('ham'), 1, pw.log().slice(-2000));
    assert.equal(await learned('ham', 1), 1);
    assert.equal(await reports('spam'), 0);
  });

  // Papierkorb: a trash the script knows by its \Trash flag only, not by name.
  for (const trash of ['Trash', 'Papierkorb']) {
    it(`moving spam from Junk to ${trash} trains nothing`, async () => {
      const trashed = newTag();
      await send(trashed, 'Casino jackpot again');
      await waitInFolder('Junk', trashed);
      await move(trashed, 'Junk', trash);
      await waitInFolder(trash, trashed);
      assert.equal(await reports('ham'), 1);
      assert.equal(await reports('spam'), 0);
    });
  }

  it('moving a message from INBOX into Junk trains it as spam', async () => {
    const missed = newTag();
    await send(missed, 'Quarterly figures');
    const copy = await waitInFolder('', missed);
    assert.doesNotMatch(copy, /^X-Spam-Flag: YES$/m);
    await move(missed, 'INBOX', 'Junk');
    assert.equal(await reports('spam'), 1);
    assert.equal(await learned('spam', 1), 1);
    assert.equal(await reports('ham'), 1, 'the Trash move reported nothing since');
    const errors = readFileSync(path.join(h().dir, 'log', 'dovecot.log'), 'utf8')
      .split('\n')
      .filter((line) => /sieve|pipe|program/i.test(line) && /error|warning/i.test(line));
    assert.deepEqual(errors, []);
  });

  it('the HTTP variant (postwarden-learn-http.sh, for a Dovecot on another host) reports through the API', async () => {
    const headerFile = path.join(work, 'learn.header');
    writeFileSync(headerFile, `Authorization: Bearer ${TOKEN}\n`, { mode: 0o600 });
    const tag = newTag();
    const message = path.join(work, `${tag}.eml`);
    writeFileSync(
      message,
      `Subject: remote ${tag}\r\nMessage-ID: <${tag}@example.net>\r\n\r\nMoved on another host.\r\n`,
    );
    const script = path.join(SNIPPETS, 'postwarden-learn-http.sh');
    const { stdout } = await run('sh', ['-c', `exec sh "$0" ham < "$1"`, script, message], {
      env: { ...process.env, POSTWARDEN_URL: `http://${HTTP}`, TOKEN_HEADER_FILE: headerFile },
    });
    assert.match(stdout, /"result":"queued"/);
    assert.equal(await learned('ham', 2), 2);
    await assert.rejects(run('sh', [script, 'eggs']), /usage: postwarden-learn spam\|ham/);
  });
});
