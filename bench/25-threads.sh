#!/usr/bin/env bash
# Data-parallel training in one process (issue 17): `birdsong bench --threads 1` and
# `--threads 2` in turn, ROUNDS rounds, for convnet1 (128 mels) and convnet-gp-wide (64 mels),
# 70 classes, batch 32. Reports train_samples_per_s at 1 and 2 threads, the ratio of each
# round and their median (goal >= 1.8x), and the work ratio: CPU time of the whole process
# per step at 2 threads over 1 (1.0 = the replicas add no work; what a 2-core machine with
# nothing else running would then show as scaling is about 2 / that ratio). The machine may be
# shared: wall-time ratios swing with the other load; the rounds interleave to share it.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIRDSONG_BUILD:-build}/birdsong
PY=/usr/bin/python3
ROUNDS=${THREADS_BENCH_ROUNDS:-3}
STEPS=${THREADS_BENCH_STEPS:-8}
[ -x "$BIN" ] || { echo "25-threads: $BIN not built"; exit 1; }
status=0
for spec in convnet1:128 convnet-gp-wide:64; do
  arch=${spec%%:*} mels=${spec##*:}
  lines=()
  for r in $(seq 1 "$ROUNDS"); do
    for T in 1 2; do
      j=$("$BIN" bench --arch "$arch" --mels "$mels" --classes 70 --threads "$T" --iters 3 \
          --train-steps "$STEPS" --json 2>/dev/null | tail -n 1) || { echo "birdsong bench failed"; exit 1; }
      lines+=("$j")
    done
  done
  $PY - "$arch" "${lines[@]}" <<'PYEOF' || status=1
import json, statistics, sys
arch, runs = sys.argv[1], [json.loads(a) for a in sys.argv[2:]]
pairs = list(zip(runs[0::2], runs[1::2]))
ratios = [b["train_samples_per_s"] / a["train_samples_per_s"] for a, b in pairs]
work = [b["train_process_cpu_ms_per_step"] / a["train_process_cpu_ms_per_step"] for a, b in pairs]
for k, (a, b) in enumerate(pairs):
    print(f"  {arch:16s} round {k + 1}: 1 thread {a['train_samples_per_s']:7.1f} samples/s, "
          f"2 threads {b['train_samples_per_s']:7.1f}: {ratios[k]:.2f}x; process CPU per step "
          f"{a['train_process_cpu_ms_per_step']:.0f} -> {b['train_process_cpu_ms_per_step']:.0f} ms ({work[k]:.2f}x)")
m = statistics.median(ratios)
print(f"  {arch:16s} median 2-thread scaling {m:.2f}x (goal >= 1.8x: {'met' if m >= 1.8 else 'MISSED'}); "
      f"median work ratio {statistics.median(work):.2f}x")
print("  " + json.dumps({"arch": arch, "scaling": ratios, "work_ratio": work,
                          "samples_per_s_1": [a["train_samples_per_s"] for a, _ in pairs],
                          "samples_per_s_2": [b["train_samples_per_s"] for _, b in pairs]}))
PYEOF
done
exit $status
