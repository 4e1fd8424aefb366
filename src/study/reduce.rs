//! A ridge sweep point without its features: the readout is trained from the
//! fit side's moments and scored by counting, on the CPU (blocks of samples,
//! all cores) or on the GPU ([`GpuReducer`]: the features never leave the
//! device; only moments and counts come back).
//!
//! Both paths give, per point, the correct predictions on the fit, validation
//! and test sides and the failed trajectories; [`super::sweep`] turns them
//! into the row `readout::train` + `Trained::accuracy` gave before.
//!
//! - CPU: each side is integrated in blocks of samples (never the whole side's
//!   `[P, S, T]` at once); each point accumulates its
//!   [`RidgeMoments`] in f64 on its own rayon task; the solve, then a second
//!   pass of blocks counts each point's correct predictions with
//!   [`crate::readout::Trained::predict`] (f64 decisions, as before).
//! - GPU: one [`GpuReducer::moments`] over the fit side, the F x F solves on
//!   the host, one [`GpuReducer::forward`] per side (f32 decisions: a sample
//!   whose two best scores are within f32 rounding may go the other way).

use rayon::prelude::*;

use super::kinetics::{Kinetics, MAP_PARAMS};
use super::plan::Point;
use crate::Result;
use crate::engine::gpu::GpuReducer;
use crate::engine::gpu::forward::ReadoutArrays;
use crate::engine::gpu::moments::{MapParams, SideInputs};
use crate::pipeline::{Side, Sides};
use crate::readout::{LinearReadout, RidgeMoments, TrainConfig, Trained};

/// Largest block of features the CPU path holds at once (bytes, all points).
const BLOCK_BYTES: usize = 32 << 20;

/// What a point's readout achieved, as counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PointCounts {
    /// Correct predictions on the fit, validation and test sides (0 when no
    /// readout was trained).
    pub correct: [u64; 3],
    /// Failed trajectories over the three sides.
    pub bad: u64,
}

/// The readout configuration of point `point` (its seed).
fn point_cfg(cfg: &TrainConfig, point: &Point) -> TrainConfig {
    TrainConfig {
        seed: point.seed,
        ..cfg.clone()
    }
}

/// Samples `range` of a side (labels included).
fn block(side: &Side, range: std::ops::Range<usize>) -> Side {
    side.subset(&range.collect::<Vec<_>>())
}

/// Samples per CPU block for `points` points of `f` features (`forced`: a
/// setting, for tests).
fn block_samples(points: usize, f: usize, forced: Option<usize>) -> usize {
    let auto = (BLOCK_BYTES / (points * f * 4).max(1)).max(1);
    forced.map_or(auto, |b| b.clamp(1, auto.max(1)))
}

fn bad_in(status: &[u8]) -> u64 {
    status.iter().filter(|&&s| s != 0).count() as u64
}

/// The CPU path over one batch of points (see the module docs).
pub fn cpu_points(
    kinetics: &Kinetics,
    sides: &Sides,
    points: &[Point],
    n_classes: usize,
    cfg: &TrainConfig,
    forced_block: Option<usize>,
) -> Result<Vec<PointCounts>> {
    let np = points.len();
    let f = sides.fit.n_features();
    let bs = block_samples(np, f, forced_block);
    let parallel = np == 1;
    let mut counts = vec![PointCounts::default(); np];
    let mut moments: Vec<Option<RidgeMoments>> = vec![None; np];
    let fit = &sides.fit;
    for r0 in (0..fit.n()).step_by(bs) {
        let blk = block(fit, r0..(r0 + bs).min(fit.n()));
        let feats = kinetics.run(&blk, points)?;
        let (nb, seqs) = (blk.n(), blk.encoded.seqs);
        for (p, c) in counts.iter_mut().enumerate() {
            c.bad += bad_in(&feats.status[p * seqs..(p + 1) * seqs]);
        }
        moments
            .par_iter_mut()
            .zip(&counts)
            .enumerate()
            .filter(|(_, (_, c))| c.bad == 0)
            .try_for_each(|(p, (m, _))| -> Result<()> {
                let x = &feats.w[p * nb * f..(p + 1) * nb * f];
                if m.is_none() {
                    *m = Some(RidgeMoments::new(f, n_classes, x[..f].to_vec())?);
                }
                m.as_mut().expect("set").accumulate(x, nb, &blk.y, parallel)
            })?;
    }
    let trained: Vec<Option<Trained>> = moments
        .par_iter()
        .zip(&counts)
        .zip(points)
        .map(|((m, c), point)| match m {
            Some(m) if c.bad == 0 => m.train(&point_cfg(cfg, point)).map(Some),
            _ => Ok(None),
        })
        .collect::<Result<_>>()?;
    for (si, side) in [&sides.fit, &sides.val, &sides.test]
        .into_iter()
        .enumerate()
    {
        for r0 in (0..side.n()).step_by(bs) {
            let blk = block(side, r0..(r0 + bs).min(side.n()));
            let feats = kinetics.run(&blk, points)?;
            let (nb, seqs) = (blk.n(), blk.encoded.seqs);
            counts
                .par_iter_mut()
                .zip(&trained)
                .enumerate()
                .for_each(|(p, (c, t))| {
                    if si > 0 {
                        c.bad += bad_in(&feats.status[p * seqs..(p + 1) * seqs]);
                    }
                    if let Some(t) = t
                        && c.bad == 0
                    {
                        let x = &feats.w[p * nb * f..(p + 1) * nb * f];
                        let pred = t.predict(x, nb);
                        c.correct[si] +=
                            pred.iter().zip(&blk.y).filter(|(a, b)| a == b).count() as u64;
                    }
                });
        }
    }
    Ok(counts)
}

fn inputs(side: &Side) -> SideInputs<'_> {
    SideInputs {
        x: &side.encoded.x,
        spp: side.encoded.seqs_per_sample,
        steps: side.encoded.steps,
        y: &side.y,
    }
}

/// The DDK parameters of `points` as the device takes them.
pub fn map_params(points: &[Point]) -> MapParams {
    let get = |p: &Point, i: usize| p.get(MAP_PARAMS[i].0).unwrap_or(MAP_PARAMS[i].1) as f32;
    MapParams {
        alpha: points.iter().map(|p| get(p, 0)).collect(),
        beta: points.iter().map(|p| get(p, 1)).collect(),
        w0: points.iter().map(|p| get(p, 2)).collect(),
    }
}

/// The GPU path over one batch of points (see the module docs): moments and
/// counts are all that cross the bus.
pub fn gpu_points(
    reducer: &GpuReducer,
    sides: &Sides,
    points: &[Point],
    n_classes: usize,
    cfg: &TrainConfig,
) -> Result<Vec<PointCounts>> {
    let params = map_params(points);
    let f = sides.fit.n_features();
    let g = f + n_classes;
    let mom = reducer.moments(&inputs(&sides.fit), &params, n_classes)?;
    let readouts: Vec<LinearReadout> = points
        .par_iter()
        .enumerate()
        .map(|(p, point)| {
            if mom.bad[p] > 0 {
                return Ok(LinearReadout::zeros(f, n_classes));
            }
            let m = RidgeMoments::from_augmented(
                f,
                n_classes,
                mom.shift[p * f..(p + 1) * f].to_vec(),
                &mom.augmented[p * g * g..(p + 1) * g * g],
            )?;
            LinearReadout::from_trained(&m.train(&point_cfg(cfg, point))?)
        })
        .collect::<Result<_>>()?;
    let arrays = stack_readouts(f, n_classes, &readouts);
    let mut counts: Vec<PointCounts> = mom
        .bad
        .iter()
        .map(|&bad| PointCounts {
            bad,
            ..Default::default()
        })
        .collect();
    for (si, side) in [&sides.fit, &sides.val, &sides.test]
        .into_iter()
        .enumerate()
    {
        let dc = reducer.forward(&inputs(side), &params, &arrays)?;
        for (p, c) in counts.iter_mut().enumerate() {
            c.correct[si] = dc.correct[p];
            if si > 0 {
                c.bad += dc.bad[p];
            }
        }
    }
    Ok(counts)
}

/// One linear readout per parameter set (or draw) stacked in the layout the
/// forward kernel binds ([`ReadoutArrays`]: `[sets, f]`, `[sets, f, c]`...).
pub fn stack_readouts(f: usize, c: usize, readouts: &[LinearReadout]) -> ReadoutArrays {
    ReadoutArrays {
        f,
        c,
        mean: readouts
            .iter()
            .flat_map(|r| r.mean.iter().copied())
            .collect(),
        scale: readouts
            .iter()
            .flat_map(|r| r.scale.iter().copied())
            .collect(),
        weights: readouts
            .iter()
            .flat_map(|r| r.weights.iter().copied())
            .collect(),
        bias: readouts
            .iter()
            .flat_map(|r| r.bias.iter().copied())
            .collect(),
    }
}
