/**
 * Rate limits: the rate syntax and its config errors, GCRA bucket maths, which keys a request counts against,
 * override values, and the check itself on a real SQLite store (anonymous deferral at RCPT, DATA and
 * END-OF-MESSAGE; HOLD with one incident and one notice for a SASL user; sticky hold until reset; overrides;
 * exemptions; racing writers), plus how the pipeline and the reply function treat HOLD.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { parseConfigText } from '../../src/config/load.js';
import {
  bucketKey,
  createRatelimitCheck,
  gcra,
  parseOverride,
  parseRate,
  ratelimitSchema,
  senderKey,
  subjectsOf,
  userBucketKeys,
  type Rate,
  type RatelimitTables,
} from '../../src/core/checks/ratelimit.js';
import { newSession, runPipeline, type PolicyCheck } from '../../src/core/pipeline.js';
import type { LookupTable } from '../../src/core/ports.js';
import {
  closeIncident,
  getIncident,
  heldMessages,
  listUsers,
  type Incident,
} from '../../src/core/ratelimit-incidents.js';
import { toPolicyRequest, type PolicyRequest } from '../../src/core/request.js';
import type { Store } from '../../src/core/store.js';
import { openInline } from '../../src/maps/drivers.js';
import { policyAction } from '../../src/policy/reply.js';
import { openStore } from '../../src/store/index.js';

const rate = (text: string): Rate => {
  const r = parseRate(text);
  assert.ok(typeof r !== 'string', `${text}: ${String(r)}`);
  return r;
};

describe('rates', () => {
  test('N/PERIOD with s, m, h, d; a missing period count is 1', () => {
    assert.deepEqual(parseRate('100/1m'), { count: 100, periodMs: 60_000, text: '100/1m' });
    assert.deepEqual(parseRate('500/15m'), { count: 500, periodMs: 900_000, text: '500/15m' });
    assert.deepEqual(parseRate('200/h'), { count: 200, periodMs: 3_600_000, text: '200/h' });
    assert.equal(rate('2000/1d').periodMs, 86_400_000);
    assert.equal(rate('5/30s').periodMs, 30_000);
  });

  for (const [bad, why] of [
    ['100', /not a rate; write N\/PERIOD/],
    ['100/1w', /not a rate/],
    ['-1/1m', /not a rate/],
    ['0/1m', /count must be 1 to/],
    ['10/0s', /period must be 1s to 30d/],
    ['10/31d', /period must be 1s to 30d/],
    ['ten/1m', /not a rate/],
  ] as const) {
    test(`'${bad}' is refused: ${why.source}`, () => {
      const r = parseRate(bad);
      assert.equal(typeof r, 'string');
      assert.match(r as string, why);
    });
  }

  test('a bad rate in the config is a problem naming the key, the value and the fix', () => {
    const loaded = parseConfigText(
      'local_domains: [example.org]\npolicy:\n  ratelimit:\n    per_sasl_user: 200/1w\n    recipients_per_client: "0/1h"\n',
      { kind: 'file', path: 'test.yml' },
    );
    assert.ok(!loaded.ok);
    const byKey = new Map(loaded.problems.map((p) => [p.key, p]));
    assert.equal(byKey.get('policy.ratelimit.per_sasl_user')?.problem, 'not a rate');
    assert.match(
      byKey.get('policy.ratelimit.per_sasl_user')?.fix ?? '',
      /^write N\/PERIOD with a unit s, m, h or d/,
    );
    assert.equal(byKey.get('policy.ratelimit.per_sasl_user')?.value, '"200/1w"');
    assert.match(byKey.get('policy.ratelimit.recipients_per_client')?.problem ?? '', /count must be 1/);
  });

  test('a bad override value listed in the config is a problem; map files are checked when read', () => {
    const loaded = parseConfigText(
      `local_domains: [example.org]
policy:
  ratelimit:
    overrides:
      sasl_user: ['bob@example.org messages=1/1h', 'alice@example.org fast', 'carol@example.org']
      client: file:/etc/postwarden/rate-clients
      client_network: ['fe80::/10 none', '192.0.2.0/24=recipients=10/1m']
`,
      { kind: 'file', path: 'test.yml' },
    );
    assert.ok(!loaded.ok);
    assert.deepEqual(
      loaded.problems.map((p) => [p.key, p.problem]),
      [
        ['policy.ratelimit.overrides.sasl_user[1]', 'override value not a rate'],
        ['policy.ratelimit.overrides.sasl_user[2]', 'override value missing'],
      ],
    );
    assert.match(loaded.problems[0]?.fix ?? '', /'fast' is not a rate; write N\/PERIOD/);
  });

  test("the design's shape loads: per_client and per_sasl_user as rates, the rest default to no limit", () => {
    const settings = ratelimitSchema.parse({ per_client: '100/1m', per_sasl_user: '200/1h' });
    assert.equal(settings.per_client, '100/1m');
    assert.equal(settings.per_sender, '');
    assert.equal(settings.hold_until_reset, true);
    assert.deepEqual(settings.overrides.sasl_user, []);
  });
});

describe('GCRA bucket maths', () => {
  const t0 = 1_800_000_000_000;
  /** Spends `n` single units at t0, each stored as the store would (3 decimals), checking each fits. */
  const fill = (r: Rate, n: number): number | undefined => {
    let tat: number | undefined;
    for (let i = 0; i < n; i++) {
      const o = gcra(tat, t0, r, 1);
      assert.ok(o.ok, `unit ${i + 1}`);
      assert.equal(o.remaining, r.count - i - 1);
      tat = Number(o.tat.toFixed(3));
    }
    return tat;
  };

  test('a full bucket takes N at once, then one per period/N', () => {
    const r = rate('3/1m');
    const tat = fill(r, 3);
    const over = gcra(tat, t0, r, 1);
    assert.equal(over.ok, false);
    assert.equal(over.retryMs, 20_000);
    assert.equal(over.remaining, 0);
    assert.equal(gcra(tat, t0 + 19_999, r, 1).ok, false);
    const later = gcra(tat, t0 + 20_000, r, 1);
    assert.ok(later.ok);
    assert.equal(later.ttlS, 60);
  });

  test('a cost of several units (recipients) fits only when that many are left', () => {
    const r = rate('10/1h');
    const first = gcra(undefined, t0, r, 7);
    assert.ok(first.ok);
    assert.equal(first.remaining, 3);
    assert.equal(gcra(first.tat, t0, r, 4).ok, false);
    assert.ok(gcra(first.tat, t0, r, 3).ok);
  });

  test('a cost beyond the whole bucket never fits', () => {
    const o = gcra(undefined, t0, rate('5/1m'), 6);
    assert.equal(o.ok, false);
    assert.equal(o.retryMs, Infinity);
  });

  test('fractional intervals do not drift: 1000 messages of 1000/7s fit, the next does not', () => {
    const r = rate('1000/7s');
    const tat = fill(r, 1000);
    assert.equal(gcra(tat, t0, r, 1).ok, false);
  });

  test('an old bucket state counts as full', () => {
    const r = rate('2/1m');
    assert.equal(gcra(t0 - 3_600_000, t0, r, 2).ok, true);
  });
});

function request(attributes: Record<string, string>): PolicyRequest {
  return toPolicyRequest({ request: 'smtpd_access_policy', protocol_state: 'RCPT', ...attributes });
}

describe('keys', () => {
  const prefixes = { ipv4_prefix: 24, ipv6_prefix: 64 };
  const cases: [string, Record<string, string>, string[], [string, string, number][]][] = [
    [
      'an anonymous client counts against its address, network, sender and recipient domains',
      { client_address: '198.51.100.7', sender: 'News+Tag@Sender.TEST', recipient_count: '3' },
      ['a@x.test', 'b@x.test', 'c@y.test'],
      [
        ['client', '198.51.100.7', 3],
        ['client_network', '198.51.100.0/24', 3],
        ['sender', 'news@sender.test', 3],
        ['recipient_domain', 'x.test', 2],
        ['recipient_domain', 'y.test', 1],
      ],
    ],
    [
      'a SASL user counts against the user, not the address it connects from; <> has no sender key',
      { client_address: '2001:db8::1', sasl_username: 'Alice@Example.ORG', recipient: 'Bob@Remote.test' },
      [],
      [
        ['sasl_user', 'alice@example.org', 3],
        ['recipient_domain', 'remote.test', 1],
      ],
    ],
  ];
  for (const [title, attributes, recipients, expected] of cases) {
    test(title, () => {
      const r = request({ protocol_state: 'END-OF-MESSAGE', ...attributes });
      const subjects = subjectsOf(r, new Set(recipients), 3, prefixes, '+');
      assert.deepEqual(
        subjects.map((x) => [x.kind, x.key, x.recipients]),
        expected,
      );
    });
  }

  test('at RCPT only the current recipient domain counts, with its recipients so far', () => {
    const r = request({ client_address: '192.0.2.1', recipient: 'c@x.test' });
    const subjects = subjectsOf(r, new Set(['a@y.test', 'b@x.test', 'c@x.test']), 3, prefixes, '+');
    assert.deepEqual(subjects.at(-1), {
      kind: 'recipient_domain',
      key: 'x.test',
      query: { kind: 'domain', value: 'x.test' },
      recipients: 2,
    });
  });

  test('sender keys and reset keys', () => {
    assert.equal(senderKey('<>', '+'), '');
    assert.equal(senderKey('User-list@Example.org', '-'), 'user@example.org');
    assert.equal(
      bucketKey('recipients', 'client_network', '192.0.2.0/24'),
      'rate:r:client_network:192.0.2.0/24',
    );
    assert.deepEqual(userBucketKeys('alice@example.org', 'Alice+x@example.org', '+'), [
      'rate:m:sasl_user:alice@example.org',
      'rate:r:sasl_user:alice@example.org',
      'rate:m:sender:alice@example.org',
      'rate:r:sender:alice@example.org',
    ]);
  });
});

describe('override values', () => {
  const defaults = { messages: rate('10/1h'), recipients: rate('50/1h') };
  test('a bare rate is messages; names pick the dimension; none lifts a limit', () => {
    assert.deepEqual(parseOverride('100/1h', defaults), {
      messages: rate('100/1h'),
      recipients: defaults.recipients,
    });
    assert.deepEqual(parseOverride('recipients=500/1d', defaults), {
      messages: defaults.messages,
      recipients: rate('500/1d'),
    });
    assert.deepEqual(parseOverride('messages=none, recipients=5/1m', defaults), {
      messages: null,
      recipients: rate('5/1m'),
    });
    assert.deepEqual(parseOverride('none', defaults), { messages: null, recipients: null });
  });
  test('a bad value says what is wrong', () => {
    assert.match(parseOverride('', defaults) as string, /no rate/);
    assert.match(parseOverride('speed=1/1m', defaults) as string, /unknown name 'speed'/);
    assert.match(parseOverride('messages=fast', defaults) as string, /'fast' is not a rate/);
  });
});

// ---- the check on a real SQLite store -----------------------------------------------------------------------

const dir = mkdtempSync(path.join(os.tmpdir(), 'pw-h-rate-unit-'));
const stores: Store[] = [];
after(async () => {
  await Promise.all(stores.map((s) => s.close()));
  rmSync(dir, { recursive: true, force: true });
});

let clock = Date.parse('2026-11-01T00:00:00Z');
const now = () => clock;
let storeCount = 0;
async function freshStore(): Promise<Store> {
  const store = await openStore({ driver: 'sqlite', path: path.join(dir, `s${storeCount++}.db`), now });
  stores.push(store);
  return store;
}

function table(entries: string[]): LookupTable[] {
  const opened = openInline(entries, 'test');
  assert.ok(opened.ok, opened.ok ? '' : opened.reason);
  return [opened.table];
}

const noTables: RatelimitTables = {
  exempt: [],
  overrides: { client: [], client_network: [], sender: [], sasl_user: [], recipient_domain: [] },
};

function check(
  settings: Record<string, unknown>,
  store: Store,
  opened: Incident[] = [],
  tables: RatelimitTables = noTables,
): PolicyCheck {
  const parsed = ratelimitSchema.parse(settings);
  return createRatelimitCheck(parsed, tables, store, { incidentOpened: (i) => opened.push(i) }, '+', now);
}

let instance = 0;
/** One message: its RCPTs, DATA and END-OF-MESSAGE through the check; the answers per stage. */
async function message(c: PolicyCheck, base: Record<string, string>, recipients: string[]) {
  const session = newSession();
  const id = `i${instance++}`;
  const ctx = { session, score: 0, earlier: [], signal: new AbortController().signal };
  const rcpt = [];
  for (const recipient of recipients) {
    session.rcptCount += 1;
    rcpt.push(await c.run(request({ ...base, instance: id, recipient }), ctx));
  }
  const tail = { ...base, instance: id, recipient_count: String(recipients.length) };
  const data = await c.run(request({ ...tail, protocol_state: 'DATA' }), ctx);
  const eom = await c.run(
    request({ ...tail, protocol_state: 'END-OF-MESSAGE', queue_id: `Q${id.toUpperCase()}0` }),
    ctx,
  );
  return { rcpt, data, eom };
}

const outside = { client_address: '198.51.100.7', sender: 'news@sender.test' };
const alice = {
  client_address: '203.0.113.9',
  sasl_username: 'alice@example.org',
  sender: 'alice@example.org',
};

describe('the ratelimit check', () => {
  test('nothing configured: no verdict and no store access', async () => {
    const store = await freshStore();
    const c = check({}, store);
    const m = await message(c, alice, ['bob@remote.test']);
    assert.deepEqual([...m.rcpt.flat(), ...m.data, ...m.eom], []);
    assert.deepEqual(await store.scan('', 10), []);
  });

  test('anonymous: messages are counted at END-OF-MESSAGE; over the limit the next is deferred at DATA', async () => {
    const store = await freshStore();
    const c = check({ per_client: '2/1m' }, store);
    for (let i = 0; i < 2; i++) {
      const m = await message(c, outside, ['a@example.org']);
      assert.deepEqual([...m.rcpt.flat(), ...m.data, ...m.eom], [], `message ${i + 1}`);
    }
    const third = await message(c, outside, ['a@example.org']);
    assert.deepEqual(third.rcpt.flat(), []);
    assert.equal(third.data[0]?.symbol, 'RATELIMIT_DEFER');
    assert.equal(third.data[0]?.action, 'defer');
    assert.deepEqual(third.data[0]?.reply, {
      code: 450,
      dsn: '4.7.1',
      text: 'Rate limit exceeded, try again later',
    });
    assert.match(
      third.data[0]?.reason ?? '',
      /^client 198\.51\.100\.7 over 2\/1m messages; room again in 30 s$/,
    );
    // Postfix would not send END-OF-MESSAGE after a deferred DATA; if it did, it is deferred there too.
    assert.equal(third.eom[0]?.action, 'defer');
    // Another client of the same network is not limited by per_client.
    const neighbour = await message(c, { ...outside, client_address: '198.51.100.8' }, ['a@example.org']);
    assert.deepEqual(neighbour.eom, []);
    clock += 30_000;
    assert.deepEqual((await message(c, outside, ['a@example.org'])).eom, []);
  });

  test('anonymous recipients: a RCPT beyond the recipients left gets 452 4.5.3', async () => {
    const store = await freshStore();
    const c = check({ recipients_per_client: '3/1h' }, store);
    const m = await message(c, outside, ['a@example.org', 'b@example.org', 'c@example.org', 'd@example.org']);
    assert.deepEqual(m.rcpt.slice(0, 3).flat(), []);
    assert.equal(m.rcpt[3]?.[0]?.symbol, 'RATELIMIT_RECIPIENTS');
    assert.deepEqual(m.rcpt[3]?.[0]?.reply, {
      code: 452,
      dsn: '4.5.3',
      text: 'Too many recipients, try the rest later',
    });
    // Postfix counted 4 (in this test every RCPT was accepted): the message itself does not fit.
    assert.equal(m.eom[0]?.symbol, 'RATELIMIT_DEFER');
    const small = await message(c, outside, ['a@example.org', 'b@example.org']);
    assert.deepEqual(small.eom, []);
    const next = await message(c, outside, ['a@example.org', 'b@example.org']);
    assert.equal(next.rcpt[1]?.[0]?.symbol, 'RATELIMIT_RECIPIENTS');
  });

  test('SASL user over its limit: HOLD, one incident, one notice, the queue id recorded; held until reset', async () => {
    const store = await freshStore();
    const opened: Incident[] = [];
    const c = check({ per_sasl_user: '2/1h', per_client: '1/1h' }, store, opened);
    for (let i = 0; i < 2; i++) {
      const m = await message(c, alice, ['bob@remote.test']);
      assert.deepEqual(
        [...m.rcpt.flat(), ...m.data, ...m.eom],
        [],
        `message ${i + 1} (per_client is not hers)`,
      );
    }
    const third = await message(c, alice, ['bob@remote.test']);
    assert.deepEqual(
      [...third.rcpt.flat(), ...third.data],
      [],
      'never refused before the end of the message',
    );
    assert.equal(third.eom[0]?.action, 'hold');
    assert.equal(third.eom[0]?.symbol, 'RATELIMIT_HOLD');
    assert.match(third.eom[0]?.reason ?? '', /^sasl_user alice@example\.org over 2\/1h messages/);
    assert.equal(opened.length, 1);
    assert.equal(opened[0]?.limit, 'per_sasl_user 2/1h');
    assert.equal(opened[0]?.client, '203.0.113.9');

    // The bucket refills, but the account stays held: one incident, no second notice.
    clock += 3_600_000;
    const fourth = await message(c, alice, ['bob@remote.test']);
    assert.equal(fourth.eom[0]?.symbol, 'RATELIMIT_HELD_ACCOUNT');
    assert.equal(fourth.eom[0]?.action, 'hold');
    assert.equal(opened.length, 1);

    const incident = await getIncident(store, 'alice@example.org');
    assert.equal(incident?.notice, 'pending');
    const held = await heldMessages(store, 'alice@example.org');
    assert.equal(held.length, 2);
    assert.deepEqual(
      held.map((h) => h.sender),
      ['alice@example.org', 'alice@example.org'],
    );
    const users = await listUsers(store, 100);
    assert.deepEqual(
      users.map((u) => [u.user, u.held, u.incident?.limit]),
      [['alice@example.org', 2, 'per_sasl_user 2/1h']],
    );

    assert.equal(
      await closeIncident(store, 'alice@example.org', userBucketKeys('alice@example.org', '', '+')),
      true,
    );
    assert.deepEqual((await message(c, alice, ['bob@remote.test'])).eom, []);
    // A new incident after the reset is a new notice.
    await message(c, alice, ['bob@remote.test']);
    const again = await message(c, alice, ['bob@remote.test']);
    assert.equal(again.eom[0]?.symbol, 'RATELIMIT_HOLD');
    assert.equal(opened.length, 2);
  });

  test('hold_until_reset off: the user is held only while over the limit', async () => {
    const store = await freshStore();
    const opened: Incident[] = [];
    const c = check({ per_sasl_user: '1/1m', hold_until_reset: false }, store, opened);
    await message(c, alice, ['bob@remote.test']);
    assert.equal((await message(c, alice, ['bob@remote.test'])).eom[0]?.action, 'hold');
    clock += 60_000;
    assert.deepEqual((await message(c, alice, ['bob@remote.test'])).eom, []);
    assert.equal((await message(c, alice, ['bob@remote.test'])).eom[0]?.action, 'hold');
    assert.equal(opened.length, 1, 'the incident is still open: no second notice');
  });

  test('observe mode counts and reports, but holds nothing and opens no incident', async () => {
    const store = await freshStore();
    const opened: Incident[] = [];
    const c = check({ mode: 'observe', per_sasl_user: '1/1h' }, store, opened);
    await message(c, alice, ['bob@remote.test']);
    const m = await message(c, alice, ['bob@remote.test']);
    assert.equal(m.eom[0]?.symbol, 'RATELIMIT_HOLD');
    assert.equal(opened.length, 0);
    assert.equal(await getIncident(store, 'alice@example.org'), undefined);
  });

  test('overrides from a map: per user, per client network; exemptions count nothing', async () => {
    const store = await freshStore();
    const tables: RatelimitTables = {
      exempt: table(['192.0.2.0/24', 'monitor@example.org']),
      overrides: {
        ...noTables.overrides,
        sasl_user: table(['bulk@example.org messages=3/1h', 'robot@example.org none']),
        client_network: table(['198.51.100.0/24 recipients=none']),
      },
    };
    const c = check({ per_sasl_user: '1/1h', recipients_per_client_network: '1/1h' }, store, [], tables);
    const bulk = { ...alice, sasl_username: 'bulk@example.org', sender: 'bulk@example.org' };
    for (let i = 0; i < 3; i++) assert.deepEqual((await message(c, bulk, ['x@remote.test'])).eom, []);
    assert.equal((await message(c, bulk, ['x@remote.test'])).eom[0]?.action, 'hold');
    const robot = { ...alice, sasl_username: 'robot@example.org', sender: 'robot@example.org' };
    for (let i = 0; i < 5; i++) assert.deepEqual((await message(c, robot, ['x@remote.test'])).eom, []);
    // 198.51.100.0/24 has no recipients limit; 203.0.113.0/24 has the default.
    assert.deepEqual((await message(c, outside, ['a@example.org', 'b@example.org'])).eom, []);
    const other = { client_address: '203.0.113.50', sender: 'x@other.test' };
    const limited = await message(c, other, ['a@example.org', 'b@example.org']);
    assert.equal(limited.rcpt[1]?.[0]?.symbol, 'RATELIMIT_RECIPIENTS');
    assert.equal(limited.eom[0]?.action, 'defer');
    const exempt = { client_address: '192.0.2.9', sender: 'x@other.test' };
    for (let i = 0; i < 3; i++)
      assert.deepEqual((await message(c, exempt, ['a@example.org', 'b@example.org'])).eom, []);
    const monitor = { ...alice, sasl_username: 'monitor@example.org', sender: 'monitor@example.org' };
    for (let i = 0; i < 3; i++) assert.deepEqual((await message(c, monitor, ['x@remote.test'])).eom, []);
  });

  test('a bad override value fails the check with PW-E004 (policy.on_error decides)', async () => {
    const store = await freshStore();
    const tables = {
      ...noTables,
      overrides: { ...noTables.overrides, sasl_user: table(['alice@example.org fast']) },
    };
    const c = check({ per_sasl_user: '1/1h' }, store, [], tables);
    await assert.rejects(message(c, alice, ['bob@remote.test']), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'PW-E004');
      assert.match(e.message, /rate override "alice@example\.org" in test: 'fast' is not a rate/);
      return true;
    });
  });

  test('racing writers on one store never spend the last token twice', async () => {
    const store = await freshStore();
    const c = check({ per_sender: '5/1h' }, store);
    const eom = (i: number) =>
      c.run(
        request({
          ...outside,
          protocol_state: 'END-OF-MESSAGE',
          instance: `race${i}`,
          recipient: 'a@example.org',
          recipient_count: '1',
        }),
        { session: newSession(), score: 0, earlier: [], signal: new AbortController().signal },
      );
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => eom(i)));
    assert.equal(results.filter((r) => r.length === 0).length, 5);
    assert.equal(results.filter((r) => r[0]?.action === 'defer').length, 7);
  });
});

describe('HOLD in the pipeline and the reply', () => {
  const verdicts = (action: 'hold' | 'defer_if_permit', name: string): PolicyCheck => ({
    name,
    run: () => [
      { check: name, symbol: name.toUpperCase(), score: 0, action, reason: `${name} says ${action}` },
    ],
  });
  const stage = (check: PolicyCheck) => ({ check, mode: 'enforce' as const, timeoutMs: 1000 });
  const options = { onError: 'dunno' as const, rejectAt: 0 };
  const eom = request({ protocol_state: 'END-OF-MESSAGE' });

  test('HOLD goes to Postfix with its reason', async () => {
    const d = await runPipeline([stage(verdicts('hold', 'ratelimit'))], eom, newSession(), options);
    assert.equal(d.action, 'hold');
    assert.equal(policyAction(d, { softBounce: false }), 'HOLD ratelimit says hold');
  });

  test('a deferral before or after a hold wins', async () => {
    for (const order of [
      ['hold', 'defer_if_permit'],
      ['defer_if_permit', 'hold'],
    ] as const) {
      const d = await runPipeline(
        order.map((a, i) => stage(verdicts(a, `c${i}`))),
        eom,
        newSession(),
        options,
      );
      assert.equal(d.action, 'defer_if_permit', order.join(' then '));
    }
  });
});
