/**
 * Parses a spooled message into the facts the scanners read (core/content.ts), with mailparser, within bounds:
 * parts beyond `maxParts` or deeper than `maxDepth` are not described (the message is marked `limitsHit`), and
 * each attachment's decoded content is kept only up to `keepBytes` (enough for type sniffing and archive
 * listing; the antivirus reads the raw message whole anyway). Bodies are not converted (no HTML-to-text), so a
 * huge HTML part costs its bytes, not a rendering. A parser error ends the parse with what was found and a
 * problem, never a crash: the message is still scanned and delivered or held.
 *
 * A body text part is read up to a budget too, and broken base64 is a problem (watchBodies): mailparser keeps a
 * text part whole in memory and decodes bad base64 silently. A base64 attachment no scanner reads whole (not an
 * archive, not a program: `ParseLimits.wholeParts`) is decoded only for its first PREFIX_BYTES, and its size
 * estimated from the rest of its encoded length: decoding every photo and PDF was a tenth of the filter's time.
 */
import { MailParser, type AttachmentStream, type MessageText } from 'mailparser';
import type { Readable } from 'node:stream';
import type { Envelope, HeaderField, MessageFacts, MessagePart } from '../core/content.js';
import type { PartHead } from '../core/scanners/banned.js';

/** Parts described by name and type only, as a multiple of `maxParts`. */
const METADATA_PARTS_FACTOR = 10;
/** Encoded bytes of a body text part read per character kept: enough for base64 of 3-byte UTF-8 characters. */
const ENCODED_BYTES_PER_CHAR = 4;

/** Decoded bytes of an attachment read when no scanner needs it whole: far more than any magic number. */
const PREFIX_BYTES = 4096;
/** Encoded bytes passed on for PREFIX_BYTES decoded: base64's 4 for 3, and its line breaks. */
const PREFIX_ENCODED_BYTES = Math.ceil((PREFIX_BYTES * 4) / 3 / 76) * 78;
/** Encoded bytes of an attachment's first chunk decoded to judge it (its first 48 bytes, whitespace aside). */
const HEAD_ENCODED_BYTES = 66;

/** The part of mailparser 3.x's internals watchBodies relies on (see there). */
interface MailParserInternals {
  processChunk(chunk: SplitterChunk, done: (error?: Error) => void): void;
  curnode:
    | false
    | {
        isAttachment?: boolean;
        disposition?: string;
        /** The transfer encoding as mailparser decodes it: base64, quoted-printable, else binary. */
        encoding?: string;
        /** mailsplit's node: the part's headers as given. */
        node?: { readonly filename?: string | false; readonly contentType?: string | false };
      }
    | undefined;
}

/** What mailsplit hands mailparser: a part's headers (`node`), then its encoded body in pieces (`body`). */
interface SplitterChunk {
  readonly type: string;
  readonly value?: Buffer;
  readonly node?: { readonly encoding?: string | false; readonly partNr?: (number | string)[] | false };
}

/** What watchBodies saw: encoded text bytes it did not pass on, and the parts whose base64 is broken. */
interface BodyWatch {
  droppedTextBytes: number;
  readonly badBase64: string[];
  /** Attachments decoded only in part, by path: the decoded bytes estimated for what was not passed on. */
  readonly undecoded: Map<string, number>;
}

/** A part's path as mailparser numbers parts (IMAP style, without mailsplit's TEXT markers). */
function partPath(node: SplitterChunk['node']): string {
  return (node?.partNr || []).filter((nr) => typeof nr === 'number').join('.') || '1';
}

/** The first decoded bytes of a base64 body chunk. */
function base64Head(encoded: Buffer): Buffer {
  return Buffer.from(encoded.toString('latin1', 0, HEAD_ENCODED_BYTES).replace(/\s+/g, ''), 'base64');
}

/** Decoded bytes in `encoded` bytes of base64 written in lines like `firstChunk`'s (76 characters and CRLF). */
function base64Decoded(encoded: number, firstChunk: Buffer): number {
  const eol = firstChunk.indexOf(0x0a);
  const line = eol < 0 ? 0 : eol + 1;
  const breaks = line === 0 ? 0 : firstChunk[eol - 1] === 0x0d ? 2 : 1;
  const characters = line > breaks ? (encoded * (line - breaks)) / line : encoded;
  return Math.floor((characters * 3) / 4);
}

/** The base64 alphabet, padding and whitespace: every other byte in a base64 body is an error. */
const BASE64_BYTES = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\r\n') {
  BASE64_BYTES[c.charCodeAt(0)] = 1;
}

/** Encoded bytes of a base64 part checked against the alphabet: the check costs a pass over them, and a broken
 * encoder shows early (a 50 MB attachment is not read twice for a score of half a point). */
const BASE64_CHECKED_BYTES = 1024 * 1024;

function isBase64(bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; i++) if (BASE64_BYTES[bytes[i] as number] === 0) return false;
  return true;
}

/**
 * Watches the encoded bodies on their way into mailparser: drops the bytes of each inline text part past
 * `textBudget`, and notes each base64 part with bytes outside the alphabet.
 *
 * Why by hand: mailparser collects a text part's decoded chunks, concatenates them, turns them into a string and
 * normalises its newlines, four copies at once (a 50 MB text body cost about 200 MB of RSS, and the content rules
 * read only the first `maxTextChars` anyway); and its base64 decoder skips bad bytes without a word. It has no
 * option for either, so its chunk handler (an internal method, stable across 3.x; the 50 MB and bad-base64 tests
 * in test/integration/filter-input.test.ts fail if it changes) is wrapped: mailparser still decodes what it is
 * given (transfer encoding, charset, format=flowed) exactly as before.
 */
function watchBodies(
  parser: MailParser,
  textBudget: number,
  wholeParts: ((part: PartHead) => boolean) | undefined,
): BodyWatch {
  const internals = parser as unknown as MailParserInternals;
  const process = internals.processChunk.bind(parser);
  const watch: BodyWatch = { droppedTextBytes: 0, badBase64: [], undecoded: new Map() };
  let read = 0;
  let flagged = false;
  /** The current attachment's first chunk when only its prefix is decoded; undefined while undecided. */
  let prefixOf: Buffer | false | undefined;
  internals.processChunk = (chunk, done) => {
    if (chunk.type === 'node') {
      read = 0;
      flagged = false;
      prefixOf = undefined;
    }
    if (chunk.type !== 'body' || !chunk.value) {
      process(chunk, done);
      return;
    }
    const unchecked = BASE64_CHECKED_BYTES - read;
    if (
      !flagged &&
      unchecked > 0 &&
      chunk.node?.encoding === 'base64' &&
      !isBase64(chunk.value.subarray(0, unchecked))
    ) {
      flagged = true;
      watch.badBase64.push(partPath(chunk.node));
    }
    const node = internals.curnode;
    const passed = read;
    read += chunk.value.length;
    let room = Infinity;
    if (node && !node.isAttachment && node.disposition === 'inline') {
      room = Math.max(0, textBudget - passed);
      watch.droppedTextBytes += Math.max(0, chunk.value.length - room);
    } else if (node && node.isAttachment && wholeParts && node.encoding === 'base64') {
      if (prefixOf === undefined) {
        const head = base64Head(chunk.value);
        const filename = node.node?.filename || undefined;
        const contentType = node.node?.contentType || 'application/octet-stream';
        // A first chunk too short to judge by: decode the part whole, as before.
        prefixOf =
          head.length >= 12 && !wholeParts({ ...(filename ? { filename } : {}), contentType, head })
            ? chunk.value
            : false;
      }
      if (prefixOf) {
        room = Math.max(0, PREFIX_ENCODED_BYTES - passed);
        const skipped = Math.max(0, chunk.value.length - room);
        if (skipped > 0) {
          const path = partPath(chunk.node);
          watch.undecoded.set(path, (watch.undecoded.get(path) ?? 0) + base64Decoded(skipped, prefixOf));
        }
      }
    }
    if (chunk.value.length > room) {
      if (room === 0) {
        setImmediate(done);
        return;
      }
      chunk = { ...chunk, value: chunk.value.subarray(0, room) };
    }
    process(chunk, done);
  };
  return watch;
}

export interface ParseLimits {
  readonly maxDepth: number;
  readonly maxParts: number;
  /** Decoded bytes kept per attachment. */
  readonly keepBytes: number;
  /** Characters of the text and HTML bodies kept for the content rules and the classifier. */
  readonly maxTextChars: number;
  /**
   * Which base64 attachments a scanner reads whole (decoded up to `keepBytes`); the others are decoded for
   * their first PREFIX_BYTES only. Absent: every attachment whole.
   */
  readonly wholeParts?: (part: PartHead) => boolean;
}

function headerField(line: string): HeaderField {
  const colon = line.indexOf(':');
  const name = colon < 0 ? line : line.slice(0, colon);
  const value =
    colon < 0
      ? ''
      : line
          .slice(colon + 1)
          .replace(/\r?\n[ \t]+/g, ' ')
          .trim();
  return { name: name.trim(), value };
}

/** Reads an attachment's content: keeps up to `keep` bytes, counts the rest, always drains and releases. */
function readAttachment(
  attachment: AttachmentStream,
  keep: number,
): Promise<{ size: number; kept: Uint8Array }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let kept = 0;
    const stream = attachment.content;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (kept < keep) {
        const piece = chunk.subarray(0, keep - kept);
        chunks.push(piece);
        kept += piece.length;
      }
    });
    const finish = () => {
      attachment.release?.();
      resolve({ size, kept: Buffer.concat(chunks) });
    };
    stream.once('end', finish);
    stream.once('error', finish);
  });
}

export async function parseMessage(
  raw: Readable,
  envelope: Envelope,
  size: number,
  rawProblems: readonly string[],
  limits: ParseLimits,
): Promise<MessageFacts> {
  const parser = new MailParser({
    skipHtmlToText: true,
    skipTextToHtml: true,
    skipTextLinks: true,
    skipImageLinks: true,
    checksumAlgo: false,
  });
  const bodies = watchBodies(parser, limits.maxTextChars * ENCODED_BYTES_PER_CHAR, limits.wholeParts);
  const headers: HeaderField[] = [];
  const parts: MessagePart[] = [];
  const problems = [...rawProblems];
  let limitsHit = false;
  let described = 0;

  parser.on('headerLines', (lines: { key: string; line: string }[]) => {
    for (const { line } of lines) headers.push(headerField(line));
  });

  const pending: Promise<void>[] = [];
  parser.on('data', (data: AttachmentStream | MessageText) => {
    if (data.type === 'text') {
      const text = data.text ?? '';
      const html = typeof data.html === 'string' ? data.html : '';
      const cut = (body: string) => body.slice(0, limits.maxTextChars);
      if (text !== '') {
        parts.push({
          path: 'text',
          depth: 0,
          contentType: 'text/plain',
          size: Buffer.byteLength(text),
          text: cut(text),
        });
      }
      if (html !== '') {
        parts.push({
          path: 'html',
          depth: 0,
          contentType: 'text/html',
          size: Buffer.byteLength(html),
          text: cut(html),
        });
      }
      if (text.length > limits.maxTextChars || html.length > limits.maxTextChars) limitsHit = true;
      return;
    }
    const path = data.partId ?? String(described + 1);
    const depth = path.split('.').length - 1;
    // Past the bounds a part's content is not kept, but its name and type still are (up to a hard cap), so a
    // banned file cannot hide behind many parts or deep nesting.
    const describe = described < limits.maxParts && depth <= limits.maxDepth;
    const named = described < limits.maxParts * METADATA_PARTS_FACTOR;
    if (!describe) limitsHit = true;
    described += 1;
    pending.push(
      readAttachment(data, describe ? limits.keepBytes : 0).then(({ size: partSize, kept }) => {
        if (!named) return;
        parts.push({
          path,
          depth,
          contentType: (data.contentType || 'application/octet-stream').toLowerCase(),
          ...(data.filename ? { filename: data.filename } : {}),
          size: partSize,
          ...(kept.length > 0 ? { content: kept } : {}),
        });
      }),
    );
  });

  let stopped = false;
  await new Promise<void>((resolve) => {
    parser.once('end', () => resolve());
    parser.once('error', (error: Error) => {
      problems.push(`the MIME parser stopped: ${error.message}`);
      limitsHit = true;
      // An attachment stream open when the parser stops never ends: do not wait for it.
      stopped = true;
      raw.destroy();
      resolve();
    });
    raw.once('error', (error: Error) => {
      problems.push(`the spool could not be read: ${error.message}`);
      resolve();
    });
    raw.pipe(parser);
  });
  if (!stopped) await Promise.all(pending);
  if (bodies.droppedTextBytes > 0) limitsHit = true;
  for (const part of bodies.badBase64) problems.push(`part ${part}: bytes outside the base64 alphabet`);
  parts.sort((a, b) => a.path.localeCompare(b.path, 'en', { numeric: true }));
  const sized = parts.map((part) => {
    const undecoded = bodies.undecoded.get(part.path);
    return undecoded === undefined ? part : { ...part, size: part.size + undecoded };
  });
  return { envelope, size, headers, parts: sized, problems, limitsHit };
}
