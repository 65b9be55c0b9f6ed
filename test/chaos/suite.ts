/**
 * The fault-injection run (issue 9, item 1): real Postfix + Dovecot + smtp-sink (test/harness), clamd with the
 * EICAR signature, Redis (postwarden's store), dnsmasq behind a relay that can turn slow or silent, and the built
 * postwarden (policy and filter faces in one `serve`). A sender pushes a known set of messages into Postfix
 * while a seeded schedule injects faults; then the faults stop, the stack is checked healthy, Postfix's queue
 * is flushed until empty (bounded), and every message is looked for: in the Maildirs and the sink, in
 * postwarden's quarantine, in Postfix's queue. See docs/reliability.md#fault-injection.
 *
 * Everything lives under /tmp/pw-ch* and on ports 22300-22399. The spool is a small tmpfs (mounted here: root
 * only) so that it can be filled up; without root that fault is left out and said so.
 *
 * Failure: a fault that cannot be injected or undone, a stack that does not come up, or a postwarden that does
 * not start makes runChaos reject or report the fault's error; what happened to the mail is in the report.
 */
import { execFile } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type ClamdServer, startClamd } from '../harness/clamd.js';
import { type DnsServer, startDns } from '../harness/dns.js';
import { type Harness, startHarness } from '../harness/harness.js';
import { Postwarden, sleep } from '../harness/postwarden.js';
import { type RedisServer, startRedis } from '../harness/redis.js';
import { startDnsRelay, type DnsRelay } from './dns-proxy.js';
import { type FaultAction, type FaultKind, type FaultRecord, planFaults, runFaults } from './faults.js';
import {
  bodyLine,
  chaosIdOf,
  chaosMessages,
  scanned,
  seededRandom,
  sendAll,
  type SendRecord,
} from './messages.js';
import { countOutcomes, type Copy, type ChaosCount } from './count.js';

const run = promisify(execFile);

export interface ChaosOptions {
  readonly seed: number;
  readonly messages: number;
  readonly faults: number;
  /** Over how long the first attempts of the messages are spread; the faults fall in the same window. */
  readonly windowMs: number;
  /** Shortest and longest fault. */
  readonly faultMs: readonly [number, number];
  readonly concurrency: number;
  /** One fault at a time (each seen alone), or overlapping where they act on different parts of the stack. */
  readonly serial: boolean;
  /** Share of messages with the EICAR string. */
  readonly virusRate: number;
  /** After the faults: how long the sender keeps retrying, and how long the queue may take to drain. */
  readonly settleMs: number;
  readonly log: (line: string) => void;
}

export const QUICK: Omit<ChaosOptions, 'log'> = {
  seed: 20261123,
  messages: 150,
  faults: 10,
  windowMs: 30_000,
  faultMs: [1500, 3000],
  concurrency: 4,
  serial: true,
  virusRate: 0.06,
  settleMs: 90_000,
};

export const FULL: Omit<ChaosOptions, 'log'> = {
  seed: 20261123,
  messages: 1000,
  faults: 30,
  windowMs: 200_000,
  faultMs: [2000, 6000],
  concurrency: 6,
  serial: false,
  virusRate: 0.05,
  settleMs: 180_000,
};

export interface ChaosReport {
  readonly options: Omit<ChaosOptions, 'log'>;
  readonly faults: readonly FaultRecord[];
  /** Kinds left out of the plan: `spool-full` when the spool could not be a tmpfs (not root). */
  readonly skipped: readonly FaultKind[];
  readonly count: ChaosCount;
  /** Problems of the run beyond the count: crashes, 5xx, bounces, faults that could not be injected. */
  readonly problems: readonly string[];
  /** What the faults made postwarden and Postfix do (deferrals by cause). */
  readonly effects: Readonly<Record<string, number>>;
  readonly seconds: number;
  /** The machine's load average (1 min) at the start and at the end: the run shares the machine. */
  readonly load: readonly [number, number];
}

const PORTS = {
  smtp: 22325,
  sink: 22326,
  lmtp: 22324,
  imap: 22343,
  dovecotAuth: 22345,
  policy: 22360,
  filter: 22361,
  reinject: 22362,
  http: 22363,
  redis: 22379,
  dnsmasq: 22353,
  dnsRelay: 22354,
  clamd: 22310,
};
const HARNESS_DIR = '/tmp/pw-ch';
const SPOOL_BYTES = 8 * 1024 * 1024;

function pwConfig(work: string, clamdSocket: string): string {
  return `hostname: mx.example.test
local_domains: [example.test]
local_networks: [127.0.0.1/32]
dns:
  servers: ['127.0.0.1:${PORTS.dnsRelay}']
  timeout_ms: 1000
  # Every lookup goes to the (faulty) server: with answers cached, DNS faults would change nothing.
  cache: { max_entries: 0 }
store:
  driver: redis
  url: redis://127.0.0.1:${PORTS.redis}/0
policy:
  listen: 127.0.0.1:${PORTS.policy}
  dnsbl: { lists: [{ zone: dnsbl.test, weight: 10, ipv6: false }] }
  # Greylisting stays on the request path (every outside RCPT reads and writes Redis, SPF pass or not) but costs
  # only one retry per new triplet, and again after Redis lost its data.
  greylist: { delay_s: 0, bypass_symbols: [] }
filter:
  enabled: true
  listen: 127.0.0.1:${PORTS.filter}
  reinject: 127.0.0.1:${PORTS.reinject}
  spool_dir: ${path.join(work, 'spool')}
  antivirus: { socket: ${clamdSocket}, timeout_ms: 5000 }
  quarantine: { dir: ${path.join(work, 'quarantine')} }
http:
  listen: 127.0.0.1:${PORTS.http}
`;
}

/** The zone dnsmasq serves: the inbound senders' domain with MX, A and SPF, the test point of the block list. */
const ZONE = {
  a: {
    'example.net': ['192.0.2.1'],
    'mail.example.net': ['192.0.2.1'],
    'mx.example.test': ['127.0.0.1'],
    'example.test': ['127.0.0.1'],
    '2.0.0.127.dnsbl.test': ['127.0.0.2'],
  },
  mx: {
    'example.net': [{ exchange: 'mail.example.net', priority: 10 }],
    'example.test': [{ exchange: 'mx.example.test', priority: 10 }],
  },
  txt: { 'example.net': ['v=spf1 ip4:192.0.2.0/24 -all'], 'example.test': ['v=spf1 ip4:127.0.0.0/8 -all'] },
};

/** Fills the filesystem of `dir` with one file until nothing more fits; returns the file. */
function fillDisk(dir: string): string {
  const file = path.join(dir, 'chaos-filler.bin');
  const fd = openSync(file, 'w');
  try {
    for (const size of [1 << 20, 1 << 16, 1 << 12, 1]) {
      const chunk = Buffer.alloc(size);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
      }
    }
  } finally {
    closeSync(fd);
  }
  return file;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const started = Date.now();
  const loadBefore = os.loadavg()[0] ?? 0;
  const say = options.log;
  const work = mkdtempSync('/tmp/pw-ch-');
  const previousTmp = process.env['TMPDIR'];
  process.env['TMPDIR'] = work; // clamd's, Redis' and dnsmasq's own temp dirs go under /tmp/pw-ch-* too
  const spoolDir = path.join(work, 'spool');
  const quarantineDir = path.join(work, 'quarantine');
  mkdirSync(spoolDir, { mode: 0o700 });
  const problems: string[] = [];
  let spoolMounted = false;
  let harness: Harness | undefined;
  let clamd: ClamdServer | undefined;
  let redis: RedisServer | undefined;
  let dns: DnsServer | undefined;
  let relay: DnsRelay | undefined;
  const pw = new Postwarden('chaos', work, `127.0.0.1:${PORTS.http}`, `127.0.0.1:${PORTS.policy}`);
  // The evidence of a failed run (postwarden's log, the quarantine; Postfix's log and queue) stays for a look.
  let keep = process.env['CHAOS_KEEP'] === '1';
  try {
    await unmountStaleSpools();
    try {
      await run('mount', ['-t', 'tmpfs', '-o', `size=${SPOOL_BYTES},mode=0700`, 'pw-chaos-spool', spoolDir]);
      spoolMounted = true;
    } catch (error) {
      say(
        `chaos: the spool is not a tmpfs (${(error as Error).message.split('\n')[0]}); no spool-full faults`,
      );
    }
    [clamd, redis, dns] = await Promise.all([
      startClamd({ port: PORTS.clamd }),
      startRedis({ port: PORTS.redis }),
      startDns(ZONE, { port: PORTS.dnsmasq }),
    ]);
    relay = await startDnsRelay(PORTS.dnsRelay, { host: '127.0.0.1', port: PORTS.dnsmasq });
    harness = await startHarness({
      policy: `inet:127.0.0.1:${PORTS.policy}`,
      env: {
        HARNESS_DIR,
        SMTP_PORT: String(PORTS.smtp),
        SINK_PORT: String(PORTS.sink),
        LMTP_PORT: String(PORTS.lmtp),
        IMAP_PORT: String(PORTS.imap),
        DOVECOT_AUTH_PORT: String(PORTS.dovecotAuth),
        HARNESS_FILTER: `scan:[127.0.0.1]:${PORTS.filter}`,
        REINJECT_PORT: String(PORTS.reinject),
      },
    });
    const config = pwConfig(work, clamd.socket);
    await pw.start(config, 60_000);

    const random = seededRandom(options.seed);
    const messages = chaosMessages(options.seed, options.messages, clamd.eicar, options.virusRate);
    const skipped: FaultKind[] = spoolMounted ? [] : ['spool-full'];
    const plan = planFaults(options.faults, options.windowMs, options.faultMs, random).filter(
      (f) => !skipped.includes(f.kind),
    );
    say(
      `chaos: seed ${options.seed}, ${messages.length} messages (${messages.filter((m) => m.virus).length} with EICAR), ` +
        `${plan.length} faults over ${Math.round(options.windowMs / 1000)} s`,
    );

    // Crashes: postwarden gone while no fault of ours has it down. The watchdog restarts it and says so.
    let postwardenDown = false;
    let restarting: Promise<void> | undefined;
    const watchdog = setInterval(() => {
      if (postwardenDown || restarting || pw.running) return;
      problems.push(`postwarden exited by itself (crash); log tail:\n${pw.log().slice(-1500)}`);
      restarting = pw
        .start(config, 60_000)
        .catch((error: unknown) => void problems.push(`restart after crash: ${(error as Error).message}`))
        .finally(() => (restarting = undefined));
    }, 500);

    const h = harness;
    const c = clamd;
    const r = redis;
    const d = relay;
    const masterCf = path.join(h.postfixConfDir, 'master.cf');
    const actions: Record<FaultKind, FaultAction> = {
      'kill-postwarden': async (f) => {
        const down = Math.min(f.durationMs, 2000);
        await pw.kill();
        await sleep(down);
        const t = Date.now();
        await pw.start(config, 60_000);
        return `SIGKILL, restarted after ${down} ms, ready in ${Date.now() - t} ms`;
      },
      'clamd-stop': async (f) => {
        await c.stop();
        await sleep(f.durationMs);
        await c.start();
        return 'clamd stopped and started';
      },
      'clamd-hang': async (f) => {
        c.pause();
        await sleep(f.durationMs);
        c.resume();
        return 'clamd stopped with SIGSTOP (connections taken, nothing answered), then SIGCONT';
      },
      'redis-hang': async (f) => {
        r.pause();
        await sleep(f.durationMs);
        r.resume();
        return 'Redis stopped with SIGSTOP, then SIGCONT';
      },
      'redis-stop': async (f) => {
        await r.stop();
        await sleep(f.durationMs);
        await r.start();
        return 'Redis stopped and started (its data gone: no persistence)';
      },
      'dns-silent': async (f) => {
        d.mode = { kind: 'silent' };
        await sleep(f.durationMs);
        d.mode = { kind: 'pass' };
        return 'DNS silent';
      },
      'dns-slow': async (f) => {
        const delayMs = 300 + Math.round(random() * 1200);
        d.mode = { kind: 'slow', delayMs };
        await sleep(f.durationMs);
        d.mode = { kind: 'pass' };
        return `DNS answers ${delayMs} ms late`;
      },
      'reinject-closed': async (f) => {
        const original = readFileSync(masterCf, 'utf8');
        await h.postconf([`-M#`, `127.0.0.1:${PORTS.reinject}/inet`]);
        await h.reload();
        try {
          await sleep(f.durationMs);
        } finally {
          writeFileSync(masterCf, original);
          await h.reload();
        }
        return 're-injection smtpd removed from master.cf (reload), then back';
      },
      'spool-full': async (f) => {
        const filler = fillDisk(spoolDir);
        try {
          await sleep(f.durationMs);
        } finally {
          unlinkSync(filler);
        }
        return 'spool tmpfs filled, then freed';
      },
      'postfix-reload': async () => {
        await h.reload();
        return 'postfix reload';
      },
    };

    let faultsDone = false;
    let faultsEndedAt = Number.POSITIVE_INFINITY;
    const faultRun = runFaults(plan, actions, {
      serial: options.serial,
      onFault: (kind, active) => {
        if (kind === 'kill-postwarden') postwardenDown = active;
      },
    }).then((records) => {
      faultsDone = true;
      faultsEndedAt = Date.now();
      return records;
    });
    const sends = sendAll(messages, {
      port: PORTS.smtp,
      concurrency: options.concurrency,
      spacingMs: options.windowMs / options.messages,
      giveUpAt: () => (faultsDone ? faultsEndedAt + options.settleMs : Number.POSITIVE_INFINITY),
      random,
    });
    const faults = await faultRun;
    say(`chaos: faults done after ${Math.round((Date.now() - started) / 1000)} s; waiting for the sender`);
    const sent = await sends;
    clearInterval(watchdog);
    await restarting;
    for (const f of faults) if (f.error) problems.push(`fault ${f.kind} at ${f.atMs} ms: ${f.error}`);

    // Healthy again: postwarden ready (store, filter), then Postfix's queue flushed until empty or the bound.
    if (!pw.running) await pw.start(config, 60_000);
    await pw
      .readyzUntil('ready', (x) => x.status === 200, 60_000)
      .catch((error: unknown) => {
        problems.push(`not healthy after the faults: ${(error as Error).message}`);
      });
    const drained = await drainQueue(h, options.settleMs);
    if (!drained) say('chaos: the queue did not drain within the bound');

    const copies = deliveredCopies(h);
    const held = heldIds(quarantineDir);
    const queued = await queuedIds(h);
    problems.push(...queued.reasons);
    const count = countOutcomes(messages, sent, copies, held, queued.ids, h.postfixLog());
    const effects = faultEffects(pw, h.postfixLog());
    problems.push(...serverProblems(pw, h.postfixLog(), sent));
    keep ||= count.failed > 0 || problems.length > 0;
    return {
      options: {
        seed: options.seed,
        messages: options.messages,
        faults: options.faults,
        windowMs: options.windowMs,
        faultMs: options.faultMs,
        concurrency: options.concurrency,
        serial: options.serial,
        virusRate: options.virusRate,
        settleMs: options.settleMs,
      },
      faults,
      skipped,
      count,
      problems,
      effects,
      seconds: Math.round((Date.now() - started) / 1000),
      load: [loadBefore, os.loadavg()[0] ?? 0],
    };
  } finally {
    await pw.stop().catch(() => undefined);
    if (keep)
      await run('cp', ['-a', `${HARNESS_DIR}/log`, `${HARNESS_DIR}/postfix/spool`, work]).catch(
        () => undefined,
      );
    await harness?.stop().catch(() => undefined);
    await relay?.stop().catch(() => undefined);
    await dns?.stop().catch(() => undefined);
    await redis?.destroy().catch(() => undefined);
    await clamd?.destroy().catch(() => undefined);
    if (spoolMounted) await run('umount', [spoolDir]).catch(() => undefined);
    if (previousTmp === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = previousTmp;
    if (!keep) rmSync(work, { recursive: true, force: true });
    else say(`chaos: kept ${work} (with Postfix's log and queue) and ${HARNESS_DIR}`);
  }
}

/** Unmounts the spool tmpfs of an earlier run that was stopped before its own clean-up (ours only: by name). */
async function unmountStaleSpools(): Promise<void> {
  const mounts = existsSync('/proc/mounts') ? readFileSync('/proc/mounts', 'utf8') : '';
  for (const line of mounts.split('\n')) {
    const [source, target] = line.split(' ');
    if (source === 'pw-chaos-spool' && target?.startsWith('/tmp/pw-ch-')) {
      await run('umount', [target]).catch(() => undefined);
    }
  }
}

interface QueueEntry {
  readonly queue_id: string;
  readonly queue_name: string;
  readonly recipients: readonly { readonly address: string; readonly delay_reason?: string }[];
}

/** What is in Postfix's queue (every queue: incoming, active, deferred, hold). */
async function queueEntries(h: Harness): Promise<QueueEntry[]> {
  const { stdout } = await run('postqueue', ['-c', h.postfixConfDir, '-j']);
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as QueueEntry);
}

/** `postqueue -f` every 5 s until the queue is empty; false when `boundMs` passed first. */
async function drainQueue(h: Harness, boundMs: number): Promise<boolean> {
  const deadline = Date.now() + boundMs;
  for (let round = 0; ; round++) {
    if ((await queueEntries(h)).length === 0) {
      await sleep(1000); // a message between the filter's 250 and its re-injected copy's queue entry
      if ((await queueEntries(h)).length === 0) return true;
    }
    if (Date.now() > deadline) return false;
    if (round % 5 === 0) await run('postqueue', ['-c', h.postfixConfDir, '-f']);
    await sleep(1000);
  }
}

/** The chaos ids still in Postfix's queue, with how many times each, and why each waits (for the report). */
async function queuedIds(h: Harness): Promise<{ ids: Map<string, number>; reasons: string[] }> {
  const ids = new Map<string, number>();
  const reasons: string[] = [];
  for (const entry of await queueEntries(h)) {
    const { stdout } = await run('postcat', ['-c', h.postfixConfDir, '-hq', entry.queue_id]).catch(() => ({
      stdout: '',
    }));
    const id = chaosIdOf(stdout.replace(/^\*\*\* .*\n/gm, ''));
    if (id) ids.set(id, (ids.get(id) ?? 0) + 1);
    const why = entry.recipients.map((r) => `${r.address}: ${r.delay_reason ?? 'no delay reason'}`);
    reasons.push(
      `still queued: ${id ?? 'not a chaos message'} ${entry.queue_id} (${entry.queue_name}) ${why.join('; ')}`,
    );
  }
  return { ids, reasons };
}

/** Every delivered copy of a chaos message: the Maildirs of alice and bob, and the sink. */
function deliveredCopies(h: Harness): Copy[] {
  const copies: Copy[] = [];
  const add = (where: string, text: string) => {
    const id = chaosIdOf(text.replace(/^(X-(?:Client|Helo|Mail|Rcpt)-[A-Za-z]+: .*\r?\n)+/, ''));
    if (id) copies.push({ id, where, scanned: scanned(text), intact: text.includes(bodyLine(id)) });
  };
  for (const user of ['alice', 'bob']) for (const text of h.maildirMessages(user)) add(user, text);
  for (const file of h.sinkFiles()) add('sink', readFileSync(file, 'utf8'));
  return copies;
}

/** Ids held in quarantine (from the Message-ID the entry keeps), with how many times each. */
function heldIds(dir: string): Map<string, number> {
  const ids = new Map<string, number>();
  if (!existsSync(dir)) return ids;
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.json'))) {
    const entry = JSON.parse(readFileSync(path.join(dir, name), 'utf8')) as { messageId?: string };
    const id = /<([^@>]+)@chaos\.example\.net>/.exec(entry.messageId ?? '')?.[1];
    if (id) ids.set(id, (ids.get(id) ?? 0) + 1);
  }
  return ids;
}

/** What the faults made happen, counted from postwarden's log and Postfix's. */
function faultEffects(pw: Postwarden, postfixLog: string): Record<string, number> {
  const effects: Record<string, number> = {};
  const add = (key: string) => (effects[key] = (effects[key] ?? 0) + 1);
  for (const line of pw.lines()) {
    if (line['event'] === 'filter.decision') {
      const reply = String(line['reply'] ?? '').slice(0, 9);
      const failure = (line['failure'] as { code?: string } | undefined)?.code;
      const scanners = ((line['failures'] ?? []) as { scanner?: string }[]).map((f) => f.scanner);
      add(
        `filter ${reply}${failure ? ` ${failure}` : ''}${scanners.length > 0 ? `, ${scanners.join(', ')} failed` : ''}`,
      );
    } else if (line['event'] === 'policy.decision') {
      for (const f of (line['failures'] ?? []) as { check?: string }[]) add(`policy: ${f.check} failed`);
      const action = String(line['action']);
      if (/^(DEFER|4)/.test(action)) add(`policy ${action.slice(0, 60)}`);
    } else if (line['code'] === 'PW-F005') {
      add('spool files swept at start (PW-F005)');
    }
  }
  const deferredByFilter = postfixLog.match(
    new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${PORTS.filter},.*status=deferred`, 'g'),
  );
  effects['postfix: deferred by/at the filter'] = deferredByFilter?.length ?? 0;
  effects['postfix: policy service unavailable (451 4.3.5)'] =
    postfixLog.match(/451 4\.3\.5 .*policy service unavailable/g)?.length ?? 0;
  return effects;
}

/** Answers that must never happen: a 5xx to the sender, a bounce, a 5xx from the filter. */
function serverProblems(pw: Postwarden, postfixLog: string, sent: Map<string, SendRecord>): string[] {
  const problems: string[] = [];
  for (const [id, record] of sent) {
    const hard = record.refusals.filter((r) => /^\S+ 5\d\d/.test(r));
    if (hard.length > 0) problems.push(`${id}: refused with a 5xx: ${hard.join(' | ')}`);
  }
  for (const line of postfixLog.split('\n'))
    if (/status=bounced/.test(line)) problems.push(`bounce: ${line}`);
  for (const line of pw.lines()) {
    if (line['event'] === 'filter.decision' && /^5/.test(String(line['reply']))) {
      problems.push(`the filter answered ${String(line['reply'])}`);
    }
  }
  return problems;
}
