/**
 * uribl — the domains of the URLs in a message's bodies, asked of DNS URI block lists (SURBL, URIBL, Spamhaus
 * DBL and the like, RFC 5782 domain lists) and looked up in a local map. A spammer can change the sending
 * address every minute, but the message must still lead the reader to the domain that pays.
 *
 * Which names are asked: the registrable domain of each URL host (`www.shop.example.co.uk` → `example.co.uk`), as
 * the lists publish them, and an IPv4 host reversed (`http://192.0.2.7/` → `7.2.0.192.<zone>`). Private and
 * loopback addresses, and the domains of `skip`, are never asked. At most `max_domains` distinct names a message,
 * in the order they appear, so a message with 10 000 URLs costs at most that many queries a list.
 *
 * Where URLs are found: written out in the text/plain bodies and anywhere in the HTML source (so `href`
 * attributes count, visible or not). Entity-encoded or script-built URLs are the rules scanner's business
 * (URL_OBFUSCATED); this scanner asks about what a browser would open without help.
 *
 * Lists are self-tested as the DNS block lists are (RFC 5782 §5: `test_domain` must be listed, `invalid` not; an
 * error code or a refusal marks the list unhealthy at once) by the `dnsbl_selftest` job; an unhealthy list is not
 * asked. What never counts as a listing is the DNS lists' rule (src/core/dns.ts): answers outside 127/8, Spamhaus
 * error codes, and 127.0.0.1, which URIBL answers to a refused query.
 *
 * Symbols: URIBL_LISTED (per list, its weight per listed domain, at most `max_listed_score` a list),
 * URIBL_BLOCKED (a domain of the local `block` map), URIBL_ERROR (a list did not answer; 0), URIBL_UNHEALTHY (0).
 */
import { z } from 'zod';
import { parseIp, rangeOf } from '../../util/ip.js';
import type { MessageFacts, ScanVerdict } from '../content.js';
import type { ContentScanner } from '../content.js';
import { listQueryName, type DnsResolver } from '../dns.js';
import { searchTables, type LookupTable } from '../ports.js';
import { mapRefSchema, modeSchema, scoreSchema } from '../schema.js';
import { dnsLists, readListAnswer, type DnsList, type DnsListHealth } from '../checks/dnsbl.js';
import { registrable } from './rules/headers.js';
import { findUrls, splitUrl } from './rules/urls.js';

const SCANNER = 'uribl';

const uriListSchema = z.strictObject({
  zone: z
    .string()
    .max(200)
    .regex(
      /^([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}$/,
      'not a DNS zone; write the list’s zone, e.g. multi.surbl.org',
    )
    .describe('The list’s DNS zone (with a Data Query Service key if it has one)'),
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'not a list name; use letters, digits, dots, dashes')
    .optional()
    .describe('Shown in logs, metrics and headers instead of the zone (hides a key in the zone)'),
  codes: z
    .array(z.string().min(1))
    .min(1)
    .max(64)
    .default(['127.0.0.[2..254]'])
    .describe('Return codes that count, Postfix syntax (127.0.1.[2..99] for Spamhaus DBL spam domains)'),
  weight: scoreSchema.default(4).describe('Score of one listed domain'),
  test_domain: z
    .string()
    .regex(/^[A-Za-z0-9.-]{1,200}$/, 'not a domain name')
    .default('test')
    .describe(
      'The domain the list always lists, for its self-test (RFC 5782: test; SURBL test.surbl.org, URIBL test.uribl.com, DBL dbltest.com)',
    ),
});

export const uriblSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    lists: z.array(uriListSchema).max(16).default([]).describe('DNS URI block lists, asked in parallel'),
    block: mapRefSchema
      .default([])
      .describe(
        'Local map of URL domains (or IPs) to score as listed, e.g. "file:/etc/postwarden/uri-block"',
      ),
    block_weight: scoreSchema.default(5).describe('Score of a URL domain found in `block`'),
    skip: mapRefSchema
      .default([])
      .describe('Domains never asked of the lists: your own, and big senders whose URLs fill every message'),
    max_domains: z.number().int().min(1).max(100).default(20).describe('Distinct names asked a message'),
    max_listed_score: scoreSchema.default(10).describe('Score a list may add to one message at most'),
  })
  .describe('URL domains against DNS URI block lists and a local map');

export type UriblSettings = z.infer<typeof uriblSchema>;

/** The lists, in the DNS lists' shape, so the code readings, the health record and the self-test are theirs. */
export function uriLists(settings: UriblSettings): DnsList[] {
  const lists = dnsLists({
    lists: settings.lists.map((list) => ({
      zone: list.zone,
      ...(list.name !== undefined ? { name: list.name } : {}),
      codes: list.codes,
      weight: list.weight,
      txt: false,
      ipv6: false,
    })),
    dnswl: [],
  });
  return lists.map((list, i) => ({ ...list, testDomain: settings.lists[i]?.test_domain ?? 'test' }));
}

/** URLs kept from the bodies at most: enough to find max_domains distinct names among repeats. */
const MAX_URLS = 1000;

/** The names to ask about, in order of appearance: registrable domains, and public IPv4 hosts. */
export function urlNames(message: MessageFacts, max: number): string[] {
  const names = new Set<string>();
  let urls = 0;
  for (const part of message.parts) {
    if (part.filename !== undefined || part.text === undefined) continue;
    if (part.contentType !== 'text/plain' && part.contentType !== 'text/html') continue;
    findUrls(part.text, MAX_URLS - urls, (url) => {
      urls++;
      if (names.size >= max) return;
      const host = splitUrl(url)?.host;
      if (!host) return;
      const ip = parseIp(host);
      if (ip) {
        if (ip.family === 4 && rangeOf(ip) === 'unicast') names.add(ip.text);
        return;
      }
      if (/^[a-z0-9.-]+$/.test(host) && host.includes('.')) names.add(registrable(host));
    });
    if (names.size >= max || urls >= MAX_URLS) break;
  }
  return [...names];
}

/** The DNS side: the URI lists, the resolver that asks them, and their health (the self-test job keeps it). */
export interface UriLists {
  readonly resolver: DnsResolver;
  readonly lists: readonly DnsList[];
  readonly health: DnsListHealth;
}

export interface UriblDeps {
  /** Absent when no DNS list is configured: then only the local map counts. */
  readonly dns?: UriLists;
  readonly block: readonly LookupTable[];
  readonly skip: readonly LookupTable[];
}

function lookupKind(name: string): 'ip' | 'domain' {
  return parseIp(name) ? 'ip' : 'domain';
}

function verdict(symbol: string, score: number, reason: string): ScanVerdict {
  return { scanner: SCANNER, symbol, score, reason };
}

export function createUriblScanner(settings: UriblSettings, deps: UriblDeps): ContentScanner {
  async function ask(
    dns: UriLists,
    list: DnsList,
    names: readonly string[],
    signal: AbortSignal,
  ): Promise<ScanVerdict[]> {
    if (!dns.health.usable(list, 4)) {
      return [verdict('URIBL_UNHEALTHY', 0, `${list.name} skipped: its self-test fails`)];
    }
    const listed: string[] = [];
    let errors = 0;
    await Promise.all(
      names.map(async (name) => {
        const query = parseIp(name) ? listQueryName(name, list.zone) : `${name}.${list.zone}`;
        if (!query) return;
        const answer = await dns.resolver.query(query, 'A', signal);
        if (answer.status === 'error') errors++;
        if (answer.status !== 'ok') return;
        const reading = readListAnswer(list, answer.records);
        if (reading.refused.length > 0) {
          dns.health.record(list, 4, {
            ok: false,
            transient: false,
            reason: `${list.name} answered ${reading.refused.join('; ')}`,
            fix: 'query through a local recursive resolver (unbound) in dns.servers, or use the list’s key',
          });
        }
        if (reading.symbol !== '') listed.push(`${name} (${reading.codes.join(', ')})`);
      }),
    );
    const verdicts: ScanVerdict[] = [];
    if (listed.length > 0) {
      const weight = list.codes[0]?.weight ?? 0;
      verdicts.push(
        verdict(
          'URIBL_LISTED',
          Math.min(settings.max_listed_score, weight * listed.length),
          `listed by ${list.name}: ${listed.sort().join(', ')}`,
        ),
      );
    }
    if (errors > 0)
      verdicts.push(verdict('URIBL_ERROR', 0, `${list.name} gave no answer for ${errors} name(s)`));
    return verdicts;
  }

  return {
    name: SCANNER,
    async scan(message, ctx): Promise<ScanVerdict[]> {
      const found = urlNames(message, settings.max_domains);
      if (found.length === 0) return [];
      const verdicts: ScanVerdict[] = [];
      const blocked: string[] = [];
      const names: string[] = [];
      for (const name of found) {
        const query = { kind: lookupKind(name), value: name } as const;
        const hit = await searchTables(deps.block, query);
        if (hit.status === 'found') blocked.push(name);
        // A table that cannot answer skips nothing: the name is asked of the lists.
        if ((await searchTables(deps.skip, query)).status !== 'found') names.push(name);
      }
      if (blocked.length > 0) {
        verdicts.push(
          verdict(
            'URIBL_BLOCKED',
            settings.block_weight,
            `URL domain in the local block map: ${blocked.join(', ')}`,
          ),
        );
      }
      const dns = deps.dns;
      if (names.length === 0 || !dns) return verdicts;
      const perList = await Promise.all(dns.lists.map((list) => ask(dns, list, names, ctx.signal)));
      return [...verdicts, ...perList.flat()];
    },
  };
}
