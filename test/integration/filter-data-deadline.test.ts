/**
 * filter.data_timeout_s against the built bin (`serve`) on free loopback ports, with a recording re-injection
 * target (test/harness/smtp.ts) and raw SMTP clients that trickle their DATA: a byte a second, well inside
 * filter.idle_timeout_s (3 s here), so only the DATA deadline (10 s, the smallest the schema allows) can end them.
 *
 * Two tricklers and a slow but timely client fill filter.max_connections (3): a fourth connection meanwhile gets
 * 421, the timely one gets 250. At the deadline each trickler gets `451 4.4.2` and its connection closes; the
 * slots are free again, so a normal message, then a large one at full speed, are delivered. Nothing of the
 * trickled messages reaches the re-injection target or stays in the spool; each is one decision line with
 * PW-F008 and one count in postwarden_errors_total.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Postwarden, sleep } from '../harness/postwarden.js';
import { RawSmtpClient, type RecordingSmtp, sendMessage, startRecordingSmtp } from '../harness/smtp.js';

const HOST = '127.0.0.1';
const DATA_TIMEOUT_S = 10;
const IDLE_TIMEOUT_S = 3;
const MAX_CONNECTIONS = 3;
const MIB = 1024 * 1024;

/** A loopback port free now (the kernel's choice; closed again at once for postwarden to take). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const work = mkdtempSync(path.join(os.tmpdir(), 'pw-h-trickle-'));
const spoolDir = path.join(work, 'spool');
let target: RecordingSmtp | undefined;
let filterPort = 0;
let pw: Postwarden | undefined;

function running(): { pw: Postwarden; target: RecordingSmtp } {
  if (!pw || !target) throw new Error('not started');
  return { pw, target };
}

before(async () => {
  target = await startRecordingSmtp();
  const [policyPort, filter, httpPort] = [await freePort(), await freePort(), await freePort()];
  filterPort = filter;
  pw = new Postwarden('data-deadline', work, `${HOST}:${httpPort}`);
  await pw.start(`hostname: mx.example.test
local_domains: [example.test]
local_networks: [127.0.0.1/32]
policy:
  listen: ${HOST}:${policyPort}
  checks: [relay]
filter:
  enabled: true
  listen: ${HOST}:${filterPort}
  reinject: ${HOST}:${target.port}
  spool_dir: ${spoolDir}
  max_connections: ${MAX_CONNECTIONS}
  idle_timeout_s: ${IDLE_TIMEOUT_S}
  data_timeout_s: ${DATA_TIMEOUT_S}
  scanners: [loop, sanity]
  quarantine: { dir: ${path.join(work, 'quarantine')} }
http:
  listen: ${HOST}:${httpPort}
`);
});

after(async () => {
  await pw?.stop();
  await target?.close();
  rmSync(work, { recursive: true, force: true });
});

const senderOf = (tag: string) => `${tag}-${process.pid}@example.net`;

function message(tag: string, body = 'Hello.\r\n'): string {
  return [
    'From: sender@example.net',
    'To: alice@example.test',
    `Subject: data deadline ${tag}`,
    `Message-ID: <${tag}-${process.pid}@example.net>`,
    'Date: Sun, 22 Nov 2026 12:00:00 +0000',
    '',
    body,
  ].join('\r\n');
}

/** A client that has had its 354 and sent the header section. */
async function inData(tag: string): Promise<RawSmtpClient> {
  const client = await RawSmtpClient.connect(HOST, filterPort);
  assert.equal((await client.reply()).code, 220);
  for (const command of [
    'EHLO client.example.net',
    `MAIL FROM:<${senderOf(tag)}>`,
    'RCPT TO:<alice@example.test>',
  ]) {
    assert.equal((await client.command(command)).code, 250, command);
  }
  assert.equal((await client.command('DATA')).code, 354);
  await client.write(message(tag, ''));
  return client;
}

/** Writes `bytes` one at a time, `everyMs` apart, until they are out or the connection is gone. */
async function trickle(client: RawSmtpClient, bytes: string, everyMs: number): Promise<void> {
  for (const byte of bytes) {
    if (client.socket.destroyed || !client.socket.writable) return;
    await sleep(everyMs);
    client.socket.write(byte);
  }
}

async function metric(name: string, labels = ''): Promise<number> {
  const text = await running().pw.metrics();
  const escaped = `${name}${labels}`.replace(/[{}"]/g, (c) => `\\${c}`);
  const match = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text);
  return match ? Number(match[1]) : 0;
}

const delivered = (tag: string) =>
  running().target.received.filter((m) => m.mailFrom.address === senderOf(tag));

describe('filter.data_timeout_s: a DATA that trickles past the deadline', () => {
  it('gets 451 4.4.2 and a closed connection at the deadline; the slots are free again; nothing is delivered', async () => {
    const tricklers = ['trickle-a', 'trickle-b'];
    const started = performance.now();
    const clients = await Promise.all(tricklers.map((tag) => inData(tag)));
    // A byte a second, far inside idle_timeout_s: without the deadline they would go on for an hour.
    const dribbling = clients.map((client) => trickle(client, 'x'.repeat(3600), 1000));
    const answers = clients.map((client) =>
      client
        .reply((DATA_TIMEOUT_S + 10) * 1000)
        .then((reply) => ({ reply, ms: performance.now() - started })),
    );

    // A slow client that finishes in time: its message is taken (the deadline cuts only what is late).
    const timely = await inData('timely');
    const timelyDone = trickle(timely, 'Slow but in time.\r\n', 200).then(async () => {
      await timely.write('.\r\n');
      return timely.reply(30_000);
    });

    // All three slots are held now: a fourth connection is refused.
    const extra = await RawSmtpClient.connect(HOST, filterPort);
    const refused = await extra.reply();
    assert.equal(refused.code, 421, refused.text);
    await extra.destroy();

    const timelyReply = await timelyDone;
    assert.equal(timelyReply.code, 250, timelyReply.text);
    await timely.quit();
    assert.equal(delivered('timely').length, 1);

    for (const [i, answer] of (await Promise.all(answers)).entries()) {
      assert.equal(answer.reply.code, 451, answer.reply.text);
      assert.match(answer.reply.text, /^451 4\.4\.2 /, answer.reply.text);
      // Not earlier than the deadline, and not much later (the idle timeout never fired: a byte came each second).
      assert.ok(answer.ms >= DATA_TIMEOUT_S * 1000 - 500, `${tricklers[i]} answered after ${answer.ms} ms`);
      assert.ok(answer.ms < (DATA_TIMEOUT_S + 5) * 1000, `${tricklers[i]} answered after ${answer.ms} ms`);
    }
    // The server closes each connection after its answer.
    await Promise.race([
      Promise.all(clients.map((c) => c.closed)),
      sleep(5000).then(() => assert.fail('a trickling connection was not closed after its 451')),
    ]);
    await Promise.all(dribbling);

    // The slots are free: a normal message goes through at once.
    const normal = await sendMessage(HOST, filterPort, {
      from: senderOf('after'),
      to: ['alice@example.test'],
      message: message('after'),
    });
    assert.equal(normal.reply.code, 250, normal.reply.text);
    assert.equal(delivered('after').length, 1);

    // Nothing of the trickled messages went on or stayed behind, and each was logged and counted once.
    for (const tag of tricklers) assert.equal(delivered(tag).length, 0, tag);
    assert.deepEqual(readdirSync(spoolDir), []);
    for (const tag of tricklers) {
      const lines = await running().pw.events('filter.decision', (l) => l['sender'] === senderOf(tag));
      assert.equal(lines.length, 1, tag);
      assert.equal(lines[0]?.['code'], 'PW-F008');
      assert.match(
        String((lines[0]?.['failure'] as { reason?: string } | undefined)?.reason),
        /data_timeout_s/,
      );
    }
    assert.equal(await metric('postwarden_errors_total', '{code="PW-F008"}'), 2);
    assert.equal(await metric('postwarden_filter_messages_in_flight'), 0);
    assert.equal(await metric('postwarden_filter_connections'), 0);
  });

  it('a large message at full speed is not affected', async () => {
    const timedOutBefore = await metric('postwarden_errors_total', '{code="PW-F008"}');
    const body = randomBytes(12 * MIB)
      .toString('base64')
      .replace(/.{76}/g, '$&\r\n');
    const sent = message('large', `${body}\r\n`);
    const result = await sendMessage(HOST, filterPort, {
      from: senderOf('large'),
      to: ['alice@example.test'],
      message: sent,
      timeoutMs: 60_000,
    });
    assert.equal(result.reply.code, 250, result.reply.text);
    const [got] = delivered('large');
    assert.ok(got);
    const digest = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
    // The target has the message with the filter's header fields in front: its own bytes are unchanged.
    assert.equal(digest(got.raw.subarray(got.raw.length - Buffer.byteLength(sent))), digest(sent));
    assert.equal(await metric('postwarden_errors_total', '{code="PW-F008"}'), timedOutBefore);
  });
});
