/**
 * test/harness/daemon.ts: one foreground daemon as a child process of a test — started, probed until it answers,
 * stopped and restarted by PID (never by name), paused and resumed with SIGSTOP/SIGCONT. The harnesses of
 * real servers (clamd.ts, slapd.ts) write their config, then hand the command line and a readiness probe here.
 *
 * Failure: start() rejects with `describe(...)` and the tail of the output file when the daemon exits, cannot
 * be run, or does not answer within `readyMs`; it is stopped first. stop() sends SIGCONT (a paused daemon
 * cannot exit) and SIGTERM, then SIGKILL after 3 s, and waits for the exit.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';

export interface DaemonOptions {
  readonly command: string;
  readonly args: readonly string[];
  /** Where its stdout and stderr go (appended). */
  readonly outFile: string;
  /** True once it answers. */
  readonly ready: () => Promise<boolean> | boolean;
  readonly readyMs: number;
  /** The first line of start()'s error: what did not answer, and why (`exited`, or the spawn error). */
  readonly describe: (why: { exited: boolean; spawnError?: Error }) => string;
}

export interface Daemon {
  /** PID of the running daemon; undefined while stopped. */
  readonly pid: number | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * SIGSTOP, resolved once the kernel reports the daemon stopped: the signal takes effect asynchronously (a
   * thread running on another CPU stops a moment later), and a "hung server" test proves nothing if the server
   * still answers. Rejects when it is not running or does not stop within 2 s.
   */
  pause(): Promise<void>;
  resume(): void;
  /** SIGKILL at once, without waiting (the safety net when the test process exits). */
  kill(): void;
}

export function tail(file: string, lines = 20): string {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n') : '(none)';
}

export function daemon(options: DaemonOptions): Daemon {
  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  async function stop(): Promise<void> {
    const running = proc;
    if (!running) return;
    running.kill('SIGCONT');
    running.kill('SIGTERM');
    const timer = setTimeout(() => running.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }

  async function start(): Promise<void> {
    if (proc) return;
    const out = openSync(options.outFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(options.command, [...options.args], { stdio: ['ignore', out, out] });
    } finally {
      closeSync(out);
    }
    proc = child;
    let gone = false;
    let spawnError: Error | undefined;
    exited = new Promise<void>((resolve) => {
      const done = () => {
        gone = true;
        if (proc === child) proc = undefined;
        resolve();
      };
      child.once('exit', done);
      child.once('error', (error) => {
        spawnError = error;
        done();
      });
    });
    const deadline = Date.now() + options.readyMs;
    while (Date.now() < deadline && !gone) {
      if (await options.ready()) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const why = options.describe({ exited: gone, ...(spawnError ? { spawnError } : {}) });
    await stop();
    throw new Error(`${why}\n--- output:\n${tail(options.outFile)}`);
  }

  return {
    get pid() {
      return proc?.pid;
    },
    start,
    stop,
    pause: async () => {
      const pid = proc?.pid;
      if (pid === undefined || !proc?.kill('SIGSTOP')) throw new Error(`${options.command} is not running`);
      const deadline = Date.now() + 2000;
      while (readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] !== 'T') {
        if (Date.now() > deadline) throw new Error(`${options.command} did not stop on SIGSTOP`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
    resume: () => proc?.kill('SIGCONT'),
    kill: () => proc?.kill('SIGKILL'),
  };
}

const live = new Set<() => void>();
process.on('exit', () => {
  for (const cleanup of live) cleanup();
});

/**
 * Starts a daemon that lives in its own temp dir and returns its `destroy()` (stop it, remove the dir; once).
 * When the start fails the dir is removed; a safety net kills the daemon and removes the dir if the test
 * process exits first.
 */
export async function startInDir(server: Daemon, dir: string): Promise<() => Promise<void>> {
  const cleanup = () => {
    server.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  live.add(cleanup);
  try {
    await server.start();
  } catch (error) {
    live.delete(cleanup);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  let destroying: Promise<void> | undefined;
  return () =>
    (destroying ??= (async () => {
      await server.stop();
      live.delete(cleanup);
      rmSync(dir, { recursive: true, force: true });
    })());
}
