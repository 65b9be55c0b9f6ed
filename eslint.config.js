// ESLint flat config: typescript-eslint's recommended rules plus one local rule, `postwarden/layers`,
// that keeps dependencies pointing inward (STYLE.md principle 11).
import path from 'node:path';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

// The layers, innermost first. A file may import its own layer and any layer listed in `mayImport`.
// Faces never import each other; only src/cli (which hosts `serve`) wires them together.
const LAYERS = {
  util: { mayImport: [] },
  core: { mayImport: ['util'] },
  maps: { mayImport: ['util', 'core'] },
  store: { mayImport: ['util', 'core'] },
  adapters: { mayImport: ['util', 'core'] },
  config: { mayImport: ['util', 'core'] },
  observe: { mayImport: ['util', 'core'] },
  policy: { mayImport: ['util', 'core', 'maps', 'store', 'adapters', 'config', 'observe'] },
  filter: { mayImport: ['util', 'core', 'maps', 'store', 'adapters', 'config', 'observe'] },
  // The admin operations (quarantine, greylist, list entries, decisions, status): one implementation that the
  // HTTP face and the CLI both call. It reaches the quarantine files and the re-injection client of the filter.
  admin: { mayImport: ['util', 'core', 'maps', 'store', 'adapters', 'config', 'observe', 'filter'] },
  http: { mayImport: ['util', 'core', 'maps', 'store', 'adapters', 'config', 'observe', 'admin'] },
  generate: { mayImport: ['util', 'core', 'config', 'observe'] },
  dovecot: { mayImport: ['util', 'core', 'maps', 'store', 'adapters', 'config', 'observe'] },
  // `postwarden doctor`'s checks: they judge the host from outside, through the same adapters (no face).
  doctor: { mayImport: ['util', 'core', 'maps', 'store', 'adapters', 'config', 'observe'] },
  cli: {
    mayImport: [
      'util',
      'core',
      'maps',
      'store',
      'adapters',
      'config',
      'observe',
      'policy',
      'filter',
      'http',
      'generate',
      'dovecot',
      'admin',
      'doctor',
    ],
  },
};

// Modules that put a socket, a server framework or a database driver in reach: never in the pure core or util.
const IMPURE_MODULES =
  /^(node:)?(net|dgram|dns|dns\/promises|http|https|http2|tls|child_process|cluster|fs|fs\/promises)$|^(fastify|pino|prom-client|better-sqlite3|ioredis|ldapts|smtp-server|nodemailer|clamscan|dnsbl)(\/|$)/;

const SRC = path.resolve('src');

function layerOf(file) {
  const rel = path.relative(SRC, file);
  if (rel.startsWith('..')) return undefined;
  return rel.split(path.sep)[0];
}

// Hand-written because import plugins need a resolver that understands NodeNext's `.js` specifiers for `.ts`
// files; resolving a relative specifier against the importing file is all this rule needs.
const layersRule = {
  meta: {
    type: 'problem',
    schema: [],
    messages: { inward: '{{from}} may not import {{to}} ({{spec}}): {{why}}' },
  },
  create(context) {
    const file = context.filename;
    const from = layerOf(file);
    if (!from || !(from in LAYERS)) return {};
    function check(node, spec) {
      if (typeof spec !== 'string') return;
      if ((from === 'core' || from === 'util') && IMPURE_MODULES.test(spec)) {
        context.report({
          node,
          messageId: 'inward',
          data: { from, to: spec, spec, why: 'the core is pure: adapters come in through ports' },
        });
        return;
      }
      if (!spec.startsWith('.')) return;
      const to = layerOf(path.resolve(path.dirname(file), spec));
      if (!to || to === from) return;
      if (!LAYERS[from].mayImport.includes(to)) {
        context.report({
          node,
          messageId: 'inward',
          data: {
            from,
            to,
            spec,
            why: 'dependencies point inward (util ← core ← maps/store/… ← faces ← cli)',
          },
        });
      }
    }
    return {
      ImportDeclaration: (node) => check(node, node.source.value),
      ExportNamedDeclaration: (node) => node.source && check(node, node.source.value),
      ExportAllDeclaration: (node) => check(node, node.source.value),
      ImportExpression: (node) => node.source.type === 'Literal' && check(node, node.source.value),
    };
  },
};

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'var/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    plugins: { postwarden: { rules: { layers: layersRule } } },
    rules: {
      'postwarden/layers': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      eqeqeq: ['error', 'always'],
      'no-console': 'error',
    },
  },
  {
    files: ['src/cli/**', 'test/**', 'bench/**', 'eslint.config.js'],
    rules: { 'no-console': 'off' },
  },
);
