/**
 * The load generator: N persistent connections, each a strictly sequential loop request → reply (as one
 * Postfix smtpd process uses its policy connection), pre-encoded requests written raw, replies parsed
 * minimally but correctly. A warm-up phase is not counted; then every reply completed inside the measurement
 * window counts towards requests/s, with its latency (write → complete reply, process.hrtime). Several such
 * slices of one cell (taken in turns with other servers, to cancel machine drift) add up into one result.
 *
 * Optional, for the greylisting benchmark: `next` makes each request on the fly (every one a never-seen
 * triplet) instead of cycling pre-encoded ones; `expect` counts the replies that are the right answer;
 * `storeCpuMs` reads a second process's CPU (the Redis server behind postwarden). Without them a slice and its
 * result are exactly what they were.
 *
 * Failure behaviour: a malformed reply, bytes when no reply is due, a dropped connection, or a reply that
 * does not arrive within the drain bound rejects the whole cell with a BenchError — the benchmark is broken
 * then, not slow.
 */
import net from 'node:net';

export class BenchError extends Error {
  override readonly name = 'BenchError';
}

export interface CellOptions {
  readonly port: number;
  readonly connections: number;
  /** Pre-encoded requests; connection c starts at a different offset and cycles through them. */
  readonly requests: readonly Buffer[];
  /** Makes each request instead (then `requests` may be empty): called once per request sent. */
  readonly next?: (connection: number) => Buffer;
  /**
   * Paced instead of flat out: the connections together offer this many requests a second, each at its own
   * steady interval (staggered), as smtpd processes do when they spend the time between two policy requests
   * talking to their SMTP clients. A reply that comes after its connection's next turn is followed by the
   * next request at once, so an overloaded server still shows its queueing in the latencies. Latency is always
   * measured from the write of the request.
   */
  readonly paceRps?: number;
  /** True when a whole reply (`action=…\n\n`) is the right answer; counted in the window. */
  readonly expect?: (reply: Buffer) => boolean;
  readonly warmupMs: number;
  readonly measureMs: number;
  /** Bound on the wait for in-flight replies after the window, and for connecting. */
  readonly drainMs?: number;
  /** CPU time the server process has used so far, in ms (read at the window's edges); undefined: unknown. */
  readonly serverCpuMs?: () => number | undefined;
  /** The same for a store process the server uses (read at the same edges); reported on its own. */
  readonly storeCpuMs?: () => number | undefined;
}

/** What one slice measured, raw. */
export interface Slice {
  /** Latency of each reply completed inside the window, in ms. */
  readonly samples: Float64Array;
  readonly dunno: number;
  readonly seconds: number;
  /** Server CPU time in the window, ms; NaN if unknown. */
  readonly serverCpuMs: number;
  /** This process's CPU time in the window, ms. */
  readonly generatorCpuMs: number;
  /** With `expect`: replies in the window that were the right answer, and the first one that was not. */
  readonly expected?: number;
  readonly unexpected?: string;
  /** With `storeCpuMs`: the store process's CPU time in the window, ms; NaN if unknown. */
  readonly storeCpuMs?: number;
}

export interface CellResult {
  readonly connections: number;
  /** Only for a paced cell: the requests a second offered (CellOptions.paceRps). */
  readonly paceRps?: number;
  /** Replies completed inside the window. */
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Share of those replies that were `action=DUNNO`. */
  readonly dunnoShare: number;
  /** Server CPU time (all its threads) per reply in the window, in µs; NaN if unknown. */
  readonly cpuUsPerRequest: number;
  /** Server CPU time over the window's wall time: 1 = one core busy. NaN if unknown. */
  readonly cpuLoad: number;
  /** The same for this process, the load generator: near 1, it and not the server may be the limit. */
  readonly generatorCpuLoad: number;
  /** Only when the slices were run with `expect`: share of the replies that were the right answer. */
  readonly expectedShare?: number;
  /** The first wrong answer seen, if any (with `expect`). */
  readonly unexpected?: string;
  /** Only when the slices were run with `storeCpuMs`: the store process's CPU time per reply, in µs. */
  readonly storeCpuUsPerRequest?: number;
}

const NEWLINE = 0x0a;
const END = Buffer.from('\n\n');
const ACTION = Buffer.from('action=');
const DUNNO_REPLY = Buffer.from('action=DUNNO\n\n');
const MAX_REPLY_BYTES = 4096;

/** Nearest-rank percentile of sorted samples. */
function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? NaN;
}

function connect(port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new BenchError(`no connection to 127.0.0.1:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(new BenchError(`cannot connect to 127.0.0.1:${port}: ${error.message}`));
    });
  });
}

/** Adds up the slices of one cell. */
export function summarize(connections: number, slices: readonly Slice[], paceRps?: number): CellResult {
  const count = slices.reduce((n, s) => n + s.samples.length, 0);
  const all = new Float64Array(count);
  let offset = 0;
  for (const slice of slices) {
    all.set(slice.samples, offset);
    offset += slice.samples.length;
  }
  const sorted = all.sort();
  const sum = (pick: (s: Slice) => number) => slices.reduce((n, s) => n + pick(s), 0);
  const seconds = sum((s) => s.seconds);
  const cpuMs = sum((s) => s.serverCpuMs);
  const checked = slices.some((s) => s.expected !== undefined);
  const withStore = slices.some((s) => s.storeCpuMs !== undefined);
  const unexpected = slices.find((s) => s.unexpected !== undefined)?.unexpected;
  return {
    connections,
    ...(paceRps !== undefined ? { paceRps } : {}),
    requests: count,
    seconds,
    rps: count / seconds,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    maxMs: count > 0 ? (sorted[count - 1] ?? NaN) : NaN,
    dunnoShare: count > 0 ? sum((s) => s.dunno) / count : NaN,
    cpuUsPerRequest: count > 0 ? (cpuMs * 1000) / count : NaN,
    cpuLoad: cpuMs / 1000 / seconds,
    generatorCpuLoad: sum((s) => s.generatorCpuMs) / 1000 / seconds,
    ...(checked ? { expectedShare: count > 0 ? sum((s) => s.expected ?? 0) / count : NaN } : {}),
    ...(unexpected !== undefined ? { unexpected } : {}),
    ...(withStore
      ? { storeCpuUsPerRequest: count > 0 ? (sum((s) => s.storeCpuMs ?? NaN) * 1000) / count : NaN }
      : {}),
  };
}

/**
 * The offered load of the paced cells of the policy-protocol parts: 1 000 requests a second over 8 connections,
 * a Postfix taking several hundred messages a second, more than one MX host usually sees at its peak. Flat out
 * (the other cells), every connection sends its next request the moment a reply arrives, so the latency there
 * is mostly the wait behind the other connections' requests (8 ÷ throughput); paced, it is what one smtpd waits
 * for its answer on a busy host.
 */
export const PACED_RPS = 1000;

/** The cells a part measures: each connection count flat out, and the paced one when `pacedAt` is among them. */
export function cellLoads(
  counts: readonly number[],
  pacedAt: number,
): { readonly connections: number; readonly paceRps?: number }[] {
  const flat = counts.map((connections) => ({ connections }));
  return counts.includes(pacedAt) ? [...flat, { connections: pacedAt, paceRps: PACED_RPS }] : flat;
}

/** A cell's load for tables and progress: `8`, or `8 @1,000/s` when paced. */
export function loadLabel(cell: { readonly connections: number; readonly paceRps?: number }): string {
  return cell.paceRps === undefined
    ? String(cell.connections)
    : `${cell.connections} @${cell.paceRps.toLocaleString('en-US')}/s`;
}

/** A cell's name in the report's rows: `8 conn`, or `8 conn paced at 1,000 req/s`. */
export function loadName(cell: { readonly connections: number; readonly paceRps?: number }): string {
  return cell.paceRps === undefined
    ? `${cell.connections} conn`
    : `${cell.connections} conn paced at ${cell.paceRps.toLocaleString('en-US')} req/s`;
}

/** Runs one slice: connect, warm-up, measurement window, drain. Rejects with a BenchError if it broke. */
export async function runSlice(options: CellOptions): Promise<Slice> {
  const { requests, connections } = options;
  const drainMs = options.drainMs ?? 5000;
  if (requests.length === 0 && !options.next) throw new BenchError('no requests to send');
  const settled = await Promise.allSettled(
    Array.from({ length: connections }, () => connect(options.port, drainMs)),
  );
  const sockets = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const refused = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (refused) {
    for (const socket of sockets) socket.destroy();
    throw refused.reason;
  }

  return new Promise<Slice>((resolve, reject) => {
    let phase: 'warmup' | 'measure' | 'drain' | 'done' = 'warmup';
    let windowStart = 0n;
    let windowEnd = 0n;
    let cpuStart: number | undefined;
    let cpuEnd: number | undefined;
    let storeStart: number | undefined;
    let storeEnd: number | undefined;
    let ownStart = process.cpuUsage();
    let ownUsed = { user: 0, system: 0 };
    let samples = new Float64Array(1 << 16);
    let count = 0;
    let dunno = 0;
    let expected = 0;
    let unexpected: string | undefined;
    let active = connections;
    const timers: NodeJS.Timeout[] = [];
    /** Per connection, the timer of its next paced request, if it is waiting for its turn. */
    const paceTimers: (NodeJS.Timeout | undefined)[] = [];

    const finish = (error?: BenchError) => {
      if (phase === 'done') return;
      phase = 'done';
      for (const timer of [...timers, ...paceTimers]) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      if (error) {
        reject(error);
        return;
      }
      resolve({
        samples: samples.slice(0, count),
        dunno,
        seconds: Number(windowEnd - windowStart) / 1e9,
        serverCpuMs: cpuStart !== undefined && cpuEnd !== undefined ? cpuEnd - cpuStart : NaN,
        generatorCpuMs: (ownUsed.user + ownUsed.system) / 1000,
        ...(options.expect ? { expected } : {}),
        ...(unexpected !== undefined ? { unexpected } : {}),
        ...(options.storeCpuMs
          ? { storeCpuMs: storeStart !== undefined && storeEnd !== undefined ? storeEnd - storeStart : NaN }
          : {}),
      });
    };

    const record = (ms: number, isDunno: boolean) => {
      if (count === samples.length) {
        const grown = new Float64Array(samples.length * 2);
        grown.set(samples);
        samples = grown;
      }
      samples[count++] = ms;
      if (isDunno) dunno += 1;
    };

    const intervalNs = options.paceRps ? BigInt(Math.round((connections * 1e9) / options.paceRps)) : 0n;
    const firstTurn = process.hrtime.bigint();
    sockets.forEach((socket, c) => {
      let next = (c * 37) % requests.length;
      let sentAt = 0n;
      let pending: Buffer | undefined;
      let finished = false;
      // The time this connection's next request is due (paced only); staggered across the connections.
      let turn = firstTurn + (intervalNs * BigInt(c)) / BigInt(connections) - intervalNs;

      const retire = () => {
        finished = true;
        active -= 1;
        if (active === 0) finish();
      };

      const send = () => {
        let request: Buffer;
        if (options.next) request = options.next(c);
        else {
          request = requests[next] as Buffer;
          next = next + 1 === requests.length ? 0 : next + 1;
        }
        sentAt = process.hrtime.bigint();
        socket.write(request);
      };

      const sendInTurn = () => {
        if (intervalNs === 0n) {
          send();
          return;
        }
        turn += intervalNs;
        const wait = turn - process.hrtime.bigint();
        if (wait <= 0n) {
          send();
          return;
        }
        paceTimers[c] = setTimeout(
          () => {
            paceTimers[c] = undefined;
            if (phase !== 'drain') send();
            else retire(); // nothing in flight: this connection is done
          },
          Number(wait / 1_000_000n),
        );
      };

      socket.on('data', (chunk: Buffer) => {
        if (phase === 'done') return;
        const data = pending ? Buffer.concat([pending, chunk]) : chunk;
        pending = undefined;
        const end = data.indexOf(END);
        if (end < 0) {
          if (data.length > MAX_REPLY_BYTES)
            finish(new BenchError(`connection ${c}: reply longer than ${MAX_REPLY_BYTES} bytes`));
          else pending = data;
          return;
        }
        const now = process.hrtime.bigint();
        if (finished || end + END.length !== data.length) {
          finish(new BenchError(`connection ${c}: bytes after the reply, when no reply was due`));
          return;
        }
        // Exactly one attribute, `action=…`, on one line (protocols.md A1).
        if (
          data.indexOf(NEWLINE) !== end ||
          end <= ACTION.length ||
          !data.subarray(0, ACTION.length).equals(ACTION)
        ) {
          const shown = JSON.stringify(data.toString('utf8', 0, Math.min(data.length, 80)));
          finish(new BenchError(`connection ${c}: malformed reply ${shown}`));
          return;
        }
        if (phase === 'measure') {
          record(Number(now - sentAt) / 1e6, data.equals(DUNNO_REPLY));
          if (options.expect) {
            if (options.expect(data)) expected += 1;
            else unexpected ??= data.toString('utf8', 0, Math.min(data.length, 160)).trimEnd();
          }
        }
        if (phase === 'drain') {
          retire();
          return;
        }
        sendInTurn();
      });
      const dropped = (why: string) => {
        if (phase !== 'done') finish(new BenchError(`connection ${c} dropped by the server: ${why}`));
      };
      socket.on('error', (error) => dropped(error.message));
      socket.on('close', () => dropped('closed'));
      sendInTurn();
    });

    timers.push(
      setTimeout(() => {
        phase = 'measure';
        cpuStart = options.serverCpuMs?.();
        storeStart = options.storeCpuMs?.();
        ownStart = process.cpuUsage();
        windowStart = process.hrtime.bigint();
        timers.push(
          setTimeout(() => {
            phase = 'drain';
            windowEnd = process.hrtime.bigint();
            cpuEnd = options.serverCpuMs?.();
            storeEnd = options.storeCpuMs?.();
            ownUsed = process.cpuUsage(ownStart);
            timers.push(
              setTimeout(
                () => finish(new BenchError(`${active} connection(s) got no reply within ${drainMs} ms`)),
                drainMs,
              ),
            );
          }, options.measureMs),
        );
      }, options.warmupMs),
    );
  });
}

/**
 * Measures servers in turns: `rounds` rounds of one slice per server, the order rotated each round so no server
 * always follows the same one, and drift of the machine hits them alike. Returns each server's slices by key.
 */
export async function measureInTurns<S extends { readonly key: string }, R>(
  servers: readonly S[],
  rounds: number,
  progress: string,
  measure: (server: S, round: number) => Promise<R>,
): Promise<Map<S['key'], R[]>> {
  const slices = new Map<S['key'], R[]>(servers.map((s) => [s.key, []]));
  for (let round = 0; round < rounds; round++) {
    process.stderr.write(`  ${progress}, round ${round + 1} of ${rounds}\n`);
    for (let i = 0; i < servers.length; i++) {
      const server = servers[(i + round) % servers.length] as S;
      slices.get(server.key)?.push(await measure(server, round));
    }
  }
  return slices;
}

/** The warm-up before a slice: all of `warmupS` before the first round's, at most 0.3 s before later ones. */
export function sliceWarmupMs(warmupS: number, round: number): number {
  return round === 0 ? warmupS * 1000 : Math.min(warmupS * 1000, 300);
}
