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
    /// All weights and biases, layer by layer (see the module docs); with
    /// batch normalisation, each hidden layer's scale (gamma) then shift
    /// (beta) follow the last layer's biases.
    pub params: Vec<f32>,
    /// BatchNorm1d after each hidden linear layer (before its activation), as
    /// PyTorch's `nn.BatchNorm1d`; `None`: no normalisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_norm: Option<BatchNorm>,
}

/// The running statistics and constants of the BatchNorm1d layers of a
/// [`Network`] (PyTorch's defaults: `eps = 1e-5`, `momentum = 0.1`).
///
/// In training mode a layer normalises its pre-activations `z` with the
/// batch's mean and biased variance, `y = gamma (z - mean) / sqrt(var + eps) +
/// beta`, and the running estimates move as `r = (1 - momentum) r + momentum
/// s` (the variance with Bessel's correction, as PyTorch does); in evaluation
/// the running estimates replace the batch's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm {
    /// Added to the variance before the square root.
    pub eps: f32,
    /// Weight of the newest batch in the running estimates.
    pub momentum: f32,
    /// Running means, the hidden layers' units concatenated.
    pub running_mean: Vec<f32>,
    /// Running (unbiased) variances, laid out as `running_mean`.
    pub running_var: Vec<f32>,
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
    /// Batch normalisation in training mode (batch statistics) rather than
    /// evaluation mode (running statistics).
    pub(crate) bn_train: bool,
    /// Per layer (hidden ones used): what batch normalisation keeps for the
    /// backward pass and the running statistics.
    bn: Vec<BnLayer>,
}

/// Batch-norm buffers of one hidden layer.
#[derive(Debug, Default, Clone)]
struct BnLayer {
    /// The normalised pre-activations `[b, n]`.
    xhat: Vec<f32>,
    /// `1 / sqrt(var + eps)` per unit, of the statistics used.
    invstd: Vec<f32>,
    /// The batch mean per unit (training mode).
    mean: Vec<f64>,
    /// The batch's biased variance per unit (training mode).
    var: Vec<f64>,
}

impl Workspace {
    /// Buffers for training steps: batch norm (if any) uses batch statistics.
    pub(crate) fn training() -> Self {
        Workspace {
            bn_train: true,
            ..Workspace::default()
        }
    }
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
            batch_norm: None,
        }
    }

    /// A network initialised as PyTorch's `nn.Linear` does by default: weights
    /// and biases uniform in `±1 / sqrt(fan_in)` (kaiming-uniform with `a =
    /// sqrt(5)`), drawn layer by layer, weights first.
    pub fn torch_default(sizes: &[usize], activation: Activation, rng: &mut Rng) -> Self {
        let mut params = Vec::new();
        for w in sizes.windows(2) {
            let (n_in, n_out) = (w[0], w[1]);
            let bound = 1.0 / (n_in as f64).sqrt();
            params.extend((0..n_in * n_out).map(|_| rng.uniform(-bound, bound) as f32));
            params.extend((0..n_out).map(|_| rng.uniform(-bound, bound) as f32));
        }
        Network {
            sizes: sizes.to_vec(),
            activation,
            params,
            batch_norm: None,
        }
    }

    /// Adds a BatchNorm1d after every hidden layer (PyTorch's initial state:
    /// gamma 1, beta 0, running mean 0, running variance 1, `eps = 1e-5`,
    /// `momentum = 0.1`). A network that has one is returned as it is.
    pub fn with_batch_norm(mut self) -> Self {
        if self.batch_norm.is_some() {
            return self;
        }
        let units: usize = self.sizes[1..self.sizes.len() - 1].iter().sum();
        for l in 1..self.n_layers() {
            let n = self.sizes[l];
            self.params.extend(std::iter::repeat_n(1.0f32, n));
            self.params.extend(std::iter::repeat_n(0.0f32, n));
        }
        self.batch_norm = Some(BatchNorm {
            eps: 1e-5,
            momentum: 0.1,
            running_mean: vec![0.0; units],
            running_var: vec![1.0; units],
        });
        self
    }

    /// Offsets of the batch-norm parameters of hidden layer `l` (1-based, `l <
    /// n_layers()`) in `params`: (gamma, beta, end), and the offset of its
    /// units in the running statistics. Only meaningful with batch norm.
    pub fn bn_range(&self, l: usize) -> ((usize, usize, usize), usize) {
        let (_, _, mut off) = self.layer_range(self.n_layers());
        let mut unit = 0;
        for k in 1..l {
            off += 2 * self.sizes[k];
            unit += self.sizes[k];
        }
        let n = self.sizes[l];
        ((off, off + n, off + 2 * n), unit)
    }

    /// Moves the running statistics towards those of the last training-mode
    /// [`Network::forward`] held in `ws` (nothing without batch norm, or after
    /// an evaluation-mode pass).
    pub(crate) fn update_bn_running(&mut self, ws: &Workspace, rows: usize) {
        let nl = self.n_layers();
        if !ws.bn_train || ws.bn.len() < nl {
            return;
        }
        let offs: Vec<usize> = (1..nl).map(|l| self.bn_range(l).1).collect();
        let Some(bn) = self.batch_norm.as_mut() else {
            return;
        };
        let m = bn.momentum as f64;
        let bessel = if rows > 1 {
            rows as f64 / (rows - 1) as f64
        } else {
            1.0
        };
        for l in 1..nl {
            let (mean, var) = (&ws.bn[l].mean, &ws.bn[l].var);
            let u = offs[l - 1];
            for j in 0..mean.len() {
                let rm = &mut bn.running_mean[u + j];
                *rm = ((1.0 - m) * *rm as f64 + m * mean[j]) as f32;
                let rv = &mut bn.running_var[u + j];
                *rv = ((1.0 - m) * *rv as f64 + m * var[j] * bessel) as f32;
            }
        }
    }

    /// Normalises the pre-activations `z` (`[b, n]`) of hidden layer `l` in
    /// place (`gamma zhat + beta`), keeping what the backward pass needs.
    fn bn_forward(&self, l: usize, z: &mut [f32], b: usize, train: bool, buf: &mut BnLayer) {
        let Some(bn) = &self.batch_norm else {
            return;
        };
        let n = self.sizes[l];
        let ((go, bo, end), unit) = self.bn_range(l);
        let (gamma, shift) = (&self.params[go..bo], &self.params[bo..end]);
        let (mean, invstd): (Vec<f64>, Vec<f32>) = if train {
            let mut mean = vec![0.0f64; n];
            for row in z.chunks_exact(n) {
                for (m, &v) in mean.iter_mut().zip(row) {
                    *m += v as f64;
                }
            }
            mean.iter_mut().for_each(|m| *m /= b as f64);
            let mut var = vec![0.0f64; n];
            for row in z.chunks_exact(n) {
                for ((s, &v), &m) in var.iter_mut().zip(row).zip(&mean) {
                    *s += (v as f64 - m) * (v as f64 - m);
                }
            }
            var.iter_mut().for_each(|s| *s /= b as f64);
            let invstd = var
                .iter()
                .map(|&v| (1.0 / (v + bn.eps as f64).sqrt()) as f32)
                .collect();
            buf.mean = mean.clone();
            buf.var = var;
            (mean, invstd)
        } else {
            let rm = &bn.running_mean[unit..unit + n];
            let rv = &bn.running_var[unit..unit + n];
            (
                rm.iter().map(|&v| v as f64).collect(),
                rv.iter().map(|&v| 1.0 / (v + bn.eps).sqrt()).collect(),
            )
        };
        let xhat = &mut buf.xhat;
        xhat.clear();
        xhat.resize(b * n, 0.0);
        for (row, hrow) in z.chunks_exact_mut(n).zip(xhat.chunks_exact_mut(n)) {
            for j in 0..n {
                let h = ((row[j] as f64 - mean[j]) as f32) * invstd[j];
                hrow[j] = h;
                row[j] = gamma[j] * h + shift[j];
            }
        }
        buf.invstd = invstd;
    }

    /// Turns `dy` = dL/d(batch-norm output) of hidden layer `l` into dL/dz in
    /// place and writes the gamma and beta gradients into `grad`.
    fn bn_backward(
        &self,
        l: usize,
        dy: &mut [f32],
        bufs: &[BnLayer],
        train: bool,
        grad: &mut [f32],
    ) {
        if self.batch_norm.is_none() {
            return;
        }
        let n = self.sizes[l];
        let b = dy.len() / n;
        let ((go, bo, end), _) = self.bn_range(l);
        let xhat = &bufs[l].xhat;
        let invstd = &bufs[l].invstd;
        let mut dgamma = vec![0.0f64; n];
        let mut dbeta = vec![0.0f64; n];
        for (drow, hrow) in dy.chunks_exact(n).zip(xhat.chunks_exact(n)) {
            for j in 0..n {
                dgamma[j] += (drow[j] * hrow[j]) as f64;
                dbeta[j] += drow[j] as f64;
            }
        }
        let gamma = &self.params[go..bo];
        for (drow, hrow) in dy.chunks_exact_mut(n).zip(xhat.chunks_exact(n)) {
            for j in 0..n {
                let k = gamma[j] * invstd[j];
                drow[j] = if train {
                    // d/dz of gamma (z - mean(z)) / sqrt(var(z) + eps) over the batch.
                    k * (drow[j]
                        - (dbeta[j] / b as f64) as f32
                        - hrow[j] * (dgamma[j] / b as f64) as f32)
                } else {
                    k * drow[j]
                };
            }
        }
        for j in 0..n {
            grad[go + j] = dgamma[j] as f32;
            grad[bo + j] = dbeta[j] as f32;
        }
        debug_assert_eq!(end, bo + n);
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
        if self.batch_norm.is_some() {
            ws.bn.resize(nl, BnLayer::default());
        }
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
                if self.batch_norm.is_some() {
                    self.bn_forward(l, out, b, ws.bn_train, &mut ws.bn[l]);
                }
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
                if self.batch_norm.is_some() {
                    self.bn_backward(l - 1, &mut lower[l - 1], &ws.bn, ws.bn_train, grad);
                }
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
        self.apply_decayed(opt, params, grad, lr, momentum, 0.0);
    }

    /// One update with PyTorch's `weight_decay`: `weight_decay * p` is added
    /// to every gradient (all parameters, biases included) before the
    /// optimiser sees it, the L2-into-gradient form of `torch.optim.SGD` and
    /// `torch.optim.Adam`. SGD keeps the velocity as `m = mu m - lr g`, `p +=
    /// m`, which is PyTorch's `v = mu v + g`, `p -= lr v` with `m = -lr v` for a
    /// constant learning rate.
    pub(crate) fn apply_decayed(
        &mut self,
        opt: Optimizer,
        params: &mut [f32],
        grad: &[f32],
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    ) {
        let decayed: Vec<f32>;
        let grad = if weight_decay != 0.0 {
            let wd = weight_decay as f32;
            decayed = grad
                .iter()
                .zip(params.iter())
                .map(|(&g, &p)| g + wd * p)
                .collect();
            &decayed[..]
        } else {
            grad
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn loss_of(net: &Network, x: &[f32], y: &[u32], train: bool) -> f64 {
        let mut ws = Workspace {
            bn_train: train,
            ..Workspace::default()
        };
        net.forward(x, y.len(), &mut ws);
        let mut g = vec![0.0; net.parameters()];
        net.backward(x, y, 0.0, &mut ws, &mut g, false)
    }

    fn bn_net() -> (Network, Vec<f32>, Vec<u32>) {
        let mut rng = Rng::new(7);
        let mut net =
            Network::torch_default(&[3, 4, 3], Activation::Relu, &mut rng).with_batch_norm();
        // Gammas and betas away from 1 and 0, running stats away from 0 and 1,
        // so every term of the gradient is exercised.
        let ((go, _, end), _) = net.bn_range(1);
        for (k, p) in net.params[go..end].iter_mut().enumerate() {
            *p = 0.5 + 0.1 * k as f32;
        }
        let bn = net.batch_norm.as_mut().unwrap();
        bn.running_mean = vec![0.1, -0.2, 0.3, 0.0];
        bn.running_var = vec![0.5, 1.5, 2.0, 0.8];
        let x: Vec<f32> = (0..5 * 3).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
        (net, x, vec![0, 2, 1, 1, 0])
    }

    /// Every parameter's gradient (weights, biases, gamma, beta), in training
    /// mode (batch statistics, so the mean and variance depend on the
    /// weights) and in evaluation mode, against central differences in f64
    /// of the f32 loss: step 1e-2 keeps the f32 rounding of the loss
    /// (~1e-7 relative) far below the 2e-3 tolerance while the O(h^2)
    /// truncation of a smooth loss stays ~1e-4 (no ReLU kink is crossed
    /// for this draw, checked by the agreement of both modes).
    #[test]
    fn batch_norm_gradients_match_finite_differences() {
        let (net, x, y) = bn_net();
        for train in [true, false] {
            let mut ws = Workspace {
                bn_train: train,
                ..Workspace::default()
            };
            net.forward(&x, y.len(), &mut ws);
            let mut g = vec![0.0; net.parameters()];
            net.backward(&x, &y, 0.0, &mut ws, &mut g, false);
            let h = 1e-2f32;
            for i in 0..net.parameters() {
                let mut p = net.clone();
                p.params[i] += h;
                let up = loss_of(&p, &x, &y, train);
                p.params[i] -= 2.0 * h;
                let down = loss_of(&p, &x, &y, train);
                let fd = (up - down) / (2.0 * h as f64);
                assert!(
                    (fd - g[i] as f64).abs() < 2e-3,
                    "train {train}, param {i}: backprop {} vs fd {fd}",
                    g[i]
                );
            }
        }
    }

    /// Training-mode normalisation by hand: two rows, one unit: mean 2, biased
    /// variance 1, so zhat = -/+1/sqrt(1 + 1e-5); the running statistics move
    /// by momentum 0.1 towards mean 2 and unbiased variance 2.
    #[test]
    fn batch_norm_forward_and_running_statistics_by_hand() {
        let mut net = Network {
            sizes: vec![1, 1, 2],
            activation: Activation::Relu,
            params: vec![1.0, 0.0, 1.0, -1.0, 0.0, 0.0],
            batch_norm: None,
        }
        .with_batch_norm();
        let ((go, bo, _), _) = net.bn_range(1);
        net.params[go] = 2.0;
        net.params[bo] = 0.5;
        let mut ws = Workspace::training();
        net.forward(&[1.0, 3.0], 2, &mut ws);
        let s = 1.0 / (1.0f32 + 1e-5).sqrt();
        // Hidden = relu(2 * (-/+ s) + 0.5); logits = (h, -h).
        let h = [(2.0 * -s + 0.5f32).max(0.0), 2.0 * s + 0.5];
        assert_eq!(ws.acts[2], [h[0], -h[0], h[1], -h[1]]);
        net.update_bn_running(&ws, 2);
        let bn = net.batch_norm.as_ref().unwrap();
        assert!((bn.running_mean[0] - 0.2).abs() < 1e-7);
        assert!((bn.running_var[0] - (0.9 + 0.1 * 2.0)).abs() < 1e-7);
        // Evaluation mode uses the running statistics.
        let logits = net.logits(&[1.0], 1);
        let z = (1.0 - 0.2) / (1.1f32 + 1e-5).sqrt();
        assert!((logits[0] - (2.0 * z + 0.5)).abs() < 1e-6);
    }

    /// SGD with momentum 0.5, lr 0.1, weight decay 0.1, gradient 1 on p = 1:
    /// PyTorch's v1 = g + wd p = 1.1, p1 = 1 - 0.11 = 0.89; v2 = 0.5 * 1.1 +
    /// (1 + 0.089) = 1.639, p2 = 0.89 - 0.1639 = 0.7261.
    #[test]
    fn sgd_momentum_and_weight_decay_by_hand() {
        let mut st = OptState::new(1);
        let mut p = [1.0f32];
        st.apply_decayed(Optimizer::Sgd, &mut p, &[1.0], 0.1, 0.5, 0.1);
        assert!((p[0] - 0.89).abs() < 1e-6, "{}", p[0]);
        st.apply_decayed(Optimizer::Sgd, &mut p, &[1.0], 0.1, 0.5, 0.1);
        assert!((p[0] - 0.7261).abs() < 1e-6, "{}", p[0]);
        // Without decay the plain update is unchanged: 1 - 0.1, then - 0.15.
        let mut st = OptState::new(1);
        let mut p = [1.0f32];
        st.apply(Optimizer::Sgd, &mut p, &[1.0], 0.1, 0.5);
        st.apply(Optimizer::Sgd, &mut p, &[1.0], 0.1, 0.5);
        assert!((p[0] - 0.75).abs() < 1e-6, "{}", p[0]);
    }

    /// Adam's first step moves every parameter by lr * sign(g) (bias
    /// corrections cancel); weight decay enters the gradient, so on p = 1
    /// with g = -0.05 and wd = 0.1 the decayed gradient is +0.05 and p moves
    /// down by lr, where without decay it moves up.
    #[test]
    fn adam_weight_decay_enters_the_gradient() {
        let mut p = [1.0f32];
        OptState::new(1).apply_decayed(Optimizer::Adam, &mut p, &[-0.05], 0.01, 0.0, 0.1);
        assert!((p[0] - 0.99).abs() < 1e-6, "{}", p[0]);
        let mut p = [1.0f32];
        OptState::new(1).apply_decayed(Optimizer::Adam, &mut p, &[-0.05], 0.01, 0.0, 0.0);
        assert!((p[0] - 1.01).abs() < 1e-6, "{}", p[0]);
    }

    #[test]
    fn torch_default_init_bounds() {
        let net = Network::torch_default(&[16, 4, 2], Activation::Sigmoid, &mut Rng::new(1));
        let (w, b, end) = net.layer_range(1);
        assert!(net.params[w..end].iter().all(|v| v.abs() <= 0.25));
        assert!(
            net.params[b..end].iter().any(|&v| v != 0.0),
            "biases drawn too"
        );
        let (w2, _, e2) = net.layer_range(2);
        assert!(net.params[w2..e2].iter().all(|v| v.abs() <= 0.5));
    }
}
