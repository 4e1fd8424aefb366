//! The Monte Carlo [`Evaluator`]: the study's set-up (readout trained or
//! loaded, fine-tuned if asked, nominal accuracy) and the scoring of each
//! batch of device draws.

use super::nonideal::{
    DeviceDraw, DrawFeatures, HostSteps, Nonideal, draws_params, resolve_device, sample_devices,
};
use super::training::{DrawSetup, TrainingDraws, fine_tune, train_noise_aware};
use crate::batch::Batch;
use crate::data::Dataset;
use crate::engine::cpu::CpuEngine;
use crate::engine::gpu::mc_forward::{BAD_PREDICTION, DrawSteps};
use crate::engine::gpu::moments::{MapParams, SideInputs};
use crate::engine::gpu::{GpuOdeEngine, GpuReducer};
use crate::engine::{Engine, RunOptions, StepNoise};
use crate::model::integrate::Integrator;
use crate::pipeline::{
    Protocol, Side, device_params, encode_protocol, featurize, split_for_repeat,
};
use crate::readout::{EpochReport, InputScaling, TrainConfig, Trained, fold_into_first_layer};
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
    /// The readout's input scaling (`raw`, `centred`: folded into the first
    /// layer, `standardized`).
    pub input_scaling: &'static str,
    /// Test accuracy at the nominal parameters without any noise.
    pub accuracy: f64,
    /// The same for the fine-tuned readout.
    pub tuned_accuracy: Option<f64>,
    /// The same for the readout trained noise-aware from the start.
    pub noise_aware_accuracy: Option<f64>,
    /// Training accuracy of a readout trained here.
    pub train_accuracy: Option<f64>,
    /// The Philox keys and counters the noise-aware trainings used (never
    /// the test draws': another key).
    pub training_draws: Vec<TrainingDraws>,
    /// Draws per engine run.
    pub batch: usize,
    /// Where each draw's readout runs: `device` (the kinetics and the
    /// readout fused on the GPU, counts downloaded: [`McEvaluator::set_reducer`])
    /// or `host` (features downloaded), with the reason when a GPU study
    /// keeps it on the host.
    pub readout_site: String,
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
    /// The engine of the nominal set-up (training features, nominal
    /// accuracies); `None`: the CPU engine, so the readout under test does
    /// not depend on the study's backend. The noise-aware trainings run on
    /// the study's engine.
    pub setup_engine: Option<&'a dyn Engine>,
}

/// The Monte Carlo [`Evaluator`]: one point = one draw of the devices.
pub struct McEvaluator {
    engine: Box<dyn Engine>,
    test: Side,
    n_classes: usize,
    vote: bool,
    /// The readouts as scored (a centred one folded): as trained, then the
    /// fine-tuned one and the noise-aware one, if any.
    readouts: Vec<Trained>,
    /// The draws.csv column of each readout.
    columns: Vec<&'static str>,
    stream: Stream,
    seed: u64,
    chunk: Option<usize>,
    nominal: Nominal,
    /// A continuous-time model's kinetics (`None`: the discrete map on `engine`).
    ode: Option<Kinetics<'static>>,
    /// The map's draws fused on the device (kinetics, host steps, readouts):
    /// only counts come back.
    reducer: Option<GpuReducer>,
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
    /// Sets a study up: resolves the protocol, encodes each side once,
    /// trains (on the set-up engine, the CPU by default) or loads the
    /// readout, trains the noise-aware readouts if asked (on the study's
    /// engine), and measures the nominal accuracies from one featurisation
    /// of the test side. `engine` runs the draws.
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
        let setup_engine: &dyn Engine = opts.setup_engine.unwrap_or(&cpu);
        let mut proto = Protocol::for_dataset(&ds.name, &ds.sample_shape);
        proto.readout.seed = spec.seed;
        let device = resolve_device(spec)?;
        let model_path = crate::study::inputs::model_file(spec);
        let saved = model_path.as_deref().map(SavedModel::load).transpose()?;
        let scaling = match (spec.input_scaling, spec.standardize) {
            (Some(s), _) => s,
            (None, Some(true)) => InputScaling::Standardized,
            (None, _) => InputScaling::Raw,
        };
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
                // The scaling is fitted here (below), not by the trainer.
                proto.readout.standardize = false;
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
        // Each side encoded once, for the training, the noise-aware
        // training, the nominal accuracies and every draw.
        let (train, test) = encode_protocol(&split, &proto)?;
        let (trained, train_accuracy) = match saved {
            Some(s) => (s.readout, None),
            None => {
                say("training the readout on the nominal device");
                let ft = match &ode {
                    Some(k) => k.run(&train, &[nominal_point()])?,
                    None => {
                        let params = device_params(
                            proto.alpha,
                            proto.beta,
                            proto.w0,
                            proto.per_step,
                            train.encoded.steps,
                        )?;
                        featurize(setup_engine, &train, &params, false)?
                    }
                };
                let failed = ft.status.iter().filter(|&&s| s != 0).count();
                if failed > 0 {
                    return Err(if ode.is_some() {
                        Error::invalid(
                            "model",
                            format!("{failed} trajectories fail"),
                            "a nominal device whose training trajectories all integrate (change [model] set or the integrator)",
                        )
                    } else {
                        Error::invalid(
                            "beta",
                            proto.beta,
                            format!(
                                "below 2*sqrt(alpha) = {:.4}: {:.2}% of the nominal training trajectories diverge at alpha {}",
                                2.0 * proto.alpha.sqrt(),
                                100.0 * failed as f64 / ft.status.len().max(1) as f64,
                                proto.alpha
                            ),
                        )
                    });
                }
                let tick = |r: &EpochReport| {
                    say(&format!(
                        "training: epoch {}, loss {:.4}",
                        r.epoch, r.train_loss
                    ))
                };
                let (n, f) = (train.n(), train.n_features());
                let st = scaling.fit(&ft.w, n, f)?;
                let x_fit = match &st {
                    Some(s) => s.transform(&ft.w),
                    None => ft.w.clone(),
                };
                let mut t = crate::readout::train(
                    &x_fit,
                    n,
                    f,
                    &train.y,
                    ds.n_classes,
                    &proto.readout,
                    Some(&tick),
                )?;
                drop(x_fit);
                if st.is_some() {
                    t.standardizer = st;
                }
                let acc = t.accuracy(&ft.w, n, &train.y);
                (t, Some(acc))
            }
        };
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
        // The chip's view: a centred readout is scored with its scaling
        // folded into the first layer.
        let fold = scaling == InputScaling::Centred;
        let scored = |t: &Trained| {
            if fold {
                fold_into_first_layer(t)
            } else {
                t.clone()
            }
        };
        let mut me = Self {
            n_classes: ds.n_classes,
            vote: proto.vote && test.groups.is_some(),
            readouts: vec![scored(&trained)],
            columns: vec!["test_accuracy"],
            stream: Stream::new(spec.seed),
            seed: spec.seed,
            chunk: opts.chunk,
            ode,
            reducer: None,
            nominal: Nominal {
                dataset: ds.name.clone(),
                readout: crate::readout::Trained::name(&trained),
                model: model_path,
                alpha: proto.alpha,
                beta: proto.beta,
                w0: proto.w0,
                n_train: train.n(),
                n_test: test.n(),
                devices_per_draw: devices,
                input_scaling: scaling.name(),
                accuracy: f64::NAN,
                tuned_accuracy: None,
                noise_aware_accuracy: None,
                train_accuracy,
                training_draws: Vec::new(),
                batch,
                readout_site: "host".into(),
                variability: v,
            },
            test,
            engine,
        };
        let n = &me.nominal;
        let v = &n.variability;
        let setup = DrawSetup {
            v,
            alpha: n.alpha,
            beta: n.beta,
            w0: n.w0,
            devices_per_draw: n.devices_per_draw,
            seed: me.seed,
            engine: me.engine.as_ref(),
            chunk: me.chunk,
            folded: fold,
        };
        let mut extra = Vec::new();
        if v.fine_tune_epochs > 0 {
            let (tuned, draws) = fine_tune(&trained, &train, &setup, &say)?;
            extra.push((scored(&tuned), "test_accuracy_tuned", draws));
        }
        if v.noise_aware_epochs > 0 {
            let cfg = TrainConfig {
                epochs: v.noise_aware_epochs,
                ..trained.config.clone()
            };
            let scaling = trained.standardizer.clone();
            let (t, draws) = train_noise_aware(&cfg, me.n_classes, scaling, &train, &setup, &say)?;
            extra.push((scored(&t), "test_accuracy_noise_aware", draws));
        }
        for (t, column, draws) in extra {
            me.readouts.push(t);
            me.columns.push(column);
            me.nominal.training_draws.push(draws);
        }
        let acc = me.nominal_accuracies(setup_engine)?;
        me.nominal.accuracy = acc[0];
        for (c, a) in me.columns.iter().zip(&acc).skip(1) {
            match *c {
                "test_accuracy_tuned" => me.nominal.tuned_accuracy = Some(*a),
                _ => me.nominal.noise_aware_accuracy = Some(*a),
            }
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

    /// Runs the discrete map's draws through `reducer` (its context should be
    /// the engine's: the transfers are counted there): the DDK kernel, the
    /// host steps and every readout on the device, per draw only its counts
    /// (and one class per test sample when the dataset votes) downloaded.
    /// Readouts the kernel cannot evaluate (hidden widths over
    /// [`MAX_HIDDEN`](crate::engine::gpu::mc_forward::MAX_HIDDEN), over 64
    /// classes) or is not trusted with (over
    /// [`MAX_DEVICE_DENSE_PARAMS`](crate::engine::gpu::mc_forward::MAX_DEVICE_DENSE_PARAMS)
    /// weights and biases) keep the host path, and [`Nominal::readout_site`]
    /// says why. A no-op for a continuous model.
    pub fn set_reducer(&mut self, reducer: GpuReducer) {
        if self.ode.is_some() {
            return;
        }
        if let Some(why) = self.readouts.iter().find_map(super::device::unsupported) {
            self.nominal.readout_site = format!("host: {why}");
            return;
        }
        self.nominal.readout_site = "device".into();
        self.reducer = Some(reducer);
    }

    /// Whether the draws run a continuous-time model.
    pub fn is_continuous(&self) -> bool {
        self.ode.is_some()
    }

    /// What the study knows before any draw.
    pub fn nominal(&self) -> &Nominal {
        &self.nominal
    }

    /// The readouts scored on each draw (a centred one folded): as trained,
    /// then fine-tuned, then trained noise-aware, as [`Self::columns`].
    pub fn readouts(&self) -> &[Trained] {
        &self.readouts
    }

    /// The draws.csv column of each readout in [`Self::readouts`].
    pub fn columns(&self) -> &[&'static str] {
        &self.columns
    }

    /// Accuracy of every readout at the nominal device, with no noise at
    /// all: the test side featurised once (on `setup`, or the CPU kinetics
    /// of a continuous model), every readout scored on those features.
    fn nominal_accuracies(&self, setup: &dyn Engine) -> Result<Vec<f64>> {
        let e = &self.test.encoded;
        let mut f = if let Some(Kinetics::Ode { template, .. }) = &self.ode {
            let k = Kinetics::Ode {
                template: template.clone(),
                gpu: None,
            };
            k.run(&self.test, &[nominal_point()])?
        } else {
            let n = &self.nominal;
            let g = n.devices_per_draw;
            let d = DeviceDraw {
                alpha: vec![n.alpha; g],
                beta: vec![n.beta; g],
                stuck: vec![false; g],
            };
            let params = draws_params(std::slice::from_ref(&d), n.w0, n.w0)?;
            setup.run(
                &Batch::new(&e.x, e.seqs, e.steps, &params)?,
                &RunOptions::default(),
            )?
        };
        let bad = zero_failed(&mut f.w, &f.status, e.seqs_per_sample, e.steps);
        Ok(self
            .readouts
            .iter()
            .map(|r| self.score(&r.predict(&f.w, e.samples), &bad))
            .collect())
    }

    fn score(&self, pred: &[u32], bad: &[bool]) -> f64 {
        let groups = if self.vote {
            self.test.groups.as_deref()
        } else {
            None
        };
        accuracy_with_failures(pred, bad, &self.test.y, groups, self.n_classes)
    }

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

    /// [`Self::evaluate_run`] on the device: per readout one fused pass
    /// (kinetics with its cycle noise, stuck pin-back, read noise, failed
    /// samples, the readout with each draw's programmed weights); counts,
    /// and classes when voting, are all that come back.
    fn evaluate_device(
        &self,
        red: &GpuReducer,
        points: &[Point],
        draws: &[DeviceDraw],
    ) -> Result<Vec<Vec<f64>>> {
        let n = &self.nominal;
        let v = &n.variability;
        let e = &self.test.encoded;
        let g = n.devices_per_draw;
        // The devices exactly as the host path gives them to the engine.
        let map = MapParams::of(&draws_params(draws, n.w0, v.stuck_w)?);
        let stuck: Vec<bool> = draws.iter().flat_map(|d| d.stuck.iter().copied()).collect();
        let first = points[0].index as u32;
        let steps = DrawSteps {
            groups: g,
            stuck,
            stuck_w: v.stuck_w as f32,
            cycle_noise: (v.cycle_noise > 0.0).then_some(StepNoise {
                sigma: v.cycle_noise,
                seed: self.seed,
                set_offset: first as u64,
            }),
            read_sigma: v.read_noise as f32,
            seed: self.seed,
            draw_offset: first,
            predictions: self.vote,
        };
        let side = SideInputs {
            x: &e.x,
            spp: e.seqs_per_sample,
            steps: e.steps,
            y: &self.test.y,
        };
        let index: Vec<u32> = points.iter().map(|p| p.index as u32).collect();
        let counts = self
            .readouts
            .iter()
            .map(|r| {
                let net = super::device::pack(r, v.conductance.as_ref(), &self.stream, &index);
                red.mc_forward(&side, &map, &net, &steps)
            })
            .collect::<Result<Vec<_>>>()?;
        let ns = self.test.y.len();
        Ok(draws
            .iter()
            .enumerate()
            .map(|(p, d)| {
                let (a, b) = d.means();
                let diverged = counts[0].failed[p] as f64 / e.seqs.max(1) as f64;
                let mut row = vec![a, b, d.stuck_share(), diverged];
                for c in &counts {
                    row.push(match &c.predictions {
                        Some(pred) => {
                            let pred = &pred[p * ns..(p + 1) * ns];
                            let bad: Vec<bool> =
                                pred.iter().map(|&k| k == BAD_PREDICTION).collect();
                            self.score(pred, &bad)
                        }
                        None => c.correct[p] as f64 / ns.max(1) as f64,
                    });
                }
                row
            })
            .collect())
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
        if let Some(red) = &self.reducer {
            return self.evaluate_device(red, points, &draws);
        }
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
        // With a reducer the draws move bytes on its context only (the CLI
        // gives it the engine's: the same counters).
        match &self.reducer {
            Some(r) => r.context().transfer() + ode,
            None => self.engine.transfer() + ode,
        }
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
            m.extend(self.columns.iter().map(|c| c.to_string()));
            return m;
        }
        ["alpha", "beta", "stuck", "diverged_fraction"]
            .iter()
            .chain(&self.columns)
            .map(|s| s.to_string())
            .collect()
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
