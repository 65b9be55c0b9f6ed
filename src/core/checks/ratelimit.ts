/**
 * ratelimit — messages and recipients per period, per client address, client network, sender, SASL user and
 * recipient domain, in token buckets on the state port (GCRA: one stored "theoretical arrival time" per bucket),
 * so every instance sharing a store counts the same mail once.
 *
 * Where mail is counted: at END-OF-MESSAGE, once per message (one message, `recipient_count` recipients; a
 * recipient domain counts the message's recipients in that domain). Before that the check only looks:
 *
 *   state            anonymous client (no SASL login)                       SASL user
 *   RCPT             452 4.5.3 for a recipient beyond the recipients left   —
 *   DATA             450 4.7.1 when the message would not fit (no body sent)  —
 *   END-OF-MESSAGE   counts; 450 4.7.1 when it does not fit (DEFER)          counts; HOLD when it does not fit
 *
 * Anonymous clients get DEFER (4xx, the pipeline stops at once): an over-limit client costs one store read, not
 * the DNS queries of the later checks, and waits for its next retry; it is asked at DATA, before it sends the body
 * (field notes C20: deferring late and often breeds retry storms). Authenticated users are never refused: a user
 * over a limit is most likely a stolen account (field notes C16), so the message goes to Postfix's hold queue, an
 * incident is opened (ratelimit-incidents.ts) and the admin is told once, and with `hold_until_reset` every later
 * message of that user is held too until an admin resets the user or the incident expires.
 *
 * Which keys count a request: client and client network for anonymous clients only (many users share an office
 * NAT address), the SASL user for authenticated ones, the sender (extension stripped, lower case; not `<>`) and
 * the recipient domains for both. Each key kind has a messages rate and a recipients rate ("N/PERIOD", '' = no
 * limit), and a map of per-key overrides whose value is `messages=R recipients=R` (a bare R is messages; `none`
 * lifts a limit). `exempt` lists clients, senders and users never counted.
 *
 * Atomicity: each bucket is read (one getMany for all of a message's buckets and the user's incident), and
 * written with compareAndSet; a writer that lost a race reads that bucket again and retries (at most
 * MAX_CAS_ATTEMPTS), so concurrent instances never both spend the last token. A message over a limit spends
 * nothing. Across kinds the writes are not one transaction: a message that loses a race on its second bucket
 * after its first was written is refused having spent that first one (at most one message per race).
 *
 * Failure behaviour: a store or map that cannot answer throws (StoreUnavailable, LookupFailed); an override
 * whose value is not a rate throws RateOverrideInvalid (PW-E004). The pipeline records the failure and
 * `policy.on_error` decides; nothing is counted as passed.
 */
import { z } from 'zod';
import { stripExtension } from '../../util/address.js';
import { networkPrefix } from '../../util/ip.js';
import { find } from '../locality.js';
import type { PolicyCheck, PolicyContext } from '../pipeline.js';
import type { LookupQuery, LookupTable } from '../ports.js';
import { domainOf, localPartOf, type PolicyRequest } from '../request.js';
import { mapRefSchema, modeSchema } from '../schema.js';
import type { Store } from '../store.js';
import type { Verdict } from '../verdict.js';
import {
  openIncident,
  recordHeld,
  incidentKey,
  type Incident,
  type RateLimitAlerts,
} from '../ratelimit-incidents.js';

/** A rate: `count` per `periodMs`. */
export interface Rate {
  readonly count: number;
  readonly periodMs: number;
  /** As written, for reasons and the API: `100/1m`. */
  readonly text: string;
}

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const RATE = /^(\d{1,10})\/(\d{0,6})([smhd])$/;
export const MAX_RATE_COUNT = 1_000_000_000;
export const MAX_RATE_PERIOD_MS = 30 * UNIT_MS.d;
const RATE_HELP = 'write N/PERIOD with a unit s, m, h or d, e.g. 100/1m or 2000/1d';

/** Parses "N/PERIOD" (`100/1m`, `500/15m`, `2000/1d`; `100/h` is `100/1h`); a problem text when it is not one. */
export function parseRate(text: string): Rate | string {
  const match = RATE.exec(text.trim());
  if (!match) return `not a rate; ${RATE_HELP}`;
  const count = Number(match[1]);
  const periods = match[2] === '' ? 1 : Number(match[2]);
  const periodMs = periods * UNIT_MS[match[3] as keyof typeof UNIT_MS];
  if (count < 1 || count > MAX_RATE_COUNT) return `the count must be 1 to ${MAX_RATE_COUNT}; ${RATE_HELP}`;
  if (periodMs < 1000 || periodMs > MAX_RATE_PERIOD_MS) return `the period must be 1s to 30d; ${RATE_HELP}`;
  return { count, periodMs, text: text.trim() };
}

const rateSchema = z
  .string()
  .max(32)
  .superRefine((text, ctx) => {
    const parsed = text === '' ? undefined : parseRate(text);
    if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
  })
  .default('');

export const RATE_KINDS = ['client', 'client_network', 'sender', 'sasl_user', 'recipient_domain'] as const;
export type RateKind = (typeof RATE_KINDS)[number];
export type RateDimension = 'messages' | 'recipients';

const KIND_WORDS: Record<RateKind, string> = {
  client: 'client address (anonymous clients)',
  client_network: 'client network (anonymous clients; see ipv4_prefix, ipv6_prefix)',
  sender: 'envelope sender (extension stripped)',
  sasl_user: 'SASL user',
  recipient_domain: 'recipient domain',
};

/**
 * Checks the values of override entries written in the config itself (list items `key value`), so check-config
 * names a bad one; entries of map files and `inline:{…}` specs are checked when looked up (PW-E004).
 */
function checkListedOverrides(ref: string | readonly string[], ctx: z.RefinementCtx): void {
  if (typeof ref === 'string') return;
  const none = { messages: null, recipients: null };
  for (const [i, item] of ref.entries()) {
    if (/^[A-Za-z][A-Za-z0-9_-]*:/.test(item)) continue; // a type:name spec (or an IPv6 key: checked later)
    const entry = /^([^\s=]+)\s*=\s*(.*)$/s.exec(item.trim()) ?? /^(\S+)\s+(.*)$/s.exec(item.trim());
    const problem = parseOverride(entry?.[2] ?? '', none);
    if (typeof problem === 'string') {
      ctx.addIssue({
        code: 'custom',
        path: [i],
        message: `override value ${problem.startsWith('no rate') ? 'missing' : 'not a rate'}; ${problem}`,
      });
    }
  }
}

const overridesSchema = z
  .strictObject(
    Object.fromEntries(
      RATE_KINDS.map((kind) => [
        kind,
        mapRefSchema
          .superRefine(checkListedOverrides)
          .default([])
          .describe(
            `Per-${kind} limits: entries \`key messages=R recipients=R\` (a bare R is messages; none lifts the limit)`,
          ),
      ]),
    ) as Record<RateKind, z.ZodDefault<typeof mapRefSchema>>,
  )
  .describe('Per-key overrides of the limits, one map per key kind');

export const ratelimitSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    ...(Object.fromEntries(
      RATE_KINDS.map((kind) => [
        `per_${kind}`,
        rateSchema.describe(`Messages per ${KIND_WORDS[kind]}, as N/PERIOD (e.g. 100/1m); '' = no limit`),
      ]),
    ) as Record<`per_${RateKind}`, typeof rateSchema>),
    ...(Object.fromEntries(
      RATE_KINDS.map((kind) => [
        `recipients_per_${kind}`,
        rateSchema.describe(`Recipients per ${KIND_WORDS[kind]}, as N/PERIOD; '' = no limit`),
      ]),
    ) as Record<`recipients_per_${RateKind}`, typeof rateSchema>),
    overrides: overridesSchema.prefault({}),
    exempt: mapRefSchema
      .default([])
      .describe('Clients (IP, CIDR), senders and SASL users (address, domain) never counted'),
    ipv4_prefix: z.number().int().min(8).max(32).default(24).describe('IPv4 client network size (bits)'),
    ipv6_prefix: z.number().int().min(16).max(128).default(64).describe('IPv6 client network size (bits)'),
    hold_until_reset: z
      .boolean()
      .default(true)
      .describe(
        'Once a SASL user is over a limit, hold all its mail until an admin resets it (or the incident expires), so a stolen account cannot go on at the refill rate',
      ),
    incident_ttl_s: z
      .number()
      .int()
      .min(60)
      .max(366 * 86_400)
      .default(604_800)
      .describe('How long an incident (and the record of what it held) is kept without a reset'),
    notify: z
      .strictObject({
        to: z
          .string()
          .max(254)
          .default('')
          .describe("Who is told (once per incident) that a user's mail is being held; '' = nobody"),
        from: z
          .string()
          .max(254)
          .default('')
          .describe("The notice's From: address; '' = postwarden@<hostname>"),
        smtp: z
          .string()
          .regex(/^(?:\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):\d{1,5}$/, 'not host:port; use e.g. 127.0.0.1:25')
          .default('127.0.0.1:25')
          .describe('The SMTP server that takes the notice (the local Postfix, or a relay), host:port'),
        timeout_ms: z
          .number()
          .int()
          .min(100)
          .max(120_000)
          .default(10_000)
          .describe('Deadline of one attempt'),
        attempts: z
          .number()
          .int()
          .min(1)
          .max(20)
          .default(6)
          .describe('Attempts per notice (backing off from 5 s to 10 min) before it is given up'),
      })
      .prefault({})
      .describe('The admin notice of an incident (sent in the background; the policy reply never waits)'),
    postfix_config_dir: z
      .string()
      .max(4096)
      .default('')
      .describe(
        "Postfix's config dir for postqueue/postsuper when the API releases or deletes held mail; '' = Postfix's default",
      ),
    postsuper_sudo: z
      .boolean()
      .default(false)
      .describe(
        'Run postsuper through `sudo -n` (postsuper needs root; allow postwarden exactly that command in sudoers)',
      ),
  })
  .describe(
    'Rate limits: messages and recipients per period; over-limit SASL users are held, others deferred',
  );

export type RatelimitSettings = z.infer<typeof ratelimitSchema>;

/** What the check reaches outside its settings. */
export interface RatelimitTables {
  readonly exempt: readonly LookupTable[];
  readonly overrides: Readonly<Record<RateKind, readonly LookupTable[]>>;
}

const CHECK = 'ratelimit';
/**
 * Writers that lose a compareAndSet race read the bucket again; after this many losses the check fails. Each
 * round has one winner, so this many messages racing for one bucket at the same instant all get an answer.
 */
export const MAX_CAS_ATTEMPTS = 20;
/** Recipients remembered per message for the recipient-domain counts. */
export const MAX_TRACKED_RECIPIENTS = 10_000;
/** Half a millisecond: the GCRA times are fractional milliseconds, compared with this tolerance. */
const EPSILON_MS = 0.5;

// ---- GCRA ------------------------------------------------------------------------------------------------

export interface BucketOutcome {
  /** Whether `cost` more fit now. */
  readonly ok: boolean;
  /** The bucket's new theoretical arrival time when ok (ms since the epoch). */
  readonly tat: number;
  /** When ok: how long the new state must be kept (s). Else: how long until `cost` fit (ms); Infinity never. */
  readonly ttlS: number;
  readonly retryMs: number;
  /** Whole units left after this one (when ok) or now (when not). */
  readonly remaining: number;
}

/**
 * The generic cell rate algorithm, a token bucket of `rate.count` tokens refilled evenly over `rate.periodMs`,
 * kept as one number: `tat`, when the bucket will be full again. `cost` units fit when, after adding them, the
 * bucket would be full again no later than one period from now.
 */
export function gcra(stored: number | undefined, now: number, rate: Rate, cost: number): BucketOutcome {
  const interval = rate.periodMs / rate.count;
  const tat = Math.max(stored ?? now, now);
  const next = tat + cost * interval;
  const allowAt = next - rate.periodMs;
  if (allowAt - now > EPSILON_MS) {
    const retryMs = cost * interval > rate.periodMs + EPSILON_MS ? Infinity : Math.ceil(allowAt - now);
    const remaining = Math.max(0, Math.floor((now + rate.periodMs - tat + EPSILON_MS) / interval));
    return { ok: false, tat, ttlS: 0, retryMs, remaining };
  }
  const remaining = Math.max(0, Math.floor((now + rate.periodMs - next + EPSILON_MS) / interval));
  return { ok: true, tat: next, ttlS: Math.max(1, Math.ceil((next - now) / 1000)), retryMs: 0, remaining };
}

/** A stored bucket value; undefined for absent or unreadable (an unreadable one is replaced). */
export function readTat(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  return value !== '' && Number.isFinite(n) ? n : undefined;
}

// ---- keys --------------------------------------------------------------------------------------------------

/** Bucket keys: `rate:<m|r>:<kind>:<key>`. The one place that knows them (the check, and the API's reset). */
export const RATE_KEY_PREFIX = 'rate:';
export function bucketKey(dimension: RateDimension, kind: RateKind, key: string): string {
  return `${RATE_KEY_PREFIX}${dimension === 'messages' ? 'm' : 'r'}:${kind}:${key}`;
}

/** One counted key of a request: its kind, its value, and what a message costs it. */
export interface Subject {
  readonly kind: RateKind;
  readonly key: string;
  /** The query its override and exemption lookups ask. */
  readonly query: LookupQuery;
  /** Recipients of this message that count against the key. */
  readonly recipients: number;
}

/** The normalised SASL user: lower case (Dovecot logins are case-insensitive by default). */
export const saslKey = (username: string): string => username.trim().toLowerCase();

/** The sender as rate limiting counts it: lower case, extension stripped; '' for the null sender. */
export function senderKey(sender: string, recipientDelimiter: string): string {
  if (sender === '' || sender === '<>') return '';
  const lower = sender.toLowerCase();
  const domain = domainOf(lower);
  const local = stripExtension(localPartOf(lower), recipientDelimiter);
  return domain === '' ? local : `${local}@${domain}`;
}

/** This message's recipients (lower case) as seen at RCPT, kept in the per-message memo. */
function trackedRecipients(ctx: PolicyContext): Set<string> {
  let seen = ctx.session.memo.get(CHECK) as Set<string> | undefined;
  if (!seen) {
    seen = new Set();
    ctx.session.memo.set(CHECK, seen);
  }
  return seen;
}

/** Recipients per domain; at DATA/END-OF-MESSAGE without a memo (another connection), the one `recipient`. */
export function recipientDomains(
  request: PolicyRequest,
  recipients: ReadonlySet<string>,
): Map<string, number> {
  const domains = new Map<string, number>();
  const add = (address: string) => {
    const domain = domainOf(address);
    if (domain !== '') domains.set(domain, (domains.get(domain) ?? 0) + 1);
  };
  if (recipients.size > 0) for (const r of recipients) add(r);
  else if (request.recipient !== '') add(request.recipient.toLowerCase());
  return domains;
}

/**
 * The keys a request counts against, with the recipients each is charged for `total` recipients. At RCPT only
 * the current recipient's domain is a subject (with its count so far).
 */
export function subjectsOf(
  request: PolicyRequest,
  recipients: ReadonlySet<string>,
  total: number,
  settings: Pick<RatelimitSettings, 'ipv4_prefix' | 'ipv6_prefix'>,
  recipientDelimiter: string,
): Subject[] {
  const subjects: Subject[] = [];
  const add = (kind: RateKind, key: string, query: LookupQuery, recipients: number) =>
    subjects.push({ kind, key, query, recipients });
  const user = saslKey(request.saslUsername);
  const client = request.clientAddress;
  if (user !== '') add('sasl_user', user, { kind: 'address', value: user }, total);
  else if (client !== '' && client !== 'unknown') {
    const ip: LookupQuery = { kind: 'ip', value: client };
    add('client', client.toLowerCase(), ip, total);
    const network = networkPrefix(client, settings.ipv4_prefix, settings.ipv6_prefix);
    if (network) add('client_network', network, ip, total);
  }
  const sender = senderKey(request.sender, recipientDelimiter);
  if (sender !== '') add('sender', sender, { kind: 'address', value: sender }, total);
  const domains = recipientDomains(request, recipients);
  // At RCPT only the current recipient's domain is asked about; later, every domain of the message.
  const current = request.protocolState === 'RCPT' ? domainOf(request.recipient) : undefined;
  for (const [domain, count] of domains) {
    if (current === undefined || domain === current) {
      add('recipient_domain', domain, { kind: 'domain', value: domain }, count);
    }
  }
  return subjects;
}

// ---- overrides ---------------------------------------------------------------------------------------------

/** A map override whose value is not a rate: a configuration problem, recorded as the check's failure. */
export class RateOverrideInvalid extends Error {
  readonly code = 'PW-E004';
  constructor(
    readonly table: string,
    readonly key: string,
    readonly problem: string,
  ) {
    super(`rate override ${JSON.stringify(key)} in ${table}: ${problem}`);
  }
}

/** A limit: a rate, or null for "none". */
export type Limit = Rate | null;
export interface Limits {
  readonly messages: Limit;
  readonly recipients: Limit;
}

/** Parses an override value (`messages=100/1h recipients=none`, `100/1h`, `none`) over the defaults. */
export function parseOverride(value: string, defaults: Limits): Limits | string {
  const words = value.split(/[\s,]+/).filter((w) => w !== '');
  if (words.length === 0) return 'no rate; write messages=N/PERIOD and/or recipients=N/PERIOD, or none';
  let messages = defaults.messages;
  let recipients = defaults.recipients;
  for (const word of words) {
    const eq = word.indexOf('=');
    const name = eq < 0 ? '' : word.slice(0, eq).toLowerCase();
    const text = eq < 0 ? word : word.slice(eq + 1);
    if (eq >= 0 && name !== 'messages' && name !== 'recipients') {
      return `unknown name '${name}'; use messages= or recipients=`;
    }
    let limit: Limit;
    if (text.toLowerCase() === 'none') limit = null;
    else {
      const rate = parseRate(text);
      if (typeof rate === 'string') return `'${text}' is ${rate}`;
      limit = rate;
    }
    if (eq < 0 && text.toLowerCase() === 'none') {
      messages = null;
      recipients = null;
    } else if (name === 'recipients') recipients = limit;
    else messages = limit;
  }
  return { messages, recipients };
}

// ---- the check ---------------------------------------------------------------------------------------------

/** One bucket a message is measured against. */
interface Bucket {
  readonly subject: Subject;
  readonly dimension: RateDimension;
  readonly rate: Rate;
  readonly cost: number;
  readonly key: string;
}

/** Why a message does not fit. */
interface Over {
  readonly bucket: Bucket;
  readonly outcome: BucketOutcome;
}

function describeOver(over: Over): string {
  const { subject, dimension, rate, cost } = over.bucket;
  const what = dimension === 'messages' ? 'messages' : `recipients (${cost} in this message)`;
  const retry = Number.isFinite(over.outcome.retryMs)
    ? `room again in ${Math.ceil(over.outcome.retryMs / 1000)} s`
    : 'the message alone exceeds the limit';
  return `${subject.kind} ${subject.key} over ${rate.text} ${what}; ${retry}`;
}

export function createRatelimitCheck(
  settings: Omit<RatelimitSettings, 'overrides' | 'exempt' | 'notify'>,
  tables: RatelimitTables,
  store: Store,
  alerts: RateLimitAlerts,
  recipientDelimiter: string,
  now: () => number = Date.now,
): PolicyCheck {
  const defaults = {} as Record<RateKind, Limits>;
  for (const kind of RATE_KINDS) {
    const m = settings[`per_${kind}`];
    const r = settings[`recipients_per_${kind}`];
    const rate = (text: string): Limit => {
      if (text === '') return null;
      const parsed = parseRate(text);
      if (typeof parsed === 'string') throw new RangeError(`policy.ratelimit: ${text}: ${parsed}`);
      return parsed;
    };
    defaults[kind] = { messages: rate(m), recipients: rate(r) };
  }
  const anyLimit = (kind: RateKind) =>
    defaults[kind].messages !== null ||
    defaults[kind].recipients !== null ||
    tables.overrides[kind].length > 0;
  const enforcing = settings.mode === 'enforce';
  // Nothing configured (the default): the check costs nothing, not even a store read.
  const configured = RATE_KINDS.some(anyLimit);

  async function limitsOf(subject: Subject): Promise<Limits> {
    const fallback = defaults[subject.kind];
    const overrides = tables.overrides[subject.kind];
    if (overrides.length === 0) return fallback;
    const result = await find(overrides, subject.query);
    if (result.status !== 'found') return fallback;
    const parsed = parseOverride(result.value, fallback);
    if (typeof parsed === 'string') {
      throw new RateOverrideInvalid(overrides.map((t) => t.name).join(', '), result.key, parsed);
    }
    return parsed;
  }

  async function exempted(request: PolicyRequest): Promise<string | undefined> {
    if (tables.exempt.length === 0) return undefined;
    const queries: LookupQuery[] = [
      { kind: 'ip', value: request.clientAddress },
      { kind: 'address', value: saslKey(request.saslUsername) },
      { kind: 'address', value: request.sender },
    ];
    for (const query of queries) {
      if (query.value === '' || query.value === 'unknown') continue;
      const result = await find(tables.exempt, query);
      if (result.status === 'found') return result.key;
    }
    return undefined;
  }

  /** The buckets a message (or, at RCPT, its recipients so far) is measured against. */
  async function bucketsOf(subjects: readonly Subject[], messages: boolean): Promise<Bucket[]> {
    const buckets: Bucket[] = [];
    for (const subject of subjects) {
      if (!anyLimit(subject.kind)) continue;
      const limits = await limitsOf(subject);
      if (messages && limits.messages) {
        buckets.push({
          subject,
          dimension: 'messages',
          rate: limits.messages,
          cost: 1,
          key: bucketKey('messages', subject.kind, subject.key),
        });
      }
      if (limits.recipients && subject.recipients > 0) {
        buckets.push({
          subject,
          dimension: 'recipients',
          rate: limits.recipients,
          cost: subject.recipients,
          key: bucketKey('recipients', subject.kind, subject.key),
        });
      }
    }
    return buckets;
  }

  /** The first bucket the cost does not fit, reading without writing. */
  function firstOver(buckets: readonly Bucket[], values: readonly (string | undefined)[], at: number) {
    for (const [i, bucket] of buckets.entries()) {
      const outcome = gcra(readTat(values[i]), at, bucket.rate, bucket.cost);
      if (!outcome.ok) return { bucket, outcome };
    }
    return undefined;
  }

  /** Spends the cost of every bucket, each with compareAndSet; the first that no longer fits, if any. */
  async function spend(buckets: readonly Bucket[], values: readonly (string | undefined)[]) {
    const results = await Promise.all(
      buckets.map(async (bucket, i): Promise<Over | undefined> => {
        let stored = values[i];
        for (let attempt = 1; ; attempt++) {
          const outcome = gcra(readTat(stored), now(), bucket.rate, bucket.cost);
          if (!outcome.ok) return { bucket, outcome };
          const written = await store.compareAndSet(bucket.key, stored, outcome.tat.toFixed(3), outcome.ttlS);
          if (written) return undefined;
          if (attempt >= MAX_CAS_ATTEMPTS) {
            throw new Error(`${bucket.key}: lost ${attempt} compareAndSet races in a row`);
          }
          stored = await store.get(bucket.key);
        }
      }),
    );
    return results.find((r) => r !== undefined);
  }

  const verdict = (symbol: string, reason: string, extra: Partial<Verdict> = {}): Verdict[] => [
    { check: CHECK, symbol, score: 0, reason, ...extra },
  ];
  const deferred = (symbol: string, reason: string, code: number, dsn: string, text: string) =>
    verdict(symbol, reason, { action: 'defer', reply: { code, dsn, text } });

  /** An authenticated user over a limit (or already held): hold, record, and tell the admin once. */
  async function hold(request: PolicyRequest, user: string, reason: string, limit: string, open: boolean) {
    if (enforcing) {
      if (open) {
        const incident: Incident = {
          user,
          openedAt: now(),
          limit,
          client: request.clientAddress,
          sender: request.sender,
          queueId: request.queueId,
        };
        if (await openIncident(store, incident, settings.incident_ttl_s)) alerts.incidentOpened(incident);
      }
      await recordHeld(store, user, request, now(), settings.incident_ttl_s);
    }
    return verdict(open ? 'RATELIMIT_HOLD' : 'RATELIMIT_HELD_ACCOUNT', reason, { action: 'hold' });
  }

  return {
    name: CHECK,
    async run(request, ctx) {
      const state = request.protocolState;
      if (!configured || (state !== 'RCPT' && state !== 'DATA' && state !== 'END-OF-MESSAGE')) return [];
      const recipients = trackedRecipients(ctx);
      if (state === 'RCPT' && request.recipient !== '' && recipients.size < MAX_TRACKED_RECIPIENTS) {
        recipients.add(request.recipient.toLowerCase());
      }
      const user = saslKey(request.saslUsername);
      // Authenticated mail is never refused: it is measured once, at the end of the message.
      if (user !== '' && state !== 'END-OF-MESSAGE') return [];
      if ((await exempted(request)) !== undefined) return [];
      // At RCPT: this message's recipients so far, less those this check refused.
      const total = state === 'RCPT' ? recipients.size : Math.max(request.recipientCount, 1);
      const subjects = subjectsOf(request, recipients, total, settings, recipientDelimiter);
      const buckets = await bucketsOf(subjects, state !== 'RCPT');
      const sticky = user !== '' && settings.hold_until_reset && enforcing;
      if (buckets.length === 0 && !sticky) return [];
      const keys = buckets.map((b) => b.key);
      const values = await store.getMany(sticky ? [...keys, incidentKey(user)] : keys);
      if (sticky && values[keys.length] !== undefined) {
        return hold(request, user, `SASL user ${user} is held until an admin resets it`, '', false);
      }
      if (state !== 'END-OF-MESSAGE') {
        const over = firstOver(buckets, values, now());
        if (!over) return [];
        const reason = describeOver(over);
        if (state === 'DATA') {
          return deferred('RATELIMIT_DEFER', reason, 450, '4.7.1', 'Rate limit exceeded, try again later');
        }
        // Refused here, so not one of the message's recipients (other checks' refusals are not seen here).
        recipients.delete(request.recipient.toLowerCase());
        return deferred(
          'RATELIMIT_RECIPIENTS',
          reason,
          452,
          '4.5.3',
          'Too many recipients, try the rest later',
        );
      }
      const over = await spend(buckets, values);
      if (!over) return [];
      const reason = describeOver(over);
      if (user === '') {
        return deferred('RATELIMIT_DEFER', reason, 450, '4.7.1', 'Rate limit exceeded, try again later');
      }
      const { dimension, subject, rate } = over.bucket;
      const limit = `${dimension === 'messages' ? '' : 'recipients_'}per_${subject.kind} ${rate.text}`;
      return hold(request, user, reason, limit, true);
    },
  };
}

/** The buckets an admin reset empties for a user: its own, and those of the sender its incident used. */
export function userBucketKeys(user: string, sender: string, recipientDelimiter: string): string[] {
  const keys = [bucketKey('messages', 'sasl_user', user), bucketKey('recipients', 'sasl_user', user)];
  const from = senderKey(sender, recipientDelimiter);
  if (from !== '') keys.push(bucketKey('messages', 'sender', from), bucketKey('recipients', 'sender', from));
  return keys;
}
