#!/usr/bin/env bash
# Log-mel speed: 5 minutes of real recordings (birds-6sp), 1 s windows at 22050 Hz, C
# (FFTW single precision) vs the numpy reference of librosa's formulas, one core each.
# Goals (issue 2): >= 20x numpy and >= 2000x real time. BENCH_CPU: the core both run on (0).
# The two run in turn, ROUNDS times (C best of REPS, then numpy best of 3: each round is one
# run of the earlier version of this bench), and the speed-up is taken round by round: a load
# that comes and goes on a shared machine then moves both sides of a ratio, not one. The goal
# is checked on the median of those ratios.
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
CORE_PKGS="sndfile soxr fftw3f openblas jansson" # as the Makefile's: switches.h reaches the network options
cc -std=c11 -D_GNU_SOURCE -O2 -Iinclude -o "$BUILD/bench/features_bench" bench/features_bench.c \
  "$BUILD/libbirdsong.a" $(pkg-config --cflags --libs $CORE_PKGS) -lm -lpthread
mapfile -t FILES < <(find "$DATA/birds-6sp" -name '*.flac' | sort)
PIN=()
command -v taskset >/dev/null && PIN=(taskset -c "${BENCH_CPU:-0}")
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
ROUNDS=${BENCH_FEATURES_ROUNDS:-5}
NP_REPS=$(( REPS < 3 ? REPS : 3 ))
val() { printf '%s\n' "$1" | awk -v k="$2" '$1 == k { print $2 }'; }
rounds=""
for r in $(seq "$ROUNDS"); do
  c_out=$("${PIN[@]}" "$BUILD/bench/features_bench" "$SECONDS_OF_AUDIO" "$REPS" "$BUILD/bench/audio.npy" "${FILES[@]}")
  py_out=$("${PIN[@]}" /usr/bin/python3 bench/features_numpy.py "$BUILD/bench/audio.npy" "$NP_REPS")
  rounds+="$(val "$c_out" c_logmel_seconds) $(val "$py_out" numpy_logmel_seconds)"$'\n'
done
win=$(val "$c_out" c_windows); dec=$(val "$c_out" c_decode_seconds)
cs_c=$(val "$c_out" c_checksum); cs_np=$(val "$py_out" numpy_checksum)
plan=$(printf '%s\n' "$c_out" | sed -n 's/^c_fft_plan //p')
printf '%s' "$rounds" | awk -v cr="$REPS" -v nr="$NP_REPS" -v plan="$plan" -v w="$win" -v a="$SECONDS_OF_AUDIO" -v dec="$dec" -v csc="$cs_c" -v csn="$cs_np" '
  { c[NR] = $1; np[NR] = $2; q[NR] = $2 / $1 }
  function median(x, n,   i, j, t, y) {
    for (i = 1; i <= n; i++) y[i] = x[i]
    for (i = 2; i <= n; i++) for (j = i; j > 1 && y[j - 1] > y[j]; j--) { t = y[j]; y[j] = y[j - 1]; y[j - 1] = t }
    return n % 2 ? y[(n + 1) / 2] : (y[n / 2] + y[n / 2 + 1]) / 2
  }
  END {
    n = NR; cm = median(c, n); nm = median(np, n); qm = median(q, n)
    qs = ""; for (i = 1; i <= n; i++) qs = qs sprintf("%s%.1f", i > 1 ? " " : "", q[i])
    printf "log-mel of %d s of real audio (%d windows of 128x44), one core, CPU time, %d rounds (C best of %d, then numpy best of %d), medians:\n", a, w, n, cr, nr
    printf "  C (FFTW, float32)       %8.1f ms  (%.1f us per window; FFT plan: %s)\n", cm * 1000, cm * 1e6 / w, plan
    printf "  numpy librosa formulas  %8.1f ms\n", nm * 1000
    printf "  speed-up vs numpy       %8.1fx   (goal >= 20x)   %s   (round by round: %s)\n", qm, (qm >= 20 ? "ok" : "BELOW GOAL"), qs
    printf "  real-time factor        %8.0fx   (goal >= 2000x) %s\n", a / cm, (a / cm >= 2000 ? "ok" : "BELOW GOAL")
    printf "  decode + resample of the source files: %.1f ms (%.0fx real time)\n", dec * 1000, a / dec
    printf "  checksum C %s, numpy %s (mean difference %.2e dB per value)\n", csc, csn, (csc - csn) / (w * 128 * 44)
  }'
