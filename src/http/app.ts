/**
 * The HTTP face (fastify), built without listening so tests use `inject()`: Prometheus `/metrics`, `/healthz`
 * (the process answers) and `/readyz` (every face listens and every dependency answers; 503 with the reasons
 * otherwise; `degraded` with 200 when only a non-critical part fails, such as one DNS list). Later issues add the admin API, the quarantine page and Dovecot's auth-policy endpoint here.
 */
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  LogController,
} from 'fastify';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { ratelimitRoutes, type RatelimitApiDeps } from './api/ratelimit.js';

export interface ReadinessItem {
  readonly name: string;
  readonly ready: boolean;
  readonly reason?: string;
  /** false: reported (status `degraded`) without making the service unready, e.g. one failing DNS list. */
  readonly critical?: boolean;
}

export type LearnClass = 'spam' | 'ham';
export type LearnSubmit = (cls: LearnClass, raw: Buffer) => 'queued' | 'duplicate' | 'full';

export interface HttpDeps {
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly readiness: () => readonly ReadinessItem[];
  /** The admin API token; without one the admin routes answer 503. */
  readonly adminToken?: string;
  /** Takes a learn report (the classifier and its store run); absent when nothing learns. */
  readonly learn?: LearnSubmit;
  /** The rate-limit incidents API (src/http/api/ratelimit.ts); absent when the ratelimit check is off. */
  readonly ratelimit?: RatelimitApiDeps;
}

/** Largest message a learn report may carry. */
const MAX_LEARN_BYTES = 10 * 1024 * 1024;

/** Compares in constant time, so the answer's timing tells nothing about the token. */
function tokenMatches(given: string | undefined, token: string): boolean {
  const a = Buffer.from(given ?? '');
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function buildHttpApp(deps: HttpDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger.child({ face: 'http' }) as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1_048_576,
    connectionTimeout: 30_000,
    requestTimeout: 30_000,
    return503OnClosing: true,
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = error.statusCode ?? 500;
    if (status >= 500) {
      request.log.error({ code: 'PW-H001', err: error, url: request.url }, 'HTTP request failed');
      deps.metrics.get('postwarden_errors_total').inc({ code: 'PW-H001' });
    }
    void reply
      .status(status)
      .send({ error: status >= 500 ? 'internal error' : error.message, code: error.code });
  });

  app.get('/metrics', async (_request, reply) => {
    const body = await deps.metrics.registry.metrics();
    return reply.type(deps.metrics.registry.contentType).send(body);
  });

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const items = deps.readiness();
    const ready = items.every((item) => item.ready || item.critical === false);
    const status = !ready ? 'not ready' : items.every((item) => item.ready) ? 'ready' : 'degraded';
    return reply.status(ready ? 200 : 503).send({ status, checks: items });
  });

  // The admin API: a bearer token on every route under /api/.
  app.addContentTypeParser(
    ['message/rfc822', 'application/octet-stream', 'text/plain'],
    { parseAs: 'buffer', bodyLimit: MAX_LEARN_BYTES },
    (_request, body, done) => done(null, body),
  );
  app.addHook('onRequest', async (request, reply) => {
    if (!request.url.startsWith('/api/')) return;
    if (!deps.adminToken) {
      return reply.status(503).send({ error: 'the admin API is off: write a token to http.token_file' });
    }
    const header = request.headers.authorization;
    const given = header?.startsWith('Bearer ') ? header.slice(7) : undefined;
    if (!tokenMatches(given, deps.adminToken)) {
      deps.metrics.get('postwarden_errors_total').inc({ code: 'PW-H002' });
      return reply
        .status(401)
        .header('www-authenticate', 'Bearer')
        .send({ error: 'a valid bearer token is required' });
    }
  });

  const learnRequests = deps.metrics.get('postwarden_learn_requests_total');
  app.post<{ Params: { cls: string } }>('/api/v1/learn/:cls', async (request, reply) => {
    const cls = request.params.cls;
    if (cls !== 'spam' && cls !== 'ham') return reply.status(404).send({ error: 'learn spam or ham' });
    if (!deps.learn)
      return reply.status(503).send({ error: 'nothing learns here: the bayes scanner is off' });
    const body = request.body;
    if (!Buffer.isBuffer(body) || body.length === 0) {
      return reply.status(400).send({ error: 'send the message as the body (Content-Type: message/rfc822)' });
    }
    const result = deps.learn(cls, body);
    learnRequests.inc({ class: cls, result });
    if (result === 'full')
      return reply.status(503).send({ error: 'the learn queue is full; try again later' });
    return reply.status(202).send({ result });
  });

  if (deps.ratelimit) void app.register(ratelimitRoutes(deps.ratelimit));
  return app;
}
