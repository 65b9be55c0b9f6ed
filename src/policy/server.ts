/**
 * The policy protocol server: many persistent connections (Postfix opens one per smtpd process), strictly
 * sequential requests on each, every limit explicit. Protocol trouble is logged with a stable code and the
 * connection closed without a reply (Postfix then retries, SMTPD_POLICY_README); nothing a client sends can
 * crash the server or disturb other connections.
 */
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import type { Code } from '../observe/codes.js';
import type { Logger } from '../observe/logger.js';
import { createThrottledLog } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { type Attributes, PolicyDecoder } from './codec.js';

export interface ServerLimits {
  readonly maxConnections: number;
  readonly maxLineBytes: number;
  readonly maxRequestBytes: number;
  readonly maxAttributes: number;
  readonly idleTimeoutMs: number;
  /** A request begun must be whole within this long: the idle timeout alone lets a byte a minute hold a slot. */
  readonly requestTimeoutMs: number;
  readonly maxPendingRequests: number;
}

/** Mutable per-connection state a handler may keep (e.g. the per-message recipient count). */
export interface Connection {
  readonly id: number;
  readonly state: Record<string, unknown>;
}

/**
 * Answers one request with the action text (without `action=`); must not throw. Synchronous when it can be:
 * the server then answers without waiting a microtask turn.
 */
export type RequestHandler = (attributes: Attributes, connection: Connection) => string | Promise<string>;

export interface Listener {
  readonly address: string;
  readonly port?: number;
}

export class PolicyServer {
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();
  private nextId = 1;
  /**
   * Replies made in this turn of the event loop, written together once the loop has handled every request that
   * arrived with them (setImmediate). Written back to back, they reach a client that holds several connections
   * (or several smtpd processes woken together) in one burst instead of one wake-up each.
   */
  private outbox: { socket: net.Socket; reply: string | undefined }[] = [];
  private flushing = false;
  private readonly flushOutbox = (): void => {
    const batch = this.outbox;
    this.outbox = [];
    this.flushing = false;
    for (const { socket, reply } of batch) {
      if (socket.destroyed || socket.writableEnded) continue;
      if (reply === undefined) socket.end();
      else socket.write(reply);
    }
  };
  private readonly warn: ReturnType<typeof createThrottledLog>;

  constructor(
    private readonly handler: RequestHandler,
    private readonly limits: ServerLimits,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {
    this.warn = createThrottledLog(logger);
  }

  get connectionCount(): number {
    return this.sockets.size;
  }

  /** Opens every listen address; resolves with what was bound (ephemeral ports resolved). */
  async listen(addresses: readonly string[]): Promise<Listener[]> {
    const bound: Listener[] = [];
    for (const address of addresses) bound.push(await this.listenOne(address));
    return bound;
  }

  private listenOne(address: string): Promise<Listener> {
    // allowHalfOpen: a client that sends its requests and then closes its side (`printf … | nc`) is still
    // answered; the connection ends once the replies are written.
    const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.accept(socket));
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      const done = (listener: Listener) => {
        server.off('error', reject);
        server.on('error', (error) => this.logger.error({ err: error, address }, 'policy listener error'));
        resolve(listener);
      };
      if (address.startsWith('unix:')) {
        const path = address.slice(5);
        removeStaleSocket(path);
        server.listen(path, () => {
          // Postfix's smtpd runs as user postfix; the directory (e.g. private/) guards access.
          chmodSync(path, 0o666);
          done({ address });
        });
        return;
      }
      const colon = address.lastIndexOf(':');
      const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
      const port = Number(address.slice(colon + 1));
      server.listen({ host, port }, () => {
        const info = server.address() as net.AddressInfo;
        done({
          address: `${host.includes(':') ? `[${info.address}]` : info.address}:${info.port}`,
          port: info.port,
        });
      });
    });
  }

  private accept(socket: net.Socket): void {
    // One limit across every listen address (TCP and unix socket together).
    if (this.sockets.size >= this.limits.maxConnections) {
      this.metrics.get('postwarden_errors_total').inc({ code: 'PW-P007' });
      this.warn(
        'PW-P007',
        { remote: socket.remoteAddress, limit: this.limits.maxConnections },
        'policy connection refused: too many connections',
      );
      socket.destroy();
      return;
    }
    const connection: Connection = { id: this.nextId++, state: {} };
    const decoder = new PolicyDecoder(this.limits);
    const queue: Attributes[] = [];
    let busy = false;
    /** The client closed its side: answer what it sent, then end ours. */
    let clientDone = false;
    const endIfDone = () => {
      if (clientDone && !busy && queue.length === 0 && !socket.destroyed) this.send(socket, undefined);
    };
    const gauge = this.metrics.get('postwarden_policy_connections');
    this.sockets.add(socket);
    gauge.inc();
    socket.setTimeout(this.limits.idleTimeoutMs);
    let requestTimer: NodeJS.Timeout | undefined;
    /** Runs while part of a request has arrived; restarted for the next request once one is whole. */
    const watchRequest = (completed: boolean) => {
      if (completed || !decoder.midRequest) {
        clearTimeout(requestTimer);
        requestTimer = undefined;
      }
      if (!decoder.midRequest || requestTimer) return;
      requestTimer = setTimeout(() => {
        this.logger.debug(
          { code: 'PW-P010', connection: connection.id },
          'policy request not finished within policy.server.request_timeout_s',
        );
        socket.destroy();
      }, this.limits.requestTimeoutMs);
    };

    const drop = (code: Code, detail: string) => {
      this.metrics.get('postwarden_errors_total').inc({ code });
      this.warn(
        code,
        { remote: socket.remoteAddress, connection: connection.id, detail },
        'policy connection closed: bad request',
      );
      socket.destroy();
    };

    const handlerFailed = (error: unknown) => {
      busy = false;
      this.logger.error({ code: 'PW-P009', err: error, connection: connection.id }, 'policy handler failed');
      socket.destroy();
    };
    /** Answers the queued requests in order; waits only for a handler that returns a promise. */
    const pump = (): void => {
      if (busy) return;
      busy = true;
      for (let attributes = queue.shift(); attributes; attributes = queue.shift()) {
        let answer: string | Promise<string>;
        try {
          answer = this.handler(attributes, connection);
        } catch (error) {
          return handlerFailed(error);
        }
        if (typeof answer !== 'string') {
          answer.then((action) => {
            busy = false;
            if (socket.destroyed) return;
            this.send(socket, `action=${action}\n\n`);
            pump();
          }, handlerFailed);
          return;
        }
        if (socket.destroyed) break;
        this.send(socket, `action=${answer}\n\n`);
      }
      busy = false;
      endIfDone();
    };

    socket.on('data', (chunk: Buffer) => {
      const events = decoder.push(chunk);
      for (const event of events) {
        if (event.kind === 'error') return drop(event.code, event.detail);
        queue.push(event.attributes);
        if (queue.length > this.limits.maxPendingRequests) {
          return drop('PW-P008', `more than ${this.limits.maxPendingRequests} requests ahead of the replies`);
        }
      }
      watchRequest(events.length > 0);
      pump();
    });
    socket.on('end', () => {
      clientDone = true;
      endIfDone();
    });
    socket.on('timeout', () => {
      this.logger.debug({ code: 'PW-P006', connection: connection.id }, 'idle policy connection closed');
      socket.destroy();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      clearTimeout(requestTimer);
      if (decoder.midRequest) {
        this.metrics.get('postwarden_errors_total').inc({ code: 'PW-P010' });
        this.warn(
          'PW-P010',
          { connection: connection.id },
          'policy connection closed with a request half sent',
        );
      }
      this.sockets.delete(socket);
      gauge.dec();
    });
  }

  /** Queues a reply (or, undefined, the end of the connection) for this turn's flush. */
  private send(socket: net.Socket, reply: string | undefined): void {
    this.outbox.push({ socket, reply });
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(this.flushOutbox);
    }
  }

  /** Stops accepting; lets in-flight replies go out, then closes what is left. */
  async close(graceMs = 1000): Promise<void> {
    this.flushOutbox();
    const closing = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const socket of this.sockets) socket.end();
    const timer = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, graceMs);
    timer.unref();
    await Promise.all(closing);
    clearTimeout(timer);
  }
}

/** A socket file left by a crashed run blocks listen(); a regular file at that path is not ours to remove. */
function removeStaleSocket(path: string): void {
  if (existsSync(path) && lstatSync(path).isSocket()) unlinkSync(path);
}
