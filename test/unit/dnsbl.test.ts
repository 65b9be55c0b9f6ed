/**
 * DNS lists' pure pieces, as tables: query names (IPv4, IPv6, mapped), return-code patterns, what never counts
 * as a listing, weights per code and per trust level, the self-test's reading of a list, health transitions,
 * and the check's combination of lists (with an in-memory resolver: the pure logic, not the network — the
 * integration tests ask a real DNS server).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  createDnsblCheck,
  DnsListHealth,
  dnsblSchema,
  dnsLists,
  readListAnswer,
  selfTest,
  type DnsList,
} from '../../src/core/checks/dnsbl.js';
import {
  type DnsAnswer,
  type DnsResolver,
  type DnsType,
  ipv6TestPointName,
  listQueryName,
  notAListing,
  parseCodePattern,
} from '../../src/core/dns.js';
import { Locality } from '../../src/core/locality.js';
import { CheckDeadlines, newSession } from '../../src/core/pipeline.js';
import { toPolicyRequest } from '../../src/core/request.js';

describe('query names', () => {
  const rows: [string, string | undefined][] = [
    ['192.0.2.99', '99.2.0.192.bl.test'],
    ['::ffff:192.0.2.99', '99.2.0.192.bl.test'],
    ['[192.0.2.99]', '99.2.0.192.bl.test'],
    ['2001:db8::1', '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test'],
    ['2001:DB8:0:0:0:0:0:1', '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test'],
    ['not-an-ip', undefined],
    ['', undefined],
  ];
  for (const [address, name] of rows) {
    test(`${JSON.stringify(address)} → ${name}`, () => assert.equal(listQueryName(address, 'bl.test'), name));
  }
  test('IPv6 test points are nibbles, not folded into 127.0.0.x', () => {
    assert.equal(
      ipv6TestPointName(2, 'bl.test'),
      '2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.bl.test',
    );
    assert.equal(ipv6TestPointName(1, 'bl.test').slice(0, 2), '1.');
  });
});

describe('return-code patterns', () => {
  const rows: [string, string, boolean][] = [
    ['127.0.0.2', '127.0.0.2', true],
    ['127.0.0.2', '127.0.0.3', false],
    ['127.0.0.[2..11]', '127.0.0.11', true],
    ['127.0.0.[2..11]', '127.0.0.12', false],
    ['127.0.0.[2;4;10..11]', '127.0.0.4', true],
    ['127.0.0.[2;4;10..11]', '127.0.0.3', false],
    ['127.0.[0..255].[0..3]', '127.0.15.2', true],
    ['127.0.0.[2..11]', 'junk', false],
  ];
  for (const [pattern, code, expected] of rows) {
    test(`${pattern} ${expected ? 'matches' : 'does not match'} ${code}`, () => {
      const parsed = parseCodePattern(pattern);
      assert.notEqual(typeof parsed, 'string');
      if (typeof parsed !== 'string') assert.equal(parsed.matches(code), expected);
    });
  }
  for (const bad of [
    '127.0.0',
    '127.0.0.[2..]',
    '127.0.0.[11..2]',
    '127.0.0.256',
    '127.0.0.2..3',
    'a.b.c.d',
  ]) {
    test(`${bad} is refused with a fix`, () => assert.equal(typeof parseCodePattern(bad), 'string'));
  }
});

describe('never a listing', () => {
  const rows: [string, 'block' | 'allow', boolean][] = [
    ['127.0.0.2', 'block', false],
    ['127.0.0.10', 'block', false],
    ['127.255.255.254', 'block', true], // Spamhaus: query via a public resolver
    ['127.255.255.255', 'block', true], // Spamhaus: over quota
    ['127.255.255.252', 'block', true], // Spamhaus: typo in the zone
    ['192.0.2.1', 'block', true], // a resolver that rewrites NXDOMAIN to an ad server
    ['::1', 'block', true],
    ['127.0.0.255', 'allow', true], // DNSWL: over quota
    ['127.0.0.255', 'block', false],
    ['127.0.15.2', 'allow', false],
  ];
  for (const [code, kind, refused] of rows) {
    test(`${kind} ${code}: ${refused ? 'refused' : 'may count'}`, () =>
      assert.equal(notAListing(code, kind) !== undefined, refused));
  }
});

const zen = dnsblSchema.parse({
  lists: [
    {
      zone: 'zen.bl.test',
      name: 'zen',
      codes: { '127.0.0.2': 3, '127.0.0.3': 4, '127.0.0.[4..7]': 6, '127.0.0.[10;11]': 8 },
    },
    { zone: 'plain.bl.test' },
  ],
  dnswl: [{ zone: 'wl.test' }],
});
const [ZEN, PLAIN, DNSWL] = dnsLists(zen) as [DnsList, DnsList, DnsList];

describe('weights', () => {
  const rows: [DnsList, string[], number, string][] = [
    [ZEN, ['127.0.0.2'], 3, 'DNSBL_LISTED'],
    [ZEN, ['127.0.0.4', '127.0.0.5'], 6, 'DNSBL_LISTED'], // one pattern counts once
    [ZEN, ['127.0.0.4', '127.0.0.10'], 14, 'DNSBL_LISTED'], // XBL and PBL: two patterns
    [ZEN, ['127.0.0.9'], 0, ''], // no pattern for it
    [ZEN, ['127.255.255.254'], 0, ''],
    [ZEN, ['127.0.0.2', '127.255.255.254'], 3, 'DNSBL_LISTED'],
    [PLAIN, ['127.0.0.2'], 1, 'DNSBL_LISTED'], // default codes 127.0.0.[2..254], weight 1
    [PLAIN, ['127.0.0.1'], 0, ''],
    [DNSWL, ['127.0.15.0'], -2, 'DNSWL_NONE'],
    [DNSWL, ['127.0.15.1'], -4, 'DNSWL_LOW'],
    [DNSWL, ['127.0.15.2', '127.0.3.3'], -8, 'DNSWL_HIGH'], // the highest trust answered
    [DNSWL, ['127.0.0.255'], 0, ''],
    [DNSWL, ['127.0.15.9'], 0, ''],
  ];
  for (const [list, codes, score, symbol] of rows) {
    test(`${list.name} ${codes.join(',')} → ${symbol || 'nothing'} ${score}`, () => {
      const reading = readListAnswer(list, codes);
      assert.equal(reading.score, score);
      assert.equal(reading.symbol, symbol);
    });
  }
  test('error codes are reported as refused', () =>
    assert.equal(readListAnswer(ZEN, ['127.255.255.254']).refused.length, 1));
});

/** An in-memory resolver: name → answer; anything else NXDOMAIN. */
function resolverOf(answers: Record<string, DnsAnswer<DnsType>>): DnsResolver & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    query<T extends DnsType>(name: string, type: T): Promise<DnsAnswer<T>> {
      asked.push(`${type} ${name}`);
      return Promise.resolve((answers[`${type} ${name}`] ?? { status: 'nxdomain' }) as DnsAnswer<T>);
    },
  };
}
const ok = (...records: string[]): DnsAnswer<'A'> => ({ status: 'ok', records });
const timeout: DnsAnswer<'A'> = { status: 'error', kind: 'timeout', reason: 'no answer' };

describe('self-test', () => {
  const cases: [string, Record<string, DnsAnswer<DnsType>>, boolean, boolean][] = [
    ['lists 127.0.0.2, not 127.0.0.1', { 'A 2.0.0.127.plain.bl.test': ok('127.0.0.2') }, true, false],
    ['does not list its test point', {}, false, false],
    [
      'lists 127.0.0.1 too (lists everything)',
      { 'A 2.0.0.127.plain.bl.test': ok('127.0.0.2'), 'A 1.0.0.127.plain.bl.test': ok('127.0.0.2') },
      false,
      false,
    ],
    [
      'answers an error code (public resolver)',
      {
        'A 2.0.0.127.plain.bl.test': ok('127.255.255.254'),
        'A 1.0.0.127.plain.bl.test': ok('127.255.255.254'),
      },
      false,
      false,
    ],
    ['times out', { 'A 2.0.0.127.plain.bl.test': timeout }, false, true],
  ];
  for (const [what, answers, healthy, transient] of cases) {
    test(what, async () => {
      const outcome = await selfTest(PLAIN, 4, resolverOf(answers));
      assert.equal(outcome.ok, healthy);
      if (!healthy) {
        assert.equal(outcome.transient, transient);
        assert.ok(outcome.reason && outcome.fix, 'an unhealthy list says why and what to do');
      }
    });
  }

  test('health: a definitive failure marks at once, timeouts only three in a row, a pass restores', () => {
    const changes: boolean[] = [];
    const health = new DnsListHealth([PLAIN], (h) => changes.push(h.healthy));
    const transient = { ok: false, transient: true, reason: 'timeout', fix: 'x' };
    health.record(PLAIN, 4, transient);
    health.record(PLAIN, 4, transient);
    assert.equal(health.usable(PLAIN, 4), true);
    health.record(PLAIN, 4, transient);
    assert.equal(health.usable(PLAIN, 4), false);
    health.record(PLAIN, 4, { ok: true, transient: false });
    assert.equal(health.usable(PLAIN, 4), true);
    health.record(PLAIN, 4, { ok: false, transient: false, reason: 'lists 127.0.0.1', fix: 'x' });
    assert.equal(health.usable(PLAIN, 4), false);
    assert.equal(health.usable(PLAIN, 6), true, 'families are separate');
    assert.deepEqual(changes, [false, true, false]);
  });
});

describe('the check', () => {
  const locality = new Locality({ localNetworks: [], localDomains: [] });
  const request = (client: string, extra: Record<string, string> = {}) =>
    toPolicyRequest({
      request: 'smtpd_access_policy',
      protocol_state: 'RCPT',
      client_address: client,
      ...extra,
    });
  const signal = new CheckDeadlines().signal;
  /** A fresh message each time: the check remembers its answer per message. */
  const ctx = () => ({
    session: Object.assign(newSession(), { rcptCount: 1 }),
    score: 0,
    earlier: [],
    signal,
  });
  const settings = { reject_at: 10 };
  /** The check over the given lists (all healthy at first), asking an in-memory resolver. */
  const checkOf = (
    resolver: DnsResolver,
    lists: DnsList[] = [ZEN, PLAIN, DNSWL],
    health = new DnsListHealth(lists),
  ) => createDnsblCheck(settings, lists, health, locality, resolver);

  test('sums the lists, rejects at reject_at with the names and the TXT reason', async () => {
    const resolver = resolverOf({
      'A 9.2.0.192.zen.bl.test': ok('127.0.0.4', '127.0.0.10'),
      'TXT 9.2.0.192.zen.bl.test': { status: 'ok', records: [['https://bl.test/', 'why']] },
      'A 9.2.0.192.plain.bl.test': ok('127.0.0.2'),
    });
    const check = checkOf(resolver);
    const verdicts = await check.run(request('192.0.2.9'), ctx());
    const listed = verdicts.filter((v) => v.symbol === 'DNSBL_LISTED');
    assert.deepEqual(
      listed.map((v) => v.score),
      [14, 1],
    );
    const reject = verdicts.find((v) => v.symbol === 'DNSBL_REJECT');
    assert.equal(reject?.action, 'reject');
    assert.equal(reject?.reply?.code, 554);
    assert.match(reject?.reply?.text ?? '', /blocked using zen, plain\.bl\.test; https:\/\/bl\.test\/why/);
  });

  test('a DNSWL listing offsets the block lists below reject_at', async () => {
    const resolver = resolverOf({
      'A 9.2.0.192.zen.bl.test': ok('127.0.0.10'),
      'A 9.2.0.192.plain.bl.test': ok('127.0.0.2'),
      'A 9.2.0.192.wl.test': ok('127.0.15.3'),
    });
    const check = checkOf(resolver);
    const verdicts = await check.run(request('192.0.2.9'), ctx());
    assert.equal(
      verdicts.some((v) => v.action === 'reject'),
      false,
    );
    assert.equal(
      verdicts.reduce((sum, v) => sum + v.score, 0),
      1,
    );
    assert.ok(verdicts.some((v) => v.symbol === 'DNSWL_HIGH'));
  });

  test('error codes never count and mark the list unhealthy; its later hits are skipped', async () => {
    const resolver = resolverOf({ 'A 9.2.0.192.zen.bl.test': ok('127.255.255.254') });
    const health = new DnsListHealth([ZEN]);
    const check = checkOf(resolver, [ZEN], health);
    assert.deepEqual(await check.run(request('192.0.2.9'), ctx()), []);
    assert.equal(health.usable(ZEN, 4), false);
    const again = await check.run(request('192.0.2.9'), ctx());
    assert.deepEqual(
      again.map((v) => v.symbol),
      ['DNSBL_UNHEALTHY'],
    );
  });

  test('a list that does not answer yields a zero-score DNSBL_ERROR, never a listing', async () => {
    const resolver = resolverOf({ 'A 9.2.0.192.zen.bl.test': timeout });
    const check = checkOf(resolver, [ZEN]);
    const verdicts = await check.run(request('192.0.2.9'), ctx());
    assert.deepEqual(
      verdicts.map((v) => [v.symbol, v.score]),
      [['DNSBL_ERROR', 0]],
    );
  });

  test('one message asks the lists once, whatever its recipients', async () => {
    const resolver = resolverOf({ 'A 9.2.0.192.zen.bl.test': ok('127.0.0.2') });
    const check = checkOf(resolver, [ZEN]);
    const message = ctx();
    const first = await check.run(request('192.0.2.9'), message);
    const second = await check.run(request('192.0.2.9', { recipient: 'other@example.org' }), message);
    assert.deepEqual(second, first);
    assert.equal(resolver.asked.filter((q) => q.startsWith('A ')).length, 1);
  });

  test('trusted, private and loopback clients are not queried; IPv6 clients are, as nibbles', async () => {
    const resolver = resolverOf({});
    const check = checkOf(resolver, [ZEN]);
    for (const client of [
      '127.0.0.2',
      '10.1.2.3',
      '192.168.1.1',
      'fe80::1',
      'fd00::1',
      '::1',
      'unknown',
      '',
    ]) {
      await check.run(request(client), ctx());
    }
    await check.run(request('192.0.2.9', { sasl_username: 'alice' }), ctx());
    assert.deepEqual(resolver.asked, []);
    await check.run(request('2001:db8::1'), ctx());
    assert.equal(resolver.asked.length, 1);
    assert.match(resolver.asked[0] ?? '', /^A 1\.0\.0\.0\..*\.8\.b\.d\.0\.1\.0\.0\.2\.zen\.bl\.test$/);
  });
});
