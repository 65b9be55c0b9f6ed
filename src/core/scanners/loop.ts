/**
 * loop — a message that has passed more than `max_hops` hosts (its `Received:` header fields) is in a mail loop.
 * It is held in quarantine with a notice to the postmaster (a looping message is nobody's to release but the
 * admin's), never bounced: a bounce of a looping message feeds the loop. Postfix's own limit
 * (`hopcount_limit`, 50) bounces; this one stops the loop earlier and keeps the evidence.
 *
 * Symbol: MAIL_LOOP.
 */
import { z } from 'zod';
import type { ContentScanner, ScanVerdict } from '../content.js';
import { modeSchema } from '../schema.js';

export const loopSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    max_hops: z
      .number()
      .int()
      .min(5)
      .max(500)
      .default(30)
      .describe('Received: header fields a message may carry; more is a loop (Postfix bounces at 50)'),
  })
  .describe('Mail-loop detection by hop count');

export type LoopSettings = z.infer<typeof loopSchema>;

export function createLoopScanner(settings: Pick<LoopSettings, 'max_hops'>): ContentScanner {
  return {
    name: 'loop',
    scan(message): ScanVerdict[] {
      const hops = message.headers.filter((h) => h.name.toLowerCase() === 'received').length;
      if (hops <= settings.max_hops) return [];
      return [
        {
          scanner: 'loop',
          symbol: 'MAIL_LOOP',
          score: 0,
          action: 'quarantine',
          reason: `mail loop: ${hops} Received: headers, more than ${settings.max_hops}`,
          notify: 'postmaster',
          releasableBy: 'admin',
        },
      ];
    },
  };
}
