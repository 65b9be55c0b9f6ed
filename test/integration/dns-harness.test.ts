/**
 * Proves the DNS harness (test/harness/dns.ts) with node:dns/promises, the resolver the product uses: a real
 * dnsmasq serving a DNSBL-style zone (IPv4 and IPv6 list names, an error-code answer), SPF TXT records with an
 * include chain and one longer than 255 bytes, MX, AAAA, CNAME, PTR and TTLs, NXDOMAIN for every other name and
 * nothing forwarded; then the two broken servers: SERVFAIL (ESERVFAIL) and silence (ETIMEOUT).
 */
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { after, before, describe, it } from 'node:test';
import {
  dnsmasqRecords,
  type DnsServer,
  type DnsZone,
  startDns,
  startServfailDns,
  startSilentDns,
} from '../harness/dns.js';

/** The RFC 5782 IPv6 test point ::ffff:7f00:2 as the 32 reversed nibbles a DNSBL query uses. */
const IPV6_LISTED = '2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.bl.test';
const LISTED_REASON = 'Listed in bl.test, see https://bl.test/lookup?ip=127.0.0.2';
/** 30 ip4 mechanisms: 511 characters, so three character-strings of 255, 255 and 1. */
const LONG_SPF = `v=spf1 ${Array.from({ length: 30 }, (_, i) => `ip4:10.${i}.0.0/16`).join(' ')} -all`;
/** 254 ASCII bytes, then a 2-byte character that must not be cut in half. */
const UTF8_EDGE = `${'a'.repeat(254)}é and more`;
const QUIRKY = 'a "quoted", comma; back\\slash # not a comment\ttab';
/** Three records of 900 bytes each: the answer (> 1232 bytes) is truncated over UDP and fetched over TCP. */
const BIG = ['x', 'y', 'z'].map((c) => c.repeat(900));

const zone: DnsZone = {
  ttl: 60,
  a: {
    '2.0.0.127.bl.test': ['127.0.0.2'],
    [IPV6_LISTED]: ['127.0.0.2'],
    '2.0.0.127.errors.test': ['127.255.255.254'],
    'example.test': ['192.0.2.10'],
    'mx1.example.test': ['192.0.2.25'],
    'mx2.example.test': ['192.0.2.26', '192.0.2.27'],
  },
  aaaa: {
    'mx1.example.test': ['2001:db8::25'],
    'mapped.example.test': ['::ffff:192.0.2.25'],
  },
  txt: {
    '2.0.0.127.bl.test': [LISTED_REASON],
    [IPV6_LISTED]: [LISTED_REASON],
    'example.test': ['v=spf1 mx include:_spf.example.test -all', 'site-verification=abc123'],
    '_spf.example.test': ['v=spf1 ip4:192.0.2.0/24 include:_spf2.example.test ~all'],
    '_spf2.example.test': ['v=spf1 ip6:2001:db8::/32 -all'],
    'long.example.test': [LONG_SPF],
    'utf8.example.test': [UTF8_EDGE],
    'quirky.example.test': [QUIRKY, ''],
    'big.example.test': BIG,
  },
  mx: {
    'example.test': [
      { exchange: 'mx1.example.test', priority: 10 },
      { exchange: 'mx2.example.test', priority: 20 },
    ],
  },
  cname: {
    'www.example.test': 'example.test',
    'alias.example.test': 'www.example.test',
  },
  ptr: {
    '192.0.2.25': 'mx1.example.test',
    '2001:db8::25': 'mx1.example.test',
  },
};

function resolverFor(server: DnsServer): Resolver {
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([server.address]);
  return resolver;
}

/** Asserts that `promise` rejects with this DNS error code (ENOTFOUND = NXDOMAIN, ENODATA = NODATA, ...). */
async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return true;
  });
}

/** Polls `server.log()` until it matches (dnsmasq writes its log from its event loop). */
async function waitForLog(server: DnsServer, re: RegExp, timeoutMs = 2000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const log = server.log();
    if (re.test(log)) return log;
    if (Date.now() > deadline) assert.fail(`log never matched ${re}:\n${log}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const sorted = <T>(values: T[]): T[] => [...values].sort();

describe('DNS harness: dnsmasq serving a test zone', () => {
  let server: DnsServer;
  let dns: Resolver;
  before(async () => {
    server = await startDns(zone);
    dns = resolverFor(server);
  });
  after(() => server?.stop());

  it('listens on a loopback address usable by Resolver.setServers', () => {
    assert.equal(server.host, '127.0.0.1');
    assert.equal(server.address, `127.0.0.1:${server.port}`);
    assert.ok(server.port > 0);
  });

  it('answers a DNSBL listing: A 127.0.0.2 with a TXT reason', async () => {
    assert.deepEqual(await dns.resolve4('2.0.0.127.bl.test'), ['127.0.0.2']);
    assert.deepEqual(await dns.resolveTxt('2.0.0.127.bl.test'), [[LISTED_REASON]]);
  });

  it('answers NXDOMAIN for an address that is not listed', async () => {
    await rejectsWith(dns.resolve4('1.0.0.127.bl.test'), 'ENOTFOUND');
    await rejectsWith(dns.resolveTxt('1.0.0.127.bl.test'), 'ENOTFOUND');
  });

  it('answers NODATA for a listed name asked for a type it does not have', async () => {
    await rejectsWith(dns.resolve6('2.0.0.127.bl.test'), 'ENODATA');
    await rejectsWith(dns.resolveMx('2.0.0.127.bl.test'), 'ENODATA');
  });

  it('answers an error-code list entry with 127.255.255.254', async () => {
    assert.deepEqual(await dns.resolve4('2.0.0.127.errors.test'), ['127.255.255.254']);
  });

  it('answers the IPv6 nibble name of ::ffff:7f00:2', async () => {
    assert.deepEqual(await dns.resolve4(IPV6_LISTED), ['127.0.0.2']);
    assert.deepEqual(await dns.resolveTxt(IPV6_LISTED), [[LISTED_REASON]]);
    await rejectsWith(dns.resolve4(IPV6_LISTED.replace(/^2/, '1')), 'ENOTFOUND');
  });

  it('serves SPF TXT records and their include chain', async () => {
    const top = (await dns.resolveTxt('example.test')).map((chunks) => chunks.join(''));
    assert.deepEqual(sorted(top), ['site-verification=abc123', 'v=spf1 mx include:_spf.example.test -all']);
    assert.deepEqual(await dns.resolveTxt('_spf.example.test'), [
      ['v=spf1 ip4:192.0.2.0/24 include:_spf2.example.test ~all'],
    ]);
    assert.deepEqual(await dns.resolveTxt('_spf2.example.test'), [['v=spf1 ip6:2001:db8::/32 -all']]);
    await rejectsWith(dns.resolveTxt('_spf3.example.test'), 'ENOTFOUND');
  });

  it('splits a TXT record longer than 255 bytes into character-strings', async () => {
    assert.ok(LONG_SPF.length > 255);
    const records = await dns.resolveTxt('long.example.test');
    assert.equal(records.length, 1);
    const [chunks = []] = records;
    assert.deepEqual(
      chunks.map((c) => c.length),
      [255, 255, LONG_SPF.length - 510],
    );
    assert.equal(chunks.join(''), LONG_SPF);
  });

  it('cuts character-strings between UTF-8 characters, not inside one', async () => {
    // node hands TXT bytes over as latin1 (one char per byte, nodejs/node#39398): decode them as UTF-8 here.
    const [chunks = []] = await dns.resolveTxt('utf8.example.test');
    const utf8 = chunks.map((chunk) => Buffer.from(chunk, 'latin1').toString('utf8'));
    assert.deepEqual(utf8, ['a'.repeat(254), 'é and more']);
    assert.equal(utf8.join(''), UTF8_EDGE);
  });

  it('keeps quotes, commas, backslashes, # and tabs in TXT text, and an empty TXT string', async () => {
    const records = await dns.resolveTxt('quirky.example.test');
    assert.deepEqual(sorted(records.map((chunks) => chunks.join(''))), ['', QUIRKY]);
  });

  it('serves an answer too big for UDP (over TCP)', async () => {
    const records = await dns.resolveTxt('big.example.test');
    assert.deepEqual(sorted(records.map((chunks) => chunks.join(''))), BIG);
  });

  it('serves MX records', async () => {
    const mx = await dns.resolveMx('example.test');
    assert.deepEqual(
      mx.sort((x, y) => x.priority - y.priority),
      [
        { exchange: 'mx1.example.test', priority: 10 },
        { exchange: 'mx2.example.test', priority: 20 },
      ],
    );
    assert.deepEqual(sorted(await dns.resolve4('mx2.example.test')), ['192.0.2.26', '192.0.2.27']);
  });

  it('serves AAAA records, including an IPv4-mapped address', async () => {
    assert.deepEqual(await dns.resolve6('mx1.example.test'), ['2001:db8::25']);
    assert.deepEqual(await dns.resolve6('mapped.example.test'), ['::ffff:192.0.2.25']);
    await rejectsWith(dns.resolve6('example.test'), 'ENODATA');
  });

  it('serves CNAMEs, followed to the target records', async () => {
    assert.deepEqual(await dns.resolveCname('www.example.test'), ['example.test']);
    assert.deepEqual(await dns.resolve4('www.example.test'), ['192.0.2.10']);
    assert.deepEqual(await dns.resolve4('alias.example.test'), ['192.0.2.10']);
    const mx = await dns.resolveMx('alias.example.test');
    assert.deepEqual(sorted(mx.map((r) => r.exchange)), ['mx1.example.test', 'mx2.example.test']);
  });

  it('serves PTR records for IPv4 and IPv6, and only those', async () => {
    assert.deepEqual(await dns.reverse('192.0.2.25'), ['mx1.example.test']);
    assert.deepEqual(await dns.reverse('2001:db8::25'), ['mx1.example.test']);
    // An address in an A record gets no PTR of its own (dnsmasq's host-record would have made one).
    await rejectsWith(dns.reverse('127.0.0.2'), 'ENOTFOUND');
    await rejectsWith(dns.reverse('192.0.2.10'), 'ENOTFOUND');
  });

  it('answers with the zone TTL', async () => {
    assert.deepEqual(await dns.resolve4('mx1.example.test', { ttl: true }), [
      { address: '192.0.2.25', ttl: 60 },
    ]);
    assert.deepEqual(await dns.resolve6('mx1.example.test', { ttl: true }), [
      { address: '2001:db8::25', ttl: 60 },
    ]);
  });

  it('answers NXDOMAIN for every other name', async () => {
    await rejectsWith(dns.resolve4('nothing.example.test'), 'ENOTFOUND');
    await rejectsWith(dns.resolveTxt('nothing.example.test'), 'ENOTFOUND');
    await rejectsWith(dns.resolveMx('nothing.test'), 'ENOTFOUND');
    await rejectsWith(dns.resolve4('sub.mx1.example.test'), 'ENOTFOUND');
  });

  it('forwards nothing: a public name is NXDOMAIN locally', async () => {
    await rejectsWith(dns.resolve4('example.com'), 'ENOTFOUND');
    await rejectsWith(dns.resolveMx('gmail.com'), 'ENOTFOUND');
    const log = await waitForLog(server, /config gmail\.com is NXDOMAIN/);
    assert.match(log, /query\[A\] example\.com from 127\.0\.0\.1/);
    assert.match(log, /config example\.com is NXDOMAIN/);
    assert.doesNotMatch(log, /forwarded|reply example\.com|reply gmail\.com/);
    for (const line of log.split('\n').filter((l) => /example\.com|gmail\.com/.test(l))) {
      assert.match(
        line,
        /: (query\[\w+\] (example|gmail)\.com from |config (example|gmail)\.com is NXDOMAIN)/,
      );
    }
  });

  it('logs the queries it answered', async () => {
    await dns.resolve4('2.0.0.127.bl.test');
    const log = await waitForLog(server, /config 2\.0\.0\.127\.bl\.test is <A>/);
    assert.match(log, /query\[A\] 2\.0\.0\.127\.bl\.test from 127\.0\.0\.1/);
  });
});

describe('DNS harness: zones dnsmasq cannot serve as written are refused', () => {
  it('refuses a CNAME towards a name the zone does not define', async () => {
    await assert.rejects(startDns({ cname: { 'a.test': 'elsewhere.test' } }), /only follows a CNAME/);
  });

  it('refuses a CNAME name that has other records', () => {
    assert.throws(
      () => dnsmasqRecords({ a: { 'a.test': ['192.0.2.1'] }, cname: { 'a.test': 'a.test' } }),
      /has a CNAME and other records/,
    );
  });

  it('refuses bad names and addresses, and a TXT record beyond dnsmasq line length', () => {
    assert.throws(() => dnsmasqRecords({ a: { 'bad name.test': ['192.0.2.1'] } }), /not a DNS name/);
    assert.throws(() => dnsmasqRecords({ a: { 'a.test': ['2001:db8::1'] } }), /not an IPv4 address/);
    assert.throws(() => dnsmasqRecords({ aaaa: { 'a.test': ['192.0.2.1'] } }), /not an IPv6 address/);
    assert.throws(() => dnsmasqRecords({ txt: { 'a.test': ['x'.repeat(1100)] } }), /too long for dnsmasq/);
  });
});

describe('DNS harness: a server that answers SERVFAIL', () => {
  let server: DnsServer;
  before(async () => {
    server = await startServfailDns();
  });
  after(() => server?.stop());

  it('makes every lookup fail with ESERVFAIL', async () => {
    const dns = resolverFor(server);
    await rejectsWith(dns.resolve4('2.0.0.127.bl.test'), 'ESERVFAIL');
    await rejectsWith(dns.resolveTxt('example.test'), 'ESERVFAIL');
    assert.match(server.log(), /query\[A\] 2\.0\.0\.127\.bl\.test from 127\.0\.0\.1#\d+/);
    assert.match(server.log(), /query\[TXT\] example\.test from /);
  });
});

describe('DNS harness: a server that never answers', () => {
  let server: DnsServer;
  before(async () => {
    server = await startSilentDns();
  });
  after(() => server?.stop());

  it('makes a lookup fail with ETIMEOUT after about the timeout', async () => {
    const dns = resolverFor(server);
    const started = Date.now();
    await rejectsWith(dns.resolve4('2.0.0.127.bl.test'), 'ETIMEOUT');
    // node checks c-ares timeouts on a timer ticking every min(timeout, 1000) ms, so a query gives up at the
    // first tick after its deadline: between 1 and 2 timeouts (about 1000 ms here, measured).
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 450 && elapsed < 1500, `timed out after ${elapsed} ms, expected 500..1000 ms`);
    assert.match(server.log(), /query\[A\] 2\.0\.0\.127\.bl\.test from 127\.0\.0\.1#\d+/);
  });
});
