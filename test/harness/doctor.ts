/**
 * Runs the built `postwarden doctor --json` as a child process for integration tests; resolves with its exit
 * code, the parsed document and everything it printed (for assertion messages). Rejects only when it printed
 * no JSON (a crash), with its output.
 */
import { execFile } from 'node:child_process';
import { BIN } from './postwarden.js';

/** One finding of the contract's JSON. */
export interface DoctorFinding {
  check: string;
  severity: 'ok' | 'info' | 'warning' | 'error';
  summary: string;
  detail: string;
  fix: string;
}

export interface DoctorRun {
  code: number;
  ok: boolean;
  findings: DoctorFinding[];
  text: string;
}

export function runDoctor(args: readonly string[], timeoutMs = 120_000): Promise<DoctorRun> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, 'doctor', '--json', ...args],
      { timeout: timeoutMs },
      (error, stdout, stderr) => {
        const code = error ? Number((error as { code?: number }).code) : 0;
        try {
          const parsed = JSON.parse(stdout) as { ok: boolean; findings: DoctorFinding[] };
          resolve({ code, ...parsed, text: stdout + stderr });
        } catch {
          reject(new Error(`doctor printed no JSON (exit ${code}): ${stdout}${stderr}`));
        }
      },
    );
  });
}
