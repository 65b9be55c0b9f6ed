/**
 * Regression (found by the chaos suite, test/chaos/): a re-injection smtpd that goes away in the middle of the
 * conversation must fail the re-injection at once (ReinjectError, so the filter answers 451), at every step.
 * Before the fix, a close while XFORWARD waited for its reply (a `postfix reload` that removed or restarted the
 * re-injection service did it) left the re-injection pending until filter.message_timeout_ms (300 s), with
 * Postfix's delivery held all along. A fake smtpd on 127.0.0.1:22398 answers like Postfix until the chosen
 * command, then closes (FIN) or resets (RST) instead of answering; the test's timeout is the bound.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { reinject, ReinjectError } from '../../src/filter/reinject.js';
import { onCrlfLines } from '../harness/lines.js';

const PORT = 22398;
let closeAt: { verb: string; how: 'fin' | 'rst' } | undefined;

const server = net.createServer((socket) => {
  socket.on('error', () => undefined);
  socket.write('220 fake ESMTP\r\n');
  let inData = false;
  onCrlfLines(socket, (line) => {
    const verb = inData ? (line === '.' ? 'DOT' : undefined) : line.split(/[ :]/)[0]?.toUpperCase();
    if (verb === undefined) return undefined;
    if (verb === closeAt?.verb) {
      if (closeAt.how === 'rst') socket.resetAndDestroy();
      else socket.end();
      return 'stop';
    }
    if (verb === 'EHLO') socket.write('250-fake\r\n250-XFORWARD NAME ADDR\r\n250 8BITMIME\r\n');
    else if (verb === 'DATA') {
      inData = true;
      socket.write('354 go ahead\r\n');
    } else if (verb === 'DOT') {
      inData = false;
      socket.write('250 2.0.0 Ok: queued as ABC123\r\n');
    } else if (verb === 'QUIT') socket.end('221 bye\r\n');
    else socket.write('250 ok\r\n');
    return undefined;
  });
});

before(() => new Promise<void>((resolve) => server.listen(PORT, '127.0.0.1', resolve)));
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

const attempt = () =>
  reinject(
    { host: '127.0.0.1', port: PORT, name: 'mx.example.test', timeoutMs: 30_000 },
    { sender: 'anna@example.net', recipients: [{ address: 'alice@example.test' }], size: 20 },
    () => Readable.from([Buffer.from('Subject: hi\r\n\r\nhello\r\n')]),
    new Map([['ADDR', '192.0.2.1']]),
  );

test('the fake smtpd takes the message when it does not close', async () => {
  closeAt = undefined;
  assert.match(await attempt(), /queued as ABC123/);
});

for (const how of ['fin', 'rst'] as const) {
  for (const verb of ['EHLO', 'XFORWARD', 'MAIL', 'RCPT', 'DATA', 'DOT']) {
    test(
      `the smtpd closes (${how}) instead of answering ${verb}: the re-injection fails at once`,
      { timeout: 10_000 },
      async () => {
        closeAt = { verb, how };
        await assert.rejects(attempt(), ReinjectError);
      },
    );
  }
}
