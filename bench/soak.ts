/**
 * `npm run soak`: one postwarden process (the built bin) under a steady mixed load for N minutes (default 10),
 * to show that nothing grows. Three paced loads run side by side: policy requests (the benchmark's mix,
 * bench/workload.ts, every answer checked against the one it must be), messages through the content filter
 * over SMTP (a plain one and one with a PDF attachment, re-injected into a recording sink on loopback; each
 * must be answered 250), and Dovecot auth-policy requests (allow then report, from a fixed pool of users and
 * addresses; each answer must be Dovecot's JSON). The rates are fixed, not the most the machine can do: a
 * trend in memory must come from the process, not from a load that changes.
 *
 * Every 5 s it reads postwarden's resident memory (/proc/PID/status VmRSS) and its JS heap in use (its own
 * /metrics: a leak of JS objects shows there, allocator growth only in RSS). Each minute it prints one row: RSS
 * and heap at the end of the minute, and per kind the requests answered and the latency p50/p95/p99 (ms). At the end:
 * the least-squares slope of RSS over the samples after the first minute (the warm-up: caches, JIT, SQLite's
 * page cache), in MiB/min, and PASS when it is under 1 MiB/min and no answer was wrong, FAIL otherwise.
 *
 * Options: `--minutes N` (1..1440, default 10; the slope needs at least 2), `--json FILE` (the rows, the
 * samples and the verdict). Env: SOAK_PORT (the first of four loopback ports: policy, filter, HTTP, sink;
 * default 22450), SOAK_POLICY_RPS (100), SOAK_FILTER_MPS (4), SOAK_AUTH_RPS (50). The temporary directory
 * is made under /tmp (prefix pw-ab-soak-) and removed at the end.
 *
 * Exit status: 0 PASS; 1 FAIL, or the run broke (postwarden did not start or exited); 2 bad options;
 * 130/143 on SIGINT/SIGTERM. postwarden is stopped in every case.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { PolicyClient } from '../src/policy/client.js';
import { withAttachment } from '../test/harness/mail.js';
import { Postwarden } from '../test/harness/postwarden.js';
import { sendMessage, startRecordingSmtp, type RecordingSmtp } from '../test/harness/smtp.js';
import { processMemory } from './children.js';
import { BenchError } from './load.js';
import { benchArgs, numberEnv, onStopSignal, reportFailure, UsageError } from './options.js';
import { requestMix, writeFixture } from './workload.js';

const HOST = '127.0.0.1';
const SAMPLE_MS = 5000;
const WARMUP_MINUTES = 1;
const SLOPE_LIMIT = 1; // MiB per minute
const AUTH_KEY = 'soak-auth-policy-key-0123456789abcdef';
const MIB = 1048576;

type Kind = 'policy' | 'filter' | 'auth';
const KINDS: readonly Kind[] = ['policy', 'filter', 'auth'];

/** What one kind did in one minute. */
interface Tally {
  latencies: number[];
  wrong: number;
  firstWrong?: string;
}

interface Memory {
  readonly rssMiB: number;
  readonly heapMiB: number;
  readonly heapTotalMiB: number;
  readonly externalMiB: number;
}

interface Row extends Memory {
  readonly minute: number;
  readonly kinds: Record<Kind, { requests: number; wrong: number; p50: number; p95: number; p99: number }>;
}

const freshTallies = (): Record<Kind, Tally> => ({
  policy: { latencies: [], wrong: 0 },
  filter: { latencies: [], wrong: 0 },
  auth: { latencies: [], wrong: 0 },
});

const percentile = (sorted: readonly number[], q: number) =>
  sorted.length === 0 ? NaN : (sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? NaN);

/** Least-squares slope of y over x. */
function slope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

/** Runs `once` every `intervalMs` (from its start) until `running()` is false; a call that overruns delays the next. */
async function paced(intervalMs: number, running: () => boolean, once: () => Promise<void>): Promise<void> {
  let next = performance.now();
  while (running()) {
    await once();
    next += intervalMs;
    const wait = next - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    else next = performance.now(); // behind: do not burst to catch up
  }
}

function config(dir: string, ports: { policy: number; filter: number; http: number; sink: number }): string {
  const fixture = writeFixture(dir, 'soak-base', ports, 'warn');
  const base = parse(readFileSync(fixture.configPath, 'utf8')) as Record<string, unknown>;
  writeFileSync(path.join(dir, 'auth-policy.key'), `${AUTH_KEY}\n`, { mode: 0o600 });
  return stringify({
    ...base,
    store: { driver: 'sqlite', path: path.join(dir, 'state.db') },
    filter: {
      enabled: true,
      listen: `${HOST}:${ports.filter}`,
      reinject: `${HOST}:${ports.sink}`,
      spool_dir: path.join(dir, 'spool'),
      scanners: ['loop', 'sanity', 'banned', 'rules'],
      quarantine: { dir: path.join(dir, 'quarantine') },
    },
    http: {
      listen: `${HOST}:${ports.http}`,
      token_file: path.join(dir, 'admin.token'),
    },
    auth_policy: { enabled: true, api_key_file: path.join(dir, 'auth-policy.key') },
  });
}

/** The auth-policy request of step `n`: a pool of 2 000 users at 500 addresses, 1 in 5 logins failing. */
function authRequest(n: number): { command: 'allow' | 'report'; body: string } {
  const login = Math.floor(n / 2);
  const user = `user${(login * 7919) % 2000}@example.com`;
  const remote = `198.18.${(login >> 8) % 2}.${login % 250}`;
  const fields = { login: user, pwhash: (login % 64).toString(16), remote, protocol: 'imap' };
  if (n % 2 === 0) return { command: 'allow', body: JSON.stringify(fields) };
  return {
    command: 'report',
    body: JSON.stringify({ ...fields, success: login % 5 !== 0, policy_reject: false }),
  };
}

async function main(): Promise<void> {
  const values = benchArgs({
    minutes: { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  } as const);
  if (values.help) {
    process.stdout.write('usage: npm run soak [-- --minutes N] [--json FILE]\n');
    return;
  }
  const minutes = values.minutes === undefined ? 10 : Number(values.minutes);
  if (!Number.isInteger(minutes) || minutes < 1 || minutes > 1440) {
    throw new UsageError(`--minutes ${values.minutes}: expected a whole number from 1 to 1440`);
  }
  const first = numberEnv('SOAK_PORT', 22450, 1024, 65532);
  const ports = { policy: first, filter: first + 1, http: first + 2, sink: first + 3 };
  const rates: Record<Kind, number> = {
    policy: numberEnv('SOAK_POLICY_RPS', 100, 1, 10_000),
    filter: numberEnv('SOAK_FILTER_MPS', 4, 1, 1000),
    auth: numberEnv('SOAK_AUTH_RPS', 50, 1, 10_000),
  };
  /** Loops per kind: each one paced at its share of the rate. */
  const loops: Record<Kind, number> = { policy: 4, filter: 4, auth: 4 };

  const dir = mkdtempSync('/tmp/pw-ab-soak-');
  const pw = new Postwarden('soak', dir, `${HOST}:${ports.http}`, `${HOST}:${ports.policy}`);
  let sink: RecordingSmtp | undefined;
  const cleanup = async () => {
    await pw.stop();
    await sink?.close();
    rmSync(dir, { recursive: true, force: true });
  };
  onStopSignal(cleanup);
  try {
    sink = await startRecordingSmtp(ports.sink);
    await pw.start(config(dir, ports), 30_000);
    const pid = pw.pid;
    const rssMiB = () => (processMemory(pid)?.rss ?? NaN) / MIB;
    /**
     * RSS, and from postwarden's own /metrics the JS heap in use, the heap V8 holds (used or not) and the memory
     * of Buffers outside it: a leak of JS objects shows in the first, V8's sizing in the second, Buffers in the
     * third, and the C heap (SQLite, malloc) only in RSS.
     */
    const memory = async (): Promise<Memory> => {
      const text = await pw.metrics().catch(() => '');
      const metric = (name: string) =>
        Number(new RegExp(`^postwarden_${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN) / MIB;
      return {
        rssMiB: rssMiB(),
        heapMiB: metric('nodejs_heap_size_used_bytes'),
        heapTotalMiB: metric('nodejs_heap_size_total_bytes'),
        externalMiB: metric('nodejs_external_memory_bytes'),
      };
    };

    let tallies = freshTallies();
    const count = (kind: Kind, started: number, ok: boolean, what: () => string) => {
      const t = tallies[kind];
      t.latencies.push(performance.now() - started);
      if (!ok) {
        t.wrong++;
        t.firstWrong ??= what();
      }
    };

    const started = performance.now();
    const end = started + minutes * 60_000;
    const running = () => performance.now() < end && pw.running;

    const mix = requestMix();
    const policyLoops = Array.from({ length: loops.policy }, async (_, c) => {
      let client = await PolicyClient.connect(pw.policy);
      let i = c * 25;
      await paced((1000 * loops.policy) / rates.policy, running, async () => {
        const request = mix[i++ % mix.length];
        if (!request) return;
        const t0 = performance.now();
        const action = await client.query(request.attributes).catch(async (e: Error) => {
          // A reply that comes after the timeout would be read as the next one's: start a new connection.
          client.close();
          client = await PolicyClient.connect(pw.policy);
          return `(error) ${e.message}`;
        });
        count('policy', t0, request.expect.test(action), () => `${request.kind}: ${action}`);
      });
      client.close();
    });

    const pdf = randomBytes(8192);
    const filterLoops = Array.from({ length: loops.filter }, async (_, c) => {
      let i = 0;
      await paced((1000 * loops.filter) / rates.filter, running, async () => {
        const tag = `soak-${c}-${i++}`;
        const message =
          i % 2 === 0
            ? withAttachment(tag, 'report.pdf', pdf, 'application/pdf')
            : `From: sender@example.net\r\nTo: alice@example.com\r\nSubject: soak ${tag}\r\nMessage-ID: <${tag}@example.net>\r\n\r\n${'Steady mail.\r\n'.repeat(40)}`;
        const t0 = performance.now();
        const result = await sendMessage(HOST, ports.filter, {
          from: `${tag}@example.net`,
          to: ['alice@example.com'],
          message,
        }).catch((e: Error) => ({ reply: { code: 0, text: e.message } }));
        count('filter', t0, result.reply.code === 250, () => result.reply.text);
      });
    });

    const authLoops = Array.from({ length: loops.auth }, async (_, c) => {
      let n = c * 1_000_003;
      await paced((1000 * loops.auth) / rates.auth, running, async () => {
        const { command, body } = authRequest(n++);
        const t0 = performance.now();
        let text = '';
        let ok = false;
        try {
          const response = await fetch(
            `http://${HOST}:${ports.http}/dovecot/auth-policy?command=${command}`,
            {
              method: 'POST',
              headers: { 'content-type': 'application/json', 'x-api-key': AUTH_KEY },
              body,
            },
          );
          text = await response.text();
          const answer = JSON.parse(text) as { status?: unknown; msg?: unknown };
          ok = response.status === 200 && Number.isInteger(answer.status) && typeof answer.msg === 'string';
        } catch (error) {
          text = `(error) ${(error as Error).message} ${text}`;
        }
        count('auth', t0, ok, () => `${command}: ${text.slice(0, 200)}`);
      });
    });

    const samples: ({ minutes: number } & Memory)[] = [{ minutes: 0, ...(await memory()) }];
    const rows: Row[] = [];
    const firstWrong: string[] = [];
    process.stdout.write(
      `soak: ${minutes} min, policy ${rates.policy}/s, filter ${rates.filter} msg/s, auth-policy ${rates.auth}/s; postwarden pid ${pid}, RSS ${samples[0]?.rssMiB.toFixed(1)} MiB at start\n\n`,
    );
    const header = `${'min'.padStart(3)} ${'RSS MiB'.padStart(8)} ${'heap MiB'.padStart(8)} ${'V8 MiB'.padStart(7)} ${'ext MiB'.padStart(7)}  ${KINDS.map((k) => `${k.padStart(6)} n  p50/p95/p99 ms`.padStart(32)).join(' ')}`;
    process.stdout.write(`${header}\n`);
    const sampler = (async () => {
      let minute = 1;
      while (running()) {
        await new Promise((r) => setTimeout(r, SAMPLE_MS));
        const now = (performance.now() - started) / 60_000;
        const sample = { minutes: now, ...(await memory()) };
        samples.push(sample);
        // The sink keeps what it received; only the count matters here.
        sink?.received.splice(0);
        if (now >= minute || !running()) {
          const done = tallies;
          tallies = freshTallies();
          const kinds = Object.fromEntries(
            KINDS.map((k) => {
              const sorted = done[k].latencies.sort((a, b) => a - b);
              if (done[k].firstWrong) firstWrong.push(`minute ${minute} ${k}: ${done[k].firstWrong}`);
              return [
                k,
                {
                  requests: sorted.length,
                  wrong: done[k].wrong,
                  p50: percentile(sorted, 0.5),
                  p95: percentile(sorted, 0.95),
                  p99: percentile(sorted, 0.99),
                },
              ];
            }),
          ) as Row['kinds'];
          const row: Row = { minute, ...sample, kinds };
          rows.push(row);
          process.stdout.write(
            `${String(minute).padStart(3)} ${row.rssMiB.toFixed(1).padStart(8)} ${row.heapMiB.toFixed(1).padStart(8)} ${row.heapTotalMiB.toFixed(1).padStart(7)} ${row.externalMiB.toFixed(1).padStart(7)}  ${KINDS.map(
              (k) => {
                const r = kinds[k];
                return `${String(r.requests).padStart(8)}${r.wrong ? ` (${r.wrong} wrong)` : ''}  ${r.p50.toFixed(1)}/${r.p95.toFixed(1)}/${r.p99.toFixed(1)}`.padStart(
                  32,
                );
              },
            ).join(' ')}\n`,
          );
          minute++;
        }
      }
    })();
    await Promise.all([...policyLoops, ...filterLoops, ...authLoops, sampler]);
    if (!pw.running) throw new BenchError(`postwarden exited during the soak: ${pw.log().slice(-2000)}`);

    const after = samples.filter((s) => s.minutes >= WARMUP_MINUTES);
    const mibPerMinute = slope(after.map((s) => ({ x: s.minutes, y: s.rssMiB })));
    const perMinute = (key: keyof Memory) => slope(after.map((s) => ({ x: s.minutes, y: s[key] })));
    const heapPerMinute = perMinute('heapMiB');
    const wrong = rows.reduce((s, r) => s + KINDS.reduce((t, k) => t + r.kinds[k].wrong, 0), 0);
    const pass = Number.isFinite(mibPerMinute) && mibPerMinute < SLOPE_LIMIT && wrong === 0;
    process.stdout.write(
      `\nRSS slope after the ${WARMUP_MINUTES}-minute warm-up (least squares over ${after.length} samples, minutes ${WARMUP_MINUTES + 1}..${minutes}): ${mibPerMinute.toFixed(3)} MiB/min (limit < ${SLOPE_LIMIT}); information: JS heap in use ${heapPerMinute.toFixed(3)}, V8 heap ${perMinute('heapTotalMiB').toFixed(3)}, external ${perMinute('externalMiB').toFixed(3)} MiB/min; wrong answers: ${wrong}\n`,
    );
    for (const line of firstWrong) process.stdout.write(`  ${line}\n`);
    process.stdout.write(`${pass ? 'PASS' : 'FAIL'}\n`);
    if (values.json) {
      writeFileSync(
        values.json,
        `${JSON.stringify({ minutes, rates, rows, samples, mibPerMinute, heapPerMinute, wrong, pass }, null, 2)}\n`,
      );
    }
    if (!pass) process.exitCode = 1;
  } finally {
    await cleanup();
  }
}

main().catch(reportFailure);
