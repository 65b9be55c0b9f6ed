/**
 * Verdicts and decisions: what a check says, and what the pipeline makes of all of them.
 *
 * A check returns verdicts, never replies. A verdict names what fired (`symbol`), what it is worth (`score`),
 * why (`reason`, safe to show a client) and, for hard verdicts, what must happen (`action`). The reply function
 * in the policy face is the only place that turns a decision into wire text.
 */

/**
 * Hard actions, strongest first. `allow` ends the pipeline with no objection (later checks are skipped);
 * `prepend` adds a header and decides nothing; `hold` accepts the message into Postfix's hold queue (a later
 * reject or deferral still wins).
 */
export type VerdictAction = 'reject' | 'defer' | 'defer_if_permit' | 'allow' | 'prepend' | 'hold';

/** An SMTP reply a hard verdict asks for: code and enhanced status code must agree in class (4 or 5). */
export interface ReplySpec {
  readonly code: number;
  readonly dsn: string;
  readonly text: string;
}

export interface Verdict {
  /** The check that produced it (its config name, e.g. `relay`). */
  readonly check: string;
  /** What fired, upper-case, stable: metric label and log key (e.g. `RELAY_DENIED`). */
  readonly symbol: string;
  /** Added to the request's score; 0 for informational or purely hard verdicts. */
  readonly score: number;
  readonly action?: VerdictAction;
  /** Why, in words fit for a log line and, for hard verdicts, for the SMTP client. No secrets. */
  readonly reason: string;
  /** For `reject`/`defer`: the exact reply; otherwise the reply function picks a default. */
  readonly reply?: ReplySpec;
  /** For `prepend`: one header line, `Name: value`. */
  readonly header?: string;
}

export type CheckMode = 'off' | 'observe' | 'enforce';

/** A verdict as the pipeline recorded it: with the mode it ran in and how long its check took. */
export interface RecordedVerdict extends Verdict {
  readonly mode: Exclude<CheckMode, 'off'>;
  readonly ms: number;
}

/** Why a check produced no usable answer. */
export interface CheckFailure {
  readonly check: string;
  readonly code: string;
  readonly reason: string;
  readonly mode: Exclude<CheckMode, 'off'>;
  readonly ms: number;
}

export type DecisionAction = 'dunno' | 'reject' | 'defer' | 'defer_if_permit' | 'prepend' | 'hold';

export interface Decision {
  readonly action: DecisionAction;
  /** The verdict that decided (hard verdict or the score threshold), when there is one. */
  readonly decidedBy?: RecordedVerdict;
  readonly reply?: ReplySpec;
  readonly header?: string;
  readonly score: number;
  readonly verdicts: readonly RecordedVerdict[];
  readonly failures: readonly CheckFailure[];
  /** True when a failure (not a verdict) shaped the answer, i.e. `on_error` applied. */
  readonly onError: boolean;
}
