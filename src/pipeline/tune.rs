//! `memkin run --tune`: nested, honest selection of the device parameters and
//! the readout's regulariser.
//!
//! Inside each training split, a validation side is carved
//! ([`super::carve_validation`], seeded and stratified, by object for voxels);
//! every candidate of the grid (alpha, beta and, for the ridge readout, lambda;
//! the MLP's epochs are chosen by its early stopping on its own validation rows)
//! is trained on the fit side and scored on the validation side. The best
//! candidate (ties: the first in grid order) is then trained on the whole
//! training split and scored on the test split once, by
//! [`super::evaluate_split`]. The test side is never featurised before the
//! choice is made.

use super::{
    Protocol, Side, SplitOutcome, carve_validation, device_params, evaluate_split, featurize, vote,
};
use crate::data::Dataset;
use crate::engine::Engine;
use crate::readout::{self, ReadoutKind, TrainConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The candidates `--tune` chooses among (`--tune-grid FILE`, TOML with the
/// same keys).
///
/// | key | default | meaning | range |
/// |---|---|---|---|
/// | `alpha` | 0.1, 0.3, 0.5, 0.7, 0.9 | device alpha | each finite, > 0 |
/// | `beta` | 0.25, 0.5, 0.75, 1.0, 1.25 | device beta (pairs past `beta = 2 sqrt(alpha)` diverge and are skipped) | each finite, > 0 |
/// | `ridge_lambda` | 0.01, 0.1, 1, 10, 100 | ridge penalty (ridge readout only) | each finite, >= 0 |
/// | `val_fraction` | 0.2 | share of each training split held out for the choice | (0, 0.5] |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuneGrid {
    /// Device alphas.
    pub alpha: Vec<f64>,
    /// Device betas.
    pub beta: Vec<f64>,
    /// Ridge penalties.
    pub ridge_lambda: Vec<f64>,
    /// Validation share of each training split.
    pub val_fraction: f64,
}

impl Default for TuneGrid {
    fn default() -> Self {
        Self {
            alpha: vec![0.1, 0.3, 0.5, 0.7, 0.9],
            beta: vec![0.25, 0.5, 0.75, 1.0, 1.25],
            ridge_lambda: vec![0.01, 0.1, 1.0, 10.0, 100.0],
            val_fraction: super::VAL_FRACTION,
        }
    }
}

impl TuneGrid {
    /// Reads a grid from TOML; an unknown key or a bad value is an error
    /// naming the file and key.
    pub fn from_path(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let g: TuneGrid = toml::from_str(&text).map_err(|e| Error::Spec {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        g.check().map_err(|e| Error::Spec {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(g)
    }

    /// Validates every list and the fraction.
    pub fn check(&self) -> Result<()> {
        for (name, v, lo_open) in [
            ("alpha", &self.alpha, true),
            ("beta", &self.beta, true),
            ("ridge_lambda", &self.ridge_lambda, false),
        ] {
            if v.is_empty() {
                return Err(Error::invalid(name, "[]", "at least one value"));
            }
            for (i, &x) in v.iter().enumerate() {
                let ok = x.is_finite() && if lo_open { x > 0.0 } else { x >= 0.0 };
                if !ok {
                    let range = if lo_open {
                        "finite and > 0"
                    } else {
                        "finite and >= 0"
                    };
                    return Err(Error::invalid(format!("{name}[{i}]"), x, range));
                }
            }
        }
        let f = self.val_fraction;
        if !(f.is_finite() && f > 0.0 && f <= 0.5) {
            return Err(Error::invalid("val_fraction", f, "in (0, 0.5]"));
        }
        Ok(())
    }
}

/// What `--tune` chose on one training split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TuneChoice {
    /// Chosen alpha.
    pub alpha: f64,
    /// Chosen beta.
    pub beta: f64,
    /// Chosen ridge penalty (ridge readout only).
    pub ridge_lambda: Option<f64>,
    /// Its validation accuracy (the criterion).
    pub val_accuracy: f64,
    /// Candidates scored (diverging ones excluded).
    pub candidates: usize,
    /// Candidates skipped because some trajectory diverged.
    pub diverged: usize,
}

/// Accuracy of `trained` on `side` (voted over objects when the protocol votes).
fn side_accuracy(
    trained: &readout::Trained,
    x: &[f32],
    side: &Side,
    proto: &Protocol,
    n_classes: usize,
) -> f64 {
    let pred = trained.predict(x, side.n());
    match (&side.groups, proto.vote) {
        (Some(g), true) => {
            let (vp, vy) = vote(&pred, &side.y, g, n_classes);
            readout::accuracy(&vp, &vy)
        }
        _ => readout::accuracy(&pred, &side.y),
    }
}

/// Chooses (alpha, beta[, lambda]) on a validation side carved from `ds`'s
/// training split, without touching its test split.
pub fn choose(
    engine: &dyn Engine,
    ds: &Dataset,
    proto: &Protocol,
    grid: &TuneGrid,
) -> Result<TuneChoice> {
    grid.check()?;
    let (train, _test) = super::encode_protocol(ds, proto)?;
    let (fit, val) = carve_validation(&train, grid.val_fraction, proto.readout.seed)?;
    let steps = fit.encoded.steps;
    let f = fit.n_features();
    let lambdas: Vec<Option<f64>> = if proto.readout.kind == ReadoutKind::Ridge {
        grid.ridge_lambda.iter().map(|&l| Some(l)).collect()
    } else {
        vec![None]
    };
    let mut best: Option<TuneChoice> = None;
    let (mut scored, mut diverged) = (0usize, 0usize);
    for &alpha in &grid.alpha {
        for &beta in &grid.beta {
            let params = device_params(alpha, beta, proto.w0, proto.per_step, steps)?;
            let ff = featurize(engine, &fit, &params, false)?;
            let fv = featurize(engine, &val, &params, false)?;
            if ff.diverged_fraction() > 0.0 || fv.diverged_fraction() > 0.0 {
                diverged += 1;
                continue;
            }
            for &lambda in &lambdas {
                let cfg = TrainConfig {
                    ridge_lambda: lambda.unwrap_or(proto.readout.ridge_lambda),
                    ridge_lambdas: Vec::new(),
                    ..proto.readout.clone()
                };
                let trained = readout::train(&ff.w, fit.n(), f, &fit.y, ds.n_classes, &cfg, None)?;
                let acc = side_accuracy(&trained, &fv.w, &val, proto, ds.n_classes);
                scored += 1;
                if best.as_ref().is_none_or(|b| acc > b.val_accuracy) {
                    best = Some(TuneChoice {
                        alpha,
                        beta,
                        ridge_lambda: lambda,
                        val_accuracy: acc,
                        candidates: 0,
                        diverged: 0,
                    });
                }
            }
        }
    }
    let mut c = best.ok_or_else(|| {
        Error::invalid(
            "--tune-grid",
            "every (alpha, beta) pair",
            "at least one pair with beta < 2 sqrt(alpha) (the others diverge)",
        )
    })?;
    c.candidates = scored;
    c.diverged = diverged;
    Ok(c)
}

/// `choose`, then the chosen setting trained on the whole training split and
/// scored once on its test split.
pub fn tune_split(
    engine: &dyn Engine,
    ds: &Dataset,
    proto: &Protocol,
    grid: &TuneGrid,
) -> Result<(TuneChoice, SplitOutcome)> {
    let c = choose(engine, ds, proto, grid)?;
    let mut p = proto.clone();
    p.alpha = c.alpha;
    p.beta = c.beta;
    if let Some(l) = c.ridge_lambda {
        p.readout.ridge_lambda = l;
        p.readout.ridge_lambdas = Vec::new();
    }
    let o = evaluate_split(engine, ds, &p, None)?;
    Ok((c, o))
}
