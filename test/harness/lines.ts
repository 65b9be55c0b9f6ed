/** CRLF-ended lines from a socket, for tests that speak a line protocol (IMAP, SMTP) by hand. */
import type { Socket } from 'node:net';

/**
 * Calls `onLine` with each line `socket` receives, without its CRLF, in order; a partial line waits for the rest.
 * Bytes are read as latin1 unless the socket has an encoding of its own. When `onLine` returns `'stop'`, the
 * lines after it in the same chunk are dropped (the caller has closed the connection).
 */
export function onCrlfLines(socket: Socket, onLine: (line: string) => 'stop' | undefined): void {
  let buffer = '';
  socket.on('data', (chunk: Buffer | string) => {
    buffer += typeof chunk === 'string' ? chunk : chunk.toString('latin1');
    for (let end = buffer.indexOf('\r\n'); end >= 0; end = buffer.indexOf('\r\n')) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (onLine(line) === 'stop') return;
    }
  });
}
