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
//! | `input_scaling` | mc only, `raw` | `raw`, `centred` (per-feature offset and one common gain folded into the first layer) or `standardized` (as `standardize = true`; not both keys) | string |
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
//! | `[grid]` | sweep only | named parameter axes, crossed full factorial | each axis strictly increasing (no repeated value) |
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
use serde::de;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod grid;
mod mc;

pub use crate::readout::ReadoutKind;
pub use grid::{Axis, Dist, GridParam, RandomParam, RandomSpec};
pub use mc::{McModel, McProtocol, McSpec, PAPER_VARIABILITY, Variability};

/// Most points one study may plan (grid size times random draws, or draws).
pub const MAX_POINTS: usize = 10_000_000;

/// The largest spread (sigma, noise) and nominal value a Monte Carlo spec
/// accepts: a draw `mean + sigma z` (|z| < 9) then stays far inside f32.
pub const MAX_SPREAD: f64 = 1e30;

/// A sweep's default readout: ridge (closed form).
fn ridge() -> ReadoutKind {
    ReadoutKind::Ridge
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

/// A parameter sweep: `memkin sweep SPEC`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// A named dataset or a path.
    pub dataset: String,
    /// The readout (default ridge).
    #[serde(default = "ridge")]
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
    #[serde(
        default,
        deserialize_with = "grid::de_grid",
        serialize_with = "grid::ser_grid"
    )]
    pub grid: Vec<GridParam>,
    /// Random parameters.
    #[serde(default, deserialize_with = "grid::de_random")]
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
pub(super) fn at(lines: &BTreeMap<String, usize>, key: &str) -> String {
    lines
        .get(key)
        .map(|l| format!("line {l}: "))
        .unwrap_or_default()
}

pub(super) fn check_name(name: &str) -> std::result::Result<(), String> {
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

pub(super) fn check_count(
    key: &str,
    v: Option<usize>,
    lines: &BTreeMap<String, usize>,
) -> Result<(), String> {
    match v {
        Some(0) => Err(format!("{}{key} = 0: expected >= 1", at(lines, key))),
        _ => Ok(()),
    }
}

/// Key positions of a TOML spec: dotted key path -> (line, byte offset).
type Positions = BTreeMap<String, (usize, usize)>;

/// What the one spec reader needs of a spec type.
trait SpecFile: de::DeserializeOwned {
    /// Records the file and the keys' positions (TOML only; empty for JSON),
    /// restoring the document's order where it matters.
    fn place(&mut self, path: &Path, pos: Positions);
    /// Every check that needs no dataset or engine; the message names the
    /// key and its line.
    fn check(&self) -> std::result::Result<(), String>;
}

/// The one reader of every spec kind: parses `text` (TOML, or JSON by
/// `path`'s extension), places it and checks it.
fn from_text<T: SpecFile>(path: &Path, text: &str) -> Result<T> {
    let format = SpecFormat::of(path);
    let mut spec: T = parse(path, text, format)?;
    let pos = match format {
        SpecFormat::Toml => toml_key_positions(text),
        SpecFormat::Json => Positions::new(),
    };
    spec.place(path, pos);
    spec.check().map_err(|m| spec_err(path, m))?;
    Ok(spec)
}

/// Dotted key -> line, from the positions.
fn lines_of(pos: Positions) -> BTreeMap<String, usize> {
    pos.into_iter().map(|(k, (l, _))| (k, l)).collect()
}

impl SpecFile for SweepSpec {
    fn place(&mut self, path: &Path, pos: Positions) {
        self.path = path.to_path_buf();
        // TOML tables arrive in key order; restore the document's order,
        // which fixes the grid's nesting (first parameter slowest).
        let off = |prefix: &str, name: &str| {
            pos.get(&format!("{prefix}.{name}"))
                .map_or(usize::MAX, |p| p.1)
        };
        self.grid.sort_by_key(|g| off("grid", &g.name));
        if let Some(r) = &mut self.random {
            r.params.sort_by_key(|p| off("random", &p.name));
        }
        self.lines = lines_of(pos);
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
        let mut total = grid::check_grid(&self.grid, l)?;
        if let Some(r) = &self.random {
            total = total.saturating_mul(grid::check_random(r, &self.grid, l)?);
        }
        if total > MAX_POINTS {
            return Err(format!(
                "the plan has {total} points: at most {MAX_POINTS} per study (split it into several specs)"
            ));
        }
        Ok(())
    }
}

impl SweepSpec {
    /// Reads and checks a sweep spec file.
    pub fn from_path(path: &Path) -> Result<Self> {
        from_text(path, &read_spec_text(path)?)
    }

    /// Parses and checks a sweep spec; `path` names the file in errors and
    /// chooses the format by its extension.
    pub fn from_text(path: &Path, text: &str) -> Result<Self> {
        from_text(path, text)
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
