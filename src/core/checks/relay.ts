/**
 * relay — relay control and anti-forgery, the matrix of DESIGN.md §1:
 *
 *   client local or SASL-authenticated     any sender      → may send anywhere
 *   remote, not authenticated              remote or `<>`  → local recipients only (else RELAY_DENIED)
 *   remote, not authenticated              local sender    → refused for every recipient (FORGED_LOCAL_SENDER)
 *
 * Exceptions to the forgery rule come from the `allow` map (forwarders, mailing lists). Recipients with
 * sender-specified routing (`a%b@us`, `a!b@us`, `@route:a@b`) from untrusted clients are refused like Postfix's
 * `allow_untrusted_routing = no`. Postfix's own `reject_unauth_destination` stays in front: this is defence in
 * depth. Lookup errors are failures (the pipeline applies `on_error`), never a pass.
 */
import { z } from 'zod';
import { type Steps, steps, wait } from '../answer.js';
import { find, type Locality } from '../locality.js';
import type { PolicyCheck } from '../pipeline.js';
import type { LookupTable } from '../ports.js';
import { localPartOf, type PolicyRequest } from '../request.js';
import { mapRefSchema, modeSchema } from '../schema.js';
import type { Verdict } from '../verdict.js';

export const relaySchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    allow: mapRefSchema
      .default([])
      .describe(
        'Clients (IP, CIDR, host name) or senders (address, domain) exempt from the forged-local-sender rule: ' +
          'forwarders and mailing lists that keep your domain in MAIL FROM. Never opens relaying.',
      ),
    reject_routing: z
      .boolean()
      .default(true)
      .describe('Refuse recipients with routing characters (%, !, source routes) from untrusted clients'),
  })
  .describe('Relay control and anti-forgery: who may send to whom (DESIGN.md §1)');

export type RelaySettings = z.infer<typeof relaySchema>;

const CHECK = 'relay';

function reject(symbol: string, text: string): Verdict {
  return {
    check: CHECK,
    symbol,
    score: 0,
    action: 'reject',
    reason: text,
    reply: { code: 554, dsn: '5.7.1', text },
  };
}

/** Sender-specified routing in a recipient: `user%host@us`, `host!user@us`, `@hop:user@host`, `"a@b"@us`. */
function hasRoutingCharacters(recipient: string): boolean {
  if (recipient.startsWith('@')) return true;
  const local = localPartOf(recipient);
  return /[%!@]/.test(local);
}

function* isForgeryExempt(request: PolicyRequest, allow: readonly LookupTable[]): Steps<string | undefined> {
  if (allow.length === 0) return undefined;
  const queries = [
    { kind: 'ip', value: request.clientAddress },
    { kind: 'hostname', value: request.clientName },
    { kind: 'address', value: request.sender },
  ] as const;
  for (const query of queries) {
    if (query.value === '' || query.value === 'unknown') continue;
    const result = yield* wait(find(allow, query));
    if (result.status === 'found') return result.key;
  }
  return undefined;
}

export function createRelayCheck(
  settings: Pick<RelaySettings, 'reject_routing'>,
  locality: Locality,
  allow: readonly LookupTable[],
): PolicyCheck {
  return {
    name: CHECK,
    run: steps(function* (request: PolicyRequest): Steps<Verdict[]> {
      if (yield* wait(locality.isTrustedClient(request))) {
        const why =
          request.saslUsername !== ''
            ? { symbol: 'CLIENT_AUTHENTICATED', reason: 'SASL-authenticated client may send anywhere' }
            : { symbol: 'CLIENT_LOCAL_NETWORK', reason: 'client in local_networks may send anywhere' };
        return [{ check: CHECK, score: 0, ...why }];
      }
      const verdicts: Verdict[] = [];
      if (request.sender !== '' && (yield* wait(locality.isLocalAddress(request.sender)))) {
        const exemptBy = yield* isForgeryExempt(request, allow);
        if (exemptBy === undefined) {
          return [
            reject(
              'FORGED_LOCAL_SENDER',
              `Sender address <${request.sender}> is in a local domain: authenticate to send as it`,
            ),
          ];
        }
        verdicts.push({
          check: CHECK,
          symbol: 'FORGED_SENDER_EXEMPT',
          score: 0,
          reason: `local sender from a remote client allowed by relay.allow entry ${exemptBy}`,
        });
      }
      if (request.recipient === '') return verdicts;
      if (settings.reject_routing && hasRoutingCharacters(request.recipient)) {
        return [reject('RELAY_ROUTING', 'Relay access denied: sender-specified routing is not allowed')];
      }
      if (!(yield* wait(locality.isLocalAddress(request.recipient)))) {
        return [reject('RELAY_DENIED', 'Relay access denied')];
      }
      return verdicts;
    }),
  };
}
