import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Answer, both, type Steps, steps, wait } from '../../src/core/answer.js';

/** Adds two answers, and records how far it got (to show where it ran). */
const add = steps(function* (a: Answer<number>, b: Answer<number>, trace: string[]): Steps<number> {
  trace.push('start');
  const x = yield* wait(a);
  trace.push(`a=${x}`);
  const y = yield* wait(b);
  trace.push(`b=${y}`);
  return x + y;
});

test('steps: values all the way give a value, run before the call returns', () => {
  const trace: string[] = [];
  const sum = add(1, 2, trace);
  assert.equal(sum, 3);
  assert.deepEqual(trace, ['start', 'a=1', 'b=2']);
});

test('steps: a promise turns the rest into a promise; the steps before it ran at once', async () => {
  const trace: string[] = [];
  const sum = add(1, Promise.resolve(2), trace);
  assert.ok(sum instanceof Promise);
  assert.deepEqual(trace, ['start', 'a=1']);
  assert.equal(await sum, 3);
  assert.deepEqual(trace, ['start', 'a=1', 'b=2']);
});

test('steps: a rejected answer is thrown at its yield, where the steps can catch it', async () => {
  const guarded = steps(function* (a: Answer<number>): Steps<string> {
    try {
      return String(yield* wait(a));
    } catch (error) {
      return `caught ${(error as Error).message}`;
    }
  });
  assert.equal(await guarded(Promise.reject(new Error('down'))), 'caught down');
  assert.equal(guarded(7), '7');
  // Not caught: the promise rejects with it; thrown synchronously when nothing waited.
  await assert.rejects(Promise.resolve(add(Promise.reject(new Error('gone')), 1, [])), /gone/);
  const throwing = steps(function* (): Steps<number> {
    yield* wait(1);
    throw new Error('now');
  });
  assert.throws(() => throwing(), /now/);
});

test('steps: nested steps (yield* of another generator) share the same runner', async () => {
  function* twice(a: Answer<number>): Steps<number> {
    return 2 * (yield* wait(a));
  }
  const outer = steps(function* (a: Answer<number>, b: Answer<number>): Steps<number> {
    return (yield* twice(a)) + (yield* twice(b));
  });
  assert.equal(outer(1, 2), 6);
  assert.equal(await outer(1, Promise.resolve(2)), 6);
});

test('both: two values at once; with a promise, one promise of both, asked together; a rejection rejects it', async () => {
  assert.deepEqual(both(1, 'a'), [1, 'a']);
  const started: string[] = [];
  const later = (name: string, value: number) => {
    started.push(name);
    return new Promise<number>((resolve) => setTimeout(() => resolve(value), 5));
  };
  const pair = both(later('a', 1), later('b', 2));
  assert.deepEqual(started, ['a', 'b'], 'both asked before either answers');
  assert.ok(pair instanceof Promise);
  assert.deepEqual(await pair, [1, 2]);
  assert.deepEqual(await both(3, Promise.resolve(4)), [3, 4]);
  await assert.rejects(Promise.resolve(both(Promise.reject(new Error('down')), 5)), /down/);
  const summed = steps(function* (a: Answer<number>, b: Answer<number>): Steps<number> {
    const [x, y] = yield* wait(both(a, b));
    return x + y;
  });
  assert.equal(summed(1, 2), 3, 'synchronous when both are values');
  assert.equal(await summed(1, Promise.resolve(2)), 3);
});
