/**
 * The admin API under `/api/v1` (registered by src/http/app.ts behind its bearer-token hook): quarantine,
 * greylist, list entries, decisions, status, learn, and the OpenAPI document of them all
 * (`/api/v1/openapi.json`, checked in as docs/openapi.json). Every route declares JSON schemas for its input and
 * output; input that does not fit is 400 before a handler runs, a JSON body over ADMIN_BODY_LIMIT is 413.
 *
 * Failure behaviour: a store that cannot answer is 503 (PW-S001) — never 500 — so a script retries; what an
 * operation refuses is 400 (bad input), 404 (no such thing), 409 (conflict: released already, not editable).
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import type { ApiContext } from './context.js';
import { greylistRoutes } from './greylist.js';
import { learnRoutes } from './learn.js';
import { listsRoutes } from './lists.js';
import { quarantineRoutes } from './quarantine.js';
import { statusRoutes } from './status.js';

export type { ApiContext, LearnClass, LearnSubmit } from './context.js';

/** The largest JSON body an admin route takes (the learn route takes a message: MAX_LEARN_BYTES). */
export const ADMIN_BODY_LIMIT = 64 * 1024;

export function adminApi(ctx: ApiContext) {
  return async (app: FastifyInstance): Promise<void> => {
    app.setErrorHandler((error: FastifyError & { code?: string }, _request, reply) => {
      if (error.code === 'PW-S001') {
        return reply
          .status(503)
          .send({ error: 'the state store is unavailable; try again later', code: error.code });
      }
      throw error;
    });
    app.addHook('onRoute', (route) => {
      route.bodyLimit ??= ADMIN_BODY_LIMIT;
    });
    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
    quarantineRoutes(app, ctx);
    greylistRoutes(app, ctx);
    listsRoutes(app, ctx);
    statusRoutes(app, ctx);
    learnRoutes(app, ctx);
  };
}
