"""memkin.simulate against `memkin simulate` (bit for bit), inputs, outputs, errors."""

import numpy as np
import pytest

import memkin
from conftest import inputs


def same(a, b):
    """Bit-for-bit equality (NaN where NaN)."""
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("precision", ["f32", "f64"])
def test_scalar_parameters_equal_the_cli_bit_for_bit(tmp_path, cli, precision):
    x = inputs()
    np.save(tmp_path / "x.npy", x)
    cli("simulate", "--input", tmp_path / "x.npy", "--alpha", 0.3, "--beta", 0.9, "--w0", 1.5,
        "--backend", "cpu", "--precision", precision, "--out", tmp_path / "w.npy",
        "--status", tmp_path / "s.npy", "--grad", tmp_path / "g.npy")
    w, s, g = memkin.simulate(x, 0.3, 0.9, w0=1.5, backend="cpu", precision=precision, grad=True)
    assert same(w, np.load(tmp_path / "w.npy"))
    assert same(s, np.load(tmp_path / "s.npy"))
    assert same(g, np.load(tmp_path / "g.npy"))
    assert set(np.unique(s)) >= {0, 1}, "the inputs must make some trajectories diverge"


@pytest.mark.parametrize("per_step", [False, True])
def test_parameter_sets_equal_the_cli_bit_for_bit(tmp_path, cli, per_step):
    x = inputs(s=120, t=16, seed=1)
    rng = np.random.default_rng(2)
    shape = (5, 2, 16) if per_step else (5, 2)
    p = (rng.random(shape) * 0.9 + 0.05).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "p.npy", p)
    cli("simulate", "--input", tmp_path / "x.npy", "--params", tmp_path / "p.npy", "--backend", "cpu",
        "--out", tmp_path / "w.npy", "--status", tmp_path / "s.npy")
    w, s = memkin.simulate(x, params=p, backend="cpu")
    assert w.shape == (5, 120, 16) and s.shape == (5, 120)
    assert same(w, np.load(tmp_path / "w.npy"))
    assert same(s, np.load(tmp_path / "s.npy"))


def test_float64_and_strided_inputs_are_converted_like_the_cli(tmp_path, cli):
    x64 = inputs(s=50, t=12, seed=3).astype(np.float64) + 1e-9
    np.save(tmp_path / "x.npy", x64)  # the CLI reads float64 files as float32
    cli("simulate", "--input", tmp_path / "x.npy", "--alpha", 0.5, "--beta", 0.5, "--backend", "cpu",
        "--out", tmp_path / "w.npy")
    want = np.load(tmp_path / "w.npy")
    assert same(memkin.simulate(x64, 0.5, 0.5, backend="cpu")[0], want)
    fortran = np.asfortranarray(x64.astype(np.float32))
    assert same(memkin.simulate(fortran, 0.5, 0.5, backend="cpu")[0], want)
    wide = np.zeros((50, 24), np.float32)
    wide[:, ::2] = x64
    assert same(memkin.simulate(wide[:, ::2], 0.5, 0.5, backend="cpu")[0], want)


@pytest.mark.parametrize("precision", ["f32", "f64"])
def test_slices_give_the_unsliced_result(precision):
    # Ctrl-C is checked between slices; slicing must not change a bit.
    x = inputs(s=101, t=20, seed=4)
    p = np.array([[0.2, 0.3], [0.6, 1.2], [0.05, 0.1]])
    e = memkin.Engine(backend="cpu", precision=precision)
    whole = e._native.simulate(x, params=p, grad=True)
    for slice_ in (1, 7, 64, 300):
        parts = e._native.simulate(x, params=p, grad=True, slice=slice_)
        for a, b in zip(whole, parts):
            assert same(a, b), slice_


def test_outputs_are_rust_buffers_and_the_input_is_not_copied():
    x = inputs(s=64, t=8)
    w, s = memkin.simulate(x, 0.5, 0.5, backend="cpu")
    # The arrays' memory belongs to the Rust vectors handed over (no copy).
    assert type(w.base).__name__ == "PySliceContainer"
    assert type(s.base).__name__ == "PySliceContainer"
    assert w.flags.c_contiguous and w.flags.writeable
    # A C-contiguous float32 input goes to the native call as it is.
    assert memkin._as_input(x) is x
    assert memkin._as_input(x.astype(np.float64)) is not x


def test_engine_reuse_and_info():
    e = memkin.Engine(backend="cpu")
    assert e.info["backend"] == "cpu" and e.info["adapter"]
    x = inputs(s=10, t=5)
    a = e.simulate(x, 0.4, 0.6)[0]
    b = e.simulate(x, 0.4, 0.6)[0]
    assert same(a, b)


def test_gpu_equals_the_cli_on_the_gpu(tmp_path, cli, gpu_engine):
    assert gpu_engine.info["backend"] == "gpu" and gpu_engine.info["adapter"]
    x = inputs(s=500, t=28, seed=5)
    np.save(tmp_path / "x.npy", x)
    cli("simulate", "--input", tmp_path / "x.npy", "--alpha", 0.3, "--beta", 0.7, "--backend", "gpu",
        "--out", tmp_path / "w.npy", "--status", tmp_path / "s.npy", "--grad", tmp_path / "g.npy",
        "--chunk", 100)
    w, s, g = gpu_engine.simulate(x, 0.3, 0.7, grad=True, chunk=100)
    assert same(w, np.load(tmp_path / "w.npy"))
    assert same(s, np.load(tmp_path / "s.npy"))
    assert same(g, np.load(tmp_path / "g.npy"))
    # And agrees with the CPU's f32 path to f32 rounding (the kernels are twins:
    # same operations in the same order; division and fma may round differently,
    # so 1e-5 relative over 28 steps of a contracting map).
    wc = memkin.simulate(x, 0.3, 0.7, backend="cpu")[0]
    ok = np.isfinite(wc)
    np.testing.assert_allclose(w[ok], wc[ok], rtol=1e-5, atol=1e-6)
    # Slices on the GPU too.
    parts = gpu_engine._native.simulate(x, 0.3, 0.7, slice=128)
    assert same(parts[0], w)
