//! `protocol = "paper"` in a Monte Carlo spec (the authors' hardware-aware
//! procedure, one training trial per draw) on the real WMMS data
//! (MEMKIN_DATA): the rows are a pure function of (seed, trial), whatever the
//! shards or an interruption; every output labels the selection on test;
//! the keys the procedure fixes are refused before any work.

use crate::common::data_dir;
use memkin::Result;
use memkin::data;
use memkin::engine::cpu::CpuEngine;
use memkin::study::montecarlo::{PaperMcEvaluator, write_report};
use memkin::study::plan::{Plan, Point};
use memkin::study::runner::{Evaluator, Study, StudyKind, merge, run_study};
use memkin::study::spec::McSpec;
use std::path::Path;

/// A short WMMS run: 20 epochs (two evaluations) per trial.
fn spec_text(draws: usize) -> String {
    format!("dataset = \"wmms\"\nprotocol = \"paper\"\ndraws = {draws}\nseed = 3\nepochs = 20\n")
}

/// Stops the study (an error) once `fail_at` points have been evaluated.
struct Interrupted {
    inner: PaperMcEvaluator,
    fail_at: Option<usize>,
    done: usize,
}

impl Evaluator for Interrupted {
    fn metric_names(&self) -> Vec<String> {
        self.inner.metric_names()
    }
    fn evaluate(&mut self, point: &Point) -> Result<Vec<f64>> {
        if Some(self.done) == self.fail_at {
            return Err(memkin::Error::Internal("interrupted".into()));
        }
        self.done += 1;
        self.inner.evaluate(point)
    }
}

fn run(
    dir: &Path,
    text: &str,
    shard: Option<(usize, usize)>,
    resume: bool,
    fail_at: Option<usize>,
) -> bool {
    let spec = McSpec::from_text(Path::new("mc.toml"), text).unwrap();
    let dd = data_dir();
    let ds = data::load(&spec.dataset, Some(&dd)).unwrap();
    let engine = Box::new(CpuEngine::fast());
    let info = memkin::engine::Engine::info(engine.as_ref());
    let inner = PaperMcEvaluator::new(&spec, &ds, engine, Some(&dd)).unwrap();
    let extra = inner.manifest_extra(&info);
    let mut ev = Interrupted {
        inner,
        fail_at,
        done: 0,
    };
    let plan = Plan::monte_carlo(&spec);
    let study = Study {
        dir,
        kind: StudyKind::MonteCarlo,
        spec_text: text,
        plan: &plan,
        shard,
        resume,
        progress: false,
        manifest_extra: extra,
    };
    run_study(&study, &mut ev).is_ok()
}

fn rows(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("draws.csv")).unwrap()
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn paper_trials_are_the_same_whole_sharded_merged_or_resumed_after_an_interruption() {
    let tmp = tempfile::tempdir().unwrap();
    let text = spec_text(4);
    let whole = tmp.path().join("whole");
    assert!(run(&whole, &text, None, false, None));
    let t = memkin::study::runner::ResultsTable::read(&whole.join("draws.csv")).unwrap();
    assert_eq!(t.rows.len(), 4);
    let best = t.column("test_accuracy_selected_on_test").unwrap();
    let last = t.column("test_accuracy_last").unwrap();
    for (b, l) in best.iter().zip(&last) {
        assert!(b >= l && *b > 0.25, "best {b} of the evaluations, last {l}");
    }
    assert_eq!(t.column("evaluations").unwrap(), vec![2.0; 4]);
    // Trials differ (their own initialisation and chip).
    let a = t.column("alpha_chip").unwrap();
    assert!(a.windows(2).all(|w| w[0] != w[1]), "{a:?}");
    // Interrupted after two trials, then resumed: the same bytes.
    let resumed = tmp.path().join("resumed");
    assert!(!run(&resumed, &text, None, false, Some(2)));
    let partial = std::fs::read_to_string(resumed.join("draws.csv")).unwrap();
    assert_eq!(
        partial.lines().count(),
        3,
        "header and the two finished trials"
    );
    assert!(run(&resumed, &text, None, true, None));
    assert_eq!(rows(&whole), rows(&resumed));
    // Two shards merged: the same bytes.
    let shards: Vec<_> = (0..2).map(|i| tmp.path().join(format!("s{i}"))).collect();
    for (i, d) in shards.iter().enumerate() {
        assert!(run(d, &text, Some((i, 2)), false, None));
    }
    let merged = tmp.path().join("merged");
    merge(&shards, &merged).unwrap();
    assert_eq!(rows(&whole), rows(&merged));
    let s = write_report(&merged).unwrap();
    assert_eq!(s["metric"], "test_accuracy_selected_on_test");
    assert_eq!(s["n"], 4);
}

fn memkin(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_memkin"))
        .args(args)
        .env("MEMKIN_DATA", data_dir())
        .output()
        .unwrap()
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn every_output_of_the_paper_protocol_says_selected_on_test() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("wmms.toml");
    std::fs::write(&spec, spec_text(2)).unwrap();
    let out = tmp.path().join("out");
    let o = memkin(&[
        "mc",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["protocol"], "paper");
    assert_eq!(s["selection"], "selected on test");
    assert_eq!(s["metric"], "test_accuracy_selected_on_test");
    assert!(s["last_evaluation"]["mean"].as_f64().unwrap() <= s["mean"].as_f64().unwrap());
    assert_eq!(s["recipe"]["hardware"]["eval_every"], 10);
    let header = std::fs::read_to_string(out.join("draws.csv")).unwrap();
    assert!(
        header
            .lines()
            .next()
            .unwrap()
            .ends_with("test_accuracy_last,test_accuracy_selected_on_test")
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["protocol"], "paper");
    assert_eq!(m["nominal"]["selection"], "selected on test");
    assert!(out.join("histogram.png").exists());
}

/// Runs `memkin mc` on a spec of `text`; the exit must be 2 with one line
/// of stderr, nothing written: returns that line.
fn refused(dir: &Path, text: &str) -> String {
    let spec = dir.join("s.toml");
    std::fs::write(&spec, text).unwrap();
    let out = dir.join("out");
    let o = memkin(&["mc", spec.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(o.status.code(), Some(2), "{text}: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!out.exists(), "nothing written for {text}");
    err
}

#[test]
fn the_paper_protocol_refuses_what_it_fixes_naming_the_key_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    for (extra, key) in [
        ("hidden = 16\n", "hidden"),
        ("readout = \"ridge\"\n", "readout"),
        ("alpha = 0.5\n", "alpha"),
        (
            "[variability]\nread_noise = 0.01\n",
            "variability.read_noise",
        ),
        (
            "[variability]\nnoise_aware_epochs = 3\n",
            "variability.noise_aware_epochs",
        ),
    ] {
        let err = refused(tmp.path(), &format!("{}{extra}", spec_text(2)));
        assert!(
            err.contains(key) && err.contains("protocol = \"paper\""),
            "{err}"
        );
    }
    let err = refused(
        tmp.path(),
        "dataset = \"digits\"\nprotocol = \"paper\"\ndraws = 2\n",
    );
    assert!(err.contains("mnist, sitw, wmms"), "{err}");
    let err = refused(
        tmp.path(),
        "dataset = \"wmms\"\nprotocol = \"chip\"\ndraws = 2\n",
    );
    assert!(err.contains("honest") && err.contains("paper"), "{err}");
}

#[test]
fn the_shipped_paper_protocol_specs_parse() {
    for f in ["mnist", "sitw", "wmms"] {
        let spec =
            McSpec::from_path(Path::new(&format!("examples/mc/{f}_paper_protocol.toml"))).unwrap();
        assert_eq!(spec.protocol, memkin::study::spec::McProtocol::Paper);
        assert_eq!(spec.dataset, f);
    }
}

/// Marks the first weight at each evaluation and records what it found.
struct Marking {
    seen: Vec<f32>,
}

impl memkin::pipeline::hardware::Chip for Marking {
    fn redraw(
        &mut self,
        _: memkin::pipeline::hardware::Param,
        _: u32,
        mean: f64,
        _: f64,
    ) -> Result<f64> {
        Ok(mean)
    }
    fn program(&mut self, net: &mut memkin::readout::Network, _: u32) {
        self.seen.push(net.params[0]);
        net.params[0] = 100.0;
    }
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn the_noise_of_an_evaluation_stays_in_the_model_for_the_next_epochs() {
    use memkin::pipeline::paper::{PaperRecipe, hardware_trial, paper_split};
    let dd = data_dir();
    let ds = data::load("wmms", Some(&dd)).unwrap();
    let mut recipe = PaperRecipe::hardware_aware("wmms").unwrap();
    recipe.epochs = 30;
    let split = paper_split(&ds, &recipe, Some(&dd)).unwrap();
    let (train, test) = memkin::pipeline::encode_dataset(
        &split,
        memkin::encode::default_encoding(&split.sample_shape),
    )
    .unwrap();
    let mut chip = Marking { seen: vec![] };
    let o = hardware_trial(
        &CpuEngine::fast(),
        &train,
        &test,
        &recipe,
        1,
        9,
        &mut chip,
        &|_| {},
    )
    .unwrap();
    assert_eq!(o.curve.len(), 3);
    assert_eq!(chip.seen.len(), 3);
    // Ten full-batch Adam steps (lr 0.01) move a weight by at most ~0.1: the
    // next evaluation finds the marked weight, not the trained one.
    assert!(chip.seen[0].abs() < 10.0, "{:?}", chip.seen);
    for s in &chip.seen[1..] {
        assert!((s - 100.0).abs() < 0.2, "{:?}", chip.seen);
    }
}
