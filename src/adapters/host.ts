/**
 * The live mail host, read through its own tools: `postconf -c DIR` (main.cf values, `-M` for master.cf),
 * `dovecot --version`, and the kernel's socket tables (/proc/net/tcp, tcp6) mapped to processes through
 * /proc/PID/fd, to tell which program listens on a port postwarden wants.
 *
 * Contract: probePostfix() resolves with HostFacts or rejects with HostError, whose `exit` is the sysexits
 * code the CLI returns: 69 when Postfix is not installed (postconf not on PATH), 78 when it has no main.cf.
 * Commands have a deadline and bounded output; nothing here writes.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { type Conflict, type HostFacts, type MasterEntry, RESTRICTION_LISTS } from '../core/host-facts.js';
import { EXIT } from '../util/sysexits.js';

export class HostError extends Error {
  constructor(
    readonly exit: number,
    message: string,
  ) {
    super(message);
  }
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program without a shell; never rejects for a non-zero exit. `code` is 127 when it is not found. */
export function runCommand(command: string, args: readonly string[], timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      command,
      [...args],
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => {
        const code =
          error === null
            ? 0
            : (error as NodeJS.ErrnoException).code === 'ENOENT'
              ? 127
              : typeof error.code === 'number'
                ? error.code
                : 1;
        resolve({ code, stdout, stderr: stderr || (error && code !== 0 && !stderr ? error.message : '') });
      },
    );
  });
}

/** The main.cf parameters the generator merges with or checks. */
export const MERGED_PARAMETERS = [
  'postwarden_policy',
  ...RESTRICTION_LISTS,
  'receive_override_options',
  'content_filter',
  'smtpd_tls_security_level',
  'smtpd_helo_required',
  'smtpd_tls_auth_only',
  'smtpd_sender_login_maps',
  'virtual_alias_maps',
] as const;

const FACT_PARAMETERS = [
  'mail_version',
  'config_directory',
  'queue_directory',
  'myhostname',
  'mydestination',
  'virtual_mailbox_domains',
  'mynetworks',
];

/** `name = value` lines (postconf's output) into a record; a value may be empty. */
export function parsePostconf(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z0-9_./:[\]-]+)\s*=\s?(.*)$/.exec(line);
    if (match) out[match[1] ?? ''] = match[2] ?? '';
  }
  return out;
}

/** `postconf -M` lines: the eight columns, then the command's `-o name=value` arguments. */
export function parseMaster(text: string): MasterEntry[] {
  const entries: MasterEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 8 || line.startsWith('#')) continue;
    const [service, type, priv, unpriv, chroot, wakeup, maxproc, command, ...args] = fields as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      ...string[],
    ];
    const options: [string, string][] = [];
    for (let i = 0; i < args.length; i += 1) {
      const arg = args[i] ?? '';
      const option = arg === '-o' ? args[++i] : arg.startsWith('-o') ? arg.slice(2) : undefined;
      if (option === undefined) continue;
      const eq = option.indexOf('=');
      options.push(eq < 0 ? [option, ''] : [option.slice(0, eq), option.slice(eq + 1)]);
    }
    entries.push({ service, type, private: priv, unpriv, chroot, wakeup, maxproc, command, options });
  }
  return entries;
}

/** Postfix's config dir: the one given, else the one postconf reports (Debian: /etc/postfix). */
export async function probePostfix(
  configDir: string | undefined,
): Promise<HostFacts & { readonly dovecotVersion: string }> {
  const defaults = await runCommand('postconf', ['-d', '-h', 'config_directory']);
  if (defaults.code === 127) {
    throw new HostError(
      EXIT.UNAVAILABLE,
      'Postfix is not installed (postconf is not on PATH); install it first: apt-get install postfix (choose "Internet Site"), then run setup again',
    );
  }
  const dir = path.resolve(configDir ?? (defaults.stdout.trim() || '/etc/postfix'));
  if (!existsSync(path.join(dir, 'main.cf'))) {
    throw new HostError(
      EXIT.CONFIG,
      `Postfix has no configuration: ${path.join(dir, 'main.cf')} does not exist; configure Postfix first (dpkg-reconfigure postfix, "Internet Site"), or name its directory with --postfix-config-dir`,
    );
  }
  const [facts, explicit, master, dovecot] = await Promise.all([
    postconf(dir, ['-x', ...FACT_PARAMETERS, ...MERGED_PARAMETERS.filter((p) => p !== 'postwarden_policy')]),
    postconf(dir, ['-n']),
    postconf(dir, ['-M']),
    runCommand('dovecot', ['--version']),
  ]);
  const expanded = parsePostconf(facts);
  const written = parsePostconf(explicit);
  const main: Record<string, string> = {};
  for (const name of MERGED_PARAMETERS) main[name] = written[name] ?? expanded[name] ?? '';
  return {
    postfixVersion: expanded['mail_version'] ?? '',
    configDirectory: dir,
    queueDirectory: expanded['queue_directory'] ?? '/var/spool/postfix',
    myhostname: expanded['myhostname'] ?? '',
    mydestination: expanded['mydestination'] ?? '',
    virtualMailboxDomains: expanded['virtual_mailbox_domains'] ?? '',
    mynetworks: expanded['mynetworks'] ?? '',
    main,
    master: parseMaster(master),
    dovecotVersion: dovecot.code === 0 ? (dovecot.stdout.trim().split(/\s+/)[0] ?? '') : '',
  };
}

async function postconf(dir: string, args: string[]): Promise<string> {
  const result = await runCommand('postconf', ['-c', dir, ...args]);
  if (result.code !== 0) {
    throw new HostError(
      EXIT.CONFIG,
      `postconf -c ${dir} ${args[0] ?? ''} failed: ${firstLine(result.stderr)}`,
    );
  }
  return result.stdout;
}

export const firstLine = (text: string) => text.trim().split('\n')[0] ?? '';

export interface SocketHolder {
  readonly pid: number;
  /** The program's name (/proc/PID/comm) and arguments. */
  readonly program: string;
  readonly args: readonly string[];
}

export interface ListeningSocket {
  readonly host: string;
  readonly port: number;
  /** Every process holding it, lowest pid first (Postfix's master shares its sockets with its smtpd children). */
  readonly holders: readonly SocketHolder[];
}

/** The address in /proc/net/tcp's `0100007F:2774` form. */
function procAddress(hex: string, v6: boolean): { host: string; port: number } {
  const [addr = '', port = '0'] = hex.split(':');
  const words = addr.match(/.{8}/g) ?? [];
  // Each 32-bit word is in host (little-endian) byte order.
  const bytes = words.flatMap((w) => (w.match(/../g) ?? []).reverse().map((b) => Number.parseInt(b, 16)));
  let host: string;
  if (!v6) host = bytes.join('.');
  else if (bytes.slice(0, 12).join() === '0,0,0,0,0,0,0,0,0,0,255,255') host = bytes.slice(12).join('.');
  else {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
    host = groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
  }
  return { host, port: Number.parseInt(port, 16) };
}

/** TCP sockets in LISTEN state, with the process that holds each (when /proc lets us see it). */
export function listeningSockets(proc = '/proc'): ListeningSocket[] {
  const byInode = new Map<string, number[]>();
  for (const pid of readdirSync(proc).filter((d) => /^\d+$/.test(d))) {
    let fds: string[];
    try {
      fds = readdirSync(path.join(proc, pid, 'fd'));
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      try {
        const link = readlinkSync(path.join(proc, pid, 'fd', fd));
        const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
        if (inode !== undefined) byInode.set(inode, [...(byInode.get(inode) ?? []), Number(pid)]);
      } catch {
        // closed meanwhile
      }
    }
  }
  const sockets: ListeningSocket[] = [];
  for (const [file, v6] of [
    ['tcp', false],
    ['tcp6', true],
  ] as const) {
    let text: string;
    try {
      text = readFileSync(path.join(proc, 'net', file), 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] !== '0A') continue; // TCP_LISTEN
      const { host, port } = procAddress(f[1] ?? '', v6);
      const pids = (byInode.get(f[9] ?? '') ?? []).sort((a, b) => a - b);
      sockets.push({ host, port, holders: pids.map((pid) => ({ pid, ...processOf(proc, pid) })) });
    }
  }
  return sockets;
}

function processOf(proc: string, pid: number): { program: string; args: string[] } {
  try {
    const program = readFileSync(path.join(proc, String(pid), 'comm'), 'utf8').trim();
    const args = readFileSync(path.join(proc, String(pid), 'cmdline'), 'utf8')
      .split('\0')
      .filter(Boolean);
    return { program, args };
  } catch {
    return { program: '?', args: [] };
  }
}

/** A port postwarden (or the Postfix it wires) will listen on, and who may hold it already without a conflict. */
export interface WantedPort {
  /** The config key, e.g. `filter.listen`. */
  readonly key: string;
  readonly host: string;
  readonly port: number;
  /** `postwarden`: its own serve; `postfix`: Postfix's master (the re-injection smtpd). */
  readonly owner: 'postwarden' | 'postfix';
}

const isPostwarden = (s: SocketHolder) =>
  (s.program === 'node' || s.program === 'postwarden') &&
  s.args.includes('serve') &&
  s.args.some((a) => a.endsWith('cli/main.js') || a.endsWith('postwarden'));

/** Ports wanted by postwarden that another program listens on, each named with the known neighbour of that port. */
export function portConflicts(
  wanted: readonly WantedPort[],
  sockets: readonly ListeningSocket[],
  knownPeers: Readonly<Record<number, string>>,
): Conflict[] {
  const conflicts: Conflict[] = [];
  for (const w of wanted) {
    const holders = sockets.filter(
      (s) =>
        s.port === w.port &&
        (s.host === w.host || s.host === '0.0.0.0' || s.host === '::' || w.host === '0.0.0.0'),
    );
    for (const s of holders) {
      const ok = s.holders.some((p) => (w.owner === 'postwarden' ? isPostwarden(p) : p.program === 'master'));
      if (ok) continue;
      const first = s.holders[0];
      // Sockets of other users' processes may hide their holders (no /proc access): still a conflict.
      const who =
        first === undefined ? 'a process this user cannot see' : `${first.program} (pid ${first.pid})`;
      const known = knownPeers[w.port];
      conflicts.push({
        what: `${w.key} ${w.host}:${w.port} is taken by ${who}${known ? `; the usual owner of that port is ${known}` : ''}`,
        fix: `give ${w.key} a free port in the postwarden config (postwarden's defaults 10060-10063 avoid postgrey, amavisd-new, postfwd, policyd-weight and rspamd)`,
      });
    }
  }
  return conflicts;
}
