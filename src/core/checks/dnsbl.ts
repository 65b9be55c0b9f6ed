/**
 * dnsbl — DNS block and allow lists, scored. Each block list names the return codes that count and a weight
 * for each; each allow list (DNSWL) a negative weight per trust level. Their sum adds to the request's score
 * (the greylisting score gate reads it) and, when it reaches `reject_at`, rejects with the lists' reasons.
 *
 * What never counts as a listing, whatever the config says (protocols.md A5, field-notes C5–C6): an answer
 * outside 127.0.0.0/8, Spamhaus's error codes 127.255.255.0/24, DNSWL's 127.0.0.255, and any query that failed.
 * An error code also marks the list unhealthy at once; its hits stop counting until the self-test passes.
 *
 * Trusted clients (SASL, local_networks) and addresses no list can know (loopback, private, link-local,
 * unique-local) are not queried.
 *
 * Symbols: DNSBL_LISTED (one per list that lists the client, its weight as score), DNSWL_NONE/LOW/MEDIUM/HIGH,
 * DNSBL_REJECT (the sum reached reject_at), DNSBL_ERROR (a list did not answer; score 0),
 * DNSBL_UNHEALTHY (a list was skipped because its self-test fails; score 0).
 */
import { z } from 'zod';
import { parseIp, rangeOf, type IpFamily } from '../../util/ip.js';
import {
  type CodePattern,
  type DnsAnswer,
  type DnsResolver,
  ipv6TestPointName,
  reversedAddress,
  notAListing,
  parseCodePattern,
  txtText,
} from '../dns.js';
import type { Locality } from '../locality.js';
import type { PolicyCheck } from '../pipeline.js';
import { modeSchema, scoreSchema } from '../schema.js';
import type { Verdict } from '../verdict.js';

const CHECK = 'dnsbl';

const zoneSchema = z
  .string()
  .max(200)
  .regex(
    /^(?=.{1,200}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}$/,
    'not a DNS zone; write the list’s zone, e.g. zen.spamhaus.org',
  );

const listNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'not a list name; use letters, digits, dots, dashes')
  .optional()
  .describe(
    'Shown in logs, metrics and replies instead of the zone (hides a Data Query Service key in the zone)',
  );

const codeSchema = z.string().superRefine((value, ctx) => {
  const parsed = parseCodePattern(value);
  if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
});

const blockListSchema = z.strictObject({
  zone: zoneSchema.describe('The list’s DNS zone (with a Data Query Service key if it has one)'),
  name: listNameSchema,
  codes: z
    .union([z.array(codeSchema).min(1).max(64), z.record(codeSchema, scoreSchema)])
    .default(['127.0.0.[2..254]'])
    .describe(
      'Return codes that count: a list (each worth `weight`) or a map code → weight; Postfix syntax, 127.0.0.[2..11]',
    ),
  weight: scoreSchema.default(1).describe('Score of a listing when `codes` is a list'),
  txt: z.boolean().default(true).describe('Fetch the TXT reason of a listing for the log and the reply'),
  ipv6: z.boolean().default(true).describe('Query the list about IPv6 clients too'),
});

const allowListSchema = z.strictObject({
  zone: zoneSchema.describe('The allow list’s DNS zone, e.g. list.dnswl.org'),
  name: listNameSchema,
  weights: z
    .strictObject({
      none: scoreSchema.default(-2).describe('Trust none (127.0.X.0)'),
      low: scoreSchema.default(-4).describe('Trust low (127.0.X.1)'),
      medium: scoreSchema.default(-6).describe('Trust medium (127.0.X.2)'),
      high: scoreSchema.default(-8).describe('Trust high (127.0.X.3)'),
    })
    .prefault({})
    .describe('Score per trust level (negative: it offsets block-list hits)'),
  ipv6: z.boolean().default(true).describe('Query the list about IPv6 clients too'),
});

export const dnsblSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    lists: z
      .array(blockListSchema)
      .max(32)
      .default([])
      .describe('DNS block lists, queried in parallel; none by default: choose lists and their terms of use'),
    dnswl: z.array(allowListSchema).max(8).default([]).describe('DNS allow lists (DNSWL), by trust level'),
    reject_at: scoreSchema
      .min(0)
      .default(10)
      .describe(
        'Reject when the lists’ own sum reaches this (with their reasons); 0 = never here, the sum still adds to policy.reject_at',
      ),
  })
  .describe('DNS block and allow lists, scored; each list self-tested');

export type DnsblSettings = z.infer<typeof dnsblSchema>;
type BlockListSettings = DnsblSettings['lists'][number];
type AllowListSettings = DnsblSettings['dnswl'][number];

/** A configured list, ready to query. */
export interface DnsList {
  readonly kind: 'block' | 'allow';
  readonly zone: string;
  /** What logs, metrics and replies show. */
  readonly name: string;
  readonly ipv6: boolean;
  readonly txt: boolean;
  /** Block lists: the patterns that count and what each is worth. */
  readonly codes: readonly { readonly pattern: CodePattern; readonly weight: number }[];
  /** Allow lists: weight by trust level 0..3. */
  readonly trust: readonly [number, number, number, number];
  /** Domain (URI) lists only: the domain the list always lists, its self-test point. */
  readonly testDomain?: string;
}

function compiled(text: string): CodePattern {
  const pattern = parseCodePattern(text);
  if (typeof pattern === 'string') throw new Error(pattern); // the schema refused it already
  return pattern;
}

export function dnsLists(settings: Pick<DnsblSettings, 'lists' | 'dnswl'>): DnsList[] {
  const block = settings.lists.map((list: BlockListSettings): DnsList => {
    const entries = Array.isArray(list.codes)
      ? list.codes.map((code) => [code, list.weight] as const)
      : Object.entries(list.codes);
    return {
      kind: 'block',
      zone: list.zone.toLowerCase(),
      name: list.name ?? list.zone.toLowerCase(),
      ipv6: list.ipv6,
      txt: list.txt,
      codes: entries.map(([code, weight]) => ({ pattern: compiled(code), weight })),
      trust: [0, 0, 0, 0],
    };
  });
  const allow = settings.dnswl.map((list: AllowListSettings): DnsList => ({
    kind: 'allow',
    zone: list.zone.toLowerCase(),
    name: list.name ?? list.zone.toLowerCase(),
    ipv6: list.ipv6,
    txt: false,
    codes: [],
    trust: [list.weights.none, list.weights.low, list.weights.medium, list.weights.high],
  }));
  return [...block, ...allow];
}

const TRUST_SYMBOLS = ['DNSWL_NONE', 'DNSWL_LOW', 'DNSWL_MEDIUM', 'DNSWL_HIGH'] as const;

/** What a list's answer means for one address: the score and what to log, or nothing. */
export interface ListReading {
  readonly score: number;
  readonly symbol: string;
  /** The codes that counted. */
  readonly codes: readonly string[];
  /** Codes that must not count, with why (they also make the list unhealthy). */
  readonly refused: readonly string[];
}

/** Reads the A records a list answered for an address: the pure heart of the check, table-tested. */
export function readListAnswer(list: DnsList, records: readonly string[]): ListReading {
  const refused: string[] = [];
  const valid: string[] = [];
  for (const code of records) {
    const why = notAListing(code, list.kind);
    if (why) refused.push(why);
    else valid.push(code);
  }
  if (list.kind === 'allow') {
    // DNSWL: 127.0.<category>.<trust>, trust 0..3; the highest trust answered wins.
    let trust = -1;
    const counted: string[] = [];
    for (const code of valid) {
      const last = Number(code.slice(code.lastIndexOf('.') + 1));
      if (!code.startsWith('127.0.') || last > 3) continue;
      counted.push(code);
      trust = Math.max(trust, last);
    }
    if (trust < 0) return { score: 0, symbol: '', codes: [], refused };
    return { score: list.trust[trust] ?? 0, symbol: TRUST_SYMBOLS[trust] ?? '', codes: counted, refused };
  }
  // Each code pattern counts once, however many answered codes it matches (as postscreen's dnsbl_sites).
  let score = 0;
  const counted = new Set<string>();
  for (const { pattern, weight } of list.codes) {
    const hits = valid.filter((code) => pattern.matches(code));
    if (hits.length === 0) continue;
    score += weight;
    for (const code of hits) counted.add(code);
  }
  return { score, symbol: counted.size > 0 ? 'DNSBL_LISTED' : '', codes: [...counted], refused };
}

// ---------------------------------------------------------------------------------------------- health

export interface ListHealth {
  readonly list: string;
  readonly zone: string;
  readonly family: IpFamily;
  /** A domain (URI) list: it has no address family (recorded as 4), `target` says `domain`. */
  readonly target: 'ipv4' | 'ipv6' | 'domain';
  readonly healthy: boolean;
  /** Why it is unhealthy, and what to do. */
  readonly reason?: string;
  readonly fix?: string;
  /** Self-tests failed in a row (timeouts and the like mark a list only after TRANSIENT_LIMIT). */
  readonly failures: number;
  readonly since: number;
}

export type HealthChange = (health: ListHealth) => void;

/** Self-test failures in a row (timeouts, SERVFAIL) before a list is marked unhealthy. */
const TRANSIENT_LIMIT = 3;

const FIX_RESOLVER =
  'query through a local recursive resolver (e.g. unbound on 127.0.0.1) in dns.servers, not a public or ISP resolver, or use the list’s data-query key in its zone';

export interface SelfTestOutcome {
  readonly ok: boolean;
  /** Definitive failures mark the list at once; transient ones (no answer) after a few in a row. */
  readonly transient: boolean;
  readonly reason?: string;
  readonly fix?: string;
}

/** Every list's health per address family, in memory: the self-test job writes it, the check reads it. */
export class DnsListHealth {
  private readonly states = new Map<string, ListHealth>();

  constructor(
    lists: readonly DnsList[],
    private readonly onChange: HealthChange = () => {},
    private readonly now: () => number = Date.now,
  ) {
    for (const list of lists) {
      for (const family of list.ipv6 ? ([4, 6] as const) : ([4] as const)) {
        this.states.set(key(list, family), {
          list: list.name,
          zone: list.zone,
          family,
          target: list.testDomain !== undefined ? 'domain' : `ipv${family}`,
          healthy: true,
          failures: 0,
          since: this.now(),
        });
      }
    }
  }

  usable(list: DnsList, family: IpFamily): boolean {
    return this.states.get(key(list, family))?.healthy ?? false;
  }

  /** Records a self-test (or a live answer that proves the list unusable); reports a change of state. */
  record(list: DnsList, family: IpFamily, outcome: SelfTestOutcome): void {
    const k = key(list, family);
    const before = this.states.get(k);
    if (!before) return;
    const failures = outcome.ok ? 0 : before.failures + 1;
    const healthy = outcome.ok || (outcome.transient && failures < TRANSIENT_LIMIT && before.healthy);
    const after: ListHealth = {
      list: before.list,
      zone: before.zone,
      family,
      target: before.target,
      healthy,
      failures,
      since: healthy === before.healthy ? before.since : this.now(),
      ...(outcome.ok ? {} : { reason: outcome.reason ?? 'self-test failed', fix: outcome.fix ?? '' }),
    };
    this.states.set(k, after);
    if (after.healthy !== before.healthy) this.onChange(after);
  }

  snapshot(): ListHealth[] {
    return [...this.states.values()];
  }
}

function key(list: DnsList, family: IpFamily): string {
  return `${list.kind} ${list.name} ${list.zone} ${family}`;
}

/** An answer of a list that proves it unusable (error codes, foreign answers): a definitive self-test failure. */
function refusedOutcome(list: DnsList, refused: readonly string[]): SelfTestOutcome {
  return {
    ok: false,
    transient: false,
    reason: `${list.name} answered ${refused.join('; ')}`,
    fix: FIX_RESOLVER,
  };
}

function noAnswer(list: DnsList, what: string, answer: DnsAnswer<'A'>): SelfTestOutcome | undefined {
  if (answer.status !== 'error') return undefined;
  return {
    ok: false,
    transient: true,
    reason: `${list.name} gave no answer for ${what} (${answer.kind})`, // never the zone: it may hold a key
    fix:
      answer.kind === 'refused'
        ? FIX_RESOLVER
        : 'check that the resolvers in dns.servers answer (e.g. dig @127.0.0.1 2.0.0.127.<zone>)',
  };
}

/** The names a self-test asks: one the list must list, one it must not; labels say what they stand for. */
export interface TestPoints {
  readonly listed: { readonly name: string; readonly label: string };
  readonly unlisted: { readonly name: string; readonly label: string };
}

/**
 * The RFC 5782 §5 self-test of one list for one family: it must list its test point (127.0.0.2, or
 * ::FFFF:7F00:2; a domain list its `testDomain`) with a code that may count, and must not list 127.0.0.1 (a
 * domain list: `invalid`): a list that lists everything has usually cut the querier off.
 */
export function selfTest(
  list: DnsList,
  family: IpFamily,
  resolver: DnsResolver,
  signal?: AbortSignal,
): Promise<SelfTestOutcome> {
  if (list.testDomain !== undefined) {
    return testPoints(
      list,
      {
        listed: { name: `${list.testDomain}.${list.zone}`, label: list.testDomain },
        unlisted: { name: `invalid.${list.zone}`, label: 'invalid' },
      },
      resolver,
      signal,
    );
  }
  return testPoints(
    list,
    {
      listed: {
        name: family === 4 ? `2.0.0.127.${list.zone}` : ipv6TestPointName(2, list.zone),
        label: family === 4 ? '127.0.0.2' : '::FFFF:7F00:2',
      },
      unlisted: {
        name: family === 4 ? `1.0.0.127.${list.zone}` : ipv6TestPointName(1, list.zone),
        label: '127.0.0.1',
      },
    },
    resolver,
    signal,
  );
}

/** Asks a list about its two test points; any list kind (address or domain lists). */
export async function testPoints(
  list: DnsList,
  points: TestPoints,
  resolver: DnsResolver,
  signal?: AbortSignal,
): Promise<SelfTestOutcome> {
  const [positive, negative] = await Promise.all([
    resolver.query(points.listed.name, 'A', signal),
    resolver.query(points.unlisted.name, 'A', signal),
  ]);
  const failed =
    noAnswer(list, points.listed.label, positive) ?? noAnswer(list, points.unlisted.label, negative);
  if (failed) return failed;
  if (positive.status !== 'ok') {
    return {
      ok: false,
      transient: false,
      reason: `${list.name} does not list its test point ${points.listed.label}`,
      fix: `check the zone of list ${list.name}; a list that was shut down answers nothing`,
    };
  }
  const reading = readListAnswer(list, positive.records);
  if (reading.refused.length > 0) return refusedOutcome(list, reading.refused);
  if (list.kind === 'block' && reading.symbol === '') {
    // URIBL, for one, answers 127.0.0.1 to a query it refuses: a "listing" no configured code counts.
    return {
      ok: false,
      transient: false,
      reason: `${list.name} answers its test point ${points.listed.label} with ${positive.records.join(', ')}, which none of its codes counts`,
      fix: `${FIX_RESOLVER}; or correct the list's codes`,
    };
  }
  if (negative.status === 'ok') {
    const negativeReading = readListAnswer(list, negative.records);
    if (negativeReading.refused.length > 0) return refusedOutcome(list, negativeReading.refused);
    return {
      ok: false,
      transient: false,
      reason: `${list.name} lists ${points.unlisted.label}, which no list may: it answers "listed" for everything`,
      fix: 'remove the list, or ask its operator whether your resolver or host was cut off',
    };
  }
  return { ok: true, transient: false };
}

// ---------------------------------------------------------------------------------------------- the check

/** Addresses no public list can know: querying them leaks nothing useful and costs a query. */
const UNLISTABLE_RANGES = new Set(['loopback', 'private', 'linkLocal', 'unspecified', 'uniqueLocal']);

function isListable(address: string): IpFamily | undefined {
  const ip = parseIp(address);
  if (!ip) return undefined;
  return UNLISTABLE_RANGES.has(rangeOf(ip)) ? undefined : ip.family;
}

interface ListOutcome {
  readonly list: DnsList;
  readonly verdict?: Verdict;
  readonly txt?: string;
}

function replyText(client: string, listed: readonly ListOutcome[]): string {
  const names = listed.map((o) => o.list.name).join(', ');
  const reason = listed.find((o) => o.txt)?.txt;
  return `Service unavailable; client [${client}] blocked using ${names}${reason ? `; ${reason}` : ''}`;
}

export function createDnsblCheck(
  settings: Pick<DnsblSettings, 'reject_at'>,
  lists: readonly DnsList[],
  health: DnsListHealth,
  locality: Locality,
  resolver: DnsResolver,
): PolicyCheck {
  async function ask(
    list: DnsList,
    name: string,
    family: IpFamily,
    signal: AbortSignal,
  ): Promise<ListOutcome> {
    const answer = await resolver.query(name, 'A', signal);
    if (answer.status === 'error') {
      const verdict = {
        check: CHECK,
        symbol: 'DNSBL_ERROR',
        score: 0,
        reason: `${list.name} gave no answer (${answer.kind})`,
      };
      return { list, verdict };
    }
    if (answer.status !== 'ok') return { list };
    const reading = readListAnswer(list, answer.records);
    if (reading.refused.length > 0) health.record(list, family, refusedOutcome(list, reading.refused));
    if (reading.symbol === '') return { list };
    let txt: string | undefined;
    if (list.txt) {
      const text = await resolver.query(name, 'TXT', signal);
      if (text.status === 'ok') txt = txtText(text.records).join(' ').slice(0, 150);
    }
    const what = list.kind === 'allow' ? 'on allow list' : 'listed by';
    return {
      list,
      ...(txt ? { txt } : {}),
      verdict: {
        check: CHECK,
        symbol: reading.symbol,
        score: reading.score,
        reason: `${what} ${list.name} (${reading.codes.join(', ')})${txt ? `: ${txt}` : ''}`,
      },
    };
  }

  return {
    name: CHECK,
    async run(request, ctx): Promise<Verdict[]> {
      if (lists.length === 0) return [];
      const family = isListable(request.clientAddress);
      if (family === undefined || (await locality.isTrustedClient(request))) return [];
      // The client is the same for every recipient of a message: ask the lists once per message.
      const key = `${CHECK} ${request.clientAddress}`;
      const known = ctx.session.memo.get(key) as Promise<Verdict[]> | undefined;
      if (known) return known;
      const pending = judge(request.clientAddress, family, ctx.signal);
      ctx.session.memo.set(key, pending);
      pending.catch(() => ctx.session.memo.delete(key));
      return pending;
    },
  };

  async function judge(client: string, family: IpFamily, signal: AbortSignal): Promise<Verdict[]> {
    const verdicts: Verdict[] = [];
    const pending: Promise<ListOutcome>[] = [];
    const reversed = reversedAddress(client);
    for (const list of lists) {
      if (family === 6 && !list.ipv6) continue;
      if (!health.usable(list, family)) {
        verdicts.push({
          check: CHECK,
          symbol: 'DNSBL_UNHEALTHY',
          score: 0,
          reason: `${list.name} skipped: its self-test fails`,
        });
        continue;
      }
      if (reversed !== undefined) pending.push(ask(list, `${reversed}.${list.zone}`, family, signal));
    }
    const outcomes = await Promise.all(pending);
    let sum = 0;
    for (const outcome of outcomes) {
      if (!outcome.verdict) continue;
      verdicts.push(outcome.verdict);
      sum += outcome.verdict.score;
    }
    if (settings.reject_at > 0 && sum >= settings.reject_at) {
      const listed = outcomes.filter((o) => o.list.kind === 'block' && (o.verdict?.score ?? 0) > 0);
      const text = replyText(client, listed);
      verdicts.push({
        check: CHECK,
        symbol: 'DNSBL_REJECT',
        score: 0,
        action: 'reject',
        reason: `DNS lists scored ${sum} (reject_at ${settings.reject_at}): ${text}`,
        reply: { code: 554, dsn: '5.7.1', text },
      });
    }
    return verdicts;
  }
}
