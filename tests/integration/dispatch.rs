//! The chunked dispatcher of the forward GPU kernels
//! (src/engine/gpu/dispatch.rs) and the transfer accounting: multi-chunk runs
//! are bit-identical to single-chunk ones, each chunk costs one submit and
//! one wait, the bytes moved each way are exactly what the chunk plan implies
//! (inputs once per sequence block), every model flags a NaN on the GPU, and
//! `--json` and study manifests report what the engine counted.

use super::common::{TestRng, gpu_context};
use memkin::batch::{Batch, DeviceParams, Features};
use memkin::engine::cpu::CpuEngine;
use memkin::engine::gpu::ddk::{ChunkLimits, DdkUniform, plan_chunks};
use memkin::engine::gpu::ode::OdeUniform;
use memkin::engine::gpu::{GpuContext, GpuEngine, GpuOdeEngine};
use memkin::engine::ode::OdeSpec;
use memkin::engine::{Engine, RunOptions, Transfer};
use memkin::model::integrate::{Integrator, PulseProtocol};
use memkin::model::{MAX_PARAMS, Model};
use std::path::Path;
use std::sync::Arc;

/// A context of the test's own: the transfer counters are per context, and
/// the shared one of [`gpu_context`] counts every test running beside this one.
fn own_context() -> Arc<GpuContext> {
    gpu_context(); // fails (never skips) without an adapter, as every GPU test
    Arc::new(GpuContext::new().expect("a second device on the adapter"))
}

fn inputs(seqs: usize, steps: usize, seed: u64) -> Vec<f32> {
    let mut r = TestRng(seed);
    (0..seqs * steps)
        .map(|_| r.uniform(0.0, 1.0) as f32)
        .collect()
}

/// Bit patterns, so NaNs compare equal and nothing is within a tolerance.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn assert_bit_identical(got: &Features, want: &Features, what: &str) {
    assert_eq!(
        (got.sets, got.seqs, got.steps),
        (want.sets, want.seqs, want.steps)
    );
    assert!(bits(&got.w) == bits(&want.w), "{what}: states differ");
    assert_eq!(got.status, want.status, "{what}: statuses differ");
    assert_eq!(
        got.first_bad, want.first_bad,
        "{what}: first bad steps differ"
    );
    assert_eq!(
        got.grad.as_deref().map(bits),
        want.grad.as_deref().map(bits),
        "{what}: sensitivities differ"
    );
}

/// Stable DDK parameters (beta x < 2 sqrt(alpha) for x in [0, 1]), `groups`
/// devices per set, scalar or per-step.
fn ddk_params(sets: usize, groups: usize, steps: Option<usize>, seed: u64) -> DeviceParams {
    let mut r = TestRng(seed);
    let per = steps.unwrap_or(1);
    let n = sets * groups * per;
    let alpha = (0..n).map(|_| r.uniform(0.5, 1.0)).collect();
    let beta = (0..n).map(|_| r.uniform(0.3, 1.0)).collect();
    let w0 = (0..sets * groups).map(|_| r.uniform(0.8, 1.2)).collect();
    DeviceParams::new(sets, groups, steps, alpha, beta, w0).unwrap()
}

/// One chunk's bytes each way, as the dispatcher moves them.
#[derive(Default)]
struct Expect {
    h2d: u64,
    d2h: u64,
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn ddk_multi_chunk_runs_are_bit_identical_with_one_submit_and_wait_per_chunk_and_exact_bytes() {
    let ctx = own_context();
    let gpu = GpuEngine::new(ctx.clone()).unwrap();
    let ts = if ctx.has_timestamps() { 16 } else { 0 };
    // (sets, groups, per-step, seqs, steps): several sets and a partial last
    // workgroup, then per-step parameters.
    for (k, &(sets, groups, per_step, seqs, steps)) in [
        (3usize, 2usize, false, 65usize, 21usize),
        (2, 1, true, 63, 17),
    ]
    .iter()
    .enumerate()
    {
        let x = inputs(seqs, steps, 40 + k as u64);
        let params = ddk_params(sets, groups, per_step.then_some(steps), 50 + k as u64);
        let batch = Batch::new(&x, seqs, steps, &params).unwrap();
        let run = |chunk: Option<usize>| {
            let opts = RunOptions {
                sensitivities: true,
                chunk,
                noise: None,
            };
            let before = gpu.transfer();
            let f = gpu.run(&batch, &opts).unwrap();
            (f, gpu.transfer().since(before), gpu.last_timing())
        };
        let (single, _, t1) = run(None);
        assert_eq!(t1.chunks, 1, "the default chunking fits this batch at once");
        let per = params.steps().unwrap_or(1) as u64;
        for chunk in [1usize, 7, 64, 65, 200] {
            let (f, moved, timing) = run(Some(chunk));
            let what = format!("S={seqs} P={sets} G={groups} per_step={per_step} chunk={chunk}");
            assert_bit_identical(&f, &single, &what);
            let lim = ChunkLimits::new(ctx.limits(), &batch, true, Some(chunk));
            let plan = plan_chunks(sets, seqs, lim);
            assert_eq!(timing.chunks, plan.len(), "{what}");
            assert_eq!(timing.submits, plan.len(), "{what}: one submit per chunk");
            assert_eq!(timing.waits, plan.len(), "{what}: one wait per chunk");
            // Inputs once per sequence block (the blocks partition the
            // sequences, so all inputs exactly once); per chunk its sets'
            // alpha, beta, w0 and the uniform block up; states, status
            // words, sensitivities and the two timestamps down.
            let mut e = Expect {
                h2d: (seqs * steps * 4) as u64,
                ..Default::default()
            };
            for c in &plan {
                let (p, n) = (c.sets.len() as u64, c.len() as u64);
                e.h2d += 2 * p * groups as u64 * per * 4
                    + p * groups as u64 * 4
                    + size_of::<DdkUniform>() as u64;
                e.d2h += n * steps as u64 * 4 + n * 4 + n * steps as u64 * 8 + ts;
            }
            assert_eq!(moved.host_to_device_bytes, e.h2d, "{what}: host to device");
            assert_eq!(moved.device_to_host_bytes, e.d2h, "{what}: device to host");
        }
    }
}

/// Model `model`'s defaults with the first parameter scaled per set (every
/// model's first parameter accepts any positive value).
fn model_spec(model: Model, sets: usize) -> OdeSpec {
    let mut spec = OdeSpec::defaults(model, Integrator::Rk4 { substeps: 2 }, PulseProtocol::PAPER);
    let base = spec.params.clone();
    spec.params = (0..sets)
        .flat_map(|p| {
            let mut v = base.clone();
            v[0] *= 1.0 + 0.1 * p as f64;
            v
        })
        .collect();
    spec.w0 = vec![spec.w0[0]; sets];
    spec
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn model_multi_chunk_runs_are_bit_identical_with_one_submit_and_wait_per_chunk_and_exact_bytes() {
    let ctx = own_context();
    let gpu = GpuOdeEngine::new(ctx.clone());
    let ts = if ctx.has_timestamps() { 16 } else { 0 };
    let (sets, seqs, steps) = (3usize, 65usize, 9usize);
    let x = inputs(seqs, steps, 7);
    for model in Model::ALL {
        let spec = model_spec(model, sets);
        let single = gpu.run(&x, seqs, steps, &spec, None).unwrap();
        assert_eq!(gpu.last_timing().chunks, 1);
        for chunk in [1usize, 7, 64, 65] {
            let before = gpu.transfer();
            let f = gpu.run(&x, seqs, steps, &spec, Some(chunk)).unwrap();
            let moved = gpu.transfer().since(before);
            let timing = gpu.last_timing();
            let what = format!("{} chunk={chunk}", model.name());
            assert_bit_identical(&f, &single, &what);
            let lim =
                ChunkLimits::for_shape(ctx.limits(), steps, MAX_PARAMS as u64, false, Some(chunk));
            let plan = plan_chunks(sets, seqs, lim);
            assert_eq!(
                (timing.chunks, timing.submits, timing.waits),
                (plan.len(), plan.len(), plan.len()),
                "{what}"
            );
            let mut e = Expect {
                h2d: (seqs * steps * 4) as u64,
                ..Default::default()
            };
            for c in &plan {
                let (p, n) = (c.sets.len() as u64, c.len() as u64);
                e.h2d += p * MAX_PARAMS as u64 * 4 + p * 4 + size_of::<OdeUniform>() as u64;
                e.d2h += n * steps as u64 * 4 + n * 4 + ts;
            }
            assert_eq!(moved.host_to_device_bytes, e.h2d, "{what}: host to device");
            assert_eq!(moved.device_to_host_bytes, e.d2h, "{what}: device to host");
        }
    }
}

/// A coefficient of 0 times an infinite f32 drive (v_scale = 1e300 rounds to
/// inf in f32) is NaN in every model's rate: the state goes NaN at step 1,
/// and must be flagged, never clamped into a finite value (diffusive and
/// linear-drift project onto [0, 1]).
#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn a_nan_producing_parameter_set_is_flagged_on_the_gpu_for_every_model() {
    let gpu = GpuOdeEngine::new(gpu_context());
    let (seqs, steps) = (3usize, 5usize);
    let x = vec![0.5f32; seqs * steps];
    for model in Model::ALL {
        // ddk-ode: beta; diffusive: lambda; linear-drift: mu_v.
        let zero = match model {
            Model::DdkOde => 1,
            Model::Diffusive => 0,
            Model::LinearDrift => 3,
        };
        for integrator in [
            Integrator::Euler { substeps: 1 },
            Integrator::Rk4 { substeps: 2 },
        ] {
            let mut spec = OdeSpec::defaults(
                model,
                integrator,
                PulseProtocol {
                    v_scale: 1e300,
                    tau: 1.0,
                    rest: 0.0,
                },
            );
            spec.params[zero] = 0.0;
            let f = gpu.run(&x, seqs, steps, &spec, Some(2)).unwrap();
            let what = format!("{} {}", model.name(), integrator.name());
            assert_eq!(f.status, vec![2u8; seqs], "{what}: all non-finite");
            assert_eq!(f.first_bad, vec![1u32; seqs], "{what}: from step 1");
            for s in 0..seqs {
                let tr = f.trajectory(0, s);
                assert!(tr[0].is_finite(), "{what}: w0 is fine");
                assert!(
                    tr[1..].iter().all(|v| v.is_nan()),
                    "{what}: NaN from step 1"
                );
            }
        }
    }
}

/// `memkin simulate --json` reports the engine's bytes: zero on the CPU, and
/// on the GPU exactly the chunk plan's (three chunks of one trajectory).
#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn simulate_json_reports_the_bytes_the_engine_moved() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.npy");
    ndarray_npy::write_npy(&input, &ndarray::Array2::<f32>::from_elem((3, 6), 0.5)).unwrap();
    let ts: u64 = if gpu_context().has_timestamps() {
        16
    } else {
        0
    };
    for backend in ["cpu", "gpu"] {
        let out = dir.path().join(format!("w_{backend}.npy"));
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_memkin"))
            .args(["simulate", "--json", "--model", "ddk-ode", "--chunk", "1"])
            .args(["--integrator", "rk4", "--backend", backend, "--input"])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let t: Transfer = serde_json::from_value(v["transfer"].clone()).unwrap();
        let want = if backend == "cpu" {
            Transfer::default()
        } else {
            // Inputs once; per chunk (one trajectory) its parameter row, w0
            // and the uniform block up, 6 states, a status word and the
            // timestamps down.
            let up = 3 * 6 * 4 + 3 * (MAX_PARAMS as u64 * 4 + 4 + size_of::<OdeUniform>() as u64);
            Transfer {
                host_to_device_bytes: up,
                device_to_host_bytes: 3 * (6 * 4 + 4 + ts),
            }
        };
        assert_eq!(t, want, "{backend}");
    }
}

const SWEEP_SPEC: &str = "dataset = \"digits\"\nreadout = \"ridge\"\nseed = 3\n[grid]\nalpha = { linspace = [0.5, 1.0, 3] }\nbeta = { values = [0.8, 1.0] }\n";

/// Runs the sweep of [`SWEEP_SPEC`] into `dir` on `engine`; returns the
/// manifest's `transfer`.
fn sweep_manifest_transfer(dir: &Path, engine: &dyn Engine) -> Transfer {
    use memkin::pipeline::{Protocol, Sides, VAL_FRACTION, encode_protocol};
    use memkin::readout::{ReadoutKind, TrainConfig};
    use memkin::study::kinetics::Kinetics;
    use memkin::study::plan::Plan;
    use memkin::study::runner::{Study, StudyKind, run_study};
    use memkin::study::spec::SweepSpec;
    use memkin::study::sweep::SweepEvaluator;

    let ds = memkin::data::load("digits", None).unwrap();
    let proto = Protocol::for_dataset(&ds.name, &ds.sample_shape);
    let (train, test) = encode_protocol(&ds, &proto).unwrap();
    let sides = Sides::carve(&train, test, VAL_FRACTION, 3).unwrap();
    let spec = SweepSpec::from_text(Path::new("s.toml"), SWEEP_SPEC).unwrap();
    let plan = Plan::sweep(&spec);
    let cfg = TrainConfig {
        kind: ReadoutKind::Ridge,
        ..TrainConfig::default()
    };
    let kin = Kinetics::resolve(None, engine, None).unwrap();
    // Two points per batch: several engine runs per study.
    let mut ev = SweepEvaluator::new(kin, sides, ds.n_classes, cfg, 2).unwrap();
    let study = Study {
        dir,
        kind: StudyKind::Sweep,
        spec_text: SWEEP_SPEC,
        plan: &plan,
        shard: None,
        resume: false,
        progress: false,
        manifest_extra: serde_json::Value::Null,
    };
    run_study(&study, &mut ev).unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    serde_json::from_value(m["transfer"].clone()).expect("the manifest has `transfer`")
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn a_sweep_manifest_reports_zero_bytes_on_the_cpu_and_what_the_gpu_engine_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cpu = CpuEngine::fast();
    let t = sweep_manifest_transfer(&dir.path().join("cpu"), &cpu);
    assert_eq!(t, Transfer::default());

    let gpu = Arc::new(GpuEngine::new(own_context()).unwrap());
    let before = gpu.transfer();
    let t = sweep_manifest_transfer(&dir.path().join("gpu"), &gpu);
    let counted = gpu.transfer().since(before);
    assert!(counted.host_to_device_bytes > 0 && counted.device_to_host_bytes > 0);
    assert_eq!(t, counted, "the manifest holds what the engine counted");
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn a_monte_carlo_manifest_reports_zero_bytes_on_the_cpu_and_what_the_gpu_engine_counted() {
    use memkin::study::montecarlo::{McEvaluator, McOptions};
    use memkin::study::plan::Plan;
    use memkin::study::runner::{Study, StudyKind, run_study};
    use memkin::study::spec::McSpec;

    let text = "dataset = \"digits\"\ndraws = 4\nseed = 5\nreadout = \"ridge\"\n[variability]\nsigma_alpha = 0.0955\nsigma_beta = 0.276\n";
    let spec = McSpec::from_text(Path::new("mc.toml"), text).unwrap();
    let ds = memkin::data::load(&spec.dataset, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gpu = Arc::new(GpuEngine::new(own_context()).unwrap());
    let engines: [(&str, Box<dyn Engine>); 2] = [
        ("cpu", Box::new(CpuEngine::fast())),
        ("gpu", Box::new(gpu.clone())),
    ];
    for (name, engine) in engines {
        let mut ev = McEvaluator::new(&spec, &ds, engine, &McOptions::default()).unwrap();
        let plan = Plan::monte_carlo(&spec);
        let out = dir.path().join(name);
        let study = Study {
            dir: &out,
            kind: StudyKind::MonteCarlo,
            spec_text: text,
            plan: &plan,
            shard: None,
            resume: false,
            progress: false,
            manifest_extra: serde_json::Value::Null,
        };
        // The set-up (nominal accuracy) runs on the CPU engine; only the
        // draws count.
        let before = gpu.transfer();
        run_study(&study, &mut ev).unwrap();
        let counted = gpu.transfer().since(before);
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap())
                .unwrap();
        let t: Transfer = serde_json::from_value(m["transfer"].clone()).unwrap();
        if name == "cpu" {
            assert_eq!(t, Transfer::default());
        } else {
            assert!(t.host_to_device_bytes > 0 && t.device_to_host_bytes > 0);
            assert_eq!(t, counted, "the manifest holds what the engine counted");
        }
    }
}

/// `memkin bench --workload sweep|mc` on a tiny synthetic MNIST-shaped set:
/// one result per backend (points or draws per second), the kernel-only
/// figure beside it, and the bytes moved per run (zero on the CPU).
#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn bench_workloads_report_points_and_draws_per_second_on_each_backend() {
    for (workload, unit) in [("sweep", "points"), ("mc", "draws")] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_memkin"))
            .args([
                "bench",
                "--json",
                "--workload",
                workload,
                "--precision",
                "f32",
            ])
            .args(["--samples", "60", "--points", "3", "--runs", "1"])
            .args(["--min-seconds", "0"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["workload"], workload);
        assert_eq!(v["shape"]["rows"], 28);
        assert_eq!(v["shape"]["cols"], 28);
        let results = v["results"].as_array().unwrap();
        let backends: Vec<&str> = results
            .iter()
            .map(|r| r["backend"].as_str().unwrap())
            .collect();
        assert_eq!(backends, ["cpu", "gpu"], "{workload}");
        for r in results {
            assert_eq!(r["unit"], unit);
            assert_eq!(r["items"], 3);
            assert!(r["per_second"].as_f64().unwrap() > 0.0, "{r}");
            let t: Transfer = serde_json::from_value(r["transfer"].clone()).unwrap();
            assert_eq!(t == Transfer::default(), r["backend"] == "cpu", "{r}");
        }
        assert_eq!(v["kernel_only"].as_array().unwrap().len(), 2, "{workload}");
        assert!(v["transfer"]["host_to_device_bytes"].as_u64().unwrap() > 0);
    }
    // A bad shape is a one-line error naming the flag, exit 2.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_memkin"))
        .args(["bench", "--workload", "sweep", "--shape", "28by28"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--shape") && err.contains("ROWSxCOLS"),
        "{err}"
    );
}

/// The reverse kernel runs through the same dispatcher: multi-chunk runs give
/// the same bits (dL/dx) and the same f64 parameter sums as one chunk, with
/// one submit and one wait per chunk and the plan's bytes each way.
#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn vjp_multi_chunk_runs_are_identical_with_one_submit_and_wait_per_chunk_and_exact_bytes() {
    use memkin::engine::gpu::GpuVjpEngine;
    use memkin::engine::gpu::vjp::VjpUniform;
    use memkin::engine::vjp::{VjpEngine, VjpOptions};
    let ctx = own_context();
    let fwd = GpuEngine::new(ctx.clone()).unwrap();
    let rev = GpuVjpEngine::new(ctx.clone()).unwrap();
    let ts = if ctx.has_timestamps() { 16 } else { 0 };
    for (k, per_step) in [false, true].into_iter().enumerate() {
        let (sets, groups, seqs, steps) = (2usize, if per_step { 1 } else { 2 }, 65usize, 11usize);
        let x = inputs(seqs, steps, 60 + k as u64);
        let params = ddk_params(sets, groups, per_step.then_some(steps), 70 + k as u64);
        let batch = Batch::new(&x, seqs, steps, &params).unwrap();
        let f = fwd.run(&batch, &RunOptions::default()).unwrap();
        let g = inputs(sets * seqs, steps, 80 + k as u64);
        let single = rev
            .vjp(&batch, &f.w, &g, &VjpOptions { chunk: None })
            .unwrap();
        let per = params.steps().unwrap_or(1) as u64;
        for chunk in [1usize, 7, 64] {
            let before = rev.context().transfer();
            let got = rev
                .vjp(&batch, &f.w, &g, &VjpOptions { chunk: Some(chunk) })
                .unwrap();
            let moved = rev.context().transfer().since(before);
            let what = format!("per_step={per_step} chunk={chunk}");
            assert!(bits(&got.grad_x) == bits(&single.grad_x), "{what}: dL/dx");
            assert_eq!(got.grad_alpha, single.grad_alpha, "{what}");
            assert_eq!(got.grad_beta, single.grad_beta, "{what}");
            let lim = ChunkLimits::for_shape(
                ctx.limits(),
                steps,
                groups as u64 * per,
                per_step,
                Some(chunk),
            );
            let plan = plan_chunks(sets, seqs, lim);
            let st = rev.last_stats();
            assert_eq!(
                (st.chunks, st.submits, st.waits),
                (plan.len(), plan.len(), plan.len()),
                "{what}"
            );
            let mut e = Expect {
                h2d: (seqs * steps * 4) as u64,
                ..Default::default()
            };
            for c in &plan {
                let (p, n) = (c.sets.len() as u64, c.len() as u64);
                e.h2d += 2 * p * groups as u64 * per * 4
                    + 2 * n * steps as u64 * 4
                    + size_of::<VjpUniform>() as u64;
                e.d2h += n * steps as u64 * 4 + n * per * 8 + ts;
            }
            assert_eq!(moved.host_to_device_bytes, e.h2d, "{what}: host to device");
            assert_eq!(moved.device_to_host_bytes, e.d2h, "{what}: device to host");
        }
    }
}
