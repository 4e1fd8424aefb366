//! Studies: parameter sweeps and device-variability Monte Carlo.
pub mod rng;
