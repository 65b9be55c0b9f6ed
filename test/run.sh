#!/usr/bin/env bash
# The test command behind `npm test` (README). On a fresh Debian machine as root it installs the Debian
# packages the integration harness needs (test/harness/install.sh, a no-op when they are present), then:
# build (tsc), lint (eslint, including the inward-dependency rule), format (prettier --check), generated docs
# up to date, unit and golden tests, then integration tests against real Postfix and Dovecot on loopback.
# Last, the quick form of the fault-injection suite (test/chaos/, docs/reliability.md#fault-injection).
#   bash test/run.sh [all|unit|integration]
set -euo pipefail
cd "$(dirname "$0")/.."
suite="${1:-all}"

step() { printf '\n=== %s\n' "$*"; }

if [ "$suite" != unit ]; then
  step "harness packages"
  bash test/harness/install.sh
fi

step "build"
npm run build --silent

step "lint and format"
npx eslint --max-warnings 0 .
npx prettier --check . >/dev/null || { npx prettier --check .; exit 1; }

files() { find "dist/test/$1" -name '*.test.js' 2>/dev/null | sort; }

case "$suite" in
  unit) set -- $(files unit) $(files golden) $(files fuzz) ;;
  integration) set -- $(files integration) $(files chaos) ;;
  all) set -- $(files unit) $(files golden) $(files fuzz) $(files integration) $(files chaos) ;;
  *) echo "usage: test/run.sh [all|unit|integration]" >&2; exit 64 ;;
esac

# The abuse and load suite (test/abuse/, bounded form; `npm run test:abuse` for the bigger one) needs a real
# postwarden on its own ports: it runs with the integration tests.
case "$suite" in integration|all) set -- "$@" $(files abuse) ;; esac

step "tests ($# files)"
# Integration tests share the harness's fixed loopback ports: one file at a time.
exec node --test --test-concurrency=1 --test-timeout=300000 "$@"
