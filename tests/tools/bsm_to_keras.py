#!/usr/bin/python3
"""Writes a birdsong model (.bsm) as a Keras 2 Sequential .h5 (the layout tf.keras's
model.save writes: model_config, model_weights/<layer>/<layer>/<w>:0 and weight_names),
for tests and measurements of `birdsong import-keras`: importing the result must give the
same network (kernels transposed to HWIO, dense rows permuted to Keras's (H, W, C) flatten).

Usage: bsm_to_keras.py MODEL.bsm OUT.h5 [--head sigmoid|softmax] [--head-scale K] [--head-bias B]
  --head-scale / --head-bias multiply the last dense layer's weights and add to its biases: a
  head that saturates, as the seed's sigmoid trained with categorical cross-entropy did.
Handles the built-in architectures' layers: conv2d (stride 1, 'same') + relu, batchnorm,
maxpool (window = stride), flatten, dropout, dense, sigmoid / softmax.
"""
import argparse
import json
import struct

import h5py
import numpy as np


def read_bsm(path):
    b = open(path, "rb").read()
    assert b[:8] == b"BSMODEL\0", "not a .bsm"
    json_size, data_off = struct.unpack_from("<QQ", b, 16)
    meta = json.loads(b[64:64 + json_size])
    tensors = {}
    for t in meta["tensors"]:
        n = int(np.prod(t["shape"]))
        tensors[t["name"]] = np.frombuffer(b, "<f4", n, data_off + t["offset"]).reshape(t["shape"])
    return meta, tensors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bsm")
    ap.add_argument("out")
    ap.add_argument("--head", choices=["sigmoid", "softmax"])
    ap.add_argument("--head-scale", type=float, default=1.0)
    ap.add_argument("--head-bias", type=float, default=0.0)
    a = ap.parse_args()
    meta, T = read_bsm(a.bsm)
    H, W = meta["input"]["n_mels"], meta["input"]["n_frames"]
    layers = [("InputLayer", {"name": "input", "batch_input_shape": [None, H, W, 1]}, [])]
    n = {"conv": 0, "bn": 0, "dense": 0, "pool": 0}
    h, w, c = H, W, 1
    flat_from = None
    specs = meta["layers"]
    n_dense = sum(1 for s in specs if s["type"] == "dense")
    for i, s in enumerate(specs):
        t = s["type"]
        if t == "conv2d":
            n["conv"] += 1
            k = "conv%d" % n["conv"]
            wt = T[k + ".weight"]  # (O, I, kh, kw) -> (kh, kw, I, O)
            act = "relu" if i + 1 < len(specs) and specs[i + 1]["type"] == "relu" else "linear"
            layers.append(("Conv2D", {"name": k, "filters": wt.shape[0], "kernel_size": list(wt.shape[2:]),
                                      "strides": [1, 1], "padding": "same", "activation": act, "use_bias": True,
                                      "dilation_rate": [1, 1], "data_format": "channels_last"},
                           [wt.transpose(2, 3, 1, 0), T[k + ".bias"]]))
            c = wt.shape[0]
        elif t == "relu":
            if specs[i - 1]["type"] != "conv2d":
                layers.append(("Activation", {"name": "relu%d" % i, "activation": "relu"}, []))
        elif t == "batchnorm":
            n["bn"] += 1
            k = "bn%d" % n["bn"]
            layers.append(("BatchNormalization", {"name": k, "axis": [3], "epsilon": s.get("epsilon", 1e-3),
                                                  "center": True, "scale": True},
                           [T[k + ".gamma"], T[k + ".beta"], T[k + ".running_mean"], T[k + ".running_var"]]))
        elif t == "maxpool":
            n["pool"] += 1
            p = s["pool"]
            layers.append(("MaxPooling2D", {"name": "pool%d" % n["pool"], "pool_size": p, "strides": p,
                                            "padding": "valid", "data_format": "channels_last"}, []))
            h, w = h // p[0], w // p[1]
        elif t == "flatten":
            layers.append(("Flatten", {"name": "flatten", "data_format": "channels_last"}, []))
            flat_from = (h, w, c)
        elif t == "dropout":
            layers.append(("Dropout", {"name": "dropout%d" % i, "rate": s["rate"]}, []))
        elif t == "dense":
            n["dense"] += 1
            k = "dense%d" % n["dense"]
            wt, bias = T[k + ".weight"].astype(np.float64), T[k + ".bias"].astype(np.float64)  # (out, in)
            if flat_from:  # our input index (c, y, x) -> Keras's (y, x, c)
                fh, fw, fc = flat_from
                wt = wt.reshape(-1, fc, fh, fw).transpose(0, 2, 3, 1).reshape(wt.shape[0], -1)
                flat_from = None
            last = n["dense"] == n_dense
            if last:
                wt, bias = wt * a.head_scale, bias * a.head_scale + a.head_bias
            act = (a.head or specs[-1]["type"]) if last else "linear"
            layers.append(("Dense", {"name": k, "units": wt.shape[0], "activation": act, "use_bias": True},
                           [wt.T.astype(np.float32), bias.astype(np.float32)]))
        elif t in ("sigmoid", "softmax"):
            pass
        else:
            raise SystemExit("layer type %s is not handled" % t)
    conf = {"class_name": "Sequential", "config": {"name": "exported", "layers": [
        {"class_name": cls, "config": cfg} for cls, cfg, _ in layers]}}
    with h5py.File(a.out, "w") as f:
        f.attrs["model_config"] = json.dumps(conf, default=int).encode()
        f.attrs["keras_version"] = b"2.11.0"
        f.attrs["backend"] = b"tensorflow"
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([cfg["name"].encode() for _, cfg, _ in layers])
        for cls, cfg, ws in layers:
            lg = g.create_group(cfg["name"])
            names = ["%s/%s:0" % (cfg["name"], nm) for nm in
                     (["kernel", "bias"] if cls in ("Conv2D", "Dense") else
                      ["gamma", "beta", "moving_mean", "moving_variance"])][:len(ws)]
            lg.attrs["weight_names"] = np.array([x.encode() for x in names]) if names else np.zeros(0)
            for nm, wv in zip(names, ws):
                lg.create_dataset(nm, data=np.asarray(wv, np.float32))


if __name__ == "__main__":
    main()
