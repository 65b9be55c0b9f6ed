#!/usr/bin/env bash
# deploy/install.sh: installs postwarden from this checkout on a Debian 12/13 or Ubuntu 22.04/24.04 host, the way
# the .deb does (docs/install.md): the release in /opt/postwarden, /usr/bin/postwarden, the systemd unit, the user
# `postwarden` (in group postfix), /etc/postwarden and /var/lib/postwarden (deploy/lib.sh), then `postwarden setup`,
# which writes /etc/postwarden/postwarden.yml when there is none and changes nothing in Postfix.
#
#   deploy/install.sh [--no-build] [--no-setup]    install, or upgrade in place (config and state are kept)
#   deploy/install.sh --uninstall [--purge]         remove the release, the command and the unit; --purge also
#                                                   removes /etc/postwarden, /var/lib/postwarden and the user
#     --no-build   install the dist/ already built (default: `npm ci` when node_modules is missing, then
#                  `npm run build`)
#     --no-setup   do not run `postwarden setup`
#
# Needs root, Node.js >= 20.19 as /usr/bin/node with npm, and Postfix. The release's node_modules are the
# checkout's, pruned to production (deploy/stage.sh --modules copy): better-sqlite3 is native and was built for
# this Node. After a Node major upgrade, run this again. Never edits main.cf or master.cf; --uninstall warns when
# they still name postwarden (undo that first: `postwarden setup --rollback`).
# Exit: 0 done; 64 usage; 69 unsupported system or a missing dependency (Node, npm, Postfix), or postwarden is
# installed as a .deb; 77 not root; other: the failed step's status, with its output.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
src="$(dirname "$here")"
# shellcheck source=deploy/lib.sh
. "$here/lib.sh"

die() {
  echo "install.sh: $1" >&2
  exit "$2"
}
usage() {
  echo "usage: deploy/install.sh [--no-build] [--no-setup] | --uninstall [--purge]" >&2
  exit 64
}

action=install
purge=0
build=1
setup=1
while [ $# -gt 0 ]; do
  case "$1" in
    --uninstall) action=uninstall ;;
    --purge) purge=1 ;;
    --no-build) build=0 ;;
    --no-setup) setup=0 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) usage ;;
  esac
  shift
done
if [ "$purge" -eq 1 ] && [ "$action" != uninstall ]; then usage; fi

[ "$(id -u)" -eq 0 ] || die "must run as root (sudo $0 $*)" 77

# POSTWARDEN_OS_RELEASE: another os-release file, for the tests only.
os_release="${POSTWARDEN_OS_RELEASE:-/etc/os-release}"
[ -r "$os_release" ] || die "cannot read $os_release: supported are Debian 12/13 and Ubuntu 22.04/24.04" 69
os_id="$(. "$os_release" && echo "${ID:-}")"
os_version="$(. "$os_release" && echo "${VERSION_ID:-}")"
case "$os_id $os_version" in
  "debian 12" | "debian 13" | "ubuntu 22.04" | "ubuntu 24.04") ;;
  *) die "unsupported system '$os_id $os_version': supported are Debian 12/13 and Ubuntu 22.04/24.04" 69 ;;
esac

if dpkg-query -W -f='${Status}' postwarden 2>/dev/null | grep -q ' installed$'; then
  die "postwarden is installed as a Debian package here: upgrade or remove it with apt or dpkg instead" 69
fi

uninstall() {
  pw_warn_wired
  if [ -d /run/systemd/system ]; then
    systemctl disable --now postwarden.service >/dev/null 2>&1 || true
  fi
  rm -rf "$PW_OPT" "$PW_BIN" /lib/systemd/system/postwarden.service /etc/systemd/system/multi-user.target.wants/postwarden.service
  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
  if [ "$purge" -eq 1 ]; then
    pw_purge
    pw_say "removed, with its config, state and user"
  else
    pw_say "removed; kept $PW_ETC and $PW_STATE (--uninstall --purge removes them and the user)"
  fi
}

if [ "$action" = uninstall ]; then
  uninstall
  exit 0
fi

node_help="Debian 13: apt install nodejs npm; Debian 12 and Ubuntu: Node.js 20 or 22 from NodeSource (https://github.com/nodesource/distributions), which brings npm"
[ -x /usr/bin/node ] || die "no /usr/bin/node: postwarden needs Node.js >= 20.19 there ($node_help)" 69
node_version="$(/usr/bin/node -p process.versions.node)"
if ! /usr/bin/node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  die "Node.js $node_version is too old: postwarden needs >= 20.19 ($node_help)" 69
fi
command -v npm >/dev/null || die "npm not found ($node_help)" 69
command -v postconf >/dev/null || PATH="$PATH:/usr/sbin:/sbin"
command -v postconf >/dev/null || die "Postfix is not installed: apt install postfix, then run this again" 69

if [ "$build" -eq 1 ] && [ ! -d "$src/node_modules" ]; then
  (cd "$src" && npm ci --no-audit --no-fund)
fi
stage_args=(--modules copy)
if [ "$build" -eq 0 ]; then stage_args+=(--no-build); fi

# Staged next to /opt/postwarden, so that the switch to the new release is two renames.
stage="$(mktemp -d /opt/.postwarden-stage.XXXXXX)"
trap 'rm -rf "$stage"' EXIT
"$here/stage.sh" "$stage" "${stage_args[@]}"

pw_create_user
pw_make_dirs
upgrade=0
if [ -d "$PW_OPT" ]; then
  upgrade=1
  mv "$PW_OPT" "$stage/previous"
fi
mv "$stage/opt/postwarden" "$PW_OPT"
install -m 0755 "$stage/usr/bin/postwarden" "$PW_BIN"
install -m 0644 "$stage/lib/systemd/system/postwarden.service" /lib/systemd/system/postwarden.service
if [ "$setup" -eq 1 ]; then pw_setup; fi

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable postwarden.service >/dev/null 2>&1
  if [ -f "$PW_ETC/postwarden.yml" ]; then
    systemctl restart postwarden.service
    pw_say "started: systemctl status postwarden; journalctl -u postwarden -o cat"
  else
    pw_say "enabled, not started: write $PW_ETC/postwarden.yml first (docs/install.md)"
  fi
else
  pw_say "systemd is not running here: start it with 'runuser -u postwarden -- postwarden serve --config $PW_ETC/postwarden.yml'"
fi
if [ "$upgrade" -eq 1 ]; then
  pw_say "upgraded $PW_OPT to $(/usr/bin/node -p 'require("/opt/postwarden/package.json").version'); kept $PW_ETC and $PW_STATE"
else
  pw_say "installed $(/usr/bin/node -p 'require("/opt/postwarden/package.json").version') in $PW_OPT"
fi
