/**
 * The benchmark's server processes: started with the current node (or, for the greylisting benchmark, any
 * program: redis-server, postgrey), made ready within a bound (the policy port must answer a real request),
 * and stopped — SIGTERM, then SIGKILL after a grace — at the end, on error and on SIGINT/SIGTERM, so no
 * process is left behind. Also: free loopback ports, a child's CPU time and resident memory.
 *
 * Failure behaviour: a child that exits or does not answer in time is a BenchError naming it, with the tail
 * of its stderr.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { PolicyClient } from '../src/policy/client.js';
import { BenchError } from './load.js';

export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  /** Resolves with the exit code (or the signal name) when the process has exited. */
  readonly exited: Promise<number | string>;
  stderrTail(): string;
}

const running = new Set<Child>();

/** A port the kernel just handed out on 127.0.0.1 (bound to port 0, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `node [nodeArgs] script args` with stdout to `stdoutFile` (or a pipe when undefined, for a `ready`
 * line) and stderr kept for messages.
 */
export function startChild(
  name: string,
  script: string,
  args: readonly string[],
  options: { readonly stdoutFile?: string; readonly nodeArgs?: readonly string[] } = {},
): Child {
  return startProcess(name, process.execPath, [...(options.nodeArgs ?? []), script, ...args], options);
}

/**
 * Starts any program (`command args`, no shell) the same way as startChild: stdout to `stdoutFile` or a pipe,
 * stderr kept (its tail) for messages, stopped with the others by stopAll and on exit.
 */
export function startProcess(
  name: string,
  command: string,
  args: readonly string[],
  options: { readonly stdoutFile?: string; readonly cwd?: string } = {},
): Child {
  const out = options.stdoutFile !== undefined ? openSync(options.stdoutFile, 'a') : undefined;
  const child = spawn(command, [...args], {
    stdio: ['ignore', out ?? 'pipe', 'pipe'],
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
  });
  if (out !== undefined) closeSync(out);
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    stderr = (stderr + text).slice(-4000);
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', (error) => resolve(error.message));
  });
  const handle: Child = { name, process: child, exited, stderrTail: () => stderr.trim() };
  running.add(handle);
  void exited.then(() => running.delete(handle));
  return handle;
}

function childFailed(child: Child, what: string): BenchError {
  const tail = child.stderrTail();
  return new BenchError(`${child.name} ${what}${tail ? `; its stderr:\n${tail}` : ''}`);
}

/** Waits for a `ready` line on the child's stdout pipe. */
export function waitForLine(child: Child, line: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const stdout = child.process.stdout;
    if (!stdout) {
      reject(new BenchError(`${child.name}: stdout is not a pipe`));
      return;
    }
    let seen = '';
    const timer = setTimeout(
      () => reject(childFailed(child, `printed no "${line}" within ${timeoutMs} ms`)),
      timeoutMs,
    );
    stdout.setEncoding('utf8');
    stdout.on('data', (text: string) => {
      seen += text;
      if (seen.split('\n').includes(line)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void child.exited.then((code) => {
      clearTimeout(timer);
      reject(childFailed(child, `exited (${code}) before it was ready`));
    });
  });
}

/** Retries a real policy request on `port` until answered; rejects after `timeoutMs` or if the child dies. */
export async function waitForPolicy(
  child: Child,
  port: number,
  request: Readonly<Record<string, string>>,
  timeoutMs: number,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let exitedWith: number | string | undefined;
  void child.exited.then((code) => {
    exitedWith = code;
  });
  let last = 'no attempt';
  while (Date.now() < deadline) {
    if (exitedWith !== undefined) throw childFailed(child, `exited (${exitedWith}) before it was ready`);
    try {
      const client = await PolicyClient.connect(`127.0.0.1:${port}`, 1000);
      try {
        return await client.query(request, 2000);
      } finally {
        client.close();
      }
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw childFailed(
    child,
    `did not answer a policy request on 127.0.0.1:${port} within ${timeoutMs} ms (${last})`,
  );
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopChild(child: Child, graceMs = 3000): Promise<void> {
  if (child.process.exitCode !== null || child.process.signalCode !== null) return;
  child.process.kill('SIGTERM');
  const timer = setTimeout(() => child.process.kill('SIGKILL'), graceMs);
  await child.exited;
  clearTimeout(timer);
}

export async function stopAll(graceMs?: number): Promise<void> {
  await Promise.all([...running].map((child) => stopChild(child, graceMs)));
}

let clockTicks: number | undefined;

function ticksToMs(ticks: number): number {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return (ticks * 1000) / clockTicks;
}

/**
 * CPU time (user + system, all threads) a process has used, in ms, from Linux's /proc/PID/stat; undefined
 * elsewhere or once the process is gone. Resolution: one clock tick (usually 10 ms).
 */
export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined || process.platform !== 'linux') return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticksToMs(ticks) : undefined;
  } catch {
    return undefined;
  }
}

function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the parenthesised command name, from field 3 (state) on.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * CPU ms of this process and all its descendants, dead or alive: for each live one its own time plus that of
 * the children it has reaped (utime, stime, cutime, cstime). Linux only.
 */
export function ownTreeCpuMs(): number {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const parent = Number(statFields(Number(entry))?.[1]);
    if (Number.isFinite(parent)) parents.set(Number(entry), parent);
  }
  const ours = new Set([process.pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, parent] of parents) {
      if (!ours.has(pid) && ours.has(parent)) {
        ours.add(pid);
        grew = true;
      }
    }
  }
  let ticks = 0;
  for (const pid of ours) {
    const fields = statFields(pid);
    if (fields) ticks += [11, 12, 13, 14].reduce((sum, i) => sum + (Number(fields[i]) || 0), 0);
  }
  return ticksToMs(ticks);
}

/**
 * CPU time the whole machine has spent busy, in ms summed over its CPUs (Linux /proc/stat: user, nice,
 * system, irq, steal). Softirq is left out: loopback traffic is processed there, on behalf of whoever sent it.
 */
export function machineBusyMs(): number | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    // First line: `cpu  user nice system idle iowait irq softirq steal …`, in clock ticks.
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const [user, nice, system, , , irq, , steal] = line.trim().split(/\s+/).slice(1).map(Number);
    const ticks = (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (steal ?? 0);
    return Number.isFinite(ticks) ? ticksToMs(ticks) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Resident memory of a process from Linux's /proc/PID/status: VmRSS (now) and VmHWM (its peak), in bytes;
 * undefined elsewhere or once the process is gone.
 */
export function processMemory(pid: number | undefined): { rss: number; hwm: number } | undefined {
  if (pid === undefined || process.platform !== 'linux') return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string) =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1] ?? NaN);
    const rss = kib('VmRSS');
    const hwm = kib('VmHWM');
    return Number.isFinite(rss) && Number.isFinite(hwm) ? { rss: rss * 1024, hwm: hwm * 1024 } : undefined;
  } catch {
    return undefined;
  }
}

/** The full path of `command` on the PATH or in the usual sbin/bin directories; undefined when absent. */
export function which(command: string): string | undefined {
  if (path.isAbsolute(command)) return isExecutable(command) ? command : undefined;
  const dirs = [
    ...(process.env['PATH'] ?? '').split(':'),
    '/usr/local/sbin',
    '/usr/sbin',
    '/sbin',
    '/usr/bin',
    '/bin',
  ];
  return dirs
    .filter((dir) => dir !== '')
    .map((dir) => path.join(dir, command))
    .find(isExecutable);
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stoppers for what a part runs outside startChild/startProcess (a listener spawning per connection, clamd, a
 * sink): run on SIGINT/SIGTERM (`stop`) and, synchronously, on exit (`killNow`). Returns the unregister call.
 */
export interface Stopper {
  readonly stop: () => Promise<unknown>;
  readonly killNow?: () => void;
}
const stoppers = new Set<Stopper>();

export function registerStopper(stopper: Stopper): () => void {
  stoppers.add(stopper);
  return () => stoppers.delete(stopper);
}

/** On a signal: every registered stopper, then every child (SIGTERM, SIGKILL after the grace). */
export async function stopEverything(graceMs?: number): Promise<void> {
  await Promise.all([...stoppers].map((s) => s.stop().catch(() => undefined)));
  await stopAll(graceMs);
}

/** Last resort when the bench exits without having stopped them (synchronous, as 'exit' handlers must be). */
export function killAllNow(): void {
  for (const stopper of stoppers) stopper.killNow?.();
  for (const child of running) child.process.kill('SIGKILL');
}
