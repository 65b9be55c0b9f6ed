/**
 * The SPF and dns_sanity checks' pure logic, with in-memory ports (the integration test asks a real DNS server
 * through real Postfix): SPF headers, what rejects and what never does, one evaluation and one header per
 * message; sender domain existence, null MX, temporary failures, reverse DNS and HELO.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createDnsSanityCheck, dnsSanitySchema } from '../../src/core/checks/dns-sanity.js';
import {
  createSpfCheck,
  spfHeader,
  spfSchema,
  type SpfAnswer,
  type SpfEvaluator,
  type SpfResult,
} from '../../src/core/checks/spf.js';
import type { DnsAnswer, DnsResolver, DnsType } from '../../src/core/dns.js';
import { Locality } from '../../src/core/locality.js';
import { CheckDeadlines, newSession, runPipeline } from '../../src/core/pipeline.js';
import { toPolicyRequest } from '../../src/core/request.js';

const locality = new Locality({ localNetworks: [], localDomains: [] });
const signal = new CheckDeadlines().signal;
const request = (extra: Record<string, string> = {}) =>
  toPolicyRequest({
    request: 'smtpd_access_policy',
    protocol_state: 'RCPT',
    client_address: '192.0.2.9',
    client_name: 'mail.sender.test',
    reverse_client_name: 'mail.sender.test',
    helo_name: 'mail.sender.test',
    sender: 'alice@sender.test',
    recipient: 'bob@example.org',
    instance: 'a1',
    ...extra,
  });

describe('SPF headers', () => {
  const answer: SpfAnswer = {
    result: 'pass',
    comment: 'mx.example.org: domain of alice@sender.test designates it',
  };
  test('Received-SPF carries the RFC 7208 §9.1 key-value pairs, the address quoted', () =>
    assert.equal(
      spfHeader('received-spf', 'mx.example.org', request(), answer),
      'Received-SPF: pass (mx.example.org: domain of alice@sender.test designates it) client-ip=192.0.2.9; ' +
        'envelope-from="alice@sender.test"; helo=mail.sender.test; receiver=mx.example.org; identity=mailfrom;',
    ));
  test('the null sender is checked on HELO', () =>
    assert.match(
      spfHeader('received-spf', 'mx.example.org', request({ sender: '' }), answer),
      /envelope-from="<>"; .*identity=helo;$/,
    ));
  test('Authentication-Results names the ptype of the identity', () => {
    assert.equal(
      spfHeader('authentication-results', 'mx.example.org', request(), answer),
      'Authentication-Results: mx.example.org; spf=pass smtp.mailfrom="alice@sender.test"',
    );
    assert.equal(
      spfHeader('authentication-results', 'mx.example.org', request({ sender: '' }), answer),
      'Authentication-Results: mx.example.org; spf=pass smtp.helo=mail.sender.test',
    );
  });
  test('a comment cannot break out of its parentheses or grow without bound', () => {
    const header = spfHeader('received-spf', 'mx', request(), {
      result: 'fail',
      comment: `x) y ( z ${'a'.repeat(500)}`,
    });
    assert.ok(header.length < 400, `${header.length}`);
    assert.equal(header.split('(').length, 2);
    assert.equal(header.split(')').length, 2);
  });
});

function evaluator(result: SpfResult): SpfEvaluator & { calls: number } {
  return {
    calls: 0,
    evaluate() {
      this.calls += 1;
      return Promise.resolve({ result, comment: `result ${result}` });
    },
  };
}

describe('SPF check', () => {
  const settings = (extra: Record<string, unknown> = {}) => spfSchema.parse(extra);
  const rows: [SpfResult, Record<string, unknown>, string | undefined][] = [
    ['pass', {}, 'prepend'],
    ['fail', {}, 'prepend'],
    ['fail', { reject_fail: true }, 'reject'],
    ['softfail', { reject_fail: true }, 'prepend'],
    ['temperror', { reject_fail: true, reject_permerror: true }, 'prepend'],
    ['permerror', {}, 'prepend'],
    ['permerror', { reject_permerror: true }, 'reject'],
    ['neutral', { header: 'none' }, undefined],
  ];
  for (const [result, extra, action] of rows) {
    test(`${result} with ${JSON.stringify(extra)} → ${action ?? 'score only'}`, async () => {
      const check = createSpfCheck(settings(extra), 'mx.example.org', locality, evaluator(result));
      const [verdict] = await check.run(request(), { session: newSession(), score: 0, earlier: [], signal });
      assert.equal(verdict?.symbol, `SPF_${result.toUpperCase()}`);
      assert.equal(verdict?.action, action);
      if (action === 'reject' && result === 'fail') assert.equal(verdict?.reply?.dsn, '5.7.23');
    });
  }

  test('trusted clients and requests before MAIL FROM are not evaluated', async () => {
    const spf = evaluator('pass');
    const check = createSpfCheck(settings(), 'mx', locality, spf);
    const ctx = { session: newSession(), score: 0, earlier: [], signal };
    assert.deepEqual(await check.run(request({ sasl_username: 'alice' }), ctx), []);
    assert.deepEqual(await check.run(request({ protocol_state: 'EHLO' }), ctx), []);
    assert.equal(spf.calls, 0);
  });

  test('one evaluation and one header per message, however many recipients', async () => {
    const spf = evaluator('pass');
    const stages = [
      { check: createSpfCheck(settings(), 'mx', locality, spf), mode: 'enforce' as const, timeoutMs: 1000 },
    ];
    const session = newSession();
    const options = { onError: 'dunno' as const, rejectAt: 10 };
    const first = await runPipeline(stages, request(), session, options);
    assert.equal(first.action, 'prepend');
    session.headersSent.add('received-spf'); // what the policy face records when the header went out
    const second = await runPipeline(stages, request({ recipient: 'carol@example.org' }), session, options);
    assert.equal(second.action, 'dunno');
    assert.equal(spf.calls, 1);
  });
});

/** An in-memory resolver: `TYPE name` → answer; anything else NXDOMAIN. */
function resolverOf(answers: Record<string, DnsAnswer<DnsType>>): DnsResolver {
  return {
    query<T extends DnsType>(name: string, type: T): Promise<DnsAnswer<T>> {
      return Promise.resolve((answers[`${type} ${name}`] ?? { status: 'nxdomain' }) as DnsAnswer<T>);
    },
  };
}
const mx = (exchange: string): DnsAnswer<'MX'> => ({ status: 'ok', records: [{ exchange, priority: 10 }] });
const a: DnsAnswer<'A'> = { status: 'ok', records: ['192.0.2.1'] };
const nodata: DnsAnswer<DnsType> = { status: 'nodata' };
const servfail: DnsAnswer<DnsType> = { status: 'error', kind: 'servfail', reason: 'SERVFAIL' };

describe('dns_sanity', () => {
  const heloOk = { 'A mail.sender.test': a };
  const rows: [
    string,
    Record<string, DnsAnswer<DnsType>>,
    Record<string, string>,
    string[],
    string | undefined,
  ][] = [
    ['MX exists', { 'MX sender.test': mx('mx.sender.test'), ...heloOk }, {}, [], undefined],
    [
      'no MX, an A (implicit MX)',
      { 'MX sender.test': nodata, 'A sender.test': a, ...heloOk },
      {},
      [],
      undefined,
    ],
    ['NXDOMAIN', heloOk, {}, ['SENDER_DOMAIN_UNKNOWN'], 'reject'],
    [
      'exists, no MX/A/AAAA',
      { 'MX sender.test': nodata, ...heloOk },
      {},
      ['SENDER_DOMAIN_UNKNOWN'],
      'reject',
    ],
    ['null MX', { 'MX sender.test': mx('.'), ...heloOk }, {}, ['SENDER_DOMAIN_NULL_MX'], 'reject'],
    [
      'SERVFAIL defers, never rejects',
      { 'MX sender.test': servfail, ...heloOk },
      {},
      ['SENDER_DOMAIN_TEMPFAIL'],
      'defer_if_permit',
    ],
    ['null sender: no domain to check', heloOk, { sender: '' }, [], undefined],
    [
      'no PTR',
      { 'MX sender.test': mx('mx'), ...heloOk },
      { reverse_client_name: 'unknown', client_name: 'unknown' },
      ['CLIENT_RDNS_MISSING'],
      undefined,
    ],
    [
      'PTR not confirmed',
      { 'MX sender.test': mx('mx'), ...heloOk },
      { client_name: 'unknown' },
      ['CLIENT_RDNS_UNCONFIRMED'],
      undefined,
    ],
    ['HELO does not resolve', { 'MX sender.test': mx('mx') }, {}, ['HELO_UNRESOLVABLE'], undefined],
    [
      'HELO address literal is not looked up',
      { 'MX sender.test': mx('mx') },
      { helo_name: '[192.0.2.9]' },
      [],
      undefined,
    ],
  ];
  for (const [what, answers, extra, symbols, action] of rows) {
    test(what, async () => {
      const check = createDnsSanityCheck(dnsSanitySchema.parse({}), locality, resolverOf(answers));
      const verdicts = await check.run(request(extra), {
        session: newSession(),
        score: 0,
        earlier: [],
        signal,
      });
      assert.deepEqual(
        verdicts.map((v) => v.symbol),
        symbols,
      );
      assert.equal(verdicts.find((v) => v.action)?.action, action);
    });
  }
  test('a DNS failure says so in the reply, never that the domain was not found', async () => {
    const check = createDnsSanityCheck(
      dnsSanitySchema.parse({}),
      locality,
      resolverOf({ 'MX sender.test': servfail, ...heloOk }),
    );
    const [verdict] = await check.run(request(), { session: newSession(), score: 0, earlier: [], signal });
    assert.deepEqual(verdict?.reply, {
      code: 450,
      dsn: '4.1.8',
      text: 'Sender domain sender.test could not be verified (DNS lookup failed), try again later',
    });
  });
  test('sender_domain: score scores instead of rejecting', async () => {
    const check = createDnsSanityCheck(
      dnsSanitySchema.parse({ sender_domain: 'score' }),
      locality,
      resolverOf({ 'A mail.sender.test': a }),
    );
    const [verdict] = await check.run(request(), { session: newSession(), score: 0, earlier: [], signal });
    assert.equal(verdict?.action, undefined);
    assert.equal(verdict?.score, 5);
  });
});
