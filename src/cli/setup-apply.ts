/**
 * `setup --apply` and `setup --rollback`: back up every live file a plan touches, apply the plan with Postfix's
 * own tool (`postconf -M`, `-P`, `-e`: main.cf is never edited by hand) and write the Dovecot files, run
 * `postfix check` (and `doveconf -n` when Dovecot's config was touched), then reload. When a step or a check
 * fails, the backup is put back byte for byte (and files that did not exist are removed) before returning.
 *
 * A backup is a directory `<backup root>/<UTC timestamp>/` with a copy of each file and manifest.json (path,
 * whether it existed, mode, owner). `--rollback` restores the newest (or a named) one the same way.
 *
 * Exit codes (returned, with a message): 0; 73 a file or the backup dir cannot be written (nothing changed);
 * 78 a check failed (rolled back); 75 a restore itself failed (the message names the backup to restore by hand).
 */
import {
  accessSync,
  chmodSync,
  chownSync,
  constants,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { firstLine, runCommand } from '../adapters/host.js';
import { masterEntryText } from '../generate/postfix.js';
import type { Plan } from '../generate/plan.js';
import { EXIT } from '../util/sysexits.js';

export const DEFAULT_BACKUP_ROOT = '/var/lib/postwarden/backup';

export interface Outcome {
  readonly code: number;
  readonly message: string;
  readonly backup?: string;
}

interface ManifestFile {
  readonly path: string;
  readonly existed: boolean;
  readonly copy?: string;
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
}

interface Manifest {
  readonly created: string;
  readonly postfix_config_directory: string;
  /** dovecot.conf, when the backup holds Dovecot files (reloaded with doveadm after a restore). */
  readonly dovecot_config: string | null;
  readonly files: readonly ManifestFile[];
}

export interface ApplyOptions {
  readonly postfixDir: string;
  readonly backupRoot: string;
  readonly reload: boolean;
  /** dovecot.conf of the Dovecot whose files the plan writes (checked with doveconf -n), if any. */
  readonly dovecotConf: string | undefined;
}

/** Why a path cannot be written (EROFS, EACCES), or undefined when it can: the file and the nearest existing dir. */
function unwritable(file: string): string | undefined {
  let dir = path.dirname(file);
  while (!existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  for (const target of existsSync(file) ? [file, dir] : [dir]) {
    try {
      accessSync(target, constants.W_OK);
    } catch (error) {
      return `${target}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
    }
  }
  return undefined;
}

/** The gid of a group in /etc/group, or undefined. */
export function groupId(name: string): number | undefined {
  try {
    const line = readFileSync('/etc/group', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${name}:`));
    return line === undefined ? undefined : Number(line.split(':')[2]);
  } catch {
    return undefined;
  }
}

const stamp = () =>
  new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');

function backup(files: readonly string[], root: string, opts: ApplyOptions): string {
  let dir = path.join(root, stamp());
  for (let n = 1; existsSync(dir); n += 1) dir = path.join(root, `${stamp()}-${n}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const entries: ManifestFile[] = files.map((file, i) => {
    if (!existsSync(file)) return { path: file, existed: false };
    const copy = `${i}-${path.basename(file)}`;
    copyFileSync(file, path.join(dir, copy));
    const st = statSync(file);
    return { path: file, existed: true, copy, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
  });
  const manifest: Manifest = {
    created: new Date().toISOString(),
    postfix_config_directory: opts.postfixDir,
    dovecot_config: opts.dovecotConf ?? null,
    files: entries,
  };
  writeFileSync(path.join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
  return dir;
}

/** Puts every file of a backup back as it was (content, mode, owner); removes the ones that did not exist. */
export function restore(dir: string): Manifest {
  const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Manifest;
  for (const f of manifest.files) {
    if (!f.existed) {
      if (existsSync(f.path)) unlinkSync(f.path);
      continue;
    }
    writeFileSync(f.path, readFileSync(path.join(dir, f.copy ?? '')));
    if (f.mode !== undefined) chmodSync(f.path, f.mode);
    if (f.uid !== undefined && f.gid !== undefined && process.getuid?.() === 0)
      chownSync(f.path, f.uid, f.gid);
  }
  return manifest;
}

/** The backup to restore: DIR itself when it holds a manifest, else its newest child (`latest`). */
export function findBackup(dir: string): string | undefined {
  if (existsSync(path.join(dir, 'manifest.json'))) return dir;
  if (!existsSync(dir)) return undefined;
  const newest = readdirSync(dir)
    .filter((d) => existsSync(path.join(dir, d, 'manifest.json')))
    .sort()
    .at(-1);
  return newest === undefined ? undefined : path.join(dir, newest);
}

async function step(command: string, args: string[]): Promise<string | undefined> {
  const r = await runCommand(command, args);
  if (r.code === 0) return undefined;
  // `postfix` prints nothing without a terminal and syslog (harness.md gotcha 2): say at least how it ended.
  return `${command} ${args.join(' ')} failed (exit ${r.code})${r.stderr.trim() || r.stdout.trim() ? `: ${firstLine(r.stderr || r.stdout)}` : ''}`;
}

/** Reloads Postfix when its master runs (and Dovecot, when its files were touched). */
export async function reload(
  postfixDir: string,
  dovecotConf: string | null | undefined,
): Promise<string | undefined> {
  if ((await runCommand('postfix', ['-c', postfixDir, 'status'])).code === 0) {
    const failed = await step('postfix', ['-c', postfixDir, 'reload']);
    if (failed) return failed;
  }
  if (dovecotConf) return step('doveadm', ['-c', dovecotConf, 'reload']);
  return undefined;
}

async function applySteps(plan: Plan, opts: ApplyOptions): Promise<string | undefined> {
  const dir = opts.postfixDir;
  for (const change of plan.master) {
    const s = change.service;
    const name = `${s.service}/${s.type}`;
    if (change.columns) {
      const line = masterEntryText({ ...s, options: [] });
      const failed = await step('postconf', ['-c', dir, '-M', `${name}=${line.replace(/\s+/g, ' ')}`]);
      if (failed) return failed;
    }
    // postconf -M writes the line anew: set every -o after it, only the differing ones otherwise.
    const options = change.columns ? s.options : change.options;
    const failed =
      options.length === 0
        ? undefined
        : await step('postconf', ['-c', dir, '-P', ...options.map(([n, v]) => `${name}/${n}=${v}`)]);
    if (failed) return failed;
  }
  if (plan.overrides.length > 0) {
    const failed = await step('postconf', [
      '-c',
      dir,
      '-P',
      ...plan.overrides.map((o) => `${o.service}/${o.type}/${o.name}=${o.value}`),
    ]);
    if (failed) return failed;
  }
  if (plan.main.length > 0) {
    const failed = await step('postconf', ['-c', dir, '-e', ...plan.main.map((m) => `${m.name} = ${m.to}`)]);
    if (failed) return failed;
  }
  for (const file of plan.files) {
    mkdirSync(path.dirname(file.path), { recursive: true });
    writeFileSync(file.path, file.text, { mode: file.mode });
    chmodSync(file.path, file.mode);
    const gid = file.group === undefined ? undefined : groupId(file.group);
    if (gid !== undefined && process.getuid?.() === 0) chownSync(file.path, 0, gid);
  }
  for (const file of plan.files.filter((f) => f.path.endsWith('.sieve'))) {
    // Global scripts must be precompiled (Dovecot's mail processes may not write the .svbin next to them), with
    // the config just written: it enables the extensions they require (vnd.dovecot.pipe).
    const failed = await step('sievec', [...(opts.dovecotConf ? ['-c', opts.dovecotConf] : []), file.path]);
    if (failed) return failed;
  }
  const checked = await step('postfix', ['-c', dir, 'check']);
  if (checked) return checked;
  if (opts.dovecotConf && plan.files.length > 0) return step('doveconf', ['-c', opts.dovecotConf, '-n']);
  return undefined;
}

export async function applyPlan(plan: Plan, opts: ApplyOptions): Promise<Outcome> {
  const touched = [
    ...(plan.main.length + plan.master.length + plan.overrides.length > 0
      ? [path.join(opts.postfixDir, 'main.cf'), path.join(opts.postfixDir, 'master.cf')]
      : []),
    ...plan.files.flatMap((f) => [
      f.path,
      ...(f.path.endsWith('.sieve') ? [f.path.replace(/\.sieve$/, '.svbin')] : []),
    ]),
  ];
  const blocked = touched.map(unwritable).find((reason) => reason !== undefined);
  if (blocked) {
    return { code: EXIT.CANTCREAT, message: `cannot write ${blocked}; nothing was changed` };
  }
  let dir: string;
  try {
    dir = backup(touched, opts.backupRoot, opts);
  } catch (error) {
    return {
      code: EXIT.CANTCREAT,
      message: `cannot write the backup under ${opts.backupRoot} (${(error as NodeJS.ErrnoException).code ?? String(error)}); nothing was changed; name a writable one with --backup-dir`,
    };
  }
  const failed =
    (await applySteps(plan, opts)) ??
    (opts.reload ? await reload(opts.postfixDir, opts.dovecotConf) : undefined);
  if (failed === undefined) return { code: EXIT.OK, message: `applied; backup in ${dir}`, backup: dir };
  try {
    restore(dir);
  } catch (error) {
    return {
      code: EXIT.TEMPFAIL,
      message: `${failed}; restoring the backup failed too (${String(error)}): restore ${dir} by hand (setup --rollback --backup-dir ${dir})`,
      backup: dir,
    };
  }
  const reloaded = opts.reload ? await reload(opts.postfixDir, opts.dovecotConf) : undefined;
  return {
    code: EXIT.CONFIG,
    message: `${failed}; rolled back: every file is as it was (backup ${dir})${reloaded ? `; ${reloaded}` : ''}`,
    backup: dir,
  };
}
