/**
 * The fuzzing runner itself: each way a target can fail (test/fuzz/selftest/) is reported with its kind and the
 * index of the input, and the same seed and index draw the same input.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { AT } from './selftest/misbehave.js';
import { describeFailure, fuzzSettings, inputAt, loadTarget, runTarget } from './runner.js';

const SELFTEST = path.join(path.dirname(fileURLToPath(import.meta.url)), 'selftest');
const settings = fuzzSettings({ FUZZ_SEED: '7' });

for (const [name, kind] of [
  ['property', 'property'],
  ['hang-sync', 'hang'],
  ['hang-async', 'hang'],
  ['crash', 'crash'],
  ['memory', 'memory'],
] as const) {
  test(`runner: a target that fails by ${name} is reported as ${kind} at its input`, async () => {
    const result = await runTarget(name, settings, SELFTEST);
    assert.equal(result.failure?.kind, kind, JSON.stringify(result.failure));
    assert.equal(result.failure?.index, AT);
    const report = await describeFailure(result, settings, SELFTEST);
    assert.match(report, new RegExp(`seed=7 index=${AT}`));
    assert.match(report, new RegExp(`--target ${name} --seed 7 --index ${AT}`));
  });
}

test('runner: an input is drawn from the seed and its index alone', async () => {
  const target = await loadTarget('property', SELFTEST);
  assert.equal(inputAt(target, 7, 5), inputAt(target, 7, 5));
  assert.notEqual(inputAt(target, 7, 5), inputAt(target, 8, 5));
});
