/**
 * The policy codec and request parser, in-process: byte streams of whole requests mixed with garbage lines,
 * control bytes, empty requests, foreign `request=` values, lines and requests at and around the limits, many
 * attributes and raw binary, fed in random pieces. Properties: the decoder never throws; the events do not
 * depend on where the stream was cut; at most one error, last, and nothing after it; every request decoded
 * within the limits, with `request=smtpd_access_policy` and no forbidden byte; the requests in front of the
 * first damaged piece come out exactly as they were sent; the request parser takes each of them.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  type CodecEvent,
  type CodecLimits,
  encodeRequest,
  PolicyDecoder,
} from '../../../src/policy/codec.js';
import { toPolicyRequest } from '../../../src/core/request.js';
import { requestAttributes } from '../policy-inputs.js';
import type { FuzzTarget } from '../runner.js';

const LIMITS: CodecLimits = { maxLineBytes: 300, maxRequestBytes: 4096, maxAttributes: 20 };

/** A piece of the stream, and whether the decoder must take it as a well-formed request (`ok`) or not. */
interface Piece {
  readonly bytes: Buffer;
  /** The attributes it must decode to, for a well-formed request inside the limits. */
  readonly request?: Record<string, string>;
  /** Known to end the stream with an error (anything else may or may not, near a limit). */
  readonly bad?: boolean;
}

const near = (limit: number) => fc.integer({ min: limit - 3, max: limit + 3 });

const piece: fc.Arbitrary<Piece> = fc.oneof(
  {
    weight: 6,
    arbitrary: requestAttributes.map((attrs): Piece => {
      const text = encodeRequest(attrs);
      const fits =
        Object.keys(attrs).length <= LIMITS.maxAttributes &&
        Buffer.byteLength(text) <= LIMITS.maxRequestBytes &&
        text.split('\n').every((line) => Buffer.byteLength(line) <= LIMITS.maxLineBytes);
      return { bytes: Buffer.from(text), ...(fits ? { request: attrs } : {}) };
    }),
  },
  {
    weight: 1,
    arbitrary: requestAttributes.map((attrs): Piece => ({
      bytes: Buffer.from(encodeRequest(attrs).replace(/\n/g, '\r\n')),
    })),
  },
  { weight: 1, arbitrary: fc.constant<Piece>({ bytes: Buffer.from('\n'), bad: true }) },
  {
    weight: 1,
    arbitrary: fc
      .stringMatching(/^[a-z_]{1,10}$/)
      .map((v): Piece => ({ bytes: Buffer.from(`request=${v}x\nsender=a@b\n\n`), bad: true })),
  },
  {
    weight: 1,
    arbitrary: fc
      .string({ minLength: 1, maxLength: 40, unit: 'grapheme-ascii' })
      .map((s): Piece => ({ bytes: Buffer.from(`${s.replace(/[=\n]/g, '')}\n`) })),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 0, max: 0x1f })
      .filter((b) => b !== 0x0a)
      .map((b): Piece => ({ bytes: Buffer.from(`sender=a${String.fromCharCode(b)}b\n`), bad: b !== 0x09 })),
  },
  {
    // a line at and around max_line_bytes, with LF or CRLF
    weight: 1,
    arbitrary: fc.tuple(near(LIMITS.maxLineBytes), fc.boolean()).map(([n, crlf]): Piece => ({
      bytes: Buffer.from(`x=${'v'.repeat(Math.max(0, n - 2))}${crlf ? '\r\n' : '\n'}`),
    })),
  },
  {
    // attributes at and around max_attributes
    weight: 1,
    arbitrary: near(LIMITS.maxAttributes).map((n): Piece => {
      const lines = Array.from({ length: Math.max(0, n - 1) }, (_v, i) => `a${i}=${i}\n`);
      return { bytes: Buffer.from(`request=smtpd_access_policy\n${lines.join('')}\n`) };
    }),
  },
  {
    // a request at and around max_request_bytes
    weight: 1,
    arbitrary: near(LIMITS.maxRequestBytes).map((n): Piece => {
      const head = 'request=smtpd_access_policy\n';
      let body = '';
      for (let i = 0; Buffer.byteLength(head + body) + 1 < n - 200; i++) body += `b${i}=${'y'.repeat(190)}\n`;
      const rest = n - Buffer.byteLength(head + body) - 1 - 3;
      if (rest > 0) body += `z=${'w'.repeat(rest - 1)}\n`;
      return { bytes: Buffer.from(`${head}${body}\n`) };
    }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 600 }).map((b): Piece => ({ bytes: Buffer.from(b) })) },
);

interface Input {
  readonly pieces: readonly Piece[];
  /** Cut points, as fractions of the stream's length. */
  readonly cuts: readonly number[];
}

const input: fc.Arbitrary<Input> = fc.record({
  pieces: fc.array(piece, { minLength: 1, maxLength: 8 }),
  cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 }),
});

function decode(stream: Buffer, cuts: readonly number[]): CodecEvent[] {
  const decoder = new PolicyDecoder(LIMITS);
  const at = [...new Set(cuts.map((c) => Math.floor(c * stream.length)))].sort((a, b) => a - b);
  const events: CodecEvent[] = [];
  let from = 0;
  for (const cut of [...at, stream.length]) {
    events.push(...decoder.push(stream.subarray(from, cut)));
    from = cut;
  }
  if (events.some((e) => e.kind === 'error')) assert.deepEqual(decoder.push(Buffer.from('a=b\n\n')), []);
  return events;
}

const FORBIDDEN = /[\x00-\x08\x0a-\x1f\x7f]/; // eslint-disable-line no-control-regex -- the codec's own rule

const target: FuzzTarget<Input> = {
  name: 'policy-codec',
  unit: 'requests',
  iterations: { quick: 5000, full: 300_000 },
  timeoutMs: 2000,
  heapMb: 256,
  input,
  open: () =>
    Promise.resolve({
      run({ pieces, cuts }: Input): number {
        const stream = Buffer.concat(pieces.map((p) => p.bytes));
        const whole = decode(stream, []);
        const split = decode(stream, cuts);
        assert.deepEqual(split, whole, 'the events depend on where the stream was cut');
        const errorAt = whole.findIndex((e) => e.kind === 'error');
        assert.ok(errorAt < 0 || errorAt === whole.length - 1, 'an event after an error');
        const requests = whole.filter((e) => e.kind === 'request');
        for (const event of requests) {
          const names = Object.keys(event.attributes);
          assert.equal(event.attributes['request'], 'smtpd_access_policy');
          assert.ok(names.length <= LIMITS.maxAttributes, 'more attributes than the limit');
          for (const [name, value] of Object.entries(event.attributes)) {
            assert.ok(name !== '' && !name.includes('='), `bad name ${JSON.stringify(name)}`);
            assert.ok(!FORBIDDEN.test(name) && !FORBIDDEN.test(value), 'a forbidden byte got through');
          }
          const request = toPolicyRequest(event.attributes);
          assert.ok(Number.isSafeInteger(request.size) && request.size >= 0);
          assert.ok(Number.isSafeInteger(request.recipientCount) && request.recipientCount >= 0);
        }
        // The well-formed requests in front of the first piece that is not one come out as sent.
        const expected: Record<string, string>[] = [];
        for (const p of pieces) {
          if (!p.request) break;
          expected.push(p.request);
        }
        assert.deepEqual(
          requests.slice(0, expected.length).map((e) => ({ ...e.attributes })),
          expected.map((a) => ({ ...a })),
          'a well-formed request did not come out as sent',
        );
        if (pieces.every((p) => p.request)) assert.equal(errorAt, -1, 'an error on well-formed requests');
        if (pieces[expected.length]?.bad) assert.ok(errorAt >= 0, 'a bad piece was taken');
        return pieces.length;
      },
    }),
  show: ({ pieces, cuts }) =>
    `cuts: ${JSON.stringify(cuts)}\n${pieces.map((p) => JSON.stringify(p.bytes.toString('latin1'))).join('\n')}\n`,
};

export default target;
