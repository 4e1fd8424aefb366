"""The cost of a Python call against the engine's own time.

    python examples/python/overhead.py [--backend cpu|gpu] [--repeats 7]

For S = 1e3 and 1e6 trajectories of T = 28 steps (alpha 0.5, beta 0.8): the
median wall time of ``Engine.simulate`` (argument checks, the input scan,
slicing, the engine, handing the outputs to NumPy) and the median time the
engine itself ran during the call (``Engine.last_seconds``, measured in Rust
around each engine run). The difference is the binding's overhead.
"""

import argparse
import statistics
import time

import numpy as np

import memkin

ap = argparse.ArgumentParser()
ap.add_argument("--backend", default="cpu")
ap.add_argument("--repeats", type=int, default=7)
a = ap.parse_args()

eng = memkin.Engine(backend=a.backend)
print(f"engine: {eng.info['backend']} on {eng.info['adapter']}")
for s in (1_000, 1_000_000):
    x = np.random.default_rng(0).random((s, 28), dtype=np.float32)
    eng.simulate(x, 0.5, 0.8)  # warm-up (threads, GPU buffers)
    walls, engine = [], []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        eng.simulate(x, 0.5, 0.8)
        walls.append(time.perf_counter() - t0)
        engine.append(eng.last_seconds)
    w, e = statistics.median(walls), statistics.median(engine)
    print(f"S = {s:>9,} x 28: python call {w * 1e3:9.3f} ms, engine {e * 1e3:9.3f} ms, "
          f"overhead {(w - e) * 1e3:8.3f} ms ({(w - e) / w:6.1%} of the call)")
