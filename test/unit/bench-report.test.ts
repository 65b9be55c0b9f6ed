/**
 * The one benchmark report (bench/report.ts): rows become one table with the ratio, target and verdict of each,
 * a broken part shows as BROKEN, a missing peer is named with its apt-get command before anything runs, and
 * docs/performance.md's table is replaced between its markers only.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import {
  benchPart,
  DOCS_BEGIN,
  DOCS_END,
  debianProgram,
  formatRatio,
  formatValue,
  missingRequirements,
  type PartOutcome,
  renderMarkdown,
  renderText,
  replaceDocsTable,
  type Report,
  type ResultRow,
} from '../../bench/report.js';

const row = (over: Partial<ResultRow> = {}): ResultRow => ({
  part: 'greylist',
  name: 'new triplets, SQLite, 8 conn',
  what: 'req/s',
  unit: 'req/s',
  postwarden: 6000,
  peerName: 'postgrey',
  peer: 1600,
  ratio: 3.75,
  target: '≥ 10× postgrey',
  pass: false,
  ...over,
});

const outcome = (over: Partial<PartOutcome> = {}): PartOutcome => ({
  name: 'greylist',
  title: 'greylisting',
  seconds: 100,
  others: 0.05,
  rows: [row()],
  detail: ['detail line'],
  raw: {},
  ...over,
});

const report = (parts: PartOutcome[]): Report => ({
  date: '2026-11-23T00:00:00.000Z',
  commit: 'abc1234',
  machine: {
    cpuModel: 'AMD EPYC',
    cores: 2,
    ramGiB: 24,
    kernel: 'Linux 6.18',
    os: 'Debian GNU/Linux 12 (bookworm)',
    node: 'v20.20.2',
    packages: { postgrey: '1.37-2' },
  },
  loadavgStart: [1, 1, 1],
  loadavgEnd: [2, 2, 2],
  seconds: 600,
  parts,
});

describe('benchmark report', () => {
  test('values and ratios are formatted by their unit', () => {
    assert.equal(formatValue(12_696.4, 'req/s'), '12,696 req/s');
    assert.equal(formatValue(1.921, 'ms'), '1.92 ms');
    assert.equal(formatValue(0.07, '%'), '0.07%');
    assert.equal(formatValue(NaN, 'req/s'), '-');
    assert.equal(formatRatio(row({ ratio: 0.136, ratioAs: '%' })), '13.6%');
    assert.equal(formatRatio(row({ ratio: 14 })), '14.0×');
    assert.equal(formatRatio(row({ ratio: undefined })), '-');
  });

  test('one table: facts, load, every row with its verdict, a broken part named', () => {
    const text = renderText(
      report([
        outcome(),
        outcome({ name: 'spf', rows: [], broken: 'policyd-spf did not start' }),
        outcome({
          name: 'auth-policy',
          rows: [row({ part: 'auth-policy', peerName: '-', peer: undefined, ratio: undefined, pass: true })],
        }),
      ]),
    );
    assert.match(text, /machine {2}AMD EPYC, 2 cores, 24 GiB RAM, Linux 6\.18, Debian/);
    assert.match(text, /peers {4}postgrey 1\.37-2/);
    assert.match(text, /loadavg 1\.00 1\.00 1\.00 at the start, 2\.00 2\.00 2\.00 at the end/);
    assert.match(
      text,
      /greylist +new triplets, SQLite, 8 conn: req\/s +6,000 req\/s +postgrey +1,600 req\/s +3\.75× +≥ 10× postgrey +MISS/,
    );
    assert.match(text, /spf +BROKEN .* policyd-spf did not start/);
    assert.match(text, /auth-policy .* PASS/);
    assert.doesNotMatch(text, /detail line/, 'the detail is for the markdown copy only');
  });

  test('the markdown copy has the table and each part detail', () => {
    const md = renderMarkdown(report([outcome()]));
    assert.match(md, /\| greylist \| new triplets, SQLite, 8 conn: req\/s \| 6,000 req\/s \| postgrey \|/);
    assert.match(md, /### greylisting\n\n100 s; others 0\.05 cores\.\n\n```\ndetail line\n```/);
    assert.doesNotMatch(renderMarkdown(report([outcome()]), { withDetail: false }), /detail line/);
  });

  test('docs: only the text between the markers is replaced', () => {
    const doc = `# Performance\n\nintro\n\n## Benchmark report\n\n${DOCS_BEGIN}\nold\n${DOCS_END}\n\n## Soak\n\nkept\n`;
    const out = replaceDocsTable(doc, 'new table\n');
    assert.equal(
      out,
      `# Performance\n\nintro\n\n## Benchmark report\n\n${DOCS_BEGIN}\n\nnew table\n\n${DOCS_END}\n\n## Soak\n\nkept\n`,
    );
    assert.throws(() => replaceDocsTable('# no markers\n', 'x'), /markers/);
    const shipped = readFileSync(new URL('../../../docs/performance.md', import.meta.url), 'utf8');
    assert.ok(
      shipped.includes(DOCS_BEGIN) && shipped.includes(DOCS_END),
      'docs/performance.md has the markers',
    );
  });

  test('a missing peer stops the run before anything, naming the apt-get command', () => {
    const part = (name: 'greylist' | 'policy', present: boolean) =>
      benchPart({
        name,
        title: name,
        needs: () => [
          present ? debianProgram('sh', 'dash') : debianProgram('postwarden-no-such-program', 'no-such-pkg'),
        ],
        settings: () => ({}),
        run: () => Promise.resolve({ rows: [], raw: null }),
      });
    assert.equal(missingRequirements([part('policy', true)]), undefined);
    const message = missingRequirements([part('policy', true), part('greylist', false)]) ?? '';
    assert.match(message, /greylist: postwarden-no-such-program \(Debian package no-such-pkg\)/);
    assert.match(message, /apt-get install -y --no-install-recommends no-such-pkg/);
    assert.match(message, /--only policy/);
  });
});
