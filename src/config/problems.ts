/**
 * Config problems in the one shape admins read: `key: value — problem; fix`. Every problem is collected and
 * reported at once; none stops the search for the others.
 */
import type { z } from 'zod';

export interface ConfigProblem {
  /** Dotted path, e.g. `policy.helo.mode`; `(file)` for problems with the file itself. */
  readonly key: string;
  /** The offending value as written (JSON, shortened), or `(missing)`. */
  readonly value: string;
  readonly problem: string;
  readonly fix: string;
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.key}: ${p.value} — ${p.problem}; ${p.fix}`;
}

export function showValue(value: unknown): string {
  if (value === undefined) return '(missing)';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let node: unknown = root;
  for (const step of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[step];
  }
  return node;
}

function dotted(path: readonly PropertyKey[]): string {
  // Built step by step: a key that itself contains ".[" must come out as written.
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out || '(root)';
}

/** Splits our custom messages ("problem; fix") and derives a fix for zod's own issue kinds. */
function problemAndFix(issue: z.core.$ZodIssue): { problem: string; fix: string } {
  const [head, ...tail] = issue.message.split('; ');
  if (issue.code === 'custom' && tail.length > 0)
    return { problem: head ?? issue.message, fix: tail.join('; ') };
  switch (issue.code) {
    case 'invalid_type':
      return { problem: `expected ${issue.expected}`, fix: `write a ${issue.expected}` };
    case 'invalid_value':
      return {
        problem: 'not an allowed value',
        fix: `use one of: ${issue.values.map((v) => String(v)).join(', ')}`,
      };
    case 'too_small':
      return {
        problem: `too small (minimum ${String(issue.minimum)})`,
        fix: `use ${String(issue.minimum)} or more`,
      };
    case 'too_big':
      return {
        problem: `too large (maximum ${String(issue.maximum)})`,
        fix: `use ${String(issue.maximum)} or less`,
      };
    case 'invalid_format':
    case 'invalid_union':
      return { problem: issue.message, fix: 'see docs/config-reference.md for the accepted forms' };
    default:
      return { problem: issue.message, fix: 'see docs/config-reference.md' };
  }
}

export function problemsFromZod(
  error: z.ZodError,
  input: unknown,
  known: (path: string) => string[],
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const path = [...issue.path, key];
        const siblings = known(dotted(issue.path));
        problems.push({
          key: dotted(path),
          value: showValue(valueAt(input, path)),
          problem: 'unknown key',
          fix: siblings.length > 0 ? `remove it, or use one of: ${siblings.join(', ')}` : 'remove it',
        });
      }
      continue;
    }
    if (issue.code === 'invalid_union') {
      // A map reference or listen list: report the simplest reading rather than every branch.
      problems.push({
        key: dotted(issue.path),
        value: showValue(valueAt(input, issue.path)),
        problem: 'not an accepted form',
        fix: 'write a string (e.g. "file:/etc/postwarden/x" or "127.0.0.1:10060") or a list of strings',
      });
      continue;
    }
    problems.push({
      key: dotted(issue.path),
      value: showValue(valueAt(input, issue.path)),
      ...problemAndFix(issue),
    });
  }
  return problems;
}
