#!/usr/bin/env bash
# Training throughput of `birdsong train` on real recordings: samples/s per epoch and the share
# of each epoch spent outside the network (batch assembly, augmentation, z-score and the demo's
# band_median window norm), which must stay under 5% from epoch 2 on (epoch 1 may include
# first-touch page faults). Like the demo, it trains with synthetic negatives (made once,
# before epoch 1; about 5 ms each).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIRDSONG_BUILD:-$PWD/build}/birdsong
DATA=${BIRDSONG_SHARED_DATA:-$PWD/../shared/data}
BIRDS=$DATA/birds-6sp
if [ ! -d "$BIRDS" ]; then echo "train bench: skipped, no data at $BIRDS"; exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{
  printf 'path\tlabels\n'
  for sp in Cecropis_daurica Vireo_griseus Melanerpes_carolinus Lophophanes_cristatus; do
    ls "$BIRDS/$sp"/*.flac | sed -n "1,8s|\$|\t$sp|p"   # sed reads all: no SIGPIPE under pipefail
  done
  printf '%s\t\n' "$DATA/soundscapes/opensoundscape/great_plains_toad.flac"
} > "$tmp/m.tsv"
for arch in ${TRAIN_BENCH_ARCHS:-convnet-gp-wide convnet-lite}; do
  epochs=3; [ "$arch" = convnet1 ] && epochs=2
  "$BIN" train --data "$tmp/m.tsv" --out "$tmp/m.bsm" --arch "$arch" --n-mels 64 --epochs $epochs --patience 0 \
    --window-norm "${TRAIN_BENCH_WINDOW_NORM:-band_median}" --synthetic-negatives "${TRAIN_BENCH_SYNTHETIC:-64}" --cache "$tmp/cache" --threads 2 2> "$tmp/log" >/dev/null
  awk -v arch="$arch" '
    /info  epoch [0-9]+\// {
      split($4, e, "/"); ep = e[1] + 0
      for (i = 1; i <= NF; i++) {
        if ($i == "samples/s") sps = $(i - 1)
        if ($i ~ /^\(/) { out = substr($i, 2); sub(/%/, "", out) }
      }
      printf "  %-12s epoch %d: %7.1f samples/s, %5.2f%% outside the network\n", arch, ep, sps, out
      if (ep >= 2) { n++; s += sps; if (out + 0 > worst) worst = out + 0 }
    }
    END {
      if (n == 0) { print "  no epoch >= 2 logged"; exit 1 }
      printf "  %-12s epochs 2+: mean %.1f samples/s, worst %.2f%% outside the network (goal < 5%%): %s\n",
             arch, s / n, worst, worst < 5 ? "ok" : "MISSED"
      exit worst < 5 ? 0 : 1
    }' "$tmp/log"
done
