//! Studies: parameter sweeps and device-variability Monte Carlo.
//!
//! - [`spec`]: the TOML/JSON specs ([`spec::SweepSpec`], [`spec::McSpec`]),
//!   checked before any work, errors naming the key and its line.
//! - [`plan`]: the deterministic list of points ([`plan::Plan`],
//!   [`plan::Point`]), per-point seeds, and contiguous shards
//!   ([`plan::shard_range`], [`plan::resolve_shard`] with Slurm and Kubernetes
//!   fallbacks).
//! - [`montecarlo`]: device-variability Monte Carlo (`memkin mc`): device
//!   draws, conductance-mapped readouts, [`montecarlo::McEvaluator`], summaries.
//! - [`inputs`]: the files a study depends on (dataset files, a saved
//!   model), whose sha256 the manifest records.
//! - [`sweep`], [`sweep_outputs`]: the sweep's evaluator and selection, and
//!   its final outputs (selected point, heatmap, Pareto front).
//! - [`runner`]: evaluator-agnostic execution: [`runner::run_study`] appends
//!   one durable CSV row per finished point, resumes after any kill, and
//!   [`runner::merge`] joins shard directories into one, checking they come
//!   from the same spec.
//!
//! ```
//! use memkin::study::plan::Plan;
//! use memkin::study::runner::{run_study, Evaluator, Study, StudyKind};
//! use memkin::study::spec::SweepSpec;
//! use std::path::Path;
//!
//! struct Toy;
//! impl Evaluator for Toy {
//!     fn metric_names(&self) -> Vec<String> { vec!["score".into()] }
//!     fn evaluate(&mut self, p: &memkin::study::plan::Point) -> memkin::Result<Vec<f64>> {
//!         Ok(vec![p.get("alpha").unwrap() * p.get("beta").unwrap()])
//!     }
//! }
//!
//! let text = "dataset = \"toy\"\nseed = 7\n[grid]\nalpha = { linspace = [0.1, 1.0, 4] }\nbeta = { values = [1, 2] }\n";
//! let spec = SweepSpec::from_text(Path::new("toy.toml"), text).unwrap();
//! let plan = Plan::sweep(&spec);
//! assert_eq!(plan.len(), 8);
//! let dir = std::env::temp_dir().join(format!("memkin-doc-{}", std::process::id()));
//! let study = Study {
//!     dir: &dir, kind: StudyKind::Sweep, spec_text: text, plan: &plan,
//!     shard: None, resume: false, progress: false, manifest_extra: serde_json::Value::Null,
//! };
//! let out = run_study(&study, &mut Toy).unwrap();
//! assert_eq!(out.evaluated, 8);
//! // Running it again is a no-op.
//! assert_eq!(run_study(&study, &mut Toy).unwrap().evaluated, 0);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

pub mod inputs;
pub mod kinetics;
pub mod montecarlo;
pub mod plan;
pub mod reduce;
pub mod runner;
pub mod spec;
pub mod sweep;
pub mod sweep_outputs;
