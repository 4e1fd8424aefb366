//! # memkin — memristor drift-diffusion kinetics at GPU scale
//!
//! memkin turns input sequences into *kinetics features* by integrating one
//! small drift-diffusion ODE per sequence (the DDK map of Shi et al., Nature
//! Communications 16, 913, 2025), millions at once in WGSL compute shaders, with
//! a CPU reference twin of every kernel; then it trains a readout on them.
//!
//! Data flow (one module per stage):
//!
//! ```text
//! dataset ─► encoder ─► Batch ─► Engine (cpu | gpu) ─► Features ─► Readout ─► Report
//! ```
//!
//! - [`model`]: the device physics as pure scalar functions.
//! - [`batch`]: [`batch::Batch`] (S sequences of length T crossed with P parameter
//!   sets) and [`batch::Features`] (states, per-trajectory status, sensitivities).
//! - [`engine`]: the [`engine::Engine`] trait with the `cpu` reference and the
//!   `gpu` backend.
//! - [`data`], [`encode`], [`readout`], [`study`], [`report`]: datasets, encoders,
//!   readouts, sweeps / Monte Carlo, and outputs.
//! - [`text`]: the AG News text network, its word embedding trained through
//!   the device by reverse mode ([`engine::vjp`]).
//!
//! ```
//! use memkin::batch::{Batch, DeviceParams};
//! use memkin::engine::{cpu::CpuEngine, Engine, RunOptions};
//!
//! // Two sequences of four steps, one parameter set (alpha = 0.7, beta = 1.0).
//! let x = [0.0f32, 0.5, 1.0, 0.2, 1.0, 1.0, 1.0, 1.0];
//! let params = DeviceParams::scalar(&[(0.7, 1.0)], 1.0).unwrap();
//! let batch = Batch::new(&x, 2, 4, &params).unwrap();
//! let features = CpuEngine::reference().run(&batch, &RunOptions::default()).unwrap();
//! // w[0] = 1, w[1] = 1 + 0.7/1 - 1.0*0 = 1.7
//! assert!((features.get(0, 0, 1) - 1.7).abs() < 1e-6);
//! ```
#![deny(missing_docs)]

pub mod batch;
pub mod bench;
pub mod cost;
pub mod data;
pub mod encode;
pub mod engine;
pub mod error;
pub mod limits;
pub mod model;
pub mod pipeline;
pub mod readout;
pub mod report;
pub mod rng;
pub mod run_report;
pub mod saved_model;
pub mod study;
pub mod text;

pub use error::{Error, Result};
