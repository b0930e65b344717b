"""Station features of birdsongd on the real binary: detections stored and queried, kill -9
safety, the SSE stream with Last-Event-ID resume, /metrics parsed as Prometheus text,
clips, MQTT through a real mosquitto broker, and the dashboard in headless Chromium.

The daemon plays data/soundscapes/opensoundscape_birds_10s.flac at 4x real time through a
random-weight test model (tests/tools/make_test_model), whose probabilities hover near 0.5:
the thresholds below make the detections deterministic (Parus_major always on, Sitta
never, Turdus excluded), and max_event_seconds=2 closes an event every 2 s of audio."""
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from station_helpers import (AUDIO, DAEMON, LABELS, MAKE_MODEL, REPO, SSE, CDP, Daemon, MQTTSubscriber,
                             check_schema, decode_png, free_port, make_model, metric, parse_prometheus, viridis_like)

pytestmark = pytest.mark.skipif(not (os.path.exists(DAEMON) and os.path.exists(MAKE_MODEL) and os.path.exists(AUDIO)),
                                reason="birdsongd, make_test_model or the soundscape is missing (run make)")

DETECT = ["species_thresholds=Parus_major:0, Sitta_europaea:1", "exclude_species=Turdus_merula",
          "max_event_seconds=2"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(str(tmp_path_factory.mktemp("model") / "station.bsm"))


@pytest.fixture
def state(tmp_path):
    return str(tmp_path / "state")


def test_detections_are_stored_filtered_and_summarized(model, state):
    d = Daemon(model, state, *DETECT)
    try:
        d.wait_for(lambda: d.json("/api/v1/detections")["total"] >= 4, what="4 detections")
        page = d.json("/api/v1/detections?limit=1000")
        dets = page["detections"]
        assert page["total"] == len(dets) >= 4
        assert {x["species"] for x in dets} == {"Parus_major"}  # Sitta never reaches 1, Turdus excluded
        ids = [x["id"] for x in dets]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
        for x in dets:
            assert set(x) >= {"id", "species", "start", "end", "max_probability", "mean_probability", "n_windows"}
            assert x["start"].endswith("Z") and x["end"] > x["start"]
            assert 0 <= x["mean_probability"] <= x["max_probability"] <= 1
            assert x["n_windows"] >= 1 and x["has_audio"] is False
        # limit / offset
        two = d.json("/api/v1/detections?limit=2&offset=1")
        assert [x["id"] for x in two["detections"]] == ids[1:3]
        # species, min_confidence, from / to
        assert d.json("/api/v1/detections?species=Sitta_europaea")["total"] == 0
        assert d.json("/api/v1/detections?min_confidence=1")["total"] == 0
        assert d.json("/api/v1/detections?min_probability=1")["total"] == 0
        assert d.json("/api/v1/detections?min_probability=0")["total"] >= len(dets)
        mid = dets[len(dets) // 2]["start"]
        newer = d.json("/api/v1/detections?limit=1000&from=" + mid)["detections"]
        older = d.json("/api/v1/detections?limit=1000&to=" + mid)["detections"]
        assert newer and older
        assert all(x["start"] >= mid for x in newer) and all(x["start"] < mid for x in older)
        assert d.json("/api/v1/detections?from=2999-01-01")["total"] == 0
        assert d.json("/api/v1/detections?from=2000-01-01T00:00:00%2B02:00")["total"] >= len(dets)
        # one detection
        one = d.json("/api/v1/detections/%d" % ids[-1])
        assert one["id"] == ids[-1] and one["species"] == "Parus_major"
        st, _, body = d.request("/api/v1/detections/%d/audio" % ids[-1])
        assert st == 404 and b"clips are off" in body
        assert d.status("/api/v1/detections/999999") == 404
        assert d.status("/api/v1/detections/abc") == 404
        # bad parameters name themselves
        for q, word in [("from=yesterday", b"from"), ("min_confidence=2", b"min_confidence"),
                        ("min_probability=-1", b"min_probability"),
                        ("limit=0", b"limit"), ("colour=red", b"colour"), ("to=2026-02-31", b"to"),
                        ("species=", b"species"), ("from", b"from")]:
            st, _, body = d.request("/api/v1/detections?" + q)
            assert st == 400 and word in body, (q, st, body)
        # summary: hour and day buckets count the same detections
        total = d.json("/api/v1/detections")["total"]
        for bucket in ("hour", "day"):
            sm = d.json("/api/v1/detections/summary?bucket=" + bucket)
            assert sm["bucket"] == bucket
            assert sm["total"] >= total
            assert sum(b["counts"].get("Parus_major", 0) for b in sm["buckets"]) == sm["total"]
            for b in sm["buckets"]:
                assert b["start"].endswith(":00:00.000Z")
        assert d.json("/api/v1/detections/summary?to=2000-01-01")["total"] == 0
        assert d.status("/api/v1/detections/summary?bucket=week") == 400
        # the settings in force
        cfg = d.json("/api/v1/detections/settings")
        assert cfg["active"] and cfg["stored"] and not cfg["clips"]
        by = {x["species"]: x for x in cfg["species"]}
        assert by["Parus_major"]["threshold"] == 0 and by["Sitta_europaea"]["threshold"] == 1
        assert by["Turdus_merula"]["enabled"] is False and by["Turdus_merula"]["threshold"] is None
    finally:
        assert d.stop() == 0
    assert os.path.exists(os.path.join(state, "detections.db"))


def test_retention_by_row_count_applies_at_start(model, state):
    d = Daemon(model, state, *DETECT)
    try:
        d.wait_for(lambda: d.json("/api/v1/detections")["total"] >= 6, what="6 detections")
    finally:
        assert d.stop() == 0
    d2 = Daemon(model, state, *DETECT, "retention_rows=3")
    try:
        kept = d2.json("/api/v1/detections?limit=1000")
        # the writer trims right after start; new detections may already have come in
        fams = parse_prometheus(d2.request("/metrics")[2].decode())
        assert metric(fams, "birdsong_db_retention_deleted_total") >= 3
        assert min(x["id"] for x in kept["detections"]) > 3
    finally:
        assert d2.stop() == 0


def test_detection_responses_match_docs_openapi_yaml(model, state):
    import yaml  # python3-yaml, installed by scripts/install-deps.sh
    spec = yaml.safe_load(open(os.path.join(REPO, "docs", "openapi.yaml")))
    d = Daemon(model, state, *DETECT, "clips=true")
    try:
        d.wait_for(lambda: d.json("/api/v1/detections")["total"] >= 2, what="2 detections")
        some = d.json("/api/v1/detections")["detections"][-1]["id"]
        for path, templ, query in [("/api/v1/detections", None, "?limit=5&species=Parus_major"),
                                   ("/api/v1/detections/summary", None, "?bucket=day&from=2020-01-01"),
                                   ("/api/v1/detections/settings", None, ""),
                                   ("/api/v1/detections/%d" % some, "/api/v1/detections/{id}", ""),
                                   ("/api/v1/detections/999999", "/api/v1/detections/{id}", ""),
                                   ("/api/v1/detections/999999/audio", "/api/v1/detections/{id}/audio", ""),
                                   ("/api/v1/detections", None, "?from=never")]:
            st, headers, body = d.request(path + query)
            responses = spec["paths"][templ or path]["get"]["responses"]
            assert str(st) in responses, (path, st)
            r = responses[str(st)]
            if "$ref" in r:
                r = spec["components"]["responses"][r["$ref"].split("/")[-1]]
            check_schema(json.loads(body), r["content"]["application/json"]["schema"], spec, path)
    finally:
        assert d.stop() == 0


def test_detections_survive_kill_9_and_restart(model, state):
    d = Daemon(model, state, *DETECT)
    try:
        d.wait_for(lambda: d.json("/api/v1/detections")["total"] >= 3, what="3 detections")
        time.sleep(0.3)
        seen = d.json("/api/v1/detections?limit=1000")["detections"]
    finally:
        d.kill()
    assert d.proc.returncode == -signal.SIGKILL
    d2 = Daemon(model, state, *DETECT)
    try:
        after = {x["id"]: x for x in d2.json("/api/v1/detections?limit=1000")["detections"]}
        for x in seen:  # every row the API showed (committed) before the kill is there
            assert after.get(x["id"]) == x
        d2.wait_for(lambda: d2.json("/api/v1/detections?limit=1")["detections"][0]["id"] > max(after),
                    what="a new detection after the restart")
    finally:
        assert d2.stop() == 0


ODD = 'Odd, "quoted"\nname'  # every character RFC 4180 quotes


def _csv(d, query=""):
    import csv
    import io
    st, headers, body = d.request("/api/v1/detections.csv" + query)
    assert st == 200, (query, st, body[:300])
    assert headers["Content-Type"].startswith("text/csv; charset=utf-8")
    assert body.endswith(b"\r\n") and b"\r\n" in body.split(b"\n")[0] + b"\n"  # CRLF records
    rows = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert rows[0] == ["id", "species", "source", "start", "end", "max_probability", "mean_probability", "n_windows",
                       "seq_first", "seq_last", "has_audio"]
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def _as_csv(x):
    """A detection of the JSON endpoint as the CSV should give it (csv.reader's strings)."""
    return {k: ("true" if v else "false") if isinstance(v, bool) else str(v) for k, v in x.items()}


def test_csv_export_matches_the_json_endpoint_with_the_same_filters(model, state):
    """More rows than one piece of the stream (256), with ties on start time and a species
    name that needs quoting, put in the store while the daemon is stopped; the CSV parsed
    with Python's csv module is the JSON endpoint's list, field for field, for each filter."""
    import sqlite3
    d = Daemon(model, state, *DETECT)
    try:
        d.wait_for(lambda: d.json("/api/v1/detections")["total"] >= 1, what="a detection")
    finally:
        assert d.stop() == 0
    db = sqlite3.connect(os.path.join(state, "detections.db"))
    t0 = 1577836800.0  # 2020-01-01
    rows = [(["Parus_major", "Sitta_europaea", ODD][i % 3], t0 + 60 * (i // 2), t0 + 60 * (i // 2) + 1.5,
             0.5 + (i % 50) / 100, 0.5, 2, i, i + 1) for i in range(600)]
    db.executemany("INSERT INTO detections (species, start_time, end_time, max_probability, mean_probability,"
                   " n_windows, seq_first, seq_last) VALUES (?,?,?,?,?,?,?,?)", rows)
    db.commit()
    db.close()
    d = Daemon(model, state, *DETECT)
    try:
        def json_all(query):
            out, off = [], 0
            while True:
                page = d.json("/api/v1/detections?limit=1000&offset=%d%s" % (off, query))["detections"]
                out += page
                off += len(page)
                if not page:
                    return out
        for query in ("&to=2021-01-01", "&to=2021-01-01&species=" + urllib.request.quote(ODD),
                      "&to=2021-01-01&min_confidence=0.9", "&from=2020-01-01T02:00:00Z&to=2020-01-01T03:00:00Z"):
            want = [_as_csv(x) for x in json_all(query)]
            got = _csv(d, "?" + query[1:])
            assert got == want, query
            assert want, query
        assert len(_csv(d, "?to=2021-01-01")) == 600
        assert {r["species"] for r in _csv(d, "?to=2021-01-01")} == {"Parus_major", "Sitta_europaea", ODD}
        # the live detections too, newest first like the list
        live = _csv(d)
        assert len(live) >= 601 and live[0]["start"] > "2021" and live[-1]["start"].startswith("2020-01-01T00:00")
        # bad parameters name themselves, as on the JSON endpoint
        for q, word in [("from=yesterday", b"from"), ("min_confidence=2", b"min_confidence"),
                        ("min_probability=-1", b"min_probability"),
                        ("limit=5", b"limit"), ("species=", b"species")]:
            st, _, body = d.request("/api/v1/detections.csv?" + q)
            assert st == 400 and word in body, (q, st, body)
    finally:
        assert d.stop() == 0


PLOT = (60, 22, 600, 256)  # x, y, width, height of the plot inside the picture (daemon/spectrogram.h)


def check_spectrogram(png):
    """Decoded: the size, a plot that is not blank and in viridis, and axis labels drawn in
    the margins (light pixels left of and below the plot)."""
    w, h, rows = decode_png(png)
    assert w >= 400 and (w, h) == (672, 312), (w, h)
    x0, y0, pw, ph = PLOT
    plot = [rows[y][x] for y in range(y0, y0 + ph, 4) for x in range(x0, x0 + pw, 4)]
    assert len(set(plot)) > 50, "the plot is (nearly) blank"
    assert sum(map(viridis_like, plot)) > 0.95 * len(plot), "the plot is not in viridis"
    light = lambda px: min(px) > 200
    left = sum(light(rows[y][x]) for y in range(y0, y0 + ph) for x in range(0, x0 - 8))
    below = sum(light(rows[y][x]) for y in range(y0 + ph + 6, h) for x in range(x0, x0 + pw))
    assert left > 100 and below > 100, "no axis labels (%d px left, %d px below)" % (left, below)
    return rows


def test_detection_spectrogram_png_from_the_clip_cached_and_from_memory(model, state, tmp_path):
    d = Daemon(model, state, *DETECT, "clips=true", "clip_post_roll=0.5")
    try:
        det = d.wait_for(lambda: next((x for x in d.json("/api/v1/detections?limit=50")["detections"]
                                       if x["has_audio"]), None), what="a detection with its clip")
        url = "/api/v1/detections/%d/spectrogram.png" % det["id"]
        st, headers, png = d.request(url)
        assert st == 200 and headers["Content-Type"] == "image/png", (st, png[:300])
        assert headers["ETag"] == '"spectrogram-%d"' % det["id"] and "max-age" in headers["Cache-Control"]
        check_spectrogram(png)
        cached = os.path.join(state, "clips", "%d.png" % det["id"])
        assert open(cached, "rb").read() == png  # cached beside the clip
        assert d.request(url)[2] == png
        assert d.request(url, headers={"If-None-Match": headers["ETag"]})[0] == 304
        # a browser's list of validators, and "*", as for the other ETag'd endpoints
        assert d.request(url, headers={"If-None-Match": '"x", %s' % headers["ETag"]})[0] == 304
        assert d.request(url, headers={"If-None-Match": '"spectrogram-0"'})[0] == 200
        assert d.status("/api/v1/detections/%d/spectrogram.jpg" % det["id"]) == 404
        assert d.status("/api/v1/detections/999999/spectrogram.png") == 404
    finally:
        assert d.stop() == 0
    # clips off: drawn from the audio kept in memory; without it, a 404 that says why
    d = Daemon(model, str(tmp_path / "noclips"), *DETECT)
    try:
        det = d.wait_for(lambda: (d.json("/api/v1/detections?limit=1")["detections"] or [None])[0], what="a detection")
        st, headers, png = d.request("/api/v1/detections/%d/spectrogram.png" % det["id"])
        assert st == 200, png[:300]
        check_spectrogram(png)
    finally:
        assert d.stop() == 0
    d = Daemon(model, str(tmp_path / "nohistory"), *DETECT, "audio_history_seconds=0")
    try:
        det = d.wait_for(lambda: (d.json("/api/v1/detections?limit=1")["detections"] or [None])[0], what="a detection")
        st, _, body = d.request("/api/v1/detections/%d/spectrogram.png" % det["id"])
        assert st == 404 and b"audio_history_seconds" in body
    finally:
        assert d.stop() == 0


def _prediction_seqs(events):
    return [json.loads(e["data"])["seq"] for e in events if e["event"] == "prediction"]


def test_sse_stream_resumes_from_last_event_id(model, state):
    d = Daemon(model, state, *DETECT, "stream_max_clients=2")
    try:
        s = SSE(d.port)
        assert s.status == 200 and s.headers["content-type"].startswith("text/event-stream")
        first = s.events(12)
        ids = [int(e["id"]) for e in first]  # the stream numbers every event, one after another
        assert ids == list(range(ids[0], ids[0] + len(ids))), ids
        assert all(json.loads(e["data"])["source"] == "default" for e in first)
        seqs = _prediction_seqs(first)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "predictions must arrive in order, none missing"
        kinds = {e["event"] for e in first}
        if "detection" not in kinds:
            kinds |= {e["event"] for e in s.events(12)}
        assert "detection" in kinds
        last = int(first[-1]["id"])
        s.close()
        time.sleep(1.0)  # events go by while we are away
        r = SSE(d.port, last_event_id=last)
        again = r.events(8)
        ids2 = [int(e["id"]) for e in again]
        assert ids2 == list(range(last + 1, last + 1 + len(ids2))), \
            "resume must start right after Last-Event-ID (%d), none missing: %s" % (last, ids2)
        seqs2 = _prediction_seqs(again)
        assert seqs2 == list(range(seqs2[0], seqs2[0] + len(seqs2)))
        assert seqs2[0] > seqs[-1]
        for e in again + first:
            if e["event"] == "detection":
                det = json.loads(e["data"])
                assert det["species"] == "Parus_major" and det["id"] > 0
                # one detection serializer: the event's bytes are what GET serves (clips off)
                got = d.wait_for(lambda: (lambda r: r if r[0] == 200 else None)(
                    d.request("/api/v1/detections/%d" % det["id"])), what="the streamed detection in the store")
                assert got[2].decode() == e["data"]
        # the client limit: a third stream is refused
        other = SSE(d.port)
        st, _, body = d.request("/api/v1/stream")
        assert st == 503 and b"stream_max_clients" in body
        other.close()
        r.close()
        # a Last-Event-ID older than the history starts at the oldest event kept (the slots
        # of the closed streams free up once the server next writes to them)
        def reconnect():
            c = SSE(d.port, last_event_id=0)
            if c.status == 200:
                return c
            c.close()
        old = d.wait_for(reconnect, timeout=5, what="a free stream slot")
        assert int(old.events(1)[0]["id"]) == 1  # the history still holds the first window
        old.close()
    finally:
        assert d.stop() == 0


def test_streams_coming_and_going_never_stall_the_daemon(model, state):
    d = Daemon(model, state, *DETECT, "stream_max_clients=6")
    try:
        streams = []
        for round in range(4):
            while len(streams) < 6:
                s = SSE(d.port, last_event_id=0 if round % 2 else None)
                assert s.status == 200, s.status
                streams.append(s)
            for s in streams:
                s.events(2)
            for s in streams[::2]:  # half of them vanish without a word
                s.close()
            streams = streams[1::2]
            seq = d.json("/api/v1/predictions/latest")["seq"]
            d.wait_for(lambda: d.json("/api/v1/predictions/latest")["seq"] > seq + 2, what="the worker going on")
            time.sleep(0.5)  # heartbeats reveal the closed ones
        t0 = time.time()
        assert d.stop() == 0  # with streams open
        assert time.time() - t0 < 10
        for s in streams:
            s.close()
    finally:
        if d.proc.poll() is None:
            d.kill()


def test_idle_streams_get_heartbeats(model, state):
    d = Daemon(model, state, *DETECT, "stream_heartbeat_seconds=0.1", speed=1.0)
    try:
        s = SSE(d.port)
        got = [s.next() for _ in range(12)]
        assert any(e.get("comment") == "heartbeat" for e in got), got
        assert any(e.get("event") == "prediction" for e in got), got
        s.close()
    finally:
        assert d.stop() == 0


def test_metrics_are_valid_prometheus_text(model, state):
    d = Daemon(model, state, *DETECT)
    try:
        d.wait_for(lambda: d.json("/api/v1/detections")["total"] >= 2, what="2 detections")
        st, headers, body = d.request("/metrics")
        assert st == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        fams = parse_prometheus(body.decode())
        for name in ("birdsong_windows_processed_total", "birdsong_inference_seconds",
                     "birdsong_capture_overruns_total", "birdsong_capture_dropped_samples_total",
                     "birdsong_detections_total", "birdsong_db_errors_total", "birdsong_disk_free_bytes",
                     "birdsong_model_info", "birdsong_build_info"):
            assert name in fams, name
            assert fams[name]["help"], name
        assert fams["birdsong_inference_seconds"]["type"] == "histogram"
        windows = metric(fams, "birdsong_windows_processed_total")
        assert windows > 0
        assert metric(fams, "birdsong_inference_seconds_count") == pytest.approx(windows, abs=2)
        assert metric(fams, "birdsong_inference_seconds_sum") > 0
        assert metric(fams, "birdsong_model_info", species="3") == 1
        assert metric(fams, "birdsong_detections_total", species="Parus_major") >= 2
        assert metric(fams, "birdsong_detections_total", species="Turdus_merula") == 0
        assert metric(fams, "birdsong_db_errors_total") == 0
        assert metric(fams, "birdsong_capture_dropped_samples_total") == 0
        assert 0 < metric(fams, "birdsong_disk_free_ratio") <= 1
        time.sleep(0.6)
        later = parse_prometheus(d.request("/metrics")[2].decode())
        assert metric(later, "birdsong_windows_processed_total") > windows
    finally:
        assert d.stop() == 0


def _flac_streaminfo(data):
    assert data[:4] == b"fLaC"
    assert data[4] & 0x7F == 0  # first metadata block is STREAMINFO
    si = data[8:8 + 34]
    bits = int.from_bytes(si[10:18], "big")
    rate = bits >> 44
    channels = ((bits >> 41) & 7) + 1
    bps = ((bits >> 36) & 31) + 1
    total = bits & ((1 << 36) - 1)
    return rate, channels, bps, total


def test_clips_are_flac_with_pre_and_post_roll(model, state):
    d = Daemon(model, state, *DETECT, "clips=true", "clip_pre_roll=0.5", "clip_post_roll=0.5")
    try:
        def with_audio():
            dets = d.json("/api/v1/detections?limit=50")["detections"]
            # not the first detection: it starts with the audio, before which there is no pre-roll
            return [x for x in dets if x["has_audio"] and x["id"] >= 2]
        got = d.wait_for(with_audio, what="a detection with audio")
        x = got[0]
        st, headers, data = d.request("/api/v1/detections/%d/audio" % x["id"])
        assert st == 200 and headers["Content-Type"] == "audio/flac"
        rate, channels, bps, total = _flac_streaminfo(data)
        assert (rate, channels, bps) == (22050, 1, 16)
        from datetime import datetime
        t = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
        want = (t(x["end"]) - t(x["start"]) + 1.0) * 22050
        assert abs(total - want) <= 0.02 * want, (total, want)
        assert os.path.exists(os.path.join(state, "clips", "%d.flac" % x["id"]))
        fams = parse_prometheus(d.request("/metrics")[2].decode())
        assert metric(fams, "birdsong_clips_saved_total") >= 1
    finally:
        assert d.stop() == 0


MOSQUITTO = "/usr/sbin/mosquitto"


@pytest.fixture
def broker(tmp_path):
    """A mosquitto broker on a free loopback port (no persistence): its port."""
    if not os.path.exists(MOSQUITTO):
        pytest.skip("mosquitto is not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n" % port)
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def mqtt_client(port, topic, name="sub"):
    """A subscriber, once the broker takes connections (10 s at most)."""
    deadline = time.time() + 10
    while True:
        try:
            return MQTTSubscriber(port, topic, name=name)
        except OSError:
            assert time.time() < deadline, "mosquitto did not start"
            time.sleep(0.1)


def test_mqtt_round_trip_through_mosquitto(model, state, broker):
    port, d = broker, None
    try:
        sub = mqtt_client(port, "birdsong/test/#")
        d = Daemon(model, state, *DETECT, "mqtt=true", "mqtt_host=127.0.0.1", "mqtt_port=%d" % port,
                   "mqtt_topic=birdsong/test/detections", "mqtt_qos=1")
        msgs = sub.messages(3)
        sub.close()
        for topic, payload in msgs:
            assert topic == "birdsong/test/detections"
            det = json.loads(payload)
            assert det["species"] == "Parus_major"
            assert set(det) >= {"id", "start", "end", "max_probability", "mean_probability", "n_windows"}
        last = json.loads(msgs[-1][1])
        stored = d.wait_for(lambda: d.request("/api/v1/detections/%d" % last["id"])[0] == 200 and
                            d.json("/api/v1/detections/%d" % last["id"]), what="the published detection in the store")
        assert stored["start"] == last["start"] and stored["max_probability"] == pytest.approx(last["max_probability"])
        for _, payload in msgs:  # one detection serializer: the bytes GET serves (clips off)
            det = json.loads(payload)
            assert d.request("/api/v1/detections/%d" % det["id"])[2].decode() == payload
        fams = parse_prometheus(d.request("/metrics")[2].decode())
        assert metric(fams, "birdsong_mqtt_connected") == 1
        assert metric(fams, "birdsong_mqtt_published_total") >= 3
    finally:
        if d:
            assert d.stop() == 0


def test_home_assistant_discovery_on_mosquitto_with_stale_species_removed(state, broker, tmp_path):
    port, d = broker, None
    model = make_model(str(tmp_path / "ha.bsm"))  # replaced below: a reload with other species
    try:
        pub = mqtt_client(port, "unused/#", name="pub")
        # left by an earlier run whose model had another species, and another station's
        stale = "homeassistant/sensor/garden/corvus_corax/config"
        other = "homeassistant/sensor/attic/parus_major/config"
        pub.publish(stale, '{"name":"Corvus corax"}')
        pub.publish(other, '{"name":"Parus major"}')
        time.sleep(0.3)
        d = Daemon(model, state, "species_thresholds=Parus_major:0", "max_event_seconds=2", "mqtt=true", "mqtt_host=127.0.0.1", "mqtt_port=%d" % port,
                   "mqtt_homeassistant=true", "mqtt_homeassistant_node=garden")
        d.wait_for(lambda: d.json("/api/v1/detections")["total"] >= 1, what="a detection")
        time.sleep(BSD_HA_WAIT)

        def retained():
            sub = mqtt_client(port, "#", name="check")
            try:
                return sub.retained(1.5)
            finally:
                sub.close()
        got = d.wait_for(lambda: (lambda r: r if "birdsong/garden/health" in r and stale not in r else None)(retained()),
                         timeout=20, what="the health state and the stale config removed")
        assert other in got  # another node's configs are not ours to remove
        for label in LABELS:
            obj = label.lower()
            cfg = json.loads(got["homeassistant/sensor/garden/%s/config" % obj])
            assert cfg["name"] == label.replace("_", " ")
            assert cfg["unique_id"] == "birdsong_garden_" + obj and cfg["device_class"] == "timestamp"
            assert cfg["state_topic"] == "birdsong/garden/species/" + obj
            assert cfg["device"]["identifiers"] == ["birdsong_garden"]
        health = json.loads(got["homeassistant/binary_sensor/garden/health/config"])
        assert health["device_class"] == "problem" and health["state_topic"] == "birdsong/garden/health"
        level = json.loads(got["homeassistant/sensor/garden/sound_level/config"])
        assert level["unit_of_measurement"] == "dBFS" and level["state_class"] == "measurement"
        assert json.loads(got["birdsong/garden/health"])["status"] == "ok"
        assert -150 <= json.loads(got["birdsong/garden/sound_level"])["rms_dbfs"] < 0
        # the species' state is its latest detection, byte for byte as GET serves it
        det = got["birdsong/garden/species/parus_major"]
        assert d.request("/api/v1/detections/%d" % json.loads(det)["id"])[2].decode() == det
        # a reload without Turdus merula and with Pica pica: its sensor goes, the new one comes
        subprocess.run([MAKE_MODEL, model, "Parus_major,Sitta_europaea,Pica_pica"], check=True, capture_output=True)
        d.proc.send_signal(signal.SIGHUP)
        gone = "homeassistant/sensor/garden/turdus_merula/config"
        got = d.wait_for(lambda: (lambda r: r if gone not in r and "homeassistant/sensor/garden/pica_pica/config" in r
                                  else None)(retained()), timeout=20, what="the sensors of the new model's species")
        assert "homeassistant/sensor/garden/parus_major/config" in got
        pub.close()
    finally:
        if d:
            assert d.stop() == 0


BSD_HA_WAIT = 0.5  # the daemon's states come every 10 s; the first with the first window


CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (apt-get install chromium)")

PAGE_STATE_JS = (
    "JSON.stringify({mode: document.body.dataset.mode || '',"
    " bars: [...document.querySelectorAll('#bars .bar')].map(b => [b.dataset.species,"
    "   b.querySelector('.val').textContent]),"
    " disabled: [...document.querySelectorAll('#bars .bar.disabled')].map(b => b.dataset.species),"
    " det: [...document.querySelectorAll('#detections tr[data-id]')].map(r => r.children[1].textContent),"
    " status: document.getElementById('status').textContent,"
    " level: document.querySelector('#level .val').textContent,"
    " level_width: document.querySelector('#level .rms').style.width,"
    " clock: document.getElementById('clock').textContent})")


@contextlib.contextmanager
def chromium(tmp_path):
    """Headless Chromium on about:blank, driven over the DevTools protocol; console and
    exception events are recorded from before the first navigation."""
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--user-data-dir=" + str(tmp_path / "chromium"), "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    cdp = None
    try:
        ws, buf, deadline = None, b"", time.time() + 30
        while ws is None and time.time() < deadline:
            r, _, _ = select.select([browser.stderr], [], [], 0.5)
            if r:
                chunk = os.read(browser.stderr.fileno(), 65536)
                assert chunk, "chromium exited: " + buf.decode(errors="replace")[-2000:]
                buf += chunk
                for line in buf.decode(errors="replace").splitlines():
                    if "DevTools listening on ws://" in line:
                        ws = line.split("listening on ")[1].strip()
        assert ws, "chromium did not start its DevTools server"
        devport = int(ws.split(":")[2].split("/")[0])
        pages = json.loads(urllib.request.urlopen("http://127.0.0.1:%d/json/list" % devport, timeout=10).read())
        cdp = CDP([p for p in pages if p["type"] == "page"][0]["webSocketDebuggerUrl"])
        cdp.call("Runtime.enable")
        cdp.call("Log.enable")
        cdp.call("Page.enable")
        yield cdp
    finally:
        if cdp:
            cdp.close()
        try:
            os.killpg(browser.pid, signal.SIGTERM)  # the wrapper script and its children, all ours
        except ProcessLookupError:
            pass
        browser.wait(timeout=15)
        browser.stderr.close()


def page_errors(cdp):
    out = []
    for ev in cdp.events:
        m, p = ev.get("method"), ev.get("params", {})
        if m == "Runtime.exceptionThrown":
            out.append(p["exceptionDetails"].get("text", "") + str(p["exceptionDetails"].get("exception", "")))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(str(p.get("args")))
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.append(p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
    return out


def open_page(cdp, url, ready, timeout=20):
    """Navigates and polls the page state until ready(state) holds (or the timeout)."""
    cdp.events.clear()
    cdp.call("Page.navigate", url=url)
    deadline, seen = time.time() + timeout, {}
    while time.time() < deadline:
        cdp.pump(0.5)
        seen = json.loads(cdp.evaluate(PAGE_STATE_JS) or "{}")
        if ready(seen):
            break
    return seen


@needs_chromium
def test_dashboard_in_headless_chromium(model, state, tmp_path):
    d = Daemon(model, state, *DETECT)
    try:
        with chromium(tmp_path) as cdp:
            for url, mode in ((d.base + "/", "live (SSE)"), (d.base + "/?poll", "polling")):
                seen = open_page(cdp, url, lambda s: (
                    s.get("mode") == mode and s.get("det") and "inference" in s.get("status", "")
                    and all(v not in ("", "\u2013") for _, v in s.get("bars", [])) and s.get("clock")))
                assert seen["mode"] == mode, seen
                assert [s for s, _ in seen["bars"]] == LABELS, seen
                assert seen["disabled"] == ["Turdus_merula"], seen  # exclude_species, from /detections/settings
                for _, v in seen["bars"]:
                    assert 0.0 <= float(v) <= 1.0
                assert "Parus_major" in seen["det"] and "Turdus_merula" not in seen["det"], seen
                assert "ms mean" in seen["status"] and "windows" in seen["status"], seen
                assert seen["level"].endswith("dBFS"), seen  # the meter: "RMS / peak dBFS" of a recording
                assert 0 < float(seen["level_width"].rstrip("%")) < 100, seen
                timeline = cdp.evaluate("(() => { const c = document.getElementById('timeline');"
                                        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                                        " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })()")
                assert timeline > 100, "the timeline canvas is empty"
                assert page_errors(cdp) == [], page_errors(cdp)
    finally:
        assert d.stop() == 0


@needs_chromium
def test_dashboard_falls_back_to_polling_when_the_stream_is_refused(model, state, tmp_path):
    d = Daemon(model, state, *DETECT, "stream_max_clients=1")
    hog = d.wait_for(lambda: (lambda s: s if s.status == 200 else s.close())(SSE(d.port)), what="the one slot")
    try:
        with chromium(tmp_path) as cdp:
            seen = open_page(cdp, d.base + "/", lambda s: s.get("mode") == "polling" and s.get("det"))
            assert seen["mode"] == "polling" and "Parus_major" in seen["det"], seen
            # the refused stream is a network error in the log, not a script error
            assert not [e for e in cdp.events if e.get("method") == "Runtime.exceptionThrown"]
    finally:
        hog.close()
        assert d.stop() == 0


DEMO_MODEL = os.path.join(REPO, "models", "demo.bsm")
SHARED = os.environ.get("BIRDSONG_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))
BIRDS = os.path.join(SHARED, "birds-6sp")
BIRDSONG = os.path.join(os.path.dirname(DAEMON), "birdsong")


def recognised_recording():
    """A real recording (read from the shared data, never copied) that the demo model, by
    `birdsong classify`, puts its own species first on (mean of the windows) and above that
    species' threshold in some window, so playing it must produce a detection of it.
    Candidates: the first files of each species folder, in name order."""
    candidates = []
    for species in sorted(os.listdir(BIRDS)):
        folder = os.path.join(BIRDS, species)
        if os.path.isdir(folder):
            candidates += [(species, os.path.join(folder, f)) for f in sorted(os.listdir(folder))[:4]]
    out = subprocess.run([BIRDSONG, "classify", "--model", DEMO_MODEL, "--format", "json"]
                         + [path for _, path in candidates], capture_output=True, timeout=120)
    doc = json.loads(out.stdout)
    inspect = json.loads(subprocess.run([BIRDSONG, "inspect", DEMO_MODEL], capture_output=True,
                                        timeout=30).stdout)
    labels, thresholds = doc["species"], inspect["thresholds"]
    for (species, path), f in zip(candidates, doc["files"]):
        windows = [w["probabilities"] for w in f["windows"]]
        if len(windows) < 3 or species not in labels:
            continue
        k = labels.index(species)
        means = [sum(w[i] for w in windows) / len(windows) for i in range(len(labels))]
        if max(range(len(labels)), key=means.__getitem__) == k and max(w[k] for w in windows) >= thresholds[k]:
            return species, path
    pytest.fail("the demo model recognises none of %d real recordings" % len(candidates))


@needs_chromium
@pytest.mark.skipif(not os.path.exists(DEMO_MODEL), reason="models/demo.bsm is not in this tree")
@pytest.mark.skipif(not os.path.isdir(BIRDS), reason="the shared birds-6sp data is not available")
def test_dashboard_shows_the_species_of_a_real_recording(state, tmp_path):
    """The demo model playing a real recording of a species it recognises: the page's
    detections list names that species."""
    species, recording = recognised_recording()
    port = free_port()
    log = open(str(tmp_path / "demo.log"), "wb")
    proc = subprocess.Popen([DAEMON, "-m", DEMO_MODEL, "-i", recording, "--input-speed", "4", "-l",
                             "127.0.0.1:%d" % port, "--state-dir", state], stdout=log, stderr=subprocess.STDOUT)
    try:
        with chromium(tmp_path) as cdp:
            seen = open_page(cdp, "http://127.0.0.1:%d/" % port,
                             lambda s: species in s.get("det", []), timeout=30)
            assert species in seen.get("det", []), (recording, seen)
            assert seen["mode"] == "live (SSE)"
            assert page_errors(cdp) == [], page_errors(cdp)
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
        log.close()


@needs_chromium
def test_dashboard_shows_a_clicked_detections_spectrogram_with_a_play_button(model, state, tmp_path):
    import base64
    d = Daemon(model, state, *DETECT, "clips=true", "clip_post_roll=0.5")
    try:
        d.wait_for(lambda: any(x["has_audio"] for x in d.json("/api/v1/detections?limit=20")["detections"]),
                   what="a detection with its clip")
        with chromium(tmp_path) as cdp:
            open_page(cdp, d.base + "/", lambda s: s.get("det"))
            cdp.evaluate("document.querySelector('#detections tr[data-id]').click()")
            deadline, shown = time.time() + 15, None
            while time.time() < deadline:
                cdp.pump(0.3)
                shown = cdp.evaluate("(() => { const i = document.getElementById('detail-img');"
                                     " const a = document.getElementById('detail-audio');"
                                     " return {w: i.naturalWidth, done: i.complete, src: i.getAttribute('src'),"
                                     " audio: !a.hidden && !!a.getAttribute('src'), controls: a.controls,"
                                     " hidden: document.getElementById('detail').hidden}; })()")
                if shown["done"] and shown["w"] > 0:
                    break
            assert shown["w"] == 672 and not shown["hidden"], shown
            assert shown["src"].endswith("/spectrogram.png") and shown["audio"] and shown["controls"], shown
            cdp.evaluate("document.getElementById('detail-img').scrollIntoView()")
            cdp.pump(0.3)
            shot = base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"])
            w, h, rows = decode_png(shot)
            seen = sum(viridis_like(rows[y][x], tol=8) for y in range(0, h, 3) for x in range(0, w, 3))
            assert seen > 2000, "the screenshot shows no spectrogram (%d viridis pixels sampled)" % seen
            assert page_errors(cdp) == [], page_errors(cdp)
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("setting, words", [
    ("species_thresholds=Nope:0.5", ["species_thresholds", "Nope"]),
    ("species_thresholds=Parus_major", ["species_thresholds", "Label:value"]),
    ("include_species=Parus_major, Bogus", ["include_species", "Bogus"]),
    ("species_suppress_seconds=Sitta_europaea:-3", ["species_suppress_seconds", "-3"]),
    ("min_confidence=1.5", ["min_confidence", "1.5"]),
])
def test_bad_detection_settings_stop_the_start_naming_the_directive(model, state, setting, words):
    r = subprocess.run([DAEMON, "-m", model, "-i", AUDIO, "-l", "127.0.0.1:%d" % free_port(), "--state-dir", state,
                        "-s", setting], capture_output=True, timeout=20)
    assert r.returncode == 2, r
    err = r.stderr.decode()
    for w in words:
        assert w in err, err


def test_check_config_checks_the_detection_settings_against_the_model(model):
    r = subprocess.run([DAEMON, "-m", model, "-s", "exclude_species=Turdus_merula, Pica_pica", "--check-config"],
                       capture_output=True, timeout=20)
    assert r.returncode == 2 and b"exclude_species" in r.stderr and b"Pica_pica" in r.stderr, r
    r = subprocess.run([DAEMON, "-m", model, "-s", "exclude_species=Turdus_merula", "--check-config"],
                       capture_output=True, timeout=20)
    assert r.returncode == 0, r


def test_reload_is_refused_when_the_settings_do_not_fit_the_new_labels(state, tmp_path):
    path = str(tmp_path / "live.bsm")
    make_model(path)
    d = Daemon(path, state, *DETECT)
    try:
        subprocess.run([MAKE_MODEL, path, "Corvus_corax,Pica_pica"], check=True, capture_output=True)
        d.proc.send_signal(signal.SIGHUP)
        reload = d.wait_for(lambda: (lambda r: r if r.get("failed") else None)(
            d.json("/api/v1/status")["model"]["reload"]), what="the refused reload")
        assert "species_thresholds" in reload["last_error"] and "Parus_major" in reload["last_error"], reload
        assert [p["species"] for p in d.json("/api/v1/predictions/latest")["probabilities"]] == LABELS
        # a model that still has every species the settings name is served
        subprocess.run([MAKE_MODEL, path, ",".join(LABELS + ["Pica_pica"])], check=True, capture_output=True)
        d.proc.send_signal(signal.SIGHUP)
        def species_now():
            st, _, body = d.request("/api/v1/predictions/latest")  # 503 while the history restarts
            return st == 200 and len(json.loads(body)["probabilities"])
        d.wait_for(lambda: species_now() == 4, what="the new model")
        before = d.json("/api/v1/detections?limit=1")["detections"][0]["id"]
        d.wait_for(lambda: d.json("/api/v1/detections?limit=1")["detections"][0]["id"] > before + 1,
                   what="detections with the new model")
        fams = parse_prometheus(d.request("/metrics")[2].decode())
        assert metric(fams, "birdsong_detections_total", species="Pica_pica") >= 0
        assert metric(fams, "birdsong_model_info", species="4") == 1
    finally:
        assert d.stop() == 0


# ---- webhooks ------------------------------------------------------------------------------

class _Receiver:
    """A local HTTP server taking webhook POSTs; the first `fail_first` get 503."""

    def __init__(self, fail_first=0):
        import http.server
        import threading
        rec = self
        self.posts, self.attempts, self.fail_first = [], 0, fail_first
        self.lock = threading.Lock()

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with rec.lock:
                    rec.attempts += 1
                    fail = rec.attempts <= rec.fail_first
                    if not fail:
                        rec.posts.append((self.path, dict(self.headers), body))
                self.send_response(503 if fail else 204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_webhooks_deliver_each_detection_once_signed_and_retry_a_failing_receiver(model, state):
    import hashlib
    import hmac
    good, flaky = _Receiver(), _Receiver(fail_first=3)
    secret, token = "s3cret-for-hmac", "bearer-token-0123456789"
    d = Daemon(model, state, *DETECT, "webhook_url=%s %s" % (good.url, flaky.url), "webhook_secret=" + secret,
               "webhook_token=" + token, "webhook_retry_max_seconds=0.3", "public_url=http://station.example:8080/")
    try:
        d.wait_for(lambda: len(good.posts) >= 3 and len(flaky.posts) >= 3, timeout=30, what="3 webhooks at each URL")
        assert flaky.attempts >= len(flaky.posts) + 3  # the three 503s were retried
        fams = parse_prometheus(d.request("/metrics")[2].decode())
        assert metric(fams, "birdsong_webhook_retries_total") >= 3
        assert metric(fams, "birdsong_webhook_delivered_total") >= 6
        assert metric(fams, "birdsong_webhook_dropped_total") == 0 and metric(fams, "birdsong_webhook_failed_total") == 0
    finally:
        assert d.stop() == 0
        good.close()
        flaky.close()
    for rec in (good, flaky):
        ids = []
        for path, headers, body in rec.posts:
            assert path == "/hook" and headers["Content-Type"] == "application/json"
            assert headers["Authorization"] == "Bearer " + token
            want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Birdsong-Signature"] == want
            p = json.loads(body)
            det = p["detection"]
            ids.append(det["id"])
            assert det["species"] == "Parus_major"
            assert p["links"]["detection"] == "http://station.example:8080/api/v1/detections/%d" % det["id"]
            assert "audio" not in p["links"]  # clips are off
        assert ids == sorted(ids) and len(set(ids)) == len(ids), ids  # in order, nothing duplicated
        assert ids[:3] == list(range(ids[0], ids[0] + 3)), ids  # nothing skipped
    # the payload's detection is the stored one, byte for byte (the one serializer)
    d2 = Daemon(model, state, *DETECT)
    try:
        for _, _, body in good.posts[:3]:
            det = json.loads(body)["detection"]
            assert body.startswith(b'{"detection":' + d2.request("/api/v1/detections/%d" % det["id"])[2] + b',')
    finally:
        assert d2.stop() == 0


def test_birdsongd_loads_libcurl_and_ffmpeg_only_when_used():
    # webhooks and network sources load their libraries with dlopen (their memory is paid only
    # by stations that use them); the test above shows the webhooks work when loaded
    r = subprocess.run(["readelf", "-d", DAEMON], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    needed = [l for l in r.stdout.splitlines() if "NEEDED" in l]
    linked = [l for l in needed if any(k in l for k in ("libcurl", "libssl", "libcrypto.", "libavformat", "libavcodec"))]
    assert needed and not linked, linked


def test_a_dead_webhook_never_blocks_the_worker_and_drops_are_counted(model, state):
    dead = "http://127.0.0.1:%d/hook" % free_port()  # nobody listens
    d = Daemon(model, state, *DETECT, "webhook_url=" + dead, "webhook_queue=2", "webhook_retries=1000",
               "webhook_retry_max_seconds=5")
    try:
        d.wait_for(lambda: metric(parse_prometheus(d.request("/metrics")[2].decode()),
                                  "birdsong_webhook_dropped_total") >= 2, timeout=30, what="dropped webhooks")
        fams = parse_prometheus(d.request("/metrics")[2].decode())
        assert metric(fams, "birdsong_webhook_queue_length") == 2
        assert metric(fams, "birdsong_webhook_delivered_total") == 0
        w0 = metric(fams, "birdsong_windows_processed_total")
        time.sleep(1.0)
        assert metric(parse_prometheus(d.request("/metrics")[2].decode()), "birdsong_windows_processed_total") > w0
        assert d.status("/api/v1/health") == 200
    finally:
        assert d.stop() == 0
