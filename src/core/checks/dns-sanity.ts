/**
 * dns_sanity — what DNS says about the sender's domain, the client's reverse name and its HELO name, for clients
 * that are neither in `local_networks` nor authenticated:
 *
 *   SENDER_DOMAIN_UNKNOWN   no MX, A or AAAA for the sender's domain (NXDOMAIN or nothing)  reject 550 5.1.8
 *   SENDER_DOMAIN_NULL_MX   the domain publishes a null MX (RFC 7505): it sends no mail     reject 550 5.7.27
 *   SENDER_DOMAIN_TEMPFAIL  DNS could not tell (timeout, SERVFAIL)                     defer_if_permit 450 4.1.8
 *   CLIENT_RDNS_MISSING     the client address has no PTR name                          score
 *   CLIENT_RDNS_UNCONFIRMED the PTR name does not resolve back to the address           score
 *   HELO_UNRESOLVABLE       the HELO host name has no A or AAAA                         score
 *
 * A temporary DNS failure never rejects. The reverse-DNS facts come from Postfix itself, which already looked
 * them up: `reverse_client_name` (the PTR name, or `unknown`) and `client_name` (the name only when it is
 * forward-confirmed), so they cost no query here.
 */
import { z } from 'zod';
import type { DnsAnswer, DnsResolver, DnsType } from '../dns.js';
import type { Locality } from '../locality.js';
import type { PolicyCheck } from '../pipeline.js';
import { domainOf, type PolicyRequest } from '../request.js';
import { modeSchema, scoreSchema } from '../schema.js';
import type { Verdict } from '../verdict.js';
import { isHostname } from './helo.js';

export const dnsSanitySchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    sender_domain: z
      .enum(['reject', 'score', 'off'])
      .default('reject')
      .describe(
        'A sender domain with no MX, A or AAAA (or a null MX): reject (550), score, or off; a DNS failure only defers',
      ),
    sender_domain_score: scoreSchema.default(5).describe('Score when `sender_domain: score`'),
    rdns_missing_score: scoreSchema.default(1).describe('Score for a client address without a PTR name'),
    rdns_unconfirmed_score: scoreSchema
      .default(0.5)
      .describe('Score for a PTR name that does not resolve back to the client address'),
    helo_unresolvable_score: scoreSchema
      .default(1)
      .describe('Score for a HELO host name with no A or AAAA record'),
  })
  .describe('DNS sanity of the sender domain, the client reverse name and the HELO name');

export type DnsSanitySettings = z.infer<typeof dnsSanitySchema>;

const CHECK = 'dns_sanity';

type Existence = 'exists' | 'null-mx' | 'absent' | { readonly failed: string };

const absent = (answer: DnsAnswer<DnsType>) => answer.status === 'nxdomain' || answer.status === 'nodata';

/** Does the domain take mail: an MX (not the null MX), else an A or AAAA (RFC 5321 §5.1 implicit MX). */
async function senderDomain(domain: string, dns: DnsResolver, signal: AbortSignal): Promise<Existence> {
  const mx = await dns.query(domain, 'MX', signal);
  if (mx.status === 'ok') {
    const isNull = mx.records.length === 1 && mx.records[0]?.exchange.replace(/\.$/, '') === '';
    return isNull ? 'null-mx' : 'exists';
  }
  if (mx.status === 'error') return { failed: mx.reason };
  if (mx.status === 'nxdomain') return 'absent';
  return addressExists(domain, dns, signal);
}

/** An A or AAAA record exists; a failure of one of them counts only when the other found nothing. */
async function addressExists(name: string, dns: DnsResolver, signal: AbortSignal): Promise<Existence> {
  const [a, aaaa] = await Promise.all([dns.query(name, 'A', signal), dns.query(name, 'AAAA', signal)]);
  if (a.status === 'ok' || aaaa.status === 'ok') return 'exists';
  if (absent(a) && absent(aaaa)) return 'absent';
  const failure = a.status === 'error' ? a : aaaa;
  return { failed: failure.status === 'error' ? failure.reason : 'no answer' };
}

function rdnsVerdicts(settings: DnsSanitySettings, request: PolicyRequest): Verdict[] {
  const reverse = request.reverseClientName;
  // Both absent: Postfix did not send them (peername lookups off); nothing to judge.
  if (reverse === '' && request.clientName === '') return [];
  if (reverse === 'unknown' || reverse === '') {
    return [
      {
        check: CHECK,
        symbol: 'CLIENT_RDNS_MISSING',
        score: settings.rdns_missing_score,
        reason: `client ${request.clientAddress} has no reverse DNS name`,
      },
    ];
  }
  if (request.clientName === 'unknown') {
    return [
      {
        check: CHECK,
        symbol: 'CLIENT_RDNS_UNCONFIRMED',
        score: settings.rdns_unconfirmed_score,
        reason: `reverse name ${reverse} does not resolve back to ${request.clientAddress}`,
      },
    ];
  }
  return [];
}

function senderVerdict(
  settings: DnsSanitySettings,
  domain: string,
  existence: Existence,
): Verdict | undefined {
  if (existence === 'exists') return undefined;
  if (typeof existence === 'object') {
    // Only a sender-domain rule that rejects defers when DNS cannot tell; a scoring one just notes it.
    if (settings.sender_domain !== 'reject') {
      return {
        check: CHECK,
        symbol: 'SENDER_DOMAIN_TEMPFAIL',
        score: 0,
        reason: `sender domain ${domain}: DNS gave no answer (${existence.failed})`,
      };
    }
    return {
      check: CHECK,
      symbol: 'SENDER_DOMAIN_TEMPFAIL',
      score: 0,
      action: 'defer_if_permit',
      reason: `sender domain ${domain}: DNS gave no answer (${existence.failed})`,
      reply: {
        code: 450,
        dsn: '4.1.8',
        text: `Sender domain ${domain} could not be verified (DNS lookup failed), try again later`,
      },
    };
  }
  const nullMx = existence === 'null-mx';
  const symbol = nullMx ? 'SENDER_DOMAIN_NULL_MX' : 'SENDER_DOMAIN_UNKNOWN';
  const reason = nullMx
    ? `sender domain ${domain} publishes a null MX: it sends and receives no mail`
    : `sender domain ${domain} has no MX, A or AAAA record`;
  if (settings.sender_domain === 'score') {
    return { check: CHECK, symbol, score: settings.sender_domain_score, reason };
  }
  const reply = nullMx
    ? {
        code: 550,
        dsn: '5.7.27',
        text: `Sender domain ${domain} does not accept mail (null MX)`,
      }
    : { code: 550, dsn: '5.1.8', text: `Sender domain ${domain} not found` };
  return { check: CHECK, symbol, score: 0, action: 'reject', reason, reply };
}

const SENDER_STATES = new Set(['MAIL', 'RCPT', 'DATA', 'END-OF-MESSAGE']);

export function createDnsSanityCheck(
  settings: DnsSanitySettings,
  locality: Locality,
  dns: DnsResolver,
): PolicyCheck {
  return {
    name: CHECK,
    async run(request, ctx): Promise<Verdict[]> {
      if (await locality.isTrustedClient(request)) return [];
      const verdicts = rdnsVerdicts(settings, request);
      const domain = domainOf(request.sender);
      const askSender =
        settings.sender_domain !== 'off' && domain !== '' && SENDER_STATES.has(request.protocolState);
      const helo = request.heloName.replace(/\.$/, '');
      const askHelo = settings.helo_unresolvable_score !== 0 && helo.includes('.') && isHostname(helo);
      const [sender, heloExists] = await Promise.all([
        askSender ? senderDomain(domain, dns, ctx.signal) : undefined,
        askHelo ? addressExists(helo, dns, ctx.signal) : undefined,
      ]);
      if (heloExists === 'absent') {
        verdicts.push({
          check: CHECK,
          symbol: 'HELO_UNRESOLVABLE',
          score: settings.helo_unresolvable_score,
          reason: `HELO name ${helo} has no A or AAAA record`,
        });
      }
      const senderResult = sender === undefined ? undefined : senderVerdict(settings, domain, sender);
      if (senderResult) verdicts.push(senderResult);
      return verdicts;
    },
  };
}
