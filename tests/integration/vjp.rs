//! The reverse (adjoint) DDK kernel: against central finite differences of
//! the f64 map, and each f32 backend (CPU fast path, GPU) against the f64
//! reference, written once and run on both.

use crate::common::{TestRng, gpu_context};
use memkin::batch::{Batch, DeviceParams};
use memkin::engine::cpu::{CpuEngine, ddk_trajectory};
use memkin::engine::gpu::GpuVjpEngine;
use memkin::engine::gpu::shaders;
use memkin::engine::gpu::vjp::VjpUniform;
use memkin::engine::tolerance::Tolerance;
use memkin::engine::vjp::{VjpEngine, VjpOptions, ddk_vjp_trajectory};
use memkin::engine::{Engine, RunOptions};
use memkin::model::ddk::{ddk_step, max_contracting_drive};

/// Random inputs in [0, 1), parameters in the contracting regime, and random
/// cotangents in [-1, 1) (all f32-representable, so the f64 reference sees
/// exactly what the f32 backends see).
struct Case {
    x: Vec<f32>,
    g: Vec<f32>,
    params: DeviceParams,
    seqs: usize,
    steps: usize,
}

fn case(seqs: usize, steps: usize, sets: usize, groups: usize, per_step: bool, seed: u64) -> Case {
    let mut r = TestRng(seed);
    let x: Vec<f32> = (0..seqs * steps)
        .map(|_| r.uniform(0.0, 1.0) as f32)
        .collect();
    let n = sets * groups * if per_step { steps } else { 1 };
    let (mut alpha, mut beta) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let a = r.uniform(0.3, 1.0) as f32 as f64;
        alpha.push(a);
        beta.push(r.uniform(0.05, 0.9 * max_contracting_drive(a)) as f32 as f64);
    }
    let w0 = (0..sets * groups)
        .map(|_| r.uniform(0.5, 2.0) as f32 as f64)
        .collect();
    let params =
        DeviceParams::new(sets, groups, per_step.then_some(steps), alpha, beta, w0).unwrap();
    let g = (0..sets * seqs * steps)
        .map(|_| r.uniform(-1.0, 1.0) as f32)
        .collect();
    Case {
        x,
        g,
        params,
        seqs,
        steps,
    }
}

/// `sum_k g[k] w[k]` of one trajectory, with f64 inputs (so that the inputs
/// themselves can be perturbed by less than an f32 ulp).
fn loss_f64(x: &[f64], g: &[f32], params: &DeviceParams, dev: usize) -> f64 {
    let mut w = params.w0()[dev];
    let mut l = g[0] as f64 * w;
    for k in 1..x.len() {
        let (a, b) = params.at(dev, k);
        w = ddk_step(w, x[k - 1], a, b);
        l += g[k] as f64 * w;
    }
    l
}

/// The loss of every trajectory driven by device `dev`, under `params`.
fn device_loss(c: &Case, params: &DeviceParams, dev: usize) -> f64 {
    let (s, t) = (c.seqs, c.steps);
    let mut l = 0.0;
    for p in 0..params.sets() {
        for si in 0..s {
            if params.device(p, si) != dev {
                continue;
            }
            let x: Vec<f64> = c.x[si * t..(si + 1) * t]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let i = p * s + si;
            l += loss_f64(&x, &c.g[i * t..(i + 1) * t], params, dev);
        }
    }
    l
}

/// Central differences: h = 1e-5 gives truncation h^2 / 6 * L''' ~ 1e-10 and
/// rounding ~ eps |L| / h ~ 1e-10 on these losses (|L| < 100): far below the
/// 1e-7 relative the adjoint must meet.
const H: f64 = 1e-5;
const FD: Tolerance = Tolerance::rel_abs(1e-7, 1e-9);

fn finite_differences_suite(seqs: usize, sets: usize, groups: usize, per_step: bool) {
    let steps = 17;
    let c = case(
        seqs,
        steps,
        sets,
        groups,
        per_step,
        seqs as u64 * 7 + per_step as u64,
    );
    let (s, t) = (c.seqs, c.steps);
    let name = format!("S={s} P={sets} G={groups} per_step={per_step}");
    let batch = Batch::new(&c.x, s, t, &c.params).unwrap();
    let fwd = CpuEngine::reference()
        .run(&batch, &RunOptions::default())
        .unwrap();
    let vjp = CpuEngine::reference()
        .vjp(&batch, &fwd.w, &c.g, &VjpOptions::default())
        .unwrap();
    // dL/dx, trajectory by trajectory, from the f64 adjoint.
    for p in 0..sets {
        for si in 0..s {
            let i = p * s + si;
            let dev = c.params.device(p, si);
            let xs = &c.x[si * t..(si + 1) * t];
            let mut w = vec![0.0; t];
            ddk_trajectory(xs, &c.params, dev, &mut w, None, None);
            let g64: Vec<f64> = c.g[i * t..(i + 1) * t].iter().map(|&v| v as f64).collect();
            let per = c.params.steps().unwrap_or(1);
            let (mut gx, mut ga, mut gb) = (vec![0.0; t], vec![0.0; per], vec![0.0; per]);
            ddk_vjp_trajectory(xs, &c.params, dev, &w, &g64, &mut gx, &mut ga, &mut gb);
            let x64: Vec<f64> = xs.iter().map(|&v| v as f64).collect();
            let fd = (0..t).map(|j| {
                let (mut up, mut dn) = (x64.clone(), x64.clone());
                up[j] += H;
                dn[j] -= H;
                let gi = &c.g[i * t..(i + 1) * t];
                (loss_f64(&up, gi, &c.params, dev) - loss_f64(&dn, gi, &c.params, dev)) / (2.0 * H)
            });
            FD.compare(&format!("{name} dL/dx"), gx.iter().copied(), fd, |j| {
                format!("set {p} seq {si} step {j}")
            })
            .unwrap();
            // The engine's dL/dx is this, rounded to f32.
            for j in 0..t {
                assert_eq!(
                    vjp.grad_x[i * t + j],
                    gx[j] as f32,
                    "{name} set {p} seq {si} step {j}"
                );
            }
        }
    }
    // dL/dalpha, dL/dbeta of every device (and every step when per step).
    let per = c.params.steps().unwrap_or(1);
    let devices = sets * groups;
    let mut fd_a = Vec::new();
    let mut fd_b = Vec::new();
    for dev in 0..devices {
        for k in 0..per {
            for (which, out) in [(0, &mut fd_a), (1, &mut fd_b)] {
                if per_step && k == 0 {
                    out.push(0.0); // entry 0 acts on no step
                    continue;
                }
                let at = dev * per + k;
                let perturbed = |d: f64| {
                    let (mut a, mut b) = (c.params.alpha().to_vec(), c.params.beta().to_vec());
                    if which == 0 {
                        a[at] += d;
                    } else {
                        b[at] += d;
                    }
                    let p = DeviceParams::new(
                        sets,
                        groups,
                        c.params.steps(),
                        a,
                        b,
                        c.params.w0().to_vec(),
                    )
                    .unwrap();
                    device_loss(&c, &p, dev)
                };
                out.push((perturbed(H) - perturbed(-H)) / (2.0 * H));
            }
        }
    }
    let desc = |i: usize| format!("device {} step {}", i / per, i % per);
    FD.compare(
        &format!("{name} dL/dalpha"),
        vjp.grad_alpha.iter().copied(),
        fd_a,
        desc,
    )
    .unwrap();
    FD.compare(
        &format!("{name} dL/dbeta"),
        vjp.grad_beta.iter().copied(),
        fd_b,
        desc,
    )
    .unwrap();
}

#[test]
fn adjoint_matches_central_finite_differences_scalar_and_per_step() {
    for seqs in [1, 63, 64, 65] {
        for per_step in [false, true] {
            finite_differences_suite(seqs, 2, 1, per_step);
        }
    }
    finite_differences_suite(10, 2, 3, false);
    finite_differences_suite(10, 2, 3, true);
}

/// f32 against the f64 reference adjoint (itself checked against finite
/// differences above). dL/dx: the f32 states carry up to
/// `Tolerance::F32_VS_F64` (3e-5) relative error, and lambda is a sum of
/// cotangents damped by |1 - alpha/w^2| <= q < 1 (contracting regime), so its
/// relative error stays within ~3e-5 / (1 - q) plus a few ulp per step: we
/// allow 2e-4 relative and 2e-5 absolute (cotangents are O(1)). Parameter
/// gradients are sums of `n_terms` such terms (every step of every sequence a
/// device drives; per step: every sequence) with cancellation, so their error
/// is bounded by the terms' errors, not by the sum: we allow 2e-4 relative plus
/// 4e-5 absolute per summed term.
fn f32_parity(engine: &dyn VjpEngine, fwd: &dyn Engine, chunk: Option<usize>) {
    for seqs in [1, 63, 64, 65, 1000] {
        for (sets, groups) in [(1, 1), (3, 2)] {
            for per_step in [false, true] {
                let steps = 23;
                let c = case(seqs, steps, sets, groups, per_step, seqs as u64 + 11);
                let batch = Batch::new(&c.x, seqs, steps, &c.params).unwrap();
                let opts = RunOptions {
                    chunk,
                    ..RunOptions::default()
                };
                let w32 = fwd.run(&batch, &opts).unwrap().w;
                let vo = VjpOptions { chunk };
                let got = engine.vjp(&batch, &w32, &c.g, &vo).unwrap();
                let want = CpuEngine::reference().vjp(&batch, &w32, &c.g, &vo).unwrap();
                let name = format!(
                    "{} S={seqs} P={sets} G={groups} per_step={per_step} chunk={chunk:?}",
                    engine.info().backend
                );
                Tolerance::rel_abs(2e-4, 2e-5)
                    .compare(
                        &format!("{name} dL/dx"),
                        got.grad_x.iter().map(|&v| v as f64),
                        want.grad_x.iter().map(|&v| v as f64),
                        |i| format!("trajectory {}, step {}", i / steps, i % steps),
                    )
                    .unwrap();
                let terms = (seqs / groups + 1) * if per_step { 1 } else { steps };
                let tol = Tolerance::rel_abs(2e-4, 4e-5 * terms as f64);
                tol.compare(
                    &format!("{name} dL/dalpha"),
                    got.grad_alpha.iter().copied(),
                    want.grad_alpha.iter().copied(),
                    |i| format!("entry {i}"),
                )
                .unwrap();
                tol.compare(
                    &format!("{name} dL/dbeta"),
                    got.grad_beta.iter().copied(),
                    want.grad_beta.iter().copied(),
                    |i| format!("entry {i}"),
                )
                .unwrap();
            }
        }
    }
}

#[test]
fn cpu_f32_adjoint_matches_f64_reference() {
    f32_parity(&CpuEngine::fast(), &CpuEngine::fast(), None);
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn gpu_adjoint_matches_cpu_reference_with_default_and_tiny_chunks() {
    let ctx = gpu_context();
    let fwd = memkin::engine::gpu::GpuEngine::new(ctx.clone()).unwrap();
    let rev = GpuVjpEngine::new(ctx).unwrap();
    f32_parity(&rev, &fwd, None);
    f32_parity(&rev, &fwd, Some(7));
    f32_parity(&rev, &fwd, Some(1));
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn gpu_adjoint_matches_cpu_f32_adjoint_closely() {
    // Same loop, same order of operations, same f32 states: only division and
    // fused operations may round differently (a few ulp per step).
    let ctx = gpu_context();
    let rev = GpuVjpEngine::new(ctx).unwrap();
    let c = case(300, 31, 2, 1, false, 5);
    let batch = Batch::new(&c.x, 300, 31, &c.params).unwrap();
    let w = CpuEngine::fast()
        .run(&batch, &RunOptions::default())
        .unwrap()
        .w;
    let a = rev
        .vjp(&batch, &w, &c.g, &VjpOptions { chunk: Some(64) })
        .unwrap();
    let b = CpuEngine::fast()
        .vjp(&batch, &w, &c.g, &VjpOptions::default())
        .unwrap();
    Tolerance::rel_abs(1e-5, 1e-6)
        .compare(
            "gpu vs cpu f32 dL/dx",
            a.grad_x.iter().map(|&v| v as f64),
            b.grad_x.iter().map(|&v| v as f64),
            |i| format!("index {i}"),
        )
        .unwrap();
}

#[test]
fn cotangents_of_the_wrong_shape_or_not_finite_are_refused() {
    let c = case(4, 5, 1, 1, false, 1);
    let batch = Batch::new(&c.x, 4, 5, &c.params).unwrap();
    let w = vec![1.0f32; 20];
    let e = CpuEngine::fast()
        .vjp(&batch, &w, &c.g[..19], &VjpOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cotangents length") && e.contains("[1, 4, 5]"),
        "{e}"
    );
    let mut g = c.g.clone();
    g[7] = f32::NAN;
    let e = CpuEngine::fast()
        .vjp(&batch, &w, &g, &VjpOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cotangent[0, 1, 2]"), "{e}");
}

#[test]
fn vjp_shader_uniform_layout_matches_rust() {
    crate::common::assert_uniform_layout(
        &shaders::DDK_VJP.full_source(),
        "VjpUniform",
        std::mem::size_of::<VjpUniform>(),
        &[
            "n_traj",
            "seqs",
            "steps",
            "groups",
            "seq_offset",
            "per_step",
            "grid_x",
            "pad",
        ],
    );
}
