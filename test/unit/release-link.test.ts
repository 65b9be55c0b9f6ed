/**
 * Signed release links (src/core/release-link.ts): a link verifies only with its own secret, fields and
 * signature, and only until it expires; every tampered field, a truncated or re-encoded signature and claims no
 * link may carry are refused. Also the HTML escaping of the quarantine page (src/http/quarantine-page/html.ts).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  type LinkClaims,
  linkExpiry,
  releaseLinkPath,
  signLink,
  verifyLink,
} from '../../src/core/release-link.js';
import { escapeHtml, html } from '../../src/http/quarantine-page/html.js';

const secret = Buffer.alloc(32, 7);
const NOW = 1_790_000_000;
const claims: LinkClaims = {
  id: '20261123-0123456789abcdef',
  recipient: 'alice@example.test',
  action: 'release',
  expires: NOW + 3600,
};

test('release link: a signed link verifies until it expires, then answers expired', () => {
  const sig = signLink(secret, claims);
  assert.match(sig, /^[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(verifyLink(secret, claims, sig, NOW), { valid: true, claims });
  assert.equal(verifyLink(secret, claims, sig, NOW + 3600).valid, true, 'valid through its last second');
  assert.deepEqual(verifyLink(secret, claims, sig, NOW + 3601), { valid: false, problem: 'expired' });
});

const tampered: [string, Partial<LinkClaims>][] = [
  ['another id', { id: '20261123-0123456789abcdee' }],
  ['another recipient', { recipient: 'bob@example.test' }],
  ['the recipient with a suffix', { recipient: 'alice@example.test.evil' }],
  ['a later expiry', { expires: NOW + 3600 * 24 * 365 }],
];
for (const [name, change] of tampered) {
  test(`release link: ${name} is forged`, () => {
    const sig = signLink(secret, claims);
    assert.deepEqual(verifyLink(secret, { ...claims, ...change }, sig, NOW), {
      valid: false,
      problem: 'forged',
    });
  });
}

test('release link: another secret, or a signature of an expired link, is forged, not expired', () => {
  const sig = signLink(secret, claims);
  assert.deepEqual(verifyLink(randomBytes(32), claims, sig, NOW), { valid: false, problem: 'forged' });
  // An expired link with a forged signature says forged: expiry is only looked at once the signature holds.
  assert.deepEqual(verifyLink(randomBytes(32), claims, sig, NOW + 10_000), {
    valid: false,
    problem: 'forged',
  });
});

const malformed: [string, Partial<LinkClaims>, string?][] = [
  ['a path in the id', { id: '../../etc/passwd' }],
  ['an id with a NUL', { id: '20261123-0123456789abcdef\0' }],
  ['an empty recipient', { recipient: '' }],
  ['a recipient with CR LF', { recipient: 'alice@example.test\r\nBcc: x@y' }],
  ['a recipient of 300 characters', { recipient: `${'a'.repeat(290)}@example.test` }],
  ['a NaN expiry', { expires: Number.NaN }],
  ['another action', { action: 'delete' as 'release' }],
  ['a short signature', {}, 'abc'],
  ['a signature with padding', {}, `${'A'.repeat(43)}=`],
];
for (const [name, change, sig] of malformed) {
  test(`release link: ${name} is malformed`, () => {
    const real = signLink(secret, claims);
    assert.deepEqual(verifyLink(secret, { ...claims, ...change }, sig ?? real, NOW), {
      valid: false,
      problem: 'malformed',
    });
  });
}

test('release link: signing refuses a short secret and claims no link may carry', () => {
  assert.throws(() => signLink(Buffer.alloc(16), claims), /shorter than 32 bytes/);
  assert.throws(() => signLink(secret, { ...claims, id: '../x' }), /cannot sign/);
});

test('release link: any change of any field breaks the signature (property)', () => {
  fc.assert(
    fc.property(
      fc.string({ minLength: 1, maxLength: 60 }).filter((s) => !/[\0\r\n]/.test(s)),
      fc.string({ minLength: 1, maxLength: 60 }).filter((s) => !/[\0\r\n]/.test(s)),
      fc.integer({ min: 1, max: 2 ** 40 }),
      (a, b, exp) => {
        fc.pre(a !== b);
        const one = { ...claims, recipient: a, expires: exp };
        const sig = signLink(secret, one);
        return (
          verifyLink(secret, { ...one, recipient: b }, sig, 0).valid === false &&
          verifyLink(secret, { ...one, expires: exp + 1 }, sig, 0).valid === false &&
          verifyLink(secret, one, sig, 0).valid === true
        );
      },
    ),
  );
});

test('release link: the path carries the fields, URL-encoded, and verifies', () => {
  const recipient = 'a+b&c=d@example.test';
  const linkPath = releaseLinkPath(secret, { id: claims.id, recipient, expires: claims.expires });
  const url = new URL(linkPath, 'https://mail.example.org');
  assert.equal(url.pathname, `/quarantine/link/${claims.id}`);
  assert.equal(url.searchParams.get('rcpt'), recipient);
  const sig = url.searchParams.get('sig') ?? '';
  assert.equal(verifyLink(secret, { ...claims, recipient }, sig, NOW).valid, true);
});

test('release link: expiry is the validity, but never after the message leaves the quarantine', () => {
  const day = 86_400_000;
  const now = NOW * 1000;
  assert.equal(linkExpiry(now, now, 7, 30), Math.floor((now + 7 * day) / 1000));
  // Held 28 days ago with 30 days of retention: 2 days left, not 7.
  assert.equal(linkExpiry(now, now - 28 * day, 7, 30), Math.floor((now + 2 * day) / 1000));
});

test('html: every value is escaped, markup made by the tag is not', () => {
  const subject = `<script>alert("x")</script> & 'y'`;
  assert.equal(escapeHtml(subject), '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;');
  assert.equal(escapeHtml('a\0b\x1bc\td\ne'), 'a\uFFFDb\uFFFDc\td\ne');
  const inner = html`<b>${subject}</b>`;
  // prettier-ignore
  const outer = html`<p title="${'" onmouseover="x'}">${inner}${[html`<i>1</i>`, '<2>']}${undefined}${false}${0}</p>`;
  assert.equal(
    outer.value,
    '<p title="&quot; onmouseover=&quot;x"><b>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;</b><i>1</i>&lt;2&gt;0</p>',
  );
});

test('html: no string put into the tag can open an element or leave an attribute (property)', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme-ascii', maxLength: 100 }), (s) => {
      const escaped = escapeHtml(s);
      return (
        !/[<>"']/.test(escaped) &&
        html`<a title="${s}">${s}</a>`.value === `<a title="${escaped}">${escaped}</a>`
      );
    }),
    { numRuns: 500 },
  );
});
