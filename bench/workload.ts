/**
 * The benchmark's workload: a postwarden config with every check of the policy face enforcing, realistic
 * maps (a 10 000-entry client block list, a 5 000-domain sender block list), and a mix of Postfix 3.7 RCPT
 * requests that exercises those checks, each with the reply postwarden must give to it. For the greylisting
 * benchmark (bench/greylist.ts): a config with only the greylist check, and triplets — the n-th of a kind,
 * so the benchmark can make a never-seen one per request, seed known ones, and fill a store with a million.
 *
 * Addresses and names are data only, from documentation and private ranges (TEST-NET-1/2/3, 198.18.0.0/15,
 * 100.64.0.0/10, 10/8, 2001:db8::/32, `.test`/`.example`): no traffic goes anywhere but 127.0.0.1.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { encodeRequest } from '../src/policy/codec.js';

export type RequestKind = 'inbound' | 'relay' | 'auth' | 'block-client' | 'block-sender';

export interface BenchRequest {
  readonly kind: RequestKind;
  readonly attributes: Readonly<Record<string, string>>;
  /** The action postwarden must answer (without `action=`), checked once before measuring. */
  readonly expect: RegExp;
}

export const LOCAL_DOMAINS: readonly string[] = [
  'example.com',
  'example.net',
  'example.org',
  ...Array.from({ length: 17 }, (_, i) => `corp-${String(i + 1).padStart(2, '0')}.example`),
];

const LOCAL_NETWORKS = ['127.0.0.0/8', '::1/128', '172.16.0.0/12', '192.168.0.0/16', '2001:db8:aaaa::/48'];

/** Sender → owning logins (`policy.sender_ownership.map`, inline entries). */
const OWNERSHIP_MAP = [
  'sales@example.com alice@example.com,bob@example.com',
  'info@example.net carol@example.net',
  'noreply@example.com alice@example.com',
  'example.org @example.org',
];

/** `policy.lists.allow.client`: an address, a network, a host name; no request of the mix hits them. */
const CLIENT_ALLOW = ['192.0.2.250', '198.51.100.0/28', 'relay.partner.example'];

/** One block-list client entry per line: 8 000 addresses, 1 500 /24, 400 /28, 100 IPv6 /48 = 10 000. */
function blockedClients(): string[] {
  const lines: string[] = [];
  for (let i = 0; i < 8000; i++) {
    const ip = `10.${Math.floor(i / 250)}.${i % 250}.${((i * 37) % 254) + 1}`;
    lines.push(i % 4 === 0 ? `${ip} Listed by the abuse desk` : ip);
  }
  for (let i = 0; i < 1500; i++) lines.push(`100.${64 + Math.floor(i / 256)}.${i % 256}.0/24`);
  for (let i = 0; i < 400; i++)
    lines.push(`198.${18 + Math.floor(i / 4096)}.${Math.floor(i / 16)}.${(i % 16) * 16}/28 REJECT`);
  for (let i = 0; i < 100; i++) lines.push(`2001:db8:${(i + 1).toString(16)}::/48`);
  return lines;
}

const SPAM_WORDS = ['promo', 'bulk', 'deals', 'newsletter-blast', 'cheap'];

function blockedSenderDomain(i: number): string {
  return `${SPAM_WORDS[i % SPAM_WORDS.length] ?? 'spam'}-${String(i).padStart(5, '0')}.test`;
}

export interface Fixture {
  readonly configPath: string;
  readonly blockClientEntries: number;
  readonly blockSenderEntries: number;
}

/**
 * Writes the maps and a config into `dir`; `level` is the log level of this postwarden instance. With
 * `checks: 'none'` the config runs no check at all (`policy.checks: []`): the cost of the policy face itself.
 */
export function writeFixture(
  dir: string,
  name: string,
  ports: { readonly policy: number; readonly http: number },
  level: 'warn' | 'info',
  checks: 'all' | 'none' = 'all',
): Fixture {
  const clients = blockedClients();
  const senders = Array.from({ length: 5000 }, (_, i) => blockedSenderDomain(i));
  const clientFile = path.join(dir, 'block-clients');
  const senderFile = path.join(dir, 'block-senders');
  writeFileSync(clientFile, `# client block list (benchmark data)\n${clients.join('\n')}\n`);
  writeFileSync(senderFile, `# sender block list (benchmark data)\n${senders.join('\n')}\n`);
  const config = {
    hostname: 'mx.example.com',
    local_domains: [...LOCAL_DOMAINS],
    local_networks: LOCAL_NETWORKS,
    policy: {
      listen: `127.0.0.1:${ports.policy}`,
      checks: checks === 'all' ? ['relay', 'sender_ownership', 'limits', 'lists', 'helo'] : [],
      relay: { mode: 'enforce' },
      sender_ownership: { mode: 'enforce', map: OWNERSHIP_MAP },
      limits: { mode: 'enforce', max_recipients: 100, max_message_bytes: 26_214_400 },
      lists: {
        mode: 'enforce',
        block: { client: `file:${clientFile}`, sender: `file:${senderFile}` },
        allow: { client: CLIENT_ALLOW },
      },
      helo: { mode: 'enforce' },
    },
    http: { listen: `127.0.0.1:${ports.http}` },
    log: { level },
  };
  const configPath = path.join(dir, `${name}.yml`);
  writeFileSync(configPath, stringify(config));
  return { configPath, blockClientEntries: clients.length, blockSenderEntries: senders.length };
}

/** A small deterministic PRNG (mulberry32): the same mix and order in every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Variant {
  readonly client: string;
  readonly clientName: string;
  readonly helo: string;
  readonly sender: string;
  readonly recipient: string;
  readonly serverPort: string;
  readonly sasl?: string;
}

/** All the attributes Postfix 3.7 sends at RCPT (harness.md §3), in its order. */
export function rcptRequest(v: Variant, n: number): Record<string, string> {
  const tls = n % 5 !== 0; // most MTAs speak TLS today
  return {
    request: 'smtpd_access_policy',
    protocol_state: 'RCPT',
    protocol_name: 'ESMTP',
    client_address: v.client,
    client_name: v.clientName,
    client_port: String(40_000 + ((n * 97) % 25_000)),
    reverse_client_name: v.clientName,
    server_address: '192.0.2.25',
    server_port: v.serverPort,
    helo_name: v.helo,
    sender: v.sender,
    recipient: v.recipient,
    recipient_count: '0',
    queue_id: '',
    instance: `${(2700 + n).toString(16)}.6b02d403.${(99_704 + n * 13).toString()}.0`,
    size: String(2_000 + ((n * 7_919) % 400_000)),
    etrn_domain: '',
    stress: '',
    sasl_method: v.sasl !== undefined ? 'PLAIN' : '',
    sasl_username: v.sasl ?? '',
    sasl_sender: '',
    ccert_subject: '',
    ccert_issuer: '',
    ccert_fingerprint: '',
    ccert_pubkey_fingerprint: '',
    encryption_protocol: tls ? 'TLSv1.3' : '',
    encryption_cipher: tls ? 'TLS_AES_256_GCM_SHA384' : '',
    encryption_keysize: tls ? '256' : '0',
    policy_context: '',
  };
}

const DUNNO = /^DUNNO$/;

/**
 * The mix, 100 requests: 70 inbound to a local recipient (pass every check: DUNNO), 10 relay attempts
 * (554), 10 from authenticated users (8 own their sender: DUNNO; 2 do not: 553), 5 clients and 5 senders on
 * the block lists (554) — shuffled deterministically so the kinds interleave.
 */
export function requestMix(): BenchRequest[] {
  const random = prng(20_250_101);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const users = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'postmaster', 'sales', 'info', 'jobs'];
  const local = () => `${pick(users)}@${pick(LOCAL_DOMAINS)}`;
  const out: BenchRequest[] = [];
  let n = 0;
  const add = (kind: RequestKind, v: Variant, expect: RegExp) =>
    out.push({ kind, attributes: rcptRequest(v, n++), expect });

  for (let i = 0; i < 70; i++) {
    const remote = `remote-${i}.test`;
    const v6 = i % 10 === 9;
    const client = v6 ? `2001:db8:fe00::${(i + 1).toString(16)}` : `203.0.113.${i + 1}`;
    const named = i % 3 !== 0;
    add(
      'inbound',
      {
        client,
        clientName: named ? `mail.${remote}` : 'unknown',
        helo: i % 7 === 6 ? `[${v6 ? 'IPv6:' : ''}${client}]` : `mail.${remote}`,
        sender: i % 11 === 10 ? '' : `newsletter+${i}@${remote}`,
        recipient: i % 13 === 12 ? `${pick(users)}+tag@${pick(LOCAL_DOMAINS)}` : local(),
        serverPort: '25',
      },
      DUNNO,
    );
  }
  for (let i = 0; i < 10; i++) {
    const forged = i % 5 === 4;
    add(
      'relay',
      {
        client: `203.0.113.${100 + i}`,
        clientName: 'unknown',
        helo: `host-${i}.dialup.test`,
        sender: forged ? local() : `someone@sender-${i}.test`,
        recipient: `victim${i}@elsewhere-${i}.test`,
        serverPort: '25',
      },
      forged
        ? /^554 5\.7\.1 Sender address <[^>]+> is in a local domain/
        : /^554 5\.7\.1 Relay access denied$/,
    );
  }
  const auth: ReadonlyArray<readonly [login: string, sender: string, owned: boolean]> = [
    ['alice@example.com', 'alice@example.com', true],
    ['alice@example.com', 'alice+lists@example.com', true],
    ['alice@example.com', 'sales@example.com', true],
    ['bob@example.com', 'sales@example.com', true],
    ['carol@example.net', 'info@example.net', true],
    ['dave@example.org', 'board@example.org', true],
    ['erin@corp-03.example', 'erin@corp-03.example', true],
    ['alice@example.com', 'noreply@example.com', true],
    ['mallory@example.com', 'ceo@example.com', false],
    ['bob@example.com', 'info@example.net', false],
  ];
  for (const [i, [login, sender, owned]] of auth.entries()) {
    add(
      'auth',
      {
        client: `198.51.100.${20 + i}`,
        clientName: 'unknown',
        helo: `laptop-${i}`,
        sender,
        recipient: `friend${i}@elsewhere-${i}.test`,
        serverPort: '587',
        sasl: login,
      },
      // Postfix prefixes "<rcpt>: Recipient address rejected:" itself; the text says what is wrong (04adf7d).
      owned ? DUNNO : /^553 5\.7\.1 Sender address not owned by user /,
    );
  }
  for (let i = 0; i < 5; i++) {
    const single = i % 2 === 0;
    const k = 1000 + i * 1111;
    add(
      'block-client',
      {
        client: single
          ? `10.${Math.floor(k / 250)}.${k % 250}.${((k * 37) % 254) + 1}`
          : `198.18.${10 + i}.${3 * 16 + 5}`,
        clientName: 'unknown',
        helo: `mail.block-${i}.test`,
        sender: `sender@block-${i}.test`,
        recipient: local(),
        serverPort: '25',
      },
      /^554 5\.7\.1 (Listed by the abuse desk|Access denied)$/,
    );
  }
  for (let i = 0; i < 5; i++) {
    add(
      'block-sender',
      {
        client: `203.0.113.${200 + i}`,
        clientName: `mx.${blockedSenderDomain(i * 977)}`,
        helo: `mx.${blockedSenderDomain(i * 977)}`,
        sender: `offers@${blockedSenderDomain(i * 977)}`,
        recipient: local(),
        serverPort: '25',
      },
      /^554 5\.7\.1 Access denied$/,
    );
  }
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as BenchRequest, out[i] as BenchRequest];
  }
  return out;
}

/** The wire bytes of each request, as Postfix writes them. */
export function encodeMix(mix: readonly BenchRequest[]): Buffer[] {
  return mix.map((r) => Buffer.from(encodeRequest(r.attributes)));
}

// --- The greylisting benchmark -------------------------------------------------------------------------------

/** Greylisted recipients' local parts: not postmaster@ or abuse@, which postgrey's shipped whitelist spares. */
const GREY_USERS = [
  'alice',
  'bob',
  'carol',
  'dave',
  'erin',
  'frank',
  'grace',
  'heidi',
  'ivan',
  'judy',
  'sales',
  'info',
  'jobs',
  'support',
  'billing',
  'office',
];

/**
 * The client of triplet n: one of the /24s of 10.0.0.0/8 (65 536), one in ten one of 3 001 IPv6 /64s in
 * 2001:db8::/32. One address per network (the host part follows from the network), so the benchmark can
 * compute each network key once when it fills a store.
 */
function greyClient(n: number): string {
  if (n % 10 === 9) {
    const net = n % 3001;
    return `2001:db8:${(0x100 + net).toString(16)}::${((net % 250) + 1).toString(16)}`;
  }
  const net = n % 65_536;
  return `10.${net >> 8}.${net & 255}.${(net % 250) + 1}`;
}

const greySenderDomain = (n: number): string => `sender-${n % 4999}.test`;

/**
 * The triplet (client, sender, recipient) `n` of a kind, as a Postfix 3.7 RCPT request. `tag` (a letter) keeps
 * kinds apart and makes the sender unique: `<tag><n in base 36>@sender-….test`, with no digit run that
 * postgrey or postwarden would fold into `#`. The client, its names and the recipient come from `template`
 * (default n), so a never-seen triplet can reuse one of a few pre-encoded requests and change only the sender.
 * Client names never match postgrey's shipped whitelist nor postwarden's big senders.
 */
export function greylistAttributes(tag: string, n: number, template = n): Record<string, string> {
  const t = template;
  const domain = greySenderDomain(t);
  return rcptRequest(
    {
      ...greylistTriplet(tag, n, t),
      clientName: t % 3 === 0 ? 'unknown' : `mail-${t % 997}.${domain}`,
      helo: `mail.${domain}`,
      serverPort: '25',
    },
    t,
  );
}

/** Only the triplet of greylistAttributes (the same client, sender and recipient), cheaper. */
export function greylistTriplet(
  tag: string,
  n: number,
  template = n,
): { client: string; sender: string; recipient: string } {
  const t = template;
  const user = GREY_USERS[t % GREY_USERS.length] ?? 'alice';
  const domain = LOCAL_DOMAINS[(t >> 4) % LOCAL_DOMAINS.length] ?? 'example.com';
  return {
    client: greyClient(t),
    sender: `${tag}${n.toString(36)}@${greySenderDomain(t)}`,
    recipient: `${user}@${domain}`,
  };
}

/**
 * Never-seen triplets of kind `tag`, one per call, from one counter for the whole run: `next` as wire bytes
 * (100 pre-encoded templates, only the sender's local part changes, so the generator stays cheap), `take` as
 * attributes (for checking answers).
 */
export function uniqueTriplets(tag: string): { next: () => Buffer; take: () => Record<string, string> } {
  const TEMPLATES = 100;
  const MARK = '\u0000';
  const parts = Array.from({ length: TEMPLATES }, (_, t) => {
    const attributes = greylistAttributes(tag, 0, t);
    attributes['sender'] = `${MARK}@${greySenderDomain(t)}`;
    const [head = '', tail = ''] = encodeRequest(attributes).split(MARK);
    return { head: `${head}${tag}`, tail };
  });
  let n = 0;
  return {
    next: () => {
      const i = n++;
      const part = parts[i % TEMPLATES] as { head: string; tail: string };
      return Buffer.from(`${part.head}${i.toString(36)}${part.tail}`, 'latin1');
    },
    take: () => {
      const i = n++;
      return greylistAttributes(tag, i, i % TEMPLATES);
    },
  };
}

export type GreylistStore =
  | { readonly driver: 'sqlite'; readonly path: string }
  | { readonly driver: 'redis'; readonly url: string; readonly keyPrefix: string };

/**
 * A postwarden config with only the greylist check: `delay_s` as given, the auto-whitelist off (`awl_after:
 * 0`), everything else at its default (default_allow on, no header); log level warn (no decision lines). One
 * exception: `store.timeout_ms` 2000 (default 250), the check's own deadline — on a busy machine a store
 * operation that waits longer shows in the latency figures instead of turning into `on_error`'s DUNNO, which the
 * benchmark must count as a wrong answer.
 */
export function writeGreylistConfig(
  dir: string,
  name: string,
  ports: { readonly policy: number; readonly http: number },
  store: GreylistStore,
  delayS: number,
): string {
  const config = {
    hostname: 'mx.example.com',
    local_domains: [...LOCAL_DOMAINS],
    local_networks: LOCAL_NETWORKS,
    store:
      store.driver === 'sqlite'
        ? { driver: 'sqlite', path: store.path, timeout_ms: 2000 }
        : { driver: 'redis', url: store.url, key_prefix: store.keyPrefix, timeout_ms: 2000 },
    policy: {
      listen: `127.0.0.1:${ports.policy}`,
      checks: ['greylist'],
      greylist: { mode: 'enforce', delay_s: delayS, awl_after: 0 },
    },
    http: { listen: `127.0.0.1:${ports.http}` },
    log: { level: 'warn' },
  };
  const configPath = path.join(dir, `${name}.yml`);
  writeFileSync(configPath, stringify(config));
  return configPath;
}
