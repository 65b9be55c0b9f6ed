/**
 * The zip archive lister (the banned scanner's ArchiveLister port), on yauzl, in memory: it reads the central
 * directory for names and sizes, and the data of only the entries the scanner asks for (nested archives). It
 * never writes to disk and never extracts anything else.
 *
 * Bounds: at most `maxEntries` directory records are read, whatever count the archive claims; an entry's data
 * is inflated only when its declared size fits in what is left of `maxBytes`, with zlib's `maxOutputLength` set
 * to that declared size, so an entry that lies (a zip bomb) stops zlib at the limit, in the thread pool; the
 * output must then match the declared size and CRC-32.
 *
 * Failure: nothing throws. A buffer that is not a zip, a corrupt directory, strong encryption, an entry that
 * cannot be read: each is a problem in the listing, next to the entries read before it. Names are decoded by
 * this module (yauzl's `decodeStrings: false`), because yauzl's own decoding rejects the whole archive at an
 * absolute or `..` name, which an attacker would use to hide the entries after it; nothing here writes a file,
 * so such names are only names.
 */
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import yauzl from 'yauzl';
import type {
  ArchiveEntry,
  ArchiveEntryInfo,
  ArchiveLimits,
  ArchiveLister,
  ArchiveListing,
  ArchiveProblem,
} from '../core/scanners/banned.js';

const inflateRaw = promisify(zlib.inflateRaw);

const STORED = 0;
const DEFLATED = 8;
const LOCAL_HEADER = [0x50, 0x4b, 0x03, 0x04];

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function openZip(buffer: Buffer): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    try {
      yauzl.fromBuffer(
        buffer,
        { lazyEntries: true, decodeStrings: false, validateEntrySizes: true, strictFileNames: false },
        (error, zip) => (error ? reject(error) : resolve(zip)),
      );
    } catch (error) {
      reject(error instanceof Error ? error : new Error(String(error)));
    }
  });
}

interface DirectoryRead {
  readonly entries: yauzl.Entry[];
  readonly truncated: boolean;
  readonly error?: Error;
}

/** Reads up to `max` central-directory records; an error ends the reading and is returned with what was read. */
function readDirectory(zip: yauzl.ZipFile, max: number): Promise<DirectoryRead> {
  return new Promise((resolve) => {
    const entries: yauzl.Entry[] = [];
    let settled = false;
    const finish = (error?: Error): void => {
      if (settled) return;
      settled = true;
      // Truncated: stopped at the bound while the directory claims more (not: stopped by an error).
      const truncated = error === undefined && zip.entryCount > entries.length;
      resolve(error === undefined ? { entries, truncated } : { entries, truncated, error });
    };
    // Kept for the zip's lifetime: an 'error' without a listener would throw out of an event handler.
    zip.on('error', (error: Error) => finish(error));
    zip.on('end', () => finish());
    zip.on('entry', (entry: yauzl.Entry) => {
      entries.push(entry);
      if (entries.length >= max) finish();
      else zip.readEntry();
    });
    if (max <= 0 || zip.entryCount === 0) finish();
    else zip.readEntry();
  });
}

/** The entry's name, decoded as yauzl would (UTF-8 flag, Info-ZIP Unicode path, else CP437), unvalidated. */
function nameOf(entry: yauzl.Entry): string {
  const raw: unknown = entry.fileNameRaw ?? entry.fileName;
  if (!Buffer.isBuffer(raw)) return String(raw);
  return yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, raw, entry.extraFields, false);
}

function infoOf(entry: yauzl.Entry): ArchiveEntryInfo {
  return {
    name: nameOf(entry),
    size: entry.uncompressedSize,
    compressedSize: entry.compressedSize,
    encrypted: entry.isEncrypted(),
  };
}

type Extracted = { readonly content: Uint8Array } | { readonly problem: ArchiveProblem };

async function extract(
  zip: yauzl.ZipFile,
  buffer: Buffer,
  entry: yauzl.Entry,
  name: string,
  budget: number,
): Promise<Extracted> {
  const problem = (kind: ArchiveProblem['kind'], reason: string): Extracted => ({
    problem: { kind, entry: name, reason },
  });
  if (entry.isEncrypted()) return problem('encrypted', 'encrypted, not inspected');
  if (entry.compressionMethod !== STORED && entry.compressionMethod !== DEFLATED) {
    return problem('unreadable', `unsupported compression method ${entry.compressionMethod}`);
  }
  if (entry.uncompressedSize > budget) {
    return problem('limits', `declares ${entry.uncompressedSize} bytes, over the ${budget} left to inflate`);
  }
  let start: number;
  try {
    start = (await zip.readLocalFileHeaderPromise(entry, { minimal: true })).fileDataStart;
  } catch (error) {
    return problem('unreadable', message(error));
  }
  // readLocalFileHeader checked that the data lies inside the buffer.
  const raw = buffer.subarray(start, start + entry.compressedSize);
  let data: Buffer;
  if (entry.compressionMethod === STORED) {
    data = raw;
  } else {
    try {
      data = await inflateRaw(raw, { maxOutputLength: Math.max(entry.uncompressedSize, 1) });
    } catch (error) {
      if ((error as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') {
        return problem('limits', `inflates past its declared ${entry.uncompressedSize} bytes (a zip bomb?)`);
      }
      return problem('unreadable', `cannot inflate: ${message(error)}`);
    }
  }
  if (data.length !== entry.uncompressedSize) {
    return problem('unreadable', `holds ${data.length} bytes, declares ${entry.uncompressedSize}`);
  }
  if (zlib.crc32(data) !== entry.crc32) return problem('unreadable', 'CRC-32 mismatch');
  return { content: data };
}

function directoryProblem(error: Error): ArchiveProblem {
  // yauzl's wording (index.js): the 0x40 flag, which also hides names, ends the directory read.
  if (/strong encryption/i.test(error.message)) {
    return { kind: 'encrypted', reason: 'strong encryption: entries not listed' };
  }
  return { kind: 'unreadable', reason: `corrupt zip: ${error.message}` };
}

export class ZipArchiveLister implements ArchiveLister {
  async list(content: Uint8Array, limits: ArchiveLimits): Promise<ArchiveListing> {
    const buffer = Buffer.from(content.buffer, content.byteOffset, content.byteLength);
    let zip: yauzl.ZipFile;
    try {
      zip = await openZip(buffer);
    } catch (error) {
      return {
        entries: [],
        truncated: false,
        problems: [{ kind: 'unreadable', reason: `not a zip: ${message(error)}` }],
      };
    }
    try {
      const read = await readDirectory(zip, limits.maxEntries);
      const problems: ArchiveProblem[] = [];
      if (read.error) problems.push(directoryProblem(read.error));
      const firstOffset = read.entries.reduce(
        (min, e) => Math.min(min, e.relativeOffsetOfLocalHeader),
        Infinity,
      );
      if (read.entries.length > 0 && firstOffset > 0 && LOCAL_HEADER.every((b, i) => buffer[i] === b)) {
        problems.push({
          kind: 'unreadable',
          reason: `${firstOffset} bytes of another archive before the first entry (concatenated zips read differently)`,
        });
      }
      const entries: ArchiveEntry[] = [];
      let left = Math.max(0, limits.maxBytes);
      for (const entry of read.entries) {
        const info = infoOf(entry);
        if (!limits.wants(info)) {
          entries.push(info);
          continue;
        }
        const got = await extract(zip, buffer, entry, info.name, left);
        if ('problem' in got) {
          problems.push(got.problem);
          entries.push(info);
        } else {
          left -= got.content.length;
          entries.push({ ...info, content: got.content });
        }
      }
      return { entries, truncated: read.truncated, problems };
    } catch (error) {
      return { entries: [], truncated: false, problems: [{ kind: 'unreadable', reason: message(error) }] };
    } finally {
      zip.close();
    }
  }
}
