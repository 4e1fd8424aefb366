//! Noise-aware training of the readout: training steps that see fresh device
//! draws and noisy conductances, from streams that never meet the test
//! draws'. Two ways in, one loop ([`noisy_epochs`]):
//!
//! - [`fine_tune`]: a readout trained at the nominal device continues
//!   ([`Trainer::resume`]) for `fine_tune_epochs` epochs;
//! - [`train_noise_aware`]: a fresh readout ([`Trainer::new`]) is trained
//!   from its initialisation for `noise_aware_epochs` epochs, every step
//!   under the noise.
//!
//! The training features come from the study's [`Engine`] (CPU or GPU):
//! every random number (devices, cycle noise, read noise, conductances) is a
//! Philox number addressed by its counter, so both backends see the same
//! draws ([`TrainingDraws`] lists them).

use super::nonideal::{
    DeviceDraw, DrawFeatures, HostSteps, Nonideal, draws_params, sample_devices,
};
use crate::batch::Batch;
use crate::engine::{Engine, RunOptions, StepNoise};
use crate::pipeline::Side;
use crate::readout::{EpochReport, Network, Rng, Standardizer, TrainConfig, Trained, Trainer};
use crate::rng::Stream;
use crate::{Error, Result};
use serde::Serialize;

/// Device draws per training epoch: the training samples are split into this
/// many random parts, each featurised under its own draw.
pub const FINE_TUNE_DRAWS_PER_EPOCH: usize = 16;

/// The key of the fine-tuning draws: another stream than the test draws'.
pub fn fine_tune_seed(seed: u64) -> u64 {
    seed ^ 0x4649_4E45_5455_4E45 // "FINETUNE"
}

/// The key of the noise-aware training draws: another stream than the test
/// draws' and the fine-tuning draws'.
pub fn noise_aware_seed(seed: u64) -> u64 {
    seed ^ 0x4E4F_4953_4541_5752 // "NOISEAWR"
}

/// The Philox counters a training run used, under one key: device, cycle
/// and read noise at draws `0..device_draws` (counters `[draw, .., ..,
/// ..]`), conductance noise at draws `0..conductance_draws` (one per
/// optimiser step). The test draws use the study seed as key and draws
/// `0..draws`; a training run is disjoint from them when its key differs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainingDraws {
    /// What trained: `fine-tuning` or `noise-aware training`.
    pub purpose: &'static str,
    /// The Philox key (a 64-bit seed).
    pub key: u64,
    /// Device draws used (featurisations), counters `0..device_draws`.
    pub device_draws: u32,
    /// Conductance draws used (optimiser steps), counters `0..conductance_draws`.
    pub conductance_draws: u32,
    /// Mean alpha over the training draws' devices (a fingerprint of the
    /// draws: equal on every backend).
    pub alpha_mean: f64,
    /// Mean beta over the training draws' devices.
    pub beta_mean: f64,
}

/// The nominal device and the non-idealities the training draws sample.
pub struct DrawSetup<'a> {
    /// The non-idealities (as the test draws have them).
    pub v: &'a Nonideal,
    /// Nominal alpha.
    pub alpha: f64,
    /// Nominal beta.
    pub beta: f64,
    /// Nominal initial state.
    pub w0: f64,
    /// Devices per draw.
    pub devices_per_draw: usize,
    /// The study seed (the training keys are derived from it).
    pub seed: u64,
    /// The engine that integrates the training draws (the study's backend).
    pub engine: &'a dyn Engine,
    /// Largest dispatch (tests force it small).
    pub chunk: Option<usize>,
    /// Program the conductances of the readout *folded* with its input
    /// scaling ([`crate::readout::fold_into_first_layer`]), as the draws
    /// score it (the `centred` scaling).
    pub folded: bool,
}

impl DrawSetup<'_> {
    /// The noisy features of the training samples `idx` under training draw
    /// `draw` of `stream`, and which samples failed.
    fn features(
        &self,
        stream: &Stream,
        key: u64,
        train: &Side,
        idx: &[usize],
        draw: u32,
    ) -> Result<(Vec<f32>, Vec<bool>, (f64, f64))> {
        let v = self.v;
        let d: DeviceDraw = sample_devices(
            stream,
            draw,
            self.devices_per_draw,
            self.alpha,
            self.beta,
            v,
        )?;
        let params = draws_params(std::slice::from_ref(&d), self.w0, v.stuck_w)?;
        let side = train.subset(idx);
        let e = &side.encoded;
        let noise = (v.cycle_noise > 0.0).then_some(StepNoise {
            sigma: v.cycle_noise,
            seed: key,
            set_offset: draw as u64,
        });
        let mut feats = self.engine.run(
            &Batch::new(&e.x, e.seqs, e.steps, &params)?,
            &RunOptions {
                noise,
                chunk: self.chunk,
                ..RunOptions::default()
            },
        )?;
        let host = HostSteps {
            v,
            stream,
            seqs_per_sample: e.seqs_per_sample,
            steps: e.steps,
        };
        let (bad, _) = host.apply(
            draw,
            &d,
            DrawFeatures {
                w: &mut feats.w,
                status: &feats.status,
            },
        );
        Ok((feats.w, bad, d.means()))
    }
}

/// Programs `net` into noisy conductances for `draw` as the chip holds it:
/// with `scaling`, the first layer's weights are folded with it (`W' = g W`),
/// programmed, and mapped back to the network's scaled input, the offsets'
/// share of the noise moved into the biases (`b += (W'_noisy - W') m`).
fn program(
    c: &super::Conductance,
    net: &mut Network,
    scaling: Option<&Standardizer>,
    stream: &Stream,
    draw: u32,
) {
    let Some(s) = scaling else {
        return c.program_network(net, stream, draw);
    };
    let (wo, bo, end) = net.layer_range(1);
    let n_out = end - bo;
    let g: Vec<f64> = s
        .std
        .iter()
        .map(|&v| if v > 0.0 { 1.0 / v } else { 0.0 })
        .collect();
    let clean: Vec<f64> = net.params[wo..bo]
        .iter()
        .enumerate()
        .map(|(k, &v)| v as f64 * g[k / n_out])
        .collect();
    let mut noisy = clean.clone();
    c.program(&mut noisy, stream, draw, wo);
    let mut shift = vec![0.0f64; n_out];
    for (k, (&a, &b)) in noisy.iter().zip(&clean).enumerate() {
        let i = k / n_out;
        shift[k % n_out] += (a - b) * s.mean[i];
        if g[i] > 0.0 {
            net.params[wo + k] = (a / g[i]) as f32;
        }
    }
    for (p, sh) in net.params[bo..end].iter_mut().zip(shift) {
        *p = (*p as f64 + sh) as f32;
    }
    for l in 2..=net.n_layers() {
        let (wo, bo, _) = net.layer_range(l);
        let mut w: Vec<f64> = net.params[wo..bo].iter().map(|&v| v as f64).collect();
        c.program(&mut w, stream, draw, wo);
        for (p, v) in net.params[wo..bo].iter_mut().zip(w) {
            *p = v as f32;
        }
    }
}

/// `epochs` epochs of `trainer` under the noise, the draws under `key`: each
/// epoch the training samples are split into [`FINE_TUNE_DRAWS_PER_EPOCH`]
/// random parts, each featurised under its own fresh device draw with every
/// enabled noise; each mini-batch's forward and backward pass runs on freshly
/// programmed noisy conductances, and the resulting update is applied to the
/// clean weights (noise injection with a straight-through update).
pub fn noisy_epochs(
    trainer: &mut Trainer,
    train: &Side,
    setup: &DrawSetup<'_>,
    epochs: usize,
    (purpose, key): (&'static str, u64),
    say: &dyn Fn(&str),
) -> Result<TrainingDraws> {
    let v = setup.v;
    let batch_size = trainer.config().batch_size;
    let stream = Stream::new(key);
    let f = train.n_features();
    let parts = FINE_TUNE_DRAWS_PER_EPOCH.min(train.n()).max(1);
    let mut rng = Rng::new(key);
    let mut order: Vec<usize> = (0..train.n()).collect();
    let mut step: u32 = 0;
    let mut draws: u32 = 0;
    let (mut alpha_sum, mut beta_sum) = (0.0f64, 0.0f64);
    let scaling = setup.folded.then(|| trainer.standardizer().clone());
    let start = std::time::Instant::now();
    for epoch in 0..epochs {
        rng.shuffle(&mut order);
        let (mut loss_sum, mut rows) = (0.0f64, 0usize);
        for part in order.chunks(train.n().div_ceil(parts).max(1)) {
            let draw = draws;
            draws += 1;
            let (w, bad, (a, b)) = setup.features(&stream, key, train, part, draw)?;
            alpha_sum += a;
            beta_sum += b;
            let keep: Vec<usize> = (0..part.len()).filter(|&i| !bad[i]).collect();
            for mb in keep.chunks(batch_size) {
                let mut xb = Vec::with_capacity(mb.len() * f);
                for &i in mb {
                    xb.extend_from_slice(&w[i * f..(i + 1) * f]);
                }
                let yb: Vec<u32> = mb.iter().map(|&i| train.y[part[i]]).collect();
                let loss = match &v.conductance {
                    None => trainer.train_step(&xb, &yb)?,
                    Some(c) => trainer.train_step_through(&xb, &yb, |net| {
                        program(c, net, scaling.as_ref(), &stream, step)
                    })?,
                };
                step = step.wrapping_add(1);
                loss_sum += loss * mb.len() as f64;
                rows += mb.len();
            }
        }
        let report = EpochReport {
            epoch: trainer.history().len() + 1,
            train_loss: loss_sum / rows.max(1) as f64,
            val_accuracy: None,
            val_loss: None,
            elapsed_s: start.elapsed().as_secs_f64(),
        };
        if !report.train_loss.is_finite() {
            return Err(Error::invalid(
                "lr",
                trainer.config().lr,
                format!(
                    "a smaller value: the {purpose} training loss diverged at epoch {}",
                    epoch + 1
                ),
            ));
        }
        say(&format!(
            "{purpose}: epoch {}/{epochs}, loss {:.4}",
            epoch + 1,
            report.train_loss
        ));
        trainer.record(report);
    }
    Ok(TrainingDraws {
        purpose,
        key,
        device_draws: draws,
        conductance_draws: if v.conductance.is_some() { step } else { 0 },
        alpha_mean: alpha_sum / draws.max(1) as f64,
        beta_mean: beta_sum / draws.max(1) as f64,
    })
}

/// Noise-aware fine-tuning of `base` for `v.fine_tune_epochs` epochs
/// ([`noisy_epochs`] under [`fine_tune_seed`]). The optimiser restarts; the
/// learning rate and batch size are the readout's; the last epoch's weights
/// are kept.
pub fn fine_tune(
    base: &Trained,
    train: &Side,
    setup: &DrawSetup<'_>,
    say: &dyn Fn(&str),
) -> Result<(Trained, TrainingDraws)> {
    let v = setup.v;
    let mut trainer = Trainer::resume(base).map_err(|_| {
        Error::invalid(
            "variability.fine_tune_epochs",
            v.fine_tune_epochs,
            "0 with a ridge readout (fine-tuning needs readout = \"mlp\" or \"softmax\")",
        )
    })?;
    let key = fine_tune_seed(setup.seed);
    let draws = noisy_epochs(
        &mut trainer,
        train,
        setup,
        v.fine_tune_epochs,
        ("fine-tuning", key),
        say,
    )?;
    Ok((trainer.finish(), draws))
}

/// A readout trained noise-aware from its initialisation (`cfg`'s network,
/// initialised from `cfg.seed`, with `scaling` on its input) for
/// `v.noise_aware_epochs` epochs ([`noisy_epochs`] under
/// [`noise_aware_seed`]); no validation, no early stopping: the last epoch's
/// weights are kept, so the test split is used once.
pub fn train_noise_aware(
    cfg: &TrainConfig,
    n_classes: usize,
    scaling: Option<Standardizer>,
    train: &Side,
    setup: &DrawSetup<'_>,
    say: &dyn Fn(&str),
) -> Result<(Trained, TrainingDraws)> {
    let v = setup.v;
    let mut trainer = Trainer::new(cfg, train.n_features(), n_classes, scaling).map_err(|e| {
        match cfg.kind {
            crate::readout::ReadoutKind::Ridge => Error::invalid(
                "variability.noise_aware_epochs",
                v.noise_aware_epochs,
                "0 with a ridge readout (noise-aware training needs readout = \"mlp\" or \"softmax\")",
            ),
            _ => e,
        }
    })?;
    let key = noise_aware_seed(setup.seed);
    let draws = noisy_epochs(
        &mut trainer,
        train,
        setup,
        v.noise_aware_epochs,
        ("noise-aware training", key),
        say,
    )?;
    Ok((trainer.finish(), draws))
}
