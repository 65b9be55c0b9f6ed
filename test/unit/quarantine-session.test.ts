/**
 * The quarantine page's admin sessions (src/http/quarantine-page/session.ts): a session value is valid only under
 * the token that issued it and until it expires; any change to it is refused; the CSRF token belongs to one
 * session; neither holds the admin token.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SESSION_S, Sessions } from '../../src/http/quarantine-page/session.js';

const TOKEN = 'admin-token-0123456789abcdef0123456789';
const NOW = 1_790_000_000;

test('session: valid until it expires, under the token that issued it only', () => {
  const sessions = new Sessions(TOKEN);
  const value = sessions.issue(NOW);
  assert.ok(!value.includes(TOKEN));
  assert.equal(sessions.valid(value, NOW), true);
  assert.equal(sessions.valid(value, NOW + SESSION_S), true);
  assert.equal(sessions.valid(value, NOW + SESSION_S + 1), false, 'expired');
  assert.equal(new Sessions(`${TOKEN}x`).valid(value, NOW), false, 'the token was replaced');
  assert.notEqual(sessions.issue(NOW), value, 'each login its own nonce');
});

test('session: a changed expiry, nonce or MAC, or garbage, is refused', () => {
  const sessions = new Sessions(TOKEN);
  const [expires, nonce, mac] = sessions.issue(NOW).split('.') as [string, string, string];
  const flip = (s: string) => s.slice(0, -1) + (s.endsWith('A') ? 'B' : 'A');
  for (const value of [
    `${Number(expires) + 86_400}.${nonce}.${mac}`,
    `${expires}.${flip(nonce)}.${mac}`,
    `${expires}.${nonce}.${flip(mac)}`,
    `${expires}.${nonce}.${mac}.x`,
    `${expires}.${nonce}`,
    '',
    undefined,
    TOKEN,
  ]) {
    assert.equal(sessions.valid(value, NOW), false, String(value));
  }
});

test('session: the CSRF token is one session’s', () => {
  const sessions = new Sessions(TOKEN);
  const one = sessions.issue(NOW);
  const two = sessions.issue(NOW);
  const csrf = sessions.csrf(one);
  assert.equal(sessions.csrfValid(one, csrf), true);
  assert.equal(sessions.csrfValid(two, csrf), false);
  assert.equal(sessions.csrfValid(one, undefined), false);
  assert.equal(sessions.csrfValid(one, [csrf]), false);
  assert.equal(new Sessions(`${TOKEN}x`).csrfValid(one, csrf), false);
});
