/**
 * The quarantine page's routes through fastify's inject(), over a real quarantine directory (messages held by the
 * filter's own module) and a real SMTP server on 127.0.0.1:21410 as the re-injection target: the admin login
 * (cookie attributes, wrong token, cross-site post), the list and the header view (escaped), release and delete
 * (CSRF token and origin checked), and the signed links (confirmation without release on GET, release for that
 * recipient only on POST, then 409; forged, tampered, expired, incomplete, wrong-recipient, virus, path
 * traversal, links off, re-injection refused). Every answer carries the security headers.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { quarantineOpsOf } from '../../src/admin/quarantine.js';
import { linkSecret, quarantinePageOptions } from '../../src/cli/quarantine-page.js';
import { configSchema } from '../../src/config/schema.js';
import { releaseLinkPath } from '../../src/core/release-link.js';
import { noticeText } from '../../src/filter/notice.js';
import { Quarantine, type QuarantineEntry } from '../../src/filter/quarantine.js';
import { statusOnlyAdmin } from '../harness/admin.js';
import { buildHttpApp } from '../../src/http/app.js';
import { createLogger } from '../../src/observe/logger.js';
import { Metrics } from '../../src/observe/metrics.js';
import { type RecordingSmtp, startRecordingSmtp } from '../harness/smtp.js';

const TOKEN = 'qp-admin-token-0123456789abcdef0123456789';
const SECRET = Buffer.alloc(32, 9);
const SMTP_PORT = 21410;
const work = mkdtempSync('/tmp/pw-h-qp-routes-');
const quarantine = new Quarantine(path.join(work, 'quarantine'), 30);
let smtp: RecordingSmtp;

const config = configSchema.parse({
  local_domains: ['example.test'],
  hostname: 'mx.example.test',
  filter: { reinject: `127.0.0.1:${SMTP_PORT}` },
  http: { public_url: 'http://127.0.0.1:21403' },
});

function app(opts: { token?: boolean; links?: boolean } = {}) {
  return buildHttpApp({
    metrics: new Metrics(),
    logger: createLogger('fatal'),
    readiness: () => [],
    admin: statusOnlyAdmin(),
    ...(opts.token === false ? {} : { adminToken: TOKEN }),
    quarantinePage: quarantinePageOptions(
      config,
      quarantineOpsOf(config, '/', quarantine),
      opts.links === false ? undefined : SECRET,
    ),
  });
}

const raw = (subject: string) =>
  [
    'From: Spammer <spam@example.net>',
    'To: alice@example.test, bob@example.test',
    `Subject: ${subject}`,
    'X-Evil: <img src=x onerror=alert(1)>',
    '',
    'Buy now.',
    '',
  ].join('\r\n');

/** A spam entry for alice and bob (`over` changes fields). */
function entryOf(over: Partial<QuarantineEntry> = {}): QuarantineEntry {
  return {
    id: quarantine.newId(),
    time: Date.now(),
    scanner: 'spam',
    symbol: 'SPAM_HELD',
    reason: 'spam score 20.0 reached 12',
    releasableBy: 'recipient',
    sender: 'spam@example.net',
    recipients: ['alice@example.test', 'bob@example.test'],
    size: 100,
    subject: '<script>alert("s")</script> cheap',
    ...over,
  };
}

async function hold(over: Partial<QuarantineEntry> = {}): Promise<QuarantineEntry> {
  const entry = entryOf(over);
  await quarantine.hold(Readable.from([raw(entry.subject ?? '')]), entry);
  return entry;
}

const link = (id: string, recipient = 'alice@example.test', expires = Math.floor(Date.now() / 1000) + 3600) =>
  releaseLinkPath(SECRET, { id, recipient, expires });

function assertSecure(r: LightMyRequestResponse): void {
  const csp = String(r.headers['content-security-policy']);
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /style-src 'self'/);
  assert.match(csp, /form-action 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
  assert.equal(r.headers['referrer-policy'], 'no-referrer');
  assert.equal(r.headers['cache-control'], 'no-store');
  assert.ok(!/<script/i.test(r.body), 'no script element, and every value escaped');
}

/** Logs in; returns the cookie header and the list page. */
async function login(a: ReturnType<typeof app>): Promise<{ cookie: string; csrf: string }> {
  const r = await a.inject({ method: 'POST', url: '/quarantine/login', payload: { token: TOKEN } });
  assert.equal(r.statusCode, 303);
  const set = String(r.headers['set-cookie']);
  const cookie = set.split(';')[0] ?? '';
  const list = await a.inject({ url: '/quarantine/', headers: { cookie } });
  const csrf = /name="csrf" value="([^"]+)"/.exec(list.body)?.[1] ?? '';
  return { cookie, csrf };
}

before(async () => {
  smtp = await startRecordingSmtp(SMTP_PORT);
});

after(async () => {
  await smtp.close();
  rmSync(work, { recursive: true, force: true });
});

beforeEach(() => {
  smtp.received.length = 0;
  smtp.rules = {};
  for (const entry of quarantine.list({ limit: 10_000 }).items)
    rmSync(quarantine.messagePath(entry.id), { force: true });
  rmSync(quarantine.dir, { recursive: true, force: true });
  quarantine.prepare();
});

describe('quarantine page: admin', () => {
  it('asks for the token, with the security headers; the style sheet is a file', async () => {
    const a = app();
    const r = await a.inject({ url: '/quarantine/' });
    assert.equal(r.statusCode, 401);
    assert.match(r.body, /<input type="password" name="token"/);
    assertSecure(r);
    const css = await a.inject({ url: '/quarantine/style.css' });
    assert.equal(css.statusCode, 200);
    assert.match(String(css.headers['content-type']), /^text\/css/);
  });

  it('a wrong token: 401 and counted; a cross-site login: 403', async () => {
    const a = app();
    const wrong = await a.inject({ method: 'POST', url: '/quarantine/login', payload: { token: 'guess' } });
    assert.equal(wrong.statusCode, 401);
    assert.match(wrong.body, /not the admin token/);
    assert.equal(wrong.headers['set-cookie'], undefined);
    const cross = await a.inject({
      method: 'POST',
      url: '/quarantine/login',
      payload: { token: TOKEN },
      headers: { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' },
    });
    assert.equal(cross.statusCode, 403);
    assert.equal(cross.headers['set-cookie'], undefined);
  });

  it('the session cookie is HttpOnly, SameSite=Strict, path-scoped, and holds no token', async () => {
    const a = app();
    const r = await a.inject({ method: 'POST', url: '/quarantine/login', payload: { token: TOKEN } });
    assert.equal(r.statusCode, 303);
    assert.equal(r.headers.location, '/quarantine/');
    const set = String(r.headers['set-cookie']);
    assert.match(set, /HttpOnly/);
    assert.match(set, /SameSite=Strict/);
    assert.match(set, /Path=\/quarantine/);
    assert.match(set, /Max-Age=28800/);
    assert.ok(!set.includes(TOKEN) && !set.includes(Buffer.from(TOKEN).toString('base64')));
    assert.ok(!String(r.headers.location).includes(TOKEN));
    const tampered = (set.split(';')[0] ?? '').replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
    assert.equal((await a.inject({ url: '/quarantine/', headers: { cookie: tampered } })).statusCode, 401);
  });

  it('lists held messages, escaped, and shows one header section, escaped', async () => {
    const a = app();
    const spam = await hold();
    const virus = await hold({ symbol: 'VIRUS_FOUND', releasableBy: 'admin', subject: 'virus & co' });
    const { cookie } = await login(a);
    const list = await a.inject({ url: '/quarantine/', headers: { cookie } });
    assert.equal(list.statusCode, 200);
    assertSecure(list);
    assert.match(list.body, /2 held/);
    assert.ok(
      list.body.includes(`/quarantine/m/${spam.id}`) && list.body.includes(`/quarantine/m/${virus.id}`),
    );
    assert.ok(list.body.includes('&lt;script&gt;alert(&quot;s&quot;)&lt;/script&gt; cheap'));
    assert.ok(list.body.includes('virus &amp; co'));
    const view = await a.inject({ url: `/quarantine/m/${spam.id}`, headers: { cookie } });
    assert.equal(view.statusCode, 200);
    assertSecure(view);
    assert.ok(view.body.includes('X-Evil: &lt;img src=x onerror=alert(1)&gt;'));
    assert.ok(!view.body.includes('Buy now.'), 'the header only, not the body');
  });

  it('pages the list: 500 newest first, then the older ones by cursor; a bad cursor shows the newest', async () => {
    const a = app();
    // Written as the quarantine writes entries (a JSON line beside the message), without 502 fsynced holds.
    const t0 = Date.now() - 3_600_000;
    for (let n = 0; n < 502; n++) {
      const id = `20260101-${n.toString(16).padStart(16, '0')}`;
      const entry = entryOf({ id, time: t0 + n, subject: `offer ${n}` });
      writeFileSync(path.join(quarantine.dir, `${id}.json`), `${JSON.stringify(entry)}\n`);
    }
    const { cookie } = await login(a);
    const first = await a.inject({ url: '/quarantine/', headers: { cookie } });
    assert.equal(first.statusCode, 200);
    assert.match(first.body, /502 held, the newest 500 shown\./);
    assert.ok(first.body.includes('>offer 501<') && first.body.includes('>offer 2<'));
    assert.ok(!first.body.includes('>offer 1<'));
    const older = /href="(\/quarantine\/\?cursor=[^"]+)">Older</.exec(first.body)?.[1];
    assert.ok(older, 'a link to the older ones');
    const second = await a.inject({ url: older, headers: { cookie } });
    assert.match(second.body, /502 held, 2 older ones shown\./);
    assert.ok(second.body.includes('>offer 1<') && second.body.includes('>offer 0<'));
    assert.ok(!second.body.includes('>offer 2<'));
    assert.ok(second.body.includes('href="/quarantine/">Newest<'));
    assert.ok(!second.body.includes('>Older<'));
    const bad = await a.inject({ url: '/quarantine/?cursor=..%2F..%2Fetc', headers: { cookie } });
    assert.match(bad.body, /502 held, the newest 500 shown\./);
  });

  it('ids that are not ids (path traversal) answer 404 before touching a file', async () => {
    const a = app();
    const { cookie, csrf } = await login(a);
    for (const id of [
      '..%2F..%2Fetc%2Fpasswd',
      '20261123-0123456789abcdeg',
      '20261123-0123456789abcdef.json',
    ]) {
      const r = await a.inject({ url: `/quarantine/m/${id}`, headers: { cookie } });
      assert.equal(r.statusCode, 404, id);
      const p = await a.inject({
        method: 'POST',
        url: `/quarantine/m/${id}/delete`,
        headers: { cookie },
        payload: { csrf },
      });
      assert.equal(p.statusCode, 404, id);
    }
  });

  it('release needs the CSRF token and this origin; then it delivers to all and leaves the quarantine', async () => {
    const a = app();
    const entry = await hold();
    const { cookie, csrf } = await login(a);
    const url = `/quarantine/m/${entry.id}/release`;
    const noToken = await a.inject({ method: 'POST', url, headers: { cookie }, payload: {} });
    assert.equal(noToken.statusCode, 403);
    const crossSite = await a.inject({
      method: 'POST',
      url,
      headers: { cookie, origin: 'https://evil.example' },
      payload: { csrf },
    });
    assert.equal(crossSite.statusCode, 403);
    const sameSite = await a.inject({
      method: 'POST',
      url,
      headers: { cookie, origin: 'null', 'sec-fetch-site': 'same-site' },
      payload: { csrf },
    });
    assert.equal(sameSite.statusCode, 403, 'a sibling subdomain is another site');
    const noSession = await a.inject({ method: 'POST', url, payload: { csrf } });
    assert.equal(noSession.statusCode, 401);
    assert.equal(smtp.received.length, 0);
    assert.ok(quarantine.entry(entry.id));

    const ok = await a.inject({
      method: 'POST',
      url,
      // What Chromium sends for our own form: Origin null (Referrer-Policy: no-referrer), Sec-Fetch-Site decides.
      headers: { cookie, origin: 'null', 'sec-fetch-site': 'same-origin' },
      payload: { csrf },
    });
    assert.equal(ok.statusCode, 303);
    assert.equal(ok.headers.location, '/quarantine/?done=released');
    assert.equal(smtp.received.length, 1);
    assert.deepEqual(
      smtp.received[0]?.rcptTo.map((r) => r.address),
      ['alice@example.test', 'bob@example.test'],
    );
    assert.match(
      String(smtp.received[0]?.raw),
      new RegExp(`^X-Postwarden-Released: ${entry.id} by the admin`),
    );
    assert.equal(quarantine.entry(entry.id), undefined);
    const again = await a.inject({ method: 'POST', url, headers: { cookie }, payload: { csrf } });
    assert.equal(again.statusCode, 404, 'an already released message');
    assert.equal(smtp.received.length, 1);
  });

  it('delete removes it; a refused re-injection answers 503 and changes nothing', async () => {
    const a = app();
    const first = await hold();
    const second = await hold();
    const { cookie, csrf } = await login(a);
    smtp.rules = { data: () => ({ code: 451, message: 'try later' }) };
    const failed = await a.inject({
      method: 'POST',
      url: `/quarantine/m/${first.id}/release`,
      headers: { cookie },
      payload: { csrf },
    });
    assert.equal(failed.statusCode, 503);
    assert.ok(quarantine.entry(first.id), 'still held');
    const deleted = await a.inject({
      method: 'POST',
      url: `/quarantine/m/${second.id}/delete`,
      headers: { cookie },
      payload: { csrf },
    });
    assert.equal(deleted.statusCode, 303);
    assert.equal(quarantine.entry(second.id), undefined);
    const logout = await a.inject({
      method: 'POST',
      url: '/quarantine/logout',
      headers: { cookie },
      payload: { csrf },
    });
    assert.equal(logout.statusCode, 303);
    assert.match(String(logout.headers['set-cookie']), /pw_quarantine=;/);
  });

  it('without an admin token the admin part is off (503); links still work', async () => {
    const a = app({ token: false });
    assert.equal((await a.inject({ url: '/quarantine/' })).statusCode, 503);
    const login = await a.inject({ method: 'POST', url: '/quarantine/login', payload: { token: TOKEN } });
    assert.equal(login.statusCode, 503);
    const entry = await hold();
    assert.equal((await a.inject({ url: link(entry.id) })).statusCode, 200);
  });
});

/** The form fields of a link's confirmation page. */
function linkForm(url: string): Record<string, string> {
  const q = new URL(url, 'http://x').searchParams;
  return { rcpt: q.get('rcpt') ?? '', exp: q.get('exp') ?? '', sig: q.get('sig') ?? '' };
}

describe('quarantine page: signed links', () => {
  it('GET confirms without releasing; POST releases for that recipient only, then 409', async () => {
    const a = app();
    const entry = await hold();
    const url = link(entry.id);
    const page = await a.inject({ url });
    assert.equal(page.statusCode, 200);
    assertSecure(page);
    assert.match(page.body, /Release it to my inbox/);
    assert.ok(page.body.includes('alice@example.test') && !page.body.includes('bob@example.test'));
    assert.equal(smtp.received.length, 0, 'a GET (a mail scanner prefetching) releases nothing');

    const post = await a.inject({
      method: 'POST',
      url: `/quarantine/link/${entry.id}`,
      payload: linkForm(url),
    });
    assert.equal(post.statusCode, 200);
    assert.match(post.body, /Released/);
    assert.equal(smtp.received.length, 1);
    assert.deepEqual(
      smtp.received[0]?.rcptTo.map((r) => r.address),
      ['alice@example.test'],
    );
    assert.match(
      String(smtp.received[0]?.raw),
      /^X-Postwarden-Released: \S+ by alice@example\.test \(release link\)/,
    );
    assert.deepEqual(quarantine.entry(entry.id)?.released, ['alice@example.test'], 'still held for bob');

    const again = await a.inject({
      method: 'POST',
      url: `/quarantine/link/${entry.id}`,
      payload: linkForm(url),
    });
    assert.equal(again.statusCode, 409);
    assert.equal((await a.inject({ url })).statusCode, 409);
    assert.equal(smtp.received.length, 1);

    const bob = link(entry.id, 'bob@example.test');
    const byBob = await a.inject({
      method: 'POST',
      url: `/quarantine/link/${entry.id}`,
      payload: linkForm(bob),
    });
    assert.equal(byBob.statusCode, 200);
    assert.equal(quarantine.entry(entry.id), undefined, 'gone once every recipient has it');
    assert.equal((await a.inject({ url: bob })).statusCode, 404);
  });

  it('a virus cannot be released by a link, even a genuine one', async () => {
    const a = app();
    const entry = await hold({ symbol: 'VIRUS_FOUND', releasableBy: 'admin', reason: 'virus found: EICAR' });
    const url = link(entry.id);
    const page = await a.inject({ url });
    assert.equal(page.statusCode, 403);
    assert.match(page.body, /Only the postmaster can release/);
    const post = await a.inject({
      method: 'POST',
      url: `/quarantine/link/${entry.id}`,
      payload: linkForm(url),
    });
    assert.equal(post.statusCode, 403);
    assert.equal(smtp.received.length, 0);
    assert.ok(quarantine.entry(entry.id));
  });

  it('forged, tampered, expired, incomplete and wrong-recipient links are refused with their status', async () => {
    const a = app();
    const entry = await hold();
    const good = link(entry.id);
    const forged = good.replace(/sig=[^&]+/, `sig=${'A'.repeat(43)}`);
    const tamperedRcpt = good.replace('rcpt=alice', 'rcpt=mallory');
    const tamperedExp = good.replace(/exp=(\d+)/, (_m, e: string) => `exp=${Number(e) + 86_400}`);
    const expired = link(entry.id, 'alice@example.test', Math.floor(Date.now() / 1000) - 1);
    const incomplete = good.replace(/&sig=[^&]+/, '');
    const stranger = link(entry.id, 'carol@example.test');
    const traversal = `/quarantine/link/..%2F..%2Fetc%2Fpasswd?${good.split('?')[1]}`;
    const otherId = good.replace(entry.id, quarantine.newId());
    const cases: [string, string, number, RegExp][] = [
      ['forged', forged, 403, /not valid/],
      ['tampered recipient', tamperedRcpt, 403, /not valid/],
      ['tampered expiry', tamperedExp, 403, /not valid/],
      ['expired', expired, 410, /expired/],
      ['incomplete', incomplete, 400, /incomplete/],
      ['signed for a stranger', stranger, 403, /Not your message/],
      ['path traversal', traversal, 400, /incomplete/],
      ['another id', otherId, 403, /not valid/],
    ];
    for (const [name, url, status, text] of cases) {
      const get = await a.inject({ url });
      assert.equal(get.statusCode, status, `GET ${name}`);
      assert.match(get.body, text, name);
      assertSecure(get);
      const id = new URL(url, 'http://x').pathname.split('/').pop() ?? '';
      const post = await a.inject({ method: 'POST', url: `/quarantine/link/${id}`, payload: linkForm(url) });
      assert.equal(post.statusCode, status, `POST ${name}`);
    }
    assert.equal(smtp.received.length, 0);
    assert.deepEqual(quarantine.entry(entry.id)?.released, undefined);
  });

  it('a cross-site post of a genuine link is refused; links off answer 404', async () => {
    const entry = await hold();
    const url = link(entry.id);
    const cross = await app().inject({
      method: 'POST',
      url: `/quarantine/link/${entry.id}`,
      payload: linkForm(url),
      headers: { 'sec-fetch-site': 'cross-site' },
    });
    assert.equal(cross.statusCode, 403);
    const off = await app({ links: false }).inject({ url });
    assert.equal(off.statusCode, 404);
    assert.match(off.body, /Release links are off/);
    assert.equal(smtp.received.length, 0);
  });
});

describe('the notice', () => {
  const entry = (releasableBy: 'admin' | 'recipient'): QuarantineEntry => ({
    id: '20261123-0123456789abcdef',
    time: Date.now(),
    scanner: 'spam',
    symbol: 'SPAM_HELD',
    reason: 'spam',
    releasableBy,
    sender: 'x@example.net',
    recipients: ['alice@example.test'],
    size: 1,
  });
  const settings = { postmaster: 'postmaster', instance: 'mx.example.test' };
  const linkFor = { url: 'https://mail.example.test/quarantine/link/x?sig=y', expires: new Date(0) };

  it('carries the link for spam, and says to ask the postmaster without one or for a virus', () => {
    assert.ok(noticeText(entry('recipient'), settings, false, linkFor).includes(linkFor.url));
    assert.match(noticeText(entry('recipient'), settings), /ask postmaster to release it/);
    assert.match(noticeText(entry('admin'), settings), /Only the postmaster can release it/);
  });
});

describe('the key of release links', () => {
  const withKey = (file: string, publicUrl = 'https://mail.example.test') =>
    configSchema.parse({
      local_domains: ['example.test'],
      http: { public_url: publicUrl, link_secret_file: file },
    });
  const logger = createLogger('fatal');

  it('is created (32 bytes, 0600) when missing, then read again; none without public_url', () => {
    const file = path.join(work, 'link.secret');
    const made = linkSecret(withKey(file), work, logger);
    assert.equal(made?.length, 32);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(linkSecret(withKey(file), work, logger), readFileSync(file));
    assert.equal(linkSecret(withKey(file, ''), work, logger), undefined);
  });

  it('is off (links off, serve runs on) when it is short or cannot be created', () => {
    const short = path.join(work, 'short.secret');
    writeFileSync(short, 'too short');
    assert.equal(linkSecret(withKey(short), work, logger), undefined);
    assert.equal(linkSecret(withKey(path.join(work, 'no-such-dir', 'key')), work, logger), undefined);
  });
});
