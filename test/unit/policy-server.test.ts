/**
 * The policy server under bad input, over real TCP on loopback: every malformed or abusive client gets a coded
 * log line and a closed connection without a reply, and a well-behaved client on another connection keeps
 * being answered throughout.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { createLogger } from '../../src/observe/logger.js';
import { Metrics } from '../../src/observe/metrics.js';
import { PolicyClient } from '../../src/policy/client.js';
import { encodeRequest } from '../../src/policy/codec.js';
import { type Connection, PolicyServer, type ServerLimits } from '../../src/policy/server.js';

const LIMITS: ServerLimits = {
  maxConnections: 1000,
  maxLineBytes: 8192,
  maxRequestBytes: 65536,
  maxAttributes: 200,
  idleTimeoutMs: 400,
  requestTimeoutMs: 30_000,
  maxPendingRequests: 4,
};

const logs: { code?: string; suppressed?: number }[] = [];
const sink = new Writable({
  write(chunk: Buffer, _e, done) {
    for (const line of chunk.toString().split('\n').filter(Boolean)) logs.push(JSON.parse(line));
    done();
  },
});
const logger = createLogger('debug', sink);
const metrics = new Metrics({ processMetrics: false });
const handler = async (attributes: Record<string, string>, connection: Connection) => {
  connection.state['n'] = ((connection.state['n'] as number | undefined) ?? 0) + 1;
  return attributes['sender'] === 'slow@test'
    ? new Promise<string>((r) => setTimeout(() => r('DUNNO'), 50))
    : 'DUNNO';
};
const server = new PolicyServer(handler, LIMITS, logger, metrics);
let address = '';

before(async () => {
  const [listener] = await server.listen(['127.0.0.1:0']);
  address = listener!.address;
});
after(() => server.close(0));

const request = { request: 'smtpd_access_policy', protocol_state: 'RCPT', sender: 'a@b.test' };

/** A well-behaved client on its own connection is still answered. */
async function stillServing(at = address): Promise<void> {
  const client = await PolicyClient.connect(at);
  try {
    assert.equal(await client.query(request), 'DUNNO');
  } finally {
    client.close();
  }
}

/** Sends raw bytes on a fresh connection; resolves with what came back before the server closed it. */
function sendRaw(data: Buffer | string, timeoutMs = 3000): Promise<{ reply: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(Number(address.split(':')[1]), '127.0.0.1');
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ reply, closed: false });
    }, timeoutMs);
    socket.on('data', (d) => (reply += d.toString()));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ reply, closed: true });
    });
    socket.write(data);
  });
}

function lastCode(): string | undefined {
  return [...logs].reverse().find((l) => l.code)?.code;
}

const cases: [string, () => Buffer | string, string][] = [
  ['a line without "="', () => 'request=smtpd_access_policy\nnonsense\n\n', 'PW-P001'],
  ['binary bytes', () => Buffer.from([0x72, 0x3d, 0x00, 0xff, 0xfe, 0x0a, 0x0a]), 'PW-P001'],
  [
    'a 1 MiB request',
    () => `request=smtpd_access_policy\n${`x=${'y'.repeat(1000)}\n`.repeat(1024)}\n`,
    'PW-P003',
  ],
  ['a 1 MiB line', () => `x=${'y'.repeat(1 << 20)}`, 'PW-P002'],
  ['10 000 attributes', () => `request=smtpd_access_policy\n${'a=b\n'.repeat(10_000)}\n`, 'PW-P004'],
  ['no request= attribute', () => 'protocol_state=RCPT\n\n', 'PW-P005'],
  [
    'requests piled ahead of the replies',
    () => encodeRequest({ ...request, sender: 'slow@test' }).repeat(10),
    'PW-P008',
  ],
];

for (const [name, data, code] of cases) {
  test(`bad input: ${name} → closed without a reply, logged ${code}`, async () => {
    const { reply, closed } = await sendRaw(data());
    assert.equal(closed, true);
    if (code !== 'PW-P008') assert.equal(reply, '');
    assert.ok(!reply.includes('action=OK'));
    assert.ok(
      logs.some((l) => l.code === code),
      `no ${code} in the log (last: ${lastCode()})`,
    );
    await stillServing();
  });
}

test('a client that sends half a request and stalls is closed at the idle timeout, logged PW-P010', async () => {
  const started = Date.now();
  const { reply, closed } = await sendRaw('request=smtpd_access_policy\nsender=a@', 5000);
  assert.equal(closed, true);
  assert.equal(reply, '');
  assert.ok(Date.now() - started >= LIMITS.idleTimeoutMs - 50);
  assert.ok(logs.some((l) => l.code === 'PW-P010'));
  await stillServing();
});

test('a client dribbling a request a byte at a time (never idle) is closed at policy.server.request_timeout_s; a whole request before it was answered', async () => {
  const limits = { ...LIMITS, idleTimeoutMs: 30_000, requestTimeoutMs: 600 };
  const strict = new PolicyServer(handler, limits, logger, metrics);
  const [listener] = await strict.listen(['127.0.0.1:0']);
  try {
    const socket = net.connect(listener!.port!, '127.0.0.1');
    socket.on('error', () => undefined);
    let reply = '';
    socket.on('data', (d) => (reply += d.toString()));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(encodeRequest(request));
    const dribble = Buffer.from(`request=smtpd_access_policy\nsender=${'x'.repeat(200)}`);
    let sent = 0;
    const timer = setInterval(() => {
      if (sent < dribble.length && !socket.destroyed) socket.write(dribble.subarray(sent, ++sent));
    }, 50);
    const started = Date.now();
    await closed;
    clearInterval(timer);
    assert.equal(reply, 'action=DUNNO\n\n');
    // Closed by the request deadline, long before the idle timeout, while bytes were still coming.
    assert.ok(sent < dribble.length, `the whole dribble was taken (${sent} bytes)`);
    assert.ok(Date.now() - started < limits.idleTimeoutMs);
    // The client may see its close before the server has run its own close handler.
    for (let i = 0; i < 100 && strict.connectionCount > 0; i += 1)
      await new Promise((r) => setTimeout(r, 10));
    assert.equal(strict.connectionCount, 0);
    await stillServing(listener!.address);
  } finally {
    await strict.close(0);
  }
});

test('many requests on one connection are answered in order; per-connection state persists', async () => {
  const client = await PolicyClient.connect(address);
  for (let i = 0; i < 50; i += 1) assert.equal(await client.query(request), 'DUNNO');
  client.close();
});

test('2 000 idle connections: 1 000 held, the rest refused with PW-P007 (throttled); a client connected before keeps being answered; all are released', async () => {
  const limits = { ...LIMITS, idleTimeoutMs: 30_000 };
  const flooded = new PolicyServer(handler, limits, logger, metrics);
  const [listener] = await flooded.listen(['127.0.0.1:0']);
  const port = listener!.port!;
  const good = await PolicyClient.connect(listener!.address);
  const before = logs.filter((l) => l.code === 'PW-P007').length;
  const sockets: net.Socket[] = [];
  let refused = 0;
  for (let i = 0; i < 2000; i += 1) {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.on('close', () => (refused += 1));
    sockets.push(socket);
  }
  // Past the accept backlog the kernel makes clients retry their SYN later: count the refusals seen so far.
  const deadline = Date.now() + 10_000;
  while ((flooded.connectionCount < limits.maxConnections || refused < 100) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    assert.equal(flooded.connectionCount, limits.maxConnections);
    assert.ok(refused >= 100, `${refused} refused`);
    const lines = logs.filter((l) => l.code === 'PW-P007').length - before;
    assert.ok(lines >= 1 && lines <= 3, `${lines} PW-P007 lines: throttled`);
    assert.equal(await good.query(request), 'DUNNO');
    for (const socket of sockets) socket.destroy();
    while (flooded.connectionCount > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(flooded.connectionCount, 1, 'the held connections are released');
    assert.equal(await good.query(request), 'DUNNO');
  } finally {
    for (const socket of sockets) socket.destroy();
    good.close();
    await flooded.close(0);
  }
});

test('a client that half-closes after its requests still gets every reply, then the connection ends', async () => {
  const { reply, closed } = await new Promise<{ reply: string; closed: boolean }>((resolve) => {
    const socket = net.connect(Number(address.split(':')[1]), '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ reply: text, closed: false });
    }, 3000);
    socket.on('data', (d) => (text += d.toString()));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ reply: text, closed: true });
    });
    // Two requests, the second slow, then the client's FIN, as `printf … | nc` sends them.
    socket.end(encodeRequest(request) + encodeRequest({ ...request, sender: 'slow@test' }));
  });
  assert.equal(reply, 'action=DUNNO\n\naction=DUNNO\n\n');
  assert.equal(closed, true);
  await stillServing();
});
