/**
 * ldap: maps without a server: Postfix ldap_table(5) key expansion with RFC 4515 escaping, result formatting
 * and joining, the keys an address is looked up under, the cache (TTLs, errors never kept, suppressed searches
 * never sent), the registry's ldap: tables, the recipients check's three answers, and the Postfix ldap_table
 * files written from the same settings.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ldapSchema } from '../../src/config/ldap.js';
import { createRecipientsCheck } from '../../src/core/checks/index.js';
import { Locality } from '../../src/core/locality.js';
import { newSession } from '../../src/core/pipeline.js';
import type { LdapSearch, LdapSearcher, LdapSearchOutcome, LookupTable } from '../../src/core/ports.js';
import { toPolicyRequest } from '../../src/core/request.js';
import {
  expandFilter,
  filterProblem,
  LdapMaps,
  MapRegistry,
  resultFormatProblem,
  type LdapLookupEvent,
  type LdapQuery,
} from '../../src/maps/index.js';
import { postfixLdapTables } from '../../src/generate/postfix-ldap.js';
import { formatValue, lookupKeys, resultOf } from '../../src/maps/ldap.js';
import { TtlCache } from '../../src/util/ttl-cache.js';

const QUERY: LdapQuery = {
  base: 'dc=example,dc=test',
  filter: '(mail=%s)',
  resultAttributes: ['mail'],
  resultFormat: '%s',
  scope: 'sub',
  domains: [],
  sizeLimit: 10,
  maxValues: 3,
};

describe('filter expansion', () => {
  test('%s %u %d %1-%9 %% per ldap_table(5), every value escaped per RFC 4515', () => {
    const cases: [string, string, string | undefined][] = [
      ['(mail=%s)', 'alice@example.test', '(mail=alice@example.test)'],
      ['(&(uid=%u)(dom=%d))', 'alice@example.test', '(&(uid=alice)(dom=example.test))'],
      [
        '(&(uid=%U)(dom=%D)(k=%S))',
        'alice@example.test',
        '(&(uid=alice)(dom=example.test)(k=alice@example.test))',
      ],
      ['(uid=%u)', 'alice', '(uid=alice)'],
      ['(dom=%d)', 'alice', undefined],
      ['(uid=%u)', '@example.test', undefined],
      ['(dc=%1)(dc=%2)(dc=%3)', 'a@mail.example.com', '(dc=com)(dc=example)(dc=mail)'],
      ['(dc=%4)', 'a@mail.example.com', undefined],
      ['(dc=%1)', 'unqualified', undefined],
      ['(x=100%%)(mail=%s)', 'a@b', '(x=100%)(mail=a@b)'],
      ['(mail=%s)', '*@example.test', '(mail=\\2a@example.test)'],
      ['(mail=%s)', 'a)(uid=*', '(mail=a\\29\\28uid=\\2a)'],
      ['(mail=%s)', 'back\\slash\0nul', '(mail=back\\5cslash\\00nul)'],
      ['(uid=%u)', 'o*(x)\\y@example.test', '(uid=o\\2a\\28x\\29\\5cy)'],
    ];
    for (const [template, key, expected] of cases) {
      assert.equal(expandFilter(template, key), expected, `${template} with ${key}`);
    }
  });

  test('filterProblem: a filter must use the key, know its directives and parse', () => {
    assert.equal(filterProblem('(&(objectClass=inetOrgPerson)(mail=%s))'), undefined);
    assert.equal(filterProblem('(|(uid=%u)(mail=%u@%d))'), undefined);
    assert.match(filterProblem('(mail=alice)') ?? '', /never uses the key; put %s/);
    assert.match(filterProblem('(mail=100%%)') ?? '', /never uses the key/);
    assert.match(filterProblem('(mail=%x)') ?? '', /unknown directive %x/);
    assert.match(filterProblem('(mail=%s') ?? '', /not an LDAP filter/);
    assert.match(filterProblem('(mail=%') ?? '', /unknown directive %/);
  });

  test('result formats: %s the value, %u %d its parts (skipped when missing), upper case the key', () => {
    assert.equal(formatValue('%s', 'bob@example.test', 'k@x'), 'bob@example.test');
    assert.equal(formatValue('smtp:[%d]', 'bob@mx.example.test', 'k@x'), 'smtp:[mx.example.test]');
    assert.equal(formatValue('%d', 'bob', 'k@x'), undefined);
    assert.equal(
      formatValue('%u for %S', 'bob@example.test', 'sales@example.test'),
      'bob for sales@example.test',
    );
    assert.equal(formatValue('100%%', 'x', 'k'), '100%');
    assert.equal(resultFormatProblem('smtp:[%s]'), undefined);
    assert.match(resultFormatProblem('%q') ?? '', /unknown directive %q/);
  });
});

describe('keys and results', () => {
  test('an address is looked up as given, then without its extension; other kinds as Postfix folds them', () => {
    assert.deepEqual(lookupKeys({ kind: 'address', value: 'Bob+Tag@Example.TEST' }, '+'), [
      'bob+tag@example.test',
      'bob@example.test',
    ]);
    assert.deepEqual(lookupKeys({ kind: 'address', value: 'bob+tag@example.test' }, ''), [
      'bob+tag@example.test',
    ]);
    assert.deepEqual(lookupKeys({ kind: 'address', value: '' }, '+'), []);
    assert.deepEqual(lookupKeys({ kind: 'address', value: '<>' }, '+'), []);
    assert.deepEqual(lookupKeys({ kind: 'domain', value: 'Example.TEST.' }, '+'), ['example.test']);
    assert.deepEqual(lookupKeys({ kind: 'text', value: 'Exact Text' }, '+'), ['Exact Text']);
  });

  test('values of every entry and attribute joined with commas; none is notfound; too many is an error', () => {
    const q = { ...QUERY, resultAttributes: ['mail', 'mailLocalAddress'] };
    assert.deepEqual(resultOf(q, [{ MAIL: 'a@x', mailLocalAddress: ['b@x', ''] }, { mail: ['c@x'] }], 'k'), {
      status: 'found',
      value: 'a@x,b@x,c@x',
    });
    assert.deepEqual(resultOf(q, [{ cn: 'no mail' }], 'k'), { status: 'notfound' });
    assert.deepEqual(resultOf(q, [], 'k'), { status: 'notfound' });
    const many = resultOf(q, [{ mail: ['1', '2', '3', '4'] }], 'k');
    assert.equal(many.status, 'error');
  });
});

/** A directory that answers from a table of filter → mail values, counting its searches. */
class FakeDirectory implements LdapSearcher {
  readonly searches: LdapSearch[] = [];
  failing: string | undefined;
  constructor(private readonly data: Record<string, string[]>) {}
  search(request: LdapSearch): Promise<LdapSearchOutcome> {
    this.searches.push(request);
    if (this.failing !== undefined) return Promise.resolve({ ok: false, reason: this.failing });
    const values = this.data[request.filter];
    return Promise.resolve({ ok: true, entries: values ? [{ mail: values }] : [] });
  }
  health() {
    return this.failing === undefined ? { healthy: true } : { healthy: false, reason: this.failing };
  }
}

function fakeMaps(directory: FakeDirectory, clock: { now: number }, events: LdapLookupEvent[] = []) {
  return new LdapMaps({
    searcher: directory,
    queries: { users: QUERY, scoped: { ...QUERY, domains: ['example.test'] } },
    cache: { maxEntries: 10, ttlMs: 60_000, negativeTtlMs: 5_000 },
    recipientDelimiter: '+',
    onLookup: (e) => events.push(e),
    now: () => clock.now,
  });
}

function opened(maps: LdapMaps, name: string): LookupTable {
  const result = maps.open(name);
  assert.ok(result.ok);
  return result.table;
}

describe('LdapMaps', () => {
  test('cache: found for ttl, notfound for negative ttl, errors never; suppressed keys never searched', async () => {
    const directory = new FakeDirectory({ '(mail=alice@example.test)': ['alice@example.test'] });
    const clock = { now: 0 };
    const events: LdapLookupEvent[] = [];
    const users = opened(fakeMaps(directory, clock, events), 'users');
    const alice = { kind: 'address', value: 'alice@example.test' } as const;
    const ghost = { kind: 'address', value: 'ghost@example.test' } as const;
    assert.equal((await users.lookup(alice)).status, 'found');
    assert.equal((await users.lookup(alice)).status, 'found');
    assert.equal((await users.lookup(ghost)).status, 'notfound');
    assert.equal((await users.lookup(ghost)).status, 'notfound');
    assert.equal(directory.searches.length, 2);
    clock.now = 5_001;
    await users.lookup(ghost);
    await users.lookup(alice);
    assert.equal(directory.searches.length, 3, 'only the not-found answer expired');
    directory.failing = 'server down';
    clock.now = 70_000;
    assert.deepEqual(await users.lookup(alice), { status: 'error', reason: 'ldap:users: server down' });
    assert.equal((await users.lookup(alice)).status, 'error');
    assert.equal(directory.searches.length, 5, 'errors are not cached');
    directory.failing = undefined;
    assert.equal((await users.lookup(alice)).status, 'found');
    assert.deepEqual(
      events.map((e) => `${e.result}/${e.cache}`),
      [
        'found/miss',
        'found/hit',
        'notfound/miss',
        'notfound/hit',
        'notfound/miss',
        'found/hit',
        'error/miss',
        'error/miss',
        'found/miss',
      ],
    );
    const scoped = opened(fakeMaps(directory, clock), 'scoped');
    const before = directory.searches.length;
    assert.equal((await scoped.lookup({ kind: 'address', value: 'alice@other.test' })).status, 'notfound');
    assert.equal((await scoped.lookup({ kind: 'domain', value: 'example.test' })).status, 'notfound');
    assert.equal(directory.searches.length, before, 'keys outside `domains` are not searched');
  });

  test('a lookup error stops at the first key: the stripped address is not tried', async () => {
    const directory = new FakeDirectory({});
    directory.failing = 'timeout';
    const users = opened(fakeMaps(directory, { now: 0 }), 'users');
    assert.equal((await users.lookup({ kind: 'address', value: 'bob+x@example.test' })).status, 'error');
    assert.equal(directory.searches.length, 1);
  });

  test('the registry opens ldap:NAME through the directory, and a stand-in without one', async () => {
    const directory = new FakeDirectory({ '(mail=alice@example.test)': ['alice@example.test'] });
    const registry = new MapRegistry({ ldap: fakeMaps(directory, { now: 0 }), watch: false });
    const users = registry.open('ldap:users');
    assert.equal(users.name, 'ldap:users');
    assert.equal((await users.lookup({ kind: 'address', value: 'alice@example.test' })).status, 'found');
    assert.equal(
      (await registry.open('ldap:constructor').lookup({ kind: 'address', value: 'a@b' })).status,
      'error',
      'a name of Object.prototype is no query',
    );
    const missing = registry.open('ldap:nope');
    assert.match(
      JSON.stringify(await missing.lookup({ kind: 'address', value: 'a@b' })),
      /no query 'nope' under ldap\.queries; use one of users, scoped/,
    );
    directory.failing = 'server down';
    const health = registry.health().find((h) => h.name === 'ldap:users');
    assert.deepEqual([health?.healthy, health?.reason], [false, 'server down']);
    const bare = new MapRegistry({ watch: false }).open('ldap:users');
    assert.match(
      JSON.stringify(await bare.lookup({ kind: 'address', value: 'a@b' })),
      /no LDAP directory is configured/,
    );
  });
});

describe('TtlCache', () => {
  test('evicts the least recently used entry and expires entries', () => {
    const clock = { now: 0 };
    const cache = new TtlCache<number>(2, () => clock.now);
    cache.set('a', 1, 100);
    cache.set('b', 2, 100);
    assert.equal(cache.get('a'), 1); // a is now the most recent
    cache.set('c', 3, 100);
    assert.equal(cache.get('b'), undefined);
    assert.equal(cache.get('a'), 1);
    clock.now = 100;
    assert.equal(cache.get('a'), undefined);
    cache.set('d', 4, 0);
    assert.equal(cache.get('d'), undefined, 'a TTL of 0 keeps nothing');
    assert.equal(cache.size, 1);
  });
});

describe('recipients check', () => {
  const table = (name: string, answer: (v: string) => 'found' | 'notfound' | 'error'): LookupTable => ({
    name,
    lookup: (q) => {
      const status = answer(q.value);
      return Promise.resolve(
        status === 'found'
          ? { status, key: q.value, value: 'x' }
          : status === 'error'
            ? { status, reason: `${name} down` }
            : { status },
      );
    },
  });
  const domains = table('domains', (v) => (v === 'example.test' ? 'found' : 'notfound'));
  const rcpt = (recipient: string) =>
    toPolicyRequest({
      request: 'smtpd_access_policy',
      protocol_state: 'RCPT',
      recipient,
      sender: 'a@remote.test',
    });
  const ctx = { session: newSession(), score: 0, earlier: [], signal: new AbortController().signal };

  test('550 5.1.1 for an unknown local recipient, nothing for a known one or an alias or another domain', async () => {
    const check = createRecipientsCheck(
      new Locality({ localNetworks: [], localDomains: [domains] }),
      [table('users', (v) => (v === 'alice@example.test' ? 'found' : 'notfound'))],
      [table('aliases', (v) => (v === 'sales@example.test' ? 'found' : 'notfound'))],
    );
    const symbols = async (r: string) => (await check.run(rcpt(r), ctx)).map((v) => v.symbol);
    assert.deepEqual(await symbols('alice@example.test'), ['RECIPIENT_KNOWN']);
    assert.deepEqual(await symbols('sales@example.test'), ['RECIPIENT_KNOWN']);
    assert.deepEqual(await symbols('someone@remote.test'), []);
    const unknown = await check.run(rcpt('nobody@example.test'), ctx);
    assert.deepEqual(unknown[0]?.reply, { code: 550, dsn: '5.1.1', text: 'User unknown' });
    assert.equal(unknown[0]?.action, 'reject');
  });

  test('451 4.3.0 when a recipient table or the local-domain table cannot answer', async () => {
    const down = table('users', () => 'error');
    const check = createRecipientsCheck(
      new Locality({ localNetworks: [], localDomains: [domains] }),
      [down],
      [],
    );
    const verdicts = await check.run(rcpt('alice@example.test'), ctx);
    assert.deepEqual(verdicts[0]?.reply, { code: 451, dsn: '4.3.0', text: 'Temporary lookup failure' });
    assert.equal(verdicts[0]?.action, 'defer');
    const domainsDown = createRecipientsCheck(
      new Locality({ localNetworks: [], localDomains: [table('domains', () => 'error')] }),
      [table('users', () => 'found')],
      [],
    );
    assert.equal(
      (await domainsDown.run(rcpt('alice@example.test'), ctx))[0]?.symbol,
      'RECIPIENT_LOOKUP_FAILED',
    );
  });
});

describe('Postfix ldap_table files', () => {
  test('one ldap-NAME.cf per query, with the same filter, base and result as postwarden uses', () => {
    const settings = ldapSchema.parse({
      url: 'ldap://127.0.0.1:3389',
      bind_dn: 'cn=postwarden,dc=example,dc=test',
      base: 'dc=example,dc=test',
      timeout_ms: 1500,
      queries: {
        aliases: { filter: '(mailLocalAddress=%s)', result_attribute: 'mailRoutingAddress' },
        transport: {
          filter: '(mail=%s)',
          result_attribute: ['mailHost'],
          result_format: 'smtp:[%s]',
          domains: ['example.test'],
          base: 'ou=people,dc=example,dc=test',
        },
      },
    });
    const files = postfixLdapTables(settings, 'secret');
    assert.deepEqual(
      files.map((f) => f.name),
      ['ldap-aliases.cf', 'ldap-transport.cf'],
    );
    assert.equal(
      files[0]?.text,
      [
        '# Generated by postwarden from ldap.queries.aliases; edit the postwarden config and generate again.',
        'server_host = ldap://127.0.0.1:3389',
        'version = 3',
        'search_base = dc=example,dc=test',
        'scope = sub',
        'query_filter = (mailLocalAddress=%s)',
        'result_attribute = mailRoutingAddress',
        'size_limit = 100',
        'expansion_limit = 1000',
        'timeout = 2',
        'bind = yes',
        'bind_dn = cn=postwarden,dc=example,dc=test',
        'bind_pw = secret',
        '',
      ].join('\n'),
    );
    assert.match(files[1]?.text ?? '', /^search_base = ou=people,dc=example,dc=test$/m);
    assert.match(files[1]?.text ?? '', /^result_format = smtp:\[%s\]$/m);
    assert.match(files[1]?.text ?? '', /^domain = example\.test$/m);
    const anonymous = postfixLdapTables({ ...settings, bind_dn: '' }, '');
    assert.match(anonymous[0]?.text ?? '', /^bind = no$/m);
    assert.doesNotMatch(anonymous[0]?.text ?? '', /bind_pw/);
    assert.throws(() => postfixLdapTables(settings, 'two\nlines'), /ldap\.password_file: a line break/);
  });
});
