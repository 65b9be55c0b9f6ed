/**
 * The systemd unit, rendered from deploy/postwarden.service (the one source of its hardening and comments) with
 * this config's path, the unix policy socket's directory made writable, and the learn socket's group added.
 *
 * Contract: pure; the caller reads the template.
 */
import path from 'node:path';
import type { Config } from '../config/schema.js';

export function renderSystemdUnit(config: Readonly<Config>, template: string, configPath: string): string {
  let unit = template.replace(/--config \S+/g, `--config ${configPath}`);
  const listen = typeof config.policy.listen === 'string' ? [config.policy.listen] : config.policy.listen;
  const socketDirs = [
    ...new Set(listen.filter((l) => l.startsWith('unix:')).map((l) => path.dirname(l.slice(5)))),
  ];
  if (socketDirs.length > 0) {
    // The template carries the line commented out, for the unix socket in Postfix's spool (docs/admin-guide.md).
    unit = unit.replace(/^#ReadWritePaths=.*$/m, socketDirs.map((d) => `ReadWritePaths=${d}`).join('\n'));
  }
  if (config.learn.socket_group !== '') {
    unit = unit.replace(
      /^(Group=.*)$/m,
      `$1\n# learn.socket_group: the socket is given to this group, so postwarden must be in it.\nSupplementaryGroups=${config.learn.socket_group}`,
    );
  }
  return unit;
}
