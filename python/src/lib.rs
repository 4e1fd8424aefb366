//! `memkin._memkin`: the native half of the Python package `memkin`.
//!
//! - [`engine::PyEngine`] (`memkin.Engine`): a backend opened once (the GPU
//!   device and its pipelines are created at construction and reused), with
//!   the DDK map (`simulate`), its reverse mode (`vjp`) and the continuous
//!   models (`simulate_model`).
//! - [`run_cli`]: `memkin.run`, `memkin.sweep` and `memkin.mc` run the very code
//!   of `memkin run|sweep|mc` (the root crate's `src/cli`, compiled into this
//!   extension), in this process, with the GIL released.
//!
//! Inputs arrive as C-contiguous float32 NumPy arrays (the Python layer converts
//! other layouts once) and are read in place; outputs are Rust vectors handed to
//! NumPy as the arrays' buffers. Library errors become `ValueError` (bad input,
//! [`memkin::Error::is_user_error`]) or `RuntimeError` with the library's one
//! line; a panic becomes a `RuntimeError`, never a `PanicException`.

#![deny(missing_docs)]

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../../src/cli/mod.rs"]
mod cli;
mod engine;
mod fail;

use fail::{Fail, guarded};
use pyo3::prelude::*;

/// Runs one `memkin` command line in process (`args[0]` is the program
/// name), as the CLI does, with the GIL released. Usage errors and bad input
/// raise `ValueError`; other failures `RuntimeError`.
#[pyfunction]
fn run_cli(py: Python<'_>, args: Vec<String>) -> PyResult<()> {
    py.detach(|| guarded(|| cli::run_from(args).map_err(Fail::Any)))
        .map_err(Fail::into_py)
}

/// The extension module.
#[pymodule]
fn _memkin(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<engine::PyEngine>()?;
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    m.add_function(wrap_pyfunction!(engine::adapters, m)?)?;
    m.add("SLICE", engine::SLICE)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
