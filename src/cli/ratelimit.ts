/**
 * Wiring of the ratelimit check's outside parts for `serve`: what happens when an incident opens (log PW-R001,
 * metric, admin notice when `notify.to` is set), the gauges of open incidents and held mail, and the incidents
 * API with Postfix's hold queue.
 */
import { hostname } from 'node:os';
import path from 'node:path';
import { IncidentNotifier } from '../adapters/incident-notice.js';
import { PostfixQueue } from '../adapters/postfix-queue.js';
import { countOpen, type RateLimitAlerts } from '../core/ratelimit-incidents.js';
import type { Store } from '../core/store.js';
import type { Config } from '../config/schema.js';
import type { RatelimitApiDeps } from '../http/api/ratelimit.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';

export interface RatelimitRuntime {
  readonly alerts: RateLimitAlerts;
  readonly api: RatelimitApiDeps;
  close(): void;
}

export function ratelimitRuntime(
  config: Readonly<Config>,
  baseDir: string,
  store: Store,
  logger: Logger,
  metrics: Metrics,
): RatelimitRuntime {
  const settings = config.policy.ratelimit;
  const log = logger.child({ face: 'policy', check: 'ratelimit' });
  const name = config.hostname || hostname();
  const notices = metrics.get('postwarden_ratelimit_notices_total');
  const notifier =
    settings.notify.to === ''
      ? undefined
      : new IncidentNotifier(
          {
            to: settings.notify.to,
            from: settings.notify.from || `postwarden@${name}`,
            smtp: settings.notify.smtp,
            timeoutMs: settings.notify.timeout_ms,
            attempts: settings.notify.attempts,
            hostname: name,
          },
          store,
          (incident, outcome, reason) => {
            notices.inc({ outcome });
            if (outcome === 'retry')
              log.warn({ code: 'PW-R002', user: incident.user, reason }, 'notice retried');
            if (outcome === 'failed' || outcome === 'dropped') {
              log.error({ code: 'PW-R003', user: incident.user, outcome, reason }, 'notice given up');
            }
          },
        );
  const incidents = metrics.get('postwarden_ratelimit_incidents_total');
  const alerts: RateLimitAlerts = {
    incidentOpened(incident) {
      incidents.inc();
      log.warn(
        { code: 'PW-R001', user: incident.user, limit: incident.limit, client: incident.client },
        'rate limit: SASL user over its limit, mail held',
      );
      notifier?.incidentOpened(incident);
    },
  };
  // Read at scrape time, so they hold what every instance on a shared store did; a store that fails leaves the
  // gauges without a sample for that scrape (PostwardenStoreFailing says why) rather than failing /metrics.
  let counting: Promise<{ incidents: number; held: number } | undefined> | undefined;
  const counted = () =>
    (counting ??= countOpen(store)
      .catch(() => undefined)
      .finally(() => {
        counting = undefined;
      }));
  metrics.collectFrom('postwarden_ratelimit_open_incidents', async (gauge) => {
    const counts = await counted();
    if (counts) gauge.set(counts.incidents);
    else gauge.remove();
  });
  metrics.collectFrom('postwarden_ratelimit_held_messages', async (gauge) => {
    const counts = await counted();
    if (counts) gauge.set(counts.held);
    else gauge.remove();
  });
  const configDir = settings.postfix_config_dir && path.resolve(baseDir, settings.postfix_config_dir);
  const queue = new PostfixQueue({ configDir, sudo: settings.postsuper_sudo });
  return {
    alerts,
    api: { store, queue, recipientDelimiter: config.recipient_delimiter },
    close: () => notifier?.close(),
  };
}
