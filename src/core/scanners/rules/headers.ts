/**
 * Header helpers for the content rules: RFC 2047 encoded words, raw 8-bit header bytes, RFC 5322 dates,
 * message ids and mailboxes, Content-Type parameters and charset names. Pure and total: malformed input
 * yields `undefined` or a flag, never an exception, and every loop is bounded by the (capped) input length.
 *
 * Header values arrive as the parser gives them (src/filter/parse.ts, mailparser's `headerLines`): unfolded,
 * not decoded, raw bytes as latin1 characters (one character per byte). A value holding characters above
 * U+00FF was decoded by someone else already and is taken as it is.
 */
import { getDomain } from 'tldts';

/** Header values longer than this are cut before any rule reads them (Postfix allows 100 kB of header). */
export const MAX_HEADER_VALUE = 2000;

/**
 * Charsets that no WHATWG decoder knows but that real mailers legitimately declare (IANA-registered): decoded
 * as windows-1252, which keeps ASCII intact, and never reported as unknown.
 */
const KNOWN_UNDECODABLE = new Set([
  'utf-7',
  'unicode-1-1-utf-7',
  'iso-8859-16',
  'iso_8859-16',
  'latin10',
  'ibm437',
  'cp437',
  'ibm850',
  'cp850',
  'ibm852',
  'cp852',
  'ibm858',
  'cp858',
  'x-mac-roman',
  'mac-roman',
]);

type Decoder = InstanceType<typeof TextDecoder>;

const decoders = new Map<string, Decoder | undefined>();

/**
 * A decoder for a declared charset name, or `undefined` if the name is unknown to every decoder we have.
 * Names are matched as WHATWG labels (Node's TextDecoder, which covers the charsets mail uses), then the
 * extra IANA names above. Cached: the set of names is small and repeated.
 */
export function decoderFor(charset: string): Decoder | undefined {
  const name = normaliseCharset(charset);
  if (decoders.has(name)) return decoders.get(name);
  let decoder: Decoder | undefined;
  try {
    decoder = new TextDecoder(name, { fatal: true });
  } catch {
    decoder = KNOWN_UNDECODABLE.has(name) ? new TextDecoder('windows-1252', { fatal: true }) : undefined;
  }
  if (decoders.size < 256) decoders.set(name, decoder);
  return decoder;
}

/** `"UTF-8"`, `utf-8*en` (RFC 2231 language) → `utf-8`. */
export function normaliseCharset(charset: string): string {
  return charset
    .trim()
    .replace(/^["']|["']$/g, '')
    .replace(/\*.*$/, '')
    .toLowerCase();
}

/** A decoded header value, with what its decoding found wrong. */
export interface DecodedValue {
  readonly text: string;
  /** Charsets named by encoded words that no decoder knows. */
  readonly unknownCharsets: readonly string[];
  /** Encoded words whose bytes are not valid in their charset. */
  readonly invalid: readonly string[];
}

const ENCODED_WORD = /=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=/g;
const BETWEEN_WORDS = /(\?=)[ \t]+(?==\?)/g;

function wordBytes(encoding: string, text: string): Uint8Array {
  if (encoding === 'b' || encoding === 'B') return Buffer.from(text, 'base64');
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5f) bytes.push(0x20);
    else if (c === 0x3d && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 1, i + 3))) {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(c & 0xff);
  }
  return Uint8Array.from(bytes);
}

const lenientUtf8 = new TextDecoder('utf-8');
const lenient1252 = new TextDecoder('windows-1252');

/**
 * Raw 8-bit bytes (latin1 characters) read as UTF-8 when they are UTF-8, which is what a modern mailer means
 * by them (RFC 6532). Otherwise they stay as they are, read as latin1: that is also what a value some other
 * parser already decoded looks like ("giovedì"), and the two cannot be told apart, so neither is a finding.
 */
function rawToText(value: string): string {
  // eslint-disable-next-line no-control-regex
  if (!/[\x80-\xff]/.test(value) || /[^\x00-\xff]/.test(value)) return value;
  const text = lenientUtf8.decode(Buffer.from(value, 'latin1'));
  return text.includes('\ufffd') ? value : text;
}

/** Decodes RFC 2047 encoded words (and raw UTF-8) in a header value, cut at MAX_HEADER_VALUE. */
export function decodeHeaderValue(value: string): DecodedValue {
  const unknownCharsets: string[] = [];
  const invalid: string[] = [];
  const raw = rawToText(value.slice(0, MAX_HEADER_VALUE));
  if (!raw.includes('=?')) return { text: raw, unknownCharsets, invalid };
  const text = raw
    .replace(BETWEEN_WORDS, '$1')
    .replace(ENCODED_WORD, (_word, charset: string, encoding: string, payload: string) => {
      const bytes = wordBytes(encoding, payload);
      const decoder = decoderFor(charset);
      if (!decoder) {
        if (unknownCharsets.length < 4) unknownCharsets.push(normaliseCharset(charset));
        return lenient1252.decode(bytes);
      }
      try {
        return decoder.decode(bytes);
      } catch {
        if (invalid.length < 4) invalid.push(`bytes not valid in ${normaliseCharset(charset)}`);
        return new TextDecoder(decoder.encoding).decode(bytes);
      }
    });
  return { text, unknownCharsets, invalid };
}

// ---------------------------------------------------------------------------------------------------------
// Dates (RFC 5322 §3.3, with the obsolete forms of §4.3: two-digit years, zone names, no seconds)

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const ZONES: Readonly<Record<string, number>> = {
  ut: 0,
  gmt: 0,
  z: 0,
  edt: -4 * 60,
  est: -5 * 60,
  cdt: -5 * 60,
  cst: -6 * 60,
  mdt: -6 * 60,
  mst: -7 * 60,
  pdt: -7 * 60,
  pst: -8 * 60,
};
const DATE =
  /^(?:(?:mon|tue|wed|thu|fri|sat|sun)\s*,\s*)?(\d{1,2})\s+([a-z]{3})\s+(\d{2,4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s+([+-]\d{4}|[a-z]{1,3})(?:\s*\([^()]{0,64}\))?$/i;

/** Milliseconds since the epoch of an RFC 5322 date-time, or `undefined` if it is not one. */
export function parseRfc5322Date(value: string): number | undefined {
  const match = DATE.exec(value.trim().slice(0, 200));
  if (!match) return undefined;
  const [, d, mon, y, hh, mm, ss, zone] = match;
  const month = MONTHS.indexOf((mon ?? '').toLowerCase());
  if (month < 0 || zone === undefined) return undefined;
  let year = Number(y);
  if ((y ?? '').length === 2) year += year < 50 ? 2000 : 1900;
  else if ((y ?? '').length === 3) year += 1900;
  const day = Number(d);
  const hour = Number(hh);
  const minute = Number(mm);
  const second = ss === undefined ? 0 : Number(ss);
  if (year < 1970 || day < 1 || hour > 23 || minute > 59 || second > 60) return undefined;
  if (day > new Date(Date.UTC(year, month + 1, 0)).getUTCDate()) return undefined;
  let offset: number | undefined;
  if (/^[+-]\d{4}$/.test(zone)) {
    const hours = Number(zone.slice(1, 3));
    const minutes = Number(zone.slice(3, 5));
    if (hours > 23 || minutes > 59) return undefined;
    offset = (zone.startsWith('-') ? -1 : 1) * (hours * 60 + minutes);
  } else {
    offset = ZONES[zone.toLowerCase()];
    // RFC 5322 §4.3: other military zones "SHOULD all be considered equivalent to -0000".
    if (offset === undefined && /^[a-ik-z]$/i.test(zone)) offset = 0;
  }
  if (offset === undefined) return undefined;
  return Date.UTC(year, month, day, hour, minute, Math.min(second, 59)) - offset * 60_000;
}

// ---------------------------------------------------------------------------------------------------------
// Message ids and mailboxes

const MSG_ID = /^<[^<>@\s]{1,250}@[^<>@\s]{1,250}>(?:\s*\([^()]*\))?$/;

export function isValidMessageId(value: string): boolean {
  return MSG_ID.test(value.trim());
}

export interface Mailbox {
  /** The display name, unquoted (may be ''). */
  readonly name: string;
  /** `local@domain`, as written. */
  readonly address: string;
  /** The domain, lower case. */
  readonly domain: string;
}

const ADDRESS =
  /^[^\s@<>()[\]",;:]{1,64}@((?:[\p{L}\p{N}_](?:[\p{L}\p{N}_-]{0,62}[\p{L}\p{N}_])?\.)+[\p{L}]{2,63})$/u;
const QUOTED_LOCAL = /^"[^"\\]{0,64}"@((?:[\p{L}\p{N}_-]{1,63}\.)+[\p{L}]{2,63})$/u;

function mailboxFrom(name: string, address: string): Mailbox | undefined {
  const match = ADDRESS.exec(address) ?? QUOTED_LOCAL.exec(address);
  if (!match) return undefined;
  const unquoted = name
    .trim()
    .replace(/^"(.*)"$/s, '$1')
    .replace(/\\(.)/g, '$1')
    .trim();
  return { name: unquoted, address, domain: (match[1] ?? '').toLowerCase() };
}

/** Splits an address list at the commas that are outside quotes, angle brackets and comments. */
export function splitAddressList(value: string): string[] {
  const items: string[] = [];
  let depth = 0;
  let quoted = false;
  let angle = false;
  let start = 0;
  for (let i = 0; i < value.length && items.length < 100; i++) {
    const c = value[i];
    if (c === '\\') i++;
    else if (quoted) quoted = c !== '"';
    else if (c === '"') quoted = true;
    else if (c === '(') depth++;
    else if (c === ')') depth = Math.max(0, depth - 1);
    else if (c === '<') angle = true;
    else if (c === '>') angle = false;
    else if (c === ',' && depth === 0 && !angle) {
      items.push(value.slice(start, i));
      start = i + 1;
    }
  }
  items.push(value.slice(start));
  return items.map((s) => s.trim()).filter((s) => s !== '');
}

/**
 * One mailbox (`Name <a@b>`, `"Name" <a@b>`, `a@b`, `a@b (Name)`), or `undefined` if the value is not one
 * (a group, a bare name, an address without a domain).
 */
export function parseMailbox(value: string): Mailbox | undefined {
  const text = value.trim();
  const open = text.lastIndexOf('<');
  if (open >= 0) {
    const close = text.indexOf('>', open);
    if (
      close < 0 ||
      text
        .slice(close + 1)
        .trim()
        .replace(/^\([^()]*\)$/, '') !== ''
    )
      return undefined;
    return mailboxFrom(text.slice(0, open), text.slice(open + 1, close).trim());
  }
  const comment = /^(\S+)\s*\(([^()]*)\)$/.exec(text);
  if (comment) return mailboxFrom(comment[2] ?? '', comment[1] ?? '');
  return mailboxFrom('', text);
}

/** The registrable domain (`mail.example.co.uk` → `example.co.uk`), or the name itself when it has none. */
export function registrable(host: string): string {
  const name = host.toLowerCase().replace(/\.$/, '');
  return getDomain(name, { allowPrivateDomains: false }) ?? name;
}

// ---------------------------------------------------------------------------------------------------------
// Content-Type

/** The value of a parameter (`charset`) of a structured header value, unquoted; `undefined` if absent. */
export function headerParameter(value: string, parameter: string): string | undefined {
  const re = new RegExp(`;\\s*${parameter}\\s*=\\s*("([^"]*)"|[^;\\s]*)`, 'i');
  const match = re.exec(value.slice(0, MAX_HEADER_VALUE));
  if (!match) return undefined;
  return match[2] ?? match[1] ?? '';
}
