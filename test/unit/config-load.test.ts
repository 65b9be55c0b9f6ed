/**
 * The config loader on documents the fuzzer found trouble with (test/fuzz/targets/config.ts): each is a
 * problem in the usual shape, never an exception.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfigText } from '../../src/config/load.js';

test('fuzz regression: an alias bomb ("billion laughs") is a problem, not an exception', () => {
  const levels = Array.from(
    { length: 12 },
    (_v, i) => `x${i + 1}: &a${i + 1} [${Array(9).fill(`*a${i}`).join(', ')}]`,
  );
  const result = parseConfigText(`x0: &a0 [lol]\n${levels.join('\n')}\n`, { kind: 'embedded' });
  assert.equal(result.ok, false);
  assert.ok(!result.ok);
  assert.equal(result.problems.length, 1);
  assert.equal(result.problems[0]?.key, '(file)');
  assert.match(result.problems[0]?.problem ?? '', /^YAML: Excessive alias count/);
});

test('fuzz regression: an unknown key containing ".[" is named as written', () => {
  const result = parseConfigText(
    'local_domains: [example.org]\n"a.[b": 1\npolicy: { checks: [relay, 7] }\n',
    {
      kind: 'embedded',
    },
  );
  assert.ok(!result.ok);
  assert.deepEqual(result.problems.map((p) => p.key).sort(), ['a.[b', 'policy.checks[1]']);
});
