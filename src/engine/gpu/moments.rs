//! [`GpuReducer`]: study reductions fused after the DDK kernel, so that no
//! `[P, S, T]` feature array of a whole side is written or downloaded.
//!
//! A side is processed in tiles of samples. Per tile: its inputs are uploaded,
//! the DDK kernel (`shaders/ddk.wgsl`, unchanged) writes the tile's states for
//! every parameter set into a device scratch buffer, `shaders/count_bad.wgsl`
//! counts the failed trajectories per set, and then either
//!
//! - `shaders/moments.wgsl` adds the tile's ridge moments (`A^T A` of
//!   `[x - shift, onehot(y)]`, exact products in compensated f32 pairs) into device-resident
//!   accumulators ([`GpuReducer::moments`]), or
//! - `shaders/forward.wgsl` scores the tile with each set's linear readout and
//!   adds its correct predictions to a per-set count ([`GpuReducer::forward`]).
//!
//! Only the reductions come back: per set `2 g^2` f32 moments (`g = F + C`),
//! `F` shifts and a count, or two counts. The shift of each set is its first
//! sample's features, copied on the device from the first tile.

use super::context::GpuContext;
use super::ddk::{DdkUniform, bind_all, staging, storage, uniform};
use super::forward::{
    COUNT_WORKGROUP_SIZE, CountUniform, FORWARD_WORKGROUP_SIZE, ForwardUniform, ReadoutArrays,
};
use super::shaders;
use crate::{Error, Result};
use std::sync::Arc;

/// Invocations per workgroup of `shaders/moments.wgsl` (its `WG`): a 16 x 16
/// block of `A^T A`.
pub const MOMENTS_WORKGROUP_SIZE: u32 = 256;

/// Rows and columns of a block of `A^T A` owned by one workgroup.
const BLOCK: usize = 16;

/// Largest scratch tile of states (bytes), all sets together.
const TILE_BYTES: u64 = 64 << 20;

/// Uniform block of `shaders/moments.wgsl`. Keep in sync with `MomentsUniform` there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MomentsUniform {
    /// Features per sample.
    pub f: u32,
    /// Classes.
    pub c: u32,
    /// `f + c`.
    pub g: u32,
    /// Samples in the tile.
    pub rows: u32,
    /// Trajectories per set in the tile.
    pub seqs: u32,
    /// T.
    pub steps: u32,
    /// Parameter sets in the tile.
    pub sets: u32,
    /// `ceil(g / 16)`.
    pub blocks: u32,
    /// Workgroups along x.
    pub grid_x: u32,
    /// 1.0, read at run time so the compiler cannot simplify the two-sum.
    pub one: f32,
    /// Padding to 16 bytes.
    pub pad: [u32; 2],
}

/// A side's inputs as the reductions read them: `samples * spp` sequences of
/// `steps` values, one label per sample.
#[derive(Clone, Copy, Debug)]
pub struct SideInputs<'a> {
    /// `[samples * spp, steps]`, row-major.
    pub x: &'a [f32],
    /// Sequences per sample.
    pub spp: usize,
    /// T.
    pub steps: usize,
    /// One label per sample.
    pub y: &'a [u32],
}

impl SideInputs<'_> {
    pub(super) fn samples(&self) -> usize {
        self.y.len()
    }
    pub(super) fn f(&self) -> usize {
        self.spp * self.steps
    }
    pub(super) fn check(&self) -> Result<()> {
        if self.x.len() != self.samples() * self.f() || self.samples() == 0 {
            return Err(Error::invalid(
                "side inputs",
                format!("{} values for {} samples", self.x.len(), self.samples()),
                format!(
                    "at least one sample of {} x {} values",
                    self.spp, self.steps
                ),
            ));
        }
        Ok(())
    }
}

/// Scalar DDK parameters, one entry per set (per device of each draw for
/// [`GpuReducer::mc_forward`]: `sets * groups` entries).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MapParams {
    /// alpha per set.
    pub alpha: Vec<f32>,
    /// beta per set.
    pub beta: Vec<f32>,
    /// w0 per set.
    pub w0: Vec<f32>,
}

impl MapParams {
    /// The scalar parameters of `p` (one device per entry, no per-step
    /// values), rounded to f32 as the kernels take them.
    pub fn of(p: &crate::batch::DeviceParams) -> Self {
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect();
        MapParams {
            alpha: f32s(p.alpha()),
            beta: f32s(p.beta()),
            w0: f32s(p.w0()),
        }
    }

    /// Number of sets.
    pub fn sets(&self) -> usize {
        self.alpha.len()
    }
}

/// What [`GpuReducer::moments`] brings back.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceMoments {
    /// Features, classes.
    pub f: usize,
    /// Classes.
    pub c: usize,
    /// `[sets, f]`: each set's shift (its first sample's features).
    pub shift: Vec<f32>,
    /// `[sets, g, g]` (`g = f + c`), lower triangle: `A^T A`, hi + lo in f64.
    pub augmented: Vec<f64>,
    /// Failed trajectories per set.
    pub bad: Vec<u64>,
}

/// What [`GpuReducer::forward`] brings back.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceCounts {
    /// Correct predictions per set.
    pub correct: Vec<u64>,
    /// Failed trajectories per set.
    pub bad: Vec<u64>,
}

/// The fused kinetics + reduction kernels on one context.
pub struct GpuReducer {
    ctx: Arc<GpuContext>,
    ddk: wgpu::ComputePipeline,
    count: wgpu::ComputePipeline,
    moments: wgpu::ComputePipeline,
    forward: wgpu::ComputePipeline,
    /// `shaders/mc_forward.wgsl` (see [`super::mc_forward`]).
    pub(super) mc_forward: wgpu::ComputePipeline,
    tile_samples: Option<usize>,
}

/// The buffers of one pass over a side.
pub(super) struct Tile {
    pub(super) rows: usize,
    /// Parameter sets (draws).
    pub(super) sets: usize,
    /// Devices per set (sequence `s` uses device `s % groups`).
    groups: usize,
    /// Cycle-to-cycle noise of the kinetics (`StepNoise`), if any.
    noise: Option<crate::engine::StepNoise>,
    x: wgpu::Buffer,
    pub(super) labels: wgpu::Buffer,
    pub(super) w: wgpu::Buffer,
    pub(super) status: wgpu::Buffer,
    bad: wgpu::Buffer,
    ddk_uni: wgpu::Buffer,
    count_uni: wgpu::Buffer,
    ddk_bind: wgpu::BindGroup,
    count_bind: wgpu::BindGroup,
}

impl GpuReducer {
    /// Compiles the four pipelines on `ctx`.
    pub fn new(ctx: Arc<GpuContext>) -> Result<Self> {
        Ok(Self {
            mc_forward: ctx.pipeline(&shaders::MC_FORWARD)?,
            ddk: ctx.pipeline(&shaders::DDK)?,
            count: ctx.pipeline(&shaders::COUNT_BAD)?,
            moments: ctx.pipeline(&shaders::MOMENTS)?,
            forward: ctx.pipeline(&shaders::FORWARD)?,
            ctx,
            tile_samples: None,
        })
    }

    /// At most `n` samples per tile (tests force tiny tiles so the
    /// multi-tile path runs).
    pub fn with_tile_samples(mut self, n: usize) -> Self {
        self.tile_samples = Some(n.max(1));
        self
    }

    /// The shared context (its byte counters count every transfer here).
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Samples per tile for `sets` sets of `side`.
    fn tile_rows(&self, side: &SideInputs, sets: usize) -> usize {
        let l = self.ctx.limits();
        let bind = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
        let per_sample = (sets * side.f() * 4) as u64;
        let rows = (TILE_BYTES.min(bind) / per_sample.max(1)).max(1) as usize;
        rows.min(self.tile_samples.unwrap_or(usize::MAX))
            .min(side.samples())
    }

    fn tile(&self, side: &SideInputs, params: &MapParams) -> Result<Tile> {
        self.tile_with(side, params, 1, None)
    }

    /// [`Self::tile`] with `groups` devices per set (`params` holds
    /// `sets * groups` entries) and the kinetics' cycle noise.
    pub(super) fn tile_with(
        &self,
        side: &SideInputs,
        params: &MapParams,
        groups: usize,
        noise: Option<crate::engine::StepNoise>,
    ) -> Result<Tile> {
        let dev = &self.ctx.device;
        let groups = groups.max(1);
        let sets = params.sets() / groups;
        let rows = self.tile_rows(side, sets);
        let (t, spp) = (side.steps as u64, side.spp as u64);
        let traj = sets as u64 * rows as u64 * spp;
        let cp = wgpu::BufferUsages::COPY_DST;
        let src = wgpu::BufferUsages::COPY_SRC;
        let x = storage(dev, "reducer x", rows as u64 * spp * t * 4, cp);
        let labels = storage(dev, "reducer labels", rows as u64 * 4, cp);
        let n_dev = (sets * groups) as u64;
        let alpha = storage(dev, "reducer alpha", n_dev * 4, cp);
        let beta = storage(dev, "reducer beta", n_dev * 4, cp);
        let w0 = storage(dev, "reducer w0", n_dev * 4, cp);
        let w = storage(dev, "reducer states", traj * t * 4, src);
        let status = storage(dev, "reducer status", traj * 4, src);
        let grad = storage(dev, "reducer grad (unused)", 16, src);
        let bad = storage(dev, "reducer bad", sets as u64 * 4, src);
        self.ctx
            .write(&alpha, 0, bytemuck::cast_slice(&params.alpha));
        self.ctx.write(&beta, 0, bytemuck::cast_slice(&params.beta));
        self.ctx.write(&w0, 0, bytemuck::cast_slice(&params.w0));
        let ddk_uni = uniform(dev, "reducer ddk uniform", &DdkUniform::default());
        let count_uni = uniform(dev, "reducer count uniform", &CountUniform::default());
        let ddk_bind = bind_all(
            dev,
            &self.ddk,
            "reducer ddk bind group",
            &[&ddk_uni, &x, &alpha, &beta, &w0, &w, &status, &grad],
        );
        let count_bind = bind_all(
            dev,
            &self.count,
            "reducer count bind group",
            &[&count_uni, &status, &bad],
        );
        Ok(Tile {
            rows,
            sets,
            groups,
            noise,
            x,
            labels,
            w,
            status,
            bad,
            ddk_uni,
            count_uni,
            ddk_bind,
            count_bind,
        })
    }

    /// Runs every tile of `side`: uploads it, integrates it, counts its failed
    /// trajectories, then `reduce(encoder, tile index, rows)` records the
    /// reduction; one submission per tile.
    pub(super) fn for_each_tile(
        &self,
        side: &SideInputs,
        _params: &MapParams,
        tile: &Tile,
        mut reduce: impl FnMut(&mut wgpu::CommandEncoder, usize, usize) -> Result<()>,
    ) -> Result<()> {
        let ctx = &*self.ctx;
        let sets = tile.sets;
        let (t, spp, f) = (side.steps, side.spp, side.f());
        for (ti, r0) in (0..side.samples()).step_by(tile.rows).enumerate() {
            let rows = tile.rows.min(side.samples() - r0);
            let seqs = rows * spp;
            let n_traj = sets * seqs;
            ctx.write(
                &tile.x,
                0,
                bytemuck::cast_slice(&side.x[r0 * f..(r0 + rows) * f]),
            );
            ctx.write(
                &tile.labels,
                0,
                bytemuck::cast_slice(&side.y[r0..r0 + rows]),
            );
            let (gx, gy) = ctx.grid(n_traj, super::ddk::DDK_WORKGROUP_SIZE)?;
            let ddk = DdkUniform {
                n_traj: n_traj as u32,
                seqs: seqs as u32,
                steps: t as u32,
                groups: tile.groups as u32,
                seq_offset: (r0 * spp) as u32,
                grid_x: gx,
                noise_sigma: tile.noise.map_or(0.0, |n| n.sigma as f32),
                key0: tile.noise.map_or(0, |n| n.seed as u32),
                key1: tile.noise.map_or(0, |n| (n.seed >> 32) as u32),
                set_offset: tile.noise.map_or(0, |n| n.set_offset) as u32,
                ..Default::default()
            };
            ctx.write(&tile.ddk_uni, 0, bytemuck::bytes_of(&ddk));
            let (cx, cy) = ctx.grid(n_traj, COUNT_WORKGROUP_SIZE)?;
            let count = CountUniform {
                n_traj: n_traj as u32,
                seqs: seqs as u32,
                grid_x: cx,
                pad: 0,
            };
            ctx.write(&tile.count_uni, 0, bytemuck::bytes_of(&count));
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("reducer tile"),
                });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("reducer ddk + count"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&self.ddk);
                pass.set_bind_group(0, &tile.ddk_bind, &[]);
                pass.dispatch_workgroups(gx, gy, 1);
                pass.set_pipeline(&self.count);
                pass.set_bind_group(0, &tile.count_bind, &[]);
                pass.dispatch_workgroups(cx, cy, 1);
            }
            reduce(&mut enc, ti, rows)?;
            ctx.queue.submit([enc.finish()]);
            ctx.wait()?;
        }
        Ok(())
    }

    /// Reads `len` values of `buf` (a COPY_SRC buffer) back to the host.
    pub(super) fn download<T: bytemuck::Pod + Default + Clone>(
        &self,
        buf: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        let stage = staging(&self.ctx.device, "reducer read-back", bytes);
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("reducer read-back"),
            });
        enc.copy_buffer_to_buffer(buf, 0, &stage, 0, bytes.next_multiple_of(4));
        self.ctx.queue.submit([enc.finish()]);
        let mut out = vec![T::default(); len];
        self.ctx
            .read_buffer(&stage, bytes, bytemuck::cast_slice_mut(&mut out))?;
        Ok(out)
    }

    /// The ridge moments of every set over the whole of `side` (`c` classes),
    /// with each set's failed-trajectory count.
    pub fn moments(
        &self,
        side: &SideInputs,
        params: &MapParams,
        c: usize,
    ) -> Result<DeviceMoments> {
        side.check()?;
        let sets = params.sets();
        let f = side.f();
        let g = f + c;
        let dev = &self.ctx.device;
        let tile = self.tile(side, params)?;
        let src = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let shift = storage(dev, "moments shift", (sets * f * 4) as u64, src);
        let acc_bytes = (sets * g * g * 4) as u64;
        let hi = storage(dev, "moments hi", acc_bytes, src);
        let lo = storage(dev, "moments lo", acc_bytes, src);
        let uni = uniform(dev, "moments uniform", &MomentsUniform::default());
        let bind = bind_all(
            dev,
            &self.moments,
            "moments bind group",
            &[&uni, &tile.w, &tile.labels, &shift, &hi, &lo],
        );
        let blocks = g.div_ceil(BLOCK);
        let (gx, gy) = self.ctx.grid(
            sets * blocks * blocks * MOMENTS_WORKGROUP_SIZE as usize,
            MOMENTS_WORKGROUP_SIZE,
        )?;
        self.for_each_tile(side, params, &tile, |enc, ti, rows| {
            let seqs = rows * side.spp;
            if ti == 0 {
                // Each set's shift: its first sample's states, copied on the device.
                for p in 0..sets {
                    let from = (p * seqs * side.steps * 4) as u64;
                    enc.copy_buffer_to_buffer(
                        &tile.w,
                        from,
                        &shift,
                        (p * f * 4) as u64,
                        (f * 4) as u64,
                    );
                }
            }
            let u = MomentsUniform {
                f: f as u32,
                c: c as u32,
                g: g as u32,
                rows: rows as u32,
                seqs: seqs as u32,
                steps: side.steps as u32,
                sets: sets as u32,
                blocks: blocks as u32,
                grid_x: gx,
                one: 1.0,
                pad: [0; 2],
            };
            // Written through the queue: ordered before this tile's submission.
            self.ctx.write(&uni, 0, bytemuck::bytes_of(&u));
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("moments pass"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.moments);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
            Ok(())
        })?;
        let hi: Vec<f32> = self.download(&hi, sets * g * g)?;
        let lo: Vec<f32> = self.download(&lo, sets * g * g)?;
        let shift: Vec<f32> = self.download(&shift, sets * f)?;
        let bad: Vec<u32> = self.download(&tile.bad, sets)?;
        Ok(DeviceMoments {
            f,
            c,
            shift,
            augmented: hi
                .iter()
                .zip(&lo)
                .map(|(&h, &l)| h as f64 + l as f64)
                .collect(),
            bad: bad.into_iter().map(u64::from).collect(),
        })
    }

    /// Correct predictions of each set's readout over the whole of `side`,
    /// with each set's failed-trajectory count.
    pub fn forward(
        &self,
        side: &SideInputs,
        params: &MapParams,
        readouts: &ReadoutArrays,
    ) -> Result<DeviceCounts> {
        side.check()?;
        let sets = params.sets();
        readouts.check(sets)?;
        if readouts.f != side.f() {
            return Err(Error::invalid(
                "readout arrays",
                format!("{} features", readouts.f),
                format!("{} features, as the side", side.f()),
            ));
        }
        let (f, c) = (readouts.f, readouts.c);
        let dev = &self.ctx.device;
        let tile = self.tile(side, params)?;
        let cp = wgpu::BufferUsages::COPY_DST;
        let up = |label: &str, v: &[f32]| {
            let b = storage(dev, label, (v.len() * 4) as u64, cp);
            self.ctx.write(&b, 0, bytemuck::cast_slice(v));
            b
        };
        let mean = up("forward mean", &readouts.mean);
        let scale = up("forward scale", &readouts.scale);
        let weights = up("forward weights", &readouts.weights);
        let bias = up("forward bias", &readouts.bias);
        let correct = storage(
            dev,
            "forward correct",
            (sets * 4) as u64,
            wgpu::BufferUsages::COPY_SRC,
        );
        let uni = uniform(dev, "forward uniform", &ForwardUniform::default());
        let bind = bind_all(
            dev,
            &self.forward,
            "forward bind group",
            &[
                &uni,
                &tile.w,
                &tile.labels,
                &mean,
                &scale,
                &weights,
                &bias,
                &correct,
            ],
        );
        self.for_each_tile(side, params, &tile, |enc, _, rows| {
            let (gx, gy) = self.ctx.grid(sets * rows, FORWARD_WORKGROUP_SIZE)?;
            let u = ForwardUniform {
                f: f as u32,
                c: c as u32,
                rows: rows as u32,
                seqs: (rows * side.spp) as u32,
                steps: side.steps as u32,
                sets: sets as u32,
                grid_x: gx,
                pad: 0,
            };
            self.ctx.write(&uni, 0, bytemuck::bytes_of(&u));
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward pass"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.forward);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
            Ok(())
        })?;
        let correct: Vec<u32> = self.download(&correct, sets)?;
        let bad: Vec<u32> = self.download(&tile.bad, sets)?;
        Ok(DeviceCounts {
            correct: correct.into_iter().map(u64::from).collect(),
            bad: bad.into_iter().map(u64::from).collect(),
        })
    }
}
