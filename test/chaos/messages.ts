/**
 * The chaos suite's mail: a known set of messages, each with a unique `X-Chaos-Id` header, a `Message-ID` that
 * carries the same id (the quarantine keeps it) and a known body line, and the sender that pushes them into the
 * harness's Postfix as an outside MTA would: one message per connection, retried after any 4xx or dropped
 * connection (Postfix answers 451 while the policy service is down, 450 for greylisting), never after a 5xx.
 *
 * Inbound mail comes from documentation addresses (192.0.2.0/24) posed with XCLIENT, from example.net senders to
 * alice and bob; outbound mail comes from 127.0.0.1 (mynetworks) from alice to remote.test, relayed to the
 * smtp-sink. A few carry the EICAR test string in an attachment and must end in quarantine.
 */
import { createHash } from 'node:crypto';
import { withAttachment } from '../harness/mail.js';
import { sendMessage } from '../harness/smtp.js';

export const CHAOS_HEADER = 'X-Chaos-Id';

export interface ChaosMessage {
  readonly id: string;
  readonly virus: boolean;
  readonly inbound: boolean;
  readonly from: string;
  readonly to: string;
  /** XCLIENT attributes: the outside client Postfix should see (inbound mail only). */
  readonly xclient?: string;
  readonly raw: string;
}

/** What the sender saw for one message. */
export interface SendRecord {
  attempts: number;
  /** Postfix's queue ids from `250 … queued as ID` (more than one when the sender had to send again). */
  queueIds: string[];
  /** Replies other than 2xx/354, with the stage (`RCPT 451 4.3.5 …`), in order. */
  refusals: string[];
  /** An error after the final dot (the answer lost): a second copy may come from the sender itself. */
  ambiguous: boolean;
  accepted: boolean;
}

/** A deterministic source of numbers in [0, 1) drawn from `seed` (SHA-256 of seed and a counter). */
export function seededRandom(seed: number): () => number {
  let n = 0;
  return () => createHash('sha256').update(`${seed}:${n++}`).digest().readUInt32BE(0) / 2 ** 32;
}

/** The line every clean message's body starts with: a delivered copy must still hold it. */
export const bodyLine = (id: string): string => `This is chaos message ${id}; it must arrive exactly once.`;

const SENDERS = ['anna@example.net', 'ben@example.net', 'carl@example.net'];
const LOCAL = ['alice@example.test', 'bob@example.test'];
const REMOTE = ['partner@remote.test', 'office@remote.test'];

export function chaosMessages(seed: number, count: number, eicar: Buffer, virusRate: number): ChaosMessage[] {
  const random = seededRandom(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
  const messages: ChaosMessage[] = [];
  for (let i = 0; i < count; i++) {
    const id = `c${seed}-${String(i).padStart(5, '0')}`;
    const virus = random() < virusRate;
    const inbound = random() < 0.7;
    const from = inbound ? pick(SENDERS) : 'alice@example.test';
    const to = inbound ? pick(LOCAL) : pick(REMOTE);
    const head = [
      `${CHAOS_HEADER}: ${id}`,
      `Message-ID: <${id}@chaos.example.net>`,
      'Date: Mon, 23 Nov 2026 03:00:00 +0000',
    ];
    const body = virus
      ? withAttachment(id, 'eicar.com', eicar)
      : [
          `From: <${from}>`,
          `To: <${to}>`,
          `Subject: chaos ${id}`,
          'MIME-Version: 1.0',
          'Content-Type: text/plain; charset=us-ascii',
          '',
          bodyLine(id),
          'A plain note with nothing in it that a scanner would hold.',
          '',
        ].join('\r\n');
    const client = `192.0.2.${1 + (i % 20)}`;
    messages.push({
      id,
      virus,
      inbound,
      from,
      to,
      ...(inbound ? { xclient: `ADDR=${client} NAME=mail.example.net` } : {}),
      raw: `${head.join('\r\n')}\r\n${body}`,
    });
  }
  return messages;
}

/** The `X-Chaos-Id` of a message's top header section (not of a message quoted or attached inside it). */
export function chaosIdOf(text: string): string | undefined {
  const end = text.search(/\r?\n\r?\n/);
  const head = end === -1 ? text : text.slice(0, end);
  return new RegExp(`^${CHAOS_HEADER}: (\\S+)`, 'im').exec(head)?.[1];
}

/** Whether the top header section holds postwarden's scan fields: a clean status and the antivirus' mark. */
export function scanned(text: string): boolean {
  const end = text.search(/\r?\n\r?\n/);
  const head = end === -1 ? text : text.slice(0, end);
  return /^X-Postwarden-Status: clean;/m.test(head) && /^X-Virus-Scanned: clamav via postwarden/m.test(head);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface SenderOptions {
  readonly port: number;
  readonly concurrency: number;
  /** Message i is first tried at start + i × spacingMs. */
  readonly spacingMs: number;
  /** No new attempt after this time (epoch ms); what is not accepted by then stays with the sender. */
  readonly giveUpAt: () => number;
  readonly random: () => number;
}

/** Sends every message until Postfix accepts it (or the bound passes); resolves with what happened to each. */
export async function sendAll(
  messages: readonly ChaosMessage[],
  options: SenderOptions,
): Promise<Map<string, SendRecord>> {
  const records = new Map<string, SendRecord>();
  const start = Date.now();
  const pending = messages.map((m, i) => ({ message: m, notBefore: start + i * options.spacingMs }));
  for (const { message } of pending) {
    records.set(message.id, { attempts: 0, queueIds: [], refusals: [], ambiguous: false, accepted: false });
  }
  const worker = async (): Promise<void> => {
    for (;;) {
      if (pending.length === 0 || Date.now() > options.giveUpAt()) return;
      pending.sort((a, b) => a.notBefore - b.notBefore);
      const next = pending[0];
      if (!next) return;
      if (next.notBefore > Date.now()) {
        await sleep(Math.min(next.notBefore - Date.now(), 200));
        continue;
      }
      pending.shift();
      const { message } = next;
      const record = records.get(message.id) as SendRecord;
      record.attempts += 1;
      const retry = () =>
        pending.push({ message, notBefore: Date.now() + 1000 + Math.floor(options.random() * 2000) });
      try {
        const result = await sendMessage('127.0.0.1', options.port, {
          helo: message.inbound ? 'mail.example.net' : 'client.example.test',
          ...(message.xclient ? { xclient: message.xclient } : {}),
          from: message.from,
          to: [message.to],
          message: message.raw,
          timeoutMs: 60_000,
        });
        const { reply } = result;
        const queued = /queued as ([0-9A-Z]+)/i.exec(reply.text)?.[1];
        if (reply.code === 250 && queued) {
          record.queueIds.push(queued);
          record.accepted = true;
          continue;
        }
        const last = result.replies.at(-1);
        record.refusals.push(`${(last?.command ?? '').split(/[ :]/)[0]} ${reply.text.replace(/\n/g, ' ')}`);
        if (reply.code >= 500) continue; // a 5xx is final: the sender gives up, as an MTA would (and bounces)
        retry();
      } catch (error) {
        // A dropped connection or a missing answer; after the final dot the message may have been queued.
        const text = (error as Error).message;
        record.refusals.push(`error ${text}`);
        if (/SMTP reply/.test(text)) record.ambiguous = true;
        retry();
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return records;
}
