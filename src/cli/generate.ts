/**
 * `postwarden generate postfix|dovecot|systemd|prometheus|ldap|all [--config F] [--out DIR]
 *  [--postfix-config-dir DIR] [--dovecot-version 2.3|2.4]` — renders the configuration fragments from the
 * postwarden config and, when Postfix is installed, the live host's `postconf` values (so the restriction lists
 * come out merged with the host's). Without --out every file goes to stdout after a `# ==> NAME <==` line; with
 * --out the files are written into DIR. Never touches a live file.
 *
 * Exit: 0; 64 usage; 78 config problems or an unreadable LDAP password file.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HostError, probePostfix } from '../adapters/host.js';
import { SYSTEM_CONFIG_PATH } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { hostFactsDefault, type HostFacts } from '../core/host-facts.js';
import { dovecotSyntax, SIEVE_SCRIPTS, type DovecotSyntax } from '../generate/dovecot.js';
import { generateFiles, type GenerateInputs, type Target, TARGETS } from '../generate/index.js';
import { EXIT } from '../util/sysexits.js';
import { parse, UsageError } from './args.js';
import { loadOrReport } from './common.js';

/** The package root (dist/src/cli → three levels up), where the snippets and deploy/ are. */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** The template files the renderers fill in, by the names they ask for. */
export function readTemplates(): Record<string, string> {
  const read = (rel: string) => readFileSync(path.join(ROOT, rel), 'utf8');
  const templates: Record<string, string> = {
    'postwarden.service': read('deploy/postwarden.service'),
    'scrape.yml': read('deploy/prometheus/scrape.yml'),
  };
  for (const v of ['2.3', '2.4']) {
    templates[`dovecot-${v}-postwarden.conf`] = read(`dovecot-snippets/dovecot-${v}-postwarden.conf`);
    templates[`auth-policy-${v}.conf`] = read(`dovecot-snippets/auth-policy-${v}.conf`);
  }
  for (const s of SIEVE_SCRIPTS) templates[`sieve/${s}`] = read(`dovecot-snippets/sieve/${s}`);
  return templates;
}

/** The first line of a secret file, or undefined when it cannot be read. */
export function firstLineOf(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').split('\n')[0]?.trim();
  } catch {
    return undefined;
  }
}

export class InputError extends Error {}

/** Everything the renderers need besides the targets. */
export function generateInputs(
  config: Readonly<Config>,
  configPath: string,
  facts: HostFacts,
  opts: { dovecotVersion?: DovecotSyntax | undefined; dovecotDir: string },
): GenerateInputs {
  let ldapPassword = '';
  if (config.ldap.password_file !== '' && Object.keys(config.ldap.queries).length > 0) {
    const password = firstLineOf(config.ldap.password_file);
    if (password === undefined) {
      throw new InputError(
        `ldap.password_file: ${config.ldap.password_file} cannot be read; the Postfix LDAP tables need the bind password`,
      );
    }
    ldapPassword = password;
  }
  return {
    config,
    configPath,
    facts,
    dovecotSyntax: opts.dovecotVersion ?? dovecotSyntax(facts.dovecotVersion),
    dovecotDir: opts.dovecotDir,
    templates: readTemplates(),
    ldapPassword,
    authPolicyKey: config.auth_policy.enabled ? firstLineOf(config.auth_policy.api_key_file) : undefined,
  };
}

export async function generate(argv: string[]): Promise<number> {
  // The design's table once gave generate an --apply; applying is setup's job (docs/adr/0008).
  if (argv.includes('--apply')) {
    throw new UsageError(
      'generate never touches live files: `postwarden setup --apply` writes main.cf, master.cf and Dovecot, with a backup',
    );
  }
  const { values, positionals } = parse(
    argv,
    {
      config: { type: 'string' },
      out: { type: 'string' },
      'postfix-config-dir': { type: 'string' },
      'dovecot-version': { type: 'string' },
    },
    true,
  );
  const which = positionals[0];
  if (
    positionals.length !== 1 ||
    (which !== 'all' && !(TARGETS as readonly string[]).includes(which ?? ''))
  ) {
    throw new UsageError(`name one of: ${TARGETS.join(', ')}, all`);
  }
  const version = values['dovecot-version'];
  if (version !== undefined && version !== '2.3' && version !== '2.4') {
    throw new UsageError('--dovecot-version: 2.3 or 2.4');
  }
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  const configPath =
    loaded.source.kind === 'file' ? path.resolve(loaded.source.path) : (values.config ?? SYSTEM_CONFIG_PATH);
  let facts: HostFacts;
  try {
    facts = await probePostfix(values['postfix-config-dir']);
  } catch (error) {
    if (!(error instanceof HostError)) throw error;
    facts = hostFactsDefault(values['postfix-config-dir'] ?? '/etc/postfix');
    process.stderr.write(
      `postwarden generate: no live Postfix (${error.message}); rendered for Postfix's defaults\n`,
    );
  }
  const targets: Target[] =
    which === 'all'
      ? TARGETS.filter((t) => t !== 'ldap' || Object.keys(loaded.config.ldap.queries).length > 0)
      : [which as Target];
  let generated;
  try {
    generated = generateFiles(
      targets,
      generateInputs(loaded.config, configPath, facts, {
        dovecotVersion: version,
        dovecotDir: '/etc/dovecot',
      }),
    );
  } catch (error) {
    if (!(error instanceof InputError)) throw error;
    process.stderr.write(`postwarden generate: ${error.message}\n`);
    return EXIT.CONFIG;
  }
  for (const note of generated.notes) process.stderr.write(`note: ${note}\n`);
  for (const c of generated.conflicts) process.stderr.write(`conflict: ${c.what} — ${c.fix}\n`);
  if (values.out !== undefined) {
    mkdirSync(values.out, { recursive: true });
    for (const file of generated.files) {
      const target = path.join(values.out, file.name);
      writeFileSync(target, file.text, { mode: file.mode });
      chmodSync(target, file.mode); // an existing file keeps its mode otherwise
      process.stdout.write(`wrote ${target}\n`);
    }
  } else {
    for (const file of generated.files) process.stdout.write(`# ==> ${file.name} <==\n${file.text}\n`);
  }
  return EXIT.OK;
}
