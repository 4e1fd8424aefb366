//! Ridge classifier in closed form, as scikit-learn's `RidgeClassifier`.
//!
//! Targets are one-vs-all in {-1, +1}. With `fit_intercept = True` scikit-learn
//! centres X and Y, solves `(Xc^T Xc + lambda I) W = Xc^T Yc` and sets
//! `intercept = ymean - xmean W`; [`Ridge`] does exactly that, in f64.
//!
//! The expensive part, the Gram matrix `Xc^T Xc`, does not depend on lambda:
//! [`RidgeGram`] builds it once (faer, lower triangle only, f64, in row chunks so
//! a 60000 x 784 f32 input never needs a full f64 copy) and
//! [`RidgeGram::solve`] costs one Cholesky factorisation per lambda. Use it to
//! scan a grid of lambdas, as [`select_lambda`] does on a validation split.
//!
//! Binary problems: scikit-learn keeps one column (class 1 vs class 0); this
//! keeps two columns that are exact negatives of each other, so predictions
//! agree.

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{BlockStructure, matmul as tri_matmul};
use faer::linalg::solvers::Solve;
use faer::{Accum, Mat, Par, Side};
use serde::{Deserialize, Serialize};

use super::metrics::{accuracy, argmax_rows};
use super::standardize::check_features;
use crate::{Error, Result};

/// Rows converted to f64 at a time while accumulating the Gram matrix.
const CHUNK_ROWS: usize = 2048;

/// Checks labels: length `n`, each below `n_classes`, and `n_classes >= 2`.
pub(crate) fn check_labels(y: &[u32], n: usize, n_classes: usize) -> Result<()> {
    if n_classes < 2 {
        return Err(Error::invalid("n_classes", n_classes, "at least 2"));
    }
    if y.len() != n {
        return Err(Error::invalid(
            "labels",
            format!("{} labels", y.len()),
            format!("one label per row ({n})"),
        ));
    }
    if let Some(i) = y.iter().position(|&c| c as usize >= n_classes) {
        return Err(Error::invalid(
            format!("labels[{i}]"),
            y[i],
            format!("a class in 0..{n_classes}"),
        ));
    }
    Ok(())
}

/// The lambda-independent part of a ridge fit: centred Gram matrix and
/// right-hand side, plus the means needed for the intercept.
#[derive(Debug, Clone)]
pub struct RidgeGram {
    n_classes: usize,
    x_mean: Vec<f64>,
    y_mean: Vec<f64>,
    /// `Xc^T Xc`, `[f, f]`, both triangles filled.
    gram: Mat<f64>,
    /// `Xc^T Yc`, `[f, n_classes]`.
    xty: Mat<f64>,
}

impl RidgeGram {
    /// Accumulates the centred Gram matrix of `x` (`[n, f]` row-major) and the
    /// one-vs-all targets of `y`. Rejects NaN/inf features, naming row and column.
    pub fn new(x: &[f32], n: usize, f: usize, y: &[u32], n_classes: usize) -> Result<Self> {
        check_features(x, n, f)?;
        check_labels(y, n, n_classes)?;
        if n == 0 {
            return Err(Error::invalid("rows", 0, "at least 1 training row"));
        }
        // Means in f64 (first pass), so the Gram matrix is formed from centred
        // data and never suffers the cancellation of X^T X - n m m^T.
        let mut x_mean = vec![0.0f64; f];
        for row in x.chunks_exact(f) {
            for (m, &v) in x_mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        x_mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut counts = vec![0usize; n_classes];
        for &c in y {
            counts[c as usize] += 1;
        }
        // Column mean of a {-1,+1} target: (2 * count - n) / n.
        let y_mean: Vec<f64> = counts
            .iter()
            .map(|&k| (2.0 * k as f64 - n as f64) / n as f64)
            .collect();

        let par = if n * f * f > 1 << 22 {
            Par::rayon(0)
        } else {
            Par::Seq
        };
        let mut gram = Mat::<f64>::zeros(f, f);
        let mut xty = Mat::<f64>::zeros(f, n_classes);
        let mut xc = Mat::<f64>::zeros(CHUNK_ROWS.min(n), f);
        let mut yc = Mat::<f64>::zeros(CHUNK_ROWS.min(n), n_classes);
        for (xs, ys) in x.chunks(CHUNK_ROWS * f).zip(y.chunks(CHUNK_ROWS)) {
            let rows = ys.len();
            for (i, (row, &c)) in xs.chunks_exact(f).zip(ys).enumerate() {
                for j in 0..f {
                    xc[(i, j)] = row[j] as f64 - x_mean[j];
                }
                for k in 0..n_classes {
                    let t = if c as usize == k { 1.0 } else { -1.0 };
                    yc[(i, k)] = t - y_mean[k];
                }
            }
            let xr = xc.as_ref().subrows(0, rows);
            let yr = yc.as_ref().subrows(0, rows);
            tri_matmul(
                gram.as_mut(),
                BlockStructure::TriangularLower,
                Accum::Add,
                xr.transpose(),
                BlockStructure::Rectangular,
                xr,
                BlockStructure::Rectangular,
                1.0,
                par,
            );
            matmul(xty.as_mut(), Accum::Add, xr.transpose(), yr, 1.0, par);
        }
        for i in 0..f {
            for j in 0..i {
                gram[(j, i)] = gram[(i, j)];
            }
        }
        Ok(RidgeGram {
            n_classes,
            x_mean,
            y_mean,
            gram,
            xty,
        })
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.x_mean.len()
    }

    /// The same lambda-independent part from moments already centred (the
    /// solve-from-moments entry point of [`super::moments::RidgeMoments`]):
    /// `gram` = `Xc^T Xc` (`[f, f]`, both triangles), `xty` = `Xc^T Yc`
    /// (`[f, n_classes]` row-major), with the means the intercept needs.
    pub fn from_centred(
        x_mean: Vec<f64>,
        y_mean: Vec<f64>,
        gram: &[f64],
        xty: &[f64],
    ) -> Result<Self> {
        let (f, c) = (x_mean.len(), y_mean.len());
        if f == 0 || c < 2 || gram.len() != f * f || xty.len() != f * c {
            return Err(Error::Internal(format!(
                "RidgeGram::from_centred: {} gram and {} xty values for {f} features, {c} classes",
                gram.len(),
                xty.len()
            )));
        }
        Ok(RidgeGram {
            n_classes: c,
            x_mean,
            y_mean,
            gram: Mat::from_fn(f, f, |i, j| gram[i * f + j]),
            xty: Mat::from_fn(f, c, |i, k| xty[i * c + k]),
        })
    }

    /// Sum of squared residuals of `ridge` (fitted on this Gram) on its own
    /// fitting rows, from the moments alone: `tr(W^T G W) - 2 tr(W^T Xc^T Yc)
    /// + sum |Yc|^2`, with `sum |Yc|^2 = n (1 - ymean^2)` per ±1 target column
    /// (`n` rows).
    pub fn residual_sq(&self, ridge: &Ridge, n: f64) -> f64 {
        let (f, c) = (self.n_features(), self.n_classes);
        let w = |i: usize, k: usize| ridge.weights[i * c + k];
        let mut total = 0.0;
        for k in 0..c {
            let mut quad = 0.0;
            for i in 0..f {
                let gw: f64 = (0..f).map(|j| self.gram[(i, j)] * w(j, k)).sum();
                quad += w(i, k) * gw - 2.0 * w(i, k) * self.xty[(i, k)];
            }
            total += quad + n * (1.0 - self.y_mean[k] * self.y_mean[k]);
        }
        total
    }

    /// Solves `(G + lambda I) W = Xc^T Yc` by Cholesky for one lambda.
    pub fn solve(&self, lambda: f64) -> Result<Ridge> {
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return Err(Error::invalid(
                "ridge_lambda",
                lambda,
                "a finite value >= 0",
            ));
        }
        let f = self.n_features();
        let c = self.n_classes;
        let mut a = self.gram.clone();
        for i in 0..f {
            a[(i, i)] += lambda;
        }
        let llt = a.llt(Side::Lower).map_err(|_| {
            Error::invalid(
                "ridge_lambda",
                lambda,
                "> 0 here: the Gram matrix is singular (constant or collinear features)",
            )
        })?;
        let mut w = self.xty.clone();
        llt.solve_in_place(w.as_mut());
        let mut weights = vec![0.0f64; f * c];
        for i in 0..f {
            for k in 0..c {
                weights[i * c + k] = w[(i, k)];
            }
        }
        let intercept = (0..c)
            .map(|k| self.y_mean[k] - (0..f).map(|i| self.x_mean[i] * w[(i, k)]).sum::<f64>())
            .collect();
        Ok(Ridge {
            n_features: f,
            n_classes: c,
            lambda,
            weights,
            intercept,
        })
    }
}

/// A fitted ridge classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ridge {
    /// Number of input features.
    pub n_features: usize,
    /// Number of classes (columns of `weights`).
    pub n_classes: usize,
    /// The penalty it was fitted with.
    pub lambda: f64,
    /// `[n_features, n_classes]` row-major (scikit-learn's `coef_` transposed).
    pub weights: Vec<f64>,
    /// One intercept per class (scikit-learn's `intercept_`).
    pub intercept: Vec<f64>,
}

impl Ridge {
    /// Fits with one lambda (builds the Gram matrix; see [`RidgeGram`] to reuse it).
    pub fn fit(
        x: &[f32],
        n: usize,
        f: usize,
        y: &[u32],
        n_classes: usize,
        lambda: f64,
    ) -> Result<Self> {
        RidgeGram::new(x, n, f, y, n_classes)?.solve(lambda)
    }

    /// Decision values `[n, n_classes]` row-major, in f64.
    ///
    /// # Panics
    /// If `x.len() != n * n_features`.
    pub fn decision_function(&self, x: &[f32], n: usize) -> Vec<f64> {
        let (f, c) = (self.n_features, self.n_classes);
        assert_eq!(
            x.len(),
            n * f,
            "Ridge: x has {} values, expected {n} * {f}",
            x.len()
        );
        let mut out = Vec::with_capacity(n * c);
        for row in x.chunks_exact(f) {
            let mut s = self.intercept.clone();
            for (i, &v) in row.iter().enumerate() {
                let v = v as f64;
                for k in 0..c {
                    s[k] += v * self.weights[i * c + k];
                }
            }
            out.extend_from_slice(&s);
        }
        out
    }

    /// Predicted classes (argmax of the decision values).
    pub fn predict(&self, x: &[f32], n: usize) -> Vec<u32> {
        argmax_rows(&self.decision_function(x, n), self.n_classes)
    }
}

/// Result of [`select_lambda`]: the winner and every candidate's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LambdaScan {
    /// The lambda with the best validation accuracy (the largest on ties, i.e.
    /// the most regularised).
    pub best: f64,
    /// `(lambda, validation accuracy)` for every candidate, in the given order.
    pub scores: Vec<(f64, f64)>,
}

/// Fits on `(x, y)` once and scores each lambda on a validation set.
pub fn select_lambda(
    gram: &RidgeGram,
    x_val: &[f32],
    n_val: usize,
    y_val: &[u32],
    lambdas: &[f64],
) -> Result<LambdaScan> {
    if lambdas.is_empty() {
        return Err(Error::invalid("ridge_lambdas", "[]", "at least one lambda"));
    }
    check_features(x_val, n_val, gram.n_features())?;
    let mut scores = Vec::with_capacity(lambdas.len());
    let mut best = (f64::NEG_INFINITY, lambdas[0]);
    for &lambda in lambdas {
        let model = gram.solve(lambda)?;
        let acc = accuracy(&model.predict(x_val, n_val), y_val);
        scores.push((lambda, acc));
        if acc > best.0 || (acc == best.0 && lambda > best.1) {
            best = (acc, lambda);
        }
    }
    Ok(LambdaScan {
        best: best.1,
        scores,
    })
}
