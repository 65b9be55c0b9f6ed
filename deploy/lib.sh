# deploy/lib.sh: the host steps that deploy/install.sh and the .deb's maintainer scripts share. install.sh sources
# it; deploy/build-deb.sh pastes it into postinst, prerm and postrm, so both ways of installing make the same user,
# directories and permissions (docs/install.md, "What is installed where").
#
# POSIX sh (maintainer scripts run under /bin/sh with `set -e`). Every function is idempotent. None of them ever
# edits Postfix's main.cf or master.cf: only `postwarden setup --apply` and `setup --rollback` do.

# What the release scripts and the docs call the paths; the unit (deploy/postwarden.service) names the same ones.
PW_USER=postwarden
PW_OPT=/opt/postwarden
PW_ETC=/etc/postwarden
PW_STATE=/var/lib/postwarden
PW_RUN=/run/postwarden
PW_BIN=/usr/bin/postwarden
# Where a purge keeps the backups of Postfix's files when they are still needed (pw_purge).
PW_BACKUPS=/var/backups

pw_say() {
  echo "postwarden: $*" >&2
}

# The system user and group `postwarden` (no login, home = the state directory, not created here), and its
# membership in `postfix`, so that it may serve a unix policy socket in Postfix's spool.
pw_create_user() {
  if ! getent group "$PW_USER" >/dev/null; then
    addgroup --system --quiet "$PW_USER"
  fi
  if ! getent passwd "$PW_USER" >/dev/null; then
    adduser --system --quiet --ingroup "$PW_USER" --home "$PW_STATE" --no-create-home \
      --shell /usr/sbin/nologin --comment 'postwarden mail policy service' "$PW_USER"
  fi
  if getent group postfix >/dev/null; then
    adduser --quiet "$PW_USER" postfix >/dev/null
  else
    pw_say "warning: no group 'postfix' (is Postfix installed?); postwarden cannot serve a socket in Postfix's spool"
  fi
}

# /etc/postwarden: root writes, the service only reads. /var/lib/postwarden: the service's own (state.db, spool,
# quarantine); `setup --apply` keeps its backups of Postfix's files in backup/ below it, root's own.
pw_make_dirs() {
  install -d -o root -g "$PW_USER" -m 0750 "$PW_ETC"
  install -d -o "$PW_USER" -g "$PW_USER" -m 0750 "$PW_STATE"
}

# `setup` writes the config and the admin token as root; the service reads them through the group.
pw_fix_config_perms() {
  for pw_file in "$PW_ETC/postwarden.yml" "$PW_ETC/admin.token"; do
    if [ -e "$pw_file" ]; then
      chown "root:$PW_USER" "$pw_file"
      chmod 0640 "$pw_file"
    fi
  done
}

# `postwarden setup` without --apply: writes /etc/postwarden/postwarden.yml from the live host when there is none,
# and prints what --apply would change in Postfix and Dovecot. A failure (say, Postfix not configured yet) is
# reported and does not fail the install: the admin runs it again. A release without the command is skipped.
pw_setup() {
  if ! "$PW_BIN" help 2>/dev/null | grep -q '^  setup '; then
    pw_say "this release has no 'postwarden setup': write $PW_ETC/postwarden.yml yourself (docs/install.md)"
    return 0
  fi
  pw_status=0
  "$PW_BIN" setup || pw_status=$?
  if [ "$pw_status" -ne 0 ]; then
    pw_say "warning: 'postwarden setup' exited $pw_status; fix what it says, then run 'postwarden setup' again"
  fi
  pw_fix_config_perms
}

# Prints Postfix's main.cf and master.cf when they still name postwarden (the lines `setup --apply` added).
pw_postfix_files_wired() {
  pw_dir=$(postconf -h config_directory 2>/dev/null) || pw_dir=/etc/postfix
  for pw_file in "$pw_dir/main.cf" "$pw_dir/master.cf"; do
    if [ -f "$pw_file" ] && grep -Eqs 'postwarden|127\.0\.0\.1:1006[0-2]([^0-9]|$)' "$pw_file"; then
      echo "$pw_file"
    fi
  done
}

# Warns, when Postfix still hands mail to postwarden, that mail will wait in Postfix's queue until that is undone.
pw_warn_wired() {
  pw_files=$(pw_postfix_files_wired | tr '\n' ' ')
  if [ -n "$pw_files" ]; then
    pw_say "WARNING: Postfix still uses postwarden (${pw_files% }). Without it, Postfix defers mail (nothing is"
    pw_say "  lost: it waits in the queue). Undo the wiring first with 'postwarden setup --rollback', which needs"
    pw_say "  the package installed; or remove the lines with 'postconf -X' / 'postconf -MX' and 'postfix reload'."
  fi
}

# Purge: the config, the state (greylisting, Bayes tokens, quarantine) and the user. When Postfix still names
# postwarden, the backups `setup --apply` made are the way back, so they move to /var/backups instead.
pw_purge() {
  if [ -d "$PW_STATE/backup" ] && [ -n "$(pw_postfix_files_wired)" ]; then
    pw_keep=$PW_BACKUPS/postwarden-$(date -u +%Y%m%dT%H%M%SZ)
    mv "$PW_STATE/backup" "$pw_keep"
    pw_say "kept the backups of Postfix's files in $pw_keep: copy them back and run 'postfix reload'"
  fi
  rm -rf "$PW_ETC" "$PW_STATE" "$PW_RUN"
  # userdel and groupdel (package passwd, always there): adduser, which made them, may be gone at purge time.
  if getent passwd "$PW_USER" >/dev/null; then
    userdel "$PW_USER"
  fi
  if getent group "$PW_USER" >/dev/null; then
    groupdel "$PW_USER"
  fi
}
