//! Study specs: what a sweep or a Monte Carlo study computes, read from TOML or
//! JSON (chosen by the file's extension; JSON lets Python generate specs).
//!
//! A sweep spec:
//!
//! ```toml
//! dataset = "sitw"        # a named dataset or a path
//! readout = "ridge"       # ridge (default) | softmax | mlp
//! seed = 7
//! [grid]                  # full factorial, first parameter slowest
//! alpha = { linspace = [0.05, 1.0, 16] }
//! beta  = { logspace = [0.01, 2.0, 16] }
//! # also { values = [0.1, 0.2] }
//! [random]                # n points drawn per grid point (or alone)
//! n = 500
//! w0 = { uniform = [0.5, 1.5] }     # or { loguniform = [a, b] }, 0 < a < b
//! ```
//!
//! Top-level keys (both spec kinds unless marked):
//!
//! | key | default | meaning | range |
//! |---|---|---|---|
//! | `dataset` | required | a named dataset or a path | non-empty |
//! | `readout` | sweep: `ridge`; mc: the dataset's (the paper's MLP) | `ridge`, `softmax` or `mlp` | |
//! | `standardize` | mc only, false | standardise the readout's input features as `memkin run` does (true), or read the raw kinetics features as the chip does (false: far more robust to a shared device's drift, see `study::montecarlo`) | bool |
//! | `model` | mc only, none | a readout saved by `memkin run --save-model`, evaluated instead of training one (path relative to the spec's folder); excludes `readout`, `hidden`, `epochs`, `standardize`, `alpha`, `beta` | a file |
//! | `seed` | 0 | the study seed; every point's seed derives from it and the point's index | u64 |
//! | `hidden` | readout's | hidden units of the MLP readout | >= 1 |
//! | `epochs` | readout's | training epochs (softmax, MLP) | >= 1 |
//! | `train_subset`, `test_subset` | all | use the first N samples of each split | >= 1 |
//! | `batch` | evaluator's | points (draws) evaluated together in one engine dispatch | >= 1 |
//! | `shards` | none | shard count when only an index comes from the environment (Kubernetes' `JOB_COMPLETION_INDEX`) | >= 1 |
//! | `val_fraction` | 0.2 | share of the training side held out (seeded, stratified; by object for voxels) to select the reported point by validation accuracy | (0, 0.5] |
//! | `heatmap` | sweep only, `val` | what `heatmap.png` shows: `val` (validation accuracy, what the selection sees) or `test` | |
//! | `card` | sweep only, `neurosim-22nm` | technology card of the cost columns (`energy_j`, `latency_s`, `area_mm2` per inference) and of `pareto.png`: a preset or a TOML/JSON card file (relative to the spec's folder) | see `docs/cost.md` |
//! | `[grid]` | sweep only | named parameter axes, crossed full factorial | |
//! | `[random]` | sweep only | `n` random points per grid point | `n` >= 1 |
//! | `draws` | mc only, required | Monte Carlo draws | 1 ..= 10,000,000 |
//! | `alpha`, `beta` | mc only, evaluator's | nominal device parameters | > 0 |
//! | `[variability]` | mc only | see [`Variability`] | |
//!
//! Parameter names in `[grid]` and `[random]` are free here (identifiers:
//! letters, digits, `_`; not `index` or `seed`): the evaluator checks them
//! against its model with [`SweepSpec::check_params`], which names the line.
//!
//! Any unknown key, wrong type or out-of-range value is an
//! [`Error::Spec`] naming the file, the key and (for TOML, always; for JSON, for
//! syntax and type errors) its line, before any work starts.

use crate::{Error, Result};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Most points one study may plan (grid size times random draws, or draws).
pub const MAX_POINTS: usize = 10_000_000;

/// The readout trained on each point's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadoutKind {
    /// Ridge regression, closed form (the default).
    #[default]
    Ridge,
    /// Softmax regression.
    Softmax,
    /// A small multilayer perceptron.
    Mlp,
}

/// The accuracy a sweep's heatmap shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeatmapMetric {
    /// Validation accuracy: what the selection sees (the default).
    #[default]
    Val,
    /// Test accuracy (on request: choosing a cell by eye on it selects on test).
    Test,
}

/// Checks a validation fraction (`val_fraction` key) for a message.
fn check_val_fraction(
    v: Option<f64>,
    lines: &BTreeMap<String, usize>,
) -> std::result::Result<(), String> {
    match v {
        Some(f) if !(f.is_finite() && f > 0.0 && f <= 0.5) => Err(format!(
            "{}val_fraction = {f}: expected a share in (0, 0.5] of the training side",
            at(lines, "val_fraction")
        )),
        _ => Ok(()),
    }
}

/// One axis of the grid: the values one parameter takes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    /// `n` evenly spaced values from `start` to `end`, both included
    /// (NumPy's `linspace`; `n = 1` gives `[start]`).
    Linspace {
        /// First value.
        start: f64,
        /// Last value.
        end: f64,
        /// Number of values, >= 1.
        n: usize,
    },
    /// `n` geometrically spaced values from `start` to `end`, both included,
    /// `0 < start, end` (NumPy's `geomspace`: the bounds are values, not
    /// exponents).
    Logspace {
        /// First value, > 0.
        start: f64,
        /// Last value, > 0.
        end: f64,
        /// Number of values, >= 1.
        n: usize,
    },
    /// An explicit list of values, in the order given.
    Values(Vec<f64>),
}

impl Axis {
    /// The axis' values, in order. Endpoints are exact.
    pub fn values(&self) -> Vec<f64> {
        match self {
            Axis::Linspace { start, end, n } => (0..*n)
                .map(|i| {
                    if i + 1 == *n && *n > 1 {
                        *end
                    } else if i == 0 {
                        *start
                    } else {
                        start + (end - start) * (i as f64 / (*n - 1) as f64)
                    }
                })
                .collect(),
            Axis::Logspace { start, end, n } => {
                let (la, lb) = (start.ln(), end.ln());
                (0..*n)
                    .map(|i| {
                        if i + 1 == *n && *n > 1 {
                            *end
                        } else if i == 0 {
                            *start
                        } else {
                            (la + (lb - la) * (i as f64 / (*n - 1) as f64)).exp()
                        }
                    })
                    .collect()
            }
            Axis::Values(v) => v.clone(),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Axis::Linspace { n, .. } | Axis::Logspace { n, .. } => *n,
            Axis::Values(v) => v.len(),
        }
    }

    /// True when the axis has no values (never, once checked).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True for a logspace axis (plots use a log scale for it).
    pub fn is_log(&self) -> bool {
        matches!(self, Axis::Logspace { .. })
    }
}

/// A distribution a random parameter is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dist {
    /// Uniform on `[low, high)`, `low < high`.
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// Log-uniform on `[low, high)`, `0 < low < high`.
    LogUniform {
        /// Lower bound, > 0.
        low: f64,
        /// Upper bound.
        high: f64,
    },
}

impl Dist {
    /// Maps a uniform variate `u` in `[0, 1)` to this distribution.
    pub fn sample(&self, u: f64) -> f64 {
        match *self {
            Dist::Uniform { low, high } => low + (high - low) * u,
            Dist::LogUniform { low, high } => {
                let (la, lb) = (low.ln(), high.ln());
                (la + (lb - la) * u).exp()
            }
        }
    }
}

/// A named grid parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridParam {
    /// Parameter name (e.g. `alpha`).
    pub name: String,
    /// Its values.
    pub axis: Axis,
}

/// A named random parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RandomParam {
    /// Parameter name (e.g. `w0`).
    pub name: String,
    /// Its distribution.
    pub dist: Dist,
}

/// The `[random]` table: `n` draws of the listed parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RandomSpec {
    /// Draws (per grid point when a grid is present), >= 1.
    pub n: usize,
    /// The parameters, in the spec's order.
    pub params: Vec<RandomParam>,
}

/// A parameter sweep: `memkin sweep SPEC`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// A named dataset or a path.
    pub dataset: String,
    /// The readout (default ridge).
    #[serde(default)]
    pub readout: ReadoutKind,
    /// The study seed (default 0).
    #[serde(default)]
    pub seed: u64,
    /// MLP hidden units.
    pub hidden: Option<usize>,
    /// Training epochs.
    pub epochs: Option<usize>,
    /// Use only the first N training samples.
    pub train_subset: Option<usize>,
    /// Use only the first N test samples.
    pub test_subset: Option<usize>,
    /// Points evaluated together in one dispatch.
    pub batch: Option<usize>,
    /// Shard count for environments that give only a shard index.
    pub shards: Option<usize>,
    /// Share of the training side held out (seeded, stratified) to select the
    /// reported point; default [`crate::pipeline::VAL_FRACTION`].
    pub val_fraction: Option<f64>,
    /// What the heatmap shows: validation accuracy (default) or test accuracy.
    pub heatmap: Option<HeatmapMetric>,
    /// Technology card of the cost columns: a preset name or a card file
    /// (relative to the spec's folder); default [`crate::cost::card::DEFAULT_PRESET`].
    pub card: Option<String>,
    /// Grid parameters in the spec's order (first = slowest).
    #[serde(default, deserialize_with = "de_grid", serialize_with = "ser_grid")]
    pub grid: Vec<GridParam>,
    /// Random parameters.
    #[serde(default, deserialize_with = "de_random")]
    pub random: Option<RandomSpec>,
    /// The device model (default: the paper's discrete DDK map).
    pub model: Option<ModelTable>,
    /// Line of each key (dotted path, e.g. `grid.alpha`), TOML only.
    #[serde(skip)]
    lines: BTreeMap<String, usize>,
    /// The spec file (for error messages).
    #[serde(skip)]
    path: PathBuf,
}

/// The `[model]` table of a sweep: which device model computes the features,
/// integrated how. Absent: the paper's discrete DDK map (parameters alpha,
/// beta, w0).
///
/// | key | meaning | default |
/// |---|---|---|
/// | `name` | `ddk` (the discrete map), `ddk-ode`, `diffusive`, `linear-drift` | `ddk` |
/// | `integrator` | `euler`, `heun`, `rk4`, `adaptive`, `exact` (continuous models) | `rk4` |
/// | `substeps` | steps per pulse (fixed-step integrators) | 8 |
/// | `pulse_width`, `rest`, `v_scale` | the pulse protocol | 1, 0, 1 |
/// | `rtol` | relative tolerance (adaptive) | 1e-6 |
/// | `w0` | initial state (unless swept) | the model's default |
/// | `set` | fixed parameters, e.g. `{ v_read = 0.1 }` (the model's names) | the model's defaults |
///
/// The swept parameters are the model's (its table in `memkin::model`) and `w0`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelTable {
    /// Model name.
    #[serde(default)]
    pub name: Option<String>,
    /// Integrator name.
    pub integrator: Option<String>,
    /// Steps per pulse.
    pub substeps: Option<u32>,
    /// Pulse width.
    pub pulse_width: Option<f64>,
    /// Rest after each pulse.
    pub rest: Option<f64>,
    /// Pulse amplitude per unit input.
    pub v_scale: Option<f64>,
    /// Relative tolerance of the adaptive integrator.
    pub rtol: Option<f64>,
    /// Initial state.
    pub w0: Option<f64>,
    /// Fixed parameter values by name.
    #[serde(default)]
    pub set: BTreeMap<String, f64>,
}

/// Device-to-device and cycle-to-cycle variability of a Monte Carlo study
/// (the `[variability]` table). Every field is optional; the evaluator
/// decides what an absent one means (usually: that effect is off).
///
/// | field | meaning | range |
/// |---|---|---|
/// | `sigma_alpha`, `sigma_beta` | spread of alpha, beta per device | >= 0 |
/// | `relative` | sigmas are fractions of the nominal value | bool |
/// | `per_channel` | one draw per channel instead of one per device | bool |
/// | `cycle_noise` | cycle-to-cycle noise on each update | >= 0 |
/// | `read_noise` | noise on each read-out state | >= 0 |
/// | `stuck_fraction` | fraction of devices stuck at `stuck_w` | 0 ..= 1 |
/// | `stuck_w` | the state a stuck device reports | > 0 |
/// | `g_min`, `g_max` | conductance range of the readout weights | 0 <= g_min < g_max |
/// | `g_noise_mean`, `g_noise_std` | programming noise on the weights | finite; std >= 0 |
/// | `quant_bits` | weight quantisation | 1 ..= 16 |
/// | `fine_tune_epochs` | readout epochs retrained on the noisy device | >= 0 |
/// | `sigma` | spread per parameter by name, e.g. `{ eta = 0.1, tau = 0.5 }` | >= 0 |
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variability {
    /// Standard deviation of alpha across devices.
    pub sigma_alpha: Option<f64>,
    /// Standard deviation of beta across devices.
    pub sigma_beta: Option<f64>,
    /// Sigmas relative to the nominal values.
    pub relative: Option<bool>,
    /// One draw per channel.
    pub per_channel: Option<bool>,
    /// Cycle-to-cycle noise.
    pub cycle_noise: Option<f64>,
    /// Read noise.
    pub read_noise: Option<f64>,
    /// Fraction of stuck devices.
    pub stuck_fraction: Option<f64>,
    /// The state of a stuck device.
    pub stuck_w: Option<f64>,
    /// Smallest conductance.
    pub g_min: Option<f64>,
    /// Largest conductance.
    pub g_max: Option<f64>,
    /// Mean of the conductance programming noise.
    pub g_noise_mean: Option<f64>,
    /// Standard deviation of the conductance programming noise.
    pub g_noise_std: Option<f64>,
    /// Weight quantisation bits.
    pub quant_bits: Option<u32>,
    /// Readout fine-tuning epochs on the noisy device.
    pub fine_tune_epochs: Option<u32>,
    /// Standard deviation per device parameter, by the model's names (e.g.
    /// `{ eta = 0.1, tau = 0.5 }`; the discrete map: `alpha`, `beta`).
    #[serde(default)]
    pub sigma: BTreeMap<String, f64>,
}

/// The `model` key of a Monte Carlo spec: a saved readout (a string) or the
/// device model (a `[model]` table, see [`ModelTable`]).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum McModel {
    /// A readout file written by `memkin run --save-model`.
    File(PathBuf),
    /// The device model whose parameters vary.
    Device(ModelTable),
}

impl McModel {
    /// The `[model]` table, when the spec has one (not a readout file).
    pub fn table(&self) -> Option<&ModelTable> {
        match self {
            McModel::Device(t) => Some(t),
            McModel::File(_) => None,
        }
    }
}

fn de_mc_model<'de, D: de::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<McModel>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<McModel>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a saved readout file (a string) or a [model] table")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
            Ok(Some(McModel::File(PathBuf::from(v))))
        }
        fn visit_map<A: MapAccess<'de>>(self, m: A) -> std::result::Result<Self::Value, A::Error> {
            ModelTable::deserialize(de::value::MapAccessDeserializer::new(m))
                .map(|t| Some(McModel::Device(t)))
        }
        fn visit_none<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: de::Deserializer<'de>>(
            self,
            d: D2,
        ) -> std::result::Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_any(V)
}

/// A device-variability Monte Carlo study: `memkin mc SPEC`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McSpec {
    /// A named dataset or a path.
    pub dataset: String,
    /// Number of draws.
    pub draws: usize,
    /// The study seed (default 0).
    #[serde(default)]
    pub seed: u64,
    /// The readout (default: the dataset's protocol, the paper's MLP).
    pub readout: Option<ReadoutKind>,
    /// `model = "file.json"`: a readout saved by `memkin run --save-model` (a
    /// path, relative to the spec's folder), evaluated instead of training
    /// one. `[model]` (a table, as in sweeps): the device model whose
    /// parameters vary (default: the paper's discrete DDK map).
    #[serde(default, deserialize_with = "de_mc_model")]
    pub model: Option<McModel>,
    /// MLP hidden units.
    pub hidden: Option<usize>,
    /// Training epochs.
    pub epochs: Option<usize>,
    /// Standardise the readout's input features (default false: raw
    /// kinetics features, as on the chip).
    pub standardize: Option<bool>,
    /// Use only the first N training samples.
    pub train_subset: Option<usize>,
    /// Use only the first N test samples.
    pub test_subset: Option<usize>,
    /// Draws evaluated together in one dispatch.
    pub batch: Option<usize>,
    /// Shard count for environments that give only a shard index.
    pub shards: Option<usize>,
    /// Nominal alpha.
    pub alpha: Option<f64>,
    /// Nominal beta.
    pub beta: Option<f64>,
    /// What varies, and how much.
    #[serde(default)]
    pub variability: Variability,
    #[serde(skip)]
    lines: BTreeMap<String, usize>,
    #[serde(skip)]
    path: PathBuf,
}

// ---------------------------------------------------------------- reading

/// Which syntax a spec is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    /// TOML (`.toml`, and any extension other than `.json`).
    Toml,
    /// JSON (`.json`).
    Json,
}

impl SpecFormat {
    /// The format for a path, by its extension.
    pub fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => SpecFormat::Json,
            _ => SpecFormat::Toml,
        }
    }
}

/// Reads a spec file as text (to be hashed and parsed).
pub fn read_spec_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            path: path.into(),
            hint: String::new(),
        },
        _ => Error::io(path, e),
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn spec_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Spec {
        path: path.into(),
        message: message.into(),
    }
}

fn parse<T: de::DeserializeOwned>(path: &Path, text: &str, format: SpecFormat) -> Result<T> {
    match format {
        SpecFormat::Toml => toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().replace('\n', " ");
            match e.span() {
                Some(s) => spec_err(path, format!("line {}: {msg}", line_of(text, s.start))),
                None => spec_err(path, msg),
            }
        }),
        // serde_json's message ends with "at line L column C".
        SpecFormat::Json => serde_json::from_str(text).map_err(|e| spec_err(path, e.to_string())),
    }
}

/// Dotted key path -> (line, byte offset) for every key of a TOML document.
fn toml_key_positions(text: &str) -> BTreeMap<String, (usize, usize)> {
    fn walk(
        text: &str,
        prefix: &str,
        table: &toml::de::DeTable<'_>,
        out: &mut BTreeMap<String, (usize, usize)>,
    ) {
        for (k, v) in table.iter() {
            let name = if prefix.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{prefix}.{}", k.get_ref())
            };
            let start = k.span().start;
            out.insert(name.clone(), (line_of(text, start), start));
            if let toml::de::DeValue::Table(t) = v.get_ref() {
                walk(text, &name, t, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(doc) = toml::de::DeTable::parse(text) {
        walk(text, "", doc.get_ref(), &mut out);
    }
    out
}

/// "line N: " for a key when its line is known.
fn at(lines: &BTreeMap<String, usize>, key: &str) -> String {
    lines
        .get(key)
        .map(|l| format!("line {l}: "))
        .unwrap_or_default()
}

fn check_name(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(format!(
            "parameter name `{name}`: expected letters, digits and `_`, not starting with a digit"
        ));
    }
    if name == "index" || name == "seed" {
        return Err(format!(
            "parameter name `{name}` is reserved (a results column)"
        ));
    }
    Ok(())
}

fn check_count(key: &str, v: Option<usize>, lines: &BTreeMap<String, usize>) -> Result<(), String> {
    match v {
        Some(0) => Err(format!("{}{key} = 0: expected >= 1", at(lines, key))),
        _ => Ok(()),
    }
}

impl SweepSpec {
    /// Reads and checks a sweep spec file.
    pub fn from_path(path: &Path) -> Result<Self> {
        let text = read_spec_text(path)?;
        Self::from_text(path, &text)
    }

    /// Parses and checks a sweep spec; `path` names the file in errors and
    /// chooses the format by its extension.
    pub fn from_text(path: &Path, text: &str) -> Result<Self> {
        let format = SpecFormat::of(path);
        let mut spec: SweepSpec = parse(path, text, format)?;
        spec.path = path.to_path_buf();
        if format == SpecFormat::Toml {
            let pos = toml_key_positions(text);
            // TOML tables arrive in key order; restore the document's order,
            // which fixes the grid's nesting (first parameter slowest).
            let off = |prefix: &str, name: &str| {
                pos.get(&format!("{prefix}.{name}"))
                    .map_or(usize::MAX, |p| p.1)
            };
            spec.grid.sort_by_key(|g| off("grid", &g.name));
            if let Some(r) = &mut spec.random {
                r.params.sort_by_key(|p| off("random", &p.name));
            }
            spec.lines = pos.into_iter().map(|(k, (l, _))| (k, l)).collect();
        }
        spec.check().map_err(|m| spec_err(path, m))?;
        Ok(spec)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let l = &self.lines;
        if self.dataset.trim().is_empty() {
            return Err(format!(
                "{}dataset is empty: expected a dataset name or path",
                at(l, "dataset")
            ));
        }
        for (key, v) in [
            ("hidden", self.hidden),
            ("epochs", self.epochs),
            ("train_subset", self.train_subset),
            ("test_subset", self.test_subset),
            ("batch", self.batch),
            ("shards", self.shards),
        ] {
            check_count(key, v, l)?;
        }
        check_val_fraction(self.val_fraction, l)?;
        if self.grid.is_empty() && self.random.is_none() {
            return Err("a sweep needs a [grid] table, a [random] table, or both".into());
        }
        let mut total: usize = 1;
        for g in &self.grid {
            let key = format!("grid.{}", g.name);
            let here = at(l, &key);
            check_name(&g.name).map_err(|m| format!("{here}{key}: {m}"))?;
            match &g.axis {
                Axis::Linspace { start, end, n } | Axis::Logspace { start, end, n } => {
                    let kind = if g.axis.is_log() {
                        "logspace"
                    } else {
                        "linspace"
                    };
                    if !start.is_finite() || !end.is_finite() {
                        return Err(format!("{here}{key}: {kind} bounds must be finite"));
                    }
                    if *n == 0 {
                        return Err(format!("{here}{key}: {kind} count 0: expected >= 1"));
                    }
                    if g.axis.is_log() && (*start <= 0.0 || *end <= 0.0) {
                        return Err(format!(
                            "{here}{key}: logspace [{start}, {end}, {n}]: expected 0 < start and 0 < end"
                        ));
                    }
                }
                Axis::Values(v) => {
                    if v.is_empty() {
                        return Err(format!(
                            "{here}{key}: values is empty: expected at least one value"
                        ));
                    }
                    if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
                        return Err(format!("{here}{key}: value {bad}: expected finite values"));
                    }
                }
            }
            total = total.saturating_mul(g.axis.len());
        }
        if let Some(r) = &self.random {
            if r.n == 0 {
                return Err(format!("{}random.n = 0: expected >= 1", at(l, "random.n")));
            }
            if r.params.is_empty() {
                return Err(format!(
                    "{}[random] lists no parameter: expected e.g. w0 = {{ uniform = [0.5, 1.5] }}",
                    at(l, "random")
                ));
            }
            for p in &r.params {
                let key = format!("random.{}", p.name);
                let here = at(l, &key);
                check_name(&p.name).map_err(|m| format!("{here}{key}: {m}"))?;
                if self.grid.iter().any(|g| g.name == p.name) {
                    return Err(format!(
                        "{here}{key}: `{}` is also a grid parameter",
                        p.name
                    ));
                }
                let (low, high, log) = match p.dist {
                    Dist::Uniform { low, high } => (low, high, false),
                    Dist::LogUniform { low, high } => (low, high, true),
                };
                if !(low.is_finite() && high.is_finite() && low < high) {
                    return Err(format!(
                        "{here}{key}: [{low}, {high}]: expected finite low < high"
                    ));
                }
                if log && low <= 0.0 {
                    return Err(format!(
                        "{here}{key}: loguniform [{low}, {high}]: expected 0 < low < high"
                    ));
                }
            }
            total = total.saturating_mul(r.n);
        }
        if total > MAX_POINTS {
            return Err(format!(
                "the plan has {total} points: at most {MAX_POINTS} per study (split it into several specs)"
            ));
        }
        Ok(())
    }

    /// All parameter names, grid first then random, in column order.
    pub fn param_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.grid.iter().map(|g| g.name.clone()).collect();
        if let Some(r) = &self.random {
            names.extend(r.params.iter().map(|p| p.name.clone()));
        }
        names
    }

    /// Checks every parameter name against the names a model accepts; an
    /// unknown one is an error naming it, its line and the valid names.
    pub fn check_params(&self, known: &[&str]) -> Result<()> {
        let random = self
            .random
            .iter()
            .flat_map(|r| r.params.iter().map(|p| ("random", &p.name)));
        for (table, name) in self.grid.iter().map(|g| ("grid", &g.name)).chain(random) {
            if !known.contains(&name.as_str()) {
                return Err(spec_err(
                    &self.path,
                    format!(
                        "{}unknown parameter `{name}` in [{table}]: expected one of {}",
                        at(&self.lines, &format!("{table}.{name}")),
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The line of a dotted key (e.g. `grid.alpha`), when known (TOML).
    pub fn line(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied()
    }

    /// The spec file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl McSpec {
    /// Reads and checks a Monte Carlo spec file.
    pub fn from_path(path: &Path) -> Result<Self> {
        let text = read_spec_text(path)?;
        Self::from_text(path, &text)
    }

    /// Parses and checks a Monte Carlo spec; `path` names the file in errors
    /// and chooses the format by its extension.
    pub fn from_text(path: &Path, text: &str) -> Result<Self> {
        let format = SpecFormat::of(path);
        let mut spec: McSpec = parse(path, text, format)?;
        spec.path = path.to_path_buf();
        if format == SpecFormat::Toml {
            spec.lines = toml_key_positions(text)
                .into_iter()
                .map(|(k, (l, _))| (k, l))
                .collect();
        }
        spec.check().map_err(|m| spec_err(path, m))?;
        Ok(spec)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let l = &self.lines;
        if self.dataset.trim().is_empty() {
            return Err(format!(
                "{}dataset is empty: expected a dataset name or path",
                at(l, "dataset")
            ));
        }
        if self.draws == 0 || self.draws > MAX_POINTS {
            return Err(format!(
                "{}draws = {}: expected 1 <= draws <= {MAX_POINTS}",
                at(l, "draws"),
                self.draws
            ));
        }
        for (key, v) in [
            ("hidden", self.hidden),
            ("epochs", self.epochs),
            ("train_subset", self.train_subset),
            ("test_subset", self.test_subset),
            ("batch", self.batch),
            ("shards", self.shards),
        ] {
            check_count(key, v, l)?;
        }
        if let Some(McModel::Device(t)) = &self.model {
            let continuous = t.name.as_deref().is_some_and(|n| n != "ddk");
            for (key, v) in [("alpha", self.alpha), ("beta", self.beta)] {
                if continuous && v.is_some() {
                    return Err(format!(
                        "{}{key}: the discrete map's nominal value; a continuous model's nominal values go in [model] set = {{ .. }}",
                        at(l, key)
                    ));
                }
            }
        }
        if matches!(self.model, Some(McModel::File(_))) {
            let fixed = [
                ("readout", self.readout.is_some()),
                ("hidden", self.hidden.is_some()),
                ("epochs", self.epochs.is_some()),
                ("standardize", self.standardize.is_some()),
                ("alpha", self.alpha.is_some()),
                ("beta", self.beta.is_some()),
            ];
            if let Some((key, _)) = fixed.iter().find(|f| f.1) {
                return Err(format!(
                    "{}{key}: fixed by the model file (`model` is set): remove one of the two",
                    at(l, key)
                ));
            }
        }
        for (key, v) in [("alpha", self.alpha), ("beta", self.beta)] {
            if let Some(x) = v.filter(|x| !(x.is_finite() && *x > 0.0)) {
                return Err(format!(
                    "{}{key} = {x}: expected a finite value > 0",
                    at(l, key)
                ));
            }
        }
        self.variability.check(l)
    }

    /// The line of a dotted key (e.g. `variability.read_noise`), when known.
    pub fn line(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied()
    }

    /// The spec file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Variability {
    fn check(&self, l: &BTreeMap<String, usize>) -> std::result::Result<(), String> {
        let range = |field: &str, v: Option<f64>, ok: &dyn Fn(f64) -> bool, expected: &str| match v
        {
            Some(x) if !(x.is_finite() && ok(x)) => {
                let key = format!("variability.{field}");
                Err(format!("{}{key} = {x}: expected {expected}", at(l, &key)))
            }
            _ => Ok(()),
        };
        let nonneg = |x: f64| x >= 0.0;
        range("sigma_alpha", self.sigma_alpha, &nonneg, "sigma_alpha >= 0")?;
        range("sigma_beta", self.sigma_beta, &nonneg, "sigma_beta >= 0")?;
        range("cycle_noise", self.cycle_noise, &nonneg, "cycle_noise >= 0")?;
        range("read_noise", self.read_noise, &nonneg, "read_noise >= 0")?;
        range(
            "stuck_fraction",
            self.stuck_fraction,
            &|x| (0.0..=1.0).contains(&x),
            "0 <= stuck_fraction <= 1",
        )?;
        range("stuck_w", self.stuck_w, &|x| x > 0.0, "stuck_w > 0")?;
        range("g_min", self.g_min, &nonneg, "g_min >= 0")?;
        let g_min = self.g_min.unwrap_or(0.0);
        range(
            "g_max",
            self.g_max,
            &|x| x > g_min,
            "g_max > g_min (and g_max > 0)",
        )?;
        range(
            "g_noise_mean",
            self.g_noise_mean,
            &|_| true,
            "a finite value",
        )?;
        range("g_noise_std", self.g_noise_std, &nonneg, "g_noise_std >= 0")?;
        for (name, &x) in &self.sigma {
            range(
                &format!("sigma.{name}"),
                Some(x),
                &nonneg,
                "a standard deviation >= 0",
            )?;
        }
        if let Some(b) = self.quant_bits.filter(|b| !(1..=16).contains(b)) {
            return Err(format!(
                "{}variability.quant_bits = {b}: expected 1 <= quant_bits <= 16",
                at(l, "variability.quant_bits")
            ));
        }
        Ok(())
    }
}

// ------------------------------------------- order-keeping table readers

/// The axis as written: `{ linspace = [a, b, n] }` etc.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum RawAxis {
    Linspace(f64, f64, f64),
    Logspace(f64, f64, f64),
    Values(Vec<f64>),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum RawDist {
    Uniform(f64, f64),
    LogUniform(f64, f64),
}

fn count<E: de::Error>(n: f64) -> std::result::Result<usize, E> {
    if n.fract() == 0.0 && (0.0..=MAX_POINTS as f64).contains(&n) {
        Ok(n as usize)
    } else {
        Err(E::custom(format!(
            "count {n}: expected a whole number 0 ..= {MAX_POINTS}"
        )))
    }
}

impl RawAxis {
    fn check<E: de::Error>(self) -> std::result::Result<Axis, E> {
        Ok(match self {
            RawAxis::Linspace(start, end, n) => Axis::Linspace {
                start,
                end,
                n: count(n)?,
            },
            RawAxis::Logspace(start, end, n) => Axis::Logspace {
                start,
                end,
                n: count(n)?,
            },
            RawAxis::Values(v) => Axis::Values(v),
        })
    }
}

fn de_grid<'de, D: de::Deserializer<'de>>(d: D) -> std::result::Result<Vec<GridParam>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<GridParam>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a table of parameter = { linspace | logspace | values = [...] }")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out: Vec<GridParam> = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                let axis = map.next_value::<RawAxis>()?.check()?;
                if out.iter().any(|g| g.name == name) {
                    return Err(de::Error::custom(format!(
                        "duplicate grid parameter `{name}`"
                    )));
                }
                out.push(GridParam { name, axis });
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

fn ser_grid<S: serde::Serializer>(
    grid: &[GridParam],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(grid.len()))?;
    for g in grid {
        m.serialize_entry(&g.name, &g.axis)?;
    }
    m.end()
}

fn de_random<'de, D: de::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<RandomSpec>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = RandomSpec;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(
                "a table with n = <count> and parameter = { uniform | loguniform = [low, high] }",
            )
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut n = None;
            let mut params: Vec<RandomParam> = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                if name == "n" {
                    n = Some(count(map.next_value::<f64>()?)?);
                    continue;
                }
                let dist = match map.next_value::<RawDist>()? {
                    RawDist::Uniform(low, high) => Dist::Uniform { low, high },
                    RawDist::LogUniform(low, high) => Dist::LogUniform { low, high },
                };
                if params.iter().any(|p| p.name == name) {
                    return Err(de::Error::custom(format!(
                        "duplicate random parameter `{name}`"
                    )));
                }
                params.push(RandomParam { name, dist });
            }
            let n = n.ok_or_else(|| de::Error::custom("[random] needs n = <number of draws>"))?;
            Ok(RandomSpec { n, params })
        }
    }
    d.deserialize_map(V).map(Some)
}
