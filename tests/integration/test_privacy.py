"""The privacy filter of birdsongd (issue 16) on the real binary: a model with a "human" filter
class, clips on. With privacy_threshold at 0.01 every window of the untrained test network
(outputs near 0.5) holds "human": no clip is ever
written, no detection is emitted (privacy_action = drop), every prediction (latest, history,
SSE) carries "filters", /metrics counts the filtered windows. privacy = off on the same model
and audio detects and writes clips (so the test can fail); keep emits without clips. With the
trained demo model, full-band synthetic speech (espeak-ng) is filtered the same way."""
import json
import os
import shutil
import subprocess
import time

import pytest

from station_helpers import AUDIO, DAEMON, MAKE_MODEL, REPO, SSE, Daemon, free_port, metric, parse_prometheus

SPECIES = ["Parus_major", "Sitta_europaea"]
# Parus_major detects in every window (threshold 0), events of at most 2 s
DETECT = ["species_thresholds=Parus_major:0, Sitta_europaea:1", "max_event_seconds=2", "clips=true",
          "clip_pre_roll=0.5", "clip_post_roll=0.5"]


def human_model(path, human_threshold):
    subprocess.run([MAKE_MODEL, path, "Parus_major=0.5,Sitta_europaea=0.5,~human=%g" % human_threshold], check=True,
                   capture_output=True)
    return path


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    return str(d)


def clips(state):
    d = os.path.join(state, "clips")
    return [f for f in os.listdir(d) if f.endswith(".flac")] if os.path.isdir(d) else []


def run_for(d, seconds):
    """Lets the daemon play `seconds` of audio time (it plays at 4x), bounded."""
    start = d.json("/api/v1/predictions/latest")["seq"]
    d.wait_for(lambda: d.json("/api/v1/predictions/latest")["seq"] >= start + int(seconds * 2), timeout=30,
               what="%g s of windows" % seconds)


def test_human_voice_everywhere_means_no_clip_no_detection_and_filters_reported(tmp_path, state):
    model = human_model(str(tmp_path / "h.bsm"), 0.5)
    d = Daemon(model, state, *DETECT, "privacy_threshold=0.01")
    try:
        sse = SSE(d.port)
        try:
            (ev,) = sse.events(1, kinds=("prediction",))
        finally:
            sse.close()
        run_for(d, 12)
        latest = d.json("/api/v1/predictions/latest")
        assert [p["species"] for p in latest["probabilities"]] == SPECIES, latest
        assert [f["name"] for f in latest["filters"]] == ["human"], latest
        assert 0 <= latest["filters"][0]["probability"] <= 1
        hist = d.json("/api/v1/predictions?since=0&limit=5")["predictions"]
        assert hist and all([f["name"] for f in p["filters"]] == ["human"] for p in hist)
        sse_pred = json.loads(ev["data"])
        assert [f["name"] for f in sse_pred["filters"]] == ["human"] and len(sse_pred["probabilities"]) == 2
        top = d.json("/api/v1/predictions/latest?top=2")
        assert d.status("/api/v1/predictions/latest?top=3") == 400, "top counts species only"
        assert len(top["probabilities"]) == 2, "top-K lists species only"
        sp = d.json("/api/v1/species")
        assert [s["species"] for s in sp["species"]] == SPECIES and sp["filter_classes"][0]["name"] == "human"
        model_info = d.json("/api/v1/status")["model"]
        assert model_info["labels"] == SPECIES + ["human"] and model_info["filter_classes"] == ["human"]
        assert d.json("/api/v1/detections?limit=50")["detections"] == []
        fams = parse_prometheus(d.request("/metrics")[2].decode())
        assert metric(fams, "birdsong_privacy_windows_filtered_total") >= 20
        assert metric(fams, "birdsong_privacy_detections_dropped_total") >= 1
        assert metric(fams, "birdsong_clips_saved_total") == 0
    finally:
        assert d.stop() == 0
    assert clips(state) == [], "audio was written while every window held human voice"
    assert "privacy: detection of Parus_major" in d.read_log()


def test_privacy_off_and_keep_show_what_the_filter_prevents(tmp_path):
    model = human_model(str(tmp_path / "h.bsm"), 0.5)
    for setting, want_dets, want_clips in (("privacy=off", True, True), ("privacy_action=keep", True, False)):
        state = str(tmp_path / setting.replace("=", "_"))
        os.mkdir(state)
        d = Daemon(model, state, *DETECT, "privacy_threshold=0.01", setting)
        try:
            d.wait_for(lambda: len(d.json("/api/v1/detections?limit=50")["detections"]) >= 2, timeout=30,
                       what="detections with " + setting)
            run_for(d, 4)
        finally:
            assert d.stop() == 0
        assert (len(clips(state)) > 0) == want_clips, (setting, clips(state))


def test_no_human_no_filter(tmp_path, state):
    # the human output never reaches privacy_threshold 1 (above any sigmoid of this net): the
    # filter is on but never fires, detections and clips go through after the privacy delay
    model = human_model(str(tmp_path / "h.bsm"), 0.5)
    d = Daemon(model, state, *DETECT, "privacy_threshold=1")
    try:
        d.wait_for(lambda: [x for x in d.json("/api/v1/detections?limit=50")["detections"] if x["has_audio"]],
                   timeout=30, what="a detection with its clip")
        fams = parse_prometheus(d.request("/metrics")[2].decode())
        assert metric(fams, "birdsong_privacy_windows_filtered_total") == 0
    finally:
        assert d.stop() == 0
    assert clips(state)


@pytest.mark.parametrize("setting, words", [
    ("privacy=maybe", ["privacy", "maybe"]),
    ("privacy_action=blur", ["privacy_action", "blur"]),
    ("privacy_margin=9", ["privacy_margin", "9"]),
    ("privacy_threshold=0", ["privacy_threshold", "0"]),
])
def test_bad_privacy_settings_stop_the_start(tmp_path, state, setting, words):
    model = human_model(str(tmp_path / "h.bsm"), 0.5)
    r = subprocess.run([DAEMON, "-m", model, "-i", AUDIO, "-l", "127.0.0.1:%d" % free_port(), "--state-dir", state,
                        "-s", setting], capture_output=True, timeout=20)
    assert r.returncode == 2, r
    for w in words:
        assert w in r.stderr.decode(), r.stderr


DEMO = os.path.join(REPO, "models", "demo.bsm")
ESPEAK = shutil.which("espeak-ng")
TEXT = ("Good morning. The weather station recorded rain overnight, and the river is higher than last week. "
        "We will walk along the north trail, then stop at the bridge to count the birds we can hear.")


def demo_has_human():
    if not os.path.exists(DEMO):
        return False
    out = subprocess.run([os.path.join(os.path.dirname(DAEMON), "birdsong"), "inspect", DEMO], capture_output=True,
                         timeout=30)
    return out.returncode == 0 and "human" in json.loads(out.stdout).get("filter_classes", [])


@pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed (scripts/install-deps.sh installs it)")
@pytest.mark.skipif(not demo_has_human(), reason="models/demo.bsm has no human filter class")
@pytest.mark.parametrize("voice", ["en", "en+f3"])
def test_demo_model_fed_full_band_speech_writes_no_audio(tmp_path, state, voice):
    """The trained demo model, clips on, default settings, fed full-band synthetic speech
    (22050 Hz, espeak-ng, never heard in training): no clip written, no species detected,
    human reported in the predictions."""
    wav = str(tmp_path / "speech.wav")
    subprocess.run([ESPEAK, "-v", voice, "-s", "150", "-w", wav, TEXT], check=True, capture_output=True, timeout=60)
    port = free_port()
    log = open(str(tmp_path / "d.log"), "wb")
    proc = subprocess.Popen([DAEMON, "-m", DEMO, "-i", wav, "--input-loop", "--input-speed", "4", "-l",
                             "127.0.0.1:%d" % port, "--state-dir", state, "-s", "clips=true"],
                            stdout=log, stderr=subprocess.STDOUT)
    d = Daemon.__new__(Daemon)  # reuse the HTTP helpers on this process
    d.port, d.base, d.proc, d.log, d.log_path = port, "http://127.0.0.1:%d" % port, proc, log, str(tmp_path / "d.log")
    try:
        def up():
            try:
                return d.status("/api/v1/predictions/latest") == 200
            except OSError:
                return False
        d.wait_for(up, timeout=20, what="the first prediction")
        # two passes over the ~13 s of speech (4x: about 7 s)
        d.wait_for(lambda: d.json("/api/v1/predictions/latest")["seq"] >= 52, timeout=40, what="52 windows")
        hist = d.json("/api/v1/predictions?since=0&limit=1000")["predictions"]
        human = [p["filters"][0]["probability"] for p in hist]
        assert all(p["filters"][0]["name"] == "human" for p in hist)
        assert sum(h >= 0.5 for h in human) >= 5, human  # privacy_threshold's default
        fams = parse_prometheus(d.request("/metrics")[2].decode())
        assert metric(fams, "birdsong_privacy_windows_filtered_total") >= 5
        assert d.json("/api/v1/detections?limit=50")["detections"] == []
    finally:
        assert d.stop() == 0
    assert clips(state) == [], "audio of speech was written"
