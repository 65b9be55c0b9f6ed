/**
 * Wiring of the DNS side for `serve` and `dnsbl-check`: the resolver from `dns.*` with its metrics, the lists of
 * `policy.dnsbl`, their health (PW-D001 when a list stops counting, PW-D002 when it counts again) and the
 * self-test that keeps it.
 */
import { DnsClient, type DnsClientOptions } from '../adapters/dns.js';
import { DnsListHealth, dnsLists, selfTest, type DnsList, type ListHealth } from '../core/checks/index.js';
import { uriLists } from '../core/scanners/uribl.js';
import { uriblRuns } from '../filter/needs.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import type { DnsblDeps } from '../policy/service.js';

export function dnsClientOptions(config: Readonly<Config>): DnsClientOptions {
  const dns = config.dns;
  return {
    servers: dns.servers,
    timeoutMs: dns.timeout_ms,
    tries: dns.tries,
    maxInFlight: dns.max_in_flight,
    cache: {
      maxEntries: dns.cache.max_entries,
      maxTtlS: dns.cache.max_ttl_s,
      defaultTtlS: dns.cache.default_ttl_s,
      negativeTtlS: dns.cache.negative_ttl_s,
      errorTtlS: dns.cache.error_ttl_s,
    },
  };
}

/** A resolver that reports every query to the metrics, and logs when the resolvers stop answering (PW-D010). */
export function meteredDnsClient(config: Readonly<Config>, metrics: Metrics, logger: Logger): DnsClient {
  const queries = metrics.get('postwarden_dns_queries_total');
  const duration = metrics.get('postwarden_dns_query_duration_seconds');
  const client = new DnsClient({
    ...dnsClientOptions(config),
    onQuery: (event) => {
      queries.inc({ type: event.type, result: event.result, cache: event.cache });
      if (event.cache === 'miss') duration.observe({ type: event.type }, event.ms / 1000);
    },
    onHealth: (health) => {
      if (health.healthy) {
        logger.info({ code: 'PW-D011', servers: config.dns.servers }, 'the DNS resolvers answer again');
        return;
      }
      metrics.get('postwarden_errors_total').inc({ code: 'PW-D010' });
      logger.error(
        { code: 'PW-D010', servers: config.dns.servers, reason: health.reason },
        'the DNS resolvers do not answer: DNS checks fail and dns_sanity defers mail; start a local resolver (unbound) or correct dns.servers',
      );
    },
  });
  metrics.collectFrom('postwarden_dns_cache_entries', (gauge) => gauge.set(client.cacheSize));
  return client;
}

export interface DnsblRuntime extends DnsblDeps {
  /** The URI lists of filter.uribl (when that scanner runs); same health record, same self-test job. */
  readonly uriLists: readonly DnsList[];
  /** Self-tests every list for every family it serves; the job's outcome for the log. */
  selfTestAll(): Promise<Record<string, unknown>>;
}

/** The lists (policy.dnsbl, and filter.uribl's when it runs), their health and their self-test, logging each
 * change of health with its fix. */
export function dnsblRuntime(
  config: Readonly<Config>,
  resolver: DnsClient,
  logger: Logger,
  metrics: Metrics,
): DnsblRuntime {
  const lists = dnsLists(config.policy.dnsbl);
  const uris = uriblRuns(config) ? uriLists(config.filter.uribl) : [];
  const all = [...lists, ...uris];
  const onChange = (h: ListHealth) => {
    const fields = { list: h.list, family: h.target };
    if (h.healthy) {
      logger.info({ code: 'PW-D002', ...fields }, 'DNS list passes its self-test again; its hits count');
      return;
    }
    metrics.get('postwarden_errors_total').inc({ code: 'PW-D001' });
    logger.error(
      { code: 'PW-D001', ...fields, reason: h.reason, fix: h.fix },
      'DNS list failed its self-test; its hits no longer count',
    );
  };
  const health = new DnsListHealth(all, onChange);
  metrics.collectFrom('postwarden_dnsbl_list_healthy', (gauge) => {
    for (const h of health.snapshot()) gauge.set({ list: h.list, family: h.target }, h.healthy ? 1 : 0);
  });
  // The self-test asks the lists, not the cache: a list that turned bad must be seen at the next test.
  const uncached = new DnsClient({
    ...dnsClientOptions(config),
    cache: { ...dnsClientOptions(config).cache, maxEntries: 0 },
  });
  return {
    resolver,
    lists,
    uriLists: uris,
    health,
    async selfTestAll() {
      const runs = all.flatMap((list) =>
        (list.ipv6 ? ([4, 6] as const) : ([4] as const)).map(async (family) => {
          health.record(list, family, await selfTest(list, family, uncached));
        }),
      );
      await Promise.all(runs);
      const snapshot = health.snapshot();
      return {
        lists: snapshot.length,
        unhealthy: snapshot.filter((h) => !h.healthy).map((h) => `${h.list} ${h.target}`),
      };
    },
  };
}
