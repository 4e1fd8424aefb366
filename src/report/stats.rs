//! Summary statistics of a metric over many values (Monte Carlo draws):
//! mean, spread, percentiles and Student's t confidence interval.

use serde::Serialize;

/// Summary statistics of one metric over the draws.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Number of values.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator; 0 for one value).
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// 5th percentile (linear interpolation, NumPy's default).
    pub p5: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 95% confidence interval of the mean, `mean -+ t(0.975, n-1) std /
    /// sqrt(n)` (Student's t); `None` for fewer than two values.
    pub ci95: Option<[f64; 2]>,
}

/// Two-sided 95% quantile of Student's t with `df` degrees of freedom: a
/// table up to 30, then the Cornish-Fisher expansion (error < 1e-4).
pub fn t_quantile_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    if df == 0 {
        return f64::NAN;
    }
    if df <= 30 {
        return T[df - 1];
    }
    let z = 1.959_963_984_540_054f64;
    let n = df as f64;
    z + (z.powi(3) + z) / (4.0 * n)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
        + (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / (384.0 * n.powi(3))
}

/// Percentile `q` in [0, 1] of sorted values (linear interpolation).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

impl Stats {
    /// The statistics of the finite values among `values`.
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n.max(1) as f64;
        let std = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let half = t_quantile_975(n.saturating_sub(1)) * std / (n as f64).sqrt();
        Self {
            n,
            mean: if n == 0 { f64::NAN } else { mean },
            std,
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
            p5: percentile(&v, 0.05),
            p50: percentile(&v, 0.5),
            p95: percentile(&v, 0.95),
            ci95: (n > 1).then_some([mean - half, mean + half]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantile_matches_tables() {
        assert_eq!(t_quantile_975(1), 12.706);
        assert!((t_quantile_975(49) - 2.0096).abs() < 2e-4);
        assert!((t_quantile_975(120) - 1.9799).abs() < 2e-4);
        assert!((t_quantile_975(31) - 2.0395).abs() < 2e-4);
    }

    #[test]
    fn stats_percentiles_interpolate_like_numpy() {
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0, f64::NAN]);
        assert_eq!((s.n, s.min, s.max, s.p50), (4, 1.0, 4.0, 2.5));
        assert!((s.p5 - 1.15).abs() < 1e-12 && (s.p95 - 3.85).abs() < 1e-12);
        let ci = s.ci95.unwrap();
        assert!((ci[1] - ci[0] - 2.0 * 3.182 * s.std / 2.0).abs() < 1e-12);
        assert!(Stats::of(&[0.5]).ci95.is_none());
    }
}
