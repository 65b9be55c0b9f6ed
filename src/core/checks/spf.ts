/**
 * spf — the SPF result (RFC 7208) for the MAIL FROM identity, or for HELO when the sender is null (§2.4), as a
 * score, an optional reject on `fail`, and a header: `Received-SPF` (§9.1) or `Authentication-Results`
 * (RFC 8601). The evaluation itself (DNS, macros, the 10-lookup and 2-void limits) is behind a port; the
 * adapter uses mailauth through postwarden's own resolver.
 *
 * What it never does: reject on `softfail`, `neutral`, `none` or `temperror` (a DNS failure is not the
 * sender's fault; RFC 7208 §8.6); reject on `permerror` unless `reject_permerror` says so (a broken record
 * usually means a domain owner's typo, §8.7). The result is computed once per message (recipients share it),
 * and the header goes out once per message.
 *
 * Symbols: SPF_PASS, SPF_FAIL, SPF_SOFTFAIL, SPF_NEUTRAL, SPF_NONE, SPF_TEMPERROR, SPF_PERMERROR (greylisting's
 * `bypass_symbols` reads SPF_PASS by default).
 */
import { z } from 'zod';
import { parseIp } from '../../util/ip.js';
import { headerComment, headerValue } from '../header-values.js';
import type { Locality } from '../locality.js';
import type { PolicyCheck, PolicySession } from '../pipeline.js';
import type { PolicyRequest } from '../request.js';
import { modeSchema, scoreSchema } from '../schema.js';
import type { Verdict } from '../verdict.js';

export const SPF_RESULTS = ['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror'] as const;
export type SpfResult = (typeof SPF_RESULTS)[number];

export interface SpfQuery {
  readonly ip: string;
  /** MAIL FROM; '' for the null sender (then the HELO identity is checked). */
  readonly sender: string;
  readonly helo: string;
}

export interface SpfAnswer {
  readonly result: SpfResult;
  /** The evaluator's explanation, e.g. "domain of a@b designates 192.0.2.1 as permitted sender". */
  readonly comment: string;
}

/** The SPF evaluator port (src/adapters/spf.ts). It answers `temperror` rather than throw on DNS trouble. */
export interface SpfEvaluator {
  evaluate(query: SpfQuery, signal: AbortSignal): Promise<SpfAnswer>;
}

export const spfSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    reject_fail: z
      .boolean()
      .default(false)
      .describe('Reject SPF `fail` (550 5.7.23); off, it only scores and is shown in the header'),
    reject_permerror: z
      .boolean()
      .default(false)
      .describe('Reject a broken SPF record (550 5.5.2); off by default, as pypolicyd-spf'),
    header: z
      .enum(['received-spf', 'authentication-results', 'none'])
      .default('received-spf')
      .describe('The header prepended to the message with the result'),
    authserv_id: z
      .string()
      .max(253)
      .regex(/^[A-Za-z0-9.-]*$/, 'not a host name; use letters, digits, dots and hyphens')
      .default('')
      .describe('The name in Authentication-Results and Received-SPF (empty = `hostname`)'),
    scores: z
      .strictObject({
        pass: scoreSchema.default(-1),
        fail: scoreSchema.default(5),
        softfail: scoreSchema.default(2),
        neutral: scoreSchema.default(0),
        none: scoreSchema.default(0.5),
        temperror: scoreSchema.default(0),
        permerror: scoreSchema.default(1),
      })
      .prefault({})
      .describe('Score per SPF result'),
  })
  .describe('SPF for the MAIL FROM identity (HELO for the null sender), with mailauth');

export type SpfSettings = z.infer<typeof spfSchema>;

const CHECK = 'spf';

/** Longest explanation kept in a header: the comment is the evaluator's prose, the key-value pairs matter. */
const MAX_COMMENT = 200;

export interface SpfIdentity {
  readonly identity: 'mailfrom' | 'helo';
  /** The checked name: the sender address, or postmaster@HELO for the null sender. */
  readonly checked: string;
}

export function identityOf(request: Pick<PolicyRequest, 'sender' | 'heloName'>): SpfIdentity {
  return request.sender === ''
    ? { identity: 'helo', checked: `postmaster@${request.heloName}` }
    : { identity: 'mailfrom', checked: request.sender };
}

/** The header line for a result, in the configured form. */
export function spfHeader(
  form: 'received-spf' | 'authentication-results',
  receiver: string,
  request: Pick<PolicyRequest, 'sender' | 'heloName' | 'clientAddress'>,
  answer: SpfAnswer,
): string {
  const { identity } = identityOf(request);
  if (form === 'authentication-results') {
    const property =
      identity === 'mailfrom'
        ? `smtp.mailfrom=${headerValue(request.sender)}`
        : `smtp.helo=${headerValue(request.heloName)}`;
    return `Authentication-Results: ${receiver}; spf=${answer.result} ${property}`;
  }
  const pairs = [
    `client-ip=${parseIp(request.clientAddress)?.text ?? headerValue(request.clientAddress)}`,
    `envelope-from=${headerValue(request.sender === '' ? '<>' : request.sender)}`,
    `helo=${headerValue(request.heloName || 'unknown')}`,
    `receiver=${headerValue(receiver)}`,
    `identity=${identity}`,
  ];
  const why = answer.comment ? ` (${headerComment(answer.comment, MAX_COMMENT)})` : '';
  return `Received-SPF: ${answer.result}${why} ${pairs.join('; ')};`;
}

const SKIPPED_STATES = new Set(['CONNECT', 'EHLO', 'HELO', 'VRFY', 'ETRN', 'UNKNOWN']);

export function createSpfCheck(
  settings: Pick<SpfSettings, 'reject_fail' | 'reject_permerror' | 'header' | 'scores'>,
  receiver: string,
  locality: Locality,
  evaluator: SpfEvaluator,
): PolicyCheck {
  /** One evaluation per message: later recipients share it (and the DNS answers behind it). */
  function evaluate(request: PolicyRequest, session: PolicySession, signal: AbortSignal): Promise<SpfAnswer> {
    const key = `${CHECK} ${request.clientAddress} ${request.sender} ${request.heloName}`;
    const known = session.memo.get(key) as Promise<SpfAnswer> | undefined;
    if (known) return known;
    const pending = evaluator.evaluate(
      { ip: request.clientAddress, sender: request.sender, helo: request.heloName },
      signal,
    );
    session.memo.set(key, pending);
    // A failed evaluation must not be remembered for the next recipient.
    pending.catch(() => session.memo.delete(key));
    return pending;
  }

  return {
    name: CHECK,
    async run(request, ctx): Promise<Verdict[]> {
      if (SKIPPED_STATES.has(request.protocolState) || !parseIp(request.clientAddress)) return [];
      if (request.sender === '' && request.heloName === '') return [];
      if (await locality.isTrustedClient(request)) return [];
      const answer = await evaluate(request, ctx.session, ctx.signal);
      const { identity, checked } = identityOf(request);
      const symbol = `SPF_${answer.result.toUpperCase()}`;
      const reason = `SPF ${answer.result} for ${identity} ${checked} from ${request.clientAddress}`;
      const score = settings.scores[answer.result];
      if (answer.result === 'fail' && settings.reject_fail) {
        const text = `SPF fail: ${checked} does not designate ${request.clientAddress} as permitted sender`;
        return [
          {
            check: CHECK,
            symbol,
            score,
            action: 'reject',
            reason,
            reply: { code: 550, dsn: '5.7.23', text },
          },
        ];
      }
      if (answer.result === 'permerror' && settings.reject_permerror) {
        const text = `SPF permanent error for ${checked}: the domain's SPF record is broken`;
        return [
          { check: CHECK, symbol, score, action: 'reject', reason, reply: { code: 550, dsn: '5.5.2', text } },
        ];
      }
      if (settings.header === 'none') return [{ check: CHECK, symbol, score, reason }];
      const header = spfHeader(settings.header, receiver, request, answer);
      return [{ check: CHECK, symbol, score, action: 'prepend', reason, header }];
    },
  };
}
