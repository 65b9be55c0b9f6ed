/**
 * clamd's health (src/adapters/clamd-health.ts) against a scripted pinger: which scan outcomes move it (table),
 * one event per change and none for the start, the PING loop (at once, then every interval, until stop(), which
 * aborts a PING under way), an overloaded clamd (PONG but failing scans) kept down without flapping, and the
 * gauge's sample only where clamd is used.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ClamdErrorKind, ClamdScanEvent } from '../../src/adapters/clamd.js';
import { ClamdHealth, type ClamdHealthEvent } from '../../src/adapters/clamd-health.js';
import { Metrics } from '../../src/observe/metrics.js';

const TARGET = 'unix:/run/clamav/clamd.ctl';
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits (bounded: 2 s, for a loaded machine) until `ok` holds. */
async function until(what: string, ok: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 2000; !ok(); await sleep(5))
    if (Date.now() > deadline) assert.fail(`not ${what} within 2 s`);
}

/** A pinger whose answers the test sets: PONG, or an error with `failure`'s message. */
function scripted() {
  const state = { failure: undefined as string | undefined, pings: 0, hang: false, aborted: 0 };
  const pinger = {
    target: TARGET,
    async ping({ signal }: { signal?: AbortSignal }): Promise<void> {
      state.pings++;
      if (state.hang) {
        await new Promise<void>((_resolve, reject) =>
          signal?.addEventListener('abort', () => {
            state.aborted++;
            reject(new Error('aborted'));
          }),
        );
      }
      if (state.failure !== undefined) throw new Error(state.failure);
    },
  };
  return { state, pinger };
}

function tracked(intervalMs = 60_000) {
  const { state, pinger } = scripted();
  const events: ClamdHealthEvent[] = [];
  const health = new ClamdHealth(pinger, { intervalMs, onEvent: (e) => events.push(e) });
  return { state, health, events };
}

function scan(outcome: ClamdScanEvent['outcome'], kind?: ClamdErrorKind): ClamdScanEvent {
  return {
    target: TARGET,
    outcome,
    bytes: 100,
    ms: 1,
    ...(kind ? { kind, reason: `clamd at ${TARGET}: ${kind}` } : {}),
  };
}

describe('scan outcomes', () => {
  const cases: { outcome: ClamdScanEvent['outcome']; kind?: ClamdErrorKind; down: boolean }[] = [
    { outcome: 'error', kind: 'unreachable', down: true },
    { outcome: 'error', kind: 'timeout', down: true },
    { outcome: 'error', kind: 'connection_lost', down: true },
    { outcome: 'error', kind: 'size_limit', down: false },
    { outcome: 'error', kind: 'clamd_error', down: false },
    { outcome: 'error', kind: 'protocol', down: false },
    { outcome: 'error', kind: 'aborted', down: false },
    { outcome: 'error', kind: 'source', down: false },
  ];
  for (const c of cases) {
    test(`${c.kind ?? c.outcome} ${c.down ? 'marks clamd down' : 'leaves it up'}`, () => {
      const { health } = tracked();
      health.scanned(scan('clean'));
      health.scanned(scan(c.outcome, c.kind));
      assert.deepEqual(
        health.health(),
        c.down ? { healthy: false, reason: `clamd at ${TARGET}: ${c.kind}` } : { healthy: true },
      );
    });
  }

  test('a clean or infected scan marks it up again', () => {
    for (const outcome of ['clean', 'infected'] as const) {
      const { health } = tracked();
      health.scanned(scan('error', 'unreachable'));
      health.scanned(scan(outcome));
      assert.deepEqual(health.health(), { healthy: true });
    }
  });
});

test('starts down without an event; each change is reported once, the reason kept current', () => {
  const { health, events } = tracked();
  assert.deepEqual(health.health(), { healthy: false, reason: 'no answer to PING yet' });
  health.scanned(scan('clean'));
  assert.deepEqual(events, [], 'coming up at start is no recovery');
  health.scanned(scan('error', 'unreachable'));
  health.scanned(scan('error', 'timeout'));
  assert.deepEqual(health.health(), { healthy: false, reason: `clamd at ${TARGET}: timeout` });
  health.scanned(scan('clean'));
  health.scanned(scan('infected'));
  assert.deepEqual(events, [
    { code: 'PW-F009', level: 'error', message: `clamd at ${TARGET}: unreachable` },
    { code: 'PW-F010', level: 'info', message: `clamd at ${TARGET} answers again` },
  ]);
});

test('a listener that throws changes nothing', () => {
  const { pinger } = scripted();
  const health = new ClamdHealth(pinger, {
    intervalMs: 1000,
    onEvent: () => {
      throw new Error('listener broke');
    },
  });
  health.scanned(scan('clean'));
  health.scanned(scan('error', 'unreachable'));
  assert.equal(health.health().healthy, false);
});

test('PING at start, then every interval: a dead clamd goes down, a PONG brings it back; stop() ends it', async () => {
  const { state, health, events } = tracked(20);
  state.failure = 'clamd at unix:/x is not reachable (ENOENT)';
  health.start();
  health.start(); // once only
  await until('down', () => events.length === 1);
  assert.equal(state.pings, 1);
  assert.deepEqual(health.health(), { healthy: false, reason: 'clamd at unix:/x is not reachable (ENOENT)' });
  state.failure = undefined;
  await until('up again', () => health.health().healthy);
  assert.ok(state.pings >= 2, `${state.pings} PINGs`);
  assert.deepEqual(
    events.map((e) => e.code),
    ['PW-F009', 'PW-F010'],
  );
  await health.stop();
  const pings = state.pings;
  await sleep(60);
  assert.equal(state.pings, pings, 'no PING after stop()');
});

test('overloaded: a PONG does not undo a timed-out scan for two intervals; a finished scan does at once', async () => {
  const { pinger, state } = scripted();
  const events: ClamdHealthEvent[] = [];
  const clock = { ms: 0 };
  const health = new ClamdHealth(pinger, {
    intervalMs: 20,
    now: () => clock.ms,
    onEvent: (e) => events.push(e),
  });
  health.scanned(scan('clean'));
  health.scanned(scan('error', 'timeout'));
  clock.ms = 39; // still inside two intervals of the failed scan
  health.start();
  await until('PINGed twice', () => state.pings >= 2);
  assert.deepEqual(health.health(), {
    healthy: false,
    reason: `answers PING, but scans fail: clamd at ${TARGET}: timeout`,
  });
  assert.deepEqual(
    events.map((e) => e.code),
    ['PW-F009'],
    'no flip to up and back at each PING',
  );
  clock.ms = 40; // two intervals without a failed scan: a PONG counts again
  await until('up on a PONG', () => health.health().healthy);
  assert.deepEqual(
    events.map((e) => e.code),
    ['PW-F009', 'PW-F010'],
  );
  health.scanned(scan('error', 'connection_lost'));
  health.scanned(scan('infected'));
  assert.deepEqual(health.health(), { healthy: true }, 'a finished scan is proof at once');
  await health.stop();
});

test('stop() aborts a PING under way and does not count it as clamd down', async () => {
  const { state, health, events } = tracked(20);
  health.scanned(scan('clean'));
  state.hang = true;
  health.start();
  await until('PINGing', () => state.pings === 1);
  await health.stop();
  assert.equal(state.aborted, 1);
  assert.deepEqual(health.health(), { healthy: true });
  assert.deepEqual(events, []);
});

test('postwarden_clamd_up and postwarden_ldap_up have no sample on a host that does not use them', async () => {
  const metrics = new Metrics({ processMetrics: false });
  const text = await metrics.registry.metrics();
  assert.doesNotMatch(text, /^postwarden_(clamd|ldap)_up /m);
  const { health } = tracked();
  metrics.collectFrom('postwarden_clamd_up', (gauge) => gauge.set(health.health().healthy ? 1 : 0));
  assert.match(await metrics.registry.metrics(), /^postwarden_clamd_up 0$/m);
  health.scanned(scan('clean'));
  assert.match(await metrics.registry.metrics(), /^postwarden_clamd_up 1$/m);
});
