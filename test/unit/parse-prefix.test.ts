import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { bannedSchema, needsWholePart } from '../../src/core/scanners/banned.js';
import { type ParseLimits, parseMessage } from '../../src/filter/parse.js';
import { zip } from '../harness/zip.js';

const wholeParts = needsWholePart(bannedSchema.parse({}));
const LIMITS: ParseLimits = { maxDepth: 20, maxParts: 100, keepBytes: 52_428_800, maxTextChars: 100_000 };

interface Attachment {
  readonly name: string;
  readonly type: string;
  readonly data: Buffer;
}

/** multipart/mixed: a text part, then the attachments in base64 lines of 76 characters. */
function message(attachments: readonly Attachment[]): Buffer {
  const lines = ['From: a@example.org', 'To: b@example.org', 'Subject: files', 'MIME-Version: 1.0'];
  lines.push(
    'Content-Type: multipart/mixed; boundary="b1"',
    '',
    '--b1',
    'Content-Type: text/plain',
    '',
    'Hi.',
  );
  for (const a of attachments) {
    lines.push('--b1', `Content-Type: ${a.type}; name="${a.name}"`, 'Content-Transfer-Encoding: base64');
    lines.push(`Content-Disposition: attachment; filename="${a.name}"`, '');
    lines.push(...(a.data.toString('base64').match(/.{1,76}/g) ?? []));
  }
  lines.push('--b1--', '');
  return Buffer.from(lines.join('\r\n'));
}

async function parts(raw: Buffer, limits: ParseLimits) {
  const facts = await parseMessage(
    Readable.from([raw]),
    { sender: '', recipients: [] },
    raw.length,
    [],
    limits,
  );
  return facts.parts.filter((p) => p.filename !== undefined);
}

const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(300_000)]);
const pdf = Buffer.concat([Buffer.from('%PDF-1.7\n'), randomBytes(120_001)]);
const archive = zip([
  { name: 'report.txt', data: Buffer.from('quarterly figures\n'.repeat(2000)), deflate: true },
]);
const program = Buffer.concat([Buffer.from('MZ'), randomBytes(90_000)]);

test('an attachment no scanner reads whole is decoded for its first bytes; its size is estimated', async () => {
  // A zip-based document is a zip the banned scanner does not look into (its name explains it).
  const document = zip([{ name: 'word/document.xml', data: randomBytes(60_000) }]);
  const raw = message([
    { name: 'photo.jpg', type: 'image/jpeg', data: jpeg },
    { name: 'paper.pdf', type: 'application/pdf', data: pdf },
    { name: 'notes.docx', type: 'application/octet-stream', data: document },
  ]);
  const [photo, paper, notes] = await parts(raw, { ...LIMITS, wholeParts });
  for (const [part, data] of [
    [photo, jpeg],
    [paper, pdf],
    [notes, document],
  ] as const) {
    assert.ok(part?.content !== undefined);
    assert.ok(part.content.length >= 4096 && part.content.length < 8192, `kept ${part.content.length}`);
    assert.deepEqual(Buffer.from(part.content), data.subarray(0, part.content.length));
    assert.ok(Math.abs(part.size - data.length) <= 4, `size ${part.size} for ${data.length}`);
  }
});

test('archives (by name, by magic under another name) and programs are decoded whole', async () => {
  const raw = message([
    { name: 'files.zip', type: 'application/octet-stream', data: archive },
    { name: 'invoice.pdf', type: 'application/pdf', data: archive },
    { name: 'setup.txt', type: 'text/plain', data: program },
  ]);
  const found = await parts(raw, { ...LIMITS, wholeParts });
  assert.equal(found.length, 3);
  for (const part of found) {
    const data = part.filename === 'setup.txt' ? program : archive;
    assert.deepEqual(Buffer.from(part.content ?? []), data, part.filename);
    assert.equal(part.size, data.length);
  }
});

test('without wholeParts every attachment is decoded whole, as before', async () => {
  const [photo] = await parts(message([{ name: 'photo.jpg', type: 'image/jpeg', data: jpeg }]), LIMITS);
  assert.deepEqual(Buffer.from(photo?.content ?? []), jpeg);
  assert.equal(photo?.size, jpeg.length);
});
