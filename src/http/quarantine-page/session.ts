/**
 * The admin's session on the quarantine page, without server state: after a login with the admin token, the
 * cookie holds `<expiry>.<nonce>.<mac>`, the MAC (HMAC-SHA256) keyed by a key derived from the admin token. The
 * token itself never leaves the login form; replacing the token ends every session. Each form carries a CSRF
 * token, the MAC of the session value under the same key, which a page of another site can neither read nor make.
 *
 * Stateless, so logging out clears the cookie in that browser only; a copied cookie stays valid until it
 * expires (SESSION_S). Comparisons are constant-time.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** How long a login lasts. */
export const SESSION_S = 8 * 3600;

export const SESSION_COOKIE = 'pw_quarantine';

const MAC = /^[A-Za-z0-9_-]{43}$/;

function macOf(key: Buffer, ...parts: string[]): string {
  return createHmac('sha256', key).update(parts.join('\0')).digest('base64url');
}

/** Compares in constant time (for equal lengths): a submitted admin token, a MAC. */
export function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class Sessions {
  private readonly key: Buffer;

  constructor(adminToken: string) {
    this.key = createHmac('sha256', adminToken).update('postwarden quarantine page session v1').digest();
  }

  /** A new session value, valid for SESSION_S from `nowS`. */
  issue(nowS = Math.floor(Date.now() / 1000)): string {
    const expires = String(nowS + SESSION_S);
    const nonce = randomBytes(12).toString('base64url');
    return `${expires}.${nonce}.${macOf(this.key, 'session', expires, nonce)}`;
  }

  /** Whether a cookie value is a session this key issued and it has not expired. */
  valid(value: string | undefined, nowS = Math.floor(Date.now() / 1000)): boolean {
    const [expires, nonce, mac, extra] = (value ?? '').split('.');
    if (expires === undefined || nonce === undefined || mac === undefined || extra !== undefined)
      return false;
    if (!/^[0-9]{1,12}$/.test(expires) || !/^[A-Za-z0-9_-]{16}$/.test(nonce) || !MAC.test(mac)) return false;
    return same(mac, macOf(this.key, 'session', expires, nonce)) && Number(expires) >= nowS;
  }

  /** The CSRF token for forms of this session. */
  csrf(session: string): string {
    return macOf(this.key, 'csrf', session);
  }

  csrfValid(session: string, given: unknown): boolean {
    return typeof given === 'string' && MAC.test(given) && same(given, this.csrf(session));
  }
}
