//! What computes a study point's features: the paper's discrete DDK map
//! (parameters alpha, beta, w0) or a continuous-time device model of
//! [`crate::model`] (its own parameter names, and w0), integrated over the
//! pulse protocol of the spec's `[model]` table. Many points go to the engine
//! together: one parameter set per point, the inputs bound once.

use super::plan::Point;
use super::spec::ModelTable;
use crate::batch::{Batch, DeviceParams, Features};
use crate::engine::cpu::CpuEngine;
use crate::engine::gpu::GpuOdeEngine;
use crate::engine::ode::OdeSpec;
use crate::engine::{Engine, RunOptions, Transfer};
use crate::model::Model;
use crate::model::integrate::{Integrator, PulseProtocol};
use crate::pipeline::Side;
use crate::{Error, Result};

/// The discrete map's sweepable parameters with their defaults.
pub const MAP_PARAMS: &[(&str, f64)] = &[("alpha", 0.7), ("beta", 1.0), ("w0", 1.0)];

/// A feature source for batches of points.
pub enum Kinetics<'a> {
    /// The paper's map on a CPU or GPU engine.
    Map {
        /// The engine.
        engine: &'a dyn Engine,
    },
    /// A continuous-time model.
    Ode {
        /// Model, integrator, pulse, and one parameter set of fixed values
        /// (defaults overridden by the table's `set`).
        template: OdeSpec,
        /// The GPU engine, or `None` for the CPU (f64).
        gpu: Option<GpuOdeEngine>,
    },
}

/// Parses a spec's `[model]` integrator name with its settings
/// ([`Integrator::from_name`], errors naming `model.integrator`,
/// `model.substeps` or `model.rtol`).
pub fn integrator_from_name(name: &str, substeps: u32, rtol: f64) -> Result<Integrator> {
    Integrator::from_name(name, substeps, rtol).map_err(|e| match e {
        Error::InvalidParameter {
            field,
            value,
            expected,
        } => Error::InvalidParameter {
            field: format!("model.{field}"),
            value,
            expected,
        },
        other => other,
    })
}

impl<'a> Kinetics<'a> {
    /// From a spec's `[model]` table (`None`: the discrete map on `engine`).
    /// `gpu`: run a continuous model on this GPU engine rather than the CPU.
    pub fn resolve(
        table: Option<&ModelTable>,
        engine: &'a dyn Engine,
        gpu: Option<GpuOdeEngine>,
    ) -> Result<Self> {
        let Some(t) = table.filter(|t| t.name.as_deref().is_some_and(|n| n != "ddk")) else {
            if let Some(t) = table {
                let continuous_only = t.integrator.is_some()
                    || t.substeps.is_some()
                    || t.pulse_width.is_some()
                    || t.rest.is_some()
                    || t.v_scale.is_some()
                    || t.rtol.is_some()
                    || !t.set.is_empty();
                if continuous_only {
                    return Err(Error::invalid(
                        "model.name",
                        "ddk",
                        "a continuous-time model (ddk-ode, diffusive, linear-drift) for integrator, pulse or `set` keys; the discrete map takes alpha, beta, w0 in [grid]",
                    ));
                }
            }
            return Ok(Kinetics::Map { engine });
        };
        let model = Model::from_name(t.name.as_deref().unwrap_or_default())?;
        let integrator = integrator_from_name(
            t.integrator.as_deref().unwrap_or("rk4"),
            t.substeps.unwrap_or(8),
            t.rtol.unwrap_or(1e-6),
        )?;
        let pulse = PulseProtocol {
            v_scale: t.v_scale.unwrap_or(1.0),
            tau: t.pulse_width.unwrap_or(1.0),
            rest: t.rest.unwrap_or(0.0),
        };
        let mut template = OdeSpec::defaults(model, integrator, pulse);
        for (name, &v) in &t.set {
            let i = model
                .params()
                .iter()
                .position(|p| p.name == name.as_str())
                .ok_or_else(|| {
                    let names: Vec<&str> = model.params().iter().map(|p| p.name).collect();
                    Error::invalid(
                        format!("model.set.{name}"),
                        v,
                        format!("a parameter of {}: {}", model.name(), names.join(", ")),
                    )
                })?;
            template.params[i] = v;
        }
        if let Some(w0) = t.w0 {
            template.w0 = vec![w0];
        }
        template.check()?;
        if gpu.is_some() && integrator == Integrator::Exact && !model.has_exact() {
            return Err(Error::invalid(
                "model.integrator",
                "exact",
                "euler, heun, rk4 or adaptive on the GPU (exact needs a closed form: ddk-ode only)",
            ));
        }
        Ok(Kinetics::Ode { template, gpu })
    }

    /// The names a point may set.
    pub fn param_names(&self) -> Vec<&'static str> {
        match self {
            Kinetics::Map { .. } => MAP_PARAMS.iter().map(|p| p.0).collect(),
            Kinetics::Ode { template, .. } => template
                .model
                .params()
                .iter()
                .map(|p| p.name)
                .chain(["w0"])
                .collect(),
        }
    }

    /// The engine a continuous model runs on: the GPU engine when one was
    /// given, else the CPU (f64 reference). Both implement
    /// [`Engine::run_model_into`], so nothing below branches on the backend.
    fn ode_engine<'e>(&self, gpu: Option<&'e GpuOdeEngine>) -> &'e dyn Engine {
        static CPU: CpuEngine = CpuEngine::reference();
        match gpu {
            Some(g) => g,
            None => &CPU,
        }
    }

    /// Bytes the engine behind these kinetics has moved between host and
    /// device so far (zero on the CPU); a study reports the difference of two
    /// readings.
    pub fn transfer(&self) -> Transfer {
        match self {
            Kinetics::Map { engine } => engine.transfer(),
            Kinetics::Ode { gpu, .. } => self.ode_engine(gpu.as_ref()).transfer(),
        }
    }

    /// Backend and adapter, for manifests.
    pub fn describe(&self) -> (String, String) {
        match self {
            Kinetics::Map { engine } => {
                let i = engine.info();
                (i.backend, i.adapter)
            }
            Kinetics::Ode { gpu: Some(g), .. } => {
                let i = g.info();
                (i.backend, i.adapter)
            }
            Kinetics::Ode { gpu: None, .. } => ("cpu".into(), crate::engine::cpu::cpu_model()),
        }
    }

    /// Checks one point's parameters against the model's ranges (run over the
    /// whole plan before any work, so a bad grid fails at once).
    pub fn check_point(&self, p: &Point) -> Result<()> {
        let wrap = |e: Error| match e {
            Error::InvalidParameter {
                field,
                value,
                expected,
            } => Error::invalid(
                format!("point {} ({}): {field}", p.index, describe_point(p)),
                value,
                expected,
            ),
            other => other,
        };
        match self {
            Kinetics::Map { .. } => {
                let get = |i: usize| p.get(MAP_PARAMS[i].0).unwrap_or(MAP_PARAMS[i].1);
                DeviceParams::new(1, 1, None, vec![get(0)], vec![get(1)], vec![get(2)])
                    .map(|_| ())
                    .map_err(wrap)
            }
            Kinetics::Ode { template, .. } => {
                let mut spec = template.clone();
                for (i, ps) in template.model.params().iter().enumerate() {
                    spec.params[i] = p.get(ps.name).unwrap_or(template.params[i]);
                }
                spec.w0[0] = p.get("w0").unwrap_or(template.w0[0]);
                spec.check().map_err(wrap)
            }
        }
    }

    /// Features `[P, S, T]` of `side`'s sequences under one parameter set per point.
    pub fn run(&self, side: &Side, points: &[Point]) -> Result<Features> {
        let e = &side.encoded;
        let name_err = |e: Error| match e {
            Error::InvalidParameter {
                field,
                value,
                expected,
            } => Error::invalid(
                format!("point {}: {field}", points[0].index),
                value,
                expected,
            ),
            other => other,
        };
        match self {
            Kinetics::Map { engine } => {
                let get = |p: &Point, i: usize| p.get(MAP_PARAMS[i].0).unwrap_or(MAP_PARAMS[i].1);
                let params = DeviceParams::new(
                    points.len(),
                    1,
                    None,
                    points.iter().map(|p| get(p, 0)).collect(),
                    points.iter().map(|p| get(p, 1)).collect(),
                    points.iter().map(|p| get(p, 2)).collect(),
                )
                .map_err(name_err)?;
                engine.run(
                    &Batch::new(&e.x, e.seqs, e.steps, &params)?,
                    &RunOptions::default(),
                )
            }
            Kinetics::Ode { template, gpu } => {
                let names = template.model.params();
                let mut spec = template.clone();
                spec.params = Vec::with_capacity(points.len() * names.len());
                spec.w0 = Vec::with_capacity(points.len());
                for p in points {
                    for (i, ps) in names.iter().enumerate() {
                        spec.params
                            .push(p.get(ps.name).unwrap_or(template.params[i]));
                    }
                    spec.w0.push(p.get("w0").unwrap_or(template.w0[0]));
                }
                spec.check().map_err(name_err)?;
                let mut f = Features::default();
                self.ode_engine(gpu.as_ref()).run_model_into(
                    &e.x,
                    e.seqs,
                    e.steps,
                    &spec,
                    &RunOptions::default(),
                    &mut f,
                )?;
                Ok(f)
            }
        }
    }
}

fn describe_point(p: &Point) -> String {
    p.params
        .iter()
        .map(|(n, v)| format!("{n} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
