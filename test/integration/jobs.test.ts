/**
 * The periodic jobs on a real SQLite store: purge removes what expired, a failing job is logged and counted and
 * does not stop the others, the summary reports only what happened since the previous one, and startJobs runs
 * them on their cron schedules.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import { runJob, startJobs, summaryCounter } from '../../src/cli/jobs.js';
import { validateConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observe/logger.js';
import { Metrics } from '../../src/observe/metrics.js';
import { openStore } from '../../src/store/index.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'pw-jobs-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function logCapture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean))
        lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { lines, logger: createLogger('info', sink) };
}

async function metricValue(
  metrics: Metrics,
  name: string,
  labels: Record<string, string>,
): Promise<number | undefined> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const values =
    (metric as { values?: { labels: Record<string, string>; value: number }[] } | undefined)?.values ?? [];
  return values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value;
}

test('purge removes expired entries and reports it in the log and the metrics', async () => {
  let clock = Date.parse('2026-11-01T00:00:00Z');
  const store = await openStore({ driver: 'sqlite', path: path.join(dir, 'purge.db'), now: () => clock });
  for (let i = 0; i < 50; i += 1) await store.set(`grey:k${i}`, 'W1', i < 30 ? 60 : 3600);
  clock += 120_000;
  const { lines, logger } = logCapture();
  const metrics = new Metrics({ processMetrics: false });
  await runJob('purge', async () => ({ removed: await store.purgeExpired() }), logger, metrics);
  assert.equal((await store.scan('grey:', 100)).length, 20);
  const line = lines.find((l) => l['code'] === 'PW-J001');
  assert.equal(line?.['job'], 'purge');
  assert.equal(line?.['removed'], 30);
  assert.equal(await metricValue(metrics, 'postwarden_job_runs_total', { task: 'purge', result: 'ok' }), 1);
  assert.ok(
    ((await metricValue(metrics, 'postwarden_job_last_run_timestamp_seconds', { task: 'purge' })) ?? 0) > 0,
  );
  await store.close();
});

test('a failing job is logged PW-J002 and counted, and resolves', async () => {
  const { lines, logger } = logCapture();
  const metrics = new Metrics({ processMetrics: false });
  await runJob('compact', () => Promise.reject(new Error('store unavailable')), logger, metrics);
  assert.ok(lines.some((l) => l['code'] === 'PW-J002' && l['job'] === 'compact'));
  assert.equal(
    await metricValue(metrics, 'postwarden_job_runs_total', { task: 'compact', result: 'failed' }),
    1,
  );
  assert.equal(await metricValue(metrics, 'postwarden_errors_total', { code: 'PW-J002' }), 1);
});

test('the summary reports what happened since the previous summary', async () => {
  const metrics = new Metrics({ processMetrics: false });
  const summary = summaryCounter(metrics);
  metrics.get('postwarden_policy_decisions_total').inc({ action: 'defer_if_permit' }, 3);
  metrics
    .get('postwarden_policy_verdicts_total')
    .inc({ check: 'greylist', symbol: 'GREYLIST_NEW', mode: 'enforce' }, 3);
  metrics
    .get('postwarden_policy_verdicts_total')
    .inc({ check: 'greylist', symbol: 'GREYLIST_NEW', mode: 'observe' }, 2);
  const first = await summary();
  assert.deepEqual(first['decisions'], { defer_if_permit: 3 });
  assert.deepEqual(first['symbols'], { GREYLIST_NEW: 3, 'observed:GREYLIST_NEW': 2 });
  metrics.get('postwarden_policy_decisions_total').inc({ action: 'dunno' });
  const second = await summary();
  assert.deepEqual(second['decisions'], { dunno: 1 });
  assert.deepEqual(second['symbols'], {});
});

test('startJobs runs the jobs on their schedules and stops them', async () => {
  const loaded = validateConfig(
    {
      local_domains: ['example.org'],
      jobs: { purge: '* * * * * *', compact: '* * * * * *', summary: '* * * * * *' },
    },
    { kind: 'embedded' },
  );
  assert.ok(loaded.ok);
  const store = await openStore({ driver: 'sqlite', path: path.join(dir, 'scheduled.db') });
  const { lines, logger } = logCapture();
  const stop = startJobs(loaded.config, { store }, logger, new Metrics({ processMetrics: false }));
  const deadline = Date.now() + 5000;
  const ran = () => new Set(lines.filter((l) => l['code'] === 'PW-J001').map((l) => l['job']));
  while (ran().size < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  await stop();
  assert.deepEqual([...ran()].sort(), ['compact', 'purge', 'summary']);
  await store.close();
});

test('a schedule that is not a cron expression is a config problem naming the key', () => {
  const loaded = validateConfig(
    { local_domains: ['example.org'], jobs: { purge: 'every ten minutes' } },
    { kind: 'embedded' },
  );
  assert.equal(loaded.ok, false);
  assert.match(JSON.stringify(!loaded.ok && loaded.problems), /jobs\.purge/);
});
