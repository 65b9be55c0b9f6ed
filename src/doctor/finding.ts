/**
 * What `postwarden doctor` reports: findings `{ check, severity, summary, detail?, fix }`, one per thing looked at,
 * and how they turn into the exit status (0 nothing wrong; 69 a dependency is unreachable; 78 anything else wrong)
 * and into the table or the JSON document of the contract (docs/doctor.md).
 */
import { EXIT } from '../util/sysexits.js';

export type Severity = 'ok' | 'info' | 'warning' | 'error';

export interface Finding {
  /** The check's name, as `--skip` takes it (its group) or a finer name inside it (`wiring.policy-order`). */
  readonly check: string;
  readonly severity: Severity;
  /** One line: what was found. */
  readonly summary: string;
  /** More: the values seen, the reply received. */
  readonly detail?: string;
  /** What the admin does about it ('' when nothing needs doing). */
  readonly fix: string;
  /** A dependency could not be reached (exit 69 rather than 78); never printed. */
  readonly unreachable?: boolean;
}

export const ok = (check: string, summary: string, detail?: string): Finding => ({
  check,
  severity: 'ok',
  summary,
  ...(detail !== undefined ? { detail } : {}),
  fix: '',
});

/** A finding with the given severity, detail only when there is one. */
export function finding(
  check: string,
  severity: Severity,
  summary: string,
  fix: string,
  detail?: string,
): Finding {
  return { check, severity, summary, ...(detail !== undefined && detail !== '' ? { detail } : {}), fix };
}

const wrong = (f: Finding): boolean => f.severity === 'warning' || f.severity === 'error';

/** 0 when nothing is wrong; 69 when a dependency is unreachable (it wins); else 78. */
export function exitCodeOf(findings: readonly Finding[]): number {
  if (findings.some((f) => wrong(f) && f.unreachable === true)) return EXIT.UNAVAILABLE;
  return findings.some(wrong) ? EXIT.CONFIG : EXIT.OK;
}

/** The contract's JSON: `{ ok, findings: [{ check, severity, summary, detail, fix }] }`. */
export function toJson(findings: readonly Finding[]): string {
  return JSON.stringify({
    ok: !findings.some(wrong),
    findings: findings.map((f) => ({
      check: f.check,
      severity: f.severity,
      summary: f.summary,
      detail: f.detail ?? '',
      fix: f.fix,
    })),
  });
}

/** `SEVERITY  check-name  what is wrong — fix`, aligned, with the detail indented below. */
export function toTable(findings: readonly Finding[]): string {
  const width = Math.max(0, ...findings.map((f) => f.check.length));
  return findings
    .map((f) => {
      const head = `${f.severity.toUpperCase().padEnd(7)}  ${f.check.padEnd(width)}  ${f.summary}${f.fix !== '' ? ` — ${f.fix}` : ''}`;
      return f.detail !== undefined ? `${head}\n${' '.repeat(width + 11)}${f.detail}` : head;
    })
    .map((line) => `${line}\n`)
    .join('');
}
