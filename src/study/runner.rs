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

use crate::report::npy::write_atomic;
use crate::report::progress::Progress;
use crate::study::plan::{Plan, Point, hex, shard_range};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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

/// A shard's place in the plan, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Shard index, 0-based.
    pub index: usize,
    /// Shard count.
    pub count: usize,
    /// First plan index of the shard.
    pub start: usize,
    /// One past the last plan index.
    pub end: usize,
}

/// One invocation of a study, as recorded in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Start, seconds since the Unix epoch.
    pub started_unix: u64,
    /// Points already done at the start.
    pub already_done: usize,
    /// Points evaluated.
    pub evaluated: usize,
    /// Wall-clock seconds (absent while running, or if killed).
    pub seconds: Option<f64>,
}

/// `manifest.json` of a study directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The memkin version that wrote it.
    pub memkin_version: String,
    /// Sweep or Monte Carlo.
    pub kind: StudyKind,
    /// `running` or `complete`.
    pub status: String,
    /// The spec text.
    pub spec: String,
    /// sha256 (hex) of the spec text.
    pub spec_sha256: String,
    /// The plan's digest (see [`Plan::digest`]).
    pub plan_sha256: String,
    /// The study seed.
    pub seed: u64,
    /// Points in the full plan.
    pub points: usize,
    /// The shard this directory holds (`null`: the whole plan).
    pub shard: Option<ShardInfo>,
    /// Parameter columns.
    pub params: Vec<String>,
    /// Metric columns.
    pub metrics: Vec<String>,
    /// The CSV file name.
    pub results: String,
    /// One record per invocation.
    #[serde(default)]
    pub runs: Vec<RunRecord>,
    /// For a merged directory: the manifests of its shards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<serde_json::Value>,
    /// The caller's extra keys (backend, adapter...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// sha256 (hex) of a spec's text.
pub fn spec_sha256(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

/// Reads `DIR/manifest.json`; `Ok(None)` when there is none.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join("manifest.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::bad_file(&path, format!("not a memkin manifest: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Adds (or replaces) a top-level key of a finished study's manifest, e.g. the
/// point selected on validation accuracy once every row is in.
pub fn annotate_manifest(dir: &Path, key: &str, value: serde_json::Value) -> Result<()> {
    let mut m = read_manifest(dir)?
        .ok_or_else(|| Error::bad_file(dir, "no manifest.json: not a memkin study directory"))?;
    m.extra.insert(key.to_string(), value);
    write_manifest(dir, &m)
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    let text =
        serde_json::to_string_pretty(m).map_err(|e| Error::Internal(format!("manifest: {e}")))?;
    write_atomic(&dir.join("manifest.json"), format!("{text}\n").as_bytes())?;
    sync_dir(dir);
    Ok(())
}

/// Makes renames and new files in `dir` durable (best effort: not every
/// platform can sync a directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn check_column_name(name: &str) -> Result<()> {
    let mut c = name.chars();
    let ok = c
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Internal(format!(
            "metric name `{name}`: expected letters, digits and `_`"
        )))
    }
}

/// `index,seed,<params>,<metrics>`.
fn header(params: &[String], metrics: &[String]) -> String {
    let mut cols = vec!["index".to_string(), "seed".to_string()];
    cols.extend(params.iter().cloned());
    cols.extend(metrics.iter().cloned());
    cols.join(",")
}

/// The row prefix a point fixes: `index,seed,<params>`.
fn row_prefix(p: &Point) -> String {
    let mut s = format!("{},{}", p.index, p.seed);
    for (_, v) in &p.params {
        s.push(',');
        s.push_str(&fmt_f64(*v));
    }
    s
}

/// Rust's shortest round-trip form: `0.1`, `1e-7`, `1.0`, `NaN`, `inf`.
fn fmt_f64(v: f64) -> String {
    format!("{v:?}")
}

/// An exclusive advisory lock on `DIR/.lock`, held while the study runs.
// `File::try_lock` is std since Rust 1.89; the toolchain is 1.95.
#[allow(clippy::incompatible_msrv)]
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(".lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::bad_file(
            dir,
            "another memkin process is running this study directory (it holds .lock)",
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Removes temporaries left by a killed writer (`.NAME.partial-PID`). Only
/// called while holding the lock.
fn remove_stale_partials(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".partial-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// True when `dir` holds anything but hidden files.
fn has_visible_entries(dir: &Path) -> Result<bool> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(rd
        .flatten()
        .any(|e| !e.file_name().to_string_lossy().starts_with('.')))
}

/// The study's rows read back from its CSV.
struct Journal {
    /// Row text (without newline) per shard-relative index.
    rows: Vec<Option<String>>,
    done: usize,
    /// True while the file's rows are in strictly increasing index order.
    in_order: bool,
    last_index: Option<usize>,
}

/// Reads `path`, keeps the longest valid prefix, truncates the file to it
/// (writing the header if the file is new or torn inside it), and returns
/// the rows with the file open for appending.
fn open_journal(
    path: &Path,
    header: &str,
    plan: &Plan,
    range: &Range<usize>,
    n_metrics: usize,
) -> Result<(Journal, File)> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    let mut j = Journal {
        rows: vec![None; range.len()],
        done: 0,
        in_order: true,
        last_index: None,
    };
    let n_cols = 2 + plan.param_names().len() + n_metrics;
    let mut keep = 0usize; // bytes of the valid prefix
    let mut pos = 0usize;
    let mut first = true;
    while let Some(nl) = bytes[pos..].iter().position(|&b| b == b'\n') {
        let line = &bytes[pos..pos + nl];
        let next = pos + nl + 1;
        if first {
            first = false;
            if line != header.as_bytes() {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "columns `{}` differ from `{header}` (written by another memkin or evaluator): use a new --out",
                        String::from_utf8_lossy(line)
                    ),
                ));
            }
            keep = next;
            pos = next;
            continue;
        }
        let Some(row) = std::str::from_utf8(line)
            .ok()
            .and_then(|l| valid_row(l, plan, range, n_cols))
        else {
            break;
        };
        let (index, text) = row;
        let slot = &mut j.rows[index - range.start];
        if slot.is_none() {
            *slot = Some(text.to_string());
            j.done += 1;
        }
        if j.last_index.is_some_and(|l| l >= index) {
            j.in_order = false;
        }
        j.last_index = Some(index);
        keep = next;
        pos = next;
    }
    if first {
        // New file, or killed while writing the header.
        keep = 0;
    }
    if keep < bytes.len() {
        f.set_len(keep as u64).map_err(|e| Error::io(path, e))?;
    }
    f.seek(SeekFrom::End(0)).map_err(|e| Error::io(path, e))?;
    if keep == 0 {
        f.write_all(format!("{header}\n").as_bytes())
            .map_err(|e| Error::io(path, e))?;
    }
    f.sync_data().map_err(|e| Error::io(path, e))?;
    Ok((j, f))
}

/// `Some((index, line))` when `line` is a complete row of a point of `range`
/// whose index, seed and parameters match the plan.
fn valid_row<'l>(
    line: &'l str,
    plan: &Plan,
    range: &Range<usize>,
    n_cols: usize,
) -> Option<(usize, &'l str)> {
    if line.split(',').count() != n_cols {
        return None;
    }
    let index: usize = line.split(',').next()?.parse().ok()?;
    if !range.contains(&index) {
        return None;
    }
    let prefix = row_prefix(&plan.point(index));
    let rest = line.strip_prefix(prefix.as_str())?.strip_prefix(',')?;
    rest.split(',')
        .all(|m| m.parse::<f64>().is_ok())
        .then_some((index, line))
}

/// Runs (or resumes) one shard of a study; see the module docs for the
/// files and the rules. Returns when every point of the shard is done.
pub fn run_study(study: &Study<'_>, evaluator: &mut dyn Evaluator) -> Result<StudyOutcome> {
    let t0 = Instant::now();
    let dir = study.dir;
    let plan = study.plan;
    let range = match study.shard {
        Some((i, n)) => {
            if n == 0 || i >= n {
                return Err(Error::invalid(
                    "--shard",
                    format!("{i}/{n}"),
                    "expected I/N with 0 <= I < N",
                ));
            }
            shard_range(plan.len(), i, n)
        }
        None => 0..plan.len(),
    };
    let params = plan.param_names();
    let metrics = evaluator.metric_names();
    for m in &metrics {
        check_column_name(m)?;
        if params.contains(m) || m == "index" || m == "seed" {
            return Err(Error::Internal(format!(
                "metric `{m}` collides with a parameter or a reserved column"
            )));
        }
    }
    let results_path = dir.join(study.kind.results_file());
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let _lock = lock_dir(dir)?;
    remove_stale_partials(dir);

    let spec_hash = spec_sha256(study.spec_text);
    let plan_hash = plan.digest();
    let shard_info = study.shard.map(|(i, n)| ShardInfo {
        index: i,
        count: n,
        start: range.start,
        end: range.end,
    });
    let existing = read_manifest(dir)?;
    let mut manifest = match existing {
        Some(m) => {
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
            m
        }
        None => {
            if has_visible_entries(dir)? {
                return Err(Error::bad_file(
                    dir,
                    "not empty and holds no manifest.json: not a memkin study directory; choose a new or empty --out",
                ));
            }
            Manifest {
                memkin_version: env!("CARGO_PKG_VERSION").to_string(),
                kind: study.kind,
                status: "running".into(),
                spec: study.spec_text.to_string(),
                spec_sha256: spec_hash.clone(),
                plan_sha256: plan_hash.clone(),
                seed: plan.seed(),
                points: plan.len(),
                shard: shard_info.clone(),
                params: params.clone(),
                metrics: metrics.clone(),
                results: study.kind.results_file().to_string(),
                runs: Vec::new(),
                merged_from: Vec::new(),
                extra: serde_json::Map::new(),
            }
        }
    };

    let head = header(&params, &metrics);
    let was_complete = manifest.status == "complete";
    let (mut journal, mut file) = open_journal(&results_path, &head, plan, &range, metrics.len())?;
    let already_done = journal.done;
    if was_complete && journal.done == range.len() {
        // Finished before: nothing to do, nothing to write.
        return Ok(StudyOutcome {
            dir: dir.to_path_buf(),
            results: results_path,
            shard: study.shard,
            range,
            already_done,
            evaluated: 0,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    if already_done > 0 && !study.resume {
        return Err(Error::bad_file(
            dir,
            format!(
                "already holds {already_done} of {} finished points of this {}; pass --resume to continue it (or choose a new --out)",
                range.len(),
                study.kind.name()
            ),
        ));
    }

    // Record this run before any work.
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
    write_manifest(dir, &manifest)?;

    let todo: Vec<usize> = range
        .clone()
        .filter(|&i| journal.rows[i - range.start].is_none())
        .collect();
    let label = match study.shard {
        Some((i, n)) => format!("{} shard {i}/{n}", study.kind.name()),
        None => study.kind.name().to_string(),
    };
    let progress = Progress::new(&label, todo.len() as u64, study.progress);
    if already_done > 0 {
        progress.message(&format!("resumed, {already_done} done before"));
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
            .map_err(|e| Error::io(&results_path, e))?;
        evaluated += points.len();
        progress.inc(points.len() as u64);
    }
    progress.finish();
    drop(file);

    if !journal.in_order {
        let mut text = format!("{head}\n");
        for row in journal.rows.iter().flatten() {
            text.push_str(row);
            text.push('\n');
        }
        write_atomic(&results_path, text.as_bytes())?;
    }
    let seconds = t0.elapsed().as_secs_f64();
    manifest.status = "complete".into();
    if let Some(r) = manifest.runs.last_mut() {
        r.evaluated = evaluated;
        r.seconds = Some(seconds);
    }
    write_manifest(dir, &manifest)?;
    Ok(StudyOutcome {
        dir: dir.to_path_buf(),
        results: results_path,
        shard: study.shard,
        range,
        already_done,
        evaluated,
        seconds,
    })
}

fn check_same_study(
    dir: &Path,
    m: &Manifest,
    kind: StudyKind,
    spec_hash: &str,
    plan_hash: &str,
    shard: &Option<ShardInfo>,
) -> Result<()> {
    let path = dir.join("manifest.json");
    if m.kind != kind {
        return Err(Error::bad_file(
            path,
            format!(
                "holds a `{}` study, not a `{}` one: use a new --out",
                m.kind.name(),
                kind.name()
            ),
        ));
    }
    if m.spec_sha256 != spec_hash {
        return Err(Error::bad_file(
            path,
            format!(
                "holds results of another spec (sha256 {}..., this spec {}...): use a new --out",
                short(&m.spec_sha256),
                short(spec_hash)
            ),
        ));
    }
    if m.plan_sha256 != plan_hash {
        return Err(Error::bad_file(
            path,
            format!(
                "same spec but another plan (plan sha256 {}..., now {}...; written by memkin {}): use a new --out",
                short(&m.plan_sha256),
                short(plan_hash),
                m.memkin_version
            ),
        ));
    }
    if &m.shard != shard {
        let show = |s: &Option<ShardInfo>| {
            s.as_ref().map_or("the whole plan".to_string(), |s| {
                format!("shard {}/{}", s.index, s.count)
            })
        };
        return Err(Error::bad_file(
            path,
            format!(
                "holds {}, not {}: use the matching --shard or a new --out",
                show(&m.shard),
                show(shard)
            ),
        ));
    }
    Ok(())
}

/// What [`merge`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct MergeOutcome {
    /// The merged directory.
    pub out: PathBuf,
    /// The merged CSV.
    pub results: PathBuf,
    /// Points in the plan (= rows written).
    pub points: usize,
    /// Shard directories merged.
    pub shards: usize,
}

/// Merges shard directories of one study into `out`: checks that every
/// shard comes from the same spec and plan (sha256), that their rows cover
/// every point exactly once, then writes `out/<results>.csv` in plan order
/// (what an unsharded run writes, wall-time metrics aside) and `out/manifest.json` (the
/// study's, unsharded and complete, with each shard's manifest under
/// `merged_from`). Missing points are reported per shard, with a hint to
/// resume it. Rerunning a merge rewrites the same files.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<MergeOutcome> {
    if dirs.is_empty() {
        return Err(Error::invalid(
            "merge",
            "no directories",
            "expected one or more shard directories",
        ));
    }
    let mut manifests = Vec::new();
    for d in dirs {
        if same_path(d, out) {
            return Err(Error::invalid(
                "--out",
                out.display(),
                "must differ from every shard directory",
            ));
        }
        let m = read_manifest(d)?
            .ok_or_else(|| Error::bad_file(d, "no manifest.json: not a memkin study directory"))?;
        manifests.push(m);
    }
    let first = &manifests[0];
    for (d, m) in dirs.iter().zip(&manifests).skip(1) {
        if m.kind != first.kind
            || m.spec_sha256 != first.spec_sha256
            || m.plan_sha256 != first.plan_sha256
            || m.points != first.points
            || m.params != first.params
            || m.metrics != first.metrics
        {
            return Err(Error::bad_file(
                d.join("manifest.json"),
                format!(
                    "from another study (spec sha256 {}..., plan {}...) than {} (spec sha256 {}..., plan {}...)",
                    short(&m.spec_sha256),
                    short(&m.plan_sha256),
                    dirs[0].display(),
                    short(&first.spec_sha256),
                    short(&first.plan_sha256)
                ),
            ));
        }
    }
    let head = header(&first.params, &first.metrics);
    let n_cols = 2 + first.params.len() + first.metrics.len();
    let mut rows: Vec<Option<(usize, String)>> = vec![None; first.points];
    for (k, d) in dirs.iter().enumerate() {
        let path = d.join(&first.results);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut lines = text.split_inclusive('\n');
        if let Some(h) = lines.next().filter(|h| h.ends_with('\n'))
            && h.trim_end_matches('\n') != head
        {
            return Err(Error::bad_file(
                &path,
                format!("columns differ from `{head}`"),
            ));
        }
        for line in lines {
            // A torn last line (no newline) of an unfinished shard is not a row.
            let Some(line) = line.strip_suffix('\n') else {
                break;
            };
            let Some(index) = line
                .split(',')
                .next()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|&i| i < first.points && line.split(',').count() == n_cols)
            else {
                return Err(Error::bad_file(&path, format!("malformed row `{line}`")));
            };
            if let Some((other, _)) = &rows[index] {
                return Err(Error::bad_file(
                    &path,
                    format!(
                        "point {index} is also in {}: every point must come from exactly one shard",
                        dirs[*other].display()
                    ),
                ));
            }
            rows[index] = Some((k, line.to_string()));
        }
    }
    let missing: Vec<usize> = (0..first.points).filter(|&i| rows[i].is_none()).collect();
    if !missing.is_empty() {
        return Err(Error::bad_file(
            out,
            missing_report(&missing, dirs, &manifests),
        ));
    }

    // The output: an unsharded, complete study.
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let _lock = lock_dir(out)?;
    remove_stale_partials(out);
    match read_manifest(out)? {
        Some(m) if m.spec_sha256 != first.spec_sha256 || m.kind != first.kind => {
            return Err(Error::bad_file(
                out.join("manifest.json"),
                format!(
                    "holds another study (spec sha256 {}...): use a new --out",
                    short(&m.spec_sha256)
                ),
            ));
        }
        Some(_) => {}
        None if has_visible_entries(out)? => {
            return Err(Error::bad_file(
                out,
                "not empty and holds no manifest.json: choose a new or empty --out",
            ));
        }
        None => {}
    }
    let mut text = format!("{head}\n");
    for (_, row) in rows.iter().flatten() {
        text.push_str(row);
        text.push('\n');
    }
    let results = out.join(&first.results);
    write_atomic(&results, text.as_bytes())?;
    // Keys every shard agrees on (e.g. backend) stay at the top level.
    let mut extra = first.extra.clone();
    extra.retain(|k, v| manifests.iter().all(|m| m.extra.get(k) == Some(v)));
    let merged_from = dirs
        .iter()
        .zip(&manifests)
        .map(|(d, m)| {
            let mut v = serde_json::to_value(m).unwrap_or_default();
            if let serde_json::Value::Object(o) = &mut v {
                o.remove("spec");
                o.insert("dir".into(), d.display().to_string().into());
            }
            v
        })
        .collect();
    let manifest = Manifest {
        memkin_version: env!("CARGO_PKG_VERSION").to_string(),
        status: "complete".into(),
        shard: None,
        runs: Vec::new(),
        merged_from,
        extra,
        ..first.clone()
    };
    write_manifest(out, &manifest)?;
    Ok(MergeOutcome {
        out: out.to_path_buf(),
        results,
        points: first.points,
        shards: dirs.len(),
    })
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// "missing 14 of 256 points: shard 1/3 (DIR): 14 (90..104); resume ..."
fn missing_report(missing: &[usize], dirs: &[PathBuf], manifests: &[Manifest]) -> String {
    let total = manifests[0].points;
    let mut by_owner: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &i in missing {
        let owner = dirs
            .iter()
            .zip(manifests)
            .find(|(_, m)| {
                m.shard
                    .as_ref()
                    .is_none_or(|s| (s.start..s.end).contains(&i))
            })
            .map_or_else(
                || match &manifests[0].shard {
                    Some(s) => {
                        let k = (0..s.count)
                            .find(|&k| shard_range(total, k, s.count).contains(&i))
                            .unwrap_or(0);
                        format!("shard {k}/{} (not given)", s.count)
                    }
                    None => "no shard".into(),
                },
                |(d, m)| match &m.shard {
                    Some(s) => format!("shard {}/{} ({})", s.index, s.count, d.display()),
                    None => d.display().to_string(),
                },
            );
        by_owner.entry(owner).or_default().push(i);
    }
    let parts: Vec<String> = by_owner
        .iter()
        .map(|(owner, idx)| format!("{owner}: {} ({})", idx.len(), ranges(idx)))
        .collect();
    format!(
        "missing {} of {total} points: {}; finish those shards (rerun with --resume) and merge again",
        missing.len(),
        parts.join("; ")
    )
}

/// `0..3, 7, 9..12` (at most 5 ranges shown).
fn ranges(idx: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut k = 0;
    while k < idx.len() {
        let start = idx[k];
        while k + 1 < idx.len() && idx[k + 1] == idx[k] + 1 {
            k += 1;
        }
        out.push(if idx[k] == start {
            start.to_string()
        } else {
            format!("{start}..{}", idx[k] + 1)
        });
        k += 1;
    }
    if out.len() > 5 {
        let more = out.len() - 5;
        out.truncate(5);
        out.push(format!("and {more} more ranges"));
    }
    out.join(", ")
}

/// A study CSV read back as numbers (for plots and summaries).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultsTable {
    /// Column names (`index`, `seed`, parameters, metrics).
    pub columns: Vec<String>,
    /// Rows, as f64 (the seed column loses precision above 2^53; use the
    /// CSV text for exact seeds).
    pub rows: Vec<Vec<f64>>,
}

impl ResultsTable {
    /// Reads a study CSV (complete rows only).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut lines = text.split_inclusive('\n');
        let columns: Vec<String> = lines
            .next()
            .ok_or_else(|| Error::bad_file(path, "empty: expected a header line"))?
            .trim_end()
            .split(',')
            .map(str::to_string)
            .collect();
        let mut rows = Vec::new();
        for line in lines {
            let Some(line) = line.strip_suffix('\n') else {
                break;
            };
            let row: Vec<f64> = line
                .split(',')
                .map(|s| s.parse::<f64>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| Error::bad_file(path, format!("malformed row `{line}`")))?;
            if row.len() != columns.len() {
                return Err(Error::bad_file(
                    path,
                    format!("row `{line}`: expected {} columns", columns.len()),
                ));
            }
            rows.push(row);
        }
        Ok(Self { columns, rows })
    }

    /// The values of a column, in row order.
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        let k = self.columns.iter().position(|c| c == name)?;
        Some(self.rows.iter().map(|r| r[k]).collect())
    }

    /// A metric over a 2-D grid, row-major with `ys` as rows and `xs` as
    /// columns (`z[iy * xs.len() + ix]`), NaN where no row has those exact
    /// parameter values (or several do, e.g. with random draws per grid
    /// point: then their mean).
    pub fn grid_matrix(
        &self,
        x: &str,
        xs: &[f64],
        y: &str,
        ys: &[f64],
        metric: &str,
    ) -> Option<Vec<f64>> {
        let (cx, cy, cm) = (
            self.columns.iter().position(|c| c == x)?,
            self.columns.iter().position(|c| c == y)?,
            self.columns.iter().position(|c| c == metric)?,
        );
        let mut sum = vec![0.0; xs.len() * ys.len()];
        let mut n = vec![0usize; xs.len() * ys.len()];
        for r in &self.rows {
            let (Some(ix), Some(iy)) = (
                xs.iter().position(|v| *v == r[cx]),
                ys.iter().position(|v| *v == r[cy]),
            ) else {
                continue;
            };
            sum[iy * xs.len() + ix] += r[cm];
            n[iy * xs.len() + ix] += 1;
        }
        Some(
            sum.iter()
                .zip(&n)
                .map(|(s, &k)| if k == 0 { f64::NAN } else { s / k as f64 })
                .collect(),
        )
    }
}
