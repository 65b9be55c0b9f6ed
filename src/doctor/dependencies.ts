/**
 * Each dependency answers within a short deadline: the store (SQLite opens / Redis PING), clamd (PING → PONG,
 * when the antivirus scanner runs), each resolver of dns.servers (one query answered, NXDOMAIN included), LDAP
 * (a bind and a base search, when queries are configured). The attempts come from the caller, built from the
 * product's own adapters; this module times them and says what failed and what to do. An unreachable
 * dependency is an error finding marked `unreachable` (exit 69).
 */
import { withDeadline } from '../util/deadline.js';
import { finding, type Finding, ok } from './finding.js';

export interface Dependency {
  /** The check name: store, clamd, resolver, ldap. */
  readonly check: string;
  /** What and where, e.g. `redis redis://127.0.0.1:6379/0`. */
  readonly what: string;
  /** Resolves when it answered; rejects with the reason. */
  readonly attempt: () => Promise<string | void>;
  readonly fix: string;
}

function reasonOf(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  return (e.message || e.code || String(error)).replace(/\s+/g, ' ').slice(0, 300);
}

/** Runs one attempt under the deadline: ok with the answer, or an `unreachable` error with the reason. */
export async function reach(dep: Dependency, timeoutMs: number): Promise<Finding> {
  try {
    const answer = await withDeadline(
      dep.attempt(),
      timeoutMs,
      () => new Error(`no answer within ${timeoutMs} ms`),
    );
    return ok(dep.check, `${dep.what} answers`, typeof answer === 'string' ? answer : undefined);
  } catch (error) {
    return {
      ...finding(dep.check, 'error', `${dep.what} is unreachable: ${reasonOf(error)}`, dep.fix),
      unreachable: true,
    };
  }
}
