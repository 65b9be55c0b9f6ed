#!/usr/bin/env bash
# harness.sh: a throwaway Postfix + Dovecot + smtp-sink mail stack on 127.0.0.1 for integration tests.
#
#   harness.sh up      tear down any previous run in $HARNESS_DIR, wipe it, write configs, start the
#                      daemons, wait until every port answers, print the ports
#   harness.sh down    stop the recorded PIDs (and their sessions); leaves the logs in place
#   harness.sh status  show the recorded PIDs and whether each port answers (exit 0 only if all are up)
#
# Topology (all 127.0.0.1, each port an env var):
#   client -> Postfix smtpd :SMTP_PORT (SASL via Dovecot auth :DOVECOT_AUTH_PORT, optional
#             check_policy_service $HARNESS_POLICY)
#          -> example.test: Dovecot LMTP :LMTP_PORT -> Maildir $HARNESS_DIR/mail/example.test/<user>/Maildir
#          -> anything else: relayhost smtp-sink :SINK_PORT, one file per message in $HARNESS_DIR/sink
#   Dovecot IMAP :IMAP_PORT. Users alice@example.test/alice-secret, bob@example.test/bob-secret.
#
# Env (defaults): HARNESS_DIR (/tmp/pw-it; keep short, unix sockets < 108 bytes), SMTP_PORT (2525),
#   SINK_PORT (2526), LMTP_PORT (2424), IMAP_PORT (1143), DOVECOT_AUTH_PORT (12345),
#   HARNESS_POLICY (inet:127.0.0.1:20060 | off), HARNESS_POLICY_DEFAULT_ACTION
#   (451 4.3.5 policy service unavailable), HARNESS_FILTER (off; scan:[127.0.0.1]:PORT: Postfix's
#   content_filter, harness.md §4; proxy:127.0.0.1:PORT: smtpd_proxy_filter before the queue; both with
#   the re-injection smtpd on 127.0.0.1:REINJECT_PORT (2527)),
#   HARNESS_POSTFIX_EXTRA (raw `name = value` main.cf lines, newline-separated, applied last with
#   postconf -e so they replace the defaults above), HARNESS_DOVECOT_INCLUDE (off; a Dovecot config file
#   `!include`d at the end of dovecot.conf, e.g. a rendered dovecot-snippets/ fragment: its settings
#   override the defaults above), HARNESS_WAIT_S (15, readiness bound per port).
#
# Failure: `up` refuses to start if a port is taken by another program, or if HARNESS_DIR exists and
# is not a harness dir. If a daemon does not answer within HARNESS_WAIT_S, it names the log file,
# prints its tail, stops everything it started, and exits 1. `down` only signals PIDs it recorded,
# after checking the process name; zombies count as gone; SIGKILL after 5 s.
# Written from the verified recipe harness.md (§1, §2 and gotchas 1-16).
set -euo pipefail
umask 022
PATH="$PATH:/usr/sbin:/sbin"

D="${HARNESS_DIR:-/tmp/pw-it}"
SMTP_PORT="${SMTP_PORT:-2525}"
SINK_PORT="${SINK_PORT:-2526}"
LMTP_PORT="${LMTP_PORT:-2424}"
IMAP_PORT="${IMAP_PORT:-1143}"
DOVECOT_AUTH_PORT="${DOVECOT_AUTH_PORT:-12345}"
HARNESS_POLICY="${HARNESS_POLICY:-inet:127.0.0.1:20060}"
HARNESS_POLICY_DEFAULT_ACTION="${HARNESS_POLICY_DEFAULT_ACTION:-451 4.3.5 policy service unavailable}"
HARNESS_FILTER="${HARNESS_FILTER:-off}"
REINJECT_PORT="${REINJECT_PORT:-2527}"
HARNESS_POSTFIX_EXTRA="${HARNESS_POSTFIX_EXTRA:-}"
HARNESS_DOVECOT_INCLUDE="${HARNESS_DOVECOT_INCLUDE:-off}"
HARNESS_WAIT_S="${HARNESS_WAIT_S:-15}"

PF="$D/postfix/etc"             # Postfix config_directory (postfix -c "$PF")
DC="$D/dovecot/dovecot.conf"    # Dovecot config (dovecot -c "$DC")
PIDS="$D/run/pids"              # one line per daemon: label pid comm
MARKER="$D/.postwarden-harness" # `up` only wipes a dir that has this marker

log() { echo "harness: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# process helpers (read /proc directly: no procps needed on a minimal CI image)

# proc_fields PID -> sets FIELDS to the /proc/PID/stat fields after "(comm)": state ppid pgrp session ...
# Returns false if the process is gone. Builtins only: it runs in polling loops.
proc_fields() {
  local stat
  FIELDS=()
  { IFS= read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  read -r -a FIELDS <<<"${stat##*) }"
}

proc_comm() { # PID -> prints the process name (/proc/PID/comm), or nothing
  local comm=""
  { IFS= read -r comm <"/proc/$1/comm"; } 2>/dev/null || true
  printf '%s' "$comm"
}

# alive PID: true if the process exists and is not a zombie (gotcha 14: PID 1 reaps late).
alive() {
  proc_fields "$1" && [ "${FIELDS[0]}" != Z ]
}

# session_members SID: live PIDs whose session id is SID. Postfix master and Dovecot call setsid(),
# so their session holds exactly the daemon and its children.
session_members() {
  local f pid
  for f in /proc/[0-9]*/stat; do
    pid="${f#/proc/}"
    pid="${pid%/stat}"
    proc_fields "$pid" || continue
    if [ "${FIELDS[3]:-}" = "$1" ] && [ "${FIELDS[0]}" != Z ]; then echo "$pid"; fi
  done
}

# record_pid LABEL PID COMM LOGFILE: append to $PIDS once PID runs COMM. A `cmd &` child is a bash fork for
# a moment before it execs cmd, so wait (bounded) for the name.
record_pid() {
  local i
  for ((i = 0; i < 100; i++)); do
    if [ "$(proc_comm "$2")" = "$3" ]; then
      echo "$1 $2 $3" >>"$PIDS"
      return 0
    fi
    alive "$2" || break
    sleep 0.02
  done
  fail_with_log "$1 (pid $2) is not running as '$3' (it is '$(proc_comm "$2")')" "$4"
}

# stop_recorded: TERM every recorded PID whose name still matches, wait (bounded), then KILL the
# leftovers, including members of the daemons' own sessions (Postfix/Dovecot children).
stop_recorded() {
  [ -f "$PIDS" ] || return 0
  local label pid comm now targets=() sids=() left=() p s deadline
  while read -r label pid comm; do
    [ -n "${pid:-}" ] || continue
    alive "$pid" || continue
    now="$(proc_comm "$pid")"
    if [ "$now" != "$comm" ]; then
      log "warning: pid $pid ($label) is now '$now', not '$comm': not touching it"
      continue
    fi
    targets+=("$pid")
    proc_fields "$pid" && [ "${FIELDS[3]:-}" = "$pid" ] && sids+=("$pid")
    kill -TERM "$pid" 2>/dev/null || true
  done <"$PIDS"

  deadline=$((SECONDS + 5))
  while :; do
    left=()
    for p in "${targets[@]}"; do alive "$p" && left+=("$p"); done
    for s in "${sids[@]}"; do
      while read -r p; do [ -n "$p" ] && left+=("$p"); done < <(session_members "$s")
    done
    [ "${#left[@]}" -eq 0 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "warning: still running after 5 s, sending KILL: ${left[*]}"
      kill -KILL "${left[@]}" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.05
  done
  rm -f "$PIDS"
}

# ---------------------------------------------------------------------------------------------
# port helpers (bash /dev/tcp: no nc/ss needed)

port_open() { # port -> true if something accepts a TCP connection on 127.0.0.1:port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# banner PORT: connect, print the first line the server sends (waits up to 2 s), then close politely.
banner() {
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    IFS= read -r -t 2 line <&3 || exit 1
    printf "%s\n" "${line%$'"'"'\r'"'"'}"
    case "$line" in
      220*) printf "QUIT\r\n" >&3 ;;
      "* OK"*) printf "a LOGOUT\r\n" >&3 ;;
    esac
    read -r -t 1 _ <&3 || true
  ' _ "$1" 2>/dev/null
}

# wait_ready NAME PORT PATTERN LOGFILE PID: wait until PORT greets with PATTERN; fail with the log's tail.
wait_ready() {
  local name="$1" port="$2" pattern="$3" logfile="$4" pid="$5" line deadline=$((SECONDS + HARNESS_WAIT_S))
  while :; do
    line="$(banner "$port" || true)"
    # shellcheck disable=SC2053
    if [[ "$line" == $pattern ]]; then return 0; fi
    if ! alive "$pid"; then
      fail_with_log "$name (pid $pid) exited before 127.0.0.1:$port answered" "$logfile"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      fail_with_log "$name did not answer on 127.0.0.1:$port within ${HARNESS_WAIT_S}s (got: '${line}')" "$logfile"
    fi
    sleep 0.05
  done
}

# wait_for_file FILE: a daemonizing parent may exit before its child writes the pid file (seen with
# Dovecot), so wait up to 5 s for FILE to be non-empty.
wait_for_file() {
  local i
  for ((i = 0; i < 250; i++)); do
    [ -s "$1" ] && return 0
    sleep 0.02
  done
  return 1
}

# start_daemonized LABEL COMM PIDFILE LOGFILE CMD...: run a command that forks a daemon (which writes
# PIDFILE), record the daemon's pid. The pid is recorded even when CMD fails, if the daemon is up
# anyway, so that the cleanup stops it. Returns CMD's exit status.
start_daemonized() {
  local label="$1" comm="$2" pidfile="$3" logfile="$4" rc=0
  shift 4
  "$@" </dev/null >>"$logfile" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    wait_for_file "$pidfile" || fail_with_log "$label: '$*' wrote no $pidfile" "$logfile"
  fi
  if [ -s "$pidfile" ]; then record_pid "$label" "$(tr -d ' \n' <"$pidfile")" "$comm" "$logfile"; fi
  return "$rc"
}

fail_with_log() { # message logfile
  log "error: $1"
  log "see $2; its last lines:"
  tail -n 30 "$2" 2>/dev/null | sed 's/^/    /' >&2 || log "    (no log file)"
  log "stopping what was started"
  stop_recorded
  exit 1
}

# ---------------------------------------------------------------------------------------------
# configuration

check_env() {
  local name port seen=" "
  local names=(SMTP_PORT SINK_PORT LMTP_PORT IMAP_PORT DOVECOT_AUTH_PORT)
  [ "$HARNESS_FILTER" = off ] || names+=(REINJECT_PORT)
  for name in "${names[@]}"; do
    port="${!name}"
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "$name='$port' is not a port"
    [[ "$seen" != *" $port "* ]] || die "$name=$port is used twice"
    seen="$seen$port "
  done
  case "$HARNESS_POLICY" in
    off) ;;
    inet:127.*:[0-9]* | unix:/*) ;;
    *) die "HARNESS_POLICY='$HARNESS_POLICY': expected off, inet:127.0.0.1:PORT or unix:/path" ;;
  esac
  case "$HARNESS_FILTER" in
    off | 'scan:[127.'*']:'[0-9]* | 'proxy:127.'*:[0-9]*) ;;
    *) die "HARNESS_FILTER='$HARNESS_FILTER': expected off, scan:[127.0.0.1]:PORT or proxy:127.0.0.1:PORT" ;;
  esac
  [ "${#D}" -le 60 ] || die "HARNESS_DIR is ${#D} chars long; keep it short (unix sockets < 108 bytes)"
  case "$D" in /*) ;; *) die "HARNESS_DIR must be an absolute path" ;; esac
}

check_ports_free() {
  local name
  local names=(SMTP_PORT SINK_PORT LMTP_PORT IMAP_PORT DOVECOT_AUTH_PORT)
  [ "$HARNESS_FILTER" = off ] || names+=(REINJECT_PORT)
  for name in "${names[@]}"; do
    if port_open "${!name}"; then
      die "$name=${!name}: 127.0.0.1:${!name} is already in use by another program (not this harness); stop it or set $name"
    fi
  done
}

ensure_vmail() {
  if ! id vmail >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vmail ||
      id vmail >/dev/null 2>&1 || die "could not create user vmail"
  fi
  VUID="$(id -u vmail)"
  VGID="$(id -g vmail)"
}

# Content filter (HARNESS_FILTER=scan:[127.0.0.1]:PORT, harness.md §4): main.cf content_filter +
# receive_override_options, master.cf "scan" smtp client and the re-injection smtpd on REINJECT_PORT.
postfix_filter_main_cf() {
  [ "$HARNESS_FILTER" = off ] && return
  [[ "$HARNESS_FILTER" == proxy:* ]] && return # before the queue: smtpd_proxy_filter on the smtpd line
  echo "content_filter = $HARNESS_FILTER"
  echo "receive_override_options = no_address_mappings"
}
postfix_filter_master_cf() {
  [ "$HARNESS_FILTER" = off ] && return
  # The re-injection (after-filter) smtpd serves both modes; the scan transport only content_filter.
  [[ "$HARNESS_FILTER" == proxy:* ]] || cat <<EOT
scan      unix  -       -       n       -       10      smtp
  -o syslog_name=postfix/scan
  -o smtp_send_xforward_command=yes
  -o disable_mime_output_conversion=yes
  -o smtp_generic_maps=
  -o smtp_data_done_timeout=1200
EOT
  cat <<EOT
127.0.0.1:$REINJECT_PORT inet n  -       n       -       10      smtpd
  -o syslog_name=postfix/reinject
  -o content_filter=
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters
  -o smtpd_helo_restrictions=
  -o smtpd_client_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_relay_restrictions=
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
  -o smtpd_data_restrictions=
  -o smtpd_end_of_data_restrictions=
  -o mynetworks=127.0.0.0/8
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
EOT
}

# Before-queue filter (HARNESS_FILTER=proxy:127.0.0.1:PORT, SMTPD_PROXY_README): options of the public smtpd.
postfix_proxy_options() {
  [[ "$HARNESS_FILTER" == proxy:* ]] || return 0
  printf ' -o smtpd_proxy_filter=%s -o smtpd_proxy_timeout=120s' "${HARNESS_FILTER#proxy:}"
}

postfix_policy_main_cf() {
  if [ "$HARNESS_POLICY" = off ]; then
    echo "smtpd_recipient_restrictions ="
  else
    # Per-service overrides (Postfix >= 3.0); a value with spaces needs its own inner braces.
    echo "smtpd_recipient_restrictions = check_policy_service { $HARNESS_POLICY, timeout=10s, { default_action = $HARNESS_POLICY_DEFAULT_ACTION } }"
  fi
}

write_postfix() {
  mkdir -p "$PF" "$D/postfix/spool" "$D/sink"
  chown postfix: "$D/sink"
  # data_directory must NOT exist beforehand (gotcha 4): `postfix start` creates it owned by postfix.
  cat >"$PF/main.cf" <<EOF
# written by test/harness/harness.sh; see harness.md §1
compatibility_level = 3.6
myhostname = mx.example.test
mydomain = example.test
myorigin = \$mydomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
queue_directory = $D/postfix/spool
data_directory = $D/postfix/data
maillog_file_prefixes = /var, /dev/stdout, $D
maillog_file = $D/log/postfix.log
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtpd_peername_lookup = no
relayhost = [127.0.0.1]:$SINK_PORT
virtual_mailbox_domains = example.test
virtual_mailbox_maps = texthash:\$config_directory/vmailbox
virtual_alias_maps = texthash:\$config_directory/virtual
virtual_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_tls_security_level = none
smtp_tls_security_level = none
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:$DOVECOT_AUTH_PORT
smtpd_tls_auth_only = no
broken_sasl_auth_clients = no
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
$(postfix_policy_main_cf)
$(postfix_filter_main_cf)
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 30s
EOF
  # HARNESS_POSTFIX_EXTRA: set with postconf -e, which replaces a parameter in place (appending a
  # duplicate would make every Postfix process log "overriding earlier entry").
  local line
  while IFS= read -r line; do
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    postconf -c "$PF" -e "$line" || die "HARNESS_POSTFIX_EXTRA: postconf -e '$line' failed"
  done <<<"$HARNESS_POSTFIX_EXTRA"

  # master.cf in full, chroot n on every line (gotcha 5), postlog for maillog_file (gotcha 1).
  cat >"$PF/master.cf" <<EOF
# written by test/harness/harness.sh
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$SMTP_PORT inet n - n - - smtpd$(postfix_proxy_options)
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
  -o syslog_name=postfix/\$service_name
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
$(postfix_filter_master_cf)
EOF

  printf 'alice@example.test ok\nbob@example.test ok\n' >"$PF/vmailbox"
  printf 'postmaster@example.test alice@example.test\n' >"$PF/virtual"
  # Postfix re-reads a file whose mtime is under ~2 s old, in 300 ms steps, until it is older (it
  # guards against half-written files): `postfix start` took 1.8 s. Backdate the files we wrote.
  touch -d '-1 minute' "$PF"/*
}

write_dovecot() {
  mkdir -p "$D/dovecot/state" "$D/run/dovecot" "$D/mail"
  chown vmail:vmail "$D/mail"
  cat >"$D/dovecot/users" <<'EOF'
alice@example.test:{PLAIN}alice-secret::::::
bob@example.test:{PLAIN}bob-secret::::::
EOF
  cat >"$DC" <<EOF
# written by test/harness/harness.sh; see harness.md §2. No conf.d is included.
protocols = imap lmtp
listen = 127.0.0.1
hostname = mx.example.test
base_dir = $D/run/dovecot
state_dir = $D/dovecot/state
instance_name = pw-harness
log_path = $D/log/dovecot.log
info_log_path = $D/log/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
# Failed logins must not slow the tests that follow: no fixed delay (failures are still answered on
# a 0.5 s timer), and no anvil auth penalty, which would otherwise delay every later AUTH from the same
# client IP by 2, 4, 8, up to 15 s (a success included).
auth_failure_delay = 0
mail_uid = $VUID
mail_gid = $VGID
first_valid_uid = $VUID
last_valid_uid = $VUID
first_valid_gid = $VGID
last_valid_gid = $VGID
mail_location = maildir:$D/mail/%d/%n/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $D/dovecot/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $D/dovecot/users
  default_fields = uid=$VUID gid=$VGID home=$D/mail/%d/%n
}
service auth {
  # Postfix smtpd_sasl_type = dovecot talks to this (smtpd_sasl_path = inet:127.0.0.1:$DOVECOT_AUTH_PORT)
  inet_listener auth-client {
    address = 127.0.0.1
    port = $DOVECOT_AUTH_PORT
  }
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
  unix_listener lmtp {
    mode = 0666
  }
}
protocol lmtp {
  postmaster_address = postmaster@example.test
}
EOF
  if [ "$HARNESS_DOVECOT_INCLUDE" != off ]; then
    [ -r "$HARNESS_DOVECOT_INCLUDE" ] || die "HARNESS_DOVECOT_INCLUDE: cannot read $HARNESS_DOVECOT_INCLUDE"
    printf '!include %s\n' "$HARNESS_DOVECOT_INCLUDE" >>"$DC"
  fi
}

write_env() {
  cat >"$D/harness.env" <<EOF
HARNESS_DIR=$D
SMTP_PORT=$SMTP_PORT
SINK_PORT=$SINK_PORT
LMTP_PORT=$LMTP_PORT
IMAP_PORT=$IMAP_PORT
DOVECOT_AUTH_PORT=$DOVECOT_AUTH_PORT
HARNESS_POLICY=$HARNESS_POLICY
HARNESS_FILTER=$HARNESS_FILTER
REINJECT_PORT=$REINJECT_PORT
POSTFIX_CONF=$PF
DOVECOT_CONF=$DC
POSTFIX_LOG=$D/log/postfix.log
DOVECOT_LOG=$D/log/dovecot.log
SINK_DIR=$D/sink
MAIL_DIR=$D/mail
EOF
}

# ---------------------------------------------------------------------------------------------
# commands

cmd_down() {
  if [ -f "$PIDS" ]; then
    stop_recorded
    log "down ($D)"
  fi
}

cmd_up() {
  local t0=$SECONDS pid
  check_env
  if [ -e "$D" ] && [ ! -f "$MARKER" ] && [ -n "$(ls -A "$D")" ]; then
    die "$D exists and is not a harness dir (no $(basename "$MARKER")); refusing to wipe it"
  fi
  cmd_down
  check_ports_free
  rm -rf "$D"
  mkdir -p "$D/log" "$D/run"
  chmod 755 "$D"
  touch "$MARKER" "$PIDS"
  ensure_vmail
  write_postfix
  write_dovecot
  write_env

  # Each daemon gets </dev/null and a log file: nothing may keep the caller's stdout open.
  smtp-sink -u postfix -R "$D/sink" -d "%Y%m%d%H%M%S." -h sink.example.test \
    "127.0.0.1:$SINK_PORT" 64 </dev/null >>"$D/log/smtp-sink.log" 2>&1 &
  record_pid smtp-sink $! smtp-sink "$D/log/smtp-sink.log"

  start_daemonized dovecot dovecot "$D/run/dovecot/master.pid" "$D/log/dovecot-start.log" dovecot -c "$DC" ||
    fail_with_log "dovecot -c $DC failed to start" "$D/log/dovecot-start.log"
  if ! start_daemonized postfix-master master "$D/postfix/spool/pid/master.pid" "$D/log/postfix-start.log" \
    postfix -c "$PF" start; then
    # postfix prints nothing without a tty or syslog (gotcha 2): get the reason through script(1).
    script -qec "postfix -c $PF check" /dev/null </dev/null >>"$D/log/postfix-start.log" 2>&1 || true
    fail_with_log "postfix -c $PF start failed" "$D/log/postfix-start.log"
  fi

  pid="$(awk '$1=="smtp-sink"{print $2}' "$PIDS")"
  wait_ready smtp-sink "$SINK_PORT" '220 *' "$D/log/smtp-sink.log" "$pid"
  pid="$(awk '$1=="dovecot"{print $2}' "$PIDS")"
  wait_ready "dovecot lmtp" "$LMTP_PORT" '220 *' "$D/log/dovecot.log" "$pid"
  wait_ready "dovecot imap" "$IMAP_PORT" '\* OK*' "$D/log/dovecot.log" "$pid"
  wait_ready "dovecot auth" "$DOVECOT_AUTH_PORT" 'VERSION*' "$D/log/dovecot.log" "$pid"
  pid="$(awk '$1=="postfix-master"{print $2}' "$PIDS")"
  wait_ready "postfix smtpd" "$SMTP_PORT" '220 *' "$D/log/postfix.log" "$pid"
  [ "$HARNESS_FILTER" = off ] ||
    wait_ready "postfix reinject" "$REINJECT_PORT" '220 *' "$D/log/postfix.log" "$pid"

  cat <<EOF
harness up in $((SECONDS - t0))s: dir $D
  smtp    127.0.0.1:$SMTP_PORT   (postfix -c $PF; log $D/log/postfix.log)
  sink    127.0.0.1:$SINK_PORT   (smtp-sink, files in $D/sink)
  lmtp    127.0.0.1:$LMTP_PORT   imap 127.0.0.1:$IMAP_PORT   auth 127.0.0.1:$DOVECOT_AUTH_PORT   (dovecot -c $DC)
  policy  $HARNESS_POLICY   filter $HARNESS_FILTER (re-injection 127.0.0.1:$REINJECT_PORT)
EOF
}

cmd_status() {
  local label pid comm ok=0 name
  if [ ! -f "$PIDS" ]; then
    echo "harness: not up ($D)"
    return 1
  fi
  while read -r label pid comm; do
    if alive "$pid" && [ "$(proc_comm "$pid")" = "$comm" ]; then
      echo "$label pid $pid: running"
    else
      echo "$label pid $pid: gone"
      ok=1
    fi
  done <"$PIDS"
  # shellcheck disable=SC1091
  [ -f "$D/harness.env" ] && . "$D/harness.env"
  local names=(SMTP_PORT SINK_PORT LMTP_PORT IMAP_PORT DOVECOT_AUTH_PORT)
  [ "$HARNESS_FILTER" = off ] || names+=(REINJECT_PORT)
  for name in "${names[@]}"; do
    if port_open "${!name}"; then echo "$name ${!name}: answers"; else
      echo "$name ${!name}: closed"
      ok=1
    fi
  done
  return "$ok"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 up|down|status   (env: HARNESS_DIR, SMTP_PORT, SINK_PORT, LMTP_PORT, IMAP_PORT," >&2
    echo "       DOVECOT_AUTH_PORT, HARNESS_POLICY, HARNESS_FILTER, HARNESS_POSTFIX_EXTRA)" >&2
    exit 2
    ;;
esac
