/**
 * limits — recipients per message and message size.
 *
 * Recipients are counted at RCPT per message on the policy connection (Postfix's `instance`): past the limit
 * each further RCPT gets `452 4.5.3`, the answer RFC 5321 asks for, so a client sends the rest later. At DATA and
 * END-OF-MESSAGE Postfix's own `recipient_count` is checked as a backstop. Size is Postfix's `size` attribute:
 * the MAIL FROM `SIZE=` declaration, and the real size at END-OF-MESSAGE.
 *
 * Lengths: an address longer than RFC 5321 allows (a path of 256 octets, so 254 for the address) or a HELO name
 * longer than a domain may be (255) is refused here, before any table is asked about it: no legitimate mail
 * needs one, and an overlong query must not be able to make a table answer "error" instead of "listed".
 */
import { z } from 'zod';
import type { PolicyCheck } from '../pipeline.js';
import { modeSchema } from '../schema.js';
import type { Verdict } from '../verdict.js';

export const limitsSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    max_recipients: z
      .number()
      .int()
      .min(0)
      .max(100_000)
      .default(1000)
      .describe('Recipients per message; 0 = no limit'),
    max_message_bytes: z
      .number()
      .int()
      .min(0)
      .max(2 ** 40)
      .default(52_428_800)
      .describe('Message size in bytes; 0 = no limit'),
  })
  .describe('Per-message limits: recipients, size, and address and HELO lengths (RFC 5321)');

export type LimitsSettings = z.infer<typeof limitsSchema>;

const CHECK = 'limits';

/** RFC 5321 §4.5.3.1.3: a path is at most 256 octets, angle brackets included. */
export const MAX_ADDRESS_LENGTH = 254;
/** RFC 1035: a domain name is at most 255 octets. */
export const MAX_HELO_LENGTH = 255;

function tooLong(symbol: string, code: number, dsn: string, text: string, length: number): Verdict[] {
  return [
    {
      check: CHECK,
      symbol,
      score: 0,
      action: 'reject',
      reason: `${text} (${length} characters)`,
      reply: { code, dsn, text },
    },
  ];
}

export function createLimitsCheck(settings: Omit<LimitsSettings, 'mode'>): PolicyCheck {
  const { max_recipients: maxRecipients, max_message_bytes: maxBytes } = settings;
  return {
    name: CHECK,
    run(request, ctx): Verdict[] {
      if (request.heloName.length > MAX_HELO_LENGTH) {
        return tooLong(
          'HELO_TOO_LONG',
          501,
          '5.5.2',
          'Helo command rejected: name too long',
          request.heloName.length,
        );
      }
      if (request.sender.length > MAX_ADDRESS_LENGTH) {
        return tooLong('SENDER_TOO_LONG', 501, '5.1.7', 'Sender address too long', request.sender.length);
      }
      if (request.recipient.length > MAX_ADDRESS_LENGTH) {
        return tooLong(
          'RECIPIENT_TOO_LONG',
          501,
          '5.1.3',
          'Recipient address too long',
          request.recipient.length,
        );
      }
      if (maxBytes > 0 && request.size > maxBytes) {
        const text = 'Message size exceeds fixed limit';
        return [
          {
            check: CHECK,
            symbol: 'MESSAGE_TOO_BIG',
            score: 0,
            action: 'reject',
            reason: `${text}: ${request.size} > ${maxBytes} bytes`,
            reply: { code: 552, dsn: '5.3.4', text },
          },
        ];
      }
      if (maxRecipients === 0) return [];
      if (request.protocolState === 'RCPT' && ctx.session.rcptCount > maxRecipients) {
        const text = 'Too many recipients';
        return [
          {
            check: CHECK,
            symbol: 'TOO_MANY_RECIPIENTS',
            score: 0,
            action: 'defer',
            reason: `${text}: recipient ${ctx.session.rcptCount} of a message, limit ${maxRecipients}`,
            reply: { code: 452, dsn: '4.5.3', text },
          },
        ];
      }
      if (request.recipientCount > maxRecipients) {
        const text = 'Too many recipients';
        return [
          {
            check: CHECK,
            symbol: 'TOO_MANY_RECIPIENTS',
            score: 0,
            action: 'reject',
            reason: `${text}: ${request.recipientCount} recipients, limit ${maxRecipients}`,
            reply: { code: 554, dsn: '5.5.3', text },
          },
        ];
      }
      return [];
    },
  };
}
