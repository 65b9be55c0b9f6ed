/**
 * The policy pipeline: runs the configured checks in order, each under its own deadline and mode, and combines
 * their verdicts into one decision.
 *
 * Combination rules (STYLE.md §2, §6, §7):
 * - `reject` and `defer` from an enforcing check decide at once; later checks do not run.
 * - `allow` ends the pipeline with no objection (later checks do not run); an earlier `defer_if_permit` stands.
 * - `defer_if_permit` is remembered and the pipeline goes on, so a later reject can still win.
 * - `hold` (Postfix's hold queue) is remembered the same way and yields to any deferral or rejection.
 * - scores add up; at `rejectAt` or more the request is rejected with the symbols that got it there.
 * - observe mode records what a check would have done and changes nothing.
 * - a check that throws or misses its deadline is a failure, never a pass: it is recorded with its reason, and
 *   when nothing else decided, `onError` chooses between no objection and a gentle deferral.
 */
import type { PolicyRequest } from './request.js';
import type {
  CheckFailure,
  CheckMode,
  Decision,
  DecisionAction,
  RecordedVerdict,
  ReplySpec,
  Verdict,
} from './verdict.js';

/** Per-connection, per-message state the policy face keeps (reset when Postfix's `instance` changes). */
export interface PolicySession {
  /** RCPT requests seen so far for this message on this connection, this one included. */
  readonly rcptCount: number;
  /**
   * Names of the headers already prepended to this message. Postfix applies a PREPEND for every recipient that
   * gets it, so each header goes out once per message; one reply carries one header, so a second one waits for
   * the next recipient.
   */
  readonly headersSent: ReadonlySet<string>;
  /** Per-message memo for checks whose answer does not change between recipients (SPF), keyed by check. */
  readonly memo: Map<string, unknown>;
}

/**
 * A per-message session (the policy face keeps one per message). Its set and memo are made on first use: a
 * session is made for every message, and three collections each cost more than the rest of the bookkeeping.
 */
export class MessageSession implements PolicySession {
  rcptCount = 0;
  private sent: Set<string> | undefined;
  private memoMap: Map<string, unknown> | undefined;

  get headersSent(): Set<string> {
    return (this.sent ??= new Set());
  }

  get memo(): Map<string, unknown> {
    return (this.memoMap ??= new Map());
  }

  /** Whether the memo holds anything (without making it). */
  get memoSize(): number {
    return this.memoMap?.size ?? 0;
  }
}

/** A fresh per-message session. */
export function newSession(): MessageSession {
  return new MessageSession();
}

/** `Received-SPF: pass …` → `received-spf`. */
export function headerName(header: string): string {
  const colon = header.indexOf(':');
  return (colon < 0 ? header : header.slice(0, colon)).trim().toLowerCase();
}

export interface PolicyContext {
  readonly session: PolicySession;
  /** The summed score of the enforcing checks that ran before this one (greylisting's score gate reads it). */
  readonly score: number;
  /** The verdicts of the checks that ran before this one (greylisting's bypass symbols read them). */
  readonly earlier: readonly RecordedVerdict[];
  /** Aborted when the check's deadline passes; checks that wait on I/O should honour it. */
  readonly signal: AbortSignal;
}

export interface PolicyCheck {
  /** Config name of the check, e.g. `relay`. */
  readonly name: string;
  run(request: PolicyRequest, ctx: PolicyContext): Promise<readonly Verdict[]> | readonly Verdict[];
}

export interface PipelineStage {
  readonly check: PolicyCheck;
  readonly mode: Exclude<CheckMode, 'off'>;
  readonly timeoutMs: number;
}

export type OnError = 'dunno' | 'defer_if_permit';

export interface PipelineOptions {
  readonly onError: OnError;
  /** Reject when the summed score reaches this (0 disables score rejection). */
  readonly rejectAt: number;
}

export class CheckTimeout extends Error {
  constructor(
    readonly check: string,
    readonly timeoutMs: number,
  ) {
    super(`${check} gave no answer within ${timeoutMs} ms`);
  }
}

/** PW-E002 for a missed deadline, a typed failure's own code (PW-E003 lookup, PW-S001 store), else PW-E001. */
function failureCode(error: unknown): string {
  if (error instanceof CheckTimeout) return 'PW-E002';
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^PW-[ES]\d{3}$/.test(code) ? code : 'PW-E001';
}

const STRENGTH: Record<DecisionAction, number> = {
  dunno: 0,
  prepend: 1,
  hold: 1.5,
  defer_if_permit: 2,
  defer: 3,
  reject: 4,
};

/**
 * Deadlines for the checks of one policy connection. Requests on a connection are sequential, and so are the
 * checks of a request, so one AbortController and one timer serve them all: the timer is re-armed with
 * `refresh()` rather than created per check, and the controller is replaced only when a deadline fires. (A
 * controller and a timer per check cost ~15% of a policy request in the benchmark.)
 */
export class CheckDeadlines {
  private controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private timerMs = 0;
  private armed:
    { readonly check: string; readonly timeoutMs: number; readonly reject: (e: Error) => void } | undefined;

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Settles with `pending`, or rejects with CheckTimeout (and aborts `signal`) when `timeoutMs` passes first. */
  race<T>(check: string, timeoutMs: number, pending: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry = { check, timeoutMs, reject };
      this.armed = entry;
      this.arm(timeoutMs);
      const done = () => {
        if (this.armed !== entry) return;
        this.armed = undefined;
        this.timer?.unref(); // idle between checks: the timer must not keep the process alive
      };
      pending.then(
        (value) => {
          done();
          resolve(value);
        },
        (error: unknown) => {
          done();
          reject(error);
        },
      );
    });
  }

  private arm(timeoutMs: number): void {
    if (this.timer !== undefined && this.timerMs === timeoutMs) {
      this.timer.refresh().ref();
      return;
    }
    clearTimeout(this.timer);
    this.timerMs = timeoutMs;
    this.timer = setTimeout(() => this.fire(), timeoutMs);
  }

  private fire(): void {
    const entry = this.armed;
    if (!entry) return; // the check it was armed for has answered
    this.armed = undefined;
    this.timer?.unref();
    // Settle the race before aborting: a check that answers its abort must not win it.
    entry.reject(new CheckTimeout(entry.check, entry.timeoutMs));
    this.controller.abort();
    this.controller = new AbortController();
  }
}

function scoreVerdict(score: number, rejectAt: number, symbols: readonly string[]): RecordedVerdict {
  const text = `Message refused: score ${score.toFixed(1)} reached ${rejectAt} (${symbols.join(' ')})`;
  return {
    check: 'score',
    symbol: 'SCORE_REJECT',
    score: 0,
    action: 'reject',
    reason: text,
    reply: { code: 554, dsn: '5.7.1', text },
    mode: 'enforce',
    ms: 0,
  };
}

/**
 * Runs the stages and combines their verdicts. Synchronous while the checks answer synchronously (lists, relay,
 * HELO, limits: no promise, no microtask turn, no deadline timer), and a promise from the first check that waits
 * on I/O: most requests of a busy MX never need the event loop between checks.
 */
export function runPipeline(
  stages: readonly PipelineStage[],
  request: PolicyRequest,
  session: PolicySession,
  options: PipelineOptions,
  deadlines: CheckDeadlines = new CheckDeadlines(),
  clock: () => number = performance.now.bind(performance),
): Decision | Promise<Decision> {
  return new PipelineRun(stages, request, session, options, deadlines, clock).from(0);
}

class PipelineRun {
  private readonly verdicts: RecordedVerdict[] = [];
  private readonly failures: CheckFailure[] = [];
  private score = 0;
  private decided: RecordedVerdict | undefined;
  private header: string | undefined;

  constructor(
    private readonly stages: readonly PipelineStage[],
    private readonly request: PolicyRequest,
    private readonly session: PolicySession,
    private readonly options: PipelineOptions,
    private readonly deadlines: CheckDeadlines,
    private readonly clock: () => number,
  ) {}

  /** Runs the stages from `index` on; the decision, or a promise of it once a check waits. */
  from(index: number): Decision | Promise<Decision> {
    for (let i = index; i < this.stages.length; i++) {
      const stage = this.stages[i] as PipelineStage;
      const started = this.clock();
      let produced: readonly Verdict[] | Promise<readonly Verdict[]>;
      try {
        produced = stage.check.run(this.request, {
          session: this.session,
          score: this.score,
          earlier: this.verdicts,
          signal: this.deadlines.signal,
        });
      } catch (error) {
        this.fail(stage, error, started);
        continue;
      }
      if (produced instanceof Promise) {
        return this.deadlines.race(stage.check.name, stage.timeoutMs, produced).then(
          (verdicts) => (this.take(stage, verdicts, started) ? this.finish() : this.from(i + 1)),
          (error: unknown) => {
            this.fail(stage, error, started);
            return this.from(i + 1);
          },
        );
      }
      if (this.take(stage, produced, started)) break;
    }
    return this.finish();
  }

  private fail(stage: PipelineStage, error: unknown, started: number): void {
    this.failures.push({
      check: stage.check.name,
      code: failureCode(error),
      reason: error instanceof Error ? error.message : String(error),
      mode: stage.mode,
      ms: this.clock() - started,
    });
  }

  /** Records a stage's verdicts; true when one of them ends the pipeline. */
  private take(stage: PipelineStage, produced: readonly Verdict[], started: number): boolean {
    const ms = this.clock() - started;
    for (const verdict of produced) {
      const recorded: RecordedVerdict = { ...verdict, mode: stage.mode, ms };
      this.verdicts.push(recorded);
      if (stage.mode !== 'enforce') continue;
      this.score += verdict.score;
      switch (verdict.action) {
        case 'reject':
        case 'defer':
          this.decided = recorded;
          return true;
        case 'allow':
          return true;
        case 'defer_if_permit':
          if (!this.decided || this.decided.action === 'hold') this.decided = recorded;
          break;
        case 'hold':
          this.decided ??= recorded;
          break;
        case 'prepend':
          // Postfix refuses PREPEND in smtpd_end_of_data_restrictions ("must be used before").
          if (
            this.request.protocolState !== 'END-OF-MESSAGE' &&
            verdict.header &&
            !this.session.headersSent.has(headerName(verdict.header))
          ) {
            this.header ??= verdict.header;
          }
          break;
        case undefined:
          break;
      }
    }
    return false;
  }

  private finish(): Decision {
    const { verdicts, failures, score, options, header } = this;
    let decided = this.decided;
    let action: DecisionAction = decided ? (decided.action as DecisionAction) : header ? 'prepend' : 'dunno';
    if (STRENGTH[action] < STRENGTH.reject && options.rejectAt > 0 && score >= options.rejectAt) {
      const scoring = verdicts.filter((v) => v.mode === 'enforce' && v.score !== 0).map((v) => v.symbol);
      decided = scoreVerdict(score, options.rejectAt, scoring);
      verdicts.push(decided);
      action = 'reject';
    }

    // Observe mode changes nothing, its failures included.
    const enforced = failures.filter((f) => f.mode === 'enforce');
    let onError = false;
    let reply: ReplySpec | undefined = decided?.reply;
    if (
      enforced.length > 0 &&
      STRENGTH[action] < STRENGTH.defer_if_permit &&
      options.onError === 'defer_if_permit'
    ) {
      onError = true;
      action = 'defer_if_permit';
      const names = enforced.map((f) => f.check).join(', ');
      reply = { code: 450, dsn: '4.3.0', text: `Temporary failure in ${names}, try again later` };
    } else if (enforced.length > 0 && STRENGTH[action] < STRENGTH.defer_if_permit) {
      onError = true;
    }

    return {
      action,
      ...(decided && !onError ? { decidedBy: decided } : {}),
      ...(reply ? { reply } : {}),
      ...(header && action === 'prepend' ? { header } : {}),
      score,
      verdicts,
      failures,
      onError,
    };
  }
}
