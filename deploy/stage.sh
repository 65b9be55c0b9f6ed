#!/usr/bin/env bash
# deploy/stage.sh: lays out a release of this checkout as files under ROOT, as they go on a host:
#   ROOT/opt/postwarden/            dist/src, production node_modules, package.json, package-lock.json,
#                                   postfix-snippets/, dovecot-snippets/, deploy/, docs/, README.md, CHANGELOG.md,
#                                   LICENSE
#   ROOT/usr/bin/postwarden         the wrapper (deploy/postwarden.sh)
#   ROOT/lib/systemd/system/postwarden.service
# deploy/build-deb.sh packs that tree into a .deb; deploy/install.sh copies it onto this host.
#
#   deploy/stage.sh ROOT [--no-build] [--modules ci|copy]
#     --no-build      use the dist/ already built (default: `npm run build` first; needs the dev dependencies)
#     --modules ci    (default) `npm ci --omit=dev` in the staging dir: a clean production tree from the lockfile.
#                     Needs the npm registry (or its cache); better-sqlite3 is native and is downloaded prebuilt or
#                     compiled (minutes on a small machine).
#     --modules copy  the checkout's node_modules, then `npm prune --omit=dev`: offline and in seconds, and the
#                     native module is the one the checkout built for this Node and this architecture.
# Either way the tree holds a native module: it runs on this architecture and this Node major version only.
# Exit: 0 done; 64 usage; 69 something needed is missing (npm, a built dist/, node_modules); other: the failed
# command's status, with its output.
set -euo pipefail

usage() {
  echo "usage: deploy/stage.sh ROOT [--no-build] [--modules ci|copy]" >&2
  exit 64
}
die() {
  echo "stage.sh: $1" >&2
  exit "${2:-1}"
}

[ $# -ge 1 ] || usage
root="$1"
shift
build=1
modules=ci
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --modules)
      [ $# -ge 2 ] || usage
      modules="$2"
      shift
      ;;
    *) usage ;;
  esac
  shift
done
case "$modules" in ci | copy) ;; *) usage ;; esac

src="$(cd "$(dirname "$0")/.." && pwd)"
command -v npm >/dev/null || die "npm not found (it comes with Node.js; docs/install.md)" 69
if [ "$build" -eq 1 ]; then
  [ -d "$src/node_modules" ] || die "no node_modules in $src: run 'npm ci' there first, or give --no-build" 69
  (cd "$src" && npm run build --silent)
fi
[ -f "$src/dist/src/cli/main.js" ] || die "no built release in $src/dist: run 'npm run build' there" 69

opt="$root/opt/postwarden"
mkdir -p "$opt/dist" "$root/usr/bin" "$root/lib/systemd/system"
cp -a "$src/dist/src" "$opt/dist/"
cp -a "$src/package.json" "$src/package-lock.json" "$src/README.md" "$src/CHANGELOG.md" "$src/LICENSE" "$opt/"
cp -a "$src/postfix-snippets" "$src/dovecot-snippets" "$src/deploy" "$src/docs" "$opt/"

log="$root/.npm.log"
if [ "$modules" = copy ]; then
  [ -d "$src/node_modules" ] || die "--modules copy: no node_modules in $src" 69
  cp -a "$src/node_modules/." "$opt/node_modules/"
  (cd "$opt" && npm prune --omit=dev --offline --no-audit --no-fund >"$log" 2>&1) ||
    { cat "$log" >&2; die "npm prune --omit=dev failed in $opt"; }
else
  (cd "$opt" && npm ci --omit=dev --no-audit --no-fund >"$log" 2>&1) ||
    { cat "$log" >&2; die "npm ci --omit=dev failed in $opt"; }
fi
rm -f "$log"
# A native module needs only its .node file at run time: drop the compiler's leftovers (objects, a static
# sqlite3.a, makefiles: tens of MB) from each package that has a binding.gyp.
find "$opt/node_modules" -name binding.gyp -printf '%h\n' | while read -r pkg; do
  if [ -d "$pkg/build" ]; then
    find "$pkg/build" -mindepth 1 -depth ! -name '*.node' ! -path "$pkg/build/Release" -exec rm -rf {} +
  fi
done
# Built and run as root: the tree belongs to root whoever owned the checkout (dpkg-deb --root-owner-group, too).
chmod -R u+rwX,go+rX,go-w "$opt"

install -m 0755 "$src/deploy/postwarden.sh" "$root/usr/bin/postwarden"
install -m 0644 "$src/deploy/postwarden.service" "$root/lib/systemd/system/postwarden.service"
