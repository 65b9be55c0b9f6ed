/** bench/stats.ts: the Wilson interval and the exact McNemar test of the quality benchmark. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exactMcNemar, formatP, onlyEach, wilsonInterval } from '../../bench/stats.js';

const close = (actual: number, expected: number, tolerance = 1e-3) =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${actual} ≈ ${expected}`);

test('Wilson interval: known values, bounds kept inside 0–100%', () => {
  // 3 of 1 369 ham marked spam (the benchmark's split): 0.075%–0.64%.
  const [lo, hi] = wilsonInterval(3, 1369);
  close(lo, 0.07455);
  close(hi, 0.64233);
  // 238 of 255 spam caught: 89.6%–95.8%.
  const [rlo, rhi] = wilsonInterval(238, 255);
  close(rlo, 89.584);
  close(rhi, 95.796);
  const [zlo, zhi] = wilsonInterval(0, 100);
  assert.equal(zlo, 0);
  assert.ok(zhi > 3 && zhi < 4, `none of 100 still allows up to ${zhi}%`);
  const [alo, ahi] = wilsonInterval(100, 100);
  assert.ok(alo > 96 && ahi > 99.999 && ahi <= 100);
  assert.deepEqual(wilsonInterval(0, 0), [0, 100]);
});

test('exact McNemar: the two-sided binomial tail of the discordant pairs', () => {
  assert.equal(exactMcNemar(0, 0), 1);
  assert.equal(exactMcNemar(2, 1), 1);
  close(exactMcNemar(0, 6), 2 / 64, 1e-12);
  close(exactMcNemar(6, 0), 2 / 64, 1e-12);
  // 1 against 9: 2 × (1 + 10) / 1024.
  close(exactMcNemar(1, 9), 22 / 1024, 1e-12);
  // Large counts stay finite: 500 against 500 is no difference at all.
  assert.equal(exactMcNemar(500, 500), 1);
  assert.ok(exactMcNemar(400, 600) < 1e-9);
});

test('onlyEach counts what each list has and the other lacks', () => {
  assert.deepEqual(onlyEach(['a', 'b', 'c'], ['b', 'd']), [2, 1]);
  assert.deepEqual(onlyEach([], ['x']), [0, 1]);
  assert.deepEqual(onlyEach(['x'], ['x']), [0, 0]);
});

test('formatP never shows a p-value as 0.00', () => {
  assert.equal(formatP(1), '1.00');
  assert.equal(formatP(0.0312), '0.03');
  assert.equal(formatP(0.01), '0.01');
  assert.equal(formatP(0.004), '< 0.01');
  assert.equal(formatP(exactMcNemar(6, 69)), '< 0.01');
});
