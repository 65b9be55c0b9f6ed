/**
 * Open relay: as an outside client (XCLIENT ADDR=<a documentation address outside mynetworks>), ask the local
 * Postfix to take mail for a remote domain with each classic relay trick — plain remote recipient, percent hack,
 * bang path, quoted local part, source route, two @, and empty-host variants — and see every one refused at
 * RCPT. Never DATA: each try ends with RSET, the session with QUIT, so no mail is ever sent.
 *
 * Without XCLIENT the probe would come from 127.0.0.1, which mynetworks trusts: a refusal there proves nothing,
 * and the finding says so. The judgment (judgeRelay) is pure; probeRelay does the talking.
 */
import { cidrContains, parseCidr, parseIp } from '../util/ip.js';
import { finding, type Finding, ok } from './finding.js';
import { listElements } from './postfix-config.js';
import { SmtpSession } from './smtp.js';

/** A domain that can never be local or exist (RFC 2606). */
export const REMOTE_DOMAIN = 'relay-test.invalid';
const USER = 'postwarden-relay-probe';

export interface Trick {
  readonly name: string;
  readonly rcpt: string;
}

/** The classic relay tricks against a local domain. */
export function relayTricks(localDomain: string, remote = REMOTE_DOMAIN): Trick[] {
  return [
    { name: 'plain remote recipient', rcpt: `${USER}@${remote}` },
    { name: 'percent hack', rcpt: `${USER}%${remote}@${localDomain}` },
    { name: 'bang path', rcpt: `${remote}!${USER}@${localDomain}` },
    { name: 'quoted local part', rcpt: `"${USER}@${remote}"@${localDomain}` },
    { name: 'source route', rcpt: `@${localDomain}:${USER}@${remote}` },
    { name: 'two @', rcpt: `${USER}@${remote}@${localDomain}` },
    { name: 'empty host name (percent, no domain)', rcpt: `${USER}%${remote}` },
    { name: 'empty host name (bang, no domain)', rcpt: `${remote}!${USER}` },
    { name: 'empty host name (source route)', rcpt: `@:${USER}@${remote}` },
  ];
}

const CANDIDATES = ['192.0.2.77', '198.51.100.77', '203.0.113.77'];

/**
 * A documentation address (RFC 5737) outside every trusted network given (a host whose own LAN is one of them
 * must not look like an open relay); networks wider than /8 (/16 for IPv6) are not looked at, since trusting
 * them is the open relay to catch. Undefined when all three are inside.
 */
export function outsideAddress(trusted: readonly string[]): string | undefined {
  const nets = trusted
    .flatMap((t) => {
      const net = parseCidr(t.replace(/^\[([^\]]+)\]/, '$1'));
      if (net) return [net];
      const ip = parseIp(t);
      return ip ? [parseCidr(`${ip.text}/${ip.family === 4 ? 32 : 128}`)].filter((n) => n !== undefined) : [];
    })
    .filter((n) => n.prefix >= (n.family === 4 ? 8 : 16));
  return CANDIDATES.find((c) => {
    const ip = parseIp(c);
    return ip !== undefined && !nets.some((n) => cidrContains(n, ip));
  });
}

export interface TrickResult {
  readonly trick: Trick;
  /** The RCPT reply, or why the try did not get that far. */
  readonly code?: number;
  readonly reply: string;
}

export type RelayProbe =
  | { readonly kind: 'done'; readonly client: string; readonly results: readonly TrickResult[] }
  | { readonly kind: 'no-xclient'; readonly greeting: string }
  | { readonly kind: 'no-outside-address' }
  | { readonly kind: 'unreachable'; readonly reason: string }
  | { readonly kind: 'refused'; readonly step: string; readonly reply: string };

/** Every trick must be refused (4xx or 5xx at RCPT); a 2xx is an open relay, named by its trick. */
export function judgeRelay(target: string, probe: RelayProbe): Finding[] {
  switch (probe.kind) {
    case 'unreachable':
      return [
        {
          ...finding(
            'open-relay',
            'error',
            `cannot reach the local Postfix on ${target} (${probe.reason}): relay not tested`,
            'start Postfix, or name its smtpd with --smtp HOST:PORT',
          ),
          unreachable: true,
        },
      ];
    case 'no-outside-address':
      return [
        finding(
          'open-relay',
          'warning',
          'mynetworks trusts 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24 (documentation networks): no outside address to test from',
          'list only your own networks in mynetworks',
        ),
      ];
    case 'no-xclient':
      return [
        finding(
          'open-relay',
          'warning',
          `${target} does not offer XCLIENT to this client: a test from 127.0.0.1 (trusted by mynetworks) cannot prove anything, so none was made`,
          "let the doctor pose as an outside client: postconf -e 'smtpd_authorized_xclient_hosts = 127.0.0.1' && postfix reload (or test from an outside host: swaks --server <your MX> --to someone@example.com)",
          probe.greeting,
        ),
      ];
    case 'refused':
      return [
        finding(
          'open-relay',
          'warning',
          `${target} refused the probe at ${probe.step}: relay not tested`,
          'see the reply; XCLIENT must be allowed from this host (smtpd_authorized_xclient_hosts) and MAIL FROM:<> accepted',
          probe.reply,
        ),
      ];
    case 'done': {
      const accepted = probe.results.filter((r) => r.code !== undefined && r.code >= 200 && r.code < 300);
      if (accepted.length > 0) {
        return accepted.map((r) =>
          finding(
            'open-relay',
            'error',
            `OPEN RELAY: ${target} accepted the ${r.trick.name} <${r.trick.rcpt}> from outside client ${probe.client}`,
            "keep relay control first: postconf -e 'smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination' and list only your own networks in mynetworks, then postfix reload; check allow_percent_hack, swap_bangpath and relay_domains",
            r.reply,
          ),
        );
      }
      const unclear = probe.results.filter((r) => r.code === undefined);
      if (unclear.length > 0) {
        return [
          finding(
            'open-relay',
            'warning',
            `${unclear.length} relay trick(s) got no RCPT reply: ${unclear.map((r) => r.trick.name).join(', ')}`,
            'run doctor again; if it persists, look at Postfix’s log for the session',
            unclear.map((r) => r.reply).join('; '),
          ),
        ];
      }
      return [
        ok(
          'open-relay',
          `all ${probe.results.length} relay tricks refused from outside client ${probe.client}`,
          probe.results.map((r) => `${r.trick.name}: ${r.reply}`).join('; '),
        ),
      ];
    }
  }
}

/** The capabilities of an EHLO reply, upper case. */
function capabilities(lines: readonly string[]): string[] {
  return lines.slice(1).map((l) => l.toUpperCase());
}

/** Talks to Postfix at `target` and tries each trick (MAIL FROM:<>, RCPT, RSET); never sends DATA. */
export async function probeRelay(
  target: { host: string; port: number },
  trusted: readonly string[],
  localDomain: string,
  timeoutMs: number,
): Promise<RelayProbe> {
  const client = outsideAddress(trusted);
  if (client === undefined) return { kind: 'no-outside-address' };
  let opened;
  try {
    opened = await SmtpSession.open(target, timeoutMs);
  } catch (error) {
    return { kind: 'unreachable', reason: (error as NodeJS.ErrnoException).code ?? (error as Error).message };
  }
  const { session, greeting } = opened;
  try {
    const ehlo = await session.command('EHLO doctor.postwarden.invalid');
    if (!capabilities(ehlo.lines).some((c) => c.startsWith('XCLIENT')))
      return { kind: 'no-xclient', greeting: greeting.text };
    const x = await session.command(`XCLIENT ADDR=${client} NAME=[UNAVAILABLE]`);
    if (x.code !== 220) return { kind: 'refused', step: 'XCLIENT', reply: x.text };
    const again = await session.command('EHLO doctor.postwarden.invalid');
    if (again.code !== 250) return { kind: 'refused', step: 'EHLO', reply: again.text };
    const results: TrickResult[] = [];
    for (const trick of relayTricks(localDomain)) {
      const mail = await session.command('MAIL FROM:<>');
      if (mail.code !== 250) return { kind: 'refused', step: 'MAIL FROM:<>', reply: mail.text };
      const rcpt = await session.command(`RCPT TO:<${trick.rcpt}>`);
      results.push({ trick, code: rcpt.code, reply: rcpt.text });
      await session.command('RSET');
    }
    return { kind: 'done', client, results };
  } catch (error) {
    return { kind: 'unreachable', reason: (error as Error).message };
  } finally {
    await session.quit();
  }
}

/** mynetworks as a list of its CIDR and address entries (tables are skipped). */
export function trustedNetworks(mynetworks: string): string[] {
  return listElements(mynetworks).filter((e) => !e.includes(':') || e.startsWith('['));
}
