//! `memkin devices`: the adapters wgpu sees.

use super::{Common, print_json};
use memkin::engine::gpu::list_adapters;

/// Arguments of `memkin devices`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    a.common
        .refuse_seed("not used: listing adapters makes no random choice")?;
    let adapters = list_adapters();
    let cpu = serde_json::json!({
        "model": memkin::engine::cpu::cpu_model(),
        "threads": rayon::current_num_threads(),
    });
    if a.common.json {
        print_json(&serde_json::json!({ "adapters": adapters, "cpu": cpu }));
        return Ok(());
    }
    if adapters.is_empty() {
        println!(
            "no GPU adapters (for a software one on Debian: apt-get install mesa-vulkan-drivers libvulkan1)"
        );
    }
    for (i, d) in adapters.iter().enumerate() {
        println!(
            "[{i}] {} ({}, {}) driver {}",
            d.name, d.device_type, d.backend, d.driver
        );
        println!(
            "    max storage binding {} MiB, max buffer {} MiB, {} workgroups/dim, {} invocations/workgroup, timestamps {}",
            d.max_storage_buffer_binding_size >> 20,
            d.max_buffer_size >> 20,
            d.max_compute_workgroups_per_dimension,
            d.max_compute_invocations_per_workgroup,
            if d.timestamp_query { "yes" } else { "no" }
        );
    }
    println!(
        "cpu: {} ({} threads)",
        cpu["model"].as_str().unwrap_or("?"),
        cpu["threads"]
    );
    Ok(())
}
