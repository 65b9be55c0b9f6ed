/**
 * The one config schema: types, defaults, bounds and a doc line per key (STYLE.md §8). Check modules own their
 * fragments; this file composes them. docs/config-reference.md is generated from it (`npm run docs:config`), and
 * a test fails when that file is stale.
 */
import { validate as validCron } from 'node-cron';
import { z } from 'zod';
import { authPolicySchema } from '../core/auth-guard.js';
import {
  authBlockSchema,
  dnsblSchema,
  dnsSanitySchema,
  greylistSchema,
  heloSchema,
  limitsSchema,
  listsSchema,
  POLICY_CHECK_NAMES,
  recipientsSchema,
  ratelimitSchema,
  relaySchema,
  senderOwnershipSchema,
  spfSchema,
} from '../core/checks/index.js';
import { antivirusSchema } from '../core/scanners/antivirus.js';
import { authenticationSchema } from '../core/scanners/authentication.js';
import { bannedSchema } from '../core/scanners/banned.js';
import { bayesSchema } from '../core/scanners/bayes.js';
import { loopSchema } from '../core/scanners/loop.js';
import { rulesSchema } from '../core/scanners/rules.js';
import { sanitySchema } from '../core/scanners/sanity.js';
import { uriblSchema } from '../core/scanners/uribl.js';
import { mapRefSchema, scoreSchema } from '../core/schema.js';
import { ldapSchema } from './ldap.js';

const HOST_PORT = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+|localhost)):(\d{1,5})$/;

/** `127.0.0.1:10060`, `[::1]:10060` or `unix:/path/to/socket`; port 0 picks a free port (tests). */
export const listenAddressSchema = z.string().superRefine((value, ctx) => {
  if (value.startsWith('unix:')) {
    const path = value.slice(5);
    if (!path.startsWith('/'))
      ctx.addIssue({
        code: 'custom',
        message: 'unix socket path must be absolute; use unix:/run/postwarden/policy.sock',
      });
    else if (Buffer.byteLength(path) > 107)
      ctx.addIssue({ code: 'custom', message: 'unix socket path longer than 107 bytes; use a shorter path' });
    return;
  }
  const match = HOST_PORT.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    ctx.addIssue({
      code: 'custom',
      message: 'not an address to listen on; use host:port (127.0.0.1:10060), [::1]:10060 or unix:/path',
    });
  }
});

/** Open connections of a face at most: each holds a file descriptor and its state. */
const connectionLimit = (what: string) => z.number().int().min(1).max(65_536).default(1000).describe(what);

const serverLimitsSchema = z
  .strictObject({
    max_connections: connectionLimit('Open policy connections at most; Postfix opens one per smtpd process'),
    max_line_bytes: z.number().int().min(256).max(1_048_576).default(8192).describe('Longest attribute line'),
    max_request_bytes: z
      .number()
      .int()
      .min(1024)
      .max(16_777_216)
      .default(65_536)
      .describe('Largest request (all lines)'),
    max_attributes: z.number().int().min(16).max(10_000).default(200).describe('Attributes per request'),
    idle_timeout_s: z
      .number()
      .int()
      .min(1)
      .max(86_400)
      .default(330)
      .describe("Close a connection idle this long (Postfix's own max_idle is 300 s)"),
    request_timeout_s: z
      .number()
      .int()
      .min(1)
      .max(3600)
      .default(60)
      .describe(
        'Close a connection whose request is begun but not whole this long (Postfix writes a request at once; a client dribbling bytes would hold a slot)',
      ),
    max_pending_requests: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(4)
      .describe('Requests a client may send ahead of the replies'),
  })
  .prefault({})
  .describe('Limits of the policy protocol server');

export const policySchema = z
  .strictObject({
    listen: z
      .union([listenAddressSchema, z.array(listenAddressSchema).min(1).max(8)])
      .default('127.0.0.1:10060')
      .describe(
        'Where Postfix reaches the policy service: host:port, [v6]:port, unix:/path, or a list of them',
      ),
    on_error: z
      .enum(['dunno', 'defer_if_permit'])
      .default('dunno')
      .describe(
        'Answer when a check fails internally and nothing else decided: DUNNO (fail open) or DEFER_IF_PERMIT (4xx)',
      ),
    soft_bounce: z
      .boolean()
      .default(false)
      .describe('Turn every 5xx reply into 4xx (a safe trial period, like Postfix soft_bounce)'),
    checks: z
      .array(z.enum(POLICY_CHECK_NAMES))
      .max(POLICY_CHECK_NAMES.length)
      .default([...POLICY_CHECK_NAMES])
      .refine((names) => new Set(names).size === names.length, {
        message: 'a check is listed twice; list each once',
      })
      .describe('The checks to run, in order; each also has its own mode'),
    check_timeout_ms: z.number().int().min(10).max(60_000).default(2000).describe('Deadline of each check'),
    reject_at: z
      .number()
      .min(0)
      .max(1000)
      .default(10)
      .describe('Reject when the summed score of the checks reaches this; 0 = never reject on score'),
    server: serverLimitsSchema,
    relay: relaySchema.prefault({}),
    sender_ownership: senderOwnershipSchema.prefault({}),
    recipients: recipientsSchema.prefault({}),
    limits: limitsSchema.prefault({}),
    ratelimit: ratelimitSchema.prefault({}),
    lists: listsSchema.prefault({}),
    helo: heloSchema.prefault({}),
    dns_sanity: dnsSanitySchema.prefault({}),
    dnsbl: dnsblSchema.prefault({}),
    spf: spfSchema.prefault({}),
    greylist: greylistSchema.prefault({}),
    auth_block: authBlockSchema.prefault({}),
  })
  .describe('The policy service (Postfix check_policy_service)');

export const storeSchema = z
  .strictObject({
    driver: z
      .enum(['sqlite', 'redis'])
      .default('sqlite')
      .describe(
        'sqlite: one file, for one host; redis: shared by several postwarden instances (primary and backup MX)',
      ),
    path: z
      .string()
      .min(1)
      .default('/var/lib/postwarden/state.db')
      .describe('sqlite: the database file (its directory is created, mode 0750)'),
    url: z
      .string()
      .regex(/^rediss?:\/\//, 'not a Redis URL; use redis://host:port/db')
      .default('redis://127.0.0.1:6379/0')
      .describe('redis: the server, when no sentinels are given'),
    sentinels: z
      .array(z.string().regex(/^[^:\s]+:\d{1,5}$/, 'not host:port; use e.g. 127.0.0.1:26379'))
      .max(16)
      .default([])
      .describe('redis: Sentinel addresses (host:port); the client follows the master named by `name`'),
    name: z.string().min(1).default('mymaster').describe('redis: the Sentinel master name'),
    key_prefix: z.string().max(64).default('postwarden:').describe('redis: prefix of every key'),
    username: z.string().max(128).default('').describe('redis: ACL user name (empty = the default user)'),
    password_file: z
      .string()
      .default('')
      .describe(
        'redis: a file holding the password (first line), readable by postwarden only; kept out of the config and the logs',
      ),
    sentinel_password_file: z
      .string()
      .default('')
      .describe('redis: a file holding the Sentinels’ own password, when they require one'),
    db: z.number().int().min(0).max(255).default(0).describe('redis with sentinels: the database number'),
    max_bytes: z
      .number()
      .int()
      .min(0)
      .default(2_147_483_648)
      .describe(
        'sqlite: largest the file may grow; writes beyond fail as the store being unavailable (0 = no cap)',
      ),
    timeout_ms: z
      .number()
      .int()
      .min(10)
      .max(10_000)
      .default(250)
      .describe('Deadline of each store operation'),
  })
  .describe('Where state is kept: greylist triplets, auto-whitelist, later rates and reputation');

/** A resolver address: `host`, `host:port` or `[v6]:port` (Resolver.setServers). Loopback is the sane choice. */
const dnsServerSchema = z
  .string()
  .regex(
    /^(?:\[[0-9a-fA-F:.]+\](?::\d{1,5})?|[0-9a-fA-F:]*:[0-9a-fA-F:.]*|\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?)$/,
    'not a resolver address; use an IP, IP:port or [v6]:port, e.g. 127.0.0.1 or 127.0.0.1:5353',
  );

export const dnsSchema = z
  .strictObject({
    servers: z
      .array(dnsServerSchema)
      .min(1)
      .max(8)
      .default(['127.0.0.1'])
      .describe(
        'Resolvers to ask, in order: a local recursive resolver (unbound); never a public one, whose queries DNS lists refuse',
      ),
    timeout_ms: z
      .number()
      .int()
      .min(50)
      .max(30_000)
      .default(1000)
      .describe('Deadline of one query, retries included (a local resolver answers in milliseconds)'),
    tries: z.number().int().min(1).max(5).default(2).describe('Attempts per server within the deadline'),
    max_in_flight: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(2000)
      .describe('Queries waiting for an answer at most; more fail at once (counted)'),
    cache: z
      .strictObject({
        max_entries: z
          .number()
          .int()
          .min(0)
          .max(10_000_000)
          .default(100_000)
          .describe('Answers kept at most (LRU)'),
        max_ttl_s: z
          .number()
          .int()
          .min(0)
          .max(86_400)
          .default(3600)
          .describe('Longest time an answer is kept'),
        default_ttl_s: z
          .number()
          .int()
          .min(0)
          .max(86_400)
          .default(300)
          .describe('Time kept for TXT, MX and PTR answers (Node reports TTLs for A and AAAA only)'),
        negative_ttl_s: z
          .number()
          .int()
          .min(0)
          .max(86_400)
          .default(120)
          .describe('Time kept for NXDOMAIN and NODATA (e.g. "not listed")'),
        error_ttl_s: z
          .number()
          .int()
          .min(0)
          .max(3600)
          .default(5)
          .describe(
            'Time kept for SERVFAIL and refusals, so a failing server is not hammered; timeouts are not kept',
          ),
      })
      .prefault({})
      .describe('The answer cache'),
  })
  .describe('DNS: every check that looks something up asks these resolvers, never the system’s');

const cronSchema = z.string().refine((expression) => validCron(expression), {
  message: 'not a cron expression; use five fields, e.g. "*/10 * * * *" (every ten minutes)',
});

export const jobsSchema = z
  .strictObject({
    purge: cronSchema
      .default('*/10 * * * *')
      .describe('When expired state is removed (SQLite; Redis expires by itself)'),
    compact: cronSchema
      .default('30 3 * * *')
      .describe('When the store gives back space (SQLite WAL checkpoint)'),
    dnsbl_selftest: cronSchema
      .default('*/5 * * * *')
      .describe('When every DNS list is self-tested (also at start); a failing list stops counting'),
    quarantine: cronSchema
      .default('15 4 * * *')
      .describe('When held messages older than filter.quarantine.retention_days are removed'),
    summary: cronSchema
      .default('0 0 * * *')
      .describe('When a summary of the decisions since the last one is logged'),
  })
  .describe('Periodic jobs (cron expressions, local time); each reports its last run in the metrics');

export const FILTER_SCANNER_NAMES = [
  'loop',
  'sanity',
  'banned',
  'authentication',
  'rules',
  'uribl',
  'antivirus',
  'bayes',
] as const;

export const filterSchema = z
  .strictObject({
    enabled: z
      .boolean()
      .default(false)
      .describe(
        'Run the content filter face (Postfix reaches it through content_filter); the generator turns it on',
      ),
    mode: z
      .enum(['after_queue', 'before_queue'])
      .default('after_queue')
      .describe(
        'after_queue: Postfix content_filter, held mail is quarantined; before_queue: smtpd_proxy_filter, a hard verdict answers 550 5.7.1 to the sending client',
      ),
    listen: listenAddressSchema
      .default('127.0.0.1:10061')
      .describe('Where Postfix hands messages to the filter'),
    reinject: z
      .string()
      .regex(/^[^:\s]+:\d{1,5}$/, 'not host:port; use e.g. 127.0.0.1:10062')
      .default('127.0.0.1:10062')
      .describe('Postfix’s re-injection smtpd (content_filter= cleared there, or mail loops)'),
    max_message_bytes: z
      .number()
      .int()
      .min(1024)
      .max(2_147_483_647)
      .default(52_428_800)
      .describe('Largest message; keep it at or above Postfix’s message_size_limit (larger gets 552 5.3.4)'),
    max_connections: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(20)
      .describe('Connections at once; match the maxproc of the filter transport in master.cf (10)'),
    idle_timeout_s: z
      .number()
      .int()
      .min(1)
      .max(3600)
      .default(300)
      .describe(
        "Close a connection silent this long, in DATA too, so a stalled client frees its slot (Postfix's smtp_data_xfer_timeout is 180 s)",
      ),
    data_timeout_s: z
      .number()
      .int()
      .min(10)
      .max(3600)
      .default(600)
      .describe(
        "Receiving one message's DATA (354 to the final dot) takes at most this long; past it 451 4.4.2 and the connection is closed, so a client trickling bytes cannot keep its slot",
      ),
    message_timeout_ms: z
      .number()
      .int()
      .min(1000)
      .max(3_600_000)
      .default(300_000)
      .describe(
        'Deadline of one message, scan and re-injection included; keep it under smtp_data_done_timeout',
      ),
    spool_dir: z
      .string()
      .min(1)
      .default('/var/lib/postwarden/spool')
      .describe('Where messages wait while they are scanned (mode 0700)'),
    scanners: z
      .array(z.enum(FILTER_SCANNER_NAMES))
      .max(FILTER_SCANNER_NAMES.length)
      .default([...FILTER_SCANNER_NAMES])
      .refine((names) => new Set(names).size === names.length, {
        message: 'a scanner is listed twice; list each once',
      })
      .describe('The scanners to run, in order; each also has its own mode'),
    parse: z
      .strictObject({
        max_depth: z.number().int().min(1).max(100).default(20).describe('MIME nesting described at most'),
        max_parts: z
          .number()
          .int()
          .min(1)
          .max(100_000)
          .default(1000)
          .describe('MIME parts described at most'),
        keep_bytes: z
          .number()
          .int()
          .min(0)
          .max(104_857_600)
          .default(52_428_800)
          .describe(
            'Decoded bytes kept of each attachment the banned scanner reads whole: archives it looks into and programs (a zip’s directory is at its end: keep whole archives); other attachments are decoded for their first 4 KiB only',
          ),
        max_text_chars: z
          .number()
          .int()
          .min(1000)
          .max(10_000_000)
          .default(500_000)
          .describe(
            'Characters of the text and HTML bodies kept for the content rules and the classifier (each body is read up to 4 encoded bytes a character; a longer one counts as MIME_LIMITS)',
          ),
      })
      .prefault({})
      .describe('Bounds of the MIME parse'),
    loop: loopSchema.prefault({}),
    sanity: sanitySchema.prefault({}),
    banned: bannedSchema.prefault({}),
    authentication: authenticationSchema.prefault({}),
    rules: rulesSchema.prefault({}),
    uribl: uriblSchema.prefault({}),
    antivirus: antivirusSchema.prefault({}),
    bayes: bayesSchema.prefault({}),
    spam: z
      .strictObject({
        tag_at: scoreSchema
          .default(5)
          .describe('Mark as spam (X-Spam-Flag: YES, filed into Junk by Sieve) at this score'),
        quarantine_at: scoreSchema
          .default(12)
          .describe('After the queue: hold in quarantine at this score (recipients may release spam)'),
        reject_at: scoreSchema.default(15).describe('Before the queue: refuse (550 5.7.1) at this score'),
      })
      .prefault({})
      .describe('What the summed score of the scanners does to a message'),
    quarantine: z
      .strictObject({
        dir: z
          .string()
          .min(1)
          .default('/var/lib/postwarden/quarantine')
          .describe('Where held messages are kept, compressed (mode 0700)'),
        retention_days: z.number().int().min(1).max(3650).default(30).describe('Days a held message is kept'),
        notify: z
          .boolean()
          .default(true)
          .describe(
            'Tell the recipients (the postmaster, for loops) that a message was held, why, and how to get it',
          ),
        postmaster: z
          .string()
          .min(1)
          .max(254)
          .default('postmaster')
          .describe(
            'Who gets loop notices and is named in notices as the one to ask (a bare name gets $myorigin)',
          ),
      })
      .prefault({})
      .describe('Quarantine of held messages'),
  })
  .describe('The content filter (Postfix content_filter, after the queue)');

export const httpSchema = z
  .strictObject({
    listen: listenAddressSchema.default('127.0.0.1:10063').describe('Metrics, health and the admin API'),
    max_connections: connectionLimit(
      "Open HTTP connections at most (Dovecot's auth processes, scrapers, the admin API); more are closed at once, so a flood cannot run the process out of file descriptors",
    ),
    token_file: z
      .string()
      .default('/etc/postwarden/admin.token')
      .describe(
        'A file holding the admin API token (first line, 32+ characters, readable by postwarden only); without it the API answers 503',
      ),
    learn_queue: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(1000)
      .describe(
        'Learn reports (from Dovecot) waiting at most; more are refused with 503 and Dovecot retries nothing',
      ),
    public_url: z
      .string()
      .max(500)
      .refine(
        (u) => u === '' || (/^https?:\/\/[^/?#@\s]+(\/[^?#\s]*)?$/.test(u) && URL.canParse(u)),
        'not an http(s) base address; use e.g. https://mail.example.org or https://mail.example.org/postwarden (no user, query or fragment)',
      )
      .default('')
      .describe(
        'The address users reach the quarantine page at (e.g. https://mail.example.org, through a reverse proxy); set, notices carry signed release links; empty: no links',
      ),
    link_secret_file: z
      .string()
      .min(1)
      .default('/var/lib/postwarden/link.secret')
      .describe(
        'The key that signs release links (32+ bytes); created (mode 0600, 32 random bytes) when missing and public_url is set. Replacing it voids every link sent',
      ),
    link_valid_days: z
      .number()
      .int()
      .min(1)
      .max(365)
      .default(7)
      .describe(
        'Days a release link in a notice stays valid (never longer than the message stays in quarantine)',
      ),
  })
  .describe('The HTTP face');

export const logSchema = z
  .strictObject({
    level: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace'])
      .default('info')
      .describe('Least severe level logged'),
  })
  .describe('Logging (JSON lines on stdout)');

export const learnSchema = z
  .strictObject({
    socket: z
      .string()
      .refine((v) => v === '' || v.startsWith('/'), 'not an absolute path; use e.g. /run/postwarden/learn')
      .refine(
        (v) => Buffer.byteLength(v) <= 107,
        'longer than 107 bytes (a unix socket path); use a shorter one',
      )
      .default('')
      .describe(
        "A unix socket Dovecot's Sieve `pipe` reaches to report a message moved into or out of Junk (Dovecot's script-service protocol; the program name in the script is the socket's file name, found in base_dir/sieve_pipe_socket_dir); '' = off",
      ),
    socket_mode: z
      .string()
      .regex(/^0?[0-7]{3}$/, 'not an octal file mode; use e.g. 0660')
      .default('0660')
      .describe(
        'File mode of the socket: the mail processes (Dovecot mail_uid/mail_gid) must be able to write to it',
      ),
    socket_group: z
      .string()
      .max(64)
      .default('')
      .describe(
        "Group (name or number) given to the socket, e.g. the mail processes' group (vmail); postwarden must be a member; '' = postwarden's own",
      ),
    max_message_bytes: z
      .number()
      .int()
      .min(1024)
      .max(104_857_600)
      .default(10_485_760)
      .describe(
        'Largest message a report may carry; a larger one is read, dropped and answered with failure',
      ),
    max_connections: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(50)
      .describe('Reports being received at once (one per IMAP process moving mail); more are closed at once'),
    timeout_s: z
      .number()
      .int()
      .min(1)
      .max(3600)
      .default(30)
      .describe('A report connection idle this long is closed without an answer'),
  })
  .describe(
    'Learning from users moving mail into and out of Junk, reported by Dovecot (IMAPSieve) over a unix socket; the reports join the learn queue of the HTTP learn API (http.learn_queue)',
  );

export const decisionsSchema = z
  .strictObject({
    enabled: z
      .boolean()
      .default(true)
      .describe(
        'Record every decision about a message (verdicts and reasons) under its Postfix queue id, for GET /api/v1/decisions/:queueId; needs the state store',
      ),
    retention_s: z
      .number()
      .int()
      .min(60)
      .max(90 * 86_400)
      .default(7 * 86_400)
      .describe('How long a decision record is kept (seconds)'),
    max_pending: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(1000)
      .describe(
        'Records being written at most; beyond that a record is dropped (counted), never delaying an answer',
      ),
  })
  .describe('Decision records (why a message went as it did)');

export const configSchema = z
  .strictObject({
    hostname: z
      .string()
      .max(253)
      .regex(/^[A-Za-z0-9.-]*$/, 'not a host name; use letters, digits, dots and hyphens')
      .default('')
      .describe(
        "This host's name as remote clients know it (Postfix's myhostname); empty = the machine's host name",
      ),
    recipient_delimiter: z
      .string()
      .max(8)
      .regex(/^[^\s@"]*$/, 'not usable as a delimiter; use characters such as + or -')
      .default('+')
      .describe(
        "Characters that start an address extension, as Postfix's recipient_delimiter: user+tag@ matches user@ entries and owns user@ ('' = none)",
      ),
    local_domains: mapRefSchema
      .default([])
      .describe(
        'Domains this host receives mail for (a list, or a map such as file:/etc/postwarden/domains)',
      ),
    local_networks: mapRefSchema
      .default(['127.0.0.0/8', '::1/128'])
      .describe('Client networks trusted to relay (IPs and CIDRs, or a map)'),
    dns: dnsSchema.prefault({}),
    store: storeSchema.prefault({}),
    jobs: jobsSchema.prefault({}),
    policy: policySchema.prefault({}),
    filter: filterSchema.prefault({}),
    http: httpSchema.prefault({}),
    log: logSchema.prefault({}),
    learn: learnSchema.prefault({}),
    auth_policy: authPolicySchema.prefault({}),
    decisions: decisionsSchema.prefault({}),
    ldap: ldapSchema.prefault({}),
  })
  .superRefine((config, ctx) => {
    const relayOn = config.policy.checks.includes('relay') && config.policy.relay.mode === 'enforce';
    const noDomains = Array.isArray(config.local_domains) && config.local_domains.length === 0;
    if (relayOn && noDomains) {
      ctx.addIssue({
        code: 'custom',
        path: ['local_domains'],
        message:
          'no local domain: the relay check would refuse all inbound mail; list the domains this host receives mail for, or set policy.relay.mode: off',
      });
    }
  })
  .describe('postwarden configuration');

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
