/**
 * Postfix's configuration as `postconf` prints it, read into values the doctor's judgments take: main.cf
 * parameters (`postconf -x`: `name = value`, `$name` expanded), master.cf services (`postconf -M`) with their
 * `-o` overrides (`postconf -P`: `service/type/name = value`), restriction lists split into their elements
 * (`check_policy_service { inet:..., timeout=10s }` stays one element), and endpoints (`inet:host:port`,
 * `unix:path`, postwarden's `host:port` and `unix:/path`) compared as Postfix would reach them.
 *
 * Pure: no process is run here (src/doctor/postconf.ts runs postconf). Unparsable lines are skipped, never thrown.
 */

export interface MasterService {
  /** The service name as written: `smtp`, `127.0.0.1:10062`, `scan`. */
  readonly name: string;
  /** inet, unix, unix-dgram, fifo, pass. */
  readonly type: string;
  /** The daemon: smtpd, smtp, lmtp, ... */
  readonly command: string;
  /** Its `-o name=value` overrides, `$name` not expanded. */
  readonly overrides: ReadonlyMap<string, string>;
}

export interface PostfixConfig {
  /** main.cf parameters, defaults included, `$name` expanded (postconf -x). */
  readonly main: ReadonlyMap<string, string>;
  readonly services: readonly MasterService[];
}

/** `name = value` lines (postconf, postconf -x, postconf -P) into a map; the value may be empty. */
export function parseParameters(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^(\S+) = ?(.*)$/.exec(line.trimEnd());
    if (match) values.set(match[1] ?? '', match[2] ?? '');
  }
  return values;
}

/** `postconf -M` (one service a line: name type private unpriv chroot wakeup maxproc command args) and `-P`. */
export function parseServices(masterText: string, overridesText: string): MasterService[] {
  const overrides = parseParameters(overridesText);
  const services: MasterService[] = [];
  for (const line of masterText.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 8 || line.startsWith('#')) continue;
    const [name = '', type = ''] = fields;
    const own = new Map<string, string>();
    const prefix = `${name}/${type}/`;
    for (const [key, value] of overrides)
      if (key.startsWith(prefix)) own.set(key.slice(prefix.length), value);
    services.push({ name, type, command: fields[7] ?? '', overrides: own });
  }
  return services;
}

/** The value of a parameter for one service: its `-o` override (with `$name` expanded from main.cf), else main.cf's. */
export function serviceValue(
  config: PostfixConfig,
  service: MasterService | undefined,
  name: string,
): string {
  const own = service?.overrides.get(name);
  return own === undefined ? (config.main.get(name) ?? '') : expand(own, config.main);
}

/** Replaces `$name`, `${name}` and `$(name)` with main.cf's values (postconf -x does this for main.cf itself). */
export function expand(value: string, main: ReadonlyMap<string, string>): string {
  let out = value;
  for (let depth = 0; depth < 5 && out.includes('$'); depth++) {
    out = out.replace(/\$(?:\{(\w+)\}|\((\w+)\)|(\w+))/g, (whole, a?: string, b?: string, c?: string) => {
      return main.get(a ?? b ?? c ?? '') ?? whole;
    });
  }
  return out;
}

/**
 * A restriction list (or any Postfix list) split into its elements at commas and white space; a `{ ... }` group
 * stays one element, braces included.
 */
export function listElements(value: string): string[] {
  const out: string[] = [];
  let current = '';
  let depth = 0;
  for (const ch of value) {
    if (ch === '{') depth++;
    if (ch === '}') depth = Math.max(0, depth - 1);
    if (depth === 0 && (ch === ',' || /\s/.test(ch))) {
      if (current !== '') out.push(current);
      current = '';
      continue;
    }
    current += ch;
  }
  if (current !== '') out.push(current);
  return out;
}

/** One element of a restriction list: a name, and for `check_policy_service` its endpoint. */
export interface Restriction {
  readonly name: string;
  /** check_policy_service, check_*_access and the like: the argument (a `{ }` group: its first element). */
  readonly argument?: string;
}

/** Restrictions that take the next element as their argument (Postfix's smtpd_check.c, the common ones). */
const TAKES_ARGUMENT =
  /^(check_\w+_access|check_policy_service|check_\w+_[am]x_access|reject_rbl_client|reject_rhsbl_\w+|permit_dnswl_client|permit_rhswl_client|check_\w+_ns_access)$/;

export function restrictions(value: string): Restriction[] {
  const elements = listElements(value);
  const out: Restriction[] = [];
  for (let i = 0; i < elements.length; i++) {
    const name = elements[i] ?? '';
    if (TAKES_ARGUMENT.test(name) && i + 1 < elements.length) {
      const raw = elements[++i] ?? '';
      const inner = raw.startsWith('{')
        ? listElements(raw.slice(1, raw.endsWith('}') ? -1 : undefined))
        : [raw];
      out.push({ name, argument: inner[0] ?? '' });
    } else {
      out.push({ name });
    }
  }
  return out;
}

export type Endpoint =
  | { readonly kind: 'inet'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

/** `host:port` or `[v6]:port`; undefined when it is not one. */
export function hostPort(text: string): { host: string; port: number } | undefined {
  const match = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]*):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[2]);
  return port >= 1 && port <= 65535 ? { host: match[1] ?? '', port } : undefined;
}

/** postwarden's listen address (`127.0.0.1:10060`, `[::1]:10060`, `unix:/path`). */
export function listenEndpoint(text: string): Endpoint | undefined {
  if (text.startsWith('unix:')) return { kind: 'unix', path: text.slice(5) };
  const hp = hostPort(text);
  return hp && { kind: 'inet', ...hp };
}

/** A Postfix service endpoint (`inet:host:port`, `unix:private/x`, a bare path); relative paths under the queue dir. */
export function postfixEndpoint(text: string, queueDirectory: string): Endpoint | undefined {
  if (text.startsWith('inet:')) {
    const hp = hostPort(text.slice(5));
    return hp && { kind: 'inet', ...hp };
  }
  const path = text.startsWith('unix:') ? text.slice(5) : text;
  if (path === '' || path.includes(':')) return undefined;
  return { kind: 'unix', path: path.startsWith('/') ? path : `${queueDirectory.replace(/\/$/, '')}/${path}` };
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', 'localhost.localdomain']);

/** Whether Postfix, connecting to `target`, reaches what listens on `listen` (a wildcard listen takes any host). */
export function sameEndpoint(target: Endpoint, listen: Endpoint): boolean {
  if (target.kind === 'unix' || listen.kind === 'unix') {
    return target.kind === 'unix' && listen.kind === 'unix' && target.path === listen.path;
  }
  if (target.port !== listen.port) return false;
  const a = target.host.toLowerCase();
  const b = listen.host.toLowerCase();
  return a === b || ['', '0.0.0.0', '::'].includes(b) || (LOOPBACK_NAMES.has(a) && LOOPBACK_NAMES.has(b));
}

export function showEndpoint(endpoint: Endpoint): string {
  if (endpoint.kind === 'unix') return `unix:${endpoint.path}`;
  return endpoint.host.includes(':')
    ? `[${endpoint.host}]:${endpoint.port}`
    : `${endpoint.host}:${endpoint.port}`;
}

/** `transport:[host]:port` (content_filter, a next hop): the transport and, for an SMTP/LMTP next hop, its endpoint. */
export function parseNexthop(value: string): { transport: string; endpoint?: Endpoint } | undefined {
  const match = /^([^:\s]+):(.*)$/.exec(value.trim());
  if (!match) return undefined;
  const transport = match[1] ?? '';
  const rest = (match[2] ?? '').replace(/^inet:/, '');
  const bracketed = /^\[([^\]]+)\]:(\d{1,5})$/.exec(rest) ?? /^([^:[\]]+):(\d{1,5})$/.exec(rest);
  if (!bracketed) return { transport };
  return { transport, endpoint: { kind: 'inet', host: bracketed[1] ?? '', port: Number(bracketed[2]) } };
}

/** Well-known master.cf service names of smtpd on inet. */
const SERVICE_PORTS: Readonly<Record<string, number>> = {
  smtp: 25,
  submission: 587,
  submissions: 465,
  smtps: 465,
};

/** Where an inet service listens: `host:port`, `port`, or a name (`smtp`); the host defaults to 127.0.0.1. */
export function inetServiceEndpoint(name: string): { host: string; port: number } | undefined {
  const hp = hostPort(name);
  if (hp) return { host: hp.host === '' ? '127.0.0.1' : hp.host, port: hp.port };
  if (/^\d{1,5}$/.test(name)) return { host: '127.0.0.1', port: Number(name) };
  const known = SERVICE_PORTS[name];
  return known === undefined ? undefined : { host: '127.0.0.1', port: known };
}
