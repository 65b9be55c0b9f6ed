/** What the subcommands share: loading config with problems printed, and turning map events into logs. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type ConfigSource, loadConfig, mapRefsOf } from '../config/load.js';
import { type ConfigProblem, formatProblem, showValue } from '../config/problems.js';
import type { Config } from '../config/schema.js';
import { LdapDirectory, type LdapDirectoryEvent } from '../adapters/ldap.js';
import {
  filterProblem,
  isSpec,
  LdapMaps,
  type LdapQuery,
  type MapEvent,
  parseSpec,
  resultFormatProblem,
  validateMapRef,
} from '../maps/index.js';
import { StoreUnavailable, type Store } from '../core/store.js';
import { openStore, type StoreEvent, type StoreOptions, StoreOptionsError } from '../store/index.js';
import { EXIT } from '../util/sysexits.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';

export interface Loaded {
  readonly config: Readonly<Config>;
  readonly source: ConfigSource;
  /** Relative map paths resolve against the config file's directory. */
  readonly baseDir: string;
}

/** Loads the config; on problems prints each as `key: value — problem; fix` to stderr and returns undefined. */
export function loadOrReport(configPath: string | undefined): Loaded | undefined {
  const result = loadConfig(configPath);
  const where = result.source.kind === 'file' ? result.source.path : 'the embedded default';
  const problems = [
    ...(result.ok ? ldapProblems(result.config) : result.problems),
    ...mapSpecProblems(result.input),
  ];
  if (!result.ok || problems.length > 0) {
    reportProblems(where, problems);
    return undefined;
  }
  const baseDir =
    result.source.kind === 'file' ? path.dirname(path.resolve(result.source.path)) : process.cwd();
  return { config: result.config, source: result.source, baseDir };
}

export function reportProblems(where: string, problems: readonly ConfigProblem[]): void {
  process.stderr.write(`postwarden: ${problems.length} problem(s) in ${where} (PW-C001):\n`);
  for (const problem of problems) process.stderr.write(`  ${formatProblem(problem)}\n`);
}

/** Map specs and inline entries are checked here (the maps layer knows their syntax; config does not). */
function mapSpecProblems(input: unknown): ConfigProblem[] {
  return mapRefsOf(input).flatMap(({ key, ref }) =>
    validateMapRef(ref).map(({ item, problem }) => {
      const [what, ...fix] = problem.split('; ');
      return {
        key,
        value: showValue(item),
        problem: what ?? problem,
        fix: fix.length > 0 ? fix.join('; ') : 'write an IP, CIDR, address, domain, or a type:name spec',
      };
    }),
  );
}

/** The ldap section's queries (filters, formats, bases) and every `ldap:NAME` map naming a query that exists. */
function ldapProblems(config: Readonly<Config>): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const queries = config.ldap.queries;
  for (const [name, query] of Object.entries(queries)) {
    const key = `ldap.queries.${name}`;
    const add = (field: string, value: string, text: string | undefined) => {
      if (text === undefined) return;
      const [problem, ...fix] = text.split('; ');
      problems.push({
        key: `${key}.${field}`,
        value: showValue(value),
        problem: problem ?? text,
        fix: fix.join('; ') || 'correct it',
      });
    };
    add('filter', query.filter, filterProblem(query.filter));
    add('result_format', query.result_format, resultFormatProblem(query.result_format));
    if (query.base === '' && config.ldap.base === '') {
      add('base', '', 'no search base; set ldap.base or this query’s base, e.g. dc=example,dc=org');
    }
  }
  for (const { key, ref } of mapRefsOf(config)) {
    for (const item of typeof ref === 'string' ? [ref] : ref) {
      if (!isSpec(item) || !/^ldap:/.test(item.trim())) continue;
      let spec;
      try {
        spec = parseSpec(item);
      } catch {
        continue; // mapSpecProblems reports it
      }
      if (spec.type !== 'ldap' || Object.hasOwn(queries, spec.query)) continue;
      const known = Object.keys(queries);
      problems.push({
        key,
        value: showValue(item),
        problem: `no query '${spec.query}' under ldap.queries`,
        fix:
          known.length > 0
            ? `use one of ldap:${known.join(', ldap:')}, or define ldap.queries.${spec.query}`
            : `define ldap.queries.${spec.query} (filter, result_attribute)`,
      });
    }
  }
  return problems;
}

/** The bind password could not be read (PW-L003). */
export class LdapOptionsError extends Error {}

/** The LDAP queries of a config, with the server's base where a query has none. */
function ldapQueries(config: Readonly<Config>): Record<string, LdapQuery> {
  const queries: Record<string, LdapQuery> = {};
  for (const [name, q] of Object.entries(config.ldap.queries)) {
    queries[name] = {
      base: q.base || config.ldap.base,
      filter: q.filter,
      resultAttributes: typeof q.result_attribute === 'string' ? [q.result_attribute] : q.result_attribute,
      resultFormat: q.result_format,
      scope: q.scope,
      domains: q.domains.map((d) => d.toLowerCase()),
      sizeLimit: q.size_limit,
      maxValues: q.max_values,
    };
  }
  return queries;
}

/**
 * The LDAP directory and its `ldap:` tables, when the config defines queries; undefined otherwise. Connects
 * lazily (at the first lookup). Throws LdapOptionsError when the password file cannot be read.
 */
export function openLdap(
  config: Readonly<Config>,
  baseDir: string,
  logger?: Logger,
  metrics?: Metrics,
): { directory: LdapDirectory; maps: LdapMaps } | undefined {
  const s = config.ldap;
  if (Object.keys(s.queries).length === 0) return undefined;
  let password = '';
  try {
    password = readSecret('ldap.password_file', s.password_file, baseDir);
  } catch (error) {
    throw new LdapOptionsError((error as Error).message);
  }
  const errors = metrics?.get('postwarden_errors_total');
  const directory = new LdapDirectory({
    url: s.url,
    bindDn: s.bind_dn,
    password,
    timeoutMs: s.timeout_ms,
    poolSize: s.pool_size,
    maxWaiting: s.max_waiting,
    reconnectMinMs: s.reconnect_min_ms,
    reconnectMaxMs: s.reconnect_max_ms,
    onEvent: (event: LdapDirectoryEvent) => {
      logger?.[event.level]({ code: event.code }, event.message);
      if (event.level !== 'info') errors?.inc({ code: event.code });
    },
  });
  const lookups = metrics?.get('postwarden_ldap_lookups_total');
  const durations = metrics?.get('postwarden_ldap_search_duration_seconds');
  const maps = new LdapMaps({
    searcher: directory,
    queries: ldapQueries(config),
    cache: {
      maxEntries: s.cache.max_entries,
      ttlMs: s.cache.ttl_s * 1000,
      negativeTtlMs: s.cache.negative_ttl_s * 1000,
    },
    recipientDelimiter: config.recipient_delimiter,
    onLookup: (event) => {
      lookups?.inc({ query: event.query, result: event.result, cache: event.cache });
      if (event.cache === 'miss') durations?.observe({ query: event.query }, event.ms / 1000);
    },
  });
  metrics?.collectFrom('postwarden_ldap_up', (gauge) => gauge.set(directory.health().healthy ? 1 : 0));
  return { directory, maps };
}

const LOADS: ReadonlySet<string> = new Set(['PW-M001', 'PW-M002', 'PW-M012']);
const LOAD_FAILURES: ReadonlySet<string> = new Set(['PW-M010', 'PW-M011', 'PW-M020']);

/** Map events → log lines and load counters; the health gauge is read from the registry at scrape time. */
export function mapEventSink(logger: Logger, metrics: Metrics) {
  const reloads = metrics.get('postwarden_map_reloads_total');
  const errors = metrics.get('postwarden_errors_total');
  return (event: MapEvent): void => {
    logger[event.level]({ code: event.code, map: event.map }, event.message);
    if (LOADS.has(event.code)) reloads.inc({ map: event.map, result: 'ok' });
    if (LOAD_FAILURES.has(event.code)) reloads.inc({ map: event.map, result: 'failed' });
    if (event.level !== 'info') errors.inc({ code: event.code });
  };
}

/** Store events → log lines; outages and errors count in postwarden_errors_total. */
export function storeEventSink(logger: Logger, metrics: Metrics) {
  const errors = metrics.get('postwarden_errors_total');
  return (event: StoreEvent): void => {
    logger[event.level]({ code: event.code, store: event.driver }, event.message);
    if (event.level !== 'info') errors.inc({ code: event.code });
  };
}

/** The first line of a secret file; StoreOptionsError (PW-S003) naming the key and the fix when unreadable. */
function readSecret(key: string, file: string, baseDir: string): string {
  if (file === '') return '';
  try {
    return (readFileSync(path.resolve(baseDir, file), 'utf8').split('\n')[0] ?? '').trim();
  } catch (error) {
    throw new StoreOptionsError(
      `${key}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'}); create it, readable by postwarden`,
    );
  }
}

/** The store options of a config; a relative sqlite path resolves against the config file's directory. */
export function storeOptions(config: Readonly<Config>, baseDir: string): StoreOptions {
  const s = config.store;
  if (s.driver === 'sqlite') {
    return {
      driver: 'sqlite',
      path: path.resolve(baseDir, s.path),
      timeoutMs: s.timeout_ms,
      ...(s.max_bytes > 0 ? { maxBytes: s.max_bytes } : {}),
    };
  }
  const password = readSecret('store.password_file', s.password_file, baseDir);
  const sentinelPassword = readSecret('store.sentinel_password_file', s.sentinel_password_file, baseDir);
  const auth = {
    ...(s.username !== '' ? { username: s.username } : {}),
    ...(password !== '' ? { password } : {}),
  };
  const sentinels = s.sentinels.map((hostPort) => {
    const colon = hostPort.lastIndexOf(':');
    return { host: hostPort.slice(0, colon), port: Number(hostPort.slice(colon + 1)) };
  });
  return sentinels.length > 0
    ? {
        driver: 'redis',
        sentinels,
        name: s.name,
        db: s.db,
        keyPrefix: s.key_prefix,
        timeoutMs: s.timeout_ms,
        ...auth,
        ...(sentinelPassword !== '' ? { sentinelPassword } : {}),
      }
    : { driver: 'redis', url: s.url, keyPrefix: s.key_prefix, timeoutMs: s.timeout_ms, ...auth };
}

/**
 * Opens the configured store, runs `fn`, closes it: 69 when the store is unavailable (PW-S001), 78 on options no
 * driver can use; `command` names the command in the messages.
 */
export async function withStore(
  command: string,
  loaded: Loaded,
  fn: (store: Store) => Promise<number>,
): Promise<number> {
  let store: Store;
  try {
    store = await openStore(storeOptions(loaded.config, loaded.baseDir));
  } catch (error) {
    if (!(error instanceof StoreOptionsError)) throw error;
    process.stderr.write(`postwarden ${command}: ${error.message}\n`);
    return EXIT.CONFIG;
  }
  try {
    return await fn(store);
  } catch (error) {
    if (!(error instanceof StoreUnavailable)) throw error;
    process.stderr.write(`postwarden ${command}: ${error.message} (${error.code})\n`);
    return EXIT.UNAVAILABLE;
  } finally {
    await store.close();
  }
}
