//! A Monte Carlo draw's readout on the device (`shaders/mc_forward.wgsl`),
//! dispatched by [`GpuReducer::mc_forward`] after the DDK kernel of each tile:
//! what a batch of draws downloads instead of its features is two counts per
//! draw (correct samples, failed trajectories), plus one class per sample and
//! draw when asked (majority votes over groups need them).
//!
//! Per (draw, sample) the kernel does on the device what the host does to a
//! draw's features (`study::montecarlo::nonideal::HostSteps`): stuck devices
//! pinned back to `stuck_w` when cycle noise moved them, read noise from the
//! Philox counter `[draw, sequence, READ_NOISE, step / 2]` (component `step %
//! 2` of the Box-Muller pair of the f32 uniforms of words 0 and 1), a sample
//! with a failed trajectory counted wrong; then the readout's whole inference:
//! the standardiser (f32 `(x - mean) * scale`), each dense layer (bias, then
//! `+= x_j W_jk` in `j` order), BatchNorm in inference form (`gamma (z -
//! mean) / sqrt(var + eps) + beta`, as `readout::Network` evaluates it), the
//! hidden activation (ReLU or sigmoid), and the argmax (first maximum; NaN
//! never wins). Every draw binds its own parameters ([`NetArrays::params`]:
//! the conductance noise perturbs each draw's weights). The CPU twin, with the
//! kernel's loop order, is `study::montecarlo::device::forward_twin`.

use super::GpuReducer;
use super::ddk::{bind_all, storage, uniform};
use super::moments::{MapParams, SideInputs};
use crate::engine::StepNoise;
use crate::{Error, Result};

/// Invocations per workgroup of `shaders/mc_forward.wgsl` (its `WG`).
pub const MC_FORWARD_WORKGROUP_SIZE: u32 = 64;
/// Most weights and biases per draw the kernel is trusted with. Measured on
/// lavapipe against the CPU twin (and an f64 reference) with 1,024 features:
/// exact up to 62,649 parameters (hidden width 61), wrong classes for some
/// samples from 63,676 (width 62) on; with 512 features exact up to 63,862,
/// wrong from 65,922. The cause is not found yet (an out-of-range read would
/// fit: the result changes with padding after the parameters), so readouts
/// beyond three quarters of 65,536 are scored on the host, and the manifest's
/// `readout_site` says so. The ignored test
/// `mc_gpu::diagnostic_wide_first_layers_against_the_twin` reproduces it.
pub const MAX_DEVICE_DENSE_PARAMS: usize = 49_152;

/// Widest hidden layer the kernel evaluates (its `MAX_W`: two private
/// vectors of this length per invocation).
pub const MAX_HIDDEN: usize = 256;
/// Most classes the kernel scores.
pub const MAX_MC_CLASSES: usize = 64;
/// The class recorded for a failed sample when predictions are downloaded.
pub const BAD_PREDICTION: u32 = u32::MAX;

const FLAG_STANDARDIZE: u32 = 1;
const FLAG_BATCH_NORM: u32 = 2;
const FLAG_SIGMOID: u32 = 4;
const FLAG_PREDICTIONS: u32 = 8;
const FLAG_PIN_STUCK: u32 = 16;

/// Uniform block of `shaders/mc_forward.wgsl`. Keep in sync with
/// `McForwardUniform` there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct McForwardUniform {
    /// Features per sample.
    pub f: u32,
    /// Classes.
    pub c: u32,
    /// Samples in the tile.
    pub rows: u32,
    /// Trajectories per draw in the tile.
    pub seqs: u32,
    /// T.
    pub steps: u32,
    /// Draws in the run.
    pub sets: u32,
    /// Workgroups along x.
    pub grid_x: u32,
    /// Dense layers.
    pub layers: u32,
    /// Network parameters per draw.
    pub n_params: u32,
    /// Sequences per sample.
    pub spp: u32,
    /// Devices per draw.
    pub groups: u32,
    /// Global index of the tile's first sample.
    pub row_offset: u32,
    /// Samples of the whole side.
    pub n_samples: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Read noise standard deviation (0: off).
    pub read_sigma: f32,
    /// What a stuck device reads.
    pub stuck_w: f32,
    /// Philox key, low word.
    pub key0: u32,
    /// Philox key, high word.
    pub key1: u32,
    /// Global index of the run's first draw.
    pub draw_offset: u32,
    /// Hidden units of all layers.
    pub units: u32,
}

/// The readouts of a run of draws in the kernel's layout: a dense network
/// (a linear readout is one layer) with one parameter vector per draw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetArrays {
    /// Widths, inputs first, classes last (at least 2 entries).
    pub sizes: Vec<usize>,
    /// Hidden activation: sigmoid (else ReLU).
    pub sigmoid: bool,
    /// `[draws, n_params]`: per draw, per layer the `[n_in, n_out]` row-major
    /// weights then the `n_out` biases; with BatchNorm, each hidden layer's
    /// gamma then beta after the last layer (`readout::Network::params`).
    pub params: Vec<f32>,
    /// The standardiser's `(mean, scale)` per feature, shared by the draws.
    pub standardizer: Option<(Vec<f32>, Vec<f32>)>,
    /// BatchNorm's running mean and `1 / sqrt(var + eps)` per hidden unit
    /// (layers concatenated), shared by the draws.
    pub batch_norm: Option<(Vec<f32>, Vec<f32>)>,
}

impl NetArrays {
    /// Dense layers.
    pub fn layers(&self) -> usize {
        self.sizes.len().saturating_sub(1)
    }

    /// Hidden units of all layers.
    pub fn units(&self) -> usize {
        self.sizes[1..self.sizes.len() - 1].iter().sum()
    }

    /// Parameters per draw.
    pub fn n_params(&self) -> usize {
        let dense: usize = self.sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
        dense
            + if self.batch_norm.is_some() {
                2 * self.units()
            } else {
                0
            }
    }

    /// Draws held.
    pub fn draws(&self) -> usize {
        self.params.len() / self.n_params().max(1)
    }

    /// Why the kernel cannot evaluate readouts of these widths (`None`: it can).
    pub fn unsupported(sizes: &[usize]) -> Option<String> {
        let hidden = &sizes[1..sizes.len().saturating_sub(1).max(1)];
        if let Some(&h) = hidden.iter().find(|&&h| h > MAX_HIDDEN) {
            return Some(format!("hidden width {h} > {MAX_HIDDEN}"));
        }
        let c = *sizes.last().unwrap_or(&0);
        if !(2..=MAX_MC_CLASSES).contains(&c) {
            return Some(format!("{c} classes (2 to {MAX_MC_CLASSES})"));
        }
        None
    }

    /// Why the Monte Carlo evaluator keeps readouts of these widths on the
    /// host although the kernel runs them: more than
    /// [`MAX_DEVICE_DENSE_PARAMS`] weights and biases per draw (`None`: the
    /// device path is trusted).
    pub fn untrusted(sizes: &[usize]) -> Option<String> {
        let dense: usize = sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
        (dense > MAX_DEVICE_DENSE_PARAMS).then(|| {
            format!(
                "{dense} dense parameters per draw > {MAX_DEVICE_DENSE_PARAMS} (the kernel's classes measured wrong on lavapipe from 63,676)"
            )
        })
    }

    /// Checks the shapes against `draws` draws of `f` features.
    pub fn check(&self, draws: usize, f: usize) -> Result<()> {
        let bad = |got: String, want: String| Err(Error::invalid("readout arrays", got, want));
        if self.sizes.len() < 2 || self.sizes[0] != f || self.sizes.contains(&0) {
            return bad(
                format!("widths {:?}", self.sizes),
                format!("{f} inputs, then at least one layer"),
            );
        }
        if let Some(why) = Self::unsupported(&self.sizes) {
            return bad(
                why,
                format!(
                    "hidden widths up to {MAX_HIDDEN}, 2 to {MAX_MC_CLASSES} classes, at most {MAX_DEVICE_DENSE_PARAMS} dense parameters"
                ),
            );
        }
        let np = self.n_params();
        let units = self.units();
        let std_ok = self
            .standardizer
            .as_ref()
            .is_none_or(|(m, s)| m.len() == f && s.len() == f);
        let bn_ok = self
            .batch_norm
            .as_ref()
            .is_none_or(|(m, s)| m.len() == units && s.len() == units);
        if self.params.len() != draws * np || !std_ok || !bn_ok {
            return bad(
                format!("{} parameters", self.params.len()),
                format!(
                    "{draws} draws x {np} parameters, {f}-feature standardiser, {units}-unit BatchNorm"
                ),
            );
        }
        Ok(())
    }

    fn flags(&self) -> u32 {
        let mut f = 0;
        if self.standardizer.is_some() {
            f |= FLAG_STANDARDIZE;
        }
        if self.batch_norm.is_some() {
            f |= FLAG_BATCH_NORM;
        }
        if self.sigmoid {
            f |= FLAG_SIGMOID;
        }
        f
    }

    /// The shared `f32` array the kernel binds: standardiser mean and scale,
    /// BatchNorm mean and inverse deviation (absent parts are zeros).
    fn aux(&self, f: usize) -> Vec<f32> {
        let units = self.units();
        let mut aux = vec![0.0f32; 2 * f + 2 * units];
        if let Some((m, s)) = &self.standardizer {
            aux[..f].copy_from_slice(m);
            aux[f..2 * f].copy_from_slice(s);
        }
        if let Some((m, s)) = &self.batch_norm {
            aux[2 * f..2 * f + units].copy_from_slice(m);
            aux[2 * f + units..].copy_from_slice(s);
        }
        aux
    }
}

/// What happens to a run's features on the device before its readouts (see
/// the module docs), and what comes back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DrawSteps {
    /// Devices per draw (sequence `s` uses device `s % groups`).
    pub groups: usize,
    /// `[draws, groups]`: which devices are stuck.
    pub stuck: Vec<bool>,
    /// What a stuck device reads.
    pub stuck_w: f32,
    /// The kinetics' cycle-to-cycle noise (it also turns the pinning of
    /// stuck devices on).
    pub cycle_noise: Option<StepNoise>,
    /// Read noise standard deviation (0: off).
    pub read_sigma: f32,
    /// Philox seed of the draws' stream (the read noise's key).
    pub seed: u64,
    /// Global index of the run's first draw.
    pub draw_offset: u32,
    /// Download one class per sample and draw.
    pub predictions: bool,
}

/// What [`GpuReducer::mc_forward`] brings back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DrawCounts {
    /// Correct samples per draw (failed samples count wrong).
    pub correct: Vec<u64>,
    /// Failed trajectories per draw (pinned stuck devices do not fail).
    pub failed: Vec<u64>,
    /// `[draws, samples]` classes ([`BAD_PREDICTION`] for a failed sample),
    /// when asked.
    pub predictions: Option<Vec<u32>>,
}

impl GpuReducer {
    /// Runs the DDK kernel of `params` (`draws * steps.groups` devices) over
    /// `side` tile by tile and scores every draw's readout (`net`, one
    /// parameter vector per draw) on the device: only [`DrawCounts`] comes
    /// back.
    pub fn mc_forward(
        &self,
        side: &SideInputs,
        params: &MapParams,
        net: &NetArrays,
        steps: &DrawSteps,
    ) -> Result<DrawCounts> {
        side.check()?;
        let g = steps.groups.max(1);
        let draws = params.sets() / g;
        if draws == 0 || params.sets() != draws * g || steps.stuck.len() != draws * g {
            return Err(Error::invalid(
                "draw devices",
                format!(
                    "{} devices, {} stuck flags",
                    params.sets(),
                    steps.stuck.len()
                ),
                format!("a multiple of {g} devices per draw, one flag each"),
            ));
        }
        let f = side.f();
        net.check(draws, f)?;
        let n = side.samples();
        let dev = &self.context().device;
        let tile = self.tile_with(side, params, g, steps.cycle_noise)?;
        let cp = wgpu::BufferUsages::COPY_DST;
        let up = |label: &str, v: &[u8]| {
            let b = storage(dev, label, v.len() as u64, cp);
            self.context().write(&b, 0, v);
            b
        };
        let net_buf = up("mc forward net", bytemuck::cast_slice(&net.params));
        let aux = up("mc forward aux", bytemuck::cast_slice(&net.aux(f)));
        let mut shape: Vec<u32> = net.sizes.iter().map(|&s| s as u32).collect();
        shape.extend(steps.stuck.iter().map(|&s| s as u32));
        let shape = up("mc forward shape", bytemuck::cast_slice(&shape));
        let out_len = 2 * draws + if steps.predictions { draws * n } else { 0 };
        let out = storage(
            dev,
            "mc forward counts",
            (out_len * 4) as u64,
            wgpu::BufferUsages::COPY_SRC,
        );
        let uni = uniform(dev, "mc forward uniform", &McForwardUniform::default());
        let bind = bind_all(
            dev,
            &self.mc_forward,
            "mc forward bind group",
            &[
                &uni,
                &tile.w,
                &tile.status,
                &tile.labels,
                &net_buf,
                &aux,
                &shape,
                &out,
            ],
        );
        let mut flags = net.flags();
        if steps.predictions {
            flags |= FLAG_PREDICTIONS;
        }
        if steps.cycle_noise.is_some_and(|c| c.sigma > 0.0) {
            flags |= FLAG_PIN_STUCK;
        }
        let mut row_offset = 0;
        self.for_each_tile(side, params, &tile, |enc, _, rows| {
            let (gx, gy) = self
                .context()
                .grid(draws * rows, MC_FORWARD_WORKGROUP_SIZE)?;
            let u = McForwardUniform {
                f: f as u32,
                c: *net.sizes.last().unwrap_or(&0) as u32,
                rows: rows as u32,
                seqs: (rows * side.spp) as u32,
                steps: side.steps as u32,
                sets: draws as u32,
                grid_x: gx,
                layers: net.layers() as u32,
                n_params: net.n_params() as u32,
                spp: side.spp as u32,
                groups: g as u32,
                row_offset: row_offset as u32,
                n_samples: n as u32,
                flags,
                read_sigma: steps.read_sigma,
                stuck_w: steps.stuck_w,
                key0: steps.seed as u32,
                key1: (steps.seed >> 32) as u32,
                draw_offset: steps.draw_offset,
                units: net.units() as u32,
            };
            row_offset += rows;
            // Written through the queue: ordered before this tile's submission.
            self.context().write(&uni, 0, bytemuck::bytes_of(&u));
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("mc forward pass"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.mc_forward);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
            Ok(())
        })?;
        let words: Vec<u32> = self.download(&out, out_len)?;
        Ok(DrawCounts {
            correct: words[..draws].iter().map(|&c| c as u64).collect(),
            failed: words[draws..2 * draws].iter().map(|&c| c as u64).collect(),
            predictions: steps.predictions.then(|| words[2 * draws..].to_vec()),
        })
    }
}
