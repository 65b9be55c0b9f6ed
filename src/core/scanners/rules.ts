/**
 * rules — content rules over the headers and the decoded text and HTML bodies, SpamAssassin-style: a table of
 * named tests (rules/table.ts), each worth a weight, plus the admin's own rules. Scoring only: every rule
 * that fires is one verdict (its symbol, score = weight, and a short reason naming what matched, never the
 * content); what the sum does (tag, quarantine) is `filter.spam`'s decision.
 *
 *   headers      DATE_MISSING, DATE_MALFORMED, DATE_FUTURE, DATE_PAST, MSGID_MISSING, MSGID_MALFORMED,
 *                FROM_MISSING, FROM_MALFORMED, FROM_NAME_SPOOF, REPLYTO_DIFFERS, REPLYTO_FREEMAIL, TO_MISSING,
 *                TO_UNDISCLOSED, SUBJECT_EMPTY, SUBJECT_ALL_CAPS, RECEIVED_MISSING, RECEIVED_FORGED,
 *                MIME_VERSION_MISSING, CHARSET_UNKNOWN
 *   text         CHARSET_INVALID, ALT_PARTS_DIFFER, BODY_EXCESS_CAPS, EXCESS_EXCLAMATION, SPAM_PHRASE_<LANG>
 *   html         HTML_ONLY, HTML_HIDDEN_TEXT, HTML_IMAGE_ONLY, HTML_FORM, URL_TEXT_MISMATCH
 *   urls         URL_SHORTENER, URL_IP_LITERAL, URL_OBFUSCATED
 *   attachments  SUSPICIOUS_ATTACHMENT_NAME, ATTACHMENT_NAME_ODD
 *   scan         RULES_PARTIAL (weight 0: the bounds below cut the reading short)
 *   admin        `custom[]`: a /regex/ over a header, the body text or the URLs
 *
 * Compiled once, at creation: weights resolved, phrase lists merged into one trie, list sets built, admin
 * patterns compiled (they were validated at config load: rules/pattern.ts explains the backtracking guard).
 *
 * Bounded per message: at most `max_body_chars` of body text and HTML, `max_urls` distinct URLs, and
 * `budget_ms` of time (checked between phases, between slices of HTML, URLs and admin-pattern pieces). What
 * was read is scored even when a bound cut the rest, and RULES_PARTIAL says what was cut. The scan is
 * synchronous, so the stage's deadline cannot interrupt it; the budget is what keeps it short. It does not
 * throw on any input: malformed headers, broken HTML and unknown charsets are findings, not errors.
 */
import { z } from 'zod';
import type { ContentScanner, ScanVerdict } from '../content.js';
import { modeSchema, scoreSchema } from '../schema.js';
import { analyseMessage, type MessageView } from './rules/analyse.js';
import { decodeHeaderValue } from './rules/headers.js';
import { BUILTIN_PHRASE_LANGUAGES, BUILTIN_PHRASES, compilePhrases } from './rules/phrases.js';
import { compilePattern, MAX_PATTERN_CHARS, MAX_PIECE } from './rules/pattern.js';
import {
  BUILTIN_RULES,
  type BuiltinRule,
  PHRASE_WEIGHT,
  phraseRule,
  quote,
  type RuleLists,
} from './rules/table.js';

export { BUILTIN_RULES, type BuiltinRule } from './rules/table.js';
export { BUILTIN_PHRASES } from './rules/phrases.js';
export { compilePattern } from './rules/pattern.js';

// ---------------------------------------------------------------------------------------------------------
// Default lists

// prettier-ignore
/** URL shorteners whose links hide their destination. Not the big platforms' own (t.co, lnkd.in, youtu.be). */
export const DEFAULT_SHORTENERS: readonly string[] = [
  'bit.ly', 'bitly.com', 'tinyurl.com', 'goo.gl', 'ow.ly', 'is.gd', 'v.gd', 'buff.ly', 'rebrand.ly', 'cutt.ly',
  'shorturl.at', 'tiny.cc', 'rb.gy', 'bit.do', 't.ly', 's.id', 'qrco.de', 'shorte.st', 'adf.ly', 'soo.gd',
  'x.gd', 'tiny.one', 'urlz.fr', 'clck.ru', 'u.to', 'tr.im', 'short.io', 'bl.ink', 'snip.ly', 'gg.gg',
];

// prettier-ignore
/** Click-tracking redirectors of mailing services and mail-security gateways: their links name other sites. */
export const DEFAULT_REDIRECTORS: readonly string[] = [
  'list-manage.com', 'mailchimp.com', 'mcusercontent.com', 'sendgrid.net', 'mandrillapp.com', 'mailgun.org',
  'hubspotlinks.com', 'hs-sites.com', 'rs6.net', 'constantcontact.com', 'exacttarget.com', 'awstrack.me',
  'mjt.lu', 'sendibt2.com', 'sendibt3.com', 'brevo.com', 'createsend.com', 'cmail19.com', 'cmail20.com',
  'klclick.com', 'klclick1.com', 'sparkpostmail.com', 'mailjet.com', 'substack.com', 'beehiiv.com',
  'safelinks.protection.outlook.com', 'urldefense.com', 'urldefense.proofpoint.com', 'mimecast.com',
  'google.com', 'linkedin.com', 'facebook.com', 'mailerlite.com', 'mlsend.com', 'aweber.com', 'convertkit-mail.com',
];

// prettier-ignore
/** Free mail providers (anyone can take an address there). */
export const DEFAULT_FREEMAIL: readonly string[] = [
  'gmail.com', 'googlemail.com', 'yahoo.com', 'yahoo.it', 'yahoo.co.uk', 'yahoo.fr', 'yahoo.de', 'yahoo.es',
  'ymail.com', 'hotmail.com', 'hotmail.it', 'hotmail.co.uk', 'hotmail.fr', 'outlook.com', 'outlook.it', 'live.com',
  'live.it', 'msn.com', 'aol.com', 'icloud.com', 'me.com', 'gmx.com', 'gmx.de', 'gmx.net', 'web.de', 'mail.com',
  'mail.ru', 'yandex.ru', 'yandex.com', 'protonmail.com', 'proton.me', 'zoho.com', 'libero.it', 'virgilio.it',
  'tiscali.it', 'alice.it', 'tim.it', 'email.it', 'inwind.it', 'iol.it', 'orange.fr', 'laposte.net', 'free.fr',
  'wanadoo.fr', 't-online.de', 'qq.com', '163.com', '126.com', 'rediffmail.com', 'tutanota.com',
];

// ---------------------------------------------------------------------------------------------------------
// The schema

const BUILTIN_SYMBOLS: readonly string[] = BUILTIN_RULES.map((r) => r.symbol);
const PHRASE_SYMBOL = /^SPAM_PHRASE_([A-Z]{2})$/;

const domainSchema = z
  .string()
  .regex(
    /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/i,
    'not a domain name; write it like bit.ly',
  );

/** The closest of `names` to `name` (edit distance ≤ 3), for a "did you mean". */
function closest(name: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 4;
  for (const candidate of names) {
    const a = name.toUpperCase();
    const row = Array.from({ length: candidate.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let diagonal = row[0] ?? 0;
      row[0] = i;
      for (let j = 1; j <= candidate.length; j++) {
        const above = row[j] ?? 0;
        row[j] = Math.min(
          above + 1,
          (row[j - 1] ?? 0) + 1,
          diagonal + (a[i - 1] === candidate[j - 1] ? 0 : 1),
        );
        diagonal = above;
      }
    }
    const distance = row[candidate.length] ?? Infinity;
    if (distance < bestDistance) {
      bestDistance = distance;
      best = candidate;
    }
  }
  return best;
}

const patternSchema = z
  .string()
  .max(MAX_PATTERN_CHARS + 6)
  .superRefine((value, ctx) => {
    const compiled = compilePattern(value);
    if (!compiled.ok) ctx.addIssue({ code: 'custom', message: compiled.problem });
  });

const customRuleSchema = z.strictObject({
  symbol: z
    .string()
    .regex(/^[A-Z][A-Z0-9_]{1,63}$/, 'not a symbol; use upper-case letters, digits and _, e.g. LOCAL_CASINO')
    .describe('The symbol it reports, upper case (not one of the built-in symbols)'),
  target: z
    .string()
    .regex(
      /^(?:body|url|header:[!-9;-~]{1,76})$/,
      'not a target; use body, url or header:<Name> (e.g. header:Subject)',
    )
    .describe(
      'What the pattern is matched against: `body` (visible text, line by line), `url` (each URL) or `header:<Name>` (each such field, decoded)',
    ),
  pattern: patternSchema.describe(
    `A /regex/flags (flags i, m, s, u; at most ${MAX_PATTERN_CHARS} characters; no back-references or nested repetition)`,
  ),
  weight: scoreSchema.default(1).describe('Score when the pattern matches (once per message)'),
  description: z.string().min(1).max(200).describe('One line for the logs and the docs'),
});

export const rulesSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    weights: z
      .record(z.string(), scoreSchema)
      .default({})
      .superRefine((weights, ctx) => {
        for (const symbol of Object.keys(weights)) {
          if (BUILTIN_SYMBOLS.includes(symbol) || PHRASE_SYMBOL.test(symbol)) continue;
          const near = closest(symbol, BUILTIN_SYMBOLS);
          ctx.addIssue({
            code: 'custom',
            path: [symbol],
            message: `${symbol} is not a built-in rule${near ? ` (did you mean ${near}?)` : ''}; use one of: ${BUILTIN_SYMBOLS.join(', ')} (SPAM_PHRASE_<LANG> for a language of \`phrases\`; admin rules carry their own weight)`,
          });
        }
      })
      .describe('Score per built-in symbol, overriding its default (0 reports it without score)'),
    phrases: z
      .record(
        z.string().regex(/^[a-z]{2}$/, 'not a language code; use two lower-case letters, e.g. it'),
        z.array(z.string().trim().min(2).max(100)).max(10_000),
      )
      .default({})
      .describe(
        'Extra spam phrases per language (two-letter code → phrases), added to the built-in en, it, de, fr, es lists; a new language scores as SPAM_PHRASE_<LANG>',
      ),
    phrases_for_full_weight: z
      .number()
      .int()
      .min(1)
      .max(50)
      .default(4)
      .describe('Distinct phrases of one language at which its SPAM_PHRASE_ symbol earns its whole weight'),
    custom: z
      .array(customRuleSchema)
      .max(500)
      .default([])
      .describe('Admin rules: { symbol, target, pattern, weight, description }'),
    shorteners: z
      .array(domainSchema)
      .max(10_000)
      .default([...DEFAULT_SHORTENERS])
      .describe('URL-shortener domains (URL_SHORTENER); subdomains match too'),
    redirectors: z
      .array(domainSchema)
      .max(10_000)
      .default([...DEFAULT_REDIRECTORS])
      .describe('Click-tracking domains whose links may show another site (exempt from URL_TEXT_MISMATCH)'),
    freemail: z
      .array(domainSchema)
      .max(10_000)
      .default([...DEFAULT_FREEMAIL])
      .describe('Free mail providers (REPLYTO_FREEMAIL)'),
    max_body_chars: z
      .number()
      .int()
      .min(1000)
      .max(10_000_000)
      .default(300_000)
      .describe('Characters of body text and HTML read per message (more is cut; RULES_PARTIAL)'),
    max_urls: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(1000)
      .describe('Distinct URLs judged per message (more are not; RULES_PARTIAL)'),
    budget_ms: z
      .number()
      .int()
      .min(10)
      .max(10_000)
      .default(250)
      .describe('Time the rules may spend on one message; past it, what was read is scored (RULES_PARTIAL)'),
  })
  .superRefine((rules, ctx) => {
    const seen = new Set<string>();
    for (const [i, rule] of rules.custom.entries()) {
      if (BUILTIN_SYMBOLS.includes(rule.symbol) || PHRASE_SYMBOL.test(rule.symbol))
        ctx.addIssue({
          code: 'custom',
          path: ['custom', i, 'symbol'],
          message: `${rule.symbol} is a built-in symbol; choose another name, or set its weight in \`weights\``,
        });
      else if (seen.has(rule.symbol))
        ctx.addIssue({
          code: 'custom',
          path: ['custom', i, 'symbol'],
          message: `${rule.symbol} is used by an earlier admin rule; give each rule its own symbol`,
        });
      seen.add(rule.symbol);
    }
    const languages = new Set([...BUILTIN_PHRASE_LANGUAGES, ...Object.keys(rules.phrases)]);
    for (const symbol of Object.keys(rules.weights)) {
      const language = PHRASE_SYMBOL.exec(symbol)?.[1]?.toLowerCase();
      if (language !== undefined && !languages.has(language))
        ctx.addIssue({
          code: 'custom',
          path: ['weights', symbol],
          message: `no phrase list for language ${language}; add phrases.${language}, or use one of: ${[...languages].map((l) => `SPAM_PHRASE_${l.toUpperCase()}`).join(', ')}`,
        });
    }
  })
  .describe('Content rules over headers, text, HTML, URLs and attachment names (scores; SpamAssassin-like)');

export type RulesSettings = z.infer<typeof rulesSchema>;

// ---------------------------------------------------------------------------------------------------------
// The scanner

export interface RulesDeps {
  /** Wall clock, ms since the epoch (Date checks). */
  readonly now?: () => number;
  /** Monotonic clock, ms (the time budget). */
  readonly clock?: () => number;
}

interface CustomRule {
  readonly symbol: string;
  readonly target: 'body' | 'url' | { readonly header: string };
  readonly regex: RegExp;
  readonly weight: number;
}

const MAX_REASON = 160;

/** Reported last, after the admin rules, whose time it also accounts for. */
const PARTIAL_RULE: BuiltinRule = (() => {
  const rule = BUILTIN_RULES.find((r) => r.symbol === 'RULES_PARTIAL');
  if (!rule) throw new Error('the rule table lost RULES_PARTIAL');
  return rule;
})();

/** Reasons go to logs and notices: one line, printable, bounded. */
function clipReason(reason: string): string {
  // eslint-disable-next-line no-control-regex
  const line = reason.replace(/[\x00-\x1f\x7f\u2028\u2029]/g, ' ');
  return line.length > MAX_REASON ? `${line.slice(0, MAX_REASON - 1)}…` : line;
}

/** Pieces of at most MAX_PIECE characters: each line, long lines cut. */
function* pieces(text: string): Generator<string> {
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    for (let at = 0; at < line.length; at += MAX_PIECE) yield line.slice(at, at + MAX_PIECE);
  }
}

function runCustom(
  rule: CustomRule,
  view: MessageView,
  overBudget: () => boolean,
): string | undefined | null {
  let subjects: Iterable<string>;
  if (rule.target === 'body') subjects = pieces(view.bodyText);
  else if (rule.target === 'url') subjects = view.urls.map((u) => u.raw.slice(0, MAX_PIECE));
  else subjects = view.field(rule.target.header).map((v) => decodeHeaderValue(v).text.slice(0, MAX_PIECE));
  for (const subject of subjects) {
    if (overBudget()) return null;
    const match = rule.regex.exec(subject);
    if (match) return match[0];
  }
  return undefined;
}

export function createRulesScanner(settings: RulesSettings, deps: RulesDeps = {}): ContentScanner {
  const now = deps.now ?? Date.now;
  const clock = deps.clock ?? (() => performance.now());
  const lists: RuleLists = {
    shorteners: new Set(settings.shorteners.map((d) => d.toLowerCase())),
    redirectors: new Set(settings.redirectors.map((d) => d.toLowerCase())),
    freemail: new Set(settings.freemail.map((d) => d.toLowerCase())),
    phrasesForFullWeight: settings.phrases_for_full_weight,
  };
  const phraseLists: [string, readonly string[]][] = [];
  for (const language of BUILTIN_PHRASE_LANGUAGES)
    phraseLists.push([language, [...BUILTIN_PHRASES[language], ...(settings.phrases[language] ?? [])]]);
  const extraLanguages = Object.keys(settings.phrases).filter(
    (l) => !(BUILTIN_PHRASE_LANGUAGES as readonly string[]).includes(l),
  );
  for (const language of extraLanguages) phraseLists.push([language, settings.phrases[language] ?? []]);
  const matcher = compilePhrases(phraseLists);

  const table: BuiltinRule[] = [
    ...BUILTIN_RULES.filter((r) => r !== PARTIAL_RULE),
    ...extraLanguages.map((l) => phraseRule(l, PHRASE_WEIGHT)),
  ];
  const weights = new Map(
    [...table, PARTIAL_RULE].map((r) => [r.symbol, settings.weights[r.symbol] ?? r.weight]),
  );
  const custom: CustomRule[] = settings.custom.map((rule) => {
    const compiled = compilePattern(rule.pattern);
    // The schema refused every pattern that does not compile; this only guards a hand-built settings object.
    if (!compiled.ok) throw new Error(`filter.rules.custom ${rule.symbol}: ${compiled.problem}`);
    return {
      symbol: rule.symbol,
      target:
        rule.target === 'body' || rule.target === 'url'
          ? rule.target
          : { header: rule.target.slice('header:'.length) },
      regex: compiled.regex,
      weight: rule.weight,
    };
  });

  return {
    name: 'rules',
    scan(message, ctx): ScanVerdict[] {
      const deadline = clock() + settings.budget_ms;
      const overBudget = () => ctx.signal.aborted || clock() > deadline;
      const view = analyseMessage(
        message,
        matcher,
        { maxBodyChars: settings.max_body_chars, maxUrls: settings.max_urls, overBudget },
        now(),
      );
      const verdicts: ScanVerdict[] = [];
      const emit = (symbol: string, score: number, reason: string) =>
        verdicts.push({
          scanner: 'rules',
          symbol,
          score: Math.round(score * 100) / 100,
          reason: clipReason(reason),
        });
      const run = (rule: BuiltinRule, on: MessageView) => {
        const hit = rule.test(on, lists);
        if (hit) emit(rule.symbol, (weights.get(rule.symbol) ?? rule.weight) * (hit.factor ?? 1), hit.reason);
      };

      for (const rule of table) run(rule, view);
      const partial = [...view.partial];
      for (const rule of custom) {
        const found = runCustom(rule, view, overBudget);
        if (found === null) {
          partial.push(`time budget spent at admin rule ${rule.symbol}`);
          break;
        }
        if (found !== undefined) emit(rule.symbol, rule.weight, `matched ${quote(found, 60)}`);
      }
      run(PARTIAL_RULE, { ...view, partial });
      return verdicts;
    },
  };
}
