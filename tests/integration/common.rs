//! Shared test support: dataset location and GPU availability rules.
#![allow(dead_code)]

use std::path::PathBuf;

/// The real datasets (MEMKIN_DATA), or None with a note on stderr. In CI
/// (MEMKIN_REQUIRE_DATA=1 or CI=true) a missing MEMKIN_DATA is a failure.
pub fn data_dir() -> Option<PathBuf> {
    match std::env::var_os("MEMKIN_DATA") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("MEMKIN_DATA is not set but CI=true: the data tests must not be skipped");
            }
            eprintln!("skipped: MEMKIN_DATA not set");
            None
        }
    }
}
