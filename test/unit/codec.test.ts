import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CodecEvent, encodeRequest, PolicyDecoder } from '../../src/policy/codec.js';

const limits = { maxLineBytes: 100, maxRequestBytes: 400, maxAttributes: 5 };
const feed = (...chunks: (string | Buffer)[]): CodecEvent[] => {
  const decoder = new PolicyDecoder(limits);
  return chunks.flatMap((c) => decoder.push(Buffer.isBuffer(c) ? c : Buffer.from(c)));
};
const codeOf = (events: CodecEvent[]) =>
  events.find((e) => e.kind === 'error')?.kind === 'error' && (events.at(-1) as { code: string }).code;

test('one request in one chunk', () => {
  const events = feed('request=smtpd_access_policy\nprotocol_state=RCPT\nsender=a@b.c\n\n');
  assert.equal(events.length, 1);
  assert.deepEqual(
    { ...(events[0] as { attributes: object }).attributes },
    {
      request: 'smtpd_access_policy',
      protocol_state: 'RCPT',
      sender: 'a@b.c',
    },
  );
});

test('a request split at every byte, and two requests in one chunk', () => {
  const text = encodeRequest({ request: 'smtpd_access_policy', helo_name: 'mx.example.org' });
  assert.equal(feed(...text.split('')).filter((e) => e.kind === 'request').length, 1);
  assert.equal(feed(text + text).filter((e) => e.kind === 'request').length, 2);
});

test('values keep "=" and spaces; the last of a repeated name wins; unknown names pass through', () => {
  const [event] = feed('request=smtpd_access_policy\nccert_subject=CN=x = y\nfoo=1\nfoo=2\n\n');
  assert.equal(event?.kind, 'request');
  const attributes = (event as { attributes: Record<string, string> }).attributes;
  assert.equal(attributes['ccert_subject'], 'CN=x = y');
  assert.equal(attributes['foo'], '2');
});

test('CRLF line ends are tolerated', () => {
  assert.equal(feed('request=smtpd_access_policy\r\n\r\n')[0]?.kind, 'request');
});

test('__proto__ is an ordinary attribute name, not a prototype write', () => {
  const [event] = feed('request=smtpd_access_policy\n__proto__=x\n\n');
  const attributes = (event as { attributes: Record<string, string> }).attributes;
  assert.equal(Object.getPrototypeOf(attributes), null);
  assert.equal(attributes['__proto__'], 'x');
});

const bad: [string, (string | Buffer)[], string][] = [
  ['line without =', ['request=smtpd_access_policy\ngarbage\n\n'], 'PW-P001'],
  ['empty name', ['=x\n\n'], 'PW-P001'],
  ['NUL byte', [Buffer.from('request=smtpd_access_policy\nhelo_name=a\x00b\n\n', 'binary')], 'PW-P001'],
  ['escape byte', ['helo_name=\x1b[31m\n\n'], 'PW-P001'],
  ['line too long (complete)', [`helo_name=${'x'.repeat(200)}\n\n`], 'PW-P002'],
  ['line too long (still arriving)', [`helo_name=${'x'.repeat(200)}`], 'PW-P002'],
  [
    'request too large',
    [Array.from({ length: 5 }, (_, i) => `a${i}=${'y'.repeat(90)}\n`).join('')],
    'PW-P003',
  ],
  ['too many attributes', [Array.from({ length: 6 }, (_, i) => `a${i}=1\n`).join('') + '\n'], 'PW-P004'],
  ['missing request=', ['protocol_state=RCPT\n\n'], 'PW-P005'],
  ['empty request', ['\n'], 'PW-P005'],
  ['wrong request', ['request=something_else\n\n'], 'PW-P005'],
];

for (const [name, chunks, code] of bad) {
  test(`malformed: ${name} → ${code}, and nothing after it`, () => {
    const events = feed(...chunks, 'request=smtpd_access_policy\n\n');
    assert.equal(codeOf(events), code);
    assert.equal(events.filter((e) => e.kind === 'request').length, 0);
  });
}

test('a 1 MiB request is refused as soon as the limit is passed, without buffering it all', () => {
  const decoder = new PolicyDecoder({ maxLineBytes: 8192, maxRequestBytes: 65536, maxAttributes: 200 });
  const line = Buffer.from(`x=${'y'.repeat(1000)}\n`);
  let events: CodecEvent[] = [];
  let pushed = 0;
  while (events.length === 0 && pushed < 1024) {
    events = decoder.push(line);
    pushed += 1;
  }
  assert.equal(events[0]?.kind, 'error');
  assert.ok(pushed < 100, `refused after ${pushed} KiB`);
});

test('midRequest tells a half-sent request from a clean state', () => {
  const decoder = new PolicyDecoder(limits);
  assert.equal(decoder.midRequest, false);
  decoder.push(Buffer.from('request=smtpd_access_policy\nsender='));
  assert.equal(decoder.midRequest, true);
  decoder.push(Buffer.from('x\n\n'));
  assert.equal(decoder.midRequest, false);
});

test('fuzz regression: a line of max_line_bytes with CRLF, cut between CR and LF, is still taken', () => {
  const line = `x=${'v'.repeat(limits.maxLineBytes - 2)}`;
  const text = `request=smtpd_access_policy\n${line}\r\n\n`;
  const cut = text.indexOf('\r\n') + 1;
  const events = feed(text.slice(0, cut), text.slice(cut));
  assert.deepEqual(
    events.map((e) => e.kind),
    ['request'],
  );
  assert.equal(codeOf(feed(`${line}v\r`)), 'PW-P002');
});
