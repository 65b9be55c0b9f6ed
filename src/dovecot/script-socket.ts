/**
 * Dovecot's "script" service protocol, server side, on a unix socket: what Pigeonhole's `pipe` (sieve
 * extprograms) speaks when it finds a socket named after the program in `sieve_pipe_socket_dir` instead of an
 * executable in `sieve_pipe_bin_dir` — so a report costs a connection, not a process.
 *
 * The client (dovecot/core src/lib-program-client/program-client-remote.c; the server it was made for is
 * src/util/script.c) sends a header of LF-terminated lines, ended by an empty line:
 *
 *   VERSION\tscript\t4\t0        name "script", major version 4 (any minor)
 *   [alarm=<secs>]               optional, before the rest
 *   env_<NAME>=<value>           zero or more (pipe sends USER, HOME, HOST, SENDER, RECIPIENT, ORIG_RECIPIENT)
 *   noreply | -                  "-" (or anything non-empty): the client wants a result
 *   <arg>                        zero or more: the arguments the Sieve script gave the program
 *   (empty line)
 *
 * env values and args are tab-escaped (\001 then 0, 1, t, r, n for NUL, \001, TAB, CR, LF). Then comes the
 * message, raw (no dot-stuffing on a unix socket; CRLF or LF per sieve_pipe_input_eol), ended by the client
 * shutting down its side. The result is the last two bytes the server sends before closing: "+\n" success, "-\n"
 * failure (anything before them is the program's output, which `pipe` ignores). A close before the client
 * wrote everything fails its write, so the server reads to the end before it answers (both Dovecot 2.3 and 2.4).
 *
 * Limits: connections at once (more are closed at once), header bytes, message bytes (the rest is read and
 * dropped, and the handler is told the input was cut), and an idle timeout per connection. A malformed header
 * or a connection closed early is logged (throttled) and closed without an answer: Dovecot logs the failure.
 * The handler must not throw; it is not awaited by anything but this connection.
 */
import { chownSync, chmodSync, existsSync, lstatSync, readFileSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import type { Logger } from '../observe/logger.js';
import { createThrottledLog } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';

export const SCRIPT_PROTOCOL_MAJOR = 4;

export interface ScriptRequest {
  readonly minorVersion: number;
  /** `alarm=<secs>`: how long the client lets the program run. */
  readonly alarmS?: number;
  readonly env: ReadonlyMap<string, string>;
  /** The client wants no result code ("noreply"). */
  readonly noreply: boolean;
  readonly args: readonly string[];
}

export type HeaderParse =
  | { readonly kind: 'more' }
  | { readonly kind: 'bad'; readonly reason: string }
  | { readonly kind: 'request'; readonly request: ScriptRequest; readonly headerBytes: number };

const LF = 0x0a;

const ESCAPE = '\x01';
const UNESCAPED: Readonly<Record<string, string>> = { '0': '\0', '1': '\x01', t: '\t', r: '\r', n: '\n' };

/** Undoes Dovecot's str_append_tabescaped() (lib/strescape.c): \001 and one of 0 1 t r n stand for one byte. */
export function tabUnescape(text: string): string {
  if (!text.includes(ESCAPE)) return text;
  const [first = '', ...escaped] = text.split(ESCAPE);
  return (
    first + escaped.map((piece) => (UNESCAPED[piece.charAt(0)] ?? piece.charAt(0)) + piece.slice(1)).join('')
  );
}

/**
 * Reads the header at the start of `input`: 'more' until the empty line that ends it arrived (or 'bad' once
 * `maxBytes` passed without one), then the request and how many bytes the header took (the message follows).
 */
export function parseScriptHeader(input: Buffer, maxBytes: number): HeaderParse {
  let end = -1;
  for (let i = 1; i < input.length && i < maxBytes; i++) {
    if (input[i] === LF && input[i - 1] === LF) {
      end = i;
      break;
    }
  }
  if (end < 0) {
    return input.length >= maxBytes
      ? { kind: 'bad', reason: `no end of header within ${maxBytes} bytes` }
      : { kind: 'more' };
  }
  const lines = input
    .subarray(0, end - 1)
    .toString('utf8')
    .split('\n');
  const version = /^VERSION\tscript\t(\d+)\t(\d+)$/.exec(lines[0] ?? '');
  if (!version) return { kind: 'bad', reason: 'not a script protocol client (no VERSION\\tscript line)' };
  if (Number(version[1]) !== SCRIPT_PROTOCOL_MAJOR) {
    return { kind: 'bad', reason: `script protocol version ${version[1]}, not ${SCRIPT_PROTOCOL_MAJOR}` };
  }
  let at = 1;
  let alarmS: number | undefined;
  const alarm = /^alarm=(\d+)$/.exec(lines[at] ?? '');
  if (alarm) {
    alarmS = Number(alarm[1]);
    at += 1;
  }
  const env = new Map<string, string>();
  for (let line = lines[at]; line?.startsWith('env_'); line = lines[++at]) {
    const value = tabUnescape(line.slice(4));
    const eq = value.indexOf('=');
    if (eq <= 0) return { kind: 'bad', reason: 'an env_ line without NAME=' };
    env.set(value.slice(0, eq), value.slice(eq + 1));
  }
  const option = lines[at];
  if (option === '') return { kind: 'bad', reason: 'empty options line' };
  const args = option === undefined ? [] : lines.slice(at + 1).map(tabUnescape);
  return {
    kind: 'request',
    request: {
      minorVersion: Number(version[2]),
      ...(alarmS !== undefined ? { alarmS } : {}),
      env,
      noreply: option === 'noreply',
      args,
    },
    headerBytes: end + 1,
  };
}

/** What the client piped: the message, or only its size when it passed the bound (nothing of it kept). */
export type ScriptInput =
  { readonly complete: true; readonly data: Buffer } | { readonly complete: false; readonly bytes: number };

/** Decides the result: true answers success ("+"), false failure ("-"). Must not throw. */
export type ScriptHandler = (request: ScriptRequest, input: ScriptInput) => boolean | Promise<boolean>;

export interface ScriptSocketOptions {
  /** The socket's path: `<base_dir>/<sieve_pipe_socket_dir>/<program name>` as Dovecot looks for it. */
  readonly path: string;
  /** File mode of the socket (the connecting mail processes need write permission). */
  readonly mode: number;
  /** Group id to give the socket, e.g. the mail user's group; undefined keeps the process's own. */
  readonly gid?: number;
  readonly maxConnections: number;
  readonly maxHeaderBytes: number;
  readonly maxInputBytes: number;
  readonly idleTimeoutMs: number;
}

/** The numeric id of a group given by name or number, from /etc/group (Node has no getgrnam). */
export function groupId(group: string, groupFile = '/etc/group'): number | undefined {
  if (/^\d+$/.test(group)) return Number(group);
  for (const line of readFileSync(groupFile, 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}

export class ScriptSocketServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly warn: ReturnType<typeof createThrottledLog>;

  constructor(
    private readonly options: ScriptSocketOptions,
    private readonly handler: ScriptHandler,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {
    // allowHalfOpen: the client shuts down its side to end the message and then waits for the result.
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    this.warn = createThrottledLog(logger);
  }

  /** Binds the socket (a stale socket file left by a crash is replaced), then sets its mode and group. */
  listen(): Promise<string> {
    const { path } = this.options;
    if (existsSync(path) && lstatSync(path).isSocket()) unlinkSync(path);
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(path, () => {
        this.server.off('error', reject);
        this.server.on('error', (err) => this.logger.error({ err, path }, 'script socket listener error'));
        try {
          chmodSync(path, this.options.mode);
          if (this.options.gid !== undefined) chownSync(path, -1, this.options.gid);
        } catch (error) {
          this.server.close();
          reject(error as Error);
          return;
        }
        resolve(path);
      });
    });
  }

  /** Stops accepting, cuts open connections (Dovecot logs a failed report; nothing else is lost). */
  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    if (this.sockets.size >= this.options.maxConnections) {
      this.refuse(socket, 'PW-V002', `more than ${this.options.maxConnections} connections at once`);
      return;
    }
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(this.options.idleTimeoutMs, () =>
      this.refuse(socket, 'PW-V002', `idle for ${this.options.idleTimeoutMs} ms`),
    );

    let header: Buffer[] = [];
    let headerSize = 0;
    let request: ScriptRequest | undefined;
    let body: Buffer[] = [];
    let bodySize = 0;

    const takeBody = (chunk: Buffer) => {
      bodySize += chunk.length;
      if (bodySize <= this.options.maxInputBytes) body.push(chunk);
      else body = []; // over the bound: keep reading to the end (closing would fail the client's write), keep nothing
    };

    socket.on('data', (chunk: Buffer) => {
      if (request) {
        takeBody(chunk);
        return;
      }
      header.push(chunk);
      headerSize += chunk.length;
      const received = Buffer.concat(header, headerSize);
      const parsed = parseScriptHeader(received, this.options.maxHeaderBytes);
      if (parsed.kind === 'more') return;
      if (parsed.kind === 'bad') {
        this.refuse(socket, 'PW-V001', parsed.reason);
        return;
      }
      request = parsed.request;
      const rest = received.subarray(parsed.headerBytes);
      header = [];
      if (rest.length > 0) takeBody(rest);
    });

    socket.on('end', () => {
      if (!request) {
        this.refuse(socket, 'PW-V001', 'closed before the end of the header');
        return;
      }
      const input: ScriptInput =
        bodySize <= this.options.maxInputBytes
          ? { complete: true, data: Buffer.concat(body, bodySize) }
          : { complete: false, bytes: bodySize };
      const asked = request;
      void Promise.resolve()
        .then(() => this.handler(asked, input))
        .then(
          (ok) => socket.end(asked.noreply ? '' : ok ? '+\n' : '-\n'),
          () => socket.destroy(), // a handler that breaks its contract answers nothing: Dovecot logs a failure
        );
    });
  }

  private refuse(socket: net.Socket, code: 'PW-V001' | 'PW-V002', reason: string): void {
    this.metrics.get('postwarden_errors_total').inc({ code });
    this.warn(code, { reason }, 'script socket connection closed without an answer');
    socket.destroy();
  }
}
