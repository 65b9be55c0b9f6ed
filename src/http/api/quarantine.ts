/** `/api/v1/quarantine`: the held messages — list, show, raw message, release, delete (src/admin/quarantine.ts). */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { QuarantineOps } from '../../admin/quarantine.js';
import { MAX_RELEASE_RECIPIENTS, QUARANTINE_CURSOR_PATTERN } from '../../core/quarantine.js';
import type { ApiContext } from './context.js';
import {
  errors,
  errorSchema,
  quarantineEntrySchema,
  quarantineIdParams,
  releasedErrorSchema,
} from './schemas.js';

const TAGS = ['quarantine'];

interface ListQuery {
  limit: number;
  cursor?: string;
  recipient?: string;
  symbol?: string;
}

export function quarantineRoutes(app: FastifyInstance, ctx: ApiContext): void {
  /** A handler that needs the quarantine: 503 when the content filter is off here. */
  const held =
    <R extends FastifyRequest>(fn: (q: QuarantineOps, request: R, reply: FastifyReply) => unknown) =>
    async (request: R, reply: FastifyReply) => {
      const q = ctx.admin.quarantine;
      if (!q)
        return reply.status(503).send({ error: 'the content filter is off here: no quarantine to act on' });
      return fn(q, request, reply);
    };

  app.get<{ Querystring: ListQuery }>(
    '/quarantine',
    {
      schema: {
        tags: TAGS,
        summary: 'Held messages, newest first, one page at a time',
        querystring: {
          type: 'object',
          properties: {
            limit: {
              type: 'integer',
              minimum: 1,
              maximum: 10_000,
              default: 100,
              description: 'The most messages in this page',
            },
            cursor: {
              type: 'string',
              pattern: QUARANTINE_CURSOR_PATTERN,
              description: 'The page after the one whose answer gave this `next` (with the same filters)',
            },
            recipient: {
              type: 'string',
              maxLength: 320,
              description: 'Only messages held for this recipient',
            },
            symbol: { type: 'string', maxLength: 64, description: 'Only messages held for this symbol' },
          },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            required: ['items', 'truncated', 'total'],
            properties: {
              items: { type: 'array', items: quarantineEntrySchema },
              truncated: { type: 'boolean', description: 'More messages match than this page holds' },
              total: { type: 'integer', description: 'How many messages match, in all pages' },
              next: {
                type: 'string',
                description: 'The `cursor` of the next (older) page; absent on the last page',
              },
            },
          },
          ...errors(),
        },
      },
    },
    held((q, request: FastifyRequest<{ Querystring: ListQuery }>) => q.list(request.query)),
  );

  app.get<{ Params: { id: string } }>(
    '/quarantine/:id',
    {
      schema: {
        tags: TAGS,
        summary: "A held message's entry and header",
        params: quarantineIdParams,
        response: {
          200: {
            type: 'object',
            required: ['entry', 'header'],
            properties: { entry: quarantineEntrySchema, header: { type: 'string' } },
          },
          404: errorSchema,
          410: releasedErrorSchema,
          ...errors(),
        },
      },
    },
    held(async (q, request: FastifyRequest<{ Params: { id: string } }>, reply) => {
      const shown = await q.show(request.params.id);
      if (shown.status === 'found') return { entry: shown.entry, header: shown.header };
      if (shown.status === 'already_released') {
        return reply.status(410).send({ error: 'released already', release: shown.release });
      }
      return reply.status(404).send({ error: `no held message ${request.params.id}` });
    }),
  );

  app.get<{ Params: { id: string } }>(
    '/quarantine/:id/raw',
    {
      schema: {
        tags: TAGS,
        summary: 'A held message, whole (message/rfc822)',
        params: quarantineIdParams,
        response: {
          200: { description: 'The message', content: { 'message/rfc822': { schema: { type: 'string' } } } },
          404: errorSchema,
          ...errors(),
        },
      },
    },
    held((q, request: FastifyRequest<{ Params: { id: string } }>, reply) => {
      const raw = q.raw(request.params.id);
      if (!raw) return reply.status(404).send({ error: `no held message ${request.params.id}` });
      return reply.type('message/rfc822').send(raw);
    }),
  );

  app.post<{ Params: { id: string }; Body: { to?: string[] } | undefined }>(
    '/quarantine/:id/release',
    {
      // No body at all means "to the original recipients", as `{}` does.
      preValidation: async (request) => {
        request.body ??= {};
      },
      schema: {
        tags: TAGS,
        summary: 'Deliver a held message (to its recipients, or to `to`), then remove it',
        params: quarantineIdParams,
        body: {
          type: 'object',
          properties: {
            to: {
              type: 'array',
              maxItems: MAX_RELEASE_RECIPIENTS,
              items: { type: 'string', minLength: 3, maxLength: 320, pattern: '^[^\\s<>@]+@[^\\s<>@]+$' },
            },
          },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            required: ['id', 'recipients', 'response'],
            properties: {
              id: { type: 'string' },
              recipients: { type: 'array', items: { type: 'string' } },
              response: { type: 'string' },
            },
          },
          404: errorSchema,
          409: releasedErrorSchema,
          ...errors(),
        },
      },
    },
    held(
      async (
        q,
        request: FastifyRequest<{ Params: { id: string }; Body: { to?: string[] } | undefined }>,
        reply,
      ) => {
        const { id } = request.params;
        const released = await q.release(id, `the admin (API from ${request.ip})`, request.body?.to);
        switch (released.status) {
          case 'released':
            ctx.audit(request, 'quarantine release', { id, recipients: released.recipients });
            return { id, recipients: released.recipients, response: released.response };
          case 'already_released':
            return reply.status(409).send({ error: 'released already', release: released.release });
          case 'failed':
            return reply
              .status(503)
              .send({ error: `the re-injection smtpd did not take it; it stays held: ${released.reason}` });
          case 'not_found':
            return reply.status(404).send({ error: `no held message ${id}` });
        }
      },
    ),
  );

  app.delete<{ Params: { id: string } }>(
    '/quarantine/:id',
    {
      schema: {
        tags: TAGS,
        summary: 'Remove a held message without delivering it',
        params: quarantineIdParams,
        response: {
          200: {
            type: 'object',
            required: ['id', 'removed'],
            properties: { id: { type: 'string' }, removed: { type: 'boolean' } },
          },
          404: errorSchema,
          409: releasedErrorSchema,
          ...errors(),
        },
      },
    },
    held(async (q, request: FastifyRequest<{ Params: { id: string } }>, reply) => {
      const { id } = request.params;
      const removed = await q.remove(id);
      if (removed.status === 'removed') {
        ctx.audit(request, 'quarantine delete', { id });
        return { id, removed: true };
      }
      if (removed.status === 'already_released') {
        return reply.status(409).send({ error: 'released already', release: removed.release });
      }
      return reply.status(404).send({ error: `no held message ${id}` });
    }),
  );
}
