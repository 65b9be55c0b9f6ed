/**
 * `postwarden doctor [--config F] [--postfix-config-dir DIR] [--smtp HOST:PORT] [--probe-recipient ADDR]
 * [--skip NAME,...] [--json]` — checks a live host and prints one finding per thing looked at (docs/doctor.md):
 * Postfix wiring (postconf), an open-relay probe, each dependency, the DNS lists' self-tests, the clock, and one
 * test message end to end. Wires the product's adapters (store, clamd, DNS, LDAP) into src/doctor/.
 *
 * Exit: 0 nothing wrong (ok and info only); 69 a dependency unreachable (Postfix not installed, store, clamd,
 * resolver, LDAP down; wins over 78); 78 any other warning or error; 64 usage.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { DnsClient } from '../adapters/dns.js';
import { ClamdScanner } from '../adapters/clamd.js';
import { dnsLists } from '../core/checks/index.js';
import { readDecisions } from '../core/decisions.js';
import { uriLists } from '../core/scanners/uribl.js';
import type { Store } from '../core/store.js';
import type { Config } from '../config/schema.js';
import { judgeNtp, judgeSkew, readNtp, redisSkew } from '../doctor/clock.js';
import { type Dependency, reach } from '../doctor/dependencies.js';
import { checkDnsLists } from '../doctor/dns-lists.js';
import { runE2e } from '../doctor/e2e.js';
import { exitCodeOf, finding, type Finding, ok, toJson, toTable } from '../doctor/finding.js';
import { probeListeners } from '../doctor/listeners.js';
import { PostconfMissing, readPostfixConfig } from '../doctor/postconf.js';
import {
  hostPort,
  inetServiceEndpoint,
  listElements,
  listenEndpoint,
  type PostfixConfig,
  sameEndpoint,
} from '../doctor/postfix-config.js';
import { judgeRelay, probeRelay, trustedNetworks } from '../doctor/relay.js';
import { judgeWiring, type WiringSettings } from '../doctor/wiring.js';
import { filterNeedsStore, uriblRuns } from '../filter/needs.js';
import { needsDnsLists, needsStore } from '../policy/service.js';
import { openStore } from '../store/index.js';
import { EXIT } from '../util/sysexits.js';
import { parse, UsageError } from './args.js';
import { type Loaded, loadOrReport, openLdap, storeOptions } from './common.js';

/** What --skip takes: a group of checks, or one check's name. */
export const DOCTOR_CHECKS = [
  'wiring',
  'relay',
  'store',
  'clamd',
  'resolver',
  'ldap',
  'dns-lists',
  'clock',
  'e2e',
] as const;
const WIRING = [
  'policy-order',
  'relay-gate',
  'policy-listen',
  'content-filter',
  'filter-listen',
  'reinject',
  'receive-override',
  'mynetworks',
];

/** Deadline of each dependency probe: a dependency slower than this fails the policy's own deadlines too. */
const PROBE_MS = 3000;
const E2E_MS = 60_000;

function wiringSettings(config: Readonly<Config>): WiringSettings {
  const listen = config.policy.listen;
  return {
    policyListen: typeof listen === 'string' ? [listen] : listen,
    filter: {
      enabled: config.filter.enabled,
      mode: config.filter.mode,
      listen: config.filter.listen,
      reinject: config.filter.reinject,
    },
    localNetworks: Array.isArray(config.local_networks) ? config.local_networks : [],
  };
}

/** The first inet smtpd of master.cf that is not the re-injection service (the MX's own port). */
function defaultSmtp(
  pf: PostfixConfig | undefined,
  config: Readonly<Config>,
): { host: string; port: number } {
  const reinject = listenEndpoint(config.filter.reinject);
  for (const s of pf?.services ?? []) {
    if (s.type !== 'inet' || s.command !== 'smtpd') continue;
    const at = inetServiceEndpoint(s.name);
    if (!at || (reinject && sameEndpoint({ kind: 'inet', ...at }, reinject))) continue;
    return at;
  }
  return { host: '127.0.0.1', port: 25 };
}

/** A domain this host receives mail for: local_domains (inline), else Postfix's domain lists. */
function firstLocalDomain(config: Readonly<Config>, pf: PostfixConfig | undefined): string | undefined {
  const inline = Array.isArray(config.local_domains)
    ? config.local_domains.find((d) => !d.includes(':'))
    : undefined;
  if (inline !== undefined) return inline;
  for (const key of ['virtual_mailbox_domains', 'mydestination', 'relay_domains', 'virtual_alias_domains']) {
    const found = listElements(pf?.main.get(key) ?? '').find(
      (d) => !d.includes(':') && !d.includes('$') && !d.startsWith('/'),
    );
    if (found !== undefined) return found;
  }
  return undefined;
}

function dependencies(
  loaded: Loaded,
  store: { open?: Store; problem?: Finding },
  localDomain: string | undefined,
): (Dependency | Finding)[] {
  const { config } = loaded;
  const out: (Dependency | Finding)[] = [];
  if (store.problem) out.push(store.problem);
  else if (store.open) {
    const s = store.open;
    out.push({
      check: 'store',
      what:
        config.store.driver === 'sqlite'
          ? `sqlite ${config.store.path}`
          : `redis ${config.store.sentinels.length > 0 ? config.store.sentinels.join(',') : config.store.url}`,
      attempt: () => s.ping(),
      fix:
        config.store.driver === 'sqlite'
          ? 'check the file and its directory: owner postwarden, mode 0640/0750, disk not full'
          : 'start Redis (systemctl start redis-server) or correct store.url',
    });
  }
  const av = config.filter.antivirus;
  if (config.filter.enabled && config.filter.scanners.includes('antivirus') && av.mode !== 'off') {
    const clamd = new ClamdScanner(av, { commandTimeoutMs: PROBE_MS });
    out.push({
      check: 'clamd',
      what: `clamd ${clamd.target}`,
      attempt: async () => {
        await clamd.ping({ timeoutMs: PROBE_MS });
        return 'PONG';
      },
      fix: 'start clamd (systemctl start clamav-daemon; it needs its signatures: freshclam) or correct filter.antivirus.socket',
    });
  }
  for (const server of config.dns.servers) {
    const client = new DnsClient({
      servers: [server],
      timeoutMs: Math.min(config.dns.timeout_ms, PROBE_MS),
      tries: 1,
      maxInFlight: 4,
      cache: { maxEntries: 0, maxTtlS: 0, defaultTtlS: 0, negativeTtlS: 0, errorTtlS: 0 },
    });
    const name = localDomain ?? 'localhost';
    out.push({
      check: 'resolver',
      what: `resolver ${server}`,
      attempt: async () => {
        const answer = await client.query(name, 'MX');
        if (answer.status === 'error') throw new Error(`${name} MX: ${answer.reason}`);
        return `${name} MX: ${answer.status === 'ok' ? answer.records.map((r) => r.exchange).join(', ') : answer.status}`;
      },
      fix: 'start the local resolver (systemctl start unbound) or correct dns.servers',
    });
  }
  if (Object.keys(config.ldap.queries).length > 0) {
    let ldap;
    try {
      ldap = openLdap(config, loaded.baseDir);
    } catch (error) {
      out.push(
        finding(
          'ldap',
          'error',
          (error as Error).message,
          'create the password file, readable by postwarden',
        ),
      );
    }
    if (ldap) {
      const directory = ldap.directory;
      out.push({
        check: 'ldap',
        what: `LDAP ${config.ldap.url}`,
        attempt: async () => {
          try {
            const outcome = await directory.search({
              base: config.ldap.base,
              scope: 'base',
              filter: '(objectClass=*)',
              attributes: ['1.1'],
              sizeLimit: 1,
            });
            if (!outcome.ok) throw new Error(outcome.reason);
            return `bound${config.ldap.bind_dn !== '' ? ` as ${config.ldap.bind_dn}` : ' anonymously'}, base ${config.ldap.base || '(root DSE)'} found`;
          } finally {
            await directory.close();
          }
        },
        fix: 'start the directory server, or correct ldap.url, ldap.bind_dn, ldap.password_file and ldap.base',
      });
    }
  }
  return out;
}

async function openStoreFor(loaded: Loaded): Promise<{ open?: Store; problem?: Finding }> {
  const { config } = loaded;
  let options;
  try {
    options = storeOptions(config, loaded.baseDir);
  } catch (error) {
    return {
      problem: finding('store', 'error', (error as Error).message, 'correct the store section of the config'),
    };
  }
  if (options.driver === 'sqlite' && !existsSync(options.path)) {
    return {
      problem: finding(
        'store',
        'warning',
        `the SQLite store ${options.path} does not exist yet`,
        'start postwarden (it creates the file), or correct store.path',
      ),
    };
  }
  try {
    return { open: await openStore(options) };
  } catch (error) {
    return {
      problem: {
        ...finding(
          'store',
          'error',
          `cannot open the store: ${(error as Error).message}`,
          'correct store.* or start the store',
        ),
        unreachable: true,
      },
    };
  }
}

/** The mail log from its current end on: Postfix's maillog_file, else Debian's /var/log/mail.log. */
function mailLog(pf: PostfixConfig | undefined): () => string | { unreadable: string } {
  const file = pf?.main.get('maillog_file') || '/var/log/mail.log';
  let start = 0;
  try {
    start = statSync(file).size;
  } catch {
    // read below reports it
  }
  return () => {
    try {
      const fd = openSync(file, 'r');
      try {
        const size = statSync(file).size;
        const from = size < start ? 0 : start; // rotated: read the new file whole
        const buffer = Buffer.alloc(Math.min(size - from, 16 * 1024 * 1024));
        readSync(fd, buffer, 0, buffer.length, from);
        return buffer.toString('utf8');
      } finally {
        closeSync(fd);
      }
    } catch (error) {
      return { unreadable: `cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})` };
    }
  };
}

async function clock(config: Readonly<Config>, loaded: Loaded): Promise<Finding[]> {
  const findings = [judgeNtp(await readNtp(PROBE_MS))];
  const options =
    config.store.driver === 'redis' && config.store.sentinels.length === 0
      ? storeOptions(config, loaded.baseDir)
      : undefined;
  if (options?.driver === 'redis' && options.url !== undefined) {
    const host = new URL(options.url).hostname.replace(/^\[|\]$/g, '');
    if (['127.0.0.1', 'localhost', '::1'].includes(host)) {
      try {
        const auth = {
          ...(options.username !== undefined ? { username: options.username } : {}),
          ...(options.password !== undefined ? { password: options.password } : {}),
        };
        findings.push(judgeSkew(`Redis TIME (${options.url})`, await redisSkew(options.url, auth, PROBE_MS)));
      } catch (error) {
        findings.push(
          finding('clock', 'info', `no Redis TIME to compare with: ${(error as Error).message}`, ''),
        );
      }
    }
  }
  return findings;
}

export async function doctor(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string' },
    'postfix-config-dir': { type: 'string' },
    smtp: { type: 'string' },
    'probe-recipient': { type: 'string' },
    skip: { type: 'string', default: '' },
    json: { type: 'boolean', default: false },
  });
  const skip = new Set(
    (values.skip ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  );
  for (const name of skip) {
    if (!(DOCTOR_CHECKS as readonly string[]).includes(name) && !WIRING.includes(name)) {
      throw new UsageError(
        `--skip ${name}: not a check; use ${DOCTOR_CHECKS.join(', ')} (or ${WIRING.join(', ')})`,
      );
    }
  }
  const smtpArg = values.smtp === undefined ? undefined : hostPort(values.smtp);
  if (values.smtp !== undefined && !smtpArg) throw new UsageError(`--smtp ${values.smtp}: not HOST:PORT`);
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  const { config } = loaded;
  const findings: Finding[] = [];
  const run = (name: string) => !skip.has(name);

  let pf: PostfixConfig | undefined;
  try {
    pf = await readPostfixConfig(values['postfix-config-dir']);
    findings.push(
      ok(
        'postfix',
        `Postfix ${pf.main.get('mail_version') ?? '?'}, config_directory ${pf.main.get('config_directory') ?? '?'}`,
      ),
    );
  } catch (error) {
    findings.push({
      ...finding(
        'postfix',
        'error',
        (error as Error).message,
        error instanceof PostconfMissing
          ? 'install Postfix (apt install postfix)'
          : 'give the right --postfix-config-dir, or create main.cf',
      ),
      ...(error instanceof PostconfMissing ? { unreachable: true } : {}),
    });
  }
  const settings = wiringSettings(config);
  if (pf && run('wiring')) {
    findings.push(...judgeWiring(pf, settings).filter((f) => run(f.check)));
    findings.push(...(await probeListeners(settings, PROBE_MS)).filter((f) => run(f.check)));
  }
  const smtp = smtpArg ?? defaultSmtp(pf, config);
  const localDomain = firstLocalDomain(config, pf);
  if (run('relay')) {
    if (localDomain === undefined) {
      findings.push(
        finding(
          'open-relay',
          'warning',
          'no local domain known (local_domains, mydestination, virtual_mailbox_domains): relay not tested',
          'set local_domains in the config',
        ),
      );
    } else {
      const trusted = [...trustedNetworks(pf?.main.get('mynetworks') ?? ''), ...settings.localNetworks];
      findings.push(
        ...judgeRelay(
          `${smtp.host}:${smtp.port}`,
          await probeRelay(smtp, trusted, localDomain, PROBE_MS * 2),
        ),
      );
    }
  }
  // Only what `serve` opens with this config: no store, no decision records to follow.
  const usesStore = needsStore(config) || filterNeedsStore(config);
  if (!usesStore && run('store')) {
    findings.push(
      finding(
        'store',
        'info',
        'no check of this config keeps state (greylist, ratelimit, auth_policy, bayes): no store is used, and no decision is recorded',
        '',
      ),
    );
  }
  const store = usesStore && (run('store') || run('e2e')) ? await openStoreFor(loaded) : {};
  try {
    const deps = dependencies(loaded, run('store') ? store : {}, localDomain).filter((d) => run(d.check));
    const results = await Promise.all(
      deps.map((d) => ('attempt' in d ? reach(d, PROBE_MS) : Promise.resolve(d))),
    );
    findings.push(...results);
    if (run('dns-lists')) {
      const lists = [
        ...(needsDnsLists(config) ? dnsLists(config.policy.dnsbl) : []),
        ...(uriblRuns(config) ? uriLists(config.filter.uribl) : []),
      ];
      const uncached = new DnsClient({
        servers: config.dns.servers,
        timeoutMs: config.dns.timeout_ms,
        tries: config.dns.tries,
        maxInFlight: 64,
        cache: { maxEntries: 0, maxTtlS: 0, defaultTtlS: 0, negativeTtlS: 0, errorTtlS: 0 },
      });
      findings.push(...(await checkDnsLists(lists, uncached)));
    }
    if (run('clock')) findings.push(...(await clock(config, loaded)));
    if (run('e2e')) {
      const recipient =
        values['probe-recipient'] ?? (localDomain !== undefined ? `postmaster@${localDomain}` : undefined);
      if (recipient === undefined) {
        findings.push(
          finding(
            'e2e',
            'warning',
            'no probe recipient: no local domain known',
            'give --probe-recipient ADDR',
          ),
        );
      } else {
        const open = store.open;
        const hostname = config.hostname || pf?.main.get('myhostname') || 'localhost';
        findings.push(
          await runE2e({
            smtp,
            sender: `postwarden-doctor@${localDomain ?? hostname}`,
            recipient,
            hostname,
            timeoutMs: E2E_MS,
            expect: {
              filter: config.filter.enabled && config.filter.mode === 'after_queue',
              records: config.decisions.enabled && open !== undefined,
            },
            decisions: async (queueId) =>
              open ? ((await readDecisions(open, queueId).catch(() => undefined)) ?? []) : [],
            readLog: mailLog(pf),
          }),
        );
      }
    }
  } finally {
    await store.open?.close();
  }
  process.stdout.write(values.json === true ? `${toJson(findings)}\n` : toTable(findings));
  return exitCodeOf(findings);
}
