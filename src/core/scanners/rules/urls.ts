/**
 * URL helpers for the content rules: find URLs in text, split one into the parts the rules judge (the
 * authority as written, not as a browser would normalise it: `http://0x7f000001/` must stay visibly hex),
 * and name what is obfuscated about it. Pure and total; every URL is cut at MAX_URL characters first.
 */
import { parseIp } from '../../../util/ip.js';
import { registrable } from './headers.js';

export const MAX_URL = 2000;

/** URLs in running text: with a scheme, or starting `www.`; trailing punctuation is not part of them. */
const URL_IN_TEXT = /\b(?:https?:\/\/|www\.)[^\s<>"'`{}|\\^]{1,2000}/gi;
const TRAILING = /[.,;:!?)\]'"»]+$/;

/**
 * Calls `found` for each URL in `text`, at most `max` times; returns false when it stopped at `max` with
 * more text left to search (the caller counts the message as partially read).
 */
export function findUrls(text: string, max: number, found: (url: string) => void): boolean {
  let count = 0;
  for (const match of text.matchAll(URL_IN_TEXT)) {
    if (count >= max) return false;
    found(match[0].replace(TRAILING, ''));
    count++;
  }
  return true;
}

export interface UrlParts {
  /** Lower-case scheme (`http` for `www.` and `//` URLs). */
  readonly scheme: string;
  /** What stands before an `@` in the authority, if anything. */
  readonly userinfo?: string;
  /** The host as written, lower case, without brackets and port. */
  readonly host: string;
  /** Path, query and fragment, as written. */
  readonly rest: string;
}

const WITH_SCHEME = /^([a-z][a-z0-9+.-]{0,31}):\/\/([^/?#\\]*)(.*)$/is;

/** Splits a web URL (`http(s)://`, `//`, `www.`); `undefined` for other schemes (mailto:, tel:, cid:…). */
export function splitUrl(raw: string): UrlParts | undefined {
  let text = raw.trim().slice(0, MAX_URL);
  if (text.startsWith('//')) text = `http:${text}`;
  else if (/^www\./i.test(text)) text = `http://${text}`;
  const match = WITH_SCHEME.exec(text);
  if (!match) return undefined;
  const scheme = (match[1] ?? '').toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') return undefined;
  let authority = match[2] ?? '';
  const at = authority.lastIndexOf('@');
  const userinfo = at >= 0 ? authority.slice(0, at) : undefined;
  if (at >= 0) authority = authority.slice(at + 1);
  let host: string;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    host = authority.slice(1, close < 0 ? undefined : close);
  } else {
    const colon = authority.indexOf(':');
    host = colon >= 0 ? authority.slice(0, colon) : authority;
  }
  host = host.toLowerCase().replace(/\.$/, '');
  return {
    scheme,
    ...(userinfo !== undefined ? { userinfo } : {}),
    host,
    rest: match[3] ?? '',
  };
}

/** Host spellings that resolvers read as an IPv4 address but people cannot: hex, octal, one-number, short. */
const NUMERIC_HOST = /^(?:0x[0-9a-f]*|\d+)(?:\.(?:0x[0-9a-f]*|\d+)){0,3}$/i;
/** `%xx` escapes of characters that never need escaping (letters, digits, `-._~`): only hiding does that. */
const NEEDLESS_ESCAPE = /%(?:3[0-9]|4[1-9a-f]|5[0-9a]|6[1-9a-f]|7[0-9a]|2[de]|5f|7e)/gi;
const MAX_NEEDLESS_ESCAPES = 5;

export interface UrlFacts {
  readonly host: string;
  /** The registrable domain, or the host for IP literals and single names. */
  readonly domain: string;
  /** A public IP address written as such (dotted quad or IPv6 literal). */
  readonly publicIp?: string;
  /** What hides where the URL goes, if anything. */
  readonly obfuscation?: string;
}

function isPublic(text: string): boolean {
  const ip = parseIp(text);
  if (!ip) return false;
  if (ip.family === 4) {
    const v = Number(ip.value);
    const a = v >>> 24;
    const b = (v >>> 16) & 255;
    return !(
      a === 0 ||
      a === 10 ||
      a === 127 ||
      (a === 100 && b >= 64 && b < 128) ||
      (a === 169 && b === 254) ||
      (a === 172 && b >= 16 && b < 32) ||
      (a === 192 && b === 168) ||
      a >= 224
    );
  }
  const top = Number(ip.value >> 112n);
  // Global unicast is 2000::/3; link-local, unique-local, loopback and the rest are not reachable links.
  return top >= 0x2000 && top < 0x4000;
}

/** Judges one URL; `undefined` if it is not a web URL. */
export function inspectUrl(raw: string): UrlFacts | undefined {
  const parts = splitUrl(raw);
  if (!parts) return undefined;
  const { host } = parts;
  const facts = (more: Partial<UrlFacts>): UrlFacts => ({ host, domain: registrable(host), ...more });
  if (parts.userinfo !== undefined && parts.userinfo !== '')
    return facts({ obfuscation: `a name before @ in the address (${clipUrl(parts.userinfo)}@${host})` });
  if (host.includes('%')) return facts({ obfuscation: `a %-encoded host name (${clipUrl(host)})` });
  if (host.includes(':')) return isPublic(host) ? facts({ publicIp: host }) : facts({});
  if (NUMERIC_HOST.test(host)) {
    const ip = parseIp(host);
    if (ip === undefined)
      return facts({ obfuscation: `an IP address in hex, octal or one number (${host})` });
    return isPublic(host) ? facts({ publicIp: host }) : facts({});
  }
  NEEDLESS_ESCAPE.lastIndex = 0;
  let escapes = 0;
  while (escapes <= MAX_NEEDLESS_ESCAPES && NEEDLESS_ESCAPE.exec(parts.rest)) escapes++;
  NEEDLESS_ESCAPE.lastIndex = 0;
  if (escapes > MAX_NEEDLESS_ESCAPES)
    return facts({ obfuscation: `letters and digits needlessly %-encoded (${clipUrl(raw)})` });
  return facts({});
}

/** A URL shortened for a reason string. */
export function clipUrl(text: string, max = 60): string {
  // eslint-disable-next-line no-control-regex
  const printable = text.replace(/[\x00-\x1f\x7f]/g, '?');
  return printable.length > max ? `${printable.slice(0, max - 1)}…` : printable;
}

/** `host` is `domain` or one of its subdomains. */
export function hostIn(host: string, domains: ReadonlySet<string>): string | undefined {
  let name = host;
  for (let i = 0; i < 10; i++) {
    if (domains.has(name)) return name;
    const dot = name.indexOf('.');
    if (dot < 0) return undefined;
    name = name.slice(dot + 1);
  }
  return undefined;
}
