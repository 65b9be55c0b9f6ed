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
    fix: 'None usually: Postfix gave up (timeout), the client died, or it left a request unfinished past policy.server.request_timeout_s.',
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
  {
    code: 'PW-F008',
    level: 'warn',
    summary:
      'A message’s DATA was not received in full within filter.data_timeout_s (the client sent it too slowly); answered 451 4.4.2, nothing kept, the connection closed, Postfix retries',
    fix: 'None if rare. Often: something other than Postfix trickles data into the filter port (it should listen on loopback only), or Postfix reads the queue file that slowly (disk); raise filter.data_timeout_s only for a slow before_queue client without smtpd_proxy_options=speed_adjust.',
  },
  {
    code: 'PW-F009',
    level: 'error',
    summary:
      'clamd stopped answering (a scan could not reach it, timed out or lost the connection, or a PING got no PONG): with filter.antivirus.on_failure defer, every message is deferred with 451; /readyz is 503',
    fix: 'Read the reason: start or repair clamd (`systemctl status clamav-daemon`; it needs its signatures: freshclam), or correct filter.antivirus.socket (host, port); `clamdscan --ping 1` as postwarden’s user answers PONG when it is back. postwarden notices by itself.',
  },
  {
    code: 'PW-F010',
    level: 'info',
    summary: 'clamd answers again; messages are scanned',
    fix: 'None: informational. `postqueue -f` sends the deferred mail now rather than at the next retry.',
  },
  {
    code: 'PW-F011',
    level: 'warn',
    summary:
      'Held messages in the quarantine directory that cannot be listed, released or expired by their entry: the `<id>.json` beside `<id>.eml.gz` is missing, unreadable or names another id (a crash between the two writes, a full disk, a hand edit); logged by the quarantine job with up to 20 ids. They are removed once older than filter.quarantine.retention_days',
    fix: 'Look at the message: `zcat <dir>/<id>.eml.gz | less`. To deliver it, hand it to Postfix past the filter, through the re-injection port (filter.reinject): `zcat <dir>/<id>.eml.gz | swaks --server 127.0.0.1:10062 --from <sender> --to <recipient> --data -`, then remove both files; to drop it, remove both files. Check the disk (`df`) and that only postwarden writes the directory.',
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
    code: 'PW-H030',
    level: 'warn',
    summary: 'An HTTP connection was refused: http.max_connections connections were open',
    fix: 'Raise http.max_connections if the callers are yours (Dovecot auth processes, scrapers); many refusals from elsewhere are a flood.',
  },
  {
    code: 'PW-H001',
    level: 'error',
    summary: 'HTTP request failed inside a route',
    fix: 'Report it with the log line.',
  },
  // Dovecot (the learn socket, Dovecot's script-service protocol)
  {
    code: 'PW-V001',
    level: 'warn',
    summary:
      'A connection to the learn socket was closed without an answer: not the script protocol, a malformed header, or closed before the header ended',
    fix: "Only Dovecot's Sieve `pipe` (sieve_pipe_socket_dir) should connect; check that nothing else writes to learn.socket.",
  },
  {
    code: 'PW-V002',
    level: 'warn',
    summary:
      'A learn socket connection was closed without an answer: too many at once (learn.max_connections) or idle (learn.timeout_s)',
    fix: 'Raise learn.max_connections if users move many messages at once; an idle connection is a stuck client.',
  },
  {
    code: 'PW-V003',
    level: 'warn',
    summary:
      'A learn report from Dovecot was answered with failure: no class (spam or ham) as the first argument, a message over learn.max_message_bytes, or the learn queue full',
    fix: 'Call the program as `pipe :copy "<socket name>" ["spam"]` (or "ham"); raise learn.max_message_bytes or http.learn_queue when they are the reason.',
  },
  {
    code: 'PW-V004',
    level: 'error',
    summary:
      'learn.socket is set but nothing learns here (the content filter with its Bayes store is off): the socket stays closed',
    fix: 'Enable the filter (filter.enabled) with a store on this instance, or set learn.socket on the instance that runs it.',
  },
  // Dovecot auth policy
  {
    code: 'PW-G001',
    level: 'warn',
    summary:
      'The auth policy could not decide (store or allow map unavailable) and answered 0: Dovecot let the login through and nothing was counted (fail-open, as Dovecot itself does); logged at most every 10 s with the number of requests not logged',
    fix: 'Read the reason; bring the store back (see PW-S001) or fix the auth_policy.allow map. postwarden_auth_policy_requests_total{result="fail_open"} counts the requests.',
  },
  {
    code: 'PW-G002',
    level: 'warn',
    summary:
      'An auth-policy request without the right X-API-Key was refused (401); Dovecot let the login through',
    fix: 'Make Dovecot’s auth_policy_server_api_header the key in auth_policy.api_key_file (`X-API-Key: <key>`), then `doveadm reload`.',
  },
  {
    code: 'PW-G003',
    level: 'warn',
    summary:
      'The auth policy is enabled but auth_policy.api_key_file is missing, unreadable or shorter than 16 characters: every request answers 503 and Dovecot lets logins through',
    fix: 'Write one: `umask 077; head -c 24 /dev/urandom | base64 > /etc/postwarden/auth-policy.key`, put the same key in Dovecot’s auth_policy_server_api_header, restart postwarden.',
  },
  {
    code: 'PW-G004',
    level: 'warn',
    summary:
      'An address, network or address+login reached its failed-login threshold and is blocked for auth_policy.auth_block_s',
    fix: 'None if it is an attack. For a false block, delete the key (`auth:block:addr:<ip>`, `auth:block:net:<cidr>`, `auth:block:login:<ip>|<login>`) from the store, and add trusted networks to auth_policy.allow.',
  },
  {
    code: 'PW-H020',
    level: 'info',
    summary: 'The key of release links (http.link_secret_file) was missing and has been created (mode 0600)',
    fix: 'None: informational. Keep the file when you move or rebuild the host, or links already sent stop working.',
  },
  {
    code: 'PW-H021',
    level: 'error',
    summary:
      'Release links are off: http.link_secret_file cannot be read or created, or holds fewer than 32 bytes',
    fix: 'Let the postwarden user create the file (its directory writable), or write 32+ random bytes to it: `umask 077; head -c 32 /dev/urandom > FILE`, then restart.',
  },
  {
    code: 'PW-H022',
    level: 'warn',
    summary:
      'The quarantine page refused a forged, tampered or malformed release link, or a form sent from another site',
    fix: 'None if it is rare (a link mangled by a mail client). Many of them are someone probing: look at the remote addresses.',
  },
  {
    code: 'PW-H023',
    level: 'warn',
    summary: 'A login to the quarantine page with a wrong admin token',
    fix: 'Use the token of http.token_file; repeated failures from elsewhere are someone guessing.',
  },
  {
    code: 'PW-H024',
    level: 'warn',
    summary: 'A release from the quarantine page failed: the re-injection smtpd did not take the message',
    fix: 'Check the re-injection smtpd (filter.reinject); nothing changed, the release can be tried again.',
  },
  {
    code: 'PW-H004',
    level: 'info',
    summary:
      'An admin changed state through the API (quarantine release or delete, greylist delete or allow, list entry add or remove); the line says what and from where',
    fix: 'None: an audit record. Unexpected ones mean the admin token is known to someone it should not be: replace it.',
  },
  // LDAP directory
  {
    code: 'PW-L001',
    level: 'error',
    summary:
      'The LDAP server cannot be reached, refuses the bind or does not answer in time: lookups in ldap: maps fail, so checks using them answer 4xx (recipients: 451 4.3.0); /readyz is 503',
    fix: 'Start or repair the server in ldap.url (`ldapwhoami -x -H URL -D BIND_DN -y PASSWORD_FILE`); check ldap.bind_dn and ldap.password_file. postwarden reconnects by itself.',
  },
  {
    code: 'PW-L002',
    level: 'info',
    summary: 'The LDAP server answers again; ldap: maps serve lookups',
    fix: 'None: informational.',
  },
  {
    code: 'PW-L003',
    level: 'fatal',
    summary: 'The ldap section cannot be used (the password file cannot be read); nothing was started',
    fix: 'Create ldap.password_file with the bind password on its first line, readable by postwarden’s user (mode 0600).',
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
