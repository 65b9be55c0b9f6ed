import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CheckDeadlines,
  newSession,
  type PipelineStage,
  type PolicyCheck,
  runPipeline,
} from '../../src/core/pipeline.js';
import { toPolicyRequest } from '../../src/core/request.js';
import type { Verdict } from '../../src/core/verdict.js';

const request = toPolicyRequest({ request: 'smtpd_access_policy', protocol_state: 'RCPT' });
const session = Object.assign(newSession(), { rcptCount: 1 });

function check(name: string, ...verdicts: Partial<Verdict>[]): PolicyCheck {
  return {
    name,
    run: () =>
      verdicts.map((v) => ({ check: name, symbol: name.toUpperCase(), score: 0, reason: name, ...v })),
  };
}
const stage = (c: PolicyCheck, mode: 'observe' | 'enforce' = 'enforce', timeoutMs = 1000): PipelineStage => ({
  check: c,
  mode,
  timeoutMs,
});
const run = (stages: PipelineStage[], onError: 'dunno' | 'defer_if_permit' = 'dunno', rejectAt = 10) =>
  runPipeline(stages, request, session, { onError, rejectAt });

test('no verdicts: dunno', async () => {
  const d = await run([stage(check('a'))]);
  assert.equal(d.action, 'dunno');
  assert.equal(d.verdicts.length, 0);
});

test('a reject decides at once: later checks do not run', async () => {
  let ran = false;
  const later: PolicyCheck = { name: 'later', run: () => ((ran = true), []) };
  const d = await run([stage(check('a', { action: 'reject', symbol: 'NO' })), stage(later)]);
  assert.equal(d.action, 'reject');
  assert.equal(d.decidedBy?.symbol, 'NO');
  assert.equal(ran, false);
});

test('allow ends the pipeline without objection', async () => {
  const d = await run([stage(check('a', { action: 'allow' })), stage(check('b', { action: 'reject' }))]);
  assert.equal(d.action, 'dunno');
});

test('defer_if_permit goes on, and a later reject wins', async () => {
  const d = await run([
    stage(check('g', { action: 'defer_if_permit' })),
    stage(check('b', { action: 'reject' })),
  ]);
  assert.equal(d.action, 'reject');
  const e = await run([stage(check('g', { action: 'defer_if_permit' })), stage(check('b'))]);
  assert.equal(e.action, 'defer_if_permit');
});

test('scores add up to reject_at, naming the symbols', async () => {
  const d = await run([
    stage(check('a', { score: 6, symbol: 'A6' })),
    stage(check('b', { score: 4, symbol: 'B4' })),
  ]);
  assert.equal(d.action, 'reject');
  assert.equal(d.score, 10);
  assert.match(d.reply?.text ?? '', /A6 B4/);
  const below = await run([stage(check('a', { score: 9.5 }))]);
  assert.equal(below.action, 'dunno');
  const off = await run([stage(check('a', { score: 100 }))], 'dunno', 0);
  assert.equal(off.action, 'dunno');
});

test('observe mode records what it would do and changes nothing', async () => {
  const d = await run([stage(check('a', { action: 'reject', score: 50 }), 'observe')]);
  assert.equal(d.action, 'dunno');
  assert.equal(d.score, 0);
  assert.equal(d.verdicts[0]?.mode, 'observe');
});

test('a throwing check is a failure, never a pass; on_error decides', async () => {
  const boom: PolicyCheck = {
    name: 'boom',
    run: () => {
      throw new Error('database on fire');
    },
  };
  const open = await run([stage(boom)], 'dunno');
  assert.equal(open.action, 'dunno');
  assert.equal(open.onError, true);
  assert.equal(open.failures[0]?.code, 'PW-E001');
  const closed = await run([stage(boom)], 'defer_if_permit');
  assert.equal(closed.action, 'defer_if_permit');
  assert.equal(closed.reply?.dsn, '4.3.0');
  const rejectStillWins = await run(
    [stage(boom), stage(check('b', { action: 'reject' }))],
    'defer_if_permit',
  );
  assert.equal(rejectStillWins.action, 'reject');
});

test('a check past its deadline is a timeout failure, and its signal is aborted', async () => {
  let aborted = false;
  const slow: PolicyCheck = {
    name: 'slow',
    run: (_r, ctx) =>
      new Promise((resolve) => {
        ctx.signal.addEventListener('abort', () => {
          aborted = true;
          resolve([]);
        });
      }),
  };
  const d = await run([stage(slow, 'enforce', 20)], 'defer_if_permit');
  assert.equal(d.failures[0]?.code, 'PW-E002');
  assert.equal(d.action, 'defer_if_permit');
  assert.equal(aborted, true);
});

test('prepend carries its header when nothing else decides', async () => {
  const d = await run([stage(check('p', { action: 'prepend', header: 'X-A: 1' }))]);
  assert.equal(d.action, 'prepend');
  assert.equal(d.header, 'X-A: 1');
});

test('one CheckDeadlines per connection: each check gets its full deadline, and a timeout aborts only its own signal', async () => {
  const deadlines = new CheckDeadlines();
  const signals: AbortSignal[] = [];
  const sleepy = (ms: number): PolicyCheck => ({
    name: `sleep${ms}`,
    run: (_r, ctx) => {
      signals.push(ctx.signal);
      return new Promise((resolve) => setTimeout(() => resolve([]), ms));
    },
  });
  // Three checks of 30 ms under a 50 ms deadline each: 90 ms in all, none late.
  const ok = await runPipeline(
    [stage(sleepy(30), 'enforce', 50), stage(sleepy(30), 'enforce', 50), stage(sleepy(30), 'enforce', 50)],
    request,
    session,
    { onError: 'dunno', rejectAt: 10 },
    deadlines,
  );
  assert.equal(ok.failures.length, 0);
  const late = await runPipeline(
    [stage(sleepy(80), 'enforce', 20), stage(sleepy(1), 'enforce', 20)],
    request,
    session,
    { onError: 'dunno', rejectAt: 10 },
    deadlines,
  );
  assert.deepEqual(
    late.failures.map((f) => f.check),
    ['sleep80'],
  );
  assert.equal(signals.at(-2)?.aborted, true, 'the late check was told');
  assert.equal(signals.at(-1)?.aborted, false, 'the next check has a fresh signal');
});

test('a typed failure keeps its own code (a store that cannot answer is PW-S001), untyped ones are PW-E001', async () => {
  const failing = (name: string, error: Error): PolicyCheck => ({
    name,
    run: () => {
      throw error;
    },
  });
  const storeDown = Object.assign(new Error('redis: connection refused'), { code: 'PW-S001' });
  const foreign = Object.assign(new Error('boom'), { code: 'ECONNRESET' });
  const d = await run([stage(failing('greylist', storeDown)), stage(failing('other', foreign))]);
  assert.deepEqual(
    d.failures.map((f) => [f.check, f.code]),
    [
      ['greylist', 'PW-S001'],
      ['other', 'PW-E001'],
    ],
  );
});

test('synchronous checks give a decision without a promise; an asynchronous one makes the rest a promise', async () => {
  const sync = run([stage(check('a', { score: 1 })), stage(check('b', { score: 2 }))]);
  assert.ok(!(sync instanceof Promise));
  assert.equal(sync.score, 3);
  const later: PolicyCheck = { name: 'later', run: async () => [] };
  const mixed = run([stage(check('a', { score: 1 })), stage(later), stage(check('b', { score: 2 }))]);
  assert.ok(mixed instanceof Promise);
  assert.equal((await mixed).score, 3);
});
