import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import type { LookupQuery, LookupResult } from '../../src/core/ports.js';
import {
  isSpec,
  MAP_TYPES,
  MapSpecError,
  openInline,
  openTable,
  parseKey,
  parseSpec,
  validateMapRef,
  validateSpec,
  type LoadedTable,
  type MapEnv,
} from '../../src/maps/index.js';
import {
  canonicalIp,
  cidrContains,
  ipInCidr,
  networkOf,
  networkPrefix,
  parseCidr,
  parseIp,
} from '../../src/util/ip.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'pw-maps-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let fileCount = 0;
function tmpFile(text: string | Buffer): string {
  const file = path.join(tmp, `t${++fileCount}`);
  writeFileSync(file, text);
  return file;
}

function inline(entries: string[], env: MapEnv = {}): LoadedTable {
  const opened = openInline(entries, 'test', env);
  assert.ok(opened.ok, opened.ok ? '' : opened.reason);
  return opened.table;
}

function open(spec: string, env: MapEnv = {}): LoadedTable {
  const opened = openTable(spec, env);
  assert.ok(opened.ok, opened.ok ? '' : opened.reason);
  return opened.table;
}

function openFails(spec: string, env: MapEnv = {}): string {
  const opened = openTable(spec, env);
  assert.equal(opened.ok, false, `${spec} should fail to open`);
  return opened.ok ? '' : opened.reason;
}

/** `undefined` = notfound; `[key, value]` = found; `{ error }` = error whose reason matches. */
type Expect = undefined | [string, string] | { error: RegExp };

function assertResult(result: LookupResult, expected: Expect, label: string): void {
  if (expected === undefined) assert.deepEqual(result, { status: 'notfound' }, label);
  else if (Array.isArray(expected)) {
    assert.deepEqual(result, { status: 'found', key: expected[0], value: expected[1] }, label);
  } else {
    assert.equal(result.status, 'error', label);
    assert.match(result.status === 'error' ? result.reason : '', expected.error, label);
  }
}

async function expectAll(
  table: LoadedTable,
  cases: readonly [LookupQuery['kind'], string, Expect][],
): Promise<void> {
  for (const [kind, value, expected] of cases) {
    assertResult(await table.lookup({ kind, value }), expected, `${kind} ${JSON.stringify(value)}`);
  }
}

describe('util/ip', () => {
  test('parseIp: spellings, canonical text, mapped addresses folded to IPv4', () => {
    const cases: [string, string | undefined, 4 | 6 | undefined][] = [
      ['1.2.3.4', '1.2.3.4', 4],
      [' 1.2.3.4 ', '1.2.3.4', 4],
      ['[1.2.3.4]', '1.2.3.4', 4],
      ['255.255.255.255', '255.255.255.255', 4],
      ['::ffff:1.2.3.4', '1.2.3.4', 4],
      ['::FFFF:0102:0304', '1.2.3.4', 4],
      ['[IPv6:::ffff:1.2.3.4]', '1.2.3.4', 4],
      ['2001:DB8:0:0:0:0:0:1', '2001:db8::1', 6],
      ['[IPv6:2001:db8::1]', '2001:db8::1', 6],
      ['ipv6:2001:db8::1', '2001:db8::1', 6],
      ['fe80::1%eth0', 'fe80::1', 6],
      ['::1', '::1', 6],
      // IPv4-compatible (not mapped) stays IPv6: ipaddr.js alone would read it as mapped.
      ['::1.2.3.4', '::102:304', 6],
      ['64:ff9b::1.2.3.4', '64:ff9b::102:304', 6],
      ['01.2.3.4', undefined, undefined],
      ['1.2.3', undefined, undefined],
      ['0x7f.0.0.1', undefined, undefined],
      ['256.1.1.1', undefined, undefined],
      ['1.2.3.4/32', undefined, undefined],
      ['1::2::3', undefined, undefined],
      ['::ffff:1.2.3.256', undefined, undefined],
      ['example.com', undefined, undefined],
      ['', undefined, undefined],
      ['1'.repeat(500), undefined, undefined],
    ];
    for (const [text, canonical, family] of cases) {
      const ip = parseIp(text);
      assert.equal(ip?.text, canonical, text);
      assert.equal(ip?.family, family, text);
      assert.equal(canonicalIp(text), canonical, text);
    }
  });

  test('parseCidr: canonical network, host bits flagged, mapped networks folded', () => {
    const cases: [string, string | undefined, boolean?][] = [
      ['1.2.3.0/24', '1.2.3.0/24', false],
      ['1.2.3.4/24', '1.2.3.0/24', true],
      ['0.0.0.0/0', '0.0.0.0/0', false],
      ['1.2.3.4/32', '1.2.3.4/32', false],
      ['2001:DB8::/32', '2001:db8::/32', false],
      ['2001:db8::1/64', '2001:db8::/64', true],
      ['::/0', '::/0', false],
      ['::ffff:10.0.0.0/104', '10.0.0.0/8', false],
      ['1.2.3.0/33', undefined],
      ['2001:db8::/129', undefined],
      ['1.2.3.0/', undefined],
      ['1.2.3.0/24/8', undefined],
      ['1.2.3/24', undefined],
      ['[1.2.3.0]/24', undefined],
    ];
    for (const [text, canonical, hostBits] of cases) {
      const network = parseCidr(text);
      assert.equal(network?.text, canonical, text);
      if (canonical) assert.equal(network?.hostBitsSet, hostBits, text);
    }
  });

  test('membership', () => {
    const cases: [string, string, boolean | undefined][] = [
      ['10.1.2.3', '10.0.0.0/8', true],
      ['11.1.2.3', '10.0.0.0/8', false],
      ['::ffff:10.1.2.3', '10.0.0.0/8', true],
      ['10.1.2.3', '::/0', false],
      ['2001:db8::5', '2001:db8::/32', true],
      ['2001:db9::5', '2001:db8::/32', false],
      ['1.2.3.4', '0.0.0.0/0', true],
      ['nonsense', '10.0.0.0/8', undefined],
      ['10.1.2.3', 'nonsense', undefined],
    ];
    for (const [address, cidr, inside] of cases)
      assert.equal(ipInCidr(address, cidr), inside, `${address} in ${cidr}`);
    const network = parseCidr('192.168.0.0/16');
    const address = parseIp('192.168.77.1');
    assert.ok(network && address && cidrContains(network, address));
  });

  test('networkPrefix: the network an address falls in', () => {
    const cases: [string, number | undefined, number | undefined, string | undefined][] = [
      ['1.2.3.4', undefined, undefined, '1.2.3.0/24'],
      ['::ffff:1.2.3.4', undefined, undefined, '1.2.3.0/24'],
      ['2001:db8:1:2:3:4:5:6', undefined, undefined, '2001:db8:1:2::/64'],
      ['10.20.30.40', 16, 48, '10.20.0.0/16'],
      ['2001:db8:1:2::9', 16, 48, '2001:db8:1::/48'],
      ['1.2.3.4', 32, 128, '1.2.3.4/32'],
      ['1.2.3.4', 0, 0, '0.0.0.0/0'],
      ['1.2.3.4', 33, 64, undefined],
      ['1.2.3.4', 1.5, 64, undefined],
      ['bogus', 24, 64, undefined],
    ];
    for (const [address, v4, v6, expected] of cases) {
      assert.equal(networkPrefix(address, v4, v6), expected, `${address} ${v4} ${v6}`);
    }
    const ip = parseIp('2001:db8::1');
    assert.equal(ip && networkOf(ip, -1), undefined);
  });
});

describe('entry keys', () => {
  test('parseKey classifies keys and names the problem with bad ones', () => {
    const cases: [string, string, string | RegExp][] = [
      ['1.2.3.4', 'network', '1.2.3.4'],
      ['[1.2.3.4]', 'network', '1.2.3.4'],
      ['::FFFF:1.2.3.4', 'network', '1.2.3.4'],
      ['1.2.3.0/24', 'network', '1.2.3.0/24'],
      ['2001:DB8::/32', 'network', '2001:db8::/32'],
      ['10', 'network', '10.0.0.0/8'],
      ['192.168', 'network', '192.168.0.0/16'],
      ['192.168.1', 'network', '192.168.1.0/24'],
      ['<>', 'null', '<>'],
      ['Bob@Example.COM', 'address', 'bob@example.com'],
      ['bob@example.com.', 'address', 'bob@example.com'],
      ['Postmaster@', 'localpart', 'postmaster@'],
      ['Example.COM', 'domain', 'example.com'],
      ['example.com.', 'domain', 'example.com'],
      ['com', 'domain', 'com'],
      ['_dmarc.example.com', 'domain', '_dmarc.example.com'],
      ['xn--bcher-kva.de', 'domain', 'xn--bcher-kva.de'],
      ['.Example.com', 'subdomains', '.example.com'],
      ['1.2.3.4/24', 'invalid', /host bits set; write the network, 1\.2\.3\.0\/24/],
      ['1.2.3.0/40', 'invalid', /is not a CIDR network/],
      ['@example.com', 'invalid', /no local part; write example\.com/],
      ['bob@exa mple', 'invalid', /valid domain/],
      ['bob@-bad-.com', 'invalid', /valid domain/],
      ['bücher.de', 'invalid', /xn-- \(ASCII\) form/],
      ['-bad.com', 'invalid', /is not an IP address, CIDR network/],
      ['a..b', 'invalid', /is not an IP address/],
      ['*.example.com', 'invalid', /is not an IP address/],
      [`${'a'.repeat(64)}.com`, 'invalid', /is not an IP address/],
    ];
    for (const [text, kind, expected] of cases) {
      const parsed = parseKey(text);
      assert.equal(parsed.kind, kind, text);
      if (parsed.kind === 'invalid') assert.match(parsed.problem, expected as RegExp, text);
      else assert.equal(parsed.display, expected, text);
    }
  });

  test('ipOnly keys (cidr: tables) refuse names', () => {
    assert.equal(parseKey('1.2.3.0/24', true).kind, 'network');
    assert.equal(parseKey('example.com', true).kind, 'invalid');
    assert.equal(parseKey('10', true).kind, 'invalid');
  });
});

describe('matcher query semantics', () => {
  test('ip: exact address, then the longest prefix; mapped and bracketed queries', async () => {
    const table = inline([
      '10.0.0.0/8 eight',
      '10.1.0.0/16 sixteen',
      '10.1.2.0/24 twentyfour',
      '10.1.2.3 host',
      '2001:db8::/32 v6net',
      '2001:db8:1::/48 v6sub',
      '2001:db8:1::7 v6host',
      '0.0.0.0/0 everything',
    ]);
    await expectAll(table, [
      ['ip', '10.1.2.3', ['10.1.2.3', 'host']],
      ['ip', '10.1.2.4', ['10.1.2.0/24', 'twentyfour']],
      ['ip', '10.1.9.9', ['10.1.0.0/16', 'sixteen']],
      ['ip', '10.9.9.9', ['10.0.0.0/8', 'eight']],
      ['ip', '11.0.0.1', ['0.0.0.0/0', 'everything']],
      ['ip', '::ffff:10.1.2.3', ['10.1.2.3', 'host']],
      ['ip', '[10.1.2.77]', ['10.1.2.0/24', 'twentyfour']],
      ['ip', '2001:db8:1::7', ['2001:db8:1::7', 'v6host']],
      ['ip', '[IPv6:2001:DB8:1::8]', ['2001:db8:1::/48', 'v6sub']],
      ['ip', '2001:db8:2::1', ['2001:db8::/32', 'v6net']],
      // IPv4 entries never match IPv6 queries (0.0.0.0/0 included), and the reverse.
      ['ip', '2001:db9::1', undefined],
      ['ip', 'not-an-ip', undefined],
      ['ip', '', undefined],
    ]);
  });

  test('address: full, without extension, domain and parents, then local parts', async () => {
    const table = inline([
      'user+ext@example.com full',
      'user@example.com base',
      'other@example.com other',
      'example.com domain',
      'org toplevel',
      '.sub.net subonly',
      'user+ext@ lp-ext',
      'user@ lp',
      'postmaster@ pm',
    ]);
    await expectAll(table, [
      ['address', 'user+ext@example.com', ['user+ext@example.com', 'full']],
      ['address', 'USER+EXT@Example.COM', ['user+ext@example.com', 'full']],
      ['address', 'user+other@example.com', ['user@example.com', 'base']],
      ['address', 'user@example.com', ['user@example.com', 'base']],
      ['address', 'nobody@example.com', ['example.com', 'domain']],
      ['address', 'nobody@mail.example.com', ['example.com', 'domain']],
      ['address', 'other+x@deep.mail.example.com', ['example.com', 'domain']],
      ['address', 'a@example.org', ['org', 'toplevel']],
      ['address', 'a@sub.net', undefined],
      ['address', 'a@x.sub.net', ['.sub.net', 'subonly']],
      ['address', 'user+ext@elsewhere.test', ['user+ext@', 'lp-ext']],
      ['address', 'user+other@elsewhere.test', ['user@', 'lp']],
      ['address', 'Postmaster@elsewhere.test', ['postmaster@', 'pm']],
      ['address', 'postmaster', ['postmaster@', 'pm']],
      ['address', 'someone@elsewhere.test', undefined],
      ['address', 'user@example.com.', ['user@example.com', 'base']],
      // An address literal has no parent domains; its local part is still looked up.
      ['address', 'user@[1.2.3.4]', ['user@', 'lp']],
      // The null sender looks up `<>` only, and there is none here.
      ['address', '', undefined],
      ['address', '<>', undefined],
    ]);
  });

  test('address: the null sender matches only a <> entry', async () => {
    const table = inline(['<> bounce', 'example.com dom']);
    await expectAll(table, [
      ['address', '', ['<>', 'bounce']],
      ['address', '<>', ['<>', 'bounce']],
      ['address', 'x@example.com', ['example.com', 'dom']],
      ['domain', '<>', undefined],
    ]);
  });

  test('address: recipient delimiter is configurable, and a leading delimiter is not an extension', async () => {
    const entries = ['user@example.com base', '-list@example.com dash'];
    await expectAll(inline(entries, { recipientDelimiter: '-' }), [
      ['address', 'user-ext@example.com', ['user@example.com', 'base']],
      ['address', 'user+ext@example.com', undefined],
      ['address', '-list@example.com', ['-list@example.com', 'dash']],
    ]);
    await expectAll(inline(entries, { recipientDelimiter: '+-' }), [
      ['address', 'user-a+b@example.com', ['user@example.com', 'base']],
      ['address', 'user+a-b@example.com', ['user@example.com', 'base']],
    ]);
    await expectAll(inline(entries, { recipientDelimiter: '' }), [
      ['address', 'user+ext@example.com', undefined],
    ]);
    await expectAll(inline(['+lead@example.com x', 'user@example.com base']), [
      ['address', '+lead@example.com', ['+lead@example.com', 'x']],
    ]);
  });

  test('domain and hostname: the name, then parents; .domain matches subdomains only', async () => {
    const table = inline([
      'example.com dom',
      '.example.net subs',
      'deep.example.org deep',
      'example.org parent',
    ]);
    for (const kind of ['domain', 'hostname'] as const) {
      await expectAll(table, [
        [kind, 'example.com', ['example.com', 'dom']],
        [kind, 'MX1.Example.COM.', ['example.com', 'dom']],
        [kind, 'a.b.c.example.com', ['example.com', 'dom']],
        [kind, 'notexample.com', undefined],
        [kind, 'example.com.evil.test', undefined],
        [kind, 'example.net', undefined],
        [kind, 'mx.example.net', ['.example.net', 'subs']],
        [kind, 'x.deep.example.org', ['deep.example.org', 'deep']],
        [kind, 'x.other.example.org', ['example.org', 'parent']],
        [kind, '', undefined],
        [kind, '[1.2.3.4]', undefined],
      ]);
    }
  });

  test('the same name as domain and subdomain entry: exact form first at each level', async () => {
    const table = inline(['.example.com dotted', 'example.com plain']);
    await expectAll(table, [
      ['domain', 'example.com', ['example.com', 'plain']],
      ['domain', 'a.example.com', ['example.com', 'plain']],
    ]);
  });

  test('text: exact key as written, case-sensitive', async () => {
    const table = inline(['Example.com dom', '1.2.3.0/24 net']);
    await expectAll(table, [
      ['text', 'Example.com', ['example.com', 'dom']],
      ['text', 'example.com', undefined],
      ['text', '1.2.3.0/24', ['1.2.3.0/24', 'net']],
      ['text', '1.2.3.4', undefined],
    ]);
  });

  test('values: rest of the entry, empty when absent', async () => {
    const table = inline([
      'a.example  REJECT  go   away ',
      'b.example',
      'c.example=OK',
      'd.example = 554 no',
    ]);
    await expectAll(table, [
      ['domain', 'a.example', ['a.example', 'REJECT  go   away']],
      ['domain', 'b.example', ['b.example', '']],
      ['domain', 'c.example', ['c.example', 'OK']],
      ['domain', 'd.example', ['d.example', '554 no']],
    ]);
  });

  test('duplicate keys: the first wins and a warning names both places', () => {
    const table = inline(['example.com first', 'EXAMPLE.com. second', '1.2.3.4 a', '1.2.3.4/32 b', 'x.org']);
    assert.equal(table.entries, 3);
    assert.equal(table.warnings.length, 2);
    assert.match(
      table.warnings[0] ?? '',
      /test entry 2: duplicate key 'EXAMPLE\.com\.' ignored; test entry 1 wins/,
    );
    assert.match(table.warnings[1] ?? '', /test entry 4: .*test entry 3 wins/);
  });

  test('plain tables answer a query of any length: a long address cannot turn a listing into an error', async () => {
    const table = inline(['example.com']);
    await expectAll(table, [
      ['domain', `${'a.'.repeat(600)}example.com`, ['example.com', '']],
      ['address', `${'a'.repeat(2000)}@example.com`, ['example.com', '']],
      ['address', `${'a'.repeat(2000)}@example.net`, undefined],
    ]);
  });

  test('a bad entry fails the whole table, naming it and counting the rest', () => {
    const opened = openInline(['example.com', 'bad!', 'also!bad REJECT', '1.2.3.4/8'], 'lists.block');
    assert.equal(opened.ok, false);
    assert.match(
      opened.ok ? '' : opened.reason,
      /^lists\.block entry 2: 'bad!' is not .* \(and 2 more bad entries\)$/,
    );
  });
});

describe('specs', () => {
  test('parseSpec: types, paths resolved against baseDir, inline entries', () => {
    assert.deepEqual(parseSpec('file:/etc/postwarden/block'), {
      type: 'file',
      name: 'file:/etc/postwarden/block',
      path: '/etc/postwarden/block',
    });
    assert.deepEqual(parseSpec('cidr:nets', '/etc/postwarden'), {
      type: 'cidr',
      name: 'cidr:/etc/postwarden/nets',
      path: '/etc/postwarden/nets',
    });
    assert.equal(parseSpec(' regexp:/a/../b ').name, 'regexp:/b');
    const spec = parseSpec(
      'inline:{ 1.2.3.4, example.com REJECT no, user@=OK, { x.org = text, with comma }, }',
    );
    assert.equal(spec.type, 'inline');
    assert.deepEqual(spec.type === 'inline' ? spec.entries : [], [
      '1.2.3.4',
      'example.com REJECT no',
      'user@=OK',
      'x.org = text, with comma',
    ]);
    assert.deepEqual(parseSpec('inline:{}'), { type: 'inline', name: 'inline:{}', entries: [] });
  });

  test('parseSpec throws a typed error whose message reads problem; fix', () => {
    const cases: [string, RegExp][] = [
      ['hash:/etc/postfix/access', /map type 'hash' needs postmap.*file:/],
      ['pcre:/etc/postfix/x', /use regexp:/],
      ['redis:foo', /^unknown map type 'redis'; use one of inline:, file:, cidr:, regexp:, ldap:$/],
      ['ldap:', /ldap: needs the name of a query under ldap\.queries/],
      ['ldap:a b', /ldap: needs the name of a query/],
      ['/etc/postwarden/block', /not a type:name map spec; use one of/],
      ['file:', /file: needs a path/],
      ['file:   ', /file: needs a path/],
      ['inline:a, b', /enclosed in \{ \}/],
      ['inline:{ a, { b }', /unbalanced \{/],
      ['inline:{ a } }', /unbalanced \}/],
      ['inline:{ a }, b }', /unbalanced \}/],
    ];
    for (const [spec, expected] of cases) {
      assert.throws(
        () => parseSpec(spec),
        (error: unknown) =>
          error instanceof MapSpecError &&
          error.code === 'PW-M020' &&
          error.spec === spec &&
          expected.test(error.message),
        spec,
      );
      assert.match(validateSpec(spec) ?? '', expected, spec);
    }
  });

  test('validateSpec checks inline entries but does no I/O', () => {
    assert.equal(validateSpec('file:/does/not/exist'), undefined);
    assert.equal(validateSpec('inline:{ 10.0.0.0/8, ::1/128, example.com OK }'), undefined);
    assert.match(
      validateSpec('inline:{ 10.0.0.0/8, 10.0.0.1/8 }') ?? '',
      /^entry 2: '10\.0\.0\.1\/8' has host bits set/,
    );
    assert.deepEqual(MAP_TYPES, ['inline', 'file', 'cidr', 'regexp', 'ldap']);
  });

  test('isSpec tells specs from entries, IPv6 included', () => {
    const cases: [string, boolean][] = [
      ['file:/x', true],
      ['hash:/etc/postfix/access', true],
      ['inline:{ a }', true],
      ['::1', false],
      ['::1/128', false],
      ['dead:beef::1', false],
      ['fe80::/10', false],
      ['IPv6:2001:db8::1', false],
      ['example.com', false],
      ['user@example.com', false],
    ];
    for (const [item, spec] of cases) assert.equal(isSpec(item), spec, item);
  });

  test('validateMapRef names each bad item of a list', () => {
    assert.deepEqual(validateMapRef(['127.0.0.0/8', '::1/128', 'file:/etc/x', 'example.com']), []);
    const problems = validateMapRef(['127.0.0.1/8', 'hash:/etc/x', 'ok.example', 'not!valid here']);
    assert.deepEqual(
      problems.map((p) => p.item),
      ['127.0.0.1/8', 'hash:/etc/x', 'not!valid here'],
    );
    assert.match(problems[0]?.problem ?? '', /host bits set/);
    assert.deepEqual(validateMapRef('file:/etc/x'), []);
  });
});

describe('file: driver', () => {
  test('comments, blank lines, whitespace, CRLF and a BOM', async () => {
    const file = tmpFile(
      '\uFEFF# block list\r\n\r\n  1.2.3.4   REJECT bad host  \r\n\t# indented comment\nexample.com\n.sub.example.net OK\n',
    );
    const table = open(`file:${file}`);
    assert.equal(table.name, `file:${file}`);
    assert.equal(table.entries, 3);
    await expectAll(table, [
      ['ip', '1.2.3.4', ['1.2.3.4', 'REJECT bad host']],
      ['address', 'x@example.com', ['example.com', '']],
      ['hostname', 'a.sub.example.net', ['.sub.example.net', 'OK']],
      ['text', '# block list', undefined],
    ]);
  });

  test('relative paths resolve against env.baseDir', async () => {
    const file = tmpFile('example.com\n');
    const table = open(`file:${path.basename(file)}`, { baseDir: path.dirname(file) });
    assert.equal(table.name, `file:${file}`);
  });

  test('a bad line is a load error naming file:line and the text', async () => {
    const file = tmpFile('example.com\n# fine\n1.2.3.4\nth!s is bad\n');
    const reason = openFails(`file:${file}`);
    assert.equal(
      reason,
      `${file}:4: 'th!s' is not an IP address, CIDR network, address (user@domain), local part (user@) or domain`,
    );
    const hostBits = openFails(`file:${tmpFile('192.168.1.1/24 x\n')}`);
    assert.match(
      hostBits,
      /:1: '192\.168\.1\.1\/24' has host bits set; write the network, 192\.168\.1\.0\/24$/,
    );
  });

  test('missing file and a directory are load errors', async () => {
    assert.match(openFails(`file:${path.join(tmp, 'absent')}`), /cannot read: ENOENT/);
    assert.match(openFails(`file:${tmp}`), /is not a regular file/);
  });

  test('bounds: file size, line length, entry count', async () => {
    const limits = { maxFileBytes: 1000, maxLineLength: 50, maxEntries: 3 };
    const big = tmpFile(`${'x.example\n'.repeat(101)}`);
    assert.match(openFails(`file:${big}`, { limits }), /has 1010 bytes, over the limit of 1000/);
    const long = tmpFile(`a.example\nb.example ${'v'.repeat(60)}\n`);
    assert.equal(openFails(`file:${long}`, { limits }), `${long}:2: line longer than 50 characters`);
    const many = tmpFile('a.example\n# c\nb.example\nc.example\n\nd.example\n');
    assert.match(openFails(`file:${many}`, { limits }), /:6: more than 3 entries/);
    assert.equal(open(`file:${tmpFile('a.example\nb.example\nc.example\n')}`, { limits }).entries, 3);
    const inlineTooMany = openInline(['a.example', 'b.example', 'c.example', 'd.example'], 'x', { limits });
    assert.equal(inlineTooMany.ok, false);
  });

  test('the default size bound is 16 MiB', async () => {
    const file = tmpFile(Buffer.alloc(16 * 1024 * 1024 + 1, 0x23));
    assert.match(openFails(`file:${file}`), /over the limit of 16777216/);
  });
});

describe('cidr: driver', () => {
  test('IPs and networks only, first match in file order', async () => {
    const file = tmpFile('10.0.0.0/8 wide\n10.1.2.0/24 narrow\n10.1.2.3 host\n2001:db8::/32 v6\n');
    const cidr = open(`cidr:${file}`);
    const plain = open(`file:${file}`);
    await expectAll(cidr, [
      ['ip', '10.1.2.3', ['10.0.0.0/8', 'wide']],
      ['ip', '::ffff:10.1.2.3', ['10.0.0.0/8', 'wide']],
      ['ip', '2001:db8::1', ['2001:db8::/32', 'v6']],
      ['ip', '11.0.0.1', undefined],
      ['domain', 'example.com', undefined],
    ]);
    // The same file as file: takes the most specific entry.
    await expectAll(plain, [
      ['ip', '10.1.2.3', ['10.1.2.3', 'host']],
      ['ip', '10.1.2.4', ['10.1.2.0/24', 'narrow']],
    ]);
    const ordered = open(`cidr:${tmpFile('10.1.2.0/24 narrow\n10.0.0.0/8 wide\n')}`);
    await expectAll(ordered, [
      ['ip', '10.1.2.3', ['10.1.2.0/24', 'narrow']],
      ['ip', '10.9.9.9', ['10.0.0.0/8', 'wide']],
    ]);
  });

  test('names are load errors', async () => {
    const file = tmpFile('10.0.0.0/8 ok\nexample.com no\n');
    assert.equal(openFails(`cidr:${file}`), `${file}:2: 'example.com' is not an IP address or CIDR network`);
    assert.match(openFails(`cidr:${tmpFile('10 x\n')}`), /'10' is not an IP address or CIDR network/);
  });
});

describe('regexp: driver', () => {
  test('first match in file order, case-insensitive by default, i toggles, negation, groups', async () => {
    const file = tmpFile(
      [
        '# comment',
        '/^spam@/ REJECT spammer',
        '/^Exact@example\\.com$/i case-sensitive',
        '/^(.+)@(example\\.com)$/ user $1 at ${2}, $$5',
        '!/\\.test$/ not-test',
        '/anything/ never reached for non-.test names',
        '/\\.test$/',
      ].join('\n'),
    );
    const table = open(`regexp:${file}`);
    assert.equal(table.entries, 6);
    await expectAll(table, [
      ['address', 'SPAM@anywhere.test', ['/^spam@/', 'REJECT spammer']],
      ['address', 'Exact@example.com', ['/^Exact@example\\.com$/i', 'case-sensitive']],
      ['address', 'exact@example.com', ['/^(.+)@(example\\.com)$/', 'user exact at example.com, $5']],
      ['domain', 'example.org', ['!/\\.test$/', 'not-test']],
      ['hostname', 'mx.test', ['/\\.test$/', '']],
      ['text', 'x.TEST', ['/\\.test$/', '']],
      ['ip', '1.2.3.4', ['!/\\.test$/', 'not-test']],
    ]);
  });

  test('if/endif blocks, nested, with negation', async () => {
    const file = tmpFile(
      [
        'if /@example\\.com$/',
        '/^admin@/ admin',
        'if !/^no-/',
        '/^a/ starts-with-a',
        'endif',
        '/^no-a/ no-a',
        'endif',
        '/^a/ outside',
      ].join('\n'),
    );
    const table = open(`regexp:${file}`);
    assert.equal(table.entries, 4);
    await expectAll(table, [
      ['address', 'admin@example.com', ['/^admin@/', 'admin']],
      ['address', 'alice@example.com', ['/^a/', 'starts-with-a']],
      ['address', 'no-a@example.com', ['/^no-a/', 'no-a']],
      ['address', 'alice@example.org', ['/^a/', 'outside']],
      ['address', 'bob@example.org', undefined],
    ]);
  });

  test('POSIX classes are translated', async () => {
    const table = open(`regexp:${tmpFile('/^[[:digit:]]+[[:alpha:]]$/ yes\n')}`);
    await expectAll(table, [
      ['text', '123x', ['/^[[:digit:]]+[[:alpha:]]$/', 'yes']],
      ['text', '123:', undefined],
    ]);
  });

  test('lines it does not understand are load errors naming file:line', async () => {
    const cases: [string, RegExp][] = [
      ['/ok/ x\nexample.com REJECT', /:2: expected \/pattern\/flags, if or endif$/],
      ['/unclosed x', /:1: the pattern has no closing \/$/],
      ['/a/x y', /:1: unknown flag 'x'; regexp: tables accept i and m$/],
      ['/a/iy', /:1: unknown flag 'y'/],
      ['/a/ok', /:1: unknown flag 'o'/],
      ['/a/i/ b', /:1: expected whitespace after \/pattern\/flags$/],
      ['/(unbalanced/ x', /:1: the pattern does not compile: /],
      ['/[[:nope:]]/ x', /:1: unknown character class \[:nope:\]$/],
      ['/(a)/ $2', /:1: \$2 but the pattern has 1 group\(s\)$/],
      ['!/(a)/ $1', /:1: a negated pattern has no groups for \$1$/],
      ['if /a/ result', /:1: if takes a pattern and no result$/],
      ['/a/ x\nendif', /:2: endif without if$/],
      ['/a/ x\nif /b/\n/c/ y', /:2: if without endif$/],
    ];
    for (const [text, expected] of cases) {
      const file = tmpFile(`${text}\n`);
      const reason = openFails(`regexp:${file}`);
      assert.ok(reason.startsWith(`${file}:`), reason);
      assert.match(reason, expected, text);
    }
  });

  test('bounds: query length (an error, so a long input cannot slip past) and rule count', async () => {
    const table = open(`regexp:${tmpFile('/^(a+)+$/ evil\n')}`);
    await expectAll(table, [
      ['text', 'a'.repeat(20), ['/^(a+)+$/', 'evil']],
      ['text', `${'a'.repeat(1025)}!`, { error: /query longer than 1024 characters/ }],
    ]);
    const rules = tmpFile('/a/ 1\n/b/ 2\n/c/ 3\n');
    assert.match(openFails(`regexp:${rules}`, { limits: { maxRegexpRules: 2 } }), /:3: more than 2 rules$/);
  });
});
