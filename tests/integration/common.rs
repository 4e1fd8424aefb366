//! Shared test support: dataset location, GPU availability, and the parity
//! harness every kernel's backends are checked with.
//!
//! Tests that need the real data or a GPU carry
//! `#[cfg_attr(skip_data, ignore = ...)]` / `#[cfg_attr(skip_gpu, ignore = ...)]`:
//! build.rs sets those cfgs when MEMKIN_DATA or a GPU driver is absent, so
//! cargo's summary counts them as *ignored*; they never pass by returning early.
#![allow(dead_code)]

use memkin::batch::Features;
use memkin::engine::gpu::{GpuContext, GpuEngine};
use memkin::engine::tolerance::Tolerance;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The real datasets (MEMKIN_DATA). Only tests not ignored under `skip_data`
/// call it, so a missing variable here is a failure.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("MEMKIN_DATA") {
        Some(d) => PathBuf::from(d),
        None => panic!(
            "MEMKIN_DATA is not set: set it to the datasets directory (data tests are ignored only when it is unset at build time outside CI)"
        ),
    }
}

/// The shared GPU context for the whole test binary (created once, like the
/// product does). Only tests not ignored under `skip_gpu` call it, so a
/// missing adapter is a failure, never a silent skip.
pub fn gpu_context() -> Arc<GpuContext> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    let r = CTX.get_or_init(|| GpuContext::new().map(Arc::new).map_err(|e| e.to_string()));
    match r {
        Ok(c) => c.clone(),
        Err(e) => panic!(
            "no GPU adapter ({e}); build.rs found a GPU driver, so the GPU tests ran: fix the driver, or rebuild with MEMKIN_SKIP_GPU=1 to report them as ignored"
        ),
    }
}

/// A sweep study of `spec_text` in `dir` (the runner tests' toy studies):
/// no progress bar, `extra` as the manifest's extra keys.
pub fn sweep_study<'a>(
    dir: &'a std::path::Path,
    spec_text: &'a str,
    plan: &'a memkin::study::plan::Plan,
    shard: Option<(usize, usize)>,
    resume: bool,
    extra: serde_json::Value,
) -> memkin::study::runner::Study<'a> {
    memkin::study::runner::Study {
        dir,
        kind: memkin::study::runner::StudyKind::Sweep,
        spec_text,
        plan,
        shard,
        resume,
        progress: false,
        manifest_extra: extra,
    }
}

/// Checks that the WGSL struct `name` of `wgsl` (a shader's full source) has
/// the size (span and layout) of its Rust `#[repr(C)]` twin, `rust_size`
/// bytes, and exactly the members `fields`, in order.
pub fn assert_uniform_layout(wgsl: &str, name: &str, rust_size: usize, fields: &[&str]) {
    let module = naga::front::wgsl::parse_str(wgsl).unwrap();
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).unwrap();
    let (handle, ty) = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no struct {name} in the shader"));
    let naga::TypeInner::Struct { members, span } = &ty.inner else {
        panic!("{name} is not a struct")
    };
    assert_eq!(*span as usize, rust_size, "{name}: WGSL span vs Rust size");
    assert_eq!(
        layouter[handle].size as usize, rust_size,
        "{name}: layout size"
    );
    let names: Vec<&str> = members.iter().filter_map(|m| m.name.as_deref()).collect();
    assert_eq!(names, fields, "{name}: members");
}

/// A GPU engine on the shared context (see [`gpu_context`]).
pub fn gpu_engine() -> GpuEngine {
    GpuEngine::new(gpu_context()).expect("DDK pipeline compiles")
}

/// The expected output of one kernel run: shape `[P, S, T]`, states, optional
/// sensitivities `[P, S, T, 2]`, statuses and first bad steps `[P, S]`.
pub struct Expected<'a> {
    /// `[P, S, T]`.
    pub shape: [usize; 3],
    /// States, `P * S * T` values.
    pub w: &'a [f64],
    /// Sensitivities, `P * S * T * 2` values, when the run asked for them.
    pub grad: Option<&'a [f64]>,
    /// Status codes, `P * S`.
    pub status: &'a [u8],
    /// First bad steps, `P * S`.
    pub first_bad: &'a [u32],
}

/// The one parity harness, used for every kernel on both backends: checks that
/// `got` has the expected shape and that every array has the length the shape
/// implies (a backend that returns too little fails), that statuses and first
/// bad steps are equal, then compares states (and sensitivities) under `tol`
/// (`grad_tol`), panicking with the worst index as `[p, s, k]` and
/// `describe(p, s, k)`.
pub fn assert_parity(
    what: &str,
    got: &Features,
    want: &Expected,
    tol: Tolerance,
    grad_tol: Tolerance,
    describe: impl Fn(usize, usize, usize) -> String,
) {
    let [p, s, t] = want.shape;
    assert_eq!(
        [got.sets, got.seqs, got.steps],
        want.shape,
        "{what}: shape [P, S, T]"
    );
    let n = p * s;
    for (name, len, expect) in [
        ("states", got.w.len(), n * t),
        ("status", got.status.len(), n),
        ("first_bad", got.first_bad.len(), n),
        ("reference states", want.w.len(), n * t),
        ("reference status", want.status.len(), n),
        ("reference first_bad", want.first_bad.len(), n),
    ] {
        assert_eq!(
            len, expect,
            "{what}: {name} length for shape {:?}",
            want.shape
        );
    }
    let traj = |i: usize| format!("trajectory {i} = (set {}, seq {})", i / s, i % s);
    if let Some(i) = (0..n).find(|&i| got.status[i] != want.status[i]) {
        panic!(
            "{what}: status {} want {} at {}",
            got.status[i],
            want.status[i],
            traj(i)
        );
    }
    if let Some(i) = (0..n).find(|&i| got.first_bad[i] != want.first_bad[i]) {
        panic!(
            "{what}: first bad step {} want {} at {}",
            got.first_bad[i],
            want.first_bad[i],
            traj(i)
        );
    }
    tol.compare_shaped(what, &got.w, &want.shape, want.w, &want.shape, |ix| {
        describe(ix[0], ix[1], ix[2])
    })
    .unwrap_or_else(|e| panic!("{e}"));
    match (&got.grad, want.grad) {
        (None, None) => {}
        (Some(g), Some(wg)) => {
            let shape = [p, s, t, 2];
            grad_tol
                .compare_shaped(
                    &format!("{what} sensitivities"),
                    g,
                    &shape,
                    wg,
                    &shape,
                    |ix| describe(ix[0], ix[1], ix[2]),
                )
                .unwrap_or_else(|e| panic!("{e}"));
        }
        (g, wg) => panic!(
            "{what}: sensitivities present {} want {}",
            g.is_some(),
            wg.is_some()
        ),
    }
}

/// [`Expected`] values read off a reference backend's [`Features`] (f32 widened).
pub struct Reference {
    shape: [usize; 3],
    w: Vec<f64>,
    grad: Option<Vec<f64>>,
    status: Vec<u8>,
    first_bad: Vec<u32>,
}

impl Reference {
    /// The reference backend's output as the harness's expectation.
    pub fn of(f: &Features) -> Self {
        Self {
            shape: [f.sets, f.seqs, f.steps],
            w: f.w.iter().map(|&v| v as f64).collect(),
            grad: f
                .grad
                .as_ref()
                .map(|g| g.iter().map(|&v| v as f64).collect()),
            status: f.status.clone(),
            first_bad: f.first_bad.clone(),
        }
    }
    /// Borrowed as the harness takes it.
    pub fn expected(&self) -> Expected<'_> {
        Expected {
            shape: self.shape,
            w: &self.w,
            grad: self.grad.as_deref(),
            status: &self.status,
            first_bad: &self.first_bad,
        }
    }
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
