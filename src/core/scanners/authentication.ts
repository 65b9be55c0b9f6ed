/**
 * authentication — DKIM, SPF, DMARC and ARC of the message, as scored symbols and as the Authentication-Results
 * field (RFC 8601) the delivered message carries under this host's authserv-id. The checks themselves are the
 * adapter's (src/adapters/message-auth.ts, mailauth with postwarden's resolver); this scanner turns their results
 * into verdicts and the header, so the weights and the wording are testable without DNS.
 *
 * Why these weights: a valid signature or a DMARC pass says who sent the message, not that it is wanted (spammers
 * sign their own domains), so they only lower the score a little; a DMARC failure of a domain that asks for
 * `reject` is forgery of that domain and weighs most. A passing ARC chain (a mailing list or forwarder that
 * checked the original) turns a DMARC failure into the `none` weight, as RFC 8617 suggests.
 *
 * Symbols: DKIM_VALID, DKIM_INVALID, SPF_FAIL, SPF_SOFTFAIL, DMARC_PASS, DMARC_REJECT, DMARC_QUARANTINE, DMARC_NONE.
 */
import { z } from 'zod';
import type { ContentScanner, Envelope, MessageSource, ScanVerdict } from '../content.js';
import { headerComment, propertyValue } from '../header-values.js';
import { modeSchema, scoreSchema } from '../schema.js';

export type AuthResult =
  'pass' | 'fail' | 'softfail' | 'neutral' | 'none' | 'temperror' | 'permerror' | 'policy';

export interface DkimSignatureResult {
  readonly result: AuthResult;
  /** d= and s= of the signature, as written by the signer. */
  readonly domain: string;
  readonly selector: string;
  /** The first characters of b=, which tell signatures of one domain apart (RFC 6008). */
  readonly signaturePrefix: string;
  /** The signing domain aligns with the From domain (DMARC's sense). */
  readonly aligned: boolean;
  readonly comment?: string;
}

export interface AuthReport {
  readonly dkim: readonly DkimSignatureResult[];
  /** Absent when the client is not known (no XFORWARD). */
  readonly spf?: { readonly result: AuthResult; readonly mailfrom: string; readonly helo: string };
  /** Absent when the message has no usable From domain. */
  readonly dmarc?: {
    readonly result: AuthResult;
    /** The policy the From domain publishes, `none` without one. */
    readonly policy: 'reject' | 'quarantine' | 'none';
    readonly fromDomain: string;
  };
  readonly arc?: { readonly result: AuthResult };
}

/** The adapter port: runs the checks over the raw message. Throws only for failures of its own, never for a
 * message that fails authentication. */
export interface MessageAuthenticator {
  authenticate(source: MessageSource, envelope: Envelope, signal: AbortSignal): Promise<AuthReport>;
}

export const authenticationSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    authserv_id: z
      .string()
      .max(255)
      .regex(/^[A-Za-z0-9.-]*$/, 'not a host name; use e.g. mx.example.org')
      .default('')
      .describe(
        'The authserv-id of the Authentication-Results field, ' +
          'and of the incoming copies that are removed; empty: the host name (hostname)',
      ),
    timeout_ms: z
      .number()
      .int()
      .min(100)
      .max(60_000)
      .default(10_000)
      .describe('Deadline of all the checks of one message (DNS lookups included)'),
    dkim_valid_score: scoreSchema.default(-0.2).describe('A valid DKIM signature'),
    dkim_invalid_score: scoreSchema
      .default(1)
      .describe('Signatures that all fail to verify (a temporary DNS error does not count)'),
    spf_fail_score: scoreSchema
      .default(1)
      .describe('SPF fail for the client (the policy check may also act on it)'),
    spf_softfail_score: scoreSchema.default(0.5).describe('SPF softfail'),
    dmarc_pass_score: scoreSchema.default(-0.5).describe('DMARC pass for the From domain'),
    dmarc_reject_score: scoreSchema
      .default(6)
      .describe('DMARC fail of a From domain whose policy is reject: forgery of that domain'),
    dmarc_quarantine_score: scoreSchema.default(3).describe('DMARC fail, policy quarantine'),
    dmarc_none_score: scoreSchema
      .default(0.5)
      .describe('DMARC fail, policy none (or a passing ARC chain vouches for a forwarder)'),
  })
  .describe('DKIM, SPF, DMARC and ARC as scored symbols and an Authentication-Results field (RFC 8601)');

export type AuthenticationSettings = z.infer<typeof authenticationSchema>;

const SCANNER = 'authentication';

/** Signatures verified at most: each costs a DNS lookup and a pass over the message, and no real message has more
 * than a few (its author's domain, an ESP, a list). Past it the message is not authenticated at all. */
export const MAX_DKIM_SIGNATURES = 10;

/** Longest comment kept per result in the header. */
const MAX_COMMENT = 120;

/** The Authentication-Results value (after `Authentication-Results:`), one result per folded line. */
export function authenticationResults(authservId: string, report: AuthReport): string {
  const results: string[] = [];
  for (const sig of report.dkim) {
    const why = sig.comment ? ` (${headerComment(sig.comment, MAX_COMMENT)})` : '';
    const b = sig.signaturePrefix.replace(/[^A-Za-z0-9+/]/g, '').slice(0, 8);
    results.push(
      `dkim=${sig.result}${why} header.d=${propertyValue(sig.domain)} header.s=${propertyValue(sig.selector)}` +
        (b ? ` header.b=${propertyValue(b)}` : ''),
    );
  }
  if (report.dkim.length === 0) results.push('dkim=none');
  if (report.spf) {
    const { result, mailfrom, helo } = report.spf;
    results.push(
      mailfrom === ''
        ? `spf=${result} smtp.helo=${propertyValue(helo || 'unknown')}`
        : `spf=${result} smtp.mailfrom=${propertyValue(mailfrom)}`,
    );
  }
  if (report.arc) results.push(`arc=${report.arc.result}`);
  if (report.dmarc) {
    const { result, policy, fromDomain } = report.dmarc;
    results.push(`dmarc=${result} (p=${policy}) header.from=${propertyValue(fromDomain)}`);
  }
  return `${authservId};\r\n\t${results.join(';\r\n\t')}`;
}

export function createAuthenticationScanner(
  settings: AuthenticationSettings,
  authenticator: MessageAuthenticator,
  /** The authserv-id in use: the setting, or the host name. */
  authservId: string,
): ContentScanner {
  return {
    name: SCANNER,
    async scan(message, ctx): Promise<ScanVerdict[]> {
      const signatures = message.headers.filter((h) => h.name.toLowerCase() === 'dkim-signature').length;
      if (signatures > MAX_DKIM_SIGNATURES) {
        return [
          verdict(
            'DKIM_INVALID',
            settings.dkim_invalid_score,
            `${signatures} DKIM signatures: more than ${MAX_DKIM_SIGNATURES} are not verified`,
          ),
        ];
      }
      const report = await authenticator.authenticate(ctx.source, message.envelope, ctx.signal);
      ctx.addHeader?.({ name: 'Authentication-Results', value: authenticationResults(authservId, report) });
      return verdictsOf(settings, report);
    },
  };
}

function verdict(symbol: string, score: number, reason: string): ScanVerdict {
  return { scanner: SCANNER, symbol, score, reason };
}

export function verdictsOf(settings: AuthenticationSettings, report: AuthReport): ScanVerdict[] {
  const verdicts: ScanVerdict[] = [];
  const valid = report.dkim.filter((sig) => sig.result === 'pass');
  if (valid.length > 0) {
    verdicts.push(
      verdict(
        'DKIM_VALID',
        settings.dkim_valid_score,
        `valid DKIM signature of ${valid.map((s) => s.domain).join(', ')}`,
      ),
    );
  } else if (
    report.dkim.length > 0 &&
    report.dkim.every(
      (sig) => sig.result === 'fail' || sig.result === 'permerror' || sig.result === 'neutral',
    )
  ) {
    verdicts.push(
      verdict(
        'DKIM_INVALID',
        settings.dkim_invalid_score,
        `no DKIM signature verifies (${report.dkim.map((s) => `${s.domain}: ${s.result}`).join(', ')})`,
      ),
    );
  }
  const spf = report.spf;
  if (spf?.result === 'fail')
    verdicts.push(verdict('SPF_FAIL', settings.spf_fail_score, `SPF fail for ${spf.mailfrom || spf.helo}`));
  if (spf?.result === 'softfail') {
    verdicts.push(
      verdict('SPF_SOFTFAIL', settings.spf_softfail_score, `SPF softfail for ${spf.mailfrom || spf.helo}`),
    );
  }
  const dmarc = report.dmarc;
  if (dmarc?.result === 'pass') {
    verdicts.push(verdict('DMARC_PASS', settings.dmarc_pass_score, `DMARC pass for ${dmarc.fromDomain}`));
  } else if (dmarc?.result === 'fail') {
    const vouched = report.arc?.result === 'pass';
    const [symbol, score] = vouched
      ? ['DMARC_NONE', settings.dmarc_none_score]
      : dmarc.policy === 'reject'
        ? ['DMARC_REJECT', settings.dmarc_reject_score]
        : dmarc.policy === 'quarantine'
          ? ['DMARC_QUARANTINE', settings.dmarc_quarantine_score]
          : ['DMARC_NONE', settings.dmarc_none_score];
    verdicts.push(
      verdict(
        symbol,
        score,
        `DMARC fail for ${dmarc.fromDomain} (policy ${dmarc.policy}${vouched ? '; a passing ARC chain vouches for a forwarder' : ''})`,
      ),
    );
  }
  return verdicts;
}
