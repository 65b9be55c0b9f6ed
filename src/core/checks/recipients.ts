/**
 * recipients — reject unknown recipients of local domains at RCPT, like Postfix's `reject_unlisted_recipient`
 * with `virtual_mailbox_maps` (and aliases) in a directory: a dictionary attack ends at RCPT, and no bounce to a
 * forged sender is ever made for a mailbox that does not exist.
 *
 * A recipient in a local domain is valid when `map` (the mailboxes) or `aliases` finds it, searched as every
 * address lookup (`user+tag@` also as `user@`). Recipients of other domains are relay's business, not this one.
 * An unknown one gets `550 5.1.1 User unknown` (Postfix shows `<addr>: Recipient address rejected: User
 * unknown`). When a table cannot answer (the directory is down), the answer is `451 4.3.0`: a temporary
 * failure, never "unknown", so no mail is refused for an outage. Off by default: it needs a complete table.
 */
import { z } from 'zod';
import { LookupFailed } from '../errors.js';
import type { Locality } from '../locality.js';
import type { PolicyCheck } from '../pipeline.js';
import { searchTables, type LookupTable } from '../ports.js';
import { domainOf } from '../request.js';
import { mapRefSchema, modeSchema } from '../schema.js';
import type { Verdict } from '../verdict.js';

export const recipientsSchema = z
  .strictObject({
    mode: modeSchema.default('off'),
    map: mapRefSchema
      .default([])
      .describe('The mailboxes of the local domains, e.g. ldap:users or file:/etc/postwarden/mailboxes'),
    aliases: mapRefSchema
      .default([])
      .describe('Aliases, valid recipients too, e.g. ldap:aliases (searched after map)'),
  })
  .superRefine((settings, ctx) => {
    const empty = (ref: string | readonly string[]) => Array.isArray(ref) && ref.length === 0;
    if (settings.mode !== 'off' && empty(settings.map) && empty(settings.aliases)) {
      ctx.addIssue({
        code: 'custom',
        path: ['map'],
        message:
          'no recipient map: every recipient of a local domain would be refused; name the mailboxes (e.g. ldap:users) or set mode: off',
      });
    }
  })
  .describe('Valid recipients: unknown recipients of local domains are refused at RCPT (550 5.1.1)');

export type RecipientsSettings = z.infer<typeof recipientsSchema>;

const CHECK = 'recipients';

function tempFailure(reason: string): Verdict[] {
  return [
    {
      check: CHECK,
      symbol: 'RECIPIENT_LOOKUP_FAILED',
      score: 0,
      action: 'defer',
      reason,
      reply: { code: 451, dsn: '4.3.0', text: 'Temporary lookup failure' },
    },
  ];
}

export function createRecipientsCheck(
  locality: Locality,
  mailboxes: readonly LookupTable[],
  aliases: readonly LookupTable[],
): PolicyCheck {
  const tables = [...mailboxes, ...aliases];
  return {
    name: CHECK,
    async run(request) {
      const recipient = request.recipient;
      if (request.protocolState !== 'RCPT' || recipient === '' || domainOf(recipient) === '') return [];
      try {
        if (!(await locality.isLocalDomain(domainOf(recipient)))) return [];
      } catch (error) {
        if (error instanceof LookupFailed) return tempFailure(`local domain lookup failed: ${error.message}`);
        throw error;
      }
      const result = await searchTables(tables, { kind: 'address', value: recipient });
      if (result.status === 'error') {
        return tempFailure(`recipient lookup failed: ${result.reason}`);
      }
      if (result.status === 'found') {
        return [{ check: CHECK, symbol: 'RECIPIENT_KNOWN', score: 0, reason: `known as ${result.key}` }];
      }
      return [
        {
          check: CHECK,
          symbol: 'RECIPIENT_UNKNOWN',
          score: 0,
          action: 'reject',
          reason: `<${recipient}> is in a local domain and in none of the recipient maps`,
          reply: { code: 550, dsn: '5.1.1', text: 'User unknown' },
        },
      ];
    },
  };
}
