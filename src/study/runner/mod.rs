//! Running a study: evaluate the points of one shard, durably, resumably; and
//! merging the shards' outputs.
//!
//! The runner knows nothing about kinetics or readouts: an [`Evaluator`] turns
//! points into metric values. The runner owns the files.
//!
//! # On disk
//!
//! ```text
//! DIR/manifest.json   what was run: spec text + sha256, plan sha256, seed,
//!                     memkin version, shard, columns, status, one entry per
//!                     invocation (start, seconds, points evaluated), and the
//!                     caller's extra keys (backend, adapter...)
//! DIR/results.csv     (sweep) or DIR/draws.csv (mc): header
//!                     `index,seed,<params...>,<metrics...>`, one row per point;
//!                     in plan order once the study is complete
//! DIR/.lock           advisory lock: one process per DIR at a time
//! ```
//!
//! # Durability
//!
//! Each finished batch of points is appended to the CSV with one `write` and
//! then `fsync`ed before the next batch starts, so a kill (even `kill -9` or a
//! power cut after the sync) loses at most the batch in flight. On restart the
//! file is read back and only its longest valid prefix is kept: a row must end
//! in a newline, have every column, and carry exactly the index, seed and
//! parameter values the plan gives that index; the first row that fails (a torn
//! write) and everything after it are cut off and recomputed. When every point
//! of the shard is done, the CSV is rewritten atomically in plan order if it is
//! not already (it always is unless a batch evaluator reorders), and the
//! manifest is marked complete. Floats are written with Rust's shortest
//! round-trip form (`0.1`, `1e-7`, `NaN`, `inf`), so the rows of a deterministic
//! evaluator are byte-identical whichever machine or shard computed them (a
//! wall-time metric such as the sweep's `seconds` is the one exception).
//!
//! # Rules
//!
//! - A DIR whose manifest records another spec (sha256), plan, kind or shard
//!   is refused, with or without `--resume`.
//! - Without `--resume`, a DIR holding finished points of an unfinished study
//!   is refused (the error suggests `--resume`); a DIR holding a *complete*
//!   study of the same spec and shard is a no-op either way (reruns, Slurm
//!   requeues and Kubernetes retries are idempotent).
//! - A non-empty DIR without a manifest is refused (it is not a study).

//! - A DIR whose manifest records the sha256 of a file the study depends on
//!   (a dataset file, a saved model: [`StudyFiles::inputs`]) that has changed
//!   or gone since is refused, naming the file: its rows would mix two inputs.
//!
//! # What is committed when
//!
//! Rows are the one output appended in place while a study runs (so that a
//! kill keeps them for `--resume`): each batch is one `write` followed by an
//! `fsync`, and a torn or damaged tail is detected and cut on the next run
//! (see Durability). Everything else goes through the output layer
//! ([`crate::report::output::Outputs`]): when the last point is in, the
//! reordered CSV (if needed), the complete manifest and the caller's final
//! outputs ([`StudyFiles::finish`]: heatmap, summary, histograms) are staged
//! and committed together, all or none.

mod journal;
mod manifest;
mod merge;
mod table;

pub use manifest::{
    Manifest, RunRecord, ShardInfo, annotate_manifest, file_sha256, hash_inputs, read_manifest,
    spec_sha256, verify_inputs,
};
pub use merge::{MergeOutcome, merge, merge_with};
pub use table::ResultsTable;

use crate::report::output::{Outputs, remove_stale_partials};
use crate::report::progress::Progress;
use crate::study::plan::{Plan, Point, shard_range};
use crate::{Error, Result};
use journal::{
    Journal, JournalRead, check_column_name, fmt_f64, header, lines_text, open_journal,
    read_journal, row_prefix,
};
use manifest::{
    check_same_study, has_visible_entries, lock_dir, now_unix, refuse_foreign_dir, stage_manifest,
    write_manifest,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Computes the metrics of points. Implementations hold whatever they need
/// (dataset, engine, readout settings) and may batch many points into one
/// engine dispatch through [`Evaluator::evaluate_many`].
pub trait Evaluator {
    /// Names of the metric columns, in order (e.g. `train_accuracy`,
    /// `test_accuracy`, `diverged_fraction`, `seconds`). Identifiers only
    /// (letters, digits, `_`), distinct from the parameter names, `index` and
    /// `seed`.
    fn metric_names(&self) -> Vec<String>;

    /// The metrics of one point (one value per metric name; NaN is allowed
    /// and written as `NaN`). An `Err` stops the study; finished points are
    /// kept.
    fn evaluate(&mut self, point: &Point) -> Result<Vec<f64>>;

    /// How many points to hand to [`Evaluator::evaluate_many`] at a time
    /// (default 1). Points of a batch are committed together, so a kill loses
    /// at most one batch.
    fn batch_size(&self) -> usize {
        1
    }

    /// The metrics of several points, in the same order (default: one
    /// [`Evaluator::evaluate`] call per point).
    fn evaluate_many(&mut self, points: &[Point]) -> Result<Vec<Vec<f64>>> {
        points.iter().map(|p| self.evaluate(p)).collect()
    }

    /// Bytes the evaluator's engine has moved between host and device so far
    /// ([`crate::engine::Engine::transfer`]; default zero, as on the CPU). The
    /// runner adds what one invocation moved to the manifest's `transfer`.
    fn transfer(&self) -> crate::engine::Transfer {
        crate::engine::Transfer::default()
    }
}

/// The two kinds of study, which differ only in names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StudyKind {
    /// A parameter sweep (`memkin sweep`): `results.csv`.
    #[serde(rename = "sweep")]
    Sweep,
    /// A device-variability Monte Carlo study (`memkin mc`): `draws.csv`.
    #[serde(rename = "mc")]
    MonteCarlo,
}

impl StudyKind {
    /// The CSV file name in a study directory.
    pub fn results_file(self) -> &'static str {
        match self {
            StudyKind::Sweep => "results.csv",
            StudyKind::MonteCarlo => "draws.csv",
        }
    }

    /// The command name (`sweep`, `mc`).
    pub fn name(self) -> &'static str {
        match self {
            StudyKind::Sweep => "sweep",
            StudyKind::MonteCarlo => "mc",
        }
    }
}

/// What to run and where.
#[derive(Debug, Clone)]
pub struct Study<'a> {
    /// The output directory (created if missing).
    pub dir: &'a Path,
    /// Sweep or Monte Carlo.
    pub kind: StudyKind,
    /// The spec exactly as read (recorded and hashed in the manifest).
    pub spec_text: &'a str,
    /// The full plan (every shard gets the same one).
    pub plan: &'a Plan,
    /// `Some((i, n))`: run only shard `i` of `n` (see [`shard_range`]).
    pub shard: Option<(usize, usize)>,
    /// Continue an interrupted study in `dir`.
    pub resume: bool,
    /// Show progress on stderr.
    pub progress: bool,
    /// Extra manifest keys (e.g. `{"backend": "gpu", "adapter": "NVIDIA H200"}`);
    /// an object's keys go at the manifest's top level.
    pub manifest_extra: serde_json::Value,
}

/// What [`run_study`] did.
#[derive(Debug, Clone, Serialize)]
pub struct StudyOutcome {
    /// The study directory.
    pub dir: PathBuf,
    /// The CSV written.
    pub results: PathBuf,
    /// The shard run, if any.
    pub shard: Option<(usize, usize)>,
    /// Indices of the plan this shard covers.
    pub range: Range<usize>,
    /// Points already finished when this run started.
    pub already_done: usize,
    /// Points evaluated by this run.
    pub evaluated: usize,
    /// Wall-clock seconds of this run.
    pub seconds: f64,
}

/// Stages a study's final outputs beside its complete manifest: gets the
/// rows (plan order), may annotate the manifest (e.g. the selected point) and
/// stages files in the transaction the manifest is committed with.
pub type Finisher<'f> = dyn FnMut(&ResultsTable, &mut Manifest, &mut Outputs) -> Result<()> + 'f;

/// What a study reads and writes besides its rows (see [`run_study_with`]).
#[derive(Default)]
pub struct StudyFiles<'f> {
    /// The files the study depends on (dataset files, a saved model): their
    /// sha256 is recorded in the manifest and verified by every later run
    /// and by `merge`.
    pub inputs: Vec<PathBuf>,
    /// Final outputs, committed with the complete manifest (also on a rerun
    /// of a complete study, which rewrites them identically).
    pub finish: Option<&'f mut Finisher<'f>>,
}

/// Runs (or resumes) one shard of a study; see the module docs for the
/// files and the rules. Returns when every point of the shard is done.
pub fn run_study(study: &Study<'_>, evaluator: &mut dyn Evaluator) -> Result<StudyOutcome> {
    run_study_with(study, evaluator, StudyFiles::default())
}

/// The shard's range of the plan, or why `--shard` is invalid.
fn shard_of(study: &Study<'_>) -> Result<Range<usize>> {
    match study.shard {
        Some((i, n)) if n == 0 || i >= n => Err(Error::invalid(
            "--shard",
            format!("{i}/{n}"),
            "expected I/N with 0 <= I < N",
        )),
        Some((i, n)) => Ok(shard_range(study.plan.len(), i, n)),
        None => Ok(0..study.plan.len()),
    }
}

/// The evaluator's metric columns, checked against the parameter columns.
fn metric_columns(params: &[String], evaluator: &dyn Evaluator) -> Result<Vec<String>> {
    let metrics = evaluator.metric_names();
    for m in &metrics {
        check_column_name(m)?;
        if params.contains(m) || m == "index" || m == "seed" {
            return Err(Error::Internal(format!(
                "metric `{m}` collides with a parameter or a reserved column"
            )));
        }
    }
    Ok(metrics)
}

/// The directory's manifest checked against this study (spec, plan, kind,
/// shard, columns, input files), or a new one for an empty directory.
fn load_manifest(
    study: &Study<'_>,
    range: &Range<usize>,
    params: &[String],
    metrics: &[String],
    inputs: &BTreeMap<String, String>,
) -> Result<Manifest> {
    let dir = study.dir;
    let plan = study.plan;
    let spec_hash = spec_sha256(study.spec_text);
    let plan_hash = plan.digest();
    let shard_info = study.shard.map(|(i, n)| ShardInfo {
        index: i,
        count: n,
        start: range.start,
        end: range.end,
    });
    match read_manifest(dir)? {
        Some(mut m) => {
            check_same_study(dir, &m, study.kind, &spec_hash, &plan_hash, &shard_info)?;
            if m.metrics != metrics || m.params != params {
                return Err(Error::bad_file(
                    dir.join("manifest.json"),
                    format!(
                        "columns {:?} + {:?} differ from this evaluator's {:?} + {:?}: use a new --out",
                        m.params, m.metrics, params, metrics
                    ),
                ));
            }
            verify_inputs(&dir.join("manifest.json"), &m.inputs, inputs)?;
            // Files this run depends on that an older manifest did not record.
            for (k, v) in inputs {
                m.inputs.entry(k.clone()).or_insert_with(|| v.clone());
            }
            Ok(m)
        }
        None => {
            if has_visible_entries(dir)? {
                return Err(Error::bad_file(
                    dir,
                    "not empty and holds no manifest.json: not a memkin study directory; choose a new or empty --out",
                ));
            }
            Ok(Manifest {
                memkin_version: env!("CARGO_PKG_VERSION").to_string(),
                kind: study.kind,
                status: "running".into(),
                spec: study.spec_text.to_string(),
                spec_sha256: spec_hash,
                plan_sha256: plan_hash,
                seed: plan.seed(),
                points: plan.len(),
                shard: shard_info,
                params: params.to_vec(),
                metrics: metrics.to_vec(),
                results: study.kind.results_file().to_string(),
                runs: Vec::new(),
                inputs: inputs.clone(),
                merged_from: Vec::new(),
                transfer: Default::default(),
                extra: serde_json::Map::new(),
            })
        }
    }
}

/// Refuses, changing nothing, a run that would need `--resume`: damaged rows
/// or finished points of an unfinished study.
fn refuse_without_resume(
    study: &Study<'_>,
    read: &JournalRead,
    results_path: &Path,
    range: &Range<usize>,
    n_metrics: usize,
) -> Result<()> {
    if study.resume {
        return Ok(());
    }
    if !read.damaged.is_empty() {
        return Err(Error::bad_file(
            results_path,
            format!(
                "line {} is not a row of this plan (index, seed, parameters, {n_metrics} metrics) and rows follow it: the file was edited or damaged; rerun with --resume to recompute only the damaged rows (nothing was changed)",
                lines_text(&read.damaged),
            ),
        ));
    }
    let done = read.journal.done;
    if done > 0 {
        return Err(Error::bad_file(
            study.dir,
            format!(
                "already holds {done} of {} finished points of this {}; pass --resume to continue it (or choose a new --out)",
                range.len(),
                study.kind.name()
            ),
        ));
    }
    Ok(())
}

/// Records this invocation in the manifest (status running), before any work.
fn record_start(study: &Study<'_>, manifest: &mut Manifest, already_done: usize) -> Result<()> {
    if let serde_json::Value::Object(extra) = &study.manifest_extra {
        for (k, v) in extra {
            manifest.extra.insert(k.clone(), v.clone());
        }
    } else if !study.manifest_extra.is_null() {
        manifest
            .extra
            .insert("extra".into(), study.manifest_extra.clone());
    }
    manifest.status = "running".into();
    manifest.memkin_version = env!("CARGO_PKG_VERSION").to_string();
    manifest.runs.push(RunRecord {
        started_unix: now_unix(),
        already_done,
        evaluated: 0,
        seconds: None,
    });
    write_manifest(study.dir, manifest)
}

/// Where the rows go while the missing points are evaluated.
struct Appender<'a> {
    journal: &'a mut Journal,
    file: &'a mut File,
    path: &'a Path,
}

/// Evaluates the points not yet in the journal, batch by batch, each batch
/// appended in one write and synced; returns how many were evaluated.
fn evaluate_missing(
    study: &Study<'_>,
    evaluator: &mut dyn Evaluator,
    range: &Range<usize>,
    metrics: &[String],
    damaged: &[usize],
    to: Appender<'_>,
) -> Result<usize> {
    let Appender {
        journal,
        file,
        path,
    } = to;
    let plan = study.plan;
    let todo: Vec<usize> = range
        .clone()
        .filter(|&i| journal.rows[i - range.start].is_none())
        .collect();
    let label = match study.shard {
        Some((i, n)) => format!("{} shard {i}/{n}", study.kind.name()),
        None => study.kind.name().to_string(),
    };
    let progress = Progress::new(&label, todo.len() as u64, study.progress);
    if journal.done > 0 {
        progress.message(&format!("resumed, {} done before", journal.done));
    }
    if !damaged.is_empty() {
        progress.message(&format!(
            "{}: dropped damaged line(s) {} (recomputed)",
            path.display(),
            lines_text(damaged)
        ));
    }
    let batch = evaluator.batch_size().max(1);
    let mut evaluated = 0usize;
    for chunk in todo.chunks(batch) {
        let points: Vec<Point> = chunk.iter().map(|&i| plan.point(i)).collect();
        let values = evaluator.evaluate_many(&points)?;
        if values.len() != points.len() {
            return Err(Error::Internal(format!(
                "evaluator returned {} results for {} points",
                values.len(),
                points.len()
            )));
        }
        let mut text = String::new();
        for (p, v) in points.iter().zip(&values) {
            if v.len() != metrics.len() {
                return Err(Error::Internal(format!(
                    "evaluator returned {} metrics for point {}; expected {} ({})",
                    v.len(),
                    p.index,
                    metrics.len(),
                    metrics.join(", ")
                )));
            }
            let mut row = row_prefix(p);
            for x in v {
                row.push(',');
                row.push_str(&fmt_f64(*x));
            }
            text.push_str(&row);
            text.push('\n');
            if journal.last_index.is_some_and(|l| l >= p.index) {
                journal.in_order = false;
            }
            journal.last_index = Some(p.index);
            journal.rows[p.index - range.start] = Some(row);
        }
        // One write, then a sync: the batch is durable before the next starts.
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(path, e))?;
        evaluated += points.len();
        progress.inc(points.len() as u64);
    }
    progress.finish();
    Ok(evaluated)
}

/// Commits, in one transaction, the CSV in plan order (when the file is not
/// already), the complete manifest and the caller's final outputs.
fn commit_complete(
    dir: &Path,
    results_path: &Path,
    head: &str,
    journal: &Journal,
    manifest: &mut Manifest,
    finish: Option<&mut Finisher<'_>>,
) -> Result<()> {
    let mut text = format!("{head}\n");
    for row in journal.rows.iter().flatten() {
        text.push_str(row);
        text.push('\n');
    }
    manifest.status = "complete".into();
    let mut out = Outputs::new();
    if !journal.in_order {
        out.text(results_path, &text)?;
    }
    if let Some(f) = finish {
        let table = ResultsTable::parse(results_path, &text)?;
        f(&table, manifest, &mut out)?;
    }
    stage_manifest(&mut out, dir, manifest)?;
    out.commit()
}

/// The complete study of this spec text, plan and shard that `dir` already
/// holds, its input files unchanged since (their sha256 verified against the
/// manifest's, an error naming a changed one): `Some(manifest)` when there is
/// one, so that only its report needs redoing; `None` when `dir` holds no
/// such study (nothing, an unfinished one, or another study, which
/// [`run_study_with`] resumes or refuses).
pub fn completed(
    dir: &Path,
    spec_text: &str,
    plan: &Plan,
    shard: Option<(usize, usize)>,
    inputs: &[PathBuf],
) -> Result<Option<Manifest>> {
    let Some(m) = read_manifest(dir)?.filter(|m| {
        m.status == "complete"
            && m.spec_sha256 == spec_sha256(spec_text)
            && m.plan_sha256 == plan.digest()
            && m.shard.as_ref().map(|s| (s.index, s.count)) == shard
    }) else {
        return Ok(None);
    };
    verify_inputs(&dir.join("manifest.json"), &m.inputs, &hash_inputs(inputs)?)?;
    Ok(Some(m))
}

/// [`run_study`] with the files the study depends on and its final outputs
/// (see [`StudyFiles`]). The stages: check the shard and the columns; open
/// and lock the directory; check (or create) the manifest, the input files'
/// sha256 and the rows already there, refusing before any change; record
/// the run; evaluate the missing points; commit the complete study.
pub fn run_study_with(
    study: &Study<'_>,
    evaluator: &mut dyn Evaluator,
    files: StudyFiles<'_>,
) -> Result<StudyOutcome> {
    let t0 = Instant::now();
    let dir = study.dir;
    let range = shard_of(study)?;
    let params = study.plan.param_names();
    let metrics = metric_columns(&params, evaluator)?;
    let inputs = hash_inputs(&files.inputs)?;
    let results_path = dir.join(study.kind.results_file());
    refuse_foreign_dir(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let _lock = lock_dir(dir)?;
    remove_stale_partials(dir);

    let mut manifest = load_manifest(study, &range, &params, &metrics, &inputs)?;
    let head = header(&params, &metrics);
    let read = read_journal(&results_path, &head, study.plan, &range, metrics.len())?;
    let already_done = read.journal.done;
    let outcome = |evaluated: usize| StudyOutcome {
        dir: dir.to_path_buf(),
        results: results_path.clone(),
        shard: study.shard,
        range: range.clone(),
        already_done,
        evaluated,
        seconds: t0.elapsed().as_secs_f64(),
    };
    if manifest.status == "complete" && already_done == range.len() && read.damaged.is_empty() {
        // Finished before: only the final outputs are redone (identical).
        if files.finish.is_some() {
            commit_complete(
                dir,
                &results_path,
                &head,
                &read.journal,
                &mut manifest,
                files.finish,
            )?;
        }
        return Ok(outcome(0));
    }
    refuse_without_resume(study, &read, &results_path, &range, metrics.len())?;

    // Every check passed: only now is anything on disk changed.
    let mut file = open_journal(&results_path, &head, &read, &range)?;
    let JournalRead {
        mut journal,
        damaged,
        ..
    } = read;
    record_start(study, &mut manifest, already_done)?;
    let transfer_before = evaluator.transfer();
    let evaluated = evaluate_missing(
        study,
        evaluator,
        &range,
        &metrics,
        &damaged,
        Appender {
            journal: &mut journal,
            file: &mut file,
            path: &results_path,
        },
    )?;
    drop(file);
    manifest.transfer = manifest.transfer + evaluator.transfer().since(transfer_before);
    if let Some(r) = manifest.runs.last_mut() {
        r.evaluated = evaluated;
        r.seconds = Some(t0.elapsed().as_secs_f64());
    }
    commit_complete(
        dir,
        &results_path,
        &head,
        &journal,
        &mut manifest,
        files.finish,
    )?;
    Ok(outcome(evaluated))
}
