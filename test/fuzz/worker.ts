/**
 * The worker thread of one fuzz target (runner.ts `runTarget`): runs the inputs, tells the main thread each
 * input's index through the shared heartbeat before it starts, and posts the result.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type FuzzSettings, loadTarget, runInputs } from './runner.js';

const { name, dir, settings, count, heartbeat, workDir } = workerData as {
  name: string;
  dir: string;
  settings: FuzzSettings;
  count: number;
  heartbeat: Int32Array;
  workDir: string;
};

const target = await loadTarget(name, dir);
const result = await runInputs(
  target,
  settings,
  0,
  count,
  (index) => Atomics.store(heartbeat, 0, index),
  workDir,
);
parentPort?.postMessage(result);
