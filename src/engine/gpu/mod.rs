//! The GPU engine: wgpu and the WGSL kernels in `shaders/`.
//!
//! - [`GpuContext`]: adapter, device and queue, created once, borrowed by every kernel.
//! - [`shaders`]: the registry of WGSL sources.
//! - [`GpuEngine`]: the DDK kernel with transparent chunking ([`ddk::plan_chunks`]).

pub mod context;
pub mod ddk;
pub mod shaders;

pub use context::{GpuContext, list_adapters};
pub use ddk::{GpuEngine, GpuTiming};
