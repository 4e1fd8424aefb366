"""memkin: memristor drift-diffusion kinetics at GPU scale, from Python.

NumPy arrays in and out, no files, no subprocess: the engine of the ``memkin``
command-line tool (the DDK map of Shi et al., Nature Communications 16, 913,
2025, the continuous-time device models, the reverse-mode kernel, studies) runs
in this process, on the CPU or a GPU (wgpu: Vulkan, Metal, DX12).

Quick start::

    import numpy as np, memkin
    x = np.random.default_rng(0).random((1000, 28), dtype=np.float32)
    w, status = memkin.simulate(x, 0.5, 0.8)       # w: [1000, 28] float32
    eng = memkin.Engine(backend="gpu")              # a device opened once
    print(eng.info["adapter"])
    w, status, dw = eng.simulate(x, 0.5, 0.8, grad=True)

Conventions:

* ``x`` is a float32 or float64 array ``[S, T]`` (S sequences of T steps,
  normally scaled to [0, 1]). A C-contiguous float32 array is read in place,
  without a copy; any other (float64, Fortran order, a strided view) is copied
  once into a C-contiguous float32 array, as the engine computes in float32
  inputs (the CLI converts float64 ``.npy`` files the same way).
* Results are new arrays whose buffers are Rust vectors handed to NumPy
  (moved, not copied). A call of up to ``SLICE`` trajectories returns the
  engine's own buffers; a longer one runs in slices of ``SLICE`` so that
  Ctrl-C is honoured between them, each slice's results written once into
  the output vector (the engine's scratch is reused, so the output is
  written once either way).
* The reverse mode (``vjp``) runs in one piece (its per-device sums are
  formed in trajectory order); Ctrl-C is seen when it returns. ``run``,
  ``sweep`` and ``mc`` run the CLI's code in process, the GIL released;
  Ctrl-C is seen when they return (``sweep``/``mc`` can be resumed with
  ``resume=True``).
* The GIL is released while the engine runs: other Python threads go on.
* Bad input raises ``ValueError`` with memkin's one-line message (naming the
  argument and its valid range); a failure of the machine (GPU lost, disk
  full) raises ``RuntimeError``. No Rust panic reaches Python.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np


def _quiet_wayland() -> None:
    # Mesa's Vulkan loader prints "XDG_RUNTIME_DIR is invalid or not set"
    # unless the variable holds an absolute path (the CLI does the same).
    v = os.environ.get("XDG_RUNTIME_DIR", "")
    if not os.path.isabs(v):
        d = os.path.join(tempfile.gettempdir(), f"memkin-runtime-{os.getuid()}")
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
        except OSError:
            pass
        os.environ["XDG_RUNTIME_DIR"] = d


_quiet_wayland()

from . import _memkin  # noqa: E402

__version__: str = _memkin.__version__
SLICE: int = _memkin.SLICE
"""Trajectories per slice of a long call (Ctrl-C is checked between slices)."""

__all__ = [
    "Engine",
    "simulate",
    "simulate_model",
    "vjp",
    "run",
    "sweep",
    "mc",
    "adapters",
    "SLICE",
    "__version__",
]

PathLike = Union[str, "os.PathLike[str]"]


def _as_input(x: Any, name: str = "x") -> np.ndarray:
    """A C-contiguous float32 [S, T] array: ``x`` itself when it already is one."""
    a = np.asarray(x)
    if a.dtype.kind != "f":
        raise ValueError(f"{name}: dtype {a.dtype} is not a float type, expected float32 or float64")
    if a.ndim != 2:
        raise ValueError(f"{name}: shape {list(a.shape)}: expected [S, T] (rank 2)")
    if a.dtype == np.float32 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=np.float32)


def _as_f32(a: Any, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind != "f":
        raise ValueError(f"{name}: dtype {a.dtype} is not a float type, expected float32")
    return np.ascontiguousarray(a, dtype=np.float32)


def _as_params(params: Any) -> Optional[np.ndarray]:
    if params is None:
        return None
    a = np.asarray(params)
    if a.dtype.kind not in "fiu":
        raise ValueError(f"params: dtype {a.dtype} is not numeric, expected float32 or float64")
    return np.ascontiguousarray(a, dtype=np.float64)


def _scalar(v: Any, name: str) -> Optional[float]:
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} = {v!r}: a number (finite and > 0)") from None


class Engine:
    """A compute backend opened once and reused across calls.

    ``backend``: ``"cpu"``, ``"gpu"`` (any wgpu adapter, the software
    lavapipe one included) or ``"auto"`` (a hardware GPU when there is one,
    else the CPU). ``adapter``: part of the GPU adapter's name (case
    insensitive), as ``WGPU_ADAPTER_NAME`` for the CLI. ``precision``:
    ``"f32"`` or ``"f64"`` (the CPU reference; the GPU is f32 only).

    The GPU device, its queue and the DDK pipeline are created here, once;
    the reverse-mode and continuous-model pipelines on first use.
    """

    def __init__(self, backend: str = "auto", adapter: Optional[str] = None, precision: str = "f32"):
        self._native = _memkin.Engine(backend, adapter, precision)
        self.backend = backend
        self.precision = precision

    @property
    def info(self) -> dict:
        """What the engine runs on: backend, precision, adapter (its name),
        adapter_type, api, software (True for a software rasteriser)."""
        return dict(self._native.info)

    @property
    def last_seconds(self) -> float:
        """Seconds the engine itself ran in the last call on this engine
        (summed over its slices): a call's wall time less this is the
        binding's overhead."""
        return self._native.last_seconds

    def __repr__(self) -> str:
        return repr(self._native)

    def simulate(
        self,
        x: Any,
        alpha: Optional[float] = None,
        beta: Optional[float] = None,
        *,
        params: Any = None,
        w0: float = 1.0,
        grad: bool = False,
        chunk: Optional[int] = None,
    ):
        """The DDK map ``w[k] = w[k-1] + alpha / w[k-1] - beta x[k-1]``.

        ``x``: [S, T]. Either scalar ``alpha``, ``beta`` (> 0): returns
        ``w`` [S, T] float32 and ``status`` [S] uint8 (0 ok, 1 non-positive,
        2 non-finite); or ``params`` [P, 2] (alpha, beta per set) or
        [P, 2, T] (per step): returns ``w`` [P, S, T], ``status`` [P, S].
        ``w0``: the initial state (> 0). ``grad=True`` adds the forward
        sensitivities [..., T, 2] (d/dalpha, d/dbeta). ``chunk``: most
        trajectories per GPU dispatch. Same results as ``memkin simulate``.
        """
        return self._native.simulate(
            _as_input(x),
            _scalar(alpha, "alpha"),
            _scalar(beta, "beta"),
            params=_as_params(params),
            w0=float(w0),
            grad=bool(grad),
            chunk=chunk,
        )

    def vjp(
        self,
        x: Any,
        g: Any,
        alpha: Optional[float] = None,
        beta: Optional[float] = None,
        *,
        w: Any = None,
        params: Any = None,
        w0: float = 1.0,
        chunk: Optional[int] = None,
    ):
        """The reverse mode of the DDK map: the gradients of a loss L from
        its cotangents ``g = dL/dw`` (shaped like ``w``).

        Returns ``(grad_x, grad_alpha, grad_beta)``: ``grad_x`` dL/dx shaped
        like ``w`` (the last step is 0); with scalar alpha, beta two floats;
        with ``params`` arrays [P] (or [P, T] per step, step 0 is 0). ``w``:
        the states of the forward pass (``simulate``'s first result); computed
        here when not given. A trajectory that went bad gives NaN gradients.
        """
        xs = _as_input(x)
        p = _as_params(params)
        if w is None:
            w = self.simulate(xs, alpha, beta, params=p, w0=w0, chunk=chunk)[0]
        return self._native.vjp(
            xs,
            _as_f32(w, "w"),
            _as_f32(g, "g"),
            _scalar(alpha, "alpha"),
            _scalar(beta, "beta"),
            params=p,
            w0=float(w0),
            chunk=chunk,
        )

    def simulate_model(
        self,
        x: Any,
        model: str = "diffusive",
        integrator: str = "euler",
        *,
        substeps: int = 1,
        rtol: float = 1e-6,
        pulse_width: float = 1.0,
        rest: float = 0.0,
        v_scale: float = 1.0,
        w0: Optional[float] = None,
        chunk: Optional[int] = None,
        **params: float,
    ):
        """A continuous-time device model (``ddk-ode``, ``diffusive``,
        ``linear-drift``; docs/models.md) driven by one voltage pulse per
        input (amplitude ``v_scale * x``, width ``pulse_width``, then
        ``rest`` at 0 V), integrated by ``integrator`` (euler, heun, rk4 with
        ``substeps`` per segment; adaptive with ``rtol``; exact where the model
        has a closed form). ``**params``: the model's parameters by name (the
        rest at their defaults). Returns ``(w, status)`` like ``simulate``;
        the same results as ``memkin simulate --model ...``.
        """
        return self._native.simulate_model(
            _as_input(x),
            model,
            integrator,
            substeps=int(substeps),
            rtol=float(rtol),
            pulse_width=float(pulse_width),
            rest=float(rest),
            v_scale=float(v_scale),
            w0=None if w0 is None else float(w0),
            chunk=chunk,
            params={k: float(v) for k, v in params.items()},
        )


_ENGINES: dict = {}


def _engine(backend: str, precision: str) -> Engine:
    """The module's engine for ``(backend, precision)``, opened on first use."""
    key = (backend, precision)
    e = _ENGINES.get(key)
    if e is None:
        e = _ENGINES[key] = Engine(backend=backend, precision=precision)
    return e


def simulate(
    x: Any,
    alpha: Optional[float] = None,
    beta: Optional[float] = None,
    *,
    params: Any = None,
    w0: float = 1.0,
    backend: str = "auto",
    precision: str = "f32",
    grad: bool = False,
    chunk: Optional[int] = None,
):
    """The DDK map over ``x`` [S, T] on a shared engine for ``backend`` and
    ``precision`` (opened on first use): see :meth:`Engine.simulate`.
    Returns ``(w, status)``, or ``(w, status, grad)`` with ``grad=True``."""
    return _engine(backend, precision).simulate(
        x, alpha, beta, params=params, w0=w0, grad=grad, chunk=chunk
    )


def vjp(
    x: Any,
    g: Any,
    alpha: Optional[float] = None,
    beta: Optional[float] = None,
    *,
    w: Any = None,
    params: Any = None,
    w0: float = 1.0,
    backend: str = "auto",
    precision: str = "f32",
    chunk: Optional[int] = None,
):
    """The reverse-mode kernel: ``(grad_x, grad_alpha, grad_beta)`` from the
    cotangents ``g = dL/dw``; see :meth:`Engine.vjp`."""
    return _engine(backend, precision).vjp(
        x, g, alpha, beta, w=w, params=params, w0=w0, chunk=chunk
    )


def simulate_model(
    x: Any,
    model: str = "diffusive",
    integrator: str = "euler",
    *,
    backend: str = "auto",
    precision: str = "f32",
    **kwargs: Any,
):
    """A continuous-time device model over ``x``; see
    :meth:`Engine.simulate_model` for the keyword arguments."""
    return _engine(backend, precision).simulate_model(x, model, integrator, **kwargs)


def adapters() -> list:
    """The GPU adapters wgpu sees (``memkin devices``), as a list of dicts."""
    return list(_memkin.adapters())


# ---------------------------------------------------------------- studies


def _flags(kwargs: Mapping[str, Any]) -> list:
    """``name=value`` keyword arguments as ``--name value`` flags (``True``: a
    bare flag; ``False``/``None``: left out; a list: comma-separated)."""
    out = []
    for k, v in kwargs.items():
        flag = "--" + k.replace("_", "-")
        if v is None or v is False:
            continue
        if v is True:
            out.append(flag)
        elif isinstance(v, (list, tuple)):
            out += [flag, ",".join(str(i) for i in v)]
        else:
            out += [flag, str(v)]
    return out


def _spec_path(spec: Union[PathLike, Mapping[str, Any]], tmp: str) -> str:
    """A spec file: the path given, or a dict written as JSON (sorted keys, so
    that the same dict is the same spec for ``resume``)."""
    if isinstance(spec, Mapping):
        p = os.path.join(tmp, "spec.json")
        with open(p, "w") as f:
            json.dump(spec, f, sort_keys=True, indent=1)
        return p
    return os.fspath(spec)


def _number(s: str) -> Any:
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def _read_table(path: Path) -> dict:
    """A CSV as a dict of columns (NumPy arrays for numeric ones): ready for
    ``pandas.DataFrame``."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    head, body = rows[0], rows[1:]
    cols: dict = {}
    for j, name in enumerate(head):
        vals = [_number(r[j]) if j < len(r) else "" for r in body]
        cols[name] = _column(vals)
    return cols


def _column(vals: list) -> Any:
    """Numbers as a NumPy array (float64, int64, or uint64 for seeds), else
    the strings as a list."""
    if not all(isinstance(v, (int, float)) for v in vals):
        return vals
    if any(isinstance(v, float) for v in vals):
        return np.array(vals, dtype=np.float64)
    for dtype in (np.int64, np.uint64):
        try:
            return np.array(vals, dtype=dtype)
        except OverflowError:
            pass
    return vals


def _read_json(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.exists() else None


def run(
    dataset: str = "digits",
    *,
    out: Optional[PathLike] = None,
    backend: str = "auto",
    seed: int = 0,
    **options: Any,
) -> dict:
    """The paper end to end (``memkin run``): kinetics features and a trained
    readout on a dataset (a name as the CLI takes: digits, mnist, wmms, sitw,
    modelnet10, or a path). ``**options``: the flags of ``memkin run`` by
    name (``readout="ridge"``, ``alpha=0.5``, ``repeats=2``, ``no_device=True``,
    ``hidden=[128, 128]``, ``data_dir=...``, ...). Writes report.json,
    confusion.csv and feature_maps.png into ``out`` (a temporary directory
    when None) and returns the report as a dict."""
    with tempfile.TemporaryDirectory(prefix="memkin-run-") as tmp:
        d = os.fspath(out) if out is not None else tmp
        args = ["memkin", "run", "--dataset", str(dataset), "--out", d,
                "--backend", backend, "--seed", str(seed)] + _flags(options)
        _memkin.run_cli(args)
        report = _read_json(Path(d) / "report.json")
    return report if report is not None else {}


def sweep(
    spec: Union[PathLike, Mapping[str, Any]],
    out: PathLike,
    *,
    backend: str = "auto",
    shard: Optional[str] = None,
    resume: bool = False,
    data_dir: Optional[PathLike] = None,
) -> dict:
    """A parameter sweep (``memkin sweep SPEC --out OUT``): ``spec`` a TOML or
    JSON file, or a dict (written as JSON); its seed is the spec's ``seed``. Returns ``{"results": columns of
    results.csv, "manifest": manifest.json, "out": out}``; load the table with
    ``pandas.DataFrame(r["results"])``."""
    with tempfile.TemporaryDirectory(prefix="memkin-sweep-") as tmp:
        args = ["memkin", "sweep", _spec_path(spec, tmp), "--out", os.fspath(out),
                "--backend", backend]
        args += _flags({"shard": shard, "resume": resume, "data_dir": data_dir})
        _memkin.run_cli(args)
    o = Path(out)
    return {"results": _read_table(o / "results.csv"), "manifest": _read_json(o / "manifest.json"), "out": str(o)}


def mc(
    spec: Union[PathLike, Mapping[str, Any]],
    out: PathLike,
    *,
    backend: str = "auto",
    shard: Optional[str] = None,
    resume: bool = False,
    data_dir: Optional[PathLike] = None,
    seed: Optional[int] = None,
) -> dict:
    """A device-variability Monte Carlo (``memkin mc SPEC --out OUT``).
    Returns ``{"draws": columns of draws.csv, "summary": summary.json,
    "manifest": manifest.json, "out": out}``."""
    with tempfile.TemporaryDirectory(prefix="memkin-mc-") as tmp:
        args = ["memkin", "mc", _spec_path(spec, tmp), "--out", os.fspath(out), "--backend", backend]
        args += _flags({"shard": shard, "resume": resume, "data_dir": data_dir, "seed": seed})
        _memkin.run_cli(args)
    o = Path(out)
    return {
        "draws": _read_table(o / "draws.csv"),
        "summary": _read_json(o / "summary.json"),
        "manifest": _read_json(o / "manifest.json"),
        "out": str(o),
    }
