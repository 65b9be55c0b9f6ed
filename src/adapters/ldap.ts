/**
 * The LDAP directory adapter behind `ldap:` tables: a bounded pool of ldapts connections to one server, bound
 * with the configured DN and password (read from a file by the caller; never logged, never in a reason), each
 * search under one deadline that covers waiting for a connection, connecting, binding and the search itself.
 *
 * Pool: at most `poolSize` connections, made when needed; a search holds one for its duration (LDAP could
 * multiplex, but one operation per connection keeps a hung connection from taking others' searches with it).
 * At most `maxWaiting` searches wait for a connection; beyond that a search fails at once.
 *
 * Failure behaviour: nothing throws; a search answers `{ ok: false, reason }`, which the tables turn into a
 * lookup `error` (callers answer 4xx, never "unknown user"). A connection that fails — refused, closed, bind
 * refused, or silent past the deadline (a hung server) — is dropped, and the directory counts as down: until
 * the next attempt (backoff from `reconnectMinMs`, doubling to `reconnectMaxMs`) searches fail at once instead
 * of piling up on a dead server; idle connections reconnect (and bind again) when next used. The first search
 * that succeeds again marks it up. Going down and coming back are reported once each through `onEvent` (PW-L001, PW-L002). An LDAP
 * result code on a search (size limit exceeded, unwilling to perform, …) fails that search only; `noSuchObject`
 * (the base does not exist) is an empty answer, as in Postfix.
 */
import { Client, ResultCodeError, SizeLimitExceededError } from 'ldapts';
import type { LdapEntry, LdapSearch, LdapSearcher, LdapSearchOutcome } from '../core/ports.js';
import { withDeadline } from '../util/deadline.js';

export interface LdapDirectoryOptions {
  /** `ldap://host:port` or `ldaps://host:port`. */
  readonly url: string;
  /** '' binds nobody (anonymous searches). */
  readonly bindDn: string;
  readonly password: string;
  /** Deadline of one search, waiting for a connection, connecting and binding included. */
  readonly timeoutMs: number;
  readonly poolSize: number;
  readonly maxWaiting: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  readonly onEvent?: (event: LdapDirectoryEvent) => void;
  readonly now?: () => number;
}

export interface LdapDirectoryEvent {
  readonly code: 'PW-L001' | 'PW-L002';
  readonly level: 'error' | 'info';
  readonly message: string;
}

const NO_SUCH_OBJECT = 32;

class DeadlinePassed extends Error {}

/** Failed before or while binding, or on the wire: the connection is unusable and the server counts as down. */
class ConnectionFailed extends Error {}

interface Waiter {
  readonly resolve: (client: Client) => void;
  readonly reject: (error: Error) => void;
}

/** One search's hold on the pool: the connection it got, or its place in line. */
interface Ticket {
  client: Client | undefined;
  waiter: Waiter | undefined;
  /** The deadline passed before it got a connection. */
  late: boolean;
}

function textOf(value: Buffer | string): string {
  return typeof value === 'string' ? value : value.toString('utf8');
}

function toEntry(raw: Record<string, Buffer | Buffer[] | string[] | string>): LdapEntry {
  const entry: Record<string, string | readonly string[]> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (name === 'dn') continue;
    entry[name] = Array.isArray(value) ? value.map(textOf) : textOf(value);
  }
  return entry;
}

/** The reason an ldapts error gives, without a stack and on one line. */
function reasonOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\s+/g, ' ').trim().slice(0, 300);
}

export class LdapDirectory implements LdapSearcher {
  private readonly idle: Client[] = [];
  private readonly waiters: Waiter[] = [];
  private open = 0;
  private down: { reason: string; retryAt: number; backoffMs: number } | undefined;
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly options: LdapDirectoryOptions) {
    this.now = options.now ?? Date.now;
  }

  health(): { readonly healthy: boolean; readonly reason?: string } {
    return this.down
      ? { healthy: false, reason: `LDAP ${this.options.url}: ${this.down.reason}` }
      : { healthy: true };
  }

  async search(request: LdapSearch): Promise<LdapSearchOutcome> {
    if (this.closed) return { ok: false, reason: 'the LDAP directory is closed' };
    const down = this.down;
    if (down && this.now() < down.retryAt) {
      // Idle connections of a server that went down are dead too: no search until the next attempt is due.
      return {
        ok: false,
        reason: `server down (${down.reason}); next attempt in ${down.retryAt - this.now()} ms`,
      };
    }
    const ms = this.options.timeoutMs;
    const ticket: Ticket = { client: undefined, waiter: undefined, late: false };
    const work = (async () => {
      const client = await this.acquire(ticket);
      if (ticket.late) {
        // The deadline passed while it waited: give the connection to the next search.
        this.release(client);
        throw new DeadlinePassed('late');
      }
      ticket.client = client;
      return this.run(client, request);
    })();
    try {
      const entries = await withDeadline(work, ms, () => new DeadlinePassed(`no answer within ${ms} ms`));
      this.release(ticket.client);
      this.markUp();
      return { ok: true, entries };
    } catch (error) {
      const client = ticket.client;
      if (error instanceof ResultCodeError) {
        // The server answered: the connection is fine, this search is not.
        this.release(client);
        this.markUp();
        return { ok: false, reason: `search refused: ${reasonOf(error)}` };
      }
      if (error instanceof DeadlinePassed && !client) {
        ticket.late = true;
        this.forget(ticket.waiter);
        work.catch(() => undefined);
        return {
          ok: false,
          reason: `no free LDAP connection within ${ms} ms (all ${this.options.poolSize} busy)`,
        };
      }
      if (client) {
        // A connection that failed or missed the deadline (it may answer later, or never) is dropped.
        work.catch(() => undefined);
        this.discard(client);
        this.markDown(reasonOf(error));
      } else if (error instanceof ConnectionFailed) {
        this.markDown(reasonOf(error));
      }
      return { ok: false, reason: reasonOf(error) };
    }
  }

  /** Unbinds every connection; waiting and later searches fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) waiter.reject(new Error('the LDAP directory is closed'));
    const clients = this.idle.splice(0);
    await Promise.allSettled(clients.map((c) => c.unbind()));
  }

  private async run(client: Client, request: LdapSearch): Promise<LdapEntry[]> {
    if (!client.isConnected || (this.options.bindDn !== '' && !client.isBound)) {
      try {
        if (this.options.bindDn !== '') await client.bind(this.options.bindDn, this.options.password);
      } catch (error) {
        const why =
          error instanceof ResultCodeError ? `bind as ${this.options.bindDn} refused` : 'cannot connect';
        throw new ConnectionFailed(`${why}: ${reasonOf(error)}`);
      }
    }
    let result;
    try {
      result = await client.search(request.base, {
        scope: request.scope,
        filter: request.filter,
        attributes: [...request.attributes],
        // One more than allowed, to tell "exactly at the limit" from "over it".
        sizeLimit: request.sizeLimit + 1,
        timeLimit: Math.max(1, Math.ceil(this.options.timeoutMs / 1000)),
      });
    } catch (error) {
      if (error instanceof ResultCodeError) {
        if (error.code === NO_SUCH_OBJECT) return [];
        throw error;
      }
      throw new ConnectionFailed(reasonOf(error));
    }
    if (result.searchEntries.length > request.sizeLimit) {
      throw new SizeLimitExceededError(`more than ${request.sizeLimit} entries match (size_limit).`);
    }
    return result.searchEntries.map(toEntry);
  }

  /** An idle connection, a new one (when the pool has room and the server is not down), or a wait in line. */
  private acquire(ticket: Ticket): Promise<Client> {
    const ready = this.idle.pop();
    if (ready) return Promise.resolve(ready);
    if (this.open < this.options.poolSize) {
      this.open++;
      return Promise.resolve(this.connect());
    }
    if (this.waiters.length >= this.options.maxWaiting) {
      return Promise.reject(
        new Error(`more than ${this.options.maxWaiting} LDAP searches waiting for a connection`),
      );
    }
    return new Promise((resolve, reject) => {
      ticket.waiter = { resolve, reject };
      this.waiters.push(ticket.waiter);
    });
  }

  private forget(waiter: Waiter | undefined): void {
    const at = waiter ? this.waiters.indexOf(waiter) : -1;
    if (at >= 0) this.waiters.splice(at, 1);
  }

  private connect(): Client {
    const ms = this.options.timeoutMs;
    // ldapts's own timers back ours up: a timed-out operation destroys its socket.
    return new Client({ url: this.options.url, timeout: ms, connectTimeout: ms, strictDN: false });
  }

  private release(client: Client | undefined): void {
    if (!client) return;
    if (this.closed) {
      void client.unbind().catch(() => undefined);
      this.open--;
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(client);
    else this.idle.push(client);
  }

  /** Drops a connection; a search waiting for one gets a fresh connection in its place. */
  private discard(client: Client): void {
    void client.unbind().catch(() => undefined);
    this.open--;
    const waiter = this.waiters.shift();
    if (!waiter) return;
    this.open++;
    waiter.resolve(this.connect());
  }

  private markDown(reason: string): void {
    const backoffMs = this.down
      ? Math.min(this.down.backoffMs * 2, this.options.reconnectMaxMs)
      : this.options.reconnectMinMs;
    if (!this.down) {
      this.options.onEvent?.({
        code: 'PW-L001',
        level: 'error',
        message: `LDAP server ${this.options.url} unavailable: ${reason}; lookups in ldap: maps fail (4xx) until it answers`,
      });
    }
    this.down = { reason, retryAt: this.now() + backoffMs, backoffMs };
  }

  private markUp(): void {
    if (!this.down) return;
    this.down = undefined;
    this.options.onEvent?.({
      code: 'PW-L002',
      level: 'info',
      message: `LDAP server ${this.options.url} answers again`,
    });
  }
}
