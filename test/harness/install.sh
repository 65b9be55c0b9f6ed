#!/usr/bin/env bash
# install.sh: make sure the Debian packages the integration harness needs are installed.
#
# Needed: postfix (postfix, postconf, smtp-sink), dovecot-core (dovecot, doveadm), dovecot-imapd,
# dovecot-lmtpd, swaks, redis-server (redis-server, redis-cli: the store suite starts its own server on
# loopback, test/harness/redis.ts), dnsmasq-base (dnsmasq: just /usr/sbin/dnsmasq, with no init script or
# service unlike the `dnsmasq` package; test/harness/dns.ts starts its own DNS server on loopback),
# clamav-daemon (/usr/sbin/clamd) and clamdscan (/usr/bin/clamdscan): test/harness/clamd.ts starts its own clamd
# on loopback with a two-signature EICAR database it writes itself. dovecot-sieve (Pigeonhole: the sieve, imap_sieve
# and extprograms plugins, sievec) runs dovecot-snippets/ in test/integration/dovecot-learn.test.ts. clamav-daemon pulls in clamav-freshclam,
# which never runs: debconf is preseeded to its "manual" mode (no daemon, no cron, no if-up hook; its postinst
# then only tries `invoke-rc.d clamav-freshclam no-daemon`, a one-shot download that the guard below refuses),
# and after the install clamav-daemon's init links and systemd units, which its postinst enables whatever debconf
# says, are disabled again, then checked: nothing of clamav is enabled at boot. Nothing downloads signatures.
# chromium (/usr/bin/chromium): the quarantine page's browser test drives it headless with playwright-core.
# prometheus (/usr/bin/promtool): test/unit/observability.test.ts checks deploy/prometheus/alerts.yml, the Grafana
# dashboard's queries and a /metrics scrape with it; the prometheus server itself is never started.
# slapd (/usr/sbin/slapd, slapadd) and ldap-utils (ldapwhoami, ldapsearch): test/harness/slapd.ts starts its own
# slapd on loopback from a slapd.conf and an LDIF it writes; debconf is preseeded with slapd/no_configuration,
# so the package makes no system-wide database or /etc/ldap/slapd.d.
# debootstrap: test/harness/dovecot24.ts builds a Debian 13 (trixie) root once, from the same Debian mirror, to
# run Dovecot 2.4 (Debian 13's) in a chroot for test/integration/dovecot24-learn.test.ts.
# Idempotent: prints nothing and exits 0 when all of them are present.
# Otherwise, as in the harness recipe (harness.md §0): preseed debconf ("No configuration", so no system-wide
# /etc/postfix/main.cf), put a temporary /usr/sbin/policy-rc.d (exit 101) in place so that no
# maintainer script starts a system-wide daemon (removed again only if this script created it),
# then `apt-get update` and `apt-get install -y --no-install-recommends`.
#
# Failure: exits non-zero with a line on stderr naming what failed (not root, apt-get failed, or a
# binary still missing after the install).
set -euo pipefail

PATH="$PATH:/usr/sbin:/sbin"
PACKAGES=(postfix postfix-ldap dovecot-core dovecot-imapd dovecot-lmtpd swaks redis-server dnsmasq-base clamav-daemon clamdscan dovecot-sieve chromium slapd ldap-utils prometheus debootstrap)

die() {
  echo "install.sh: $*" >&2
  exit 1
}

# Prints the missing pieces, one per line (commands, or the dovecot protocol binaries).
missing() {
  local c
  for c in postfix postconf smtp-sink dovecot doveadm swaks redis-server redis-cli dnsmasq clamd clamdscan slapd slapadd ldapwhoami ldapsearch debootstrap; do
    command -v "$c" >/dev/null 2>&1 || echo "$c"
  done
  [ -x /usr/lib/dovecot/imap ] || echo "dovecot-imapd (/usr/lib/dovecot/imap)"
  [ -x /usr/lib/dovecot/lmtp ] || echo "dovecot-lmtpd (/usr/lib/dovecot/lmtp)"
  [ -e /usr/lib/dovecot/modules/lib90_sieve_plugin.so ] || echo "dovecot-sieve (/usr/lib/dovecot/modules/lib90_sieve_plugin.so)"
  [ -x /usr/bin/chromium ] || echo "chromium (/usr/bin/chromium)"
  [ -x /usr/bin/promtool ] || echo "prometheus (/usr/bin/promtool)"
  [ -e /usr/lib/postfix/postfix-ldap.so ] || echo "postfix-ldap (/usr/lib/postfix/postfix-ldap.so)"
}

todo="$(missing)"
[ -z "$todo" ] && exit 0

echo "install.sh: missing: $(echo "$todo" | tr '\n' ' ')- installing ${PACKAGES[*]}" >&2
[ "$(id -u)" -eq 0 ] || die "must run as root to install packages (missing: $(echo "$todo" | tr '\n' ' '))"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this harness expects Debian/Ubuntu"

debconf-set-selections <<'EOF' || die "debconf-set-selections failed"
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string mx.example.test
clamav-freshclam clamav-freshclam/autoupdate_freshclam select manual
slapd slapd/no_configuration boolean true
EOF

# Guard: keep maintainer scripts from starting the system-wide services. Remove it only if we made it.
created_guard=0
cleanup() {
  if [ "$created_guard" -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  created_guard=1
fi

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp /tmp/pw-install.XXXXXX.log)"
apt-get update -q >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "apt-get update failed (full output: $log)"; }
apt-get install -y -q --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${PACKAGES[@]}" >>"$log" 2>&1 ||
  { tail -n 20 "$log" >&2; die "apt-get install ${PACKAGES[*]} failed (full output: $log)"; }

# No system-wide clamd or freshclam, now or at a later boot. policy-rc.d only refused the starts: clamav-daemon's
# postinst still enables its init script and its systemd service and socket. `update-rc.d disable` undoes both (it
# runs `systemctl disable`, whose Also= takes the socket along; deb-systemd-helper refuses to run outside dpkg).
# clamav-freshclam, preseeded to "manual", is left with no links at all by its own postinst. Then make sure.
if [ -e /etc/init.d/clamav-daemon ]; then
  update-rc.d clamav-daemon disable >>"$log" 2>&1 || die "update-rc.d clamav-daemon disable failed (output: $log)"
fi
enabled="$(compgen -G '/etc/rc[2-5].d/S*clamav-*'; compgen -G '/etc/systemd/system/*.wants/clamav-*')" || true
[ -z "$enabled" ] || die "clamav services still enabled at boot: $(echo "$enabled" | tr '\n' ' ')(apt output: $log)"

todo="$(missing)"
[ -z "$todo" ] || die "still missing after install: $(echo "$todo" | tr '\n' ' ')(apt output: $log)"
rm -f "$log"
echo "install.sh: installed ${PACKAGES[*]}" >&2
