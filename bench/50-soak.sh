#!/usr/bin/env bash
# Soak (issue 7): birdsongd on the bundled soundscape at SOAK_SPEED (default 10x) real time
# for SOAK_SECONDS (default 600, capped at 600) with HTTP polling: RSS growth < 1 MiB after
# warm-up, no fd growth, captured = in ring + dropped, windows match the samples taken.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${BIRDSONG_BUILD:-$PWD/build}
[ -x "$B/birdsongd" ] || { echo "50-soak: $B/birdsongd is not built"; exit 1; }
BIRDSONG_BUILD="$B" /usr/bin/python3 bench/soak.py
