//! The on-device consumers of the features (`shaders/moments.wgsl`,
//! `shaders/forward.wgsl`, `shaders/count_bad.wgsl` through
//! `engine::gpu::GpuReducer`) against their CPU twins, the ridge weights
//! they give on the full MNIST training set against the f64 path, and
//! `memkin sweep --backend gpu` against `--backend cpu`.

use std::path::Path;
use std::process::Command;

use memkin::batch::{Batch, DeviceParams};
use memkin::engine::cpu::CpuEngine;
use memkin::engine::gpu::moments::{MapParams, SideInputs};
use memkin::engine::gpu::{GpuEngine, GpuReducer};
use memkin::engine::{Engine, Precision, RunOptions};
use memkin::readout::{
    LinearReadout, Model, ReadoutKind, RidgeMoments, Rng, TrainConfig, forward_correct, train,
};

use crate::common;

const SPP: usize = 2;
const T: usize = 6;
const F: usize = SPP * T;
const C: usize = 3;

/// Three sets: two stable, one that diverges on large inputs (beta x > 2 sqrt(alpha)).
fn params() -> MapParams {
    MapParams {
        alpha: vec![0.7, 0.4, 0.143],
        beta: vec![1.0, 0.3, 0.838],
        w0: vec![1.0, 1.0, 1.0],
    }
}

fn inputs(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let x = (0..n * F).map(|_| rng.next_f64() as f32).collect();
    let y = (0..n).map(|i| ((i * 7) % C) as u32).collect();
    (x, y)
}

/// The DDK states `[P, n * SPP, T]` and statuses of `engine` (the GPU engine
/// runs the same kernel the reducer fuses, so the twins see the same bits).
fn features(engine: &dyn Engine, x: &[f32], n: usize) -> (Vec<f32>, Vec<u8>) {
    let p = params();
    let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
    let dp = DeviceParams::new(3, 1, None, f64s(&p.alpha), f64s(&p.beta), f64s(&p.w0)).unwrap();
    let b = Batch::new(x, n * SPP, T, &dp).unwrap();
    let f = engine.run(&b, &RunOptions::default()).unwrap();
    (f.w, f.status)
}

fn reducers() -> Vec<(&'static str, GpuReducer)> {
    let ctx = common::gpu_context();
    vec![
        ("default tiles", GpuReducer::new(ctx.clone()).unwrap()),
        // 5 samples per tile: sizes 63..65 run 13-14 tiles, size 1 one.
        (
            "5-sample tiles",
            GpuReducer::new(ctx).unwrap().with_tile_samples(5),
        ),
    ]
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn gpu_moments_match_the_cpu_twin_at_sizes_1_63_64_65_with_tiny_tiles() {
    let gpu = GpuEngine::new(common::gpu_context()).unwrap();
    let cpu = CpuEngine::new(Precision::F32);
    for n in [1usize, 63, 64, 65] {
        let (x, y) = inputs(n, n as u64);
        let (w, _) = features(&gpu, &x, n);
        let (_, cpu_status) = features(&cpu, &x, n);
        for (label, red) in reducers() {
            let side = SideInputs {
                x: &x,
                spp: SPP,
                steps: T,
                y: &y,
            };
            let got = red.moments(&side, &params(), C).unwrap();
            let g = F + C;
            for p in 0..3 {
                let seqs = n * SPP;
                let want_bad = cpu_status[p * seqs..(p + 1) * seqs]
                    .iter()
                    .filter(|&&s| s != 0)
                    .count() as u64;
                assert_eq!(
                    got.bad[p], want_bad,
                    "{label}, n = {n}, set {p}: failed trajectories"
                );
                let wp = &w[p * n * F..(p + 1) * n * F];
                if want_bad > 0 {
                    continue; // NaN states: the point gets NaN, its moments are unused
                }
                assert_eq!(
                    &got.shift[p * F..(p + 1) * F],
                    &wp[..F],
                    "shift = first sample"
                );
                let mut twin = RidgeMoments::new(F, C, wp[..F].to_vec()).unwrap();
                twin.accumulate(wp, n, &y, false).unwrap();
                // The rows the device sums: x - shift rounded to f32.
                let rows: Vec<f32> = wp
                    .chunks_exact(F)
                    .flat_map(|r| r.iter().zip(&wp[..F]).map(|(x, s)| x - s))
                    .collect();
                let mut exact = RidgeMoments::new(F, C, vec![0.0; F]).unwrap();
                exact.accumulate(&rows, n, &y, false).unwrap();
                let dev = RidgeMoments::from_augmented(
                    F,
                    C,
                    got.shift[p * F..(p + 1) * F].to_vec(),
                    &got.augmented[p * g * g..(p + 1) * g * g],
                )
                .unwrap();
                for i in 0..g {
                    for j in 0..=i {
                        let (a, b) = (dev.at(i, j), twin.at(i, j));
                        // What differs is x - shift rounded to f32 (the twin
                        // subtracts in f64): |d(a_i a_j)| <= 2^-23 |a_i a_j|, so at
                        // most 2^-23 sum|a_i a_j| <= 1.2e-7 sqrt(G_ii G_jj) (Cauchy-
                        // Schwarz); the sums themselves are checked below.
                        let tol = 2e-7 * (twin.at(i, i) * twin.at(j, j)).sqrt() + 1e-30;
                        assert!(
                            (a - b).abs() <= tol,
                            "{label}, n = {n}, set {p}, entry ({i}, {j}): gpu {a} vs cpu {b} (tol {tol:e})"
                        );
                        if i >= F && j >= F {
                            assert_eq!(a, b, "class counts are exact");
                        }
                        // On the device's own f32 rows x - shift, its products
                        // and compensated sums are exact to ~2^-40 (f64 twin:
                        // ~1e-15): 1e-10 leaves room. The old kernel (f32
                        // products, 16-row f32 partials) fails this (~1e-7).
                        let b = exact.at(i, j);
                        let tol = 1e-10 * (exact.at(i, i) * exact.at(j, j)).sqrt() + 1e-30;
                        assert!(
                            (a - b).abs() <= tol,
                            "{label}, n = {n}, set {p}, entry ({i}, {j}): gpu {a} vs exact sums {b} (tol {tol:e})"
                        );
                    }
                }
            }
        }
    }
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn gpu_forward_counts_match_the_cpu_twin_at_sizes_1_63_64_65_with_tiny_tiles() {
    let gpu = GpuEngine::new(common::gpu_context()).unwrap();
    let mut rng = Rng::new(11);
    let mut rnd = |k: usize, s: f64| -> Vec<f32> {
        (0..k)
            .map(|_| ((rng.next_f64() - 0.5) * s) as f32)
            .collect()
    };
    // Per-set readouts of their own (as Monte Carlo draws carry noisy weights).
    let readouts: Vec<LinearReadout> = (0..3)
        .map(|_| LinearReadout {
            f: F,
            c: C,
            mean: rnd(F, 2.0),
            scale: rnd(F, 4.0),
            weights: rnd(F * C, 2.0),
            bias: rnd(C, 1.0),
        })
        .collect();
    let arrays = memkin::study::reduce::stack_readouts(F, C, &readouts);
    for n in [1usize, 63, 64, 65] {
        let (x, y) = inputs(n, 100 + n as u64);
        let (w, status) = features(&gpu, &x, n);
        for (label, red) in reducers() {
            let side = SideInputs {
                x: &x,
                spp: SPP,
                steps: T,
                y: &y,
            };
            let got = red.forward(&side, &params(), &arrays).unwrap();
            for p in 0..3 {
                let seqs = n * SPP;
                let bad = status[p * seqs..(p + 1) * seqs]
                    .iter()
                    .filter(|&&s| s != 0)
                    .count();
                assert_eq!(got.bad[p], bad as u64, "{label}, n = {n}, set {p}");
                if bad > 0 {
                    continue;
                }
                // Same f32 operations in the same order on the same states: equal
                // counts (a flip needs two scores equal to ~1e-7; none here).
                let want = forward_correct(&readouts[p], &w[p * n * F..(p + 1) * n * F], n, &y);
                assert_eq!(
                    got.correct[p], want as u64,
                    "{label}, n = {n}, set {p}: correct"
                );
            }
        }
    }
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn ridge_from_gpu_moments_matches_the_f64_ridge_on_the_full_mnist_training_set() {
    let ds = memkin::data::load("mnist", Some(&common::data_dir())).unwrap();
    let proto = memkin::pipeline::Protocol::for_dataset(&ds.name, &ds.sample_shape);
    let (side, _) = memkin::pipeline::encode_protocol(&ds, &proto).unwrap();
    let e = &side.encoded;
    let (n, f, c) = (side.n(), side.n_features(), ds.n_classes);
    assert_eq!((n, f), (60000, 784));
    let params = MapParams {
        alpha: vec![0.7],
        beta: vec![1.0],
        w0: vec![1.0],
    };
    // Reference: the GPU's own states downloaded, then today's f64 ridge.
    let dp = DeviceParams::new(1, 1, None, vec![0.7], vec![1.0], vec![1.0]).unwrap();
    let feats = GpuEngine::new(common::gpu_context())
        .unwrap()
        .run(
            &Batch::new(&e.x, e.seqs, e.steps, &dp).unwrap(),
            &RunOptions::default(),
        )
        .unwrap();
    let cfg = TrainConfig {
        kind: ReadoutKind::Ridge,
        ..TrainConfig::default()
    };
    let want = train(&feats.w, n, f, &side.y, c, &cfg, None).unwrap();
    let red = GpuReducer::new(common::gpu_context()).unwrap();
    let inputs = SideInputs {
        x: &e.x,
        spp: e.seqs_per_sample,
        steps: e.steps,
        y: &side.y,
    };
    let mom = red.moments(&inputs, &params, c).unwrap();
    assert_eq!(mom.bad, vec![0]);
    let got = RidgeMoments::from_augmented(f, c, mom.shift.clone(), &mom.augmented)
        .unwrap()
        .train(&cfg)
        .unwrap();
    // The f64 twin on the same states: what the device's f32 sums are judged against.
    let mut twin = RidgeMoments::new(f, c, mom.shift.clone()).unwrap();
    twin.accumulate(&feats.w, n, &side.y, true).unwrap();
    let twin = twin.train(&cfg).unwrap();
    let weights = |t: &memkin::readout::Trained| match &t.model {
        Model::Ridge(r) => r.weights.clone(),
        Model::Net(_) => panic!("ridge readout"),
    };
    let (wg, wr, wt) = (weights(&got), weights(&want), weights(&twin));
    let wmax = wt.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = |u: &[f64]| {
        u.iter()
            .zip(&wt)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
            / wmax
    };
    let (gpu_err, ref_err) = (worst(&wg), worst(&wr));
    let scores = |t: &memkin::readout::Trained| t.scores(&feats.w, n);
    let st = scores(&twin);
    let score_err = |t: &memkin::readout::Trained| {
        scores(t)
            .iter()
            .zip(&st)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max)
    };
    let (gpu_s, ref_s) = (score_err(&got), score_err(&want));
    let dropped = |t: &memkin::readout::Trained| {
        t.standardizer
            .as_ref()
            .unwrap()
            .std
            .iter()
            .filter(|&&v| v == 0.0)
            .count()
    };
    eprintln!(
        "full MNIST vs the f64 twin: weights (relative to the largest, {wmax:.3e}) gpu {gpu_err:.3e}, today's path {ref_err:.3e}; decision values gpu {gpu_s:.3e}, today's path {ref_s:.3e}; dropped features {} {} {}",
        dropped(&got),
        dropped(&want),
        dropped(&twin)
    );
    assert_eq!(
        dropped(&got),
        dropped(&twin),
        "the same constant features dropped"
    );
    assert_eq!(
        dropped(&want),
        dropped(&twin),
        "the same constant features dropped"
    );
    let agree = got
        .predict(&feats.w, n)
        .iter()
        .zip(twin.predict(&feats.w, n))
        .filter(|(p, q)| **p == *q)
        .count();
    eprintln!("predictions agree on {agree} of {n}");
    // (G + I) is ill-conditioned on MNIST's standardised rows, so small
    // perturbations of the Gram move single weights far more than the
    // decision values. Today's path (f32-rounded standardised rows, f64 Gram)
    // sits 1.8e-6 (weights, of the largest) and 4.3e-6 (decision values) from
    // the f64 twin. The device's exact products in compensated f32 sums
    // measured 1.7e-6 and 3.6e-6 on lavapipe, 60000 of 60000 predictions
    // alike (f32-rounded products summed 16 rows at a time in f32, before:
    // 1.5e-3, 3.2e-3, 59999). Bounds: 3x those, and at most 0.01% of the
    // training images classified differently (ties within 1e-5 of the
    // decision). The moments solve itself reproduces today's path (f64 twin
    // vs train; measured 1.8e-6 and 4.3e-6).
    assert!(
        ref_err <= 1e-4 && ref_s <= 1e-4,
        "today's path vs the twin: {ref_err:e}, {ref_s:e}"
    );
    assert!(
        gpu_err <= 5e-6,
        "gpu weights off by {gpu_err:e} of the largest"
    );
    assert!(gpu_s <= 1.1e-5, "decision values differ by {gpu_s:e}");
    assert!(
        agree >= n - n / 10000,
        "predictions agree on {agree} of {n} training images"
    );
}

fn memkin(args: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_memkin"))
        .args(args)
        .env("MEMKIN_DATA", common::data_dir())
        .output()
        .expect("memkin runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("--json prints one object")
}

/// `(train, val, test accuracy, diverged fraction)` per row of results.csv.
fn accuracies(dir: &Path) -> Vec<[f64; 4]> {
    let text = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let cols = [
        col("train_accuracy"),
        col("val_accuracy"),
        col("test_accuracy"),
        col("diverged_fraction"),
    ];
    lines
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            cols.map(|k| v[k].parse().unwrap())
        })
        .collect()
}

/// Runs `spec` on both backends; returns (cpu rows, gpu rows, gpu --json,
/// the sizes of the fit, validation and test sides from the manifest).
fn both(spec: &str, dir: &Path) -> (Vec<[f64; 4]>, Vec<[f64; 4]>, serde_json::Value, [usize; 3]) {
    let path = dir.join("spec.toml");
    std::fs::write(&path, spec).unwrap();
    let run = |b: &str| {
        let out = dir.join(b);
        let j = memkin(&[
            "sweep",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--backend",
            b,
            "--json",
        ]);
        (accuracies(&out), j, out)
    };
    let (cpu, _, _) = run("cpu");
    let (gpu, j, out) = run("gpu");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert!(
        m["readout_site"].as_str().unwrap().starts_with("device"),
        "{}",
        m["readout_site"]
    );
    let size = |k: &str| m[k].as_u64().unwrap() as usize;
    let sides = [size("n_fit"), size("n_val"), size("n_test")];
    (cpu, gpu, j, sides)
}

/// Equal accuracies, or within one sample of a side per point: the GPU
/// scores in f32 (the CPU in f64) from moments summed in another order, so a
/// sample whose two best classes score within rounding may go the other way.
fn assert_rows_agree(cpu: &[[f64; 4]], gpu: &[[f64; 4]], sides: [usize; 3], what: &str) {
    assert_eq!(cpu.len(), gpu.len());
    let mut differ = 0;
    for (i, (c, g)) in cpu.iter().zip(gpu).enumerate() {
        assert_eq!(c[3], g[3], "{what} point {i}: diverged fraction");
        for k in 0..3 {
            assert_eq!(c[k].is_nan(), g[k].is_nan(), "{what} point {i}");
            if c[k].is_finite() && c[k] != g[k] {
                differ += 1;
                assert!(
                    (c[k] - g[k]).abs() * sides[k] as f64 <= 1.0 + 1e-9,
                    "{what} point {i}, side {k}: cpu {} vs gpu {}",
                    c[k],
                    g[k]
                );
            }
        }
    }
    eprintln!(
        "{what}: {} points, {differ} accuracies differ by one sample",
        cpu.len()
    );
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn sweep_rows_on_gpu_equal_cpu_and_download_only_moments_and_counts() {
    let _ = common::gpu_context();
    let tmp = tempfile::tempdir().unwrap();
    // SITW: 4 x 4 points of the example grid's range, a diverged corner included.
    let sitw = "dataset = \"sitw\"\nreadout = \"ridge\"\nseed = 7\n[grid]\nalpha = { linspace = [0.05, 1.0, 4] }\nbeta = { logspace = [0.01, 2.0, 4] }\n";
    let d = tmp.path().join("sitw");
    std::fs::create_dir(&d).unwrap();
    let (cpu, gpu, j, sides) = both(sitw, &d);
    assert_rows_agree(&cpu, &gpu, sides, "sitw");
    assert!(
        cpu.iter().any(|r| r[0].is_nan()),
        "a diverged point is in the grid"
    );
    let d2h = j["transfer"]["device_to_host_bytes"].as_u64().unwrap() / 16;
    // SITW: F = 128 features, C = 10 classes.
    let bound = 8 * 4 * (128 * 128 + 128 * 10 + 128) + 4096;
    eprintln!("sitw: {d2h} bytes device-to-host per point (bound {bound})");
    assert!(d2h <= bound, "{d2h} > {bound}");

    // MNIST at two sizes: the same rows on both backends, and the bytes per
    // point do not grow with the samples.
    let mut per_point = Vec::new();
    for n in [500usize, 1000] {
        let spec = format!(
            "dataset = \"mnist\"\nreadout = \"ridge\"\nseed = 7\ntrain_subset = {n}\ntest_subset = {}\n[grid]\nalpha = {{ values = [0.143, 0.7] }}\nbeta = {{ values = [0.3, 0.838] }}\n",
            n / 2
        );
        let d = tmp.path().join(format!("mnist{n}"));
        std::fs::create_dir(&d).unwrap();
        let (cpu, gpu, j, sides) = both(&spec, &d);
        assert_rows_agree(&cpu, &gpu, sides, &format!("mnist {n}"));
        per_point.push(j["transfer"]["device_to_host_bytes"].as_u64().unwrap() / 4);
    }
    let bound = 8 * 4 * (784 * 784 + 784 * 10 + 784) + 4096;
    eprintln!(
        "mnist: {per_point:?} bytes device-to-host per point at 500 and 1000 training images (bound {bound})"
    );
    assert_eq!(
        per_point[0], per_point[1],
        "bytes per point grow with the samples"
    );
    assert!(per_point[0] <= bound, "{} > {bound}", per_point[0]);
}
