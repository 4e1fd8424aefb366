//! Failures of a native call, built without the GIL and turned into Python
//! exceptions once it is held again.

use pyo3::PyErr;
use pyo3::exceptions::{PyRuntimeError, PyValueError};

/// Why a native call failed.
#[derive(Debug)]
pub enum Fail {
    /// A library error (its one line; `ValueError` when it is the user's).
    Mk(memkin::Error),
    /// An error of the command-line layer (its chain of causes, each once).
    Any(anyhow::Error),
    /// A Python error already raised (Ctrl-C seen between slices).
    Py(PyErr),
    /// A panic inside the library, caught before it reached Python.
    Panic(String),
}

impl From<memkin::Error> for Fail {
    fn from(e: memkin::Error) -> Self {
        Fail::Mk(e)
    }
}

impl Fail {
    /// The Python exception.
    pub fn into_py(self) -> PyErr {
        match self {
            Fail::Mk(e) => {
                let line = e.to_string().replace('\n', " ");
                if e.is_user_error() {
                    PyValueError::new_err(line)
                } else {
                    PyRuntimeError::new_err(line)
                }
            }
            Fail::Any(e) => {
                let line = crate::cli::one_line(&e);
                let user = e.chain().any(|c| {
                    c.is::<crate::cli::UsageError>()
                        || c.downcast_ref::<memkin::Error>()
                            .is_some_and(|m| m.is_user_error())
                });
                if user {
                    PyValueError::new_err(line)
                } else {
                    PyRuntimeError::new_err(line)
                }
            }
            Fail::Py(e) => e,
            Fail::Panic(m) => {
                PyRuntimeError::new_err(format!("memkin: internal error (a panic, caught): {m}"))
            }
        }
    }

    /// A bad-input failure with a message of the binding's own.
    pub fn value(field: &str, value: impl std::fmt::Display, expected: &str) -> Self {
        Fail::Mk(memkin::Error::invalid(field, value, expected))
    }
}

impl From<PyErr> for Fail {
    fn from(e: PyErr) -> Self {
        Fail::Py(e)
    }
}

/// Runs `f`, turning a panic into [`Fail::Panic`] so that none unwinds into
/// Python.
pub fn guarded<T>(f: impl FnOnce() -> Result<T, Fail>) -> Result<T, Fail> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown payload".into());
            Err(Fail::Panic(msg))
        }
    }
}
