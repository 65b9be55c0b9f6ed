/**
 * End to end: one test message through the local Postfix to the probe recipient, with a unique Message-ID and
 * an `X-Postwarden-Doctor` field, followed (bounded wait) through the policy service (its decision record under
 * the queue id), the content filter (its decision record) and delivery (Postfix's log: `status=sent` of the
 * copy re-injected after the filter, or the quarantine). The finding names where it stopped.
 *
 * The recipient is given twice in RCPT: Postfix assigns the queue id after the first recipient is accepted, so
 * only the policy request for the second carries it and gets its decision filed (Postfix drops the duplicate
 * recipient; one copy is delivered).
 */
import { randomBytes } from 'node:crypto';
import type { DecisionRecord } from '../core/decisions.js';
import { finding, type Finding, ok } from './finding.js';
import { SmtpSession } from './smtp.js';

export interface Delivery {
  /** Queue ids of the message in the log (the original, then the re-injected copy). */
  readonly queueIds: readonly string[];
  /** The last status line per queue id: sent, deferred, bounced, expired. */
  readonly statuses: readonly { readonly queueId: string; readonly status: string; readonly line: string }[];
}

/** What Postfix's log says about the message with this Message-ID (cleanup's `message-id=` names its queue ids). */
export function followLog(log: string, messageId: string): Delivery {
  const queueIds: string[] = [];
  const statuses: { queueId: string; status: string; line: string }[] = [];
  const lines = log.split('\n');
  for (const line of lines) {
    const m = /\b([0-9A-Za-z]{5,32}): message-id=<([^>]*)>/.exec(line);
    if (m && m[2] === messageId && !queueIds.includes(m[1] ?? '')) queueIds.push(m[1] ?? '');
  }
  for (const line of lines) {
    const m = /\b([0-9A-Za-z]{5,32}): to=<[^>]*>.*\bstatus=(\w+)/.exec(line);
    if (m && queueIds.includes(m[1] ?? ''))
      statuses.push({ queueId: m[1] ?? '', status: m[2] ?? '', line: line.trim() });
  }
  return { queueIds, statuses };
}

/** `250 2.0.0 Ok: queued as ABC123` → ABC123. */
export function queuedAs(reply: string): string | undefined {
  return /queued as ([0-9A-Za-z]{5,32})/.exec(reply)?.[1];
}

export interface Progress {
  /** The SMTP step that refused the message, with the reply. */
  readonly refused?: { readonly step: string; readonly reply: string };
  readonly queueId?: string;
  readonly records: readonly DecisionRecord[];
  /** Postfix's log, or why it cannot be read. */
  readonly delivery: Delivery | { readonly unreadable: string };
}

export interface E2eExpect {
  readonly filter: boolean;
  /** Decision records are kept (decisions.enabled and a store). */
  readonly records: boolean;
  readonly recipient: string;
  readonly waitedS: number;
}

/** Whether following can stop: delivered (or bounced), and the records expected are there. */
export function settled(p: Progress, expect: E2eExpect): boolean {
  if (p.refused) return true;
  const policy = !expect.records || p.records.some((r) => r.face === 'policy');
  const filterRecord = p.records.find((r) => r.face === 'filter');
  const filter = !expect.filter || !expect.records || filterRecord !== undefined;
  if (filterRecord?.action === 'quarantine') return policy;
  if ('unreadable' in p.delivery) return policy && filter;
  const d = p.delivery;
  const done = finalStatus(d, p.queueId, expect.filter);
  return (done?.status === 'bounced' || done?.status === 'sent') && policy && filter;
}

/** The status of the delivering copy: after the filter, the re-injected one; else the original. */
function finalStatus(d: Delivery, original: string | undefined, filter: boolean) {
  const copies = filter ? d.statuses.filter((s) => s.queueId !== original) : d.statuses;
  const bounced = d.statuses.find((s) => s.status === 'bounced' || s.status === 'expired');
  return copies.find((s) => s.status === 'sent') ?? bounced ?? copies.at(-1) ?? d.statuses.at(-1);
}

export function judgeE2e(p: Progress, expect: E2eExpect): Finding {
  if (p.refused) {
    return finding(
      'e2e',
      'error',
      `Postfix refused the test message to ${expect.recipient} at ${p.refused.step}`,
      'see the reply; give a recipient this host delivers with --probe-recipient, and see the policy-order and relay findings',
      p.refused.reply,
    );
  }
  const id = p.queueId ?? '?';
  const policy = p.records.find((r) => r.face === 'policy');
  const filter = p.records.find((r) => r.face === 'filter');
  const steps = [`accepted as ${id}`];
  if (expect.records) steps.push(policy ? `policy ${policy.action}` : 'no policy decision recorded');
  if (expect.filter && expect.records)
    steps.push(filter ? `filter ${filter.action} (score ${filter.score})` : 'no filter decision recorded');
  if (filter?.action === 'quarantine') {
    return finding(
      'e2e',
      'warning',
      `${steps.join(', ')}: the clean test message was held in quarantine ${filter.quarantineId ?? ''}`,
      `see why: postwarden decisions ${id}; release it with postwarden quarantine release`,
    );
  }
  if ('unreadable' in p.delivery) {
    return finding(
      'e2e',
      'warning',
      `${steps.join(', ')}; delivery not confirmed: ${p.delivery.unreadable}`,
      'run doctor as root (or in group adm) so it can read the mail log, or set maillog_file',
    );
  }
  const last = finalStatus(p.delivery, p.queueId, expect.filter);
  const delivered = last?.status === 'sent' && (!expect.filter || last.queueId !== p.queueId);
  if (delivered && (!expect.records || policy) && (!expect.filter || !expect.records || filter)) {
    return ok('e2e', `${steps.join(', ')}, delivered as ${last.queueId}`, last.line);
  }
  const where =
    !policy && expect.records
      ? 'the policy service recorded no decision: Postfix may not ask it (see policy-order), or it cannot write the store'
      : expect.filter && !p.delivery.statuses.some((s) => s.queueId === p.queueId && s.status === 'sent')
        ? 'the message did not get through the content filter (see filter-listen)'
        : !delivered
          ? 'no delivery after the filter'
          : 'the filter recorded no decision';
  return finding(
    'e2e',
    'error',
    `${steps.join(', ')}; stopped: ${where}${last ? ` (last: ${last.status})` : ''} within ${expect.waitedS} s`,
    `follow it: postwarden decisions ${id}; grep ${id} in the mail log; postqueue -p`,
    last?.line,
  );
}

export interface E2eRun {
  readonly smtp: { readonly host: string; readonly port: number };
  readonly sender: string;
  readonly recipient: string;
  readonly hostname: string;
  readonly timeoutMs: number;
  readonly expect: Omit<E2eExpect, 'waitedS' | 'recipient'>;
  readonly decisions: (queueId: string) => Promise<readonly DecisionRecord[]>;
  /** The mail log's text from when the run started, or why it cannot be read. */
  readonly readLog: () => string | { unreadable: string };
}

async function send(
  run: E2eRun,
  messageId: string,
  token: string,
): Promise<{ step: string; reply: string } | string> {
  const { session } = await SmtpSession.open(run.smtp, 15_000);
  try {
    const steps: [string, string][] = [
      ['EHLO', `EHLO ${run.hostname || 'localhost'}`],
      ['MAIL FROM', `MAIL FROM:<${run.sender}>`],
      ['RCPT TO', `RCPT TO:<${run.recipient}>`],
      ['RCPT TO (second)', `RCPT TO:<${run.recipient}>`],
      ['DATA', 'DATA'],
    ];
    for (const [step, line] of steps) {
      const reply = await session.command(line);
      if (reply.code >= 400) return { step, reply: reply.text };
    }
    const message = [
      `Message-ID: <${messageId}>`,
      `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
      `From: postwarden doctor <${run.sender}>`,
      `To: <${run.recipient}>`,
      `Subject: postwarden doctor test ${token}`,
      `X-Postwarden-Doctor: ${token}`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=us-ascii',
      '',
      'This message was sent by `postwarden doctor` to test the mail path: policy, content filter, delivery.',
      'It can be deleted.',
      '',
    ].join('\r\n');
    const reply = await session.data(message);
    if (reply.code !== 250) return { step: 'end of DATA', reply: reply.text };
    return queuedAs(reply.text) ?? reply.text;
  } finally {
    await session.quit();
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function runE2e(run: E2eRun): Promise<Finding> {
  const token = `${Date.now().toString(36)}.${randomBytes(6).toString('hex')}`;
  const messageId = `doctor.${token}@${run.hostname || 'postwarden.invalid'}`;
  const expect = { ...run.expect, recipient: run.recipient, waitedS: Math.round(run.timeoutMs / 1000) };
  let sent;
  try {
    sent = await send(run, messageId, token);
  } catch (error) {
    return {
      ...finding(
        'e2e',
        'error',
        `cannot send the test message through ${run.smtp.host}:${run.smtp.port}: ${(error as Error).message}`,
        'start Postfix, or name its smtpd with --smtp HOST:PORT',
      ),
      unreachable: true,
    };
  }
  if (typeof sent !== 'string')
    return judgeE2e({ refused: sent, records: [], delivery: { queueIds: [], statuses: [] } }, expect);
  const queueId = /^[0-9A-Za-z]{5,32}$/.test(sent) ? sent : undefined;
  const deadline = Date.now() + run.timeoutMs;
  for (;;) {
    const log = run.readLog();
    const progress: Progress = {
      ...(queueId !== undefined ? { queueId } : {}),
      records: queueId !== undefined ? await run.decisions(queueId) : [],
      delivery: typeof log === 'string' ? followLog(log, messageId) : log,
    };
    if (settled(progress, expect) || Date.now() >= deadline) return judgeE2e(progress, expect);
    await sleep(500);
  }
}
