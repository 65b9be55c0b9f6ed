/**
 * The filter face: the SMTP server (smtp-server) Postfix's `content_filter` transport delivers to. It speaks
 * what FILTER_README asks of a filter — 8BITMIME, SMTPUTF8 and PIPELINING announced (so Postfix never converts
 * the message), DSN parameters accepted, XFORWARD accepted and passed on — and nothing a filter must not
 * offer: no AUTH, no STARTTLS, none of sendmail's WIZ/SHELL. The answer after DATA is the FilterService's, with
 * its own enhanced status code (the server's automatic ones are off so they do not double). Its limits: connections
 * (a 421 over them), idle time, message size, and a deadline on each message's DATA (data-deadline.ts): past it
 * the answer is 451 4.4.2 and the connection is closed, so a client trickling its message frees its slot.
 */
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { watchDataDeadline } from './data-deadline.js';
import type { FilterService, FilterTransaction } from './service.js';

export interface FilterServerOptions {
  /** Our name in the greeting. */
  readonly name: string;
  readonly maxMessageBytes: number;
  readonly maxConnections: number;
  /** A connection silent this long is closed, in DATA too (filter.idle_timeout_s). */
  readonly idleTimeoutMs: number;
  /** One message's DATA, from 354 to the final dot, takes at most this long (filter.data_timeout_s). */
  readonly dataTimeoutMs: number;
}

/**
 * Postfix sends `XFORWARD NAME=[TEMPUNAVAIL]` when the client's reverse lookup failed for now (XFORWARD_README).
 * smtp-server knows only `[UNAVAILABLE]` and refuses the whole line with 501, so the client's ADDR and PORT on
 * that line were lost. It has no option for it, so the line is read as `[UNAVAILABLE]` before smtp-server parses
 * it: for the re-injection smtpd, which runs no client checks, the two mean the same (the name is unknown).
 */
const handleXForward = SMTPConnection.prototype.handler_XFORWARD;
SMTPConnection.prototype.handler_XFORWARD = function (this: SMTPConnection, command, callback) {
  const line = command.toString('latin1');
  handleXForward.call(
    this,
    /=\[TEMPUNAVAIL\]/i.test(line)
      ? Buffer.from(line.replace(/=\[TEMPUNAVAIL\]/gi, '=[UNAVAILABLE]'), 'latin1')
      : command,
    callback,
  );
};

/** The transaction as Postfix gave it: envelope with DSN parameters, and the original client from XFORWARD. */
export function transactionOf(session: SMTPServerSession): FilterTransaction {
  const { mailFrom, rcptTo, dsn } = session.envelope;
  const xforward = new Map<string, string>();
  for (const [name, value] of session.xForward ?? new Map()) {
    if (value === false) continue;
    const key = name.toUpperCase();
    // smtp-server keeps NAME=[UNAVAILABLE] as an empty name; it goes on as Postfix wrote it.
    xforward.set(key, key === 'NAME' && value === '' ? '[UNAVAILABLE]' : String(value));
  }
  return {
    envelope: {
      sender: mailFrom ? mailFrom.address : '',
      recipients: rcptTo.map((r) => ({
        address: r.address,
        ...(r.dsn?.notify && r.dsn.notify.length > 0 ? { notify: r.dsn.notify } : {}),
        ...(r.dsn?.orcpt ? { orcpt: r.dsn.orcpt } : {}),
      })),
      ...(mailFrom && mailFrom.args && String(mailFrom.args['BODY'] ?? '').toUpperCase() === '8BITMIME'
        ? { body8bit: true }
        : {}),
      ...(mailFrom && mailFrom.args && mailFrom.args['SMTPUTF8'] !== undefined ? { smtpUtf8: true } : {}),
      ...(dsn?.ret ? { ret: dsn.ret } : {}),
      ...(dsn?.envid ? { envid: dsn.envid } : {}),
    },
    xforward,
    remote: session.remoteAddress,
  };
}

export class FilterServer {
  private readonly server: SMTPServer;

  constructor(service: FilterService, options: FilterServerOptions, logger: Logger, metrics: Metrics) {
    const connections = metrics.get('postwarden_filter_connections');
    const open = new Set<string>();
    this.server = new SMTPServer({
      name: options.name,
      banner: 'postwarden content filter',
      disabledCommands: ['AUTH', 'STARTTLS', 'WIZ', 'SHELL'],
      authOptional: true,
      hideSTARTTLS: true,
      hideDSN: false,
      hideENHANCEDSTATUSCODES: true,
      useXForward: true,
      disableReverseLookup: true,
      size: options.maxMessageBytes,
      maxClients: options.maxConnections,
      socketTimeout: options.idleTimeoutMs,
      closeTimeout: 30_000,
      logger: false,
      onConnect: (session, callback) => {
        open.add(session.id);
        connections.inc();
        callback();
      },
      // Connections refused at the limit (421) close without having connected.
      onClose: (session) => {
        if (open.delete(session.id)) connections.dec();
      },
      onData: (stream: SMTPServerDataStream, session, callback) => {
        // smtp-server sends the 354 right after this handler returns: the deadline starts with it.
        const deadline = watchDataDeadline(stream, options.dataTimeoutMs);
        void service.handle(stream, transactionOf(session)).then((reply) => {
          deadline.clear();
          if (reply.code === 250) {
            callback(null, reply.text);
            return;
          }
          callback(Object.assign(new Error(reply.text), { responseCode: reply.code }));
          // Past the DATA deadline the stream was destroyed, so smtp-server has written the 451 at once; the
          // client is still in the middle of its message, and nothing it sends may be read as a command: close.
          if (deadline.expired) this.connectionOf(session)?.close();
        });
      },
    });
    this.server.on('error', (error) => logger.error({ err: error }, 'filter listener error'));
  }

  /** The open connection of a session (smtp-server hands the handlers the session only). */
  private connectionOf(session: SMTPServerSession): SMTPConnection | undefined {
    for (const connection of this.server.connections) if (connection.session === session) return connection;
    return undefined;
  }

  /** Listens on `host:port` (or `unix:/path`); resolves with the bound address. */
  listen(address: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.server.once('error', onError);
      const done = () => {
        this.server.off('error', onError);
        const info = this.server.server.address();
        resolve(typeof info === 'string' || info === null ? address : `${info.address}:${info.port}`);
      };
      if (address.startsWith('unix:')) {
        this.server.listen(address.slice(5), done);
        return;
      }
      const colon = address.lastIndexOf(':');
      this.server.listen(
        Number(address.slice(colon + 1)),
        address.slice(0, colon).replace(/^\[|\]$/g, ''),
        done,
      );
    });
  }

  /** Stops accepting; lets messages in progress finish (their answers decide), then closes. */
  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
