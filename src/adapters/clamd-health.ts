/**
 * clamd's health for `/readyz` and `postwarden_clamd_up`: a snapshot of what clamd last showed, so readiness
 * asks nothing and answers at once. Two sources: the outcome of every scan (ClamdScanner's `onScan`), and a PING
 * every `intervalMs` (under the scanner's own command deadline) so that an idle filter notices too.
 *
 * Contract. A scan that cannot reach clamd, times out or loses the connection marks it down, and so does a PING
 * without PONG; a finished scan (clean or infected) or a PONG marks it up — except that a PONG does not undo a
 * scan's failure for two intervals after it: an overloaded clamd answers PING at once while its scans time out,
 * and readiness must not flip between down and up at each PING while mail is being deferred. Once no scan has
 * failed for two intervals (traffic stopped, or clamd recovered and nothing was scanned), a PONG counts again;
 * a finished scan always does. The other scan failures (a message over
 * StreamMaxLength, clamd's ERROR for one message, a spool read error, an abort) are one message's trouble and
 * change nothing. It starts down, "no answer to PING yet", without reporting an outage; the first PING goes out
 * at start(). Going down and coming back are reported once each through `onEvent` (PW-F009, PW-F010); a listener
 * that throws is ignored. The timer never keeps the process alive; stop() ends the PINGs and aborts one under way.
 */
import type { ClamdErrorKind, ClamdScanEvent } from './clamd.js';

export interface ClamdHealthEvent {
  readonly code: 'PW-F009' | 'PW-F010';
  readonly level: 'error' | 'info';
  readonly message: string;
}

/** What the PINGs go through: ClamdScanner. */
export interface ClamdPinger {
  /** `unix:/path` or `host:port`. */
  readonly target: string;
  /** Resolves on PONG, throws otherwise (within the pinger's own deadline). */
  ping(options: { signal?: AbortSignal }): Promise<void>;
}

export interface ClamdHealthOptions {
  /** From the end of one PING to the next. */
  readonly intervalMs: number;
  readonly onEvent?: (event: ClamdHealthEvent) => void;
  /** The clock a scan failure's age is measured by, ms (default performance.now). */
  readonly now?: () => number;
}

/** Scan failures that say clamd itself is gone or hung, not that one message is a problem. */
const DOWN_KINDS: ReadonlySet<ClamdErrorKind> = new Set(['unreachable', 'timeout', 'connection_lost']);

/** Put before the reason while clamd answers PING but its scans failed (overloaded). */
const PONG_BUT = 'answers PING, but scans fail: ';

export class ClamdHealth {
  private failure: string | undefined = 'no answer to PING yet';
  /** When a scan last found clamd gone or hung, while it is down for that (else undefined). */
  private scanFailedAt: number | undefined;
  private announced = false;
  private timer: NodeJS.Timeout | undefined;
  private probing: Promise<void> | undefined;
  private readonly stopping = new AbortController();

  constructor(
    private readonly clamd: ClamdPinger,
    private readonly options: ClamdHealthOptions,
  ) {}

  health(): { readonly healthy: boolean; readonly reason?: string } {
    return this.failure === undefined ? { healthy: true } : { healthy: false, reason: this.failure };
  }

  /** One scan's outcome, from ClamdScanner's `onScan`. */
  scanned(event: ClamdScanEvent): void {
    if (event.outcome !== 'error') this.up();
    else if (event.kind !== undefined && DOWN_KINDS.has(event.kind)) {
      this.down(event.reason ?? `clamd at ${event.target}: a scan failed (${event.kind})`);
      this.scanFailedAt = this.now();
    }
  }

  private now(): number {
    return (this.options.now ?? performance.now.bind(performance))();
  }

  /** A PONG: up, unless a scan failed too recently for an answer to PING to say scans work again. */
  private ponged(): void {
    const failedAt = this.scanFailedAt;
    if (failedAt !== undefined && this.now() - failedAt < 2 * this.options.intervalMs) {
      if (this.failure !== undefined && !this.failure.startsWith(PONG_BUT))
        this.failure = `${PONG_BUT}${this.failure}`;
      return;
    }
    this.up();
  }

  /** PINGs now, then `intervalMs` after each answer, until stop(). */
  start(): void {
    if (this.probing || this.stopping.signal.aborted) return;
    this.probing = this.probe();
  }

  async stop(): Promise<void> {
    this.stopping.abort(new Error('postwarden is stopping'));
    clearTimeout(this.timer);
    await this.probing;
  }

  private async probe(): Promise<void> {
    const signal = this.stopping.signal;
    try {
      await this.clamd.ping({ signal });
      this.ponged();
    } catch (error) {
      if (signal.aborted) return;
      this.down(error instanceof Error ? error.message : String(error));
    }
    if (signal.aborted) return;
    this.timer = setTimeout(() => {
      this.probing = this.probe();
    }, this.options.intervalMs);
    this.timer.unref();
  }

  private up(): void {
    this.scanFailedAt = undefined;
    if (this.failure === undefined) return;
    this.failure = undefined;
    if (this.announced) this.emit('PW-F010', 'info', `clamd at ${this.clamd.target} answers again`);
    this.announced = false;
  }

  private down(reason: string): void {
    this.scanFailedAt = undefined;
    this.failure = reason;
    if (this.announced) return;
    this.announced = true;
    this.emit('PW-F009', 'error', reason);
  }

  private emit(code: ClamdHealthEvent['code'], level: ClamdHealthEvent['level'], message: string): void {
    try {
      this.options.onEvent?.({ code, level, message });
    } catch {
      // A listener's fault is not clamd's.
    }
  }
}
