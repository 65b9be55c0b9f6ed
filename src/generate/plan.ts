/**
 * What `setup --apply` would change: the rendered Postfix settings and services compared with the host as it is
 * (HostFacts), and the Dovecot files compared with what is on disk. Only differences make the plan, so that a
 * second run finds nothing to do, writes no backup and reloads nothing.
 *
 * Values compare element by element (restrictionElements), so `a,b` and `a, b` are the same value.
 *
 * Contract: pure; the caller reads the existing files.
 */
import type { HostFacts, MasterEntry } from '../core/host-facts.js';
import type { MasterOverride, MasterService, PostfixRender } from './postfix.js';
import { restrictionElements, sameElements } from './postfix-lists.js';

export interface MainChange {
  readonly name: string;
  readonly from: string;
  readonly to: string;
}

export interface MasterChange {
  readonly service: MasterService;
  /** Whether master.cf has the service already (then only what differs is set). */
  readonly exists: boolean;
  /** The columns differ (or the service is new): `postconf -M` writes the line. */
  readonly columns: boolean;
  /** The -o overrides to set with `postconf -P`. */
  readonly options: readonly (readonly [string, string])[];
}

export interface FileChange {
  readonly path: string;
  readonly text: string;
  readonly mode: number;
  /** The group that must read it (`postfix` for an ldap: table with its bind password). */
  readonly group?: string;
  readonly exists: boolean;
}

/** A file the plan may write, with what is there now (undefined: absent). */
export interface WantedFile {
  readonly path: string;
  readonly text: string;
  readonly mode: number;
  readonly group?: string;
  readonly current: string | undefined;
}

export interface Plan {
  readonly main: readonly MainChange[];
  readonly master: readonly MasterChange[];
  readonly overrides: readonly MasterOverride[];
  readonly files: readonly FileChange[];
}

const same = (a: string, b: string) => sameElements(restrictionElements(a), restrictionElements(b));

const COLUMNS = ['private', 'unpriv', 'chroot', 'wakeup', 'maxproc', 'command'] as const;

function optionOf(entry: MasterEntry | undefined, name: string): string | undefined {
  return entry?.options.findLast(([n]) => n === name)?.[1];
}

export function planChanges(render: PostfixRender, facts: HostFacts, files: readonly WantedFile[]): Plan {
  const main = render.main
    .filter((s) => !same(facts.main[s.name] ?? '', s.value))
    .map((s) => ({ name: s.name, from: facts.main[s.name] ?? '', to: s.value }));
  const find = (service: string, type: string) =>
    facts.master.find((e) => e.service === service && e.type === type);
  const master = render.master.flatMap((service): MasterChange[] => {
    const now = find(service.service, service.type);
    const columns = now === undefined || COLUMNS.some((c) => now[c] !== service[c]);
    const options = service.options.filter(([name, value]) => optionOf(now, name) !== value);
    return columns || options.length > 0 ? [{ service, exists: now !== undefined, columns, options }] : [];
  });
  const overrides = render.overrides.filter((o) => optionOf(find(o.service, o.type), o.name) !== o.value);
  const fileChanges = files
    .filter((f) => f.current !== f.text)
    .map(({ current, ...f }) => ({ ...f, exists: current !== undefined }));
  return { main, master, overrides, files: fileChanges };
}

export function planIsEmpty(plan: Plan): boolean {
  return plan.main.length + plan.master.length + plan.overrides.length + plan.files.length === 0;
}

/** The plan as lines for people: one per change. */
export function planLines(plan: Plan): string[] {
  return [
    ...plan.main.map((c) => `main.cf: ${c.name} = ${c.to}${c.from === '' ? '' : `   (was: ${c.from})`}`),
    ...plan.master.map(
      (c) =>
        `master.cf: ${c.exists ? 'update' : 'add'} ${c.service.service}/${c.service.type}${
          c.options.length > 0 ? ` (${c.options.map(([n, v]) => `-o ${n}=${v}`).join(' ')})` : ''
        }`,
    ),
    ...plan.overrides.map((o) => `master.cf: ${o.service}/${o.type} -o ${o.name}=${o.value}`),
    ...plan.files.map((f) => `${f.exists ? 'update' : 'write'} ${f.path}`),
  ];
}
