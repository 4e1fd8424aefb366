//! Device physics as pure scalar functions: no I/O, no buffers.
//!
//! Each function here has a WGSL twin in `shaders/`; the CPU engine calls these
//! and the parity tests compare the two.

pub mod ddk;
pub mod lambert_w;
