"""species_calendar (issue 16) on the real birdsongd: a species outside its window at the
site gets probabilities but no detection; inside it, it detects; a bad file or an unknown
species stops the start naming the directive."""
import os
import subprocess
import time

import pytest

from station_helpers import AUDIO, DAEMON, MAKE_MODEL, Daemon, free_port, metric, parse_prometheus

DETECT = ["species_thresholds=Parus_major:0, Sitta_europaea:1", "max_event_seconds=2"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cal") / "m.bsm")
    subprocess.run([MAKE_MODEL, path, "Parus_major,Sitta_europaea"], check=True, capture_output=True)
    return path


def today():
    return time.localtime().tm_yday


def window(inside):
    d = today()
    if inside:
        return d, d
    return (d % 366) + 1 if d < 366 else 1, (d + 1) % 366 + 1  # the two days after today


def run(model, tmp_path, calendar_text):
    state = str(tmp_path / "state")
    os.makedirs(state, exist_ok=True)
    cal = tmp_path / "calendar.csv"
    cal.write_text(calendar_text)
    return Daemon(model, state, *DETECT, "species_calendar=%s" % cal)


def test_out_of_season_species_gets_probabilities_but_no_detection(model, tmp_path):
    a, b = window(False)
    d = run(model, tmp_path, "species,first_day,last_day\nParus_major,%d,%d\n" % (a, b))
    try:
        d.wait_for(lambda: parse_prometheus(d.request("/metrics")[2].decode())
                   and metric(parse_prometheus(d.request("/metrics")[2].decode()),
                              "birdsong_calendar_detections_blocked_total") >= 2, timeout=30,
                   what="blocked detections")
        assert d.json("/api/v1/detections?limit=50")["detections"] == []
        latest = d.json("/api/v1/predictions/latest")
        assert [p["species"] for p in latest["probabilities"]] == ["Parus_major", "Sitta_europaea"]
    finally:
        assert d.stop() == 0


def test_in_season_species_detects(model, tmp_path):
    a, b = window(True)
    d = run(model, tmp_path, "Parus_major,%d,%d\n" % (a, b))
    try:
        d.wait_for(lambda: d.json("/api/v1/detections?limit=50")["detections"], timeout=30, what="a detection")
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("text, words", [
    ("Pica_pica,1,366\n", ["species_calendar", "Pica_pica is not a species of the model"]),
    ("Parus_major,1\n", ["line 1", "3 fields"]),
    ("Parus_major,0,400\n", ["days must be integers from 1 to 366"]),
])
def test_bad_calendar_stops_the_start(model, tmp_path, text, words):
    cal = tmp_path / "c.csv"
    cal.write_text(text)
    state = tmp_path / "s"
    state.mkdir()
    r = subprocess.run([DAEMON, "-m", model, "-i", AUDIO, "-l", "127.0.0.1:%d" % free_port(), "--state-dir",
                        str(state), "-s", "species_calendar=%s" % cal], capture_output=True, timeout=20)
    assert r.returncode == 2, r
    for w in words:
        assert w in r.stderr.decode(), r.stderr
