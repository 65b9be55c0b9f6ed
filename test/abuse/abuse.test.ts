/**
 * Abuse and load against one real postwarden (the built bin, `serve`) on loopback ports 22400–22403 (policy,
 * filter, re-injection sink, HTTP): thousands of policy connections that never speak, slow writers dribbling a
 * request a byte at a time, half requests that never end, oversize requests; SMTP clients on the filter port
 * that open and never speak or stall in DATA; floods of /metrics, /healthz, admin API calls with a wrong token,
 * Dovecot auth-policy calls with a wrong and a right key; idle HTTP connections. Meanwhile a well-behaved policy
 * client and a well-behaved filter client keep working, and every answer they get must be the right one (their
 * latency is printed, not asserted: speed belongs in bench/).
 *
 * Measured from /proc/PID of the postwarden process: resident memory (VmRSS) before, during (sampled) and
 * after, bounded below; open file descriptors at the peak (the idle connections really were held) and after
 * the abusers went — the ones postwarden times out (request_timeout_s, filter idle_timeout_s) and the ones that
 * disconnect — back near the count before.
 *
 * The bounded form runs in the test command. The bigger one is `npm run test:abuse` (env ABUSE_IDLE, default
 * 2000 here, and ABUSE_SECONDS, default 10). Each connection costs one descriptor here and one in postwarden:
 * Node raises its own soft RLIMIT_NOFILE to the hard limit at start, and the test checks that limit first.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { processMemory } from '../../bench/children.js';
import { PolicyClient } from '../../src/policy/client.js';
import { encodeRequest } from '../../src/policy/codec.js';
import { Postwarden, sleep } from '../harness/postwarden.js';
import { RawSmtpClient, type RecordingSmtp, sendMessage, startRecordingSmtp } from '../harness/smtp.js';

const HOST = '127.0.0.1';
const PORTS = { policy: 22400, filter: 22401, sink: 22402, http: 22403 } as const;
const IDLE = Number(process.env['ABUSE_IDLE'] ?? 2000);
const SECONDS = Number(process.env['ABUSE_SECONDS'] ?? 10);
const SLOW = 100;
const HALF = 100;
const OVERSIZE_PER_SECOND = 10;
const FILTER_SILENT = 6;
const FILTER_STALLED = 6;
const HTTP_IDLE = 200;
const HTTP_FLOODERS = 16;
/** filter.max_connections: the stalled ones plus the good client fit, as Postfix's maxproc would. */
const FILTER_MAX = 20;
const HTTP_MAX = 1000;
const TOKEN = 'abuse-admin-token-0123456789abcdef0123';
const AUTH_KEY = 'abuse-auth-policy-key-0123456789abcdef';
const MIB = 1048576;
/**
 * Growth of RSS over the baseline allowed during and after the abuse. Measured on the 2-vCPU development
 * machine: +13 MiB at the peak with 2 000 idle connections and the floods, +45 MiB with 8 000 (+78 MiB just after
 * they closed, before V8 gave pages back): about 6 KiB per held connection (a net.Socket, its decoder and
 * closures; kernel socket buffers are not in RSS), plus what an oversize request holds until it is dropped (at
 * most policy.server.max_request_bytes, 64 KiB). 64 MiB plus 32 KiB a connection is five times the measured cost
 * per connection and still catches a leak per connection or per request.
 */
const RSS_BOUND_MIB = 64 + (IDLE * 32) / 1024;
/** Descriptors postwarden may keep over its baseline once the abusers are gone (a SQLite journal, a timer). */
const FD_SLACK = 10;

const work = mkdtempSync('/tmp/pw-ab-');
const pw = new Postwarden('abuse', work, `${HOST}:${PORTS.http}`, `${HOST}:${PORTS.policy}`);
let sink: RecordingSmtp | undefined;

function config(): string {
  writeFileSync(path.join(work, 'admin.token'), `${TOKEN}\n`, { mode: 0o600 });
  writeFileSync(path.join(work, 'auth-policy.key'), `${AUTH_KEY}\n`, { mode: 0o600 });
  return `hostname: mx.example.test
local_domains: [example.test]
local_networks: [127.0.0.1/32]
store: { driver: sqlite, path: ${path.join(work, 'state.db')} }
log: { level: warn }
policy:
  listen: ${HOST}:${PORTS.policy}
  checks: [relay]
  server: { max_connections: ${IDLE + 1000}, idle_timeout_s: 600, request_timeout_s: 2 }
filter:
  enabled: true
  listen: ${HOST}:${PORTS.filter}
  reinject: ${HOST}:${PORTS.sink}
  spool_dir: ${path.join(work, 'spool')}
  max_connections: ${FILTER_MAX}
  idle_timeout_s: 3
  scanners: [loop, sanity, banned]
  quarantine: { dir: ${path.join(work, 'quarantine')} }
http:
  listen: ${HOST}:${PORTS.http}
  token_file: ${path.join(work, 'admin.token')}
  max_connections: ${HTTP_MAX}
auth_policy: { enabled: true, api_key_file: ${path.join(work, 'auth-policy.key')} }
`;
}

const rssMiB = () => (processMemory(pw.pid)?.rss ?? NaN) / MIB;
const openFds = () => readdirSync(`/proc/${pw.pid}/fd`).length;

/** The soft limit on open files of this process (Node has raised it to the hard limit). */
function fdLimit(): number {
  const line = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return line?.[1] === 'unlimited' ? Infinity : Number(line?.[1] ?? 1024);
}

/** A raw TCP connection, resolved once connected; `closed` resolves when either side ended it. */
interface Raw {
  readonly socket: net.Socket;
  readonly closed: Promise<void>;
}

function open(port: number): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port });
    const raw: Raw = { socket, closed: new Promise((done) => socket.once('close', () => done())) };
    socket.on('error', () => undefined); // a reset by postwarden shows as the close
    socket.resume(); // read and drop whatever comes (a greeting, an error reply)
    socket.once('connect', () => resolve(raw));
    socket.once('error', reject);
  });
}

/** Opens `count` connections, `batch` at a time (the listen backlog is finite). */
async function openMany(port: number, count: number, batch = 250): Promise<Raw[]> {
  const all: Raw[] = [];
  for (let i = 0; i < count; i += batch) {
    all.push(...(await Promise.all(Array.from({ length: Math.min(batch, count - i) }, () => open(port)))));
  }
  return all;
}

interface HttpAnswer {
  status: number;
  text: string;
}

function call(
  agent: http.Agent,
  method: string,
  url: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      { agent, host: HOST, port: PORTS.http, method, path: url, headers },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, text }));
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

const authBody = (n: number) =>
  JSON.stringify({
    login: `u${n % 500}@example.test`,
    pwhash: 'ab',
    remote: `198.18.0.${n % 250}`,
    protocol: 'imap',
  });

/** The flood's requests, each with the status it must get. */
const floodRequests: ((agent: http.Agent, n: number) => Promise<[HttpAnswer, number]>)[] = [
  async (a) => [await call(a, 'GET', '/metrics'), 200],
  async (a) => [await call(a, 'GET', '/healthz'), 200],
  async (a) => [await call(a, 'GET', '/api/v1/status', { authorization: 'Bearer wrong-token' }), 401],
  async (a) => [await call(a, 'GET', '/api/v1/status'), 401],
  async (a, n) => [
    await call(
      a,
      'POST',
      '/dovecot/auth-policy?command=allow',
      { 'content-type': 'application/json', 'x-api-key': 'wrong-key' },
      authBody(n),
    ),
    401,
  ],
  async (a, n) => [
    await call(
      a,
      'POST',
      '/dovecot/auth-policy?command=allow',
      { 'content-type': 'application/json', 'x-api-key': AUTH_KEY },
      authBody(n),
    ),
    200,
  ],
];

const inbound = {
  request: 'smtpd_access_policy',
  protocol_state: 'RCPT',
  client_address: '203.0.113.5',
  client_name: 'mail.remote.test',
  helo_name: 'mail.remote.test',
  sender: 'someone@remote.test',
  recipient: 'alice@example.test',
};
const relayAttempt = { ...inbound, recipient: 'bob@elsewhere.test' };

const percentiles = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => (s[Math.min(s.length - 1, Math.floor(s.length * q))] ?? NaN).toFixed(1);
  return `n=${s.length} p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${(s[s.length - 1] ?? NaN).toFixed(1)} ms`;
};

describe('abuse and load against one postwarden', { timeout: 300_000 }, () => {
  before(async () => {
    sink = await startRecordingSmtp(PORTS.sink);
    await pw.start(config(), 20_000);
  });

  after(async () => {
    await pw.stop();
    await sink?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it(`under ${IDLE} idle policy connections, slow and half requests, oversize ones, stalled SMTP clients and HTTP floods: good clients are answered right, RSS stays bounded, descriptors are released`, async () => {
    const needed = 2 * (IDLE + SLOW + HALF + HTTP_IDLE + 200);
    assert.ok(
      fdLimit() >= needed / 2 + 100,
      `this process may open ${fdLimit()} files; the test needs ${needed / 2 + 100}`,
    );

    // Warm up what the good clients and the floods touch, so the baseline is not a cold process.
    const agent = new http.Agent({ keepAlive: true, maxSockets: HTTP_FLOODERS });
    const warm = await PolicyClient.connect(pw.policy);
    for (let i = 0; i < 200; i++) await warm.query(i % 2 ? inbound : relayAttempt);
    warm.close();
    for (let i = 0; i < 60; i++) await floodRequests[i % floodRequests.length]!(agent, i);
    const message = (tag: string) =>
      `From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: ${tag}\r\nMessage-ID: <${tag}@remote.test>\r\n\r\nHello.\r\n`;
    for (let i = 0; i < 5; i++) {
      const r = await sendMessage(HOST, PORTS.filter, {
        from: `warm${i}@remote.test`,
        to: ['alice@example.test'],
        message: message(`warm${i}`),
      });
      assert.equal(r.reply.code, 250, r.reply.text);
    }
    agent.destroy();
    await sleep(1500);
    const baseline = { rss: rssMiB(), fds: openFds() };

    let running = true;
    const peak = { rss: baseline.rss, fds: baseline.fds };
    const sampler = (async () => {
      while (running) {
        peak.rss = Math.max(peak.rss, rssMiB());
        peak.fds = Math.max(peak.fds, openFds());
        await sleep(1000); // reading /proc/PID/fd with thousands of entries is not free
      }
    })();

    // The well-behaved clients: one policy connection, one message at a time through the filter.
    const good = {
      policy: [] as number[],
      policyWrong: [] as string[],
      filter: [] as number[],
      filterWrong: [] as string[],
    };
    const goodPolicy = (async () => {
      const client = await PolicyClient.connect(pw.policy);
      for (let i = 0; running; i++) {
        const relay = i % 4 === 3;
        const t0 = performance.now();
        const action = await client.query(relay ? relayAttempt : inbound, 30_000);
        good.policy.push(performance.now() - t0);
        if (relay ? !/^(REJECT|5\d\d)\b/.test(action) : action !== 'DUNNO') good.policyWrong.push(action);
        await sleep(20);
      }
      client.close();
    })();
    const goodFilter = (async () => {
      for (let i = 0; running; i++) {
        const tag = `good${i}`;
        const r = await sendMessage(HOST, PORTS.filter, {
          from: `${tag}@remote.test`,
          to: ['alice@example.test'],
          message: message(tag),
        });
        good.filter.push(r.ms);
        const got = sink?.received.find((m) => m.mailFrom.address === `${tag}@remote.test`);
        if (r.reply.code !== 250 || !got?.raw.toString('latin1').includes('X-Postwarden-Status:')) {
          good.filterWrong.push(
            `${tag}: ${r.reply.text}, re-injected: ${got ? 'without status header' : 'no'}`,
          );
        }
        await sleep(200);
      }
    })();

    // The abusers.
    const idle = await openMany(PORTS.policy, IDLE);
    const slow = await openMany(PORTS.policy, SLOW);
    const request = Buffer.from(`request=smtpd_access_policy\nsender=${'s'.repeat(4000)}\n\n`);
    let dribbled = 0;
    const dribble = setInterval(() => {
      for (const s of slow) if (!s.socket.destroyed) s.socket.write(request.subarray(dribbled, dribbled + 1));
      dribbled++;
    }, 100);
    const half = await openMany(PORTS.policy, HALF);
    for (const h of half) h.socket.write('request=smtpd_access_policy\nprotocol_state=RCPT\nsender=a@');
    const oversize: Raw[] = [];
    // 100 KiB in lines of 1 000 bytes: over max_request_bytes (64 KiB), under the line and attribute limits.
    const filler = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`x${i}`, 'y'.repeat(1000)]));
    const big = Buffer.from(encodeRequest({ ...inbound, ...filler }));
    const oversizer = setInterval(() => {
      void openMany(PORTS.policy, OVERSIZE_PER_SECOND).then((list) => {
        for (const o of list) {
          o.socket.write(big);
          oversize.push(o);
        }
      });
    }, 1000);
    const silent = await openMany(PORTS.filter, FILTER_SILENT);
    const stalled = await Promise.all(
      Array.from({ length: FILTER_STALLED }, async (_, i) => {
        const c = await RawSmtpClient.connect(HOST, PORTS.filter);
        await c.reply();
        await c.command('EHLO stall.remote.test');
        await c.command(`MAIL FROM:<stall${i}@remote.test>`);
        await c.command('RCPT TO:<alice@example.test>');
        assert.equal((await c.command('DATA')).code, 354);
        await c.write('Subject: never ends\r\n\r\nhalf a mess');
        return c;
      }),
    );
    const httpIdle = await openMany(PORTS.http, HTTP_IDLE);
    const floodAgent = new http.Agent({ keepAlive: true, maxSockets: HTTP_FLOODERS });
    const flood = { count: 0, wrong: [] as string[] };
    const flooders = Array.from({ length: HTTP_FLOODERS }, async (_, f) => {
      for (let n = f; running; n += HTTP_FLOODERS) {
        const [answer, want] = await floodRequests[n % floodRequests.length]!(floodAgent, n);
        flood.count++;
        if (answer.status !== want)
          flood.wrong.push(`${answer.status} (want ${want}): ${answer.text.slice(0, 100)}`);
      }
    });

    await sleep(SECONDS * 1000);
    const during = {
      rss: rssMiB(),
      fds: openFds(),
      connections: (await pw.metrics()).match(/^postwarden_policy_connections (\d+)/m)?.[1],
    };
    running = false;
    clearInterval(dribble);
    clearInterval(oversizer);
    await Promise.all([goodPolicy, goodFilter, ...flooders, sampler]);
    floodAgent.destroy();

    // What postwarden itself closed: slow writers and half requests at request_timeout_s, oversize requests at
    // once, SMTP clients silent or stalled in DATA at filter.idle_timeout_s.
    await Promise.race([
      Promise.all(
        [...slow, ...half, ...oversize, ...silent].map((r) => r.closed).concat(stalled.map((c) => c.closed)),
      ),
      sleep(15_000),
    ]);
    const notClosed = (list: Raw[]) => list.filter((r) => !r.socket.destroyed).length;
    assert.equal(notClosed(slow), 0, 'slow writers still open after request_timeout_s');
    assert.ok(dribbled < request.length, 'a slow writer finished its request: it was never cut off');
    assert.equal(notClosed(half), 0, 'half requests still open after request_timeout_s');
    assert.ok(oversize.length > 0 && notClosed(oversize) === 0, 'oversize requests not all dropped');
    assert.equal(notClosed(silent), 0, 'silent SMTP clients still open after filter.idle_timeout_s');
    assert.equal(
      stalled.filter((c) => !c.socket.destroyed).length,
      0,
      'SMTP clients stalled in DATA still open',
    );
    // The idle ones were held all along (idle_timeout_s is 600 here); now they, and the idle HTTP ones, go.
    assert.equal(notClosed(idle), IDLE, 'idle policy connections were dropped');
    for (const r of [...idle, ...httpIdle]) r.socket.destroy();

    let fdsAfter = openFds();
    for (let i = 0; i < 100 && fdsAfter > baseline.fds + FD_SLACK; i++) {
      await sleep(100);
      fdsAfter = openFds();
    }
    await sleep(1000);
    const rssAfter = rssMiB();
    const errors = await pw.metrics();

    process.stdout.write(
      `# abuse: ${IDLE} idle + ${SLOW} slow + ${HALF} half policy connections, ${oversize.length} oversize requests, ` +
        `${FILTER_SILENT} silent + ${FILTER_STALLED} stalled SMTP clients, ${HTTP_IDLE} idle HTTP connections, ${flood.count} flood requests in ${SECONDS} s\n` +
        `# RSS MiB: baseline ${baseline.rss.toFixed(1)}, at the end of the abuse ${during.rss.toFixed(1)}, peak ${peak.rss.toFixed(1)}, after ${rssAfter.toFixed(1)} (bound: baseline + ${RSS_BOUND_MIB.toFixed(0)})\n` +
        `# fds: baseline ${baseline.fds}, during ${during.fds} (policy connections ${during.connections}), peak ${peak.fds}, after ${fdsAfter}\n` +
        `# good policy client: ${percentiles(good.policy)}\n# good filter client: ${percentiles(good.filter)}\n`,
    );

    assert.deepEqual(good.policyWrong, [], 'the good policy client got wrong answers');
    assert.deepEqual(good.filterWrong, [], 'the good filter client got wrong answers');
    assert.ok(good.policy.length > 0 && good.filter.length > 0, 'the good clients got no answers at all');
    assert.deepEqual(flood.wrong.slice(0, 5), [], 'flood requests got the wrong status');
    assert.ok(
      during.fds >= baseline.fds + IDLE,
      `the idle connections were not all held (${during.fds} fds)`,
    );
    assert.ok(
      peak.rss - baseline.rss <= RSS_BOUND_MIB,
      `RSS grew ${(peak.rss - baseline.rss).toFixed(1)} MiB`,
    );
    assert.ok(
      fdsAfter <= baseline.fds + FD_SLACK,
      `descriptors not released: ${fdsAfter} vs ${baseline.fds}`,
    );
    for (const code of ['PW-P003', 'PW-P010']) {
      assert.match(
        errors,
        new RegExp(`postwarden_errors_total\\{code="${code}"\\} [1-9]`),
        `no ${code} counted`,
      );
    }
  });

  it('beyond http.max_connections a connection is closed at once (PW-H030); the face answers again once they go', async () => {
    const held = await openMany(PORTS.http, HTTP_MAX);
    const extra = await openMany(PORTS.http, 20);
    await Promise.race([Promise.all(extra.map((r) => r.closed)), sleep(5000)]);
    assert.equal(extra.filter((r) => !r.socket.destroyed).length, 0, 'connections over the limit were kept');
    for (const r of held) r.socket.destroy();
    let answered = false;
    for (let i = 0; i < 50 && !answered; i++) {
      answered = await fetch(`http://${HOST}:${PORTS.http}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
      if (!answered) await sleep(100);
    }
    assert.ok(answered, '/healthz did not answer after the connections went');
    assert.match(await pw.metrics(), /postwarden_errors_total\{code="PW-H030"\} [1-9]/);
  });
});
