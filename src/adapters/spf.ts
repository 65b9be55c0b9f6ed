/**
 * The SPF evaluator: mailauth's SPF implementation (RFC 7208 with its lookup limits, macros, void-lookup
 * limit), given postwarden's resolver instead of the system's, so SPF shares the DNS cache, the deadline and the
 * configured servers with every other check.
 */
import { spf } from 'mailauth/lib/spf/index.js';
import type { DnsAnswer, DnsResolver, DnsType } from '../core/dns.js';
import { TtlCache } from '../util/ttl-cache.js';
import {
  SPF_RESULTS,
  type SpfAnswer,
  type SpfEvaluator,
  type SpfQuery,
  type SpfResult,
} from '../core/checks/spf.js';

const RESOLVABLE: ReadonlySet<string> = new Set(['A', 'AAAA', 'TXT', 'MX', 'PTR']);

/** The error codes mailauth reads (those of node:dns), for an answer that is not records. */
const ERROR_CODES: Readonly<Record<string, string>> = {
  nxdomain: 'ENOTFOUND',
  nodata: 'ENODATA',
  timeout: 'ETIMEOUT',
  servfail: 'ESERVFAIL',
  refused: 'EREFUSED',
  error: 'EFORMERR',
};

function dnsError(answer: Exclude<DnsAnswer<DnsType>, { status: 'ok' }>, name: string): Error {
  const key = answer.status === 'error' ? answer.kind : answer.status;
  const error = new Error(`${name}: ${answer.status === 'error' ? answer.reason : answer.status}`);
  return Object.assign(error, { code: ERROR_CODES[key] ?? 'EFORMERR' });
}

/** mailauth's resolver signature (that of `dns.promises.resolve`), answered from ours. */
export function mailauthResolver(dns: DnsResolver, signal: AbortSignal) {
  // mailauth types the answer as strings, but reads MX answers as node:dns gives them: objects.
  return async (name: string, type: string): Promise<string[][] | string[]> => {
    if (!RESOLVABLE.has(type)) throw Object.assign(new Error(`${type} not supported`), { code: 'ENOTIMP' });
    const answer = await dns.query(name, type as DnsType, signal);
    if (answer.status !== 'ok') throw dnsError(answer, name);
    return answer.records as unknown as string[];
  };
}

/** Results remembered at most, and for how long: the same client and sender within a minute get the same answer
 * (SPF results depend on the DNS answers, which the resolver caches anyway; this saves re-evaluating them, about a
 * quarter of a policy request with SPF on). Temporary errors are never remembered. */
const RESULT_CACHE_MAX = 10_000;
const RESULT_CACHE_MS = 60_000;

export class MailauthSpf implements SpfEvaluator {
  private readonly results: TtlCache<SpfAnswer>;

  constructor(
    private readonly dns: DnsResolver,
    /** This host's name: the receiver in mailauth's explanations. */
    private readonly receiver: string,
    now: () => number = Date.now,
  ) {
    this.results = new TtlCache(RESULT_CACHE_MAX, now);
  }

  async evaluate(query: SpfQuery, signal: AbortSignal): Promise<SpfAnswer> {
    // The whole sender, not only its domain: SPF macros may use the local part.
    const key = `${query.ip}|${query.sender.toLowerCase()}|${query.helo.toLowerCase()}`;
    const known = this.results.get(key);
    if (known) return known;
    const answer = await this.evaluateNow(query, signal);
    if (answer.result !== 'temperror') this.results.set(key, answer, RESULT_CACHE_MS);
    return answer;
  }

  private async evaluateNow(query: SpfQuery, signal: AbortSignal): Promise<SpfAnswer> {
    const result = await spf({
      ip: query.ip,
      sender: query.sender,
      helo: query.helo,
      mta: this.receiver,
      resolver: mailauthResolver(this.dns, signal),
    });
    const status = result.status.result;
    // mailauth spells one result `temperr` in its types; anything unexpected is a temporary error, never a pass.
    const known = (SPF_RESULTS as readonly string[]).includes(status) ? (status as SpfResult) : 'temperror';
    return { result: known, comment: result.status.comment ?? '' };
  }
}
