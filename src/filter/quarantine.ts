/**
 * Quarantine: a held message is written compressed (gzip) to `filter.quarantine.dir/<id>.eml.gz` with the
 * filter's header fields in front, fsynced, renamed into place and its directory fsynced, and only then does the
 * filter answer 250 to Postfix (DESIGN.md §4: acknowledged only when safe on disk). Its index entry (who, why,
 * when, size) goes to the state store under `quarantine:<id>` with the retention as expiry, and to a JSON file
 * beside it, so the message can be listed, shown, released or deleted even if the store was reset.
 *
 * Release (`releaseHeld`) re-injects the message through the re-injection smtpd, with `X-Postwarden-Released` in
 * front, and only then changes the quarantine: the admin's release removes the message; a recipient's release
 * (a signed link) records that recipient in the entry's `released`, and removes the message once every recipient
 * has it. A release that the smtpd refuses changes nothing and can be tried again.
 *
 * Listing and expiry go through an index in memory (quarantine-index.ts: built by one scan, kept by hold, release
 * and remove, re-read when another process changed the directory), so a listing reads the files of its page
 * only, and expiry those it removes. The files on disk are the same as ever.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  createWriteStream,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import type { ReleasableBy } from '../core/content.js';
import { QUARANTINE_ID } from '../core/quarantine.js';
import type { Store } from '../core/store.js';
import {
  compareHeld,
  type HeldSummary,
  type ListOptions,
  MAX_INDEXED_ENTRIES,
  pageOf,
  QuarantineIndex,
} from './quarantine-index.js';
import { reinject, ReinjectError, type ReinjectTarget } from './reinject.js';

export type { ListOptions } from './quarantine-index.js';

export interface QuarantineEntry {
  readonly id: string;
  /** ms since the epoch. */
  readonly time: number;
  readonly scanner: string;
  readonly symbol: string;
  readonly reason: string;
  readonly releasableBy: ReleasableBy;
  readonly sender: string;
  readonly recipients: readonly string[];
  readonly size: number;
  readonly subject?: string;
  readonly messageId?: string;
  /** Postfix's queue id of the message when it reached the filter. */
  readonly queueId?: string;
  /** Recipients who released it for themselves (a signed link); it stays held for the others. */
  readonly released?: readonly string[];
}

export const QUARANTINE_KEY_PREFIX = 'quarantine:';

/** One page of a listing, newest first. */
export interface QuarantinePage {
  readonly items: QuarantineEntry[];
  /** How many held messages match the filters, in all pages. */
  readonly total: number;
  /** The cursor of the next (older) page; absent on the last. */
  readonly next?: string;
}

function fsyncPath(file: string): void {
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export class Quarantine {
  private readonly index: QuarantineIndex;

  constructor(
    readonly dir: string,
    private readonly retentionDays: number,
    private readonly store?: Store,
    /** The most entries the index holds (tests make it small); beyond it listings read every file. */
    maxIndexed = MAX_INDEXED_ENTRIES,
  ) {
    this.index = new QuarantineIndex(dir, (id) => this.entry(id), maxIndexed);
  }

  prepare(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  newId(): string {
    return `${new Date().toISOString().slice(0, 10).replace(/-/g, '')}-${randomBytes(8).toString('hex')}`;
  }

  messagePath(id: string): string {
    if (!QUARANTINE_ID.test(id)) throw new Error(`not a quarantine id: ${id}`);
    return path.join(this.dir, `${id}.eml.gz`);
  }

  /** Writes the message durably and indexes it; resolves only when both the file and its entry are on disk. */
  async hold(message: Readable, entry: QuarantineEntry): Promise<void> {
    const final = this.messagePath(entry.id);
    const temporary = `${final}.tmp`;
    try {
      await pipeline(message, createGzip(), createWriteStream(temporary, { mode: 0o600, flags: 'wx' }));
      fsyncPath(temporary);
      renameSync(temporary, final);
      this.writeEntry(entry);
      this.index.put(entry);
    } catch (error) {
      rmSync(temporary, { force: true });
      throw error;
    }
    // The index in the store is a convenience (listing across hosts); the files are the record.
    await this.store
      ?.set(`${QUARANTINE_KEY_PREFIX}${entry.id}`, JSON.stringify(entry), this.retentionDays * 86_400)
      .catch(() => undefined);
  }

  /** Writes the entry's JSON file durably (temporary file, fsync, rename, directory fsync). */
  private writeEntry(entry: QuarantineEntry): void {
    const meta = path.join(this.dir, `${entry.id}.json`);
    writeFileSync(`${meta}.tmp`, `${JSON.stringify(entry)}\n`, { mode: 0o600 });
    fsyncPath(`${meta}.tmp`);
    renameSync(`${meta}.tmp`, meta);
    fsyncPath(this.dir);
  }

  /** Records that `recipients` have the message now; removes it when every recipient has. */
  async markReleased(entry: QuarantineEntry, recipients: readonly string[]): Promise<boolean> {
    const released = [...new Set([...(entry.released ?? []), ...recipients])];
    if (entry.recipients.every((r) => released.includes(r))) {
      await this.remove(entry.id);
      return true;
    }
    const updated = { ...entry, released };
    this.writeEntry(updated);
    this.index.put(updated);
    const left = this.retentionDays * 86_400 - Math.floor((Date.now() - entry.time) / 1000);
    await this.store
      ?.set(`${QUARANTINE_KEY_PREFIX}${entry.id}`, JSON.stringify(updated), Math.max(1, left))
      .catch(() => undefined);
    return false;
  }

  /** The held message, decompressed. */
  open(id: string): Readable {
    const stream = createReadStream(this.messagePath(id));
    const gunzip = createGunzip();
    stream.on('error', (error) => gunzip.destroy(error));
    // A reader that stops early (a header read, a client gone) destroys what it reads; pipe() alone would leave
    // the file open, paused, for ever.
    gunzip.once('close', () => stream.destroy());
    return stream.pipe(gunzip);
  }

  /** The whole held message, decompressed, in memory (at most filter.max_message_bytes). */
  async read(id: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this.open(id)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /**
   * The message's header section (up to the empty line), reading no more than `maxBytes` of the message; the
   * second value says whether it was cut there.
   */
  async header(id: string, maxBytes: number): Promise<{ text: string; truncated: boolean }> {
    const chunks: Buffer[] = [];
    let length = 0;
    const stream = this.open(id);
    try {
      for await (const chunk of stream) {
        chunks.push(chunk as Buffer);
        length += (chunk as Buffer).length;
        const end = Buffer.concat(chunks).indexOf('\r\n\r\n');
        if (end >= 0 && end <= maxBytes) {
          return { text: Buffer.concat(chunks).subarray(0, end).toString('utf8'), truncated: false };
        }
        if (length >= maxBytes) break;
      }
    } finally {
      stream.destroy();
    }
    const all = Buffer.concat(chunks);
    return { text: all.subarray(0, maxBytes).toString('utf8'), truncated: all.length >= maxBytes };
  }

  entry(id: string): QuarantineEntry | undefined {
    if (!QUARANTINE_ID.test(id)) return undefined; // never a path outside the directory
    try {
      return JSON.parse(readFileSync(path.join(this.dir, `${id}.json`), 'utf8')) as QuarantineEntry;
    } catch {
      return undefined;
    }
  }

  /**
   * One page of the held messages, newest first, filtered: the index chooses the page, and each entry of it is
   * read from its file (so it is current; one removed meanwhile is left out).
   */
  list(options: ListOptions = {}): QuarantinePage {
    this.index.refresh();
    const page = this.index.page(options) ?? pageOf(this.readAll(), options);
    const items: QuarantineEntry[] = [];
    for (const summary of page.summaries) {
      const entry = this.entry(summary.id);
      if (entry) items.push(entry);
      else this.index.delete(summary.id);
    }
    return { items, total: page.total, ...(page.next === undefined ? {} : { next: page.next }) };
  }

  /** Every entry on disk, oldest first: what listing does when the index is off (too many entries). */
  private readAll(): HeldSummary[] {
    const entries: QuarantineEntry[] = [];
    if (!existsSync(this.dir)) return entries; // nothing held yet
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith('.json')) continue;
      const entry = this.entry(name.slice(0, -5));
      if (entry) entries.push(entry);
    }
    return entries.sort(compareHeld);
  }

  async remove(id: string): Promise<void> {
    rmSync(this.messagePath(id), { force: true });
    rmSync(path.join(this.dir, `${id}.json`), { force: true });
    this.index.delete(id);
    await this.store?.delete(`${QUARANTINE_KEY_PREFIX}${id}`).catch(() => undefined);
  }

  /**
   * Finds what listing and expiry cannot see, so nothing stays on disk for ever unnoticed: `.tmp` files of a hold
   * that was interrupted (the filter never answered 250, so Postfix sent the message again), a message whose entry
   * file is missing (a crash between the two renames), and an entry file that cannot be read or names another id
   * (edited by hand, a full disk). Such messages are held but cannot be listed, released or expired by their
   * entry; they are removed once their files are older than the retention, and reported until then.
   */
  sweep(now = Date.now()): SweepOutcome {
    if (!existsSync(this.dir)) return { leftovers: 0, broken_removed: 0, unlisted: [] };
    this.index.refresh();
    const names = new Set(readdirSync(this.dir));
    const retentionMs = this.retentionDays * 86_400_000;
    const ageOf = (name: string): number => {
      try {
        return now - statSync(path.join(this.dir, name)).mtimeMs;
      } catch {
        return 0; // gone meanwhile
      }
    };
    let leftovers = 0;
    let brokenRemoved = 0;
    const unlisted: string[] = [];
    for (const name of names) {
      if (name.endsWith('.tmp')) {
        if (ageOf(name) <= LEFTOVER_AGE_MS) continue;
        rmSync(path.join(this.dir, name), { force: true });
        leftovers += 1;
        continue;
      }
      const id = name.endsWith('.eml.gz') ? name.slice(0, -7) : undefined;
      if (id === undefined || !QUARANTINE_ID.test(id)) continue;
      const meta = `${id}.json`;
      if (names.has(meta) && (this.index.has(id) ?? false)) continue;
      if (names.has(meta) && this.entry(id)?.id === id) continue;
      const age = ageOf(name);
      // A hold under way has its message in place a moment before its entry: not yet a broken one.
      if (age <= LEFTOVER_AGE_MS) continue;
      if (age > retentionMs) {
        rmSync(path.join(this.dir, name), { force: true });
        rmSync(path.join(this.dir, meta), { force: true });
        brokenRemoved += 1;
      } else {
        unlisted.push(id);
      }
    }
    return { leftovers, broken_removed: brokenRemoved, unlisted: unlisted.sort() };
  }

  /** Removes what is older than the retention, walking the index's oldest entries; returns how many. */
  async expire(now = Date.now()): Promise<number> {
    this.index.refresh();
    const before = now - this.retentionDays * 86_400_000 + 1;
    const old = this.index.olderThan(before) ?? this.readAll().filter((e) => e.time < before);
    for (const entry of old) await this.remove(entry.id);
    return old.length;
  }
}

/** What a sweep of the quarantine directory found and did (see Quarantine.sweep). */
export interface SweepOutcome {
  /** Temporary files of an interrupted hold, removed (older than an hour). */
  readonly leftovers: number;
  /** Messages without an entry file, or with one that cannot be read, removed after the retention. */
  readonly broken_removed: number;
  /** Held messages not listed (entry file missing, unreadable or naming another id), within the retention. */
  readonly unlisted: readonly string[];
}

/** How old a `.tmp` file, or a message without an entry, must be before a sweep acts on it: no hold takes that long. */
const LEFTOVER_AGE_MS = 3_600_000;

/** Who releases: the admin (any recipients; the message leaves the quarantine) or one recipient (a signed link). */
export type Releaser =
  /** `name` says which admin and how (`the admin (API from 127.0.0.1)`); default `the admin`. */
  | { readonly kind: 'admin'; readonly name?: string }
  | { readonly kind: 'recipient'; readonly address: string };

export type ReleaseResult =
  | {
      readonly kind: 'released';
      readonly recipients: readonly string[];
      /** The re-injection smtpd's reply. */
      readonly response: string;
      /** Whether the message left the quarantine (otherwise other recipients have yet to release it). */
      readonly removed: boolean;
    }
  /** No such held message (released to all, deleted or expired). */
  | { readonly kind: 'gone' }
  /** This recipient released it before. */
  | { readonly kind: 'already' }
  /** Another release of the same message is under way. */
  | { readonly kind: 'busy' }
  | { readonly kind: 'unavailable'; readonly reason: string };

/** Releases under way, by message file: one at a time per message, so no one gets it twice. */
const releasing = new Set<string>();

/**
 * Re-injects a held message (to `to`, else to its recipients who do not have it yet) and then updates the
 * quarantine (see the module header). `target.name` names this host in `X-Postwarden-Released`.
 */
export async function releaseHeld(
  quarantine: Quarantine,
  id: string,
  by: Releaser,
  target: ReinjectTarget,
  to?: readonly string[],
): Promise<ReleaseResult> {
  const key = path.join(quarantine.dir, id);
  if (releasing.has(key)) return { kind: 'busy' };
  releasing.add(key);
  try {
    const entry = quarantine.entry(id);
    if (!entry) return { kind: 'gone' };
    const done = entry.released ?? [];
    if (by.kind === 'recipient' && done.includes(by.address)) return { kind: 'already' };
    const recipients =
      by.kind === 'recipient'
        ? [by.address]
        : to && to.length > 0
          ? [...to]
          : entry.recipients.filter((r) => !done.includes(r));
    const who = by.kind === 'admin' ? (by.name ?? 'the admin') : `${by.address} (release link)`;
    const prefix = Buffer.from(
      `X-Postwarden-Released: ${entry.id} by ${who} on ${target.name}; ${new Date().toUTCString()}\r\n`,
    );
    const message = Buffer.concat([prefix, await quarantine.read(entry.id)]);
    let response: string;
    try {
      response = await reinject(
        target,
        {
          sender: entry.sender,
          recipients: recipients.map((address) => ({ address })),
          size: message.length,
        },
        () => Readable.from([message]),
        new Map(),
      );
    } catch (error) {
      if (!(error instanceof ReinjectError)) throw error;
      return {
        kind: 'unavailable',
        reason: `${error.message}${error.response ? ` (${error.response})` : ''}`,
      };
    }
    let removed = true;
    if (by.kind === 'admin') await quarantine.remove(entry.id);
    else removed = await quarantine.markReleased(entry, recipients);
    return { kind: 'released', recipients, response, removed };
  } finally {
    releasing.delete(key);
  }
}
