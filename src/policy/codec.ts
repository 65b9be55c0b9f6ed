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
// Names and values never contain NUL or newline (protocols.md A1); other control bytes mean a foreign client.
// eslint-disable-next-line no-control-regex -- control bytes are exactly what this looks for
const FORBIDDEN = /[\x00-\x08\x0a-\x1f\x7f]/;

export class PolicyDecoder {
  private carry: Buffer | undefined;
  private attributes: Attributes = Object.create(null) as Attributes;
  private count = 0;
  private requestBytes = 0;
  private failed = false;

  constructor(private readonly limits: CodecLimits) {}

  /** True when part of a request has arrived and its end has not. */
  get midRequest(): boolean {
    return this.count > 0 || (this.carry?.length ?? 0) > 0;
  }

  /** Feeds bytes; returns the complete requests they finish, and at most one error (after which it is dead). */
  push(chunk: Buffer): CodecEvent[] {
    if (this.failed) return [];
    const events: CodecEvent[] = [];
    const data = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = undefined;
    let start = 0;
    for (;;) {
      const end = data.indexOf(NEWLINE, start);
      if (end < 0) break;
      const event = this.line(data, start, end);
      start = end + 1;
      if (event) {
        events.push(event);
        if (event.kind === 'error') return events;
      }
    }
    if (start < data.length) {
      const rest = data.length - start;
      // A CR last may be the first half of a CRLF, which line() does not count: the answer must not depend on
      // where TCP cut the stream.
      const lineSoFar = data[data.length - 1] === 0x0d ? rest - 1 : rest;
      if (lineSoFar > this.limits.maxLineBytes)
        return [...events, this.fail('PW-P002', `line longer than ${this.limits.maxLineBytes} bytes`)];
      if (this.requestBytes + rest > this.limits.maxRequestBytes) {
        return [...events, this.fail('PW-P003', `request larger than ${this.limits.maxRequestBytes} bytes`)];
      }
      this.carry = Buffer.from(data.subarray(start));
    }
    return events;
  }

  private fail(code: Code, detail: string): CodecEvent {
    this.failed = true;
    this.carry = undefined;
    return { kind: 'error', code, detail };
  }

  private line(data: Buffer, start: number, end: number): CodecEvent | undefined {
    let stop = end;
    if (stop > start && data[stop - 1] === 0x0d) stop -= 1; // tolerate CRLF from hand-typed tests
    const length = stop - start;
    if (length > this.limits.maxLineBytes)
      return this.fail('PW-P002', `line longer than ${this.limits.maxLineBytes} bytes`);
    this.requestBytes += end - start + 1;
    if (this.requestBytes > this.limits.maxRequestBytes) {
      return this.fail('PW-P003', `request larger than ${this.limits.maxRequestBytes} bytes`);
    }
    if (length === 0) return this.finish();
    const text = data.toString('utf8', start, stop);
    const eq = text.indexOf('=');
    if (eq <= 0) return this.fail('PW-P001', eq === 0 ? 'attribute with an empty name' : 'line without "="');
    if (FORBIDDEN.test(text)) return this.fail('PW-P001', 'control byte in an attribute');
    this.count += 1;
    if (this.count > this.limits.maxAttributes) {
      return this.fail('PW-P004', `more than ${this.limits.maxAttributes} attributes`);
    }
    this.attributes[text.slice(0, eq)] = text.slice(eq + 1);
    return undefined;
  }

  private finish(): CodecEvent {
    const attributes = this.attributes;
    const empty = this.count === 0;
    this.attributes = Object.create(null) as Attributes;
    this.count = 0;
    this.requestBytes = 0;
    if (empty) return this.fail('PW-P005', 'empty request');
    if (attributes['request'] !== 'smtpd_access_policy') {
      return this.fail('PW-P005', `request=${JSON.stringify(attributes['request'] ?? null).slice(0, 40)}`);
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
