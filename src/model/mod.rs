//! Device physics as pure scalar functions: no I/O, no buffers.
//!
//! Each function here has a WGSL twin in `shaders/`; the CPU engine calls these
//! and the parity tests compare the two.
//!
//! - [`ddk`]: the paper's discrete DDK map (twin of `shaders/ddk.wgsl`).
//! - [`lambert_w`]: the Lambert W function, for the exact DDK solution.
//! - Continuous-time device models, each behind [`DeviceModel`]:
//!   [`ddk_ode`] (`ddk-ode`), [`diffusive`] (`diffusive`) and
//!   [`linear_drift`] (`linear-drift`).
//! - [`fit`]: Levenberg-Marquardt fit of a model to a measured pulse-response trace.
//! - [`integrate`]: the pulse protocol, the integrators (Euler, Heun, RK4,
//!   adaptive Dormand-Prince 5(4), exact) and [`integrate::simulate_cpu`].
//!
//! # Adding a device model
//!
//! A model is one Rust file, one WGSL file and one registry entry:
//!
//! 1. `src/model/<name>.rs`: a unit struct implementing [`DeviceModel`]: its
//!    parameter table ([`ParamSpec`], at most [`MAX_PARAMS`] values), the
//!    right-hand side `dw/dt = rhs(w, V)`, the observed feature, the state's
//!    valid set ([`DeviceModel::project`], [`DeviceModel::classify`]), and
//!    optionally an exact solution under a constant voltage.
//! 2. `shaders/models/<name>.wgsl`: the same functions in f32 under the fixed
//!    names `model_rhs`, `model_euler`, `model_project`, `model_observe`,
//!    `model_status` (parameters as `array<f32, 8>`). A GPU kernel for the model
//!    is the concatenation of that file, `shaders/models/integrate.wgsl` (the
//!    integrator loops, written once against those names) and the engine's entry
//!    point.
//! 3. A variant of [`Model`], with its arms in the `dispatch!` macro of this file.
//!
//! The naga test in `tests/integration/models.rs` validates every registered
//! WGSL file with the integrators, so a new model is checked as soon as it is
//! registered.

use crate::batch::Status;
use crate::{Error, Result};

pub mod ddk;
pub mod ddk_ode;
pub mod diffusive;
pub mod fit;
pub mod integrate;
pub mod lambert_w;
pub mod linear_drift;

/// The most parameters a model may have: the length of the WGSL
/// `array<f32, 8>` that carries them.
pub const MAX_PARAMS: usize = 8;

/// The WGSL integrator loops shared by every model (`shaders/models/integrate.wgsl`).
pub const INTEGRATE_WGSL: &str = include_str!("../../shaders/models/integrate.wgsl");

/// One row of a model's parameter table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamSpec {
    /// The name used in specs, on the command line and in error messages.
    pub name: &'static str,
    /// The unit (`"1"` when dimensionless).
    pub unit: &'static str,
    /// The default value.
    pub default: f64,
    /// The smallest valid value.
    pub min: f64,
    /// Whether `min` itself is excluded (e.g. `> 0`).
    pub min_exclusive: bool,
    /// The largest valid value (inclusive; `f64::INFINITY` for none).
    pub max: f64,
    /// What the parameter does, in a few words.
    pub purpose: &'static str,
}

impl ParamSpec {
    /// A table row (const, for the models' `PARAMS` tables).
    pub const fn new(
        name: &'static str,
        unit: &'static str,
        default: f64,
        min: f64,
        min_exclusive: bool,
        max: f64,
        purpose: &'static str,
    ) -> Self {
        Self {
            name,
            unit,
            default,
            min,
            min_exclusive,
            max,
            purpose,
        }
    }

    /// The valid range as text: `"finite, in (0, inf)"`, `"in [0, 1]"`.
    pub fn range_text(&self) -> String {
        let lo = if self.min_exclusive { "(" } else { "[" };
        let hi = if self.max.is_infinite() { ")" } else { "]" };
        let fmt = |v: f64| {
            if v.is_infinite() {
                if v > 0.0 { "inf".into() } else { "-inf".into() }
            } else {
                format!("{v}")
            }
        };
        format!("finite, in {lo}{}, {}{hi}", fmt(self.min), fmt(self.max))
    }

    /// Checks one value against the range (`field` names it in the error).
    pub fn check(&self, field: &str, v: f64) -> Result<()> {
        let above = if self.min_exclusive {
            v > self.min
        } else {
            v >= self.min
        };
        if v.is_finite() && above && v <= self.max {
            Ok(())
        } else {
            Err(Error::invalid(field, v, self.range_text()))
        }
    }
}

/// A continuous-time device model: `dw/dt = rhs(w, V; params)`, observed
/// through `observe(w; params)`.
///
/// Every function is a pure scalar function of f64 values; `params` has the
/// length of [`DeviceModel::PARAMS`] (in that order) and is assumed to have
/// passed [`DeviceModel::check`].
pub trait DeviceModel {
    /// The registry name (`ddk-ode`, `diffusive`, `linear-drift`).
    const NAME: &'static str;
    /// The parameter table, in the order of the `params` slices.
    const PARAMS: &'static [ParamSpec];
    /// The initial state's default and valid range (its `name` is `w0`).
    const W0: ParamSpec;
    /// The WGSL twin (`shaders/models/<name>.wgsl`).
    const WGSL: &'static str;

    /// The right-hand side `dw/dt` at state `w` under voltage `v`.
    fn rhs(w: f64, v: f64, params: &[f64]) -> f64;

    /// One forward-Euler step of size `h`: `w + h * rhs(w, v)`. A model may
    /// override it with an algebraically equal form (the DDK model does, so that
    /// one step with `h = 1` is bit for bit the paper's map).
    #[inline(always)]
    fn euler(w: f64, v: f64, h: f64, params: &[f64]) -> f64 {
        w + h * Self::rhs(w, v, params)
    }

    /// Maps a state back into the model's valid set after each (sub)step
    /// (a clamp to `[0, 1]` for bounded states; the identity by default).
    #[inline(always)]
    fn project(w: f64, _params: &[f64]) -> f64 {
        w
    }

    /// The feature emitted for state `w` (the state itself, a read current, a
    /// conductance).
    fn observe(w: f64, params: &[f64]) -> f64;

    /// Whether a state is acceptable; the default only rejects non-finite values.
    #[inline(always)]
    fn classify(w: f64) -> Status {
        if w.is_finite() {
            Status::Ok
        } else {
            Status::NonFinite
        }
    }

    /// The exact state after time `t` under a constant voltage `v`, where the
    /// model has a closed form.
    fn exact(_w0: f64, _v: f64, _t: f64, _params: &[f64]) -> Option<f64> {
        None
    }

    /// Whether [`DeviceModel::exact`] is implemented.
    const HAS_EXACT: bool = false;

    /// Validates a parameter vector: its length, then each value against its
    /// [`ParamSpec`] (errors name the model and parameter, e.g.
    /// `ddk-ode.alpha = -1: finite, in (0, inf)`). Models with constraints
    /// across parameters extend it.
    fn check(params: &[f64]) -> Result<()> {
        check_table(Self::NAME, Self::PARAMS, params)
    }

    /// Validates an initial state against [`DeviceModel::W0`].
    fn check_w0(w0: f64) -> Result<()> {
        Self::W0.check(&format!("{}.w0", Self::NAME), w0)
    }

    /// The default parameter vector.
    fn defaults() -> Vec<f64> {
        Self::PARAMS.iter().map(|p| p.default).collect()
    }
}

/// The table check behind [`DeviceModel::check`].
pub fn check_table(model: &str, specs: &[ParamSpec], params: &[f64]) -> Result<()> {
    if params.len() != specs.len() {
        let names: Vec<_> = specs.iter().map(|s| s.name).collect();
        return Err(Error::invalid(
            format!("{model} parameter count"),
            params.len(),
            format!("{} ({})", specs.len(), names.join(", ")),
        ));
    }
    for (s, &v) in specs.iter().zip(params) {
        s.check(&format!("{model}.{}", s.name), v)?;
    }
    Ok(())
}

/// The registry of continuous-time device models, for choosing one at run time
/// (from a spec or the command line). Each variant forwards to its
/// [`DeviceModel`] implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    /// [`ddk_ode::DdkOde`]: `dw/dt = alpha / w - beta V`.
    DdkOde,
    /// [`diffusive::Diffusive`]: volatile diffusive memristor.
    Diffusive,
    /// [`linear_drift::LinearDrift`]: HP linear ion drift with a window.
    LinearDrift,
}

/// Calls `$body` with `$m` bound to the model type of `$model`.
macro_rules! dispatch {
    ($model:expr, $m:ident => $body:expr) => {
        match $model {
            $crate::model::Model::DdkOde => {
                type $m = $crate::model::ddk_ode::DdkOde;
                $body
            }
            $crate::model::Model::Diffusive => {
                type $m = $crate::model::diffusive::Diffusive;
                $body
            }
            $crate::model::Model::LinearDrift => {
                type $m = $crate::model::linear_drift::LinearDrift;
                $body
            }
        }
    };
}
pub(crate) use dispatch;

impl Model {
    /// Every registered model.
    pub const ALL: [Model; 3] = [Model::DdkOde, Model::Diffusive, Model::LinearDrift];

    /// The registry name.
    pub fn name(self) -> &'static str {
        dispatch!(self, M => M::NAME)
    }

    /// The model of a registry name; the error lists the valid names.
    pub fn from_name(name: &str) -> Result<Model> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|m| m.name()).collect();
                Error::invalid("model", name, format!("one of {}", names.join(", ")))
            })
    }

    /// The parameter table.
    pub fn params(self) -> &'static [ParamSpec] {
        dispatch!(self, M => M::PARAMS)
    }

    /// The initial state's default and range.
    pub fn w0_spec(self) -> ParamSpec {
        dispatch!(self, M => M::W0)
    }

    /// The default parameter vector.
    pub fn defaults(self) -> Vec<f64> {
        dispatch!(self, M => M::defaults())
    }

    /// The WGSL twin of the model's functions.
    pub fn wgsl(self) -> &'static str {
        dispatch!(self, M => M::WGSL)
    }

    /// Whether the model has a closed-form solution ([`integrate::Integrator::Exact`]).
    pub fn has_exact(self) -> bool {
        dispatch!(self, M => M::HAS_EXACT)
    }

    /// Validates parameters and initial state.
    pub fn check(self, params: &[f64], w0: f64) -> Result<()> {
        dispatch!(self, M => {
            M::check(params)?;
            M::check_w0(w0)
        })
    }

    /// `dw/dt` (see [`DeviceModel::rhs`]).
    pub fn rhs(self, w: f64, v: f64, params: &[f64]) -> f64 {
        dispatch!(self, M => M::rhs(w, v, params))
    }

    /// The feature of a state (see [`DeviceModel::observe`]).
    pub fn observe(self, w: f64, params: &[f64]) -> f64 {
        dispatch!(self, M => M::observe(w, params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_round_trip_and_unknown_names_list_the_valid_ones() {
        for m in Model::ALL {
            assert_eq!(Model::from_name(m.name()).unwrap(), m);
            assert!(m.params().len() <= MAX_PARAMS);
            m.check(&m.defaults(), m.w0_spec().default).unwrap();
        }
        let e = Model::from_name("ddk").unwrap_err().to_string();
        assert!(e.contains("ddk-ode, diffusive, linear-drift"), "{e}");
    }

    #[test]
    fn param_errors_name_model_field_and_range() {
        let e = Model::DdkOde
            .check(&[-1.0, 1.0], 1.0)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "ddk-ode.alpha = -1: finite, in (0, inf)");
        let e = Model::DdkOde.check(&[1.0], 1.0).unwrap_err().to_string();
        assert!(e.contains("parameter count = 1: 2 (alpha, beta)"), "{e}");
        assert!(Model::DdkOde.check(&[1.0, f64::NAN], 1.0).is_err());
        assert!(Model::DdkOde.check(&[1.0, 1.0], 0.0).is_err());
    }
}
