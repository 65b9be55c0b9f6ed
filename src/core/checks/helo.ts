/**
 * helo — HELO/EHLO sanity for clients that are neither in `local_networks` nor authenticated:
 *
 *   HELO_MISSING        no HELO/EHLO at all                        reject (require)
 *   HELO_INVALID        not a host name and not an address literal reject (reject_invalid), 501 5.5.2
 *   HELO_NOT_FQDN       a name without a dot                       reject (require_fqdn), 504 5.5.2
 *   HELO_OWN_NAME       our host name or one of our domains        reject (reject_own)
 *   HELO_OWN_ADDRESS    the literal of the address it connected to reject (reject_own)
 *   HELO_BARE_IP        an IP address without brackets             score
 *   HELO_LITERAL_MISMATCH  an address literal not its own address  score
 *
 * Resolving the name in DNS belongs to the DNS checks.
 */
import { z } from 'zod';
import { type Steps, steps, wait } from '../answer.js';
import type { Locality } from '../locality.js';
import type { PolicyCheck } from '../pipeline.js';
import type { PolicyRequest } from '../request.js';
import { canonicalIp } from '../../util/ip.js';
import { modeSchema, scoreSchema } from '../schema.js';
import type { Verdict } from '../verdict.js';

export const heloSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    require: z.boolean().default(true).describe('Reject clients that never sent HELO/EHLO'),
    reject_invalid: z
      .boolean()
      .default(true)
      .describe('Reject HELO names that are neither a valid host name nor an address literal'),
    require_fqdn: z
      .boolean()
      .default(true)
      .describe('Reject HELO names without a dot (e.g. "localhost", "PC01")'),
    reject_own: z
      .boolean()
      .default(true)
      .describe('Reject remote clients that HELO with our host name, one of our domains or our address'),
    bare_ip_score: scoreSchema.default(2).describe('Score for an IP address given without [brackets]'),
    literal_mismatch_score: scoreSchema
      .default(1)
      .describe("Score for an address literal that is not the client's address"),
  })
  .describe('HELO/EHLO sanity for untrusted clients');

export type HeloSettings = z.infer<typeof heloSchema>;

const CHECK = 'helo';
const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/i;

/** A syntactically valid host name (not an address, not junk); a trailing dot is allowed. */
export function isHostname(name: string): boolean {
  const bare = name.endsWith('.') ? name.slice(0, -1) : name;
  if (bare.length === 0 || bare.length > 253) return false;
  const labels = bare.split('.');
  // An all-numeric last label is an IP address or junk, never a host name.
  if (/^\d+$/.test(labels[labels.length - 1] ?? '')) return false;
  return labels.every((label) => LABEL.test(label));
}

/** `[192.0.2.1]` or `[IPv6:2001:db8::1]` → the address in canonical form, else undefined. */
function addressLiteral(name: string): string | undefined {
  const match = /^\[(ipv6:)?([0-9a-f.:]+)\]$/i.exec(name);
  const address = match?.[2];
  // RFC 5321: an IPv6 literal carries the `IPv6:` tag, an IPv4 one does not.
  if (!address || (match[1] !== undefined) !== address.includes(':')) return undefined;
  return canonicalIp(address);
}

function reject(symbol: string, code: number, dsn: string, text: string): Verdict {
  return { check: CHECK, symbol, score: 0, action: 'reject', reason: text, reply: { code, dsn, text } };
}

export function createHeloCheck(
  settings: Omit<HeloSettings, 'mode'>,
  locality: Locality,
  ownHostname: string,
): PolicyCheck {
  const ownName = ownHostname.toLowerCase();
  return {
    name: CHECK,
    run: steps(function* (request: PolicyRequest): Steps<Verdict[]> {
      if (request.protocolState === 'CONNECT') return [];
      if (yield* wait(locality.isTrustedClient(request))) return [];
      const helo = request.heloName.trim();
      if (helo === '') {
        return settings.require ? [reject('HELO_MISSING', 554, '5.7.1', 'HELO/EHLO required')] : [];
      }
      const literal = helo.startsWith('[') ? addressLiteral(helo) : undefined;
      if (literal !== undefined) {
        const server = canonicalIp(request.serverAddress);
        if (settings.reject_own && server !== undefined && literal === server) {
          return [reject('HELO_OWN_ADDRESS', 554, '5.7.1', 'Helo command rejected: You are not me')];
        }
        if (literal !== canonicalIp(request.clientAddress) && settings.literal_mismatch_score !== 0) {
          return [
            {
              check: CHECK,
              symbol: 'HELO_LITERAL_MISMATCH',
              score: settings.literal_mismatch_score,
              reason: `HELO ${helo} is not the client address ${request.clientAddress}`,
            },
          ];
        }
        return [];
      }
      if (canonicalIp(helo) !== undefined && !helo.includes('[')) {
        if (settings.bare_ip_score === 0) return [];
        return [
          {
            check: CHECK,
            symbol: 'HELO_BARE_IP',
            score: settings.bare_ip_score,
            reason: `HELO ${helo} is a bare IP`,
          },
        ];
      }
      if (!isHostname(helo)) {
        return settings.reject_invalid
          ? [reject('HELO_INVALID', 501, '5.5.2', 'Helo command rejected: Invalid name')]
          : [];
      }
      if (settings.require_fqdn && !helo.replace(/\.$/, '').includes('.')) {
        return [
          reject('HELO_NOT_FQDN', 504, '5.5.2', 'Helo command rejected: need fully-qualified hostname'),
        ];
      }
      if (settings.reject_own) {
        const name = helo.toLowerCase().replace(/\.$/, '');
        if (name === ownName || (yield* wait(locality.isExactLocalDomain(name)))) {
          return [reject('HELO_OWN_NAME', 554, '5.7.1', 'Helo command rejected: You are not me')];
        }
      }
      return [];
    }),
  };
}
