import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Decision, RecordedVerdict } from '../../src/core/verdict.js';
import { errorAction, MAX_TEXT, policyAction, sanitizeText } from '../../src/policy/reply.js';

const verdict = (v: Partial<RecordedVerdict>): RecordedVerdict => ({
  check: 'x',
  symbol: 'X',
  score: 0,
  reason: 'because',
  mode: 'enforce',
  ms: 0,
  ...v,
});

const decision = (d: Partial<Decision>): Decision => ({
  action: 'dunno',
  score: 0,
  verdicts: [],
  failures: [],
  onError: false,
  ...d,
});

const cases: [string, Partial<Decision>, boolean, string][] = [
  ['no objection is DUNNO, never OK', {}, false, 'DUNNO'],
  [
    'reject with a reply',
    { action: 'reject', reply: { code: 554, dsn: '5.7.1', text: 'Relay access denied' } },
    false,
    '554 5.7.1 Relay access denied',
  ],
  [
    'soft bounce turns 5xx into 4xx',
    { action: 'reject', reply: { code: 554, dsn: '5.7.1', text: 'no' } },
    true,
    '454 4.7.1 no',
  ],
  [
    'reject without reply uses REJECT and the reason',
    { action: 'reject', decidedBy: verdict({ reason: 'blocked' }) },
    false,
    'REJECT blocked',
  ],
  [
    'soft bounce turns REJECT into DEFER',
    { action: 'reject', decidedBy: verdict({ reason: 'blocked' }) },
    true,
    'DEFER blocked',
  ],
  [
    'defer keeps 4xx',
    { action: 'defer', reply: { code: 452, dsn: '4.5.3', text: 'Too many recipients' } },
    false,
    '452 4.5.3 Too many recipients',
  ],
  [
    'a defer can never carry 5xx',
    { action: 'defer', reply: { code: 550, dsn: '5.7.1', text: 'x' } },
    false,
    '450 4.7.1 x',
  ],
  [
    'dsn class follows the code',
    { action: 'reject', reply: { code: 550, dsn: '4.7.1', text: 'x' } },
    false,
    '550 5.7.1 x',
  ],
  [
    'an out-of-range code becomes 551',
    { action: 'reject', reply: { code: 250, dsn: '2.0.0', text: 'x' } },
    false,
    '551 5.0.0 x',
  ],
  [
    'defer_if_permit',
    { action: 'defer_if_permit', reply: { code: 450, dsn: '4.7.1', text: 'Greylisted' } },
    false,
    'DEFER_IF_PERMIT 4.7.1 Greylisted',
  ],
  ['prepend', { action: 'prepend', header: 'X-Test: yes' }, false, 'PREPEND X-Test: yes'],
];

for (const [name, d, softBounce, expected] of cases) {
  test(`policyAction: ${name}`, () => assert.equal(policyAction(decision(d), { softBounce }), expected));
}

test('reply text is one printable line, bounded', () => {
  assert.equal(sanitizeText('a\nb\r\nc\x00d'), 'a b c d');
  assert.equal(sanitizeText('naïve'), 'na?ve');
  const long = sanitizeText('x'.repeat(1000));
  assert.equal(long.length, MAX_TEXT);
  assert.ok(long.endsWith('...'));
  const injected = policyAction(
    decision({ action: 'reject', reply: { code: 554, dsn: '5.7.1', text: 'x\n\naction=OK' } }),
    { softBounce: false },
  );
  assert.ok(!injected.includes('\n'));
});

test('errorAction follows on_error', () => {
  assert.equal(errorAction('dunno'), 'DUNNO');
  assert.match(errorAction('defer_if_permit'), /^DEFER_IF_PERMIT 4\.3\.0 /);
});
