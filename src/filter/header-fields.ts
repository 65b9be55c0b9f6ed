/**
 * Where header fields sit in a message's raw bytes, so the filter can remove incoming copies of the fields it
 * writes itself (X-Spam-Flag and friends) without re-encoding anything else: Sieve scripts and mail clients act
 * on those fields, and a sender must not be able to set them. Hand-written because MIME parsers hand back
 * decoded, unfolded fields without their byte offsets.
 */

export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const COLON = 0x3a;

/**
 * The byte ranges of the header fields named in `names` (lower case), each from the start of its first line to
 * the end of its last continuation line. `head` is the start of the message; a field that may go on past its end
 * is never included, so a cut-off header section only keeps more, never less.
 */
export function headerFieldRanges(head: Buffer, names: ReadonlySet<string>): ByteRange[] {
  const ranges: ByteRange[] = [];
  let fieldStart = -1;
  let dropField = false;
  for (let lineStart = 0; lineStart < head.length;) {
    const lf = head.indexOf(LF, lineStart);
    if (lf < 0) break; // an unfinished line: its field may continue beyond what was captured
    const first = head[lineStart];
    const blank = lf === lineStart || (lf === lineStart + 1 && first === CR);
    const continuation = first === SPACE || first === TAB;
    if (!continuation) {
      if (dropField) ranges.push({ start: fieldStart, end: lineStart });
      if (blank) return ranges;
      fieldStart = lineStart;
      const colon = head.indexOf(COLON, lineStart);
      dropField =
        colon > lineStart &&
        colon < lf &&
        names.has(head.toString('latin1', lineStart, colon).trimEnd().toLowerCase());
    }
    lineStart = lf + 1;
  }
  return ranges; // the header section did not end within `head`: its last field stays
}

/** The ranges of [0, size) that are not in `drop` (sorted, not overlapping). */
export function keptRanges(size: number, drop: readonly ByteRange[]): ByteRange[] {
  const kept: ByteRange[] = [];
  let at = 0;
  for (const range of drop) {
    if (range.start > at) kept.push({ start: at, end: range.start });
    at = range.end;
  }
  if (at < size) kept.push({ start: at, end: size });
  return kept;
}
