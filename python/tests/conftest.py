"""Shared fixtures: the built `memkin` binary (for parity with the CLI) and
the GPU requirement (MEMKIN_REQUIRE_GPU=1: a missing adapter fails, never skips)."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import memkin

ROOT = Path(__file__).resolve().parents[2]


def _binary() -> Path:
    b = os.environ.get("MEMKIN_BIN")
    if b:
        return Path(b)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "release" / "memkin"


@pytest.fixture(scope="session")
def cli():
    """Runs the built `memkin` binary; returns (returncode, stdout, stderr)."""
    b = _binary()
    if not b.exists():
        pytest.fail(f"{b}: not built (cargo build --release first, or set MEMKIN_BIN)")

    def run(*args, check=True):
        p = subprocess.run([str(b), *map(str, args)], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"memkin {' '.join(map(str, args))}: exit {p.returncode}: {p.stderr}")
        return p.returncode, p.stdout, p.stderr

    return run


@pytest.fixture(scope="session")
def gpu_engine():
    """memkin.Engine(backend="gpu"): fails when MEMKIN_REQUIRE_GPU=1 and there
    is no adapter, skips otherwise."""
    try:
        return memkin.Engine(backend="gpu")
    except RuntimeError as e:
        if os.environ.get("MEMKIN_REQUIRE_GPU") == "1":
            pytest.fail(f"MEMKIN_REQUIRE_GPU=1 but no GPU engine: {e}")
        pytest.skip(f"no GPU adapter: {e}")


def inputs(s=300, t=28, seed=0):
    """Inputs in [0, 1] with a few large values, so that some trajectories
    diverge (status 1) at large beta."""
    rng = np.random.default_rng(seed)
    x = rng.random((s, t), dtype=np.float32)
    x[::17, min(5, t - 1)] = 3.0
    return x
