/**
 * The real policy server over a loopback socket, with the real handler (every check on): one connection per
 * input, carrying well-formed requests, garbage lines, overlong attributes, many attributes and raw bytes, sent
 * in pieces cut at random points, either one request at a time (waiting for each answer, as Postfix does) or
 * all at once (pipelined). Properties: every answer is exactly `action=…\n\n` in the action grammar; waiting for
 * each, every well-formed request gets exactly one answer; after a damaged piece, or when pipelining past
 * max_pending_requests, the server closes the connection (a clean close: no partial answer) within a bound, and
 * never answers more requests than were complete; no check throws; the server keeps no socket afterwards.
 * Memory is bounded by the worker's heap limit.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { createLogger } from '../../../src/observe/logger.js';
import { Metrics } from '../../../src/observe/metrics.js';
import { encodeRequest, PolicyDecoder } from '../../../src/policy/codec.js';
import { PolicyServer, type ServerLimits } from '../../../src/policy/server.js';
import { assertAnswer, openPolicy, requestAttributes } from '../policy-inputs.js';
import type { FuzzTarget } from '../runner.js';

const LIMITS: ServerLimits = {
  maxConnections: 50,
  maxLineBytes: 1024,
  maxRequestBytes: 8192,
  maxAttributes: 40,
  idleTimeoutMs: 10_000,
  requestTimeoutMs: 10_000,
  maxPendingRequests: 4,
};
/** How long a client waits for an answer, or for the server to close after a damaged piece. */
const WAIT_MS = 3000;

const piece: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 8, arbitrary: requestAttributes.map((a) => Buffer.from(encodeRequest(a))) },
  {
    weight: 1,
    arbitrary: fc.string({ maxLength: 60 }).map((s) => Buffer.from(`${s}\n`)),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: LIMITS.maxLineBytes - 4, max: LIMITS.maxLineBytes * 3 })
      .map((n) => Buffer.from(`request=smtpd_access_policy\nsender=${'a'.repeat(n)}@x.test\n\n`)),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: LIMITS.maxAttributes - 3, max: LIMITS.maxAttributes * 4 }).map((n) => {
      const lines = Array.from({ length: n }, (_v, i) => `x${i}=${i}\n`).join('');
      return Buffer.from(`request=smtpd_access_policy\n${lines}\n`);
    }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)) },
);

interface Input {
  readonly pieces: readonly Buffer[];
  readonly pipelined: boolean;
  readonly cuts: readonly number[];
}

const input: fc.Arbitrary<Input> = fc.record({
  pieces: fc.array(piece, { minLength: 1, maxLength: 8 }),
  pipelined: fc.boolean(),
  cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }),
});

/** The requests a piece completes in a fresh decoder's reading of the stream so far, and whether it broke it. */
function expectations(pieces: readonly Buffer[]): { requests: number[]; brokenAt: number } {
  const decoder = new PolicyDecoder(LIMITS);
  const requests: number[] = [];
  for (const [index, bytes] of pieces.entries()) {
    const events = decoder.push(bytes);
    requests.push(events.filter((e) => e.kind === 'request').length);
    if (events.some((e) => e.kind === 'error')) return { requests, brokenAt: index };
  }
  return { requests, brokenAt: -1 };
}

/** A client connection that collects answers and notices the close. */
class Client {
  private readonly socket: net.Socket;
  private buffer = '';
  closed = false;
  private wake: (() => void) | undefined;

  constructor(port: number) {
    this.socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
    this.socket.setEncoding('latin1');
    this.socket.on('data', (d: string) => {
      this.buffer += d;
      this.wake?.();
    });
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }

  ready(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
  }

  async write(bytes: Buffer, cuts: readonly number[]): Promise<void> {
    const at = [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].sort((a, b) => a - b);
    let from = 0;
    for (const cut of [...at, bytes.length]) {
      if (cut > from && !this.closed) this.socket.write(bytes.subarray(from, cut));
      from = cut;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Takes the complete answers received so far (each `action=…\n\n`). */
  answers(): string[] {
    const out: string[] = [];
    for (let end = this.buffer.indexOf('\n\n'); end >= 0; end = this.buffer.indexOf('\n\n')) {
      out.push(this.buffer.slice(0, end));
      this.buffer = this.buffer.slice(end + 2);
    }
    return out;
  }

  get partial(): string {
    return this.buffer;
  }

  /** Resolves when `done()` holds or WAIT_MS passes; says which. */
  async until(done: () => boolean): Promise<boolean> {
    const deadline = Date.now() + WAIT_MS;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    return true;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

const target: FuzzTarget<Input> = {
  name: 'policy-server',
  unit: 'requests',
  iterations: { quick: 300, full: 40_000 },
  timeoutMs: 20_000,
  heapMb: 512,
  input,
  async open(ctx) {
    const policy = await openPolicy();
    const logger = createLogger('error', new Writable({ write: (_c, _e, done) => done() }));
    const server = new PolicyServer(policy.handler, LIMITS, logger, new Metrics({ processMetrics: false }));
    await server.listen([`127.0.0.1:${ctx.port}`]);
    return {
      async run({ pieces, pipelined, cuts }: Input): Promise<number> {
        const { requests, brokenAt } = expectations(pieces);
        const complete = requests.reduce((sum, n) => sum + n, 0);
        const client = new Client(ctx.port);
        await client.ready();
        const got: string[] = [];
        const check = (answers: string[]) => {
          for (const answer of answers) {
            assert.ok(answer.startsWith('action='), `not an answer: ${JSON.stringify(answer.slice(0, 80))}`);
            assertAnswer(policy, answer.slice(7), () => `pieces ${pieces.length}`);
            got.push(answer);
          }
        };
        try {
          if (pipelined) {
            await client.write(Buffer.concat(pieces), cuts);
            const settled = await client.until(() => {
              check(client.answers());
              return client.closed || got.length >= complete;
            });
            check(client.answers());
            assert.ok(got.length <= complete, `${got.length} answers to ${complete} requests`);
            if (brokenAt >= 0 || got.length < complete) {
              assert.ok(
                await client.until(() => client.closed),
                'no close after a damaged piece or overflow',
              );
            } else assert.ok(settled, `only ${got.length} of ${complete} answers`);
          } else {
            let expected = 0;
            for (const [index, bytes] of pieces.entries()) {
              await client.write(bytes, cuts);
              expected += requests[index] ?? 0;
              if (index === brokenAt) {
                assert.ok(await client.until(() => client.closed), 'no close after a damaged piece');
                break;
              }
              await client.until(() => {
                check(client.answers());
                return got.length >= expected || client.closed;
              });
              assert.equal(
                got.length,
                expected,
                `waiting for each: ${got.length} answers to ${expected} requests`,
              );
              assert.ok(!client.closed, 'closed after well-formed requests');
            }
            check(client.answers());
          }
          assert.equal(client.partial, '', 'a partial answer');
        } finally {
          client.destroy();
        }
        // The server lets go of the socket.
        const deadline = Date.now() + WAIT_MS;
        while (server.connectionCount > 0 && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 2));
        assert.equal(server.connectionCount, 0, 'the server kept a closed connection');
        return complete;
      },
      async close() {
        await server.close(0);
        await policy.close();
      },
    };
  },
  show: ({ pieces, pipelined, cuts }) =>
    `pipelined: ${pipelined}\ncuts: ${JSON.stringify(cuts)}\n${pieces.map((p) => JSON.stringify(p.toString('latin1'))).join('\n')}\n`,
};

export default target;
