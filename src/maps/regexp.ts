/**
 * regexp: tables, in Postfix regexp_table(5) syntax: `/pattern/flags result` or `!/pattern/flags result`, and
 * `if /pattern/flags` … `endif` blocks (which may nest). Every query kind is matched on its value as given;
 * the first matching rule in file order wins, and `$1`, `${1}` in the result insert its groups (`$$` is `$`).
 *
 * As in Postfix, matching is case-insensitive unless the flag `i` toggles it off; `m` toggles multi-line mode.
 * Patterns are JavaScript regular expressions; POSIX classes such as `[[:alpha:]]` are translated.
 *
 * Failure behaviour: a line that is not a rule, `if` or `endif`, a pattern that does not compile, an unknown
 * flag, an out-of-range `$n` or an unbalanced `if` is a load error naming file:line. A query longer than the
 * configured bound is an error result, not a match attempt (an unanswered lookup must not read as "not
 * listed"): bounding the input bounds how long most patterns can run. It cannot make a nested quantifier such
 * as `(a+)+$` safe — JavaScript regular expressions backtrack — so writing linear patterns is the admin's part.
 */
import type { LookupQuery, LookupResult } from '../core/ports.js';
import { NOT_FOUND } from '../core/ports.js';

export interface SourceLine {
  readonly text: string;
  /** `path:line`, for messages. */
  readonly where: string;
}

export interface RegexpLimits {
  readonly maxRules: number;
  readonly maxQueryLength: number;
}

interface Condition {
  readonly pattern: RegExp;
  readonly negate: boolean;
}

interface Rule extends Condition {
  readonly kind: 'rule';
  readonly key: string;
  /** Literal text and group numbers, in order. */
  readonly result: readonly (string | number)[];
}

interface Block extends Condition {
  readonly kind: 'if';
  readonly body: Node[];
}

type Node = Rule | Block;

type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

const POSIX_CLASSES: Readonly<Record<string, string>> = {
  alnum: 'a-zA-Z0-9',
  alpha: 'a-zA-Z',
  blank: ' \\t',
  cntrl: '\\x00-\\x1f\\x7f',
  digit: '0-9',
  graph: '!-~',
  lower: 'a-z',
  print: ' -~',
  punct: '!-\\/:-@\\[-`{-~',
  space: '\\s',
  upper: 'A-Z',
  xdigit: '0-9A-Fa-f',
};

interface PatternPart extends Condition {
  readonly display: string;
  readonly groups: number;
  readonly rest: string;
}

function parsePattern(text: string): Parsed<PatternPart> {
  const negate = text.startsWith('!');
  const start = negate ? 1 : 0;
  if (text[start] !== '/') return { ok: false, reason: 'expected /pattern/flags, if or endif' };
  let end = start + 1;
  while (end < text.length && text[end] !== '/') end += text[end] === '\\' ? 2 : 1;
  if (end >= text.length) return { ok: false, reason: 'the pattern has no closing /' };
  const flagsEnd = text.slice(end + 1).search(/[^A-Za-z]|$/) + end + 1;
  const rest = text.slice(flagsEnd);
  if (rest !== '' && !/^\s/.test(rest)) {
    return { ok: false, reason: 'expected whitespace after /pattern/flags' };
  }
  let insensitive = true;
  let multiline = false;
  for (const flag of text.slice(end + 1, flagsEnd)) {
    if (flag === 'i') insensitive = !insensitive;
    else if (flag === 'm') multiline = !multiline;
    else return { ok: false, reason: `unknown flag '${flag}'; regexp: tables accept i and m` };
  }
  let unknownClass = '';
  const source = text.slice(start + 1, end).replace(/\[:([a-z]+):\]/g, (whole, name: string) => {
    const range = POSIX_CLASSES[name];
    if (range === undefined) unknownClass = whole;
    return range ?? whole;
  });
  if (unknownClass) return { ok: false, reason: `unknown character class ${unknownClass}` };
  const flags = `${insensitive ? 'i' : ''}${multiline ? 'm' : ''}`;
  try {
    const pattern = new RegExp(source, flags);
    // Matching the empty string against `pattern|` counts the groups without knowing what the pattern matches.
    const groups = (new RegExp(`${source}|`, flags).exec('')?.length ?? 1) - 1;
    return {
      ok: true,
      value: { pattern, negate, groups, display: text.slice(0, flagsEnd), rest: rest.trim() },
    };
  } catch (error) {
    return { ok: false, reason: `the pattern does not compile: ${(error as Error).message}` };
  }
}

function parseResult(text: string, pattern: PatternPart): Parsed<(string | number)[]> {
  const parts: (string | number)[] = [];
  let last = 0;
  for (const match of text.matchAll(/\$(?:(\d)|\{(\d+)\}|(\$))/g)) {
    parts.push(text.slice(last, match.index));
    last = match.index + match[0].length;
    if (match[3] !== undefined) {
      parts.push('$');
      continue;
    }
    const group = Number(match[1] ?? match[2]);
    if (pattern.negate) return { ok: false, reason: `a negated pattern has no groups for ${match[0]}` };
    if (group > pattern.groups) {
      return { ok: false, reason: `${match[0]} but the pattern has ${pattern.groups} group(s)` };
    }
    parts.push(group);
  }
  parts.push(text.slice(last));
  return { ok: true, value: parts.filter((part) => part !== '') };
}

export class RegexpMatcher {
  constructor(
    private readonly nodes: readonly Node[],
    /** Number of rules (not counting `if` lines). */
    readonly size: number,
    private readonly maxQueryLength: number,
  ) {}

  lookup(query: LookupQuery): LookupResult {
    if (query.value.length > this.maxQueryLength) {
      return { status: 'error', reason: `query longer than ${this.maxQueryLength} characters` };
    }
    return this.search(this.nodes, query.value) ?? NOT_FOUND;
  }

  private search(nodes: readonly Node[], value: string): LookupResult | undefined {
    for (const node of nodes) {
      const match = node.pattern.exec(value);
      if (node.negate === (match !== null)) continue;
      if (node.kind === 'if') {
        const found = this.search(node.body, value);
        if (found) return found;
        continue;
      }
      const text = node.result
        .map((part) => (typeof part === 'number' ? (match?.[part] ?? '') : part))
        .join('');
      return { status: 'found', key: node.key, value: text };
    }
    return undefined;
  }
}

/** Compiles a regexp table from its non-blank, non-comment lines. */
export function compileRegexp(lines: readonly SourceLine[], limits: RegexpLimits): Parsed<RegexpMatcher> {
  const top: Node[] = [];
  const open: { body: Node[]; where: string }[] = [];
  let rules = 0;
  for (const line of lines) {
    const body = open.at(-1)?.body ?? top;
    const fail = (reason: string): Parsed<RegexpMatcher> => ({
      ok: false,
      reason: `${line.where}: ${reason}`,
    });
    if (line.text === 'endif') {
      if (!open.pop()) return fail('endif without if');
      continue;
    }
    const isIf = /^if\s/.test(line.text);
    const pattern = parsePattern(isIf ? line.text.slice(2).trim() : line.text);
    if (!pattern.ok) return fail(pattern.reason);
    if (isIf) {
      if (pattern.value.rest !== '') return fail('if takes a pattern and no result');
      const block: Block = {
        kind: 'if',
        pattern: pattern.value.pattern,
        negate: pattern.value.negate,
        body: [],
      };
      body.push(block);
      open.push({ body: block.body, where: line.where });
      continue;
    }
    if (++rules > limits.maxRules) return fail(`more than ${limits.maxRules} rules`);
    const result = parseResult(pattern.value.rest, pattern.value);
    if (!result.ok) return fail(result.reason);
    const { pattern: regexp, negate, display } = pattern.value;
    body.push({ kind: 'rule', pattern: regexp, negate, key: display, result: result.value });
  }
  const unclosed = open.at(-1);
  if (unclosed) return { ok: false, reason: `${unclosed.where}: if without endif` };
  return { ok: true, value: new RegexpMatcher(top, rules, limits.maxQueryLength) };
}
