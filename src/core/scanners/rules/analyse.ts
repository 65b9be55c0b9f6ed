/**
 * One bounded pass over a message that every rule then reads: header fields by name and decoded, the bodies
 * (text and HTML, cut to `maxBodyChars` in all), what the HTML shows and hides, the distinct URLs (at most
 * `maxUrls`, judged once each), the body's words folded for phrase matching, and the attachments' names.
 *
 * Work is bounded by characters (bodies), by count (URLs, words, header fields) and by time: `overBudget` is
 * asked between phases and inside the long loops, and a phase it stops leaves what it had found. Whatever was
 * cut is listed in `partial`, which the scanner reports (RULES_PARTIAL) next to the rules that did fire.
 */
import type { MessageFacts, MessagePart } from '../../content.js';
import {
  decodeHeaderValue,
  type DecodedValue,
  MAX_HEADER_VALUE,
  parseMailbox,
  type Mailbox,
} from './headers.js';
import { registrable } from './headers.js';
import { analyseHtml, type HtmlFacts } from './html.js';
import { foldedWords, foldText, type PhraseMatcher } from './phrases.js';
import { findUrls, inspectUrl, type UrlFacts } from './urls.js';

/** Header fields read at most (Postfix's header_size_limit keeps real messages far below). */
const MAX_FIELDS = 1000;

export interface AnalysisLimits {
  readonly maxBodyChars: number;
  readonly maxUrls: number;
  /** True once the time budget is spent (or the scan was aborted). */
  readonly overBudget: () => boolean;
}

export interface UrlSeen {
  /** As written (cut at MAX_URL). */
  readonly raw: string;
  readonly facts: UrlFacts;
}

export interface MessageView {
  readonly message: MessageFacts;
  /** Wall-clock time of the scan, ms since the epoch (for Date checks). */
  readonly now: number;
  /** Values of the header fields named `name` (any case), in order, each cut at MAX_HEADER_VALUE. */
  field(name: string): readonly string[];
  readonly subject: DecodedValue | undefined;
  /** The decoded From value, and the mailbox in it when it holds exactly one. */
  readonly from: DecodedValue | undefined;
  readonly fromMailbox: Mailbox | undefined;
  /** Registrable domain of the From address. */
  readonly fromDomain: string | undefined;
  /** The message comes through a mailing list (List-Id or List-Post): From and Reply-To are rewritten there. */
  readonly viaList: boolean;
  /** The text/plain bodies, joined (cut). */
  readonly plainText: string;
  readonly hasPlain: boolean;
  readonly hasHtml: boolean;
  readonly html: HtmlFacts | undefined;
  /** What a reader sees of the body: the plain text, then the HTML's visible text. */
  readonly bodyText: string;
  /** Folded words of the text bodies and of the HTML's visible text (at most maxBodyChars / 2 in all). */
  readonly plainWords: readonly string[];
  readonly htmlWords: readonly string[];
  /** Folded words of the subject. */
  readonly subjectWords: readonly string[];
  /** Distinct web URLs found, judged. */
  readonly urls: readonly UrlSeen[];
  /** language → distinct phrases found in subject and body. */
  readonly phrases: ReadonlyMap<string, ReadonlySet<string>>;
  /** U+FFFD characters in the bodies: bytes the parser could not decode in their declared charset. */
  readonly replacementChars: number;
  /** Parts that carry a file name. */
  readonly attachments: readonly MessagePart[];
  /** What was cut short, for RULES_PARTIAL. */
  readonly partial: readonly string[];
}

function bodiesOf(parts: readonly MessagePart[], kind: string): string[] {
  return parts
    .filter((p) => p.contentType === kind && p.text !== undefined && p.filename === undefined)
    .map((p) => p.text ?? '');
}

function countChar(text: string, char: string): number {
  let n = 0;
  for (let at = text.indexOf(char); at >= 0; at = text.indexOf(char, at + 1)) n++;
  return n;
}

export function analyseMessage(
  message: MessageFacts,
  phraseMatcher: PhraseMatcher,
  limits: AnalysisLimits,
  now: number,
): MessageView {
  const partial: string[] = [];

  // Headers: an index by lower-case name, values cut.
  const fields = new Map<string, string[]>();
  for (const header of message.headers.slice(0, MAX_FIELDS)) {
    const key = header.name.toLowerCase();
    let list = fields.get(key);
    if (!list) {
      list = [];
      fields.set(key, list);
    }
    list.push(header.value.slice(0, MAX_HEADER_VALUE));
  }
  if (message.headers.length > MAX_FIELDS) partial.push(`header fields past the first ${MAX_FIELDS}`);
  const field = (name: string): readonly string[] => fields.get(name.toLowerCase()) ?? [];
  const first = (name: string): string | undefined => field(name)[0];
  const subjectRaw = first('subject');
  const subject = subjectRaw === undefined ? undefined : decodeHeaderValue(subjectRaw);
  const fromRaw = first('from');
  const from = fromRaw === undefined ? undefined : decodeHeaderValue(fromRaw);
  const fromMailbox = from ? parseMailbox(from.text) : undefined;

  // Bodies, cut to the character budget: plain text first, then HTML.
  let budget = limits.maxBodyChars;
  const cut = (texts: string[]): string => {
    const joined = texts.join('\n');
    if (joined.length > budget) partial.push(`body text past ${limits.maxBodyChars} characters`);
    const kept = joined.slice(0, Math.max(0, budget));
    budget -= kept.length;
    return kept;
  };
  const plains = bodiesOf(message.parts, 'text/plain');
  const htmls = bodiesOf(message.parts, 'text/html');
  const plainText = cut(plains);
  const htmlSource = cut(htmls);
  const replacementChars = countChar(plainText, '\ufffd') + countChar(htmlSource, '\ufffd');

  let html: HtmlFacts | undefined;
  if (htmlSource !== '') {
    if (limits.overBudget()) partial.push('time budget spent before the HTML');
    else {
      const walked = analyseHtml(htmlSource, { maxUrls: limits.maxUrls, stop: limits.overBudget });
      html = walked.facts;
      if (walked.cut !== undefined) partial.push(walked.cut);
    }
  }
  const bodyText = html ? `${plainText}\n${html.visibleText}` : plainText;

  // URLs: distinct, at most maxUrls collected and judged.
  const distinct = new Set<string>();
  let urlsCut = html?.urlsCut ?? false;
  const collect = (url: string) => {
    if (distinct.size < limits.maxUrls) distinct.add(url);
    else if (!distinct.has(url)) urlsCut = true;
  };
  for (const url of html?.urls ?? []) collect(url);
  if (!findUrls(plainText, limits.maxUrls, collect)) urlsCut = true;
  if (html && !findUrls(html.visibleText, limits.maxUrls, collect)) urlsCut = true;
  if (urlsCut) partial.push(`URLs past the first ${limits.maxUrls}`);
  const urls: UrlSeen[] = [];
  let judged = 0;
  for (const raw of distinct) {
    if (judged++ % 64 === 0 && limits.overBudget()) {
      partial.push(`time budget spent after ${urls.length} URLs`);
      break;
    }
    const facts = inspectUrl(raw);
    if (facts) urls.push({ raw, facts });
  }

  // Words and phrases.
  let plainWords: string[] = [];
  let htmlWords: string[] = [];
  const subjectWords = subject ? foldedWords(foldText(subject.text), 100) : [];
  const phrases = new Map<string, Set<string>>();
  phraseMatcher.match(subjectWords, phrases);
  if (limits.overBudget()) partial.push('time budget spent before the words');
  else {
    const maxWords = Math.ceil(limits.maxBodyChars / 2);
    plainWords = foldedWords(foldText(plainText), maxWords);
    htmlWords = html ? foldedWords(foldText(html.visibleText), maxWords - plainWords.length) : [];
    phraseMatcher.match(plainWords, phrases);
    phraseMatcher.match(htmlWords, phrases);
  }

  const fromDomain = fromMailbox ? registrable(fromMailbox.domain) : undefined;
  return {
    message,
    now,
    field,
    subject,
    from,
    fromMailbox,
    fromDomain,
    viaList: fields.has('list-id') || fields.has('list-post'),
    plainText,
    hasPlain: plains.some((t) => t.trim() !== ''),
    hasHtml: htmls.some((t) => t.trim() !== ''),
    html,
    bodyText,
    plainWords,
    htmlWords,
    subjectWords,
    urls,
    phrases,
    replacementChars,
    attachments: message.parts.filter((p) => p.filename !== undefined),
    partial,
  };
}
