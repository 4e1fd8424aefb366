"""An (alpha, beta) sweep of the DDK layer on the embedded digits, from Python.

    pip install ./python            # once, from the repository root
    python examples/python/sweep.py [OUT_DIR]

Runs a 6 x 6 grid (ridge readout; about a second on a CPU), prints the point
selected by validation accuracy, and, when matplotlib is installed, plots the
validation accuracy over the grid with the stability boundary beta = 2 sqrt(alpha)
into OUT_DIR/sweep.png. The results load straight into pandas:
``pandas.DataFrame(result["results"])``.
"""

import sys
from pathlib import Path

import numpy as np

import memkin

out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/python-sweep")
spec = {
    "dataset": "digits",
    "readout": "ridge",
    "seed": 7,
    "grid": {
        "alpha": {"linspace": [0.05, 1.0, 6]},
        "beta": {"logspace": [0.05, 2.0, 6]},
    },
}
result = memkin.sweep(spec, out, backend="auto")
cols = result["results"]
sel = result["manifest"]["selected"]
i = sel["index"]
print(
    f"{len(cols['alpha'])} points; selected alpha {cols['alpha'][i]:.3f}, beta {cols['beta'][i]:.3f}: "
    f"validation {sel['val_accuracy']:.3f}, test {sel['test_accuracy']:.3f}"
)

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed: no plot (pip install matplotlib)")
    sys.exit(0)

alphas, betas = np.unique(cols["alpha"]), np.unique(cols["beta"])
grid = np.full((len(betas), len(alphas)), np.nan)
for a, b, v in zip(cols["alpha"], cols["beta"], cols["val_accuracy"]):
    grid[np.searchsorted(betas, b), np.searchsorted(alphas, a)] = v
fig, ax = plt.subplots(figsize=(5, 4))
m = ax.pcolormesh(alphas, betas, grid, shading="nearest", cmap="viridis")
fig.colorbar(m, ax=ax, label="validation accuracy")
a = np.linspace(alphas[0], alphas[-1], 100)
ax.plot(a, 2 * np.sqrt(a), "w--", label="beta = 2 sqrt(alpha)")
ax.plot(cols["alpha"][i], cols["beta"][i], "ro", mfc="none", ms=12, label="selected")
ax.set(xlabel="alpha", ylabel="beta", yscale="log", ylim=(betas[0], betas[-1]), title="DDK on digits (ridge)")
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
fig.savefig(out / "sweep.png", dpi=120)
print(f"plot: {out / 'sweep.png'}")
