//! The final outputs of a sweep, staged with its complete manifest: the point
//! selected on validation accuracy (the manifest's `selected`), the heatmap
//! over a 2-D grid and, with cost columns, the accuracy-energy Pareto front
//! (`pareto` in the manifest, pareto.csv, pareto.png). `memkin sweep` calls
//! [`stage_finish`] when its last point is in; `memkin merge` calls
//! [`stage_merged`] on the merged table.

use crate::report::output::Outputs;
use crate::report::plot::{Heatmap, heatmap_png, pareto_png, sample_curve};
use crate::study::plan::Plan;
use crate::study::runner::{Manifest, ResultsTable};
use crate::study::spec::{HeatmapMetric, SweepSpec};
use crate::study::sweep::{Selected, pareto_from_table, select_from_table};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The merged study in `dir` (its manifest `m` being written): the plan
/// rebuilt from the recorded spec, then [`stage_finish`] with the spec's
/// heatmap metric.
pub fn stage_merged(
    dir: &Path,
    table: &ResultsTable,
    m: &mut Manifest,
    out: &mut Outputs,
) -> Result<(Option<PathBuf>, Option<Selected>)> {
    let plan = m.plan(&dir.join("manifest.json"))?;
    let name = if m.spec.trim_start().starts_with('{') {
        "spec.json"
    } else {
        "spec.toml"
    };
    let spec = SweepSpec::from_text(&dir.join(name), &m.spec)?;
    let metric = spec.heatmap.unwrap_or_default();
    stage_finish(dir, &plan, table, metric, m, out)
}

/// "selected on validation: point 37 (alpha = 0.5, beta = 1.2): val accuracy ..., test accuracy ...".
pub fn describe_selected(plan: &Plan, s: &Selected) -> String {
    let p = plan.point(s.index);
    let params: Vec<String> = p.params.iter().map(|(n, v)| format!("{n} = {v}")).collect();
    format!(
        "selected on validation: point {} ({}): val accuracy {:.4}, test accuracy {:.4}",
        s.index,
        params.join(", "),
        s.val_accuracy,
        s.test_accuracy
    )
}

/// Once every row of a sweep is in: the point selected on validation accuracy
/// (recorded in the manifest as `selected`) and the heatmap, staged in the
/// transaction of the complete manifest.
pub fn stage_finish(
    dir: &Path,
    plan: &Plan,
    table: &ResultsTable,
    metric: HeatmapMetric,
    m: &mut Manifest,
    out: &mut Outputs,
) -> Result<(Option<PathBuf>, Option<Selected>)> {
    let selected = select_from_table(table);
    m.extra.insert(
        "selected".into(),
        serde_json::to_value(selected).map_err(|e| Error::Internal(e.to_string()))?,
    );
    let heatmap = stage_heatmap(dir, plan, table, metric, selected.as_ref(), out)?;
    stage_pareto(dir, table, m, out)?;
    Ok((heatmap, selected))
}

/// With cost columns: the accuracy-energy Pareto front in the manifest
/// (`pareto`), DIR/pareto.csv and DIR/pareto.png (validation accuracy against
/// energy per inference, every point and the front).
fn stage_pareto(
    dir: &Path,
    table: &ResultsTable,
    m: &mut Manifest,
    out: &mut Outputs,
) -> Result<()> {
    let Some(front) = pareto_from_table(table) else {
        return Ok(());
    };
    m.extra.insert(
        "pareto".into(),
        serde_json::to_value(&front).map_err(|e| Error::Internal(e.to_string()))?,
    );
    let mut csv = String::from("index,energy_j,val_accuracy,test_accuracy\n");
    for p in &front {
        csv.push_str(&format!(
            "{},{:e},{},{}\n",
            p.index, p.energy_j, p.val_accuracy, p.test_accuracy
        ));
    }
    let (Some(e), Some(v)) = (table.column("energy_j"), table.column("val_accuracy")) else {
        return Ok(());
    };
    let pts: Vec<(f64, f64)> = e.into_iter().zip(v).collect();
    let line: Vec<(f64, f64)> = front.iter().map(|p| (p.energy_j, p.val_accuracy)).collect();
    let finite: Vec<f64> = pts
        .iter()
        .map(|p| p.0)
        .filter(|e| *e > 0.0 && e.is_finite())
        .collect();
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
    out.text(&dir.join("pareto.csv"), &csv)?;
    out.with_path(&dir.join("pareto.png"), |tmp| {
        pareto_png(
            tmp,
            &pts,
            &line,
            hi > 10.0 * lo,
            "validation accuracy against energy per inference (diverged points left out)",
            "energy per inference (J)",
            "validation accuracy",
        )
    })?;
    Ok(())
}

/// Draws DIR/heatmap.png when the plan is a 2-D grid over alpha and beta (or
/// any two parameters): validation accuracy (or test on request), with beta =
/// 2 sqrt(alpha) drawn and the selected point marked.
fn stage_heatmap(
    dir: &Path,
    plan: &Plan,
    table: &ResultsTable,
    metric: HeatmapMetric,
    selected: Option<&Selected>,
    out: &mut Outputs,
) -> Result<Option<PathBuf>> {
    let grid = plan.grid();
    if grid.len() != 2 || plan.param_names().len() != 2 {
        return Ok(None);
    }
    let (xn, xs) = (&grid[0].0, &grid[0].1);
    let (yn, ys) = (&grid[1].0, &grid[1].1);
    let log = |v: &[f64]| {
        v.len() > 2
            && v.iter().all(|&x| x > 0.0)
            && ((v[2] / v[1]) - (v[1] / v[0])).abs() < 1e-9 * (v[1] / v[0])
    };
    let (column, label) = match metric {
        HeatmapMetric::Val => ("val_accuracy", "validation accuracy"),
        HeatmapMetric::Test => ("test_accuracy", "test accuracy"),
    };
    let Some(z) = table.grid_matrix(xn, xs, yn, ys, column) else {
        return Ok(None);
    };
    let marker = selected.and_then(|s| {
        let p = plan.point(s.index);
        Some((p.get(xn)?, p.get(yn)?))
    });
    let (log_x, log_y) = (log(xs), log(ys));
    let overlay = (xn == "alpha" && yn == "beta").then(|| {
        let (x0, x1) = (
            xs.iter().cloned().fold(f64::INFINITY, f64::min),
            xs.iter().cloned().fold(0.0, f64::max),
        );
        (
            "beta = 2 sqrt(alpha)",
            sample_curve(|a| 2.0 * a.sqrt(), x0, x1, 200, log_x),
        )
    });
    let path = dir.join("heatmap.png");
    let title = format!("{label} over ({xn}, {yn}); gray: diverged");
    let marker_label = selected.map(|s| {
        format!(
            "selected on validation: val {:.3}, test {:.3}",
            s.val_accuracy, s.test_accuracy
        )
    });
    let heatmap = Heatmap {
        x: xs,
        y: ys,
        z: &z,
        x_label: xn,
        y_label: yn,
        z_label: label,
        log_x,
        log_y,
        overlay,
        marker: marker.zip(marker_label.as_deref()),
        title: &title,
    };
    out.with_path(&path, |tmp| heatmap_png(tmp, &heatmap))?;
    Ok(Some(path))
}
