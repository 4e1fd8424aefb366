//! `manifest.json`: what a study directory holds, the files it depends on,
//! and the checks that keep one directory to one study.

use super::StudyKind;
use crate::engine::Transfer;
use crate::report::output::{Outputs, write_atomic};
use crate::study::plan::{Plan, hex};
use crate::study::spec::{McSpec, SweepSpec};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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
    /// sha256 (hex) of every file the study depends on (datasets, model
    /// files), by absolute path; `--resume`, reruns and `merge` verify them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
    /// Bytes the study's engine moved between host and device, in total over
    /// every invocation (a merged directory: over its shards). Zero on the CPU.
    #[serde(default)]
    pub transfer: Transfer,
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

pub(super) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn short(h: &str) -> &str {
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

/// The manifest as text (pretty JSON, one trailing newline).
pub(super) fn manifest_text(m: &Manifest) -> Result<String> {
    let text =
        serde_json::to_string_pretty(m).map_err(|e| Error::Internal(format!("manifest: {e}")))?;
    Ok(format!("{text}\n"))
}

pub(super) fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    write_atomic(&dir.join("manifest.json"), manifest_text(m)?.as_bytes())?;
    sync_dir(dir);
    Ok(())
}

/// Stages `DIR/manifest.json` in a transaction (committed with the rest).
pub(super) fn stage_manifest(out: &mut Outputs, dir: &Path, m: &Manifest) -> Result<()> {
    out.text(&dir.join("manifest.json"), &manifest_text(m)?)
}

/// Makes renames and new files in `dir` durable (best effort: not every
/// platform can sync a directory).
pub(super) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
/// An exclusive advisory lock on `DIR/.lock`, held while the study runs.
// `File::try_lock` is std since Rust 1.89; the toolchain is 1.95.
#[allow(clippy::incompatible_msrv)]
pub(super) fn lock_dir(dir: &Path) -> Result<File> {
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

/// Refuses, before anything is created there, a path that cannot be a study
/// directory: a file, or a non-empty directory without a manifest.
pub(super) fn refuse_foreign_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err(Error::Path {
            path: dir.to_path_buf(),
            message: "is not a directory: --out names the study directory".into(),
        }),
        Ok(_) if !dir.join("manifest.json").exists() && has_visible_entries(dir)? => {
            Err(Error::bad_file(
                dir,
                "not empty and holds no manifest.json: not a memkin study directory; choose a new or empty --out",
            ))
        }
        _ => Ok(()),
    }
}

/// True when `dir` holds anything but hidden files.
pub(super) fn has_visible_entries(dir: &Path) -> Result<bool> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(rd
        .flatten()
        .any(|e| !e.file_name().to_string_lossy().starts_with('.')))
}

pub(super) fn check_same_study(
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

/// sha256 (hex) of a file's bytes, read in blocks.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// The sha256 of each file a study depends on, keyed by its absolute path
/// (symbolic links resolved, so every spelling of a file is one key).
pub fn hash_inputs(files: &[PathBuf]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for f in files {
        let abs = f.canonicalize().map_err(|e| Error::io(f, e))?;
        let key = abs.display().to_string();
        if let std::collections::btree_map::Entry::Vacant(e) = out.entry(key) {
            e.insert(file_sha256(&abs)?);
        }
    }
    Ok(out)
}

/// Checks the files a manifest records against the files as they are now:
/// every recorded file must still exist with the recorded sha256 (`now`
/// holds those already hashed by this run). A file changed since the study
/// started would mix two studies in one directory: refused, naming it.
pub fn verify_inputs(
    manifest_path: &Path,
    recorded: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Result<()> {
    for (file, sha) in recorded {
        let current = match now.get(file) {
            Some(h) => h.clone(),
            None => match file_sha256(Path::new(file)) {
                Ok(h) => h,
                Err(_) => {
                    return Err(Error::bad_file(
                        file,
                        format!(
                            "not found or unreadable, and the study in {} depends on it (sha256 {}...): restore it or use a new --out",
                            manifest_path.display(),
                            short(sha)
                        ),
                    ));
                }
            },
        };
        if &current != sha {
            return Err(Error::bad_file(
                file,
                format!(
                    "changed since the study in {} started (sha256 {}..., recorded {}...): its rows would mix two inputs; restore the file or use a new --out",
                    manifest_path.display(),
                    short(&current),
                    short(sha)
                ),
            ));
        }
    }
    Ok(())
}

impl Manifest {
    /// The plan of the recorded spec (at the recorded seed), checked against
    /// the recorded plan digest: what `merge` checks every row against.
    pub fn plan(&self, manifest_path: &Path) -> Result<Plan> {
        // The recorded text is TOML or JSON; its format decides the parser.
        let name = if self.spec.trim_start().starts_with('{') {
            "spec.json"
        } else {
            "spec.toml"
        };
        let as_file = manifest_path.with_file_name(name);
        let bad = |e: Error| {
            Error::bad_file(
                manifest_path,
                format!(
                    "its recorded spec no longer parses ({e}): not a study this memkin can merge"
                ),
            )
        };
        let plan = match self.kind {
            StudyKind::Sweep => {
                let mut spec = SweepSpec::from_text(&as_file, &self.spec).map_err(bad)?;
                spec.seed = self.seed;
                Plan::sweep(&spec)
            }
            StudyKind::MonteCarlo => {
                let mut spec = McSpec::from_text(&as_file, &self.spec).map_err(bad)?;
                spec.seed = self.seed;
                Plan::monte_carlo(&spec)
            }
        };
        if plan.digest() != self.plan_sha256 || plan.len() != self.points {
            return Err(Error::bad_file(
                manifest_path,
                format!(
                    "records plan sha256 {}... ({} points), but its spec gives {}... ({} points): the manifest was edited",
                    short(&self.plan_sha256),
                    self.points,
                    short(&plan.digest()),
                    plan.len()
                ),
            ));
        }
        Ok(plan)
    }
}
