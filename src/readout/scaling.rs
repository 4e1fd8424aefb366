//! Input scalings a chip can implement, and the folding of a readout's
//! input scaling into its first crossbar layer.
//!
//! A readout trained on standardised features divides each feature by its own
//! spread: features with a small spread are amplified, and a drift shared by
//! every sequence (one device's alpha) moves them by many of their spreads.
//! [`InputScaling::Centred`] keeps the conditioning benefit of centring
//! without that amplification: each feature loses its training mean (a
//! per-feature offset) and every feature is multiplied by one common gain (the
//! inverse RMS of the centred training features). Folded into the first layer
//! ([`fold_into_first_layer`]) the common gain only rescales the weight matrix
//! (the conductance mapping, which normalises by `max|W|` per layer, programs
//! the same conductances), and the offsets become digital biases, so the
//! crossbar reads the raw device states.

use serde::{Deserialize, Serialize};

use super::standardize::{Standardizer, check_features};
use super::{Model, Trained};
use crate::Result;

/// How the readout's input is scaled before its first layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InputScaling {
    /// The raw kinetics features (the chip's readout, memkin's MC default).
    #[default]
    Raw,
    /// Per-feature offset (training mean) and one common gain, folded into
    /// the first layer: the chip-implementable scaling.
    Centred,
    /// Per-feature mean and spread (`memkin run`'s default), kept digital.
    Standardized,
}

impl InputScaling {
    /// The spelling of specs and reports.
    pub fn name(self) -> &'static str {
        match self {
            InputScaling::Raw => "raw",
            InputScaling::Centred => "centred",
            InputScaling::Standardized => "standardized",
        }
    }

    /// The transform fitted on training features `x` (`[n, f]`); `None` for
    /// [`InputScaling::Raw`].
    pub fn fit(self, x: &[f32], n: usize, f: usize) -> Result<Option<Standardizer>> {
        Ok(match self {
            InputScaling::Raw => None,
            InputScaling::Centred => Some(centred(x, n, f)?),
            InputScaling::Standardized => Some(Standardizer::fit(x, n, f)?),
        })
    }
}

/// Per-feature means and one common spread: the RMS over every feature of
/// the centred training features (f64 sums). A constant training set keeps
/// gain 1.
pub fn centred(x: &[f32], n: usize, f: usize) -> Result<Standardizer> {
    let st = Standardizer::fit(x, n, f)?;
    check_features(x, n, f)?;
    let mut ss = 0.0f64;
    for row in x.chunks_exact(f) {
        for (&v, &m) in row.iter().zip(&st.mean) {
            let d = v as f64 - m;
            ss += d * d;
        }
    }
    let rms = (ss / (n * f).max(1) as f64).sqrt();
    let common = if rms > 0.0 && rms.is_finite() {
        rms
    } else {
        1.0
    };
    Ok(Standardizer {
        mean: st.mean,
        std: vec![common; f],
    })
}

/// Multiplier and offset of each raw feature under `s`: `z = g (x - m)`;
/// a dropped feature (std 0) has gain 0.
fn gains(s: &Standardizer) -> Vec<f64> {
    s.std
        .iter()
        .map(|&v| if v > 0.0 { 1.0 / v } else { 0.0 })
        .collect()
}

/// The same readout with its standardiser folded into the first layer:
/// `W'[i][o] = g_i W[i][o]`, `b'[o] = b[o] - sum_i g_i m_i W[i][o]` (nets;
/// ridge likewise), and no standardiser. On raw features it computes the same
/// scores up to f32 rounding; under conductance noise the noise then acts on
/// the raw inputs, as on the chip.
pub fn fold_into_first_layer(t: &Trained) -> Trained {
    let Some(s) = &t.standardizer else {
        return t.clone();
    };
    let g = gains(s);
    let mut out = t.clone();
    out.standardizer = None;
    match &mut out.model {
        Model::Net(net) => {
            let (wo, bo, end) = net.layer_range(1);
            let n_out = end - bo;
            let (w, b) = net.params[wo..end].split_at_mut(bo - wo);
            let mut shift = vec![0.0f64; n_out];
            for (i, row) in w.chunks_exact_mut(n_out).enumerate() {
                for (o, v) in row.iter_mut().enumerate() {
                    let folded = *v as f64 * g[i];
                    shift[o] += folded * s.mean[i];
                    *v = folded as f32;
                }
            }
            for (bv, sh) in b.iter_mut().zip(shift) {
                *bv = (*bv as f64 - sh) as f32;
            }
        }
        Model::Ridge(r) => {
            let c = r.n_classes;
            for (i, row) in r.weights.chunks_exact_mut(c).enumerate() {
                for (o, v) in row.iter_mut().enumerate() {
                    *v *= g[i];
                    r.intercept[o] -= *v * s.mean[i];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readout::{ReadoutKind, TrainConfig, train};

    fn data() -> (Vec<f32>, Vec<u32>) {
        // Two classes; feature 0 constant, features 1..3 with different scales.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..200u32 {
            let c = i % 2;
            let t = (i as f32 * 0.37).sin();
            x.extend_from_slice(&[
                1.0,
                3.0 + 0.01 * t + 0.02 * c as f32,
                0.5 * t,
                2.0 - c as f32 + 0.1 * t,
            ]);
            y.push(c);
        }
        (x, y)
    }

    #[test]
    fn centred_scaling_has_one_common_gain_and_the_training_means() {
        let (x, _) = data();
        let s = centred(&x, 200, 4).unwrap();
        assert!(s.std.iter().all(|&v| v == s.std[0] && v > 0.0));
        assert!((s.mean[0] - 1.0).abs() < 1e-12);
        let z = s.transform(&x);
        let rms = (z.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / z.len() as f64).sqrt();
        assert!((rms - 1.0).abs() < 1e-5, "{rms}");
    }

    #[test]
    fn a_folded_readout_scores_raw_features_as_the_standardised_one() {
        let (x, y) = data();
        for kind in [ReadoutKind::Mlp, ReadoutKind::Softmax, ReadoutKind::Ridge] {
            for scaling in [InputScaling::Centred, InputScaling::Standardized] {
                let cfg = TrainConfig {
                    kind,
                    hidden: vec![5],
                    epochs: 3,
                    standardize: false,
                    ..TrainConfig::default()
                };
                let mut t = train(&x, 200, 4, &y, 2, &cfg, None).unwrap();
                t.standardizer = scaling.fit(&x, 200, 4).unwrap();
                let folded = fold_into_first_layer(&t);
                assert!(folded.standardizer.is_none());
                let (a, b) = (t.scores(&x, 200), folded.scores(&x, 200));
                // f32 weights: folding reorders one product per weight; the
                // scores agree to a few ulps of their magnitude (< 1e-4 here).
                for (p, q) in a.iter().zip(&b) {
                    assert!((p - q).abs() <= 1e-4 * p.abs().max(1.0), "{kind:?} {p} {q}");
                }
            }
        }
    }
}
