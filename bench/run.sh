#!/usr/bin/env bash
# make bench: runs every bench/[0-9][0-9]-*.sh part in order; each prints its own figures.
set -uo pipefail
cd "$(dirname "$0")/.."
export BIRDSONG_BUILD=${BIRDSONG_BUILD:-$PWD/build}
status=0
for part in bench/[0-9][0-9]-*.sh; do
  [ -e "$part" ] || continue
  echo "=== $(basename "$part" .sh)"
  bash "$part" || { echo "bench part $part failed"; status=1; }
done
exit $status
