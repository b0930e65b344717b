#!/usr/bin/python3
"""The same network as `birdsong bench` in PyTorch (the peer for `make bench`).

Prints one JSON line: infer_ms_per_window (batch 1, eval, no_grad, median) and
train_samples_per_s (batch B, BCE-with-logits, Adam, median step). Exit 0 with a message and
{"skipped": ...} when torch is absent."""
import argparse
import json
import sys
import time


def convnet(arch, n_classes, n_mels, n_frames, nn):
    if arch == "convnet1":
        spec = [(64, 3, (2, 1)), (128, 3, (2, 1)), (128, 5, (2, 2)), (256, 5, None)]
    elif arch == "convnet-lite":
        spec = [(16, 3, (2, 2)), (32, 3, (2, 2)), (64, 3, (2, 2)), (64, 3, None)]
    else:
        raise SystemExit(f"peer_torch.py: unknown arch {arch}")
    layers, c, h, w = [], 1, n_mels, n_frames
    for filters, k, pool in spec:
        layers += [nn.Conv2d(c, filters, k, padding=k // 2), nn.ReLU(),
                   nn.BatchNorm2d(filters, eps=1e-3, momentum=0.01)]
        c = filters
        if pool:
            layers.append(nn.MaxPool2d(pool))
            h, w = h // pool[0], w // pool[1]
    layers += [nn.Flatten(), nn.Dropout(0.2), nn.Linear(c * h * w, n_classes)]
    return nn.Sequential(*layers)


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="convnet1")
    ap.add_argument("--classes", type=int, default=70)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mels", type=int, default=128)
    ap.add_argument("--frames", type=int, default=44)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--train-steps", type=int, default=5)
    a = ap.parse_args()
    try:
        import torch
        from torch import nn
    except ImportError:
        print("peer_torch.py: torch is not installed, skipping the PyTorch peer", file=sys.stderr)
        print(json.dumps({"skipped": "torch not installed"}))
        return 0
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    net = convnet(a.arch, a.classes, a.mels, a.frames, nn)
    x = torch.randn(a.batch, 1, a.mels, a.frames)
    net.eval()
    # wall time, and CPU time of this thread (with one thread torch computes in the caller:
    # robust to other processes sharing the cores)
    times, cpu = [], []
    with torch.no_grad():
        for r in range(a.iters + 3):
            t0, c0 = time.perf_counter(), time.thread_time()
            torch.sigmoid(net(x[:1]))
            if r >= 3:
                times.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
    infer_ms, infer_cpu_ms = median(times) * 1e3, median(cpu) * 1e3
    step_ms = step_cpu_ms = 0.0
    if a.train_steps > 0:
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
        loss_fn = nn.BCEWithLogitsLoss()
        y = torch.zeros(a.batch, a.classes)
        y[torch.arange(a.batch), torch.arange(a.batch) % a.classes] = 1
        st, sc = [], []
        for r in range(a.train_steps + 1):
            t0, c0 = time.perf_counter(), time.thread_time()
            opt.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            if r >= 1:
                st.append(time.perf_counter() - t0)
                sc.append(time.thread_time() - c0)
        step_ms, step_cpu_ms = median(st) * 1e3, median(sc) * 1e3
    print(json.dumps({"peer": "torch " + torch.__version__, "arch": a.arch, "threads": a.threads,
                      "infer_ms_per_window": round(infer_ms, 3),
                      "infer_cpu_ms_per_window": round(infer_cpu_ms, 3),
                      "train_ms_per_step": round(step_ms, 1),
                      "train_cpu_ms_per_step": round(step_cpu_ms, 1),
                      "train_samples_per_s": round(a.batch / (step_ms / 1e3), 2) if step_ms else 0.0,
                      "train_samples_per_cpu_s":
                          round(a.batch / (step_cpu_ms / 1e3), 2) if step_cpu_ms else 0.0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
