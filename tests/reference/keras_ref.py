#!/usr/bin/python3
"""Reference forward pass of a Keras model file in numpy, reading the file with h5py.

TensorFlow is not available here, so this is what `birdsong import-keras` is checked
against (tests/integration/test_keras_import.py); it is itself checked first against the one
file that carries Keras's own outputs (hls4ml_conv2d_1layer.h5 with its _input/_output.dat).

Reads Keras 2.x (tf.keras) and Keras 3 `.h5` files (weights found through each layer
group's `weight_names` attribute) and Keras 3 `.keras` zips (config.json +
model.weights.h5, weights under layers/<name>/vars/<i>). Layers: InputLayer, Conv2D,
BatchNormalization, Max/AveragePooling2D, GlobalAverage/GlobalMaxPooling2D, Flatten,
Dropout, Dense, Activation; data channels-last (N, H, W, C), float64 arithmetic.

Usage: keras_ref.py MODEL INPUT.npy OUTPUT.npy
         INPUT (N, H, W) or (N, H, W, C) float32; OUTPUT (N, outputs) float32 (the model
         output flattened per example, after its final activation).
       keras_ref.py fixtures DIR [MODEL.h5...]
         for every one-channel model DIR/*.h5: DIR/<model>_x.npy, 4 seeded inputs (S, H, W)
         uniform in [-2, 2), and DIR/<model>_y.npy, their outputs; then the same for each
         MODEL.h5 given (any channel count, inputs (S, H, W, C) when C > 1, their own seed),
         written to DIR (for models whose file is not committed, e.g. the cifar10 one).
"""
import glob
import os
import io
import json
import sys
import zipfile

import h5py
import numpy as np


def _str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def load(path):
    """(keras_version, layers [(class_name, config, [weights as float64 arrays])])."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in z.namelist() else {}
            h5 = h5py.File(io.BytesIO(z.read("model.weights.h5")), "r")
        version = meta.get("keras_version", "3")
        layers = []
        for layer in config["config"]["layers"]:
            name = layer["config"]["name"]
            ws = []
            g = h5.get("layers/" + name + "/vars")
            if g is not None:
                ws = [np.asarray(g[k], np.float64) for k in sorted(g.keys(), key=int)]
            layers.append((layer["class_name"], layer["config"], ws))
        return version, layers
    h5 = h5py.File(path, "r")
    version = _str(h5.attrs.get("keras_version", "unknown"))
    config = json.loads(_str(h5.attrs["model_config"]))
    mw = h5["model_weights"] if "model_weights" in h5 else h5
    layers = []
    for layer in config["config"]["layers"]:
        name = layer["config"]["name"]
        ws = []
        if name in mw:
            g = mw[name]
            for wn in g.attrs.get("weight_names", []):
                ws.append(np.asarray(g[_str(wn)], np.float64))
        layers.append((layer["class_name"], layer["config"], ws))
    return version, layers


def _pads(n, k, s, padding):
    """(output size, padding before) as TensorFlow computes them."""
    if padding == "valid":
        return (n - k) // s + 1, 0
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2


def conv2d(x, w, b, strides, padding):
    """x (N, H, W, C), w (kh, kw, C, O) -> (N, OH, OW, O)."""
    n, h, wd, c = x.shape
    kh, kw, _, o = w.shape
    oh, pt = _pads(h, kh, strides[0], padding)
    ow, pl = _pads(wd, kw, strides[1], padding)
    xp = np.zeros((n, max(h, (oh - 1) * strides[0] + kh) + pt, max(wd, (ow - 1) * strides[1] + kw) + pl, c))
    xp[:, pt:pt + h, pl:pl + wd, :] = x
    y = np.zeros((n, oh, ow, o))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i:i + strides[0] * (oh - 1) + 1:strides[0], j:j + strides[1] * (ow - 1) + 1:strides[1], :]
            y += patch @ w[i, j]
    return y + b


def pool2d(x, size, strides, padding, op):
    n, h, wd, c = x.shape
    oh, pt = _pads(h, size[0], strides[0], padding)
    ow, pl = _pads(wd, size[1], strides[1], padding)
    y = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * strides[0] - pt, j * strides[1] - pl
            win = x[:, max(r0, 0):min(r0 + size[0], h), max(c0, 0):min(c0 + size[1], wd), :]
            y[:, i, j, :] = win.max(axis=(1, 2)) if op == "max" else win.mean(axis=(1, 2))
    return y


def activation(x, name):
    if name in ("linear", None):
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise ValueError("activation %r not supported" % name)


def forward(layers, x):
    for cls, cfg, ws in layers:
        if cls == "InputLayer" or cls == "Dropout":
            continue
        if cls == "Conv2D":
            b = ws[1] if cfg.get("use_bias", True) else 0.0
            x = conv2d(x, ws[0], b, cfg["strides"], cfg["padding"])
        elif cls == "BatchNormalization":
            it = iter(ws)
            gamma = next(it) if cfg.get("scale", True) else 1.0
            beta = next(it) if cfg.get("center", True) else 0.0
            mean, var = next(it), next(it)
            x = (x - mean) / np.sqrt(var + cfg["epsilon"]) * gamma + beta
        elif cls in ("MaxPooling2D", "AveragePooling2D"):
            st = cfg.get("strides") or cfg["pool_size"]
            x = pool2d(x, cfg["pool_size"], st, cfg["padding"], "max" if cls[0] == "M" else "avg")
        elif cls == "GlobalAveragePooling2D":
            x = x.mean(axis=(1, 2))
        elif cls == "GlobalMaxPooling2D":
            x = x.max(axis=(1, 2))
        elif cls == "Flatten":
            x = x.reshape(x.shape[0], -1)
        elif cls == "Dense":
            b = ws[1] if cfg.get("use_bias", True) else 0.0
            x = x @ ws[0] + b
        elif cls != "Activation":
            raise ValueError("layer class %s not supported" % cls)
        x = activation(x, cfg.get("activation"))
    return x.reshape(x.shape[0], -1)


def _fixture(path, stem, rng, multi):
    _, layers = load(path)
    cfg = layers[0][1]
    shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
    if shape[3] != 1 and not multi:
        return
    size = (4, shape[1], shape[2]) + ((shape[3],) if shape[3] != 1 else ())
    x = rng.uniform(-2, 2, size=size).astype(np.float32)
    np.save(stem + "_x.npy", x)
    x4 = x if x.ndim == 4 else x[..., None]
    np.save(stem + "_y.npy", forward(layers, x4.astype(np.float64)).astype(np.float32))
    print(stem, x.shape)


def fixtures(d, extra=()):
    rng = np.random.default_rng(20261206)
    for path in sorted(glob.glob(os.path.join(d, "*.h5"))):
        _fixture(path, path[:-3], rng, False)
    for path in extra:
        stem = os.path.join(d, os.path.basename(path)[:-3])
        _fixture(path, stem, np.random.default_rng(20261207), True)


def main(argv):
    if len(argv) >= 3 and argv[1] == "fixtures":
        return fixtures(argv[2], argv[3:])
    if len(argv) != 4:
        sys.exit(__doc__)
    _, layers = load(argv[1])
    x = np.load(argv[2]).astype(np.float64)
    if x.ndim == 3:
        x = x[..., None]
    np.save(argv[3], forward(layers, x).astype(np.float32))


if __name__ == "__main__":
    main(sys.argv)
