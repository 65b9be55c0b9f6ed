/**
 * The quick form of the fuzzing (docs/reliability.md), in the test command: every target in test/fuzz/targets/
 * with its quick count and a fixed seed (FUZZ_SEED overrides it; FUZZ_SCALE multiplies the counts). A failure
 * names the seed and index, writes the input to a file and says how to run it again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeFailure, formatCounts, fuzzSettings, runTarget, targetNames } from './runner.js';

const settings = fuzzSettings();

for (const name of targetNames()) {
  test(`fuzz: ${name}`, async (t) => {
    const result = await runTarget(name, settings);
    t.diagnostic(formatCounts(result));
    if (result.failure) assert.fail(await describeFailure(result, settings));
  });
}
