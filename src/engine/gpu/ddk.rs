//! The DDK kernel on the GPU: chunk planning, buffers, dispatch and read-back.
//! Shader: `shaders/ddk.wgsl`; CPU twin: [`crate::engine::cpu::ddk_trajectory`].

use super::context::GpuContext;
use super::shaders;
use crate::Result;
use crate::batch::{Batch, Features};
use crate::engine::{BackendInfo, Engine, RunOptions};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Instant;
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
/// a chunk spans several whole parameter sets (inputs uploaded once); otherwise it
/// is one set × a block of sequences.
pub fn plan_chunks(sets: usize, seqs: usize, lim: ChunkLimits) -> Vec<Chunk> {
    let s_block = seqs.min(lim.max_traj).min(lim.max_rows).max(1);
    let p_block = if s_block == seqs {
        (lim.max_traj / seqs).clamp(1, lim.max_sets)
    } else {
        1
    };
    let mut out = Vec::new();
    for p0 in (0..sets).step_by(p_block) {
        for s0 in (0..seqs).step_by(s_block) {
            out.push(Chunk {
                sets: p0..(p0 + p_block).min(sets),
                seqs: s0..(s0 + s_block).min(seqs),
            });
        }
    }
    out
}

/// Decodes the kernels' status words (`pack_status` in shaders/common.wgsl: the
/// code in the top 2 bits, the first bad step below, all ones when ok).
pub(super) fn unpack_status(words: &[u32], status: &mut [u8], first_bad: &mut [u32]) {
    for ((&word, st), fb) in words.iter().zip(status).zip(first_bad) {
        *st = (word >> 30) as u8;
        let step = word & 0x3fff_ffff;
        *fb = if step == 0x3fff_ffff { u32::MAX } else { step };
    }
}

/// Where the time of the last GPU run went.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct GpuTiming {
    /// Host-to-device copies (inputs, parameters), seconds.
    pub upload_s: f64,
    /// Kernel time from timestamp queries (None when the adapter has none).
    pub kernel_s: Option<f64>,
    /// Wall time of the compute submissions, seconds.
    pub kernel_wall_s: f64,
    /// Device-to-host copies, seconds.
    pub download_s: f64,
    /// Number of chunks dispatched.
    pub chunks: usize,
}

/// The GPU engine: one pipeline, created once, reused for every batch.
pub struct GpuEngine {
    ctx: Arc<GpuContext>,
    pipeline: wgpu::ComputePipeline,
    last: Mutex<GpuTiming>,
    /// Buffers of the last run, reused while large enough (sweeps run many
    /// batches of one shape).
    buffers: Mutex<Option<DdkBuffers>>,
}

/// Byte sizes of the DDK buffers.
#[derive(Clone, Copy, Debug, PartialEq)]
struct BufferSizes {
    x: u64,
    params: u64,
    w0: u64,
    out: u64,
    status: u64,
    grad: u64,
}

impl BufferSizes {
    fn covers(&self, o: &BufferSizes) -> bool {
        self.x >= o.x
            && self.params >= o.params
            && self.w0 >= o.w0
            && self.out >= o.out
            && self.status >= o.status
            && self.grad >= o.grad
    }
}

/// The device buffers of the DDK kernel and their bind group.
struct DdkBuffers {
    sizes: BufferSizes,
    x: wgpu::Buffer,
    alpha: wgpu::Buffer,
    beta: wgpu::Buffer,
    w0: wgpu::Buffer,
    out: wgpu::Buffer,
    status: wgpu::Buffer,
    grad: wgpu::Buffer,
    out_stage: wgpu::Buffer,
    status_stage: wgpu::Buffer,
    grad_stage: Option<wgpu::Buffer>,
    uniform: wgpu::Buffer,
    bind: wgpu::BindGroup,
}

impl DdkBuffers {
    fn new(ctx: &GpuContext, pipeline: &wgpu::ComputePipeline, sizes: BufferSizes) -> Self {
        let dev = &ctx.device;
        let cp = wgpu::BufferUsages::COPY_DST;
        let src = wgpu::BufferUsages::COPY_SRC;
        let x = storage(dev, "ddk x", sizes.x, cp);
        let alpha = storage(dev, "ddk alpha", sizes.params, cp);
        let beta = storage(dev, "ddk beta", sizes.params, cp);
        let w0 = storage(dev, "ddk w0", sizes.w0, cp);
        let out = storage(dev, "ddk w_out", sizes.out, src);
        let status = storage(dev, "ddk status", sizes.status, src);
        let grad = storage(dev, "ddk grad", sizes.grad, src);
        let out_stage = staging(dev, "ddk w_out staging", sizes.out);
        let status_stage = staging(dev, "ddk status staging", sizes.status);
        let grad_stage = (sizes.grad > 0).then(|| staging(dev, "ddk grad staging", sizes.grad));
        let uniform = uniform(dev, "ddk uniform", &DdkUniform::default());
        let bind = bind_all(
            dev,
            pipeline,
            "ddk bind group",
            &[&uniform, &x, &alpha, &beta, &w0, &out, &status, &grad],
        );
        Self {
            sizes,
            x,
            alpha,
            beta,
            w0,
            out,
            status,
            grad,
            out_stage,
            status_stage,
            grad_stage,
            uniform,
            bind,
        }
    }
}

impl GpuEngine {
    /// Compiles the DDK pipeline on `ctx`.
    pub fn new(ctx: Arc<GpuContext>) -> Result<Self> {
        let pipeline = ctx.pipeline(&shaders::DDK)?;
        Ok(Self {
            ctx,
            pipeline,
            last: Mutex::new(GpuTiming::default()),
            buffers: Mutex::new(None),
        })
    }
    /// The shared context.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
    /// Timing of the last [`Engine::run`].
    pub fn last_timing(&self) -> GpuTiming {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
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

    fn run_into(&self, batch: &Batch, opts: &RunOptions, f: &mut Features) -> Result<()> {
        let ctx = &*self.ctx;
        let dev = &ctx.device;
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

        let sizes = BufferSizes {
            x: max_rows as u64 * t64 * 4,
            params: (max_sets * g * per_dev) as u64 * 4,
            w0: (max_sets * g) as u64 * 4,
            out: max_n as u64 * t64 * 4,
            status: max_n as u64 * 4,
            grad: if want_grad { max_n as u64 * t64 * 8 } else { 0 },
        };
        let mut cache = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        if !cache.as_ref().is_some_and(|b| b.sizes.covers(&sizes)) {
            *cache = None; // free the old buffers before allocating the new ones
            *cache = Some(DdkBuffers::new(ctx, &self.pipeline, sizes));
        }
        let bufs = cache.as_ref().expect("just created");
        let DdkBuffers {
            x: x_buf,
            alpha: a_buf,
            beta: b_buf,
            w0: w0_buf,
            out: out_buf,
            status: st_buf,
            grad: grad_buf,
            out_stage,
            status_stage: st_stage,
            grad_stage,
            uniform: uni_buf,
            bind,
            ..
        } = bufs;
        let grad_stage = grad_stage.as_ref().filter(|_| want_grad);
        let timer = ctx.has_timestamps().then(|| {
            let qs = dev.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("ddk timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let resolve = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("ddk timestamp resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (qs, resolve, staging(dev, "ddk timestamp staging", 16))
        });

        f.prepare(batch, want_grad);
        let mut timing = GpuTiming {
            chunks: chunks.len(),
            kernel_s: timer.as_ref().map(|_| 0.0),
            ..Default::default()
        };
        let mut status_words = vec![0u32; max_n];
        let mut x_uploaded: Option<Range<usize>> = None;
        for c in &chunks {
            let n = c.len();
            let t0 = Instant::now();
            if x_uploaded.as_ref() != Some(&c.seqs) {
                let xs = &batch.inputs()[c.seqs.start * t..c.seqs.end * t];
                ctx.write(x_buf, 0, bytemuck::cast_slice(xs));
                x_uploaded = Some(c.seqs.clone());
            }
            let dr = c.sets.start * g * per_dev..c.sets.end * g * per_dev;
            ctx.write(a_buf, 0, bytemuck::cast_slice(&alpha[dr.clone()]));
            ctx.write(b_buf, 0, bytemuck::cast_slice(&beta[dr]));
            ctx.write(
                w0_buf,
                0,
                bytemuck::cast_slice(&w0[c.sets.start * g..c.sets.end * g]),
            );
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
            ctx.write(uni_buf, 0, bytemuck::bytes_of(&uni));
            ctx.queue.submit([]);
            ctx.wait()?;
            let t1 = Instant::now();

            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("ddk compute"),
            });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("ddk pass"),
                    timestamp_writes: timer.as_ref().map(|(qs, _, _)| {
                        wgpu::ComputePassTimestampWrites {
                            query_set: qs,
                            beginning_of_pass_write_index: Some(0),
                            end_of_pass_write_index: Some(1),
                        }
                    }),
                });
                pass.set_pipeline(&self.pipeline);
                pass.set_bind_group(0, bind, &[]);
                pass.dispatch_workgroups(grid_x, grid_y, 1);
            }
            if let Some((qs, resolve, stage)) = &timer {
                enc.resolve_query_set(qs, 0..2, resolve, 0);
                enc.copy_buffer_to_buffer(resolve, 0, stage, 0, 16);
            }
            ctx.queue.submit([enc.finish()]);
            ctx.wait()?;
            let t2 = Instant::now();
            if let Some((_, _, stage)) = &timer {
                let mut ts = [0u64; 2];
                ctx.read_buffer(stage, 16, bytemuck::cast_slice_mut(&mut ts))?;
                let ns =
                    ts[1].saturating_sub(ts[0]) as f64 * ctx.queue.get_timestamp_period() as f64;
                *timing.kernel_s.get_or_insert(0.0) += ns * 1e-9;
            }

            let t3 = Instant::now();
            let out_bytes = n as u64 * t64 * 4;
            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("ddk read-back"),
            });
            enc.copy_buffer_to_buffer(out_buf, 0, out_stage, 0, out_bytes);
            enc.copy_buffer_to_buffer(st_buf, 0, st_stage, 0, n as u64 * 4);
            if let Some(gs) = grad_stage {
                enc.copy_buffer_to_buffer(grad_buf, 0, gs, 0, out_bytes * 2);
            }
            ctx.queue.submit([enc.finish()]);
            // The chunk's trajectories are contiguous in the outputs (see plan_chunks).
            let first = c.sets.start * s_all + c.seqs.start;
            ctx.read_buffer(
                out_stage,
                out_bytes,
                bytemuck::cast_slice_mut(&mut f.w[first * t..(first + n) * t]),
            )?;
            ctx.read_buffer(
                st_stage,
                n as u64 * 4,
                bytemuck::cast_slice_mut(&mut status_words[..n]),
            )?;
            if let (Some(gs), Some(gr)) = (grad_stage, f.grad.as_mut()) {
                ctx.read_buffer(
                    gs,
                    out_bytes * 2,
                    bytemuck::cast_slice_mut(&mut gr[first * t * 2..(first + n) * t * 2]),
                )?;
            }
            unpack_status(
                &status_words[..n],
                &mut f.status[first..first + n],
                &mut f.first_bad[first..first + n],
            );
            timing.upload_s += (t1 - t0).as_secs_f64();
            timing.kernel_wall_s += (t2 - t1).as_secs_f64();
            timing.download_s += t3.elapsed().as_secs_f64();
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = timing;
        Ok(())
    }
}
