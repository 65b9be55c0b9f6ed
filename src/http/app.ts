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
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';

export interface ReadinessItem {
  readonly name: string;
  readonly ready: boolean;
  readonly reason?: string;
  /** false: reported (status `degraded`) without making the service unready, e.g. one failing DNS list. */
  readonly critical?: boolean;
}

export interface HttpDeps {
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly readiness: () => readonly ReadinessItem[];
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

  return app;
}
