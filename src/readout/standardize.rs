//! Per-feature standardisation, fitted on the training data only.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A feature whose standard deviation is at most `STD_FLOOR * max(|mean|, 1)`
/// is constant over the training set: it carries no information there, and
/// the readout never learns a weight for it, so it is dropped (mapped to 0
/// whatever its value; recorded as `std = 0`). Dividing by its tiny spread
/// instead would turn a 1e-2 drift of a device parameter into a 1e5-sigma
/// input, and merely centring it would feed the drift through untrained
/// weights (both failures seen in the Monte Carlo studies, where a shared
/// device's alpha moves the blank border rows of MNIST). The threshold is
/// relative because f32 features carry rounding noise of ~1e-7 of their size.
pub const STD_FLOOR: f64 = 1e-5;

/// Checks that `x` holds `n` rows of `f` finite values.
///
/// The engine marks divergent trajectories with NaN; a readout must never train
/// on them silently. The error names the first bad row and column.
pub fn check_features(x: &[f32], n: usize, f: usize) -> Result<()> {
    if f == 0 {
        return Err(Error::invalid("features", 0, "at least 1 feature per row"));
    }
    if x.len() != n * f {
        return Err(Error::invalid(
            "features",
            format!("{} values", x.len()),
            format!("n * f = {n} * {f} = {} values", n * f),
        ));
    }
    // Branch-free scan per block (vectorises); locate the culprit only on failure.
    let all_finite = pulp::Arch::new().dispatch(
        #[inline(always)]
        || {
            x.chunks(4096)
                .all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()))
        },
    );
    if !all_finite {
        let i = x
            .iter()
            .position(|v| !v.is_finite())
            .expect("a non-finite value");
        return Err(Error::invalid(
            format!("features[row {}, column {}]", i / f, i % f),
            x[i],
            "a finite value (NaN/inf marks a divergent trajectory; drop or repair it)",
        ));
    }
    Ok(())
}

/// Per-feature mean and standard deviation: `z = (x - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Mean of each feature over the fitting rows.
    pub mean: Vec<f64>,
    /// Population standard deviation of each feature; 0 marks a constant,
    /// dropped feature (see [`STD_FLOOR`]).
    pub std: Vec<f64>,
}

impl Standardizer {
    /// Fits mean and standard deviation per column (two passes, f64 sums).
    ///
    /// Errors on a shape mismatch, on `n == 0`, and on any non-finite value
    /// (naming its row and column).
    pub fn fit(x: &[f32], n: usize, f: usize) -> Result<Self> {
        check_features(x, n, f)?;
        if n == 0 {
            return Err(Error::invalid("rows", 0, "at least 1 row to fit on"));
        }
        let mut mean = vec![0.0f64; f];
        let mut var = vec![0.0f64; f];
        // Row-order f64 sums (deterministic), compiled for the widest SIMD.
        pulp::Arch::new().dispatch(
            #[inline(always)]
            || {
                for row in x.chunks_exact(f) {
                    for (m, &v) in mean.iter_mut().zip(row) {
                        *m += v as f64;
                    }
                }
                mean.iter_mut().for_each(|m| *m /= n as f64);
                for row in x.chunks_exact(f) {
                    for ((s, &m), &v) in var.iter_mut().zip(&mean).zip(row) {
                        let d = v as f64 - m;
                        *s += d * d;
                    }
                }
            },
        );
        let std = var
            .into_iter()
            .zip(&mean)
            .map(|(s, m)| {
                let sd = (s / n as f64).sqrt();
                if sd <= STD_FLOOR * m.abs().max(1.0) {
                    0.0
                } else {
                    sd
                }
            })
            .collect();
        Ok(Standardizer { mean, std })
    }

    /// The identity transform for `f` features (mean 0, std 1).
    pub fn identity(f: usize) -> Self {
        Standardizer {
            mean: vec![0.0; f],
            std: vec![1.0; f],
        }
    }

    /// The multiplier of each centred feature: `1 / std`, or 0 for a dropped one.
    fn scales(&self) -> Vec<f64> {
        self.std
            .iter()
            .map(|&s| if s > 0.0 { 1.0 / s } else { 0.0 })
            .collect()
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.mean.len()
    }

    /// Writes the standardised rows of `x` into `out` (same length).
    ///
    /// # Panics
    /// If the lengths differ or are not a multiple of the feature count.
    pub fn transform_into(&self, x: &[f32], out: &mut [f32]) {
        let f = self.n_features();
        assert_eq!(x.len(), out.len(), "transform_into: length mismatch");
        assert_eq!(x.len() % f, 0, "transform_into: not a multiple of {f}");
        let scale = self.scales();
        // Compiled for the widest SIMD available (see `pulp`).
        pulp::Arch::new().dispatch(
            #[inline(always)]
            || {
                for (row, orow) in x.chunks_exact(f).zip(out.chunks_exact_mut(f)) {
                    for (((o, &v), &m), &s) in orow.iter_mut().zip(row).zip(&self.mean).zip(&scale)
                    {
                        *o = ((v as f64 - m) * s) as f32;
                    }
                }
            },
        );
    }

    /// Standardises the rows of `x` in place.
    pub fn transform_in_place(&self, x: &mut [f32]) {
        let f = self.n_features();
        assert_eq!(x.len() % f, 0, "transform_in_place: not a multiple of {f}");
        let scale = self.scales();
        pulp::Arch::new().dispatch(
            #[inline(always)]
            || {
                for row in x.chunks_exact_mut(f) {
                    for ((o, &m), &s) in row.iter_mut().zip(&self.mean).zip(&scale) {
                        *o = ((*o as f64 - m) * s) as f32;
                    }
                }
            },
        );
    }

    /// Standardised copy of the rows of `x`.
    pub fn transform(&self, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; x.len()];
        self.transform_into(x, &mut out);
        out
    }

    /// Chains a gradient with respect to standardised features back to the raw
    /// features in place: `dL/dx = dL/dz / std` (the mean does not matter).
    pub fn backprop_in_place(&self, grad: &mut [f32]) {
        let f = self.n_features();
        let scale = self.scales();
        for row in grad.chunks_exact_mut(f) {
            for (g, s) in row.iter_mut().zip(&scale) {
                *g = (*g as f64 * s) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_feature_is_centred_not_blown_up() {
        let x = [1.0f32, 5.0, 3.0, 5.0];
        let s = Standardizer::fit(&x, 2, 2).unwrap();
        assert_eq!(s.std[1], 0.0);
        assert_eq!(s.transform(&x), vec![-1.0, 0.0, 1.0, 0.0]);
        // A drift on a feature that was constant in training is ignored.
        assert_eq!(s.transform(&[3.0, 5.01])[1], 0.0);
        // Rounding noise on a constant is still constant.
        let y = [2.0f32, 2.0000002, 2.0, 1.9999998];
        let s = Standardizer::fit(&y, 4, 1).unwrap();
        assert_eq!(s.std[0], 0.0);
    }

    #[test]
    fn nan_feature_is_rejected_naming_row_and_column() {
        let x = [1.0f32, 2.0, 3.0, f32::NAN];
        let e = Standardizer::fit(&x, 2, 2).unwrap_err().to_string();
        assert!(e.contains("row 1, column 1"), "{e}");
    }
}
