#!/usr/bin/env python3
"""memkin's CPU engine against the DDK map written the way the paper's code writes it.

The paper's code (Shi et al., Nat. Commun. 16, 913, 2025) integrates all sequences
at once with one vectorised update per step and stacks the states:

    w = ones(n); states = [w]
    for k in 1 .. T-1:
        w = w + alpha / w - beta * x[:, k-1]
        states.append(w)
    features = stack(states, axis=1)          # [n, T]

This script times that formulation in NumPy (and in PyTorch on the CPU when
`import torch` works), in float32, on the workload sizes and step count given,
then runs `memkin bench --json` on the same sizes and prints one table with the
steps/s of each and the ratios memkin / numpy, all from this one run.

A step is one state w[k] produced (n * T per run), as in `memkin bench`.
Timing: one warm-up run, then the median of repeated runs (at least --runs runs
and --min-seconds seconds), inputs generated outside the timed region.

Usage:
    python3 benches/peers/ddk_peers.py --sizes 1e6 --steps 28 [--memkin PATH]
        [--backend cpu|gpu|all] [--json OUT.json]

Optional tooling: never part of the tests.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

ALPHA, BETA = 0.7, 1.0  # memkin bench's workload: the paper's learned MNIST values


def ddk_numpy(x, alpha, beta):
    n, t = x.shape
    w = np.ones(n, dtype=np.float32)
    states = [w]
    for k in range(1, t):
        w = w + alpha / w - beta * x[:, k - 1]
        states.append(w)
    return np.stack(states, axis=1)


def ddk_torch(torch, x, alpha, beta):
    n, t = x.shape
    w = torch.ones(n, dtype=torch.float32)
    states = [w]
    for k in range(1, t):
        w = w + alpha / w - beta * x[:, k - 1]
        states.append(w)
    return torch.stack(states, dim=1)


def time_it(fn, runs, min_seconds):
    fn()  # warm-up: allocation, page faults
    times = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 50:
            break
    return statistics.median(times), len(times)


def find_memkin(explicit):
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    candidates = []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(os.path.join(os.environ["CARGO_TARGET_DIR"], "release", "memkin"))
    candidates.append(os.path.join(root, "target", "release", "memkin"))
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    on_path = shutil.which("memkin")
    if on_path:
        return on_path
    sys.exit("ddk_peers.py: memkin binary not found: pass --memkin PATH, put it on PATH, "
             "or build it with `cargo build --release`")


def parse_size(s):
    v = float(s)
    if v < 1 or v != int(v):
        raise argparse.ArgumentTypeError(f"--sizes: {s} is not a whole number >= 1")
    return int(v)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1e6", help="trajectories, comma-separated (e.g. 1e5,1e6)")
    ap.add_argument("--steps", type=int, default=28, help="steps per trajectory T")
    ap.add_argument("--memkin", help="path to the memkin binary")
    ap.add_argument("--backend", default="cpu", choices=["cpu", "gpu", "all"],
                    help="memkin backends to run (gpu: any wgpu adapter, lavapipe included)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--json", help="also write every figure to this JSON file")
    a = ap.parse_args()
    sizes = [parse_size(s) for s in a.sizes.split(",")]
    if a.steps < 1:
        sys.exit("ddk_peers.py: --steps must be >= 1")

    try:
        import torch  # noqa: F401
        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        torch = None

    rows = []  # (name, n, steps/s)
    rng = np.random.default_rng(0x5EED)
    for n in sizes:
        x = rng.random((n, a.steps), dtype=np.float32)
        sec, runs = time_it(lambda: ddk_numpy(x, np.float32(ALPHA), np.float32(BETA)),
                            a.runs, a.min_seconds)
        rows.append({"impl": "numpy", "trajectories": n, "seconds": sec, "runs": runs,
                     "steps_per_second": n * a.steps / sec})
        print(f"numpy    {n:>10} x {a.steps}  {n * a.steps / sec:.3e} steps/s", file=sys.stderr)
        if torch is not None:
            xt = torch.from_numpy(x)
            sec, runs = time_it(lambda: ddk_torch(torch, xt, ALPHA, BETA), a.runs, a.min_seconds)
            rows.append({"impl": "torch-cpu", "trajectories": n, "seconds": sec, "runs": runs,
                         "steps_per_second": n * a.steps / sec})
            print(f"torch    {n:>10} x {a.steps}  {n * a.steps / sec:.3e} steps/s", file=sys.stderr)
        del x

    exe = find_memkin(a.memkin)
    cmd = [exe, "bench", "--json", "--backend", a.backend, "--sizes", ",".join(map(str, sizes)),
           "--steps", str(a.steps), "--runs", str(a.runs), "--min-seconds", str(a.min_seconds)]
    print("running: " + " ".join(cmd), file=sys.stderr)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    mk = json.loads(out)
    for r in mk["results"]:
        rows.append({"impl": f"memkin-{r['backend']}-{r['precision']}",
                     "trajectories": r["trajectories"], "seconds": r["seconds"],
                     "runs": r["runs"], "steps_per_second": r["steps_per_second"]})

    impls = list(dict.fromkeys(r["impl"] for r in rows))
    at = {(r["impl"], r["trajectories"]): r["steps_per_second"] for r in rows}
    print(f"\nDDK map, T = {a.steps}, float32; steps/s (one step = one state w[k])")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; numpy {np.__version__}"
          + (f", torch {torch.__version__}" if torch is not None else ", torch not installed"))
    if mk.get("adapter"):
        print(f"GPU adapter: {mk['adapter'].get('name')} ({mk['adapter'].get('type')})")
    header = f"| {'implementation':<24} | " + " | ".join(f"{n:>10}" for n in sizes) + " |"
    print(header)
    print("|" + "-" * 26 + "|" + "|".join("-" * 12 for _ in sizes) + "|")
    for name in impls:
        cells = [f"{at[(name, n)]:>10.3e}" if (name, n) in at else f"{'-':>10}" for n in sizes]
        print(f"| {name:<24} | " + " | ".join(cells) + " |")
    ratios = []
    for name in [i for i in impls if i.startswith("memkin-")]:
        cells = []
        for n in sizes:
            if (name, n) in at and ("numpy", n) in at:
                r = at[(name, n)] / at[("numpy", n)]
                ratios.append({"impl": name, "trajectories": n, "over_numpy": r})
                cells.append(f"{r:>9.1f}x")
            else:
                cells.append(f"{'-':>10}")
        print(f"| {name + ' / numpy':<24} | " + " | ".join(cells) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"steps": a.steps, "cpu": cpu_model(), "logical_cpus": os.cpu_count(),
                       "numpy": np.__version__, "memkin_command": cmd, "memkin": mk,
                       "rows": rows, "ratios": ratios}, f, indent=2)


if __name__ == "__main__":
    main()
