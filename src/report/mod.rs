//! Outputs: `.npy` arrays, JSON, CSV, PNG plots, summary statistics, and
//! progress on stderr.

pub mod npy;
pub mod plot;
pub mod progress;
pub mod stats;
