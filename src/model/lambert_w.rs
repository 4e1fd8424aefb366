//! The Lambert W function (real branches W0 and W-1), f64.
//!
//! `W(x)` solves `W e^W = x`. For real `x` it has two branches:
//!
//! | branch | domain | range |
//! |---|---|---|
//! | [`lambert_w0`] (principal) | `x >= -1/e` | `W >= -1` |
//! | [`lambert_wm1`] | `-1/e <= x < 0` | `W <= -1` |
//!
//! Method: an initial guess (the branch-point series near `x = -1/e`, Winitzki's
//! approximation on the principal branch, the asymptotic expansion
//! `L1 - L2 + L2/L1` for large `|ln|x||`), then Fritsch's iteration (Fritsch,
//! Shafer and Crowley, CACM 16, 123, 1973; fourth-order convergent, written in
//! logarithms so that it neither overflows nor underflows). Close to the branch
//! point the series `W = -1 ± p - p²/3 ± 11p³/72 ...` with
//! `p = sqrt(2 (e x + 1))` is summed to ten terms; `e x + 1` is computed with a
//! two-word `e`, so no precision is lost to cancellation there.
//!
//! Accuracy: about 1e-15 relative away from the branch point. Near it `W` is
//! ill-conditioned (`x W'(x) / W = 1 / (1 + W)`), so a double `x` determines
//! `W` only to about `2e-16 / p`; the functions reach that.
//!
//! The variants [`lambert_w0_exp`], [`lambert_w0_below_branch`] and
//! [`lambert_wm1_below_branch`] take the argument in logarithmic form, which the
//! exact DDK solution ([`crate::model::ddk_ode`]) needs for large times and
//! near the branch point.

/// `e` as a two-word sum: `E_HI + E_LO = e` to about 1e-32.
const E_HI: f64 = std::f64::consts::E;
const E_LO: f64 = 1.445_646_891_729_250_2e-16;

/// The branch-point series coefficients: `W = -1 + sum_k MU[k] p^(k+1)` on W0
/// and with `-p` on W-1 (Corless et al., Adv. Comput. Math. 5, 329, 1996, eq.
/// 4.22); the constant term -1 is kept apart so that `1 + W` keeps its relative
/// precision near the branch point.
const MU: [f64; 9] = [
    1.0,
    -1.0 / 3.0,
    11.0 / 72.0,
    -43.0 / 540.0,
    769.0 / 17280.0,
    -221.0 / 8505.0,
    680_863.0 / 43_545_600.0,
    -1963.0 / 204_120.0,
    226_287_557.0 / 37_623_398_400.0,
];

/// Below this `p`, the ten-term series is exact to ~1e-17 and is returned as is.
const SERIES_P: f64 = 0.03;

/// The branch-point series at `p` (use `-p` for W-1).
fn branch_series(p: f64) -> f64 {
    one_plus_w_branch_series(p) - 1.0
}

/// `1 + W` from the branch-point series at `p` (use `-p` for W-1), without its
/// constant term, so that small `1 + W` keeps full relative precision. The
/// one copy of the series in Rust (the exact DDK solution uses it too).
pub fn one_plus_w_branch_series(p: f64) -> f64 {
    MU.iter().rev().fold(0.0, |acc, &m| acc * p + m) * p
}

/// Fritsch's iteration for `W e^W = x` given `ln(x / w)` as a function of `w`
/// (so that callers may supply it in logarithmic form). Stops when the relative
/// correction is below 1e-16 or after 6 steps (it converges in 2 to 3).
fn fritsch(mut w: f64, ln_x_over_w: impl Fn(f64) -> f64) -> f64 {
    for _ in 0..6 {
        let z = ln_x_over_w(w) - w;
        let w1 = 1.0 + w;
        let q = 2.0 * w1 * (w1 + 2.0 * z / 3.0);
        let eps = z / w1 * (q - z) / (q - 2.0 * z);
        if !eps.is_finite() {
            break;
        }
        w *= 1.0 + eps;
        if eps.abs() < 1e-16 {
            break;
        }
    }
    w
}

/// `e x + 1` without cancellation near `x = -1/e`.
fn branch_distance(x: f64) -> f64 {
    E_HI.mul_add(x, 1.0) + E_LO * x
}

/// The principal branch `W0(x)` for `x >= -1/e`; NaN below (a rounding margin of
/// a few ulps below `-1/e` returns -1).
pub fn lambert_w0(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x == f64::INFINITY {
        return f64::INFINITY;
    }
    if x.abs() < 1e-9 {
        // x - x^2 + 3/2 x^3: the next term, 8/3 x^4, is below 1e-26 relative.
        return x * (1.0 - x * (1.0 - 1.5 * x));
    }
    let r = branch_distance(x);
    if r < 0.0 {
        return if r > -1e-15 { -1.0 } else { f64::NAN };
    }
    let p = (2.0 * r).sqrt();
    if p < SERIES_P {
        return branch_series(p);
    }
    let w = if x < -0.25 {
        branch_series(p)
    } else if x < 20.0 {
        // Winitzki (2003): within a few percent on [-1/e, 20].
        let l = x.ln_1p();
        l * (1.0 - l.ln_1p() / (2.0 + l))
    } else {
        let l1 = x.ln();
        let l2 = l1.ln();
        l1 - l2 + l2 / l1
    };
    fritsch(w, |w| (x / w).ln())
}

/// The branch `W-1(x)` for `-1/e <= x < 0`; `-inf` at `x = 0`, NaN outside.
pub fn lambert_wm1(x: f64) -> f64 {
    if x.is_nan() || x > 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    let r = branch_distance(x);
    if r < 0.0 {
        return if r > -1e-15 { -1.0 } else { f64::NAN };
    }
    let p = (2.0 * r).sqrt();
    if p < SERIES_P {
        return branch_series(-p);
    }
    let w = if x < -0.25 {
        branch_series(-p)
    } else {
        let l1 = (-x).ln();
        let l2 = (-l1).ln();
        l1 - l2 + l2 / l1
    };
    if x > -1e-290 {
        // x / w would be subnormal or zero: take the logarithms apart.
        let lx = (-x).ln();
        return fritsch(w, |w| lx - (-w).ln());
    }
    fritsch(w, |w| (x / w).ln())
}

/// `W0(e^l)` for any real `l`, without overflow for large `l` (it solves
/// `w + ln w = l`). Equals `lambert_w0(l.exp())` where that is finite.
pub fn lambert_w0_exp(l: f64) -> f64 {
    if l.is_nan() {
        return f64::NAN;
    }
    if l < 700.0 {
        return lambert_w0(l.exp());
    }
    if l == f64::INFINITY {
        return f64::INFINITY;
    }
    let l2 = l.ln();
    fritsch(l - l2 + l2 / l, |w| l - w.ln())
}

/// `W0(-e^(-1-h))` for `h >= 0`: the principal branch at a distance `h` (in
/// logarithm) below the branch point. `h` is taken exactly, so small `h` keeps
/// its full precision (`p = sqrt(-2 expm1(-h))`).
pub fn lambert_w0_below_branch(h: f64) -> f64 {
    if h.is_nan() || h < 0.0 {
        return f64::NAN;
    }
    let p = (-2.0 * (-h).exp_m1()).sqrt();
    if p < SERIES_P {
        return branch_series(p);
    }
    lambert_w0(-(-1.0 - h).exp())
}

/// `W-1(-e^(-1-h))` for `h >= 0`: the lower branch at a distance `h` (in
/// logarithm) below the branch point. Works for any `h` (no underflow: for
/// large `h` it solves `v - ln v = 1 + h`, `W = -v`).
pub fn lambert_wm1_below_branch(h: f64) -> f64 {
    if h.is_nan() || h < 0.0 {
        return f64::NAN;
    }
    if h == f64::INFINITY {
        return f64::NEG_INFINITY;
    }
    let p = (-2.0 * (-h).exp_m1()).sqrt();
    if p < SERIES_P {
        return branch_series(-p);
    }
    if h < 600.0 {
        return lambert_wm1(-(-1.0 - h).exp());
    }
    // ln(x / w) = ln(e^(-1-h) / (-w)) = -1 - h - ln(-w).
    let l = -1.0 - h;
    let l2 = (-l).ln();
    fritsch(l - l2 + l2 / l, |w| l - (-w).ln())
}

#[cfg(test)]
// Reference values keep every digit mpmath printed.
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;

    /// Reference values from mpmath 1.3 (`mp.lambertw`, 50 digits) at the exact
    /// double arguments shown.
    const W0_REF: [(f64, f64); 20] = [
        (-0.3678794411714, -0.99999952021040449284),
        (-0.36787944, -0.99992019848415144646),
        (-0.3678, -0.97936071495783051713),
        (-0.367, -0.93239918474792821668),
        (-0.3, -0.48940222718021493357),
        (-0.25, -0.35740295618138890307),
        (-0.1, -0.11183255915896297182),
        (-1e-05, -0.000010000100001500027485),
        (1e-08, 9.9999999000000017092e-9),
        (0.01, 0.0099014738435950120894),
        (0.5, 0.35173371124919582602),
        (1.0, 0.567143290409783873),
        (std::f64::consts::E, 0.99999999999999997341),
        (10.0, 1.7455280027406993831),
        (100.0, 3.3856301402900501849),
        (100000.0, 9.2845714286221089832),
        (1e+20, 42.306755091738393852),
        (1e+100, 224.84310644511850156),
        (1e+300, 684.24720862976084929),
        (1.7e+308, 703.17123645148866816),
    ];
    const WM1_REF: [(f64, f64); 12] = [
        (-0.3678794411714, -1.0000004797897489726),
        (-0.36787944, -1.0000798057615957206),
        (-0.3678, -1.0209272394094254568),
        (-0.367, -1.0707918867680521669),
        (-0.3, -1.7813370234216276963),
        (-0.25, -2.1532923641103496492),
        (-0.1, -3.5771520639572971414),
        (-1e-05, -14.163600815810182921),
        (-1e-20, -49.962984276674472501),
        (-1e-100, -235.72115887568531364),
        (-1e-300, -697.32277629546016097),
        (-5e-324, -751.0615595398790806),
    ];
    /// `(l, W0(e^l))`.
    const W0_EXP_REF: [(f64, f64); 4] = [
        (700.0, 693.45830887902549834),
        (1000.0, 993.09916947238910439),
        (1e5, 99988.487189669760823),
        (1e10, 9999999976.9741490724),
    ];
    /// `(h, W0(-e^(-1-h)), W-1(-e^(-1-h)))`.
    const BELOW_BRANCH_REF: [(f64, f64, f64); 9] = [
        (1e-12, -0.99999858578710429349, -1.0000014142142290398),
        (1e-06, -0.99858645302571133539, -1.0014148803075923683),
        (0.001, -0.95594280774095191779, -1.0453904959636925659),
        (0.5, -0.30170956268433601153, -2.3576766739458990584),
        (10.0, -0.000016701979744043482926, -13.610868638149875938),
        (599.0, -2.6503965530043108163e-261, -606.40755228855231009),
        (700.0, -3.6271722970495223779e-305, -707.56182501087391084),
        (1e4, 0.0, -10010.211360987070071),
        (1e8, 0.0, -100000019.42068093816),
    ];

    fn assert_rel(what: &str, got: f64, want: f64, tol: f64) {
        let err = if want == 0.0 {
            got.abs()
        } else {
            ((got - want) / want).abs()
        };
        assert!(
            err <= tol,
            "{what}: got {got:e}, want {want:e}, rel err {err:e} > {tol:e}"
        );
    }

    #[test]
    fn principal_branch_matches_mpmath_to_1e_14() {
        for (x, w) in W0_REF {
            assert_rel(&format!("W0({x:e})"), lambert_w0(x), w, 1e-14);
        }
    }

    #[test]
    fn lower_branch_matches_mpmath_to_1e_14() {
        for (x, w) in WM1_REF {
            assert_rel(&format!("W-1({x:e})"), lambert_wm1(x), w, 1e-14);
        }
    }

    #[test]
    fn logarithmic_forms_match_mpmath_beyond_the_range_of_f64() {
        for (l, w) in W0_EXP_REF {
            assert_rel(&format!("W0(e^{l:e})"), lambert_w0_exp(l), w, 1e-14);
        }
        for (h, w0, wm1) in BELOW_BRANCH_REF {
            assert_rel(
                &format!("W0 below branch {h:e}"),
                lambert_w0_below_branch(h),
                w0,
                1e-14,
            );
            assert_rel(
                &format!("W-1 below branch {h:e}"),
                lambert_wm1_below_branch(h),
                wm1,
                1e-14,
            );
        }
    }

    #[test]
    fn w_times_exp_w_gives_back_x_on_both_branches() {
        for &x in &[-0.3678, -0.3, -0.1, -1e-3, 1e-3, 0.5, 1.0, 10.0, 1e3, 1e100] {
            let w = lambert_w0(x);
            assert!(((w * w.exp() - x) / x).abs() < 1e-14, "W0({x}) = {w}");
        }
        for &x in &[-0.3678, -0.3, -0.1, -1e-3, -1e-100] {
            let w = lambert_wm1(x);
            assert!(((w * w.exp() - x) / x).abs() < 1e-13, "W-1({x}) = {w}");
        }
    }

    #[test]
    fn branch_point_and_domain_edges() {
        let x = -(-1.0f64).exp();
        assert!((lambert_w0(x) + 1.0).abs() < 1e-7);
        assert!((lambert_wm1(x) + 1.0).abs() < 1e-7);
        assert!(lambert_w0(-0.4).is_nan());
        assert!(lambert_wm1(0.1).is_nan());
        assert_eq!(lambert_wm1(0.0), f64::NEG_INFINITY);
        assert_eq!(lambert_w0(0.0), 0.0);
        assert_eq!(lambert_w0_below_branch(0.0), -1.0);
        assert_eq!(lambert_wm1_below_branch(0.0), -1.0);
    }
}
