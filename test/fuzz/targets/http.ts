/**
 * The HTTP face through fastify's `inject()`: random methods, paths (the real routes, their neighbours, encoded
 * and overlong ones), headers (the bearer token right, wrong or malformed; content types and lengths that lie)
 * and bodies. Properties: an answer for every request, never a throw; no 5xx but the documented ones (503:
 * `/readyz` not ready, the admin API without a token, nothing learning, the learn queue full); nothing logged as
 * an internal failure (PW-H001); a learn report is only taken with the right token.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { buildHttpApp, type LearnClass } from '../../../src/http/app.js';
import { createLogger } from '../../../src/observe/logger.js';
import { Metrics } from '../../../src/observe/metrics.js';
import { statusOnlyAdmin } from '../../harness/admin.js';
import type { FuzzTarget } from '../runner.js';

const TOKEN = 'fuzz-admin-token-0123456789';

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'] as const;

const segment = fc.oneof(
  fc.constantFrom(
    'api',
    'v1',
    'learn',
    'spam',
    'ham',
    'metrics',
    'healthz',
    'readyz',
    '',
    '..',
    '.',
    '%2e%2e',
  ),
  fc.string({ maxLength: 12 }).map(encodeURIComponent),
  fc.string({ maxLength: 8, unit: 'binary' }).map((s) => encodeURIComponent(s)),
  fc.constantFrom('%', '%zz', '%00', '%ff', ';', '?', '#', '%2F', '~'),
);

const url = fc.oneof(
  fc.constantFrom(
    '/metrics',
    '/healthz',
    '/readyz',
    '/api/v1/learn/spam',
    '/api/v1/learn/ham',
    '/api/v1/learn/x',
  ),
  fc.array(segment, { maxLength: 6 }).map((parts) => `/${parts.join('/')}`),
  fc
    .tuple(fc.constantFrom('/api/v1/learn/spam', '/readyz', '/metrics'), fc.string({ maxLength: 30 }))
    .map(([p, q]) => `${p}?${encodeURIComponent(q)}=${q.length}`),
  fc.nat({ max: 20_000 }).map((n) => `/api/${'a'.repeat(n)}`),
);

const authorization = fc.option(
  fc.oneof(
    fc.constant(`Bearer ${TOKEN}`),
    fc.constantFrom(
      'Bearer ',
      'Bearer',
      `bearer ${TOKEN}`,
      `Bearer ${TOKEN} `,
      `Basic ${TOKEN}`,
      `Bearer ${TOKEN}x`,
    ),
    fc.string({ maxLength: 40 }).map((s) => `Bearer ${s}`),
    fc.string({ maxLength: 40, unit: 'binary-ascii' }),
  ),
);

const contentType = fc.option(
  fc.oneof(
    fc.constantFrom(
      'message/rfc822',
      'application/octet-stream',
      'text/plain',
      'text/plain; charset=utf-8',
      'application/json',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'MESSAGE/RFC822',
      'message/rfc822;',
      ';',
      '',
    ),
    fc.string({ maxLength: 30, unit: 'binary-ascii' }),
  ),
);

const body = fc.option(
  fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b)),
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    fc.constantFrom('{', '{"a":', '[]', 'null', '{"__proto__":{"x":1}}', 'a=1&a=2&b'),
    fc.nat({ max: 3 }).map((n) => Buffer.alloc([0, 1_048_577, 2_000_000, 11 * 1024 * 1024][n]!, 0x41)),
  ),
);

interface Input {
  readonly method: (typeof METHODS)[number];
  readonly url: string;
  readonly authorization: string | null;
  readonly contentType: string | null;
  readonly body: string | Buffer | null;
  /** A content-length header that may lie. */
  readonly length: number | null;
  readonly ready: readonly boolean[];
  readonly learnSays: 'queued' | 'duplicate' | 'full' | 'off' | 'no-token';
}

const common = {
  contentType,
  body,
  length: fc.option(fc.oneof(fc.nat({ max: 5000 }), fc.constantFrom(-1, 2 ** 53)), { freq: 2 }),
  ready: fc.array(fc.boolean(), { maxLength: 3 }),
  learnSays: fc.constantFrom('queued', 'duplicate', 'full', 'off', 'no-token'),
};

/** Anything at all, and (a third of the inputs) learn reports, mostly with the right token, so the route is reached. */
const input: fc.Arbitrary<Input> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ method: fc.constantFrom(...METHODS), url, authorization, ...common }) },
  {
    weight: 1,
    arbitrary: fc.record({
      method: fc.constantFrom<Input['method']>('POST', 'POST', 'POST', 'PUT'),
      url: fc
        .constantFrom('spam', 'spam', 'ham', 'ham', 'Spam', 'spam/', 'ham?x=1', 'ham%00', '')
        .map((cls) => `/api/v1/learn/${cls}`),
      authorization: fc.oneof({ weight: 4, arbitrary: fc.constant(`Bearer ${TOKEN}`) }, authorization),
      ...common,
    }),
  },
);

/** A 5xx is documented for these: readiness, and the admin API off, not learning, or its queue full. */
function documented(status: number, url: string): boolean {
  if (status !== 503) return false;
  return url.startsWith('/readyz') || url.startsWith('/api/');
}

const target: FuzzTarget<Input> = {
  name: 'http',
  unit: 'requests',
  iterations: { quick: 1000, full: 50_000 },
  timeoutMs: 10_000,
  heapMb: 512,
  input,
  async open() {
    const lines: string[] = [];
    const logger = createLogger(
      'warn',
      new Writable({
        write(chunk: Buffer, _e, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    );
    const metrics = new Metrics({ processMetrics: false });
    const learned: LearnClass[] = [];
    let current: Input | undefined;
    const apps = new Map<Input['learnSays'], FastifyInstance>();
    for (const learnSays of ['queued', 'duplicate', 'full', 'off', 'no-token'] as const) {
      const app = buildHttpApp({
        metrics,
        logger,
        admin: statusOnlyAdmin(),
        readiness: () =>
          (current?.ready ?? []).map((ready, i) => ({ name: `part${i}`, ready, critical: i !== 1 })),
        ...(learnSays === 'no-token' ? {} : { adminToken: TOKEN }),
        ...(learnSays === 'off' || learnSays === 'no-token'
          ? {}
          : {
              learn: (cls: LearnClass) => {
                learned.push(cls);
                return learnSays;
              },
            }),
      });
      await app.ready();
      apps.set(learnSays, app);
    }
    return {
      async run(given: Input): Promise<number> {
        current = given;
        lines.length = 0;
        learned.length = 0;
        const headers: Record<string, string> = {};
        if (given.authorization !== null) headers['authorization'] = given.authorization;
        if (given.contentType !== null) headers['content-type'] = given.contentType;
        if (given.length !== null) headers['content-length'] = String(given.length);
        const response = await apps.get(given.learnSays)!.inject({
          method: given.method,
          url: given.url,
          headers,
          ...(given.body !== null && given.method !== 'GET' && given.method !== 'HEAD'
            ? { payload: given.body }
            : {}),
        });
        const status = response.statusCode;
        assert.ok(status >= 200 && status < 600, `status ${status}`);
        if (status >= 500 && !documented(status, given.url)) {
          assert.fail(
            `${given.method} ${given.url.slice(0, 100)} answered ${status}: ${response.body.slice(0, 300)}`,
          );
        }
        const failure = lines.find((l) => l.includes('PW-H001'));
        assert.equal(failure, undefined, `an internal failure was logged: ${failure?.slice(0, 500)}`);
        if (learned.length > 0) {
          assert.equal(given.authorization, `Bearer ${TOKEN}`, 'a learn report taken without the token');
        }
        return 1;
      },
      async close() {
        for (const app of apps.values()) await app.close();
      },
    };
  },
  show: (given) =>
    `${given.method} ${given.url}\n${JSON.stringify({ ...given, body: given.body === null ? null : Buffer.from(given.body).toString('latin1').slice(0, 4000) })}\n`,
};

export default target;
