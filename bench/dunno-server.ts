/**
 * The ceiling of the policy benchmark: the smallest correct always-DUNNO Postfix policy server, in plain Node
 * `net`. It reads `name=value` lines until an empty line and answers `action=DUNNO\n\n`, looping on the
 * connection (protocols.md A1). Correct but minimal: a request may arrive split across chunks, or several in
 * one chunk (each gets its reply, in order); nothing is parsed or validated beyond finding the empty line.
 *
 * Usage: `node dist/bench/dunno-server.js PORT` — listens on 127.0.0.1:PORT, prints `ready` on stdout once
 * listening, exits on SIGTERM/SIGINT. A bad port or a failed listen exits 1 with a message on stderr.
 */
import net from 'node:net';

const NEWLINE = 0x0a;
const REPLY = Buffer.from('action=DUNNO\n\n');

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write('usage: dunno-server PORT\n');
  process.exit(1);
}

const server = net.createServer({ noDelay: true }, (socket) => {
  // lineStart: the next byte begins a line, so a newline there is the empty line that ends a request.
  // Carried across chunks, so a split anywhere (even between the two final newlines) is handled.
  let lineStart = true;
  let inRequest = false;
  socket.on('data', (chunk: Buffer) => {
    let replies = 0;
    let from = 0;
    for (let nl = chunk.indexOf(NEWLINE, from); nl >= 0; nl = chunk.indexOf(NEWLINE, from)) {
      const empty = nl === from && lineStart;
      if (empty && inRequest) {
        replies += 1;
        inRequest = false;
      } else if (!empty) {
        inRequest = true;
      }
      lineStart = true;
      from = nl + 1;
    }
    if (from < chunk.length) {
      lineStart = false;
      inRequest = true;
    }
    if (replies === 1) socket.write(REPLY);
    else if (replies > 1) socket.write(Buffer.concat(Array.from({ length: replies }, () => REPLY)));
  });
  socket.on('error', () => socket.destroy());
});

server.on('error', (error) => {
  process.stderr.write(`dunno-server: ${error.message}\n`);
  process.exit(1);
});
server.listen({ host: '127.0.0.1', port }, () => process.stdout.write('ready\n'));

const stop = () => {
  server.close();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
