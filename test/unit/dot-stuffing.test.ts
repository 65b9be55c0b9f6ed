/**
 * The re-injection's dot stuffing (src/filter/dot-stuffing.ts) against nodemailer's own DataStream, which it
 * replaces: the same bytes for any message cut into any chunks.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import DataStream from 'nodemailer/lib/smtp-connection/data-stream';
import { stuffDots, useFastDotStuffing } from '../../src/filter/dot-stuffing.js';

const nodemailerTransform = DataStream.prototype._transform;

/** What a DataStream with the given _transform writes for these chunks (its end marker included). */
async function through(transform: typeof nodemailerTransform, chunks: readonly Buffer[]): Promise<Buffer> {
  const stream = new DataStream();
  stream._transform = transform;
  const out: Buffer[] = [];
  stream.on('data', (b: Buffer) => out.push(b));
  const ended = new Promise((resolve) => stream.on('end', resolve));
  for (const chunk of chunks) stream.write(chunk);
  stream.end();
  await ended;
  return Buffer.concat(out);
}

/** Messages made of the bytes that matter (CR, LF, dot) and a few others, cut at random places. */
const cutMessage = fc
  .tuple(
    fc.array(fc.constantFrom(0x0d, 0x0a, 0x2e, 0x61, 0x20), { maxLength: 200 }),
    fc.array(fc.nat(), { maxLength: 8 }),
  )
  .map(([bytes, cuts]) => {
    const message = Buffer.from(bytes);
    const at = [...new Set(cuts.map((c) => (message.length === 0 ? 0 : c % message.length)))].sort(
      (a, b) => a - b,
    );
    const chunks: Buffer[] = [];
    let from = 0;
    for (const cut of [...at, message.length]) {
      chunks.push(message.subarray(from, cut));
      from = cut;
    }
    return chunks;
  });

test('stuffDots writes what nodemailer writes, for any message cut anywhere', async () => {
  useFastDotStuffing();
  const fast = DataStream.prototype._transform;
  assert.notEqual(fast, nodemailerTransform, 'installed');
  await fc.assert(
    fc.asyncProperty(cutMessage, async (chunks) => {
      assert.deepEqual(await through(fast, chunks), await through(nodemailerTransform, chunks));
    }),
    { numRuns: 3000 },
  );
});

test('the cases by name: leading dot, dot after CRLF, bare LF, bare CR before a dot, CRLF split', () => {
  const cases: [string, string][] = [
    ['.x', '..x'],
    ['a\r\n.b\r\n', 'a\r\n..b\r\n'],
    ['a\nb', 'a\r\nb'],
    ['a\r.b', 'a\r\n..b'],
    ['plain\r\ntext', 'plain\r\ntext'],
  ];
  for (const [input, wire] of cases) assert.equal(stuffDots(Buffer.from(input), false).toString(), wire);
  // A chunk that begins a line after a chunk that ended with LF.
  assert.equal(stuffDots(Buffer.from('.x'), 0x0a).toString(), '..x');
  assert.equal(stuffDots(Buffer.from('\n'), 0x0d).toString(), '\n');
  const unchanged = Buffer.from('no line ends here');
  assert.equal(stuffDots(unchanged, 0x61), unchanged, 'nothing copied when nothing changes');
});
