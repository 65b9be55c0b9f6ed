/**
 * antivirus — the whole raw message through a virus scanner (clamd, which decodes MIME and archives itself).
 * A virus is a hard verdict: the message is quarantined, not delivered, the recipients get a notice, and only
 * the admin may release it. A scanner that cannot answer fails the scan: by default the message is deferred
 * (451, fail-closed: Postfix keeps it and retries), or passed unscanned when `on_failure: pass` says so.
 *
 * Symbol: VIRUS_FOUND.
 */
import { z } from 'zod';
import type { ContentScanner, MessageSource, ScanVerdict } from '../content.js';
import { modeSchema } from '../schema.js';

export type VirusScanResult =
  { readonly clean: true } | { readonly clean: false; readonly viruses: readonly string[] };

/** The virus scanner port (src/adapters/clamd.ts). It throws when it cannot answer (down, timeout, error). */
export interface VirusScanner {
  scan(source: MessageSource, signal: AbortSignal): Promise<VirusScanResult>;
}

export const antivirusSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    socket: z
      .string()
      .default('/run/clamav/clamd.ctl')
      .describe('clamd’s unix socket (Debian’s clamav-daemon); empty to use host and port'),
    host: z.string().default('').describe('clamd’s TCP address, when `socket` is empty'),
    port: z.number().int().min(1).max(65535).default(3310).describe('clamd’s TCP port'),
    timeout_ms: z
      .number()
      .int()
      .min(100)
      .max(600_000)
      .default(60_000)
      .describe('Deadline of one scan, the message streamed included'),
    ping_interval_s: z
      .number()
      .int()
      .min(1)
      .max(3600)
      .default(10)
      .describe(
        'How often clamd is sent PING, so /readyz and postwarden_clamd_up see it go down and come back while no mail flows',
      ),
    on_failure: z
      .enum(['defer', 'pass'])
      .default('defer')
      .describe(
        'clamd down or failing: defer (451, Postfix retries; nothing passes unscanned) or pass unscanned',
      ),
  })
  .describe('Virus scanning with clamd (INSTREAM)');

export type AntivirusSettings = z.infer<typeof antivirusSchema>;

export function createAntivirusScanner(scanner: VirusScanner): ContentScanner {
  return {
    name: 'antivirus',
    async scan(_message, ctx): Promise<ScanVerdict[]> {
      const result = await scanner.scan(ctx.source, ctx.signal);
      if (result.clean) return [];
      return [
        {
          scanner: 'antivirus',
          symbol: 'VIRUS_FOUND',
          score: 0,
          action: 'quarantine',
          reason: `virus found: ${result.viruses.join(', ')}`,
          notify: 'recipients',
          releasableBy: 'admin',
        },
      ];
    },
  };
}
