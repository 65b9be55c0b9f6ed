/**
 * `npm run bench`: every benchmark part in one run, one report. Each part (bench/policy.ts, greylist.ts, dns.ts,
 * filter.ts, auth-policy.ts, spam.ts) measures postwarden against its peer — the always-DUNNO ceiling, postgrey,
 * postfix-policyd-spf-python, a pass-through relay, spamd, rspamd — in the same run and returns typed rows
 * (bench/report.ts); this runs the selected parts in sequence, records the machine's facts and its load, and
 * prints one table. The same report, with each part's full detail, is written as markdown and JSON to the
 * results directory; `--write-docs` also puts the table into docs/performance.md.
 *
 * Peers are never installed here: before anything runs, every program the selected parts need is looked for,
 * and a missing one stops the run (exit 1) with the apt-get command that provides it.
 *
 * Exit status: 0 when every selected part ran, whatever the figures (targets are information); 1 when a peer is
 * missing or a part broke (its row says BROKEN and why; the other parts still run); 2 for bad options;
 * 130/143 on SIGINT/SIGTERM. Every process started is stopped and every temporary directory removed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { killAllNow, stopEverything } from './children.js';
import { BenchError } from './load.js';
import { benchArgs, onStopSignal, reportFailure, UsageError } from './options.js';
import {
  type BenchPart,
  machineFacts,
  missingRequirements,
  othersMeter,
  PART_NAMES,
  type PartName,
  type PartOutcome,
  renderMarkdown,
  renderText,
  replaceDocsTable,
  type Report,
  takeDetail,
} from './report.js';
import { policyPart } from './policy.js';
import { greylistPart } from './greylist.js';
import { spfPart } from './dns.js';
import { filterPart } from './filter.js';
import { authPolicyPart } from './auth-policy.js';
import { spamPart } from './spam.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const PARTS: readonly BenchPart[] = [policyPart, greylistPart, spfPart, filterPart, authPolicyPart, spamPart];
const BUILT = ['src/cli/main.js', 'bench/dunno-server.js', 'bench/filter-relay.js'].map((f) =>
  path.resolve(HERE, '..', f),
);

const USAGE = `usage: npm run bench -- [--only PART,…] [--out DIR] [--write-docs] [--cpu-prof DIR]
parts (in this order): ${PART_NAMES.join(', ')}
  --only PART,…   run these parts only (default: all)
  --out DIR       where latest.md and latest.json go (default: bench/results)
  --write-docs    also put the table into docs/performance.md (between its report markers)
  --cpu-prof DIR  postwarden processes run under node --cpu-prof, profiles into DIR
Each part's environment knobs are in bench/README.md. Peers are never installed: a missing one stops the run
with the apt-get command that provides it.`;

function options() {
  const values = benchArgs();
  const only = values.only?.split(',').map((s) => s.trim()) ?? [...PART_NAMES];
  const unknown = only.filter((name) => !(PART_NAMES as readonly string[]).includes(name));
  if (unknown.length > 0 || only.length === 0) {
    throw new UsageError(`--only ${values.only ?? ''}: expected names from ${PART_NAMES.join(', ')}`);
  }
  return { ...values, only: new Set(only as PartName[]) };
}

function commit(): string {
  try {
    const head = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    const dirty = execFileSync('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    return dirty ? `${head} (work tree changed)` : head;
  } catch {
    return 'unknown';
  }
}

/** The temporary directory of the part running now: removed after it, and on a signal. */
let partDir: string | undefined;

async function main(): Promise<number> {
  const values = options();
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const parts = PARTS.filter((p) => values.only.has(p.name));
  const unbuilt = BUILT.filter((f) => !existsSync(f));
  if (unbuilt.length > 0) {
    throw new BenchError(`${unbuilt.join(', ')} missing: run \`npm run build\` first (npm run bench does)`);
  }
  const missing = missingRequirements(parts);
  if (missing) throw new BenchError(missing);
  const runs = new Map(parts.map((p) => [p.name, p.prepare()]));
  const cpuProfDir = values['cpu-prof'] !== undefined ? path.resolve(values['cpu-prof']) : undefined;
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });
  const outDir = path.resolve(values.out ?? path.join(ROOT, 'bench', 'results'));

  const started = performance.now();
  const date = new Date().toISOString();
  const startCommit = commit();
  const loadavgStart = os.loadavg();
  const machine = machineFacts();
  const outcomes: PartOutcome[] = [];
  for (const [i, part] of parts.entries()) {
    process.stderr.write(`== ${part.name} (${i + 1} of ${parts.length}): ${part.title}\n`);
    const dir = mkdtempSync(path.join(os.tmpdir(), `pw-bn-${part.name}-`));
    partDir = dir;
    const meter = othersMeter();
    const partStarted = performance.now();
    takeDetail();
    let outcome: Omit<PartOutcome, 'others' | 'seconds' | 'detail'>;
    try {
      const run = runs.get(part.name);
      if (!run) throw new Error(`${part.name}: not prepared`);
      const result = await run({ dir, cpuProfDir });
      outcome = { name: part.name, title: part.title, rows: result.rows, raw: result.raw };
    } catch (error) {
      if (error instanceof UsageError) throw error;
      const why =
        error instanceof BenchError ? error.message : error instanceof Error ? error.stack : String(error);
      process.stderr.write(`bench: ${part.name} BROKEN — ${why ?? '?'}\n`);
      outcome = { name: part.name, title: part.title, rows: [], raw: null, broken: why ?? '?' };
    } finally {
      await stopEverything();
      rmSync(dir, { recursive: true, force: true });
      partDir = undefined;
    }
    outcomes.push({
      ...outcome,
      seconds: (performance.now() - partStarted) / 1000,
      others: meter.stop(),
      detail: takeDetail(),
    });
  }
  const report: Report = {
    date,
    commit: startCommit,
    machine,
    loadavgStart,
    loadavgEnd: os.loadavg(),
    seconds: (performance.now() - started) / 1000,
    parts: outcomes,
  };
  process.stdout.write(renderText(report));
  mkdirSync(outDir, { recursive: true });
  const finite = (_key: string, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v);
  writeFileSync(path.join(outDir, 'latest.md'), `# postwarden benchmark report\n\n${renderMarkdown(report)}`);
  writeFileSync(path.join(outDir, 'latest.json'), `${JSON.stringify(report, finite, 2)}\n`);
  process.stdout.write(`written: ${path.join(outDir, 'latest.md')} (with each part's detail), latest.json\n`);
  if (values['write-docs']) {
    const docs = path.join(ROOT, 'docs', 'performance.md');
    writeFileSync(
      docs,
      replaceDocsTable(readFileSync(docs, 'utf8'), renderMarkdown(report, { withDetail: false })),
    );
    process.stdout.write(`written: ${docs} (the report section's table)\n`);
  }
  return outcomes.some((o) => o.broken) ? 1 : 0;
}

process.on('exit', () => {
  killAllNow();
  if (partDir) rmSync(partDir, { recursive: true, force: true });
});
onStopSignal(() => stopEverything(1000));

main().then((code) => {
  process.exitCode = code;
}, reportFailure);
