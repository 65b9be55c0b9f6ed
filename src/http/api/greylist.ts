/** `/api/v1/greylist`: greylisting triplets and the auto-whitelist — list, delete, allow (src/admin/greylist.ts). */
import type { FastifyInstance, FastifyReply } from 'fastify';
import {
  allowNetwork,
  deleteAwl,
  deleteGreylist,
  deleteTriplets,
  GreylistInputError,
  listAwl,
  listGreylist,
  parseFilter,
  parseNetwork,
  parseTriplet,
  type GreylistAdminSettings,
} from '../../admin/greylist.js';
import { MAX_SCAN_LIMIT, type Store } from '../../core/store.js';
import type { ApiContext } from './context.js';
import { errors } from './schemas.js';

const TAGS = ['greylist'];

const text = (max: number, description: string) => ({
  type: 'string',
  minLength: 1,
  maxLength: max,
  description,
});
const network = text(64, 'A client address (its greylisting network) or a CIDR');
const cutSchema = {
  type: ['string', 'null'],
  enum: ['limit', 'scan', null],
  description: 'limit: more matched than the limit; scan: only the first 10000 entries were searched',
};
const limitSchema = { type: 'integer', minimum: 1, maximum: MAX_SCAN_LIMIT, default: 1000 };
const removalSchema = {
  type: 'object',
  required: ['removed', 'incomplete'],
  properties: { removed: { type: 'integer' }, incomplete: { type: 'boolean' } },
};
const awlSchema = {
  type: 'object',
  required: ['network', 'passes', 'whitelisted'],
  properties: {
    network: { type: 'string' },
    passes: { type: 'integer' },
    whitelisted: { type: 'boolean' },
    expiresAt: { type: 'number' },
  },
};

interface FilterQuery {
  readonly network?: string;
  readonly sender?: string;
  readonly recipient?: string;
}

/** Runs an operation on the greylisting store; bad input is 400 with the operation's sentence. */
async function withGreylist<T>(
  ctx: ApiContext,
  reply: FastifyReply,
  fn: (store: Store, settings: GreylistAdminSettings) => Promise<T>,
): Promise<T | FastifyReply> {
  const greylist = ctx.admin.greylist;
  if (!greylist)
    return reply.status(503).send({ error: 'greylisting keeps no state here (the check is off)' });
  try {
    return await fn(greylist.store, greylist.settings);
  } catch (error) {
    if (error instanceof GreylistInputError) return reply.status(400).send({ error: error.message });
    throw error;
  }
}

const filterOf = (q: FilterQuery): FilterQuery => ({
  ...(q.network !== undefined ? { network: q.network } : {}),
  ...(q.sender !== undefined ? { sender: q.sender } : {}),
  ...(q.recipient !== undefined ? { recipient: q.recipient } : {}),
});

export function greylistRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Querystring: FilterQuery & { limit: number } }>(
    '/greylist',
    {
      schema: {
        tags: TAGS,
        summary: 'Triplets, sorted by key; filters given together must all match',
        querystring: {
          type: 'object',
          properties: {
            network,
            sender: text(
              320,
              'A sender address (compared as the check normalises it); <> for the null sender',
            ),
            recipient: text(320, 'A recipient address'),
            limit: limitSchema,
          },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            required: ['items', 'cut'],
            properties: {
              items: {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['network', 'sender', 'recipient', 'state'],
                  properties: {
                    network: { type: 'string' },
                    sender: { type: 'string' },
                    recipient: { type: 'string' },
                    state: { type: 'string', enum: ['waiting', 'passed', 'invalid'] },
                    firstSeen: { type: 'number' },
                    expiresAt: { type: 'number' },
                  },
                },
              },
              cut: cutSchema,
            },
          },
          ...errors(),
        },
      },
    },
    (request, reply) =>
      withGreylist(ctx, reply, async (store, settings) => {
        const listing = await listGreylist(
          store,
          parseFilter(filterOf(request.query), settings),
          request.query.limit,
        );
        return { items: listing.items, cut: listing.cut ?? null };
      }),
  );

  app.get<{ Querystring: { network?: string; limit: number } }>(
    '/greylist/awl',
    {
      schema: {
        tags: TAGS,
        summary: 'Auto-whitelist entries: networks counting passes, and those whitelisted',
        querystring: {
          type: 'object',
          properties: { network, limit: limitSchema },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            required: ['items', 'cut'],
            properties: { items: { type: 'array', items: awlSchema }, cut: cutSchema },
          },
          ...errors(),
        },
      },
    },
    (request, reply) =>
      withGreylist(ctx, reply, async (store, settings) => {
        const match =
          request.query.network === undefined
            ? undefined
            : parseNetwork(request.query.network, settings, true);
        const listing = await listAwl(store, match, request.query.limit, settings);
        return { items: listing.items, cut: listing.cut ?? null };
      }),
  );

  app.delete<{ Querystring: FilterQuery & { triplet?: string } }>(
    '/greylist',
    {
      schema: {
        tags: TAGS,
        summary: 'Remove the matching triplets (name at least one filter, or one triplet)',
        querystring: {
          type: 'object',
          properties: {
            network,
            sender: text(320, 'A sender address'),
            recipient: text(320, 'A recipient address'),
            triplet: text(800, 'One triplet as listed: NETWORK|SENDER|RECIPIENT (give it alone)'),
          },
          additionalProperties: false,
        },
        response: { 200: removalSchema, ...errors() },
      },
    },
    (request, reply) =>
      withGreylist(ctx, reply, async (store, settings) => {
        const { triplet, ...rest } = request.query;
        const filter = filterOf(rest);
        if (triplet !== undefined && Object.keys(filter).length > 0) {
          throw new GreylistInputError('triplet names one triplet: give it alone');
        }
        const removal =
          triplet !== undefined
            ? await deleteTriplets(store, parseTriplet(triplet, settings))
            : await deleteGreylist(store, parseFilter(filter, settings));
        ctx.audit(request, 'greylist delete', { ...request.query, removed: removal.removed });
        return removal;
      }),
  );

  app.delete<{ Querystring: { network: string } }>(
    '/greylist/awl',
    {
      schema: {
        tags: TAGS,
        summary: "Remove a network's auto-whitelist entry (or those of every network inside a CIDR)",
        querystring: {
          type: 'object',
          required: ['network'],
          properties: { network },
          additionalProperties: false,
        },
        response: { 200: removalSchema, ...errors() },
      },
    },
    (request, reply) =>
      withGreylist(ctx, reply, async (store, settings) => {
        const removal = await deleteAwl(store, parseNetwork(request.query.network, settings, true));
        ctx.audit(request, 'greylist awl delete', {
          network: request.query.network,
          removed: removal.removed,
        });
        return removal;
      }),
  );

  app.post<{ Body: { network: string } }>(
    '/greylist/allow',
    {
      schema: {
        tags: TAGS,
        summary: 'Auto-whitelist a network now (awl_after passes, for max_age_s)',
        body: {
          type: 'object',
          required: ['network'],
          properties: { network },
          additionalProperties: false,
        },
        response: { 200: awlSchema, ...errors() },
      },
    },
    (request, reply) =>
      withGreylist(ctx, reply, async (store, settings) => {
        const allowed = await allowNetwork(store, request.body.network, settings);
        ctx.audit(request, 'greylist allow', { network: allowed.network });
        return allowed;
      }),
  );
}
