//! DDK throughput of each engine: trajectory-steps per second.
//!
//! `cargo bench --bench engine` measures cpu-f64 (the reference), cpu-f32 (the
//! fast path) and gpu (any wgpu adapter, lavapipe included) on the workload of
//! `memkin bench` ([`memkin::bench::workload`]: uniform inputs, alpha = 0.7,
//! beta = 1.0). Inputs, the engine and the output storage are built outside the
//! timed region; each timed iteration is one `Engine::run_into` into reused
//! storage, which returns only when the states are back in host memory (the GPU
//! is synchronised inside). Throughput is reported per trajectory-step.
//!
//! Environment:
//! - `MEMKIN_BENCH_QUICK=1`, or running under `cargo test` (the benches are
//!   `test = true` targets: criterion runs each once), shrinks the sizes so
//!   the run takes seconds: a smoke test of every bench.
//! - With no GPU adapter the gpu group is skipped with a note on stderr; with
//!   `MEMKIN_REQUIRE_GPU=1` a missing adapter is a failure.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use memkin::batch::{Batch, Features};
use memkin::bench::workload;
use memkin::engine::cpu::CpuEngine;
use memkin::engine::gpu::{GpuContext, GpuEngine};
use memkin::engine::{Engine, RunOptions};
use std::sync::Arc;
use std::time::Duration;

/// Steps per trajectory: one MNIST row (the paper's image encoding).
const STEPS: usize = 28;

/// Small sizes when MEMKIN_BENCH_QUICK=1, or when run as a test (`cargo test`
/// runs each bench once without `--bench`): a smoke test of every bench.
fn quick() -> bool {
    std::env::var("MEMKIN_BENCH_QUICK").is_ok_and(|v| v == "1")
        || !std::env::args().any(|a| a == "--bench")
}

/// Trajectory counts: a cache-resident batch and a memory-bound one.
fn sizes() -> Vec<usize> {
    if quick() {
        vec![1_000, 10_000]
    } else {
        vec![100_000, 1_000_000]
    }
}

/// The GPU engine, or None (with a note) when there is no adapter and the
/// environment does not require one.
fn gpu_engine() -> Option<GpuEngine> {
    match GpuContext::new() {
        Ok(ctx) => {
            if ctx.is_software() {
                eprintln!(
                    "note: GPU adapter '{}' is a software rasteriser (CPU): its figures say nothing about a GPU",
                    ctx.adapter_info().name
                );
            }
            Some(GpuEngine::new(Arc::new(ctx)).expect("the DDK pipeline compiles"))
        }
        Err(e) => {
            if std::env::var("MEMKIN_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("MEMKIN_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("skipped: gpu benches (no GPU adapter: {e})");
            None
        }
    }
}

/// One benchmark group: `engine` on every size.
fn bench_engine(c: &mut Criterion, name: &str, engine: &dyn Engine) {
    let mut group = c.benchmark_group(format!("ddk/{name}"));
    if !quick() {
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(5));
    }
    let opts = RunOptions::default();
    for n in sizes() {
        let (x, params) = workload(n, STEPS, 0);
        let batch = Batch::new(&x, n, STEPS, &params).expect("valid workload");
        let mut out = Features::default();
        // Allocates the output (and warms pipelines and buffers) untimed.
        engine
            .run_into(&batch, &opts, &mut out)
            .expect("engine runs");
        group.throughput(Throughput::Elements((n * STEPS) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &batch, |b, batch| {
            b.iter(|| {
                engine
                    .run_into(batch, &opts, &mut out)
                    .expect("engine runs")
            })
        });
    }
    group.finish();
}

fn ddk(c: &mut Criterion) {
    bench_engine(c, "cpu-f64", &CpuEngine::reference());
    bench_engine(c, "cpu-f32", &CpuEngine::fast());
    if let Some(gpu) = gpu_engine() {
        bench_engine(c, "gpu", &gpu);
    }
}

criterion_group!(benches, ddk);
criterion_main!(benches);
