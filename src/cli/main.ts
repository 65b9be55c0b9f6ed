#!/usr/bin/env node
/**
 * The `postwarden` command: one file per subcommand, exit codes per sysexits (DESIGN.md §3).
 */
import { EXIT } from '../util/sysexits.js';
import { UsageError } from './args.js';

const USAGE = `usage: postwarden <command> [options]

commands:
  serve [--config FILE]                      run the enabled faces (policy, http)
  check-config [--config FILE]               validate the config and its maps; exit 0 or 78
  policy-query [--server ADDR] [--config FILE] name=value ...
                                             send one policy request, print the action
  greylist list|delete|allow [--config FILE] [options]
                                             inspect and edit greylisting state (greylist help)
  quarantine list|show|release|delete [--config FILE] [options]
                                             held messages of the content filter (quarantine help)
  lists show|add|remove [--config FILE] [options]
                                             runtime block and allow entries (lists help)
  decisions [--config FILE] QUEUE_ID         what was decided about a message, and why
  learn spam|ham [--config FILE] PATH...     teach the Bayesian classifier from files, directories
                                             (Maildir) or mbox files
  dnsbl-check [--config FILE] IP             what every configured DNS list says about IP, and
                                             whether each list passes its self-test
  generate postfix|dovecot|systemd|prometheus|ldap|all [--config FILE] [--out DIR]
           [--postfix-config-dir DIR] [--dovecot-version 2.3|2.4]
                                             render the Postfix, Dovecot, systemd, Prometheus and LDAP
                                             fragments (stdout, or files in DIR); never touches live files
  setup [--config FILE] [--postfix-config-dir DIR] [--dovecot-config-dir DIR] [--backup-dir DIR]
        [--apply] [--no-reload] [--json]
                                             write the config if missing, show (or --apply, with a backup
                                             and checks) what main.cf, master.cf and Dovecot need
  setup --rollback [--backup-dir DIR|latest] [--postfix-config-dir DIR]
                                             restore the last (or named) backup byte for byte and reload
  doctor [--config FILE] [--postfix-config-dir DIR] [--smtp HOST:PORT] [--probe-recipient ADDR]
         [--skip NAME,...] [--json]
                                             check a live host: Postfix wiring, open relay,
                                             dependencies, DNS lists, clock, one message end to end
  reference config|metrics|events|openapi|rules [--out FILE] | all [--root DIR]
                                             print (or write) a generated reference (docs/)
  help                                       this text
`;

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  serve: async () => (await import('./serve.js')).serve,
  'check-config': async () => (await import('./check-config.js')).checkConfig,
  'policy-query': async () => (await import('./policy-query.js')).policyQuery,
  greylist: async () => (await import('./greylist.js')).greylist,
  quarantine: async () => (await import('./quarantine.js')).quarantine,
  learn: async () => (await import('./learn.js')).learn,
  lists: async () => (await import('./lists.js')).lists,
  decisions: async () => (await import('./decisions.js')).decisions,
  'dnsbl-check': async () => (await import('./dnsbl-check.js')).dnsblCheck,
  reference: async () => (await import('./reference.js')).reference,
  generate: async () => (await import('./generate.js')).generate,
  setup: async () => (await import('./setup.js')).setup,
  doctor: async () => (await import('./doctor.js')).doctor,
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(USAGE);
    return name === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const load = COMMANDS[name];
  if (!load) {
    process.stderr.write(`postwarden: unknown command '${name}'\n\n${USAGE}`);
    return EXIT.USAGE;
  }
  try {
    return await (
      await load()
    )(rest);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`postwarden ${name}: ${error.message}\n`);
    return EXIT.USAGE;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `postwarden: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = EXIT.TEMPFAIL;
  },
);
