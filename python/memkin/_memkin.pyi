"""Type stubs of the native module memkin._memkin (Rust, PyO3 + rust-numpy)."""

from typing import Optional

import numpy as np
import numpy.typing as npt

__version__: str
SLICE: int

class Engine:
    """A compute backend opened once (see memkin.Engine)."""

    def __init__(
        self, backend: str = "auto", adapter: Optional[str] = None, precision: str = "f32"
    ) -> None: ...
    @property
    def info(self) -> dict[str, object]: ...
    @property
    def last_seconds(self) -> float: ...
    def simulate(
        self,
        x: npt.NDArray[np.float32],
        alpha: Optional[float] = None,
        beta: Optional[float] = None,
        *,
        params: Optional[npt.NDArray[np.float64]] = None,
        w0: float = 1.0,
        grad: bool = False,
        chunk: Optional[int] = None,
        slice: int = ...,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]] | tuple[
        npt.NDArray[np.float32], npt.NDArray[np.uint8], npt.NDArray[np.float32]
    ]: ...
    def vjp(
        self,
        x: npt.NDArray[np.float32],
        w: npt.NDArray[np.float32],
        g: npt.NDArray[np.float32],
        alpha: Optional[float] = None,
        beta: Optional[float] = None,
        *,
        params: Optional[npt.NDArray[np.float64]] = None,
        w0: float = 1.0,
        chunk: Optional[int] = None,
    ) -> tuple[npt.NDArray[np.float32], float | npt.NDArray[np.float64], float | npt.NDArray[np.float64]]: ...
    def simulate_model(
        self,
        x: npt.NDArray[np.float32],
        model: str,
        integrator: str = "euler",
        *,
        substeps: int = 1,
        rtol: float = 1e-6,
        pulse_width: float = 1.0,
        rest: float = 0.0,
        v_scale: float = 1.0,
        w0: Optional[float] = None,
        chunk: Optional[int] = None,
        params: Optional[dict[str, float]] = None,
        slice: int = ...,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]: ...

def run_cli(args: list[str]) -> None: ...
def adapters() -> list[dict[str, object]]: ...
