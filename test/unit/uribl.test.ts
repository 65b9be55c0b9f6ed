import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DnsListHealth, selfTest } from '../../src/core/checks/dnsbl.js';
import type { MessageFacts, MessagePart } from '../../src/core/content.js';
import type { DnsAnswer, DnsResolver, DnsType } from '../../src/core/dns.js';
import type { LookupTable } from '../../src/core/ports.js';
import { createUriblScanner, uriblSchema, uriLists, urlNames } from '../../src/core/scanners/uribl.js';

function body(contentType: string, text: string, filename?: string): MessagePart {
  return { path: '1', depth: 0, contentType, size: text.length, text, ...(filename ? { filename } : {}) };
}

function message(...parts: MessagePart[]): MessageFacts {
  return {
    envelope: { sender: 'a@example.net', recipients: ['b@example.test'] },
    size: 1000,
    headers: [],
    parts,
    problems: [],
    limitsHit: false,
  };
}

/** Answers A queries from a table; anything else NXDOMAIN. Records every name asked. */
function resolver(records: Record<string, string[] | 'timeout'>): DnsResolver & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    query<T extends DnsType>(name: string): Promise<DnsAnswer<T>> {
      asked.push(name);
      const found = records[name];
      if (found === 'timeout')
        return Promise.resolve({ status: 'error', kind: 'timeout', reason: 't' } as DnsAnswer<T>);
      if (!found) return Promise.resolve({ status: 'nxdomain' } as DnsAnswer<T>);
      return Promise.resolve({ status: 'ok', records: found, ttl: 60 } as unknown as DnsAnswer<T>);
    },
  };
}

function table(name: string, keys: string[]): LookupTable {
  return {
    name,
    lookup: (query) =>
      Promise.resolve(
        keys.some((k) => query.value === k || query.value.endsWith(`.${k}`))
          ? { status: 'found', key: query.value, value: 'x' }
          : { status: 'notfound' },
      ),
  };
}

const signal = new AbortController().signal;
const settings = uriblSchema.parse({ lists: [{ zone: 'multi.uribl.test', name: 'uribl', weight: 4 }] });
const lists = uriLists(settings);

describe('urlNames', () => {
  it('takes registrable domains and public IPv4 hosts, in order, once each, from text and HTML bodies', () => {
    const names = urlNames(
      message(
        body(
          'text/plain',
          'see https://www.shop.example.co.uk/a and http://shop.example.co.uk/b, www.other.example.',
        ),
        body(
          'text/html',
          '<a href="http://93.184.216.34/x">x</a> <a href="https://10.1.2.3/">y</a> http://[2001:db8::1]/',
        ),
        body('text/plain', 'http://attached.example/', 'notes.txt'),
      ),
      20,
    );
    assert.deepEqual(names, ['example.co.uk', 'other.example', '93.184.216.34']);
  });

  it('stops at the bound', () => {
    const text = Array.from({ length: 50 }, (_, i) => `http://d${i}.example/`).join(' ');
    assert.equal(urlNames(message(body('text/plain', text)), 20).length, 20);
  });
});

describe('the uribl scanner', () => {
  const listed = {
    'spam.example.multi.uribl.test': ['127.0.0.2'],
    '34.216.184.93.multi.uribl.test': ['127.0.0.4'],
    'refused.example.multi.uribl.test': ['127.0.0.1'],
  };

  it('scores each listed domain by the list’s weight, asks nothing twice, and skips `skip` domains', async () => {
    const dns = resolver(listed);
    const scanner = createUriblScanner(settings, {
      dns: { resolver: dns, lists, health: new DnsListHealth(lists) },
      block: [],
      skip: [table('skip', ['mine.example'])],
    });
    const verdicts = await scanner.scan(
      message(
        body(
          'text/plain',
          'http://spam.example/ http://www.spam.example/ http://93.184.216.34/ http://mine.example/ http://refused.example/',
        ),
      ),
      { source: { size: 0, chunks: async function* () {} }, signal },
    );
    assert.deepEqual(
      verdicts.map((v) => [v.symbol, v.score, v.reason]),
      [['URIBL_LISTED', 8, 'listed by uribl: 93.184.216.34 (127.0.0.4), spam.example (127.0.0.2)']],
    );
    assert.deepEqual(dns.asked.sort(), [
      '34.216.184.93.multi.uribl.test',
      'refused.example.multi.uribl.test',
      'spam.example.multi.uribl.test',
    ]);
  });

  it('counts a local block map, reports a list that does not answer, and skips an unhealthy list', async () => {
    const health = new DnsListHealth(lists);
    const scanner = createUriblScanner(settings, {
      dns: { resolver: resolver({ 'slow.example.multi.uribl.test': 'timeout' }), lists, health },
      block: [table('block', ['bad.example'])],
      skip: [],
    });
    const ctx = { source: { size: 0, chunks: async function* () {} }, signal };
    const verdicts = await scanner.scan(
      message(body('text/plain', 'http://x.bad.example/ http://slow.example/')),
      ctx,
    );
    assert.deepEqual(
      verdicts.map((v) => `${v.symbol}:${v.score}`),
      ['URIBL_BLOCKED:5', 'URIBL_ERROR:0'],
    );
    const [list] = lists;
    assert.ok(list);
    health.record(list, 4, { ok: false, transient: false, reason: 'r', fix: 'f' });
    const later = await scanner.scan(message(body('text/plain', 'http://slow.example/')), ctx);
    assert.deepEqual(
      later.map((v) => v.symbol),
      ['URIBL_UNHEALTHY'],
    );
  });

  it('caps the score a list adds to one message', async () => {
    const many = Object.fromEntries(
      Array.from({ length: 5 }, (_, i) => [`s${i}.example.multi.uribl.test`, ['127.0.0.2']]),
    );
    const scanner = createUriblScanner(settings, {
      dns: { resolver: resolver(many), lists, health: new DnsListHealth(lists) },
      block: [],
      skip: [],
    });
    const text = Array.from({ length: 5 }, (_, i) => `http://s${i}.example/`).join(' ');
    const [verdict] = await scanner.scan(message(body('text/plain', text)), {
      source: { size: 0, chunks: async function* () {} },
      signal,
    });
    assert.equal(verdict?.score, settings.max_listed_score);
  });
});

describe('self-test of a URI list', () => {
  const [list] = lists;
  it('passes when the test domain is listed and invalid is not', async () => {
    assert.ok(list);
    const outcome = await selfTest(list, 4, resolver({ 'test.multi.uribl.test': ['127.0.0.2'] }));
    assert.deepEqual(outcome, { ok: true, transient: false });
  });

  it('fails when the list answers its test point with 127.0.0.1 (URIBL refusing the query)', async () => {
    assert.ok(list);
    const outcome = await selfTest(list, 4, resolver({ 'test.multi.uribl.test': ['127.0.0.1'] }));
    assert.equal(outcome.ok, false);
    assert.match(outcome.reason ?? '', /which none of its codes counts/);
  });

  it('fails when the list lists invalid too', async () => {
    assert.ok(list);
    const outcome = await selfTest(
      list,
      4,
      resolver({ 'test.multi.uribl.test': ['127.0.0.2'], 'invalid.multi.uribl.test': ['127.0.0.2'] }),
    );
    assert.match(outcome.reason ?? '', /lists invalid/);
  });
});
