/**
 * The Postfix side of postwarden, rendered from the config and the live host (HostFacts): main.cf settings as
 * ordered name/value pairs and master.cf services as structured entries, each with the comment that explains
 * it (the same explanations as postfix-snippets/). One structure drives both `generate` (text files) and
 * `setup --apply` (postconf -e / -M / -P).
 *
 * Merging: the restriction lists keep every element the host has; postwarden's policy service goes into
 * smtpd_recipient_restrictions right after `reject_unauth_destination` (or first, when relay control lives in
 * smtpd_relay_restrictions, which Postfix evaluates before), and never twice. Postfix's own relay control stays:
 * when neither list has `*_unauth_destination`, `reject_unauth_destination` is added to smtpd_relay_restrictions.
 *
 * Contract: pure. What the host has and postwarden must not overwrite (another content filter, another tool's
 * policy service, a master.cf service of the same name that runs something else) comes back as `conflicts`; the
 * caller refuses to apply them (exit 78) and leaves the host as it is.
 */
import path from 'node:path';
import type { Config } from '../config/schema.js';
import { type Conflict, type HostFacts, type MasterEntry, RESTRICTION_LISTS } from '../core/host-facts.js';
import { listTokens, policyEndpoint, restrictionElements, withAdded } from './postfix-lists.js';

export interface MainSetting {
  readonly name: string;
  /** The value as postconf -e gets it (one line). */
  readonly value: string;
  /** For lists: the elements, one per line in the text file. */
  readonly elements?: readonly string[];
  readonly comment: readonly string[];
}

export interface MasterService extends MasterEntry {
  readonly comment: readonly string[];
}

/** A `-o name=value` to set on a service postwarden does not own (postconf -P). */
export interface MasterOverride {
  readonly service: string;
  readonly type: string;
  readonly name: string;
  readonly value: string;
}

export interface PostfixRender {
  readonly main: readonly MainSetting[];
  readonly master: readonly MasterService[];
  readonly overrides: readonly MasterOverride[];
  /** Things the admin should know (printed with the plan). */
  readonly notes: readonly string[];
  readonly conflicts: readonly Conflict[];
}

/** The transport name in content_filter and master.cf. */
export const FILTER_TRANSPORT = 'scan';
/** The main.cf parameter that names the policy service once, for every restriction list (and master.cf -o). */
export const POLICY_PARAMETER = 'postwarden_policy';

/** Well-known neighbours by port (DESIGN.md §3), to name them in conflicts. */
export const KNOWN_PEERS: Readonly<Record<number, string>> = {
  10023: 'postgrey',
  10024: 'amavisd-new',
  10025: 'amavisd-new (re-injection)',
  10040: 'postfwd',
  11332: 'rspamd (proxy)',
  11333: 'rspamd (normal worker)',
  11334: 'rspamd (controller)',
  12525: 'policyd-weight',
};

const UNAUTH = /^(reject|defer)_unauth_destination$/;

interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** `127.0.0.1:10061` / `[::1]:10061` → host and port; a wildcard host becomes loopback (Postfix connects to it). */
export function hostPort(address: string): HostPort | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(address);
  if (!match) return undefined;
  const host = match[1] ?? match[2] ?? '';
  const loopback = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return { host: loopback, port: Number(match[3]) };
}

const bracket = (host: string) => (host.includes(':') ? `[${host}]` : host);

function listenList(listen: string | readonly string[]): readonly string[] {
  return typeof listen === 'string' ? [listen] : listen;
}

/** Postfix's name for one policy listen address: `inet:127.0.0.1:10060`, `unix:postwarden/policy`. */
function policyEndpointFor(listen: string, queueDirectory: string): string {
  if (listen.startsWith('unix:')) {
    const file = listen.slice(5);
    const relative = path.relative(queueDirectory, file);
    return relative.startsWith('..') || path.isAbsolute(relative) ? `unix:${file}` : `unix:${relative}`;
  }
  const hp = hostPort(listen);
  return hp ? `inet:${bracket(hp.host)}:${hp.port}` : `inet:${listen}`;
}

function peerName(endpoint: string): string {
  const port = Number(/:(\d+)\]?$/.exec(endpoint)?.[1] ?? NaN);
  const known = KNOWN_PEERS[port];
  return known ? `${endpoint} (${known})` : endpoint;
}

/** The renderer's view of the config: what Postfix must reach, and which lists need the policy service. */
function wiring(config: Readonly<Config>, facts: HostFacts) {
  const endpoints = listenList(config.policy.listen).map((l) => policyEndpointFor(l, facts.queueDirectory));
  const endpoint = endpoints[0] ?? 'inet:127.0.0.1:10060';
  const checks = new Set(config.policy.checks);
  const rl = config.policy.ratelimit;
  const rateLimited =
    checks.has('ratelimit') &&
    rl.mode !== 'off' &&
    Object.entries(rl).some(([key, value]) => /^(recipients_)?per_/.test(key) && value !== '');
  const lm = config.policy.limits;
  const limited =
    checks.has('limits') && lm.mode !== 'off' && (lm.max_message_bytes > 0 || lm.max_recipients > 0);
  const timeoutS = Math.max(10, Math.ceil(config.policy.check_timeout_ms / 1000) + 5);
  const defaultAction = config.policy.on_error === 'dunno' ? 'DUNNO' : 'DEFER_IF_PERMIT';
  return { endpoints, endpoint, rateLimited, limited, timeoutS, defaultAction };
}

/** ldap:NAME references of a map setting. */
function ldapNames(ref: string | readonly string[]): string[] {
  const refs = typeof ref === 'string' ? [ref] : ref;
  return refs.flatMap((r) => (/^ldap:[A-Za-z0-9_-]+$/.test(r) ? [r.slice(5)] : []));
}

function ldapTable(facts: HostFacts, name: string): string {
  return `ldap:${path.join(facts.configDirectory, `ldap-${name}.cf`)}`;
}

function setting(
  name: string,
  elements: readonly string[],
  comment: string[],
  separator = ', ',
): MainSetting {
  return { name, value: elements.join(separator), elements, comment };
}

export function renderPostfix(config: Readonly<Config>, facts: HostFacts): PostfixRender {
  const w = wiring(config, facts);
  const notes: string[] = [];
  const conflicts: Conflict[] = [];
  const ours = (element: string) => {
    if (element === `$${POLICY_PARAMETER}` || element === `\${${POLICY_PARAMETER}}`) return true;
    const endpoint = policyEndpoint(element);
    return endpoint !== undefined && w.endpoints.includes(endpoint);
  };
  const current = (name: string) => restrictionElements(facts.main[name] ?? '');

  // Another tool's policy service anywhere in the restriction lists: named, never replaced.
  for (const list of RESTRICTION_LISTS) {
    for (const element of current(list)) {
      const endpoint = policyEndpoint(element);
      if (endpoint !== undefined && !ours(element)) {
        conflicts.push({
          what: `${list} already asks another policy service, ${peerName(endpoint)}`,
          fix: `remove it from ${list} (postconf -e) or give postwarden's policy.listen that address once the other tool is gone, then run setup again`,
        });
      }
    }
  }

  const policyValue = `check_policy_service { ${w.endpoint}, timeout=${w.timeoutS}s, default_action=${w.defaultAction} }`;
  const ref = `$${POLICY_PARAMETER}`;
  const main: MainSetting[] = [
    {
      name: POLICY_PARAMETER,
      value: policyValue,
      comment: [
        "postwarden's policy service, named once and used in every restriction list below (and in master.cf,",
        `e.g. a submission service: -o smtpd_recipient_restrictions=$${POLICY_PARAMETER}).`,
        `timeout=${w.timeoutS}s: give up on a hung service after ${w.timeoutS} s per attempt instead of Postfix's default 100 s.`,
        w.defaultAction === 'DUNNO'
          ? 'default_action=DUNNO (policy.on_error: dunno): if postwarden is down, accept as if it were not there (fail-open).'
          : 'default_action=DEFER_IF_PERMIT (policy.on_error: defer_if_permit): if postwarden is down, answer 4xx (fail-closed); senders retry.',
      ],
    },
  ];

  // Relay control first. Postfix evaluates smtpd_relay_restrictions before smtpd_recipient_restrictions.
  const relayNow = current('smtpd_relay_restrictions');
  const recipientNow = current('smtpd_recipient_restrictions');
  let relay = relayNow.filter((e) => !ours(e));
  if (![...relay, ...recipientNow].some((e) => UNAUTH.test(e))) {
    relay =
      relay.length === 0
        ? ['permit_mynetworks', 'permit_sasl_authenticated', 'reject_unauth_destination']
        : withAdded(relay, ['reject_unauth_destination']);
  }
  main.push(
    setting('smtpd_relay_restrictions', relay, [
      'Relay control first: Postfix evaluates smtpd_relay_restrictions before smtpd_recipient_restrictions, so the',
      'policy service runs after reject_unauth_destination and can never be what opens a relay. Kept as the host had',
      'it; reject_unauth_destination is added only when no list had (reject|defer)_unauth_destination.',
    ]),
  );
  if (relayNow.some(ours))
    notes.push(
      "postwarden's policy service was in smtpd_relay_restrictions (before relay control); it moves to smtpd_recipient_restrictions",
    );

  // The policy service: replaces a direct reference to our endpoint in place, else right after *_unauth_destination, else first.
  let recipient = recipientNow
    .map((e) => (ours(e) ? ref : e))
    .filter((e, i, all) => e !== ref || all.indexOf(ref) === i);
  if (!recipient.includes(ref)) {
    const at = recipient.findLastIndex((e) => UNAUTH.test(e));
    recipient = [...recipient.slice(0, at + 1), ref, ...recipient.slice(at + 1)];
    if (at >= 0 && recipient.slice(0, at).some((e) => e.startsWith('permit_'))) {
      notes.push(
        'smtpd_recipient_restrictions lets trusted clients through (permit_*) before reject_unauth_destination: postwarden never sees their mail (no sender ownership check, no rate limits); move relay control to smtpd_relay_restrictions',
      );
    }
  }
  main.push(
    setting('smtpd_recipient_restrictions', recipient, [
      'Every recipient that passed relay control, from any client, authenticated or not, goes to postwarden.',
    ]),
  );
  if (w.rateLimited) {
    main.push(
      setting(
        'smtpd_data_restrictions',
        withAdded(
          current('smtpd_data_restrictions').map((e) => (ours(e) ? ref : e)),
          [ref],
        ),
        ['policy.ratelimit: an anonymous client over its limit is refused before it sends the body.'],
      ),
    );
  }
  if (w.rateLimited || w.limited) {
    main.push(
      setting(
        'smtpd_end_of_data_restrictions',
        withAdded(
          current('smtpd_end_of_data_restrictions').map((e) => (ours(e) ? ref : e)),
          [ref],
        ),
        [
          'Ask again at the end of the message, when Postfix sends the real size (policy.limits max_message_bytes) and',
          'the final recipient count (policy.limits max_recipients); policy.ratelimit counts messages here.',
        ],
      ),
    );
  }
  main.push(
    setting(
      'smtpd_helo_required',
      ['yes'],
      ["Clients must say HELO/EHLO: postwarden's helo check needs a name to judge."],
    ),
  );
  const tls = (facts.main['smtpd_tls_security_level'] ?? '').trim();
  if (tls === '' || tls === 'none') {
    notes.push(
      'smtpd_tls_auth_only left as it is: smtpd_tls_security_level offers no TLS here, and smtpd_tls_auth_only = yes would turn SMTP AUTH off; set it once TLS is configured',
    );
  } else {
    main.push(
      setting(
        'smtpd_tls_auth_only',
        ['yes'],
        ['Offer SMTP AUTH only inside TLS: no password crosses the network in clear text.'],
      ),
    );
  }

  const senderMaps = ldapNames(config.policy.sender_ownership.map);
  if (senderMaps.length > 0) {
    main.push(
      setting(
        'smtpd_sender_login_maps',
        senderMaps.map((n) => ldapTable(facts, n)),
        [
          "Who owns which sender address, from the same LDAP query postwarden's sender_ownership check uses",
          '(policy.sender_ownership.map); reject_sender_login_mismatch in a restriction list would enforce it in Postfix too.',
        ],
      ),
    );
  }
  const aliasMaps = ldapNames(config.policy.recipients.aliases);
  if (aliasMaps.length > 0) {
    main.push(
      setting(
        'virtual_alias_maps',
        withAdded(
          listTokens(facts.main['virtual_alias_maps'] ?? ''),
          aliasMaps.map((n) => ldapTable(facts, n)),
        ),
        [
          'The LDAP aliases postwarden accepts at RCPT (policy.recipients.aliases) are the ones Postfix expands',
          '(after the filter, in the re-injection smtpd). Kept: the maps the host already had.',
        ],
      ),
    );
  }

  const master: MasterService[] = [];
  const overrides: MasterOverride[] = [];
  if (config.filter.enabled) {
    renderFilter(config, facts, main, master, overrides, notes, conflicts);
  }
  return { main, master, overrides, notes, conflicts };
}

function renderFilter(
  config: Readonly<Config>,
  facts: HostFacts,
  main: MainSetting[],
  master: MasterService[],
  overrides: MasterOverride[],
  notes: string[],
  conflicts: Conflict[],
): void {
  const filter = hostPort(config.filter.listen);
  const reinject = hostPort(config.filter.reinject);
  if (!filter || !reinject) {
    conflicts.push({
      what: `filter.listen ${config.filter.listen} is a unix socket; Postfix's smtp client reaches the filter over TCP`,
      fix: 'give filter.listen a host:port (127.0.0.1:10061)',
    });
    return;
  }
  const ourFilter = `${FILTER_TRANSPORT}:[${filter.host}]:${filter.port}`;
  const reinjectService = `${bracket(reinject.host)}:${reinject.port}`;
  const messageS = Math.ceil(config.filter.message_timeout_ms / 1000);
  const existingFilter = (facts.main['content_filter'] ?? '').trim();
  if (existingFilter !== '' && existingFilter !== ourFilter) {
    const port = Number(/:(\d+)$/.exec(existingFilter)?.[1] ?? NaN);
    const who = /amavis/i.test(existingFilter)
      ? 'amavisd-new'
      : (KNOWN_PEERS[port] ?? 'another content filter');
    conflicts.push({
      what: `content_filter is already set: ${existingFilter} (${who})`,
      fix: 'postwarden replaces it: turn the other filter off first (postconf -X content_filter, postfix reload, postsuper -r ALL once its queue is empty), then run setup again',
    });
  }
  for (const entry of facts.master) {
    const name = `${entry.service}/${entry.type}`;
    if (name === `${reinjectService}/inet` && entry.command !== 'smtpd') {
      conflicts.push({
        what: `master.cf already has ${name} running ${entry.command}`,
        fix: `pick another filter.reinject address, or remove that service`,
      });
    }
    if (name === `${FILTER_TRANSPORT}/unix` && entry.command !== 'smtp') {
      conflicts.push({
        what: `master.cf already has a service ${name} running ${entry.command}`,
        fix: `rename or remove it: postwarden's filter transport is called ${FILTER_TRANSPORT}`,
      });
    }
  }
  const scanProcs = Math.min(10, config.filter.max_connections);
  if (config.filter.mode === 'after_queue') {
    main.push(
      setting(
        'content_filter',
        [ourFilter],
        [
          `Every message Postfix receives (SMTP, submission, local sendmail) is handed to the ${FILTER_TRANSPORT} transport of`,
          'master.cf, which delivers it to postwarden (filter.listen). The brackets mean "this address, no MX lookup".',
          'Postfix records this in each queue file when the message arrives: changing it later does not change mail',
          'already queued. Until postwarden listens, mail waits in the queue (deferred), nothing is lost.',
          'Turning it off: postconf -X content_filter; postfix reload; postsuper -r ALL; postqueue -f.',
        ],
      ),
    );
    main.push(
      setting(
        'receive_override_options',
        withAdded(listTokens(facts.main['receive_override_options'] ?? ''), ['no_address_mappings']),
        [
          'No address rewriting before the filter (canonical, virtual aliases, masquerading): postwarden sees the',
          'envelope as the client sent it, and the rewriting happens once, in the re-injection smtpd, after the filter.',
        ],
        ',',
      ),
    );
    master.push({
      service: FILTER_TRANSPORT,
      type: 'unix',
      private: '-',
      unpriv: '-',
      chroot: 'n',
      wakeup: '-',
      maxproc: String(scanProcs),
      command: 'smtp',
      options: [
        ['syslog_name', `postfix/${FILTER_TRANSPORT}`],
        ['smtp_send_xforward_command', 'yes'],
        ['disable_mime_output_conversion', 'yes'],
        ['smtp_generic_maps', ''],
        ['smtp_data_done_timeout', `${Math.max(1200, messageS + 300)}s`],
        ['smtp_tls_security_level', 'none'],
      ],
      comment: [
        `The transport that delivers each message to postwarden (content_filter = ${ourFilter}).`,
        `maxproc ${scanProcs}: messages handed to postwarden at once; filter.max_connections (${config.filter.max_connections}) must stay at or above it,`,
        '  or postwarden answers 421 and Postfix pauses delivery to the filter.',
        "smtp_send_xforward_command=yes: pass the original client's name, address and HELO to postwarden (XFORWARD).",
        'disable_mime_output_conversion=yes: never convert 8-bit mail on this hop (a converted message breaks DKIM).',
        'smtp_generic_maps=: no generic(5) address rewriting on this hop.',
        `smtp_data_done_timeout: longer than filter.message_timeout_ms (${messageS} s), so postwarden always answers first;`,
        '  if Postfix gave up first, the message could be delivered twice.',
        'smtp_tls_security_level=none: postwarden offers no STARTTLS on loopback.',
      ],
    });
  } else {
    const publicSmtpd = facts.master.filter(
      (e) =>
        e.type === 'inet' &&
        e.command === 'smtpd' &&
        e.service !== reinjectService &&
        !/^(submission|submissions|smtps)$|:(587|465)$|^(587|465)$/.test(e.service),
    );
    if (publicSmtpd.length === 0) {
      notes.push(
        'filter.mode before_queue: no public smtpd service found in master.cf; add -o smtpd_proxy_filter to it by hand',
      );
    }
    for (const e of publicSmtpd) {
      overrides.push(
        {
          service: e.service,
          type: e.type,
          name: 'smtpd_proxy_filter',
          value: `${bracket(filter.host)}:${filter.port}`,
        },
        {
          service: e.service,
          type: e.type,
          name: 'smtpd_proxy_timeout',
          value: `${Math.max(100, messageS + 30)}s`,
        },
      );
    }
  }
  master.push({
    service: reinjectService,
    type: 'inet',
    private: 'n',
    unpriv: '-',
    chroot: 'n',
    wakeup: '-',
    maxproc: String(Math.max(20, scanProcs + 10)),
    command: 'smtpd',
    options: [
      ['syslog_name', 'postfix/reinject'],
      ['content_filter', ''],
      ['receive_override_options', 'no_unknown_recipient_checks,no_header_body_checks,no_milters'],
      ['smtpd_helo_restrictions', ''],
      ['smtpd_client_restrictions', ''],
      ['smtpd_sender_restrictions', ''],
      ['smtpd_relay_restrictions', ''],
      ['smtpd_recipient_restrictions', 'permit_mynetworks,reject'],
      ['smtpd_data_restrictions', ''],
      ['smtpd_end_of_data_restrictions', ''],
      ['mynetworks', reinject.host.includes(':') ? '[::1]/128' : '127.0.0.0/8'],
      ['smtpd_authorized_xforward_hosts', reinject.host.includes(':') ? '[::1]/128' : '127.0.0.0/8'],
      ['smtpd_tls_security_level', 'none'],
    ],
    comment: [
      'The re-injection smtpd: postwarden hands filtered mail (and its notices and released messages) back to',
      'Postfix here (filter.reinject). Loopback only.',
      'content_filter=: REQUIRED. Without it, mail that comes back from postwarden is sent to postwarden again: a loop.',
      'receive_override_options: no recipient checks, header/body checks or milters a second time (they ran when the',
      '  message first arrived); aliases and virtual mappings happen here, after the filter.',
      'smtpd_*_restrictions: empty, and only loopback clients may send (permit_mynetworks, then reject).',
      'smtpd_authorized_xforward_hosts: accept XFORWARD (the original client) from postwarden.',
    ],
  });
}

/** `name = value` with the elements of a list one per line, Postfix's continuation-line form. */
function mainText(s: MainSetting): string {
  const elements = s.elements ?? [s.value];
  if (elements.length <= 1) return `${s.name} = ${s.value}`.trimEnd();
  return `${s.name} =\n${elements.map((e, i) => `    ${e}${i < elements.length - 1 ? ',' : ''}`).join('\n')}`;
}

const commentLines = (lines: readonly string[]) => lines.map((l) => `# ${l}`.trimEnd()).join('\n');

/** main.cf.postwarden: the settings with their comments. */
export function mainCfText(render: PostfixRender, source: string): string {
  const head = [
    `# main.cf settings for postwarden, generated from ${source} by \`postwarden generate postfix\`.`,
    '# Apply them with `postwarden setup --apply` (postconf -e, with a backup), or by hand with postconf -e, then',
    '# postfix reload. Restriction lists already hold what the host had, merged.',
  ];
  const body = render.main.map((s) => `${commentLines(s.comment)}\n${mainText(s)}`);
  return `${[head.join('\n'), ...body].join('\n\n')}\n`;
}

/** One master.cf service in master.cf syntax (columns, then one `-o` line per override). */
export function masterEntryText(e: MasterEntry): string {
  const columns = [
    e.service.padEnd(9),
    e.type.padEnd(5),
    e.private.padEnd(7),
    e.unpriv.padEnd(7),
    e.chroot.padEnd(7),
    e.wakeup.padEnd(7),
    e.maxproc.padEnd(7),
    e.command,
  ];
  return [columns.join(' '), ...e.options.map(([n, v]) => `  -o ${n}=${v}`)].join('\n');
}

/** master.cf.postwarden: the services (and -o overrides on the host's services) with their comments. */
export function masterCfText(render: PostfixRender, source: string): string {
  const head = [
    `# master.cf services for postwarden, generated from ${source} by \`postwarden generate postfix\`.`,
    '# Apply them with `postwarden setup --apply` (postconf -M / -P, with a backup), or append them to master.cf.',
    '# Columns: service type private unpriv chroot wakeup maxproc command; each -o line starts with whitespace.',
  ];
  const services = render.master.map((s) => `${commentLines(s.comment)}\n${masterEntryText(s)}`);
  const overrides =
    render.overrides.length === 0
      ? []
      : [
          [
            '# Before-queue filtering (filter.mode: before_queue): add to the public smtpd service(s):',
            ...render.overrides.map((o) => `#   postconf -P '${o.service}/${o.type}/${o.name}=${o.value}'`),
          ].join('\n'),
        ];
  return `${[head.join('\n'), ...services, ...overrides].join('\n\n')}\n`;
}
