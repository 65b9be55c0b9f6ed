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

/** Which fields go: given the lower-case name and the raw value (after the colon, folding kept). */
export type FieldFilter = (name: string, value: () => string) => boolean;

/**
 * The byte ranges of the header fields `drop` picks, each from the start of its first line to the end of its last
 * continuation line. `head` is the start of the message; a field that may go on past its end is never included,
 * so a cut-off header section only keeps more, never less.
 */
export function headerFieldRanges(head: Buffer, drop: FieldFilter): ByteRange[] {
  const ranges: ByteRange[] = [];
  let fieldStart = -1;
  let colon = -1;
  const finish = (end: number): void => {
    if (fieldStart < 0 || colon < 0) return;
    const name = head.toString('latin1', fieldStart, colon).trimEnd().toLowerCase();
    if (drop(name, () => head.toString('latin1', colon + 1, end))) ranges.push({ start: fieldStart, end });
  };
  for (let lineStart = 0; lineStart < head.length;) {
    const lf = head.indexOf(LF, lineStart);
    if (lf < 0) break; // an unfinished line: its field may continue beyond what was captured
    const first = head[lineStart];
    if (first !== SPACE && first !== TAB) {
      finish(lineStart);
      if (lf === lineStart || (lf === lineStart + 1 && first === CR)) return ranges; // the blank line
      fieldStart = lineStart;
      const at = head.indexOf(COLON, lineStart);
      colon = at > lineStart && at < lf ? at : -1;
    }
    lineStart = lf + 1;
  }
  return ranges; // the header section did not end within `head`: its last field stays
}

/** A filter dropping the fields named in `names` (lower case). */
export function fieldsNamed(names: ReadonlySet<string>): FieldFilter {
  return (name) => names.has(name);
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
