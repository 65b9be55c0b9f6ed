/**
 * The fault-injection suite in its quick form (issue 9, item 1; docs/reliability.md#fault-injection): about 150
 * messages through the real stack while one fault of each kind is injected at seeded times, then the count.
 * It passes when no message is lost, every delivered copy was scanned, each duplicate is explained, and nothing
 * was refused with a 5xx, bounced or crashed. `npm run test:chaos` runs the full form (test/chaos/main.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FAULT_KINDS } from './faults.js';
import { renderReport } from './count.js';
import { QUICK, runChaos } from './suite.js';

test(
  'chaos, quick: no message lost or delivered unscanned while faults are injected',
  { timeout: 280_000 },
  async () => {
    const seed = Number(process.env['CHAOS_SEED'] ?? QUICK.seed);
    const report = await runChaos({ ...QUICK, seed, log: (line) => console.log(line) });
    const text = renderReport({ ...report, seed });
    console.log(text);
    assert.equal(report.count.outcomes.lost, 0, text);
    assert.equal(report.count.unscanned, 0, text);
    assert.deepEqual(report.problems, [], text);
    assert.equal(report.count.failed, 0, text);
    // The run is about faults: each kind was injected, and mail went through both ways.
    const injected = new Set(report.faults.map((f) => f.kind));
    const expected = FAULT_KINDS.filter((k) => !report.skipped.includes(k));
    for (const kind of expected) assert.ok(injected.has(kind), `no ${kind} fault: ${text}`);
    assert.ok(report.count.outcomes['delivered once'] > 0 && report.count.outcomes.quarantined > 0, text);
  },
);
