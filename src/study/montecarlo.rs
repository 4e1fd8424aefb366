//! Device-variability Monte Carlo (`memkin mc`): the paper's "DDK-exp"
//! hardware model and more, evaluated over many random draws of the devices.
//!
//! # Protocol
//!
//! 1. A readout is trained at the nominal device parameters (or loaded from a
//!    `memkin run --save-model` file). Its training features, and those of
//!    every step before the draws, come from the CPU engine whatever the
//!    study's backend, so the readout under test, and with it every draw's
//!    accuracy, does not depend on the backend. By default it reads the raw
//!    kinetics features, as the chip's readout does (spec key `standardize`,
//!    default false): a standardised readout divides each feature by its
//!    spread over the training set, and a shared device's alpha drift moves
//!    hundreds of features coherently by a large share of their (small)
//!    spread. Measured on MNIST (20,000 training images, 10 draws): sigma_alpha
//!    = 0.01 alone takes the standardised readout from 0.959 to 0.54 on
//!    average, the paper's sigma_alpha = 0.0955 to chance (0.15); the raw
//!    readout keeps 0.86 over 50 draws of the paper's full model.
//! 2. Optionally the readout is fine-tuned with the noise in the loop (see
//!    [`Nonideal::fine_tune_epochs`]); both readouts are then scored on every
//!    draw (columns `test_accuracy`, before, and `test_accuracy_tuned`, after).
//! 3. Each draw samples its devices on the host ([`sample_devices`]), the
//!    engine integrates the *test* sequences of a whole batch of draws in one
//!    run (the inputs are shared, never copied per draw; cycle-to-cycle noise
//!    is generated inside the engine, on the GPU for the GPU backend), then the
//!    host adds read noise, programs the readout weights into noisy
//!    conductances ([`Conductance`]) and scores the draw.
//!
//! # Randomness
//!
//! Every random number is a pure function of (study seed, draw, device,
//! purpose, step) through Philox4x32-10 ([`crate::rng`]), so results do
//! not depend on the batch size, the GPU chunking, the shard count or the
//! backend (up to f32 rounding of the trajectories on the GPU):
//!
//! | quantity | counter `[draw, device, purpose, step]` | where |
//! |---|---|---|
//! | alpha, beta of device `g` | `[draw, g, ALPHA / BETA, attempt]` (truncated normal by rejection) | host |
//! | device `g` stuck | `[draw, g, STUCK, 0]`, stuck when `u < stuck_fraction` | host |
//! | cycle noise of sequence `s`, step `k` | `[draw, s, STATE_NOISE, k]` | engine (GPU or CPU) |
//! | read noise of sequence `s`, steps `2j`, `2j+1` | `[draw, s, READ_NOISE, j]` (the pair's two normals) | host |
//! | conductance noise of weights `2j`, `2j+1` | `[draw, j, CONDUCTANCE, 0]` (index in the flat parameter vector) | host |
//!
//! The key is the study seed for the draws; the fine-tuning draws use
//! [`fine_tune_seed`] so they never coincide with a test draw.
//!
//! # Non-idealities (the `[variability]` table of the spec)
//!
//! | key | default | meaning | range |
//! |---|---|---|---|
//! | `sigma_alpha`, `sigma_beta` | 0 (off) | device-to-device spread: alpha, beta ~ N(nominal, sigma^2) truncated to > 0. The paper: 0.0955, 0.276 | >= 0 |
//! | `relative` | false | sigmas are fractions of the nominal values | bool |
//! | `per_channel` | false | false: one device per draw shared by all sequences (the paper); true: one device per channel (`seqs_per_sample` devices per draw, e.g. 28 for MNIST rows) | bool |
//! | `cycle_noise` | 0 (off) | cycle-to-cycle noise: `w += sigma * N(0, 1)` after every step, in state units | >= 0 |
//! | `read_noise` | 0 (off) | `feature += sigma * N(0, 1)` on every read state, `w[0]` included | >= 0 |
//! | `stuck_fraction` | 0 (off) | probability that a device is stuck: it reads `stuck_w` at every step | 0 ..= 1 |
//! | `stuck_w` | the nominal `w0` (1) | the state a stuck device reads | > 0 |
//! | `g_min`, `g_max` | 40, 300 (the paper's) | conductance range of the readout weights | 0 <= g_min < g_max |
//! | `g_noise_mean`, `g_noise_std` | 0, 0 | additive programming noise on each conductance. The paper: 0.20329, 1.14726 | finite; std >= 0 |
//! | `quant_bits` | none | program each conductance to one of `2^bits` uniform levels over `[g_min, g_max]` | 1 ..= 16 |
//! | `fine_tune_epochs` | 0 | noise-aware fine-tuning epochs of the readout (MLP or softmax) | >= 0 |
//!
//! The conductance model is on when any of `g_min`, `g_max`, `g_noise_mean`,
//! `g_noise_std`, `quant_bits` is given. It maps each weight matrix (per
//! layer, its own `max|W|`) to `g = c + s W` with `c = (g_min + g_max) / 2`,
//! `s = (g_max - g_min) / 2 / max|W|`, rounds to the quantisation levels,
//! adds the noise, clamps to `[g_min, g_max]` and maps back `W = (g - c) / s`.
//! Biases are not mapped: they stay digital, as in the paper, which maps the
//! weights (a ridge readout's intercepts likewise).
//!
//! A trajectory that diverges under a draw (`beta x > 2 sqrt(alpha)`, the
//! forward-Euler instability) gives no features: its readout sample counts as
//! misclassified, and the share of diverged trajectories is reported per draw
//! (`diverged_fraction`).

use crate::batch::{Batch, DeviceParams};
use crate::data::Dataset;
use crate::encode::{Encoded, Encoding};
use crate::engine::cpu::CpuEngine;
use crate::engine::gpu::GpuOdeEngine;
use crate::engine::ode::OdeSpec;
use crate::engine::{Engine, RunOptions, StepNoise};
use crate::model::integrate::Integrator;
use crate::pipeline::{Protocol, Side, encode_protocol, evaluate_split, split_for_repeat};
use crate::readout::{EpochReport, Model, ReadoutKind, Rng, Trained, Trainer};
use crate::rng::{Stream, purpose, truncated_normal_positive, truncated_normal_range, uniform_f64};
use crate::study::kinetics::Kinetics;
use crate::study::plan::Point;
use crate::study::runner::{Evaluator, Manifest, ResultsTable, read_manifest};
use crate::study::spec::{self, McModel, McSpec, Variability};
use crate::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The paper's smallest conductance (uS).
pub const PAPER_G_MIN: f64 = 40.0;
/// The paper's largest conductance (uS).
pub const PAPER_G_MAX: f64 = 300.0;
/// Device draws per fine-tuning epoch: the training samples are split into
/// this many random parts, each featurised under its own draw.
pub const FINE_TUNE_DRAWS_PER_EPOCH: usize = 16;
/// Default memory for one batch of draws' features (bytes), used when the
/// spec has no `batch` key.
pub const DEFAULT_BATCH_BYTES: usize = 512 << 20;

/// The key of the fine-tuning draws: another stream than the test draws'.
pub fn fine_tune_seed(seed: u64) -> u64 {
    seed ^ 0x4649_4E45_5455_4E45 // "FINETUNE"
}

/// Readout weights stored as analog conductances (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conductance {
    /// Smallest conductance.
    pub g_min: f64,
    /// Largest conductance.
    pub g_max: f64,
    /// Mean of the additive programming noise.
    pub noise_mean: f64,
    /// Standard deviation of the programming noise.
    pub noise_std: f64,
    /// Quantisation to `2^bits` levels, if any.
    pub quant_bits: Option<u32>,
}

impl Conductance {
    /// Programs one weight matrix in place: map, quantise, add noise, clamp,
    /// map back. `offset` is the flat index of `w[0]` in the model's
    /// parameters (it addresses the noise counters).
    pub fn program(&self, w: &mut [f64], stream: &Stream, draw: u32, offset: usize) {
        let m = w.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        if m <= 0.0 || !m.is_finite() {
            return;
        }
        let c = 0.5 * (self.g_min + self.g_max);
        let s = 0.5 * (self.g_max - self.g_min) / m;
        let noisy = self.noise_std > 0.0 || self.noise_mean != 0.0;
        let level = self
            .quant_bits
            .map(|b| (self.g_max - self.g_min) / ((1u64 << b) - 1) as f64);
        for (j, v) in w.iter_mut().enumerate() {
            let mut g = c + s * *v;
            if let Some(step) = level {
                g = self.g_min + ((g - self.g_min) / step).round() * step;
            }
            if noisy {
                let i = offset + j;
                let (z0, z1) = stream.normal_pair(draw, (i / 2) as u32, purpose::CONDUCTANCE, 0);
                let z = if i.is_multiple_of(2) { z0 } else { z1 };
                g += self.noise_mean + self.noise_std * z;
            }
            *v = (g.clamp(self.g_min, self.g_max) - c) / s;
        }
    }

    /// A copy of `readout` with every weight matrix programmed for `draw`.
    pub fn perturb(&self, readout: &Trained, stream: &Stream, draw: u32) -> Trained {
        let mut out = readout.clone();
        match &mut out.model {
            Model::Net(net) => {
                for l in 1..=net.n_layers() {
                    let (wo, bo, _) = net.layer_range(l);
                    let mut w: Vec<f64> = net.params[wo..bo].iter().map(|&v| v as f64).collect();
                    self.program(&mut w, stream, draw, wo);
                    for (p, v) in net.params[wo..bo].iter_mut().zip(w) {
                        *p = v as f32;
                    }
                }
            }
            Model::Ridge(r) => self.program(&mut r.weights, stream, draw, 0),
        }
        out
    }
}

/// The non-idealities of a study, resolved from the spec's `[variability]`
/// table (defaults in the module docs; sigmas made absolute).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Nonideal {
    /// Absolute standard deviation of alpha across devices.
    pub sigma_alpha: f64,
    /// Absolute standard deviation of beta across devices.
    pub sigma_beta: f64,
    /// One device per channel (else one per draw).
    pub per_channel: bool,
    /// Cycle-to-cycle noise on the state, per step.
    pub cycle_noise: f64,
    /// Read noise on every feature.
    pub read_noise: f64,
    /// Probability that a device is stuck.
    pub stuck_fraction: f64,
    /// What a stuck device reads.
    pub stuck_w: f64,
    /// The readout's conductance model, when on.
    pub conductance: Option<Conductance>,
    /// Noise-aware fine-tuning epochs (0: none).
    pub fine_tune_epochs: usize,
    /// A continuous-time model's varied parameters (empty for the map).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub params: Vec<VariedParam>,
}

/// One varied parameter of a continuous-time model: `N(nominal, sigma^2)`
/// truncated to the parameter's valid range, counter `[draw, 0, purpose,
/// attempt]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VariedParam {
    /// The model's name of the parameter (or `w0`).
    pub name: String,
    /// Nominal value.
    pub nominal: f64,
    /// Absolute standard deviation.
    pub sigma: f64,
    /// Philox purpose word ([`purpose::PARAM_BASE`] + index, or
    /// [`purpose::W0`]).
    pub purpose: u32,
    /// Valid range `(lo, lo_exclusive, hi)`.
    #[serde(skip)]
    pub range: (f64, bool, f64),
}

impl VariedParam {
    /// This parameter's value in `draw`.
    pub fn sample(&self, stream: &Stream, draw: u32) -> Result<f64> {
        truncated_normal_range(
            stream,
            self.nominal,
            self.sigma,
            self.range,
            [draw, 0, self.purpose],
        )
        .map_err(|e| match e {
            Error::InvalidParameter {
                field,
                value,
                expected,
            } => Error::invalid(
                format!("variability.sigma.{} ({field})", self.name),
                value,
                expected,
            ),
            o => o,
        })
    }
}

/// The device model of a Monte Carlo spec, resolved and checked against the
/// `[variability]` table before any work: `None` for the discrete map (its
/// `sigma` names checked), else the continuous model's template (nominal
/// values) and its varied parameters.
pub fn resolve_device(spec: &McSpec) -> Result<Option<(OdeSpec, Vec<VariedParam>)>> {
    let v = &spec.variability;
    let table = match &spec.model {
        Some(McModel::Device(t)) => Some(t),
        _ => None,
    };
    let cpu = CpuEngine::fast();
    let kinetics = Kinetics::resolve(table, &cpu, None)?;
    let Kinetics::Ode { template, .. } = kinetics else {
        if let Some(name) = v
            .sigma
            .keys()
            .find(|k| !["alpha", "beta"].contains(&k.as_str()))
        {
            return Err(Error::invalid(
                format!("variability.sigma.{name}"),
                v.sigma[name],
                "a parameter of the discrete map: alpha, beta",
            ));
        }
        for (k, s) in [("alpha", v.sigma_alpha), ("beta", v.sigma_beta)] {
            if s.is_some() && v.sigma.contains_key(k) {
                return Err(Error::invalid(
                    format!("variability.sigma.{k}"),
                    v.sigma[k],
                    format!("either sigma_{k} or sigma.{k}, not both"),
                ));
            }
        }
        return Ok(None);
    };
    let model = template.model;
    let model_name = model.name();
    let off = |key: &str, on: bool| {
        if on {
            Err(Error::invalid(
                format!("variability.{key}"),
                "set",
                format!(
                    "absent for the continuous model {model_name} (a discrete-map kernel effect; read_noise, sigma and the conductance keys apply)"
                ),
            ))
        } else {
            Ok(())
        }
    };
    off("cycle_noise", v.cycle_noise.is_some_and(|x| x > 0.0))?;
    off("stuck_fraction", v.stuck_fraction.is_some_and(|x| x > 0.0))?;
    off("stuck_w", v.stuck_w.is_some())?;
    off("per_channel", v.per_channel == Some(true))?;
    off(
        "fine_tune_epochs",
        v.fine_tune_epochs.is_some_and(|x| x > 0),
    )?;
    let mut sigma = v.sigma.clone();
    for (k, s) in [("alpha", v.sigma_alpha), ("beta", v.sigma_beta)] {
        if let Some(s) = s
            && sigma.insert(k.to_string(), s).is_some()
        {
            return Err(Error::invalid(
                format!("variability.sigma.{k}"),
                v.sigma[k],
                format!("either sigma_{k} or sigma.{k}, not both"),
            ));
        }
    }
    let specs = model.params();
    let w0s = model.w0_spec();
    let names: Vec<&str> = specs.iter().map(|p| p.name).chain(["w0"]).collect();
    let rel = v.relative.unwrap_or(false);
    let mut varied = Vec::new();
    for (name, &s) in &sigma {
        let (nominal, purpose, ps) = match specs.iter().position(|p| p.name == name.as_str()) {
            Some(i) => (
                template.params[i],
                purpose::PARAM_BASE + i as u32,
                &specs[i],
            ),
            None if name == "w0" => (template.w0[0], purpose::W0, &w0s),
            None => {
                return Err(Error::invalid(
                    format!("variability.sigma.{name}"),
                    s,
                    format!("a parameter of {model_name}: {}", names.join(", ")),
                ));
            }
        };
        varied.push(VariedParam {
            name: name.clone(),
            nominal,
            sigma: if rel { s * nominal.abs() } else { s },
            purpose,
            range: (ps.min, ps.min_exclusive, ps.max),
        });
    }
    // Table order, w0 last: the draws.csv columns.
    varied.sort_by_key(|p| p.purpose.wrapping_sub(purpose::PARAM_BASE));
    Ok(Some((template, varied)))
}

impl Nonideal {
    /// Resolves the spec's table against the nominal `alpha`, `beta`, `w0`
    /// (`sigma = { alpha = .., beta = .. }` as `sigma_alpha`, `sigma_beta`).
    pub fn resolve(v: &Variability, alpha: f64, beta: f64, w0: f64) -> Self {
        let rel = v.relative.unwrap_or(false);
        let sig = |k: &str, s: Option<f64>| s.or_else(|| v.sigma.get(k).copied()).unwrap_or(0.0);
        let (fa, fb) = if rel { (alpha, beta) } else { (1.0, 1.0) };
        let any_g = v.g_min.is_some()
            || v.g_max.is_some()
            || v.g_noise_mean.is_some()
            || v.g_noise_std.is_some()
            || v.quant_bits.is_some();
        Self {
            sigma_alpha: sig("alpha", v.sigma_alpha) * fa,
            sigma_beta: sig("beta", v.sigma_beta) * fb,
            per_channel: v.per_channel.unwrap_or(false),
            cycle_noise: v.cycle_noise.unwrap_or(0.0),
            read_noise: v.read_noise.unwrap_or(0.0),
            stuck_fraction: v.stuck_fraction.unwrap_or(0.0),
            stuck_w: v.stuck_w.unwrap_or(w0),
            conductance: any_g.then(|| Conductance {
                g_min: v.g_min.unwrap_or(PAPER_G_MIN),
                g_max: v.g_max.unwrap_or(PAPER_G_MAX),
                noise_mean: v.g_noise_mean.unwrap_or(0.0),
                noise_std: v.g_noise_std.unwrap_or(0.0),
                quant_bits: v.quant_bits,
            }),
            fine_tune_epochs: v.fine_tune_epochs.unwrap_or(0) as usize,
            params: Vec::new(),
        }
    }

    fn check(&self) -> Result<()> {
        if let Some(c) = self.conductance.as_ref().filter(|c| c.g_max <= c.g_min) {
            return Err(Error::invalid(
                "variability.g_min, g_max",
                format!("[{}, {}]", c.g_min, c.g_max),
                "g_min < g_max (defaults 40 and 300)",
            ));
        }
        Ok(())
    }
}

/// The devices of one draw.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceDraw {
    /// Sampled alpha per device (stuck devices included).
    pub alpha: Vec<f64>,
    /// Sampled beta per device.
    pub beta: Vec<f64>,
    /// Which devices are stuck.
    pub stuck: Vec<bool>,
}

impl DeviceDraw {
    /// Mean sampled alpha and beta over the draw's devices.
    pub fn means(&self) -> (f64, f64) {
        let n = self.alpha.len().max(1) as f64;
        (
            self.alpha.iter().sum::<f64>() / n,
            self.beta.iter().sum::<f64>() / n,
        )
    }

    /// Share of the draw's devices that are stuck.
    pub fn stuck_share(&self) -> f64 {
        self.stuck.iter().filter(|&&s| s).count() as f64 / self.stuck.len().max(1) as f64
    }
}

/// Samples the `devices` devices of `draw`: a pure function of (stream,
/// draw, device); see the module docs for the counters.
pub fn sample_devices(
    stream: &Stream,
    draw: u32,
    devices: usize,
    alpha: f64,
    beta: f64,
    v: &Nonideal,
) -> Result<DeviceDraw> {
    let mut d = DeviceDraw {
        alpha: Vec::with_capacity(devices),
        beta: Vec::with_capacity(devices),
        stuck: Vec::with_capacity(devices),
    };
    for g in 0..devices as u32 {
        d.alpha.push(truncated_normal_positive(
            stream,
            alpha,
            v.sigma_alpha,
            draw,
            g,
            purpose::ALPHA,
        )?);
        d.beta.push(truncated_normal_positive(
            stream,
            beta,
            v.sigma_beta,
            draw,
            g,
            purpose::BETA,
        )?);
        d.stuck.push(
            v.stuck_fraction > 0.0 && {
                let r = stream.at(draw, g, purpose::STUCK, 0);
                uniform_f64(r[0], r[1]) < v.stuck_fraction
            },
        );
    }
    Ok(d)
}

/// Device parameters for a run of draws: `P = draws.len()` sets of `G`
/// devices; a stuck device gets `alpha = beta = 0` and `w0 = stuck_w`.
pub fn draws_params(draws: &[DeviceDraw], w0: f64, stuck_w: f64) -> Result<DeviceParams> {
    let g = draws.first().map_or(1, |d| d.alpha.len());
    let (mut a, mut b, mut w) = (Vec::new(), Vec::new(), Vec::new());
    for d in draws {
        for j in 0..g {
            let s = d.stuck[j];
            a.push(if s { 0.0 } else { d.alpha[j] });
            b.push(if s { 0.0 } else { d.beta[j] });
            w.push(if s { stuck_w } else { w0 });
        }
    }
    DeviceParams::new_allow_stuck(draws.len(), g, None, a, b, w)
}

/// Adds read noise to the features `w` (`[seqs, steps]`) of `draw`.
pub fn add_read_noise(w: &mut [f32], steps: usize, stream: &Stream, draw: u32, sigma: f64) {
    w.par_chunks_mut(steps).enumerate().for_each(|(s, row)| {
        for j in 0..steps.div_ceil(2) {
            let (z0, z1) = stream.normal_pair(draw, s as u32, purpose::READ_NOISE, j as u32);
            row[2 * j] += (sigma * z0) as f32;
            if 2 * j + 1 < steps {
                row[2 * j + 1] += (sigma * z1) as f32;
            }
        }
    });
}

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
            let mut order: Vec<u32> = Vec::new();
            let mut votes: std::collections::HashMap<u32, (Vec<u32>, u32)> =
                std::collections::HashMap::new();
            for i in 0..y.len() {
                let e = votes.entry(g[i]).or_insert_with(|| {
                    order.push(g[i]);
                    (vec![0; n_classes], y[i])
                });
                if !bad[i] {
                    e.0[pred[i] as usize] += 1;
                }
            }
            let ok = order
                .iter()
                .filter(|k| {
                    let (c, t) = &votes[*k];
                    let best = c
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
                        .map(|(i, n)| (i as u32, *n));
                    best.is_some_and(|(cls, n)| n > 0 && cls == *t)
                })
                .count();
            ok as f64 / order.len().max(1) as f64
        }
    }
}

/// A readout saved by `memkin run --save-model`.
#[derive(Clone, Debug)]
pub struct SavedModel {
    /// The dataset it was trained on.
    pub dataset: String,
    /// Device alpha it was trained at.
    pub alpha: f64,
    /// Device beta.
    pub beta: f64,
    /// Initial state.
    pub w0: f64,
    /// Encoding of the samples.
    pub encoding: Encoding,
    /// Seeded splits of the run (its split 0 is the model's).
    pub repeats: usize,
    /// Test share of a re-split.
    pub test_fraction: f64,
    /// Majority vote over groups.
    pub vote: bool,
    /// Empty samples dropped.
    pub drop_empty: bool,
    /// The run's seed (fixes the split).
    pub seed: u64,
    /// The readout.
    pub readout: Trained,
}

#[derive(Deserialize)]
struct RawProtocol {
    encoding: Encoding,
    w0: f64,
    repeats: usize,
    test_fraction: f64,
    vote: bool,
    drop_empty: bool,
    device: bool,
}

#[derive(Deserialize)]
struct RawModel {
    memkin_model: u32,
    dataset: String,
    protocol: RawProtocol,
    alpha: f64,
    beta: f64,
    readout: Option<Trained>,
    #[serde(default)]
    seed: u64,
}

impl SavedModel {
    /// Reads a `--save-model` file; errors name the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                path: path.into(),
                hint: "; expected a file written by `memkin run --save-model`".into(),
            },
            _ => Error::io(path, e),
        })?;
        let raw: RawModel = serde_json::from_str(&text).map_err(|e| {
            Error::bad_file(path, format!("not a `memkin run --save-model` file: {e}"))
        })?;
        if raw.memkin_model != 1 {
            return Err(Error::bad_file(
                path,
                format!("memkin_model = {}: expected 1", raw.memkin_model),
            ));
        }
        if !raw.protocol.device {
            return Err(Error::bad_file(
                path,
                "a --no-device model has no kinetics layer to vary",
            ));
        }
        let readout = raw.readout.ok_or_else(|| {
            Error::bad_file(path, "holds no readout (the run's trajectories diverged)")
        })?;
        Ok(Self {
            dataset: raw.dataset,
            alpha: raw.alpha,
            beta: raw.beta,
            w0: raw.protocol.w0,
            encoding: raw.protocol.encoding,
            repeats: raw.protocol.repeats,
            test_fraction: raw.protocol.test_fraction,
            vote: raw.protocol.vote,
            drop_empty: raw.protocol.drop_empty,
            seed: raw.seed,
            readout,
        })
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

fn readout_name(t: &Trained) -> String {
    let sizes: Vec<String> = match &t.model {
        Model::Net(n) => n.sizes.iter().map(|s| s.to_string()).collect(),
        Model::Ridge(r) => vec![r.n_features.to_string(), r.n_classes.to_string()],
    };
    let kind = match t.kind {
        ReadoutKind::Ridge => "ridge",
        ReadoutKind::Softmax => "softmax",
        ReadoutKind::Mlp => "mlp",
    };
    format!("{kind} {}", sizes.join("-"))
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

/// The sub-side of readout samples `idx`.
fn subset(side: &Side, idx: &[usize]) -> Side {
    let e = &side.encoded;
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
        y: idx.iter().map(|&i| side.y[i]).collect(),
        groups: side
            .groups
            .as_ref()
            .map(|g| idx.iter().map(|&i| g[i]).collect()),
    }
}

/// The noisy features of one draw, as the readout sees them.
struct DrawFeatures<'a> {
    /// `[samples, seqs_per_sample * T]`, noisy.
    w: &'a mut [f32],
    /// Engine status per sequence.
    status: &'a [u8],
}

/// The host-side steps shared by the test draws and the fine-tuning draws:
/// stuck devices pinned, read noise added, failed samples flagged.
struct HostSteps<'a> {
    v: &'a Nonideal,
    stream: &'a Stream,
    seqs_per_sample: usize,
    steps: usize,
}

impl HostSteps<'_> {
    /// Returns the per-sample failure flags and the share of diverged
    /// trajectories.
    fn apply(&self, draw: u32, d: &DeviceDraw, f: DrawFeatures<'_>) -> (Vec<bool>, f64) {
        let (t, spp) = (self.steps, self.seqs_per_sample);
        let g = d.stuck.len();
        let seqs = f.status.len();
        let mut ok_seq: Vec<bool> = f.status.iter().map(|&s| s == 0).collect();
        if self.v.cycle_noise > 0.0 && d.stuck.iter().any(|&s| s) {
            // Noise moved the stuck devices' states: pin them back.
            for s in 0..seqs {
                if d.stuck[s % g] {
                    f.w[s * t..(s + 1) * t].fill(self.v.stuck_w as f32);
                    ok_seq[s] = true;
                }
            }
        }
        if self.v.read_noise > 0.0 {
            add_read_noise(f.w, t, self.stream, draw, self.v.read_noise);
        }
        let diverged = ok_seq.iter().filter(|&&o| !o).count() as f64 / seqs.max(1) as f64;
        let bad: Vec<bool> = ok_seq.chunks(spp).map(|c| c.iter().any(|&o| !o)).collect();
        if bad.iter().any(|&b| b) {
            // The readout must not see NaN: zero the failed samples (they count as wrong).
            for (i, &b) in bad.iter().enumerate() {
                if b {
                    f.w[i * spp * t..(i + 1) * spp * t].fill(0.0);
                }
            }
        }
        (bad, diverged)
    }
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
        let model_path = spec.model.as_ref().and_then(|m| match m {
            McModel::File(m) => Some(m),
            McModel::Device(_) => None,
        });
        let model_path = model_path.map(|m| {
            if m.is_absolute() {
                m.clone()
            } else {
                spec.path()
                    .parent()
                    .map_or_else(|| m.clone(), |d| d.join(m))
            }
        });
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
                    proto.readout.kind = match k {
                        spec::ReadoutKind::Ridge => ReadoutKind::Ridge,
                        spec::ReadoutKind::Softmax => ReadoutKind::Softmax,
                        spec::ReadoutKind::Mlp => ReadoutKind::Mlp,
                    };
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
        me.nominal.readout = readout_name(&me.readouts[0]);
        me.nominal.accuracy = me.nominal_accuracy(&cpu, 0)?;
        if me.nominal.variability.fine_tune_epochs > 0 {
            let tuned = me.fine_tune(&cpu, &train, &say)?;
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
    fn fine_tune(&self, cpu: &CpuEngine, train: &Side, say: &dyn Fn(&str)) -> Result<Trained> {
        let base = &self.readouts[0];
        let Model::Net(net) = &base.model else {
            return Err(Error::invalid(
                "variability.fine_tune_epochs",
                self.nominal.variability.fine_tune_epochs,
                "0 with a ridge readout (fine-tuning needs readout = \"mlp\" or \"softmax\")",
            ));
        };
        let cfg = base.config.clone();
        let mut trainer = Trainer::new(
            &cfg,
            base.n_features,
            base.n_classes,
            base.standardizer.clone(),
        )?;
        if trainer.network().sizes != net.sizes {
            return Err(Error::Internal(format!(
                "fine-tuning: network sizes {:?} differ from the readout's {:?}",
                trainer.network().sizes,
                net.sizes
            )));
        }
        trainer.network_mut().params = net.params.clone();
        let v = &self.nominal.variability;
        let ft_seed = fine_tune_seed(self.seed);
        let stream = Stream::new(ft_seed);
        let e = &train.encoded;
        let host = HostSteps {
            v,
            stream: &stream,
            seqs_per_sample: e.seqs_per_sample,
            steps: e.steps,
        };
        let f = e.seqs_per_sample * e.steps;
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
                let d = sample_devices(
                    &stream,
                    draw,
                    self.nominal.devices_per_draw,
                    self.nominal.alpha,
                    self.nominal.beta,
                    v,
                )?;
                let params = draws_params(std::slice::from_ref(&d), self.nominal.w0, v.stuck_w)?;
                let side = subset(train, part);
                let noise = (v.cycle_noise > 0.0).then_some(StepNoise {
                    sigma: v.cycle_noise,
                    seed: ft_seed,
                    set_offset: draw as u64,
                });
                let mut feats = cpu.run(
                    &Batch::new(&side.encoded.x, side.encoded.seqs, e.steps, &params)?,
                    &RunOptions {
                        noise,
                        ..RunOptions::default()
                    },
                )?;
                let (bad, _) = host.apply(
                    draw,
                    &d,
                    DrawFeatures {
                        w: &mut feats.w,
                        status: &feats.status,
                    },
                );
                let keep: Vec<usize> = (0..side.n()).filter(|&i| !bad[i]).collect();
                for mb in keep.chunks(cfg.batch_size) {
                    let mut xb = Vec::with_capacity(mb.len() * f);
                    for &i in mb {
                        xb.extend_from_slice(&feats.w[i * f..(i + 1) * f]);
                    }
                    let yb: Vec<u32> = mb.iter().map(|&i| side.y[i]).collect();
                    let loss = match &v.conductance {
                        None => trainer.train_step(&xb, &yb)?,
                        Some(c) => {
                            let clean = trainer.network().params.clone();
                            let noisy = {
                                let t = Trained {
                                    model: Model::Net(trainer.network().clone()),
                                    ..base.clone()
                                };
                                match c.perturb(&t, &stream, step).model {
                                    Model::Net(n) => n.params,
                                    Model::Ridge(_) => unreachable!("a net stays a net"),
                                }
                            };
                            trainer.network_mut().params = noisy.clone();
                            let loss = trainer.train_step(&xb, &yb)?;
                            let p = &mut trainer.network_mut().params;
                            for ((p, cl), n) in p.iter_mut().zip(&clean).zip(&noisy) {
                                *p = cl + (*p - n);
                            }
                            loss
                        }
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
        let mut tuned = trainer.finish();
        let mut history = base.history.clone();
        history.append(&mut tuned.history);
        tuned.history = history;
        Ok(tuned)
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

// ------------------------------------------------------------------ summary

/// Summary statistics of one metric over the draws.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Number of values.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator; 0 for one value).
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// 5th percentile (linear interpolation, NumPy's default).
    pub p5: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 95% confidence interval of the mean, `mean -+ t(0.975, n-1) std /
    /// sqrt(n)` (Student's t); `None` for fewer than two values.
    pub ci95: Option<[f64; 2]>,
}

/// Two-sided 95% quantile of Student's t with `df` degrees of freedom: a
/// table up to 30, then the Cornish-Fisher expansion (error < 1e-4).
pub fn t_quantile_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    if df == 0 {
        return f64::NAN;
    }
    if df <= 30 {
        return T[df - 1];
    }
    let z = 1.959_963_984_540_054f64;
    let n = df as f64;
    z + (z.powi(3) + z) / (4.0 * n)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
        + (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / (384.0 * n.powi(3))
}

/// Percentile `q` in [0, 1] of sorted values (linear interpolation).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

impl Stats {
    /// The statistics of the finite values among `values`.
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n.max(1) as f64;
        let std = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let half = t_quantile_975(n.saturating_sub(1)) * std / (n as f64).sqrt();
        Self {
            n,
            mean: if n == 0 { f64::NAN } else { mean },
            std,
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
            p5: percentile(&v, 0.05),
            p50: percentile(&v, 0.5),
            p95: percentile(&v, 0.95),
            ci95: (n > 1).then_some([mean - half, mean + half]),
        }
    }
}

/// The keys `memkin mc` records in the manifest (and so finds again after a
/// resume or a merge): the nominal set-up and the backend.
pub fn manifest_extra(
    nominal: &Nominal,
    backend: &crate::engine::BackendInfo,
) -> serde_json::Value {
    serde_json::json!({
        "nominal": nominal,
        "backend": backend.backend,
        "adapter": backend.adapter,
        "adapter_type": backend.adapter_type,
    })
}

/// Reads a Monte Carlo study directory (complete or not, sharded or merged)
/// and writes `summary.json` and `histogram.png` (plus
/// `histogram_tuned.png` after fine-tuning) atomically; returns the summary.
pub fn write_report(dir: &Path) -> Result<serde_json::Value> {
    let m: Manifest = read_manifest(dir)?
        .ok_or_else(|| Error::bad_file(dir, "no manifest.json: not a memkin study directory"))?;
    let table = ResultsTable::read(&dir.join(&m.results))?;
    let col = |name: &str| table.column(name);
    let before = col("test_accuracy").ok_or_else(|| {
        Error::bad_file(
            dir.join(&m.results),
            "no test_accuracy column: not a memkin mc study",
        )
    })?;
    let after = col("test_accuracy_tuned");
    let nominal = m.extra.get("nominal").cloned().unwrap_or_default();
    let nom_acc = nominal.get("accuracy").and_then(|v| v.as_f64());
    let nom_tuned = nominal.get("tuned_accuracy").and_then(|v| v.as_f64());
    let dataset = nominal
        .get("dataset")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string();
    let stats = Stats::of(&before);
    let mean_of = |name: &str| col(name).map(|v| Stats::of(&v).mean);
    let summary = serde_json::json!({
        "dataset": dataset,
        "metric": "test_accuracy",
        "draws": stats.n,
        "points": m.points,
        "complete": m.status == "complete" && table.rows.len() == m.shard.as_ref().map_or(m.points, |s| s.end - s.start),
        "shard": m.shard,
        "n": stats.n,
        "mean": stats.mean,
        "std": stats.std,
        "min": stats.min,
        "max": stats.max,
        "p5": stats.p5,
        "p50": stats.p50,
        "p95": stats.p95,
        "ci95": stats.ci95,
        "nominal": nom_acc,
        "before": stats,
        "after": after.as_ref().map(|a| Stats::of(a)),
        "nominal_after": nom_tuned,
        "alpha": col("alpha").map(|v| Stats::of(&v)),
        "beta": col("beta").map(|v| Stats::of(&v)),
        "diverged_fraction_mean": mean_of("diverged_fraction"),
        "stuck_mean": mean_of("stuck"),
        "readout": nominal.get("readout"),
        "variability": nominal.get("variability"),
        "n_test": nominal.get("n_test"),
        "backend": m.extra.get("backend").cloned().unwrap_or_else(|| "mixed".into()),
        "adapter": m.extra.get("adapter").cloned().unwrap_or_else(|| "mixed".into()),
        "seed": m.seed,
        "memkin_version": m.memkin_version,
    });
    let mut out = crate::report::npy::Outputs::new();
    out.text(
        &dir.join("summary.json"),
        &format!(
            "{}\n",
            serde_json::to_string_pretty(&summary)
                .map_err(|e| Error::Internal(format!("summary: {e}")))?
        ),
    )?;
    let title = format!("{dataset}: test accuracy over {} device draws", stats.n);
    out.with_path(&dir.join("histogram.png"), |p| {
        crate::report::plot::histogram_png(p, &before, nom_acc, &title, "test accuracy")
    })?;
    if let Some(a) = &after {
        let title = format!("{dataset}: fine-tuned readout over {} draws", stats.n);
        out.with_path(&dir.join("histogram_tuned.png"), |p| {
            crate::report::plot::histogram_png(p, a, nom_tuned, &title, "test accuracy")
        })?;
    }
    out.commit()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantile_matches_tables() {
        assert_eq!(t_quantile_975(1), 12.706);
        assert!((t_quantile_975(49) - 2.0096).abs() < 2e-4);
        assert!((t_quantile_975(120) - 1.9799).abs() < 2e-4);
        assert!((t_quantile_975(31) - 2.0395).abs() < 2e-4);
    }

    #[test]
    fn stats_percentiles_interpolate_like_numpy() {
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0, f64::NAN]);
        assert_eq!((s.n, s.min, s.max, s.p50), (4, 1.0, 4.0, 2.5));
        assert!((s.p5 - 1.15).abs() < 1e-12 && (s.p95 - 3.85).abs() < 1e-12);
        let ci = s.ci95.unwrap();
        assert!((ci[1] - ci[0] - 2.0 * 3.182 * s.std / 2.0).abs() < 1e-12);
        assert!(Stats::of(&[0.5]).ci95.is_none());
    }

    #[test]
    fn conductance_round_trip_without_noise_keeps_weights_and_clamps_with_it() {
        let c = Conductance {
            g_min: 40.0,
            g_max: 300.0,
            noise_mean: 0.0,
            noise_std: 0.0,
            quant_bits: None,
        };
        let s = Stream::new(1);
        let mut w = vec![-2.0, 0.5, 1.0, 2.0];
        c.program(&mut w, &s, 0, 0);
        for (a, b) in w.iter().zip([-2.0, 0.5, 1.0, 2.0]) {
            assert!((a - b).abs() < 1e-12);
        }
        // One bit: every weight becomes -max or +max.
        let q = Conductance {
            quant_bits: Some(1),
            ..c.clone()
        };
        let mut w = vec![-2.0, -0.1, 0.1, 2.0];
        q.program(&mut w, &s, 0, 0);
        assert_eq!(w, vec![-2.0, -2.0, 2.0, 2.0]);
        // Huge noise is clamped to the range: |W'| <= max|W|.
        let n = Conductance {
            noise_std: 1e4,
            ..c
        };
        let mut w = vec![-2.0, 0.5, 1.0, 2.0];
        n.program(&mut w, &s, 3, 0);
        assert!(w.iter().all(|v| v.abs() <= 2.0 + 1e-12));
        let mut again = vec![-2.0, 0.5, 1.0, 2.0];
        n.program(&mut again, &s, 3, 0);
        assert_eq!(w, again);
    }

    #[test]
    fn device_draws_are_pure_functions_of_seed_draw_and_device() {
        let v = Nonideal {
            sigma_alpha: 0.0955,
            sigma_beta: 0.276,
            per_channel: true,
            cycle_noise: 0.0,
            read_noise: 0.0,
            stuck_fraction: 0.3,
            stuck_w: 1.0,
            conductance: None,
            fine_tune_epochs: 0,
            params: Vec::new(),
        };
        let s = Stream::new(9);
        let a = sample_devices(&s, 5, 28, 0.7, 1.0, &v).unwrap();
        let b = sample_devices(&s, 5, 28, 0.7, 1.0, &v).unwrap();
        assert_eq!(a, b);
        // Fewer devices: the same first devices.
        let c = sample_devices(&s, 5, 3, 0.7, 1.0, &v).unwrap();
        assert_eq!(c.alpha[..], a.alpha[..3]);
        assert!(a.alpha.iter().all(|&x| x > 0.0));
        assert!(a.stuck.iter().any(|&x| x) && !a.stuck.iter().all(|&x| x));
        let off = Nonideal {
            sigma_alpha: 0.0,
            sigma_beta: 0.0,
            stuck_fraction: 0.0,
            ..v
        };
        let d = sample_devices(&s, 5, 2, 0.7, 1.0, &off).unwrap();
        assert_eq!(
            (d.alpha, d.beta, d.stuck),
            (vec![0.7; 2], vec![1.0; 2], vec![false; 2])
        );
    }

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
