/**
 * Stable event and error codes: every log line that reports trouble carries one, and docs/events.md (generated
 * from this table, checked by a test) says what it means and how to fix it. Codes are never reused.
 */
export interface EventCode {
  readonly code: string;
  readonly level: 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  readonly summary: string;
  readonly fix: string;
}

const table = [
  // Config and start-up
  {
    code: 'PW-C001',
    level: 'fatal',
    summary: 'Config has problems; nothing was started',
    fix: 'Run `postwarden check-config` and correct each key it names.',
  },
  {
    code: 'PW-C002',
    level: 'warn',
    summary: 'No config file; running on the embedded default (loopback, local_domains: [localhost])',
    fix: 'Write /etc/postwarden/postwarden.yml (or pass --config) with your domains and networks.',
  },
  {
    code: 'PW-C003',
    level: 'fatal',
    summary: 'A listener could not be opened (address in use, permission, bad path)',
    fix: 'Free the port or choose another in policy.listen / http.listen; `ss -ltnp` shows who holds it.',
  },
  {
    code: 'PW-C004',
    level: 'info',
    summary: 'Reload requested (SIGHUP): maps re-read',
    fix: 'None: informational.',
  },
  { code: 'PW-C005', level: 'info', summary: 'Started; faces listening', fix: 'None: informational.' },
  {
    code: 'PW-C006',
    level: 'info',
    summary: 'Stopping on a signal; open connections are finished or closed',
    fix: 'None: informational.',
  },
  {
    code: 'PW-C007',
    level: 'fatal',
    summary:
      'The content filter could not be prepared (spool or quarantine directory not usable, antivirus without socket or host); nothing was started',
    fix: 'Read the reason: create the directory (or correct filter.spool_dir / filter.quarantine.dir) with write access for postwarden’s user, or set filter.antivirus.socket to clamd’s LocalSocket.',
  },
  // Policy protocol
  {
    code: 'PW-P001',
    level: 'warn',
    summary: 'Malformed policy request line (no `=`, NUL or control byte); connection closed without a reply',
    fix: 'Only Postfix (or `postwarden policy-query`) should talk to the policy port; check what connects to it.',
  },
  {
    code: 'PW-P002',
    level: 'warn',
    summary: 'Policy request line longer than policy.server.max_line_bytes; connection closed',
    fix: 'Raise policy.server.max_line_bytes if a legitimate attribute (e.g. ccert_subject) is that long.',
  },
  {
    code: 'PW-P003',
    level: 'warn',
    summary: 'Policy request larger than policy.server.max_request_bytes; connection closed',
    fix: 'Raise policy.server.max_request_bytes only if Postfix really sends that much.',
  },
  {
    code: 'PW-P004',
    level: 'warn',
    summary: 'More attributes in one request than policy.server.max_attributes; connection closed',
    fix: 'Raise policy.server.max_attributes only if Postfix really sends that many.',
  },
  {
    code: 'PW-P005',
    level: 'warn',
    summary: 'Request without `request=smtpd_access_policy`; connection closed',
    fix: 'The client is not Postfix, or sends a different protocol: check the check_policy_service line.',
  },
  {
    code: 'PW-P006',
    level: 'debug',
    summary: 'Idle policy connection closed after policy.server.idle_timeout_s',
    fix: 'None: Postfix reconnects when it needs to.',
  },
  {
    code: 'PW-P007',
    level: 'warn',
    summary: 'Connection refused: policy.server.max_connections reached',
    fix: "Raise policy.server.max_connections above the sum of the smtpd process limits that use this service (Postfix's default_process_limit is 100 per service).",
  },
  {
    code: 'PW-P008',
    level: 'warn',
    summary:
      'Client sent more requests ahead of the replies than policy.server.max_pending_requests; connection closed',
    fix: 'Postfix never pipelines policy requests; check what connects to the policy port.',
  },
  {
    code: 'PW-P009',
    level: 'error',
    summary: 'Internal error while answering a request; answered with policy.on_error',
    fix: 'Report it with the log line; the request was answered per on_error.',
  },
  {
    code: 'PW-P010',
    level: 'warn',
    summary: 'Connection closed with a request half sent',
    fix: 'None usually: Postfix gave up (timeout) or the client died.',
  },
  // Checks
  {
    code: 'PW-E001',
    level: 'error',
    summary: 'A check failed internally; policy.on_error decided',
    fix: 'Read the reason in the decision log; the check named there is the one to look at.',
  },
  {
    code: 'PW-E002',
    level: 'warn',
    summary: 'A check missed its deadline (policy.check_timeout_ms); policy.on_error decided',
    fix: 'Look at the dependency the check waits on (DNS, LDAP, store); raise check_timeout_ms only if it is healthy but slow.',
  },
  {
    code: 'PW-E003',
    level: 'error',
    summary: 'A lookup table could not answer; policy.on_error decided',
    fix: 'See the map event (PW-M010/PW-M011) for that table and repair the file or service.',
  },
  // Content filter
  {
    code: 'PW-F001',
    level: 'error',
    summary:
      'The content filter failed on a message (spool write, parse, quarantine write); answered 451, Postfix keeps the message and retries',
    fix: 'Read the reason: usually disk space or permissions under filter.spool_dir or filter.quarantine.dir.',
  },
  {
    code: 'PW-F002',
    level: 'warn',
    summary:
      'A content scanner failed or missed its deadline; its on_failure decided (defer: 451, pass: delivered unscanned by it)',
    fix: 'Look at the scanner named in the decision log (clamd down: `systemctl status clamav-daemon`).',
  },
  {
    code: 'PW-F003',
    level: 'error',
    summary: 'A message was not finished within filter.message_timeout_ms; answered 451, Postfix retries',
    fix: 'Look at what was slow (scanner or re-injection times in the metrics); raise the timeout only if all is healthy, and keep it under Postfix’s smtp_data_done_timeout.',
  },
  {
    code: 'PW-F004',
    level: 'error',
    summary: 'Postfix’s re-injection smtpd did not take a filtered message; answered 451, Postfix retries',
    fix: 'Check the re-injection listener in master.cf (filter.reinject, content_filter= cleared there) and that it is running: `postconf -M`.',
  },
  {
    code: 'PW-F005',
    level: 'warn',
    summary:
      'At start, the filter removed spool files a previous run left (it stopped mid-message); Postfix still has those messages queued and sends them again',
    fix: 'None if rare. Often: find why postwarden was stopped hard (OOM killer, SIGKILL) in the system journal.',
  },
  {
    code: 'PW-F006',
    level: 'warn',
    summary:
      'A notice that a message was held could not be sent to some recipients (the message itself is safe in quarantine)',
    fix: 'Check the re-injection smtpd (filter.reinject) and the recipient addresses named in the decision log.',
  },
  {
    code: 'PW-F007',
    level: 'warn',
    summary:
      'Autolearn could not store what it learned from a message (the message itself was handled normally)',
    fix: 'Usually the store is unavailable (see PW-S001); nothing to do once it is back.',
  },
  // DNS lists
  {
    code: 'PW-D001',
    level: 'error',
    summary:
      'A DNS list failed its self-test (does not list its test point, lists 127.0.0.1, answers error codes, or stopped answering): its hits no longer count',
    fix: 'Read the reason and fix in the line: usually query through a local recursive resolver (unbound) rather than a public one, use the list’s data-query key, or correct the zone name; the list counts again by itself once its self-test passes.',
  },
  {
    code: 'PW-D002',
    level: 'info',
    summary: 'A DNS list passes its self-test again; its hits count again',
    fix: 'None: informational.',
  },
  {
    code: 'PW-D010',
    level: 'error',
    summary:
      'The resolvers in dns.servers stopped answering (several queries in a row timed out or were refused): DNS lists and SPF give no result, dns_sanity defers mail with 450 4.1.8; /readyz is 503',
    fix: 'Start or repair the local resolver (`apt install unbound`; `systemctl status unbound`), or point dns.servers at one that answers; test with `dig @127.0.0.1 example.org`.',
  },
  {
    code: 'PW-D011',
    level: 'info',
    summary: 'The resolvers in dns.servers answer again',
    fix: 'None: informational.',
  },
  // Jobs
  {
    code: 'PW-J001',
    level: 'info',
    summary:
      'A periodic job ran, with what it did and how long it took; the summary job carries the decisions and symbols counted since its last run',
    fix: 'None: informational.',
  },
  {
    code: 'PW-J002',
    level: 'error',
    summary: 'A periodic job failed; it runs again at its next time',
    fix: 'Read the reason; a store job failing usually means the store is unavailable (see PW-S001).',
  },
  // HTTP
  {
    code: 'PW-H002',
    level: 'warn',
    summary: 'An admin API request without a valid bearer token was refused (401)',
    fix: 'Give the caller the token of http.token_file (Authorization: Bearer …); repeated refusals from elsewhere are someone guessing.',
  },
  {
    code: 'PW-H003',
    level: 'warn',
    summary:
      'The admin API is off: http.token_file is missing, unreadable or holds a token shorter than 32 characters',
    fix: 'Write one: `umask 077; head -c 32 /dev/urandom | base64 > /etc/postwarden/admin.token; chown postwarden /etc/postwarden/admin.token`, then restart.',
  },
  {
    code: 'PW-H001',
    level: 'error',
    summary: 'HTTP request failed inside a route',
    fix: 'Report it with the log line.',
  },
  // Rate limits
  {
    code: 'PW-E004',
    level: 'error',
    summary:
      'A policy.ratelimit.overrides entry has a value that is not a rate; the check fails and policy.on_error decides',
    fix: 'Write the value as `messages=N/PERIOD recipients=N/PERIOD` (a bare N/PERIOD is messages; none lifts the limit), e.g. `alice@example.org messages=500/1h`.',
  },
  {
    code: 'PW-R001',
    level: 'warn',
    summary: 'A SASL user went over a rate limit: an incident is open and its mail goes to the hold queue',
    fix: 'See docs/rate-limits.md: check the account (a stolen password?), then delete or release its held mail and reset it through the admin API.',
  },
  {
    code: 'PW-R002',
    level: 'warn',
    summary: 'The admin notice of a rate-limit incident could not be sent; it is retried',
    fix: 'Check that policy.ratelimit.notify.smtp accepts mail from postwarden for notify.to (the reason names the reply).',
  },
  {
    code: 'PW-R003',
    level: 'error',
    summary:
      'The admin notice of a rate-limit incident was given up (every attempt failed, or too many were waiting)',
    fix: 'Fix the SMTP path (see PW-R002); the incident is still listed by GET /api/v1/ratelimit/users.',
  },
  {
    code: 'PW-R004',
    level: 'info',
    summary: "An admin released, deleted or reset a user's held mail or incident through the API",
    fix: 'None: informational.',
  },
] as const satisfies readonly EventCode[];

export type Code = (typeof table)[number]['code'];

export const EVENT_CODES: readonly EventCode[] = table;
