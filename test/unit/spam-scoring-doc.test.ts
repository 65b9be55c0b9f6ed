/**
 * docs/spam-scoring.md stays true to the code: its YAML examples load as config, its admin rules fire on the
 * messages they describe, and its header examples are what the filter writes (statusHeaders) for those
 * verdicts. The built-in rule table itself is generated (docs/rules.md, generated-docs.test.ts).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  type ContentScanner,
  type MessageFacts,
  type ScannerStage,
  scanMessage,
} from '../../src/core/content.js';
import { createRulesScanner } from '../../src/core/scanners/rules.js';
import { parseConfigText } from '../../src/config/load.js';
import { statusHeaders } from '../../src/filter/service.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const GUIDE = readFileSync(path.join(ROOT, 'docs/spam-scoring.md'), 'utf8');
const YAML_BLOCKS = [...GUIDE.matchAll(/^```yaml\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? '');

function load(yaml: string) {
  const result = parseConfigText(`local_domains: [example.org]\n${yaml}`, { kind: 'embedded' });
  if (!result.ok) assert.fail(`${yaml}\n${JSON.stringify(result.problems, null, 2)}`);
  return result.config;
}

test('every YAML example of the guide is a valid config', () => {
  assert.ok(YAML_BLOCKS.length >= 4, 'the guide lost its examples');
  for (const yaml of YAML_BLOCKS) load(yaml);
});

test('the guide’s admin rules and new phrase list fire on what they describe', async () => {
  const custom = YAML_BLOCKS.find((y) => y.includes('custom:'));
  const phrases = YAML_BLOCKS.find((y) => y.includes('phrases:'));
  assert.ok(custom !== undefined && phrases !== undefined);
  const scan = async (yaml: string, subject: string, body: string) => {
    const text = `${body}\n`;
    const message: MessageFacts = {
      envelope: { sender: 'a@example.com', recipients: ['b@example.org'] },
      size: text.length,
      headers: [
        { name: 'From', value: 'A <a@example.com>' },
        { name: 'To', value: 'b@example.org' },
        { name: 'Subject', value: subject },
      ],
      parts: [{ path: '1', depth: 0, contentType: 'text/plain', size: text.length, text }],
      problems: [],
      limitsHit: false,
    };
    const scanner = createRulesScanner(load(yaml).filter.rules);
    const verdicts = await scanner.scan(message, {
      source: { size: 0, chunks: async function* () {} },
      signal: new AbortController().signal,
    });
    return verdicts.map((v) => v.symbol);
  };
  const fired = await scan(
    custom,
    'URGENT: overdue invoice 4411',
    'Your casino  bonus waits at http://payments.zip/claim',
  );
  for (const symbol of ['LOCAL_CASINO', 'LOCAL_FAKE_INVOICE', 'LOCAL_BAD_TLD'])
    assert.ok(fired.includes(symbol), `${symbol} did not fire: ${fired.join(',')}`);
  assert.ok((await scan(phrases, 'hallo', 'Gefeliciteerd, u hebt gewonnen!')).includes('SPAM_PHRASE_NL'));
});

test('the guide’s header examples are what the filter writes', async () => {
  const stage = (name: string, found: [string, number][], mode: 'observe' | 'enforce' = 'enforce') => {
    const scanner: ContentScanner = {
      name,
      scan: () => found.map(([symbol, score]) => ({ scanner: name, symbol, score, reason: 'test' })),
    };
    return { scanner, mode, timeoutMs: 1000, onFailure: 'pass' } satisfies ScannerStage;
  };
  const spam = { tagAt: 5, holdAt: 12 };
  const message: MessageFacts = {
    envelope: { sender: '', recipients: [] },
    size: 0,
    headers: [],
    parts: [],
    problems: [],
    limitsHit: false,
  };
  const examples: ScannerStage[][] = [
    [
      stage('authentication', [
        ['DKIM_VALID', -0.2],
        ['DMARC_PASS', -0.5],
      ]),
      stage('bayes', [['BAYES_HAM_HIGH', -3]]),
    ],
    [
      stage('authentication', [['DKIM_INVALID', 1]]),
      stage('rules', [
        ['SUBJECT_ALL_CAPS', 1],
        ['SPAM_PHRASE_EN', 1],
      ]),
      stage('bayes', [['BAYES_SPAM', 4]]),
    ],
    [
      stage('authentication', [['DMARC_REJECT', 6]]),
      stage('rules', [
        ['FROM_NAME_SPOOF', 2],
        ['URL_TEXT_MISMATCH', 2],
      ]),
      stage('bayes', [['BAYES_SPAM_HIGH', 5]]),
    ],
  ];
  for (const stages of examples) {
    const decision = await scanMessage(stages, message, { size: 0, chunks: async function* () {} }, spam);
    const lines = statusHeaders(decision, 'mx.example.org', false, new Date('2026-11-23T02:30:00Z'), spam)
      .toString()
      .trimEnd()
      .split('\r\n');
    const block = `\`\`\`\n${lines.join('\n')}\n\`\`\``;
    assert.ok(GUIDE.includes(block), `the guide does not show:\n${block}`);
  }
});
