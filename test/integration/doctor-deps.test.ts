/**
 * `postwarden doctor`'s dependency and clock checks against real servers on loopback (ports 22170-22179): Redis
 * (the store, answering PING, and TIME for the clock), clamd (PING → PONG, its unix socket), slapd (a bind as
 * the service account and a base search), a dnsmasq resolver. Each answers: ok. Then clamd and slapd are
 * stopped and Redis paused (a hung server): each is an unreachable error within the probe deadline, and the
 * exit status is 69. Wiring, relay and end to end are skipped: a minimal Postfix config dir only feeds postconf.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ClamdServer, startClamd } from '../harness/clamd.js';
import { type DnsServer, startDns } from '../harness/dns.js';
import { type DoctorFinding, type DoctorRun, runDoctor } from '../harness/doctor.js';
import { type RedisServer, startRedis } from '../harness/redis.js';
import { SERVICE_DN, SERVICE_PASSWORD, type SlapdServer, startSlapd, SUFFIX } from '../harness/slapd.js';

const work = mkdtempSync('/tmp/pw-dr-deps-');
const postfixDir = path.join(work, 'postfix');
let redis: RedisServer;
let clamd: ClamdServer;
let slapd: SlapdServer;
let dns: DnsServer;

const doctor = (): Promise<DoctorRun> =>
  runDoctor([
    '--config',
    path.join(work, 'postwarden.yml'),
    '--postfix-config-dir',
    postfixDir,
    '--skip',
    'wiring,relay,e2e,dns-lists',
  ]);

const one = (findings: DoctorFinding[], check: string, where: (f: DoctorFinding) => boolean = () => true) =>
  findings.find((f) => f.check === check && where(f));

before(async () => {
  [redis, clamd, slapd, dns] = await Promise.all([
    startRedis({ port: 22170 }),
    startClamd({ port: 22171 }),
    startSlapd({ port: 22172 }),
    startDns({ mx: { 'example.test': [{ exchange: 'mx.example.test', priority: 10 }] } }, { port: 22173 }),
  ]);
  mkdirSync(postfixDir);
  writeFileSync(path.join(postfixDir, 'main.cf'), 'compatibility_level = 3.6\nmydomain = example.test\n');
  writeFileSync(path.join(postfixDir, 'master.cf'), '');
  writeFileSync(path.join(work, 'ldap.password'), `${SERVICE_PASSWORD}\n`, { mode: 0o600 });
  writeFileSync(
    path.join(work, 'postwarden.yml'),
    `local_domains: [example.test]
dns: { servers: ['${dns.address}'] }
store: { driver: redis, url: '${redis.url}' }
policy: { checks: [relay, greylist] }
filter:
  enabled: true
  scanners: [antivirus]
  antivirus: { socket: ${clamd.socket} }
ldap:
  url: ${slapd.url}
  bind_dn: ${SERVICE_DN}
  password_file: ldap.password
  base: ${SUFFIX}
  queries:
    users: { filter: "(mail=%s)", result_attribute: mail }
`,
  );
});

after(async () => {
  redis?.resume();
  await Promise.all([redis?.destroy(), clamd?.destroy(), slapd?.destroy(), dns?.stop()]);
  rmSync(work, { recursive: true, force: true });
});

describe('doctor: dependencies and clock against real servers', () => {
  it('finds each dependency answering, and the clock against Redis TIME', async () => {
    const r = await doctor();
    assert.equal(one(r.findings, 'store')?.severity, 'ok', r.text);
    assert.match(one(r.findings, 'store')?.summary ?? '', new RegExp(`redis ${redis.url} answers`));
    assert.equal(one(r.findings, 'clamd')?.detail, 'PONG', r.text);
    assert.equal(one(r.findings, 'resolver')?.severity, 'ok', r.text);
    assert.match(one(r.findings, 'resolver')?.detail ?? '', /example\.test MX: mx\.example\.test/);
    const ldap = one(r.findings, 'ldap');
    assert.equal(ldap?.severity, 'ok', r.text);
    assert.match(ldap?.detail ?? '', new RegExp(`bound as ${SERVICE_DN}, base ${SUFFIX} found`));
    const skew = one(r.findings, 'clock', (f) => f.summary.includes('Redis TIME'));
    assert.equal(skew?.severity, 'ok', r.text);
    assert.ok(
      r.findings.every((f) => f.severity === 'ok' || f.severity === 'info'),
      r.text,
    );
    assert.equal(r.code, 0, r.text);
  });

  it('reports each dependency down as unreachable, exit 69', async () => {
    await clamd.stop();
    await slapd.stop();
    redis.pause();
    try {
      const r = await doctor();
      for (const check of ['store', 'clamd', 'ldap']) {
        const f = one(r.findings, check);
        assert.equal(f?.severity, 'error', `${check}: ${r.text}`);
        assert.match(f?.summary ?? '', /unreachable|cannot open/, r.text);
        assert.notEqual(f?.fix, '');
      }
      assert.equal(r.code, 69, r.text);
    } finally {
      redis.resume();
      await Promise.all([clamd.start(), slapd.start()]);
    }
  });
});
