/**
 * `postwarden serve [--config FILE]` — loads and validates the config (problems: exit 78), opens the maps, and
 * runs the enabled faces: the policy server and the HTTP face. SIGHUP re-reads the maps without dropping a
 * connection; SIGTERM/SIGINT finish what is in flight and exit 0.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import type { Config } from '../config/schema.js';
import { AuthGuard } from '../core/auth-guard.js';
import type { Store, StoreHealth } from '../core/store.js';
import { buildHttpApp, type ReadinessItem } from '../http/app.js';
import { openLearnSocket } from '../dovecot/learn.js';
import type { ScriptSocketServer } from '../dovecot/script-socket.js';
import type { AuthPolicyDeps } from '../http/auth-policy.js';
import { MapRegistry } from '../maps/index.js';
import { createLogger, type Logger } from '../observe/logger.js';
import { Metrics } from '../observe/metrics.js';
import { PolicyServer } from '../policy/server.js';
import type { ResolverHealth } from '../adapters/dns.js';
import { Locality } from '../core/locality.js';
import { filterNeedsDns, filterNeedsStore, uriblRuns } from '../filter/needs.js';
import {
  buildStages,
  createPolicyHandler,
  needsDns,
  needsDnsLists,
  needsStore,
  receiverName,
} from '../policy/service.js';
import { openStore, StoreOptionsError } from '../store/index.js';
import type { AdminServices } from '../admin/index.js';
import { ListOps } from '../admin/lists.js';
import { instanceStatus, type FaceStatus } from '../admin/status.js';
import { DecisionRecorder } from '../core/decisions.js';
import { RuntimeEntries } from '../maps/runtime.js';
import { EXIT } from '../util/sysexits.js';
import { parse } from './args.js';
import {
  LdapOptionsError,
  loadOrReport,
  mapEventSink,
  openLdap,
  storeEventSink,
  storeOptions,
} from './common.js';
import { dnsblRuntime, meteredDnsClient } from './dns.js';
import { startJobs } from './jobs.js';
import { linkSecret, quarantinePageOptions } from './quarantine-page.js';
import type { FilterFace } from './serve-filter.js';

/** How often the runtime list entries are re-read from the store (edits made by the CLI or another host). */
const RUNTIME_LISTS_REFRESH_MS = 10_000;

function listenList(listen: string | readonly string[]): string[] {
  return typeof listen === 'string' ? [listen] : [...listen];
}

/**
 * How far V8 lets the old generation grow past the live heap before a full collection, in percent. Its default
 * favours throughput and grows up to 4×: under a sustained policy load that is ~100 MB of dead requests held
 * for seconds (the greylist benchmark peaked at 240 MB with 30 MB live). 50% keeps the peak near 165 MB for no
 * measurable CPU, which suits a daemon that should keep a flat footprint. A flag given to node (or in
 * NODE_OPTIONS) wins.
 */
const HEAP_GROWING_PERCENT = 50;

export async function serve(argv: string[]): Promise<number> {
  const nodeFlags = [...process.execArgv, process.env['NODE_OPTIONS'] ?? ''].join(' ');
  if (!nodeFlags.includes('--heap-growing-percent')) {
    v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  }
  const { values } = parse(argv, { config: { type: 'string' } });
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  const { config, source, baseDir } = loaded;
  const logger = createLogger(config.log.level);
  if (source.kind === 'embedded') {
    logger.warn({ code: 'PW-C002' }, 'no config file; running on the embedded default');
  }
  const metrics = new Metrics();
  let ldap: ReturnType<typeof openLdap>;
  try {
    ldap = openLdap(config, baseDir, logger, metrics);
  } catch (error) {
    if (!(error instanceof LdapOptionsError)) throw error;
    logger.fatal({ code: 'PW-L003', reason: error.message }, 'cannot use the ldap section');
    return EXIT.CONFIG;
  }
  const maps: MapRegistry = new MapRegistry({
    env: { baseDir, recipientDelimiter: config.recipient_delimiter },
    onEvent: mapEventSink(logger, metrics),
    ...(ldap ? { ldap: ldap.maps } : {}),
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
  const startedAt = new Date();
  const recordResults = metrics.get('postwarden_decision_records_total');
  const recorder =
    store && config.decisions.enabled
      ? new DecisionRecorder(store, {
          retentionS: config.decisions.retention_s,
          maxPending: config.decisions.max_pending,
          onResult: (result) => recordResults.inc({ result }),
        })
      : undefined;
  // The admin's runtime block and allow entries, shared through the store (and re-read for other hosts' edits).
  const runtimeLists = store
    ? new RuntimeEntries(store, { baseDir, recipientDelimiter: config.recipient_delimiter })
    : undefined;
  await runtimeLists?.refresh();
  const resolver =
    needsDns(config) || filterNeedsDns(config) ? meteredDnsClient(config, metrics, logger) : undefined;
  // One SPF evaluator for the policy check and the filter: the filter then reuses the policy face's fresh result.
  // mailauth is loaded only when something resolves names (it is tens of MB of memory).
  const spf = resolver
    ? new (await import('../adapters/spf.js')).MailauthSpf(resolver, receiverName(config))
    : undefined;
  const dnsbl =
    resolver && (needsDnsLists(config) || uriblRuns(config))
      ? dnsblRuntime(config, resolver, logger.child({ face: 'policy' }), metrics)
      : undefined;
  const authGuard =
    config.auth_policy.enabled && store
      ? new AuthGuard(config.auth_policy, store, maps.openRef(config.auth_policy.allow, 'auth_policy.allow'))
      : undefined;
  const ratelimit =
    store && config.policy.checks.includes('ratelimit') && config.policy.ratelimit.mode !== 'off'
      ? (await import('./ratelimit.js')).ratelimitRuntime(config, baseDir, store, logger, metrics)
      : undefined;
  const stages = buildStages(config, {
    open: (ref, key) => maps.openRef(ref, key),
    ...(ratelimit ? { ratelimitAlerts: ratelimit.alerts } : {}),
    ...(store ? { store } : {}),
    ...(authGuard ? { authGuard } : {}),
    ...(dnsbl ? { dnsbl } : {}),
    ...(resolver && spf ? { resolver, spf } : {}),
    ...(runtimeLists ? { runtimeLists: (list: string) => runtimeLists.table(list) } : {}),
  });
  const policy = new PolicyServer(
    createPolicyHandler(config, stages, logger.child({ face: 'policy' }), metrics, recorder),
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
      name: `dnsbl ${h.list} ${h.target}`,
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
  let filter: FilterFace | undefined;
  const secret = config.filter.enabled ? linkSecret(config, baseDir, logger) : undefined;
  try {
    const locality = new Locality({
      localDomains: maps.openRef(config.local_domains, 'local_domains'),
      localNetworks: maps.openRef(config.local_networks, 'local_networks'),
    });
    filter = config.filter.enabled
      ? (await import('./serve-filter.js')).buildFilter(config, baseDir, logger, metrics, {
          store,
          locality,
          open: (ref, key) => maps.openRef(ref, key),
          ...(secret ? { linkKey: secret } : {}),
          ...(recorder ? { recorder } : {}),
          ...(resolver && spf ? { auth: { resolver, spf } } : {}),
          ...(dnsbl
            ? { uriLists: { resolver: dnsbl.resolver, lists: dnsbl.uriLists, health: dnsbl.health } }
            : {}),
        })
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
    ...(filter?.clamd ? [clamdReadiness(filter.clamd.health(), config.filter.antivirus)] : []),
  ];
  const adminToken = readAdminToken(config, baseDir, logger);
  const learnQueue = filter?.learn;
  const listening = new Map<string, string[]>();
  const faces = (): FaceStatus[] =>
    ['policy', ...(filter ? ['filter'] : []), 'http'].map((name) => {
      const addresses = listening.get(name);
      return { name, listening: addresses !== undefined, ...(addresses ? { addresses } : {}) };
    });
  const quarantineOps = filter?.quarantineOps;
  const admin: AdminServices = {
    status: () =>
      instanceStatus({
        instance: config.hostname || hostname(),
        startedAt,
        faces,
        readiness: readinessWithFilter,
      }),
    ...(quarantineOps ? { quarantine: quarantineOps } : {}),
    ...(store && needsStore(config)
      ? {
          greylist: {
            store,
            settings: { greylist: config.policy.greylist, recipientDelimiter: config.recipient_delimiter },
          },
        }
      : {}),
    ...(runtimeLists ? { lists: new ListOps(config.policy.lists, runtimeLists) } : {}),
    ...(recorder && store ? { decisions: store } : {}),
  };
  const http = buildHttpApp({
    metrics,
    logger,
    readiness: readinessWithFilter,
    admin,
    ...(adminToken ? { adminToken } : {}),
    ...(learnQueue ? { learn: (cls, raw) => learnQueue.submit(cls, raw) } : {}),
    ...(authGuard ? { authPolicy: authPolicyDeps(config, baseDir, logger, authGuard) } : {}),
    ...(quarantineOps ? { quarantinePage: quarantinePageOptions(config, quarantineOps, secret) } : {}),
    ...(ratelimit ? { ratelimit: ratelimit.api } : {}),
    maxConnections: config.http.max_connections,
  });

  let learnSocket: ScriptSocketServer | undefined;
  try {
    const bound = await policy.listen(listenList(config.policy.listen));
    policyListening = true;
    listening.set(
      'policy',
      bound.map((b) => b.address),
    );
    const filterAddress = filter ? await filter.server.listen(config.filter.listen) : undefined;
    filterListening = filter !== undefined;
    if (filterAddress) listening.set('filter', [filterAddress]);
    const httpAddress = await listenHttp(http, config.http.listen);
    listening.set('http', [httpAddress]);
    runtimeLists?.start(RUNTIME_LISTS_REFRESH_MS);
    learnSocket = await openLearnSocket(
      config,
      learnQueue ? (cls, raw) => learnQueue.submit(cls, raw) : undefined,
      logger,
      metrics,
    );
    logger.info(
      {
        code: 'PW-C005',
        policy: bound.map((b) => b.address),
        ...(filterAddress ? { filter: filterAddress } : {}),
        http: httpAddress,
        ...(learnSocket ? { learn_socket: config.learn.socket } : {}),
        config: source,
      },
      'postwarden started',
    );
  } catch (error) {
    logger.fatal({ code: 'PW-C003', err: error }, 'cannot open a listener');
    await Promise.allSettled([
      policy.close(0),
      filter?.server.close(),
      filter?.clamd?.stop(),
      http.close(),
      learnSocket?.close(),
      store?.close(),
    ]);
    maps.close();
    return EXIT.UNAVAILABLE;
  }

  const stopJobs = startJobs(
    config,
    {
      ...(store ? { store } : {}),
      ...(dnsbl ? { dnsblSelfTest: () => dnsbl.selfTestAll() } : {}),
      ...(filter
        ? {
            quarantineExpiry: async () => {
              quarantineOps?.expireReleaseMarkers(config.filter.quarantine.retention_days);
              const removed = await filter.quarantine.expire();
              const swept = filter.quarantine.sweep();
              if (swept.unlisted.length > 0) {
                logger.warn(
                  {
                    code: 'PW-F011',
                    dir: filter.quarantine.dir,
                    count: swept.unlisted.length,
                    ids: swept.unlisted.slice(0, 20),
                  },
                  'held messages that cannot be listed or released: their entry file is missing or unreadable',
                );
              }
              return {
                removed,
                leftovers: swept.leftovers,
                broken_removed: swept.broken_removed,
                unlisted: swept.unlisted.length,
              };
            },
          }
        : {}),
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
      runtimeLists?.stop();
      void Promise.allSettled([
        policy.close(),
        filter?.server.close(),
        filter?.clamd?.stop(),
        http.close(),
        learnSocket?.close(),
        stopJobs(),
      ]).then(async () => {
        ratelimit?.close();
        await recorder?.settled();
        await store?.close();
        await ldap?.directory.close();
        maps.close();
        resolve(EXIT.OK);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

/** The first line of a secret file, trimmed: `missing` when it cannot be read, `short` below `minLength`. */
function readSecretFile(file: string, minLength: number): string | 'missing' | 'short' {
  let secret: string;
  try {
    secret = (readFileSync(file, 'utf8').split('\n')[0] ?? '').trim();
  } catch {
    return 'missing';
  }
  return secret.length < minLength ? 'short' : secret;
}

/** The admin API token (first line of http.token_file); none, with a warning, when it is missing or too short. */
function readAdminToken(config: Readonly<Config>, baseDir: string, logger: Logger): string | undefined {
  const file = path.resolve(baseDir, config.http.token_file);
  const token = readSecretFile(file, 32);
  if (token === 'missing') {
    logger.info({ code: 'PW-H003', file }, 'no admin token file: the admin API answers 503');
    return undefined;
  }
  if (token === 'short') {
    logger.warn(
      { code: 'PW-H003', file },
      'the admin token is shorter than 32 characters: the admin API stays off',
    );
    return undefined;
  }
  return token;
}

/** The key Dovecot sends (first line of auth_policy.api_key_file); none, with a warning, when it is unusable. */
function readAuthPolicyKey(config: Readonly<Config>, baseDir: string, logger: Logger): string | undefined {
  const file = path.resolve(baseDir, config.auth_policy.api_key_file);
  const key = readSecretFile(file, 16);
  if (key === 'missing' || key === 'short') {
    logger.warn(
      { code: 'PW-G003', file, problem: key },
      'no usable auth policy key: the Dovecot auth-policy endpoint answers 503 (Dovecot lets logins through)',
    );
    return undefined;
  }
  return key;
}

function authPolicyDeps(
  config: Readonly<Config>,
  baseDir: string,
  logger: Logger,
  guard: AuthGuard,
): AuthPolicyDeps {
  const apiKey = readAuthPolicyKey(config, baseDir, logger);
  return { guard, settings: config.auth_policy, ...(apiKey ? { apiKey } : {}) };
}

function resolverReadiness(health: ResolverHealth): ReadinessItem {
  return {
    name: 'dns resolvers',
    ready: health.healthy,
    ...(health.reason ? { reason: health.reason } : {}),
  };
}

/**
 * clamd makes the service unready only when its failure defers mail (enforce, on_failure defer); otherwise mail
 * flows unscanned or unenforced, and it is reported as degraded.
 */
function clamdReadiness(
  health: { readonly healthy: boolean; readonly reason?: string },
  av: Readonly<Config['filter']['antivirus']>,
): ReadinessItem {
  return {
    name: 'clamd',
    ready: health.healthy,
    ...(av.mode === 'enforce' && av.on_failure === 'defer' ? {} : { critical: false }),
    ...(health.reason !== undefined ? { reason: health.reason } : {}),
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
    requestTimeoutMs: s.request_timeout_s * 1000,
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
