//! The parameter-sweep evaluator: many (alpha, beta, w0) points against one
//! dataset split, several points per engine dispatch (the inputs are bound once
//! and crossed with the points' parameter sets, never copied per point).
//!
//! Per point: the kinetics features of the train and test sides, then the
//! readout trained on the train side and scored on the test side. A point where
//! any trajectory diverges (`beta x > 2 sqrt(alpha)`) trains no readout: its
//! accuracies are NaN and `diverged_fraction` says how many trajectories failed.

use super::kinetics::Kinetics;
use super::plan::Point;
use super::runner::Evaluator;
use crate::Result;
use crate::pipeline::Side;
use crate::readout::{self, TrainConfig};
use std::time::Instant;

/// Evaluates sweep points.
pub struct SweepEvaluator<'a> {
    kinetics: Kinetics<'a>,
    train: Side,
    test: Side,
    n_classes: usize,
    readout: TrainConfig,
    batch: usize,
}

impl<'a> SweepEvaluator<'a> {
    /// An evaluator over encoded `train`/`test` sides; `batch` points share a dispatch.
    pub fn new(
        kinetics: Kinetics<'a>,
        train: Side,
        test: Side,
        n_classes: usize,
        readout: TrainConfig,
        batch: usize,
    ) -> Result<Self> {
        readout.check()?;
        Ok(Self {
            kinetics,
            train,
            test,
            n_classes,
            readout,
            batch: batch.max(1),
        })
    }

    /// A batch size that keeps one dispatch's features under `budget` bytes.
    pub fn batch_for_budget(train: &Side, test: &Side, budget: usize) -> usize {
        let per_point = (train.encoded.x.len() + test.encoded.x.len()) * 4;
        (budget / per_point.max(1)).clamp(1, 256)
    }
}

impl Evaluator for SweepEvaluator<'_> {
    fn metric_names(&self) -> Vec<String> {
        [
            "train_accuracy",
            "test_accuracy",
            "diverged_fraction",
            "seconds",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn batch_size(&self) -> usize {
        self.batch
    }

    fn evaluate(&mut self, point: &Point) -> Result<Vec<f64>> {
        Ok(self.evaluate_many(std::slice::from_ref(point))?.remove(0))
    }

    fn evaluate_many(&mut self, points: &[Point]) -> Result<Vec<Vec<f64>>> {
        let start = Instant::now();
        let ft = self.kinetics.run(&self.train, points)?;
        let fe = self.kinetics.run(&self.test, points)?;
        let shared = start.elapsed().as_secs_f64() / points.len() as f64;
        let (n_tr, n_te, f) = (self.train.n(), self.test.n(), self.train.n_features());
        let mut rows = Vec::with_capacity(points.len());
        for (p, point) in points.iter().enumerate() {
            let t0 = Instant::now();
            let (st_tr, st_te) = (
                &ft.status[p * ft.seqs..(p + 1) * ft.seqs],
                &fe.status[p * fe.seqs..(p + 1) * fe.seqs],
            );
            let bad = st_tr.iter().chain(st_te).filter(|&&s| s != 0).count();
            let diverged = bad as f64 / (st_tr.len() + st_te.len()) as f64;
            if bad > 0 {
                rows.push(vec![
                    f64::NAN,
                    f64::NAN,
                    diverged,
                    shared + t0.elapsed().as_secs_f64(),
                ]);
                continue;
            }
            let x_tr = &ft.w[p * n_tr * f..(p + 1) * n_tr * f];
            let x_te = &fe.w[p * n_te * f..(p + 1) * n_te * f];
            let cfg = TrainConfig {
                seed: point.seed,
                ..self.readout.clone()
            };
            let trained = readout::train(x_tr, n_tr, f, &self.train.y, self.n_classes, &cfg, None)?;
            let train_acc = trained.accuracy(x_tr, n_tr, &self.train.y);
            let test_acc = trained.accuracy(x_te, n_te, &self.test.y);
            rows.push(vec![
                train_acc,
                test_acc,
                diverged,
                shared + t0.elapsed().as_secs_f64(),
            ]);
        }
        Ok(rows)
    }
}
