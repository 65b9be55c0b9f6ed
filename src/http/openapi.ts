/**
 * The admin API's OpenAPI document, rendered without a running server: the app is built with stand-in
 * dependencies (routes and schemas do not depend on them) and asked for what @fastify/swagger made of the
 * routes. `postwarden reference openapi` prints it; docs/openapi.json is this text, and a test fails when stale.
 */
import { createLogger } from '../observe/logger.js';
import { Metrics } from '../observe/metrics.js';
import { buildHttpApp } from './app.js';

export async function renderOpenApi(): Promise<string> {
  const app = buildHttpApp({
    metrics: new Metrics({ processMetrics: false }),
    logger: createLogger('silent'),
    readiness: () => [],
    admin: {
      status: () => {
        throw new Error('not served while rendering the document');
      },
    },
  });
  try {
    await app.ready();
    return `${JSON.stringify(app.swagger(), null, 2)}\n`;
  } finally {
    await app.close();
  }
}
