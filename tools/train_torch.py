"""Train the reference MNIST CNN in PyTorch on assets/mnist10k and export it for gig.

    python tools/train_torch.py --epochs 20 --out /tmp/torch_cnn.safetensors

Recipe (issue 3's reference): Adam, lr 1e-3 with cosine decay, batch 64, random shifts of up to 2 pixels,
first 8,000 digits train, last 2,000 test. Prints per-epoch test accuracy and training throughput.
Not part of the test suite; needs torch and safetensors.
"""

import argparse
import gzip
import os
import struct
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from export_torch import build, export  # noqa: E402

ARCH = "conv(1,16,3,p1) relu maxpool2 conv(16,32,3,p1) relu maxpool2 flatten linear(1568,64) relu linear(64,10)"
DATA = os.path.join(os.path.dirname(__file__), "..", "assets", "mnist10k")


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        x = torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8).view(count, 1, rows, cols)
        return x.float() / 255.0
    return torch.frombuffer(bytearray(data[8:]), dtype=torch.uint8).long()


def shift(x, max_shift, gen):
    if max_shift == 0:
        return x
    out = torch.zeros_like(x)
    n, _, h, w = x.shape
    dy = torch.randint(-max_shift, max_shift + 1, (n,), generator=gen)
    dx = torch.randint(-max_shift, max_shift + 1, (n,), generator=gen)
    for i in range(n):
        sy, sx = int(dy[i]), int(dx[i])
        out[i, :, max(sy, 0):h + min(sy, 0), max(sx, 0):w + min(sx, 0)] = \
            x[i, :, max(-sy, 0):h + min(-sy, 0), max(-sx, 0):w + min(-sx, 0)]
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--shift", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    x = read_idx(os.path.join(DATA, "images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(DATA, "labels-idx1-ubyte.gz"))
    xtr, ytr, xte, yte = x[:8000], y[:8000], x[8000:], y[8000:]
    model = build(ARCH)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    steps = a.epochs * ((len(xtr) + a.batch - 1) // a.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        t0, seen, total = time.perf_counter(), 0, 0.0
        for s in range(0, len(xtr), a.batch):
            idx = perm[s:s + a.batch]
            xb = shift(xtr[idx], a.shift, gen)
            loss = loss_fn(model(xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            seen += len(idx)
            total += float(loss) * len(idx)
        dt = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch + 1}: loss {total / seen:.4f}  test accuracy {acc:.4f}  {seen / dt:.0f} images/s")
    export(model, a.out, (1, 28, 28))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
