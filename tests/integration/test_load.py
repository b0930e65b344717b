"""Load on the real birdsongd (issue 7): 200 concurrent keep-alive HTTP clients and an SSE
client that never reads, for a few seconds while the file source runs: every request is
answered, the worker keeps publishing, no capture overruns, memory bounded, no fd left behind.
The long soak (RSS growth < 1 MiB over 10 minutes) is bench/50-soak.sh."""
import http.client
import os
import socket
import threading
import time

import pytest

from birdsongd_helpers import DAEMON, MAKE_MODEL, Daemon, make_model, write_wav

pytestmark = pytest.mark.skipif(not (os.path.exists(DAEMON) and os.path.exists(MAKE_MODEL)),
                                reason="build/birdsongd or build/tools/make_test_model not built")

CLIENTS = 200
SECONDS = 6.0


def proc_stats(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def test_200_clients_and_a_stuck_sse_client(tmp_path):
    model = make_model(tmp_path / "model.bsm", ["alpha", "beta", "gamma"])
    wav = tmp_path / "signal.wav"
    write_wav(wav, seconds=4.0)
    d = Daemon(["--model", model, "--input", str(wav), "--input-loop", "--input-speed", "2",
                "--state-dir", str(tmp_path / "state"), "--set", "http_per_ip_connection_limit=0",
                "--set", "http_threads=2"], tmp=tmp_path)
    with d:
        d.wait_for(lambda: d.latest_seq() >= 1, what="a first window")
        for path in ("/api/v1/predictions/latest", "/api/v1/status", "/metrics"):  # warm the paths once
            d.request("GET", path)
        rss0, fd0 = proc_stats(d.proc.pid)
        seq0 = d.latest_seq()

        # an SSE client that never reads, with a tiny receive buffer
        sse = socket.socket()
        sse.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sse.connect(("127.0.0.1", d.port))
        sse.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")

        stop = threading.Event()
        counts = {"ok": 0, "bad": 0, "err": 0}
        lock = threading.Lock()
        ready = threading.Barrier(CLIENTS + 1)

        def client(i):
            paths = ["/api/v1/predictions/latest", "/api/v1/health", "/api/v1/predictions?limit=5",
                     "/api/v1/species"]
            c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
            ok = bad = err = 0
            try:
                ready.wait()
            except threading.BrokenBarrierError:
                return
            k = i
            while not stop.is_set():
                try:
                    c.request("GET", paths[k % len(paths)])
                    r = c.getresponse()
                    r.read()
                    if r.status == 200:
                        ok += 1
                    else:
                        bad += 1
                except (OSError, http.client.HTTPException):
                    err += 1
                    c.close()
                    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
                k += 1
            c.close()
            with lock:
                counts["ok"] += ok
                counts["bad"] += bad
                counts["err"] += err

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        ready.wait()
        peak_rss = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < SECONDS:
            time.sleep(0.5)
            peak_rss = max(peak_rss, proc_stats(d.proc.pid)[0])
        stop.set()
        for t in threads:
            t.join()
        status = d.json("/api/v1/status")
        seq1 = status["results"]["latest_seq"]
        sse.close()
        d.wait_for(lambda: proc_stats(d.proc.pid)[1] <= fd0, timeout=10, what="the connections' fds to be closed")
        rss1, fd1 = proc_stats(d.proc.pid)
        health = d.get("/api/v1/health")
    print("load: %d clients %.0f s: %d ok, %d non-200, %d errors; windows %d -> %d; RSS %d -> peak %d -> %d KiB; "
          "fds %d -> %d" % (CLIENTS, SECONDS, counts["ok"], counts["bad"], counts["err"], seq0, seq1, rss0,
                            peak_rss, rss1, fd0, fd1))
    assert counts["bad"] == 0 and counts["err"] == 0, counts
    assert counts["ok"] > CLIENTS, counts
    assert seq1 - seq0 >= SECONDS * 2 * 2 * 0.5, (seq0, seq1)  # 2x real time, 2 windows/s, half at least
    assert status["audio"]["overruns"] == 0 and status["audio"]["dropped_samples"] == 0, status["audio"]
    if "ASAN_OPTIONS" not in os.environ:  # ASan's quarantine holds freed memory by design
        assert peak_rss - rss0 < 64 * 1024, "RSS grew from %d to %d KiB under load" % (rss0, peak_rss)
    assert health[0] == 200, health
    assert d.proc.returncode == 0
