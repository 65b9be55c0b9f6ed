/**
 * The reply chokepoint (STYLE.md §3): the one function that turns a decision into the `action=` text Postfix
 * reads. It enforces what every answer must be:
 * - never `OK`: postwarden is one restriction among several, so "no objection" is `DUNNO`;
 * - code and enhanced status code agree in class, and are 4xx or 5xx;
 * - with soft_bounce, every 5xx becomes 4xx (a trial period that bounces nothing);
 * - text is one line of printable ASCII, at most MAX_TEXT characters (a header MAX_HEADER), and never carries secrets (verdict texts
 *   are written by checks from request data; this strips what could break the protocol or the log).
 */
import type { OnError } from '../core/pipeline.js';
import type { Decision, ReplySpec } from '../core/verdict.js';

export const MAX_TEXT = 200;
/** A prepended header stays well inside RFC 5322's 998 characters per line (Postfix does not fold it). */
export const MAX_HEADER = 900;

export function sanitizeText(text: string, max = MAX_TEXT): string {
  const flat = text
    .replace(/[^\x20-\x7e]/g, (c) => (c === '\u2019' ? "'" : c <= '\x1f' || c === '\x7f' ? ' ' : '?'))
    .replace(/\s+/g, ' ')
    .trim();
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}

interface Options {
  readonly softBounce: boolean;
}

function numeric(spec: ReplySpec, fallbackClass: 4 | 5, softBounce: boolean): string {
  let code =
    Number.isInteger(spec.code) && spec.code >= 400 && spec.code <= 599
      ? spec.code
      : fallbackClass * 100 + 51;
  if (softBounce && code >= 500) code -= 100;
  const cls = Math.floor(code / 100);
  const dsn = /^[245]\.\d{1,3}\.\d{1,3}$/.test(spec.dsn) ? `${cls}${spec.dsn.slice(1)}` : `${cls}.7.1`;
  return `${code} ${dsn} ${sanitizeText(spec.text)}`;
}

export function policyAction(decision: Decision, options: Options): string {
  const reply = decision.reply;
  switch (decision.action) {
    case 'dunno':
      return 'DUNNO';
    case 'prepend':
      return decision.header ? `PREPEND ${sanitizeText(decision.header, MAX_HEADER)}` : 'DUNNO';
    case 'reject':
      if (reply) return numeric(reply, 5, options.softBounce);
      return `${options.softBounce ? 'DEFER' : 'REJECT'} ${sanitizeText(decision.decidedBy?.reason ?? 'Access denied')}`;
    case 'defer':
      if (reply) return numeric(reply, 4, true);
      return `DEFER ${sanitizeText(decision.decidedBy?.reason ?? 'Try again later')}`;
    case 'hold':
      // Postfix logs the text; the client only sees its message accepted.
      return `HOLD ${sanitizeText(reply?.text ?? decision.decidedBy?.reason ?? 'held by postwarden')}`;
    case 'defer_if_permit': {
      const dsn = reply && /^4\.\d{1,3}\.\d{1,3}$/.test(reply.dsn) ? reply.dsn : '4.7.1';
      const text = reply?.text ?? decision.decidedBy?.reason ?? 'Try again later';
      return `DEFER_IF_PERMIT ${dsn} ${sanitizeText(text)}`;
    }
  }
}

/** The answer when the face itself failed before a decision existed. */
export function errorAction(onError: OnError): string {
  return onError === 'dunno'
    ? 'DUNNO'
    : 'DEFER_IF_PERMIT 4.3.0 Temporary failure in policy service, try again later';
}
