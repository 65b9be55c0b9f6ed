/**
 * The one benchmark report: what every part returns (typed rows, each postwarden against a peer measured in the
 * same run), the facts of the machine it ran on, the peers each part needs, and the printing — one table on
 * stdout, the same as markdown and JSON under the results directory, and each part's own detail (its full
 * tables and notes) in the markdown only. The parts write their detail through `say`/`line` here instead of
 * printing; bench/main.ts decides where it goes.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { machineBusyMs, ownTreeCpuMs, which } from './children.js';

/** The parts of `npm run bench`, in the order they run; `--only` takes these names. */
export const PART_NAMES = ['policy', 'greylist', 'spf', 'filter', 'auth-policy', 'spam'] as const;
export type PartName = (typeof PART_NAMES)[number];

/** One line of the report: a postwarden figure against the same figure of a peer, from the same run. */
export interface ResultRow {
  readonly part: PartName;
  /** What was measured, short: workload, configuration, connections. */
  readonly name: string;
  /** The figure: req/s, p99, peak RSS, FP rate, … */
  readonly what: string;
  readonly unit: string;
  readonly postwarden: number;
  /** The peer it is measured against (`-` when the target is absolute: no peer does this). */
  readonly peerName: string;
  readonly peer?: number | undefined;
  /** postwarden ÷ peer; shown as a percentage for ceilings, as a factor for peers. */
  readonly ratio?: number | undefined;
  readonly ratioAs?: '%' | '×';
  /** The issue's target, in its words (`≥ 10× postgrey`), and whether this run met it; none: information. */
  readonly target?: string;
  readonly pass?: boolean;
  readonly notes?: string;
}

export interface PartContext {
  /** This part's temporary directory (removed after it, also on a signal). */
  readonly dir: string;
  /** --cpu-prof: postwarden processes run under node --cpu-prof, profiles written here. */
  readonly cpuProfDir: string | undefined;
}

export interface PartResult {
  readonly rows: readonly ResultRow[];
  /** The part's full figures, for the JSON copy. */
  readonly raw: unknown;
}

/** Something a part needs on this machine, and the command that provides it. */
export interface Requirement {
  readonly what: string;
  readonly present: () => boolean;
  readonly fix: string;
}

export interface BenchPart {
  readonly name: PartName;
  readonly title: string;
  /** What it needs (read when the part is selected, so env knobs can drop a peer). */
  readonly needs: () => readonly Requirement[];
  /** Reads the part's environment knobs (a bad one: UsageError, before anything runs) and returns its run. */
  readonly prepare: () => (context: PartContext) => Promise<PartResult>;
}

/** A part whose settings (env knobs) are read and checked before any part runs. */
export function benchPart<Settings>(part: {
  readonly name: PartName;
  readonly title: string;
  readonly needs?: () => readonly Requirement[];
  readonly settings: () => Settings;
  readonly run: (context: PartContext, settings: Settings) => Promise<PartResult>;
}): BenchPart {
  return {
    name: part.name,
    title: part.title,
    needs: part.needs ?? (() => []),
    prepare: () => {
      const settings = part.settings();
      return (context) => part.run(context, settings);
    },
  };
}

/** A Debian package's program: present when `program` is on the PATH (or an absolute path that exists). */
export function debianProgram(program: string, pkg: string): Requirement {
  return {
    what: `${program} (Debian package ${pkg})`,
    present: () => which(program) !== undefined,
    fix: `apt-get install -y --no-install-recommends ${pkg}`,
  };
}

/**
 * What the selected parts need and this machine lacks, as one message naming each missing thing and the
 * command that provides it; undefined when nothing is missing. The benchmark installs nothing itself.
 */
export function missingRequirements(parts: readonly BenchPart[]): string | undefined {
  const missing = parts.flatMap((p) =>
    p
      .needs()
      .filter((r) => !r.present())
      .map((r) => ({ part: p.name, r })),
  );
  if (missing.length === 0) return undefined;
  const fixes = [...new Set(missing.map((m) => m.r.fix))];
  const others = parts.map((p) => p.name).filter((name) => !missing.some((m) => m.part === name));
  return [
    'missing on this machine (nothing was run; the benchmark installs nothing):',
    ...missing.map((m) => `  ${m.part}: ${m.r.what}`),
    'provide it with:',
    ...fixes.map((f) => `  ${f}`),
    others.length > 0
      ? `or leave the part out: npm run bench -- --only ${others.join(',')}`
      : 'or run other parts: npm run bench -- --only PART,…',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------------
// Detail: the parts' own paragraphs and tables, collected per part

let detail: string[] = [];

/** One labelled paragraph of a part's detail: the label, then each line indented to the same column. */
export function say(label: string, ...lines: string[]): void {
  lines.forEach((text, i) => detail.push(`${(i === 0 ? label : '').padEnd(12)}${text}`));
}

/** One line (or several, split at newlines) of a part's detail. */
export function line(text = ''): void {
  detail.push(...text.split('\n'));
}

/** Hands over the detail written since the last call and starts a new one. */
export function takeDetail(): string[] {
  const taken = detail;
  detail = [];
  return taken;
}

/** How a table is laid out: a blank line before the rows in `breaks`; columns in `left` left-aligned (the
 * first by default), the others right-aligned. */
export interface TableLayout {
  readonly breaks?: readonly number[];
  readonly left?: readonly number[];
}

/** A plain text table, columns padded to their widest cell. */
export function textTable(
  header: readonly string[],
  body: readonly (readonly string[])[],
  { breaks = [], left = [0] }: TableLayout = {},
): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => (cells[i] ?? '').length)));
  const row = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (left.includes(i) ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const out = [row(header), widths.map((w) => '-'.repeat(w)).join('  ')];
  body.forEach((cells, i) => {
    if (breaks.includes(i)) out.push('');
    out.push(row(cells));
  });
  return out;
}

/** The row of a p99 latency target (`< targetMs`), against the peer's p99 in the same cell. */
export function p99Row(
  part: PartName,
  name: string,
  mine: { readonly p99Ms: number },
  peerName: string,
  peer: { readonly p99Ms: number } | undefined,
  targetMs: number,
): ResultRow {
  return {
    part,
    name,
    what: 'p99',
    unit: 'ms',
    postwarden: mine.p99Ms,
    peerName,
    peer: peer?.p99Ms,
    ratio: peer ? mine.p99Ms / peer.p99Ms : undefined,
    target: `< ${targetMs} ms`,
    pass: mine.p99Ms < targetMs,
  };
}

// ---------------------------------------------------------------------------------------------------------
// The machine

export interface MachineFacts {
  readonly cpuModel: string;
  readonly cores: number;
  readonly ramGiB: number;
  readonly kernel: string;
  readonly os: string;
  readonly node: string;
  /** Debian package → version, for the peers and helpers installed here. */
  readonly packages: Readonly<Record<string, string>>;
}

/** The packages whose version the report names (those not installed are left out). */
const PEER_PACKAGES = [
  'postgrey',
  'postfix-policyd-spf-python',
  'spamd',
  'spamassassin',
  'rspamd',
  'redis-server',
  'dnsmasq-base',
  'clamav-daemon',
];

function packageVersions(): Record<string, string> {
  try {
    const out = execFileSync(
      'dpkg-query',
      ['-W', '-f', '${Package} ${db:Status-Abbrev} ${Version}\n', ...PEER_PACKAGES],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    );
    return parsePackageVersions(out);
  } catch (error) {
    // dpkg-query exits 1 when some package is unknown, with the known ones on stdout.
    const stdout = (error as { stdout?: unknown }).stdout;
    return typeof stdout === 'string' ? parsePackageVersions(stdout) : {};
  }
}

function parsePackageVersions(out: string): Record<string, string> {
  const versions: Record<string, string> = {};
  for (const entry of out.split('\n')) {
    const [pkg, status, version] = entry.trim().split(/\s+/);
    if (pkg && version && status === 'ii') versions[pkg] = version;
  }
  return versions;
}

export function machineFacts(): MachineFacts {
  const cpus = os.cpus();
  let osName = `${os.platform()}`;
  try {
    osName = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? osName;
  } catch {
    // not Linux, or no os-release: the platform name will do
  }
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown cpu',
    cores: cpus.length,
    ramGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    os: osName,
    node: process.version,
    packages: packageVersions(),
  };
}

/**
 * Starts measuring what the rest of the machine does: busy CPU time of the whole machine (/proc/stat) minus that
 * of this process tree. `stop` gives the others' load in cores (1 = one CPU kept busy), NaN off Linux.
 */
export function othersMeter(): { stop: () => number } {
  if (process.platform !== 'linux') return { stop: () => NaN };
  const start = { wall: performance.now(), busy: machineBusyMs() ?? NaN, own: ownTreeCpuMs() };
  return {
    stop: () => {
      const own = ownTreeCpuMs() - start.own;
      const busy = (machineBusyMs() ?? NaN) - start.busy;
      return Math.max(0, (busy - own) / (performance.now() - start.wall));
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// The report

export interface PartOutcome {
  readonly name: PartName;
  readonly title: string;
  readonly seconds: number;
  /** Load of processes outside the benchmark while this part ran, in cores. */
  readonly others: number;
  readonly rows: readonly ResultRow[];
  readonly detail: readonly string[];
  readonly raw: unknown;
  /** Set when the part broke: why. Its rows are then missing. */
  readonly broken?: string;
}

export interface Report {
  readonly date: string;
  readonly commit: string;
  readonly machine: MachineFacts;
  readonly loadavgStart: readonly number[];
  readonly loadavgEnd: readonly number[];
  readonly seconds: number;
  readonly parts: readonly PartOutcome[];
}

function number(value: number, unit: string): string {
  if (!Number.isFinite(value)) return '-';
  const abs = Math.abs(value);
  let digits: number;
  if (unit === '%') digits = abs < 1 ? 2 : 1;
  else if (unit === 'ms') digits = abs < 10 ? 2 : 1;
  else if (unit === 'MiB') digits = 1;
  else digits = abs >= 100 || Number.isInteger(value) ? 0 : 1;
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function formatValue(value: number | undefined, unit: string): string {
  if (value === undefined || !Number.isFinite(value)) return '-';
  return unit === '%' ? `${number(value, unit)}%` : `${number(value, unit)} ${unit}`;
}

export function formatRatio(row: ResultRow): string {
  const r = row.ratio;
  if (r === undefined || !Number.isFinite(r)) return '-';
  if (row.ratioAs === '%') return `${(r * 100).toFixed(1)}%`;
  return `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`;
}

const HEADER = ['part', 'measure', 'postwarden', 'against', 'peer', 'ratio', 'target', 'result', 'notes'];
/** The columns of figures (right-aligned); the others are text. */
const FIGURES = [2, 4, 5];
const TEXT = HEADER.map((_, i) => i).filter((i) => !FIGURES.includes(i));

function cells(row: ResultRow): string[] {
  return [
    row.part,
    `${row.name}: ${row.what}`,
    formatValue(row.postwarden, row.unit),
    row.peerName,
    formatValue(row.peer, row.unit),
    formatRatio(row),
    row.target ?? '',
    row.pass === undefined ? (row.target ? '?' : 'info') : row.pass ? 'PASS' : 'MISS',
    row.notes ?? '',
  ];
}

function brokenCells(part: PartOutcome): string[] {
  const why = (part.broken ?? '').split('\n');
  const more = why.length > 1 ? ' (more in latest.md)' : '';
  return [part.name, 'BROKEN', '-', '-', '-', '-', '', 'BROKEN', `${why[0] ?? ''}${more}`];
}

function factLines(report: Report): string[] {
  const m = report.machine;
  const load = (l: readonly number[]) => l.map((x) => x.toFixed(2)).join(' ');
  const peers = Object.entries(m.packages).map(([pkg, version]) => `${pkg} ${version}`);
  return [
    `date     ${report.date}, commit ${report.commit}, ${Math.round(report.seconds)} s`,
    `machine  ${m.cpuModel}, ${m.cores} cores, ${m.ramGiB} GiB RAM, ${m.kernel}, ${m.os}, Node ${m.node}`,
    `peers    ${peers.length > 0 ? peers.join(', ') : '(no Debian package versions found)'}`,
    `load     loadavg ${load(report.loadavgStart)} at the start, ${load(report.loadavgEnd)} at the end; ` +
      `others (CPU of processes outside the benchmark, cores): ${report.parts
        .map((p) => `${p.name} ${Number.isFinite(p.others) ? p.others.toFixed(2) : '?'}`)
        .join(', ')}`,
  ];
}

const RULE =
  'ratio = postwarden ÷ peer, same run, same machine, same load generator; compare ratios, not absolute figures';

/** The table for a terminal: facts, one table, the reading rule. */
export function renderText(report: Report): string {
  const body = report.parts.flatMap((p) => (p.broken ? [brokenCells(p)] : p.rows.map(cells)));
  const breaks: number[] = [];
  let n = 0;
  for (const part of report.parts.slice(0, -1)) {
    n += part.broken ? 1 : part.rows.length;
    breaks.push(n);
  }
  return [
    'postwarden benchmark report',
    ...factLines(report),
    '',
    ...textTable(HEADER, body, { breaks, left: TEXT }),
    '',
    RULE,
    '',
  ].join('\n');
}

const mdCell = (text: string) => text.replaceAll('|', '\\|');

/** The same report as markdown: facts, the table, then each part's detail. */
export function renderMarkdown(report: Report, { withDetail = true } = {}): string {
  const rows = report.parts.flatMap((p) => (p.broken ? [brokenCells(p)] : p.rows.map(cells)));
  const out = [
    '```',
    ...factLines(report),
    '```',
    '',
    `| ${HEADER.join(' | ')} |`,
    `| ${HEADER.map((_, i) => (FIGURES.includes(i) ? '---:' : '---')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(mdCell).join(' | ')} |`),
    '',
    `${RULE}.`,
  ];
  if (withDetail) {
    for (const part of report.parts) {
      out.push(
        '',
        `### ${part.title}`,
        '',
        `${Math.round(part.seconds)} s; others ${Number.isFinite(part.others) ? part.others.toFixed(2) : '?'} cores.`,
        '',
        '```',
        ...(part.broken ? [`BROKEN: ${part.broken}`, ''] : []),
        ...part.detail,
        '```',
      );
    }
  }
  return `${out.join('\n')}\n`;
}

export const DOCS_BEGIN = '<!-- bench:report:begin (npm run bench -- --write-docs rewrites this) -->';
export const DOCS_END = '<!-- bench:report:end -->';

/** Replaces the text between the report markers of `doc` with `table`; throws when a marker is missing. */
export function replaceDocsTable(doc: string, table: string): string {
  const begin = doc.indexOf(DOCS_BEGIN);
  const end = doc.indexOf(DOCS_END);
  if (begin < 0 || end < begin) {
    throw new Error(`the markers ${DOCS_BEGIN} … ${DOCS_END} are missing`);
  }
  return `${doc.slice(0, begin + DOCS_BEGIN.length)}\n\n${table.trimEnd()}\n\n${doc.slice(end)}`;
}

/** A table into the part's detail (see textTable), with a blank line before it. */
export function detailTable(
  header: readonly string[],
  body: readonly (readonly string[])[],
  options?: TableLayout,
): void {
  line();
  for (const text of textTable(header, body, options)) line(text);
  line();
}

/** Indices where `key` changes from one row to the next: where detailTable puts a blank line. */
export function breaksBy<T>(rows: readonly T[], key: (row: T) => unknown): number[] {
  return rows.flatMap((row, i) => (i > 0 && key(rows[i - 1] as T) !== key(row) ? [i] : []));
}
