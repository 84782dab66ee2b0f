#!/usr/bin/env bash
# Runs every fuzz target of the module for a short time each (default 10s):
#   hack/fuzz.sh [duration]
# `make test` (and so CI) runs it briefly after the tests; `make fuzz FUZZTIME=10m` explores.
# Seed corpora live in each package's testdata/fuzz and run with every `go test` anyway;
# this explores beyond them. A failing input is written to testdata/fuzz for a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}
status=0
while IFS= read -r file; do
  pkg=./$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | awk '{print $2}'); do
    echo "fuzz: $pkg $target ($fuzztime)"
    # New interesting inputs are minimized for at most 2s, so that a short run explores
    # rather than spends its time minimizing (the default is a minute per input).
    go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s || status=1
  done
done < <(grep -rl --include='*_test.go' '^func Fuzz' api controllers internal test 2>/dev/null | sort)
exit $status
