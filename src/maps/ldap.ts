/**
 * `ldap:NAME` tables: a query defined in the config (`ldap.queries.NAME`) asked of an LDAP directory, with
 * Postfix ldap_table(5) semantics and a cache. The directory itself (connections, bind, deadlines, reconnects)
 * is an adapter reached through `LdapSearcher`; this module only builds searches and reads their answers.
 *
 * Query filter expansion (ldap_table(5) `query_filter`), every substituted value escaped per RFC 4515 (`*`,
 * `(`, `)`, `\` and NUL become `\2a`, `\28`, `\29`, `\5c`, `\00`):
 *   %s, %S  the key;
 *   %u, %U  the local part of an address key, or the whole key when it has no `@`; an empty local part
 *           (`@example.org`) suppresses the search;
 *   %d, %D  the domain of an address key; a key without `@` suppresses the search;
 *   %1…%9   the domain's labels from the right (`user@mail.example.com`: %1 com, %2 example); missing ones
 *           suppress the search;
 *   %%      a literal `%`.
 * A suppressed search is a `notfound` answer without asking the directory, as in Postfix. With `domains`, only
 * keys `local@domain` of those domains are looked up (ldap_table's `domain`).
 *
 * Keys: an address is looked up as given, then without its extension (`user+tag@` → `user@`, per
 * recipient_delimiter); domains and host names in lower case without a trailing dot; IPs as given; `text`
 * exactly. Non-text keys are lower-cased (Postfix folds LDAP keys too). The null sender is never looked up.
 *
 * Results: the values of the result attributes of every entry, each passed through `result_format` (%s the
 * value, %u its local part, %d its domain — a value lacking the part is skipped; %S, %U, %D the key's parts;
 * %% a `%`), joined with commas as Postfix does. An entry without those values does not count: no value at all
 * is `notfound`. More than `max_values` values is an error (Postfix's expansion_limit), as is a directory
 * failure: lookups answer `error`, never `notfound`, so callers answer 4xx.
 *
 * Cache: found answers are kept `ttl_s`, not-found answers `negative_ttl_s`, errors never; the cache is an LRU
 * of `max_entries` shared by every query. Lookups of the same key at once share one search.
 */
import { Filter, FilterParser } from 'ldapts';
import type { LdapEntry, LdapSearcher, LookupQuery, LookupResult, LookupTable } from '../core/ports.js';
import { NOT_FOUND } from '../core/ports.js';
import { stripExtension } from '../util/address.js';
import { TtlCache } from '../util/ttl-cache.js';

/** A query of the config (`ldap.queries.NAME`), with the server's base filled in when it had none. */
export interface LdapQuery {
  readonly base: string;
  readonly filter: string;
  readonly resultAttributes: readonly string[];
  readonly resultFormat: string;
  readonly scope: 'base' | 'one' | 'sub';
  /** Only keys `local@domain` in these domains are looked up; empty: every key. */
  readonly domains: readonly string[];
  readonly sizeLimit: number;
  readonly maxValues: number;
}

export interface LdapCacheSettings {
  readonly maxEntries: number;
  readonly ttlMs: number;
  readonly negativeTtlMs: number;
}

export type LdapLookupResult = 'found' | 'notfound' | 'error';

/** One lookup, for metrics: `hit` from the cache, `shared` joined a search in flight, `miss` asked the directory. */
export interface LdapLookupEvent {
  readonly query: string;
  readonly result: LdapLookupResult;
  readonly cache: 'hit' | 'shared' | 'miss';
  /** Time spent asking the directory (0 for hits and shared searches). */
  readonly ms: number;
}

export interface LdapMapsOptions {
  readonly searcher: LdapSearcher;
  readonly queries: Readonly<Record<string, LdapQuery>>;
  readonly cache: LdapCacheSettings;
  /** Postfix's recipient_delimiter; '' turns extension stripping off. */
  readonly recipientDelimiter: string;
  readonly onLookup?: (event: LdapLookupEvent) => void;
  readonly now?: () => number;
}

/** A table that also reports whether its backend answers (the registry shows it in /readyz and the gauge). */
export interface RemoteTable extends LookupTable {
  health(): { readonly healthy: boolean; readonly reason?: string };
}

const PLACEHOLDER = /%(.?)/gs;

function splitAddress(key: string): { local: string; domain: string } | undefined {
  const at = key.lastIndexOf('@');
  return at < 0 ? undefined : { local: key.slice(0, at), domain: key.slice(at + 1) };
}

/** The key's part a directive names, or undefined when the key lacks it (the search is then suppressed). */
function keyPart(directive: string, key: string): string | undefined {
  const address = splitAddress(key);
  switch (directive.toLowerCase()) {
    case 's':
      return key;
    case 'u':
      if (!address) return key;
      return address.local === '' ? undefined : address.local;
    case 'd':
      return address && address.domain !== '' ? address.domain : undefined;
    default: {
      const labels = address?.domain.split('.').reverse();
      const label = labels?.[Number(directive) - 1];
      return label === undefined || label === '' ? undefined : label;
    }
  }
}

/** Why a filter template is unusable (`problem; fix`), or undefined. Checks the directives and the syntax. */
export function filterProblem(template: string): string | undefined {
  let keyed = false;
  for (const match of template.matchAll(PLACEHOLDER)) {
    const directive = match[1] ?? '';
    if (directive === '%') continue;
    if (!/^[sSuUdD1-9]$/.test(directive)) {
      return `unknown directive %${directive}; use %s (the key), %u (local part), %d (domain), %1-%9 or %%`;
    }
    keyed = true;
  }
  if (!keyed) return 'the filter never uses the key; put %s, %u or %d in it, e.g. (mail=%s)';
  const sample = expandFilter(template, 'user@mail.example.test');
  try {
    FilterParser.parseString(sample ?? template);
  } catch (error) {
    return `not an LDAP filter (${(error as Error).message}); write it as RFC 4515 says, e.g. (&(objectClass=inetOrgPerson)(mail=%s))`;
  }
  return undefined;
}

/** Why a result_format is unusable, or undefined. */
export function resultFormatProblem(format: string): string | undefined {
  for (const match of format.matchAll(PLACEHOLDER)) {
    const directive = match[1] ?? '';
    if (!/^[%sSuUdD]$/.test(directive)) {
      return `unknown directive %${directive}; use %s (the value), %u, %d, %S, %U, %D or %%`;
    }
  }
  return undefined;
}

/**
 * The filter for a key, every substituted value escaped (RFC 4515), or undefined when the key lacks a part the
 * template needs (the search is suppressed). The template must have passed `filterProblem`.
 */
export function expandFilter(template: string, key: string): string | undefined {
  let suppressed = false;
  const filter = template.replace(PLACEHOLDER, (_all, directive: string) => {
    if (directive === '%') return '%';
    const part = keyPart(directive, key);
    if (part === undefined) suppressed = true;
    return Filter.escape(part ?? '');
  });
  return suppressed ? undefined : filter;
}

/** One result value through `result_format`; undefined when the value lacks a part the format needs (skipped). */
export function formatValue(format: string, value: string, key: string): string | undefined {
  let skipped = false;
  const out = format.replace(PLACEHOLDER, (_all, directive: string) => {
    if (directive === '%') return '%';
    // Lower case: the value's parts; upper case: the key's.
    const part = directive === directive.toLowerCase() ? keyPart(directive, value) : keyPart(directive, key);
    if (part === undefined) skipped = true;
    return part ?? '';
  });
  return skipped ? undefined : out;
}

/** The keys a query is looked up under, in order (see the header). */
export function lookupKeys(query: LookupQuery, recipientDelimiter: string): string[] {
  switch (query.kind) {
    case 'text':
      return query.value === '' ? [] : [query.value];
    case 'ip':
      return query.value === '' ? [] : [query.value.toLowerCase()];
    case 'domain':
    case 'hostname': {
      const name = query.value.toLowerCase().replace(/\.$/, '');
      return name === '' ? [] : [name];
    }
    case 'address': {
      const address = query.value.toLowerCase();
      if (address === '' || address === '<>') return [];
      const parts = splitAddress(address);
      if (!parts) return [address];
      const bare = `${stripExtension(parts.local, recipientDelimiter)}@${parts.domain}`;
      return bare === address ? [address] : [address, bare];
    }
  }
}

function valuesOf(entry: LdapEntry, attribute: string): readonly string[] {
  const wanted = attribute.toLowerCase();
  for (const [name, values] of Object.entries(entry)) {
    if (name.toLowerCase() !== wanted) continue;
    return typeof values === 'string' ? [values] : values;
  }
  return [];
}

type KeyAnswer = { readonly status: 'found'; readonly value: string } | { readonly status: 'notfound' };
type SearchAnswer = KeyAnswer | { readonly status: 'error'; readonly reason: string };

/** The answer of a search's entries, per the query's result settings. */
export function resultOf(query: LdapQuery, entries: readonly LdapEntry[], key: string): SearchAnswer {
  const values: string[] = [];
  for (const entry of entries) {
    for (const attribute of query.resultAttributes) {
      for (const raw of valuesOf(entry, attribute)) {
        if (raw === '') continue;
        const value = formatValue(query.resultFormat, raw, key);
        if (value === undefined || value === '') continue;
        if (values.length === query.maxValues) {
          return {
            status: 'error',
            reason: `more than ${query.maxValues} result values (max_values); narrow the filter or raise the limit`,
          };
        }
        values.push(value);
      }
    }
  }
  return values.length === 0 ? { status: 'notfound' } : { status: 'found', value: values.join(',') };
}

/** Whether a key may be looked up under the query's `domains` restriction. */
function eligible(query: LdapQuery, key: string): boolean {
  if (query.domains.length === 0) return true;
  const address = splitAddress(key);
  return (
    address !== undefined && address.local !== '' && query.domains.includes(address.domain.toLowerCase())
  );
}

class LdapTable implements RemoteTable {
  readonly name: string;

  constructor(
    private readonly queryName: string,
    private readonly query: LdapQuery,
    private readonly maps: LdapMaps,
  ) {
    this.name = `ldap:${queryName}`;
  }

  async lookup(query: LookupQuery): Promise<LookupResult> {
    for (const key of lookupKeys(query, this.maps.recipientDelimiter)) {
      const answer = await this.maps.ask(this.queryName, this.query, key);
      if (answer.status === 'found') return { status: 'found', key, value: answer.value };
      if (answer.status === 'error') return answer;
    }
    return NOT_FOUND;
  }

  health(): { readonly healthy: boolean; readonly reason?: string } {
    return this.maps.health();
  }
}

/** The `ldap:` tables of one directory: one per configured query, sharing the directory and the cache. */
export class LdapMaps {
  readonly recipientDelimiter: string;
  private readonly cache: TtlCache<KeyAnswer>;
  private readonly inFlight = new Map<string, Promise<SearchAnswer>>();
  private readonly tables = new Map<string, LdapTable>();

  constructor(private readonly options: LdapMapsOptions) {
    this.recipientDelimiter = options.recipientDelimiter;
    this.cache = new TtlCache(options.cache.maxEntries, options.now);
  }

  /** The table of a configured query; a reason when there is no such query. */
  open(name: string): { ok: true; table: RemoteTable } | { ok: false; reason: string } {
    const query = Object.hasOwn(this.options.queries, name) ? this.options.queries[name] : undefined;
    if (!query) {
      const known = Object.keys(this.options.queries);
      return {
        ok: false,
        reason: `no query '${name}' under ldap.queries; ${known.length > 0 ? `use one of ${known.join(', ')}` : 'define one'}`,
      };
    }
    let table = this.tables.get(name);
    if (!table) {
      table = new LdapTable(name, query, this);
      this.tables.set(name, table);
    }
    return { ok: true, table };
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  health(): { readonly healthy: boolean; readonly reason?: string } {
    return this.options.searcher.health();
  }

  /** One key of one query: from the cache, joined to a search in flight, or searched. */
  async ask(queryName: string, query: LdapQuery, key: string): Promise<SearchAnswer> {
    if (!eligible(query, key)) return NOT_FOUND;
    const filter = expandFilter(query.filter, key);
    if (filter === undefined) return NOT_FOUND;
    const cacheKey = `${queryName}\0${key}`;
    const cached = this.cache.get(cacheKey);
    if (cached) {
      this.options.onLookup?.({ query: queryName, result: cached.status, cache: 'hit', ms: 0 });
      return cached;
    }
    const pending = this.inFlight.get(cacheKey);
    if (pending) {
      const answer = await pending;
      this.options.onLookup?.({ query: queryName, result: answer.status, cache: 'shared', ms: 0 });
      return answer;
    }
    const search = this.search(queryName, query, key, filter, cacheKey);
    this.inFlight.set(cacheKey, search);
    try {
      return await search;
    } finally {
      this.inFlight.delete(cacheKey);
    }
  }

  private async search(
    queryName: string,
    query: LdapQuery,
    key: string,
    filter: string,
    cacheKey: string,
  ): Promise<SearchAnswer> {
    const started = performance.now();
    const outcome = await this.options.searcher.search({
      base: query.base,
      scope: query.scope,
      filter,
      attributes: query.resultAttributes,
      sizeLimit: query.sizeLimit,
    });
    const answer: SearchAnswer = outcome.ok
      ? resultOf(query, outcome.entries, key)
      : { status: 'error', reason: `ldap:${queryName}: ${outcome.reason}` };
    if (answer.status === 'found') this.cache.set(cacheKey, answer, this.options.cache.ttlMs);
    if (answer.status === 'notfound') this.cache.set(cacheKey, answer, this.options.cache.negativeTtlMs);
    this.options.onLookup?.({
      query: queryName,
      result: answer.status,
      cache: 'miss',
      ms: performance.now() - started,
    });
    return answer;
  }
}
