/**
 * The spam benchmark's corpus (bench/spam-corpus.ts): the 2003 groups are refused before anything is read, the
 * split and the cross-validation folds are pure functions of the file name, and the mbox `From ` line is taken off.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BenchError } from '../../bench/load.js';
import { assertAllowedGroup, foldOf, halfOf, loadCorpus, withoutMboxLine } from '../../bench/spam-corpus.js';

describe('spam corpus', () => {
  for (const group of ['easy-ham-2', 'spam-2'])
    test(`refuses the 2003 group ${group}, by name and when loading`, () => {
      assert.throws(() => assertAllowedGroup(group), /reserved for independent evaluation/);
      assert.throws(() => loadCorpus([group]), BenchError);
    });
  test('refuses a group it does not know', () =>
    assert.throws(() => assertAllowedGroup('spam-3'), BenchError));
  test('labels the 2002 groups', () => {
    assert.equal(assertAllowedGroup('easy-ham-1'), 'ham');
    assert.equal(assertAllowedGroup('hard-ham-1'), 'ham');
    assert.equal(assertAllowedGroup('spam-1'), 'spam');
  });
  test('the split depends on the name only', () => {
    const name = 'spam-1/00001.7848dde101aa985090474a91ec93fcf0.txt';
    assert.equal(halfOf(name), halfOf(name));
    const halves = Array.from({ length: 1000 }, (_, i) => halfOf(`g/${i}`));
    const train = halves.filter((h) => h === 'train').length;
    assert.ok(train > 400 && train < 600, `${train} of 1000 in training`);
  });
  test('cross-validation folds depend on the name only, cover every fold and cut across the split', () => {
    const name = 'spam-1/00001.7848dde101aa985090474a91ec93fcf0.txt';
    assert.equal(foldOf(name, 5), foldOf(name, 5));
    const names = Array.from({ length: 2000 }, (_, i) => `g/${i}`);
    const sizes = [0, 0, 0, 0, 0];
    for (const n of names) sizes[foldOf(n, 5)] = (sizes[foldOf(n, 5)] ?? 0) + 1;
    for (const size of sizes) assert.ok(size > 320 && size < 480, `fold sizes ${sizes.join(', ')}`);
    // Independent of the split: every fold holds messages of both halves.
    for (let fold = 0; fold < 5; fold++) {
      const halves = new Set(names.filter((n) => foldOf(n, 5) === fold).map(halfOf));
      assert.equal(halves.size, 2);
    }
  });
  test('the mbox From line is taken off, nothing else', () => {
    assert.equal(
      withoutMboxLine(Buffer.from('From a@b  Thu Aug 22 13:17:22 2002\nSubject: x\n\nbody\n')).toString(),
      'Subject: x\n\nbody\n',
    );
    assert.equal(withoutMboxLine(Buffer.from('Subject: x\n\nbody\n')).toString(), 'Subject: x\n\nbody\n');
  });
});
