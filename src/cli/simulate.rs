//! `memkin simulate`: integrate the DDK map over a `.npy` of sequences.

use super::{BackendArg, Common, print_json};
use anyhow::Context;
use memkin::Error;
use memkin::batch::{Batch, DeviceParams};
use memkin::data::npy::read_npy_f32 as read_f32;
use memkin::engine::{Precision, RunOptions, select};
use memkin::report::npy::Outputs;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `memkin simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    backend: BackendArg,
    /// Input sequences: .npy of shape [S, T], float32 or float64.
    #[arg(long)]
    input: PathBuf,
    /// One scalar alpha (with --beta), > 0.
    #[arg(
        long,
        requires = "beta",
        conflicts_with = "params",
        allow_hyphen_values = true
    )]
    alpha: Option<f64>,
    /// One scalar beta (with --alpha), > 0.
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
    /// Initial state w[0], > 0.
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    w0: f64,
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
    let (x, shape) = read_f32(&a.input)?;
    if shape.len() != 2 {
        return Err(Error::bad_file(
            &a.input,
            format!("shape {shape:?}: expected [S, T] (rank 2)"),
        ));
    }
    let (seqs, steps) = (shape[0], shape[1]);
    if seqs == 0 || steps == 0 {
        return Err(Error::bad_file(
            &a.input,
            format!("shape {shape:?}: expected S >= 1 and T >= 1"),
        ));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::bad_file(
            &a.input,
            format!(
                "element [{}, {}] is {}: expected finite values (normally in [0, 1])",
                i / steps,
                i % steps,
                x[i]
            ),
        ));
    }
    if !(a.w0.is_finite() && a.w0 > 0.0) {
        return Err(Error::invalid("--w0", a.w0, "finite and > 0"));
    }
    if a.chunk == Some(0) {
        return Err(Error::invalid("--chunk", 0, "at least 1"));
    }
    let (params, keep) = match (&a.params, a.alpha, a.beta) {
        (Some(p), _, _) => {
            let (v, shape) = read_f32(p)?;
            let named = |e: Error| match e {
                Error::InvalidParameter {
                    field,
                    value,
                    expected,
                } => Error::bad_file(p, format!("{field} = {value}: {expected}")),
                other => other,
            };
            match shape.as_slice() {
                [n, 2] => {
                    let pairs: Vec<(f64, f64)> = (0..*n)
                        .map(|i| (v[2 * i] as f64, v[2 * i + 1] as f64))
                        .collect();
                    (DeviceParams::scalar(&pairs, a.w0).map_err(named)?, true)
                }
                [n, 2, t] => {
                    if *t != steps {
                        return Err(Error::bad_file(
                            p,
                            format!(
                                "shape {shape:?}: per-step T = {t} but the input has T = {steps}"
                            ),
                        ));
                    }
                    let mut al = Vec::with_capacity(n * t);
                    let mut be = Vec::with_capacity(n * t);
                    for i in 0..*n {
                        al.extend(v[i * 2 * t..i * 2 * t + t].iter().map(|&z| z as f64));
                        be.extend(v[i * 2 * t + t..(i + 1) * 2 * t].iter().map(|&z| z as f64));
                    }
                    (
                        DeviceParams::per_step(*n, *t, al, be, a.w0).map_err(named)?,
                        true,
                    )
                }
                _ => {
                    return Err(Error::bad_file(
                        p,
                        format!("shape {shape:?}: expected [P, 2] or [P, 2, T]"),
                    ));
                }
            }
        }
        (None, Some(al), Some(be)) => {
            let named = |field: &str, v: f64| {
                if v.is_finite() && v > 0.0 {
                    Ok(())
                } else {
                    Err(Error::invalid(field, v, "finite and > 0"))
                }
            };
            named("--alpha", al)?;
            named("--beta", be)?;
            (DeviceParams::scalar(&[(al, be)], a.w0)?, false)
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

pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = resolve(&a)?;
    let engine = select(a.backend.backend, a.precision)?;
    let batch = Batch::new(&cfg.x, cfg.seqs, cfg.steps, &cfg.params)?;
    let opts = RunOptions {
        sensitivities: a.grad.is_some(),
        chunk: a.chunk,
        noise: None,
    };
    let t0 = Instant::now();
    let f = engine.run(&batch, &opts).context("simulation failed")?;
    let seconds = t0.elapsed().as_secs_f64();

    let (p, s, t) = (f.sets, f.seqs, f.steps);
    let lead: Vec<usize> = if cfg.keep_sets_axis {
        vec![p, s]
    } else {
        vec![s]
    };
    let counts = f.status_counts();
    let mut out = Outputs::new();
    out.npy(&a.out, f.w, &[lead.clone(), vec![t]].concat())?;
    if let Some(sp) = &a.status {
        out.npy(sp, f.status, &lead)?;
    }
    if let (Some(gp), Some(g)) = (&a.grad, f.grad) {
        out.npy(gp, g, &[lead.clone(), vec![t, 2]].concat())?;
    }
    out.commit()?;

    let info = engine.info();
    let trajectories = (p * s) as u64;
    let steps = trajectories * t as u64;
    let summary = serde_json::json!({
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
        "seed": a.common.seed,
        "out": a.out,
    });
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
