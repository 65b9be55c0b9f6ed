/**
 * The DNS port and the pure DNS facts the checks share: what a query can answer, the reversed query names of
 * DNS lists (RFC 5782 §2.1, §2.4), and return-code patterns in Postfix's `127.0.0.[2..11]` syntax.
 *
 * A query has four outcomes, returned as values, never thrown (STYLE.md §4): records, the name does not exist
 * (NXDOMAIN), the name exists without records of that type (NODATA), or an error (timeout, SERVFAIL, refused).
 * Only NXDOMAIN and NODATA mean "not there"; an error is never read as "not listed" nor as "listed".
 */
import { parseIp } from '../util/ip.js';

export type DnsType = 'A' | 'AAAA' | 'TXT' | 'MX' | 'PTR';

export interface DnsRecordsOf {
  readonly A: readonly string[];
  readonly AAAA: readonly string[];
  /** Each TXT record as its character-strings, as the wire has them (join them for the text). */
  readonly TXT: readonly (readonly string[])[];
  readonly MX: readonly { readonly exchange: string; readonly priority: number }[];
  readonly PTR: readonly string[];
}

export type DnsErrorKind = 'timeout' | 'servfail' | 'refused' | 'error';

export type DnsAnswer<T extends DnsType> =
  | { readonly status: 'ok'; readonly records: DnsRecordsOf[T] }
  | { readonly status: 'nxdomain' }
  | { readonly status: 'nodata' }
  | { readonly status: 'error'; readonly kind: DnsErrorKind; readonly reason: string };

/** The resolver the checks use (src/adapters/dns.ts: explicit servers, deadline, cache, de-duplication). */
export interface DnsResolver {
  query<T extends DnsType>(name: string, type: T, signal?: AbortSignal): Promise<DnsAnswer<T>>;
}

/**
 * The name to query a DNS list about an address: IPv4 octets reversed (`1.2.3.4` → `4.3.2.1.zone`), IPv6 as 32
 * reversed nibbles. An IPv4-mapped IPv6 client is queried as the IPv4 address it is. `undefined` when the text
 * is not an address.
 */
export function listQueryName(address: string, zone: string): string | undefined {
  const reversed = reversedAddress(address);
  return reversed === undefined ? undefined : `${reversed}.${zone}`;
}

/** listQueryName without the zone (`1.2.3.4` → `4.3.2.1`): made once for a client asked of several lists. */
export function reversedAddress(address: string): string | undefined {
  const ip = parseIp(address);
  if (!ip) return undefined;
  if (ip.family === 4) return ip.text.split('.').reverse().join('.');
  return ip.value.toString(16).padStart(32, '0').split('').reverse().join('.');
}

/** The RFC 5782 §5 IPv6 test point `::FFFF:7F00:2`, spelled as nibbles so it is not folded into 127.0.0.2. */
export function ipv6TestPointName(last: 1 | 2, zone: string): string {
  const value = (0xffffn << 32n) | (0x7f00n << 16n) | BigInt(last);
  return `${value.toString(16).padStart(32, '0').split('').reverse().join('.')}.${zone}`;
}

/**
 * A return-code pattern: a dotted quad whose octets are numbers or Postfix's bracket sets, `[2..11]`,
 * `[2;4;10..11]` (postconf(5), reject_rbl_client). Parsed once into per-octet predicates.
 */
export interface CodePattern {
  readonly text: string;
  matches(code: string): boolean;
}

const OCTET_RANGE = /^(\d{1,3})(?:\.\.(\d{1,3}))?$/;

function parseOctet(text: string): ((n: number) => boolean) | string {
  const inner = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : undefined;
  const items = inner === undefined ? [text] : inner.split(';');
  const ranges: [number, number][] = [];
  for (const item of items) {
    const match = OCTET_RANGE.exec(item);
    if (!match || (inner === undefined && match[2] !== undefined)) {
      return `"${text}" is not an octet; write a number (2), a range [2..11] or a set [2;4;10..11]`;
    }
    const low = Number(match[1]);
    const high = match[2] === undefined ? low : Number(match[2]);
    if (high > 255 || low > high) return `"${text}" is out of range; octets are 0..255, low to high`;
    ranges.push([low, high]);
  }
  return (n) => ranges.some(([low, high]) => n >= low && n <= high);
}

/** Parses a pattern; a string is the problem, worded for a config error. */
export function parseCodePattern(text: string): CodePattern | string {
  // Octets split on the dots outside brackets: `[2..11]` has dots of its own.
  const parts = text.match(/\[[^\]]*\]|[^.[\]]+/g) ?? [];
  if (parts.length !== 4 || parts.join('.') !== text)
    return `"${text}" is not a return code; write e.g. 127.0.0.2 or 127.0.0.[2..11]`;
  const octets: ((n: number) => boolean)[] = [];
  for (const part of parts) {
    const octet = parseOctet(part);
    if (typeof octet === 'string') return octet;
    octets.push(octet);
  }
  return {
    text,
    matches(code) {
      const numbers = code.split('.');
      if (numbers.length !== 4) return false;
      return octets.every((octet, i) => {
        const n = Number(numbers[i]);
        return Number.isInteger(n) && octet(n);
      });
    },
  };
}

/** Why an A answer from a DNS list is not a listing, or `undefined` when it may be one (then the codes decide). */
export function notAListing(code: string, kind: 'block' | 'allow'): string | undefined {
  const ip = parseIp(code);
  if (!ip || ip.family !== 4 || !code.startsWith('127.')) {
    return `${code} is outside 127.0.0.0/8: not a DNS list answer (a resolver that rewrites NXDOMAIN?)`;
  }
  // Spamhaus's error codes: 127.255.255.252 typo in the zone, .254 public/open resolver, .255 over quota.
  if (code.startsWith('127.255.255.')) return `${code} is an error code of the list, not a listing`;
  // DNSWL: 127.0.0.255 answers a resolver that went over its free quota.
  if (kind === 'allow' && code === '127.0.0.255') return `${code} means the list refused the query (quota)`;
  return undefined;
}

/** The text of TXT records, each record's strings joined (RFC 7208 §3.3 joins them without spaces). */
export function txtText(records: DnsRecordsOf['TXT']): string[] {
  return records.map((strings) => strings.join(''));
}
