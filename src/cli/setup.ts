/**
 * `postwarden setup [--config F] [--postfix-config-dir DIR] [--dovecot-config-dir DIR] [--backup-dir DIR]
 *  [--apply] [--no-reload] [--json]` and `postwarden setup --rollback [--backup-dir DIR|latest]`.
 *
 * Reads the live host (postconf, dovecot --version); writes the postwarden config (from the host's myhostname,
 * mydestination, virtual_mailbox_domains and mynetworks) and a fresh admin token beside it, both 0640, only
 * when the config does not exist; then prints what would change in main.cf, master.cf and Dovecot's config.
 * With --apply it applies that (setup-apply.ts: backup, postconf, checks, reload, rollback on failure).
 * Idempotent: when nothing differs it says so, writes no backup and reloads nothing.
 *
 * Refuses, before writing anything, when the host has what postwarden must not overwrite: another content
 * filter (amavisd-new), another tool's policy service, or a port postwarden wants held by another program.
 *
 * Exit: 0; 64 usage; 69 no Postfix (postconf not on PATH); 73 cannot write; 75 a restore failed; 78 a
 * conflict, config problems, no main.cf, or a failed check (rolled back).
 */
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import {
  HostError,
  listeningSockets,
  portConflicts,
  probePostfix,
  type WantedPort,
} from '../adapters/host.js';
import { parseConfigText, SYSTEM_CONFIG_PATH } from '../config/load.js';
import { formatProblem } from '../config/problems.js';
import type { Config } from '../config/schema.js';
import type { Conflict, HostFacts } from '../core/host-facts.js';
import { dovecotSyntax, renderDovecot } from '../generate/dovecot.js';
import { planChanges, planIsEmpty, planLines, type WantedFile } from '../generate/plan.js';
import { postfixLdapTables } from '../generate/postfix-ldap.js';
import { hostPort, KNOWN_PEERS, renderPostfix } from '../generate/postfix.js';
import { listTokens } from '../generate/postfix-lists.js';
import { EXIT } from '../util/sysexits.js';
import { parse } from './args.js';
import { loadOrReport } from './common.js';
import { firstLineOf, readTemplates } from './generate.js';
import { applyPlan, DEFAULT_BACKUP_ROOT, findBackup, groupId, reload, restore } from './setup-apply.js';

const DOVECOT_FILE = 'conf.d/90-postwarden.conf';

/** A fresh config from the host's values: its domains, its networks, the filter on, the token beside it. */
export function freshConfig(facts: HostFacts, configPath: string): Record<string, unknown> {
  const domains = [
    ...listTokens(facts.mydestination),
    ...listTokens(facts.virtualMailboxDomains).filter((d) => !d.includes(':')),
  ].filter((d, i, all) => !/^localhost(\.|$)/.test(d) && all.indexOf(d) === i);
  const networks = listTokens(facts.mynetworks)
    .filter((n) => !n.includes(':/') && !n.startsWith('/'))
    .map((n) => n.replace(/^\[([^\]]+)\]/, '$1'));
  return {
    ...(facts.myhostname === '' ? {} : { hostname: facts.myhostname }),
    local_domains: domains.length > 0 ? domains : [facts.myhostname || 'localhost'],
    local_networks: networks.length > 0 ? networks : ['127.0.0.0/8', '::1/128'],
    filter: { enabled: true },
    http: { token_file: path.join(path.dirname(configPath), 'admin.token') },
  };
}

function writeSecretFile(file: string, text: string): void {
  writeFileSync(file, text, { mode: 0o640, flag: 'wx' });
  const gid = groupId('postwarden');
  if (gid !== undefined && process.getuid?.() === 0) chownSync(file, 0, gid);
}

function wantedPorts(config: Readonly<Config>): WantedPort[] {
  const listens = typeof config.policy.listen === 'string' ? [config.policy.listen] : config.policy.listen;
  const wanted: { key: string; address: string; owner: WantedPort['owner'] }[] = [
    ...listens.map((address) => ({ key: 'policy.listen', address, owner: 'postwarden' as const })),
    { key: 'http.listen', address: config.http.listen, owner: 'postwarden' },
    ...(config.filter.enabled
      ? [
          { key: 'filter.listen', address: config.filter.listen, owner: 'postwarden' as const },
          { key: 'filter.reinject', address: config.filter.reinject, owner: 'postfix' as const },
        ]
      : []),
  ];
  return wanted.flatMap((w) => {
    const hp = w.address.startsWith('unix:') ? undefined : hostPort(w.address);
    return hp ? [{ key: w.key, host: hp.host, port: hp.port, owner: w.owner }] : [];
  });
}

function fail(code: number, message: string): number {
  process.stderr.write(`postwarden setup: ${message}\n`);
  return code;
}

/** The Dovecot config dir and the file postwarden writes there, when Dovecot's config includes conf.d. */
function dovecotTarget(
  facts: HostFacts,
  dir: string,
): { conf: string; file: string | undefined } | undefined {
  const conf = path.join(dir, 'dovecot.conf');
  if (facts.dovecotVersion === '' || !existsSync(conf)) return undefined;
  const text = readFileSync(conf, 'utf8');
  const includesConfD = [`conf.d/*.conf`, `${dir}/conf.d/*.conf`].some((glob) =>
    text
      .split('\n')
      .some((line) => /^\s*!include(_try)?\s/.test(line) && line.trim().split(/\s+/)[1] === glob),
  );
  return {
    conf,
    file: includesConfD && existsSync(path.join(dir, 'conf.d')) ? path.join(dir, DOVECOT_FILE) : undefined,
  };
}

async function rollback(
  backupDir: string | undefined,
  postfixDir: string | undefined,
  doReload: boolean,
): Promise<number> {
  const root = backupDir === undefined || backupDir === 'latest' ? DEFAULT_BACKUP_ROOT : backupDir;
  const dir = findBackup(root);
  if (dir === undefined) return fail(EXIT.CONFIG, `no backup found in ${root}`);
  let manifest;
  try {
    manifest = restore(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return fail(
      code === 'EROFS' || code === 'EACCES' ? EXIT.CANTCREAT : EXIT.TEMPFAIL,
      `restoring ${dir} failed: ${String(error)}`,
    );
  }
  const failed = doReload
    ? await reload(postfixDir ?? manifest.postfix_config_directory, manifest.dovecot_config)
    : undefined;
  process.stdout.write(`restored ${manifest.files.length} file(s) from ${dir}\n`);
  return failed ? fail(EXIT.TEMPFAIL, failed) : EXIT.OK;
}

export async function setup(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string' },
    'postfix-config-dir': { type: 'string' },
    'dovecot-config-dir': { type: 'string' },
    'backup-dir': { type: 'string' },
    apply: { type: 'boolean' },
    rollback: { type: 'boolean' },
    'no-reload': { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const doReload = values['no-reload'] !== true;
  if (values.rollback === true) return rollback(values['backup-dir'], values['postfix-config-dir'], doReload);

  let facts;
  try {
    facts = await probePostfix(values['postfix-config-dir']);
  } catch (error) {
    if (error instanceof HostError) return fail(error.exit, error.message);
    throw error;
  }
  const configPath = path.resolve(values.config ?? SYSTEM_CONFIG_PATH);
  const configExists = existsSync(configPath);
  let freshText: string | undefined;
  let config: Readonly<Config>;
  if (configExists) {
    const loaded = loadOrReport(configPath);
    if (!loaded) return EXIT.CONFIG;
    config = loaded.config;
  } else {
    freshText = `# postwarden config, written by \`postwarden setup\` from this host's Postfix settings.\n# Every key: docs/config-reference.md. Check it with: postwarden check-config\n${stringify(freshConfig(facts, configPath))}`;
    const parsed = parseConfigText(freshText, { kind: 'file', path: configPath });
    if (!parsed.ok) {
      return fail(
        EXIT.CONFIG,
        `the config written from this host would not load: ${parsed.problems.map(formatProblem).join('; ')}`,
      );
    }
    config = parsed.config;
  }

  const render = renderPostfix(config, facts);
  const dovecotDir = path.resolve(values['dovecot-config-dir'] ?? '/etc/dovecot');
  const dovecot = dovecotTarget(facts, dovecotDir);
  const notes = [...render.notes];
  const files: WantedFile[] = [];
  const current = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : undefined);
  // The Postfix ldap: tables main.cf will name (sender login maps, aliases), beside main.cf.
  const tables = new Set(
    render.main.flatMap((m) => [...m.value.matchAll(/ldap:(\S+?\.cf)\b/g)].map((x) => x[1] ?? '')),
  );
  if (tables.size > 0) {
    const password = config.ldap.password_file === '' ? '' : firstLineOf(config.ldap.password_file);
    if (password === undefined)
      return fail(EXIT.CONFIG, `ldap.password_file: ${config.ldap.password_file} cannot be read`);
    for (const t of postfixLdapTables(config.ldap, password)) {
      const file = path.join(facts.configDirectory, t.name);
      if (tables.has(file))
        files.push({ path: file, text: t.text, mode: 0o640, group: 'postfix', current: current(file) });
    }
  }
  if (dovecot) {
    const templates = readTemplates();
    const key = config.auth_policy.enabled ? firstLineOf(config.auth_policy.api_key_file) : undefined;
    const d = renderDovecot(config, dovecotSyntax(facts.dovecotVersion), templates, {
      dovecotDir,
      apiKey: key,
    });
    notes.push(...d.notes);
    if (dovecot.file === undefined) {
      notes.push(
        `${dovecot.conf} does not include conf.d/*.conf: Dovecot is left as it is; write \`postwarden generate dovecot --out DIR\` and add \`!include DIR/dovecot-postwarden.conf\` to ${dovecot.conf}`,
      );
    } else {
      files.push({
        path: dovecot.file,
        text: d.conf,
        mode: config.auth_policy.enabled ? 0o640 : 0o644,
        current: current(dovecot.file),
      });
      for (const s of d.sieve) {
        const file = path.join(dovecotDir, s.name);
        files.push({ path: file, text: s.text, mode: 0o644, current: current(file) });
      }
    }
  }

  let conflicts: Conflict[] = [...render.conflicts];
  try {
    conflicts = [...conflicts, ...portConflicts(wantedPorts(config), listeningSockets(), KNOWN_PEERS)];
  } catch (error) {
    notes.push(`ports not checked: /proc cannot be read (${String(error)})`);
  }
  if (conflicts.length > 0) {
    if (values.json === true) process.stdout.write(`${JSON.stringify({ ok: false, conflicts, notes })}\n`);
    for (const c of conflicts) process.stderr.write(`postwarden setup: conflict: ${c.what} — ${c.fix}\n`);
    return fail(EXIT.CONFIG, 'the host was left as it is');
  }

  let wrote: string[] = [];
  if (freshText !== undefined) {
    try {
      mkdirSync(path.dirname(configPath), { recursive: true, mode: 0o750 });
      const tokenFile = config.http.token_file;
      if (!existsSync(tokenFile)) writeSecretFile(tokenFile, `${randomBytes(32).toString('base64url')}\n`);
      writeSecretFile(configPath, freshText);
      wrote = [configPath, tokenFile];
    } catch (error) {
      return fail(
        EXIT.CANTCREAT,
        `cannot write ${configPath} (${(error as NodeJS.ErrnoException).code ?? String(error)}); nothing was changed`,
      );
    }
  }

  const plan = planChanges(render, facts, files);
  const lines = planLines(plan);
  const empty = planIsEmpty(plan);
  let outcome;
  if (values.apply === true && !empty) {
    outcome = await applyPlan(plan, {
      postfixDir: facts.configDirectory,
      backupRoot: path.resolve(values['backup-dir'] ?? DEFAULT_BACKUP_ROOT),
      reload: doReload,
      dovecotConf: files.some((f) => f.path.startsWith(`${dovecotDir}/`)) ? dovecot?.conf : undefined,
    });
  }
  if (values.json === true) {
    process.stdout.write(
      `${JSON.stringify({ ok: (outcome?.code ?? 0) === 0, wrote, changes: lines, notes, applied: outcome !== undefined && outcome.code === 0, ...(outcome ? { message: outcome.message, backup: outcome.backup ?? null } : {}) })}\n`,
    );
  } else {
    for (const file of wrote) process.stdout.write(`wrote ${file}\n`);
    for (const note of notes) process.stdout.write(`note: ${note}\n`);
    if (empty) process.stdout.write('nothing to change\n');
    else {
      process.stdout.write(`${values.apply === true ? 'changes' : 'would change (run with --apply)'}:\n`);
      for (const line of lines) process.stdout.write(`  ${line}\n`);
    }
    if (outcome?.code === 0) process.stdout.write(`${outcome.message}\n`);
  }
  if (outcome && outcome.code !== 0) return fail(outcome.code, outcome.message);
  return EXIT.OK;
}
