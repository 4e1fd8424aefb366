//! Device non-idealities: the `[variability]` table resolved ([`Nonideal`],
//! [`resolve_device`]), device sampling ([`sample_devices`],
//! [`draws_params`]) and the host-side noise of a draw's features
//! ([`add_read_noise`], [`HostSteps`]). Every draw is a pure function of
//! (stream, draw, device) through the counters tabled in [`super`].

use super::conductance::{Conductance, PAPER_G_MAX, PAPER_G_MIN};
use crate::batch::DeviceParams;
use crate::engine::cpu::CpuEngine;
use crate::engine::ode::OdeSpec;
use crate::rng::{
    Stream, normal_pair, purpose, truncated_normal_positive, truncated_normal_range, uniform_f32,
    uniform_f64,
};
use crate::study::kinetics::Kinetics;
use crate::study::spec::{McModel, McSpec, Variability};
use crate::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;

/// The non-idealities of a study, resolved from the spec's `[variability]`
/// table (defaults in the module docs; sigmas made absolute).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Nonideal {
    /// Absolute standard deviation of alpha across devices.
    pub sigma_alpha: f64,
    /// Absolute standard deviation of beta across devices.
    pub sigma_beta: f64,
    /// One device per channel (else one per draw).
    pub per_channel: bool,
    /// Cycle-to-cycle noise on the state, per step.
    pub cycle_noise: f64,
    /// Read noise on every feature.
    pub read_noise: f64,
    /// Probability that a device is stuck.
    pub stuck_fraction: f64,
    /// What a stuck device reads.
    pub stuck_w: f64,
    /// The readout's conductance model, when on.
    pub conductance: Option<Conductance>,
    /// Noise-aware fine-tuning epochs (0: none).
    pub fine_tune_epochs: usize,
    /// Epochs of the readout trained noise-aware from its initialisation
    /// (0: none).
    pub noise_aware_epochs: usize,
    /// A continuous-time model's varied parameters (empty for the map).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub params: Vec<VariedParam>,
}

/// One varied parameter of a continuous-time model: `N(nominal, sigma^2)`
/// truncated to the parameter's valid range, counter `[draw, 0, purpose,
/// attempt]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VariedParam {
    /// The model's name of the parameter (or `w0`).
    pub name: String,
    /// Nominal value.
    pub nominal: f64,
    /// Absolute standard deviation.
    pub sigma: f64,
    /// Philox purpose word ([`purpose::PARAM_BASE`] + index, or
    /// [`purpose::W0`]).
    pub purpose: u32,
    /// Valid range `(lo, lo_exclusive, hi)`.
    #[serde(skip)]
    pub range: (f64, bool, f64),
}

impl VariedParam {
    /// This parameter's value in `draw`.
    pub fn sample(&self, stream: &Stream, draw: u32) -> Result<f64> {
        truncated_normal_range(
            stream,
            self.nominal,
            self.sigma,
            self.range,
            [draw, 0, self.purpose],
        )
        .map_err(|e| match e {
            Error::InvalidParameter {
                field,
                value,
                expected,
            } => Error::invalid(
                format!("variability.sigma.{} ({field})", self.name),
                value,
                expected,
            ),
            o => o,
        })
    }
}

/// The device model of a Monte Carlo spec, resolved and checked against the
/// `[variability]` table before any work: `None` for the discrete map (its
/// `sigma` names checked), else the continuous model's template (nominal
/// values) and its varied parameters.
pub fn resolve_device(spec: &McSpec) -> Result<Option<(OdeSpec, Vec<VariedParam>)>> {
    let v = &spec.variability;
    let table = match &spec.model {
        Some(McModel::Device(t)) => Some(t),
        _ => None,
    };
    let cpu = CpuEngine::fast();
    let kinetics = Kinetics::resolve(table, &cpu, None)?;
    let Kinetics::Ode { template, .. } = kinetics else {
        if let Some(name) = v
            .sigma
            .keys()
            .find(|k| !["alpha", "beta"].contains(&k.as_str()))
        {
            return Err(Error::invalid(
                format!("variability.sigma.{name}"),
                v.sigma[name],
                "a parameter of the discrete map: alpha, beta",
            ));
        }
        for (k, s) in [("alpha", v.sigma_alpha), ("beta", v.sigma_beta)] {
            if s.is_some() && v.sigma.contains_key(k) {
                return Err(Error::invalid(
                    format!("variability.sigma.{k}"),
                    v.sigma[k],
                    format!("either sigma_{k} or sigma.{k}, not both"),
                ));
            }
        }
        return Ok(None);
    };
    let model = template.model;
    let model_name = model.name();
    let off = |key: &str, on: bool| {
        if on {
            Err(Error::invalid(
                format!("variability.{key}"),
                "set",
                format!(
                    "absent for the continuous model {model_name} (a discrete-map kernel effect; read_noise, sigma and the conductance keys apply)"
                ),
            ))
        } else {
            Ok(())
        }
    };
    off("cycle_noise", v.cycle_noise.is_some_and(|x| x > 0.0))?;
    off("stuck_fraction", v.stuck_fraction.is_some_and(|x| x > 0.0))?;
    off("stuck_w", v.stuck_w.is_some())?;
    off("per_channel", v.per_channel == Some(true))?;
    off(
        "fine_tune_epochs",
        v.fine_tune_epochs.is_some_and(|x| x > 0),
    )?;
    off(
        "noise_aware_epochs",
        v.noise_aware_epochs.is_some_and(|x| x > 0),
    )?;
    let mut sigma = v.sigma.clone();
    for (k, s) in [("alpha", v.sigma_alpha), ("beta", v.sigma_beta)] {
        if let Some(s) = s
            && sigma.insert(k.to_string(), s).is_some()
        {
            return Err(Error::invalid(
                format!("variability.sigma.{k}"),
                v.sigma[k],
                format!("either sigma_{k} or sigma.{k}, not both"),
            ));
        }
    }
    let specs = model.params();
    let w0s = model.w0_spec();
    let names: Vec<&str> = specs.iter().map(|p| p.name).chain(["w0"]).collect();
    let rel = v.relative.unwrap_or(false);
    let mut varied = Vec::new();
    for (name, &s) in &sigma {
        let (nominal, purpose, ps) = match specs.iter().position(|p| p.name == name.as_str()) {
            Some(i) => (
                template.params[i],
                purpose::PARAM_BASE + i as u32,
                &specs[i],
            ),
            None if name == "w0" => (template.w0[0], purpose::W0, &w0s),
            None => {
                return Err(Error::invalid(
                    format!("variability.sigma.{name}"),
                    s,
                    format!("a parameter of {model_name}: {}", names.join(", ")),
                ));
            }
        };
        varied.push(VariedParam {
            name: name.clone(),
            nominal,
            sigma: if rel { s * nominal.abs() } else { s },
            purpose,
            range: (ps.min, ps.min_exclusive, ps.max),
        });
    }
    // Table order, w0 last: the draws.csv columns.
    varied.sort_by_key(|p| p.purpose.wrapping_sub(purpose::PARAM_BASE));
    Ok(Some((template, varied)))
}

impl Nonideal {
    /// Resolves the spec's table against the nominal `alpha`, `beta`, `w0`
    /// (`sigma = { alpha = .., beta = .. }` as `sigma_alpha`, `sigma_beta`).
    pub fn resolve(v: &Variability, alpha: f64, beta: f64, w0: f64) -> Self {
        let rel = v.relative.unwrap_or(false);
        let sig = |k: &str, s: Option<f64>| s.or_else(|| v.sigma.get(k).copied()).unwrap_or(0.0);
        let (fa, fb) = if rel { (alpha, beta) } else { (1.0, 1.0) };
        let any_g = v.g_min.is_some()
            || v.g_max.is_some()
            || v.g_noise_mean.is_some()
            || v.g_noise_std.is_some()
            || v.quant_bits.is_some();
        Self {
            sigma_alpha: sig("alpha", v.sigma_alpha) * fa,
            sigma_beta: sig("beta", v.sigma_beta) * fb,
            per_channel: v.per_channel.unwrap_or(false),
            cycle_noise: v.cycle_noise.unwrap_or(0.0),
            read_noise: v.read_noise.unwrap_or(0.0),
            stuck_fraction: v.stuck_fraction.unwrap_or(0.0),
            stuck_w: v.stuck_w.unwrap_or(w0),
            conductance: any_g.then(|| Conductance {
                g_min: v.g_min.unwrap_or(PAPER_G_MIN),
                g_max: v.g_max.unwrap_or(PAPER_G_MAX),
                noise_mean: v.g_noise_mean.unwrap_or(0.0),
                noise_std: v.g_noise_std.unwrap_or(0.0),
                quant_bits: v.quant_bits,
            }),
            fine_tune_epochs: v.fine_tune_epochs.unwrap_or(0) as usize,
            noise_aware_epochs: v.noise_aware_epochs.unwrap_or(0) as usize,
            params: Vec::new(),
        }
    }

    /// Checks the conductance range.
    pub fn check(&self) -> Result<()> {
        if let Some(c) = self.conductance.as_ref().filter(|c| c.g_max <= c.g_min) {
            return Err(Error::invalid(
                "variability.g_min, g_max",
                format!("[{}, {}]", c.g_min, c.g_max),
                "g_min < g_max (defaults 40 and 300)",
            ));
        }
        Ok(())
    }
}

/// The devices of one draw.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceDraw {
    /// Sampled alpha per device (stuck devices included).
    pub alpha: Vec<f64>,
    /// Sampled beta per device.
    pub beta: Vec<f64>,
    /// Which devices are stuck.
    pub stuck: Vec<bool>,
}

impl DeviceDraw {
    /// Mean sampled alpha and beta over the draw's devices.
    pub fn means(&self) -> (f64, f64) {
        let n = self.alpha.len().max(1) as f64;
        (
            self.alpha.iter().sum::<f64>() / n,
            self.beta.iter().sum::<f64>() / n,
        )
    }

    /// Share of the draw's devices that are stuck.
    pub fn stuck_share(&self) -> f64 {
        self.stuck.iter().filter(|&&s| s).count() as f64 / self.stuck.len().max(1) as f64
    }
}

/// Samples the `devices` devices of `draw`: a pure function of (stream,
/// draw, device); see the module docs for the counters.
pub fn sample_devices(
    stream: &Stream,
    draw: u32,
    devices: usize,
    alpha: f64,
    beta: f64,
    v: &Nonideal,
) -> Result<DeviceDraw> {
    let mut d = DeviceDraw {
        alpha: Vec::with_capacity(devices),
        beta: Vec::with_capacity(devices),
        stuck: Vec::with_capacity(devices),
    };
    for g in 0..devices as u32 {
        d.alpha.push(truncated_normal_positive(
            stream,
            alpha,
            v.sigma_alpha,
            draw,
            g,
            purpose::ALPHA,
        )?);
        d.beta.push(truncated_normal_positive(
            stream,
            beta,
            v.sigma_beta,
            draw,
            g,
            purpose::BETA,
        )?);
        d.stuck.push(
            v.stuck_fraction > 0.0 && {
                let r = stream.at(draw, g, purpose::STUCK, 0);
                uniform_f64(r[0], r[1]) < v.stuck_fraction
            },
        );
    }
    Ok(d)
}

/// Device parameters for a run of draws: `P = draws.len()` sets of `G`
/// devices; a stuck device gets `alpha = beta = 0` and `w0 = stuck_w`.
pub fn draws_params(draws: &[DeviceDraw], w0: f64, stuck_w: f64) -> Result<DeviceParams> {
    let g = draws.first().map_or(1, |d| d.alpha.len());
    let (mut a, mut b, mut w) = (Vec::new(), Vec::new(), Vec::new());
    for d in draws {
        for j in 0..g {
            let s = d.stuck[j];
            a.push(if s { 0.0 } else { d.alpha[j] });
            b.push(if s { 0.0 } else { d.beta[j] });
            w.push(if s { stuck_w } else { w0 });
        }
    }
    DeviceParams::new_allow_stuck(draws.len(), g, None, a, b, w)
}

/// The read noise on step `step` of sequence `seq` of `draw`: `sigma z`, `z`
/// component `step % 2` of the Box-Muller pair (in f64) of the f32 uniforms
/// of words 0 and 1 at the counter `[draw, seq, READ_NOISE, step / 2]` (the
/// scheme of the cycle noise, `engine::cpu::step_noise`): the GPU kernel
/// (`shaders/mc_forward.wgsl`) draws the same uniforms and differs only by
/// its f32 `log`/`sqrt`/`cos`.
pub fn read_noise(stream: &Stream, draw: u32, seq: u32, step: u32, sigma: f64) -> f32 {
    let b = stream.at(draw, seq, purpose::READ_NOISE, step / 2);
    let (z0, z1) = normal_pair(uniform_f32(b[0]) as f64, uniform_f32(b[1]) as f64);
    (sigma * if step.is_multiple_of(2) { z0 } else { z1 }) as f32
}

/// Adds read noise ([`read_noise`]) to the features `w` (`[seqs, steps]`)
/// of `draw`.
pub fn add_read_noise(w: &mut [f32], steps: usize, stream: &Stream, draw: u32, sigma: f64) {
    w.par_chunks_mut(steps).enumerate().for_each(|(s, row)| {
        for (k, v) in row.iter_mut().enumerate() {
            *v += read_noise(stream, draw, s as u32, k as u32, sigma);
        }
    });
}

/// The noisy features of one draw, as the readout sees them.
pub struct DrawFeatures<'a> {
    /// `[samples, seqs_per_sample * T]`, noisy.
    pub w: &'a mut [f32],
    /// Engine status per sequence.
    pub status: &'a [u8],
}

/// The host-side steps shared by the test draws and the fine-tuning draws:
/// stuck devices pinned, read noise added, failed samples flagged.
pub struct HostSteps<'a> {
    /// The non-idealities.
    pub v: &'a Nonideal,
    /// The draw's stream (test draws or training draws).
    pub stream: &'a Stream,
    /// Sequences per readout sample.
    pub seqs_per_sample: usize,
    /// Steps per sequence.
    pub steps: usize,
}

impl HostSteps<'_> {
    /// Returns the per-sample failure flags and the share of diverged
    /// trajectories.
    pub fn apply(&self, draw: u32, d: &DeviceDraw, f: DrawFeatures<'_>) -> (Vec<bool>, f64) {
        let (t, spp) = (self.steps, self.seqs_per_sample);
        let g = d.stuck.len();
        let seqs = f.status.len();
        let mut ok_seq: Vec<bool> = f.status.iter().map(|&s| s == 0).collect();
        if self.v.cycle_noise > 0.0 && d.stuck.iter().any(|&s| s) {
            // Noise moved the stuck devices' states: pin them back.
            for s in 0..seqs {
                if d.stuck[s % g] {
                    f.w[s * t..(s + 1) * t].fill(self.v.stuck_w as f32);
                    ok_seq[s] = true;
                }
            }
        }
        if self.v.read_noise > 0.0 {
            add_read_noise(f.w, t, self.stream, draw, self.v.read_noise);
        }
        let diverged = ok_seq.iter().filter(|&&o| !o).count() as f64 / seqs.max(1) as f64;
        let bad: Vec<bool> = ok_seq.chunks(spp).map(|c| c.iter().any(|&o| !o)).collect();
        if bad.iter().any(|&b| b) {
            // The readout must not see NaN: zero the failed samples (they count as wrong).
            for (i, &b) in bad.iter().enumerate() {
                if b {
                    f.w[i * spp * t..(i + 1) * spp * t].fill(0.0);
                }
            }
        }
        (bad, diverged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_draws_are_pure_functions_of_seed_draw_and_device() {
        let v = Nonideal {
            sigma_alpha: 0.0955,
            sigma_beta: 0.276,
            per_channel: true,
            cycle_noise: 0.0,
            read_noise: 0.0,
            stuck_fraction: 0.3,
            stuck_w: 1.0,
            conductance: None,
            fine_tune_epochs: 0,
            noise_aware_epochs: 0,
            params: Vec::new(),
        };
        let s = Stream::new(9);
        let a = sample_devices(&s, 5, 28, 0.7, 1.0, &v).unwrap();
        let b = sample_devices(&s, 5, 28, 0.7, 1.0, &v).unwrap();
        assert_eq!(a, b);
        // Fewer devices: the same first devices.
        let c = sample_devices(&s, 5, 3, 0.7, 1.0, &v).unwrap();
        assert_eq!(c.alpha[..], a.alpha[..3]);
        assert!(a.alpha.iter().all(|&x| x > 0.0));
        assert!(a.stuck.iter().any(|&x| x) && !a.stuck.iter().all(|&x| x));
        let off = Nonideal {
            sigma_alpha: 0.0,
            sigma_beta: 0.0,
            stuck_fraction: 0.0,
            ..v
        };
        let d = sample_devices(&s, 5, 2, 0.7, 1.0, &off).unwrap();
        assert_eq!(
            (d.alpha, d.beta, d.stuck),
            (vec![0.7; 2], vec![1.0; 2], vec![false; 2])
        );
    }
}
