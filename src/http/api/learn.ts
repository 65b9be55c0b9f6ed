/** `/api/v1/learn/:cls`: a learn report (Dovecot's IMAPSieve scripts on a move into or out of Junk). */
import type { FastifyInstance } from 'fastify';
import type { ApiContext } from './context.js';
import { errors, errorSchema } from './schemas.js';

/** Largest message a learn report may carry. */
export const MAX_LEARN_BYTES = 10 * 1024 * 1024;

export function learnRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const learnRequests = ctx.metrics.get('postwarden_learn_requests_total');
  app.post<{ Params: { cls: string } }>(
    '/learn/:cls',
    {
      bodyLimit: MAX_LEARN_BYTES,
      schema: {
        tags: ['learn'],
        summary: 'Teach the classifier a message as spam or ham (queued; 202)',
        params: {
          type: 'object',
          required: ['cls'],
          properties: { cls: { type: 'string', description: 'spam or ham (anything else: 404)' } },
        },
        body: { description: 'The message (Content-Type: message/rfc822)' },
        response: {
          202: {
            type: 'object',
            required: ['result'],
            properties: { result: { type: 'string', enum: ['queued', 'duplicate'] } },
          },
          404: errorSchema,
          413: errorSchema,
          ...errors(),
        },
      },
    },
    async (request, reply) => {
      const cls = request.params.cls;
      if (cls !== 'spam' && cls !== 'ham') return reply.status(404).send({ error: 'learn spam or ham' });
      if (!ctx.learn)
        return reply.status(503).send({ error: 'nothing learns here: the bayes scanner is off' });
      const body = request.body;
      if (!Buffer.isBuffer(body) || body.length === 0) {
        return reply
          .status(400)
          .send({ error: 'send the message as the body (Content-Type: message/rfc822)' });
      }
      const result = ctx.learn(cls, body);
      learnRequests.inc({ class: cls, result });
      if (result === 'full')
        return reply.status(503).send({ error: 'the learn queue is full; try again later' });
      return reply.status(202).send({ result });
    },
  );
}
