/**
 * A small SMTP client for the doctor's probes: connect (TCP or unix socket) with a deadline, read the greeting,
 * send one command at a time and read its (multi-line) reply. Used to read a banner, to try relay tricks
 * (never DATA there), and to send the one end-to-end test message.
 *
 * Every wait has the deadline given at connect; a reply longer than MAX_REPLY_BYTES or a closed connection is
 * an SmtpError. Never throws for an SMTP refusal: the code is data.
 */
import net from 'node:net';

const MAX_REPLY_BYTES = 64 * 1024;

export interface SmtpReply {
  readonly code: number;
  /** The reply's lines, code included, joined with ' / '. */
  readonly text: string;
  /** The text after the code of each line (EHLO capabilities). */
  readonly lines: readonly string[];
}

export class SmtpError extends Error {}

export class SmtpSession {
  private buffer = '';
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;

  private constructor(
    private readonly socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      if (this.buffer.length > MAX_REPLY_BYTES) this.fail(new SmtpError('reply too long'));
      this.waiter?.();
    });
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new SmtpError('connection closed')));
  }

  /** Connects and reads the greeting. `target` is `{ host, port }` or `{ path }` (unix socket). */
  static async open(
    target: { host: string; port: number } | { path: string },
    timeoutMs: number,
  ): Promise<{ session: SmtpSession; greeting: SmtpReply }> {
    const socket = 'path' in target ? net.connect(target.path) : net.connect(target.port, target.host);
    const session = new SmtpSession(socket, timeoutMs);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new SmtpError(`no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    try {
      return { session, greeting: await session.reply() };
    } catch (error) {
      session.close();
      throw error;
    }
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.waiter?.();
  }

  /** Reads one complete reply (the last line has a space after the code). */
  async reply(): Promise<SmtpReply> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const lines = this.buffer.split('\r\n');
      const end = lines.findIndex((l) => /^\d{3}(?: |$)/.test(l));
      if (end >= 0 && end < lines.length - 1) {
        const mine = lines.slice(0, end + 1);
        this.buffer = lines.slice(end + 1).join('\r\n');
        return {
          code: Number(mine[end]?.slice(0, 3)),
          text: mine.join(' / '),
          lines: mine.map((l) => l.slice(4)),
        };
      }
      if (this.failure) throw new SmtpError(this.failure.message);
      const left = deadline - Date.now();
      if (left <= 0) throw new SmtpError(`no reply within ${this.timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
  }

  /** Sends one command line and reads its reply. */
  async command(line: string): Promise<SmtpReply> {
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }

  /** Sends a message body (dot-stuffed here) and the final dot; reads the reply. */
  async data(message: string): Promise<SmtpReply> {
    const body = message.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..');
    this.socket.write(`${body}${body.endsWith('\r\n') ? '' : '\r\n'}.\r\n`);
    return this.reply();
  }

  /** QUIT (best effort) and close. */
  async quit(): Promise<void> {
    try {
      await this.command('QUIT');
    } catch {
      // already gone: nothing to say goodbye to
    }
    this.close();
  }

  close(): void {
    this.socket.destroy();
  }
}
