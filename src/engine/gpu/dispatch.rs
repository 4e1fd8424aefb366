//! The one chunked dispatcher behind every GPU kernel (the DDK map, the
//! continuous-time models and the reverse DDK kernel): two buffer sets ("slots"), so that chunk
//! i+1's uploads are queued and chunk i-1's outputs copied out while chunk i
//! computes; one submit and one wait per chunk; every output of a chunk (and
//! its two timestamps) copied into one staging buffer and mapped in one poll;
//! the copy-out into the caller's arrays on all cores.
//!
//! The order of a run, chunk i on slot i % 2:
//!
//! ```text
//! prepare(i)   queued writes into slot i % 2 (carried by the next submit)
//! submit(i)    compute pass, then a copy of every output into the slot's staging buffer
//! map(i)       requested at once; it completes when submission i does
//! finish(i-1)  wait for submission i-1 only (chunk i keeps the device busy),
//!              copy-out, unmap
//! ```
//!
//! A [`Role::Shared`] binding (the inputs of a sequence block) is one buffer
//! bound in both slots: a kernel rewrites it only when the block changes, so
//! inputs go up once per block, not once per parameter set or per slot. wgpu
//! orders a queued write after every earlier submission, so rewriting it
//! while an earlier chunk still reads it is safe; it costs an ordering point
//! at block boundaries only.

use super::context::{GpuContext, PendingRead};
use super::ddk::{bind_all, staging, storage, uniform};
use crate::Result;
use rayon::prelude::*;
use std::ops::Range;
use std::time::Instant;

/// Number of buffer sets: chunk i uses set i % SLOTS.
pub const SLOTS: usize = 2;

/// Bytes of the two resolved timestamps at the head of a staging buffer.
const TIMESTAMP_BYTES: u64 = 16;

/// What a storage binding holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// One buffer bound in every slot (a sequence block's inputs), rewritten
    /// by the kernel's driver only when its content changes.
    Shared,
    /// One buffer per slot, written before each chunk (parameters).
    Input,
    /// One buffer per slot, written by the kernel, copied back after each chunk.
    Output,
}

/// Storage binding `i + 1` of a kernel (binding 0 is its uniform block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Buffer label.
    pub label: &'static str,
    /// Size in bytes (the largest chunk's).
    pub bytes: u64,
    /// What it holds.
    pub role: Role,
}

/// What one run did: the counts a test checks and the host-side times.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct DispatchStats {
    /// Chunks dispatched.
    pub chunks: usize,
    /// Queue submissions (one per chunk).
    pub submits: usize,
    /// Waits on the device (one per chunk: its read-back).
    pub waits: usize,
    /// Host time spent queueing uploads, seconds.
    pub prepare_s: f64,
    /// Host time spent waiting for the device, seconds.
    pub wait_s: f64,
    /// Host time spent copying outputs out of the mapped staging buffers, seconds.
    pub copy_s: f64,
    /// Kernel time summed over the chunks, from timestamp queries (None without them).
    pub kernel_s: Option<f64>,
}

/// One buffer set.
pub struct Slot {
    /// Binding i + 1's buffer (a shared one is the same buffer in every slot).
    bufs: Vec<wgpu::Buffer>,
    uniform: wgpu::Buffer,
    bind: wgpu::BindGroup,
    stage: wgpu::Buffer,
    timer: Option<(wgpu::QuerySet, wgpu::Buffer)>,
}

impl Slot {
    /// The buffer of storage binding `binding` (1-based, as in the shader).
    pub fn buffer(&self, binding: usize) -> &wgpu::Buffer {
        &self.bufs[binding - 1]
    }
    /// The uniform block (binding 0).
    pub fn uniform(&self) -> &wgpu::Buffer {
        &self.uniform
    }
}

/// How to launch one chunk, returned by the driver's `prepare`.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Workgroup grid `(x, y)`.
    pub grid: (u32, u32),
    /// Bytes to copy back from each [`Role::Output`] binding, in binding order.
    pub out_bytes: Vec<u64>,
}

/// A finished chunk as the driver's `finish` sees it.
pub struct Finished<'a> {
    /// The bytes of each output binding, in binding order.
    pub outputs: Vec<&'a [u8]>,
}

/// The buffers of one kernel, both slots, reused across runs while large enough.
pub struct Dispatcher {
    layout: Vec<Binding>,
    slots: Vec<Slot>,
}

impl Dispatcher {
    /// Allocates both slots for `layout` (binding 0 is a uniform block
    /// initialised with `uniform_init`) on `pipeline`'s bind-group layout.
    pub fn new<U: bytemuck::Pod>(
        ctx: &GpuContext,
        pipeline: &wgpu::ComputePipeline,
        label: &str,
        layout: &[Binding],
        uniform_init: &U,
    ) -> Self {
        let dev = &ctx.device;
        let shared: Vec<Option<wgpu::Buffer>> = layout
            .iter()
            .map(|b| {
                (b.role == Role::Shared)
                    .then(|| storage(dev, b.label, b.bytes, wgpu::BufferUsages::COPY_DST))
            })
            .collect();
        let out_total: u64 = layout
            .iter()
            .filter(|b| b.role == Role::Output)
            .map(|b| b.bytes.next_multiple_of(4))
            .sum();
        let slots = (0..SLOTS)
            .map(|_| {
                let bufs: Vec<wgpu::Buffer> = layout
                    .iter()
                    .zip(&shared)
                    .map(|(b, sh)| match (b.role, sh) {
                        (_, Some(s)) => s.clone(),
                        (Role::Output, None) => {
                            storage(dev, b.label, b.bytes, wgpu::BufferUsages::COPY_SRC)
                        }
                        _ => storage(dev, b.label, b.bytes, wgpu::BufferUsages::COPY_DST),
                    })
                    .collect();
                let uniform = uniform(dev, label, uniform_init);
                let mut all: Vec<&wgpu::Buffer> = vec![&uniform];
                all.extend(bufs.iter());
                let bind = bind_all(dev, pipeline, label, &all);
                let timer = ctx.has_timestamps().then(|| {
                    let qs = dev.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some(label),
                        ty: wgpu::QueryType::Timestamp,
                        count: 2,
                    });
                    let resolve = dev.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(label),
                        size: TIMESTAMP_BYTES,
                        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                        mapped_at_creation: false,
                    });
                    (qs, resolve)
                });
                let stage = staging(dev, label, out_total + TIMESTAMP_BYTES);
                Slot {
                    bufs,
                    uniform,
                    bind,
                    stage,
                    timer,
                }
            })
            .collect();
        Self {
            layout: layout.to_vec(),
            slots,
        }
    }

    /// True when these buffers can serve `layout` (same bindings, each as large).
    pub fn fits(&self, layout: &[Binding]) -> bool {
        self.layout.len() == layout.len()
            && self
                .layout
                .iter()
                .zip(layout)
                .all(|(have, want)| have.role == want.role && have.bytes >= want.bytes)
    }

    /// Runs `n` chunks: `prepare(i, slot)` queues chunk i's writes into `slot`
    /// (through [`GpuContext::write`]) and says how to launch it; `finish(i,
    /// outputs)` copies chunk i's outputs out. Chunks are finished in order.
    pub fn run(
        &self,
        ctx: &GpuContext,
        pipeline: &wgpu::ComputePipeline,
        label: &str,
        n: usize,
        mut prepare: impl FnMut(usize, &Slot) -> Result<Launch>,
        mut finish: impl FnMut(usize, &Finished) -> Result<()>,
    ) -> Result<DispatchStats> {
        let mut stats = DispatchStats {
            chunks: n,
            kernel_s: ctx.has_timestamps().then_some(0.0),
            ..Default::default()
        };
        let mut pending: [Option<InFlight>; SLOTS] = [None, None];
        let result = (|| -> Result<()> {
            for i in 0..n {
                let s = i % SLOTS;
                let slot = &self.slots[s];
                let t0 = Instant::now();
                let launch = prepare(i, slot)?;
                stats.prepare_s += t0.elapsed().as_secs_f64();
                let (sub, ranges, len) = self.submit(ctx, pipeline, label, slot, &launch);
                stats.submits += 1;
                pending[s] = Some(InFlight {
                    chunk: i,
                    read: ctx.begin_read(&slot.stage, len, sub),
                    ranges,
                    timed: slot.timer.is_some(),
                });
                if i >= 1 {
                    let p = pending[(i - 1) % SLOTS]
                        .take()
                        .expect("chunk i-1 in flight");
                    finish_one(ctx, p, &mut finish, &mut stats)?;
                }
            }
            if n >= 1 {
                let p = pending[(n - 1) % SLOTS]
                    .take()
                    .expect("last chunk in flight");
                finish_one(ctx, p, &mut finish, &mut stats)?;
            }
            Ok(())
        })();
        if result.is_err() {
            for p in pending.iter_mut().filter_map(Option::take) {
                ctx.abandon_read(p.read);
            }
        }
        result.map(|_| stats)
    }

    /// Encodes and submits one chunk: the pass (timestamped when the adapter
    /// can), then every output into the staging buffer (timestamps first).
    fn submit(
        &self,
        ctx: &GpuContext,
        pipeline: &wgpu::ComputePipeline,
        label: &str,
        slot: &Slot,
        launch: &Launch,
    ) -> (wgpu::SubmissionIndex, Vec<Range<usize>>, u64) {
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: slot.timer.as_ref().map(|(qs, _)| {
                    wgpu::ComputePassTimestampWrites {
                        query_set: qs,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    }
                }),
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &slot.bind, &[]);
            pass.dispatch_workgroups(launch.grid.0, launch.grid.1, 1);
        }
        let mut off = 0u64;
        if let Some((qs, resolve)) = &slot.timer {
            enc.resolve_query_set(qs, 0..2, resolve, 0);
            enc.copy_buffer_to_buffer(resolve, 0, &slot.stage, 0, TIMESTAMP_BYTES);
            off = TIMESTAMP_BYTES;
        }
        let outputs = self
            .layout
            .iter()
            .enumerate()
            .filter(|(_, b)| b.role == Role::Output);
        let mut ranges = Vec::new();
        for ((i, _), &bytes) in outputs.zip(&launch.out_bytes) {
            if bytes > 0 {
                enc.copy_buffer_to_buffer(&slot.bufs[i], 0, &slot.stage, off, bytes);
            }
            ranges.push(off as usize..(off + bytes) as usize);
            off += bytes;
        }
        let sub = ctx.queue.submit([enc.finish()]);
        (sub, ranges, off.max(4))
    }
}

/// A chunk submitted and not yet copied out.
struct InFlight {
    chunk: usize,
    read: PendingRead,
    ranges: Vec<Range<usize>>,
    timed: bool,
}

fn finish_one(
    ctx: &GpuContext,
    p: InFlight,
    finish: &mut impl FnMut(usize, &Finished) -> Result<()>,
    stats: &mut DispatchStats,
) -> Result<()> {
    let t0 = Instant::now();
    let mut copy_s = 0.0;
    let period = ctx.queue.get_timestamp_period() as f64;
    let InFlight {
        chunk,
        read,
        ranges,
        timed,
    } = p;
    let kernel_s = ctx.finish_read(read, |bytes| {
        let t1 = Instant::now();
        let outputs = ranges.iter().map(|r| &bytes[r.clone()]).collect();
        finish(chunk, &Finished { outputs })?;
        copy_s = t1.elapsed().as_secs_f64();
        Ok(timed.then(|| {
            let t0: u64 = bytemuck::pod_read_unaligned(&bytes[0..8]);
            let t1: u64 = bytemuck::pod_read_unaligned(&bytes[8..16]);
            t1.saturating_sub(t0) as f64 * period * 1e-9
        }))
    })?;
    stats.waits += 1;
    stats.copy_s += copy_s;
    stats.wait_s += t0.elapsed().as_secs_f64() - copy_s;
    if let (Some(k), Some(total)) = (kernel_s, stats.kernel_s.as_mut()) {
        *total += k;
    }
    Ok(())
}

/// Copies `src` into `dst` (equal lengths) on all cores in 1 MiB pieces.
pub fn par_copy(dst: &mut [u8], src: &[u8]) {
    const PIECE: usize = 1 << 20;
    dst.par_chunks_mut(PIECE)
        .zip(src.par_chunks(PIECE))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// Decodes status words (little-endian `u32`s, `pack_status` in
/// shaders/common.wgsl: the code in the top 2 bits, the first bad step below,
/// all ones when ok) on all cores.
pub fn unpack_status_bytes(words: &[u8], status: &mut [u8], first_bad: &mut [u32]) {
    const PIECE: usize = 1 << 16;
    words
        .par_chunks(4 * PIECE)
        .zip(status.par_chunks_mut(PIECE))
        .zip(first_bad.par_chunks_mut(PIECE))
        .for_each(|((w, st), fb)| {
            for ((b, s), f) in w.chunks_exact(4).zip(st).zip(fb) {
                let word = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                *s = (word >> 30) as u8;
                let step = word & 0x3fff_ffff;
                *f = if step == 0x3fff_ffff { u32::MAX } else { step };
            }
        });
}
