"""Bad input raises ValueError with memkin's one-line message (the CLI's, with
the Python argument named instead of the file or flag)."""

import numpy as np
import pytest

import memkin
from conftest import inputs


def cli_message(cli, *args):
    code, _, err = cli(*args, check=False)
    assert code == 2, err
    line = err.strip()
    assert "\n" not in line
    return line


def test_non_finite_input_same_message_as_the_cli(tmp_path, cli):
    x = inputs(s=4, t=6)
    x[2, 3] = np.nan
    np.save(tmp_path / "x.npy", x)
    line = cli_message(cli, "simulate", "--input", tmp_path / "x.npy", "--alpha", 1, "--beta", 1,
                       "--backend", "cpu", "--out", tmp_path / "w.npy")
    with pytest.raises(ValueError) as e:
        memkin.simulate(x, 1.0, 1.0, backend="cpu")
    msg = str(e.value)
    assert msg == "x: element [2, 3] is NaN: expected finite values (normally in [0, 1])"
    # The CLI names the file where Python names the argument.
    assert line.endswith(msg.removeprefix("x"))
    assert not (tmp_path / "w.npy").exists()


def test_bad_parameters_name_the_argument_and_its_range(tmp_path, cli):
    x = inputs(s=4, t=6)
    np.save(tmp_path / "x.npy", x)
    line = cli_message(cli, "simulate", "--input", tmp_path / "x.npy", "--alpha", -1, "--beta", 1,
                       "--backend", "cpu", "--out", tmp_path / "w.npy")
    with pytest.raises(ValueError, match=r"^alpha = -1: finite and > 0$"):
        memkin.simulate(x, -1.0, 1.0, backend="cpu")
    assert line.endswith("--alpha = -1: finite and > 0")
    p = np.array([[0.5, 0.5], [0.5, -2.0]], np.float32)
    np.save(tmp_path / "p.npy", p)
    line = cli_message(cli, "simulate", "--input", tmp_path / "x.npy", "--params", tmp_path / "p.npy",
                       "--backend", "cpu", "--out", tmp_path / "w.npy")
    with pytest.raises(ValueError) as e:
        memkin.simulate(x, params=p, backend="cpu")
    assert str(e.value) == "params: beta[set 1] = -2: finite and > 0"
    assert line.endswith(str(e.value).removeprefix("params"))


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda x: memkin.simulate(x[0], 1, 1, backend="cpu"), r"^x: shape \[6\]: expected \[S, T\] \(rank 2\)$"),
        (lambda x: memkin.simulate(x.astype(np.int32), 1, 1, backend="cpu"), r"^x: dtype int32 is not a float type"),
        (lambda x: memkin.simulate(x[:0], 1, 1, backend="cpu"), r"^x: shape \[0, 6\]: expected S >= 1 and T >= 1$"),
        (lambda x: memkin.simulate(x, 1, 1, w0=0.0, backend="cpu"), r"^w0 = 0: finite and > 0$"),
        (lambda x: memkin.simulate(x, 1, 1, chunk=0, backend="cpu"), r"^chunk = 0: at least 1$"),
        (lambda x: memkin.simulate(x, backend="cpu"), r"^parameters = none: give alpha and beta"),
        (lambda x: memkin.simulate(x, 1, 1, params=[[1, 1]], backend="cpu"), r"^alpha/beta = given with params"),
        (lambda x: memkin.simulate(x, params=np.ones((2, 3)), backend="cpu"), r"^params: shape \[2, 3\]: expected \[P, 2\] or \[P, 2, T\]"),
        (lambda x: memkin.simulate(x, params=np.ones((2, 2, 5)), backend="cpu"), r"^params: shape \[2, 2, 5\]: per-step T = 5 but the input has T = 6$"),
        (lambda x: memkin.simulate(x, 1, 1, backend="tpu"), r'^backend = "tpu": one of cpu, gpu, auto$'),
        (lambda x: memkin.simulate(x, 1, 1, backend="gpu", precision="f64"), r"^precision = f64: f32 with backend=\"gpu\""),
        (lambda x: memkin.Engine(backend="cpu", adapter="x"), r"^adapter = given with backend=\"cpu\""),
        (lambda x: memkin.simulate_model(x, "diffusive", "rk4", substeps=0, backend="cpu"), r"^substeps = 0: at least 1$"),
        (lambda x: memkin.simulate_model(x, "diffusive", bogus=1.0, backend="cpu"), r"^bogus = 1: not a parameter of diffusive: one of "),
        (lambda x: memkin.simulate_model(x, "memristor", backend="cpu"), r"^model = memristor: one of ddk-ode, diffusive, linear-drift$"),
        (lambda x: memkin.simulate_model(x, "diffusive", "exact", backend="cpu"), r"^integrator = exact"),
        (lambda x: memkin.vjp(x, np.ones((3, 6)), 1, 1, backend="cpu"), r"^g: shape \[3, 6\]: expected \[4, 6\]"),
        (lambda x: memkin.sweep({"dataset": "digits", "grid": {"alpha": {"values": [0.5]}}, "colour": 1}, "/nonexistent/out"), r"colour"),
        (lambda x: memkin.run("digits", readout="bogus"), r"invalid value 'bogus' for '--readout"),
    ],
)
def test_bad_input_raises_value_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(inputs(s=4, t=6))


def test_errors_are_one_line_and_no_panic_crosses():
    x = inputs(s=4, t=6)
    for call in (lambda: memkin.simulate(x, np.nan, 1, backend="cpu"),
                 lambda: memkin.simulate(x, params=np.full((1, 2), np.inf), backend="cpu")):
        with pytest.raises(ValueError) as e:
            call()
        assert "\n" not in str(e.value)


def test_non_finite_input_in_a_later_slice_names_its_row_in_the_whole_input():
    x = inputs(s=9, t=6)
    x[7, 1] = np.inf
    e = memkin.Engine(backend="cpu")
    for call in (lambda: e._native.simulate(x, 0.5, 0.5, slice=2),
                 lambda: e._native.simulate_model(x, "diffusive", slice=2)):
        with pytest.raises(ValueError, match=r"^x: element \[7, 1\] is inf: expected finite values"):
            call()
