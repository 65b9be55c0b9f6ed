/**
 * The Prometheus alert rules (deploy/prometheus/alerts.yml) and the Grafana dashboard
 * (deploy/grafana/postwarden.json) against the metric registry: promtool accepts the rules and every dashboard
 * query, every postwarden_* name they use is in METRIC_DEFINITIONS with only the labels it has, a real /metrics
 * scrape passes `promtool check metrics`, and no metric has a label that could carry an address or a user.
 * promtool comes from Debian's `prometheus` package (test/harness/install.sh installs it).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Counter, Gauge, Histogram } from 'prom-client';
import { parse } from 'yaml';
import { buildHttpApp } from '../../src/http/app.js';
import { createLogger } from '../../src/observe/logger.js';
import { METRIC_DEFINITIONS, Metrics, type MetricDefinition } from '../../src/observe/metrics.js';
import { statusOnlyAdmin } from '../harness/admin.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const ALERTS = path.join(ROOT, 'deploy/prometheus/alerts.yml');
const DASHBOARD = path.join(ROOT, 'deploy/grafana/postwarden.json');
const PROMTOOL = '/usr/bin/promtool';
const noPromtool = existsSync(PROMTOOL)
  ? false
  : `${PROMTOOL} is missing: install Debian's prometheus package (bash test/harness/install.sh)`;

const tmp = mkdtempSync(path.join(tmpdir(), 'pw-h-obs-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const definitions: readonly MetricDefinition[] = METRIC_DEFINITIONS;
const byName = new Map(definitions.map((d) => [d.name, d]));
/** Labels Prometheus adds to every series it scrapes (the target's). */
const TARGET_LABELS = ['instance', 'job'];

interface AlertRule {
  readonly alert: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
}
interface Panel {
  readonly title?: string;
  readonly panels?: readonly Panel[];
  readonly targets?: readonly { readonly expr?: string }[];
}

function alertRules(): AlertRule[] {
  const doc = parse(readFileSync(ALERTS, 'utf8')) as { groups: { name: string; rules: AlertRule[] }[] };
  return doc.groups.flatMap((g) => g.rules);
}

/** Every query of the dashboard, with Grafana's variables replaced by what PromQL accepts. */
function dashboardQueries(): { title: string; expr: string }[] {
  const doc = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[] };
  const walk = (panels: readonly Panel[]): { title: string; expr: string }[] =>
    panels.flatMap((p) => [
      ...(p.targets ?? []).flatMap((t) =>
        t.expr === undefined ? [] : [{ title: p.title ?? '', expr: t.expr }],
      ),
      ...walk(p.panels ?? []),
    ]);
  return walk(doc.panels).map(({ title, expr }) => ({
    title,
    expr: expr.replace(/\$__(rate_)?interval/g, '5m').replace(/\$\{?\w+\}?/g, '.*'),
  }));
}

function promtool(args: readonly string[], input?: string) {
  const run = spawnSync(PROMTOOL, args, { encoding: 'utf8', timeout: 30_000, input });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/** The registry entry a series name belongs to (a histogram's _bucket, _sum and _count included). */
function definitionOf(series: string): { def: MetricDefinition; bucket: boolean } | undefined {
  const exact = byName.get(series);
  if (exact) return { def: exact, bucket: false };
  const suffix = /_(bucket|sum|count)$/.exec(series);
  const base = suffix ? byName.get(series.slice(0, suffix.index)) : undefined;
  return base?.type === 'histogram' ? { def: base, bucket: suffix?.[1] === 'bucket' } : undefined;
}

/** What is wrong with the postwarden_* names and labels of one PromQL expression (empty when nothing). */
function referenceProblems(expr: string): string[] {
  const problems: string[] = [];
  const known = new Set(TARGET_LABELS);
  for (const [, series] of expr.matchAll(/\b(postwarden_[a-z0-9_]+)\b/g)) {
    const found = definitionOf(series ?? '');
    if (!found) problems.push(`${series} is not in METRIC_DEFINITIONS`);
    else for (const l of [...found.def.labels, ...(found.bucket ? ['le'] : [])]) known.add(l);
  }
  for (const [, series, matchers] of expr.matchAll(/\b(postwarden_[a-z0-9_]+)\s*\{([^}]*)\}/g)) {
    const found = definitionOf(series ?? '');
    if (!found) continue;
    const own = new Set([...TARGET_LABELS, ...found.def.labels, ...(found.bucket ? ['le'] : [])]);
    for (const [, label] of (matchers ?? '').matchAll(/(\w+)\s*(?:=~|!~|!=|=)\s*"/g))
      if (!own.has(label ?? '')) problems.push(`${series} has no label ${label}`);
  }
  for (const [, list] of expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g))
    for (const label of (list ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean))
      if (!known.has(label)) problems.push(`grouping by ${label}, a label none of its metrics has`);
  return problems;
}

/** The labels an alert's series keep: the `by` list of its aggregation, or else those of its metrics. */
function keptLabels(expr: string): Set<string> {
  const by = /\bby\s*\(([^)]*)\)/.exec(expr);
  if (by) return new Set((by[1] ?? '').split(',').map((s) => s.trim()));
  const names = [...expr.matchAll(/\b(postwarden_[a-z0-9_]+)\b/g)].map(
    (m) => definitionOf(m[1] ?? '')?.def.labels ?? [],
  );
  return new Set([...TARGET_LABELS, ...names.flat()]);
}

test('the reference check finds unknown metrics, foreign labels and groupings', () => {
  assert.deepEqual(
    referenceProblems(
      'sum by (list) (rate(postwarden_nope_total[5m])) + sum by (user) (rate(postwarden_errors_total{check="x"}[5m]))',
    ),
    [
      'postwarden_nope_total is not in METRIC_DEFINITIONS',
      'postwarden_errors_total has no label check',
      'grouping by list, a label none of its metrics has',
      'grouping by user, a label none of its metrics has',
    ],
  );
  assert.deepEqual(
    referenceProblems(
      'histogram_quantile(0.9, sum by (le, scanner) (rate(postwarden_filter_scanner_duration_seconds_bucket{instance=~".*",scanner="antivirus"}[5m])))',
    ),
    [],
  );
  assert.ok(referenceProblems('postwarden_policy_connections_bucket').length === 1, 'a gauge has no _bucket');
});

test('promtool accepts deploy/prometheus/alerts.yml', { skip: noPromtool }, () => {
  const run = promtool(['check', 'rules', ALERTS]);
  assert.equal(run.status, 0, run.output);
  assert.match(run.output, /SUCCESS: \d+ rules found/);
});

test('every alert has a for, a severity, a summary and a description naming the fix', () => {
  const rules = alertRules();
  assert.ok(rules.length >= 8, `only ${rules.length} alert rules`);
  for (const r of rules) {
    assert.match(r.alert, /^Postwarden[A-Z]\w+$/, 'alert names start with Postwarden');
    assert.ok(r.for !== undefined, `${r.alert}: no for`);
    assert.match(r.labels?.['severity'] ?? '', /^(critical|warning)$/, `${r.alert}: severity`);
    assert.ok((r.annotations?.['summary'] ?? '').length > 10, `${r.alert}: summary`);
    assert.ok((r.annotations?.['description'] ?? '').length > 40, `${r.alert}: description`);
  }
  const names = rules.map((r) => r.alert);
  const guide = readFileSync(path.join(ROOT, 'docs/operator-guide.md'), 'utf8');
  for (const name of names)
    assert.ok(guide.includes(`\`${name}\``), `docs/operator-guide.md does not list ${name}`);
  for (const needed of [
    'PostwardenDown',
    'PostwardenDnsListUnhealthy',
    'PostwardenClamdDown',
    'PostwardenFilterAnswering4xx',
    'PostwardenStoreErrors',
    'PostwardenOutboundMailHeld',
    'PostwardenAuthPolicyFailOpen',
  ])
    assert.ok(names.includes(needed), `alert ${needed} is missing`);
});

test('the alerts use only metrics of the registry, with their own labels', () => {
  for (const r of alertRules()) {
    const shown = [
      ...`${r.annotations?.['summary']} ${r.annotations?.['description']}`.matchAll(/\$labels\.(\w+)/g),
    ];
    const problems = referenceProblems(r.expr);
    for (const [, label] of shown)
      if (!keptLabels(r.expr).has(label ?? ''))
        problems.push(`annotation shows $labels.${label}, dropped by the expression`);
    assert.deepEqual(problems, [], `${r.alert}: ${r.expr}`);
  }
});

test('the dashboard covers every area of the brief and uses the Prometheus datasource input', () => {
  const doc = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    __inputs: { name: string; pluginId: string }[];
    schemaVersion: number;
    uid: string;
    templating: { list: { name: string }[] };
    panels: Panel[];
  };
  assert.deepEqual(
    doc.__inputs.map((i) => [i.name, i.pluginId]),
    [['DS_PROMETHEUS', 'prometheus']],
  );
  assert.ok(doc.schemaVersion >= 36);
  assert.equal(doc.uid, 'postwarden');
  assert.ok(doc.templating.list.some((v) => v.name === 'instance'));
  const text = JSON.stringify(doc.panels);
  for (const metric of [
    'postwarden_policy_decisions_total',
    'postwarden_policy_verdicts_total',
    'postwarden_dnsbl_list_healthy',
    'postwarden_dns_query_duration_seconds_bucket',
    'postwarden_filter_scanner_duration_seconds_bucket',
    'postwarden_filter_replies_total',
    'postwarden_auth_policy_blocks_total',
    'postwarden_ratelimit_incidents_total',
    'postwarden_errors_total',
  ])
    assert.ok(text.includes(metric), `no panel shows ${metric}`);
  assert.ok(text.includes('check=\\"greylist\\"'), 'no greylist panel');
  assert.ok(text.includes('outcome=\\"quarantine\\"'), 'no quarantine panel');
  for (const { title, expr } of dashboardQueries())
    assert.ok(expr.includes('instance=~".*"'), `${title}: not filtered by $instance: ${expr}`);
});

test('the dashboard panels fit the 24-column grid without overlapping', () => {
  type Box = { title: string; gridPos: { x: number; y: number; w: number; h: number } };
  const boxes = (JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Box[] }).panels;
  boxes.forEach((a, i) => {
    assert.ok(a.gridPos.x >= 0 && a.gridPos.x + a.gridPos.w <= 24, `${a.title} is wider than the grid`);
    for (const b of boxes.slice(i + 1)) {
      const apart =
        a.gridPos.x + a.gridPos.w <= b.gridPos.x ||
        b.gridPos.x + b.gridPos.w <= a.gridPos.x ||
        a.gridPos.y + a.gridPos.h <= b.gridPos.y ||
        b.gridPos.y + b.gridPos.h <= a.gridPos.y;
      assert.ok(apart, `${a.title} and ${b.title} overlap`);
    }
  });
});

test('the dashboard uses only metrics of the registry, with their own labels', () => {
  const queries = dashboardQueries();
  assert.ok(queries.length >= 20, `only ${queries.length} queries`);
  for (const { title, expr } of queries) assert.deepEqual(referenceProblems(expr), [], `${title}: ${expr}`);
});

test('promtool accepts every PromQL query of the dashboard', { skip: noPromtool }, () => {
  const rules = dashboardQueries().map(({ expr }, i) => ({ record: `pw:panel_${i}`, expr }));
  const file = path.join(tmp, 'dashboard-rules.yml');
  writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules }] })); // JSON is YAML
  const run = promtool(['check', 'rules', file]);
  assert.equal(run.status, 0, run.output);
  assert.match(run.output, new RegExp(`SUCCESS: ${rules.length} rules found`));
});

/**
 * prom-client's process metrics name three gauges `nodejs_active_*_total`, against the convention; they are
 * its names (dashboards for Node.js expect them), not postwarden's, so promtool's finding on them is accepted.
 */
const PROM_CLIENT_GAUGES_TOTAL =
  /^postwarden_nodejs_active_(handles|requests|resources)_total non-counter metrics/;

test(
  'a /metrics scrape passes promtool check metrics (naming conventions)',
  { skip: noPromtool },
  async () => {
    const metrics = new Metrics();
    // One series per metric, so that each one is linted with its samples, not only its HELP and TYPE.
    for (const def of definitions) {
      const labels = Object.fromEntries(def.labels.map((l) => [l, 'sample']));
      const metric = (metrics.get as (name: string) => Counter | Gauge | Histogram)(def.name);
      if (def.type === 'counter') (metric as Counter).inc(labels);
      else if (def.type === 'gauge') (metric as Gauge).set(labels, 1);
      else (metric as Histogram).observe(labels, 0.01);
    }
    const app = buildHttpApp({
      metrics,
      logger: createLogger('silent'),
      readiness: () => [],
      admin: statusOnlyAdmin(),
    });
    try {
      const response = await app.inject({ method: 'GET', url: '/metrics' });
      assert.equal(response.statusCode, 200);
      for (const def of definitions)
        assert.ok(response.body.includes(`# TYPE ${def.name} ${def.type}`), def.name);
      const run = promtool(['check', 'metrics'], response.body);
      const problems = run.output
        .split('\n')
        .filter((l) => l.trim() !== '' && !PROM_CLIENT_GAUGES_TOTAL.test(l));
      assert.deepEqual(problems, [], run.output);
      assert.ok(run.status === 0 || run.status === 3, run.output); // 3: lint findings only (the accepted ones)
    } finally {
      await app.close();
    }
  },
);

test('every metric follows the naming conventions and has bounded labels only', () => {
  const unbounded =
    /(^|_)(ip|ips|addr|address|user|username|login|sender|recipient|rcpt|client|email|helo|hostname)(_|$)/;
  for (const def of definitions) {
    assert.match(def.name, /^postwarden_[a-z][a-z0-9_]*$/, def.name);
    if (def.type === 'counter') assert.match(def.name, /_total$/, `${def.name}: a counter ends in _total`);
    else assert.doesNotMatch(def.name, /_total$/, `${def.name}: only counters end in _total`);
    assert.doesNotMatch(
      def.name,
      /_(milliseconds|ms|bytes_kb|minutes|hours)(_|$)/,
      `${def.name}: base units`,
    );
    if (def.type === 'histogram') assert.match(def.name, /_(seconds|bytes)$/, `${def.name}: a unit`);
    for (const label of def.labels) {
      assert.doesNotMatch(label, unbounded, `${def.name}{${label}} could carry an address or a user`);
      assert.ok(!TARGET_LABELS.includes(label), `${def.name}{${label}} clashes with a label Prometheus sets`);
    }
  }
});
