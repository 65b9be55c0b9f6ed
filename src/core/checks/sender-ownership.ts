/**
 * sender_ownership — an authenticated user may use only the sender addresses it owns, like Postfix's
 * `reject_sender_login_mismatch` with `smtpd_sender_login_maps`.
 *
 * The map is keyed by sender (full address, then domain, then `localpart@`, as every address lookup) and its
 * value lists the logins that own it, separated by commas or spaces; `@domain` in the value grants every login
 * of that domain. Without an entry, a login owns its own address (`alice@example.org` owns
 * `alice@example.org` and `alice+tag@example.org`), and a login without a domain (`alice`) owns
 * `alice@<each local domain>`. Unauthenticated requests are not this check's business (see relay).
 */
import { z } from 'zod';
import { stripExtension } from '../../util/address.js';
import { type Steps, steps, wait } from '../answer.js';
import { find, type Locality } from '../locality.js';
import type { PolicyCheck } from '../pipeline.js';
import type { LookupTable } from '../ports.js';
import { domainOf, localPartOf, type PolicyRequest } from '../request.js';
import { mapRefSchema, modeSchema } from '../schema.js';
import type { Verdict } from '../verdict.js';

export const senderOwnershipSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    map: mapRefSchema
      .default([])
      .describe('Sender → owning logins, e.g. "sales@example.org alice,bob" or "example.org @example.org"'),
    allow_null_sender: z
      .boolean()
      .default(true)
      .describe('Let authenticated users send with the null sender <>'),
  })
  .describe('SASL sender ownership: authenticated users send only as addresses they own');

export type SenderOwnershipSettings = z.infer<typeof senderOwnershipSchema>;

const CHECK = 'sender_ownership';

/** States in which `sender` is known (before MAIL FROM it is empty, which is not the null sender). */
const SENDER_STATES: ReadonlySet<string> = new Set(['MAIL', 'RCPT', 'DATA', 'END-OF-MESSAGE']);

function ownsByList(login: string, owners: string): boolean {
  const name = login.toLowerCase();
  return owners
    .toLowerCase()
    .split(/[\s,]+/)
    .some((owner) => owner === name || (owner.startsWith('@') && name.endsWith(owner)));
}

export function createSenderOwnershipCheck(
  settings: Pick<SenderOwnershipSettings, 'allow_null_sender'>,
  locality: Locality,
  map: readonly LookupTable[],
  recipientDelimiter: string,
): PolicyCheck {
  function* ownsByDefault(login: string, sender: string): Steps<boolean> {
    const name = login.toLowerCase();
    const local = stripExtension(localPartOf(sender), recipientDelimiter).toLowerCase();
    const domain = domainOf(sender);
    if (name.includes('@')) return `${local}@${domain}` === name;
    return local === name && (yield* wait(locality.isLocalDomain(domain)));
  }

  return {
    name: CHECK,
    run: steps(function* (request: PolicyRequest): Steps<Verdict[]> {
      const login = request.saslUsername;
      if (login === '' || !SENDER_STATES.has(request.protocolState)) return [];
      const sender = request.sender;
      const notOwned = (why: string): Verdict[] => {
        // Postfix prefixes "<rcpt>: Recipient address rejected:" to a policy reply at RCPT.
        const text = `Sender address not owned by user ${login}`;
        return [
          {
            check: CHECK,
            symbol: 'SENDER_NOT_OWNED',
            score: 0,
            action: 'reject',
            reason: `${text} (${why})`,
            reply: { code: 553, dsn: '5.7.1', text },
          },
        ];
      };
      if (sender === '') {
        if (settings.allow_null_sender) return [];
        return notOwned('null sender not allowed for authenticated users');
      }
      const entry = map.length > 0 ? yield* wait(find(map, { kind: 'address', value: sender })) : undefined;
      if (entry?.status === 'found') {
        if (ownsByList(login, entry.value)) {
          return [
            { check: CHECK, symbol: 'SENDER_OWNED', score: 0, reason: `owned per map entry ${entry.key}` },
          ];
        }
        return notOwned(`map entry ${entry.key} names other owners`);
      }
      if (yield* ownsByDefault(login, sender)) {
        return [{ check: CHECK, symbol: 'SENDER_OWNED', score: 0, reason: "the login's own address" }];
      }
      return notOwned("no map entry and not the login's own address");
    }),
  };
}
