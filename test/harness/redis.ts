/**
 * test/harness/redis.ts: a real `redis-server` (or Sentinel) on loopback for integration tests.
 *
 * `startRedis()` runs `redis-server` in the foreground as a child process (by PID, never by name) with
 * `--save '' --appendonly no --daemonize no --bind 127.0.0.1 --protected-mode yes`, its working dir and log in a
 * fresh temp dir, and resolves once it answers PING. The returned handle can `stop()` it and `start()` it again
 * on the same port (a "Redis restart" test), `pause()`/`resume()` it (SIGSTOP/SIGCONT: a hung server), and run
 * `cli(...)` (redis-cli against it). With `sentinel` (config text), it runs `redis-server <file> --sentinel`
 * instead. `freeLoopbackPort(preferred)` returns `preferred` when nothing listens there, else a port the kernel
 * picks. redis-server comes from test/harness/install.sh.
 *
 * Failure: startRedis/start reject with the log's tail when the server does not answer within 5 s (or exits);
 * stop() escalates to SIGKILL after 3 s. A safety net kills every server still running when the process exits.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface RedisServerOptions {
  /** Port to listen on; default: 26379 if free, else one the kernel picks. */
  readonly port?: number;
  /** More redis-server arguments, e.g. ['--replicaof', '127.0.0.1', '26379']. */
  readonly args?: readonly string[];
  /** Run as Sentinel with this config text (written to sentinel.conf in the temp dir; Sentinel rewrites it). */
  readonly sentinel?: string;
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  readonly logFile: string;
  /** PID of the running server; undefined while stopped. */
  readonly pid: number | undefined;
  /** Stops the server (SIGTERM, then SIGKILL after 3 s) and waits for it to exit. Idempotent. */
  stop(): Promise<void>;
  /** Starts it again on the same port and waits for PING. */
  start(): Promise<void>;
  /** SIGSTOP: the server keeps its connections but answers nothing. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** redis-cli -p PORT ...args; resolves with its trimmed stdout. */
  cli(...args: string[]): string;
  /** Stops the server and removes its temp dir. */
  destroy(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** `preferred` when nothing listens on 127.0.0.1 there, else a free port the kernel picks. */
export async function freeLoopbackPort(preferred?: number): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | undefined>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(undefined));
      server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
        const address = server.address();
        const got = typeof address === 'object' && address ? address.port : undefined;
        server.close(() => resolve(got));
      });
    });
  if (preferred !== undefined) {
    const got = await tryListen(preferred);
    if (got !== undefined) return got;
  }
  const got = await tryListen(0);
  if (got === undefined) throw new Error('no free loopback port');
  return got;
}

/** Sends PING over a raw socket; true on +PONG within `ms`. */
function pingOnce(port: number, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), ms);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG'));
    });
    socket.on('error', () => finish(false));
  });
}

function tail(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-15).join('\n') : '(no log)';
}

export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = options.port ?? (await freeLoopbackPort(26379));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pw-redis-'));
  const logFile = path.join(dir, 'redis.log');
  const argv: string[] = [];
  if (options.sentinel !== undefined) {
    const conf = path.join(dir, 'sentinel.conf');
    writeFileSync(conf, options.sentinel);
    argv.push(conf, '--sentinel');
  }
  argv.push(
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--protected-mode',
    'yes',
    '--daemonize',
    'no',
    '--dir',
    dir,
    '--logfile',
    logFile,
  );
  if (options.sentinel === undefined) argv.push('--save', '', '--appendonly', 'no');
  argv.push(...(options.args ?? []));

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  async function start(): Promise<void> {
    if (child) return;
    const proc = spawn('redis-server', argv, { stdio: 'ignore' });
    child = proc;
    running.add(proc);
    let gone = false;
    exited = new Promise((resolve) => {
      proc.once('exit', () => {
        gone = true;
        running.delete(proc);
        if (child === proc) child = undefined;
        resolve();
      });
      proc.once('error', () => {
        gone = true;
        running.delete(proc);
        if (child === proc) child = undefined;
        resolve();
      });
    });
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && !gone) {
      if (await pingOnce(port, 500)) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    await stop();
    throw new Error(
      `redis-server on 127.0.0.1:${port} did not answer PING${gone ? ' (it exited)' : ''}:\n${tail(logFile)}`,
    );
  }

  async function stop(): Promise<void> {
    const proc = child;
    if (!proc) return;
    proc.kill('SIGCONT');
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    logFile,
    get pid() {
      return child?.pid;
    },
    start,
    stop,
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
    cli: (...args: string[]) => {
      const out = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
        encoding: 'utf8',
        timeout: 5000,
      });
      if (out.status !== 0)
        throw new Error(`redis-cli ${args.join(' ')}: ${out.stderr || out.error?.message}`);
      return out.stdout.trim();
    },
    destroy: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
