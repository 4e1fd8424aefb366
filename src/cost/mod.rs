//! What the chip would spend: energy, latency and area per inference.
//!
//! A technology [`card::Card`] (TOML, every constant with its source; presets
//! from NeuroSim V1.4) drives circuit models re-implemented from NeuroSim
//! ([`neurosim`]: SAR ADC, adder, gate areas and capacitances, wordlines) and
//! the kinetics devices' own energy from the simulated states
//! ([`network::kinetics_activity`]). A [`network::Network`] (the DDK network,
//! the same readout on raw inputs, or a deep baseline from [`zoo`]) costs out
//! per layer and per component ([`network::cost`]); every total is the sum of
//! its parts. Formulas, sources and ranges of validity: `docs/cost.md`.
//!
//! ```
//! use memkin::cost::{card::Card, network::cost, zoo};
//! let card = Card::default_card();
//! let lenet = cost(&card.values, &zoo::lenet5(10));
//! let sum: f64 = lenet.layers.iter().map(|l| l.energy_j).sum();
//! assert_eq!(lenet.energy_j, sum);
//! assert_eq!(lenet.operations, 26 * 26 * 9 * 6 + 11 * 11 * 54 * 16 + 400 * 120 + 120 * 84 + 84 * 10);
//! ```

pub mod card;
pub mod network;
pub mod neurosim;
pub mod zoo;

use crate::data::Dataset;
use crate::engine::Engine;
use crate::pipeline::{Protocol, Side, device_params, encode_protocol, featurize};
use crate::readout::{ReadoutKind, TrainConfig};
use crate::{Error, Result};
use card::Card;
use network::{KineticsActivity, NetworkCost, cost, kinetics_activity, kinetics_bound};
use serde::Serialize;

/// Inputs simulated (at most) to measure the kinetics layer's activity.
pub const ACTIVITY_SAMPLES: usize = 256;

/// Layer sizes of a protocol's readout: features, hidden layers (MLP), classes.
pub fn readout_sizes(proto: &Protocol, n_features: usize, n_classes: usize) -> Vec<usize> {
    layer_sizes(&proto.readout, n_features, n_classes)
}

/// Layer sizes of a readout configuration: features, hidden layers (MLP),
/// classes (ridge and softmax are one layer).
pub fn layer_sizes(cfg: &TrainConfig, n_features: usize, n_classes: usize) -> Vec<usize> {
    let mut s = vec![n_features];
    if cfg.kind == ReadoutKind::Mlp {
        s.extend(&cfg.hidden);
    }
    s.push(n_classes);
    s
}

/// Costs many points of one study (a sweep's (alpha, beta) grid): the DDK
/// network of a fixed shape and readout, with the kinetics activity measured
/// from each point's own trajectories on the first `max_samples` test inputs.
#[derive(Clone, Debug)]
pub struct PointCoster {
    card: Card,
    sizes: Vec<usize>,
    seqs_per_sample: usize,
    steps: usize,
    passes: usize,
    device_parameters: usize,
    max_samples: usize,
}

/// The cost of one point: energy, latency and area per inference.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PointCost {
    /// Energy per inference (J).
    pub energy_j: f64,
    /// Latency per inference (s).
    pub latency_s: f64,
    /// Area (mm^2).
    pub area_mm2: f64,
}

impl PointCost {
    /// NaN in every field: a point whose trajectories diverged has no cost.
    pub const NAN: PointCost = PointCost {
        energy_j: f64::NAN,
        latency_s: f64::NAN,
        area_mm2: f64::NAN,
    };
}

impl PointCoster {
    /// A coster for inputs of `seqs_per_sample` sequences of `steps` steps,
    /// `passes` passes per inference (voxel slices), a readout `cfg` with
    /// `n_classes` outputs, and one (alpha, beta) pair per step when `per_step`.
    pub fn new(
        card: Card,
        cfg: &TrainConfig,
        seqs_per_sample: usize,
        steps: usize,
        passes: usize,
        per_step: bool,
        n_classes: usize,
        max_samples: usize,
    ) -> Self {
        Self {
            card,
            sizes: layer_sizes(cfg, seqs_per_sample * steps, n_classes),
            seqs_per_sample,
            steps,
            passes: passes.max(1),
            device_parameters: 2 * if per_step { steps } else { 1 },
            max_samples: max_samples.max(1),
        }
    }

    /// The card the points are costed on.
    pub fn card(&self) -> &Card {
        &self.card
    }

    /// The full breakdown at one point, from `n` inputs `x` and the states
    /// `w` they produced (both `[n * seqs_per_sample, steps]`); only the
    /// first `max_samples` inputs are read.
    pub fn network(&self, x: &[f32], w: &[f32], n: usize) -> Result<NetworkCost> {
        let per = self.seqs_per_sample * self.steps;
        let k = n.min(self.max_samples);
        if k == 0 || x.len() < k * per || w.len() < k * per {
            return Err(Error::invalid(
                "cost inputs",
                format!("{} inputs, {} states for {k} samples", x.len(), w.len()),
                format!("at least {} values each ({k} x {per})", k * per),
            ));
        }
        let activity = kinetics_activity(
            &self.card.values,
            &x[..k * per],
            &w[..k * per],
            k,
            self.seqs_per_sample,
            self.steps,
        );
        Ok(cost(
            &self.card.values,
            &zoo::ddk(
                self.seqs_per_sample,
                self.steps,
                self.passes,
                self.device_parameters,
                activity,
                &self.sizes,
            ),
        ))
    }

    /// Energy, latency and area at one point (see [`PointCoster::network`]).
    pub fn point(&self, x: &[f32], w: &[f32], n: usize) -> Result<PointCost> {
        let c = self.network(x, w, n)?;
        Ok(PointCost {
            energy_j: c.energy_j,
            latency_s: c.latency_s,
            area_mm2: c.area_mm2(),
        })
    }
}

/// The first `n` readout samples of a side.
fn head(side: &Side, n: usize) -> Side {
    let idx: Vec<usize> = (0..n.min(side.n())).collect();
    side.subset(&idx)
}

/// The kinetics activity per readout sample of `side` at (alpha, beta),
/// averaged over its first `max_samples` samples, simulated with `engine`.
pub fn measure_activity(
    engine: &dyn Engine,
    side: &Side,
    proto: &Protocol,
    alpha: f64,
    beta: f64,
    card: &Card,
    max_samples: usize,
) -> Result<KineticsActivity> {
    let part = head(side, max_samples.max(1));
    let e = &part.encoded;
    let params = device_params(alpha, beta, proto.w0, proto.per_step, e.steps)?;
    let f = featurize(engine, &part, &params, false)?;
    if f.diverged_fraction() > 0.0 {
        return Err(Error::invalid(
            "beta",
            beta,
            format!(
                "below 2*sqrt(alpha) = {:.4}: trajectories diverged, no cost can be measured",
                2.0 * alpha.sqrt()
            ),
        ));
    }
    Ok(kinetics_activity(
        &card.values,
        &e.x,
        &f.w,
        e.samples,
        e.seqs_per_sample,
        e.steps,
    ))
}

/// The DDK network's cost for an encoded side's shape, from a measured (or
/// bound) activity.
pub fn ddk_cost(
    card: &Card,
    proto: &Protocol,
    seqs_per_sample: usize,
    steps: usize,
    passes: usize,
    n_classes: usize,
    activity: KineticsActivity,
) -> NetworkCost {
    let sizes = readout_sizes(proto, seqs_per_sample * steps, n_classes);
    let device_parameters = 2 * if proto.per_step { steps } else { 1 };
    cost(
        &card.values,
        &zoo::ddk(
            seqs_per_sample,
            steps,
            passes,
            device_parameters,
            activity,
            &sizes,
        ),
    )
}

/// DDK over a deep baseline: energy and area ratios.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    /// The baseline's name.
    pub baseline: String,
    /// DDK energy / baseline energy.
    pub energy: f64,
    /// DDK area / baseline area.
    pub area: f64,
    /// DDK latency / baseline latency.
    pub latency: f64,
    /// DDK parameters / baseline parameters.
    pub parameters: f64,
    /// DDK operations / baseline operations.
    pub operations: f64,
}

/// The networks of one dataset, costed on one card.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Dataset name.
    pub dataset: String,
    /// Card name.
    pub card: String,
    /// alpha, beta of the kinetics layer.
    pub alpha: f64,
    /// beta.
    pub beta: f64,
    /// Input passes per inference (voxel slices: 32).
    pub passes: usize,
    /// DDK first, then raw, then the deep baselines.
    pub networks: Vec<NetworkCost>,
    /// DDK over each deep baseline.
    pub ratios: Vec<Ratio>,
}

/// The paper's deep baselines for a named dataset (none for others).
pub fn baselines(dataset: &str, n_classes: usize) -> Vec<network::Network> {
    match dataset {
        "mnist" => vec![zoo::lenet5(n_classes)],
        "modelnet10" => vec![zoo::voxnet(n_classes)],
        "sitw" => vec![zoo::cnn1d_sitw(n_classes)],
        "agnews" => vec![zoo::bilstm_agnews(n_classes)],
        _ => Vec::new(),
    }
}

fn ratios(networks: &[NetworkCost], first_baseline: usize) -> Vec<Ratio> {
    let d = &networks[0];
    networks[first_baseline..]
        .iter()
        .map(|b| Ratio {
            baseline: b.name.clone(),
            energy: d.energy_j / b.energy_j,
            area: d.area_m2 / b.area_m2,
            latency: d.latency_s / b.latency_s,
            parameters: d.parameters as f64 / b.parameters as f64,
            operations: d.operations as f64 / b.operations as f64,
        })
        .collect()
}

/// Costs the DDK network (activity measured on the test split), the same
/// readout on raw inputs, and the dataset's deep baselines.
pub fn compare(
    engine: &dyn Engine,
    ds: &Dataset,
    proto: &Protocol,
    card: &Card,
    max_samples: usize,
) -> Result<Comparison> {
    let (_, test) = encode_protocol(ds, proto)?;
    let e = &test.encoded;
    let passes = proto.encoding.samples_per_input(&ds.sample_shape);
    let activity = measure_activity(
        engine,
        &test,
        proto,
        proto.alpha,
        proto.beta,
        card,
        max_samples,
    )?;
    let ddk = ddk_cost(
        card,
        proto,
        e.seqs_per_sample,
        e.steps,
        passes,
        ds.n_classes,
        activity,
    );
    let raw = cost(
        &card.values,
        &zoo::raw(
            &readout_sizes(proto, e.seqs_per_sample * e.steps, ds.n_classes),
            passes,
        ),
    );
    let mut networks = vec![ddk, raw];
    networks.extend(
        baselines(&ds.name, ds.n_classes)
            .iter()
            .map(|n| cost(&card.values, n)),
    );
    Ok(Comparison {
        dataset: ds.name.clone(),
        card: card.name.clone(),
        alpha: proto.alpha,
        beta: proto.beta,
        passes,
        ratios: ratios(&networks, 2),
        networks,
    })
}

/// AG News, which has no loader here: the DDK text network (300 embedding
/// dimensions as devices over 64 words; FC 300-128 per word, max-pool, FC
/// 128-4) with the kinetics activity bounded (every state at 1/r_on), the
/// same readout on the raw embeddings, and the BiLSTM baseline.
pub fn compare_agnews(card: &Card) -> Comparison {
    let (dims, words, classes) = (300, 64, 4);
    let activity = kinetics_bound(&card.values, dims, words);
    let kin = network::Layer {
        name: format!("kinetics {dims} x {words}"),
        kind: network::LayerKind::Kinetics(network::KineticsLayer {
            devices: dims,
            steps: words,
            passes: 1,
            parameters: 2,
            activity,
        }),
    };
    let readout = vec![
        network::Layer::fc("fc 300-128 per word", dims, 128, words),
        network::Layer::fc("fc 128-4", 128, classes, 1),
    ];
    let mut ddk_layers = vec![kin];
    ddk_layers.extend(readout.clone());
    let ddk = network::Network {
        name: "DDK + FC 300-128 (per word) + FC 128-4".into(),
        source: "data/README: the paper's AG News network (64 words, embedding 300)".into(),
        layers: ddk_layers,
    };
    let raw = network::Network {
        name: "raw + FC 300-128 (per word) + FC 128-4".into(),
        source: "the same readout on the raw embeddings".into(),
        layers: readout,
    };
    let mut networks = vec![cost(&card.values, &ddk), cost(&card.values, &raw)];
    networks.extend(
        baselines("agnews", classes)
            .iter()
            .map(|n| cost(&card.values, n)),
    );
    Comparison {
        dataset: "agnews".into(),
        card: card.name.clone(),
        alpha: f64::NAN,
        beta: f64::NAN,
        passes: 1,
        ratios: ratios(&networks, 2),
        networks,
    }
}

/// One row per network: name, parameters, operations, energy, latency, area.
pub fn table_csv(c: &Comparison) -> String {
    let mut s = String::from(
        "dataset,network,parameters,operations,energy_per_inference_j,latency_s,area_mm2,kinetics_basis\n",
    );
    for n in &c.networks {
        s.push_str(&format!(
            "{},{},{},{},{:e},{:e},{:e},{}\n",
            c.dataset,
            n.name.replace(',', ";"),
            n.parameters,
            n.operations,
            n.energy_j,
            n.latency_s,
            n.area_mm2(),
            n.kinetics_basis.clone().unwrap_or_default()
        ));
    }
    s
}

/// One row per (network, layer, component).
pub fn components_csv(c: &Comparison) -> String {
    let mut s = String::from("dataset,network,layer,component,energy_j,latency_s,area_mm2\n");
    for n in &c.networks {
        for l in &n.layers {
            for k in &l.components {
                s.push_str(&format!(
                    "{},{},{},{},{:e},{:e},{:e}\n",
                    c.dataset,
                    n.name.replace(',', ";"),
                    l.name.replace(',', ";"),
                    k.name,
                    k.energy_j,
                    k.latency_s,
                    k.area_m2 * 1e6
                ));
            }
        }
    }
    s
}

/// The Pareto front of (cost, score) points: those no other point beats with
/// less or equal cost and a higher or equal score (one strictly). Points with
/// a non-finite coordinate are ignored. Returned sorted by cost.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    pareto_indices(points)
        .into_iter()
        .map(|i| points[i])
        .collect()
}

/// The indices into `points` of [`pareto_front`], sorted by cost (ties in
/// cost and score: the first index).
pub fn pareto_indices(points: &[(f64, f64)]) -> Vec<usize> {
    let mut p: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].0.is_finite() && points[i].1.is_finite())
        .collect();
    // Cheapest first; among equal cost, best score first, then plan order.
    p.sort_by(|&a, &b| {
        let (pa, pb) = (points[a], points[b]);
        pa.0.total_cmp(&pb.0)
            .then(pb.1.total_cmp(&pa.1))
            .then(a.cmp(&b))
    });
    let mut front: Vec<usize> = Vec::new();
    for q in p {
        if front.last().is_none_or(|&l| points[q].1 > points[l].1) {
            front.push(q);
        }
    }
    front
}
