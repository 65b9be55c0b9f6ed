/**
 * lists — the admin's own block and allow lists, by what they name: the client (address, CIDR or host name),
 * the HELO name, the sender (address, domain or `localpart@`) and the recipient.
 *
 * Allow is searched first, so one address can be let out of a blocked network. An allow hit ends the pipeline
 * with no objection (later scoring checks are skipped; checks placed before `lists` have already run). A block
 * hit rejects with the entry's value as text, or `reject_text`.
 */
import { z } from 'zod';
import { type Steps, steps, wait } from '../answer.js';
import { find } from '../locality.js';
import type { PolicyCheck } from '../pipeline.js';
import type { LookupQuery, LookupTable } from '../ports.js';
import type { PolicyRequest } from '../request.js';
import { mapRefSchema, modeSchema } from '../schema.js';
import type { Verdict } from '../verdict.js';

const targetsSchema = (what: string) =>
  z
    .strictObject({
      client: mapRefSchema.default([]).describe(`Client IPs, CIDRs or host names to ${what}`),
      helo: mapRefSchema.default([]).describe(`HELO/EHLO names to ${what}`),
      sender: mapRefSchema
        .default([])
        .describe(`Sender addresses, domains or local parts (user@) to ${what}`),
      recipient: mapRefSchema.default([]).describe(`Recipient addresses, domains or local parts to ${what}`),
    })
    .prefault({});

export const listsSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    reject_text: z
      .string()
      .min(1)
      .max(200)
      .default('Access denied')
      .describe('Reply text for a block hit whose entry has no text of its own'),
    block: targetsSchema('refuse').describe('Block lists: a hit rejects (554 5.7.1)'),
    allow: targetsSchema('accept without further scoring').describe(
      'Allow lists: a hit skips the later checks',
    ),
  })
  .describe('Local block and allow lists');

export type ListsSettings = z.infer<typeof listsSchema>;
export type ListTarget = keyof ListsSettings['block'];

export type ListTables = Readonly<Record<ListTarget, readonly LookupTable[]>>;

const CHECK = 'lists';

function queriesFor(target: ListTarget, request: PolicyRequest): LookupQuery[] {
  switch (target) {
    case 'client': {
      const queries: LookupQuery[] = [];
      if (request.clientAddress !== '') queries.push({ kind: 'ip', value: request.clientAddress });
      if (request.clientName !== '' && request.clientName !== 'unknown') {
        queries.push({ kind: 'hostname', value: request.clientName });
      }
      return queries;
    }
    case 'helo':
      return request.heloName === '' ? [] : [{ kind: 'hostname', value: request.heloName }];
    case 'sender':
      // Before MAIL FROM the sender is unknown, not the null sender.
      return ['CONNECT', 'EHLO', 'HELO'].includes(request.protocolState)
        ? []
        : [{ kind: 'address', value: request.sender }];
    case 'recipient':
      return request.recipient === '' ? [] : [{ kind: 'address', value: request.recipient }];
  }
}

const TARGETS: readonly ListTarget[] = ['client', 'helo', 'sender', 'recipient'];

function* firstHit(
  tables: ListTables,
  request: PolicyRequest,
): Steps<{ target: ListTarget; key: string; value: string } | undefined> {
  for (const target of TARGETS) {
    if (tables[target].length === 0) continue;
    for (const query of queriesFor(target, request)) {
      const result = yield* wait(find(tables[target], query));
      if (result.status === 'found') return { target, key: result.key, value: result.value };
    }
  }
  return undefined;
}

export function createListsCheck(
  settings: Pick<ListsSettings, 'reject_text'>,
  block: ListTables,
  allow: ListTables,
): PolicyCheck {
  return {
    name: CHECK,
    run: steps(function* (request: PolicyRequest): Steps<Verdict[]> {
      const allowed = yield* firstHit(allow, request);
      if (allowed) {
        const symbol = `ALLOW_${allowed.target.toUpperCase()}`;
        return [
          {
            check: CHECK,
            symbol,
            score: 0,
            action: 'allow',
            reason: `${allowed.target} on allow list (${allowed.key})`,
          },
        ];
      }
      const blocked = yield* firstHit(block, request);
      if (!blocked) return [];
      // A value of OK/REJECT (habits from Postfix access maps) is not reply text.
      const own = /^(ok|reject|)$/i.test(blocked.value.trim()) ? '' : blocked.value.trim();
      const text = own || settings.reject_text;
      return [
        {
          check: CHECK,
          symbol: `BLOCK_${blocked.target.toUpperCase()}`,
          score: 0,
          action: 'reject',
          reason: `${blocked.target} on block list (${blocked.key}): ${text}`,
          reply: { code: 554, dsn: '5.7.1', text },
        },
      ];
    }),
  };
}
