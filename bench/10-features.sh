#!/usr/bin/env bash
# Log-mel speed: 5 minutes of real recordings (birds-6sp), 1 s windows at 22050 Hz, C
# (FFTW single precision) vs the numpy reference of librosa's formulas, one core each.
# Goals (issue 2): >= 20x numpy and >= 2000x real time. BENCH_CPU: the core both run on (0).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BIRDSONG_BUILD:-$PWD/build}
DATA=${BIRDSONG_SHARED_DATA:-$PWD/../shared/data}
SECONDS_OF_AUDIO=${BENCH_FEATURES_SECONDS:-300}
REPS=${BENCH_FEATURES_REPS:-5}
if [ ! -d "$DATA/birds-6sp" ]; then
  echo "features bench: skipped, no recordings at $DATA/birds-6sp (set BIRDSONG_SHARED_DATA)"
  exit 0
fi
mkdir -p "$BUILD/bench"
CORE_PKGS="sndfile soxr fftw3f jansson"
cc -std=c11 -D_GNU_SOURCE -O2 -Iinclude -o "$BUILD/bench/features_bench" bench/features_bench.c \
  "$BUILD/libbirdsong.a" $(pkg-config --cflags --libs $CORE_PKGS) -lm -lpthread
mapfile -t FILES < <(find "$DATA/birds-6sp" -name '*.flac' | sort)
PIN=()
command -v taskset >/dev/null && PIN=(taskset -c "${BENCH_CPU:-0}")
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
c_out=$("${PIN[@]}" "$BUILD/bench/features_bench" "$SECONDS_OF_AUDIO" "$REPS" "$BUILD/bench/audio.npy" "${FILES[@]}")
py_out=$("${PIN[@]}" /usr/bin/python3 bench/features_numpy.py "$BUILD/bench/audio.npy" "$(( REPS < 3 ? REPS : 3 ))")
val() { printf '%s\n' "$1" | awk -v k="$2" '$1 == k { print $2 }'; }
c_s=$(val "$c_out" c_logmel_seconds); np_s=$(val "$py_out" numpy_logmel_seconds)
win=$(val "$c_out" c_windows); dec=$(val "$c_out" c_decode_seconds)
cs_c=$(val "$c_out" c_checksum); cs_np=$(val "$py_out" numpy_checksum)
plan=$(printf '%s\n' "$c_out" | sed -n 's/^c_fft_plan //p')
awk -v plan="$plan" -v c="$c_s" -v np="$np_s" -v w="$win" -v a="$SECONDS_OF_AUDIO" -v dec="$dec" -v csc="$cs_c" -v csn="$cs_np" 'BEGIN {
  printf "log-mel of %d s of real audio (%d windows of 128x44), one core, CPU time, best run:\n", a, w
  printf "  C (FFTW, float32)       %8.1f ms  (%.1f us per window; FFT plan: %s)\n", c * 1000, c * 1e6 / w, plan
  printf "  numpy librosa formulas  %8.1f ms\n", np * 1000
  printf "  speed-up vs numpy       %8.1fx   (goal >= 20x)   %s\n", np / c, (np / c >= 20 ? "ok" : "BELOW GOAL")
  printf "  real-time factor        %8.0fx   (goal >= 2000x) %s\n", a / c, (a / c >= 2000 ? "ok" : "BELOW GOAL")
  printf "  decode + resample of the source files: %.1f ms (%.0fx real time)\n", dec * 1000, a / dec
  printf "  checksum C %s, numpy %s (mean difference %.2e dB per value)\n", csc, csn, (csc - csn) / (w * 128 * 44)
}'
