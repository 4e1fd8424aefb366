//! `protocol = "paper"` in a Monte Carlo spec: the authors' hardware-aware
//! procedure ([`crate::pipeline::hardware`]), one training trial per draw.
//!
//! Each row of `draws.csv` is one trial: the network and alpha, beta are
//! initialised as the authors' `model.py` does, the chip's device is redrawn
//! at the start of epoch 1, training runs with the recipe's optimiser and
//! clipping, and every `eval_every` epochs the noisy conductances and a
//! redrawn device are written into the model before the test split is
//! scored. The row reports the best of those evaluations
//! (`test_accuracy_selected_on_test`: the authors' figure, **selected on
//! test**) beside the last one (`test_accuracy_last`: no selection).
//!
//! # Randomness
//!
//! A trial is a pure function of (study seed, trial index), so rows do not
//! depend on shards or resumes. The network's initialisation, alpha and
//! beta's initial uniform draw and the batch shuffles come from the point's
//! seed (as in `memkin run --protocol paper`); the chip's randomness from
//! Philox under the key [`paper_seed`] (never the honest protocol's key):
//!
//! | quantity | counter `[draw, device, purpose, step]` |
//! |---|---|
//! | redraw of alpha, beta at event `e` (0: epoch 1; `k`: `k`-th evaluation) | `[trial, e, ALPHA / BETA, attempt]` |
//! | conductance noise of weights `2j`, `2j+1` at evaluation `k` | `[trial, j, CONDUCTANCE, k]` |

use super::conductance::Conductance;
use crate::data::Dataset;
use crate::encode::default_encoding;
use crate::engine::{BackendInfo, Engine};
use crate::pipeline::hardware::{Chip, Param};
use crate::pipeline::paper::{PaperRecipe, SELECTION, hardware_trial, paper_split};
use crate::pipeline::{Side, encode_dataset};
use crate::readout::Network;
use crate::rng::{Stream, purpose, truncated_normal_positive};
use crate::study::plan::Point;
use crate::study::runner::Evaluator;
use crate::study::spec::McSpec;
use crate::{Error, Result};
use serde::Serialize;
use std::path::Path;

/// The Philox key of the paper protocol's chip draws for study seed `seed`.
pub fn paper_seed(seed: u64) -> u64 {
    seed ^ 0x5041_5045_5254_5249 // "PAPERTRI"
}

/// The metric columns of a paper-protocol study, in order.
pub const PAPER_METRICS: [&str; 11] = [
    "alpha_init",
    "beta_init",
    "alpha_chip",
    "beta_chip",
    "alpha_final",
    "beta_final",
    "evaluations",
    "best_epoch",
    "redraws_projected",
    "test_accuracy_last",
    "test_accuracy_selected_on_test",
];

/// The column holding the authors' figure: the best evaluation of a trial.
pub const SELECTED_COLUMN: &str = "test_accuracy_selected_on_test";

/// The chip of one trial: Philox counters under [`paper_seed`] (module docs).
pub struct StreamChip {
    stream: Stream,
    trial: u32,
    conductance: Conductance,
}

impl StreamChip {
    /// The chip of trial `trial` (0-based) of a study with chip key `key`.
    pub fn new(key: u64, trial: u32, conductance: Conductance) -> Self {
        Self {
            stream: Stream::new(key),
            trial,
            conductance,
        }
    }
}

impl Chip for StreamChip {
    fn redraw(&mut self, p: Param, event: u32, mean: f64, sigma: f64) -> Result<f64> {
        let which = match p {
            Param::Alpha => purpose::ALPHA,
            Param::Beta => purpose::BETA,
        };
        truncated_normal_positive(&self.stream, mean, sigma, self.trial, event, which)
    }

    fn program(&mut self, net: &mut Network, event: u32) {
        self.conductance
            .program_network_at(net, &self.stream, [self.trial, event]);
    }
}

/// What a paper-protocol study records in its manifest (key `nominal`).
#[derive(Clone, Debug, Serialize)]
pub struct PaperSetup {
    /// Always `"paper"`.
    pub protocol: &'static str,
    /// Always [`SELECTION`]: the reported figure is a best over evaluations
    /// on the test split.
    pub selection: &'static str,
    /// The dataset name.
    pub dataset: String,
    /// The hardware-aware recipe, with the spec's overrides applied.
    pub recipe: PaperRecipe,
    /// Training samples.
    pub n_train: usize,
    /// Test samples (every evaluation scores them all).
    pub n_test: usize,
    /// The Philox key of the chip draws ([`paper_seed`] of the study seed).
    pub chip_key: u64,
}

/// The [`Evaluator`] of a `protocol = "paper"` study: one trial per point.
pub struct PaperMcEvaluator {
    engine: Box<dyn Engine>,
    train: Side,
    test: Side,
    setup: PaperSetup,
    conductance: Conductance,
}

fn first(side: Side, n: Option<usize>, key: &str) -> Result<Side> {
    match n {
        None => Ok(side),
        Some(n) if n <= side.n() => Ok(side.subset(&(0..n).collect::<Vec<_>>())),
        Some(n) => Err(Error::invalid(
            key,
            n,
            format!("at most {} (the split's samples)", side.n()),
        )),
    }
}

impl PaperMcEvaluator {
    /// The authors' hardware-aware recipe for `spec.dataset`, with the
    /// spec's `epochs`, subsets and `[variability]` overrides (the keys
    /// [`crate::study::spec::PAPER_VARIABILITY`]), on the authors' split.
    pub fn new(
        spec: &McSpec,
        ds: &Dataset,
        engine: Box<dyn Engine>,
        data_dir: Option<&Path>,
    ) -> Result<Self> {
        let mut recipe = PaperRecipe::hardware_aware(&spec.dataset)?;
        if let Some(e) = spec.epochs {
            recipe.epochs = e;
        }
        let v = &spec.variability;
        let hw = recipe
            .hardware
            .as_mut()
            .expect("a hardware-aware recipe has its hardware");
        hw.sigma_alpha = v.sigma_alpha.unwrap_or(hw.sigma_alpha);
        hw.sigma_beta = v.sigma_beta.unwrap_or(hw.sigma_beta);
        hw.g_min = v.g_min.unwrap_or(hw.g_min);
        hw.g_max = v.g_max.unwrap_or(hw.g_max);
        hw.g_noise_mean = v.g_noise_mean.unwrap_or(hw.g_noise_mean);
        hw.g_noise_std = v.g_noise_std.unwrap_or(hw.g_noise_std);
        if hw.g_max <= hw.g_min {
            return Err(Error::invalid(
                "variability.g_max",
                hw.g_max,
                format!("> g_min = {}", hw.g_min),
            ));
        }
        if recipe.epochs < hw.eval_every {
            return Err(Error::invalid(
                "epochs",
                recipe.epochs,
                format!(
                    "at least {} (the recipe scores the test split every {} epochs)",
                    hw.eval_every, hw.eval_every
                ),
            ));
        }
        let conductance = Conductance {
            g_min: hw.g_min,
            g_max: hw.g_max,
            noise_mean: hw.g_noise_mean,
            noise_std: hw.g_noise_std,
            quant_bits: None,
        };
        let split = paper_split(ds, &recipe, data_dir)?;
        let (train, test) = encode_dataset(&split, default_encoding(&split.sample_shape))?;
        let f = train.n_features();
        if f != recipe.sizes[0] || split.n_classes != *recipe.sizes.last().unwrap_or(&0) {
            return Err(Error::invalid(
                "dataset",
                &spec.dataset,
                format!(
                    "the recipe's {} features and {} classes (got {f} and {})",
                    recipe.sizes[0],
                    recipe.sizes.last().unwrap_or(&0),
                    split.n_classes
                ),
            ));
        }
        let train = first(train, spec.train_subset, "train_subset")?;
        let test = first(test, spec.test_subset, "test_subset")?;
        let setup = PaperSetup {
            protocol: "paper",
            selection: SELECTION,
            dataset: spec.dataset.clone(),
            n_train: train.n(),
            n_test: test.n(),
            recipe,
            chip_key: paper_seed(spec.seed),
        };
        Ok(Self {
            engine,
            train,
            test,
            setup,
            conductance,
        })
    }

    /// The set-up recorded in the manifest.
    pub fn setup(&self) -> &PaperSetup {
        &self.setup
    }

    /// The manifest keys of a paper-protocol study (as
    /// [`super::manifest_extra`] for the honest one).
    pub fn manifest_extra(&self, backend: &BackendInfo) -> serde_json::Value {
        serde_json::json!({
            "nominal": self.setup,
            "protocol": "paper",
            "backend": backend.backend,
            "adapter": backend.adapter,
            "adapter_type": backend.adapter_type,
        })
    }
}

impl Evaluator for PaperMcEvaluator {
    fn metric_names(&self) -> Vec<String> {
        PAPER_METRICS.iter().map(|s| s.to_string()).collect()
    }

    fn evaluate(&mut self, point: &Point) -> Result<Vec<f64>> {
        let trial = u32::try_from(point.index)
            .map_err(|_| Error::invalid("draws", point.index, "below 2^32"))?;
        let mut chip = StreamChip::new(self.setup.chip_key, trial, self.conductance.clone());
        let o = hardware_trial(
            self.engine.as_ref(),
            &self.train,
            &self.test,
            &self.setup.recipe,
            point.index + 1,
            point.seed,
            &mut chip,
            &|_| {},
        )?;
        let (ac, bc) = o.chip_start.unwrap_or((f64::NAN, f64::NAN));
        let last = o.curve.last();
        Ok(vec![
            o.drawn.0,
            o.drawn.1,
            ac,
            bc,
            last.map_or(f64::NAN, |p| p.alpha),
            last.map_or(f64::NAN, |p| p.beta),
            o.curve.len() as f64,
            o.best_epoch as f64,
            o.redraws_projected as f64,
            o.final_test_accuracy,
            o.best_test_accuracy,
        ])
    }

    fn transfer(&self) -> crate::engine::Transfer {
        self.engine.transfer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readout::{Activation, Rng};

    #[test]
    fn evaluation_noise_is_written_into_the_model_and_differs_by_event() {
        let mut rng = Rng::new(3);
        let net = Network::torch_default(&[6, 4, 3], Activation::Relu, &mut rng);
        let c = Conductance {
            g_min: 40.0,
            g_max: 300.0,
            noise_mean: 0.20329,
            noise_std: 1.14726,
            quant_bits: None,
        };
        let mut chip = StreamChip::new(paper_seed(0), 2, c.clone());
        let mut a = net.clone();
        chip.program(&mut a, 1);
        assert_ne!(a.params, net.params, "the model holds the noisy weights");
        // Persistent: a second evaluation starts from the first's weights.
        let mut b = a.clone();
        chip.program(&mut b, 2);
        let mut fresh = net.clone();
        chip.program(&mut fresh, 2);
        assert_ne!(b.params, fresh.params);
        // Deterministic per (trial, event); another trial, other noise.
        let mut again = net.clone();
        StreamChip::new(paper_seed(0), 2, c.clone()).program(&mut again, 1);
        assert_eq!(again.params, a.params);
        let mut other = net.clone();
        StreamChip::new(paper_seed(0), 3, c).program(&mut other, 1);
        assert_ne!(other.params, a.params);
        // Biases stay digital.
        let (_, bo, end) = net.layer_range(1);
        assert_eq!(a.params[bo..end], net.params[bo..end]);
    }

    #[test]
    fn redraws_are_positive_and_keyed_apart_from_the_honest_draws() {
        let mut chip = StreamChip::new(
            paper_seed(0),
            0,
            super::super::conductance::Conductance {
                g_min: 40.0,
                g_max: 300.0,
                noise_mean: 0.0,
                noise_std: 0.0,
                quant_bits: None,
            },
        );
        for e in 0..200 {
            // A mean near zero: many rejected normals, never a non-positive value.
            let v = chip.redraw(Param::Beta, e, 0.01, 0.276).unwrap();
            assert!(v > 0.0, "{v}");
        }
        assert_ne!(paper_seed(7), 7);
        assert_ne!(paper_seed(7), super::super::training::noise_aware_seed(7));
        assert_ne!(paper_seed(7), super::super::training::fine_tune_seed(7));
    }
}
