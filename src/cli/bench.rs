//! `memkin bench`: trajectory-steps per second of each backend across sizes
//! (`--workload kinetics`), or end-to-end sweep points / Monte Carlo draws
//! per second on synthetic MNIST-shaped data (`--workload sweep|mc`), beside
//! the kernel-only figure of the same shape.

use super::{Common, print_json};
use memkin::Error;
use memkin::batch::Batch;
use memkin::bench::workloads::{self, Shape};
use memkin::bench::{BenchConfig, BenchResult, default_sizes, measure, workload};
use memkin::engine::Engine;
use memkin::engine::cpu::{CpuEngine, cpu_model};
use memkin::engine::gpu::{GpuContext, GpuEngine};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Which {
    Cpu,
    Gpu,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Workload {
    /// Trajectory-steps per second of the kinetics kernel alone.
    Kinetics,
    /// Sweep points per second: kinetics and a ridge readout per point.
    Sweep,
    /// Monte Carlo draws per second: device draws through a trained readout.
    Mc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Prec {
    F32,
    F64,
    All,
}

/// Arguments of `memkin bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Batch sizes (trajectories), comma-separated, e.g. 1e3,4e3,1.6e4
    /// (default: x4 from 1e3 up to 1.6e7 or what fits in half the free memory).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<String>,
    /// Steps per trajectory T.
    #[arg(long, default_value_t = 28)]
    steps: usize,
    /// Backends to measure.
    #[arg(long, value_enum, default_value = "all")]
    backend: Which,
    /// CPU precision(s) to measure (the GPU is f32).
    #[arg(long, value_enum, default_value = "all")]
    precision: Prec,
    /// Minimum timed runs per point.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Minimum seconds per point.
    #[arg(long, default_value_t = 1.0)]
    min_seconds: f64,
    /// Write bench.csv and scaling.png here (kinetics), or workload.csv (sweep, mc).
    #[arg(long)]
    out: Option<PathBuf>,
    /// What to measure.
    #[arg(long, value_enum, default_value = "kinetics")]
    workload: Workload,
    /// sweep, mc: training samples of the synthetic data set (test: half as many).
    #[arg(long, default_value_t = 256)]
    samples: usize,
    /// sweep, mc: sample shape ROWSxCOLS (rows become sequences, columns steps).
    #[arg(long, default_value = "28x28")]
    shape: String,
    /// sweep, mc: points (sweep) or draws (mc) per timed run.
    #[arg(long, default_value_t = 8)]
    points: usize,
}

/// `ROWSxCOLS`, each in 1 ..= 4096.
fn parse_shape(s: &str) -> Result<(usize, usize), Error> {
    let bad = || Error::invalid("--shape", s, "ROWSxCOLS, e.g. 28x28, each in 1 ..= 4096");
    let (r, c) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let r: usize = r.trim().parse().map_err(|_| bad())?;
    let c: usize = c.trim().parse().map_err(|_| bad())?;
    if !(1..=4096).contains(&r) || !(1..=4096).contains(&c) {
        return Err(bad());
    }
    Ok((r, c))
}

fn parse_size(s: &str) -> Result<usize, Error> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| Error::invalid("--sizes", s, "numbers such as 1000 or 1e6"))?;
    if !((1.0..=1e10).contains(&v) && v.fract() == 0.0) {
        return Err(Error::invalid("--sizes", s, "whole numbers in [1, 1e10]"));
    }
    Ok(v as usize)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.steps == 0 || a.steps >= 1 << 30 {
        return Err(Error::invalid("--steps", a.steps, "1 ..= 2^30 - 1").into());
    }
    if a.runs == 0 {
        return Err(Error::invalid("--runs", 0, "at least 1").into());
    }
    if a.workload != Workload::Kinetics {
        return run_workload(a);
    }
    let sizes = if a.sizes.is_empty() {
        default_sizes(a.steps)
    } else {
        a.sizes
            .iter()
            .map(|s| parse_size(s))
            .collect::<Result<_, _>>()?
    };
    // Each size's memory before anything is allocated: the inputs (f32) and
    // the features (up to f64) of every trajectory-step, and a status byte per
    // trajectory.
    for &n in &sizes {
        let needed =
            memkin::limits::product(&[n as u128, a.steps as u128, 4 + 8]).saturating_add(n as u128);
        memkin::limits::check_memory(format!("bench: --sizes {n} x --steps {}", a.steps), needed)?;
    }
    // The output paths checked before the work.
    let mut out = memkin::report::npy::Outputs::new();
    if let Some(dir) = &a.out {
        out.plan_in_dir("--out", dir, &["bench.csv", "scaling.png"])?;
    }
    let cfg = BenchConfig {
        min_runs: a.runs,
        min_seconds: a.min_seconds,
        max_runs: a.runs.max(50),
    };

    let (engines, adapter) = engines(&a)?;

    let mut results: Vec<BenchResult> = Vec::new();
    for &n in &sizes {
        let (x, params) = workload(n, a.steps, a.common.seed());
        let batch = Batch::new(&x, n, a.steps, &params)?;
        results.extend(measure_all(&engines, &batch, cfg, !a.common.json)?);
    }
    // GPU / best-CPU ratios per size, from this one run.
    let ratios: Vec<serde_json::Value> = sizes
        .iter()
        .filter_map(|&n| {
            let at = |b: &str, p: &str| {
                results
                    .iter()
                    .find(|r| r.trajectories == n && r.backend == b && r.precision == p)
                    .map(|r| r.steps_per_second)
            };
            let gpu = at("gpu", "f32")?;
            let cpu = at("cpu", "f32").or_else(|| at("cpu", "f64"))?;
            Some(serde_json::json!({"trajectories": n, "gpu_over_cpu_f32": gpu / cpu}))
        })
        .collect();
    let summary = serde_json::json!({
        "adapter": adapter,
        "cpu": {"model": cpu_model(), "threads": rayon::current_num_threads()},
        "steps": a.steps,
        "method": "warm-up run, then the median of repeated runs into reused output storage; each run is timed host to host (GPU synchronised inside); a step is one state w[k] produced",
        "results": results,
        "ratios": ratios,
        "transfer": total_transfer(&engines),
        "seed": a.common.seed(),
    });
    if let Some(dir) = &a.out {
        write_outputs(dir, &results, out)?;
    }
    if a.common.json {
        print_json(&summary);
    } else {
        for r in &ratios {
            eprintln!(
                "gpu / cpu-f32 at {}: {:.2}x",
                r["trajectories"],
                r["gpu_over_cpu_f32"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

fn write_outputs(
    dir: &std::path::Path,
    results: &[BenchResult],
    mut out: memkin::report::npy::Outputs,
) -> anyhow::Result<()> {
    let mut csv = String::from(
        "backend,precision,trajectories,steps,seconds,steps_per_second,kernel_seconds,kernel_steps_per_second,upload_seconds,download_seconds,runs\n",
    );
    let opt = |v: Option<f64>| v.map(|x| format!("{x:e}")).unwrap_or_default();
    for r in results {
        csv.push_str(&format!(
            "{},{},{},{},{:e},{:e},{},{},{},{},{}\n",
            r.backend,
            r.precision,
            r.trajectories,
            r.steps,
            r.seconds,
            r.steps_per_second,
            opt(r.kernel_seconds),
            opt(r.kernel_steps_per_second),
            opt(r.upload_seconds),
            opt(r.download_seconds),
            r.runs
        ));
    }
    out.text(&dir.join("bench.csv"), &csv)?;
    // Scaling plot: steps/s against trajectories, one line per backend (log-log);
    // GPU kernel-only throughput as its own line where timestamps exist.
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut add = |name: String, pt: (f64, f64)| match series.iter_mut().find(|(n, _)| *n == name) {
        Some((_, v)) => v.push(pt),
        None => series.push((name, vec![pt])),
    };
    for r in results {
        add(
            format!("{}-{}", r.backend, r.precision),
            (r.trajectories as f64, r.steps_per_second),
        );
        if let Some(k) = r.kernel_steps_per_second {
            add(
                format!("{}-{} kernel only", r.backend, r.precision),
                (r.trajectories as f64, k),
            );
        }
    }
    let steps = results.first().map_or(0, |r| r.steps);
    out.with_path(&dir.join("scaling.png"), |tmp| {
        memkin::report::plot::line_plot_png(
            tmp,
            &series,
            true,
            true,
            &format!("DDK throughput, T = {steps}"),
            "trajectories",
            "trajectory-steps per second",
        )
    })?;
    out.commit()?;
    Ok(())
}

/// The engines a bench measures (CPU f64, CPU f32, GPU, as chosen), each
/// with its GPU engine when it has one (for the kernel timings), and the
/// adapter's description.
type Engines = Vec<(Box<dyn Engine>, Option<Arc<GpuEngine>>)>;

fn engines(a: &Args) -> anyhow::Result<(Engines, serde_json::Value)> {
    let mut engines: Engines = Vec::new();
    if a.backend != Which::Gpu {
        if a.precision != Prec::F32 {
            engines.push((Box::new(CpuEngine::reference()), None));
        }
        if a.precision != Prec::F64 {
            engines.push((Box::new(CpuEngine::fast()), None));
        }
    }
    let mut adapter = serde_json::Value::Null;
    if a.backend != Which::Cpu {
        let ctx = Arc::new(GpuContext::new()?);
        let i = ctx.adapter_info();
        adapter = serde_json::json!({
            "name": i.name, "type": format!("{:?}", i.device_type), "backend": format!("{:?}", i.backend),
            "driver": format!("{} {}", i.driver, i.driver_info).trim(), "timestamps": ctx.has_timestamps(),
        });
        if ctx.is_software() && !a.common.json {
            eprintln!(
                "memkin: note: GPU adapter '{}' is a software rasteriser: its speed says nothing about a GPU",
                i.name
            );
        }
        let g = Arc::new(GpuEngine::new(ctx)?);
        engines.push((Box::new(g.clone()), Some(g)));
    }
    Ok((engines, adapter))
}

/// Bytes every engine of the bench moved, in total.
fn total_transfer(engines: &Engines) -> memkin::engine::Transfer {
    engines
        .iter()
        .map(|(e, _)| e.transfer())
        .fold(Default::default(), |a, b| a + b)
}

/// The kernel-only measurement of `batch` on every engine.
fn measure_all(
    engines: &Engines,
    batch: &Batch,
    cfg: BenchConfig,
    say: bool,
) -> anyhow::Result<Vec<BenchResult>> {
    let mut results = Vec::new();
    for (e, gpu) in engines {
        let timing = gpu.as_ref().map(|g| {
            let g = g.clone();
            move || {
                let t = g.last_timing();
                (t.kernel_s, t.upload_s, t.download_s)
            }
        });
        let r = measure(
            e.as_ref(),
            batch,
            cfg,
            timing
                .as_ref()
                .map(|f| f as &dyn Fn() -> (Option<f64>, f64, f64)),
        )?;
        if say {
            let kern = r
                .kernel_steps_per_second
                .map(|k| format!(", kernel {k:.3e} steps/s"))
                .unwrap_or_default();
            eprintln!(
                "{:>3} {:>3}  {:>10} x {}  {:.3e} steps/s  ({:.4} s median of {}){kern}",
                r.backend,
                r.precision,
                r.trajectories,
                r.steps,
                r.steps_per_second,
                r.seconds,
                r.runs
            );
        }
        results.push(r);
    }
    Ok(results)
}

/// `--workload sweep|mc`: end-to-end points or draws per second on each
/// backend, beside the kernel-only figure of the same batch shape (one
/// parameter set per point or draw over every sequence of the test side).
fn run_workload(a: Args) -> anyhow::Result<()> {
    let (rows, cols) = parse_shape(&a.shape)?;
    // At least 5 samples per class, so the validation side (a fifth) has one.
    if !(50..=1_000_000).contains(&a.samples) {
        return Err(Error::invalid("--samples", a.samples, "50 ..= 1000000").into());
    }
    if !(1..=4096).contains(&a.points) {
        return Err(Error::invalid("--points", a.points, "1 ..= 4096").into());
    }
    if !a.sizes.is_empty() {
        return Err(Error::invalid(
            "--sizes",
            a.sizes.join(","),
            "only with --workload kinetics (sweep and mc take --samples, --shape, --points)",
        )
        .into());
    }
    let shape = Shape {
        rows,
        cols,
        ..Shape::mnist(a.samples)
    };
    // Inputs of both sides and one feature map per point over them (f32),
    // before anything is allocated.
    let px = (shape.train + shape.test) as u128 * (rows * cols) as u128;
    memkin::limits::check_memory(
        format!(
            "bench: --samples {} x --shape {} x --points {}",
            a.samples, a.shape, a.points
        ),
        memkin::limits::product(&[px, a.points as u128 + 1, 4]),
    )?;
    let mut out = memkin::report::npy::Outputs::new();
    if let Some(dir) = &a.out {
        out.plan_in_dir("--out", dir, &["workload.csv"])?;
    }
    let cfg = BenchConfig {
        min_runs: a.runs,
        min_seconds: a.min_seconds,
        max_runs: a.runs.max(50),
    };
    let seed = a.common.seed();
    let ds = workloads::synthetic(shape, seed);
    let (engines, adapter) = engines(&a)?;
    let name = match a.workload {
        Workload::Sweep => "sweep",
        _ => "mc",
    };
    let mut results = Vec::new();
    for (e, gpu) in &engines {
        // The GPU's study path: reductions on the device, sharing the engine's
        // context (and so its byte counters).
        let reducer = gpu
            .as_ref()
            .map(|g| memkin::engine::gpu::GpuReducer::new(g.context().clone()))
            .transpose()?;
        let r = match a.workload {
            Workload::Sweep => workloads::sweep(e.as_ref(), reducer, &ds, a.points, seed, cfg)?,
            _ => {
                let boxed: Box<dyn Engine> = match gpu {
                    Some(g) => Box::new(g.clone()),
                    None => Box::new(CpuEngine::new(if e.info().precision == "f64" {
                        memkin::engine::Precision::F64
                    } else {
                        memkin::engine::Precision::F32
                    })),
                };
                workloads::monte_carlo(boxed, reducer, &ds, a.points, seed, cfg)?
            }
        };
        if !a.common.json {
            eprintln!(
                "{:>3} {:>3}  {name}: {} {} in {:.4} s: {:.3e} {}/s (median of {})",
                r.backend, r.precision, r.items, r.unit, r.seconds, r.per_second, r.unit, r.runs
            );
        }
        results.push(r);
    }
    // The kernel alone on the same shape: every sequence of the test side
    // under `points` parameter sets.
    let seqs = shape.test * rows;
    let (x, _) = workload(seqs, cols, seed);
    let params = memkin::batch::DeviceParams::scalar(&vec![(0.7, 1.0); a.points], 1.0)?;
    let batch = Batch::new(&x, seqs, cols, &params)?;
    let kernel = measure_all(&engines, &batch, cfg, !a.common.json)?;
    let summary = serde_json::json!({
        "workload": name,
        "adapter": adapter,
        "cpu": {"model": cpu_model(), "threads": rayon::current_num_threads()},
        "shape": shape,
        "method": "set-up (encoding, readout training for mc) outside the timed region; a warm-up run, then the median of repeated runs of one evaluator batch (all points or draws at once); kernel_only: the kinetics bench on the test side's sequences under as many parameter sets",
        "results": results,
        "kernel_only": kernel,
        "transfer": total_transfer(&engines),
        "seed": seed,
    });
    if let Some(dir) = &a.out {
        let mut csv = String::from(
            "workload,backend,precision,unit,items,seconds,per_second,host_to_device_bytes,device_to_host_bytes,runs\n",
        );
        for r in &results {
            csv.push_str(&format!(
                "{},{},{},{},{},{:e},{:e},{},{},{}\n",
                r.workload,
                r.backend,
                r.precision,
                r.unit,
                r.items,
                r.seconds,
                r.per_second,
                r.transfer.host_to_device_bytes,
                r.transfer.device_to_host_bytes,
                r.runs
            ));
        }
        out.text(&dir.join("workload.csv"), &csv)?;
        out.commit()?;
    }
    if a.common.json {
        print_json(&summary);
    }
    Ok(())
}
