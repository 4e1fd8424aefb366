//! Noise-aware training of the readout: training steps that see fresh device
//! draws and noisy conductances, from a stream that never meets the test
//! draws'. The readout learns through its own [`Trainer`]
//! ([`Trainer::resume`], [`Trainer::train_step_through`]).

use super::nonideal::{
    DeviceDraw, DrawFeatures, HostSteps, Nonideal, draws_params, sample_devices,
};
use crate::batch::Batch;
use crate::engine::cpu::CpuEngine;
use crate::engine::{Engine, RunOptions, StepNoise};
use crate::pipeline::Side;
use crate::readout::{EpochReport, Rng, Trained, Trainer};
use crate::rng::Stream;
use crate::{Error, Result};

/// Device draws per fine-tuning epoch: the training samples are split into
/// this many random parts, each featurised under its own draw.
pub const FINE_TUNE_DRAWS_PER_EPOCH: usize = 16;

/// The key of the fine-tuning draws: another stream than the test draws'.
pub fn fine_tune_seed(seed: u64) -> u64 {
    seed ^ 0x4649_4E45_5455_4E45 // "FINETUNE"
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
    /// The study seed (the training draws use [`fine_tune_seed`] of it).
    pub seed: u64,
}

impl DrawSetup<'_> {
    /// The noisy features of the training samples `idx` under training draw
    /// `draw` (CPU engine), and which samples failed.
    fn features(
        &self,
        cpu: &CpuEngine,
        stream: &Stream,
        train: &Side,
        idx: &[usize],
        draw: u32,
    ) -> Result<(Vec<f32>, Vec<bool>)> {
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
            seed: fine_tune_seed(self.seed),
            set_offset: draw as u64,
        });
        let mut feats = cpu.run(
            &Batch::new(&e.x, e.seqs, e.steps, &params)?,
            &RunOptions {
                noise,
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
        Ok((feats.w, bad))
    }
}

/// Noise-aware fine-tuning of `base` for `v.fine_tune_epochs` epochs: each
/// epoch the training samples are split into [`FINE_TUNE_DRAWS_PER_EPOCH`]
/// random parts, each featurised (CPU engine) under its own fresh device
/// draw with every enabled noise; each mini-batch's forward and backward
/// pass runs on freshly programmed noisy conductances, and the resulting
/// update is applied to the clean weights (noise injection with a
/// straight-through update). The optimiser restarts; the learning rate and
/// batch size are the readout's; the last epoch's weights are kept.
pub fn fine_tune(
    cpu: &CpuEngine,
    base: &Trained,
    train: &Side,
    setup: &DrawSetup<'_>,
    say: &dyn Fn(&str),
) -> Result<Trained> {
    let v = setup.v;
    let mut trainer = Trainer::resume(base).map_err(|_| {
        Error::invalid(
            "variability.fine_tune_epochs",
            v.fine_tune_epochs,
            "0 with a ridge readout (fine-tuning needs readout = \"mlp\" or \"softmax\")",
        )
    })?;
    let batch_size = base.config.batch_size;
    let ft_seed = fine_tune_seed(setup.seed);
    let stream = Stream::new(ft_seed);
    let f = train.n_features();
    let parts = FINE_TUNE_DRAWS_PER_EPOCH.min(train.n()).max(1);
    let mut rng = Rng::new(ft_seed);
    let mut order: Vec<usize> = (0..train.n()).collect();
    let mut step: u32 = 0;
    let start = std::time::Instant::now();
    for epoch in 0..v.fine_tune_epochs {
        rng.shuffle(&mut order);
        let (mut loss_sum, mut rows) = (0.0f64, 0usize);
        for (j, part) in order.chunks(train.n().div_ceil(parts).max(1)).enumerate() {
            let draw = (epoch * parts + j) as u32;
            let (w, bad) = setup.features(cpu, &stream, train, part, draw)?;
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
                        c.program_network(net, &stream, step)
                    })?,
                };
                step = step.wrapping_add(1);
                loss_sum += loss * mb.len() as f64;
                rows += mb.len();
            }
        }
        let report = EpochReport {
            epoch: epoch + 1,
            train_loss: loss_sum / rows.max(1) as f64,
            val_accuracy: None,
            val_loss: None,
            elapsed_s: start.elapsed().as_secs_f64(),
        };
        say(&format!(
            "fine-tuning: epoch {}/{}, loss {:.4}",
            epoch + 1,
            v.fine_tune_epochs,
            report.train_loss
        ));
        trainer.record(report);
    }
    Ok(trainer.finish())
}
