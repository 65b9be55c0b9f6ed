/** `/api/v1/status` and `/api/v1/decisions/:queueId`: what this instance is doing, and why a message went as it did. */
import type { FastifyInstance } from 'fastify';
import { readDecisions } from '../../core/decisions.js';
import type { ApiContext } from './context.js';
import { decisionRecordSchema, errors, errorSchema, queueIdParams } from './schemas.js';

const checkSchema = {
  type: 'object',
  required: ['name', 'ready'],
  properties: {
    name: { type: 'string' },
    ready: { type: 'boolean' },
    reason: { type: 'string' },
    critical: { type: 'boolean' },
  },
} as const;

export function statusRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get(
    '/status',
    {
      schema: {
        tags: ['status'],
        summary: 'Version, uptime, faces, and the health of the store, maps, resolvers and DNS lists',
        response: {
          200: {
            type: 'object',
            required: ['version', 'instance', 'started_at', 'uptime_s', 'status', 'faces', 'checks'],
            properties: {
              version: { type: 'string' },
              instance: { type: 'string' },
              started_at: { type: 'string' },
              uptime_s: { type: 'integer' },
              status: { type: 'string', enum: ['ready', 'degraded', 'not ready'] },
              faces: {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['name', 'listening'],
                  properties: {
                    name: { type: 'string' },
                    listening: { type: 'boolean' },
                    addresses: { type: 'array', items: { type: 'string' } },
                  },
                },
              },
              checks: { type: 'array', items: checkSchema },
            },
          },
          ...errors(),
        },
      },
    },
    async () => ctx.admin.status(),
  );

  app.get<{ Params: { queueId: string } }>(
    '/decisions/:queueId',
    {
      schema: {
        tags: ['decisions'],
        summary: 'Every decision recorded about a message (policy and filter), oldest first',
        params: queueIdParams,
        response: {
          200: {
            type: 'object',
            required: ['queue_id', 'records'],
            properties: {
              queue_id: { type: 'string' },
              records: { type: 'array', items: decisionRecordSchema },
            },
          },
          404: errorSchema,
          ...errors(),
        },
      },
    },
    async (request, reply) => {
      const store = ctx.admin.decisions;
      if (!store)
        return reply
          .status(503)
          .send({ error: 'decisions are not recorded here (decisions.enabled, a store)' });
      const { queueId } = request.params;
      const records = await readDecisions(store, queueId);
      if (!records) {
        return reply.status(404).send({
          error: `no decision recorded for ${queueId} (never seen here, or older than decisions.retention_s)`,
        });
      }
      return { queue_id: queueId, records };
    },
  );
}
