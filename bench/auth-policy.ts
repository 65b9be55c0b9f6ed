/**
 * The `auth-policy` part of `npm run bench` (bench/main.ts; `npm run bench:auth` runs it alone): Dovecot's
 * auth-policy endpoint. Starts the built
 * postwarden (`dist/src/cli/main.js serve`) as its own process with `auth_policy` on and a SQLite store in a
 * temporary directory, then sends what Dovecot sends — POST /dovecot/auth-policy?command=allow|report with its
 * JSON and X-API-Key — over N keep-alive HTTP connections, each a strictly sequential loop request → answer (as
 * Dovecot's auth process uses its HTTP client), at 8 and 32 connections.
 *
 * The mix (one login is an `allow` then a `report`): users at 60 000 addresses logging in (a success, or a
 * stale password: the same hash again), and guessers at 4 000 other addresses trying a fresh password each time,
 * who get blocked and then answered -1. Every answer is parsed and must be `{"status": <int>, "msg": <string>}`;
 * anything else breaks the run. Then a flood: reports only, each a failure from a never-seen address (the most
 * store writes per request), at 32 connections, with /healthz probed every 100 ms beside it and the process's
 * resident memory before and after — the "10 000 reports a second, bounded memory, stays responsive" case.
 *
 * The detail table gives req/s, latency (p50, p99, max, ms), postwarden's CPU per request and load, and the
 * load generator's CPU load (near 1 it is the limit, not postwarden); the target (≥ 5 000 req/s at 8 and 32
 * connections on SQLite) is a report row. No peer does this job (Dovecot's auth policy is a protocol, not a
 * Debian package), so that target is absolute.
 *
 * Env: BENCH_SECONDS (10), BENCH_WARMUP_SECONDS (2),
 * BENCH_CONNECTIONS (8,32), BENCH_FLOOD_SECONDS (5; 0 skips the flood), BENCH_AUTH_PORT (postwarden's HTTP port,
 * the policy face takes the next one; default: free ports). The temporary directory is made under TMPDIR.
 *
 * postwarden not starting, a malformed answer or an HTTP error: a BenchError (the part is BROKEN).
 */
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Child, freePort, processCpuMs, processMemory, startChild } from './children.js';
import { BenchError } from './load.js';
import { connectionCounts, numberEnv } from './options.js';
import { benchPart, detailTable, type PartContext, type PartResult, type ResultRow, say } from './report.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.join(HERE, '../src/cli/main.js');
const KEY = 'bench-auth-policy-key-0123456789';
const TARGET_RPS = 5000;

interface Result {
  readonly phase: 'mixed' | 'flood';
  readonly connections: number;
  readonly requests: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** postwarden's CPU per answered request (µs) and over the window (1 = one core busy). */
  readonly cpuUsPerRequest: number;
  readonly cpuLoad: number;
  readonly generatorCpuLoad: number;
  /** Answers by status: refused (-1), accepted (0), tarpit (> 0). */
  readonly refused: number;
  readonly tarpit: number;
}

interface FloodExtras {
  readonly rssBeforeMb: number;
  readonly rssAfterMb: number;
  readonly healthzMaxMs: number;
}

/** One request body and command; `next(i)` makes the i-th of a connection. */
type Next = () => { command: 'allow' | 'report'; body: string };

const addressOf = (n: number, base: number) => `198.${base + ((n >> 16) & 1)}.${(n >> 8) & 255}.${n & 255}`;

/** The mixed workload: logins of users (success or stale password) and of guessers (fresh passwords). */
function mixed(connection: number): Next {
  let step = 0;
  let login: { remote: string; user: string; pwhash: string; success: boolean } | undefined;
  let guess = connection * 1_000_003;
  return () => {
    step++;
    if (login) {
      const { remote, user, pwhash, success } = login;
      login = undefined;
      return {
        command: 'report',
        body: JSON.stringify({
          login: user,
          pwhash,
          remote,
          protocol: 'imap',
          success,
          policy_reject: false,
        }),
      };
    }
    const kind = step % 10; // 7 in 10 logins succeed, 1 is a stale password, 2 are guesses
    const n = (step * 7919 + connection * 104_729) % 60_000;
    if (kind < 7)
      login = { remote: addressOf(n, 18), user: `user${n}@example.test`, pwhash: '5a1', success: true };
    else if (kind < 8)
      login = { remote: addressOf(n, 18), user: `user${n}@example.test`, pwhash: '0ld', success: false };
    else {
      guess++;
      const g = guess % 4000;
      login = {
        remote: addressOf(g, 20),
        user: `user${guess % 60_000}@example.test`,
        pwhash: (guess % 4096).toString(16),
        success: false,
      };
    }
    return {
      command: 'allow',
      body: JSON.stringify({
        login: login.user,
        pwhash: login.pwhash,
        remote: login.remote,
        protocol: 'imap',
      }),
    };
  };
}

/** The flood: failure reports, each from an address not seen before. */
function flood(connection: number): Next {
  let n = connection * 10_000_000;
  return () => {
    n++;
    const remote = `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
    return {
      command: 'report',
      body: JSON.stringify({
        login: `x${n}@example.test`,
        pwhash: 'abc',
        remote,
        success: false,
        policy_reject: false,
      }),
    };
  };
}

/** One request on the agent; resolves with the answer's status field and the latency in ms. */
function send(
  agent: http.Agent,
  port: number,
  command: string,
  body: string,
): Promise<{ status: number; ms: number }> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        agent,
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: `/dovecot/auth-policy?command=${command}`,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'x-api-key': KEY,
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let answer: { status?: unknown; msg?: unknown } | undefined;
          try {
            answer = JSON.parse(text) as typeof answer;
          } catch {
            // judged below
          }
          if (
            response.statusCode !== 200 ||
            !Number.isInteger(answer?.status) ||
            typeof answer?.msg !== 'string'
          ) {
            reject(new BenchError(`${command}: HTTP ${response.statusCode} ${text.slice(0, 200)}`));
            return;
          }
          resolve({ status: answer.status as number, ms: Number(process.hrtime.bigint() - started) / 1e6 });
        });
        response.on('error', reject);
      },
    );
    request.on('error', (error) => reject(new BenchError(`${command}: ${error.message}`)));
    request.end(body);
  });
}

const percentile = (sorted: Float64Array, p: number) =>
  sorted.length === 0 ? NaN : (sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN);

async function runCell(
  phase: Result['phase'],
  server: Child,
  port: number,
  connections: number,
  make: (connection: number) => Next,
  warmupMs: number,
  measureMs: number,
): Promise<Result> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const samples: number[] = [];
  let refused = 0;
  let tarpit = 0;
  let measuring = false;
  let stopping = false;
  const loops = Array.from({ length: connections }, async (_, c) => {
    const next = make(c);
    while (!stopping) {
      const { command, body } = next();
      const { status, ms } = await send(agent, port, command, body);
      if (!measuring) continue;
      samples.push(ms);
      if (status < 0) refused++;
      else if (status > 0) tarpit++;
    }
  });
  const failed = Promise.race(loops.map((l) => l.then(() => new Promise<never>(() => undefined))));
  const wait = (ms: number) => Promise.race([new Promise((r) => setTimeout(r, ms)), failed]);
  await wait(warmupMs);
  const cpu0 = processCpuMs(server.process.pid);
  const gen0 = process.cpuUsage();
  const t0 = performance.now();
  measuring = true;
  await wait(measureMs);
  measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  const cpu1 = processCpuMs(server.process.pid);
  const gen = process.cpuUsage(gen0);
  stopping = true;
  await Promise.all(loops);
  agent.destroy();
  const sorted = Float64Array.from(samples).sort();
  const serverMs = cpu0 !== undefined && cpu1 !== undefined ? cpu1 - cpu0 : NaN;
  return {
    phase,
    connections,
    requests: samples.length,
    rps: samples.length / seconds,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted[sorted.length - 1] ?? NaN,
    cpuUsPerRequest: (serverMs * 1000) / samples.length,
    cpuLoad: serverMs / 1000 / seconds,
    generatorCpuLoad: (gen.user + gen.system) / 1e6 / seconds,
    refused,
    tarpit,
  };
}

/** Probes /healthz every 100 ms until stopped; resolves with the slowest answer (ms). */
function probeHealth(port: number): { stop: () => Promise<number> } {
  let stopped = false;
  let slowest = 0;
  const loop = (async () => {
    while (!stopped) {
      const started = performance.now();
      const response = await fetch(`http://127.0.0.1:${port}/healthz`);
      await response.text();
      slowest = Math.max(slowest, performance.now() - started);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return slowest;
    },
  };
}

async function startPostwarden(dir: string, httpPort: number, policyPort: number): Promise<Child> {
  writeFileSync(path.join(dir, 'auth-policy.key'), `${KEY}\n`, { mode: 0o600 });
  const config = path.join(dir, 'postwarden.yml');
  writeFileSync(
    config,
    `local_domains: [example.test]
store: { driver: sqlite, path: ${path.join(dir, 'state.db')} }
log: { level: warn }
policy:
  listen: 127.0.0.1:${policyPort}
  greylist: { mode: off }
  spf: { mode: off }
  dns_sanity: { mode: off }
http: { listen: 127.0.0.1:${httpPort}, token_file: ${path.join(dir, 'admin.token')} }
auth_policy: { enabled: true, api_key_file: ${path.join(dir, 'auth-policy.key')} }
`,
  );
  const child = startChild('postwarden', BIN, ['serve', '--config', config], {
    stdoutFile: path.join(dir, 'postwarden.log'),
  });
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.process.exitCode !== null) throw new BenchError(`postwarden exited: ${child.stderrTail()}`);
    try {
      if ((await fetch(`http://127.0.0.1:${httpPort}/healthz`)).ok) return child;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new BenchError('postwarden did not answer /healthz within 15 s');
    await new Promise((r) => setTimeout(r, 100));
  }
}

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : '-';

function printTable(results: readonly Result[]): void {
  const header = [
    'phase',
    'conns',
    'req/s',
    'p50 ms',
    'p99 ms',
    'max ms',
    'refused',
    'srv CPU µs/req',
    'srv CPU',
    'gen CPU',
  ];
  const rows = results.map((r) => [
    r.phase,
    String(r.connections),
    fmt(r.rps),
    fmt(r.p50Ms, 3),
    fmt(r.p99Ms, 3),
    fmt(r.maxMs, 3),
    `${fmt((100 * r.refused) / Math.max(1, r.requests))}%`,
    fmt(r.cpuUsPerRequest, 1),
    `${fmt(r.cpuLoad * 100)}%`,
    `${fmt(r.generatorCpuLoad * 100)}%`,
  ]);
  detailTable(header, rows);
}

function settings() {
  return {
    measureMs: numberEnv('BENCH_SECONDS', 10, 1, 3600) * 1000,
    warmupMs: numberEnv('BENCH_WARMUP_SECONDS', 2, 0, 600) * 1000,
    floodMs: numberEnv('BENCH_FLOOD_SECONDS', 5, 0, 3600) * 1000,
    counts: connectionCounts({ variable: 'BENCH_CONNECTIONS', fallback: [8, 32], max: 1000 }),
    fixedPort: numberEnv('BENCH_AUTH_PORT', 0, 0, 65_534),
  };
}

async function run(
  { dir }: PartContext,
  { measureMs, warmupMs, floodMs, counts, fixedPort }: ReturnType<typeof settings>,
): Promise<PartResult> {
  const httpPort = fixedPort || (await freePort());
  const policyPort = fixedPort ? fixedPort + 1 : await freePort();
  const server = await startPostwarden(dir, httpPort, policyPort);
  say(
    'method',
    `postwarden on SQLite, ${counts.join(' and ')} connections, ${measureMs / 1000} s each after ${warmupMs / 1000} s warm-up`,
  );
  const results: Result[] = [];
  for (const connections of counts) {
    results.push(await runCell('mixed', server, httpPort, connections, mixed, warmupMs, measureMs));
  }
  let extras: FloodExtras | undefined;
  if (floodMs > 0) {
    const before = processMemory(server.process.pid);
    const probe = probeHealth(httpPort);
    results.push(await runCell('flood', server, httpPort, 32, flood, 0, floodMs));
    const healthzMaxMs = await probe.stop();
    const after = processMemory(server.process.pid);
    extras = {
      rssBeforeMb: (before?.rss ?? NaN) / 1048576,
      rssAfterMb: (after?.rss ?? NaN) / 1048576,
      healthzMaxMs,
    };
  }
  printTable(results);
  const rows: ResultRow[] = results
    .filter((r) => r.phase === 'mixed')
    .map((r) => ({
      part: 'auth-policy',
      name: `mixed logins and guessers, SQLite, ${r.connections} conn`,
      what: 'req/s',
      unit: 'req/s',
      postwarden: r.rps,
      peerName: '-',
      target: `≥ ${fmt(TARGET_RPS)} req/s`,
      pass: r.rps >= TARGET_RPS,
      notes: `p99 ${fmt(r.p99Ms, 2)} ms; ${fmt(r.cpuUsPerRequest, 0)} µs CPU/req; no peer (absolute target)`,
    }));
  if (extras) {
    say(
      'flood',
      `RSS ${fmt(extras.rssBeforeMb, 1)} MB before, ${fmt(extras.rssAfterMb, 1)} MB after; slowest /healthz during it ${fmt(extras.healthzMaxMs, 1)} ms`,
    );
    rows.push({
      part: 'auth-policy',
      name: `flood of failure reports from new addresses, ${fmt(floodMs / 1000)} s at 32 conn`,
      what: 'RSS growth',
      unit: 'MiB',
      postwarden: extras.rssAfterMb - extras.rssBeforeMb,
      peerName: '-',
      notes: `${fmt(results.find((r) => r.phase === 'flood')?.rps ?? NaN)} req/s; slowest /healthz ${fmt(extras.healthzMaxMs, 1)} ms`,
    });
  }
  return { rows, raw: { results, flood: extras } };
}

export const authPolicyPart = benchPart({
  name: 'auth-policy',
  title: "Dovecot's auth policy over HTTP, mixed logins and a report flood (issue 7's auth-policy target)",
  settings,
  run,
});
