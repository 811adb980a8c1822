#!/usr/bin/env bash
# Runs every fuzz target of the module (found by `func FuzzX(` in
# *_test.go files) for FUZZTIME each, one after another, without the race
# detector.
#
#   tests/fuzz/run.sh [FUZZTIME]     # default 60s; `make test` uses 2s
#
# A failing input is written by go test to the package's
# testdata/fuzz/FuzzX/ directory; commit it as a regression seed.
set -euo pipefail
cd "$(dirname "$0")/../.."
fuzztime=${1:-60s}
fail=0
while IFS=: read -r file name; do
  pkg=$(dirname "$file")
  echo "== $pkg $name ($fuzztime)"
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"; then
    fail=1
  fi
done < <(grep -rHoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]*)\(' . | sed -E 's/:func (Fuzz[A-Za-z0-9_]*)\(/:\1/' | grep -v '^./bench/' | sort)
exit $fail
