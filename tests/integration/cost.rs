//! The cost model: NeuroSim V1.4's component models at its default card,
//! reproduced within 1% of values computed by hand from its published
//! formulas; totals equal the sums of their parts; bad cards are refused.
//!
//! Hand values: Python, from the formulas quoted beside each (file:line in
//! github.com/neurosim/DNN_NeuroSim_V1.4, Inference_pytorch/NeuroSIM/).

use memkin::cost::card::{Card, PRESETS};
use memkin::cost::network::{cost, kinetics_activity};
use memkin::cost::neurosim::{
    adder_area, adder_energy, sar_adc_area, sar_adc_energy, sar_adc_latency, wordline_energy,
};
use memkin::cost::{pareto_front, zoo};
use std::process::Command;

fn close(got: f64, want: f64, what: &str) {
    let rel = ((got - want) / want).abs();
    assert!(
        rel < 0.01,
        "{what}: got {got:e}, want {want:e} (rel {rel:.2e} >= 1%)"
    );
}

fn card() -> Card {
    Card::preset("neurosim-22nm").unwrap()
}

#[test]
fn sar_adc_matches_neurosim_at_its_default_card() {
    let c = card().values;
    // SarADC.cpp:215-216,242: R' = R * 0.5/0.55;
    // ((0.538*5 + 4.3753)e-6 + 0.072341*exp(-2.303*log10 R')) * (5+1)*1e-9
    close(
        sar_adc_energy(&c, 1e5),
        4.715649321564932e-14,
        "SAR energy at 100 kohm",
    );
    close(
        sar_adc_energy(&c, 1e4),
        9.005850530418224e-14,
        "SAR energy at 10 kohm",
    );
    // SarADC.cpp:131: (log2(32) + 1) * 1 ns
    close(sar_adc_latency(&c), 6e-9, "SAR latency");
    // SarADC.cpp:81 with formula.cpp:70 (INV 7.6F x 28F each):
    // 212.8 F^2 * (269 + 4*109) + 212.8 F^2 * (209 + 4*73), F = 22 nm
    close(sar_adc_area(&c), 1.2421221119999996e-10, "SAR area");
}

#[test]
fn adder_matches_neurosim_at_its_default_card() {
    let c = card().values;
    // Adder.cpp:256-276 with EnlargeSize (formula.cpp:1508) filling the 28F cell:
    // Cin = (1.2*5.245e-10 + 8.004e-10)*(wn+wp) = 6.574e-16 F,
    // Cout = cj(5.6F wn + 2.8F wp) + csw(16.8F + wn) + cdc(wn + wp) = 1.808e-16 F,
    // E = 0.85^2 [14 Cin + 7 Cout + 7 (13 Cin + 7 Cout)] * 0.15
    close(
        adder_energy(&c, 8),
        8.57843522823913e-15,
        "8-bit adder energy",
    );
    close(
        adder_energy(&c, 14),
        1.4958825564229727e-14,
        "14-bit adder energy",
    );
    // Adder.cpp:86: NAND2 (11.4F x 28F) * 9 * 8 bits
    close(adder_area(&c, 8), 1.11234816e-11, "8-bit adder area");
}

#[test]
fn array_wordlines_and_cell_match_neurosim_at_its_default_card() {
    let c = card().values;
    // SubArray.cpp:197,1853-1856: capRow2 = 128*12*22nm*0.2fF/um;
    // capRow2 * 0.85^2 * 128 rows * 0.5 activity * 8 muxed columns
    close(
        wordline_energy(&c, 128, 128),
        2.5000673279999994e-12,
        "wordline energy",
    );
    // Param.cpp:339-340: 1T1R 4F x 12F
    close(c.cell_area_m2(), 48.0 * 22e-9 * 22e-9, "cell area");
}

#[test]
fn every_total_is_the_sum_of_its_parts() {
    let c = card().values;
    // A kinetics network with measured activity, and every deep baseline.
    let x: Vec<f32> = (0..2 * 3 * 5).map(|i| (i % 7) as f32 / 7.0).collect();
    let w: Vec<f32> = (0..2 * 3 * 5).map(|i| 1.0 + i as f32 * 0.3).collect();
    let act = kinetics_activity(&c, &x, &w, 2, 3, 5);
    let mut nets = vec![zoo::ddk(3, 5, 2, 2, act, &[15, 8, 4])];
    nets.extend([
        zoo::lenet5(10),
        zoo::voxnet(10),
        zoo::cnn1d_sitw(10),
        zoo::bilstm_agnews(4),
    ]);
    for n in &nets {
        let k = cost(&c, n);
        let sum = |f: &dyn Fn(&memkin::cost::network::LayerCost) -> f64| -> f64 {
            k.layers.iter().map(f).sum()
        };
        assert_eq!(k.energy_j, sum(&|l| l.energy_j), "{}", k.name);
        assert_eq!(k.latency_s, sum(&|l| l.latency_s), "{}", k.name);
        assert_eq!(k.area_m2, sum(&|l| l.area_m2), "{}", k.name);
        assert_eq!(
            k.parameters,
            k.layers.iter().map(|l| l.parameters).sum::<usize>()
        );
        for l in &k.layers {
            let e: f64 = l.components.iter().map(|c| c.energy_j).sum();
            let t: f64 = l.components.iter().map(|c| c.latency_s).sum();
            let a: f64 = l.components.iter().map(|c| c.area_m2).sum();
            assert_eq!(
                (l.energy_j, l.latency_s, l.area_m2),
                (e, t, a),
                "{} {}",
                k.name,
                l.name
            );
            assert!(e > 0.0 && t > 0.0 && a > 0.0, "{} {}", k.name, l.name);
        }
    }
}

#[test]
fn ddk_mnist_network_counts_as_the_paper() {
    let c = card().values;
    let act = memkin::cost::network::kinetics_bound(&c, 28, 28);
    let k = cost(&c, &zoo::ddk(28, 28, 1, 2, act, &[784, 48, 10]));
    // The paper's 38.2k parameters and 39.7k operations (README).
    assert_eq!(k.parameters, 38_172);
    assert_eq!(k.operations, 39_680);
}

#[test]
fn every_preset_constant_names_its_source() {
    for (name, _) in PRESETS {
        let c = Card::preset(name).unwrap();
        assert!(c.unsourced().is_empty(), "{name}: {:?}", c.unsourced());
    }
}

#[test]
fn pareto_front_keeps_only_undominated_points() {
    let pts = [
        (3.0, 0.9),
        (1.0, 0.5),
        (2.0, 0.4),
        (2.0, 0.8),
        (4.0, 0.85),
        (f64::NAN, 1.0),
    ];
    assert_eq!(pareto_front(&pts), vec![(1.0, 0.5), (2.0, 0.8), (3.0, 0.9)]);
}

fn memkin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_memkin"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bad_card_exits_2_naming_field_and_range() {
    let tmp = tempfile::tempdir().unwrap();
    let good = PRESETS[0].1;
    for (text, needle) in [
        (
            good.replace("adc_bits = 5", "adc_bits = 0"),
            "values.adc_bits = 0: in [1, 12]",
        ),
        (
            good.replace("r_off_ohm = 1.7e6", "r_off_ohm = 1e3"),
            "values.r_off_ohm",
        ),
        (
            good.replace("vdd_v = 0.85", "vdd_volts = 0.85"),
            "vdd_volts",
        ),
    ] {
        let path = tmp.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = tmp.path().join("out");
        let o = memkin(&[
            "cost",
            "--card",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(needle) && err.trim().lines().count() == 1,
            "{err}"
        );
        assert!(!out.exists(), "nothing written on a bad card");
    }
}

#[test]
fn cost_command_reports_ddk_raw_and_writes_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("c");
    let o = memkin(&[
        "cost",
        "--backend",
        "cpu",
        "--samples",
        "16",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nets = v["comparison"]["networks"].as_array().unwrap();
    assert_eq!(nets.len(), 2, "digits: DDK and raw, no deep baseline");
    assert_eq!(nets[0]["kinetics_basis"], "measured");
    for f in ["cost.json", "cost.csv", "components.csv"] {
        assert!(out.join(f).is_file(), "{f}");
    }
}

#[test]
fn pareto_indices_keep_only_undominated_points_in_cost_order() {
    use memkin::cost::pareto_indices;
    // 0 and 3 tie in cost; 3 scores higher, so 0 is dominated. 2 is NaN.
    let pts = [
        (2.0, 0.5),
        (1.0, 0.4),
        (f64::NAN, 0.9),
        (2.0, 0.7),
        (3.0, 0.6),
        (4.0, 0.8),
    ];
    assert_eq!(pareto_indices(&pts), vec![1, 3, 5]);
    // Equal points: the first index stands for both.
    assert_eq!(pareto_indices(&[(1.0, 0.5), (1.0, 0.5)]), vec![0]);
    assert!(pareto_indices(&[]).is_empty());
}

/// `run`'s cost block is the same network and figures as `memkin cost` at the
/// same device parameters and card: the DDK network with the device, the raw
/// one without it.
#[test]
fn run_report_cost_block_equals_the_cost_command() {
    let tmp = tempfile::tempdir().unwrap();
    let cost = memkin(&["cost", "--backend", "cpu", "--json"]);
    assert!(
        cost.status.success(),
        "{}",
        String::from_utf8_lossy(&cost.stderr)
    );
    let cost: serde_json::Value = serde_json::from_slice(&cost.stdout).unwrap();
    let nets = &cost["comparison"]["networks"];
    for (flag, k) in [(None, 0), (Some("--no-device"), 1)] {
        let out = tmp.path().join(format!("r{k}"));
        let mut args = vec!["run", "--backend", "cpu", "--out", out.to_str().unwrap()];
        args.extend(flag);
        let o = memkin(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        let c = &report["cost"];
        assert_eq!(c["card"], "neurosim-22nm");
        assert_eq!(c["network"], nets[k]["name"], "{flag:?}");
        let (got, want) = (
            c["energy_j"].as_f64().unwrap(),
            nets[k]["energy_j"].as_f64().unwrap(),
        );
        // Same inputs, same engine, same card: the same sums, to rounding.
        assert!(
            ((got - want) / want).abs() < 1e-12,
            "{flag:?}: {got:e} vs {want:e}"
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("J, "),
            "cost on the summary line"
        );
    }
}

/// Every sweep point's cost columns equal the cost model measured on its own
/// (alpha, beta) trajectories: a point costed with another point's features
/// (a slicing error in the batched dispatch) differs.
#[test]
fn sweep_cost_columns_are_each_points_own_measured_cost() {
    use memkin::cost::{ACTIVITY_SAMPLES, card::Card, compare};
    use memkin::readout::ReadoutKind;
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("s.toml");
    // batch = 4: points share dispatches, so per-point slicing is exercised;
    // alpha 0.05 with beta 2 diverges (beta > 2 sqrt(alpha)).
    std::fs::write(
        &spec,
        "dataset = \"digits\"\nreadout = \"ridge\"\nseed = 3\nbatch = 4\n[grid]\nalpha = { values = [0.05, 0.4, 1.0] }\nbeta = { values = [0.1, 0.6, 2.0] }\n",
    )
    .unwrap();
    let out = tmp.path().join("o");
    let o = memkin(&[
        "sweep",
        spec.to_str().unwrap(),
        "--backend",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = memkin::study::runner::ResultsTable::read(&out.join("results.csv")).unwrap();
    let col = |n: &str| table.column(n).unwrap();
    let (alpha, beta, energy, area, div) = (
        col("alpha"),
        col("beta"),
        col("energy_j"),
        col("area_mm2"),
        col("diverged_fraction"),
    );
    assert_eq!(energy.len(), 9);
    let ds = memkin::data::load("digits", None).unwrap();
    let engine = memkin::engine::select(
        memkin::engine::BackendChoice::Cpu,
        memkin::engine::Precision::F32,
    )
    .unwrap();
    let card = Card::default_card();
    let mut distinct = Vec::new();
    for r in 0..9 {
        if div[r] > 0.0 {
            assert!(
                energy[r].is_nan() && area[r].is_nan(),
                "row {r}: a diverged point has no cost"
            );
            continue;
        }
        let mut proto = memkin::pipeline::Protocol::for_dataset(&ds.name, &ds.sample_shape);
        proto.readout.kind = ReadoutKind::Ridge;
        proto.alpha = alpha[r];
        proto.beta = beta[r];
        let want = compare(engine.as_ref(), &ds, &proto, &card, ACTIVITY_SAMPLES).unwrap();
        let w = &want.networks[0];
        assert!(
            ((energy[r] - w.energy_j) / w.energy_j).abs() < 1e-12,
            "row {r}: {:e} vs {:e}",
            energy[r],
            w.energy_j
        );
        assert!((area[r] - w.area_mm2()).abs() <= 1e-12 * w.area_mm2());
        distinct.push(energy[r]);
    }
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    assert!(
        distinct.len() >= 4,
        "points differ in activity: {distinct:?}"
    );
    // The front is in the manifest and pareto.csv, cheapest first, each point
    // strictly better on validation than the one before.
    let man: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let front = man["pareto"].as_array().unwrap();
    assert!(!front.is_empty());
    for w in front.windows(2) {
        assert!(w[0]["energy_j"].as_f64() < w[1]["energy_j"].as_f64());
        assert!(w[0]["val_accuracy"].as_f64() < w[1]["val_accuracy"].as_f64());
    }
    assert_eq!(
        std::fs::read_to_string(out.join("pareto.csv"))
            .unwrap()
            .lines()
            .count(),
        front.len() + 1
    );
    assert!(out.join("pareto.png").is_file());
}

#[test]
fn sweep_spec_card_is_resolved_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("s.toml");
    std::fs::write(
        &spec,
        "dataset = \"digits\"\ncard = \"no-such-card\"\n[grid]\nalpha = { values = [0.5] }\nbeta = { values = [0.5] }\n",
    )
    .unwrap();
    let out = tmp.path().join("o");
    let o = memkin(&[
        "sweep",
        spec.to_str().unwrap(),
        "--backend",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("s.toml") && err.contains("card") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(!out.exists(), "a refused spec writes nothing");
    // A preset by name works, and the manifest names it.
    std::fs::write(
        &spec,
        "dataset = \"digits\"\ncard = \"neurosim-130nm\"\n[grid]\nalpha = { values = [0.5] }\nbeta = { values = [0.5] }\n",
    )
    .unwrap();
    let o = memkin(&[
        "sweep",
        spec.to_str().unwrap(),
        "--backend",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let man: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(man["card"], "neurosim-130nm");
}
