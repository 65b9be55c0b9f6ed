/**
 * The SPF evaluator: mailauth's SPF implementation (RFC 7208 with its lookup limits, macros, void-lookup
 * limit), given postwarden's resolver instead of the system's, so SPF shares the DNS cache, the deadline and the
 * configured servers with every other check.
 */
import { spf } from 'mailauth/lib/spf/index.js';
import type { DnsAnswer, DnsResolver, DnsType } from '../core/dns.js';
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
function resolverFor(dns: DnsResolver, signal: AbortSignal) {
  // mailauth types the answer as strings, but reads MX answers as node:dns gives them: objects.
  return async (name: string, type: string): Promise<string[][] | string[]> => {
    if (!RESOLVABLE.has(type)) throw Object.assign(new Error(`${type} not supported`), { code: 'ENOTIMP' });
    const answer = await dns.query(name, type as DnsType, signal);
    if (answer.status !== 'ok') throw dnsError(answer, name);
    return answer.records as unknown as string[];
  };
}

export class MailauthSpf implements SpfEvaluator {
  constructor(
    private readonly dns: DnsResolver,
    /** This host's name: the receiver in mailauth's explanations. */
    private readonly receiver: string,
  ) {}

  async evaluate(query: SpfQuery, signal: AbortSignal): Promise<SpfAnswer> {
    const result = await spf({
      ip: query.ip,
      sender: query.sender,
      helo: query.helo,
      mta: this.receiver,
      resolver: resolverFor(this.dns, signal),
    });
    const status = result.status.result;
    // mailauth spells one result `temperr` in its types; anything unexpected is a temporary error, never a pass.
    const known = (SPF_RESULTS as readonly string[]).includes(status) ? (status as SpfResult) : 'temperror';
    return { result: known, comment: result.status.comment ?? '' };
  }
}
