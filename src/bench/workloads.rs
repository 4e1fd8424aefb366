//! End-to-end workloads of `memkin bench --workload sweep|mc`: sweep points
//! per second (the real [`SweepEvaluator`] with a ridge readout) and Monte
//! Carlo draws per second (the real [`McEvaluator`]), on synthetic data of
//! MNIST's shape by default, each backend measured the same way as the
//! kinetics bench ([`super::measure`]): set-up outside the timed region, one
//! warm-up, then the median of repeated runs.

use super::{BenchConfig, median};
use crate::Result;
use crate::data::Dataset;
use crate::engine::gpu::GpuReducer;
use crate::engine::{Engine, Transfer};
use crate::pipeline::{Protocol, Sides, VAL_FRACTION, encode_protocol};
use crate::readout::{ReadoutKind, TrainConfig};
use crate::study::kinetics::Kinetics;
use crate::study::montecarlo::{McEvaluator, McOptions};
use crate::study::plan::{Plan, Point};
use crate::study::runner::Evaluator;
use crate::study::spec::{McSpec, SweepSpec};
use crate::study::sweep::SweepEvaluator;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// The synthetic data set: `train` + `test` samples of `rows x cols` pixels
/// in [0, 1], `classes` labels (MNIST: 28 x 28, 10 classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// Training samples.
    pub train: usize,
    /// Test samples.
    pub test: usize,
    /// Rows per sample (sequences per sample under the rows encoding).
    pub rows: usize,
    /// Pixels per row (steps per sequence).
    pub cols: usize,
    /// Classes.
    pub classes: usize,
}

impl Shape {
    /// MNIST's sample shape with `train` training and `train / 2` test samples.
    pub fn mnist(train: usize) -> Self {
        Self {
            train,
            test: (train / 2).max(1),
            rows: 28,
            cols: 28,
            classes: 10,
        }
    }
}

/// A data set of `shape` named `mnist` (so the MNIST protocol applies): each
/// class brightens its own band of rows over uniform noise (a SplitMix64
/// stream of `seed`), so the readout has something to learn.
pub fn synthetic(shape: Shape, seed: u64) -> Dataset {
    let mut rng = crate::rng::SplitMix64::new(0xB0A7 ^ seed);
    let px = shape.rows * shape.cols;
    let mut side = |n: usize| {
        let y: Vec<u32> = (0..n).map(|i| (i % shape.classes) as u32).collect();
        let mut x = Vec::with_capacity(n * px);
        for &c in &y {
            for r in 0..shape.rows {
                let lit = r * shape.classes / shape.rows == c as usize;
                for _ in 0..shape.cols {
                    let u = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
                    x.push(if lit { 0.5 + 0.5 * u } else { 0.5 * u });
                }
            }
        }
        (x, y)
    };
    let (x_train, y_train) = side(shape.train);
    let (x_test, y_test) = side(shape.test);
    Dataset {
        name: "mnist".into(),
        x_train,
        y_train,
        x_test,
        y_test,
        sample_shape: vec![shape.rows, shape.cols],
        n_classes: shape.classes,
        class_names: (0..shape.classes).map(|c| c.to_string()).collect(),
        groups_train: None,
        groups_test: None,
    }
}

/// One end-to-end measurement.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadResult {
    /// `sweep` or `mc`.
    pub workload: String,
    /// `cpu` or `gpu`.
    pub backend: String,
    /// `f32` or `f64`.
    pub precision: String,
    /// `points` (sweep) or `draws` (mc).
    pub unit: String,
    /// Points or draws per timed run (one evaluator batch).
    pub items: usize,
    /// Median wall time of one run, seconds.
    pub seconds: f64,
    /// items / seconds.
    pub per_second: f64,
    /// Bytes the engine moved in one timed run.
    pub transfer: Transfer,
    /// Timed runs behind the median.
    pub runs: usize,
}

/// Times `eval.evaluate_many(points)` (one warm-up, then the median).
fn time_runs(
    eval: &mut dyn Evaluator,
    points: &[Point],
    cfg: BenchConfig,
) -> Result<(f64, Transfer, usize)> {
    eval.evaluate_many(points)?; // warm-up: pipelines, buffers, page faults
    let mut wall = Vec::new();
    let mut transfer = Transfer::default();
    let start = Instant::now();
    while wall.len() < cfg.max_runs
        && (wall.len() < cfg.min_runs || start.elapsed() < Duration::from_secs_f64(cfg.min_seconds))
    {
        let before = eval.transfer();
        let t0 = Instant::now();
        eval.evaluate_many(points)?;
        wall.push(t0.elapsed().as_secs_f64());
        transfer = eval.transfer().since(before);
    }
    Ok((median(&mut wall), transfer, wall.len()))
}

/// Sweep points per second: `points` points of an alpha x beta grid around
/// the paper's values, each a ridge readout trained on the fit side and
/// scored on the validation and test sides, all points of a run in one
/// evaluator batch (one engine run per side).
pub fn sweep(
    engine: &dyn Engine,
    reducer: Option<GpuReducer>,
    ds: &Dataset,
    points: usize,
    seed: u64,
    cfg: BenchConfig,
) -> Result<WorkloadResult> {
    let n = points.max(1);
    let text = format!(
        "dataset = \"mnist\"\nreadout = \"ridge\"\nseed = {seed}\n[grid]\nalpha = {{ linspace = [0.6, 0.8, {n}] }}\nbeta = {{ values = [1.0] }}\n"
    );
    let spec = SweepSpec::from_text(Path::new("bench-sweep.toml"), &text)?;
    let plan = Plan::sweep(&spec);
    let pts: Vec<Point> = (0..plan.len()).map(|i| plan.point(i)).collect();
    let proto = Protocol::for_dataset(&ds.name, &ds.sample_shape);
    let (train, test) = encode_protocol(ds, &proto)?;
    let sides = Sides::carve(&train, test, VAL_FRACTION, seed)?;
    let readout = TrainConfig {
        kind: ReadoutKind::Ridge,
        seed,
        ..TrainConfig::default()
    };
    let kinetics = Kinetics::resolve(None, engine, None)?;
    let mut eval = SweepEvaluator::new(kinetics, sides, ds.n_classes, readout, pts.len())?;
    // On a GPU the points are reduced on the device, as `memkin sweep` runs them.
    if let Some(r) = reducer {
        eval = eval.with_reducer(r);
    }
    let (seconds, transfer, runs) = time_runs(&mut eval, &pts, cfg)?;
    let info = engine.info();
    Ok(WorkloadResult {
        workload: "sweep".into(),
        backend: info.backend,
        precision: info.precision,
        unit: "points".into(),
        items: pts.len(),
        seconds,
        per_second: pts.len() as f64 / seconds,
        transfer,
        runs,
    })
}

/// Monte Carlo draws per second: `draws` draws of device-to-device
/// variability (the paper's sigma_alpha, sigma_beta, one device per channel)
/// through a ridge readout trained once on the nominal device (set-up, not
/// timed), all draws of a run in one evaluator batch.
pub fn monte_carlo(
    engine: Box<dyn Engine>,
    reducer: Option<GpuReducer>,
    ds: &Dataset,
    draws: usize,
    seed: u64,
    cfg: BenchConfig,
) -> Result<WorkloadResult> {
    let text = format!(
        "dataset = \"mnist\"\ndraws = {}\nseed = {seed}\nreadout = \"ridge\"\n[variability]\nsigma_alpha = 0.0955\nsigma_beta = 0.276\nper_channel = true\n",
        draws.max(1)
    );
    let spec = McSpec::from_text(Path::new("bench-mc.toml"), &text)?;
    let info = engine.info();
    let mut eval = McEvaluator::new(&spec, ds, engine, &McOptions::default())?;
    // On a GPU the draws run fused on the device, as `memkin mc` runs them.
    if let Some(r) = reducer {
        eval.set_reducer(r);
    }
    let plan = Plan::monte_carlo(&spec);
    let pts: Vec<Point> = (0..plan.len()).map(|i| plan.point(i)).collect();
    // All draws in one evaluator batch, as a study of this size runs them.
    let (seconds, transfer, runs) = time_runs(&mut eval, &pts, cfg)?;
    Ok(WorkloadResult {
        workload: "mc".into(),
        backend: info.backend,
        precision: info.precision,
        unit: "draws".into(),
        items: pts.len(),
        seconds,
        per_second: pts.len() as f64 / seconds,
        transfer,
        runs,
    })
}
