/**
 * The quarantine page in a real headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core), against
 * the built bin's `serve` with its HTTP face on 127.0.0.1:21403, behind a real mail chain: Postfix (:21404,
 * content_filter → postwarden :21401 → re-injection smtpd :21402 → Dovecot LMTP → Maildir) and a real clamd.
 * The held messages come through that chain, not written by the test: a spam message (an admin rule scores its
 * subject 20, above quarantine_at), a second one with markup in its subject, and an EICAR attachment (the
 * virus). Sending through Postfix and clamd rather than writing entries costs a few seconds and shows the notice's
 * link as a recipient gets it. Then:
 *
 * - the admin logs in with the token in the browser and the list shows them, the markup subject as text (no
 *   element, no dialog), styled (the style sheet loads under the content-security policy), no CSP violation;
 * - the signed link from alice's notice opens a confirmation page, and clicking its button releases the spam: it
 *   reaches alice's Maildir with `X-Postwarden-Released`; the link then says it was released;
 * - the virus's notice carries no link, and even a genuinely signed link (made here with the server's key) is
 *   refused with 403, and the virus stays held; a tampered link is refused too;
 * - the admin releases the virus from its page (the form's CSRF token and Chromium's own Origin and
 *   Sec-Fetch-Site headers), and it is delivered.
 *
 * Screenshots are written to /tmp/pw-h-qp/screens/ (paths printed). Chromium runs as root here: --no-sandbox.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { simpleParser } from 'mailparser';
import { type Browser, chromium, type Page } from 'playwright-core';
import { releaseLinkPath } from '../../src/core/release-link.js';
import { type ClamdServer, startClamd } from '../harness/clamd.js';
import { type Harness, startHarness, tagged } from '../harness/harness.js';
import { withAttachment } from '../harness/mail.js';
import { Postwarden, sleep } from '../harness/postwarden.js';

const POLICY = '127.0.0.1:21400';
const FILTER = '127.0.0.1:21401';
const REINJECT_PORT = 21402;
const HTTP = '127.0.0.1:21403';
const PUBLIC = `http://${HTTP}`;
const TOKEN = 'qp-browser-admin-token-0123456789abcdefgh';
const work = '/tmp/pw-h-qp-w';
const screens = '/tmp/pw-h-qp/screens';
const quarantineDir = path.join(work, 'quarantine');
const secretFile = path.join(work, 'link.secret');

let harness: Harness | undefined;
let clamd: ClamdServer | undefined;
let browser: Browser | undefined;
const pw = new Postwarden('qpage', work, HTTP);

function h(): Harness {
  if (!harness) throw new Error('harness not started');
  return harness;
}

function config(): string {
  return `hostname: mx.example.test
local_domains: [example.test]
local_networks: [127.0.0.1/32]
policy:
  listen: ${POLICY}
  checks: [relay]
filter:
  enabled: true
  listen: ${FILTER}
  reinject: 127.0.0.1:${REINJECT_PORT}
  spool_dir: ${path.join(work, 'spool')}
  scanners: [rules, antivirus]
  rules:
    custom:
      - { symbol: QP_TEST_SPAM, target: "header:Subject", pattern: "/qp-spam/", weight: 20, description: test spam }
  antivirus: { socket: ${clamd?.socket ?? ''}, timeout_ms: 5000 }
  quarantine: { dir: ${quarantineDir} }
http:
  listen: ${HTTP}
  token_file: ${path.join(work, 'admin.token')}
  public_url: ${PUBLIC}
  link_secret_file: ${secretFile}
`;
}

const tag = `qp-${process.pid}`;
/** Spam whose subject is markup: the page must show it as text, and no script may run. */
const XSS_SUBJECT = `qp-spam <script>alert(1)</script><img src=x onerror=alert(2)> ${tag}-x`;

function message(subject: string, body: string[]): string {
  return [
    'From: Sender <sender@example.net>',
    'To: alice@example.test',
    `Subject: ${subject}`,
    `Message-ID: <${subject.replace(/\W/g, '.')}@example.net>`,
    'Date: Mon, 23 Nov 2026 01:00:00 +0000',
    `X-Pw-Test: ${subject}`,
    'MIME-Version: 1.0',
    ...body,
  ].join('\r\n');
}

async function send(raw: string): Promise<void> {
  const file = path.join(work, `m-${Date.now()}-${Math.random()}.eml`);
  writeFileSync(file, raw);
  const result = await h().swaks([
    '--from',
    'sender@example.net',
    '--to',
    'alice@example.test',
    '--data',
    `@${file}`,
  ]);
  assert.equal(result.code, 0, result.transcript);
}

/** The id and the decoded text of the notice about the message whose subject holds `subject`. */
async function notice(subject: string): Promise<{ id: string; text: string }> {
  const raw = await h().waitForMessage(
    'alice',
    (m) => /^X-Postwarden-Quarantine-Id: /im.test(m) && m.includes(subject),
    20_000,
  );
  const parsed = await simpleParser(raw);
  const id = String(parsed.headers.get('x-postwarden-quarantine-id') ?? '');
  return { id, text: parsed.text ?? '' };
}

async function shot(page: Page, name: string): Promise<string> {
  const file = path.join(screens, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
  return file;
}

/** A page that records content-security-policy violations reported on its console. */
async function newPage(): Promise<{ page: Page; violations: string[] }> {
  if (!browser) throw new Error('no browser');
  const page = await browser.newPage();
  const violations: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
  });
  return { page, violations };
}

let spam: { id: string; text: string };
let virus: { id: string; text: string };

before(async () => {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  mkdirSync(screens, { recursive: true });
  writeFileSync(path.join(work, 'admin.token'), `${TOKEN}\n`, { mode: 0o600 });
  clamd = await startClamd({ port: 21409 });
  harness = await startHarness({
    policy: 'off',
    env: {
      HARNESS_DIR: '/tmp/pw-h-qp-h',
      SMTP_PORT: '21404',
      SINK_PORT: '21405',
      LMTP_PORT: '21406',
      IMAP_PORT: '21407',
      DOVECOT_AUTH_PORT: '21408',
      HARNESS_FILTER: `scan:[${FILTER.replace(':', ']:')}`,
      REINJECT_PORT: String(REINJECT_PORT),
    },
  });
  await pw.start(config());
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });

  await send(message(`qp-spam offer ${tag}`, ['Content-Type: text/plain', '', 'Cheap watches.', '']));
  await send(message(XSS_SUBJECT, ['Content-Type: text/plain', '', 'Markup in the subject.', '']));
  const virusTag = `${tag}-v`;
  await send(withAttachment(virusTag, 'readme.txt', clamd.eicar));
  spam = await notice(`qp-spam offer ${tag}`);
  virus = await notice(`attachment ${virusTag}`);
});

after(async () => {
  await browser?.close();
  await pw.stop();
  await harness?.stop();
  await clamd?.destroy();
  rmSync(work, { recursive: true, force: true }); // the screenshots stay, in their own directory
});

describe('the quarantine page in Chromium', () => {
  it('the admin logs in with the token and sees the held messages, markup as text, styled, no CSP violation', async () => {
    const { page, violations } = await newPage();
    const login = await page.goto(`${PUBLIC}/quarantine/`);
    assert.equal(login?.status(), 401);
    assert.match(String(login?.headers()['content-security-policy']), /default-src 'none'/);
    await page.fill('input[name=token]', TOKEN);
    await Promise.all([page.waitForURL(`${PUBLIC}/quarantine/`), page.click('button[type=submit]')]);
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    const body = await page.textContent('body');
    assert.ok(body?.includes(XSS_SUBJECT), 'the markup in a subject is shown as text');
    assert.equal(await page.$('img'), null, 'and is not an element');
    assert.ok(body?.includes(`qp-spam offer ${tag}`), body ?? '');
    assert.ok(body?.includes(`attachment ${tag}-v`));
    assert.ok(body?.includes('SPAM_HELD') && body.includes('VIRUS_FOUND'));
    // The style sheet applied: the table header has its background (CSP `style-src 'self'` let it load).
    const background = await page.evaluate("getComputedStyle(document.querySelector('th')).backgroundColor");
    assert.equal(background, 'rgb(236, 234, 228)');
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'pw_quarantine');
    assert.ok(session?.httpOnly && session.sameSite === 'Strict' && session.path === '/quarantine');
    assert.ok(!session.value.includes(TOKEN));
    await shot(page, 'admin-list');
    assert.deepEqual(dialogs, [], 'no script ran');
    await page.click(`a[href="/quarantine/m/${virus.id}"]`);
    assert.match((await page.textContent('pre')) ?? '', /Subject: attachment/);
    await shot(page, 'admin-message');
    assert.deepEqual(violations, []);
    await page.close();
  });

  it('the spam notice carries a signed link; clicking through releases the spam to the Maildir', async () => {
    const url = /http:\/\/127\.0\.0\.1:21403\/quarantine\/link\/\S+/.exec(spam.text)?.[0];
    assert.ok(url, `no link in the notice: ${spam.text}`);
    assert.match(spam.text, /you can release it yourself until/);
    const { page, violations } = await newPage();
    const confirm = await page.goto(url);
    assert.equal(confirm?.status(), 200);
    assert.match((await page.textContent('h1')) ?? '', /Release a held message\?/);
    await sleep(500);
    assert.equal(
      h()
        .maildirMessages('alice')
        .filter(tagged(`qp-spam offer ${tag}`)).length,
      0,
      'GET released',
    );
    await shot(page, 'link-confirm');
    const [answer] = await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    assert.equal(answer?.status(), 200);
    assert.match((await page.textContent('h1')) ?? '', /^Released$/);
    const released = await shot(page, 'link-released');
    const [copy] = await h().waitForMessages('alice', tagged(`qp-spam offer ${tag}`), 1, 20_000);
    assert.ok(copy, 'released but not delivered');
    assert.match(
      copy,
      new RegExp(`^X-Postwarden-Released: ${spam.id} by alice@example\\.test \\(release link\\)`, 'm'),
    );
    // One recipient: the message has left the quarantine; the link now says so.
    const again = await page.goto(url);
    assert.equal(again?.status(), 404);
    assert.deepEqual(violations, []);
    assert.ok(readFileSync(released).length > 1000, 'a screenshot was written');
    await page.close();
  });

  it('a virus cannot be released by a link: none in its notice, and a genuinely signed one is refused', async () => {
    assert.ok(!virus.text.includes('/quarantine/link/'), 'a virus notice carries no link');
    assert.match(virus.text, /Only the postmaster can release it/);
    const secret = readFileSync(secretFile);
    const expires = Math.floor(Date.now() / 1000) + 3600;
    const signed =
      PUBLIC + releaseLinkPath(secret, { id: virus.id, recipient: 'alice@example.test', expires });
    const { page } = await newPage();
    const refused = await page.goto(signed);
    assert.equal(refused?.status(), 403);
    assert.match((await page.textContent('h1')) ?? '', /Only the postmaster can release this message/);
    assert.equal(await page.$('button[type=submit]'), null, 'no form to submit');
    await shot(page, 'virus-refused');
    const tampered = await page.goto(signed.replace(/exp=\d+/, `exp=${expires + 86_400}`));
    assert.equal(tampered?.status(), 403);
    assert.match((await page.textContent('h1')) ?? '', /not valid/);
    await sleep(500);
    assert.equal(
      h()
        .maildirMessages('alice')
        .filter(tagged(`${tag}-v`)).length,
      0,
      'the virus was delivered',
    );
    const entry = JSON.parse(readFileSync(path.join(quarantineDir, `${virus.id}.json`), 'utf8')) as {
      symbol: string;
    };
    assert.equal(entry.symbol, 'VIRUS_FOUND', 'still held');
    await page.close();
  });

  it('the admin can release the virus from the page (CSRF token and origin checked by the real browser)', async () => {
    const { page, violations } = await newPage();
    await page.goto(`${PUBLIC}/quarantine/`);
    await page.fill('input[name=token]', TOKEN);
    await Promise.all([page.waitForURL(`${PUBLIC}/quarantine/`), page.click('button[type=submit]')]);
    await page.goto(`${PUBLIC}/quarantine/m/${virus.id}`);
    await Promise.all([
      page.waitForURL(`${PUBLIC}/quarantine/?done=released`),
      page.click('button:has-text("Release to alice@example.test")'),
    ]);
    assert.match((await page.textContent('.note')) ?? '', /Released/);
    assert.match(((await page.textContent('p.muted')) ?? '').trim(), /^1 held\.$/, 'the markup spam is left');
    const [copy] = await h().waitForMessages('alice', tagged(`${tag}-v`), 1, 20_000);
    assert.ok(copy, 'released but not delivered');
    assert.match(copy, new RegExp(`^X-Postwarden-Released: ${virus.id} by the admin`, 'm'));
    assert.deepEqual(violations, []);
    await page.close();
  });

  it('serve created the key of release links: 32 bytes, mode 0600, and said so', () => {
    assert.equal(readFileSync(secretFile).length, 32);
    assert.equal(statSync(secretFile).mode & 0o777, 0o600);
    assert.ok(pw.lines().some((l) => l['code'] === 'PW-H020'));
  });
});
