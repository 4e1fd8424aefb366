//! The GPU engine (wgpu, WGSL). Being written: placeholder so the crate builds.
#![allow(missing_docs)]
use super::{BackendInfo, Engine, RunOptions};
use crate::batch::{Batch, Features};
use crate::{Error, Result};
use std::sync::Arc;
pub struct GpuContext;
impl GpuContext {
    pub fn new() -> Result<Self> {
        Err(Error::Gpu("not yet".into()))
    }
    pub fn is_software(&self) -> bool {
        true
    }
    pub fn adapter_info(&self) -> wgpu::AdapterInfo {
        unreachable!()
    }
}
pub struct GpuEngine;
impl GpuEngine {
    pub fn new(_c: Arc<GpuContext>) -> Result<Self> {
        Ok(Self)
    }
}
impl Engine for GpuEngine {
    fn info(&self) -> BackendInfo {
        unreachable!()
    }
    fn run(&self, _b: &Batch, _o: &RunOptions) -> Result<Features> {
        Err(Error::Gpu("not yet".into()))
    }
}
