/**
 * SMTP on both ends of the content filter, for integration tests.
 *
 * `startRecordingSmtp()` is a re-injection target: a real `smtp-server` on a free loopback port that announces
 * DSN and XFORWARD (as Postfix's re-injection smtpd does) and records every message it accepts — its envelope
 * as smtp-server parsed it (MAIL FROM and RCPT TO with their parameters, the DSN fields, BODY, SMTPUTF8), the
 * XFORWARD attributes, the raw command lines of the connection, and the message's raw bytes. Its `rules` make
 * it refuse a recipient or a message with any reply code, to play a failing Postfix.
 *
 * `RawSmtpClient` is an SMTP client on a bare socket, for byte-level control: commands one at a time, the
 * message bytes written exactly as given (bare LF, NUL, no final dot), a connection left stalled or dropped in
 * the middle of DATA. `sendMessage()` runs a whole transaction with it.
 */
import net from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';

export interface SmtpReply {
  readonly code: number;
  /** The reply's lines without their codes. */
  readonly lines: readonly string[];
  /** The whole reply as received, lines joined by `\n`. */
  readonly text: string;
}

/** An SMTP client on a raw socket: what it writes is exactly what the server reads. */
export class RawSmtpClient {
  private buffer = '';
  private readonly replies: SmtpReply[] = [];
  private readonly waiting: { resolve: (r: SmtpReply) => void; reject: (e: Error) => void }[] = [];
  private ended: Error | undefined;
  /** Resolves when the socket is closed (by either side). */
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', () => {}); // surfaces as the close below
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = new Error(
          `connection closed${this.buffer ? ` after ${JSON.stringify(this.buffer)}` : ''}`,
        );
        for (const w of this.waiting.splice(0)) w.reject(this.ended);
        resolve();
      }),
    );
  }

  static connect(host: string, port: number, timeoutMs = 5000): Promise<RawSmtpClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no connection to ${host}:${port} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new RawSmtpClient(socket));
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (;;) {
      // A reply ends at its first line of `NNN ` (or a bare `NNN`); earlier lines are `NNN-`.
      const end = /^(\d{3})(?: [^\r\n]*)?\r?\n/m.exec(this.buffer);
      if (!end) return;
      const raw = this.buffer.slice(0, end.index + end[0].length);
      this.buffer = this.buffer.slice(raw.length);
      const lines = raw.split(/\r?\n/).filter((l) => l !== '');
      const reply = { code: Number(end[1]), lines: lines.map((l) => l.slice(4)), text: lines.join('\n') };
      const waiter = this.waiting.shift();
      if (waiter) waiter.resolve(reply);
      else this.replies.push(reply);
    }
  }

  /** The next reply (the greeting first), waiting at most `timeoutMs`. */
  reply(timeoutMs = 10_000): Promise<SmtpReply> {
    const ready = this.replies.shift();
    if (ready) return Promise.resolve(ready);
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (r: SmtpReply) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(new Error(`no SMTP reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.push(waiter);
    });
  }

  /** Writes bytes as they are, honouring backpressure. */
  async write(data: string | Buffer): Promise<void> {
    if (this.ended) throw this.ended;
    const buffer = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    if (!this.socket.write(buffer)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.socket.off('drain', done);
          this.socket.off('close', done);
          resolve();
        };
        this.socket.on('drain', done);
        this.socket.on('close', done);
      });
    }
  }

  /** Sends one command line (CRLF added) and waits for its reply. */
  async command(line: string, timeoutMs = 10_000): Promise<SmtpReply> {
    await this.write(`${line}\r\n`);
    return this.reply(timeoutMs);
  }

  /** QUIT, then close. */
  async quit(): Promise<void> {
    if (this.ended) return;
    try {
      await this.command('QUIT', 2000);
    } catch {
      // the server may close first
    }
    this.socket.destroy();
    await this.closed;
  }

  /** Drops the connection at once (a client that goes away). */
  destroy(): Promise<void> {
    this.socket.destroy();
    return this.closed;
  }
}

/** The DATA payload with dot-stuffing and the final `.`, as an SMTP client sends it. */
export function dataPayload(message: string | Buffer): Buffer {
  const bytes = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
  if (bytes.length === 0) return Buffer.from('.\r\n');
  // A dot at the start of a line (after LF, or at the very start) is doubled; smtp-server removes it.
  const parts: Buffer[] = [];
  let from = 0;
  if (bytes[0] === 0x2e) {
    parts.push(Buffer.from('.'));
  }
  for (let at = bytes.indexOf(0x0a); at >= 0; at = bytes.indexOf(0x0a, at + 1)) {
    if (bytes[at + 1] === 0x2e) {
      parts.push(bytes.subarray(from, at + 1), Buffer.from('.'));
      from = at + 1;
    }
  }
  parts.push(bytes.subarray(from));
  const endsWithCrlf =
    bytes.length >= 2 && bytes[bytes.length - 2] === 0x0d && bytes[bytes.length - 1] === 0x0a;
  parts.push(Buffer.from(endsWithCrlf ? '.\r\n' : '\r\n.\r\n'));
  return Buffer.concat(parts);
}

export interface Transaction {
  readonly helo?: string;
  /** XCLIENT attributes (without the verb, e.g. `ADDR=192.0.2.1 NAME=mail.example.net`), sent after the first
   * EHLO; the server greets again (220) and the EHLO is repeated. */
  readonly xclient?: string;
  /** XFORWARD command lines (without the verb), sent after EHLO. */
  readonly xforward?: readonly string[];
  readonly from: string;
  /** MAIL FROM parameters, e.g. `RET=HDRS ENVID=abc`. */
  readonly fromParams?: string;
  readonly to: readonly (string | { readonly address: string; readonly params: string })[];
  readonly message: string | Buffer;
  /** Longest wait for the final reply. */
  readonly timeoutMs?: number;
}

export interface TransactionResult {
  /** The reply after the final dot (or the first failing reply before it). */
  readonly reply: SmtpReply;
  /** Every reply, in order, with the command it answered. */
  readonly replies: readonly { readonly command: string; readonly reply: SmtpReply }[];
  readonly ms: number;
}

/** One whole transaction on a new connection; the connection is closed afterwards. */
export async function sendMessage(host: string, port: number, t: Transaction): Promise<TransactionResult> {
  const started = performance.now();
  const client = await RawSmtpClient.connect(host, port);
  const replies: { command: string; reply: SmtpReply }[] = [];
  const done = (reply: SmtpReply): TransactionResult => ({ reply, replies, ms: performance.now() - started });
  try {
    const greeting = await client.reply();
    replies.push({ command: '(greeting)', reply: greeting });
    if (greeting.code !== 220) return done(greeting);
    if (t.xclient !== undefined) {
      for (const [command, expected] of [
        [`EHLO ${t.helo ?? 'client.example.net'}`, 250],
        [`XCLIENT ${t.xclient}`, 220],
      ] as const) {
        const reply = await client.command(command);
        replies.push({ command, reply });
        if (reply.code !== expected) return done(reply);
      }
    }
    const steps = [
      `EHLO ${t.helo ?? 'client.example.net'}`,
      ...(t.xforward ?? []).map((x) => `XFORWARD ${x}`),
      `MAIL FROM:<${t.from}>${t.fromParams ? ` ${t.fromParams}` : ''}`,
      ...t.to.map((r) =>
        typeof r === 'string' ? `RCPT TO:<${r}>` : `RCPT TO:<${r.address}>${r.params ? ` ${r.params}` : ''}`,
      ),
    ];
    for (const command of steps) {
      const reply = await client.command(command);
      replies.push({ command, reply });
      if (reply.code !== 250) return done(reply);
    }
    const go = await client.command('DATA');
    replies.push({ command: 'DATA', reply: go });
    if (go.code !== 354) return done(go);
    await client.write(dataPayload(t.message));
    const reply = await client.reply(t.timeoutMs ?? 30_000);
    replies.push({ command: '.', reply });
    return done(reply);
  } finally {
    await client.quit();
  }
}

// ---------------------------------------------------------------------------------------------------------
// The re-injection target

export interface ReceivedMessage {
  /** smtp-server's connection id. */
  readonly connection: string;
  readonly mailFrom: SMTPServerAddress;
  readonly rcptTo: readonly SMTPServerAddress[];
  /** RET and ENVID of MAIL FROM, as smtp-server parsed them. */
  readonly dsn: { readonly ret: string | null; readonly envid: string | null } | undefined;
  readonly bodyType: string | undefined;
  readonly smtpUtf8: boolean | undefined;
  /** The XFORWARD attributes in force for the transaction (smtp-server's session.xForward). */
  readonly xForward: ReadonlyMap<string, string | number | false>;
  /** The raw command lines of the connection up to this message's DATA. */
  readonly commands: readonly string[];
  readonly raw: Buffer;
}

export interface RefusalRule {
  readonly code: number;
  readonly message: string;
}

export interface TargetRules {
  /** A reply for RCPT TO of this address, or undefined to accept it. */
  rcpt?: (address: string) => RefusalRule | undefined;
  /** A reply for the message after its final dot, or undefined to accept it. */
  data?: (raw: Buffer) => RefusalRule | undefined;
}

export interface RecordingSmtp {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** Every message accepted, in order. */
  readonly received: ReceivedMessage[];
  /** Messages (and recipients) refused by the rules, counted. */
  readonly refused: { rcpt: number; data: number };
  /** What to refuse; replace at will. */
  rules: TargetRules;
  close(): Promise<void>;
}

function refusal(rule: RefusalRule): Error {
  return Object.assign(new Error(rule.message), { responseCode: rule.code });
}

/** `port`: a fixed loopback port; default: a free one. */
export async function startRecordingSmtp(port = 0): Promise<RecordingSmtp> {
  const commands = new Map<string, string[]>();
  const received: ReceivedMessage[] = [];
  const refused = { rcpt: 0, data: 0 };
  const state: { rules: TargetRules } = { rules: {} };
  const record = (entry: Record<string, unknown>, message: unknown, ...args: unknown[]) => {
    if (entry['tnx'] !== 'command' || message !== 'C:') return;
    const cid = String(entry['cid']);
    const list = commands.get(cid) ?? [];
    list.push(String(args[0]));
    commands.set(cid, list);
  };
  const quiet = () => {};
  const server = new SMTPServer({
    name: 'reinject.example.test',
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    hideSTARTTLS: true,
    hideDSN: false,
    useXForward: true,
    disableReverseLookup: true,
    // The logger is the one place smtp-server shows the raw command lines.
    logger: { trace: quiet, debug: record, info: quiet, warn: quiet, error: quiet, fatal: quiet },
    onAuth: (_auth, _session, callback) => callback(new Error('no AUTH here')),
    onRcptTo: (address: SMTPServerAddress, _session: SMTPServerSession, callback) => {
      const rule = state.rules.rcpt?.(address.address);
      if (rule) {
        refused.rcpt += 1;
        callback(refusal(rule));
        return;
      }
      callback();
    },
    onData: (stream, session, callback) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', () => {});
      stream.on('end', () => {
        const raw = Buffer.concat(chunks);
        const rule = state.rules.data?.(raw);
        if (rule) {
          refused.data += 1;
          callback(refusal(rule));
          return;
        }
        const envelope = session.envelope;
        received.push({
          connection: session.id,
          mailFrom: envelope.mailFrom || { address: '', args: false },
          rcptTo: [...envelope.rcptTo],
          dsn: envelope.dsn ? { ret: envelope.dsn.ret, envid: envelope.dsn.envid } : undefined,
          bodyType: envelope.bodyType,
          smtpUtf8: envelope.smtpUtf8,
          xForward: new Map(session.xForward),
          commands: [...(commands.get(session.id) ?? [])],
          raw,
        });
        callback(null, `Ok: queued as T${received.length}`);
      });
    },
  });
  server.on('error', () => {});
  const bound = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const info = server.server.address();
      resolve(typeof info === 'object' && info ? info.port : 0);
    });
  });
  return {
    host: '127.0.0.1',
    port: bound,
    received,
    refused,
    get rules() {
      return state.rules;
    },
    set rules(rules: TargetRules) {
      state.rules = rules;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
