//! `memkin simulate --vjp G.npy --grad-input GX.npy --grad-params GP.npy`:
//! the CLI's gradients against the library's reverse kernel, and its error
//! paths (exit 2, one line, nothing written).

use memkin::batch::{Batch, DeviceParams};
use memkin::engine::cpu::CpuEngine;
use memkin::engine::vjp::{VjpEngine, VjpOptions};
use memkin::engine::{Engine, Precision, RunOptions};
use memkin::rng::Rng;
use ndarray::{ArrayD, IxDyn};
use std::path::Path;
use std::process::{Command, Output};

fn memkin(args: &[&str], paths: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_memkin"));
    c.args(["simulate", "--backend", "cpu", "--precision", "f64"]);
    c.args(args);
    for (flag, p) in paths {
        c.arg(flag).arg(p);
    }
    c.output().unwrap()
}

fn write(path: &Path, v: Vec<f32>, shape: &[usize]) {
    ndarray_npy::write_npy(path, &ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()).unwrap();
}

fn random(n: usize, rng: &mut Rng, lo: f64, hi: f64) -> Vec<f32> {
    (0..n)
        .map(|_| (lo + (hi - lo) * rng.next_f64()) as f32)
        .collect()
}

#[test]
fn simulate_vjp_writes_the_library_gradients_scalar_and_per_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (s, t) = (4, 7);
    let mut rng = Rng::new(11);
    let x = random(s * t, &mut rng, 0.0, 1.0);
    write(&d.join("x.npy"), x.clone(), &[s, t]);
    let f64_engine = CpuEngine::new(Precision::F64);

    // Scalar --alpha/--beta: G, GX [S, T], GP [2].
    let g = random(s * t, &mut rng, -1.0, 1.0);
    write(&d.join("g.npy"), g.clone(), &[s, t]);
    let o = memkin(
        &["--alpha", "0.7", "--beta", "0.9"],
        &[
            ("--input", &d.join("x.npy")),
            ("--out", &d.join("w.npy")),
            ("--vjp", &d.join("g.npy")),
            ("--grad-input", &d.join("gx.npy")),
            ("--grad-params", &d.join("gp.npy")),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let params = DeviceParams::scalar(&[(0.7, 0.9)], 1.0).unwrap();
    let batch = Batch::new(&x, s, t, &params).unwrap();
    let f = f64_engine.run(&batch, &RunOptions::default()).unwrap();
    let want = f64_engine
        .vjp(&batch, &f.w, &g, &VjpOptions::default())
        .unwrap();
    let gx: ArrayD<f32> = ndarray_npy::read_npy(d.join("gx.npy")).unwrap();
    let gp: ArrayD<f64> = ndarray_npy::read_npy(d.join("gp.npy")).unwrap();
    assert_eq!(gx.shape(), &[s, t]);
    assert_eq!(gp.shape(), &[2]);
    // The same computation (f64 CPU reference) in the same order: bit equal.
    assert_eq!(gx.as_slice().unwrap(), want.grad_x.as_slice());
    assert_eq!(gp.as_slice().unwrap(), want.grad_params().as_slice());
    assert!(want.grad_alpha[0] != 0.0 && want.grad_beta[0] != 0.0);

    // Per-step --params [P, 2, T]: G, GX [P, S, T], GP [P, 2, T].
    let p = 2;
    let mut pv = Vec::new();
    let (mut al, mut be) = (Vec::new(), Vec::new());
    for _ in 0..p {
        let a = random(t, &mut rng, 0.5, 0.9);
        let b = random(t, &mut rng, 0.2, 0.6);
        pv.extend_from_slice(&a);
        pv.extend_from_slice(&b);
        al.extend(a.iter().map(|&v| v as f64));
        be.extend(b.iter().map(|&v| v as f64));
    }
    write(&d.join("p.npy"), pv, &[p, 2, t]);
    let g = random(p * s * t, &mut rng, -1.0, 1.0);
    write(&d.join("g3.npy"), g.clone(), &[p, s, t]);
    let o = memkin(
        &[],
        &[
            ("--input", &d.join("x.npy")),
            ("--params", &d.join("p.npy")),
            ("--out", &d.join("w3.npy")),
            ("--vjp", &d.join("g3.npy")),
            ("--grad-input", &d.join("gx3.npy")),
            ("--grad-params", &d.join("gp3.npy")),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let params = DeviceParams::per_step(p, t, al, be, 1.0).unwrap();
    let batch = Batch::new(&x, s, t, &params).unwrap();
    let f = f64_engine.run(&batch, &RunOptions::default()).unwrap();
    let want = f64_engine
        .vjp(&batch, &f.w, &g, &VjpOptions::default())
        .unwrap();
    let gx: ArrayD<f32> = ndarray_npy::read_npy(d.join("gx3.npy")).unwrap();
    let gp: ArrayD<f64> = ndarray_npy::read_npy(d.join("gp3.npy")).unwrap();
    assert_eq!(gx.shape(), &[p, s, t]);
    assert_eq!(gp.shape(), &[p, 2, t]);
    assert_eq!(gx.as_slice().unwrap(), want.grad_x.as_slice());
    assert_eq!(gp.as_slice().unwrap(), want.grad_params().as_slice());
    // Layout: set 1's beta gradient at step 3 is the library's.
    assert_eq!(gp[[1, 1, 3]], want.grad_beta[t + 3]);
}

#[test]
fn simulate_vjp_bad_cotangents_exit_2_with_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(&d.join("x.npy"), vec![0.5; 12], &[3, 4]);
    write(&d.join("g_shape.npy"), vec![0.5; 9], &[3, 3]);
    write(&d.join("g_rank.npy"), vec![0.5; 12], &[1, 3, 4]);
    let mut nan = vec![0.5f32; 12];
    nan[6] = f32::NAN;
    write(&d.join("g_nan.npy"), nan, &[3, 4]);
    write(&d.join("g_ok.npy"), vec![0.5; 12], &[3, 4]);
    let cases: [(&str, Option<&str>, &[&str]); 5] = [
        (
            "g_shape.npy",
            Some("--grad-input"),
            &["g_shape.npy", "[3, 3]", "[3, 4]", "[S, T]"],
        ),
        (
            "g_rank.npy",
            Some("--grad-input"),
            &["g_rank.npy", "[1, 3, 4]", "[S, T]"],
        ),
        (
            "g_nan.npy",
            Some("--grad-params"),
            &["g_nan.npy", "[1, 2]", "NaN", "finite"],
        ),
        (
            "g_ok.npy",
            None,
            &["--vjp", "--grad-input", "--grad-params"],
        ),
        // The output would replace an input.
        ("g_ok.npy", Some("--grad-input=g_ok"), &["g_ok.npy"]),
    ];
    for (g, grad_flag, needles) in cases {
        let gp = d.join(g);
        let target = d.join("grad.npy");
        let (x, w) = (d.join("x.npy"), d.join("w.npy"));
        let mut paths: Vec<(&str, &Path)> = vec![("--input", &x), ("--out", &w), ("--vjp", &gp)];
        match grad_flag {
            Some("--grad-input=g_ok") => paths.push(("--grad-input", &gp)),
            Some(f) => paths.push((f, &target)),
            None => {}
        }
        let o = memkin(&["--alpha", "0.7", "--beta", "0.9"], &paths);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{g} {grad_flag:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{g}: {err}");
        for n in needles {
            assert!(err.contains(n), "{g} {grad_flag:?}: {err} lacks {n}");
        }
        assert!(!d.join("w.npy").exists(), "{g}: wrote the features");
        assert!(!target.exists(), "{g}: wrote a gradient");
        let back: ArrayD<f32> = ndarray_npy::read_npy(&gp).unwrap();
        assert_eq!(
            back.len(),
            back.shape().iter().product::<usize>(),
            "{g} intact"
        );
    }
}

/// The input and parameter files of `simulate` are read and checked by the
/// library (`data::npy::read_sequences`, `read_device_params`), the pulse by
/// `PulseProtocol::check`: each bad one is exit 2, one line naming the file
/// (or the flag) and the valid range, and nothing is written.
#[test]
fn simulate_bad_inputs_parameter_files_and_pulses_name_the_file_or_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(&d.join("x.npy"), vec![0.5; 12], &[3, 4]);
    write(&d.join("x1.npy"), vec![0.5; 4], &[4]);
    let mut nan = vec![0.5f32; 12];
    nan[5] = f32::NAN;
    write(&d.join("xnan.npy"), nan, &[3, 4]);
    write(&d.join("p_shape.npy"), vec![0.5; 6], &[2, 3]);
    write(&d.join("p_steps.npy"), vec![0.5; 20], &[2, 2, 5]);
    write(&d.join("p_neg.npy"), vec![0.5, 0.5, 0.5, -2.0], &[2, 2]);
    let out = d.join("w.npy");
    let ddk = ["--alpha", "0.5", "--beta", "0.5"];
    let ode = ["--model", "ddk-ode"];
    let cases: [(&str, Vec<&str>, &[&str]); 7] = [
        (
            "x1.npy",
            ddk.to_vec(),
            &["x1.npy: shape [4]: expected [S, T] (rank 2)"],
        ),
        (
            "xnan.npy",
            ddk.to_vec(),
            &["xnan.npy: element [1, 1] is NaN: expected finite"],
        ),
        (
            "xnan.npy",
            ode.to_vec(),
            &["xnan.npy: element [1, 1] is NaN: expected finite"],
        ),
        (
            "x.npy",
            vec!["--params", "p_shape.npy"],
            &["p_shape.npy: shape [2, 3]: expected [P, 2] or [P, 2, T]"],
        ),
        (
            "x.npy",
            vec!["--params", "p_steps.npy"],
            &["p_steps.npy: shape [2, 2, 5]: per-step T = 5 but the input has T = 4"],
        ),
        (
            "x.npy",
            vec!["--params", "p_neg.npy"],
            &["p_neg.npy: beta[set 1] = -2: finite and > 0"],
        ),
        (
            "x.npy",
            [&ode[..], &["--pulse-width", "0"]].concat(),
            &["--pulse-width = 0: finite, > 0"],
        ),
    ];
    for (input, flags, want) in cases {
        let flags: Vec<String> = flags
            .iter()
            .map(|f| {
                if f.ends_with(".npy") {
                    d.join(f).to_string_lossy().into_owned()
                } else {
                    f.to_string()
                }
            })
            .collect();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let o = memkin(&flags, &[("--input", &d.join(input)), ("--out", &out)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{input} {flags:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        for w in want {
            assert!(err.contains(w), "{input} {flags:?}: {err} lacks {w:?}");
        }
        assert!(!out.exists());
    }
    let o = memkin(
        &["--alpha", "-1", "--beta", "1"],
        &[("--input", &d.join("x.npy")), ("--out", &out)],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.trim().ends_with("--alpha = -1: finite and > 0"),
        "{err}"
    );
}
