//! `memkin cost`: energy, latency and area per inference of the DDK network,
//! the same readout on raw inputs and the paper's deep baselines.

use super::{BackendArg, Common, DatasetArg, print_json};
use memkin::cost::card::{Card, DEFAULT_PRESET};
use memkin::cost::{ACTIVITY_SAMPLES, compare, compare_agnews, components_csv, table_csv};
use memkin::engine::{Precision, select};
use memkin::pipeline::Protocol;
use memkin::report::npy::Outputs;
use std::path::PathBuf;

/// Arguments of `memkin cost`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    backend: BackendArg,
    #[command(flatten)]
    data: DatasetArg,
    /// Technology card: a preset (neurosim-22nm, neurosim-130nm) or a TOML/JSON file.
    #[arg(long, default_value = DEFAULT_PRESET)]
    card: String,
    /// Test inputs simulated to measure the kinetics layer's device activity.
    #[arg(long, default_value_t = ACTIVITY_SAMPLES)]
    samples: usize,
    /// Write cost.json, cost.csv (one row per network) and components.csv here.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    a.common
        .refuse_seed("not used: the cost reads the first test inputs, no random choice")?;
    // Every output path checked before the work; none may be an input.
    let mut out = Outputs::new();
    let data_dir = memkin::data::data_dir(a.data.data_dir.as_deref());
    out.inputs(&memkin::study::inputs::dataset_files(
        &a.data.dataset,
        data_dir.as_deref(),
    ));
    out.input(std::path::Path::new(&a.card));
    if let Some(d) = &a.out {
        out.plan_in_dir("--out", d, &["cost.json", "cost.csv", "components.csv"])?;
    }
    let card = Card::resolve(&a.card)?;
    if a.samples == 0 {
        return Err(memkin::Error::invalid("--samples", 0, "at least 1").into());
    }
    let cmp = if a.data.dataset == "agnews" {
        compare_agnews(&card)
    } else {
        let ds = a.data.load()?;
        let proto = Protocol::for_dataset(&ds.name, &ds.sample_shape);
        let engine = select(a.backend.backend, Precision::F32)?;
        compare(engine.as_ref(), &ds, &proto, &card, a.samples)?
    };
    let json = serde_json::json!({
        "dataset": cmp.dataset,
        "card": card,
        "comparison": cmp,
    });
    if let Some(d) = &a.out {
        out.text(&d.join("cost.json"), &serde_json::to_string_pretty(&json)?)?;
        out.text(&d.join("cost.csv"), &table_csv(&cmp))?;
        out.text(&d.join("components.csv"), &components_csv(&cmp))?;
    }
    out.commit()?;
    if a.common.json {
        print_json(&json);
    } else {
        println!(
            "{} on card {} (kinetics activity: {}):",
            cmp.dataset,
            card.name,
            cmp.networks[0].kinetics_basis.clone().unwrap_or_default()
        );
        println!(
            "{:<44} {:>10} {:>12} {:>12} {:>12} {:>10}",
            "network", "params", "operations", "energy (J)", "latency (s)", "area (mm2)"
        );
        for n in &cmp.networks {
            println!(
                "{:<44} {:>10} {:>12} {:>12.3e} {:>12.3e} {:>10.4}",
                n.name,
                n.parameters,
                n.operations,
                n.energy_j,
                n.latency_s,
                n.area_mm2()
            );
        }
        for r in &cmp.ratios {
            println!(
                "DDK / {}: energy {:.3e}, area {:.3e}, latency {:.3e}, parameters {:.3e}, operations {:.3e}",
                r.baseline, r.energy, r.area, r.latency, r.parameters, r.operations
            );
        }
    }
    Ok(())
}
