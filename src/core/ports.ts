/**
 * Ports: the interfaces through which the pure core reaches the outside world. Adapters (maps, stores, DNS, …)
 * implement them; the core never imports an adapter.
 *
 * Lookups have three outcomes — found, not found, error — returned as values, never thrown (STYLE.md §4).
 */

/** What a lookup is asked: the kind tells a table how to match (an IP against CIDRs, an address against its
 * domain and parents, …). Keys are matched case-insensitively except for `text`, which regexp tables see as is. */
export type LookupQuery =
  | { readonly kind: 'ip'; readonly value: string }
  | { readonly kind: 'address'; readonly value: string }
  | { readonly kind: 'domain'; readonly value: string }
  | { readonly kind: 'hostname'; readonly value: string }
  | { readonly kind: 'text'; readonly value: string };

export type LookupResult =
  | { readonly status: 'found'; readonly key: string; readonly value: string }
  | { readonly status: 'notfound' }
  | { readonly status: 'error'; readonly reason: string };

/** A lookup table in Postfix's `type:name` spirit. */
export interface LookupTable {
  /** The spec it was opened from, e.g. `file:/etc/postwarden/block`. */
  readonly name: string;
  lookup(query: LookupQuery): Promise<LookupResult>;
  /**
   * The same answer at once, for a table that holds its contents in memory (file, cidr, regexp, inline and
   * runtime tables); undefined, or absent, for one that must ask elsewhere (LDAP). Most policy requests are
   * judged on such tables alone, and a promise per lookup was a fifth of a request's time.
   */
  lookupNow?(query: LookupQuery): LookupResult | undefined;
}

export const NOT_FOUND: LookupResult = Object.freeze({ status: 'notfound' });

/**
 * Searches tables in order; the first `found` wins, and the first `error` stops the search (as Postfix does: a
 * table that cannot answer must not be read as "not listed").
 */
export function searchTables(tables: readonly LookupTable[], query: LookupQuery): Promise<LookupResult> {
  const now = searchTablesNow(tables, query);
  return now ? Promise.resolve(now) : searchEach(tables, query);
}

/** searchTables answered at once, when every table it reaches answers at once; otherwise undefined. */
export function searchTablesNow(
  tables: readonly LookupTable[],
  query: LookupQuery,
): LookupResult | undefined {
  for (const table of tables) {
    const result = table.lookupNow?.(query);
    if (result === undefined) return undefined;
    if (result.status !== 'notfound') return result;
  }
  return NOT_FOUND;
}

async function searchEach(tables: readonly LookupTable[], query: LookupQuery): Promise<LookupResult> {
  for (const table of tables) {
    const result = await table.lookup(query);
    if (result.status !== 'notfound') return result;
  }
  return NOT_FOUND;
}

/** One LDAP search, as a directory adapter runs it (the `ldap:` tables build it from a configured query). */
export interface LdapSearch {
  readonly base: string;
  readonly scope: 'base' | 'one' | 'sub';
  /** An RFC 4515 filter whose substituted values are already escaped. */
  readonly filter: string;
  readonly attributes: readonly string[];
  /** Entries at most; more is an error. */
  readonly sizeLimit: number;
}

/** An entry's attributes by name (as the server spells it), each with its values. */
export type LdapEntry = Readonly<Record<string, string | readonly string[]>>;

export type LdapSearchOutcome =
  | { readonly ok: true; readonly entries: readonly LdapEntry[] }
  | { readonly ok: false; readonly reason: string };

/** An LDAP directory: runs one search under its own deadline and never throws; a failure is an outcome. */
export interface LdapSearcher {
  search(request: LdapSearch): Promise<LdapSearchOutcome>;
  /** Down while the server cannot be reached or refuses the bind. */
  health(): { readonly healthy: boolean; readonly reason?: string };
}
