/**
 * `postwarden check-config [--config FILE]` — validates the config and opens every map it names, then prints
 * every problem as `key: value — problem; fix`. Exit 0 when all is well, 78 otherwise.
 */
import { mapRefsOf } from '../config/load.js';
import type { ConfigProblem } from '../config/problems.js';
import { MapRegistry } from '../maps/index.js';
import { EXIT } from '../util/sysexits.js';
import { parse } from './args.js';
import { LdapOptionsError, loadOrReport, openLdap, reportProblems } from './common.js';

export async function checkConfig(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' } });
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  const where = loaded.source.kind === 'file' ? loaded.source.path : 'the embedded default';
  const problems: ConfigProblem[] = [];
  let ldap: ReturnType<typeof openLdap>;
  try {
    // Settings only: the directory connects at its first lookup, which check-config never makes.
    ldap = openLdap(loaded.config, loaded.baseDir);
  } catch (error) {
    if (!(error instanceof LdapOptionsError)) throw error;
    const [problem, ...fix] = error.message.replace(/^ldap\.password_file: /, '').split('; ');
    problems.push({
      key: 'ldap.password_file',
      value: loaded.config.ldap.password_file,
      problem: problem ?? error.message,
      fix: fix.join('; ') || 'create it, readable by postwarden',
    });
  }
  const registry = new MapRegistry({
    env: { baseDir: loaded.baseDir, recipientDelimiter: loaded.config.recipient_delimiter },
    watch: false,
    ...(ldap ? { ldap: ldap.maps } : {}),
  });
  for (const { key, ref } of mapRefsOf(loaded.config)) {
    for (const table of registry.openRef(ref, key)) {
      const health = registry.health().find((h) => h.name === table.name);
      if (health && !health.healthy) {
        problems.push({
          key,
          value: table.name,
          problem: health.reason ?? 'cannot be opened',
          fix: 'create or correct the map file, or remove it from the config',
        });
      }
    }
  }
  registry.close();
  await ldap?.directory.close();
  if (problems.length > 0) {
    reportProblems(where, problems);
    return EXIT.CONFIG;
  }
  process.stdout.write(`config OK: ${where}\n`);
  return EXIT.OK;
}
