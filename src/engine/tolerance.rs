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
    /// and `describe(index)` (e.g. the trajectory's parameters). Arrays of
    /// different lengths never match: the message gives both lengths.
    pub fn compare(
        &self,
        what: &str,
        got: impl IntoIterator<Item = f64>,
        want: impl IntoIterator<Item = f64>,
        describe: impl Fn(usize) -> String,
    ) -> Result<(), String> {
        let mut worst: Option<(usize, f64, f64, f64)> = None;
        let mut bad = 0usize;
        let (mut got, mut want) = (got.into_iter(), want.into_iter());
        let mut n = 0usize;
        loop {
            let (g, w) = match (got.next(), want.next()) {
                (Some(g), Some(w)) => (g, w),
                (None, None) => break,
                (g, w) => {
                    let (extra_got, extra_want) = (g.is_some() as usize, w.is_some() as usize);
                    return Err(format!(
                        "{what}: lengths differ: got {} values, want {}",
                        n + extra_got + got.count(),
                        n + extra_want + want.count()
                    ));
                }
            };
            let i = n;
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

    /// [`Tolerance::compare`] for row-major arrays with shapes: the shapes must be
    /// equal and each array as long as its shape implies; the worst index is
    /// given as a multi-index (`[p, s, k]`), which `describe` receives too.
    pub fn compare_shaped<G: Copy + Into<f64>, W: Copy + Into<f64>>(
        &self,
        what: &str,
        got: &[G],
        got_shape: &[usize],
        want: &[W],
        want_shape: &[usize],
        describe: impl Fn(&[usize]) -> String,
    ) -> Result<(), String> {
        if got_shape != want_shape {
            return Err(format!("{what}: shape {got_shape:?}, want {want_shape:?}"));
        }
        let n: usize = want_shape.iter().product();
        for (side, len) in [("got", got.len()), ("want", want.len())] {
            if len != n {
                return Err(format!(
                    "{what}: {side} has {len} values, shape {want_shape:?} needs {n}"
                ));
            }
        }
        let unravel = |mut i: usize| {
            let mut ix = vec![0; want_shape.len()];
            for (d, &len) in want_shape.iter().enumerate().rev() {
                ix[d] = i % len.max(1);
                i /= len.max(1);
            }
            ix
        };
        self.compare(
            what,
            got.iter().map(|&v| v.into()),
            want.iter().map(|&v| v.into()),
            |i| {
                let ix = unravel(i);
                format!("index {ix:?}: {}", describe(&ix))
            },
        )
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

    #[test]
    fn compare_rejects_arrays_of_different_lengths() {
        let t = Tolerance::rel_abs(0.0, 0.1);
        for (got, want) in [(vec![1.0], vec![1.0, 2.0]), (vec![1.0, 2.0], vec![1.0])] {
            let e = t.compare("x", got, want, |_| String::new()).unwrap_err();
            assert!(e.contains("lengths differ"), "{e}");
        }
        let e = t
            .compare("x", Vec::<f64>::new(), [1.0], |_| String::new())
            .unwrap_err();
        assert!(e.contains("got 0 values, want 1"), "{e}");
    }

    #[test]
    fn compare_shaped_checks_shape_and_length_and_names_the_multi_index() {
        let t = Tolerance::rel_abs(0.0, 0.1);
        let want = [0.0f64, 1.0, 2.0, 3.0, 4.0, 5.0];
        let e = t
            .compare_shaped("x", &want[..5], &[2, 3], &want, &[2, 3], |_| String::new())
            .unwrap_err();
        assert!(e.contains("got has 5 values"), "{e}");
        let e = t
            .compare_shaped("x", &want, &[3, 2], &want, &[2, 3], |_| String::new())
            .unwrap_err();
        assert!(e.contains("shape [3, 2]"), "{e}");
        let mut got = want;
        got[4] = 9.0;
        let e = t
            .compare_shaped("x", &got, &[2, 3], &want, &[2, 3], |ix| {
                format!("at {ix:?}")
            })
            .unwrap_err();
        assert!(e.contains("index [1, 1]") && e.contains("at [1, 1]"), "{e}");
        assert!(
            t.compare_shaped("x", &want, &[2, 3], &want, &[2, 3], |_| String::new())
                .is_ok()
        );
    }
}
