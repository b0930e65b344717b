"""Keras models into birdsong: the numpy reference (tests/reference/keras_ref.py) against
Keras's own outputs, then `birdsong import-keras` + `birdsong classify` on .npy windows
against the reference. Fixtures: tests/reference/keras (see its NOTICE)."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "tests", "reference", "keras")
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))

import keras_ref  # noqa: E402

MODELS = ["hls4ml_conv2d_1layer", "tinymaix_mnist_same", "tinymaix_mnist_valid"]


def test_reference_equals_keras_own_outputs():
    # the file that carries what Keras computed: the reference must reproduce it
    _, layers = keras_ref.load(os.path.join(FIX, "hls4ml_conv2d_1layer.h5"))
    x = np.loadtxt(os.path.join(FIX, "hls4ml_conv2d_1layer_input.dat")).reshape(-1, 5, 5, 1)
    want = np.loadtxt(os.path.join(FIX, "hls4ml_conv2d_1layer_output.dat")).reshape(len(x), -1)
    got = keras_ref.forward(layers, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.ptp(want))


@pytest.mark.parametrize("name", MODELS)
def test_committed_fixture_outputs_are_the_reference(name):
    _, layers = keras_ref.load(os.path.join(FIX, name + ".h5"))
    x = np.load(os.path.join(FIX, name + "_x.npy"))
    want = np.load(os.path.join(FIX, name + "_y.npy"))
    np.testing.assert_allclose(keras_ref.forward(layers, x[..., None].astype(np.float64)), want,
                               rtol=1e-5, atol=1e-6)


# ---- birdsong import-keras + classify on .npy windows ----------------------------------------

import io  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import zipfile  # noqa: E402

BUILD = os.environ.get("BIRDSONG_BUILD", os.path.join(ROOT, "build"))
BIRDSONG = os.path.join(BUILD, "birdsong")
SHARED = os.path.join(ROOT, "..", "shared", "data", "keras")


def run(*args):
    return subprocess.run([BIRDSONG, *map(str, args)], capture_output=True, text=True, timeout=120)


def import_model(tmp_path, model, n_out, *extra):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join("class%d\n" % i for i in range(n_out)))
    out = tmp_path / "m.bsm"
    r = run("import-keras", model, "--out", out, "--labels", labels, "--n-fft", 64, "--hop-length", 16, *extra)
    return r, out


def classify_npy(model, x, tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.ascontiguousarray(x, dtype=np.float32))
    r = run("classify", "--model", model, "--format", "json", p)
    assert r.returncode == 0, r.stderr
    return np.array([w["probabilities"] for w in json.loads(r.stdout)["files"][0]["windows"]])


def assert_close(got, want):
    # 1e-4 relative to the output range (classify prints 6 decimals)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=max(1e-4 * np.ptp(want), 2e-6))


@pytest.mark.parametrize("name", MODELS)
def test_fixture_imported_equals_reference(tmp_path, name):
    want = np.load(os.path.join(FIX, name + "_y.npy"))
    r, out = import_model(tmp_path, os.path.join(FIX, name + ".h5"), want.shape[1], "--no-normalization")
    assert r.returncode == 0, r.stderr
    assert_close(classify_npy(out, np.load(os.path.join(FIX, name + "_x.npy")), tmp_path), want)


def test_hls4ml_imported_equals_keras_own_outputs(tmp_path):
    x = np.loadtxt(os.path.join(FIX, "hls4ml_conv2d_1layer_input.dat")).reshape(-1, 5, 5)
    want = np.loadtxt(os.path.join(FIX, "hls4ml_conv2d_1layer_output.dat")).reshape(len(x), -1)
    r, out = import_model(tmp_path, os.path.join(FIX, "hls4ml_conv2d_1layer.h5"), 9, "--no-normalization")
    assert r.returncode == 0, r.stderr
    assert_close(classify_npy(out, x, tmp_path), want)


def test_inspect_shows_provenance(tmp_path):
    path = os.path.join(FIX, "tinymaix_mnist_same.h5")
    r, out = import_model(tmp_path, path, 10, "--no-normalization")
    assert r.returncode == 0, r.stderr
    meta = json.loads(run("inspect", out).stdout)
    prov = meta["training"]["imported_from"]
    import hashlib
    assert prov["keras_version"] == "2.8.0" and prov["file"] == path
    assert prov["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert meta["provenance"].startswith("imported from Keras 2.8.0, file %s, sha256 %s" % (path, prov["sha256"]))
    assert meta["input"] == {"n_mels": 28, "n_frames": 28} and meta["output"] == "softmax"


# the cifar10 model (InputLayer (32, 32, 3), RGB): its 1.1 MB file is not committed, its inputs
# and reference outputs are (tinymaix_cifar10_x/_y.npy, drawn by keras_ref.py `fixtures DIR
# ../shared/data/keras/tinymaix_cifar10.h5`); the tests that need the file skip without it
CIFAR = os.path.join(SHARED, "tinymaix_cifar10.h5")


def need_cifar():
    if not os.path.exists(CIFAR):
        pytest.skip("../shared/data/keras/tinymaix_cifar10.h5 is absent (the cifar10 model is not committed)")


def test_cifar10_committed_outputs_are_the_reference():
    need_cifar()
    _, layers = keras_ref.load(CIFAR)
    x = np.load(os.path.join(FIX, "tinymaix_cifar10_x.npy"))
    assert x.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(keras_ref.forward(layers, x.astype(np.float64)),
                               np.load(os.path.join(FIX, "tinymaix_cifar10_y.npy")), rtol=1e-5, atol=1e-6)


def test_cifar10_three_channels_imported_equals_reference(tmp_path):
    need_cifar()
    want = np.load(os.path.join(FIX, "tinymaix_cifar10_y.npy"))
    r, out = import_model(tmp_path, CIFAR, 10, "--no-normalization")
    assert r.returncode == 0, r.stderr
    assert "32 mels x 32 frames x 3 channels" in r.stderr
    x = np.load(os.path.join(FIX, "tinymaix_cifar10_x.npy"))  # (S, H, W, C) as Keras takes it
    assert_close(classify_npy(out, x, tmp_path), want)
    meta = json.loads(run("inspect", out).stdout)
    assert meta["input"] == {"n_mels": 32, "n_frames": 32, "channels": 3} and meta["input_shape"] == [32, 32, 3]


# hand-written models in the layouts Keras 2 (.h5), Keras 3 (.h5 and .keras) write

def rnd(*shape, seed=[5]):
    seed[0] += 1
    return np.random.default_rng(seed[0]).uniform(-1, 1, size=shape).astype(np.float32)


def corner_layers(h, w, c=1):
    """Conv same relu -> BN (own epsilon) -> MaxPool same on odd sizes -> Conv valid stride 2
    -> AveragePooling same -> Flatten (2x2x5: the order matters) -> Dropout -> Dense sigmoid."""
    return [
        ("InputLayer", {"name": "in", "batch_input_shape": [None, h, w, c]}, []),
        ("Conv2D", {"name": "c1", "filters": 4, "kernel_size": [3, 3], "strides": [1, 1], "padding": "same",
                    "activation": "relu", "use_bias": True, "dilation_rate": [1, 1]}, [rnd(3, 3, c, 4), rnd(4)]),
        ("BatchNormalization", {"name": "bn", "axis": [3], "epsilon": 0.25, "center": True, "scale": True},
         [rnd(4), rnd(4), rnd(4), np.abs(rnd(4)) + 0.1]),
        ("MaxPooling2D", {"name": "mp", "pool_size": [2, 2], "strides": [2, 2], "padding": "same"}, []),
        ("Conv2D", {"name": "c2", "filters": 5, "kernel_size": [3, 2], "strides": [2, 2], "padding": "valid",
                    "activation": "linear", "use_bias": True, "dilation_rate": [1, 1]}, [rnd(3, 2, 4, 5), rnd(5)]),
        ("AveragePooling2D", {"name": "ap", "pool_size": [2, 2], "strides": [1, 1], "padding": "same"}, []),
        ("Flatten", {"name": "fl"}, []),
        ("Dropout", {"name": "dr", "rate": 0.5}, []),
        ("Dense", {"name": "fc", "units": 3, "activation": "sigmoid", "use_bias": True}, None),
    ]


def finish(layers, flat):
    layers[-1] = layers[-1][:2] + ([rnd(flat, 3) * 3, rnd(3)],)
    return layers


def keras_config(layers, functional, keras3):
    out = []
    for i, (cls, cfg, _) in enumerate(layers):
        cfg = dict(cfg)
        if keras3 and "batch_input_shape" in cfg:
            cfg["batch_shape"] = cfg.pop("batch_input_shape")
        e = {"class_name": cls, "config": cfg}
        if functional:
            e["name"] = cfg["name"]
            prev = layers[i - 1][1]["name"] if i else None
            if keras3:
                e["inbound_nodes"] = [] if not i else [{"args": [{"class_name": "__keras_tensor__", "config": {
                    "shape": [None], "keras_history": [prev, 0, 0]}}], "kwargs": {}}]
            else:
                e["inbound_nodes"] = [] if not i else [[[prev, 0, 0, {}]]]
        out.append(e)
    conf = {"class_name": "Functional" if functional else "Sequential", "config": {"name": "m", "layers": out}}
    if functional:
        conf["config"]["input_layers"] = [[layers[0][1]["name"], 0, 0]]
        conf["config"]["output_layers"] = [[layers[-1][1]["name"], 0, 0]]
    return conf


def write_h5(path, layers, functional=False, keras3=False, nested=False):
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(keras_config(layers, functional, keras3))
        f.attrs["keras_version"] = "3.3.3" if keras3 else "2.11.0"
        g = f.create_group("model_weights")
        for cls, cfg, ws in layers:
            lg = g.create_group(cfg["name"])
            inner = cfg["name"] + ("_2" if nested else "")
            names = ["%s/w%d%s" % (inner, j, "" if keras3 else ":0") for j in range(len(ws))]
            lg.attrs["weight_names"] = np.array([n.encode() for n in names]) if names else np.zeros(0)
            for n, w in zip(names, ws):
                lg.create_dataset(n, data=w)


def write_keras(path, layers):
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for cls, cfg, ws in layers:
            if ws:
                v = f.create_group("layers/%s/vars" % cfg["name"])
                for j, w in enumerate(ws):
                    v.create_dataset(str(j), data=w)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(keras_config(layers, False, True)))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.3.3"}))
        z.writestr("model.weights.h5", buf.getvalue())


@pytest.mark.parametrize("kind", ["keras2-h5", "keras2-functional-nested", "keras3-h5-functional", "keras3-keras",
                                  "frames-mels", "three-channels", "frames-mels-three-channels"])
def test_corner_cases_equal_reference(tmp_path, kind):
    T = kind.startswith("frames-mels")
    C = 3 if "three-channels" in kind else 1  # (H, W, 3): channels last in the .npy, as Keras
    mels, frames = 13, 11  # odd sizes: 'same' pooling pads after
    kh, kw = (frames, mels) if T else (mels, frames)
    layers = corner_layers(kh, kw, C)
    # (13,11) -> same -> (13,11) -> pool same -> (7,6) -> 3x2 valid stride 2 -> (3,3) -> (3,3) x 5
    h2 = ((kh + 1) // 2 - 3) // 2 + 1
    w2 = ((kw + 1) // 2 - 2) // 2 + 1
    layers = finish(layers, h2 * w2 * 5)
    path = tmp_path / ("m.keras" if kind == "keras3-keras" else "m.h5")
    if kind == "keras3-keras":
        write_keras(path, layers)
    else:
        write_h5(path, layers, functional="functional" in kind, keras3="keras3" in kind, nested="nested" in kind)
    x = rnd(3, mels, frames, C) * 2
    _, kl = keras_ref.load(str(path))
    want = keras_ref.forward(kl, (x.transpose(0, 2, 1, 3) if T else x).astype(np.float64))
    if C == 1:
        x = x[..., 0]  # (S, mels, frames), what `birdsong features` writes
    r, out = import_model(tmp_path, path, 3, "--no-normalization", *(["--input-layout", "frames-mels"] if T else []))
    assert r.returncode == 0, r.stderr
    assert_close(classify_npy(out, x, tmp_path), want)


def test_stats_npz_normalizes(tmp_path):
    layers = finish(corner_layers(13, 11), 3 * 3 * 5)
    path = tmp_path / "m.h5"
    write_h5(path, layers)
    mean, std = rnd(13), np.abs(rnd(13)) + 0.5
    np.savez(tmp_path / "stats.npz", mean=mean, std=np.float32(2.0) * std)
    r, out = import_model(tmp_path, path, 3, "--stats", tmp_path / "stats.npz")
    assert r.returncode == 0, r.stderr
    x = rnd(2, 13, 11) * 10
    _, kl = keras_ref.load(str(path))
    z = (x - mean[None, :, None]) / (2 * std[None, :, None])
    assert_close(classify_npy(out, x, tmp_path), keras_ref.forward(kl, z[..., None].astype(np.float64)))


def damaged(tmp_path, edit):
    layers = finish(corner_layers(13, 11), 3 * 3 * 5)
    path = tmp_path / "m.h5"
    functional = edit(layers)
    write_h5(path, layers, functional=bool(functional))
    if callable(functional):
        functional(path)
    return path


def _lstm(layers):
    layers.insert(2, ("LSTM", {"name": "lstm1", "units": 4}, []))


def _wrong_shape(layers):
    layers[1] = layers[1][:2] + ([rnd(3, 3, 1, 5), rnd(4)],)


def _missing_weight(layers):
    def drop(path):
        with h5py.File(path, "a") as f:
            del f["model_weights/bn/bn/w3:0"]
    return drop


def _non_chain(layers):
    def branch(path):
        with h5py.File(path, "a") as f:
            conf = json.loads(f.attrs["model_config"])
            conf["config"]["layers"][4]["inbound_nodes"] = [[["bn", 0, 0, {}], ["c1", 0, 0, {}]]]
            f.attrs["model_config"] = json.dumps(conf)
    return branch


def _bad_value(layers):
    layers[4][2][1][0] = np.nan


@pytest.mark.parametrize("edit,phrase", [
    (_lstm, "layer 2 'lstm1' (LSTM) is not supported"),
    (_wrong_shape, "layer 1 'c1' (Conv2D): kernel has shape [3,3,1,5], the config needs [3,3,1,4]"),
    (_missing_weight, "layer 2 'bn' (BatchNormalization): weight 'bn/w3:0' is missing"),
    (_non_chain, "takes 2 input(s)"),
    (_bad_value, "non-finite"),
])
def test_broken_models_refused_naming_the_problem(tmp_path, edit, phrase):
    r, out = import_model(tmp_path, damaged(tmp_path, edit), 3, "--no-normalization")
    assert r.returncode == 1, r.stderr
    assert phrase in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not out.exists()


def test_truncated_and_foreign_files_refused(tmp_path):
    data = open(os.path.join(FIX, "tinymaix_mnist_same.h5"), "rb").read()
    for cut, phrase in [(len(data) // 2, "not a readable HDF5 file"), (4000, "not a readable HDF5 file")]:
        p = tmp_path / "t.h5"
        p.write_bytes(data[:cut])
        r, _ = import_model(tmp_path, p, 10, "--no-normalization")
        assert r.returncode == 1 and phrase in r.stderr, r.stderr
    p = tmp_path / "x.keras"
    p.write_bytes(b"PK\x03\x04" + b"\0" * 50)
    r, _ = import_model(tmp_path, p, 10, "--no-normalization")
    assert r.returncode == 1 and "not a readable zip" in r.stderr, r.stderr
    p.write_bytes(b"hello world")
    r, _ = import_model(tmp_path, p, 10, "--no-normalization")
    assert r.returncode == 1 and "neither an HDF5 file" in r.stderr, r.stderr


def test_flags_checked(tmp_path):
    model = os.path.join(FIX, "tinymaix_mnist_same.h5")
    r, _ = import_model(tmp_path, model, 9, "--no-normalization")
    assert r.returncode == 1 and "has 9 labels, the model has 10 outputs" in r.stderr
    r, _ = import_model(tmp_path, model, 10)
    assert r.returncode == 2 and "--stats" in r.stderr
    r, _ = import_model(tmp_path, model, 10, "--no-normalization", "--segment", "1.0")
    assert r.returncode == 1 and "the model takes 28" in r.stderr
    np.savez(tmp_path / "s.npz", mean=np.zeros(5, np.float32), std=np.ones(5, np.float32))
    r, _ = import_model(tmp_path, model, 10, "--stats", tmp_path / "s.npz")
    assert r.returncode == 1 and "has 5 values, expected 1 or 28" in r.stderr


def test_classify_npy_wrong_shape_refused(tmp_path):
    r, out = import_model(tmp_path, os.path.join(FIX, "tinymaix_mnist_same.h5"), 10, "--no-normalization")
    p = tmp_path / "bad.npy"
    np.save(p, np.zeros((2, 28, 27), np.float32))
    r = run("classify", "--model", out, p)
    assert r.returncode == 1 and "the model takes 28x28" in r.stderr
    np.save(p, np.zeros((2, 28, 28), np.float64))
    r = run("classify", "--model", out, p)
    assert r.returncode == 1 and "float32" in r.stderr


def test_birdsongd_links_no_hdf5_or_zip():
    # the importer is the trainer side's: the daemon must not carry libhdf5/libzip
    r = subprocess.run(["readelf", "-d", os.path.join(BUILD, "birdsongd")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    needed = [l for l in r.stdout.splitlines() if "NEEDED" in l]
    assert needed and not [l for l in needed if "hdf5" in l or "libzip" in l], needed


# ---- repair: train --init-from an imported model ---------------------------------------------

DATA = os.environ.get("BIRDSONG_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
BIRDS = os.path.join(DATA, "birds-6sp")


def tensors(model):
    sys.path.insert(0, os.path.join(ROOT, "tests", "tools"))
    import bsm_to_keras
    return bsm_to_keras.read_bsm(str(model))


def test_init_from_imported_softmax_head_freeze_features(tmp_path):
    if not os.path.isdir(BIRDS):
        pytest.skip("real data not found at %s" % BIRDS)
    rows = ["path\tlabels\tgroup"]
    for sp in ("Vireo_griseus", "Cecropis_daurica"):
        d = os.path.join(BIRDS, sp)
        files = sorted((f for f in os.listdir(d) if f.endswith(".flac")), key=lambda f: (os.path.getsize(os.path.join(d, f)), f))
        rows += ["%s\t%s\t%s" % (os.path.join(d, f), sp, f) for f in files[:4]]
    (tmp_path / "m.tsv").write_text("\n".join(rows) + "\n")
    common = ["--data", tmp_path / "m.tsv", "--epochs", "2", "--patience", "0", "--val-fraction", "0.4",
              "--no-augment", "--cache", tmp_path / "cache", "--threads", "2", "--n-mels", "32"]
    r = run("train", *common, "--arch", "convnet-lite", "--out", tmp_path / "start.bsm")
    assert r.returncode == 0, r.stderr
    # the start model as a Keras file with a saturating softmax head, imported back
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "tools", "bsm_to_keras.py"), tmp_path / "start.bsm",
                    tmp_path / "k.h5", "--head", "softmax", "--head-scale", "3"], check=True, timeout=120)
    meta, _ = tensors(tmp_path / "start.bsm")
    np.savez(tmp_path / "s.npz", mean=np.array(meta["normalization"]["mean"], np.float32),
             std=np.array(meta["normalization"]["std"], np.float32))
    (tmp_path / "labels.txt").write_text("".join(l + "\n" for l in meta["labels"]))
    r = run("import-keras", tmp_path / "k.h5", "--out", tmp_path / "imp.bsm", "--labels", tmp_path / "labels.txt",
            "--stats", tmp_path / "s.npz", "--segment", "1.0")
    assert r.returncode == 0, r.stderr
    r = run("train", *common, "--init-from", tmp_path / "imp.bsm", "--freeze-features", "--out", tmp_path / "fixed.bsm")
    assert r.returncode == 0, r.stderr
    m0, t0 = tensors(tmp_path / "imp.bsm")
    m1, t1 = tensors(tmp_path / "fixed.bsm")
    assert m0["output"] == "softmax" and m1["output"] == "sigmoid"
    assert m1["calibration"]["method"] == "platt" and len(m1["calibration"]["a"]) == 2  # #9's, after the fine-tune
    assert m1["training"]["init_from"]["training"]["imported_from"]["format"] == "keras"
    for name in t0:
        if name.startswith("dense"):
            assert not np.array_equal(t0[name], t1[name]), name + " did not train"
        else:
            np.testing.assert_array_equal(t0[name], t1[name], err_msg=name + " moved although frozen")
    r = run("train", *common, "--freeze-features", "--out", tmp_path / "x.bsm")
    assert r.returncode == 2 and "--init-from" in r.stderr


def test_demo_model_through_keras_classifies_identically(tmp_path):
    # models/demo.bsm written as a Keras 2 .h5 and imported back: the same network
    demo = os.path.join(ROOT, "models", "demo.bsm")
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "tools", "bsm_to_keras.py"), demo, tmp_path / "d.h5"],
                   check=True, timeout=120)
    meta, _ = tensors(demo)
    f = meta["features"]
    np.savez(tmp_path / "s.npz", mean=np.array(meta["normalization"]["mean"], np.float32),
             std=np.array(meta["normalization"]["std"], np.float32))
    (tmp_path / "l.txt").write_text("".join(l + "\n" for l in meta["labels"]))
    r = run("import-keras", tmp_path / "d.h5", "--out", tmp_path / "d.bsm", "--labels", tmp_path / "l.txt",
            "--stats", tmp_path / "s.npz", "--sample-rate", f["sample_rate"], "--n-fft", f["n_fft"],
            "--hop-length", f["hop_length"], "--segment", f["segment_seconds"], "--window-norm", f["window_norm"])
    assert r.returncode == 0, r.stderr
    x = rnd(4, meta["input"]["n_mels"], meta["input"]["n_frames"]) * 20 - 40
    p = tmp_path / "x.npy"
    np.save(p, x)
    r = run("classify", "--model", demo, "--format", "json", p)
    assert r.returncode == 0, r.stderr
    wins = json.loads(r.stdout)["files"][0]["windows"]
    want = np.array([w["probabilities"] + w.get("filter_probabilities", []) for w in wins])
    got = classify_npy(tmp_path / "d.bsm", x, tmp_path)  # every output a label, uncalibrated
    cal = meta.get("calibration")
    if cal:  # the demo's Platt scaling (bs_platt_apply): sigmoid(a logit(p) + b), p clipped
        q = np.clip(got.astype(np.float64), 1e-7, 1 - 1e-7)
        got = 1 / (1 + np.exp(-(np.array(cal["a"]) * np.log(q / (1 - q)) + np.array(cal["b"]))))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


# ---- a model of C > 1 input channels is never fed audio ---------------------------------------

def write_wav(path, seconds=1.0, rate=22050):
    import wave
    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.sin(2 * np.pi * 3000 * t) * 8000).astype("<i2").tobytes())


def test_three_channel_model_refuses_audio_everywhere(tmp_path):
    layers = finish(corner_layers(13, 11, 3), 3 * 3 * 5)
    write_h5(tmp_path / "rgb.h5", layers)
    r, model = import_model(tmp_path, tmp_path / "rgb.h5", 3, "--no-normalization")
    assert r.returncode == 0, r.stderr
    write_wav(tmp_path / "a.wav")
    (tmp_path / "d.tsv").write_text("path\tlabels\tgroup\n%s\tclass0\tg\n" % (tmp_path / "a.wav"))
    why = "the network takes 3-channel 13x11 inputs"
    r = run("classify", "--model", model, tmp_path / "a.wav")
    assert r.returncode == 1 and why in r.stderr and "(S, 13, 11, 3)" in r.stderr, r.stderr
    r = run("eval", "--model", model, "--data", tmp_path / "d.tsv")
    assert r.returncode == 1 and why in r.stderr, r.stderr
    r = run("features", tmp_path / "a.wav", "--model", model, "-o", tmp_path / "f.npy")
    assert r.returncode == 1 and why in r.stderr and not (tmp_path / "f.npy").exists(), r.stderr
    r = run("train", "--data", tmp_path / "d.tsv", "--init-from", model, "--epochs", "1", "--out", tmp_path / "t.bsm")
    assert r.returncode == 1 and why in r.stderr and not (tmp_path / "t.bsm").exists(), r.stderr
    r = subprocess.run([os.path.join(BUILD, "birdsongd"), "--check-config", "--model", str(model)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and why in r.stderr, r.stderr
    # and a .npy of one-channel windows is refused naming the shape it needs
    np.save(tmp_path / "w.npy", np.zeros((2, 13, 11), np.float32))
    r = run("classify", "--model", model, tmp_path / "w.npy")
    assert r.returncode == 1 and "expected 4 (windows, mels, frames, channels)" in r.stderr, r.stderr


def test_db_ref_is_stored_and_applied_to_audio(tmp_path):
    # --db-ref max (librosa power_to_db(ref=np.max), what many Keras pipelines trained on):
    # stored in the model, shown by inspect, and the audio path of classify computes the
    # features with it (the same core code as eval, train and birdsongd)
    write_h5(tmp_path / "m.h5", finish(corner_layers(13, 11), 3 * 3 * 5))
    r, model = import_model(tmp_path, tmp_path / "m.h5", 3, "--no-normalization", "--db-ref", "max")
    assert r.returncode == 0, r.stderr
    assert json.loads(run("inspect", model).stdout)["features"]["db_ref"] == "max"
    write_wav(tmp_path / "a.wav", seconds=0.1)
    r = run("features", tmp_path / "a.wav", "--model", model, "-o", tmp_path / "w.npy", "-q")
    assert r.returncode == 0, r.stderr
    w = np.load(tmp_path / "w.npy")
    assert w.shape[1:] == (13, 11) and len(w) >= 2 and (w.max(axis=(1, 2)) == 0).all()
    r = run("classify", "--model", model, "--format", "json", tmp_path / "a.wav")
    assert r.returncode == 0, r.stderr
    audio = np.array([x["probabilities"] for x in json.loads(r.stdout)["files"][0]["windows"]])
    np.testing.assert_allclose(audio, classify_npy(model, w, tmp_path), rtol=0, atol=2e-6)
    r, plain = import_model(tmp_path, tmp_path / "m.h5", 3, "--no-normalization")
    assert "db_ref" not in json.loads(run("inspect", plain).stdout)["features"]  # ref 1: as before
    r, _ = import_model(tmp_path, tmp_path / "m.h5", 3, "--no-normalization", "--db-ref", "-1")
    assert r.returncode == 2 and "--db-ref '-1'" in r.stderr
