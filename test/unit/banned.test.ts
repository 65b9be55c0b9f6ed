/**
 * The banned scanner, as tables: names (case, double extensions, trailing dots and spaces, direction controls,
 * look-alikes, NULs), declared types, sniffed content, and zip archives built here in memory (a small zip
 * writer below: stored and deflated entries, flags, lying sizes) read by the real yauzl lister: banned names
 * inside, nesting within and beyond `max_depth`, zip bombs (many entries, a huge declared size, a dense nested
 * archive, an entry that lies about its size), encryption, corrupt and ambiguous archives, and clean mail.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import zlib from 'node:zlib';
import { ZipArchiveLister } from '../../src/adapters/archive.js';
import { u32, zip, type ZipSpec } from '../harness/zip.js';
import type { MessageFacts, MessagePart, ScanContext, ScanVerdict } from '../../src/core/content.js';
import {
  type ArchiveLimits,
  type ArchiveLister,
  type ArchiveListing,
  bannedSchema,
  createBannedScanner,
  normaliseFileName,
  printable,
  sniffType,
} from '../../src/core/scanners/banned.js';

// ---------------------------------------------------------------------------------------------------------
// Archives, built in memory (test/harness/zip.ts)

/** A zip holding `inner` at `levels` levels (1: the zip itself holds the inner entries). */
function nested(levels: number, inner: readonly ZipSpec[]): Buffer {
  let archive = zip(inner);
  for (let level = 1; level < levels; level += 1)
    archive = zip([{ name: `level${levels - level}.zip`, data: archive }]);
  return archive;
}

/** A minimal PE: MZ, e_lfanew = 0x40, PE\0\0. */
function pe(): Uint8Array {
  const b = Buffer.alloc(0x80);
  b.write('MZ', 0, 'latin1');
  b.writeUInt32LE(0x40, 0x3c);
  b.write('PE\0\0', 0x40, 'latin1');
  return b;
}

// ---------------------------------------------------------------------------------------------------------
// Messages and the scanner

type PartSpec = Omit<Partial<MessagePart>, 'filename' | 'content'> & {
  filename?: string;
  content?: Uint8Array;
};

function facts(...specs: PartSpec[]): MessageFacts {
  const parts: MessagePart[] = specs.map((spec, i) => {
    const part: MessagePart = {
      path: spec.path ?? String(i + 2),
      depth: spec.depth ?? 1,
      contentType: spec.contentType ?? 'application/octet-stream',
      size: spec.size ?? spec.content?.length ?? 0,
      ...(spec.filename === undefined ? {} : { filename: spec.filename }),
      ...(spec.content === undefined ? {} : { content: spec.content }),
    };
    return part;
  });
  const body: MessagePart = {
    path: '1',
    depth: 1,
    contentType: 'text/plain',
    size: 5,
    content: Buffer.from('hello'),
  };
  return {
    envelope: { sender: 'a@example.org', recipients: ['b@example.net'] },
    size: 1000,
    headers: [],
    parts: [body, ...parts],
    problems: [],
    limitsHit: false,
  };
}

function context(signal: AbortSignal = new AbortController().signal): ScanContext {
  return { source: { size: 0, chunks: async function* () {} }, signal };
}

const lister = new ZipArchiveLister();

async function scan(message: MessageFacts, config: unknown = {}, archives: ArchiveLister = lister) {
  const scanner = createBannedScanner(bannedSchema.parse(config), archives);
  assert.equal(scanner.name, 'banned');
  return [...(await scanner.scan(message, context()))];
}

function symbols(verdicts: readonly ScanVerdict[]): string[] {
  return verdicts.map((v) => v.symbol);
}

function only(verdicts: readonly ScanVerdict[], symbol: string): ScanVerdict {
  const found = verdicts.filter((v) => v.symbol === symbol);
  assert.equal(found.length, 1, `${symbol} in ${JSON.stringify(verdicts)}`);
  return found[0] as ScanVerdict;
}

/** A lister that counts its calls and what it was asked to extract. */
class Recording implements ArchiveLister {
  calls = 0;
  wanted: string[] = [];
  async list(content: Uint8Array, limits: ArchiveLimits): Promise<ArchiveListing> {
    this.calls += 1;
    const spy: ArchiveLimits = {
      ...limits,
      wants: (entry) => {
        const yes = limits.wants(entry);
        if (yes) this.wanted.push(entry.name);
        return yes;
      },
    };
    return lister.list(content, spy);
  }
}

// ---------------------------------------------------------------------------------------------------------

describe('settings', () => {
  test('defaults', () => {
    const s = bannedSchema.parse({});
    assert.equal(s.mode, 'enforce');
    assert.equal(s.action, 'quarantine');
    assert.equal(s.tag_score, 5);
    assert.equal(s.sniff, true);
    for (const ext of ['exe', 'scr', 'pif', 'com', 'bat', 'cmd', 'js', 'vbs', 'hta', 'lnk', 'iso']) {
      assert.ok(s.extensions.includes(ext), ext);
    }
    assert.deepEqual(s.archives, {
      extensions: ['zip', 'jar'],
      max_depth: 3,
      max_entries: 1000,
      max_total_bytes: 52_428_800,
      max_ratio: 100,
      unchecked_action: 'quarantine',
      unchecked_score: 5,
      encrypted_action: 'tag',
      encrypted_score: 3,
    });
  });
  test('unknown keys and dotted extensions are errors', () => {
    assert.equal(bannedSchema.safeParse({ extension: ['exe'] }).success, false);
    assert.equal(bannedSchema.safeParse({ extensions: ['.exe'] }).success, false);
    assert.equal(bannedSchema.safeParse({ archives: { max_depth: 0 } }).success, false);
  });
});

describe('names, normalised as Windows sees them', () => {
  const rows: [string, string, string][] = [
    // raw, name, extension
    ['Setup.EXE', 'setup.exe', 'exe'],
    ['invoice.pdf.exe', 'invoice.pdf.exe', 'exe'],
    ['invoice.exe.', 'invoice.exe', 'exe'],
    ['invoice.exe . . ', 'invoice.exe', 'exe'],
    ['invoice\u202Efdp.exe', 'invoicefdp.exe', 'exe'],
    ['ｉｎｖｏｉｃｅ．ｅｘｅ', 'invoice.exe', 'exe'],
    ['C:\\Users\\me\\run.bat', 'run.bat', 'bat'],
    ['dir/sub/evil.scr', 'evil.scr', 'scr'],
    ['readme', 'readme', ''],
    ['archive.tar.gz', 'archive.tar.gz', 'gz'],
  ];
  for (const [raw, name, extension] of rows) {
    test(JSON.stringify(raw), () => {
      const [first] = normaliseFileName(raw);
      assert.equal(first?.name, name);
      assert.equal(first?.extension, extension);
    });
  }
  test('a NUL gives two readings: joined and cut', () => {
    const readings = normaliseFileName('evil.exe\0.pdf').map((r) => r.name);
    assert.deepEqual(readings, ['evil.exe.pdf', 'evil.exe', '.pdf']);
  });
  test('printable escapes direction controls and quotes, and bounds the length', () => {
    assert.equal(printable('a\u202Eb"c'), '"a\\u202eb\\u0022c"');
    assert.equal([...printable('x'.repeat(500))].length, 103);
  });
});

describe('banned extensions', () => {
  const rows: [string, boolean, RegExp?][] = [
    ['setup.exe', true],
    ['SETUP.EXE', true],
    ['Screensaver.Scr', true],
    ['invoice.pdf.exe', true, /double extension \.pdf\.exe/],
    ['invoice.exe.', true, /trailing dots or spaces/],
    ['invoice.exe   ', true, /trailing dots or spaces/],
    ['invoice\u202Efdp.exe', true, /direction or invisible characters/],
    ['photo\u202Egpj.scr', true],
    ['report\u200B.vbs', true],
    ['ｒｅｐｏｒｔ．ｊｓ', true, /look-alike characters/],
    ['evil.exe\u0000.pdf', true, /control characters/],
    ['C:\\temp\\run.bat', true],
    ['shortcut.lnk', true],
    ['disk.iso', true],
    ['invoice.pdf', false],
    ['invoice.exe.pdf', false],
    ['invoice\u202Eexe.pdf', false], // shown as "invoicefdp.exe", but a PDF: Windows opens it as one
    ['executive-summary.docx', false],
    ['archive.exed', false],
    ['notes', false],
  ];
  for (const [filename, banned, reason] of rows) {
    test(`${JSON.stringify(filename)} → ${banned ? 'banned' : 'clean'}`, async () => {
      const verdicts = await scan(facts({ filename, contentType: 'application/octet-stream' }));
      if (!banned) {
        assert.deepEqual(verdicts, []);
        return;
      }
      const v = only(verdicts, 'BANNED_EXTENSION');
      assert.match(v.reason, /^part 2 "/);
      if (reason) assert.match(v.reason, reason);
      assert.ok(!v.reason.includes('\u202E') && !v.reason.includes('\u0000'), v.reason);
    });
  }
  test('the list is configuration', async () => {
    assert.deepEqual(await scan(facts({ filename: 'setup.exe' }), { extensions: ['bin'] }), []);
    assert.deepEqual(symbols(await scan(facts({ filename: 'x.BIN' }), { extensions: ['bin'] })), [
      'BANNED_EXTENSION',
    ]);
  });
  test('a quarantine verdict: recipients notified, recipients may release, no score', async () => {
    const [v] = await scan(facts({ filename: 'setup.exe' }));
    assert.deepEqual(v, {
      scanner: 'banned',
      symbol: 'BANNED_EXTENSION',
      score: 0,
      action: 'quarantine',
      reason: 'part 2 "setup.exe": banned extension .exe',
      notify: 'recipients',
      releasableBy: 'recipient',
    });
  });
  test('action tag scores instead', async () => {
    const [v] = await scan(facts({ filename: 'setup.exe' }), { action: 'tag', tag_score: 7.5 });
    assert.deepEqual(v, {
      scanner: 'banned',
      symbol: 'BANNED_EXTENSION',
      score: 7.5,
      reason: 'part 2 "setup.exe": banned extension .exe',
    });
  });
  test('one verdict per symbol, the first three parts named', async () => {
    const names = ['a.exe', 'b.exe', 'c.exe', 'd.exe', 'e.exe'];
    const verdicts = await scan(facts(...names.map((filename) => ({ filename }))));
    const v = only(verdicts, 'BANNED_EXTENSION');
    assert.match(v.reason, /"a\.exe".*"b\.exe".*"c\.exe".*; and 2 more$/);
    assert.ok(!v.reason.includes('d.exe'));
  });
});

describe('declared types', () => {
  const rows: [string, boolean][] = [
    ['application/x-msdownload', true],
    ['application/x-msdos-program', true],
    ['application/x-dosexec', true],
    ['application/vnd.microsoft.portable-executable', true],
    ['application/hta', true],
    ['application/pdf', false],
    ['application/octet-stream', false],
    ['text/plain', false],
  ];
  for (const [contentType, banned] of rows) {
    test(`${contentType} → ${banned ? 'banned' : 'clean'}`, async () => {
      const verdicts = await scan(facts({ contentType }));
      assert.deepEqual(symbols(verdicts), banned ? ['BANNED_TYPE'] : []);
      if (banned) assert.equal(verdicts[0]?.reason, `part 2 (${contentType}): declared ${contentType}`);
    });
  }
});

describe('sniffed content', () => {
  const macho = Buffer.from('cffaedfe0c000001', 'hex');
  const fat = Buffer.from('cafebabe00000002', 'hex');
  const javaClass = Buffer.from('cafebabe00000034', 'hex');
  const mzText = Buffer.concat([Buffer.from('MZ is a postcode prefix. '), Buffer.alloc(80, 0x20)]);
  const rows: [string, Uint8Array, string | undefined][] = [
    ['PE', pe(), 'pe'],
    ['ELF', Buffer.from('\x7fELF\x02\x01\x01', 'latin1'), 'elf'],
    ['Mach-O 64', macho, 'macho'],
    ['Mach-O universal', fat, 'macho'],
    ['Java class', javaClass, undefined],
    ['MZ without a PE header', mzText, undefined],
    [
      'PE header past the end',
      Buffer.concat([Buffer.from('MZ'), Buffer.alloc(0x3a), u32(0xffff)]),
      undefined,
    ],
    ['zip', zip([{ name: 'a.txt', data: Buffer.from('a') }]), 'zip'],
    ['empty zip', zip([]), 'zip'],
    ['PDF', Buffer.from('%PDF-1.7\n'), undefined],
    ['empty', new Uint8Array(0), undefined],
  ];
  for (const [label, bytes, type] of rows) {
    test(`${label} → ${type ?? 'nothing'}`, () => assert.equal(sniffType(bytes), type));
  }
  test('a PE with an innocent name and type is banned', async () => {
    const verdicts = await scan(
      facts({ filename: 'invoice.pdf', contentType: 'application/pdf', content: pe() }),
    );
    const v = only(verdicts, 'BANNED_TYPE');
    assert.equal(v.reason, 'part 2 "invoice.pdf": content is a Windows executable (PE)');
    assert.equal(v.action, 'quarantine');
  });
  test('an ELF without a name is banned', async () => {
    const verdicts = await scan(facts({ content: Buffer.from('\x7fELF\x02\x01\x01\x00', 'latin1') }));
    assert.match(
      only(verdicts, 'BANNED_TYPE').reason,
      /^part 2 \(application\/octet-stream\): content is an ELF/,
    );
  });
  test('sniff: false trusts names', async () => {
    assert.deepEqual(await scan(facts({ filename: 'invoice.pdf', content: pe() }), { sniff: false }), []);
  });
});

describe('zip archives', () => {
  test('an .exe inside a zip', async () => {
    const archive = zip([
      { name: 'readme.txt', data: Buffer.from('hello') },
      { name: 'docs/invoice.pdf.exe', data: pe(), deflate: true },
    ]);
    const verdicts = await scan(
      facts({ filename: 'invoice.zip', contentType: 'application/zip', content: archive }),
    );
    const v = only(verdicts, 'BANNED_IN_ARCHIVE');
    assert.equal(
      v.reason,
      'part 2 "invoice.zip" → "docs/invoice.pdf.exe": banned extension .exe (double extension .pdf.exe)',
    );
    assert.deepEqual(symbols(verdicts), ['BANNED_IN_ARCHIVE']);
    assert.equal(v.releasableBy, 'recipient');
  });
  test('names inside are normalised too (direction controls)', async () => {
    const archive = zip([{ name: 'photo\u202Egpj.scr', data: Buffer.from('x') }]);
    const verdicts = await scan(facts({ filename: 'photos.zip', content: archive }));
    assert.match(
      only(verdicts, 'BANNED_IN_ARCHIVE').reason,
      /"photo\\u202egpj\.scr": banned extension \.scr/,
    );
  });
  test('a zip named as something else is looked into; a docx is not', async () => {
    const archive = zip([{ name: 'run.cmd', data: Buffer.from('@echo off') }]);
    assert.deepEqual(symbols(await scan(facts({ filename: 'report.pdf', content: archive }))), [
      'BANNED_IN_ARCHIVE',
    ]);
    assert.deepEqual(symbols(await scan(facts({ content: archive }))), ['BANNED_IN_ARCHIVE']);
    assert.deepEqual(await scan(facts({ filename: 'report.docx', content: archive })), []);
    assert.deepEqual(await scan(facts({ filename: 'report.pdf', content: archive }), { sniff: false }), []);
  });
  test('a nested archive that is really a PE is sniffed (and not opened)', async () => {
    const archive = zip([{ name: 'inner.zip', data: pe() }]);
    const verdicts = await scan(facts({ filename: 'a.zip', content: archive }));
    assert.deepEqual(symbols(verdicts), ['BANNED_IN_ARCHIVE']);
    assert.match(verdicts[0]?.reason ?? '', /"a\.zip" → "inner\.zip": content is a Windows executable/);
  });
  test('other entries are listed, not read: a PE named notes.txt inside passes (a documented limit)', async () => {
    const archive = zip([{ name: 'notes.txt', data: pe() }]);
    const recording = new Recording();
    assert.deepEqual(await scan(facts({ filename: 'a.zip', content: archive }), {}, recording), []);
    assert.deepEqual(recording.wanted, []);
  });
  test('a nested .zip that is not a zip is unreadable', async () => {
    const archive = zip([{ name: 'inner.zip', data: Buffer.from('Rar!\x1a\x07\x00 not a zip', 'latin1') }]);
    const v = only(await scan(facts({ filename: 'a.zip', content: archive })), 'ARCHIVE_UNREADABLE');
    assert.match(v.reason, /^part 2 "a\.zip" → "inner\.zip": not a zip/);
  });
  test('a clean message: body, PDF, clean zip, docx-shaped zip', async () => {
    const archive = zip([
      { name: 'photos/', data: new Uint8Array(0) },
      { name: 'photos/cat.jpg', data: randomBytes(2000), deflate: true },
      { name: 'notes.txt', data: Buffer.from('text '.repeat(100)), deflate: true },
      {
        name: 'more.zip',
        data: zip([{ name: 'table.csv', data: Buffer.from('a,b\n1,2\n') }]),
        deflate: true,
      },
    ]);
    const verdicts = await scan(
      facts(
        { filename: 'paper.pdf', contentType: 'application/pdf', content: Buffer.from('%PDF-1.7\n') },
        { filename: 'photos.zip', contentType: 'application/zip', content: archive },
        { filename: 'sheet.xlsx', content: zip([{ name: 'xl/workbook.xml', data: Buffer.from('<x/>') }]) },
      ),
    );
    assert.deepEqual(verdicts, []);
  });
  test('an archive the parser did not keep, or kept only the start of, is unchecked', async () => {
    const none = await scan(facts({ filename: 'big.zip', size: 80_000_000 }));
    assert.equal(
      only(none, 'ARCHIVE_LIMITS').reason,
      'part 2 "big.zip": 0 bytes of 76.3 MiB kept for inspection (filter.parse.keep_bytes)',
    );
    const archive = zip([{ name: 'a.txt', data: Buffer.from('a') }]);
    const prefix = await scan(
      facts({ filename: 'big.zip', size: 20_000_000, content: archive.subarray(0, 40) }),
    );
    assert.equal(
      only(prefix, 'ARCHIVE_LIMITS').reason,
      'part 2 "big.zip": 40 bytes of 19.1 MiB kept for inspection (filter.parse.keep_bytes)',
    );
    // The magic bytes of a prefix are enough to sniff.
    const exe = await scan(facts({ filename: 'a.pdf', size: 20_000_000, content: pe() }));
    assert.deepEqual(symbols(exe), ['BANNED_TYPE']);
  });
});

describe('nesting', () => {
  const exe = [{ name: 'deep/evil.exe', data: pe() }];
  test('within max_depth: the .exe three levels down is found', async () => {
    const recording = new Recording();
    const verdicts = await scan(facts({ filename: 'a.zip', content: nested(3, exe) }), {}, recording);
    assert.deepEqual(symbols(verdicts), ['BANNED_IN_ARCHIVE']);
    assert.match(verdicts[0]?.reason ?? '', /"a\.zip" → "level1\.zip" → "level2\.zip" → "deep\/evil\.exe"/);
    assert.equal(recording.calls, 3);
  });
  test('beyond max_depth: a limit hit, and the fourth level is not opened', async () => {
    const recording = new Recording();
    const verdicts = await scan(facts({ filename: 'a.zip', content: nested(4, exe) }), {}, recording);
    assert.deepEqual(symbols(verdicts), ['ARCHIVE_LIMITS']);
    assert.match(verdicts[0]?.reason ?? '', /"level3\.zip": an archive nested deeper than 3$/);
    assert.equal(recording.calls, 3);
    assert.deepEqual(recording.wanted, ['level1.zip', 'level2.zip']);
  });
  test('max_depth is configuration', async () => {
    const verdicts = await scan(facts({ filename: 'a.zip', content: nested(4, exe) }), {
      archives: { max_depth: 4 },
    });
    assert.deepEqual(symbols(verdicts), ['BANNED_IN_ARCHIVE']);
  });
  test('limits hit are scored instead when unchecked_action is tag', async () => {
    const verdicts = await scan(facts({ filename: 'a.zip', content: nested(4, exe) }), {
      archives: { unchecked_action: 'tag', unchecked_score: 4 },
    });
    assert.equal(only(verdicts, 'ARCHIVE_LIMITS').score, 4);
    assert.equal(verdicts[0]?.action, undefined);
  });
});

describe('zip bombs, flagged at bounded cost', () => {
  test('many entries: listing stops at max_entries', async () => {
    const specs = Array.from({ length: 1500 }, (_, i) => ({ name: `f${i}.txt`, data: Buffer.from('x') }));
    const started = performance.now();
    const verdicts = await scan(facts({ filename: 'many.zip', content: zip(specs) }));
    assert.equal(
      only(verdicts, 'ARCHIVE_LIMITS').reason,
      'part 2 "many.zip": more than 1000 archive entries',
    );
    const listing = await lister.list(zip(specs), { maxEntries: 1000, maxBytes: 0, wants: () => false });
    assert.equal(listing.entries.length, 1000);
    assert.equal(listing.truncated, true);
    assert.ok(performance.now() - started < 5000);
  });
  test('max_entries counts all archives of the message together', async () => {
    const specs = Array.from({ length: 60 }, (_, i) => ({ name: `f${i}.txt`, data: Buffer.from('x') }));
    const parts = [1, 2].map((n) => ({ filename: `p${n}.zip`, content: zip(specs) }));
    const verdicts = await scan(facts(...parts), { archives: { max_entries: 100 } });
    assert.match(
      only(verdicts, 'ARCHIVE_LIMITS').reason,
      /^part 3 "p2\.zip": more than 100 archive entries$/,
    );
  });
  test('a highly compressible large entry: declared size and ratio, never inflated', async () => {
    const zeros = Buffer.alloc(64 * 1_048_576);
    const archive = zip([{ name: 'zeros.bin', data: zeros, deflate: true }]);
    assert.ok(archive.length < 200_000);
    const started = performance.now();
    const verdicts = await scan(facts({ filename: 'bomb.zip', content: archive }));
    assert.ok(performance.now() - started < 1000, 'not inflated');
    const v = only(verdicts, 'ARCHIVE_LIMITS');
    assert.match(v.reason, /"zeros\.bin": compression ratio \d+:1 over 100:1/);
    assert.match(v.reason, /archives declare 64\.0 MiB uncompressed, over 50\.0 MiB/);
    assert.equal(v.action, 'quarantine');
  });
  test('a dense nested archive is not opened', async () => {
    const archive = zip([{ name: 'inner.zip', data: Buffer.alloc(4 * 1_048_576), deflate: true }]);
    const recording = new Recording();
    const verdicts = await scan(facts({ filename: 'bomb.zip', content: archive }), {}, recording);
    assert.deepEqual(recording.wanted, []);
    assert.match(only(verdicts, 'ARCHIVE_LIMITS').reason, /"inner\.zip": compression ratio \d+:1 over 100:1/);
  });
  test('a nested archive that lies about its size stops at the declared size', async () => {
    const huge = zlib.deflateRawSync(Buffer.alloc(64 * 1_048_576));
    const archive = zip([{ name: 'inner.zip', raw: huge, method: 8, declaredSize: 100_000, crc: 0 }]);
    const started = performance.now();
    const verdicts = await scan(facts({ filename: 'liar.zip', content: archive }));
    assert.ok(performance.now() - started < 1000, `${performance.now() - started} ms`);
    assert.match(
      only(verdicts, 'ARCHIVE_LIMITS').reason,
      /"inner\.zip": inflates past its declared 100000 bytes \(a zip bomb\?\)/,
    );
  });
  test('nested archives inflate within max_total_bytes', async () => {
    const blob = (n: number) => zip([{ name: 'data.bin', data: randomBytes(n) }]);
    const archive = zip([
      { name: 'one.zip', data: blob(700_000) },
      { name: 'two.zip', data: blob(700_000) },
    ]);
    const recording = new Recording();
    const verdicts = await scan(
      facts({ filename: 'a.zip', content: archive }),
      { archives: { max_total_bytes: 1_048_576 } },
      recording,
    );
    assert.deepEqual(recording.wanted, ['one.zip', 'two.zip']);
    const v = only(verdicts, 'ARCHIVE_LIMITS');
    assert.match(v.reason, /"two\.zip": declares \d+ bytes, over the \d+ left to inflate/);
    assert.match(v.reason, /archives declare 1\.\d MiB uncompressed, over 1\.0 MiB/);
  });
});

describe('encrypted archives', () => {
  test('an encrypted entry is scored, not quarantined; its name is still checked', async () => {
    const archive = zip([
      { name: 'secret.docx', raw: randomBytes(112), declaredSize: 100, flags: 0x1 },
      { name: 'payload.exe', raw: randomBytes(50), method: 8, declaredSize: 900, flags: 0x1 },
    ]);
    const verdicts = await scan(facts({ filename: 'locked.zip', content: archive }));
    assert.deepEqual(symbols(verdicts), ['BANNED_IN_ARCHIVE', 'ENCRYPTED_ARCHIVE']);
    assert.deepEqual(only(verdicts, 'ENCRYPTED_ARCHIVE'), {
      scanner: 'banned',
      symbol: 'ENCRYPTED_ARCHIVE',
      score: 3,
      reason: 'part 2 "locked.zip": encrypted "secret.docx" and 1 more, not inspected',
    });
  });
  test('an encrypted nested archive is not opened', async () => {
    const archive = zip([{ name: 'inner.zip', raw: randomBytes(60), declaredSize: 48, flags: 0x1 }]);
    const recording = new Recording();
    const verdicts = await scan(facts({ filename: 'a.zip', content: archive }), {}, recording);
    assert.deepEqual(recording.wanted, []);
    assert.deepEqual(symbols(verdicts), ['ENCRYPTED_ARCHIVE']);
  });
  test('strong encryption (flag 0x40) ends the listing: encrypted, with what came before', async () => {
    const archive = zip([
      { name: 'first.exe', data: Buffer.from('x') },
      { name: 'hidden', raw: randomBytes(40), method: 8, declaredSize: 10, flags: 0x41 },
    ]);
    const verdicts = await scan(facts({ filename: 'a.zip', content: archive }));
    assert.deepEqual(symbols(verdicts), ['BANNED_IN_ARCHIVE', 'ENCRYPTED_ARCHIVE']);
    assert.match(only(verdicts, 'ENCRYPTED_ARCHIVE').reason, /strong encryption: entries not listed/);
  });
  test('encrypted_action quarantine', async () => {
    const archive = zip([{ name: 'a.txt', raw: randomBytes(13), declaredSize: 1, flags: 0x1 }]);
    const [v] = await scan(facts({ filename: 'a.zip', content: archive }), {
      archives: { encrypted_action: 'quarantine' },
    });
    assert.equal(v?.action, 'quarantine');
    assert.equal(v?.score, 0);
  });
});

describe('corrupt and ambiguous archives', () => {
  const good = zip([
    { name: 'a.txt', data: Buffer.from('hello') },
    { name: 'b.txt', data: Buffer.from('world') },
  ]);
  const rows: [string, Uint8Array, RegExp][] = [
    ['garbage named .zip', Buffer.from('this is not a zip at all'), /not a zip: End of central directory/],
    ['truncated', good.subarray(0, good.length - 10), /not a zip/],
    [
      'central directory overwritten',
      (() => {
        const b = Buffer.from(good);
        b.writeUInt32LE(0xdeadbeef, b.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02])));
        return b;
      })(),
      /corrupt zip: invalid central directory file header signature/,
    ],
    [
      'stored sizes that disagree',
      zip([{ name: 'a.txt', data: Buffer.from('hello'), declaredSize: 3 }]),
      /corrupt zip: compressed\/uncompressed size mismatch/,
    ],
    [
      'another zip concatenated in front',
      (() => {
        const second = zip([{ name: 'b.txt', data: Buffer.from('b') }]);
        const front = zip([{ name: 'evil.txt', data: Buffer.from('x') }]);
        // Shift the second archive's offsets, as `zip -A` would, so that yauzl reads it cleanly.
        const whole = Buffer.concat([front, second]);
        const cd = whole.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
        whole.writeUInt32LE(front.length, cd + 42);
        whole.writeUInt32LE(whole.readUInt32LE(whole.length - 6) + front.length, whole.length - 6);
        return whole;
      })(),
      /\d+ bytes of another archive before the first entry/,
    ],
  ];
  for (const [label, archive, reason] of rows) {
    test(label, async () => {
      const verdicts = await scan(facts({ filename: 'broken.zip', content: archive }));
      const v = only(verdicts, 'ARCHIVE_UNREADABLE');
      assert.match(v.reason, /^part 2 "broken\.zip"/);
      assert.match(v.reason, reason);
      assert.equal(v.action, 'quarantine');
    });
  }
  test('a nested entry with a wrong CRC, or an unsupported method', async () => {
    const inner = zip([{ name: 'x.txt', data: Buffer.from('x') }]);
    const archive = zip([
      { name: 'crc.zip', data: inner, crc: 1 },
      { name: 'bzip2.zip', raw: inner, method: 12 },
    ]);
    const v = only(await scan(facts({ filename: 'a.zip', content: archive })), 'ARCHIVE_UNREADABLE');
    assert.match(v.reason, /"crc\.zip": CRC-32 mismatch; .*"bzip2\.zip": unsupported compression method 12/);
  });
  test('absolute and .. names are only names: listed, and the entries after them too', async () => {
    const archive = zip([
      { name: '../../etc/passwd', data: Buffer.from('x') },
      { name: '/abs/path.txt', data: Buffer.from('x') },
      { name: 'later.exe', data: Buffer.from('x') },
    ]);
    const listing = await lister.list(archive, { maxEntries: 10, maxBytes: 0, wants: () => false });
    assert.deepEqual(
      listing.entries.map((e) => e.name),
      ['../../etc/passwd', '/abs/path.txt', 'later.exe'],
    );
    assert.deepEqual(listing.problems, []);
  });
  test('the lister never throws: 300 mutated archives', async () => {
    const nestedArchive = zip([
      { name: 'a.txt', data: Buffer.from('hello'), deflate: true },
      { name: 'inner.zip', data: zip([{ name: 'b.exe', data: pe() }]), deflate: true },
    ]);
    let seed = 42;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let i = 0; i < 300; i += 1) {
      const b = Buffer.from(nestedArchive);
      for (let n = 0; n < 1 + Math.floor(random() * 4); n += 1) {
        b[Math.floor(random() * b.length)] = Math.floor(random() * 256);
      }
      const listing = await lister.list(b, { maxEntries: 100, maxBytes: 1_048_576, wants: () => true });
      assert.ok(Array.isArray(listing.entries) && Array.isArray(listing.problems));
    }
  });
});

test('a scan past its deadline stops', async () => {
  const controller = new AbortController();
  controller.abort();
  const scanner = createBannedScanner(bannedSchema.parse({}), lister);
  const message = facts({ filename: 'a.zip', content: zip([{ name: 'a.txt', data: Buffer.from('a') }]) });
  await assert.rejects(Promise.resolve(scanner.scan(message, context(controller.signal))), {
    name: 'AbortError',
  });
});
