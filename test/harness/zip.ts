/**
 * A minimal zip writer for tests: stored or deflated entries, with the knobs to build broken, lying,
 * encrypted-looking and bomb archives (no npm dependency; the format is PKWARE APPNOTE's).
 */
import zlib from 'node:zlib';

export interface ZipSpec {
  readonly name: string;
  readonly data?: Uint8Array;
  /** Deflate the data (default: stored). */
  readonly deflate?: boolean;
  /** General-purpose flags to add (0x1 encrypted, 0x40 strong encryption); 0x800 is set for non-ASCII names. */
  readonly flags?: number;
  /** Compression method to declare, when it is not 0 or 8. */
  readonly method?: number;
  /** The uncompressed size to declare, when it should lie. */
  readonly declaredSize?: number;
  /** The data to write as is (already compressed or "encrypted"). */
  readonly raw?: Uint8Array;
  /** The CRC-32 to declare, when it should lie. */
  readonly crc?: number;
}

export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
}
export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

export function zip(specs: readonly ZipSpec[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const spec of specs) {
    const data = Buffer.from(spec.data ?? new Uint8Array(0));
    const name = Buffer.from(spec.name, 'utf8');
    const method = spec.method ?? (spec.deflate ? 8 : 0);
    const body = spec.raw ? Buffer.from(spec.raw) : spec.deflate ? zlib.deflateRawSync(data) : data;
    const flags = (spec.flags ?? 0) | (/^[\x20-\x7e]*$/.test(spec.name) ? 0 : 0x800);
    const crc = spec.crc ?? zlib.crc32(data);
    const size = spec.declaredSize ?? data.length;
    const common = Buffer.concat([
      u16(20),
      u16(flags),
      u16(method),
      u16(0),
      u16(0x21),
      u32(crc),
      u32(body.length),
      u32(size),
      u16(name.length),
      u16(0),
    ]);
    const local = Buffer.concat([u32(0x04034b50), common, name, body]);
    centrals.push(
      Buffer.concat([u32(0x02014b50), u16(20), common, u16(0), u16(0), u16(0), u32(0), u32(offset), name]),
    );
    locals.push(local);
    offset += local.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.concat([
    u32(0x06054b50),
    u16(0),
    u16(0),
    u16(specs.length),
    u16(specs.length),
    u32(directory.length),
    u32(offset),
    u16(0),
  ]);
  return Buffer.concat([...locals, directory, end]);
}
