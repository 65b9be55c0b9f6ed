/**
 * The content filter's pure core: what the scanners see of a message, what they say, and how their verdicts
 * combine into one outcome. The face (src/filter) spools and parses the message and acts on the outcome; the
 * scanners (src/core/scanners) judge; adapters (clamd, archives) come in through the ports below.
 *
 * Outcomes, strongest first: `defer` (an internal failure: 451, Postfix keeps the message and retries),
 * `quarantine` (held, not delivered, with a notice), `deliver` (with the filter's headers, tagged or not). There
 * is no reject: after the queue, a 5xx would bounce to a sender who is probably forged (FILTER_README).
 */
import { withDeadline } from '../util/deadline.js';

export interface Envelope {
  /** MAIL FROM; '' for the null sender. */
  readonly sender: string;
  readonly recipients: readonly string[];
  /** The client that gave the message to Postfix, as Postfix forwards it (XFORWARD ADDR and HELO), when known. */
  readonly client?: { readonly address: string; readonly helo: string };
}

/** One MIME part, as the parser found it (bounded: see MessageFacts.limitsHit). */
export interface MessagePart {
  /** Position in the MIME tree, `1`, `1.2`, … */
  readonly path: string;
  /** Nesting depth, 0 for the top level. */
  readonly depth: number;
  /** Declared content type, lower-case, without parameters. */
  readonly contentType: string;
  /** The file name it declares (Content-Disposition or Content-Type name), decoded. */
  readonly filename?: string;
  /** Decoded size in bytes (of a body text part cut at its read budget, what was read: see filter/parse.ts). */
  readonly size: number;
  /** The decoded content (its first `filter.parse.keep_bytes`), for archive and type inspection. */
  readonly content?: Uint8Array;
  /** For text/plain and text/html bodies: the decoded text (its first `filter.parse.max_text_chars`). */
  readonly text?: string;
}

export interface HeaderField {
  /** As written, e.g. `Received`. */
  readonly name: string;
  /** Unfolded value. */
  readonly value: string;
}

export interface MessageFacts {
  readonly envelope: Envelope;
  /** Size of the message as received, bytes. */
  readonly size: number;
  /** The top-level header fields, in order. */
  readonly headers: readonly HeaderField[];
  readonly parts: readonly MessagePart[];
  /** What the parser found wrong (broken MIME, bad encodings); tolerated, scored by the sanity scanner. */
  readonly problems: readonly string[];
  /** True when a parse bound (depth, parts, bytes kept) stopped the parser early. */
  readonly limitsHit: boolean;
}

/** The raw message, readable again from the spool as often as a scanner needs (clamd streams it whole). */
export interface MessageSource {
  readonly size: number;
  chunks(): AsyncIterable<Uint8Array>;
}

export type ScanAction = 'quarantine';

/** Who may release a quarantined message: viruses only the admin; banned files and loops on request. */
export type ReleasableBy = 'admin' | 'recipient';

export interface ScanVerdict {
  /** The scanner's config name, e.g. `antivirus`. */
  readonly scanner: string;
  /** What fired, upper-case and stable: metric label and log key. */
  readonly symbol: string;
  /** Added to the message's spam score (tagging); 0 for hard verdicts. */
  readonly score: number;
  readonly action?: ScanAction;
  /** Why, fit for a log line and for the notice to the recipient. No secrets. */
  readonly reason: string;
  /** For quarantine: who gets a notice (the postmaster for loops, which are nobody's mail). */
  readonly notify?: 'recipients' | 'postmaster';
  readonly releasableBy?: ReleasableBy;
}

export interface ScanContext {
  readonly source: MessageSource;
  /** Aborted at the scanner's deadline. */
  readonly signal: AbortSignal;
  /** Adds a header field to the message as delivered (not in observe mode), e.g. Authentication-Results;
   * absent where nothing is delivered (learning, tests). */
  addHeader?(field: HeaderField): void;
}

export interface ContentScanner {
  readonly name: string;
  scan(message: MessageFacts, ctx: ScanContext): Promise<readonly ScanVerdict[]> | readonly ScanVerdict[];
}

/** What a scanner that failed (error, deadline) makes of the message: hold it back (451) or let it pass. */
export type ScannerFailure = 'defer' | 'pass';

export interface ScannerStage {
  readonly scanner: ContentScanner;
  readonly mode: 'observe' | 'enforce';
  readonly timeoutMs: number;
  readonly onFailure: ScannerFailure;
}

export interface RecordedScanVerdict extends ScanVerdict {
  readonly mode: 'observe' | 'enforce';
  readonly ms: number;
}

export interface ScanFailure {
  readonly scanner: string;
  readonly reason: string;
  readonly onFailure: ScannerFailure;
  readonly mode: 'observe' | 'enforce';
  readonly ms: number;
}

export type ContentOutcome =
  | { readonly kind: 'deliver' }
  | { readonly kind: 'quarantine'; readonly by: RecordedScanVerdict }
  | { readonly kind: 'defer'; readonly reason: string };

export interface ContentDecision {
  readonly outcome: ContentOutcome;
  /** How long each scanner took, verdicts or not. */
  readonly timings: readonly { readonly scanner: string; readonly ms: number }[];
  readonly score: number;
  /** The score reached the spam tag threshold (X-Spam-Flag: YES). */
  readonly spam: boolean;
  readonly verdicts: readonly RecordedScanVerdict[];
  readonly failures: readonly ScanFailure[];
  /** Header fields the enforcing scanners add, in scanner order. */
  readonly headers: readonly HeaderField[];
}

class ScanTimeout extends Error {}

/**
 * Runs every scanner (all of them: a message held for a virus is also reported banned, so the log tells the
 * whole story), each under its deadline, and combines: an enforcing failure with `onFailure: defer` defers the
 * message; else the first enforcing quarantine verdict holds it; else it is delivered with the summed score.
 * Observe mode records and changes nothing.
 */
/** Score thresholds (filter.spam): at `tagAt` the message is marked spam, at `holdAt` it is held. */
export interface SpamThresholds {
  readonly tagAt: number;
  /** After the queue: quarantine; before it: refuse (550). */
  readonly holdAt: number;
}

export async function scanMessage(
  stages: readonly ScannerStage[],
  message: MessageFacts,
  source: MessageSource,
  spam?: SpamThresholds,
  clock: () => number = performance.now.bind(performance),
): Promise<ContentDecision> {
  const verdicts: RecordedScanVerdict[] = [];
  const failures: ScanFailure[] = [];
  const timings: { scanner: string; ms: number }[] = [];
  const headers: HeaderField[] = [];
  for (const stage of stages) {
    const started = clock();
    const controller = new AbortController();
    const added: HeaderField[] = [];
    const ctx: ScanContext = { source, signal: controller.signal, addHeader: (field) => added.push(field) };
    try {
      const produced = await withDeadline(
        Promise.resolve().then(() => stage.scanner.scan(message, ctx)),
        stage.timeoutMs,
        () => new ScanTimeout(`${stage.scanner.name} gave no answer within ${stage.timeoutMs} ms`),
        () => controller.abort(),
      );
      const ms = clock() - started;
      timings.push({ scanner: stage.scanner.name, ms });
      for (const verdict of produced) verdicts.push({ ...verdict, mode: stage.mode, ms });
      if (stage.mode === 'enforce') headers.push(...added);
    } catch (error) {
      failures.push({
        scanner: stage.scanner.name,
        reason: error instanceof Error ? error.message : String(error),
        onFailure: stage.onFailure,
        mode: stage.mode,
        ms: clock() - started,
      });
    }
  }
  const enforced = verdicts.filter((v) => v.mode === 'enforce');
  const score = enforced.reduce((sum, v) => sum + v.score, 0);
  const blocking = failures.find((f) => f.mode === 'enforce' && f.onFailure === 'defer');
  let held = enforced.find((v) => v.action === 'quarantine');
  if (!held && spam && score >= spam.holdAt) {
    held = {
      scanner: 'spam',
      symbol: 'SPAM_HELD',
      score: 0,
      action: 'quarantine',
      reason: `spam score ${score.toFixed(1)} reached ${spam.holdAt}`,
      notify: 'recipients',
      releasableBy: 'recipient',
      mode: 'enforce',
      ms: 0,
    };
    verdicts.push(held);
  }
  const outcome: ContentOutcome = blocking
    ? { kind: 'defer', reason: `${blocking.scanner} failed: ${blocking.reason}` }
    : held
      ? { kind: 'quarantine', by: held }
      : { kind: 'deliver' };
  return {
    outcome,
    timings,
    score,
    spam: spam !== undefined && score >= spam.tagAt,
    verdicts,
    failures,
    headers,
  };
}
