/**
 * ldap: maps against a real slapd (test/harness/slapd.ts): found and not found, Postfix's key expansion with
 * RFC 4515 escaping, multi-valued results, the bind (anonymous clients see nothing here), the cache's TTLs, the
 * pool reconnecting after a slapd restart, `error` (never `notfound`) while slapd is down, the deadline when
 * slapd hangs (SIGSTOP); then the built bin: check-config's LDAP problems, and the policy server refusing an
 * unknown LDAP recipient at RCPT with 550 5.1.1, accepting a mailbox and an alias, SASL sender ownership from the
 * directory, and answering 451 4.3.0 while slapd is down. Ports 21600-21619 (this file's own).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LdapDirectory, type LdapDirectoryEvent } from '../../src/adapters/ldap.js';
import type { LookupQuery } from '../../src/core/ports.js';
import { LdapMaps, type LdapLookupEvent, type LdapQuery } from '../../src/maps/index.js';
import { PolicyClient } from '../../src/policy/client.js';
import { BIN, Postwarden, sleep } from '../harness/postwarden.js';
import {
  ODD_ADDRESS,
  SERVICE_DN,
  SERVICE_PASSWORD,
  startSlapd,
  SUFFIX,
  type SlapdServer,
} from '../harness/slapd.js';

const SLAPD_PORT = 21600;
const POLICY = '127.0.0.1:21601';
const HTTP = '127.0.0.1:21602';

const query = (filter: string, attrs: string[], extra: Partial<LdapQuery> = {}): LdapQuery => ({
  base: SUFFIX,
  filter,
  resultAttributes: attrs,
  resultFormat: '%s',
  scope: 'sub',
  domains: [],
  sizeLimit: 100,
  maxValues: 1000,
  ...extra,
});

const QUERIES = {
  users: query('(mail=%s)', ['mail']),
  aliases: query('(mailLocalAddress=%s)', ['mailRoutingAddress']),
  domains: query('(associatedDomain=%s)', ['associatedDomain']),
  // Every address of a user: a multi-valued answer.
  addresses: query('(&(objectClass=inetOrgPerson)(uid=%u))', ['mail', 'mailLocalAddress'], {
    domains: ['example.test'],
  }),
  people: query('(objectClass=inetOrgPerson)', ['uid'], {
    filter: '(&(objectClass=inetOrgPerson)(cn=*%s*))',
    sizeLimit: 1,
  }),
};

const address = (value: string): LookupQuery => ({ kind: 'address', value });

let slapd: SlapdServer;
const work = mkdtempSync('/tmp/pw-h-ldap-work-');

interface Rig {
  directory: LdapDirectory;
  maps: LdapMaps;
  events: LdapDirectoryEvent[];
  lookups: LdapLookupEvent[];
  clock: { now: number };
}

function rig(options: { password?: string; bindDn?: string; timeoutMs?: number } = {}): Rig {
  const events: LdapDirectoryEvent[] = [];
  const lookups: LdapLookupEvent[] = [];
  const clock = { now: 1_000_000 };
  const directory = new LdapDirectory({
    url: slapd.url,
    bindDn: options.bindDn ?? SERVICE_DN,
    password: options.password ?? SERVICE_PASSWORD,
    timeoutMs: options.timeoutMs ?? 1000,
    poolSize: 2,
    maxWaiting: 10,
    reconnectMinMs: 50,
    reconnectMaxMs: 200,
    onEvent: (e) => events.push(e),
  });
  const maps = new LdapMaps({
    searcher: directory,
    queries: QUERIES,
    cache: { maxEntries: 100, ttlMs: 60_000, negativeTtlMs: 5_000 },
    recipientDelimiter: '+',
    onLookup: (e) => lookups.push(e),
    now: () => clock.now,
  });
  return { directory, maps, events, lookups, clock };
}

function table(r: Rig, name: string) {
  const opened = r.maps.open(name);
  assert.ok(opened.ok, `query ${name}`);
  return opened.table;
}

async function eventually<T>(
  what: string,
  probe: () => Promise<T>,
  ok: (v: T) => boolean,
  ms = 5000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (ok(value)) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
    await sleep(50);
  }
}

before(async () => {
  slapd = await startSlapd({ port: SLAPD_PORT });
});

after(async () => {
  await slapd?.destroy();
  rmSync(work, { recursive: true, force: true });
});

describe('ldap: tables against slapd', () => {
  test('found and not found, with the extension stripped and the key folded to lower case', async () => {
    const r = rig();
    try {
      const users = table(r, 'users');
      assert.deepEqual(await users.lookup(address('alice@example.test')), {
        status: 'found',
        key: 'alice@example.test',
        value: 'alice@example.test',
      });
      assert.deepEqual(await users.lookup(address('Bob+Lists@Example.TEST')), {
        status: 'found',
        key: 'bob@example.test',
        value: 'bob@example.test',
      });
      assert.deepEqual(await users.lookup(address('nobody@example.test')), { status: 'notfound' });
      assert.deepEqual(await table(r, 'aliases').lookup(address('sales@example.test')), {
        status: 'found',
        key: 'sales@example.test',
        value: 'bob@example.test',
      });
      const domains = table(r, 'domains');
      assert.equal((await domains.lookup({ kind: 'domain', value: 'Example.Test.' })).status, 'found');
      assert.equal((await domains.lookup({ kind: 'domain', value: 'other.test' })).status, 'notfound');
    } finally {
      await r.directory.close();
    }
  });

  test('multiple values are joined with commas; %u and the domains restriction', async () => {
    const r = rig();
    try {
      const addresses = table(r, 'addresses');
      const alice = await addresses.lookup(address('alice@example.test'));
      assert.equal(alice.status, 'found');
      assert.deepEqual(alice.status === 'found' ? alice.value.split(',').sort() : [], [
        'a.example@example.test',
        'alice@example.test',
        'postmaster@example.test',
      ]);
      // Outside `domains`: not asked at all.
      const before = r.lookups.length;
      assert.equal((await addresses.lookup(address('alice@elsewhere.test'))).status, 'notfound');
      assert.equal(r.lookups.length, before, 'no search for a key outside the domains');
    } finally {
      await r.directory.close();
    }
  });

  test('filter metacharacters in a key are escaped (RFC 4515), never read as wildcards', async () => {
    const r = rig();
    try {
      const users = table(r, 'users');
      // Unescaped, (mail=*@example.test) would match every user.
      assert.deepEqual(await users.lookup(address('*@example.test')), { status: 'notfound' });
      assert.deepEqual(await users.lookup(address('*)(mail=alice@example.test')), { status: 'notfound' });
      assert.deepEqual(await users.lookup(address(ODD_ADDRESS)), {
        status: 'found',
        key: ODD_ADDRESS,
        value: ODD_ADDRESS,
      });
    } finally {
      await r.directory.close();
    }
  });

  test('the bind matters: anonymous clients see nothing; a wrong password is an error that does not show it', async () => {
    const anonymous = rig({ bindDn: '' });
    try {
      assert.deepEqual(await table(anonymous, 'users').lookup(address('alice@example.test')), {
        status: 'notfound',
      });
    } finally {
      await anonymous.directory.close();
    }
    const wrong = rig({ password: 'not-the-password' });
    try {
      const result = await table(wrong, 'users').lookup(address('alice@example.test'));
      assert.equal(result.status, 'error');
      assert.match(
        result.status === 'error' ? result.reason : '',
        /bind as cn=postwarden,dc=example,dc=test refused/,
      );
      assert.doesNotMatch(JSON.stringify([result, wrong.events]), /not-the-password/);
      assert.equal(wrong.directory.health().healthy, false);
      assert.equal(wrong.events[0]?.code, 'PW-L001');
    } finally {
      await wrong.directory.close();
    }
  });

  test('more entries than size_limit is an error, not a truncated answer', async () => {
    const r = rig();
    try {
      const result = await table(r, 'people').lookup({ kind: 'text', value: 'o' });
      assert.equal(result.status, 'error');
      assert.match(result.status === 'error' ? result.reason : '', /more than 1 entries/);
    } finally {
      await r.directory.close();
    }
  });

  test('cache: found answers kept for ttl, not-found for the shorter negative ttl', async () => {
    const r = rig();
    try {
      const users = table(r, 'users');
      const cacheOf = async (key: string) => {
        await users.lookup(address(key));
        return r.lookups.at(-1)?.cache;
      };
      assert.equal(await cacheOf('alice@example.test'), 'miss');
      assert.equal(await cacheOf('alice@example.test'), 'hit');
      assert.equal(await cacheOf('ghost@example.test'), 'miss');
      assert.equal(await cacheOf('ghost@example.test'), 'hit');
      r.clock.now += 6_000; // past the negative TTL, inside the positive one
      assert.equal(await cacheOf('ghost@example.test'), 'miss');
      assert.equal(await cacheOf('alice@example.test'), 'hit');
      r.clock.now += 60_000;
      assert.equal(await cacheOf('alice@example.test'), 'miss');
      // Lookups of one key at once share one search.
      r.clock.now += 60_000;
      const shared = r.lookups.length;
      await Promise.all([1, 2, 3].map(() => users.lookup(address('bob@example.test'))));
      assert.deepEqual(
        r.lookups
          .slice(shared)
          .map((e) => e.cache)
          .sort(),
        ['miss', 'shared', 'shared'],
      );
    } finally {
      await r.directory.close();
    }
  });

  test('slapd stopped: lookups are errors (never cached), and the pool reconnects after the restart', async () => {
    const r = rig();
    try {
      const users = table(r, 'users');
      assert.equal((await users.lookup(address('alice@example.test'))).status, 'found');
      await slapd.stop();
      const down = await users.lookup(address('bob@example.test'));
      assert.equal(down.status, 'error', 'an unreachable directory is an error, not "unknown user"');
      assert.equal(r.directory.health().healthy, false);
      assert.deepEqual(
        r.events.map((e) => e.code),
        ['PW-L001'],
      );
      // Errors are not cached: the same key is asked again, and fails again while slapd is down.
      assert.equal((await users.lookup(address('bob@example.test'))).status, 'error');
      await slapd.start();
      const back = await eventually(
        'a lookup after the restart',
        () => users.lookup(address('bob@example.test')),
        (v) => v.status === 'found',
      );
      assert.equal(back.status, 'found');
      assert.equal(r.directory.health().healthy, true);
      assert.deepEqual(
        r.events.map((e) => e.code),
        ['PW-L001', 'PW-L002'],
      );
    } finally {
      await r.directory.close();
    }
  });

  test('slapd hung (SIGSTOP): a lookup fails at its deadline, and works again after SIGCONT', async () => {
    const r = rig({ timeoutMs: 300 });
    try {
      const users = table(r, 'users');
      assert.equal((await users.lookup(address('alice@example.test'))).status, 'found');
      await slapd.pause();
      const started = Date.now();
      // More lookups at once than the pool has connections (2): the others wait, within the same deadline.
      const [hung, ...others] = await Promise.all(
        ['bob', 'carol', 'dave', 'erin'].map((u) => users.lookup(address(`${u}@example.test`))),
      );
      const took = Date.now() - started;
      assert.deepEqual(
        others.map((o) => o.status),
        ['error', 'error', 'error'],
      );
      assert.ok(hung);
      slapd.resume();
      assert.equal(hung.status, 'error');
      assert.match(hung.status === 'error' ? hung.reason : '', /no answer within 300 ms/);
      assert.ok(took >= 250 && took < 1500, `answered after ${took} ms`);
      const back = await eventually(
        'a lookup after SIGCONT',
        () => users.lookup(address('bob@example.test')),
        (v) => v.status === 'found',
      );
      assert.equal(back.status, 'found');
    } finally {
      slapd.resume();
      await r.directory.close();
    }
  });
});

describe('the built bin with ldap: maps', () => {
  const passwordFile = path.join(work, 'ldap.password');
  const ldapSection = (queries: string) => `ldap:
  url: ${slapd.url}
  bind_dn: ${SERVICE_DN}
  password_file: ldap.password
  base: ${SUFFIX}
  timeout_ms: 500
  reconnect_min_ms: 50
  reconnect_max_ms: 200
  cache: { ttl_s: 60, negative_ttl_s: 1 }
  queries:
${queries}`;
  const QUERY_YAML = `    users: { filter: "(mail=%s)", result_attribute: mail }
    aliases: { filter: "(mailLocalAddress=%s)", result_attribute: mailRoutingAddress }
    domains: { filter: "(associatedDomain=%s)", result_attribute: associatedDomain }
    logins: { filter: "(|(mail=%s)(mailLocalAddress=%s))", result_attribute: uid }
`;

  function checkConfig(config: string) {
    const file = path.join(work, 'check.yml');
    writeFileSync(file, config);
    return spawnSync(process.execPath, [BIN, 'check-config', '--config', file], {
      encoding: 'utf8',
      timeout: 20_000,
    });
  }

  before(() => writeFileSync(passwordFile, `${SERVICE_PASSWORD}\n`, { mode: 0o600 }));

  test('check-config names the key, the value and the fix of LDAP problems', () => {
    const good = checkConfig(`local_domains: ldap:domains\n${ldapSection(QUERY_YAML)}`);
    assert.equal(good.status, 0, good.stderr);
    const bad = checkConfig(
      `local_domains: ldap:domain\npolicy:\n  recipients: { mode: enforce, map: ldap:users }\n${ldapSection(
        '    users: { filter: "(mail=alice)", result_attribute: mail }\n    odd: { filter: "(mail=%s", result_attribute: mail }\n    fmt: { filter: "(mail=%x)", result_attribute: mail }\n',
      )}`,
    );
    assert.equal(bad.status, 78);
    assert.match(
      bad.stderr,
      /local_domains: "ldap:domain" — no query 'domain' under ldap\.queries; use one of ldap:users, ldap:odd, ldap:fmt/,
    );
    assert.match(
      bad.stderr,
      /ldap\.queries\.users\.filter: "\(mail=alice\)" — the filter never uses the key; put %s/,
    );
    assert.match(bad.stderr, /ldap\.queries\.odd\.filter: "\(mail=%s" — not an LDAP filter/);
    assert.match(bad.stderr, /ldap\.queries\.fmt\.filter: "\(mail=%x\)" — unknown directive %x/);
    const noPassword = checkConfig(
      `local_domains: ldap:domains\n${ldapSection(QUERY_YAML).replace('ldap.password', 'missing.password')}`,
    );
    assert.equal(noPassword.status, 78);
    assert.match(
      noPassword.stderr,
      /ldap\.password_file: missing\.password — cannot read missing\.password \(ENOENT\); create it/,
    );
    const serve = spawnSync(process.execPath, [BIN, 'serve', '--config', path.join(work, 'check.yml')], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(serve.status, 78, 'serve refuses to start without the bind password');
    assert.match(serve.stdout, /"code":"PW-L003"/);
    const noMap = checkConfig(`local_domains: [example.test]\npolicy:\n  recipients: { mode: enforce }\n`);
    assert.equal(noMap.status, 78);
    assert.match(noMap.stderr, /policy\.recipients\.map: .* no recipient map/);
  });

  test('policy: unknown LDAP recipient 550 5.1.1, mailbox and alias accepted, 451 4.3.0 while slapd is down', async () => {
    const server = new Postwarden('ldap', work, HTTP, POLICY);
    await server.start(
      `local_domains: ldap:domains
policy:
  listen: ${POLICY}
  checks: [relay, sender_ownership, recipients]
  recipients: { mode: enforce, map: ldap:users, aliases: ldap:aliases }
  sender_ownership: { map: ldap:logins }
http:
  listen: ${HTTP}
${ldapSection(QUERY_YAML)}`,
    );
    const client = await PolicyClient.connect(POLICY);
    const ask = (recipient: string) =>
      client.query({
        request: 'smtpd_access_policy',
        protocol_state: 'RCPT',
        client_address: '192.0.2.10',
        client_name: 'mail.remote.test',
        helo_name: 'mail.remote.test',
        sender: 'someone@remote.test',
        recipient,
      });
    try {
      assert.equal(await ask('alice@example.test'), 'DUNNO');
      assert.equal(await ask('sales@example.test'), 'DUNNO', 'an alias is a valid recipient');
      assert.equal(await ask('alice+news@example.test'), 'DUNNO');
      assert.equal(await ask('nobody@example.test'), '550 5.1.1 User unknown');
      assert.match(await ask('someone@elsewhere.test'), /^554 5\.7\.1 Relay access denied/);
      // SASL sender ownership from the directory: sales@ is bob's alias, so bob may send as it and alice not.
      const submit = (login: string, sender: string) =>
        client.query({
          request: 'smtpd_access_policy',
          protocol_state: 'RCPT',
          client_address: '192.0.2.20',
          sasl_username: login,
          sender,
          recipient: 'friend@elsewhere.test',
        });
      assert.equal(await submit('bob', 'sales@example.test'), 'DUNNO');
      assert.equal(
        await submit('alice', 'sales@example.test'),
        '553 5.7.1 Sender address not owned by user alice',
      );
      const metrics = await server.metrics();
      assert.match(
        metrics,
        /^postwarden_ldap_lookups_total\{query="users",result="notfound",cache="miss"\} \d+$/m,
      );
      assert.match(metrics, /^postwarden_ldap_up 1$/m);

      await slapd.stop();
      assert.equal(await ask('bob@example.test'), '451 4.3.0 Temporary lookup failure');
      assert.equal(await ask('nobody2@example.test'), '451 4.3.0 Temporary lookup failure');
      const decision = (await server.decisionsFor('someone@remote.test', 7)).at(-1);
      assert.equal(decision?.verdicts.at(-1)?.symbol, 'RECIPIENT_LOOKUP_FAILED');
      const ready = await server.readyzUntil('503 while slapd is down', (r) => r.status === 503);
      assert.ok(ready.body.checks.some((c) => c.name === 'map ldap:users' && !c.ready));
      await eventually(
        'PW-L001 logged',
        async () => server.lines(),
        (ls) => ls.some((l) => l['code'] === 'PW-L001'),
      );
      assert.doesNotMatch(server.log(), new RegExp(SERVICE_PASSWORD));

      await slapd.start();
      await eventually(
        'bob accepted after the restart',
        () => ask('bob@example.test'),
        (a) => a === 'DUNNO',
      );
      assert.equal(await ask('nobody@example.test'), '550 5.1.1 User unknown');
      await eventually(
        'PW-L002 logged',
        async () => server.lines(),
        (ls) => ls.some((l) => l['code'] === 'PW-L002'),
      );
    } finally {
      client.close();
      await server.stop();
      await slapd.start();
    }
  });
});
