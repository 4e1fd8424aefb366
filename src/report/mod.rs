//! Outputs: JSON, CSV, .npy arrays, PNG plots.
