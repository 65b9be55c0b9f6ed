/**
 * Greylisting state, as the admin sees it: list, delete and allow, on the configured Store. The CLI
 * (`postwarden greylist`) and the admin API (`/api/v1/greylist`) both call these functions; input checks
 * (parseNetwork, parseFilter, parseTriplet, checkAllow) throw GreylistInputError, which the CLI turns into exit 64
 * and the API into 400.
 *
 * Keys (src/core/checks/greylist.ts): `grey:<network>|<sender>|<recipient>` holding `W<first seen ms>` (waiting)
 * or `P<first seen ms>` (passed); `awl:<network>` the pass count; `awlh:<network>` the hourly marker. A network
 * is what the check makes of a client address: its /24 (ipv4_prefix) or /64 (ipv6_prefix), e.g.
 * `198.51.100.0/24`. A network argument is an address (meaning the network it falls in) or a CIDR of that size;
 * listing and deleting also take a wider CIDR (every network inside it). Senders are compared after the check's
 * normalisation (lower case, extension, BATV, SRS, digit runs), recipients in lower case.
 *
 * Bounds: the store scans at most MAX_SCAN_LIMIT (10000) entries at once and has no cursor. A listing says when
 * it was cut by its limit, or when a filter other than one exact network could search only the first 10000
 * entries; deleting by one exact network repeats until nothing is left, by other filters it repeats while it
 * still finds matches, and says when entries beyond the scan may remain.
 *
 * Failure behaviour: a store that cannot answer rejects with StoreUnavailable (PW-S001).
 */
import {
  clientNetwork,
  awlHourKey,
  awlKey,
  GREYLIST_KEY_PREFIX,
  normalizeSender,
  readTripletValue,
  splitTripletKey,
  tripletKey,
  type GreylistSettings,
} from '../core/checks/greylist.js';
import { MAX_SCAN_LIMIT, parseCounter, type Store, type StoreEntry } from '../core/store.js';
import { cidrContains, parseCidr, parseIp, type IpNetwork } from '../util/ip.js';

const GREY = GREYLIST_KEY_PREFIX.triplet;
const AWL = GREYLIST_KEY_PREFIX.awl;
/** Rounds of scan-and-delete at most (each up to MAX_SCAN_LIMIT entries): ends a delete racing new traffic. */
const MAX_DELETE_ROUNDS = 1000;

/** What the operations need from the config. */
export interface GreylistAdminSettings {
  readonly greylist: Pick<GreylistSettings, 'ipv4_prefix' | 'ipv6_prefix' | 'awl_after' | 'max_age_s'>;
  readonly recipientDelimiter: string;
}

/** Input the operations refuse (a network that is not one, a filter that names nothing): exit 64, HTTP 400. */
export class GreylistInputError extends Error {}

/** One greylist network (`exact`, a store key part) or every network inside a wider CIDR (`within`). */
export type NetworkMatch =
  | { readonly kind: 'exact'; readonly network: string }
  | { readonly kind: 'within'; readonly cidr: IpNetwork };

export interface GreylistFilter {
  readonly network?: NetworkMatch;
  /** Normalised senders to match (the text as given and as the check normalises it). */
  readonly senders?: ReadonlySet<string>;
  readonly recipient?: string;
}

export type TripletState = 'waiting' | 'passed' | 'invalid';

export interface TripletInfo {
  readonly network: string;
  readonly sender: string;
  readonly recipient: string;
  readonly state: TripletState;
  /** ms since the epoch; absent when the stored value is unreadable. */
  readonly firstSeen?: number;
  /** ms since the epoch; absent when the entry never expires. */
  readonly expiresAt?: number;
}

export interface AwlInfo {
  readonly network: string;
  readonly passes: number;
  /** passes ≥ awl_after (and awl_after > 0): the network skips greylisting. */
  readonly whitelisted: boolean;
  readonly expiresAt?: number;
}

/**
 * Why a listing is incomplete: `limit` — more matched than the limit; `scan` — the store's scan limit was
 * reached before every entry was searched, so more may match.
 */
export type Cut = 'limit' | 'scan' | undefined;

export interface Listing<T> {
  readonly items: T[];
  readonly cut: Cut;
}

export interface Removal {
  readonly removed: number;
  /** Entries beyond the store's scan limit were not searched: more may match. */
  readonly incomplete: boolean;
}

function sizeOf(family: 4 | 6, settings: GreylistAdminSettings): number {
  return family === 4 ? settings.greylist.ipv4_prefix : settings.greylist.ipv6_prefix;
}

/**
 * A network as the greylist check keys it. An address means the network it falls in; a CIDR must have the
 * check's size (/24, /64 by default; host bits are ignored), or, with `wider`, may be wider (every network
 * inside). Anything else is a GreylistInputError saying what to give instead.
 */
export function parseNetwork(text: string, settings: GreylistAdminSettings, wider: boolean): NetworkMatch {
  const given = text.trim();
  if (!given.includes('/')) {
    const ip = parseIp(given);
    if (!ip) throw new GreylistInputError(`not an IP address or network: '${text}'`);
    const network = clientNetwork(ip.text, settings.greylist.ipv4_prefix, settings.greylist.ipv6_prefix);
    return { kind: 'exact', network };
  }
  const cidr = parseCidr(given);
  if (!cidr) throw new GreylistInputError(`not an IP network: '${text}'; use e.g. 198.51.100.0/24`);
  const size = sizeOf(cidr.family, settings);
  const family = cidr.family === 4 ? 'IPv4' : 'IPv6';
  const sizeKey = cidr.family === 4 ? 'ipv4_prefix' : 'ipv6_prefix';
  if (cidr.prefix === size) {
    const base = cidr.text.slice(0, cidr.text.lastIndexOf('/'));
    return {
      kind: 'exact',
      network: clientNetwork(base, settings.greylist.ipv4_prefix, settings.greylist.ipv6_prefix),
    };
  }
  if (cidr.prefix > size) {
    throw new GreylistInputError(
      `'${text}' is narrower than the /${size} networks greylisting groups ${family} clients by ` +
        `(policy.greylist.${sizeKey}); give an address or a /${size} network`,
    );
  }
  if (!wider) {
    throw new GreylistInputError(
      `'${text}' is wider than one greylisting network (/${size} for ${family}, policy.greylist.${sizeKey}); ` +
        `give an address or a /${size} network`,
    );
  }
  return { kind: 'within', cidr };
}

/** The senders a `--sender` value stands for: as given (lower-cased) and as the check normalises it. */
function senderForms(sender: string, settings: GreylistAdminSettings): Set<string> {
  const given = sender.trim();
  if (given === '' || given === '<>') return new Set(['<>']);
  return new Set([given.toLowerCase(), normalizeSender(given, settings.recipientDelimiter)]);
}

/** A filter from admin input; GreylistInputError for a bad network. */
export function parseFilter(
  input: { readonly network?: string; readonly sender?: string; readonly recipient?: string },
  settings: GreylistAdminSettings,
): GreylistFilter {
  return {
    ...(input.network !== undefined ? { network: parseNetwork(input.network, settings, true) } : {}),
    ...(input.sender !== undefined ? { senders: senderForms(input.sender, settings) } : {}),
    ...(input.recipient !== undefined ? { recipient: input.recipient.trim().toLowerCase() } : {}),
  };
}

/**
 * The store keys of `net|sender|rcpt` (as `list` prints it): the network normalised like `--network`, the
 * sender as given and as normalised (one or two keys). GreylistInputError when it is not three parts.
 */
export function parseTriplet(text: string, settings: GreylistAdminSettings): string[] {
  const first = text.indexOf('|');
  const last = text.lastIndexOf('|');
  if (first < 0 || first === last) {
    throw new GreylistInputError(`not a triplet: '${text}'; use "NETWORK|SENDER|RECIPIENT"`);
  }
  const recipient = text.slice(last + 1).trim();
  if (recipient === '') throw new GreylistInputError(`no recipient in triplet '${text}'`);
  const network = parseNetwork(text.slice(0, first), settings, false);
  if (network.kind !== 'exact') throw new GreylistInputError(`not one network in triplet '${text}'`);
  const senders = senderForms(text.slice(first + 1, last), settings);
  return [...senders].map((sender) => tripletKey(network.network, sender, recipient));
}

/** A stored triplet as the admin sees it (the key scheme lives with the check). */
export function tripletOf(entry: StoreEntry): TripletInfo | undefined {
  const parts = splitTripletKey(entry.key);
  if (!parts) return undefined;
  const value = readTripletValue(entry.value);
  return {
    ...parts,
    state: value ? (value.passed ? 'passed' : 'waiting') : 'invalid',
    ...(value ? { firstSeen: value.firstSeen } : {}),
    ...(entry.expiresAt !== undefined ? { expiresAt: entry.expiresAt } : {}),
  };
}

function networkMatches(network: string, match: NetworkMatch | undefined): boolean {
  if (!match) return true;
  if (match.kind === 'exact') return network === match.network;
  const parsed = parseCidr(network);
  if (!parsed || parsed.family !== match.cidr.family || parsed.prefix < match.cidr.prefix) return false;
  const base = parseIp(parsed.text.slice(0, parsed.text.lastIndexOf('/')));
  return base !== undefined && cidrContains(match.cidr, base);
}

function tripletMatches(triplet: TripletInfo, filter: GreylistFilter): boolean {
  return (
    networkMatches(triplet.network, filter.network) &&
    (filter.senders === undefined || filter.senders.has(triplet.sender)) &&
    (filter.recipient === undefined || triplet.recipient === filter.recipient)
  );
}

/** True when only a prefix scan is needed: no filter, or one exact network alone. */
function prefixOnly(filter: GreylistFilter): boolean {
  return (
    (filter.network === undefined || filter.network.kind === 'exact') &&
    filter.senders === undefined &&
    filter.recipient === undefined
  );
}

function greyPrefix(filter: GreylistFilter): string {
  return filter.network?.kind === 'exact' ? `${GREY}${filter.network.network}|` : GREY;
}

function checkLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SCAN_LIMIT) {
    throw new GreylistInputError(`the limit must be a whole number from 1 to ${MAX_SCAN_LIMIT}: ${limit}`);
  }
}

/** Lists up to `limit` entries under `prefix` that `pick` keeps, and why the listing is incomplete if it is. */
async function listUnder<T>(
  store: Store,
  prefix: string,
  limit: number,
  filtered: boolean,
  pick: (entry: StoreEntry) => T | undefined,
): Promise<Listing<T>> {
  checkLimit(limit);
  // Unfiltered, one entry more than the limit tells whether there are more; filtered, search all we may.
  const scanLimit = filtered ? MAX_SCAN_LIMIT : Math.min(limit + 1, MAX_SCAN_LIMIT);
  const entries = await store.scan(prefix, scanLimit);
  const matched: T[] = [];
  for (const entry of entries) {
    const item = pick(entry);
    if (item !== undefined) matched.push(item);
  }
  const cut: Cut =
    matched.length > limit
      ? 'limit'
      : entries.length >= scanLimit && scanLimit === MAX_SCAN_LIMIT
        ? 'scan'
        : undefined;
  return { items: matched.slice(0, limit), cut };
}

/** The triplets matching `filter`, sorted by key, at most `limit` (1 to MAX_SCAN_LIMIT). */
export function listGreylist(
  store: Store,
  filter: GreylistFilter,
  limit: number,
): Promise<Listing<TripletInfo>> {
  return listUnder(store, greyPrefix(filter), limit, !prefixOnly(filter), (entry) => {
    const triplet = tripletOf(entry);
    return triplet && tripletMatches(triplet, filter) ? triplet : undefined;
  });
}

function awlOf(entry: StoreEntry, settings: GreylistAdminSettings): AwlInfo {
  const passes = parseCounter(entry.value) ?? 0;
  const awlAfter = settings.greylist.awl_after;
  return {
    network: entry.key.slice(AWL.length),
    passes,
    whitelisted: awlAfter > 0 && passes >= awlAfter,
    ...(entry.expiresAt !== undefined ? { expiresAt: entry.expiresAt } : {}),
  };
}

/** The auto-whitelist entries (networks counting passes, and those whitelisted), optionally of some networks. */
export async function listAwl(
  store: Store,
  network: NetworkMatch | undefined,
  limit: number,
  settings: GreylistAdminSettings,
): Promise<Listing<AwlInfo>> {
  if (network?.kind === 'exact') {
    checkLimit(limit);
    const entry = await store.getEntry(awlKey(network.network));
    return { items: entry ? [awlOf(entry, settings)] : [], cut: undefined };
  }
  return listUnder(store, AWL, limit, network !== undefined, (entry) => {
    const awl = awlOf(entry, settings);
    return networkMatches(awl.network, network) ? awl : undefined;
  });
}

/**
 * Removes the matching triplets. One exact network alone is removed completely (scan, delete, again); other
 * filters search the first MAX_SCAN_LIMIT triplets, again after each round that removed something.
 */
export async function deleteGreylist(store: Store, filter: GreylistFilter): Promise<Removal> {
  if (filter.network === undefined && filter.senders === undefined && filter.recipient === undefined) {
    throw new GreylistInputError('name what to delete: a network, a sender, a recipient or a triplet');
  }
  return deleteUnder(store, greyPrefix(filter), (entry) => {
    const triplet = tripletOf(entry);
    return triplet !== undefined && tripletMatches(triplet, filter);
  });
}

/** Removes the given triplet keys (from parseTriplet). */
export async function deleteTriplets(store: Store, keys: readonly string[]): Promise<Removal> {
  let removed = 0;
  for (const key of keys) if (await store.delete(key)) removed++;
  return { removed, incomplete: false };
}

async function deleteUnder(
  store: Store,
  prefix: string,
  matches: (entry: StoreEntry) => boolean,
  also?: (entry: StoreEntry) => Promise<void>,
): Promise<Removal> {
  let removed = 0;
  for (let round = 0; round < MAX_DELETE_ROUNDS; round++) {
    const entries = await store.scan(prefix, MAX_SCAN_LIMIT);
    let found = 0;
    for (const entry of entries) {
      if (!matches(entry)) continue;
      found++;
      if (await store.delete(entry.key)) removed++;
      await also?.(entry);
    }
    if (entries.length < MAX_SCAN_LIMIT) return { removed, incomplete: false };
    if (found === 0) return { removed, incomplete: true };
  }
  return { removed, incomplete: true };
}

/** Removes the auto-whitelist entries (and hourly markers) of a network, or of every network inside a CIDR. */
export async function deleteAwl(store: Store, network: NetworkMatch): Promise<Removal> {
  if (network.kind === 'exact') {
    const removed = (await store.delete(awlKey(network.network))) ? 1 : 0;
    await store.delete(awlHourKey(network.network));
    return { removed, incomplete: false };
  }
  return deleteUnder(
    store,
    AWL,
    (entry) => networkMatches(entry.key.slice(AWL.length), network),
    async (entry) => {
      await store.delete(awlHourKey(entry.key.slice(AWL.length)));
    },
  );
}

/** The network `allow` would whitelist; GreylistInputError when it is not one network or the AWL is off. */
export function checkAllow(text: string, settings: GreylistAdminSettings): string {
  if (settings.greylist.awl_after === 0) {
    throw new GreylistInputError(
      'the auto-whitelist is off (policy.greylist.awl_after: 0), so an allowed network would still be ' +
        'greylisted; set awl_after above 0, or put the network on policy.greylist.allow instead',
    );
  }
  const match = parseNetwork(text, settings, false);
  if (match.kind !== 'exact') throw new GreylistInputError(`not one network: '${text}'`);
  return match.network;
}

/**
 * Puts a network on the auto-whitelist now: its pass count becomes awl_after (a higher count is kept), for
 * max_age_s, as if it had passed that often. Mail from it then skips greylisting (GREYLIST_AWL).
 */
export async function allowNetwork(
  store: Store,
  text: string,
  settings: GreylistAdminSettings,
): Promise<AwlInfo> {
  const network = checkAllow(text, settings);
  const key = awlKey(network);
  const current = await store.get(key);
  const passes = Math.max(parseCounter(current ?? '') ?? 0, settings.greylist.awl_after);
  await store.set(key, String(passes), settings.greylist.max_age_s);
  const entry = await store.getEntry(key);
  return awlOf(entry ?? { key, value: String(passes) }, settings);
}
