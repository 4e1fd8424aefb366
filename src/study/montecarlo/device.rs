//! The device path of a batch of Monte Carlo draws: the readouts packed for
//! `shaders/mc_forward.wgsl` ([`pack`], one parameter vector per draw, the
//! conductance noise applied on the host), and the kernel's CPU twin
//! ([`forward_twin`], the same loop order in f32) that its parity tests
//! compare against. [`super::McEvaluator`] dispatches the kernel through
//! [`GpuReducer::mc_forward`](crate::engine::gpu::GpuReducer::mc_forward).

use super::conductance::Conductance;
use super::nonideal::read_noise;
use crate::engine::gpu::mc_forward::{BAD_PREDICTION, DrawCounts, DrawSteps, NetArrays};
use crate::readout::{Activation, Model, Trained};
use crate::rng::Stream;
use rayon::prelude::*;

/// The layer widths of `t` as the kernel sees them (a linear readout is one
/// layer).
pub fn widths(t: &Trained) -> Vec<usize> {
    match &t.model {
        Model::Net(n) => n.sizes.clone(),
        Model::Ridge(r) => vec![r.n_features, r.n_classes],
    }
}

/// Why `t` is not scored on the device (`None`: it is): a shape the kernel
/// cannot run, or one past the size it is trusted with
/// ([`NetArrays::untrusted`]).
pub fn unsupported(t: &Trained) -> Option<String> {
    let w = widths(t);
    NetArrays::unsupported(&w).or_else(|| NetArrays::untrusted(&w))
}

/// The parameters of `t` in the kernel's flat layout (a ridge readout's f64
/// weights rounded to f32).
fn flat(t: &Trained) -> Vec<f32> {
    match &t.model {
        Model::Net(n) => n.params.clone(),
        Model::Ridge(r) => r
            .weights
            .iter()
            .chain(&r.intercept)
            .map(|&v| v as f32)
            .collect(),
    }
}

/// `t` for the draws `draws` in the kernel's layout: each draw's weights
/// programmed by `conductance` (`Conductance::perturb`, as the host path
/// does), the standardiser as f32 mean and scale (`1 / std`, 0 for a dropped
/// feature), BatchNorm's running statistics as mean and `1 / sqrt(var + eps)`
/// in f32 (as `readout::Network` evaluates them).
pub fn pack(
    t: &Trained,
    conductance: Option<&Conductance>,
    stream: &Stream,
    draws: &[u32],
) -> NetArrays {
    let per_draw: Vec<Vec<f32>> = draws
        .par_iter()
        .map(|&d| match conductance {
            Some(c) => flat(&c.perturb(t, stream, d)),
            None => flat(t),
        })
        .collect();
    let (sigmoid, batch_norm) = match &t.model {
        Model::Net(n) => (
            n.activation == Activation::Sigmoid,
            n.batch_norm.as_ref().map(|bn| {
                (
                    bn.running_mean.clone(),
                    bn.running_var
                        .iter()
                        .map(|&v| 1.0 / (v + bn.eps).sqrt())
                        .collect(),
                )
            }),
        ),
        Model::Ridge(_) => (false, None),
    };
    NetArrays {
        sizes: widths(t),
        sigmoid,
        params: per_draw.concat(),
        standardizer: t.standardizer.as_ref().map(|s| {
            (
                s.mean.iter().map(|&m| m as f32).collect(),
                s.std
                    .iter()
                    .map(|&v| if v > 0.0 { (1.0 / v) as f32 } else { 0.0 })
                    .collect(),
            )
        }),
        batch_norm,
    }
}

/// The side a twin scores: `[draws, samples * spp, steps]` states and
/// `[draws, samples * spp]` engine statuses, as the kinetics left them.
pub struct TwinInputs<'a> {
    /// States.
    pub w: &'a [f32],
    /// Statuses (0: ok).
    pub status: &'a [u8],
    /// One label per sample.
    pub y: &'a [u32],
    /// Sequences per sample.
    pub spp: usize,
    /// T.
    pub steps: usize,
}

/// One draw's network evaluated on one sample's features (the kernel's loop
/// order); returns the scores.
fn scores(net: &NetArrays, params: &[f32], x: &[f32]) -> Vec<f32> {
    let layers = net.layers();
    let mut cur = x.to_vec();
    let mut off = 0;
    let mut bn_off = net
        .sizes
        .windows(2)
        .map(|w| w[0] * w[1] + w[1])
        .sum::<usize>();
    let mut unit = 0;
    for l in 1..=layers {
        let (n_in, n_out) = (net.sizes[l - 1], net.sizes[l]);
        let bias = off + n_in * n_out;
        let mut nxt = params[bias..bias + n_out].to_vec();
        for (j, &xj) in cur.iter().enumerate() {
            let wr = off + j * n_out;
            for (k, v) in nxt.iter_mut().enumerate() {
                *v += xj * params[wr + k];
            }
        }
        if l < layers {
            for (k, v) in nxt.iter_mut().enumerate() {
                let mut z = *v;
                if let Some((mean, invstd)) = &net.batch_norm {
                    let a = (z - mean[unit + k]) * invstd[unit + k];
                    z = params[bn_off + k] * a + params[bn_off + n_out + k];
                }
                *v = if net.sigmoid {
                    1.0 / (1.0 + (-z).exp())
                } else {
                    z.max(0.0)
                };
            }
            bn_off += 2 * n_out;
            unit += n_out;
        }
        off += n_in * n_out + n_out;
        cur = nxt;
    }
    cur
}

/// CPU twin of `shaders/mc_forward.wgsl` (see
/// [`crate::engine::gpu::mc_forward`]) over a whole side: the counts, with
/// every prediction when `steps.predictions`, and per (draw, sample) the gap
/// between the best and the second-best score (infinite for a failed
/// sample), which tells a parity test where f32 rounding may flip a class.
pub fn forward_twin(
    inputs: &TwinInputs<'_>,
    net: &NetArrays,
    steps: &DrawSteps,
) -> (DrawCounts, Vec<f32>) {
    let (spp, t) = (inputs.spp, inputs.steps);
    let n = inputs.y.len();
    let f = spp * t;
    let draws = net.draws();
    let np = net.n_params();
    let g = steps.groups.max(1);
    let stream = Stream::new(steps.seed);
    let pin = steps.cycle_noise.is_some_and(|c| c.sigma > 0.0);
    let per: Vec<(u64, u64, Vec<u32>, Vec<f32>)> = (0..draws)
        .into_par_iter()
        .map(|p| {
            let draw = steps.draw_offset + p as u32;
            let stuck = |gseq: usize| steps.stuck[p * g + gseq % g];
            let params = &net.params[p * np..(p + 1) * np];
            let (mut correct, mut failed) = (0u64, 0u64);
            let mut pred = Vec::with_capacity(n);
            let mut margin = Vec::with_capacity(n);
            let mut x = vec![0.0f32; f];
            for i in 0..n {
                let nbad = (0..spp)
                    .filter(|&q| {
                        let s = i * spp + q;
                        inputs.status[p * n * spp + s] != 0 && !(pin && stuck(s))
                    })
                    .count() as u64;
                if nbad > 0 {
                    failed += nbad;
                    pred.push(BAD_PREDICTION);
                    margin.push(f32::INFINITY);
                    continue;
                }
                let row = &inputs.w[(p * n * spp + i * spp) * t..(p * n * spp + (i + 1) * spp) * t];
                for (j, xj) in x.iter_mut().enumerate() {
                    let (q, k) = (j / t, j % t);
                    let gseq = i * spp + q;
                    let mut v = row[j];
                    if pin && stuck(gseq) {
                        v = steps.stuck_w;
                    }
                    if steps.read_sigma != 0.0 {
                        v += read_noise(
                            &stream,
                            draw,
                            gseq as u32,
                            k as u32,
                            steps.read_sigma as f64,
                        );
                    }
                    if let Some((mean, scale)) = &net.standardizer {
                        v = (v - mean[j]) * scale[j];
                    }
                    *xj = v;
                }
                let s = scores(net, params, &x);
                let mut best = 0;
                for k in 1..s.len() {
                    if s[k] > s[best] || s[best].is_nan() {
                        best = k;
                    }
                }
                let second = s
                    .iter()
                    .enumerate()
                    .filter(|&(k, _)| k != best)
                    .map(|(_, &v)| v)
                    .fold(f32::NEG_INFINITY, f32::max);
                margin.push(s[best] - second);
                correct += (best as u32 == inputs.y[i]) as u64;
                pred.push(best as u32);
            }
            (correct, failed, pred, margin)
        })
        .collect();
    let mut out = DrawCounts::default();
    let mut margins = Vec::with_capacity(draws * n);
    let mut preds = Vec::with_capacity(draws * n);
    for (c, b, p, m) in per {
        out.correct.push(c);
        out.failed.push(b);
        preds.extend(p);
        margins.extend(m);
    }
    out.predictions = steps.predictions.then_some(preds);
    (out, margins)
}
