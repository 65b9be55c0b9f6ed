/**
 * The message authenticator: DKIM signatures, DMARC and ARC by mailauth, SPF by the SPF evaluator the policy check
 * uses (so a message whose client the policy face just checked costs no new evaluation), all through postwarden's
 * resolver: its cache, its deadline, its configured servers.
 */
import { arc } from 'mailauth/lib/arc/index.js';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { dmarc } from 'mailauth/lib/dmarc/index.js';
import { Readable } from 'node:stream';
import type { SpfEvaluator } from '../core/checks/spf.js';
import type { Envelope, MessageSource } from '../core/content.js';
import type { DnsResolver } from '../core/dns.js';
import type {
  AuthReport,
  AuthResult,
  DkimSignatureResult,
  MessageAuthenticator,
} from '../core/scanners/authentication.js';
import { domainOf } from '../core/request.js';
import { mailauthResolver } from './spf.js';

const RESULTS: ReadonlySet<string> = new Set([
  'pass',
  'fail',
  'softfail',
  'neutral',
  'none',
  'temperror',
  'permerror',
  'policy',
]);

/** mailauth's result words as ours; anything else (it spells one `temperr`) a temporary error, never a pass. */
function resultOf(value: string | undefined): AuthResult {
  return value !== undefined && RESULTS.has(value) ? (value as AuthResult) : 'temperror';
}

function policyOf(value: string | undefined): 'reject' | 'quarantine' | 'none' {
  return value === 'reject' || value === 'quarantine' ? value : 'none';
}

export class MailauthAuthenticator implements MessageAuthenticator {
  constructor(
    private readonly dns: DnsResolver,
    private readonly spf: SpfEvaluator,
    /** Shortest RSA key accepted (mailauth's default, RFC 8301). */
    private readonly minBitLength = 1024,
  ) {}

  async authenticate(source: MessageSource, envelope: Envelope, signal: AbortSignal): Promise<AuthReport> {
    const resolver = mailauthResolver(this.dns, signal);
    const verified = await dkimVerify(Readable.from(source.chunks()), {
      resolver,
      minBitLength: this.minBitLength,
    });
    signal.throwIfAborted();
    const dkim: DkimSignatureResult[] = verified.results
      .filter((r) => r.signingDomain) // mailauth's stand-in result for an unsigned message
      .map((r) => ({
        result: resultOf(r.status.result),
        domain: r.signingDomain,
        selector: r.selector ?? '',
        signaturePrefix: (r as { signature?: string }).signature?.slice(0, 8) ?? '',
        aligned: Boolean((r.status as { aligned?: unknown }).aligned),
        ...(typeof r.status.comment === 'string' ? { comment: r.status.comment } : {}),
      }));

    const client = envelope.client;
    const spf = client
      ? {
          ...(await this.spf.evaluate(
            { ip: client.address, sender: envelope.sender, helo: client.helo },
            signal,
          )),
          mailfrom: envelope.sender,
          helo: client.helo,
        }
      : undefined;
    const chain = (verified as { arc?: Parameters<typeof arc>[0] }).arc;
    const arcResult = chain ? await arc(chain, { resolver, minBitLength: this.minBitLength }) : undefined;
    signal.throwIfAborted();

    const spfDomain = spf ? domainOf(spf.mailfrom) || spf.helo : '';
    const fromAddresses = verified.headerFrom ?? [];
    // DMARC needs exactly one From author; mailauth answers none or an error otherwise.
    const evaluated =
      fromAddresses.length === 1
        ? await dmarc({
            headerFrom: fromAddresses,
            spfDomains: spf?.result === 'pass' && spfDomain ? [spfDomain] : [],
            dkimDomains: verified.results
              .filter((r) => r.status.result === 'pass' && r.signingDomain)
              .map((r) => ({ id: r.id ?? '', domain: r.signingDomain, aligned: true })),
            ...(arcResult ? { arcResult } : {}),
            resolver,
          })
        : false;
    return {
      dkim,
      ...(spf ? { spf: { result: spf.result, mailfrom: spf.mailfrom, helo: spf.helo } } : {}),
      ...(arcResult && arcResult.status.result !== 'none'
        ? { arc: { result: resultOf(arcResult.status.result) } }
        : {}),
      ...(evaluated
        ? {
            dmarc: {
              result: resultOf(evaluated.status.result),
              policy: policyOf(evaluated.policy),
              fromDomain: domainOf(fromAddresses[0] ?? '') || evaluated.domain,
            },
          }
        : {}),
    };
  }
}
