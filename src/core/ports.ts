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
}

export const NOT_FOUND: LookupResult = Object.freeze({ status: 'notfound' });

/**
 * Searches tables in order; the first `found` wins, and the first `error` stops the search (as Postfix does: a
 * table that cannot answer must not be read as "not listed").
 */
export async function searchTables(
  tables: readonly LookupTable[],
  query: LookupQuery,
): Promise<LookupResult> {
  for (const table of tables) {
    const result = await table.lookup(query);
    if (result.status !== 'notfound') return result;
  }
  return NOT_FOUND;
}
