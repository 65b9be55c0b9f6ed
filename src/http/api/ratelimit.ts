/**
 * Admin API for rate-limit incidents (under /api/v1/ratelimit, behind the admin bearer token of app.ts):
 *
 *   GET  /api/v1/ratelimit/users                 users with an open incident or held mail
 *   GET  /api/v1/ratelimit/users/:user           one user's incident and held messages
 *   POST /api/v1/ratelimit/users/:user/release   postsuper -H the user's held messages (deliver them)
 *   POST /api/v1/ratelimit/users/:user/delete    postsuper -d the user's held messages (spam from a stolen account)
 *   POST /api/v1/ratelimit/users/:user/reset     end the incident and empty the user's buckets
 *
 * Held messages are the queue ids the check recorded at HOLD time (Postfix's queue files do not carry the SASL
 * user), and only those still in the hold queue are touched. Release and delete do not reset: an account whose
 * password was stolen stays held until the admin has changed it and resets.
 *
 * Failure behaviour: the store unavailable answers 503; postqueue/postsuper failing answers 502 with the tool's
 * first stderr line; every action is logged with PW-R004.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { userBucketKeys } from '../../core/checks/index.js';
import {
  closeIncident,
  forgetHeld,
  getIncident,
  heldMessages,
  listUsers,
} from '../../core/ratelimit-incidents.js';
import { StoreUnavailable, type Store } from '../../core/store.js';
import { PostfixQueueError } from '../../adapters/postfix-queue.js';

/** The hold queue's two actions (src/adapters/postfix-queue.ts); each resolves with the ids it acted on. */
export interface HoldQueue {
  release(queueIds: readonly string[]): Promise<string[]>;
  remove(queueIds: readonly string[]): Promise<string[]>;
}

export interface RatelimitApiDeps {
  readonly store: Store;
  readonly queue: HoldQueue;
  readonly recipientDelimiter: string;
}

/** Users listed at most (each scan). */
const MAX_LISTED = 1000;

type UserParams = { Params: { user: string } };

function failed(reply: FastifyReply, error: unknown): FastifyReply {
  if (error instanceof StoreUnavailable)
    return reply.status(503).send({ error: error.message, code: error.code });
  if (error instanceof PostfixQueueError) return reply.status(502).send({ error: error.message });
  throw error;
}

export function ratelimitRoutes(deps: RatelimitApiDeps) {
  const { store, queue } = deps;
  const user = (params: { user: string }) => params.user.trim().toLowerCase();

  return async function routes(app: FastifyInstance): Promise<void> {
    app.get('/api/v1/ratelimit/users', async (_request, reply) => {
      try {
        return { users: await listUsers(store, MAX_LISTED) };
      } catch (error) {
        return failed(reply, error);
      }
    });

    app.get<UserParams>('/api/v1/ratelimit/users/:user', async (request, reply) => {
      try {
        const name = user(request.params);
        const [incident, held] = await Promise.all([getIncident(store, name), heldMessages(store, name)]);
        if (!incident && held.length === 0)
          return reply.status(404).send({ error: 'no incident and no held mail' });
        return { user: name, ...(incident ? { incident } : {}), held };
      } catch (error) {
        return failed(reply, error);
      }
    });

    for (const action of ['release', 'delete'] as const) {
      app.post<UserParams>(`/api/v1/ratelimit/users/:user/${action}`, async (request, reply) => {
        try {
          const name = user(request.params);
          const recorded = (await heldMessages(store, name)).map((m) => m.queueId);
          const done = action === 'release' ? await queue.release(recorded) : await queue.remove(recorded);
          // Ids no longer held (released or deleted by hand, delivered, expired) are forgotten too.
          await forgetHeld(store, name, recorded);
          const gone = recorded.filter((id) => !done.includes(id));
          request.log.info({ code: 'PW-R004', action, user: name, queue_ids: done }, `held mail ${action}d`);
          return { user: name, [action === 'release' ? 'released' : 'deleted']: done, not_held: gone };
        } catch (error) {
          return failed(reply, error);
        }
      });
    }

    app.post<UserParams>('/api/v1/ratelimit/users/:user/reset', async (request, reply) => {
      try {
        const name = user(request.params);
        const incident = await getIncident(store, name);
        const buckets = userBucketKeys(name, incident?.sender ?? '', deps.recipientDelimiter);
        const closed = await closeIncident(store, name, buckets);
        request.log.info({ code: 'PW-R004', action: 'reset', user: name }, 'rate-limit user reset');
        return { user: name, incident_closed: closed };
      } catch (error) {
        return failed(reply, error);
      }
    });
  };
}
