//! `memkin mc`: device-variability Monte Carlo over a spec (see
//! `memkin::study::montecarlo` for the model and `examples/mc/` for specs).

use super::{BackendArg, Common, in_spec, print_json, study_engines};
use memkin::data;
use memkin::engine::Engine as _;
use memkin::report::output::{Outputs, check_output_dir};
use memkin::report::progress::Progress;
use memkin::study::montecarlo::{
    McEvaluator, McOptions, PaperMcEvaluator, manifest_extra, resolve_device, stage_report,
    write_report,
};
use memkin::study::plan::{Plan, parse_shard, resolve_shard};
use memkin::study::runner::{
    Evaluator, Manifest, ResultsTable, Study, StudyFiles, StudyKind, completed, merge_with,
    run_study_with,
};
use memkin::study::spec::{McProtocol, McSpec, read_spec_text};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `memkin mc`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The study spec (TOML, or JSON by extension).
    #[arg(required_unless_present = "merge")]
    spec: Option<PathBuf>,
    /// The study directory: draws.csv, summary.json, histogram.png, manifest.json.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    backend: BackendArg,
    /// Run only shard I of N (0-based), e.g. 0/4; default from MEMKIN_SHARD,
    /// Slurm or Kubernetes (see `memkin::study::plan::resolve_shard`).
    #[arg(long)]
    shard: Option<String>,
    /// Continue an interrupted study in --out.
    #[arg(long)]
    resume: bool,
    /// Merge these shard directories into --out (instead of running a spec).
    #[arg(long, num_args = 1.., conflicts_with_all = ["spec", "shard", "resume"])]
    merge: Vec<PathBuf>,
    /// Where the named datasets live (default: $MEMKIN_DATA).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    // --json (the summary) and --seed (default: the spec's `seed`; given,
    // it replaces it; refused with --merge).
    #[command(flatten)]
    common: Common,
}

fn show(summary: &serde_json::Value, json: bool) {
    if json {
        print_json(summary);
        return;
    }
    let f = |k: &str| summary.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
    if summary.get("protocol").and_then(|v| v.as_str()) == Some("paper") {
        let last = |k: &str| summary["last_evaluation"][k].as_f64().unwrap_or(f64::NAN);
        eprintln!(
            "{}: protocol paper over {} trials: best evaluation per trial ({}) mean {:.4}, std {:.4}, min {:.4}, median {:.4}, max {:.4}; last evaluation (no selection) mean {:.4}, std {:.4}{}",
            summary["dataset"].as_str().unwrap_or("?"),
            summary["n"],
            summary["selection"].as_str().unwrap_or("?"),
            f("mean"),
            f("std"),
            f("min"),
            f("p50"),
            f("max"),
            last("mean"),
            last("std"),
            summary["published"]
                .as_f64()
                .map(|p| format!("; paper DDK-exp {p:.3}"))
                .unwrap_or_default(),
        );
        return;
    }
    let ci = summary
        .get("ci95")
        .and_then(|v| v.as_array())
        .map(|a| {
            format!(
                ", 95% CI of the mean [{:.4}, {:.4}]",
                a[0].as_f64().unwrap_or(f64::NAN),
                a[1].as_f64().unwrap_or(f64::NAN)
            )
        })
        .unwrap_or_default();
    eprintln!(
        "{}: test accuracy over {} draws: mean {:.4}, std {:.4}{ci}, min {:.4}, p5 {:.4}, median {:.4}, p95 {:.4}, max {:.4}; nominal {:.4}",
        summary["dataset"].as_str().unwrap_or("?"),
        summary["n"],
        f("mean"),
        f("std"),
        f("min"),
        f("p5"),
        f("p50"),
        f("p95"),
        f("max"),
        f("nominal"),
    );
    if let Some(a) = summary.get("after").filter(|a| !a.is_null()) {
        eprintln!(
            "  after fine-tuning: mean {:.4}, std {:.4}; nominal {:.4}",
            a["mean"].as_f64().unwrap_or(f64::NAN),
            a["std"].as_f64().unwrap_or(f64::NAN),
            f("nominal_after"),
        );
    }
    if let Some(a) = summary.get("noise_aware").filter(|a| !a.is_null()) {
        eprintln!(
            "  trained noise-aware: mean {:.4}, std {:.4}, min {:.4}, median {:.4}; nominal {:.4}",
            a["mean"].as_f64().unwrap_or(f64::NAN),
            a["std"].as_f64().unwrap_or(f64::NAN),
            a["min"].as_f64().unwrap_or(f64::NAN),
            a["p50"].as_f64().unwrap_or(f64::NAN),
            f("nominal_noise_aware"),
        );
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    // The report (summary.json, histograms) is committed with the complete
    // manifest it summarises.
    let mut summary = serde_json::Value::Null;
    let out_dir = a.out.clone();
    let mut finish = |t: &ResultsTable, m: &mut Manifest, out: &mut Outputs| {
        summary = stage_report(&out_dir, m, t, out)?;
        Ok(())
    };
    if !a.merge.is_empty() {
        a.common
            .refuse_seed("not used with --merge (each shard's manifest records its seed)")?;
        merge_with(&a.merge, &a.out, Some(&mut finish))?;
        show(&summary, a.common.json);
        return Ok(());
    }
    let spec_path = a.spec.clone().expect("clap requires SPEC without --merge");
    let text = read_spec_text(&spec_path)?;
    let mut spec = McSpec::from_text(&spec_path, &text)?;
    if let Some(s) = a.common.seed {
        spec.seed = s;
    }
    let cli_shard = a.shard.as_deref().map(parse_shard).transpose()?;
    let shard = resolve_shard(cli_shard, spec.shards)?;
    // The device model and its sigma names checked before any work.
    let in_spec = in_spec(&spec_path, |k| spec.line(k));
    let continuous = resolve_device(&spec).map_err(in_spec)?.is_some();
    let plan = Plan::monte_carlo(&spec);
    check_output_dir("--out", &a.out)?;
    let data_dir = data::data_dir(a.data_dir.as_deref());
    let inputs = memkin::study::inputs::mc_files(&spec, data_dir.as_deref());
    // A finished study of this spec and shard, its files unchanged: only the
    // report is redone.
    if completed(&a.out, &text, &plan, shard, &inputs)?.is_some() {
        let summary = write_report(&a.out)?;
        show(&summary, a.common.json);
        return Ok(());
    }
    {
        let ds = data::load(&spec.dataset, data_dir.as_deref())?;
        let super::StudyEngines {
            engine,
            ode_gpu,
            map_ctx,
        } = study_engines(a.backend.backend, continuous)?;
        // The map on a GPU: the draws run fused on the device (kinetics, host
        // steps and readouts), on the engine's context.
        let reducer = map_ctx
            .map(memkin::engine::gpu::GpuReducer::new)
            .transpose()?;
        let info = match (&ode_gpu, continuous) {
            (Some(g), _) => g.info(),
            (None, true) => memkin::engine::cpu::CpuEngine::fast().info(),
            (None, false) => engine.info(),
        };
        let mut evaluator: Box<dyn Evaluator>;
        let extra;
        if spec.protocol == McProtocol::Paper {
            let ev =
                PaperMcEvaluator::new(&spec, &ds, engine, data_dir.as_deref()).map_err(in_spec)?;
            if !a.common.json {
                let st = ev.setup();
                eprintln!(
                    "{}: protocol paper (the authors' hardware-aware training, {}): {} trials of {} epochs, {} train / {} test samples, on {} ({})",
                    st.dataset,
                    st.selection,
                    spec.draws,
                    st.recipe.epochs,
                    st.n_train,
                    st.n_test,
                    info.adapter,
                    info.backend
                );
            }
            extra = ev.manifest_extra(&info);
            evaluator = Box::new(ev);
        } else {
            let setup = Progress::new(&format!("mc {}: set-up", ds.name), 0, true);
            let say = |m: &str| setup.message(m);
            let mut mc = McEvaluator::new(
                &spec,
                &ds,
                engine,
                &McOptions {
                    progress: Some(&say),
                    ..McOptions::default()
                },
            )
            .map_err(in_spec)?;
            if let Some(g) = ode_gpu {
                mc.set_ode_gpu(g).map_err(in_spec)?;
            }
            if let Some(r) = reducer {
                mc.set_reducer(r);
            }
            setup.finish();
            let n = mc.nominal();
            if !a.common.json {
                let device = match spec
                    .model
                    .as_ref()
                    .and_then(|m| m.table())
                    .and_then(|t| t.name.clone())
                    .filter(|n| n != "ddk")
                {
                    Some(model) => format!("model {model}"),
                    None => format!("alpha {}, beta {}", n.alpha, n.beta),
                };
                eprintln!(
                    "{}: {} at {device}: nominal test accuracy {:.4} on {} samples ({:.1} s); {} draws in batches of {} on {} ({})",
                    n.dataset,
                    n.readout,
                    n.accuracy,
                    n.n_test,
                    start.elapsed().as_secs_f64(),
                    spec.draws,
                    n.batch,
                    info.adapter,
                    info.backend
                );
            }
            extra = manifest_extra(n, &info);
            evaluator = Box::new(mc);
        }
        let study = Study {
            dir: &a.out,
            kind: StudyKind::MonteCarlo,
            spec_text: &text,
            plan: &plan,
            shard,
            resume: a.resume,
            progress: true,
            manifest_extra: extra,
        };
        let files = StudyFiles {
            inputs,
            finish: Some(&mut finish),
        };
        let outcome = run_study_with(&study, evaluator.as_mut(), files)?;
        if !a.common.json {
            eprintln!(
                "{} draws evaluated in {:.2} s ({} done before)",
                outcome.evaluated, outcome.seconds, outcome.already_done
            );
        }
    }
    show(&summary, a.common.json);
    Ok(())
}
