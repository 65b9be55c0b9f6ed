/**
 * Who is "us": local networks and local domains, shared by the relay, HELO and ownership checks. Results are
 * memoised per request, so several checks asking the same question cost one lookup.
 *
 * The answers are values when every table answers at once (tables in memory: the usual case) and promises
 * otherwise (LDAP); callers take either with `yield* wait(…)` (./answer.ts). A promise per question was a
 * noticeable share of a policy request.
 */
import { type Answer, mapAnswer } from './answer.js';
import { LookupFailed } from './errors.js';
import {
  searchTables,
  searchTablesNow,
  type LookupQuery,
  type LookupResult,
  type LookupTable,
} from './ports.js';
import type { PolicyRequest } from './request.js';

export interface LocalityTables {
  readonly localNetworks: readonly LookupTable[];
  readonly localDomains: readonly LookupTable[];
}

function failedOrFound(tables: readonly LookupTable[], result: LookupResult): LookupResult {
  if (result.status === 'error') throw new LookupFailed(tables.map((t) => t.name).join(', '), result.reason);
  return result;
}

/** Searches tables; an error becomes a thrown LookupFailed, so the pipeline records a failure, never a pass. */
export function find(tables: readonly LookupTable[], query: LookupQuery): Answer<LookupResult> {
  const now = searchTablesNow(tables, query);
  if (now) return failedOrFound(tables, now);
  return searchTables(tables, query).then((result) => failedOrFound(tables, result));
}

const isFound = (result: LookupResult): boolean => result.status === 'found';

export class Locality {
  private readonly trusted = new WeakMap<PolicyRequest, boolean>();

  constructor(private readonly tables: LocalityTables) {}

  /** In `local_networks`, by client address. */
  isLocalNetwork(request: PolicyRequest): Answer<boolean> {
    if (request.clientAddress === '') return false;
    return mapAnswer(find(this.tables.localNetworks, { kind: 'ip', value: request.clientAddress }), isFound);
  }

  /** In `local_networks` or SASL-authenticated: may relay anywhere (DESIGN.md §1). */
  isTrustedClient(request: PolicyRequest): Answer<boolean> {
    const known = this.trusted.get(request);
    if (known !== undefined) return known;
    const remember = (trusted: boolean) => {
      this.trusted.set(request, trusted);
      return trusted;
    };
    return request.saslUsername !== '' ? remember(true) : mapAnswer(this.isLocalNetwork(request), remember);
  }

  /** A domain of ours. A bare local part (no `@`) counts as ours: Postfix appends `$myorigin` to it. */
  isLocalAddress(address: string): Answer<boolean> {
    const at = address.lastIndexOf('@');
    if (at < 0) return true;
    return this.isLocalDomain(address.slice(at + 1));
  }

  isLocalDomain(domain: string): Answer<boolean> {
    if (domain === '') return false;
    return mapAnswer(
      find(this.tables.localDomains, { kind: 'domain', value: domain.toLowerCase() }),
      isFound,
    );
  }

  /** True only when the domain itself (not a parent) is listed: used to catch HELO names that claim to be us. */
  isExactLocalDomain(domain: string): Answer<boolean> {
    const name = domain.toLowerCase().replace(/\.$/, '');
    return mapAnswer(
      find(this.tables.localDomains, { kind: 'domain', value: name }),
      (result) => result.status === 'found' && result.key.toLowerCase() === name,
    );
  }
}
