//! The reverse (adjoint) DDK kernel on the GPU: buffers, chunked dispatch and
//! read-back. Shader: `shaders/ddk_vjp.wgsl`; CPU twin:
//! [`crate::engine::vjp::ddk_vjp_trajectory_f32`].
//!
//! Chunks are planned as for the forward kernel ([`super::ddk::plan_chunks`])
//! and run by the same double-buffered dispatcher ([`super::dispatch`]):
//! a chunk's trajectories are contiguous in `[P, S, T]`, so its states,
//! cotangents and dL/dx are one block each. The kernel writes one parameter
//! term per trajectory (per step for per-step parameters); the host sums them
//! per device in f64, in trajectory order, so the result does not depend on
//! the chunking.

use super::context::GpuContext;
use super::ddk::{ChunkLimits, plan_chunks};
use super::dispatch::{Binding, DispatchStats, Dispatcher, Finished, Launch, Role, Slot, par_copy};
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

/// The reverse DDK kernel: one pipeline on a shared [`GpuContext`].
pub struct GpuVjpEngine {
    ctx: Arc<GpuContext>,
    pipeline: wgpu::ComputePipeline,
    buffers: Mutex<Option<Dispatcher>>,
    last: Mutex<DispatchStats>,
}

impl GpuVjpEngine {
    /// Compiles the reverse pipeline on `ctx`.
    pub fn new(ctx: Arc<GpuContext>) -> Result<Self> {
        let pipeline = ctx.pipeline(&shaders::DDK_VJP)?;
        Ok(Self {
            ctx,
            pipeline,
            buffers: Mutex::new(None),
            last: Mutex::new(DispatchStats::default()),
        })
    }
    /// The shared context.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
    /// Chunks, submits, waits and host times of the last run.
    pub fn last_stats(&self) -> DispatchStats {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
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
        let layout = [
            Binding {
                label: "vjp x",
                bytes: max_rows as u64 * t64 * 4,
                role: Role::Shared,
            },
            Binding {
                label: "vjp alpha",
                bytes: (max_sets * gr * per) as u64 * 4,
                role: Role::Input,
            },
            Binding {
                label: "vjp beta",
                bytes: (max_sets * gr * per) as u64 * 4,
                role: Role::Input,
            },
            Binding {
                label: "vjp w",
                bytes: max_n as u64 * t64 * 4,
                role: Role::Input,
            },
            Binding {
                label: "vjp g",
                bytes: max_n as u64 * t64 * 4,
                role: Role::Input,
            },
            Binding {
                label: "vjp gx",
                bytes: max_n as u64 * t64 * 4,
                role: Role::Output,
            },
            Binding {
                label: "vjp parameter terms",
                bytes: max_n as u64 * per as u64 * 8,
                role: Role::Output,
            },
        ];
        let alpha: Vec<f32> = params.alpha().iter().map(|&v| v as f32).collect();
        let beta: Vec<f32> = params.beta().iter().map(|&v| v as f32).collect();

        let mut cache = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        if !cache.as_ref().is_some_and(|d| d.fits(&layout)) {
            *cache = None; // free the old buffers before allocating the new ones
            *cache = Some(Dispatcher::new(
                ctx,
                &self.pipeline,
                "vjp",
                &layout,
                &VjpUniform::default(),
            ));
        }
        let disp = cache.as_ref().expect("just created");
        let mut parts = vec![0f32; max_n * per * 2];
        let mut x_block: Option<Range<usize>> = None;
        let prepare = |i: usize, slot: &Slot| -> Result<Launch> {
            let c = &chunks[i];
            let n = c.len();
            let first = c.sets.start * s_all + c.seqs.start;
            if x_block.as_ref() != Some(&c.seqs) {
                // Shared by both slots: once per sequence block.
                let xs = &batch.inputs()[c.seqs.start * t..c.seqs.end * t];
                ctx.write(slot.buffer(1), 0, bytemuck::cast_slice(xs));
                x_block = Some(c.seqs.clone());
            }
            let dr = c.sets.start * gr * per..c.sets.end * gr * per;
            ctx.write(slot.buffer(2), 0, bytemuck::cast_slice(&alpha[dr.clone()]));
            ctx.write(slot.buffer(3), 0, bytemuck::cast_slice(&beta[dr]));
            let tr = first * t..(first + n) * t;
            ctx.write(slot.buffer(4), 0, bytemuck::cast_slice(&w[tr.clone()]));
            ctx.write(slot.buffer(5), 0, bytemuck::cast_slice(&g[tr]));
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
            ctx.write(slot.uniform(), 0, bytemuck::bytes_of(&uni));
            Ok(Launch {
                grid: (grid_x, grid_y),
                out_bytes: vec![n as u64 * t64 * 4, n as u64 * per as u64 * 8],
            })
        };
        let finish = |i: usize, done: &Finished| -> Result<()> {
            let c = &chunks[i];
            let n = c.len();
            let first = c.sets.start * s_all + c.seqs.start;
            par_copy(
                bytemuck::cast_slice_mut(&mut out.grad_x[first * t..(first + n) * t]),
                done.outputs[0],
            );
            let parts = &mut parts[..n * per * 2];
            par_copy(bytemuck::cast_slice_mut(parts), done.outputs[1]);
            reduce_partials(params, s_all, first, parts, out);
            Ok(())
        };
        let stats = disp.run(ctx, &self.pipeline, "vjp", chunks.len(), prepare, finish)?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = stats;
        Ok(())
    }
}
