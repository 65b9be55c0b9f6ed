/**
 * The held messages of `filter.quarantine.dir`, as the admin (and the quarantine page) acts on them: list, show,
 * release, remove. The CLI (`postwarden quarantine`), the admin API (`/api/v1/quarantine`) and the quarantine
 * page call these; nothing else releases a message.
 *
 * Release re-injects the message through the re-injection smtpd (`filter.reinject`, which does not filter again:
 * releasing is a person's decision) with `X-Postwarden-Released` in front, then removes it. A release is claimed
 * first by creating `<id>.released` exclusively (O_EXCL), so two releases of one message — two admins, the API
 * and the CLI, a double click — deliver it once: the second one is told `already_released` with who and when.
 * The marker stays until the retention ends (`expireReleaseMarkers`), so a late second release is refused too.
 * When the re-injection fails the claim is withdrawn and the message stays held.
 *
 * Outcomes are values (`not_found`, `already_released`, `failed`), not exceptions. Ids are checked against the
 * quarantine id form before any path is built, so `../` and friends are `not_found`.
 */
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { hostname } from 'node:os';
import type { Config } from '../config/schema.js';
import { QUARANTINE_ID } from '../core/quarantine.js';
import {
  Quarantine,
  releaseHeld,
  type QuarantineEntry,
  type Releaser,
  type ReleaseResult as HeldReleaseResult,
} from '../filter/quarantine.js';
import type { ReinjectTarget } from '../filter/reinject.js';

/** Who released, as the marker and the header record it: at most this long, one line. */
const MAX_BY_CHARS = 200;
/** The largest message `show` returns the header of: the header is read up to this many bytes. */
const MAX_HEADER_BYTES = 256 * 1024;

export interface ReleaseMarker {
  readonly id: string;
  /** ISO time of the release. */
  readonly at: string;
  readonly by: string;
  readonly recipients: readonly string[];
}

export type ShowResult =
  | { readonly status: 'found'; readonly entry: QuarantineEntry; readonly header: string }
  | { readonly status: 'not_found' }
  | { readonly status: 'already_released'; readonly release: ReleaseMarker };

export type ReleaseResult =
  | {
      readonly status: 'released';
      readonly entry: QuarantineEntry;
      readonly recipients: string[];
      readonly response: string;
    }
  | { readonly status: 'not_found' }
  | { readonly status: 'already_released'; readonly release: ReleaseMarker }
  | { readonly status: 'failed'; readonly reason: string };

export type RemoveResult =
  | { readonly status: 'removed' }
  | { readonly status: 'not_found' }
  | { readonly status: 'already_released'; readonly release: ReleaseMarker };

export interface QuarantineFilter {
  /** At most this many, newest first (default 100). */
  readonly limit?: number;
  /** Continue after the page that gave this `next`. */
  readonly cursor?: string;
  /** Only entries held for this recipient (compared in lower case). */
  readonly recipient?: string;
  /** Only entries of this symbol (e.g. `VIRUS`). */
  readonly symbol?: string;
}

export interface QuarantineListing {
  readonly items: QuarantineEntry[];
  /** More entries matched than this page holds (`next` continues). */
  readonly truncated: boolean;
  /** How many entries match the filters, in all pages. */
  readonly total: number;
  /** The cursor of the next (older) page; absent on the last. */
  readonly next?: string;
}

/** The quarantine of a config (paths from the config file's directory) with its release target. */
export function quarantineOpsOf(
  config: Readonly<Config>,
  baseDir: string,
  quarantine?: Quarantine,
): QuarantineOps {
  const q = config.filter.quarantine;
  const target = config.filter.reinject;
  const colon = target.lastIndexOf(':');
  return new QuarantineOps(quarantine ?? new Quarantine(path.resolve(baseDir, q.dir), q.retention_days), {
    host: target.slice(0, colon),
    port: Number(target.slice(colon + 1)),
    name: config.hostname || hostname(),
    timeoutMs: 60_000,
  });
}

export function isQuarantineId(id: string): boolean {
  return QUARANTINE_ID.test(id);
}

/** One line, bounded: `by` ends up in a header field and a log line. */
function oneLine(text: string, max: number): string {
  return (
    text
      .replace(/\p{Cc}+/gu, ' ')
      .trim()
      .slice(0, max) || 'unknown'
  );
}

/** The header of a message (up to the blank line), at most MAX_HEADER_BYTES. */
async function headerOf(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    const sofar = Buffer.concat(chunks);
    const end = sofar.indexOf('\r\n\r\n');
    if (end >= 0) {
      stream.destroy();
      return sofar.subarray(0, end).toString('utf8');
    }
    if (size >= MAX_HEADER_BYTES) {
      stream.destroy();
      return sofar.subarray(0, MAX_HEADER_BYTES).toString('utf8');
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}

export class QuarantineOps {
  constructor(
    readonly quarantine: Quarantine,
    /** Where released messages go (filter.reinject), and this host's name for the header. */
    private readonly target: ReinjectTarget,
  ) {}

  private markerPath(id: string): string {
    return path.join(this.quarantine.dir, `${id}.released`);
  }

  /** The release marker of an id, if it was released within the retention. */
  released(id: string): ReleaseMarker | undefined {
    if (!isQuarantineId(id)) return undefined;
    try {
      return JSON.parse(readFileSync(this.markerPath(id), 'utf8')) as ReleaseMarker;
    } catch {
      return undefined;
    }
  }

  /** One page of the held messages, newest first (the quarantine's index picks it; see src/filter/quarantine.ts). */
  list(filter: QuarantineFilter = {}): QuarantineListing {
    const page = this.quarantine.list({ limit: 100, ...filter });
    return { ...page, truncated: page.next !== undefined };
  }

  private entry(id: string): QuarantineEntry | undefined {
    return isQuarantineId(id) ? this.quarantine.entry(id) : undefined;
  }

  /** The entry and the message's header. */
  async show(id: string): Promise<ShowResult> {
    const entry = this.entry(id);
    if (!entry) return this.missing(id);
    return { status: 'found', entry, header: await headerOf(this.quarantine.open(id)) };
  }

  /** The whole message, decompressed; undefined when there is no such held message. */
  raw(id: string): Readable | undefined {
    return this.entry(id) ? this.quarantine.open(id) : undefined;
  }

  /**
   * Delivers the message to its original recipients (or `to`), then removes it. `by` says who released it
   * (`admin via API`, `bob@example.org`); it is recorded in the header and the marker.
   */
  async release(id: string, by: string, to?: readonly string[]): Promise<ReleaseResult> {
    const entry = this.entry(id);
    if (!entry) return this.missing(id);
    const who = oneLine(by, MAX_BY_CHARS);
    const recipients = to && to.length > 0 ? [...to] : [...entry.recipients];
    const at = new Date();
    const marker: ReleaseMarker = { id, at: at.toISOString(), by: who, recipients };
    let claimed: boolean;
    try {
      claimed = this.claim(marker);
    } catch (error) {
      return { status: 'failed', reason: `cannot mark the release: ${(error as Error).message}` };
    }
    if (!claimed) {
      // The marker may be an instant old and still empty: it is a release all the same.
      const release = this.released(id) ?? { id, at: '', by: 'another release in progress', recipients: [] };
      return { status: 'already_released', release };
    }
    // The delivery itself is the quarantine's (the page's recipient releases go the same way).
    const result = await releaseHeld(this.quarantine, id, { kind: 'admin', name: who }, this.target, to);
    switch (result.kind) {
      case 'released':
        return { status: 'released', entry, recipients: [...result.recipients], response: result.response };
      case 'unavailable':
        rmSync(this.markerPath(id), { force: true });
        return { status: 'failed', reason: result.reason };
      case 'busy':
        rmSync(this.markerPath(id), { force: true });
        return {
          status: 'already_released',
          release: { id, at: '', by: 'a release from the quarantine page, in progress', recipients: [] },
        };
      default: // gone (deleted or expired meanwhile); `already` is a recipient's answer only
        rmSync(this.markerPath(id), { force: true });
        return { status: 'not_found' };
    }
  }

  /**
   * A release from the quarantine page: a recipient's own (the entry records who has it, no marker) or the admin's,
   * claimed and delivered as `release` does, so the page, the API and the CLI never deliver one message twice.
   */
  async releaseAs(id: string, by: Releaser): Promise<HeldReleaseResult> {
    if (by.kind === 'recipient') return releaseHeld(this.quarantine, id, by, this.target);
    const result = await this.release(id, by.name ?? 'the admin (quarantine page)');
    switch (result.status) {
      case 'released':
        return { kind: 'released', recipients: result.recipients, response: result.response, removed: true };
      case 'failed':
        return { kind: 'unavailable', reason: result.reason };
      default: // not_found, or released meanwhile by someone else
        return { kind: 'gone' };
    }
  }

  /** Removes a held message without delivering it. */
  async remove(id: string): Promise<RemoveResult> {
    const entry = this.entry(id);
    if (!entry) return this.missing(id);
    await this.quarantine.remove(id);
    return { status: 'removed' };
  }

  /** Removes release markers older than the retention; returns how many (the expiry job calls it). */
  expireReleaseMarkers(retentionDays: number, now = Date.now()): number {
    if (!existsSync(this.quarantine.dir)) return 0;
    let removed = 0;
    for (const name of readdirSync(this.quarantine.dir)) {
      if (!name.endsWith('.released')) continue;
      const file = path.join(this.quarantine.dir, name);
      try {
        if (now - statSync(file).mtimeMs < retentionDays * 86_400_000) continue;
        rmSync(file, { force: true });
        removed += 1;
      } catch {
        // gone meanwhile
      }
    }
    return removed;
  }

  private missing(
    id: string,
  ): { status: 'not_found' } | { status: 'already_released'; release: ReleaseMarker } {
    const release = this.released(id);
    return release ? { status: 'already_released', release } : { status: 'not_found' };
  }

  /** Creates the marker exclusively: true for the one caller that may deliver. */
  private claim(marker: ReleaseMarker): boolean {
    let fd: number;
    try {
      fd = openSync(this.markerPath(marker.id), 'wx', 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
    try {
      writeSync(fd, `${JSON.stringify(marker)}\n`);
    } finally {
      closeSync(fd);
    }
    return true;
  }
}
