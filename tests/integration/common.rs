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

use memkin::engine::gpu::{GpuContext, GpuEngine};
use std::sync::{Arc, OnceLock};

/// The shared GPU context for the whole test binary (created once, like the
/// product does). `None` when there is no adapter and MEMKIN_REQUIRE_GPU is not
/// 1; with MEMKIN_REQUIRE_GPU=1 (CI, lavapipe installed) a missing adapter is a
/// test failure, never a silent skip.
pub fn gpu_context() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    let r = CTX.get_or_init(|| GpuContext::new().map(Arc::new).map_err(|e| e.to_string()));
    match r {
        Ok(c) => Some(c.clone()),
        Err(e) => {
            if std::env::var("MEMKIN_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("MEMKIN_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("skipped (no GPU adapter: {e})");
            None
        }
    }
}

/// A GPU engine on the shared context (see [`gpu_context`]).
pub fn gpu_engine() -> Option<GpuEngine> {
    gpu_context().map(|c| GpuEngine::new(c).expect("DDK pipeline compiles"))
}

/// SplitMix64: a tiny deterministic generator for test inputs.
pub struct TestRng(pub u64);

impl TestRng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        memkin::rng::splitmix64(&mut self.0)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Runs a one-off test kernel with `inputs` at binding 0 (read-only storage)
/// and `out_bytes` of read-write storage at binding 1; returns binding 1.
pub fn run_test_kernel(
    ctx: &GpuContext,
    name: &'static str,
    source: &str,
    inputs: &[u8],
    out_bytes: u64,
    invocations: u32,
) -> Vec<u8> {
    use wgpu::util::DeviceExt;
    let dev = &ctx.device;
    let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(name),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(name),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let input = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("test in"),
        contents: inputs,
        usage: wgpu::BufferUsages::STORAGE,
    });
    let output = dev.create_buffer(&wgpu::BufferDescriptor {
        label: Some("test out"),
        size: out_bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let stage = dev.create_buffer(&wgpu::BufferDescriptor {
        label: Some("test stage"),
        size: out_bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("test bind"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: input.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: output.as_entire_binding(),
            },
        ],
    });
    let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("test"),
    });
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("test"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(invocations.div_ceil(64), 1, 1);
    }
    enc.copy_buffer_to_buffer(&output, 0, &stage, 0, out_bytes);
    ctx.queue.submit([enc.finish()]);
    let mut out = vec![0u8; out_bytes as usize];
    ctx.read_buffer(&stage, out_bytes, &mut out)
        .expect("read back");
    out
}
