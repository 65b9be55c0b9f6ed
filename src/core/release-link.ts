/**
 * Signed release links: the capability a quarantine notice gives one recipient to release one held message.
 * The signature is HMAC-SHA256, under a secret only postwarden knows (`http.link_secret_file`), over the version,
 * the action, the quarantine id, the recipient and the expiry (seconds since the epoch), each field apart from the
 * next by a NUL (none of them may hold one), so no field can be shifted into another. The link carries the
 * fields in the clear and the signature as base64url; verification recomputes it and compares in constant time.
 *
 * Pure: no I/O. The caller supplies the secret and the clock. What a valid signature allows (only a message the
 * recipient may release, and only for that recipient) is the page's decision; this module only says whether the
 * link is genuine and unexpired.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The one thing a link can do. Part of the signed text so a signature cannot be reused for another action. */
export type LinkAction = 'release';

export interface LinkClaims {
  readonly id: string;
  readonly recipient: string;
  readonly action: LinkAction;
  /** Seconds since the epoch after which the link is refused. */
  readonly expires: number;
}

export type LinkCheck =
  | { readonly valid: true; readonly claims: LinkClaims }
  | { readonly valid: false; readonly problem: 'malformed' | 'forged' | 'expired' };

/** Shortest secret accepted: 32 bytes, the HMAC-SHA256 block's half and the hash's size. */
export const MIN_LINK_SECRET_BYTES = 32;

const VERSION = 'pw-link-v1';
const ID = /^[0-9]{8}-[0-9a-f]{16}$/;
const SIGNATURE = /^[A-Za-z0-9_-]{43}$/;
/** An address as the envelope carries it; the bound is SMTP's (RFC 5321: 256 octets for a path). */
const MAX_RECIPIENT = 256;

function mac(secret: Buffer, claims: LinkClaims): Buffer {
  return createHmac('sha256', secret)
    .update([VERSION, claims.action, claims.id, claims.recipient, String(claims.expires)].join('\0'))
    .digest();
}

function wellFormed(claims: LinkClaims): boolean {
  return (
    claims.action === 'release' &&
    ID.test(claims.id) &&
    claims.recipient.length > 0 &&
    claims.recipient.length <= MAX_RECIPIENT &&
    !/[\0\r\n]/.test(claims.recipient) &&
    Number.isSafeInteger(claims.expires) &&
    claims.expires > 0
  );
}

/** The signature (base64url, 43 characters) of well-formed claims; throws on claims no link may carry. */
export function signLink(secret: Buffer, claims: LinkClaims): string {
  if (secret.length < MIN_LINK_SECRET_BYTES) throw new Error('the link secret is shorter than 32 bytes');
  if (!wellFormed(claims)) throw new Error(`cannot sign a link for ${JSON.stringify(claims)}`);
  return mac(secret, claims).toString('base64url');
}

/** Whether `signature` is the one for the claims, and the link has not expired at `nowS` (seconds). */
export function verifyLink(
  secret: Buffer,
  claims: LinkClaims,
  signature: string,
  nowS = Math.floor(Date.now() / 1000),
): LinkCheck {
  if (!wellFormed(claims) || !SIGNATURE.test(signature)) return { valid: false, problem: 'malformed' };
  const given = Buffer.from(signature, 'base64url');
  const expected = mac(secret, claims);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { valid: false, problem: 'forged' };
  }
  // Expiry is checked only after the signature: an attacker learns nothing from which answer comes.
  if (nowS > claims.expires) return { valid: false, problem: 'expired' };
  return { valid: true, claims };
}

/** The path and query of a release link, below the public base (which the caller puts in front). */
export function releaseLinkPath(secret: Buffer, claims: Omit<LinkClaims, 'action'>): string {
  const full: LinkClaims = { ...claims, action: 'release' };
  const query = new URLSearchParams({
    rcpt: full.recipient,
    exp: String(full.expires),
    sig: signLink(secret, full),
  });
  return `/quarantine/link/${full.id}?${query.toString()}`;
}

/**
 * The expiry of a link for a message held at `heldMs`: `validDays` from now, but never after the message leaves
 * the quarantine (`retentionDays` after it was held), since a link to nothing only confuses.
 */
export function linkExpiry(nowMs: number, heldMs: number, validDays: number, retentionDays: number): number {
  return Math.floor(Math.min(nowMs + validDays * 86_400_000, heldMs + retentionDays * 86_400_000) / 1000);
}
