//! The parameter-sweep evaluator: many (alpha, beta, w0) points against one
//! dataset split, several points per engine dispatch (the inputs are bound once
//! and crossed with the points' parameter sets, never copied per point).
//!
//! Per point: the kinetics features of the fit, validation and test sides
//! ([`Sides`]: the validation side is carved from the training side, seeded and
//! stratified), then the readout trained on the fit side and scored on all
//! three. The point a study reports is the one with the best *validation*
//! accuracy ([`select`]); its test accuracy is read, never chosen on. A point
//! where any trajectory diverges (`beta x > 2 sqrt(alpha)`) trains no readout:
//! its accuracies are NaN and `diverged_fraction` says how many trajectories
//! failed.

use super::kinetics::Kinetics;
use super::plan::Point;
use super::runner::{Evaluator, ResultsTable};
use crate::Result;
use crate::cost::{PointCost, PointCoster};
use crate::engine::gpu::GpuReducer;
use crate::pipeline::Sides;
use crate::readout::{self, ReadoutKind, TrainConfig};
use serde::Serialize;
use std::time::Instant;

/// Evaluates sweep points.
pub struct SweepEvaluator<'a> {
    kinetics: Kinetics<'a>,
    sides: Sides,
    n_classes: usize,
    readout: TrainConfig,
    batch: usize,
    coster: Option<PointCoster>,
    reducer: Option<GpuReducer>,
    block_samples: Option<usize>,
    cost_head: Option<crate::pipeline::Side>,
}

/// Where a sweep's readout is trained and scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadoutSite {
    /// Ridge from the fit side's moments, scored by counting; the features of
    /// a side are never held whole (CPU) or never leave the device (GPU).
    Moments,
    /// The features of every side are produced (and on a GPU downloaded) and
    /// the readout is trained on the host (softmax, MLP, a lambda scan).
    Host,
}

impl ReadoutSite {
    /// What study manifests record under `"readout_site"`.
    pub fn describe(self, gpu: bool) -> &'static str {
        match (self, gpu) {
            (ReadoutSite::Moments, true) => {
                "device: ridge moments and correct counts are computed on the GPU and downloaded (no features); the F x F systems are solved on the host"
            }
            (ReadoutSite::Moments, false) => {
                "cpu: ridge from f64 moments accumulated over blocks of samples, scored by counting"
            }
            (ReadoutSite::Host, true) => {
                "host: the features are downloaded and the readout is trained per point on the host (only a one-lambda ridge readout runs on the device)"
            }
            (ReadoutSite::Host, false) => "host: the readout is trained per point on the features",
        }
    }
}

impl<'a> SweepEvaluator<'a> {
    /// An evaluator over encoded fit/validation/test sides (see
    /// [`Sides::carve`]); `batch` points share a dispatch.
    pub fn new(
        kinetics: Kinetics<'a>,
        sides: Sides,
        n_classes: usize,
        readout: TrainConfig,
        batch: usize,
    ) -> Result<Self> {
        readout.check()?;
        Ok(Self {
            kinetics,
            sides,
            n_classes,
            readout,
            batch: batch.max(1),
            coster: None,
            reducer: None,
            block_samples: None,
            cost_head: None,
        })
    }

    /// Runs ridge points on the GPU through `reducer` (the discrete map only):
    /// a point downloads its moments and counts, never its features.
    pub fn with_reducer(mut self, reducer: GpuReducer) -> Self {
        self.reducer = Some(reducer);
        self
    }

    /// At most `n` samples per CPU block (tests force tiny blocks).
    pub fn with_block_samples(mut self, n: usize) -> Self {
        self.block_samples = Some(n.max(1));
        self
    }

    /// Where this evaluator trains and scores its readout.
    pub fn readout_site(&self) -> ReadoutSite {
        let ridge =
            self.readout.kind == ReadoutKind::Ridge && self.readout.ridge_lambdas.len() <= 1;
        let device_ok = self.reducer.is_none()
            || (matches!(self.kinetics, Kinetics::Map { .. })
                && self.n_classes <= crate::engine::gpu::forward::MAX_CLASSES);
        if ridge && device_ok {
            ReadoutSite::Moments
        } else {
            ReadoutSite::Host
        }
    }

    /// Adds the cost columns `energy_j`, `latency_s`, `area_mm2` (per
    /// inference, on `coster`'s card), each point's kinetics activity measured
    /// from its own test-side trajectories.
    pub fn with_cost(mut self, coster: PointCoster) -> Self {
        self.coster = Some(coster);
        self
    }

    /// The sides points are evaluated on.
    pub fn sides(&self) -> &Sides {
        &self.sides
    }

    /// A batch size that keeps one dispatch's features under `budget` bytes.
    pub fn batch_for_budget(sides: &Sides, budget: usize) -> usize {
        let per_point = [&sides.fit, &sides.val, &sides.test]
            .iter()
            .map(|s| s.encoded.x.len() * 4)
            .sum::<usize>();
        (budget / per_point.max(1)).clamp(1, 256)
    }
}

impl Evaluator for SweepEvaluator<'_> {
    fn metric_names(&self) -> Vec<String> {
        let mut names = vec![
            "train_accuracy",
            "val_accuracy",
            "test_accuracy",
            "diverged_fraction",
        ];
        if self.coster.is_some() {
            names.extend(COST_COLUMNS);
        }
        names.push("seconds");
        names.iter().map(|s| s.to_string()).collect()
    }

    fn batch_size(&self) -> usize {
        self.batch
    }

    fn transfer(&self) -> crate::engine::Transfer {
        self.kinetics.transfer()
    }

    fn evaluate(&mut self, point: &Point) -> Result<Vec<f64>> {
        Ok(self.evaluate_many(std::slice::from_ref(point))?.remove(0))
    }

    fn evaluate_many(&mut self, points: &[Point]) -> Result<Vec<Vec<f64>>> {
        if self.readout_site() == ReadoutSite::Moments {
            return self.evaluate_moments(points);
        }
        let start = Instant::now();
        let sides = [&self.sides.fit, &self.sides.val, &self.sides.test];
        let feats = sides
            .iter()
            .map(|s| self.kinetics.run(s, points))
            .collect::<Result<Vec<_>>>()?;
        let shared = start.elapsed().as_secs_f64() / points.len() as f64;
        let f = self.sides.fit.n_features();
        let mut rows = Vec::with_capacity(points.len());
        for (p, point) in points.iter().enumerate() {
            let t0 = Instant::now();
            let status: Vec<&[u8]> = feats
                .iter()
                .map(|ft| &ft.status[p * ft.seqs..(p + 1) * ft.seqs])
                .collect();
            let bad: usize = status
                .iter()
                .map(|s| s.iter().filter(|&&v| v != 0).count())
                .sum();
            let total: usize = status.iter().map(|s| s.len()).sum();
            let diverged = bad as f64 / total.max(1) as f64;
            if bad > 0 {
                let mut row = vec![f64::NAN, f64::NAN, f64::NAN, diverged];
                if self.coster.is_some() {
                    row.extend(cost_values(PointCost::NAN));
                }
                row.push(shared + t0.elapsed().as_secs_f64());
                rows.push(row);
                continue;
            }
            let x: Vec<&[f32]> = feats
                .iter()
                .zip(sides)
                .map(|(ft, s)| &ft.w[p * s.n() * f..(p + 1) * s.n() * f])
                .collect();
            let cfg = TrainConfig {
                seed: point.seed,
                ..self.readout.clone()
            };
            let fit = &self.sides.fit;
            let trained = readout::train(x[0], fit.n(), f, &fit.y, self.n_classes, &cfg, None)?;
            let mut row: Vec<f64> = sides
                .iter()
                .zip(&x)
                .map(|(s, x)| trained.accuracy(x, s.n(), &s.y))
                .collect();
            row.push(diverged);
            if let Some(c) = &self.coster {
                let test = &self.sides.test;
                row.extend(cost_values(c.point(&test.encoded.x, x[2], test.n())?));
            }
            row.push(shared + t0.elapsed().as_secs_f64());
            rows.push(row);
        }
        Ok(rows)
    }
}

impl SweepEvaluator<'_> {
    /// [`ReadoutSite::Moments`]: counts from [`super::reduce`], then the rows.
    fn evaluate_moments(&mut self, points: &[Point]) -> Result<Vec<Vec<f64>>> {
        let start = Instant::now();
        let counts = match &self.reducer {
            Some(r) => {
                super::reduce::gpu_points(r, &self.sides, points, self.n_classes, &self.readout)?
            }
            None => super::reduce::cpu_points(
                &self.kinetics,
                &self.sides,
                points,
                self.n_classes,
                &self.readout,
                self.block_samples,
            )?,
        };
        let sides = [&self.sides.fit, &self.sides.val, &self.sides.test];
        let total: usize = sides.iter().map(|s| s.encoded.seqs).sum();
        // The cost's kinetics activity: each point's states on the first test
        // samples, integrated on the CPU (so the GPU path downloads no states).
        let activity = match &self.coster {
            Some(c) => {
                let head = self.cost_head.get_or_insert_with(|| {
                    let t = &self.sides.test;
                    t.subset(&(0..t.n().min(crate::cost::ACTIVITY_SAMPLES)).collect::<Vec<_>>())
                });
                let cpu = crate::engine::cpu::CpuEngine::new(crate::engine::Precision::F32);
                let feats = match &self.kinetics {
                    Kinetics::Map { .. } => Kinetics::Map { engine: &cpu }.run(head, points)?,
                    other => other.run(head, points)?,
                };
                Some((c, feats))
            }
            None => None,
        };
        let shared = start.elapsed().as_secs_f64() / points.len() as f64;
        let mut rows = Vec::with_capacity(points.len());
        for (p, pc) in counts.iter().enumerate() {
            let diverged = pc.bad as f64 / total.max(1) as f64;
            let mut row: Vec<f64> = if pc.bad > 0 {
                vec![f64::NAN; 3]
            } else {
                sides
                    .iter()
                    .zip(pc.correct)
                    .map(|(s, k)| k as f64 / s.n().max(1) as f64)
                    .collect()
            };
            row.push(diverged);
            if let Some((c, feats)) = &activity {
                let head = self.cost_head.as_ref().expect("set with the coster");
                let per = head.n() * head.n_features();
                let cost = if pc.bad > 0 {
                    PointCost::NAN
                } else {
                    c.point(&head.encoded.x, &feats.w[p * per..(p + 1) * per], head.n())?
                };
                row.extend(cost_values(cost));
            }
            row.push(shared);
            rows.push(row);
        }
        Ok(rows)
    }
}

/// The cost columns of a sweep's results.csv (with [`SweepEvaluator::with_cost`]).
pub const COST_COLUMNS: [&str; 3] = ["energy_j", "latency_s", "area_mm2"];

fn cost_values(c: PointCost) -> [f64; 3] {
    [c.energy_j, c.latency_s, c.area_mm2]
}

/// One point of a sweep's accuracy-energy Pareto front.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ParetoPoint {
    /// Plan index of the point.
    pub index: usize,
    /// Energy per inference (J).
    pub energy_j: f64,
    /// Its validation accuracy (what the front is drawn on).
    pub val_accuracy: f64,
    /// Its test accuracy (read off, never chosen on).
    pub test_accuracy: f64,
}

/// The accuracy-energy Pareto front of a sweep's results (validation accuracy
/// against energy per inference, cheapest first); `None` without cost columns.
pub fn pareto_from_table(table: &ResultsTable) -> Option<Vec<ParetoPoint>> {
    let (idx, energy, val, test) = (
        table.column("index")?,
        table.column("energy_j")?,
        table.column("val_accuracy")?,
        table.column("test_accuracy")?,
    );
    let pts: Vec<(f64, f64)> = energy.iter().copied().zip(val.iter().copied()).collect();
    Some(
        crate::cost::pareto_indices(&pts)
            .into_iter()
            .map(|r| ParetoPoint {
                index: idx[r] as usize,
                energy_j: energy[r],
                val_accuracy: val[r],
                test_accuracy: test[r],
            })
            .collect(),
    )
}

/// The point a study reports: the best validation accuracy (ties: the first in
/// plan order), with its test accuracy read off, never chosen on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Selected {
    /// Plan index of the point.
    pub index: usize,
    /// Its validation accuracy (the criterion).
    pub val_accuracy: f64,
    /// Its test accuracy (reported).
    pub test_accuracy: f64,
}

/// Selects by validation accuracy among rows `(index, val_accuracy,
/// test_accuracy)`; NaN rows (diverged points) are never selected. `None` when
/// no row has a finite validation accuracy.
pub fn select(rows: impl IntoIterator<Item = (usize, f64, f64)>) -> Option<Selected> {
    let mut best: Option<Selected> = None;
    for (index, val_accuracy, test_accuracy) in rows {
        if !val_accuracy.is_finite() {
            continue;
        }
        let better = best.is_none_or(|b| {
            val_accuracy > b.val_accuracy || (val_accuracy == b.val_accuracy && index < b.index)
        });
        if better {
            best = Some(Selected {
                index,
                val_accuracy,
                test_accuracy,
            });
        }
    }
    best
}

/// [`select`] over a study CSV read back (`index`, `val_accuracy` and
/// `test_accuracy` columns); `None` without those columns or a finite
/// validation accuracy.
pub fn select_from_table(table: &ResultsTable) -> Option<Selected> {
    let (i, v, t) = (
        table.column("index")?,
        table.column("val_accuracy")?,
        table.column("test_accuracy")?,
    );
    select(
        i.into_iter()
            .zip(v)
            .zip(t)
            .map(|((i, v), t)| (i as usize, v, t)),
    )
}
