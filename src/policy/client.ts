/**
 * A policy protocol client on one persistent connection, as Postfix's smtpd uses one: `policy-query`, the tests
 * and the benchmark speak to the server through it. Replies are read with the same bounds the server applies.
 */
import net from 'node:net';
import { encodeRequest } from './codec.js';

export class PolicyClientError extends Error {
  constructor(
    readonly kind: 'connect' | 'closed' | 'timeout' | 'protocol',
    message: string,
  ) {
    super(message);
  }
}

const MAX_REPLY_BYTES = 65_536;

/** `127.0.0.1:10060`, `[::1]:10060` or `unix:/path` → net.connect options. */
export function connectOptions(address: string): net.NetConnectOpts {
  if (address.startsWith('unix:')) return { path: address.slice(5) };
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(address.slice(colon + 1)) };
}

export class PolicyClient {
  private buffer = '';
  private waiting: { resolve: (action: string) => void; reject: (error: Error) => void } | undefined;
  private closedError: PolicyClientError | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.setNoDelay(true);
    socket.on('data', (text: string) => this.onData(text));
    socket.on('error', (error) => this.fail(new PolicyClientError('closed', error.message)));
    socket.on('close', () =>
      this.fail(new PolicyClientError('closed', 'server closed the connection without a reply')),
    );
  }

  static connect(address: string, timeoutMs = 5000): Promise<PolicyClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(connectOptions(address));
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new PolicyClientError('timeout', `no connection to ${address} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new PolicyClient(socket));
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(new PolicyClientError('connect', `cannot connect to ${address}: ${error.message}`));
      });
    });
  }

  /** Sends one request and resolves with the action text (without `action=`). One at a time, as Postfix does. */
  query(attributes: Readonly<Record<string, string>>, timeoutMs = 10_000): Promise<string> {
    if (this.closedError) return Promise.reject(this.closedError);
    if (this.waiting)
      return Promise.reject(new PolicyClientError('protocol', 'a query is already in flight'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(new PolicyClientError('timeout', `no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting = {
        resolve: (action) => {
          clearTimeout(timer);
          resolve(action);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.socket.write(encodeRequest(attributes));
    });
  }

  /** Writes raw bytes (tests of malformed input). */
  writeRaw(data: string | Buffer): void {
    this.socket.write(data);
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(text: string): void {
    this.buffer += text;
    if (this.buffer.length > MAX_REPLY_BYTES) {
      this.fail(new PolicyClientError('protocol', 'reply too large'));
      this.socket.destroy();
      return;
    }
    const end = this.buffer.indexOf('\n\n');
    if (end < 0) return;
    const reply = this.buffer.slice(0, end);
    this.buffer = this.buffer.slice(end + 2);
    const waiting = this.waiting;
    this.waiting = undefined;
    if (!waiting) return;
    if (!reply.startsWith('action='))
      waiting.reject(new PolicyClientError('protocol', `unexpected reply: ${reply.slice(0, 80)}`));
    else waiting.resolve(reply.slice('action='.length));
  }

  private fail(error: PolicyClientError): void {
    this.closedError ??= error;
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.reject(error);
  }
}
