import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LruMap } from '../../src/util/lru-map.js';

test('keeps the max most recently used entries; a hit makes an entry recent', () => {
  const lru = new LruMap<string, number>(2);
  lru.set('a', 1);
  lru.set('b', 2);
  assert.equal(lru.get('a'), 1);
  lru.set('c', 3);
  assert.equal(lru.get('b'), undefined, 'b was the least recently used');
  assert.equal(lru.get('a'), 1);
  assert.equal(lru.get('c'), 3);
  assert.equal(lru.size, 2);
});

test('after many evictions, hits, deletions and a clear it still holds exactly the newest entries', () => {
  const max = 100;
  const lru = new LruMap<number, number>(max);
  const model: number[] = []; // keys, oldest first
  const touch = (key: number) => {
    const at = model.indexOf(key);
    if (at >= 0) model.splice(at, 1);
    model.push(key);
  };
  let seed = 7;
  const random = (n: number) => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) % n;
  for (let i = 0; i < 50_000; i++) {
    if (i === 25_000) {
      lru.clear();
      model.length = 0;
    }
    const key = random(400);
    const op = random(10);
    if (op < 6) {
      lru.set(key, i);
      touch(key);
      if (model.length > max) model.shift();
    } else if (op < 9) {
      const hit = lru.get(key) !== undefined;
      assert.equal(hit, model.includes(key), `get ${key} at step ${i}`);
      if (hit) touch(key);
    } else {
      assert.equal(lru.delete(key), model.includes(key));
      if (model.includes(key)) model.splice(model.indexOf(key), 1);
    }
    assert.equal(lru.size, model.length);
  }
  for (const key of model) assert.notEqual(lru.get(key), undefined);
});

test('a max of 0 keeps nothing', () => {
  const lru = new LruMap<string, number>(0);
  lru.set('a', 1);
  assert.equal(lru.size, 0);
  assert.equal(lru.get('a'), undefined);
});
