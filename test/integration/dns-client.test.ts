/**
 * The DNS adapter (src/adapters/dns.ts) against real servers on loopback: a dnsmasq with a test zone, one that
 * never answers and one that answers SERVFAIL (test/harness/dns.ts). Shows the four outcomes, TTLs honoured
 * and clamped, negative and error caching, in-flight de-duplication, the LRU bound under 10 000 distinct
 * client addresses, the deadline and the in-flight bound with a dead resolver, and TXT answers larger than a
 * UDP packet.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DnsClient, type DnsClientOptions, type DnsQueryEvent } from '../../src/adapters/dns.js';
import { MailauthSpf } from '../../src/adapters/spf.js';
import { listQueryName } from '../../src/core/dns.js';
import { type DnsServer, startDns, startServfailDns, startSilentDns } from '../harness/dns.js';

const BIG = ['x', 'y', 'z'].map((c) => c.repeat(900));

function options(
  server: DnsServer,
  extra: Partial<DnsClientOptions> = {},
): DnsClientOptions & { events: DnsQueryEvent[] } {
  const events: DnsQueryEvent[] = [];
  return {
    servers: [server.address],
    timeoutMs: 500,
    tries: 1,
    maxInFlight: 100,
    cache: { maxEntries: 1000, maxTtlS: 3600, defaultTtlS: 300, negativeTtlS: 120, errorTtlS: 5 },
    onQuery: (event) => events.push(event),
    ...extra,
    events,
  };
}

const misses = (events: readonly DnsQueryEvent[]) => events.filter((e) => e.cache === 'miss').length;

describe('DnsClient against dnsmasq', () => {
  let dns: DnsServer;
  before(async () => {
    dns = await startDns({
      ttl: 60,
      a: { '2.0.0.127.bl.test': ['127.0.0.2'], 'host.example.test': ['192.0.2.10'] },
      txt: {
        '2.0.0.127.bl.test': ['listed'],
        'big.example.test': BIG,
        'example.test': ['v=spf1 -all'],
      },
      mx: { 'example.test': [{ exchange: 'host.example.test', priority: 10 }] },
    });
  });
  after(() => dns.stop());

  it('answers records, NXDOMAIN and NODATA as values', async () => {
    const client = new DnsClient(options(dns));
    assert.deepEqual(await client.query('2.0.0.127.bl.test', 'A'), { status: 'ok', records: ['127.0.0.2'] });
    assert.deepEqual(await client.query('1.0.0.127.bl.test', 'A'), { status: 'nxdomain' });
    assert.deepEqual(await client.query('example.test', 'A'), { status: 'nodata' });
    const mx = await client.query('example.test', 'MX');
    assert.deepEqual(mx, { status: 'ok', records: [{ exchange: 'host.example.test', priority: 10 }] });
  });

  it('caches an answer for its TTL, clamped by max_ttl_s, and a negative answer for negative_ttl_s', async () => {
    let now = 1_000_000;
    const opts = options(dns, {
      now: () => now,
      cache: { ...options(dns).cache, maxTtlS: 30, negativeTtlS: 10 },
    });
    const client = new DnsClient(opts);
    await client.query('host.example.test', 'A');
    await client.query('nothing.example.test', 'A');
    now += 9_000;
    await client.query('host.example.test', 'A');
    await client.query('nothing.example.test', 'A');
    assert.equal(misses(opts.events), 2, 'both from the cache within their times');
    now += 2_000; // 11 s: the negative answer expired, the positive (TTL 60 clamped to 30) has not
    await client.query('host.example.test', 'A');
    await client.query('nothing.example.test', 'A');
    assert.equal(misses(opts.events), 3);
    now += 20_000; // 31 s: past the clamp
    await client.query('host.example.test', 'A');
    assert.equal(misses(opts.events), 4);
  });

  it('joins concurrent queries for one name into one network query', async () => {
    const opts = options(dns);
    const client = new DnsClient(opts);
    const answers = await Promise.all(
      Array.from({ length: 50 }, () => client.query('2.0.0.127.bl.test', 'A')),
    );
    assert.ok(answers.every((a) => a.status === 'ok'));
    assert.equal(misses(opts.events), 1);
    assert.equal(opts.events.filter((e) => e.cache === 'shared').length, 49);
  });

  it('stays within max_entries under 10 000 distinct client addresses', async () => {
    const client = new DnsClient(
      options(dns, { maxInFlight: 20_000, cache: { ...options(dns).cache, maxEntries: 500 } }),
    );
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(
        Array.from({ length: 1000 }, (_, i) =>
          client.query(
            listQueryName(`198.51.${batch}.${i % 250}`, `z${Math.floor(i / 250)}.bl.test`) ?? '',
            'A',
          ),
        ),
      );
      assert.ok(client.cacheSize <= 500, `cache holds ${client.cacheSize}`);
    }
    assert.equal(client.inFlightCount, 0);
  });

  it('fetches a TXT answer larger than a UDP packet (over TCP), the strings of each record intact', async () => {
    const answer = await new DnsClient(options(dns)).query('big.example.test', 'TXT');
    assert.equal(answer.status, 'ok');
    if (answer.status === 'ok') assert.deepEqual(answer.records.map((r) => r.join('')).sort(), BIG);
  });
});

describe('SPF through the resolver (mailauth)', () => {
  let dns: DnsServer;
  before(async () => {
    dns = await startDns({ ttl: 60, txt: { 'spf.example.test': ['v=spf1 ip4:192.0.2.0/24 -all'] } });
  });
  after(() => dns.stop());

  it('evaluates pass and fail, and remembers a result for the same client and sender', async () => {
    const opts = options(dns);
    const spf = new MailauthSpf(new DnsClient(opts), 'mx.example.test');
    const signal = new AbortController().signal;
    const pass = await spf.evaluate(
      { ip: '192.0.2.7', sender: 'a@spf.example.test', helo: 'h.test' },
      signal,
    );
    assert.equal(pass.result, 'pass');
    const queries = opts.events.length;
    assert.deepEqual(
      await spf.evaluate({ ip: '192.0.2.7', sender: 'a@spf.example.test', helo: 'h.test' }, signal),
      pass,
    );
    assert.equal(opts.events.length, queries, 'the second evaluation asked nothing');
    const fail = await spf.evaluate(
      { ip: '198.51.100.7', sender: 'a@spf.example.test', helo: 'h.test' },
      signal,
    );
    assert.equal(fail.result, 'fail');
  });
});

describe('DnsClient against broken resolvers', () => {
  let silent: DnsServer;
  let servfail: DnsServer;
  before(async () => {
    silent = await startSilentDns();
    servfail = await startServfailDns();
  });
  after(async () => {
    await silent.stop();
    await servfail.stop();
  });

  it('a silent resolver: a timeout within the deadline, not cached', async () => {
    const opts = options(silent, { timeoutMs: 300 });
    const client = new DnsClient(opts);
    const started = performance.now();
    const answer = await client.query('2.0.0.127.bl.test', 'A');
    const ms = performance.now() - started;
    assert.equal(answer.status === 'error' && answer.kind, 'timeout');
    assert.ok(ms < 600, `took ${ms} ms`);
    await client.query('2.0.0.127.bl.test', 'A');
    assert.equal(misses(opts.events), 2, 'a timeout is asked again');
  });

  it('a silent resolver: past max_in_flight a query fails at once, and the bound frees up', async () => {
    const client = new DnsClient(options(silent, { timeoutMs: 300, maxInFlight: 5 }));
    const pending = Array.from({ length: 5 }, (_, i) => client.query(`n${i}.bl.test`, 'A'));
    const started = performance.now();
    const refused = await client.query('one-more.bl.test', 'A');
    assert.ok(performance.now() - started < 50);
    assert.equal(refused.status === 'error' && refused.kind, 'error');
    await Promise.all(pending);
    assert.equal(client.inFlightCount, 0);
  });

  it('the check deadline (an AbortSignal) ends the wait early', async () => {
    const client = new DnsClient(options(silent, { timeoutMs: 2000 }));
    const started = performance.now();
    const answer = await client.query('2.0.0.127.bl.test', 'A', AbortSignal.timeout(100));
    assert.equal(answer.status === 'error' && answer.kind, 'timeout');
    assert.ok(performance.now() - started < 500);
  });

  it('SERVFAIL is an error, kept for error_ttl_s so a storm is not passed on', async () => {
    const opts = options(servfail);
    const client = new DnsClient(opts);
    const answer = await client.query('2.0.0.127.bl.test', 'A');
    assert.equal(answer.status === 'error' && answer.kind, 'servfail');
    for (let i = 0; i < 20; i++) await client.query('2.0.0.127.bl.test', 'A');
    assert.equal(misses(opts.events), 1);
  });
});
