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

use clap::{Args, Parser, Subcommand};
use memkin::engine::BackendChoice;

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
    /// Seed of every random choice (printed in every report).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The backend flag of the commands that compute features.
#[derive(Debug, Clone, Args)]
pub struct BackendArg {
    /// Compute backend: cpu, gpu (any wgpu adapter, software included) or auto
    /// (a hardware GPU when there is one, else cpu).
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
}

/// Parses the command line and runs the command.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
}
