//! The outputs of one `memkin run`: [`RunReport`] (report.json and the
//! `--json` object, one serde struct), the test confusion matrix as CSV, and
//! the feature-map figure, staged through [`crate::report::output::Outputs`].
//!
//! It sits beside [`crate::saved_model`] in the pipelines' layer: it reads the
//! outcomes of [`crate::pipeline::evaluate_split`] (or `--tune`'s
//! [`crate::pipeline::tune::tune_split`]) and the chip's cost
//! ([`crate::cost::compare`]), and builds the report from them; the command
//! line only resolves its flags, calls, and prints.
//!
//! The report's keys are a contract (the Python package and the integration
//! tests read them): the struct is serialised through a `serde_json::Value`,
//! whose map keeps its keys sorted, so report.json is byte for byte what the
//! earlier hand-written `json!` object gave.

use crate::cost::card::Card;
use crate::cost::{ACTIVITY_SAMPLES, Comparison, compare};
use crate::data::Dataset;
use crate::encode::Encoding;
use crate::engine::{BackendInfo, Engine};
use crate::pipeline::tune::{TuneChoice, TuneGrid};
use crate::pipeline::{Protocol, SplitOutcome, Spread, feature_examples};
use crate::readout::TrainConfig;
use crate::report::output::Outputs;
use crate::report::plot::{FeatureExample, Image, feature_maps_png};
use crate::{Error, Result};
use serde::Serialize;
use std::path::Path;

/// The files of `memkin run --out DIR`, in the order they are planned.
pub const RUN_FILES: [&str; 3] = ["report.json", "confusion.csv", "feature_maps.png"];

/// What `--tune` chose (the report's `tune` key).
#[derive(Clone, Debug, Serialize)]
pub struct TuneBlock {
    /// The candidates.
    pub grid: TuneGrid,
    /// How the choice was made.
    pub selection: &'static str,
    /// The choice on each split.
    pub chosen: Vec<TuneChoice>,
}

/// What the chip would spend per inference (the report's `cost` key).
#[derive(Clone, Debug, Serialize)]
pub struct CostBlock {
    /// The technology card's name.
    pub card: String,
    /// The network the run evaluated (the DDK network, or the raw-input
    /// readout with `--no-device`).
    pub network: String,
    /// Energy per inference (J).
    pub energy_j: f64,
    /// Latency per inference (s).
    pub latency_s: f64,
    /// Area (mm^2).
    pub area_mm2: f64,
    /// Every network priced on the card.
    pub comparison: Comparison,
}

impl CostBlock {
    /// Prices the run on `card` at the device parameters it ended with (the
    /// first split's), with the kinetics activity measured on the test inputs'
    /// trajectories.
    pub fn measure(
        engine: &dyn Engine,
        ds: &Dataset,
        proto: &Protocol,
        first: &SplitOutcome,
        card: &Card,
    ) -> Result<Self> {
        let comparison = compare(
            engine,
            ds,
            &Protocol {
                alpha: first.alpha,
                beta: first.beta,
                ..proto.clone()
            },
            card,
            ACTIVITY_SAMPLES,
        )?;
        let ran = &comparison.networks[if proto.device { 0 } else { 1 }];
        Ok(Self {
            card: card.name.clone(),
            network: ran.name.clone(),
            energy_j: ran.energy_j,
            latency_s: ran.latency_s,
            area_mm2: ran.area_mm2(),
            comparison,
        })
    }
}

/// report.json of `memkin run` (and its `--json` object).
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Dataset name.
    pub dataset: String,
    /// Readout samples in the first split's training side.
    pub n_train: usize,
    /// Readout samples in the first split's test side.
    pub n_test: usize,
    /// Classes.
    pub n_classes: usize,
    /// How a sample becomes sequences (`rows`, `sequence`, `voxel-slices`, `channels`).
    pub encoding: &'static str,
    /// The readout with its layer sizes, e.g. `mlp 784-48-10`.
    pub readout: String,
    /// False for the raw-input baseline (`--no-device`).
    pub device: bool,
    /// Whether alpha and beta were learned.
    pub learn_device: bool,
    /// The first split's alpha.
    pub alpha: f64,
    /// The first split's beta.
    pub beta: f64,
    /// Every split's alpha.
    pub alphas: Vec<f64>,
    /// Every split's beta.
    pub betas: Vec<f64>,
    /// Initial device state.
    pub w0: f64,
    /// One alpha/beta per step.
    pub per_step: bool,
    /// Majority vote over an object's slices.
    pub vote: bool,
    /// Seeded splits evaluated.
    pub repeats: usize,
    /// Mean training accuracy.
    pub train_accuracy: f64,
    /// Mean test accuracy.
    pub test_accuracy: f64,
    /// Sample standard deviation of the test accuracy.
    pub test_accuracy_std: f64,
    /// Every split's test accuracy.
    pub test_accuracies: Vec<f64>,
    /// Readout weights + device parameters (the paper's count).
    pub parameters: usize,
    /// Operations per input sample (the paper's count).
    pub operations: usize,
    /// Wall time of the command, seconds.
    pub seconds: f64,
    /// `cpu` or `gpu`.
    pub backend: String,
    /// Adapter name.
    pub adapter: String,
    /// Adapter type.
    pub adapter_type: String,
    /// The seed of every random choice.
    pub seed: u64,
    /// The readout's configuration.
    pub readout_config: TrainConfig,
    /// Energy, latency and area per inference.
    pub cost: CostBlock,
    /// `--tune`'s choices (null without `--tune`).
    pub tune: Option<TuneBlock>,
    /// The first split's test confusion matrix (confusion.csv).
    #[serde(skip)]
    pub confusion: Vec<Vec<u64>>,
    /// Class names, for confusion.csv.
    #[serde(skip)]
    pub class_names: Vec<String>,
}

/// The selection rule `--tune` follows, as the report states it.
pub const TUNE_SELECTION: &str = "nested: chosen on a validation side carved from each training split; the test split scored once";

/// The encoding's name in the report (the command-line spelling, with a
/// hyphen, as report.json has always had it).
fn encoding_name(e: Encoding) -> &'static str {
    match e {
        Encoding::Rows => "rows",
        Encoding::Sequence => "sequence",
        Encoding::VoxelSlices => "voxel-slices",
        Encoding::Channels => "channels",
    }
}

/// The protocol's readout with its layer sizes, e.g. `mlp 784-48-10`.
pub fn readout_name(proto: &Protocol, ds: &Dataset) -> String {
    let features = ds.sample_len() / proto.encoding.samples_per_input(&ds.sample_shape).max(1);
    proto.readout.name(features, ds.n_classes)
}

impl RunReport {
    /// The report of `outcomes` (one per split, at least one) under `proto`;
    /// `tune` is `--tune`'s grid and its choices.
    pub fn new(
        ds: &Dataset,
        proto: &Protocol,
        outcomes: &[SplitOutcome],
        tune: Option<TuneBlock>,
        cost: CostBlock,
        info: &BackendInfo,
        seed: u64,
        seconds: f64,
    ) -> Result<Self> {
        let first = outcomes
            .first()
            .ok_or_else(|| Error::Internal("run report: no split evaluated".into()))?;
        let test = Spread::of(outcomes.iter().map(|o| o.test_accuracy).collect());
        let train = Spread::of(outcomes.iter().map(|o| o.train_accuracy).collect());
        Ok(Self {
            dataset: ds.name.clone(),
            n_train: first.n_train,
            n_test: first.n_test,
            n_classes: ds.n_classes,
            encoding: encoding_name(proto.encoding),
            readout: readout_name(proto, ds),
            device: proto.device,
            learn_device: proto.learn_device.is_some(),
            alpha: first.alpha,
            beta: first.beta,
            alphas: outcomes.iter().map(|o| o.alpha).collect(),
            betas: outcomes.iter().map(|o| o.beta).collect(),
            w0: proto.w0,
            per_step: proto.per_step,
            vote: proto.vote,
            repeats: proto.repeats,
            train_accuracy: train.mean,
            test_accuracy: test.mean,
            test_accuracy_std: test.std,
            test_accuracies: test.values,
            parameters: first.parameters,
            operations: first.operations,
            seconds,
            backend: info.backend.clone(),
            adapter: info.adapter.clone(),
            adapter_type: info.adapter_type.clone(),
            seed,
            readout_config: proto.readout.clone(),
            cost,
            tune,
            confusion: first.confusion.clone(),
            class_names: ds.class_names.clone(),
        })
    }

    /// The report as one JSON value (keys sorted).
    pub fn to_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self).map_err(|e| Error::Internal(format!("run report: {e}")))
    }

    /// Stages DIR/report.json and DIR/confusion.csv in `out`.
    pub fn stage(&self, dir: &Path, out: &mut Outputs) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json()?)
            .map_err(|e| Error::Internal(format!("run report: {e}")))?;
        out.text(&dir.join(RUN_FILES[0]), &text)?;
        let csv = crate::readout::confusion_csv(&self.confusion, &self.class_names);
        out.text(&dir.join(RUN_FILES[1]), &csv)
    }

    /// The one line on stderr without `--json`.
    pub fn summary_line(&self) -> String {
        format!(
            "{}: {} on {} train / {} test, alpha {:.4}, beta {:.4}: test accuracy {:.4} +- {:.4} over {} split(s) (train {:.4}); {} parameters, {} operations; {:.3e} J, {:.3e} s, {:.4} mm2 per inference on {}; {:.1} s on {} ({})",
            self.dataset,
            self.readout,
            self.n_train,
            self.n_test,
            self.alpha,
            self.beta,
            self.test_accuracy,
            self.test_accuracy_std,
            self.repeats,
            self.train_accuracy,
            self.parameters,
            self.operations,
            self.cost.energy_j,
            self.cost.latency_s,
            self.cost.area_mm2,
            self.cost.card,
            self.seconds,
            self.adapter,
            self.backend
        )
    }
}

/// One line per `--tune` split: what was chosen on validation.
pub fn tune_lines(chosen: &[TuneChoice]) -> Vec<String> {
    chosen
        .iter()
        .enumerate()
        .map(|(r, c)| {
            format!(
                "--tune, split {}: alpha {}, beta {}{} chosen on validation (accuracy {:.4}, {} candidates, {} diverged pairs skipped)",
                r + 1,
                c.alpha,
                c.beta,
                c.ridge_lambda
                    .map(|l| format!(", lambda {l}"))
                    .unwrap_or_default(),
                c.val_accuracy,
                c.candidates,
                c.diverged
            )
        })
        .collect()
}

/// Stages `path` (feature_maps.png): the first test inputs of each class
/// beside their DDK feature maps at (alpha, beta); three per class for up to
/// four classes, else one.
pub fn stage_feature_maps(
    engine: &dyn Engine,
    ds: &Dataset,
    proto: &Protocol,
    alpha: f64,
    beta: f64,
    path: &Path,
    out: &mut Outputs,
) -> Result<()> {
    let per_class = if ds.n_classes <= 4 { 3 } else { 1 };
    let fx = feature_examples(engine, ds, proto, alpha, beta, per_class)?;
    let image = |data: &[f32]| Image {
        rows: fx.rows,
        cols: fx.cols,
        data: data.to_vec(),
    };
    let ex: Vec<FeatureExample> = fx
        .samples
        .iter()
        .map(|(c, input, features)| FeatureExample {
            label: ds
                .class_names
                .get(*c as usize)
                .cloned()
                .unwrap_or_else(|| c.to_string()),
            input: image(input),
            features: image(features),
        })
        .collect();
    let title = format!(
        "{}: inputs and DDK feature maps (alpha {alpha:.3}, beta {beta:.3})",
        ds.name
    );
    out.with_path(path, |tmp| {
        feature_maps_png(tmp, &ex, if per_class == 3 { 3 } else { 5 }, &title)
    })
}
