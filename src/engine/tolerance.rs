//! [`Tolerance`]: how close two backends' numbers must be, with named presets.
//!
//! A value `got` matches `want` when `|got - want| <= abs + rel * |want|`, and NaN
//! matches only NaN (a flagged trajectory must be flagged on both sides).

/// An absolute-plus-relative tolerance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Relative part.
    pub rel: f64,
    /// Absolute part.
    pub abs: f64,
}

impl Tolerance {
    /// A tolerance of `rel` relative and `abs` absolute error.
    pub const fn rel_abs(rel: f64, abs: f64) -> Self {
        Self { rel, abs }
    }

    /// GPU (or CPU) f32 against the f64 reference on the DDK map in its
    /// contracting regime (`beta x < sqrt(2 alpha)`). Each f32 step rounds by a few
    /// ulp (Vulkan allows 2.5 ulp for division), i.e. ~4 * 1.2e-7 relative, and the
    /// map damps earlier errors by `|1 - alpha/w^2| < 1`, so the accumulated error
    /// stays below ~4e-7 / (1 - q); with q <= 0.95 that is 1e-5. We allow 3e-5.
    pub const F32_VS_F64: Tolerance = Tolerance::rel_abs(3e-5, 1e-6);

    /// Sensitivities in f32 against f64: they are sums of T terms whose
    /// magnitudes grow like T, with cancellation; allow 1e-4 relative to the
    /// larger of |want| and 1.
    pub const SENS_F32_VS_F64: Tolerance = Tolerance::rel_abs(1e-4, 1e-4);

    /// Central finite differences (h = 1e-6) of the f64 map against the exact
    /// sensitivities: truncation O(h^2 w''') plus rounding O(eps / h) ~ 1e-10.
    pub const FINITE_DIFFERENCE: Tolerance = Tolerance::rel_abs(1e-6, 1e-7);

    /// True when `got` matches `want`.
    pub fn accepts(&self, got: f64, want: f64) -> bool {
        if want.is_nan() || got.is_nan() {
            return want.is_nan() && got.is_nan();
        }
        (got - want).abs() <= self.abs + self.rel * want.abs()
    }

    /// Compares two arrays; on failure returns a message naming the number of
    /// mismatches, the worst index, both values, the difference, the threshold
    /// and `describe(index)` (e.g. the trajectory's parameters).
    pub fn compare(
        &self,
        what: &str,
        got: impl IntoIterator<Item = f64>,
        want: impl IntoIterator<Item = f64>,
        describe: impl Fn(usize) -> String,
    ) -> Result<(), String> {
        let mut worst: Option<(usize, f64, f64, f64)> = None;
        let mut bad = 0usize;
        let mut n = 0usize;
        for (i, (g, w)) in got.into_iter().zip(want).enumerate() {
            n += 1;
            if !self.accepts(g, w) {
                bad += 1;
                let excess = if g.is_nan() != w.is_nan() {
                    f64::INFINITY
                } else {
                    (g - w).abs() / (self.abs + self.rel * w.abs())
                };
                if worst.is_none_or(|(_, _, _, e)| excess > e) {
                    worst = Some((i, g, w, excess));
                }
            }
        }
        match worst {
            None => Ok(()),
            Some((i, g, w, _)) => Err(format!(
                "{what}: {bad} of {n} values out of tolerance (rel {}, abs {}); worst at index {i}: got {g:e}, want {w:e}, diff {:e}, threshold {:e}; {}",
                self.rel,
                self.abs,
                (g - w).abs(),
                self.abs + self.rel * w.abs(),
                describe(i)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_matches_only_nan() {
        let t = Tolerance::F32_VS_F64;
        assert!(t.accepts(f64::NAN, f64::NAN));
        assert!(!t.accepts(1.0, f64::NAN));
        assert!(!t.accepts(f64::NAN, 1.0));
    }

    #[test]
    fn compare_reports_the_worst_index() {
        let t = Tolerance::rel_abs(0.0, 0.1);
        let e = t
            .compare("x", [0.0, 1.0, 5.0], [0.0, 1.05, 2.0], |i| {
                format!("item {i}")
            })
            .unwrap_err();
        assert!(
            e.contains("worst at index 2") && e.contains("item 2"),
            "{e}"
        );
    }
}
