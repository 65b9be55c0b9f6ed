/**
 * The content filter through a real Postfix (content_filter → postwarden on 127.0.0.1:20461 → Postfix's
 * re-injection smtpd on 20462 → Dovecot LMTP → Maildir), with the built bin as a child process:
 *
 * - a clean message arrives with the filter's header fields in front, and its DKIM signature (ed25519, signed
 *   here with mailauth, the key published by a real dnsmasq) still verifies after delivery;
 * - a looping message (31 Received: fields), a zip with an .exe inside and an EICAR attachment (a real clamd
 *   with its own signature database) never reach the Maildir and sit in quarantine, with Postfix's queue id in
 *   the entry; the recipient of the EICAR message gets a notice, and `postwarden quarantine release` delivers it;
 * - no loss: with clamd stopped, with the filter stopped, with the re-injection port closed, and with the filter
 *   killed (SIGKILL) in the middle of DATA, every message sent is delivered exactly once after recovery (queue
 *   flushed), counted.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { type ClamdServer, startClamd } from '../harness/clamd.js';
import { type DnsServer, startDns } from '../harness/dns.js';
import { type Harness, startHarness, tagged } from '../harness/harness.js';
import { BIN, Postwarden, sleep } from '../harness/postwarden.js';
import { withAttachment } from '../harness/mail.js';
import { zip } from '../harness/zip.js';

const run = promisify(execFile);
const FILTER = '127.0.0.1:20461';
const REINJECT_PORT = 20462;
const HTTP = '127.0.0.1:20463';
const work = mkdtempSync(path.join(os.tmpdir(), 'pw-filter-it-'));
const spoolDir = path.join(work, 'spool');
const quarantineDir = path.join(work, 'quarantine');

let harness: Harness | undefined;
let dns: DnsServer | undefined;
let clamd: ClamdServer | undefined;
const pw = new Postwarden('filter', work, HTTP);

function h(): Harness {
  if (!harness) throw new Error('harness not started');
  return harness;
}

function config(reinjectPort = REINJECT_PORT): string {
  return `hostname: mx.example.test
dns:
  servers: ['${dns?.address ?? ''}']
local_domains: [example.test]
local_networks: [127.0.0.1/32]
policy:
  listen: 127.0.0.1:20460
  checks: [relay]
filter:
  enabled: true
  listen: ${FILTER}
  reinject: 127.0.0.1:${reinjectPort}
  spool_dir: ${spoolDir}
  scanners: [loop, sanity, banned, authentication, uribl, antivirus]
  uribl: { lists: [{ zone: uribl.test, name: testuribl, weight: 4 }] }
  antivirus: { socket: ${clamd?.socket ?? ''}, timeout_ms: 5000 }
  quarantine: { dir: ${quarantineDir} }
http:
  listen: ${HTTP}
`;
}

let tags = 0;
const newTag = () => `flt-${process.pid}-${++tags}`;

/** A message with a unique X-Pw-Test tag, CRLF line ends. */
function message(tag: string, extraHeaders: string[] = [], body = 'Hello.\r\n'): string {
  return [
    ...extraHeaders,
    'From: Sender <sender@example.net>',
    'To: alice@example.test',
    `Subject: filter test ${tag}`,
    `Message-ID: <${tag}@example.net>`,
    'Date: Sun, 22 Nov 2026 12:00:00 +0000',
    `X-Pw-Test: ${tag}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    body,
  ].join('\r\n');
}

async function sendRaw(raw: string, to = 'alice@example.test', from = 'sender@example.net'): Promise<string> {
  const file = path.join(work, `msg-${++tags}.eml`);
  writeFileSync(file, raw);
  const result = await h().swaks(['--from', from, '--to', to, '--data', `@${file}`]);
  assert.equal(result.code, 0, result.transcript);
  return result.lastReply;
}

/** Copies of the message tagged `tag` in alice's Maildir. */
const delivered = (tag: string): string[] => h().maildirMessages('alice').filter(tagged(tag));

/** Copies of the message tagged `tag` in alice's Maildir, waiting (bounded) until there are `count`. */
const waitDelivered = (tag: string, count = 1, timeoutMs = 15_000): Promise<string[]> =>
  h().waitForMessages('alice', tagged(tag), count, timeoutMs);

async function flushQueue(): Promise<void> {
  await run('postqueue', ['-c', h().postfixConfDir, '-f']);
}

async function queueSize(): Promise<number> {
  const { stdout } = await run('postqueue', ['-c', h().postfixConfDir, '-j']);
  return stdout.split('\n').filter((line) => line.trim().startsWith('{')).length;
}

async function quarantined(tag: string): Promise<Record<string, unknown> | undefined> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (existsSync(quarantineDir)) {
      for (const name of readdirSync(quarantineDir).filter((n) => n.endsWith('.json'))) {
        const entry = JSON.parse(readFileSync(path.join(quarantineDir, name), 'utf8')) as Record<
          string,
          unknown
        >;
        if (String(entry['subject']).includes(tag)) return entry;
      }
    }
    if (Date.now() > deadline) return undefined;
    await sleep(100);
  }
}

// DKIM: an ed25519 key whose public half dnsmasq publishes at s1._domainkey.example.net.
const keys = generateKeyPairSync('ed25519');
const publicRaw = keys.publicKey.export({ format: 'der', type: 'spki' }).subarray(-32).toString('base64');

before(async () => {
  clamd = await startClamd({ streamMaxLength: '20M' }); // the SIGKILL test sends 5 MB
  dns = await startDns({
    txt: {
      's1._domainkey.example.net': [`v=DKIM1; k=ed25519; p=${publicRaw}`],
      '_dmarc.example.net': ['v=DMARC1; p=reject'],
    },
    // A URI list: its RFC 5782 test point, and one listed shop domain.
    a: { 'test.uribl.test': ['127.0.0.2'], 'spammy-shop.example.uribl.test': ['127.0.0.2'] },
  });
  harness = await startHarness({
    policy: 'off',
    env: {
      HARNESS_DIR: '/tmp/pw-flt',
      SMTP_PORT: '2565',
      SINK_PORT: '2566',
      LMTP_PORT: '2464',
      IMAP_PORT: '1183',
      DOVECOT_AUTH_PORT: '12385',
      HARNESS_FILTER: `scan:[${FILTER.replace(':', ']:')}`,
      REINJECT_PORT: String(REINJECT_PORT),
    },
  });
  await pw.start(config());
});

after(async () => {
  await pw.stop();
  await harness?.stop();
  await dns?.stop();
  await clamd?.destroy();
  rmSync(work, { recursive: true, force: true });
});

describe('the content filter through Postfix', () => {
  it('delivers a clean message with its headers in front, forged copies of them gone, and its DKIM signature intact', async () => {
    const tag = newTag();
    const forged = [
      'X-Spam-Flag: NO',
      'X-Postwarden-Status: clean; score=-99.0;',
      ' by a sender', // folded
      'Authentication-Results: (forged) MX.example.test; dmarc=pass header.from=bank.example',
      'Authentication-Results: relay.example.net; spf=pass smtp.mailfrom=sender@example.net',
    ];
    const unsigned = message(tag, forged, 'A signed message.\r\nWith two lines.\r\n');
    const key = {
      signingDomain: 'example.net',
      selector: 's1',
      privateKey: keys.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      algorithm: 'ed25519-sha256',
      canonicalization: 'relaxed/relaxed',
    };
    // mailauth signs with `signatureData` (its typings only know the single-key form, which signs nothing).
    const { signatures } = await dkimSign(unsigned, { signatureData: [key] } as unknown as typeof key);
    assert.match(signatures, /^DKIM-Signature: /);
    await sendRaw(signatures + unsigned);
    const [copy, ...more] = await waitDelivered(tag);
    assert.ok(copy, `not delivered: ${h().postfixLog().slice(-2000)}`);
    assert.equal(more.length, 0);
    assert.match(
      copy,
      /^X-Postwarden-Status: clean; score=-0\.7; symbols=DKIM_VALID,DMARC_PASS; by mx\.example\.test; /m,
    );
    assert.equal(copy.match(/^X-Postwarden-Status:/gm)?.length, 1, copy);
    assert.doesNotMatch(copy, /^X-Spam-Flag:|by a sender|bank\.example/m);
    // Ours, DKIM and DMARC passing; another host's Authentication-Results stays.
    assert.match(
      copy,
      /^Authentication-Results: mx\.example\.test;\r?\n\tdkim=pass header\.d=example\.net header\.s=s1 header\.b=\S+;\r?\n\tspf=none smtp\.mailfrom=\S+;\r?\n\tdmarc=pass \(p=reject\) header\.from=example\.net\r?$/m,
    );
    assert.match(copy, /^Authentication-Results: relay\.example\.net; spf=pass/m);
    assert.match(copy, /^X-Virus-Scanned: clamav via postwarden on mx\.example\.test$/m);
    const resolver = new Resolver();
    resolver.setServers([dns?.address ?? '']);
    const verified = (await dkimVerify(copy, {
      resolver: (name: string, type: string) => resolver.resolve(name, type) as Promise<string[][]>,
    })) as { results: { status: { result: string } }[] };
    assert.equal(verified.results[0]?.status.result, 'pass', JSON.stringify(verified.results));
    const [line] = await pw.events('filter.decision', (l) => String(l['reinjected'] ?? '').length > 0);
    assert.match(String(line?.['queue_id']), /^[0-9A-F]{6,}$/);
  });

  it('scores a message whose URL leads to a domain a URI list lists', async () => {
    const tag = newTag();
    await sendRaw(
      message(tag, [], 'Buy now: https://www.spammy-shop.example/deal and https://fine.example/\r\n'),
    );
    const [copy] = await waitDelivered(tag);
    assert.ok(copy, `not delivered: ${h().postfixLog().slice(-2000)}`);
    // 4 for the listed domain, 6 because the message is unsigned and example.net publishes DMARC p=reject.
    assert.match(copy, /^X-Postwarden-Status: clean; score=10\.0; symbols=DMARC_REJECT,URIBL_LISTED; /m);
    const [line] = await pw.events('filter.decision', (l) => JSON.stringify(l).includes('URIBL_LISTED'));
    assert.match(JSON.stringify(line), /listed by testuribl: spammy-shop\.example \(127\.0\.0\.2\)/);
  });

  it('holds a looping message in quarantine, never delivered', async () => {
    const tag = newTag();
    const hops = Array.from(
      { length: 31 },
      (_, i) =>
        `Received: from hop${i}.example.net by hop${i + 1}.example.net; Sun, 22 Nov 2026 11:00:00 +0000`,
    );
    await sendRaw(message(tag, hops));
    const entry = await quarantined(tag);
    assert.equal(entry?.['symbol'], 'MAIL_LOOP');
    assert.match(String(entry?.['queueId']), /^[0-9A-F]{6,}$/);
    assert.equal(delivered(tag).length, 0);
  });

  it('holds a zip with an .exe inside in quarantine', async () => {
    const tag = newTag();
    const archive = zip([{ name: 'invoice.pdf.exe', data: Buffer.from('MZ not really a program') }]);
    await sendRaw(withAttachment(tag, 'invoice.zip', archive, 'application/zip'));
    const entry = await quarantined(tag);
    assert.equal(entry?.['symbol'], 'BANNED_IN_ARCHIVE');
    assert.equal(delivered(tag).length, 0);
  });
});

describe('viruses', () => {
  it('holds an EICAR attachment, tells the recipient, and releases it on the admin’s word', async () => {
    const tag = newTag();
    await sendRaw(withAttachment(tag, 'readme.txt', clamd?.eicar ?? Buffer.alloc(0)));
    const entry = await quarantined(tag);
    assert.equal(entry?.['symbol'], 'VIRUS_FOUND');
    assert.equal(entry?.['releasableBy'], 'admin');
    assert.equal(delivered(tag).length, 0);
    const id = String(entry?.['id']);
    const notice = await waitForNotice(id);
    assert.match(notice, /^Auto-Submitted: auto-generated$/m);
    assert.match(notice, /Only the postmaster can release it/);

    const released = await run(process.execPath, [
      BIN,
      'quarantine',
      'release',
      id,
      '--config',
      pw.configFile,
    ]);
    assert.match(released.stdout, new RegExp(`^released ${id} to alice@example.test`));
    const [copy] = await waitDelivered(tag);
    assert.ok(copy, 'released but not delivered');
    assert.match(copy, new RegExp(`^X-Postwarden-Released: ${id} by the admin`, 'm'));
    const listed = await run(process.execPath, [
      BIN,
      'quarantine',
      'list',
      '--json',
      '--config',
      pw.configFile,
    ]);
    assert.ok(!listed.stdout.includes(id), 'a released message leaves the quarantine');
  });
});

describe('outbound', () => {
  it('holds a virus a local user sends out, and tells the sender, not the outside recipient', async () => {
    const tag = newTag();
    // From 127.0.0.1 (mynetworks): a local client relaying to the outside, through the same content_filter.
    await sendRaw(
      withAttachment(tag, 'readme.txt', clamd?.eicar ?? Buffer.alloc(0)),
      'partner@remote.test',
      'alice@example.test',
    );
    const entry = await quarantined(tag);
    assert.equal(entry?.['symbol'], 'VIRUS_FOUND');
    assert.deepEqual(entry?.['recipients'], ['partner@remote.test']);
    const notice = await waitForNotice(String(entry?.['id']));
    assert.match(notice, /A message you sent was held/);
    assert.match(notice, /To: +partner@remote\.test/);
    assert.ok(
      !h()
        .sinkFiles()
        .some((file) => readFileSync(file, 'utf8').includes(tag)),
      'reached the outside',
    );
  });
});

/** The notice about quarantine entry `id` in alice's Maildir, quoted-printable soft line breaks joined. */
async function waitForNotice(id: string): Promise<string> {
  const notice = await h().waitForMessage(
    'alice',
    (text) => text.toLowerCase().includes(`x-postwarden-quarantine-id: ${id}`),
    10_000,
  );
  return notice.replace(/=\r?\n/g, '');
}

describe('no mail is lost', () => {
  it('clamd stopped: 451 and Postfix keeps the messages; once clamd is back each is delivered once', async () => {
    await clamd?.stop();
    const sent = [newTag(), newTag()];
    for (const tag of sent) await sendRaw(message(tag));
    const deferred = await pw.events(
      'filter.decision',
      (l) => String(l['reply']).startsWith('451 4.3.0'),
      2,
      15_000,
    );
    assert.ok(deferred.length >= 2, pw.log().slice(-2000));
    for (const tag of sent) assert.equal(delivered(tag).length, 0, 'delivered unscanned');
    await clamd?.start();
    await flushQueue();
    for (const tag of sent) assert.equal((await waitDelivered(tag)).length, 1, tag);
    await sleep(1000);
    for (const tag of sent) assert.equal(delivered(tag).length, 1, `${tag} delivered more than once`);
  });

  it('filter stopped: Postfix keeps the messages; after a restart each is delivered once', async () => {
    await pw.stop();
    const sent = [newTag(), newTag(), newTag()];
    for (const tag of sent) await sendRaw(message(tag));
    await sleep(1000);
    for (const tag of sent) assert.equal(delivered(tag).length, 0);
    assert.ok((await queueSize()) >= 3);
    await pw.start(config());
    await flushQueue();
    for (const tag of sent) assert.equal((await waitDelivered(tag)).length, 1, tag);
    await sleep(1000);
    for (const tag of sent) assert.equal(delivered(tag).length, 1, `${tag} delivered more than once`);
  });

  it('re-injection port closed: 451, then each is delivered once when it is back', async () => {
    await pw.stop();
    await pw.start(config(REINJECT_PORT + 7)); // nothing listens there
    const sent = [newTag(), newTag()];
    for (const tag of sent) await sendRaw(message(tag));
    const failures = await pw.events(
      'filter.decision',
      (l) => String(l['reply']).startsWith('451 4.4.0'),
      2,
      15_000,
    );
    assert.ok(failures.length >= 2, pw.log().slice(-2000));
    await pw.stop();
    await pw.start(config());
    await flushQueue();
    for (const tag of sent) assert.equal((await waitDelivered(tag)).length, 1, tag);
    await sleep(1000);
    for (const tag of sent) assert.equal(delivered(tag).length, 1, `${tag} delivered more than once`);
  });

  it('filter killed (SIGKILL) in the middle of DATA: delivered once after the restart', async () => {
    const tag = newTag();
    // Large enough that the transfer to the filter takes a while; the kill comes when its spool file appears.
    const body = `${'x'.repeat(998)}\r\n`.repeat(5_000);
    const sending = sendRaw(message(tag, [], body));
    const deadline = Date.now() + 20_000;
    while (
      Date.now() < deadline &&
      !(existsSync(spoolDir) && readdirSync(spoolDir).some((n) => n.endsWith('.eml')))
    ) {
      await sleep(2);
    }
    await pw.kill();
    await sending;
    assert.equal(delivered(tag).length, 0, 'delivered before the filter was back');
    await pw.start(config());
    await flushQueue();
    assert.equal((await waitDelivered(tag, 1, 30_000)).length, 1);
    await sleep(1000);
    assert.equal(delivered(tag).length, 1, 'delivered more than once');
    assert.ok(
      pw.lines().some((l) => l['code'] === 'PW-F005'),
      'the leftover spool file was swept',
    );
  });
});
