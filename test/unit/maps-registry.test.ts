import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, describe, test } from 'node:test';
import type { LookupQuery, LookupTable } from '../../src/core/ports.js';
import {
  MAP_EVENT_CODES,
  MapRegistry,
  type MapEvent,
  type MapRegistryOptions,
} from '../../src/maps/index.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'pw-registry-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

let dirCount = 0;
/** A fresh directory per test, so one test's watcher events never reach another's tables. */
function freshDir(): string {
  const dir = path.join(tmp, `d${++dirCount}`);
  mkdirSync(dir);
  return dir;
}

/** Replaces a file the way `install` and editors do: write a temporary file, then rename it over. */
function replace(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

const registries: MapRegistry[] = [];
let events: MapEvent[] = [];
afterEach(() => {
  for (const registry of registries.splice(0)) registry.close();
  // Every event carries its code's documented level.
  for (const event of events) assert.equal(event.level, MAP_EVENT_CODES[event.code].level, event.code);
  events = [];
});

function registry(options: Partial<MapRegistryOptions> = {}): MapRegistry {
  const created = new MapRegistry({ onEvent: (event) => events.push(event), debounceMs: 20, ...options });
  registries.push(created);
  return created;
}

function codes(): string[] {
  return events.map((event) => event.code);
}

/** Polls until `predicate` holds; fails after `timeoutMs` (watchers deliver within tens of milliseconds). */
async function waitFor(predicate: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; events: ${codes().join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const waitForEvent = (code: string, count = 1) =>
  waitFor(() => codes().filter((c) => c === code).length >= count, `${count}× ${code}`);

async function valueOf(
  table: LookupTable,
  value: string,
  kind: LookupQuery['kind'] = 'domain',
): Promise<string> {
  const result = await table.lookup({ kind, value });
  return result.status === 'found'
    ? result.value
    : result.status === 'error'
      ? `error: ${result.reason}`
      : 'notfound';
}

describe('MapRegistry', () => {
  test('one table per spec: a relative and an absolute path to the same file share it', async () => {
    const dir = freshDir();
    const file = path.join(dir, 'block');
    writeFileSync(file, 'example.com REJECT\n');
    const maps = registry({ env: { baseDir: dir } });
    const a = maps.open(`file:${file}`);
    assert.equal(maps.open('file:block'), a);
    assert.equal(a.name, `file:${file}`);
    assert.deepEqual(codes(), ['PW-M001']);
    assert.match(events[0]?.message ?? '', /loaded 1 entries/);
    const [health] = maps.health();
    assert.equal(health?.healthy, true);
    assert.equal(health?.entries, 1);
    assert.ok(health?.loadedAt instanceof Date);
    assert.equal(await valueOf(a, 'mx.example.com'), 'REJECT');
  });

  test('a replaced file is reloaded by the watcher', async () => {
    const dir = freshDir();
    const file = path.join(dir, 'block');
    writeFileSync(file, 'example.com old\n');
    const maps = registry();
    const table = maps.open(`file:${file}`);
    replace(file, 'example.com new\nexample.org added\n');
    await waitForEvent('PW-M002');
    assert.equal(await valueOf(table, 'example.com'), 'new');
    assert.equal(await valueOf(table, 'example.org'), 'added');
    assert.equal(maps.health()[0]?.entries, 2);
    // Written in place rather than replaced: noticed as well.
    writeFileSync(file, 'example.com in-place\n');
    await waitForEvent('PW-M002', 2);
    assert.equal(await valueOf(table, 'example.com'), 'in-place');
  });

  test('a steady stream of writes to another file in the directory neither postpones nor triggers reloads', async () => {
    const dir = freshDir();
    const file = path.join(dir, 'block');
    const log = path.join(dir, 'busy.log');
    writeFileSync(file, 'example.com old\n');
    const maps = registry();
    const table = maps.open(`file:${file}`);
    let writes = 0;
    const noise = setInterval(() => writeFileSync(log, `line ${(writes += 1)}\n`, { flag: 'a' }), 20);
    try {
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(events.filter((e) => e.code === 'PW-M002').length, 0, 'noise alone reloads nothing');
      replace(file, 'example.com new\n');
      await waitForEvent('PW-M002');
      assert.equal(await valueOf(table, 'example.com'), 'new');
    } finally {
      clearInterval(noise);
    }
  });

  test('reloadAll reloads changed files and leaves unchanged content alone', async () => {
    const dir = freshDir();
    const file = path.join(dir, 'nets');
    writeFileSync(file, '10.0.0.0/8 one\n');
    const maps = registry({ watch: false });
    const table = maps.open(`cidr:${file}`);
    replace(file, '10.0.0.0/8 two\n');
    assert.equal(
      await valueOf(table, '10.1.1.1', 'ip'),
      'one',
      'no watcher: nothing changes before reloadAll',
    );
    maps.reloadAll();
    assert.equal(await valueOf(table, '10.1.1.1', 'ip'), 'two');
    assert.deepEqual(codes(), ['PW-M001', 'PW-M002']);
    const loadedAt = maps.health()[0]?.loadedAt;
    // A new mtime with the same content: read, hashed, not swapped, no event.
    utimesSync(file, new Date(), new Date(Date.now() + 5000));
    maps.reloadAll();
    assert.deepEqual(codes(), ['PW-M001', 'PW-M002']);
    assert.equal(maps.health()[0]?.loadedAt, loadedAt);
  });

  test('a file that disappears keeps serving, turns unhealthy, and recovers when it returns', async () => {
    const dir = freshDir();
    const file = path.join(dir, 'domains');
    writeFileSync(file, 'example.com ours\n');
    const maps = registry();
    const table = maps.open(`file:${file}`);
    const loadedAt = maps.health()[0]?.loadedAt;
    unlinkSync(file);
    await waitForEvent('PW-M011');
    assert.equal(await valueOf(table, 'example.com'), 'ours');
    const broken = maps.health()[0];
    assert.equal(broken?.healthy, false);
    assert.match(broken?.reason ?? '', /ENOENT/);
    assert.equal(broken?.entries, 1);
    assert.equal(broken?.loadedAt, loadedAt);
    assert.match(
      events.at(-1)?.message ?? '',
      /reload failed: .*ENOENT.*still serving the 1 entries loaded at/,
    );
    // The same content again: healthy, nothing to swap.
    writeFileSync(file, 'example.com ours\n');
    await waitForEvent('PW-M012');
    assert.equal(maps.health()[0]?.healthy, true);
    assert.equal(maps.health()[0]?.reason, undefined);
    assert.equal(maps.health()[0]?.loadedAt, loadedAt);
  });

  test('a syntax error at reload keeps every old entry (no partial table); fixing it recovers', async () => {
    const dir = freshDir();
    const file = path.join(dir, 'block');
    const generation = (gen: string, count: number) =>
      Array.from({ length: count }, (_, i) => `k${i}.example ${gen}`).join('\n');
    writeFileSync(file, generation('gen1', 2000));
    const maps = registry({ watch: false });
    const table = maps.open(`file:${file}`);
    replace(file, `${generation('gen2', 1999)}\nbad!entry\n`);
    maps.reloadAll();
    assert.deepEqual(codes(), ['PW-M001', 'PW-M011']);
    assert.ok(events[1]?.message.includes(`${file}:2000: 'bad!entry' is not`), events[1]?.message);
    for (const key of ['k0.example', 'k1000.example', 'k1998.example', 'k1999.example']) {
      assert.equal(await valueOf(table, key), 'gen1', key);
    }
    assert.equal(maps.health()[0]?.healthy, false);
    replace(file, generation('gen3', 10));
    maps.reloadAll();
    assert.deepEqual(codes(), ['PW-M001', 'PW-M011', 'PW-M012']);
    assert.equal(await valueOf(table, 'k0.example'), 'gen3');
    assert.equal(await valueOf(table, 'k1999.example'), 'notfound');
    assert.deepEqual(
      maps.health().map((h) => [h.healthy, h.entries]),
      [[true, 10]],
    );
  });

  test('lookups racing reloads see one generation, never a mix', async () => {
    const dir = freshDir();
    const file = path.join(dir, 'gen');
    const generation = (gen: number) =>
      Array.from({ length: 3000 }, (_, i) => `k${i}.example g${gen}`).join('\n');
    writeFileSync(file, generation(0));
    const maps = registry({ watch: false });
    const table = maps.open(`file:${file}`);
    // A lookup in flight when the swap happens answers from the generation it started with.
    const inFlight = Promise.all([valueOf(table, 'k0.example'), valueOf(table, 'k2999.example')]);
    replace(file, generation(1));
    maps.reloadAll();
    assert.deepEqual(await inFlight, ['g0', 'g0']);
    assert.equal(await valueOf(table, 'k0.example'), 'g1');
    const seen = new Set<string>();
    let reloading = true;
    const reloads = (async () => {
      for (let gen = 2; gen <= 8; gen++) {
        replace(file, generation(gen));
        maps.reloadAll();
        await new Promise((resolve) => setImmediate(resolve));
      }
      reloading = false;
    })();
    while (reloading) {
      // Issued together: the first and the last entry must come from the same generation.
      const [first, last] = await Promise.all([
        valueOf(table, 'k0.example'),
        valueOf(table, 'k2999.example'),
      ]);
      assert.equal(first, last);
      seen.add(first);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await reloads;
    assert.equal(await valueOf(table, 'k1500.example'), 'g8');
    assert.ok(seen.size >= 2, `lookups observed ${seen.size} generation(s)`);
  });

  test('a file missing at start: a stand-in answers errors, then the file appears and it recovers', async () => {
    const dir = freshDir();
    const file = path.join(dir, 'late');
    const maps = registry();
    const table = maps.open(`file:${file}`);
    const result = await table.lookup({ kind: 'domain', value: 'example.com' });
    assert.equal(result.status, 'error');
    assert.match(result.status === 'error' ? result.reason : '', /cannot read: ENOENT/);
    assert.deepEqual(maps.health(), [
      {
        name: `file:${file}`,
        healthy: false,
        reason: result.status === 'error' ? result.reason : '',
        entries: 0,
        loadedAt: null,
      },
    ]);
    assert.deepEqual(codes(), ['PW-M010']);
    assert.match(events[0]?.message ?? '', /cannot open: .*every lookup in it fails until this is fixed/);
    replace(file, 'example.com found\n');
    await waitForEvent('PW-M012');
    assert.equal(await valueOf(table, 'example.com'), 'found');
    assert.equal(maps.health()[0]?.healthy, true);
  });

  test('a directory missing at start is watched once reloadAll finds it', async () => {
    const dir = path.join(freshDir(), 'later');
    const file = path.join(dir, 'list');
    const maps = registry();
    const table = maps.open(`file:${file}`);
    assert.match(await valueOf(table, 'example.com'), /^error: /);
    mkdirSync(dir);
    writeFileSync(file, 'example.com one\n');
    maps.reloadAll();
    assert.equal(await valueOf(table, 'example.com'), 'one');
    replace(file, 'example.com two\n');
    await waitForEvent('PW-M002');
    assert.equal(await valueOf(table, 'example.com'), 'two');
  });

  test('a bad spec or bad inline entry is a stand-in, never a throw', async () => {
    const maps = registry();
    const table = maps.open('hash:/etc/postfix/access');
    assert.equal(table.name, 'hash:/etc/postfix/access');
    assert.match(await valueOf(table, 'example.com'), /^error: map type 'hash' needs postmap/);
    const inline = maps.openEntries(['10.0.0.0/8', '10.0.0.1/8'], 'local_networks');
    assert.match(await valueOf(inline, '10.0.0.1', 'ip'), /^error: local_networks entry 2: .*host bits set/);
    assert.deepEqual(codes(), ['PW-M020', 'PW-M020']);
    assert.deepEqual(
      maps.health().map((h) => [h.name, h.healthy]),
      [
        ['hash:/etc/postfix/access', false],
        ['local_networks', false],
      ],
    );
    // Reloading has nothing to re-read for them, and does not throw.
    maps.reloadAll();
  });

  test('duplicate keys load with a warning event', async () => {
    const dir = freshDir();
    const file = path.join(dir, 'dups');
    writeFileSync(file, 'example.com a\nEXAMPLE.COM b\n');
    const maps = registry({ watch: false });
    const table = maps.open(`file:${file}`);
    assert.equal(await valueOf(table, 'example.com'), 'a');
    assert.deepEqual(codes(), ['PW-M001', 'PW-M003']);
    assert.match(
      events[1]?.message ?? '',
      new RegExp(`dups:2: duplicate key 'EXAMPLE\\.COM' ignored; .*dups:1 wins`),
    );
  });

  test('openRef: runs of entries become inline tables, specs are opened, order kept', async () => {
    const dir = freshDir();
    const file = path.join(dir, 'nets');
    writeFileSync(file, '192.168.0.0/16 from-file\n');
    const maps = registry({ watch: false });
    const tables = maps.openRef(
      ['127.0.0.0/8', '::1/128', `cidr:${file}`, '10.0.0.0/8 ten'],
      'local_networks',
    );
    assert.deepEqual(
      tables.map((t) => t.name),
      ['local_networks[0]', `cidr:${file}`, 'local_networks[2]'],
    );
    assert.equal(await valueOf(tables[0] as LookupTable, '::1', 'ip'), '');
    assert.equal(await valueOf(tables[1] as LookupTable, '192.168.1.1', 'ip'), 'from-file');
    assert.equal(await valueOf(tables[2] as LookupTable, '10.0.0.1', 'ip'), 'ten');
    // A spec is shared with every key naming it; lists are each their own table, named by key.
    assert.deepEqual(maps.openRef(`cidr:${file}`, 'policy.relay.allow'), [tables[1]]);
    assert.deepEqual(
      maps.openRef(['example.com'], 'local_domains').map((t) => t.name),
      ['local_domains'],
    );
    assert.deepEqual(
      maps.openRef(['a.example', 'b.example']).map((t) => t.name),
      ['inline:{ a.example, b.example }'],
    );
    assert.deepEqual(maps.openRef([]), []);
    assert.equal(maps.open('inline:{ 10.0.0.0/8 ten }'), maps.open('inline:{ 10.0.0.0/8 ten }'));
  });

  test('after close, nothing reloads and lookups keep answering', async () => {
    const dir = freshDir();
    const file = path.join(dir, 'list');
    writeFileSync(file, 'example.com before\n');
    const maps = registry();
    const table = maps.open(`file:${file}`);
    maps.close();
    replace(file, 'example.com after\n');
    maps.reloadAll();
    assert.equal(await valueOf(table, 'example.com'), 'before');
    assert.deepEqual(codes(), ['PW-M001']);
  });

  test('openRef(ref, key) per config key, relative paths against baseDir', async () => {
    const dir = freshDir();
    writeFileSync(path.join(dir, 'domains'), 'example.org\n');
    const set = new MapRegistry({
      env: { baseDir: dir },
      watch: false,
      onEvent: (event) => events.push(event),
    });
    try {
      const [table] = set.openRef('file:domains', 'local_domains');
      assert.equal(table?.name, `file:${path.join(dir, 'domains')}`);
      assert.equal(await valueOf(table as LookupTable, 'mail.example.org'), '');
      const networks = set.openRef(['127.0.0.0/8', '::1/128'], 'local_networks');
      assert.equal(await valueOf(networks[0] as LookupTable, '::ffff:127.0.0.2', 'ip'), '');
      assert.deepEqual(
        set.health().map((h) => [h.name, h.healthy, h.entries]),
        [
          [`file:${path.join(dir, 'domains')}`, true, 1],
          ['local_networks', true, 2],
        ],
      );
      set.reloadAll();
    } finally {
      set.close();
    }
  });

  test('every code is documented with a summary and a fix', () => {
    for (const [code, doc] of Object.entries(MAP_EVENT_CODES)) {
      assert.match(code, /^PW-M\d{3}$/);
      assert.ok(doc.summary.length > 10 && doc.fix.length > 5, code);
    }
  });
});
