import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { fieldsNamed, headerFieldRanges, keptRanges } from '../../src/filter/header-fields.js';
import { OWN_HEADER_FIELDS } from '../../src/filter/service.js';
import { Spool } from '../../src/filter/spool.js';

const OURS = fieldsNamed(new Set(['x-spam-flag', 'x-spam-status']));

function without(text: string, names = OURS): string {
  const raw = Buffer.from(text, 'latin1');
  return keptRanges(raw.length, headerFieldRanges(raw, names))
    .map((r) => raw.toString('latin1', r.start, r.end))
    .join('');
}

describe('headerFieldRanges', () => {
  it('removes the named fields, any case, with their continuation lines, and keeps everything else', () => {
    const message =
      'Received: from a\r\n by b\r\nX-Spam-Flag: YES\r\nx-spam-STATUS: No,\r\n\tscore=-50\r\nSubject: hi\r\n\r\nX-Spam-Flag: body\r\n';
    assert.equal(without(message), 'Received: from a\r\n by b\r\nSubject: hi\r\n\r\nX-Spam-Flag: body\r\n');
  });

  it('never looks past the blank line that ends the header section', () => {
    assert.deepEqual(headerFieldRanges(Buffer.from('Subject: a\n\nX-Spam-Flag: YES\n'), OURS), []);
  });

  it('handles bare LF line ends and a name with blanks before the colon', () => {
    assert.equal(without('X-Spam-Flag : YES\nFrom: a@b\n\nbody\n'), 'From: a@b\n\nbody\n');
  });

  it('keeps a last field that may continue past the captured bytes', () => {
    // No end of header section seen: the last field could have more continuation lines beyond the capture.
    assert.deepEqual(headerFieldRanges(Buffer.from('From: a@b\r\nX-Spam-Flag: YES\r\n'), OURS), []);
    assert.deepEqual(headerFieldRanges(Buffer.from('X-Spam-Flag: YES\r\nFrom: a@b\r\n'), OURS), [
      { start: 0, end: 18 },
    ]);
  });

  it('does not take a colon on a later line for the field name, nor a name-less line for a field', () => {
    assert.equal(without('X-Spam-Flag\r\n: YES\r\n\r\n'), 'X-Spam-Flag\r\n: YES\r\n\r\n');
  });

  it('keeps a message without any named field byte for byte', () => {
    const message = 'From: a@b\r\nTo: c@d\r\n\r\nbody';
    assert.equal(without(message), message);
    assert.deepEqual(keptRanges(10, []), [{ start: 0, end: 10 }]);
  });
});

describe('Spool.forDelivery', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pw-spool-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function read(stream: Readable): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('latin1');
  }

  it('prepends our fields and drops incoming copies of them, even when the chunks split the blank line', async () => {
    const spool = new Spool(dir, 1_000_000, fieldsNamed(OWN_HEADER_FIELDS));
    const chunks = [
      'From: a@b\r\nX-Spam-Flag: YES\r\nX-Postwarden-Status: clean\r\n',
      ' folded\r\n\r',
      '\nbody\r\n',
    ];
    const spooled = await spool.write(Readable.from(chunks.map((c) => Buffer.from(c))));
    assert.equal(await read(spooled.open()), chunks.join(''));
    assert.equal(
      await read(spooled.forDelivery(Buffer.from('X-Spam-Status: No\r\n'))),
      'X-Spam-Status: No\r\nFrom: a@b\r\n\r\nbody\r\n',
    );
    spooled.remove();
    assert.deepEqual(readdirSync(dir), []);
  });

  it('streams a message with nothing to drop unchanged behind the prefix', async () => {
    const spool = new Spool(dir, 1_000_000, fieldsNamed(OWN_HEADER_FIELDS));
    const body = 'x'.repeat(600_000);
    const spooled = await spool.write(Readable.from([Buffer.from(`Subject: big\r\n\r\n${body}`)]));
    assert.equal(await read(spooled.forDelivery(Buffer.alloc(0))), `Subject: big\r\n\r\n${body}`);
    spooled.remove();
  });
});
