/**
 * Issue 8's full chain: `setup --apply` on a plain Postfix (the harness with no policy and no filter) with
 * postwarden's store in Redis, recipients and aliases in a real slapd, and a real clamd; then a message from an
 * outside client (XCLIENT, 192.0.2.10) to an LDAP alias (sales@ → bob) is greylisted, retried, scanned, tagged,
 * expanded by Postfix's own ldap: table that setup wrote, delivered to bob's Maildir and read back over IMAP;
 * an unknown recipient is refused at RCPT by the LDAP recipients check. Ports 22070-22089, dirs /tmp/pw-su-c*.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ImapFlow } from 'imapflow';
import { type ClamdServer, startClamd } from '../harness/clamd.js';
import { type Harness, startHarness, tagged } from '../harness/harness.js';
import { BIN, Postwarden } from '../harness/postwarden.js';
import { type RedisServer, startRedis } from '../harness/redis.js';
import { SERVICE_DN, SERVICE_PASSWORD, type SlapdServer, startSlapd } from '../harness/slapd.js';

const POLICY = '127.0.0.1:22078';
const HTTP = '127.0.0.1:22080';
const work = mkdtempSync('/tmp/pw-su-c-');
const configFile = path.join(work, 'postwarden-chain.yml');

let harness: Harness | undefined;
let slapd: SlapdServer | undefined;
let clamd: ClamdServer | undefined;
let redis: RedisServer | undefined;
const pw = new Postwarden('chain', work, HTTP, POLICY);

function h(): Harness {
  if (!harness) throw new Error('harness not started');
  return harness;
}

function config(): string {
  return `hostname: mx.example.test
local_domains: [example.test]
local_networks: [127.0.0.1/32]
store: { driver: redis, url: '${redis?.url ?? ''}' }
ldap:
  url: ${slapd?.url ?? ''}
  bind_dn: ${SERVICE_DN}
  password_file: ${work}/ldap.pw
  base: dc=example,dc=test
  queries:
    mailboxes: { filter: '(mail=%s)', result_attribute: mail }
    aliases: { filter: '(mailLocalAddress=%s)', result_attribute: mailRoutingAddress }
policy:
  listen: ${POLICY}
  checks: [relay, recipients, greylist]
  recipients: { mode: enforce, map: ldap:mailboxes, aliases: ldap:aliases }
  greylist: { delay_s: 0 }
filter:
  enabled: true
  listen: 127.0.0.1:22079
  reinject: 127.0.0.1:22082
  spool_dir: ${work}/spool
  scanners: [sanity, antivirus]
  antivirus: { socket: ${clamd?.socket ?? ''}, timeout_ms: 5000 }
  quarantine: { dir: ${work}/quarantine }
http:
  listen: ${HTTP}
  token_file: ${work}/admin.token
`;
}

function setup(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'setup', ...args], (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, out: stdout + stderr });
    });
  });
}

describe('setup --apply on a plain Postfix, then the whole chain', () => {
  before(async () => {
    [slapd, clamd, redis] = await Promise.all([
      startSlapd({ port: 22075 }),
      startClamd({ port: 22076 }),
      startRedis({ port: 22077 }),
    ]);
    harness = await startHarness({
      policy: 'off',
      env: {
        HARNESS_DIR: '/tmp/pw-su-ch',
        HARNESS_FILTER: 'off',
        SMTP_PORT: '22070',
        SINK_PORT: '22071',
        LMTP_PORT: '22072',
        IMAP_PORT: '22073',
        DOVECOT_AUTH_PORT: '22074',
        REINJECT_PORT: '22082',
      },
    });
    writeFileSync(path.join(work, 'ldap.pw'), `${SERVICE_PASSWORD}\n`, { mode: 0o600 });
    writeFileSync(configFile, config());
  });

  after(async () => {
    await pw.stop();
    await harness?.stop();
    await Promise.all([slapd?.destroy(), clamd?.destroy(), redis?.stop()]);
    rmSync(work, { recursive: true, force: true });
  });

  it('greylisted, retried, scanned, tagged, expanded through LDAP, delivered and read over IMAP', async () => {
    const r = await setup([
      '--config',
      configFile,
      '--postfix-config-dir',
      h().postfixConfDir,
      '--dovecot-config-dir',
      path.join(h().dir, 'dovecot'),
      '--backup-dir',
      path.join(work, 'backup'),
      '--apply',
    ]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /write \S+\/ldap-aliases\.cf/, 'the Postfix ldap: table, with the bind password');
    assert.match(
      await h().postconf(['-h', 'virtual_alias_maps']),
      /texthash:\$config_directory\/virtual, ldap:\S+\/ldap-aliases\.cf/,
    );
    await pw.start(config());

    const tag = `chain-${process.pid}`;
    const send = () =>
      h().swaks([
        '--xclient-addr',
        '192.0.2.10',
        '--xclient-name',
        'mail.remote.test',
        '--helo',
        'mail.remote.test',
        '--from',
        'someone@remote.test',
        '--to',
        'sales@example.test',
        '--header',
        `X-Pw-Test: ${tag}`,
      ]);
    const first = await send();
    assert.match(first.transcript, /<\*\* 450 4\.7\.1 .*greylist/i, first.transcript);
    const retry = await send();
    assert.equal(retry.code, 0, retry.transcript);

    const message = await h().waitForMessage('bob', tagged(tag), 30_000);
    assert.match(message, /^X-Postwarden-Status: clean; /m, 'scanned and tagged by the filter');
    const [decision] = await pw.events('filter.decision', (l) => l['sender'] === 'someone@remote.test');
    assert.ok(decision, 'the filter logged its decision');

    const imap = new ImapFlow({
      host: '127.0.0.1',
      port: h().imapPort,
      secure: false,
      auth: { user: 'bob@example.test', pass: 'bob-secret' },
      logger: false,
    });
    await imap.connect();
    try {
      const lock = await imap.getMailboxLock('INBOX');
      try {
        const found = await imap.search({ header: { 'X-Pw-Test': tag } });
        assert.equal(Array.isArray(found) ? found.length : 0, 1);
        const fetched = await imap.fetchOne(String((found as number[])[0]), { source: true });
        assert.match(
          fetched ? (fetched.source?.toString('utf8') ?? '') : '',
          /^X-Postwarden-Status: clean; /m,
        );
      } finally {
        lock.release();
      }
    } finally {
      await imap.logout();
    }
  });

  it('an unknown recipient is refused at RCPT (LDAP)', async () => {
    const r = await h().swaks([
      '--xclient-addr',
      '192.0.2.11',
      '--from',
      'someone@remote.test',
      '--to',
      'nobody@example.test',
    ]);
    assert.equal(r.code, 24, r.transcript);
    assert.match(r.transcript, /<\*\* 550 5\.1\.1 /);
    const [decision] = await pw.events('policy.decision', (l) => l['recipient'] === 'nobody@example.test');
    assert.match(String(decision?.['action']), /^550 5\.1\.1 /, 'postwarden refused it, from the directory');
  });
});
