//! The continuous-time engines: GPU (f32, `shaders/ode.wgsl`) against the CPU
//! f64 reference for every model and integrator, the paper's map as Euler's
//! special case through the ODE engine on both backends, the fit recovering
//! known parameters from noisy synthetic traces, and the CLI's errors.

use crate::common::{Reference, TestRng, assert_parity, gpu_context, gpu_engine};
use memkin::batch::{Batch, DeviceParams, Features};
use memkin::engine::gpu::GpuOdeEngine;
use memkin::engine::ode::{OdeSpec, run_ode_cpu};
use memkin::engine::tolerance::Tolerance;
use memkin::engine::{Engine, RunOptions};
use memkin::model::Model;
use memkin::model::fit::{FitOptions, SyntheticTrace, fit, synthetic_trace};
use memkin::model::integrate::{AdaptiveOptions, Integrator, PulseProtocol};

/// `S` random inputs in [0, 1) and `P` random parameter sets inside each
/// model's well-behaved region, with a protocol that has rests.
fn random_spec(model: Model, integrator: Integrator, sets: usize, seed: u64) -> OdeSpec {
    let mut r = TestRng(seed);
    let mut params = Vec::new();
    let mut w0 = Vec::new();
    for _ in 0..sets {
        let mut p = model.defaults();
        match model {
            Model::DdkOde => {
                p[0] = r.uniform(0.3, 1.0);
                p[1] = r.uniform(0.2, 1.2);
                w0.push(r.uniform(0.5, 2.0));
            }
            Model::Diffusive => {
                p[0] = r.uniform(0.05, 0.2);
                p[1] = r.uniform(1.0, 3.0);
                p[2] = r.uniform(3.0, 20.0);
                w0.push(r.uniform(0.0, 0.5));
            }
            Model::LinearDrift => {
                p[1] = r.uniform(8e3, 20e3);
                p[3] = r.uniform(0.5e4, 1e4);
                w0.push(r.uniform(0.05, 0.6));
            }
        }
        params.extend(p);
    }
    let pulse = match model {
        Model::DdkOde => PulseProtocol {
            v_scale: 1.0,
            tau: 0.5,
            rest: 0.25,
        },
        Model::Diffusive => PulseProtocol {
            v_scale: 1.0,
            tau: 1.0,
            rest: 2.0,
        },
        // Short pulses: in the on state (R ~ r_on) the window's slope makes the
        // law stiff (dw'/dw ~ -4 mu_v r_on V / (D^2 R) ~ -400 / s), so explicit
        // sub-steps (here 2.5 ms) must stay below ~2 / 400 s at mu_v <= 1e4;
        // longer ones oscillate, and
        // then f32 and f64 differ for lack of stability, not of precision.
        Model::LinearDrift => PulseProtocol {
            v_scale: 1.0,
            tau: 0.01,
            rest: 0.01,
        },
    };
    OdeSpec {
        model,
        integrator,
        pulse,
        params,
        w0,
    }
}

fn inputs(seqs: usize, steps: usize, seed: u64) -> Vec<f32> {
    let mut r = TestRng(seed);
    (0..seqs * steps)
        .map(|_| r.uniform(0.0, 1.0) as f32)
        .collect()
}

/// Every integrator the GPU runs for `model`, as tested (`exact` for the
/// models with a closed form).
fn gpu_integrators(model: Model) -> Vec<Integrator> {
    let mut v = vec![
        Integrator::Euler { substeps: 4 },
        Integrator::Heun { substeps: 4 },
        Integrator::Rk4 { substeps: 4 },
        Integrator::Adaptive(AdaptiveOptions {
            rtol: 1e-5,
            atol: 1e-8,
            max_steps: 10_000,
        }),
    ];
    if model.has_exact() {
        v.push(Integrator::Exact);
    }
    v
}

/// The tolerance of f32 GPU features against the f64 CPU reference.
///
/// Fixed-step methods run the same operations in both: each (sub)step rounds
/// by a few f32 ulp (~2.4e-7 relative; division and sinh/exp/pow within a few
/// ulp on Vulkan), and all three models contract between pulses (ddk-ode
/// relaxes to alpha / (beta V); diffusive decays as exp(-t/tau); linear-drift
/// is slowed by its window), so the state's accumulated error over T = 24
/// pulses of 4 sub-steps stays within ~100 ulp: 2e-5 relative is an upper
/// bound with room. The adaptive method adds its own error on each side: both
/// meet rtol = 1e-5 per step, but f32 rounding changes the accepted step
/// sequence, so the two solutions may differ by a few rtol over a trajectory:
/// 1e-4 relative. linear-drift's feature is the conductance 1 / R(w), which
/// amplifies the state's error by (r_off - r_on) / R(w) (up to r_off / r_on =
/// 160 in the on state; 1 - w loses digits to cancellation there): its
/// relative tolerances are 10x larger. The absolute parts are 1e-6 of each
/// model's feature scale (w ~ 1; read currents ~ 1 µA; conductances ~ 1e-3 S).
///
/// `exact` (ddk-ode) also gets 2e-5: each segment's f32 closed form is
/// accurate to a few ulp (measured on lavapipe: <= 5e-7 relative over 20,000
/// random single pulses; Fritsch's iteration converges to rounding, and where
/// `1 + W` cancels or GPU `log` (2^-21 absolute on [0.5, 2]) would limit it,
/// Newton on `phi(q) = Phi` with `phi` summed without `log` restores full
/// relative precision), and the same contraction towards `alpha / (beta V)` keeps
/// the sum over 24 pulses and rests within ~100 ulp. With `V < 0` nothing
/// contracts, but the state grows ~linearly in t, so relative errors only
/// add: 24 pulses x 2 segments x a few ulp is still far below 2e-5.
fn tolerance(model: Model, integrator: &Integrator) -> Tolerance {
    let (scale, amplification) = match model {
        Model::DdkOde | Model::Diffusive => (1.0, 1.0),
        Model::LinearDrift => (1e-3, 10.0),
    };
    let rel = match integrator {
        Integrator::Adaptive(_) => 1e-4,
        _ => 2e-5,
    };
    Tolerance::rel_abs(rel * amplification, 1e-6 * scale)
}

/// Largest `|got - want| / (|want| + abs)` (for the report).
fn max_rel_err(got: &[f32], want: &[f32], abs: f64) -> f64 {
    got.iter()
        .zip(want)
        .map(|(&g, &w)| ((g as f64 - w as f64).abs()) / (w.abs() as f64 + abs))
        .fold(0.0, f64::max)
}

/// The GPU run against the CPU reference through the one parity harness
/// ([`assert_parity`]: shape, lengths, statuses, first bad pulses, values).
fn assert_same(model: Model, integ: &Integrator, got: &Features, want: &Features, spec: &OdeSpec) {
    let tol = tolerance(model, integ);
    assert_parity(
        &format!("{} {} gpu vs cpu", model.name(), integ.name()),
        got,
        &Reference::of(want).expected(),
        tol,
        tol,
        |p, s, k| {
            format!(
                "trajectory (set {p}, seq {s}), pulse {k}: params {:?}, w0 {}",
                spec.set(p),
                spec.w0[p]
            )
        },
    );
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn gpu_features_match_cpu_reference_for_every_model_and_integrator() {
    let ctx = gpu_context();
    let gpu = GpuOdeEngine::new(ctx);
    let steps = 24;
    // (sets, seqs, chunk): 1, 63, 64, 65 trajectories with tiny chunks, and
    // 3 x 1000 = 3000 with the default chunking and with small ones.
    let shapes = [
        (1, 1, Some(1)),
        (1, 63, Some(5)),
        (1, 64, Some(7)),
        (1, 65, Some(64)),
        (3, 1000, None),
        (3, 1000, Some(257)),
    ];
    for model in Model::ALL {
        for integ in gpu_integrators(model) {
            let mut worst = 0.0f64;
            for (k, &(sets, seqs, chunk)) in shapes.iter().enumerate() {
                let spec = random_spec(model, integ, sets, 7 + k as u64);
                let x = inputs(seqs, steps, 100 + k as u64);
                let want = run_ode_cpu(&x, seqs, steps, &spec).unwrap();
                let got = gpu.run(&x, seqs, steps, &spec, chunk).unwrap();
                assert_eq!((got.sets, got.seqs, got.steps), (sets, seqs, steps));
                assert_same(model, &integ, &got, &want, &spec);
                worst = worst.max(max_rel_err(&got.w, &want.w, tolerance(model, &integ).abs));
            }
            eprintln!(
                "gpu vs cpu: {:<12} {:<8} max |diff| / (|cpu| + abs) = {worst:.2e}",
                model.name(),
                integ.name()
            );
        }
    }
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn gpu_refuses_the_exact_integrator_for_models_without_a_closed_form() {
    let ctx = gpu_context();
    let gpu = GpuOdeEngine::new(ctx);
    for model in [Model::Diffusive, Model::LinearDrift] {
        let spec = OdeSpec::defaults(model, Integrator::Exact, PulseProtocol::PAPER);
        let e = gpu
            .run(&[0.5; 4], 1, 4, &spec, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exact") && e.contains("no closed form") && e.contains(model.name()),
            "{e}"
        );
    }
}

/// `ddk-ode` under `exact`: GPU f32 against CPU f64 over protocols with wide
/// and narrow pulses, with and without rests, and negative amplitudes (the
/// W-1 branch: the state grows without bound), for 1, 63, 64, 65 and 3000
/// trajectories with tiny chunks. Tolerance 2e-5 relative (see [`tolerance`]).
#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn gpu_exact_matches_cpu_exact_for_ddk_ode_across_protocols() {
    let ctx = gpu_context();
    let gpu = GpuOdeEngine::new(ctx);
    let steps = 24;
    let shapes = [
        (1, 1, Some(1)),
        (1, 63, Some(5)),
        (1, 64, Some(7)),
        (1, 65, Some(64)),
        (3, 1000, Some(97)),
    ];
    let protocols = [
        (1.0, 0.5, 0.25),
        (1.0, 1.0, 0.0),
        (2.5, 0.05, 1.0),
        (0.3, 4.0, 0.5),
        (-1.0, 0.5, 0.25),
        (-0.2, 2.0, 0.0),
        (1e-3, 1.0, 1.0),
    ];
    let integ = Integrator::Exact;
    let tol = tolerance(Model::DdkOde, &integ);
    let mut worst = 0.0f64;
    for (j, &(v_scale, tau, rest)) in protocols.iter().enumerate() {
        for (k, &(sets, seqs, chunk)) in shapes.iter().enumerate() {
            let seed = (10 * j + k) as u64;
            let mut spec = random_spec(Model::DdkOde, integ, sets, 300 + seed);
            // Spread w0 wider than random_spec: well below and above alpha / c.
            let mut r = TestRng(500 + seed);
            for w in &mut spec.w0 {
                *w = 10f64.powf(r.uniform(-2.0, 1.0));
            }
            spec.pulse = PulseProtocol { v_scale, tau, rest };
            let x = inputs(seqs, steps, 700 + seed);
            let want = run_ode_cpu(&x, seqs, steps, &spec).unwrap();
            assert!(want.status.iter().all(|&s| s == 0), "cpu reference failed");
            let got = gpu.run(&x, seqs, steps, &spec, chunk).unwrap();
            assert_eq!((got.sets, got.seqs, got.steps), (sets, seqs, steps));
            assert_same(Model::DdkOde, &integ, &got, &want, &spec);
            let e = max_rel_err(&got.w, &want.w, tol.abs);
            eprintln!(
                "exact gpu vs cpu: v_scale {v_scale} tau {tau} rest {rest} {sets}x{seqs}: {e:.2e}"
            );
            worst = worst.max(e);
        }
    }
    eprintln!("exact gpu vs cpu: max |diff| / (|cpu| + abs) = {worst:.2e}");
}

/// The WGSL closed form at and towards its fixed point `w* = alpha / (beta V)`:
/// started there it stays (to f32 rounding of `q0 = 1`), and from far below
/// or above it a long pulse lands on it.
#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn gpu_exact_holds_and_reaches_the_fixed_point() {
    let ctx = gpu_context();
    let gpu = GpuOdeEngine::new(ctx);
    let steps = 8;
    for (alpha, beta, v_scale) in [(0.7, 1.0, 1.0), (0.3, 2.5, 0.8), (2.0, 0.1, 3.0)] {
        let ws = alpha / (beta * v_scale);
        for (w0, tau) in [(ws, 0.5), (ws, 50.0), (1e-2 * ws, 1e3), (30.0 * ws, 1e4)] {
            let spec = OdeSpec {
                model: Model::DdkOde,
                integrator: Integrator::Exact,
                pulse: PulseProtocol {
                    v_scale,
                    tau,
                    rest: 0.0,
                },
                params: vec![alpha, beta],
                w0: vec![w0],
            };
            let x = vec![1.0f32; steps];
            let got = gpu.run(&x, 1, steps, &spec, None).unwrap();
            let cpu = run_ode_cpu(&x, 1, steps, &spec).unwrap();
            assert_eq!(got.status, vec![0]);
            for k in 1..steps {
                let (g, c) = (got.w[k] as f64, cpu.w[k] as f64);
                assert!(
                    ((g - ws) / ws).abs() < 2e-6,
                    "alpha {alpha} beta {beta} v {v_scale} w0 {w0} tau {tau}: gpu w[{k}] = {g}, w* = {ws}"
                );
                assert!(((c - ws) / ws).abs() < 1e-6, "cpu w[{k}] = {c}, w* = {ws}");
            }
        }
    }
}

/// Euler with one unit sub-step under the paper's protocol, through the ODE
/// engine, against the DDK map engine of the same backend.
fn ode_euler_equals_map(
    ode: &dyn Fn(&[f32], usize, usize, &OdeSpec) -> Features,
    map: &dyn Engine,
) {
    let (seqs, steps) = (65, 40);
    let x = inputs(seqs, steps, 3);
    let pairs = [(0.7, 1.0), (0.3, 0.5), (0.143, 0.838)]; // the last one blows up
    let mut spec = OdeSpec::defaults(
        Model::DdkOde,
        Integrator::Euler { substeps: 1 },
        PulseProtocol::PAPER,
    );
    spec.params = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
    spec.w0 = vec![1.0; pairs.len()];
    let got = ode(&x, seqs, steps, &spec);
    let params = DeviceParams::scalar(&pairs, 1.0).unwrap();
    let batch = Batch::new(&x, seqs, steps, &params).unwrap();
    let want = map.run(&batch, &RunOptions::default()).unwrap();
    assert!(
        want.status.iter().any(|&s| s != 0),
        "the unstable set must be flagged"
    );
    // Bit for bit: a tolerance of zero (NaN matches only NaN).
    let exact = Tolerance::rel_abs(0.0, 0.0);
    assert_parity(
        "ode euler(1) vs map",
        &got,
        &Reference::of(&want).expected(),
        exact,
        exact,
        |p, s, k| format!("set {p} {:?}, seq {s}, step {k}", pairs[p]),
    );
}

#[test]
fn euler_with_one_unit_substep_is_the_discrete_map_through_the_ode_engine_on_cpu() {
    let cpu = memkin::engine::cpu::CpuEngine::new(memkin::engine::Precision::F64);
    ode_euler_equals_map(&|x, s, t, spec| run_ode_cpu(x, s, t, spec).unwrap(), &cpu);
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn euler_with_one_unit_substep_is_the_discrete_map_through_the_ode_engine_on_gpu() {
    let (ctx, map) = (gpu_context(), gpu_engine());
    let gpu = GpuOdeEngine::new(ctx);
    ode_euler_equals_map(
        &|x, s, t, spec| gpu.run(x, s, t, spec, Some(13)).unwrap(),
        &map,
    );
}

/// Fits `free` of `model` to a noisy synthetic trace made with `truth`,
/// starting from the model's defaults, and checks each within `rel`.
fn recovers(model: Model, truth: &[(&str, f64)], amps: Vec<f64>, noise: f64, rel: f64) {
    let integ = Integrator::Rk4 { substeps: 16 };
    let names: Vec<&str> = model.params().iter().map(|p| p.name).collect();
    let mut p = model.defaults();
    let free: Vec<usize> = truth
        .iter()
        .map(|(n, v)| {
            let j = names.iter().position(|m| m == n).unwrap();
            p[j] = *v;
            j
        })
        .collect();
    let w0 = model.w0_spec().default;
    let s = SyntheticTrace {
        amplitudes: amps,
        tau: 1.0,
        rest: 1.0,
        per_pulse: 5,
        per_rest: 5,
        noise,
        seed: 42,
    };
    let trace = synthetic_trace(model, &integ, &p, w0, &s);
    let r = fit(
        &trace,
        &FitOptions {
            model,
            integrator: integ,
            start: model.defaults(),
            w0,
            free: free.clone(),
            fit_w0: false,
            max_iter: 200,
        },
    )
    .unwrap();
    for (k, &j) in free.iter().enumerate() {
        let err = (r.params[j] - p[j]).abs() / p[j];
        eprintln!(
            "fit {}: {} = {:.5} ± {:.1e} (truth {}, error {:.2}%), SSR {:.3e}, {} iterations",
            model.name(),
            names[j],
            r.params[j],
            r.std_err[k],
            p[j],
            100.0 * err,
            r.ssr,
            r.iterations
        );
        assert!(err < rel, "{}: {} vs truth {}", names[j], r.params[j], p[j]);
    }
    assert!(r.ssr < r.ssr_start);
}

#[test]
fn fit_recovers_ddk_ode_alpha_and_beta_within_5_percent_from_a_noisy_trace() {
    let amps = (0..40)
        .map(|k| 0.3 + 0.7 * ((k * 7 % 13) as f64 / 12.0))
        .collect();
    recovers(
        Model::DdkOde,
        &[("alpha", 0.45), ("beta", 1.3)],
        amps,
        0.01,
        0.05,
    );
}

#[test]
fn fit_recovers_diffusive_kinetics_within_5_percent_from_a_noisy_trace() {
    let amps = (0..40)
        .map(|k| 0.2 + 0.8 * ((k * 5 % 11) as f64 / 10.0))
        .collect();
    recovers(
        Model::Diffusive,
        &[("lambda", 0.05), ("eta", 2.5), ("tau", 6.0)],
        amps,
        0.01,
        0.05,
    );
}

fn memkin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_memkin"))
}

#[test]
fn simulate_with_a_bad_set_name_or_value_exits_2_naming_it_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.npy");
    ndarray_npy::write_npy(&input, &ndarray::Array2::<f32>::from_elem((2, 5), 0.5)).unwrap();
    let out = dir.path().join("w.npy");
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["--model", "ddk-ode", "--set", "gamma=1"],
            &["gamma", "alpha, beta"],
        ),
        (
            &["--model", "ddk-ode", "--set", "alpha=-1"],
            &["alpha", "(0, inf)"],
        ),
        (
            &["--model", "diffusive", "--set", "eta=99"],
            &["diffusive.eta", "[0, 50]"],
        ),
        (
            &["--set", "alpha=1", "--alpha", "1", "--beta", "1"],
            &["--set", "--model"],
        ),
    ];
    for (args, needles) in cases {
        let o = memkin()
            .args(["simulate", "--backend", "cpu", "--input"])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: {err} lacks {n}");
        }
        assert!(!out.exists(), "{args:?} wrote output");
    }
}

#[test]
fn simulate_and_fit_cli_run_an_ode_model_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.npy");
    ndarray_npy::write_npy(&input, &ndarray::Array2::<f32>::from_elem((3, 6), 0.5)).unwrap();
    let out = dir.path().join("w.npy");
    let o = memkin()
        .args([
            "simulate",
            "--backend",
            "cpu",
            "--json",
            "--model",
            "ddk-ode",
        ])
        .args([
            "--integrator",
            "exact",
            "--set",
            "alpha=0.5",
            "--set",
            "beta=0.8",
        ])
        .args(["--pulse-width", "0.5", "--rest", "0.1", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["params"]["alpha"], 0.5);
    assert_eq!(v["params"]["beta"], 0.8);
    let w: ndarray::Array2<f32> = ndarray_npy::read_npy(&out).unwrap();
    assert_eq!(w.shape(), &[3, 6]);

    // A trace CSV through `memkin fit`.
    let s = SyntheticTrace {
        amplitudes: (0..20).map(|k| 0.3 + 0.05 * k as f64).collect(),
        tau: 1.0,
        rest: 0.5,
        per_pulse: 4,
        per_rest: 2,
        noise: 0.0,
        seed: 1,
    };
    let tr = synthetic_trace(
        Model::DdkOde,
        &Integrator::Rk4 { substeps: 16 },
        &[0.5, 0.8],
        1.0,
        &s,
    );
    let csv = dir.path().join("trace.csv");
    let mut text = String::from("time,voltage,state\n");
    for i in 0..tr.time.len() {
        text += &format!("{},{},{}\n", tr.time[i], tr.voltage[i], tr.observed[i]);
    }
    std::fs::write(&csv, text).unwrap();
    let fit_dir = dir.path().join("fit");
    let o = memkin()
        .args(["fit", "--json", "--model", "ddk-ode", "--trace"])
        .arg(&csv)
        .arg("--out")
        .arg(&fit_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let a = v["params"]["alpha"].as_f64().unwrap();
    assert!((a - 0.5).abs() < 1e-6, "{v}");
    assert!(fit_dir.join("fit.png").exists() && fit_dir.join("fit.json").exists());
}
