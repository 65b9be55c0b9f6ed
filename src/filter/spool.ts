/**
 * The spool: each message is streamed once from the SMTP DATA stream into a file (mode 0600) under
 * `filter.spool_dir`, bounded by `filter.max_message_bytes`, while its raw bytes are inspected for what MIME
 * parsers hide: NUL bytes, bare LF line ends and lines over RFC 5321's 998 characters. Scanners and the
 * re-injection read the file again as often as they need; it is removed when the message is done (delivered,
 * quarantined or answered 4xx), so a crash leaves at most files that a start-up sweep removes.
 *
 * The start of the header section is kept in memory (bounded) to find incoming copies of the fields the filter
 * writes itself; the message as delivered leaves them out (see header-fields.ts).
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { MessageSource } from '../core/content.js';
import { headerFieldRanges, keptRanges, type ByteRange, type FieldFilter } from './header-fields.js';

export interface SpooledMessage extends MessageSource {
  readonly id: string;
  readonly path: string;
  /** True when the message went over max bytes (the rest was read and thrown away). */
  readonly sizeExceeded: boolean;
  /** It starts with a folded line, which would continue the last header field put in front of it. */
  readonly startsFolded: boolean;
  /** What the raw bytes show: NUL bytes, bare LF, overlong lines. */
  readonly problems: readonly string[];
  /** A stream of the spooled bytes as they came. */
  open(): Readable;
  /** The message as delivered: `prefix` (the filter's own header fields), then the spooled bytes without incoming
   * copies of the fields the spool was told to drop. */
  forDelivery(prefix: Buffer): Readable;
  remove(): void;
}

const MAX_LINE = 998;

/** Header bytes kept to find the fields to drop: far more than any real header section; a longer one keeps its
 * fields past this point. */
const MAX_HEAD_BYTES = 256 * 1024;

/** Counts what a MIME parser smooths over, across chunk boundaries, without copying the bytes. */
class RawInspector extends Transform {
  nul = 0;
  bareLf = 0;
  longest = 0;
  bytes = 0;
  private lineLength = 0;
  private lastByte = -1;
  /** The start of the message, up to the end of the header section or MAX_HEAD_BYTES. */
  readonly head: Buffer[] = [];
  private headBytes = 0;
  private headEnded = false;

  constructor(private readonly maxBytes: number) {
    super();
  }

  get exceeded(): boolean {
    return this.bytes > this.maxBytes;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.bytes === 0 && chunk.length > 0) this.firstByte = chunk[0] ?? -1;
    if (!this.headEnded) this.keepHead(chunk);
    this.bytes += chunk.length;
    if (chunk.indexOf(0) >= 0) for (const byte of chunk) if (byte === 0) this.nul += 1;
    let from = 0;
    for (let lf = chunk.indexOf(10); lf >= 0; lf = chunk.indexOf(10, from)) {
      const before = lf > 0 ? chunk[lf - 1] : this.lastByte;
      if (before !== 13) this.bareLf += 1;
      this.longest = Math.max(this.longest, this.lineLength + lf - from);
      this.lineLength = 0;
      from = lf + 1;
    }
    this.lineLength += chunk.length - from;
    this.longest = Math.max(this.longest, this.lineLength);
    this.lastByte = chunk[chunk.length - 1] ?? this.lastByte;
    // Past the bound, keep reading (the client must finish DATA) but stop writing.
    done(null, this.exceeded ? undefined : chunk);
  }

  private keepHead(chunk: Buffer): void {
    const part = chunk.subarray(0, MAX_HEAD_BYTES - this.headBytes);
    // The blank line that ends the header section may straddle chunks: look at the last two bytes kept too.
    const previous = this.head.at(-1);
    const seam = Buffer.concat([previous ? previous.subarray(-2) : Buffer.alloc(0), part]);
    this.head.push(part);
    this.headBytes += part.length;
    this.headEnded = this.headBytes >= MAX_HEAD_BYTES || seam.includes('\n\n') || seam.includes('\n\r\n');
  }

  /** The first byte: a message that starts with a space or tab begins with a folded (continuation) line. */
  firstByte = -1;

  problems(): string[] {
    const found: string[] = [];
    if (this.firstByte === 0x20 || this.firstByte === 0x09)
      found.push('the message starts with a folded line');
    if (this.nul > 0) found.push(`${this.nul} NUL byte(s) in the message`);
    if (this.bareLf > 0) found.push(`${this.bareLf} line(s) ended by a bare LF`);
    if (this.longest > MAX_LINE)
      found.push(`a line of ${this.longest} characters (RFC 5321 allows ${MAX_LINE})`);
    return found;
  }
}

export class Spool {
  constructor(
    readonly dir: string,
    private readonly maxBytes: number,
    /** Header fields that the message as delivered leaves out; none without it. */
    private readonly dropField?: FieldFilter,
  ) {}

  /** Creates the directory (0700) and removes what an earlier run left behind; returns how many. */
  prepare(): number {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    let removed = 0;
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith('.eml')) continue;
      rmSync(path.join(this.dir, name), { force: true });
      removed += 1;
    }
    return removed;
  }

  async write(data: Readable): Promise<SpooledMessage> {
    const id = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
    const file = path.join(this.dir, `${id}.eml`);
    const inspector = new RawInspector(this.maxBytes);
    try {
      await pipeline(data, inspector, createWriteStream(file, { mode: 0o600, flags: 'wx' }));
    } catch (error) {
      rmSync(file, { force: true });
      throw error;
    }
    const size = inspector.exceeded ? inspector.bytes : statSync(file).size;
    const open = (): Readable => createReadStream(file, { highWaterMark: READ_CHUNK });
    const drop = this.dropField ? headerFieldRanges(Buffer.concat(inspector.head), this.dropField) : [];
    const kept = drop.length > 0 ? keptRanges(size, drop) : undefined;
    return {
      id,
      path: file,
      size,
      sizeExceeded: inspector.exceeded,
      startsFolded: inspector.firstByte === 0x20 || inspector.firstByte === 0x09,
      problems: inspector.problems(),
      open,
      forDelivery: (prefix) => concatenated(prefix, file, kept),
      chunks: () => open(),
      remove: () => rmSync(file, { force: true }),
    };
  }
}

const READ_CHUNK = 256 * 1024;

/** `prefix`, then the file's bytes (only the `kept` ranges of them when given), as one stream. */
function concatenated(prefix: Buffer, file: string, kept: readonly ByteRange[] | undefined): Readable {
  return Readable.from(
    (async function* () {
      if (prefix.length > 0) yield prefix;
      if (!kept) {
        yield* createReadStream(file, { highWaterMark: READ_CHUNK });
        return;
      }
      for (const range of kept) {
        if (range.end > range.start) {
          yield* createReadStream(file, {
            start: range.start,
            end: range.end - 1,
            highWaterMark: READ_CHUNK,
          });
        }
      }
    })(),
    { objectMode: false },
  );
}
