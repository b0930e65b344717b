"""Soak of birdsongd (issue 7): the file source at high speed for SOAK_SECONDS (default 600,
at most 600), HTTP polling alongside. Samples RSS and open file descriptors every 5 s after
a warm-up and checks at the end: RSS growth after warm-up < 1 MiB, no fd growth, every
window accounted for (captured = in ring + dropped; windows x hop = what the worker took).
Prints one line per figure; exit 1 when a goal is missed. Run by bench/50-soak.sh."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BUILD = os.environ.get("BIRDSONG_BUILD", os.path.join(REPO, "build"))
AUDIO = os.path.join(REPO, "data", "soundscapes", "opensoundscape_birds_10s.flac")
SECONDS = min(600.0, float(os.environ.get("SOAK_SECONDS", "600")))
SPEED = os.environ.get("SOAK_SPEED", "10")
WARMUP = min(60.0, SECONDS / 4)
# /status reads the audio and the worker counters a moment apart; at X times real time a
# window passes every hop / X seconds of wall time, so a few may fall between the two reads.
WINDOW_SLACK = 5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stats(pid):
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.read()


def main():
    tmp = tempfile.mkdtemp(prefix="bs-soak-")
    model = os.path.join(tmp, "soak.bsm")
    subprocess.run([os.path.join(BUILD, "tools", "make_test_model"), model, "Parus_major,Sitta_europaea,Turdus_merula"],
                   check=True, capture_output=True)
    port = free_port()
    log = open(os.path.join(tmp, "soak.log"), "wb")
    p = subprocess.Popen([os.path.join(BUILD, "birdsongd"), "-m", model, "-i", AUDIO, "--input-loop",
                          "--input-speed", SPEED, "-l", "127.0.0.1:%d" % port, "--state-dir", os.path.join(tmp, "state"),
                          "-s", "species_thresholds=Parus_major:0", "-s", "max_event_seconds=2",
                          "-s", "history_seconds=60", "-s", "retention_rows=500", "-s", "clips=true",
                          "-s", "clips_max_mb=2"], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            try:
                get(port, "/api/v1/predictions/latest")
                break
            except OSError:
                time.sleep(0.1)
        t0 = time.monotonic()
        samples = []
        requests = 0
        while time.monotonic() - t0 < SECONDS:
            for path in ("/api/v1/predictions/latest", "/api/v1/status", "/metrics", "/api/v1/detections?limit=5"):
                get(port, path)
                requests += 1
            t = time.monotonic() - t0
            if t >= WARMUP and (not samples or t - samples[-1][0] >= 5):
                samples.append((t,) + proc_stats(p.pid))
            time.sleep(0.2)
        st = json.loads(get(port, "/api/v1/status"))
        # the last window's accounting, read twice to see a quiet moment is not needed:
        a, w = st["audio"], st["worker"]
    finally:
        p.terminate()
        rc = p.wait(10)
    rate = a["sample_rate"]
    hop = w["hop_seconds"] * rate
    seg = w["segment_seconds"] * rate
    captured, in_ring, dropped = a["frames_captured"], a["samples_in_ring_total"], a["dropped_samples"]
    fill = a["ring"]["fill_seconds"] * rate
    taken = in_ring - fill  # samples the worker has read from the ring
    windows_expected = max(0, int((taken - seg) // hop) + 1)
    rss0, fd0 = samples[0][1], samples[0][2]
    rss1, fd1 = samples[-1][1], samples[-1][2]
    rss_max = max(s[1] for s in samples)
    fd_max = max(s[2] for s in samples)
    print("soak: %.0f s at %sx real time (%.0f s of audio), %d HTTP requests, exit %d" %
          (SECONDS, SPEED, captured / rate, requests, rc))
    print("soak: RSS after warm-up %d KiB, at end %d KiB (growth %+d KiB, max %d KiB)" % (rss0, rss1, rss1 - rss0, rss_max))
    print("soak: open fds after warm-up %d, at end %d (max %d; transient: the store, clips being written)"
          % (fd0, fd1, fd_max))
    print("soak: captured %d = in ring %d + dropped %d: %s" % (captured, in_ring, dropped,
                                                               "yes" if captured == in_ring + dropped else "NO"))
    print("soak: windows %d, expected from the samples taken %d (overruns %d)" % (w["windows"], windows_expected,
                                                                                  a["overruns"]))
    fd_first_half = max(s[2] for s in samples[: max(1, len(samples) // 2)])
    ok = (rc == 0 and rss1 - rss0 < 1024 and fd1 <= fd_first_half and captured == in_ring + dropped
          and abs(w["windows"] - windows_expected) <= WINDOW_SLACK)
    print("soak: %s" % ("all goals met" if ok else "GOAL MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
