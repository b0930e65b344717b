#!/usr/bin/env bash
# birdsongd at steady state: CPU % of one core over BENCH_SECONDS (60) with convnet1 at hop
# 0.5 s, RSS against the model's weights, then `wrk -t2 -c64 -d10s` on
# /api/v1/predictions/latest while inference runs (requests/s, errors, capture overruns).
# Goals (issue 5): CPU <= 15 %, RSS <= weights + 48 MB, >= 20,000 req/s, no errors, no overruns.
# Then a two-source run (issue 19): the same source plus the soundscape file as a second
# source in the same daemon (one model, one worker) over BENCH_SECONDS/2: CPU per source as a
# ratio to the one-source run measured just before, and zero drops on either source.
# Audio comes through PortAudio from the project's ALSA test device playing the bundled
# soundscape (32 kHz, so the worker also resamples), or from --input when the plugin is absent.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${BIRDSONG_BUILD:-$PWD/build}
SECS=${BENCH_SECONDS:-60}
ARCH=${BENCH_ARCH:-convnet1}   # the goals are for convnet1; convnet-lite shows the daemon's own overhead
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

for t in "$B/birdsongd" "$B/tools/make_test_model"; do
  [ -x "$t" ] || { echo "30-daemon: $t is not built"; exit 1; }
done
command -v wrk >/dev/null || { echo "30-daemon: wrk missing (scripts/install-deps.sh --bench)"; exit 1; }
sound=$PWD/data/soundscapes/opensoundscape_birds_10s.flac
model=$tmp/$ARCH.bsm
"$B/tools/make_test_model" "$model" sp1,sp2,sp3,sp4,sp5,sp6 "$ARCH" 1 || exit 1
weights_mb=$(awk -v b="$(stat -c %s "$model")" 'BEGIN{printf "%.1f", b/1048576}')
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
args=(--model "$model" --listen "127.0.0.1:$port" --set hop_seconds=0.5)
if [ -f "$B/alsa/libasound_module_pcm_bsfile.so" ]; then
  printf 'pcm_type.bsfile { lib "%s" }\npcm.!default { type bsfile file "%s" loop true }\n' \
    "$B/alsa/libasound_module_pcm_bsfile.so" "$sound" > "$tmp/asound.conf"
  export ALSA_CONFIG_PATH=$tmp/asound.conf
  src="PortAudio capture from the ALSA test device (bundled soundscape, 32 kHz -> 22050 Hz)"
else
  args+=(--input "$sound" --input-loop)
  src="file source (bundled soundscape)"
fi
"$B/birdsongd" "${args[@]}" 2>"$tmp/log" &
pid=$!
url=http://127.0.0.1:$port/api/v1
status() { /usr/bin/python3 -c "import json,sys,urllib.request as u; j=json.load(u.urlopen('$url/status')); print(eval(sys.argv[1]))" "$1"; }
for _ in $(seq 100); do curl -sf "$url/health" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 5   # warm-up: first windows, caches, OpenBLAS threads
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0=$(cpu); t0=$(date +%s.%N); w0=$(status 'j["worker"]["windows"]')
sleep "$SECS"
c1=$(cpu); t1=$(date +%s.%N); w1=$(status 'j["worker"]["windows"]')
cpu_pct=$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v k="$tck" 'BEGIN{printf "%.1f", 100*(b-a)/k/(e-s)}')
rss_mb=$(awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$pid/status")
hwm_mb=$(awk '/VmHWM/{printf "%.1f", $2/1024}' "/proc/$pid/status")
inf=$(status '"mean %.1f ms, p95 %.1f ms, rtf %.3f" % (j["worker"]["inference_ms"]["mean"], j["worker"]["inference_ms"]["p95"], j["worker"]["real_time_factor"])')
echo "source: $src"
echo "model: $ARCH random weights, 6 species, $weights_mb MB file; hop 0.5 s"
echo "steady state over ${SECS} s: CPU $cpu_pct % of one core; $((w1 - w0)) windows; inference $inf"
echo "memory: RSS $rss_mb MB (peak $hwm_mb MB) = weights $weights_mb MB + $(awk -v r="$rss_mb" -v w="$weights_mb" 'BEGIN{printf "%.1f", r-w}') MB"

d0=$(status 'j["audio"]["dropped_samples"] + j["audio"]["device_overflows"]')
wrk -t2 -c64 -d10s "$url/predictions/latest" > "$tmp/wrk" 2>&1
d1=$(status 'j["audio"]["dropped_samples"] + j["audio"]["device_overflows"]')
rps=$(awk '/Requests\/sec/{print $2}' "$tmp/wrk")
errs=$(awk '/Socket errors|Non-2xx/{s=s $0 "; "} END{print s}' "$tmp/wrk")
lat=$(awk '/Latency/{print $2 " mean, " $4 " max"}' "$tmp/wrk")
echo "wrk -t2 -c64 -d10s /api/v1/predictions/latest: $rps req/s, latency $lat; errors: ${errs:-none}; capture drops during load: $((d1 - d0))"

# ---- two sources in one daemon -------------------------------------------------------------
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
secs2=$(( SECS / 2 > 5 ? SECS / 2 : 5 ))
# with a [source], the top-level device is a source only when named: the default device is "default"
two=("${args[@]}")
[ -n "${ALSA_CONFIG_PATH:-}" ] && two+=(--device default)
"$B/birdsongd" "${two[@]}" --source second="file:$sound" --set input_loop=true 2>"$tmp/log2" &
pid=$!
for _ in $(seq 100); do curl -sf "$url/health" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 5
srcs() { /usr/bin/python3 -c "import json,sys,urllib.request as u; s=json.load(u.urlopen('$url/sources'))['sources']; print(eval(sys.argv[1]))" "$1"; }
c0=$(cpu); t0=$(date +%s.%N); dr0=$(srcs 'sum(x["dropped_samples"] for x in s)'); ww0=$(srcs '" ".join(str(x["windows"]) for x in s)')
sleep "$secs2"
c1=$(cpu); t1=$(date +%s.%N); dr1=$(srcs 'sum(x["dropped_samples"] for x in s)'); ww1=$(srcs '" ".join(str(x["windows"]) for x in s)')
cpu2=$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v k="$tck" 'BEGIN{printf "%.1f", 100*(b-a)/k/(e-s)}')
rss2=$(awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$pid/status")
[ "$(srcs 'len(s)')" -eq 2 ] || { echo "30-daemon: the two-source daemon has $(srcs 'len(s)') source(s)"; exit 1; }
echo "two sources (the one above + the soundscape file) over ${secs2} s: CPU $cpu2 % of one core = $(awk -v c="$cpu2" 'BEGIN{printf "%.1f", c/2}') % per source;" \
     "x$(awk -v a="$cpu2" -v b="$cpu_pct" 'BEGIN{printf "%.2f", (b > 0 ? a/b : 0)}') the one-source run; windows per source $ww0 -> $ww1;" \
     "RSS $rss2 MB (one model: +$(awk -v a="$rss2" -v b="$rss_mb" 'BEGIN{printf "%.1f", a-b}') MB over one source); dropped samples $((dr1 - dr0))"

fail=0
[ "$((dr1 - dr0))" -eq 0 ] || { echo "GOAL MISSED: two sources: $((dr1 - dr0)) samples dropped"; fail=1; }
awk -v a="$cpu2" -v b="$cpu_pct" 'BEGIN{exit !(a <= 2.5 * b + 1)}' || { echo "GOAL MISSED: two sources cost $cpu2 %, more than 2.5 x one ($cpu_pct %)"; fail=1; }
awk -v c="$cpu_pct" 'BEGIN{exit !(c <= 15)}' || { echo "GOAL MISSED: CPU $cpu_pct % > 15 %"; fail=1; }
awk -v r="$rss_mb" -v w="$weights_mb" 'BEGIN{exit !(r <= w + 48)}' || { echo "GOAL MISSED: RSS $rss_mb MB > weights + 48 MB"; fail=1; }
awk -v r="${rps:-0}" 'BEGIN{exit !(r >= 20000)}' || { echo "GOAL MISSED: $rps req/s < 20000"; fail=1; }
[ -z "$errs" ] || { echo "GOAL MISSED: wrk errors: $errs"; fail=1; }
[ "$((d1 - d0))" -eq 0 ] || { echo "GOAL MISSED: $((d1 - d0)) samples dropped during the load"; fail=1; }
[ $fail -eq 0 ] && echo "all daemon goals met"
exit $fail
