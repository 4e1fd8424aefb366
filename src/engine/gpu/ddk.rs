//! The DDK kernel on the GPU: chunk planning, buffers, dispatch and read-back.
//! Shader: `shaders/ddk.wgsl`; CPU twin: [`crate::engine::cpu::ddk_trajectory`].

use super::context::GpuContext;
use super::dispatch::{
    Binding, DispatchStats, Dispatcher, Finished, Launch, Role, Slot, par_copy, unpack_status_bytes,
};
use super::shaders;
use crate::Result;
use crate::batch::{Batch, Features};
use crate::engine::ode::OdeSpec;
use crate::engine::{BackendInfo, Engine, RunOptions};
use crate::model::Model;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Invocations per workgroup of `shaders/ddk.wgsl` (its `WG` constant).
pub const DDK_WORKGROUP_SIZE: u32 = 64;

/// Largest output buffer of one chunk (bytes): bounds the staging memory.
const OUT_BUDGET: u64 = 256 << 20;

/// Uniform block of `shaders/ddk.wgsl`. Keep in sync with `DdkUniform` there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DdkUniform {
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
    /// 1 to write sensitivities.
    pub want_grad: u32,
    /// Workgroups along x.
    pub grid_x: u32,
    /// Cycle-to-cycle noise standard deviation (0: off).
    pub noise_sigma: f32,
    /// Philox key, low word.
    pub key0: u32,
    /// Philox key, high word.
    pub key1: u32,
    /// Global index of the chunk's first parameter set.
    pub set_offset: u32,
}

/// A rectangular block of trajectories dispatched at once: parameter sets ×
/// sequences. Its trajectories are contiguous in the [`Features`] arrays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Parameter sets.
    pub sets: Range<usize>,
    /// Sequences.
    pub seqs: Range<usize>,
}

impl Chunk {
    /// Trajectories in the chunk.
    pub fn len(&self) -> usize {
        self.sets.len() * self.seqs.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The limits that bound a chunk.
#[derive(Clone, Copy, Debug)]
pub struct ChunkLimits {
    /// Most trajectories per chunk (outputs, sensitivities, user setting).
    pub max_traj: usize,
    /// Most input rows bound at once.
    pub max_rows: usize,
    /// Most parameter sets bound at once.
    pub max_sets: usize,
}

impl ChunkLimits {
    /// From the device limits, the batch shape and the user's chunk setting.
    pub fn new(
        limits: &wgpu::Limits,
        batch: &Batch,
        want_grad: bool,
        user_chunk: Option<usize>,
    ) -> Self {
        let per_device =
            batch.params().steps().unwrap_or(1) as u64 * batch.params().groups() as u64;
        Self::for_shape(limits, batch.steps(), per_device, want_grad, user_chunk)
    }

    /// The same limits for any kernel that writes `steps` f32 values per
    /// trajectory and binds `per_set_floats` f32 values per parameter set (the
    /// ODE engine uses it with its parameter rows).
    pub fn for_shape(
        limits: &wgpu::Limits,
        steps: usize,
        per_set_floats: u64,
        want_grad: bool,
        user_chunk: Option<usize>,
    ) -> Self {
        let t = steps as u64;
        let bind = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let mut max_traj = (bind / (4 * t)).min(OUT_BUDGET / (4 * t));
        if want_grad {
            max_traj = max_traj.min(bind / (8 * t));
        }
        // Index arithmetic in the shader is u32: keep element counts below 2^32.
        max_traj = max_traj.min((u32::MAX as u64) / (2 * t));
        if let Some(c) = user_chunk {
            max_traj = max_traj.min(c.max(1) as u64);
        }
        Self {
            max_traj: max_traj.max(1) as usize,
            max_rows: (bind / (4 * t)).max(1) as usize,
            max_sets: (bind / (4 * per_set_floats.max(1))).max(1) as usize,
        }
    }
}

/// Splits `sets × seqs` into chunks within `lim`. When all sequences fit at once,
/// a chunk spans several whole parameter sets; otherwise it is one set × a
/// block of sequences. Sequence blocks are outermost: every chunk of a block
/// follows the previous one, so a driver uploads each block's inputs once,
/// not once per parameter set.
pub fn plan_chunks(sets: usize, seqs: usize, lim: ChunkLimits) -> Vec<Chunk> {
    let s_block = seqs.min(lim.max_traj).min(lim.max_rows).max(1);
    let p_block = if s_block == seqs {
        (lim.max_traj / seqs).clamp(1, lim.max_sets)
    } else {
        1
    };
    let mut out = Vec::new();
    for s0 in (0..seqs).step_by(s_block) {
        for p0 in (0..sets).step_by(p_block) {
            out.push(Chunk {
                sets: p0..(p0 + p_block).min(sets),
                seqs: s0..(s0 + s_block).min(seqs),
            });
        }
    }
    out
}

/// Where the time of the last GPU run went (host-side times: with two
/// buffer sets the uploads, the kernel and the copy-out of neighbouring chunks
/// overlap, so these are the host's shares, not the device's).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct GpuTiming {
    /// Host time queueing the uploads (inputs, parameters), seconds.
    pub upload_s: f64,
    /// Kernel time from timestamp queries (None when the adapter has none).
    pub kernel_s: Option<f64>,
    /// Host time waiting for the device, seconds.
    pub kernel_wall_s: f64,
    /// Host time copying the outputs out of the staging buffers, seconds.
    pub download_s: f64,
    /// Number of chunks dispatched.
    pub chunks: usize,
    /// Queue submissions (one per chunk).
    pub submits: usize,
    /// Waits on the device (one per chunk).
    pub waits: usize,
}

impl From<DispatchStats> for GpuTiming {
    fn from(s: DispatchStats) -> Self {
        Self {
            upload_s: s.prepare_s,
            kernel_s: s.kernel_s,
            kernel_wall_s: s.wait_s,
            download_s: s.copy_s,
            chunks: s.chunks,
            submits: s.submits,
            waits: s.waits,
        }
    }
}

/// The GPU engine: the DDK map ([`Engine::run_into`]) and every continuous
/// model ([`Engine::run_model_into`]), each pipeline compiled once (the
/// models' on first use) and reused for every batch, all through the one
/// chunked dispatcher of [`super::dispatch`].
pub struct GpuEngine {
    pub(super) ctx: Arc<GpuContext>,
    ddk: Mutex<Option<Arc<wgpu::ComputePipeline>>>,
    pub(super) models: Mutex<HashMap<Model, Arc<wgpu::ComputePipeline>>>,
    pub(super) last: Mutex<GpuTiming>,
    /// Buffers of the last DDK run, reused while large enough (sweeps run
    /// many batches of one shape).
    buffers: Mutex<Option<Dispatcher>>,
    /// Buffers of the last model run and its model.
    pub(super) model_buffers: Mutex<Option<(Model, Dispatcher)>>,
}

impl GpuEngine {
    /// Compiles the DDK pipeline on `ctx` (a shader problem is an error now,
    /// not at the first run).
    pub fn new(ctx: Arc<GpuContext>) -> Result<Self> {
        let e = Self::lazy(ctx);
        e.ddk_pipeline()?;
        Ok(e)
    }
    /// An engine on `ctx` whose pipelines are compiled on first use.
    pub fn lazy(ctx: Arc<GpuContext>) -> Self {
        Self {
            ctx,
            ddk: Mutex::new(None),
            models: Mutex::new(HashMap::new()),
            last: Mutex::new(GpuTiming::default()),
            buffers: Mutex::new(None),
            model_buffers: Mutex::new(None),
        }
    }
    /// The shared context.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
    /// Timing of the last run (DDK or model).
    pub fn last_timing(&self) -> GpuTiming {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn ddk_pipeline(&self) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut p = self.ddk.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = p.as_ref() {
            return Ok(p.clone());
        }
        let made = Arc::new(self.ctx.pipeline(&shaders::DDK)?);
        *p = Some(made.clone());
        Ok(made)
    }
}

pub(super) fn storage(
    dev: &wgpu::Device,
    label: &str,
    bytes: u64,
    extra: wgpu::BufferUsages,
) -> wgpu::Buffer {
    dev.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(16).next_multiple_of(4),
        usage: wgpu::BufferUsages::STORAGE | extra,
        mapped_at_creation: false,
    })
}

/// A uniform buffer holding `value` (rewritten per chunk with `write_buffer`).
pub(super) fn uniform<T: bytemuck::Pod>(
    dev: &wgpu::Device,
    label: &str,
    value: &T,
) -> wgpu::Buffer {
    dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::bytes_of(value),
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    })
}

/// The bind group of a kernel whose group 0 binds `buffers` in order
/// (binding i = `buffers[i]`, each bound whole).
pub(super) fn bind_all(
    dev: &wgpu::Device,
    pipeline: &wgpu::ComputePipeline,
    label: &str,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let layout = pipeline.get_bind_group_layout(0);
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &layout,
        entries: &entries,
    })
}

pub(super) fn staging(dev: &wgpu::Device, label: &str, bytes: u64) -> wgpu::Buffer {
    dev.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(16).next_multiple_of(4),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

impl Engine for GpuEngine {
    fn info(&self) -> BackendInfo {
        self.ctx.backend_info()
    }

    fn transfer(&self) -> crate::engine::Transfer {
        self.ctx.transfer()
    }

    fn run_model_into(
        &self,
        x: &[f32],
        seqs: usize,
        steps: usize,
        spec: &OdeSpec,
        opts: &RunOptions,
        out: &mut Features,
    ) -> Result<()> {
        crate::engine::ode::refuse_ddk_options(opts)?;
        self.run_model(x, seqs, steps, spec, opts.chunk, out)
    }

    fn run_into(&self, batch: &Batch, opts: &RunOptions, f: &mut Features) -> Result<()> {
        let ctx = &*self.ctx;
        let pipeline = self.ddk_pipeline()?;
        let params = batch.params();
        let (p_all, s_all, t) = (params.sets(), batch.seqs(), batch.steps());
        let want_grad = opts.sensitivities;
        let lim = ChunkLimits::new(ctx.limits(), batch, want_grad, opts.chunk);
        let chunks = plan_chunks(p_all, s_all, lim);
        let max_n = chunks.iter().map(Chunk::len).max().unwrap_or(1);
        let max_rows = chunks.iter().map(|c| c.seqs.len()).max().unwrap_or(1);
        let max_sets = chunks.iter().map(|c| c.sets.len()).max().unwrap_or(1);
        let per_dev = params.steps().unwrap_or(1);
        let g = params.groups();
        let t64 = t as u64;

        let alpha: Vec<f32> = params.alpha().iter().map(|&v| v as f32).collect();
        let beta: Vec<f32> = params.beta().iter().map(|&v| v as f32).collect();
        let w0: Vec<f32> = params.w0().iter().map(|&v| v as f32).collect();

        let p_bytes = (max_sets * g * per_dev) as u64 * 4;
        let layout = [
            Binding {
                label: "ddk x",
                bytes: max_rows as u64 * t64 * 4,
                role: Role::Shared,
            },
            Binding {
                label: "ddk alpha",
                bytes: p_bytes,
                role: Role::Input,
            },
            Binding {
                label: "ddk beta",
                bytes: p_bytes,
                role: Role::Input,
            },
            Binding {
                label: "ddk w0",
                bytes: (max_sets * g) as u64 * 4,
                role: Role::Input,
            },
            Binding {
                label: "ddk w_out",
                bytes: max_n as u64 * t64 * 4,
                role: Role::Output,
            },
            Binding {
                label: "ddk status",
                bytes: max_n as u64 * 4,
                role: Role::Output,
            },
            Binding {
                label: "ddk grad",
                bytes: if want_grad { max_n as u64 * t64 * 8 } else { 0 },
                role: Role::Output,
            },
        ];
        let mut cache = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        if !cache.as_ref().is_some_and(|d| d.fits(&layout)) {
            *cache = None; // free the old buffers before allocating the new ones
            *cache = Some(Dispatcher::new(
                ctx,
                &pipeline,
                "ddk",
                &layout,
                &DdkUniform::default(),
            ));
        }
        let disp = cache.as_ref().expect("just created");

        f.prepare(batch, want_grad);
        let mut x_block: Option<Range<usize>> = None;
        let prepare = |i: usize, slot: &Slot| -> Result<Launch> {
            let c = &chunks[i];
            let n = c.len();
            if x_block.as_ref() != Some(&c.seqs) {
                // Shared by both slots: once per sequence block.
                let xs = &batch.inputs()[c.seqs.start * t..c.seqs.end * t];
                ctx.write(slot.buffer(1), 0, bytemuck::cast_slice(xs));
                x_block = Some(c.seqs.clone());
            }
            let dr = c.sets.start * g * per_dev..c.sets.end * g * per_dev;
            ctx.write(slot.buffer(2), 0, bytemuck::cast_slice(&alpha[dr.clone()]));
            ctx.write(slot.buffer(3), 0, bytemuck::cast_slice(&beta[dr]));
            let wr = c.sets.start * g..c.sets.end * g;
            ctx.write(slot.buffer(4), 0, bytemuck::cast_slice(&w0[wr]));
            let (grid_x, grid_y) = ctx.grid(n, DDK_WORKGROUP_SIZE)?;
            let uni = DdkUniform {
                n_traj: n as u32,
                seqs: c.seqs.len() as u32,
                steps: t as u32,
                groups: g as u32,
                seq_offset: c.seqs.start as u32,
                per_step: params.steps().is_some() as u32,
                want_grad: want_grad as u32,
                grid_x,
                noise_sigma: opts.noise.map_or(0.0, |n| n.sigma as f32),
                key0: opts.noise.map_or(0, |n| n.seed as u32),
                key1: opts.noise.map_or(0, |n| (n.seed >> 32) as u32),
                set_offset: (opts.noise.map_or(0, |n| n.set_offset) + c.sets.start as u64) as u32,
            };
            ctx.write(slot.uniform(), 0, bytemuck::bytes_of(&uni));
            let out_bytes = n as u64 * t64 * 4;
            Ok(Launch {
                grid: (grid_x, grid_y),
                out_bytes: vec![
                    out_bytes,
                    n as u64 * 4,
                    if want_grad { out_bytes * 2 } else { 0 },
                ],
            })
        };
        let Features {
            w,
            status,
            first_bad,
            grad,
            ..
        } = f;
        let finish = |i: usize, done: &Finished| -> Result<()> {
            let c = &chunks[i];
            // The chunk's trajectories are contiguous in the outputs (see plan_chunks).
            let first = c.sets.start * s_all + c.seqs.start;
            let n = c.len();
            par_copy(
                bytemuck::cast_slice_mut(&mut w[first * t..(first + n) * t]),
                done.outputs[0],
            );
            unpack_status_bytes(
                done.outputs[1],
                &mut status[first..first + n],
                &mut first_bad[first..first + n],
            );
            if let Some(gr) = grad.as_mut() {
                par_copy(
                    bytemuck::cast_slice_mut(&mut gr[first * t * 2..(first + n) * t * 2]),
                    done.outputs[2],
                );
            }
            Ok(())
        };
        let stats = disp.run(ctx, &pipeline, "ddk", chunks.len(), prepare, finish)?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = stats.into();
        Ok(())
    }
}
