/**
 * clamd — the VirusScanner port (core/scanners/antivirus.ts) over clamd's own protocol, on its unix socket
 * (`antivirus.socket`) or TCP (`antivirus.host`, `antivirus.port`): `zINSTREAM`, then the raw message in
 * length-prefixed chunks as the spool yields them (with backpressure: at most one chunk and the socket's buffer
 * are in memory), a zero-length chunk, and one reply. Also `ping()` (zPING → PONG) and `version()` (zVERSION)
 * for health checks and `doctor`.
 *
 * Contract. `scan()` resolves `{clean: true}` only for the exact reply `stream: OK` to a message sent whole, and
 * `{clean: false, viruses}` for `stream: NAME FOUND` (one line per match with AllowAllMatchScan). Anything else
 * throws a ClamdError whose `kind` says why and whose message names clamd's address and the fix:
 * - `unreachable`: connect failed (no socket file, refused, permission denied, unknown host);
 * - `timeout`: no connection, no progress or no verdict within `timeout_ms` (a hung or overloaded clamd);
 * - `size_limit`: the message is larger than clamd's StreamMaxLength. clamd says `INSTREAM size limit exceeded`
 *   and closes the connection at once, but a write still under way then fails with EPIPE (unix socket, TCP) and
 *   Node drops the socket with the reply unread (with 64 KiB chunks the reply mostly arrives; with one 4 MiB
 *   chunk it was lost 8 or 9 times in 10). So when clamd hangs up on unread data, one PING follows: if clamd
 *   answers, the size limit is what closed it (clamd drops a stream for no other reason without saying so); if
 *   not, it is `connection_lost`;
 * - `connection_lost`: clamd went away mid-scan; `clamd_error`: clamd's own `... ERROR` reply;
 * - `protocol`: a reply that is not a verdict; `aborted`: the caller's signal; `source`: reading the spool failed.
 * A thrown scan is never a clean one: the antivirus scanner turns it into a deferral (451) unless `on_failure`
 * says pass. An aborted signal rejects at once and destroys the socket (clamd drops the half-sent stream).
 *
 * Why not the `clamscan` package (v2.4, a dependency), checked against its source and a real clamd 1.4.6:
 * - `scanStream()` copies the input into the socket on every `data` event and ignores `write()`'s return value:
 *   no backpressure, so the whole message sits in memory: streaming 50 MiB to clamd, it had 49 MiB queued on
 *   the socket at once, where this adapter never has more than one spool chunk (64 KiB) queued.
 * - Neither `scanStream()` nor `passthrough()` exposes its socket or takes a signal, so an abort cannot close
 *   the connection. Its `timeout` is the socket's idle timeout, on which it only half-closes: against a hung
 *   (SIGSTOPped) clamd `scanStream()` was still pending after 5 s with `timeout: 1000`, and against a peer that
 *   closes it resolves `{isInfected: null}` — "not infected" to a careless reader.
 * - Replies it does not recognise resolve `isInfected: null` instead of failing; `passthrough()` never finishes
 *   on an empty input; both `console.error` every socket error; `init()` runs `clamdscan --version` and, unless
 *   told not to, falls back to scanning with local binaries.
 * The protocol is small (clamd(8): INSTREAM, PING, VERSION), so this adapter speaks it itself, where every
 * deadline, abort and error is its own. No logger and no metrics here (layers rule): `onScan` reports each scan
 * (clamd-health.ts turns those reports and a periodic PING into clamd's health for /readyz).
 */
import net from 'node:net';
import type { MessageSource } from '../core/content.js';
import type { AntivirusSettings, VirusScanResult, VirusScanner } from '../core/scanners/antivirus.js';

export type ClamdErrorKind =
  | 'unreachable'
  | 'timeout'
  | 'size_limit'
  | 'connection_lost'
  | 'clamd_error'
  | 'protocol'
  | 'aborted'
  | 'source'
  | 'config';

export class ClamdError extends Error {
  override readonly name = 'ClamdError';
  constructor(
    readonly kind: ClamdErrorKind,
    message: string,
    /** clamd's address as the messages name it: `unix:/path` or `host:port`. */
    readonly target: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What one scan did, for the caller's metrics and logs. */
export interface ClamdScanEvent {
  readonly target: string;
  readonly outcome: 'clean' | 'infected' | 'error';
  /** Set when outcome is `error`. */
  readonly kind?: ClamdErrorKind;
  /** Set when outcome is `error`: the ClamdError's message (clamd's address and the fix). */
  readonly reason?: string;
  /** Message bytes sent to clamd. */
  readonly bytes: number;
  readonly ms: number;
}

export interface ClamdVersion {
  /** The whole reply, e.g. `ClamAV 1.4.6/27466/Sun Nov 22 09:40:00 2026`. */
  readonly text: string;
  /** Engine version, e.g. `1.4.6`. */
  readonly engine: string;
  /** Version of the daily signature database; absent when clamd has only local databases. */
  readonly database?: number;
  /** When that database was built, as clamd prints it. */
  readonly databaseTime?: string;
}

export type ClamdSettings = Pick<AntivirusSettings, 'socket' | 'host' | 'port' | 'timeout_ms'>;

export interface ClamdScannerOptions {
  /** Called once per scan, whatever its outcome; an exception in it is ignored. */
  readonly onScan?: (event: ClamdScanEvent) => void;
  /** Deadline of ping() and version(); default min(timeout_ms, 5000). */
  readonly commandTimeoutMs?: number;
}

/** A reply longer than this is not clamd's. */
const MAX_REPLY_BYTES = 64 * 1024;
/** The PING that tells a size limit from a dead clamd waits at most this long. */
const PROBE_MS = 2000;
const TERMINATOR = Buffer.alloc(4);

type Phase = 'connecting' | 'sending' | 'waiting';

interface Exchange {
  /** The reply, NULs and line ends kept. */
  readonly reply: string;
  /** Message bytes written. */
  readonly sent: number;
  /** Where it stood when the reply ended or the connection was lost. */
  readonly phase: Phase;
  /** The socket error that ended it once connected (EPIPE, ECONNRESET): clamd hung up on unread data. */
  readonly lost?: NodeJS.ErrnoException;
}

function errnoOf(error: unknown): string {
  return (error as NodeJS.ErrnoException | undefined)?.code ?? '';
}

function reasonOf(value: unknown): string {
  if (value instanceof Error) return value.message;
  return value === undefined ? 'no reason given' : String(value);
}

export class ClamdScanner implements VirusScanner {
  /** `unix:/path` or `host:port`, as every error message names it. */
  readonly target: string;
  private readonly unix: boolean;
  private readonly timeoutMs: number;
  private readonly commandTimeoutMs: number;

  constructor(
    private readonly settings: ClamdSettings,
    private readonly options: ClamdScannerOptions = {},
  ) {
    this.unix = settings.socket !== '';
    if (this.unix) this.target = `unix:${settings.socket}`;
    else if (settings.host !== '')
      this.target = net.isIPv6(settings.host)
        ? `[${settings.host}]:${settings.port}`
        : `${settings.host}:${settings.port}`;
    else {
      throw new ClamdError(
        'config',
        'antivirus: neither socket nor host is set; set antivirus.socket to clamd.conf’s LocalSocket, or ' +
          'antivirus.host and antivirus.port to its TCPAddr and TCPSocket',
        '',
      );
    }
    this.timeoutMs = settings.timeout_ms;
    this.commandTimeoutMs = options.commandTimeoutMs ?? Math.min(settings.timeout_ms, 5000);
  }

  async scan(source: MessageSource, signal: AbortSignal): Promise<VirusScanResult> {
    const started = performance.now();
    const progress = { sent: 0 };
    const report = (outcome: ClamdScanEvent['outcome'], error?: ClamdError) => {
      try {
        this.options.onScan?.({
          target: this.target,
          outcome,
          ...(error ? { kind: error.kind, reason: error.message } : {}),
          bytes: progress.sent,
          ms: performance.now() - started,
        });
      } catch {
        // an observer's failure is not the scan's
      }
    };
    try {
      const exchange = await this.exchange('INSTREAM', source, signal, this.timeoutMs, progress);
      const result = await this.verdict(exchange, source.size, signal, started);
      report(result.clean ? 'clean' : 'infected');
      return result;
    } catch (error) {
      const failure =
        error instanceof ClamdError
          ? error
          : new ClamdError('protocol', `clamd at ${this.target}: ${reasonOf(error)}`, this.target, {
              cause: error,
            });
      report('error', failure);
      throw failure;
    }
  }

  /** Resolves when clamd answers PING with PONG; throws a ClamdError otherwise. */
  async ping(options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<void> {
    const { reply, lost } = await this.exchange(
      'PING',
      undefined,
      options.signal,
      options.timeoutMs ?? this.commandTimeoutMs,
    );
    const line = reply.replace(/[\0\n]+$/, '');
    if (line === 'PONG') return;
    if (lost || line === '') throw this.lostError('PING', lost);
    throw new ClamdError(
      'protocol',
      `clamd at ${this.target} answered PING with ${JSON.stringify(line.slice(0, 200))}, not PONG: is this clamd?`,
      this.target,
    );
  }

  /** clamd's VERSION reply, parsed: the engine, and the daily database's version and date when it has one. */
  async version(options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<ClamdVersion> {
    const { reply, lost } = await this.exchange(
      'VERSION',
      undefined,
      options.signal,
      options.timeoutMs ?? this.commandTimeoutMs,
    );
    const text = reply.replace(/[\0\n]+$/, '');
    if (text === '') throw this.lostError('VERSION', lost);
    const m = /^ClamAV (\S+?)(?:\/(\d+)\/(.+))?$/.exec(text);
    if (!m?.[1]) {
      throw new ClamdError(
        'protocol',
        `clamd at ${this.target} answered VERSION with ${JSON.stringify(text.slice(0, 200))}: is this clamd?`,
        this.target,
      );
    }
    return {
      text,
      engine: m[1],
      ...(m[2] ? { database: Number(m[2]) } : {}),
      ...(m[3] ? { databaseTime: m[3] } : {}),
    };
  }

  /** Turns a finished INSTREAM exchange into a verdict, or throws. */
  private async verdict(
    exchange: Exchange,
    size: number,
    signal: AbortSignal,
    started: number,
  ): Promise<VirusScanResult> {
    const lines = exchange.reply
      .split(/[\0\n]/)
      .map((line) => line.trim())
      .filter((line) => line !== '');
    if (lines.length === 0) {
      // No reply. A reset or EPIPE (or a close before the terminator went out) means clamd hung up with part of
      // the message unread: usually StreamMaxLength, whose reply was lost with the connection. One PING tells
      // that from a clamd that went away. A plain close after the whole message means clamd read it all.
      if (exchange.phase === 'sending' || exchange.lost) {
        const left = this.timeoutMs - (performance.now() - started);
        const alive = await this.ping({ signal, timeoutMs: Math.max(1, Math.min(PROBE_MS, left)) }).then(
          () => true,
          (error: unknown) => {
            if (error instanceof ClamdError && error.kind === 'aborted') throw error;
            return false;
          },
        );
        if (alive) throw this.sizeError(size, exchange.sent, exchange.lost);
        throw new ClamdError(
          'connection_lost',
          `clamd at ${this.target} closed the connection after ${exchange.sent} of ${size} bytes and no longer ` +
            `answers (${errnoOf(exchange.lost) || 'closed'}): clamd stopped or crashed; see its log and restart it`,
          this.target,
          { cause: exchange.lost },
        );
      }
      throw new ClamdError(
        'connection_lost',
        `clamd at ${this.target} closed the connection without a verdict after the whole message ` +
          `(${exchange.sent} bytes): clamd stopped or failed mid-scan; see its log`,
        this.target,
      );
    }
    const viruses: string[] = [];
    let ok = false;
    for (const line of lines) {
      const found = /^stream: (.+) FOUND$/.exec(line);
      if (found?.[1]) {
        if (!viruses.includes(found[1])) viruses.push(found[1]);
      } else if (line === 'stream: OK') {
        ok = true;
      } else if (/size limit exceeded/i.test(line)) {
        throw this.sizeError(size, exchange.sent);
      } else if (line === 'COMMAND READ TIMED OUT') {
        throw new ClamdError(
          'timeout',
          `clamd at ${this.target} gave up waiting for the rest of the message (COMMAND READ TIMED OUT) after ` +
            `${exchange.sent} of ${size} bytes: reading the spool stalled longer than clamd.conf’s ReadTimeout`,
          this.target,
        );
      } else if (/ERROR$/.test(line)) {
        throw new ClamdError(
          'clamd_error',
          `clamd at ${this.target} could not scan the message: ${line.slice(0, 300)}; see clamd’s log`,
          this.target,
        );
      } else {
        throw new ClamdError(
          'protocol',
          `clamd at ${this.target} answered ${JSON.stringify(line.slice(0, 200))}, not a verdict: is this clamd?`,
          this.target,
        );
      }
    }
    // A match is a match even if it came early; a clean verdict counts only for the whole message.
    if (viruses.length > 0) return { clean: false, viruses };
    if (ok && exchange.phase === 'waiting') return { clean: true };
    throw new ClamdError(
      'protocol',
      `clamd at ${this.target} answered "stream: OK" after ${exchange.sent} of ${size} bytes, before the ` +
        'message was complete: not a verdict on it',
      this.target,
    );
  }

  /** `lost` set: clamd's reply was lost with the connection, and this is an inference from the PING after it. */
  private sizeError(size: number, sent: number, lost?: NodeJS.ErrnoException): ClamdError {
    const how = lost
      ? `clamd hung up after ${sent} bytes were sent (${errnoOf(lost) || 'closed'}) and still answers PING`
      : `clamd refused it after ${sent} bytes (INSTREAM size limit exceeded)`;
    return new ClamdError(
      'size_limit',
      `the message (${size} bytes) is larger than the StreamMaxLength of clamd at ${this.target}: ${how}; ` +
        'raise StreamMaxLength in clamd.conf to at least Postfix’s message_size_limit',
      this.target,
      lost ? { cause: lost } : undefined,
    );
  }

  private lostError(command: string, lost: NodeJS.ErrnoException | undefined): ClamdError {
    return new ClamdError(
      'connection_lost',
      `clamd at ${this.target} closed the connection without answering ${command} ` +
        `(${errnoOf(lost) || 'closed'}): see clamd’s log`,
      this.target,
      { cause: lost },
    );
  }

  private unreachable(error: NodeJS.ErrnoException): ClamdError {
    const code = error.code ?? '';
    const where = this.unix
      ? 'antivirus.socket to clamd.conf’s LocalSocket'
      : 'antivirus.host and antivirus.port to clamd.conf’s TCPAddr and TCPSocket';
    let fix: string;
    if (code === 'ENOENT') fix = `there is no socket file: start clamd, or set ${where}`;
    else if (code === 'ECONNREFUSED' && this.unix)
      fix = 'the socket file is stale, no clamd listens on it: start clamd (FixStaleSocket yes removes it)';
    else if (code === 'ECONNREFUSED') fix = `nothing listens there: start clamd, or set ${where}`;
    else if (code === 'EACCES' || code === 'EPERM')
      fix =
        'permission denied: let postwarden’s user reach the socket (clamd.conf LocalSocketGroup, LocalSocketMode)';
    else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
      fix = 'the host name does not resolve: set antivirus.host to clamd’s address';
    else fix = `check that clamd runs and set ${where}`;
    return new ClamdError(
      'unreachable',
      `clamd at ${this.target} is not reachable (${code || error.message}): ${fix}`,
      this.target,
      { cause: error },
    );
  }

  private timeout(command: string, phase: Phase, ms: number, sent: number, size: number): ClamdError {
    const what =
      phase === 'connecting'
        ? 'the connection was not accepted'
        : command !== 'INSTREAM'
          ? `no reply to ${command}`
          : phase === 'sending'
            ? `clamd stopped reading after ${sent} of ${size} bytes`
            : 'the whole message was sent, no verdict came';
    return new ClamdError(
      'timeout',
      `clamd at ${this.target} gave no answer within ${ms} ms (${what}): clamd is hung or overloaded ` +
        '(see its log; MaxThreads, MaxQueue in clamd.conf), or raise antivirus.timeout_ms',
      this.target,
    );
  }

  /**
   * One connection, one `z`-command (NUL-terminated), for INSTREAM the message, and whatever clamd says until it
   * closes. Rejects with a ClamdError for what happens before the connection stands (unreachable), for the
   * deadline, the signal and a spool read error; a connection lost later resolves with `lost` set.
   */
  private exchange(
    command: 'INSTREAM' | 'PING' | 'VERSION',
    body: MessageSource | undefined,
    signal: AbortSignal | undefined,
    timeoutMs: number,
    progress: { sent: number } = { sent: 0 },
  ): Promise<Exchange> {
    return new Promise<Exchange>((resolve, reject) => {
      if (signal?.aborted) {
        reject(this.aborted(signal, command));
        return;
      }
      let phase: Phase = 'connecting';
      let settled = false;
      let replyBytes = 0;
      const reply: Buffer[] = [];
      /** Wakes the writer waiting for `drain`; also called when the exchange ends. */
      let wake: (() => void) | undefined;

      const socket = this.unix
        ? net.connect({ path: this.settings.socket })
        : net.connect({ host: this.settings.host, port: this.settings.port });

      const finish = (error: Error | undefined, lost?: NodeJS.ErrnoException) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.destroy();
        wake?.();
        if (error) reject(error);
        else
          resolve({
            reply: Buffer.concat(reply).toString('utf8'),
            sent: progress.sent,
            phase,
            ...(lost ? { lost } : {}),
          });
      };
      const onAbort = () => finish(this.aborted(signal, command));
      const timer = setTimeout(
        () => finish(this.timeout(command, phase, timeoutMs, progress.sent, body?.size ?? 0)),
        timeoutMs,
      );
      signal?.addEventListener('abort', onAbort, { once: true });

      socket.on('connect', () => {
        phase = 'sending';
        socket.write(`z${command}\0`);
        if (!body) {
          phase = 'waiting';
          return;
        }
        pump(body).catch((error: unknown) =>
          finish(
            new ClamdError(
              'source',
              `reading the message to send it to clamd at ${this.target} failed: ${reasonOf(error)}`,
              this.target,
              { cause: error },
            ),
          ),
        );
      });
      socket.on('data', (chunk: Buffer) => {
        replyBytes += chunk.length;
        if (replyBytes > MAX_REPLY_BYTES) {
          finish(
            new ClamdError(
              'protocol',
              `clamd at ${this.target} sent more than ${MAX_REPLY_BYTES} bytes of reply: is this clamd?`,
              this.target,
            ),
          );
          return;
        }
        reply.push(chunk);
      });
      // clamd closes the connection after its reply: that is the end of the exchange.
      socket.on('end', () => finish(undefined));
      socket.on('error', (error: NodeJS.ErrnoException) => {
        if (phase === 'connecting') finish(this.unreachable(error));
        else finish(undefined, error);
      });
      socket.on('close', () => finish(undefined));

      const drained = () =>
        new Promise<void>((resolveDrain) => {
          wake = resolveDrain;
        });
      socket.on('drain', () => wake?.());

      const pump = async (source: MessageSource) => {
        const iterator = source.chunks()[Symbol.asyncIterator]();
        try {
          for (;;) {
            const next = await iterator.next();
            if (settled) return;
            if (next.done) break;
            const chunk = next.value;
            // A zero-length chunk would end the stream early: clamd would scan a truncated message.
            if (chunk.length === 0) continue;
            const header = Buffer.allocUnsafe(4);
            header.writeUInt32BE(chunk.length, 0);
            socket.cork();
            socket.write(header);
            const room = socket.write(chunk);
            socket.uncork();
            progress.sent += chunk.length;
            if (!room) {
              await drained();
              wake = undefined;
              if (settled) return;
            }
          }
          socket.write(TERMINATOR);
          phase = 'waiting';
        } finally {
          // Stops the spool reader when the exchange ended first (abort, deadline, clamd hung up).
          if (settled) await iterator.return?.();
        }
      };
    });
  }

  private aborted(signal: AbortSignal | undefined, command: string): ClamdError {
    return new ClamdError(
      'aborted',
      `clamd ${command} at ${this.target} aborted: ${reasonOf(signal?.reason)}`,
      this.target,
      { cause: signal?.reason },
    );
  }
}
