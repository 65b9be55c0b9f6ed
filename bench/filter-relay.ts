/**
 * The ceiling of the content-filter benchmark: a pass-through SMTP relay written the simplest correct way in
 * Node. smtp-server takes the message on a loopback port, the relay buffers it whole, sends it on unchanged
 * (envelope and bytes) with nodemailer's SMTP transport — a new connection per message, as postwarden's
 * re-injection does — and answers `250` only once the next hop accepted it; anything else answers `451`, so
 * nothing is acknowledged that was not handed on. It does what a content filter must do to pass a message
 * through, and nothing a filter adds: no spool file, no parsing, no scanning, no header fields, no XFORWARD.
 *
 * Usage: `node dist/bench/filter-relay.js LISTEN_PORT SINK_PORT` — listens on 127.0.0.1:LISTEN_PORT, relays to
 * 127.0.0.1:SINK_PORT, prints `ready` on stdout once listening, exits on SIGTERM/SIGINT. Messages over 64 MiB
 * get `552`. A bad port or a failed listen exits 1 with a message on stderr.
 */
import nodemailer from 'nodemailer';
import { SMTPServer } from 'smtp-server';

const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

const listenPort = Number(process.argv[2]);
const sinkPort = Number(process.argv[3]);
const validPort = (port: number) => Number.isInteger(port) && port >= 1 && port <= 65535;
if (!validPort(listenPort) || !validPort(sinkPort)) {
  process.stderr.write('usage: filter-relay LISTEN_PORT SINK_PORT\n');
  process.exit(1);
}

const next = nodemailer.createTransport({
  host: '127.0.0.1',
  port: sinkPort,
  secure: false,
  ignoreTLS: true,
  name: 'relay.example.com',
});

const server = new SMTPServer({
  name: 'relay.example.com',
  disabledCommands: ['AUTH', 'STARTTLS'],
  authOptional: true,
  hideSTARTTLS: true,
  disableReverseLookup: true,
  size: MAX_MESSAGE_BYTES,
  maxClients: 1000,
  logger: false,
  onData(stream, session, callback) {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => {
      if (stream.sizeExceeded) {
        callback(Object.assign(new Error('5.3.4 Message too big'), { responseCode: 552 }));
        return;
      }
      const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
      const to = session.envelope.rcptTo.map((r) => r.address);
      next.sendMail({ envelope: { from, to }, raw: Buffer.concat(chunks) }).then(
        (info) => callback(null, `2.0.0 Relayed: ${String(info.response)}`.slice(0, 200)),
        (error: unknown) => {
          const why = error instanceof Error ? error.message : String(error);
          callback(Object.assign(new Error(`4.4.0 Relay failed: ${why}`), { responseCode: 451 }));
        },
      );
    });
  },
});

server.on('error', (error) => {
  process.stderr.write(`filter-relay: ${error.message}\n`);
  process.exit(1);
});
server.listen(listenPort, '127.0.0.1', () => process.stdout.write('ready\n'));

const stop = () => {
  server.close();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
