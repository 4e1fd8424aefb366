//! Data safety on the output side: the files a study depends on are
//! verified by every rerun, resume and merge; merge checks every row against
//! the plan; a study's final outputs are committed with its manifest; spec
//! problems are found before the work; every command checks its output paths
//! before the work (exit 2, one line naming the path, nothing changed).

use memkin::Error;
use memkin::report::output::Outputs;
use memkin::study::plan::{Plan, Point};
use memkin::study::runner::{
    Evaluator, Manifest, ResultsTable, Study, StudyFiles, completed, merge, read_manifest,
    run_study, run_study_with,
};
use memkin::study::spec::{McSpec, SweepSpec};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SPEC: &str = "dataset = \"toy\"\nseed = 5\n[grid]\nalpha = { linspace = [0.1, 1.0, 4] }\nbeta = { values = [1, 2, 3] }\n";

/// A deterministic evaluator that can fail after a number of points.
struct Toy {
    calls: usize,
    fail_after: Option<usize>,
}

impl Toy {
    fn new() -> Self {
        Self {
            calls: 0,
            fail_after: None,
        }
    }
}

impl Evaluator for Toy {
    fn metric_names(&self) -> Vec<String> {
        vec!["score".into()]
    }
    fn evaluate(&mut self, p: &Point) -> memkin::Result<Vec<f64>> {
        if self.fail_after == Some(self.calls) {
            return Err(Error::Internal("simulated crash".into()));
        }
        self.calls += 1;
        Ok(vec![p.params.iter().map(|(_, v)| v.cos()).sum()])
    }
}

fn plan() -> Plan {
    Plan::sweep(&SweepSpec::from_text(Path::new("s.toml"), SPEC).unwrap())
}

fn study<'a>(
    dir: &'a Path,
    plan: &'a Plan,
    shard: Option<(usize, usize)>,
    resume: bool,
) -> Study<'a> {
    crate::common::sweep_study(dir, SPEC, plan, shard, resume, serde_json::Value::Null)
}

fn with_inputs(inputs: &[PathBuf]) -> StudyFiles<'static> {
    StudyFiles {
        inputs: inputs.to_vec(),
        finish: None,
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// Every entry under `dir` whose name marks a memkin temporary.
fn partials(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.contains("partial") {
            v.push(n);
        }
        if e.file_type().unwrap().is_dir() {
            v.extend(partials(&e.path()));
        }
    }
    v
}

#[test]
fn a_dependency_changed_between_a_crash_and_the_resume_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.json");
    std::fs::write(&model, "{\"weights\": [1, 2]}").unwrap();
    let plan = plan();
    let dir = tmp.path().join("s");
    let mut toy = Toy::new();
    toy.fail_after = Some(5);
    let files = [model.clone()];
    assert!(
        run_study_with(
            &study(&dir, &plan, None, false),
            &mut toy,
            with_inputs(&files)
        )
        .is_err()
    );
    let m = read_manifest(&dir).unwrap().unwrap();
    assert_eq!(m.inputs.len(), 1, "{:?}", m.inputs);
    let rows = read(&dir.join("results.csv"));
    let manifest = read(&dir.join("manifest.json"));
    // Retrained between the kill and the resume.
    std::fs::write(&model, "{\"weights\": [3, 4]}").unwrap();
    let e = run_study_with(
        &study(&dir, &plan, None, true),
        &mut Toy::new(),
        with_inputs(&files),
    )
    .unwrap_err();
    assert!(e.is_user_error(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("m.json") && msg.contains("changed since"),
        "{msg}"
    );
    assert_eq!(
        read(&dir.join("results.csv")),
        rows,
        "a refused resume changed the rows"
    );
    assert_eq!(read(&dir.join("manifest.json")), manifest);
    // Restored: the resume goes through and completes.
    std::fs::write(&model, "{\"weights\": [1, 2]}").unwrap();
    run_study_with(
        &study(&dir, &plan, None, true),
        &mut Toy::new(),
        with_inputs(&files),
    )
    .unwrap();
    assert_eq!(read_manifest(&dir).unwrap().unwrap().status, "complete");
    // Gone: a rerun of the complete study is refused too.
    std::fs::remove_file(&model).unwrap();
    let e = run_study(&study(&dir, &plan, None, false), &mut Toy::new()).unwrap_err();
    assert!(e.to_string().contains("depends on it"), "{e}");
}

/// `runner::completed` (what `memkin mc` asks before any work): the
/// complete study of the same spec, plan and shard, its inputs unchanged;
/// nothing for another spec or shard or an unfinished study; an error naming
/// a changed input.
#[test]
fn completed_is_the_finished_study_of_the_same_spec_and_shard_with_unchanged_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.json");
    std::fs::write(&model, "{\"weights\": [1, 2]}").unwrap();
    let files = [model.clone()];
    let plan = plan();
    let dir = tmp.path().join("s");
    assert!(
        completed(&dir, SPEC, &plan, None, &files)
            .unwrap()
            .is_none()
    );
    let mut toy = Toy::new();
    toy.fail_after = Some(5);
    let _ = run_study_with(
        &study(&dir, &plan, None, false),
        &mut toy,
        with_inputs(&files),
    );
    assert!(
        completed(&dir, SPEC, &plan, None, &files)
            .unwrap()
            .is_none(),
        "an unfinished study is not complete"
    );
    run_study_with(
        &study(&dir, &plan, None, true),
        &mut Toy::new(),
        with_inputs(&files),
    )
    .unwrap();
    let m = completed(&dir, SPEC, &plan, None, &files).unwrap();
    assert_eq!(m.map(|m| m.status).as_deref(), Some("complete"));
    let other = format!("{SPEC}# another spec\n");
    assert!(
        completed(&dir, &other, &plan, None, &files)
            .unwrap()
            .is_none()
    );
    assert!(
        completed(&dir, SPEC, &plan, Some((0, 2)), &files)
            .unwrap()
            .is_none()
    );
    std::fs::write(&model, "{\"weights\": [3, 4]}").unwrap();
    let e = completed(&dir, SPEC, &plan, None, &files).unwrap_err();
    assert!(e.is_user_error(), "{e}");
    assert!(e.to_string().contains("m.json"), "{e}");
}

#[test]
fn merge_checks_every_row_against_the_plan_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan();
    let dirs: Vec<PathBuf> = (0..3).map(|i| tmp.path().join(format!("sh{i}"))).collect();
    for (i, d) in dirs.iter().enumerate() {
        run_study(&study(d, &plan, Some((i, 3)), false), &mut Toy::new()).unwrap();
    }
    let csv = dirs[1].join("results.csv");
    let good = read(&csv);
    let out = tmp.path().join("m");
    // A parameter edited (still a number, right column count), a seed edited,
    // and a row of shard 0 pasted into shard 1.
    let line: Vec<&str> = good.lines().nth(2).unwrap().split(',').collect();
    let mut edited = line.clone();
    edited[2] = "0.25";
    let mut reseeded = line.clone();
    reseeded[1] = "12345";
    let foreign = read(&dirs[0].join("results.csv"))
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    for (bad, what) in [
        (edited.join(","), "is not point"),
        (reseeded.join(","), "is not point"),
        (foreign, "outside this shard"),
    ] {
        let text = good.replacen(good.lines().nth(2).unwrap(), &bad, 1);
        std::fs::write(&csv, text).unwrap();
        let e = merge(&dirs, &out).unwrap_err();
        assert!(e.is_user_error(), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("sh1/results.csv") && msg.contains(what),
            "{msg}"
        );
        assert!(!out.exists(), "merge wrote {out:?} before refusing");
    }
    std::fs::write(&csv, &good).unwrap();
    merge(&dirs, &out).unwrap();
    assert_eq!(
        read(&out.join("results.csv")).lines().count(),
        1 + plan.len()
    );
}

#[test]
fn merge_refuses_shards_that_read_different_versions_of_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.csv");
    let plan = plan();
    let dirs: Vec<PathBuf> = (0..2).map(|i| tmp.path().join(format!("sh{i}"))).collect();
    for (i, d) in dirs.iter().enumerate() {
        std::fs::write(&data, format!("version {i}\n")).unwrap();
        let files = [data.clone()];
        run_study_with(
            &study(d, &plan, Some((i, 2)), false),
            &mut Toy::new(),
            with_inputs(&files),
        )
        .unwrap();
    }
    let out = tmp.path().join("m");
    let e = merge(&dirs, &out).unwrap_err().to_string();
    assert!(e.contains("d.csv") && e.contains("another shard"), "{e}");
    assert!(!out.exists());
    // One version in both, then changed on disk: refused naming the file.
    std::fs::write(&data, "version 0\n").unwrap();
    std::fs::remove_dir_all(&dirs[1]).unwrap();
    let files = [data.clone()];
    run_study_with(
        &study(&dirs[1], &plan, Some((1, 2)), false),
        &mut Toy::new(),
        with_inputs(&files),
    )
    .unwrap();
    std::fs::write(&data, "version 2\n").unwrap();
    let e = merge(&dirs, &out).unwrap_err().to_string();
    assert!(e.contains("d.csv") && e.contains("changed since"), "{e}");
    assert!(!out.exists());
}

#[test]
fn a_studys_final_outputs_are_committed_with_its_manifest_or_not_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan();
    let dir = tmp.path().join("s");
    // A final stage that fails after staging a figure: nothing of it appears,
    // the study stays unfinished, no temporary survives.
    let mut failing =
        |_: &ResultsTable, _: &mut Manifest, out: &mut Outputs| -> memkin::Result<()> {
            out.text(&dir.join("figure.txt"), "drawn")?;
            Err(Error::Internal("plot failed".into()))
        };
    let files = StudyFiles {
        inputs: Vec::new(),
        finish: Some(&mut failing),
    };
    assert!(run_study_with(&study(&dir, &plan, None, false), &mut Toy::new(), files).is_err());
    assert!(!dir.join("figure.txt").exists());
    assert_eq!(read_manifest(&dir).unwrap().unwrap().status, "running");
    assert_eq!(partials(&dir), Vec::<String>::new());
    // Resumed with a working final stage: the figure and the complete
    // manifest (annotated by the stage) appear together.
    let mut ok = |t: &ResultsTable, m: &mut Manifest, out: &mut Outputs| -> memkin::Result<()> {
        m.extra.insert("rows_seen".into(), t.rows.len().into());
        out.text(&dir.join("figure.txt"), "drawn")
    };
    let files = StudyFiles {
        inputs: Vec::new(),
        finish: Some(&mut ok),
    };
    let o = run_study_with(&study(&dir, &plan, None, true), &mut Toy::new(), files).unwrap();
    assert_eq!(o.evaluated, 0, "every row was already in");
    let m = read_manifest(&dir).unwrap().unwrap();
    assert_eq!(m.status, "complete");
    assert_eq!(m.extra["rows_seen"], plan.len());
    assert_eq!(read(&dir.join("figure.txt")), "drawn");
}

#[test]
fn decreasing_or_repeated_grid_axes_are_refused_before_the_work() {
    let parse = |axis: &str| {
        SweepSpec::from_text(
            Path::new("s.toml"),
            &format!("dataset = \"digits\"\n[grid]\nalpha = {axis}\nbeta = {{ values = [1] }}\n"),
        )
    };
    for (axis, what) in [
        ("{ values = [0.5, 0.2, 0.9] }", "0.2 follows 0.5"),
        ("{ values = [0.5, 0.5] }", "value 0.5 is repeated"),
        ("{ linspace = [1.0, 0.1, 4] }", "strictly increase"),
        ("{ linspace = [0.3, 0.3, 2] }", "repeated"),
        ("{ logspace = [2.0, 0.01, 3] }", "strictly increase"),
    ] {
        let e = parse(axis).unwrap_err();
        assert!(e.is_user_error(), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("line 3") && msg.contains("grid.alpha") && msg.contains(what),
            "{axis}: {msg}"
        );
    }
    for axis in [
        "{ values = [0.2, 0.5] }",
        "{ linspace = [0.1, 1.0, 4] }",
        "{ linspace = [0.7, 0.7, 1] }",
    ] {
        parse(axis).unwrap_or_else(|e| panic!("{axis}: {e}"));
    }
}

#[test]
fn mc_spreads_that_overflow_are_refused_naming_the_field() {
    let parse = |rest: &str| {
        McSpec::from_text(
            Path::new("mc.toml"),
            &format!("dataset = \"digits\"\ndraws = 4\n{rest}"),
        )
    };
    for (rest, field) in [
        (
            "[variability]\nsigma_alpha = 1e308\n",
            "variability.sigma_alpha",
        ),
        (
            "[variability]\nread_noise = 1e300\n",
            "variability.read_noise",
        ),
        (
            "[variability]\nsigma = { eta = 1e200 }\n",
            "variability.sigma.eta",
        ),
        ("alpha = 1e31\n", "alpha"),
        (
            "alpha = 1e20\n[variability]\nrelative = true\nsigma_alpha = 1e15\n",
            "variability.sigma_alpha",
        ),
    ] {
        let e = parse(rest).unwrap_err();
        assert!(e.is_user_error(), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{field} =")) && msg.contains("1e30") && msg.contains("f32"),
            "{rest}: {msg}"
        );
    }
    parse("[variability]\nsigma_alpha = 0.1\nread_noise = 0.01\n").unwrap();
}

fn memkin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memkin"))
        .args(args)
        .env("MEMKIN_DATA", "/nonexistent-so-digits-is-used")
        .output()
        .expect("memkin runs")
}

fn trace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/traces/synthetic_diffusive.csv")
}

#[test]
fn every_command_checks_its_out_before_the_work_exit_2_one_line_nothing_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "keep").unwrap();
    let f = file.to_str().unwrap();
    let spec = tmp.path().join("s.toml");
    std::fs::write(
        &spec,
        "dataset = \"digits\"\n[grid]\nalpha = { values = [0.5] }\nbeta = { values = [1] }\n",
    )
    .unwrap();
    let mc = tmp.path().join("mc.toml");
    std::fs::write(&mc, "dataset = \"digits\"\ndraws = 2\n").unwrap();
    let (s, m, t) = (spec.to_str().unwrap(), mc.to_str().unwrap(), trace());
    let t = t.to_str().unwrap();
    let under = tmp.path().join("a-file/sub");
    let under_file = under.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "--dataset", "digits", "--backend", "cpu", "--out", f],
        vec![
            "bench",
            "--backend",
            "cpu",
            "--sizes",
            "10",
            "--steps",
            "10",
            "--out",
            f,
        ],
        vec!["fit", "--trace", t, "--model", "diffusive", "--out", f],
        vec![
            "cost",
            "--dataset",
            "digits",
            "--backend",
            "cpu",
            "--out",
            f,
        ],
        vec!["sweep", s, "--backend", "cpu", "--out", f],
        vec!["mc", m, "--backend", "cpu", "--out", f],
        vec![
            "run",
            "--dataset",
            "digits",
            "--backend",
            "cpu",
            "--out",
            under_file,
        ],
    ];
    for args in &cases {
        let o = memkin(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains(f) && err.contains("not a directory"),
            "{args:?}: {err}"
        );
        // Refused before the work: no progress, no result line.
        assert!(err.starts_with("memkin: error: "), "{args:?}: {err}");
    }
    assert_eq!(read(&file), "keep");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        3,
        "something was left"
    );
    assert!(partials(tmp.path()).is_empty());
}

#[test]
fn an_output_that_is_an_input_is_refused_whatever_the_link() {
    let tmp = tempfile::tempdir().unwrap();
    // fit's trace hard-linked as the fit.json it would write.
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let t = tmp.path().join("trace.csv");
    std::fs::copy(trace(), &t).unwrap();
    std::fs::hard_link(&t, out.join("fit.json")).unwrap();
    let before = read(&t);
    let o = memkin(&[
        "fit",
        "--trace",
        t.to_str().unwrap(),
        "--model",
        "diffusive",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("fit.json") && err.contains("input of this command"),
        "{err}"
    );
    assert_eq!(read(&t), before);
    assert!(!out.join("fit.png").exists());
    // run --save-model through a symbolic link to its CSV dataset.
    let data = tmp.path().join("d.csv");
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&format!(
            "{},{},{}\n",
            i % 2,
            (i % 7) as f64 / 7.0,
            (i % 2) as f64
        ));
    }
    std::fs::write(&data, &text).unwrap();
    let link = tmp.path().join("model.json");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    let o = memkin(&[
        "run",
        "--dataset",
        data.to_str().unwrap(),
        "--backend",
        "cpu",
        "--save-model",
        link.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("input of this command"), "{err}");
    assert_eq!(read(&data), text);
    assert!(partials(tmp.path()).is_empty());
}
