//! Device-variability Monte Carlo (`memkin mc`) on the embedded digits: the
//! same seed gives the same devices and accuracies on CPU and GPU, whatever
//! the batch, the chunking or the shards; with every noise off each draw
//! scores the nominal accuracy exactly.
//!
//! The Philox known-answer vectors, on the host and in WGSL, are checked once
//! in `tests/integration/rng.rs`; the in-loop noise's CPU/GPU agreement in
//! `tests/integration/engine.rs` (`cycle_noise_on_gpu_matches_cpu_reference_with_tiny_chunks`).

use crate::common::gpu_engine;
use memkin::data;
use memkin::engine::Engine;
use memkin::engine::cpu::CpuEngine;
use memkin::study::montecarlo::{McEvaluator, McOptions, Nominal, manifest_extra, write_report};
use memkin::study::plan::Plan;
use memkin::study::runner::{ResultsTable, Study, StudyKind, merge, run_study};
use memkin::study::spec::McSpec;
use std::path::Path;

/// A digits spec: a short MLP training, `draws` draws, then `rest`.
fn spec_text(draws: usize, rest: &str) -> String {
    format!("dataset = \"digits\"\ndraws = {draws}\nseed = 11\nepochs = 25\n{rest}")
}

/// Every non-ideality at once, one device per channel (8 rows of digits).
const ALL_NOISE: &str = "[variability]\nsigma_alpha = 0.0955\nsigma_beta = 0.276\nper_channel = true\ncycle_noise = 0.002\nread_noise = 0.01\nstuck_fraction = 0.05\ng_noise_mean = 0.20329\ng_noise_std = 1.14726\n";

fn run(
    dir: &Path,
    text: &str,
    engine: Box<dyn Engine>,
    shard: Option<(usize, usize)>,
    chunk: Option<usize>,
) -> Nominal {
    let spec = McSpec::from_text(Path::new("mc.toml"), text).unwrap();
    let ds = data::load(&spec.dataset, None).unwrap();
    let info = engine.info();
    let mut ev = McEvaluator::new(
        &spec,
        &ds,
        engine,
        &McOptions {
            chunk,
            ..McOptions::default()
        },
    )
    .unwrap();
    let plan = Plan::monte_carlo(&spec);
    let study = Study {
        dir,
        kind: StudyKind::MonteCarlo,
        spec_text: text,
        plan: &plan,
        shard,
        resume: false,
        progress: false,
        manifest_extra: manifest_extra(ev.nominal(), &info),
    };
    run_study(&study, &mut ev).unwrap();
    write_report(dir).unwrap();
    ev.nominal().clone()
}

fn table(dir: &Path) -> ResultsTable {
    ResultsTable::read(&dir.join("draws.csv")).unwrap()
}

fn column(t: &ResultsTable, name: &str) -> Vec<f64> {
    t.column(name).unwrap_or_else(|| panic!("no column {name}"))
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn gpu_draws_match_cpu_draws_parameters_exactly_and_accuracies_within_a_tenth_of_a_point() {
    let gpu = gpu_engine();
    let tmp = tempfile::tempdir().unwrap();
    let text = spec_text(6, ALL_NOISE);
    let (c, g) = (tmp.path().join("cpu"), tmp.path().join("gpu"));
    let nc = run(&c, &text, Box::new(CpuEngine::fast()), None, None);
    // Tiny chunks: the multi-dispatch path of the GPU engine.
    let ng = run(&g, &text, Box::new(gpu), None, Some(500));
    assert_eq!(
        nc.accuracy, ng.accuracy,
        "the nominal readout is backend-free"
    );
    let (tc, tg) = (table(&c), table(&g));
    for name in ["index", "seed", "alpha", "beta", "stuck"] {
        assert_eq!(column(&tc, name), column(&tg, name), "column {name}");
    }
    let (ac, ag) = (column(&tc, "test_accuracy"), column(&tg, "test_accuracy"));
    let one = 1.0 / nc.n_test as f64;
    for (i, (a, b)) in ac.iter().zip(&ag).enumerate() {
        assert!(
            (a - b).abs() <= 2.0 * one + 1e-12,
            "draw {i}: cpu {a}, gpu {b}"
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        (mean(&ac) - mean(&ag)).abs() <= 0.001,
        "mean cpu {} gpu {}",
        mean(&ac),
        mean(&ag)
    );
    // The noise does something.
    assert!(
        ac.iter().any(|&a| a < nc.accuracy),
        "{ac:?} vs {}",
        nc.accuracy
    );
}

#[test]
fn two_shards_merged_equal_one_run_byte_for_byte_and_batches_do_not_matter() {
    let tmp = tempfile::tempdir().unwrap();
    let text = spec_text(7, &format!("batch = 3\n{ALL_NOISE}"));
    let whole = tmp.path().join("whole");
    run(&whole, &text, Box::new(CpuEngine::fast()), None, None);
    let shards: Vec<_> = (0..2).map(|i| tmp.path().join(format!("s{i}"))).collect();
    for (i, d) in shards.iter().enumerate() {
        run(d, &text, Box::new(CpuEngine::fast()), Some((i, 2)), None);
    }
    let merged = tmp.path().join("merged");
    merge(&shards, &merged).unwrap();
    let bytes = |d: &Path| std::fs::read(d.join("draws.csv")).unwrap();
    assert_eq!(bytes(&whole), bytes(&merged));
    let summary = write_report(&merged).unwrap();
    assert_eq!(summary["n"], 7);
    assert!(merged.join("histogram.png").exists());
    // One draw per engine run gives the same rows (the spec text differs, so
    // only the rows are compared).
    let single = tmp.path().join("single");
    run(
        &single,
        &spec_text(7, &format!("batch = 1\n{ALL_NOISE}")),
        Box::new(CpuEngine::fast()),
        None,
        None,
    );
    assert_eq!(bytes(&whole), bytes(&single));
}

#[test]
fn every_noise_off_reproduces_the_nominal_accuracy_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let text = spec_text(
        4,
        "[variability]\nsigma_alpha = 0.0\nsigma_beta = 0.0\ncycle_noise = 0.0\nread_noise = 0.0\n",
    );
    let n = run(tmp.path(), &text, Box::new(CpuEngine::fast()), None, None);
    let t = table(tmp.path());
    assert_eq!(column(&t, "alpha"), vec![n.alpha; 4]);
    assert_eq!(column(&t, "beta"), vec![n.beta; 4]);
    assert_eq!(column(&t, "test_accuracy"), vec![n.accuracy; 4]);
    // ... which is the pipeline's own (`memkin run`) accuracy.
    let spec = McSpec::from_text(Path::new("mc.toml"), &text).unwrap();
    let ds = data::load("digits", None).unwrap();
    let mut proto = memkin::pipeline::Protocol::for_dataset(&ds.name, &ds.sample_shape);
    proto.readout.seed = spec.seed;
    proto.readout.epochs = 25;
    proto.readout.standardize = false;
    let out = memkin::pipeline::evaluate_split(&CpuEngine::fast(), &ds, &proto, None).unwrap();
    assert_eq!(out.test_accuracy, n.accuracy);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("summary.json")).unwrap()).unwrap();
    // (serde_json reads floats back to within an ulp.)
    assert!((summary["nominal"].as_f64().unwrap() - n.accuracy).abs() < 1e-15);
    // The mean of equal values, up to the rounding of their sum.
    assert!((summary["mean"].as_f64().unwrap() - n.accuracy).abs() < 1e-12);
    assert_eq!(summary["std"].as_f64(), Some(0.0));
}

#[test]
fn a_saved_model_is_evaluated_and_noise_aware_fine_tuning_is_reported_before_and_after() {
    let tmp = tempfile::tempdir().unwrap();
    // What `memkin run --save-model` writes.
    let ds = data::load("digits", None).unwrap();
    let mut proto = memkin::pipeline::Protocol::for_dataset(&ds.name, &ds.sample_shape);
    proto.readout.epochs = 25;
    let out = memkin::pipeline::evaluate_split(&CpuEngine::fast(), &ds, &proto, None).unwrap();
    let saved = serde_json::json!({
        "memkin_model": 1, "dataset": ds.name, "protocol": proto, "alpha": out.alpha,
        "beta": out.beta, "readout": out.trained, "test_accuracy": out.test_accuracy, "seed": 0,
    });
    let model = tmp.path().join("model.json");
    std::fs::write(&model, serde_json::to_string(&saved).unwrap()).unwrap();
    let text = format!(
        "dataset = \"digits\"\ndraws = 5\nseed = 2\nmodel = {:?}\n[variability]\nsigma_alpha = 0.0955\nsigma_beta = 0.276\nread_noise = 0.05\ng_noise_std = 5.0\nquant_bits = 4\nfine_tune_epochs = 3\n",
        model.display().to_string()
    );
    let dir = tmp.path().join("mc");
    let n = run(&dir, &text, Box::new(CpuEngine::fast()), None, None);
    assert_eq!(n.model.as_deref(), Some(model.as_path()));
    let t = table(&dir);
    assert_eq!(column(&t, "test_accuracy_tuned").len(), 5);
    let summary = write_report(&dir).unwrap();
    assert!(summary["after"]["mean"].is_number() && summary["nominal_after"].is_number());
    assert!(dir.join("histogram_tuned.png").exists());
    // No noise at all would give the saved model's own accuracy.
    let quiet = tmp.path().join("quiet");
    let text = format!(
        "dataset = \"digits\"\ndraws = 1\nmodel = {:?}\n",
        model.display().to_string()
    );
    let n = run(&quiet, &text, Box::new(CpuEngine::fast()), None, None);
    assert_eq!(n.accuracy, out.test_accuracy);
}

#[test]
fn a_spec_typo_fails_with_the_key_and_its_line() {
    let text = spec_text(3, "[variability]\nsigma_alpha = 0.1\nsigma_beat = 0.2\n");
    let msg = McSpec::from_text(Path::new("mc.toml"), &text)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("sigma_beat") && msg.contains("line 7") && msg.contains("mc.toml"),
        "{msg}"
    );
    let msg = McSpec::from_text(
        Path::new("mc.toml"),
        "dataset = \"digits\"\ndraws = 3\nmodel = \"m.json\"\nalpha = 0.5\n",
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("line 4") && msg.contains("alpha"), "{msg}");
}

#[test]
fn the_shipped_example_specs_parse() {
    for f in [
        "examples/mc/wmms_paper.toml",
        "examples/mc/mnist_paper.toml",
        "examples/mc/sitw_paper.toml",
        "examples/mc/mnist_noise_aware.toml",
        "examples/mc/sitw_noise_aware.toml",
        "examples/mc/wmms_noise_aware.toml",
    ] {
        let spec = McSpec::from_path(Path::new(f)).unwrap();
        assert_eq!(spec.variability.sigma_alpha, Some(0.0955));
        assert_eq!(spec.variability.g_noise_std, Some(1.14726));
    }
    let spec = McSpec::from_path(Path::new("examples/mc/digits_diffusive.toml")).unwrap();
    assert!(spec.variability.sigma.contains_key("tau"));
}

fn memkin(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_memkin"))
        .args(args)
        .output()
        .unwrap()
}

/// A continuous model (`[model]` table), two parameters varied by name.
fn ode_spec(sigma: &str) -> String {
    format!(
        "dataset = \"digits\"\ndraws = 4\nseed = 5\nreadout = \"ridge\"\n[model]\nname = \"ddk-ode\"\nintegrator = \"rk4\"\nsubsteps = 2\n[variability]\nsigma = {{ {sigma} }}\nread_noise = 0.01\n"
    )
}

fn mc_cli(dir: &Path, text: &str, backend: &str) -> serde_json::Value {
    let spec = dir.with_extension("toml");
    std::fs::write(&spec, text).unwrap();
    let o = memkin(&[
        "mc",
        spec.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--backend",
        backend,
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
#[cfg_attr(
    skip_gpu,
    ignore = "no GPU driver at build time (build.rs), or MEMKIN_SKIP_GPU=1"
)]
fn mc_over_a_continuous_models_parameters_agrees_on_cpu_and_gpu() {
    let tmp = tempfile::tempdir().unwrap();
    let text = ode_spec("alpha = 0.1, beta = 0.3");
    let c = tmp.path().join("cpu");
    let sc = mc_cli(&c, &text, "cpu");
    let tc = table(&c);
    let (a, b) = (column(&tc, "alpha"), column(&tc, "beta"));
    assert!(a.iter().all(|&x| x > 0.0) && b.iter().all(|&x| x >= 0.0));
    assert!(a.windows(2).any(|w| w[0] != w[1]), "{a:?}");
    assert!(tc.column("stuck").is_none());
    let _ = crate::common::gpu_context();
    let g = tmp.path().join("gpu");
    let sg = mc_cli(&g, &text, "gpu");
    assert_eq!(
        sc["nominal"], sg["nominal"],
        "the nominal readout is CPU-trained"
    );
    let tg = table(&g);
    for name in ["index", "seed", "alpha", "beta"] {
        assert_eq!(column(&tc, name), column(&tg, name), "column {name}");
    }
    let (mc, mg) = (sc["mean"].as_f64().unwrap(), sg["mean"].as_f64().unwrap());
    assert!((mc - mg).abs() <= 0.001, "mean cpu {mc} gpu {mg}");
}

#[test]
fn mc_of_a_continuous_model_with_zero_sigma_scores_the_nominal_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let text = ode_spec("alpha = 0.0, beta = 0.0").replace("read_noise = 0.01\n", "");
    let d = tmp.path().join("quiet");
    let s = mc_cli(&d, &text, "cpu");
    let nominal = s["nominal"].as_f64().unwrap();
    // Exactly the nominal count of correct samples (the CSV and the JSON
    // print the same ratio, up to the last digit).
    for a in column(&table(&d), "test_accuracy") {
        assert!((a - nominal).abs() < 1e-12, "{a} vs {nominal}");
    }
}

#[test]
fn mc_rejects_unknown_sigma_names_and_map_only_noise_for_continuous_models() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, needle) in [
        (ode_spec("alpha = 0.1, lambdaa = 0.2"), "lambdaa"),
        (
            ode_spec("alpha = 0.1").replace("read_noise", "cycle_noise"),
            "cycle_noise",
        ),
        (
            spec_text(2, "[variability]\nsigma = { alpha = 0.1, eta = 1 }\n"),
            "eta",
        ),
    ] {
        let spec = tmp.path().join("bad.toml");
        std::fs::write(&spec, text).unwrap();
        let out = tmp.path().join("out");
        let o = memkin(&["mc", spec.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(needle) && err.trim().lines().count() == 1,
            "{err}"
        );
        assert!(!out.exists(), "no work before the check");
    }
}

#[test]
fn sigma_by_name_equals_sigma_alpha_and_beta_for_the_map() {
    let v = |t: &str| {
        McSpec::from_text(Path::new("mc.toml"), &spec_text(2, t))
            .unwrap()
            .variability
    };
    let a = v("[variability]\nsigma_alpha = 0.1\nsigma_beta = 0.2\n");
    let b = v("[variability]\nsigma = { alpha = 0.1, beta = 0.2 }\n");
    let ra = memkin::study::montecarlo::Nonideal::resolve(&a, 0.7, 1.0, 1.0);
    let rb = memkin::study::montecarlo::Nonideal::resolve(&b, 0.7, 1.0, 1.0);
    assert_eq!(ra, rb);
}
