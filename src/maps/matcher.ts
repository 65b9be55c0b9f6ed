/**
 * Entry matcher: compiles `key [value]` entries (IPs, CIDRs, addresses, local parts, domains) into indexes that
 * answer each lookup with a handful of Map probes — it runs on every SMTP transaction.
 *
 * Query semantics follow Postfix access(5) with parent_domain_matches_subdomains:
 * - ip: the most specific network containing the address (an address entry is a /32 or /128); `cidr:` tables
 *   instead take the entry that comes first in the file, as Postfix cidr_table(5) does.
 * - address `user+ext@sub.example.com`: `user+ext@sub.example.com`, `user@sub.example.com`, then the domain
 *   and its parents (below), then `user+ext@`, `user@`. The null sender (`` or `<>`) looks up `<>` only.
 * - domain, hostname: the name itself against `example.com` entries, then each parent against `example.com`
 *   (the domain and its subdomains) and `.example.com` (subdomains only) entries.
 * - text: the key exactly as written, case-sensitive.
 * Keys other than text are case-insensitive; a found result names the matching entry in normalised form.
 *
 * Failure behaviour: compiling reports the first bad entry (and how many more) instead of a table; a duplicate
 * key keeps the first entry and adds a warning. Lookups never throw; an over-long query is an error result.
 */
import type { LookupQuery, LookupResult } from '../core/ports.js';
import { NOT_FOUND } from '../core/ports.js';
import {
  networkBase,
  parseCidr,
  parseIp,
  type IpAddress,
  type IpFamily,
  type IpNetwork,
} from '../util/ip.js';
import { stripExtension } from '../util/address.js';

export interface SourceEntry {
  readonly key: string;
  readonly value: string;
  /** Where it came from, for messages: `/etc/postwarden/block:12` or `inline entry 3`. */
  readonly where: string;
}

export type IpOrder = 'longest-prefix' | 'first-match';

export interface MatcherOptions {
  /** Characters that start an address extension (Postfix's recipient_delimiter); '' turns stripping off. */
  readonly recipientDelimiter: string;
  readonly ipOrder: IpOrder;
  /** Only IP addresses and networks may be keys (`cidr:` tables). */
  readonly ipOnly: boolean;
  readonly maxQueryLength: number;
}

export type ParsedKey =
  | { readonly kind: 'null'; readonly display: string }
  | { readonly kind: 'network'; readonly network: IpNetwork; readonly display: string }
  | {
      readonly kind: 'address' | 'localpart' | 'domain' | 'subdomains';
      readonly name: string;
      readonly display: string;
    }
  | { readonly kind: 'invalid'; readonly problem: string };

interface Entry {
  readonly key: string;
  readonly value: string;
  readonly order: number;
  readonly where: string;
}

const LABEL = '[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?';
const DOMAIN = new RegExp(`^(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*$`);
const LOCALPART = /^[^\s@\p{Cc}]{1,256}$/u;
const NET_SHORTHAND = /^\d{1,3}(?:\.\d{1,3}){0,2}$/;

function shown(text: string): string {
  return `'${text.length > 80 ? `${text.slice(0, 80)}…` : text}'`;
}

function parseDomain(text: string): string | undefined {
  const name = text.toLowerCase().replace(/\.$/, '');
  return DOMAIN.test(name) ? name : undefined;
}

/** Postfix access(5)'s `net.work.addr` forms: `10` = 10.0.0.0/8, `192.168` = /16, `192.168.1` = /24. */
function parseShorthand(text: string): IpNetwork | undefined {
  if (!NET_SHORTHAND.test(text)) return undefined;
  const octets = text.split('.');
  const padded = [...octets, '0', '0', '0'].slice(0, 4).join('.');
  return parseCidr(`${padded}/${octets.length * 8}`);
}

function parseNetworkKey(text: string): ParsedKey | undefined {
  const ip = parseIp(text);
  if (ip) {
    const network = parseCidr(`${ip.text}/${ip.family === 4 ? 32 : 128}`);
    return network && { kind: 'network', network, display: ip.text };
  }
  if (!text.includes('/')) return undefined;
  const network = parseCidr(text);
  if (!network) return { kind: 'invalid', problem: `${shown(text)} is not a CIDR network` };
  if (network.hostBitsSet) {
    return {
      kind: 'invalid',
      problem: `${shown(text)} has host bits set; write the network, ${network.text}`,
    };
  }
  return { kind: 'network', network, display: network.text };
}

/** Classifies one key. `ipOnly` restricts keys to addresses and networks (`cidr:` tables). */
export function parseKey(text: string, ipOnly = false): ParsedKey {
  const network = parseNetworkKey(text);
  if (network) return network;
  if (ipOnly) return { kind: 'invalid', problem: `${shown(text)} is not an IP address or CIDR network` };
  if (text === '<>') return { kind: 'null', display: '<>' };
  const shorthand = parseShorthand(text);
  if (shorthand) return { kind: 'network', network: shorthand, display: shorthand.text };
  const at = text.lastIndexOf('@');
  if (at >= 0) {
    const local = text.slice(0, at).toLowerCase();
    const domainPart = text.slice(at + 1);
    if (local === '') {
      return {
        kind: 'invalid',
        problem: `${shown(text)} has no local part; write ${domainPart || 'the domain'} to match the whole domain`,
      };
    }
    if (!LOCALPART.test(local)) {
      return { kind: 'invalid', problem: `${shown(text)} is not a valid local part` };
    }
    if (domainPart === '') return { kind: 'localpart', name: local, display: `${local}@` };
    const domain = parseDomain(domainPart);
    if (!domain) return { kind: 'invalid', problem: `${shown(text)} does not end in a valid domain` };
    return { kind: 'address', name: `${local}@${domain}`, display: `${local}@${domain}` };
  }
  const subdomains = text.startsWith('.');
  const domain = parseDomain(subdomains ? text.slice(1) : text);
  if (domain) {
    return subdomains
      ? { kind: 'subdomains', name: domain, display: `.${domain}` }
      : { kind: 'domain', name: domain, display: domain };
  }
  const fix = /[\u0080-\u{10ffff}]/u.test(text)
    ? '; write an international domain in its xn-- (ASCII) form'
    : '';
  return {
    kind: 'invalid',
    problem: `${shown(text)} is not an IP address, CIDR network, address (user@domain), local part (user@) or domain${fix}`,
  };
}

/** Networks of one family, grouped by prefix length so a lookup costs one probe per length in use. */
class NetworkIndex {
  private readonly byPrefix = new Map<number, Map<bigint, Entry>>();
  private prefixes: number[] = [];

  /** Returns the entry already holding this network, if any (the new one is then dropped). */
  add(network: IpNetwork, entry: Entry): Entry | undefined {
    let nets = this.byPrefix.get(network.prefix);
    if (!nets) {
      nets = new Map();
      this.byPrefix.set(network.prefix, nets);
      this.prefixes = [...this.byPrefix.keys()].sort((a, b) => b - a);
    }
    const existing = nets.get(network.base);
    if (existing) return existing;
    nets.set(network.base, entry);
    return undefined;
  }

  find(address: IpAddress, order: IpOrder): Entry | undefined {
    let best: Entry | undefined;
    for (const prefix of this.prefixes) {
      const hit = this.byPrefix.get(prefix)?.get(networkBase(address, prefix));
      if (!hit) continue;
      if (order === 'longest-prefix') return hit;
      if (!best || hit.order < best.order) best = hit;
    }
    return best;
  }
}

export class EntryMatcher {
  private readonly networks: Record<IpFamily, NetworkIndex> = {
    4: new NetworkIndex(),
    6: new NetworkIndex(),
  };
  private readonly addresses = new Map<string, Entry>();
  private readonly localparts = new Map<string, Entry>();
  private readonly domains = new Map<string, Entry>();
  private readonly subdomains = new Map<string, Entry>();
  private readonly raw = new Map<string, Entry>();
  private nullSender: Entry | undefined;
  private count = 0;

  constructor(private readonly options: MatcherOptions) {}

  /** Number of distinct entries. */
  get size(): number {
    return this.count;
  }

  /** Adds a parsed entry; returns the earlier entry with the same key if this one is a duplicate. */
  add(parsed: Exclude<ParsedKey, { kind: 'invalid' }>, source: SourceEntry): Entry | undefined {
    const entry: Entry = { key: parsed.display, value: source.value, order: this.count, where: source.where };
    let existing: Entry | undefined;
    switch (parsed.kind) {
      case 'null':
        existing = this.nullSender;
        this.nullSender ??= entry;
        break;
      case 'network':
        existing = this.networks[parsed.network.family].add(parsed.network, entry);
        break;
      default: {
        const map = {
          address: this.addresses,
          localpart: this.localparts,
          domain: this.domains,
          subdomains: this.subdomains,
        }[parsed.kind];
        existing = map.get(parsed.name);
        if (!existing) map.set(parsed.name, entry);
      }
    }
    if (existing) return existing;
    if (!this.raw.has(source.key)) this.raw.set(source.key, entry);
    this.count++;
    return undefined;
  }

  lookup(query: LookupQuery): LookupResult {
    // No length bound here: hashed lookups cost the same at any length, and an error on a long query would let
    // an overlong address turn a block list into on_error (a bypass under `dunno`). Regexp tables keep theirs.
    let entry: Entry | undefined;
    switch (query.kind) {
      case 'ip': {
        const address = parseIp(query.value);
        entry = address && this.networks[address.family].find(address, this.options.ipOrder);
        break;
      }
      case 'address':
        entry = this.lookupAddress(query.value);
        break;
      case 'domain':
      case 'hostname':
        entry = this.lookupDomain(query.value.toLowerCase().replace(/\.$/, ''));
        break;
      case 'text':
        entry = this.raw.get(query.value);
        break;
    }
    return entry ? { status: 'found', key: entry.key, value: entry.value } : NOT_FOUND;
  }

  private lookupDomain(name: string): Entry | undefined {
    if (name === '' || name.startsWith('[')) return undefined;
    const exact = this.domains.get(name);
    if (exact) return exact;
    for (let dot = name.indexOf('.'); dot >= 0; dot = name.indexOf('.', dot + 1)) {
      const parent = name.slice(dot + 1);
      if (parent === '') break;
      const hit = this.domains.get(parent) ?? this.subdomains.get(parent);
      if (hit) return hit;
    }
    return undefined;
  }

  private baseLocal(local: string): string {
    return stripExtension(local, this.options.recipientDelimiter);
  }

  private lookupAddress(value: string): Entry | undefined {
    if (value === '' || value === '<>') return this.nullSender;
    const address = value.toLowerCase();
    const at = address.lastIndexOf('@');
    const local = at < 0 ? address : address.slice(0, at);
    const base = this.baseLocal(local);
    if (at >= 0) {
      const domain = address.slice(at + 1).replace(/\.$/, '');
      const hit =
        this.addresses.get(`${local}@${domain}`) ??
        (base !== local ? this.addresses.get(`${base}@${domain}`) : undefined) ??
        this.lookupDomain(domain);
      if (hit) return hit;
    }
    if (local === '') return undefined;
    return this.localparts.get(local) ?? (base !== local ? this.localparts.get(base) : undefined);
  }
}

export type CompileResult =
  | { readonly ok: true; readonly matcher: EntryMatcher; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly reason: string };

/** Compiles entries into a matcher, or names the first bad entry (and how many more there are). */
export function compileEntries(entries: readonly SourceEntry[], options: MatcherOptions): CompileResult {
  const matcher = new EntryMatcher(options);
  const warnings: string[] = [];
  let problem: string | undefined;
  let bad = 0;
  for (const source of entries) {
    const parsed = parseKey(source.key, options.ipOnly);
    if (parsed.kind === 'invalid') {
      problem ??= `${source.where}: ${parsed.problem}`;
      bad++;
      continue;
    }
    const first = matcher.add(parsed, source);
    if (first) {
      warnings.push(`${source.where}: duplicate key ${shown(source.key)} ignored; ${first.where} wins`);
    }
  }
  if (problem !== undefined) {
    return { ok: false, reason: bad > 1 ? `${problem} (and ${bad - 1} more bad entries)` : problem };
  }
  return { ok: true, matcher, warnings };
}
