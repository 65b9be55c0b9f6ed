/**
 * `generate`'s files, by target: each renderer of this folder, named as the contract names the files
 * (main.cf.postwarden, master.cf.postwarden, dovecot-postwarden.conf and its sieve scripts, postwarden.service,
 * prometheus-postwarden.yml, ldap-NAME.cf).
 *
 * Contract: pure; the caller reads the templates, the LDAP password and the auth-policy key, and writes files.
 */
import type { Config } from '../config/schema.js';
import type { Conflict, HostFacts } from '../core/host-facts.js';
import { renderDovecot, type DovecotSyntax, type DovecotTemplates } from './dovecot.js';
import { masterCfText, mainCfText, renderPostfix } from './postfix.js';
import { postfixLdapTables } from './postfix-ldap.js';
import { renderPrometheusScrape } from './prometheus.js';
import { renderSystemdUnit } from './systemd.js';

export const TARGETS = ['postfix', 'dovecot', 'systemd', 'prometheus', 'ldap'] as const;
export type Target = (typeof TARGETS)[number];

export interface GeneratedFile {
  readonly name: string;
  readonly text: string;
  /** 0o640 for files holding a secret (bind_pw, the auth-policy key). */
  readonly mode: number;
}

export interface GenerateInputs {
  readonly config: Readonly<Config>;
  /** Where the config came from, named in the files' headers and the unit's ExecStart. */
  readonly configPath: string;
  readonly facts: HostFacts;
  readonly dovecotSyntax: DovecotSyntax;
  readonly dovecotDir: string;
  /** dovecot-snippets/ files by relative name, plus `postwarden.service` and `scrape.yml` from deploy/. */
  readonly templates: DovecotTemplates;
  readonly ldapPassword: string;
  readonly authPolicyKey: string | undefined;
}

export interface Generated {
  readonly files: readonly GeneratedFile[];
  readonly notes: readonly string[];
  readonly conflicts: readonly Conflict[];
}

export function generateFiles(targets: readonly Target[], inputs: GenerateInputs): Generated {
  const { config } = inputs;
  const files: GeneratedFile[] = [];
  const notes: string[] = [];
  const conflicts: Conflict[] = [];
  const template = (name: string) => {
    const text = inputs.templates[name];
    if (text === undefined) throw new Error(`template ${name} is missing`);
    return text;
  };
  for (const target of targets) {
    if (target === 'postfix') {
      const render = renderPostfix(config, inputs.facts);
      files.push(
        { name: 'main.cf.postwarden', text: mainCfText(render, inputs.configPath), mode: 0o644 },
        { name: 'master.cf.postwarden', text: masterCfText(render, inputs.configPath), mode: 0o644 },
      );
      notes.push(...render.notes);
      conflicts.push(...render.conflicts);
    } else if (target === 'dovecot') {
      const render = renderDovecot(config, inputs.dovecotSyntax, inputs.templates, {
        dovecotDir: inputs.dovecotDir,
        apiKey: inputs.authPolicyKey,
      });
      files.push(
        {
          name: 'dovecot-postwarden.conf',
          text: render.conf,
          mode: config.auth_policy.enabled ? 0o640 : 0o644,
        },
        ...render.sieve.map((s) => ({ name: s.name.replace(/^sieve\//, ''), text: s.text, mode: 0o644 })),
      );
      notes.push(...render.notes);
    } else if (target === 'systemd') {
      files.push({
        name: 'postwarden.service',
        text: renderSystemdUnit(config, template('postwarden.service'), inputs.configPath),
        mode: 0o644,
      });
    } else if (target === 'prometheus') {
      files.push({
        name: 'prometheus-postwarden.yml',
        text: renderPrometheusScrape(config, template('scrape.yml')),
        mode: 0o644,
      });
    } else {
      const tables = postfixLdapTables(config.ldap, inputs.ldapPassword);
      files.push(...tables.map((t) => ({ name: t.name, text: t.text, mode: 0o640 })));
    }
  }
  return { files, notes, conflicts };
}
