"""birdsongd end to end, on the real binary: capture through PortAudio from the project's ALSA
test device, the HTTP API, signals, configuration errors, device failures and ring overflow."""
import http.client
import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from birdsongd_helpers import (DAEMON, check_schema, MAKE_MODEL, PLUGIN, TRAINER, Daemon, alsa_config,
                               make_model, write_wav)

pytestmark = pytest.mark.skipif(not (os.path.exists(DAEMON) and os.path.exists(MAKE_MODEL)),
                                reason="build/birdsongd or build/tools/make_test_model not built")

LABELS = ["alpha", "beta", "gamma"]
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("birdsongd")
    model = make_model(d / "model.bsm", LABELS)
    wav = d / "signal.wav"
    samples = write_wav(wav, seconds=4.0)
    return {"dir": d, "model": model, "wav": str(wav), "samples": samples}


def iso_ms(s):
    assert ISO_MS.match(s), s
    t = time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")
    return (time.mktime(t) - time.timezone) * 1000 + int(s[20:23])


def file_daemon(files, tmp_path, *extra, speed="4"):
    return Daemon(["--model", files["model"], "--input", files["wav"], "--input-loop",
                   "--input-speed", speed] + list(extra), tmp=tmp_path)


# ---- capture ---------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists(PLUGIN), reason="ALSA test plugin not built")
def test_portaudio_capture_gives_the_file_samples_and_features(files, tmp_path):
    """The ALSA ioplug device plays the WAV; the windows the worker analyses hold exactly the
    file's samples, and their log-mel equals `birdsong features` on the same span."""
    conf = alsa_config(tmp_path / "asound.conf", {"default": {"file": files["wav"]}})
    dump = tmp_path / "windows.bin"
    d = Daemon(["--model", files["model"], "--set", "debug_dump_path=%s" % dump],
               env={"ALSA_CONFIG_PATH": conf}, tmp=tmp_path)
    with d:
        d.wait_for(lambda: d.latest_seq() >= 5, timeout=10, what="5 windows")
        audio = d.json("/api/v1/status")["audio"]
        assert audio["source"] == "device" and audio["device"] == "default"
        assert audio["sample_rate"] == 22050 and audio["dropped_samples"] == 0
    seg, n_feat = 22050, 128 * 44
    rec = 8 + 4 * seg + 4 * n_feat
    raw = dump.read_bytes()
    n = len(raw) // rec
    assert n >= 5
    x = files["samples"]
    feats = {}
    for k in range(n):
        b = raw[k * rec:(k + 1) * rec]
        start = int(np.frombuffer(b[:8], "<u8")[0])
        assert start == k * 11025, "window %d starts at %d, expected hop 0.5 s" % (k, start)
        if start + seg > len(x):
            break
        win = np.frombuffer(b[8:8 + 4 * seg], "<f4")
        np.testing.assert_array_equal(win, x[start:start + seg])
        feats[k] = np.frombuffer(b[8 + 4 * seg:], "<f4").reshape(128, 44)
    assert len(feats) >= 5
    if not os.path.exists(TRAINER):
        pytest.skip("build/birdsong not built: feature comparison skipped")
    out = tmp_path / "ref.npy"
    subprocess.run([TRAINER, "features", files["wav"], "-o", str(out), "--segment-hop", "0.5", "-q"],
                   check=True)
    ref = np.load(out)
    for k, f in feats.items():
        np.testing.assert_allclose(f, ref[k], atol=1e-4, err_msg="window %d" % k)


@pytest.mark.skipif(not os.path.exists(PLUGIN), reason="ALSA test plugin not built")
def test_device_that_fails_is_retried_with_backoff_and_reported(files, tmp_path):
    conf = alsa_config(tmp_path / "asound.conf", {
        "default": {"file": files["wav"], "loop": True},
        "broken": {"file": files["wav"], "fail": "hw_params"}})
    d = Daemon(["--model", files["model"], "--device", "broken"], env={"ALSA_CONFIG_PATH": conf},
               tmp=tmp_path)
    with d:
        d.wait_for(lambda: d.json("/api/v1/status")["audio"]["failures"] >= 3, timeout=8,
                   what="three failed opens")
        st = d.json("/api/v1/status")["audio"]
        assert st["state"] == "reopening" and "broken" in st["last_error"]
        status, _, h = d.get("/api/v1/health")
        assert status == 503 and h["status"] == "unhealthy"
        assert any("broken" in r for r in h["reasons"]), h
        assert d.proc.poll() is None
    assert d.proc.returncode == 0


@pytest.mark.skipif(not os.path.exists(PLUGIN), reason="ALSA test plugin not built")
def test_device_that_stalls_is_reopened(files, tmp_path):
    conf = alsa_config(tmp_path / "asound.conf", {
        "default": {"file": files["wav"], "loop": True, "stall_after": 1.0}})
    d = Daemon(["--model", files["model"], "--set", "device_stall_seconds=0.5"],
               env={"ALSA_CONFIG_PATH": conf}, tmp=tmp_path)
    with d:
        d.wait_for(lambda: d.json("/api/v1/status")["audio"]["opens"] >= 2, timeout=8,
                   what="the stalled device to be reopened")
        assert "no samples" in d.json("/api/v1/status")["audio"]["last_error"]


def test_unknown_device_name_keeps_the_daemon_up(files, tmp_path):
    d = Daemon(["--model", files["model"], "--device", "no-such-card-xyz"],
               env={"ALSA_CONFIG_PATH": alsa_config(tmp_path / "a.conf", {"default": {"file": files["wav"]}})},
               tmp=tmp_path)
    with d:
        d.wait_for(lambda: d.json("/api/v1/status")["audio"]["failures"] >= 2, what="failed opens")
        assert "no-such-card-xyz" in d.json("/api/v1/status")["audio"]["last_error"]
        assert d.get("/api/v1/health")[0] == 503


def test_ring_overflow_while_the_worker_is_paused_is_counted(files, tmp_path):
    # a 10 s ring (220500 samples at the file rate) filled at 40x real time
    d = file_daemon(files, tmp_path, "--set", "debug_pause_worker_seconds=2.5",
                    "--set", "ring_seconds=10", speed="40")
    with d:
        status, _, h = d.get("/api/v1/health")
        assert status == 503 and any("paused" in r for r in h["reasons"])
        d.wait_for(lambda: d.json("/api/v1/status")["audio"]["dropped_samples"] > 0, timeout=5,
                   what="dropped samples")
        d.wait_for(lambda: d.latest_seq() >= 3, timeout=10, what="windows after the pause")
        st = d.json("/api/v1/status")
        assert st["audio"]["overruns"] >= 1
        assert st["audio"]["frames_captured"] == st["audio"]["samples_in_ring_total"] + st["audio"]["dropped_samples"]
        # the worker restarts its window (and clock) when it reaches the gap
        d.wait_for(lambda: d.json("/api/v1/status")["worker"]["restarts"] >= 1, timeout=10,
                   what="the window restart at the gap")
        assert d.get("/api/v1/health")[2]["dropped_samples"] >= st["audio"]["dropped_samples"] > 0
        # resuming with a full ring, the worker is 10 s behind: counted and logged
        assert d.json("/api/v1/status")["worker"]["behind_events"] >= 1
        assert "falling behind real time" in d.output()
    assert d.proc.returncode == 0


# ---- HTTP API --------------------------------------------------------------------------

def test_api_schemas_etag_paging_and_errors(files, tmp_path):
    d = file_daemon(files, tmp_path)
    with d:
        d.wait_for(lambda: d.latest_seq() >= 8, timeout=10, what="8 windows")
        status, _, h = d.get("/api/v1/health")
        assert status == 200 and h["status"] == "ok" and h["reasons"] == []
        assert h["capture_state"] == "running" and h["latest_seq"] >= 8

        st = d.json("/api/v1/status")
        assert st["model"]["labels"] == LABELS
        assert re.match(r"^[0-9a-f]{8}$", st["model"]["checksum"])
        assert st["model"]["training_date"] == "2026-01-01T00:00:00Z"
        assert st["audio"]["source"] == "file" and st["audio"]["sample_rate"] == 22050
        w = st["worker"]
        inf = w["inference_ms"]
        assert w["windows"] >= 8 and 0 < inf["mean"] <= inf["max"] + 1e-6 and 0 < inf["p95"] <= inf["max"] + 1e-6
        assert w["real_time_factor"] > 0 and st["uptime_seconds"] > 0 and st["version"]

        sp = d.json("/api/v1/species")
        assert [s["species"] for s in sp["species"]] == LABELS
        assert all(s["threshold"] == 0.5 for s in sp["species"])

        status, hdrs, lat = d.get("/api/v1/predictions/latest")
        assert status == 200
        assert [p["species"] for p in lat["probabilities"]] == LABELS
        assert all(0 <= p["probability"] <= 1 for p in lat["probabilities"])
        assert iso_ms(lat["end"]) - iso_ms(lat["start"]) == 1000
        assert lat["inference_ms"] > 0
        etag = hdrs["ETag"]
        assert etag == '"%d"' % lat["seq"]
        status, hdrs304, body = d.request("GET", "/api/v1/predictions/latest", {"If-None-Match": etag})
        if status == 200:  # a new window landed in between: its ETag must differ
            assert hdrs304["ETag"] != etag
        else:
            assert status == 304 and body == b"" and hdrs304["ETag"] == etag

        _, _, top = d.get("/api/v1/predictions/latest?top=2")
        probs = [p["probability"] for p in top["probabilities"]]
        assert len(probs) == 2 and probs[0] >= probs[1]
        status, hdrs3, top3 = d.get("/api/v1/predictions/latest?top=3")
        p3 = [p["probability"] for p in top3["probabilities"]]
        assert p3 == sorted(p3, reverse=True) and len(p3) == 3
        assert hdrs3["ETag"] == '"%d-top3"' % top3["seq"]
        full = d.json("/api/v1/predictions?since=%d&limit=1" % (top["seq"] - 1))["predictions"][0]
        assert full["seq"] == top["seq"]
        assert max(p["probability"] for p in full["probabilities"]) == probs[0]

        # paging: since/limit in small pages gives every seq once, in order, no gaps
        seqs, since = [], 0
        for _ in range(20):
            page = d.json("/api/v1/predictions?since=%d&limit=3" % since)
            assert page["count"] == len(page["predictions"]) <= 3
            if not page["predictions"]:
                break
            seqs += [p["seq"] for p in page["predictions"]]
            since = seqs[-1]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 8
        allp = d.json("/api/v1/predictions?since=0&limit=1000")["predictions"]
        starts = [iso_ms(p["start"]) for p in allp]
        assert all(b - a == 500 for a, b in zip(starts, starts[1:])), "windows every hop (0.5 s of audio)"

        # errors
        for path, code in [("/api/v1/nope", 404), ("/nope", 404),
                           ("/api/v1/predictions/latest?top=abc", 400),
                           ("/api/v1/predictions/latest?top=-1", 400),
                           ("/api/v1/predictions/latest?top=0", 400),
                           ("/api/v1/predictions/latest?top=4", 400),
                           ("/api/v1/predictions/latest?top=1&top=2", 400),
                           ("/api/v1/predictions/latest?top", 400),
                           ("/api/v1/predictions/latest?top=", 400),
                           ("/api/v1/predictions/latest?top=%201", 400),
                           ("/api/v1/predictions/latest?top=1.0", 400),
                           ("/api/v1/predictions/latest?tpo=1", 400),
                           ("/api/v1/predictions?since=x", 400),
                           ("/api/v1/predictions?since=-5", 400),
                           ("/api/v1/predictions?limit=0", 400),
                           ("/api/v1/predictions?limit=100000", 400),
                           ("/api/v1/predictions?since=99999999999999999999999", 400),
                           ("/api/v1/health?x=1", 400)]:
            status, hdrs, j = d.get(path)
            assert status == code, (path, status, j)
            assert hdrs["Content-Type"] == "application/json" and j["error"], (path, j)
        status, hdrs, body = d.request("POST", "/api/v1/predictions/latest")
        assert status == 405 and "GET" in hdrs["Allow"] and b'"error"' in body
        status, hdrs, body = d.request("DELETE", "/api/v1/status")
        assert status == 405

        # keep-alive: several requests on one connection
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=5)
        socks = set()
        for _ in range(5):
            c.request("GET", "/api/v1/predictions/latest")
            r = c.getresponse()
            r.read()
            assert r.status == 200 and r.getheader("Connection", "").lower() != "close"
            socks.add(id(c.sock))
        c.close()
        assert len(socks) == 1


def test_latest_before_the_first_window_is_503_json(files, tmp_path):
    d = file_daemon(files, tmp_path, "--set", "debug_pause_worker_seconds=5")
    with d:
        status, _, j = d.get("/api/v1/predictions/latest")
        assert status == 503 and "no prediction" in j["error"]
        assert d.json("/api/v1/predictions")["count"] == 0


def test_file_at_another_rate_is_resampled(files, tmp_path):
    wav32 = tmp_path / "s32.wav"
    write_wav(wav32, seconds=2.0, sr=32000)
    d = Daemon(["--model", files["model"], "--input", str(wav32), "--input-loop", "--input-speed", "4"],
               tmp=tmp_path)
    with d:
        d.wait_for(lambda: d.latest_seq() >= 4, timeout=10, what="windows from a 32 kHz file")
        assert d.json("/api/v1/status")["audio"]["sample_rate"] == 32000


# ---- signals ---------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["file", "device"])
def test_sigterm_exits_0_within_2_seconds(files, tmp_path, source):
    if source == "file":
        d = file_daemon(files, tmp_path)
    else:
        if not os.path.exists(PLUGIN):
            pytest.skip("ALSA test plugin not built")
        conf = alsa_config(tmp_path / "asound.conf", {"default": {"file": files["wav"], "loop": True}})
        d = Daemon(["--model", files["model"]], env={"ALSA_CONFIG_PATH": conf}, tmp=tmp_path)
    d.start()
    d.wait_for(lambda: d.latest_seq() >= 2, what="windows")
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc = d.proc.wait(5)
    elapsed = time.monotonic() - t0
    d.stop()
    assert rc == 0 and elapsed < 2.0, (rc, elapsed, d.output()[-2000:])


def test_sigint_exits_0(files, tmp_path):
    d = file_daemon(files, tmp_path)
    d.start()
    d.signal(signal.SIGINT)
    assert d.proc.wait(5) == 0
    d.stop()


def test_sighup_reloads_a_good_model_and_refuses_a_damaged_one(files, tmp_path):
    path = tmp_path / "served.bsm"
    shutil.copy(files["model"], path)
    d = file_daemon(files, tmp_path)
    d.args[d.args.index(files["model"])] = str(path)
    with d:
        d.wait_for(lambda: d.latest_seq() >= 2, what="windows")
        old_sum = d.json("/api/v1/status")["model"]["checksum"]
        make_model(tmp_path / "new.bsm", ["xi", "omicron"], seed=7)
        os.replace(tmp_path / "new.bsm", path)
        d.signal(signal.SIGHUP)
        d.wait_for(lambda: [s["species"] for s in d.json("/api/v1/species")["species"]] == ["xi", "omicron"],
                   what="the new labels")
        st = d.json("/api/v1/status")["model"]
        assert st["labels"] == ["xi", "omicron"] and st["checksum"] != old_sum
        assert st["reload"]["succeeded"] == 1 and st["reload"]["last_error"] is None
        seq = d.wait_for(lambda: d.latest_seq(), what="a window of the new model")
        d.wait_for(lambda: [p["species"] for p in d.json("/api/v1/predictions/latest")["probabilities"]]
                   == ["xi", "omicron"], what="predictions of the new model")

        data = bytearray(path.read_bytes())
        for i in range(len(data) // 2, len(data) // 2 + 64):
            data[i] ^= 0x5A
        path.write_bytes(bytes(data))
        d.signal(signal.SIGHUP)
        d.wait_for(lambda: d.json("/api/v1/status")["model"]["reload"]["failed"] == 1, what="a refused reload")
        st = d.json("/api/v1/status")["model"]
        assert str(path) in st["reload"]["last_error"]
        assert st["labels"] == ["xi", "omicron"] and st["checksum"] != old_sum
        d.wait_for(lambda: d.latest_seq() > seq + 2, what="windows after the refused reload")
        assert "reload refused" in d.output()
    assert d.proc.returncode == 0


# ---- configuration ---------------------------------------------------------------------

def run(args, **kw):
    return subprocess.run([DAEMON] + args, capture_output=True, text=True, timeout=20, **kw)


def test_check_config_accepts_the_shipped_file_with_a_model(files):
    conf = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "birdsongd.conf")
    r = run(["--config", conf, "--model", files["model"], "--check-config"])
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout and "3 species" in r.stdout


def test_config_errors_name_file_line_and_directive_and_exit_2(files, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("# a comment\nmodel = %s\n\nhop_seconds = soon\n" % files["model"])
    r = run(["--config", str(conf), "--check-config"])
    assert r.returncode == 2
    assert "%s:4: directive 'hop_seconds'" % conf in r.stderr and "soon" in r.stderr, r.stderr

    conf.write_text("model = %s\nlisten_port = 80\n" % files["model"])
    r = run(["--config", str(conf)])
    assert r.returncode == 2 and "%s:2: directive 'listen_port': unknown" % conf in r.stderr, r.stderr

    conf.write_text("model = %s\nnot a directive\n" % files["model"])
    r = run(["--config", str(conf)])
    assert r.returncode == 2 and "%s:2: syntax error" % conf in r.stderr, r.stderr

    r = run(["--config", str(tmp_path / "missing.conf")])
    assert r.returncode == 2 and "missing.conf" in r.stderr

    r = run(["--model", str(tmp_path / "nope.bsm"), "--check-config"])
    assert r.returncode == 2 and "directive 'model'" in r.stderr and "nope.bsm" in r.stderr, r.stderr

    r = run(["--model", files["model"], "--input-speed", "0", "--check-config"])
    assert r.returncode == 2 and "input_speed" in r.stderr

    r = run(["--model", files["model"], "--listen", "example.org:80", "--check-config"])
    assert r.returncode == 2 and "listen" in r.stderr

    r = run(["--model", files["model"], "--input", str(tmp_path / "none.wav"), "--check-config"])
    assert r.returncode == 2 and "none.wav" in r.stderr

    r = run(["--bogus-flag"])
    assert r.returncode == 2


def test_flags_override_the_config_file(files, tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("model = /nonexistent.bsm\nhop_seconds = 0.25\n")
    r = run(["--config", str(conf), "--model", files["model"], "--check-config"])
    assert r.returncode == 0, r.stderr


def test_address_in_use_fails_clearly(files, tmp_path):
    d = file_daemon(files, tmp_path)
    with d:
        r = run(["--model", files["model"], "--input", files["wav"], "--listen", "127.0.0.1:%d" % d.port])
        assert r.returncode == 1 and "127.0.0.1:%d" % d.port in r.stderr


def test_help_config_lists_every_directive_of_the_shipped_file():
    r = run(["--help-config"])
    names = re.findall(r"^(\w+) = ", r.stdout, re.M)
    conf = open(os.path.join(os.path.dirname(__file__), "..", "..", "etc", "birdsongd.conf")).read()
    assert names and all(re.search(r"^%s = " % n, conf, re.M) for n in names)


# ---- systemd notifications ---------------------------------------------------------------

def test_sd_notify_ready_status_and_watchdog_fed_by_worker_progress(files, tmp_path):
    """READY=1 and STATUS= reach $NOTIFY_SOCKET; WATCHDOG=1 follows the worker's progress:
    none while the worker stalls (debug_pause_worker_seconds), then again."""
    import socket as so
    sock_path = str(tmp_path / "notify.sock")
    s = so.socket(so.AF_UNIX, so.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(0.1)
    d = file_daemon(files, tmp_path, "--set", "debug_pause_worker_seconds=3")
    d.env.update({"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"})
    msgs = []
    with d:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5.0:
            try:
                msgs.append((time.monotonic() - t0, s.recv(4096).decode()))
            except so.timeout:
                pass
    s.close()
    text = [m for _, m in msgs]
    assert any("READY=1" in m for m in text), text
    assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in text), text
    dogs = [t for t, m in msgs if "WATCHDOG=1" in m]
    assert not any(t < 2.0 for t in dogs), "fed while the worker was stalled: %s" % dogs
    assert any(t > 3.2 for t in dogs), "not fed after the worker resumed: %s" % dogs


# ---- the documented API matches the served one ------------------------------------------

def test_responses_match_docs_openapi_yaml(files, tmp_path):
    import yaml  # python3-yaml, installed by scripts/install-deps.sh
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    spec = yaml.safe_load(open(os.path.join(root, "docs", "openapi.yaml")))
    api_md = open(os.path.join(root, "docs", "api.md")).read()
    d = file_daemon(files, tmp_path)
    with d:
        d.wait_for(lambda: d.latest_seq() >= 2, what="windows")
        for path, item in spec["paths"].items():
            if "get" not in item:  # POST /api/v1/reload: tests/integration/test_hostile_http.py
                assert "POST %s" % path in api_md, "docs/api.md does not document %s" % path
                continue
            assert "GET %s" % path in api_md, "docs/api.md does not document %s" % path
            ok_content = item["get"]["responses"].get("200", {}).get("content", {"application/json": None})
            if "{" in path or "application/json" not in ok_content:
                continue  # templated paths, the SSE stream, /metrics and the page: tests/integration/test_station.py
            status, _, body = d.get(path)
            assert str(status) in item["get"]["responses"], (path, status)
            schema = item["get"]["responses"][str(status)]["content"]["application/json"]["schema"]
            check_schema(body, schema, spec, path)
        status, _, body = d.get("/api/v1/predictions/latest?top=zz")
        check_schema(body, spec["components"]["schemas"]["Error"], spec, "error")


@pytest.mark.skipif(not os.path.exists(PLUGIN), reason="ALSA test plugin not built")
def test_list_devices_and_choose_by_index_or_partial_name(files, tmp_path):
    conf = alsa_config(tmp_path / "asound.conf", {
        "default": {"file": files["wav"], "loop": True},
        "fieldmic": {"file": files["wav"], "loop": True}})
    env = dict(os.environ, ALSA_CONFIG_PATH=conf)
    r = subprocess.run([DAEMON, "--list-devices"], capture_output=True, text=True, env=env, timeout=20)
    assert r.returncode == 0
    rows = {line.split()[-2]: line.split() for line in r.stdout.splitlines()[1:]}
    assert rows["default"][1] == "yes" and "fieldmic" in rows, r.stdout
    index = rows["fieldmic"][0]
    for dev in (index, "FIELDm"):
        d = Daemon(["--model", files["model"], "--device", dev], env={"ALSA_CONFIG_PATH": conf}, tmp=tmp_path)
        with d:
            d.wait_for(lambda: d.json("/api/v1/status")["audio"]["state"] == "running", what="running")
            assert d.json("/api/v1/status")["audio"]["device"] == "fieldmic"


def test_input_file_that_ends_is_reported_and_the_daemon_stays(files, tmp_path):
    short = tmp_path / "short.wav"
    write_wav(short, seconds=1.5)
    d = Daemon(["--model", files["model"], "--input", str(short), "--input-speed", "10"], tmp=tmp_path)
    with d:
        d.wait_for(lambda: d.json("/api/v1/status")["audio"]["state"] == "ended", what="the end of the file")
        status, _, h = d.get("/api/v1/health")
        assert status == 503 and any("ended" in r for r in h["reasons"])
        assert d.json("/api/v1/status")["audio"]["frames_captured"] == int(1.5 * 22050)
        d.wait_for(lambda: d.latest_seq() == 2, what="the windows at 0 and 0.5 s of a 1.5 s file")
        time.sleep(0.3)
        assert d.latest_seq() == 2, "1.5 s gives windows at 0 and 0.5 s only"
    assert d.proc.returncode == 0


# ---- sound level ---------------------------------------------------------------------------

def _write_pcm(path, pcm, sr=22050):
    import wave
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return str(path)


def test_sound_level_in_predictions_status_and_metrics(files, tmp_path):
    """Each window's RMS and peak in dBFS, against the same figures computed with numpy over
    every 1 s window of the file (the loop makes any start possible)."""
    from station_helpers import metric, parse_prometheus
    x = files["samples"].astype(np.float64)
    seg = 22050
    rms = [20 * np.log10(np.sqrt(np.mean(np.roll(x, -k)[:seg] ** 2))) for k in range(0, x.size, 2205)]
    peak = [20 * np.log10(np.max(np.abs(np.roll(x, -k)[:seg]))) for k in range(0, x.size, 2205)]
    with file_daemon(files, tmp_path) as d:
        d.wait_for(lambda: d.latest_seq() >= 4, what="windows")
        page = d.json("/api/v1/predictions?since=0&limit=20")["predictions"]
        for p in page:
            assert min(rms) - 0.05 <= p["rms_dbfs"] <= max(rms) + 0.05, (p, min(rms), max(rms))
            assert min(peak) - 0.05 <= p["peak_dbfs"] <= max(peak) + 0.05, (p, min(peak), max(peak))
            assert p["peak_dbfs"] > p["rms_dbfs"]
            assert round(p["rms_dbfs"], 2) == p["rms_dbfs"]
        lv = d.json("/api/v1/status")["worker"]["sound_level"]
        assert lv["silent_seconds"] == 0 and lv["clipping_seconds"] == 0
        assert min(rms) - 0.05 <= lv["rms_dbfs"] <= max(rms) + 0.05, lv
        _, _, body = d.request("GET", "/metrics")
        fams = parse_prometheus(body.decode())
        assert min(rms) - 0.05 <= metric(fams, "birdsong_sound_rms_dbfs") <= max(rms) + 0.05
        assert min(peak) - 0.05 <= metric(fams, "birdsong_sound_peak_dbfs") <= max(peak) + 0.05
        assert metric(fams, "birdsong_sound_silent_seconds") == 0
        assert d.get("/api/v1/health")[0] == 200


@pytest.mark.parametrize("kind", ["silent", "clipping"])
def test_silence_or_clipping_longer_than_level_alarm_seconds_is_unhealthy(files, tmp_path, kind):
    n = 22050 * 3
    if kind == "silent":
        pcm = np.zeros(n)
    else:  # a square wave at full scale: every window's peak is 32767/32768
        pcm = np.where((np.arange(n) // 50) % 2, 32767, -32768)
    wav = _write_pcm(tmp_path / (kind + ".wav"), pcm)
    d = Daemon(["--model", files["model"], "--input", wav, "--input-loop", "--input-speed", "4",
                "-s", "level_alarm_seconds=2"], tmp=tmp_path)
    with d:
        p = d.wait_for(lambda: d.get("/api/v1/predictions/latest")[2] if d.latest_seq() >= 1 else None,
                       what="a window")
        if kind == "silent":
            assert p["rms_dbfs"] == -150 and p["peak_dbfs"] == -150, p
        else:
            assert p["peak_dbfs"] >= -0.01 and p["rms_dbfs"] > -0.1, p
        status, _, h = d.wait_for(lambda: (lambda r: r if r[0] == 503 else None)(d.get("/api/v1/health")),
                                  timeout=15, what="health 503")
        words = "digital silence" if kind == "silent" else "clipping"
        assert any(words in r and "level_alarm_seconds 2.0" in r for r in h["reasons"]), h
        lv = d.json("/api/v1/status")["worker"]["sound_level"]
        assert lv[kind + "_seconds"] >= 2, lv
