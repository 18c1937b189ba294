"""Compare gig with Captum's IntegratedGradients on the same models and inputs, on this machine.

    python tools/compare_captum.py parity [--gig target/release/gig] [--steps 32]

parity: for several CNNs other than the shipped one (random weights, odd shapes), every quadrature rule,
a zero and a random baseline, runs `gig attribute` and Captum (float32) and prints the relative L2
difference of the attributions (target: < 1e-4). Both are also compared with Captum in float64 on the same
model (the exact answer for that rule): where the two float32 results differ, this shows which is closer.
Such differences come from max-pool windows or ReLUs whose inputs tie to within float32 resolution at some
path point, which two float32 implementations may resolve differently.
Captum's riemann_trapezoid weights sum to (n-1)/n while gig's integrate exactly, so Captum's trapezoid
result is compared with gig's times (n-1)/n.

Not part of the test suite; needs torch, captum and safetensors.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from captum.attr import IntegratedGradients
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from export_torch import export  # noqa: E402

RULES = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]


def models():
    """(name, nn.Sequential, input shape): CNNs unlike the shipped one."""
    torch.manual_seed(0)
    rgb = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(8, 12, (3, 2), padding=(1, 0)), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(12 * 4 * 3, 10),
    )
    lenet = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 10),
    )
    wide = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 14 * 14, 10),
    )
    return [("rgb_strided_33x30", rgb, (3, 33, 30)), ("lenet_28", lenet, (1, 28, 28)),
            ("wide_28", wide, (1, 28, 28))]


def gig_attribute(gig, model_path, x_path, b_path, targets, rule, steps, out):
    cmd = [gig, "attribute", "--model", model_path, "--input", x_path, "--baseline", b_path,
           "--target", ",".join(map(str, targets)) if len(targets) > 1 else str(targets[0]),
           "--method", rule, "--steps", str(steps), "--out", out, "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{res.stderr}")
    return np.load(out), [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def parity(args):
    diffs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, shape in models():
            model.eval()
            path = os.path.join(tmp, f"{name}.safetensors")
            export(model, path, shape)
            gen = torch.Generator().manual_seed(1)
            x = torch.rand((4, *shape), generator=gen)
            baselines = {"zero": torch.zeros_like(x), "random": torch.rand((4, *shape), generator=gen) * 0.3}
            targets = [0, 3, 7, 9]
            x_path = os.path.join(tmp, "x.npy")
            np.save(x_path, x.numpy())
            for bname, b in baselines.items():
                b_path = os.path.join(tmp, "b.npy")
                np.save(b_path, b.numpy())
                for rule in RULES:
                    ours, _ = gig_attribute(args.gig, path, x_path, b_path, targets, rule, args.steps,
                                            os.path.join(tmp, "a.npy"))
                    if rule == "riemann_trapezoid":
                        ours = ours * (args.steps - 1) / args.steps
                    t = torch.tensor(targets)
                    theirs = IntegratedGradients(model).attribute(
                        x, baselines=b, target=t, n_steps=args.steps, method=rule).detach().numpy()
                    exact = IntegratedGradients(model.double()).attribute(
                        x.double(), baselines=b.double(), target=t, n_steps=args.steps, method=rule
                    ).detach().numpy()
                    model.float()
                    err = rel(ours, theirs)
                    diffs.append(err)
                    print(f"{name:18s} {bname:6s} {rule:18s} gig vs captum {err:.2e}   vs float64: "
                          f"gig {rel(ours, exact):.2e}  captum {rel(theirs, exact):.2e}")
    diffs = np.array(diffs)
    print(f"gig vs captum (float32), {len(diffs)} cases: median {np.median(diffs):.2e}, max {diffs.max():.2e}, "
          f"{(diffs < 1e-4).sum()} below 1e-4")
    return 0 if diffs.max() < 1e-4 else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    par = sub.add_parser("parity", help="attributions of gig and Captum agree")
    par.add_argument("--gig", default="target/release/gig")
    par.add_argument("--steps", type=int, default=32)
    args = p.parse_args()
    sys.exit(parity(args))


if __name__ == "__main__":
    main()
