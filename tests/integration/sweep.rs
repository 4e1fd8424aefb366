//! `memkin sweep` and `memkin merge` end to end, on the embedded digits dataset:
//! interruption and resume, shards merged, spec errors before any work.

use std::path::Path;
use std::process::{Command, Output};

fn memkin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memkin"))
        .args(args)
        .output()
        .expect("memkin runs")
}

const SPEC: &str = "dataset = \"digits\"\nreadout = \"ridge\"\nseed = 3\n[grid]\nalpha = { linspace = [0.1, 1.0, 4] }\nbeta = { logspace = [0.05, 2.0, 5] }\n";

/// results.csv without the `seconds` column (wall times differ between runs).
fn rows_without_seconds(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let k = header.iter().position(|c| *c == "seconds").unwrap();
    text.lines()
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| *i != k)
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

fn sweep(spec: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "sweep",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
        "--json",
    ];
    args.extend_from_slice(extra);
    memkin(&args)
}

#[test]
fn sweep_shards_merged_equal_the_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("s.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let full = tmp.path().join("full");
    let o = sweep(&spec, &full, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let selected = v["selected"].clone();
    assert!(selected["index"].is_u64(), "no selected point: {v}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["selected"], selected);
    let want = rows_without_seconds(&full);
    assert!(want[0].starts_with("index,seed,alpha,beta,train_accuracy,val_accuracy,test_accuracy"));
    // The selected row has the best validation accuracy of all rows.
    let val_col = 5;
    let best = want
        .iter()
        .skip(1)
        .filter_map(|r| r.split(',').nth(val_col)?.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    // (JSON's float parsing may differ from the CSV's in the last bit.)
    assert!((selected["val_accuracy"].as_f64().unwrap() - best).abs() < 1e-12);
    assert_eq!(want.len(), 21, "header + 20 points");
    assert!(full.join("heatmap.png").exists());
    // Points past the stability boundary have no accuracy and a diverged share.
    assert!(want.iter().skip(1).any(|r| r.contains("NaN")));

    // Three shards, merged.
    let mut dirs = Vec::new();
    for i in 0..3 {
        let d = tmp.path().join(format!("shard-{i}"));
        let o = sweep(&spec, &d, &["--shard", &format!("{i}/3")]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        dirs.push(d);
    }
    let merged = tmp.path().join("merged");
    let mut args = vec!["merge", "--out", merged.to_str().unwrap()];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    let o = memkin(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        rows_without_seconds(&merged),
        want,
        "3 shards merged differ from one run"
    );
    assert!(merged.join("heatmap.png").exists());
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        m["selected"], selected,
        "a merged sweep selects the same point"
    );
}

/// The selection never looks at the test labels: scrambling them changes the
/// test accuracies but not which point is selected (nor its validation score).
#[test]
fn permuting_the_test_labels_does_not_change_the_selected_sweep_point() {
    use memkin::engine::{BackendChoice, Precision, select};
    use memkin::pipeline::{Protocol, Sides, VAL_FRACTION, encode_protocol};
    use memkin::readout::{ReadoutKind, TrainConfig};
    use memkin::study::kinetics::Kinetics;
    use memkin::study::plan::Plan;
    use memkin::study::runner::Evaluator;
    use memkin::study::spec::SweepSpec;
    use memkin::study::sweep::{SweepEvaluator, select as pick};

    let ds = memkin::data::load("digits", None).unwrap();
    let proto = Protocol::for_dataset(&ds.name, &ds.sample_shape);
    let (train, test) = encode_protocol(&ds, &proto).unwrap();
    let spec = SweepSpec::from_text(Path::new("s.toml"), SPEC).unwrap();
    let plan = Plan::sweep(&spec);
    let points: Vec<_> = (0..plan.len()).map(|i| plan.point(i)).collect();
    let engine = select(BackendChoice::Cpu, Precision::F32).unwrap();
    let cfg = TrainConfig {
        kind: ReadoutKind::Ridge,
        ..TrainConfig::default()
    };
    let evaluate = |sides: Sides| {
        let kin = Kinetics::resolve(None, engine.as_ref(), None).unwrap();
        let mut ev = SweepEvaluator::new(kin, sides, ds.n_classes, cfg.clone(), 64).unwrap();
        let names = ev.metric_names();
        let (v, t) = (
            names.iter().position(|n| n == "val_accuracy").unwrap(),
            names.iter().position(|n| n == "test_accuracy").unwrap(),
        );
        let rows = ev.evaluate_many(&points).unwrap();
        let test: Vec<f64> = rows.iter().map(|r| r[t]).collect();
        (
            pick(rows.iter().enumerate().map(|(i, r)| (i, r[v], r[t]))).unwrap(),
            test,
        )
    };
    let sides = Sides::carve(&train, test.clone(), VAL_FRACTION, spec.seed).unwrap();
    let (honest, test_acc) = evaluate(sides.clone());
    let mut scrambled = sides;
    scrambled.test.y.rotate_left(1);
    let n_classes = ds.n_classes as u32;
    for y in &mut scrambled.test.y {
        *y = (*y + 3) % n_classes;
    }
    let (again, test_scrambled) = evaluate(scrambled);
    assert_ne!(
        test_acc, test_scrambled,
        "the scramble must reach the test scores"
    );
    assert_eq!(again.index, honest.index);
    assert_eq!(again.val_accuracy, honest.val_accuracy);
}

#[test]
fn sweep_killed_mid_run_resumes_to_the_rows_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    // 400 points committed one by one (batch = 1), so a kill lands mid-run.
    let spec = tmp.path().join("big.toml");
    std::fs::write(&spec, "dataset = \"digits\"\nseed = 5\nbatch = 1\n[grid]\nalpha = { linspace = [0.1, 1.0, 20] }\nbeta = { logspace = [0.05, 1.0, 20] }\n").unwrap();
    let full = tmp.path().join("full");
    assert!(sweep(&spec, &full, &[]).status.success());
    let want = rows_without_seconds(&full);
    let killed = tmp.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_memkin"))
        .args([
            "sweep",
            spec.to_str().unwrap(),
            "--out",
            killed.to_str().unwrap(),
            "--backend",
            "cpu",
            "--json",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let results = killed.join("results.csv");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&results)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 4
    {
        assert!(t0.elapsed().as_secs() < 60, "no rows appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = std::fs::read_to_string(&results).unwrap().lines().count();
    assert!(
        partial < 401,
        "the kill came too late to test anything ({partial} lines)"
    );
    // Without --resume a partial directory is refused (exit 2) ...
    let o = sweep(&spec, &killed, &[]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // ... with it, finished points are kept and the rest computed.
    let o = sweep(&spec, &killed, &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["already_done"].as_u64().unwrap() + v["evaluated"].as_u64().unwrap(),
        400
    );
    assert!(v["already_done"].as_u64().unwrap() >= 3);
    assert_eq!(rows_without_seconds(&killed), want);
    // A finished sweep rerun is a no-op.
    let o = sweep(&spec, &killed, &["--resume"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["evaluated"], 0);
}

#[test]
fn sweep_spec_typo_fails_before_any_work_naming_the_key_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, key) in [
        (
            "dataset = \"digits\"\nseeed = 3\n[grid]\nalpha = { values = [0.5] }\n",
            "seeed",
        ),
        (
            "dataset = \"digits\"\n[grid]\nalpah = { values = [0.5] }\n",
            "alpah",
        ),
        (
            "dataset = \"digits\"\n[grid]\nalpha = { linspce = [0.1, 1, 3] }\n",
            "linspce",
        ),
    ] {
        let spec = tmp.path().join("bad.toml");
        std::fs::write(&spec, text).unwrap();
        let out = tmp.path().join("never");
        let o = sweep(&spec, &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(key) && err.contains("line"),
            "error should name {key} and its line: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!out.exists(), "nothing written before the spec is valid");
    }
}

/// A sweep over a continuous-time model's own parameters (`[model]` table),
/// on the CPU and on the GPU backend: same points, same accuracies (the f32 GPU
/// features differ from the f64 CPU ones by ~1e-6 relative, which may move a
/// sample across a decision boundary: allow 1% of the test set).
#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn sweep_over_a_continuous_models_parameters_agrees_on_cpu_and_gpu() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("ode.toml");
    std::fs::write(
        &spec,
        "dataset = \"digits\"\nseed = 1\n[model]\nname = \"ddk-ode\"\nintegrator = \"rk4\"\nsubsteps = 4\npulse_width = 0.5\nrest = 0.5\n[grid]\nalpha = { linspace = [0.2, 1.0, 3] }\nbeta = { logspace = [0.1, 3.0, 3] }\n",
    )
    .unwrap();
    let cpu = tmp.path().join("cpu");
    let o = sweep(&spec, &cpu, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |d: &Path| -> Vec<Vec<String>> {
        std::fs::read_to_string(d.join("results.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    };
    let want = read(&cpu);
    assert_eq!(want.len(), 9);
    let _ = crate::common::gpu_context();
    let gpu = tmp.path().join("gpu");
    let o = memkin(&[
        "sweep",
        spec.to_str().unwrap(),
        "--out",
        gpu.to_str().unwrap(),
        "--backend",
        "gpu",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = read(&gpu);
    assert_eq!(got.len(), want.len(), "gpu rows vs cpu rows");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g[..4], w[..4], "index, seed, alpha, beta");
        let (ga, wa): (f64, f64) = (g[5].parse().unwrap(), w[5].parse().unwrap());
        // Points whose trajectories diverge (RK4 at these steps can overshoot
        // through w = 0) have no accuracy on either backend.
        assert_eq!(ga.is_nan(), wa.is_nan(), "divergence differs at {w:?}");
        assert!(
            ga.is_nan() || (ga - wa).abs() <= 0.01,
            "test accuracy {ga} (gpu) vs {wa} (cpu) at {w:?}"
        );
    }
}

#[test]
fn sweep_rejects_a_models_unknown_or_out_of_range_parameters_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, needle) in [
        (
            "dataset = \"digits\"\n[model]\nname = \"diffusive\"\n[grid]\nlambdaa = { values = [1] }\n",
            "lambdaa",
        ),
        (
            "dataset = \"digits\"\n[model]\nname = \"diffusive\"\n[grid]\ntau = { values = [-1, 2] }\n",
            "tau",
        ),
        (
            "dataset = \"digits\"\n[model]\nname = \"difusive\"\n[grid]\ntau = { values = [1] }\n",
            "difusive",
        ),
    ] {
        let spec = tmp.path().join("bad.toml");
        std::fs::write(&spec, text).unwrap();
        let out = tmp.path().join("never");
        let o = sweep(&spec, &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(!out.exists());
    }
}

/// `run --tune` chooses on a validation side of the training split: scrambling
/// the test labels changes the test score, never the choice.
#[test]
fn permuting_the_test_labels_does_not_change_the_tune_choice() {
    use memkin::engine::{BackendChoice, Precision, select};
    use memkin::pipeline::Protocol;
    use memkin::pipeline::tune::{TuneGrid, tune_split};
    use memkin::readout::ReadoutKind;

    let ds = memkin::data::load("digits", None).unwrap();
    let mut proto = Protocol::for_dataset(&ds.name, &ds.sample_shape);
    proto.readout.kind = ReadoutKind::Ridge;
    let engine = select(BackendChoice::Cpu, Precision::F32).unwrap();
    let grid = TuneGrid {
        alpha: vec![0.3, 0.7],
        beta: vec![0.5, 1.0, 2.0],
        ridge_lambda: vec![0.1, 10.0],
        ..TuneGrid::default()
    };
    let (honest, o) = tune_split(engine.as_ref(), &ds, &proto, &grid).unwrap();
    assert_eq!(honest.candidates + 2 * honest.diverged, 12, "{honest:?}");
    let mut scrambled = ds.clone();
    let n = scrambled.n_classes as u32;
    for y in &mut scrambled.y_test {
        *y = (*y + 1) % n;
    }
    let (again, o2) = tune_split(engine.as_ref(), &scrambled, &proto, &grid).unwrap();
    assert_ne!(
        o.test_accuracy, o2.test_accuracy,
        "the scramble must reach the test score"
    );
    assert_eq!(again, honest);
}

/// `--seed` is honoured or refused, never ignored: a sweep's seed is its
/// spec's, merged shards record theirs, simulate, fit, cost, data and
/// devices make no random choice, bench's workload follows it.
#[test]
fn seed_is_honoured_or_refused_never_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("s.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let out = tmp.path().join("o");
    let o = out.to_str().unwrap();
    for args in [
        vec![
            "sweep",
            spec.to_str().unwrap(),
            "--seed",
            "5",
            "--out",
            out.to_str().unwrap(),
        ],
        vec!["cost", "--seed", "5"],
        vec!["data", "--seed", "5", "list"],
        vec!["devices", "--seed", "5"],
        // Merged shards record their seed; simulate makes no random choice.
        vec!["merge", "a", "b", "--out", o, "--seed", "5"],
        vec!["mc", "--merge", "a", "b", "--out", o, "--seed", "5"],
        "simulate --input x.npy --alpha 0.5 --beta 0.5 --out o.npy --seed 5"
            .split(' ')
            .collect(),
        vec![
            "fit",
            "--trace",
            "examples/traces/synthetic_ddk.csv",
            "--model",
            "ddk-ode",
            "--seed",
            "5",
        ],
    ] {
        let o = memkin(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("--seed") && err.trim().lines().count() == 1,
            "{err}"
        );
    }
    assert!(!out.exists());
    let (a, _) = memkin::bench::workload(64, 8, 0);
    let (b, _) = memkin::bench::workload(64, 8, 1);
    assert_eq!(a, memkin::bench::workload(64, 8, 0).0);
    assert_ne!(a, b, "bench --seed changes the workload");
}
