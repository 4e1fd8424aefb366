//! HP linear ion drift with a window function (model `linear-drift`).
//!
//! Strukov et al., "The missing memristor found", Nature 453, 80 (2008), with
//! the windows of Joglekar and Wolf (Eur. J. Phys. 30, 661, 2009) and Biolek et
//! al. (Radioengineering 18, 210, 2009):
//!
//! ```text
//! dw/dt = mu_v R_on / D² · i(t) · f(w)          w = doped fraction, in [0, 1]
//! i = V / R(w),   R(w) = R_on w + R_off (1 - w)
//! Joglekar (window = 0): f(w) = 1 - (2w - 1)^(2p)
//! Biolek   (window = 1): f(w) = 1 - (w - stp(-i))^(2p),  stp(x) = 1 if x >= 0 else 0
//! ```
//!
//! The feature is the conductance `1 / R(w)` (S) at the end of each pulse.
//! The state is clamped to `[0, 1]` after each (sub)step. Joglekar's window is
//! zero at both ends, so a device driven exactly to 0 or 1 stays there (its
//! known terminal-state problem); Biolek's releases it when the current reverses.
//!
//! Units: time in s, voltage in V, resistance in Ω, `D` in nm, `mu_v` in
//! nm²/(V s) (the HP paper's 1e-14 m²/(V s) is 1e4 nm²/(V s)). With the
//! defaults (the HP values), `mu_v R_on / D² = 1e4 /(A s)`, so a 1 V pulse moves
//! `w` by roughly 0.6 per second from the off state.
//!
//! | parameter | unit | default | range | purpose |
//! |---|---|---|---|---|
//! | `r_on` | Ω | 100 | (0, inf) | resistance when fully doped |
//! | `r_off` | Ω | 16000 | (0, inf), > `r_on` | resistance when undoped |
//! | `d` | nm | 10 | (0, inf) | film thickness |
//! | `mu_v` | nm²/(V s) | 1e4 | [0, inf) | dopant mobility |
//! | `p` | 1 | 1 | [1, 50] | window exponent (sharpness) |
//! | `window` | 1 | 0 | 0 or 1 | 0 = Joglekar, 1 = Biolek |
//! | `w0` | 1 | 0.1 | [0, 1] | initial doped fraction |

use crate::model::{DeviceModel, ParamSpec, check_table};
use crate::{Error, Result};

/// The `linear-drift` model (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct LinearDrift;

impl DeviceModel for LinearDrift {
    const NAME: &'static str = "linear-drift";
    const PARAMS: &'static [ParamSpec] = &[
        ParamSpec::new(
            "r_on",
            "ohm",
            100.0,
            0.0,
            true,
            f64::INFINITY,
            "resistance when fully doped",
        ),
        ParamSpec::new(
            "r_off",
            "ohm",
            16e3,
            0.0,
            true,
            f64::INFINITY,
            "resistance when undoped",
        ),
        ParamSpec::new("d", "nm", 10.0, 0.0, true, f64::INFINITY, "film thickness"),
        ParamSpec::new(
            "mu_v",
            "nm^2/(V s)",
            1e4,
            0.0,
            false,
            f64::INFINITY,
            "dopant mobility",
        ),
        ParamSpec::new("p", "1", 1.0, 1.0, false, 50.0, "window exponent"),
        ParamSpec::new(
            "window",
            "1",
            0.0,
            0.0,
            false,
            1.0,
            "0 = Joglekar, 1 = Biolek",
        ),
    ];
    const W0: ParamSpec = ParamSpec::new("w0", "1", 0.1, 0.0, false, 1.0, "initial doped fraction");
    const WGSL: &'static str = include_str!("../../shaders/models/linear_drift.wgsl");

    #[inline(always)]
    fn rhs(w: f64, v: f64, p: &[f64]) -> f64 {
        let (r_on, d, mu_v, exp_p, window) = (p[0], p[2], p[3], p[4], p[5]);
        let i = v / resistance(w, p);
        let f = if window == 0.0 {
            1.0 - ((2.0 * w - 1.0) * (2.0 * w - 1.0)).powf(exp_p)
        } else {
            let stp = if i <= 0.0 { 1.0 } else { 0.0 };
            1.0 - ((w - stp) * (w - stp)).powf(exp_p)
        };
        mu_v * r_on / (d * d) * i * f
    }

    #[inline(always)]
    fn project(w: f64, _p: &[f64]) -> f64 {
        w.clamp(0.0, 1.0)
    }

    #[inline(always)]
    fn observe(w: f64, p: &[f64]) -> f64 {
        1.0 / resistance(w, p)
    }

    fn check(params: &[f64]) -> Result<()> {
        check_table(Self::NAME, Self::PARAMS, params)?;
        if params[1] <= params[0] {
            return Err(Error::invalid(
                "linear-drift.r_off",
                params[1],
                format!("> r_on = {}", params[0]),
            ));
        }
        if params[5] != 0.0 && params[5] != 1.0 {
            return Err(Error::invalid(
                "linear-drift.window",
                params[5],
                "0 (Joglekar) or 1 (Biolek)",
            ));
        }
        Ok(())
    }
}

/// The memristance `R(w) = R_on w + R_off (1 - w)` in Ω.
#[inline(always)]
pub fn resistance(w: f64, p: &[f64]) -> f64 {
    p[0] * w + p[1] * (1.0 - w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joglekar_window_vanishes_at_both_ends_and_biolek_releases_on_reversal() {
        let mut p = LinearDrift::defaults();
        assert_eq!(LinearDrift::rhs(0.0, 1.0, &p), 0.0);
        assert_eq!(LinearDrift::rhs(1.0, -1.0, &p), 0.0);
        p[5] = 1.0;
        assert!(LinearDrift::rhs(1.0, -1.0, &p) < 0.0);
        assert_eq!(LinearDrift::rhs(1.0, 1.0, &p), 0.0);
        assert!(LinearDrift::rhs(0.0, 1.0, &p) > 0.0);
        assert_eq!(LinearDrift::rhs(0.0, -1.0, &p), 0.0);
    }

    #[test]
    fn check_rejects_inverted_resistances_and_unknown_windows() {
        let mut p = LinearDrift::defaults();
        LinearDrift::check(&p).unwrap();
        p[1] = 50.0;
        let e = LinearDrift::check(&p).unwrap_err().to_string();
        assert_eq!(e, "linear-drift.r_off = 50: > r_on = 100");
        let mut p = LinearDrift::defaults();
        p[5] = 0.5;
        assert!(LinearDrift::check(&p).is_err());
    }
}
