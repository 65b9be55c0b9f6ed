/**
 * The `spf` part of `npm run bench` (bench/main.ts): postwarden with `policy.checks: [dnsbl, spf]` (and
 * `[relay, dnsbl, spf]`) against postfix-policyd-spf-python (the Debian package) and the always-DUNNO ceiling,
 * all on one local dnsmasq, in one run. The issue's target: postwarden at ≥ 5× policyd-spf's requests/s at 8
 * connections with a warm cache — a report row, information, not an assertion. Method and reading:
 * bench/README.md. Needs root (port 53, unshare --mount) and policyd-spf, which main.ts checks before the run.
 *
 * What it does:
 * - writes a zone (50 sender domains with SPF records — ip4/ip6, include chains two deep, mx/a, redirect, exists
 *   with a macro, none — two block lists and an allow list with RFC 5782 test points and listed clients in the
 *   documentation ranges) and runs ONE dnsmasq for it (config from test/harness/dns.ts) on 127.0.53.N:53, a
 *   loopback address of its own: glibc's resolv.conf cannot name a port;
 * - runs policyd-spf as Postfix's spawn(8) does, one process per connection with the connection as its stdin
 *   and stdout: a loopback listener in this process hands each accepted socket to a new process, which runs in
 *   a private mount namespace whose /etc/resolv.conf is a bind mount naming only that dnsmasq (`unshare
 *   --mount`, as harness.md §7 does for Postfix); the machine's resolv.conf is never touched, and the
 *   namespace dies with the process;
 * - checks every answer before measuring: postwarden's action for each request must be exactly what the zone
 *   and the config imply (computed here, independently of postwarden's code), policyd-spf's must be a
 *   Received-SPF header for the right client; the first pass also warms postwarden's DNS cache, a second pass
 *   must be answered from it without a single DNS miss (postwarden's own metrics);
 * - measures 1, 8 and 32 connections (closed loop, bench/load.ts), the servers taking turns in slices; every
 *   request carries a never-seen Postfix `instance`, as Postfix's do (policyd-spf keeps per-instance results
 *   for the life of its process, and would otherwise answer repeats from that memory with a bare DUNNO).
 *
 * `--cpu-prof DIR` runs postwarden under `node --cpu-prof` (postwarden-pw.cpuprofile and
 * postwarden-pw-relay.cpuprofile in DIR). Env: BENCH_SECONDS (measured per server and connection count, default
 * 3), BENCH_ROUNDS (slices, default 3), BENCH_WARMUP_SECONDS (default 1; later slices 0.3 s; policyd-spf's as
 * long as its processes need to start, checked, see measure()), BENCH_CONNECTIONS (default 1,8,32). A server
 * that does not start, a wrong answer, a dropped connection: a BenchError (the part is BROKEN). All traffic
 * stays on loopback.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { PolicyClient } from '../src/policy/client.js';
import { encodeRequest } from '../src/policy/codec.js';
import { dnsmasqConfig, type DnsZone, reverseName } from '../test/harness/dns.js';
import {
  type Child,
  freePort,
  processCpuMs,
  registerStopper,
  startChild,
  startProcess,
  waitForLine,
  waitForPolicy,
  which,
} from './children.js';
import { sliceSettings } from './options.js';
import {
  benchPart,
  breaksBy,
  debianProgram,
  detailTable,
  type PartContext,
  type PartResult,
  type ResultRow,
  say,
} from './report.js';
import {
  BenchError,
  type CellResult,
  measureInTurns,
  runSlice,
  type Slice,
  sliceWarmupMs,
  summarize,
} from './load.js';
import { LOCAL_DOMAINS, rcptRequest } from './workload.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(HERE, '../src/cli/main.js');
const DUNNO_SERVER = path.join(HERE, 'dunno-server.js');
const POLICYD_SPF = '/usr/bin/policyd-spf';
const PYTHON = '/usr/bin/python3';
const START_TIMEOUT_MS = 20_000;
const HOSTNAME = 'mx.example.com';

const TARGET_FACTOR = 5;
const TARGET_CONNECTIONS = 8;

// ---------------------------------------------------------------------------------------------------------
// The zone and the workload

type SpfResult = 'pass' | 'fail' | 'softfail' | 'neutral' | 'none';

/** postwarden's default `policy.spf.scores` (the config below keeps them). */
const SPF_SCORES: Readonly<Record<SpfResult, number>> = {
  pass: -1,
  fail: 5,
  softfail: 2,
  neutral: 0,
  none: 0.5,
};

const RANGES = ['192.0.2', '198.51.100', '203.0.113'] as const;
/** Slots are /28s of the documentation /24s (16 each, 48 in all): 0..41 for domains, 42..47 for three ESPs. */
const REGULAR_DOMAINS = 42;
const slotNet = (s: number): string => `${RANGES[s % 3]}.${Math.floor(s / 3) * 16}/28`;
const host = (s: number, h: number): string => `${RANGES[s % 3]}.${Math.floor(s / 3) * 16 + h}`;

const BLOCK_ZEN = 'zen.bench.test';
const BLOCK_BL = 'bl.bench.test';
const ALLOW_WL = 'wl.bench.test';

/** An SPF-publishing (or not) sender domain, and what its record authorizes, through whatever mechanism. */
interface SenderDomain {
  readonly name: string;
  readonly txt: readonly string[];
  /** CIDRs a client must be in to pass. */
  readonly nets: readonly string[];
  /** The result for a client outside `nets` (the record's `all`, or the redirect target's). */
  readonly otherwise: SpfResult;
  /** Unlisted clients inside `nets`. */
  readonly inside: readonly string[];
}

/** ESP k (1..3): `_spf.esp-k.test` → ip4 + include of `_netblocks.esp-k.test` → ip4 + ip6, two includes deep. */
function esp(k: number): { nets: string[]; hosts: string[] } {
  const a = REGULAR_DOMAINS + 2 * (k - 1);
  return {
    nets: [slotNet(a), slotNet(a + 1), `2001:db8:e${k}::/48`],
    hosts: [host(a, 2), host(a + 1, 3), host(a + 1, 9)],
  };
}

function senderDomains(): SenderDomain[] {
  const domains: SenderDomain[] = [];
  const name = (i: number) => `sender-${String(i).padStart(2, '0')}.test`;
  for (let i = 0; i < REGULAR_DOMAINS; i++) {
    const own = slotNet(i);
    const ownHosts = [host(i, 4), host(i, 7), host(i, 8)];
    const k = (i % 3) + 1;
    const provider = esp(k);
    const d = name(i);
    switch (i % 7) {
      case 0:
        domains.push({
          name: d,
          txt: [`v=spf1 ip4:${own} -all`],
          nets: [own],
          otherwise: 'fail',
          inside: ownHosts,
        });
        break;
      case 1:
        domains.push({
          name: d,
          txt: [`v=spf1 ip4:${own} ~all`],
          nets: [own],
          otherwise: 'softfail',
          inside: ownHosts,
        });
        break;
      case 2:
        domains.push({
          name: d,
          txt: [`v=spf1 ip4:${own} include:_spf.esp-${k}.test -all`],
          nets: [own, ...provider.nets],
          otherwise: 'fail',
          inside: [host(i, 4), provider.hosts[0] ?? '', provider.hosts[1] ?? ''],
        });
        break;
      case 3: {
        const mx = [host(i, 1), host(i, 2), host(i, 3)];
        domains.push({
          name: d,
          txt: ['v=spf1 mx a -all'],
          nets: mx.map((ip) => `${ip}/32`),
          otherwise: 'fail',
          inside: mx,
        });
        break;
      }
      case 4:
        domains.push({
          name: d,
          txt: [`v=spf1 ip4:${own} ?all`],
          nets: [own],
          otherwise: 'neutral',
          inside: ownHosts,
        });
        break;
      case 5:
        domains.push({
          name: d,
          txt: [`v=spf1 include:_spf.esp-${k}.test ~all`],
          nets: provider.nets,
          otherwise: 'softfail',
          inside: provider.hosts,
        });
        break;
      default: {
        // A second, non-SPF TXT record, and an SPF record longer than one character-string (255 bytes).
        const filler = Array.from({ length: 24 }, (_, j) => `${host(j, 15)}/32`);
        domains.push({
          name: d,
          txt: [
            `google-site-verification=bench-${i}`,
            `v=spf1 ${filler.map((f) => `ip4:${f}`).join(' ')} ip4:${own} -all`,
          ],
          nets: [...filler, own],
          otherwise: 'fail',
          inside: ownHosts,
        });
      }
    }
  }
  for (const k of [1, 2]) {
    const provider = esp(k);
    domains.push({
      name: name(41 + k),
      txt: [`v=spf1 redirect=_spf.esp-${k}.test`],
      nets: provider.nets,
      otherwise: 'softfail',
      inside: provider.hosts,
    });
  }
  for (const i of [44, 45]) {
    domains.push({
      name: name(i),
      txt: [`bench-verification=${i}`],
      nets: [],
      otherwise: 'none',
      inside: [],
    });
  }
  for (const i of [46, 47]) {
    domains.push({
      name: name(i),
      txt: [`v=spf1 ip6:2001:db8:${i}::/48 ${i === 46 ? '-all' : '~all'}`],
      nets: [`2001:db8:${i}::/48`],
      otherwise: i === 46 ? 'fail' : 'softfail',
      inside: [`2001:db8:${i}::4`, `2001:db8:${i}::7`, `2001:db8:${i}::8`],
    });
  }
  domains.push({ name: name(48), txt: ['v=spf1 -all'], nets: [], otherwise: 'fail', inside: [] });
  const allowed = [host(0, 8), host(1, 8), host(2, 8)];
  domains.push({
    name: name(49),
    txt: [`v=spf1 exists:%{i}.allow.${name(49)} -all`],
    nets: allowed.map((ip) => `${ip}/32`),
    otherwise: 'fail',
    inside: allowed,
  });
  return domains;
}

/** A listed client: the A records each list answers for it. */
interface Listing {
  readonly zen?: readonly string[];
  readonly bl?: readonly string[];
  readonly wl?: string;
}

/** Listing profiles of `host(i, 10)`, i = 0..41, by i % 8; the comment is the DNS lists' sum (reject at 10). */
const PROFILES: readonly Listing[] = [
  { zen: ['127.0.0.2'] }, // SBL 10: rejected by dnsbl
  { zen: ['127.0.0.4'] }, // XBL 10: rejected
  { zen: ['127.0.0.10'] }, // PBL 3, plus SPF
  { bl: ['127.0.0.2'] }, // 4, plus SPF
  { zen: ['127.0.0.11'], bl: ['127.0.0.3'] }, // 3 + 4 = 7: SPF fail (5) takes it over 10
  { zen: ['127.0.0.2'], wl: '127.0.10.2' }, // 10 − 6 (allow list, medium trust) = 4
  { wl: '127.0.10.3' }, // −8 (high trust)
  { zen: ['127.0.0.4', '127.0.0.10'] }, // two patterns answer: 10 + 3 = 13
];

function listings(): Map<string, Listing> {
  const map = new Map<string, Listing>();
  for (let i = 0; i < REGULAR_DOMAINS; i++) map.set(host(i, 10), PROFILES[i % PROFILES.length] ?? {});
  map.set('2001:db8:46::99', { bl: ['127.0.0.2'] });
  map.set('2001:db8:47::99', { zen: ['127.0.0.2'] });
  return map;
}

/** What postwarden's dnsbl config below makes of a listing (weights of `zen`, `bl`, `wl`), computed here. */
function dnsblReading(listing: Listing | undefined): { sum: number; names: string[]; symbols: string[] } {
  const zen = listing?.zen ?? [];
  const last = (code: string) => Number(code.split('.')[3]);
  let zenScore = 0;
  if (zen.includes('127.0.0.2')) zenScore += 10;
  if (zen.some((c) => last(c) >= 4 && last(c) <= 7)) zenScore += 10;
  if (zen.some((c) => last(c) >= 10 && last(c) <= 11)) zenScore += 3;
  const blScore = (listing?.bl ?? []).length > 0 ? 4 : 0;
  const wlScore = listing?.wl !== undefined ? ([-2, -4, -6, -8][last(listing.wl)] ?? 0) : 0;
  const names: string[] = [];
  const symbols: string[] = [];
  if (zenScore > 0) {
    names.push(BLOCK_ZEN);
    symbols.push('DNSBL_LISTED');
  }
  if (blScore > 0) {
    names.push(BLOCK_BL);
    symbols.push('DNSBL_LISTED');
  }
  if (wlScore !== 0) {
    symbols.push(['DNSWL_NONE', 'DNSWL_LOW', 'DNSWL_MEDIUM', 'DNSWL_HIGH'][last(listing?.wl ?? '')] ?? '');
  }
  return { sum: zenScore + blScore + wlScore, names, symbols };
}

const zenText = (ip: string) => `${ip} is listed by zen.bench.test (benchmark data)`;
const blText = (ip: string) => `${ip} sent spam to bl.bench.test (benchmark data)`;

/** The DNS-list query name of an address (reversed octets or nibbles), made without postwarden's code. */
function listName(ip: string, zone: string): string {
  return reverseName(ip).replace(/\.(in-addr|ip6)\.arpa$/, `.${zone}`);
}

function buildZone(domains: readonly SenderDomain[], listed: ReadonlyMap<string, Listing>): DnsZone {
  const a: Record<string, string[]> = {};
  const aaaa: Record<string, string[]> = {};
  const txt: Record<string, string[]> = {};
  const mx: Record<string, { exchange: string; priority: number }[]> = {};
  const add = (records: Record<string, string[]>, owner: string, value: string) => {
    (records[owner] ??= []).push(value);
  };
  domains.forEach((d, i) => {
    const s = i % REGULAR_DOMAINS;
    txt[d.name] = [...d.txt];
    add(a, d.name, host(s, 3));
    mx[d.name] = [{ exchange: `mx.${d.name}`, priority: 10 }];
    add(a, `mx.${d.name}`, host(s, 1));
    add(a, `mx.${d.name}`, host(s, 2));
    add(a, `mail.${d.name}`, host(s, 5));
    if (i < REGULAR_DOMAINS) {
      // The HELO identity of the null-sender requests: passes from host 6 only.
      add(a, `out.${d.name}`, host(s, 6));
      add(txt, `out.${d.name}`, 'v=spf1 a -all');
    }
    if (d.txt[0]?.includes('exists:')) {
      for (const ip of d.inside) add(a, `${ip}.allow.${d.name}`, '127.0.0.2');
    }
  });
  for (const k of [1, 2, 3]) {
    const slot = REGULAR_DOMAINS + 2 * (k - 1);
    txt[`_spf.esp-${k}.test`] = [`v=spf1 ip4:${slotNet(slot)} include:_netblocks.esp-${k}.test ~all`];
    txt[`_netblocks.esp-${k}.test`] = [`v=spf1 ip4:${slotNet(slot + 1)} ip6:2001:db8:e${k}::/48 -all`];
  }
  // RFC 5782 §5 test points: 127.0.0.2 and ::FFFF:7F00:2 listed, 127.0.0.1 not (NXDOMAIN).
  for (const zone of [BLOCK_ZEN, BLOCK_BL, ALLOW_WL]) {
    const code = zone === ALLOW_WL ? '127.0.10.0' : '127.0.0.2';
    add(a, listName('127.0.0.2', zone), code);
    add(a, listName('::ffff:7f00:2', zone), code);
    if (zone !== ALLOW_WL) add(txt, listName('127.0.0.2', zone), `test point of ${zone}`);
  }
  for (const [ip, listing] of listed) {
    for (const code of listing.zen ?? []) add(a, listName(ip, BLOCK_ZEN), code);
    if (listing.zen) add(txt, listName(ip, BLOCK_ZEN), zenText(ip));
    for (const code of listing.bl ?? []) add(a, listName(ip, BLOCK_BL), code);
    // bl.bench.test gives a reason for IPv4 listings only: the IPv6 one has none (NODATA for its TXT).
    if (listing.bl && net.isIPv4(ip)) add(txt, listName(ip, BLOCK_BL), blText(ip));
    if (listing.wl) add(a, listName(ip, ALLOW_WL), listing.wl);
  }
  for (const [owner, values] of Object.entries(a)) {
    const v6 = values.filter((v) => net.isIPv6(v));
    if (v6.length > 0) {
      aaaa[owner] = v6;
      a[owner] = values.filter((v) => !net.isIPv6(v));
    }
  }
  return { a, aaaa, txt, mx, ttl: 3600 };
}

interface BenchRequest {
  readonly attributes: Readonly<Record<string, string>>;
  readonly client: string;
  readonly spf: SpfResult;
  readonly identity: 'mailfrom' | 'helo';
  /** postwarden's action (without `action=`), exactly. */
  readonly expect: RegExp;
  readonly kind: 'dnsbl-reject' | 'score-reject' | 'prepend';
  readonly listed: boolean;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** postwarden's reply texts are cut at 200 characters (src/policy/reply.ts, MAX_TEXT). */
function cut(text: string): string {
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

function contains(nets: readonly string[], ip: string): boolean {
  const list = new net.BlockList();
  for (const cidr of nets) {
    const [address = '', bits = ''] = cidr.split('/');
    const type = net.isIPv6(address) ? 'ipv6' : 'ipv4';
    list.addSubnet(address, Number(bits), type);
  }
  return list.check(ip, net.isIPv6(ip) ? 'ipv6' : 'ipv4');
}

/** A header value as RFC 7208 §9.1 wants it: a dot-atom as it is, anything else a quoted-string. */
function headerValue(value: string): string {
  const dotAtom = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
  return dotAtom.test(value) ? value : `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

interface RequestSpec {
  readonly client: string;
  readonly sender: string;
  readonly helo: string;
  readonly clientName: string;
  readonly spf: SpfResult;
}

/** A request and postwarden's exact answer to it, from the lists' weights and the SPF result. */
function benchRequest(spec: RequestSpec, n: number, listed: ReadonlyMap<string, Listing>): BenchRequest {
  const { client, sender, helo, spf } = spec;
  const identity = sender === '' ? 'helo' : 'mailfrom';
  const listing = listed.get(client);
  const reading = dnsblReading(listing);
  let expect: RegExp;
  let kind: BenchRequest['kind'];
  if (reading.sum >= 10) {
    const reason = listing?.zen ? zenText(client) : listing?.bl && net.isIPv4(client) ? blText(client) : '';
    const names = reading.names.join(', ');
    const text = `Service unavailable; client [${client}] blocked using ${names}${reason ? `; ${reason}` : ''}`;
    expect = new RegExp(`^554 5\\.7\\.1 ${escape(cut(text))}$`);
    kind = 'dnsbl-reject';
  } else {
    const score = reading.sum + SPF_SCORES[spf];
    const symbols = [...reading.symbols, ...(SPF_SCORES[spf] !== 0 ? [`SPF_${spf.toUpperCase()}`] : [])];
    if (score >= 10) {
      const text = `Message refused: score ${score.toFixed(1)} reached 10 (${symbols.join(' ')})`;
      expect = new RegExp(`^554 5\\.7\\.1 ${escape(cut(text))}$`);
      kind = 'score-reject';
    } else {
      const pairs = [
        `client-ip=${client}`,
        `envelope-from=${headerValue(sender === '' ? '<>' : sender)}`,
        `helo=${headerValue(helo)}`,
        `receiver=${HOSTNAME}`,
        `identity=${identity}`,
      ];
      expect = new RegExp(`^PREPEND Received-SPF: ${spf}(?: \\([^()]*\\))? ${escape(pairs.join('; '))};$`);
      kind = 'prepend';
    }
  }
  const users = ['alice', 'bob', 'carol', 'dave'];
  const attributes = rcptRequest(
    {
      client,
      clientName: spec.clientName,
      helo,
      sender,
      recipient: `${users[n % users.length] ?? 'alice'}@${LOCAL_DOMAINS[n % LOCAL_DOMAINS.length] ?? 'example.com'}`,
      serverPort: '25',
    },
    n,
  );
  return { attributes, client, spf, identity, expect, kind, listed: listing !== undefined };
}

/**
 * 205 distinct RCPT requests. Each of the 50 domains four times — a client inside its record (pass unless the
 * domain has none), one outside (its `all`), a client on the DNS lists (inside or outside), and a fourth: the
 * null sender (HELO identity) for every fifth regular domain, else another client inside; IPv6 for the two ip6
 * domains. Then five edge cases: a HELO address literal and a HELO without SPF for the null sender, a sender
 * domain that does not exist, and mixed-case sender domains.
 */
function buildRequests(
  domains: readonly SenderDomain[],
  listed: ReadonlyMap<string, Listing>,
): BenchRequest[] {
  const out: BenchRequest[] = [];
  for (let r = 0; r < 4 * domains.length; r++) {
    const d = r % domains.length;
    const variant = Math.floor(r / domains.length);
    const dom = domains[d] as SenderDomain;
    const v6 = dom.txt[0]?.startsWith('v=spf1 ip6:') ?? false;
    let client: string;
    let sender = `user${r}@${dom.name}`;
    let helo = `mail.${dom.name}`;
    if (variant === 0) client = dom.inside[0] ?? host(d % REGULAR_DOMAINS, 4);
    else if (variant === 1)
      client = v6 ? `2001:db8:${d === 46 ? 47 : 46}::5` : host((d + 11) % REGULAR_DOMAINS, 4);
    else if (variant === 2) {
      if (v6) client = `2001:db8:${d}::99`;
      else client = d < REGULAR_DOMAINS && d % 2 === 0 ? host(d, 10) : host((d + 5) % REGULAR_DOMAINS, 10);
    } else if (d < REGULAR_DOMAINS && d % 5 === 0) {
      sender = '';
      helo = `out.${dom.name}`;
      client = host(d, d % 10 === 0 ? 6 : 7);
    } else client = dom.inside[1] ?? host(d % REGULAR_DOMAINS, 7);
    const spf: SpfResult =
      sender === ''
        ? client === host(d, 6)
          ? 'pass'
          : 'fail'
        : contains(dom.nets, client)
          ? 'pass'
          : dom.otherwise;
    const clientName = variant === 3 ? 'unknown' : `mail.${dom.name}`;
    out.push(benchRequest({ client, sender, helo, clientName, spf }, r, listed));
  }
  const edges: RequestSpec[] = [
    { client: host(3, 4), sender: '', helo: `[${host(3, 4)}]`, clientName: 'unknown', spf: 'none' },
    { client: host(1, 4), sender: '', helo: 'mail.sender-01.test', clientName: 'unknown', spf: 'none' },
    {
      client: host(4, 4),
      sender: 'x@no-such-domain.test',
      helo: 'mx.example.net',
      clientName: 'unknown',
      spf: 'none',
    },
    {
      client: host(0, 4),
      sender: 'Info@SENDER-00.TEST',
      helo: 'mail.sender-00.test',
      clientName: 'unknown',
      spf: 'pass',
    },
    {
      client: esp(3).hosts[1] ?? '',
      sender: 'Bounce@Sender-02.Test',
      helo: 'out.esp-3.test',
      clientName: 'unknown',
      spf: 'pass',
    },
  ];
  edges.forEach((spec, i) => out.push(benchRequest(spec, out.length + i, listed)));
  return out;
}

/** Postfix never reuses an `instance`; neither does the benchmark (see the file comment). */
let instanceCounter = 0;
const nextInstance = (): string => `${(++instanceCounter).toString(16)}.6b02d403.0.0`;

function withInstance(attributes: Readonly<Record<string, string>>): Record<string, string> {
  return { ...attributes, instance: nextInstance() };
}

interface Template {
  readonly head: Buffer;
  readonly tail: Buffer;
}

function templates(requests: readonly BenchRequest[]): Template[] {
  const MARK = '\u0000';
  return requests.map((r) => {
    const [head = '', tail = ''] = encodeRequest({ ...r.attributes, instance: MARK }).split(MARK);
    return { head: Buffer.from(head, 'latin1'), tail: Buffer.from(tail, 'latin1') };
  });
}

interface RequestSource {
  /** The request for connection c (load.ts calls it once per request sent). */
  readonly next: (connection: number) => Buffer;
  /** performance.now() when the last of the connections had its first reply; Infinity while one has none. */
  readonly allAnsweredAt: () => number;
}

/**
 * A fresh request source for one slice: connection c cycles the templates from its own offset. A connection's
 * second request is asked for once its first reply is in, so the source also knows when every connection (for
 * policyd-spf: every process) was answering.
 */
function requestSource(list: readonly Template[], connections: number): RequestSource {
  const positions = new Map<number, number>();
  const firstReply = new Map<number, number>();
  return {
    next: (c) => {
      const known = positions.get(c);
      if (known !== undefined && !firstReply.has(c)) firstReply.set(c, performance.now());
      const i = known ?? (c * 37) % list.length;
      positions.set(c, i + 1 === list.length ? 0 : i + 1);
      const t = list[i] as Template;
      return Buffer.concat([t.head, Buffer.from(nextInstance(), 'latin1'), t.tail]);
    },
    allAnsweredAt: () => (firstReply.size < connections ? Infinity : Math.max(...firstReply.values())),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Programs: dnsmasq, postwarden, policyd-spf behind its spawn listener

function run(command: string, args: readonly string[], log?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      [...args],
      {
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
        maxBuffer: 64 * 2 ** 20,
        timeout: 600_000,
      },
      (error, stdout, stderr) => {
        if (log) writeFileSync(log, `$ ${command} ${args.join(' ')}\n${stdout}${stderr}`, { flag: 'a' });
        if (error) reject(new Error(`${command} ${args.join(' ')}: ${error.message.split('\n')[0] ?? ''}`));
        else resolve(stdout.trim());
      },
    );
  });
}

interface Dns {
  readonly child: Child;
  readonly address: string;
  readonly logFile: string;
}

async function answers(address: string): Promise<boolean> {
  const resolver = new Resolver({ timeout: 200, tries: 1 });
  resolver.setServers([address]);
  try {
    await resolver.resolve4('pw-bench-ready.invalid');
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOTFOUND' || code === 'ENODATA';
  }
}

/**
 * One dnsmasq for the zone, configured as test/harness/dns.ts does (authoritative only, nothing forwarded,
 * queries logged), but on port 53 of a loopback address of its own, 127.0.53.N: resolv.conf cannot name a port.
 * Run through children.ts, so it is stopped with the servers and its CPU can be read.
 */
async function startDnsmasq(zone: DnsZone, dir: string): Promise<Dns> {
  const dnsmasq = which('dnsmasq');
  if (!dnsmasq) throw new BenchError('dnsmasq missing (Debian package dnsmasq-base)');
  let lastError = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const address = `127.0.53.${1 + Math.floor(Math.random() * 254)}`;
    const confDir = mkdtempSync(path.join(dir, 'dnsmasq-'));
    const conf = dnsmasqConfig(zone, 53, confDir).replace(
      /^listen-address=.*$/m,
      `listen-address=${address}`,
    );
    const confFile = path.join(confDir, 'dnsmasq.conf');
    writeFileSync(confFile, conf);
    const child = startProcess(`dnsmasq on ${address}:53`, dnsmasq, [
      '--keep-in-foreground',
      `--conf-file=${confFile}`,
    ]);
    let gone = false;
    void child.exited.then(() => (gone = true));
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && !gone) {
      if (await answers(address)) return { child, address, logFile: path.join(confDir, 'dnsmasq.log') };
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    lastError = child.stderrTail() || 'no answer within 5 s';
    child.process.kill('SIGKILL');
    await child.exited;
    if (!/in use/i.test(lastError)) break;
  }
  throw new BenchError(`dnsmasq did not start: ${lastError}`);
}

/** The `query[…]` lines of dnsmasq's log from byte `from` on, and where the log ends now. */
function dnsQueries(dns: Dns, from = 0): { queries: number; end: number } {
  const log = readFileSync(dns.logFile);
  let queries = 0;
  const needle = Buffer.from('query[');
  for (let at = log.indexOf(needle, from); at >= 0; at = log.indexOf(needle, at + needle.length))
    queries += 1;
  return { queries, end: log.length };
}

interface PostwardenConfig {
  readonly key: 'pw' | 'pw-relay';
  readonly label: string;
  readonly checks: readonly string[];
}

const POSTWARDENS: readonly PostwardenConfig[] = [
  { key: 'pw', label: 'postwarden dnsbl+spf', checks: ['dnsbl', 'spf'] },
  { key: 'pw-relay', label: 'postwarden relay+dnsbl+spf', checks: ['relay', 'dnsbl', 'spf'] },
];

function writePostwardenConfig(
  dir: string,
  variant: PostwardenConfig,
  ports: { readonly policy: number; readonly http: number },
  dnsAddress: string,
): string {
  const config = {
    hostname: HOSTNAME,
    local_domains: [...LOCAL_DOMAINS],
    dns: {
      servers: [dnsAddress],
      // Warm for the whole run: the defaults keep NXDOMAIN ("not listed") 120 s and TXT 300 s; the zone's TTL
      // (A, AAAA) is 3600 s.
      cache: { default_ttl_s: 3600, negative_ttl_s: 3600 },
    },
    policy: {
      listen: `127.0.0.1:${ports.policy}`,
      checks: [...variant.checks],
      relay: { mode: 'enforce' },
      dnsbl: {
        mode: 'enforce',
        lists: [
          { zone: BLOCK_ZEN, codes: { '127.0.0.2': 10, '127.0.0.[4..7]': 10, '127.0.0.[10..11]': 3 } },
          { zone: BLOCK_BL, weight: 4 },
        ],
        dnswl: [{ zone: ALLOW_WL }],
      },
      spf: { mode: 'enforce', header: 'received-spf' },
    },
    http: { listen: `127.0.0.1:${ports.http}` },
    log: { level: 'warn' },
  };
  const file = path.join(dir, `${variant.key}.yml`);
  writeFileSync(file, stringify(config));
  return file;
}

/** postwarden's DNS query counters (`postwarden_dns_queries_total`), summed by cache outcome. */
async function dnsCounters(httpPort: number): Promise<{ hit: number; miss: number; shared: number }> {
  const response = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  const text = await response.text();
  const counts = { hit: 0, miss: 0, shared: 0 };
  for (const match of text.matchAll(/^postwarden_dns_queries_total\{([^}]*)\}\s+(\S+)$/gm)) {
    const cache = /cache="(\w+)"/.exec(match[1] ?? '')?.[1];
    if (cache === 'hit' || cache === 'miss' || cache === 'shared') counts[cache] += Number(match[2]);
  }
  return counts;
}

/** policyd-spf's own config: no log lines per request, never rejects (so its answers are PREPENDs, as postwarden's). */
const POLICYD_CONF = `# written by bench/dns.ts
debugLevel = 0
TestOnly = 1
HELO_reject = False
Mail_From_reject = False
PermError_reject = False
TempError_Defer = False
skip_addresses = 127.0.0.0/8,::ffff:127.0.0.0/104,::1
Header_Type = SPF
Hide_Receiver = No
`;

/**
 * policyd-spf as Postfix's spawn(8) runs it: per accepted connection one process, the connection itself its
 * stdin and stdout (the listener duplicates the socket into the child and closes its own copy, so no byte
 * passes through this process), in a private mount namespace whose /etc/resolv.conf names only the dnsmasq.
 */
class SpawnListener {
  private readonly server: net.Server;
  private readonly live = new Map<number, ChildProcess>();
  private readonly problems: string[] = [];
  private stopping = false;
  spawned = 0;
  port = 0;

  constructor(private readonly command: readonly [string, ...string[]]) {
    this.server = net.createServer({ pauseOnConnect: true }, (socket) => this.accept(socket));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: '127.0.0.1', port: 0 }, () => {
        this.port = (this.server.address() as net.AddressInfo).port;
        resolve(this.port);
      });
    });
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    let child: ChildProcess;
    try {
      child = spawn(this.command[0], this.command.slice(1), { stdio: [socket, socket, 'pipe'] });
    } catch (error) {
      this.problems.push(`spawn failed: ${error instanceof Error ? error.message : String(error)}`);
      socket.destroy();
      return;
    } finally {
      // The child holds the connection now; this copy goes (the connection stays open).
      socket.destroy();
    }
    this.spawned += 1;
    const pid = child.pid;
    if (pid === undefined) {
      child.once('error', (error) => this.problems.push(`spawn failed: ${error.message}`));
      return;
    }
    this.live.set(pid, child);
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => (stderr = (stderr + text).slice(-2000)));
    child.once('exit', (code, signal) => {
      this.live.delete(pid);
      if (!this.stopping && (code !== 0 || stderr.trim() !== '')) {
        this.problems.push(`policyd-spf (pid ${pid}) exited ${code ?? signal ?? '?'}: ${stderr.trim()}`);
      }
    });
  }

  /** CPU time of the live processes, in ms (the same processes at both edges of a window). */
  cpuMs(): number | undefined {
    let total = 0;
    for (const pid of this.live.keys()) {
      const ms = processCpuMs(pid);
      if (ms === undefined) return undefined;
      total += ms;
    }
    return total;
  }

  pids(): number[] {
    return [...this.live.keys()];
  }

  /** The first problem a process had (an exit with a traceback), for the report; undefined when none. */
  problem(): string | undefined {
    return this.problems[0];
  }

  /** Resolves once every process has exited (their connections were closed), or rejects after `ms`. */
  async idle(ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.live.size > 0) {
      if (Date.now() > deadline)
        throw new BenchError(`${this.live.size} policyd-spf process(es) did not exit`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.server.close();
    for (const child of this.live.values()) child.kill('SIGTERM');
    const deadline = Date.now() + 3000;
    while (this.live.size > 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    this.killNow();
  }

  killNow(): void {
    this.stopping = true;
    for (const child of this.live.values()) child.kill('SIGKILL');
  }
}

function namespaced(resolvConf: string, program: readonly string[]): [string, ...string[]] {
  const unshare = which('unshare');
  if (!unshare)
    throw new BenchError('unshare (util-linux) missing: it runs policyd-spf with its own resolv.conf');
  return [
    unshare,
    '--mount',
    '--propagation',
    'private',
    '/bin/sh',
    '-c',
    'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"',
    'policyd-spf',
    resolvConf,
    ...program,
  ];
}

/** What policyd-spf's DNS library would ask, seen from inside such a namespace (pydns or dnspython). */
const RESOLVER_PROBE = `
import spf
lib = spf.DNSLookup.__name__
if lib == 'DNSLookup_pydns':
    import DNS
    servers, port = list(DNS.defaults['server']), DNS.defaults['port']
else:
    import dns.resolver
    r = dns.resolver.get_default_resolver()
    servers, port = list(r.nameservers), r.port
print(lib, spf.__version__.split()[0], port, ','.join(servers))
`;

function versionOf(pkg: string): Promise<string> {
  return run('dpkg-query', ['-W', '-f', '${Version}', pkg]).catch(() => '?');
}

// ---------------------------------------------------------------------------------------------------------
// Checking answers

interface Server {
  readonly key: 'ceiling' | PostwardenConfig['key'] | 'policyd';
  readonly label: string;
  readonly port: number;
  readonly cpuMs: () => number | undefined;
  readonly httpPort?: number;
  readonly child?: Child;
  /** A reply that is a sane answer while measuring. */
  readonly sane: (reply: Buffer) => boolean;
}

const POLICYD_REPLY =
  /^prepend Received-SPF: (Pass|Fail|Softfail|Neutral|None|Temperror|Permerror) \(([^()]*)\) identity=(mailfrom|helo); client-ip=([^;]*); helo=([^;]*); envelope-from=([^;]*); receiver=(\S*) ?$/;

interface PolicydCheck {
  readonly agree: number;
  readonly differ: string[];
  readonly queries: number;
  readonly firstReplyMs: number;
}

/**
 * Sends every request once and compares the answer with the exact one the zone implies. With `recipients`,
 * every fifth message gets a second recipient (same `instance`): a reject must come again, a header only once
 * per message (Postfix would prepend it for every recipient that gets it), so that one must be DUNNO.
 */
async function checkPostwarden(
  server: Server,
  requests: readonly BenchRequest[],
  recipients: boolean,
): Promise<void> {
  const client = await PolicyClient.connect(`127.0.0.1:${server.port}`);
  const wrong: string[] = [];
  const show = (request: BenchRequest, want: RegExp, action: string, what = '') => {
    const a = request.attributes;
    wrong.push(
      `  client ${a['client_address']} sender <${a['sender']}> helo ${a['helo_name']}${what}\n` +
        `    want ${String(want)}\n    got  ${action}`,
    );
  };
  try {
    for (const [i, request] of requests.entries()) {
      const attributes = withInstance(request.attributes);
      const action = await client.query(attributes, 10_000);
      if (!request.expect.test(action)) show(request, request.expect, action);
      if (!recipients || i % 5 !== 0) continue;
      const second = await client.query({
        ...attributes,
        recipient: `second@${LOCAL_DOMAINS[0] ?? 'example.com'}`,
      });
      const want = request.kind === 'prepend' ? /^DUNNO$/ : request.expect;
      if (!want.test(second)) show(request, want, second, ', second recipient of the message');
    }
  } finally {
    client.close();
  }
  if (wrong.length > 0) {
    throw new BenchError(
      `${server.label} answered ${wrong.length} of ${requests.length} requests otherwise than the zone implies:\n` +
        wrong.slice(0, 8).join('\n'),
    );
  }
}

async function checkPolicyd(
  server: Server,
  requests: readonly BenchRequest[],
  dns: Dns,
  listener: SpawnListener,
): Promise<PolicydCheck> {
  const before = dnsQueries(dns);
  const started = performance.now();
  const client = await PolicyClient.connect(`127.0.0.1:${server.port}`);
  const broken: string[] = [];
  const differ: string[] = [];
  let agree = 0;
  let firstReplyMs = NaN;
  try {
    for (const request of requests) {
      const action = await client.query(withInstance(request.attributes), 30_000);
      if (Number.isNaN(firstReplyMs)) firstReplyMs = performance.now() - started;
      const match = POLICYD_REPLY.exec(action);
      const result = match?.[1]?.toLowerCase();
      if (!match || match[4] !== request.client.toLowerCase() || result === 'temperror') {
        broken.push(`  client ${request.client} sender <${request.attributes['sender']}>: got "${action}"`);
        continue;
      }
      if (result === request.spf && match[3] === request.identity) agree += 1;
      else
        differ.push(
          `client ${request.client} sender <${request.attributes['sender']}>: zone implies ${request.spf} ` +
            `(${request.identity}), policyd-spf says ${result} (${match[3] ?? '?'})`,
        );
    }
  } finally {
    client.close();
  }
  await listener.idle();
  if (broken.length > 0) {
    throw new BenchError(
      `policyd-spf gave ${broken.length} of ${requests.length} answers that are not a Received-SPF header for ` +
        `the client (its DNS not reached?):\n${broken.slice(0, 8).join('\n')}`,
    );
  }
  return { agree, differ, queries: dnsQueries(dns, before.end).queries, firstReplyMs };
}

// ---------------------------------------------------------------------------------------------------------
// Report

interface Row extends CellResult {
  readonly server: Server['key'];
  readonly label: string;
  /** req/s over policyd-spf's and over the ceiling's at the same connection count. */
  readonly overPolicyd: number;
  readonly overCeiling: number;
}

const fixed = (value: number, digits: number): string =>
  Number.isFinite(value) ? value.toFixed(digits) : '-';
const percent = (value: number): string => (Number.isFinite(value) ? `${Math.round(value * 100)}%` : '-');

function printTable(rows: readonly Row[]): void {
  const header = [
    'server',
    'conns',
    'req/s',
    'p50 ms',
    'p99 ms',
    'max ms',
    'right',
    'srv CPU µs/req',
    'srv CPU',
    'dns CPU µs/req',
    'gen CPU',
    '÷ policyd-spf',
    '÷ ceiling',
  ];
  const body = rows.map((r) => [
    r.label,
    String(r.connections),
    Math.round(r.rps).toLocaleString('en-US'),
    fixed(r.p50Ms, 3),
    fixed(r.p99Ms, 3),
    fixed(r.maxMs, 3),
    percent(r.expectedShare ?? NaN),
    fixed(r.cpuUsPerRequest, 1),
    percent(r.cpuLoad),
    fixed(r.storeCpuUsPerRequest ?? NaN, 1),
    percent(r.generatorCpuLoad),
    r.server === 'policyd' ? '(1)' : `${fixed(r.overPolicyd, 1)}×`,
    r.server === 'ceiling' ? '(1)' : percent(r.overCeiling),
  ]);
  detailTable(header, body, { breaks: breaksBy(rows, (r) => r.connections) });
}

function countBy<T>(items: readonly T[], key: (item: T) => string): string {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return [...counts].map(([k, n]) => `${n} ${k}`).join(', ');
}

// ---------------------------------------------------------------------------------------------------------
// Main

const settings = () => sliceSettings({ seconds: 3, rounds: 3 });

async function runSpf(
  { dir, cpuProfDir }: PartContext,
  { seconds, rounds, warmup, counts }: ReturnType<typeof settings>,
): Promise<PartResult> {
  const cpus = os.cpus();
  let listener: SpawnListener | undefined;
  const unregister = registerStopper({
    stop: async () => listener?.stop(),
    killNow: () => listener?.killNow(),
  });
  try {
    const domains = senderDomains();
    const listed = listings();
    const zone = buildZone(domains, listed);
    const requests = buildRequests(domains, listed);
    const dns = await startDnsmasq(zone, dir);
    const dnsPid = dns.child.process.pid;

    // policyd-spf: its config, the resolv.conf of its namespace, and what its resolver library sees there.
    const resolvConf = path.join(dir, 'resolv.conf');
    writeFileSync(resolvConf, `# bench/dns.ts: policyd-spf's only resolver\nnameserver ${dns.address}\n`);
    const policydConf = path.join(dir, 'policyd-spf.conf');
    writeFileSync(policydConf, POLICYD_CONF);
    const [unshare, ...probeArgs] = namespaced(resolvConf, [PYTHON, '-c', RESOLVER_PROBE]);
    const probe = await run(unshare, probeArgs);
    const [library = '?', pyspf = '?', probePort = '?', probeServers = '?'] = probe.split(' ');
    if (probeServers !== dns.address || probePort !== '53') {
      throw new BenchError(
        `policyd-spf would ask ${probeServers} port ${probePort}, not the dnsmasq on ${dns.address}:53`,
      );
    }
    listener = new SpawnListener(namespaced(resolvConf, [POLICYD_SPF, policydConf]));
    const policydPort = await listener.listen();
    const spawner = listener;

    // The ceiling and the two postwardens.
    const dunnoPort = await freePort();
    const dunno = startChild('the DUNNO server', DUNNO_SERVER, [String(dunnoPort)]);
    await waitForLine(dunno, 'ready', START_TIMEOUT_MS);
    const servers: Server[] = [
      {
        key: 'ceiling',
        label: 'DUNNO ceiling',
        port: dunnoPort,
        cpuMs: () => processCpuMs(dunno.process.pid),
        sane: (reply) => reply.toString('latin1') === 'action=DUNNO\n\n',
      },
    ];
    const children: Child[] = [dunno];
    const postwardenSane =
      /^action=(?:PREPEND Received-SPF: (?:pass|fail|softfail|neutral|none) |554 5\.7\.1 )/;
    for (const config of POSTWARDENS) {
      const ports = { policy: await freePort(), http: await freePort() };
      const file = writePostwardenConfig(dir, config, ports, dns.address);
      const child = startChild(config.label, MAIN, ['serve', '--config', file], {
        stdoutFile: path.join(dir, `${config.key}.log`),
        nodeArgs: cpuProfDir
          ? [
              '--cpu-prof',
              `--cpu-prof-dir=${cpuProfDir}`,
              `--cpu-prof-name=postwarden-${config.key}.cpuprofile`,
            ]
          : [],
      });
      children.push(child);
      servers.push({
        key: config.key,
        label: config.label,
        port: ports.policy,
        httpPort: ports.http,
        child,
        cpuMs: () => processCpuMs(child.process.pid),
        sane: (reply) => postwardenSane.test(reply.toString('latin1', 0, 60)),
      });
    }
    servers.push({
      key: 'policyd',
      label: 'policyd-spf',
      port: policydPort,
      cpuMs: () => spawner.cpuMs(),
      sane: (reply) =>
        /^action=prepend Received-SPF: (?:Pass|Fail|Softfail|Neutral|None) /.test(
          reply.toString('latin1', 0, 60),
        ),
    });
    const probeRequest = withInstance(requests[0]?.attributes ?? {});
    await Promise.all(
      servers.flatMap((s) =>
        s.child ? [waitForPolicy(s.child, s.port, probeRequest, START_TIMEOUT_MS)] : [],
      ),
    );

    // Answers, and the warm-up: pass 1 fills postwarden's cache, pass 2 must not miss it once.
    const cold = new Map<string, { miss: number; hit: number }>();
    const warmMisses = new Map<string, number>();
    for (const server of servers.filter((s) => s.httpPort !== undefined)) {
      const port = server.httpPort as number;
      const c0 = await dnsCounters(port);
      await checkPostwarden(server, requests, true);
      const c1 = await dnsCounters(port);
      await checkPostwarden(server, requests, false);
      const c2 = await dnsCounters(port);
      cold.set(server.key, { miss: c1.miss - c0.miss, hit: c1.hit - c0.hit });
      warmMisses.set(server.key, c2.miss - c1.miss);
    }
    const policyd = await checkPolicyd(servers[servers.length - 1] as Server, requests, dns, spawner);
    const ceilingClient = await PolicyClient.connect(`127.0.0.1:${dunnoPort}`);
    for (const r of requests.slice(0, 20)) {
      const action = await ceilingClient.query(withInstance(r.attributes));
      if (action !== 'DUNNO') throw new BenchError(`the DUNNO ceiling answered "${action}"`);
    }
    ceilingClient.close();

    // What ran, and the workload.
    const [pkg, python] = await Promise.all([
      versionOf('postfix-policyd-spf-python'),
      run(PYTHON, ['--version']).catch(() => '?'),
    ]);
    say(
      'policyd-spf',
      `postfix-policyd-spf-python ${pkg}, pyspf ${pyspf}, ${python}, ` +
        `DNS through ${library === 'DNSLookup_pydns' ? 'pydns' : 'dnspython'}`,
      `one process per connection (as spawn(8)), connection = its stdin/stdout; private mount namespace`,
      `whose /etc/resolv.conf says only "nameserver ${dns.address}" (its resolver library confirms: ${probeServers}:${probePort})`,
    );
    say(
      'dns',
      `one dnsmasq (${Object.keys(zone.txt ?? {}).length} TXT, ${Object.keys(zone.a ?? {}).length} A owners; TTL ${zone.ttl ?? 0} s)` +
        ` on ${dns.address}:53 for all three`,
    );
    say(
      'workload',
      `${requests.length} distinct RCPT requests, 50 sender domains, cycled; every request a new instance`,
      `SPF (zone): ${countBy(requests, (r) => r.spf)}`,
      `clients: ${requests.filter((r) => r.listed).length} on the DNS lists; ` +
        `postwarden: ${countBy(requests, (r) => r.kind)}`,
    );
    const pwCold = cold.get('pw');
    say(
      'checked',
      `postwarden: every answer as the zone implies (both configs, twice; 2nd recipients too); cold pass ${pwCold?.miss ?? '?'} DNS ` +
        `queries (${fixed((pwCold?.miss ?? NaN) / requests.length, 2)}/request), warm pass ` +
        `${[...warmMisses.values()].join(' and ')} (the cache is warm)`,
      `policyd-spf: ${policyd.agree} of ${requests.length} results as the zone implies; ` +
        `${fixed(policyd.queries / requests.length, 2)} DNS queries per request (no cache between requests); ` +
        `first answer ${fixed(policyd.firstReplyMs, 0)} ms after connecting`,
      ...policyd.differ.slice(0, 5).map((d) => `  differs: ${d}`),
    );
    for (const [key, misses] of warmMisses) {
      if (misses > 0)
        say('note', `${key}: ${misses} DNS misses on the warm pass: the cache is not fully warm`);
    }
    const policydWarmupMs = (conns: number) =>
      Math.max(warmup * 1000, 300 + 2 * policyd.firstReplyMs * Math.ceil(conns / Math.max(1, cpus.length)));
    say(
      'method',
      `${seconds} s measured per server and connection count, in ${rounds} slices taken in turns ` +
        `(warm-up ${warmup} s, later slices ${Math.min(warmup, 0.3)} s;`,
      `policyd-spf's slices ${counts.map((c) => `${fixed(policydWarmupMs(c) / 1000, 1)} s`).join('/')}: ` +
        'its processes start when the connections open, as under spawn(8))',
    );

    // Measure.
    const list = templates(requests);
    const countersBefore = await dnsCounters(servers[1]?.httpPort ?? 0);
    const dnsBefore = dnsQueries(dns);
    const rows: Row[] = [];
    // Warm-ups that were long enough (per server and connection count), and slices re-run with a longer one.
    const learned = new Map<string, number>();
    const used = new Map<string, number>();
    let rerun = 0;
    /**
     * One slice; when some connection had no reply yet as the window opened (policyd-spf's processes were still
     * starting), its samples would hold the start-up: the slice is run again with a longer warm-up.
     */
    const measure = async (server: Server, connections: number, base: number): Promise<Slice> => {
      const key = `${server.key} ${connections}`;
      const first = server.key === 'policyd' ? policydWarmupMs(connections) : 0;
      let warm = Math.max(base, learned.get(key) ?? first);
      for (let attempt = 1; ; attempt++) {
        const source = requestSource(list, connections);
        const started = performance.now();
        const slice = await runSlice({
          port: server.port,
          connections,
          requests: [],
          next: source.next,
          expect: server.sane,
          warmupMs: warm,
          measureMs: (seconds * 1000) / rounds,
          drainMs: 10_000,
          serverCpuMs: server.cpuMs,
          ...(dnsPid !== undefined ? { storeCpuMs: () => processCpuMs(dnsPid) } : {}),
        });
        if (server.key === 'policyd') await spawner.idle();
        const ready = source.allAnsweredAt() - started;
        if (ready <= warm) {
          if (warm > base) learned.set(key, warm);
          used.set(key, Math.max(used.get(key) ?? 0, warm));
          return slice;
        }
        if (attempt === 4) {
          throw new BenchError(
            `a connection still had no reply ${fixed(ready, 0)} ms after it opened (warm-up ${fixed(warm, 0)} ms)`,
          );
        }
        rerun += 1;
        warm = Math.max(2 * warm, 1.5 * ready);
      }
    };
    for (const connections of counts) {
      const slices = await measureInTurns(servers, rounds, `${connections} connection(s)`, (server, round) =>
        measure(server, connections, sliceWarmupMs(warmup, round)).catch((error: unknown) => {
          const why = server.key === 'policyd' ? spawner.problem() : undefined;
          throw error instanceof BenchError
            ? new BenchError(`${server.label}, ${connections} conn: ${error.message}${why ? `\n${why}` : ''}`)
            : error;
        }),
      );
      const rps = (key: Server['key']) => summarize(connections, slices.get(key) ?? []).rps;
      const policydRps = rps('policyd');
      const ceilingRps = rps('ceiling');
      for (const server of servers) {
        const result = summarize(connections, slices.get(server.key) ?? []);
        rows.push({
          ...result,
          server: server.key,
          label: server.label,
          overPolicyd: result.rps / policydRps,
          overCeiling: result.rps / ceilingRps,
        });
      }
    }
    const countersAfter = await dnsCounters(servers[1]?.httpPort ?? 0);
    const dnsDuring = dnsQueries(dns, dnsBefore.end).queries;

    printTable(rows);
    const at = (key: Server['key']) =>
      rows.find((r) => r.server === key && r.connections === TARGET_CONNECTIONS);
    const cpuAt = (key: Server['key']) => {
      const row = at(key);
      return row ? row.cpuUsPerRequest + (row.storeCpuUsPerRequest ?? 0) : NaN;
    };
    say(
      'CPU',
      `per request at ${TARGET_CONNECTIONS} connections, server + dnsmasq: policyd-spf ${fixed(cpuAt('policyd'), 0)} µs, ` +
        `postwarden dnsbl+spf ${fixed(cpuAt('pw'), 0)} µs (${fixed(cpuAt('policyd') / cpuAt('pw'), 1)}× less), ` +
        `relay+dnsbl+spf ${fixed(cpuAt('pw-relay'), 0)} µs`,
      `(policyd-spf runs one process per connection and can use every core; postwarden runs on one)`,
    );
    say(
      'cache',
      `postwarden dnsbl+spf while measuring: ${countersAfter.miss - countersBefore.miss} DNS misses, ` +
        `${countersAfter.hit - countersBefore.hit} cache hits; dnsmasq answered ${dnsDuring} queries in all ` +
        '(policyd-spf asks for every request: it has no cache between requests)',
    );
    const warmed = counts.map((c) => `${fixed((used.get(`policyd ${c}`) ?? NaN) / 1000, 1)} s`);
    say(
      'warm-up',
      `policyd-spf's longest warm-up per slice at ${counts.join('/')} connections: ${warmed.join('/')}, so that ` +
        'every process answered before the window;',
      `${rerun} slice(s) had to be run again with a longer one`,
    );
    const policydAt8 = at('policyd');
    const resultRows: ResultRow[] = POSTWARDENS.flatMap((config) => {
      const row = at(config.key);
      if (!row) return [];
      const main = config.key === 'pw';
      return [
        {
          part: 'spf',
          name: `${config.label.replace('postwarden ', '')}, warm cache, ${TARGET_CONNECTIONS} conn`,
          what: 'req/s',
          unit: 'req/s',
          postwarden: row.rps,
          peerName: 'policyd-spf',
          peer: policydAt8?.rps,
          ratio: row.overPolicyd,
          ...(main
            ? { target: `≥ ${TARGET_FACTOR}× policyd-spf`, pass: row.overPolicyd >= TARGET_FACTOR }
            : {}),
          notes: `${(row.overCeiling * 100).toFixed(1)}% of the DUNNO ceiling; p99 ${fixed(row.p99Ms, 2)} ms vs ${fixed(policydAt8?.p99Ms ?? NaN, 2)} ms`,
        },
      ];
    });
    resultRows.push({
      part: 'spf',
      name: `dnsbl+spf, ${TARGET_CONNECTIONS} conn`,
      what: 'CPU per request (server + dnsmasq)',
      unit: 'µs',
      postwarden: cpuAt('pw'),
      peerName: 'policyd-spf',
      peer: cpuAt('policyd'),
      ratio: cpuAt('pw') / cpuAt('policyd'),
      notes:
        'lower is better; policyd-spf runs a process per connection on every core, postwarden one thread',
    });
    const problem = spawner.problem();
    if (problem) say('note', `a policyd-spf process complained: ${problem.slice(0, 300)}`);
    say(
      'columns',
      'right: share of replies that were a sane answer (postwarden: Received-SPF PREPEND or 554; policyd-spf:',
      'a Received-SPF prepend; ceiling: DUNNO); srv CPU: the server process(es) — for policyd-spf all its',
      'processes — per reply and as load (100% = one core); dns CPU: dnsmasq per reply; gen CPU: the load',
      'generator (this process); ÷ policyd-spf, ÷ ceiling: req/s over theirs at the same connection count',
    );
    const broken = rows.find((r) => (r.expectedShare ?? 1) < 1);
    await spawner.stop();
    if (broken) {
      throw new BenchError(
        `${broken.label} at ${broken.connections} conn gave a wrong answer while measuring: ${broken.unexpected ?? '?'}`,
      );
    }
    return {
      rows: resultRows,
      raw: {
        policydSpf: { package: pkg, pyspf, library, resolver: `${probeServers}:${probePort}` },
        seconds,
        rounds,
        warmup,
        checks: { policyd, cold: Object.fromEntries(cold), warmMisses: Object.fromEntries(warmMisses) },
        rows,
        cpuPerRequestAt8: { policyd: cpuAt('policyd'), pw: cpuAt('pw'), pwRelay: cpuAt('pw-relay') },
        rerun,
      },
    };
  } finally {
    await listener?.stop();
    unregister();
  }
}

export const spfPart = benchPart({
  name: 'spf',
  title:
    'DNSBL + SPF on a warm cache against postfix-policyd-spf-python and an always-DUNNO server (issue 4)',
  needs: () => [
    {
      what: 'root (dnsmasq on port 53 of 127.0.53.N, policyd-spf under unshare --mount)',
      present: () => process.platform === 'linux' && process.getuid?.() === 0,
      fix: 'run npm run bench as root (or leave the part out: --only without spf)',
    },
    debianProgram(POLICYD_SPF, 'postfix-policyd-spf-python'),
    debianProgram('dnsmasq', 'dnsmasq-base'),
    debianProgram('unshare', 'util-linux'),
  ],
  settings,
  run: runSpf,
});
