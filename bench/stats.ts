/**
 * Small statistics for the quality benchmark (bench/spam.ts): how far a rate measured on a few hundred messages
 * can be trusted, and whether two systems asked about the same messages really differ. Written here because
 * both are a few lines of arithmetic; no statistics package is a dependency of this project.
 */

/**
 * The Wilson score interval of a proportion `hits` of `n`, in percent (about 95% with the default z): unlike the
 * normal approximation it stays inside 0–100% and is sound for counts as small as a few false positives.
 */
export function wilsonInterval(hits: number, n: number, z = 1.96): readonly [number, number] {
  if (n <= 0) return [0, 100];
  const p = hits / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return [Math.max(0, centre - half) * 100, Math.min(1, centre + half) * 100];
}

/**
 * The exact (binomial) McNemar test for two systems judged on the same messages: `onlyA` messages where A alone
 * was wrong, `onlyB` where B alone was. Under "no difference" each such message is a fair coin; the two-sided
 * p-value is the chance of a split at least this uneven.
 */
export function exactMcNemar(onlyA: number, onlyB: number): number {
  const n = onlyA + onlyB;
  if (n === 0) return 1;
  const k = Math.min(onlyA, onlyB);
  // Σ C(n, i) / 2^n for i ≤ k, computed term by term so large n stays in range.
  let term = Math.pow(0.5, n);
  let tail = term;
  for (let i = 1; i <= k; i++) {
    term = (term * (n - i + 1)) / i;
    tail += term;
  }
  return Math.min(1, 2 * tail);
}

/** How many names each list has that the other lacks: the discordant pairs of a paired comparison. */
export function onlyEach(a: readonly string[], b: readonly string[]): readonly [number, number] {
  const inA = new Set(a);
  const inB = new Set(b);
  return [a.filter((x) => !inB.has(x)).length, b.filter((x) => !inA.has(x)).length];
}

/** A p-value as a report shows it: two decimals, or "< 0.01" (never a misleading "0.00"). */
export function formatP(p: number): string {
  return p < 0.01 ? '< 0.01' : p.toFixed(2);
}
