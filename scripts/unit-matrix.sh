#!/usr/bin/env bash
# Run the numeric unit tests once per OpenBLAS kernel and once per log-mel SIMD body
# (mk/matrix.mk). Usage: scripts/unit-matrix.sh "KERNEL ..." TEST_BINARY ...
# A kernel whose instructions this CPU lacks is skipped with a message (it would die of
# SIGILL, which says nothing about our code); on a non-x86 machine only the default kernel runs.
set -uo pipefail
kernels=$1
shift
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { for f in "$@"; do [[ $flags == *" $f "* ]] || return 1; done; }
runs_on_this_cpu() {
  case $1 in
    Prescott) has sse3 || has pni ;;
    Haswell | Zen) has avx2 fma ;;
    SkylakeX) has avx512f avx512bw avx512vl avx512dq avx512cd ;;
    *) return 0 ;;
  esac
}

failed=()
run() { # label, env assignments..., then the binaries run with them
  local label=$1; shift
  local -a envs=()
  while [[ $# -gt 0 && $1 == *=* ]]; do envs+=("$1"); shift; done
  local t0=$SECONDS
  for t in "$@"; do
    if ! env -u OPENBLAS_CORETYPE -u BIRDSONG_NO_AVX2 -u BIRDSONG_NO_AVX512 "${envs[@]}" \
        "$t" --jobs 2 --short-filename >"$t.$label.log" 2>&1; then
      echo "unit-matrix: $(basename "$t") FAILED under $label:"
      tail -n 40 "$t.$label.log"
      failed+=("$(basename "$t")@$label")
    fi
  done
  echo "unit-matrix: $label: $# test binaries in $((SECONDS - t0)) s"
}

if [ "$(uname -m)" = x86_64 ]; then
  for k in $kernels; do
    if runs_on_this_cpu "$k"; then
      run "$k" OPENBLAS_CORETYPE="$k" "$@"
    else
      echo "unit-matrix: SKIPPED OpenBLAS kernel $k: this CPU lacks its instructions"
    fi
  done
else
  run default-kernel "$@"
fi
run avx2-body BIRDSONG_NO_AVX512=1 "$@"
run baseline-body BIRDSONG_NO_AVX2=1 "$@"

if [ ${#failed[@]} -gt 0 ]; then
  echo "unit-matrix: failed: ${failed[*]}"
  exit 1
fi
echo "unit-matrix: all passed"
