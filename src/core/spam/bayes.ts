/**
 * The Bayesian classifier: Gary Robinson's token probabilities with Fisher's chi-square combining (as SpamBayes
 * and SpamAssassin's Bayes plugin do), over token counts kept in the state store, so every MX host sharing a
 * store shares what was learned.
 *
 *   p(w)  = spamFreq / (spamFreq + hamFreq), freq = count / messages learned of that class
 *   f(w)  = (s·x + n·p(w)) / (s + n)          n = messages the token was seen in, s = strength, x = 0.5
 *   clues = the `maxClues` tokens with |f(w) − 0.5| ≥ minStrength, most extreme first
 *   H = Q(−2 Σ ln f, 2k), S = Q(−2 Σ ln(1 − f), 2k), probability = (1 + H − S) / 2   (Q: chi-square survival)
 *
 * Store keys (under the store's own prefix): `bayes:n:spam`, `bayes:n:ham` (messages learned), `bayes:s:<t>`,
 * `bayes:h:<t>` (per token, <t> a short hash of the token: bounded keys, no mail text in the store),
 * `bayes:m:<id>` (how a message was learned: `s` or `h`, so learning twice counts once and learning the other
 * class moves it). Token counters expire `tokenTtlS` after they were last learned.
 */
import { createHash } from 'node:crypto';
import type { CounterDelta, Store } from '../store.js';

export type BayesClass = 'spam' | 'ham';

export interface TokenCounts {
  readonly spam: number;
  readonly ham: number;
}

export interface BayesMaths {
  /** Robinson's s: how much a token needs to be seen before its own evidence outweighs x = 0.5. */
  readonly strength: number;
  /** Tokens closer than this to 0.5 are not clues. */
  readonly minStrength: number;
  readonly maxClues: number;
}

/**
 * s = 1 rather than SpamBayes' 0.45: with a few hundred messages learned of a class, a token seen in a handful
 * of ham and no spam is not yet near-certain ham evidence (on the SpamAssassin corpus's 2002 sets, bench/spam.ts,
 * 0.45 left more spam in the unsure middle at the same false positives). minStrength 0.1 and up to 1000 clues
 * rather than SpamBayes' 0.1 and 150: chosen by 5-fold cross-validation inside that benchmark's training half,
 * repeated over four fold assignments (bench/README.md), where 150 or 200 clues left more spam unsure: a long
 * message's evidence is spread over many tokens, and cutting it at a fixed count keeps only the most extreme.
 */
export const DEFAULT_MATHS: BayesMaths = { strength: 1, minStrength: 0.1, maxClues: 1000 };

/** Chi-square survival function Q(x², v) for even v (Numerical Recipes' series, as SpamBayes' chi2Q). */
export function chi2Q(x2: number, v: number): number {
  const m = x2 / 2;
  let term = Math.exp(-m);
  let sum = term;
  for (let i = 1; i < v / 2; i++) {
    term *= m / i;
    sum += term;
  }
  return Math.min(sum, 1);
}

/** Robinson's f(w) for one token, given how many messages of each class were learned. */
export function tokenProbability(
  counts: TokenCounts,
  learned: TokenCounts,
  maths: BayesMaths = DEFAULT_MATHS,
): number {
  const spamFreq = learned.spam > 0 ? counts.spam / learned.spam : 0;
  const hamFreq = learned.ham > 0 ? counts.ham / learned.ham : 0;
  const n = counts.spam + counts.ham;
  const p = spamFreq + hamFreq === 0 ? 0.5 : spamFreq / (spamFreq + hamFreq);
  return (maths.strength * 0.5 + n * p) / (maths.strength + n);
}

export interface Classification {
  /** 0 (ham) … 1 (spam). */
  readonly probability: number;
  /** The clues used, most extreme first (token, f(w)), for the log. */
  readonly clues: readonly (readonly [string, number])[];
}

/** Combines the tokens' probabilities; 0.5 when no token is a clue. */
export function classify(
  tokens: ReadonlyMap<string, TokenCounts>,
  learned: TokenCounts,
  maths: BayesMaths = DEFAULT_MATHS,
): Classification {
  const scored: [string, number][] = [];
  for (const [token, counts] of tokens) {
    if (counts.spam + counts.ham === 0) continue;
    const f = tokenProbability(counts, learned, maths);
    if (Math.abs(f - 0.5) >= maths.minStrength) scored.push([token, f]);
  }
  scored.sort((a, b) => Math.abs(b[1] - 0.5) - Math.abs(a[1] - 0.5));
  const clues = scored.slice(0, maths.maxClues);
  if (clues.length === 0) return { probability: 0.5, clues };
  let lnHam = 0;
  let lnSpam = 0;
  for (const [, f] of clues) {
    // Clamped: a token seen only in one class must not make a logarithm infinite.
    const bounded = Math.min(Math.max(f, 1e-6), 1 - 1e-6);
    lnSpam += Math.log(1 - bounded);
    lnHam += Math.log(bounded);
  }
  const h = chi2Q(-2 * lnHam, 2 * clues.length);
  const s = chi2Q(-2 * lnSpam, 2 * clues.length);
  return { probability: (1 + h - s) / 2, clues };
}

// ------------------------------------------------------------------------------------------ store-backed model

const KEY = 'bayes:';

/** A short, stable key for a token: 12 bytes of SHA-1, base64url (the store never holds mail text). */
export function tokenKey(token: string): string {
  return createHash('sha1').update(token).digest('base64url').slice(0, 16);
}

export type LearnOutcome = 'learned' | 'already' | 'moved';

export class BayesModel {
  constructor(
    private readonly store: Store,
    /** How long a token is remembered after it was last learned. */
    private readonly tokenTtlS: number,
  ) {}

  async learned(): Promise<TokenCounts> {
    const [spam, ham] = await this.store.getMany([`${KEY}n:spam`, `${KEY}n:ham`]);
    return { spam: Number(spam ?? 0) || 0, ham: Number(ham ?? 0) || 0 };
  }

  async counts(tokens: readonly string[]): Promise<Map<string, TokenCounts>> {
    const keys = tokens.flatMap((t) => {
      const k = tokenKey(t);
      return [`${KEY}s:${k}`, `${KEY}h:${k}`];
    });
    const values = await this.store.getMany(keys);
    const counts = new Map<string, TokenCounts>();
    tokens.forEach((token, i) => {
      const spam = Math.max(0, Number(values[2 * i] ?? 0) || 0); // an expired counter may have been decremented
      const ham = Math.max(0, Number(values[2 * i + 1] ?? 0) || 0);
      if (spam + ham > 0) counts.set(token, { spam, ham });
    });
    return counts;
  }

  /**
   * Learns a message's tokens as `cls`. `messageId` makes it idempotent: the same message learned again as the
   * same class changes nothing; learned as the other class, its tokens move from one class to the other.
   */
  async learn(messageId: string, tokens: readonly string[], cls: BayesClass): Promise<LearnOutcome> {
    const marker = `${KEY}m:${tokenKey(messageId)}`;
    const mine = cls === 'spam' ? 's' : 'h';
    const before = await this.store.get(marker);
    if (before === mine) return 'already';
    const swapped = before === 's' || before === 'h';
    // Claim the marker first: of two learners racing on one message, one moves the counts.
    if (!(await this.store.compareAndSet(marker, before, mine, 366 * 86_400))) return 'already';
    const add = cls === 'spam' ? 's' : 'h';
    const remove = cls === 'spam' ? 'h' : 's';
    const deltas: CounterDelta[] = [];
    for (const token of tokens) {
      const k = tokenKey(token);
      deltas.push({ key: `${KEY}${add}:${k}`, by: 1, ttlS: this.tokenTtlS, touch: true });
      if (swapped) deltas.push({ key: `${KEY}${remove}:${k}`, by: -1, ttlS: this.tokenTtlS, touch: true });
    }
    deltas.push({ key: `${KEY}n:${cls}`, by: 1 });
    if (swapped) deltas.push({ key: `${KEY}n:${cls === 'spam' ? 'ham' : 'spam'}`, by: -1 });
    await this.store.incrementMany(deltas);
    return swapped ? 'moved' : 'learned';
  }
}
