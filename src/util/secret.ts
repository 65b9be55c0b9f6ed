/**
 * Comparing secrets (API tokens, keys) without telling an attacker through timing how much of a guess was right.
 * Pure; never throws.
 */
import { timingSafeEqual } from 'node:crypto';

/** Whether `given` equals `secret`, compared in constant time (the length alone may differ early). */
export function secretMatches(given: string | undefined, secret: string): boolean {
  const a = Buffer.from(given ?? '');
  const b = Buffer.from(secret);
  return a.length === b.length && timingSafeEqual(a, b);
}
