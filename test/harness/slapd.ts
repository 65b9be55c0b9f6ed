/**
 * test/harness/slapd.ts: a real OpenLDAP slapd on loopback for integration tests, seeded from an LDIF.
 *
 * `startSlapd()` follows the harness recipe (harness.md §6): in a fresh temp dir (/tmp/pw-h-ldap-*) it writes a
 * slapd.conf (core, cosine, inetorgperson, nis and misc schemas; one mdb database for `dc=example,dc=test` with
 * rootdn `cn=admin,dc=example,dc=test` / `admin-secret`), loads the seed offline with `slapadd -q`, then runs
 * `slapd -f slapd.conf -h ldap://127.0.0.1:PORT/ -d stats` in the foreground as a child process (stopped by PID,
 * never by name). It resolves once `ldapwhoami` binds as the admin. The ACLs make anonymous clients see nothing,
 * so a lookup that finds an entry proves that the client bound.
 *
 * The seed (SEED_LDIF unless told): alice and bob as `inetOrgPerson` + `inetLocalMailRecipient` with `mail`,
 * `mailRoutingAddress` and aliases in `mailLocalAddress` (postmaster@ and a.example@ → alice, sales@ → bob), a
 * user whose address holds `*()\` to prove escaping, a service account `cn=postwarden` (password
 * `postwarden-secret`), and the local domain example.test (`associatedDomain`).
 *
 * The handle can `stop()` slapd (SIGTERM) and `start()` it again on the same port with the same data (a restart
 * test), `pause()`/`resume()` it (SIGSTOP, waiting until it took effect, and SIGCONT: connections are accepted by
 * the kernel but nothing answers),
 * read its `log()`, and `destroy()` it with its dir. slapd and ldap-utils come from test/harness/install.sh.
 *
 * Failure: startSlapd/start reject with slapd's output when it exits or does not answer within 10 s. stop()
 * escalates to SIGKILL after 3 s. A safety net kills every slapd still running when the process exits.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { daemon, startInDir } from './daemon.js';
import { freeLoopbackPort } from './redis.js';

export const SUFFIX = 'dc=example,dc=test';
export const ADMIN_DN = `cn=admin,${SUFFIX}`;
export const ADMIN_PASSWORD = 'admin-secret';
export const SERVICE_DN = `cn=postwarden,${SUFFIX}`;
export const SERVICE_PASSWORD = 'postwarden-secret';
/** The address of the seeded user whose mail holds every filter metacharacter. */
export const ODD_ADDRESS = 'odd*(x)\\y@example.test';

export const SEED_LDIF = `dn: ${SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example test

dn: ou=people,${SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=domains,${SUFFIX}
objectClass: organizationalUnit
ou: domains

dn: ${SERVICE_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: postwarden
userPassword: ${SERVICE_PASSWORD}

dn: dc=example-test,ou=domains,${SUFFIX}
objectClass: domain
objectClass: domainRelatedObject
dc: example-test
associatedDomain: example.test

dn: uid=alice,ou=people,${SUFFIX}
objectClass: inetOrgPerson
objectClass: inetLocalMailRecipient
uid: alice
cn: Alice
sn: Example
mail: alice@example.test
mailRoutingAddress: alice@example.test
mailLocalAddress: postmaster@example.test
mailLocalAddress: a.example@example.test
userPassword: alice-secret

dn: uid=bob,ou=people,${SUFFIX}
objectClass: inetOrgPerson
objectClass: inetLocalMailRecipient
uid: bob
cn: Bob
sn: Example
mail: bob@example.test
mailRoutingAddress: bob@example.test
mailLocalAddress: sales@example.test
userPassword: bob-secret

dn: uid=odd,ou=people,${SUFFIX}
objectClass: inetOrgPerson
uid: odd
cn: Odd
sn: Example
mail: ${ODD_ADDRESS}
`;

export interface SlapdOptions {
  /** Port on 127.0.0.1; default: a free one. */
  readonly port?: number;
  /** The seed; default SEED_LDIF. */
  readonly ldif?: string;
}

export interface SlapdServer {
  readonly port: number;
  /** ldap://127.0.0.1:PORT */
  readonly url: string;
  readonly suffix: string;
  readonly dir: string;
  readonly pid: number | undefined;
  /** SIGTERM (SIGKILL after 3 s); waits for the exit. Idempotent. */
  stop(): Promise<void>;
  /** Starts slapd again with the same config and data and waits until it answers. */
  start(): Promise<void>;
  /** SIGSTOP, resolved once slapd is stopped: the socket stays open, nothing answers. */
  pause(): Promise<void>;
  /** SIGCONT after pause(). */
  resume(): void;
  /** slapd's output (`-d stats`: one line per operation). */
  log(): string;
  destroy(): Promise<void>;
}

const SLAPD = ['/usr/sbin/slapd', '/usr/local/sbin/slapd'].find((p) => existsSync(p)) ?? 'slapd';
const SLAPADD = ['/usr/sbin/slapadd', '/usr/local/sbin/slapadd'].find((p) => existsSync(p)) ?? 'slapadd';
const READY_MS = 10_000;

function slapdConfig(dir: string): string {
  return [
    ...['core', 'cosine', 'inetorgperson', 'nis', 'misc'].map((s) => `include /etc/ldap/schema/${s}.schema`),
    `pidfile ${path.join(dir, 'slapd.pid')}`,
    `argsfile ${path.join(dir, 'slapd.args')}`,
    'modulepath /usr/lib/ldap',
    'moduleload back_mdb',
    'database mdb',
    'maxsize 16777216',
    `suffix "${SUFFIX}"`,
    `rootdn "${ADMIN_DN}"`,
    `rootpw ${ADMIN_PASSWORD}`,
    `directory ${path.join(dir, 'db')}`,
    'index objectClass eq',
    'index uid,mail,mailLocalAddress,associatedDomain eq',
    'access to attrs=userPassword by self write by anonymous auth by * none',
    'access to * by users read by * none',
    '',
  ].join('\n');
}

/** True when `ldapwhoami` binds as the admin within `ms`. */
function answers(url: string, ms: number): boolean {
  const r = spawnSync(
    'ldapwhoami',
    ['-x', '-H', url, '-D', ADMIN_DN, '-w', ADMIN_PASSWORD, '-o', `nettimeout=${Math.ceil(ms / 1000)}`],
    {
      encoding: 'utf8',
      timeout: ms + 500,
    },
  );
  return r.status === 0;
}

export async function startSlapd(options: SlapdOptions = {}): Promise<SlapdServer> {
  const port = options.port ?? (await freeLoopbackPort());
  const url = `ldap://127.0.0.1:${port}`;
  const dir = mkdtempSync('/tmp/pw-h-ldap-');
  const conf = path.join(dir, 'slapd.conf');
  const outFile = path.join(dir, 'slapd.out');
  mkdirSync(path.join(dir, 'db'));
  writeFileSync(conf, slapdConfig(dir));
  writeFileSync(path.join(dir, 'seed.ldif'), options.ldif ?? SEED_LDIF);
  const added = spawnSync(SLAPADD, ['-q', '-f', conf, '-l', path.join(dir, 'seed.ldif')], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  if (added.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`slapadd failed (${added.error?.message ?? `exit ${added.status}`}): ${added.stderr}`);
  }

  const server = daemon({
    command: SLAPD,
    args: ['-f', conf, '-h', `${url}/`, '-d', 'stats'],
    outFile,
    ready: () => answers(url, 1000),
    readyMs: READY_MS,
    describe: ({ exited, spawnError }) =>
      spawnError
        ? `${SLAPD} could not be run (${spawnError.message}); run test/harness/install.sh`
        : `slapd on ${url} did not answer${exited ? ' (it exited)' : ''}`,
  });
  const destroy = await startInDir(server, dir);
  return {
    port,
    url,
    suffix: SUFFIX,
    dir,
    get pid() {
      return server.pid;
    },
    stop: server.stop,
    start: server.start,
    pause: server.pause,
    resume: server.resume,
    log: () => (existsSync(outFile) ? readFileSync(outFile, 'utf8') : ''),
    destroy,
  };
}
