/**
 * The filter service: one message from Postfix's content_filter transport, start to answer. It spools the
 * message, parses it, runs the scanners, then re-injects it (with the filter's header fields in front) or
 * holds it in quarantine, and only then answers 250. Every internal failure answers 451, so Postfix keeps the
 * message and retries; content is never refused with 5xx after the queue (the one 5xx is a message over
 * `filter.max_message_bytes`, a size and not a content decision, as Postfix's own limit). In before-queue mode
 * (smtpd_proxy_filter) the sending client is still connected, so a hard verdict answers 550 5.7.1 instead of
 * holding the message. One decision log line
 * per message carries Postfix's queue id, the verdicts and why.
 */
import type { Readable } from 'node:stream';
import { withDeadline } from '../util/deadline.js';
import {
  type ContentDecision,
  type MessageFacts,
  scanMessage,
  type ScannerStage,
  type SpamThresholds,
} from '../core/content.js';
import { bayesTokens, type BayesSettings } from '../core/scanners/bayes.js';
import type { BayesModel } from '../core/spam/bayes.js';
import type { DecisionRecorder, RecordedDecisionVerdict } from '../core/decisions.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { DataDeadline } from './data-deadline.js';
import { type NoticeSettings, sendNotices } from './notice.js';
import { parseMessage, type ParseLimits } from './parse.js';
import type { Quarantine } from './quarantine.js';
import {
  reinject,
  ReinjectError,
  type ReinjectEnvelope,
  type ReinjectTarget,
  type XForward,
} from './reinject.js';
import type { FieldFilter } from './header-fields.js';
import type { Spool, SpooledMessage } from './spool.js';

export interface FilterTransaction {
  readonly envelope: ReinjectEnvelope extends infer E ? Omit<E, 'size'> : never;
  readonly xforward: XForward;
  /** The connecting client (Postfix), for the log. */
  readonly remote: string;
}

export interface FilterReply {
  readonly code: 250 | 451 | 550 | 552;
  readonly text: string;
}

export interface FilterDeps {
  readonly stages: readonly ScannerStage[];
  readonly spool: Spool;
  readonly quarantine: Quarantine;
  readonly reinject: ReinjectTarget;
  readonly parse: ParseLimits;
  readonly messageTimeoutMs: number;
  /** The classifier and its autolearn thresholds, when autolearn is on. */
  readonly autolearn?: {
    readonly model: BayesModel;
    readonly settings: BayesSettings['autolearn'] & Pick<BayesSettings, 'max_tokens'>;
  };
  /** Spam thresholds (filter.spam), when a scanner scores spam. */
  readonly spam?: SpamThresholds;
  /** smtpd_proxy_filter mode: a hard verdict is refused (550 5.7.1) instead of held. */
  readonly beforeQueue?: boolean;
  /** Whether an address is in local_domains (outbound mail); the notice then goes to the sender. */
  readonly isLocalSender?: (address: string) => Promise<boolean>;
  /** Notices of held messages; absent when `filter.quarantine.notify` is off. */
  readonly notify?: NoticeSettings;
  /** Files each decision under the message's queue id (decisions.enabled), in the background. */
  readonly decisions?: DecisionRecorder;
  /** This host's name, in the headers and the log. */
  readonly instance: string;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly now?: () => Date;
}

/** Postfix's queue id of the message being filtered, from the topmost Received: field (`… with ESMTP id ABC`). */
export function queueIdOf(received: string | undefined): string | undefined {
  return received ? /\bid\s+([0-9A-Za-z]{6,})\b/.exec(received)?.[1] : undefined;
}

/**
 * The header fields postwarden writes (lower case). Incoming copies are removed from the message as delivered:
 * Sieve files mail by X-Spam-Flag, clients sort by X-Spam-Status, and a sender must not set them in advance.
 */
export const OWN_HEADER_FIELDS: ReadonlySet<string> = new Set([
  'x-spam-flag',
  'x-spam-score',
  'x-spam-status',
  'x-postwarden-status',
  'x-postwarden-note',
  'x-postwarden-released',
]);

/**
 * What the message as delivered leaves out: incoming copies of our own fields, and Authentication-Results fields
 * that claim our authserv-id (RFC 8601 §5: only the copy this host adds may carry it).
 */
export function ownHeaderFields(authservId: string): FieldFilter {
  const ours = authservId.toLowerCase();
  return (name, value) => {
    if (OWN_HEADER_FIELDS.has(name)) return true;
    if (name !== 'authentication-results') return false;
    // The authserv-id is the first token, after any comments: `mx.example.org 1; dkim=pass …`.
    const id = /^[\s]*(?:\([^)]*\)[\s]*)*([^\s;()]+)/.exec(value())?.[1];
    return id?.toLowerCase() === ours;
  };
}

/** The filter's own header fields, prepended to the message: nothing of the original is re-encoded. */
export function statusHeaders(
  decision: ContentDecision,
  instance: string,
  virusScanned: boolean,
  date: Date,
  spam?: SpamThresholds,
  /** The message starts with a folded line: a last field absorbs it, so ours are not extended by the sender. */
  startsFolded = false,
): Buffer {
  const symbols = [...new Set(decision.verdicts.filter((v) => v.mode === 'enforce').map((v) => v.symbol))];
  const result = decision.outcome.kind === 'quarantine' ? 'held' : 'clean';
  const lines = [
    `X-Postwarden-Status: ${result}; score=${decision.score.toFixed(1)}` +
      `${symbols.length > 0 ? `; symbols=${symbols.join(',')}` : ''}; by ${instance}; ${date.toUTCString()}`,
  ];
  if (virusScanned) lines.push(`X-Virus-Scanned: clamav via postwarden on ${instance}`);
  if (spam) {
    // SpamAssassin's spelling, so existing Sieve scripts and client rules keep working.
    const score = decision.score.toFixed(1);
    if (decision.spam) lines.push('X-Spam-Flag: YES');
    lines.push(`X-Spam-Score: ${score}`);
    lines.push(
      `X-Spam-Status: ${decision.spam ? 'Yes' : 'No'}, score=${score} required=${spam.tagAt.toFixed(1)}` +
        ` tests=${symbols.join(',') || 'none'}`,
    );
  }
  for (const field of decision.headers) lines.push(`${field.name}: ${field.value}`);
  if (startsFolded) lines.push('X-Postwarden-Note: the original header began with a continuation line');
  return Buffer.from(`${lines.join('\r\n')}\r\n`);
}

/** The client Postfix received the message from (XFORWARD ADDR and HELO), when Postfix knows it. */
function clientOf(xforward: XForward): { address: string; helo: string } | undefined {
  const address = xforward.get('ADDR');
  if (!address || address.startsWith('[')) return undefined; // [UNAVAILABLE], [TEMPUNAVAIL]
  const helo = xforward.get('HELO') ?? '';
  return { address: address.replace(/^IPv6:/i, ''), helo: helo.startsWith('[') ? '' : helo };
}

class MessageDeadline extends Error {}

/** The code and the 451 text of a message that failed: each is temporary, Postfix keeps the message. */
function failureOf(error: unknown): { code: string; text: string } {
  if (error instanceof DataDeadline) {
    // Not all of the message came in time (the client trickled it); the server closes the connection.
    return { code: 'PW-F008', text: '4.4.2 Message data not received in time, try again later' };
  }
  if (error instanceof MessageDeadline) {
    return { code: 'PW-F003', text: '4.4.5 Content filter took too long, try again later' };
  }
  return { code: 'PW-F001', text: '4.3.0 Content filter failure, try again later' };
}

export class FilterService {
  constructor(private readonly deps: FilterDeps) {}

  /** Answers one message; never throws. */
  async handle(data: Readable, transaction: FilterTransaction): Promise<FilterReply> {
    const { metrics, logger } = this.deps;
    const started = performance.now();
    const inFlight = metrics.get('postwarden_filter_messages_in_flight');
    inFlight.inc();
    let spooled: SpooledMessage | undefined;
    let work: Promise<unknown> = Promise.resolve();
    const log: Record<string, unknown> = { event: 'filter.decision', remote: transaction.remote };
    let reply: FilterReply;
    try {
      // The envelope first: a message that fails while it is spooled is named in the log too.
      log['sender'] = transaction.envelope.sender;
      log['recipients'] = transaction.envelope.recipients.map((r) => r.address);
      spooled = await this.deps.spool.write(data);
      metrics.get('postwarden_filter_bytes_total').inc(spooled.size);
      log['size'] = spooled.size;
      const ms = this.deps.messageTimeoutMs;
      const controller = new AbortController();
      const processing = this.process(spooled, transaction, log, controller.signal);
      work = processing;
      reply = await withDeadline(
        processing,
        ms,
        () => new MessageDeadline(`no answer within filter.message_timeout_ms (${ms} ms)`),
        () => controller.abort(),
      );
    } catch (error) {
      const failure = failureOf(error);
      metrics.get('postwarden_errors_total').inc({ code: failure.code });
      log['failure'] = { code: failure.code, reason: (error as Error).message };
      reply = { code: 451, text: failure.text };
    } finally {
      // The spool file goes only when the work on it has settled: past the deadline, a scan or the re-injection
      // may still be reading it.
      const done = spooled;
      if (done) void work.catch(() => undefined).finally(() => done.remove());
      inFlight.dec();
    }
    const seconds = (performance.now() - started) / 1000;
    // Counted when final: a message whose re-injection failed was deferred, not delivered.
    const outcome = reply.code === 451 ? 'defer' : String(log['outcome'] ?? 'defer');
    metrics.get('postwarden_filter_messages_total').inc({ outcome });
    metrics.get('postwarden_filter_replies_total').inc({ code: String(reply.code) });
    const failure = log['failure'] as { code?: string } | undefined;
    if (failure?.code) log['code'] = failure.code;
    metrics.get('postwarden_filter_message_duration_seconds').observe(seconds);
    this.fileDecision(log, transaction, reply);
    logger.info(
      { ...log, reply: `${reply.code} ${reply.text}`, ms: Math.round(seconds * 1000) },
      'filter decision',
    );
    return reply;
  }

  /** Files the decision under the queue id (from the topmost Received: field), when there is one. */
  private fileDecision(
    log: Record<string, unknown>,
    transaction: FilterTransaction,
    reply: FilterReply,
  ): void {
    const queueId = log['queue_id'];
    if (!this.deps.decisions || typeof queueId !== 'string') return;
    const verdicts = (log['verdicts'] ?? []) as readonly (Omit<RecordedDecisionVerdict, 'check'> & {
      scanner: string;
    })[];
    const failures = (log['failures'] ?? []) as readonly { scanner: string; reason: string }[];
    const failure = log['failure'] as { code: string; reason: string } | undefined;
    this.deps.decisions.record(queueId, {
      face: 'filter',
      time: new Date().toISOString(),
      instance: this.deps.instance,
      sender: transaction.envelope.sender,
      recipients: transaction.envelope.recipients.map((r) => r.address),
      action: reply.code === 451 ? 'defer' : String(log['outcome'] ?? 'defer'),
      score: typeof log['score'] === 'number' ? log['score'] : 0,
      verdicts: verdicts.map(({ scanner, symbol, score, mode, reason }) => ({
        check: scanner,
        symbol,
        score,
        mode,
        reason,
      })),
      ...(failures.length > 0 || failure
        ? {
            failures: [
              ...failures.map((f) => ({ check: f.scanner, code: 'PW-F002', reason: f.reason })),
              ...(failure ? [{ check: 'filter', code: failure.code, reason: failure.reason }] : []),
            ],
          }
        : {}),
      reply: `${reply.code} ${reply.text}`,
      ...(typeof log['quarantine_id'] === 'string' ? { quarantineId: log['quarantine_id'] } : {}),
    });
  }

  /**
   * Learns from the filter's own confident decisions: the score of the other scanners (the classifier's own
   * verdict left out, or it would teach itself) at or above `spam_at` is spam, below `ham_below` with nothing held
   * is ham. In the background: the answer to Postfix does not wait for it, and a failure only costs the lesson.
   */
  private autolearn(facts: MessageFacts, decision: ContentDecision, log: Record<string, unknown>): void {
    const learn = this.deps.autolearn;
    if (!learn || decision.outcome.kind === 'defer') return;
    const others = decision.verdicts.filter(
      (v) => v.mode === 'enforce' && v.scanner !== 'bayes' && v.scanner !== 'spam',
    );
    const score = others.reduce((sum, v) => sum + v.score, 0);
    const held = others.some((v) => v.action === 'quarantine');
    const cls =
      score >= learn.settings.spam_at
        ? 'spam'
        : !held && score < learn.settings.ham_below
          ? 'ham'
          : undefined;
    if (!cls) return;
    log['autolearn'] = cls;
    const messageId = facts.headers.find((h) => h.name.toLowerCase() === 'message-id')?.value.trim();
    if (!messageId) return; // without an id, learning again could not be told apart from learning twice
    void learn.model.learn(messageId, bayesTokens(facts, learn.settings), cls).catch((error: unknown) => {
      this.deps.logger.warn({ code: 'PW-F007', err: error }, 'autolearn failed; the message was not learned');
    });
  }

  /** Who hears about a held message: outbound mail (a local sender) tells the sender, not the outside recipients. */
  private async audience(
    notify: 'recipients' | 'postmaster' | undefined,
    sender: string,
  ): Promise<'recipients' | 'postmaster' | 'sender'> {
    if (notify === 'postmaster') return 'postmaster';
    const local =
      sender !== '' && this.deps.isLocalSender
        ? await this.deps.isLocalSender(sender).catch(() => false)
        : false;
    return local ? 'sender' : 'recipients';
  }

  private async process(
    spooled: SpooledMessage,
    transaction: FilterTransaction,
    log: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<FilterReply> {
    const { metrics } = this.deps;
    if (spooled.sizeExceeded) {
      log['outcome'] = 'too_big';
      return { code: 552, text: '5.3.4 Message too big for the content filter' };
    }
    const envelope = { ...transaction.envelope, size: spooled.size };
    const client = clientOf(transaction.xforward);
    const facts = await parseMessage(
      spooled.open(),
      {
        sender: envelope.sender,
        recipients: envelope.recipients.map((r) => r.address),
        ...(client ? { client } : {}),
      },
      spooled.size,
      spooled.problems,
      this.deps.parse,
    );
    const received = facts.headers.find((h) => h.name.toLowerCase() === 'received')?.value;
    const queueId = queueIdOf(received);
    if (queueId) log['queue_id'] = queueId;
    const decision = await scanMessage(this.deps.stages, facts, spooled, this.deps.spam);
    for (const v of decision.verdicts) {
      metrics
        .get('postwarden_filter_verdicts_total')
        .inc({ scanner: v.scanner, symbol: v.symbol, mode: v.mode });
    }
    for (const t of decision.timings) {
      metrics.get('postwarden_filter_scanner_duration_seconds').observe({ scanner: t.scanner }, t.ms / 1000);
    }
    for (const f of decision.failures) {
      metrics.get('postwarden_filter_scanner_failures_total').inc({ scanner: f.scanner });
      metrics.get('postwarden_errors_total').inc({ code: 'PW-F002' });
    }
    log['score'] = decision.score;
    log['verdicts'] = decision.verdicts.map((v) => ({
      scanner: v.scanner,
      symbol: v.symbol,
      score: v.score,
      mode: v.mode,
      reason: v.reason,
      ms: Math.round(v.ms),
    }));
    if (decision.failures.length > 0) log['failures'] = decision.failures;
    const virusScanned =
      this.deps.stages.some((s) => s.scanner.name === 'antivirus') &&
      !decision.failures.some((f) => f.scanner === 'antivirus');
    const headers = statusHeaders(
      decision,
      this.deps.instance,
      virusScanned,
      (this.deps.now ?? (() => new Date()))(),
      this.deps.spam,
      spooled.startsFolded,
    );
    const outcome = decision.outcome;
    log['outcome'] = outcome.kind;
    this.autolearn(facts, decision, log);

    if (outcome.kind === 'defer') {
      return { code: 451, text: `4.3.0 Content scan incomplete (${outcome.reason}), try again later` };
    }
    if (outcome.kind === 'quarantine' && this.deps.beforeQueue) {
      // Before the queue the sender still holds the message: refusing it bounces nothing to a forged address.
      log['outcome'] = 'reject';
      return { code: 550, text: `5.7.1 Message content rejected (${outcome.by.symbol})` };
    }
    if (outcome.kind === 'quarantine') {
      const id = this.deps.quarantine.newId();
      const subject = facts.headers.find((h) => h.name.toLowerCase() === 'subject')?.value;
      const messageId = facts.headers.find((h) => h.name.toLowerCase() === 'message-id')?.value;
      if (signal.aborted) throw new MessageDeadline('the deadline passed before the message was held');
      await this.deps.quarantine.hold(spooled.forDelivery(headers), {
        id,
        time: Date.now(),
        scanner: outcome.by.scanner,
        symbol: outcome.by.symbol,
        reason: outcome.by.reason,
        releasableBy: outcome.by.releasableBy ?? 'admin',
        sender: envelope.sender,
        recipients: envelope.recipients.map((r) => r.address),
        size: spooled.size,
        ...(subject ? { subject: subject.slice(0, 200) } : {}),
        ...(messageId ? { messageId: messageId.slice(0, 200) } : {}),
        ...(queueId ? { queueId } : {}),
      });
      log['quarantine_id'] = id;
      if (this.deps.notify) {
        const entry = this.deps.quarantine.entry(id);
        const failed = entry
          ? await sendNotices(
              entry,
              await this.audience(outcome.by.notify, envelope.sender),
              this.deps.reinject,
              this.deps.notify,
            )
          : [];
        if (failed.length > 0) {
          metrics.get('postwarden_errors_total').inc({ code: 'PW-F006' });
          log['notice_failed'] = failed;
        }
      }
      return { code: 250, text: `2.0.0 Held in quarantine as ${id} (${outcome.by.symbol})` };
    }
    try {
      const response = await reinject(
        this.deps.reinject,
        envelope,
        () => spooled.forDelivery(headers),
        transaction.xforward,
        signal,
      );
      log['reinjected'] = response;
      return {
        code: 250,
        text: `2.0.0 Filtered and re-injected: ${response.replace(/^250\s*/, '')}`.slice(0, 200),
      };
    } catch (error) {
      if (!(error instanceof ReinjectError)) throw error;
      metrics.get('postwarden_filter_reinject_failures_total').inc();
      metrics.get('postwarden_errors_total').inc({ code: 'PW-F004' });
      log['failure'] = { code: 'PW-F004', reason: error.message, response: error.response };
      return { code: 451, text: '4.4.0 Re-injection failed, try again later' };
    }
  }
}
