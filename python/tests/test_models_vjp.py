"""The continuous-time models and the reverse-mode kernel."""

import numpy as np
import pytest

import memkin
from conftest import inputs
from test_simulate import same


@pytest.mark.parametrize(
    "model, integrator, sets",
    [("diffusive", "rk4", ["eta=2.0"]), ("ddk-ode", "exact", []), ("linear-drift", "heun", [])],
)
def test_models_equal_the_cli_bit_for_bit(tmp_path, cli, model, integrator, sets):
    x = inputs(s=40, t=10, seed=6)
    np.save(tmp_path / "x.npy", x)
    flags = [a for s in sets for a in ("--set", s)]
    cli("simulate", "--input", tmp_path / "x.npy", "--model", model, "--integrator", integrator,
        "--substeps", 3, "--pulse-width", 1.5, "--rest", 0.5, "--backend", "cpu", *flags,
        "--out", tmp_path / "w.npy", "--status", tmp_path / "s.npy")
    params = {k: float(v) for k, v in (s.split("=") for s in sets)}
    w, s = memkin.simulate_model(x, model, integrator, substeps=3, pulse_width=1.5, rest=0.5,
                                 backend="cpu", **params)
    assert same(w, np.load(tmp_path / "w.npy"))
    assert same(s, np.load(tmp_path / "s.npy"))
    # Slices (Ctrl-C points) change nothing.
    e = memkin.Engine(backend="cpu")
    parts = e._native.simulate_model(x, model, integrator, substeps=3, pulse_width=1.5, rest=0.5,
                                     params=params, slice=9)
    assert same(parts[0], w)


def test_model_on_the_gpu_equals_the_cli(tmp_path, cli, gpu_engine):
    x = inputs(s=64, t=10, seed=7)
    np.save(tmp_path / "x.npy", x)
    cli("simulate", "--input", tmp_path / "x.npy", "--model", "diffusive", "--integrator", "rk4",
        "--substeps", 4, "--backend", "gpu", "--out", tmp_path / "w.npy")
    w, _ = gpu_engine.simulate_model(x, "diffusive", "rk4", substeps=4)
    assert same(w, np.load(tmp_path / "w.npy"))


@pytest.mark.parametrize("precision", ["f32", "f64"])
def test_vjp_matches_the_forward_sensitivities(precision):
    # L = sum(g * w): dL/dalpha = sum(g * dw/dalpha), and likewise for beta.
    x = inputs(s=50, t=12, seed=8) * 0.3
    rng = np.random.default_rng(9)
    p = np.array([[0.4, 0.5], [0.7, 0.2]])
    w, s, sens = memkin.simulate(x, params=p, grad=True, backend="cpu", precision=precision)
    assert (s == 0).all()
    g = rng.standard_normal(w.shape).astype(np.float32)
    gx, ga, gb = memkin.vjp(x, g, params=p, w=w, backend="cpu", precision=precision)
    assert gx.shape == w.shape and ga.shape == (2,) and gb.shape == (2,)
    want_a = (g.astype(np.float64) * sens[..., 0]).sum(axis=(1, 2))
    want_b = (g.astype(np.float64) * sens[..., 1]).sum(axis=(1, 2))
    # The sensitivities are stored as f32 (relative rounding ~6e-8 each, summed
    # over 600 terms of both signs): 1e-4 relative is a loose, safe bound.
    np.testing.assert_allclose(ga, want_a, rtol=1e-4)
    np.testing.assert_allclose(gb, want_b, rtol=1e-4)
    # dL/dx by a central difference of one input (f64 forward).
    k = (3, 4)
    h = 0.02
    xp, xm = x.astype(np.float64), x.astype(np.float64)
    xp[k] += h
    xm[k] -= h
    lp = (g.astype(np.float64) * memkin.simulate(xp, params=p, backend="cpu", precision="f64")[0]).sum()
    lm = (g.astype(np.float64) * memkin.simulate(xm, params=p, backend="cpu", precision="f64")[0]).sum()
    # x is rounded to f32 on the way in: divide by the step actually taken.
    step = float(np.float32(xp[k])) - float(np.float32(xm[k]))
    # The states come back as f32 (rounding ~1e-7 over 1,200 terms, divided
    # by the step of 0.04: ~1e-4 absolute) and the difference has an O(h^2)
    # error; 2e-3 relative holds both, and a wrong sign or step index fails it.
    np.testing.assert_allclose(gx[:, k[0], k[1]].sum(), (lp - lm) / step, rtol=2e-3)


def test_vjp_scalar_parameters_and_gpu(gpu_engine):
    x = inputs(s=30, t=8, seed=10) * 0.3
    g = np.ones((30, 8), np.float32)
    gx, ga, gb = memkin.vjp(x, g, 0.5, 0.4, backend="cpu", precision="f64")
    assert isinstance(ga, float) and isinstance(gb, float)
    gx2, ga2, gb2 = gpu_engine.vjp(x, g, 0.5, 0.4)
    # f32 states and adjoints on the GPU against the f64 reference: 1e-4 relative.
    np.testing.assert_allclose(ga2, ga, rtol=1e-4)
    np.testing.assert_allclose(gb2, gb, rtol=1e-4)
    np.testing.assert_allclose(gx2, gx, rtol=1e-4, atol=1e-5)
