/**
 * What the benchmark parts share: the command line of `npm run bench`, the environment knobs (BENCH_SECONDS,
 * BENCH_CONNECTIONS, …), how it stops on SIGINT/SIGTERM, and how its end becomes an exit code (0 ran, whatever
 * the figures; 1 broken; 2 usage).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { BenchError } from './load.js';

export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

/** `npm run bench`'s options (bench/main.ts). */
export const BENCH_OPTIONS = {
  only: { type: 'string' },
  out: { type: 'string' },
  'write-docs': { type: 'boolean' },
  'cpu-prof': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

/** A bench script's command line (`npm run bench`'s by default); a bad one is a usage error (exit 2). */
export function benchArgs<T extends Options = typeof BENCH_OPTIONS>(
  options: T = BENCH_OPTIONS as unknown as T,
) {
  try {
    return parseArgs({ options, strict: true }).values;
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

export function numberEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new UsageError(`${name}=${raw}: expected a number from ${min} to ${max}`);
  }
  return value;
}

/**
 * The knobs of the policy-protocol parts (policy, greylist, spf): BENCH_SECONDS measured per server and
 * connection count, BENCH_ROUNDS slices it is cut into, BENCH_WARMUP_SECONDS, BENCH_CONNECTIONS.
 */
export function sliceSettings(defaults: { readonly seconds: number; readonly rounds: number }) {
  return {
    seconds: numberEnv('BENCH_SECONDS', defaults.seconds, 0.5, 600),
    rounds: Math.round(numberEnv('BENCH_ROUNDS', defaults.rounds, 1, 100)),
    warmup: numberEnv('BENCH_WARMUP_SECONDS', 1, 0, 60),
    counts: connectionCounts(),
  };
}

/** The connection counts to measure at, from `variable` (a list like 1,8,32). */
export function connectionCounts(
  { variable, fallback, max }: { variable: string; fallback: readonly number[]; max: number } = {
    variable: 'BENCH_CONNECTIONS',
    fallback: [1, 8, 32],
    max: 1000,
  },
): number[] {
  const raw = process.env[variable];
  if (raw === undefined || raw === '') return [...fallback];
  const counts = raw.split(',').map((s) => Number(s.trim()));
  if (counts.length === 0 || counts.some((n) => !Number.isInteger(n) || n < 1 || n > max)) {
    throw new UsageError(`${variable}=${raw}: expected a list like ${fallback.join(',')} (each 1..${max})`);
  }
  return counts;
}

/** On SIGINT or SIGTERM: says so, runs `stop` (the servers, the temp dir), exits 130 or 143. */
export function onStopSignal(stop: (signal: NodeJS.Signals) => Promise<unknown>): void {
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping the servers\n`);
      void stop(signal).finally(() => process.exit(code));
    });
  }
}

/** Sets the exit code for how a run failed: 2 usage, 1 broken or crashed. */
export function reportFailure(error: unknown): void {
  if (error instanceof UsageError) {
    process.stderr.write(`bench: ${error.message}\n`);
    process.exitCode = 2;
  } else if (error instanceof BenchError) {
    process.stderr.write(`bench: BROKEN — ${error.message}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(
      `bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  }
}
