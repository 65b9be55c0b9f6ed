/**
 * The chaos suite's count (test/chaos/count.ts), on made-up evidence: where each message ended, copies without
 * the scan fields, and which duplicates are explained (Postfix lost the filter's connection after the end of
 * DATA, or the sender itself sent twice) and which are failures.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Copy, countOutcomes } from '../chaos/count.js';
import type { ChaosMessage, SendRecord } from '../chaos/messages.js';

const message = (id: string, virus = false): ChaosMessage => ({
  id,
  virus,
  inbound: true,
  from: 'anna@example.net',
  to: 'alice@example.test',
  raw: '',
});
const sent = (queueIds: string[]): SendRecord => ({
  attempts: queueIds.length,
  queueIds,
  refusals: [],
  ambiguous: false,
  accepted: queueIds.length > 0,
});
const copy = (id: string, scanned = true): Copy => ({ id, where: 'alice', scanned, intact: true });

const LOST_AFTER_DATA =
  'Nov 23 03:20:50 mx postfix/scan/smtp[1]: AAA111: to=<alice@example.test>, relay=127.0.0.1[127.0.0.1]:22361, ' +
  'delay=1, dsn=4.4.2, status=deferred (lost connection with 127.0.0.1[127.0.0.1] while sending end of data -- ' +
  'message may be sent more than once)';
const ANSWER_LOST =
  'Nov 23 08:02:06 mx postfix/reinject/smtpd[2]: C4DF22350E7: client=unknown[127.0.0.1], orig_queue_id=BBB222, ' +
  'orig_client=mail.example.net[192.0.2.8]\n' +
  'Nov 23 08:02:06 mx postfix/scan/smtp[3]: BBB222: to=<alice@example.test>, relay=127.0.0.1[127.0.0.1]:22361, ' +
  'delay=9.8, dsn=4.4.0, status=deferred (host 127.0.0.1[127.0.0.1] said: 451 4.4.0 Re-injection failed, try ' +
  'again later (in reply to end of DATA command))\n' +
  'Nov 23 08:02:17 mx postfix/reinject/smtpd[4]: 48460234124: client=unknown[127.0.0.1], orig_queue_id=BBB222, ' +
  'orig_client=mail.example.net[192.0.2.8]';

test('each message ends in one outcome; explained duplicates pass, the rest fail with their reason', () => {
  const messages = [
    message('once'),
    message('held', true),
    message('twice-killed'),
    message('twice-resent'),
    message('twice-answer-lost'),
    message('twice-unexplained'),
    message('waiting'),
    message('lost'),
    message('refused'),
    message('bare'),
    message('virus-out', true),
  ];
  const records = new Map<string, SendRecord>([
    ['once', sent(['Q1'])],
    ['held', sent(['Q2'])],
    ['twice-killed', sent(['AAA111'])],
    ['twice-resent', sent(['Q3', 'Q4'])],
    ['twice-answer-lost', sent(['BBB222'])],
    ['twice-unexplained', sent(['Q5'])],
    ['waiting', sent(['Q6'])],
    ['lost', sent(['Q7'])],
    ['refused', sent([])],
    ['bare', sent(['Q8'])],
    ['virus-out', sent(['Q9'])],
  ]);
  const copies = [
    copy('once'),
    copy('twice-killed'),
    copy('twice-killed'),
    copy('twice-resent'),
    copy('twice-resent'),
    copy('twice-answer-lost'),
    copy('twice-answer-lost'),
    copy('twice-unexplained'),
    copy('twice-unexplained'),
    copy('bare', false),
    copy('virus-out'),
  ];
  const count = countOutcomes(
    messages,
    records,
    copies,
    new Map([['held', 1]]),
    new Map([['waiting', 1]]),
    `${LOST_AFTER_DATA}\n${ANSWER_LOST}`,
  );
  assert.equal(count.outcomes['delivered once'], 2); // `once`, and `bare` (which fails: unscanned)
  assert.equal(count.outcomes['delivered twice'], 4);
  assert.equal(count.outcomes.quarantined, 1);
  assert.equal(count.outcomes['still queued'], 1);
  assert.equal(count.outcomes.lost, 1);
  assert.equal(count.outcomes['never accepted'], 1);
  assert.equal(count.outcomes['virus delivered'], 1);
  assert.equal(count.unscanned, 1);
  assert.deepEqual(
    count.duplicates.map((d) => [d.id, d.why?.split(' (')[0]]),
    [
      ['twice-killed', 'postwarden killed after it took the message, before its answer'],
      ['twice-resent', 'the sender sent it twice'],
      ['twice-answer-lost', 'the re-injection smtpd queued it but its answer was lost'],
      ['twice-unexplained', undefined],
    ],
  );
  const failedIds = count.failures.map((f) => f.split(' ')[0]);
  assert.deepEqual(failedIds, ['twice-unexplained', 'waiting', 'lost', 'refused', 'bare', 'virus-out']);
  assert.equal(count.passed, 5);
  assert.equal(count.failed, 6);
});
