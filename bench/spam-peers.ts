/**
 * The spam benchmark's peers, each a Debian package run by the benchmark itself (never installed here: bench/main.ts
 * names the apt-get command when one is missing; its Debian service never started), on 127.0.0.1 only, with its
 * whole state in the benchmark's temporary directory:
 *
 * - **SpamAssassin**: `sa-learn` then `spamd`, both with `--local` (no network test: no DNSBL, URIBL, Razor,
 *   Pyzor, DCC, SPF or DKIM lookups), the package's rules (`-C /usr/share/spamassassin`, no sa-update), a site
 *   config of our own (`--siteconfigpath`: the package's plugin `.pre` files and a local.cf setting the Bayes
 *   database path, no auto-learning, no auto-expiry, Bayes active from 200 learned of each class as
 *   ours). spamd runs its children as `nobody` (it will not run them as root), `required_score` 5 (the
 *   default). Asked over the spamd protocol (SYMBOLS, one connection per message, as spamc does).
 * - **rspamd**: the package's configuration (/etc/rspamd/rspamd.conf) with our own LOCAL_CONFDIR, DBDIR,
 *   RUNDIR and LOGDIR (`--var`), a redis-server of our own for the Bayes statistics (`min_learns` 200, no
 *   autolearn), and every module off that asks the network (rbl — URL and e-mail lists included —, surbl,
 *   fuzzy_check, dkim, dmarc, spf, arc, asn, dcc, url_redirector, rspamd_update, whitelist, hfilter's DNS
 *   checks) or keeps state beside the scan (greylist, ratelimit, neural, replies, reputation, history_redis);
 *   its DNS resolver points at a closed loopback port, so nothing is resolved. DATE_IN_PAST weighs 0: it
 *   compares the Date with the time of the scan, two decades after 2002. Learning through the controller
 *   (`/learnspam`, `/learnham`, `Learn-Type: bulk` so every training message is learned, as with the others),
 *   checking through the normal worker's `/checkv2`.
 *
 * Failure behaviour: a peer that does not start or answers garbage is a BenchError with
 * the tail of its log.
 */
import { execFile, execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { type Child, startProcess, which } from './children.js';
import { BenchError } from './load.js';
import { type RedisServer, startRedisServer } from './postgrey.js';
import type { CorpusMessage, Label } from './spam-corpus.js';

export const SA_RULES = '/usr/share/spamassassin';
const SA_SITE = '/etc/spamassassin';
const RSPAMD_CONF = '/etc/rspamd/rspamd.conf';
const START_TIMEOUT_MS = 120_000;
const ANSWER_TIMEOUT_MS = 60_000;

export interface PeerVerdict {
  readonly spam: boolean;
  readonly score: number;
  /** Whether a Bayes symbol was in the answer (the classifier was active on this message). */
  readonly bayes: boolean;
}

export interface Peer {
  readonly name: string;
  readonly version: string;
  readonly child: Child;
  check(raw: Buffer): Promise<PeerVerdict>;
}

function runTool(command: string, args: readonly string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, [...args], { maxBuffer: 64 * 2 ** 20, timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error)
        reject(new BenchError(`${path.basename(command)} failed: ${error.message}\n${stderr.slice(-2000)}`));
      else resolve(`${stdout}${stderr}`);
    });
  });
}

/** Writes the training messages as files, one directory per class (sa-learn reads directories). */
function writeTraining(dir: string, messages: readonly CorpusMessage[]): Record<Label, string> {
  const dirs = { spam: path.join(dir, 'spam'), ham: path.join(dir, 'ham') };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
  messages.forEach((m, i) => writeFileSync(path.join(dirs[m.label], String(i).padStart(5, '0')), m.raw));
  return dirs;
}

async function waitUntil(
  what: Child,
  probe: () => Promise<boolean>,
  timeoutMs: number,
  log?: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let gone: number | string | undefined;
  void what.exited.then((code) => {
    gone = code;
  });
  while (Date.now() < deadline && gone === undefined) {
    if (await probe().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const tail =
    log && existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-15).join('\n') : what.stderrTail();
  throw new BenchError(
    `${what.name} ${gone !== undefined ? `exited (${gone})` : `did not answer within ${timeoutMs} ms`}; its log:\n${tail}`,
  );
}

// ------------------------------------------------------------------------------------------- SpamAssassin

/** Sends one spamd-protocol request on its own connection and resolves with the whole answer. */
function spamdRequest(port: number, head: string, body: Buffer = Buffer.alloc(0)): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    socket.setTimeout(ANSWER_TIMEOUT_MS, () =>
      socket.destroy(new BenchError(`spamd: no answer within ${ANSWER_TIMEOUT_MS} ms`)),
    );
    socket.on('connect', () => {
      socket.write(head);
      socket.end(body);
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
  });
}

export interface SpamAssassinOptions {
  readonly dir: string;
  readonly port: number;
  readonly children: number;
  readonly train: readonly CorpusMessage[];
}

export interface Trained {
  readonly learned: Record<Label, number>;
  readonly ms: number;
  /** The first few messages the peer would not learn, with its answer. */
  readonly refused?: readonly string[];
}

export async function startSpamAssassin(
  options: SpamAssassinOptions,
): Promise<{ peer: Peer; trained: Trained }> {
  const { dir } = options;
  const site = path.join(dir, 'site');
  const bayes = path.join(dir, 'bayes');
  const home = path.join(dir, 'home');
  for (const d of [site, bayes, home]) mkdirSync(d, { recursive: true });
  // spamd's children run as nobody: they must reach and write the Bayes database (0777, as bayes_file_mode).
  for (const d of [dir, bayes, home]) chmodSync(d, 0o777);
  for (const file of readdirSync(SA_SITE).filter((f) => f.endsWith('.pre')))
    copyFileSync(path.join(SA_SITE, file), path.join(site, file));
  writeFileSync(
    path.join(site, 'local.cf'),
    [
      'required_score 5',
      'use_bayes 1',
      `bayes_path ${bayes}/bayes`,
      'bayes_file_mode 0777',
      'bayes_auto_learn 0',
      'bayes_auto_expire 0',
      'bayes_min_spam_num 200',
      'bayes_min_ham_num 200',
      'lock_method flock',
      'skip_rbl_checks 1',
      'use_razor2 0',
      'use_pyzor 0',
      'use_dcc 0',
      'dns_available no',
      '',
    ].join('\n'),
  );
  const common = [`--siteconfigpath=${site}`, `--configpath=${SA_RULES}`, '--local'];
  const saLearn = which('sa-learn') ?? 'sa-learn';
  const dirs = writeTraining(path.join(dir, 'train'), options.train);
  const started = performance.now();
  const learned = { spam: 0, ham: 0 };
  for (const label of ['spam', 'ham'] as const) {
    const out = await runTool(saLearn, [...common, '--no-sync', `--${label}`, dirs[label]], 30 * 60_000);
    learned[label] = Number(/Learned tokens from (\d+) message/.exec(out)?.[1] ?? NaN);
  }
  await runTool(saLearn, [...common, '--sync'], 10 * 60_000);
  const ms = performance.now() - started;
  for (const file of readdirSync(bayes)) chmodSync(path.join(bayes, file), 0o666);

  const spamd = which('spamd');
  if (!spamd) throw new BenchError('spamd not found (Debian package spamd)');
  const log = path.join(dir, 'spamd.log');
  const n = String(options.children);
  const child = startProcess('spamd', spamd, [
    ...common,
    '--listen=127.0.0.1',
    `--port=${options.port}`,
    '--username=nobody',
    `--helper-home-dir=${home}`,
    '--nouser-config',
    `--min-children=${n}`,
    `--max-children=${n}`,
    `--min-spare=${n}`,
    `--max-spare=${n}`,
    `--syslog=${log}`,
    `--pidfile=${path.join(dir, 'spamd.pid')}`,
  ]);
  await waitUntil(
    child,
    async () => (await spamdRequest(options.port, 'PING SPAMC/1.5\r\n\r\n')).includes('PONG'),
    START_TIMEOUT_MS,
    log,
  );
  const version = execFileSync('spamassassin', ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? '?';
  return {
    trained: { learned, ms },
    peer: {
      name: 'SpamAssassin (spamd)',
      version: version.replace(/^SpamAssassin version /, 'SpamAssassin '),
      child,
      async check(raw) {
        const answer = await spamdRequest(
          options.port,
          `SYMBOLS SPAMC/1.5\r\nContent-length: ${raw.length}\r\nUser: nobody\r\n\r\n`,
          raw,
        );
        const verdict = /^Spam: (True|False) ; (-?[\d.]+) \/ /m.exec(answer);
        if (!answer.startsWith('SPAMD/') || !verdict)
          throw new BenchError(`spamd answered ${JSON.stringify(answer.slice(0, 200))}`);
        const symbols = answer.slice(answer.indexOf('\r\n\r\n') + 4);
        return { spam: verdict[1] === 'True', score: Number(verdict[2]), bayes: /\bBAYES_\d/.test(symbols) };
      },
    },
  };
}

// ------------------------------------------------------------------------------------------------- rspamd

/** Modules that ask the network, or keep state beside the scan: off (see the file comment). */
const RSPAMD_MODULES_OFF = [
  'rbl',
  'surbl',
  'fuzzy_check',
  'dkim',
  'dmarc',
  'spf',
  'arc',
  'dkim_signing',
  'asn',
  'dcc',
  'url_redirector',
  'rspamd_update',
  'whitelist',
  'greylist',
  'ratelimit',
  'neural',
  'replies',
  'reputation',
  'history_redis',
];

/** rspamd's actions that mark a message as spam; `greylist` (a delay) and `no action` do not. */
export const RSPAMD_SPAM_ACTIONS: readonly string[] = ['add header', 'rewrite subject', 'reject'];

function httpRequest(
  port: number,
  method: 'GET' | 'POST',
  route: string,
  body?: Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: route,
        headers: { ...headers, ...(body ? { 'Content-Length': String(body.length) } : {}) },
        timeout: ANSWER_TIMEOUT_MS,
        agent: rspamdAgent,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
        response.on('error', reject);
      },
    );
    request.on('timeout', () =>
      request.destroy(new BenchError(`rspamd: no answer to ${route} within ${ANSWER_TIMEOUT_MS} ms`)),
    );
    request.on('error', reject);
    request.end(body);
  });
}

/** Keep-alive connections, as a mail server's milter or proxy keeps them. */
const rspamdAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export interface RspamdOptions {
  readonly dir: string;
  /** normal worker, controller, proxy, and a closed port for its DNS resolver; then Redis. */
  readonly ports: { normal: number; controller: number; proxy: number; deadDns: number; redis?: number };
  readonly workers: number;
  readonly train: readonly CorpusMessage[];
  readonly concurrency: number;
}

function rspamdConfig(local: string, options: RspamdOptions, redis: RedisServer): void {
  const localD = path.join(local, 'local.d');
  const overrideD = path.join(local, 'override.d');
  mkdirSync(localD, { recursive: true });
  mkdirSync(overrideD, { recursive: true });
  const write = (dir: string, file: string, lines: readonly string[]) =>
    writeFileSync(path.join(dir, file), `${lines.join('\n')}\n`);
  const { ports } = options;
  write(overrideD, 'worker-normal.inc', [
    `bind_socket = "127.0.0.1:${ports.normal}";`,
    `count = ${options.workers};`,
    'mime = true;',
  ]);
  write(overrideD, 'worker-controller.inc', [
    `bind_socket = "127.0.0.1:${ports.controller}";`,
    'count = 1;',
    'secure_ip = "127.0.0.1";',
    'static_dir = "${WWWDIR}";',
  ]);
  write(overrideD, 'worker-proxy.inc', [
    `bind_socket = "127.0.0.1:${ports.proxy}";`,
    'enabled = false;',
    'count = 0;',
  ]);
  write(localD, 'options.inc', [
    `dns { nameserver = ["127.0.0.1:${ports.deadDns}"]; timeout = 0.2s; retransmits = 1; }`,
    `tempdir = "${path.join(options.dir, 'tmp')}";`,
  ]);
  write(localD, 'redis.conf', [`servers = "127.0.0.1:${redis.port}";`]);
  write(localD, 'classifier-bayes.conf', [
    'backend = "redis";',
    `servers = "127.0.0.1:${redis.port}";`,
    'min_learns = 200;',
    'autolearn = false;',
  ]);
  write(localD, 'hfilter.conf', [
    'helo_enabled = false;',
    'hostname_enabled = false;',
    'from_enabled = false;',
  ]);
  write(localD, 'headers_group.conf', ['symbols { "DATE_IN_PAST" { weight = 0.0; } }']);
  for (const module of RSPAMD_MODULES_OFF) write(localD, `${module}.conf`, ['enabled = false;']);
}

/** Runs `work` over `items` with `concurrency` loops; resolves when all are done. */
export async function eachConcurrently<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      for (let i = next++; i < items.length; i = next++) await work(items[i] as T, i);
    }),
  );
}

/** Resolves true once `pattern` is in the log file, false after `timeoutMs`. */
async function waitForLog(log: string, pattern: RegExp, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (existsSync(log) && pattern.test(readFileSync(log, 'utf8'))) return true;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  return false;
}

const HYPERSCAN_WAIT_MS = 600_000;

export async function startRspamd(
  options: RspamdOptions,
): Promise<{ peer: Peer; trained: Trained; redis: RedisServer; hyperscan: boolean }> {
  const { dir, ports } = options;
  const redis = await startRedisServer(path.join(dir, 'redis'), START_TIMEOUT_MS, ports.redis);
  const local = path.join(dir, 'conf');
  const vars = { DBDIR: path.join(dir, 'db'), RUNDIR: path.join(dir, 'run'), LOGDIR: path.join(dir, 'log') };
  for (const d of [...Object.values(vars), path.join(dir, 'tmp')]) mkdirSync(d, { recursive: true });
  rspamdConfig(local, options, redis);
  const rspamd = which('rspamd');
  if (!rspamd) throw new BenchError('rspamd not found (Debian package rspamd)');
  const args = [
    '--no-fork',
    '--insecure',
    '--user=root',
    '--group=root',
    `--config=${RSPAMD_CONF}`,
    `--var=LOCAL_CONFDIR=${local}`,
    ...Object.entries(vars).map(([k, v]) => `--var=${k}=${v}`),
  ];
  const check = execFileSync(
    'rspamadm',
    [...args.filter((a) => a.startsWith('--var')), 'configtest', '-c', RSPAMD_CONF],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  if (!/syntax OK/.test(check)) throw new BenchError(`rspamadm configtest: ${check.slice(-2000)}`);
  const child = startProcess('rspamd', rspamd, args);
  const log = path.join(vars.LOGDIR, 'rspamd.log');
  for (const port of [ports.normal, ports.controller])
    await waitUntil(
      child,
      async () => (await httpRequest(port, 'GET', '/ping')).text.includes('pong'),
      START_TIMEOUT_MS,
      log,
    );

  const started = performance.now();
  const learned = { spam: 0, ham: 0 };
  const refused: string[] = [];
  await eachConcurrently(options.train, options.concurrency, async (m) => {
    const answer = await httpRequest(
      ports.controller,
      'POST',
      m.label === 'spam' ? '/learnspam' : '/learnham',
      m.raw,
      {
        'Learn-Type': 'bulk',
      },
    );
    if (answer.status === 200 && answer.text.includes('"success":true')) learned[m.label] += 1;
    else if (refused.length < 5) refused.push(`${m.name}: ${answer.status} ${answer.text.slice(0, 120)}`);
  });
  const ms = performance.now() - started;
  // Until its helper has compiled the regular expressions for Hyperscan, rspamd matches them with PCRE: slower.
  const hyperscan = await waitForLog(
    log,
    /hyperscan database of \d+ regexps has been loaded/,
    HYPERSCAN_WAIT_MS,
  );
  const version = execFileSync(rspamd, ['--version'], { encoding: 'utf8' })
    .trim()
    .replace(/^Rspamd daemon version /, 'rspamd ');
  return {
    redis,
    hyperscan,
    trained: { learned, ms, ...(refused.length > 0 ? { refused } : {}) },
    peer: {
      name: 'rspamd',
      version,
      child,
      async check(raw) {
        const answer = await httpRequest(ports.normal, 'POST', '/checkv2', raw);
        let parsed: { action?: unknown; score?: unknown; symbols?: Record<string, unknown> };
        try {
          parsed = JSON.parse(answer.text) as typeof parsed;
        } catch {
          throw new BenchError(
            `rspamd answered ${answer.status} ${JSON.stringify(answer.text.slice(0, 200))}`,
          );
        }
        if (typeof parsed.action !== 'string' || typeof parsed.score !== 'number')
          throw new BenchError(
            `rspamd answered ${answer.status} ${JSON.stringify(answer.text.slice(0, 200))}`,
          );
        const symbols = Object.keys(parsed.symbols ?? {});
        return {
          spam: RSPAMD_SPAM_ACTIONS.includes(parsed.action),
          score: parsed.score,
          bayes: symbols.includes('BAYES_SPAM') || symbols.includes('BAYES_HAM'),
        };
      },
    },
  };
}
