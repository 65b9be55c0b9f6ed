/**
 * auth_block — the auth guard's block list (src/core/auth-guard.ts) applied to SMTP: a client whose address or
 * network is blocked for password guessing is refused at CONNECT, and a SASL-authenticated request is refused
 * when its address+login is blocked, or its address or network is and that login has not logged in from there
 * lately (the same exemption Dovecot's logins get).
 *
 *   blocked at CONNECT, or a blocked SASL client    DEFER 450 4.7.1 block_text   AUTH_BLOCKED_{LOGIN,ADDRESS,NETWORK}
 *
 * A temporary refusal: the block ends after auth_policy.auth_block_s, and a legitimate client sharing the
 * address retries then. Other states without a SASL login are not asked about (no store read). Runs only when
 * `auth_policy.enabled`; a store that cannot answer throws, and `policy.on_error` decides.
 */
import { z } from 'zod';
import type { AuthGuard } from '../auth-guard.js';
import type { PolicyCheck } from '../pipeline.js';
import { modeSchema } from '../schema.js';
import type { Verdict } from '../verdict.js';

export const authBlockSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    at_connect: z
      .boolean()
      .default(true)
      .describe(
        'Refuse a blocked address or network at CONNECT (where smtpd_client_restrictions asks the policy service)',
      ),
    sasl: z
      .boolean()
      .default(true)
      .describe('Refuse a SASL-authenticated request whose address, network or address+login is blocked'),
  })
  .describe('Refuse SMTP clients the Dovecot auth policy blocked for password guessing (auth_policy)');

export type AuthBlockSettings = z.infer<typeof authBlockSchema>;

const CHECK = 'auth_block';

export function createAuthBlockCheck(
  settings: Pick<AuthBlockSettings, 'at_connect' | 'sasl'>,
  guard: Pick<AuthGuard, 'blockFor'>,
  text: string,
): PolicyCheck {
  return {
    name: CHECK,
    async run(request): Promise<Verdict[]> {
      const sasl = settings.sasl && request.saslUsername !== '';
      const connect = settings.at_connect && request.protocolState === 'CONNECT';
      if ((!sasl && !connect) || request.clientAddress === '') return [];
      const scope = await guard.blockFor(request.clientAddress, sasl ? request.saslUsername : '');
      if (!scope) return [];
      return [
        {
          check: CHECK,
          symbol: `AUTH_BLOCKED_${scope.toUpperCase()}`,
          score: 0,
          action: 'defer',
          reason: `${scope} blocked for failed logins: ${text}`,
          reply: { code: 450, dsn: '4.7.1', text },
        },
      ];
    },
  };
}
