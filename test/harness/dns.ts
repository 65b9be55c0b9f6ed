/**
 * test/harness/dns.ts: a real DNS server (dnsmasq) on loopback for integration tests, plus two broken ones.
 *
 * `startDns(zone)` writes a dnsmasq config for the records in `zone` into a fresh temp dir and runs
 * `dnsmasq --keep-in-foreground` as a child process (stopped by PID, never by name) on 127.0.0.1 at a free
 * port (UDP and TCP), in the spirit of the harness recipe (harness.md §7): `no-resolv`, `no-hosts`, no
 * `server=` line, and `address=/#/`, so every name the zone does not define answers NXDOMAIN locally and
 * nothing is ever forwarded. Queries are logged (`log-queries`) to a file in the temp dir: `log()`. It resolves
 * once a query is answered. Point a resolver at it with `resolver.setServers([server.address])`.
 * dnsmasq-base comes from test/harness/install.sh.
 *
 * How the zone maps onto dnsmasq (checked against dnsmasq 2.90):
 * - A and AAAA are `dns-rr=NAME,1|28,HEX` lines, not `host-record`: a host-record also answers the PTR of its
 *   address (first name wins, no option turns that off), so `2.0.0.127.bl.test A 127.0.0.2` would give the
 *   client 127.0.0.2 a forward-confirmed rDNS name. With dns-rr an address only has the PTR that `ptr` gives.
 * - TXT: `txt-record=NAME,"s1","s2"` is ONE record whose character-strings are s1, s2; each string of the zone
 *   is one record, cut here into chunks of at most 255 bytes on UTF-8 boundaries (dnsmasq would cut at 255
 *   bytes, even inside a character). dnsmasq reads config lines of at most 1024 characters, and says
 *   `missing "` for a longer one: a TXT record of more than about 950 bytes is refused here with that reason.
 *   Inside quotes dnsmasq understands `\\ \" \t \n \r \b \e` and keeps any other backslash.
 * - MX: `mx-host=NAME,EXCHANGE,PRIORITY`; PTR: `ptr-record=REVERSE-NAME,TARGET` (in-addr.arpa / ip6.arpa).
 * - CNAME: `cname=NAME,TARGET`. dnsmasq only follows a CNAME to names it holds itself; towards any other name
 *   2.90 answers the bare CNAME with NOERROR (a real resolver would give NXDOMAIN), so startDns refuses a
 *   target the zone does not define, and a CNAME name with other records.
 * - TTL: local data has TTL 0 by default; `zone.ttl` sets `local-ttl`, which dnsmasq applies to dns-rr,
 *   txt-record, mx-host, cname and ptr-record answers alike. `auth-ttl` only affects `auth-zone` answers.
 * - A name that exists with other types answers NODATA (ENODATA in node). Parents of TXT, MX and CNAME names
 *   answer NODATA too (empty non-terminals); parents of names with only A/AAAA or PTR answer NXDOMAIN.
 * - As root dnsmasq drops to `user=nobody` after opening its log and pid file (both in the temp dir); as any
 *   other user it keeps that user.
 *
 * `startSilentDns()` and `startServfailDns()` are tiny node:dgram servers (UDP only) on a free loopback port:
 * one reads queries and never answers (a resolver times out), one answers every query with SERVFAIL. Same
 * `DnsServer` shape; their `log()` lists the queries received, dnsmasq-style (`query[A] name from ...`).
 *
 * Failure: startDns throws for a zone dnsmasq cannot serve as written (bad name or address, unknown CNAME
 * target, line too long), and rejects with dnsmasq's output and log when it exits or does not answer within
 * 5 s. stop() escalates to SIGKILL after 3 s, then removes the temp dir; it is idempotent. A safety net kills
 * every dnsmasq still running and removes its dir when the process exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** Owner name → values. Names are absolute without the trailing dot (one is ignored), case-insensitive. */
export type DnsRecords<T> = Readonly<Record<string, readonly T[]>>;

export interface MxRecord {
  readonly exchange: string;
  readonly priority: number;
}

export interface DnsZone {
  /** name → IPv4 addresses. */
  readonly a?: DnsRecords<string>;
  /** name → IPv6 addresses. */
  readonly aaaa?: DnsRecords<string>;
  /** name → TXT records, one string each; a string longer than 255 bytes becomes several character-strings. */
  readonly txt?: DnsRecords<string>;
  readonly mx?: DnsRecords<MxRecord>;
  /** name → target; the target must be a name this zone defines. */
  readonly cname?: Readonly<Record<string, string>>;
  /** IPv4 or IPv6 address → name (the PTR of its in-addr.arpa / ip6.arpa name). */
  readonly ptr?: Readonly<Record<string, string>>;
  /** TTL in seconds of every answer (dnsmasq `local-ttl`); dnsmasq's default is 0. */
  readonly ttl?: number;
}

export interface DnsServer {
  /** '127.0.0.1:PORT', for Resolver.setServers. */
  readonly address: string;
  readonly host: '127.0.0.1';
  readonly port: number;
  /** Stops the server and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
  /** The query log so far (dnsmasq: its log file, starting with the readiness probe's query). */
  log(): string;
}

export interface DnsOptions {
  /** Port on 127.0.0.1 (UDP, and TCP for dnsmasq); default: a free one. */
  readonly port?: number;
}

const HOST = '127.0.0.1';
/** dnsmasq reads config lines of at most this many characters (2.90: a longer quoted one fails as `missing "`). */
const MAX_LINE = 1024;
/** The name the readiness probe asks for; it is not in any zone, so the answer is NXDOMAIN. */
const PROBE_NAME = 'pw-dns-harness-ready.invalid';

const DNSMASQ = ['/usr/sbin/dnsmasq', '/usr/local/sbin/dnsmasq'].find((p) => existsSync(p)) ?? 'dnsmasq';

/** Sync cleanups of the running dnsmasq instances, for the exit safety net. */
const live = new Set<() => void>();
process.on('exit', () => {
  for (const cleanup of live) cleanup();
});

// ---------------------------------------------------------------------------------------------------------
// Zone → dnsmasq config

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

function dnsName(text: string, what: string): string {
  const name = text.toLowerCase().replace(/\.$/, '');
  if (name.length === 0 || name.length > 253 || !name.split('.').every((label) => LABEL.test(label))) {
    throw new Error(
      `dns zone: ${what} "${text}" is not a DNS name (letters, digits, '-', '_'; dot-separated)`,
    );
  }
  return name;
}

/** The 16 bytes of an IPv6 address as 32 hex digits; `text` has passed net.isIPv6. */
function ipv6Hex(text: string): string {
  let head = text;
  const lastColon = text.lastIndexOf(':');
  const v4 = text.slice(lastColon + 1);
  if (net.isIPv4(v4)) {
    const [a = 0, b = 0, c = 0, d = 0] = v4.split('.').map(Number);
    head = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [left = '', right] = head.split('::');
  const leftGroups = left === '' ? [] : left.split(':');
  const rightGroups = right === undefined || right === '' ? [] : right.split(':');
  const zeros =
    right === undefined ? [] : Array<string>(8 - leftGroups.length - rightGroups.length).fill('0');
  return [...leftGroups, ...zeros, ...rightGroups]
    .map((g) => g.padStart(4, '0'))
    .join('')
    .toLowerCase();
}

function ipv4Hex(text: string): string {
  return text
    .split('.')
    .map((octet) => Number(octet).toString(16).padStart(2, '0'))
    .join('');
}

function address(text: string, family: 4 | 6, what: string): string {
  const ok = family === 4 ? net.isIPv4(text) : net.isIPv6(text) && !text.includes('%');
  if (!ok) throw new Error(`dns zone: ${what} "${text}" is not an IPv${family} address`);
  return family === 4 ? ipv4Hex(text) : ipv6Hex(text);
}

/** The PTR owner name of an address: reversed octets under in-addr.arpa, reversed nibbles under ip6.arpa. */
export function reverseName(ip: string): string {
  if (net.isIPv4(ip)) return `${ip.split('.').reverse().join('.')}.in-addr.arpa`;
  if (net.isIPv6(ip) && !ip.includes('%')) return `${ipv6Hex(ip).split('').reverse().join('.')}.ip6.arpa`;
  throw new Error(`dns zone: ptr key "${ip}" is not an IP address`);
}

/** Cuts `text` into chunks of at most 255 UTF-8 bytes, never inside a character (one empty chunk for ''). */
function characterStrings(text: string): string[] {
  const chunks: string[] = [];
  let chunk = '';
  let bytes = 0;
  for (const ch of text) {
    const size = Buffer.byteLength(ch);
    if (bytes + size > 255) {
      chunks.push(chunk);
      chunk = '';
      bytes = 0;
    }
    chunk += ch;
    bytes += size;
  }
  chunks.push(chunk);
  return chunks;
}

const ESCAPES: Readonly<Record<string, string>> = {
  '\\': '\\\\',
  '"': '\\"',
  '\t': '\\t',
  '\n': '\\n',
  '\r': '\\r',
  '\b': '\\b',
  '\x1b': '\\e',
};

/** A double-quoted dnsmasq config string (commas and '#' are literal inside quotes). */
function quoted(text: string): string {
  let out = '"';
  for (const ch of text) {
    const escaped = ESCAPES[ch];
    if (escaped !== undefined) out += escaped;
    else if (ch.charCodeAt(0) < 0x20 || ch === '\x7f') {
      throw new Error(
        `dns zone: TXT text has control character U+${ch.charCodeAt(0).toString(16)}: "${text}"`,
      );
    } else out += ch;
  }
  return `${out}"`;
}

/** The record lines of `zone` (no server settings); throws when dnsmasq could not serve it as written. */
export function dnsmasqRecords(zone: DnsZone): string[] {
  const lines: string[] = [];
  const owners = new Set<string>();
  const entries = <T>(records: DnsRecords<T> | undefined, what: string): [string, readonly T[]][] =>
    Object.entries(records ?? {}).map(([name, values]) => {
      const owner = dnsName(name, `${what} name`);
      owners.add(owner);
      return [owner, values];
    });

  for (const [name, ips] of entries(zone.a, 'A')) {
    for (const ip of ips) lines.push(`dns-rr=${name},1,${address(ip, 4, `A of ${name}`)}`);
  }
  for (const [name, ips] of entries(zone.aaaa, 'AAAA')) {
    for (const ip of ips) lines.push(`dns-rr=${name},28,${address(ip, 6, `AAAA of ${name}`)}`);
  }
  for (const [name, texts] of entries(zone.txt, 'TXT')) {
    for (const text of texts) {
      const line = `txt-record=${name},${characterStrings(text).map(quoted).join(',')}`;
      if (line.length > MAX_LINE) {
        throw new Error(
          `dns zone: TXT record of ${name} is too long for dnsmasq (its config lines hold ${MAX_LINE} characters; ` +
            `this one needs ${line.length}): "${text.slice(0, 60)}..."`,
        );
      }
      lines.push(line);
    }
  }
  for (const [name, mxs] of entries(zone.mx, 'MX')) {
    for (const { exchange, priority } of mxs) {
      if (!Number.isInteger(priority) || priority < 0 || priority > 65535) {
        throw new Error(`dns zone: MX priority ${priority} of ${name} is not 0..65535`);
      }
      lines.push(`mx-host=${name},${dnsName(exchange, `MX exchange of ${name}`)},${priority}`);
    }
  }
  for (const [ip, target] of Object.entries(zone.ptr ?? {})) {
    const owner = reverseName(ip);
    owners.add(owner);
    lines.push(`ptr-record=${owner},${dnsName(target, `PTR target of ${ip}`)}`);
  }
  const cnames = Object.entries(zone.cname ?? {}).map(
    ([name, target]) => [dnsName(name, 'CNAME name'), dnsName(target, `CNAME target of ${name}`)] as const,
  );
  for (const [name] of cnames) {
    if (owners.has(name)) throw new Error(`dns zone: ${name} has a CNAME and other records`);
  }
  for (const [name] of cnames) owners.add(name);
  for (const [name, target] of cnames) {
    if (!owners.has(target) || target === name) {
      throw new Error(
        `dns zone: CNAME ${name} -> ${target}: dnsmasq only follows a CNAME to a name the zone defines ` +
          '(towards any other it answers the bare CNAME with NOERROR)',
      );
    }
    lines.push(`cname=${name},${target}`);
  }
  if (zone.ttl !== undefined) {
    if (!Number.isInteger(zone.ttl) || zone.ttl < 0) throw new Error(`dns zone: ttl ${zone.ttl} is not >= 0`);
    lines.unshift(`local-ttl=${zone.ttl}`);
  }
  return lines;
}

/** The whole dnsmasq config: authoritative-only on 127.0.0.1:port, no upstream, unknown names NXDOMAIN. */
export function dnsmasqConfig(zone: DnsZone, port: number, dir: string): string {
  return [
    '# dnsmasq config written by test/harness/dns.ts',
    `port=${port}`,
    `listen-address=${HOST}`,
    'bind-interfaces',
    'no-resolv', // no upstream from /etc/resolv.conf, and no server= line below: nothing is ever forwarded
    'no-hosts', // no records from /etc/hosts
    'no-poll',
    'no-negcache',
    'log-queries',
    `log-facility=${path.join(dir, 'dnsmasq.log')}`,
    `pid-file=${path.join(dir, 'dnsmasq.pid')}`,
    // dnsmasq drops privileges only when started as root; naming a user as anyone else would fail.
    ...(process.getuid?.() === 0 ? ['user=nobody'] : []),
    'address=/#/', // every name not defined below answers NXDOMAIN
    ...dnsmasqRecords(zone),
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------------
// dnsmasq process

function tail(file: string, lines = 15): string {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n') : '(none)';
}

/** Binds TCP and UDP on 127.0.0.1:port (0: the kernel picks); the port when both succeeded. */
async function bindBoth(port: number): Promise<number | undefined> {
  const server = net.createServer();
  const tcp = await new Promise<number | undefined>((resolve) => {
    server.once('error', () => resolve(undefined));
    server.listen({ host: HOST, port, exclusive: true }, () => {
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : undefined);
    });
  });
  if (tcp === undefined) return undefined;
  const socket = dgram.createSocket('udp4');
  const udp = await new Promise<boolean>((resolve) => {
    socket.once('error', () => resolve(false));
    socket.bind({ address: HOST, port: tcp, exclusive: true }, () => resolve(true));
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (udp) await new Promise<void>((resolve) => socket.close(() => resolve()));
  return udp ? tcp : undefined;
}

/** A loopback port free for both UDP and TCP. */
async function freeDnsPort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await bindBoth(0);
    if (port !== undefined) return port;
  }
  throw new Error('no loopback port free for both UDP and TCP');
}

/** True once a query to 127.0.0.1:port is answered at all (NXDOMAIN is the expected answer). */
async function answers(port: number): Promise<boolean> {
  const resolver = new Resolver({ timeout: 200, tries: 1 });
  resolver.setServers([`${HOST}:${port}`]);
  try {
    await resolver.resolve4(PROBE_NAME);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOTFOUND' || code === 'ENODATA';
  }
}

export async function startDns(zone: DnsZone, options: DnsOptions = {}): Promise<DnsServer> {
  const records = dnsmasqRecords(zone); // throws before anything is started
  const attempts = options.port === undefined ? 3 : 1;
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freeDnsPort());
    try {
      return await startDnsmasq(zone, port, records.length);
    } catch (err) {
      // Someone took the free port between the check and dnsmasq's bind: pick another.
      if (attempt >= attempts || !/Address already in use/i.test(String(err))) throw err;
    }
  }
}

async function startDnsmasq(zone: DnsZone, port: number, recordCount: number): Promise<DnsServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pw-dns-'));
  const confFile = path.join(dir, 'dnsmasq.conf');
  const logFile = path.join(dir, 'dnsmasq.log');
  const outFile = path.join(dir, 'dnsmasq.out');
  writeFileSync(confFile, dnsmasqConfig(zone, port, dir));

  const out = openSync(outFile, 'a');
  let proc: ChildProcess;
  try {
    proc = spawn(DNSMASQ, ['--keep-in-foreground', `--conf-file=${confFile}`], {
      stdio: ['ignore', out, out],
    });
  } finally {
    closeSync(out);
  }
  let gone = false;
  let spawnError: Error | undefined;
  const exited = new Promise<void>((resolve) => {
    proc.once('exit', () => {
      gone = true;
      resolve();
    });
    proc.once('error', (err) => {
      spawnError = err;
      gone = true;
      resolve();
    });
  });
  const cleanup = () => {
    if (!gone) proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  live.add(cleanup);

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      if (!gone) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }
      live.delete(cleanup);
      rmSync(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && !gone) {
    if (await answers(port)) {
      return {
        address: `${HOST}:${port}`,
        host: HOST,
        port,
        stop,
        log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
      };
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const why = spawnError
    ? `${DNSMASQ} could not be run (${spawnError.message}); run test/harness/install.sh`
    : `dnsmasq on ${HOST}:${port} (${recordCount} records) did not answer${gone ? ' (it exited)' : ' within 5 s'}`;
  const output = `${why}\n--- output:\n${tail(outFile)}\n--- log:\n${tail(logFile)}`;
  await stop();
  throw new Error(output);
}

// ---------------------------------------------------------------------------------------------------------
// Broken servers. The packet code is written by hand: there is no DNS server package in the dependencies,
// and dnsmasq cannot be made to SERVFAIL (or to stay silent) on demand. Only what these two need: the
// 12-byte header and the question section (RFC 1035 §4.1), which a resolver checks against its query.

const TYPES: Readonly<Record<number, string>> = {
  1: 'A',
  2: 'NS',
  5: 'CNAME',
  6: 'SOA',
  12: 'PTR',
  15: 'MX',
  16: 'TXT',
  28: 'AAAA',
  33: 'SRV',
  255: 'ANY',
};

/** The first question of a query: its name, type and where the question section ends; undefined if malformed. */
function parseQuestion(msg: Buffer): { name: string; type: string; end: number } | undefined {
  if (msg.length < 12 || msg.readUInt16BE(4) < 1) return undefined;
  const labels: string[] = [];
  let at = 12;
  for (;;) {
    const len = msg[at];
    if (len === undefined || len > 63) return undefined; // compression pointers never occur in a question
    at += 1;
    if (len === 0) break;
    if (at + len > msg.length) return undefined;
    labels.push(msg.toString('latin1', at, at + len));
    at += len;
  }
  if (at + 4 > msg.length) return undefined;
  const type = msg.readUInt16BE(at);
  return { name: labels.join('.') || '.', type: TYPES[type] ?? `TYPE${type}`, end: at + 4 };
}

/** The SERVFAIL answer to `query`: same id, opcode and RD; QR and RA set; the question echoed, no records. */
function servfail(query: Buffer, questionEnd: number): Buffer {
  const reply = Buffer.alloc(questionEnd);
  query.copy(reply, 0, 0, questionEnd);
  reply[2] = 0x80 | ((query[2] ?? 0) & 0x79); // QR=1, opcode and RD from the query, AA=TC=0
  reply[3] = 0x80 | 2; // RA=1, RCODE=2 (SERVFAIL)
  reply.writeUInt16BE(1, 4); // QDCOUNT
  reply.writeUInt16BE(0, 6); // ANCOUNT
  reply.writeUInt16BE(0, 8); // NSCOUNT
  reply.writeUInt16BE(0, 10); // ARCOUNT: the query's EDNS OPT record is not echoed
  return reply;
}

async function startUdpServer(mode: 'silent' | 'servfail', options: DnsOptions): Promise<DnsServer> {
  const socket = dgram.createSocket('udp4');
  const lines: string[] = [];
  socket.on('message', (msg, from) => {
    const question = parseQuestion(msg);
    if (!question) {
      lines.push(`malformed query (${msg.length} bytes) from ${from.address}#${from.port}`);
      return;
    }
    lines.push(`query[${question.type}] ${question.name} from ${from.address}#${from.port}`);
    if (mode === 'servfail') {
      socket.send(servfail(msg, question.end), from.port, from.address);
      lines.push(`reply ${question.name} is SERVFAIL`);
    }
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: HOST, port: options.port ?? 0, exclusive: true }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.on('error', (err) => lines.push(`socket error: ${err.message}`));
  const port = socket.address().port;
  let stopping: Promise<void> | undefined;
  return {
    address: `${HOST}:${port}`,
    host: HOST,
    port,
    stop: () => (stopping ??= new Promise<void>((resolve) => socket.close(() => resolve()))),
    log: () => lines.map((line) => `${line}\n`).join(''),
  };
}

/** A UDP "DNS server" that reads every query and never answers: resolvers time out (ETIMEOUT). */
export function startSilentDns(options: DnsOptions = {}): Promise<DnsServer> {
  return startUdpServer('silent', options);
}

/** A UDP DNS server that answers every query with RCODE SERVFAIL (ESERVFAIL). */
export function startServfailDns(options: DnsOptions = {}): Promise<DnsServer> {
  return startUdpServer('servfail', options);
}
