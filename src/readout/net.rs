//! Dense feed-forward networks with a softmax cross-entropy output: softmax
//! regression is the network with no hidden layer, the MLP has one or more.
//!
//! Parameters live in one flat `Vec<f32>` (per layer: the `[n_in, n_out]`
//! row-major weights, then the `n_out` biases), so optimisers, early-stopping
//! snapshots and serialisation handle one slice. Matrix products go through
//! faer; faer parallelises a product over blocks of its *output* and never
//! splits the inner (summed) dimension, so results do not depend on the thread
//! count (checked by an integration test).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Products below this many multiply-adds run on one thread: splitting them
/// costs more in synchronisation than it saves. A 64-row MNIST batch
/// (64 x 784 x 48 = 2.4M) stays serial: on 2 busy cores serial ran 9 ms per
/// 2000 rows against 15 ms split; 1024-row evaluation chunks are split.
const PAR_MIN_MADDS: usize = 1 << 22;

/// Rows evaluated at a time by [`Network::logits`].
const EVAL_ROWS: usize = 1024;

fn par(madds: usize) -> Par {
    if madds >= PAR_MIN_MADDS && rayon::current_num_threads() > 1 {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

/// Hidden-layer nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `1 / (1 + exp(-z))`.
    Sigmoid,
    /// `max(0, z)`.
    Relu,
}

impl Activation {
    fn apply(self, z: &mut [f32]) {
        match self {
            Activation::Sigmoid => z.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            Activation::Relu => z.iter_mut().for_each(|v| *v = v.max(0.0)),
        }
    }

    /// Multiplies `delta` by the derivative, expressed through the activation
    /// output `a` (sigmoid: a (1 - a); relu: 1 where a > 0).
    fn backprop(self, a: &[f32], delta: &mut [f32]) {
        match self {
            Activation::Sigmoid => {
                for (d, &a) in delta.iter_mut().zip(a) {
                    *d *= a * (1.0 - a);
                }
            }
            Activation::Relu => {
                for (d, &a) in delta.iter_mut().zip(a) {
                    if a <= 0.0 {
                        *d = 0.0;
                    }
                }
            }
        }
    }
}

/// A dense network `sizes[0] -> sizes[1] -> ... -> sizes[L]` whose last layer
/// gives logits for a softmax.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// Layer widths, inputs first, classes last.
    pub sizes: Vec<usize>,
    /// Nonlinearity of the hidden layers (the output is linear).
    pub activation: Activation,
    /// All weights and biases, layer by layer (see the module docs).
    pub params: Vec<f32>,
}

/// Per-batch buffers, reused across steps so training does not allocate.
#[derive(Debug, Default, Clone)]
pub(crate) struct Workspace {
    /// `acts[l]`, l >= 1: output of layer l (after the activation; logits at L).
    acts: Vec<Vec<f32>>,
    /// `deltas[l]`: dL/d(pre-activation of layer l).
    deltas: Vec<Vec<f32>>,
    /// dL/d(input), when asked for.
    pub(crate) dx: Vec<f32>,
}

impl Network {
    /// A network with weights drawn as scikit-learn's MLP does (uniform in
    /// `±sqrt(k / (fan_in + fan_out))`, k = 2 for sigmoid, 6 otherwise) and zero
    /// biases.
    pub fn new(sizes: &[usize], activation: Activation, rng: &mut Rng) -> Self {
        let mut params = Vec::new();
        for w in sizes.windows(2) {
            let (n_in, n_out) = (w[0], w[1]);
            let k = if activation == Activation::Sigmoid {
                2.0
            } else {
                6.0
            };
            let bound = (k / (n_in + n_out) as f64).sqrt();
            params.extend((0..n_in * n_out).map(|_| rng.uniform(-bound, bound) as f32));
            params.extend(std::iter::repeat_n(0.0f32, n_out));
        }
        Network {
            sizes: sizes.to_vec(),
            activation,
            params,
        }
    }

    /// Number of layers with weights.
    pub fn n_layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// Number of input features.
    pub fn n_inputs(&self) -> usize {
        self.sizes[0]
    }

    /// Number of classes.
    pub fn n_outputs(&self) -> usize {
        *self.sizes.last().expect("a network has at least 2 sizes")
    }

    /// Offsets of layer `l` (1-based) in `params`: (weights, biases, end).
    pub fn layer_range(&self, l: usize) -> (usize, usize, usize) {
        let mut off = 0;
        for k in 1..l {
            off += self.sizes[k - 1] * self.sizes[k] + self.sizes[k];
        }
        let b = off + self.sizes[l - 1] * self.sizes[l];
        (off, b, b + self.sizes[l])
    }

    /// Weights plus biases.
    pub fn parameters(&self) -> usize {
        self.params.len()
    }

    /// Multiply-adds per sample, counted as the paper does (weights only):
    /// 784-48-10 gives 784*48 + 48*10.
    pub fn operations(&self) -> usize {
        self.sizes.windows(2).map(|w| w[0] * w[1]).sum()
    }

    /// Sum of squared weights (biases excluded): the L2 penalty is
    /// `l2 / 2 * weight_sq_norm()`.
    pub fn weight_sq_norm(&self) -> f64 {
        (1..=self.n_layers())
            .map(|l| {
                let (w, b, _) = self.layer_range(l);
                self.params[w..b]
                    .iter()
                    .map(|&v| (v as f64) * (v as f64))
                    .sum::<f64>()
            })
            .sum()
    }

    /// Forward pass of `b` rows of (already standardised) `x` into `ws`.
    pub(crate) fn forward(&self, x: &[f32], b: usize, ws: &mut Workspace) {
        let nl = self.n_layers();
        ws.acts.resize(nl + 1, Vec::new());
        for l in 1..=nl {
            let (n_in, n_out) = (self.sizes[l - 1], self.sizes[l]);
            let (wo, bo, end) = self.layer_range(l);
            let (before, after) = ws.acts.split_at_mut(l);
            let input: &[f32] = if l == 1 { x } else { &before[l - 1] };
            let out = &mut after[0];
            out.clear();
            for _ in 0..b {
                out.extend_from_slice(&self.params[bo..end]);
            }
            matmul(
                MatMut::from_row_major_slice_mut(out.as_mut_slice(), b, n_out),
                Accum::Add,
                MatRef::from_row_major_slice(input, b, n_in),
                MatRef::from_row_major_slice(&self.params[wo..bo], n_in, n_out),
                1.0f32,
                par(b * n_in * n_out),
            );
            if l < nl {
                self.activation.apply(out);
            }
        }
    }

    /// Logits `[n, classes]` for `n` rows of standardised `x`.
    pub fn logits(&self, x: &[f32], n: usize) -> Vec<f32> {
        let f = self.n_inputs();
        assert_eq!(
            x.len(),
            n * f,
            "Network: x has {} values, expected {n} * {f}",
            x.len()
        );
        let mut out = Vec::with_capacity(n * self.n_outputs());
        let mut ws = Workspace::default();
        for chunk in x.chunks(EVAL_ROWS * f) {
            self.forward(chunk, chunk.len() / f, &mut ws);
            out.extend_from_slice(&ws.acts[self.n_layers()]);
        }
        out
    }

    /// Backward pass after [`Network::forward`] on the same `x`: writes the
    /// gradient of `mean cross-entropy + l2/2 |W|^2` into `grad` (same layout
    /// as `params`), fills `ws.dx` with dL/dx when `want_dx`, and returns the
    /// mean cross-entropy.
    pub(crate) fn backward(
        &self,
        x: &[f32],
        y: &[u32],
        l2: f32,
        ws: &mut Workspace,
        grad: &mut [f32],
        want_dx: bool,
    ) -> f64 {
        let nl = self.n_layers();
        let b = y.len();
        let c = self.n_outputs();
        ws.deltas.resize(nl + 1, Vec::new());
        // Softmax cross-entropy: delta = (softmax(z) - onehot(y)) / b.
        let mut loss = 0.0f64;
        let delta = &mut ws.deltas[nl];
        delta.clear();
        delta.extend_from_slice(&ws.acts[nl]);
        let inv_b = 1.0 / b as f32;
        for (row, &t) in delta.chunks_exact_mut(c).zip(y) {
            let t = t as usize;
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            let zt = row[t] - m;
            let mut s = 0.0f32;
            for v in row.iter_mut() {
                *v = (*v - m).exp();
                s += *v;
            }
            // -log p_t = log(sum exp(z - m)) - (z_t - m).
            loss += (s.ln() - zt) as f64;
            let inv_s = 1.0 / s;
            for v in row.iter_mut() {
                *v *= inv_s * inv_b;
            }
            row[t] -= inv_b;
        }
        for l in (1..=nl).rev() {
            let (n_in, n_out) = (self.sizes[l - 1], self.sizes[l]);
            let (wo, bo, end) = self.layer_range(l);
            let input: &[f32] = if l == 1 { x } else { &ws.acts[l - 1] };
            let (lower, upper) = ws.deltas.split_at_mut(l);
            let delta = &upper[0];
            let (gw, gb) = grad[wo..end].split_at_mut(bo - wo);
            matmul(
                MatMut::from_row_major_slice_mut(gw, n_in, n_out),
                Accum::Replace,
                MatRef::from_row_major_slice(input, b, n_in).transpose(),
                MatRef::from_row_major_slice(delta, b, n_out),
                1.0f32,
                par(b * n_in * n_out),
            );
            if l2 != 0.0 {
                for (g, &w) in gw.iter_mut().zip(&self.params[wo..bo]) {
                    *g += l2 * w;
                }
            }
            gb.fill(0.0);
            for row in delta.chunks_exact(n_out) {
                for (g, &d) in gb.iter_mut().zip(row) {
                    *g += d;
                }
            }
            if l == 1 && !want_dx {
                break;
            }
            let dst = if l == 1 {
                &mut ws.dx
            } else {
                &mut lower[l - 1]
            };
            dst.clear();
            dst.resize(b * n_in, 0.0);
            matmul(
                MatMut::from_row_major_slice_mut(dst.as_mut_slice(), b, n_in),
                Accum::Replace,
                MatRef::from_row_major_slice(delta, b, n_out),
                MatRef::from_row_major_slice(&self.params[wo..bo], n_in, n_out).transpose(),
                1.0f32,
                par(b * n_in * n_out),
            );
            if l > 1 {
                self.activation.backprop(&ws.acts[l - 1], &mut lower[l - 1]);
            }
        }
        loss / b as f64
    }

    /// Mean cross-entropy of `n` standardised rows (for evaluation).
    pub(crate) fn loss_and_predictions(&self, x: &[f32], y: &[u32]) -> (f64, Vec<u32>) {
        let c = self.n_outputs();
        let logits = self.logits(x, y.len());
        let mut loss = 0.0f64;
        let mut pred = Vec::with_capacity(y.len());
        for (row, &t) in logits.chunks_exact(c).zip(y) {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            let s: f64 = row.iter().map(|&v| ((v - m) as f64).exp()).sum();
            loss += s.ln() - (row[t as usize] - m) as f64;
            pred.push(super::metrics::argmax_rows(row, c)[0]);
        }
        (loss / y.len().max(1) as f64, pred)
    }
}

/// Gradient-descent optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// Adam (Kingma & Ba) with beta1 = 0.9, beta2 = 0.999, eps = 1e-8.
    Adam,
    /// Stochastic gradient descent with (heavy-ball) momentum.
    Sgd,
}

/// Optimiser state: first/second moments (Adam) or velocity (SGD).
#[derive(Debug, Clone)]
pub(crate) struct OptState {
    m: Vec<f32>,
    v: Vec<f32>,
    t: u64,
}

impl OptState {
    pub(crate) fn new(n: usize) -> Self {
        OptState {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    pub(crate) fn apply(
        &mut self,
        opt: Optimizer,
        params: &mut [f32],
        grad: &[f32],
        lr: f64,
        momentum: f64,
    ) {
        self.t += 1;
        match opt {
            Optimizer::Adam => {
                let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
                let c1 = 1.0 - 0.9f64.powf(self.t as f64);
                let c2 = 1.0 - 0.999f64.powf(self.t as f64);
                // lr * mhat / (sqrt(vhat) + eps), with the corrections folded in.
                let step = (lr * c2.sqrt() / c1) as f32;
                let eps_hat = (eps as f64 * c2.sqrt()) as f32;
                // Zipped iterators (no bounds checks) so the loop vectorises;
                // pulp compiles it for the widest SIMD the CPU has (sqrt and
                // division are correctly rounded, so every width gives the
                // same bits).
                let (m, v) = (&mut self.m, &mut self.v);
                pulp::Arch::new().dispatch(
                    #[inline(always)]
                    || {
                        for (((p, &g), m), v) in params
                            .iter_mut()
                            .zip(grad)
                            .zip(m.iter_mut())
                            .zip(v.iter_mut())
                        {
                            *m = b1 * *m + (1.0 - b1) * g;
                            *v = b2 * *v + (1.0 - b2) * g * g;
                            *p -= step * *m / (v.sqrt() + eps_hat);
                        }
                    },
                );
            }
            Optimizer::Sgd => {
                let (lr, mu) = (lr as f32, momentum as f32);
                for ((p, &g), m) in params.iter_mut().zip(grad).zip(self.m.iter_mut()) {
                    *m = mu * *m - lr * g;
                    *p += *m;
                }
            }
        }
    }
}
