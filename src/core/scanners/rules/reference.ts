/**
 * Renders docs/rules.md from the rule table itself (table.ts) and the default lists, so the table in the docs
 * cannot drift from the code: `npm run docs:reference` writes it, and a test fails when the checked-in copy
 * differs.
 */
import { DEFAULT_FREEMAIL, DEFAULT_REDIRECTORS, DEFAULT_SHORTENERS } from '../rules.js';
import { BUILTIN_PHRASE_LANGUAGES, BUILTIN_PHRASES } from './phrases.js';
import { BUILTIN_RULES } from './table.js';

function cell(text: string): string {
  return text.replace(/[|<>]/g, '\\$&').replace(/\n/g, ' ');
}

function domains(list: readonly string[]): string {
  return list.map((d) => `\`${d}\``).join(', ');
}

export function renderRulesReference(): string {
  const out = [
    '# Built-in content rules',
    '',
    '<!-- Generated from src/core/scanners/rules/table.ts by `npm run docs:reference`; do not edit by hand. -->',
    '',
    'The `rules` scanner (`filter.rules`) reports each rule that fires as a symbol worth its weight; the',
    "message's score is the sum of every enforcing scanner's symbols. Change a weight with",
    '`filter.rules.weights: { SYMBOL: score }` (0 reports the symbol without score); add your own rules with',
    '`filter.rules.custom`. [The spam scoring guide](spam-scoring.md#the-rules) explains both.',
    '',
    '| symbol | reads | default weight | fires when |',
    '|---|---|---|---|',
  ];
  for (const rule of BUILTIN_RULES) {
    out.push(`| \`${rule.symbol}\` | ${rule.reads} | ${rule.weight} | ${cell(rule.description)} |`);
  }
  out.push(
    '',
    'A `SPAM_PHRASE_<LANG>` symbol earns its weight × (distinct phrases found ÷',
    '`filter.rules.phrases_for_full_weight`), capped at the whole weight. A language added in',
    '`filter.rules.phrases` gets its own symbol with the same default weight.',
    '',
    '## Built-in phrase lists',
    '',
    '| language | symbol | phrases |',
    '|---|---|---|',
  );
  for (const language of BUILTIN_PHRASE_LANGUAGES) {
    out.push(
      `| ${language} | \`SPAM_PHRASE_${language.toUpperCase()}\` | ${BUILTIN_PHRASES[language].length} |`,
    );
  }
  out.push(
    '',
    'The lists are in src/core/scanners/rules/phrases.ts. Add to them with `filter.rules.phrases.<lang>`.',
    '',
    '## Default lists',
    '',
    'Each replaces its default when set in the config (write the defaults you want to keep, too).',
    '',
    `- \`filter.rules.shorteners\` (URL_SHORTENER): ${domains(DEFAULT_SHORTENERS)}.`,
    `- \`filter.rules.redirectors\` (exempt from URL_TEXT_MISMATCH): ${domains(DEFAULT_REDIRECTORS)}.`,
    `- \`filter.rules.freemail\` (REPLYTO_FREEMAIL): ${domains(DEFAULT_FREEMAIL)}.`,
  );
  return `${out.join('\n')}\n`;
}
