#!/usr/bin/env bash
# Station features: what they cost the worker per window (detector, SSE publish, store
# enqueue, clips feed) and the detection store's commit rate. Goal: the worker-side total
# stays far below 1 % of a 0.5 s hop (5 ms); the store commits well above any real
# detection rate (a few per second).
set -uo pipefail
cd "$(dirname "$0")/.."
B=${BIRDSONG_BUILD:-$PWD/build}
[ -f "$B/libbirdsongd.a" ] || { echo "40-station: $B/libbirdsongd.a is not built"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -D_GNU_SOURCE -O2 -Iinclude -Icore -I. $(pkg-config --cflags sndfile sqlite3 jansson libmicrohttpd) \
  -o "$tmp/station_bench" bench/station_bench.c "$B/libbirdsongd.a" "$B/libbirdsong.a" \
  $(pkg-config --libs sndfile sqlite3 jansson libmicrohttpd libmosquitto soxr fftw3f openblas) -lm -lpthread || exit 1
"$tmp/station_bench" "$tmp"
