//! The DDK engines against each other and against mathematics.
//!
//! Each parity body is written once and run on both backends: the fast CPU f32
//! path and the GPU, each against the f64 reference.

use crate::common::{Expected, Reference, TestRng, assert_parity, gpu_context, gpu_engine};
use memkin::batch::{Batch, DeviceParams, Features, Status};
use memkin::engine::cpu::{CpuEngine, ddk_trajectory};
use memkin::engine::gpu::ddk::{ChunkLimits, DDK_WORKGROUP_SIZE, DdkUniform, plan_chunks};
use memkin::engine::gpu::shaders;
use memkin::engine::tolerance::Tolerance;
use memkin::engine::{Engine, RunOptions};
use memkin::model::ddk::{fixed_point, max_contracting_drive};

/// Random inputs in [0, 1) and `sets` parameter sets of `groups` devices in the
/// contracting regime (beta < 0.9 sqrt(2 alpha), so beta x stays below it).
fn random_batch(
    seqs: usize,
    steps: usize,
    sets: usize,
    groups: usize,
    per_step: bool,
    seed: u64,
) -> (Vec<f32>, DeviceParams) {
    let mut r = TestRng(seed);
    let x: Vec<f32> = (0..seqs * steps)
        .map(|_| r.uniform(0.0, 1.0) as f32)
        .collect();
    let n = sets * groups * if per_step { steps } else { 1 };
    let mut alpha = Vec::with_capacity(n);
    let mut beta = Vec::with_capacity(n);
    for _ in 0..n {
        let a = r.uniform(0.3, 1.0);
        alpha.push(a);
        beta.push(r.uniform(0.05, 0.9 * max_contracting_drive(a)));
    }
    let w0 = (0..sets * groups).map(|_| r.uniform(0.5, 2.0)).collect();
    let params =
        DeviceParams::new(sets, groups, per_step.then_some(steps), alpha, beta, w0).unwrap();
    (x, params)
}

fn describe(params: &DeviceParams) -> impl Fn(usize, usize, usize) -> String + '_ {
    move |p, s, k| {
        let d = params.device(p, s);
        let (a, b) = params.at(d, k.max(1));
        format!(
            "trajectory (set {p}, seq {s}), step {k}, device {d}: alpha {a}, beta {b}, w0 {}",
            params.w0()[d]
        )
    }
}

/// The parity body: `engine` on a random batch against the f64 reference,
/// through the one harness ([`assert_parity`]: shapes, lengths, statuses, values).
fn check_parity(
    engine: &dyn Engine,
    seqs: usize,
    steps: usize,
    sets: usize,
    groups: usize,
    per_step: bool,
    chunk: Option<usize>,
    grad: bool,
) {
    let (x, params) = random_batch(
        seqs,
        steps,
        sets,
        groups,
        per_step,
        seqs as u64 * 31 + steps as u64,
    );
    let batch = Batch::new(&x, seqs, steps, &params).unwrap();
    let opts = RunOptions {
        sensitivities: grad,
        chunk,
        noise: None,
    };
    let got = engine.run(&batch, &opts).unwrap();
    let statuses = CpuEngine::reference().run(&batch, &opts).unwrap();
    let name = format!(
        "{} S={seqs} T={steps} P={sets} G={groups} per_step={per_step} chunk={chunk:?}",
        engine.info().backend
    );
    let (w, g) = reference_f64(&batch, grad);
    let want = Expected {
        shape: [sets, seqs, steps],
        w: &w,
        grad: grad.then_some(g.as_slice()),
        status: &statuses.status,
        first_bad: &statuses.first_bad,
    };
    assert_parity(
        &name,
        &got,
        &want,
        Tolerance::F32_VS_F64,
        Tolerance::SENS_F32_VS_F64,
        describe(&params),
    );
}

/// The f64 reference states and sensitivities of every trajectory, unrounded.
fn reference_f64(batch: &Batch, grad: bool) -> (Vec<f64>, Vec<f64>) {
    let (p, s, t) = (batch.params().sets(), batch.seqs(), batch.steps());
    let mut w = vec![0.0; p * s * t];
    let mut g = vec![0.0; if grad { p * s * t * 2 } else { 0 }];
    for pi in 0..p {
        for si in 0..s {
            let i = pi * s + si;
            let gs = if grad {
                Some(&mut g[i * t * 2..(i + 1) * t * 2])
            } else {
                None
            };
            ddk_trajectory(
                batch.sequence(si),
                batch.params(),
                batch.params().device(pi, si),
                &mut w[i * t..(i + 1) * t],
                gs,
                None,
            );
        }
    }
    (w, g)
}

const SIZES: [usize; 4] = [1, 63, 64, 65];

fn parity_suite(engine: &dyn Engine) {
    for &s in &SIZES {
        for per_step in [false, true] {
            check_parity(engine, s, 28, 1, 1, per_step, None, false);
            check_parity(engine, s, 28, 3, 2, per_step, Some(7), false);
            check_parity(engine, s, 19, 2, 1, per_step, Some(5), true);
        }
    }
    check_parity(engine, 100_000, 28, 1, 1, false, None, false);
    check_parity(engine, 100_000, 28, 1, 1, true, None, true);
    check_parity(engine, 25_000, 28, 4, 28, false, Some(4_999), false);
}

#[test]
fn cpu_fast_path_matches_f64_reference() {
    parity_suite(&CpuEngine::fast());
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn gpu_features_match_cpu_reference_with_default_and_tiny_chunks() {
    let gpu = gpu_engine();
    parity_suite(&gpu);
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn gpu_run_beyond_one_dispatch_dimension_matches_cpu_reference() {
    // 4,200,000 trajectories > 65,535 workgroups x 64: needs the 2-D grid (and,
    // at default limits, several chunks).
    let gpu = gpu_engine();
    let n = 4_200_000;
    assert!(n > 65_535 * DDK_WORKGROUP_SIZE as usize);
    check_parity(&gpu, n, 6, 1, 1, false, None, false);
}

#[test]
fn sensitivities_match_central_finite_differences() {
    let steps = 40;
    let (x, params) = random_batch(8, steps, 1, 1, false, 99);
    let h = 1e-6;
    for s in 0..8 {
        let seq = &x[s * steps..(s + 1) * steps];
        let mut w = vec![0.0; steps];
        let mut g = vec![0.0; 2 * steps];
        ddk_trajectory(seq, &params, 0, &mut w, Some(&mut g), None);
        let (a, b) = (params.alpha()[0], params.beta()[0]);
        let run = |a: f64, b: f64| {
            let p = DeviceParams::new(1, 1, None, vec![a], vec![b], params.w0().to_vec()).unwrap();
            let mut w = vec![0.0; steps];
            ddk_trajectory(seq, &p, 0, &mut w, None, None);
            w
        };
        let (ap, am, bp, bm) = (run(a + h, b), run(a - h, b), run(a, b + h), run(a, b - h));
        let fd_a = (0..steps).map(|k| (ap[k] - am[k]) / (2.0 * h));
        let fd_b = (0..steps).map(|k| (bp[k] - bm[k]) / (2.0 * h));
        let tol = Tolerance::FINITE_DIFFERENCE;
        tol.compare("dw/dalpha", (0..steps).map(|k| g[2 * k]), fd_a, |k| {
            format!("seq {s} step {k}")
        })
        .unwrap();
        tol.compare("dw/dbeta", (0..steps).map(|k| g[2 * k + 1]), fd_b, |k| {
            format!("seq {s} step {k}")
        })
        .unwrap();
    }
}

fn constant_input_converges(engine: &dyn Engine) {
    let (alpha, beta, xv) = (0.7, 1.0, 0.8);
    let steps = 400;
    let x = vec![xv as f32; steps];
    let params = DeviceParams::scalar(&[(alpha, beta)], 1.0).unwrap();
    let f = engine
        .run(
            &Batch::new(&x, 1, steps, &params).unwrap(),
            &RunOptions::default(),
        )
        .unwrap();
    let want = fixed_point(alpha, beta, xv);
    let last = f.get(0, 0, steps - 1) as f64;
    assert!(
        (last - want).abs() < 1e-5 * want,
        "{}: w[T-1] = {last}, fixed point {want}",
        engine.info().backend
    );
}

#[test]
fn constant_input_converges_to_fixed_point_on_cpu() {
    constant_input_converges(&CpuEngine::reference());
    constant_input_converges(&CpuEngine::fast());
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn constant_input_converges_to_fixed_point_on_gpu() {
    let gpu = gpu_engine();
    constant_input_converges(&gpu);
}

/// The paper's published constants alpha = 0.143, beta = 0.838 with x = 1 drive
/// the map past 2 sqrt(alpha): it must be flagged at the first step where w <= 0,
/// NaN from there on, while a stable trajectory in the same batch is untouched.
fn unstable_drive_is_flagged(engine: &dyn Engine) {
    let (alpha, beta) = (0.143, 0.838);
    assert!(beta > 2.0 * f64::sqrt(alpha));
    let steps = 30;
    let mut x = vec![1.0f32; steps];
    x.extend(std::iter::repeat_n(0.1f32, steps));
    let params = DeviceParams::scalar(&[(alpha, beta)], 1.0).unwrap();
    let f: Features = engine
        .run(
            &Batch::new(&x, 2, steps, &params).unwrap(),
            &RunOptions::default(),
        )
        .unwrap();
    // Hand computation in f64: the first step with w <= 0.
    let mut w = 1.0f64;
    let mut first = None;
    for k in 1..steps {
        w = w + alpha / w - beta;
        if w <= 0.0 {
            first = Some(k);
            break;
        }
    }
    let first = first.expect("the constants diverge within 30 steps");
    let name = engine.info().backend;
    assert_eq!(f.status_of(0, 0), Status::NonPositive, "{name}");
    assert_eq!(f.first_bad[0] as usize, first, "{name}");
    assert!(
        f.trajectory(0, 0)[..first]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
    );
    assert!(f.trajectory(0, 0)[first..].iter().all(|v| v.is_nan()));
    assert_eq!(
        f.status_of(0, 1),
        Status::Ok,
        "{name}: the stable neighbour"
    );
    assert!(f.trajectory(0, 1).iter().all(|v| v.is_finite()));
}

#[test]
fn unstable_drive_is_flagged_at_the_right_step_on_cpu() {
    unstable_drive_is_flagged(&CpuEngine::reference());
    unstable_drive_is_flagged(&CpuEngine::fast());
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn unstable_drive_is_flagged_at_the_right_step_on_gpu() {
    let gpu = gpu_engine();
    unstable_drive_is_flagged(&gpu);
}

#[test]
fn every_shader_validates_with_naga_and_matches_rust_workgroup_size() {
    for src in shaders::ALL {
        let code = src.full_source();
        let module = naga::front::wgsl::parse_str(&code)
            .unwrap_or_else(|e| panic!("{}: {}", src.name, e.emit_to_string(&code)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {e:?}", src.name));
        let ep = module
            .entry_points
            .iter()
            .find(|e| e.name == src.entry)
            .expect("entry point");
        assert_eq!(ep.workgroup_size[0], src.workgroup_size, "{}", src.name);
    }
}

#[test]
fn ddk_uniform_layout_matches_wgsl() {
    let rust = [
        "n_traj",
        "seqs",
        "steps",
        "groups",
        "seq_offset",
        "per_step",
        "want_grad",
        "grid_x",
        "noise_sigma",
        "key0",
        "key1",
        "set_offset",
    ];
    crate::common::assert_uniform_layout(
        &shaders::DDK.full_source(),
        "DdkUniform",
        std::mem::size_of::<DdkUniform>(),
        &rust,
    );
}

#[test]
fn chunk_plan_covers_every_trajectory_once() {
    for (sets, seqs, max_traj, max_rows) in [
        (5, 100, 7, 1000),
        (5, 100, 250, 1000),
        (3, 10, 1000, 4),
        (1, 1, 1, 1),
        (7, 13, 26, 13),
    ] {
        let lim = ChunkLimits {
            max_traj,
            max_rows,
            max_sets: 1000,
        };
        let chunks = plan_chunks(sets, seqs, lim);
        let mut seen = vec![0u8; sets * seqs];
        for c in &chunks {
            assert!(c.len() <= max_traj && c.seqs.len() <= max_rows);
            for p in c.sets.clone() {
                for s in c.seqs.clone() {
                    seen[p * seqs + s] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&v| v == 1), "{sets}x{seqs} max {max_traj}");
    }
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn gpu_context_reports_its_adapter() {
    let ctx = gpu_context();
    assert!(!ctx.adapter_info().name.is_empty());
}

/// Cycle-to-cycle noise is a pure function of (seed, draw, sequence, step): the
/// GPU and the CPU reference agree (same Philox uniforms; Box-Muller differs by
/// f32 rounding only), whatever the chunking, and the noise has the requested size.
fn noisy_runs_agree(engine: &dyn Engine, chunk: Option<usize>) {
    let (x, params) = random_batch(300, 20, 3, 1, false, 5);
    let batch = Batch::new(&x, 300, 20, &params).unwrap();
    let noise = memkin::engine::StepNoise {
        sigma: 0.01,
        seed: 42,
        set_offset: 7,
    };
    let opts = RunOptions {
        noise: Some(noise),
        chunk,
        ..RunOptions::default()
    };
    let got = engine.run(&batch, &opts).unwrap();
    let want = CpuEngine::reference()
        .run(
            &batch,
            &RunOptions {
                noise: Some(noise),
                ..RunOptions::default()
            },
        )
        .unwrap();
    // Noise of 0.01 per step, damped by the contraction: the f32 transforms differ
    // by ~1e-7 per sample, far inside F32_VS_F64.
    assert_parity(
        &format!("noisy states, {} chunk {chunk:?}", engine.info().backend),
        &got,
        &Reference::of(&want).expected(),
        Tolerance::F32_VS_F64,
        Tolerance::SENS_F32_VS_F64,
        |p, s, k| format!("set {p}, seq {s}, step {k}"),
    );
    // An f32 engine really computed in f32: not the f64 loop rounded at the end.
    assert_eq!(engine.info().precision, "f32");
    assert!(
        got.w
            .iter()
            .zip(&want.w)
            .any(|(a, b)| a.to_bits() != b.to_bits()),
        "{}: noisy f32 states are bit-identical to the f64 reference's",
        engine.info().backend
    );
    let clean = CpuEngine::reference()
        .run(&batch, &RunOptions::default())
        .unwrap();
    let diffs: Vec<f64> = got
        .w
        .iter()
        .zip(&clean.w)
        .map(|(a, b)| (a - b) as f64)
        .collect();
    let rms = (diffs.iter().map(|d| d * d).sum::<f64>() / diffs.len() as f64).sqrt();
    assert!(rms > 0.003 && rms < 0.1, "noise rms {rms}");
}

#[test]
fn cycle_noise_is_reproducible_and_chunk_independent_on_cpu() {
    noisy_runs_agree(&CpuEngine::fast(), None);
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn cycle_noise_on_gpu_matches_cpu_reference_with_tiny_chunks() {
    let gpu = gpu_engine();
    noisy_runs_agree(&gpu, None);
    noisy_runs_agree(&gpu, Some(37));
}

/// The parity harness refuses a backend that returns fewer values than the
/// shape implies, naming the array (it never compares a prefix).
#[test]
#[should_panic(expected = "short: status length for shape [1, 2, 3]")]
fn parity_harness_fails_when_a_backend_returns_too_few_statuses() {
    let mut f = Features::default();
    f.prepare_shape(1, 2, 3, false);
    let want = Reference::of(&f);
    f.status.pop();
    assert_parity(
        "short",
        &f,
        &want.expected(),
        Tolerance::F32_VS_F64,
        Tolerance::SENS_F32_VS_F64,
        |p, s, k| format!("[{p}, {s}, {k}]"),
    );
}
