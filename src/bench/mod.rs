//! Throughput measurement shared by `memkin bench` and the criterion benches.
//!
//! Method: inputs and parameters are generated outside the timed region; one
//! warm-up run (pipeline compilation, buffer allocation, page faults); then
//! repeated runs into the same output storage until `min_runs` runs and
//! `min_seconds` have passed; the median is reported. Each timed run ends only
//! when the results are back in host memory (the GPU is synchronised inside
//! the timed region). A trajectory-step is one state `w[k]` produced: one input
//! read (4 B) and one state written (4 B).
//!
//! [`workloads`]: the end-to-end figures (sweep points and Monte Carlo draws
//! per second) beside the kernel-only one.

pub mod workloads;

use crate::Result;
use crate::batch::{Batch, DeviceParams, Features};
use crate::engine::{Engine, RunOptions, Transfer};
use serde::Serialize;
use std::time::{Duration, Instant};

/// One measured point.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    /// `cpu` or `gpu`.
    pub backend: String,
    /// `f32` or `f64`.
    pub precision: String,
    /// Trajectories in the batch.
    pub trajectories: usize,
    /// Steps per trajectory (T).
    pub steps: usize,
    /// Median wall time of one run, seconds (host to host).
    pub seconds: f64,
    /// trajectories * steps / seconds.
    pub steps_per_second: f64,
    /// Median kernel time from GPU timestamps (None on the CPU, or without timestamps).
    pub kernel_seconds: Option<f64>,
    /// trajectories * steps / kernel_seconds.
    pub kernel_steps_per_second: Option<f64>,
    /// Median host-to-device time (GPU), seconds.
    pub upload_seconds: Option<f64>,
    /// Median device-to-host time (GPU), seconds.
    pub download_seconds: Option<f64>,
    /// Timed runs behind the median.
    pub runs: usize,
    /// Bytes the engine moved in one timed run (zero on the CPU).
    pub transfer: Transfer,
}

/// How long to measure each point.
#[derive(Clone, Copy, Debug)]
pub struct BenchConfig {
    /// At least this many timed runs.
    pub min_runs: usize,
    /// And at least this much time.
    pub min_seconds: f64,
    /// At most this many runs.
    pub max_runs: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            min_runs: 5,
            min_seconds: 1.0,
            max_runs: 50,
        }
    }
}

/// The benchmark workload: `n` sequences of `t` uniform inputs in [0, 1)
/// (a SplitMix64 stream of `seed`; `memkin bench --seed`) under alpha = 0.7, beta = 1.0 (the paper's learned
/// MNIST values: stable for x in [0, 1]).
pub fn workload(n: usize, t: usize, seed: u64) -> (Vec<f32>, DeviceParams) {
    let mut rng = crate::rng::SplitMix64::new(0x5EED ^ seed);
    let x = (0..n * t)
        .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
        .collect();
    let params = DeviceParams::scalar(&[(0.7, 1.0)], 1.0).expect("valid constants");
    (x, params)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

/// Measures `engine` on `batch`. `gpu_timing` returns the engine's last
/// (kernel, upload, download) seconds when it has them.
pub fn measure(
    engine: &dyn Engine,
    batch: &Batch,
    cfg: BenchConfig,
    gpu_timing: Option<&dyn Fn() -> (Option<f64>, f64, f64)>,
) -> Result<BenchResult> {
    let opts = RunOptions::default();
    let mut out = Features::default();
    engine.run_into(batch, &opts, &mut out)?; // warm-up
    let (mut wall, mut kern, mut up, mut down) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut transfer = Transfer::default();
    let start = Instant::now();
    while wall.len() < cfg.max_runs
        && (wall.len() < cfg.min_runs || start.elapsed() < Duration::from_secs_f64(cfg.min_seconds))
    {
        let before = engine.transfer();
        let t0 = Instant::now();
        engine.run_into(batch, &opts, &mut out)?;
        wall.push(t0.elapsed().as_secs_f64());
        transfer = engine.transfer().since(before);
        if let Some(f) = gpu_timing {
            let (k, u, d) = f();
            if let Some(k) = k {
                kern.push(k);
            }
            up.push(u);
            down.push(d);
        }
    }
    let info = engine.info();
    let steps_total = (batch.trajectories() * batch.steps()) as f64;
    let seconds = median(&mut wall);
    let kernel_seconds = (!kern.is_empty()).then(|| median(&mut kern));
    Ok(BenchResult {
        backend: info.backend,
        precision: info.precision,
        trajectories: batch.trajectories(),
        steps: batch.steps(),
        seconds,
        steps_per_second: steps_total / seconds,
        kernel_seconds,
        kernel_steps_per_second: kernel_seconds.map(|k| steps_total / k.max(1e-12)),
        upload_seconds: (!up.is_empty()).then(|| median(&mut up)),
        download_seconds: (!down.is_empty()).then(|| median(&mut down)),
        runs: wall.len(),
        transfer,
    })
}

/// Available memory in bytes (MemAvailable), if known.
pub fn available_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The default sizes: 1e3, 4e3, 1.6e4, ... (x4) up to 1.6e7 or the largest whose
/// inputs and outputs (8 B per step, twice for the GPU's staging) fit in half
/// the available memory.
pub fn default_sizes(steps: usize) -> Vec<usize> {
    let budget = available_memory().unwrap_or(8 << 30) / 2;
    let mut v = Vec::new();
    let mut n = 1000usize;
    while n <= 16_384_000 && (n as u64) * steps as u64 * 16 <= budget {
        v.push(n);
        n *= 4;
    }
    v
}
