/**
 * The quarantine's index in memory: one small summary per held message (id, time, size, scanner, symbol,
 * releasableBy, recipients, released — never the message, its subject, sender or reason), sorted oldest first,
 * so a listing is a page of it and expiry walks its oldest end, instead of reading every `<id>.json` each time.
 *
 * Contract. Built by one scan of the directory on first use; kept current by the quarantine's own hold, release
 * and remove (`put`, `delete`). Other processes (the CLI beside the `serve` daemon) change the directory too, so
 * `refresh()` stats it on every call: when its inode or mtime changed since the last scan, the names are read
 * again (no file is read but those of ids not yet known; ids gone are dropped). A directory changed within
 * RACY_MS of a scan is not trusted to stay described by its mtime (timestamps are as coarse as the kernel's clock
 * tick: two changes in one tick leave one mtime), so the next call scans the names again; once the directory has
 * been still for RACY_MS, a call costs one stat. A summary's immutable fields are those of the file; `released`
 * may lag another process's release, which is why listings read each entry of the page from its file.
 *
 * Memory: about 350 bytes of heap per entry (measured: 20 000 entries of one recipient each, 6.7 MB; symbols,
 * scanners and recipients are shared strings, up to MAX_INTERNED of them), plus ~60 bytes per further recipient
 * not shared. At most `maxEntries` are indexed (MAX_INDEXED_ENTRIES: ~70 MB); a directory holding more turns the
 * index off (`overflowed`) and the quarantine lists by reading every file, as it did before the index, until
 * expiry brings it under the bound again.
 *
 * Failures: a `.json` that cannot be read or parsed is left out (as the listing always did) and tried again at the
 * next scan; a missing directory is an empty quarantine.
 */
import { readdirSync, statSync } from 'node:fs';
import type { ReleasableBy } from '../core/content.js';
import { QUARANTINE_CURSOR, QUARANTINE_ID } from '../core/quarantine.js';

/** What the index keeps of an entry: enough to order, filter and count; the rest stays in the file. */
export interface HeldSummary {
  readonly id: string;
  /** ms since the epoch. */
  readonly time: number;
  readonly size: number;
  readonly scanner: string;
  readonly symbol: string;
  readonly releasableBy: ReleasableBy;
  readonly recipients: readonly string[];
  readonly released?: readonly string[];
}

export interface ListOptions {
  /** At most this many, newest first (default 100). */
  readonly limit?: number;
  /** Continue after this entry: the `next` of the previous page. */
  readonly cursor?: string;
  /** Only entries held for this recipient (compared in lower case). */
  readonly recipient?: string;
  /** Only entries of this symbol (e.g. `VIRUS`). */
  readonly symbol?: string;
}

export interface SummaryPage {
  readonly summaries: HeldSummary[];
  /** How many entries match the filters, in all pages. */
  readonly total: number;
  /** The cursor of the next (older) page; absent on the last. */
  readonly next?: string;
}

/** The most entries indexed (~70 MB at ~350 bytes each); beyond it the quarantine lists by reading the files. */
export const MAX_INDEXED_ENTRIES = 200_000;
/** A directory changed this recently may change again within one timestamp tick: its mtime is not trusted. */
const RACY_MS = 2_000;
/** Distinct strings shared between summaries (symbols, scanners, recipients of a spam wave); then no more. */
const MAX_INTERNED = 10_000;

/** Ascending order: time, then id (ids are unique). */
export function compareHeld(a: { time: number; id: string }, b: { time: number; id: string }): number {
  return a.time - b.time || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** `<time>.<id>`: the position after which the next page starts. */
export function cursorOf(summary: { time: number; id: string }): string {
  return `${summary.time}.${summary.id}`;
}

function parseCursor(cursor: string): { time: number; id: string } | undefined {
  if (!QUARANTINE_CURSOR.test(cursor)) return undefined;
  const dot = cursor.indexOf('.');
  return { time: Number(cursor.slice(0, dot)), id: cursor.slice(dot + 1) };
}

/** The first position in `sorted` whose entry is not before `key`. */
function lowerBound(sorted: readonly HeldSummary[], key: { time: number; id: string }): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (compareHeld(sorted[mid] as HeldSummary, key) < 0) low = mid + 1;
    else high = mid;
  }
  return low;
}

/**
 * One page of `sorted` (oldest first), newest first, after `options.cursor`, with the filters applied. An invalid
 * cursor starts from the newest.
 */
export function pageOf(sorted: readonly HeldSummary[], options: ListOptions = {}): SummaryPage {
  const limit = Math.max(1, options.limit ?? 100);
  const recipient = options.recipient?.toLowerCase();
  const matches = (s: HeldSummary): boolean =>
    (options.symbol === undefined || s.symbol === options.symbol) &&
    (recipient === undefined || s.recipients.some((r) => r.toLowerCase() === recipient));
  const filtered = options.symbol !== undefined || recipient !== undefined;
  const after = options.cursor === undefined ? undefined : parseCursor(options.cursor);
  const start = after ? lowerBound(sorted, after) : sorted.length;
  const summaries: HeldSummary[] = [];
  let more = false;
  for (let i = start - 1; i >= 0; i--) {
    const s = sorted[i] as HeldSummary;
    if (!matches(s)) continue;
    if (summaries.length === limit) {
      more = true;
      break;
    }
    summaries.push(s);
  }
  let total = sorted.length;
  if (filtered) {
    total = 0;
    for (const s of sorted) if (matches(s)) total += 1;
  }
  const last = summaries[summaries.length - 1];
  return { summaries, total, ...(more && last ? { next: cursorOf(last) } : {}) };
}

export class QuarantineIndex {
  private readonly byId = new Map<string, HeldSummary>();
  /** The same summaries, oldest first. */
  private sorted: HeldSummary[] = [];
  /** `inode:mtime` of the directory when its names were last read and it had been still; else undefined. */
  private known: string | undefined;
  private scanned = false;
  private readonly interned = new Map<string, string>();
  /** The directory held more than maxEntries entries at the last scan: the index is off. */
  overflowed = false;

  constructor(
    private readonly dir: string,
    /** Reads an entry's file; undefined when it is missing or unreadable. */
    private readonly read: (id: string) => HeldSummary | undefined,
    private readonly maxEntries = MAX_INDEXED_ENTRIES,
  ) {}

  get size(): number {
    return this.sorted.length;
  }

  /** Brings the index up to date with the directory: one stat, and a scan of the names when it changed. */
  refresh(): void {
    let signature: string;
    let mtimeMs: number;
    try {
      const st = statSync(this.dir, { bigint: true });
      signature = `${st.ino}:${st.mtimeNs}`;
      mtimeMs = Number(st.mtimeMs);
    } catch {
      this.clear();
      this.scanned = true;
      this.known = 'absent';
      return;
    }
    if (this.scanned && signature === this.known) return;
    const started = Date.now();
    this.scan();
    this.known = started - mtimeMs >= RACY_MS ? signature : undefined;
  }

  /** The page of `options` from the index (callers refresh first); undefined when the index is off. */
  page(options: ListOptions = {}): SummaryPage | undefined {
    return this.overflowed ? undefined : pageOf(this.sorted, options);
  }

  /** Entries held before `before` (ms since the epoch), oldest first; undefined when the index is off. */
  olderThan(before: number): HeldSummary[] | undefined {
    if (this.overflowed) return undefined;
    const end = lowerBound(this.sorted, { time: before, id: '' });
    return this.sorted.slice(0, end);
  }

  /** Adds or replaces the summary of an entry this process wrote. */
  put(entry: HeldSummary): void {
    if (this.overflowed) return;
    const summary = this.summarize(entry);
    this.remove(entry.id);
    if (this.byId.size >= this.maxEntries) {
      // Over the bound: off until a scan finds the directory under it again.
      this.overflowed = true;
      this.clear();
      this.known = undefined;
      return;
    }
    this.byId.set(summary.id, summary);
    const at = lowerBound(this.sorted, summary);
    if (at === this.sorted.length) this.sorted.push(summary);
    else this.sorted.splice(at, 0, summary);
  }

  /** Whether the entry is indexed (readable, under the bound); undefined while the index is off. */
  has(id: string): boolean | undefined {
    return this.overflowed ? undefined : this.byId.has(id);
  }

  /** Forgets an entry (removed by this process). */
  delete(id: string): void {
    this.remove(id);
  }

  private remove(id: string): void {
    const old = this.byId.get(id);
    if (!old) return;
    this.byId.delete(id);
    const at = lowerBound(this.sorted, old);
    if (this.sorted[at] === old) this.sorted.splice(at, 1);
  }

  private clear(): void {
    this.byId.clear();
    this.sorted = [];
  }

  /** Reads the directory's names: new ids are read from their files, ids gone are dropped. */
  private scan(): void {
    this.scanned = true;
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      this.clear();
      return;
    }
    const ids = new Set<string>();
    for (const name of names) {
      if (!name.endsWith('.json')) continue;
      const id = name.slice(0, -5);
      if (QUARANTINE_ID.test(id)) ids.add(id);
    }
    if (ids.size > this.maxEntries) {
      this.overflowed = true;
      this.clear();
      return;
    }
    this.overflowed = false;
    let removed = false;
    for (const id of this.byId.keys()) {
      if (ids.has(id)) continue;
      this.byId.delete(id);
      removed = true;
    }
    if (removed) this.sorted = this.sorted.filter((s) => this.byId.has(s.id));
    const added: HeldSummary[] = [];
    for (const id of ids) {
      if (this.byId.has(id)) continue;
      const entry = this.read(id);
      if (!entry || entry.id !== id) continue;
      const summary = this.summarize(entry);
      this.byId.set(id, summary);
      added.push(summary);
    }
    if (added.length === 0) return;
    for (const summary of added) this.sorted.push(summary);
    this.sorted.sort(compareHeld);
  }

  /** The fields the index keeps, strings shared where they repeat. */
  private summarize(entry: HeldSummary): HeldSummary {
    return {
      id: entry.id,
      time: entry.time,
      size: entry.size,
      scanner: this.intern(entry.scanner),
      symbol: this.intern(entry.symbol),
      releasableBy: this.intern(entry.releasableBy) as ReleasableBy,
      recipients: entry.recipients.map((r) => this.intern(r)),
      ...(entry.released && entry.released.length > 0
        ? { released: entry.released.map((r) => this.intern(r)) }
        : {}),
    };
  }

  private intern(text: string): string {
    const known = this.interned.get(text);
    if (known !== undefined) return known;
    if (this.interned.size < MAX_INTERNED) this.interned.set(text, text);
    return text;
  }
}
