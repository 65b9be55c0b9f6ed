/**
 * The DNS adapter every check uses: Node's resolver (c-ares: retries, TCP on truncation, EDNS) pointed at the
 * configured servers only — never the system's or a public resolver — with a deadline per query, a bounded LRU
 * cache, in-flight de-duplication and a bound on queries in flight.
 *
 * Why not the `dnsbl` package: it answers `listed: true` for any A record and `false` for any error, exactly
 * the misreading that rejects good mail when a list answers error codes (field-notes C5). The checks need the
 * codes and the errors, so they query through this adapter and read the answers themselves (core/dns.ts).
 *
 * TTLs: Node's resolver reports them for A and AAAA only, so those are cached for their own TTL (clamped to
 * `maxTtlS`); other types for `defaultTtlS`; NXDOMAIN and NODATA for `negativeTtlS` (the SOA minimum is not
 * exposed); SERVFAIL and refusals for `errorTtlS`, so a failing list is not hammered. Timeouts are not cached.
 */
import { Resolver } from 'node:dns/promises';
import { withDeadline } from '../util/deadline.js';
import { TtlCache } from '../util/ttl-cache.js';
import type { DnsAnswer, DnsErrorKind, DnsRecordsOf, DnsResolver, DnsType } from '../core/dns.js';

export interface DnsClientOptions {
  /** `host`, `host:port` or `[v6]:port`, as Resolver.setServers takes them. */
  readonly servers: readonly string[];
  /** Whole deadline of one query, retries included. */
  readonly timeoutMs: number;
  readonly tries: number;
  readonly cache: {
    readonly maxEntries: number;
    readonly maxTtlS: number;
    readonly defaultTtlS: number;
    readonly negativeTtlS: number;
    readonly errorTtlS: number;
  };
  /** Queries waiting for the network at most; beyond it a query fails at once (kind `error`). */
  readonly maxInFlight: number;
  readonly onQuery?: (event: DnsQueryEvent) => void;
  /** Called when the resolvers stop answering (FAILURES_UNHEALTHY network failures in a row) and again when they answer. */
  readonly onHealth?: (health: ResolverHealth) => void;
  readonly now?: () => number;
}

export interface ResolverHealth {
  readonly healthy: boolean;
  readonly reason?: string;
}

/** Network failures in a row (timeouts, refusals, no connection) that make the resolvers count as down. */
const FAILURES_UNHEALTHY = 5;

export type DnsResultLabel = 'answer' | 'nxdomain' | 'nodata' | DnsErrorKind;

export interface DnsQueryEvent {
  readonly type: DnsType;
  readonly result: DnsResultLabel;
  /** `hit`: from the cache; `shared`: joined a query already in flight; `miss`: went to the network. */
  readonly cache: 'hit' | 'shared' | 'miss';
  /** Network time (0 for hits and shared queries). */
  readonly ms: number;
}

const ERROR_KINDS: Readonly<Record<string, DnsErrorKind>> = {
  ETIMEOUT: 'timeout',
  ESERVFAIL: 'servfail',
  EREFUSED: 'refused',
};

function labelOf(answer: DnsAnswer<DnsType>): DnsResultLabel {
  return answer.status === 'ok' ? 'answer' : answer.status === 'error' ? answer.kind : answer.status;
}

export class DnsClient implements DnsResolver {
  private readonly resolver: Resolver;
  private readonly cache: TtlCache<DnsAnswer<DnsType>>;
  private readonly inFlight = new Map<string, Promise<DnsAnswer<DnsType>>>();
  private readonly now: () => number;
  private failuresInARow = 0;
  private lastFailure = '';

  constructor(private readonly options: DnsClientOptions) {
    if (options.servers.length === 0) throw new Error('dns: no servers given; name the resolvers to use');
    // c-ares's timeout is per try; split the deadline so the whole query ends near it.
    this.resolver = new Resolver({
      timeout: Math.max(50, Math.floor(options.timeoutMs / options.tries)),
      tries: options.tries,
    });
    this.resolver.setServers([...options.servers]);
    this.now = options.now ?? Date.now;
    this.cache = new TtlCache(options.cache.maxEntries, this.now);
  }

  /** Down after several network failures in a row: every DNS check then fails, and dns_sanity defers mail. */
  health(): ResolverHealth {
    return this.failuresInARow >= FAILURES_UNHEALTHY
      ? {
          healthy: false,
          reason: `${this.failuresInARow} queries in a row got no answer from ${this.options.servers.join(', ')} (last: ${this.lastFailure})`,
        }
      : { healthy: true };
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  query<T extends DnsType>(name: string, type: T, signal?: AbortSignal): Promise<DnsAnswer<T>> {
    const key = `${type} ${name.toLowerCase()}`;
    const cached = this.fromCache(key);
    if (cached) {
      this.options.onQuery?.({ type, result: labelOf(cached), cache: 'hit', ms: 0 });
      return Promise.resolve(cached as DnsAnswer<T>);
    }
    let pending = this.inFlight.get(key);
    if (pending) {
      void pending.then((answer) =>
        this.options.onQuery?.({ type, result: labelOf(answer), cache: 'shared', ms: 0 }),
      );
    } else if (this.inFlight.size >= this.options.maxInFlight) {
      const answer: DnsAnswer<T> = {
        status: 'error',
        kind: 'error',
        reason: `more than ${this.options.maxInFlight} DNS queries in flight`,
      };
      this.options.onQuery?.({ type, result: 'error', cache: 'miss', ms: 0 });
      return Promise.resolve(answer);
    } else {
      pending = this.lookup(key, name, type);
      this.inFlight.set(key, pending);
    }
    const answer = pending as Promise<DnsAnswer<T>>;
    return signal ? abortable(answer, signal) : answer;
  }

  /** Forgets every cached answer (the self-test asks the lists themselves, not the cache). */
  clear(): void {
    this.cache.clear();
  }

  private fromCache(key: string): DnsAnswer<DnsType> | undefined {
    return this.cache.get(key);
  }

  private store(key: string, answer: DnsAnswer<DnsType>, ttlS: number): void {
    this.cache.set(key, answer, ttlS * 1000);
  }

  private async lookup(key: string, name: string, type: DnsType): Promise<DnsAnswer<DnsType>> {
    const started = performance.now();
    const { cache } = this.options;
    let answer: DnsAnswer<DnsType>;
    let ttl = 0;
    try {
      // c-ares backs off between tries, so its own timeout is not a deadline: this is.
      const ms = this.options.timeoutMs;
      const result = await withDeadline(
        this.ask(name, type),
        ms,
        () => new DeadlinePassed(`no answer within ${ms} ms`),
      );
      answer = { status: 'ok', records: result.records };
      ttl = Math.min(result.ttl ?? cache.defaultTtlS, cache.maxTtlS);
    } catch (error) {
      const code = (error as { code?: string }).code ?? '';
      if (code === 'ENOTFOUND') answer = { status: 'nxdomain' };
      else if (code === 'ENODATA') answer = { status: 'nodata' };
      else {
        const kind = ERROR_KINDS[code] ?? 'error';
        answer = { status: 'error', kind, reason: `${type} ${name}: ${code || (error as Error).message}` };
      }
      ttl =
        answer.status === 'error' ? (answer.kind === 'timeout' ? 0 : cache.errorTtlS) : cache.negativeTtlS;
    } finally {
      this.inFlight.delete(key);
    }
    this.store(key, answer, ttl);
    this.track(answer);
    this.options.onQuery?.({
      type,
      result: labelOf(answer),
      cache: 'miss',
      ms: performance.now() - started,
    });
    return answer;
  }

  /** A SERVFAIL is one zone's trouble; timeouts and refusals are the resolvers'. */
  private track(answer: DnsAnswer<DnsType>): void {
    const before = this.health().healthy;
    if (answer.status === 'error' && answer.kind !== 'servfail') {
      this.failuresInARow += 1;
      this.lastFailure = answer.kind;
    } else {
      this.failuresInARow = 0;
    }
    const after = this.health();
    if (after.healthy !== before) this.options.onHealth?.(after);
  }

  private async ask(name: string, type: DnsType): Promise<{ records: DnsRecordsOf[DnsType]; ttl?: number }> {
    switch (type) {
      case 'A':
      case 'AAAA': {
        const rows =
          type === 'A'
            ? await this.resolver.resolve4(name, { ttl: true })
            : await this.resolver.resolve6(name, { ttl: true });
        const ttl = rows.reduce((min, row) => Math.min(min, row.ttl), Number.POSITIVE_INFINITY);
        return { records: rows.map((row) => row.address), ttl: Number.isFinite(ttl) ? ttl : 0 };
      }
      case 'TXT': {
        // c-ares hands TXT bytes over as latin1, one character per byte (nodejs/node#39398): read them as UTF-8.
        const records = await this.resolver.resolveTxt(name);
        return {
          records: records.map((strings) => strings.map((s) => Buffer.from(s, 'latin1').toString('utf8'))),
        };
      }
      case 'MX':
        return { records: await this.resolver.resolveMx(name) };
      case 'PTR':
        return { records: await this.resolver.resolvePtr(name) };
    }
  }
}

class DeadlinePassed extends Error {
  readonly code = 'ETIMEOUT';
}

/** Stops waiting when the check's deadline passes; the shared query itself runs on for the others. */
function abortable<T extends DnsType>(
  pending: Promise<DnsAnswer<T>>,
  signal: AbortSignal,
): Promise<DnsAnswer<T>> {
  if (signal.aborted) return Promise.resolve(aborted());
  return new Promise((resolve) => {
    const onAbort = () => resolve(aborted<T>());
    signal.addEventListener('abort', onAbort, { once: true });
    void pending.then((answer) => {
      signal.removeEventListener('abort', onAbort);
      resolve(answer);
    });
  });
}

function aborted<T extends DnsType>(): DnsAnswer<T> {
  return { status: 'error', kind: 'timeout', reason: 'the check’s deadline passed' };
}
