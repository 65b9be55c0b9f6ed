/**
 * Dovecot's auth-policy endpoint (`POST /dovecot/auth-policy?command=allow|report`, src/http/auth-policy.ts)
 * through fastify's `inject()`, with the real AuthGuard on an in-memory SQLite store. Each input is one to four
 * requests sent at once (so `max_in_flight` sheds some): Dovecot's attributes (login, remote, pwhash, protocol,
 * success, policy_reject, fail_type, tls, session_id, …) from plausible to hostile (huge, unicode, wrong types,
 * nested, missing; IPv4, IPv6 and garbage addresses), raw garbage bodies, random query strings and methods, the
 * X-API-Key right, wrong or absent, content types and lengths that lie; on an app with a key, one without and
 * one with the auth policy off.
 *
 * Properties: a 200 is Dovecot's answer `{status, msg?}` with status 0, -1 or a tarpit within the configured
 * steps (0 for a report); otherwise 400/401/413/415 (and 404 off the route, 503 with no key or the policy off),
 * each answered as `{status: 0, msg}` on the route; 401 exactly when the key is wrong; never a 500; nothing
 * logged as an internal failure (PW-H001); the API key and the password hashes never in the log. Memory stays
 * within the worker's heap across the run.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { AuthGuard, authPolicySchema } from '../../../src/core/auth-guard.js';
import { buildHttpApp } from '../../../src/http/app.js';
import { createLogger } from '../../../src/observe/logger.js';
import { Metrics } from '../../../src/observe/metrics.js';
import { SqliteStore } from '../../../src/store/sqlite.js';
import { statusOnlyAdmin } from '../../harness/admin.js';
import type { FuzzTarget } from '../runner.js';

const KEY = 'fuzz-auth-policy-key-0123456789';
/** Every password hash drawn carries this, so the log can be searched for any of them. */
const HASH_MARK = 'c0ffee5ecret';
const hex = (maxLength: number) => fc.string({ maxLength, unit: fc.constantFrom(...'0123456789abcdef') });
const TARPIT_STEPS = [1, 2, 4];
const MAX_BODY = 4096;

type Variant = 'keyed' | 'keyless' | 'off';

/** Values of the wrong type, nested, empty, huge. */
const hostile: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1e308, '', [], {}, { a: { b: [1] } }, '__proto__'),
  fc.jsonValue({ maxDepth: 4 }),
  fc.string({ maxLength: 40, unit: 'grapheme' }),
  fc.string({ maxLength: 20, unit: 'binary' }),
  fc.nat({ max: 3 }).map((n) => 'x'.repeat([129, 257, 1025, 5000][n]!)),
);

const ipv4 = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.tuple(fc.nat({ max: 1 }), fc.nat({ max: 2 })).map(([b, c]) => `192.0.${b}.${c}`),
  },
  { weight: 1, arbitrary: fc.constantFrom('127.0.0.1', '0.0.0.0', '255.255.255.255', '10.0.0.1') },
);
const ipv6 = fc.oneof(
  { weight: 6, arbitrary: fc.nat({ max: 3 }).map((n) => `2001:db8::${n}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '::1',
      '::',
      '::ffff:192.0.2.1',
      'fe80::1%eth0',
      '2001:db8:0:0:0:0:0:1',
      '[2001:db8::1]',
    ),
  },
  { weight: 1, arbitrary: fc.ipV6() },
);
/** Addresses Dovecot sends, from a few networks so failures add up to tarpits and blocks. */
const goodRemote = fc.oneof({ weight: 3, arbitrary: ipv4 }, { weight: 2, arbitrary: ipv6 });
const badRemote = fc.oneof(
  fc.constantFrom(
    '',
    '192.0.2',
    '192.0.2.256',
    '1.2.3.4.5',
    '0x7f.1',
    '192.0.2.1/24',
    ':::',
    '1::2::3',
    'localhost',
    ' 192.0.2.1',
    '192.0.2.1\n',
    '١٩٢.٠.٢.١',
  ),
  fc.string({ maxLength: 40 }),
);
const goodLogin = fc.constantFrom('alice@example.org', 'bob', 'ALICE@EXAMPLE.ORG', 'bob@example.org', '');
const badLogin = fc.string({ maxLength: 60, unit: 'grapheme' });
const goodHash = hex(8).map((h) => `${HASH_MARK}${h}`);
const badHash = fc.string({ maxLength: 300 }).map((s) => `${HASH_MARK}${s}`);
const goodWord = fc.constantFrom('imap', 'pop3', 'smtp', 'submission', 'sieve', 'yes', 'no', '');
const goodFailType = fc.constantFrom('credentials', 'account', 'expired', 'disabled', 'policy', 'internal');

/** Dovecot's attributes as it sends them (some left out), plus ones postwarden does not read. */
const plausible = fc.record(
  {
    login: goodLogin,
    remote: goodRemote,
    pwhash: goodHash,
    protocol: goodWord,
    success: fc.boolean(),
    policy_reject: fc.boolean(),
    fail_type: goodFailType,
    tls: goodWord,
    session_id: hex(16),
    device_id: goodWord,
    local: goodRemote,
  },
  { requiredKeys: ['login', 'remote', 'pwhash'] },
);

/** Each attribute plausible, odd (strings Dovecot would not send) or hostile (the wrong type, nested, huge). */
const either = <T>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 6, arbitrary: good }, { weight: 2, arbitrary: bad }, { weight: 1, arbitrary: hostile });
const mixed = fc.record(
  {
    login: either(goodLogin, badLogin),
    remote: either(goodRemote, badRemote),
    pwhash: either(goodHash, badHash),
    protocol: either(goodWord, fc.string({ maxLength: 30 })),
    success: either(fc.boolean(), fc.constantFrom('true', 1, 0)),
    policy_reject: either(fc.boolean(), fc.constantFrom('false', 1, 0)),
    fail_type: either(goodFailType, fc.string({ maxLength: 80 })),
    tls: either(goodWord, fc.string({ maxLength: 30 })),
    session_id: either(hex(16), fc.string({ maxLength: 30 })),
    extra: fc.dictionary(fc.string({ maxLength: 10 }), hostile, { maxKeys: 4 }),
  },
  { requiredKeys: [] },
);
const attributes = fc.oneof({ weight: 3, arbitrary: plausible }, { weight: 2, arbitrary: mixed });

const body = fc.oneof(
  { weight: 6, arbitrary: attributes.map((a) => JSON.stringify(a)) },
  { weight: 1, arbitrary: hostile.map((v) => JSON.stringify(v) ?? 'undefined') },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.constantFrom('', '{', '{"login":', 'null', '[]', '{"__proto__":{"login":1}}', '{"constructor":{}}'),
      fc.string({ maxLength: 200 }),
      fc.uint8Array({ maxLength: 500 }).map((b) => Buffer.from(b).toString('latin1')),
      attributes.map((a) => `${JSON.stringify(a)}${' '.repeat(MAX_BODY)}`),
    ),
  },
);

const query = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('?command=allow', '?command=report') },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.constantFrom(
        '',
        '?',
        '?command=',
        '?command=ALLOW',
        '?command=allow&command=report',
        '?command[]=allow',
        '?command=allow%00',
        '?command=%',
        '?command=report#x',
      ),
      fc.string({ maxLength: 40 }).map((s) => `?command=${encodeURIComponent(s)}`),
      fc.string({ maxLength: 40, unit: 'binary-ascii' }).map((s) => `?${s}`),
    ),
  },
);

const apiKey = fc.oneof(
  { weight: 8, arbitrary: fc.constant<string | null>(KEY) },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.constant(null),
      fc.constantFrom('', `${KEY} `, KEY.slice(0, -1), `${KEY}x`, KEY.toUpperCase(), `X-API-Key: ${KEY}`),
      fc.string({ maxLength: 40, unit: 'binary-ascii' }),
    ),
  },
);

const contentType = fc.oneof(
  { weight: 8, arbitrary: fc.constant<string | null>('application/json') },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.constantFrom(
        null,
        'application/json; charset=utf-8',
        'APPLICATION/JSON',
        'application/json; charset=latin1',
        'text/plain',
        'application/x-www-form-urlencoded',
        'message/rfc822',
        '',
        ';',
      ),
      fc.string({ maxLength: 30, unit: 'binary-ascii' }),
    ),
  },
);

interface Request {
  readonly method: 'POST' | 'GET' | 'PUT' | 'DELETE';
  readonly query: string;
  readonly apiKey: string | null;
  readonly contentType: string | null;
  readonly body: string;
  /** A content-length header that may lie. */
  readonly length: number | null;
}

interface Input {
  readonly variant: Variant;
  readonly requests: readonly Request[];
}

const request: fc.Arbitrary<Request> = fc.record({
  method: fc.oneof(
    { weight: 12, arbitrary: fc.constant<Request['method']>('POST') },
    { weight: 1, arbitrary: fc.constantFrom<Request['method']>('GET', 'PUT', 'DELETE') },
  ),
  query,
  apiKey,
  contentType,
  body,
  length: fc.oneof(
    { weight: 19, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.nat({ max: 5000 }) },
  ),
});

const input: fc.Arbitrary<Input> = fc.record({
  variant: fc.oneof(
    { weight: 10, arbitrary: fc.constant<Variant>('keyed') },
    { weight: 1, arbitrary: fc.constantFrom<Variant>('keyless', 'off') },
  ),
  requests: fc.array(request, { minLength: 1, maxLength: 4 }),
});

const ALLOWED = new Set([200, 400, 401, 404, 413, 415, 503]);

function check(variant: Variant, given: Request, status: number, text: string): void {
  const where = `${given.method} ?${given.query.slice(0, 60)} (${variant})`;
  assert.ok(ALLOWED.has(status), `${where} answered ${status}: ${text.slice(0, 300)}`);
  if (given.method !== 'POST') {
    // Off the route: fastify's not-found handler (after it read or refused the body).
    assert.ok([400, 404, 413, 415].includes(status), `${where}: ${status} off the route`);
    return;
  }
  assert.notEqual(status, 404, `${where}: 404 on the route`);
  // Whatever the route answers, Dovecot reads it as {status, msg}.
  const answer = JSON.parse(text) as { status?: unknown; msg?: unknown };
  assert.ok(Number.isInteger(answer.status), `${where}: no integer status in ${text.slice(0, 200)}`);
  assert.ok(answer.msg === undefined || typeof answer.msg === 'string', `${where}: msg ${typeof answer.msg}`);
  if (status === 503) {
    assert.notEqual(variant, 'keyed', `${where}: 503 with a key configured`);
    return;
  }
  assert.equal(variant, 'keyed', `${where}: ${status} though the endpoint is ${variant}`);
  assert.equal(status === 401, given.apiKey !== KEY, `${where}: ${status} with key ${given.apiKey}`);
  if (status !== 200) {
    assert.equal(answer.status, 0, `${where}: a ${status} answers status 0`);
    return;
  }
  const value = answer.status as number;
  assert.ok(
    value === 0 || value === -1 || TARPIT_STEPS.includes(value),
    `${where}: status ${value} is not 0, -1 or a tarpit step`,
  );
  if (given.query.includes('report')) {
    // A report's status is ignored by Dovecot and always 0 (unless the query also named allow).
    if (!given.query.includes('allow')) assert.equal(value, 0, `${where}: a report answered ${value}`);
  }
}

const target: FuzzTarget<Input> = {
  name: 'auth-policy',
  unit: 'requests',
  iterations: { quick: 2000, full: 100_000 },
  timeoutMs: 10_000,
  heapMb: 256,
  input,
  async open() {
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
    const metrics = new Metrics({ processMetrics: false });
    // Low thresholds and a small in-flight bound, so blocks, tarpits and shedding all happen.
    const settings = authPolicySchema.parse({
      enabled: true,
      login_block_after: 3,
      address_block_after: 6,
      network_block_after: 12,
      tarpit_after: 2,
      tarpit_steps_s: TARPIT_STEPS,
      max_body_bytes: MAX_BODY,
      max_in_flight: 2,
    });
    const store = new SqliteStore({ path: ':memory:' });
    const guard = new AuthGuard(settings, store, []);
    const apps = new Map<Variant, FastifyInstance>();
    for (const variant of ['keyed', 'keyless', 'off'] as const) {
      const app = buildHttpApp({
        metrics,
        logger,
        readiness: () => [],
        admin: statusOnlyAdmin(),
        ...(variant === 'off'
          ? {}
          : { authPolicy: { guard, settings, ...(variant === 'keyed' ? { apiKey: KEY } : {}) } }),
      });
      await app.ready();
      apps.set(variant, app);
    }
    return {
      async run(given: Input): Promise<number> {
        lines.length = 0;
        const app = apps.get(given.variant)!;
        const answers = await Promise.all(
          given.requests.map((r) => {
            const headers: Record<string, string> = {};
            if (r.apiKey !== null) headers['x-api-key'] = r.apiKey;
            if (r.contentType !== null) headers['content-type'] = r.contentType;
            if (r.length !== null) headers['content-length'] = String(r.length);
            return app.inject({
              method: r.method,
              url: `/dovecot/auth-policy${r.query}`,
              headers,
              ...(r.method === 'GET' ? {} : { payload: r.body }),
            });
          }),
        );
        answers.forEach((answer, i) =>
          check(given.variant, given.requests[i]!, answer.statusCode, answer.body),
        );
        const log = lines.join('');
        assert.ok(!log.includes('PW-H001'), `an internal failure was logged: ${log.slice(0, 800)}`);
        assert.ok(!log.includes(KEY), 'the API key was logged');
        assert.ok(!log.includes(HASH_MARK), `a password hash was logged: ${log.slice(0, 800)}`);
        return given.requests.length;
      },
      async close() {
        for (const app of apps.values()) await app.close();
        await store.close();
      },
    };
  },
  show: (given) => `${JSON.stringify(given, null, 1)}\n`,
};

export default target;
