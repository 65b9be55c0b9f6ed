/**
 * The admin API through `inject()`: every route, every way to be refused (no token configured, no header, another
 * scheme, a wrong token — logged without the token), input that does not fit (bad ids, `../`, oversize bodies),
 * a release asked twice, a store that is down. Real parts behind it: a SQLite store, a quarantine directory,
 * and a recording SMTP server on loopback as the re-injection target.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import type { AdminServices } from '../../src/admin/index.js';
import { ListOps } from '../../src/admin/lists.js';
import { QuarantineOps } from '../../src/admin/quarantine.js';
import { instanceStatus } from '../../src/admin/status.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { tripletKey } from '../../src/core/checks/greylist.js';
import { DecisionRecorder, readDecisions } from '../../src/core/decisions.js';
import type { PipelineStage } from '../../src/core/pipeline.js';
import type { Store } from '../../src/core/store.js';
import { Quarantine } from '../../src/filter/quarantine.js';
import { holdVirusMessage } from '../harness/quarantine.js';
import { buildHttpApp } from '../../src/http/app.js';
import { MapRegistry } from '../../src/maps/index.js';
import { RuntimeEntries } from '../../src/maps/runtime.js';
import { createLogger } from '../../src/observe/logger.js';
import { Metrics } from '../../src/observe/metrics.js';
import { buildStages, createPolicyHandler } from '../../src/policy/service.js';
import { openStore } from '../../src/store/index.js';
import { BIN } from '../harness/postwarden.js';
import { startRecordingSmtp, type RecordingSmtp } from '../harness/smtp.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const TOKEN = 'T0ken-for-the-admin-api-tests-0123456789abcdef';
const work = mkdtempSync('/tmp/pw-h-api-unit-');

const logText: string[] = [];
const logs: Record<string, unknown>[] = [];
const sink = new Writable({
  write(chunk: Buffer, _encoding, done) {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      logText.push(line);
      logs.push(JSON.parse(line) as Record<string, unknown>);
    }
    done();
  },
});

const config: Config = configSchema.parse({
  local_domains: ['example.org'],
  policy: {
    checks: ['lists', 'greylist'],
    lists: {
      block: { client: ['192.0.2.66', 'inline:{ 192.0.2.67 }'], sender: [] },
      allow: { client: `file:${path.join(work, 'allow-clients')}` },
    },
  },
});

let store: Store;
let smtp: RecordingSmtp;
let quarantine: Quarantine;
let runtime: RuntimeEntries;
let recorder: DecisionRecorder;
let app: FastifyInstance;
const metrics = new Metrics({ processMetrics: false });

function services(): AdminServices {
  return {
    status: () =>
      instanceStatus({
        instance: 'mx1.example.org',
        startedAt: new Date(Date.now() - 5000),
        faces: () => [{ name: 'http', listening: true, addresses: ['127.0.0.1:21300'] }],
        readiness: () => [{ name: 'store sqlite', ready: true }],
      }),
    quarantine: new QuarantineOps(quarantine, {
      host: smtp.host,
      port: smtp.port,
      name: 'mx1.example.org',
      timeoutMs: 5000,
    }),
    greylist: {
      store,
      settings: { greylist: config.policy.greylist, recipientDelimiter: config.recipient_delimiter },
    },
    lists: new ListOps(config.policy.lists, runtime),
    decisions: store,
  };
}

function build(token: string | undefined, admin = services()): FastifyInstance {
  return buildHttpApp({
    metrics,
    logger: createLogger('info', sink),
    readiness: () => [],
    admin,
    ...(token ? { adminToken: token } : {}),
  });
}

const auth = { authorization: `Bearer ${TOKEN}` };

const hold = (subject: string): Promise<string> => holdVirusMessage(quarantine, subject);

before(async () => {
  writeFileSync(path.join(work, 'allow-clients'), '# nobody\n');
  store = await openStore({ driver: 'sqlite', path: path.join(work, 'state.db') });
  smtp = await startRecordingSmtp();
  quarantine = new Quarantine(path.join(work, 'quarantine'), 30, store);
  quarantine.prepare();
  runtime = new RuntimeEntries(store);
  recorder = new DecisionRecorder(store, { retentionS: 3600, maxPending: 100 });
  app = build(TOKEN);
  await app.ready();
});

after(async () => {
  await app.close();
  await smtp.close();
  await store.close();
  rmSync(work, { recursive: true, force: true });
});

/** Every route of the document, with example parameters filled in. */
function everyRoute(): { method: string; url: string }[] {
  const doc = JSON.parse(readFileSync(path.join(ROOT, 'docs/openapi.json'), 'utf8')) as {
    paths: Record<string, Record<string, unknown>>;
  };
  const routes = [{ method: 'GET', url: '/api/v1/openapi.json' }];
  for (const [url, methods] of Object.entries(doc.paths)) {
    for (const method of Object.keys(methods)) {
      routes.push({
        method: method.toUpperCase(),
        url: url
          .replace('{id}', '20261123-0123456789abcdef')
          .replace('{list}', 'block.client')
          .replace('{queueId}', 'ABC123DEF')
          .replace('{cls}', 'spam'),
      });
    }
  }
  return routes;
}

describe('authentication', () => {
  test('the document lists every route the app serves', () => {
    const routes = everyRoute();
    assert.equal(routes.length, 18, JSON.stringify(routes));
  });

  test('without a configured token every route answers 503', async () => {
    const off = build(undefined);
    for (const { method, url } of everyRoute()) {
      const res = await off.inject({ method: method as 'GET', url, headers: auth });
      assert.equal(res.statusCode, 503, `${method} ${url}`);
      assert.match(res.json<{ error: string }>().error, /http\.token_file/);
    }
    await off.close();
  });

  test('no header, another scheme, a wrong token: 401 on every route, logged without the token', async () => {
    const refusals = metrics.get('postwarden_errors_total');
    const before = (await refusals.get()).values.find((v) => v.labels.code === 'PW-H002')?.value ?? 0;
    const attempts: Record<string, string>[] = [
      {},
      { authorization: '' },
      { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` },
      { authorization: TOKEN },
      { authorization: `Bearer ${TOKEN}x` },
      { authorization: `Bearer ${TOKEN.slice(0, -1)}` },
      { authorization: 'Bearer ' },
    ];
    const routes = everyRoute();
    for (const { method, url } of routes) {
      for (const headers of attempts) {
        const res = await app.inject({ method: method as 'GET', url: `${url}?token=${TOKEN}`, headers });
        assert.equal(res.statusCode, 401, `${method} ${url} ${JSON.stringify(headers)}`);
        assert.equal(res.headers['www-authenticate'], 'Bearer');
      }
    }
    const after = (await refusals.get()).values.find((v) => v.labels.code === 'PW-H002')?.value ?? 0;
    assert.equal(after - before, routes.length * attempts.length);
    const refused = logs.filter((l) => l['code'] === 'PW-H002');
    assert.ok(refused.length >= 1, 'a refusal is logged');
    assert.deepEqual(
      new Set(refused.map((l) => typeof l['why'])),
      new Set(['string']),
      'each refusal says why',
    );
    assert.ok(!logText.some((line) => line.includes(TOKEN.slice(0, 20))), 'the token is never logged');
  });

  test('an encoded spelling of the path is refused too', async () => {
    for (const url of [
      '/%61pi/v1/status',
      '/api/v1/%73tatus',
      '/%61%70%69/v1/quarantine',
      '/api/v1/status/',
    ]) {
      assert.equal((await app.inject({ url })).statusCode, 401, url);
    }
  });

  test('the Bearer scheme is case-insensitive; an unknown route behind a good token is 404', async () => {
    const res = await app.inject({ url: '/api/v1/status', headers: { authorization: `bearer ${TOKEN}` } });
    assert.equal(res.statusCode, 200);
    assert.equal((await app.inject({ url: '/api/v1/nothing', headers: auth })).statusCode, 404);
  });

  test('/metrics, /healthz and /readyz need no token', async () => {
    for (const url of ['/metrics', '/healthz', '/readyz']) {
      assert.equal((await app.inject({ url })).statusCode, 200, url);
    }
  });
});

describe('status and the OpenAPI document', () => {
  test('GET /status: version, uptime, faces, checks', async () => {
    const res = await app.inject({ url: '/api/v1/status', headers: auth });
    assert.equal(res.statusCode, 200);
    const body = res.json<Record<string, unknown>>();
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(body['version'], pkg.version);
    assert.equal(body['instance'], 'mx1.example.org');
    assert.ok((body['uptime_s'] as number) >= 4);
    assert.equal(body['status'], 'ready');
    assert.deepEqual(body['faces'], [{ name: 'http', listening: true, addresses: ['127.0.0.1:21300'] }]);
    assert.deepEqual(body['checks'], [{ name: 'store sqlite', ready: true }]);
  });

  test('GET /openapi.json serves docs/openapi.json', async () => {
    const res = await app.inject({ url: '/api/v1/openapi.json', headers: auth });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), JSON.parse(readFileSync(path.join(ROOT, 'docs/openapi.json'), 'utf8')));
  });
});

describe('quarantine', () => {
  let first = '';
  let second = '';
  before(async () => {
    first = await hold('first');
    second = await hold('second');
  });

  test('list, filtered, limited', async () => {
    const all = await app.inject({ url: '/api/v1/quarantine', headers: auth });
    assert.equal(all.statusCode, 200);
    const body = all.json<{ items: { id: string; symbol: string }[]; truncated: boolean; total: number }>();
    assert.deepEqual(new Set(body.items.map((e) => e.id)), new Set([first, second]));
    assert.equal(body.truncated, false);
    type Page = { items: { id: string }[]; truncated: boolean; total: number; next?: string };
    assert.equal(body.total, 2);
    assert.equal(all.json<Page>().next, undefined);
    const one = await app.inject({ url: '/api/v1/quarantine?limit=1', headers: auth });
    const page1 = one.json<Page>();
    assert.equal(page1.truncated, true);
    assert.equal(page1.total, 2);
    assert.match(page1.next ?? '', /^[0-9]+\.[0-9]{8}-[0-9a-f]{16}$/);
    const two = await app.inject({
      url: `/api/v1/quarantine?limit=1&cursor=${page1.next ?? ''}`,
      headers: auth,
    });
    const page2 = two.json<Page>();
    assert.deepEqual(
      new Set([...page1.items, ...page2.items].map((e) => e.id)),
      new Set([first, second]),
      'the second page holds the other one',
    );
    assert.equal(page2.truncated, false);
    assert.equal(page2.next, undefined);
    const badCursor = await app.inject({ url: '/api/v1/quarantine?cursor=../x', headers: auth });
    assert.equal(badCursor.statusCode, 400);
    const none = await app.inject({ url: '/api/v1/quarantine?recipient=carol@example.org', headers: auth });
    assert.deepEqual(none.json<{ items: unknown[] }>().items, []);
    const bad = await app.inject({ url: '/api/v1/quarantine?limit=0', headers: auth });
    assert.equal(bad.statusCode, 400);
    const unknown = await app.inject({ url: '/api/v1/quarantine?sort=up', headers: auth });
    assert.equal(unknown.statusCode, 400);
  });

  test('show and raw', async () => {
    const shown = await app.inject({ url: `/api/v1/quarantine/${first}`, headers: auth });
    assert.equal(shown.statusCode, 200);
    const body = shown.json<{ entry: { id: string; reason: string }; header: string }>();
    assert.equal(body.entry.id, first);
    assert.equal(body.entry.reason, 'Eicar-Signature');
    assert.match(body.header, /^Subject: first$/m);
    assert.doesNotMatch(body.header, /body of/);
    const raw = await app.inject({ url: `/api/v1/quarantine/${first}/raw`, headers: auth });
    assert.equal(raw.statusCode, 200);
    assert.match(String(raw.headers['content-type']), /^message\/rfc822/);
    assert.match(raw.body, /body of first/);
  });

  test('ids that are not ids: 400, including path traversal; unknown ids: 404', async () => {
    for (const id of [
      '..%2F..%2Fetc%2Fpasswd',
      '%2E%2E%2Fetc',
      '20261123-0123456789ABCDEF',
      'x'.repeat(40),
      '%00',
    ]) {
      for (const [method, url] of [
        ['GET', `/api/v1/quarantine/${id}`],
        ['GET', `/api/v1/quarantine/${id}/raw`],
        ['POST', `/api/v1/quarantine/${id}/release`],
        ['DELETE', `/api/v1/quarantine/${id}`],
      ] as const) {
        const res = await app.inject({ method, url, headers: auth });
        assert.equal(res.statusCode, 400, `${method} ${url}: ${res.body}`);
      }
    }
    const long = await app.inject({ url: `/api/v1/quarantine/${'x'.repeat(300)}`, headers: auth });
    assert.equal(long.statusCode, 414);
    const traversal = await app.inject({ url: '/api/v1/quarantine/../../../etc/passwd', headers: auth });
    assert.ok([400, 404].includes(traversal.statusCode), traversal.body);
    assert.doesNotMatch(traversal.body, /root:/);
    const missing = '20000101-0000000000000000';
    for (const [method, url] of [
      ['GET', `/api/v1/quarantine/${missing}`],
      ['GET', `/api/v1/quarantine/${missing}/raw`],
      ['POST', `/api/v1/quarantine/${missing}/release`],
      ['DELETE', `/api/v1/quarantine/${missing}`],
    ] as const) {
      assert.equal((await app.inject({ method, url, headers: auth })).statusCode, 404, `${method} ${url}`);
    }
  });

  test('release delivers once: the second release is 409, show is 410, delete is 409', async () => {
    const res = await app.inject({
      method: 'POST',
      url: `/api/v1/quarantine/${first}/release`,
      headers: auth,
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json<{ recipients: string[] }>().recipients, ['bob@example.org']);
    assert.equal(smtp.received.length, 1);
    const delivered = smtp.received[0]!;
    assert.deepEqual(
      delivered.rcptTo.map((r) => r.address),
      ['bob@example.org'],
    );
    assert.match(
      delivered.raw.toString(),
      new RegExp(`^X-Postwarden-Released: ${first} by the admin \\(API from `),
    );
    assert.match(delivered.raw.toString(), /body of first/);
    assert.ok(
      logs.some((l) => l['code'] === 'PW-H004' && l['id'] === first),
      'the release is audited',
    );

    const again = await app.inject({
      method: 'POST',
      url: `/api/v1/quarantine/${first}/release`,
      headers: auth,
    });
    assert.equal(again.statusCode, 409);
    assert.match(again.json<{ release: { by: string } }>().release.by, /API from/);
    assert.equal(smtp.received.length, 1, 'not delivered twice');
    assert.equal((await app.inject({ url: `/api/v1/quarantine/${first}`, headers: auth })).statusCode, 410);
    assert.equal(
      (await app.inject({ method: 'DELETE', url: `/api/v1/quarantine/${first}`, headers: auth })).statusCode,
      409,
    );
  });

  test('two releases at once deliver once', async () => {
    const id = await hold('racing');
    const before = smtp.received.length;
    const answers = await Promise.all(
      [1, 2, 3].map(() =>
        app.inject({ method: 'POST', url: `/api/v1/quarantine/${id}/release`, headers: auth }),
      ),
    );
    assert.deepEqual(answers.map((a) => a.statusCode).sort(), [200, 409, 409]);
    assert.equal(smtp.received.length, before + 1);
  });

  test('release to other recipients; a refused re-injection is 503 and the message stays held', async () => {
    const bad = await app.inject({
      method: 'POST',
      url: `/api/v1/quarantine/${second}/release`,
      headers: auth,
      payload: { to: ['not an address'] },
    });
    assert.equal(bad.statusCode, 400);
    smtp.rules = { data: () => ({ code: 451, message: 'try later' }) };
    const refused = await app.inject({
      method: 'POST',
      url: `/api/v1/quarantine/${second}/release`,
      headers: auth,
      payload: { to: ['carol@example.org'] },
    });
    assert.equal(refused.statusCode, 503, refused.body);
    assert.match(refused.json<{ error: string }>().error, /stays held/);
    assert.equal((await app.inject({ url: `/api/v1/quarantine/${second}`, headers: auth })).statusCode, 200);
    smtp.rules = {};
    const res = await app.inject({
      method: 'POST',
      url: `/api/v1/quarantine/${second}/release`,
      headers: auth,
      payload: { to: ['carol@example.org'] },
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(
      smtp.received.at(-1)!.rcptTo.map((r) => r.address),
      ['carol@example.org'],
    );
  });

  test('release markers go with the retention', async () => {
    const ops = services().quarantine!;
    const id = await hold('marker');
    assert.equal((await ops.remove(id)).status, 'removed');
    const marker = path.join(quarantine.dir, `${id}.released`);
    writeFileSync(marker, JSON.stringify({ id, at: '2026-01-01T00:00:00.000Z', by: 'test', recipients: [] }));
    assert.equal((await ops.release(id, 'again')).status, 'already_released');
    const old = new Date(Date.now() - 31 * 86_400_000);
    utimesSync(marker, old, old);
    assert.equal(ops.expireReleaseMarkers(30), 1);
    assert.equal((await ops.release(id, 'again')).status, 'not_found');
  });

  test('delete removes without delivering; a second delete is 404', async () => {
    const id = await hold('to delete');
    const before = smtp.received.length;
    const res = await app.inject({ method: 'DELETE', url: `/api/v1/quarantine/${id}`, headers: auth });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { id, removed: true });
    assert.equal(smtp.received.length, before);
    assert.equal(
      (await app.inject({ method: 'DELETE', url: `/api/v1/quarantine/${id}`, headers: auth })).statusCode,
      404,
    );
  });

  test('an entry some recipients released for themselves shows who (`released`) in list and show', async () => {
    const id = quarantine.newId();
    const message =
      'From: a@remote.test\r\nTo: bob@example.org, carol@example.org\r\nSubject: spam\r\n\r\nx\r\n';
    const entry = {
      id,
      time: Date.now(),
      scanner: 'rules',
      symbol: 'SPAM',
      reason: 'score 12',
      releasableBy: 'recipient' as const,
      sender: 'a@remote.test',
      recipients: ['bob@example.org', 'carol@example.org'],
      size: message.length,
    };
    await quarantine.hold(Readable.from([Buffer.from(message)]), entry);
    assert.equal(await quarantine.markReleased(entry, ['carol@example.org']), false);
    try {
      const shown = await app.inject({ url: `/api/v1/quarantine/${id}`, headers: auth });
      assert.deepEqual(shown.json<{ entry: { released?: string[] } }>().entry.released, [
        'carol@example.org',
      ]);
      const listed = await app.inject({ url: '/api/v1/quarantine?recipient=bob@example.org', headers: auth });
      const item = listed
        .json<{ items: { id: string; released?: string[] }[] }>()
        .items.find((i) => i.id === id);
      assert.deepEqual(item?.released, ['carol@example.org']);
    } finally {
      await quarantine.remove(id);
    }
  });
});

describe('the CLI runs the same operations', () => {
  const run = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [BIN, ...args]);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });

  test('quarantine release by the CLI, then by the API: delivered once, 409', async () => {
    const id = await hold('cli');
    const file = path.join(work, 'cli.yml');
    writeFileSync(
      file,
      `local_domains: [example.org]
hostname: mx1.example.org
filter: { reinject: "127.0.0.1:${smtp.port}", quarantine: { dir: ${path.join(work, 'quarantine')} } }
`,
    );
    const before = smtp.received.length;
    const first = await run(['quarantine', 'release', id, '--config', file]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, new RegExp(`^released ${id} to bob@example.org`));
    assert.match(
      smtp.received.at(-1)!.raw.toString(),
      /^X-Postwarden-Released: .* by the admin \(CLI\) on mx1/,
    );
    const second = await run(['quarantine', 'release', id, '--config', file]);
    assert.equal(second.code, 65);
    assert.match(second.stderr, /was released already .* by the admin \(CLI\)/);
    const api = await app.inject({ method: 'POST', url: `/api/v1/quarantine/${id}/release`, headers: auth });
    assert.equal(api.statusCode, 409);
    assert.equal(smtp.received.length, before + 1);
    const traversal = await run(['quarantine', 'show', '../../etc/passwd', '--config', file]);
    assert.equal(traversal.code, 65);
    assert.doesNotMatch(traversal.stdout, /root:/);
  });
});

describe('greylist', () => {
  before(async () => {
    const now = Date.now();
    await store.set(tripletKey('198.51.100.0/24', 'a@remote.test', 'bob@example.org'), `W${now}`, 3600);
    await store.set(tripletKey('198.51.100.0/24', 'b@remote.test', 'bob@example.org'), `P${now}`, 3600);
    await store.set(tripletKey('203.0.113.0/24', 'c@remote.test', 'carol@example.org'), `W${now}`, 3600);
  });

  test('list, filtered; bad input is 400', async () => {
    const all = await app.inject({ url: '/api/v1/greylist', headers: auth });
    assert.equal(all.statusCode, 200);
    assert.equal(all.json<{ items: unknown[]; cut: null }>().items.length, 3);
    assert.equal(all.json<{ cut: null }>().cut, null);
    const net = await app.inject({ url: '/api/v1/greylist?network=198.51.100.7', headers: auth });
    const items = net.json<{ items: { sender: string; state: string }[] }>().items;
    assert.deepEqual(
      items.map((t) => [t.sender, t.state]),
      [
        ['a@remote.test', 'waiting'],
        ['b@remote.test', 'passed'],
      ],
    );
    const cut = await app.inject({ url: '/api/v1/greylist?limit=1', headers: auth });
    assert.equal(cut.json<{ cut: string }>().cut, 'limit');
    const bad = await app.inject({ url: '/api/v1/greylist?network=not-an-ip', headers: auth });
    assert.equal(bad.statusCode, 400);
    assert.match(bad.json<{ error: string }>().error, /not an IP address/);
    const narrow = await app.inject({ url: '/api/v1/greylist?network=198.51.100.0/28', headers: auth });
    assert.equal(narrow.statusCode, 400);
  });

  test('delete by triplet and by filter; a delete that names nothing is 400', async () => {
    const nothing = await app.inject({ method: 'DELETE', url: '/api/v1/greylist', headers: auth });
    assert.equal(nothing.statusCode, 400);
    const both = await app.inject({
      method: 'DELETE',
      url: `/api/v1/greylist?triplet=${encodeURIComponent('203.0.113.0/24|c@remote.test|carol@example.org')}&network=203.0.113.1`,
      headers: auth,
    });
    assert.equal(both.statusCode, 400);
    const one = await app.inject({
      method: 'DELETE',
      url: `/api/v1/greylist?triplet=${encodeURIComponent('203.0.113.0/24|c@remote.test|carol@example.org')}`,
      headers: auth,
    });
    assert.deepEqual(one.json(), { removed: 1, incomplete: false });
    const bySender = await app.inject({
      method: 'DELETE',
      url: '/api/v1/greylist?sender=a@remote.test',
      headers: auth,
    });
    assert.deepEqual(bySender.json(), { removed: 1, incomplete: false });
    const left = await app.inject({ url: '/api/v1/greylist', headers: auth });
    assert.equal(left.json<{ items: unknown[] }>().items.length, 1);
  });

  test('allow a network, list and delete its auto-whitelist entry', async () => {
    const allowed = await app.inject({
      method: 'POST',
      url: '/api/v1/greylist/allow',
      headers: auth,
      payload: { network: '192.0.2.10' },
    });
    assert.equal(allowed.statusCode, 200, allowed.body);
    const awl = allowed.json<{ network: string; whitelisted: boolean; passes: number }>();
    assert.equal(awl.network, '192.0.2.0/24');
    assert.equal(awl.whitelisted, true);
    const listed = await app.inject({ url: '/api/v1/greylist/awl', headers: auth });
    assert.deepEqual(
      listed.json<{ items: { network: string }[] }>().items.map((a) => a.network),
      ['192.0.2.0/24'],
    );
    const noNetwork = await app.inject({
      method: 'POST',
      url: '/api/v1/greylist/allow',
      headers: auth,
      payload: {},
    });
    assert.equal(noNetwork.statusCode, 400);
    const removed = await app.inject({
      method: 'DELETE',
      url: '/api/v1/greylist/awl?network=192.0.2.0/24',
      headers: auth,
    });
    assert.deepEqual(removed.json(), { removed: 1, incomplete: false });
    const missing = await app.inject({ method: 'DELETE', url: '/api/v1/greylist/awl', headers: auth });
    assert.equal(missing.statusCode, 400);
  });
});

describe('block and allow lists', () => {
  test('GET /lists: the config-backed lists are editable, the file: one is not', async () => {
    const res = await app.inject({ url: '/api/v1/lists', headers: auth });
    assert.equal(res.statusCode, 200);
    const lists = res.json<{
      lists: { list: string; editable: boolean; reason?: string; config: string[] }[];
    }>().lists;
    assert.equal(lists.length, 8);
    const byName = new Map(lists.map((l) => [l.list, l]));
    assert.equal(byName.get('block.client')?.editable, true);
    assert.deepEqual(byName.get('block.client')?.config, ['192.0.2.66', 'inline:{ 192.0.2.67 }']);
    assert.equal(byName.get('allow.client')?.editable, false);
    assert.match(byName.get('allow.client')?.reason ?? '', /file:/);
    const one = await app.inject({ url: '/api/v1/lists/block.sender', headers: auth });
    assert.equal(one.json<{ editable: boolean }>().editable, true);
    const unknown = await app.inject({ url: '/api/v1/lists/block.everything', headers: auth });
    assert.equal(unknown.statusCode, 400);
  });

  test('an added entry is stored, listed and blocks at once in the policy lists check; removed, it does not', async () => {
    const registry = new MapRegistry({ watch: false });
    const stages: PipelineStage[] = buildStages(
      { ...config, policy: { ...config.policy, checks: ['lists'] } },
      { open: (ref, key) => registry.openRef(ref, key), runtimeLists: (list) => runtime.table(list) },
    );
    const handler = createPolicyHandler(config, stages, createLogger('silent'), metrics);
    const ask = (client: string) =>
      handler(
        {
          request: 'smtpd_access_policy',
          protocol_state: 'RCPT',
          client_address: client,
          client_name: 'unknown',
          sender: 'a@remote.test',
          recipient: 'bob@example.org',
          instance: `i.${client}.${Math.random()}`,
        },
        { id: 1, state: {} },
      );
    assert.equal(await ask('198.51.100.9'), 'DUNNO');
    const added = await app.inject({
      method: 'POST',
      url: '/api/v1/lists/block.client/entries',
      headers: auth,
      payload: { entry: '198.51.100.0/24', value: 'Go away' },
    });
    assert.equal(added.statusCode, 201, added.body);
    assert.equal(added.json<{ key: string }>().key, '198.51.100.0/24');
    assert.match(await ask('198.51.100.9'), /^554 5\.7\.1 Go away/);
    assert.match(await ask('192.0.2.67'), /^554 5\.7\.1/, 'the inline entries still apply');
    const shown = await app.inject({ url: '/api/v1/lists/block.client', headers: auth });
    assert.deepEqual(
      shown.json<{ runtime: { key: string; value: string }[] }>().runtime.map((e) => [e.key, e.value]),
      [['198.51.100.0/24', 'Go away']],
    );
    // Persisted: a fresh reader of the store sees it.
    const fresh = new RuntimeEntries(store);
    await fresh.refresh();
    assert.equal(
      (await fresh.table('block.client').lookup({ kind: 'ip', value: '198.51.100.1' })).status,
      'found',
    );

    const removed = await app.inject({
      method: 'DELETE',
      url: `/api/v1/lists/block.client/entries?entry=${encodeURIComponent('198.51.100.0/24')}`,
      headers: auth,
    });
    assert.equal(removed.statusCode, 200);
    assert.deepEqual(removed.json(), { removed: '198.51.100.0/24' });
    assert.equal(await ask('198.51.100.9'), 'DUNNO');
    const again = await app.inject({
      method: 'DELETE',
      url: `/api/v1/lists/block.client/entries?entry=${encodeURIComponent('198.51.100.0/24')}`,
      headers: auth,
    });
    assert.equal(again.statusCode, 404);
    registry.close();
  });

  test('a periodic refresh scans the entries only when they changed, also when another process changed them', async () => {
    let scans = 0;
    const counting = new Proxy(store, {
      get(target, key) {
        if (key === 'scan') {
          return (prefix: string, limit: number) => {
            scans++;
            return target.scan(prefix, limit);
          };
        }
        const value = Reflect.get(target, key) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const reader = new RuntimeEntries(counting);
    await reader.refresh();
    assert.equal(scans, 1, 'the first refresh loads');
    await reader.refresh();
    await reader.refresh();
    assert.equal(scans, 1, 'nothing changed: no scan');
    const other = new RuntimeEntries(store);
    await other.add('block.helo', 'bad.example', '', 'another process');
    await reader.refresh();
    assert.equal(scans, 2);
    assert.equal(
      (await reader.table('block.helo').lookup({ kind: 'hostname', value: 'bad.example' })).status,
      'found',
    );
    await other.remove('block.helo', 'bad.example');
  });

  test('refusals: a file:-backed list (409), a config entry (409), a bad entry or value (400)', async () => {
    const post = (list: string, payload: unknown) =>
      app.inject({
        method: 'POST',
        url: `/api/v1/lists/${list}/entries`,
        headers: auth,
        payload: payload as object,
      });
    const file = await post('allow.client', { entry: '192.0.2.1' });
    assert.equal(file.statusCode, 409);
    assert.match(file.json<{ error: string }>().error, /edit that table/);
    const configEntry = await app.inject({
      method: 'DELETE',
      url: '/api/v1/lists/block.client/entries?entry=192.0.2.67',
      headers: auth,
    });
    assert.equal(configEntry.statusCode, 409);
    assert.match(configEntry.json<{ error: string }>().error, /written in the config/);
    assert.equal((await post('block.sender', { entry: 'not valid@@' })).statusCode, 400);
    assert.equal((await post('block.sender', { entry: 'a=b@example.com' })).statusCode, 400);
    assert.equal(
      (await post('block.sender', { entry: 'spam.test', value: 'line\r\nbreak' })).statusCode,
      400,
    );
    assert.equal((await post('block.sender', { entry: 'spam.test', extra: 1 })).statusCode, 400);
    assert.equal((await post('block.sender', {})).statusCode, 400);
  });

  test('an oversize body is 413', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/lists/block.sender/entries',
      headers: { ...auth, 'content-type': 'application/json' },
      payload: JSON.stringify({ entry: 'spam.test', value: 'x'.repeat(100_000) }),
    });
    assert.equal(res.statusCode, 413);
  });
});

describe('decisions', () => {
  test('the records of a queue id, oldest first; an unknown one is 404; a bad one is 400', async () => {
    recorder.record('4B26120C193', {
      face: 'policy',
      time: '2026-11-23T00:00:00.000Z',
      action: 'dunno',
      score: 2,
      verdicts: [
        { check: 'spf', symbol: 'SPF_SOFTFAIL', score: 2, mode: 'enforce', reason: 'x'.repeat(1000) },
      ],
    });
    await recorder.settled();
    recorder.record('4B26120C193', {
      face: 'filter',
      time: '2026-11-23T00:00:01.000Z',
      action: 'quarantine',
      score: 0,
      verdicts: [
        {
          check: 'antivirus',
          symbol: 'VIRUS',
          score: 0,
          action: 'quarantine',
          mode: 'enforce',
          reason: 'Eicar',
        },
      ],
      quarantineId: '20261123-0123456789abcdef',
    });
    await recorder.settled();
    const res = await app.inject({ url: '/api/v1/decisions/4B26120C193', headers: auth });
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json<{
      queue_id: string;
      records: { face: string; verdicts: { reason: string }[] }[];
    }>();
    assert.equal(body.queue_id, '4B26120C193');
    assert.deepEqual(
      body.records.map((r) => r.face),
      ['policy', 'filter'],
    );
    assert.ok(body.records[0]!.verdicts[0]!.reason.length <= 300, 'reasons are bounded');
    assert.equal((await app.inject({ url: '/api/v1/decisions/ABCDEF12345', headers: auth })).statusCode, 404);
    for (const id of ['..%2F..%2Fetc', 'a.b', 'x'.repeat(40), '%2E%2E%2Fx']) {
      assert.equal((await app.inject({ url: `/api/v1/decisions/${id}`, headers: auth })).statusCode, 400, id);
    }
  });

  test('the policy service files a message’s decisions under its queue id once Postfix names it', async () => {
    const scoring: PipelineStage = {
      check: {
        name: 'helo',
        run: () => [{ check: 'helo', symbol: 'HELO_BARE_IP', score: 1, reason: 'HELO is an address' }],
      },
      mode: 'enforce',
      timeoutMs: 1000,
    };
    const local = new DecisionRecorder(store, { retentionS: 3600, maxPending: 10 });
    const handler = createPolicyHandler(config, [scoring], createLogger('silent'), metrics, local);
    const base = {
      request: 'smtpd_access_policy',
      client_address: '198.51.100.20',
      sender: 'a@remote.test',
      recipient: 'bob@example.org',
      instance: 'policy-decisions.1',
    };
    await handler({ ...base, protocol_state: 'RCPT', queue_id: '' }, { id: 2, state: {} });
    await local.settled();
    await handler(
      { ...base, protocol_state: 'END-OF-MESSAGE', queue_id: '7C1D2E3F4A' },
      { id: 2, state: {} },
    );
    await local.settled();
    const records = await readDecisions(store, '7C1D2E3F4A');
    assert.deepEqual(
      records?.map((r) => [r.face, r.state, r.verdicts[0]?.symbol]),
      [
        ['policy', 'RCPT', 'HELO_BARE_IP'],
        ['policy', 'END-OF-MESSAGE', 'HELO_BARE_IP'],
      ],
    );
  });

  test('a recorder over its pending bound drops (counted) and never waits', async () => {
    const results: string[] = [];
    const slow = new DecisionRecorder(store, {
      retentionS: 60,
      maxPending: 1,
      onResult: (r) => results.push(r),
    });
    const record = {
      face: 'policy' as const,
      time: new Date().toISOString(),
      action: 'dunno',
      score: 0,
      verdicts: [],
    };
    slow.record('AAAAA11111', record);
    slow.record('AAAAA11112', record);
    await slow.settled();
    assert.deepEqual(results.sort(), ['dropped', 'recorded']);
  });
});

describe('learn', () => {
  test('nothing learns here: 503; an unknown class: 404', async () => {
    const headers = { ...auth, 'content-type': 'message/rfc822' };
    const off = await app.inject({
      method: 'POST',
      url: '/api/v1/learn/spam',
      headers,
      payload: 'Subject: x\r\n\r\nx',
    });
    assert.equal(off.statusCode, 503);
    const eggs = await app.inject({ method: 'POST', url: '/api/v1/learn/eggs', headers, payload: 'x' });
    assert.equal(eggs.statusCode, 404);
  });
});

describe('when the store is down', () => {
  test('greylist, lists and decisions answer 503, not 500', async () => {
    const down = await openStore({ driver: 'sqlite', path: path.join(work, 'down.db') });
    await down.close();
    const broken = build(TOKEN, {
      ...services(),
      greylist: {
        store: down,
        settings: { greylist: config.policy.greylist, recipientDelimiter: config.recipient_delimiter },
      },
      lists: new ListOps(config.policy.lists, new RuntimeEntries(down)),
      decisions: down,
    });
    for (const url of ['/api/v1/greylist', '/api/v1/lists/block.client', '/api/v1/decisions/ABCDE12345']) {
      const res = await broken.inject({ url, headers: auth });
      assert.equal(res.statusCode, 503, `${url}: ${res.body}`);
      assert.equal(res.json<{ code: string }>().code, 'PW-S001');
    }
    await broken.close();
  });
});
