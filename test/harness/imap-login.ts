/**
 * A hand-written IMAP LOGIN for the auth-policy tests (Dovecot 2.3 and 2.4): each login from a loopback address
 * of its own, as a distinct client.
 */
import net from 'node:net';
import { onCrlfLines } from './lines.js';

/**
 * One IMAP LOGIN to 127.0.0.1:`port` from `from` (a loopback address to bind): the tagged reply, e.g. `a1 OK …` or `a1 NO …`.
 * Written by hand: only LOGIN is needed, and imapflow binds no local address without a custom transport.
 */
export function imapLoginFrom(port: number, user: string, password: string, from: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: from });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`IMAP LOGIN ${user} from ${from}: no answer in 30 s`));
    }, 30_000);
    let greeted = false;
    socket.setEncoding('utf8');
    onCrlfLines(socket, (line) => {
      if (!greeted && line.startsWith('* OK')) {
        greeted = true;
        socket.write(`a1 LOGIN "${user}" "${password}"\r\n`);
      } else if (line.startsWith('a1 ')) {
        clearTimeout(timer);
        socket.end('a2 LOGOUT\r\n');
        resolve(line);
        return 'stop';
      }
      return undefined;
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
