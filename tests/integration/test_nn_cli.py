"""birdsong inspect and birdsong bench on the real binary."""
import json
import os
import shutil
import subprocess

import pytest

BUILD = os.environ.get("BIRDSONG_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
BIRDSONG = os.path.join(BUILD, "birdsong")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "tests", "fuzz", "corpus", "fuzz_model_load", "valid_sigmoid.bsm")


def run(*args):
    return subprocess.run([BIRDSONG, *args], capture_output=True, text=True, timeout=120)


def test_inspect_prints_metadata_json():
    r = run("inspect", MODEL)
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout)
    assert meta["format"] == "birdsong-model"
    assert meta["labels"] == ["a", "b"]
    assert meta["output"] == "sigmoid"
    assert meta["layers"][0] == {"type": "conv2d", "filters": 2, "kernel": [3, 1]}
    assert len(meta["normalization"]["mean"]) == meta["input"]["n_mels"]
    assert meta["features"]["n_mels"] == meta["input"]["n_mels"]
    assert len(meta["crc32"]) == 8 and meta["parameters"] > 0


@pytest.mark.parametrize("damage,phrase", [
    (lambda b: b[:len(b) // 2], "truncated"),
    (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "CRC-32"),
    (lambda b: b"XSMODEL\0" + b[8:], "magic"),
])
def test_inspect_damaged_file_one_sentence(tmp_path, damage, phrase):
    bad = tmp_path / "bad.bsm"
    bad.write_bytes(damage(open(MODEL, "rb").read()))
    r = run("inspect", str(bad))
    assert r.returncode == 1
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(bad) in lines[0] and phrase in lines[0]


def test_inspect_usage_and_missing_file(tmp_path):
    assert run("inspect").returncode == 2
    r = run("inspect", str(tmp_path / "nope.bsm"))
    assert r.returncode == 1 and "cannot open" in r.stderr


def test_bench_last_line_is_json():
    r = run("bench", "--arch", "convnet-lite", "--classes", "5", "--threads", "1", "--iters", "3",
            "--train-steps", "1", "--batch", "4", "--json")
    assert r.returncode == 0, r.stderr
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["arch"] == "convnet-lite" and last["classes"] == 5
    assert last["infer_ms_per_window"] > 0 and last["train_samples_per_s"] > 0
    assert 0 < last["gflop_per_window"] < 0.1


def test_bench_rejects_unknown_arch():
    r = run("bench", "--arch", "resnet50", "--train-steps", "0")
    assert r.returncode == 1 and "convnet1" in r.stderr
