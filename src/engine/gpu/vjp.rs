//! The reverse (adjoint) DDK kernel on the GPU: buffers, chunked dispatch and
//! read-back. Shader: `shaders/ddk_vjp.wgsl`; CPU twin:
//! [`crate::engine::vjp::ddk_vjp_trajectory_f32`].
//!
//! Chunks are planned as for the forward kernel ([`super::ddk::plan_chunks`]):
//! a chunk's trajectories are contiguous in `[P, S, T]`, so its states,
//! cotangents and dL/dx are one block each. The kernel writes one parameter
//! term per trajectory (per step for per-step parameters); the host sums them
//! per device in f64, in trajectory order, so the result does not depend on
//! the chunking.

use super::context::GpuContext;
use super::ddk::{ChunkLimits, bind_all, plan_chunks, staging, storage, uniform};
use super::shaders;
use crate::Result;
use crate::batch::Batch;
use crate::engine::BackendInfo;
use crate::engine::vjp::{Vjp, VjpEngine, VjpOptions, check_cotangents, reduce_partials};
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Invocations per workgroup of `shaders/ddk_vjp.wgsl` (its `WG` constant).
pub const VJP_WORKGROUP_SIZE: u32 = 64;

/// Uniform block of `shaders/ddk_vjp.wgsl`. Keep in sync with `VjpUniform` there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct VjpUniform {
    /// Trajectories in this chunk.
    pub n_traj: u32,
    /// Sequences bound in `x` (the chunk's sequence block).
    pub seqs: u32,
    /// T.
    pub steps: u32,
    /// Devices per parameter set.
    pub groups: u32,
    /// Global index of the chunk's first sequence.
    pub seq_offset: u32,
    /// 1 for per-step parameters.
    pub per_step: u32,
    /// Workgroups along x.
    pub grid_x: u32,
    /// Padding to 16 bytes.
    pub pad: u32,
}

/// Byte sizes of the buffers (reused while large enough).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sizes {
    x: u64,
    params: u64,
    traj: u64,
    parts: u64,
}

impl Sizes {
    fn covers(&self, o: &Sizes) -> bool {
        self.x >= o.x && self.params >= o.params && self.traj >= o.traj && self.parts >= o.parts
    }
}

struct Buffers {
    sizes: Sizes,
    x: wgpu::Buffer,
    alpha: wgpu::Buffer,
    beta: wgpu::Buffer,
    w: wgpu::Buffer,
    g: wgpu::Buffer,
    gx: wgpu::Buffer,
    parts: wgpu::Buffer,
    gx_stage: wgpu::Buffer,
    parts_stage: wgpu::Buffer,
    uniform: wgpu::Buffer,
    bind: wgpu::BindGroup,
}

impl Buffers {
    fn new(ctx: &GpuContext, pipeline: &wgpu::ComputePipeline, sizes: Sizes) -> Self {
        let dev = &ctx.device;
        let cp = wgpu::BufferUsages::COPY_DST;
        let src = wgpu::BufferUsages::COPY_SRC;
        let x = storage(dev, "vjp x", sizes.x, cp);
        let alpha = storage(dev, "vjp alpha", sizes.params, cp);
        let beta = storage(dev, "vjp beta", sizes.params, cp);
        let w = storage(dev, "vjp w", sizes.traj, cp);
        let g = storage(dev, "vjp g", sizes.traj, cp);
        let gx = storage(dev, "vjp gx", sizes.traj, src);
        let parts = storage(dev, "vjp parameter terms", sizes.parts, src);
        let gx_stage = staging(dev, "vjp gx staging", sizes.traj);
        let parts_stage = staging(dev, "vjp parameter terms staging", sizes.parts);
        let uniform = uniform(dev, "vjp uniform", &VjpUniform::default());
        let bind = bind_all(
            dev,
            pipeline,
            "vjp bind group",
            &[&uniform, &x, &alpha, &beta, &w, &g, &gx, &parts],
        );
        Self {
            sizes,
            x,
            alpha,
            beta,
            w,
            g,
            gx,
            parts,
            gx_stage,
            parts_stage,
            uniform,
            bind,
        }
    }
}

/// The reverse DDK kernel: one pipeline on a shared [`GpuContext`].
pub struct GpuVjpEngine {
    ctx: Arc<GpuContext>,
    pipeline: wgpu::ComputePipeline,
    buffers: Mutex<Option<Buffers>>,
}

impl GpuVjpEngine {
    /// Compiles the reverse pipeline on `ctx`.
    pub fn new(ctx: Arc<GpuContext>) -> Result<Self> {
        let pipeline = ctx.pipeline(&shaders::DDK_VJP)?;
        Ok(Self {
            ctx,
            pipeline,
            buffers: Mutex::new(None),
        })
    }
    /// The shared context.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
}

impl VjpEngine for GpuVjpEngine {
    fn info(&self) -> BackendInfo {
        self.ctx.backend_info()
    }

    fn vjp_into(
        &self,
        batch: &Batch,
        w: &[f32],
        g: &[f32],
        opts: &VjpOptions,
        out: &mut Vjp,
    ) -> Result<()> {
        check_cotangents(batch, w, g)?;
        out.prepare(batch);
        let ctx = &*self.ctx;
        let dev = &ctx.device;
        let params = batch.params();
        let (p_all, s_all, t) = (params.sets(), batch.seqs(), batch.steps());
        let per_step = params.steps().is_some();
        let per = params.steps().unwrap_or(1);
        let gr = params.groups();
        // Per trajectory: w, g, dL/dx (T floats each) and 2 (or 2T) terms; the
        // per-step terms are the largest block (8 T bytes), as the forward
        // kernel's sensitivities are.
        let lim = ChunkLimits::for_shape(ctx.limits(), t, (per * gr) as u64, per_step, opts.chunk);
        let chunks = plan_chunks(p_all, s_all, lim);
        let max_n = chunks.iter().map(|c| c.len()).max().unwrap_or(1);
        let max_rows = chunks.iter().map(|c| c.seqs.len()).max().unwrap_or(1);
        let max_sets = chunks.iter().map(|c| c.sets.len()).max().unwrap_or(1);
        let t64 = t as u64;
        let sizes = Sizes {
            x: max_rows as u64 * t64 * 4,
            params: (max_sets * gr * per) as u64 * 4,
            traj: max_n as u64 * t64 * 4,
            parts: max_n as u64 * per as u64 * 8,
        };
        let alpha: Vec<f32> = params.alpha().iter().map(|&v| v as f32).collect();
        let beta: Vec<f32> = params.beta().iter().map(|&v| v as f32).collect();

        let mut cache = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        if !cache.as_ref().is_some_and(|b| b.sizes.covers(&sizes)) {
            *cache = None; // free the old buffers before allocating the new ones
            *cache = Some(Buffers::new(ctx, &self.pipeline, sizes));
        }
        let b = cache.as_ref().expect("just created");
        let mut parts = vec![0f32; max_n * per * 2];
        let mut x_uploaded: Option<Range<usize>> = None;
        for c in &chunks {
            let n = c.len();
            let first = c.sets.start * s_all + c.seqs.start;
            if x_uploaded.as_ref() != Some(&c.seqs) {
                let xs = &batch.inputs()[c.seqs.start * t..c.seqs.end * t];
                ctx.write(&b.x, 0, bytemuck::cast_slice(xs));
                x_uploaded = Some(c.seqs.clone());
            }
            let dr = c.sets.start * gr * per..c.sets.end * gr * per;
            ctx.write(&b.alpha, 0, bytemuck::cast_slice(&alpha[dr.clone()]));
            ctx.write(&b.beta, 0, bytemuck::cast_slice(&beta[dr]));
            let tr = first * t..(first + n) * t;
            ctx.write(&b.w, 0, bytemuck::cast_slice(&w[tr.clone()]));
            ctx.write(&b.g, 0, bytemuck::cast_slice(&g[tr.clone()]));
            let (grid_x, grid_y) = ctx.grid(n, VJP_WORKGROUP_SIZE)?;
            let uni = VjpUniform {
                n_traj: n as u32,
                seqs: c.seqs.len() as u32,
                steps: t as u32,
                groups: gr as u32,
                seq_offset: c.seqs.start as u32,
                per_step: per_step as u32,
                grid_x,
                pad: 0,
            };
            ctx.write(&b.uniform, 0, bytemuck::bytes_of(&uni));
            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("vjp compute"),
            });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("vjp pass"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&self.pipeline);
                pass.set_bind_group(0, &b.bind, &[]);
                pass.dispatch_workgroups(grid_x, grid_y, 1);
            }
            let gx_bytes = n as u64 * t64 * 4;
            let parts_bytes = n as u64 * per as u64 * 8;
            enc.copy_buffer_to_buffer(&b.gx, 0, &b.gx_stage, 0, gx_bytes);
            enc.copy_buffer_to_buffer(&b.parts, 0, &b.parts_stage, 0, parts_bytes);
            ctx.queue.submit([enc.finish()]);
            ctx.read_buffer(
                &b.gx_stage,
                gx_bytes,
                bytemuck::cast_slice_mut(&mut out.grad_x[tr]),
            )?;
            let parts = &mut parts[..n * per * 2];
            ctx.read_buffer(&b.parts_stage, parts_bytes, bytemuck::cast_slice_mut(parts))?;
            reduce_partials(params, s_all, first, parts, out);
        }
        Ok(())
    }
}
