/**
 * Metrics: every Prometheus metric postwarden exports is declared in METRIC_DEFINITIONS (name, type, help,
 * labels), created from it, and documented from it (docs/metrics.md, checked by a test). Label values are
 * bounded: check names, symbols and actions come from code, never from clients.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface MetricDefinition {
  readonly name: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly help: string;
  readonly labels: readonly string[];
  readonly buckets?: readonly number[];
  /**
   * A gauge of a dependency this instance may not use: it has no sample until `collectFrom` fills it, since a 0
   * would read as "down" (and fire alerts) on a host that does not use the dependency at all.
   */
  readonly onlyWhenUsed?: boolean;
}

export const METRIC_DEFINITIONS = [
  {
    name: 'postwarden_policy_requests_total',
    type: 'counter',
    help: 'Policy requests answered, by SMTP protocol state',
    labels: ['protocol_state'],
  },
  {
    name: 'postwarden_policy_decisions_total',
    type: 'counter',
    help: 'Policy decisions, by action sent to Postfix (dunno, reject, defer, defer_if_permit, prepend, hold)',
    labels: ['action'],
  },
  {
    name: 'postwarden_policy_verdicts_total',
    type: 'counter',
    help: 'Verdicts of the policy checks, by check, symbol and mode (observe = would have acted)',
    labels: ['check', 'symbol', 'mode'],
  },
  {
    name: 'postwarden_policy_check_failures_total',
    type: 'counter',
    help: 'Checks that failed internally or missed their deadline, by check and code',
    labels: ['check', 'code'],
  },
  {
    name: 'postwarden_policy_request_duration_seconds',
    type: 'histogram',
    help: 'Time from a complete request to its reply',
    labels: [],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
  },
  { name: 'postwarden_policy_connections', type: 'gauge', help: 'Open policy connections', labels: [] },
  {
    name: 'postwarden_errors_total',
    type: 'counter',
    help: 'Coded error and warning events (see docs/events.md), by code',
    labels: ['code'],
  },
  {
    name: 'postwarden_map_healthy',
    type: 'gauge',
    help: '1 when a lookup table serves its current content, 0 when it serves stale content or errors',
    labels: ['map'],
  },
  {
    name: 'postwarden_map_reloads_total',
    type: 'counter',
    help: 'Lookup table (re)loads, by table and result (ok, failed)',
    labels: ['map', 'result'],
  },
  {
    name: 'postwarden_job_runs_total',
    type: 'counter',
    help: 'Periodic job runs, by task (the job name: `job` is Prometheus’s scrape job label) and result (ok, failed)',
    labels: ['task', 'result'],
  },
  {
    name: 'postwarden_job_last_run_timestamp_seconds',
    type: 'gauge',
    help: 'When each periodic job last finished (Unix time)',
    labels: ['task'],
  },
  {
    name: 'postwarden_job_last_duration_seconds',
    type: 'gauge',
    help: 'How long each periodic job took the last time',
    labels: ['task'],
  },
  {
    name: 'postwarden_dns_queries_total',
    type: 'counter',
    help: 'DNS queries, by record type, result (answer, nxdomain, nodata, timeout, servfail, refused, error) and cache (hit, shared, miss)',
    labels: ['type', 'result', 'cache'],
  },
  {
    name: 'postwarden_dns_query_duration_seconds',
    type: 'histogram',
    help: 'Time DNS queries that went to the network took to answer or fail',
    labels: ['type'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  },
  {
    name: 'postwarden_dns_cache_entries',
    type: 'gauge',
    help: 'Answers in the DNS cache (bounded by dns.cache.max_entries)',
    labels: [],
  },
  {
    name: 'postwarden_filter_messages_total',
    type: 'counter',
    help: 'Messages the content filter finished, by outcome (deliver, quarantine, reject before the queue, defer, too_big)',
    labels: ['outcome'],
  },
  {
    name: 'postwarden_filter_replies_total',
    type: 'counter',
    help: 'Answers the content filter gave Postfix after DATA, by SMTP code (250, 451, 552)',
    labels: ['code'],
  },
  {
    name: 'postwarden_filter_verdicts_total',
    type: 'counter',
    help: 'Verdicts of the content scanners, by scanner, symbol and mode',
    labels: ['scanner', 'symbol', 'mode'],
  },
  {
    name: 'postwarden_filter_scanner_failures_total',
    type: 'counter',
    help: 'Content scanners that failed or missed their deadline, by scanner',
    labels: ['scanner'],
  },
  {
    name: 'postwarden_filter_reinject_failures_total',
    type: 'counter',
    help: 'Messages Postfix’s re-injection smtpd did not take (answered 451 to Postfix, which retries)',
    labels: [],
  },
  {
    name: 'postwarden_filter_connections',
    type: 'gauge',
    help: 'Open connections from Postfix to the content filter',
    labels: [],
  },
  {
    name: 'postwarden_filter_messages_in_flight',
    type: 'gauge',
    help: 'Messages the content filter is working on',
    labels: [],
  },
  {
    name: 'postwarden_filter_bytes_total',
    type: 'counter',
    help: 'Bytes of the messages the content filter received',
    labels: [],
  },
  {
    name: 'postwarden_filter_message_duration_seconds',
    type: 'histogram',
    help: 'Time from the end of DATA to the answer (scan and re-injection included)',
    labels: [],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
  },
  {
    name: 'postwarden_filter_scanner_duration_seconds',
    type: 'histogram',
    help: 'Time each content scanner took, by scanner',
    labels: ['scanner'],
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
  },
  {
    name: 'postwarden_learn_requests_total',
    type: 'counter',
    help: 'Learn reports received by the admin API (Dovecot moves into and out of Junk), by class and result (queued, duplicate, full)',
    labels: ['class', 'result'],
  },
  {
    name: 'postwarden_learned_total',
    type: 'counter',
    help: 'Messages the classifier learned from reports and autolearn, by class and outcome (learned, already, moved, failed)',
    labels: ['class', 'outcome'],
  },
  {
    name: 'postwarden_learn_queue_depth',
    type: 'gauge',
    help: 'Learn reports waiting to be learned',
    labels: [],
  },
  {
    name: 'postwarden_dnsbl_list_healthy',
    type: 'gauge',
    help: '1 when a DNS list passes its self-test and its answers count, 0 when it is skipped; by list and family (ipv4, ipv6, or domain for URI lists)',
    labels: ['list', 'family'],
  },
  {
    name: 'postwarden_learn_socket_reports_total',
    type: 'counter',
    help: 'Learn reports received on the learn socket (Dovecot IMAPSieve pipe), by class (spam, ham, none) and result (queued, duplicate, full, too_large, no_class)',
    labels: ['class', 'result'],
  },
  {
    name: 'postwarden_auth_policy_requests_total',
    type: 'counter',
    help: 'Dovecot auth-policy requests, by command (allow, report) and result (allow: accept, tarpit, reject, exempt, trusted, no_address; report: counted, repeat, success, ignored, trusted; either: fail_open, shed, bad_request, too_large, unauthorized, off)',
    labels: ['command', 'result'],
  },
  {
    name: 'postwarden_auth_policy_blocks_total',
    type: 'counter',
    help: 'Blocks the auth policy started for failed logins, by scope (login = one address+login, address, network)',
    labels: ['scope'],
  },
  {
    name: 'postwarden_auth_policy_request_duration_seconds',
    type: 'histogram',
    help: 'Time the auth policy took to answer Dovecot, store included, by command',
    labels: ['command'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2],
  },
  {
    name: 'postwarden_decision_records_total',
    type: 'counter',
    help: 'Decision records (GET /api/v1/decisions) by result: recorded, dropped (too many pending) or failed (the store did not take it)',
    labels: ['result'],
  },
  {
    name: 'postwarden_ldap_lookups_total',
    type: 'counter',
    help: 'Lookups in ldap: maps, by query, result (found, notfound, error) and cache (hit, shared, miss)',
    labels: ['query', 'result', 'cache'],
  },
  {
    name: 'postwarden_ldap_search_duration_seconds',
    type: 'histogram',
    help: 'Time an LDAP search took (cache misses only), by query',
    labels: ['query'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  },
  {
    name: 'postwarden_ldap_up',
    type: 'gauge',
    help: '1 while the LDAP server answers, 0 while it is down (lookups then fail with 4xx)',
    labels: [],
    onlyWhenUsed: true,
  },
  {
    name: 'postwarden_clamd_up',
    type: 'gauge',
    help: '1 while clamd answers (its last scan or PING), 0 while it is down (the antivirus scanner then fails: 451 with on_failure defer); only with the antivirus scanner',
    labels: [],
    onlyWhenUsed: true,
  },
  {
    name: 'postwarden_ratelimit_incidents_total',
    type: 'counter',
    help: 'Rate-limit incidents opened: a SASL user went over a limit and its mail is being held',
    labels: [],
  },
  {
    name: 'postwarden_ratelimit_open_incidents',
    type: 'gauge',
    help: 'Rate-limit incidents open now (read from the state store at scrape time: with several MX hosts on one Redis, each reports the shared count; counted up to 10 000)',
    labels: [],
    onlyWhenUsed: true,
  },
  {
    name: 'postwarden_ratelimit_held_messages',
    type: 'gauge',
    help: 'Messages of rate-limited SASL users recorded as held and not yet released or forgotten (as postwarden_ratelimit_open_incidents: shared, up to 10 000)',
    labels: [],
    onlyWhenUsed: true,
  },
  {
    name: 'postwarden_ratelimit_notices_total',
    type: 'counter',
    help: 'Admin notices of rate-limit incidents, by outcome (sent, retry, failed, dropped)',
    labels: ['outcome'],
  },
] as const satisfies readonly MetricDefinition[];

type Defs = (typeof METRIC_DEFINITIONS)[number];
type Named<N extends Defs['name']> = Extract<Defs, { name: N }>;
type MetricOf<D extends Defs> = D['type'] extends 'counter'
  ? Counter<D['labels'][number]>
  : D['type'] extends 'gauge'
    ? Gauge<D['labels'][number]>
    : Histogram<D['labels'][number]>;

export class Metrics {
  readonly registry = new Registry();
  private readonly byName = new Map<string, Counter | Gauge | Histogram>();

  constructor(options: { processMetrics?: boolean } = {}) {
    for (const def of METRIC_DEFINITIONS as readonly MetricDefinition[]) {
      const common = {
        name: def.name,
        help: def.help,
        labelNames: [...def.labels],
        registers: [this.registry],
      };
      const metric =
        def.type === 'counter'
          ? new Counter(common)
          : def.type === 'gauge'
            ? new Gauge(common)
            : new Histogram({ ...common, buckets: [...(def.buckets ?? [])] });
      if (def.onlyWhenUsed && metric instanceof Gauge) metric.remove();
      this.byName.set(def.name, metric);
    }
    if (options.processMetrics ?? true)
      collectDefaultMetrics({ register: this.registry, prefix: 'postwarden_' });
  }

  get<N extends Defs['name']>(name: N): MetricOf<Named<N>> {
    return this.byName.get(name) as MetricOf<Named<N>>;
  }

  /**
   * Fills a gauge at scrape time from the current state (e.g. map health), instead of tracking every change.
   * `fill` may wait (prom-client awaits it): a gauge read from the state store.
   */
  collectFrom<N extends Extract<Defs, { type: 'gauge' }>['name']>(
    name: N,
    fill: (gauge: Gauge<Named<N>['labels'][number]>) => void | Promise<void>,
  ): void {
    const gauge = this.byName.get(name) as Gauge<Named<N>['labels'][number]>;
    (gauge as unknown as { collect: () => void | Promise<void> }).collect = () => {
      gauge.reset();
      return fill(gauge);
    };
  }
}
