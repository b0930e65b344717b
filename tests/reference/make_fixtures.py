#!/usr/bin/python3
"""Generates tests/reference/fixtures/small_net.json: a small network in PyTorch (float64)
with the same layer list, layouts and conventions as core/nn, for tests/unit/test_reference.c.

    /usr/bin/python3 tests/reference/make_fixtures.py     (needs python3-torch; make test does not)

Network (input 1 x 8 x 6, batch 4, 3 outputs):
  conv 3x3 3 -> relu -> batchnorm -> maxpool (2,1) -> conv 5x5 4 -> relu -> batchnorm
  -> maxpool (2,2) -> flatten -> dense 3 -> sigmoid, trained with BCE on logits + pos_weight.
Conventions checked: conv weight (OC, IC, kh, kw), dense weight (out, in), flatten (C, H, W),
batchnorm eps 1e-3 with BIASED running variance and momentum 0.99 (Keras; PyTorch's running
var is unbiased, so the expected running statistics are computed here from the batch),
Adam eps 1e-7 in PyTorch's convention, L2 weight decay, global-norm clipping.
Contents: initial parameters, x, y, pos_weight; training forward logits and loss; every
gradient; running statistics after that forward; an inference forward with given running
statistics; parameters after 20 Adam steps (weight decay 1e-2, clip norm 0.05)."""
import json
import os

import torch
from torch import nn

torch.manual_seed(20261126)
torch.set_default_dtype(torch.float64)
B, H, W, O = 4, 8, 6, 3


def build():
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(3, eps=1e-3, momentum=0.01),
        nn.MaxPool2d((2, 1)),
        nn.Conv2d(3, 4, 5, padding=2), nn.ReLU(), nn.BatchNorm2d(4, eps=1e-3, momentum=0.01),
        nn.MaxPool2d((2, 2)),
        nn.Flatten(), nn.Linear(4 * 2 * 3, O))


# names in core/nn order: conv1.weight, conv1.bias, bn1.gamma, bn1.beta, ... dense1.bias
def named(net):
    c1, b1, c2, b2, d = net[0], net[2], net[4], net[6], net[9]
    return [("conv1.weight", c1.weight), ("conv1.bias", c1.bias), ("bn1.gamma", b1.weight),
            ("bn1.beta", b1.bias), ("conv2.weight", c2.weight), ("conv2.bias", c2.bias),
            ("bn2.gamma", b2.weight), ("bn2.beta", b2.bias), ("dense1.weight", d.weight),
            ("dense1.bias", d.bias)]


def flat(t):
    return [float(v) for v in t.detach().reshape(-1)]


net = build()
with torch.no_grad():  # non-trivial gamma/beta so their gradients are exercised
    for bn in (net[2], net[6]):
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
x = torch.randn(B, 1, H, W)
y = torch.zeros(B, O)
y[0, 0] = y[1, 2] = y[2, 1] = y[2, 2] = 1  # sample 3 is background
pos_weight = torch.tensor([2.0, 1.0, 0.5])
loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

fx = {"batch": B, "n_mels": H, "n_frames": W, "n_outputs": O,
      "x": flat(x), "y": flat(y), "pos_weight": flat(pos_weight),
      "params": {n: flat(p) for n, p in named(net)}}

# training forward + backward; capture batchnorm inputs for the expected running statistics
bn_in = {}
hooks = [net[i].register_forward_hook(lambda m, a, o, i=i: bn_in.__setitem__(i, a[0].detach()))
         for i in (2, 6)]
net.train()
z = net(x)
loss = loss_fn(z, y)
loss.backward()
for h in hooks:
    h.remove()
fx["train_logits"] = flat(z)
fx["train_loss"] = float(loss)
fx["grads"] = {n: flat(p.grad) for n, p in named(net)}
for k, i in ((1, 2), (2, 6)):
    t = bn_in[i]
    mean = t.mean(dim=(0, 2, 3))
    var = t.var(dim=(0, 2, 3), unbiased=False)
    fx[f"bn{k}.running_mean"] = flat(0.01 * mean)
    fx[f"bn{k}.running_var"] = flat(0.99 + 0.01 * var)

# inference forward with chosen running statistics
with torch.no_grad():
    stats = {}
    for k, i in ((1, 2), (2, 6)):
        c = net[i].num_features
        rm, rv = torch.randn(c) * 0.3, torch.rand(c) + 0.5
        net[i].running_mean.copy_(rm)
        net[i].running_var.copy_(rv)
        stats[f"bn{k}.running_mean"], stats[f"bn{k}.running_var"] = flat(rm), flat(rv)
    net.eval()
    fx["infer_stats"] = stats
    fx["infer_logits"] = flat(net(x))

# 20 Adam steps from the initial parameters on the same batch (training mode)
net2 = build()
with torch.no_grad():
    for (n, p) in named(net2):
        p.copy_(torch.tensor(fx["params"][n]).reshape(p.shape))
opt = torch.optim.Adam(net2.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7,
                       weight_decay=1e-2)
net2.train()
norms = []
for step in range(20):
    opt.zero_grad()
    loss_fn(net2(x), y).backward()
    norms.append(float(nn.utils.clip_grad_norm_(net2.parameters(), 0.05)))
    opt.step()
fx["adam"] = {"lr": 1e-3, "eps": 1e-7, "weight_decay": 1e-2, "clip_norm": 0.05, "steps": 20,
              "grad_norms": norms, "params": {n: flat(p) for n, p in named(net2)}}
assert min(norms) > 0.05, "clipping must be active for the fixture to test it"

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "small_net.json")
with open(out, "w") as f:
    json.dump(fx, f, separators=(",", ":"))
    f.write("\n")
print(f"wrote {out} ({os.path.getsize(out)} bytes)")
