/**
 * The content filter before the queue (`filter.mode: before_queue`): Postfix's public smtpd hands the SMTP
 * session to postwarden through `smtpd_proxy_filter` (SMTPD_PROXY_README), so the sending client is still
 * connected when the verdict comes. A hard verdict (a zip with an .exe inside) answers 550 5.7.1 at the end of
 * DATA — to the client, nothing queued, nothing quarantined, nothing bounced; a clean message is re-injected and
 * delivered with the filter's header fields.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { withAttachment } from '../harness/mail.js';
import { type Harness, startHarness } from '../harness/harness.js';
import { Postwarden, sleep } from '../harness/postwarden.js';
import { zip } from '../harness/zip.js';

const FILTER = '127.0.0.1:20471';
const REINJECT_PORT = 20472;
const HTTP = '127.0.0.1:20473';
const work = mkdtempSync(path.join(os.tmpdir(), 'pw-proxy-it-'));
const quarantineDir = path.join(work, 'quarantine');
const pw = new Postwarden('proxy', work, HTTP);
let harness: Harness | undefined;

function h(): Harness {
  if (!harness) throw new Error('harness not started');
  return harness;
}

const config = `hostname: mx.example.test
local_domains: [example.test]
local_networks: [127.0.0.1/32]
policy:
  listen: 127.0.0.1:20470
  checks: [relay]
filter:
  enabled: true
  mode: before_queue
  listen: ${FILTER}
  reinject: 127.0.0.1:${REINJECT_PORT}
  spool_dir: ${path.join(work, 'spool')}
  scanners: [loop, sanity, banned]
  quarantine: { dir: ${quarantineDir} }
http:
  listen: ${HTTP}
`;

/** A plain message, tagged. */
function plain(tag: string): string {
  return [
    'From: sender@example.net',
    'To: alice@example.test',
    `Subject: proxy ${tag}`,
    `X-Pw-Test: ${tag}`,
    '',
    'Hello.',
    '',
  ].join('\r\n');
}

async function send(raw: string) {
  const file = path.join(work, `m-${Date.now()}-${Math.random()}.eml`);
  writeFileSync(file, raw);
  return h().swaks(['--from', 'sender@example.net', '--to', 'alice@example.test', '--data', `@${file}`]);
}

before(async () => {
  harness = await startHarness({
    policy: 'off',
    env: {
      HARNESS_DIR: '/tmp/pw-fpx',
      SMTP_PORT: '2575',
      SINK_PORT: '2576',
      LMTP_PORT: '2474',
      IMAP_PORT: '1193',
      DOVECOT_AUTH_PORT: '12395',
      HARNESS_FILTER: `proxy:${FILTER}`,
      REINJECT_PORT: String(REINJECT_PORT),
    },
  });
  await pw.start(config);
});

after(async () => {
  await pw.stop();
  await harness?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('the content filter before the queue', () => {
  it('refuses a hard verdict to the sending client with 550 5.7.1, holding nothing', async () => {
    const tag = `proxy-${process.pid}-1`;
    const archive = zip([{ name: 'invoice.pdf.exe', data: Buffer.from('MZ') }]);
    const result = await send(withAttachment(tag, 'invoice.zip', archive, 'application/zip'));
    assert.notEqual(result.code, 0, result.transcript);
    assert.match(result.lastReply, /^550 5\.7\.1 Message content rejected \(BANNED_IN_ARCHIVE\)/);
    await sleep(500);
    assert.equal(h().maildirCount('alice'), 0);
    assert.ok(!existsSync(quarantineDir) || readdirSync(quarantineDir).length === 0, 'nothing quarantined');
  });

  it('delivers a clean message with the filter’s header fields', async () => {
    const before = h().maildirCount('alice');
    const result = await send(plain(`proxy-${process.pid}-2`));
    assert.equal(result.code, 0, result.transcript);
    assert.match(result.lastReply, /^250 2\.0\.0 Filtered and re-injected/);
    const deadline = Date.now() + 10_000;
    while (h().maildirCount('alice') === before && Date.now() < deadline) await sleep(100);
    assert.equal(h().maildirCount('alice'), before + 1);
  });
});
