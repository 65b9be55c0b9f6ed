/**
 * The content filter face of `serve`, in its own module: `serve` imports it only when `filter.enabled`, so a
 * policy-only daemon never loads the MIME parser, the SMTP server and client, and mailauth (tens of MB).
 */
import { hostname } from 'node:os';
import type { Config } from '../config/schema.js';
import { ClamdScanner } from '../adapters/clamd.js';
import { ClamdHealth } from '../adapters/clamd-health.js';
import { MailauthAuthenticator } from '../adapters/message-auth.js';
import { quarantineOpsOf, type QuarantineOps } from '../admin/quarantine.js';
import type { SpfEvaluator } from '../core/checks/spf.js';
import type { DecisionRecorder } from '../core/decisions.js';
import type { DnsResolver } from '../core/dns.js';
import type { Locality } from '../core/locality.js';
import { BayesModel } from '../core/spam/bayes.js';
import type { Store } from '../core/store.js';
import { LearnQueue } from '../filter/learn.js';
import type { Quarantine } from '../filter/quarantine.js';
import { FilterServer } from '../filter/server.js';
import { buildFilterService, buildScannerStages, type ScannerDeps } from '../filter/stages.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { noticeLinks } from './quarantine-page.js';

export interface FilterFace {
  readonly server: FilterServer;
  readonly quarantine: Quarantine;
  readonly quarantineOps: QuarantineOps;
  readonly learn?: LearnQueue;
  /** clamd's health, PINGed from the start (with the antivirus scanner only); stop() it on shutdown. */
  readonly clamd?: ClamdHealth;
}

/** The content filter face: scanners, spool and quarantine ready, not yet listening. */
export function buildFilter(
  config: Readonly<Config>,
  baseDir: string,
  logger: Logger,
  metrics: Metrics,
  wiring: Omit<ScannerDeps, 'authenticator'> & {
    readonly store: Store | undefined;
    /** DKIM, SPF, DMARC and ARC for the authentication scanner: the resolver and the policy face's SPF. */
    readonly auth?: { readonly resolver: DnsResolver; readonly spf: SpfEvaluator };
    readonly locality: Locality;
    /** Signs the recipients' release links in notices; absent: no links. */
    readonly linkKey?: Buffer;
    /** Files the filter's decisions under their queue ids (GET /api/v1/decisions). */
    readonly recorder?: DecisionRecorder;
  },
): FilterFace {
  const { store, locality, linkKey, recorder, auth, ...deps } = wiring;
  const filterLogger = logger.child({ face: 'filter' });
  const bayes = store ? new BayesModel(store, config.filter.bayes.token_ttl_days * 86_400) : undefined;
  const antivirus = config.filter.scanners.includes('antivirus') && config.filter.antivirus.mode !== 'off';
  const clamd = antivirus ? watchedClamd(config, filterLogger, metrics) : undefined;
  const stages = buildScannerStages(config, {
    ...deps,
    ...(auth ? { authenticator: new MailauthAuthenticator(auth.resolver, auth.spf) } : {}),
    ...(clamd ? { virusScanner: clamd.scanner } : {}),
    ...(bayes ? { bayes } : {}),
  });
  const { service, spool, quarantine } = buildFilterService(
    config,
    baseDir,
    stages,
    filterLogger,
    metrics,
    store,
    bayes,
    async (address) => locality.isLocalAddress(address),
    linkKey ? noticeLinks(config, linkKey) : undefined,
    recorder,
  );
  const swept = spool.prepare();
  if (swept > 0)
    filterLogger.warn({ code: 'PW-F005', removed: swept }, 'removed spool files an earlier run left');
  quarantine.prepare();
  const server = new FilterServer(
    service,
    {
      name: config.hostname || hostname(),
      maxMessageBytes: config.filter.max_message_bytes,
      maxConnections: config.filter.max_connections,
      idleTimeoutMs: config.filter.idle_timeout_s * 1000,
      dataTimeoutMs: config.filter.data_timeout_s * 1000,
    },
    filterLogger,
    metrics,
  );
  const learn = bayes
    ? new LearnQueue(bayes, {
        maxQueued: config.http.learn_queue,
        maxTokens: config.filter.bayes.max_tokens,
        maxAttempts: 6,
        retryMs: 1000,
        onLearned: (cls, outcome) => metrics.get('postwarden_learned_total').inc({ class: cls, outcome }),
      })
    : undefined;
  if (learn) metrics.collectFrom('postwarden_learn_queue_depth', (gauge) => gauge.set(learn.depth));
  const quarantineOps = quarantineOpsOf(config, baseDir, quarantine);
  clamd?.health.start();
  return {
    server,
    quarantine,
    quarantineOps,
    ...(learn ? { learn } : {}),
    ...(clamd ? { clamd: clamd.health } : {}),
  };
}

/**
 * The clamd client with its health: every scan's outcome and a PING every antivirus.ping_interval_s feed it;
 * a change is logged once (PW-F009 down, PW-F010 back) and postwarden_clamd_up reads it at scrape time.
 */
function watchedClamd(
  config: Readonly<Config>,
  logger: Logger,
  metrics: Metrics,
): { scanner: ClamdScanner; health: ClamdHealth } {
  const av = config.filter.antivirus;
  const errors = metrics.get('postwarden_errors_total');
  const scanner = new ClamdScanner(av, { onScan: (event) => health.scanned(event) });
  const health = new ClamdHealth(scanner, {
    intervalMs: av.ping_interval_s * 1000,
    onEvent: (event) => {
      logger[event.level]({ code: event.code, clamd: scanner.target }, event.message);
      if (event.level !== 'info') errors.inc({ code: event.code });
    },
  });
  metrics.collectFrom('postwarden_clamd_up', (gauge) => gauge.set(health.health().healthy ? 1 : 0));
  return { scanner, health };
}
