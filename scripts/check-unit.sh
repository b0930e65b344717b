#!/usr/bin/env bash
# Checks a systemd unit file without systemd as PID 1: `systemd-analyze verify` must print
# nothing about the unit (unknown keys only warn, so any line mentioning it fails), and
# `systemd-analyze security --offline=true` must score an exposure <= 2.0.
set -euo pipefail
unit_src=${1:-systemd/birdsongd.service}
max=${MAX_EXPOSURE:-2.0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# verify wants the ExecStart binary to exist: point @PREFIX@ at a tree holding it.
mkdir -p "$tmp/prefix/bin" "$tmp/prefix/share/birdsong"
printf '#!/bin/sh\n' > "$tmp/prefix/bin/birdsongd"
chmod +x "$tmp/prefix/bin/birdsongd"
unit="$tmp/birdsongd.service"
sed "s|@PREFIX@|$tmp/prefix|g" "$unit_src" > "$unit"
out=$(systemd-analyze verify "$unit" 2>&1 || true)
rel=$(printf '%s\n' "$out" | grep -F 'birdsongd.service' || true)
if [ -n "$rel" ]; then
  echo "check-unit: systemd-analyze verify complains about $unit_src:" >&2
  printf '%s\n' "$rel" >&2
  exit 1
fi
sec=$(systemd-analyze security --offline=true "$unit" 2>&1 || true)
score=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for [^:]*: *\([0-9.]*\).*/\1/p' | tail -1)
if [ -z "$score" ]; then
  echo "check-unit: could not read the exposure level:" >&2
  printf '%s\n' "$sec" | tail -5 >&2
  exit 1
fi
if awk -v s="$score" -v m="$max" 'BEGIN{exit !(s > m)}'; then
  echo "check-unit: exposure $score > $max for $unit_src" >&2
  printf '%s\n' "$sec" | grep -E '^✗' | head -30 >&2
  exit 1
fi
echo "check-unit: $unit_src verify clean, exposure $score (<= $max)"
