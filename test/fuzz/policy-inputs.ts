/**
 * What the policy targets share: the real policy handler with every check on (the DNS ones against a resolver
 * whose answers are drawn from the query name, so they repeat; greylisting in an in-memory SQLite store),
 * arbitraries of Postfix-like requests whose values go from plausible to hostile, and the grammar every
 * `action=` answer must follow.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { MailauthSpf } from '../../src/adapters/spf.js';
import { dnsLists, DnsListHealth } from '../../src/core/checks/index.js';
import type { DnsAnswer, DnsResolver, DnsType } from '../../src/core/dns.js';
import type { PipelineStage } from '../../src/core/pipeline.js';
import type { Store } from '../../src/core/store.js';
import { parseConfigText } from '../../src/config/load.js';
import { MapRegistry } from '../../src/maps/index.js';
import { createLogger } from '../../src/observe/logger.js';
import { Metrics } from '../../src/observe/metrics.js';
import type { RequestHandler } from '../../src/policy/server.js';
import { buildStages, createPolicyHandler, receiverName } from '../../src/policy/service.js';
import { openStore } from '../../src/store/index.js';

const CONFIG = `
hostname: mx.example.org
local_domains: [example.org, example.net]
local_networks: [127.0.0.0/8, '::1/128', 192.0.2.0/24]
policy:
  check_timeout_ms: 2000
  relay:
    allow: [lists.forwarder.test, 203.0.113.10]
  sender_ownership:
    map:
      - 'sales@example.org alice@example.org,bob@example.org'
      - 'example.net @example.net'
  limits:
    max_recipients: 3
    max_message_bytes: 1000000
  lists:
    block:
      client: [198.51.100.66, 233.252.0.0/24, spammer.test]
      helo: [bad-helo.test]
      sender: [spam.test, 'evil@']
      recipient: ['closed@example.org Mailbox closed']
    allow:
      client: [233.252.0.5]
      sender: [partner.test]
  dnsbl:
    lists:
      - { zone: bl.test, codes: { '127.0.0.2': 10 } }
      - { zone: low.test, codes: ['127.0.[0..255].[2;4;10..11]'], weight: 3 }
    dnswl:
      - { zone: wl.test }
  spf:
    header: received-spf
  greylist:
    header: true
    allow: [partner.test, 203.0.113.0/24]
`;

/** A small deterministic hash of the query, so the same name gets the same answer in every run. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const SPF_RECORDS: readonly string[] = [
  'v=spf1 -all',
  'v=spf1 +all',
  'v=spf1 ip4:198.51.100.0/24 ip6:2001:db8::/32 ~all',
  'v=spf1 a mx ptr ?all',
  'v=spf1 include:%{d}.spf.test -all',
  'v=spf1 exists:%{ir}.%{v}._spf.%{d2} -all',
  'v=spf1 redirect=%{l1r-}.loop.test',
  'v=spf1 include:loop.test include:loop.test include:loop.test',
  'v=spf1 ip4:999.1.1.1/99 a:/ mx:%{ -all',
  'v=spf1 exp=%{o}.exp.test -all',
  'v=spf1 a/33 mx//129 -all',
  'v=spf1',
  'spf2.0/pra -all',
];

/** Answers from the name: records, NXDOMAIN, NODATA or an error, as a real resolver may. */
export const stubResolver: DnsResolver = {
  query<T extends DnsType>(name: string, type: T): Promise<DnsAnswer<T>> {
    const h = hash(`${type} ${name.toLowerCase()}`);
    const kind = h % 7;
    if (kind === 0) return Promise.resolve({ status: 'nxdomain' });
    if (kind === 1) return Promise.resolve({ status: 'nodata' });
    if (kind === 2) return Promise.resolve({ status: 'error', kind: 'servfail', reason: 'stub SERVFAIL' });
    const n = h >>> 8;
    const records: Record<DnsType, unknown> = {
      A: [`127.0.${n % 3}.${(n >>> 2) % 12}`, `198.51.100.${n % 256}`].slice(0, 1 + (n % 2)),
      AAAA: ['2001:db8::1'],
      TXT: [[SPF_RECORDS[n % SPF_RECORDS.length]!], ['listed for fuzzing']].slice(0, 1 + (n % 2)),
      MX:
        n % 5 === 0
          ? [{ exchange: '', priority: 0 }]
          : [{ exchange: `mx${n % 3}.${name}`, priority: n % 20 }],
      PTR: [n % 3 === 0 ? name : `host${n % 9}.sender.test`],
    };
    return Promise.resolve({ status: 'ok', records: records[type] } as DnsAnswer<T>);
  },
};

export interface FuzzPolicy {
  readonly handler: RequestHandler;
  /** Checks that threw (a check reports trouble as a value; a throw is a bug the pipeline only contains). */
  readonly thrown: string[];
  /** Error-level log lines (PW-P009: the handler itself failed). */
  readonly errors: string[];
  close(): Promise<void>;
}

/** The real handler of `serve` with every check, a stub resolver and an in-memory store. */
export async function openPolicy(): Promise<FuzzPolicy> {
  const loaded = parseConfigText(CONFIG, { kind: 'embedded' });
  if (!loaded.ok) throw new Error(`fuzz policy config: ${JSON.stringify(loaded.problems)}`);
  const config = loaded.config;
  const errors: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      errors.push(chunk.toString());
      done();
    },
  });
  const logger = createLogger('error', sink);
  const metrics = new Metrics({ processMetrics: false });
  const registry = new MapRegistry({
    env: { baseDir: '/', recipientDelimiter: config.recipient_delimiter },
    watch: false,
  });
  const store: Store = await openStore({ driver: 'sqlite', path: ':memory:' });
  const lists = dnsLists(config.policy.dnsbl);
  const stages = buildStages(config, {
    open: (ref, key) => registry.openRef(ref, key),
    store,
    dnsbl: { resolver: stubResolver, lists, health: new DnsListHealth(lists) },
    resolver: stubResolver,
    spf: new MailauthSpf(stubResolver, receiverName(config)),
  });
  const thrown: string[] = [];
  const watched: PipelineStage[] = stages.map((stage) => ({
    ...stage,
    check: {
      name: stage.check.name,
      run: async (request, ctx) => {
        try {
          return await stage.check.run(request, ctx);
        } catch (error) {
          const typed = typeof (error as { code?: unknown }).code === 'string';
          // A typed failure (a lookup or store error value turned into a throw) is the pipeline's contract.
          if (!typed) thrown.push(`${stage.check.name}: ${(error as Error).stack ?? String(error)}`);
          throw error;
        }
      },
    },
  }));
  return {
    handler: createPolicyHandler(config, watched, logger, metrics),
    thrown,
    errors,
    close: async () => {
      registry.close();
      await store.close();
    },
  };
}

/** Every answer: one line, a known action, code and enhanced code of one class, printable ASCII. */
const ACTION =
  /^(?:DUNNO|PREPEND [!-9;-~]+:[ -~]{0,900}|(?:REJECT|DEFER)(?: [ -~]{0,200})?|DEFER_IF_PERMIT 4\.\d{1,3}\.\d{1,3} [ -~]{0,200}|([45])\d\d \1\.\d{1,3}\.\d{1,3} [ -~]{0,200})$/;

/** Fails unless `action` is in the grammar and no check threw; `context` names the request (built on failure only). */
export function assertAnswer(policy: FuzzPolicy, action: string, context: () => string): void {
  if (!ACTION.test(action)) assert.fail(`not a well-formed action: ${JSON.stringify(action)} (${context()})`);
  if (policy.thrown.length > 0) assert.fail(`a check threw (${context()}): ${policy.thrown.join('\n')}`);
  if (policy.errors.length > 0)
    assert.fail(`the handler logged an error (${context()}): ${policy.errors[0]}`);
}

// ---------------------------------------------------------------------------------------------------------
// Requests

/** Text without the bytes the protocol forbids in a value (NUL, control bytes, newline). */
const printable = fc.string({
  unit: fc.constantFrom(...' !"#$%&\'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~'.split('')),
});
/** What a value may not hold: control bytes (and `@` or `=` where the field needs them out). */
// eslint-disable-next-line no-control-regex -- control bytes are exactly what these remove
const CONTROL = /[\x00-\x1f\x7f]/g;
// eslint-disable-next-line no-control-regex -- as above
const CONTROL_OR_AT = /[\x00-\x1f\x7f@]/g;
// eslint-disable-next-line no-control-regex -- as above
const CONTROL_OR_EQUALS = /[=\x00-\x1f\x7f]/g;
const anyText = fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => s.replace(CONTROL, ''));

const ipv4 = fc.ipV4();
const ipText = fc.oneof(
  ipv4,
  fc.ipV6(),
  ipv4.map((ip) => `::ffff:${ip}`),
  fc.constantFrom(
    '198.51.100.66',
    '233.252.0.5',
    '203.0.113.10',
    '192.0.2.1',
    '127.0.0.1',
    '::1',
    'unknown',
    '',
    '1.2.3',
    '256.1.1.1',
    '01.02.03.04',
    '::ffff:1.2.3.4',
    'fe80::1%eth0',
    '[192.0.2.1]',
    '1.2.3.4.5',
  ),
  printable,
);
const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?$/);
const domain = fc.oneof(
  fc.domain(),
  fc.constantFrom(
    'example.org',
    'example.net',
    'EXAMPLE.ORG',
    'spam.test',
    'partner.test',
    'spammer.test',
    'bad-helo.test',
    'mx.example.org',
    'lists.forwarder.test',
    'localhost',
    '.',
    '..',
    'a..b',
    '-x.test',
    'x-.test',
    '[192.0.2.1]',
    '[IPv6:2001:db8::1]',
    '[IPv6:zz]',
    '[]',
  ),
  fc.array(label, { minLength: 1, maxLength: 140 }).map((labels) => labels.join('.')),
  anyText,
);
const localPart = fc.oneof(
  fc.constantFrom(
    'alice',
    'bob',
    'sales',
    'closed',
    'evil',
    'postmaster',
    'a+ext',
    'a++b',
    '"quoted @"',
    '',
    '+',
  ),
  fc.emailAddress().map((a) => a.split('@')[0] ?? ''),
  anyText,
  fc.string({ minLength: 60, maxLength: 300 }).map((s) => s.replace(CONTROL_OR_AT, 'x')),
);
const address = fc.oneof(
  fc.tuple(localPart, domain).map(([l, d]) => `${l}@${d}`),
  fc.emailAddress(),
  fc.constantFrom(
    '',
    '<>',
    '@',
    'alice@',
    '@example.org',
    'a@b@c',
    'alice@example.org.',
    '<alice@example.org>',
  ),
  localPart,
);
const number = fc.oneof(
  fc.nat().map(String),
  fc.constantFrom('0', '', '-1', '1e9', '999999999999999999999', '0x10', ' 5', 'NaN', '1000001'),
);
const state = fc.oneof(
  fc.constantFrom('CONNECT', 'EHLO', 'HELO', 'MAIL', 'RCPT', 'DATA', 'END-OF-MESSAGE', 'VRFY', 'ETRN'),
  fc.constantFrom('rcpt', 'Rcpt', 'END-OF-DATA', ''),
  printable,
);
const xtext = fc.oneof(
  printable,
  printable.map((s) => s.replace(/./g, (c) => `+${c.charCodeAt(0).toString(16)}`)),
);

/** The attributes Postfix sends, each present or not, with values from the pools above. */
const known = fc.record(
  {
    protocol_state: state,
    protocol_name: fc.constantFrom('SMTP', 'ESMTP', 'LMTP', ''),
    helo_name: fc.oneof(domain, ipText),
    queue_id: fc.oneof(fc.stringMatching(/^[0-9A-F]{6,12}$/), printable),
    sender: address,
    recipient: address,
    recipient_count: number,
    client_address: ipText,
    client_name: fc.oneof(domain, fc.constant('unknown')),
    reverse_client_name: fc.oneof(domain, fc.constant('unknown')),
    instance: fc.oneof(fc.constantFrom('a.1', 'a.2', 'b.1', ''), printable),
    sasl_method: fc.constantFrom('', 'PLAIN', 'LOGIN'),
    sasl_username: fc.oneof(fc.constantFrom('', 'alice@example.org', 'bob'), anyText),
    sasl_sender: address,
    size: number,
    server_address: ipText,
    policy_context: printable,
    ccert_subject: xtext,
    ccert_issuer: xtext,
    ccert_fingerprint: xtext,
    encryption_protocol: fc.constantFrom('', 'TLSv1.3', 'TLSv1.2'),
  },
  { requiredKeys: [] },
);

/** Attributes Postfix does not send: names with any printable byte but `=` (and `request`, which the codec owns). */
const extraName = fc
  .string({ minLength: 1, maxLength: 30, unit: 'grapheme-ascii' })
  .map((s) => s.replace(CONTROL_OR_EQUALS, '_'))
  .filter((s) => s !== 'request');

/** A policy request as Postfix's attributes: `request=smtpd_access_policy` plus a random subset of the rest. */
export const requestAttributes: fc.Arbitrary<Record<string, string>> = fc
  .tuple(known, fc.dictionary(extraName, fc.oneof(printable, anyText), { maxKeys: 6 }))
  .map(([attrs, extra]) => {
    const all: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const [k, v] of Object.entries(extra)) all[k] = v;
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined) all[k] = v;
    all['request'] = 'smtpd_access_policy';
    return all;
  });
