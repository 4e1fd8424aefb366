//! `memkin run`: the paper end to end on a dataset (the embedded digits by default).

use super::{BackendArg, Common, DatasetArg, print_json};
use anyhow::Context;
use memkin::Error;
use memkin::cost::card::{Card, DEFAULT_PRESET};
use memkin::engine::{Precision, select};
use memkin::pipeline::tune::{TuneGrid, tune_split};
use memkin::pipeline::{DeviceLearning, Protocol, evaluate_split, split_for_repeat};
use memkin::readout::{Activation, ReadoutKind};
use memkin::report::npy::Outputs;
use memkin::report::progress::Progress;
use memkin::run_report::{
    CostBlock, RUN_FILES, RunReport, TUNE_SELECTION, TuneBlock, readout_name, stage_feature_maps,
    tune_lines,
};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReadoutArg {
    Ridge,
    Softmax,
    Mlp,
}

/// Which evaluation protocol `memkin run` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
enum ProtocolArg {
    /// The test split scored once; every choice made on validation data.
    #[default]
    Honest,
    /// The authors' published protocol (mnist, sitw, wmms): best test accuracy
    /// over epochs, labelled "selected on test" (docs/protocol.md).
    Paper,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ActivationArg {
    Relu,
    Sigmoid,
}

/// Arguments of `memkin run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    backend: BackendArg,
    #[command(flatten)]
    data: DatasetArg,
    /// Readout (default: the paper's for the dataset, an MLP).
    #[arg(long, value_enum)]
    readout: Option<ReadoutArg>,
    /// Hidden layer sizes of the MLP, e.g. 48 or 128,128,128.
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Hidden activation of the MLP.
    #[arg(long, value_enum)]
    activation: Option<ActivationArg>,
    /// Training epochs (upper bound: early stopping on a validation split).
    #[arg(long)]
    epochs: Option<usize>,
    /// Learning rate of the readout.
    #[arg(long)]
    lr: Option<f64>,
    /// Early-stopping patience in epochs (0: none).
    #[arg(long)]
    patience: Option<usize>,
    /// Mini-batch size of the readout.
    #[arg(long)]
    batch_size: Option<usize>,
    /// L2 penalty of the readout weights.
    #[arg(long)]
    l2: Option<f64>,
    /// Device alpha, > 0 (initial value with --learn-device).
    #[arg(long, allow_hyphen_values = true)]
    alpha: Option<f64>,
    /// Device beta, > 0 (initial value with --learn-device).
    #[arg(long, allow_hyphen_values = true)]
    beta: Option<f64>,
    /// Learn alpha and beta jointly with the readout (clamped to [0.001, 1]).
    #[arg(long, conflicts_with = "no_device")]
    learn_device: bool,
    /// Learning rate of alpha and beta with --learn-device.
    #[arg(long)]
    device_lr: Option<f64>,
    /// Baseline: train the same readout on the raw inputs, without the kinetics layer.
    #[arg(long)]
    no_device: bool,
    /// Seeded splits to evaluate (default: 5 for wmms, sitw, modelnet10 and text; 1 otherwise).
    #[arg(long)]
    repeats: Option<usize>,
    /// Use only the first N training samples (quick studies).
    #[arg(long)]
    train_subset: Option<usize>,
    /// Write report.json, confusion.csv and feature_maps.png here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Choose (alpha, beta) and the ridge lambda on a validation side carved
    /// from each training split (nested selection), then score the test split once.
    #[arg(long, conflicts_with_all = ["learn_device", "no_device", "alpha", "beta"])]
    tune: bool,
    /// The --tune candidates (TOML: alpha = [..], beta = [..], ridge_lambda = [..],
    /// val_fraction = 0.2); default: memkin::pipeline::tune::TuneGrid's.
    #[arg(long, requires = "tune")]
    tune_grid: Option<PathBuf>,
    /// Technology card of the report's cost block (energy, latency and area per
    /// inference): a preset (neurosim-22nm, neurosim-130nm) or a TOML/JSON file.
    #[arg(long, default_value = DEFAULT_PRESET)]
    card: String,
    /// Save the trained readout and device parameters (JSON) for `memkin mc`.
    #[arg(long)]
    save_model: Option<PathBuf>,
    /// `paper`: the authors' protocol for the dataset (their split, readout,
    /// optimiser, epochs; the best test accuracy over epochs, "selected on
    /// test"); only --epochs, --repeats (trials), --seed, --no-device, --out,
    /// --json and --backend apply.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Honest)]
    protocol: ProtocolArg,
    /// The --dataset CSV holds text (label, text columns): train the text
    /// network through the device as for agnews (docs/text.md).
    #[arg(long)]
    text: bool,
}

/// `memkin run --protocol paper` (see memkin::pipeline::paper).
fn run_paper(a: &Args, ds: &memkin::data::Dataset) -> anyhow::Result<()> {
    use memkin::pipeline::paper::{self, PaperOptions, PaperRecipe};
    let fixed = [
        ("--readout", a.readout.is_some()),
        ("--hidden", a.hidden.is_some()),
        ("--activation", a.activation.is_some()),
        ("--lr", a.lr.is_some()),
        ("--patience", a.patience.is_some()),
        ("--batch-size", a.batch_size.is_some()),
        ("--l2", a.l2.is_some()),
        ("--alpha", a.alpha.is_some()),
        ("--beta", a.beta.is_some()),
        ("--learn-device", a.learn_device),
        ("--tune", a.tune),
        ("--train-subset", a.train_subset.is_some()),
        ("--save-model", a.save_model.is_some()),
        ("--device-lr", a.device_lr.is_some()),
    ];
    if let Some((flag, _)) = fixed.iter().find(|f| f.1) {
        return Err(Error::invalid(
            *flag,
            "given",
            "absent with --protocol paper (the authors' protocol fixes it)",
        )
        .into());
    }
    let recipe = PaperRecipe::for_dataset(&ds.name)?;
    let dir = memkin::data::data_dir(a.data.data_dir.as_deref());
    let split = paper::paper_split(ds, &recipe, dir.as_deref())?;
    let engine = select(a.backend.backend, Precision::F32)?;
    let info = engine.info();
    let opts = PaperOptions {
        trials: a.repeats.unwrap_or(1),
        epochs: a.epochs,
        seed: a.common.seed(),
        device: !a.no_device,
    };
    let epochs = opts.epochs.unwrap_or(recipe.epochs);
    let progress = Progress::new(
        &format!("{} (--protocol paper)", ds.name),
        (opts.trials * epochs) as u64,
        true,
    );
    let tick = |trial: usize, p: &paper::EpochPoint| {
        progress.inc(1);
        progress.message(&format!(
            "trial {trial}, epoch {}, loss {:.4}, test acc {:.4} ({})",
            p.epoch,
            p.train_loss,
            p.test_accuracy,
            paper::SELECTION
        ));
    };
    let o = paper::run_paper(engine.as_ref(), &split, &recipe, &opts, Some(&tick))?;
    progress.finish();
    let extra = serde_json::json!({
        "dataset": ds.name,
        "backend": info.backend,
        "adapter": info.adapter,
        "seed": a.common.seed(),
    });
    if let Some(d) = &a.out {
        let mut out = Outputs::new();
        paper::stage_outputs(&o, extra.clone(), d, &mut out)?;
        out.commit()?;
    }
    if a.common.json {
        let mut v = serde_json::to_value(&o)?;
        if let (Some(r), serde_json::Value::Object(x)) = (v.as_object_mut(), extra) {
            r.extend(x);
        }
        print_json(&v);
    } else {
        eprintln!("{}", paper::summary_line(&o));
    }
    Ok(())
}

/// `--dataset agnews` or `--text`: the text network (src/cli/text.rs). The
/// flags of the feature readouts do not apply there and are refused.
fn run_text(a: Args) -> anyhow::Result<()> {
    let unused = [
        ("--readout", a.readout.is_some()),
        ("--hidden", a.hidden.is_some()),
        ("--activation", a.activation.is_some()),
        ("--l2", a.l2.is_some()),
        ("--alpha", a.alpha.is_some()),
        ("--beta", a.beta.is_some()),
        ("--learn-device", a.learn_device),
        ("--tune", a.tune),
        ("--save-model", a.save_model.is_some()),
        ("--device-lr", a.device_lr.is_some()),
        ("--protocol", a.protocol == ProtocolArg::Paper),
    ];
    if let Some((flag, _)) = unused.iter().find(|(_, given)| *given) {
        return Err(Error::invalid(
            *flag,
            "given",
            "not used by the text network (alpha and beta are always learned there; see docs/text.md)",
        )
        .into());
    }
    let d = memkin::text::train::Settings::default();
    let settings = memkin::text::train::Settings {
        device: !a.no_device,
        epochs: a.epochs.unwrap_or(d.epochs),
        patience: a.patience.unwrap_or(d.patience),
        batch: a.batch_size.unwrap_or(d.batch),
        lr: a.lr.unwrap_or(d.lr),
        train_subset: a.train_subset,
        seed: a.common.seed(),
        ..d
    };
    super::text::run(super::text::TextArgs {
        dataset: a.data.dataset,
        data_dir: a.data.data_dir,
        backend: a.backend.backend,
        settings,
        repeats: a.repeats.unwrap_or(5),
        out: a.out,
        json: a.common.json,
    })
}

/// Applies the command-line overrides to the dataset's protocol, validating them.
fn resolve(a: &Args, name: &str, shape: &[usize]) -> Result<Protocol, Error> {
    let mut p = Protocol::for_dataset(name, shape);
    p.readout.seed = a.common.seed();
    if let Some(r) = a.readout {
        p.readout.kind = match r {
            ReadoutArg::Ridge => ReadoutKind::Ridge,
            ReadoutArg::Softmax => ReadoutKind::Softmax,
            ReadoutArg::Mlp => ReadoutKind::Mlp,
        };
    }
    if let Some(h) = &a.hidden {
        if h.is_empty() || h.contains(&0) {
            return Err(Error::invalid(
                "--hidden",
                format!("{h:?}"),
                "layer sizes >= 1, e.g. 48 or 128,128",
            ));
        }
        p.readout.hidden = h.clone();
    }
    if let Some(act) = a.activation {
        p.readout.activation = match act {
            ActivationArg::Relu => Activation::Relu,
            ActivationArg::Sigmoid => Activation::Sigmoid,
        };
    }
    if let Some(e) = a.epochs {
        p.readout.epochs = e;
    }
    if let Some(lr) = a.lr {
        p.readout.lr = lr;
    }
    if let Some(v) = a.patience {
        p.readout.patience = v;
    }
    if let Some(v) = a.batch_size {
        p.readout.batch_size = v;
    }
    if let Some(v) = a.l2 {
        p.readout.l2 = v;
    }
    for (flag, v) in [("--alpha", a.alpha), ("--beta", a.beta)] {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0)
        {
            return Err(Error::invalid(flag, v, "finite and > 0"));
        }
    }
    p.alpha = a.alpha.unwrap_or(p.alpha);
    p.beta = a.beta.unwrap_or(p.beta);
    if let Some(r) = a.repeats {
        if r == 0 {
            return Err(Error::invalid("--repeats", 0, "at least 1"));
        }
        p.repeats = r;
    }
    p.device = !a.no_device;
    if a.learn_device {
        let device_lr = a.device_lr.unwrap_or(DeviceLearning::default().lr);
        if !(device_lr.is_finite() && device_lr > 0.0) {
            return Err(Error::invalid("--device-lr", device_lr, "finite and > 0"));
        }
        if p.readout.kind == ReadoutKind::Ridge {
            return Err(Error::invalid(
                "--readout",
                "ridge",
                "mlp or softmax with --learn-device",
            ));
        }
        p.learn_device = Some(DeviceLearning {
            lr: device_lr,
            ..DeviceLearning::default()
        });
    }
    p.readout.check()?;
    Ok(p)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.text || a.data.dataset.eq_ignore_ascii_case("agnews") {
        return run_text(a);
    }
    let start = Instant::now();
    // Every output path checked before the work; none may be an input.
    let mut out = Outputs::new();
    let data_dir = memkin::data::data_dir(a.data.data_dir.as_deref());
    out.inputs(&memkin::study::inputs::dataset_files(
        &a.data.dataset,
        data_dir.as_deref(),
    ));
    if let Some(g) = &a.tune_grid {
        out.input(g);
    }
    if let Some(d) = &a.out {
        out.plan_in_dir("--out", d, &RUN_FILES)?;
    }
    if let Some(m) = &a.save_model {
        out.plan(m)?;
    }
    let mut ds = a.data.load()?;
    if let Some(n) = a.train_subset {
        if n < 2 {
            return Err(Error::invalid("--train-subset", n, "at least 2").into());
        }
        ds = ds.subsample_train(n);
    }
    if a.protocol == ProtocolArg::Paper {
        return run_paper(&a, &ds);
    }
    let proto = resolve(&a, &ds.name, &ds.sample_shape)?;
    let card = Card::resolve(&a.card)?;
    let engine = select(a.backend.backend, Precision::F32)?;
    let info = engine.info();
    let total = (proto.repeats * proto.readout.epochs) as u64;
    let progress = Progress::new(
        &format!("{} ({})", ds.name, readout_name(&proto, &ds)),
        total,
        true,
    );
    let grid = match (&a.tune_grid, a.tune) {
        (Some(path), _) => Some(TuneGrid::from_path(path)?),
        (None, true) => Some(TuneGrid::default()),
        (None, false) => None,
    };
    let mut choices = Vec::new();
    let mut outcomes = Vec::new();
    for r in 0..proto.repeats {
        let split = split_for_repeat(&ds, &proto, a.common.seed(), r)?;
        progress.message(&format!("repeat {}/{}", r + 1, proto.repeats));
        let tick = |rep: &memkin::readout::EpochReport| {
            progress.inc(1);
            let acc = rep
                .val_accuracy
                .map(|v| format!(", val acc {v:.4}"))
                .unwrap_or_default();
            progress.message(&format!(
                "repeat {}/{}, epoch {}, loss {:.4}{acc}",
                r + 1,
                proto.repeats,
                rep.epoch + 1,
                rep.train_loss
            ));
        };
        let o = match &grid {
            Some(g) => {
                let (c, o) = tune_split(engine.as_ref(), &split, &proto, g)
                    .with_context(|| format!("repeat {r}"))?;
                progress.inc(proto.readout.epochs as u64);
                choices.push(c);
                o
            }
            None => evaluate_split(engine.as_ref(), &split, &proto, Some(&tick))
                .with_context(|| format!("repeat {r}"))?,
        };
        if o.diverged_fraction > 0.0 {
            let limit = 2.0 * o.alpha.sqrt();
            return Err(Error::invalid(
                "--beta",
                o.beta,
                format!(
                    "below 2*sqrt(alpha) = {limit:.4} for inputs up to 1: {:.2}% of trajectories went non-positive or non-finite at alpha {}",
                    100.0 * o.diverged_fraction,
                    o.alpha
                ),
            )
            .into());
        }
        outcomes.push(o);
    }
    progress.finish();
    let cost = CostBlock::measure(engine.as_ref(), &ds, &proto, &outcomes[0], &card)?;
    let tune = grid.map(|grid| TuneBlock {
        grid,
        selection: TUNE_SELECTION,
        chosen: choices,
    });
    let report = RunReport::new(
        &ds,
        &proto,
        &outcomes,
        tune,
        cost,
        &info,
        a.common.seed(),
        start.elapsed().as_secs_f64(),
    )?;
    let first = &outcomes[0];
    if let Some(d) = &a.out {
        report.stage(d, &mut out)?;
        if proto.device {
            let png = d.join(RUN_FILES[2]);
            stage_feature_maps(
                engine.as_ref(),
                &ds,
                &proto,
                first.alpha,
                first.beta,
                &png,
                &mut out,
            )?;
        }
    }
    if let Some(m) = &a.save_model {
        let saved = memkin::saved_model::SavedModel::to_json(
            &ds.name,
            &proto,
            first.alpha,
            first.beta,
            first.trained.as_ref(),
            first.test_accuracy,
            a.common.seed(),
        )?;
        out.text(m, &saved)?;
    }
    out.commit()?;
    if a.common.json {
        print_json(&report.to_json()?);
    } else {
        let chosen = report.tune.as_ref().map(|t| &t.chosen[..]).unwrap_or(&[]);
        for line in tune_lines(chosen) {
            eprintln!("{line}");
        }
        eprintln!("{}", report.summary_line());
    }
    Ok(())
}
