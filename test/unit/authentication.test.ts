import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { scanMessage, type HeaderField, type MessageFacts } from '../../src/core/content.js';
import {
  authenticationResults,
  authenticationSchema,
  createAuthenticationScanner,
  MAX_DKIM_SIGNATURES,
  verdictsOf,
  type AuthReport,
  type MessageAuthenticator,
} from '../../src/core/scanners/authentication.js';
import { ownHeaderFields } from '../../src/filter/service.js';

const settings = authenticationSchema.parse({});

const signed = (result: 'pass' | 'fail' | 'temperror', domain = 'example.net') => ({
  result,
  domain,
  selector: 's1',
  signaturePrefix: 'AbCd+/12xyz',
  aligned: true,
});

function symbols(report: AuthReport): string[] {
  return verdictsOf(settings, report).map((v) => `${v.symbol}:${v.score}`);
}

function facts(headers: HeaderField[] = []): MessageFacts {
  return {
    envelope: { sender: 'a@example.net', recipients: ['b@example.test'] },
    size: 100,
    headers,
    parts: [],
    problems: [],
    limitsHit: false,
  };
}

const source = { size: 0, chunks: async function* () {} };

describe('authentication verdicts', () => {
  it('scores a valid signature and a DMARC pass a little down', () => {
    const report: AuthReport = {
      dkim: [signed('pass')],
      dmarc: { result: 'pass', policy: 'reject', fromDomain: 'example.net' },
    };
    assert.deepEqual(symbols(report), ['DKIM_VALID:-0.2', 'DMARC_PASS:-0.5']);
  });

  it('scores signatures that all fail, but not a temporary DNS failure', () => {
    assert.deepEqual(symbols({ dkim: [signed('fail'), signed('fail', 'esp.example')] }), ['DKIM_INVALID:1']);
    assert.deepEqual(symbols({ dkim: [signed('fail'), signed('temperror')] }), []);
    assert.deepEqual(symbols({ dkim: [signed('fail'), signed('pass')] }), ['DKIM_VALID:-0.2']);
    assert.deepEqual(symbols({ dkim: [] }), []);
  });

  it('weighs a DMARC failure by the domain’s policy, and a passing ARC chain as policy none', () => {
    const fail = (policy: 'reject' | 'quarantine' | 'none') => ({
      dkim: [],
      dmarc: { result: 'fail' as const, policy, fromDomain: 'bank.example' },
    });
    assert.deepEqual(symbols(fail('reject')), ['DMARC_REJECT:6']);
    assert.deepEqual(symbols(fail('quarantine')), ['DMARC_QUARANTINE:3']);
    assert.deepEqual(symbols(fail('none')), ['DMARC_NONE:0.5']);
    assert.deepEqual(symbols({ ...fail('reject'), arc: { result: 'pass' } }), ['DMARC_NONE:0.5']);
    assert.deepEqual(
      symbols({ dkim: [], dmarc: { result: 'temperror', policy: 'reject', fromDomain: 'bank.example' } }),
      [],
    );
  });

  it('scores SPF fail and softfail', () => {
    const spf = (result: 'fail' | 'softfail' | 'pass') => ({
      dkim: [],
      spf: { result, mailfrom: 'a@b.example', helo: 'h' },
    });
    assert.deepEqual(symbols(spf('fail')), ['SPF_FAIL:1']);
    assert.deepEqual(symbols(spf('softfail')), ['SPF_SOFTFAIL:0.5']);
    assert.deepEqual(symbols(spf('pass')), []);
  });
});

describe('Authentication-Results', () => {
  it('names every result under our authserv-id, one per folded line', () => {
    const value = authenticationResults('mx.example.org', {
      dkim: [signed('pass')],
      spf: { result: 'pass', mailfrom: 'a@example.net', helo: 'mail.example.net' },
      arc: { result: 'none' },
      dmarc: { result: 'pass', policy: 'none', fromDomain: 'example.net' },
    });
    assert.equal(
      value,
      'mx.example.org;\r\n\tdkim=pass header.d=example.net header.s=s1 header.b=AbCd+/12;\r\n\t' +
        'spf=pass smtp.mailfrom=a@example.net;\r\n\tarc=none;\r\n\tdmarc=pass (p=none) header.from=example.net',
    );
  });

  it('says dkim=none for an unsigned message and uses the HELO name for the null sender', () => {
    assert.equal(
      authenticationResults('mx', { dkim: [], spf: { result: 'none', mailfrom: '', helo: 'h.example' } }),
      'mx;\r\n\tdkim=none;\r\n\tspf=none smtp.helo=h.example',
    );
  });

  it('cannot be extended by what a sender writes into a signature', () => {
    const value = authenticationResults('mx', {
      dkim: [
        { ...signed('fail', 'evil.example\r\nX-Spam-Flag: NO'), selector: 'a;b (c)', comment: 'x)\r\ny' },
      ],
    });
    assert.doesNotMatch(value, /\r\nX-Spam/);
    assert.match(value, /header\.d="evil\.example X-Spam-Flag: NO" header\.s="a;b \(c\)"/);
    assert.match(value, /dkim=fail \(x y\)/);
  });
});

describe('the authentication scanner', () => {
  const report: AuthReport = { dkim: [signed('pass')] };
  const authenticator: MessageAuthenticator = { authenticate: () => Promise.resolve(report) };
  const scanner = createAuthenticationScanner(settings, authenticator, 'mx.example.org');

  it('adds its header field in enforce mode only', async () => {
    for (const mode of ['enforce', 'observe'] as const) {
      const decision = await scanMessage(
        [{ scanner, mode, timeoutMs: 1000, onFailure: 'pass' }],
        facts(),
        source,
      );
      assert.deepEqual(
        decision.headers.map((h) => h.name),
        mode === 'enforce' ? ['Authentication-Results'] : [],
      );
      assert.deepEqual(
        decision.verdicts.map((v) => v.symbol),
        ['DKIM_VALID'],
      );
    }
  });

  it(`does not verify more than ${MAX_DKIM_SIGNATURES} signatures`, async () => {
    let asked = false;
    const counting = createAuthenticationScanner(
      settings,
      { authenticate: () => ((asked = true), Promise.resolve(report)) },
      'mx',
    );
    const many = Array.from({ length: MAX_DKIM_SIGNATURES + 1 }, () => ({
      name: 'DKIM-Signature',
      value: 'v=1',
    }));
    const verdicts = await counting.scan(facts(many), { source, signal: new AbortController().signal });
    assert.equal(asked, false);
    assert.deepEqual(
      verdicts.map((v) => v.symbol),
      ['DKIM_INVALID'],
    );
  });
});

describe('ownHeaderFields', () => {
  const drop = ownHeaderFields('MX.example.org');
  it('drops our own fields and Authentication-Results claiming our authserv-id, any case, after comments', () => {
    assert.equal(
      drop('x-spam-flag', () => ' NO'),
      true,
    );
    assert.equal(
      drop('authentication-results', () => ' mx.example.org; dkim=pass'),
      true,
    );
    assert.equal(
      drop('authentication-results', () => ' (c) mx.EXAMPLE.org 1; none'),
      true,
    );
    assert.equal(
      drop('authentication-results', () => ' relay.example.net; spf=pass'),
      false,
    );
    assert.equal(
      drop('authentication-results', () => ' mx.example.org.evil; none'),
      false,
    );
    assert.equal(
      drop('subject', () => ' mx.example.org'),
      false,
    );
  });
});
