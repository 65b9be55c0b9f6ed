/**
 * The doctor's pure judgments, as tables: postconf output read into parameters, services, restriction lists and
 * endpoints; the policy service's place against relay control (main.cf and master.cf overrides); content_filter,
 * the re-injection smtpd, receive_override_options and mynetworks; the relay probe's reading; DNS list
 * self-test outcomes; clock; following a message through Postfix's log; exit codes and the two output forms.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { dnsblSchema, dnsLists, type DnsList } from '../../src/core/checks/dnsbl.js';
import { judgeNtp, judgeSkew } from '../../src/doctor/clock.js';
import { judgeList } from '../../src/doctor/dns-lists.js';
import { followLog, judgeE2e, queuedAs, settled } from '../../src/doctor/e2e.js';
import { exitCodeOf, type Finding, finding, ok, toJson, toTable } from '../../src/doctor/finding.js';
import { judgeBanner } from '../../src/doctor/listeners.js';
import {
  expand,
  inetServiceEndpoint,
  listElements,
  parseNexthop,
  parseParameters,
  parseServices,
  type PostfixConfig,
  postfixEndpoint,
  restrictions,
  sameEndpoint,
} from '../../src/doctor/postfix-config.js';
import { judgeRelay, outsideAddress, relayTricks } from '../../src/doctor/relay.js';
import {
  judgeContentFilter,
  judgeNetworks,
  judgePolicyOrder,
  judgeReinject,
  type WiringSettings,
} from '../../src/doctor/wiring.js';

const SETTINGS: WiringSettings = {
  policyListen: ['127.0.0.1:10060'],
  filter: { enabled: true, mode: 'after_queue', listen: '127.0.0.1:10061', reinject: '127.0.0.1:10062' },
  localNetworks: ['127.0.0.0/8'],
};

const MASTER = `smtp      inet  n       -       y       -       -       smtpd
submission inet n       -       y       -       -       smtpd -o syslog_name=postfix/submission -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
scan       unix  -       -       n       -       10      smtp -o syslog_name=postfix/scan
127.0.0.1:10062 inet n   -       n       -       10      smtpd -o content_filter= -o smtpd_recipient_restrictions=permit_mynetworks,reject`;
const OVERRIDES = `submission/inet/syslog_name = postfix/submission
submission/inet/smtpd_recipient_restrictions = permit_sasl_authenticated,reject
scan/unix/syslog_name = postfix/scan
127.0.0.1:10062/inet/content_filter =
127.0.0.1:10062/inet/smtpd_recipient_restrictions = permit_mynetworks,reject`;

const WELL_WIRED = {
  queue_directory: '/var/spool/postfix',
  mynetworks: '127.0.0.0/8 [::1]/128',
  smtpd_relay_restrictions: 'permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination',
  smtpd_recipient_restrictions:
    'check_policy_service { inet:127.0.0.1:10060, timeout=10s, { default_action = 451 4.3.5 x } }',
  content_filter: 'scan:[127.0.0.1]:10061',
  receive_override_options: 'no_address_mappings',
};

function postfix(main: Record<string, string>, master = MASTER, overrides = OVERRIDES): PostfixConfig {
  const text = Object.entries(main)
    .map(([k, v]) => `${k} = ${v}`)
    .join('\n');
  return { main: parseParameters(text), services: parseServices(master, overrides) };
}

const severities = (findings: readonly Finding[], check: string) =>
  findings.filter((f) => f.check === check).map((f) => f.severity);

describe('reading postconf output', () => {
  test('parameters, services with their overrides, $name expansion', () => {
    const pf = postfix({ a: 'x', b: '' });
    assert.equal(pf.main.get('b'), '');
    assert.deepEqual(
      pf.services.map((s) => [s.name, s.type, s.command]),
      [
        ['smtp', 'inet', 'smtpd'],
        ['submission', 'inet', 'smtpd'],
        ['scan', 'unix', 'smtp'],
        ['127.0.0.1:10062', 'inet', 'smtpd'],
      ],
    );
    assert.equal(pf.services[3]?.overrides.get('content_filter'), '');
    assert.equal(expand('$a, ${a} and $(a) but $nosuch', pf.main), 'x, x and x but $nosuch');
  });

  test('lists split at commas and blanks; a { } group is one element; arguments are taken', () => {
    assert.deepEqual(listElements('a, b  c,{ d, e }'), ['a', 'b', 'c', '{ d, e }']);
    assert.deepEqual(restrictions(WELL_WIRED.smtpd_recipient_restrictions), [
      { name: 'check_policy_service', argument: 'inet:127.0.0.1:10060' },
    ]);
    assert.deepEqual(restrictions('permit_mynetworks, check_client_access hash:/x, reject'), [
      { name: 'permit_mynetworks' },
      { name: 'check_client_access', argument: 'hash:/x' },
      { name: 'reject' },
    ]);
  });

  test('endpoints: Postfix and postwarden spellings, loopback names, unix paths under the queue directory', () => {
    const table: [string, string, boolean][] = [
      ['inet:127.0.0.1:10060', '127.0.0.1:10060', true],
      ['inet:localhost:10060', '127.0.0.1:10060', true],
      ['inet:127.0.0.1:10060', '0.0.0.0:10060', true],
      ['inet:127.0.0.1:10061', '127.0.0.1:10060', false],
      ['inet:192.0.2.1:10060', '127.0.0.1:10060', false],
      ['unix:private/policy', 'unix:/var/spool/postfix/private/policy', true],
      ['private/policy', 'unix:/var/spool/postfix/private/policy', true],
      ['unix:private/other', 'unix:/var/spool/postfix/private/policy', false],
    ];
    for (const [postfixSide, listen, same] of table) {
      const a = postfixEndpoint(postfixSide, '/var/spool/postfix');
      const b = postfixEndpoint(listen.startsWith('unix:') ? listen : `inet:${listen}`, '/');
      assert.ok(a && b, postfixSide);
      assert.equal(sameEndpoint(a, b), same, `${postfixSide} vs ${listen}`);
    }
    assert.deepEqual(parseNexthop('scan:[127.0.0.1]:10061'), {
      transport: 'scan',
      endpoint: { kind: 'inet', host: '127.0.0.1', port: 10061 },
    });
    assert.deepEqual(parseNexthop('amavis:[127.0.0.1]:10024')?.endpoint?.kind, 'inet');
    assert.deepEqual(inetServiceEndpoint('smtp'), { host: '127.0.0.1', port: 25 });
    assert.deepEqual(inetServiceEndpoint('127.0.0.1:2525'), { host: '127.0.0.1', port: 2525 });
    assert.deepEqual(inetServiceEndpoint('2525'), { host: '127.0.0.1', port: 2525 });
  });
});

describe('the policy service after relay control', () => {
  const cases: [string, Record<string, string>, Record<string, string[]>][] = [
    ['well wired', {}, { 'relay-gate': ['ok'], 'policy-order': ['ok', 'info'] }],
    [
      'in smtpd_relay_restrictions before the gate',
      {
        smtpd_relay_restrictions:
          'permit_mynetworks, check_policy_service inet:127.0.0.1:10060, reject_unauth_destination',
        smtpd_recipient_restrictions: '',
      },
      { 'relay-gate': ['ok'], 'policy-order': ['error'] },
    ],
    [
      'legacy: no relay restrictions, policy first in recipient restrictions',
      {
        smtpd_relay_restrictions: '',
        smtpd_recipient_restrictions:
          'check_policy_service inet:127.0.0.1:10060, permit_mynetworks, reject_unauth_destination',
      },
      { 'relay-gate': ['ok'], 'policy-order': ['error', 'info'] },
    ],
    [
      'legacy, in the right order',
      {
        smtpd_relay_restrictions: '',
        smtpd_recipient_restrictions:
          'permit_mynetworks, reject_unauth_destination, check_policy_service inet:127.0.0.1:10060',
      },
      { 'relay-gate': ['ok'], 'policy-order': ['ok', 'info'] },
    ],
    [
      'asked in smtpd_client_restrictions',
      {
        smtpd_client_restrictions: 'check_policy_service inet:127.0.0.1:10060',
        smtpd_recipient_restrictions: '',
      },
      { 'policy-order': ['error'] },
    ],
    [
      "Debian's defer_unauth_destination",
      { smtpd_relay_restrictions: 'permit_mynetworks, defer_unauth_destination' },
      { 'relay-gate': ['info'], 'policy-order': ['ok', 'info'] },
    ],
    [
      'a bare permit before the gate',
      { smtpd_relay_restrictions: 'permit, reject_unauth_destination' },
      { 'relay-gate': ['error'] },
    ],
    [
      'never asked (only another policy service)',
      { smtpd_recipient_restrictions: 'check_policy_service inet:127.0.0.1:10023' },
      { 'policy-order': ['error', 'info'] },
    ],
    [
      'at end of data only: after the gate',
      {
        smtpd_recipient_restrictions: '',
        smtpd_end_of_data_restrictions: 'check_policy_service inet:127.0.0.1:10060',
      },
      { 'policy-order': ['ok'] },
    ],
  ];
  for (const [name, main, expected] of cases) {
    test(name, () => {
      const findings = judgePolicyOrder(postfix({ ...WELL_WIRED, ...main }), SETTINGS);
      for (const [check, want] of Object.entries(expected)) {
        assert.deepEqual(severities(findings, check), want, `${check}: ${JSON.stringify(findings)}`);
      }
    });
  }

  test('a submission service that asks the policy before its own gate is an error; the re-injection smtpd is left alone', () => {
    const master = `${MASTER.split('\n')[0]}\nsubmission inet n - y - - smtpd -o smtpd_relay_restrictions=check_policy_service,inet:127.0.0.1:10060,permit_sasl_authenticated,reject`;
    const overrides =
      'submission/inet/smtpd_relay_restrictions = check_policy_service inet:127.0.0.1:10060, permit_sasl_authenticated, reject_unauth_destination';
    const findings = judgePolicyOrder(postfix(WELL_WIRED, master, overrides), SETTINGS);
    const bad = findings.find((f) => f.severity === 'error');
    assert.match(
      bad?.summary ?? '',
      /^master\.cf submission: the policy service is asked before relay control/,
    );
    assert.ok(!findings.some((f) => f.summary.includes('10062')));
  });

  test('a policy service name from main.cf ($postwarden_policy) is expanded in an override', () => {
    const master = `${MASTER.split('\n')[0]}\nsubmission inet n - y - - smtpd -o smtpd_recipient_restrictions=$postwarden_policy`;
    const overrides = 'submission/inet/smtpd_recipient_restrictions = $postwarden_policy';
    const findings = judgePolicyOrder(
      postfix(
        { ...WELL_WIRED, postwarden_policy: 'check_policy_service inet:127.0.0.1:10060' },
        master,
        overrides,
      ),
      SETTINGS,
    );
    assert.deepEqual(severities(findings, 'policy-order'), ['ok', 'ok']);
  });
});

describe('content filter, re-injection, networks', () => {
  const table: [
    string,
    Record<string, string>,
    Partial<WiringSettings['filter']>,
    Record<string, string[]>,
  ][] = [
    ['well wired', {}, {}, { 'content-filter': ['ok'], 'receive-override': ['ok'], reinject: ['ok'] }],
    ['content_filter empty', { content_filter: '' }, {}, { 'content-filter': ['error'] }],
    [
      'amavisd-new has it',
      { content_filter: 'amavis:[127.0.0.1]:10024' },
      {},
      { 'content-filter': ['error'] },
    ],
    [
      'a transport master.cf lacks',
      { content_filter: 'nosuch:[127.0.0.1]:10061' },
      {},
      { 'content-filter': ['error'] },
    ],
    ['no no_address_mappings', { receive_override_options: '' }, {}, { 'receive-override': ['warning'] }],
    ['pointing at a disabled filter', {}, { enabled: false }, { 'content-filter': ['error'], reinject: [] }],
    [
      'filter off, content_filter elsewhere',
      { content_filter: '' },
      { enabled: false },
      { 'content-filter': ['info'] },
    ],
    [
      'no re-injection smtpd on filter.reinject',
      {},
      { reinject: '127.0.0.1:10099' },
      { reinject: ['error'] },
    ],
  ];
  for (const [name, main, filter, expected] of table) {
    test(name, () => {
      const settings = { ...SETTINGS, filter: { ...SETTINGS.filter, ...filter } };
      const pf = postfix({ ...WELL_WIRED, ...main });
      const findings = [...judgeContentFilter(pf, settings), ...judgeReinject(pf, settings)];
      for (const [check, want] of Object.entries(expected)) {
        assert.deepEqual(severities(findings, check), want, `${check}: ${JSON.stringify(findings)}`);
      }
    });
  }

  test('a re-injection smtpd that keeps content_filter loops', () => {
    const master = MASTER.replace(' -o content_filter=', '');
    const overrides = OVERRIDES.replace('127.0.0.1:10062/inet/content_filter =\n', '');
    const [f] = judgeReinject(postfix(WELL_WIRED, master, overrides), SETTINGS);
    assert.equal(f?.severity, 'error');
    assert.match(f?.summary ?? '', /a loop/);
    assert.match(f?.fix ?? '', /postconf -P '127\.0\.0\.1:10062\/inet\/content_filter='/);
  });

  test('a public smtpd that clears content_filter skips the scan', () => {
    const master = `${MASTER}\nsubmission2 inet n - y - - smtpd -o content_filter=`;
    const overrides = `${OVERRIDES}\nsubmission2/inet/content_filter =`;
    const findings = judgeContentFilter(postfix(WELL_WIRED, master, overrides), SETTINGS);
    assert.ok(
      findings.some((f) => f.severity === 'warning' && /submission2 clears content_filter/.test(f.summary)),
    );
  });

  const networks: [string, string, string][] = [
    ['127.0.0.0/8 [::1]/128 10.0.0.0/8', 'ok', ''],
    ['127.0.0.0/8 0.0.0.0/0', 'error', '0.0.0.0/0'],
    ['[::]/0', 'error', '[::]/0'],
    ['1.0.0.0/4', 'warning', '1.0.0.0/4'],
    ['hash:/etc/postfix/network_table', 'ok', ''],
  ];
  for (const [mynetworks, severity, named] of networks) {
    test(`mynetworks = ${mynetworks}: ${severity}`, () => {
      const [f] = judgeNetworks(postfix({ mynetworks }), { ...SETTINGS, localNetworks: [] });
      assert.equal(f?.severity, severity);
      assert.ok(f?.summary.includes(named));
    });
  }
});

describe('open relay', () => {
  test('the tricks name a remote domain that is never local', () => {
    const tricks = relayTricks('example.org');
    assert.equal(tricks.length, 9);
    assert.deepEqual(
      tricks.slice(0, 6).map((t) => t.rcpt),
      [
        'postwarden-relay-probe@relay-test.invalid',
        'postwarden-relay-probe%relay-test.invalid@example.org',
        'relay-test.invalid!postwarden-relay-probe@example.org',
        '"postwarden-relay-probe@relay-test.invalid"@example.org',
        '@example.org:postwarden-relay-probe@relay-test.invalid',
        'postwarden-relay-probe@relay-test.invalid@example.org',
      ],
    );
  });

  test('the outside address avoids trusted networks, except absurdly wide ones', () => {
    assert.equal(outsideAddress(['127.0.0.0/8']), '192.0.2.77');
    assert.equal(outsideAddress(['192.0.2.0/24']), '198.51.100.77');
    assert.equal(outsideAddress(['192.0.2.77', '198.51.100.0/24']), '203.0.113.77');
    assert.equal(outsideAddress(['0.0.0.0/0']), '192.0.2.77');
    assert.equal(outsideAddress(['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24']), undefined);
  });

  test('a 250 names its trick; all refused is ok; no XCLIENT proves nothing', () => {
    const [plain, percent] = relayTricks('example.org');
    assert.ok(plain && percent);
    const open = judgeRelay('127.0.0.1:25', {
      kind: 'done',
      client: '192.0.2.77',
      results: [
        { trick: plain, code: 554, reply: '554 5.7.1 Relay access denied' },
        { trick: percent, code: 250, reply: '250 2.1.5 Ok' },
      ],
    });
    assert.equal(open.length, 1);
    assert.equal(open[0]?.severity, 'error');
    assert.match(open[0]?.summary ?? '', /OPEN RELAY: .* accepted the percent hack/);
    const closed = judgeRelay('127.0.0.1:25', {
      kind: 'done',
      client: '192.0.2.77',
      results: [{ trick: plain, code: 451, reply: '451 4.3.5 try later' }],
    });
    assert.equal(closed[0]?.severity, 'ok');
    assert.equal(judgeRelay('x', { kind: 'no-xclient', greeting: '220 x' })[0]?.severity, 'warning');
    const down = judgeRelay('x', { kind: 'unreachable', reason: 'ECONNREFUSED' })[0];
    assert.equal(down?.unreachable, true);
  });
});

describe('DNS lists, clock, listeners', () => {
  const [list] = dnsLists(dnsblSchema.parse({ lists: [{ zone: 'bl.test' }] })) as [DnsList];
  test('self-test outcomes', () => {
    assert.equal(judgeList(list, 4, { ok: true, transient: false }).severity, 'ok');
    const all = judgeList(list, 4, {
      ok: false,
      transient: false,
      reason: 'lists 127.0.0.1',
      fix: 'remove it',
    });
    assert.equal(all.severity, 'error');
    assert.equal(all.fix, 'remove it');
    assert.equal(judgeList(list, 4, { ok: false, transient: true, reason: 'no answer' }).severity, 'warning');
  });

  test('clock', () => {
    assert.equal(judgeNtp('yes').severity, 'ok');
    assert.equal(judgeNtp('no').severity, 'warning');
    assert.equal(judgeNtp({ unavailable: 'no timedatectl' }).severity, 'info');
    assert.equal(judgeSkew('Redis', 150).severity, 'ok');
    assert.equal(judgeSkew('Redis', -5000).severity, 'warning');
    assert.match(judgeSkew('Redis', -5000).summary, /5000 ms behind Redis/);
    assert.equal(judgeSkew('Redis', 120_000).severity, 'error');
  });

  test('banners', () => {
    const fix = 'start it';
    assert.equal(
      judgeBanner('f', 'the filter', 'a', { ok: false, reason: 'ECONNREFUSED' }, fix).severity,
      'error',
    );
    assert.equal(
      judgeBanner('f', 'the filter', 'a', { ok: true, greeting: '220 x ESMTP postwarden' }, fix, 'postwarden')
        .severity,
      'ok',
    );
    const other = judgeBanner(
      'f',
      'the filter',
      'a',
      { ok: true, greeting: '220 x ESMTP amavisd-new' },
      fix,
      'postwarden',
    );
    assert.match(other.summary, /something else answers/);
    assert.equal(judgeBanner('f', 'x', 'a', { ok: true, greeting: '421 busy' }, fix).severity, 'error');
  });
});

describe('end to end: following the message', () => {
  const LOG = [
    'Nov 23 03:35:03 mx postfix/cleanup[1]: 4D32C230ACE: message-id=<doctor.t1@mx.example.test>',
    'Nov 23 03:35:03 mx postfix/cleanup[1]: 1111111111A: message-id=<someone.else@example.net>',
    'Nov 23 03:35:04 mx postfix/scan/smtp[2]: 4D32C230ACE: to=<postmaster@example.test>, relay=127.0.0.1[127.0.0.1]:10061, status=sent (250 2.0.0 Filtered and re-injected: 2.0.0 Ok: queued as 8CA9B230AD4)',
    'Nov 23 03:35:04 mx postfix/cleanup[1]: 8CA9B230AD4: message-id=<doctor.t1@mx.example.test>',
    'Nov 23 03:35:04 mx postfix/lmtp[3]: 8CA9B230AD4: to=<alice@example.test>, orig_to=<postmaster@example.test>, relay=127.0.0.1[127.0.0.1]:2424, status=sent (250 2.0.0 Saved)',
  ];
  const expect = { filter: true, records: true, recipient: 'postmaster@example.test', waitedS: 60 };
  const policy = { face: 'policy', time: '', action: 'dunno', score: 0, verdicts: [] } as const;
  const filter = { face: 'filter', time: '', action: 'deliver', score: 0, verdicts: [] } as const;

  test('queue ids from the Message-ID, statuses per queue id', () => {
    const d = followLog(LOG.join('\n'), 'doctor.t1@mx.example.test');
    assert.deepEqual(d.queueIds, ['4D32C230ACE', '8CA9B230AD4']);
    assert.deepEqual(
      d.statuses.map((s) => [s.queueId, s.status]),
      [
        ['4D32C230ACE', 'sent'],
        ['8CA9B230AD4', 'sent'],
      ],
    );
    assert.equal(queuedAs('250 2.0.0 Ok: queued as 4D32C230ACE'), '4D32C230ACE');
  });

  test('delivered after the filter, both decisions recorded: ok', () => {
    const p = {
      queueId: '4D32C230ACE',
      records: [policy, filter],
      delivery: followLog(LOG.join('\n'), 'doctor.t1@mx.example.test'),
    };
    assert.equal(settled(p, expect), true);
    const f = judgeE2e(p, expect);
    assert.equal(f.severity, 'ok');
    assert.match(
      f.summary,
      /accepted as 4D32C230ACE, policy dunno, filter deliver \(score 0\), delivered as 8CA9B230AD4/,
    );
  });

  test('stuck before the filter: the finding says where it stopped', () => {
    const deferred = [
      LOG[0] ?? '',
      'Nov 23 03:35:04 mx postfix/scan/smtp[2]: 4D32C230ACE: to=<postmaster@example.test>, relay=none, status=deferred (connect to 127.0.0.1[127.0.0.1]:10061: Connection refused)',
    ].join('\n');
    const p = {
      queueId: '4D32C230ACE',
      records: [policy],
      delivery: followLog(deferred, 'doctor.t1@mx.example.test'),
    };
    assert.equal(settled(p, expect), false);
    const f = judgeE2e(p, expect);
    assert.equal(f.severity, 'error');
    assert.match(
      f.summary,
      /no filter decision recorded; stopped: the message did not get through the content filter .*\(last: deferred\) within 60 s/,
    );
    assert.match(f.detail ?? '', /Connection refused/);
  });

  test('refused at RCPT, no policy record, an unreadable log, quarantine', () => {
    const refused = judgeE2e(
      {
        refused: { step: 'RCPT TO', reply: '550 5.1.1 unknown' },
        records: [],
        delivery: { queueIds: [], statuses: [] },
      },
      expect,
    );
    assert.match(refused.summary, /refused the test message to postmaster@example\.test at RCPT TO/);
    const noPolicy = judgeE2e(
      {
        queueId: 'ABCDE',
        records: [filter],
        delivery: followLog(LOG.join('\n').replaceAll('4D32C230ACE', 'ABCDE'), 'doctor.t1@mx.example.test'),
      },
      expect,
    );
    assert.match(noPolicy.summary, /the policy service recorded no decision/);
    const unreadable = judgeE2e(
      {
        queueId: 'ABCDE',
        records: [policy, filter],
        delivery: { unreadable: 'cannot read /var/log/mail.log (EACCES)' },
      },
      expect,
    );
    assert.equal(unreadable.severity, 'warning');
    const held = judgeE2e(
      {
        queueId: 'ABCDE',
        records: [policy, { ...filter, action: 'quarantine', quarantineId: 'q1' }],
        delivery: { queueIds: [], statuses: [] },
      },
      expect,
    );
    assert.match(held.summary, /held in quarantine q1/);
  });
});

describe('exit codes and output', () => {
  const error = finding('x', 'error', 'bad', 'fix it', 'seen');
  test('0 only without warnings or errors; 69 (unreachable) wins over 78', () => {
    assert.equal(exitCodeOf([ok('a', 'fine'), finding('b', 'info', 'fyi', '')]), 0);
    assert.equal(exitCodeOf([ok('a', 'fine'), finding('b', 'warning', 'hm', 'do')]), 78);
    assert.equal(exitCodeOf([error, { ...finding('s', 'error', 'down', 'start'), unreachable: true }]), 69);
  });
  test('the JSON of the contract and the table', () => {
    const json = JSON.parse(toJson([ok('a', 'fine'), error])) as {
      ok: boolean;
      findings: Record<string, string>[];
    };
    assert.equal(json.ok, false);
    assert.deepEqual(Object.keys(json.findings[0] ?? {}), ['check', 'severity', 'summary', 'detail', 'fix']);
    assert.deepEqual(json.findings[1], {
      check: 'x',
      severity: 'error',
      summary: 'bad',
      detail: 'seen',
      fix: 'fix it',
    });
    assert.equal(
      toTable([ok('a', 'fine'), error]),
      'OK       a  fine\nERROR    x  bad — fix it\n            seen\n',
    );
  });
});
