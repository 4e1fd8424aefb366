//! The Monte Carlo [`Evaluator`]: the study's set-up (readout trained or
//! loaded, fine-tuned if asked, nominal accuracy) and the scoring of each
//! batch of device draws.

use super::nonideal::{
    DeviceDraw, DrawFeatures, HostSteps, Nonideal, draws_params, resolve_device, sample_devices,
};
use super::training::{DrawSetup, fine_tune};
use crate::batch::Batch;
use crate::data::Dataset;
use crate::engine::cpu::CpuEngine;
use crate::engine::gpu::GpuOdeEngine;
use crate::engine::{Engine, RunOptions, StepNoise};
use crate::model::integrate::Integrator;
use crate::pipeline::{Protocol, Side, encode_protocol, evaluate_split, split_for_repeat};
use crate::readout::{EpochReport, Trained};
use crate::rng::Stream;
use crate::saved_model::SavedModel;
use crate::study::kinetics::Kinetics;
use crate::study::plan::Point;
use crate::study::runner::Evaluator;
use crate::study::spec::McSpec;
use crate::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::path::PathBuf;

/// Default memory for one batch of draws' features (bytes), used when the
/// spec has no `batch` key.
pub const DEFAULT_BATCH_BYTES: usize = 512 << 20;

/// Accuracy with some samples unanswered (`bad`: they count as wrong). With
/// `groups`, each group's class is the majority of its answered samples
/// (ties: the smaller class); a group with no answer counts as wrong.
pub fn accuracy_with_failures(
    pred: &[u32],
    bad: &[bool],
    y: &[u32],
    groups: Option<&[u32]>,
    n_classes: usize,
) -> f64 {
    match groups {
        None => {
            let ok = (0..y.len()).filter(|&i| !bad[i] && pred[i] == y[i]).count();
            ok as f64 / y.len().max(1) as f64
        }
        Some(g) => {
            let (vp, vy) = crate::readout::vote(pred, Some(bad), y, g, n_classes);
            let ok = vp.iter().zip(&vy).filter(|(p, t)| **p == Some(**t)).count();
            ok as f64 / vy.len().max(1) as f64
        }
    }
}

/// What the study knows before any draw: recorded in the manifest and the
/// summary.
#[derive(Clone, Debug, Serialize)]
pub struct Nominal {
    /// Dataset name.
    pub dataset: String,
    /// Readout description (`mlp 784-48-10`, `ridge 64-4`...).
    pub readout: String,
    /// The model file, when the readout was loaded.
    pub model: Option<PathBuf>,
    /// Nominal alpha.
    pub alpha: f64,
    /// Nominal beta.
    pub beta: f64,
    /// Nominal initial state.
    pub w0: f64,
    /// Readout samples in the training / test split.
    pub n_train: usize,
    /// Test readout samples (each draw scores all of them).
    pub n_test: usize,
    /// Devices per draw (1, or the channels with `per_channel`).
    pub devices_per_draw: usize,
    /// Test accuracy at the nominal parameters without any noise.
    pub accuracy: f64,
    /// The same for the fine-tuned readout.
    pub tuned_accuracy: Option<f64>,
    /// Training accuracy of a readout trained here.
    pub train_accuracy: Option<f64>,
    /// Draws per engine run.
    pub batch: usize,
    /// The resolved non-idealities.
    pub variability: Nonideal,
}

/// Options of [`McEvaluator::new`] that are not in the spec.
#[derive(Default)]
pub struct McOptions<'a> {
    /// Largest GPU dispatch (trajectories); tests force it small.
    pub chunk: Option<usize>,
    /// Memory for one batch of features when the spec has no `batch` (bytes;
    /// 0: [`DEFAULT_BATCH_BYTES`]).
    pub batch_bytes: usize,
    /// Told what the set-up is doing (training epochs, fine-tuning).
    pub progress: Option<&'a dyn Fn(&str)>,
}

/// The Monte Carlo [`Evaluator`]: one point = one draw of the devices.
pub struct McEvaluator {
    engine: Box<dyn Engine>,
    test: Side,
    n_classes: usize,
    vote: bool,
    /// The readout as trained, then the fine-tuned one if any.
    readouts: Vec<Trained>,
    stream: Stream,
    seed: u64,
    chunk: Option<usize>,
    nominal: Nominal,
    /// A continuous-time model's kinetics (`None`: the discrete map on `engine`).
    ode: Option<Kinetics<'static>>,
}

fn first_test(ds: &Dataset, n: usize) -> Dataset {
    let n = n.min(ds.n_test());
    let l = ds.sample_len();
    Dataset {
        x_test: ds.x_test[..n * l].to_vec(),
        y_test: ds.y_test[..n].to_vec(),
        groups_test: ds.groups_test.as_ref().map(|g| g[..n].to_vec()),
        ..ds.clone()
    }
}

/// The point of the nominal device (the template's values).
fn nominal_point() -> Point {
    Point {
        index: 0,
        params: Vec::new(),
        seed: 0,
    }
}

/// Zeroes the features of failed samples; returns which failed.
fn zero_failed(w: &mut [f32], status: &[u8], spp: usize, steps: usize) -> Vec<bool> {
    let bad: Vec<bool> = status
        .chunks(spp)
        .map(|c| c.iter().any(|&s| s != 0))
        .collect();
    for (i, &b) in bad.iter().enumerate() {
        if b {
            w[i * spp * steps..(i + 1) * spp * steps].fill(0.0);
        }
    }
    bad
}

impl McEvaluator {
    /// Sets a study up: resolves the protocol, trains (on the CPU engine) or
    /// loads the readout, fine-tunes it if asked, and measures the nominal
    /// accuracy. `engine` runs the draws.
    pub fn new(
        spec: &McSpec,
        ds: &Dataset,
        engine: Box<dyn Engine>,
        opts: &McOptions<'_>,
    ) -> Result<Self> {
        let say = |m: &str| {
            if let Some(p) = opts.progress {
                p(m)
            }
        };
        let cpu = CpuEngine::fast();
        let mut proto = Protocol::for_dataset(&ds.name, &ds.sample_shape);
        proto.readout.seed = spec.seed;
        let device = resolve_device(spec)?;
        let model_path = crate::study::inputs::model_file(spec);
        let saved = model_path.as_deref().map(SavedModel::load).transpose()?;
        let split_seed = match &saved {
            Some(s) => {
                if s.dataset != ds.name {
                    return Err(Error::invalid(
                        "model",
                        format!(
                            "{} (trained on {})",
                            model_path
                                .as_ref()
                                .map_or(String::new(), |p| p.display().to_string()),
                            s.dataset
                        ),
                        format!("a model trained on the spec's dataset `{}`", ds.name),
                    ));
                }
                proto.alpha = s.alpha;
                proto.beta = s.beta;
                proto.w0 = s.w0;
                proto.encoding = s.encoding;
                proto.repeats = s.repeats;
                proto.test_fraction = s.test_fraction;
                proto.vote = s.vote;
                proto.drop_empty = s.drop_empty;
                proto.readout = s.readout.config.clone();
                s.seed
            }
            None => {
                if let Some(k) = spec.readout {
                    proto.readout.kind = k;
                }
                if let Some(h) = spec.hidden {
                    proto.readout.hidden = vec![h];
                }
                if let Some(e) = spec.epochs {
                    proto.readout.epochs = e;
                }
                proto.readout.standardize = spec.standardize.unwrap_or(false);
                proto.alpha = spec.alpha.unwrap_or(proto.alpha);
                proto.beta = spec.beta.unwrap_or(proto.beta);
                proto.readout.check()?;
                spec.seed
            }
        };
        let mut v = Nonideal::resolve(&spec.variability, proto.alpha, proto.beta, proto.w0);
        v.check()?;
        let ode = device.map(|(template, varied)| {
            v.params = varied;
            Kinetics::Ode {
                template,
                gpu: None,
            }
        });
        let mut split = split_for_repeat(ds, &proto, split_seed, 0)?;
        if let Some(n) = spec.train_subset {
            split = split.subsample_train(n.max(2));
        }
        if let Some(n) = spec.test_subset {
            split = first_test(&split, n);
        }
        let (trained, train_accuracy) = match (saved, &ode) {
            (Some(s), _) => (s.readout, None),
            (None, Some(k)) => {
                say("training the readout on the nominal device");
                let (train, _) = encode_protocol(&split, &proto)?;
                let ft = k.run(&train, &[nominal_point()])?;
                if ft.status.iter().any(|&s| s != 0) {
                    return Err(Error::invalid(
                        "model",
                        format!(
                            "{} trajectories fail",
                            ft.status.iter().filter(|&&s| s != 0).count()
                        ),
                        "a nominal device whose training trajectories all integrate (change [model] set or the integrator)",
                    ));
                }
                let tick = |r: &EpochReport| {
                    say(&format!(
                        "training: epoch {}, loss {:.4}",
                        r.epoch, r.train_loss
                    ))
                };
                let t = crate::readout::train(
                    &ft.w,
                    train.n(),
                    train.n_features(),
                    &train.y,
                    ds.n_classes,
                    &proto.readout,
                    Some(&tick),
                )?;
                let acc = t.accuracy(&ft.w, train.n(), &train.y);
                (t, Some(acc))
            }
            (None, None) => {
                say("training the readout at the nominal parameters");
                let tick = |r: &EpochReport| {
                    say(&format!(
                        "training: epoch {}, loss {:.4}",
                        r.epoch, r.train_loss
                    ))
                };
                let out = evaluate_split(&cpu, &split, &proto, Some(&tick))?;
                let Some(t) = out.trained else {
                    return Err(Error::invalid(
                        "beta",
                        proto.beta,
                        format!(
                            "below 2*sqrt(alpha) = {:.4}: {:.2}% of the nominal trajectories diverge at alpha {}",
                            2.0 * proto.alpha.sqrt(),
                            100.0 * out.diverged_fraction,
                            proto.alpha
                        ),
                    ));
                };
                (t, Some(out.train_accuracy))
            }
        };
        let (train, test) = encode_protocol(&split, &proto)?;
        if trained.n_features != test.n_features() {
            return Err(Error::invalid(
                "model",
                format!("{} input features", trained.n_features),
                format!(
                    "{} ({} sequences x {} steps per sample of {})",
                    test.n_features(),
                    test.encoded.seqs_per_sample,
                    test.encoded.steps,
                    ds.name
                ),
            ));
        }
        let devices = if v.per_channel {
            test.encoded.seqs_per_sample
        } else {
            1
        };
        let bytes_per_draw = test.encoded.seqs * (test.encoded.steps * 4 + 5);
        let budget = if opts.batch_bytes == 0 {
            DEFAULT_BATCH_BYTES
        } else {
            opts.batch_bytes
        };
        let batch = spec
            .batch
            .unwrap_or(budget / bytes_per_draw.max(1))
            .clamp(1, spec.draws.max(1));
        let mut me = Self {
            engine,
            n_classes: ds.n_classes,
            vote: proto.vote && test.groups.is_some(),
            readouts: vec![trained],
            stream: Stream::new(spec.seed),
            seed: spec.seed,
            chunk: opts.chunk,
            ode,
            nominal: Nominal {
                dataset: ds.name.clone(),
                readout: String::new(),
                model: model_path,
                alpha: proto.alpha,
                beta: proto.beta,
                w0: proto.w0,
                n_train: train.n(),
                n_test: test.n(),
                devices_per_draw: devices,
                accuracy: f64::NAN,
                tuned_accuracy: None,
                train_accuracy,
                batch,
                variability: v,
            },
            test,
        };
        me.nominal.readout = crate::readout::Trained::name(&me.readouts[0]);
        me.nominal.accuracy = me.nominal_accuracy(&cpu, 0)?;
        if me.nominal.variability.fine_tune_epochs > 0 {
            let n = &me.nominal;
            let setup = DrawSetup {
                v: &n.variability,
                alpha: n.alpha,
                beta: n.beta,
                w0: n.w0,
                devices_per_draw: n.devices_per_draw,
                seed: me.seed,
            };
            let tuned = fine_tune(&cpu, &me.readouts[0], &train, &setup, &say)?;
            me.readouts.push(tuned);
            me.nominal.tuned_accuracy = Some(me.nominal_accuracy(&cpu, 1)?);
        }
        Ok(me)
    }

    /// Runs a continuous model's draws on this GPU engine (the nominal
    /// readout stays trained on CPU features). A no-op for the discrete map.
    pub fn set_ode_gpu(&mut self, gpu: GpuOdeEngine) -> Result<()> {
        if let Some(Kinetics::Ode { template, gpu: g }) = &mut self.ode {
            if template.integrator == Integrator::Exact && !template.model.has_exact() {
                return Err(Error::invalid(
                    "model.integrator",
                    "exact",
                    "euler, heun, rk4 or adaptive on the GPU (exact needs a closed form: ddk-ode only)",
                ));
            }
            *g = Some(gpu);
        }
        Ok(())
    }

    /// Whether the draws run a continuous-time model.
    pub fn is_continuous(&self) -> bool {
        self.ode.is_some()
    }

    /// What the study knows before any draw.
    pub fn nominal(&self) -> &Nominal {
        &self.nominal
    }

    /// The readouts scored on each draw: as trained, then fine-tuned.
    pub fn readouts(&self) -> &[Trained] {
        &self.readouts
    }

    /// Accuracy of readout `r` at the nominal device, with no noise at all.
    fn nominal_accuracy(&self, cpu: &CpuEngine, r: usize) -> Result<f64> {
        if let Some(Kinetics::Ode { template, .. }) = &self.ode {
            let e = &self.test.encoded;
            let k = Kinetics::Ode {
                template: template.clone(),
                gpu: None,
            };
            let mut f = k.run(&self.test, &[nominal_point()])?;
            let bad = zero_failed(&mut f.w, &f.status, e.seqs_per_sample, e.steps);
            let pred = self.readouts[r].predict(&f.w, e.samples);
            return Ok(self.score(&pred, &bad));
        }
        let n = &self.nominal;
        let g = n.devices_per_draw;
        let d = DeviceDraw {
            alpha: vec![n.alpha; g],
            beta: vec![n.beta; g],
            stuck: vec![false; g],
        };
        let params = draws_params(std::slice::from_ref(&d), n.w0, n.w0)?;
        let e = &self.test.encoded;
        let mut f = cpu.run(
            &Batch::new(&e.x, e.seqs, e.steps, &params)?,
            &RunOptions::default(),
        )?;
        let bad: Vec<bool> = f
            .status
            .chunks(e.seqs_per_sample)
            .map(|c| c.iter().any(|&s| s != 0))
            .collect();
        for (i, &b) in bad.iter().enumerate() {
            if b {
                let l = e.seqs_per_sample * e.steps;
                f.w[i * l..(i + 1) * l].fill(0.0);
            }
        }
        let pred = self.readouts[r].predict(&f.w, e.samples);
        Ok(self.score(&pred, &bad))
    }

    fn score(&self, pred: &[u32], bad: &[bool]) -> f64 {
        let groups = if self.vote {
            self.test.groups.as_deref()
        } else {
            None
        };
        accuracy_with_failures(pred, bad, &self.test.y, groups, self.n_classes)
    }

    /// Noise-aware fine-tuning: each epoch the training samples are split
    /// into [`FINE_TUNE_DRAWS_PER_EPOCH`] random parts, each featurised (CPU
    /// engine) under its own fresh device draw with every enabled noise;
    /// each mini-batch's forward and backward pass runs on freshly programmed
    /// noisy conductances, and the resulting update is applied to the clean
    /// weights (noise injection with a straight-through update). The
    /// optimiser restarts; the learning rate and batch size are the
    /// readout's; the last epoch's weights are kept.
    /// Evaluates draws of a continuous model in one kinetics run.
    fn evaluate_ode(&self, k: &Kinetics<'static>, points: &[Point]) -> Result<Vec<Vec<f64>>> {
        let v = &self.nominal.variability;
        let pts: Vec<Point> = points
            .iter()
            .map(|p| {
                let params = v
                    .params
                    .iter()
                    .map(|q| Ok((q.name.clone(), q.sample(&self.stream, p.index as u32)?)))
                    .collect::<Result<_>>()?;
                Ok(Point {
                    index: p.index,
                    params,
                    seed: p.seed,
                })
            })
            .collect::<Result<_>>()?;
        let mut f = k.run(&self.test, &pts)?;
        let e = &self.test.encoded;
        let host = HostSteps {
            v,
            stream: &self.stream,
            seqs_per_sample: e.seqs_per_sample,
            steps: e.steps,
        };
        let shared = DeviceDraw {
            alpha: vec![self.nominal.alpha],
            beta: vec![self.nominal.beta],
            stuck: vec![false],
        };
        let per = e.seqs * e.steps;
        f.w.par_chunks_mut(per)
            .zip(f.status.par_chunks(e.seqs))
            .zip(pts.par_iter())
            .map(|((w, status), p)| {
                let draw = p.index as u32;
                let (bad, diverged) = host.apply(draw, &shared, DrawFeatures { w, status });
                let mut row: Vec<f64> = p.params.iter().map(|q| q.1).collect();
                row.push(diverged);
                for r in &self.readouts {
                    let pred = match &v.conductance {
                        Some(c) => c.perturb(r, &self.stream, draw).predict(w, e.samples),
                        None => r.predict(w, e.samples),
                    };
                    row.push(self.score(&pred, &bad));
                }
                Ok(row)
            })
            .collect()
    }

    /// Evaluates draws with consecutive indices in one engine run.
    fn evaluate_run(&self, points: &[Point]) -> Result<Vec<Vec<f64>>> {
        if let Some(k) = &self.ode {
            return self.evaluate_ode(k, points);
        }
        let n = &self.nominal;
        let v = &n.variability;
        let first = points[0].index;
        let draws: Vec<DeviceDraw> = points
            .par_iter()
            .map(|p| {
                sample_devices(
                    &self.stream,
                    p.index as u32,
                    n.devices_per_draw,
                    n.alpha,
                    n.beta,
                    v,
                )
            })
            .collect::<Result<_>>()?;
        let params = draws_params(&draws, n.w0, v.stuck_w)?;
        let e = &self.test.encoded;
        let batch = Batch::new(&e.x, e.seqs, e.steps, &params)?;
        let noise = (v.cycle_noise > 0.0).then_some(StepNoise {
            sigma: v.cycle_noise,
            seed: self.seed,
            set_offset: first as u64,
        });
        let mut f = self.engine.run(
            &batch,
            &RunOptions {
                noise,
                chunk: self.chunk,
                ..RunOptions::default()
            },
        )?;
        let host = HostSteps {
            v,
            stream: &self.stream,
            seqs_per_sample: e.seqs_per_sample,
            steps: e.steps,
        };
        let per = e.seqs * e.steps;
        f.w.par_chunks_mut(per)
            .zip(f.status.par_chunks(e.seqs))
            .zip(points.par_iter().zip(&draws))
            .map(|((w, status), (p, d))| {
                let draw = p.index as u32;
                let (bad, diverged) = host.apply(draw, d, DrawFeatures { w, status });
                let (a, b) = d.means();
                let mut row = vec![a, b, d.stuck_share(), diverged];
                for r in &self.readouts {
                    let pred = match &v.conductance {
                        Some(c) => c.perturb(r, &self.stream, draw).predict(w, e.samples),
                        None => r.predict(w, e.samples),
                    };
                    row.push(self.score(&pred, &bad));
                }
                Ok(row)
            })
            .collect()
    }
}

impl Evaluator for McEvaluator {
    fn transfer(&self) -> crate::engine::Transfer {
        // The map engine and a continuous model's GPU engine are on their
        // own contexts (the CLI builds one device per family): no double count.
        let ode = self.ode.as_ref().map(|k| k.transfer()).unwrap_or_default();
        self.engine.transfer() + ode
    }

    fn metric_names(&self) -> Vec<String> {
        if self.ode.is_some() {
            let mut m: Vec<String> = self
                .nominal
                .variability
                .params
                .iter()
                .map(|p| p.name.clone())
                .collect();
            m.push("diverged_fraction".into());
            m.push("test_accuracy".into());
            if self.readouts.len() > 1 {
                m.push("test_accuracy_tuned".into());
            }
            return m;
        }
        let mut m: Vec<String> = [
            "alpha",
            "beta",
            "stuck",
            "diverged_fraction",
            "test_accuracy",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if self.readouts.len() > 1 {
            m.push("test_accuracy_tuned".into());
        }
        m
    }

    fn evaluate(&mut self, point: &Point) -> Result<Vec<f64>> {
        Ok(self.evaluate_run(std::slice::from_ref(point))?.remove(0))
    }

    fn batch_size(&self) -> usize {
        self.nominal.batch
    }

    /// One engine run per stretch of consecutive draw indices (a resumed
    /// study may hand over gaps): the counters of the cycle noise are
    /// `set_offset + p`, so a run must hold consecutive draws.
    fn evaluate_many(&mut self, points: &[Point]) -> Result<Vec<Vec<f64>>> {
        let mut out = Vec::with_capacity(points.len());
        let mut i = 0;
        while i < points.len() {
            let mut j = i + 1;
            while j < points.len() && points[j].index == points[j - 1].index + 1 {
                j += 1;
            }
            out.extend(self.evaluate_run(&points[i..j])?);
            i = j;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_samples_count_as_wrong_and_do_not_vote() {
        let y = [0, 1, 1, 0];
        let pred = [0, 1, 1, 1];
        assert_eq!(
            accuracy_with_failures(&pred, &[false; 4], &y, None, 2),
            0.75
        );
        assert_eq!(
            accuracy_with_failures(&pred, &[true, false, false, false], &y, None, 2),
            0.5
        );
        // Groups 7 = {0, 1} (label 0) and 9 = {2, 3} (label 1); ties go to class 0.
        let g = [7, 7, 9, 9];
        let y = [0, 0, 1, 1];
        let pred = [1, 0, 0, 1];
        let acc = |bad: [bool; 4]| accuracy_with_failures(&pred, &bad, &y, Some(&g), 2);
        assert_eq!(acc([false; 4]), 0.5);
        assert_eq!(acc([false, false, true, false]), 1.0);
        assert_eq!(acc([true, true, false, false]), 0.0);
    }
}
