"""Faults on the real birdsongd (issue 7): the capture device unplugged and plugged back, a
stalled worker (health and the systemd watchdog notice), a full disk under the detections and
the clips, a locked and a damaged database, the model file replaced while a reload reads it,
repeated SIGKILL during writes. The daemon must stay up (or refuse clearly), say so in
/health, /status or /metrics, and recover when the fault goes away."""
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import pytest

import birdsongd_helpers as bh
import station_helpers as sh

pytestmark = pytest.mark.skipif(not (os.path.exists(bh.DAEMON) and os.path.exists(bh.MAKE_MODEL)),
                                reason="build/birdsongd or build/tools/make_test_model not built")

DETECT = ["species_thresholds=Parus_major:0, Sitta_europaea:1", "exclude_species=Turdus_merula",
          "max_event_seconds=1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    model = bh.make_model(d / "model.bsm", ["alpha", "beta", "gamma"])
    wav = d / "signal.wav"
    bh.write_wav(wav, seconds=4.0)
    return {"dir": d, "model": model, "wav": str(wav)}


@pytest.fixture(scope="module")
def station_model(tmp_path_factory):
    return sh.make_model(str(tmp_path_factory.mktemp("smodel") / "station.bsm"))


needs_audio = pytest.mark.skipif(not os.path.exists(sh.AUDIO), reason="data/soundscapes recording missing")


# ---- capture device unplugged and back ---------------------------------------------------

@pytest.mark.skipif(not os.path.exists(bh.PLUGIN), reason="ALSA test plugin not built")
def test_capture_device_unplugged_and_plugged_back(files, tmp_path):
    marker = tmp_path / "plugged"
    marker.write_text("")
    conf = bh.alsa_config(tmp_path / "asound.conf", {
        "default": {"file": files["wav"], "loop": True, "present": str(marker)}})
    d = bh.Daemon(["--model", files["model"], "--set", "device_stall_seconds=0.5",
                   "--set", "reopen_max_seconds=0.5"], env={"ALSA_CONFIG_PATH": conf}, tmp=tmp_path)
    with d:
        d.wait_for(lambda: d.latest_seq() >= 2, what="windows from the device")
        assert d.get("/api/v1/health")[0] == 200
        marker.unlink()  # unplugged
        d.wait_for(lambda: d.get("/api/v1/health")[0] == 503, timeout=10, what="health to notice the device is gone")
        d.wait_for(lambda: d.json("/api/v1/status")["audio"]["failures"] >= 2, timeout=10,
                   what="failed reopen attempts while unplugged")
        st = d.json("/api/v1/status")["audio"]
        assert st["state"] != "running", st
        seq_gone = d.latest_seq()
        marker.write_text("")  # plugged back
        d.wait_for(lambda: d.json("/api/v1/status")["audio"]["state"] == "running", timeout=10,
                   what="capture running again")
        d.wait_for(lambda: d.latest_seq() >= seq_gone + 2, timeout=10, what="new windows after the replug")
        d.wait_for(lambda: d.get("/api/v1/health")[0] == 200, timeout=10, what="health ok again")
        assert d.proc.poll() is None
    assert d.proc.returncode == 0


# ---- worker stall --------------------------------------------------------------------------

def test_stalled_worker_turns_health_503_and_starves_the_watchdog(files, tmp_path):
    """debug_pause_worker_seconds (a documented test knob) stalls the worker: /health names the
    worker while it lags, the watchdog gets no WATCHDOG=1, and both recover afterwards."""
    sock_path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(0.05)
    d = bh.Daemon(["--model", files["model"], "--input", files["wav"], "--input-loop",
                   "--set", "debug_pause_worker_seconds=4", "--set", "max_lag_seconds=1"], tmp=tmp_path)
    d.env.update({"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "500000"})
    dogs, unhealthy = [], []
    with d:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 6.5:
            try:
                if b"WATCHDOG=1" in s.recv(4096):
                    dogs.append(time.monotonic() - t0)
            except socket.timeout:
                pass
            status, _, h = d.get("/api/v1/health")
            if status == 503:
                unhealthy.append((time.monotonic() - t0, h["reasons"]))
        final = d.get("/api/v1/health")
    s.close()
    assert unhealthy, "health never noticed the stalled worker"
    assert any("worker" in " ".join(r) for _, r in unhealthy), unhealthy
    assert not any(1.0 < t < 3.5 for t in dogs), "watchdog fed while stalled: %s" % dogs
    assert any(t > 4.5 for t in dogs), "watchdog not fed after the stall: %s" % dogs
    assert final[0] == 200, final
    assert "not feeding the watchdog" in d.output()


# ---- disk full -----------------------------------------------------------------------------

@pytest.fixture
def tiny_fs(tmp_path):
    """A 2 MiB tmpfs (root only); skipped where mounting is not allowed."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.decode().strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def fill(path):
    """Fills the file system holding path; returns the filler file."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    try:  # the last few blocks too
        with open(filler, "ab") as f:
            while True:
                f.write(b"\0" * 512)
                f.flush()
    except OSError:
        pass
    return filler


@needs_audio
def test_disk_full_under_detections_and_clips(station_model, tiny_fs):
    state = str(tiny_fs / "state")
    d = sh.Daemon(station_model, state, *DETECT, "clips=true", "clips_min_free_percent=0", "clips_max_mb=0.5",
                  log=str(tiny_fs.parent / "full.log"))
    try:
        d.wait_for(lambda: d.json("/api/v1/detections")["total"] >= 1, what="a first detection")
        filler = fill(str(tiny_fs))
        before = d.json("/api/v1/detections")["total"]
        # the disk stays full for a while: writes fail and are counted, nothing crashes
        def failing():
            fam = sh.parse_prometheus(d.request("/metrics")[2].decode())
            errs = sh.metric(fam, "birdsong_db_errors_total") or 0
            skipped = sh.metric(fam, "birdsong_clips_skipped_total") or 0
            return errs + skipped > 0
        d.wait_for(failing, timeout=20, what="failed writes to show in /metrics")
        st, _, body = d.request("/api/v1/health")
        assert st == 503 and b"detections are being lost" in body, (st, body)  # health must not lie
        assert d.proc.poll() is None
        assert d.status("/api/v1/predictions/latest") == 200
        assert d.status("/api/v1/detections") == 200
        os.unlink(filler)  # room again: detections are stored again
        d.wait_for(lambda: d.json("/api/v1/detections")["total"] > before + 1, timeout=20,
                   what="detections stored after the disk has room again")
        d.wait_for(lambda: d.status("/api/v1/health") == 200, timeout=20, what="health ok after the disk has room")
    finally:
        rc = d.stop()
    assert rc == 0, d.read_log()
    db = sqlite3.connect(os.path.join(state, "detections.db"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


# ---- database locked or damaged ------------------------------------------------------------

@needs_audio
def test_database_locked_by_another_process(station_model, tmp_path):
    state = str(tmp_path / "state")
    d = sh.Daemon(station_model, state, *DETECT)
    try:
        d.wait_for(lambda: d.json("/api/v1/detections")["total"] >= 1, what="a first detection")
        db = sqlite3.connect(os.path.join(state, "detections.db"), timeout=1, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        t0 = time.time()
        while time.time() - t0 < 3:  # readers and the API keep answering while it is held
            assert d.status("/api/v1/predictions/latest") == 200
            assert d.status("/api/v1/health") in (200, 503)
            time.sleep(0.2)
        db.execute("ROLLBACK")
        db.close()
        total = d.json("/api/v1/detections")["total"]
        d.wait_for(lambda: d.json("/api/v1/detections")["total"] > total, timeout=20,
                   what="writes to resume after the lock")
        assert d.proc.poll() is None
    finally:
        assert d.stop() == 0


@needs_audio
def test_damaged_database_is_refused_clearly_or_survived(station_model, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "detections.db").write_bytes(b"SQLite format 3\0" + os.urandom(8192))
    args = [sh.DAEMON, "-m", station_model, "-i", sh.AUDIO, "--input-loop", "-l", "127.0.0.1:%d" % sh.free_port(),
            "--state-dir", str(state)]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=5)
        # refused at start: exit 2, naming the file
        assert p.returncode == 2, (p.returncode, out)
        assert b"detections.db" in out, out
    except subprocess.TimeoutExpired:
        # or running: it must then answer and report the store's trouble, not crash
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=10)
        assert p.returncode == 0, out
    # a truncated database (power loss mid-copy) likewise
    (state / "detections.db").write_bytes(b"")
    (state / "detections.db-wal").write_bytes(os.urandom(4096))
    d = None
    try:
        d = sh.Daemon(station_model, str(state), *DETECT)
        d.wait_for(lambda: d.json("/api/v1/detections")["total"] >= 1, what="detections in a fresh database")
    except RuntimeError as e:
        assert "detections.db" in str(e), e
    finally:
        if d:
            assert d.stop() == 0


# ---- the model file replaced while a reload reads it --------------------------------------

def test_model_rewritten_during_sighup_reloads(files, tmp_path):
    """A writer rewrites the model in small chunks while SIGHUPs arrive: each reload either
    takes a complete model or is refused with a reason; the daemon keeps serving."""
    path = tmp_path / "live.bsm"
    good = open(files["model"], "rb").read()
    other = open(bh.make_model(tmp_path / "other.bsm", ["alpha", "beta", "gamma"], seed=7), "rb").read()
    path.write_bytes(good)
    d = bh.Daemon(["--model", str(path), "--input", files["wav"], "--input-loop", "--input-speed", "4"], tmp=tmp_path)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            data = (good, other)[i % 2]
            with open(path, "wb") as f:  # rewritten in place, as a careless copy would
                for k in range(0, len(data), 4096):
                    f.write(data[k:k + 4096])
                    f.flush()
                    time.sleep(0.001)
            i += 1

    with d:
        d.wait_for(lambda: d.latest_seq() >= 1, what="a first window")
        t = threading.Thread(target=writer)
        t.start()
        try:
            for _ in range(40):
                d.signal(signal.SIGHUP)
                time.sleep(0.05)
                assert d.get("/api/v1/predictions/latest")[0] == 200
        finally:
            stop.set()
            t.join()
        path.write_bytes(good)
        d.signal(signal.SIGHUP)
        time.sleep(0.5)
        r = d.json("/api/v1/status")["model"]["reload"]
        assert r["succeeded"] + r["failed"] >= 10, r
        assert r["last_error"] is None, r
        assert d.get("/api/v1/health")[0] == 200
    assert d.proc.returncode == 0


# ---- SIGKILL during writes ------------------------------------------------------------------

@needs_audio
def test_repeated_sigkill_during_writes_keeps_every_committed_row(station_model, tmp_path):
    state = str(tmp_path / "state")
    seen = {}
    for round_ in range(4):
        d = sh.Daemon(station_model, state, *DETECT, "clips=true", speed=8.0)
        try:
            n0 = d.json("/api/v1/detections?limit=1000")["total"]
            d.wait_for(lambda: d.json("/api/v1/detections")["total"] >= n0 + 2, what="new detections")
            for x in d.json("/api/v1/detections?limit=1000")["detections"]:
                seen[x["id"]] = x
            time.sleep(0.05 * round_)  # kill at different moments of the write cycle
        finally:
            d.kill()
        db = sqlite3.connect(os.path.join(state, "detections.db"))
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = {r[0] for r in db.execute("SELECT id FROM detections")}
        db.close()
        missing = set(seen) - ids
        assert not missing, "committed rows lost after kill -9 (round %d): %s" % (round_, sorted(missing))


# ---- clock jumps ---------------------------------------------------------------------------

CLOCKSHIFT = os.path.join(bh.BUILD, "tools", "libclockshift.so")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists(CLOCKSHIFT), reason="build/tools/libclockshift.so not built")
@pytest.mark.skipif("ASAN_OPTIONS" in os.environ, reason="an LD_PRELOAD shim cannot come before the ASan runtime")
def test_wall_clock_jumps_forward_and_back(files, tmp_path):
    """The wall clock of the daemon jumps +2 h, then -2 h (tests/tools/clockshift.c, an
    LD_PRELOAD shim: CLOCK_REALTIME moves, CLOCK_MONOTONIC and kernel timeouts do not).
    Windows keep coming, health stays ok, the SSE stream keeps flowing, no thread spins
    (waits are measured on the monotonic clock), the API answers and SIGTERM still stops it."""
    shift = tmp_path / "shift"
    shift.write_text("0")
    d = bh.Daemon(["--model", files["model"], "--input", files["wav"], "--input-loop",
                   "--state-dir", str(tmp_path / "state"), "--set", "stream_heartbeat_seconds=0.5"],
                  env={"LD_PRELOAD": CLOCKSHIFT, "BS_CLOCK_SHIFT_FILE": str(shift)}, tmp=tmp_path)
    with d:
        d.wait_for(lambda: d.latest_seq() >= 2, what="windows")
        sse = socket.create_connection(("127.0.0.1", d.port), timeout=2)
        sse.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sse.recv(4096).startswith(b"HTTP/1.1 200")
        for step in ("7200", "-7200", "0"):
            shift.write_text(step)
            time.sleep(0.1)
            seq0, cpu0, t0 = d.latest_seq(), cpu_seconds(d.proc.pid), time.monotonic()
            got = 0
            while time.monotonic() - t0 < 3.0:
                assert d.get("/api/v1/health")[0] == 200, (step, d.get("/api/v1/health"))
                try:
                    got += len(sse.recv(65536))
                except socket.timeout:
                    pass
            cpu = cpu_seconds(d.proc.pid) - cpu0
            seq1 = d.latest_seq()
            assert seq1 - seq0 >= 4, "windows stalled after a clock step of %s s: %d -> %d" % (step, seq0, seq1)
            assert got > 0, "the stream went quiet after a clock step of %s s" % step
            assert cpu < 1.5, "%.2f s CPU in 3 s after a clock step of %s s (a spinning wait?)" % (cpu, step)
            assert d.get("/api/v1/detections")[0] == 200
        sse.close()
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        d.proc.wait(5)
        assert time.monotonic() - t0 < 2.5
    assert d.proc.returncode == 0, d.output()[-2000:]
