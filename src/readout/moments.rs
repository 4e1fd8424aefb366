//! Ridge from moments, and the linear readout's forward pass as a count: the
//! CPU twins of `shaders/moments.wgsl` and `shaders/forward.wgsl`, and the CPU
//! study path of a ridge sweep.
//!
//! A ridge readout on standardised features is a function of the raw moments
//! of its fitting rows. [`RidgeMoments`] holds them as one Gram matrix of the
//! *augmented* rows `a = [x - r, onehot(y)]` (`g = f + c` columns, `r` a
//! per-feature reference):
//!
//! | block of `A^T A`       | holds                                   |
//! |------------------------|-----------------------------------------|
//! | `[0..f, 0..f]`         | `sum (x - r)(x - r)^T`                  |
//! | `[f + k, 0..f]`        | `sum over rows of class k of (x - r)`   |
//! | `[f + k, f + k]`       | the count of class k                    |
//!
//! so `Z^T Z`, `Z^T Y` (`Y` the ±1 targets), the column sums and the count are
//! all in it. Rows can be accumulated in any blocks, on any threads, and
//! merged ([`RidgeMoments::merge`]).
//!
//! Precision: the shift `r` is one fitting row's own features (the first), so
//! `x - r` is of the size of the spread, and centring after the fact
//! (`Gc = G - s s^T / n`, `s` the shifted sums) cancels little. On the CPU
//! everything is f64. On the GPU ([`crate::engine::gpu::moments`]) each
//! product is exact (Dekker's two-product) and a workgroup sums 32 rows'
//! products in a two-sum, then adds that partial into a compensated f32 pair
//! (hi + lo), so the running total over 60,000 rows keeps ~f64 accuracy; the
//! pair is summed in f64 on the host. Only `x - r` is rounded to f32 there.
//!
//! [`RidgeMoments::train`] reproduces [`super::train`]'s ridge: the
//! standardiser's mean, population std and zero-variance rule
//! ([`super::STD_FLOOR`]), scikit-learn's centring with intercept and ±1
//! targets; only rounding differs (today's path standardises into f32 first).

use faer::linalg::matmul::triangular::{BlockStructure, matmul as tri_matmul};
use faer::{Accum, Mat, Par};

use super::config::{ReadoutKind, TrainConfig};
use super::ridge::RidgeGram;
use super::standardize::{STD_FLOOR, Standardizer, check_features};
use super::trainer::EpochReport;
use super::{Model, Trained};
use crate::{Error, Result};

/// Rows converted to f64 at a time.
const CHUNK_ROWS: usize = 512;

/// The moments of a ridge readout's fitting rows (see the module docs).
#[derive(Debug, Clone)]
pub struct RidgeMoments {
    f: usize,
    c: usize,
    shift: Vec<f32>,
    /// `A^T A`, `[g, g]`, lower triangle (the upper is not kept up to date).
    gram: Mat<f64>,
}

impl RidgeMoments {
    /// Empty moments for `f` features and `c` classes around the reference `shift`.
    pub fn new(f: usize, c: usize, shift: Vec<f32>) -> Result<Self> {
        if f == 0 || c < 2 || shift.len() != f {
            return Err(Error::invalid(
                "moments",
                format!("{f} features, {c} classes, {} shifts", shift.len()),
                "at least 1 feature, 2 classes, one shift per feature",
            ));
        }
        let g = f + c;
        Ok(Self {
            f,
            c,
            shift,
            gram: Mat::zeros(g, g),
        })
    }

    /// Moments read back from a device: `augmented` is `A^T A`, `[g, g]`
    /// row-major, its lower triangle used.
    pub fn from_augmented(f: usize, c: usize, shift: Vec<f32>, augmented: &[f64]) -> Result<Self> {
        let mut m = Self::new(f, c, shift)?;
        let g = f + c;
        if augmented.len() != g * g {
            return Err(Error::Internal(format!(
                "moments: {} values, expected {g} x {g}",
                augmented.len()
            )));
        }
        m.gram = Mat::from_fn(g, g, |i, j| augmented[i * g + j]);
        Ok(m)
    }

    /// Features per row.
    pub fn n_features(&self) -> usize {
        self.f
    }

    /// Classes.
    pub fn n_classes(&self) -> usize {
        self.c
    }

    /// The reference subtracted from every row.
    pub fn shift(&self) -> &[f32] {
        &self.shift
    }

    /// Rows accumulated so far (from the class counts).
    pub fn n(&self) -> f64 {
        (0..self.c).map(|k| self.at(self.f + k, self.f + k)).sum()
    }

    /// Entry `(i, j)` of `A^T A`, either triangle.
    pub fn at(&self, i: usize, j: usize) -> f64 {
        if i >= j {
            self.gram[(i, j)]
        } else {
            self.gram[(j, i)]
        }
    }

    /// Adds rows `x` (`[n, f]` row-major, finite) with labels `y`. `parallel`:
    /// split the block's products over the rayon pool (when one set of moments
    /// is accumulated at a time); otherwise one thread (many sets in parallel).
    pub fn accumulate(&mut self, x: &[f32], n: usize, y: &[u32], parallel: bool) -> Result<()> {
        let (f, c) = (self.f, self.c);
        check_features(x, n, f)?;
        super::ridge::check_labels(y, n, c)?;
        let par = if parallel { Par::rayon(0) } else { Par::Seq };
        let mut a = Mat::<f64>::zeros(CHUNK_ROWS.min(n.max(1)), f + c);
        for (xs, ys) in x.chunks(CHUNK_ROWS * f).zip(y.chunks(CHUNK_ROWS)) {
            let rows = ys.len();
            for (i, (row, &k)) in xs.chunks_exact(f).zip(ys).enumerate() {
                for j in 0..f {
                    a[(i, j)] = row[j] as f64 - self.shift[j] as f64;
                }
                for kk in 0..c {
                    a[(i, f + kk)] = (kk == k as usize) as u8 as f64;
                }
            }
            let ar = a.as_ref().subrows(0, rows);
            tri_matmul(
                self.gram.as_mut(),
                BlockStructure::TriangularLower,
                Accum::Add,
                ar.transpose(),
                BlockStructure::Rectangular,
                ar,
                BlockStructure::Rectangular,
                1.0,
                par,
            );
        }
        Ok(())
    }

    /// Adds another set of moments (same shape and shift).
    pub fn merge(&mut self, other: &RidgeMoments) -> Result<()> {
        if other.f != self.f || other.c != self.c || other.shift != self.shift {
            return Err(Error::Internal(
                "moments: merging moments of another shape or shift".into(),
            ));
        }
        let g = self.f + self.c;
        for j in 0..g {
            for i in j..g {
                self.gram[(i, j)] += other.gram[(i, j)];
            }
        }
        Ok(())
    }

    /// The standardiser [`super::train`] would fit on these rows, and the
    /// centred Gram system of the (standardised when `standardize`) features.
    pub fn ridge_gram(&self, standardize: bool) -> Result<(Option<Standardizer>, RidgeGram)> {
        let (f, c) = (self.f, self.c);
        let counts: Vec<f64> = (0..c).map(|k| self.at(f + k, f + k).round()).collect();
        let n: f64 = counts.iter().sum();
        if n < 1.0 {
            return Err(Error::invalid("rows", 0, "at least 1 training row"));
        }
        // Shifted column sums s_j = sum (x_j - r_j), from the per-class sums.
        let sums: Vec<f64> = (0..f)
            .map(|j| (0..c).map(|k| self.at(f + k, j)).sum())
            .collect();
        let mean: Vec<f64> = (0..f).map(|j| self.shift[j] as f64 + sums[j] / n).collect();
        let centred = |i: usize, j: usize| self.at(i, j) - sums[i] * sums[j] / n;
        let std: Vec<f64> = (0..f)
            .map(|j| {
                let sd = (centred(j, j).max(0.0) / n).sqrt();
                if sd <= STD_FLOOR * mean[j].abs().max(1.0) {
                    0.0
                } else {
                    sd
                }
            })
            .collect();
        let scale: Vec<f64> = if standardize {
            std.iter()
                .map(|&s| if s > 0.0 { 1.0 / s } else { 0.0 })
                .collect()
        } else {
            vec![1.0; f]
        };
        let y_mean: Vec<f64> = counts.iter().map(|&k| (2.0 * k - n) / n).collect();
        let mut gram = vec![0.0f64; f * f];
        for i in 0..f {
            for j in 0..=i {
                let v = centred(i, j) * scale[i] * scale[j];
                gram[i * f + j] = v;
                gram[j * f + i] = v;
            }
        }
        // Xc^T Yc = sum (x - m)(t - tm) = 2 (class sums) - 2 s n_k / n.
        let mut xty = vec![0.0f64; f * c];
        for j in 0..f {
            for k in 0..c {
                xty[j * c + k] =
                    (2.0 * self.at(f + k, j) - 2.0 * sums[j] * counts[k] / n) * scale[j];
            }
        }
        // Standardised features have mean 0 on these rows.
        let x_mean = if standardize {
            vec![0.0; f]
        } else {
            mean.clone()
        };
        let st = standardize.then_some(Standardizer { mean, std });
        Ok((st, RidgeGram::from_centred(x_mean, y_mean, &gram, &xty)?))
    }

    /// The ridge readout [`super::train`] fits on these rows with `cfg` (one
    /// lambda: `ridge_lambda`, or the only entry of `ridge_lambdas`).
    pub fn train(&self, cfg: &TrainConfig) -> Result<Trained> {
        cfg.check()?;
        if cfg.kind != ReadoutKind::Ridge || cfg.ridge_lambdas.len() > 1 {
            return Err(Error::invalid(
                "readout",
                cfg.name(self.f, self.c),
                "ridge with one lambda to train from moments (a lambda scan needs the validation rows)",
            ));
        }
        let start = std::time::Instant::now();
        let lambda = cfg
            .ridge_lambdas
            .first()
            .copied()
            .unwrap_or(cfg.ridge_lambda);
        let (standardizer, gram) = self.ridge_gram(cfg.standardize)?;
        let ridge = gram.solve(lambda)?;
        let n = self.n();
        let report = EpochReport {
            epoch: 1,
            train_loss: gram.residual_sq(&ridge, n) / (n * self.c as f64),
            val_accuracy: None,
            val_loss: None,
            elapsed_s: start.elapsed().as_secs_f64(),
        };
        Ok(Trained {
            kind: ReadoutKind::Ridge,
            n_features: self.f,
            n_classes: self.c,
            standardizer,
            model: Model::Ridge(ridge),
            history: vec![report],
            ridge_lambda: Some(lambda),
            config: cfg.clone(),
        })
    }
}

/// A linear readout in the f32 form the forward kernel reads: per feature a
/// mean and a scale (standardisation folded to `z = (x - mean) * scale`), then
/// `scores = bias + z W`. Keep the layout in sync with `shaders/forward.wgsl`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearReadout {
    /// Features.
    pub f: usize,
    /// Classes.
    pub c: usize,
    /// `[f]`.
    pub mean: Vec<f32>,
    /// `[f]`: `1 / std`, 0 for a dropped feature, 1 without standardisation.
    pub scale: Vec<f32>,
    /// `[f, c]` row-major.
    pub weights: Vec<f32>,
    /// `[c]`.
    pub bias: Vec<f32>,
}

impl LinearReadout {
    /// From a trained ridge readout (nets are refused: they are not one layer).
    pub fn from_trained(t: &Trained) -> Result<Self> {
        let Model::Ridge(r) = &t.model else {
            return Err(Error::invalid(
                "readout",
                t.name(),
                "ridge for the on-device forward pass",
            ));
        };
        let (f, c) = (r.n_features, r.n_classes);
        let (mean, scale) = match &t.standardizer {
            Some(s) => (
                s.mean.iter().map(|&m| m as f32).collect(),
                s.std
                    .iter()
                    .map(|&v| if v > 0.0 { (1.0 / v) as f32 } else { 0.0 })
                    .collect(),
            ),
            None => (vec![0.0; f], vec![1.0; f]),
        };
        Ok(Self {
            f,
            c,
            mean,
            scale,
            weights: r.weights.iter().map(|&w| w as f32).collect(),
            bias: r.intercept.iter().map(|&b| b as f32).collect(),
        })
    }

    /// Zero weights (a point that trains no readout still gets a slot).
    pub fn zeros(f: usize, c: usize) -> Self {
        Self {
            f,
            c,
            mean: vec![0.0; f],
            scale: vec![0.0; f],
            weights: vec![0.0; f * c],
            bias: vec![0.0; c],
        }
    }
}

/// CPU twin of `shaders/forward.wgsl`: the number of rows of `x` (`[n, f]`)
/// whose argmax class (first maximum; NaN never wins) equals `y`, in f32 with
/// the kernel's loop order.
pub fn forward_correct(r: &LinearReadout, x: &[f32], n: usize, y: &[u32]) -> u32 {
    let (f, c) = (r.f, r.c);
    let mut acc = vec![0.0f32; c];
    let mut correct = 0;
    for (row, &label) in x.chunks_exact(f).take(n).zip(y) {
        acc.copy_from_slice(&r.bias);
        for j in 0..f {
            let z = (row[j] - r.mean[j]) * r.scale[j];
            for k in 0..c {
                acc[k] += z * r.weights[j * c + k];
            }
        }
        let mut best = 0;
        for k in 1..c {
            if acc[k] > acc[best] || acc[best].is_nan() {
                best = k;
            }
        }
        correct += (best == label as usize) as u32;
    }
    correct
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readout::{Rng, train};

    fn data(n: usize, f: usize, c: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut rng = Rng::new(seed);
        let y: Vec<u32> = (0..n).map(|i| (i % c) as u32).collect();
        let x = (0..n * f)
            .map(|i| {
                // An offset that dominates the spread (the cancellation case),
                // a class signal, and one constant column.
                if i % f == 1 {
                    3.0
                } else {
                    100.0 + (y[i / f] as f32) * 0.1 + rng.next_f64() as f32
                }
            })
            .collect();
        (x, y)
    }

    #[test]
    fn ridge_from_moments_matches_train_on_offset_features() {
        let (n, f, c) = (301, 7, 3);
        let (x, y) = data(n, f, c, 3);
        let cfg = TrainConfig {
            kind: ReadoutKind::Ridge,
            ..TrainConfig::default()
        };
        let want = train(&x, n, f, &y, c, &cfg, None).unwrap();
        let mut m = RidgeMoments::new(f, c, x[..f].to_vec()).unwrap();
        // Two blocks on two "threads", merged.
        let mut m2 = m.clone();
        m.accumulate(&x[..100 * f], 100, &y[..100], false).unwrap();
        m2.accumulate(&x[100 * f..], n - 100, &y[100..], true)
            .unwrap();
        m.merge(&m2).unwrap();
        let got = m.train(&cfg).unwrap();
        let (Model::Ridge(a), Model::Ridge(b)) = (&got.model, &want.model) else {
            panic!("ridge")
        };
        // The reference rounds standardised features to f32 (rel. 6e-8).
        for (u, v) in a.weights.iter().zip(&b.weights) {
            assert!((u - v).abs() <= 1e-5 * v.abs().max(1e-2), "{u} vs {v}");
        }
        assert_eq!(got.standardizer.as_ref().unwrap().std[1], 0.0);
        assert_eq!(got.predict(&x, n), want.predict(&x, n));
        let lin = LinearReadout::from_trained(&got).unwrap();
        let acc = forward_correct(&lin, &x, n, &y) as f64 / n as f64;
        assert!((acc - got.accuracy(&x, n, &y)).abs() <= 2.0 / n as f64);
        let (l1, l2) = (got.history[0].train_loss, want.history[0].train_loss);
        assert!((l1 - l2).abs() < 1e-6 * l2, "{l1} vs {l2}");
    }
}
