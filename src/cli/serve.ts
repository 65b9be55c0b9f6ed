/**
 * `postwarden serve [--config FILE]` — loads and validates the config (problems: exit 78), opens the maps, and
 * runs the enabled faces: the policy server and the HTTP face. SIGHUP re-reads the maps without dropping a
 * connection; SIGTERM/SIGINT finish what is in flight and exit 0.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Config } from '../config/schema.js';
import type { Store, StoreHealth } from '../core/store.js';
import { buildHttpApp, type ReadinessItem } from '../http/app.js';
import { MapRegistry } from '../maps/index.js';
import { createLogger, type Logger } from '../observe/logger.js';
import { Metrics } from '../observe/metrics.js';
import { PolicyServer } from '../policy/server.js';
import type { ResolverHealth } from '../adapters/dns.js';
import { ClamdScanner } from '../adapters/clamd.js';
import { MailauthSpf } from '../adapters/spf.js';
import { Locality } from '../core/locality.js';
import { BayesModel } from '../core/spam/bayes.js';
import { LearnQueue } from '../filter/learn.js';
import type { Quarantine } from '../filter/quarantine.js';
import { FilterServer } from '../filter/server.js';
import { buildFilterService, buildScannerStages, filterNeedsStore } from '../filter/stages.js';
import {
  buildStages,
  createPolicyHandler,
  needsDns,
  needsDnsLists,
  needsStore,
  receiverName,
} from '../policy/service.js';
import { openStore, StoreOptionsError } from '../store/index.js';
import { EXIT } from '../util/sysexits.js';
import { parse } from './args.js';
import { loadOrReport, mapEventSink, storeEventSink, storeOptions } from './common.js';
import { dnsblRuntime, meteredDnsClient } from './dns.js';
import { startJobs } from './jobs.js';
import { ratelimitRuntime } from './ratelimit.js';

function listenList(listen: string | readonly string[]): string[] {
  return typeof listen === 'string' ? [listen] : [...listen];
}

export async function serve(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' } });
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  const { config, source, baseDir } = loaded;
  const logger = createLogger(config.log.level);
  if (source.kind === 'embedded') {
    logger.warn({ code: 'PW-C002' }, 'no config file; running on the embedded default');
  }
  const metrics = new Metrics();
  const maps: MapRegistry = new MapRegistry({
    env: { baseDir, recipientDelimiter: config.recipient_delimiter },
    onEvent: mapEventSink(logger, metrics),
  });
  metrics.collectFrom('postwarden_map_healthy', (gauge) => {
    for (const map of maps.health()) gauge.set({ map: map.name }, map.healthy ? 1 : 0);
  });
  let store: Store | undefined;
  try {
    store =
      needsStore(config) || filterNeedsStore(config)
        ? await openStore(storeOptions(config, baseDir), storeEventSink(logger, metrics))
        : undefined;
  } catch (error) {
    if (!(error instanceof StoreOptionsError)) throw error;
    logger.fatal({ code: 'PW-S003', reason: error.message }, 'cannot open the store');
    maps.close();
    return EXIT.CONFIG;
  }
  const resolver = needsDns(config) ? meteredDnsClient(config, metrics, logger) : undefined;
  const dnsbl =
    resolver && needsDnsLists(config)
      ? dnsblRuntime(config, resolver, logger.child({ face: 'policy' }), metrics)
      : undefined;
  const ratelimit =
    store && config.policy.checks.includes('ratelimit') && config.policy.ratelimit.mode !== 'off'
      ? ratelimitRuntime(config, baseDir, store, logger, metrics)
      : undefined;
  const stages = buildStages(config, {
    open: (ref, key) => maps.openRef(ref, key),
    ...(ratelimit ? { ratelimitAlerts: ratelimit.alerts } : {}),
    ...(store ? { store } : {}),
    ...(dnsbl ? { dnsbl } : {}),
    ...(resolver ? { resolver, spf: new MailauthSpf(resolver, receiverName(config)) } : {}),
  });
  const policy = new PolicyServer(
    createPolicyHandler(config, stages, logger.child({ face: 'policy' }), metrics),
    policyLimits(config),
    logger.child({ face: 'policy' }),
    metrics,
  );
  let policyListening = false;
  const readiness = (): ReadinessItem[] => [
    { name: 'policy', ready: policyListening, ...(policyListening ? {} : { reason: 'not listening' }) },
    ...(store ? [storeReadiness(store.health())] : []),
    ...(resolver ? [resolverReadiness(resolver.health())] : []),
    // A failing DNS list is reported, not fatal: its hits stop counting and mail still flows.
    ...(dnsbl?.health.snapshot() ?? []).map((h) => ({
      name: `dnsbl ${h.list} ipv${h.family}`,
      ready: h.healthy,
      critical: false,
      ...(h.reason !== undefined && !h.healthy ? { reason: `${h.reason}; ${h.fix ?? ''}` } : {}),
    })),
    ...maps.health().map((m) => ({
      name: `map ${m.name}`,
      ready: m.healthy,
      ...(m.reason !== undefined ? { reason: m.reason } : {}),
    })),
  ];
  let filter: ReturnType<typeof buildFilter> | undefined;
  try {
    const locality = new Locality({
      localDomains: maps.openRef(config.local_domains, 'local_domains'),
      localNetworks: maps.openRef(config.local_networks, 'local_networks'),
    });
    filter = config.filter.enabled
      ? buildFilter(config, baseDir, logger, metrics, store, locality)
      : undefined;
  } catch (error) {
    logger.fatal({ code: 'PW-C007', reason: (error as Error).message }, 'cannot prepare the content filter');
    await store?.close();
    maps.close();
    return EXIT.CONFIG;
  }
  let filterListening = false;
  const readinessWithFilter = (): ReadinessItem[] => [
    ...readiness(),
    ...(filter
      ? [{ name: 'filter', ready: filterListening, ...(filterListening ? {} : { reason: 'not listening' }) }]
      : []),
  ];
  const adminToken = readAdminToken(config, baseDir, logger);
  const learnQueue = filter?.learn;
  const http = buildHttpApp({
    metrics,
    logger,
    readiness: readinessWithFilter,
    ...(adminToken ? { adminToken } : {}),
    ...(learnQueue ? { learn: (cls, raw) => learnQueue.submit(cls, raw) } : {}),
    ...(ratelimit ? { ratelimit: ratelimit.api } : {}),
  });

  try {
    const bound = await policy.listen(listenList(config.policy.listen));
    policyListening = true;
    const filterAddress = filter ? await filter.server.listen(config.filter.listen) : undefined;
    filterListening = filter !== undefined;
    const httpAddress = await listenHttp(http, config.http.listen);
    logger.info(
      {
        code: 'PW-C005',
        policy: bound.map((b) => b.address),
        ...(filterAddress ? { filter: filterAddress } : {}),
        http: httpAddress,
        config: source,
      },
      'postwarden started',
    );
  } catch (error) {
    logger.fatal({ code: 'PW-C003', err: error }, 'cannot open a listener');
    await Promise.allSettled([policy.close(0), filter?.server.close(), http.close(), store?.close()]);
    maps.close();
    return EXIT.UNAVAILABLE;
  }

  const stopJobs = startJobs(
    config,
    {
      ...(store ? { store } : {}),
      ...(dnsbl ? { dnsblSelfTest: () => dnsbl.selfTestAll() } : {}),
      ...(filter ? { quarantineExpiry: () => filter.quarantine.expire() } : {}),
    },
    logger,
    metrics,
  );

  return new Promise<number>((resolve) => {
    process.on('SIGHUP', () => {
      logger.info({ code: 'PW-C004' }, 'reload requested');
      void maps.reloadAll();
    });
    const stop = (signal: string) => {
      logger.info({ code: 'PW-C006', signal }, 'stopping');
      void Promise.allSettled([policy.close(), filter?.server.close(), http.close(), stopJobs()]).then(
        async () => {
          ratelimit?.close();
          await store?.close();
          maps.close();
          resolve(EXIT.OK);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

/** The content filter face: scanners, spool and quarantine ready, not yet listening. */
function buildFilter(
  config: Readonly<Config>,
  baseDir: string,
  logger: Logger,
  metrics: Metrics,
  store: Store | undefined,
  locality: Locality,
): { server: FilterServer; quarantine: Quarantine; learn?: LearnQueue } {
  const filterLogger = logger.child({ face: 'filter' });
  const bayes = store ? new BayesModel(store, config.filter.bayes.token_ttl_days * 86_400) : undefined;
  const antivirus = config.filter.scanners.includes('antivirus') && config.filter.antivirus.mode !== 'off';
  const stages = buildScannerStages(config, {
    ...(antivirus ? { virusScanner: new ClamdScanner(config.filter.antivirus) } : {}),
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
    (address) => locality.isLocalAddress(address),
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
  return { server, quarantine, ...(learn ? { learn } : {}) };
}

/** The admin API token (first line of http.token_file); none, with a warning, when it is missing or too short. */
function readAdminToken(config: Readonly<Config>, baseDir: string, logger: Logger): string | undefined {
  const file = path.resolve(baseDir, config.http.token_file);
  let token: string;
  try {
    token = (readFileSync(file, 'utf8').split('\n')[0] ?? '').trim();
  } catch {
    logger.info({ code: 'PW-H003', file }, 'no admin token file: the admin API answers 503');
    return undefined;
  }
  if (token.length < 32) {
    logger.warn(
      { code: 'PW-H003', file },
      'the admin token is shorter than 32 characters: the admin API stays off',
    );
    return undefined;
  }
  return token;
}

function resolverReadiness(health: ResolverHealth): ReadinessItem {
  return {
    name: 'dns resolvers',
    ready: health.healthy,
    ...(health.reason ? { reason: health.reason } : {}),
  };
}

function storeReadiness(health: StoreHealth): ReadinessItem {
  return {
    name: `store ${health.driver}`,
    ready: health.healthy,
    ...(health.reason !== undefined ? { reason: health.reason } : {}),
  };
}

function policyLimits(config: Readonly<Config>) {
  const s = config.policy.server;
  return {
    maxConnections: s.max_connections,
    maxLineBytes: s.max_line_bytes,
    maxRequestBytes: s.max_request_bytes,
    maxAttributes: s.max_attributes,
    idleTimeoutMs: s.idle_timeout_s * 1000,
    maxPendingRequests: s.max_pending_requests,
  };
}

async function listenHttp(app: ReturnType<typeof buildHttpApp>, address: string): Promise<string> {
  if (address.startsWith('unix:')) return app.listen({ path: address.slice(5) });
  const colon = address.lastIndexOf(':');
  return app.listen({
    host: address.slice(0, colon).replace(/^\[|\]$/g, ''),
    port: Number(address.slice(colon + 1)),
  });
}
