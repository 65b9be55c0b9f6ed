/**
 * test/harness/clamd.ts: a real clamd on loopback for integration tests, with our own signature database only.
 *
 * `startClamd()` follows the harness recipe (harness.md §5): in a fresh temp dir it writes two signatures for
 * the 68-byte EICAR test string (`harness.hdb`: its MD5 and size; `harness.ndb`: its bytes at any offset of any
 * file type, so it is also found inside a decoded MIME part or an unpacked archive) and a clamd.conf with
 * `LocalSocket` (mode 666) and `TCPSocket` on 127.0.0.1 at a free port, `Foreground yes`, `SelfCheck 0`, mail and
 * archive scanning on, and a small `StreamMaxLength` (2M unless told) so a test can exceed it cheaply. Then it
 * runs `clamd --config-file=...` as a child process (stopped by PID, never by name) and resolves once clamd
 * answers PING with PONG on the unix socket ("Loaded 2 signatures"; about 70 ms here, a restart too). freshclam
 * is never run and nothing is downloaded: clamd refuses to start without a database, and this one is all it gets.
 * clamd names a match `Harness.Test.EICAR.NDB.UNOFFICIAL` (the .ndb signature matches first; `.UNOFFICIAL`
 * marks a database not signed by Cisco-Talos). Running as root, clamd stays root (no `User` line): it needs no
 * privileges and reads only the temp dir. clamd and clamdscan come from test/harness/install.sh.
 *
 * The handle can `stop()` clamd (SIGTERM; it removes its socket file) and `start()` it again with the same
 * socket and port (a "clamd restart" test), `pause()`/`resume()` it (SIGSTOP/SIGCONT: connections are still
 * accepted by the kernel but nothing answers, a hung clamd), read its `log()`, and `destroy()` it with its dir.
 *
 * Failure: startClamd/start reject with clamd's output and log tail when it exits or does not answer within
 * 20 s (a port taken meanwhile is retried on another one). stop() escalates to SIGKILL after 3 s. A safety net
 * kills every clamd still running and removes its dir when the process exits.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { daemon, startInDir, tail } from './daemon.js';
import { freeLoopbackPort } from './redis.js';

export interface ClamdServerOptions {
  /** clamd.conf `StreamMaxLength` (clamd's units: `2M`, `512K`, bytes); default `2M`. */
  readonly streamMaxLength?: string;
  /** TCP port on 127.0.0.1; default: a free one. */
  readonly port?: number;
  /** More clamd.conf lines, appended as given. */
  readonly extraConfig?: string;
}

export interface ClamdServer {
  /** The unix socket (clamd.conf LocalSocket). */
  readonly socket: string;
  readonly host: '127.0.0.1';
  /** The TCP port (clamd.conf TCPSocket). */
  readonly port: number;
  /** The 68-byte EICAR test string, which the database knows. */
  readonly eicar: Buffer;
  /** What clamd reports for it: `Harness.Test.EICAR.NDB.UNOFFICIAL`. */
  readonly eicarName: string;
  /** StreamMaxLength in bytes. */
  readonly streamMaxBytes: number;
  readonly dir: string;
  /** PID of the running clamd; undefined while stopped. */
  readonly pid: number | undefined;
  /** SIGTERM (SIGKILL after 3 s); waits for the exit. Idempotent. */
  stop(): Promise<void>;
  /** Starts clamd again with the same config and waits for PONG. */
  start(): Promise<void>;
  /** SIGSTOP: the sockets stay open, nothing answers. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** clamd's log file, then its stdout/stderr. */
  log(): string;
  /** Stops clamd and removes its temp dir. */
  destroy(): Promise<void>;
}

const HOST = '127.0.0.1';
const CLAMD = ['/usr/sbin/clamd', '/usr/local/sbin/clamd'].find((p) => existsSync(p)) ?? 'clamd';
const EICAR = Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*', 'latin1');
const READY_MS = 20_000;

/** clamd's size syntax: a number with an optional K or M suffix. */
function bytesOf(size: string): number {
  const m = /^(\d+)([kKmM]?)$/.exec(size);
  if (!m) throw new Error(`clamd harness: StreamMaxLength "${size}" is not N, NK or NM`);
  const unit = m[2]?.toLowerCase() === 'm' ? 1024 * 1024 : m[2]?.toLowerCase() === 'k' ? 1024 : 1;
  return Number(m[1]) * unit;
}

/** True when clamd answers `zPING\0` with `PONG\0` within `ms`. */
function pong(socketPath: string, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ path: socketPath });
    let reply = '';
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), ms);
    socket.on('connect', () => socket.write('zPING\0'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\0')) finish(reply === 'PONG\0');
    });
    socket.on('error', () => finish(false));
    socket.on('close', () => finish(false));
  });
}

function clamdConfig(dir: string, port: number, options: ClamdServerOptions): string {
  return [
    `LocalSocket ${path.join(dir, 'clamd.sock')}`,
    'LocalSocketMode 666',
    'FixStaleSocket yes',
    `TCPSocket ${port}`,
    `TCPAddr ${HOST}`,
    `DatabaseDirectory ${path.join(dir, 'db')}`,
    `TemporaryDirectory ${path.join(dir, 'tmp')}`,
    `PidFile ${path.join(dir, 'clamd.pid')}`,
    `LogFile ${path.join(dir, 'clamd.log')}`,
    'LogTime yes',
    'Foreground yes',
    'ScanMail yes',
    'ScanArchive yes',
    `StreamMaxLength ${options.streamMaxLength ?? '2M'}`,
    'SelfCheck 0',
    'MaxThreads 4',
    ...(options.extraConfig ? [options.extraConfig] : []),
    '',
  ].join('\n');
}

export async function startClamd(options: ClamdServerOptions = {}): Promise<ClamdServer> {
  const streamMaxBytes = bytesOf(options.streamMaxLength ?? '2M');
  const attempts = options.port === undefined ? 3 : 1;
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freeLoopbackPort());
    try {
      return await startOn(port, streamMaxBytes, options);
    } catch (err) {
      // Someone took the free port between the check and clamd's bind: pick another.
      if (attempt >= attempts || !/Address already in use/i.test(String(err))) throw err;
    }
  }
}

async function startOn(
  port: number,
  streamMaxBytes: number,
  options: ClamdServerOptions,
): Promise<ClamdServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pw-clamd-'));
  const socketPath = path.join(dir, 'clamd.sock');
  const confFile = path.join(dir, 'clamd.conf');
  const logFile = path.join(dir, 'clamd.log');
  const outFile = path.join(dir, 'clamd.out');
  mkdirSync(path.join(dir, 'db'));
  mkdirSync(path.join(dir, 'tmp'));
  const md5 = createHash('md5').update(EICAR).digest('hex');
  writeFileSync(path.join(dir, 'db', 'harness.hdb'), `${md5}:${EICAR.length}:Harness.Test.EICAR.HDB\n`);
  writeFileSync(path.join(dir, 'db', 'harness.ndb'), `Harness.Test.EICAR.NDB:0:*:${EICAR.toString('hex')}\n`);
  writeFileSync(confFile, clamdConfig(dir, port, options));

  const server = daemon({
    command: CLAMD,
    args: [`--config-file=${confFile}`],
    outFile,
    ready: async () => existsSync(socketPath) && (await pong(socketPath, 1000)),
    readyMs: READY_MS,
    describe: ({ exited, spawnError }) =>
      `${
        spawnError
          ? `${CLAMD} could not be run (${spawnError.message}); run test/harness/install.sh`
          : `clamd (${socketPath}, ${HOST}:${port}) did not answer PING${exited ? ' (it exited)' : ` within ${READY_MS} ms`}`
      }\n--- log:\n${tail(logFile)}`,
  });
  const destroy = await startInDir(server, dir);
  return {
    socket: socketPath,
    host: HOST,
    port,
    eicar: Buffer.from(EICAR),
    eicarName: 'Harness.Test.EICAR.NDB.UNOFFICIAL',
    streamMaxBytes,
    dir,
    get pid() {
      return server.pid;
    },
    stop: server.stop,
    start: server.start,
    pause: () => void server.pause().catch(() => undefined),
    resume: server.resume,
    log: () => `${existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''}${tail(outFile, 1000)}`,
    destroy,
  };
}
