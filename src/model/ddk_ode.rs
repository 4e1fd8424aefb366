//! The continuous DDK law: `dw/dt = alpha / w - beta V(t)` (model `ddk-ode`).
//!
//! `alpha / w` is diffusion-limited growth, `-beta V` field-driven drift. The
//! paper's map ([`crate::model::ddk`]) is its forward-Euler step with `dt = 1`:
//! [`DdkOde::euler`] with `h = 1`, `V = x` reproduces `ddk_step` bit for bit.
//!
//! | parameter | unit | default | range | purpose |
//! |---|---|---|---|---|
//! | `alpha` | w²/t | 0.7 | (0, inf) | diffusion-limited growth rate |
//! | `beta` | w/(V t) | 1.0 | [0, inf) | field-driven drift coefficient |
//! | `w0` | w | 1.0 | (0, inf) | initial state |
//!
//! Units: the state `w`, time `t` and voltage `V` are in the units of the map
//! (one map step = one time unit, `V = x` in [0, 1]); the feature is `w`.
//!
//! # Exact solution under a constant voltage
//!
//! With `c = beta V`, `w* = alpha / c`, `q = w / w*` and `s = c² t / alpha`, the
//! law becomes `dq/ds = 1/q - 1`, which separates into
//!
//! ```text
//! phi(q) = phi(q0) + s,        phi(q) = -q - ln|1 - q|
//! ```
//!
//! (`phi` grows along every trajectory). Solving for `q` gives the Lambert-W
//! form of DESIGN.md, `w = w* (1 + W(-(1 - q0) e^(-(1 - q0) - s)))`, whose
//! argument is `sigma e^(-1 - Phi)` with `Phi = phi(q0) + s`:
//!
//! | case | branch | evaluated as (no overflow, no underflow) |
//! |---|---|---|
//! | `c > 0`, `q0 < 1` (rising to `w*`) | W0 | `lambert_w0_below_branch(Phi)` |
//! | `c > 0`, `q0 > 1` (falling to `w*`) | W0 | `lambert_w0_exp(-1 - Phi)` |
//! | `c < 0` (`q < 0`, growing without bound) | W-1 | `lambert_wm1_below_branch(Phi)` |
//! | `c = 0` | none | `sqrt(w0² + 2 alpha t)` |
//!
//! `Phi` is computed in logarithmic form, so large `t` neither overflows nor
//! underflows. When `|q| < 1/2`, `1 + W` cancels; there `q` is refined by Newton
//! steps on `phi(q) = Phi` (with `phi` summed as a series for `|q| < 0.1`), which
//! are well conditioned.

use crate::batch::Status;
use crate::model::lambert_w::{
    lambert_w0_below_branch, lambert_w0_exp, lambert_wm1_below_branch, one_plus_w_branch_series,
};
use crate::model::{DeviceModel, ParamSpec};

/// The `ddk-ode` model (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct DdkOde;

impl DeviceModel for DdkOde {
    const NAME: &'static str = "ddk-ode";
    const PARAMS: &'static [ParamSpec] = &[
        ParamSpec {
            name: "alpha",
            unit: "w^2/t",
            default: 0.7,
            min: 0.0,
            min_exclusive: true,
            max: f64::INFINITY,
            purpose: "diffusion-limited growth rate",
        },
        ParamSpec {
            name: "beta",
            unit: "w/(V t)",
            default: 1.0,
            min: 0.0,
            min_exclusive: false,
            max: f64::INFINITY,
            purpose: "field-driven drift coefficient",
        },
    ];
    const W0: ParamSpec = ParamSpec {
        name: "w0",
        unit: "w",
        default: 1.0,
        min: 0.0,
        min_exclusive: true,
        max: f64::INFINITY,
        purpose: "initial state",
    };
    const WGSL: &'static str = include_str!("../../shaders/models/ddk_ode.wgsl");
    const HAS_EXACT: bool = true;

    #[inline(always)]
    fn rhs(w: f64, v: f64, p: &[f64]) -> f64 {
        p[0] / w - p[1] * v
    }

    /// `w + h (alpha / w) - h (beta v)`: with `h = 1` exactly the operations of
    /// [`crate::model::ddk::ddk_step`].
    #[inline(always)]
    fn euler(w: f64, v: f64, h: f64, p: &[f64]) -> f64 {
        w + h * (p[0] / w) - h * (p[1] * v)
    }

    #[inline(always)]
    fn observe(w: f64, _p: &[f64]) -> f64 {
        w
    }

    /// Non-positive states are failures (`alpha / w` is singular at 0).
    #[inline(always)]
    fn classify(w: f64) -> Status {
        Status::classify(w)
    }

    fn exact(w0: f64, v: f64, t: f64, p: &[f64]) -> Option<f64> {
        Some(ddk_exact(w0, p[0], p[1] * v, t))
    }
}

/// `phi(q) = -q - ln|1 - q|`, accurate near `q = 0` (series) and `+inf` at 1.
pub fn phi(q: f64) -> f64 {
    if q.abs() < 0.1 {
        // -ln(1 - q) - q = sum_{k >= 2} q^k / k; 20 terms reach 1e-19 relative.
        let mut sum = 0.0;
        for k in (2..=21).rev() {
            sum = sum * q + 1.0 / k as f64;
        }
        sum * q * q
    } else {
        -q - (1.0 - q).abs().ln()
    }
}

/// Newton steps on `phi(q) = big_phi` (used for `|q| < 1/2`, where `1 + W` cancels).
fn polish(mut q: f64, big_phi: f64) -> f64 {
    for _ in 0..4 {
        let dq = (phi(q) - big_phi) * (1.0 - q) / q;
        if !dq.is_finite() {
            break;
        }
        q -= dq;
        if dq.abs() <= 1e-16 * q.abs() {
            break;
        }
    }
    q
}

/// The exact DDK state after time `t >= 0` under a constant drive `c = beta V`,
/// from `w0 > 0` with growth rate `alpha > 0` (module docs for the method).
/// Accurate to about 1e-15 relative; finite for every finite input.
pub fn ddk_exact(w0: f64, alpha: f64, c: f64, t: f64) -> f64 {
    if c == 0.0 {
        return w0.mul_add(w0, 2.0 * alpha * t).sqrt();
    }
    let q0 = c * w0 / alpha;
    let s = c * c * t / alpha;
    let big_phi = phi(q0) + s;
    let q = if q0 == 1.0 {
        1.0
    } else if q0 > 1.0 {
        1.0 + lambert_w0_exp(-1.0 - big_phi)
    } else {
        let sigma = if q0 > 0.0 { 1.0 } else { -1.0 };
        let q = if big_phi < 0.05 {
            one_plus_w_branch_series(sigma * (-2.0 * (-big_phi).exp_m1()).sqrt())
        } else if q0 > 0.0 {
            1.0 + lambert_w0_below_branch(big_phi)
        } else {
            1.0 + lambert_wm1_below_branch(big_phi)
        };
        if q.abs() < 0.5 { polish(q, big_phi) } else { q }
    };
    alpha / c * q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ddk::ddk_step;

    #[test]
    fn euler_step_with_unit_step_is_the_papers_map_bit_for_bit() {
        let p = [0.7, 1.0];
        let mut w = 1.0;
        for x in [0.0, 0.3, 1.0, 0.77, 0.123456789, 1.0, 0.0] {
            assert_eq!(
                DdkOde::euler(w, x, 1.0, &p).to_bits(),
                ddk_step(w, x, 0.7, 1.0).to_bits()
            );
            w = ddk_step(w, x, 0.7, 1.0);
        }
    }

    #[test]
    fn exact_solution_starts_at_w0_and_relaxes_to_the_fixed_point() {
        for (w0, c) in [
            (1.0, 1.0),
            (0.1, 2.0),
            (5.0, 0.3),
            (1.0, -0.5),
            (1e-3, 1e-3),
        ] {
            let w = ddk_exact(w0, 0.7, c, 0.0);
            assert!(((w - w0) / w0).abs() < 1e-14, "w0 {w0} c {c}: {w}");
        }
        assert!((ddk_exact(0.1, 0.7, 1.0, 1e4) - 0.7).abs() < 1e-14);
        assert!((ddk_exact(50.0, 0.7, 1.0, 1e6) - 0.7).abs() < 1e-14);
        // c < 0: w grows like |c| t for large t, never overflowing prematurely.
        let w = ddk_exact(1.0, 0.7, -1.0, 1e9);
        assert!((w / 1e9 - 1.0).abs() < 1e-7, "{w}");
    }

    #[test]
    fn exact_solution_satisfies_the_ode_by_central_differences() {
        let alpha = 0.7;
        for (w0, c, t) in [
            (1.0, 1.0, 0.5),
            (0.05, 3.0, 0.01),
            (4.0, 0.5, 2.0),
            (1.0, -1.0, 3.0),
        ] {
            let dt = 1e-5;
            let d =
                (ddk_exact(w0, alpha, c, t + dt) - ddk_exact(w0, alpha, c, t - dt)) / (2.0 * dt);
            let w = ddk_exact(w0, alpha, c, t);
            let f = alpha / w - c;
            assert!(
                (d - f).abs() < 1e-6 * (1.0 + f.abs()),
                "w0 {w0} c {c} t {t}: {d} vs {f}"
            );
        }
    }
}
