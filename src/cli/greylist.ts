/**
 * `postwarden greylist list|delete|allow` — inspect and edit the greylisting state in the configured store:
 *
 *   list   [--network CIDR] [--sender ADDR] [--recipient ADDR] [--awl] [--limit N] [--json]
 *   delete (--network CIDR | --sender ADDR | --recipient ADDR | --triplet "net|sender|rcpt") [--awl]
 *   allow  --network CIDR
 *
 * The operations are plain functions on a Store (listGreylist, listAwl, deleteGreylist, deleteAwl,
 * allowNetwork), with their input checks (parseNetwork, parseFilter, parseTriplet, checkAllow), so the HTTP API
 * can reuse them; the argv handling sits on top.
 *
 * Keys (src/core/checks/greylist.ts): `grey:<network>|<sender>|<recipient>` holding `W<first seen ms>` (waiting)
 * or `P<first seen ms>` (passed); `awl:<network>` the pass count; `awlh:<network>` the hourly marker. A network
 * is what the check makes of a client address: its /24 (ipv4_prefix) or /64 (ipv6_prefix), e.g.
 * `198.51.100.0/24`. On the command line a network is an address (meaning the network it falls in) or a CIDR of
 * that size; `list` and `delete` also take a wider CIDR (every network inside it). Senders are compared after
 * the check's normalisation (lower case, extension, BATV, SRS, digit runs), recipients in lower case.
 *
 * Bounds: the store scans at most MAX_SCAN_LIMIT (10000) entries at once and has no cursor. `list` says when its
 * output was cut by --limit, or when a filter other than one exact network could search only the first 10000
 * entries; `delete` by one exact network repeats until nothing is left, by other filters it repeats while it
 * still finds matches, and says when entries beyond the scan may remain.
 *
 * Exit codes: 0 done (also when nothing matched: "0 removed"), 64 bad usage (unknown option, a network that is
 * not one, `allow` with `awl_after: 0`), 69 the store is unavailable (PW-S001), 78 config problems.
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
import {
  MAX_SCAN_LIMIT,
  parseCounter,
  StoreUnavailable,
  type Store,
  type StoreEntry,
} from '../core/store.js';
import { openStore, StoreOptionsError } from '../store/index.js';
import { cidrContains, parseCidr, parseIp, type IpNetwork } from '../util/ip.js';
import { EXIT } from '../util/sysexits.js';
import { parse, UsageError } from './args.js';
import { loadOrReport, storeOptions, type Loaded } from './common.js';
import { print } from './render.js';

export const GREYLIST_USAGE = `usage: postwarden greylist <action> [--config FILE] [options]

  list   [--network CIDR] [--sender ADDR] [--recipient ADDR] [--limit N] [--json]
                            triplets: network, sender, recipient, state, first seen, expiry
  list   --awl [--network CIDR] [--limit N] [--json]
                            auto-whitelist entries: network, passes, whitelisted, expiry
  delete --network CIDR | --sender ADDR | --recipient ADDR | --triplet "NET|SENDER|RCPT"
                            remove matching triplets; prints how many
  delete --awl --network CIDR
                            remove a network's auto-whitelist entry
  allow  --network CIDR     auto-whitelist a network now (awl_after passes, for max_age_s)

  CIDR is a client address (its /24 or /64, as greylisting groups clients) or such a network;
  list and delete also take a wider one. Filters given together must all match.
  --limit: 1 to ${MAX_SCAN_LIMIT} (default 1000).
`;

const DEFAULT_LIMIT = 1000;
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

// ---------------------------------------------------------------------------------------------------------
// The command line

function settingsOf(loaded: Loaded): GreylistAdminSettings {
  return { greylist: loaded.config.policy.greylist, recipientDelimiter: loaded.config.recipient_delimiter };
}

/** Input errors become usage errors (exit 64) with the message as given. */
function usage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof GreylistInputError) throw new UsageError(error.message);
    throw error;
  }
}

/** Opens the configured store, runs `fn`, closes it: 69 when the store is unavailable, 78 on bad options. */
async function withStore(loaded: Loaded, fn: (store: Store) => Promise<number>): Promise<number> {
  let store: Store;
  try {
    store = await openStore(storeOptions(loaded.config, loaded.baseDir));
  } catch (error) {
    if (!(error instanceof StoreOptionsError)) throw error;
    process.stderr.write(`postwarden greylist: ${error.message}\n`);
    return EXIT.CONFIG;
  }
  try {
    return await fn(store);
  } catch (error) {
    if (!(error instanceof StoreUnavailable)) throw error;
    process.stderr.write(`postwarden greylist: ${error.message} (${error.code})\n`);
    return EXIT.UNAVAILABLE;
  } finally {
    await store.close();
  }
}

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

function reportCut(cut: Cut, limit: number, what: string): void {
  if (cut === 'limit') {
    process.stderr.write(
      `postwarden greylist: output cut at ${limit} ${what} (--limit); narrow the filter or raise --limit (at most ${MAX_SCAN_LIMIT})\n`,
    );
  } else if (cut === 'scan') {
    process.stderr.write(
      `postwarden greylist: searched only the first ${MAX_SCAN_LIMIT} ${what} in the store; more may match\n`,
    );
  }
}

function parseLimit(text: string): number {
  if (!/^\d{1,6}$/.test(text) || Number(text) < 1 || Number(text) > MAX_SCAN_LIMIT) {
    throw new UsageError(`--limit takes a number from 1 to ${MAX_SCAN_LIMIT}: '${text}'`);
  }
  return Number(text);
}

async function list(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string' },
    network: { type: 'string' },
    sender: { type: 'string' },
    recipient: { type: 'string' },
    awl: { type: 'boolean', default: false },
    limit: { type: 'string', default: String(DEFAULT_LIMIT) },
    json: { type: 'boolean', default: false },
  });
  const limit = parseLimit(values.limit);
  if (values.awl && (values.sender !== undefined || values.recipient !== undefined)) {
    throw new UsageError('--awl lists networks: filter it with --network only');
  }
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  const settings = settingsOf(loaded);
  const filter = usage(() =>
    parseFilter(
      {
        ...(values.network !== undefined ? { network: values.network } : {}),
        ...(values.sender !== undefined ? { sender: values.sender } : {}),
        ...(values.recipient !== undefined ? { recipient: values.recipient } : {}),
      },
      settings,
    ),
  );
  return withStore(loaded, async (store) => {
    if (values.awl) {
      const { items, cut } = await listAwl(store, filter.network, limit, settings);
      const rows = items.map((a) => ({
        network: a.network,
        passes: a.passes,
        whitelisted: a.whitelisted,
        expires: iso(a.expiresAt),
      }));
      print(rows, values.json, 'no auto-whitelist entries');
      reportCut(cut, limit, 'networks');
      return EXIT.OK;
    }
    const { items, cut } = await listGreylist(store, filter, limit);
    const rows = items.map((t) => ({
      network: t.network,
      sender: t.sender,
      recipient: t.recipient,
      state: t.state,
      first_seen: iso(t.firstSeen),
      expires: iso(t.expiresAt),
    }));
    print(rows, values.json, 'no triplets');
    reportCut(cut, limit, 'triplets');
    return EXIT.OK;
  });
}

async function remove(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string' },
    network: { type: 'string' },
    sender: { type: 'string' },
    recipient: { type: 'string' },
    triplet: { type: 'string' },
    awl: { type: 'boolean', default: false },
  });
  const { network, sender, recipient, triplet } = values;
  if (triplet !== undefined && (network !== undefined || sender !== undefined || recipient !== undefined)) {
    throw new UsageError('--triplet names one triplet: give it alone');
  }
  if (values.awl && (triplet !== undefined || sender !== undefined || recipient !== undefined)) {
    throw new UsageError('--awl removes networks: give --network only');
  }
  if (values.awl && network === undefined)
    throw new UsageError('--awl removes a network: give --network CIDR');
  if (network === undefined && sender === undefined && recipient === undefined && triplet === undefined) {
    throw new UsageError('name what to delete: --network, --sender, --recipient or --triplet');
  }
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  const settings = settingsOf(loaded);
  let run: (store: Store) => Promise<Removal>;
  if (triplet !== undefined) {
    const keys = usage(() => parseTriplet(triplet, settings));
    run = (store) => deleteTriplets(store, keys);
  } else if (values.awl) {
    const match = usage(() => parseNetwork(network ?? '', settings, true));
    run = (store) => deleteAwl(store, match);
  } else {
    const filter = usage(() =>
      parseFilter(
        {
          ...(network !== undefined ? { network } : {}),
          ...(sender !== undefined ? { sender } : {}),
          ...(recipient !== undefined ? { recipient } : {}),
        },
        settings,
      ),
    );
    run = (store) => deleteGreylist(store, filter);
  }
  return withStore(loaded, async (store) => {
    const { removed, incomplete } = await run(store);
    process.stdout.write(`${removed} removed\n`);
    if (incomplete) {
      process.stderr.write(
        `postwarden greylist: searched only the first ${MAX_SCAN_LIMIT} entries in the store; more may match (run it again, or narrow it by --network)\n`,
      );
    }
    return EXIT.OK;
  });
}

async function allow(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' }, network: { type: 'string' } });
  if (values.network === undefined) throw new UsageError('name the network: --network CIDR');
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  const settings = settingsOf(loaded);
  const text = values.network;
  usage(() => checkAllow(text, settings));
  return withStore(loaded, async (store) => {
    const done = await allowNetwork(store, text, settings);
    process.stdout.write(
      `${done.network} auto-whitelisted (${done.passes} passes) until ${iso(done.expiresAt) ?? 'forever'}\n`,
    );
    return EXIT.OK;
  });
}

export async function greylist(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  switch (action) {
    case 'list':
      return list(rest);
    case 'delete':
      return remove(rest);
    case 'allow':
      return allow(rest);
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(GREYLIST_USAGE);
      return EXIT.OK;
    default: {
      const problem =
        action === undefined ? 'name an action: list, delete or allow' : `unknown action '${action}'`;
      process.stderr.write(`postwarden greylist: ${problem}\n\n${GREYLIST_USAGE}`);
      return EXIT.USAGE;
    }
  }
}
