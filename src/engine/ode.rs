//! Continuous-time device models over a pulse protocol, batched: [`OdeSpec`]
//! (what to integrate), [`run_ode_cpu`] (the f64 reference, all cores) and its
//! GPU twin [`crate::engine::gpu::GpuOdeEngine`] (`shaders/ode.wgsl`, f32).
//!
//! A batch is `S` input sequences of length `T` (`x`, `[S, T]` row-major)
//! crossed with `P` parameter sets; trajectory `(p, s)` drives sequence `s`
//! through a device with parameters `params[p]` from `w0[p]`. The output is the
//! same [`Features`] as the DDK engines': `[P, S, T]` f32 holding the model's
//! observed quantity ([`crate::model::DeviceModel::observe`]: the state for
//! `ddk-ode`, the read current for `diffusive`, the conductance for
//! `linear-drift`), a status and the first bad step per trajectory. The pulse
//! protocol and the integrators are described in [`crate::model::integrate`].

use crate::batch::{Features, Status};
use crate::model::integrate::{Integrator, PulseProtocol, simulate_into};
use crate::model::{Model, dispatch};
use crate::{Error, Result};
use rayon::prelude::*;

/// What to integrate: one model, one integrator, one pulse protocol and `P`
/// parameter sets (unchecked until [`OdeSpec::check`]).
///
/// | field | shape | meaning | valid range |
/// |---|---|---|---|
/// | `model` | | the device model | [`Model::ALL`] |
/// | `integrator` | | the method and its settings | [`Integrator::check`] |
/// | `pulse` | | how inputs become pulses | [`PulseProtocol::check`] |
/// | `params` | `[P, n]`, `n = model.params().len()` | parameters, in the model's table order | the model's table |
/// | `w0` | `[P]` | initial states | the model's `w0` range |
#[derive(Clone, Debug, PartialEq)]
pub struct OdeSpec {
    /// The device model.
    pub model: Model,
    /// The integration method.
    pub integrator: Integrator,
    /// How inputs become voltage pulses.
    pub pulse: PulseProtocol,
    /// Parameter sets, `[P, n_params]` row-major.
    pub params: Vec<f64>,
    /// Initial state per parameter set, `[P]`.
    pub w0: Vec<f64>,
}

impl OdeSpec {
    /// One parameter set with the model's defaults.
    pub fn defaults(model: Model, integrator: Integrator, pulse: PulseProtocol) -> Self {
        Self {
            model,
            integrator,
            pulse,
            params: model.defaults(),
            w0: vec![model.w0_spec().default],
        }
    }

    /// Number of parameter sets `P`.
    pub fn sets(&self) -> usize {
        self.w0.len()
    }

    /// Parameters of set `p`.
    pub fn set(&self, p: usize) -> &[f64] {
        let n = self.model.params().len();
        &self.params[p * n..(p + 1) * n]
    }

    /// Validates everything: the shapes, each parameter set and initial state
    /// against the model's table (errors name the set: `set 3: ddk-ode.alpha =
    /// -1: ...`), the integrator (and that the model supports it) and the pulse.
    pub fn check(&self) -> Result<()> {
        let n = self.model.params().len();
        if self.w0.is_empty() {
            return Err(Error::invalid("parameter sets", 0, "at least 1"));
        }
        if self.params.len() != self.w0.len() * n {
            return Err(Error::invalid(
                format!("{} params length", self.model.name()),
                self.params.len(),
                format!(
                    "{} (= {} sets x {n} parameters)",
                    self.w0.len() * n,
                    self.w0.len()
                ),
            ));
        }
        for p in 0..self.sets() {
            self.model.check(self.set(p), self.w0[p]).map_err(|e| {
                if self.sets() == 1 {
                    e
                } else {
                    prefix_set(p, e)
                }
            })?;
        }
        self.integrator.check(self.model)?;
        self.pulse.check()
    }
}

fn prefix_set(p: usize, e: Error) -> Error {
    match e {
        Error::InvalidParameter {
            field,
            value,
            expected,
        } => Error::InvalidParameter {
            field: format!("set {p}: {field}"),
            value,
            expected,
        },
        other => other,
    }
}

pub use crate::batch::check_inputs;

/// Integrates every trajectory of `x` (`[seqs, steps]`) under every parameter
/// set of `spec` on all cores, in f64 (the reference), and returns the features
/// rounded to f32. The twin of `shaders/ode.wgsl`.
pub fn run_ode_cpu(x: &[f32], seqs: usize, steps: usize, spec: &OdeSpec) -> Result<Features> {
    let mut f = Features::default();
    run_ode_cpu_into(x, seqs, steps, spec, &mut f)?;
    Ok(f)
}

/// [`run_ode_cpu`] into `f`, reusing its storage (what
/// [`crate::engine::Engine::run_model_into`] runs on the CPU).
pub fn run_ode_cpu_into(
    x: &[f32],
    seqs: usize,
    steps: usize,
    spec: &OdeSpec,
    f: &mut Features,
) -> Result<()> {
    check_inputs(x, seqs, steps)?;
    spec.check()?;
    f.prepare_shape(spec.sets(), seqs, steps, false);
    let Features {
        w,
        status,
        first_bad,
        ..
    } = f;
    w.par_chunks_mut(steps)
        .zip(status.par_iter_mut())
        .zip(first_bad.par_iter_mut())
        .enumerate()
        .for_each_init(
            || vec![0.0f64; steps],
            |buf, (i, ((out, st), fb))| {
                let (p, s) = (i / seqs, i % seqs);
                let stats = dispatch!(spec.model, M => simulate_into::<M>(
                    &spec.integrator,
                    &x[s * steps..(s + 1) * steps],
                    spec.set(p),
                    spec.w0[p],
                    &spec.pulse,
                    buf,
                ));
                for (o, &v) in out.iter_mut().zip(buf.iter()) {
                    *o = v as f32;
                }
                *st = stats.status as u8;
                *fb = if stats.status == Status::Ok {
                    u32::MAX
                } else {
                    stats.first_bad
                };
            },
        );
    Ok(())
}

/// The continuous models have no forward sensitivities and no in-loop
/// noise: a run asking for either is refused rather than silently ignored.
pub fn refuse_ddk_options(opts: &crate::engine::RunOptions) -> Result<()> {
    if opts.sensitivities {
        return Err(Error::invalid(
            "sensitivities",
            "on",
            "off for a continuous-time model (the DDK map only)",
        ));
    }
    if opts.noise.is_some() {
        return Err(Error::invalid(
            "cycle noise",
            "on",
            "off for a continuous-time model (the DDK map only)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::integrate::simulate_cpu;

    #[test]
    fn cpu_batch_equals_one_trajectory_at_a_time() {
        let x: Vec<f32> = (0..3 * 7).map(|i| (i % 5) as f32 * 0.2).collect();
        let mut spec = OdeSpec::defaults(
            Model::DdkOde,
            Integrator::Rk4 { substeps: 3 },
            PulseProtocol::PAPER,
        );
        spec.params = vec![0.7, 1.0, 0.5, 0.8];
        spec.w0 = vec![1.0, 2.0];
        let f = run_ode_cpu(&x, 3, 7, &spec).unwrap();
        for p in 0..2 {
            for s in 0..3 {
                let (want, _) = simulate_cpu(
                    spec.model,
                    &spec.integrator,
                    &x[s * 7..(s + 1) * 7],
                    spec.set(p),
                    spec.w0[p],
                    &spec.pulse,
                );
                let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
                assert_eq!(f.trajectory(p, s), &want[..]);
            }
        }
    }

    #[test]
    fn bad_sets_are_named() {
        let mut spec = OdeSpec::defaults(
            Model::DdkOde,
            Integrator::Euler { substeps: 1 },
            PulseProtocol::PAPER,
        );
        spec.params = vec![0.7, 1.0, -0.5, 0.8];
        spec.w0 = vec![1.0, 1.0];
        let e = spec.check().unwrap_err().to_string();
        assert_eq!(e, "set 1: ddk-ode.alpha = -0.5: finite, in (0, inf)");
    }
}
