/**
 * The chaos suite's count: where each message ended (delivered once or twice, quarantined, still queued, lost,
 * never accepted), whether every delivered copy was scanned and is intact, why each duplicate happened, and the
 * report as `N passed, N failed` lines and tables.
 *
 * A duplicate is explained when Postfix logged, for one of the message's queue ids, that the filter's
 * connection was lost after the end of DATA ("message may be sent more than once": postwarden was killed after
 * it had re-injected or held the message, before it answered); or that the re-injection smtpd took the message
 * more than once (`orig_queue_id=` twice) while the filter answered that re-injection failed (a Postfix reload
 * stopped the smtpd after its cleanup had queued the copy, before the answer reached postwarden: the SMTP
 * hand-off's own window, RFC 5321 §6.1); or when the sender itself had to send again after losing the answer to
 * its final dot. Any other duplicate is a failure.
 */
import type { FaultRecord } from './faults.js';
import type { ChaosMessage, SendRecord } from './messages.js';

export interface Copy {
  readonly id: string;
  /** alice, bob or sink. */
  readonly where: string;
  /** The copy carries postwarden's X-Postwarden-Status and X-Virus-Scanned fields. */
  readonly scanned: boolean;
  /** The body line the message was sent with is still there. */
  readonly intact: boolean;
}

export const OUTCOMES = [
  'delivered once',
  'delivered twice',
  'quarantined',
  'quarantined twice',
  'still queued',
  'lost',
  'never accepted',
  'virus delivered',
  'clean message held',
] as const;
export type Outcome = (typeof OUTCOMES)[number];

const PASSING: ReadonlySet<Outcome> = new Set(['delivered once', 'quarantined']);
const DUPLICATE: ReadonlySet<Outcome> = new Set(['delivered twice', 'quarantined twice']);

export interface ChaosCount {
  readonly total: number;
  readonly outcomes: Readonly<Record<Outcome, number>>;
  /** Delivered copies without postwarden's scan fields. */
  readonly unscanned: number;
  /** Delivered copies whose body line is gone. */
  readonly damaged: number;
  readonly duplicates: readonly { readonly id: string; readonly why: string | undefined }[];
  /** Messages that failed, with why (the first 50). */
  readonly failures: readonly string[];
  readonly passed: number;
  readonly failed: number;
}

/** Why a message went through twice, from Postfix's log and the sender's record; undefined when unexplained. */
function duplicateCause(record: SendRecord | undefined, postfixLog: string): string | undefined {
  if (!record) return undefined;
  for (const queueId of record.queueIds) {
    const line = new RegExp(
      `${queueId}: to=.*status=deferred \\(lost connection [^)]*end of data[^)]*\\)`,
    ).exec(postfixLog);
    if (line)
      return `postwarden killed after it took the message, before its answer (${queueId}: lost connection while sending end of data)`;
    const taken = postfixLog.split(`orig_queue_id=${queueId},`).length - 1;
    const refused = new RegExp(`${queueId}: to=.*status=deferred \\([^)]*451 4\\.4\\.0 Re-injection failed`);
    if (taken > 1 && refused.test(postfixLog))
      return `the re-injection smtpd queued it but its answer was lost (${queueId}: taken ${taken} times, 451 4.4.0 in between)`;
  }
  if (record.queueIds.length > 1) return `the sender sent it twice (${record.queueIds.join(', ')})`;
  return undefined;
}

export function countOutcomes(
  messages: readonly ChaosMessage[],
  sent: ReadonlyMap<string, SendRecord>,
  copies: readonly Copy[],
  held: ReadonlyMap<string, number>,
  queued: ReadonlyMap<string, number>,
  postfixLog: string,
): ChaosCount {
  const byId = new Map<string, Copy[]>();
  for (const copy of copies) byId.set(copy.id, [...(byId.get(copy.id) ?? []), copy]);
  const outcomes = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;
  const duplicates: { id: string; why: string | undefined }[] = [];
  const failures: string[] = [];
  let unscanned = 0;
  let damaged = 0;
  let failed = 0;
  for (const message of messages) {
    const record = sent.get(message.id);
    const mine = byId.get(message.id) ?? [];
    const holds = held.get(message.id) ?? 0;
    const waiting = queued.get(message.id) ?? 0;
    let outcome: Outcome;
    if (message.virus && mine.length > 0) outcome = 'virus delivered';
    else if (message.virus && holds > 0) outcome = holds === 1 ? 'quarantined' : 'quarantined twice';
    else if (!message.virus && mine.length > 0)
      outcome = mine.length === 1 ? 'delivered once' : 'delivered twice';
    else if (!message.virus && holds > 0) outcome = 'clean message held';
    else if (waiting > 0) outcome = 'still queued';
    else outcome = record?.accepted ? 'lost' : 'never accepted';
    outcomes[outcome] += 1;
    const why: string[] = [];
    const bare = mine.filter((c) => !c.scanned);
    const broken = mine.filter((c) => !c.intact && !message.virus);
    unscanned += bare.length;
    damaged += broken.length;
    if (bare.length > 0)
      why.push(`delivered without the scan fields (${bare.map((c) => c.where).join(', ')})`);
    if (broken.length > 0) why.push('delivered without its body line');
    if (DUPLICATE.has(outcome)) {
      const cause = duplicateCause(record, postfixLog);
      duplicates.push({ id: message.id, why: cause });
      if (!cause) why.push(`${outcome}, unexplained`);
    } else if (!PASSING.has(outcome)) {
      why.push(
        `${outcome}${record ? `; sender: ${record.refusals.slice(-3).join(' | ') || 'no refusal'}` : ''}`,
      );
    }
    if (why.length > 0) {
      failed += 1;
      if (failures.length < 50) failures.push(`${message.id} (to ${message.to}): ${why.join('; ')}`);
    }
  }
  return {
    total: messages.length,
    outcomes,
    unscanned,
    damaged,
    duplicates,
    failures,
    passed: messages.length - failed,
    failed,
  };
}

/** A Markdown table: a header row and rows of cells. */
export function table(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = [header, ...rows].map((row) => row.map(String));
  const widths = header.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
  const line = (row: readonly string[]) => `| ${row.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [
    line(cells[0] ?? []),
    `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`,
    ...cells.slice(1).map(line),
  ].join('\n');
}

/** The report: what happened to the mail, the faults, their effects, and the pass/fail lines. */
export function renderReport(report: {
  readonly count: ChaosCount;
  readonly faults: readonly FaultRecord[];
  /** Fault kinds the run could not inject (spool-full without root). */
  readonly skipped: readonly string[];
  readonly effects: Readonly<Record<string, number>>;
  readonly problems: readonly string[];
  readonly seconds: number;
  readonly load: readonly [number, number];
  readonly seed: number;
}): string {
  const { count, faults } = report;
  const kinds = new Map<string, FaultRecord[]>();
  for (const f of faults) kinds.set(f.kind, [...(kinds.get(f.kind) ?? []), f]);
  const lines = [
    `chaos: seed ${report.seed}, ${count.total} messages, ${faults.length} faults, ${report.seconds} s ` +
      `(load average ${report.load[0].toFixed(1)} at the start, ${report.load[1].toFixed(1)} at the end)`,
    '',
    table(
      ['outcome', 'messages'],
      OUTCOMES.map((o) => [o, count.outcomes[o]]),
    ),
    '',
    table(
      ['fault', 'injected', 'total seconds', 'errors'],
      [...kinds].map(([kind, list]) => [
        kind,
        list.length,
        (list.reduce((s, f) => s + ((f.endedMs ?? 0) - (f.startedMs ?? 0)), 0) / 1000).toFixed(1),
        list.filter((f) => f.error).length,
      ]),
    ),
    '',
    table(
      ['effect', 'count'],
      Object.entries(report.effects).sort(([a], [b]) => a.localeCompare(b)),
    ),
    '',
    ...faults.map(
      (f) =>
        `fault ${((f.startedMs ?? f.atMs) / 1000).toFixed(1).padStart(6)} s  ${f.kind.padEnd(15)} ` +
        `${(((f.endedMs ?? 0) - (f.startedMs ?? 0)) / 1000).toFixed(1).padStart(5)} s  ${f.error ? `ERROR ${f.error}` : (f.detail ?? '')}`,
    ),
    '',
    ...count.duplicates.map((d) => `duplicate ${d.id}: ${d.why ?? 'UNEXPLAINED'}`),
    ...count.failures.map((f) => `failed ${f}`),
    ...report.problems.map((p) => `problem: ${p}`),
    ...(report.skipped.length > 0 ? [`not injected: ${report.skipped.join(', ')}`] : []),
    `${count.passed} passed, ${count.failed} failed`,
    `${count.outcomes.lost} lost, ${count.unscanned} unscanned, ${count.duplicates.length} duplicated, ` +
      `${count.outcomes['still queued']} still queued, ${report.problems.length} problems`,
  ];
  return lines.join('\n');
}
