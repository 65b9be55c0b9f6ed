/**
 * Who is "us": local networks and local domains, shared by the relay, HELO and ownership checks. Results are
 * memoised per request, so several checks asking the same question cost one lookup.
 */
import { LookupFailed } from './errors.js';
import { searchTables, type LookupQuery, type LookupResult, type LookupTable } from './ports.js';
import type { PolicyRequest } from './request.js';

export interface LocalityTables {
  readonly localNetworks: readonly LookupTable[];
  readonly localDomains: readonly LookupTable[];
}

/** Searches tables; an error becomes a thrown LookupFailed, so the pipeline records a failure, never a pass. */
export async function find(tables: readonly LookupTable[], query: LookupQuery): Promise<LookupResult> {
  const result = await searchTables(tables, query);
  if (result.status === 'error') throw new LookupFailed(tables.map((t) => t.name).join(', '), result.reason);
  return result;
}

export class Locality {
  private readonly trusted = new WeakMap<PolicyRequest, boolean>();

  constructor(private readonly tables: LocalityTables) {}

  /** In `local_networks`, by client address. */
  async isLocalNetwork(request: PolicyRequest): Promise<boolean> {
    if (request.clientAddress === '') return false;
    const result = await find(this.tables.localNetworks, { kind: 'ip', value: request.clientAddress });
    return result.status === 'found';
  }

  /** In `local_networks` or SASL-authenticated: may relay anywhere (DESIGN.md §1). */
  async isTrustedClient(request: PolicyRequest): Promise<boolean> {
    const known = this.trusted.get(request);
    if (known !== undefined) return known;
    const trusted = request.saslUsername !== '' || (await this.isLocalNetwork(request));
    this.trusted.set(request, trusted);
    return trusted;
  }

  /** A domain of ours. A bare local part (no `@`) counts as ours: Postfix appends `$myorigin` to it. */
  async isLocalAddress(address: string): Promise<boolean> {
    const at = address.lastIndexOf('@');
    if (at < 0) return true;
    return this.isLocalDomain(address.slice(at + 1));
  }

  async isLocalDomain(domain: string): Promise<boolean> {
    if (domain === '') return false;
    const result = await find(this.tables.localDomains, { kind: 'domain', value: domain.toLowerCase() });
    return result.status === 'found';
  }

  /** True only when the domain itself (not a parent) is listed: used to catch HELO names that claim to be us. */
  async isExactLocalDomain(domain: string): Promise<boolean> {
    const name = domain.toLowerCase().replace(/\.$/, '');
    const result = await find(this.tables.localDomains, { kind: 'domain', value: name });
    return result.status === 'found' && result.key.toLowerCase() === name;
  }
}
