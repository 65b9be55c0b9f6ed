/**
 * limits — recipients per message and message size.
 *
 * Recipients are counted at RCPT per message on the policy connection (Postfix's `instance`): past the limit
 * each further RCPT gets `452 4.5.3`, the answer RFC 5321 asks for, so a client sends the rest later. At DATA and
 * END-OF-MESSAGE Postfix's own `recipient_count` is checked as a backstop. Size is Postfix's `size` attribute:
 * the MAIL FROM `SIZE=` declaration, and the real size at END-OF-MESSAGE.
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
  .describe('Per-message limits: recipients and size');

export type LimitsSettings = z.infer<typeof limitsSchema>;

const CHECK = 'limits';

export function createLimitsCheck(settings: Omit<LimitsSettings, 'mode'>): PolicyCheck {
  const { max_recipients: maxRecipients, max_message_bytes: maxBytes } = settings;
  return {
    name: CHECK,
    run(request, ctx): Verdict[] {
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
