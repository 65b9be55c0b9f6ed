/**
 * SMTP DATA encoding for the re-injection (RFC 5321 §4.5.2): a dot that starts a line is doubled, and a bare CR
 * or bare LF becomes CRLF (a dot after a bare CR is doubled too, so no receiver can read `\r.\r` as the end of
 * the data). nodemailer's DataStream does exactly this with a JavaScript test of every byte, which was an
 * eighth of the content filter's time; `stuffDots` gives the same bytes but jumps between line ends with
 * Buffer.indexOf (memchr), and `useFastDotStuffing` puts it in DataStream's place. A property test holds the two
 * to the same output for any input cut anywhere (test/unit/dot-stuffing.test.ts).
 */
import DataStream from 'nodemailer/lib/smtp-connection/data-stream';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const INSERT_LF = Buffer.from('\n');
const INSERT_LF_DOT = Buffer.from('\n.');
const INSERT_CR = Buffer.from('\r');
const INSERT_DOT = Buffer.from('.');

/**
 * The bytes of `chunk` as they go on the wire. `previous` is the last byte of the chunk before (false at the
 * start of the message). Returns `chunk` itself when nothing changes.
 */
export function stuffDots(chunk: Buffer, previous: number | false): Buffer {
  const pieces: Buffer[] = [];
  let copied = 0;
  const insert = (at: number, bytes: Buffer) => {
    if (at > copied) pieces.push(chunk.subarray(copied, at));
    pieces.push(bytes);
    copied = at;
  };
  // Only three kinds of position can need an insertion: right after a CR, at an LF, and right after an LF (or at
  // the very start). They are visited in order, each once.
  const visit = (at: number) => {
    const byte = chunk[at] as number;
    const before = at > 0 ? (chunk[at - 1] as number) : previous;
    if (before === CR && byte !== LF) insert(at, byte === DOT ? INSERT_LF_DOT : INSERT_LF);
    else if (byte === LF && before !== CR) insert(at, INSERT_CR);
    else if (byte === DOT && (before === LF || before === false)) insert(at, INSERT_DOT);
  };
  let visited = -1;
  const visitOnce = (at: number) => {
    if (at > visited && at < chunk.length) {
      visit(at);
      visited = at;
    }
  };
  visitOnce(0);
  let cr = chunk.indexOf(CR);
  let lf = chunk.indexOf(LF);
  while (cr >= 0 || lf >= 0) {
    if (lf < 0 || (cr >= 0 && cr < lf)) {
      visitOnce(cr + 1);
      cr = chunk.indexOf(CR, cr + 1);
    } else {
      visitOnce(lf);
      visitOnce(lf + 1);
      lf = chunk.indexOf(LF, lf + 1);
    }
  }
  if (pieces.length === 0) return chunk;
  pieces.push(chunk.subarray(copied));
  return Buffer.concat(pieces);
}

interface DataStreamInternals {
  inByteCount: number;
  outByteCount: number;
  lastByte: number | false;
  push(chunk: Buffer): boolean;
}

let installed = false;

/** Makes nodemailer's DataStream use stuffDots (once per process; its other behaviour is unchanged). */
export function useFastDotStuffing(): void {
  if (installed) return;
  installed = true;
  DataStream.prototype._transform = function transform(
    this: DataStreamInternals,
    chunk: Buffer | string,
    _encoding: BufferEncoding,
    done: () => void,
  ): void {
    if (chunk.length === 0) {
      done();
      return;
    }
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    this.inByteCount += bytes.length;
    const out = stuffDots(bytes, this.lastByte);
    this.outByteCount += out.length;
    this.push(out);
    this.lastByte = bytes[bytes.length - 1] as number;
    done();
  };
}
