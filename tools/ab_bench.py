"""Side-by-side `gig bench` of several binaries (or settings) on a noisy machine.

    python3 tools/ab_bench.py [--rounds 10] BIN[:VAR=VALUE,...][@ARGS] BIN2... -- BENCH ARGS

Runs `BIN bench --json BENCH ARGS` for every binary in turn, round after round (the order reversed
every other round, so neither side always runs first), and prints per key the median and the minimum
over rounds: the wall time per attribution (or training step), the GPU time, the rate, and each
kernel's GPU time. For two binaries it also prints, per key, the second's value over the first's in
each round (median, range, and in how many rounds the second was faster): on a 2-core machine whose
speed drifts by 2x from hour to hour, only a ratio that stays on one side of 1 in most rounds says
anything. `:VAR=VALUE` runs that binary with environment variables set
(e.g. `target/release/gig:LP_NUM_THREADS=4`), and `@ARGS` adds bench arguments for that one (e.g.
`target/release/gig@--conv winograd`). Not part of the test suite.

Example: `python3 tools/ab_bench.py --rounds 10 old/gig target/release/gig -- --model
assets/mnist_cnn.safetensors --steps 50 --batch 1 --repeat 20`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys


def bench(spec, args):
    spec, _, extra = spec.partition("@")
    args = [*args, *extra.split()]
    path, *settings = spec.split(":")
    env = dict(os.environ)
    env.setdefault("XDG_RUNTIME_DIR", "/tmp")
    for setting in settings:
        for pair in setting.split(","):
            key, value = pair.split("=", 1)
            env[key] = value
    res = subprocess.run([path, "bench", "--json", *args], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        sys.exit(f"{spec}: {res.stderr.strip()}")
    j = json.loads(res.stdout.strip().splitlines()[-1])
    wall = j.get("wall_s", j.get("step_s"))
    values = {
        "wall ms": (wall["median"] if isinstance(wall, dict) else wall) * 1e3,
        "gpu ms": j.get("gpu_seconds_per_attribution", j.get("gpu_seconds_per_step", 0.0)) * 1e3,
        "rate": j.get("gradient_evaluations_per_s", j.get("images_per_s", 0.0)),
    }
    for k in j.get("kernels", []):
        values[k["label"]] = k["seconds"] * 1e3
    return values


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit(__doc__)
    split = argv.index("--")
    par = argparse.ArgumentParser(description="alternating gig bench runs")
    par.add_argument("--rounds", type=int, default=10)
    par.add_argument("bins", nargs="+", help="BIN[:VAR=VALUE,...]")
    opts = par.parse_args(argv[:split])
    args = argv[split + 1:]
    n = len(opts.bins)
    runs = [[] for _ in opts.bins]
    for r in range(opts.rounds):
        order = range(n) if r % 2 == 0 else reversed(range(n))
        now = {i: bench(opts.bins[i], args) for i in order}
        for i in range(n):
            runs[i].append(now[i])
        walls = " ".join(f"{now[i]['wall ms']:.2f}" for i in range(n))
        ratio = f"  second/first {now[1]['wall ms'] / now[0]['wall ms']:.3f}" if n == 2 else ""
        print(f"round {r + 1}: wall ms {walls}{ratio}", flush=True)
    keys = list(dict.fromkeys(k for run in runs for values in run for k in values))
    width = max(len(k) for k in keys)
    names = [os.path.basename(b)[-24:] for b in opts.bins]
    print(f"{'median / min':{width}}" + "".join(f"  {n:>24}" for n in names))
    for k in keys:
        cells = []
        for i in range(n):
            v = [values[k] for values in runs[i] if k in values]
            cells.append(f"{statistics.median(v):11.3f} /{min(v):11.3f}" if v else f"{'-':>24}")
        print(f"{k:{width}}" + "".join(f"  {c:>24}" for c in cells))
    if n == 2:
        # Per key, the median over rounds of second / first: each round's pair shares the machine's
        # state of the moment, so these spread less than the medians above.
        print(f"{'second / first, per round':{width}}  {'median':>8}  {'range':>13}  faster")
        for k in keys:
            ratios = [b[k] / a[k] for a, b in zip(*runs) if a.get(k) and k in b]
            if ratios:
                faster = sum(x < 1.0 for x in ratios) if k != "rate" else sum(x > 1.0 for x in ratios)
                print(f"{k:{width}}  {statistics.median(ratios):8.3f}  {min(ratios):6.3f}-{max(ratios):6.3f}"
                      f"  {faster}/{len(ratios)}")


if __name__ == "__main__":
    main()
