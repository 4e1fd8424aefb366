//! Readout training throughput: ridge closed form and one MLP epoch at MNIST
//! size (60000 x 784 -> 48 -> 10). `MEMKIN_BENCH_QUICK=1` shrinks every size
//! so the bench runs in seconds as a smoke test.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use memkin::readout::{ReadoutKind, Rng, TrainConfig, Trainer, train};

/// Small sizes when MEMKIN_BENCH_QUICK=1, or when run as a test (`cargo test`
/// runs each bench once without `--bench`): a smoke test of every bench.
fn quick() -> bool {
    std::env::var("MEMKIN_BENCH_QUICK").is_ok_and(|v| v == "1")
        || !std::env::args().any(|a| a == "--bench")
}

/// Random features in [0, 1) with labels that depend on them (so training does
/// real work), set up outside the timed region.
fn data(n: usize, f: usize, c: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..n * f).map(|_| rng.next_f64() as f32).collect();
    let y = x
        .chunks_exact(f)
        .map(|r| ((r[0] + r[1]) * c as f32 / 2.0) as u32 % c as u32)
        .collect();
    (x, y)
}

fn ridge(cr: &mut Criterion) {
    let (n, f) = if quick() { (1000, 100) } else { (10_000, 784) };
    let (x, y) = data(n, f, 10, 1);
    let cfg = TrainConfig {
        kind: ReadoutKind::Ridge,
        ..TrainConfig::default()
    };
    let mut g = cr.benchmark_group("readout_ridge");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(if quick() { 200 } else { 2000 }))
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 5 }))
        .throughput(Throughput::Elements(n as u64));
    g.bench_function(format!("fit_{n}x{f}"), |b| {
        b.iter(|| black_box(train(&x, n, f, &y, 10, &cfg, None).unwrap()))
    });
    g.finish();
}

fn mlp_epoch(cr: &mut Criterion) {
    let (n, f) = if quick() { (2000, 784) } else { (60_000, 784) };
    let (x, y) = data(n, f, 10, 2);
    let cfg = TrainConfig {
        kind: ReadoutKind::Mlp,
        hidden: vec![48],
        epochs: 1,
        val_fraction: 0.0,
        ..TrainConfig::default()
    };
    let mut g = cr.benchmark_group("readout_mlp");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(if quick() { 200 } else { 2000 }))
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 10 }))
        .throughput(Throughput::Elements(n as u64));
    g.bench_function(format!("epoch_{n}x{f}_48_10_batch64"), |b| {
        b.iter(|| black_box(train(&x, n, f, &y, 10, &cfg, None).unwrap()))
    });
    // Steady state: one pass of Trainer::train_step over the rows in order,
    // without train()'s one-off set-up (split, standardiser fit, copies).
    g.bench_function(format!("trainer_steps_{n}x{f}_48_10_batch64"), |b| {
        let mut t = Trainer::new(&cfg, f, 10, None).unwrap();
        b.iter(|| {
            for (xb, yb) in x.chunks(64 * f).zip(y.chunks(64)) {
                black_box(t.train_step(xb, yb).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    // No plots: the HTML report needs system fonts that CI machines lack.
    config = Criterion::default().without_plots();
    targets = ridge, mlp_epoch
}
criterion_main!(benches);
