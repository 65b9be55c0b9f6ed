/**
 * The periodic jobs `serve` runs (node-cron, `jobs.*` schedules): `purge` removes expired state, `compact` gives
 * space back, `dnsbl_selftest` tests every DNS list (at start too), `quarantine` removes held messages past their
 * retention, `summary` logs what was decided since the last summary. Each run is logged (PW-J001, or PW-J002
 * when it fails: it simply runs again at its next time) and reported in the metrics; a run never overlaps the
 * previous one, and nothing here keeps the process alive on its own.
 */
import cron, { type ScheduledTask } from 'node-cron';
import type { Config } from '../config/schema.js';
import type { Store } from '../core/store.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';

export type JobName = 'purge' | 'compact' | 'dnsbl_selftest' | 'quarantine' | 'summary';

/** What the jobs work on; each is absent when nothing configured uses it. */
export interface JobTargets {
  readonly store?: Store;
  /** Self-tests every DNS list (policy.dnsbl); also run once at start. */
  readonly dnsblSelfTest?: () => Promise<Record<string, unknown>>;
  /** Removes held messages past their retention (filter.quarantine.retention_days); says what it did. */
  readonly quarantineExpiry?: () => Promise<Record<string, unknown>>;
}

/** Runs one job body with its log line and metrics; resolves whatever happened. */
export async function runJob(
  name: JobName,
  body: () => Promise<Record<string, unknown>>,
  logger: Logger,
  metrics: Metrics,
): Promise<void> {
  const started = performance.now();
  try {
    const outcome = await body();
    const seconds = (performance.now() - started) / 1000;
    metrics.get('postwarden_job_runs_total').inc({ task: name, result: 'ok' });
    metrics.get('postwarden_job_last_duration_seconds').set({ task: name }, seconds);
    metrics.get('postwarden_job_last_run_timestamp_seconds').set({ task: name }, Date.now() / 1000);
    logger.info(
      { code: 'PW-J001', job: name, ...outcome, ms: Math.round(seconds * 1000) },
      `job ${name} done`,
    );
  } catch (error) {
    metrics.get('postwarden_job_runs_total').inc({ task: name, result: 'failed' });
    metrics.get('postwarden_errors_total').inc({ code: 'PW-J002' });
    logger.error({ code: 'PW-J002', job: name, err: error }, `job ${name} failed`);
  }
}

/** Decisions and verdict symbols counted since the previous call: the summary's content. */
export function summaryCounter(metrics: Metrics): () => Promise<Record<string, unknown>> {
  let previous = new Map<string, number>();
  let since = Date.now();
  return async () => {
    const current = new Map<string, number>();
    for (const item of (await metrics.get('postwarden_policy_decisions_total').get()).values) {
      current.set(`decision:${String(item.labels.action)}`, item.value);
    }
    for (const item of (await metrics.get('postwarden_policy_verdicts_total').get()).values) {
      const key = `${String(item.labels.mode === 'observe' ? 'observed:' : '')}${String(item.labels.symbol)}`;
      current.set(key, (current.get(key) ?? 0) + item.value);
    }
    const decisions: Record<string, number> = {};
    const symbols: Record<string, number> = {};
    for (const [key, value] of current) {
      const delta = value - (previous.get(key) ?? 0);
      if (delta === 0) continue;
      if (key.startsWith('decision:')) decisions[key.slice(9)] = delta;
      else symbols[key] = delta;
    }
    const periodS = Math.round((Date.now() - since) / 1000);
    previous = current;
    since = Date.now();
    return { period_s: periodS, decisions, symbols };
  };
}

/** Schedules the jobs; returns a function that stops them. */
export function startJobs(config: Readonly<Config>, targets: JobTargets, logger: Logger, metrics: Metrics) {
  const { store, dnsblSelfTest, quarantineExpiry } = targets;
  const tasks: ScheduledTask[] = [];
  const every = (name: JobName, expression: string, body: () => Promise<Record<string, unknown>>) => {
    const task = cron.schedule(expression, () => runJob(name, body, logger, metrics), {
      name,
      noOverlap: true,
      unref: true,
    });
    tasks.push(task);
  };
  if (store) {
    every('purge', config.jobs.purge, async () => ({ removed: await store.purgeExpired() }));
    every('compact', config.jobs.compact, async () => {
      await store.compact();
      return {};
    });
  }
  if (dnsblSelfTest) {
    every('dnsbl_selftest', config.jobs.dnsbl_selftest, dnsblSelfTest);
    void runJob('dnsbl_selftest', dnsblSelfTest, logger, metrics);
  }
  if (quarantineExpiry) {
    every('quarantine', config.jobs.quarantine, quarantineExpiry);
  }
  every('summary', config.jobs.summary, summaryCounter(metrics));
  return async (): Promise<void> => {
    for (const task of tasks) await task.destroy();
  };
}
