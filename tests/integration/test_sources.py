"""birdsongd with several sources in one daemon: [source NAME] sections and --source, one
model shared by every source, per-source results and endpoints, the first source behind the
single-source endpoints, and each source's windows equal to `birdsong features` on its file."""
import json
import os
import re
import shutil
import subprocess
import time

import numpy as np
import pytest

from birdsongd_helpers import DAEMON, MAKE_MODEL, TRAINER, Daemon, check_schema, make_model, write_wav

pytestmark = pytest.mark.skipif(not (os.path.exists(DAEMON) and os.path.exists(MAKE_MODEL)),
                                reason="build/birdsongd or build/tools/make_test_model not built")

LABELS = ["alpha", "beta", "gamma"]
SEG, N_FEAT = 22050, 128 * 44                # the test model: 1 s at 22050 Hz, 128 x 44 log-mel


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("sources")
    model = make_model(d / "model.bsm", LABELS)
    a = d / "a22k.wav"
    b = d / "b32k.wav"
    xa = write_wav(a, seconds=4.0, sr=22050, seed=1)
    write_wav(b, seconds=4.0, sr=32000, seed=2)
    return {"model": model, "a": str(a), "b": str(b), "xa": xa}


def read_dump(path):
    """(start, samples, features) of every window the worker dumped."""
    rec = 8 + 4 * SEG + 4 * N_FEAT
    raw = path.read_bytes()
    out = []
    for k in range(len(raw) // rec):
        b = raw[k * rec:(k + 1) * rec]
        start = int(np.frombuffer(b[:8], "<u8")[0])
        win = np.frombuffer(b[8:8 + 4 * SEG], "<f4")
        feat = np.frombuffer(b[8 + 4 * SEG:], "<f4").reshape(128, 44)
        out.append((start, win, feat))
    return out


def reference_features(wav, tmp_path, name):
    out = tmp_path / (name + ".npy")
    subprocess.run([TRAINER, "features", wav, "-o", str(out), "--segment-hop", "0.5", "-q"], check=True)
    return np.load(out)


def test_two_sources_at_different_rates_each_match_birdsong_features(files, tmp_path):
    """A 22050 Hz file as the top-level input and a 32 kHz file as [source b] (resampled by
    the worker), at once: each source's windows are its own file's, hop 0.5 s, and their
    log-mel equals `birdsong features` on that file."""
    da, db = tmp_path / "a.bin", tmp_path / "b.bin"
    conf = tmp_path / "birdsongd.conf"
    conf.write_text("model = %s\ninput = %s\ninput_speed = 4\ndebug_dump_path = %s\n\n"
                    "[source b]\ninput = %s\ninput_speed = 4\ndebug_dump_path = %s\n"
                    % (files["model"], files["a"], da, files["b"], db))
    d = Daemon(["--config", str(conf)], tmp=tmp_path)
    with d:
        d.wait_for(lambda: all(s["latest_seq"] >= 5 for s in d.json("/api/v1/sources")["sources"]),
                   timeout=15, what="5 windows from each source")
        srcs = d.json("/api/v1/sources")["sources"]
        assert [s["name"] for s in srcs] == ["default", "b"]
        assert [s["kind"] for s in srcs] == ["file", "file"]
        assert srcs[0]["sample_rate"] == 22050 and srcs[1]["sample_rate"] == 32000
        assert all(s["dropped_samples"] == 0 and s["last_error"] is None for s in srcs)
        assert srcs[1]["input"] == files["b"]
    wa, wb = read_dump(da), read_dump(db)
    assert len(wa) >= 5 and len(wb) >= 5
    xa = files["xa"]
    for k, (start, win, _) in enumerate(wa):
        assert start == k * 11025
        if start + SEG <= len(xa):
            np.testing.assert_array_equal(win, xa[start:start + SEG], err_msg="source default, window %d" % k)
    for k, (start, _, _) in enumerate(wb):
        assert start == k * 11025, "source b: window %d starts at %d" % (k, start)
    if not os.path.exists(TRAINER):
        pytest.skip("build/birdsong not built: feature comparison skipped")
    for name, wins, wav in (("a", wa, files["a"]), ("b", wb, files["b"])):
        ref = reference_features(wav, tmp_path, name)
        n = min(len(wins), len(ref))
        assert n >= 5
        for k in range(n):
            np.testing.assert_allclose(wins[k][2], ref[k], atol=1e-4, err_msg="source %s, window %d" % (name, k))


def test_source_endpoints_and_the_first_source_behind_the_old_ones(files, tmp_path):
    d = Daemon(["--model", files["model"], "--input", files["a"], "--input-loop", "--input-speed", "4",
                "--source", "second=file:%s" % files["b"], "--set", "input_loop=true"], tmp=tmp_path)
    with d:
        d.wait_for(lambda: all(s["latest_seq"] >= 3 for s in d.json("/api/v1/sources")["sources"]),
                   timeout=20, what="3 windows from each source")
        one = d.json("/api/v1/sources/second")
        assert one["name"] == "second" and one["state"] == "running" and one["reconnects"] == 0
        latest = d.json("/api/v1/sources/second/predictions/latest?top=2")
        assert len(latest["probabilities"]) == 2
        page = d.json("/api/v1/sources/second/predictions?since=0&limit=2")
        assert page["count"] == 2 and page["predictions"][0]["seq"] == 1
        # the old endpoints are the first source's
        first = d.json("/api/v1/sources/default/predictions?since=0&limit=1000")
        old = d.json("/api/v1/predictions?since=0&limit=1000")
        assert [p["seq"] for p in old["predictions"]][:3] == [p["seq"] for p in first["predictions"]][:3]
        assert old["predictions"][0]["start"] == first["predictions"][0]["start"]
        assert {p["source"] for p in old["predictions"]} == {"default"}
        assert {p["source"] for p in page["predictions"]} == {"second"} and latest["source"] == "second"
        # /status: the first source's at the top, as before, and every source's under "sources"
        status = d.json("/api/v1/status")
        assert [x["name"] for x in status["sources"]] == ["default", "second"]
        assert status["audio"]["requested"] == status["sources"][0]["audio"]["requested"] == files["a"]
        assert status["sources"][1]["audio"]["requested"] == files["b"]
        assert status["sources"][1]["audio"]["sample_rate"] == 32000 and status["audio"]["sample_rate"] == 22050
        assert status["sources"][1]["results"]["latest_seq"] >= 3 and status["sources"][1]["worker"]["windows"] >= 3
        # /metrics: each unlabelled family that is the first source's has a twin for every source
        from station_helpers import metric, parse_prometheus
        fams = parse_prometheus(d.request("GET", "/metrics")[2].decode())
        twins = {"windows_processed_total": "source_windows_total", "worker_lag_seconds": "source_lag_seconds",
                 "sound_rms_dbfs": "source_sound_rms_dbfs", "sound_peak_dbfs": "source_sound_peak_dbfs",
                 "sound_silent_seconds": "source_sound_silent_seconds",
                 "sound_clipping_seconds": "source_sound_clipping_seconds",
                 "capture_overruns_total": "source_overruns_total",
                 "capture_dropped_samples_total": "source_dropped_samples_total",
                 "capture_device_overflows_total": "source_device_overflows_total",
                 "capture_failures_total": "source_failures_total"}
        for old_name, twin in twins.items():
            metric(fams, "birdsong_" + old_name)  # the old series stays
            for name in ("default", "second"):
                metric(fams, "birdsong_" + twin, source=name)
        assert metric(fams, "birdsong_source_windows_total", source="second") >= 3
        for path, status in (("/api/v1/sources/nope", 404), ("/api/v1/sources/second/other", 404),
                             ("/api/v1/sources/second/predictions/latest?since=1", 400),
                             ("/api/v1/sources/second?top=1", 400), ("/api/v1/sources/", 404)):
            assert d.get(path)[0] == status, path
        import yaml  # python3-yaml, installed by scripts/install-deps.sh
        spec = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "openapi.yaml")))
        for path, tpl in (("/api/v1/sources/second", "/api/v1/sources/{name}"),
                          ("/api/v1/sources/second/predictions/latest", "/api/v1/sources/{name}/predictions/latest"),
                          ("/api/v1/sources/second/predictions", "/api/v1/sources/{name}/predictions"),
                          ("/api/v1/sources/nope", "/api/v1/sources/{name}"), ("/api/v1/status", "/api/v1/status"),
                          ("/api/v1/detections/settings?source=second", "/api/v1/detections/settings"),
                          ("/api/v1/detections/settings?source=nope", "/api/v1/detections/settings")):
            status, _, body = d.get(path)
            schema = spec["paths"][tpl]["get"]["responses"][str(status)]["content"]["application/json"]["schema"]
            check_schema(body, schema, spec, path)


@pytest.mark.parametrize("args,needle", [
    (["--source", "bad name=x.wav"], "letters, digits"),
    (["--source", "noequals"], "NAME=SPEC"),
    (["--source", "cam=ftp://host/x"], "unknown URL scheme 'ftp'"),
    (["--source", "cam=rtsp:///x"], "no host"),
    (["--source", "a=device", "--source", "a=device"], "defined twice"),
    (["--source", "default=device"], "top-level"),
    (["--source", "f=file:/nonexistent.wav"], "/nonexistent.wav"),
])
def test_bad_sources_are_refused_with_a_clear_error(files, tmp_path, args, needle):
    r = subprocess.run([DAEMON, "--model", files["model"], "--check-config"] + args,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr, r.stderr


def test_source_sections_in_the_config_file(files, tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("model = %s\n[source x]\ninput = %s\nhop_seconds = 0.25\n[source y]\ninput = %s\n"
                    % (files["model"], files["a"], files["b"]))
    r = subprocess.run([DAEMON, "--config", str(conf), "--check-config"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    for body, needle in (("[source x]\nmodel = m.bsm\n", "cannot be set per source"),
                         ("[source x]\nhop_seconds = 0.25\n", "no 'input ='"),
                         ("[source]\ninput = a.wav\n", "[source NAME]"),
                         ("[source x]\ninput = \n", "empty source")):
        conf.write_text("model = %s\n%s" % (files["model"], body))
        r = subprocess.run([DAEMON, "--config", str(conf), "--check-config"], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 2 and needle in r.stderr, (body, r.stderr)


# ---- detections per source ----------------------------------------------------------------

def test_each_source_detects_with_its_own_settings_and_names_itself(tmp_path):
    """The soundscape as the default source (Parus_major always on) and again as [source
    yard] with its own thresholds (Sitta_europaea always on, Parus_major never): every
    detection says its source, ?source= filters the list and the summary, and the stream
    carries both sources' predictions and detections under one id sequence, from which a
    client resumes exactly at a second source's detection."""
    from station_helpers import AUDIO, SSE, Daemon as StationDaemon, make_model as station_model
    if not os.path.exists(AUDIO):
        pytest.skip("the bundled soundscape is missing")
    model = station_model(str(tmp_path / "station.bsm"))
    conf = tmp_path / "yard.conf"
    conf.write_text("[source yard]\ninput = %s\nspecies_thresholds = Parus_major:1, Sitta_europaea:0\n" % AUDIO)
    d = StationDaemon(model, str(tmp_path / "state"), "species_thresholds=Parus_major:0, Sitta_europaea:1",
                      "exclude_species=Turdus_merula", "max_event_seconds=2", extra=["--config", str(conf)])
    try:
        sse = SSE(d.port)
        d.wait_for(lambda: d.json("/api/v1/detections?source=yard")["total"] >= 2 and
                   d.json("/api/v1/detections?source=default")["total"] >= 2, timeout=30,
                   what="2 detections from each source")
        page = d.json("/api/v1/detections?limit=1000")
        by = {}
        for x in page["detections"]:
            by.setdefault(x["source"], set()).add(x["species"])
        assert by == {"default": {"Parus_major"}, "yard": {"Sitta_europaea"}}, by
        yard = d.json("/api/v1/detections?source=yard&limit=1000")
        assert yard["total"] >= sum(1 for x in page["detections"] if x["source"] == "yard")  # more may come
        assert all(x["source"] == "yard" for x in yard["detections"])
        assert d.json("/api/v1/detections?source=nowhere")["total"] == 0
        assert d.status("/api/v1/detections?source=") == 400
        # each source's detection settings; without ?source= the first source's
        for q, name, on in (("", "default", "Parus_major"), ("?source=default", "default", "Parus_major"),
                            ("?source=yard", "yard", "Sitta_europaea")):
            sets = d.json("/api/v1/detections/settings" + q)
            thr = {x["species"]: x["threshold"] for x in sets["species"]}
            assert sets["source"] == name and thr[on] == 0 and thr[({"Parus_major", "Sitta_europaea"} - {on}).pop()] == 1, sets
        assert d.status("/api/v1/detections/settings?source=nowhere") == 404
        _, _, text = d.request("/metrics")
        from station_helpers import metric, parse_prometheus
        fams = parse_prometheus(text.decode())
        assert metric(fams, "birdsong_source_detections_total", source="yard") >= 2
        assert metric(fams, "birdsong_source_detections_total", source="default") >= 2
        summ = d.json("/api/v1/detections/summary?source=yard&bucket=day")
        assert summ["total"] >= 2 and all(set(b["counts"]) == {"Sitta_europaea"} for b in summ["buckets"])
        one = d.json("/api/v1/detections/%d" % yard["detections"][0]["id"])
        assert one["source"] == "yard"
        # the CSV export takes source= through the same filter parser, each row naming its
        # source; a yard detection's spectrogram comes from yard's own audio history (clips off)
        import csv
        import io
        st, _, body = d.request("/api/v1/detections.csv?source=yard")
        rows = list(csv.reader(io.StringIO(body.decode(), newline="")))
        assert st == 200 and rows[0][:3] == ["id", "species", "source"] and len(rows) > 1, body[:300]
        assert all(r[2] == "yard" for r in rows[1:]), rows[:5]
        st, headers, png = d.request("/api/v1/detections/%d/spectrogram.png" % one["id"])
        assert st == 200 and headers["Content-Type"] == "image/png", (st, png[:300])
        # each source's sound level, labelled by source
        _, _, text = d.request("/metrics")
        for name in ("default", "yard"):
            assert ('birdsong_source_sound_peak_dbfs{source="%s"}' % name).encode() in text, text[-2000:]
        # the stream: detections and predictions of both sources, every event numbered one
        # after the other (one id sequence for the daemon)
        events, raw, deadline = [], [], time.time() + 20
        while time.time() < deadline and {e.get("source") for e in events} != {"default", "yard"}:
            ev = sse.next()
            if "id" not in ev:
                continue  # a comment (retry:, heartbeat)
            raw.append(ev)
            if ev.get("event") == "detection":
                events.append(json.loads(ev["data"]))
        assert {e["source"] for e in events} == {"default", "yard"}, events
        ids = [int(e["id"]) for e in raw]
        assert ids == list(range(ids[0], ids[0] + len(ids))), ids
        preds = [json.loads(e["data"]) for e in raw if e["event"] == "prediction"]
        assert {p["source"] for p in preds} == {"default", "yard"}, preds[:4]
        for name in ("default", "yard"):  # each source's windows in order, none missing
            seqs = [p["seq"] for p in preds if p["source"] == name]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (name, seqs)
        sse.close()
        # resume exactly at a yard detection's id and just before it: nothing missed, nothing twice
        yard_ev = next(e for e in raw if e["event"] == "detection" and json.loads(e["data"])["source"] == "yard")
        at = int(yard_ev["id"])
        for last, first in ((at - 1, yard_ev), (at, None)):
            r = SSE(d.port, last_event_id=last)
            got = r.events(3)
            r.close()
            assert [int(e["id"]) for e in got] == [last + 1, last + 2, last + 3], (last, got)
            if first is not None:
                assert got[0]["event"] == "detection" and got[0]["data"] == first["data"], got[0]
    finally:
        d.stop()


def test_a_second_sources_detection_has_its_own_clip_and_spectrogram(tmp_path):
    """Clips on, the soundscape as the default source and a chirp file as [source yard]: a
    yard detection has has_audio true, its clip is a stretch of yard's file (sample for
    sample, 16-bit), not of the soundscape, and its spectrogram is drawn from that clip."""
    from librosa_ref import read_audio
    from station_helpers import AUDIO, Daemon as StationDaemon, make_model as station_model
    if not os.path.exists(AUDIO):
        pytest.skip("the bundled soundscape is missing")
    model = station_model(str(tmp_path / "station.bsm"))
    yard_wav = tmp_path / "yard.wav"
    x = write_wav(yard_wav, seconds=6.0, sr=22050, seed=5)  # the model's rate: no resampling
    conf = tmp_path / "yard.conf"
    conf.write_text("[source yard]\ninput = %s\ninput_loop = true\n"
                    "species_thresholds = Parus_major:1, Sitta_europaea:0\n" % yard_wav)
    state = str(tmp_path / "state")
    d = StationDaemon(model, state, "species_thresholds=Parus_major:0, Sitta_europaea:1",
                      "exclude_species=Turdus_merula", "max_event_seconds=2", "clips=true",
                      "clip_pre_roll=0.5", "clip_post_roll=0.5", extra=["--config", str(conf)])
    try:
        det = d.wait_for(lambda: next((x for x in d.json("/api/v1/detections?source=yard&limit=50")["detections"]
                                       if x["has_audio"]), None), timeout=30, what="a yard detection with its clip")
        assert det["source"] == "yard"
        clip, sr = read_audio(os.path.join(state, "clips", "%d.flac" % det["id"]))
        assert sr == 22050 and len(clip) > 22050, (sr, len(clip))
        # where the clip starts in the (looped) file: the one offset whose first 64 samples match
        loop = np.concatenate([x] * (2 + len(clip) // len(x)))
        head = np.lib.stride_tricks.sliding_window_view(loop[:len(x) + 64], 64)
        err = np.abs(head - clip[:64]).max(axis=1)
        off = int(np.argmin(err))
        assert err[off] <= 1.0 / 32768, "the clip's start is nowhere in yard's audio (best %g)" % err[off]
        assert np.abs(clip - loop[off:off + len(clip)]).max() <= 1.0 / 32768
        st, headers, png = d.request("/api/v1/detections/%d/spectrogram.png" % det["id"])
        assert st == 200 and headers["Content-Type"] == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n", (st, png[:300])
        assert os.path.exists(os.path.join(state, "clips", "%d.png" % det["id"]))  # drawn from the clip
        # the default source's detections keep their clips too
        d.wait_for(lambda: any(x["has_audio"] for x in
                               d.json("/api/v1/detections?source=default&limit=50")["detections"]),
                   timeout=30, what="a default-source detection with its clip")
    finally:
        assert d.stop() == 0


# ---- network sources: real servers on loopback ----------------------------------------------

class StreamServer:
    """An HTTP audio server on 127.0.0.1 (a thread of this process, real sockets): each GET
    gets a WAV stream of `samples` (16-bit mono, looped) paced at `speed` x real time.
    mode "silent": accepts, reads the request and sends nothing (half-open); "garbage": a
    200 and random bytes; "badmp3": a WAV header saying MP3, then random bytes (the decoder
    rejects them); "badcodec": a WAV of a codec that does not exist. stop() closes the
    listener and every connection (a server that dies); start() again on the same port."""

    def __init__(self, samples, sr, mode="wav", speed=4.0, port=None):
        import socket as so
        self.so = so
        self.pcm = (np.clip(np.round(samples * 32768.0), -32768, 32767)).astype("<i2").tobytes()
        self.sr, self.mode, self.speed = sr, mode, speed
        self.port = port or free_port_here()
        self.conns = []

    def start(self):
        import threading
        self.lsock = self.so.socket()
        self.lsock.setsockopt(self.so.SOL_SOCKET, self.so.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(8)
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self

    def _accept(self):
        import threading
        while self.running:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        import struct
        try:
            c.settimeout(5)
            req = b""
            while b"\r\n\r\n" not in req:
                d = c.recv(4096)
                if not d:
                    return
                req += d
            if self.mode == "silent":
                while self.running:
                    time.sleep(0.05)
                return
            if self.mode in ("garbage", "badmp3"):
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: audio/wav\r\n\r\n")
                if self.mode == "badmp3":  # a WAV that says MP3 (format 0x55), then noise: undecodable packets
                    c.sendall(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " +
                              struct.pack("<IHHIIHH", 16, 0x55, 1, self.sr, self.sr * 2, 2, 16) +
                              b"data" + struct.pack("<I", 0xFFFFFFFF))
                rng = np.random.default_rng(7)
                while self.running:
                    c.sendall(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
                    time.sleep(0.05)
                return
            tag = 0x7A7A if self.mode == "badcodec" else 1  # 1: PCM; 0x7a7a: no such codec
            hdr = (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " +
                   struct.pack("<IHHIIHH", 16, tag, 1, self.sr, self.sr * 2, 2, 16) +
                   b"data" + struct.pack("<I", 0xFFFFFFFF))
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: audio/wav\r\n\r\n" + hdr)
            chunk = self.sr // 20 * 2          # 50 ms of audio per send
            t0, sent, pos = time.time(), 0, 0
            while self.running:
                part = self.pcm[pos:pos + chunk]
                pos = (pos + chunk) % len(self.pcm) if pos + chunk < len(self.pcm) else 0
                c.sendall(part)
                sent += len(part) // 2
                wait = t0 + sent / (self.sr * self.speed) - time.time()
                if wait > 0:
                    time.sleep(wait)
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        import socket as so
        self.running = False
        self.lsock.close()
        for c in self.conns:
            try:
                c.shutdown(so.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self.conns = []


def free_port_here():
    import socket as so
    s = so.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def source(d, name):
    return d.json("/api/v1/sources/" + name)


def test_http_stream_predicts_reconnects_after_the_server_dies_and_the_other_source_never_pauses(files, tmp_path):
    """A WAV stream over HTTP from a real server on loopback as [source cam] next to a file:
    the stream's windows hold its samples bit for bit; the server is killed and started
    again: cam goes to reopening, comes back by itself and its predictions resume, while
    the file source's windows keep coming all along."""
    xa = files["xa"]
    srv = StreamServer(xa, 22050).start()
    dump = tmp_path / "cam.bin"
    conf = tmp_path / "c.conf"
    conf.write_text("model = %s\ninput = %s\ninput_loop = true\nreopen_max_seconds = 0.5\n"
                    "[source cam]\ninput = http://127.0.0.1:%d/live.wav\nsource_timeout = 2\n"
                    "input_speed = 4\ndebug_dump_path = %s\n" % (files["model"], files["b"], srv.port, dump))
    d = Daemon(["--config", str(conf)], tmp=tmp_path)
    try:
        with d:
            d.wait_for(lambda: source(d, "cam")["latest_seq"] >= 4, timeout=20, what="4 windows from the stream")
            cam = source(d, "cam")
            assert cam["kind"] == "url" and cam["state"] == "running" and cam["sample_rate"] == 22050
            srv.stop()
            d.wait_for(lambda: source(d, "cam")["state"] == "reopening", timeout=10, what="cam reopening")
            down = source(d, "cam")
            assert down["last_error"] and "127.0.0.1:%d" % srv.port in down["last_error"]
            status, _, h = d.get("/api/v1/health")
            assert status == 503 and any(r.startswith("source 'cam'") for r in h["reasons"]), h
            f0 = source(d, "default")["latest_seq"]
            time.sleep(1.5)
            assert source(d, "default")["latest_seq"] >= f0 + 2, "the file source paused while cam was down"
            seq_down = source(d, "cam")["latest_seq"]
            srv.start()
            d.wait_for(lambda: source(d, "cam")["latest_seq"] >= seq_down + 3, timeout=20,
                       what="cam's predictions to resume")
            back = source(d, "cam")
            assert back["reconnects"] >= 1 and back["state"] == "running"
            log = d.output()
            assert log.count("reopening with backoff") <= 3, log  # one line per change, not per retry
    finally:
        srv.stop()
    rec = 8 + 4 * SEG + 4 * N_FEAT
    raw = dump.read_bytes()
    n = 0
    for k in range(len(raw) // rec):
        b = raw[k * rec:(k + 1) * rec]
        start = int(np.frombuffer(b[:8], "<u8")[0])
        if start + SEG > len(xa) or (k > 0 and start == 0):
            break  # the end of the first pass (the server loops), or the reconnect's new mark
        np.testing.assert_array_equal(np.frombuffer(b[8:8 + 4 * SEG], "<f4"), xa[start:start + SEG],
                                      err_msg="stream window %d" % k)
        n += 1
    assert n >= 3


def test_half_open_server_is_detected_within_source_timeout_and_retried(files, tmp_path):
    srv = StreamServer(files["xa"], 22050, mode="silent").start()
    try:
        with Daemon(["--model", files["model"], "--source", "cam=http://127.0.0.1:%d/x.wav" % srv.port,
                     "--set", "source_timeout=0.5", "--set", "reopen_max_seconds=0.5"], tmp=tmp_path) as d:
            t0 = time.time()
            d.wait_for(lambda: source(d, "cam")["state"] == "reopening", timeout=5, what="the watchdog")
            assert time.time() - t0 < 3
            cam = source(d, "cam")
            assert "no audio for 0.5 s" in cam["last_error"], cam
            d.wait_for(lambda: d.json("/api/v1/status")["audio"]["failures"] >= 3, timeout=10,
                       what="three attempts")
            assert len(srv.conns) >= 2, "it reconnected"
    finally:
        srv.stop()


def test_source_that_never_comes_up_backs_off_with_bounded_cpu_and_health_says_why(files, tmp_path):
    port = free_port_here()  # nothing listens there
    with Daemon(["--model", files["model"], "--source", "cam=http://birds:s3cret@127.0.0.1:%d/live" % port,
                 "--set", "reopen_max_seconds=1"], tmp=tmp_path) as d:
        d.wait_for(lambda: d.json("/api/v1/status")["audio"]["failures"] >= 3, timeout=10, what="attempts")
        status, _, h = d.get("/api/v1/health")
        assert status == 503
        assert any("cam" in r or "127.0.0.1:%d" % port in r for r in h["reasons"]), h
        assert "refused" in source(d, "cam")["last_error"].lower(), source(d, "cam")
        def cpu():
            with open("/proc/%d/stat" % d.proc.pid) as f:
                v = f.read().rsplit(")", 1)[1].split()
            return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")
        c0, t0 = cpu(), time.time()
        time.sleep(4)
        share = (cpu() - c0) / (time.time() - t0)
        print("never-up source: %.2f %% of a core" % (100 * share))
        assert share < 0.01, "%.2f %% of a core" % (100 * share)
        f = d.json("/api/v1/status")["audio"]["failures"]
        assert f < 20, "backoff: %d attempts" % f
        _, _, page = d.request("GET", "/metrics")
        page = page.decode()
        assert 'birdsong_source_running{source="cam"} 0' in page, page
        fails = re.search(r'^birdsong_source_failures_total\{source="cam"\} (\d+)', page, re.M)
        assert fails and int(fails.group(1)) >= 3, page
        assert d.output().count("reopening with backoff") == 1
        # the password never leaves the process: not in the API, the metrics or the log
        assert source(d, "cam")["input"] == "http://birds:***@127.0.0.1:%d/live" % port
        for text in (json.dumps(d.json("/api/v1/sources")), json.dumps(d.json("/api/v1/status")),
                     json.dumps(d.get("/api/v1/health")[2]), page, d.output()):
            assert "s3cret" not in text


@pytest.mark.parametrize("mode,needle", [("garbage", "invalid data: no audio found in the"),
                                         ("badmp3", "invalid data: the decoder rejected"),
                                         ("badcodec", "no decoder")])
def test_garbage_or_undecodable_stream_gets_a_clear_error_and_a_retry(files, tmp_path, mode, needle):
    srv = StreamServer(files["xa"], 22050, mode=mode).start()
    try:
        with Daemon(["--model", files["model"], "--source", "cam=http://127.0.0.1:%d/x" % srv.port,
                     "--set", "source_timeout=1", "--set", "reopen_max_seconds=0.5"], tmp=tmp_path) as d:
            d.wait_for(lambda: d.json("/api/v1/status")["audio"]["failures"] >= 2, timeout=15, what="two failures")
            cam = source(d, "cam")
            assert cam["state"] == "reopening" and "127.0.0.1:%d" % srv.port in cam["last_error"], cam
            assert needle in cam["last_error"].lower() and "no audio for" not in cam["last_error"], cam
            assert d.proc.poll() is None
    finally:
        srv.stop()


def rtsp_available():
    r = subprocess.run(["/usr/bin/python3", "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                        "from gi.repository import GstRtspServer"], capture_output=True, timeout=30)
    return r.returncode == 0


def start_rtsp(port, transport=None):
    p = subprocess.Popen(["/usr/bin/python3", os.path.join(os.path.dirname(__file__), "rtsp_server.py"), str(port)]
                         + ([transport] if transport else []),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.strip() == "ready", "rtsp_server: %s %s" % (line, p.stderr.read() if p.poll() is not None else "")
    return p


@pytest.mark.skipif(not rtsp_available(), reason="python3-gi with gir1.2-gst-rtsp-server-1.0 missing "
                    "(scripts/install-deps.sh installs it)")
def test_rtsp_camera_reconnects_after_the_server_restarts(files, tmp_path):
    """An RTSP server (gst-rtsp-server, 16 kHz L16 over RTP/TCP) as [source cam] next to a
    file: predictions from both; the server is killed and started again on the same port:
    cam reconnects by itself and its predictions resume; the file source never pauses."""
    port = free_port_here()
    srv = start_rtsp(port)
    conf = tmp_path / "c.conf"
    conf.write_text("model = %s\ninput = %s\ninput_loop = true\nreopen_max_seconds = 0.5\n"
                    "[source cam]\ninput = rtsp://127.0.0.1:%d/birds\nsource_timeout = 3\n"
                    % (files["model"], files["b"], port))
    try:
        with Daemon(["--config", str(conf)], tmp=tmp_path) as d:
            d.wait_for(lambda: source(d, "cam")["latest_seq"] >= 3, timeout=30, what="3 windows from the camera")
            cam = source(d, "cam")
            assert cam["state"] == "running" and cam["sample_rate"] == 16000 and cam["dropped_samples"] == 0
            srv.kill()
            srv.wait()
            d.wait_for(lambda: source(d, "cam")["state"] == "reopening", timeout=15, what="cam reopening")
            f0 = source(d, "default")["latest_seq"]
            time.sleep(1.5)
            assert source(d, "default")["latest_seq"] >= f0 + 2, "the file source paused while cam was down"
            seq_down = source(d, "cam")["latest_seq"]
            srv = start_rtsp(port)
            d.wait_for(lambda: source(d, "cam")["latest_seq"] >= seq_down + 3, timeout=30,
                       what="cam's predictions to resume")
            assert source(d, "cam")["reconnects"] >= 1
    finally:
        srv.kill()
        srv.wait()


# ---- devices by name, looked up again at every reopen ----------------------------------------

def test_a_device_that_appears_later_is_found_by_name_at_a_reopen(files, tmp_path):
    """--device fieldmic while no such device exists: the source retries; the device then
    appears (the ALSA configuration gains it, as a USB card plugged in or renumbered would):
    the next reopen finds it by name and predictions start."""
    from birdsongd_helpers import PLUGIN, alsa_config
    if not os.path.exists(PLUGIN):
        pytest.skip("ALSA test plugin not built")
    conf = tmp_path / "asound.conf"
    alsa_config(conf, {"default": {"file": files["a"], "loop": True}})
    with Daemon(["--model", files["model"], "--device", "fieldmic", "--set", "reopen_max_seconds=0.5"],
                env={"ALSA_CONFIG_PATH": str(conf)}, tmp=tmp_path) as d:
        d.wait_for(lambda: d.json("/api/v1/status")["audio"]["failures"] >= 2, timeout=10, what="failed opens")
        assert "fieldmic" in d.json("/api/v1/status")["audio"]["last_error"]
        time.sleep(1.1)  # a new mtime for ALSA's configuration check
        alsa_config(conf, {"default": {"file": files["a"], "loop": True},
                           "fieldmic": {"file": files["a"], "loop": True}})
        d.wait_for(lambda: d.json("/api/v1/status")["audio"]["state"] == "running", timeout=15,
                   what="the device found at a reopen")
        assert d.json("/api/v1/status")["audio"]["device"] == "fieldmic"
        d.wait_for(lambda: d.latest_seq() >= 2, timeout=10, what="predictions")


# ---- the dashboard's source picker ------------------------------------------------------------

def test_dashboard_picks_a_source_and_shows_each_sources_state(tmp_path):
    """Two sources (the soundscape as default: Parus_major detects; again as [source yard]:
    Sitta_europaea detects) and a never-up stream [source cam]: the page lists the three with
    their state, the picker switches to yard (bars from yard's own predictions, detections
    of yard only), and ?source=yard opens on it."""
    from station_helpers import AUDIO, Daemon as StationDaemon, make_model as station_model
    import test_station as ts
    if not ts.CHROMIUM:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    if not os.path.exists(AUDIO):
        pytest.skip("the bundled soundscape is missing")
    model = station_model(str(tmp_path / "station.bsm"))
    conf = tmp_path / "two.conf"
    conf.write_text("[source yard]\ninput = %s\nspecies_thresholds = Parus_major:1, Sitta_europaea:0\n"
                    "[source cam]\ninput = http://127.0.0.1:%d/none\n" % (AUDIO, free_port_here()))
    d = StationDaemon(model, str(tmp_path / "state"), "species_thresholds=Parus_major:0, Sitta_europaea:1",
                      "exclude_species=Turdus_merula", "max_event_seconds=2", "reopen_max_seconds=1",
                      extra=["--config", str(conf)])
    rows_js = ("!document.getElementById('source') ? '{}' : "
               "JSON.stringify({rows: [...document.querySelectorAll('#sources tr')].map(r => [...r.children]"
               ".map(c => c.textContent)), pick: document.getElementById('source').value,"
               " options: [...document.getElementById('source').options].map(o => o.value),"
               " det: [...document.querySelectorAll('#detections tr[data-id]')].map(r => r.children[1].textContent),"
               " bars: [...document.querySelectorAll('#bars .bar .val')].map(v => v.textContent)})")
    try:
        d.wait_for(lambda: d.json("/api/v1/detections?source=yard")["total"] >= 1 and
                   d.json("/api/v1/detections?source=default")["total"] >= 1, timeout=30, what="detections")
        def until(ready, timeout=20):
            deadline, page = time.time() + timeout, {}
            while time.time() < deadline:
                cdp.pump(0.5)
                page = json.loads(cdp.evaluate(rows_js))
                if page and ready(page):
                    break
            return page

        with ts.chromium(tmp_path) as cdp:
            cdp.call("Page.navigate", url=d.base + "/")
            page = until(lambda p: p["det"] and len(p["rows"]) == 3)
            assert page["options"] == ["default", "yard", "cam"] and page["pick"] == "default", page
            by = {r[0]: r for r in page["rows"]}
            assert by["default"][3] == "running" and by["yard"][3] == "running", page
            assert by["cam"][3] == "reopening" and by["cam"][6], page  # its last error is shown
            assert set(page["det"]) == {"Parus_major"}, page
            cdp.evaluate("(() => { const s = document.getElementById('source'); s.value = 'yard';"
                         " s.dispatchEvent(new Event('change')); })()")
            page = until(lambda p: p["det"] and set(p["det"]) == {"Sitta_europaea"} and p["bars"] and
                         all(v not in ("", "\u2013") for v in p["bars"]))
            assert set(page["det"]) == {"Sitta_europaea"}, page
            assert all(0 <= float(v) <= 1 for v in page["bars"]), page
            assert "source=yard" in cdp.evaluate("location.search")
            cdp.call("Page.navigate", url=d.base + "/?source=yard")
            time.sleep(0.5)
            page = until(lambda p: p["det"] and p["pick"] == "yard")
            assert set(page["det"]) == {"Sitta_europaea"} and page["pick"] == "yard", page
            assert ts.page_errors(cdp) == [] or all("/api/v1/" in e for e in ts.page_errors(cdp)), ts.page_errors(cdp)
    finally:
        d.stop()


@pytest.mark.skipif(not rtsp_available(), reason="python3-gi with gir1.2-gst-rtsp-server-1.0 missing "
                    "(scripts/install-deps.sh installs it)")
def test_rtsp_transport_udp_is_asked_of_the_server(files, tmp_path):
    """A server that offers RTP over UDP only: the source with rtsp_transport = udp plays it;
    one with the default (tcp) is refused by that server, with the server's answer as its
    error."""
    port = free_port_here()
    srv = start_rtsp(port, "udp")
    conf = tmp_path / "c.conf"
    conf.write_text("model = %s\nreopen_max_seconds = 0.5\n"
                    "[source cam]\ninput = rtsp://127.0.0.1:%d/birds\nrtsp_transport = udp\nsource_timeout = 3\n"
                    "[source tcpcam]\ninput = rtsp://127.0.0.1:%d/birds\n" % (files["model"], port, port))
    try:
        with Daemon(["--config", str(conf)], tmp=tmp_path) as d:
            d.wait_for(lambda: source(d, "cam")["latest_seq"] >= 3, timeout=30, what="3 windows over RTP/UDP")
            assert source(d, "cam")["state"] == "running" and source(d, "cam")["sample_rate"] == 16000
            d.wait_for(lambda: source(d, "tcpcam")["last_error"], timeout=10, what="tcpcam's error")
            tcp = source(d, "tcpcam")
            assert tcp["state"] == "reopening" and tcp["latest_seq"] == 0, tcp
    finally:
        srv.kill()
        srv.wait()
    r = subprocess.run([DAEMON, "--model", files["model"], "--source", "c=rtsp://127.0.0.1:1/x", "--set",
                        "rtsp_transport=http", "--check-config"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "expected tcp or udp" in r.stderr, r.stderr


# ---- streams served by the ffmpeg CLI (scripts/install-deps.sh installs it) ------------------

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="the ffmpeg CLI is missing (scripts/install-deps.sh installs it)")


def start_ffmpeg(wav, out_args, url):
    """ffmpeg playing wav in a loop at real time into url (a server with -listen 1)."""
    return subprocess.Popen([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                             "-i", wav] + out_args + [url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(p):
    p.kill()
    p.wait(timeout=10)


@needs_ffmpeg
def test_ffmpeg_http_mp3_server_predicts_and_is_reconnected_after_a_restart(files, tmp_path):
    """An MP3 stream served by `ffmpeg -listen 1` over HTTP as [source cam]: its predictions
    arrive; ffmpeg killed: cam goes to reopening; ffmpeg started again on the same port: cam
    reconnects by itself and its predictions resume."""
    port = free_port_here()
    args, url = ["-c:a", "libmp3lame", "-f", "mp3", "-listen", "1"], "http://127.0.0.1:%d/live.mp3" % port
    srv = start_ffmpeg(files["a"], args, url)
    conf = tmp_path / "c.conf"
    conf.write_text("model = %s\ninput = %s\ninput_loop = true\nreopen_max_seconds = 0.5\n"
                    "[source cam]\ninput = %s\nsource_timeout = 2\n" % (files["model"], files["b"], url))
    try:
        with Daemon(["--config", str(conf)], tmp=tmp_path) as d:
            d.wait_for(lambda: source(d, "cam")["latest_seq"] >= 3, timeout=20, what="3 windows from ffmpeg")
            cam = source(d, "cam")
            assert cam["state"] == "running" and cam["sample_rate"] == 22050, cam
            assert "mp3" in d.json("/api/v1/status")["sources"][1]["audio"]["device"]
            assert d.json("/api/v1/sources/cam/predictions/latest")["source"] == "cam"
            stop(srv)
            d.wait_for(lambda: source(d, "cam")["state"] == "reopening", timeout=10, what="cam reopening")
            seq_down = source(d, "cam")["latest_seq"]
            srv = start_ffmpeg(files["a"], args, url)
            d.wait_for(lambda: source(d, "cam")["latest_seq"] >= seq_down + 3, timeout=20,
                       what="cam's predictions to resume")
            assert source(d, "cam")["reconnects"] >= 1 and source(d, "cam")["state"] == "running"
    finally:
        stop(srv)


@needs_ffmpeg
@pytest.mark.parametrize("scheme", ["tcp", "udp", "rtmp"])
def test_ffmpeg_streams_over_tcp_udp_and_rtmp_are_heard(files, tmp_path, scheme):
    """The other accepted schemes against a real sender: MPEG-TS over a TCP listener and over
    UDP datagrams to the daemon, and FLV from an RTMP server (`ffmpeg -listen 1`)."""
    port = free_port_here()
    if scheme == "tcp":
        args, url = ["-c:a", "mp2", "-f", "mpegts"], "tcp://127.0.0.1:%d?listen=1" % port
        spec = "tcp://127.0.0.1:%d" % port
    elif scheme == "udp":  # the daemon binds the port; ffmpeg sends datagrams to it
        args, url = ["-c:a", "mp2", "-f", "mpegts"], "udp://127.0.0.1:%d?pkt_size=1316" % port
        spec = "udp://127.0.0.1:%d?localaddr=127.0.0.1" % port
    else:
        args, url = ["-c:a", "aac", "-f", "flv", "-listen", "1"], "rtmp://127.0.0.1:%d/live/birds" % port
        spec = url
    srv = start_ffmpeg(files["a"], args, url)
    try:
        time.sleep(0.3)  # the listener up
        with Daemon(["--model", files["model"], "--source", "cam=" + spec, "--set", "reopen_max_seconds=0.5",
                     "--set", "source_timeout=3"], tmp=tmp_path) as d:
            d.wait_for(lambda: source(d, "cam")["latest_seq"] >= 3, timeout=20,
                       what="3 windows over %s: %s" % (scheme, source(d, "cam")))
            cam = source(d, "cam")
            assert cam["state"] == "running" and cam["sample_rate"] == 22050, cam
    finally:
        stop(srv)
