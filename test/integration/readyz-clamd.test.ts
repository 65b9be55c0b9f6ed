/**
 * `/readyz` knows clamd: the built bin's `serve` with the content filter and the antivirus scanner, against a real
 * clamd (test/harness/clamd.ts), every port a free one on loopback.
 *
 * - PINGs (filter.antivirus.ping_interval_s: 1): ready with clamd up and `postwarden_clamd_up 1`; clamd stopped,
 *   an idle filter turns 503 naming clamd and its socket within the interval, PW-F009 logged once however many
 *   PINGs fail, the gauge 0; clamd started again, 200, PW-F010; SIGTERM still exits 0 at once (the timer stops).
 * - Scans (ping_interval_s: 3600, so no PING comes in between): clamd stopped, /readyz stays 200 until a message
 *   is deferred (451), then 503; clamd started, the next message is scanned and delivered, and /readyz is 200.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startClamd, type ClamdServer } from '../harness/clamd.js';
import { Postwarden, type Readyz } from '../harness/postwarden.js';
import { freeLoopbackPort } from '../harness/redis.js';
import { sendMessage, startRecordingSmtp, type RecordingSmtp } from '../harness/smtp.js';

const work = mkdtempSync('/tmp/pw-h-readyz-');
let clamd: ClamdServer;
let smtp: RecordingSmtp;

before(async () => {
  [clamd, smtp] = await Promise.all([startClamd(), startRecordingSmtp()]);
});

after(async () => {
  await Promise.allSettled([clamd?.destroy(), smtp?.close()]);
  rmSync(work, { recursive: true, force: true });
});

/** A postwarden with the filter and the antivirus scanner on free ports; `filter` is its host:port. */
async function instance(
  name: string,
  pingIntervalS: number,
): Promise<{ pw: Postwarden; filterPort: number }> {
  const [http, policy, filterPort] = [
    await freeLoopbackPort(),
    await freeLoopbackPort(),
    await freeLoopbackPort(),
  ];
  const pw = new Postwarden(name, work, `127.0.0.1:${http}`);
  await pw.start(`local_domains: [example.org]
hostname: mx1.example.org
policy: { listen: 127.0.0.1:${policy}, checks: [relay] }
filter:
  enabled: true
  listen: 127.0.0.1:${filterPort}
  reinject: 127.0.0.1:${smtp.port}
  spool_dir: ${path.join(work, `spool-${name}`)}
  scanners: [antivirus]
  antivirus: { socket: ${clamd.socket}, timeout_ms: 5000, ping_interval_s: ${pingIntervalS} }
  quarantine: { dir: ${path.join(work, `quarantine-${name}`)} }
http: { listen: 127.0.0.1:${http} }
`);
  return { pw, filterPort };
}

function clamdItem(body: Readyz) {
  return body.checks.find((c) => c.name === 'clamd');
}

const codes = (pw: Postwarden, code: string) => pw.lines().filter((l) => l['code'] === code);

test('PINGs: /readyz 200 with clamd up, 503 naming clamd once it is stopped, 200 after it restarts', async () => {
  const { pw } = await instance('ping', 1);
  try {
    const up = await pw.readyzUntil('ready', (r) => r.status === 200);
    assert.deepEqual(clamdItem(up.body), { name: 'clamd', ready: true });
    assert.match(await pw.metrics(), /^postwarden_clamd_up 1$/m);

    await clamd.stop();
    const stoppedAt = Date.now();
    const down = await pw.readyzUntil('503', (r) => r.status === 503, 5000);
    const waited = Date.now() - stoppedAt;
    assert.ok(waited < 3000, `noticed after ${waited} ms; the interval is 1 s`);
    assert.equal(down.body.status, 'not ready');
    const item = clamdItem(down.body);
    assert.equal(item?.ready, false);
    assert.match(item?.reason ?? '', new RegExp(`clamd at unix:${clamd.socket} is not reachable`));
    assert.match(await pw.metrics(), /^postwarden_clamd_up 0$/m);
    assert.match(await pw.metrics(), /^postwarden_errors_total\{code="PW-F009"\} 1$/m);
    // Several PINGs fail while it is down: one line says so.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const downLines = codes(pw, 'PW-F009');
    assert.equal(downLines.length, 1, JSON.stringify(downLines));
    assert.equal(downLines[0]?.['level'], 'error');
    assert.equal(downLines[0]?.['clamd'], `unix:${clamd.socket}`);

    await clamd.start();
    const back = await pw.readyzUntil('ready again', (r) => r.status === 200, 5000);
    assert.deepEqual(clamdItem(back.body), { name: 'clamd', ready: true });
    assert.equal(codes(pw, 'PW-F010').length, 1);
    assert.match(await pw.metrics(), /^postwarden_clamd_up 1$/m);

    const stopping = Date.now();
    assert.deepEqual(await pw.stop(), { code: 0, signal: null });
    assert.ok(Date.now() - stopping < 3000, 'stops at once');
  } finally {
    await pw.stop();
    if (clamd.pid === undefined) await clamd.start();
  }
});

test('scans: a message deferred because clamd is gone turns /readyz 503 before any PING; a scan brings it back', async () => {
  const { pw, filterPort } = await instance('scan', 3600);
  const send = (n: number) =>
    sendMessage('127.0.0.1', filterPort, {
      from: 'sender@example.net',
      to: ['bob@example.org'],
      message: `From: sender@example.net\r\nTo: bob@example.org\r\nSubject: readyz ${n}\r\n\r\nhello\r\n`,
    });
  try {
    await pw.readyzUntil('ready', (r) => r.status === 200);
    await clamd.stop();
    assert.equal((await pw.readyz()).status, 200, 'no PING for an hour: nothing noticed yet');

    const deferred = await send(1);
    assert.equal(deferred.reply.code, 451, deferred.reply.text);
    const down = await pw.readyz();
    assert.equal(down.status, 503);
    assert.match(clamdItem(down.body)?.reason ?? '', /is not reachable/);

    await clamd.start();
    const delivered = await send(2);
    assert.equal(delivered.reply.code, 250, delivered.reply.text);
    const back = await pw.readyz();
    assert.equal(back.status, 200, JSON.stringify(back.body));
    assert.deepEqual(
      [...codes(pw, 'PW-F009'), ...codes(pw, 'PW-F010')].map((l) => l['code']),
      ['PW-F009', 'PW-F010'],
    );
  } finally {
    await pw.stop();
    if (clamd.pid === undefined) await clamd.start();
  }
});
