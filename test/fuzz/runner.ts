/**
 * The fuzzing runner every target shares (docs/reliability.md). A target (one file in test/fuzz/targets/) is a
 * fast-check arbitrary of inputs and a session that runs one input and throws when a property fails. The runner
 * draws input number `i` from the seed alone (`fc.sample` seeded with `seedFor(seed, i)`), so any input is
 * rebuilt from `seed` and `index` without the inputs before it; that pair is what a failure reports.
 *
 * Each target runs in a worker thread with a heap limit (memory that grows without bound kills the worker, and
 * is reported as such) and a heartbeat the main thread watches: an input that holds the event loop (a runaway
 * regular expression, an endless loop) past the target's per-input bound is a hang, and the worker is stopped.
 * An input whose promise does not settle within the bound is a hang too, reported by the worker itself.
 *
 * A failure prints the target, seed, index, the reason, where the input was written, and the command that runs
 * that one input again (`npm run fuzz -- --target T --seed S --index I`).
 */
import fc from 'fast-check';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { withDeadline } from '../../src/util/deadline.js';

export interface FuzzContext {
  readonly full: boolean;
  /** A directory of this run (`pw-h-fuzz-*` under the temporary directory), removed afterwards. */
  readonly workDir: string;
  /** The first of five loopback ports a target may listen on (targets run one at a time). */
  readonly port: number;
}

export interface FuzzSession<Input> {
  /** Runs one input; throws when a property fails. Returns how many units (requests, messages) it covered. */
  run(input: Input): Promise<number> | number;
  close?(): Promise<void> | void;
}

export interface FuzzTarget<Input> {
  readonly name: string;
  /** What one unit is, for the counts printed (`requests`, `messages`, `documents`). */
  readonly unit: string;
  /** Inputs in the quick form (the test command) and in the full run (`npm run fuzz`). */
  readonly iterations: { readonly quick: number; readonly full: number };
  /** One input's bound: past it, the input is a hang. */
  readonly timeoutMs: number;
  /** Heap of the target's worker; past it, the run fails as unbounded memory. */
  readonly heapMb?: number;
  readonly input: fc.Arbitrary<Input>;
  open(ctx: FuzzContext): Promise<FuzzSession<Input>>;
  /** The input as written to the failure file (bytes for messages, text for the rest). */
  show(input: Input): string | Uint8Array;
  /** The failure file's extension. */
  readonly extension?: string;
}

export interface FuzzSettings {
  readonly seed: number;
  readonly full: boolean;
  /** Multiplies the iteration counts (FUZZ_SCALE). */
  readonly scale: number;
  /** The first loopback port of the run (FUZZ_PORT; the full run uses 10 above it). */
  readonly portBase: number;
}

/** The quick form's seed when FUZZ_SEED is not set: the test command always runs the same inputs. */
export const DEFAULT_SEED = 20_261_123;
const DEFAULT_PORT = 21_700;

function envNumber(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new Error(`${name}=${text}: not a number`);
  return value;
}

export function fuzzSettings(env: NodeJS.ProcessEnv = process.env, full = false): FuzzSettings {
  return {
    seed: envNumber(env, 'FUZZ_SEED', DEFAULT_SEED) | 0,
    full: full || env['FUZZ_FULL'] === '1',
    scale: envNumber(env, 'FUZZ_SCALE', 1),
    portBase: envNumber(env, 'FUZZ_PORT', DEFAULT_PORT),
  };
}

export function iterationsOf(target: FuzzTarget<unknown>, settings: FuzzSettings): number {
  const base = settings.full ? target.iterations.full : target.iterations.quick;
  return Math.max(1, Math.round(base * settings.scale));
}

/** fast-check's seed for input `index` of a run (a 32-bit mix, so neighbouring indexes draw unrelated inputs). */
export function seedFor(seed: number, index: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  return (h ^ (h >>> 15)) | 0;
}

export function inputAt<Input>(target: FuzzTarget<Input>, seed: number, index: number): Input {
  const [input] = fc.sample(target.input, { seed: seedFor(seed, index), numRuns: 1 });
  return input as Input;
}

export class FuzzHang extends Error {}

export interface FuzzRunResult {
  readonly target: string;
  readonly unit: string;
  readonly iterations: number;
  readonly units: number;
  readonly ms: number;
  /** CPU seconds the process used meanwhile (user and system), which a busy machine does not inflate. */
  readonly cpuS?: number;
  readonly failure?: {
    readonly index: number;
    readonly kind: 'property' | 'hang' | 'crash' | 'memory';
    readonly message: string;
  };
}

/**
 * Runs inputs `from` … `from + count - 1` in this thread, stopping at the first failure. `beat` is told the
 * index before each input (the worker's heartbeat).
 */
export async function runInputs<Input>(
  target: FuzzTarget<Input>,
  settings: FuzzSettings,
  from: number,
  count: number,
  beat: (index: number) => void = () => undefined,
  /** The run's directory, when its owner (runTarget, which outlives a worker it stops) removes it. */
  given?: string,
): Promise<FuzzRunResult> {
  const ctx = contextOf(settings, given ?? newWorkDir());
  const started = performance.now();
  const cpu = process.cpuUsage();
  const cpuS = () => {
    const used = process.cpuUsage(cpu);
    return (used.user + used.system) / 1e6;
  };
  let units = 0;
  let done = 0;
  const session = await target.open(ctx);
  try {
    for (let index = from; index < from + count; index++) {
      // Let the event loop turn, as a server's does between requests: an input that settles through promises
      // alone would otherwise starve the timers (the policy checks' deadlines) and they would pile up.
      await new Promise((resolve) => setImmediate(resolve));
      beat(index);
      const input = inputAt(target, settings.seed, index);
      try {
        units += await withDeadline(
          Promise.resolve().then(() => session.run(input)),
          target.timeoutMs,
          () => new FuzzHang(`no result within ${target.timeoutMs} ms`),
        );
      } catch (error) {
        const hang = error instanceof FuzzHang;
        return {
          target: target.name,
          unit: target.unit,
          iterations: done,
          units,
          ms: performance.now() - started,
          cpuS: cpuS(),
          failure: {
            index,
            kind: hang ? 'hang' : 'property',
            message: error instanceof Error ? (error.stack ?? error.message) : String(error),
          },
        };
      }
      done += 1;
    }
  } finally {
    await session.close?.();
    if (given === undefined) rmSync(ctx.workDir, { recursive: true, force: true });
  }
  return {
    target: target.name,
    unit: target.unit,
    iterations: done,
    units,
    ms: performance.now() - started,
    cpuS: cpuS(),
  };
}

function newWorkDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'pw-h-fuzz-'));
}

function contextOf(settings: FuzzSettings, workDir: string): FuzzContext {
  return {
    full: settings.full,
    workDir,
    port: settings.portBase + (settings.full ? 10 : 0),
  };
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** Where the compiled targets are: one module per target, its default export a FuzzTarget. */
export const TARGETS_DIR = path.join(HERE, 'targets');

export function targetNames(dir = TARGETS_DIR): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.js'))
    .map((f) => f.slice(0, -3))
    .sort();
}

export async function loadTarget(name: string, dir = TARGETS_DIR): Promise<FuzzTarget<unknown>> {
  const url = pathToFileURL(path.join(dir, `${name}.js`)).href;
  const module = (await import(url)) as { default?: FuzzTarget<unknown> };
  if (!module.default) throw new Error(`${name}: a fuzz target module exports its target as default`);
  return module.default;
}

/**
 * Extra time past a target's bound before the watchdog stops a worker whose event loop is held (an input that
 * only waits is caught sooner, by its own deadline in the worker, which reports it more precisely).
 */
const WATCHDOG_GRACE_MS = 1000;
const PROGRESS_MS = 60_000;

/**
 * Runs a target's inputs in a worker thread under the heap limit and the heartbeat watchdog. A crash (an error
 * nothing caught, an exit) is reported at the index running when it surfaced: an error thrown later from a
 * timer of an earlier input is charged to the input in front.
 */
export async function runTarget(
  name: string,
  settings: FuzzSettings,
  dir = TARGETS_DIR,
  /** Told the inputs done so far and the total, every PROGRESS_MS. */
  progress?: (done: number, total: number) => void,
): Promise<FuzzRunResult> {
  const target = await loadTarget(name, dir);
  const count = iterationsOf(target, settings);
  const workDir = newWorkDir();
  const heartbeat = new Int32Array(new SharedArrayBuffer(4));
  Atomics.store(heartbeat, 0, -1);
  const started = performance.now();
  const worker = new Worker(new URL('./worker.js', import.meta.url), {
    workerData: { name, dir, settings, count, heartbeat, workDir },
    resourceLimits: { maxOldGenerationSizeMb: target.heapMb ?? 512 },
  });
  return new Promise<FuzzRunResult>((resolve) => {
    let settled = false;
    let lastIndex = -1;
    let lastChange = performance.now();
    const finish = (result: FuzzRunResult) => {
      if (settled) return;
      settled = true;
      clearInterval(watchdog);
      void worker.terminate().finally(() => rmSync(workDir, { recursive: true, force: true }));
      resolve(result);
    };
    const failed = (kind: 'hang' | 'crash' | 'memory', message: string): FuzzRunResult => ({
      target: name,
      unit: target.unit,
      iterations: Math.max(0, Atomics.load(heartbeat, 0)),
      units: 0,
      ms: performance.now() - started,
      failure: { index: Math.max(0, Atomics.load(heartbeat, 0)), kind, message },
    });
    let lastProgress = performance.now();
    const watchdog = setInterval(() => {
      const index = Atomics.load(heartbeat, 0);
      if (progress && performance.now() - lastProgress >= PROGRESS_MS) {
        lastProgress = performance.now();
        progress(Math.max(0, index), count);
      }
      if (index !== lastIndex) {
        lastIndex = index;
        lastChange = performance.now();
      } else if (index >= 0 && performance.now() - lastChange > target.timeoutMs + WATCHDOG_GRACE_MS) {
        finish(failed('hang', `the event loop was held for more than ${target.timeoutMs} ms`));
      }
    }, 250);
    worker.on('message', (result: FuzzRunResult) => finish(result));
    worker.on('error', (error: Error & { code?: string }) => {
      const memory = error.code === 'ERR_WORKER_OUT_OF_MEMORY';
      finish(failed(memory ? 'memory' : 'crash', error.stack ?? error.message));
    });
    worker.on('exit', (code) => finish(failed('crash', `the worker exited (${code}) without a result`)));
  });
}

/** Writes the failing input where the report says, and returns the report's text. */
export async function describeFailure(
  result: FuzzRunResult,
  settings: FuzzSettings,
  dir = TARGETS_DIR,
): Promise<string> {
  const failure = result.failure;
  if (!failure) return `${result.target}: no failure`;
  const target = await loadTarget(result.target, dir);
  const out = path.join(os.tmpdir(), 'pw-h-fuzz-failures');
  mkdirSync(out, { recursive: true });
  const file = path.join(
    out,
    `${result.target}-${settings.seed}-${failure.index}${target.extension ?? '.txt'}`,
  );
  writeFileSync(file, target.show(inputAt(target, settings.seed, failure.index)));
  return [
    `fuzz target ${result.target}: ${failure.kind} at seed=${settings.seed} index=${failure.index}`,
    `  ${failure.message.split('\n').slice(0, 12).join('\n  ')}`,
    `  input: ${file}`,
    `  again: npm run fuzz -- --target ${result.target} --seed ${settings.seed} --index ${failure.index}`,
  ].join('\n');
}

export function formatCounts(result: FuzzRunResult): string {
  const seconds = result.ms / 1000;
  const rate = seconds > 0 ? Math.round(result.units / seconds) : 0;
  const cpu = result.cpuS === undefined ? '' : `, ${result.cpuS.toFixed(1)} s of CPU`;
  return `${result.target}: ${result.iterations} inputs, ${result.units} ${result.unit} in ${seconds.toFixed(1)} s (${rate}/s${cpu})`;
}
