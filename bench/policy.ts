/**
 * `npm run bench`: the policy face against its ceiling, in one run. Starts a minimal always-DUNNO server
 * (bench/dunno-server.ts) and postwarden twice — every check enforcing, realistic maps, once at
 * `log.level: warn` and once at `info` (the default: one decision line per request, here into a file) —
 * each in its own process on a free 127.0.0.1 port, checks that postwarden answers each request of the mix
 * as it must, then measures requests/s and p50/p99 latency at 1, 8 and 32 connections. At each connection
 * count the servers take turns, in rounds of short slices, so drift of the machine hits them alike. Prints
 * one table with postwarden's req/s as a ratio of the ceiling's, and the target as information: at least
 * 50% of the ceiling, p99 under 2 ms at 8 connections.
 *
 * Options: `--json FILE` also writes the results as JSON; `--cpu-prof DIR` runs postwarden under
 * `node --cpu-prof` (profiles written to DIR when it stops). Env: BENCH_SECONDS (measured per server and
 * connection count, default 4), BENCH_ROUNDS (slices it is cut into, default 4), BENCH_WARMUP_SECONDS (before
 * the first slice, default 1; later slices 0.3 s at most), BENCH_CONNECTIONS (default 1,8,32).
 *
 * Exit status: 0 when the benchmark ran, whatever the figures; 1 when it broke (a server did not start, a
 * reply was wrong or malformed, a connection dropped); 2 for bad options; 130/143 on SIGINT/SIGTERM. Child
 * processes are stopped in every case; the temporary directory is removed. Nothing is written into the repo.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PolicyClient } from '../src/policy/client.js';
import {
  type Child,
  freePort,
  killAllNow,
  machineBusyMs,
  processCpuMs,
  startChild,
  stopAll,
  waitForLine,
  waitForPolicy,
} from './children.js';
import { benchArgs, connectionCounts, numberEnv, onStopSignal, reportFailure } from './options.js';
import { BenchError, type CellResult, runSlice, type Slice, summarize } from './load.js';
import { type BenchRequest, encodeMix, type Fixture, requestMix, writeFixture } from './workload.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(HERE, '../src/cli/main.js');
const DUNNO_SERVER = path.join(HERE, 'dunno-server.js');
const START_TIMEOUT_MS = 20_000;

const TARGET_RATIO = 0.5;
const TARGET_P99_MS = 2;
const TARGET_CONNECTIONS = 8;

interface Server {
  readonly key: 'dunno' | 'warn' | 'info';
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

  for (const level of ['warn', 'info'] as const) {
    const ports = { policy: await freePort(), http: await freePort() };
    const fixture = writeFixture(dir, `postwarden-${level}`, ports, level);
    fixtures.push(fixture);
    const logFile = path.join(dir, `postwarden-${level}.log`);
    const nodeArgs = cpuProfDir
      ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`, `--cpu-prof-name=postwarden-${level}.cpuprofile`]
      : [];
    const child = startChild(`postwarden (log ${level})`, MAIN, ['serve', '--config', fixture.configPath], {
      stdoutFile: logFile,
      nodeArgs,
    });
    servers.push({ key: level, label: `postwarden, log ${level}`, port: ports.policy, child, logFile });
  }
  // Both postwarden instances load their maps in parallel; each must answer a real request.
  await Promise.all(servers.map((s) => waitForPolicy(s.child, s.port, probe, START_TIMEOUT_MS)));
  for (const server of servers) await verifyAnswers(server, mix, server.key === 'dunno');
  for (const server of servers) if (server.logFile) checkLog(server);
  return { servers, fixture: fixtures[0] };
}

function ms(value: number): string {
  return Number.isFinite(value) ? value.toFixed(3) : '-';
}

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width);
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
    String(r.connections),
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
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => (cells[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells.map((cell, i) => pad(cell, widths[i] ?? 0, i > 0)).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  let previous: number | undefined;
  for (const [i, cells] of body.entries()) {
    const connections = rows[i]?.connections;
    if (previous !== undefined && connections !== previous) console.log('');
    previous = connections;
    console.log(line(cells));
  }
}

interface Verdict {
  readonly server: Server['key'];
  readonly pass: boolean;
  readonly text: string;
}

function verdicts(rows: readonly Row[]): Verdict[] {
  return (['warn', 'info'] as const).map((key) => {
    const mine = rows.filter((r) => r.server === key);
    const misses: string[] = [];
    const worst = mine.reduce<Row | undefined>(
      (w, r) => (w === undefined || r.ratio < w.ratio ? r : w),
      undefined,
    );
    if (worst && worst.ratio < TARGET_RATIO) {
      misses.push(`${(worst.ratio * 100).toFixed(1)}% of the ceiling at ${worst.connections} connection(s)`);
    }
    const at8 = mine.find((r) => r.connections === TARGET_CONNECTIONS);
    if (at8 && !(at8.p99Ms < TARGET_P99_MS))
      misses.push(`p99 ${ms(at8.p99Ms)} ms at ${TARGET_CONNECTIONS} connections`);
    const parts = [
      worst
        ? `lowest ratio ${(worst.ratio * 100).toFixed(1)}% (${worst.connections} conn)`
        : 'no ratio measured',
      at8
        ? `p99 at ${TARGET_CONNECTIONS} conn ${ms(at8.p99Ms)} ms`
        : `${TARGET_CONNECTIONS} connections not measured`,
    ];
    const pass = misses.length === 0 && worst !== undefined && at8 !== undefined;
    const missed = misses.length > 0 ? ` — missed: ${misses.join('; ')}` : '';
    return { server: key, pass, text: `${pass ? 'PASS' : 'MISS'}  log ${key}: ${parts.join(', ')}${missed}` };
  });
}

function fileBytes(file: string | undefined): number {
  try {
    return file ? statSync(file).size : 0;
  } catch {
    return 0;
  }
}

/** One labelled paragraph of the report: the label, then each line indented to the same column. */
function say(label: string, ...lines: string[]): void {
  lines.forEach((line, i) => console.log(`${(i === 0 ? label : '').padEnd(9)}${line}`));
}

/** The temporary directory of this run (config, maps, logs); removed at the end and on SIGINT. */
let tempDir: string | undefined;

async function main(): Promise<number> {
  const values = benchArgs({});
  if (values.help) {
    console.log('usage: node dist/bench/policy.js [--json FILE] [--cpu-prof DIR]');
    console.log(
      'env: BENCH_SECONDS (default 4), BENCH_ROUNDS (default 4), BENCH_WARMUP_SECONDS (default 1),\n' +
        '     BENCH_CONNECTIONS (default 1,8,32)',
    );
    return 0;
  }
  const seconds = numberEnv('BENCH_SECONDS', 4, 0.5, 600);
  const rounds = Math.round(numberEnv('BENCH_ROUNDS', 4, 1, 100));
  const warmup = numberEnv('BENCH_WARMUP_SECONDS', 1, 0, 60);
  const counts = connectionCounts();
  if (!existsSync(MAIN) || !existsSync(DUNNO_SERVER)) {
    throw new BenchError(
      `${MAIN} or ${DUNNO_SERVER} missing: run \`npm run build\` first (npm run bench does)`,
    );
  }
  const cpuProfDir = values['cpu-prof'] !== undefined ? path.resolve(values['cpu-prof']) : undefined;
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });

  const cpus = os.cpus();
  const date = new Date().toISOString();
  const model = cpus[0]?.model.trim() ?? 'unknown cpu';
  const memory = `${Math.round(os.totalmem() / 2 ** 30)} GiB`;
  console.log('postwarden policy-face benchmark');
  say('date', date);
  say('machine', `${cpus.length} cpu(s), ${model}, ${memory}, ${os.platform()} ${os.release()}`);
  say('node', process.version);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'postwarden-bench-'));
  tempDir = dir;
  try {
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
      `${clients} clients and ${senders} sender domains (file: maps)`,
    );
    say(
      'method',
      `${seconds} s measured per server and connection count, in ${rounds} slices taken in turns ` +
        `(warm-up ${warmup} s, later slices ${Math.min(warmup, 0.3)} s);`,
      'each connection strictly request → reply, new connections per slice',
    );
    console.log('');

    // What the rest of the machine did meanwhile: busy CPU time not spent by the bench or its servers.
    const ownCpuMs = () => {
      const { user, system } = process.cpuUsage();
      const children = servers.map((s) => processCpuMs(s.child.process.pid) ?? NaN);
      return (user + system) / 1000 + children.reduce((a, b) => a + b, 0);
    };
    const before = { wall: performance.now(), busy: machineBusyMs() ?? NaN, own: ownCpuMs() };
    const rows: Row[] = [];
    for (const connections of counts) {
      const slices = new Map<Server['key'], Slice[]>(servers.map((s) => [s.key, []]));
      for (let round = 0; round < rounds; round++) {
        process.stderr.write(`  ${connections} connection(s), round ${round + 1} of ${rounds}\n`);
        // Rotate who goes first, so no server always follows the same one.
        for (let i = 0; i < servers.length; i++) {
          const server = servers[(i + round) % servers.length] as Server;
          const slice = await runSlice({
            port: server.port,
            connections,
            requests: encoded,
            warmupMs: round === 0 ? warmup * 1000 : Math.min(warmup * 1000, 300),
            measureMs: (seconds * 1000) / rounds,
            serverCpuMs: () => processCpuMs(server.child.process.pid),
          }).catch((error: unknown) => {
            throw error instanceof BenchError
              ? new BenchError(`${server.label}, ${connections} conn: ${error.message}`)
              : error;
          });
          slices.get(server.key)?.push(slice);
        }
      }
      const ceiling = summarize(connections, slices.get('dunno') ?? []).rps;
      for (const server of servers) {
        const result = summarize(connections, slices.get(server.key) ?? []);
        rows.push({ ...result, server: server.key, label: server.label, ratio: result.rps / ceiling });
      }
    }

    const other =
      ((machineBusyMs() ?? NaN) - before.busy - (ownCpuMs() - before.own)) /
      (performance.now() - before.wall);
    console.log('');
    printTable(rows);
    console.log('');
    const results = verdicts(rows);
    say(
      'target',
      `≥ ${TARGET_RATIO * 100}% of the ceiling's req/s at every connection count, ` +
        `p99 < ${TARGET_P99_MS} ms at ${TARGET_CONNECTIONS} connections (information, not a test)`,
      ...results.map((v) => v.text),
    );
    say(
      'columns',
      'ratio: postwarden req/s ÷ ceiling req/s at the same connection count; p50/p99/max: write → reply;',
      'DUNNO: share of replies that were DUNNO; srv CPU: the server process (all threads) in the window,',
      'per reply and as load (100% = one core busy); gen CPU: the load generator (this process)',
    );
    if (Number.isFinite(other)) {
      say(
        'others',
        `processes outside the benchmark kept ${Math.max(0, other * 100).toFixed(0)}% of one core busy ` +
          'during the measurements',
        other > 0.1 ? 'the machine was not quiet: the figures are noisy, compare ratios only' : '(quiet)',
      );
    }
    const info = servers.find((s) => s.key === 'info');
    say('logs', `log info wrote ${(fileBytes(info?.logFile) / 2 ** 20).toFixed(1)} MiB of decision lines`);

    await stopAll();
    if (cpuProfDir) say('profiles', `${cpuProfDir}/postwarden-{warn,info}.cpuprofile`);
    if (values.json !== undefined) {
      const machine = {
        cpus: cpus.length,
        model: cpus[0]?.model.trim(),
        node: process.version,
        platform: os.platform(),
      };
      const json = { date, machine, seconds, rounds, warmup, rows, verdicts: results };
      const finite = (_key: string, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v);
      writeFileSync(values.json, `${JSON.stringify(json, finite, 2)}\n`);
    }
    return 0;
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

process.on('exit', killAllNow);
onStopSignal(async () => {
  await stopAll(1000);
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
});

main().then((code) => {
  process.exitCode = code;
}, reportFailure);
