"""Compare gig with Captum's IntegratedGradients on the same models and inputs, on this machine.

    python tools/compare_captum.py parity [--gig target/release/gig] [--steps 32]
    python tools/compare_captum.py speed [--model assets/mnist_cnn.safetensors] [--batch 1 100] [--steps 50]
                                         [--device cpu|cuda] [--rounds 3] [--gig-args ...]
    python tools/compare_captum.py accuracy [--count 16] [--goal 4e-4] [--batch 1 16] [--device cpu|cuda]
                                            [--reference REF.npy]

parity: for several CNNs other than the shipped one (random weights, odd shapes), every quadrature rule,
a zero and a random baseline, runs `gig attribute` and Captum (float32) and prints the relative L2
difference of the attributions (target: < 1e-4). Both are also compared with Captum in float64 on the same
model (the exact answer for that rule): where the two float32 results differ, this shows which is closer.
Such differences come from max-pool windows or ReLUs whose inputs tie to within float32 resolution at some
path point, which two float32 implementations may resolve differently.
Captum's riemann_trapezoid weights sum to (n-1)/n while gig's integrate exactly, so Captum's trapezoid
result is compared with gig's times (n-1)/n.

speed: on the same model, rule and batch, alternates `gig bench --json` and a Captum timing loop for
--rounds rounds (so that both see the same machine load), checks that the two attributions of the
shipped digits agree, and prints gradient evaluations per second of each and their ratio (medians over
rounds). Captum runs on --device (cpu, or cuda where PyTorch has a GPU) with torch's default threads.

accuracy: time to an attribution within --goal (median relative L2 against exact IG) on held-out digits.
Exact IG comes from `gig attribute --method exact` (f64, walking each path's linear pieces; minutes, so
--reference keeps it in a file for later runs with the same model and count). Captum runs
each uniform rule at growing step counts until its median error meets the goal; gig runs `adaptive` at
growing budgets likewise. Then gig's cheapest budget and every Captum rule that meets the goal at
Captum's fewest steps are timed side by side (alternating, --rounds rounds, same batch), and the ratio of
wall times against the fastest of those rules is printed (rules with the same steps differ in time:
Captum computes Gauss-Legendre nodes on every call).

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
from export_torch import export, load  # noqa: E402

RULES = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]


def models():
    """(name, nn.Sequential, input shape): CNNs unlike the shipped one, and one like it in RGB."""
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
    # Conv, ReLU and a max-pool with disjoint windows first (one row left out): gig takes that conv's
    # input gradient once per image, after the sum over the steps.
    pooled = nn.Sequential(
        nn.Conv2d(3, 6, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 3 * 3, 10),
    )
    return [("rgb_strided_33x30", rgb, (3, 33, 30)), ("lenet_28", lenet, (1, 28, 28)),
            ("wide_28", wide, (1, 28, 28)), ("rgb_pooled_29x27", pooled, (3, 29, 27))]


def gig_attribute(gig, model_path, x_path, b_path, targets, rule, steps, out, extra=()):
    cmd = [gig, "attribute", "--model", model_path, "--input", x_path, "--baseline", b_path,
           "--target", ",".join(map(str, targets)) if len(targets) > 1 else str(targets[0]),
           "--method", rule, "--steps", str(steps), "--out", out, "--json", *extra]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{res.stderr}")
    return np.load(out), [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def parity(args):
    diffs, vs64 = [], []
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
                                            os.path.join(tmp, "a.npy"),
                                            ["--conv", args.conv] + (["--gradient-norms"] if args.gradient_norms else []))
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
                    vs64.append((rel(ours, exact), rel(theirs, exact)))
                    print(f"{name:18s} {bname:6s} {rule:18s} gig vs captum {err:.2e}   vs float64: "
                          f"gig {rel(ours, exact):.2e}  captum {rel(theirs, exact):.2e}")
    diffs, vs64 = np.array(diffs), np.array(vs64)
    print(f"gig vs float64 Captum: median {np.median(vs64[:, 0]):.2e}, max {vs64[:, 0].max():.2e}; "
          f"captum vs float64: median {np.median(vs64[:, 1]):.2e}, max {vs64[:, 1].max():.2e}")
    print(f"gig vs captum (float32), {len(diffs)} cases: median {np.median(diffs):.2e}, max {diffs.max():.2e}, "
          f"{(diffs < 1e-4).sum()} below 1e-4")
    return 0 if diffs.max() < 1e-4 else 1


def captum_rate(model, x, steps, method, device, repeat):
    """Median gradient evaluations/s of Captum IG on batch x (after one warm-up)."""
    import time

    ig = IntegratedGradients(model)
    t = torch.arange(x.shape[0], device=device) % 10
    b = torch.zeros_like(x)

    def once():
        ig.attribute(x, baselines=b, target=t, n_steps=steps, method=method)
        if device == "cuda":
            torch.cuda.synchronize()

    once()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return x.shape[0] * steps / float(np.median(times))


def speed(args):
    model, shape = load(args.model)
    model = model.to(args.device).eval()
    agree = check_agreement(args, model, shape)
    print(f"attributions of the 10 shipped digits, gig vs Captum: relative L2 {agree:.2e}")
    for batch in args.batch:
        gen = torch.Generator().manual_seed(0)
        x = torch.rand((batch, *shape), generator=gen).to(args.device)
        ours, theirs = [], []
        for _ in range(args.rounds):
            cmd = [args.gig, "bench", "--model", args.model, "--steps", str(args.steps), "--batch", str(batch),
                   "--method", args.method, "--repeat", str(args.repeat), "--json", *args.gig_args]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(res.stderr)
            line = json.loads(res.stdout.strip().splitlines()[-1])
            ours.append(line["gradient_evaluations_per_s"])
            theirs.append(captum_rate(model, x, args.steps, args.method, args.device, args.repeat))
        g, c = float(np.median(ours)), float(np.median(theirs))
        # Each round times both back to back, so its ratio shares the machine's load of the moment:
        # on a noisy machine the per-round ratios spread less than either rate.
        ratios = [o / t for o, t in zip(ours, theirs)]
        print(f"batch {batch:4d}: gig {g:10.1f} evaluations/s ({line['adapter']}), "
              f"captum {c:10.1f} evaluations/s (torch {torch.__version__}, {args.device}, "
              f"{torch.get_num_threads()} threads): ratio {g / c:.2f} (per round: median "
              f"{float(np.median(ratios)):.2f}, range {min(ratios):.2f}-{max(ratios):.2f})")
    return 0


def check_agreement(args, model, shape):
    digits = [os.path.join(os.path.dirname(args.model), "digits", f"{d}.png") for d in range(10)]
    if not all(os.path.exists(d) for d in digits):
        return float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "a.npy")
        cmd = [args.gig, "attribute", "--model", args.model, "--input", *digits, "--target",
               ",".join(map(str, range(10))), "--method", args.method, "--steps", str(args.steps), "--out", out,
               *args.gig_args]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(res.stderr)
        ours = np.load(out)
    from PIL import Image

    x = torch.tensor(np.stack([np.asarray(Image.open(d), dtype=np.float32)[None] / 255.0 for d in digits]))
    x = x.to(args.device)
    theirs = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=torch.arange(10),
                                                  n_steps=args.steps, method=args.method)
    return rel(ours, theirs.detach().cpu().numpy())


def test_digits(count):
    """The first `count` held-out digits of assets/mnist10k (the last 2,000 of the 10,000)."""
    import gzip

    with gzip.open("assets/mnist10k/images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    return (raw[-2000:][:count].astype(np.float32) / 255.0).copy()


def gig_timing(args, batch, method, steps, inputs=None):
    cmd = [args.gig, "bench", "--model", args.model, "--steps", str(steps), "--batch", str(batch), "--method", method,
           "--repeat", str(args.repeat), "--json", *args.gig_args]
    if inputs is not None:
        # Adaptive placement depends on the images: time it on the ones whose error was measured.
        cmd += ["--input", inputs]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])["wall_s"]["median"]


def captum_timing(model, x, target, steps, method, device, repeat):
    import time

    ig = IntegratedGradients(model)
    b = torch.zeros_like(x)
    ig.attribute(x, baselines=b, target=target, n_steps=steps, method=method)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ig.attribute(x, baselines=b, target=target, n_steps=steps, method=method)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def accuracy(args):
    model, shape = load(args.model)
    model = model.to(args.device).eval()
    digits = test_digits(args.count)
    with tempfile.TemporaryDirectory() as tmp:
        x_path = os.path.join(tmp, "x.npy")
        np.save(x_path, digits)
        x = torch.tensor(digits).to(args.device)
        target = model(x).argmax(1)
        targets = target.cpu().tolist()

        def gig_run(method, steps):
            out = os.path.join(tmp, "a.npy")
            a, _ = gig_attribute(args.gig, args.model, x_path, "zero", targets, method, steps, out)
            return a

        # Exact IG takes minutes (about 10 s per digit and core): --reference keeps it between runs.
        if args.reference and os.path.exists(args.reference):
            exact = np.load(args.reference)
            if exact.shape != digits.shape:
                raise SystemExit(f"{args.reference} holds shape {exact.shape}, not {digits.shape}: "
                                 "another --count or model? delete it to recompute")
        else:
            exact = gig_run("exact", 1)
            if args.reference:
                np.save(args.reference, exact)
        errors = lambda a: np.median([rel(a[i], exact[i]) for i in range(len(a))])  # noqa: E731
        print(f"exact IG of {args.count} held-out digits (gig --method exact, f64)")
        best = {}
        for rule in RULES:
            for steps in args.captum_steps:
                a = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                         n_steps=steps, method=rule)
                a = a.detach().cpu().numpy()
                if rule == "riemann_trapezoid":
                    a = a * steps / (steps - 1)  # Captum's trapezoid weights sum to (n-1)/n
                e = errors(a)
                print(f"captum {rule:18s} {steps:5d} steps: median error {e:.2e}")
                if e <= args.goal:
                    best.setdefault("captum", []).append((steps, rule, e))
                    break
        for budget in args.gig_budgets:
            e = errors(gig_run("adaptive", budget))
            print(f"gig    adaptive           {budget:5d} budget: median error {e:.2e}")
            if e <= args.goal:
                best["gig"] = (budget, e)
                break
    if "captum" not in best or "gig" not in best:
        print(f"no setting reached the goal {args.goal:.1e}; extend --captum-steps / --gig-budgets")
        return 1
    # The fewest steps that reach the goal, and every rule that reaches it there: they cost the same
    # gradient evaluations but not the same time (Captum computes Gauss-Legendre nodes on every call,
    # which at batch 1 and 512 steps takes longer than the evaluations), so all of them are timed.
    steps = min(s for s, _, _ in best["captum"])
    rules = [(r, e) for s, r, e in best["captum"] if s == steps]
    budget, ge = best["gig"]
    reached = ", ".join(f"{r} ({e:.2e})" for r, e in rules)
    print(f"cheapest within {args.goal:.1e}: Captum {steps} steps: {reached}; gig adaptive {budget} ({ge:.2e})")
    x_file = tempfile.NamedTemporaryFile(suffix=".npy", delete=False)
    np.save(x_file, digits)
    x_file.close()
    try:
        time_both(args, model, x, x_file.name, steps, [r for r, _ in rules], budget)
    finally:
        os.unlink(x_file.name)
    return 0


def time_both(args, model, x, x_path, steps, rules, budget):
    """Times gig adaptive at `budget` on the digits in `x_path` and each of Captum's `rules` at `steps`
    on `x`, alternating, for each batch size, and compares gig with the fastest rule."""
    for batch in args.batch:
        # Both repeat the digits to fill the batch and attribute each to its predicted class.
        xb = x[:batch] if batch <= len(x) else x.repeat((batch + len(x) - 1) // len(x), 1, 1, 1)[:batch]
        tb = model(xb).argmax(1)
        ours, theirs = [], {r: [] for r in rules}
        for _ in range(args.rounds):
            ours.append(gig_timing(args, batch, "adaptive", budget, x_path))
            for r in rules:
                theirs[r].append(captum_timing(model, xb, tb, steps, r, args.device, args.repeat))
        g = float(np.median(ours))
        medians = {r: float(np.median(t)) for r, t in theirs.items()}
        rule = min(medians, key=medians.get)
        c = medians[rule]
        others = "".join(f", {r} {t * 1e3:.1f} ms" for r, t in medians.items() if r != rule)
        print(f"batch {batch:4d}: gig adaptive {budget}: {g * 1e3:9.1f} ms, Captum {rule} {steps}: {c * 1e3:9.1f} ms "
              f"(torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads): gig {c / g:.2f}x faster"
              f"{others and ' (Captum' + others[1:] + ')'}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    par = sub.add_parser("parity", help="attributions of gig and Captum agree")
    par.add_argument("--gig", default="target/release/gig")
    par.add_argument("--steps", type=int, default=32)
    par.add_argument("--conv", default="auto", help="gig's --conv: auto, direct or winograd")
    par.add_argument("--gradient-norms", action="store_true",
                     help="gig's --gradient-norms: no folded first-conv input gradient")
    sp = sub.add_parser("speed", help="gradient evaluations/s of gig and Captum, side by side")
    sp.add_argument("--gig", default="target/release/gig")
    sp.add_argument("--model", default="assets/mnist_cnn.safetensors")
    sp.add_argument("--batch", type=int, nargs="+", default=[1, 100])
    sp.add_argument("--steps", type=int, default=50)
    sp.add_argument("--method", default="gausslegendre")
    sp.add_argument("--device", default="cpu")
    sp.add_argument("--rounds", type=int, default=3)
    sp.add_argument("--repeat", type=int, default=5)
    sp.add_argument("--gig-args", nargs=argparse.REMAINDER, default=[])
    ac = sub.add_parser("accuracy", help="time to an attribution within --goal of exact IG, gig vs Captum")
    ac.add_argument("--gig", default="target/release/gig")
    ac.add_argument("--model", default="assets/mnist_cnn.safetensors")
    ac.add_argument("--count", type=int, default=16)
    ac.add_argument("--goal", type=float, default=4e-4)
    ac.add_argument("--captum-steps", type=int, nargs="+", default=[256, 384, 448, 512, 576, 640, 768, 1024, 1536, 2048])
    ac.add_argument("--gig-budgets", type=int, nargs="+", default=[64, 72, 80, 88, 96, 112, 128, 160, 192, 256])
    ac.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ac.add_argument("--device", default="cpu")
    ac.add_argument("--rounds", type=int, default=3)
    ac.add_argument("--repeat", type=int, default=5)
    ac.add_argument("--reference", help="keep gig's exact IG of the digits in this .npy (computed and written "
                    "if it does not exist, else read; it must be for the same --model and --count)")
    ac.add_argument("--gig-args", nargs=argparse.REMAINDER, default=[])
    args = p.parse_args()
    sys.exit({"parity": parity, "speed": speed, "accuracy": accuracy}[args.command](args))


if __name__ == "__main__":
    main()
