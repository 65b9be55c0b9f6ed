/**
 * The Bayesian classifier's maths and tokenizer, as tables: the chi-square survival function against its closed
 * forms, Robinson's token probability at its edges, Fisher combining on clear and mixed evidence, the probability
 * bands, and what the tokenizer makes of a message (tags, pairs, URLs, long runs, bounds).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MessageFacts } from '../../src/core/content.js';
import { bayesBand, bayesSchema } from '../../src/core/scanners/bayes.js';
import { chi2Q, classify, tokenKey, tokenProbability, type TokenCounts } from '../../src/core/spam/bayes.js';
import { htmlText, tokenize } from '../../src/core/spam/tokenize.js';

const close = (actual: number, expected: number, epsilon = 1e-9) =>
  assert.ok(Math.abs(actual - expected) < epsilon, `${actual} is not ${expected}`);

describe('chi2Q', () => {
  // For v = 2 and v = 4 the survival function has closed forms: e^(−x/2) and e^(−x/2)(1 + x/2).
  for (const x of [0, 0.5, 2, 7.3, 40]) {
    test(`Q(${x}, 2) = e^(−x/2)`, () => close(chi2Q(x, 2), Math.exp(-x / 2)));
    test(`Q(${x}, 4) = e^(−x/2)(1 + x/2)`, () => close(chi2Q(x, 4), Math.exp(-x / 2) * (1 + x / 2)));
  }
  test('never above 1', () => assert.equal(chi2Q(0.001, 300), 1));
});

describe('token probability (Robinson)', () => {
  const learned: TokenCounts = { spam: 100, ham: 100 };
  test('an unseen token is neutral', () => close(tokenProbability({ spam: 0, ham: 0 }, learned), 0.5));
  test('seen once in spam only: (1·0.5 + 1)/(1 + 1), leans spam, not certain', () =>
    close(tokenProbability({ spam: 1, ham: 0 }, learned), 0.75));
  test('seen 50 times in spam only: near 1', () =>
    assert.ok(tokenProbability({ spam: 50, ham: 0 }, learned) > 0.99));
  test('frequencies, not counts: 10 of 100 spam vs 10 of 1000 ham leans spam', () =>
    assert.ok(tokenProbability({ spam: 10, ham: 10 }, { spam: 100, ham: 1000 }) > 0.85));
  test('equally common in both: 0.5', () => close(tokenProbability({ spam: 20, ham: 20 }, learned), 0.5));
});

describe('classify (Fisher combining)', () => {
  const learned: TokenCounts = { spam: 1000, ham: 1000 };
  const many = (n: number, counts: TokenCounts, prefix: string) =>
    Array.from({ length: n }, (_, i) => [`${prefix}${i}`, counts] as const);
  test('strong spam evidence: near 1', () => {
    const result = classify(new Map(many(20, { spam: 200, ham: 1 }, 's')), learned);
    assert.ok(result.probability > 0.99, String(result.probability));
  });
  test('strong ham evidence: near 0', () => {
    const result = classify(new Map(many(20, { spam: 1, ham: 200 }, 'h')), learned);
    assert.ok(result.probability < 0.01, String(result.probability));
  });
  test('strong evidence both ways: unsure (near 0.5), not a confident guess', () => {
    const result = classify(
      new Map([...many(20, { spam: 200, ham: 1 }, 's'), ...many(20, { spam: 1, ham: 200 }, 'h')]),
      learned,
    );
    assert.ok(Math.abs(result.probability - 0.5) < 0.1, String(result.probability));
  });
  test('no clues: exactly 0.5', () => {
    assert.equal(classify(new Map(many(5, { spam: 10, ham: 10 }, 'n')), learned).probability, 0.5);
  });
  test('at most maxClues clues, most extreme first', () => {
    const result = classify(new Map(many(400, { spam: 30, ham: 1 }, 's')), learned, {
      strength: 0.45,
      minStrength: 0.1,
      maxClues: 150,
    });
    assert.equal(result.clues.length, 150);
  });
});

describe('bands', () => {
  const scores = bayesSchema.parse({}).scores;
  const rows: [number, string | undefined][] = [
    [0.001, 'BAYES_HAM_HIGH'],
    [0.1, 'BAYES_HAM'],
    [0.3, undefined],
    [0.5, 'BAYES_SPAM_LOW'],
    [0.85, 'BAYES_SPAM'],
    [0.995, 'BAYES_SPAM_HIGH'],
  ];
  for (const [p, symbol] of rows)
    test(`${p} → ${symbol ?? 'nothing'}`, () => assert.equal(bayesBand(p, scores)?.symbol, symbol));
});

function facts(
  headers: Record<string, string>,
  text?: string,
  html?: string,
  attachments: string[] = [],
): MessageFacts {
  return {
    envelope: { sender: 'a@example.net', recipients: ['b@example.org'] },
    size: 1000,
    headers: Object.entries(headers).map(([name, value]) => ({ name, value })),
    parts: [
      ...(text !== undefined
        ? [{ path: 'text', depth: 0, contentType: 'text/plain', size: text.length, text }]
        : []),
      ...(html !== undefined
        ? [{ path: 'html', depth: 0, contentType: 'text/html', size: html.length, text: html }]
        : []),
      ...attachments.map((filename, i) => ({
        path: String(i + 2),
        depth: 1,
        contentType: 'application/zip',
        filename,
        size: 10,
      })),
    ],
    problems: [],
    limitsHit: false,
  };
}

describe('tokenize', () => {
  const tokens = tokenize(
    facts(
      {
        Subject: 'Cheap Viagra NOW',
        From: 'Mister Sender <promo@deals.example.net>',
        'X-Mailer': 'BulkMailer 5.1',
      },
      'Buy cheap pills at https://www.pills.example.co.uk/shop/item?id=1 today. Supercalifragilisticexpialidociousness!',
      undefined,
      ['invoice.zip'],
    ),
  );
  const has = (token: string) => assert.ok(tokens.includes(token), `${token} not in ${tokens.join(' ')}`);
  test('subject words are tagged apart from body words', () => {
    has('s:cheap');
    has('cheap');
  });
  test('the sender domain and name words', () => {
    has('from:dom:deals.example.net');
    has('from:name:mister');
  });
  test('header facts', () => has('h:x-mailer:bulkmailer'));
  test('header fields: Received relays, networks and words, Message-ID, recipients, addresses, habits', () => {
    const headed = tokenize(
      facts({
        Received: 'from relay.example.org (relay.example.org [192.0.2.17]) by mx.example.com (Postfix)',
        'Return-Path': '<bounce-42@lists.example.net>',
        'Message-ID': '<20020905061252.874D51CE8C@mail.example.org>',
        To: 'a@example.com, b@sub.example.net',
        'Reply-To': 'x@example.org',
        'X-Priority': '1 (Highest)',
        'Content-Type': 'text/plain; charset="iso-8859-1"',
      }),
    );
    for (const token of [
      'rcvd:w:relay.example.org',
      'rcvd:w:mx.example.com',
      'rcvd:w:postfix',
      'addr:return-path:bounce-42@lists.example.net',
      'adom:return-path:lists.example.net',
      'adom:reply-to:example.org',
      'rcvd:net:192.0.2',
      'rcvd:dom:example.org',
      'mid:dom:example.org',
      'mid:shape:9.9a9a9a',
      'to:dom:example.com',
      'to:dom:example.net',
      'to:n:2',
      'rt:dom:example.org',
      'h:x-priority:1',
      'h:charset:iso-8859-1',
    ])
      assert.ok(headed.includes(token), `${token} not in ${headed.join(' ')}`);
    assert.ok(!headed.includes('rcvd:dom:example.com'), 'the receiving host (after "by") is not a relay');
    assert.ok(!headed.some((t) => t.startsWith('hn:')), 'which fields are present is not a token');
  });
  test('adjacent body words as pairs', () => has('cheap~pills'));
  test('with a text and an HTML part, the words of both; link text tagged', () => {
    const both = tokenize(
      facts(
        {},
        'Plain words only here',
        '<p>Markup words &amp; more</p><a href="http://x.example.com/">Claim <b>your</b> prize</a>',
      ),
    );
    for (const token of ['plain', 'markup', 'more', 'a:claim', 'a:your', 'a:prize'])
      assert.ok(both.includes(token), `${token} not in ${both.join(' ')}`);
    assert.ok(both.includes('plain~words'), 'pairs come from the text part');
    assert.ok(!both.includes('markup~words'), 'not from the HTML one');
  });
  test('URL host, registered part and first path segment', () => {
    has('url:www.pills.example.co.uk');
    has('url:example.co.uk');
    has('url:path:shop');
  });
  test('a run longer than 24 characters becomes a skip token', () => has('skip:s:3'));
  test('attachments by type and extension', () => {
    has('att:type:application/zip');
    has('att:ext:zip');
  });
  test('URL shape: scheme, path words, query, how many links', () => {
    for (const token of ['url:scheme:https', 'url:w:shop', 'url:w:item', 'url:query', 'url:n:1']) has(token);
    const odd = tokenize(
      facts({}, 'go to http://user@192.0.2.7:8080/a%20b/remove or mailto:x@example.org?subject=remove'),
    );
    for (const token of [
      'url:ip',
      'url:port',
      'url:userinfo',
      'url:pctenc',
      'url:w:remove',
      'url:scheme:mailto',
    ])
      assert.ok(odd.includes(token), `${token} not in ${odd.join(' ')}`);
    assert.ok(!odd.some((t) => t.startsWith('url:x@')), 'a mailto address is not a host');
  });
  test('MIME structure, sender shape, mailer words', () => {
    has('part:text/plain');
    has('part:application/zip');
    has('from:shape:named');
    has('from:local:a');
    has('hw:x-mailer:bulkmailer');
    has('hw:x-mailer:5.1');
  });
  test('subject and body shape', () => {
    const shaped = tokenize(
      facts(
        {
          Subject: 'Save $500 on TONER now!!          ab12cd',
          Received: 'from relay (unknown [192.0.2.1]) by mx.example.com with ESMTP id 1',
          'Content-Type': 'multipart/alternative; boundary="----=_NextPart_000_0007_01C25C9E.2A5B8E40"',
          'Content-Transfer-Encoding': '7bit',
        },
        'ONLY TODAY YOU SAVE $500\n> quoted\nbye',
      ),
    );
    for (const token of [
      's:upper:toner',
      's:bang:2',
      's:money',
      's:spaces',
      's:tailid',
      'body:money',
      'body:lines:2',
      'body:quote',
      'body:capsrun',
      'rcvd:with:esmtp',
      'rcvd:unknown',
      'boundary:----=_a_9_9_9a9a9a.9a9a9',
      'cte:7bit',
    ])
      assert.ok(shaped.includes(token), `${token} not in ${shaped.join(' ')}`);
    has('body:noquote');
  });
  test('HTML only: read as text, scripts and styles dropped', () => {
    const html = tokenize(
      facts(
        {},
        undefined,
        '<style>.x{}</style><p>Hello&nbsp;friend <b>winner</b></p><script>evil()</script>',
      ),
    );
    assert.ok(html.includes('winner') && html.includes('friend'));
    assert.ok(!html.includes('evil'));
  });
  test('bounded: 100 000 words give at most maxTokens tokens, quickly', () => {
    const text = Array.from({ length: 100_000 }, (_, i) => `word${i}`).join(' ');
    const started = performance.now();
    const many = tokenize(facts({}, text), { maxWords: 20_000, maxTokens: 3000 });
    assert.equal(many.length, 3000);
    assert.ok(performance.now() - started < 2000);
  });
  test('bounded: pathological link markup (unclosed links, links of 100 000 words) stays within maxTokens', () => {
    const unclosed = `${'<a href="x" '.repeat(20_000)}>`.repeat(5);
    const wordy = `<a href="x">${Array.from({ length: 100_000 }, (_, i) => `w${i}x`).join(' ')}</a>`;
    for (const html of [unclosed, wordy, '<a>'.repeat(100_000)]) {
      const tokens = tokenize(facts({}, 'text part', html), { maxWords: 20_000, maxTokens: 3000 });
      assert.ok(tokens.length <= 3000 && tokens.includes('text'), `${tokens.length} tokens`);
    }
  });
  test('entities decode', () => assert.equal(htmlText('a&amp;b &#65;&#x42;').trim(), 'a&b AB'));
  test('token keys are short and stable', () => {
    assert.equal(tokenKey('viagra'), tokenKey('viagra'));
    assert.equal(tokenKey('viagra').length, 16);
    assert.notEqual(tokenKey('viagra'), tokenKey('Viagra'));
  });
});
