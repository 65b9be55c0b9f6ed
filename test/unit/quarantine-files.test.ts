/**
 * A held message's file is closed however its reader stops: a header read that stops at the empty line, a raw
 * stream the caller destroys early. Found by the admin-api fuzz target (EMFILE after some 5 000 requests).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { QuarantineOps } from '../../src/admin/quarantine.js';
import { Quarantine } from '../../src/filter/quarantine.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { holdVirusMessage } from '../harness/quarantine.js';

const work = mkdtempSync('/tmp/pw-h-qfiles-');
const store = new SqliteStore({ path: ':memory:' });
after(async () => {
  await store.close();
  rmSync(work, { recursive: true, force: true });
});

const openFiles = () => readdirSync('/proc/self/fd').length;
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

async function held(): Promise<{ ops: QuarantineOps; id: string }> {
  const quarantine = new Quarantine(path.join(work, 'quarantine'), 30, store);
  quarantine.prepare();
  const id = await holdVirusMessage(quarantine, 'x');
  const ops = new QuarantineOps(quarantine, { host: '127.0.0.1', port: 9, name: 'mx', timeoutMs: 1000 });
  return { ops, id };
}

test('fuzz regression: showing a held message closes its file', async () => {
  const { ops, id } = await held();
  await settle();
  const before = openFiles();
  for (let i = 0; i < 50; i++) assert.equal((await ops.show(id)).status, 'found');
  await settle();
  assert.ok(openFiles() - before < 5, `${openFiles() - before} files left open by 50 shows`);
});

test('fuzz regression: a raw stream destroyed before its end closes its file', async () => {
  const { ops, id } = await held();
  await settle();
  const before = openFiles();
  for (let i = 0; i < 50; i++) {
    const raw = ops.raw(id)!;
    await new Promise((resolve) => raw.once('data', resolve));
    raw.destroy();
  }
  await settle();
  assert.ok(openFiles() - before < 5, `${openFiles() - before} files left open by 50 raw reads`);
});
