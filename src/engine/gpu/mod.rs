//! The GPU engine: wgpu and the WGSL kernels in `shaders/`.
//!
//! - [`GpuContext`]: adapter, device and queue, created once, borrowed by every kernel.
//! - [`shaders`]: the registry of WGSL sources.
//! - [`dispatch`]: the one chunked, double-buffered dispatcher of every kernel.
//! - [`GpuEngine`]: the DDK kernel and the continuous-time device models
//!   (`shaders/ode.wgsl`), with transparent chunking ([`ddk::plan_chunks`]).
//! - [`GpuOdeEngine`]: the same engine with every pipeline compiled on first use.
//! - [`GpuVjpEngine`]: the reverse (adjoint) DDK kernel, chunked and dispatched the same way.
//! - [`GpuReducer`]: the study reductions fused after the DDK kernel (ridge
//!   moments, the readout's forward pass as counts, a Monte Carlo draw's
//!   host steps and readout in [`mc_forward`]): features stay on the device.

pub mod context;
pub mod ddk;
pub mod dispatch;
pub mod forward;
pub mod mc_forward;
pub mod moments;
pub mod ode;
pub mod shaders;
pub mod vjp;

pub use context::{GpuContext, PendingRead, Transfer, list_adapters};
pub use ddk::{GpuEngine, GpuTiming};
pub use moments::GpuReducer;
pub use ode::GpuOdeEngine;
pub use vjp::GpuVjpEngine;
