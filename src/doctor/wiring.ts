/**
 * Postfix wiring, judged from `postconf` output (pure): the policy service is asked after relay control
 * (`reject_unauth_destination`), in main.cf and in every smtpd of master.cf that overrides its restrictions;
 * relay control exists; content_filter points at postwarden's filter through a transport master.cf defines; the
 * re-injection smtpd exists with content_filter cleared (else a loop); receive_override_options keeps address
 * mappings for after the filter; mynetworks is not the whole Internet.
 *
 * Postfix evaluates, at RCPT, smtpd_client, helo, sender, relay, then recipient restrictions: a policy service
 * anywhere before the relay gate is asked about relay attempts, and one in smtpd_relay_restrictions before the
 * gate can open a relay with an OK.
 */
import { parseCidr } from '../util/ip.js';
import { finding, type Finding, ok } from './finding.js';
import {
  type Endpoint,
  inetServiceEndpoint,
  listenEndpoint,
  listElements,
  type MasterService,
  parseNexthop,
  postfixEndpoint,
  type PostfixConfig,
  restrictions,
  sameEndpoint,
  serviceValue,
} from './postfix-config.js';

export interface WiringSettings {
  /** policy.listen (one or several). */
  readonly policyListen: readonly string[];
  readonly filter: {
    readonly enabled: boolean;
    readonly mode: 'after_queue' | 'before_queue';
    readonly listen: string;
    readonly reinject: string;
  };
  /** local_networks entries given inline (maps are not looked into). */
  readonly localNetworks: readonly string[];
}

/** The restriction lists Postfix runs at RCPT, in its order (smtpd_delay_reject = yes). */
const RCPT_LISTS = [
  'smtpd_client_restrictions',
  'smtpd_helo_restrictions',
  'smtpd_sender_restrictions',
  'smtpd_relay_restrictions',
  'smtpd_recipient_restrictions',
] as const;
const LATER_LISTS = ['smtpd_data_restrictions', 'smtpd_end_of_data_restrictions'] as const;
/** What ends a relay attempt: relay control proper, or a refusal of everything (Postfix accepts those too). */
const GATES = new Set([
  'reject_unauth_destination',
  'defer_unauth_destination',
  'reject',
  'defer',
  'defer_all',
]);

const POLICY_FIX = (listen: string) =>
  `keep relay control first and ask postwarden after it: postconf -e 'smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination' 'smtpd_recipient_restrictions = check_policy_service { inet:${listen}, timeout=10s, default_action=DUNNO }' && postfix reload`;

function policyTarget(listen: string): string {
  const e = listenEndpoint(listen);
  return e?.kind === 'unix' ? `unix:${e.path}` : listen;
}

/** Where our policy service sits in the restriction lists of one smtpd (main.cf or a master.cf service). */
interface Placement {
  /** Our policy service: its list, position, and whether Postfix reaches it before relay control. */
  readonly policy: { list: string; index: number; beforeGate: boolean }[];
  /** Other policy services (their endpoints). */
  readonly foreign: string[];
  /** What stops relaying: the first refusal Postfix reaches in the relay, then the recipient list. */
  readonly gate?: { list: string; name: string; index: number };
  /** A bare `permit` ends smtpd_relay_restrictions before any refusal, and nothing later refuses. */
  readonly permitsAll: boolean;
}

/** The first refusal (gate) or bare `permit` of a list: whichever Postfix meets first decides relaying there. */
function firstDecisive(items: readonly { name: string }[]): { name: string; index: number } | undefined {
  const index = items.findIndex((r) => GATES.has(r.name) || r.name === 'permit');
  return index < 0 ? undefined : { name: items[index]?.name ?? '', index };
}

function placement(
  config: PostfixConfig,
  service: MasterService | undefined,
  ours: readonly Endpoint[],
): Placement {
  const queueDir = config.main.get('queue_directory') ?? '/var/spool/postfix';
  const lists = new Map(
    [...RCPT_LISTS, ...LATER_LISTS].map((l) => [l, restrictions(serviceValue(config, service, l))]),
  );
  const relay = firstDecisive(lists.get('smtpd_relay_restrictions') ?? []);
  const recipient = firstDecisive(lists.get('smtpd_recipient_restrictions') ?? []);
  let gate: Placement['gate'];
  if (relay && relay.name !== 'permit') gate = { list: 'smtpd_relay_restrictions', ...relay };
  else if (recipient && recipient.name !== 'permit')
    gate = { list: 'smtpd_recipient_restrictions', ...recipient };
  const policy: Placement['policy'] = [];
  const foreign: string[] = [];
  for (const [list, items] of lists) {
    items.forEach((r, index) => {
      if (r.name !== 'check_policy_service' || r.argument === undefined) return;
      const target = postfixEndpoint(r.argument, queueDir);
      if (!target || !ours.some((l) => sameEndpoint(target, l))) {
        foreign.push(r.argument);
        return;
      }
      const after =
        (LATER_LISTS as readonly string[]).includes(list) ||
        (gate !== undefined &&
          (list === 'smtpd_recipient_restrictions'
            ? gate.list === 'smtpd_relay_restrictions' || gate.index < index
            : list === 'smtpd_relay_restrictions' && gate.list === list && gate.index < index));
      policy.push({ list, index, beforeGate: !after });
    });
  }
  return {
    policy,
    foreign,
    ...(gate ? { gate } : {}),
    permitsAll: gate === undefined && relay?.name === 'permit',
  };
}

/** The policy service's place, and relay control, in main.cf and in each smtpd that overrides restrictions. */
export function judgePolicyOrder(config: PostfixConfig, settings: WiringSettings): Finding[] {
  const ours = settings.policyListen.map(listenEndpoint).filter((e): e is Endpoint => e !== undefined);
  const listen = policyTarget(settings.policyListen[0] ?? '127.0.0.1:10060');
  const findings: Finding[] = [];
  const reinject = listenEndpoint(settings.filter.reinject);
  const contexts: { label: string; service: MasterService | undefined }[] = [
    { label: 'main.cf', service: undefined },
  ];
  for (const s of config.services) {
    if (s.type !== 'inet' || s.command !== 'smtpd') continue;
    const at = inetServiceEndpoint(s.name);
    if (reinject && at && sameEndpoint({ kind: 'inet', ...at }, reinject)) continue; // judgeReinject's
    if ([...RCPT_LISTS, ...LATER_LISTS].some((l) => s.overrides.has(l))) {
      contexts.push({ label: `master.cf ${s.name}`, service: s });
    }
  }
  for (const { label, service } of contexts) {
    const p = placement(config, service, ours);
    // A service is judged on what it overrides; what it inherits is main.cf's finding.
    const own = (list: string) => service === undefined || service.overrides.has(list);
    const lists = RCPT_LISTS.map((l) => `${l} = ${serviceValue(config, service, l)}`).join('; ');
    const gateOwn = own('smtpd_relay_restrictions') || own('smtpd_recipient_restrictions');
    if (!p.gate && gateOwn) {
      findings.push(
        p.permitsAll
          ? finding(
              'relay-gate',
              'error',
              `${label}: smtpd_relay_restrictions permits everyone and nothing after it refuses: an open relay`,
              "remove the bare 'permit': postconf -e 'smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination' && postfix reload",
              lists,
            )
          : finding(
              'relay-gate',
              'error',
              `${label}: no reject_unauth_destination in smtpd_relay_restrictions or smtpd_recipient_restrictions: nothing stops relaying`,
              "postconf -e 'smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination' && postfix reload",
              lists,
            ),
      );
    } else if (p.gate && service === undefined) {
      findings.push(
        p.gate.name === 'defer_unauth_destination'
          ? finding(
              'relay-gate',
              'info',
              `${label}: relay control is defer_unauth_destination (Debian's default): relay attempts get 4xx and retry`,
              'nothing needed; reject_unauth_destination answers 5xx and ends the attempts at once',
            )
          : ok('relay-gate', `${label}: relay control by ${p.gate.name} in ${p.gate.list}`),
      );
    }
    const early = p.policy.filter((x) => x.beforeGate && own(x.list));
    const mine = p.policy.filter((x) => own(x.list));
    if (early.length > 0) {
      findings.push(
        finding(
          'policy-order',
          'error',
          `${label}: the policy service is asked before relay control (${early.map((x) => `${x.list} element ${x.index + 1}`).join(', ')}): it sees relay attempts, and an OK from it can open a relay`,
          POLICY_FIX(listen),
          lists,
        ),
      );
    } else if (mine.length > 0) {
      const first = mine[0] ?? { list: '', index: 0 };
      findings.push(
        ok(
          'policy-order',
          `${label}: ${first.list} element ${first.index + 1}, after ${p.gate?.name ?? 'relay control'}`,
        ),
      );
    } else if (service === undefined) {
      findings.push(
        finding(
          'policy-order',
          'error',
          `main.cf: Postfix never asks postwarden's policy service (policy.listen ${settings.policyListen.join(', ')})`,
          POLICY_FIX(listen),
          p.foreign.length > 0 ? `other policy services: ${p.foreign.join(', ')}; ${lists}` : lists,
        ),
      );
    } else if (p.policy.length === 0) {
      findings.push(
        finding(
          'policy-order',
          'info',
          `${label} overrides its restrictions and does not ask postwarden (sender ownership, rate limits do not apply there)`,
          `add check_policy_service { inet:${listen}, timeout=10s, default_action=DUNNO } to its -o smtpd_recipient_restrictions if its clients should be checked`,
        ),
      );
    }
  }
  return findings;
}

/** content_filter → filter.listen through a master.cf transport; no public smtpd skipping it. */
export function judgeContentFilter(config: PostfixConfig, settings: WiringSettings): Finding[] {
  const filter = settings.filter;
  const listen = listenEndpoint(filter.listen);
  const value = config.main.get('content_filter') ?? '';
  const hop = parseNexthop(value);
  const pointsAtUs =
    hop?.endpoint !== undefined && listen !== undefined && sameEndpoint(hop.endpoint, listen);
  const setFix = `postconf -e 'content_filter = scan:[${listen?.kind === 'inet' ? listen.host : '127.0.0.1'}]:${listen?.kind === 'inet' ? listen.port : 10061}' 'receive_override_options = no_address_mappings', add the scan and re-injection services of postfix-snippets/master.cf.filter, then postfix reload`;
  if (!filter.enabled) {
    if (pointsAtUs) {
      return [
        finding(
          'content-filter',
          'error',
          `content_filter = ${value} sends every message to postwarden's filter, but filter.enabled is false: mail waits in the queue`,
          'set filter.enabled: true and restart postwarden, or postconf -X content_filter && postfix reload && postsuper -r ALL',
        ),
      ];
    }
    return [
      finding(
        'content-filter',
        'info',
        'the content filter is not enabled (filter.enabled: false); not checked',
        '',
      ),
    ];
  }
  if (filter.mode === 'before_queue') {
    const proxied = config.services.some((s) => {
      const target = s.overrides.get('smtpd_proxy_filter');
      const hp =
        target === undefined
          ? undefined
          : postfixEndpoint(
              target.includes(':') && !target.startsWith('inet:') && !target.startsWith('unix:')
                ? `inet:${target}`
                : target,
              '',
            );
      return s.command === 'smtpd' && hp !== undefined && listen !== undefined && sameEndpoint(hp, listen);
    });
    return [
      proxied
        ? ok(
            'content-filter',
            `an smtpd of master.cf hands mail to the filter before the queue (smtpd_proxy_filter = ${filter.listen})`,
          )
        : finding(
            'content-filter',
            'error',
            `filter.mode is before_queue but no smtpd in master.cf has -o smtpd_proxy_filter=${filter.listen}`,
            `add -o smtpd_proxy_filter=${filter.listen} to the public smtpd in master.cf (postconf -P 'smtp/inet/smtpd_proxy_filter=${filter.listen}') and postfix reload`,
          ),
    ];
  }
  const findings: Finding[] = [];
  if (value === '') {
    findings.push(
      finding(
        'content-filter',
        'error',
        'content_filter is empty: Postfix does not send mail through the filter (filter.enabled is true)',
        setFix,
      ),
    );
  } else if (!pointsAtUs) {
    findings.push(
      finding(
        'content-filter',
        'error',
        `content_filter = ${value} does not point at postwarden's filter (${filter.listen}); another filter (amavisd-new?) has it`,
        `remove the other filter's content_filter, then ${setFix}`,
      ),
    );
  } else {
    const transport = config.services.find((s) => s.name === hop.transport && s.type === 'unix');
    if (!transport || !['smtp', 'lmtp'].includes(transport.command)) {
      findings.push(
        finding(
          'content-filter',
          'error',
          `content_filter uses transport '${hop.transport}', which master.cf does not define as an smtp service: mail is deferred (unknown mail transport)`,
          `add the '${hop.transport}' service of postfix-snippets/master.cf.filter (postconf -M '${hop.transport}/unix=${hop.transport} unix - - n - 10 smtp') and postfix reload`,
        ),
      );
    } else {
      findings.push(
        ok('content-filter', `content_filter = ${value} (transport ${transport.name}, ${transport.command})`),
      );
    }
  }
  const reinject = listenEndpoint(filter.reinject);
  for (const s of config.services) {
    if (s.type !== 'inet' || s.command !== 'smtpd' || !s.overrides.has('content_filter')) continue;
    const at = inetServiceEndpoint(s.name);
    if (reinject && at && sameEndpoint({ kind: 'inet', ...at }, reinject)) continue;
    if (serviceValue(config, s, 'content_filter') === '') {
      findings.push(
        finding(
          'content-filter',
          'warning',
          `master.cf ${s.name} clears content_filter: mail it receives is never scanned`,
          `remove its -o content_filter= (postconf -PX '${s.name}/inet/content_filter') and postfix reload`,
        ),
      );
    }
  }
  if (!listElements(config.main.get('receive_override_options') ?? '').includes('no_address_mappings')) {
    findings.push(
      finding(
        'receive-override',
        'warning',
        'receive_override_options lacks no_address_mappings: aliases are expanded before the filter and again after it (a message to an alias can arrive twice)',
        "postconf -e 'receive_override_options = no_address_mappings' (add it to what is there) && postfix reload",
        `receive_override_options = ${config.main.get('receive_override_options') ?? ''}`,
      ),
    );
  } else {
    findings.push(ok('receive-override', 'receive_override_options has no_address_mappings'));
  }
  return findings;
}

/** The re-injection smtpd on filter.reinject: defined, and with content_filter cleared (else every message loops). */
export function judgeReinject(config: PostfixConfig, settings: WiringSettings): Finding[] {
  if (!settings.filter.enabled || settings.filter.mode !== 'after_queue') return [];
  const target = listenEndpoint(settings.filter.reinject);
  const service = config.services.find((s) => {
    const at = s.type === 'inet' ? inetServiceEndpoint(s.name) : undefined;
    return at !== undefined && target !== undefined && sameEndpoint({ kind: 'inet', ...at }, target);
  });
  const fix = `add the re-injection smtpd of postfix-snippets/master.cf.filter on ${settings.filter.reinject} (with -o content_filter= and -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters) and postfix reload`;
  if (!service || service.command !== 'smtpd') {
    return [
      finding(
        'reinject',
        'error',
        `no smtpd in master.cf listens on filter.reinject (${settings.filter.reinject}): the filter cannot hand mail back, every message is deferred`,
        fix,
      ),
    ];
  }
  const cf = serviceValue(config, service, 'content_filter');
  if (cf !== '') {
    return [
      finding(
        'reinject',
        'error',
        `the re-injection smtpd ${service.name} keeps content_filter = ${cf}: every message goes back to the filter, a loop`,
        `postconf -P '${service.name}/inet/content_filter=' && postfix reload`,
      ),
    ];
  }
  return [ok('reinject', `re-injection smtpd ${service.name} with content_filter cleared`)];
}

/** mynetworks (and inline local_networks) not wider than a network the admin can vouch for. */
export function judgeNetworks(config: PostfixConfig, settings: WiringSettings): Finding[] {
  const findings: Finding[] = [];
  const judge = (what: string, entries: readonly string[], fix: string) => {
    const wide = entries
      .map((e) => ({ e, net: parseCidr(e.replace(/^\[([^\]]+)\]/, '$1')) }))
      .filter(({ net }) => net !== undefined && net.prefix < (net.family === 4 ? 8 : 16));
    const all = wide.filter(({ net }) => net?.prefix === 0);
    if (all.length > 0) {
      findings.push(
        finding(
          'mynetworks',
          'error',
          `${what} holds ${all.map((w) => w.e).join(', ')}: every client on the Internet may relay`,
          fix,
        ),
      );
    } else if (wide.length > 0) {
      findings.push(
        finding(
          'mynetworks',
          'warning',
          `${what} holds very wide networks (${wide.map((w) => w.e).join(', ')}): all of them may relay`,
          fix,
        ),
      );
    } else {
      findings.push(ok('mynetworks', `${what}: ${entries.join(' ') || '(empty)'}`));
    }
  };
  judge(
    'mynetworks',
    listElements(config.main.get('mynetworks') ?? ''),
    "list only your own networks: postconf -e 'mynetworks = 127.0.0.0/8 [::1]/128' (plus your LAN) && postfix reload",
  );
  if (settings.localNetworks.length > 0) {
    judge(
      'local_networks',
      settings.localNetworks,
      'list only your own networks in local_networks (postwarden.yml) and restart postwarden',
    );
  }
  return findings;
}

export function judgeWiring(config: PostfixConfig, settings: WiringSettings): Finding[] {
  return [
    ...judgePolicyOrder(config, settings),
    ...judgeContentFilter(config, settings),
    ...judgeReinject(config, settings),
    ...judgeNetworks(config, settings),
  ];
}
