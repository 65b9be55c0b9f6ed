/**
 * Admin-written patterns (`filter.rules.custom[].pattern`): `/regex/flags`, compiled once at config load, and
 * refused there when they could make one message cost seconds.
 *
 * JavaScript's regex engine backtracks, and a synchronous match cannot be interrupted by a deadline, so the
 * guard is twofold:
 *  1. At load, refuse what backtracks without bound on short input: back-references (no linear bound exists);
 *     a repeated group that itself contains a repetition or an alternative (`(a+)+`, `(a|ab)*`: exponential);
 *     and patterns whose repetitions multiply to more than MAX_COMBINATIONS ways of matching from one position
 *     (`.*.*.*x` is cubic: 200 characters already take most of a second). An unbounded repetition (`*`, `+`,
 *     `{n,}`) counts as MAX_PIECE ways, a bounded one `{n,m}` as m − n + 1, and a literal the repetition
 *     before it cannot match starts a new product (see backtrackingProblem): `cheap\s+meds`,
 *     `buy\s+cheap\s+meds`, `[a-z]+@[a-z]+\.ru` and `cheap.{0,40}meds\s+now` pass; `.*.*x`, `\w+\s*\w+x`
 *     are refused with the advice to bound one repetition (`\s{1,5}`).
 *  2. At match time, each subject is cut into pieces of at most MAX_PIECE characters (header values, URLs,
 *     lines of body text), so what passed (1) costs at most about MAX_COMBINATIONS × MAX_PIECE steps per
 *     piece (well under a second even for text crafted against the pattern; microseconds for ordinary
 *     text), and the scanner's time budget is checked before every piece.
 * Measured on Node 20: `a*b` over 1 000 `a`s takes about 1 ms; `\w*\w*x` over 1 000 characters 340 ms, and
 * over 5 000 characters 43 s — which is why (1) exists and why (2) alone would not do.
 */

export const MAX_PATTERN_CHARS = 500;
/** Longest subject one match sees; longer text is matched piece by piece. */
export const MAX_PIECE = 1000;
export const MAX_COMBINATIONS = 100_000;

const ALLOWED_FLAGS = /^[imsu]*$/;

interface Group {
  /** The group holds a repetition (at any depth). */
  repeats: boolean;
  /** The group holds an alternative `|` (at any depth). */
  alternates: boolean;
}

type Atom =
  { readonly kind: 'simple'; readonly source: string } | { readonly kind: 'group'; readonly inner: Group };

/** Reads a `{n}`, `{n,}` or `{n,m}` quantifier at `i`; `undefined` when the brace is a literal. */
function braces(source: string, i: number): { min: number; max: number; end: number } | undefined {
  const match = /^\{(\d{1,5})(,(\d{0,5}))?\}/.exec(source.slice(i, i + 14));
  if (!match) return undefined;
  const min = Number(match[1]);
  const max = match[2] === undefined ? min : match[3] === '' ? Infinity : Number(match[3]);
  return { min, max, end: i + match[0].length };
}

/** Whether the atom (`\\s`, `[a-z]`, `.`, `a`) can match `char`; true when unsure. */
function matches(atom: string, char: string, flags: string): boolean {
  try {
    return new RegExp(`^(?:${atom})$`, flags).test(char);
  } catch {
    return true;
  }
}

/** Characters that stand for themselves outside a class. */
const PLAIN = /^[^\\[\](){}|*+?.^$]$/;

/**
 * Why the pattern source could backtrack without bound, or `undefined` if it is safe by the rules above.
 * Reads the source once; brackets, escapes and group prefixes are skipped, not interpreted.
 *
 * Ways multiply within a segment; a literal character that the repeated atom just before it cannot match
 * (`\s+` then `c`, `[a-z]+` then `@`) ends the segment: the repetition can then stop at one place only, so
 * what follows is tried once per start, not once per way. `buy\s+cheap\s+meds` is two segments of 1 000;
 * `.*.*x` and `\w*\w*x` are one segment of 1 000 000 (`.` and `\w` match `x`).
 */
export function backtrackingProblem(source: string, flags = ''): string | undefined {
  const groups: Group[] = [{ repeats: false, alternates: false }];
  let previous: Atom | undefined;
  /** The simple atom a quantifier was just applied to: a literal it cannot match ends the segment. */
  let repeated: string | undefined;
  let combinations = 1;
  const literal = (char: string) => {
    if (repeated !== undefined && !matches(repeated, char, flags)) combinations = 1;
    repeated = undefined;
  };
  for (let i = 0; i < source.length; i++) {
    const c = source[i] ?? '';
    const current = groups[groups.length - 1] ?? { repeats: false, alternates: false };
    if (c === '\\') {
      const next = source[i + 1] ?? '';
      if (/[1-9]/.test(next) || (next === 'k' && source[i + 2] === '<'))
        return 'it uses a back-reference, which can take exponential time; match the text again instead';
      const start = i;
      i++;
      if (/[pPu]/.test(next) && source[i + 1] === '{') {
        const close = source.indexOf('}', i);
        i = close < 0 ? source.length : close;
      } else if (next === 'x') i += 2;
      else if (next === 'u') i += 4;
      else if (next === 'c') i += 1;
      const escaped = source.slice(start, i + 1);
      if (/^\\[^\w]$/.test(escaped)) literal(next);
      else repeated = undefined;
      previous = { kind: 'simple', source: escaped };
      continue;
    }
    if (c === '[') {
      const start = i;
      for (i++; i < source.length && source[i] !== ']'; i++) if (source[i] === '\\') i++;
      repeated = undefined;
      previous = { kind: 'simple', source: source.slice(start, i + 1) };
      continue;
    }
    if (c === '(') {
      groups.push({ repeats: false, alternates: false });
      if (source[i + 1] === '?') {
        const prefix = /^\?(?::|=|!|<=|<!|<[A-Za-z_$][\w$]*>)/.exec(source.slice(i + 1, i + 40));
        if (prefix) i += prefix[0].length;
      }
      previous = undefined;
      repeated = undefined;
      continue;
    }
    if (c === ')') {
      const inner = groups.pop() ?? { repeats: false, alternates: false };
      const outer = groups[groups.length - 1];
      if (outer && inner.repeats) outer.repeats = true;
      if (outer && inner.alternates) outer.alternates = true;
      previous = { kind: 'group', inner };
      repeated = undefined;
      continue;
    }
    if (c === '|') {
      current.alternates = true;
      previous = undefined;
      repeated = undefined;
      continue;
    }
    let quantifier: { min: number; max: number; end: number } | undefined;
    if (c === '*') quantifier = { min: 0, max: Infinity, end: i + 1 };
    else if (c === '+') quantifier = { min: 1, max: Infinity, end: i + 1 };
    else if (c === '?') quantifier = { min: 0, max: 1, end: i + 1 };
    else if (c === '{') quantifier = braces(source, i);
    if (!quantifier || !previous) {
      if (PLAIN.test(c) || c === '{' || c === '}') literal(c);
      else repeated = undefined;
      previous = { kind: 'simple', source: c === '.' ? '.' : PLAIN.test(c) ? c : `\\${c}` };
      continue;
    }
    if (
      previous.kind === 'group' &&
      quantifier.max > 1 &&
      (previous.inner.repeats || previous.inner.alternates)
    )
      return previous.inner.repeats
        ? 'a repeated group contains a repetition, like (a+)+, which can take exponential time; repeat only single characters or classes'
        : 'a repeated group contains alternatives, like (a|ab)*, which can take exponential time; use a character class or write the alternatives out';
    const ways = quantifier.max === Infinity ? MAX_PIECE : quantifier.max - quantifier.min + 1;
    combinations *= Math.max(1, ways);
    if (quantifier.max > 1) current.repeats = true;
    if (combinations > MAX_COMBINATIONS)
      return `its repetitions combine into more than ${MAX_COMBINATIONS} ways to match at one position (each *, + or {n,} counts ${MAX_PIECE}); bound them, e.g. \\s{1,5} instead of \\s+`;
    repeated = previous.kind === 'simple' && quantifier.max > 1 ? previous.source : undefined;
    i = quantifier.end - 1;
    if (source[i + 1] === '?') i++; // lazy
    previous = undefined;
  }
  return undefined;
}

export type CompiledPattern =
  { readonly ok: true; readonly regex: RegExp } | { readonly ok: false; readonly problem: string };

/** `/source/flags` → a RegExp, or the reason it is refused, phrased as "problem; fix". */
export function compilePattern(text: string): CompiledPattern {
  if (text.length > MAX_PATTERN_CHARS + 6)
    return { ok: false, problem: `longer than ${MAX_PATTERN_CHARS} characters; split it into two rules` };
  const literal = /^\/(.+)\/([a-z]*)$/s.exec(text);
  if (!literal) return { ok: false, problem: 'not a /pattern/flags regex; write it like /cheap\\s+meds/i' };
  const [, source = '', flags = ''] = literal;
  if (!ALLOWED_FLAGS.test(flags) || new Set(flags).size !== flags.length)
    return {
      ok: false,
      problem: `flags ${flags} not allowed; use only i, m, s and u (a rule reports one match, g and y are not needed)`,
    };
  let regex: RegExp;
  try {
    regex = new RegExp(source, flags);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { ok: false, problem: `not a valid regex (${reason}); fix its syntax` };
  }
  const problem = backtrackingProblem(source, flags);
  if (problem !== undefined) return { ok: false, problem };
  if (regex.test(''))
    return {
      ok: false,
      problem: 'it matches empty text, so it fires on every message; make it require something',
    };
  return { ok: true, regex };
}
