/**
 * The HTTP face (fastify), built without listening so tests use `inject()`: Prometheus `/metrics`, `/healthz`
 * (the process answers) and `/readyz` (every face listens and every dependency answers; 503 with the reasons
 * otherwise; `degraded` with 200 when only a non-critical part fails, such as one DNS list), and the admin API
 * under `/api/v1` (src/http/api: every route behind a bearer token compared in constant time; a refusal is
 * logged without the token). Later issues add the quarantine page and Dovecot's auth-policy endpoint here.
 */
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  LogController,
} from 'fastify';
import swagger from '@fastify/swagger';
import type { AdminServices } from '../admin/index.js';
import { readyState, type ReadinessItem } from '../admin/status.js';
import { createThrottledLog, type Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { VERSION } from '../observe/version.js';
import { secretMatches } from '../util/secret.js';
import { adminApi, type LearnSubmit } from './api/index.js';
import { MAX_LEARN_BYTES } from './api/learn.js';
import { registerAuthPolicy, type AuthPolicyDeps } from './auth-policy.js';
import { quarantinePage, type QuarantinePageOptions } from './quarantine-page/routes.js';
import { ratelimitRoutes, type RatelimitApiDeps } from './api/ratelimit.js';

export type { ReadinessItem } from '../admin/status.js';
export type { LearnClass, LearnSubmit } from './api/index.js';

export interface HttpDeps {
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly readiness: () => readonly ReadinessItem[];
  /** The admin API token; without one the admin routes answer 503. */
  readonly adminToken?: string;
  /** Takes a learn report (the classifier and its store run); absent when nothing learns. */
  readonly learn?: LearnSubmit;
  /** Dovecot's auth policy (`auth_policy.enabled`); absent: POST /dovecot/auth-policy answers 503. */
  readonly authPolicy?: AuthPolicyDeps;
  /** The quarantine page (/quarantine/); absent when there is no quarantine (the filter is off). */
  readonly quarantinePage?: QuarantinePageOptions;
  /** The admin operations (each answers 503 when what it acts on is absent here). */
  readonly admin: AdminServices;
  /** The rate-limit incidents API (src/http/api/ratelimit.ts); absent when the ratelimit check is off. */
  readonly ratelimit?: RatelimitApiDeps;
  /** Open connections at most (http.max_connections); more are closed on accept. */
  readonly maxConnections?: number;
}

/** What is wrong with an Authorization header, for the log (never its value). */
function refusal(header: string | undefined): { given?: string; why: string } {
  if (header === undefined || header === '') return { why: 'no Authorization header' };
  const bearer = /^Bearer[ ]+(\S+)[ ]*$/i.exec(header);
  if (!bearer) return { why: 'not a Bearer token' };
  return { given: bearer[1] ?? '', why: 'wrong token' };
}

export function buildHttpApp(deps: HttpDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger.child({ face: 'http' }) as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1_048_576,
    connectionTimeout: 30_000,
    requestTimeout: 30_000,
    return503OnClosing: true,
    // Unknown fields are refused (400), not silently dropped: a mistyped filter must not widen what a call does.
    ajv: { customOptions: { removeAdditional: false } },
  });

  const throttled = createThrottledLog(app.log as Logger);
  if (deps.maxConnections !== undefined) {
    const limit = deps.maxConnections;
    app.server.maxConnections = limit;
    app.server.on('drop', (data?: { remoteAddress?: string }) => {
      deps.metrics.get('postwarden_errors_total').inc({ code: 'PW-H030' });
      throttled(
        'PW-H030',
        { remote: data?.remoteAddress, limit },
        'HTTP connection refused: too many connections',
      );
    });
  }

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
    const status = readyState(items);
    return reply.status(status === 'not ready' ? 503 : 200).send({ status, checks: items });
  });

  // The admin API: a bearer token on every route under /api/.
  app.addContentTypeParser(
    ['message/rfc822', 'application/octet-stream', 'text/plain'],
    { parseAs: 'buffer', bodyLimit: MAX_LEARN_BYTES },
    (_request, body, done) => done(null, body),
  );
  app.addHook('onRequest', async (request, reply) => {
    // By the matched route, not only the spelling of the URL: `/%61pi/v1/…` reaches the same routes.
    const route = request.routeOptions.url;
    if (!(route ?? request.url).startsWith('/api/') && !request.url.startsWith('/api/')) return;
    if (!deps.adminToken) {
      return reply.status(503).send({ error: 'the admin API is off: write a token to http.token_file' });
    }
    const header = request.headers.authorization;
    const { given, why } = refusal(header);
    if (given !== undefined && secretMatches(given, deps.adminToken)) return;
    deps.metrics.get('postwarden_errors_total').inc({ code: 'PW-H002' });
    // Throttled: someone guessing tokens must not flood the log. The path only: a query could hold anything.
    throttled(
      'PW-H002',
      { remote: request.ip, method: request.method, path: request.url.split('?')[0], why },
      'admin API request refused',
    );
    return reply
      .status(401)
      .header('www-authenticate', 'Bearer')
      .send({ error: 'a valid bearer token is required' });
  });

  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'postwarden admin API',
        version: VERSION,
        description:
          'Quarantine, greylisting, block and allow entries, decisions, status and learning. Every route needs `Authorization: Bearer <token>` (the first line of http.token_file).',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  void app.register(
    adminApi({
      admin: deps.admin,
      metrics: deps.metrics,
      ...(deps.learn ? { learn: deps.learn } : {}),
      audit: (request, action, details) =>
        request.log.info({ code: 'PW-H004', remote: request.ip, action, ...details }, `admin: ${action}`),
    }),
    { prefix: '/api/v1' },
  );

  registerAuthPolicy(app, deps);
  if (deps.quarantinePage) {
    const { adminToken, metrics, logger } = deps;
    void app.register(quarantinePage, {
      ...deps.quarantinePage,
      ...(adminToken ? { adminToken } : {}),
      metrics,
      logger,
    });
  }

  if (deps.ratelimit) void app.register(ratelimitRoutes(deps.ratelimit));
  return app;
}
