//! The paper's pipeline end to end: dataset → encoder → engine → readout →
//! evaluation. `memkin run` is one [`Protocol`] over one or more seeded splits;
//! sweeps and Monte Carlo studies call the same pieces per point.
//!
//! Protocol rules (what keeps the numbers honest):
//! - the test split is used once, for the final evaluation; early stopping and
//!   any choice use a validation split carved from the training data;
//! - small datasets are evaluated over `repeats` seeded, stratified splits
//!   (by object for voxels, never by slice) and reported as a mean and spread;
//! - a trajectory that diverges (`beta x > 2 sqrt(alpha)`) is never fed to a
//!   readout: the outcome carries its share and no accuracy.

pub mod hardware;
pub mod paper;
pub mod tune;

use crate::batch::{Batch, DeviceParams, Features};
use crate::data::Dataset;
use crate::encode::{Encoded, Encoding, default_encoding, encode, expand_labels};
use crate::engine::{Engine, RunOptions};
use crate::readout::{
    self, Activation, EpochReport, OptState, Optimizer, ReadoutKind, Rng, Standardizer,
    TrainConfig, Trained, Trainer, stratified_split,
};
use crate::{Error, Result};
use serde::Serialize;
use std::time::Instant;

/// Device-parameter learning (the paper's "feature learning"): alpha and beta
/// trained jointly with the readout by gradient descent through the engine's
/// exact sensitivities.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceLearning {
    /// Adam learning rate of alpha and beta.
    pub lr: f64,
    /// Clamp range of alpha and beta (the paper's [0.001, 1]).
    pub clamp: (f64, f64),
}

impl Default for DeviceLearning {
    fn default() -> Self {
        Self {
            lr: 0.01,
            clamp: (0.001, 1.0),
        }
    }
}

/// Everything that defines one evaluation, resolved.
///
/// | field | meaning | range |
/// |---|---|---|
/// | `encoding` | how a sample becomes sequences | rows, sequence, voxel slices, channels |
/// | `readout` | readout configuration (kind, hidden layers, optimiser, epochs, seed) | see [`TrainConfig`] |
/// | `alpha`, `beta` | device parameters (initial values when learning) | finite, > 0 |
/// | `w0` | initial device state | finite, > 0 |
/// | `per_step` | one alpha/beta per step (voxels) rather than scalars | |
/// | `repeats` | seeded splits evaluated (mean and std reported) | >= 1 |
/// | `test_fraction` | test share of each re-split (`repeats > 1`) | (0, 1) |
/// | `vote` | class decided by majority over an object's slices | needs groups |
/// | `device` | false: the readout sees the raw inputs (the baseline) | |
/// | `learn_device` | learn alpha, beta with the readout | MLP or softmax readout |
#[derive(Clone, Debug, Serialize)]
pub struct Protocol {
    /// Encoder.
    pub encoding: Encoding,
    /// Readout.
    pub readout: TrainConfig,
    /// Device alpha.
    pub alpha: f64,
    /// Device beta.
    pub beta: f64,
    /// Initial state.
    pub w0: f64,
    /// Per-step parameters (all steps start at `alpha`, `beta`).
    pub per_step: bool,
    /// Number of seeded splits.
    pub repeats: usize,
    /// Test share of each re-split.
    pub test_fraction: f64,
    /// Majority vote over groups (objects) at evaluation.
    pub vote: bool,
    /// Drop readout samples whose input is all zero (empty voxel slices carry
    /// no information and would otherwise vote for the majority class).
    pub drop_empty: bool,
    /// Use the kinetics layer (false: raw inputs).
    pub device: bool,
    /// Learn alpha and beta jointly with the readout.
    pub learn_device: Option<DeviceLearning>,
}

fn mlp(
    hidden: &[usize],
    activation: Activation,
    epochs: usize,
    batch_size: usize,
    lr: f64,
) -> TrainConfig {
    TrainConfig {
        kind: ReadoutKind::Mlp,
        hidden: hidden.to_vec(),
        activation,
        epochs,
        batch_size,
        lr,
        ..TrainConfig::default()
    }
}

/// The sigmoid MLPs of the small audio datasets: a few hundred samples, so a
/// long patience (50 epochs) lets early stopping see past the plateaus.
fn small(hidden: &[usize]) -> TrainConfig {
    TrainConfig {
        patience: 50,
        ..mlp(hidden, Activation::Sigmoid, 400, 32, 3e-3)
    }
}

impl Protocol {
    /// The paper's set-up for a named dataset (readout shape, optimiser, epochs,
    /// split), or generic defaults for a dataset given by path.
    ///
    /// alpha = 0.7, beta = 1.0 are the values the paper's authors learned on MNIST
    /// (stable for inputs in [0, 1] since 1.0 < 2 sqrt(0.7)).
    pub fn for_dataset(name: &str, sample_shape: &[usize]) -> Self {
        let base = Protocol {
            encoding: default_encoding(sample_shape),
            readout: mlp(&[32], Activation::Relu, 60, 64, 1e-3),
            alpha: 0.7,
            beta: 1.0,
            w0: 1.0,
            per_step: false,
            repeats: 1,
            test_fraction: 0.2,
            vote: false,
            drop_empty: false,
            device: true,
            learn_device: None,
        };
        match name {
            // FC 784-48-10 on 28 rows of 28 steps; the standard 60k/10k split.
            "mnist" => Protocol {
                readout: mlp(&[48], Activation::Relu, 40, 64, 1e-3),
                ..base
            },
            // FC 128-16 sigmoid, FC 16-10; 5 x 80/20.
            "sitw" => Protocol {
                readout: small(&[16]),
                repeats: 5,
                ..base
            },
            // FC 64-8 sigmoid, FC 8-4; 5 x 80/20.
            "wmms" => Protocol {
                readout: small(&[8]),
                repeats: 5,
                ..base
            },
            // 32 slices x 32 rows x 32 steps, per-step alpha/beta, FC 1024-128-128-128-C, vote.
            "modelnet10" => Protocol {
                readout: mlp(&[128, 128, 128], Activation::Relu, 15, 64, 1e-3),
                per_step: true,
                repeats: 5,
                vote: true,
                drop_empty: true,
                ..base
            },
            // The embedded default: 8 rows of 8 steps, a small MLP.
            "digits" => Protocol {
                readout: mlp(&[32], Activation::Relu, 100, 32, 3e-3),
                ..base
            },
            _ => base,
        }
    }
}

/// The device parameters of a protocol for sequences of `steps` steps.
pub fn device_params(
    alpha: f64,
    beta: f64,
    w0: f64,
    per_step: bool,
    steps: usize,
) -> Result<DeviceParams> {
    if per_step {
        DeviceParams::per_step(1, steps, vec![alpha; steps], vec![beta; steps], w0)
    } else {
        DeviceParams::scalar(&[(alpha, beta)], w0)
    }
}

/// One side (train or test) of a split, encoded: sequences, labels and groups
/// per readout sample.
#[derive(Clone, Debug)]
pub struct Side {
    /// Sequences `[samples * seqs_per_sample, steps]`.
    pub encoded: Encoded,
    /// Label per readout sample.
    pub y: Vec<u32>,
    /// Object id per readout sample (voxel slices), for voting.
    pub groups: Option<Vec<u32>>,
}

impl Side {
    /// Features per readout sample: `seqs_per_sample * steps`.
    pub fn n_features(&self) -> usize {
        self.encoded.seqs_per_sample * self.encoded.steps
    }
    /// Number of readout samples.
    pub fn n(&self) -> usize {
        self.encoded.samples
    }
}

impl Side {
    /// The readout samples `idx` (in that order), with their labels and groups.
    pub fn subset(&self, idx: &[usize]) -> Side {
        let e = &self.encoded;
        let mut x = Vec::with_capacity(idx.len() * e.seqs_per_sample * e.steps);
        for &i in idx {
            x.extend_from_slice(e.sample(i));
        }
        Side {
            encoded: Encoded {
                x,
                seqs: idx.len() * e.seqs_per_sample,
                steps: e.steps,
                seqs_per_sample: e.seqs_per_sample,
                samples: idx.len(),
            },
            y: idx.iter().map(|&i| self.y[i]).collect(),
            groups: self
                .groups
                .as_ref()
                .map(|g| idx.iter().map(|&i| g[i]).collect()),
        }
    }

    /// Keeps the readout samples whose input has a non-zero value (see
    /// [`Protocol::drop_empty`]).
    pub fn drop_empty(self) -> Side {
        let e = &self.encoded;
        let keep: Vec<usize> = (0..e.samples)
            .filter(|&i| e.sample(i).iter().any(|&v| v != 0.0))
            .collect();
        if keep.len() == e.samples {
            return self;
        }
        self.subset(&keep)
    }
}

/// The three sides every selection works on: `fit` trains the readout, `val`
/// chooses among candidates (sweep points, `--tune` settings), `test` is scored
/// once, for the figure reported. `fit` and `val` partition the training side.
#[derive(Clone, Debug)]
pub struct Sides {
    /// Trains the readout.
    pub fit: Side,
    /// Chooses among candidates.
    pub val: Side,
    /// Reported, never chosen on.
    pub test: Side,
}

/// Default share of the training side held out for validation by sweeps,
/// Monte Carlo studies and `run --tune`.
pub const VAL_FRACTION: f64 = 0.2;

/// Carves a validation side from `train`: stratified by label, seeded, and by
/// group when the side has groups (all slices of one object stay on one side),
/// with [`crate::data::split::stratified_split`] (the splitter behind every
/// dataset's train/test split). The one place where sweeps, Monte Carlo and
/// `run --tune` get their validation data.
pub fn carve_validation(train: &Side, fraction: f64, seed: u64) -> Result<(Side, Side)> {
    let s = crate::data::split::stratified_split(
        &train.y,
        train.groups.as_deref(),
        fraction,
        seed ^ VAL_SPLIT_KEY,
    )
    .map_err(|e| match e {
        Error::InvalidParameter {
            value, expected, ..
        } => Error::invalid("val_fraction", value, expected),
        other => other,
    })?;
    Ok((train.subset(&s.train), train.subset(&s.test)))
}

/// Keeps the validation split's stream apart from the train/test split's
/// (same study seed, different key).
const VAL_SPLIT_KEY: u64 = 0x7A1D_5E1E_C7ED_0001;

impl Sides {
    /// `fit` and `val` carved from `train` ([`carve_validation`]), `test` as given.
    pub fn carve(train: &Side, test: Side, val_fraction: f64, seed: u64) -> Result<Sides> {
        let (fit, val) = carve_validation(train, val_fraction, seed)?;
        Ok(Sides { fit, val, test })
    }
}

/// Encodes the train and test sides of `ds` (dropping empty samples when the
/// protocol says so).
pub fn encode_protocol(ds: &Dataset, proto: &Protocol) -> Result<(Side, Side)> {
    let (train, test) = encode_dataset(ds, proto.encoding)?;
    Ok(if proto.drop_empty {
        (train.drop_empty(), test.drop_empty())
    } else {
        (train, test)
    })
}

/// Encodes the train and test sides of `ds`.
pub fn encode_dataset(ds: &Dataset, enc: Encoding) -> Result<(Side, Side)> {
    let factor = enc.samples_per_input(&ds.sample_shape);
    let side = |x: &[f32], y: &[u32], g: &Option<Vec<u32>>| -> Result<Side> {
        let encoded = encode(x, &ds.sample_shape, enc)?;
        Ok(Side {
            encoded,
            y: expand_labels(y, factor),
            groups: g.as_ref().map(|g| expand_labels(g, factor)),
        })
    };
    Ok((
        side(&ds.x_train, &ds.y_train, &ds.groups_train)?,
        side(&ds.x_test, &ds.y_test, &ds.groups_test)?,
    ))
}

/// Runs the kinetics layer over every sequence of `side`. The features of
/// readout sample `i` are row `i` of `w` seen as `[samples, seqs_per_sample * T]`.
pub fn featurize(
    engine: &dyn Engine,
    side: &Side,
    params: &DeviceParams,
    sensitivities: bool,
) -> Result<Features> {
    let e = &side.encoded;
    let batch = Batch::new(&e.x, e.seqs, e.steps, params)?;
    engine.run(
        &batch,
        &RunOptions {
            sensitivities,
            ..RunOptions::default()
        },
    )
}

/// Majority vote per group when every sample is answered ([`readout::vote`]):
/// the voted classes and the groups' labels, in order of first appearance.
pub fn vote(pred: &[u32], y: &[u32], groups: &[u32], n_classes: usize) -> (Vec<u32>, Vec<u32>) {
    let (vp, vy) = readout::vote(pred, None, y, groups, n_classes);
    // Every group has at least one answered sample, so every vote is a class.
    (vp.into_iter().map(|c| c.unwrap_or(0)).collect(), vy)
}

/// The outcome of one split.
#[derive(Clone, Debug, Serialize)]
pub struct SplitOutcome {
    /// Accuracy on the training data (voted where the protocol votes).
    pub train_accuracy: f64,
    /// Accuracy on the held-out test data (voted where the protocol votes).
    pub test_accuracy: f64,
    /// Share of trajectories flagged non-positive or non-finite (train and test).
    pub diverged_fraction: f64,
    /// Final alpha (learned or given); per-step protocols report the mean.
    pub alpha: f64,
    /// Final beta.
    pub beta: f64,
    /// Test confusion matrix `[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    /// Readout weights + device parameters, as the paper counts them.
    pub parameters: usize,
    /// Multiply-adds of the readout + 2 per device step, per input sample.
    pub operations: usize,
    /// Readout samples in train / test.
    pub n_train: usize,
    /// Readout samples in test.
    pub n_test: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// The trained readout (not serialised in reports).
    #[serde(skip)]
    pub trained: Option<Trained>,
}

/// Evaluates one split of `ds` under `proto`: features, readout, accuracies.
/// When any trajectory diverges, no readout is trained and the accuracies are NaN.
pub fn evaluate_split(
    engine: &dyn Engine,
    ds: &Dataset,
    proto: &Protocol,
    progress: Option<&dyn Fn(&EpochReport)>,
) -> Result<SplitOutcome> {
    let start = Instant::now();
    let (train, test) = encode_protocol(ds, proto)?;
    let f = train.n_features();
    let steps = train.encoded.steps;
    let device_count = if proto.device {
        2 * if proto.per_step { steps } else { 1 }
    } else {
        0
    };
    let device_ops = if proto.device {
        2 * train.encoded.seqs_per_sample * steps
    } else {
        0
    };
    let mut out = SplitOutcome {
        train_accuracy: f64::NAN,
        test_accuracy: f64::NAN,
        diverged_fraction: 0.0,
        alpha: proto.alpha,
        beta: proto.beta,
        confusion: Vec::new(),
        parameters: 0,
        operations: 0,
        n_train: train.n(),
        n_test: test.n(),
        seconds: 0.0,
        trained: None,
    };
    // The training side's features at fixed parameters are computed once and
    // serve both the readout's training and its scoring; only learned
    // parameters need them again (at the final values).
    let mut train_feats: Option<(Vec<f32>, [usize; 3])> = None;
    let (trained, alpha, beta) = match (&proto.learn_device, proto.device) {
        (Some(dl), true) => learn_device(engine, &train, proto, dl, progress)?,
        _ => {
            let (x_train, counts) = if proto.device {
                let params =
                    device_params(proto.alpha, proto.beta, proto.w0, proto.per_step, steps)?;
                let ft = featurize(engine, &train, &params, false)?;
                out.diverged_fraction = ft.diverged_fraction();
                if out.diverged_fraction > 0.0 {
                    let fe = featurize(engine, &test, &params, false)?;
                    let n = (ft.status.len() + fe.status.len()) as f64;
                    out.diverged_fraction = (ft.status_counts()[1..].iter().sum::<usize>()
                        + fe.status_counts()[1..].iter().sum::<usize>())
                        as f64
                        / n;
                    out.seconds = start.elapsed().as_secs_f64();
                    return Ok(out);
                }
                let counts = ft.status_counts();
                (ft.w, counts)
            } else {
                (train.encoded.x.clone(), [train.encoded.seqs, 0, 0])
            };
            let trained = readout::train(
                &x_train,
                train.n(),
                f,
                &train.y,
                ds.n_classes,
                &proto.readout,
                progress,
            )?;
            train_feats = Some((x_train, counts));
            (trained, proto.alpha, proto.beta)
        }
    };
    // Final features at the final parameters.
    let feats = |side: &Side| -> Result<(Vec<f32>, [usize; 3])> {
        if !proto.device {
            return Ok((side.encoded.x.clone(), [side.encoded.seqs, 0, 0]));
        }
        let params = device_params(alpha, beta, proto.w0, proto.per_step, steps)?;
        let fe = featurize(engine, side, &params, false)?;
        let c = fe.status_counts();
        Ok((fe.w, c))
    };
    let (x_train, c_train) = match train_feats {
        Some(k) => k,
        None => feats(&train)?,
    };
    let (x_test, c_test) = feats(&test)?;
    let bad = c_train[1] + c_train[2] + c_test[1] + c_test[2];
    out.diverged_fraction =
        bad as f64 / (c_train.iter().sum::<usize>() + c_test.iter().sum::<usize>()).max(1) as f64;
    out.alpha = alpha;
    out.beta = beta;
    if bad > 0 {
        out.seconds = start.elapsed().as_secs_f64();
        return Ok(out);
    }
    let score = |x: &[f32], side: &Side| -> (f64, Vec<u32>, Vec<u32>) {
        let pred = trained.predict(x, side.n());
        match (&side.groups, proto.vote) {
            (Some(g), true) => {
                let (vp, vy) = vote(&pred, &side.y, g, ds.n_classes);
                (readout::accuracy(&vp, &vy), vp, vy)
            }
            _ => (readout::accuracy(&pred, &side.y), pred, side.y.clone()),
        }
    };
    out.train_accuracy = score(&x_train, &train).0;
    let (acc, pred, truth) = score(&x_test, &test);
    out.test_accuracy = acc;
    out.confusion = readout::confusion_matrix(&pred, &truth, ds.n_classes);
    out.parameters = trained.parameters() + device_count;
    out.operations = trained.operations() + device_ops;
    out.trained = Some(trained);
    out.seconds = start.elapsed().as_secs_f64();
    Ok(out)
}

/// The chain rule from the features to the device: `(dL/dalpha, dL/dbeta)`
/// from `dx` = dL/dw (one per feature, the layout of `fe.w`) and the engine's
/// sensitivities `fe.grad` (dw/dalpha, dw/dbeta per feature), summed in f64.
pub(crate) fn device_gradient(dx: &[f32], fe: &Features) -> (f64, f64) {
    let g = fe.grad.as_ref().expect("sensitivities requested");
    let (mut ga, mut gb) = (0.0f64, 0.0f64);
    for (i, &d) in dx.iter().enumerate() {
        ga += d as f64 * g[2 * i] as f64;
        gb += d as f64 * g[2 * i + 1] as f64;
    }
    (ga, gb)
}

/// Largest input magnitude the stability projection guards against.
fn max_abs(x: &[f32]) -> f64 {
    x.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64))
}

/// Joint training of the readout and (alpha, beta): each mini-batch runs the
/// engine with sensitivities, backpropagates the readout loss to the features
/// (dL/dw), and chains it through dw/d(alpha, beta). Per-step protocols learn one
/// shared (alpha, beta) pair. After each update the pair is clamped to
/// `dl.clamp` and projected into the positive regime `beta <= 0.99 * 2
/// sqrt(alpha) / max|x|`, so no trajectory can diverge. Early stopping uses a
/// validation split of the training data; the best epoch's readout and
/// parameters are kept.
pub fn learn_device(
    engine: &dyn Engine,
    train: &Side,
    proto: &Protocol,
    dl: &DeviceLearning,
    progress: Option<&dyn Fn(&EpochReport)>,
) -> Result<(Trained, f64, f64)> {
    let cfg = &proto.readout;
    if cfg.kind == ReadoutKind::Ridge {
        return Err(Error::invalid(
            "--readout",
            "ridge",
            "mlp or softmax with --learn-device (ridge has no gradient loop)",
        ));
    }
    let (lo, hi) = dl.clamp;
    let e = &train.encoded;
    let (t, f) = (e.steps, train.n_features());
    let n_classes = train
        .y
        .iter()
        .copied()
        .max()
        .map_or(2, |m| m as usize + 1)
        .max(2);
    let xmax = max_abs(&e.x).max(1e-12);
    let project = |a: f64, b: f64| -> (f64, f64) {
        let a = a.clamp(lo, hi);
        let b = b.clamp(lo, hi).min(0.99 * 2.0 * a.sqrt() / xmax);
        (a, b)
    };
    let (mut alpha, mut beta) = project(proto.alpha, proto.beta);
    let (fit, val) = if cfg.val_fraction > 0.0 {
        stratified_split(&train.y, n_classes, cfg.val_fraction, cfg.seed)
    } else {
        ((0..train.n()).collect(), Vec::new())
    };
    let subset = |idx: &[usize]| -> Side { train.subset(idx) };
    let val_side = (!val.is_empty()).then(|| subset(&val));
    let params0 = device_params(alpha, beta, proto.w0, proto.per_step, t)?;
    let f0 = featurize(engine, &subset(&fit), &params0, false)?;
    let std = if cfg.standardize {
        Some(Standardizer::fit(&f0.w, fit.len(), f)?)
    } else {
        None
    };
    let mut trainer = Trainer::new(cfg, f, n_classes, std)?;
    let mut rng = Rng::new(cfg.seed ^ 0xD1CE);
    let mut order = fit.clone();
    // The readout's Adam (as `--protocol paper` and the text network use it)
    // on the pair (alpha, beta).
    let mut dev_opt = OptState::new(2);
    let mut best: Option<(f64, Trainer, f64, f64)> = None;
    let mut since_best = 0usize;
    let start = Instant::now();
    for epoch in 0..cfg.epochs {
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0;
        let mut batches = 0usize;
        for chunk in order.chunks(cfg.batch_size) {
            let side = subset(chunk);
            let params = device_params(alpha, beta, proto.w0, proto.per_step, t)?;
            let fe = featurize(engine, &side, &params, true)?;
            if fe.diverged_fraction() > 0.0 {
                return Err(Error::Internal(format!(
                    "device learning: divergence at alpha {alpha}, beta {beta} despite the projection"
                )));
            }
            let (loss, dx) = trainer.step(&fe.w, &side.y)?;
            let (ga, gb) = device_gradient(&dx, &fe);
            let mut p = [alpha as f32, beta as f32];
            dev_opt.apply(Optimizer::Adam, &mut p, &[ga as f32, gb as f32], dl.lr, 0.0);
            (alpha, beta) = project(p[0] as f64, p[1] as f64);
            loss_sum += loss;
            batches += 1;
        }
        let (val_acc, val_loss) = match &val_side {
            Some(vs) => {
                let params = device_params(alpha, beta, proto.w0, proto.per_step, t)?;
                let fe = featurize(engine, vs, &params, false)?;
                let ev = trainer.evaluate(&fe.w, &vs.y)?;
                (Some(ev.accuracy), Some(ev.loss))
            }
            None => (None, None),
        };
        let report = EpochReport {
            epoch,
            train_loss: loss_sum / batches.max(1) as f64,
            val_accuracy: val_acc,
            val_loss,
            elapsed_s: start.elapsed().as_secs_f64(),
        };
        trainer.record(report.clone());
        if let Some(p) = progress {
            p(&report);
        }
        let score = val_loss.map(|l| -l).unwrap_or(f64::NEG_INFINITY);
        if best.as_ref().is_none_or(|b| score > b.0) || val_side.is_none() {
            best = Some((score, trainer.clone(), alpha, beta));
            since_best = 0;
        } else {
            since_best += 1;
            if cfg.patience > 0 && since_best >= cfg.patience {
                break;
            }
        }
    }
    let (_, mut tr, a, b) = best.ok_or_else(|| Error::invalid("epochs", 0, "at least 1"))?;
    // Keep the full history (including epochs after the best) for the report.
    for r in trainer
        .finish()
        .history
        .into_iter()
        .skip(tr.clone().finish().history.len())
    {
        tr.record(r);
    }
    Ok((tr.finish(), a, b))
}

/// Summary over repeats: mean, sample standard deviation and the values.
#[derive(Clone, Debug, Serialize)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one value).
    pub std: f64,
    /// The values.
    pub values: Vec<f64>,
}

impl Spread {
    /// From values.
    pub fn of(values: Vec<f64>) -> Self {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Self {
            mean,
            std: var.sqrt(),
            values,
        }
    }
}

/// The split of repeat `r`: the dataset's own split when `repeats == 1`,
/// otherwise a stratified re-split seeded by (seed, r).
pub fn split_for_repeat(ds: &Dataset, proto: &Protocol, seed: u64, r: usize) -> Result<Dataset> {
    if proto.repeats <= 1 {
        return Ok(ds.clone());
    }
    ds.resplit(
        proto.test_fraction,
        seed.wrapping_mul(1_000_003).wrapping_add(r as u64 + 1),
    )
}

/// Examples of what the kinetics layer does, for a figure: the first
/// `per_class` test readout samples of each class (at most 10 classes), each
/// with its input and its features at (alpha, beta).
#[derive(Clone, Debug)]
pub struct FeatureExamples {
    /// Rows of each image (sequences per readout sample).
    pub rows: usize,
    /// Columns (steps).
    pub cols: usize,
    /// Class, input `[rows, cols]` and features `[rows, cols]` of each example,
    /// grouped by class in class order.
    pub samples: Vec<(u32, Vec<f32>, Vec<f32>)>,
}

/// [`FeatureExamples`] from the test split: only the inputs needed are
/// encoded (one at a time, in order, until every class has `per_class`
/// readout samples; empty slices dropped as the protocol does) and integrated.
pub fn feature_examples(
    engine: &dyn Engine,
    ds: &Dataset,
    proto: &Protocol,
    alpha: f64,
    beta: f64,
    per_class: usize,
) -> Result<FeatureExamples> {
    let classes = ds.n_classes.min(10);
    let len_in = ds.sample_len();
    let factor = proto.encoding.samples_per_input(&ds.sample_shape);
    let mut picked: Vec<Vec<Side>> = vec![Vec::new(); classes];
    for (i, &y) in ds.y_test.iter().enumerate() {
        if picked.iter().all(|p| p.len() >= per_class) {
            break;
        }
        let c = y as usize;
        if c >= classes || picked[c].len() >= per_class {
            continue;
        }
        let side = Side {
            encoded: encode(
                &ds.x_test[i * len_in..(i + 1) * len_in],
                &ds.sample_shape,
                proto.encoding,
            )?,
            y: vec![y; factor],
            groups: None,
        };
        let side = if proto.drop_empty {
            side.drop_empty()
        } else {
            side
        };
        for j in 0..side.n().min(per_class - picked[c].len()) {
            picked[c].push(side.subset(&[j]));
        }
    }
    let picked: Vec<Side> = picked.into_iter().flatten().collect();
    let Some(first) = picked.first() else {
        return Ok(FeatureExamples {
            rows: 0,
            cols: 0,
            samples: Vec::new(),
        });
    };
    let (rows, cols) = (first.encoded.seqs_per_sample, first.encoded.steps);
    let len = rows * cols;
    let mut x = Vec::with_capacity(picked.len() * len);
    for s in &picked {
        x.extend_from_slice(&s.encoded.x);
    }
    let side = Side {
        encoded: Encoded {
            x,
            seqs: picked.len() * rows,
            steps: cols,
            seqs_per_sample: rows,
            samples: picked.len(),
        },
        y: picked.iter().map(|s| s.y[0]).collect(),
        groups: None,
    };
    let params = device_params(alpha, beta, proto.w0, proto.per_step, cols)?;
    let f = featurize(engine, &side, &params, false)?;
    Ok(FeatureExamples {
        rows,
        cols,
        samples: (0..side.n())
            .map(|j| {
                (
                    side.y[j],
                    side.encoded.x[j * len..(j + 1) * len].to_vec(),
                    f.w[j * len..(j + 1) * len].to_vec(),
                )
            })
            .collect(),
    })
}
