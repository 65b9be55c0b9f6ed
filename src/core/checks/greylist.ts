/**
 * greylist — triplet greylisting (client network, normalised sender, recipient) on the state port, so every MX
 * host sharing a store agrees.
 *
 *   first sight                      DEFER_IF_PERMIT 4.7.1 "Greylisted, try again in N seconds"  GREYLIST_NEW
 *   retry before delay_s             the same, with the seconds left                              GREYLIST_TOO_EARLY
 *   retry after delay_s, in window   pass; the triplet is kept for max_age_s                      GREYLIST_PASSED
 *   a triplet that passed before     pass; its max_age_s starts again (at most once a day)         GREYLIST_KNOWN
 *   network auto-whitelisted         pass (awl_after passes, one counted per network per hour)    GREYLIST_AWL
 *
 * It spares what should not wait, each with its own symbol (counted in metrics, named in the decision log):
 * trusted clients (local_networks, SASL) are not greylisted at all; an `allow` map entry for the client, the
 * sender or the recipient, or a big sender's verified client name (GREYLIST_BYPASS_ALLOW); a verdict of an
 * earlier check named in `bypass_symbols`, e.g. SPF_PASS (GREYLIST_BYPASS_SYMBOL: the hook the SPF and DNSWL
 * checks fill); a score of the earlier checks below `min_score` (GREYLIST_BYPASS_SCORE).
 *
 * Keys are readable (`grey:198.51.100.0/24|sender@x|rcpt@y`) for `greylist list`. A store that cannot answer
 * throws StoreUnavailable: the pipeline records a failure and `policy.on_error` decides (default: DUNNO).
 */
import { z } from 'zod';
import { stripExtension } from '../../util/address.js';
import { networkPrefix } from '../../util/ip.js';
import { LruMap } from '../../util/lru-map.js';
import { both, type Steps, steps, wait } from '../answer.js';
import { find, type Locality } from '../locality.js';
import type { PolicyCheck, PolicyContext } from '../pipeline.js';
import type { LookupQuery, LookupTable } from '../ports.js';
import { domainOf, localPartOf, type PolicyRequest } from '../request.js';
import { mapRefSchema, modeSchema, scoreSchema } from '../schema.js';
import { answerStore, type Store, type StoreEntry } from '../store.js';
import type { Verdict } from '../verdict.js';

export const greylistSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    delay_s: z.number().int().min(0).max(86_400).default(300).describe('How long a new triplet must wait'),
    retry_window_s: z
      .number()
      .int()
      .min(60)
      .max(30 * 86_400)
      .default(172_800)
      .describe('How long after first sight a retry may come and still pass'),
    max_age_s: z
      .number()
      .int()
      .min(3600)
      .max(366 * 86_400)
      .default(3_024_000)
      .describe('How long a passed triplet (and an auto-whitelisted network) is remembered without traffic'),
    awl_after: z
      .number()
      .int()
      .min(0)
      .max(1000)
      .default(5)
      .describe(
        'Passed deliveries (at most one counted per hour) after which a client network skips greylisting; 0 = never',
      ),
    ipv4_prefix: z.number().int().min(8).max(32).default(24).describe('IPv4 client network size (bits)'),
    ipv6_prefix: z.number().int().min(16).max(128).default(64).describe('IPv6 client network size (bits)'),
    allow: mapRefSchema
      .default([])
      .describe('Clients (IP, CIDR, host name), senders or recipients (address, domain) never greylisted'),
    only_recipients: mapRefSchema
      .default([])
      .describe(
        'When not empty, greylist only mail to these recipients or domains (scope per recipient domain)',
      ),
    min_score: scoreSchema
      .min(0)
      .default(0)
      .describe('Greylist only when the earlier checks scored at least this; 0 = always'),
    header: z.boolean().default(false).describe('Add an X-Greylist header (PREPEND) to mail that waited'),
    default_allow: z
      .boolean()
      .default(true)
      .describe(
        "Spare the big senders' outbound networks (built-in list, matched on Postfix's verified client name), as postgrey does",
      ),
    bypass_symbols: z
      .array(z.string().regex(/^[A-Z][A-Z0-9_]*$/, 'not a symbol; use upper-case names such as SPF_PASS'))
      .max(64)
      .default(['SPF_PASS', 'DNSWL_LOW', 'DNSWL_MEDIUM', 'DNSWL_HIGH'])
      .describe(
        'Symbols of earlier checks that spare a message from greylisting (the SPF and DNSWL checks emit these)',
      ),
  })
  .describe('Greylisting of first-time (client network, sender, recipient) triplets');

export type GreylistSettings = z.infer<typeof greylistSchema>;

const CHECK = 'greylist';
const DAY_MS = 86_400_000;

/**
 * The big senders' outbound host domains (`default_allow`): their mail comes from large pools that retry from
 * other addresses, so greylisting only delays it (field notes C1). Matched against Postfix's `client_name`,
 * which Postfix sets only when reverse and forward DNS agree, never against the forgeable sender.
 */
export const BIG_SENDER_CLIENT_DOMAINS: readonly string[] = [
  'google.com',
  'outlook.com',
  'protection.outlook.com',
  'protection.outlook.de',
  'hotmail.com',
  'yahoo.com',
  'yahoodns.net',
  'amazonses.com',
  'apple.com',
  'icloud.com',
  'facebook.com',
  'facebookmail.com',
  'linkedin.com',
  'mailgun.net',
  'mailgun.org',
  'sendgrid.net',
  'mcsv.net',
  'mandrillapp.com',
  'sparkpostmail.com',
  'mtasv.net',
  'messagingengine.com',
  'zoho.com',
  'zoho.eu',
  'gmx.net',
  'web.de',
  't-online.de',
  'orange.fr',
  'free.fr',
  'yandex.net',
  'mail.ru',
  'salesforce.com',
  'exacttarget.com',
  'github.net',
];
const HOUR_S = 3600;
/** Networks whose counted pass of this hour is remembered in memory (see countPass); a few KB each hundred. */
const MAX_COUNTED_NETWORKS = 10_000;
/** How soon to ask again about an hourly marker another instance set, whose expiry is unknown here. */
const FOREIGN_MARKER_RECHECK_MS = 60_000;

/**
 * The sender as greylisting sees it, so a sender's retries and its per-message variations meet one key:
 * lower-case; BATV `prvs=tag=` removed; SRS rewrites decoded to the original address; the address extension
 * stripped; digit runs in the local part (VERP, ticket numbers) made `#`, as postgrey does. `<>` for the null
 * sender.
 */
export function normalizeSender(sender: string, recipientDelimiter: string): string {
  if (sender === '') return '<>';
  let address = sender.toLowerCase().replace(/^(?:ms)?prvs\d?=[^=@]+=/, '');
  const srs0 = /^srs0=[^=]+=[^=]+=([^=@]+)=(.+)@[^@]+$/.exec(address);
  const srs1 = /^srs1=[^=]+=[^=@]+==[^=]+=[^=]+=([^=@]+)=(.+)@[^@]+$/.exec(address);
  const original = srs0 ?? srs1;
  if (original) address = `${original[2]}@${original[1]}`;
  const domain = domainOf(address);
  const local = stripExtension(localPartOf(address), recipientDelimiter).replace(/\b\d+\b/g, '#');
  return domain === '' ? local : `${local}@${domain}`;
}

/** The client network key: `198.51.100.0/24`, `2001:db8:1:2::/64`; the raw text when it is not an address. */
export function clientNetwork(address: string, ipv4Prefix: number, ipv6Prefix: number): string {
  return networkPrefix(address, ipv4Prefix, ipv6Prefix) ?? address.toLowerCase();
}

/**
 * The store keys greylisting keeps: the one place that knows them (the check, and the admin command that lists
 * and edits them). `grey:<network>|<sender>|<recipient>` a triplet, `awl:<network>` a network's counted passes,
 * `awlh:<network>` the marker that lets one pass per hour count.
 */
export const GREYLIST_KEY_PREFIX = { triplet: 'grey:', awl: 'awl:', awlHour: 'awlh:' } as const;

// A quoted local part may hold `|` (and so `%`): escaped, a key splits back into exactly three parts.
const escapePart = (part: string): string => part.replace(/[%|]/g, (c) => (c === '%' ? '%25' : '%7C'));
const unescapePart = (part: string): string =>
  part.replace(/%(25|7C)/g, (_m, code: string) => (code === '25' ? '%' : '|'));

export function tripletKey(network: string, sender: string, recipient: string): string {
  return `${GREYLIST_KEY_PREFIX.triplet}${network}|${escapePart(sender)}|${escapePart(recipient.toLowerCase())}`;
}

/** The parts of a triplet key; undefined for any other key. */
export function splitTripletKey(
  key: string,
): { network: string; sender: string; recipient: string } | undefined {
  if (!key.startsWith(GREYLIST_KEY_PREFIX.triplet)) return undefined;
  const parts = key.slice(GREYLIST_KEY_PREFIX.triplet.length).split('|');
  if (parts.length !== 3) return undefined;
  const [network = '', sender = '', recipient = ''] = parts;
  return { network, sender: unescapePart(sender), recipient: unescapePart(recipient) };
}

export const awlKey = (network: string): string => `${GREYLIST_KEY_PREFIX.awl}${network}`;
export const awlHourKey = (network: string): string => `${GREYLIST_KEY_PREFIX.awlHour}${network}`;

/** A stored triplet: `W<first seen ms>` while it waits, `P<first seen ms>` once it passed. */
export function readTripletValue(value: string): { passed: boolean; firstSeen: number } | undefined {
  if (value.length < 2) return undefined;
  const firstSeen = Number(value.slice(1));
  if (!Number.isFinite(firstSeen) || (value[0] !== 'W' && value[0] !== 'P')) return undefined;
  return { passed: value[0] === 'P', firstSeen };
}

export function createGreylistCheck(
  settings: Omit<GreylistSettings, 'mode' | 'allow' | 'default_allow' | 'only_recipients'>,
  locality: Locality,
  allow: readonly LookupTable[],
  /** `only_recipients`: when not empty, the recipients greylisting applies to. */
  onlyRecipients: readonly LookupTable[],
  /** The tables of `default_allow` (the big senders), asked about the verified client name only. */
  bigSenders: readonly LookupTable[],
  store: Store,
  recipientDelimiter: string,
  now: () => number = Date.now,
): PolicyCheck {
  // SQLite answers at once: a greylisting request then needs no turn of the event loop.
  const state = answerStore(store);
  // On a store that answers over the network (Redis), the triplet is read with the network's auto-whitelist
  // count: one round trip for a known sender instead of two. On one that answers at once (SQLite), that would
  // only add a read for every whitelisted network.
  const readTogether = store.immediate === undefined;
  const info = (symbol: string, reason: string, header?: string): Verdict[] => [
    {
      check: CHECK,
      symbol,
      score: 0,
      reason,
      ...(header !== undefined ? { action: 'prepend' as const, header } : {}),
    },
  ];
  const defer = (symbol: string, seconds: number, reason: string): Verdict[] => {
    const text =
      seconds > 0
        ? `Greylisted, please try again in ${seconds} second${seconds === 1 ? '' : 's'}`
        : 'Greylisted, please try again';
    return [
      {
        check: CHECK,
        symbol,
        score: 0,
        action: 'defer_if_permit',
        reason: `${reason}; ${text}`,
        reply: { code: 450, dsn: '4.7.1', text },
      },
    ];
  };

  function* allowedBy(request: PolicyRequest): Steps<string | undefined> {
    if (bigSenders.length > 0 && request.clientName !== '' && request.clientName !== 'unknown') {
      const result = yield* wait(find(bigSenders, { kind: 'hostname', value: request.clientName }));
      if (result.status === 'found') return `greylist.default_allow entry ${result.key}`;
    }
    if (allow.length === 0) return undefined;
    const queries: LookupQuery[] = [
      { kind: 'ip', value: request.clientAddress },
      { kind: 'hostname', value: request.clientName },
      { kind: 'address', value: request.sender },
      { kind: 'address', value: request.recipient },
    ];
    for (const query of queries) {
      if (query.value === '' || query.value === 'unknown') continue;
      const result = yield* wait(find(allow, query));
      if (result.status === 'found') return `greylist.allow entry ${result.key}`;
    }
    return undefined;
  }

  /**
   * Until when each network's pass of this hour is known to be counted: a known sender's every delivery would
   * otherwise try the hourly marker again (a write attempt on SQLite, a round trip on Redis) only to find it
   * there. A marker this instance set lives an hour; one another instance set is asked about again after
   * FOREIGN_MARKER_RECHECK_MS, so a count is late by a minute at most. `greylist delete` of a network's AWL on
   * another process is seen here when the remembered hour ends.
   */
  const countedUntil = new LruMap<string, number>(MAX_COUNTED_NETWORKS);

  /** One pass per network per hour counts towards the auto-whitelist (postgrey's rule); each counted pass
   * restarts the network's memory (`increment` alone keeps an existing expiry). */
  function* countPass(network: string): Steps<void> {
    if (settings.awl_after === 0) return;
    const at = now();
    if ((countedUntil.get(network) ?? 0) > at) return;
    const marked = yield* wait(state.setIfAbsent(awlHourKey(network), '1', HOUR_S));
    if (marked) {
      yield* wait(state.increment(awlKey(network), 1, settings.max_age_s));
      yield* wait(state.expire(awlKey(network), settings.max_age_s));
    }
    countedUntil.set(network, at + (marked ? HOUR_S * 1000 : FOREIGN_MARKER_RECHECK_MS));
  }

  return {
    name: CHECK,
    run: steps(function* (request: PolicyRequest, ctx: PolicyContext): Steps<Verdict[]> {
      if (request.protocolState !== 'RCPT' || request.recipient === '') return [];
      if (yield* wait(locality.isTrustedClient(request))) return [];
      if (onlyRecipients.length > 0) {
        const scoped = yield* wait(find(onlyRecipients, { kind: 'address', value: request.recipient }));
        if (scoped.status !== 'found') {
          return info('GREYLIST_OUT_OF_SCOPE', 'recipient not in greylist.only_recipients');
        }
      }
      const bypass = ctx.earlier.find(
        (v) => v.mode === 'enforce' && settings.bypass_symbols.includes(v.symbol),
      );
      if (bypass) return info('GREYLIST_BYPASS_SYMBOL', `${bypass.symbol} from ${bypass.check}`);
      const allowedKey = yield* allowedBy(request);
      if (allowedKey !== undefined) return info('GREYLIST_BYPASS_ALLOW', allowedKey);
      if (settings.min_score > 0 && ctx.score < settings.min_score) {
        return info(
          'GREYLIST_BYPASS_SCORE',
          `score ${ctx.score} below greylist.min_score ${settings.min_score}`,
        );
      }
      const network = clientNetwork(request.clientAddress, settings.ipv4_prefix, settings.ipv6_prefix);
      const sender = normalizeSender(request.sender, recipientDelimiter);
      const key = tripletKey(network, sender, request.recipient);
      const at = now();
      const firstSight = `W${at}`;
      let entry: StoreEntry | undefined;
      let tripletRead = false;
      if (settings.awl_after > 0) {
        const [awl, found] = yield* wait(
          both(state.getEntry(awlKey(network)), readTogether ? state.getEntry(key) : undefined),
        );
        const passes = Number(awl?.value ?? '0');
        if (awl && passes >= settings.awl_after) {
          // A network that keeps sending stays whitelisted: its memory restarts, at most once per half max_age_s.
          const left = awl.expiresAt === undefined ? Infinity : awl.expiresAt - at;
          if (left < (settings.max_age_s * 1000) / 2) yield* wait(state.expire(awl.key, settings.max_age_s));
          return info('GREYLIST_AWL', `network ${network} auto-whitelisted after ${passes} passes`);
        }
        entry = found;
        tripletRead = readTogether;
      }
      // First sight is recorded by one of several racing instances: in the same step as the read, or after it.
      if (!tripletRead) entry = yield* wait(state.getOrCreate(key, firstSight, settings.retry_window_s));
      else if (!entry) yield* wait(state.setIfAbsent(key, firstSight, settings.retry_window_s));
      const stored = entry?.value;
      const triplet = stored === undefined ? undefined : readTripletValue(stored);
      if (!triplet) {
        // An unreadable entry (a hand edit, an older format) is replaced: this is its first sight.
        if (stored !== undefined) yield* wait(state.set(key, firstSight, settings.retry_window_s));
        return defer(
          'GREYLIST_NEW',
          settings.delay_s,
          `new triplet ${network} ${sender} ${request.recipient}`,
        );
      }
      const waited = Math.floor((at - triplet.firstSeen) / 1000);
      if (triplet.passed) {
        // Its memory restarts at most once a day (or per half max_age_s, if shorter): a write on every hit would
        // cost every known sender a disk write (and SQLite's checkpoints on the request path).
        const maxAgeMs = settings.max_age_s * 1000;
        const left = entry?.expiresAt === undefined ? Infinity : entry.expiresAt - at;
        if (left < maxAgeMs - Math.min(DAY_MS, maxAgeMs / 2))
          yield* wait(state.expire(key, settings.max_age_s));
        yield* countPass(network);
        return info('GREYLIST_KNOWN', `triplet passed before (first seen ${waited} s ago)`);
      }
      if (waited < settings.delay_s) {
        const left = settings.delay_s - waited;
        return defer('GREYLIST_TOO_EARLY', left, `retry after ${waited} s of ${settings.delay_s}`);
      }
      yield* wait(state.set(key, `P${triplet.firstSeen}`, settings.max_age_s));
      yield* countPass(network);
      const header = settings.header
        ? `X-Greylist: delayed ${waited} seconds by postwarden; client ${request.clientAddress}`
        : undefined;
      return info('GREYLIST_PASSED', `retry after ${waited} s: passed`, header);
    }),
  };
}
