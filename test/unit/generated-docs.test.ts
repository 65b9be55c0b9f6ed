/**
 * The generated references in docs/ must match what the code renders now: a stale copy fails here, and
 * `npm run docs:reference` rewrites them.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { allEventCodes, REFERENCES } from '../../src/cli/reference.js';
import { METRIC_DEFINITIONS } from '../../src/observe/metrics.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

for (const [name, doc] of Object.entries(REFERENCES)) {
  test(`${doc.file} is up to date (npm run docs:reference)`, async () => {
    let onDisk = '';
    try {
      onDisk = readFileSync(path.join(ROOT, doc.file), 'utf8');
    } catch {
      assert.fail(`${doc.file} is missing: run npm run docs:reference`);
    }
    assert.equal(onDisk, await doc.render(), `${doc.file} (${name}) is stale: run npm run docs:reference`);
  });
}

test('every event code is documented once, with a fix', () => {
  const codes = allEventCodes();
  assert.equal(new Set(codes.map((c) => c.code)).size, codes.length, 'a code is defined twice');
  for (const c of codes) {
    assert.match(c.code, /^PW-[A-Z]\d{3}$/);
    assert.ok(c.fix.length > 0 && c.summary.length > 0, c.code);
  }
});

test('every metric is named postwarden_* and documented with help text', () => {
  for (const m of METRIC_DEFINITIONS) {
    assert.match(m.name, /^postwarden_[a-z_]+$/);
    assert.ok(m.help.length > 10, m.name);
  }
});
