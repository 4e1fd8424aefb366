//! Continuous-time integration of a device model over a pulse protocol.
//!
//! # Pulse protocol
//!
//! Input `x[k]` becomes a voltage pulse of amplitude `V = v_scale * x[k]` for a
//! width `tau`, followed by a rest of width `rest` at `V = 0` ([`PulseProtocol`]).
//! The features of a sequence of `T` inputs are `T` values, like the map's:
//!
//! ```text
//! feature[0] = observe(w0)
//! feature[k] = observe(w after the pulse of x[k-1] and its rest)     k = 1 .. T-1
//! ```
//!
//! (`x[T-1]` is not used, as in the paper's map.)
//!
//! # Integrators
//!
//! | [`Integrator`] | order | RHS evaluations per segment |
//! |---|---|---|
//! | `Euler { substeps: n }` | 1 | `n` |
//! | `Heun { substeps: n }` | 2 | `2n` |
//! | `Rk4 { substeps: n }` | 4 | `4n` |
//! | `Adaptive(opts)` | 5(4) | adaptive (Dormand-Prince, FSAL: 6 per attempt + 1 per segment) |
//! | `Exact` | exact | 0 (closed form; models with [`DeviceModel::HAS_EXACT`]) |
//!
//! A segment is one pulse or one rest; fixed-step methods take `n` equal
//! sub-steps in each. The adaptive method controls its step per trajectory from
//! `(rtol, atol)`, carries the step size from segment to segment and shortens
//! the step that would cross a pulse edge so that it lands exactly on it (the
//! voltage jumps there, so no step straddles a discontinuity). After every
//! accepted (sub)step the state goes through [`DeviceModel::project`].
//!
//! With `Euler { substeps: 1 }`, `tau = 1`, `v_scale = 1`, `rest = 0`, the
//! `ddk-ode` model reproduces the paper's map ([`crate::model::ddk::ddk_step`])
//! bit for bit.
//!
//! Every `segment_*` function has a twin of the same name in
//! `shaders/models/integrate.wgsl` (keep in sync).

use crate::batch::Status;
use crate::model::{DeviceModel, Model, dispatch};
use crate::{Error, Result};

/// How inputs become voltage pulses (module docs).
///
/// | field | default | range | meaning |
/// |---|---|---|---|
/// | `v_scale` | 1 | finite | pulse amplitude per unit input (V) |
/// | `tau` | 1 | finite, > 0 | pulse width (model time unit) |
/// | `rest` | 0 | finite, >= 0 | rest after each pulse at V = 0 |
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PulseProtocol {
    /// Pulse amplitude per unit input.
    pub v_scale: f64,
    /// Pulse width.
    pub tau: f64,
    /// Rest after each pulse (0 for none).
    pub rest: f64,
}

impl Default for PulseProtocol {
    fn default() -> Self {
        Self::PAPER
    }
}

impl PulseProtocol {
    /// The protocol under which the DDK law's Euler step is the paper's map.
    pub const PAPER: PulseProtocol = PulseProtocol {
        v_scale: 1.0,
        tau: 1.0,
        rest: 0.0,
    };

    /// Validates the three fields (see the table).
    pub fn check(&self) -> Result<()> {
        if !self.v_scale.is_finite() {
            return Err(Error::invalid("pulse.v_scale", self.v_scale, "finite"));
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return Err(Error::invalid("pulse.tau", self.tau, "finite, > 0"));
        }
        if !(self.rest.is_finite() && self.rest >= 0.0) {
            return Err(Error::invalid("pulse.rest", self.rest, "finite, >= 0"));
        }
        Ok(())
    }
}

/// Step control of the adaptive integrator.
///
/// | field | default | range | meaning |
/// |---|---|---|---|
/// | `rtol` | 1e-8 | (0, 1) | relative tolerance per step |
/// | `atol` | 1e-10 | [0, inf) | absolute tolerance per step |
/// | `max_steps` | 100000 | >= 1 | attempts per segment before the trajectory is marked stalled |
///
/// On the GPU (f32), `rtol` below about 1e-6 cannot be met.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveOptions {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Step attempts per segment before giving up.
    pub max_steps: u32,
}

impl Default for AdaptiveOptions {
    fn default() -> Self {
        Self {
            rtol: 1e-8,
            atol: 1e-10,
            max_steps: 100_000,
        }
    }
}

/// The integration method (module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Integrator {
    /// Forward Euler with `substeps` equal steps per segment.
    Euler {
        /// Steps per pulse (and per rest).
        substeps: u32,
    },
    /// Heun (explicit trapezoid), second order.
    Heun {
        /// Steps per pulse (and per rest).
        substeps: u32,
    },
    /// Classical fourth-order Runge-Kutta.
    Rk4 {
        /// Steps per pulse (and per rest).
        substeps: u32,
    },
    /// Dormand-Prince 5(4) with per-trajectory step control.
    Adaptive(AdaptiveOptions),
    /// The model's closed form.
    Exact,
}

/// The integrator names [`Integrator::from_name`] takes.
pub const INTEGRATOR_NAMES: &str = "euler, heun, rk4, adaptive, exact";

impl Integrator {
    /// The one builder from a name: every command (`simulate --integrator`, a
    /// spec's `[model] integrator`) means the same numerics by a name.
    /// `substeps` (>= 1) is used by the fixed-step methods; `rtol` in (0, 1)
    /// by `adaptive`, with `atol = rtol * 1e-3` (an absolute floor three
    /// decades below, for states near zero) and the default step budget.
    /// Errors name the field `integrator` (callers rename it to their flag).
    pub fn from_name(name: &str, substeps: u32, rtol: f64) -> Result<Integrator> {
        if substeps == 0 {
            return Err(Error::invalid("substeps", 0, "at least 1"));
        }
        if !(rtol > 0.0 && rtol < 1.0) {
            return Err(Error::invalid("rtol", rtol, "in (0, 1)"));
        }
        Ok(match name {
            "euler" => Integrator::Euler { substeps },
            "heun" => Integrator::Heun { substeps },
            "rk4" => Integrator::Rk4 { substeps },
            "adaptive" => Integrator::Adaptive(AdaptiveOptions {
                rtol,
                atol: rtol * 1e-3,
                ..AdaptiveOptions::default()
            }),
            "exact" => Integrator::Exact,
            other => {
                return Err(Error::invalid(
                    "integrator",
                    other,
                    format!("one of {INTEGRATOR_NAMES}"),
                ));
            }
        })
    }

    /// The method's name (`euler`, `heun`, `rk4`, `adaptive`, `exact`).
    pub fn name(&self) -> &'static str {
        match self {
            Integrator::Euler { .. } => "euler",
            Integrator::Heun { .. } => "heun",
            Integrator::Rk4 { .. } => "rk4",
            Integrator::Adaptive(_) => "adaptive",
            Integrator::Exact => "exact",
        }
    }

    /// Validates the settings, and that `model` supports the method.
    pub fn check(&self, model: Model) -> Result<()> {
        match *self {
            Integrator::Euler { substeps }
            | Integrator::Heun { substeps }
            | Integrator::Rk4 { substeps } => {
                if substeps == 0 {
                    return Err(Error::invalid("integrator.substeps", 0, "at least 1"));
                }
            }
            Integrator::Adaptive(o) => {
                if !(o.rtol > 0.0 && o.rtol < 1.0) {
                    return Err(Error::invalid("integrator.rtol", o.rtol, "in (0, 1)"));
                }
                if !(o.atol.is_finite() && o.atol >= 0.0) {
                    return Err(Error::invalid("integrator.atol", o.atol, "finite, >= 0"));
                }
                if o.max_steps == 0 {
                    return Err(Error::invalid("integrator.max_steps", 0, "at least 1"));
                }
            }
            Integrator::Exact => {
                if !model.has_exact() {
                    return Err(Error::invalid(
                        "integrator",
                        "exact",
                        format!(
                            "a numerical method: model {} has no closed form",
                            model.name()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What happened while integrating one trajectory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunStats {
    /// [`Status::Ok`], or the first failure ([`DeviceModel::classify`] of the
    /// state after a pulse; a stalled adaptive integration counts as
    /// [`Status::NonFinite`]).
    pub status: Status,
    /// The first feature index that is NaN because of the failure (`u32::MAX` when ok).
    pub first_bad: u32,
    /// Right-hand-side evaluations.
    pub rhs_evals: u64,
    /// Accepted steps (sub-steps for the fixed-step methods).
    pub steps_accepted: u64,
    /// Rejected steps (adaptive only).
    pub steps_rejected: u64,
    /// True when the adaptive integrator used up `max_steps` in a segment (or
    /// its step shrank below 1e-14 of the segment).
    pub stalled: bool,
}

impl Default for RunStats {
    /// Ok, nothing counted yet.
    fn default() -> Self {
        Self {
            status: Status::Ok,
            first_bad: u32::MAX,
            rhs_evals: 0,
            steps_accepted: 0,
            steps_rejected: 0,
            stalled: false,
        }
    }
}

/// `n` forward-Euler steps over a segment of length `dur` at voltage `v`.
#[inline]
pub fn segment_euler<M: DeviceModel>(mut w: f64, v: f64, dur: f64, n: u32, p: &[f64]) -> f64 {
    let h = dur / n as f64;
    for _ in 0..n {
        w = M::project(M::euler(w, v, h, p), p);
    }
    w
}

/// `n` Heun steps over a segment.
#[inline]
pub fn segment_heun<M: DeviceModel>(mut w: f64, v: f64, dur: f64, n: u32, p: &[f64]) -> f64 {
    let h = dur / n as f64;
    for _ in 0..n {
        let k1 = M::rhs(w, v, p);
        let k2 = M::rhs(w + h * k1, v, p);
        w = M::project(w + 0.5 * h * (k1 + k2), p);
    }
    w
}

/// `n` classical RK4 steps over a segment.
#[inline]
pub fn segment_rk4<M: DeviceModel>(mut w: f64, v: f64, dur: f64, n: u32, p: &[f64]) -> f64 {
    let h = dur / n as f64;
    for _ in 0..n {
        let k1 = M::rhs(w, v, p);
        let k2 = M::rhs(w + 0.5 * h * k1, v, p);
        let k3 = M::rhs(w + 0.5 * h * k2, v, p);
        let k4 = M::rhs(w + h * k3, v, p);
        w = M::project(w + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4), p);
    }
    w
}

/// The state the adaptive integrator carries from segment to segment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveState {
    /// The model state.
    pub w: f64,
    /// The proposed next step size (0 before the first step: then it is chosen
    /// from the first derivative, Hairer-Norsett-Wanner II.4).
    pub h: f64,
}

// Dormand-Prince 5(4) tableau (Dormand & Prince, J. Comput. Appl. Math. 6, 19, 1980).
const A21: f64 = 1.0 / 5.0;
const A31: f64 = 3.0 / 40.0;
const A32: f64 = 9.0 / 40.0;
const A41: f64 = 44.0 / 45.0;
const A42: f64 = -56.0 / 15.0;
const A43: f64 = 32.0 / 9.0;
const A51: f64 = 19372.0 / 6561.0;
const A52: f64 = -25360.0 / 2187.0;
const A53: f64 = 64448.0 / 6561.0;
const A54: f64 = -212.0 / 729.0;
const A61: f64 = 9017.0 / 3168.0;
const A62: f64 = -355.0 / 33.0;
const A63: f64 = 46732.0 / 5247.0;
const A64: f64 = 49.0 / 176.0;
const A65: f64 = -5103.0 / 18656.0;
const B1: f64 = 35.0 / 384.0;
const B3: f64 = 500.0 / 1113.0;
const B4: f64 = 125.0 / 192.0;
const B5: f64 = -2187.0 / 6784.0;
const B6: f64 = 11.0 / 84.0;
// Error weights: fifth-order minus embedded fourth-order weights.
const E1: f64 = 71.0 / 57600.0;
const E3: f64 = -71.0 / 16695.0;
const E4: f64 = 71.0 / 1920.0;
const E5: f64 = -17253.0 / 339200.0;
const E6: f64 = 22.0 / 525.0;
const E7: f64 = -1.0 / 40.0;

/// Adaptive Dormand-Prince 5(4) over one segment of length `dur` at voltage
/// `v`, landing exactly on its end. Updates `state` (state and next step size)
/// and the counters in `stats`; returns false if it stalled (then `state.w` is
/// where it stopped).
pub fn segment_adaptive<M: DeviceModel>(
    state: &mut AdaptiveState,
    v: f64,
    dur: f64,
    o: &AdaptiveOptions,
    p: &[f64],
    stats: &mut RunStats,
) -> bool {
    let mut w = state.w;
    let mut h = state.h;
    let mut k1 = M::rhs(w, v, p);
    stats.rhs_evals += 1;
    if h <= 0.0 {
        let sc = o.atol + o.rtol * w.abs();
        let (d0, d1) = (w.abs() / sc, k1.abs() / sc);
        h = if d0 < 1e-5 || d1 < 1e-5 {
            1e-6 * dur
        } else {
            0.01 * d0 / d1
        };
    }
    let mut t = 0.0;
    let mut attempts = 0u32;
    while t < dur {
        if attempts >= o.max_steps || h < 1e-14 * dur {
            state.w = w;
            state.h = h;
            return false;
        }
        attempts += 1;
        let last = t + 1.01 * h >= dur;
        let hs = if last { dur - t } else { h };
        let k2 = M::rhs(w + hs * (A21 * k1), v, p);
        let k3 = M::rhs(w + hs * (A31 * k1 + A32 * k2), v, p);
        let k4 = M::rhs(w + hs * (A41 * k1 + A42 * k2 + A43 * k3), v, p);
        let k5 = M::rhs(w + hs * (A51 * k1 + A52 * k2 + A53 * k3 + A54 * k4), v, p);
        let k6 = M::rhs(
            w + hs * (A61 * k1 + A62 * k2 + A63 * k3 + A64 * k4 + A65 * k5),
            v,
            p,
        );
        let y = w + hs * (B1 * k1 + B3 * k3 + B4 * k4 + B5 * k5 + B6 * k6);
        let k7 = M::rhs(y, v, p);
        stats.rhs_evals += 6;
        let err_abs = hs * (E1 * k1 + E3 * k3 + E4 * k4 + E5 * k5 + E6 * k6 + E7 * k7);
        let err = err_abs.abs() / (o.atol + o.rtol * w.abs().max(y.abs()));
        if err <= 1.0 {
            stats.steps_accepted += 1;
            t = if last { dur } else { t + hs };
            let wp = M::project(y, p);
            if wp == y {
                k1 = k7; // first same as last
            } else {
                k1 = M::rhs(wp, v, p);
                stats.rhs_evals += 1;
            }
            w = wp;
            let fac = if err == 0.0 {
                5.0
            } else {
                (0.9 * err.powf(-0.2)).clamp(0.2, 5.0)
            };
            // A step shortened to land on the edge says little about the step
            // the dynamics allow: keep the larger proposal.
            h = if last { (hs * fac).max(h) } else { hs * fac };
        } else {
            stats.steps_rejected += 1;
            let fac = if err.is_finite() {
                (0.9 * err.powf(-0.2)).clamp(0.2, 1.0)
            } else {
                0.2
            };
            h = hs * fac;
        }
    }
    state.w = w;
    state.h = h;
    true
}

/// The exact solution over one segment (models with a closed form).
#[inline]
pub fn segment_exact<M: DeviceModel>(w: f64, v: f64, dur: f64, p: &[f64]) -> f64 {
    M::project(M::exact(w, v, dur, p).unwrap_or(f64::NAN), p)
}

/// One segment with any integrator; the adaptive step size lives in `state.h`.
fn segment<M: DeviceModel>(
    integrator: &Integrator,
    state: &mut AdaptiveState,
    v: f64,
    dur: f64,
    p: &[f64],
    stats: &mut RunStats,
) -> bool {
    match *integrator {
        Integrator::Euler { substeps } => {
            state.w = segment_euler::<M>(state.w, v, dur, substeps, p);
            stats.rhs_evals += substeps as u64;
            stats.steps_accepted += substeps as u64;
        }
        Integrator::Heun { substeps } => {
            state.w = segment_heun::<M>(state.w, v, dur, substeps, p);
            stats.rhs_evals += 2 * substeps as u64;
            stats.steps_accepted += substeps as u64;
        }
        Integrator::Rk4 { substeps } => {
            state.w = segment_rk4::<M>(state.w, v, dur, substeps, p);
            stats.rhs_evals += 4 * substeps as u64;
            stats.steps_accepted += substeps as u64;
        }
        Integrator::Adaptive(o) => return segment_adaptive::<M>(state, v, dur, &o, p, stats),
        Integrator::Exact => {
            state.w = segment_exact::<M>(state.w, v, dur, p);
            stats.steps_accepted += 1;
        }
    }
    true
}

/// One trajectory of model `M` (see [`simulate_cpu`]); writes the `T` features
/// into `out` and returns the counters.
pub fn simulate_into<M: DeviceModel>(
    integrator: &Integrator,
    x: &[f32],
    params: &[f64],
    w0: f64,
    pulse: &PulseProtocol,
    out: &mut [f64],
) -> RunStats {
    let mut stats = RunStats::default();
    if x.is_empty() {
        return stats;
    }
    let mut state = AdaptiveState { w: w0, h: 0.0 };
    out[0] = M::observe(w0, params);
    for k in 1..x.len() {
        let v = pulse.v_scale * x[k - 1] as f64;
        let mut ok = segment::<M>(integrator, &mut state, v, pulse.tau, params, &mut stats);
        if ok && pulse.rest > 0.0 {
            ok = segment::<M>(integrator, &mut state, 0.0, pulse.rest, params, &mut stats);
        }
        let status = if ok {
            M::classify(state.w)
        } else {
            Status::NonFinite
        };
        if status != Status::Ok {
            stats.status = status;
            stats.stalled = !ok;
            stats.first_bad = k as u32;
            out[k..x.len()].fill(f64::NAN);
            return stats;
        }
        out[k] = M::observe(state.w, params);
    }
    stats
}

/// Integrates one trajectory: the `T = x.len()` features (module docs) and what
/// happened. Features from the first failure on are NaN.
///
/// `params`, `w0`, `pulse` and `integrator` are assumed valid
/// ([`Model::check`], [`PulseProtocol::check`], [`Integrator::check`]); check
/// once per batch, not per trajectory.
pub fn simulate_cpu(
    model: Model,
    integrator: &Integrator,
    x: &[f32],
    params: &[f64],
    w0: f64,
    pulse: &PulseProtocol,
) -> (Vec<f64>, RunStats) {
    let mut out = vec![0.0; x.len()];
    let stats =
        dispatch!(model, M => simulate_into::<M>(integrator, x, params, w0, pulse, &mut out));
    (out, stats)
}

/// Integrates through consecutive constant-voltage segments (voltage `v[i]` for
/// a duration `dur[i] >= 0`; a zero duration leaves the state unchanged) and
/// returns the observed feature at the start and at the end of every segment
/// (`dur.len() + 1` values), with what happened. Used by the fit to follow a
/// measured trace, and to sample `w(t)` densely inside pulses. The adaptive
/// step size carries across segments as it does across pulses. From the first
/// failure on the values are NaN.
pub fn simulate_segments(
    model: Model,
    integrator: &Integrator,
    v: &[f64],
    dur: &[f64],
    params: &[f64],
    w0: f64,
) -> (Vec<f64>, RunStats) {
    fn go<M: DeviceModel>(
        integrator: &Integrator,
        v: &[f64],
        dur: &[f64],
        p: &[f64],
        w0: f64,
    ) -> (Vec<f64>, RunStats) {
        let n = v.len().min(dur.len());
        let mut out = vec![f64::NAN; n + 1];
        let mut stats = RunStats::default();
        let mut state = AdaptiveState { w: w0, h: 0.0 };
        out[0] = w0;
        for i in 0..n {
            let ok =
                dur[i] <= 0.0 || segment::<M>(integrator, &mut state, v[i], dur[i], p, &mut stats);
            let status = if ok {
                M::classify(state.w)
            } else {
                Status::NonFinite
            };
            if status != Status::Ok {
                stats.status = status;
                stats.stalled = !ok;
                stats.first_bad = (i + 1) as u32;
                return (out, stats);
            }
            out[i + 1] = state.w;
        }
        (out, stats)
    }
    dispatch!(model, M => go::<M>(integrator, v, dur, params, w0))
}
