//! `memkin sweep` and `memkin merge`: parameter sweeps, resumable and shardable.

use super::{BackendArg, Common, in_spec, print_json};
use memkin::cost::card::{Card, PRESETS};
use memkin::cost::{ACTIVITY_SAMPLES, PointCoster};
use memkin::data;
use memkin::engine::gpu::GpuReducer;
use memkin::pipeline::{Protocol, Sides, VAL_FRACTION, encode_protocol};
use memkin::readout::TrainConfig;
use memkin::report::output::{Outputs, check_output_dir};
use memkin::study::kinetics::Kinetics;
use memkin::study::plan::{Plan, parse_shard, resolve_shard};
use memkin::study::runner::{
    Manifest, ResultsTable, Study, StudyFiles, StudyKind, merge_with, run_study_with,
};
use memkin::study::spec::{self, SweepSpec};
use memkin::study::sweep::SweepEvaluator;
use memkin::study::sweep_outputs::{describe_selected, stage_finish, stage_merged};
use std::path::{Path, PathBuf};

/// Arguments of `memkin sweep`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    backend: BackendArg,
    /// The sweep spec (TOML, or JSON by extension).
    spec: PathBuf,
    /// Output directory (results.csv, manifest.json, heatmap.png).
    #[arg(long)]
    out: PathBuf,
    /// Run shard I of N (a contiguous block of the point list). Falls back to
    /// MEMKIN_SHARD=I/N, SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, or
    /// JOB_COMPLETION_INDEX with MEMKIN_SHARD_COUNT (or the spec's `shards`).
    #[arg(long)]
    shard: Option<String>,
    /// Continue an interrupted sweep in --out (finished points are kept).
    #[arg(long)]
    resume: bool,
    /// Where the named datasets live (default: $MEMKIN_DATA).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Arguments of `memkin merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    #[command(flatten)]
    common: Common,
    /// Shard directories of one study.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// The merged study directory.
    #[arg(long)]
    out: PathBuf,
}

/// The readout of a sweep spec: ridge (closed form, standardised features,
/// lambda = 1) by default.
fn readout_config(spec: &SweepSpec) -> TrainConfig {
    let mut cfg = TrainConfig {
        kind: spec.readout,
        seed: spec.seed,
        ..TrainConfig::default()
    };
    if let Some(h) = spec.hidden {
        cfg.hidden = vec![h];
    }
    if let Some(e) = spec.epochs {
        cfg.epochs = e;
    }
    cfg
}

pub fn run(a: Args) -> anyhow::Result<()> {
    a.common
        .refuse_seed("not used: a sweep's seed is its spec's `seed` key (a study's identity)")?;
    // Everything that can be wrong with the spec fails here, before any work.
    let spec = SweepSpec::from_path(&a.spec)?;
    let spec_text = spec::read_spec_text(&a.spec)?;
    let in_spec = in_spec(&a.spec, |k| spec.line(k));
    let continuous = spec
        .model
        .as_ref()
        .and_then(|m| m.name.as_deref())
        .is_some_and(|n| n != "ddk");
    let super::StudyEngines {
        engine,
        ode_gpu,
        map_ctx,
    } = super::study_engines(a.backend.backend, continuous)?;
    let kinetics =
        Kinetics::resolve(spec.model.as_ref(), engine.as_ref(), ode_gpu).map_err(in_spec)?;
    spec.check_params(&kinetics.param_names())?;
    let plan = Plan::sweep(&spec);
    // Every point's parameters in range before any work.
    for i in 0..plan.len() {
        kinetics.check_point(&plan.point(i)).map_err(in_spec)?;
    }
    let shard = resolve_shard(
        a.shard.as_deref().map(parse_shard).transpose()?,
        spec.shards,
    )?;
    let readout = readout_config(&spec);
    readout.check()?;
    check_output_dir("--out", &a.out)?;

    let dir = data::data_dir(a.data_dir.as_deref());
    let mut inputs = memkin::study::inputs::dataset_files(&spec.dataset, dir.as_deref());
    let card = match &spec.card {
        Some(c) => Card::resolve_in(c, a.spec.parent()).map_err(|e| memkin::Error::Spec {
            path: a.spec.clone(),
            message: format!("card = {c:?}: {e}"),
        })?,
        None => Card::default_card(),
    };
    // A card file is a dependency like the dataset (a preset is compiled in).
    if let Some(c) = &spec.card
        && !PRESETS.iter().any(|(n, _)| n == c)
    {
        let p = Path::new(c);
        inputs.push(match a.spec.parent() {
            Some(d) if p.is_relative() => d.join(p),
            _ => p.to_path_buf(),
        });
    }
    let mut ds = data::load(&spec.dataset, dir.as_deref())?;
    if let Some(n) = spec.train_subset {
        ds = ds.subsample_train(n);
    }
    if let Some(n) = spec.test_subset {
        let n = n.min(ds.n_test());
        ds.x_test.truncate(n * ds.sample_len());
        ds.y_test.truncate(n);
        if let Some(g) = ds.groups_test.as_mut() {
            g.truncate(n);
        }
    }
    let proto = Protocol::for_dataset(&ds.name, &ds.sample_shape);
    let (train, test) = encode_protocol(&ds, &proto)?;
    let val_fraction = spec.val_fraction.unwrap_or(VAL_FRACTION);
    let sides = Sides::carve(&train, test, val_fraction, spec.seed).map_err(in_spec)?;
    let (backend, adapter) = kinetics.describe();
    let batch = spec
        .batch
        .unwrap_or_else(|| SweepEvaluator::batch_for_budget(&sides, 256 << 20));
    let (n_fit, n_val) = (sides.fit.n(), sides.val.n());
    let coster = PointCoster::new(
        card.clone(),
        &readout,
        sides.test.encoded.seqs_per_sample,
        sides.test.encoded.steps,
        proto.encoding.samples_per_input(&ds.sample_shape),
        proto.per_step,
        ds.n_classes,
        ACTIVITY_SAMPLES,
    );
    let mut eval =
        SweepEvaluator::new(kinetics, sides, ds.n_classes, readout, batch)?.with_cost(coster);
    if let Some(ctx) = &map_ctx {
        eval = eval.with_reducer(GpuReducer::new(ctx.clone())?);
    }
    let readout_site = eval
        .readout_site()
        .describe(map_ctx.is_some() || continuous && backend == "gpu");
    let study = Study {
        dir: &a.out,
        kind: StudyKind::Sweep,
        spec_text: &spec_text,
        plan: &plan,
        shard,
        resume: a.resume,
        progress: true,
        manifest_extra: serde_json::json!({
            "backend": backend, "adapter": adapter,
            "dataset": ds.name, "n_train": ds.n_train(), "n_test": ds.n_test(), "batch": batch,
            "val_fraction": val_fraction, "n_fit": n_fit, "n_val": n_val, "readout_site": readout_site,
            "card": card.name, "cost": "energy_j, latency_s, area_mm2 per inference on the card: the DDK network with each point's kinetics activity measured on its first test inputs (docs/cost.md)",
            "selection": "the point with the best val_accuracy (validation side carved from the training side); test_accuracy is reported, never chosen on",
        }),
    };
    // Unsharded: the selection, the heatmap and the complete manifest are
    // committed together.
    let metric = spec.heatmap.unwrap_or_default();
    let (mut heatmap, mut selected) = (None, None);
    let mut finish = |t: &ResultsTable, m: &mut Manifest, out: &mut Outputs| {
        (heatmap, selected) = stage_finish(&a.out, &plan, t, metric, m, out)?;
        Ok(())
    };
    let files = StudyFiles {
        inputs,
        finish: if shard.is_none() {
            Some(&mut finish)
        } else {
            None
        },
    };
    let outcome = run_study_with(&study, &mut eval, files)?;
    let summary = serde_json::json!({
        "out": outcome.dir, "results": outcome.results, "points": plan.len(),
        "shard": shard.map(|(i, n)| format!("{i}/{n}")), "range": [outcome.range.start, outcome.range.end],
        "already_done": outcome.already_done, "evaluated": outcome.evaluated, "seconds": outcome.seconds,
        "heatmap": heatmap, "backend": backend, "adapter": adapter, "seed": spec.seed,
        "selected": selected,
        "transfer": map_ctx.as_ref().map(|c| c.transfer()),
    });
    if a.common.json {
        print_json(&summary);
    } else {
        eprintln!(
            "sweep: {} of {} points evaluated ({} already done) in {:.1} s -> {}",
            outcome.evaluated,
            outcome.range.len(),
            outcome.already_done,
            outcome.seconds,
            outcome.results.display()
        );
        if let Some(s) = &selected {
            eprintln!("{}", describe_selected(&plan, s));
        }
    }
    Ok(())
}

pub fn run_merge(a: MergeArgs) -> anyhow::Result<()> {
    a.common
        .refuse_seed("not used: each shard's manifest records its study's seed")?;
    // The merged study's final outputs, committed with its CSV and manifest:
    // a sweep's selection and heatmap (its plan rebuilt from the recorded
    // spec), a Monte Carlo study's summary and histograms.
    let (mut heatmap, mut selected) = (None, None);
    let mut finish = |t: &ResultsTable, m: &mut Manifest, out: &mut Outputs| {
        match m.kind {
            StudyKind::Sweep => {
                (heatmap, selected) = stage_merged(&a.out, t, m, out)?;
            }
            StudyKind::MonteCarlo => {
                memkin::study::montecarlo::stage_report(&a.out, m, t, out)?;
            }
        }
        Ok(())
    };
    let m = merge_with(&a.dirs, &a.out, Some(&mut finish))?;
    if a.common.json {
        print_json(
            &serde_json::json!({"out": m.out, "results": m.results, "points": m.points, "shards": m.shards, "heatmap": heatmap, "selected": selected}),
        );
    } else {
        eprintln!(
            "merged {} shards, {} points -> {}",
            m.shards,
            m.points,
            m.results.display()
        );
    }
    Ok(())
}
