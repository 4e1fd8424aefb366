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
    /// A path given by the user cannot be used as given: a directory where a
    /// file is expected, a device, an input named as an output, a directory
    /// that cannot be written.
    #[error("{}: {message}", path.display())]
    Path {
        /// The path as the user gave it.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A request needs more memory than is available or allowed.
    #[error("{what} needs {}, more than the {} {limit_source}", human_bytes(*.needed), human_bytes(*.limit))]
    TooLarge {
        /// What was asked for (naming the flags or the spec fields).
        what: String,
        /// Bytes needed.
        needed: u128,
        /// Bytes allowed.
        limit: u128,
        /// Where the limit comes from (`available (MemAvailable in /proc/meminfo)`...).
        limit_source: String,
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
                | Error::Path { .. }
                | Error::TooLarge { .. }
        ) || matches!(self, Error::Io { source, .. } if io_is_user_error(source))
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

/// I/O failures caused by the path the user gave (missing, not permitted, a
/// directory where a file is expected...), as opposed to the machine's (disk
/// full, hardware).
fn io_is_user_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::NotFound
            | K::PermissionDenied
            | K::IsADirectory
            | K::NotADirectory
            | K::ReadOnlyFilesystem
            | K::InvalidFilename
            | K::AlreadyExists
            | K::DirectoryNotEmpty
    )
}

/// `12.3 GB` style (decimal units, 3 significant digits).
pub fn human_bytes(b: u128) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = b as f64;
    let mut k = 0;
    while v >= 1000.0 && k + 1 < units.len() {
        v /= 1000.0;
        k += 1;
    }
    if k == 0 {
        format!("{b} B")
    } else {
        format!("{v:.3} {}", units[k])
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
