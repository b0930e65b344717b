"""birdsongd with several sources in one daemon: [source NAME] sections and --source, one
model shared by every source, per-source results and endpoints, the first source behind the
single-source endpoints, and each source's windows equal to `birdsong features` on its file."""
import os
import subprocess

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
        for path, status in (("/api/v1/sources/nope", 404), ("/api/v1/sources/second/other", 404),
                             ("/api/v1/sources/second/predictions/latest?since=1", 400),
                             ("/api/v1/sources/second?top=1", 400), ("/api/v1/sources/", 404)):
            assert d.get(path)[0] == status, path
        import yaml  # python3-yaml, installed by scripts/install-deps.sh
        spec = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "openapi.yaml")))
        for path, tpl in (("/api/v1/sources/second", "/api/v1/sources/{name}"),
                          ("/api/v1/sources/second/predictions/latest", "/api/v1/sources/{name}/predictions/latest"),
                          ("/api/v1/sources/second/predictions", "/api/v1/sources/{name}/predictions"),
                          ("/api/v1/sources/nope", "/api/v1/sources/{name}")):
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
