/**
 * IP helpers: parse addresses and CIDR networks, test membership, print canonical forms, and compute the
 * network an address falls in (greylisting keys clients by /24 and /64).
 *
 * Contract: pure functions; invalid input yields `undefined`, never an exception. IPv4 is dotted-quad decimal
 * only (no `010.1` or `0x7f.1` forms, which resolvers read as octal or hex). An IPv4-mapped IPv6 address
 * (`::ffff:1.2.3.4`) is the IPv4 address it maps, so both spellings of a client match the same entries. SMTP
 * address-literal spellings (`[1.2.3.4]`, `[IPv6:2001:db8::1]`, `IPv6:2001:db8::1`) are accepted, and an IPv6
 * zone (`%eth0`) is dropped: it names an interface, not an address.
 */
import ipaddr from 'ipaddr.js';

export type IpFamily = 4 | 6;

export interface IpAddress {
  readonly family: IpFamily;
  /** The address as an unsigned integer of 32 (IPv4) or 128 (IPv6) bits. */
  readonly value: bigint;
  /** Canonical text: dotted quad, or RFC 5952 lower-case compressed IPv6. */
  readonly text: string;
}

export interface IpNetwork {
  readonly family: IpFamily;
  /** The network address (host bits cleared). */
  readonly base: bigint;
  readonly prefix: number;
  /** Canonical text, `1.2.3.0/24` or `2001:db8::/32`. */
  readonly text: string;
  /** The text named an address inside the network (`1.2.3.4/24`) rather than the network itself. */
  readonly hostBitsSet: boolean;
}

// Longest sensible spelling: an IPv6 address with an embedded IPv4 part, brackets, `IPv6:` and a zone.
const MAX_TEXT = 100;
const DOTTED_TAIL = /^(.*:)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/;
// Dotted quad; ipaddr.js's own validators throw and catch internally, which costs microseconds per non-address.
const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const V6_CHARS = /^[0-9a-f:.]+$/i;

export function bitsOf(family: IpFamily): 32 | 128 {
  return family === 4 ? 32 : 128;
}

/** `::ffff:0:0/96`, the IPv4-mapped block. */
function isMapped(v6: bigint): boolean {
  return v6 >> 32n === 0xffffn;
}

function maskOf(family: IpFamily, prefix: number): bigint {
  const bits = BigInt(bitsOf(family));
  const all = (1n << bits) - 1n;
  return (all >> BigInt(prefix)) ^ all;
}

function v4Text(value: bigint): string {
  const n = Number(value);
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function v6Text(value: bigint): string {
  const parts: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) parts.push(Number((value >> shift) & 0xffffn));
  return new ipaddr.IPv6(parts).toRFC5952String();
}

function textOf(family: IpFamily, value: bigint): string {
  return family === 4 ? v4Text(value) : v6Text(value);
}

function parseV4(text: string): bigint | undefined {
  const match = DOTTED_QUAD.exec(text);
  if (!match) return undefined;
  let value = 0;
  for (const octet of match.slice(1)) {
    // A leading zero reads as octal to some resolvers: refuse rather than guess.
    if (octet.length > 1 && octet.startsWith('0')) return undefined;
    const number = Number(octet);
    if (number > 255) return undefined;
    value = value * 256 + number;
  }
  return BigInt(value);
}

function parseV6(text: string): bigint | undefined {
  // ipaddr.js reads any embedded dotted quad as IPv4-mapped (`::1.2.3.4` would become `::ffff:1.2.3.4`), so
  // the dotted tail is rewritten as two hex groups first.
  const tail = DOTTED_TAIL.exec(text);
  let hex = text;
  if (tail) {
    const v4 = parseV4(tail[2] ?? '');
    if (v4 === undefined) return undefined;
    hex = `${tail[1] ?? ''}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  if (!V6_CHARS.test(hex) || !ipaddr.IPv6.isValid(hex)) return undefined;
  return ipaddr.IPv6.parse(hex).parts.reduce((acc, part) => (acc << 16n) | BigInt(part), 0n);
}

/** Parses a bare address (no brackets): the family and value, mapped IPv6 folded to IPv4. */
function parseBare(text: string): { family: IpFamily; value: bigint } | undefined {
  if (!text.includes(':')) {
    const value = parseV4(text);
    return value === undefined ? undefined : { family: 4, value };
  }
  const value = parseV6(text);
  if (value === undefined) return undefined;
  if (isMapped(value)) return { family: 4, value: value & 0xffffffffn };
  return { family: 6, value };
}

/** Recently parsed texts: one request asks several tables about the same client address, and the HELO check
 * parses names and addresses in between (measured: ~5% of a policy request went to parsing them again).
 * Bounded: cleared when full. Results are frozen, so sharing them is safe. */
const recent = new Map<string, IpAddress | undefined>();
const RECENT_MAX = 256;

/** Parses an IP address in any of the spellings above; `undefined` if it is not one. */
export function parseIp(text: string): IpAddress | undefined {
  if (text.length > 64) return parseIpUncached(text); // no address is that long; keep big keys out
  const known = recent.get(text);
  if (known !== undefined || recent.has(text)) return known;
  if (recent.size >= RECENT_MAX) recent.clear();
  const parsed = parseIpUncached(text);
  recent.set(text, parsed);
  return parsed;
}

function parseIpUncached(text: string): IpAddress | undefined {
  if (text.length > MAX_TEXT) return undefined;
  let bare = text.trim();
  if (bare.startsWith('[') && bare.endsWith(']')) bare = bare.slice(1, -1);
  if (/^ipv6:/i.test(bare)) bare = bare.slice(5);
  const zone = bare.indexOf('%');
  if (zone >= 0) bare = bare.slice(0, zone);
  const parsed = parseBare(bare);
  return parsed && Object.freeze({ ...parsed, text: textOf(parsed.family, parsed.value) });
}

/**
 * Parses `address/prefix`. An IPv4-mapped IPv6 network of prefix 96 or more is the IPv4 network it maps. Host
 * bits are cleared in `base` and flagged in `hostBitsSet`: Postfix refuses such entries, and callers decide.
 */
export function parseCidr(text: string): IpNetwork | undefined {
  if (text.length > MAX_TEXT) return undefined;
  const match = /^([^/\s]+)\/(\d{1,3})$/.exec(text.trim());
  if (!match) return undefined;
  let family: IpFamily;
  let value: bigint;
  let prefix = Number(match[2]);
  const address = match[1] ?? '';
  if (address.includes(':')) {
    const v6 = parseV6(address);
    if (v6 === undefined || prefix > 128) return undefined;
    if (prefix >= 96 && isMapped(v6)) {
      [family, value, prefix] = [4, v6 & 0xffffffffn, prefix - 96];
    } else {
      [family, value] = [6, v6];
    }
  } else {
    const v4 = parseV4(address);
    if (v4 === undefined || prefix > 32) return undefined;
    [family, value] = [4, v4];
  }
  const base = value & maskOf(family, prefix);
  return { family, base, prefix, text: `${textOf(family, base)}/${prefix}`, hostBitsSet: base !== value };
}

/** The network base of `address` at `prefix` bits (no range check: callers pass 0..bits). */
export function networkBase(address: IpAddress, prefix: number): bigint {
  return address.value & maskOf(address.family, prefix);
}

/** The network of `address` at `prefix` bits; `undefined` if the prefix is out of range for its family. */
export function networkOf(address: IpAddress, prefix: number): IpNetwork | undefined {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bitsOf(address.family)) return undefined;
  const base = networkBase(address, prefix);
  return {
    family: address.family,
    base,
    prefix,
    text: `${textOf(address.family, base)}/${prefix}`,
    hostBitsSet: false,
  };
}

export function cidrContains(network: IpNetwork, address: IpAddress): boolean {
  return network.family === address.family && networkBase(address, network.prefix) === network.base;
}

/** Membership on text: `undefined` if either side does not parse. */
export function ipInCidr(address: string, cidr: string): boolean | undefined {
  const ip = parseIp(address);
  const network = parseCidr(cidr);
  return ip && network && cidrContains(network, ip);
}

/** The canonical spelling of an address (`::FFFF:1.2.3.4` → `1.2.3.4`), or `undefined`. */
export function canonicalIp(text: string): string | undefined {
  return parseIp(text)?.text;
}

/**
 * The network an address belongs to, as text (`1.2.3.0/24`, `2001:db8:1:2::/64`): the key greylisting and rate
 * limits use so that a client pool retrying from neighbouring addresses counts as one.
 */
export function networkPrefix(text: string, v4Prefix = 24, v6Prefix = 64): string | undefined {
  const ip = parseIp(text);
  return ip && networkOf(ip, ip.family === 4 ? v4Prefix : v6Prefix)?.text;
}

/** ipaddr.js's name for the range an address is in: `unicast`, `private`, `loopback`, `linkLocal`, … */
export function rangeOf(ip: IpAddress): string {
  return ipaddr.parse(ip.text).range();
}
