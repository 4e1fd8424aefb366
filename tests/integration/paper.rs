//! The paper's table, reproduced by `memkin run` on the real datasets
//! (MEMKIN_DATA). Each test runs the exact command quoted in README.md and
//! asserts the threshold on the mean test accuracy over the protocol's
//! seeded splits (the test set is never used for any choice).

use crate::common::data_dir;
use std::process::Command;

fn run(args: &[&str]) -> serde_json::Value {
    let dir = data_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_memkin"))
        .args(["run", "--json", "--backend", "cpu"])
        .args(args)
        .env("MEMKIN_DATA", dir)
        .output()
        .expect("memkin runs");
    assert!(
        out.status.success(),
        "memkin run {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

fn check(args: &[&str], threshold: f64) {
    let r = run(args);
    let acc = r["test_accuracy"].as_f64().unwrap();
    eprintln!(
        "memkin run {}: test accuracy {acc:.4} +- {:.4} {:?}",
        args.join(" "),
        r["test_accuracy_std"],
        r["test_accuracies"]
    );
    assert!(
        acc >= threshold,
        "{args:?}: mean test accuracy {acc} below {threshold}"
    );
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn mnist_ddk_mlp_784_48_10_reaches_096() {
    check(&["--dataset", "mnist"], 0.960);
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn sitw_ddk_mlp_128_16_10_reaches_089_over_five_splits() {
    check(&["--dataset", "sitw"], 0.890);
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn wmms_ddk_mlp_64_8_4_reaches_095_over_five_splits() {
    check(&["--dataset", "wmms"], 0.950);
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn modelnet10_chair_vs_monitor_slices_with_vote_reach_097_over_five_splits() {
    check(&["--dataset", "modelnet10"], 0.970);
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn mnist_run_reports_the_papers_parameter_and_operation_counts() {
    // One epoch is enough for the counts: 784*48 + 48 + 48*10 + 10 weights + alpha, beta;
    // 784*48 + 48*10 multiply-adds + 2 per device step (28 x 28).
    let r = run(&[
        "--dataset",
        "mnist",
        "--epochs",
        "1",
        "--train-subset",
        "2000",
    ]);
    assert_eq!(r["parameters"], 38_172);
    assert_eq!(r["operations"], 39_680);
    for key in [
        "dataset",
        "n_train",
        "n_test",
        "readout",
        "alpha",
        "beta",
        "train_accuracy",
        "test_accuracy",
        "seconds",
        "backend",
        "adapter",
        "seed",
    ] {
        assert!(!r[key].is_null(), "report lacks {key}");
    }
}

/// An engine that counts the trajectories it is asked to integrate.
struct Counting {
    inner: memkin::engine::cpu::CpuEngine,
    trajectories: std::sync::atomic::AtomicUsize,
}

impl memkin::engine::Engine for Counting {
    fn info(&self) -> memkin::engine::BackendInfo {
        self.inner.info()
    }
    fn run_into(
        &self,
        batch: &memkin::batch::Batch,
        opts: &memkin::engine::RunOptions,
        out: &mut memkin::batch::Features,
    ) -> memkin::Result<()> {
        self.trajectories
            .fetch_add(batch.trajectories(), std::sync::atomic::Ordering::Relaxed);
        self.inner.run_into(batch, opts, out)
    }
}

/// `evaluate_split` at fixed (alpha, beta) integrates each side once: the
/// training side's features train the readout and score it.
#[test]
fn an_evaluation_featurizes_each_side_once() {
    let ds = memkin::data::load("digits", None).unwrap();
    let proto = memkin::pipeline::Protocol::for_dataset(&ds.name, &ds.sample_shape);
    let engine = Counting {
        inner: memkin::engine::cpu::CpuEngine::fast(),
        trajectories: Default::default(),
    };
    let out = memkin::pipeline::evaluate_split(&engine, &ds, &proto, None).unwrap();
    let (train, test) = memkin::pipeline::encode_protocol(&ds, &proto).unwrap();
    assert!(out.test_accuracy > 0.9);
    assert_eq!(
        engine.trajectories.into_inner(),
        train.encoded.seqs + test.encoded.seqs,
        "each side's sequences integrated exactly once"
    );
}

/// The old way: the whole test split encoded, the first `per_class` readout
/// samples of each class picked, integrated.
fn examples_by_full_encoding(
    ds: &memkin::data::Dataset,
    proto: &memkin::pipeline::Protocol,
    per_class: usize,
) -> Vec<(u32, Vec<f32>, Vec<f32>)> {
    let (_, test) = memkin::pipeline::encode_protocol(ds, proto).unwrap();
    let mut picked = Vec::new();
    for c in 0..ds.n_classes.min(10) as u32 {
        picked.extend((0..test.n()).filter(|&i| test.y[i] == c).take(per_class));
    }
    let side = test.subset(&picked);
    let e = &side.encoded;
    let params =
        memkin::pipeline::device_params(proto.alpha, proto.beta, proto.w0, proto.per_step, e.steps)
            .unwrap();
    let f = memkin::pipeline::featurize(
        &memkin::engine::cpu::CpuEngine::fast(),
        &side,
        &params,
        false,
    )
    .unwrap();
    let len = e.seqs_per_sample * e.steps;
    (0..side.n())
        .map(|j| {
            (
                side.y[j],
                e.x[j * len..(j + 1) * len].to_vec(),
                f.w[j * len..(j + 1) * len].to_vec(),
            )
        })
        .collect()
}

fn check_feature_examples(name: &str, per_class: usize) {
    let dir = (name != "digits").then(data_dir);
    let ds = memkin::data::load(name, dir.as_deref()).unwrap();
    let proto = memkin::pipeline::Protocol::for_dataset(&ds.name, &ds.sample_shape);
    let engine = Counting {
        inner: memkin::engine::cpu::CpuEngine::fast(),
        trajectories: Default::default(),
    };
    let fx = memkin::pipeline::feature_examples(
        &engine,
        &ds,
        &proto,
        proto.alpha,
        proto.beta,
        per_class,
    )
    .unwrap();
    let want = examples_by_full_encoding(&ds, &proto, per_class);
    assert_eq!(fx.samples.len(), want.len(), "{name}");
    assert_eq!(
        fx.samples, want,
        "{name}: the same examples as from the whole split"
    );
    assert_eq!(
        engine.trajectories.into_inner(),
        want.len() * fx.rows,
        "{name}: only the examples are integrated"
    );
}

#[test]
fn the_feature_map_figure_encodes_only_its_examples() {
    check_feature_examples("digits", 3);
}

#[test]
#[cfg_attr(skip_data, ignore = "MEMKIN_DATA unset at build time (build.rs)")]
fn the_feature_map_figure_of_voxels_drops_empty_slices_as_the_protocol_does() {
    check_feature_examples("modelnet10", 3);
}
