/**
 * The Bayesian classifier's tokenizer: what of a message is evidence. Tokens are tagged by where they come from,
 * so "free" in a Subject and "free" in a body are different evidence (as SpamBayes and bogofilter do):
 *
 *   subject words      `s:word`           header facts      `h:<name>:<value>` (mailer, content type, charset)
 *   sender             `from:dom:<domain>`, `from:name:<word>`
 *   header fields      `hn:<name>` (which fields are present), `rcvd:net:<a.b.c>`, `rcvd:dom:<domain>` (the relays
 *                      of the Received trail), `mid:dom:`, `mid:shape:` (Message-ID), `to:dom:`, `rt:dom:`, `to:n:`
 *                      (recipient domains and count), `h:x-mailer:<word>`, `h:x-priority:1`, `h:charset:<name>`
 *   body words         `word` (3..24 letters or digits, lower case); longer runs as `skip:<first>:<len/10>`
 *   word pairs         `word1~word2` (adjacent body words: phrases carry more than words)
 *   URLs               `url:<host>`, `url:<registered part>`, `url:path:<first segment>`
 *   attachments        `att:type:<content type>`, `att:ext:<extension>`
 *
 * HTML bodies are read as text (tags, scripts and styles dropped, common entities decoded); when a message has
 * both, the text part is used and the HTML adds only its URLs. Work is bounded: at most `maxWords` words are
 * read and at most `maxTokens` distinct tokens kept, so 100 000 words or 10 000 URLs cost a bounded amount.
 */
import type { MessageFacts } from '../content.js';

export interface TokenizeLimits {
  readonly maxWords: number;
  readonly maxTokens: number;
}

export const DEFAULT_TOKENIZE_LIMITS: TokenizeLimits = { maxWords: 20_000, maxTokens: 3_000 };

const WORD = /[\p{L}\p{N}][\p{L}\p{N}'’$€%-]*/gu;
const URL = /\bhttps?:\/\/([^\s/?#"'<>]+)(\/[^\s?#"'<>]*)?/gi;
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
      if (++seen > maxUrls || this.full) return;
      const host = (match[1] ?? '')
        .toLowerCase()
        .replace(/^[^@]*@/, '')
        .replace(/:\d+$/, '');
      if (host === '') continue;
      this.add(`url:${host}`);
      this.add(`url:${registeredPart(host)}`);
      const segment = (match[2] ?? '').split('/')[1];
      if (segment) this.add(`url:path:${segment.toLowerCase().slice(0, 24)}`);
    }
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
const IPV4 = /(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.\d{1,3}(?![\d.])/g;
const HOST = /\b((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24})\b/gi;
const ADDRESS_DOMAIN = /@([a-z0-9.-]{1,253})/gi;

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
  for (const field of fields) c.add(`hn:${field.name.toLowerCase().slice(0, 40)}`);
  let hops = 0;
  for (const field of fields) {
    if (field.name.toLowerCase() !== 'received' || ++hops > MAX_RECEIVED) continue;
    const value = field.value.slice(0, 500);
    const by = value.search(/\sby\s/i);
    const from = by >= 0 ? value.slice(0, by) : value;
    for (const ip of from.matchAll(IPV4)) c.add(`rcvd:net:${ip[1]}.${ip[2]}.${ip[3]}`);
    for (const host of from.matchAll(HOST))
      c.add(`rcvd:dom:${registeredPart((host[1] ?? '').toLowerCase())}`);
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
  const charset = /charset\s*=\s*"?([^";\s]{1,40})/i.exec(header(message, 'content-type') ?? '')?.[1];
  if (charset) c.add(`h:charset:${charset.toLowerCase()}`);
}

export function tokenize(message: MessageFacts, limits: TokenizeLimits = DEFAULT_TOKENIZE_LIMITS): string[] {
  const c = new Collector(limits);
  c.text(header(message, 'subject') ?? '', 's:', false);
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
  if (text !== undefined) c.text(text);
  else if (html !== undefined) c.text(htmlText(html));
  c.urls(`${text ?? ''}\n${html ?? ''}`, 200);

  for (const part of message.parts) {
    if (part.path === 'text' || part.path === 'html') continue;
    c.add(`att:type:${part.contentType}`);
    const ext = part.filename ? /\.([a-z0-9]{1,8})$/i.exec(part.filename)?.[1] : undefined;
    if (ext) c.add(`att:ext:${ext.toLowerCase()}`);
  }
  return [...c.tokens];
}
