/**
 * Decision records: what the policy service and the content filter decided about a message, and why (every
 * verdict with its check, score, action and reason), filed in the state store under Postfix's queue id for
 * `decisions.retention_s`, so an admin can ask later "why was ABC123 deferred?" (`GET /api/v1/decisions/:queueId`).
 *
 * Contract: `record` never waits and never throws — the request that decided does not pay for it. Records are
 * written in the background, at most `maxPending` at once; beyond that a record is dropped, and a write that
 * fails (store down) is lost: both are counted through `onResult`, neither affects mail. Records of one queue id
 * are kept together (`decision:<queueId>`, a JSON list, the newest MAX_RECORDS), updated with compareAndSet so
 * two writers (a policy request and the filter on another host) do not lose each other's record. Every record is
 * bounded: MAX_VERDICTS verdicts, reasons cut at MAX_REASON_CHARS.
 */
import type { Store } from './store.js';

export const DECISION_KEY_PREFIX = 'decision:';
/** Postfix queue ids: short (hex) or long form; anything else (a path, `../`) is not one. */
export const QUEUE_ID_PATTERN = '^[0-9A-Za-z]{5,32}$';
const QUEUE_ID = new RegExp(QUEUE_ID_PATTERN);

export const MAX_RECORDS = 32;
export const MAX_VERDICTS = 64;
export const MAX_REASON_CHARS = 300;
/** Rounds of read-and-compareAndSet before a record gives up (another writer kept winning). */
const MAX_ATTEMPTS = 4;

export interface RecordedDecisionVerdict {
  /** The check (policy) or scanner (filter) that produced it. */
  readonly check: string;
  readonly symbol: string;
  readonly score: number;
  readonly action?: string;
  readonly mode: string;
  readonly reason: string;
}

export interface DecisionRecord {
  readonly face: 'policy' | 'filter';
  /** ISO time of the decision. */
  readonly time: string;
  /** The host (filter) or Postfix's `instance` of the message (policy). */
  readonly instance?: string;
  /** Policy: the SMTP protocol state asked about. */
  readonly state?: string;
  readonly client?: string;
  readonly sender?: string;
  readonly recipients?: readonly string[];
  /** What was decided: the policy action (`dunno`, `reject`, …) or the filter's outcome (`deliver`, `quarantine`, …). */
  readonly action: string;
  readonly score: number;
  readonly verdicts: readonly RecordedDecisionVerdict[];
  readonly failures?: readonly { readonly check: string; readonly code: string; readonly reason: string }[];
  /** The answer given (policy action line, filter SMTP reply). */
  readonly reply?: string;
  readonly quarantineId?: string;
}

export type RecordResult = 'recorded' | 'dropped' | 'failed';

export interface DecisionRecorderOptions {
  readonly retentionS: number;
  readonly maxPending: number;
  readonly onResult?: (result: RecordResult) => void;
}

export function isQueueId(text: string): boolean {
  return QUEUE_ID.test(text);
}

const cut = (text: string, max: number): string => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/** The record as stored: bounded in verdicts, failures, recipients and text. */
export function boundRecord(record: DecisionRecord): DecisionRecord {
  return {
    ...record,
    verdicts: record.verdicts
      .slice(0, MAX_VERDICTS)
      .map((v) => ({ ...v, reason: cut(v.reason, MAX_REASON_CHARS) })),
    ...(record.failures
      ? {
          failures: record.failures
            .slice(0, MAX_VERDICTS)
            .map((f) => ({ ...f, reason: cut(f.reason, MAX_REASON_CHARS) })),
        }
      : {}),
    ...(record.recipients ? { recipients: record.recipients.slice(0, 100) } : {}),
    ...(record.reply !== undefined ? { reply: cut(record.reply, MAX_REASON_CHARS) } : {}),
  };
}

function parseRecords(value: string | undefined): DecisionRecord[] {
  if (value === undefined) return [];
  try {
    const parsed: unknown = JSON.parse(value);
    return Array.isArray(parsed) ? (parsed as DecisionRecord[]) : [];
  } catch {
    return [];
  }
}

/** The records of a queue id, oldest first; undefined when there are none (never recorded, or expired). */
export async function readDecisions(store: Store, queueId: string): Promise<DecisionRecord[] | undefined> {
  if (!isQueueId(queueId)) return undefined;
  const records = parseRecords(await store.get(`${DECISION_KEY_PREFIX}${queueId}`));
  return records.length > 0 ? records : undefined;
}

export class DecisionRecorder {
  private pending = 0;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly store: Store,
    private readonly options: DecisionRecorderOptions,
  ) {}

  /** Files a record under a queue id in the background; returns at once. */
  record(queueId: string, record: DecisionRecord): void {
    if (!isQueueId(queueId)) return;
    if (this.pending >= this.options.maxPending) {
      this.options.onResult?.('dropped');
      return;
    }
    this.pending += 1;
    const work = this.write(queueId, boundRecord(record)).then(
      (ok) => this.options.onResult?.(ok ? 'recorded' : 'failed'),
      () => this.options.onResult?.('failed'),
    );
    const tracked = work.finally(() => {
      this.pending -= 1;
      this.inFlight.delete(tracked);
    });
    this.inFlight.add(tracked);
  }

  /** Resolves when every record started so far has been written or given up (tests, shutdown). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  private async write(queueId: string, record: DecisionRecord): Promise<boolean> {
    const key = `${DECISION_KEY_PREFIX}${queueId}`;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const current = await this.store.get(key);
      const next = [...parseRecords(current), record].slice(-MAX_RECORDS);
      if (await this.store.compareAndSet(key, current, JSON.stringify(next), this.options.retentionS))
        return true;
    }
    return false;
  }
}
