#!/usr/bin/env bash
# The user's scale (issue 17): a synthetic 70-class manifest of SCALE_RECORDINGS (16000)
# recordings of SCALE_SECONDS (10) s, random crops of the shared recordings with random labels
# (speed and memory, not accuracy), windows every 0.5 s (~300,000 at full size). Reports:
#   - feature extraction, recordings/s (`birdsong train`, empty cache, --threads 2);
#   - peak RssAnon of that training while it holds every window (sampled every 0.2 s from the
#     start until SCALE_TRAIN_SECONDS (60) into the first epoch; then SIGTERM, which writes a
#     checkpoint and ends it);
#   - seconds per epoch for convnet1 (128 mels) and convnet-gp-wide (64 mels) at 1 and 2
#     threads and 2 MPI ranks: the set's training windows / train_samples_per_s of
#     `birdsong bench` (batch 32; all three in one round, in turn), plus its validation
#     windows x inference ms per window.
# Needs ~SCALE_RECORDINGS x 0.5-0.9 MB in SCALE_DIR (default a folder under /tmp) and, at full
# size, about 20 minutes. The machine may be shared: figures are as measured.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BIRDSONG_BUILD:-$PWD/build}
BIN=$BUILD/birdsong
DATA=${BIRDSONG_SHARED_DATA:-$PWD/../shared/data}
N=${SCALE_RECORDINGS:-16000}
SECS=${SCALE_SECONDS:-10}
TRAIN_S=${SCALE_TRAIN_SECONDS:-60}
PY=/usr/bin/python3
if [ ! -d "$DATA/birds-6sp" ]; then echo "60-scale: skipped, no recordings at $DATA/birds-6sp"; exit 0; fi
[ -x "$BIN" ] || { echo "60-scale: $BIN not built"; exit 1; }
work=$(mktemp -d "${SCALE_DIR:-/tmp}/bs-scale-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rec"
cc -std=c11 -D_GNU_SOURCE -O2 -Iinclude -o "$work/scale_crops" bench/scale_crops.c "$BUILD/libbirdsong.a" \
  $(pkg-config --cflags --libs sndfile soxr fftw3f jansson) -lm -lpthread || exit 1
mapfile -t SRC < <(find "$DATA/birds-6sp" -name '*.flac' | sort)
t0=$(date +%s.%N)
"$work/scale_crops" "$work/rec" "$N" "$SECS" 70 1 "${SRC[@]}" > "$work/m.tsv" || exit 1
echo "  made $N recordings of ${SECS} s in $(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.0f", a - b }') s ($(du -sh "$work/rec" | cut -f1))"

# one training: features (empty cache), then TRAIN_S s of the first epoch, RssAnon sampled
"$BIN" train --data "$work/m.tsv" --out "$work/m.bsm" --arch convnet1 --segment-hop 0.5 --epochs 1 \
  --threads 2 --cache "$work/cache" --checkpoint-dir "$work/ck" 2> "$work/train.log" > /dev/null &
pid=$!
start=$(date +%s.%N) feat_s="" peak=0 trained_since=""
while kill -0 $pid 2>/dev/null; do
  kb=$(awk '/^RssAnon:/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
  [ -n "$kb" ] && [ "$kb" -gt "$peak" ] && peak=$kb
  now=$(date +%s.%N)
  if [ -z "$feat_s" ] && grep -q "info  features: [0-9]* files," "$work/train.log"; then feat_s=$(awk -v a="$now" -v b="$start" 'BEGIN { print a - b }'); fi
  if [ -z "$trained_since" ] && grep -q "final model:" "$work/train.log"; then trained_since=$now; fi
  if [ -n "$trained_since" ] && awk -v a="$now" -v b="$trained_since" -v t="$TRAIN_S" 'BEGIN { exit !(a - b > t) }' ; then kill -TERM $pid; fi
  sleep 0.2
done
wait $pid
windows=$(sed -n 's/.*data: [0-9]* species, \([0-9]*\) windows.*/\1/p' "$work/train.log")
split=$(sed -n 's/.*final model: \([0-9]*\) training and \([0-9]*\) validation windows.*/\1 \2/p' "$work/train.log")
[ -n "$windows" ] && [ -n "$split" ] && [ -n "$feat_s" ] || { echo "60-scale: the training did not get going:"; tail -5 "$work/train.log"; exit 1; }
set -- $split
ntr=$1 nva=$2

export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo \
       OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
res=()
for spec in convnet1:128 convnet-gp-wide:64; do
  arch=${spec%%:*} mels=${spec##*:}
  b=(bench --arch "$arch" --mels "$mels" --classes 70 --iters 5 --train-steps 6 --json)
  res+=("$arch" "$("$BIN" "${b[@]}" --threads 1 2>/dev/null | tail -n 1)")
  res+=("$arch" "$("$BIN" "${b[@]}" --threads 2 2>/dev/null | tail -n 1)")
  if command -v mpirun >/dev/null; then
    res+=("$arch" "$(mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN" "${b[@]}" --threads 1 2>/dev/null | tail -n 1)")
  fi
done
$PY - "$N" "$feat_s" "$peak" "$windows" "$ntr" "$nva" "${res[@]}" <<'PYEOF'
import json, sys
n, feat_s, peak_kb, windows, ntr, nva = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rest = sys.argv[7:]
print(f"  features: {n} recordings in {feat_s:.0f} s = {n / feat_s:.1f} recordings/s (2 threads, empty cache; includes decoding)")
print(f"  windows: {windows} ({ntr} training, {nva} validation); peak RssAnon while training on them: "
      f"{peak_kb / 1024:.0f} MB (goal <= 1536 MB: {'met' if peak_kb <= 1536 * 1024 else 'MISSED'})")
out = {"recordings": n, "feature_recordings_per_s": n / feat_s, "windows": windows, "peak_rss_anon_mb": peak_kb / 1024, "epochs": []}
for arch, js in zip(rest[0::2], rest[1::2]):
    try:
        j = json.loads(js)
    except ValueError:
        print(f"  {arch}: bench failed"); continue
    how = f"{j.get('ranks', 1)} rank(s) x {j['threads']} thread(s)"
    sec = ntr / j["train_samples_per_s"] + nva * j["infer_ms_per_window"] / 1e3
    print(f"  {arch:16s} {how}: {j['train_samples_per_s']:7.1f} samples/s -> {sec / 60:7.1f} min per epoch "
          f"({ntr / j['train_samples_per_s'] / 60:.1f} training, {nva * j['infer_ms_per_window'] / 6e4:.1f} validation)")
    out["epochs"].append({"arch": arch, "ranks": j.get("ranks", 1), "threads": j["threads"],
                          "train_samples_per_s": j["train_samples_per_s"], "seconds_per_epoch": sec})
print("  " + json.dumps(out))
PYEOF
