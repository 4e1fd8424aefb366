//! The text network of the paper's AG News task, trained end to end through
//! the device: the forward pass runs the DDK map on a forward [`Engine`] (the
//! states stored), the backward pass runs its adjoint on a [`VjpEngine`].
//!
//! ```text
//! tokens [B, T] ─► Embedding(V, D) ─► min-max per sample into [0, 1]
//!   ─► DDK over the T tokens for each of the D dimensions (D devices per sample)
//!   ─► Linear(D, H) + tanh per token ─► max-pool over tokens ─► Linear(H, C)
//!   ─► softmax cross-entropy
//! ```
//!
//! The authors' model: gllspeed/DDK,
//! `DDK/text_classification/DDK-text-classification-pytorch-master/model.py`
//! (`RCNN` with `DDK_word_dim`: the embedding transposed so each dimension is a
//! sequence over the words, `w[0] = 1`, one scalar alpha and beta for the layer).
//!
//! Normalisation: the authors' `matrix_norm` takes the minimum and maximum of
//! the whole *batch* tensor, so a sample's features depend on which samples
//! share its batch (and on the batch size at evaluation). memkin takes them
//! over each sample's own `T x D` values (PAD positions included), so a
//! sample's prediction is a function of that sample alone. The gradient flows
//! through the minimum and the maximum too (to the embedding entries that
//! attain them), as autograd does.
//!
//! The baseline ([`TextNet::device`] false) is the same network without the
//! kinetics layer: the raw embeddings go to the per-token Linear (the
//! normalisation goes with the layer: in the authors' code it is part of it).
//!
//! Layouts (row-major): embedding `[V, D]` (row [`PAD`] fixed at zero), dense
//! parameters `W1 [D, H]`, `b1 [H]`, `W2 [H, C]`, `b2 [C]` in one slice. The
//! engine sees `B * D` sequences of `T` steps, sequence `b * D + d` being
//! dimension `d` of sample `b`.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::vocab::PAD;
use crate::batch::{Batch, DeviceParams, Features, Status};
use crate::engine::vjp::{Vjp, VjpEngine, VjpOptions};
use crate::engine::{Engine, RunOptions};
use crate::rng::{Rng, normal_pair};
use crate::{Error, Result};

/// The smallest alpha the training keeps.
pub const ALPHA_MIN: f64 = 0.01;
/// The smallest beta the training keeps.
pub const BETA_MIN: f64 = 1e-3;
/// Beta is kept at or below this fraction of `2 sqrt(alpha)`: the map stays
/// positive while `beta * x < 2 sqrt(alpha)` (DESIGN.md, the minimum of
/// `w + alpha / w`) and the inputs reach 1 after min-max normalisation.
pub const BETA_MARGIN: f64 = 0.95;

/// The shape of a text network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shape {
    /// Vocabulary size V (PAD and UNK included).
    pub vocab: usize,
    /// Embedding dimension D (= devices per sample).
    pub dim: usize,
    /// Tokens per sample T (= steps of each device).
    pub tokens: usize,
    /// Hidden width H of the per-token Linear.
    pub hidden: usize,
    /// Classes C.
    pub classes: usize,
}

impl Shape {
    /// The paper's AG News network: V 8000, D 300, T 64, H 128, C 4.
    pub const AGNEWS: Shape = Shape {
        vocab: 8000,
        dim: 300,
        tokens: 64,
        hidden: 128,
        classes: 4,
    };

    /// Length of the dense parameter slice.
    pub fn dense_len(&self) -> usize {
        self.dim * self.hidden + self.hidden + self.hidden * self.classes + self.classes
    }
}

/// The network's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TextNet {
    /// The shape.
    pub shape: Shape,
    /// Whether the kinetics layer (min-max + DDK) is present; false is the
    /// `--no-device` baseline.
    pub device: bool,
    /// Embedding `[V, D]`; row [`PAD`] stays zero.
    pub embedding: Vec<f32>,
    /// `W1 [D, H]`, `b1 [H]`, `W2 [H, C]`, `b2 [C]`.
    pub dense: Vec<f32>,
    /// Device alpha (scalar, shared by every device).
    pub alpha: f64,
    /// Device beta.
    pub beta: f64,
}

/// The gradient of the mean loss of one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grads {
    /// The embedding rows the batch used (PAD excluded), in order of first use.
    pub rows: Vec<usize>,
    /// dL/d(embedding row) for each of `rows`, `[rows.len(), D]`.
    pub embedding: Vec<f32>,
    /// dL/d(dense), the layout of [`TextNet::dense`].
    pub dense: Vec<f32>,
    /// dL/dalpha.
    pub alpha: f64,
    /// dL/dbeta.
    pub beta: f64,
}

/// The forward and reverse engines the kinetics layer runs on.
pub struct Engines<'a> {
    /// Forward: stores the states.
    pub forward: &'a dyn Engine,
    /// Reverse: gradients from the stored states.
    pub reverse: &'a dyn VjpEngine,
}

/// Per-batch buffers of a forward pass, kept for the backward pass and reused
/// across batches.
#[derive(Debug, Default)]
pub struct Cache {
    b: usize,
    tokens: Vec<u32>,
    /// Normalised inputs `[B, D, T]` (device) or raw embeddings (baseline).
    x: Vec<f32>,
    /// Per sample: (max - min, flat index of the min, of the max) in `[D, T]`.
    norm: Vec<(f32, usize, usize)>,
    /// DDK states `[B, D, T]`.
    states: Features,
    /// The Linear's input `[B * T, D]`.
    u: Vec<f32>,
    /// tanh activations `[B * T, H]`.
    a: Vec<f32>,
    /// Max-pooled `[B, H]` and the token attaining each maximum.
    pooled: Vec<f32>,
    argmax: Vec<u32>,
    /// Logits `[B, C]`.
    logits: Vec<f32>,
    vjp: Vjp,
}

impl Cache {
    /// The logits `[B, C]` of the last forward pass.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }
}

fn par(madds: usize) -> Par {
    if madds >= 1 << 22 && rayon::current_num_threads() > 1 {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

/// Clamps (alpha, beta) into the stable range (see [`BETA_MARGIN`]).
pub fn project(alpha: f64, beta: f64) -> (f64, f64) {
    let alpha = alpha.max(ALPHA_MIN);
    let beta = beta.clamp(BETA_MIN, BETA_MARGIN * 2.0 * alpha.sqrt());
    (alpha, beta)
}

/// Initial (alpha, beta): the authors' U(0.01, 1) each
/// (`nn.init.uniform_(.., 0.01, 1)`), redrawn from the same stream until the
/// pair is in the map's working regime: stable (`beta <= BETA_MARGIN * 2
/// sqrt(alpha)`, inputs up to 1) and `beta >= alpha`, i.e. the fixed point
/// `w* = alpha / (beta * 1/2)` for the mean input 1/2 at most 2. A smaller beta
/// lets the states grow like `sqrt(2 alpha k)` over the 64 tokens, which
/// saturates the tanh Linear after them: measured on AG News, the draws
/// (0.48, 0.033) and (0.32, 0.053) stayed at chance for 20 epochs while the
/// draws in this region learned (docs/text.md).
pub fn init_device(rng: &mut Rng) -> (f64, f64) {
    loop {
        let alpha = 0.01 + 0.99 * rng.next_f64();
        let beta = 0.01 + 0.99 * rng.next_f64();
        if beta >= alpha && beta <= BETA_MARGIN * 2.0 * alpha.sqrt() {
            return (alpha, beta);
        }
    }
}

impl TextNet {
    /// A network initialised as PyTorch does for the authors' model:
    /// embedding N(0, 1) (PAD row zero), Linear weights and biases
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), alpha and beta as [`init_device`].
    pub fn new(shape: Shape, device: bool, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let n = shape.vocab * shape.dim;
        let mut embedding = Vec::with_capacity(n + 1);
        while embedding.len() < n {
            let (a, b) = normal_pair(1.0 - rng.next_f64(), rng.next_f64());
            embedding.push(a as f32);
            embedding.push(b as f32);
        }
        embedding.truncate(n);
        embedding[PAD as usize * shape.dim..(PAD as usize + 1) * shape.dim].fill(0.0);
        let mut dense = Vec::with_capacity(shape.dense_len());
        for (fan_in, fan_out) in [(shape.dim, shape.hidden), (shape.hidden, shape.classes)] {
            let k = 1.0 / (fan_in as f64).sqrt();
            dense.extend(
                (0..fan_in * fan_out + fan_out).map(|_| ((2.0 * rng.next_f64() - 1.0) * k) as f32),
            );
        }
        let (alpha, beta) = init_device(&mut rng);
        TextNet {
            shape,
            device,
            embedding,
            dense,
            alpha,
            beta,
        }
    }

    /// Parameters as the paper counts them: embedding, the two Linear layers
    /// (weights and biases) and, with the device, alpha and beta.
    pub fn parameters(&self) -> usize {
        self.embedding.len() + self.dense.len() + if self.device { 2 } else { 0 }
    }

    /// Multiply-adds per sample of the Linear layers (weights only, as
    /// [`crate::readout::Network::operations`] counts): `T*D*H + H*C`.
    pub fn operations(&self) -> usize {
        let s = self.shape;
        s.tokens * s.dim * s.hidden + s.hidden * s.classes
    }

    /// Device updates per sample: `D` devices over `T - 1` steps.
    pub fn device_steps(&self) -> usize {
        if self.device {
            self.shape.dim * (self.shape.tokens - 1)
        } else {
            0
        }
    }

    fn split_dense(&self) -> (&[f32], &[f32], &[f32], &[f32]) {
        let s = self.shape;
        let (w1, rest) = self.dense.split_at(s.dim * s.hidden);
        let (b1, rest) = rest.split_at(s.hidden);
        let (w2, b2) = rest.split_at(s.hidden * s.classes);
        (w1, b1, w2, b2)
    }

    fn params(&self) -> Result<DeviceParams> {
        DeviceParams::scalar(&[(self.alpha, self.beta)], 1.0)
    }

    /// Forward pass of `tokens` (`[B, T]` ids, `B = tokens.len() / T`) into
    /// `cache`; the logits are in [`Cache::logits`]. An error when a device
    /// trajectory went non-positive or non-finite.
    pub fn forward(&self, eng: &Engines, tokens: &[u32], cache: &mut Cache) -> Result<()> {
        let s = self.shape;
        let (t, d, h, c) = (s.tokens, s.dim, s.hidden, s.classes);
        assert_eq!(tokens.len() % t, 0, "tokens are [B, T]");
        let b = tokens.len() / t;
        if let Some(&bad) = tokens.iter().find(|&&v| v as usize >= s.vocab) {
            return Err(Error::invalid(
                "token id",
                bad,
                format!("below the vocabulary size {}", s.vocab),
            ));
        }
        cache.b = b;
        cache.tokens.clear();
        cache.tokens.extend_from_slice(tokens);
        // Gather into [B, D, T] and normalise per sample.
        cache.x.resize(b * d * t, 0.0);
        cache.norm.resize(b, (1.0, 0, 0));
        let emb = &self.embedding;
        let device = self.device;
        cache
            .x
            .par_chunks_mut(d * t)
            .zip(cache.norm.par_iter_mut())
            .zip(tokens.par_chunks(t))
            .for_each(|((x, norm), toks)| {
                for (j, &tok) in toks.iter().enumerate() {
                    let row = &emb[tok as usize * d..(tok as usize + 1) * d];
                    for (k, &v) in row.iter().enumerate() {
                        x[k * t + j] = v;
                    }
                }
                if device {
                    *norm = min_max(x);
                }
            });
        // The Linear's input [B*T, D]: the states (device) or the raw embeddings.
        let src: &[f32] = if device {
            let params = self.params()?;
            let batch = Batch::new(&cache.x, b * d, t, &params)?;
            let opts = RunOptions::default();
            eng.forward.run_into(&batch, &opts, &mut cache.states)?;
            if let Some(i) = cache
                .states
                .status
                .iter()
                .position(|&v| Status::from_code(v) != Status::Ok)
            {
                return Err(Error::invalid(
                    "beta",
                    self.beta,
                    format!(
                        "below 2*sqrt(alpha) = {:.4} (alpha {}): device {} of sample {} went non-positive or non-finite",
                        2.0 * self.alpha.sqrt(),
                        self.alpha,
                        i % d,
                        i / d
                    ),
                ));
            }
            &cache.states.w
        } else {
            &cache.x
        };
        cache.u.resize(b * t * d, 0.0);
        cache
            .u
            .par_chunks_mut(t * d)
            .zip(src.par_chunks(d * t))
            .for_each(|(u, s)| {
                for k in 0..d {
                    for j in 0..t {
                        u[j * d + k] = s[k * t + j];
                    }
                }
            });
        let (w1, b1, w2, b2) = self.split_dense();
        cache.a.clear();
        for _ in 0..b * t {
            cache.a.extend_from_slice(b1);
        }
        matmul(
            MatMut::from_row_major_slice_mut(cache.a.as_mut_slice(), b * t, h),
            Accum::Add,
            MatRef::from_row_major_slice(&cache.u, b * t, d),
            MatRef::from_row_major_slice(w1, d, h),
            1.0f32,
            par(b * t * d * h),
        );
        cache.pooled.resize(b * h, 0.0);
        cache.argmax.resize(b * h, 0);
        cache
            .a
            .par_chunks_mut(t * h)
            .zip(
                cache
                    .pooled
                    .par_chunks_mut(h)
                    .zip(cache.argmax.par_chunks_mut(h)),
            )
            .for_each(|(a, (m, arg))| {
                a.iter_mut().for_each(|v| *v = v.tanh());
                m.fill(f32::NEG_INFINITY);
                for j in 0..t {
                    for k in 0..h {
                        if a[j * h + k] > m[k] {
                            m[k] = a[j * h + k];
                            arg[k] = j as u32;
                        }
                    }
                }
            });
        cache.logits.clear();
        for m in cache.pooled.chunks_exact(h) {
            for cc in 0..c {
                let mut z = b2[cc];
                for k in 0..h {
                    z += m[k] * w2[k * c + cc];
                }
                cache.logits.push(z);
            }
        }
        Ok(())
    }

    /// Backward pass after [`TextNet::forward`] on the same batch: the gradient
    /// of the mean softmax cross-entropy against `labels` into `grads`; returns
    /// that mean loss.
    pub fn backward(
        &self,
        eng: &Engines,
        labels: &[u32],
        cache: &mut Cache,
        grads: &mut Grads,
    ) -> Result<f64> {
        let s = self.shape;
        let (t, d, h, c) = (s.tokens, s.dim, s.hidden, s.classes);
        let b = cache.b;
        assert_eq!(labels.len(), b, "one label per sample");
        let (w1, _, w2, _) = self.split_dense();
        // dL/dlogits = (softmax - onehot) / B.
        let mut loss = 0.0f64;
        let mut dlog = cache.logits.clone();
        let inv_b = 1.0 / b as f32;
        for (row, &y) in dlog.chunks_exact_mut(c).zip(labels) {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            let zt = row[y as usize] - m;
            let mut sum = 0.0f32;
            for v in row.iter_mut() {
                *v = (*v - m).exp();
                sum += *v;
            }
            loss += (sum.ln() - zt) as f64;
            for v in row.iter_mut() {
                *v *= inv_b / sum;
            }
            row[y as usize] -= inv_b;
        }
        grads.dense.clear();
        grads.dense.resize(s.dense_len(), 0.0);
        let (gw1, rest) = grads.dense.split_at_mut(d * h);
        let (gb1, rest) = rest.split_at_mut(h);
        let (gw2, gb2) = rest.split_at_mut(h * c);
        // Output layer, and dL/d(pre-activation at the pooled token) [B, H].
        let mut dz = vec![0.0f32; b * h];
        for i in 0..b {
            let m = &cache.pooled[i * h..(i + 1) * h];
            let g = &dlog[i * c..(i + 1) * c];
            for k in 0..h {
                let mut dm = 0.0f32;
                for cc in 0..c {
                    gw2[k * c + cc] += m[k] * g[cc];
                    dm += g[cc] * w2[k * c + cc];
                }
                dz[i * h + k] = dm * (1.0 - m[k] * m[k]);
            }
            for cc in 0..c {
                gb2[cc] += g[cc];
            }
        }
        for i in 0..b {
            for k in 0..h {
                gb1[k] += dz[i * h + k];
            }
        }
        // dW1[d, h] = sum_b u[b, j*(b, h), d] dz[b, h]: only the pooled tokens
        // carry gradient. Rows of dW1 in parallel, each summed in sample order.
        let (u, argmax) = (&cache.u, &cache.argmax);
        gw1.par_chunks_mut(h).enumerate().for_each(|(k, row)| {
            for i in 0..b {
                for hh in 0..h {
                    let j = argmax[i * h + hh] as usize;
                    row[hh] += u[(i * t + j) * d + k] * dz[i * h + hh];
                }
            }
        });
        // dL/d(states) [B, D, T].
        let mut ds = vec![0.0f32; b * d * t];
        ds.par_chunks_mut(d * t).enumerate().for_each(|(i, ds)| {
            for hh in 0..h {
                let j = argmax[i * h + hh] as usize;
                let g = dz[i * h + hh];
                for k in 0..d {
                    ds[k * t + j] += g * w1[k * h + hh];
                }
            }
        });
        // Through the kinetics and the normalisation, to the embedding entries.
        let dx = if self.device {
            let params = self.params()?;
            let batch = Batch::new(&cache.x, b * d, t, &params)?;
            eng.reverse.vjp_into(
                &batch,
                &cache.states.w,
                &ds,
                &VjpOptions::default(),
                &mut cache.vjp,
            )?;
            grads.alpha = cache.vjp.grad_alpha[0];
            grads.beta = cache.vjp.grad_beta[0];
            let gx = &mut cache.vjp.grad_x;
            gx.par_chunks_mut(d * t)
                .zip(cache.x.par_chunks(d * t))
                .zip(cache.norm.par_iter())
                .for_each(|((g, x), &n)| min_max_backward(x, n, g));
            &cache.vjp.grad_x
        } else {
            grads.alpha = 0.0;
            grads.beta = 0.0;
            &ds
        };
        // Sparse embedding gradient: one row per distinct token (PAD excluded).
        grads.rows.clear();
        grads.embedding.clear();
        let mut slot = std::collections::HashMap::new();
        for (i, toks) in cache.tokens.chunks_exact(t).enumerate() {
            let g = &dx[i * d * t..(i + 1) * d * t];
            for (j, &tok) in toks.iter().enumerate() {
                if tok == PAD {
                    continue;
                }
                let r = *slot.entry(tok).or_insert_with(|| {
                    grads.rows.push(tok as usize);
                    grads.embedding.resize(grads.embedding.len() + d, 0.0);
                    grads.rows.len() - 1
                });
                let row = &mut grads.embedding[r * d..(r + 1) * d];
                for k in 0..d {
                    row[k] += g[k * t + j];
                }
            }
        }
        Ok(loss / b as f64)
    }

    /// Predicted classes and the mean loss of `tokens` (`[N, T]`) against
    /// `labels`, in batches of `batch` samples.
    pub fn evaluate(
        &self,
        eng: &Engines,
        tokens: &[u32],
        labels: &[u32],
        batch: usize,
    ) -> Result<(Vec<u32>, f64)> {
        let (t, c) = (self.shape.tokens, self.shape.classes);
        let mut cache = Cache::default();
        let mut pred = Vec::with_capacity(labels.len());
        let mut loss = 0.0f64;
        for (toks, ys) in tokens
            .chunks(batch.max(1) * t)
            .zip(labels.chunks(batch.max(1)))
        {
            self.forward(eng, toks, &mut cache)?;
            for (row, &y) in cache.logits.chunks_exact(c).zip(ys) {
                let m = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
                let sum: f64 = row.iter().map(|&v| ((v - m) as f64).exp()).sum();
                loss += sum.ln() - (row[y as usize] - m) as f64;
                pred.push(crate::readout::argmax_rows(row, c)[0]);
            }
        }
        Ok((pred, loss / labels.len().max(1) as f64))
    }
}

/// Normalises `x` in place into [0, 1]; returns (max - min, index of the
/// first minimum, of the first maximum). A constant `x` (range 0) becomes 0.
fn min_max(x: &mut [f32]) -> (f32, usize, usize) {
    let (mut lo, mut hi) = (0usize, 0usize);
    for (i, &v) in x.iter().enumerate() {
        if v < x[lo] {
            lo = i;
        }
        if v > x[hi] {
            hi = i;
        }
    }
    let (mn, r) = (x[lo], x[hi] - x[lo]);
    if r > 0.0 {
        let inv = 1.0 / r;
        x.iter_mut().for_each(|v| *v = (*v - mn) * inv);
    } else {
        x.fill(0.0);
    }
    (r, lo, hi)
}

/// Turns `g = dL/dx` of the normalised `x = (e - min) / r` into dL/de in place:
/// `g_i / r` for every entry, plus `sum_i g_i (x_i - 1) / r` at the minimum and
/// `-sum_i g_i x_i / r` at the maximum. Zero for a constant sample.
fn min_max_backward(x: &[f32], (r, lo, hi): (f32, usize, usize), g: &mut [f32]) {
    if r <= 0.0 {
        g.fill(0.0);
        return;
    }
    let (mut dmin, mut dmax) = (0.0f64, 0.0f64);
    for (&gi, &xi) in g.iter().zip(x) {
        dmin += gi as f64 * (xi as f64 - 1.0);
        dmax -= gi as f64 * xi as f64;
    }
    let inv = 1.0 / r;
    g.iter_mut().for_each(|v| *v *= inv);
    g[lo] += (dmin / r as f64) as f32;
    g[hi] += (dmax / r as f64) as f32;
}
