"""Training throughput of gig and PyTorch side by side: the same network, Adam, softmax cross-entropy,
batch 64, on this machine.

    python tools/compare_training.py [--gig target/release/gig] [--model assets/mnist_cnn.safetensors]
                                     [--batch 64] [--rounds 3] [--steps 20] [--threads N]

Alternates `gig bench --train --json` (timed training steps on random images) and a PyTorch loop of
the same steps (random images, zero_grad/backward/step, no data loading or augmentation) for --rounds
rounds, and prints images per second of each and their ratio (medians over rounds). Not part of the
test suite; needs torch and safetensors.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from export_torch import load  # noqa: E402


def torch_rate(model, shape, batch, steps):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((batch, *shape), generator=gen)
    y = torch.arange(batch) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gig", default="target/release/gig")
    p.add_argument("--model", default="assets/mnist_cnn.safetensors")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model, shape = load(a.model)
    ours, theirs = [], []
    for _ in range(a.rounds):
        cmd = [a.gig, "bench", "--train", "--model", a.model, "--batch", str(a.batch), "--repeat", str(a.steps),
               "--json"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(res.stderr)
        line = json.loads(res.stdout.strip().splitlines()[-1])
        ours.append(line["images_per_s"])
        theirs.append(torch_rate(model, shape, a.batch, a.steps))
    g, t = float(np.median(ours)), float(np.median(theirs))
    print(f"training, batch {a.batch}: gig {g:.0f} images/s ({line['adapter']}), PyTorch {t:.0f} images/s "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads): ratio {g / t:.2f}")


if __name__ == "__main__":
    main()
