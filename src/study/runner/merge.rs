//! Merging the shard directories of one study into one directory.

use super::journal::{header, valid_row};
use super::manifest::{
    Manifest, has_visible_entries, lock_dir, read_manifest, refuse_foreign_dir, short,
    stage_manifest, verify_inputs,
};
use super::{Finisher, ResultsTable};
use crate::report::output::{Outputs, remove_stale_partials};
use crate::study::plan::shard_range;
use crate::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
///
/// Before anything is written: every row must be the row of its index in the
/// plan rebuilt from the recorded spec (index, seed, parameters, every
/// column a number) and lie in its shard's range; the shards must agree on
/// the sha256 of each file the study depends on, and those files must still
/// have it.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<MergeOutcome> {
    merge_with(dirs, out, None)
}

/// [`merge`], with final outputs (heatmap, summary) staged by `finish` and
/// committed with the merged CSV and manifest, all or none.
pub fn merge_with(
    dirs: &[PathBuf],
    out: &Path,
    finish: Option<&mut Finisher<'_>>,
) -> Result<MergeOutcome> {
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
    let plan = first.plan(&dirs[0].join("manifest.json"))?;
    // The files the study depends on: one sha256 per file across the shards,
    // and still that one on disk.
    let mut inputs: BTreeMap<String, String> = BTreeMap::new();
    for (d, m) in dirs.iter().zip(&manifests) {
        for (file, sha) in &m.inputs {
            match inputs.get(file) {
                Some(other) if other != sha => {
                    return Err(Error::bad_file(
                        file,
                        format!(
                            "has sha256 {}... in {} but {}... in another shard: the shards read different versions of it; rerun the shards of one version",
                            short(sha),
                            d.join("manifest.json").display(),
                            short(other)
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    inputs.insert(file.clone(), sha.clone());
                }
            }
        }
    }
    verify_inputs(&dirs[0].join("manifest.json"), &inputs, &BTreeMap::new())?;
    let head = header(&first.params, &first.metrics);
    let n_cols = 2 + first.params.len() + first.metrics.len();
    let all = 0..first.points;
    let mut rows: Vec<Option<(usize, String)>> = vec![None; first.points];
    for (k, (d, m)) in dirs.iter().zip(&manifests).enumerate() {
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
        let own = m.shard.as_ref().map_or(all.clone(), |s| s.start..s.end);
        for (n, line) in lines.enumerate() {
            // A torn last line (no newline) of an unfinished shard is not a row.
            let Some(line) = line.strip_suffix('\n') else {
                break;
            };
            let line_no = n + 2;
            let Some(index) = line
                .split(',')
                .next()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|&i| i < first.points && line.split(',').count() == n_cols)
            else {
                return Err(Error::bad_file(
                    &path,
                    format!("line {line_no}: malformed row `{line}`"),
                ));
            };
            if valid_row(line, &plan, &all, n_cols).is_none() {
                return Err(Error::bad_file(
                    &path,
                    format!(
                        "line {line_no}: row `{line}` is not point {index} of the plan (index, seed and parameters must be the plan's, every metric a number): the file was edited or damaged; rerun that shard with --resume"
                    ),
                ));
            }
            if !own.contains(&index) {
                return Err(Error::bad_file(
                    &path,
                    format!(
                        "line {line_no}: point {index} is outside this shard's points {}..{}",
                        own.start, own.end
                    ),
                ));
            }
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
    refuse_foreign_dir(out)?;
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
    let mut staged = Outputs::new();
    staged.text(&results, &text)?;
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
    let mut manifest = Manifest {
        memkin_version: env!("CARGO_PKG_VERSION").to_string(),
        status: "complete".into(),
        shard: None,
        runs: Vec::new(),
        inputs,
        merged_from,
        transfer: manifests
            .iter()
            .map(|m| m.transfer)
            .fold(Default::default(), |a, b| a + b),
        extra,
        ..first.clone()
    };
    if let Some(f) = finish {
        let table = ResultsTable::parse(&results, &text)?;
        f(&table, &mut manifest, &mut staged)?;
    }
    stage_manifest(&mut staged, out, &manifest)?;
    staged.commit()?;
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
