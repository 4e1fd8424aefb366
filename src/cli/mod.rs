//! The clap layer: `memkin <command>`. Each command is a file with an `Args`
//! struct (what clap parses) and a `run` that resolves it and calls the library.

mod bench;
mod cost;
mod data;
mod devices;
mod fit;
mod mc;
mod run;
mod simulate;
mod sweep;
mod text;

use clap::{Args, Parser, Subcommand};
use memkin::engine::{BackendChoice, Precision};

/// memkin: memristor drift-diffusion kinetics at GPU scale.
#[derive(Debug, Parser)]
#[command(name = "memkin", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The paper end to end: kinetics features + trained readout on a dataset.
    Run(run::Args),
    /// Integrate the DDK map or a continuous-time device model over input sequences (.npy in, .npy out).
    Simulate(simulate::Args),
    /// List the GPU adapters wgpu sees, with the limits that matter here.
    Devices(devices::Args),
    /// Sweep device parameters over a grid or random points (resumable, shardable).
    Sweep(sweep::Args),
    /// Merge the shard directories of one sweep or Monte Carlo study.
    Merge(sweep::MergeArgs),
    /// List the named datasets and verify their checksums.
    Data(data::Args),
    /// Measure trajectory-steps per second of each backend across batch sizes.
    Bench(bench::Args),
    /// Fit a device model's parameters to a measured pulse-response trace (CSV).
    Fit(fit::Args),
    /// Energy, latency and area per inference: DDK, raw readout and deep baselines on a technology card.
    Cost(cost::Args),
    /// Device-variability Monte Carlo: accuracy over random device draws (a spec).
    Mc(mc::Args),
}

/// Flags every command has.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Print one JSON object on stdout (and nothing else there).
    #[arg(long)]
    pub json: bool,
    /// Seed of every random choice (default 0; printed in every report).
    /// Studies take theirs from the spec's `seed` key (`mc --seed` replaces
    /// it; `sweep` refuses it), and commands that make no random choice
    /// refuse it.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Common {
    /// The seed (default 0).
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or(0)
    }

    /// Refuses `--seed` for a command where it would change nothing: `why`
    /// says where the randomness (if any) is set instead.
    pub fn refuse_seed(&self, why: &str) -> Result<(), memkin::Error> {
        match self.seed {
            Some(s) => Err(memkin::Error::invalid("--seed", s, why)),
            None => Ok(()),
        }
    }
}

/// The backend flag of the commands that compute features.
#[derive(Debug, Clone, Args)]
pub struct BackendArg {
    /// Compute backend: cpu, gpu (any wgpu adapter, software included) or auto
    /// (a hardware GPU when there is one, else cpu).
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
}

/// The engines of a study (`sweep`, `mc`).
pub struct StudyEngines {
    /// The DDK map's engine.
    pub engine: Box<dyn memkin::engine::Engine>,
    /// A continuous-time model's GPU driver (`None`: on the CPU, or the map).
    pub ode_gpu: Option<memkin::engine::gpu::GpuOdeEngine>,
    /// The map's GPU context, shared by `engine` and the study's fused
    /// reductions (`GpuReducer`), so that one set of byte counters sees both
    /// (`None`: the map runs on the CPU).
    pub map_ctx: Option<std::sync::Arc<memkin::engine::gpu::GpuContext>>,
}

/// The engines of a study. A continuous model runs on its own GPU driver
/// (`None`: on the CPU); the map engine is then unused, so it stays on the
/// CPU (one device per process). A software GPU adapter is announced on
/// stderr.
pub fn study_engines(backend: BackendChoice, continuous: bool) -> memkin::Result<StudyEngines> {
    let cpu = || memkin::engine::select(BackendChoice::Cpu, Precision::F32);
    if continuous {
        let ode_gpu = memkin::engine::select_gpu_context(backend)?
            .map(|c| memkin::engine::gpu::GpuOdeEngine::new(std::sync::Arc::new(c)));
        return Ok(StudyEngines {
            engine: cpu()?,
            ode_gpu,
            map_ctx: None,
        });
    }
    let Some(ctx) = memkin::engine::select_gpu_context(backend)?.map(std::sync::Arc::new) else {
        return Ok(StudyEngines {
            engine: cpu()?,
            ode_gpu: None,
            map_ctx: None,
        });
    };
    if ctx.is_software() {
        eprintln!(
            "memkin: note: GPU adapter '{}' is a software rasteriser (CPU); its speed says nothing about a GPU",
            ctx.adapter_info().name
        );
    }
    Ok(StudyEngines {
        engine: Box::new(memkin::engine::gpu::GpuEngine::new(ctx.clone())?),
        ode_gpu: None,
        map_ctx: Some(ctx),
    })
}

/// A library error about a value from a spec (`InvalidParameter`) as the
/// spec's own error: the file, the key's line when `line` knows it (the key,
/// or its table for `table.name`), the value and its range. Other errors
/// pass through.
pub fn in_spec(
    path: &std::path::Path,
    line: impl Fn(&str) -> Option<usize> + Copy,
) -> impl Fn(memkin::Error) -> memkin::Error + Copy {
    move |e| match e {
        memkin::Error::InvalidParameter {
            field,
            value,
            expected,
        } => {
            let line = line(&field)
                .or_else(|| field.rsplit_once('.').and_then(|(k, _)| line(k)))
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            memkin::Error::Spec {
                path: path.to_path_buf(),
                message: format!("{line}{field} = {value}: {expected}"),
            }
        }
        other => other,
    }
}

/// The dataset flags of the commands that load one (`run`, `cost`).
#[derive(Debug, Clone, Args)]
pub struct DatasetArg {
    /// A named dataset (digits, mnist, wmms, sitw, modelnet10, agnews: `run`
    /// trains the text network on it, `cost` prices it) or a path (.npz, .csv, a directory of IDX files).
    #[arg(long, default_value = "digits")]
    pub dataset: String,
    /// Where the named datasets live (default: $MEMKIN_DATA).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

impl DatasetArg {
    /// Loads the dataset (named ones are checked against their sha256).
    pub fn load(&self) -> memkin::Result<memkin::data::Dataset> {
        let dir = memkin::data::data_dir(self.data_dir.as_deref());
        memkin::data::load(&self.dataset, dir.as_deref())
    }
}

/// A parse failure rendered as one line: clap's message, its tips in
/// parentheses, and where to look (`memkin simulate --help`).
pub fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut msg = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .trim_end_matches(':')
        .to_string();
    let mut usage = None;
    let mut items = Vec::new();
    let mut tips = Vec::new();
    for l in lines {
        if let Some(t) = l.strip_prefix("tip: ") {
            tips.push(t.to_string());
        } else if let Some(u) = l.strip_prefix("Usage: ") {
            usage = Some(u.to_string());
        } else if !l.starts_with("For more information") {
            items.push(l.to_string());
        }
    }
    if !items.is_empty() {
        msg = format!("{msg}: {}", items.join(", "));
    }
    if !tips.is_empty() {
        msg = format!("{msg} ({})", tips.join("; "));
    }
    // `memkin simulate --input <INPUT> ...` -> `memkin simulate --help`.
    let command: Vec<&str> = usage
        .as_deref()
        .unwrap_or("memkin")
        .split_whitespace()
        .take_while(|w| !w.starts_with('-') && !w.starts_with('<') && !w.starts_with('['))
        .collect();
    let command = if command.is_empty() {
        "memkin".to_string()
    } else {
        command.join(" ")
    };
    format!("{msg}; see `{command} --help`")
}

/// Parses the command line and runs the command.
pub fn main() -> anyhow::Result<()> {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version: stdout, exit 0
        Err(e) => {
            eprintln!("memkin: error: {}", usage_line(&e));
            std::process::exit(2);
        }
    };
    dispatch(cli)
}

/// A command line that did not parse, as its one line (see [`usage_line`]).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Runs one command line (`["memkin", "sweep", ...]`) in this process, as
/// `main` does but without exiting: a parse failure is a [`UsageError`]. The
/// Python package calls this for `memkin.run`, `memkin.sweep` and `memkin.mc`.
#[allow(dead_code)] // used by python/ (which compiles this module), not by the binary
pub fn run_from<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => dispatch(cli),
        Err(e) => Err(UsageError(usage_line(&e)).into()),
    }
}

/// Runs a parsed command.
fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Devices(a) => devices::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Data(a) => data::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Merge(a) => sweep::run_merge(a),
        Command::Fit(a) => fit::run(a),
        Command::Mc(a) => mc::run(a),
        Command::Cost(a) => cost::run(a),
    }
}

/// The causes of an error, each once: `{e:#}` would repeat an I/O error
/// that a cause already shows in its own message.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for c in e.chain() {
        let s = c.to_string();
        if line.contains(&s) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&s);
    }
    line.replace('\n', " ")
}

/// Prints a JSON value as one line on stdout.
pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_are_one_line_with_the_tip_and_a_hint() {
        let e =
            Cli::try_parse_from(["memkin", "simulate", "--inptu", "x", "--out", "o"]).unwrap_err();
        let line = usage_line(&e);
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.contains("'--inptu'") && line.contains("'--input'"),
            "{line}"
        );
        assert!(line.ends_with("see `memkin simulate --help`"), "{line}");
        let e = Cli::try_parse_from(["memkin", "simulate"]).unwrap_err();
        let line = usage_line(&e);
        assert!(line.contains("--input <INPUT>, --out <OUT>"), "{line}");
        let e = Cli::try_parse_from(["memkin", "bogus"]).unwrap_err();
        assert!(usage_line(&e).ends_with("see `memkin --help`"));
    }
}
