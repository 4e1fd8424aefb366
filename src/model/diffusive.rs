//! A volatile diffusive memristor for reservoir computing (model `diffusive`).
//!
//! The form of Du et al., "Reservoir computing using dynamic memristors for
//! temporal information processing", Nat. Commun. 8, 2204 (2017), and Zhong et
//! al., "Dynamic memristor-based reservoir computing for high-efficiency temporal
//! signal processing", Nat. Commun. 12, 408 (2021):
//!
//! ```text
//! dw/dt = lambda sinh(eta V) - w / tau                 w clamped to [0, 1]
//! I(w, V) = (1 - w) alpha (1 - exp(-beta V)) + w gamma sinh(delta V)
//! ```
//!
//! `w` is the normalised conducting-filament (or vacancy) state: a voltage
//! pulse drives it up through the `sinh` drift, and it decays back
//! spontaneously with time constant `tau` (the short-term memory a reservoir
//! needs). The current is a Schottky-like term for the undoped part plus a
//! tunnelling-like term for the doped part. The feature of step `k` is the read
//! current `I(w, v_read)` at the end of pulse `k` (and its rest).
//!
//! Units: time in ms (pulse widths in the [`crate::model::integrate::PulseProtocol`]
//! too), voltage in V, current in µA. The defaults are illustrative values of
//! the right orders of magnitude (ms retention, µA read currents at a 0.5 V
//! read), not a fit to a specific device; fit them to measured pulse responses
//! for quantitative work.
//!
//! | parameter | unit | default | range | purpose |
//! |---|---|---|---|---|
//! | `lambda` | 1/ms | 0.1 | [0, inf) | drift rate prefactor |
//! | `eta` | 1/V | 2.0 | [0, 50] | drift voltage sensitivity |
//! | `tau` | ms | 10.0 | (0, inf) | retention (relaxation) time |
//! | `alpha` | µA | 0.5 | [0, inf) | Schottky-term current scale |
//! | `beta` | 1/V | 3.0 | [0, 50] | Schottky-term voltage sensitivity |
//! | `gamma` | µA | 5.0 | [0, inf) | tunnelling-term current scale |
//! | `delta` | 1/V | 2.0 | [0, 50] | tunnelling-term voltage sensitivity |
//! | `v_read` | V | 0.5 | [-10, 10] | read voltage for the features |
//! | `w0` | 1 | 0.0 | [0, 1] | initial state (relaxed device) |
//!
//! The exponent ranges keep `sinh`/`exp` finite for pulses up to about 14 V.

use crate::model::{DeviceModel, ParamSpec};

/// The `diffusive` model (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct Diffusive;

impl DeviceModel for Diffusive {
    const NAME: &'static str = "diffusive";
    const PARAMS: &'static [ParamSpec] = &[
        ParamSpec::new(
            "lambda",
            "1/ms",
            0.1,
            0.0,
            false,
            f64::INFINITY,
            "drift rate prefactor",
        ),
        ParamSpec::new(
            "eta",
            "1/V",
            2.0,
            0.0,
            false,
            50.0,
            "drift voltage sensitivity",
        ),
        ParamSpec::new(
            "tau",
            "ms",
            10.0,
            0.0,
            true,
            f64::INFINITY,
            "retention (relaxation) time",
        ),
        ParamSpec::new(
            "alpha",
            "uA",
            0.5,
            0.0,
            false,
            f64::INFINITY,
            "Schottky-term current scale",
        ),
        ParamSpec::new(
            "beta",
            "1/V",
            3.0,
            0.0,
            false,
            50.0,
            "Schottky-term voltage sensitivity",
        ),
        ParamSpec::new(
            "gamma",
            "uA",
            5.0,
            0.0,
            false,
            f64::INFINITY,
            "tunnelling-term current scale",
        ),
        ParamSpec::new(
            "delta",
            "1/V",
            2.0,
            0.0,
            false,
            50.0,
            "tunnelling-term voltage sensitivity",
        ),
        ParamSpec::new(
            "v_read",
            "V",
            0.5,
            -10.0,
            false,
            10.0,
            "read voltage for the features",
        ),
    ];
    const W0: ParamSpec = ParamSpec::new("w0", "1", 0.0, 0.0, false, 1.0, "initial state");
    const WGSL: &'static str = include_str!("../../shaders/models/diffusive.wgsl");

    #[inline(always)]
    fn rhs(w: f64, v: f64, p: &[f64]) -> f64 {
        p[0] * (p[1] * v).sinh() - w / p[2]
    }

    #[inline(always)]
    fn project(w: f64, _p: &[f64]) -> f64 {
        w.clamp(0.0, 1.0)
    }

    #[inline(always)]
    fn observe(w: f64, p: &[f64]) -> f64 {
        read_current(w, p[7], p)
    }
}

/// The device current `I(w, V)` in µA (module docs).
#[inline(always)]
pub fn read_current(w: f64, v: f64, p: &[f64]) -> f64 {
    (1.0 - w) * p[3] * -(-p[4] * v).exp_m1() + w * p[5] * (p[6] * v).sinh()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxes_exponentially_at_zero_voltage() {
        let p = Diffusive::defaults();
        assert_eq!(Diffusive::rhs(0.5, 0.0, &p), -0.05);
        assert_eq!(Diffusive::project(1.2, &p), 1.0);
        assert_eq!(Diffusive::project(-0.1, &p), 0.0);
    }

    #[test]
    fn read_current_interpolates_between_the_two_conduction_terms() {
        let p = Diffusive::defaults();
        let schottky = 0.5 * (1.0 - (-1.5f64).exp());
        let tunnel = 5.0 * 1.0f64.sinh();
        assert!((read_current(0.0, 0.5, &p) - schottky).abs() < 1e-15);
        assert!((read_current(1.0, 0.5, &p) - tunnel).abs() < 1e-14);
    }
}
