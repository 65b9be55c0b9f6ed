/**
 * The Postfix policy protocol codec (SMTPD_POLICY_README): `name=value` lines ended by `\n`, a request ended by
 * an empty line. Incremental and bounded: line length, request size and attribute count are checked as bytes
 * arrive, so an abusive client costs at most one request's worth of memory. A protocol error is reported once;
 * the server then closes the connection without a reply, as the protocol asks.
 */
import type { Code } from '../observe/codes.js';

export interface CodecLimits {
  readonly maxLineBytes: number;
  readonly maxRequestBytes: number;
  readonly maxAttributes: number;
}

export type Attributes = Record<string, string>;

export type CodecEvent =
  | { readonly kind: 'request'; readonly attributes: Attributes }
  | { readonly kind: 'error'; readonly code: Code; readonly detail: string };

const NEWLINE = 0x0a;
const CR = 0x0d;
const TAB = 0x09;
const DEL = 0x7f;
const EQUALS = 0x3d;

/**
 * Lines are measured and checked as bytes as they arrive (no decoding); a request is decoded to text once,
 * when its empty line arrives. Decoding and testing each line on its own cost a third of the policy face's own
 * time in the benchmark.
 */
export class PolicyDecoder {
  /** The bytes of the request being received (its lines so far, the last perhaps partial), between chunks. */
  private carry: Buffer | undefined;
  /** Where in `carry` the partial line begins: the lines before it were checked already. */
  private lineStart = 0;
  /** Attribute lines of the request being received. */
  private count = 0;
  private failed = false;

  constructor(private readonly limits: CodecLimits) {}

  /** True when part of a request has arrived and its end has not. */
  get midRequest(): boolean {
    return this.count > 0 || (this.carry?.length ?? 0) > 0;
  }

  /** Feeds bytes; returns the complete requests they finish, and at most one error (after which it is dead). */
  push(chunk: Buffer): CodecEvent[] {
    if (this.failed) return [];
    const { maxLineBytes, maxRequestBytes, maxAttributes } = this.limits;
    const events: CodecEvent[] = [];
    const data = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    let start = this.carry ? this.lineStart : 0;
    this.carry = undefined;
    let requestStart = 0;
    for (let end = data.indexOf(NEWLINE, start); end >= 0; end = data.indexOf(NEWLINE, start)) {
      const stop = end > start && data[end - 1] === CR ? end - 1 : end; // tolerate CRLF from hand-typed tests
      if (stop - start > maxLineBytes)
        return this.failWith(events, 'PW-P002', `line longer than ${maxLineBytes} bytes`);
      if (end + 1 - requestStart > maxRequestBytes) {
        return this.failWith(events, 'PW-P003', `request larger than ${maxRequestBytes} bytes`);
      }
      if (stop === start) {
        const event = this.finish(data, requestStart, start);
        events.push(event);
        if (event.kind === 'error') return events;
        requestStart = end + 1;
      } else {
        // Names and values never contain NUL or newline (protocols.md A1); other control bytes (a tab aside)
        // mean a foreign client.
        let eq = -1;
        let control = false;
        for (let i = start; i < stop; i++) {
          const byte = data[i] as number;
          if (byte === EQUALS) {
            if (eq < 0) eq = i;
          } else if (byte < 0x20 ? byte !== TAB : byte === DEL) control = true;
        }
        if (eq === start) return this.failWith(events, 'PW-P001', 'attribute with an empty name');
        if (eq < 0) return this.failWith(events, 'PW-P001', 'line without "="');
        if (control) return this.failWith(events, 'PW-P001', 'control byte in an attribute');
        this.count += 1;
        if (this.count > maxAttributes)
          return this.failWith(events, 'PW-P004', `more than ${maxAttributes} attributes`);
      }
      start = end + 1;
    }
    if (requestStart < data.length) {
      // A CR last may be the first half of a CRLF, which is not counted: the answer must not depend on where TCP
      // cut the stream.
      const lineSoFar = data.length - start - (data[data.length - 1] === CR ? 1 : 0);
      if (lineSoFar > maxLineBytes)
        return this.failWith(events, 'PW-P002', `line longer than ${maxLineBytes} bytes`);
      if (data.length - requestStart > maxRequestBytes) {
        return this.failWith(events, 'PW-P003', `request larger than ${maxRequestBytes} bytes`);
      }
      this.carry = Buffer.from(data.subarray(requestStart));
      this.lineStart = start - requestStart;
    }
    return events;
  }

  /** The one error of this decoder: it takes nothing more. */
  private error(code: Code, detail: string): CodecEvent {
    this.failed = true;
    this.carry = undefined;
    return { kind: 'error', code, detail };
  }

  private failWith(events: CodecEvent[], code: Code, detail: string): CodecEvent[] {
    events.push(this.error(code, detail));
    return events;
  }

  /** The request in data[from, to): its attribute lines, each checked already (length, "=", control bytes). */
  private finish(data: Buffer, from: number, to: number): CodecEvent {
    const empty = this.count === 0;
    this.count = 0;
    if (empty) return this.error('PW-P005', 'empty request');
    const text = data.toString('utf8', from, to);
    const attributes = Object.create(null) as Attributes;
    for (let line = 0; line < text.length;) {
      const end = text.indexOf('\n', line);
      const stop = text.charCodeAt(end - 1) === CR ? end - 1 : end;
      const eq = text.indexOf('=', line);
      attributes[text.slice(line, eq)] = text.slice(eq + 1, stop);
      line = end + 1;
    }
    if (attributes['request'] !== 'smtpd_access_policy') {
      return this.error('PW-P005', `request=${JSON.stringify(attributes['request'] ?? null).slice(0, 40)}`);
    }
    return { kind: 'request', attributes };
  }
}

/** Encodes a request the way Postfix does (for `policy-query`, tests and benchmarks). */
export function encodeRequest(attributes: Readonly<Record<string, string>>): string {
  let out = '';
  for (const [name, value] of Object.entries(attributes)) out += `${name}=${value}\n`;
  return `${out}\n`;
}
