//! Least-squares fit of a device model's parameters to a measured
//! pulse-response trace: Levenberg-Marquardt with a central-difference Jacobian
//! of the f64 CPU simulator.
//!
//! # The trace
//!
//! Rows `(t_i, V_i, y_i)`, times strictly increasing. The voltage is held from
//! one sample to the next (zero-order hold: `V_i` acts on `[t_i, t_{i+1})`), the
//! state starts at `w0` at `t_0`, and the model predicts
//! `y_i = observe(w(t_i))` ([`DeviceModel::observe`](crate::model::DeviceModel::observe):
//! the state for `ddk-ode`, the read current at `v_read` for `diffusive`, the
//! conductance `1/R` for `linear-drift`). The fit minimises
//! `SSR = sum_i (y_i - observe(w(t_i)))^2` over the free parameters.
//!
//! # The method
//!
//! Positive parameters (lower bound 0) are fitted as their logarithms, so they
//! stay positive and steps are relative; the others are fitted as they are and
//! clamped into their range. The Jacobian is by central differences
//! (`h = 1e-6 (1 + |theta|)`) of the simulator, the damping is Marquardt's
//! (`J^T J + lambda diag(J^T J)`), `lambda` shrinks by 3 after an accepted step
//! and grows by 4 after a rejected one. It stops when the SSR improves by less
//! than `1e-12` relative, the step is below `1e-10`, or after `max_iter`
//! iterations. Standard errors come from `s^2 (J^T J)^-1`, `s^2 = SSR / (n - k)`.

use crate::batch::Status;
use crate::model::Model;
use crate::model::integrate::{Integrator, simulate_segments};
use crate::{Error, Result};

/// A measured (or synthetic) pulse-response trace (module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// Sample times, strictly increasing.
    pub time: Vec<f64>,
    /// Applied voltage from each sample to the next.
    pub voltage: Vec<f64>,
    /// The measured quantity the model observes.
    pub observed: Vec<f64>,
}

impl Trace {
    /// Validates lengths, finiteness and increasing times (`name` labels errors).
    pub fn check(&self, name: &str) -> Result<()> {
        let n = self.time.len();
        if n < 3 || self.voltage.len() != n || self.observed.len() != n {
            return Err(Error::invalid(
                format!("{name} rows"),
                n,
                "at least 3, with time, voltage and the observed value on each",
            ));
        }
        for i in 0..n {
            for (col, v) in [
                ("time", self.time[i]),
                ("voltage", self.voltage[i]),
                ("observed", self.observed[i]),
            ] {
                if !v.is_finite() {
                    return Err(Error::invalid(format!("{name} row {i} {col}"), v, "finite"));
                }
            }
            if i > 0 && self.time[i] <= self.time[i - 1] {
                return Err(Error::invalid(
                    format!("{name} row {i} time"),
                    self.time[i],
                    format!("> {} (times strictly increasing)", self.time[i - 1]),
                ));
            }
        }
        Ok(())
    }

    /// Segment voltages and durations of the zero-order hold.
    fn segments(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.time.len();
        let dur = (1..n).map(|i| self.time[i] - self.time[i - 1]).collect();
        (self.voltage[..n - 1].to_vec(), dur)
    }
}

/// What to fit.
#[derive(Clone, Debug, PartialEq)]
pub struct FitOptions {
    /// The device model.
    pub model: Model,
    /// The integrator of the simulator (smooth in the parameters: a fixed-step
    /// method or `exact` gives the cleanest Jacobian).
    pub integrator: Integrator,
    /// Every parameter: the starting values of the free ones, the fixed values
    /// of the others (model table order).
    pub start: Vec<f64>,
    /// Initial state (fixed unless `fit_w0`).
    pub w0: f64,
    /// Indices of the free parameters in the model's table.
    pub free: Vec<usize>,
    /// Also fit `w0`.
    pub fit_w0: bool,
    /// Most LM iterations.
    pub max_iter: u32,
}

/// The outcome of a fit.
#[derive(Clone, Debug, PartialEq)]
pub struct FitResult {
    /// Every parameter after the fit (model table order).
    pub params: Vec<f64>,
    /// The initial state after the fit.
    pub w0: f64,
    /// Standard errors of the free parameters (and of w0 last when fitted),
    /// in the parameters' own units.
    pub std_err: Vec<f64>,
    /// Sum of squared residuals at the start.
    pub ssr_start: f64,
    /// Sum of squared residuals at the end.
    pub ssr: f64,
    /// Root-mean-square residual.
    pub rmse: f64,
    /// LM iterations.
    pub iterations: u32,
    /// Simulator runs.
    pub evaluations: u64,
    /// True when a stopping test (not `max_iter`) ended the fit.
    pub converged: bool,
    /// The model's prediction at every sample with the fitted parameters.
    pub fitted: Vec<f64>,
}

/// Whether a parameter is fitted as its logarithm (its range starts at 0).
fn is_log(min: f64) -> bool {
    min == 0.0
}

struct Problem<'a> {
    o: &'a FitOptions,
    trace: &'a Trace,
    v: Vec<f64>,
    dur: Vec<f64>,
    evals: u64,
}

impl Problem<'_> {
    /// The free coordinates of `(params, w0)`.
    fn to_theta(&self, params: &[f64], w0: f64) -> Vec<f64> {
        let specs = self.o.model.params();
        let mut th: Vec<f64> = self
            .o
            .free
            .iter()
            .map(|&j| {
                if is_log(specs[j].min) {
                    params[j].max(1e-300).ln()
                } else {
                    params[j]
                }
            })
            .collect();
        if self.o.fit_w0 {
            let s = self.o.model.w0_spec();
            th.push(if is_log(s.min) {
                w0.max(1e-300).ln()
            } else {
                w0
            });
        }
        th
    }

    /// `(params, w0)` of free coordinates, clamped into the valid ranges.
    fn params_of(&self, th: &[f64]) -> (Vec<f64>, f64) {
        let specs = self.o.model.params();
        let back = |s: &crate::model::ParamSpec, t: f64| {
            let v = if is_log(s.min) { t.exp() } else { t };
            let lo = if s.min_exclusive {
                s.min + f64::MIN_POSITIVE
            } else {
                s.min
            };
            v.clamp(lo, s.max)
        };
        let mut p = self.o.start.clone();
        for (k, &j) in self.o.free.iter().enumerate() {
            p[j] = back(&specs[j], th[k]);
        }
        let w0 = if self.o.fit_w0 {
            back(&self.o.model.w0_spec(), th[self.o.free.len()])
        } else {
            self.o.w0
        };
        (p, w0)
    }

    /// Predictions, or None when the simulation failed.
    fn predict(&mut self, params: &[f64], w0: f64) -> Option<Vec<f64>> {
        self.evals += 1;
        let (w, stats) = simulate_segments(
            self.o.model,
            &self.o.integrator,
            &self.v,
            &self.dur,
            params,
            w0,
        );
        let y: Vec<f64> = w.iter().map(|&w| self.o.model.observe(w, params)).collect();
        (stats.status == Status::Ok && y.iter().all(|v| v.is_finite())).then_some(y)
    }

    fn residuals(&mut self, th: &[f64]) -> Option<Vec<f64>> {
        let (p, w0) = self.params_of(th);
        let y = self.predict(&p, w0)?;
        Some(
            y.iter()
                .zip(&self.trace.observed)
                .map(|(a, b)| a - b)
                .collect(),
        )
    }
}

fn ssr(r: &[f64]) -> f64 {
    r.iter().map(|v| v * v).sum()
}

/// Solves the system `a x = b` (`n x n`, row-major) by faer's LU with partial
/// pivoting; None when singular (a non-finite solution).
fn solve(a: Vec<f64>, b: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    use faer::linalg::solvers::Solve;
    let m = faer::Mat::from_fn(n, n, |i, j| a[i * n + j]);
    let rhs = faer::Mat::from_fn(n, 1, |i, _| b[i]);
    let x = m.partial_piv_lu().solve(&rhs);
    let x: Vec<f64> = (0..n).map(|i| x[(i, 0)]).collect();
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Fits the free parameters of `o.model` to `trace` (module docs).
pub fn fit(trace: &Trace, o: &FitOptions) -> Result<FitResult> {
    trace.check("trace")?;
    o.integrator.check(o.model)?;
    o.model.check(&o.start, o.w0)?;
    let n_par = o.model.params().len();
    if let Some(&j) = o.free.iter().find(|&&j| j >= n_par) {
        return Err(Error::invalid(
            "free parameter index",
            j,
            format!("< {n_par}"),
        ));
    }
    let k = o.free.len() + o.fit_w0 as usize;
    if k == 0 {
        return Err(Error::invalid("free parameters", "none", "at least one"));
    }
    if trace.time.len() <= k {
        return Err(Error::invalid(
            "trace rows",
            trace.time.len(),
            format!("more than the {k} free parameters"),
        ));
    }
    let (v, dur) = trace.segments();
    let mut pb = Problem {
        o,
        trace,
        v,
        dur,
        evals: 0,
    };
    let mut th = pb.to_theta(&o.start, o.w0);
    let mut r = pb.residuals(&th).ok_or_else(|| {
        Error::invalid(
            "fit start",
            format!("{:?}", o.start),
            "parameters under which the model can follow the trace (the simulation failed)",
        )
    })?;
    let n = r.len();
    let ssr_start = ssr(&r);
    let mut s = ssr_start;
    let mut lambda = 1e-3;
    let mut iterations = 0;
    let mut converged = false;
    let mut jtj = vec![0.0; k * k];
    while iterations < o.max_iter {
        iterations += 1;
        // Central-difference Jacobian, column by column.
        let mut jac = vec![0.0; n * k];
        for c in 0..k {
            let h = 1e-6 * (1.0 + th[c].abs());
            let mut tp = th.clone();
            tp[c] += h;
            let mut tm = th.clone();
            tm[c] -= h;
            let (rp, rm) = match (pb.residuals(&tp), pb.residuals(&tm)) {
                (Some(a), Some(b)) => (a, b),
                _ => continue, // a column the simulator cannot differentiate stays 0
            };
            for i in 0..n {
                jac[i * k + c] = (rp[i] - rm[i]) / (2.0 * h);
            }
        }
        let mut g = vec![0.0; k];
        jtj.fill(0.0);
        for i in 0..n {
            for a in 0..k {
                g[a] += jac[i * k + a] * r[i];
                for b in 0..k {
                    jtj[a * k + b] += jac[i * k + a] * jac[i * k + b];
                }
            }
        }
        let mut accepted = false;
        let mut step_max = 0.0f64;
        while lambda < 1e12 {
            let mut a = jtj.clone();
            for d in 0..k {
                a[d * k + d] += lambda * jtj[d * k + d].max(1e-12);
            }
            let Some(delta) = solve(a, g.iter().map(|v| -v).collect(), k) else {
                lambda *= 4.0;
                continue;
            };
            let cand: Vec<f64> = th.iter().zip(&delta).map(|(t, d)| t + d).collect();
            match pb.residuals(&cand) {
                Some(rc) if ssr(&rc) < s => {
                    let sc = ssr(&rc);
                    step_max = delta.iter().fold(0.0, |m, d| m.max(d.abs()));
                    let rel = (s - sc) / s.max(f64::MIN_POSITIVE);
                    (th, r, s) = (cand, rc, sc);
                    lambda = (lambda / 3.0).max(1e-12);
                    accepted = true;
                    if rel < 1e-12 {
                        converged = true;
                    }
                    break;
                }
                _ => lambda *= 4.0,
            }
        }
        if !accepted || converged || step_max < 1e-10 {
            converged = true;
            break;
        }
    }
    // Standard errors from the last Jacobian (at the accepted point or one step before).
    let s2 = s / (n.saturating_sub(k)).max(1) as f64;
    let (params, w0) = pb.params_of(&th);
    let inv_diag: Vec<f64> = (0..k)
        .map(|c| {
            let mut e = vec![0.0; k];
            e[c] = 1.0;
            solve(jtj.clone(), e, k).map_or(f64::NAN, |x| x[c])
        })
        .collect();
    let specs = o.model.params();
    let std_err = (0..k)
        .map(|c| {
            let sd = (s2 * inv_diag[c]).sqrt();
            let (min, val) = if c < o.free.len() {
                (specs[o.free[c]].min, params[o.free[c]])
            } else {
                (o.model.w0_spec().min, w0)
            };
            if is_log(min) { sd * val } else { sd }
        })
        .collect();
    let fitted = pb.predict(&params, w0).unwrap_or_default();
    Ok(FitResult {
        params,
        w0,
        std_err,
        ssr_start,
        ssr: s,
        rmse: (s / n as f64).sqrt(),
        iterations,
        evaluations: pb.evals,
        converged,
        fitted,
    })
}

/// How to make a synthetic pulse-response trace ([`synthetic_trace`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticTrace {
    /// Pulse amplitudes (V), one pulse each.
    pub amplitudes: Vec<f64>,
    /// Pulse width.
    pub tau: f64,
    /// Rest at 0 V after each pulse (0 for none).
    pub rest: f64,
    /// Samples per pulse (>= 1).
    pub per_pulse: usize,
    /// Samples per rest (>= 1 when `rest > 0`).
    pub per_rest: usize,
    /// Gaussian noise, as a fraction of the noiseless signal's range.
    pub noise: f64,
    /// Seed of the noise (Philox stream, [`crate::rng::Stream`]).
    pub seed: u64,
}

/// A trace of `model` with `params` from `w0` under the pulse train of `s`,
/// sampled at even intervals inside each pulse and rest, with seeded Gaussian
/// noise added to the observed values. Its rows follow the zero-order-hold
/// convention of [`Trace`], so fitting it with the same integrator recovers
/// `params` up to the noise.
pub fn synthetic_trace(
    model: Model,
    integrator: &Integrator,
    params: &[f64],
    w0: f64,
    s: &SyntheticTrace,
) -> Trace {
    let (mut time, mut voltage) = (vec![0.0], vec![]);
    let mut t = 0.0;
    for &a in &s.amplitudes {
        for j in 1..=s.per_pulse.max(1) {
            voltage.push(a);
            time.push(t + s.tau * j as f64 / s.per_pulse.max(1) as f64);
        }
        t += s.tau;
        if s.rest > 0.0 {
            for j in 1..=s.per_rest.max(1) {
                voltage.push(0.0);
                time.push(t + s.rest * j as f64 / s.per_rest.max(1) as f64);
            }
            t += s.rest;
        }
    }
    let dur: Vec<f64> = time.windows(2).map(|w| w[1] - w[0]).collect();
    let (w, _) = simulate_segments(model, integrator, &voltage, &dur, params, w0);
    let mut y: Vec<f64> = w.iter().map(|&w| model.observe(w, params)).collect();
    voltage.push(0.0); // the last sample's hold (unused)
    let (lo, hi) = y
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let sigma = s.noise * (hi - lo);
    let stream = crate::rng::Stream::new(s.seed);
    for (i, v) in y.iter_mut().enumerate() {
        *v += sigma * stream.normal_pair(0, 0, 0, i as u32).0;
    }
    Trace {
        time,
        voltage,
        observed: y,
    }
}

/// The parameters `memkin fit` frees by default: those that shape the state's
/// kinetics and can be told apart from a single trace.
pub fn default_free(model: Model) -> &'static [&'static str] {
    match model {
        Model::DdkOde => &["alpha", "beta"],
        Model::Diffusive => &["lambda", "eta", "tau"],
        Model::LinearDrift => &["r_on", "r_off", "mu_v"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_refuses_a_singular_system() {
        assert_eq!(solve(vec![1.0, 2.0, 2.0, 4.0], vec![1.0, 2.0], 2), None);
    }

    #[test]
    fn solve_handles_a_pivot() {
        let x = solve(vec![0.0, 2.0, 3.0, 1.0], vec![4.0, 5.0], 2).unwrap();
        assert!(
            (x[0] - 1.0).abs() < 1e-14 && (x[1] - 2.0).abs() < 1e-14,
            "{x:?}"
        );
    }

    #[test]
    fn noiseless_ddk_trace_is_recovered_exactly() {
        let truth = [0.45, 1.3];
        let (mut time, mut voltage) = (vec![], vec![]);
        for k in 0..30 {
            let v = 0.2 + 0.6 * ((k * 7 % 11) as f64 / 10.0);
            for j in 0..4 {
                time.push(k as f64 * 1.5 + j as f64 * 0.25);
                voltage.push(v);
            }
            time.push(k as f64 * 1.5 + 1.0);
            voltage.push(0.0);
        }
        let integ = Integrator::Rk4 { substeps: 8 };
        let mut v = voltage.clone();
        v.pop();
        let dur: Vec<f64> = time.windows(2).map(|w| w[1] - w[0]).collect();
        let (y, _) = simulate_segments(Model::DdkOde, &integ, &v, &dur, &truth, 1.0); // observe(w) = w
        let trace = Trace {
            time,
            voltage,
            observed: y,
        };
        let r = fit(
            &trace,
            &FitOptions {
                model: Model::DdkOde,
                integrator: integ,
                start: vec![0.7, 1.0],
                w0: 1.0,
                free: vec![0, 1],
                fit_w0: false,
                max_iter: 100,
            },
        )
        .unwrap();
        assert!((r.params[0] - 0.45).abs() < 1e-7, "{r:?}");
        assert!((r.params[1] - 1.3).abs() < 1e-7, "{r:?}");
        assert!(r.ssr < 1e-15, "{r:?}");
    }
}
