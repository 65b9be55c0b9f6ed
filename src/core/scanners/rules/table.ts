/**
 * The built-in content rules, as data: symbol, what the rule reads, default weight, one line of description,
 * and the test (a pure function of the analysed message). The scanner (../rules.ts) compiles this table once
 * with the admin's weights and lists, and reports every rule that fires with its reason.
 *
 * Weights follow SpamAssassin's and rspamd's magnitudes for the same findings, kept modest: a single
 * header oddity is worth 0.5–1.5 (ordinary mail has one now and then: a missing Message-ID from a script,
 * a Reply-To at a helpdesk), findings that ordinary mail almost never shows (hidden text, a link whose text
 * names another site, an obfuscated URL, a lure-named archive) 1.5–2, and phrases scale with how many are
 * found, up to their weight. Alone, no rule reaches the tag score (filter.spam.tag_at, 5); it takes several
 * findings together, which is what spam shows and ham does not. Mailing lists (List-Id) are spared the
 * From/Reply-To rules: lists rewrite those headers by design.
 */
import type { MessageView } from './analyse.js';
import {
  decoderFor,
  headerParameter,
  isValidMessageId,
  parseMailbox,
  parseRfc5322Date,
  registrable,
  splitAddressList,
} from './headers.js';
import { foldedWords, foldText } from './phrases.js';
import { clipUrl, hostIn, splitUrl } from './urls.js';

/** What a rule reads: the header fields, the text of the bodies, the HTML markup, the URLs, the attachments. */
export type RuleInput = 'headers' | 'text' | 'html' | 'urls' | 'attachments' | 'scan';

export interface RuleHit {
  /** What matched, for the log: short, no full content. */
  readonly reason: string;
  /** Share of the weight earned (phrase counts); 1 when absent. */
  readonly factor?: number;
}

export interface RuleLists {
  readonly shorteners: ReadonlySet<string>;
  readonly redirectors: ReadonlySet<string>;
  readonly freemail: ReadonlySet<string>;
  /** Distinct phrases at which a phrase rule earns its whole weight. */
  readonly phrasesForFullWeight: number;
}

export interface BuiltinRule {
  readonly symbol: string;
  readonly reads: RuleInput;
  readonly weight: number;
  readonly description: string;
  readonly test: (view: MessageView, lists: RuleLists) => RuleHit | undefined;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Dates further ahead than this are in the future (clock skew of a few hours is common). */
export const FUTURE_MS = 12 * HOUR;
/** Dates older than this are stale: Postfix gives up on a message after 5 days in its queue. */
export const PAST_MS = 7 * DAY;

/** A value quoted for a reason: printable, short. */
export function quote(text: string, max = 50): string {
  return `"${clipUrl(text.replace(/\s+/g, ' ').trim(), max)}"`;
}

function firstDate(view: MessageView): number | undefined {
  const dates = view.field('date');
  return dates.length === 1 ? parseRfc5322Date(dates[0] ?? '') : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Received

const DOTTED = /(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\d.])/g;
const MAX_RECEIVED = 50;

/** An address no host sends from: octets past 255, 0.0.0.0/8, multicast, reserved, broadcast. */
function illegalIp(match: RegExpMatchArray): boolean {
  const octets = match.slice(1, 5).map(Number);
  return octets.some((o) => o > 255) || octets[0] === 0 || (octets[0] ?? 0) >= 224;
}

function forgedReceived(view: MessageView): string | undefined {
  const fields = view.field('received').slice(0, MAX_RECEIVED);
  const dates: (number | undefined)[] = [];
  for (const [i, value] of fields.entries()) {
    const semi = value.lastIndexOf(';');
    const clause = semi >= 0 ? value.slice(0, semi) : value;
    const by = clause.search(/\sby\s/i);
    const fromPart = by >= 0 ? clause.slice(0, by) : clause;
    for (const match of fromPart.matchAll(DOTTED)) {
      if (illegalIp(match)) return `Received #${i + 1} names an impossible address ${match[0]}`;
    }
    dates.push(semi >= 0 ? parseRfc5322Date(value.slice(semi + 1)) : undefined);
  }
  for (let i = 0; i + 1 < dates.length; i++) {
    const newer = dates[i];
    const older = dates[i + 1];
    if (newer !== undefined && older !== undefined && older - newer > DAY)
      return `Received #${i + 2} is dated ${Math.round((older - newer) / HOUR)} hours after the hop above it`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Text

/** A greeting to whoever is on a bought list, at the start of a line (quoted lines too: forwarded spam). */
const GREETING =
  /^[\s>]*dear\s+(?:sir\s*(?:or|\/)\s*madam|sir|madam|friends?|members?|valued\s+\p{L}+|customers?|users?|account\s+holders?|beneficiary|recipient|(?:e-?mail|internet|web)\s+users?)\b/imu;
/** A greeting is near the top: the first characters of the body are enough. */
const GREETING_CHARS = 5000;

// ---------------------------------------------------------------------------------------------------------
// Addresses

const ADDRESS_IN_NAME = /[^\s@<>"'()]{1,64}@((?:[\p{L}\p{N}-]{1,63}\.)+[\p{L}]{2,63})/u;

function replyToDomains(view: MessageView): string[] {
  const domains: string[] = [];
  for (const value of view.field('reply-to').slice(0, 4)) {
    for (const item of splitAddressList(value).slice(0, 10)) {
      const mailbox = parseMailbox(item);
      if (mailbox) domains.push(mailbox.domain);
    }
  }
  return domains;
}

// ---------------------------------------------------------------------------------------------------------
// Text

/** Letters with case in `text`, and how many of them are capitals. */
function capitals(text: string): { cased: number; upper: number } {
  let cased = 0;
  let upper = 0;
  for (const char of text) {
    const lower = char.toLowerCase();
    const up = char.toUpperCase();
    if (lower === up) continue;
    cased++;
    if (char === up) upper++;
  }
  return { cased, upper };
}

/** Words of three or more letters that have case (CJK and Arabic have none), and those all in capitals. */
const CASED_WORD = /(?<!\p{L})(?=\p{L}{3})\p{L}*[\p{Lu}\p{Ll}\p{Lt}]\p{L}*/gu;
const SHOUTED_WORD = /(?<!\p{L})(?=\p{L}{3})\p{Lu}+(?!\p{L})/gu;

function shoutedWords(text: string): { words: number; shouted: number } {
  return { words: text.match(CASED_WORD)?.length ?? 0, shouted: text.match(SHOUTED_WORD)?.length ?? 0 };
}

function countOf(text: string, char: string): number {
  let n = 0;
  for (let at = text.indexOf(char); at >= 0; at = text.indexOf(char, at + 1)) n++;
  return n;
}

// ---------------------------------------------------------------------------------------------------------
// Links

/** Anchor text that names a site: a URL with a scheme, a `www.` name, or a whole text that is a host name. */
const TEXT_URL = /(?:https?:\/\/|\bwww\.)[^\s<>"'/?#]{3,253}/i;
const TEXT_HOST = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,24})\/?$/i;
/** Suffixes that are also file extensions people write as link text (`README.md`, `setup.py`). */
const FILE_LIKE = new Set([
  'md',
  'py',
  'sh',
  'pl',
  'rs',
  'zip',
  'mov',
  'ps',
  'doc',
  'pdf',
  'txt',
  'js',
  'ts',
]);

function claimedHost(text: string): string | undefined {
  const trimmed = text.trim();
  const url = TEXT_URL.exec(trimmed);
  if (url) return splitUrl(url[0])?.host;
  const host = TEXT_HOST.exec(trimmed);
  if (host && !FILE_LIKE.has((host[1] ?? '').toLowerCase())) return trimmed.replace(/\/$/, '').toLowerCase();
  return undefined;
}

function textMismatch(view: MessageView, lists: RuleLists): string | undefined {
  let first: string | undefined;
  let count = 0;
  const bulk = view.field('list-unsubscribe').length > 0;
  for (const anchor of view.html?.anchors ?? []) {
    const target = splitUrl(anchor.href);
    if (!target || target.host === '') continue;
    const shown = claimedHost(anchor.text);
    if (shown === undefined) continue;
    const shownDomain = registrable(shown);
    const targetDomain = registrable(target.host);
    if (shownDomain === targetDomain) continue;
    // Click tracking: a known mailing service's redirector, or a bulk sender's own (bulk senders carry
    // List-Unsubscribe: Gmail and Yahoo require it since 2024). A phisher linking to his own domain does not.
    if (hostIn(target.host, lists.redirectors) !== undefined || (bulk && targetDomain === view.fromDomain))
      continue;
    count++;
    first ??= `link text shows ${clipUrl(shownDomain, 40)} but goes to ${clipUrl(targetDomain, 40)}`;
  }
  return first === undefined ? undefined : count > 1 ? `${first} (and ${count - 1} more)` : first;
}

// ---------------------------------------------------------------------------------------------------------
// Attachments

// prettier-ignore
/**
 * Names of documents that lure: invoices, payments, shipments, scans (en, it, de, fr, es). Matched inside
 * words. Not "document": colleagues zip "documenti" every day.
 */
const LURE_STEMS = [
  'invoice', 'receipt', 'payment', 'remittance', 'statement', 'quotation', 'shipping', 'shipment', 'delivery',
  'scanned', 'voicemail', 'transfer', 'contract', 'payroll', 'overdue', 'fattura', 'fatture',
  'ricevuta', 'pagamento', 'bonifico', 'preventivo', 'spedizione', 'contratto', 'sollecito',
  'scansione', 'rechnung', 'zahlung', 'bestellung', 'lieferung', 'mahnung', 'facture', 'paiement',
  'commande', 'virement', 'factura', 'presupuesto', 'transferencia',
];
// prettier-ignore
/** Short lure words, matched as whole words only. */
const LURE_WORDS = new Set([
  'dhl', 'fedex', 'ups', 'tnt', 'fax', 'scan', 'swift', 'wire', 'bank', 'order', 'quote', 'rfq', 'po',
  'pago', 'pedido', 'devis', 'ordine', 'avviso', 'salary', 'inv',
]);
// prettier-ignore
/** Containers that hide their contents from a glance, and pages that open in a browser (credential phishing). */
const RISKY_EXTENSIONS = new Set([
  'zip', 'rar', '7z', 'gz', 'tgz', 'tar', 'bz2', 'xz', 'arj', 'ace', 'cab', 'lzh', 'lha', 'z', 'uue', 'uu',
  'r00', 'iso', 'img', 'vhd', 'html', 'htm', 'shtml', 'xhtml', 'svg', 'mht', 'mhtml', 'one', 'docm', 'xlsm',
  'pptm', 'xlam', 'dotm',
]);
const MAX_NAME = 120;
// eslint-disable-next-line no-control-regex
const INVISIBLE = /[\u0000-\u001f\u007f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/;
const PADDING = /[\s_]{5,}|\.{4,}/;

function lure(name: string): string | undefined {
  const folded = foldText(name);
  const stem = LURE_STEMS.find((s) => folded.includes(s));
  if (stem !== undefined) return stem;
  return foldedWords(folded, 50).find((w) => LURE_WORDS.has(w));
}

function extensionOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot < 0
    ? ''
    : name
        .slice(dot + 1)
        .trim()
        .toLowerCase();
}

// ---------------------------------------------------------------------------------------------------------
// The table

/** A phrase rule for one language: the weight scaled by distinct phrases found, full at `phrasesForFullWeight`. */
export function phraseRule(language: string, weight: number, description?: string): BuiltinRule {
  return {
    symbol: `SPAM_PHRASE_${language.toUpperCase()}`,
    reads: 'text',
    weight,
    description:
      description ?? `Spam phrases (${language}): weight × phrases found / phrases_for_full_weight, capped`,
    test(view, lists) {
      const found = view.phrases.get(language);
      if (!found || found.size === 0) return undefined;
      const list = [...found];
      const shown = list.slice(0, 3).map((p) => quote(p, 40));
      return {
        reason: `${list.length} phrase${list.length > 1 ? 's' : ''}: ${shown.join(', ')}${list.length > 3 ? ', …' : ''}`,
        factor: Math.min(list.length, lists.phrasesForFullWeight) / lists.phrasesForFullWeight,
      };
    },
  };
}

export const PHRASE_WEIGHT = 2;

export const BUILTIN_RULES: readonly BuiltinRule[] = [
  {
    symbol: 'DATE_MISSING',
    reads: 'headers',
    weight: 1,
    description: 'No Date header (RFC 5322 requires one; mailers always write it)',
    test: (view) => (view.field('date').length === 0 ? { reason: 'no Date header' } : undefined),
  },
  {
    symbol: 'DATE_MALFORMED',
    reads: 'headers',
    weight: 1,
    description: 'Date is not an RFC 5322 date, or there are several',
    test(view) {
      const dates = view.field('date');
      if (dates.length > 1) return { reason: `${dates.length} Date headers` };
      const date = dates[0];
      if (date === undefined || parseRfc5322Date(date) !== undefined) return undefined;
      return { reason: `Date ${quote(date)} is not an RFC 5322 date` };
    },
  },
  {
    symbol: 'DATE_FUTURE',
    reads: 'headers',
    weight: 1.5,
    description: 'Date more than 12 hours ahead (kept on top of the inbox)',
    test(view) {
      const date = firstDate(view);
      if (date === undefined || date - view.now <= FUTURE_MS) return undefined;
      return { reason: `Date is ${Math.round((date - view.now) / HOUR)} hours in the future` };
    },
  },
  {
    symbol: 'DATE_PAST',
    reads: 'headers',
    weight: 1,
    description: 'Date more than 7 days old (a stale template, or a message replayed)',
    test(view) {
      const date = firstDate(view);
      if (date === undefined || view.now - date <= PAST_MS) return undefined;
      return { reason: `Date is ${Math.round((view.now - date) / DAY)} days old` };
    },
  },
  {
    symbol: 'MSGID_MISSING',
    reads: 'headers',
    weight: 1,
    description: 'No Message-ID header (every real mailer writes one)',
    test: (view) => (view.field('message-id').length === 0 ? { reason: 'no Message-ID header' } : undefined),
  },
  {
    symbol: 'MSGID_MALFORMED',
    reads: 'headers',
    weight: 1,
    description: 'Message-ID is not <left@right>, or there are several',
    test(view) {
      const ids = view.field('message-id');
      if (ids.length > 1) return { reason: `${ids.length} Message-ID headers` };
      const id = ids[0];
      if (id === undefined || isValidMessageId(id)) return undefined;
      return { reason: `Message-ID ${quote(id)} is not <left@right>` };
    },
  },
  {
    symbol: 'FROM_MISSING',
    reads: 'headers',
    weight: 1.5,
    description: 'No From header (RFC 5322 requires one)',
    test: (view) => (view.field('from').length === 0 ? { reason: 'no From header' } : undefined),
  },
  {
    symbol: 'FROM_MALFORMED',
    reads: 'headers',
    weight: 1.5,
    description: 'From holds no single valid address (or there are several From headers)',
    test(view) {
      const froms = view.field('from');
      if (froms.length > 1) return { reason: `${froms.length} From headers` };
      if (!view.from || view.fromMailbox) return undefined;
      return { reason: `From ${quote(view.from.text)} holds no single valid address` };
    },
  },
  {
    symbol: 'FROM_NAME_SPOOF',
    reads: 'headers',
    weight: 2,
    description: 'From display name shows an address at another domain than the real one',
    test(view) {
      const mailbox = view.fromMailbox;
      if (view.viaList || !mailbox || view.fromDomain === undefined) return undefined;
      const shown = ADDRESS_IN_NAME.exec(mailbox.name);
      if (!shown) return undefined;
      const shownDomain = registrable(shown[1] ?? '');
      if (shownDomain === view.fromDomain) return undefined;
      return { reason: `display name shows ${clipUrl(shown[0], 50)}, address is at ${view.fromDomain}` };
    },
  },
  {
    symbol: 'REPLYTO_DIFFERS',
    reads: 'headers',
    weight: 0.5,
    description:
      'Reply-To at another domain than From (replies go elsewhere; common in helpdesks, so modest)',
    test(view) {
      if (view.viaList || view.fromDomain === undefined) return undefined;
      const other = replyToDomains(view).find((d) => registrable(d) !== view.fromDomain);
      return other === undefined ? undefined : { reason: `Reply-To at ${other}, From at ${view.fromDomain}` };
    },
  },
  {
    symbol: 'REPLYTO_FREEMAIL',
    reads: 'headers',
    weight: 1.5,
    description:
      'Reply-To at a free mail provider while From is not at that provider (advance-fee, phishing)',
    test(view, lists) {
      const mailbox = view.fromMailbox;
      if (view.viaList || !mailbox) return undefined;
      const free = replyToDomains(view).find(
        (d) => hostIn(d, lists.freemail) !== undefined && registrable(d) !== view.fromDomain,
      );
      return free === undefined
        ? undefined
        : { reason: `Reply-To at free mail ${free}, From at ${mailbox.domain}` };
    },
  },
  {
    symbol: 'TO_MISSING',
    reads: 'headers',
    weight: 1,
    description: 'Neither To nor Cc (the recipients are all hidden)',
    test: (view) =>
      view.field('to').length === 0 && view.field('cc').length === 0
        ? { reason: 'no To and no Cc' }
        : undefined,
  },
  {
    symbol: 'TO_UNDISCLOSED',
    reads: 'headers',
    weight: 0.5,
    description: 'To is an empty group such as undisclosed-recipients:; (bulk sent by Bcc)',
    test(view) {
      const empty = view.field('to').find((v) => /^\s*(?:"[^"]*"|[^:<>@",]*):\s*;?\s*$/.test(v));
      return empty === undefined ? undefined : { reason: `To: ${quote(empty)}` };
    },
  },
  {
    symbol: 'SUBJECT_EMPTY',
    reads: 'headers',
    weight: 0.7,
    description: 'No Subject, or a blank one',
    test(view) {
      if (view.subject === undefined) return { reason: 'no Subject header' };
      return view.subject.text.trim() === '' ? { reason: 'blank Subject' } : undefined;
    },
  },
  {
    symbol: 'SUBJECT_ALL_CAPS',
    reads: 'headers',
    weight: 1,
    description: 'Subject in capitals (at least 10 letters, all upper case)',
    test(view) {
      const text = view.subject?.text ?? '';
      const { cased, upper } = capitals(text);
      return cased >= 10 && upper === cased ? { reason: `Subject ${quote(text)}` } : undefined;
    },
  },
  {
    symbol: 'XPRIORITY_HIGH',
    reads: 'headers',
    weight: 0.5,
    description: 'X-Priority 1 (highest): bulk mailers set it to stand out, people seldom do',
    test(view) {
      const value = view.field('x-priority')[0];
      return value !== undefined && /^\s*1\b/.test(value)
        ? { reason: `X-Priority: ${quote(value, 30)}` }
        : undefined;
    },
  },
  {
    symbol: 'RECEIVED_MISSING',
    reads: 'headers',
    weight: 1,
    description: 'No Received header at all (even Postfix writes one on the way in)',
    test: (view) => (view.field('received').length === 0 ? { reason: 'no Received header' } : undefined),
  },
  {
    symbol: 'RECEIVED_FORGED',
    reads: 'headers',
    weight: 1.5,
    description:
      'A Received header names an impossible address, or hops are dated out of order by over a day',
    test(view) {
      const reason = forgedReceived(view);
      return reason === undefined ? undefined : { reason };
    },
  },
  {
    symbol: 'MIME_VERSION_MISSING',
    reads: 'headers',
    weight: 0.5,
    description: 'MIME content headers without MIME-Version (hand-rolled bulk mailers)',
    test(view) {
      if (view.field('mime-version').length > 0) return undefined;
      const mime =
        view.field('content-type').length > 0 || view.field('content-transfer-encoding').length > 0;
      return mime ? { reason: 'Content-Type without MIME-Version' } : undefined;
    },
  },
  {
    symbol: 'CHARSET_UNKNOWN',
    reads: 'headers',
    weight: 1,
    description: 'A declared charset no decoder knows (Content-Type, or encoded words in Subject/From/To)',
    test(view) {
      const unknown: string[] = [];
      const contentType = view.field('content-type')[0];
      const charset = contentType === undefined ? undefined : headerParameter(contentType, 'charset');
      if (charset !== undefined && charset.trim() !== '' && decoderFor(charset) === undefined)
        unknown.push(clipUrl(charset, 30));
      for (const value of [view.subject, view.from])
        for (const name of value?.unknownCharsets ?? []) unknown.push(clipUrl(name, 30));
      for (const to of view.field('to').slice(0, 4))
        if (to.includes('=?')) for (const name of decodeTo(to)) unknown.push(clipUrl(name, 30));
      return unknown.length === 0
        ? undefined
        : { reason: `unknown charset ${[...new Set(unknown)].join(', ')}` };
    },
  },
  {
    symbol: 'CHARSET_INVALID',
    reads: 'text',
    weight: 1,
    description:
      'Text not valid in its declared charset (undecodable body bytes, broken encoded words in Subject or From)',
    test(view) {
      const broken: string[] = [];
      if (view.subject?.invalid.length) broken.push(`Subject: ${view.subject.invalid[0] ?? ''}`);
      if (view.from?.invalid.length) broken.push(`From: ${view.from.invalid[0] ?? ''}`);
      if (view.replacementChars >= 5)
        broken.push(`${view.replacementChars} undecodable characters in the body`);
      return broken.length === 0 ? undefined : { reason: broken.join('; ') };
    },
  },
  {
    symbol: 'HTML_ONLY',
    reads: 'html',
    weight: 0.3,
    description: 'HTML body without a text alternative (common in bulk mail, rare from people)',
    test: (view) => (view.hasHtml && !view.hasPlain ? { reason: 'text/html without text/plain' } : undefined),
  },
  {
    symbol: 'HTML_HIDDEN_TEXT',
    reads: 'html',
    weight: 2,
    description:
      'Much text a reader cannot see (display:none, tiny font, off screen, same colour as background)',
    test(view) {
      const html = view.html;
      if (!html) return undefined;
      const { hiddenLetters: hidden, visibleLetters: visible } = html;
      // Newsletters hide a preview line (~100 letters); spam hides paragraphs, or more than it shows.
      if (hidden < 300 && !(hidden >= 50 && hidden > visible)) return undefined;
      return {
        reason: `${hidden} letters hidden (${html.hiddenHow ?? '?'}), ${visible} shown: ${quote(html.hiddenSample, 40)}`,
      };
    },
  },
  {
    symbol: 'HTML_IMAGE_ONLY',
    reads: 'html',
    weight: 1.5,
    description: 'Remote or linked images with hardly any text (under 200 letters): the message is a picture',
    test(view) {
      const html = view.html;
      if (!html || html.remoteOrLinkedImages === 0 || html.visibleLetters >= 200) return undefined;
      return { reason: `${html.images} image(s), ${html.visibleLetters} letters of text` };
    },
  },
  {
    symbol: 'HTML_FORM',
    reads: 'html',
    weight: 1,
    description: 'A form or a password field in the body (mail clients do not need one; phishing does)',
    test(view) {
      const html = view.html;
      if (!html || (html.forms === 0 && html.passwordFields === 0)) return undefined;
      return { reason: `${html.forms} forms, ${html.passwordFields} password fields` };
    },
  },
  {
    symbol: 'ALT_PARTS_DIFFER',
    reads: 'text',
    weight: 0.7,
    description: 'The text and HTML alternatives share almost no words (one of them is filler)',
    test(view) {
      if (!view.hasPlain || !view.html) return undefined;
      const set = (words: readonly string[]) => new Set(words.slice(0, 5000).filter((w) => w.length >= 3));
      const plain = set(view.plainWords);
      const html = set(view.htmlWords);
      if (plain.size < 30 || html.size < 30) return undefined;
      let shared = 0;
      for (const word of plain) if (html.has(word)) shared++;
      const overlap = shared / Math.min(plain.size, html.size);
      return overlap < 0.2
        ? { reason: `${Math.round(overlap * 100)}% of words shared (${plain.size} text, ${html.size} HTML)` }
        : undefined;
    },
  },
  {
    symbol: 'URL_SHORTENER',
    reads: 'urls',
    weight: 0.5,
    description: 'Links through a URL shortener (hides the destination; list in `shorteners`)',
    test(view, lists) {
      const hosts = view.urls
        .map((u) => hostIn(u.facts.host, lists.shorteners))
        .filter((h) => h !== undefined);
      if (hosts.length === 0) return undefined;
      return { reason: `${hosts.length} shortened links (${[...new Set(hosts)].slice(0, 3).join(', ')})` };
    },
  },
  {
    symbol: 'URL_IP_LITERAL',
    reads: 'urls',
    weight: 1,
    description:
      'Links to a public IP address instead of a name (private and loopback addresses are not counted)',
    test(view) {
      const ips = view.urls.map((u) => u.facts.publicIp).filter((ip) => ip !== undefined);
      return ips.length === 0
        ? undefined
        : { reason: `links to ${[...new Set(ips)].slice(0, 3).join(', ')}` };
    },
  },
  {
    symbol: 'URL_OBFUSCATED',
    reads: 'urls',
    weight: 2,
    description:
      'A link hides where it goes: user@ before the host, hex/octal/decimal IP, %-encoded host or letters',
    test(view) {
      const hidden = view.urls.filter((u) => u.facts.obfuscation !== undefined);
      const first = hidden[0]?.facts.obfuscation;
      if (first === undefined) return undefined;
      return { reason: hidden.length > 1 ? `${first} (and ${hidden.length - 1} more)` : first };
    },
  },
  {
    symbol: 'URL_TEXT_MISMATCH',
    reads: 'html',
    weight: 2,
    description:
      'A link whose text shows one site and whose target is another (click trackers of `redirectors` and of bulk senders excepted)',
    test(view, lists) {
      const reason = textMismatch(view, lists);
      return reason === undefined ? undefined : { reason };
    },
  },
  {
    symbol: 'BODY_EXCESS_CAPS',
    reads: 'text',
    weight: 1,
    description: 'Half or more of the body’s words (of at least 30) are in capitals',
    test(view) {
      const { words, shouted } = shoutedWords(view.bodyText);
      if (words < 30 || shouted * 2 < words) return undefined;
      return { reason: `${shouted} of ${words} words in capitals` };
    },
  },
  {
    symbol: 'EXCESS_EXCLAMATION',
    reads: 'text',
    weight: 0.7,
    description: 'Three or more ! in the Subject, or 8 or more in the body at one per 20 words or denser',
    test(view) {
      const inSubject = countOf(view.subject?.text ?? '', '!');
      if (inSubject >= 3) return { reason: `${inSubject} ! in the Subject` };
      const inBody = countOf(view.bodyText, '!');
      const words = view.plainWords.length + view.htmlWords.length;
      if (inBody >= 8 && inBody * 20 >= words) return { reason: `${inBody} ! in ${words} words` };
      return undefined;
    },
  },
  {
    symbol: 'DEAR_SOMEBODY',
    reads: 'text',
    weight: 1,
    description:
      'A line opens with a greeting to nobody in particular ("Dear Sir or Madam", "Dear Friend", "Dear Member")',
    test(view) {
      const greeting = GREETING.exec(view.bodyText.slice(0, GREETING_CHARS));
      return greeting ? { reason: quote(greeting[0].trim(), 40) } : undefined;
    },
  },
  phraseRule(
    'en',
    PHRASE_WEIGHT,
    'Spam phrases in English (curated list plus `phrases.en`), scaled by phrases found',
  ),
  phraseRule(
    'it',
    PHRASE_WEIGHT,
    'Spam phrases in Italian (curated list plus `phrases.it`), scaled by phrases found',
  ),
  phraseRule(
    'de',
    PHRASE_WEIGHT,
    'Spam phrases in German (curated list plus `phrases.de`), scaled by phrases found',
  ),
  phraseRule(
    'fr',
    PHRASE_WEIGHT,
    'Spam phrases in French (curated list plus `phrases.fr`), scaled by phrases found',
  ),
  phraseRule(
    'es',
    PHRASE_WEIGHT,
    'Spam phrases in Spanish (curated list plus `phrases.es`), scaled by phrases found',
  ),
  {
    symbol: 'SUSPICIOUS_ATTACHMENT_NAME',
    reads: 'attachments',
    weight: 1.5,
    description: 'An invoice-, payment- or shipping-named archive, disk image, web page or macro document',
    test(view) {
      for (const part of view.attachments) {
        const name = part.filename ?? '';
        const extension = extensionOf(name);
        if (!RISKY_EXTENSIONS.has(extension)) continue;
        const word = lure(name);
        if (word !== undefined) return { reason: `${quote(name, 60)}: "${word}" on a .${extension}` };
      }
      return undefined;
    },
  },
  {
    symbol: 'ATTACHMENT_NAME_ODD',
    reads: 'attachments',
    weight: 1,
    description: `An attachment name over ${MAX_NAME} characters, padded with spaces or dots, or with invisible characters`,
    test(view) {
      for (const part of view.attachments) {
        const name = part.filename ?? '';
        if (name.length > MAX_NAME) return { reason: `a ${name.length}-character name ${quote(name, 40)}` };
        if (INVISIBLE.test(name))
          return { reason: `invisible or direction characters in ${quote(name, 50)}` };
        if (PADDING.test(name)) return { reason: `padding in ${quote(name, 60)}` };
      }
      return undefined;
    },
  },
  {
    symbol: 'RULES_PARTIAL',
    reads: 'scan',
    weight: 0,
    description:
      'The rules read only part of the message (size, URL or time bounds); what they saw is still scored',
    test: (view) =>
      view.partial.length === 0 ? undefined : { reason: [...new Set(view.partial)].slice(0, 4).join('; ') },
  },
];

/** Unknown charsets named by encoded words in a To value. */
function decodeTo(value: string): string[] {
  const names: string[] = [];
  for (const match of value.matchAll(/=\?([^?\s]{1,64})\?[bBqQ]\?/g)) {
    if (names.length >= 4) break;
    const name = match[1] ?? '';
    if (decoderFor(name) === undefined) names.push(name.toLowerCase());
  }
  return names;
}
