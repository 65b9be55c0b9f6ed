/**
 * Is something live where Postfix sends mail? The policy service takes connections on policy.listen; the filter
 * greets on filter.listen with postwarden's SMTP banner; the re-injection smtpd greets on filter.reinject.
 * Probes connect with a short deadline (I/O); judgeBanner and judgeConnect (pure) turn the outcome into findings.
 */
import net from 'node:net';
import { finding, type Finding, ok } from './finding.js';
import { type Endpoint, listenEndpoint, showEndpoint } from './postfix-config.js';
import { SmtpSession } from './smtp.js';

export type Probe =
  { readonly ok: true; readonly greeting?: string } | { readonly ok: false; readonly reason: string };

const target = (e: Endpoint) =>
  e.kind === 'unix' ? { path: e.path } : { host: e.host || '127.0.0.1', port: e.port };

function reasonOf(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  return e.code ?? e.message;
}

/** Connects and hangs up. */
export function connectProbe(endpoint: Endpoint, timeoutMs: number): Promise<Probe> {
  return new Promise((resolve) => {
    const socket = net.connect(target(endpoint) as net.NetConnectOpts);
    const done = (probe: Probe) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(probe);
    };
    const timer = setTimeout(
      () => done({ ok: false, reason: `no connection within ${timeoutMs} ms` }),
      timeoutMs,
    );
    socket.once('connect', () => done({ ok: true }));
    socket.once('error', (e) => done({ ok: false, reason: reasonOf(e) }));
  });
}

/** Connects, reads the greeting, QUITs. */
export async function bannerProbe(endpoint: Endpoint, timeoutMs: number): Promise<Probe> {
  try {
    const { session, greeting } = await SmtpSession.open(target(endpoint), timeoutMs);
    await session.quit();
    return { ok: true, greeting: greeting.text };
  } catch (error) {
    return { ok: false, reason: reasonOf(error) };
  }
}

/** The policy service takes connections on each policy.listen address. */
export function judgePolicyListen(listen: string, probe: Probe): Finding {
  if (probe.ok) return ok('policy-listen', `the policy service takes connections on ${listen}`);
  return finding(
    'policy-listen',
    'error',
    `nothing takes connections on policy.listen ${listen} (${probe.reason}): Postfix answers every recipient with its default_action or 451 4.3.5`,
    'start postwarden (systemctl start postwarden; journalctl -u postwarden for why it stopped) or correct policy.listen',
  );
}

/**
 * `what` (the filter, the re-injection smtpd) greets on `address` with 220; `mustSay` (postwarden's banner) when
 * given must be in the greeting, else someone else listens there.
 */
export function judgeBanner(
  check: string,
  what: string,
  address: string,
  probe: Probe,
  fix: string,
  mustSay?: string,
): Finding {
  if (!probe.ok) {
    return finding(
      check,
      'error',
      `${what} is down: nothing answers on ${address} (${probe.reason}); mail waits in Postfix's queue (deferred)`,
      fix,
    );
  }
  const greeting = probe.greeting ?? '';
  if (!greeting.startsWith('220')) {
    return finding(check, 'error', `${what} on ${address} does not greet with 220`, fix, greeting);
  }
  if (mustSay !== undefined && !greeting.includes(mustSay)) {
    return finding(
      check,
      'error',
      `something else answers on ${address}, not ${what} (another filter on the port?)`,
      `stop the other program or move filter.listen and content_filter to a free port`,
      greeting,
    );
  }
  return ok(check, `${what} answers on ${address}`, greeting);
}

export async function probeListeners(
  settings: {
    policyListen: readonly string[];
    filter: { enabled: boolean; mode: string; listen: string; reinject: string };
  },
  timeoutMs: number,
): Promise<Finding[]> {
  const findings: Finding[] = [];
  for (const listen of settings.policyListen) {
    const e = listenEndpoint(listen);
    if (e) findings.push(judgePolicyListen(listen, await connectProbe(e, timeoutMs)));
  }
  if (!settings.filter.enabled) return findings;
  const filter = listenEndpoint(settings.filter.listen);
  if (filter) {
    findings.push(
      judgeBanner(
        'filter-listen',
        "postwarden's content filter",
        showEndpoint(filter),
        await bannerProbe(filter, timeoutMs),
        'start postwarden with filter.enabled: true (systemctl start postwarden), then postqueue -f; or remove content_filter until it runs',
        'postwarden',
      ),
    );
  }
  const reinject = listenEndpoint(settings.filter.reinject);
  if (reinject && settings.filter.mode === 'after_queue') {
    findings.push(
      judgeBanner(
        'reinject',
        "Postfix's re-injection smtpd",
        showEndpoint(reinject),
        await bannerProbe(reinject, timeoutMs),
        'define it in master.cf (postfix-snippets/master.cf.filter) and postfix reload',
      ),
    );
  }
  return findings;
}
