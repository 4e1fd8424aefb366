//! `memkin run --dataset agnews` and `memkin run --dataset FILE.csv --text`:
//! the text network trained through the device (memkin::text), over seeded
//! stratified splits.

use super::print_json;
use anyhow::Context;
use memkin::engine::vjp::select_with_vjp;
use memkin::engine::{BackendChoice, Precision};
use memkin::pipeline::Spread;
use memkin::report::npy::Outputs;
use memkin::report::progress::Progress;
use memkin::text::net::{Engines, Shape};
use memkin::text::train::{EpochLog, Settings, run_split};
use memkin::text::{TextData, load_agnews, load_csv};
use std::path::PathBuf;
use std::time::Instant;

/// What `memkin run` passes on for a text dataset.
pub struct TextArgs {
    /// `agnews` or a CSV path.
    pub dataset: String,
    /// The data directory flag.
    pub data_dir: Option<PathBuf>,
    /// Backend of the kinetics layer.
    pub backend: BackendChoice,
    /// The training settings (device, epochs, ...).
    pub settings: Settings,
    /// Seeded splits.
    pub repeats: usize,
    /// report.json and confusion.csv here.
    pub out: Option<PathBuf>,
    /// One JSON object on stdout.
    pub json: bool,
}

fn load(a: &TextArgs) -> memkin::Result<(TextData, Option<PathBuf>)> {
    if a.dataset.eq_ignore_ascii_case("agnews") {
        let dir = memkin::data::data_dir(a.data_dir.as_deref());
        Ok((load_agnews(dir.as_deref())?, None))
    } else {
        let p = PathBuf::from(&a.dataset);
        memkin::report::output::check_input_file("--dataset", &p)?;
        Ok((load_csv(&p)?, Some(p)))
    }
}

pub fn run(a: TextArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    a.settings.check()?;
    if a.repeats == 0 {
        return Err(memkin::Error::invalid("--repeats", 0, "at least 1").into());
    }
    let (data, input) = load(&a)?;
    // Plan the outputs before any work: none may replace the input.
    let mut out = Outputs::new();
    if let Some(p) = &input {
        out.input(p);
    }
    if let Some(d) = &a.out {
        out.plan(&d.join("report.json"))?;
        out.plan(&d.join("confusion.csv"))?;
    }
    let (fwd, rev) = select_with_vjp(a.backend, Precision::F32)?;
    let eng = Engines {
        forward: fwd.as_ref(),
        reverse: rev.as_ref(),
    };
    let info = fwd.info();
    let s = &a.settings;
    let kind = if s.device {
        "DDK"
    } else {
        "no-device baseline"
    };
    let progress = Progress::new(
        &format!("{} ({kind})", data.name),
        (a.repeats * s.epochs) as u64,
        true,
    );
    let mut results = Vec::new();
    for r in 0..a.repeats {
        progress.message(&format!("split {}/{}", r + 1, a.repeats));
        let mut tick = |e: &EpochLog| {
            progress.inc(1);
            progress.message(&format!(
                "split {}/{}, epoch {}, loss {:.4}, val acc {:.4}{}",
                r + 1,
                a.repeats,
                e.epoch,
                e.train_loss,
                e.val_accuracy,
                if s.device {
                    format!(", alpha {:.4}, beta {:.4}", e.alpha, e.beta)
                } else {
                    String::new()
                }
            ));
        };
        let res = run_split(&data, s, r, &eng, &mut tick).with_context(|| format!("split {r}"))?;
        progress.inc((s.epochs - res.epochs_run) as u64);
        eprintln!(
            "split {}: test accuracy {:.4} (val {:.4}, epoch {} of {}){}",
            r + 1,
            res.test_accuracy,
            res.val_accuracy,
            res.best_epoch,
            res.epochs_run,
            if s.device {
                format!(", alpha {:.4}, beta {:.4}", res.alpha, res.beta)
            } else {
                String::new()
            }
        );
        results.push(res);
    }
    progress.finish();
    let test = Spread::of(results.iter().map(|r| r.test_accuracy).collect());
    let first = &results[0];
    let shape = Shape {
        vocab: s.vocab,
        dim: s.dim,
        tokens: s.tokens,
        hidden: s.hidden,
        classes: data.classes.len(),
    };
    let embedding = shape.vocab * shape.dim;
    let seconds = start.elapsed().as_secs_f64();
    let report = serde_json::json!({
        "dataset": data.name,
        "n_rows": data.len(),
        "n_classes": data.classes.len(),
        "classes": data.classes,
        "n_fit": first.n_fit,
        "n_val": first.n_val,
        "n_test": first.n_test,
        "network": format!(
            "Embedding({}, {}) -> {}Linear({}, {}) + tanh per token -> max-pool over {} tokens -> Linear({}, {})",
            shape.vocab, shape.dim,
            if s.device { format!("min-max per sample -> DDK ({} devices x {} steps) -> ", shape.dim, shape.tokens) } else { String::new() },
            shape.dim, shape.hidden, shape.tokens, shape.hidden, shape.classes
        ),
        "device": s.device,
        "repeats": a.repeats,
        "test_accuracy": test.mean,
        "test_accuracy_std": test.std,
        "test_accuracies": test.values,
        "alphas": results.iter().map(|r| r.alpha).collect::<Vec<_>>(),
        "betas": results.iter().map(|r| r.beta).collect::<Vec<_>>(),
        "parameters": first.parameters,
        "parameter_counts": {
            "embedding": embedding,
            "dense": shape.dense_len(),
            "device": if s.device { 2 } else { 0 },
        },
        "operations": first.operations,
        "device_steps": first.device_steps,
        "seconds": seconds,
        "backend": info.backend,
        "adapter": info.adapter,
        "adapter_type": info.adapter_type,
        "settings": s,
        "splits": results,
    });
    if let Some(d) = &a.out {
        out.text(
            &d.join("report.json"),
            &serde_json::to_string_pretty(&report)?,
        )?;
        let csv = memkin::readout::confusion_csv(&first.confusion, &data.classes);
        out.text(&d.join("confusion.csv"), &csv)?;
    }
    out.commit()?;
    if a.json {
        print_json(&report);
    } else {
        eprintln!(
            "{} ({kind}): {} fit / {} val / {} test: test accuracy {:.4} +- {:.4} over {} split(s); {} parameters, {} operations{}; {:.1} s on {} ({})",
            data.name,
            first.n_fit,
            first.n_val,
            first.n_test,
            test.mean,
            test.std,
            a.repeats,
            first.parameters,
            first.operations,
            if s.device {
                format!(", {} device steps", first.device_steps)
            } else {
                String::new()
            },
            seconds,
            info.adapter,
            info.backend
        );
    }
    Ok(())
}
