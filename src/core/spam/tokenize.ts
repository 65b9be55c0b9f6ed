/**
 * The Bayesian classifier's tokenizer: what of a message is evidence. Tokens are tagged by where they come from,
 * so "free" in a Subject and "free" in a body are different evidence (as SpamBayes and bogofilter do):
 *
 *   subject words      `s:word`           header facts      `h:<name>:<value>` (mailer, content type, charset)
 *   sender             `from:dom:<domain>`, `from:name:<word>`
 *   header fields      `rcvd:net:<a.b.c>`, `rcvd:dom:<domain>` (the relays of the Received trail), `rcvd:w:<word>`
 *                      (every word of its fields: hosts, software and versions, as SpamBayes mines them),
 *                      `mid:dom:`, `mid:shape:` (Message-ID), `to:dom:`, `rt:dom:`, `to:n:`
 *                      (recipient domains and count), `h:x-mailer:<word>`, `h:x-priority:1`, `h:charset:<name>`
 *                      `rcvd:with:<protocol>`, `rcvd:unknown`, `rcvd:helo` (how each relay received it),
 *                      `hw:<field>:<word>` (words of the mailer and organization fields), `from:shape:`,
 *                      `from:local:` (the shape of the sender's address), `addr:<field>:<address>` and
 *                      `adom:<field>:<domain>` (the addresses of From, Reply-To, Return-Path, Sender, Errors-To)
 *   subject shape      `s:upper:<word>` (words in capitals), `s:bang:<n>`, `s:money`, `s:len:<log2>`, `s:spaces`,
 *                      `s:tailid` (a random-looking tag at the end, as bulk senders append)
 *   body words         `word` (3..24 letters or digits, lower case); longer runs as `skip:<first>:<len/10>`;
 *                      of a message with both a text and an HTML part, the words of both
 *   word pairs         `word1~word2` (adjacent body words: phrases carry more than words)
 *   body shape         `body:money`, `body:lines:<log2>`, `body:upper:<tenths>`, `body:quote`/`body:noquote`,
 *                      `body:capsrun` (three or more words in capitals in a row)
 *   link text          `a:<word>` (the words of an HTML link's text: "click here", "unsubscribe", "order")
 *   URLs               `url:<host>`, `url:<registered part>`, `url:path:<first segment>`, `url:w:<path word>`,
 *                      `url:scheme:`, `url:ip`, `url:port`, `url:userinfo`, `url:pctenc`, `url:query`, `url:n:<log2>`
 *   MIME structure     `part:<content type>` (every part), `boundary:<shape>`, `cte:<encoding>` (top level)
 *   attachments        `att:type:<content type>`, `att:ext:<extension>`
 *
 * HTML bodies are read as text (tags, scripts and styles dropped, common entities decoded); when a message has
 * both, the word pairs and body shape come from the text part and the HTML adds its words and URLs (spam's HTML
 * alternative often says more than its text one). HTML tag and attribute names are not tokens: on the
 * SpamAssassin corpus they made the HTML newsletters of the hard ham look like spam (bench/spam.ts). Which
 * header fields are present is not a token either: by cross-validation there (bench/README.md) it cost recall.
 * "Shapes" replace runs of digits by 9 and of letters by a, so a mailer's habit is one token, not one per message. Work is bounded: at most `maxWords` words are
 * read and at most `maxTokens` distinct tokens kept, so 100 000 words or 10 000 URLs cost a bounded amount.
 */
import type { MessageFacts } from '../content.js';

export interface TokenizeLimits {
  readonly maxWords: number;
  readonly maxTokens: number;
}

export const DEFAULT_TOKENIZE_LIMITS: TokenizeLimits = { maxWords: 20_000, maxTokens: 3_000 };

const WORD = /[\p{L}\p{N}][\p{L}\p{N}'’$€%-]*/gu;
const URL = /\b(https?|ftp|mailto):(?:\/\/)?([^\s/?#"'<>]*)([^\s"'<>]*)/gi;
const MIN_WORD = 3;
const MAX_WORD = 24;

const ENTITIES: Readonly<Record<string, string>> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: ' ',
};

/** HTML read as text: enough for evidence, not a renderer. */
export function htmlText(html: string): string {
  return html
    .replace(/<(script|style)\b[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(/<!--[\s\S]*?-->/g, ' ')
    .replace(/<[^>]{0,2000}>/g, ' ')
    .replace(/&(#x[0-9a-f]{1,6}|#\d{1,7}|[a-z]{2,8});/gi, (entity, name: string) => {
      if (name.startsWith('#x') || name.startsWith('#X'))
        return String.fromCodePoint(parseInt(name.slice(2), 16) % 0x110000);
      if (name.startsWith('#')) return String.fromCodePoint(Number(name.slice(1)) % 0x110000);
      return ENTITIES[name.toLowerCase()] ?? entity;
    });
}

function header(message: MessageFacts, name: string): string | undefined {
  const lower = name.toLowerCase();
  return message.headers.find((h) => h.name.toLowerCase() === lower)?.value;
}

/** `mail.example.co.uk` → `example.co.uk`, `a.b.example.com` → `example.com` (a heuristic, not the PSL). */
function registeredPart(host: string): string {
  const labels = host.split('.');
  const tld2 = labels.length >= 3 && (labels.at(-2)?.length ?? 0) <= 3 && (labels.at(-1)?.length ?? 0) === 2;
  return labels.slice(tld2 ? -3 : -2).join('.');
}

/** 0 for 0, else 1 + ⌊log2 n⌋: counts as a handful of buckets. */
function log2Bucket(n: number): number {
  return n <= 0 ? 0 : Math.floor(Math.log2(n)) + 1;
}

class Collector {
  readonly tokens = new Set<string>();
  words = 0;

  constructor(private readonly limits: TokenizeLimits) {}

  get full(): boolean {
    return this.tokens.size >= this.limits.maxTokens;
  }

  add(token: string): void {
    if (!this.full) this.tokens.add(token);
  }

  /** Body or subject words with their adjacent pairs; `prefix` tags where they come from. */
  text(text: string, prefix = '', pairs = true): void {
    let previous: string | undefined;
    for (const match of text.matchAll(WORD)) {
      if (this.words >= this.limits.maxWords || this.full) return;
      this.words += 1;
      const word = match[0].toLowerCase().replace(/['’-]+$/, '');
      if (word.length < MIN_WORD) {
        previous = undefined;
        continue;
      }
      if (word.length > MAX_WORD) {
        this.add(`${prefix}skip:${word[0] ?? ''}:${Math.floor(word.length / 10)}`);
        previous = undefined;
        continue;
      }
      this.add(`${prefix}${word}`);
      if (pairs && previous !== undefined) this.add(`${prefix}${previous}~${word}`);
      previous = word;
    }
  }

  urls(text: string, maxUrls: number): void {
    let seen = 0;
    for (const match of text.matchAll(URL)) {
      if (++seen > maxUrls || this.full) break;
      const authority = (match[2] ?? '').toLowerCase();
      const rest = match[3] ?? '';
      this.add(`url:scheme:${(match[1] ?? '').toLowerCase()}`);
      if (authority.includes('@')) this.add('url:userinfo');
      if (/:\d+$/.test(authority)) this.add('url:port');
      if (rest.includes('?')) this.add('url:query');
      if (/%[0-9a-f]{2}/i.test(rest)) this.add('url:pctenc');
      for (const word of rest.split(/[/?&=.#]/).slice(0, 10))
        if (word.length >= 3 && word.length <= 20) this.add(`url:w:${word.toLowerCase()}`);
      if (/^mailto$/i.test(match[1] ?? '')) continue;
      const host = authority.replace(/^[^@]*@/, '').replace(/:\d+$/, '');
      if (host === '') continue;
      if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) this.add('url:ip');
      this.add(`url:${host}`);
      this.add(`url:${registeredPart(host)}`);
      const segment = rest.split(/[?#]/)[0]?.split('/')[1];
      if (segment) this.add(`url:path:${segment.toLowerCase().slice(0, 24)}`);
    }
    this.add(`url:n:${log2Bucket(Math.min(seen, maxUrls))}`);
  }
}

const MAX_HEADERS = 100;
const MAX_RECEIVED = 8;
/** Fields whose first word is a mailer's habit (priority flags, bulk markers, encodings). */
const HABIT_FIELDS = [
  'x-priority',
  'x-msmail-priority',
  'importance',
  'precedence',
  'x-mimeole',
  'content-transfer-encoding',
  'mime-version',
];
/** Fields whose words name the software or the organization that sent the message. */
const WORD_FIELDS = ['x-mailer', 'user-agent', 'x-mimeole', 'organization', 'x-originating-ip'];
const IPV4 = /(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.\d{1,3}(?![\d.])/g;
const HOST = /\b((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24})\b/gi;
const ADDRESS_DOMAIN = /@([a-z0-9.-]{1,253})/gi;
const RECEIVED_WORD = /[a-z0-9.-]{3,40}/g;
const ADDRESS = /([^\s<@"]{1,64})@([^\s>"]{1,253})/;
/** Fields whose address is evidence whole (a bulk sender's bounce address) and by its domain. */
const ADDRESS_FIELDS = ['from', 'reply-to', 'return-path', 'sender', 'errors-to'];

/** The shape of a Message-ID's left part: runs of digits as 9, of letters as a (mailers have fixed forms). */
function idShape(left: string): string {
  return left
    .slice(0, 64)
    .replace(/[0-9]+/g, '9')
    .replace(/[a-z]+/gi, 'a')
    .slice(0, 24);
}

/**
 * Header evidence beyond Subject and From (as SpamBayes and SpamAssassin's Bayes read headers): which fields
 * are present, the relays and networks of the Received trail, the Message-ID's domain and shape, the domains
 * of To, Cc and Reply-To, the mailer's words and habits.
 */
function headerTokens(message: MessageFacts, c: Collector): void {
  const fields = message.headers.slice(0, MAX_HEADERS);
  let hops = 0;
  for (const field of fields) {
    if (field.name.toLowerCase() !== 'received' || ++hops > MAX_RECEIVED) continue;
    const value = field.value.slice(0, 500);
    const protocol = /\swith\s+([a-z0-9/-]{1,30})/i.exec(value)?.[1];
    if (protocol) c.add(`rcvd:with:${protocol.toLowerCase()}`);
    if (/unknown/i.test(value)) c.add('rcvd:unknown');
    if (/\bhelo\b/i.test(value)) c.add('rcvd:helo');
    const by = value.search(/\sby\s/i);
    const from = by >= 0 ? value.slice(0, by) : value;
    for (const ip of from.matchAll(IPV4)) c.add(`rcvd:net:${ip[1]}.${ip[2]}.${ip[3]}`);
    for (const host of from.matchAll(HOST))
      c.add(`rcvd:dom:${registeredPart((host[1] ?? '').toLowerCase())}`);
    for (const word of value.slice(0, 300).toLowerCase().match(RECEIVED_WORD) ?? []) c.add(`rcvd:w:${word}`);
  }
  const id = header(message, 'message-id') ?? '';
  const at = id.lastIndexOf('@');
  if (at > 0) {
    c.add(
      `mid:dom:${registeredPart(
        id
          .slice(at + 1)
          .replace(/>.*$/, '')
          .toLowerCase()
          .slice(0, 100),
      )}`,
    );
    c.add(`mid:shape:${idShape(id.slice(0, at).replace(/^\s*</, ''))}`);
  } else c.add(id === '' ? 'mid:none' : 'mid:odd');
  for (const [name, tag] of [
    ['to', 'to'],
    ['cc', 'to'],
    ['reply-to', 'rt'],
  ] as const) {
    let n = 0;
    for (const match of (header(message, name) ?? '').slice(0, 2000).matchAll(ADDRESS_DOMAIN)) {
      if (++n > 10) break;
      c.add(`${tag}:dom:${registeredPart((match[1] ?? '').toLowerCase())}`);
    }
    if (tag === 'to') c.add(`${name}:n:${Math.min(n, 10)}`);
  }
  for (const name of ['x-mailer', 'user-agent']) {
    const value = header(message, name);
    if (value) c.text(value.slice(0, 200), `h:${name}:`, false);
  }
  for (const name of HABIT_FIELDS) {
    const value = header(message, name);
    if (value)
      c.add(
        `h:${name}:${
          value
            .toLowerCase()
            .trim()
            .split(/[\s;(]/)[0]
            ?.slice(0, 32) ?? ''
        }`,
      );
  }
  const contentType = header(message, 'content-type') ?? '';
  const charset = /charset\s*=\s*"?([^";\s]{1,40})/i.exec(contentType)?.[1];
  if (charset) c.add(`h:charset:${charset.toLowerCase()}`);
  const boundary = /boundary\s*=\s*"?([^";\s]{1,100})/i.exec(contentType)?.[1];
  if (boundary) c.add(`boundary:${idShape(boundary)}`);
  for (const field of fields)
    if (field.name.toLowerCase() === 'content-transfer-encoding')
      c.add(`cte:${field.value.trim().toLowerCase().slice(0, 20)}`);
  for (const name of WORD_FIELDS) {
    const value = header(message, name);
    for (const word of value
      ?.slice(0, 200)
      .toLowerCase()
      .match(/[a-z0-9.]{2,24}/g) ?? [])
      c.add(`hw:${name}:${word}`);
  }
  const from = header(message, 'from') ?? '';
  c.add(
    `from:shape:${/^\s*"?[^"<]*"?\s*<[^>]+>\s*$/.test(from) ? 'named' : from.includes('<') ? 'odd' : 'bare'}`,
  );
  const local = /([^\s<@]{1,64})@/.exec(from)?.[1];
  if (local) c.add(`from:local:${idShape(local).slice(0, 12)}`);
  for (const name of ADDRESS_FIELDS) {
    const address = ADDRESS.exec(header(message, name)?.slice(0, 500) ?? '');
    if (!address) continue;
    const domain = (address[2] ?? '').toLowerCase();
    c.add(`addr:${name}:${(address[1] ?? '').toLowerCase()}@${domain}`);
    c.add(`adom:${name}:${domain}`);
  }
}

/** Subject shape: words in capitals, exclamation marks, money, length, runs of spaces, a trailing random tag. */
function subjectTokens(subject: string, c: Collector): void {
  const s = subject.slice(0, 500);
  for (const word of s.match(/\b[A-Z]{3,24}\b/g) ?? []) c.add(`s:upper:${word.toLowerCase()}`);
  const bangs = (s.match(/!/g) ?? []).length;
  if (bangs > 0) c.add(`s:bang:${Math.min(bangs, 3)}`);
  if (/\$\d/.test(s)) c.add('s:money');
  c.add(`s:len:${log2Bucket(s.length)}`);
  if (/\s{3,}/.test(s)) c.add('s:spaces');
  if (/\s[a-z0-9]{5,8}$/.test(s) && /\d/.test(s.slice(-8))) c.add('s:tailid');
}

const BODY_SHAPE_CHARS = 100_000;

/** Body shape: money amounts, length in lines, the share of capitals, quoting, runs of words in capitals. */
function bodyShapeTokens(body: string, c: Collector): void {
  const b = body.slice(0, BODY_SHAPE_CHARS);
  if (/\$\s?\d/.test(b)) c.add('body:money');
  const lines = b.split('\n');
  c.add(`body:lines:${log2Bucket(lines.length)}`);
  const letters = (b.match(/\p{L}/gu) ?? []).length;
  const upper = (b.match(/\p{Lu}/gu) ?? []).length;
  if (letters > 0) c.add(`body:upper:${Math.floor((10 * upper) / letters)}`);
  c.add(lines.some((l) => /^\s*>/.test(l)) ? 'body:quote' : 'body:noquote');
  if (/\b[A-Z]{3,}(?:\s+[A-Z]{3,}){2,}\b/.test(b)) c.add('body:capsrun');
}

const LINK = /<a\b[^>]{0,500}>([\s\S]{0,300}?)<\/a\s*>/gi;
const LINK_HTML_CHARS = 100_000;

/** The words of each link's text, tagged: what a link asks the reader to do says more than the page around it. */
function linkTextTokens(html: string, c: Collector): void {
  for (const match of html.slice(0, LINK_HTML_CHARS).matchAll(LINK)) {
    if (c.full) return;
    c.text(htmlText(match[1] ?? ''), 'a:', false);
  }
}

export function tokenize(message: MessageFacts, limits: TokenizeLimits = DEFAULT_TOKENIZE_LIMITS): string[] {
  const c = new Collector(limits);
  c.text(header(message, 'subject') ?? '', 's:', false);
  subjectTokens(header(message, 'subject') ?? '', c);
  const from = header(message, 'from') ?? '';
  const domain = /@([^\s>]+)/.exec(from)?.[1]?.toLowerCase();
  if (domain) c.add(`from:dom:${domain}`);
  for (const word of from
    .replace(/<[^>]*>/, '')
    .toLowerCase()
    .match(/[\p{L}]{3,24}/gu) ?? [])
    c.add(`from:name:${word}`);
  for (const name of ['x-mailer', 'user-agent', 'content-type']) {
    const value = header(message, name);
    if (value) c.add(`h:${name}:${value.toLowerCase().split(/[;/ ]/)[0]?.slice(0, 32) ?? ''}`);
  }
  c.add(
    `h:received:${Math.min(message.headers.filter((h) => h.name.toLowerCase() === 'received').length, 10)}`,
  );
  headerTokens(message, c);

  const text = message.parts.find((p) => p.contentType === 'text/plain' && p.text !== undefined)?.text;
  const html = message.parts.find((p) => p.contentType === 'text/html' && p.text !== undefined)?.text;
  const body = text ?? (html !== undefined ? htmlText(html) : undefined);
  if (body !== undefined) {
    c.text(body);
    bodyShapeTokens(body, c);
  }
  if (text !== undefined && html !== undefined) c.text(htmlText(html), '', false);
  if (html !== undefined) linkTextTokens(html, c);
  c.urls(`${text ?? ''}\n${html ?? ''}`, 200);

  for (const part of message.parts) {
    c.add(`part:${part.contentType}`);
    if (part.path === 'text' || part.path === 'html') continue;
    c.add(`att:type:${part.contentType}`);
    const ext = part.filename ? /\.([a-z0-9]{1,8})$/i.exec(part.filename)?.[1] : undefined;
    if (ext) c.add(`att:ext:${ext.toLowerCase()}`);
  }
  return [...c.tokens];
}
