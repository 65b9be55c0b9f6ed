/**
 * The policy service: builds the configured pipeline, and answers each request — typed request, per-message
 * session, pipeline, reply chokepoint — with one decision log line and its metrics. It never throws: an internal
 * failure answers per `policy.on_error`.
 */
import { hostname } from 'node:os';
import type { AuthGuard } from '../core/auth-guard.js';
import {
  BIG_SENDER_CLIENT_DOMAINS,
  createAuthBlockCheck,
  createDnsblCheck,
  createDnsSanityCheck,
  createGreylistCheck,
  type DnsList,
  type DnsListHealth,
  createHeloCheck,
  createLimitsCheck,
  createListsCheck,
  createRecipientsCheck,
  createRatelimitCheck,
  RATE_KINDS,
  createRelayCheck,
  createSenderOwnershipCheck,
  createSpfCheck,
  type SpfEvaluator,
  type ListTables,
  type PolicyCheckName,
} from '../core/checks/index.js';
import { Locality } from '../core/locality.js';
import { NO_ALERTS, type RateLimitAlerts } from '../core/ratelimit-incidents.js';
import {
  CheckDeadlines,
  headerName,
  MessageSession,
  type PipelineStage,
  type PolicyCheck,
  runPipeline,
} from '../core/pipeline.js';
import type { DnsResolver } from '../core/dns.js';
import type { LookupTable } from '../core/ports.js';
import { type PolicyRequest, toPolicyRequest } from '../core/request.js';
import type { MapRef } from '../core/schema.js';
import type { Store } from '../core/store.js';
import type { Decision, RecordedVerdict } from '../core/verdict.js';
import type { DecisionRecord, DecisionRecorder } from '../core/decisions.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { LruMap } from '../util/lru-map.js';
import type { Attributes } from './codec.js';
import { errorAction, policyAction } from './reply.js';
import type { Connection, RequestHandler } from './server.js';

/** Opens the tables of a config map reference (the maps registry, injected by `serve`). */
export type OpenTables = (ref: MapRef, key: string) => readonly LookupTable[];

function listTables(
  targets: Config['policy']['lists']['block'],
  kind: 'block' | 'allow',
  open: OpenTables,
  runtime?: RuntimeTables,
): ListTables {
  // Entries an admin added at run time (src/maps/runtime.ts) are searched before the config's.
  const tables = (target: keyof typeof targets) => [
    ...(runtime ? [runtime(`${kind}.${target}`)] : []),
    ...open(targets[target], `policy.lists.${kind}.${target}`),
  ];
  return {
    client: tables('client'),
    helo: tables('helo'),
    sender: tables('sender'),
    recipient: tables('recipient'),
  };
}

/** The runtime entries of a list of policy.lists, by name (`block.client`, …). */
export type RuntimeTables = (list: string) => LookupTable;

/** What the checks reach outside the core: the maps and the state store (and a clock, for tests). */
export interface StageDeps {
  readonly open: OpenTables;
  /** Required when a check that keeps state runs (see `needsStore`). */
  readonly store?: Store;
  /** Required when DNS lists are configured (see `needsDns`). */
  readonly dnsbl?: DnsblDeps;
  /** Required when the SPF check runs (see `needsDns`). */
  readonly spf?: SpfEvaluator;
  /** Required when dns_sanity runs (see `needsDns`). */
  readonly resolver?: DnsResolver;
  /** Required when auth_block runs (`auth_policy.enabled`): the Dovecot auth policy's block list. */
  readonly authGuard?: AuthGuard;
  /** Runtime block and allow entries (the admin's), searched before the config's lists. */
  readonly runtimeLists?: RuntimeTables;
  /** Told when the ratelimit check opens an incident (the admin notice); none when absent. */
  readonly ratelimitAlerts?: RateLimitAlerts;
  readonly now?: () => number;
}

/** The DNS lists of `policy.dnsbl`, their health (the self-test job keeps it) and the resolver they are asked through. */
export interface DnsblDeps {
  readonly resolver: DnsResolver;
  readonly lists: readonly DnsList[];
  readonly health: DnsListHealth;
}

/** Whether the configured pipeline keeps state, so `serve` opens the store only when something uses it. */
export function needsStore(config: Readonly<Config>): boolean {
  return runs(config, 'greylist') || runs(config, 'ratelimit') || config.auth_policy.enabled;
}

function runs(config: Readonly<Config>, name: PolicyCheckName): boolean {
  return config.policy.checks.includes(name) && config.policy[name].mode !== 'off';
}

/** Whether the DNS lists are configured and run, so `serve` builds them and their self-tests only then. */
export function needsDnsLists(config: Readonly<Config>): boolean {
  const dnsbl = config.policy.dnsbl;
  return runs(config, 'dnsbl') && dnsbl.lists.length + dnsbl.dnswl.length > 0;
}

/** Whether a configured check queries DNS, so `serve` builds the resolver only then. */
export function needsDns(config: Readonly<Config>): boolean {
  return needsDnsLists(config) || runs(config, 'spf') || runs(config, 'dns_sanity');
}

/** The pipeline in the order of `policy.checks`, without the checks whose mode is `off`. */
export function buildStages(config: Readonly<Config>, deps: StageDeps): PipelineStage[] {
  const { open, store } = deps;
  const policy = config.policy;
  const locality = new Locality({
    localDomains: open(config.local_domains, 'local_domains'),
    localNetworks: open(config.local_networks, 'local_networks'),
  });
  const factories: Record<PolicyCheckName, () => PolicyCheck> = {
    relay: () => createRelayCheck(policy.relay, locality, open(policy.relay.allow, 'policy.relay.allow')),
    sender_ownership: () =>
      createSenderOwnershipCheck(
        policy.sender_ownership,
        locality,
        open(policy.sender_ownership.map, 'policy.sender_ownership.map'),
        config.recipient_delimiter,
      ),
    recipients: () =>
      createRecipientsCheck(
        locality,
        open(policy.recipients.map, 'policy.recipients.map'),
        open(policy.recipients.aliases, 'policy.recipients.aliases'),
      ),
    limits: () => createLimitsCheck(policy.limits),
    ratelimit: () => {
      if (!store) throw new Error('ratelimit needs a store: open it when needsStore(config) is true');
      const r = policy.ratelimit;
      const overrides = Object.fromEntries(
        RATE_KINDS.map((kind) => [kind, open(r.overrides[kind], `policy.ratelimit.overrides.${kind}`)]),
      ) as Record<(typeof RATE_KINDS)[number], readonly LookupTable[]>;
      const tables = { exempt: open(r.exempt, 'policy.ratelimit.exempt'), overrides };
      const alerts = deps.ratelimitAlerts ?? NO_ALERTS;
      return createRatelimitCheck(r, tables, store, alerts, config.recipient_delimiter, deps.now);
    },
    lists: () =>
      createListsCheck(
        policy.lists,
        listTables(policy.lists.block, 'block', open, deps.runtimeLists),
        listTables(policy.lists.allow, 'allow', open, deps.runtimeLists),
      ),
    helo: () => createHeloCheck(policy.helo, locality, config.hostname),
    dnsbl: () => {
      const dns = deps.dnsbl;
      if (!dns) throw new Error('dnsbl needs its lists: build them when needsDnsLists(config) is true');
      return createDnsblCheck(policy.dnsbl, dns.lists, dns.health, locality, dns.resolver);
    },
    dns_sanity: () => {
      if (!deps.resolver)
        throw new Error('dns_sanity needs a resolver: build it when needsDns(config) is true');
      return createDnsSanityCheck(policy.dns_sanity, locality, deps.resolver);
    },
    spf: () => {
      if (!deps.spf) throw new Error('spf needs an evaluator: build it when needsDns(config) is true');
      return createSpfCheck(policy.spf, receiverName(config), locality, deps.spf);
    },
    greylist: () => {
      if (!store) throw new Error('greylist needs a store: open it when needsStore(config) is true');
      return createGreylistCheck(
        policy.greylist,
        locality,
        open(policy.greylist.allow, 'policy.greylist.allow'),
        open(policy.greylist.only_recipients, 'policy.greylist.only_recipients'),
        policy.greylist.default_allow
          ? open([...BIG_SENDER_CLIENT_DOMAINS], 'policy.greylist.default_allow')
          : [],
        store,
        config.recipient_delimiter,
        deps.now,
      );
    },
    auth_block: () => {
      if (!deps.authGuard)
        throw new Error('auth_block needs the auth guard: build it when auth_policy.enabled');
      return createAuthBlockCheck(policy.auth_block, deps.authGuard, config.auth_policy.block_text);
    },
  };
  const stages: PipelineStage[] = [];
  for (const name of policy.checks) {
    const mode = policy[name].mode;
    if (name === 'dnsbl' && !needsDnsLists(config)) continue; // no list configured: nothing to ask
    if (name === 'auth_block' && !config.auth_policy.enabled) continue; // no auth policy: nothing blocked
    if (mode !== 'off') stages.push({ check: factories[name](), mode, timeoutMs: policy.check_timeout_ms });
  }
  return stages;
}

/** This host's name in SPF headers: `policy.spf.authserv_id`, else `hostname`, else the machine's name. */
export function receiverName(config: Readonly<Config>): string {
  return config.policy.spf.authserv_id || config.hostname || hostname();
}

interface ConnectionState {
  readonly deadlines: CheckDeadlines;
  /** The message session of a connection whose requests carry no `instance` (hand-made queries). */
  local?: PolicyMessage;
}

/** A message as the policy face sees it: the core's session, its distinct recipients and its unfiled decisions. */
class PolicyMessage extends MessageSession {
  /**
   * Decisions made before Postfix assigned the queue id (the first RCPT), filed once it is known. Kept as JSON
   * text: one flat string per decision, where the record's objects would hold the whole request (its strings
   * are slices of it) and make every young-generation collection copy thousands of them (the greylist
   * benchmark's p99 doubled).
   */
  unfiled: string[] | undefined;
  /** The distinct recipients (lower case): the first alone, a Set from the second on. */
  private recipients: string | Set<string> | undefined;

  /** Counts a recipient once however often it is asked about; past `max` distinct ones the count stays. */
  countRecipient(recipient: string, max: number): void {
    const address = recipient.toLowerCase();
    if (this.recipients === undefined) this.recipients = address;
    else if (typeof this.recipients === 'string') {
      if (this.recipients !== address) this.recipients = new Set([this.recipients, address]);
    } else if (this.recipients.size < max) this.recipients.add(address);
    this.rcptCount = typeof this.recipients === 'string' ? 1 : this.recipients.size;
  }
}

/** Decisions of one message waiting for its queue id, at most (times MAX_MESSAGES sessions: keep it small). */
const MAX_UNFILED = 4;

function connectionState(connection: Connection): ConnectionState {
  return (connection.state['policy'] ??= { deadlines: new CheckDeadlines() }) as ConnectionState;
}

/**
 * Messages remembered at once; Postfix's `instance` of a message is not reused, so old ones just age out. Only
 * messages still in their SMTP transaction need a session, at most one per smtpd process (Postfix's
 * default_process_limit is 100): 4096 covers that many times over, and at a few KB a session (recipients,
 * memo, decisions waiting for the queue id) keeps a busy server's memory flat.
 */
const MAX_MESSAGES = 4096;
/** Distinct recipients counted when there is no recipient limit (the largest `max_recipients`, plus one). */
const MAX_COUNTED_RECIPIENTS = 100_001;
/** Memo entries a message keeps (a real one has one per check that memoises); past it the memo starts over. */
const MAX_MEMO_ENTRIES = 32;

/**
 * Per-message state keyed by Postfix's `instance`, shared by every policy connection: Postfix opens one
 * connection per distinct `check_policy_service` spelling, and a recipient may be asked about twice (relay and
 * recipient restrictions), so "header already added" and the recipient count must not live in a connection.
 * A bounded LRU (LruMap): the messages least recently asked about go first.
 */
export class MessageSessions {
  private readonly byInstance: LruMap<string, PolicyMessage>;

  constructor(
    max = MAX_MESSAGES,
    /** Distinct recipients counted per message: past the limit the count's answer no longer changes. */
    private readonly maxRecipients = MAX_COUNTED_RECIPIENTS,
  ) {
    this.byInstance = new LruMap(max);
  }

  /** The session of the request's message; its recipient count includes this request's recipient. */
  advance(request: PolicyRequest, connection: ConnectionState): PolicyMessage {
    let session: PolicyMessage | undefined;
    if (request.instance === '') {
      session = connection.local ??= new PolicyMessage();
    } else {
      session = this.byInstance.get(request.instance);
      if (!session) {
        session = new PolicyMessage();
        this.byInstance.set(request.instance, session);
      }
    }
    // Distinct recipients: the same RCPT asked about from two restriction lists counts once. A client that
    // reuses an `instance` (Postfix never does) must not grow the set or the memo without bound.
    if (request.protocolState === 'RCPT' && request.recipient !== '') {
      session.countRecipient(request.recipient, this.maxRecipients);
    }
    if (session.memoSize > MAX_MEMO_ENTRIES) session.memo.clear();
    return session;
  }
}

/** What the log line and the decision record say of a verdict. */
function verdictFields(v: RecordedVerdict) {
  return {
    check: v.check,
    symbol: v.symbol,
    score: v.score,
    ...(v.action ? { action: v.action } : {}),
    mode: v.mode,
    reason: v.reason,
  };
}

function decisionLog(request: PolicyRequest, decision: Decision, action: string, ms: number) {
  return {
    event: 'policy.decision',
    queue_id: request.queueId || undefined,
    instance: request.instance,
    state: request.protocolState,
    client: request.clientAddress,
    client_name: request.clientName,
    helo: request.heloName,
    sender: request.sender,
    recipient: request.recipient || undefined,
    sasl_username: request.saslUsername || undefined,
    decision: decision.action,
    action,
    score: decision.score,
    verdicts: decision.verdicts.map((v) => ({ ...verdictFields(v), ms: Number(v.ms.toFixed(3)) })),
    ...(decision.failures.length > 0
      ? {
          failures: decision.failures.map((f) => ({ ...f, ms: Number(f.ms.toFixed(3)) })),
          on_error: decision.onError,
        }
      : {}),
    ms: Number(ms.toFixed(3)),
  };
}

function decisionRecord(
  request: PolicyRequest,
  decision: Decision,
  action: string,
  time: number,
): DecisionRecord {
  return {
    face: 'policy',
    time: new Date(time).toISOString(),
    instance: request.instance,
    state: request.protocolState,
    client: request.clientAddress,
    sender: request.sender,
    ...(request.recipient ? { recipients: [request.recipient] } : {}),
    action: decision.action,
    score: decision.score,
    verdicts: decision.verdicts.map(verdictFields),
    ...(decision.failures.length > 0
      ? { failures: decision.failures.map((f) => ({ check: f.check, code: f.code, reason: f.reason })) }
      : {}),
    reply: action,
  };
}

/**
 * Files the decision under the queue id, with the message's earlier ones that had none yet; without a queue id
 * (Postfix assigns it after the first RCPT is accepted) keeps it for later, as JSON text, in the message's
 * session (a message deferred at RCPT, as greylisting does, never gets one).
 */
function fileDecision(
  recorder: DecisionRecorder,
  request: PolicyRequest,
  session: PolicyMessage,
  decision: Decision,
  action: string,
): void {
  if (request.queueId === '') {
    // Without an instance there is no message to file it under later; without a verdict it says nothing.
    if (request.instance === '' || (decision.verdicts.length === 0 && decision.failures.length === 0)) return;
    const record = JSON.stringify(decisionRecord(request, decision, action, Date.now()));
    session.unfiled = [...(session.unfiled ?? []), record].slice(-MAX_UNFILED);
    return;
  }
  for (const earlier of session.unfiled ?? []) {
    recorder.record(request.queueId, JSON.parse(earlier) as DecisionRecord);
  }
  session.unfiled = undefined;
  recorder.record(request.queueId, decisionRecord(request, decision, action, Date.now()));
}

export function createPolicyHandler(
  config: Readonly<Config>,
  stages: readonly PipelineStage[],
  logger: Logger,
  metrics: Metrics,
  recorder?: DecisionRecorder,
): RequestHandler {
  const policy = config.policy;
  const options = { onError: policy.on_error, rejectAt: policy.reject_at };
  const requests = metrics.get('postwarden_policy_requests_total');
  const decisions = metrics.get('postwarden_policy_decisions_total');
  const verdicts = metrics.get('postwarden_policy_verdicts_total');
  const failures = metrics.get('postwarden_policy_check_failures_total');
  const errors = metrics.get('postwarden_errors_total');
  const latency = metrics.get('postwarden_policy_request_duration_seconds');
  const maxRecipients = policy.limits.max_recipients;
  const messages = new MessageSessions(
    MAX_MESSAGES,
    maxRecipients === 0 ? MAX_COUNTED_RECIPIENTS : maxRecipients + 1,
  );

  /** The action for a decision, with its metrics, its record and its log line. */
  const answer = (request: PolicyRequest, session: PolicyMessage, decision: Decision, started: number) => {
    const action = policyAction(decision, { softBounce: policy.soft_bounce });
    if (decision.action === 'prepend' && decision.header)
      session.headersSent.add(headerName(decision.header));
    const ms = performance.now() - started;
    requests.inc({ protocol_state: request.protocolState });
    decisions.inc({ action: decision.action });
    for (const v of decision.verdicts) verdicts.inc({ check: v.check, symbol: v.symbol, mode: v.mode });
    for (const f of decision.failures) {
      failures.inc({ check: f.check, code: f.code });
      errors.inc({ code: f.code });
    }
    latency.observe(ms / 1000);
    if (recorder) fileDecision(recorder, request, session, decision, action);
    // Built only when written: at log level warn the line would be thrown away (≈ 3% of a request).
    if (logger.isLevelEnabled('info'))
      logger.info(decisionLog(request, decision, action, ms), 'policy decision');
    return action;
  };
  const failed = (error: unknown): string => {
    errors.inc({ code: 'PW-P009' });
    logger.error({ code: 'PW-P009', err: error }, 'policy request failed; answered per on_error');
    return errorAction(policy.on_error);
  };

  // Synchronous when every check answers synchronously: no promise, no microtask turn per request.
  return (attributes: Attributes, connection: Connection): string | Promise<string> => {
    const started = performance.now();
    try {
      const request = toPolicyRequest(attributes);
      const state = connectionState(connection);
      const session = messages.advance(request, state);
      const decision = runPipeline(stages, request, session, options, state.deadlines);
      if (decision instanceof Promise) {
        return decision.then((d) => answer(request, session, d, started)).catch(failed);
      }
      return answer(request, session, decision, started);
    } catch (error) {
      return failed(error);
    }
  };
}
