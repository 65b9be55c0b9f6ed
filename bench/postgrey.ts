/**
 * The other programs of the greylisting benchmark (bench/greylist.ts): postgrey (the Debian package) and
 * redis-server, run by the benchmark itself — in the foreground, as a child process stopped by PID, on a free
 * 127.0.0.1 port, with its state in the benchmark's temporary directory. They are never installed here:
 * bench/main.ts stops before the run, naming the apt-get command, when one is missing; their Debian services
 * are never started.
 *
 * postgrey is run with `--inet=127.0.0.1:PORT --dbdir=TEMP/postgrey --delay=N --auto-whitelist-clients=0`, the
 * package's own whitelist files named explicitly (not the `.local` ones, so a host's additions cannot change
 * the run), `--quiet` (no line per decision; postwarden runs at log level warn), `--hostname` (so it does not
 * ask the machine), and `--user`/`--group` of the benchmark itself (root: root, so the database in the temp
 * directory is its own). Without `--daemonize` it neither forks nor uses syslog: Net::Server logs to stderr,
 * which the benchmark keeps for error messages; `--pidfile` only applies with `--daemonize`, so none is given.
 *
 * Failure behaviour: a server that does not come up is a BenchError with the reason (and the tail of its log).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { type Child, freePort, startProcess, which } from './children.js';
import { BenchError } from './load.js';

export const POSTGREY = '/usr/sbin/postgrey';
const POSTGREY_WHITELISTS = {
  clients: '/etc/postgrey/whitelist_clients',
  recipients: '/etc/postgrey/whitelist_recipients',
};

/** `postgrey 1.37` and the Perl / BerkeleyDB versions under it, for the report. */
export function postgreyVersion(): string {
  const version = (command: string, args: readonly string[]) => {
    try {
      return execFileSync(command, [...args], { encoding: 'utf8', timeout: 10_000 }).trim();
    } catch {
      return '?';
    }
  };
  const perl = version('perl', [
    '-MBerkeleyDB',
    '-MNet::Server',
    '-e',
    'printf "perl %vd, BerkeleyDB %s (libdb %s), Net::Server %s", $^V, $BerkeleyDB::VERSION, $BerkeleyDB::db_version, $Net::Server::VERSION',
  ]);
  return `${version(POSTGREY, ['--version'])} (${perl})`;
}

export interface PostgreyOptions {
  readonly port: number;
  /** Its --dbdir (created). */
  readonly dbdir: string;
  readonly delayS: number;
}

/** The arguments the benchmark runs postgrey with (see the file comment). */
export function postgreyArgs(options: PostgreyOptions): string[] {
  const root = process.getuid?.() === 0;
  const user = root ? 'root' : os.userInfo().username;
  const group = root ? 'root' : execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim();
  const whitelists = [
    ...(existsSync(POSTGREY_WHITELISTS.clients)
      ? [`--whitelist-clients=${POSTGREY_WHITELISTS.clients}`]
      : []),
    ...(existsSync(POSTGREY_WHITELISTS.recipients)
      ? [`--whitelist-recipients=${POSTGREY_WHITELISTS.recipients}`]
      : []),
  ];
  return [
    `--inet=127.0.0.1:${options.port}`,
    `--dbdir=${options.dbdir}`,
    `--delay=${options.delayS}`,
    '--auto-whitelist-clients=0',
    ...whitelists,
    `--user=${user}`,
    `--group=${group}`,
    '--hostname=mx.example.com',
    '--quiet',
  ];
}

/** Starts postgrey in the foreground; the caller waits for it to answer (waitForPolicy). */
export function startPostgrey(options: PostgreyOptions): Child {
  if (options.delayS < 1) {
    // postgrey reads `--delay=0` as "not given": 300 s (`$opt{delay} || 300`).
    throw new BenchError('postgrey cannot greylist for 0 seconds (it takes --delay=0 as the default, 300)');
  }
  mkdirSync(options.dbdir, { recursive: true, mode: 0o700 });
  return startProcess('postgrey', POSTGREY, postgreyArgs(options), { cwd: options.dbdir });
}

/** Sends one Redis command (RESP) and resolves with the raw reply text. */
export function redisCommand(port: number, args: readonly string[], timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new BenchError(`redis-server on 127.0.0.1:${port}: no reply to ${args[0]} within ${timeoutMs} ms`),
      );
    }, timeoutMs);
    const done = (error?: Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(reply);
    };
    socket.on('connect', () =>
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`),
    );
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('utf8');
      // One reply: a line (+ - :), or a bulk string `$len\r\n…\r\n`.
      const eol = reply.indexOf('\r\n');
      if (eol < 0) return;
      if (reply[0] !== '$') {
        done(reply[0] === '-' ? new BenchError(`redis-server: ${reply.slice(1, eol)}`) : undefined);
        return;
      }
      const length = Number(reply.slice(1, eol));
      if (length < 0 || Buffer.byteLength(reply) >= eol + 2 + length + 2) done();
    });
    socket.on('error', (error) =>
      done(new BenchError(`redis-server on 127.0.0.1:${port}: ${error.message}`)),
    );
  });
}

export interface RedisServer {
  readonly child: Child;
  readonly port: number;
  readonly url: string;
  readonly version: string;
}

/**
 * Starts redis-server as test/harness/redis.ts does — foreground, loopback, no persistence (`--save ''
 * --appendonly no`), its dir and log under `dir` — on `fixedPort` or a free port, and waits until it answers
 * PING.
 */
export async function startRedisServer(
  dir: string,
  timeoutMs: number,
  /** A fixed port; a free one when absent. */
  fixedPort?: number,
): Promise<RedisServer> {
  const binary = which('redis-server');
  if (!binary) throw new BenchError('redis-server not found');
  mkdirSync(dir, { recursive: true });
  const port = fixedPort ?? (await freePort());
  const logFile = path.join(dir, 'redis.log');
  const child = startProcess('redis-server', binary, [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--protected-mode',
    'yes',
    '--daemonize',
    'no',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--logfile',
    logFile,
  ]);
  let gone = false;
  void child.exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline && !gone) {
    try {
      if ((await redisCommand(port, ['PING'], 500)).startsWith('+PONG')) {
        const info = await redisCommand(port, ['INFO', 'server']);
        const version = /redis_version:(\S+)/.exec(info)?.[1] ?? '?';
        return { child, port, url: `redis://127.0.0.1:${port}/0`, version };
      }
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-10).join('\n') : '';
  throw new BenchError(
    `redis-server on 127.0.0.1:${port} did not answer PING${gone ? ' (it exited)' : ` within ${timeoutMs} ms`}` +
      `${last ? ` (${last})` : ''}${log ? `; its log:\n${log}` : ''}`,
  );
}

/** A field of `INFO` (e.g. used_memory), as a number; NaN if absent. */
export async function redisInfoNumber(port: number, section: string, field: string): Promise<number> {
  const info = await redisCommand(port, ['INFO', section]);
  return Number(new RegExp(`^${field}:(\\d+)`, 'm').exec(info)?.[1] ?? NaN);
}
