/**
 * The `policy` part of `npm run bench` (bench/main.ts): the policy face against its ceiling, in one run. Starts
 * a minimal always-DUNNO server (bench/dunno-server.ts) and postwarden three times — with no check enabled (what
 * the face itself costs: reading, the request, its session, metrics, the reply), and with every check enforcing
 * on realistic maps, once at `log.level: warn` and once at `info` (the default: one decision line per request,
 * here into a file) — each in its own process on a free 127.0.0.1 port, checks that postwarden answers each request of the
 * mix as it must, then measures requests/s and p50/p99 latency at 1, 8 and 32 connections. At each connection
 * count the servers take turns, in rounds of short slices, so drift of the machine hits them alike. Returns
 * postwarden's req/s as a ratio of the ceiling's and the target (≥ 50% of the ceiling, p99 under 2 ms at 8
 * connections) as report rows; the full table goes into the part's detail.
 *
 * Env: BENCH_SECONDS (measured per server and connection count, default 4), BENCH_ROUNDS (slices it is cut
 * into, default 4), BENCH_WARMUP_SECONDS (before the first slice, default 1; later slices 0.3 s at most),
 * BENCH_CONNECTIONS (default 1,8,32). A server that does not start, a wrong or malformed reply, a dropped
 * connection: a BenchError (the part is BROKEN).
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PolicyClient } from '../src/policy/client.js';
import { type Child, freePort, processCpuMs, startChild, waitForLine, waitForPolicy } from './children.js';
import { sliceSettings } from './options.js';
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
  benchPart,
  breaksBy,
  detailTable,
  type PartContext,
  type PartResult,
  p99Row,
  type ResultRow,
  say,
} from './report.js';
import { type BenchRequest, encodeMix, type Fixture, requestMix, writeFixture } from './workload.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(HERE, '../src/cli/main.js');
const DUNNO_SERVER = path.join(HERE, 'dunno-server.js');
const START_TIMEOUT_MS = 20_000;

const TARGET_RATIO = 0.5;
const TARGET_P99_MS = 2;
const TARGET_CONNECTIONS = 8;

interface Server {
  /** `none`: postwarden with no check enabled (the policy face's own cost); `warn`, `info`: every check. */
  readonly key: 'dunno' | 'none' | 'warn' | 'info';
  readonly label: string;
  readonly port: number;
  readonly child: Child;
  readonly logFile?: string;
}

interface Row extends CellResult {
  readonly server: Server['key'];
  readonly label: string;
  /** postwarden's req/s over the ceiling's at the same connection count (1 for the ceiling itself). */
  readonly ratio: number;
}

/** Sends each request of the mix once and compares the answer with what it must be. */
async function verifyAnswers(server: Server, mix: readonly BenchRequest[], allDunno: boolean): Promise<void> {
  const client = await PolicyClient.connect(`127.0.0.1:${server.port}`);
  const wrong: string[] = [];
  try {
    for (const request of mix) {
      const action = await client.query(request.attributes, 5000);
      const expect = allDunno ? /^DUNNO$/ : request.expect;
      if (!expect.test(action)) {
        wrong.push(
          `  ${request.kind} ${request.attributes['client_address']} ${request.attributes['sender']} → ` +
            `${request.attributes['recipient']}: got "${action}", want ${String(expect)}`,
        );
      }
    }
  } finally {
    client.close();
  }
  if (wrong.length > 0) {
    throw new BenchError(
      `${server.label} answered ${wrong.length} of ${mix.length} requests wrongly ` +
        `(checks not all enabled, or a map did not load?):\n${wrong.slice(0, 10).join('\n')}`,
    );
  }
}

/** The postwarden runs differ only in logging: info must have logged the decisions just checked, warn not. */
function checkLog(server: Server): void {
  const head = readFileSync(server.logFile ?? '', 'utf8').slice(0, 65_536);
  const logged = head.includes('"policy decision"');
  if (logged !== (server.key === 'info')) {
    throw new BenchError(
      `${server.label}: decision lines ${logged ? 'found' : 'missing'} in its log ${server.logFile ?? ''}`,
    );
  }
}

async function startServers(dir: string, mix: readonly BenchRequest[], cpuProfDir: string | undefined) {
  const probe = mix[0]?.attributes ?? {};
  const servers: Server[] = [];
  const fixtures: Fixture[] = [];

  const dunnoPort = await freePort();
  const dunno = startChild('the DUNNO server', DUNNO_SERVER, [String(dunnoPort)]);
  await waitForLine(dunno, 'ready', START_TIMEOUT_MS);
  servers.push({ key: 'dunno', label: 'DUNNO ceiling', port: dunnoPort, child: dunno });

  const variants = [
    { key: 'none', level: 'warn', checks: 'none', label: 'postwarden, no checks, log warn' },
    { key: 'warn', level: 'warn', checks: 'all', label: 'postwarden, log warn' },
    { key: 'info', level: 'info', checks: 'all', label: 'postwarden, log info' },
  ] as const;
  for (const { key, level, checks, label } of variants) {
    const ports = { policy: await freePort(), http: await freePort() };
    const fixture = writeFixture(dir, `postwarden-${key}`, ports, level, checks);
    if (checks === 'all') fixtures.push(fixture);
    const logFile = path.join(dir, `postwarden-${key}.log`);
    const nodeArgs = cpuProfDir
      ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`, `--cpu-prof-name=postwarden-${key}.cpuprofile`]
      : [];
    const child = startChild(label, MAIN, ['serve', '--config', fixture.configPath], {
      stdoutFile: logFile,
      nodeArgs,
    });
    servers.push({ key, label, port: ports.policy, child, logFile });
  }
  // Both postwarden instances load their maps in parallel; each must answer a real request.
  await Promise.all(servers.map((s) => waitForPolicy(s.child, s.port, probe, START_TIMEOUT_MS)));
  for (const server of servers)
    await verifyAnswers(server, mix, server.key === 'dunno' || server.key === 'none');
  for (const server of servers) if (server.logFile) checkLog(server);
  return { servers, fixture: fixtures[0] };
}

function ms(value: number): string {
  return Number.isFinite(value) ? value.toFixed(3) : '-';
}

function printTable(rows: readonly Row[]): void {
  const header = [
    'server',
    'conns',
    'req/s',
    'p50 ms',
    'p99 ms',
    'max ms',
    'DUNNO',
    'srv CPU µs/req',
    'srv CPU',
    'gen CPU',
    'ratio',
  ];
  const body = rows.map((r) => [
    r.label,
    loadLabel(r),
    Math.round(r.rps).toLocaleString('en-US'),
    ms(r.p50Ms),
    ms(r.p99Ms),
    ms(r.maxMs),
    `${Math.round(r.dunnoShare * 100)}%`,
    Number.isFinite(r.cpuUsPerRequest) ? r.cpuUsPerRequest.toFixed(1) : '-',
    Number.isFinite(r.cpuLoad) ? `${Math.round(r.cpuLoad * 100)}%` : '-',
    `${Math.round(r.generatorCpuLoad * 100)}%`,
    r.server === 'dunno' ? '(ceiling)' : `${(r.ratio * 100).toFixed(1)}%`,
  ]);
  detailTable(header, body, { breaks: breaksBy(rows, loadLabel) });
}

/** The report's rows: each postwarden at each connection count against the ceiling, and p99 at 8 (flat out and paced). */
function resultRows(rows: readonly Row[]): ResultRow[] {
  const out: ResultRow[] = [];
  const flat = rows.filter((x) => x.paceRps === undefined);
  /** A flat-out req/s row against the ceiling at the same connection count; with `checked`, the target. */
  const ratioRow = (r: Row, name: string, checked: boolean): ResultRow => {
    const ceiling = flat.find((x) => x.server === 'dunno' && x.connections === r.connections);
    return {
      part: 'policy',
      name: `${name}, ${r.connections} conn`,
      what: 'req/s',
      unit: 'req/s',
      postwarden: r.rps,
      peerName: 'DUNNO ceiling',
      peer: ceiling?.rps,
      ratio: r.ratio,
      ratioAs: '%',
      ...(checked ? { target: `≥ ${TARGET_RATIO * 100}% of ceiling`, pass: r.ratio >= TARGET_RATIO } : {}),
      notes: `${r.cpuUsPerRequest.toFixed(0)} µs CPU/req (ceiling ${ceiling?.cpuUsPerRequest.toFixed(0) ?? '?'})`,
    };
  };
  // What the face costs before any check runs: how much of the ceiling is left for the checks (information).
  for (const r of flat.filter((x) => x.server === 'none'))
    out.push(ratioRow(r, 'no checks, log warn', false));
  for (const key of ['warn', 'info'] as const) {
    for (const r of flat.filter((x) => x.server === key))
      out.push(ratioRow(r, `all checks, log ${key}`, true));
    for (const paced of [false, true]) {
      const at8 = (server: Row['server']) =>
        rows.find(
          (x) =>
            x.server === server &&
            x.connections === TARGET_CONNECTIONS &&
            (x.paceRps !== undefined) === paced,
        );
      const mine = at8(key);
      if (!mine) continue;
      const row = p99Row(
        'policy',
        `all checks, log ${key}, ${loadName(mine)}`,
        mine,
        'DUNNO ceiling',
        at8('dunno'),
        TARGET_P99_MS,
      );
      out.push(
        paced ? { ...row, notes: `${Math.round(mine.rps).toLocaleString('en-US')} req/s answered` } : row,
      );
    }
  }
  return out;
}

function fileBytes(file: string | undefined): number {
  try {
    return file ? statSync(file).size : 0;
  } catch {
    return 0;
  }
}

const settings = () => sliceSettings({ seconds: 4, rounds: 4 });

async function run(
  { dir, cpuProfDir }: PartContext,
  { seconds, rounds, warmup, counts }: ReturnType<typeof settings>,
): Promise<PartResult> {
  const mix = requestMix();
  const encoded = encodeMix(mix);
  const { servers, fixture } = await startServers(dir, mix, cpuProfDir);
  const kinds = new Map<string, number>();
  for (const r of mix) kinds.set(r.kind, (kinds.get(r.kind) ?? 0) + 1);
  const avgBytes = Math.round(encoded.reduce((n, b) => n + b.length, 0) / encoded.length);
  const shares = [...kinds].map(([kind, n]) => `${Math.round((n * 100) / mix.length)}% ${kind}`);
  say(
    'workload',
    `${mix.length} distinct Postfix 3.7 RCPT requests (${avgBytes} bytes on average), cycled:`,
    shares.join(', '),
  );
  const clients = fixture?.blockClientEntries ?? 0;
  const senders = fixture?.blockSenderEntries ?? 0;
  say(
    'checks',
    'relay, sender_ownership, limits, lists, helo, all enforce; block lists of',
    `${clients} clients and ${senders} sender domains (file: maps); and once with none (policy.checks: [])`,
  );
  say(
    'method',
    `${seconds} s measured per server and connection count, in ${rounds} slices taken in turns ` +
      `(warm-up ${warmup} s, later slices ${Math.min(warmup, 0.3)} s);`,
    'each connection strictly request → reply, new connections per slice; flat out (the next request as soon',
    `as the reply is in), and at ${TARGET_CONNECTIONS} connections also paced (@: requests a second offered, bench/load.ts PACED_RPS)`,
  );

  const rows: Row[] = [];
  for (const { connections, paceRps } of cellLoads(counts, TARGET_CONNECTIONS)) {
    const label = paceRps === undefined ? `${connections} connection(s)` : `${connections} connections paced`;
    const slices = await measureInTurns(servers, rounds, label, (server, round) =>
      runSlice({
        port: server.port,
        connections,
        requests: encoded,
        ...(paceRps !== undefined ? { paceRps } : {}),
        warmupMs: sliceWarmupMs(warmup, round),
        measureMs: (seconds * 1000) / rounds,
        serverCpuMs: () => processCpuMs(server.child.process.pid),
      }).catch((error: unknown) => {
        throw error instanceof BenchError
          ? new BenchError(`${server.label}, ${label}: ${error.message}`)
          : error;
      }),
    );
    const ceiling = summarize(connections, slices.get('dunno') ?? [], paceRps).rps;
    for (const server of servers) {
      const result = summarize(connections, slices.get(server.key) ?? [], paceRps);
      rows.push({ ...result, server: server.key, label: server.label, ratio: result.rps / ceiling });
    }
  }

  printTable(rows);
  say(
    'columns',
    'ratio: postwarden req/s ÷ ceiling req/s at the same connection count; p50/p99/max: write → reply;',
    'DUNNO: share of replies that were DUNNO; srv CPU: the server process (all threads) in the window,',
    'per reply and as load (100% = one core busy); gen CPU: the load generator (this process)',
  );
  const info = servers.find((s) => s.key === 'info');
  say('logs', `log info wrote ${(fileBytes(info?.logFile) / 2 ** 20).toFixed(1)} MiB of decision lines`);
  if (cpuProfDir) say('profiles', `${cpuProfDir}/postwarden-{none,warn,info}.cpuprofile`);
  return { rows: resultRows(rows), raw: { seconds, rounds, warmup, rows } };
}

export const policyPart = benchPart({
  name: 'policy',
  title: 'the policy face, every check of issue 2, against an always-DUNNO server (issue 2)',
  settings,
  run,
});
