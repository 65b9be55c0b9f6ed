/**
 * The admin API (`/api/v1/*`, src/http/api/*.ts and the rate-limit routes; docs/openapi.json lists them) through
 * fastify's `inject()`, with the real admin services behind it: a quarantine directory holding a few messages
 * (topped up as releases and deletes remove them), an in-memory SQLite store, the list entries, the greylist and
 * decisions, and a recording SMTP server on loopback as the re-injection target. Inputs: every route with ids
 * that are held, valid-looking, path traversals, encoded and garbage; the route's own query and body fields
 * with plausible and hostile values, random JSON and bytes; other methods; the path spelled otherwise
 * (`%61pi`, dot segments, doubled slashes); the bearer token right, wrong, in another scheme, or in the query.
 *
 * Properties: never a 500 (a 5xx only as documented: 503, and 502 from the hold queue); nothing logged as an
 * internal failure (PW-H001); without the right token, every matched `/api/` route (whatever the spelling)
 * answers 401 and nothing is audited (PW-H004); the token never in the log; nothing outside the quarantine
 * directory touched (the run directory and a sibling directory keep their listing, sizes and times); the
 * process's open files stay bounded.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { LIST_NAMES, ListOps } from '../../../src/admin/lists.js';
import { QuarantineOps } from '../../../src/admin/quarantine.js';
import { instanceStatus } from '../../../src/admin/status.js';
import { configSchema } from '../../../src/config/schema.js';
import { Quarantine } from '../../../src/filter/quarantine.js';
import { buildHttpApp } from '../../../src/http/app.js';
import { RuntimeEntries } from '../../../src/maps/runtime.js';
import { createLogger } from '../../../src/observe/logger.js';
import { Metrics } from '../../../src/observe/metrics.js';
import { SqliteStore } from '../../../src/store/sqlite.js';
import { holdVirusMessage } from '../../harness/quarantine.js';
import { startRecordingSmtp } from '../../harness/smtp.js';
import type { FuzzTarget } from '../runner.js';

const TOKEN = 'fuzz-admin-api-token-0123456789abcdef';
/** Messages kept held, so releases, deletes and shows find some. */
const HELD = 4;

/** Every route: docs/openapi.json's paths, the document itself, and the rate-limit incidents. */
const ROUTES = [
  ['GET', '/api/v1/openapi.json'],
  ['GET', '/api/v1/quarantine'],
  ['GET', '/api/v1/quarantine/{id}'],
  ['DELETE', '/api/v1/quarantine/{id}'],
  ['GET', '/api/v1/quarantine/{id}/raw'],
  ['POST', '/api/v1/quarantine/{id}/release'],
  ['GET', '/api/v1/greylist'],
  ['DELETE', '/api/v1/greylist'],
  ['GET', '/api/v1/greylist/awl'],
  ['DELETE', '/api/v1/greylist/awl'],
  ['POST', '/api/v1/greylist/allow'],
  ['GET', '/api/v1/lists'],
  ['GET', '/api/v1/lists/{list}'],
  ['POST', '/api/v1/lists/{list}/entries'],
  ['DELETE', '/api/v1/lists/{list}/entries'],
  ['GET', '/api/v1/status'],
  ['GET', '/api/v1/decisions/{queueId}'],
  ['POST', '/api/v1/learn/{cls}'],
  ['GET', '/api/v1/ratelimit/users'],
  ['GET', '/api/v1/ratelimit/users/{user}'],
  ['POST', '/api/v1/ratelimit/users/{user}/release'],
  ['POST', '/api/v1/ratelimit/users/{user}/delete'],
  ['POST', '/api/v1/ratelimit/users/{user}/reset'],
] as const;

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'] as const;
type Method = (typeof METHODS)[number];

const hex = (length: number) =>
  fc.string({ minLength: length, maxLength: length, unit: fc.constantFrom(...'0123456789abcdef') });

const garbage = fc.oneof(
  fc.string({ maxLength: 30 }).map(encodeURIComponent),
  fc.string({ maxLength: 10, unit: 'binary' }).map(encodeURIComponent),
  fc.constantFrom('%', '%zz', '%00', '%ff', '%2F', '..', '.', '%2e%2e', '~', ';', 'a'.repeat(3000)),
);

const traversal = fc.constantFrom(
  '..%2F..%2Fsibling%2Fkeep.txt',
  '..%2Fsibling',
  '%2e%2e%2f%2e%2e%2fsibling',
  '..%5C..%5Csibling',
  '20261123-0123456789abcdef%2F..%2F..%2Fsibling',
  '20261123-0123456789abcdef%00',
  '%2Ftmp%2Fx',
  '....%2F%2F',
);

/** A quarantine id: one held (by its index in the pool), one that looks valid, a traversal, or garbage. */
const id = fc.oneof(
  { weight: 4, arbitrary: fc.nat({ max: HELD - 1 }).map((i) => ({ held: i })) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom('20261123', '20000101', '99991299', '2026112'), hex(16))
      .map(([day, h]) => `${day}-${h}`),
  },
  { weight: 1, arbitrary: traversal },
  { weight: 1, arbitrary: garbage },
);

const params = fc.record({
  id,
  list: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...LIST_NAMES) }, { weight: 1, arbitrary: garbage }),
  queueId: fc.oneof(
    fc.constantFrom('ABC123DEF', '4Xy9Zq1Lm2', '0'),
    fc.string({ minLength: 1, maxLength: 20, unit: fc.constantFrom(...'0123456789ABCDEFXYZbcdfz') }),
    garbage,
  ),
  cls: fc.oneof(fc.constantFrom('spam', 'ham', 'Spam'), garbage),
  user: fc.oneof(fc.constantFrom('alice@example.org', 'ALICE@example.org ', 'bob'), garbage, traversal),
});

const address = fc.oneof(
  fc.constantFrom('bob@example.org', 'a@remote.test', 'x@y', '<a@b>', '@', 'a b@c', ''),
  fc.emailAddress(),
  fc.string({ maxLength: 40 }),
);
const network = fc.oneof(
  fc.constantFrom('192.0.2.1', '192.0.2.0/24', '2001:db8::/32', '::1', '0.0.0.0/0', '192.0.2.1/33', 'x', ''),
  fc.ipV4(),
  fc.ipV6(),
  fc.string({ maxLength: 80 }),
);

/** A field of any type, for the schemas to refuse. */
const any = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.string({ maxLength: 400 }));

/** Query fields the routes read (limit, filters, triplet, entry), plausible or not, and some they do not. */
const query = fc.oneof(
  { weight: 3, arbitrary: fc.constant({}) },
  {
    weight: 3,
    arbitrary: fc.oneof(
      fc.record({ limit: fc.integer({ min: 1, max: 50 }).map(String) }),
      fc.record({ recipient: address }),
      fc.record({ symbol: fc.constantFrom('VIRUS', 'BANNED') }),
      fc.record({ network }),
      fc.record({ sender: address }),
      fc.record({ triplet: fc.constant('192.0.2|a@b|c@d') }),
      fc.record({ entry: fc.oneof(network, address) }),
    ),
  },
  {
    weight: 4,
    arbitrary: fc.record(
      {
        limit: fc.oneof(fc.integer({ min: -5, max: 20_000 }).map(String), fc.string({ maxLength: 8 })),
        recipient: address,
        sender: address,
        symbol: fc.oneof(fc.constantFrom('VIRUS', 'BANNED', ''), fc.string({ maxLength: 80 })),
        network,
        triplet: fc.oneof(fc.string({ maxLength: 100 }), fc.constant('192.0.2|a@b|c@d')),
        entry: fc.oneof(network, address, fc.string({ maxLength: 300 })),
      },
      { requiredKeys: [] },
    ),
  },
  { weight: 1, arbitrary: fc.dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 20 })) },
  // The token where it does not belong: it must open nothing and never reach the log.
  { weight: 1, arbitrary: fc.constantFrom({ token: TOKEN }, { access_token: TOKEN }) },
);

const jsonBody = fc.oneof(
  fc.record({ to: fc.oneof(fc.array(address, { maxLength: 4 }), any) }, { requiredKeys: [] }),
  fc.record({ network: fc.oneof(network, any) }, { requiredKeys: [] }),
  fc.record(
    { entry: fc.oneof(network, address, any), value: fc.oneof(fc.constantFrom('REJECT', 'OK', ''), any) },
    { requiredKeys: [] },
  ),
  fc.dictionary(fc.string({ maxLength: 10 }), any, { maxKeys: 4 }),
  any,
);

const body = fc.oneof(
  { weight: 2, arbitrary: fc.constant(null) },
  {
    weight: 6,
    arbitrary: jsonBody.map((v) => ({ type: 'application/json', payload: JSON.stringify(v) ?? '' })),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constantFrom('message/rfc822', 'text/plain', 'application/octet-stream'),
      payload: fc.oneof(
        fc.constant('From: a@remote.test\r\nSubject: x\r\n\r\nbody\r\n'),
        fc.string({ maxLength: 300 }),
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.oneof(
        fc.constantFrom('application/json', 'application/x-www-form-urlencoded', 'multipart/form-data', ''),
        fc.string({ maxLength: 30, unit: 'binary-ascii' }),
      ),
      payload: fc.oneof(
        fc.constantFrom('{', '[]', 'null', '{"__proto__":{"to":["a@b"]}}', 'a=1&a=2'),
        fc.string({ maxLength: 200 }),
        fc.nat({ max: 1 }).map((n) => `{"entry":"${'x'.repeat([70_000, 1_100_000][n]!)}"}`),
      ),
    }),
  },
);

/** How the path is spelled: as is, or otherwise so that it may still reach the same route. */
const spelling = fc.constantFrom(
  'plain',
  'plain',
  'plain',
  'plain',
  'encoded-a',
  'upper',
  'double-slash',
  'dot-segment',
  'trailing-slash',
  'encoded-slash',
);

const authorization = fc.oneof(
  { weight: 6, arbitrary: fc.constant<string | null>(`Bearer ${TOKEN}`) },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.constant(null),
      fc.constantFrom(
        '',
        'Bearer ',
        TOKEN,
        `bearer ${TOKEN}`,
        `Bearer  ${TOKEN}`,
        `Bearer ${TOKEN}x`,
        `Bearer ${TOKEN.slice(0, -1)}`,
        `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`,
      ),
      fc.string({ maxLength: 40, unit: 'binary-ascii' }),
    ),
  },
);

interface Input {
  readonly route: number;
  readonly method: Method | null;
  readonly params: {
    readonly id: string | { readonly held: number };
    readonly list: string;
    readonly queueId: string;
    readonly cls: string;
    readonly user: string;
  };
  readonly spelling: string;
  readonly query: Record<string, string>;
  readonly authorization: string | null;
  readonly body: { readonly type: string; readonly payload: string } | null;
}

const input: fc.Arbitrary<Input> = fc.record({
  route: fc.nat({ max: ROUTES.length - 1 }),
  method: fc.oneof(
    { weight: 6, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.constantFrom(...METHODS) },
  ),
  params,
  spelling,
  query,
  authorization,
  body,
});

/** The token in the Bearer scheme (its name in any case, RFC 9110 11.1; spaces around the token allowed). */
function carriesToken(header: string | null): boolean {
  return header !== null && new RegExp(`^bearer +${TOKEN} *$`, 'i').test(header);
}

function spell(url: string, how: string): string {
  switch (how) {
    case 'encoded-a':
      return url.replace('/api/', '/%61pi/');
    case 'upper':
      return url.replace('/api/v1/', '/API/V1/');
    case 'double-slash':
      return url.replace('/api/v1/', '/api//v1/');
    case 'dot-segment':
      return url.replace('/api/v1/', '/api/v1/x/../');
    case 'trailing-slash':
      return `${url}/`;
    case 'encoded-slash':
      return url.replace('/api/v1/', '/api%2Fv1/');
    default:
      return url;
  }
}

/** The process's open file descriptors (Linux; elsewhere 0, and the property holds trivially). */
function openFiles(): number {
  return existsSync('/proc/self/fd') ? readdirSync('/proc/self/fd').length : 0;
}

/** Every file and directory under `dir` but `skip`, with its size and modification time. */
function listing(dir: string, skip: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const full = path.join(entry.parentPath, entry.name);
    if (full === skip || full.startsWith(`${skip}${path.sep}`)) continue;
    const stat = statSync(full);
    out.push(`${full} ${stat.size} ${stat.mtimeMs}`);
  }
  return out.sort();
}

const target: FuzzTarget<Input> = {
  name: 'admin-api',
  unit: 'requests',
  iterations: { quick: 1500, full: 100_000 },
  timeoutMs: 15_000,
  heapMb: 384,
  input,
  async open(ctx) {
    const lines: string[] = [];
    const logger = createLogger(
      'info',
      new Writable({
        write(chunk: Buffer, _e, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    );
    const sibling = path.join(ctx.workDir, 'sibling');
    mkdirSync(sibling);
    writeFileSync(path.join(sibling, 'keep.txt'), 'nothing here may change\n');
    writeFileSync(path.join(sibling, 'allow-clients'), '192.0.2.9\n');
    const config = configSchema.parse({
      local_domains: ['example.org'],
      policy: {
        checks: ['lists', 'greylist'],
        lists: {
          block: { client: ['192.0.2.66', 'inline:{ 192.0.2.67 }'], sender: [] },
          allow: { client: `file:${path.join(sibling, 'allow-clients')}` },
        },
      },
    });
    const store = new SqliteStore({ path: ':memory:' });
    const smtp = await startRecordingSmtp(ctx.port);
    const quarantineDir = path.join(ctx.workDir, 'quarantine');
    const quarantine = new Quarantine(quarantineDir, 30, store);
    quarantine.prepare();
    const ops = new QuarantineOps(quarantine, {
      host: smtp.host,
      port: smtp.port,
      name: 'mx1.example.org',
      timeoutMs: 5000,
    });
    /** What the learn route and the hold queue were asked to do during one input. */
    const acted: string[] = [];
    const metrics = new Metrics({ processMetrics: false });
    const app: FastifyInstance = buildHttpApp({
      metrics,
      logger,
      readiness: () => [],
      adminToken: TOKEN,
      learn: (cls) => {
        acted.push(`learn ${cls}`);
        return 'queued';
      },
      admin: {
        status: () =>
          instanceStatus({
            instance: 'mx1.example.org',
            startedAt: new Date(),
            faces: () => [],
            readiness: () => [{ name: 'store sqlite', ready: true }],
          }),
        quarantine: ops,
        greylist: {
          store,
          settings: { greylist: config.policy.greylist, recipientDelimiter: config.recipient_delimiter },
        },
        lists: new ListOps(config.policy.lists, new RuntimeEntries(store)),
        decisions: store,
      },
      ratelimit: {
        store,
        recipientDelimiter: '+',
        // Postfix's hold queue is not here: the ids asked for are taken as acted on.
        queue: {
          release: async (ids) => {
            acted.push('release');
            return [...ids];
          },
          remove: async (ids) => {
            acted.push('remove');
            return [...ids];
          },
        },
      },
    });
    let matched = undefined as string | undefined;
    app.addHook('onResponse', async (request) => {
      matched = request.routeOptions.url;
    });
    await app.ready();

    const pool: string[] = [];
    const hold = (): Promise<string> => holdVirusMessage(quarantine, `held ${quarantine.newId()}`);
    const before = listing(ctx.workDir, quarantineDir);
    const descriptors = openFiles();

    return {
      async run(given: Input): Promise<number> {
        lines.length = 0;
        smtp.received.length = 0;
        acted.length = 0;
        // Keep HELD messages held: releases and deletes take them away.
        for (let i = 0; i < HELD; i++) {
          const current = pool[i];
          if (current === undefined || (await ops.show(current)).status !== 'found') pool[i] = await hold();
        }
        const [routeMethod, template] = ROUTES[given.route]!;
        const p = given.params;
        const url = template
          .replace('{id}', typeof p.id === 'string' ? p.id : pool[p.id.held]!)
          .replace('{list}', p.list)
          .replace('{queueId}', p.queueId)
          .replace('{cls}', p.cls)
          .replace('{user}', p.user);
        const search = new URLSearchParams(given.query).toString();
        const spelled = `${spell(url, given.spelling)}${search === '' ? '' : `?${search}`}`;
        const method = given.method ?? routeMethod;
        const headers: Record<string, string> = {};
        if (given.authorization !== null) headers['authorization'] = given.authorization;
        if (given.body !== null) headers['content-type'] = given.body.type;
        matched = undefined as string | undefined;
        const response = await app.inject({
          method,
          url: spelled,
          headers,
          ...(given.body !== null && method !== 'GET' && method !== 'HEAD'
            ? { payload: given.body.payload }
            : {}),
        });
        const status = response.statusCode;
        const where = `${method} ${spelled.slice(0, 120)}`;
        assert.ok(status >= 200 && status < 600, `${where}: status ${status}`);
        assert.ok(
          status < 500 || status === 503 || status === 502,
          `${where} answered ${status}: ${response.body.slice(0, 300)}`,
        );
        const log = lines.join('');
        assert.ok(!log.includes('PW-H001'), `${where}: an internal failure was logged: ${log.slice(0, 800)}`);
        assert.ok(!log.includes(TOKEN), `${where}: the token was logged`);
        if (!carriesToken(given.authorization)) {
          assert.ok(status < 200 || status >= 300, `${where}: ${status} without the token`);
          if (matched?.startsWith('/api/')) {
            assert.equal(status, 401, `${where}: route ${matched} answered ${status} without the token`);
          }
          assert.ok(!log.includes('PW-H004'), `${where}: a change was audited without the token`);
          assert.deepEqual(acted, [], `${where}: acted on without the token`);
          assert.equal(smtp.received.length, 0, `${where}: a message released without the token`);
        }
        assert.deepEqual(
          listing(ctx.workDir, quarantineDir),
          before,
          `${where}: something outside the quarantine changed`,
        );
        // A file left open per request (a held message shown) runs the process out of descriptors in the end.
        assert.ok(openFiles() < descriptors + 200, `${where}: ${openFiles() - descriptors} more files open`);
        return 1;
      },
      async close() {
        await app.close();
        await smtp.close();
        await store.close();
      },
    };
  },
  show: (given) => `${JSON.stringify(given, null, 1)}\n`,
};

export default target;
