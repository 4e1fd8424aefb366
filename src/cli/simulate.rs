//! `memkin simulate`: integrate the DDK map (`--model ddk`, the default) or a
//! continuous-time device model (`--model ddk-ode|diffusive|linear-drift`) over a
//! `.npy` of sequences.

use super::{BackendArg, Common, print_json};
use anyhow::Context;
use memkin::Error;
use memkin::batch::{Batch, DeviceParams};
use memkin::data::npy::{read_device_params, read_npy_f32 as read_f32, read_sequences};
use memkin::engine::gpu::GpuOdeEngine;
use memkin::engine::ode::OdeSpec;
use memkin::engine::vjp::{VjpOptions, select_with_vjp};
use memkin::engine::{BackendChoice, Engine, Precision, RunOptions, select};
use memkin::limits;
use memkin::model::Model;
use memkin::model::integrate::{Integrator, PulseProtocol};
use memkin::report::output::{Outputs, check_input_file};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `memkin simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    backend: BackendArg,
    /// Device model: ddk (the paper's discrete map) or a continuous-time model
    /// driven by pulses (ddk-ode, diffusive, linear-drift; docs/models.md).
    #[arg(long, value_enum, default_value = "ddk")]
    model: ModelArg,
    #[command(flatten)]
    ode: OdeArgs,
    /// Pulse width tau (ODE models; default 1).
    #[arg(long, allow_hyphen_values = true)]
    pulse_width: Option<f64>,
    /// Rest at 0 V after each pulse (ODE models; default 0).
    #[arg(long, allow_hyphen_values = true)]
    rest: Option<f64>,
    /// Pulse amplitude per unit input, V (ODE models; default 1).
    #[arg(long, allow_hyphen_values = true)]
    v_scale: Option<f64>,
    /// Input sequences: .npy of shape [S, T], float32 or float64.
    #[arg(long)]
    input: PathBuf,
    /// One scalar alpha (with --beta), > 0 (ddk; ddk-ode: shorthand for --set alpha=A).
    #[arg(
        long,
        requires = "beta",
        conflicts_with = "params",
        allow_hyphen_values = true
    )]
    alpha: Option<f64>,
    /// One scalar beta (with --alpha), > 0 (ddk; ddk-ode: shorthand for --set beta=B).
    #[arg(
        long,
        requires = "alpha",
        conflicts_with = "params",
        allow_hyphen_values = true
    )]
    beta: Option<f64>,
    /// Parameter sets: .npy of shape [P, 2] (alpha, beta) or [P, 2, T] (per step).
    #[arg(long)]
    params: Option<PathBuf>,
    /// Initial state w[0]: > 0 for ddk (default 1); ODE models: the model's
    /// w0 range and default.
    #[arg(long, allow_hyphen_values = true)]
    w0: Option<f64>,
    /// Arithmetic precision (the GPU is f32 only).
    #[arg(long, value_enum, default_value = "f32")]
    precision: Precision,
    /// Most trajectories per GPU dispatch (default: as many as the adapter allows).
    #[arg(long)]
    chunk: Option<usize>,
    /// Features out: .npy float32, [S, T] (scalar --alpha/--beta) or [P, S, T] (--params).
    #[arg(long)]
    out: PathBuf,
    /// Status per trajectory out: .npy uint8 (0 ok, 1 non-positive, 2 non-finite).
    #[arg(long)]
    status: Option<PathBuf>,
    /// Sensitivities out: .npy float32, the features' shape plus a last axis of 2 (d/dalpha, d/dbeta).
    #[arg(long)]
    grad: Option<PathBuf>,
    /// Reverse mode: cotangents G = dL/dw, .npy float32/float64 shaped like the
    /// features (--out): [P, S, T] with --params, [S, T] with --alpha/--beta.
    #[arg(long, value_name = "G.npy")]
    vjp: Option<PathBuf>,
    /// dL/dx out (with --vjp): .npy float32 shaped like G (the last step of each sequence is 0).
    #[arg(long, value_name = "GX.npy", requires = "vjp")]
    grad_input: Option<PathBuf>,
    /// dL/d(alpha, beta) out (with --vjp): .npy float64, [P, 2] (alpha, beta) or
    /// [P, 2, T] for per-step --params (step 0 is 0); [2] with --alpha/--beta.
    #[arg(long, value_name = "GP.npy", requires = "vjp")]
    grad_params: Option<PathBuf>,
}

/// The resolved configuration: everything validated, inputs loaded.
struct Config {
    x: Vec<f32>,
    seqs: usize,
    steps: usize,
    params: DeviceParams,
    /// True when --params was given (outputs keep the P axis).
    keep_sets_axis: bool,
}

fn resolve(a: &Args) -> Result<Config, Error> {
    let (x, seqs, steps) = read_sequences(&a.input)?;
    // Checked here, before a parameter file whose errors would name the file.
    let w0 = a.w0.unwrap_or(1.0);
    if !(w0.is_finite() && w0 > 0.0) {
        return Err(Error::invalid("--w0", w0, "finite and > 0"));
    }
    let (params, keep) = match (&a.params, a.alpha, a.beta) {
        (Some(p), _, _) => (read_device_params(p, steps, w0)?, true),
        (None, Some(al), Some(be)) => {
            let params = DeviceParams::scalar(&[(al, be)], w0).map_err(|e| {
                as_flags(e, &[("alpha[set 0]", "--alpha"), ("beta[set 0]", "--beta")])
            })?;
            (params, false)
        }
        _ => {
            return Err(Error::invalid(
                "parameters",
                "none",
                "give --alpha A --beta B, or --params P.npy",
            ));
        }
    };
    Ok(Config {
        x,
        seqs,
        steps,
        params,
        keep_sets_axis: keep,
    })
}

/// The library's error about `field` renamed as the flag that gave it
/// (`pulse.tau` -> `--pulse-width`); other errors pass through.
fn as_flags(e: Error, names: &[(&str, &str)]) -> Error {
    match e {
        Error::InvalidParameter {
            field,
            value,
            expected,
        } => match names.iter().find(|(f, _)| *f == field) {
            Some((_, flag)) => Error::invalid(*flag, value, expected),
            None => Error::InvalidParameter {
                field,
                value,
                expected,
            },
        },
        other => other,
    }
}

/// The command's output transaction, before any work: inputs declared, every
/// output path checked (not an input, not another output, a regular file).
fn plan_outputs(a: &Args) -> Result<Outputs, Error> {
    check_input_file("--input", &a.input)?;
    if let Some(p) = &a.params {
        check_input_file("--params", p)?;
    }
    if let Some(g) = &a.vjp {
        check_input_file("--vjp", g)?;
        if a.grad_input.is_none() && a.grad_params.is_none() {
            return Err(Error::invalid(
                "--vjp",
                "given alone",
                "with --grad-input GX.npy and/or --grad-params GP.npy (where the gradients go)",
            ));
        }
    }
    let mut out = Outputs::new();
    out.input(&a.input);
    for p in [&a.params, &a.vjp].into_iter().flatten() {
        out.input(p);
    }
    out.plan(&a.out)?;
    for p in [&a.status, &a.grad, &a.grad_input, &a.grad_params]
        .into_iter()
        .flatten()
    {
        out.plan(p)?;
    }
    Ok(out)
}

/// Refuses, before allocating, outputs that cannot fit in memory.
fn check_size(a: &Args, sets: usize, seqs: usize, steps: usize) -> Result<(), Error> {
    let traj = limits::product(&[sets as u128, seqs as u128]);
    let per_step = 4 + if a.grad.is_some() { 8 } else { 0 } + if a.vjp.is_some() { 8 } else { 0 };
    // The outputs (features, sensitivities, status) exist twice at most: as the
    // engine's result and as the arrays written.
    let needed = limits::product(&[traj, steps as u128, per_step]).saturating_add(traj);
    limits::check_memory(
        format!(
            "simulate: {sets} parameter set(s) x {seqs} sequences x {steps} steps{}",
            if a.grad.is_some() { " with --grad" } else { "" }
        ),
        needed,
    )
}

/// The cotangents of `--vjp`: shaped like the features (`[P, S, T]` with
/// --params, `[S, T]` with --alpha/--beta), every value finite.
fn read_cotangents(path: &std::path::Path, cfg: &Config) -> Result<Vec<f32>, Error> {
    let (g, shape) = read_f32(path)?;
    let want: Vec<usize> = if cfg.keep_sets_axis {
        vec![cfg.params.sets(), cfg.seqs, cfg.steps]
    } else {
        vec![cfg.seqs, cfg.steps]
    };
    if shape != want {
        let axes = if cfg.keep_sets_axis {
            "[P, S, T] (with --params)"
        } else {
            "[S, T] (with --alpha/--beta)"
        };
        return Err(Error::bad_file(
            path,
            format!("shape {shape:?}: expected {axes} = {want:?}, the shape of the --out features"),
        ));
    }
    if let Some(i) = g.iter().position(|v| !v.is_finite()) {
        let (s, t) = (cfg.seqs, cfg.steps);
        let at = if cfg.keep_sets_axis {
            format!("[{}, {}, {}]", i / (s * t), (i / t) % s, i % t)
        } else {
            format!("[{}, {}]", i / t, i % t)
        };
        return Err(Error::bad_file(
            path,
            format!("element {at} is {}: expected finite cotangents", g[i]),
        ));
    }
    Ok(g)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    a.common.refuse_seed(
        "not used: simulate makes no random choice (the seed in its --json is always 0)",
    )?;
    let out = plan_outputs(&a)?;
    if a.chunk == Some(0) {
        return Err(Error::invalid("--chunk", 0, "at least 1").into());
    }
    if let Some(model) = a.model.ode() {
        if a.vjp.is_some() {
            return Err(Error::invalid(
                "--vjp",
                "given with an ODE model",
                "only with --model ddk (the reverse kernel is the DDK map's)",
            )
            .into());
        }
        return run_ode(a, model, out);
    }
    reject_ode_flags(&a)?;
    let cfg = resolve(&a)?;
    check_size(&a, cfg.params.sets(), cfg.seqs, cfg.steps)?;
    let cotangents = match &a.vjp {
        Some(g) => Some(read_cotangents(g, &cfg)?),
        None => None,
    };
    let (engine, reverse) = if cotangents.is_some() {
        let (f, r) = select_with_vjp(a.backend.backend, a.precision)?;
        (f, Some(r))
    } else {
        (select(a.backend.backend, a.precision)?, None)
    };
    let batch = Batch::new(&cfg.x, cfg.seqs, cfg.steps, &cfg.params)?;
    let opts = RunOptions {
        sensitivities: a.grad.is_some(),
        chunk: a.chunk,
        noise: None,
    };
    let t0 = Instant::now();
    let transfer_before = engine.transfer();
    let f = engine.run(&batch, &opts).context("simulation failed")?;
    let vjp = match (&reverse, &cotangents) {
        (Some(r), Some(g)) => Some(
            r.vjp(&batch, &f.w, g, &VjpOptions { chunk: a.chunk })
                .context("reverse pass failed")?,
        ),
        _ => None,
    };
    let seconds = t0.elapsed().as_secs_f64();
    // The forward and reverse GPU engines share one context: its counters
    // hold both passes' traffic.
    let transfer = engine.transfer().since(transfer_before);

    let (p, s, t) = (f.sets, f.seqs, f.steps);
    let lead: Vec<usize> = if cfg.keep_sets_axis {
        vec![p, s]
    } else {
        vec![s]
    };
    let counts = f.status_counts();
    let mut out = out;
    out.npy(&a.out, f.w, &[lead.clone(), vec![t]].concat())?;
    if let Some(sp) = &a.status {
        out.npy(sp, f.status, &lead)?;
    }
    if let (Some(gp), Some(g)) = (&a.grad, f.grad) {
        out.npy(gp, g, &[lead.clone(), vec![t, 2]].concat())?;
    }
    if let Some(v) = vjp {
        if let Some(gx) = &a.grad_input {
            out.npy(gx, v.grad_x.clone(), &[lead.clone(), vec![t]].concat())?;
        }
        if let Some(gp) = &a.grad_params {
            let devices = v.grad_alpha.len() / v.per_step.unwrap_or(1);
            let mut shape = if cfg.keep_sets_axis {
                vec![devices, 2]
            } else {
                vec![2]
            };
            shape.extend(v.per_step);
            out.npy(gp, v.grad_params(), &shape)?;
        }
    }
    out.commit()?;

    let info = engine.info();
    let trajectories = (p * s) as u64;
    let steps = trajectories * t as u64;
    let mut summary = run_summary(
        &info,
        trajectories,
        t,
        seconds,
        counts,
        a.common.seed(),
        &a.out,
    );
    summary["transfer"] = serde_json::json!(transfer);
    if a.common.json {
        print_json(&summary);
    } else {
        eprintln!(
            "{} trajectories x {t} steps on {} ({}) in {seconds:.3} s: {:.3e} steps/s; ok {}, non-positive {}, non-finite {}",
            trajectories,
            info.adapter,
            info.backend,
            steps as f64 / seconds.max(1e-12),
            counts[0],
            counts[1],
            counts[2]
        );
    }
    Ok(())
}

/// The `--model` choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelArg {
    /// The paper's discrete DDK map (the default).
    Ddk,
    /// dw/dt = alpha / w - beta V.
    DdkOde,
    /// Volatile diffusive memristor.
    Diffusive,
    /// HP linear ion drift with a window.
    LinearDrift,
}

impl ModelArg {
    /// The continuous-time model, or None for the discrete map.
    pub fn ode(self) -> Option<Model> {
        match self {
            ModelArg::Ddk => None,
            ModelArg::DdkOde => Some(Model::DdkOde),
            ModelArg::Diffusive => Some(Model::Diffusive),
            ModelArg::LinearDrift => Some(Model::LinearDrift),
        }
    }
}

/// The `--integrator` choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IntegratorArg {
    /// Forward Euler (order 1).
    Euler,
    /// Heun (order 2).
    Heun,
    /// Classical Runge-Kutta (order 4).
    Rk4,
    /// Dormand-Prince 5(4) with step control, landing on pulse edges.
    Adaptive,
    /// The closed form (ddk-ode only; both backends).
    Exact,
}

/// Flags of the continuous-time models shared by `simulate` and `fit`.
#[derive(Debug, Clone, clap::Args)]
pub struct OdeArgs {
    /// Integrator of the ODE models (default euler for simulate).
    #[arg(long, value_enum)]
    pub integrator: Option<IntegratorArg>,
    /// Sub-steps per pulse and per rest of the fixed-step integrators (default 1
    /// for simulate), >= 1.
    #[arg(long)]
    pub substeps: Option<u32>,
    /// Relative tolerance of the adaptive integrator, in (0, 1) (default 1e-6;
    /// the absolute tolerance is rtol * 1e-3). The GPU (f32) cannot meet less than ~1e-6.
    #[arg(long)]
    pub rtol: Option<f64>,
    /// A model parameter by name, NAME=VALUE (repeatable): see docs/models.md
    /// for each model's table and ranges.
    #[arg(long = "set", value_name = "NAME=VALUE", allow_hyphen_values = true)]
    pub set: Vec<String>,
}

impl OdeArgs {
    /// True when any flag was given.
    fn any(&self) -> bool {
        self.integrator.is_some()
            || self.substeps.is_some()
            || self.rtol.is_some()
            || !self.set.is_empty()
    }

    /// The integrator, validated for `model` (`default_substeps` when
    /// `--substeps` is absent).
    pub fn integrator(
        &self,
        model: Model,
        default: IntegratorArg,
        default_substeps: u32,
    ) -> Result<Integrator, Error> {
        let n = self.substeps.unwrap_or(default_substeps);
        let rtol = self.rtol.unwrap_or(1e-6);
        let name = match self.integrator.unwrap_or(default) {
            IntegratorArg::Euler => "euler",
            IntegratorArg::Heun => "heun",
            IntegratorArg::Rk4 => "rk4",
            IntegratorArg::Adaptive => "adaptive",
            IntegratorArg::Exact => "exact",
        };
        let i = Integrator::from_name(name, n, rtol).map_err(|e| match e {
            Error::InvalidParameter {
                field,
                value,
                expected,
            } => Error::invalid(format!("--{field}"), value, expected),
            other => other,
        })?;
        i.check(model).map_err(|e| match e {
            Error::InvalidParameter {
                value, expected, ..
            } => Error::invalid("--integrator", value, expected),
            other => other,
        })?;
        Ok(i)
    }

    /// The model's defaults overridden by every `--set NAME=VALUE`; unknown
    /// names and out-of-range values are one-line errors naming the parameter
    /// and its range.
    pub fn params(&self, model: Model) -> Result<Vec<f64>, Error> {
        let mut p = model.defaults();
        for item in &self.set {
            let (name, value) = parse_set(model, item)?;
            p[name] = value;
        }
        Ok(p)
    }
}

/// Parses one `NAME=VALUE` for `model`: the parameter's index and its value.
pub fn parse_set(model: Model, item: &str) -> Result<(usize, f64), Error> {
    let specs = model.params();
    let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
    let Some((name, value)) = item.split_once('=') else {
        return Err(Error::invalid(
            "--set",
            item,
            format!("NAME=VALUE with NAME one of {}", names.join(", ")),
        ));
    };
    let name = name.trim();
    let Some(j) = specs.iter().position(|s| s.name == name) else {
        return Err(Error::invalid(
            "--set",
            item,
            format!(
                "a parameter of {}: one of {}",
                model.name(),
                names.join(", ")
            ),
        ));
    };
    let field = format!("--set {}.{name}", model.name());
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| Error::invalid(&field, value, specs[j].range_text()))?;
    specs[j].check(&field, v)?;
    Ok((j, v))
}

/// The ODE flags are meaningless for the discrete map: say so instead of
/// ignoring them.
fn reject_ode_flags(a: &Args) -> Result<(), Error> {
    let given = [
        ("--integrator", a.ode.integrator.is_some()),
        ("--substeps", a.ode.substeps.is_some()),
        ("--rtol", a.ode.rtol.is_some()),
        ("--set", !a.ode.set.is_empty()),
        ("--pulse-width", a.pulse_width.is_some()),
        ("--rest", a.rest.is_some()),
        ("--v-scale", a.v_scale.is_some()),
    ];
    if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
        debug_assert!(
            a.ode.any() || a.pulse_width.is_some() || a.rest.is_some() || a.v_scale.is_some()
        );
        return Err(Error::invalid(
            *flag,
            "given with --model ddk",
            "only with a continuous-time model (--model ddk-ode|diffusive|linear-drift)",
        ));
    }
    Ok(())
}

/// `(spec, inputs, S, T)` of an ODE run: flags first (so a bad flag fails
/// before any file is read), then the input.
fn resolve_ode(a: &Args, model: Model) -> Result<(OdeSpec, Vec<f32>, usize, usize), Error> {
    if a.params.is_some() {
        return Err(Error::invalid(
            "--params",
            "given with an ODE model",
            "--set NAME=VALUE (parameter files are for --model ddk)",
        ));
    }
    if a.grad.is_some() {
        return Err(Error::invalid(
            "--grad",
            "given with an ODE model",
            "only with --model ddk (sensitivities of the discrete map)",
        ));
    }
    let mut params = a.ode.params(model)?;
    if model == Model::DdkOde {
        for (j, v, flag) in [(0, a.alpha, "--alpha"), (1, a.beta, "--beta")] {
            if let Some(v) = v {
                model.params()[j].check(flag, v)?;
                params[j] = v;
            }
        }
    } else if a.alpha.is_some() || a.beta.is_some() {
        return Err(Error::invalid(
            "--alpha/--beta",
            format!("given with --model {}", model.name()),
            "--set NAME=VALUE with the model's parameter names (see docs/models.md)",
        ));
    }
    let w0 = a.w0.unwrap_or(model.w0_spec().default);
    model.w0_spec().check("--w0", w0)?;
    let integrator = a.ode.integrator(model, IntegratorArg::Euler, 1)?;
    let pulse = PulseProtocol {
        v_scale: a.v_scale.unwrap_or(1.0),
        tau: a.pulse_width.unwrap_or(1.0),
        rest: a.rest.unwrap_or(0.0),
    };
    pulse.check().map_err(|e| {
        as_flags(
            e,
            &[
                ("pulse.v_scale", "--v-scale"),
                ("pulse.tau", "--pulse-width"),
                ("pulse.rest", "--rest"),
            ],
        )
    })?;
    if integrator == Integrator::Exact
        && !model.has_exact()
        && a.backend.backend == BackendChoice::Gpu
    {
        return Err(Error::invalid(
            "--integrator",
            "exact",
            format!(
                "one of {} with --backend gpu (model {} has no closed form)",
                memkin::engine::gpu::ode::GPU_INTEGRATORS,
                model.name()
            ),
        ));
    }
    if a.precision == Precision::F64 && a.backend.backend == BackendChoice::Gpu {
        return Err(Error::invalid(
            "precision",
            "f64",
            "f32 with --backend gpu (WGSL has no portable f64)",
        ));
    }
    let spec = OdeSpec {
        model,
        integrator,
        pulse,
        params,
        w0: vec![w0],
    };
    spec.check()?;
    let (x, seqs, steps) = read_sequences(&a.input)?;
    Ok((spec, x, seqs, steps))
}

/// `memkin simulate --model ddk-ode|diffusive|linear-drift`.
fn run_ode(a: Args, model: Model, mut out: Outputs) -> anyhow::Result<()> {
    let (spec, x, seqs, steps) = resolve_ode(&a, model)?;
    check_size(&a, 1, seqs, steps)?;
    // gpu: any adapter; auto: a hardware GPU unless f64 or exact was asked for.
    let auto_cpu = a.backend.backend == BackendChoice::Auto
        && (a.precision != Precision::F32 || spec.integrator == Integrator::Exact);
    let gpu = if auto_cpu {
        None
    } else {
        memkin::engine::select_gpu_context(a.backend.backend)?
    };
    // Either backend through the one Engine trait (the CPU runs the models
    // in f64, the reference).
    let engine: Box<dyn Engine> = match gpu {
        Some(ctx) => Box::new(GpuOdeEngine::new(std::sync::Arc::new(ctx))),
        None => Box::new(memkin::engine::cpu::CpuEngine::reference()),
    };
    let t0 = Instant::now();
    let transfer_before = engine.transfer();
    let mut f = memkin::batch::Features::default();
    let opts = RunOptions {
        chunk: a.chunk,
        ..Default::default()
    };
    engine
        .run_model_into(&x, seqs, steps, &spec, &opts, &mut f)
        .context("simulation failed")?;
    let transfer = engine.transfer().since(transfer_before);
    let info = engine.info();
    let seconds = t0.elapsed().as_secs_f64();
    let counts = f.status_counts();
    let t = f.steps;
    out.npy(&a.out, f.w, &[seqs, t])?;
    if let Some(sp) = &a.status {
        out.npy(sp, f.status, &[seqs])?;
    }
    out.commit()?;
    let names: Vec<&str> = model.params().iter().map(|p| p.name).collect();
    let params: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .zip(&spec.params)
        .map(|(n, v)| (n.to_string(), serde_json::json!(v)))
        .collect();
    let mut summary = run_summary(
        &info,
        seqs as u64,
        t,
        seconds,
        counts,
        a.common.seed(),
        &a.out,
    );
    let extra = serde_json::json!({
        "model": model.name(),
        "integrator": spec.integrator.name(),
        "substeps": a.ode.substeps.unwrap_or(1),
        "pulse": { "v_scale": spec.pulse.v_scale, "tau": spec.pulse.tau, "rest": spec.pulse.rest },
        "params": params,
        "w0": spec.w0[0],
        "transfer": transfer,
    });
    if let (Some(m), serde_json::Value::Object(e)) = (summary.as_object_mut(), extra) {
        m.extend(e);
    }
    if a.common.json {
        print_json(&summary);
    } else {
        eprintln!(
            "{seqs} trajectories x {t} pulses of {} ({}) on {} ({}) in {seconds:.3} s; ok {}, non-positive {}, non-finite {}",
            model.name(),
            spec.integrator.name(),
            info.adapter,
            info.backend,
            counts[0],
            counts[1],
            counts[2]
        );
    }
    Ok(())
}

/// The `--json` object of a simulation: backend, adapter, sizes, throughput
/// (trajectory-steps per second: one state produced per step), status counts.
fn run_summary(
    info: &memkin::engine::BackendInfo,
    trajectories: u64,
    t: usize,
    seconds: f64,
    counts: [usize; 3],
    seed: u64,
    out: &std::path::Path,
) -> serde_json::Value {
    let steps = trajectories * t as u64;
    serde_json::json!({
        "backend": info.backend,
        "precision": info.precision,
        "adapter": info.adapter,
        "adapter_type": info.adapter_type,
        "api": info.api,
        "trajectories": trajectories,
        "steps_per_trajectory": t,
        "steps": steps,
        "seconds": seconds,
        "steps_per_second": steps as f64 / seconds.max(1e-12),
        "status": { "ok": counts[0], "non_positive": counts[1], "non_finite": counts[2] },
        "seed": seed,
        "out": out,
    })
}
