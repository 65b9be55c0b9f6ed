/**
 * Re-injection: hands a filtered message back to Postfix's re-injection smtpd (`filter.reinject`, default
 * 127.0.0.1:10062) with the envelope exactly as received — sender, every recipient, DSN parameters (RET, ENVID,
 * NOTIFY, ORCPT) — and the original client's identity through XFORWARD, so Postfix logs and later restrictions
 * see the real client. The message bytes are streamed from the spool behind the filter's own header fields,
 * never re-encoded, so DKIM signatures still verify.
 *
 * `open` gives the message stream afresh for each transaction (see dsnGroups). It resolves only when the smtpd
 * accepted the message for every recipient; anything else rejects with
 * ReinjectError, and the face answers Postfix 451 so Postfix keeps the message (a partial acceptance too: a
 * duplicate for some recipients is better than a loss for others).
 *
 * nodemailer's SMTPConnection has no XFORWARD command; its `customAuth` hook is the one place where it lets a
 * caller send its own commands between EHLO and MAIL, so XFORWARD is sent from there (and only when the
 * smtpd announced it).
 */
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Readable } from 'node:stream';
import { useFastDotStuffing } from './dot-stuffing.js';

export interface ReinjectTarget {
  readonly host: string;
  readonly port: number;
  /** Our name in EHLO. */
  readonly name: string;
  readonly timeoutMs: number;
}

export interface ReinjectEnvelope {
  readonly sender: string;
  readonly recipients: readonly {
    readonly address: string;
    readonly notify?: readonly string[];
    readonly orcpt?: string;
  }[];
  readonly ret?: string;
  readonly envid?: string;
  /** MAIL FROM came with BODY=8BITMIME: it goes on with the message. */
  readonly body8bit?: boolean;
  /** MAIL FROM came with SMTPUTF8: it goes on with the message. */
  readonly smtpUtf8?: boolean;
  readonly size: number;
}

/** XFORWARD attributes (XFORWARD_README): NAME ADDR PORT PROTO HELO IDENT SOURCE. */
export type XForward = ReadonlyMap<string, string>;

export class ReinjectError extends Error {
  constructor(
    message: string,
    /** The smtpd's reply, when it gave one. */
    readonly response?: string,
  ) {
    super(message);
  }
}

/** xtext (RFC 3461 §4): `+XX` for `+`, `=`, and bytes outside 33..126. */
function xtext(value: string): string {
  return value.replace(/[^\x21-\x2a\x2c-\x3c\x3e-\x7e]/g, (c) =>
    [...Buffer.from(c, 'utf8')].map((b) => `+${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
}

const XFORWARD_LINE_MAX = 480;
/** The attributes Postfix's smtpd accepts (XFORWARD_README). */
const XFORWARD_ATTRIBUTES: ReadonlySet<string> = new Set([
  'NAME',
  'ADDR',
  'PORT',
  'PROTO',
  'HELO',
  'IDENT',
  'SOURCE',
]);

/** XFORWARD commands for the attributes the smtpd accepts, split to keep each line short. */
export function xforwardCommands(attributes: XForward, accepted: ReadonlySet<string>): string[] {
  const commands: string[] = [];
  let line = 'XFORWARD';
  for (const [name, value] of attributes) {
    if (!accepted.has(name)) continue;
    const pair = ` ${name}=${value === '[UNAVAILABLE]' || value === '[TEMPUNAVAIL]' ? value : xtext(value)}`;
    if (line.length + pair.length > XFORWARD_LINE_MAX && line !== 'XFORWARD') {
      commands.push(line);
      line = 'XFORWARD';
    }
    line += pair;
  }
  if (line !== 'XFORWARD') commands.push(line);
  return commands;
}

/**
 * nodemailer asks for SMTPUTF8 only when an address is not ASCII, and has no option to ask for it otherwise; but
 * Postfix's SMTPUTF8 also marks UTF-8 header fields behind an ASCII envelope (RFC 6531 §3.4), and dropping it
 * changes what Postfix does with the message later. So the request goes on as Postfix made it: added to MAIL
 * FROM through nodemailer's command writer (an internal method; the filter-input test fails if it changes), when
 * the smtpd announced SMTPUTF8.
 */
function requestSmtpUtf8(connection: SMTPConnection): void {
  const internals = connection as unknown as {
    _sendCommand(line: string, logLine?: string): void;
    _supportedExtensions: string[];
  };
  const send = internals._sendCommand.bind(connection);
  internals._sendCommand = (line, logLine) =>
    send(
      /^MAIL FROM:/i.test(line) &&
        !/ SMTPUTF8\b/i.test(line) &&
        internals._supportedExtensions.includes('SMTPUTF8')
        ? `${line} SMTPUTF8`
        : line,
      logLine,
    );
}

function connect(connection: SMTPConnection): Promise<void> {
  return new Promise((resolve, reject) => {
    connection.once('error', reject);
    connection.connect(() => {
      connection.off('error', reject);
      resolve();
    });
  });
}

/** Sends XFORWARD after EHLO through the customAuth hook (see the module comment). */
function forward(connection: SMTPConnection): Promise<void> {
  return new Promise((resolve, reject) => {
    connection.login(
      { method: 'XFORWARD', user: 'xforward' } as SMTPConnection.Credentials & { method: string },
      (error) => (error ? reject(error) : resolve()),
    );
  });
}

export async function reinject(
  target: ReinjectTarget,
  envelope: ReinjectEnvelope,
  open: () => Readable,
  xforward: XForward,
  /** Aborted at the message's deadline: the connection is dropped, so no message the filter answered 451 for is
   * delivered later (a drop before the final dot leaves nothing queued). */
  signal?: AbortSignal,
): Promise<string> {
  useFastDotStuffing(); // the same DATA bytes as nodemailer's, an eighth of the filter's time less
  const connection = new SMTPConnection({
    host: target.host,
    port: target.port,
    name: target.name,
    ignoreTLS: true,
    connectionTimeout: target.timeoutMs,
    greetingTimeout: target.timeoutMs,
    socketTimeout: target.timeoutMs,
    customAuth: {
      XFORWARD: async (ctx) => {
        // nodemailer does not report XFORWARD among the extensions it parsed, so it is simply sent: an smtpd
        // that does not allow it (smtpd_authorized_xforward_hosts) refuses it, and the message goes on without.
        for (const command of xforwardCommands(xforward, XFORWARD_ATTRIBUTES)) {
          const reply = await ctx.sendCommand(command);
          if (reply.status !== 250) return;
        }
      },
    },
  });
  connection.on('error', () => {}); // errors reach the callbacks below; a late one must not be unhandled
  if (envelope.smtpUtf8) requestSmtpUtf8(connection);
  const drop = () => connection.close();
  signal?.addEventListener('abort', drop, { once: true });
  // nodemailer settles nothing when the smtpd goes away while a customAuth command (XFORWARD) waits for its
  // reply: the step would wait for the message deadline (minutes, with Postfix's delivery held). Every step
  // races the connection's end instead, which nodemailer emits however the connection closed.
  const ended = new Promise<never>((_, reject) =>
    connection.once('end', () => reject(new Error('the connection closed before the smtpd answered'))),
  );
  ended.catch(() => undefined); // after success the connection ends too, and nobody waits for it then
  const step = <T>(work: Promise<T>): Promise<T> => Promise.race([work, ended]);
  try {
    if (signal?.aborted) throw new ReinjectError('the deadline passed before the re-injection');
    await step(connect(connection));
    await step(forward(connection));
    const responses: string[] = [];
    // nodemailer gives one NOTIFY and ORCPT to every recipient of a transaction, so recipients whose DSN
    // parameters differ go in transactions of their own (Postfix sends the same message for each).
    for (const group of dsnGroups(envelope.recipients)) {
      const info = await step(
        new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) => {
          connection.send(
            {
              from: envelope.sender,
              to: group.map((r) => r.address),
              size: envelope.size,
              ...(envelope.body8bit ? { use8BitMime: true } : {}),
              dsn: {
                ...(envelope.ret ? { ret: envelope.ret } : {}),
                ...(envelope.envid ? { envid: envelope.envid } : {}),
                ...dsnOf(group[0]),
              },
            } as SMTPConnection.Envelope,
            open(),
            (error, sent) => (error ? reject(error) : resolve(sent)),
          );
        }),
      );
      if (info.rejected.length > 0) {
        throw new ReinjectError(
          `the re-injection smtpd refused ${info.rejected.length} of ${envelope.recipients.length} recipient(s)`,
          info.response,
        );
      }
      responses.push(info.response);
    }
    return responses.join('; ');
  } catch (error) {
    if (error instanceof ReinjectError) throw error;
    const response = (error as { response?: string }).response;
    throw new ReinjectError(
      `re-injection to ${target.host}:${target.port} failed: ${(error as Error).message}`,
      response,
    );
  } finally {
    signal?.removeEventListener('abort', drop);
    connection.quit();
    connection.close();
  }
}

type Recipient = ReinjectEnvelope['recipients'][number];

function dsnGroups(recipients: readonly Recipient[]): Recipient[][] {
  const groups = new Map<string, Recipient[]>();
  for (const recipient of recipients) {
    const key = `${(recipient.notify ?? []).join(',')}|${recipient.orcpt ?? ''}`;
    const group = groups.get(key);
    if (group) group.push(recipient);
    else groups.set(key, [recipient]);
  }
  return [...groups.values()];
}

function dsnOf(recipient: Recipient | undefined): { notify?: string[]; orcpt?: string } {
  return {
    ...(recipient?.notify && recipient.notify.length > 0 ? { notify: [...recipient.notify] } : {}),
    ...(recipient?.orcpt ? { orcpt: recipient.orcpt } : {}),
  };
}
