/**
 * Postfix list values (restriction lists, map lists, option lists) as element lists, so that the generator can
 * merge its own entries into what a host already has: keep every element that is there, add what is missing,
 * never add one twice.
 *
 * Postfix separates list elements by commas and/or whitespace, and `{ ... }` groups one element that holds
 * separators (`check_policy_service { inet:127.0.0.1:10060, timeout=10s }`). A restriction that takes an
 * argument (`check_*`, `reject_rbl_client`, ...) is one element together with its argument.
 *
 * Contract: pure functions; an unbalanced brace keeps the rest of the value as one element (Postfix itself
 * would refuse it, and `postfix check` reports it).
 */

/** Restrictions whose next token is their argument (postconf(5)). */
const TAKES_ARGUMENT =
  /^(check_[a-z_]+|reject_rbl_client|reject_rhsbl_[a-z_]+|permit_(dnswl|rhswl)_client|sleep)$/;

/** The top-level tokens of a list value: words, and `{ ... }` groups normalised to `{ a, b }`. */
export function listTokens(value: string): string[] {
  const tokens: string[] = [];
  let i = 0;
  while (i < value.length) {
    const c = value[i] ?? '';
    if (/[\s,]/.test(c)) {
      i += 1;
      continue;
    }
    if (c === '{') {
      let depth = 0;
      let j = i;
      for (; j < value.length; j += 1) {
        if (value[j] === '{') depth += 1;
        else if (value[j] === '}' && --depth === 0) break;
      }
      tokens.push(normaliseGroup(value.slice(i, j + 1)));
      i = j + 1;
      continue;
    }
    let j = i;
    while (j < value.length && !/[\s,{]/.test(value[j] ?? '')) j += 1;
    tokens.push(value.slice(i, j));
    i = j;
  }
  return tokens;
}

function normaliseGroup(group: string): string {
  const inner = group.replace(/^\{/, '').replace(/\}$/, '');
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const c of inner) {
    if (c === '{') depth += 1;
    if (c === '}') depth -= 1;
    if (c === ',' && depth === 0) {
      parts.push(current.trim());
      current = '';
    } else current += c;
  }
  parts.push(current.trim());
  return `{ ${parts
    .filter((p) => p !== '')
    .map((p) => p.replace(/\s+/g, ' '))
    .join(', ')} }`;
}

/** Restriction elements: a restriction with its argument is one element (`check_policy_service inet:...`). */
export function restrictionElements(value: string): string[] {
  const tokens = listTokens(value);
  const elements: string[] = [];
  for (let i = 0; i < tokens.length; i += 1) {
    const token = tokens[i] ?? '';
    const next = tokens[i + 1];
    if (TAKES_ARGUMENT.test(token) && next !== undefined) {
      elements.push(`${token} ${next}`);
      i += 1;
    } else elements.push(token);
  }
  return elements;
}

/** The endpoint of a `check_policy_service` element (`inet:127.0.0.1:10060`, `unix:private/policy`), else undefined. */
export function policyEndpoint(element: string): string | undefined {
  const match = /^check_policy_service\s+(.*)$/.exec(element);
  if (!match) return undefined;
  const arg = match[1] ?? '';
  return arg.startsWith('{') ? (listTokens(arg.slice(1, -1))[0] ?? '') : arg;
}

/** Whether two list values hold the same elements in the same order. */
export function sameElements(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((element, i) => element === b[i]);
}

/** Appends what `wanted` has and `current` lacks, keeping the current order. */
export function withAdded(current: readonly string[], wanted: readonly string[]): string[] {
  return [...current, ...wanted.filter((element) => !current.includes(element))];
}
