//! Training the text network: Adam (the readout's, [`crate::readout`]'s
//! `OptState`; lazy on the embedding rows a batch uses), mini-batches,
//! early stopping on a validation side carved from the training split, and
//! the seeded stratified splits of `memkin run --dataset agnews`.
//!
//! The authors (gllspeed/DDK,
//! `DDK/text_classification/DDK-text-classification-pytorch-master/trainer.py`,
//! `main.py`) train 20 epochs with Adam at lr 1e-3, batch 64, and keep the
//! epoch of best validation F1; memkin keeps the epoch of best validation
//! accuracy and stops after `patience` epochs without improvement.

use serde::Serialize;

use super::TextData;
use super::net::{Cache, Engines, Grads, Shape, TextNet, project};
use super::vocab::Vocab;
use crate::readout::{OptState, Optimizer, confusion_matrix, stratified_split};
use crate::rng::{Rng, splitmix64_mix};
use crate::{Error, Result};

/// Settings of one text run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Vocabulary size, PAD and UNK included (8000).
    pub vocab: usize,
    /// Embedding dimension (300).
    pub dim: usize,
    /// Tokens per sample (64).
    pub tokens: usize,
    /// Hidden width (128).
    pub hidden: usize,
    /// With the kinetics layer (false: the `--no-device` baseline).
    pub device: bool,
    /// Most epochs (20).
    pub epochs: usize,
    /// Epochs without a better validation accuracy before stopping (0: never).
    pub patience: usize,
    /// Mini-batch size (64).
    pub batch: usize,
    /// Adam learning rate of every parameter, alpha and beta included, as the
    /// authors' one Adam (1e-3).
    pub lr: f64,
    /// Fraction of the samples held out for test in each split (0.2).
    pub test_fraction: f64,
    /// Fraction of the training split held out for validation (0.1).
    pub val_fraction: f64,
    /// Use at most this many training samples (stratified), all when `None`.
    pub train_subset: Option<usize>,
    /// Seed of splits, initialisation and shuffling.
    pub seed: u64,
    /// Samples per evaluation batch.
    pub eval_batch: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            vocab: 8000,
            dim: 300,
            tokens: 64,
            hidden: 128,
            device: true,
            epochs: 20,
            patience: 5,
            batch: 64,
            lr: 1e-3,
            test_fraction: 0.2,
            val_fraction: 0.1,
            train_subset: None,
            seed: 0,
            eval_batch: 256,
        }
    }
}

impl Settings {
    /// Checks the ranges (one-line errors naming the flag).
    pub fn check(&self) -> Result<()> {
        let pos = |field: &str, v: usize| {
            if v == 0 {
                Err(Error::invalid(field, v, "at least 1"))
            } else {
                Ok(())
            }
        };
        pos("--epochs", self.epochs)?;
        pos("--batch-size", self.batch)?;
        pos("vocabulary size", self.vocab.saturating_sub(2))?;
        pos("embedding dimension", self.dim)?;
        pos("hidden width", self.hidden)?;
        if self.tokens < 2 {
            return Err(Error::invalid(
                "tokens per sample",
                self.tokens,
                "at least 2",
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::invalid("--lr", self.lr, "finite and > 0"));
        }
        for (f, v) in [
            ("test fraction", self.test_fraction),
            ("validation fraction", self.val_fraction),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return Err(Error::invalid(f, v, "in (0, 1)"));
            }
        }
        if let Some(n) = self.train_subset.filter(|&n| n < 2) {
            return Err(Error::invalid("--train-subset", n, "at least 2"));
        }
        Ok(())
    }
}

/// One epoch of training.
#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Validation loss and accuracy after the epoch.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_accuracy: f64,
    /// Device alpha and beta after the epoch.
    pub alpha: f64,
    /// Device beta after the epoch.
    pub beta: f64,
}

/// Samples encoded as token ids.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// `[N, T]` token ids.
    pub tokens: Vec<u32>,
    /// `[N]` labels.
    pub labels: Vec<u32>,
}

impl Encoded {
    /// The rows of `data` at `rows`, encoded with `vocab` to `t` tokens each.
    pub fn new(data: &TextData, rows: &[usize], vocab: &Vocab, t: usize) -> Self {
        let mut tokens = Vec::with_capacity(rows.len() * t);
        for &r in rows {
            tokens.extend(vocab.encode(&data.texts[r], t));
        }
        Encoded {
            tokens,
            labels: rows.iter().map(|&r| data.labels[r]).collect(),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Trains `net` on `fit`, evaluating `val` after every epoch, and leaves it at
/// the epoch of best validation accuracy. `tick` sees every epoch.
pub fn train(
    net: &mut TextNet,
    eng: &Engines,
    fit: &Encoded,
    val: &Encoded,
    s: &Settings,
    tick: &mut dyn FnMut(&EpochLog),
) -> Result<Vec<EpochLog>> {
    let t = net.shape.tokens;
    let d = net.shape.dim;
    let mut emb_opt = OptState::new(net.embedding.len());
    let mut emb_grad = vec![0.0f32; net.embedding.len()];
    let mut dense_opt = OptState::new(net.dense.len());
    let mut dev_opt = OptState::new(2);
    let mut cache = Cache::default();
    let mut grads = Grads::default();
    let mut order: Vec<usize> = (0..fit.len()).collect();
    let mut toks = Vec::with_capacity(s.batch * t);
    let mut ys = Vec::with_capacity(s.batch);
    let mut history = Vec::new();
    let mut best: Option<(f64, TextNet)> = None;
    let mut since_best = 0;
    for epoch in 1..=s.epochs {
        Rng::new(splitmix64_mix(
            s.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9),
        ))
        .shuffle(&mut order);
        let mut loss_sum = 0.0;
        let mut batches = 0;
        for chunk in order.chunks(s.batch) {
            toks.clear();
            ys.clear();
            for &i in chunk {
                toks.extend_from_slice(&fit.tokens[i * t..(i + 1) * t]);
                ys.push(fit.labels[i]);
            }
            net.forward(eng, &toks, &mut cache)?;
            loss_sum += net.backward(eng, &ys, &mut cache, &mut grads)?;
            batches += 1;
            // Dense Adam on the embedding, as torch.optim.Adam on the authors'
            // nn.Embedding: every row's moments decay each step, so a row keeps
            // moving for a while after its word was seen. The gradient is
            // scattered from the sparse rows and cleared again.
            for (i, &r) in grads.rows.iter().enumerate() {
                emb_grad[r * d..(r + 1) * d].copy_from_slice(&grads.embedding[i * d..(i + 1) * d]);
            }
            emb_opt.apply(Optimizer::Adam, &mut net.embedding, &emb_grad, s.lr, 0.0);
            for &r in &grads.rows {
                emb_grad[r * d..(r + 1) * d].fill(0.0);
            }
            dense_opt.apply(Optimizer::Adam, &mut net.dense, &grads.dense, s.lr, 0.0);
            if net.device {
                let mut p = [net.alpha as f32, net.beta as f32];
                dev_opt.apply(
                    Optimizer::Adam,
                    &mut p,
                    &[grads.alpha as f32, grads.beta as f32],
                    s.lr,
                    0.0,
                );
                (net.alpha, net.beta) = project(p[0] as f64, p[1] as f64);
            }
        }
        let (pred, val_loss) = net.evaluate(eng, &val.tokens, &val.labels, s.eval_batch)?;
        let val_accuracy = accuracy(&pred, &val.labels);
        let log = EpochLog {
            epoch,
            train_loss: loss_sum / batches.max(1) as f64,
            val_loss,
            val_accuracy,
            alpha: net.alpha,
            beta: net.beta,
        };
        tick(&log);
        history.push(log);
        if best.as_ref().is_none_or(|(b, _)| val_accuracy > *b) {
            best = Some((val_accuracy, net.clone()));
            since_best = 0;
        } else {
            since_best += 1;
            if s.patience > 0 && since_best >= s.patience {
                break;
            }
        }
    }
    if let Some((_, b)) = best {
        *net = b;
    }
    Ok(history)
}

fn accuracy(pred: &[u32], y: &[u32]) -> f64 {
    pred.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len().max(1) as f64
}

/// The outcome of one split.
#[derive(Debug, Clone, Serialize)]
pub struct SplitResult {
    /// 0-based split index.
    pub split: usize,
    /// Training samples (validation excluded), validation, test.
    pub n_fit: usize,
    /// Validation samples.
    pub n_val: usize,
    /// Test samples.
    pub n_test: usize,
    /// Vocabulary entries (PAD and UNK included).
    pub vocab: usize,
    /// Fraction of the test split's (non-PAD) tokens that are UNK.
    pub test_unk_fraction: f64,
    /// Test accuracy of the network at its best validation epoch.
    pub test_accuracy: f64,
    /// Its validation accuracy.
    pub val_accuracy: f64,
    /// The chosen epoch (1-based) and the epochs run.
    pub best_epoch: usize,
    /// Epochs run.
    pub epochs_run: usize,
    /// Learned alpha, beta (initial values in `alpha0`, `beta0`).
    pub alpha: f64,
    /// Learned beta.
    pub beta: f64,
    /// Initial alpha.
    pub alpha0: f64,
    /// Initial beta.
    pub beta0: f64,
    /// Confusion matrix of the test split, `[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    /// Per-epoch log.
    pub history: Vec<EpochLog>,
    /// Parameters and per-sample operations of the network.
    pub parameters: usize,
    /// Multiply-adds per sample of the Linear layers.
    pub operations: usize,
    /// Device updates per sample.
    pub device_steps: usize,
}

/// The seed of split `r` under `seed`.
pub fn split_seed(seed: u64, r: usize) -> u64 {
    splitmix64_mix(seed.wrapping_add(0x5EED_0000 + r as u64))
}

/// The rows and the vocabulary of one split.
#[derive(Debug, Clone)]
pub struct SplitRows {
    /// Training rows (validation excluded).
    pub fit: Vec<usize>,
    /// Validation rows (carved from the training side).
    pub val: Vec<usize>,
    /// Test rows.
    pub test: Vec<usize>,
    /// The vocabulary of the training side (fit and validation) alone.
    pub vocab: Vocab,
}

/// Split `r` of `data`: a stratified `test_fraction` test side, the
/// vocabulary from the training side alone, a stratified `val_fraction`
/// validation side from the training side.
pub fn split_rows(data: &TextData, s: &Settings, r: usize) -> Result<SplitRows> {
    let seed = split_seed(s.seed, r);
    let classes = data.classes.len();
    let (mut train_rows, test) = stratified_split(&data.labels, classes, s.test_fraction, seed);
    if let Some(n) = s.train_subset.filter(|&n| n < train_rows.len()) {
        let labels: Vec<u32> = train_rows.iter().map(|&i| data.labels[i]).collect();
        let drop = 1.0 - n as f64 / train_rows.len() as f64;
        let (keep, _) = stratified_split(&labels, classes, drop, seed ^ 1);
        train_rows = keep.iter().map(|&i| train_rows[i]).collect();
    }
    let vocab = Vocab::build(
        train_rows.iter().map(|&i| data.texts[i].as_slice()),
        s.vocab,
    );
    let train_labels: Vec<u32> = train_rows.iter().map(|&i| data.labels[i]).collect();
    let (fit_i, val_i) = stratified_split(&train_labels, classes, s.val_fraction, seed ^ 2);
    let fit: Vec<usize> = fit_i.iter().map(|&i| train_rows[i]).collect();
    let val: Vec<usize> = val_i.iter().map(|&i| train_rows[i]).collect();
    if fit.is_empty() || val.is_empty() || test.is_empty() {
        return Err(Error::invalid(
            "samples",
            data.len(),
            "enough for non-empty training, validation and test sides",
        ));
    }
    Ok(SplitRows {
        fit,
        val,
        test,
        vocab,
    })
}

/// Runs split `r` of `data` ([`split_rows`]): training, and the test score.
pub fn run_split(
    data: &TextData,
    s: &Settings,
    r: usize,
    eng: &Engines,
    tick: &mut dyn FnMut(&EpochLog),
) -> Result<SplitResult> {
    s.check()?;
    let seed = split_seed(s.seed, r);
    let classes = data.classes.len();
    let SplitRows {
        fit: fit_rows,
        val: val_rows,
        test: test_rows,
        vocab,
    } = split_rows(data, s, r)?;
    let t = s.tokens;
    let fit = Encoded::new(data, &fit_rows, &vocab, t);
    let val = Encoded::new(data, &val_rows, &vocab, t);
    let test = Encoded::new(data, &test_rows, &vocab, t);
    let real = test
        .tokens
        .iter()
        .filter(|&&v| v != super::vocab::PAD)
        .count();
    let unk = test
        .tokens
        .iter()
        .filter(|&&v| v == super::vocab::UNK)
        .count();
    let shape = Shape {
        vocab: s.vocab,
        dim: s.dim,
        tokens: t,
        hidden: s.hidden,
        classes,
    };
    let mut net = TextNet::new(shape, s.device, seed ^ 3);
    let (alpha0, beta0) = (net.alpha, net.beta);
    let history = train(&mut net, eng, &fit, &val, s, tick)?;
    let (pred, _) = net.evaluate(eng, &test.tokens, &test.labels, s.eval_batch)?;
    let best = history
        .iter()
        .filter(|h| h.val_accuracy >= history.iter().map(|h| h.val_accuracy).fold(0.0, f64::max))
        .map(|h| h.epoch)
        .next()
        .unwrap_or(0);
    let val_accuracy = history
        .get(best.saturating_sub(1))
        .map_or(0.0, |h| h.val_accuracy);
    let cm = confusion_matrix(&pred, &test.labels, classes);
    Ok(SplitResult {
        split: r,
        n_fit: fit.len(),
        n_val: val.len(),
        n_test: test.len(),
        vocab: vocab.len(),
        test_unk_fraction: unk as f64 / real.max(1) as f64,
        test_accuracy: accuracy(&pred, &test.labels),
        val_accuracy,
        best_epoch: best,
        epochs_run: history.len(),
        alpha: net.alpha,
        beta: net.beta,
        alpha0,
        beta0,
        confusion: cm,
        history,
        parameters: net.parameters(),
        operations: net.operations(),
        device_steps: net.device_steps(),
    })
}
