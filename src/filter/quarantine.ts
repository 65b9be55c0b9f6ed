/**
 * Quarantine: a held message is written compressed (gzip) to `filter.quarantine.dir/<id>.eml.gz` with the
 * filter's header fields in front, fsynced, renamed into place and its directory fsynced, and only then does the
 * filter answer 250 to Postfix (DESIGN.md §4: acknowledged only when safe on disk). Its index entry (who, why,
 * when, size) goes to the state store under `quarantine:<id>` with the retention as expiry, and to a JSON file
 * beside it, so the message can be listed, shown, released or deleted even if the store was reset.
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
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import type { ReleasableBy } from '../core/content.js';
import type { Store } from '../core/store.js';

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
}

export const QUARANTINE_KEY_PREFIX = 'quarantine:';

function fsyncPath(file: string): void {
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export class Quarantine {
  constructor(
    readonly dir: string,
    private readonly retentionDays: number,
    private readonly store?: Store,
  ) {}

  prepare(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  newId(): string {
    return `${new Date().toISOString().slice(0, 10).replace(/-/g, '')}-${randomBytes(8).toString('hex')}`;
  }

  messagePath(id: string): string {
    if (!/^[0-9]{8}-[0-9a-f]{16}$/.test(id)) throw new Error(`not a quarantine id: ${id}`);
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
      const meta = path.join(this.dir, `${entry.id}.json`);
      writeFileSync(meta, `${JSON.stringify(entry)}\n`, { mode: 0o600 });
      fsyncPath(meta);
      fsyncPath(this.dir);
    } catch (error) {
      rmSync(temporary, { force: true });
      throw error;
    }
    // The index in the store is a convenience (listing across hosts); the files are the record.
    await this.store
      ?.set(`${QUARANTINE_KEY_PREFIX}${entry.id}`, JSON.stringify(entry), this.retentionDays * 86_400)
      .catch(() => undefined);
  }

  /** The held message, decompressed. */
  open(id: string): Readable {
    const stream = createReadStream(this.messagePath(id));
    const gunzip = createGunzip();
    stream.on('error', (error) => gunzip.destroy(error));
    return stream.pipe(gunzip);
  }

  entry(id: string): QuarantineEntry | undefined {
    try {
      return JSON.parse(readFileSync(path.join(this.dir, `${id}.json`), 'utf8')) as QuarantineEntry;
    } catch {
      return undefined;
    }
  }

  /** Every entry on disk, newest first. */
  list(): QuarantineEntry[] {
    const entries: QuarantineEntry[] = [];
    if (!existsSync(this.dir)) return entries; // nothing held yet
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith('.json')) continue;
      const entry = this.entry(name.slice(0, -5));
      if (entry) entries.push(entry);
    }
    return entries.sort((a, b) => b.time - a.time);
  }

  async remove(id: string): Promise<void> {
    rmSync(this.messagePath(id), { force: true });
    rmSync(path.join(this.dir, `${id}.json`), { force: true });
    await this.store?.delete(`${QUARANTINE_KEY_PREFIX}${id}`).catch(() => undefined);
  }

  /** Removes what is older than the retention; returns how many. */
  async expire(now = Date.now()): Promise<number> {
    let removed = 0;
    for (const entry of this.list()) {
      if (now - entry.time < this.retentionDays * 86_400_000) continue;
      await this.remove(entry.id);
      removed += 1;
    }
    return removed;
  }
}
