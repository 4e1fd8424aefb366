//! Training configuration: unchecked [`TrainConfig`] -> [`TrainConfig::check`].

use serde::{Deserialize, Serialize};

use super::net::{Activation, Optimizer};
use crate::{Error, Result};

/// Which readout to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadoutKind {
    /// Ridge classifier, closed form (scikit-learn's `RidgeClassifier`).
    Ridge,
    /// Multinomial logistic regression (a network with no hidden layer).
    Softmax,
    /// Multi-layer perceptron with the hidden layers of [`TrainConfig::hidden`].
    Mlp,
}

/// Everything that decides how a readout is trained.
///
/// | field           | default   | purpose                                                    | valid range            |
/// |-----------------|-----------|------------------------------------------------------------|------------------------|
/// | `kind`          | `Mlp`     | ridge, softmax regression or MLP                           | —                      |
/// | `hidden`        | `[48]`    | hidden widths of the MLP (the paper's FC 784-48-10)        | non-empty, each >= 1 (Mlp); ignored otherwise |
/// | `activation`    | `Relu`    | hidden nonlinearity                                        | `Sigmoid`, `Relu`      |
/// | `optimizer`     | `Adam`    | gradient method (softmax, MLP)                             | `Adam`, `Sgd`          |
/// | `lr`            | `1e-3`    | learning rate                                              | (0, 10]                |
/// | `momentum`      | `0.9`     | SGD momentum (ignored by Adam)                             | [0, 1)                 |
/// | `epochs`        | `30`      | maximum passes over the training rows                      | 1 ..= 100000           |
/// | `batch_size`    | `64`      | rows per mini-batch (the last one may be smaller)          | >= 1                   |
/// | `l2`            | `1e-4`    | weight decay: adds `l2/2 * sum W^2` (biases exempt)        | [0, 1e3], finite       |
/// | `patience`      | `5`       | epochs without validation gain before stopping; 0 = never stop early (best weights still restored) | any |
/// | `val_fraction`  | `0.1`     | share of the training rows held out (seeded, stratified) for early stopping / lambda choice; 0 = none | [0, 0.5] |
/// | `standardize`   | `true`    | standardise features with train-set mean/std               | —                      |
/// | `ridge_lambda`  | `1.0`     | ridge penalty when `ridge_lambdas` is empty                | >= 0, finite           |
/// | `ridge_lambdas` | `[]`      | candidate penalties, chosen on the validation split, then refitted on all training rows | each >= 0, finite; needs `val_fraction > 0` when more than one |
/// | `seed`          | `0`       | drives initialisation, shuffles and the validation split   | any u64                |
///
/// The test set never enters training: early stopping and lambda selection use
/// the validation split carved from the training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Which readout (see the table above).
    pub kind: ReadoutKind,
    /// Hidden-layer widths for [`ReadoutKind::Mlp`].
    pub hidden: Vec<usize>,
    /// Hidden-layer nonlinearity.
    pub activation: Activation,
    /// Gradient method.
    pub optimizer: Optimizer,
    /// Learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// L2 weight decay.
    pub l2: f64,
    /// Early-stopping patience in epochs (0 disables stopping).
    pub patience: usize,
    /// Fraction of training rows held out for validation.
    pub val_fraction: f64,
    /// Standardise features before training.
    pub standardize: bool,
    /// Ridge penalty.
    pub ridge_lambda: f64,
    /// Ridge penalty grid (chosen on the validation split).
    pub ridge_lambdas: Vec<f64>,
    /// Seed for every random choice.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            kind: ReadoutKind::Mlp,
            hidden: vec![48],
            activation: Activation::Relu,
            optimizer: Optimizer::Adam,
            lr: 1e-3,
            momentum: 0.9,
            epochs: 30,
            batch_size: 64,
            l2: 1e-4,
            patience: 5,
            val_fraction: 0.1,
            standardize: true,
            ridge_lambda: 1.0,
            ridge_lambdas: Vec::new(),
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// Validates every field; the error names the field and its valid range.
    pub fn check(&self) -> Result<()> {
        let finite_in = |name: &str, v: f64, lo: f64, hi: f64, lo_open: bool, range: &str| {
            let ok = v.is_finite() && v <= hi && if lo_open { v > lo } else { v >= lo };
            if ok {
                Ok(())
            } else {
                Err(Error::invalid(name, v, range))
            }
        };
        if self.kind == ReadoutKind::Mlp {
            if self.hidden.is_empty() {
                return Err(Error::invalid(
                    "hidden",
                    "[]",
                    "at least one hidden layer for kind = mlp (use kind = softmax for none)",
                ));
            }
            if let Some(i) = self.hidden.iter().position(|&h| h == 0) {
                return Err(Error::invalid(format!("hidden[{i}]"), 0, "a width >= 1"));
            }
        }
        finite_in("lr", self.lr, 0.0, 10.0, true, "in (0, 10]")?;
        finite_in("momentum", self.momentum, 0.0, 1.0, false, "in [0, 1)")?;
        if self.momentum >= 1.0 {
            return Err(Error::invalid("momentum", self.momentum, "in [0, 1)"));
        }
        if !(1..=100_000).contains(&self.epochs) {
            return Err(Error::invalid("epochs", self.epochs, "in 1..=100000"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("batch_size", 0, ">= 1"));
        }
        finite_in("l2", self.l2, 0.0, 1e3, false, "in [0, 1000]")?;
        finite_in(
            "val_fraction",
            self.val_fraction,
            0.0,
            0.5,
            false,
            "in [0, 0.5]",
        )?;
        finite_in(
            "ridge_lambda",
            self.ridge_lambda,
            0.0,
            f64::MAX,
            false,
            "finite and >= 0",
        )?;
        for (i, &l) in self.ridge_lambdas.iter().enumerate() {
            finite_in(
                &format!("ridge_lambdas[{i}]"),
                l,
                0.0,
                f64::MAX,
                false,
                "finite and >= 0",
            )?;
        }
        if self.kind == ReadoutKind::Ridge
            && self.ridge_lambdas.len() > 1
            && self.val_fraction == 0.0
        {
            return Err(Error::invalid(
                "val_fraction",
                0,
                "in (0, 0.5] to choose among several ridge_lambdas",
            ));
        }
        Ok(())
    }
}
