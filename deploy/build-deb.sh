#!/usr/bin/env bash
# deploy/build-deb.sh: builds postwarden_<version>_<arch>.deb from this checkout with dpkg-deb (docs/install.md).
#
#   deploy/build-deb.sh [--out DIR] [--compress xz|gzip] [--no-build] [--modules ci|copy]
#     --out DIR       where the .deb goes (default: the checkout's root); its path is printed on stdout
#     --compress      xz (default: the smallest, 9 MB; a minute of CPU) or gzip (15 MB, a few seconds: for tests)
#     --no-build, --modules: as deploy/stage.sh (default: build with tsc, then `npm ci --omit=dev`)
#
# Version from package.json, architecture from `dpkg --print-architecture`: the package holds better-sqlite3's
# native module, built for this architecture and this Node major version, so the Depends pins nodejs to that
# major (>= 20.19 for 20). No conffiles: nothing is shipped in /etc. postinst makes /etc/postwarden and runs
# `postwarden setup`, which writes the config; postrm purge removes it (deploy/debian/, deploy/lib.sh).
# Run as root or not (dpkg-deb --root-owner-group). Runs lintian when it is installed.
# Exit: 0 built; 64 usage; 69 dpkg-deb, node or npm missing; other: the failed step's status, with its output.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
src="$(dirname "$here")"
out="$src"
compress=xz
stage_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out)
      [ $# -ge 2 ] || { echo "build-deb.sh: --out needs a directory" >&2; exit 64; }
      out="$2"
      shift
      ;;
    --compress)
      case "${2:-}" in xz | gzip) compress="$2" ;; *) echo "build-deb.sh: --compress takes xz or gzip" >&2; exit 64 ;; esac
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    --no-build) stage_args+=("$1") ;;
    --modules)
      [ $# -ge 2 ] || { echo "build-deb.sh: --modules needs ci or copy" >&2; exit 64; }
      stage_args+=("$1" "$2")
      shift
      ;;
    *)
      echo "usage: deploy/build-deb.sh [--out DIR] [--compress xz|gzip] [--no-build] [--modules ci|copy]" >&2
      exit 64
      ;;
  esac
  shift
done
for tool in dpkg-deb dpkg node; do
  command -v "$tool" >/dev/null || { echo "build-deb.sh: $tool not found" >&2; exit 69; }
done

version="$(node -p 'require(process.argv[1]).version' "$src/package.json")"
arch="$(dpkg --print-architecture)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -le 20 ]; then node_min=20.19; else node_min="$node_major"; fi
nodejs="nodejs (>= $node_min), nodejs (<< $((node_major + 1)))"

work="$(mktemp -d "${TMPDIR:-/tmp}/postwarden-deb.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"
"$here/stage.sh" "$root" "${stage_args[@]}"

mkdir -p "$root/DEBIAN" "$root/usr/share/doc/postwarden"
{
  echo "postwarden, MIT License; the bundled Node modules under /opt/postwarden/node_modules carry their own"
  echo "licenses in their directories."
  echo
  cat "$src/LICENSE"
} >"$root/usr/share/doc/postwarden/copyright"
size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@NODEJS@/$nodejs/" \
  "$here/debian/control" >"$root/DEBIAN/control"
# Each maintainer script gets deploy/lib.sh in place of its `#@LIB@` line.
for script in postinst prerm postrm; do
  sed -e "/^#@LIB@\$/{r $here/lib.sh" -e 'd}' "$here/debian/$script" >"$root/DEBIAN/$script"
  chmod 0755 "$root/DEBIAN/$script"
done

mkdir -p "$out"
deb="$out/postwarden_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compress" --build "$root" "$deb" >/dev/null
if command -v lintian >/dev/null; then
  lintian --no-tag-display-limit "$deb" >&2 || echo "build-deb.sh: lintian found problems (above)" >&2
fi
echo "$deb"
