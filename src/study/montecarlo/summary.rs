//! A Monte Carlo study's report: the manifest keys it records and
//! `summary.json` + histograms written from a study directory (complete or
//! not, sharded or merged). The statistics are [`crate::report::stats`].

use super::evaluator::Nominal;
use crate::report::stats::Stats;
use crate::study::runner::{Manifest, ResultsTable, read_manifest};
use crate::{Error, Result};
use std::path::Path;

/// The keys `memkin mc` records in the manifest (and so finds again after a
/// resume or a merge): the nominal set-up and the backend.
pub fn manifest_extra(
    nominal: &Nominal,
    backend: &crate::engine::BackendInfo,
) -> serde_json::Value {
    serde_json::json!({
        "nominal": nominal,
        "backend": backend.backend,
        "adapter": backend.adapter,
        "adapter_type": backend.adapter_type,
    })
}

/// Reads a Monte Carlo study directory (complete or not, sharded or merged)
/// and writes `summary.json` and `histogram.png` (plus
/// `histogram_tuned.png` after fine-tuning, `histogram_noise_aware.png`
/// after noise-aware training) atomically; returns the summary.
pub fn write_report(dir: &Path) -> Result<serde_json::Value> {
    let m: Manifest = read_manifest(dir)?
        .ok_or_else(|| Error::bad_file(dir, "no manifest.json: not a memkin study directory"))?;
    let table = ResultsTable::read(&dir.join(&m.results))?;
    let mut out = crate::report::npy::Outputs::new();
    let summary = stage_report(dir, &m, &table, &mut out)?;
    out.commit()?;
    Ok(summary)
}

/// Stages `summary.json` and the histograms of a study's rows in `out` (to
/// be committed with the study's manifest); returns the summary.
pub fn stage_report(
    dir: &Path,
    m: &Manifest,
    table: &ResultsTable,
    out: &mut crate::report::npy::Outputs,
) -> Result<serde_json::Value> {
    let col = |name: &str| table.column(name);
    // protocol = "paper": the figure is each trial's best evaluation on the
    // test split, and every output says so.
    let paper = m.extra.get("protocol").and_then(|v| v.as_str()) == Some("paper");
    let metric = if paper {
        super::paper::SELECTED_COLUMN
    } else {
        "test_accuracy"
    };
    let before = col(metric).ok_or_else(|| {
        Error::bad_file(
            dir.join(&m.results),
            format!("no {metric} column: not a memkin mc study"),
        )
    })?;
    let after = col("test_accuracy_tuned");
    let aware = col("test_accuracy_noise_aware");
    let nominal = m.extra.get("nominal").cloned().unwrap_or_default();
    let nom_acc = nominal.get("accuracy").and_then(|v| v.as_f64());
    let nom_tuned = nominal.get("tuned_accuracy").and_then(|v| v.as_f64());
    let nom_aware = nominal.get("noise_aware_accuracy").and_then(|v| v.as_f64());
    let dataset = nominal
        .get("dataset")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string();
    let stats = Stats::of(&before);
    let mean_of = |name: &str| col(name).map(|v| Stats::of(&v).mean);
    let mut summary = serde_json::json!({
        "dataset": dataset,
        "metric": metric,
        "draws": stats.n,
        "points": m.points,
        "complete": m.status == "complete" && table.rows.len() == m.shard.as_ref().map_or(m.points, |s| s.end - s.start),
        "shard": m.shard,
        "n": stats.n,
        "mean": stats.mean,
        "std": stats.std,
        "min": stats.min,
        "max": stats.max,
        "p5": stats.p5,
        "p50": stats.p50,
        "p95": stats.p95,
        "ci95": stats.ci95,
        "nominal": nom_acc,
        "before": stats,
        "after": after.as_ref().map(|a| Stats::of(a)),
        "nominal_after": nom_tuned,
        "noise_aware": aware.as_ref().map(|a| Stats::of(a)),
        "nominal_noise_aware": nom_aware,
        "input_scaling": nominal.get("input_scaling"),
        "training_draws": nominal.get("training_draws"),
        "alpha": col("alpha").map(|v| Stats::of(&v)),
        "beta": col("beta").map(|v| Stats::of(&v)),
        "diverged_fraction_mean": mean_of("diverged_fraction"),
        "stuck_mean": mean_of("stuck"),
        "readout": nominal.get("readout"),
        "variability": nominal.get("variability"),
        "n_test": nominal.get("n_test"),
        "backend": m.extra.get("backend").cloned().unwrap_or_else(|| "mixed".into()),
        "adapter": m.extra.get("adapter").cloned().unwrap_or_else(|| "mixed".into()),
        "seed": m.seed,
        "memkin_version": m.memkin_version,
    });
    if paper {
        let last = col("test_accuracy_last").map(|v| Stats::of(&v));
        let recipe = nominal.get("recipe");
        summary["protocol"] = "paper".into();
        summary["selection"] = crate::pipeline::paper::SELECTION.into();
        summary["trials"] = stats.n.into();
        summary["last_evaluation"] = serde_json::to_value(&last).unwrap_or_default();
        summary["published"] = recipe
            .and_then(|r| r.get("published"))
            .cloned()
            .unwrap_or_default();
        summary["recipe"] = recipe.cloned().unwrap_or_default();
        for k in ["alpha_chip", "beta_chip", "alpha_final", "beta_final"] {
            summary[k] = serde_json::to_value(col(k).map(|v| Stats::of(&v))).unwrap_or_default();
        }
        summary["redraws_projected_mean"] =
            serde_json::to_value(mean_of("redraws_projected")).unwrap_or_default();
    }
    out.text(
        &dir.join("summary.json"),
        &format!(
            "{}\n",
            serde_json::to_string_pretty(&summary)
                .map_err(|e| Error::Internal(format!("summary: {e}")))?
        ),
    )?;
    let (title, axis) = if paper {
        (
            format!(
                "{dataset}: protocol paper, best evaluation of each of {} trials",
                stats.n
            ),
            "test accuracy (selected on test)",
        )
    } else {
        (
            format!("{dataset}: test accuracy over {} device draws", stats.n),
            "test accuracy",
        )
    };
    out.with_path(&dir.join("histogram.png"), |p| {
        crate::report::plot::histogram_png(p, &before, nom_acc, &title, axis)
    })?;
    if let Some(a) = &after {
        let title = format!("{dataset}: fine-tuned readout over {} draws", stats.n);
        out.with_path(&dir.join("histogram_tuned.png"), |p| {
            crate::report::plot::histogram_png(p, a, nom_tuned, &title, "test accuracy")
        })?;
    }
    if let Some(a) = &aware {
        let title = format!(
            "{dataset}: readout trained noise-aware, over {} draws",
            stats.n
        );
        out.with_path(&dir.join("histogram_noise_aware.png"), |p| {
            crate::report::plot::histogram_png(p, a, nom_aware, &title, "test accuracy")
        })?;
    }
    Ok(summary)
}
