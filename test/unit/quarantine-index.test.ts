/**
 * The quarantine's index (src/filter/quarantine-index.ts) over real directories: listings after hold, release and
 * remove; a directory changed by another Quarantine (another process) is picked up, and an unchanged one is
 * served from memory; paging order and bounds, filters, totals and cursors; entries written as before the index
 * (the on-disk format is unchanged); expiry from the oldest end; the sweep of held messages without a readable
 * entry and of interrupted holds' temporary files; the bound on indexed entries.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { Quarantine, type QuarantineEntry } from '../../src/filter/quarantine.js';

const work = mkdtempSync('/tmp/pw-h-qindex-');
after(() => rmSync(work, { recursive: true, force: true }));

let dirs = 0;
function freshDir(): string {
  const dir = path.join(work, `q${(dirs += 1)}`);
  mkdirSync(dir, { mode: 0o700 });
  return dir;
}

const T0 = Date.UTC(2026, 0, 1);
const idOf = (n: number) => `20260101-${n.toString(16).padStart(16, '0')}`;

function entryOf(n: number, over: Partial<QuarantineEntry> = {}): QuarantineEntry {
  return {
    id: idOf(n),
    time: T0 + n * 1000,
    scanner: 'spam',
    symbol: n % 3 === 0 ? 'VIRUS_FOUND' : 'SPAM_HELD',
    reason: 'spam score 20.0 reached 12',
    releasableBy: 'recipient',
    sender: `s${n}@spam.test`,
    recipients: [`user${n % 4}@example.test`, 'all@example.test'],
    size: 100 + n,
    subject: `offer ${n}`,
    ...over,
  };
}

/** Writes an entry's files as any version of postwarden did (a JSON line beside the message). */
function writeOnDisk(dir: string, entry: QuarantineEntry): void {
  writeFileSync(path.join(dir, `${entry.id}.json`), `${JSON.stringify(entry)}\n`, { mode: 0o600 });
  writeFileSync(path.join(dir, `${entry.id}.eml.gz`), '');
}

async function hold(q: Quarantine, entry: QuarantineEntry): Promise<void> {
  await q.hold(Readable.from([Buffer.from(`Subject: ${entry.subject ?? ''}\r\n\r\nbody\r\n`)]), entry);
}

/** Sets the directory's times well in the past: a directory that has been still (its mtime is trusted). */
function still(dir: string, at = new Date(Date.now() - 60_000)): void {
  utimesSync(dir, at, at);
}

const ids = (entries: readonly QuarantineEntry[]) => entries.map((e) => e.id);

describe('quarantine index: kept by the quarantine itself', () => {
  it('lists after hold, recipient release and remove', async () => {
    const q = new Quarantine(freshDir(), 30);
    assert.deepEqual(q.list(), { items: [], total: 0 });
    for (const n of [1, 2, 3]) await hold(q, entryOf(n));
    assert.deepEqual(ids(q.list().items), [idOf(3), idOf(2), idOf(1)]);
    assert.equal(q.list().total, 3);

    const two = q.entry(idOf(2));
    assert.ok(two);
    assert.equal(await q.markReleased(two, ['user2@example.test']), false, 'one recipient is left');
    assert.deepEqual(q.list().items.find((e) => e.id === idOf(2))?.released, ['user2@example.test']);
    assert.equal(await q.markReleased(q.entry(idOf(2)) ?? two, ['all@example.test']), true, 'all have it');
    assert.deepEqual(ids(q.list().items), [idOf(3), idOf(1)]);

    await q.remove(idOf(3));
    assert.deepEqual(ids(q.list().items), [idOf(1)]);
    assert.equal(q.list().total, 1);
  });

  it('a missing directory is an empty quarantine, and one created later is listed', async () => {
    const dir = path.join(work, 'later');
    const q = new Quarantine(dir, 30);
    assert.deepEqual(q.list(), { items: [], total: 0 });
    q.prepare();
    writeOnDisk(dir, entryOf(5));
    assert.deepEqual(ids(q.list().items), [idOf(5)]);
  });
});

describe('quarantine index: another process changes the directory', () => {
  it('holds, releases and removals by another Quarantine on the directory are picked up', async () => {
    const dir = freshDir();
    const daemon = new Quarantine(dir, 30);
    const cli = new Quarantine(dir, 30);
    await hold(daemon, entryOf(1));
    assert.equal(cli.list().total, 1);
    await hold(cli, entryOf(2));
    assert.deepEqual(ids(daemon.list().items), [idOf(2), idOf(1)], 'added by the other');
    await cli.remove(idOf(1));
    assert.deepEqual(ids(daemon.list().items), [idOf(2)], 'removed by the other');
    await cli.markReleased(entryOf(2), ['user2@example.test']);
    assert.deepEqual(
      daemon.list().items[0]?.released,
      ['user2@example.test'],
      'the page is read from the files',
    );
  });

  it('after the directory was still, a change by another process is seen at the next call', async () => {
    const dir = freshDir();
    const q = new Quarantine(dir, 30);
    writeOnDisk(dir, entryOf(1));
    still(dir);
    assert.equal(q.list().total, 1);
    writeOnDisk(dir, entryOf(2)); // the directory's mtime moves on
    assert.deepEqual(ids(q.list().items), [idOf(2), idOf(1)]);
    rmSync(path.join(dir, `${idOf(1)}.json`));
    still(dir, new Date(Date.now() - 30_000));
    assert.deepEqual(ids(q.list().items), [idOf(2)]);
  });

  it('an unchanged, still directory is listed from memory: one stat, no directory read', () => {
    const dir = freshDir();
    const q = new Quarantine(dir, 30);
    writeOnDisk(dir, entryOf(1));
    const at = new Date(Date.now() - 60_000);
    still(dir, at);
    assert.equal(q.list().total, 1);
    // A file slipped in with the directory's mtime set back: the index cannot know, and does not look.
    writeOnDisk(dir, entryOf(2));
    still(dir, at);
    assert.equal(q.list().total, 1, 'served from the index');
    assert.equal(new Quarantine(dir, 30).list().total, 2, 'a new index scans');
  });

  it('a directory removed and made again is scanned again', async () => {
    const dir = freshDir();
    const q = new Quarantine(dir, 30);
    await hold(q, entryOf(1));
    assert.equal(q.list().total, 1);
    rmSync(dir, { recursive: true });
    assert.equal(q.list().total, 0);
    q.prepare();
    writeOnDisk(dir, entryOf(7));
    assert.deepEqual(ids(q.list().items), [idOf(7)]);
  });
});

describe('quarantine index: pages', () => {
  const dir = freshDir();
  // 250 entries written as before the index; 10 of them share one time (ties are ordered by id).
  for (let n = 0; n < 250; n++)
    writeOnDisk(dir, entryOf(n, n >= 100 && n < 110 ? { time: T0 + 100_000 } : {}));
  writeFileSync(path.join(dir, 'not-an-entry.json'), '{}\n');
  writeFileSync(path.join(dir, `${idOf(999)}.json`), '{ torn');
  const q = new Quarantine(dir, 30);
  const expected = Array.from({ length: 250 }, (_, n) =>
    entryOf(n, n >= 100 && n < 110 ? { time: T0 + 100_000 } : {}),
  )
    .sort((a, b) => b.time - a.time || (a.id < b.id ? 1 : -1))
    .map((e) => e.id);

  it('pages follow each other newest first, without gap or repeat, to the end', () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    const sizes: number[] = [];
    do {
      const page = q.list({ limit: 100, ...(cursor === undefined ? {} : { cursor }) });
      assert.equal(page.total, 250);
      sizes.push(page.items.length);
      seen.push(...ids(page.items));
      cursor = page.next;
    } while (cursor !== undefined);
    assert.deepEqual(sizes, [100, 100, 50]);
    assert.deepEqual(seen, expected);
  });

  it('bounds: default 100; limit beyond the total; exactly the total; a cursor past the end; a bad cursor', () => {
    assert.equal(q.list().items.length, 100);
    const all = q.list({ limit: 1000 });
    assert.equal(all.items.length, 250);
    assert.equal(all.next, undefined);
    assert.equal(q.list({ limit: 250 }).next, undefined, 'no next page when the page ends with the last');
    const last = q.list({ limit: 249 });
    assert.ok(last.next);
    const tail = q.list({ limit: 249, cursor: last.next });
    assert.deepEqual(ids(tail.items), [expected[249]]);
    assert.equal(tail.next, undefined);
    assert.deepEqual(q.list({ cursor: `${T0 - 1}.${idOf(0)}` }).items, []);
    assert.deepEqual(ids(q.list({ limit: 3, cursor: '../../etc' }).items), expected.slice(0, 3));
  });

  it('a cursor stays valid when entries are added or its own entry is removed', async () => {
    const first = q.list({ limit: 10 });
    assert.ok(first.next);
    await hold(q, entryOf(500)); // newer than all: not on the older pages
    const lastOfFirst = first.items[9];
    assert.ok(lastOfFirst);
    await q.remove(lastOfFirst.id);
    const second = q.list({ limit: 5, cursor: first.next });
    assert.deepEqual(ids(second.items), expected.slice(10, 15));
  });

  it('filters: recipient (any case) and symbol, with their totals and cursors', () => {
    const byRecipient = q.list({ recipient: 'USER1@Example.TEST', limit: 20 });
    const wanted = expected.filter((id) => q.entry(id)?.recipients.includes('user1@example.test'));
    assert.equal(byRecipient.total, wanted.length);
    assert.deepEqual(ids(byRecipient.items), wanted.slice(0, 20));
    assert.ok(byRecipient.next);
    const more = q.list({ recipient: 'user1@example.test', limit: 20, cursor: byRecipient.next });
    assert.deepEqual(ids(more.items), wanted.slice(20, 40));
    const virus = q.list({ symbol: 'VIRUS_FOUND', limit: 1000 });
    assert.ok(virus.items.every((e) => e.symbol === 'VIRUS_FOUND'));
    assert.equal(virus.total, virus.items.length);
    assert.deepEqual(q.list({ recipient: 'nobody@example.test' }), { items: [], total: 0 });
  });
});

describe('quarantine index: expiry', () => {
  it('removes what is older than the retention, from the oldest end, and lists the rest', async () => {
    const dir = freshDir();
    const q = new Quarantine(dir, 1);
    const now = T0 + 10 * 86_400_000;
    // ages: 3 days, exactly 1 day, 1 day less 1 ms, 1 hour
    const times = [now - 3 * 86_400_000, now - 86_400_000, now - 86_400_000 + 1, now - 3_600_000];
    for (const [n, time] of times.entries()) await hold(q, entryOf(n, { time }));
    assert.equal(await q.expire(now), 2);
    assert.deepEqual(ids(q.list().items), [idOf(3), idOf(2)]);
    assert.equal(q.entry(idOf(0)), undefined, 'the files are gone');
    assert.equal(await new Quarantine(dir, 1).expire(now), 0, 'another instance finds nothing more');
    assert.equal(await new Quarantine(dir, 1).expire(now + 86_400_000), 2);
  });
});

describe('quarantine sweep: what listing and expiry cannot see', () => {
  it('reports held messages without a readable entry, removes them after the retention, and old .tmp files', async () => {
    const dir = freshDir();
    const q = new Quarantine(dir, 1);
    const now = Date.now();
    const age = (name: string, ms: number) => {
      const at = new Date(now - ms);
      utimesSync(path.join(dir, name), at, at);
    };
    await hold(q, entryOf(1)); // a good entry: never touched by the sweep
    writeFileSync(path.join(dir, `${idOf(2)}.eml.gz`), ''); // no entry file (a crash between the writes)
    writeOnDisk(dir, entryOf(3));
    writeFileSync(path.join(dir, `${idOf(3)}.json`), '{"id": broken'); // unreadable
    writeOnDisk(dir, entryOf(4));
    writeFileSync(path.join(dir, `${idOf(4)}.json`), JSON.stringify(entryOf(4, { id: idOf(5) }))); // another id
    writeFileSync(path.join(dir, `${idOf(6)}.eml.gz.tmp`), ''); // an interrupted hold, two hours ago
    age(`${idOf(6)}.eml.gz.tmp`, 2 * 3_600_000);
    writeFileSync(path.join(dir, `${idOf(7)}.json.tmp`), ''); // one under way right now
    writeFileSync(path.join(dir, `${idOf(8)}.eml.gz`), ''); // its message in place, its entry not yet
    for (const n of [2, 3, 4]) age(`${idOf(n)}.eml.gz`, 2 * 3_600_000);
    assert.deepEqual(q.sweep(now), {
      leftovers: 1,
      broken_removed: 0,
      unlisted: [idOf(2), idOf(3), idOf(4)],
    });
    assert.deepEqual(ids(q.list().items), [idOf(1)], 'the unlisted stay out of the listing');
    for (const n of [2, 3, 4]) age(`${idOf(n)}.eml.gz`, 86_400_000 + 1000);
    assert.deepEqual(q.sweep(now), { leftovers: 0, broken_removed: 3, unlisted: [] });
    for (const n of [2, 3, 4]) {
      assert.throws(() => readFileSync(path.join(dir, `${idOf(n)}.eml.gz`)), /ENOENT/);
      assert.throws(() => readFileSync(path.join(dir, `${idOf(n)}.json`)), /ENOENT/);
    }
    assert.ok(readFileSync(path.join(dir, `${idOf(7)}.json.tmp`)), 'a recent .tmp is left alone');
    assert.ok(readFileSync(path.join(dir, `${idOf(8)}.eml.gz`)), 'a hold under way is left alone');
    assert.deepEqual(ids(q.list().items), [idOf(1)]);
    assert.ok(q.entry(idOf(1)), 'the good entry is still there');
    assert.deepEqual(new Quarantine(path.join(dir, 'missing'), 1).sweep(now), {
      leftovers: 0,
      broken_removed: 0,
      unlisted: [],
    });
  });
});

describe('quarantine index: the bound on indexed entries', () => {
  it('beyond it, listing and expiry read the files and stay right; under it again, the index is back', async () => {
    const dir = freshDir();
    const q = new Quarantine(dir, 1, undefined, 5);
    for (let n = 0; n < 7; n++) await hold(q, entryOf(n));
    const page = q.list({ limit: 3 });
    assert.equal(page.total, 7);
    assert.deepEqual(ids(page.items), [idOf(6), idOf(5), idOf(4)]);
    assert.ok(page.next);
    assert.deepEqual(ids(q.list({ limit: 3, cursor: page.next }).items), [idOf(3), idOf(2), idOf(1)]);
    assert.equal(await q.expire(T0 + 86_400_000 + 3000), 4, 'entries 0 to 3');
    assert.deepEqual(ids(q.list().items), [idOf(6), idOf(5), idOf(4)]);
    await hold(q, entryOf(7));
    assert.deepEqual(ids(q.list().items), [idOf(7), idOf(6), idOf(5), idOf(4)]);
  });
});
