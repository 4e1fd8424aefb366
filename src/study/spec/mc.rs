//! The Monte Carlo spec: [`McSpec`], its `[variability]` table and its
//! `model` key (a saved readout file or a device-model table).

use super::{MAX_POINTS, MAX_SPREAD, ModelTable, ReadoutKind, SpecFile, at, check_count};
use crate::Result;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Device-to-device and cycle-to-cycle variability of a Monte Carlo study
/// (the `[variability]` table). Every field is optional; the evaluator
/// decides what an absent one means (usually: that effect is off).
///
/// | field | meaning | range |
/// |---|---|---|
/// | `sigma_alpha`, `sigma_beta` | spread of alpha, beta per device | 0 ..= 1e30 ([`MAX_SPREAD`](super::MAX_SPREAD); relative: times the nominal value) |
/// | `relative` | sigmas are fractions of the nominal value | bool |
/// | `per_channel` | one draw per channel instead of one per device | bool |
/// | `cycle_noise` | cycle-to-cycle noise on each update | 0 ..= 1e30 |
/// | `read_noise` | noise on each read-out state | 0 ..= 1e30 |
/// | `stuck_fraction` | fraction of devices stuck at `stuck_w` | 0 ..= 1 |
/// | `stuck_w` | the state a stuck device reports | > 0 |
/// | `g_min`, `g_max` | conductance range of the readout weights | 0 <= g_min < g_max |
/// | `g_noise_mean`, `g_noise_std` | programming noise on the weights | magnitude <= 1e30; std >= 0 |
/// | `quant_bits` | weight quantisation | 1 ..= 16 |
/// | `fine_tune_epochs` | readout epochs retrained on the noisy device | >= 0 |
/// | `noise_aware_epochs` | a second readout trained from its initialisation with every step on fresh training draws | >= 0 |
/// | `sigma` | spread per parameter by name, e.g. `{ eta = 0.1, tau = 0.5 }` | 0 ..= 1e30 |
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
    /// Epochs of a readout trained from scratch with the noise in the loop.
    pub noise_aware_epochs: Option<u32>,
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

/// How a Monte Carlo study trains its readout and reports (the `protocol`
/// key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum McProtocol {
    /// memkin's: a readout trained once (at the nominal device, optionally
    /// fine-tuned or noise-aware), scored once per draw on the test split.
    #[default]
    Honest,
    /// The authors' hardware-aware procedure
    /// ([`crate::pipeline::hardware`]): each draw is one training trial
    /// with the chip in the loop, reported as its best evaluation on the
    /// test split (selected on test).
    Paper,
}

/// `[variability]` keys a `protocol = "paper"` spec accepts (they default to
/// the authors' values); every other one is refused.
pub const PAPER_VARIABILITY: [&str; 6] = [
    "sigma_alpha",
    "sigma_beta",
    "g_min",
    "g_max",
    "g_noise_mean",
    "g_noise_std",
];

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
    /// `"honest"` (default) or `"paper"` (the authors' hardware-aware
    /// procedure: a draw is a training trial; see [`McProtocol`]).
    #[serde(default)]
    pub protocol: McProtocol,
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
    /// The readout's input scaling (default `raw`; `centred`: per-feature
    /// offsets and one common gain folded into the first layer;
    /// `standardized`: the same as `standardize = true`).
    pub input_scaling: Option<crate::readout::InputScaling>,
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

impl McSpec {
    /// Reads and checks a Monte Carlo spec file.
    pub fn from_path(path: &Path) -> Result<Self> {
        super::from_text(path, &super::read_spec_text(path)?)
    }

    /// Parses and checks a Monte Carlo spec; `path` names the file in errors
    /// and chooses the format by its extension.
    pub fn from_text(path: &Path, text: &str) -> Result<Self> {
        super::from_text(path, text)
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

impl SpecFile for McSpec {
    fn place(&mut self, path: &Path, pos: super::Positions) {
        self.path = path.to_path_buf();
        self.lines = super::lines_of(pos);
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
        if self.protocol == McProtocol::Paper {
            self.check_paper()?;
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
                ("input_scaling", self.input_scaling.is_some()),
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
            if let Some(x) = v.filter(|x| !(x.is_finite() && *x > 0.0 && *x <= MAX_SPREAD)) {
                return Err(format!(
                    "{}{key} = {x:?}: expected 0 < {key} <= {MAX_SPREAD:e} (the kernels run in f32)",
                    at(l, key)
                ));
            }
        }
        if self.standardize.is_some() && self.input_scaling.is_some() {
            return Err(format!(
                "{}input_scaling: `standardize` is set too: keep one (standardize = true is input_scaling = \"standardized\")",
                at(l, "input_scaling")
            ));
        }
        self.variability.check(l)?;
        // Relative sigmas scale the nominal values: the product must fit too.
        if self.variability.relative == Some(true) {
            for (key, s, nominal) in [
                ("sigma_alpha", self.variability.sigma_alpha, self.alpha),
                ("sigma_beta", self.variability.sigma_beta, self.beta),
            ] {
                if let (Some(s), Some(n)) = (s, nominal)
                    && s * n > MAX_SPREAD
                {
                    let k = format!("variability.{key}");
                    return Err(format!(
                        "{}{k} = {s:?}: relative, so {s:?} x {n:?} = {:e}: expected at most {MAX_SPREAD:e} (a larger spread overflows the f32 kernels)",
                        at(l, &k),
                        s * n
                    ));
                }
            }
        }
        Ok(())
    }
}

impl McSpec {
    fn check_paper(&self) -> std::result::Result<(), String> {
        let l = &self.lines;
        let names = crate::pipeline::hardware::HARDWARE_DATASETS;
        if !names.contains(&self.dataset.as_str()) {
            return Err(format!(
                "{}dataset = {:?}: protocol = \"paper\" needs one of {} (the datasets with the authors' hardware-aware recipe)",
                at(l, "dataset"),
                self.dataset,
                names.join(", ")
            ));
        }
        let v = &self.variability;
        let given = [
            ("readout", self.readout.is_some()),
            ("model", self.model.is_some()),
            ("hidden", self.hidden.is_some()),
            ("standardize", self.standardize.is_some()),
            ("input_scaling", self.input_scaling.is_some()),
            ("alpha", self.alpha.is_some()),
            ("beta", self.beta.is_some()),
            ("batch", self.batch.is_some()),
        ];
        if let Some((k, _)) = given.iter().find(|g| g.1) {
            return Err(format!(
                "{}{k}: fixed by protocol = \"paper\" (the authors' recipe, docs/mc_protocol.md): remove it",
                at(l, k)
            ));
        }
        let chip = [
            ("per_channel", v.per_channel.is_some()),
            ("relative", v.relative.is_some()),
            ("cycle_noise", v.cycle_noise.is_some()),
            ("read_noise", v.read_noise.is_some()),
            ("stuck_fraction", v.stuck_fraction.is_some()),
            ("stuck_w", v.stuck_w.is_some()),
            ("quant_bits", v.quant_bits.is_some()),
            ("fine_tune_epochs", v.fine_tune_epochs.is_some()),
            ("noise_aware_epochs", v.noise_aware_epochs.is_some()),
            ("sigma", !v.sigma.is_empty()),
        ];
        if let Some((k, _)) = chip.iter().find(|g| g.1) {
            let k = format!("variability.{k}");
            return Err(format!(
                "{}{k}: not part of the authors' chip model under protocol = \"paper\" (valid: variability.{{{}}})",
                at(l, &k),
                PAPER_VARIABILITY.join(", ")
            ));
        }
        Ok(())
    }
}

impl Variability {
    fn check(&self, l: &BTreeMap<String, usize>) -> std::result::Result<(), String> {
        let range = |field: &str, v: Option<f64>, ok: &dyn Fn(f64) -> bool, expected: &str| match v
        {
            Some(x) if !(x.is_finite() && ok(x)) => {
                let key = format!("variability.{field}");
                Err(format!("{}{key} = {x:?}: expected {expected}", at(l, &key)))
            }
            _ => Ok(()),
        };
        // A spread so large that a draw overflows the f32 kernels (or the
        // f64 sampler) would fail mid-run: refused here, naming the field.
        let nonneg = |x: f64| x >= 0.0;
        let spread = |x: f64| (0.0..=MAX_SPREAD).contains(&x);
        let within = |field: &str| {
            format!("0 <= {field} <= {MAX_SPREAD:e} (a larger spread overflows the f32 kernels)")
        };
        range(
            "sigma_alpha",
            self.sigma_alpha,
            &spread,
            &within("sigma_alpha"),
        )?;
        range(
            "sigma_beta",
            self.sigma_beta,
            &spread,
            &within("sigma_beta"),
        )?;
        range(
            "cycle_noise",
            self.cycle_noise,
            &spread,
            &within("cycle_noise"),
        )?;
        range(
            "read_noise",
            self.read_noise,
            &spread,
            &within("read_noise"),
        )?;
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
            "g_noise_std",
            self.g_noise_std,
            &spread,
            &within("g_noise_std"),
        )?;
        range(
            "g_noise_mean",
            self.g_noise_mean,
            &|x| x.abs() <= MAX_SPREAD,
            &format!("|g_noise_mean| <= {MAX_SPREAD:e}"),
        )?;
        for (name, &x) in &self.sigma {
            range(
                &format!("sigma.{name}"),
                Some(x),
                &spread,
                &format!(
                    "a standard deviation in [0, {MAX_SPREAD:e}] (a larger spread overflows the f32 kernels)"
                ),
            )?;
        }
        let _ = nonneg;
        if let Some(b) = self.quant_bits.filter(|b| !(1..=16).contains(b)) {
            return Err(format!(
                "{}variability.quant_bits = {b}: expected 1 <= quant_bits <= 16",
                at(l, "variability.quant_bits")
            ));
        }
        Ok(())
    }
}
