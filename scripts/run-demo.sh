#!/usr/bin/env bash
# make run: birdsongd in the foreground with models/demo.bsm, on the default capture device
# when there is one, else on the bundled soundscape (data/soundscapes/, MIT) in a loop.
# Environment: MODEL (default models/demo.bsm), LISTEN (default 127.0.0.1:8080),
# BIRDSONG_BUILD (default build), STATE_DIR (detections.db, default build/state).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BIRDSONG_BUILD:-build}
model=${MODEL:-models/demo.bsm}
listen=${LISTEN:-127.0.0.1:8080}
daemon="$build/birdsongd"
soundscape=data/soundscapes/opensoundscape_birds_10s.flac

if [ ! -x "$daemon" ]; then
  echo "run-demo: $daemon is not built; run 'make' first." >&2
  exit 1
fi
if [ ! -f "$model" ]; then
  echo "run-demo: the model $model is missing." >&2
  echo "run-demo: it is made by the trainer ('birdsong train', see models/README.md when present);" >&2
  echo "run-demo: or point MODEL=/path/to/model.bsm at another model file." >&2
  exit 1
fi

state=${STATE_DIR:-$build/state}
args=(--model "$model" --listen "$listen" --state-dir "$state")
if "$daemon" --list-devices 2>/dev/null | awk '$2 == "yes" {found=1} END {exit !found}'; then
  echo "run-demo: using the default capture device (see '$daemon --list-devices')."
else
  echo "run-demo: no capture device on this machine: playing the bundled soundscape"
  echo "run-demo:   $soundscape (opensoundscape, MIT; see data/soundscapes/README.md) in a loop."
  args+=(--input "$soundscape" --input-loop)
fi
host=${listen%:*}
port=${listen##*:}
[ "$host" = "0.0.0.0" ] && host=127.0.0.1
echo "run-demo: open http://$host:$port/ (the dashboard), /api/v1/predictions/latest?top=3, /api/v1/detections;"
echo "run-demo: detections are stored in $state/detections.db. Ctrl-C stops."
exec "$daemon" "${args[@]}"
