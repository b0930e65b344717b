"""birdsong train / eval / classify on the real binaries: a seconds-long end-to-end training
on a few real recordings, classify output formats, the HTML report, and every CLI error path."""
import csv
import io
import json
import os
import shutil
import subprocess
import re

import pytest

BUILD = os.environ.get("BIRDSONG_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
BIN = os.path.join(BUILD, "birdsong")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.environ.get("BIRDSONG_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
BIRDS = os.path.join(DATA, "birds-6sp")
SOUNDSCAPES = os.path.join(DATA, "soundscapes")

needs_data = pytest.mark.skipif(not os.path.isdir(BIRDS), reason=f"real data not found at {BIRDS}")


def run(*args, check=None, timeout=300):
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def short_files(species, n):
    """The n shortest recordings of a species (keeps the training to seconds)."""
    d = os.path.join(BIRDS, species)
    files = sorted(os.listdir(d), key=lambda f: (os.path.getsize(os.path.join(d, f)), f))
    return [os.path.join(d, f) for f in files if f.endswith(".flac")][:n]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    if not os.path.isdir(BIRDS):
        pytest.skip(f"real data not found at {BIRDS}")
    tmp = tmp_path_factory.mktemp("train")
    manifest = tmp / "small.tsv"
    rows = ["path\tlabels\tgroup"]
    for sp in ("Vireo_griseus", "Cecropis_daurica"):
        for f in short_files(sp, 5):
            rows.append(f"{f}\t{sp}\t{os.path.basename(f)}")
    rows.append(f"{os.path.join(SOUNDSCAPES, 'opensoundscape', 'rugr_drum.flac')}\t\tdrum")
    manifest.write_text("\n".join(rows) + "\n")
    model = tmp / "small.bsm"
    p = run("train", "--data", str(manifest), "--out", str(model), "--arch", "convnet-lite",
            "--epochs", "6", "--patience", "0", "--val-fraction", "0.4", "--no-augment",
            "--cache", str(tmp / "cache"), "--threads", "2", check=0)
    return {"tmp": tmp, "manifest": manifest, "model": model, "train": p}


@needs_data
def test_training_loss_falls_and_model_loads(trained):
    log = trained["train"].stderr
    losses = [float(m) for m in re.findall(r"train loss ([0-9.]+)", log)]
    assert len(losses) == 6, log
    assert losses[-1] < losses[0] * 0.8, losses
    assert os.path.getsize(trained["model"]) > 1000
    assert "wrote" in trained["train"].stdout
    # the same loader the daemon uses: classify loads and runs the model
    f = short_files("Vireo_griseus", 1)[0]
    run("classify", "--model", str(trained["model"]), f, check=0)
    inspect = run("inspect", str(trained["model"]))
    if "unknown command" not in inspect.stderr:
        assert inspect.returncode == 0, inspect.stderr
        assert "Vireo_griseus" in inspect.stdout


@needs_data
def test_model_provenance_has_history_and_metrics(trained):
    # the provenance JSON is in the file; eval --report draws it
    out = trained["tmp"] / "r.html"
    p = run("eval", "--model", str(trained["model"]), "--data", str(trained["manifest"]),
            "--cache", str(trained["tmp"] / "cache"), "--json", "--report", str(out), check=0)
    j = json.loads(p.stdout)
    for k in ("window_accuracy", "recording_accuracy", "macro_map", "recording_macro_map", "ece", "mean_active_labelled",
              "mean_active_background", "per_species", "confusion", "reliability", "species"):
        assert k in j, k
    assert j["species"] == ["Cecropis_daurica", "Vireo_griseus"]
    assert j["background_windows"] > 0
    assert len(j["reliability"]) == 10
    assert sum(b["count"] for b in j["reliability"]) == j["windows"] * 2
    assert len(j["confusion"]) == 2 and len(j["confusion"][0]) == 2
    assert 0.0 <= j["ece"] <= 1.0
    html = out.read_text()
    assert html.count("<svg") >= 3
    assert "polyline" in html  # training curves from the model's history
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html), "the report must fetch nothing"
    assert "<script" not in html


@needs_data
def test_eval_open_set_per_background_source_with_nested_folders(trained, tmp_path):
    # a folder of species folders (as other-birds/ is) gives background windows; each
    # --background entry is reported as its own source, and the figures add up
    nested = tmp_path / "others"
    for sp, src in (("a", "rugr_drum.flac"), ("b", "great_plains_toad.flac")):
        (nested / sp).mkdir(parents=True)
        os.symlink(os.path.join(SOUNDSCAPES, "opensoundscape", src), nested / sp / src)
    night = os.path.join(SOUNDSCAPES, "scikit-maad_24h_S4A03895", "S4A03895_20190522_000000.flac")
    p = run("eval", "--model", str(trained["model"]), "--data", str(trained["manifest"]),
            "--background", f"{nested},{night}", "--cache", str(trained["tmp"] / "cache"), "--json",
            "--report", str(tmp_path / "r.html"), check=0)
    j = json.loads(p.stdout)
    rows = {r["source"]: r for r in j["open_set"]}
    # the manifest's background row (the drum) is a source named by the manifest
    assert set(rows) == {str(nested), night, str(trained["manifest"]), "all background"}, rows
    assert rows[str(nested)]["windows"] > rows[night]["windows"] > 0
    total = rows["all background"]
    assert total["windows"] == sum(r["windows"] for k, r in rows.items() if k != "all background")
    for r in rows.values():
        assert 0 <= r["species_above_half_per_window"] <= 2
        assert r["false_detections_per_hour"] == pytest.approx(r["false_detections"] * 3600 / r["seconds"])
    # the night hour is a 10 s file: its windows cover it
    assert rows[night]["seconds"] == pytest.approx(10, abs=1)
    text = run("eval", "--model", str(trained["model"]), "--data", str(trained["manifest"]),
               "--background", str(nested), "--cache", str(trained["tmp"] / "cache"), check=0).stdout
    assert "open set" in text and str(nested) in text
    assert "Open set" in (tmp_path / "r.html").read_text()


@needs_data
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed")
def test_report_renders_in_headless_chromium(trained, tmp_path):
    out = trained["tmp"] / "r2.html"
    run("eval", "--model", str(trained["model"]), "--data", str(trained["manifest"]),
        "--cache", str(trained["tmp"] / "cache"), "--report", str(out), check=0)
    p = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                        "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", f"file://{out}"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "<svg" in p.stdout and "Per species" in p.stdout
    console = [l for l in p.stderr.splitlines() if "CONSOLE" in l or "Uncaught" in l]
    assert not console, console


@needs_data
def test_classify_csv_format(trained):
    files = short_files("Cecropis_daurica", 2)
    p = run("classify", "--model", str(trained["model"]), *files, check=0)
    rows = list(csv.reader(io.StringIO(p.stdout)))
    assert rows[0] == ["path", "start", "end", "Cecropis_daurica", "Vireo_griseus"]
    assert {r[0] for r in rows[1:]} == set(files)
    for r in rows[1:]:
        start, end = float(r[1]), float(r[2])
        assert abs(end - start - 1.0) < 1e-6
        for v in r[3:]:
            assert 0.0 <= float(v) <= 1.0
    first = [r for r in rows[1:] if r[0] == files[0]]
    assert [float(r[1]) for r in first] == [float(i) for i in range(len(first))]


@needs_data
def test_classify_json_format_and_hop(trained):
    f = short_files("Vireo_griseus", 1)[0]
    p = run("classify", "--model", str(trained["model"]), "--format", "json", "--hop", "0.5", f, check=0)
    j = json.loads(p.stdout)
    assert set(j) == {"species", "files"}
    assert j["species"] == ["Cecropis_daurica", "Vireo_griseus"]
    assert len(j["files"]) == 1 and j["files"][0]["path"] == f
    wins = j["files"][0]["windows"]
    assert len(wins) >= 2
    for i, w in enumerate(wins):
        assert set(w) == {"start", "end", "probabilities"}
        assert abs(w["start"] - 0.5 * i) < 1e-6
        assert abs(w["end"] - w["start"] - 1.0) < 1e-6
        assert len(w["probabilities"]) == 2
        assert all(0.0 <= x <= 1.0 for x in w["probabilities"])


@needs_data
def test_classify_failure_reported_after_other_files(trained, tmp_path):
    good = short_files("Vireo_griseus", 1)[0]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really audio")
    p = run("classify", "--model", str(trained["model"]), str(bad), str(tmp_path / "missing.flac"), good)
    assert p.returncode == 1
    assert "bad.wav" in p.stderr and "missing.flac" in p.stderr
    assert "2 of 3 file(s) failed" in p.stderr
    rows = list(csv.reader(io.StringIO(p.stdout)))
    assert len(rows) > 1 and all(r[0] == good for r in rows[1:])
    pj = run("classify", "--model", str(trained["model"]), "--format", "json", str(bad), good)
    assert pj.returncode == 1
    j = json.loads(pj.stdout)
    assert [f["path"] for f in j["files"]] == [good]


@needs_data
def test_cache_is_reused(trained):
    p = run("train", "--data", str(trained["manifest"]), "--out", str(trained["tmp"] / "again.bsm"),
            "--arch", "convnet-lite", "--epochs", "1", "--val-fraction", "0.4",
            "--cache", str(trained["tmp"] / "cache"), check=0)
    m = re.search(r"features: (\d+) files, (\d+) from the cache, (\d+) computed", p.stderr)
    assert m and m.group(1) == m.group(2) and m.group(3) == "0", p.stderr


def test_unreadable_files_are_listed_and_counted(tmp_path):
    d = tmp_path / "data"
    (d / "alpha").mkdir(parents=True)
    (d / "alpha" / "a.wav").write_bytes(b"garbage")
    (d / "alpha" / "readme.txt").write_text("x")
    p = run("train", "--data", str(d), "--out", str(tmp_path / "m.bsm"), "--no-cache")
    assert p.returncode == 1
    assert "skipped 2 file(s)" in p.stderr
    assert "a.wav" in p.stderr and "readme.txt" in p.stderr
    assert not (tmp_path / "m.bsm").exists()


@pytest.mark.parametrize("args,code,needle", [
    ([], 2, "--data is required"),
    (["--data", "x"], 2, "--out is required"),
    (["--data", "x", "--out", "m", "--bogus"], 2, "unknown or incomplete option '--bogus'"),
    (["--data", "x", "--out", "m", "--epochs"], 2, "unknown or incomplete option"),
    (["--data", "x", "--out", "m", "--epochs", "zero"], 2, "--epochs 'zero'"),
    (["--data", "x", "--out", "m", "--epochs", "0"], 2, "--epochs '0'"),
    (["--data", "x", "--out", "m", "--batch-size", "1"], 2, "--batch-size '1'"),
    (["--data", "x", "--out", "m", "--lr", "-1"], 2, "--lr '-1'"),
    (["--data", "x", "--out", "m", "--lr-schedule", "step"], 2, "expected constant or cosine"),
    (["--data", "x", "--out", "m", "--class-weights", "x"], 2, "expected none or balanced"),
    (["--data", "x", "--out", "m", "--val-fraction", "1.5"], 2, "--val-fraction '1.5'"),
    (["--data", "x", "--out", "m", "--folds", "1"], 2, "--folds '1'"),
    (["--data", "x", "--out", "m", "--calibration", "isotonic"], 2, "--calibration 'isotonic': expected platt or none"),
    (["--data", "x", "--out", "m", "--seed", "-3"], 2, "--seed '-3'"),
    (["--data", "x", "--out", "m", "--snr-range", "5"], 2, "expected LO,HI"),
    (["--data", "x", "--out", "m", "--snr-range", "10,5"], 2, "--snr-range '5'"),
    (["--data", "x", "--out", "m", "--threads", "0"], 2, "--threads '0'"),
    (["--data", "x", "--out", "m", "--resume"], 2, "--resume needs --checkpoint-dir"),
    (["--data", "x", "--out", "m", "--log-json", "/nonexistent-dir/l.jsonl"], 1, "--log-json /nonexistent-dir/l.jsonl"),
    (["--data", "x", "--out", "m", "--predictions", "/nonexistent-dir/p.csv"], 1, "--predictions /nonexistent-dir/p.csv"),
    (["--data", "x", "--out", "m", "--fmin", "low"], 2, "--fmin 'low'"),
    (["--data", "x", "--out", "m", "--fmax", "0"], 2, "--fmax '0'"),
    (["--data", "x", "--out", "m", "--arch", "resnet"], 2, "--arch 'resnet'"),
    (["--data", "x", "--out", "m", "--window-norm", "median"], 2, "expected none, band_mean or band_median"),
    (["--data", "x", "--out", "m", "--ema", "1"], 2, "--ema '1': expected a number from 0 to 0.99999"),
    (["--data", "x", "--out", "m", "--ema", "fast"], 2, "--ema 'fast'"),
    (["--data", "x", "--out", "m", "--synthetic-negatives", "-3"], 2,
     "--synthetic-negatives '-3': expected an integer from 0 to 20000"),
    (["--data", "x", "--out", "m", "--ema", "1e-9"], 2, "expected 0 (off) or a decay from 1e-6 to 0.99999"),
    (["--data", "x", "--out", "m", "--time-shift", "-1"], 2, "--time-shift '-1'"),
    (["--data", "x", "--out", "m", "--time-shift", "44"], 2, "--time-shift 44: a window has 44 frames; expected 0 to 43"),
    (["--data", "x", "--out", "m", "--freq-shift", "16", "--n-mels", "64"], 2,
     "--freq-shift 16: expected 0 to 15 (a quarter of the 64 mel bands, less one)"),
    (["--data", "x", "--out", "m", "--freq-shift", "-2"], 2, "--freq-shift '-2'"),
    (["--data", "x", "--out", "m", "--fmax", "99999"], 2, "fmax must be <= sample_rate/2 = 11025 Hz, found 99999"),
    (["--data", "x", "--out", "m", "extra"], 2, "unexpected argument 'extra'"),
    (["--data", "/nonexistent/birds", "--out", "m"], 1, "no such file or folder"),
])
def test_train_cli_errors(args, code, needle):
    p = run("train", *args)
    assert p.returncode == code, p.stderr
    assert needle in p.stderr, p.stderr


def test_train_error_empty_folder_and_bad_background(tmp_path):
    p = run("train", "--data", str(tmp_path), "--out", str(tmp_path / "m.bsm"))
    assert p.returncode == 1 and "no species sub-folders" in p.stderr
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "a.flac").write_bytes(b"x")
    p = run("train", "--data", str(tmp_path), "--out", str(tmp_path / "m.bsm"), "--background", "nowhere")
    assert p.returncode == 1 and "--background nowhere" in p.stderr
    man = tmp_path / "m.csv"
    man.write_text("path,species\n")
    p = run("train", "--data", str(man), "--out", str(tmp_path / "m.bsm"))
    assert p.returncode == 1 and "no data rows" in p.stderr
    man.write_text("path,colour\na.flac,red\n")
    p = run("train", "--data", str(man), "--out", str(tmp_path / "m.bsm"))
    assert p.returncode == 1 and "no labels column" in p.stderr


@needs_data
def test_train_too_few_recordings_for_folds(tmp_path):
    man = tmp_path / "m.tsv"
    f = short_files("Vireo_griseus", 2)
    man.write_text(f"{f[0]}\tVireo_griseus\n{f[1]}\tVireo_griseus\n")
    p = run("train", "--data", str(man), "--out", str(tmp_path / "m.bsm"), "--folds", "5", "--no-cache")
    assert p.returncode == 1 and "only 2 recordings" in p.stderr


@pytest.mark.parametrize("args,code,needle", [
    ([], 2, "--model is required"),
    (["--model", "m.bsm"], 2, "--data is required"),
    (["--model", "m.bsm", "--data", "d", "--what"], 2, "unknown or incomplete option '--what'"),
    (["--model", "m.bsm", "--data", "d", "--threads", "x"], 2, "--threads 'x'"),
    (["--model", "/nonexistent/m.bsm", "--data", "d"], 1, "/nonexistent/m.bsm"),
])
def test_eval_cli_errors(args, code, needle):
    p = run("eval", *args)
    assert p.returncode == code, p.stderr
    assert needle in p.stderr, p.stderr


def test_eval_and_classify_refuse_a_corrupt_model(tmp_path):
    bad = tmp_path / "bad.bsm"
    bad.write_bytes(b"BSMODEL\0" + b"\xff" * 64)
    p = run("eval", "--model", str(bad), "--data", str(tmp_path))
    assert p.returncode == 1 and "bad.bsm" in p.stderr
    p = run("classify", "--model", str(bad), "x.flac")
    assert p.returncode == 1 and "bad.bsm" in p.stderr


@needs_data
def test_eval_errors_with_a_real_model(trained, tmp_path):
    d = tmp_path / "other"
    (d / "Not_a_species").mkdir(parents=True)
    shutil.copy(short_files("Vireo_griseus", 1)[0], d / "Not_a_species" / "x.flac")
    p = run("eval", "--model", str(trained["model"]), "--data", str(d), "--no-cache")
    assert p.returncode == 1
    assert "not one of the model's species" in p.stderr or "no species" in p.stderr
    p = run("eval", "--model", str(trained["model"]), "--data", str(trained["manifest"]),
            "--cache", str(trained["tmp"] / "cache"), "--report", "/nonexistent/dir/r.html")
    assert p.returncode == 1 and "/nonexistent/dir/r.html" in p.stderr


@pytest.mark.parametrize("args,code,needle", [
    ([], 2, "--model is required"),
    (["--model", "m.bsm"], 2, "no audio file given"),
    (["--model", "m.bsm", "--format", "xml", "a.wav"], 2, "expected csv or json"),
    (["--model", "m.bsm", "--hop", "0", "a.wav"], 2, "--hop '0'"),
    (["--model", "m.bsm", "--nope", "a.wav"], 2, "unknown or incomplete option '--nope'"),
    (["--model", "/nonexistent/m.bsm", "a.wav"], 1, "/nonexistent/m.bsm"),
])
def test_classify_cli_errors(args, code, needle):
    p = run("classify", *args)
    assert p.returncode == code, p.stderr
    assert needle in p.stderr, p.stderr


def test_help_texts():
    for cmd in ("train", "eval", "classify"):
        p = run(cmd, "--help", check=0)
        assert p.stdout.startswith(f"usage: birdsong {cmd}")
    p = run("--help", check=0)
    for cmd in ("train", "eval", "classify", "features"):
        assert cmd in p.stdout


@needs_data
def test_features_with_model_uses_its_settings(trained, tmp_path):
    import numpy as np
    out = tmp_path / "f.npy"
    f = short_files("Vireo_griseus", 1)[0]
    run("features", "--model", str(trained["model"]), "-o", str(out), "-q", f, check=0)
    a = np.load(out)
    assert a.ndim == 3 and a.shape[1:] == (128, 44)
    p = run("features", "--model", str(trained["model"]), "--n-mels", "64", "-o", str(out), f)
    assert p.returncode == 2 and "--n-mels cannot be combined with --model" in p.stderr
    p = run("features", "--model", "/nonexistent/m.bsm", "-o", str(out), f)
    assert p.returncode == 1 and "/nonexistent/m.bsm" in p.stderr


@needs_data
def test_folds_report_per_fold_and_mean_sd(trained, tmp_path):
    model = tmp_path / "cv.bsm"
    preds = tmp_path / "oof.csv"
    p = run("train", "--data", str(trained["manifest"]), "--out", str(model), "--arch", "convnet-lite-gp",
            "--n-mels", "64", "--epochs", "1", "--folds", "2", "--val-fraction", "0.3",
            "--cache", str(trained["tmp"] / "cache"), "--predictions", str(preds), check=0)
    assert len(re.findall(r"^fold [12]/2 \(best epoch 1\): recording accuracy", p.stdout, re.M)) == 2, p.stdout
    assert "2-fold cross-validation by recording (mean +- sd):" in p.stdout
    assert re.search(r"recording_accuracy\s+[0-9.]+ \+- [0-9.]+", p.stdout)
    meta = json.loads(run("inspect", str(model), check=0).stdout)
    cv = meta["training"]["metrics"]["cross_validation"]
    assert cv["folds"] == 2 and len(cv["per_fold"]) == 2
    assert set(cv["recording_accuracy"]) == {"mean", "sd"}
    # the open set pooled over the folds' test parts: the manifest's background row (the drum)
    # lands in exactly one fold's test part
    pooled = {r["source"]: r for r in cv["open_set"]}
    assert pooled["all background"]["windows"] == pooled[str(trained["manifest"])]["windows"] > 0
    assert "cross-validation, pooled test parts: open set" in p.stdout
    assert "open_set" in meta["training"]["metrics"]["validation"]
    # calibration (default platt): fitted on the folds' test parts, carried by the file
    cal = meta["training"]["calibration"]
    assert cal["method"] == "platt" and cal["ece_after_measured"] == "cross-fitted"
    assert cal["windows"] == sum(f["windows"] for f in cv["per_fold"])
    assert meta["calibration"]["method"] == "platt" and len(meta["calibration"]["a"]) == 2
    assert meta["calibration"]["a"] == pytest.approx(cal["a"]) and all(a > 0 for a in cal["a"])
    assert re.search(r"^calibration: Platt scaling per output fitted on \d+ held-out windows", p.stdout, re.M)
    # the calibrated fold models, calibration cross-fitted: what a station running it sees
    ccv = cal["cross_validation"]
    assert len(ccv["per_fold_recording_accuracy"]) == 2
    assert all(0 <= x <= 1 for x in ccv["per_fold_recording_accuracy"])
    assert ccv["recording_accuracy"]["mean"] == pytest.approx(sum(ccv["per_fold_recording_accuracy"]) / 2)
    cpooled = {r["source"]: r for r in ccv["open_set"]}
    assert cpooled["all background"]["windows"] == pooled["all background"]["windows"]
    assert 0 <= cpooled["all background"]["species_above_half_per_window"] <= 2  # of 2 species
    assert "cross-validation, calibrated (cross-fitted over the folds): recording accuracy" in p.stdout
    # --predictions: every test window of every fold, out of fold, raw and cross-fitted calibrated;
    # the calibrated recording accuracy recomputed from the file is the one train printed
    rows = list(csv.DictReader(io.StringIO(preds.read_text())))
    labels = meta["labels"]
    assert list(rows[0]) == ["fold", "path", "group", "start", "truth", *[f"p_{l}" for l in labels],
                             *[f"cal_{l}" for l in labels]]
    assert len(rows) == cal["windows"]
    for k, f in enumerate(cv["per_fold"]):
        fold_rows = [r for r in rows if r["fold"] == str(k + 1)]
        assert len(fold_rows) == f["windows"]
        groups = {}
        for r in fold_rows:
            groups.setdefault(r["group"], []).append(r)
        ok = total = 0
        for g in groups.values():
            truth = set(g[0]["truth"].split(";")) - {""}
            if not truth:
                continue
            mean = [sum(float(r[f"cal_{l}"]) for r in g) / len(g) for l in labels]
            total += 1
            ok += labels[mean.index(max(mean))] in truth
        assert ok / total == pytest.approx(ccv["per_fold_recording_accuracy"][k], abs=1e-6)
    assert all(0 <= float(r[f"p_{l}"]) <= 1 and 0 <= float(r[f"cal_{l}"]) <= 1 for r in rows for l in labels)
    assert {r["truth"] for r in rows} == {"", *labels}  # the drum (background) and both species
    assert f"wrote the predictions of {len(rows)} held-out windows to {preds}" in p.stdout
    ev = json.loads(run("eval", "--model", str(model), "--data", str(trained["manifest"]), "--json",
                        "--cache", str(trained["tmp"] / "cache"), check=0).stdout)
    assert 0 <= ev["ece_uncalibrated"] <= 1 and 0 <= ev["ece"] <= 1
    # --calibration none: no calibration in the file
    model2 = tmp_path / "raw.bsm"
    run("train", "--data", str(trained["manifest"]), "--out", str(model2), "--arch", "convnet-lite-gp",
        "--n-mels", "64", "--epochs", "1", "--calibration", "none", "--val-fraction", "0.3",
        "--cache", str(trained["tmp"] / "cache"), "--predictions", str(preds), check=0)
    assert "calibration" not in json.loads(run("inspect", str(model2), check=0).stdout)
    # without folds: the validation part (fold 0), no calibrated columns without calibration
    rows = list(csv.DictReader(io.StringIO(preds.read_text())))
    assert rows and {r["fold"] for r in rows} == {"0"} and not any(k.startswith("cal_") for k in rows[0])
    assert meta["features"]["n_mels"] == 64
    assert meta["arch"] == "convnet-lite-gp"  # the name given, not "custom"


@needs_data
def test_train_mel_range_checked(trained, tmp_path):
    p = run("train", "--data", str(trained["manifest"]), "--out", str(tmp_path / "m.bsm"), "--fmin", "9000",
            "--fmax", "4000", "--cache", str(trained["tmp"] / "cache"))
    assert p.returncode == 2 and "fmin (9000 Hz) must be below fmax (4000 Hz)" in p.stderr, p.stderr
    assert not (tmp_path / "m.bsm").exists()


@needs_data
def test_folds_side_by_side_match_one_at_a_time(trained, tmp_path):
    """With --folds and 2 threads the trainings run side by side (one BLAS thread each); every
    fold and the written model must come out exactly as when they run one after another."""
    metas = []
    for threads in ("1", "2"):
        model = tmp_path / f"cv{threads}.bsm"
        p = run("train", "--data", str(trained["manifest"]), "--out", str(model), "--arch", "convnet-lite-gp",
                "--n-mels", "64", "--fmin", "150", "--epochs", "2", "--folds", "2", "--val-fraction", "0.3",
                "--threads", threads,
                "--cache", str(trained["tmp"] / "cache"), check=0)
        assert p.returncode == 0, p.stderr
        for tag in ("fold 1/2: epoch 2/2", "fold 2/2: epoch 2/2", "final model: epoch 2/2"):
            assert tag in p.stderr, p.stderr
        metas.append(json.loads(run("inspect", str(model), check=0).stdout))
    assert metas[0]["features"]["fmin"] == 150.0
    a, b = (m["training"]["metrics"] for m in metas)
    assert a["cross_validation"] == b["cross_validation"]
    assert a["validation"] == b["validation"]
    ha = [(e["train_loss"], e["val_loss"]) for e in metas[0]["training"]["history"]]
    hb = [(e["train_loss"], e["val_loss"]) for e in metas[1]["training"]["history"]]
    assert ha == hb


@needs_data
def test_threads_same_count_same_model(trained, tmp_path):
    """--threads 2 trains two data-parallel replicas with a fixed-order gradient reduction: two
    runs with the same seed write models that give the same probabilities, bit for bit."""
    probs = []
    for run_no in range(2):
        model = tmp_path / f"t2_{run_no}.bsm"
        run("train", "--data", str(trained["manifest"]), "--out", str(model), "--arch", "convnet-lite",
            "--epochs", "2", "--patience", "0", "--val-fraction", "0.4", "--threads", "2",
            "--cache", str(trained["tmp"] / "cache"), check=0)
        probs.append(classify_probs(model, short_files("Vireo_griseus", 1)[0]))
    assert probs[0] and probs[0] == probs[1]


def classify_probs(model, wav):
    j = json.loads(run("classify", "--model", str(model), "--format", "json", str(wav), check=0).stdout)
    return [p for w in j["files"][0]["windows"] for p in w["probabilities"]]


@needs_data
@pytest.mark.parametrize("mode", ["band_mean", "band_median"])
def test_window_norm_is_carried_and_ignores_the_level(trained, tmp_path, mode):
    """--window-norm band_mean/band_median subtracts each mel band's mean/median over the
    window after the z-score: the model file carries it, and classify applies it, so a model
    trained with it gives the same probabilities for a recording and for the same recording
    12 dB quieter (a gain is a constant shift of every log-mel band). A model without it does
    not."""
    import numpy as np
    import librosa_ref as R
    model = tmp_path / "bm.bsm"
    p = run("train", "--data", str(trained["manifest"]), "--out", str(model), "--arch", "convnet-lite-gp",
            "--n-mels", "64", "--epochs", "2", "--patience", "0", "--val-fraction", "0.4", "--no-augment",
            "--window-norm", mode, "--cache", str(trained["tmp"] / "cache"), check=0)
    assert p.returncode == 0, p.stderr
    assert json.loads(run("inspect", str(model), check=0).stdout)["features"]["window_norm"] == mode
    # none is the default and is not written (older builds can still read such a file)
    assert "window_norm" not in json.loads(run("inspect", str(trained["model"]), check=0).stdout)["features"]
    sr = 22050
    t = np.arange(3 * sr) / sr
    rng = np.random.default_rng(5)
    y = 0.3 * np.sin(2 * np.pi * (3000 * t + 800 * np.sin(2 * np.pi * 3 * t))) * (np.sin(2 * np.pi * 2 * t) > 0)
    y = (y + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    loud, quiet = tmp_path / "loud.wav", tmp_path / "quiet.wav"
    R.write_wav_float(loud, y, sr)
    R.write_wav_float(quiet, y * np.float32(0.25), sr)  # exactly -12.04 dB: a power of two
    a, b = classify_probs(model, loud), classify_probs(model, quiet)
    assert len(a) == len(b) == 3 * 2
    assert max(abs(x - z) for x, z in zip(a, b)) < 1e-4, (a, b)
    a0, b0 = classify_probs(trained["model"], loud), classify_probs(trained["model"], quiet)
    assert max(abs(x - z) for x, z in zip(a0, b0)) > 1e-3, (a0, b0)



@needs_data
def test_synthetic_negatives_and_ema_from_the_command_line(trained, tmp_path):
    """--synthetic-negatives N makes N non-bird windows (said in the log) and trains on them;
    --ema D writes the moving average; --time-shift and --freq-shift are taken. The model loads, classifies, and its provenance keeps
    the command that made it."""
    model = tmp_path / "syn.bsm"
    p = run("train", "--data", str(trained["manifest"]), "--out", str(model), "--arch", "convnet-lite",
            "--epochs", "2", "--patience", "0", "--val-fraction", "0.4", "--synthetic-negatives", "24",
            "--ema", "0.99", "--time-shift", "20", "--freq-shift", "2", "--cache", str(trained["tmp"] / "cache"),
            check=0)
    assert "synthetic negatives: 24 windows" in p.stderr, p.stderr
    info = json.loads(run("inspect", str(model), check=0).stdout)
    assert "--synthetic-negatives 24 --ema 0.99 --time-shift 20 --freq-shift 2" in info["training"]["command"], \
        info["training"]["command"]
    f = short_files("Vireo_griseus", 1)[0]
    probs = classify_probs(model, f)
    assert probs and all(0.0 <= x <= 1.0 for x in probs)


@needs_data
def test_sigterm_checkpoint_then_resume_gives_the_same_model(trained, tmp_path):
    """--checkpoint-dir: SIGTERM during training writes a checkpoint and exits non-zero without
    writing --out; --resume then ends with the model an uninterrupted run writes (the same
    probabilities, bit for bit); a resume with other settings is refused, naming the setting;
    --log-json gets one line per epoch."""
    args = ["train", "--data", str(trained["manifest"]), "--arch", "convnet-lite", "--epochs", "5",
            "--patience", "0", "--val-fraction", "0.4", "--threads", "2", "--cache", str(trained["tmp"] / "cache")]
    full, part, ck = tmp_path / "full.bsm", tmp_path / "part.bsm", tmp_path / "ck"
    log = tmp_path / "log.jsonl"
    run(*args, "--out", str(full), "--log-json", str(log), check=0)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3, 4, 5] and all(x["model"] == "final" for x in lines)
    assert all(k in lines[0] for k in ("train_loss", "val_loss", "samples_per_second", "seconds", "best"))
    # stop once epoch 1 is logged (the run then stops inside or at the end of a later epoch)
    plog = tmp_path / "plog.jsonl"
    p = subprocess.Popen([BIN, *args, "--out", str(part), "--checkpoint-dir", str(ck), "--log-json", str(plog)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import time
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None and not (plog.exists() and plog.stat().st_size > 0):
        time.sleep(0.01)
    p.send_signal(15)
    out, err = p.communicate(timeout=120)
    if p.returncode == 0:
        pytest.skip("the training finished before SIGTERM arrived")
    assert p.returncode == 1, err
    assert "--resume" in err and not part.exists(), err
    assert (ck / "final.ckpt").exists()
    r = run(*args, "--out", str(part), "--checkpoint-dir", str(ck), "--resume", "--batch-size", "16")
    assert r.returncode == 1 and "--batch-size is 32 there, 16 in this run" in r.stderr, r.stderr
    r = run(*args, "--out", str(part), "--checkpoint-dir", str(ck), "--resume", "--calibration", "none")
    assert r.returncode == 1 and "--calibration is platt there, none in this run" in r.stderr, r.stderr
    r = run(*args, "--out", str(part), "--checkpoint-dir", str(ck), "--resume", check=0)
    assert "resumed from" in r.stderr, r.stderr
    wav = short_files("Vireo_griseus", 1)[0]
    assert classify_probs(full, wav) == classify_probs(part, wav)


SPEECH = os.path.join(DATA, "speech")


@needs_data
@pytest.mark.skipif(not os.path.isdir(SPEECH), reason=f"speech recordings not found at {SPEECH}")
def test_filter_class_in_model_classify_and_eval(trained, tmp_path):
    """--filter-class human=...: the model carries it after the species; classify keeps
    "species"/"probabilities" for the species and adds "filter_classes"/"filter_probabilities"
    (CSV: one more column after the species); eval measures the species without it and reports
    the filter apart (issue 16)."""
    george = os.path.join(SPEECH, "speaker_george.flac")
    model = tmp_path / "f.bsm"
    p = run("train", "--data", str(trained["manifest"]), "--out", str(model), "--arch", "convnet-lite-gp",
            "--n-mels", "64", "--epochs", "1", "--val-fraction", "0.3", "--filter-class", f"human={george}",
            "--cache", str(trained["tmp"] / "cache"), check=0)
    assert "2 species" in p.stdout, p.stdout
    meta = json.loads(run("inspect", str(model), check=0).stdout)
    assert meta["labels"] == ["Cecropis_daurica", "Vireo_griseus", "human"]
    assert meta["filter_classes"] == ["human"]
    assert len(meta["thresholds"]) == 3
    f = short_files("Vireo_griseus", 1)[0]
    j = json.loads(run("classify", "--model", str(model), "--format", "json", f, check=0).stdout)
    assert j["species"] == ["Cecropis_daurica", "Vireo_griseus"] and j["filter_classes"] == ["human"]
    for w in j["files"][0]["windows"]:
        assert len(w["probabilities"]) == 2 and len(w["filter_probabilities"]) == 1
        assert 0 <= w["filter_probabilities"][0] <= 1
    rows = list(csv.reader(io.StringIO(run("classify", "--model", str(model), "--format", "csv", f, check=0).stdout)))
    assert rows[0] == ["path", "start", "end", "Cecropis_daurica", "Vireo_griseus", "human"]
    assert all(len(r) == 6 for r in rows)
    # a model without filter classes: no new keys
    j0 = json.loads(run("classify", "--model", str(trained["model"]), "--format", "json", f, check=0).stdout)
    assert "filter_classes" not in j0 and "filter_probabilities" not in j0["files"][0]["windows"][0]
    ev = json.loads(run("eval", "--model", str(model), "--data", str(trained["manifest"]), "--filter-class",
                        f"human={george}", "--cache", str(trained["tmp"] / "cache"), "--json", check=0).stdout)
    assert ev["species"] == ["Cecropis_daurica", "Vireo_griseus"]
    assert len(ev["per_species"]) == 2
    (fc,) = ev["filter_classes"]
    assert fc["name"] == "human" and fc["windows"] > 100 and 0 <= fc["recall"] <= 1
    rows = {r["source"]: r for r in ev["open_set"]}
    assert rows[f"human={george}"]["windows"] == fc["windows"]
    bad = run("eval", "--model", str(trained["model"]), "--data", str(trained["manifest"]), "--filter-class",
              f"human={george}", "--cache", str(trained["tmp"] / "cache"))
    assert bad.returncode == 1 and "the model has no filter class 'human'" in bad.stderr
