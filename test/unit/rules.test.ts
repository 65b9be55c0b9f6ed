/**
 * The content rules (src/core/scanners/rules.ts), as tables: for every built-in symbol at least one message
 * that fires it and one that does not (a test below fails when a symbol has no case of either kind); weights
 * and admin rules from the config; config validation (bad regexes, backtracking patterns, unknown symbols);
 * bounds (100 000 words, 10 000 URLs, pathological HTML, a spent time budget: finishes, and scores what it
 * read); and two realistic messages, one ham (scores under 1) and one spam (over 5).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MessageFacts, MessagePart, ScanContext, ScanVerdict } from '../../src/core/content.js';
import {
  BUILTIN_RULES,
  compilePattern,
  createRulesScanner,
  type RulesDeps,
  rulesSchema,
  type RulesSettings,
} from '../../src/core/scanners/rules.js';
import { parseRfc5322Date } from '../../src/core/scanners/rules/headers.js';
import { inspectUrl } from '../../src/core/scanners/rules/urls.js';

// ---------------------------------------------------------------------------------------------------------
// Messages

const NOW = Date.UTC(2024, 4, 14, 10, 0, 0); // Tue, 14 May 2024 10:00 UTC

type Headers = readonly (readonly [string, string])[];

const BASE_HEADERS: Headers = [
  [
    'Received',
    'from mail.example.it (mail.example.it [198.51.100.7]) by mx.example.org (Postfix) with ESMTPS id 4VdKx; Tue, 14 May 2024 09:30:05 +0000 (UTC)',
  ],
  [
    'Received',
    'from [192.168.1.20] (unknown [192.168.1.20]) by mail.example.it (Postfix) with ESMTPSA id 8E2F1; Tue, 14 May 2024 11:30:01 +0200 (CEST)',
  ],
  ['Date', 'Tue, 14 May 2024 11:30:00 +0200'],
  ['Message-ID', '<a1b2c3d4-5678@mail.example.it>'],
  ['From', 'Anna Rossi <anna.rossi@example.it>'],
  ['To', 'Marco Bianchi <marco@example.org>'],
  ['Subject', 'Riunione di giovedì: ordine del giorno'],
  ['MIME-Version', '1.0'],
  ['Content-Type', 'text/plain; charset=utf-8'],
];

const BASE_TEXT =
  'Ciao Marco,\n\nti mando l’ordine del giorno per giovedì. Partiamo dal bilancio del trimestre, poi il ' +
  'nuovo fornitore e le ferie estive. Se vuoi aggiungere qualcosa scrivimi entro mercoledì sera.\n\nA presto,\nAnna\n';

interface Spec {
  /** Replaces the base headers whose names it lists (all of them); `null` removes them. */
  readonly set?: Readonly<Record<string, string | readonly string[] | null>>;
  /** Added after the base headers. */
  readonly add?: Headers;
  /** The text/plain body; `null` for none. Default: a short personal note. */
  readonly text?: string | null;
  readonly html?: string;
  readonly attachments?: readonly { filename: string; contentType?: string; size?: number }[];
}

function message(spec: Spec = {}): MessageFacts {
  const set = spec.set ?? {};
  const lowered = new Map(Object.entries(set).map(([k, v]) => [k.toLowerCase(), v]));
  const headers: { name: string; value: string }[] = [];
  const done = new Set<string>();
  for (const [name, value] of BASE_HEADERS) {
    const key = name.toLowerCase();
    if (!lowered.has(key)) {
      headers.push({ name, value });
      continue;
    }
    if (done.has(key)) continue;
    done.add(key);
    const replacement = lowered.get(key);
    if (replacement === null || replacement === undefined) continue;
    for (const v of typeof replacement === 'string' ? [replacement] : replacement)
      headers.push({ name, value: v });
  }
  for (const [key, value] of lowered) {
    if (done.has(key) || BASE_HEADERS.some(([n]) => n.toLowerCase() === key) || value === null) continue;
    for (const v of typeof value === 'string' ? [value] : value) headers.push({ name: key, value: v });
  }
  for (const [name, value] of spec.add ?? []) headers.push({ name, value });
  const parts: MessagePart[] = [];
  const text = spec.text === undefined ? BASE_TEXT : spec.text;
  if (text !== null)
    parts.push({ path: 'text', depth: 0, contentType: 'text/plain', size: text.length, text });
  if (spec.html !== undefined)
    parts.push({ path: 'html', depth: 0, contentType: 'text/html', size: spec.html.length, text: spec.html });
  for (const [i, a] of (spec.attachments ?? []).entries()) {
    parts.push({
      path: String(i + 2),
      depth: 1,
      contentType: a.contentType ?? 'application/octet-stream',
      filename: a.filename,
      size: a.size ?? 1000,
    });
  }
  return {
    envelope: { sender: 'anna.rossi@example.it', recipients: ['marco@example.org'] },
    size: 4000,
    headers,
    parts,
    problems: [],
    limitsHit: false,
  };
}

const context: ScanContext = {
  source: { size: 0, chunks: async function* () {} },
  signal: new AbortController().signal,
};

function settings(overrides: Record<string, unknown> = {}): RulesSettings {
  return rulesSchema.parse(overrides);
}

function scan(
  facts: MessageFacts,
  overrides: Record<string, unknown> = {},
  deps: RulesDeps = {},
): ScanVerdict[] {
  const scanner = createRulesScanner(settings(overrides), { now: () => NOW, ...deps });
  const result = scanner.scan(facts, context);
  assert.ok(Array.isArray(result));
  return result as ScanVerdict[];
}

function fired(facts: MessageFacts, overrides: Record<string, unknown> = {}): Map<string, ScanVerdict> {
  return new Map(scan(facts, overrides).map((v) => [v.symbol, v]));
}

function total(verdicts: readonly ScanVerdict[]): number {
  return verdicts.reduce((sum, v) => sum + v.score, 0);
}

const html = (body: string) => `<html><body>${body}</body></html>`;
const words = (n: number, word = 'lorem') =>
  Array.from({ length: n }, (_, i) => `${word}${i % 50}`).join(' ');
const ENGLISH =
  'Hi Marco, attached is the agenda for Thursday. We start with the quarterly budget, then the new supplier ' +
  'and the summer holidays. Let me know by Wednesday evening if you want to add anything. Best, Anna';

// ---------------------------------------------------------------------------------------------------------
// Every rule: messages that fire it, messages that do not

interface Case {
  readonly symbol: string;
  readonly name: string;
  readonly facts: MessageFacts;
  readonly fires: boolean;
  /** Part of the reason, when it fires. */
  readonly reason?: RegExp;
}

const cases: Case[] = [];
function fires(symbol: string, name: string, facts: MessageFacts, reason?: RegExp) {
  cases.push({ symbol, name, facts, fires: true, ...(reason ? { reason } : {}) });
}
function quiet(symbol: string, name: string, facts: MessageFacts) {
  cases.push({ symbol, name, facts, fires: false });
}

// Dates
fires('DATE_MISSING', 'no Date', message({ set: { Date: null } }));
quiet('DATE_MISSING', 'a Date', message());
fires(
  'DATE_MALFORMED',
  'ISO date',
  message({ set: { Date: '2024-05-14 10:00:00' } }),
  /not an RFC 5322 date/,
);
fires('DATE_MALFORMED', 'no zone', message({ set: { Date: 'Tue, 14 May 2024 10:00:00' } }));
fires(
  'DATE_MALFORMED',
  'day 31 of a 30-day month',
  message({ set: { Date: 'Fri, 31 Apr 2024 10:00:00 +0000' } }),
);
fires(
  'DATE_MALFORMED',
  'two Date fields',
  message({ add: [['Date', 'Tue, 14 May 2024 11:30:00 +0200']] }),
  /2 Date/,
);
quiet('DATE_MALFORMED', 'RFC 5322 date', message());
quiet('DATE_MALFORMED', 'obsolete form', message({ set: { Date: '14 May 24 09:00 GMT' } }));
quiet('DATE_MALFORMED', 'zone comment', message({ set: { Date: 'Tue, 14 May 2024 09:00:00 -0400 (EDT)' } }));
fires(
  'DATE_FUTURE',
  'a day ahead',
  message({ set: { Date: 'Wed, 15 May 2024 10:00:00 +0000' } }),
  /24 hours/,
);
quiet(
  'DATE_FUTURE',
  'two hours ahead (clock skew)',
  message({ set: { Date: 'Tue, 14 May 2024 12:00:00 +0000' } }),
);
fires(
  'DATE_PAST',
  'months old',
  message({ set: { Date: 'Mon, 01 Jan 2024 10:00:00 +0000' } }),
  /134 days old/,
);
quiet('DATE_PAST', 'three days old (queued)', message({ set: { Date: 'Sat, 11 May 2024 10:00:00 +0000' } }));

// Message-ID
fires('MSGID_MISSING', 'no Message-ID', message({ set: { 'Message-ID': null } }));
quiet('MSGID_MISSING', 'a Message-ID', message());
fires('MSGID_MALFORMED', 'no brackets', message({ set: { 'Message-ID': 'abc@example.it' } }));
fires('MSGID_MALFORMED', 'no @', message({ set: { 'Message-ID': '<1234567890>' } }));
quiet('MSGID_MALFORMED', '<left@right>', message());

// From
fires('FROM_MISSING', 'no From', message({ set: { From: null } }));
quiet('FROM_MISSING', 'a From', message());
fires('FROM_MALFORMED', 'a name only', message({ set: { From: 'Anna Rossi' } }), /no single valid address/);
fires('FROM_MALFORMED', 'no domain', message({ set: { From: 'Anna <anna@>' } }));
fires('FROM_MALFORMED', 'two From fields', message({ add: [['From', 'x@example.net']] }), /2 From/);
quiet(
  'FROM_MALFORMED',
  'quoted name with a comma',
  message({ set: { From: '"Rossi, Anna" <anna@example.it>' } }),
);
quiet(
  'FROM_MALFORMED',
  'bare address with comment',
  message({ set: { From: 'anna@example.it (Anna Rossi)' } }),
);
quiet(
  'FROM_MALFORMED',
  'encoded name',
  message({ set: { From: '=?utf-8?Q?Anna_Ros=C3=AC?= <anna@example.it>' } }),
);
fires(
  'FROM_NAME_SPOOF',
  'name shows another domain',
  message({ set: { From: '"security@paypal.com" <alert@mailer.evil.example>' } }),
  /paypal\.com, address is at evil\.example/,
);
quiet(
  'FROM_NAME_SPOOF',
  'name shows the same domain',
  message({ set: { From: '"anna@example.it" <anna@mail.example.it>' } }),
);
quiet(
  'FROM_NAME_SPOOF',
  'a mailing list rewriting From',
  message({
    set: { From: '"anna@example.it via Soci" <soci@lists.example.org>' },
    add: [['List-Id', '<soci.lists.example.org>']],
  }),
);

// Reply-To
fires(
  'REPLYTO_DIFFERS',
  'another domain',
  message({ add: [['Reply-To', 'orders@shop.example.com']] }),
  /shop\.example\.com/,
);
quiet('REPLYTO_DIFFERS', 'a subdomain of From', message({ add: [['Reply-To', 'help@support.example.it']] }));
quiet(
  'REPLYTO_DIFFERS',
  'a mailing list',
  message({
    add: [
      ['Reply-To', 'soci@lists.example.org'],
      ['List-Id', '<soci.lists.example.org>'],
    ],
  }),
);
fires(
  'REPLYTO_FREEMAIL',
  'a bank replying at gmail',
  message({ set: { From: 'Banca <info@banca.example>' }, add: [['Reply-To', 'banca.rimborsi@gmail.com']] }),
  /free mail gmail\.com/,
);
quiet(
  'REPLYTO_FREEMAIL',
  'gmail replying at gmail',
  message({ set: { From: 'Anna <anna@gmail.com>' }, add: [['Reply-To', 'Anna <anna@gmail.com>']] }),
);
quiet('REPLYTO_FREEMAIL', 'a company Reply-To', message({ add: [['Reply-To', 'help@support.example.it']] }));

// To
fires('TO_MISSING', 'neither To nor Cc', message({ set: { To: null } }));
quiet('TO_MISSING', 'Cc only', message({ set: { To: null }, add: [['Cc', 'marco@example.org']] }));
fires('TO_UNDISCLOSED', 'undisclosed-recipients:;', message({ set: { To: 'undisclosed-recipients:;' } }));
fires('TO_UNDISCLOSED', 'empty group without ;', message({ set: { To: 'Undisclosed recipients:' } }));
quiet('TO_UNDISCLOSED', 'a recipient', message());

// Subject
fires('SUBJECT_EMPTY', 'no Subject', message({ set: { Subject: null } }), /no Subject/);
fires('SUBJECT_EMPTY', 'blank Subject', message({ set: { Subject: '   ' } }), /blank/);
quiet('SUBJECT_EMPTY', 'a Subject', message());
fires('SUBJECT_ALL_CAPS', 'capitals', message({ set: { Subject: 'URGENT BUSINESS PROPOSAL FOR YOU' } }));
fires(
  'SUBJECT_ALL_CAPS',
  'encoded capitals',
  message({ set: { Subject: '=?utf-8?B?VklOQ0kgU1VCSVRPIFVOIElQSE9ORQ==?=' } }),
);
quiet(
  'SUBJECT_ALL_CAPS',
  'acronyms in a sentence',
  message({ set: { Subject: 'Re: NASA and ESA meeting notes' } }),
);
quiet('SUBJECT_ALL_CAPS', 'short capitals', message({ set: { Subject: 'OK GRAZIE' } }));
fires('XPRIORITY_HIGH', 'X-Priority 1', message({ add: [['X-Priority', '1 (Highest)']] }), /X-Priority/);
quiet('XPRIORITY_HIGH', 'normal priority', message({ add: [['X-Priority', '3 (Normal)']] }));
quiet('XPRIORITY_HIGH', 'no X-Priority', message());

// Received
fires('RECEIVED_MISSING', 'no Received', message({ set: { Received: null } }));
quiet('RECEIVED_MISSING', 'Received fields', message());
fires(
  'RECEIVED_FORGED',
  'an impossible address',
  message({
    add: [
      [
        'Received',
        'from pc (unknown [300.12.1.9]) by relay.example.net with SMTP; Tue, 14 May 2024 08:00:00 +0000',
      ],
    ],
  }),
  /300\.12\.1\.9/,
);
fires(
  'RECEIVED_FORGED',
  'a lower hop dated days later',
  message({
    add: [['Received', 'from a.example by b.example with SMTP; Sat, 18 May 2024 08:00:00 +0000']],
  }),
  /hours after/,
);
quiet('RECEIVED_FORGED', 'private hops in order', message());
quiet(
  'RECEIVED_FORGED',
  'a qmail line without from/by and a version number',
  message({ add: [['Received', '(qmail 12345 invoked by uid 1.2.3.4); 14 May 2024 07:00:00 -0000']] }),
);

// MIME-Version
fires(
  'MIME_VERSION_MISSING',
  'Content-Type without MIME-Version',
  message({ set: { 'MIME-Version': null } }),
);
quiet('MIME_VERSION_MISSING', 'MIME-Version present', message());
quiet(
  'MIME_VERSION_MISSING',
  'plain RFC 5322 message without MIME headers',
  message({ set: { 'MIME-Version': null, 'Content-Type': null } }),
);

// Charsets
fires(
  'CHARSET_UNKNOWN',
  'unknown body charset',
  message({ set: { 'Content-Type': 'text/plain; charset="x-klingon"' } }),
  /x-klingon/,
);
fires(
  'CHARSET_UNKNOWN',
  'unknown charset in Subject',
  message({ set: { Subject: '=?x-foo-8?B?SGVsbG8=?= there' } }),
  /x-foo-8/,
);
fires(
  'CHARSET_UNKNOWN',
  'unknown charset in To',
  message({ set: { To: '=?bogus?Q?Marco?= <marco@example.org>' } }),
  /bogus/,
);
quiet(
  'CHARSET_UNKNOWN',
  'windows-1252',
  message({ set: { 'Content-Type': 'text/plain; charset=windows-1252' } }),
);
quiet(
  'CHARSET_UNKNOWN',
  'utf-7 (registered, rare)',
  message({ set: { 'Content-Type': 'text/plain; charset=UTF-7' } }),
);
quiet(
  'CHARSET_UNKNOWN',
  'multipart without charset',
  message({ set: { 'Content-Type': 'multipart/alternative; boundary="b1"' } }),
);
fires(
  'CHARSET_INVALID',
  'undecodable body',
  message({ text: `Caro cliente \ufffd\ufffd\ufffd conto \ufffd\ufffd bloccato` }),
  /5 undecodable/,
);
fires(
  'CHARSET_INVALID',
  'broken UTF-8 encoded word',
  message({ set: { Subject: '=?utf-8?B?/w==?=' } }),
  /not valid in utf-8/,
);
quiet(
  'CHARSET_INVALID',
  'raw latin1 bytes in Subject (cannot be told from decoded text)',
  message({ set: { Subject: 'Offerta \xe0 tempo limitato' } }),
);
quiet(
  'CHARSET_INVALID',
  'raw UTF-8 bytes in Subject (RFC 6532)',
  message({ set: { Subject: 'Caff\xc3\xa8 gioved\xc3\xac' } }),
);
quiet('CHARSET_INVALID', 'one stray replacement character', message({ text: `${BASE_TEXT} \ufffd` }));

// HTML
fires('HTML_ONLY', 'HTML without text', message({ text: null, html: html('<p>Ciao Marco</p>') }));
quiet('HTML_ONLY', 'text and HTML', message({ html: html('<p>Ciao Marco</p>') }));
quiet('HTML_ONLY', 'text only', message());
fires(
  'HTML_HIDDEN_TEXT',
  'display:none paragraphs',
  message({ html: html(`<p>Buy now</p><div style="display: none">${words(80, 'filler')}</div>`) }),
  /display:none/,
);
fires(
  'HTML_HIDDEN_TEXT',
  'white on white, more hidden than shown',
  message({ html: html(`<p>Hello</p><font color="#FFFFFF">${words(12, 'poison')}</font>`) }),
  /colour of its background/,
);
fires(
  'HTML_HIDDEN_TEXT',
  'zero-size font',
  message({ html: html(`<p>Hi</p><span style="font-size:0px">${words(15, 'token')}</span>`) }),
  /font-size:0px/,
);
fires(
  'HTML_HIDDEN_TEXT',
  'off screen',
  message({ html: html(`<p>Hi</p><div style="position:absolute;left:-9999px">${words(15, 'token')}</div>`) }),
  /off screen/,
);
quiet(
  'HTML_HIDDEN_TEXT',
  'a newsletter preview line',
  message({
    html: html(
      `<div style="display:none;max-height:0;overflow:hidden">Le novità di maggio: sconti, eventi e un invito speciale per te${'&zwnj;&nbsp;'.repeat(80)}</div><p>${words(150, 'news')}</p>`,
    ),
  }),
);
quiet(
  'HTML_HIDDEN_TEXT',
  'white text on a coloured button',
  message({
    html: html(
      `<table><tr><td bgcolor="#0066cc"><a href="https://www.example.it/" style="color:#ffffff">${words(60, 'Scopri')}</a></td></tr></table>`,
    ),
  }),
);
quiet(
  'HTML_HIDDEN_TEXT',
  'white text on a dark body',
  message({
    html: `<html><body bgcolor="#000000" text="#ffffff"><p>${words(100, 'notte')}</p></body></html>`,
  }),
);
fires(
  'HTML_IMAGE_ONLY',
  'a linked remote picture',
  message({
    text: null,
    html: html(
      '<a href="https://promo.example.net/x"><img src="https://cdn.example.net/offer.jpg" width="600" height="800"></a><p>Click</p>',
    ),
  }),
  /1 image\(s\), 5 letters/,
);
quiet(
  'HTML_IMAGE_ONLY',
  'a picture with text',
  message({ html: html(`<img src="https://cdn.example.net/logo.png"><p>${words(60, 'testo')}</p>`) }),
);
quiet(
  'HTML_IMAGE_ONLY',
  'a phone photo (embedded, not linked)',
  message({ html: html('<img src="cid:photo1@phone"><br>Inviato da iPhone') }),
);
quiet(
  'HTML_IMAGE_ONLY',
  'a tracking pixel and little text',
  message({ html: html('<p>Grazie!</p><img src="https://t.example.net/o.gif" width="1" height="1">') }),
);
fires(
  'HTML_FORM',
  'a login form',
  message({
    html: html(
      '<form action="https://evil.example/login"><input name="u"><input type="password" name="p"></form>',
    ),
  }),
  /1 forms, 1 password/,
);
quiet('HTML_FORM', 'no form', message({ html: html('<p>Ciao</p>') }));
fires(
  'ALT_PARTS_DIFFER',
  'unrelated alternatives',
  message({ text: words(60, 'alpha'), html: html(`<p>${words(60, 'omega')}</p>`) }),
  /0% of words shared/,
);
quiet('ALT_PARTS_DIFFER', 'the same content', message({ text: ENGLISH, html: html(`<p>${ENGLISH}</p>`) }));
quiet(
  'ALT_PARTS_DIFFER',
  'a short text alternative',
  message({ text: 'View it in your browser', html: html(`<p>${words(60, 'omega')}</p>`) }),
);

// URLs
fires('URL_SHORTENER', 'bit.ly', message({ text: `${BASE_TEXT}\nhttps://bit.ly/3xYz12 ` }), /bit\.ly/);
fires(
  'URL_SHORTENER',
  'a shortener subdomain',
  message({ html: html('<a href="http://www.tinyurl.com/abc">link</a>') }),
);
quiet(
  'URL_SHORTENER',
  'ordinary links and t.co',
  message({ text: `${BASE_TEXT}\nhttps://www.example.it/agenda https://t.co/abc` }),
);
fires(
  'URL_IP_LITERAL',
  'a public address',
  message({ text: `${BASE_TEXT}\nhttp://45.33.12.9/login.php` }),
  /45\.33\.12\.9/,
);
fires(
  'URL_IP_LITERAL',
  'an IPv6 literal',
  message({ html: html('<a href="http://[2a00:1450:4001::1]/x">x</a>') }),
);
quiet(
  'URL_IP_LITERAL',
  'a router page on a private address',
  message({ text: `${BASE_TEXT}\nhttp://192.168.1.1/admin` }),
);
fires(
  'URL_OBFUSCATED',
  'hex IP',
  message({ text: 'go to http://0x2d210c09/login' }),
  /hex, octal or one number/,
);
fires('URL_OBFUSCATED', 'decimal IP', message({ text: 'go to http://757140489/login' }));
fires('URL_OBFUSCATED', 'octal IP', message({ text: 'go to http://0177.0.0.1/login' }));
fires(
  'URL_OBFUSCATED',
  'a name before @',
  message({ html: html('<a href="https://www.paypal.com@evil.example/login">PayPal</a>') }),
  /before @/,
);
fires('URL_OBFUSCATED', 'encoded host', message({ text: 'http://ex%61mple.com/' }), /%-encoded host/);
fires(
  'URL_OBFUSCATED',
  'encoded letters',
  message({ text: 'http://evil.example/%6c%6f%67%69%6e%2e%70%68%70' }),
  /needlessly/,
);
quiet(
  'URL_OBFUSCATED',
  'a tracking link that encodes its target',
  message({ text: 'https://click.example.net/r?u=https%3A%2F%2Fwww.example.it%2Fpage%3Fa%3D1%26b%3D2' }),
);
fires(
  'URL_TEXT_MISMATCH',
  'shows paypal, goes elsewhere',
  message({ html: html('<a href="http://secure-login.evil.example/x">https://www.paypal.com/signin</a>') }),
  /shows paypal\.com but goes to evil\.example/,
);
fires(
  'URL_TEXT_MISMATCH',
  'a bare domain as text',
  message({ html: html('<p>Accedi: <a href="http://evil.example/poste">PosteItaliane.it</a></p>') }),
  /posteitaliane\.it/,
);
quiet(
  'URL_TEXT_MISMATCH',
  'the same site',
  message({ html: html('<a href="https://shop.example.it/offerte">www.example.it/offerte</a>') }),
);
quiet(
  'URL_TEXT_MISMATCH',
  'a mailing service redirector',
  message({
    html: html('<a href="https://example.us1.list-manage.com/track/click?u=1">www.example.org</a>'),
  }),
);
quiet(
  'URL_TEXT_MISMATCH',
  'a bulk sender’s own tracker',
  message({
    add: [['List-Unsubscribe', '<https://www.example.it/unsubscribe>']],
    html: html('<a href="https://click.example.it/r/abc">www.partner-shop.com</a>'),
  }),
);
fires(
  'URL_TEXT_MISMATCH',
  'a phisher linking to his own domain',
  message({
    set: { From: 'PayPal <service@paypal-secure.example>' },
    html: html('<a href="https://login.paypal-secure.example/">https://www.paypal.com/</a>'),
  }),
  /shows paypal\.com but goes to paypal-secure\.example/,
);
quiet(
  'URL_TEXT_MISMATCH',
  'a file name as text',
  message({ html: html('<a href="https://github.com/x/y">README.md</a>') }),
);
quiet(
  'URL_TEXT_MISMATCH',
  'words as text',
  message({ html: html('<a href="https://evil.example/">Clicca qui</a>') }),
);

// Text
fires(
  'BODY_EXCESS_CAPS',
  'shouting',
  message({ text: `${'BUY THE BEST WATCHES TODAY AT THE LOWEST PRICE EVER '.repeat(6)}` }),
  /of \d+ words in capitals/,
);
quiet(
  'BODY_EXCESS_CAPS',
  'acronyms in prose',
  message({ text: `${ENGLISH} The API returns JSON over HTTPS; see the PDF from the IT team.` }),
);
fires('EXCESS_EXCLAMATION', 'Subject !!!', message({ set: { Subject: 'You won!!!' } }), /3 ! in the Subject/);
fires(
  'EXCESS_EXCLAMATION',
  'a body full of !',
  message({ text: 'Amazing! Wow! Free! Now! Yes! Go! Win! Cash! Today!' }),
);
quiet('EXCESS_EXCLAMATION', 'a couple of !', message({ text: `${BASE_TEXT}\nGrazie mille! A giovedì!` }));
quiet(
  'EXCESS_EXCLAMATION',
  '8 ! in a long message',
  message({ text: `${words(400, 'parola')} ${'Bene! '.repeat(8)}` }),
);

fires(
  'DEAR_SOMEBODY',
  'a greeting to nobody in particular',
  message({ text: `Dear Sir or Madam,\n\nI am writing to you in confidence.` }),
  /Dear Sir or Madam/,
);
fires(
  'DEAR_SOMEBODY',
  'in the HTML body',
  message({ text: null, html: '<p>DEAR VALUED MEMBER,</p><p>Act today.</p>' }),
);
quiet('DEAR_SOMEBODY', 'a greeting to a person', message({ text: `Dear Marco,\n\n${BASE_TEXT}` }));
quiet(
  'DEAR_SOMEBODY',
  '"dear" inside a sentence',
  message({ text: `Oh dear, sir, the meeting moved.\n${BASE_TEXT}` }),
);

// Phrases
fires(
  'SPAM_PHRASE_EN',
  'English spam phrases',
  message({ text: 'Dear friend, you have won! Claim your prize today, risk free.' }),
  /4 phrases/,
);
fires('SPAM_PHRASE_EN', 'look-alike digits', message({ text: 'Cheap V1agra here' }), /viagra/);
fires(
  'SPAM_PHRASE_EN',
  'in the Subject',
  message({ set: { Subject: 'Work from home and double your income' } }),
);
quiet('SPAM_PHRASE_EN', 'ordinary English', message({ text: ENGLISH }));
fires(
  'SPAM_PHRASE_IT',
  'Italian spam phrases, accents dropped',
  message({ text: 'Gentile beneficiario, hai vinto! Ritira il tuo premio: liberta finanziaria garantita.' }),
  /4 phrases/,
);
quiet('SPAM_PHRASE_IT', 'ordinary Italian', message());
fires(
  'SPAM_PHRASE_DE',
  'German spam phrase',
  message({ text: 'Sie haben gewonnen! Ohne Rezept bestellen.' }),
);
quiet(
  'SPAM_PHRASE_DE',
  'ordinary German',
  message({ text: 'Hallo Marco, anbei die Tagesordnung für Donnerstag.' }),
);
fires(
  'SPAM_PHRASE_FR',
  'French spam phrase',
  message({ text: "Vous avez gagné ! Gagner de l'argent facilement." }),
);
quiet(
  'SPAM_PHRASE_FR',
  'ordinary French',
  message({ text: "Bonjour Marco, voici l'ordre du jour de jeudi." }),
);
fires(
  'SPAM_PHRASE_ES',
  'Spanish spam phrase',
  message({ text: 'Usted ha ganado. Dinero fácil desde casa.' }),
);
quiet(
  'SPAM_PHRASE_ES',
  'ordinary Spanish',
  message({ text: 'Hola Marco, te envío el orden del día del jueves.' }),
);

// Attachments
fires(
  'SUSPICIOUS_ATTACHMENT_NAME',
  'an invoice archive',
  message({ attachments: [{ filename: 'Fattura_2024_0012.zip' }] }),
  /"fattura" on a \.zip/,
);
fires(
  'SUSPICIOUS_ATTACHMENT_NAME',
  'a remittance web page',
  message({ attachments: [{ filename: 'Remittance-Advice.html' }] }),
);
fires(
  'SUSPICIOUS_ATTACHMENT_NAME',
  'DHL and a disk image',
  message({ attachments: [{ filename: 'DHL AWB 7741.img' }] }),
);
quiet(
  'SUSPICIOUS_ATTACHMENT_NAME',
  'an invoice PDF',
  message({ attachments: [{ filename: 'Fattura_2024_0012.pdf' }] }),
);
quiet(
  'SUSPICIOUS_ATTACHMENT_NAME',
  'holiday photos zipped',
  message({ attachments: [{ filename: 'foto-vacanze.zip' }] }),
);
quiet(
  'SUSPICIOUS_ATTACHMENT_NAME',
  'documents zipped',
  message({ attachments: [{ filename: 'Documenti firmati.zip' }] }),
);
fires(
  'ATTACHMENT_NAME_ODD',
  'a very long name',
  message({ attachments: [{ filename: `${'documento '.repeat(15)}.pdf` }] }),
  /character name/,
);
fires(
  'ATTACHMENT_NAME_ODD',
  'padding',
  message({ attachments: [{ filename: 'scan.pdf                    .zip' }] }),
  /padding/,
);
fires(
  'ATTACHMENT_NAME_ODD',
  'a direction override',
  message({ attachments: [{ filename: 'photo\u202egpj.exe' }] }),
  /invisible/,
);
quiet(
  'ATTACHMENT_NAME_ODD',
  'an ordinary name',
  message({ attachments: [{ filename: 'Verbale riunione 2024-05-14.pdf' }] }),
);

// Partial reads
fires('RULES_PARTIAL', '100 000 words', message({ text: words(100_000) }), /body text past/);
quiet('RULES_PARTIAL', 'a short message', message());

describe('rules: each built-in rule', () => {
  for (const c of cases) {
    test(`${c.symbol} ${c.fires ? 'fires' : 'is quiet'}: ${c.name}`, () => {
      const verdict = fired(c.facts).get(c.symbol);
      if (!c.fires) {
        assert.equal(verdict, undefined, `${c.symbol} fired: ${verdict?.reason ?? ''}`);
        return;
      }
      assert.ok(verdict, `${c.symbol} did not fire`);
      assert.equal(verdict.scanner, 'rules');
      assert.equal(verdict.action, undefined, 'rules only score');
      assert.ok(verdict.reason.length > 0 && verdict.reason.length <= 160, verdict.reason);
      if (c.reason) assert.match(verdict.reason, c.reason);
    });
  }

  test('every built-in symbol has a firing and a quiet case', () => {
    for (const rule of BUILTIN_RULES) {
      assert.ok(
        cases.some((c) => c.symbol === rule.symbol && c.fires),
        `${rule.symbol}: no firing case`,
      );
      assert.ok(
        cases.some((c) => c.symbol === rule.symbol && !c.fires),
        `${rule.symbol}: no quiet case`,
      );
    }
  });

  test('the table is data: unique upper-case symbols, a description, modest weights', () => {
    const symbols = BUILTIN_RULES.map((r) => r.symbol);
    assert.equal(new Set(symbols).size, symbols.length);
    for (const rule of BUILTIN_RULES) {
      assert.match(rule.symbol, /^[A-Z][A-Z0-9_]+$/);
      assert.ok(rule.description.length > 10 && rule.description.length <= 140, rule.symbol);
      assert.ok(rule.weight >= 0 && rule.weight <= 2.5, `${rule.symbol}: ${rule.weight}`);
    }
  });

  test('a rule that fires scores its weight', () => {
    const verdict = fired(message({ set: { Date: null } })).get('DATE_MISSING');
    assert.equal(verdict?.score, 1);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Phrases: scaling, cap, one language per phrase, admin lists

describe('rules: phrases', () => {
  test('the score grows with distinct phrases and stops at the weight', () => {
    const one = fired(message({ text: 'You have won.' })).get('SPAM_PHRASE_EN');
    const two = fired(message({ text: 'You have won. Claim your prize.' })).get('SPAM_PHRASE_EN');
    const many = fired(
      message({
        text: 'You have won. Claim your prize. Risk free. Act now. Dear friend. Western Union. Moneygram.',
      }),
    ).get('SPAM_PHRASE_EN');
    assert.equal(one?.score, 0.5);
    assert.equal(two?.score, 1);
    assert.equal(many?.score, 2);
  });

  test('a phrase repeated counts once', () => {
    assert.equal(fired(message({ text: 'You have won. '.repeat(50) })).get('SPAM_PHRASE_EN')?.score, 0.5);
  });

  test('a phrase counts under one language only', () => {
    const verdicts = fired(message({ text: 'viagra cialis' }));
    assert.ok(verdicts.has('SPAM_PHRASE_EN'));
    for (const l of ['IT', 'DE', 'FR', 'ES']) assert.ok(!verdicts.has(`SPAM_PHRASE_${l}`), l);
  });

  test('admin phrases extend a built-in language and add new ones', () => {
    const overrides = {
      phrases: { it: ['offerta del secolo'], pt: ['ganhe dinheiro rápido'] },
      weights: { SPAM_PHRASE_PT: 3 },
    };
    const verdicts = fired(message({ text: 'Offerta del secolo! Ganhe dinheiro rapido.' }), overrides);
    assert.equal(verdicts.get('SPAM_PHRASE_IT')?.score, 0.5);
    assert.equal(verdicts.get('SPAM_PHRASE_PT')?.score, 0.75);
  });

  test('phrases_for_full_weight changes the scale', () => {
    const verdict = fired(message({ text: 'You have won.' }), { phrases_for_full_weight: 1 }).get(
      'SPAM_PHRASE_EN',
    );
    assert.equal(verdict?.score, 2);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Weights and admin rules

describe('rules: weights and admin rules', () => {
  test('a weight overrides the default', () => {
    assert.equal(
      fired(message({ set: { Date: null } }), { weights: { DATE_MISSING: 3.5 } }).get('DATE_MISSING')?.score,
      3.5,
    );
  });

  test('weight 0 still reports the rule, without score', () => {
    const verdict = fired(message({ set: { Date: null } }), { weights: { DATE_MISSING: 0 } }).get(
      'DATE_MISSING',
    );
    assert.equal(verdict?.score, 0);
  });

  const custom = [
    {
      symbol: 'LOCAL_CASINO',
      target: 'header:Subject',
      pattern: '/c[a4]sin[o0ò]/i',
      weight: 2.5,
      description: 'casino in the subject',
    },
    {
      symbol: 'LOCAL_WIRE',
      target: 'body',
      pattern: '/IBAN\\s{0,3}[A-Z]{2}\\d{2}/',
      weight: 1,
      description: 'an IBAN in the text',
    },
    {
      symbol: 'LOCAL_BAD_TLD',
      target: 'url',
      pattern: '/^https?:\\/\\/[^/]+\\.(?:zip|mov)(?:[/:]|$)/i',
      weight: 1.5,
      description: 'links to .zip/.mov',
    },
    {
      symbol: 'LOCAL_MAILER',
      target: 'header:X-Mailer',
      pattern: '/^Bulk ?Sender/i',
      weight: 1,
      description: 'a bulk mailer',
    },
  ];

  test('admin rules match headers (decoded), body lines and URLs, with their weight and what matched', () => {
    const verdicts = fired(
      message({
        set: { Subject: '=?utf-8?Q?Il_miglior_c4sin=C3=B2?=' },
        add: [['X-Mailer', 'BulkSender 2.1']],
        text: 'Paga su IBAN IT60X0542811101000000123456 subito.\nhttps://download.example.zip/file',
      }),
      { custom },
    );
    assert.equal(verdicts.get('LOCAL_CASINO')?.score, 2.5);
    assert.match(verdicts.get('LOCAL_CASINO')?.reason ?? '', /c4sinò/);
    assert.equal(verdicts.get('LOCAL_WIRE')?.score, 1);
    assert.equal(verdicts.get('LOCAL_BAD_TLD')?.score, 1.5);
    assert.equal(verdicts.get('LOCAL_MAILER')?.score, 1);
  });

  test('admin rules stay quiet when nothing matches', () => {
    const verdicts = fired(message(), { custom });
    for (const rule of custom) assert.ok(!verdicts.has(rule.symbol), rule.symbol);
  });

  test('an admin rule reports only a bounded excerpt of what it matched', () => {
    const verdicts = fired(message({ text: `start ${'x'.repeat(5000)} end` }), {
      custom: [
        { symbol: 'LOCAL_LONG', target: 'body', pattern: '/start x+/', weight: 1, description: 'long' },
      ],
    });
    assert.ok((verdicts.get('LOCAL_LONG')?.reason.length ?? 0) < 100);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Config validation

function problems(input: unknown): string[] {
  const result = rulesSchema.safeParse(input);
  return result.success ? [] : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

const rule = (pattern: string, extra: Record<string, unknown> = {}) => ({
  custom: [{ symbol: 'LOCAL_X', target: 'body', pattern, description: 'x', ...extra }],
});

describe('rules: config validation', () => {
  test('the defaults parse', () => {
    const parsed = rulesSchema.parse({});
    assert.equal(parsed.mode, 'enforce');
    assert.equal(parsed.max_body_chars, 300_000);
    assert.equal(parsed.max_urls, 1000);
    assert.ok(parsed.shorteners.includes('bit.ly'));
  });

  test('an unknown weight symbol is refused, naming the closest and the valid ones', () => {
    const [problem, ...rest] = problems({ weights: { DATE_MISING: 2 } });
    assert.equal(rest.length, 0);
    assert.match(
      problem ?? '',
      /^weights\.DATE_MISING: DATE_MISING is not a built-in rule \(did you mean DATE_MISSING\?\); use one of: DATE_MISSING, DATE_MALFORMED/,
    );
    assert.match(problem ?? '', /URL_TEXT_MISMATCH/);
  });

  test('a phrase symbol needs its phrase list', () => {
    assert.match(
      problems({ weights: { SPAM_PHRASE_PT: 1 } })[0] ?? '',
      /no phrase list for language pt; add phrases\.pt/,
    );
    assert.deepEqual(problems({ weights: { SPAM_PHRASE_PT: 1 }, phrases: { pt: ['ganhe dinheiro'] } }), []);
    assert.deepEqual(problems({ weights: { SPAM_PHRASE_IT: 1 } }), []);
  });

  test('a bad regex is refused with the reason', () => {
    assert.match(
      problems(rule('/(unclosed/'))[0] ?? '',
      /custom\.0\.pattern: not a valid regex \(Invalid regular expression: .*Unterminated group\)/,
    );
  });

  test('patterns that backtrack without bound are refused', () => {
    assert.match(problems(rule('/(a+)+b/'))[0] ?? '', /repeated group contains a repetition/);
    assert.match(problems(rule('/(?:a|ab)*c/'))[0] ?? '', /repeated group contains alternatives/);
    assert.match(problems(rule('/(\\w+)\\s\\1/'))[0] ?? '', /back-reference/);
    assert.match(problems(rule('/.*.*x/'))[0] ?? '', /combine into more than 100000 ways.*\\s\{1,5\}/);
    assert.match(problems(rule('/\\w+\\s*\\w+x/'))[0] ?? '', /combine/);
    assert.match(problems(rule('/[a-z]+[a-z0-9]+\\.ru/'))[0] ?? '', /combine/);
  });

  test('safe patterns are accepted', () => {
    for (const pattern of [
      '/cheap\\s+meds/i',
      '/buy\\s{1,5}cheap\\s+meds/i',
      '/buy\\s+cheap\\s+meds/i',
      '/cheap.{0,40}meds\\s+now/is',
      '/(?:viagra|cialis)\\b/i',
      '/[a-z]+@[a-z]+\\.ru\\b/u',
      '/^\\s*$x/m',
      '/\\p{Lu}{20}/u',
    ])
      assert.deepEqual(problems(rule(pattern)), [], pattern);
  });

  test('pattern form, flags, length and empty matches', () => {
    assert.match(problems(rule('cheap meds'))[0] ?? '', /not a \/pattern\/flags regex/);
    assert.match(problems(rule('/cheap/g'))[0] ?? '', /flags g not allowed/);
    assert.match(problems(rule(`/${'a'.repeat(600)}/`))[0] ?? '', /custom\.0\.pattern/);
    assert.match(problems(rule('/a*/'))[0] ?? '', /matches empty text/);
  });

  test('admin symbols: form, no clash with built-ins, no duplicates; targets', () => {
    assert.match(problems(rule('/x/', { symbol: 'lower' }))[0] ?? '', /not a symbol/);
    assert.match(problems(rule('/x/', { symbol: 'DATE_MISSING' }))[0] ?? '', /is a built-in symbol/);
    assert.match(problems(rule('/x/', { target: 'headers' }))[0] ?? '', /not a target/);
    const twice = { custom: [rule('/x/').custom[0], rule('/y/').custom[0]] };
    assert.match(problems(twice)[0] ?? '', /custom\.1\.symbol: LOCAL_X is used by an earlier admin rule/);
  });

  test('lists and bounds', () => {
    assert.match(problems({ shorteners: ['not a domain'] })[0] ?? '', /not a domain name/);
    assert.match(problems({ phrases: { ita: ['x y'] } })[0] ?? '', /phrases\.ita/);
    assert.ok(problems({ max_urls: 0 }).length > 0);
    assert.ok(problems({ budget_ms: 1 }).length > 0);
    assert.ok(problems({ unknown_key: 1 }).length > 0);
  });

  test('compilePattern is the check the schema runs', () => {
    const compiled = compilePattern('/cheap\\s+meds/i');
    assert.ok(compiled.ok && compiled.regex.test('CHEAP  meds'));
  });
});

// ---------------------------------------------------------------------------------------------------------
// Helpers that the rules rely on

describe('rules: helpers', () => {
  test('RFC 5322 dates', () => {
    assert.equal(parseRfc5322Date('Tue, 14 May 2024 12:00:00 +0200'), NOW);
    assert.equal(parseRfc5322Date('14 May 2024 10:00 GMT'), NOW);
    assert.equal(parseRfc5322Date('Tue, 14 May 2024 06:00:00 EDT'), NOW);
    assert.equal(parseRfc5322Date('Tue, 14 May 2024 25:00:00 +0000'), undefined);
    assert.equal(parseRfc5322Date('yesterday'), undefined);
  });

  test('URL judgement', () => {
    assert.equal(inspectUrl('mailto:a@b.example'), undefined);
    assert.equal(inspectUrl('https://www.bbc.co.uk/news')?.domain, 'bbc.co.uk');
    assert.equal(inspectUrl('http://8.8.8.8/')?.publicIp, '8.8.8.8');
    assert.equal(inspectUrl('http://10.1.2.3/')?.publicIp, undefined);
    assert.match(inspectUrl('http://127.1/')?.obfuscation ?? '', /hex, octal or one number/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Bounds: bad input finishes, and what was read is scored

const SANITY_MS = 2000;
/** Tests of the size bounds take the time budget out of play (a loaded machine would spend it first); the
 * budget has its own test, on a fake clock. */
const NO_BUDGET = { budget_ms: 10_000 };

function timed(
  facts: MessageFacts,
  overrides: Record<string, unknown> = {},
): { verdicts: Map<string, ScanVerdict>; ms: number } {
  const started = performance.now();
  const verdicts = fired(facts, overrides);
  return { verdicts, ms: performance.now() - started };
}

describe('rules: bounds', () => {
  test('100 000 words: cut, partial, still scored', () => {
    const { verdicts, ms } = timed(
      message({ set: { Date: null }, text: `You have won! ${words(100_000, 'BLAH')}` }),
      NO_BUDGET,
    );
    assert.ok(ms < SANITY_MS, `${ms} ms`);
    assert.ok(verdicts.has('RULES_PARTIAL'));
    assert.ok(verdicts.has('DATE_MISSING'));
    assert.ok(verdicts.has('SPAM_PHRASE_EN'));
    assert.ok(verdicts.has('BODY_EXCESS_CAPS'));
  });

  test('10 000 URLs: the first max_urls judged, partial', () => {
    const links = Array.from(
      { length: 10_000 },
      (_, i) => `<a href="http://bit.ly/x${i}">http://site${i}.example.com/</a>`,
    );
    const { verdicts, ms } = timed(message({ html: html(links.join('\n')) }), {
      ...NO_BUDGET,
      max_body_chars: 10_000_000,
    });
    assert.ok(ms < SANITY_MS, `${ms} ms`);
    assert.match(verdicts.get('RULES_PARTIAL')?.reason ?? '', /URLs past the first 1000/);
    assert.match(verdicts.get('URL_SHORTENER')?.reason ?? '', /^\d+ shortened links/);
    assert.ok(verdicts.has('URL_TEXT_MISMATCH'));
  });

  test('10 000 URLs in plain text', () => {
    const text = Array.from({ length: 10_000 }, (_, i) => `http://0x7f00000${i % 10}/p${i}`).join(' ');
    const { verdicts, ms } = timed(message({ text }), { ...NO_BUDGET, max_urls: 100 });
    assert.ok(ms < SANITY_MS, `${ms} ms`);
    assert.ok(verdicts.has('URL_OBFUSCATED'));
    assert.match(verdicts.get('RULES_PARTIAL')?.reason ?? '', /URLs past the first 100/);
  });

  const pathological: [string, string][] = [
    ['100 000 nested divs', `${'<div>'.repeat(100_000)}deep${'</div>'.repeat(100_000)}`],
    ['unclosed tables', '<table><tr><td>'.repeat(30_000)],
    ['stray closing tags', '</span></font>'.repeat(40_000)],
    ['an endless attribute', `<div style="${'color:red;'.repeat(100_000)}">x</div>`],
    ['tag soup', '<<a<b<<c href=">'.repeat(30_000)],
    ['endless comment', `<!--${'-'.repeat(500_000)}`],
    ['entities', '&#x41;&amp;&nbsp;&bogus;'.repeat(50_000)],
  ];
  for (const [name, body] of pathological) {
    test(`pathological HTML: ${name}`, () => {
      const { verdicts, ms } = timed(message({ set: { Date: null }, html: body }), {
        max_body_chars: 2_000_000,
      });
      assert.ok(ms < SANITY_MS, `${ms} ms`);
      assert.ok(verdicts.has('DATE_MISSING'), 'header rules still scored');
    });
  }

  test('an admin pattern at its worst over a long line stays bounded', () => {
    const { verdicts, ms } = timed(message({ text: 'a'.repeat(300_000) }), {
      custom: [{ symbol: 'LOCAL_AB', target: 'body', pattern: '/a*b/', weight: 1, description: 'quadratic' }],
    });
    assert.ok(ms < SANITY_MS, `${ms} ms`);
    assert.ok(!verdicts.has('LOCAL_AB'));
  });

  test('a spent time budget: partial, header rules still scored', () => {
    let t = 0;
    const scanner = createRulesScanner(settings({ budget_ms: 10 }), {
      now: () => NOW,
      clock: () => (t += 100),
    });
    const verdicts = scanner.scan(
      message({ set: { Date: null }, html: html(`<p>${words(20_000)}</p>`) }),
      context,
    ) as ScanVerdict[];
    const bySymbol = new Map(verdicts.map((v) => [v.symbol, v]));
    assert.match(bySymbol.get('RULES_PARTIAL')?.reason ?? '', /time budget/);
    assert.ok(bySymbol.has('DATE_MISSING'));
  });

  test('an aborted scan stops early too', () => {
    const controller = new AbortController();
    controller.abort();
    const scanner = createRulesScanner(settings(), { now: () => NOW });
    const verdicts = scanner.scan(message({ html: html('<p>x</p>') }), {
      ...context,
      signal: controller.signal,
    }) as ScanVerdict[];
    assert.ok(verdicts.some((v) => v.symbol === 'RULES_PARTIAL'));
  });
});

// ---------------------------------------------------------------------------------------------------------
// Realistic messages

const NEWSLETTER = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Novità di maggio</title>
<style>body { font-family: Arial, sans-serif; } .btn { background: #0a7d32; color: #ffffff; }</style></head>
<body style="margin:0;background-color:#f4f4f4">
<div style="display:none;max-height:0;overflow:hidden">Le novità di maggio dalla libreria: incontri, letture e orari estivi.${'&zwnj;&nbsp;'.repeat(60)}</div>
<table width="100%" bgcolor="#f4f4f4"><tr><td align="center">
<table width="600" bgcolor="#ffffff"><tr><td style="padding:20px">
<img src="https://www.libreria-esempio.it/img/logo.png" width="200" height="60" alt="Libreria Esempio">
<h1>Le novità di maggio</h1>
<p>Cara lettrice, caro lettore, questo mese in libreria arrivano tre incontri con gli autori, un gruppo di lettura
dedicato ai classici e il nuovo orario estivo. Giovedì 23 alle 18:30 presentiamo il romanzo di Giulia Neri;
sabato 25 laboratorio per bambini dalle 10 alle 12. Dal primo giugno siamo aperti anche la domenica mattina.</p>
<p>Il programma completo è sul sito: <a href="https://www.libreria-esempio.it/eventi">www.libreria-esempio.it/eventi</a>.</p>
<table><tr><td class="btn" bgcolor="#0a7d32" style="padding:12px"><a href="https://libreria-esempio.us5.list-manage.com/track/click?u=abc&id=1" style="color:#ffffff">Scopri il programma</a></td></tr></table>
<p style="font-size:12px;color:#666666">Ricevi questa email perché sei iscritto alla newsletter della Libreria Esempio,
via Roma 1, 40100 Bologna. <a href="https://libreria-esempio.us5.list-manage.com/unsubscribe?u=abc">Cancella l'iscrizione</a>.</p>
</td></tr></table></td></tr></table>
<img src="https://libreria-esempio.us5.list-manage.com/track/open.php?u=abc" width="1" height="1">
</body></html>`;

const SPAM_HTML = `<html><body>
<p><font size="5"><b>CONGRATULATIONS!!! YOU HAVE BEEN SELECTED</b></font></p>
<p>Dear Friend, you have won a brand new iPhone. Claim your prize now, it is 100% FREE and RISK FREE!!!</p>
<p><a href="http://0x2d210c09/claim.php"><img src="http://45.33.12.9/iphone.jpg" width="500" height="400"></a></p>
<p>Login to confirm: <a href="http://secure-verify.evil.example/paypal">https://www.paypal.com/verify</a></p>
<p><a href="https://bit.ly/3win">CLAIM NOW!!!</a></p>
<div style="display:none">${words(80, 'harmless')}</div>
</body></html>`;

describe('rules: realistic messages', () => {
  test('a personal message scores nothing', () => {
    const verdicts = scan(message());
    assert.deepEqual(verdicts, []);
  });

  test('a ham newsletter scores under 1', () => {
    const verdicts = scan(
      message({
        set: {
          From: 'Libreria Esempio <newsletter@libreria-esempio.it>',
          Subject: 'Le novità di maggio in libreria',
          'Content-Type': 'multipart/alternative; boundary="b1"',
        },
        add: [
          ['List-Unsubscribe', '<https://libreria-esempio.us5.list-manage.com/unsubscribe?u=abc>'],
          ['Reply-To', 'info@libreria-esempio.it'],
        ],
        text:
          'Le novità di maggio. Cara lettrice, caro lettore, questo mese in libreria arrivano tre incontri con gli autori, ' +
          'un gruppo di lettura dedicato ai classici e il nuovo orario estivo. Giovedì 23 alle 18:30 presentiamo il romanzo ' +
          'di Giulia Neri; sabato 25 laboratorio per bambini dalle 10 alle 12. Dal primo giugno siamo aperti anche la ' +
          'domenica mattina. Il programma completo: https://www.libreria-esempio.it/eventi',
        html: NEWSLETTER,
      }),
    );
    const score = total(verdicts);
    assert.ok(
      score < 1,
      `${score}: ${verdicts.map((v) => `${v.symbol} ${v.score} (${v.reason})`).join('; ')}`,
    );
  });

  test('a ham HTML-only notice with a Bcc list scores under 1', () => {
    const verdicts = scan(
      message({
        set: { To: 'undisclosed-recipients:;', Subject: 'Orari estivi dello studio' },
        text: null,
        html: html(
          `<p>${BASE_TEXT}</p><p>Studio Rossi — <a href="https://www.example.it">www.example.it</a></p>`,
        ),
      }),
    );
    const score = total(verdicts);
    assert.ok(score < 1, `${score}: ${verdicts.map((v) => v.symbol).join(', ')}`);
  });

  test('a spam message scores over 5', () => {
    const verdicts = scan(
      message({
        set: {
          Date: 'Thu, 01 Jan 2099 00:00:00 +0000',
          'Message-ID': null,
          From: '"service@paypal.com" <promo@mailer.evil.example>',
          To: 'undisclosed-recipients:;',
          Subject: 'CONGRATULATIONS YOU HAVE WON!!!',
          'MIME-Version': null,
          'Content-Type': 'text/html; charset=us-ascii',
        },
        add: [['Reply-To', 'claims.office@gmail.com']],
        text: null,
        html: SPAM_HTML,
      }),
    );
    const score = total(verdicts);
    assert.ok(score > 5, `${score}: ${verdicts.map((v) => v.symbol).join(', ')}`);
    for (const symbol of [
      'SPAM_PHRASE_EN',
      'URL_TEXT_MISMATCH',
      'URL_OBFUSCATED',
      'FROM_NAME_SPOOF',
      'DATE_FUTURE',
    ])
      assert.ok(
        verdicts.some((v) => v.symbol === symbol),
        symbol,
      );
  });

  test('an Italian phishing message scores over 5', () => {
    const verdicts = scan(
      message({
        set: {
          From: 'Poste Italiane <noreply@poste-verifica.example>',
          Subject: 'Il tuo account è stato sospeso',
          'Content-Type': 'multipart/alternative; boundary="x"',
        },
        add: [['Reply-To', 'assistenza.poste@libero.it']],
        text: 'Gentile cliente, il tuo account è stato sospeso. Verifica la tua identità entro 24 ore.',
        html: html(
          '<p>Gentile cliente, il tuo account è stato sospeso. Verifica la tua identità entro 24 ore: ' +
            '<a href="http://185.22.14.9/poste/login.php">https://www.poste.it/login</a></p>' +
            '<form action="http://185.22.14.9/poste/ok.php"><input type="password" name="pin"></form>',
        ),
        attachments: [{ filename: 'Avviso_pagamento.html', contentType: 'text/html' }],
      }),
    );
    const score = total(verdicts);
    assert.ok(score > 5, `${score}: ${verdicts.map((v) => v.symbol).join(', ')}`);
  });
});
