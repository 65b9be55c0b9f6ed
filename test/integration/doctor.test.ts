/**
 * `postwarden doctor` (the built bin) against a real Postfix (test/harness) wired to a running postwarden (policy
 * 127.0.0.1:22160, filter 22161, Postfix's re-injection smtpd 22162) and a real dnsmasq:
 *
 * - a clean, well-wired host: exit 0, every finding ok or info, the test message followed through policy,
 *   filter and delivery;
 * - the policy service asked before reject_unauth_destination: policy-order error, exit 78;
 * - the filter down (content_filter set, postwarden stopped): filter-listen error naming the port;
 * - an open relay (smtpd_relay_restrictions = permit, ... with the policy service taken out): open-relay errors
 *   naming the tricks Postfix accepted, from the outside client posed with XCLIENT;
 * - an unhealthy DNS list (a zone that lists 127.0.0.1 too, and a resolver that never answers).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type DnsServer, startDns, startSilentDns } from '../harness/dns.js';
import { type Harness, startHarness } from '../harness/harness.js';
import { type DoctorFinding, type DoctorRun, runDoctor } from '../harness/doctor.js';
import { Postwarden } from '../harness/postwarden.js';

const SMTP = '127.0.0.1:22125';
const POLICY = '127.0.0.1:22160';
const FILTER = '127.0.0.1:22161';
const REINJECT_PORT = 22162;
const HTTP = '127.0.0.1:22163';
const work = mkdtempSync('/tmp/pw-dr-');

let harness: Harness | undefined;
let dns: DnsServer | undefined;
let badDns: DnsServer | undefined;
let silentDns: DnsServer | undefined;
const pw = new Postwarden('doctor', work, HTTP, POLICY);

function h(): Harness {
  if (!harness) throw new Error('harness not started');
  return harness;
}

function config(dnsServers: readonly string[]): string {
  return `hostname: mx.example.test
local_domains: [example.test]
local_networks: [127.0.0.1/32]
dns:
  servers: [${dnsServers.map((s) => `'${s}'`).join(', ')}]
  timeout_ms: 1000
store: { driver: sqlite, path: ${path.join(work, 'state.db')} }
policy:
  listen: ${POLICY}
  checks: [relay, greylist, dnsbl]
  dnsbl: { lists: [{ zone: dnsbl.test, weight: 10, ipv6: false }] }
filter:
  enabled: true
  listen: ${FILTER}
  reinject: 127.0.0.1:${REINJECT_PORT}
  spool_dir: ${path.join(work, 'spool')}
  scanners: [loop, sanity, banned]
  quarantine: { dir: ${path.join(work, 'quarantine')} }
http:
  listen: ${HTTP}
`;
}

/** Runs the built doctor against the harness's Postfix with --json. */
const doctor = (args: string[], configFile = pw.configFile): Promise<DoctorRun> =>
  runDoctor(['--config', configFile, '--postfix-config-dir', h().postfixConfDir, '--smtp', SMTP, ...args]);

const wrong = (findings: DoctorFinding[]) =>
  findings.filter((f) => f.severity === 'warning' || f.severity === 'error');
const of = (findings: DoctorFinding[], check: string) => findings.filter((f) => f.check === check);

before(async () => {
  dns = await startDns(
    {
      a: { '2.0.0.127.dnsbl.test': ['127.0.0.2'] },
      mx: { 'example.test': [{ exchange: 'mx.example.test', priority: 10 }] },
    },
    { port: 22150 },
  );
  harness = await startHarness({
    policy: `inet:${POLICY}`,
    env: {
      HARNESS_DIR: '/tmp/pw-dr-h',
      SMTP_PORT: '22125',
      SINK_PORT: '22126',
      LMTP_PORT: '22124',
      IMAP_PORT: '22143',
      DOVECOT_AUTH_PORT: '22145',
      HARNESS_FILTER: `scan:[127.0.0.1]:${FILTER.split(':')[1] ?? ''}`,
      REINJECT_PORT: String(REINJECT_PORT),
    },
  });
  await pw.start(config([dns.address]), 30_000);
});

after(async () => {
  await pw.stop();
  await harness?.stop();
  await dns?.stop();
  await badDns?.stop();
  await silentDns?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('postwarden doctor on a real Postfix', () => {
  it('finds nothing wrong on a clean, well-wired host, and follows a test message to delivery', async () => {
    const r = await doctor(['--skip', 'clock']);
    assert.deepEqual(wrong(r.findings), [], r.text);
    assert.equal(r.code, 0, r.text);
    assert.equal(r.ok, true);
    for (const check of [
      'policy-order',
      'policy-listen',
      'content-filter',
      'filter-listen',
      'reinject',
      'open-relay',
      'store',
      'resolver',
      'dns-list',
      'e2e',
    ]) {
      assert.ok(
        of(r.findings, check).some((f) => f.severity === 'ok'),
        `${check}: ${r.text}`,
      );
    }
    const relay = of(r.findings, 'open-relay')[0];
    assert.match(relay?.summary ?? '', /all 9 relay tricks refused from outside client 192\.0\.2\.77/);
    const e2e = of(r.findings, 'e2e')[0];
    assert.match(
      e2e?.summary ?? '',
      /accepted as \w+, policy \w+, filter deliver .*delivered as \w+/,
      r.text,
    );
    assert.match(e2e?.detail ?? '', /status=sent/);
    // The test message arrived (postmaster@ is alice's alias), with doctor's field.
    const delivered = await h().waitForMessage('alice', (m) => m.includes('X-Postwarden-Doctor:'), 5000);
    assert.match(delivered, /^X-Postwarden-Status: /m);
  });

  it('catches the policy service asked before reject_unauth_destination', async () => {
    const before = await h().postconf(['-h', 'smtpd_relay_restrictions']);
    await h().postconf([
      '-e',
      `smtpd_relay_restrictions = permit_mynetworks, check_policy_service inet:${POLICY}, reject_unauth_destination`,
    ]);
    try {
      const r = await doctor(['--skip', 'relay,e2e,clock']);
      const order = of(r.findings, 'policy-order').find((f) => f.severity === 'error');
      assert.ok(order, r.text);
      assert.match(
        order.summary,
        /main\.cf: the policy service is asked before relay control \(smtpd_relay_restrictions element 2\)/,
      );
      assert.match(order.fix, /reject_unauth_destination/);
      assert.equal(r.code, 78);
      assert.equal(r.ok, false);
    } finally {
      await h().postconf(['-e', `smtpd_relay_restrictions = ${before.trim()}`]);
    }
  });

  it('catches the filter down: content_filter set, nothing listening', async () => {
    await pw.stop();
    try {
      const r = await doctor(['--skip', 'relay,e2e,clock']);
      const down = of(r.findings, 'filter-listen')[0];
      assert.equal(down?.severity, 'error', r.text);
      assert.match(
        down?.summary ?? '',
        new RegExp(`content filter is down: nothing answers on ${FILTER} \\(ECONNREFUSED\\)`),
      );
      assert.equal(of(r.findings, 'policy-listen')[0]?.severity, 'error');
      assert.equal(r.code, 78);
    } finally {
      await pw.start(config([dns?.address ?? '']), 30_000);
    }
  });

  it('catches an open relay, naming each trick Postfix accepted from an outside client', async () => {
    const saved = await h().postconf(['-h', 'mynetworks', 'smtpd_recipient_restrictions']);
    const [mynetworks = '', recipient = ''] = saved.split('\n');
    // Postfix trusts the whole Internet. The policy service would refuse the relay too (defence in depth): take
    // it out to see Postfix alone.
    await h().postconf(['-e', 'mynetworks = 0.0.0.0/0', 'smtpd_recipient_restrictions =']);
    await h().reload();
    try {
      const r = await doctor(['--skip', 'e2e,clock,dns-lists']);
      const open = of(r.findings, 'open-relay').filter((f) => f.severity === 'error');
      assert.ok(
        open.some((f) =>
          /OPEN RELAY: 127\.0\.0\.1:22125 accepted the plain remote recipient <postwarden-relay-probe@relay-test\.invalid> from outside client 192\.0\.2\.77/.test(
            f.summary,
          ),
        ),
        r.text,
      );
      assert.ok(open.length >= 2, `more than the plain trick gets through: ${r.text}`);
      assert.ok(
        open.every((f) => /^250 /.test(f.detail)),
        r.text,
      );
      assert.ok(
        of(r.findings, 'mynetworks').some(
          (f) =>
            f.severity === 'error' && /0\.0\.0\.0\/0: every client on the Internet may relay/.test(f.summary),
        ),
        r.text,
      );
      assert.equal(r.code, 78);
      // Nothing was sent: no DATA, so the relayhost (smtp-sink) got nothing.
      assert.equal(h().sinkFiles().length, 0);
    } finally {
      await h().postconf(['-e', `mynetworks = ${mynetworks}`, `smtpd_recipient_restrictions = ${recipient}`]);
      await h().reload();
    }
  });

  it('catches a DNS list that lists everything, and one whose resolver does not answer', async () => {
    badDns = await startDns(
      {
        a: { '2.0.0.127.dnsbl.test': ['127.0.0.2'], '1.0.0.127.dnsbl.test': ['127.0.0.2'] },
      },
      { port: 22151 },
    );
    const listsAll = path.join(work, 'lists-all.yml');
    writeFileSync(listsAll, config([badDns.address]));
    const r = await doctor(['--skip', 'wiring,relay,e2e,clock'], listsAll);
    const list = of(r.findings, 'dns-list')[0];
    assert.equal(list?.severity, 'error', r.text);
    assert.match(
      list?.summary ?? '',
      /dnsbl\.test \(ipv4\): dnsbl\.test lists 127\.0\.0\.1, which no list may: it answers "listed" for everything/,
    );
    assert.equal(r.code, 78);

    silentDns = await startSilentDns({ port: 22152 });
    const silent = path.join(work, 'silent.yml');
    writeFileSync(silent, config([silentDns.address]));
    const s = await doctor(['--skip', 'wiring,relay,e2e,clock'], silent);
    assert.equal(of(s.findings, 'dns-list')[0]?.severity, 'warning', s.text);
    assert.match(of(s.findings, 'dns-list')[0]?.summary ?? '', /gave no answer/);
    const resolver = of(s.findings, 'resolver')[0];
    assert.equal(resolver?.severity, 'error');
    assert.match(resolver?.summary ?? '', new RegExp(`resolver ${silentDns.address} is unreachable`));
    assert.equal(s.code, 69, 'an unreachable dependency wins over wiring trouble');
  });
});
