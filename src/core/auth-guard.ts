/**
 * The auth guard: Dovecot's auth-policy decisions (protocols.md A3) on the state port, so every postwarden
 * instance sharing a store agrees on who is blocked.
 *
 * What counts: a failed login (Dovecot's `report` with `success: false`) whose password hash is new for that
 * address and login within `window_s`. Dovecot sends `H(nonce || login || NUL || password)` truncated to a few
 * bits, never the password, so the guard keeps a bounded set of those hashes per address+login: a phone with a
 * stale password sends the same hash again and again and counts once; guessing sends many distinct hashes and
 * counts each. Counters per address, per address+login and per network (/24, /64) start at the first counted
 * failure and expire `window_s` later. Repeats are counted apart and block the address+login only at
 * `repeat_block_after` (mechanisms such as CRAM-MD5 give Dovecot no password to hash, so every guess repeats).
 *
 * Answers (`allow`, before and after the password check):
 *   trusted (`allow` map) or no address       0
 *   address+login blocked                     -1 for the rest of auth_block_s
 *   address or network blocked, not exempt    -1
 *   exempt (logged in here within exempt_s)   0
 *   address failures ≥ tarpit_after           tarpit seconds from tarpit_steps_s
 * A failure that reaches a `*_block_after` threshold writes a block marker that lives `auth_block_s`; refusals
 * the block causes (`policy_reject`, 2.4's `fail_type: policy`) are not counted again, so a block ends on time.
 * A successful login clears its address+login counters and exempts that address+login from address and
 * network blocks (a shared NAT address guessed at by someone else) for `exempt_s`, renewed by later successes
 * once half of it has passed.
 *
 * Keys (readable, for an admin with `redis-cli --scan` or sqlite3): `auth:fail:addr:<ip>`,
 * `auth:fail:net:<cidr>`, `auth:fail:login:<ip>|<login>`, `auth:tries:login:<ip>|<login>`, `auth:pw:<ip>|<login>`
 * (the hash set), `auth:block:addr:<ip>`, `auth:block:net:<cidr>`, `auth:block:login:<ip>|<login>`,
 * `auth:ok:<ip>|<login>`.
 *
 * Failure behaviour: a store that cannot answer rejects (StoreUnavailable) and an allow map that cannot answer
 * throws LookupFailed; callers decide (the HTTP route fails open as Dovecot does, the policy check goes through
 * `policy.on_error`). Password hashes are kept in the store only, never returned or logged.
 */
import { z } from 'zod';
import { networkOf, parseIp } from '../util/ip.js';
import { find } from './locality.js';
import type { LookupTable } from './ports.js';
import { mapRefSchema } from './schema.js';
import type { Store } from './store.js';

const threshold = (what: string, fallback: number) =>
  z
    .number()
    .int()
    .min(0)
    .max(100_000)
    .default(fallback)
    .describe(`Counted failures ${what} that block it for auth_block_s; 0 = never`);

export const authPolicySchema = z
  .strictObject({
    enabled: z
      .boolean()
      .default(false)
      .describe(
        "Answer Dovecot's auth-policy requests at POST /dovecot/auth-policy on the HTTP face, and let policy.auth_block refuse blocked clients",
      ),
    api_key_file: z
      .string()
      .default('/etc/postwarden/auth-policy.key')
      .describe(
        'A file holding the key Dovecot sends as X-API-Key (auth_policy_server_api_header; first line, 16+ characters); without it the endpoint answers 503 and Dovecot lets logins through',
      ),
    window_s: z
      .number()
      .int()
      .min(60)
      .max(7 * 86_400)
      .default(3600)
      .describe('How long failures are counted, from the first one'),
    auth_block_s: z
      .number()
      .int()
      .min(1)
      .max(30 * 86_400)
      .default(1800)
      .describe('How long a block lasts (Dovecot then answers every login with a failure)'),
    login_block_after: threshold('from one address for one login (distinct passwords)', 5),
    address_block_after: threshold('from one address (any login)', 10),
    network_block_after: threshold('from one network (ipv4_prefix / ipv6_prefix)', 30),
    repeat_block_after: threshold(
      'from one address for one login (every failure, repeats of one password included)',
      100,
    ),
    tarpit_after: z
      .number()
      .int()
      .min(0)
      .max(100_000)
      .default(3)
      .describe('Counted failures from one address after which each login waits (tarpit); 0 = never'),
    tarpit_steps_s: z
      .array(z.number().int().min(1).max(60))
      .max(32)
      .default([1, 2, 4, 8])
      .describe(
        'Seconds Dovecot waits before checking the password: the first entry at tarpit_after failures, the next at one more, the last one from then on',
      ),
    exempt_s: z
      .number()
      .int()
      .min(0)
      .max(90 * 86_400)
      .default(7 * 86_400)
      .describe(
        'How long a successful login exempts that address+login from address and network blocks; 0 = never',
      ),
    ipv4_prefix: z.number().int().min(8).max(32).default(24).describe('IPv4 network size counted (bits)'),
    ipv6_prefix: z.number().int().min(16).max(128).default(64).describe('IPv6 network size counted (bits)'),
    max_passwords: z
      .number()
      .int()
      .min(2)
      .max(256)
      .default(32)
      .describe('Distinct password hashes remembered per address+login (the newest are kept)'),
    allow: mapRefSchema
      .default([])
      .describe('Trusted client networks (IPs, CIDRs, or a map): never counted, never blocked'),
    block_text: z
      .string()
      .min(1)
      .max(200)
      .default('Too many failed logins; try again later')
      .describe("Text of a refusal (Dovecot's msg; the policy check's reply)"),
    max_body_bytes: z
      .number()
      .int()
      .min(1024)
      .max(1_048_576)
      .default(16_384)
      .describe('Largest request body Dovecot may send (larger answers 413)'),
    max_in_flight: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(1000)
      .describe(
        'Requests waiting for the store at most; more are answered at once without counting (fail-open, counted as shed)',
      ),
  })
  .describe('Dovecot auth policy: blocks password guessing across IMAP, POP3 and SMTP AUTH');

export type AuthPolicySettings = z.infer<typeof authPolicySchema>;

/** The longest login kept in a key; Dovecot's usernames are far shorter, longer ones are cut. */
const MAX_LOGIN = 256;
/** Dovecot's hash is hex: 3 characters for the default 12 bits, 128 for a whole SHA-512. */
const PWHASH = /^[0-9a-fA-F]{0,128}$/;

/** Who a request is about: the canonical address, its network and the login as keys use them. */
export interface AuthSubject {
  readonly address: string;
  readonly network: string;
  readonly login: string;
}

/** The subject of a request; undefined when the remote is not an IP address (a local socket, doveadm). */
export function authSubject(
  remote: string,
  login: string,
  settings: Pick<AuthPolicySettings, 'ipv4_prefix' | 'ipv6_prefix'>,
): AuthSubject | undefined {
  const ip = parseIp(remote);
  if (!ip) return undefined;
  const network =
    networkOf(ip, ip.family === 4 ? settings.ipv4_prefix : settings.ipv6_prefix)?.text ?? ip.text;
  return { address: ip.text, network, login: login.trim().toLowerCase().slice(0, MAX_LOGIN) };
}

export type BlockScope = 'login' | 'address' | 'network';

const pair = (s: AuthSubject): string => `${s.address}|${s.login}`;

/** The store keys of a subject: the one place that knows them. */
export function authKeys(s: AuthSubject) {
  return {
    failAddress: `auth:fail:addr:${s.address}`,
    failNetwork: `auth:fail:net:${s.network}`,
    failLogin: `auth:fail:login:${pair(s)}`,
    triesLogin: `auth:tries:login:${pair(s)}`,
    passwords: `auth:pw:${pair(s)}`,
    block: {
      login: `auth:block:login:${pair(s)}`,
      address: `auth:block:addr:${s.address}`,
      network: `auth:block:net:${s.network}`,
    } satisfies Record<BlockScope, string>,
    exempt: `auth:ok:${pair(s)}`,
  };
}

/** What the store holds about a subject when Dovecot asks `allow`. */
export interface GuardSnapshot {
  /** The scopes with a live block marker. */
  readonly blocked: ReadonlySet<BlockScope>;
  readonly exempt: boolean;
  /** Counted failures from the address in the current window. */
  readonly addressFailures: number;
}

/** Dovecot's answer: `-1` refuse, `0` accept, `> 0` tarpit seconds; `msg` goes to the auth log's reason. */
export interface AllowAnswer {
  readonly status: number;
  readonly msg: string;
  /** What decided, for metrics (bounded): accept, tarpit, reject, trusted, exempt, no_address. */
  readonly outcome: 'accept' | 'tarpit' | 'reject' | 'trusted' | 'exempt' | 'no_address';
  /** For a refusal: the block that caused it. */
  readonly scope?: BlockScope;
}

/** The block that refuses a subject, if any: its own address+login block always; address and network blocks
 * unless it is exempt. */
export function blockingScope(snapshot: Omit<GuardSnapshot, 'addressFailures'>): BlockScope | undefined {
  if (snapshot.blocked.has('login')) return 'login';
  if (snapshot.exempt) return undefined;
  if (snapshot.blocked.has('address')) return 'address';
  if (snapshot.blocked.has('network')) return 'network';
  return undefined;
}

/** Tarpit seconds for a count of failures; 0 below `tarpit_after` (or when it is 0). */
export function tarpitSeconds(
  failures: number,
  settings: Pick<AuthPolicySettings, 'tarpit_after' | 'tarpit_steps_s'>,
): number {
  const steps = settings.tarpit_steps_s;
  if (settings.tarpit_after === 0 || steps.length === 0 || failures < settings.tarpit_after) return 0;
  return steps[Math.min(failures - settings.tarpit_after, steps.length - 1)] ?? 0;
}

/** The answer to `allow` from what the store holds (pure). */
export function decideAllow(
  snapshot: GuardSnapshot,
  settings: Pick<AuthPolicySettings, 'tarpit_after' | 'tarpit_steps_s' | 'block_text'>,
): AllowAnswer {
  const scope = blockingScope(snapshot);
  if (scope) return { status: -1, msg: settings.block_text, outcome: 'reject', scope };
  if (snapshot.exempt) return { status: 0, msg: '', outcome: 'exempt' };
  const seconds = tarpitSeconds(snapshot.addressFailures, settings);
  return seconds > 0
    ? { status: seconds, msg: '', outcome: 'tarpit' }
    : { status: 0, msg: '', outcome: 'accept' };
}

/** Counter values after a counted failure. */
export interface FailureCounts {
  readonly login: number;
  readonly address: number;
  readonly network: number;
  /** All failures of the address+login, repeats included. */
  readonly tries: number;
}

/** The scopes whose threshold the counts reached (pure); a threshold of 0 never blocks. */
export function crossedScopes(
  counts: FailureCounts,
  settings: Pick<
    AuthPolicySettings,
    'login_block_after' | 'address_block_after' | 'network_block_after' | 'repeat_block_after'
  >,
): BlockScope[] {
  const reached = (count: number, limit: number) => limit > 0 && count >= limit;
  const scopes: BlockScope[] = [];
  if (
    reached(counts.login, settings.login_block_after) ||
    reached(counts.tries, settings.repeat_block_after)
  ) {
    scopes.push('login');
  }
  if (reached(counts.address, settings.address_block_after)) scopes.push('address');
  if (reached(counts.network, settings.network_block_after)) scopes.push('network');
  return scopes;
}

/** Adds a hash to a stored set (comma-separated, oldest first), keeping the newest `max`. */
export function addPassword(stored: string | undefined, hash: string, max: number): string {
  const list = stored ? stored.split(',') : [];
  list.push(hash);
  return list.slice(-max).join(',');
}

/** What Dovecot reports after a login. */
export interface AuthReport {
  readonly remote: string;
  readonly login: string;
  /** Dovecot's truncated hex hash of nonce, login and password. */
  readonly pwhash: string;
  readonly success: boolean;
  /** The failure was the policy's own refusal (2.3 `policy_reject`, 2.4 `fail_type: policy`). */
  readonly policyReject: boolean;
  /** 2.4: internal, credentials, account, expired, disabled, policy; '' when absent. */
  readonly failType: string;
}

export type ReportOutcome =
  /** A success: counters of the address+login cleared, exemption written. */
  | 'success'
  /** A failure with a new password: every counter went up. */
  | 'counted'
  /** A failure with a password already seen: only the repeat counter went up. */
  | 'repeat'
  /** Not a guess (policy refusal, internal error, expired or disabled account) or no address: nothing counted. */
  | 'ignored'
  | 'trusted';

export interface ReportResult {
  readonly outcome: ReportOutcome;
  /** Blocks this report started (each scope once per block), with what is blocked: the address, the network
   * or `address|login`. */
  readonly blocked: readonly {
    readonly scope: BlockScope;
    readonly target: string;
    readonly failures: number;
  }[];
}

/** Failure types that are not someone guessing a password (2.4 `fail_type`). */
const NOT_GUESSING = new Set(['policy', 'internal', 'expired', 'disabled']);

/** A hash-set update that loses this many races in a row counts the password as new (errs towards counting). */
const CAS_ATTEMPTS = 4;

export class AuthGuard {
  constructor(
    private readonly settings: AuthPolicySettings,
    private readonly store: Store,
    /** The `allow` map's tables (trusted networks). */
    private readonly trusted: readonly LookupTable[],
    private readonly now: () => number = Date.now,
  ) {}

  private async isTrusted(address: string): Promise<boolean> {
    if (this.trusted.length === 0) return false;
    return (await find(this.trusted, { kind: 'ip', value: address })).status === 'found';
  }

  /** What the store holds about a subject: one read. */
  private async snapshot(subject: AuthSubject): Promise<GuardSnapshot> {
    const keys = authKeys(subject);
    const [login, address, network, exempt, failures] = await this.store.getMany([
      keys.block.login,
      keys.block.address,
      keys.block.network,
      keys.exempt,
      keys.failAddress,
    ]);
    const blocked = new Set<BlockScope>();
    if (login !== undefined) blocked.add('login');
    if (address !== undefined) blocked.add('address');
    if (network !== undefined) blocked.add('network');
    return { blocked, exempt: exempt !== undefined, addressFailures: Number(failures ?? 0) || 0 };
  }

  /** Dovecot's `allow`: refuse, tarpit or accept. */
  async allow(remote: string, login: string): Promise<AllowAnswer> {
    const subject = authSubject(remote, login, this.settings);
    if (!subject) return { status: 0, msg: '', outcome: 'no_address' };
    if (await this.isTrusted(subject.address)) return { status: 0, msg: '', outcome: 'trusted' };
    return decideAllow(await this.snapshot(subject), this.settings);
  }

  /**
   * The block that refuses an SMTP client (the policy check): at CONNECT by address (`login` ''), for a SASL
   * client by address and login, with its exemption. Undefined when none does, or the client is trusted.
   */
  async blockFor(remote: string, login: string): Promise<BlockScope | undefined> {
    const subject = authSubject(remote, login, this.settings);
    if (!subject || (await this.isTrusted(subject.address))) return undefined;
    const keys = authKeys(subject);
    const names: [BlockScope, string][] = [
      ['address', keys.block.address],
      ['network', keys.block.network],
    ];
    if (subject.login !== '') names.unshift(['login', keys.block.login]);
    const values = await this.store.getMany([...names.map(([, key]) => key), keys.exempt]);
    const blocked = new Set(names.filter((_, i) => values[i] !== undefined).map(([scope]) => scope));
    const exempt = subject.login !== '' && values[names.length] !== undefined;
    return blockingScope({ blocked, exempt });
  }

  /** Dovecot's `report`: counts a failure, or clears and exempts after a success. */
  async report(report: AuthReport): Promise<ReportResult> {
    const subject = authSubject(report.remote, report.login, this.settings);
    if (!subject) return { outcome: 'ignored', blocked: [] };
    if (await this.isTrusted(subject.address)) return { outcome: 'trusted', blocked: [] };
    const keys = authKeys(subject);
    if (report.success) {
      await this.recordSuccess(keys);
      return { outcome: 'success', blocked: [] };
    }
    if (report.policyReject || NOT_GUESSING.has(report.failType)) return { outcome: 'ignored', blocked: [] };
    const hash = PWHASH.test(report.pwhash) ? report.pwhash.toLowerCase() : '';
    const fresh = await this.rememberPassword(keys.passwords, hash);
    const window = this.settings.window_s;
    const counts: FailureCounts = fresh
      ? await this.store
          .incrementMany([
            { key: keys.failLogin, by: 1, ttlS: window },
            { key: keys.failAddress, by: 1, ttlS: window },
            { key: keys.failNetwork, by: 1, ttlS: window },
            { key: keys.triesLogin, by: 1, ttlS: window },
          ])
          .then(([login = 0, address = 0, network = 0, tries = 0]) => ({ login, address, network, tries }))
      : { login: 0, address: 0, network: 0, tries: await this.store.increment(keys.triesLogin, 1, window) };
    const blocked: { scope: BlockScope; target: string; failures: number }[] = [];
    const targets: Record<BlockScope, string> = {
      login: pair(subject),
      address: subject.address,
      network: subject.network,
    };
    for (const scope of crossedScopes(counts, this.settings)) {
      const failures = scope === 'login' ? Math.max(counts.login, counts.tries) : counts[scope];
      const reason = `${failures} failed logins within ${window} s`;
      if (await this.store.setIfAbsent(keys.block[scope], reason, this.settings.auth_block_s)) {
        blocked.push({ scope, target: targets[scope], failures });
      }
    }
    return { outcome: fresh ? 'counted' : 'repeat', blocked };
  }

  /**
   * Clears the address+login's failures and writes its exemption (the time, in ms): one read, then writes only
   * for what is there, and the exemption only when absent or older than half of exempt_s — most successes (a
   * phone polling every few minutes) write nothing.
   */
  private async recordSuccess(keys: ReturnType<typeof authKeys>): Promise<void> {
    const cleared = [keys.failLogin, keys.triesLogin, keys.passwords];
    const values = await this.store.getMany([...cleared, keys.exempt]);
    const writes: Promise<unknown>[] = cleared
      .filter((_, i) => values[i] !== undefined)
      .map((key) => this.store.delete(key));
    const exemptS = this.settings.exempt_s;
    const age = this.now() - Number(values[cleared.length] ?? NaN);
    if (exemptS > 0 && !(age < exemptS * 500)) {
      writes.push(this.store.set(keys.exempt, String(this.now()), exemptS));
    }
    await Promise.all(writes);
  }

  /** Adds the hash to the address+login's set; true when it was not there (a new password). */
  private async rememberPassword(key: string, hash: string): Promise<boolean> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const stored = await this.store.get(key);
      if (stored !== undefined && stored.split(',').includes(hash)) return false;
      const next = addPassword(stored, hash, this.settings.max_passwords);
      if (await this.store.compareAndSet(key, stored, next, this.settings.window_s)) return true;
    }
    return true;
  }
}
