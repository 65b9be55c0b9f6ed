/**
 * The policy face's per-message sessions (src/policy/service.ts MessageSessions) under a client that reuses one
 * `instance` for ever: found by the fuzzer (test/fuzz/targets/policy-pipeline.ts ran out of heap after about a
 * million requests on a handful of instances), the recipients and the memo of one message stay bounded.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { toPolicyRequest } from '../../src/core/request.js';
import { CheckDeadlines } from '../../src/core/pipeline.js';
import { MessageSessions } from '../../src/policy/service.js';

const rcpt = (recipient: string) =>
  toPolicyRequest({ request: 'smtpd_access_policy', protocol_state: 'RCPT', instance: 'a.1', recipient });

test('fuzz regression: one instance reused for ever keeps a bounded recipient set and memo', () => {
  const sessions = new MessageSessions(10, 4);
  const connection = { deadlines: new CheckDeadlines() };
  let session = sessions.advance(rcpt('r0@example.org'), connection);
  for (let i = 1; i < 1000; i++) {
    session = sessions.advance(rcpt(`r${i}@example.org`), connection);
    session.memo.set(`spf ${i}`, i);
  }
  assert.equal(session.rcptCount, 4, 'the distinct recipients counted stop at the bound');
  assert.ok(session.memo.size <= 33, `memo of ${session.memo.size} entries`);
});

test('the same recipient asked twice counts once, below the bound', () => {
  const sessions = new MessageSessions(10, 4);
  const connection = { deadlines: new CheckDeadlines() };
  sessions.advance(rcpt('a@example.org'), connection);
  const session = sessions.advance(rcpt('A@example.org'), connection);
  assert.equal(session.rcptCount, 1);
});
