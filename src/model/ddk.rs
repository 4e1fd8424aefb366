//! The paper's drift-diffusion kinetics (DDK) map.
//!
//! ```text
//! w[0] = w0
//! w[k] = w[k-1] + alpha[k] / w[k-1] - beta[k] * x[k-1]      k = 1 .. T-1
//! ```
//!
//! It is the forward-Euler step (dt = 1) of `dw/dt = alpha / w - beta * V(t)`.
//! The map stays positive while `beta * x < 2 * sqrt(alpha)` (the minimum of
//! `w + alpha / w`); beyond that it can go non-positive and explode, which the
//! engines flag per trajectory ([`crate::batch::Status`]).
//!
//! Forward sensitivities (exact derivatives of the map, zero at k = 0):
//!
//! ```text
//! dw[k]/dalpha = dw[k-1]/dalpha * (1 - alpha / w[k-1]^2) + 1 / w[k-1]
//! dw[k]/dbeta  = dw[k-1]/dbeta  * (1 - alpha / w[k-1]^2) - x[k-1]
//! ```
//!
//! Twin of `shaders/ddk.wgsl` (`ddk_step`, `ddk_sens_step`).

/// One step of the map: the next state from the previous one and the previous input.
#[inline(always)]
pub fn ddk_step(w: f64, x: f64, alpha: f64, beta: f64) -> f64 {
    w + alpha / w - beta * x
}

/// One step of the forward sensitivities `(dw/dalpha, dw/dbeta)`, given the
/// previous state `w`, the previous input `x` and the previous sensitivities.
#[inline(always)]
pub fn ddk_sens_step(w: f64, x: f64, alpha: f64, da: f64, db: f64) -> (f64, f64) {
    let j = 1.0 - alpha / (w * w);
    (da * j + 1.0 / w, db * j - x)
}

/// The map's fixed point under a constant input `x > 0`: `w* = alpha / (beta x)`.
pub fn fixed_point(alpha: f64, beta: f64, x: f64) -> f64 {
    alpha / (beta * x)
}

/// The largest drive `beta * x` for which one step from any positive state stays
/// positive: `2 sqrt(alpha)`.
pub fn max_stable_drive(alpha: f64) -> f64 {
    2.0 * alpha.sqrt()
}

/// The largest drive `beta * x` for which the fixed point attracts (the map's
/// derivative `1 - alpha / w*^2` lies in (-1, 1)): `sqrt(2 alpha)`. Between this and
/// [`max_stable_drive`] trajectories stay positive but oscillate.
pub fn max_contracting_drive(alpha: f64) -> f64 {
    (2.0 * alpha).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_matches_hand_computation() {
        assert_eq!(ddk_step(1.0, 0.0, 0.7, 1.0), 1.7);
        assert!((ddk_step(2.0, 0.5, 0.5, 1.0) - 1.75).abs() < 1e-15);
    }

    #[test]
    fn fixed_point_is_invariant_under_the_step() {
        let (a, b, x) = (0.7, 1.0, 0.8);
        let w = fixed_point(a, b, x);
        assert!((ddk_step(w, x, a, b) - w).abs() < 1e-14);
    }
}
