/**
 * Learning from messages, for `postwarden learn` and for the learn API (Dovecot's IMAPSieve scripts report a
 * message a user moved into or out of Junk): a message is parsed as the filter parses mail and its tokens are
 * learned by the classifier, idempotently per Message-ID (or per content when it has none).
 *
 * LearnQueue takes reports without making the reporter wait: bounded (a full queue refuses, so a flood costs
 * memory it may not take), de-duplicated while queued (the same message reported twice is learned once), worked
 * one message at a time, and retried with a back-off while the store is unavailable — never one process per
 * message.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { bayesTokens } from '../core/scanners/bayes.js';
import type { BayesClass, BayesModel, LearnOutcome } from '../core/spam/bayes.js';
import { StoreUnavailable } from '../core/store.js';
import { parseMessage } from './parse.js';

export async function learnMessage(
  model: BayesModel,
  raw: Buffer,
  cls: BayesClass,
  maxTokens: number,
): Promise<LearnOutcome> {
  const facts = await parseMessage(Readable.from([raw]), { sender: '', recipients: [] }, raw.length, [], {
    maxDepth: 20,
    maxParts: 200,
    keepBytes: 0,
    maxTextChars: 200_000,
    // The classifier reads text, never attachment content: decode none of it.
    wholeParts: () => false,
  });
  const messageId = facts.headers.find((h) => h.name.toLowerCase() === 'message-id')?.value.trim();
  const id = messageId && messageId.length > 3 ? messageId : createHash('sha256').update(raw).digest('hex');
  return model.learn(id, bayesTokens(facts, { max_tokens: maxTokens }), cls);
}

export type SubmitResult = 'queued' | 'duplicate' | 'full';

interface Job {
  readonly key: string;
  readonly raw: Buffer;
  readonly cls: BayesClass;
  attempts: number;
}

export interface LearnQueueOptions {
  readonly maxQueued: number;
  readonly maxTokens: number;
  /** Tries of one message while the store is unavailable, with a doubling pause from `retryMs`. */
  readonly maxAttempts: number;
  readonly retryMs: number;
  readonly onLearned?: (cls: BayesClass, outcome: LearnOutcome | 'failed') => void;
}

export class LearnQueue {
  private readonly jobs: Job[] = [];
  private readonly pending = new Set<string>();
  private running = false;
  private closed = false;

  constructor(
    private readonly model: BayesModel,
    private readonly options: LearnQueueOptions,
  ) {}

  get depth(): number {
    return this.jobs.length;
  }

  submit(cls: BayesClass, raw: Buffer): SubmitResult {
    const key = `${cls}:${createHash('sha256').update(raw).digest('hex')}`;
    if (this.pending.has(key)) return 'duplicate';
    if (this.jobs.length >= this.options.maxQueued) return 'full';
    this.pending.add(key);
    this.jobs.push({ key, raw, cls, attempts: 0 });
    void this.work();
    return 'queued';
  }

  /** Stops taking jobs off the queue (what is queued is lost: Dovecot's report is best effort by nature). */
  close(): void {
    this.closed = true;
  }

  private async work(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (let job = this.jobs[0]; job && !this.closed; job = this.jobs[0]) {
        try {
          const outcome = await learnMessage(this.model, job.raw, job.cls, this.options.maxTokens);
          this.done(job, outcome);
        } catch (error) {
          job.attempts += 1;
          if (!(error instanceof StoreUnavailable) || job.attempts >= this.options.maxAttempts) {
            this.done(job, 'failed');
            continue;
          }
          await new Promise((resolve) =>
            setTimeout(resolve, this.options.retryMs * 2 ** (job.attempts - 1)).unref(),
          );
        }
      }
    } finally {
      this.running = false;
    }
  }

  private done(job: Job, outcome: LearnOutcome | 'failed'): void {
    this.jobs.shift();
    this.pending.delete(job.key);
    this.options.onLearned?.(job.cls, outcome);
  }
}
