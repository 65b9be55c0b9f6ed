/**
 * The config loader: documents drawn from the config schema itself (every key, values inside, at and past their
 * bounds, of the wrong type, unknown keys beside known ones), given as objects and as YAML text, the text also
 * damaged (bytes flipped, cut, YAML's own hazards spliced in: anchors and aliases, an alias bomb, deep flow
 * nesting, tags, directives, duplicate keys, tabs). Properties: validating and loading never throw; a valid
 * document gives a frozen config; an invalid one gives at least one problem, each naming a key (a path into the
 * document, `(root)` or `(file)`), the value, the problem and a fix; reading the map references of any document
 * never throws.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { z } from 'zod';
import { mapRefsOf, parseConfigText, validateConfig, type LoadResult } from '../../../src/config/load.js';
import { formatProblem } from '../../../src/config/problems.js';
import { configSchema } from '../../../src/config/schema.js';
import type { FuzzTarget } from '../runner.js';

interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  additionalProperties?: JsonSchema | boolean;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  maxItems?: number;
}

const MAP_REFS = [
  'inline:{a=b}',
  'file:/nonexistent/pw-fuzz',
  'cidr:/nonexistent',
  'regexp:/nonexistent',
  'ldap:/nonexistent',
  'redis:',
  'bogus:x',
  '',
  'example.org',
  '192.0.2.0/24',
  '/^x$/',
];

const wrong: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, 0, -1, 1e308, '', 'x', [], {}, ['a', 1], { a: 1 }),
  fc.jsonValue({ maxDepth: 2 }),
);

const unknownKeys = fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), fc.jsonValue({ maxDepth: 1 }), {
  minKeys: 1,
  maxKeys: 2,
});

/** An arbitrary of documents for a JSON Schema node: mostly what it accepts, sometimes not. */
function fromSchema(node: JsonSchema, depth = 0): fc.Arbitrary<unknown> {
  let valid: fc.Arbitrary<unknown>;
  if (node.anyOf) valid = fc.oneof(...node.anyOf.map((n) => fromSchema(n, depth + 1)));
  else if (node.enum) valid = fc.constantFrom(...node.enum);
  else {
    switch (node.type) {
      case 'object': {
        // A few keys of each object at a time: whole documents would make every input a slow YAML parse.
        const props = Object.entries(node.properties ?? {}).map(
          ([k, v]) => [k, fromSchema(v, depth + 1)] as const,
        );
        const record =
          props.length === 0
            ? fc.constant({})
            : fc
                .shuffledSubarray(props, { maxLength: Math.min(3, props.length) })
                .chain((chosen) => fc.record(Object.fromEntries(chosen)));
        const extra =
          typeof node.additionalProperties === 'object'
            ? fc.dictionary(fc.string({ maxLength: 20 }), fromSchema(node.additionalProperties, depth + 1), {
                maxKeys: 3,
              })
            : fc.constant({});
        valid = fc
          .tuple(record, extra, fc.option(unknownKeys, { freq: 8 }))
          .map(([r, e, u]) => ({ ...e, ...(u ?? {}), ...r }));
        break;
      }
      case 'array':
        valid = fc.array(node.items ? fromSchema(node.items, depth + 1) : wrong, {
          maxLength: Math.min(node.maxItems ?? 4, 4),
        });
        break;
      case 'integer':
      case 'number': {
        const min = node.minimum ?? -1e6;
        const max = node.maximum ?? 1e6;
        valid = fc.oneof(
          fc.integer({ min: Math.max(min - 2, -(2 ** 31)), max: Math.min(max + 2, 2 ** 31 - 1) }),
          fc.constantFrom(min, max, min - 1, max + 1, 0.5),
          fc.double({ noNaN: true }),
        );
        break;
      }
      case 'boolean':
        valid = fc.boolean();
        break;
      case 'string':
        valid = fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom(...MAP_REFS), fc.domain());
        break;
      default:
        valid = wrong;
    }
  }
  return depth === 0 ? valid : fc.oneof({ weight: 12, arbitrary: valid }, { weight: 1, arbitrary: wrong });
}

const ROOT = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
const documents = fromSchema(ROOT);

/** What YAML makes dangerous, spliced into a document's text. */
const HAZARDS = [
  'a: &x [1, 2]\nb: *x\n',
  `x0: &a0 [lol]\n${Array.from({ length: 12 }, (_v, i) => `x${i + 1}: &a${i + 1} [${Array(9).fill(`*a${i}`).join(', ')}]`).join('\n')}\n`,
  `deep: ${'['.repeat(5000)}${']'.repeat(5000)}\n`,
  `deep: ${'{a: '.repeat(3000)}1${'}'.repeat(3000)}\n`,
  '<<: *undefined\n',
  '%YAML 1.1\n---\n',
  '--- !!binary AAAA\n',
  'x: !!js/function "function(){}"\n',
  'policy: 1\npolicy: 2\n',
  '\tpolicy:\n\t\tchecks: []\n',
  '? [a, b]\n: c\n',
  '__proto__: {polluted: true}\n',
  'constructor: {prototype: {x: 1}}\n',
  'x: "\\uD800"\n',
  '...\n---\nother: document\n',
  '- a\n- b\n',
  'hostname: 0x10\nrecipient_delimiter: .nan\n',
  'x: ~\n',
];

interface Input {
  readonly document: unknown;
  /** How the loader gets it: the object, its YAML, or its YAML damaged. */
  readonly form: 'object' | 'yaml' | 'damaged';
  readonly damage: readonly { readonly at: number; readonly kind: number }[];
}

const input: fc.Arbitrary<Input> = fc.record({
  document: documents,
  form: fc.constantFrom('object', 'yaml', 'damaged'),
  damage: fc.array(fc.record({ at: fc.nat(), kind: fc.nat() }), { minLength: 1, maxLength: 3 }),
});

function textOf({ document, form, damage }: Input): string {
  let text = stringify(document);
  if (form !== 'damaged') return text;
  for (const { at, kind } of damage) {
    const i = text.length === 0 ? 0 : at % text.length;
    switch (kind % 4) {
      case 0:
        text =
          text.slice(0, i) +
          String.fromCharCode((text.charCodeAt(i) ^ (((kind >>> 2) % 127) + 1)) & 0xffff) +
          text.slice(i + 1);
        break;
      case 1:
        text = text.slice(0, i);
        break;
      default:
        text = `${text.slice(0, i)}\n${HAZARDS[(kind >>> 2) % HAZARDS.length]}${text.slice(i)}`;
    }
  }
  return text;
}

function checkResult(result: LoadResult, document: unknown): void {
  if (result.ok) {
    assert.ok(Object.isFrozen(result.config), 'a config that is not frozen');
    assert.ok(Object.isFrozen(result.config.policy), 'a config whose sections are not frozen');
    return;
  }
  assert.ok(result.problems.length > 0, 'invalid without a problem');
  const roots = document !== null && typeof document === 'object' ? Object.keys(document) : [];
  for (const p of result.problems) {
    for (const field of ['key', 'value', 'problem', 'fix'] as const) {
      assert.equal(typeof p[field], 'string', `problem ${field}: ${JSON.stringify(p)}`);
      assert.ok(p[field] !== '', `empty problem ${field}: ${JSON.stringify(p)}`);
    }
    const inDocument = roots.some(
      (r) => p.key === r || p.key.startsWith(`${r}.`) || p.key.startsWith(`${r}[`),
    );
    assert.ok(
      ['(file)', '(root)'].includes(p.key) || inDocument || p.value === '(missing)',
      `problem key ${JSON.stringify(p.key)} is not in the document`,
    );
    assert.equal(typeof formatProblem(p), 'string');
  }
}

const target: FuzzTarget<Input> = {
  name: 'config',
  unit: 'documents',
  iterations: { quick: 300, full: 20_000 },
  timeoutMs: 10_000,
  heapMb: 512,
  extension: '.yml',
  input,
  open: () =>
    Promise.resolve({
      run(given: Input): number {
        if (given.form === 'object') {
          checkResult(validateConfig(given.document, { kind: 'embedded' }), given.document);
          mapRefsOf(given.document);
        } else {
          const result = parseConfigText(textOf(given), { kind: 'file', path: 'fuzz.yml' });
          checkResult(result, result.input);
          mapRefsOf(result.input);
        }
        return 1;
      },
    }),
  show: (given) => (given.form === 'object' ? `# as an object\n${stringify(given.document)}` : textOf(given)),
};

export default target;
