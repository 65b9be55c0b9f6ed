/**
 * The `greylist` part of `npm run bench` (bench/main.ts). Starts, each in its own process on a free 127.0.0.1
 * port, the always-DUNNO ceiling (bench/dunno-server.ts), postwarden with only the greylist check on SQLite (a
 * file in the temporary directory), postwarden on Redis (a redis-server this benchmark starts), and postgrey
 * (the Debian package, run in the foreground with its own database directory; bench/postgrey.ts), never
 * starting their Debian services. Both greylisters wait `delay_s` 1 s, have the auto-whitelist off and keep
 * their shipped big-sender / client whitelists.
 *
 * Two workloads: `new`, every request a never-seen triplet (the answer is DEFER_IF_PERMIT), and `known`,
 * triplets seeded before measuring (sent once, then again after the delay, so they passed; the answer is
 * DUNNO). Answers are checked before measuring, and every reply in the windows is compared with the right one.
 * At 1, 8 and 32 connections the servers take turns in slices, as in bench/policy.ts. The detail table gives
 * req/s, latency, server CPU per request, and postwarden's req/s as a ratio of the ceiling's and of postgrey's;
 * the report rows carry the issue's targets (≥ 10× postgrey at 8 connections on SQLite, p99 < 2 ms).
 *
 * Then, with a million triplets stored: fills a fresh SQLite file (bulk transactions into the table the
 * driver creates) and the Redis server (pipelined SETs, keys made by the greylist check's own helpers), starts
 * postwarden on each, checks and runs both workloads against a sample at 8 connections, and reports the
 * postwarden process's VmRSS/VmHWM (target < 200 MB), the seeding time, the file size and Redis's memory.
 *
 * Env: BENCH_SECONDS, BENCH_ROUNDS, BENCH_WARMUP_SECONDS, BENCH_CONNECTIONS as in bench/policy.ts;
 * BENCH_KNOWN_TRIPLETS (seeded for `known`, default 2000), BENCH_STORED_TRIPLETS (default 1000000; 0 skips).
 * A server that does not start, a wrong or malformed answer (also inside a measurement window), a dropped
 * connection: a BenchError (the part is BROKEN).
 */
import { statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import {
  clientNetwork,
  greylistSchema,
  normalizeSender,
  readTripletValue,
  tripletKey,
} from '../src/core/checks/greylist.js';
import { encodeRequest } from '../src/policy/codec.js';
import { PolicyClient } from '../src/policy/client.js';
import { REDIS_DEFAULT_PREFIX } from '../src/store/redis.js';
import { SqliteStore } from '../src/store/sqlite.js';
import {
  type Child,
  freePort,
  processCpuMs,
  processMemory,
  startChild,
  stopChild,
  waitForLine,
  waitForPolicy,
} from './children.js';
import { numberEnv, sliceSettings } from './options.js';
import {
  BenchError,
  type CellResult,
  cellLoads,
  loadLabel,
  loadName,
  measureInTurns,
  runSlice,
  sliceWarmupMs,
  summarize,
} from './load.js';
import {
  POSTGREY,
  postgreyVersion,
  type RedisServer,
  redisCommand,
  redisInfoNumber,
  startPostgrey,
  startRedisServer,
} from './postgrey.js';
import {
  benchPart,
  breaksBy,
  debianProgram,
  detailTable,
  type PartContext,
  type PartResult,
  p99Row,
  type ResultRow,
  say,
} from './report.js';
import {
  greylistAttributes,
  type GreylistStore,
  greylistTriplet,
  uniqueTriplets,
  writeGreylistConfig,
} from './workload.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(HERE, '../src/cli/main.js');
const DUNNO_SERVER = path.join(HERE, 'dunno-server.js');
const START_TIMEOUT_MS = 20_000;

/** Both greylisters' delay. postgrey counts whole seconds, so seeding waits delay + 1.2 s between the sends. */
const DELAY_S = 1;
const SEED_WAIT_MS = (DELAY_S + 1.2) * 1000;
/** Connections used to seed and check (not measured). */
const SEED_CONNECTIONS = 8;

const TARGET_POSTGREY_FACTOR = 10;
const TARGET_P99_MS = 2;
const TARGET_CONNECTIONS = 8;
const TARGET_RSS_BYTES = 200 * 2 ** 20;

const GREYLIST_DEFAULTS = greylistSchema.parse({});

type ServerKey = 'dunno' | 'sqlite' | 'redis' | 'postgrey';
type Workload = 'new' | 'known';

interface Server {
  readonly key: ServerKey;
  readonly label: string;
  readonly port: number;
  readonly child: Child;
  /** The Redis server behind it (its CPU counts as the server's too, and is shown on its own). */
  readonly store?: Child;
}

interface Row extends CellResult {
  readonly workload: Workload;
  readonly server: ServerKey;
  readonly label: string;
  /** req/s over the ceiling's, same workload and connection count. */
  readonly ratio: number;
  /** req/s over postgrey's, same workload and connection count. */
  readonly vsPostgrey: number;
}

const DUNNO_REPLY = Buffer.from('action=DUNNO\n\n');
const DEFER_REPLY = Buffer.from('action=DEFER_IF_PERMIT ');

/** The right answer (action text) of each server, for each kind of request; checked before measuring. */
const ANSWERS: Record<Exclude<ServerKey, 'dunno'>, { new: RegExp; passing: RegExp; known: RegExp }> = {
  sqlite: {
    new: /^DEFER_IF_PERMIT 4\.7\.1 Greylisted\b/,
    passing: /^DUNNO$/,
    known: /^DUNNO$/,
  },
  redis: {
    new: /^DEFER_IF_PERMIT 4\.7\.1 Greylisted\b/,
    passing: /^DUNNO$/,
    known: /^DUNNO$/,
  },
  postgrey: {
    // 4.2.0 (not 4.7.1): postgrey's workaround for Exchange, used when Postfix sends etrn_domain.
    new: /^DEFER_IF_PERMIT (4\.\d\.\d )?Greylisted\b/,
    // The retry that passes gets the X-Greylist header; later ones DUNNO.
    passing: /^(PREPEND X-Greylist: delayed \d+ seconds by postgrey\S* .*|DUNNO)$/,
    known: /^DUNNO$/,
  },
};

/** The reply check used inside the measurement windows (whole reply bytes). */
function expectReply(server: ServerKey, workload: Workload): (reply: Buffer) => boolean {
  if (server === 'dunno' || workload === 'known') return (reply) => reply.equals(DUNNO_REPLY);
  return (reply) => reply.subarray(0, DEFER_REPLY.length).equals(DEFER_REPLY);
}

/** Sends the requests over `connections` persistent connections (each sequential) and returns the answers. */
async function exchange(
  port: number,
  requests: readonly Readonly<Record<string, string>>[],
  connections = SEED_CONNECTIONS,
): Promise<string[]> {
  const answers = new Array<string>(requests.length);
  const lanes = Math.max(1, Math.min(connections, requests.length));
  await Promise.all(
    Array.from({ length: lanes }, async (_, lane) => {
      const client = await PolicyClient.connect(`127.0.0.1:${port}`);
      try {
        for (let i = lane; i < requests.length; i += lanes) {
          answers[i] = await client.query(requests[i] ?? {}, 10_000);
        }
      } finally {
        client.close();
      }
    }),
  );
  return answers;
}

/** Throws a BenchError naming the first wrong answers. */
function checkAnswers(
  label: string,
  what: string,
  requests: readonly Readonly<Record<string, string>>[],
  answers: readonly string[],
  expect: RegExp,
): void {
  const wrong: string[] = [];
  answers.forEach((answer, i) => {
    if (expect.test(answer)) return;
    const r = requests[i] ?? {};
    wrong.push(
      `  ${r['client_address']} ${r['sender']} → ${r['recipient']}: got "${answer}", want ${String(expect)}`,
    );
  });
  if (wrong.length > 0) {
    throw new BenchError(
      `${label} answered ${wrong.length} of ${answers.length} ${what} wrongly:\n${wrong.slice(0, 5).join('\n')}`,
    );
  }
}

function ms(value: number | undefined): string {
  return value !== undefined && Number.isFinite(value) ? value.toFixed(3) : '-';
}

function mib(bytes: number | undefined): string {
  return bytes !== undefined && Number.isFinite(bytes) ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : '-';
}

function times(value: number): string {
  return Number.isFinite(value) ? `${value >= 10 ? value.toFixed(1) : value.toFixed(2)}×` : '-';
}

function printTable(rows: readonly Row[]): void {
  const header = [
    'workload',
    'server',
    'conns',
    'req/s',
    'p50 ms',
    'p99 ms',
    'max ms',
    'right',
    'srv CPU µs/req',
    'of it redis',
    'srv CPU',
    'gen CPU',
    '÷ ceiling',
    '÷ postgrey',
  ];
  const body = rows.map((r) => [
    r.workload,
    r.label,
    loadLabel(r),
    Math.round(r.rps).toLocaleString('en-US'),
    ms(r.p50Ms),
    ms(r.p99Ms),
    ms(r.maxMs),
    r.expectedShare !== undefined ? `${(Math.floor(r.expectedShare * 1000) / 10).toString()}%` : '-',
    Number.isFinite(r.cpuUsPerRequest) ? r.cpuUsPerRequest.toFixed(1) : '-',
    r.storeCpuUsPerRequest !== undefined && Number.isFinite(r.storeCpuUsPerRequest)
      ? r.storeCpuUsPerRequest.toFixed(1)
      : '-',
    Number.isFinite(r.cpuLoad) ? `${Math.round(r.cpuLoad * 100)}%` : '-',
    `${Math.round(r.generatorCpuLoad * 100)}%`,
    r.server === 'dunno' ? '(ceiling)' : `${(r.ratio * 100).toFixed(1)}%`,
    r.server === 'sqlite' || r.server === 'redis' ? times(r.vsPostgrey) : '',
  ]);
  detailTable(header, body, {
    breaks: breaksBy(rows, (r) => `${r.workload} ${loadLabel(r)}`),
    left: [0, 1],
  });
}

/** The report's rows: at 8 connections, each workload and driver against postgrey (req/s, p99). */
function resultRows(rows: readonly Row[]): ResultRow[] {
  const out: ResultRow[] = [];
  const at = (server: ServerKey, workload: Workload, paced = false) =>
    rows.find(
      (r) =>
        r.server === server &&
        r.workload === workload &&
        r.connections === TARGET_CONNECTIONS &&
        (r.paceRps !== undefined) === paced,
    );
  for (const workload of ['new', 'known'] as const) {
    const pg = at('postgrey', workload);
    for (const server of ['sqlite', 'redis'] as const) {
      const row = at(server, workload);
      if (!row) continue;
      const name = `${workload} triplets, ${server === 'sqlite' ? 'SQLite' : 'Redis'}, ${TARGET_CONNECTIONS} conn`;
      out.push({
        part: 'greylist',
        name,
        what: 'req/s',
        unit: 'req/s',
        postwarden: row.rps,
        peerName: 'postgrey',
        peer: pg?.rps,
        ratio: row.vsPostgrey,
        ...(server === 'sqlite'
          ? {
              target: `≥ ${TARGET_POSTGREY_FACTOR}× postgrey`,
              pass: row.vsPostgrey >= TARGET_POSTGREY_FACTOR,
            }
          : {}),
        notes: `${(row.ratio * 100).toFixed(1)}% of the DUNNO ceiling`,
      });
      out.push(p99Row('greylist', name, row, 'postgrey', pg, TARGET_P99_MS));
      const paced = at(server, workload, true);
      if (paced) {
        const pacedName = name.replace(loadName(row), loadName(paced));
        out.push({
          ...p99Row('greylist', pacedName, paced, 'postgrey', at('postgrey', workload, true), TARGET_P99_MS),
          notes: `${Math.round(paced.rps).toLocaleString('en-US')} req/s answered`,
        });
      }
    }
  }
  return out;
}

function wrongLine(what: string, cell: CellResult): string {
  const share = ((cell.expectedShare ?? 0) * 100).toFixed(2);
  return `  ${what}: ${share}% right, e.g. ${JSON.stringify(cell.unexpected)}`;
}

function fileBytes(...files: string[]): number {
  return files.reduce((sum, file) => {
    try {
      return sum + statSync(file).size;
    } catch {
      return sum;
    }
  }, 0);
}

interface Servers {
  readonly list: Server[];
  readonly redis: RedisServer;
}

async function startPostwarden(
  dir: string,
  name: string,
  store: GreylistStore,
  cpuProfDir: string | undefined,
): Promise<{ child: Child; port: number }> {
  const ports = { policy: await freePort(), http: await freePort() };
  const configPath = writeGreylistConfig(dir, name, ports, store, DELAY_S);
  const child = startChild(`postwarden (${name})`, MAIN, ['serve', '--config', configPath], {
    stdoutFile: path.join(dir, `${name}.log`),
    nodeArgs: cpuProfDir
      ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`, `--cpu-prof-name=postwarden-${name}.cpuprofile`]
      : [],
  });
  return { child, port: ports.policy };
}

async function startServers(dir: string, cpuProfDir: string | undefined): Promise<Servers> {
  const list: Server[] = [];
  const dunnoPort = await freePort();
  const dunno = startChild('the DUNNO server', DUNNO_SERVER, [String(dunnoPort)]);
  await waitForLine(dunno, 'ready', START_TIMEOUT_MS);
  list.push({ key: 'dunno', label: 'DUNNO ceiling', port: dunnoPort, child: dunno });

  const redis = await startRedisServer(path.join(dir, 'redis'), START_TIMEOUT_MS);
  const sqlite = await startPostwarden(
    dir,
    'grey-sqlite',
    { driver: 'sqlite', path: path.join(dir, 'sqlite', 'state.db') },
    cpuProfDir,
  );
  list.push({ key: 'sqlite', label: 'postwarden, SQLite', ...sqlite });
  const onRedis = await startPostwarden(
    dir,
    'grey-redis',
    { driver: 'redis', url: redis.url, keyPrefix: REDIS_DEFAULT_PREFIX },
    cpuProfDir,
  );
  list.push({ key: 'redis', label: 'postwarden, Redis', ...onRedis, store: redis.child });
  const pgPort = await freePort();
  const postgrey = startPostgrey({ port: pgPort, dbdir: path.join(dir, 'postgrey'), delayS: DELAY_S });
  list.push({ key: 'postgrey', label: 'postgrey', port: pgPort, child: postgrey });

  const probes = uniqueTriplets('p');
  await Promise.all(list.map((s) => waitForPolicy(s.child, s.port, probes.take(), START_TIMEOUT_MS)));
  return { list, redis };
}

/**
 * Before measuring: never-seen triplets must be deferred; the `known` triplets are seeded (first sight,
 * then after the delay the retry that passes) and must then answer DUNNO. Returns the known requests.
 */
async function seedAndCheck(servers: readonly Server[], knownCount: number): Promise<Buffer[]> {
  const fresh = uniqueTriplets('v');
  const known = Array.from({ length: knownCount }, (_, n) => greylistAttributes('k', n));
  await Promise.all(
    servers.map(async (server) => {
      const requests = Array.from({ length: 50 }, () => fresh.take());
      const expect = server.key === 'dunno' ? /^DUNNO$/ : ANSWERS[server.key].new;
      checkAnswers(
        server.label,
        'never-seen triplets',
        requests,
        await exchange(server.port, requests),
        expect,
      );
    }),
  );
  const greylisters = servers.filter((s) => s.key !== 'dunno');
  const passes = [
    { what: 'first sight of the known triplets', pick: (k: Exclude<ServerKey, 'dunno'>) => ANSWERS[k].new },
    { what: 'retries after the delay', pick: (k: Exclude<ServerKey, 'dunno'>) => ANSWERS[k].passing },
    { what: 'known triplets', pick: (k: Exclude<ServerKey, 'dunno'>) => ANSWERS[k].known },
  ];
  for (const [i, pass] of passes.entries()) {
    // Every triplet must have waited the delay since the end of the first pass.
    if (i === 1) await new Promise((resolve) => setTimeout(resolve, SEED_WAIT_MS));
    await Promise.all(
      greylisters.map(async (server) => {
        if (server.key === 'dunno') return;
        const answers = await exchange(server.port, known);
        checkAnswers(server.label, pass.what, known, answers, pass.pick(server.key));
      }),
    );
  }
  const dunno = servers.find((s) => s.key === 'dunno');
  if (dunno) {
    const sample = known.slice(0, 100);
    checkAnswers(dunno.label, 'requests', sample, await exchange(dunno.port, sample), /^DUNNO$/);
  }
  return known.map((attributes) => Buffer.from(encodeRequest(attributes)));
}

interface MillionResult {
  readonly driver: 'sqlite' | 'redis';
  readonly triplets: number;
  /** Making the keys and values (once, for both stores), then loading this store. */
  readonly keySeconds: number;
  readonly seedSeconds: number;
  /** SQLite: the file (+ WAL) after seeding and after the run; Redis: used_memory and the server's RSS. */
  readonly storeBytesAfterSeed: number;
  readonly storeBytesAfterRun: number;
  readonly redisRssBytes?: number;
  readonly readyMs: number;
  /** Stored passed triplets the `known` run cycles through. */
  readonly sample: number;
  readonly rssAtStart: number;
  readonly rss: number;
  readonly hwm: number;
  readonly known: CellResult;
  readonly fresh: CellResult;
  readonly pass: boolean;
}

interface Entries {
  readonly keys: string[];
  readonly values: string[];
  readonly expires: number[];
}

/** The million triplets' keys and values, made with the greylist check's helpers (as a request would). */
async function millionEntries(count: number, now: number): Promise<Entries> {
  const networks = new Map<string, string>();
  const keys = new Array<string>(count);
  const values = new Array<string>(count);
  const expires = new Array<number>(count);
  const { ipv4_prefix: v4, ipv6_prefix: v6, max_age_s: maxAge, retry_window_s: window } = GREYLIST_DEFAULTS;
  for (let n = 0; n < count; n++) {
    if (n % 100_000 === 99_999) await new Promise((resolve) => setImmediate(resolve)); // let a SIGINT in
    const { client, sender, recipient } = greylistTriplet('m', n);
    let network = networks.get(client);
    if (network === undefined) {
      network = clientNetwork(client, v4, v6);
      networks.set(client, network);
    }
    keys[n] = tripletKey(network, normalizeSender(sender, '+'), recipient);
    // Three in four passed (kept max_age_s since their last pass), one in four still waiting for its retry.
    const age = (n % 86_400) * 1000;
    if (n % 4 === 0) {
      values[n] = `W${now - age}`;
      expires[n] = now - age + window * 1000;
    } else {
      values[n] = `P${now - age - 600_000}`;
      expires[n] = now - age + maxAge * 1000;
    }
  }
  // The values must read as the check reads them; a changed format breaks the run here, not silently.
  const passed = readTripletValue(values[1] ?? '');
  const waiting = readTripletValue(values[0] ?? '');
  if (count > 1 && (passed?.passed !== true || waiting?.passed !== false)) {
    throw new BenchError(
      'the greylist check no longer reads stored triplets as W<ms>/P<ms>: update the bench',
    );
  }
  return { keys, values, expires };
}

/** A fresh SQLite store: the driver creates file and table, then bulk transactions fill it. */
async function seedSqlite(file: string, entries: Entries): Promise<void> {
  const store = new SqliteStore({ path: file });
  await store.ping();
  await store.close();
  const db = new Database(file);
  try {
    const columns = (db.pragma('table_info(kv)') as { name: string }[]).map((c) => c.name).join(',');
    if (columns !== 'key,value,expires_at') {
      throw new BenchError(
        `the sqlite driver's table is kv(${columns}), not kv(key,value,expires_at): update the bench`,
      );
    }
    db.pragma('synchronous = OFF'); // this loading connection only
    const insert = db.prepare('INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?)');
    // In key order (the B-tree fills page after page; about a third faster): `key NUL index`, sorted as
    // strings — the keys are ASCII, so this is SQLite's BINARY order, and NUL sorts a key before its extensions.
    const order = entries.keys.map((key, i) => `${key}\u0000${i}`).sort();
    // Transactions of 100 000 rows, yielding in between, so a SIGINT is handled within a second.
    const load = db.transaction((from: number, to: number) => {
      for (let j = from; j < to; j++) {
        const packed = order[j] as string;
        const i = Number(packed.slice(packed.lastIndexOf('\u0000') + 1));
        insert.run(entries.keys[i], entries.values[i], entries.expires[i]);
      }
    });
    for (let from = 0; from < order.length; from += 100_000) {
      load(from, Math.min(order.length, from + 100_000));
      await new Promise((resolve) => setImmediate(resolve));
    }
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
}

/** Pipelined `SET prefix+key value PXAT expiry` on one connection, in batches; checks every reply. */
async function seedRedis(port: number, prefix: string, entries: Entries): Promise<void> {
  await redisCommand(port, ['FLUSHALL']);
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', (error) => reject(new BenchError(`redis-server: ${error.message}`)));
  });
  const total = entries.keys.length;
  let replies = 0;
  let rest = '';
  const done = new Promise<void>((resolve, reject) => {
    if (total === 0) resolve();
    socket.on('data', (chunk: Buffer) => {
      const text = rest + chunk.toString('latin1');
      let at = 0;
      for (let eol = text.indexOf('\r\n', at); eol >= 0; eol = text.indexOf('\r\n', at)) {
        if (text[at] !== '+') {
          reject(new BenchError(`redis-server refused a SET: ${text.slice(at, eol)}`));
          return;
        }
        replies += 1;
        at = eol + 2;
      }
      rest = text.slice(at);
      if (replies === total) resolve();
    });
    socket.on('error', (error) => reject(new BenchError(`redis-server: ${error.message}`)));
    socket.on('close', () => {
      if (replies < total) reject(new BenchError(`redis-server closed the connection after ${replies} SETs`));
    });
  });
  const bulk = (text: string) => `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
  const BATCH = 5000;
  try {
    for (let from = 0; from < total; from += BATCH) {
      let out = '';
      for (let i = from; i < Math.min(total, from + BATCH); i++) {
        const key = `${prefix}${entries.keys[i] ?? ''}`;
        out += `*5\r\n$3\r\nSET\r\n${bulk(key)}${bulk(entries.values[i] ?? '')}$4\r\nPXAT\r\n${bulk(String(entries.expires[i]))}`;
      }
      if (!socket.write(out, 'utf8')) await new Promise((resolve) => socket.once('drain', resolve));
    }
    await done;
  } finally {
    socket.destroy();
  }
  const size = Number((await redisCommand(port, ['DBSIZE'])).slice(1));
  if (size !== total) throw new BenchError(`redis-server holds ${size} keys after seeding ${total}`);
}

async function millionPhase(
  dir: string,
  redis: RedisServer,
  count: number,
  seconds: number,
  cpuProfDir: string | undefined,
): Promise<MillionResult[]> {
  process.stderr.write(`  ${count.toLocaleString('en-US')} triplets: making keys\n`);
  const now = Date.now();
  const making = performance.now();
  const entries = await millionEntries(count, now);
  const keySeconds = (performance.now() - making) / 1000;
  // A sample of passed triplets for `known`, spread over the whole range.
  const sampleSize = Math.min(10_000, Math.floor(count / 2));
  const sample: Record<string, string>[] = [];
  for (let i = 0; i < sampleSize; i++) {
    let n = Math.floor((i * count) / sampleSize);
    if (n % 4 === 0) n += 1;
    if (n < count) sample.push(greylistAttributes('m', n));
  }
  const sampleWire = sample.map((a) => Buffer.from(encodeRequest(a)));
  const results: MillionResult[] = [];
  for (const driver of ['sqlite', 'redis'] as const) {
    process.stderr.write(`  ${count.toLocaleString('en-US')} triplets: seeding ${driver}\n`);
    const file = path.join(dir, 'million', 'state.db');
    const started = performance.now();
    if (driver === 'sqlite') await seedSqlite(file, entries);
    else await seedRedis(redis.port, REDIS_DEFAULT_PREFIX, entries);
    const seedSeconds = (performance.now() - started) / 1000;
    const storeBytes = async () =>
      driver === 'sqlite'
        ? fileBytes(file, `${file}-wal`)
        : await redisInfoNumber(redis.port, 'memory', 'used_memory');
    const storeBytesAfterSeed = await storeBytes();

    const spawned = performance.now();
    const store: GreylistStore =
      driver === 'sqlite'
        ? { driver, path: file }
        : { driver, url: redis.url, keyPrefix: REDIS_DEFAULT_PREFIX };
    const { child, port } = await startPostwarden(dir, `million-${driver}`, store, cpuProfDir);
    const label = `postwarden, ${driver === 'sqlite' ? 'SQLite' : 'Redis'}, ${count.toLocaleString('en-US')}`;
    try {
      const probe = uniqueTriplets('q');
      await waitForPolicy(child, port, probe.take(), START_TIMEOUT_MS);
      const readyMs = performance.now() - spawned;
      const rssAtStart = processMemory(child.process.pid)?.rss ?? NaN;
      const checkSample = sample.slice(0, 500);
      checkAnswers(
        label,
        'stored passed triplets',
        checkSample,
        await exchange(port, checkSample),
        /^DUNNO$/,
      );
      const fresh = uniqueTriplets('x');
      const freshCheck = Array.from({ length: 50 }, () => fresh.take());
      checkAnswers(
        label,
        'never-seen triplets',
        freshCheck,
        await exchange(port, freshCheck),
        ANSWERS[driver].new,
      );

      const cpu = () => {
        const own = processCpuMs(child.process.pid);
        if (driver === 'sqlite' || own === undefined) return own;
        const other = processCpuMs(redis.child.process.pid);
        return other === undefined ? undefined : own + other;
      };
      const slice = (workload: Workload) =>
        runSlice({
          port,
          connections: TARGET_CONNECTIONS,
          requests: workload === 'known' ? sampleWire : [],
          ...(workload === 'new' ? { next: fresh.next } : {}),
          expect: expectReply(driver, workload),
          warmupMs: 500,
          measureMs: (seconds * 1000) / 2,
          serverCpuMs: cpu,
          ...(driver === 'redis' ? { storeCpuMs: () => processCpuMs(redis.child.process.pid) } : {}),
        }).catch((error: unknown) => {
          throw error instanceof BenchError
            ? new BenchError(`${label}, ${workload}: ${error.message}`)
            : error;
        });
      process.stderr.write(`  ${label}: known, then new, at ${TARGET_CONNECTIONS} connections\n`);
      const known = summarize(TARGET_CONNECTIONS, [await slice('known')]);
      const freshResult = summarize(TARGET_CONNECTIONS, [await slice('new')]);
      const memory = processMemory(child.process.pid);
      const redisMemory = driver === 'redis' ? processMemory(redis.child.process.pid) : undefined;
      const storeBytesAfterRun = await storeBytes();
      const hwm = memory?.hwm ?? NaN;
      results.push({
        driver,
        triplets: count,
        keySeconds,
        seedSeconds,
        storeBytesAfterSeed,
        storeBytesAfterRun,
        ...(redisMemory ? { redisRssBytes: redisMemory.rss } : {}),
        readyMs,
        sample: sample.length,
        rssAtStart,
        rss: memory?.rss ?? NaN,
        hwm,
        known,
        fresh: freshResult,
        pass: hwm < TARGET_RSS_BYTES,
      });
    } finally {
      await stopChild(child);
    }
  }
  return results;
}

function printMillion(results: readonly MillionResult[]): void {
  const header = [
    'store',
    'triplets',
    'seeded in',
    'store size',
    'ready',
    'RSS at start',
    'RSS after',
    'HWM',
    'known req/s',
    'known p99',
    'new req/s',
    'new p99',
    'right',
  ];
  const body = results.map((r) => {
    const right = Math.min(r.known.expectedShare ?? NaN, r.fresh.expectedShare ?? NaN);
    return [
      r.driver === 'sqlite' ? 'SQLite' : 'Redis',
      r.triplets.toLocaleString('en-US'),
      `${r.seedSeconds.toFixed(1)} s`,
      r.driver === 'sqlite'
        ? `${mib(r.storeBytesAfterSeed)} file`
        : `${mib(r.storeBytesAfterSeed)} used_memory`,
      `${Math.round(r.readyMs)} ms`,
      mib(r.rssAtStart),
      mib(r.rss),
      mib(r.hwm),
      Math.round(r.known.rps).toLocaleString('en-US'),
      `${ms(r.known.p99Ms)} ms`,
      Math.round(r.fresh.rps).toLocaleString('en-US'),
      `${ms(r.fresh.p99Ms)} ms`,
      `${(Math.floor(right * 1000) / 10).toString()}%`,
    ];
  });
  detailTable(header, body);
}

function settings() {
  return {
    // 3 s, not the policy part's 4: two workloads and four servers.
    ...sliceSettings({ seconds: 3, rounds: 4 }),
    knownCount: Math.round(numberEnv('BENCH_KNOWN_TRIPLETS', 2000, 1, 1_000_000)),
    storedCount: Math.round(numberEnv('BENCH_STORED_TRIPLETS', 1_000_000, 0, 20_000_000)),
  };
}

async function run(
  { dir, cpuProfDir }: PartContext,
  { seconds, rounds, warmup, counts, knownCount, storedCount }: ReturnType<typeof settings>,
): Promise<PartResult> {
  const { list: servers, redis } = await startServers(dir, cpuProfDir);
  const pgVersion = postgreyVersion();
  say(
    'servers',
    `postgrey: ${pgVersion}`,
    `redis-server ${redis.version}; postwarden greylist check only, log level warn`,
  );
  say(
    'settings',
    `both: delay ${DELAY_S} s, auto-whitelist off, IPv4 /24 and IPv6 /64 networks, shipped whitelists on`,
    '(postgrey: its whitelist_clients/_recipients files; postwarden: default_allow) — no request matches them',
  );
  process.stderr.write(`  checking answers, seeding ${knownCount} known triplets\n`);
  const known = await seedAndCheck(servers, knownCount);
  say(
    'workload',
    'new: every request a never-seen triplet (unique sender), answer DEFER_IF_PERMIT;',
    `known: ${knownCount} seeded triplets that passed, cycled, answer DUNNO; full Postfix 3.7 RCPT requests`,
  );
  say(
    'method',
    `${seconds} s measured per server, workload and connection count, in ${rounds} slices taken in turns ` +
      `(warm-up ${warmup} s, later slices ${Math.min(warmup, 0.3)} s)`,
  );
  const fresh = uniqueTriplets('n');
  const rows: Row[] = [];
  for (const workload of ['new', 'known'] as const) {
    for (const { connections, paceRps } of cellLoads(counts, TARGET_CONNECTIONS)) {
      const progress = `${workload}, ${connections} connection(s)${paceRps === undefined ? '' : ' paced'}`;
      const slices = await measureInTurns(servers, rounds, progress, (server, round) => {
        const serverCpu = () => {
          const own = processCpuMs(server.child.process.pid);
          if (!server.store || own === undefined) return own;
          const store = processCpuMs(server.store.process.pid);
          return store === undefined ? undefined : own + store;
        };
        const storeChild = server.store;
        return runSlice({
          port: server.port,
          connections,
          ...(paceRps !== undefined ? { paceRps } : {}),
          requests: workload === 'known' ? known : [],
          ...(workload === 'new' ? { next: fresh.next } : {}),
          expect: expectReply(server.key, workload),
          warmupMs: sliceWarmupMs(warmup, round),
          measureMs: (seconds * 1000) / rounds,
          serverCpuMs: serverCpu,
          ...(storeChild ? { storeCpuMs: () => processCpuMs(storeChild.process.pid) } : {}),
        }).catch((error: unknown) => {
          throw error instanceof BenchError
            ? new BenchError(`${server.label}, ${progress}: ${error.message}`)
            : error;
        });
      });
      const ceiling = summarize(connections, slices.get('dunno') ?? [], paceRps).rps;
      const postgrey = summarize(connections, slices.get('postgrey') ?? [], paceRps).rps;
      for (const server of servers) {
        const result = summarize(connections, slices.get(server.key) ?? [], paceRps);
        rows.push({
          ...result,
          workload,
          server: server.key,
          label: server.label,
          ratio: result.rps / ceiling,
          vsPostgrey: result.rps / postgrey,
        });
      }
    }
  }
  const peaks = servers.map((s) => ({
    server: s.key,
    hwm: processMemory(s.child.process.pid)?.hwm ?? NaN,
    ...(s.store ? { storeHwm: processMemory(s.store.process.pid)?.hwm ?? NaN } : {}),
  }));

  printTable(rows);
  const results = resultRows(rows);
  say(
    'columns',
    'right: share of the replies in the windows that were the right answer (DEFER_IF_PERMIT for new, DUNNO',
    "for known; DUNNO always for the ceiling); srv CPU: all the server's processes (postwarden on Redis: with",
    'redis-server, whose share is "of it redis"); ÷ ceiling, ÷ postgrey: req/s over theirs, same workload',
    'and connection count; gen CPU: the load generator (this process)',
  );
  say(
    'memory',
    'peak RSS (VmHWM) of each server after the measurements:',
    ...peaks.map((m) => {
      const label = servers.find((s) => s.key === m.server)?.label ?? m.server;
      return `  ${label}: ${mib(m.hwm)}${m.storeHwm !== undefined ? `, its redis-server ${mib(m.storeHwm)}` : ''}`;
    }),
  );
  const wrong = rows
    .filter((r) => r.expectedShare !== undefined && r.expectedShare < 1)
    .map((r) => wrongLine(`${r.label}, ${r.workload}, ${loadLabel(r)} conn`, r));

  let million: MillionResult[] = [];
  const rssVerdicts: { driver: string; hwmStored: number; hwmLoaded: number; pass: boolean }[] = [];
  const pgHwm = peaks.find((p) => p.server === 'postgrey')?.hwm ?? NaN;
  if (storedCount > 0) {
    // The measured servers go; the Redis server stays, emptied, for the stored triplets.
    await Promise.all(servers.map((s) => stopChild(s.child)));
    million = await millionPhase(dir, redis, storedCount, seconds, cpuProfDir);
    printMillion(million);
    say(
      'target',
      `RSS < ${TARGET_RSS_BYTES / 2 ** 20} MB with ${storedCount.toLocaleString('en-US')} triplets stored ` +
        '(VmHWM of the postwarden process; information, not a test)',
      ...million.flatMap((m) => {
        // Under sustained load V8 lets promoted garbage pile up before a full GC: the peak of the same
        // driver's postwarden over the measurements above counts too.
        const loaded = peaks.find((p) => p.server === m.driver)?.hwm ?? NaN;
        const pass = m.pass && !(loaded >= TARGET_RSS_BYTES);
        rssVerdicts.push({ driver: m.driver, hwmStored: m.hwm, hwmLoaded: loaded, pass });
        const name = m.driver === 'sqlite' ? 'SQLite' : 'Redis';
        results.push({
          part: 'greylist',
          name: `${m.triplets.toLocaleString('en-US')} triplets stored, ${name}`,
          what: 'peak RSS',
          unit: 'MiB',
          postwarden: Math.max(m.hwm, loaded) / 2 ** 20,
          peerName: 'postgrey',
          peer: pgHwm / 2 ** 20,
          ratio: Math.max(m.hwm, loaded) / pgHwm,
          target: `< ${TARGET_RSS_BYTES / 2 ** 20} MB`,
          pass,
          notes: `with the triplets ${mib(m.hwm)}, under load ${mib(loaded)}; postgrey: its peak in the main runs`,
        });
        return [
          `${pass ? 'PASS' : 'MISS'}  ${name}: postwarden VmHWM ${mib(m.hwm)} with the triplets stored, ` +
            `${mib(loaded)} over the measurements above`,
          m.redisRssBytes !== undefined
            ? `      the triplets live in redis-server: RSS ${mib(m.redisRssBytes)}, used_memory ${mib(m.storeBytesAfterRun)}`
            : `      SQLite file and WAL ${mib(m.storeBytesAfterRun)} after the run`,
        ];
      }),
    );
    say(
      'columns',
      "triplets: keys made by the greylist check's helpers, 3 in 4 passed, 1 in 4 waiting (made once, in " +
        `${(million[0]?.keySeconds ?? NaN).toFixed(1)} s,`,
      'not counted in "seeded in"); seeded in: SQLite transactions of 100,000 rows into the table the driver',
      'created, Redis pipelined SET … PXAT; store size: SQLite file + WAL, Redis used_memory, after seeding;',
      `ready: spawn to first answer; RSS at start / after: VmRSS of postwarden then, and after ${seconds / 2} s ` +
        'of known',
      `and ${seconds / 2} s of new at ${TARGET_CONNECTIONS} connections (known: ` +
        `${(million[0]?.sample ?? 0).toLocaleString('en-US')} stored passed triplets, cycled); HWM: its peak`,
    );
    for (const m of million) {
      for (const [workload, cell] of [
        ['known', m.known],
        ['new', m.fresh],
      ] as const) {
        if ((cell.expectedShare ?? 1) < 1)
          wrong.push(wrongLine(`${m.driver}, stored triplets, ${workload}`, cell));
      }
    }
  }

  if (cpuProfDir) say('profiles', `${cpuProfDir}/postwarden-{grey,million}-{sqlite,redis}.cpuprofile`);
  if (wrong.length > 0) {
    throw new BenchError(`wrong answers inside the measurement windows:\n${wrong.join('\n')}`);
  }
  return {
    rows: results,
    raw: {
      postgrey: pgVersion,
      redis: redis.version,
      seconds,
      rounds,
      warmup,
      delayS: DELAY_S,
      knownTriplets: knownCount,
      rows,
      verdicts: results,
      memory: peaks,
      stored: million,
      rssVerdicts,
    },
  };
}

export const greylistPart = benchPart({
  name: 'greylist',
  title: 'greylisting on SQLite and Redis against postgrey and an always-DUNNO server (issue 3)',
  needs: () => [debianProgram(POSTGREY, 'postgrey'), debianProgram('redis-server', 'redis-server')],
  settings,
  run,
});
