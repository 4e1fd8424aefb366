//! The one error type of the library.
//!
//! Every variant renders as one line that names what was wrong (the file, the
//! field) and, where there is one, the valid range. The binary maps
//! [`Error::is_user_error`] to exit code 2.

use std::path::PathBuf;

/// Everything that can go wrong in memkin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value given by the user is outside its valid range.
    #[error("{field} = {value}: {expected}")]
    InvalidParameter {
        /// Which parameter (with its file or index where known).
        field: String,
        /// The offending value, rendered.
        value: String,
        /// What would be valid.
        expected: String,
    },
    /// An input file is malformed (wrong magic, shape, dtype, NaN...).
    #[error("{}: {message}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, and what was expected.
        message: String,
    },
    /// A file or dataset could not be found.
    #[error("{}: not found{hint}", path.display())]
    NotFound {
        /// Where it was looked for.
        path: PathBuf,
        /// How to get it (starts with "; " when non-empty).
        hint: String,
    },
    /// A study spec (TOML/JSON) is invalid.
    #[error("{}: {message}", path.display())]
    Spec {
        /// The spec file.
        path: PathBuf,
        /// The problem, naming the key and line.
        message: String,
    },
    /// No usable GPU adapter, or the GPU failed.
    #[error("gpu: {0}")]
    Gpu(String),
    /// I/O failure (disk full, permissions).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else that is the program's fault, not the user's.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// True for errors caused by bad input (exit code 2), false for failures of
    /// the machine or the program (exit code 1).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::InvalidParameter { .. }
                | Error::BadFile { .. }
                | Error::NotFound { .. }
                | Error::Spec { .. }
        )
    }

    /// Shorthand for [`Error::InvalidParameter`].
    pub fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Error::InvalidParameter {
            field: field.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// Shorthand for [`Error::BadFile`].
    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
