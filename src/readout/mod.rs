//! Readouts trained on the host: ridge (closed form), softmax regression and a
//! small MLP, all seeded and deterministic.
//!
//! Data convention: features are row-major f32 `[n, f]` (`&[f32]` with `n`,
//! `f`); labels are `&[u32]` in `0..n_classes`. Features that are NaN or
//! infinite (the engine's mark of a divergent trajectory) are rejected with an
//! error naming the row and column; nothing trains on them silently.
//!
//! - [`train`] fits any [`ReadoutKind`] from a [`TrainConfig`] and returns a
//!   [`Trained`] model (predict, scores, accuracy, parameter and operation
//!   counts, history; serde-serialisable).
//! - [`Trainer`] is the step-wise loop under [`train`]: one mini-batch at a
//!   time, returning dL/dX for learning device parameters through the
//!   kinetics engine's sensitivities.
//! - [`Ridge`] / [`RidgeGram`] expose the closed form directly, with one Gram
//!   matrix reused across many lambdas ([`select_lambda`]).
//! - [`Standardizer`], [`confusion_matrix`], [`accuracy`] and the seeded
//!   [`Rng`] (xoshiro256** seeded by SplitMix64) complete the toolbox.
//!
//! Determinism: the same seed gives bit-identical models. Parallel work is
//! split over the *outputs* of matrix products (never over a summed
//! dimension) and every reduction runs in row order, so the rayon thread count
//! does not change the bits either (tested: one thread vs the default pool);
//! elementwise loops are compiled for the widest SIMD available, which cannot
//! change results because they only use correctly rounded operations.
//!
//! ```
//! use memkin::readout::{train, ReadoutKind, TrainConfig};
//! // Two well separated classes in 2-D.
//! let x = [0.0f32, 0.1, 0.2, 0.0, 5.0, 5.1, 5.2, 4.9];
//! let y = [0u32, 0, 1, 1];
//! let cfg = TrainConfig { kind: ReadoutKind::Ridge, ..TrainConfig::default() };
//! let model = train(&x, 4, 2, &y, 2, &cfg, None).unwrap();
//! assert_eq!(model.predict(&x, 4), vec![0, 0, 1, 1]);
//! assert_eq!(model.operations(), 2 * 2);
//! ```

mod config;
mod metrics;
pub mod moments;
mod net;
mod ridge;
pub mod scaling;
mod standardize;
mod trainer;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::rng::Rng;
pub use config::{ReadoutKind, TrainConfig};
pub use metrics::{accuracy, argmax_rows, confusion_csv, confusion_matrix, vote};
pub use moments::{LinearReadout, RidgeMoments, forward_correct};
pub use net::{Activation, BatchNorm, Network, Optimizer};
pub(crate) use net::{OptState, Workspace};
pub use ridge::{LambdaScan, Ridge, RidgeGram, select_lambda};
pub use scaling::{InputScaling, fold_into_first_layer};
pub use standardize::{STD_FLOOR, Standardizer, check_features};
pub use trainer::{EpochReport, Evaluation, Trainer, stratified_split, train};

use crate::{Error, Result};

/// The fitted part of a [`Trained`] readout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// Closed-form ridge weights.
    Ridge(Ridge),
    /// Softmax regression or MLP.
    Net(Network),
}

/// A trained readout: standardiser + model + how it got there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    /// Which readout.
    pub kind: ReadoutKind,
    /// Number of input features.
    pub n_features: usize,
    /// Number of classes.
    pub n_classes: usize,
    /// Applied to raw features before the model (`None`: identity).
    pub standardizer: Option<Standardizer>,
    /// The weights.
    pub model: Model,
    /// One entry per epoch trained (ridge: one).
    pub history: Vec<EpochReport>,
    /// The ridge penalty used (chosen or given); `None` for nets.
    pub ridge_lambda: Option<f64>,
    /// The configuration it was trained with (seed included).
    pub config: TrainConfig,
}

/// A readout's name with its layer sizes, e.g. `mlp 784-48-10`, `ridge
/// 64-10`: the one spelling reports and study manifests use.
pub fn readout_name(kind: ReadoutKind, sizes: &[usize]) -> String {
    let kind = match kind {
        ReadoutKind::Ridge => "ridge",
        ReadoutKind::Softmax => "softmax",
        ReadoutKind::Mlp => "mlp",
    };
    let sizes: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
    format!("{kind} {}", sizes.join("-"))
}

impl TrainConfig {
    /// This configuration's [`readout_name`] for `n_features` inputs and
    /// `n_classes` outputs (hidden layers only for the MLP).
    pub fn name(&self, n_features: usize, n_classes: usize) -> String {
        let mut sizes = vec![n_features];
        if self.kind == ReadoutKind::Mlp {
            sizes.extend(&self.hidden);
        }
        sizes.push(n_classes);
        readout_name(self.kind, &sizes)
    }
}

impl Trained {
    /// The trained readout's [`readout_name`] (its actual layer sizes).
    pub fn name(&self) -> String {
        let sizes = match &self.model {
            Model::Net(n) => n.sizes.clone(),
            Model::Ridge(r) => vec![r.n_features, r.n_classes],
        };
        readout_name(self.kind, &sizes)
    }

    fn standardized<'a>(&self, x: &'a [f32], n: usize) -> std::borrow::Cow<'a, [f32]> {
        assert_eq!(
            x.len(),
            n * self.n_features,
            "Trained: x has {} values, expected {n} * {}",
            x.len(),
            self.n_features
        );
        match &self.standardizer {
            Some(s) => s.transform(x).into(),
            None => x.into(),
        }
    }

    /// Class scores `[n, n_classes]` row-major: logits for nets, decision
    /// values for ridge. Rows with NaN give NaN scores (see [`check_features`]).
    ///
    /// # Panics
    /// If `x.len() != n * n_features`.
    pub fn scores(&self, x: &[f32], n: usize) -> Vec<f32> {
        let xs = self.standardized(x, n);
        match &self.model {
            Model::Ridge(r) => r
                .decision_function(&xs, n)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            Model::Net(net) => net.logits(&xs, n),
        }
    }

    /// Predicted class per row (argmax of the scores; ridge decides in f64).
    ///
    /// # Panics
    /// If `x.len() != n * n_features`.
    pub fn predict(&self, x: &[f32], n: usize) -> Vec<u32> {
        let xs = self.standardized(x, n);
        match &self.model {
            Model::Ridge(r) => r.predict(&xs, n),
            Model::Net(net) => argmax_rows(&net.logits(&xs, n), self.n_classes),
        }
    }

    /// Fraction of rows classified as `y`.
    ///
    /// # Panics
    /// If the shapes disagree.
    pub fn accuracy(&self, x: &[f32], n: usize, y: &[u32]) -> f64 {
        accuracy(&self.predict(x, n), y)
    }

    /// Weights plus biases (ridge: `f * c + c`).
    pub fn parameters(&self) -> usize {
        match &self.model {
            Model::Ridge(r) => r.weights.len() + r.intercept.len(),
            Model::Net(net) => net.parameters(),
        }
    }

    /// Multiply-adds per sample as the paper counts them (weights only):
    /// FC 784-48-10 gives 784*48 + 48*10.
    pub fn operations(&self) -> usize {
        match &self.model {
            Model::Ridge(r) => r.weights.len(),
            Model::Net(net) => net.operations(),
        }
    }

    /// `(epoch, train_loss, val_accuracy)` per epoch.
    pub fn history(&self) -> Vec<(usize, f64, Option<f64>)> {
        self.history
            .iter()
            .map(|r| (r.epoch, r.train_loss, r.val_accuracy))
            .collect()
    }

    /// Writes the model as JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec(self).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(path, json).map_err(|e| Error::io(path, e))
    }

    /// Reads a model written by [`Trained::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::bad_file(path, format!("not a memkin readout: {e}")))
    }
}
