/** bench/spam.ts's cross-validation: each system's folds pooled into one result, every count and name kept. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BenchError } from '../../bench/load.js';
import { pooled, type SystemResult } from '../../bench/spam.js';

function fold(name: string, fp: string[], missed: string[], seconds: number): SystemResult {
  return {
    name,
    trained: { learned: { spam: 400, ham: 2200 }, ms: 1000 },
    ham: 550,
    falsePositives: fp,
    spam: 100,
    caught: 100 - missed.length,
    missed,
    bayesFired: 640,
    messagesPerSecond: 650 / seconds,
    seconds,
    machineCpu: 150,
  };
}

test('pooled adds up the folds of each system, in the order the systems came', () => {
  const [ours, peer, ...rest] = pooled([
    [fold('postwarden', ['h1'], ['s1', 's2'], 2), fold('peer', [], ['s1'], 20)],
    [fold('postwarden', [], ['s9'], 3), fold('peer', ['h7', 'h8'], [], 30)],
  ]);
  assert.equal(rest.length, 0);
  assert.ok(ours && peer);
  assert.equal(ours.name, 'postwarden');
  assert.equal(ours.ham, 1100);
  assert.equal(ours.spam, 200);
  assert.deepEqual(ours.falsePositives, ['h1']);
  assert.deepEqual(ours.missed, ['s1', 's2', 's9']);
  assert.equal(ours.caught, 197);
  assert.equal(ours.trained.learned.spam, 800);
  assert.equal(ours.seconds, 5);
  assert.equal(ours.messagesPerSecond, 1300 / 5);
  assert.equal(ours.machineCpu, undefined, 'no one figure of machine CPU stands for several passes');
  assert.equal(peer.name, 'peer');
  assert.deepEqual(peer.falsePositives, ['h7', 'h8']);
  assert.equal(peer.caught, 199);
  assert.deepEqual(pooled([]), []);
});

test('pooled refuses folds that list other systems', () => {
  const a = fold('postwarden', [], [], 1);
  const b = fold('peer', [], [], 1);
  assert.throws(() => pooled([[a, b], [a]]), BenchError);
  assert.throws(
    () =>
      pooled([
        [a, b],
        [b, a],
      ]),
    BenchError,
  );
});
