//! `memkin data list|check`: which named datasets are present, and whether
//! their files verify against the recorded sha256.

use super::{Common, print_json};
use memkin::data;
use std::path::PathBuf;

/// Arguments of `memkin data`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    action: Action,
    /// Where the named datasets live (default: $MEMKIN_DATA).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Presence of each named dataset (fast: no hashing).
    List,
    /// sha256 of every file of every named dataset; exit 1 when one is corrupt.
    Check,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    a.common
        .refuse_seed("not used: listing and checking datasets makes no random choice")?;
    let dir = data::data_dir(a.data_dir.as_deref());
    let check = matches!(a.action, Action::Check);
    let status = if check {
        data::check(dir.as_deref())
    } else {
        data::list(dir.as_deref())
    };
    if a.common.json {
        print_json(&serde_json::json!({
            "data_dir": dir,
            "datasets": status,
        }));
    } else {
        match &dir {
            Some(d) => println!("data directory: {}", d.display()),
            None => println!("data directory: not set (use --data-dir or MEMKIN_DATA)"),
        }
        for s in &status {
            let state = match (s.present, s.verified) {
                (false, _) => "missing".to_string(),
                (true, Some(true)) => "present, verified".to_string(),
                (true, Some(false)) => "present, CORRUPT".to_string(),
                (true, None) => "present".to_string(),
            };
            println!("{:<12} {:<20} {}", s.name, state, s.path.display());
            for p in &s.problems {
                println!("             {p}");
            }
            if !s.present && !s.hint.is_empty() {
                println!("             {}", s.hint);
            }
        }
    }
    if check && status.iter().any(|s| s.verified == Some(false)) {
        anyhow::bail!("some dataset files do not match their recorded sha256 (see above)");
    }
    Ok(())
}
