//! The step-wise training loop for softmax regression and the MLP, and
//! [`train`], the one entry point for every readout.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::config::{ReadoutKind, TrainConfig};
use super::metrics::accuracy;
use super::net::{Network, OptState, Workspace};
use super::ridge::{RidgeGram, check_labels, select_lambda};
use super::standardize::{Standardizer, check_features};
use super::{Model, Trained};
use crate::rng::Rng;
use crate::{Error, Result};

/// What one epoch achieved (also the entries of [`Trained::history`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch number (ridge: 1).
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's mini-batches (ridge: mean squared
    /// error of the one-vs-all targets on the fitting rows).
    pub train_loss: f64,
    /// Accuracy on the validation split, if there is one.
    pub val_accuracy: Option<f64>,
    /// Mean cross-entropy on the validation split (nets only).
    pub val_loss: Option<f64>,
    /// Seconds since training started (not deterministic; everything else is).
    pub elapsed_s: f64,
}

/// Loss and accuracy of a model on a labelled set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
}

/// Step-wise trainer for [`ReadoutKind::Softmax`] and [`ReadoutKind::Mlp`].
///
/// Built for device learning: the caller produces features with the kinetics
/// engine, calls [`Trainer::step`] on a mini-batch, receives dL/dX in the *raw*
/// feature space (chained through the standardiser), and pushes it through the
/// engine's exact sensitivities to update alpha/beta. [`train`] is this loop
/// with shuffling, validation and early stopping around it.
///
/// ```
/// use memkin::readout::{ReadoutKind, TrainConfig, Trainer};
/// let cfg = TrainConfig { kind: ReadoutKind::Softmax, ..TrainConfig::default() };
/// let mut t = Trainer::new(&cfg, 2, 2, None).unwrap();
/// let (loss, dx) = t.step(&[0.0, 1.0, 1.0, 0.0], &[1, 0]).unwrap();
/// assert!(loss > 0.0 && dx.len() == 4);
/// let model = t.finish();
/// assert_eq!(model.predict(&[0.0, 1.0], 1).len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct Trainer {
    cfg: TrainConfig,
    n_classes: usize,
    net: Network,
    standardizer: Standardizer,
    opt: OptState,
    ws: Workspace,
    grad: Vec<f32>,
    xbuf: Vec<f32>,
    history: Vec<EpochReport>,
}

impl Trainer {
    /// A fresh network for `f` features and `n_classes` classes, initialised
    /// from `cfg.seed`. `standardizer` maps raw features to the network's input;
    /// `None` means the identity.
    pub fn new(
        cfg: &TrainConfig,
        f: usize,
        n_classes: usize,
        standardizer: Option<Standardizer>,
    ) -> Result<Self> {
        cfg.check()?;
        if cfg.kind == ReadoutKind::Ridge {
            return Err(Error::invalid(
                "kind",
                "ridge",
                "softmax or mlp for the step-wise Trainer (ridge is closed form: use train)",
            ));
        }
        if f == 0 {
            return Err(Error::invalid("features", 0, "at least 1 feature per row"));
        }
        if n_classes < 2 {
            return Err(Error::invalid("n_classes", n_classes, "at least 2"));
        }
        let standardizer = standardizer.unwrap_or_else(|| Standardizer::identity(f));
        if standardizer.n_features() != f {
            return Err(Error::invalid(
                "standardizer",
                format!("{} features", standardizer.n_features()),
                format!("{f} features, as the data"),
            ));
        }
        let mut sizes = vec![f];
        if cfg.kind == ReadoutKind::Mlp {
            sizes.extend_from_slice(&cfg.hidden);
        }
        sizes.push(n_classes);
        let mut rng = Rng::new(cfg.seed);
        let net = Network::new(&sizes, cfg.activation, &mut rng);
        let n_params = net.parameters();
        Ok(Trainer {
            cfg: cfg.clone(),
            n_classes,
            net,
            standardizer,
            opt: OptState::new(n_params),
            ws: Workspace::training(),
            grad: vec![0.0; n_params],
            xbuf: Vec::new(),
            history: Vec::new(),
        })
    }

    /// A trainer that continues from a trained softmax or MLP readout: its
    /// configuration, standardiser and weights, a fresh optimiser state and
    /// its history kept (new epochs are appended). Ridge is an error.
    pub fn resume(trained: &Trained) -> Result<Self> {
        let Model::Net(net) = &trained.model else {
            return Err(Error::invalid(
                "kind",
                "ridge",
                "softmax or mlp to continue training (ridge is closed form)",
            ));
        };
        let mut t = Trainer::new(
            &trained.config,
            trained.n_features,
            trained.n_classes,
            trained.standardizer.clone(),
        )?;
        if t.net.sizes != net.sizes {
            return Err(Error::Internal(format!(
                "resume: network sizes {:?} differ from the readout's {:?}",
                t.net.sizes, net.sizes
            )));
        }
        t.net = net.clone();
        t.history = trained.history.clone();
        Ok(t)
    }

    /// The network as it stands.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// Mutable access to the network (e.g. to restore a snapshot or to perturb
    /// a weight in a gradient check).
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.net
    }

    /// The configuration it trains with.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The epochs recorded so far (a resumed readout's included).
    pub fn history(&self) -> &[EpochReport] {
        &self.history
    }

    /// The feature standardiser in use.
    pub fn standardizer(&self) -> &Standardizer {
        &self.standardizer
    }

    fn check_batch(&self, xb: &[f32], yb: &[u32]) -> Result<()> {
        let f = self.net.n_inputs();
        check_features(xb, yb.len(), f)?;
        check_labels(yb, yb.len(), self.n_classes)?;
        if yb.is_empty() {
            return Err(Error::invalid("batch", 0, "at least 1 row"));
        }
        Ok(())
    }

    /// Forward + backward on standardised rows; optionally updates the weights.
    fn run_std(&mut self, xs: &[f32], yb: &[u32], update: bool, want_dx: bool) -> f64 {
        self.net.forward(xs, yb.len(), &mut self.ws);
        let loss = self.net.backward(
            xs,
            yb,
            self.cfg.l2 as f32,
            &mut self.ws,
            &mut self.grad,
            want_dx,
        );
        if update {
            self.net.update_bn_running(&self.ws, yb.len());
            self.opt.apply(
                self.cfg.optimizer,
                &mut self.net.params,
                &self.grad,
                self.cfg.lr,
                self.cfg.momentum,
            );
        }
        loss
    }

    fn run_raw(&mut self, xb: &[f32], yb: &[u32], update: bool, want_dx: bool) -> Result<f64> {
        self.check_batch(xb, yb)?;
        let mut xs = std::mem::take(&mut self.xbuf);
        xs.resize(xb.len(), 0.0);
        self.standardizer.transform_into(xb, &mut xs);
        let loss = self.run_std(&xs, yb, update, want_dx);
        self.xbuf = xs;
        Ok(loss)
    }

    fn take_dx(&mut self) -> Vec<f32> {
        let mut dx = self.ws.dx.clone();
        self.standardizer.backprop_in_place(&mut dx);
        dx
    }

    /// One optimiser step on a mini-batch of raw features `xb` (`[b, f]`) and
    /// labels `yb`. Returns the batch's mean cross-entropy (before the update)
    /// and dL/dX of that loss, `[b, f]`, in the raw feature space, computed
    /// with the weights *before* the update.
    pub fn step(&mut self, xb: &[f32], yb: &[u32]) -> Result<(f64, Vec<f32>)> {
        let loss = self.run_raw(xb, yb, true, true)?;
        Ok((loss, self.take_dx()))
    }

    /// Like [`Trainer::step`] without computing dL/dX (cheaper).
    pub fn train_step(&mut self, xb: &[f32], yb: &[u32]) -> Result<f64> {
        self.run_raw(xb, yb, true, false)
    }

    /// One optimiser step with noise injection: the forward and backward
    /// pass run on a perturbed copy of the weights (`perturb` edits it, e.g.
    /// programs it into noisy conductances), and the update computed there is
    /// applied to the clean weights (a straight-through update). Returns the
    /// batch's mean cross-entropy under the perturbation.
    pub fn train_step_through(
        &mut self,
        xb: &[f32],
        yb: &[u32],
        perturb: impl FnOnce(&mut Network),
    ) -> Result<f64> {
        let clean = self.net.params.clone();
        perturb(&mut self.net);
        let loss = self.run_raw(xb, yb, false, false);
        self.net.params = clean;
        let loss = loss?;
        self.opt.apply(
            self.cfg.optimizer,
            &mut self.net.params,
            &self.grad,
            self.cfg.lr,
            self.cfg.momentum,
        );
        Ok(loss)
    }

    /// Mean cross-entropy and dL/dX on a mini-batch, leaving the weights as
    /// they are.
    pub fn input_gradient(&mut self, xb: &[f32], yb: &[u32]) -> Result<(f64, Vec<f32>)> {
        let loss = self.run_raw(xb, yb, false, true)?;
        Ok((loss, self.take_dx()))
    }

    /// Gradient of the training objective `mean cross-entropy + l2/2 |W|^2`
    /// with respect to every parameter (layout of [`Network::params`]), with
    /// the mean cross-entropy; the weights are not changed.
    pub fn parameter_gradient(&mut self, xb: &[f32], yb: &[u32]) -> Result<(f64, Vec<f32>)> {
        let loss = self.run_raw(xb, yb, false, false)?;
        Ok((loss, self.grad.clone()))
    }

    /// Loss and accuracy on raw features `x` (`[n, f]`) with labels `y`.
    pub fn evaluate(&self, x: &[f32], y: &[u32]) -> Result<Evaluation> {
        self.check_batch(x, y)?;
        let xs = self.standardizer.transform(x);
        Ok(self.evaluate_std(&xs, y))
    }

    fn evaluate_std(&self, xs: &[f32], y: &[u32]) -> Evaluation {
        let (loss, pred) = self.net.loss_and_predictions(xs, y);
        Evaluation {
            loss,
            accuracy: accuracy(&pred, y),
        }
    }

    /// Appends an entry to the history carried into [`Trained`].
    pub fn record(&mut self, report: EpochReport) {
        self.history.push(report);
    }

    /// The trained model, with the current weights and the recorded history.
    pub fn finish(self) -> Trained {
        Trained {
            kind: self.cfg.kind,
            n_features: self.net.n_inputs(),
            n_classes: self.n_classes,
            standardizer: Some(self.standardizer),
            model: Model::Net(self.net),
            history: self.history,
            ridge_lambda: None,
            config: self.cfg,
        }
    }
}

/// Splits row indices into (fit, validation), stratified by class: from each
/// class, `round(fraction * count)` rows chosen by a seeded shuffle (at least
/// one when the class has two or more rows and `fraction > 0`) go to
/// validation. Both lists come back sorted.
pub fn stratified_split(
    y: &[u32],
    n_classes: usize,
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut by_class = vec![Vec::new(); n_classes];
    for (i, &c) in y.iter().enumerate() {
        by_class[c as usize].push(i);
    }
    // A stream separate from the initialisation's (same seed, different key).
    let mut rng = Rng::new(seed ^ 0x5851_F42D_4C95_7F2D);
    let (mut fit, mut val) = (Vec::new(), Vec::new());
    for mut idx in by_class {
        rng.shuffle(&mut idx);
        let mut k = (fraction * idx.len() as f64).round() as usize;
        if fraction > 0.0 && k == 0 && idx.len() >= 2 {
            k = 1;
        }
        val.extend_from_slice(&idx[..k]);
        fit.extend_from_slice(&idx[k..]);
    }
    fit.sort_unstable();
    val.sort_unstable();
    (fit, val)
}

fn gather(x: &[f32], f: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * f);
    for &r in rows {
        out.extend_from_slice(&x[r * f..(r + 1) * f]);
    }
    out
}

/// Trains the readout `cfg.kind` on raw features `x` (`[n, f]` row-major) and
/// labels `y` in `0..n_classes`.
///
/// - A validation split (`cfg.val_fraction`, seeded, stratified) is carved
///   from these rows; the standardiser is fitted on the remaining rows only.
/// - Nets: mini-batch training; after each epoch `progress` (if any) receives
///   the [`EpochReport`]; training stops after `cfg.patience` epochs without
///   validation improvement and the best-validation weights are restored.
/// - Ridge: with several `cfg.ridge_lambdas`, the one with the best validation
///   accuracy is refitted on all rows given here; otherwise `cfg.ridge_lambda`
///   is fitted on all rows.
///
/// NaN/inf features are an error naming row and column; nothing is trained.
pub fn train(
    x: &[f32],
    n: usize,
    f: usize,
    y: &[u32],
    n_classes: usize,
    cfg: &TrainConfig,
    progress: Option<&dyn Fn(&EpochReport)>,
) -> Result<Trained> {
    cfg.check()?;
    check_features(x, n, f)?;
    check_labels(y, n, n_classes)?;
    if n < 2 {
        return Err(Error::invalid("rows", n, "at least 2 training rows"));
    }
    let start = Instant::now();
    if cfg.kind == ReadoutKind::Ridge {
        return train_ridge(x, n, f, y, n_classes, cfg, progress, start);
    }
    let (fit, val) = if cfg.val_fraction > 0.0 {
        stratified_split(y, n_classes, cfg.val_fraction, cfg.seed)
    } else {
        ((0..n).collect(), Vec::new())
    };
    let mut xs_fit = gather(x, f, &fit);
    let y_fit: Vec<u32> = fit.iter().map(|&i| y[i]).collect();
    let standardizer = if cfg.standardize {
        Standardizer::fit(&xs_fit, fit.len(), f)?
    } else {
        Standardizer::identity(f)
    };
    standardizer.transform_in_place(&mut xs_fit);
    let mut xs_val = gather(x, f, &val);
    standardizer.transform_in_place(&mut xs_val);
    let y_val: Vec<u32> = val.iter().map(|&i| y[i]).collect();

    let mut t = Trainer::new(cfg, f, n_classes, Some(standardizer))?;
    let mut rng = Rng::new(cfg.seed ^ 0xD1B5_4A32_D192_ED03);
    let mut order: Vec<usize> = (0..fit.len()).collect();
    let mut xb = Vec::with_capacity(cfg.batch_size * f);
    let mut yb = Vec::with_capacity(cfg.batch_size);
    // Best so far: (accuracy, -loss) compared lexicographically.
    let mut best: Option<((f64, f64), Vec<f32>)> = None;
    let mut since_best = 0usize;
    for epoch in 1..=cfg.epochs {
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0f64;
        for batch in order.chunks(cfg.batch_size) {
            xb.clear();
            yb.clear();
            for &i in batch {
                xb.extend_from_slice(&xs_fit[i * f..(i + 1) * f]);
                yb.push(y_fit[i]);
            }
            loss_sum += t.run_std(&xb, &yb, true, false) * batch.len() as f64;
        }
        let train_loss = loss_sum / fit.len() as f64;
        if !train_loss.is_finite() {
            return Err(Error::invalid(
                "lr",
                cfg.lr,
                format!("a smaller value: the training loss diverged at epoch {epoch}"),
            ));
        }
        let eval = (!val.is_empty()).then(|| t.evaluate_std(&xs_val, &y_val));
        let report = EpochReport {
            epoch,
            train_loss,
            val_accuracy: eval.map(|e| e.accuracy),
            val_loss: eval.map(|e| e.loss),
            elapsed_s: start.elapsed().as_secs_f64(),
        };
        if let Some(p) = progress {
            p(&report);
        }
        t.record(report);
        if let Some(e) = eval {
            let score = (e.accuracy, -e.loss);
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, t.net.params.clone()));
                since_best = 0;
            } else {
                since_best += 1;
                if cfg.patience > 0 && since_best >= cfg.patience {
                    break;
                }
            }
        }
    }
    if let Some((_, params)) = best {
        t.net.params = params;
    }
    Ok(t.finish())
}

fn train_ridge(
    x: &[f32],
    n: usize,
    f: usize,
    y: &[u32],
    n_classes: usize,
    cfg: &TrainConfig,
    progress: Option<&dyn Fn(&EpochReport)>,
    start: Instant,
) -> Result<Trained> {
    let standardizer = if cfg.standardize {
        Some(Standardizer::fit(x, n, f)?)
    } else {
        None
    };
    let xs_owned;
    let xs: &[f32] = match &standardizer {
        Some(s) => {
            xs_owned = s.transform(x);
            &xs_owned
        }
        None => x,
    };
    let mut val_accuracy = None;
    let lambda = if cfg.ridge_lambdas.len() > 1 {
        let (fit, val) = stratified_split(y, n_classes, cfg.val_fraction, cfg.seed);
        let y_fit: Vec<u32> = fit.iter().map(|&i| y[i]).collect();
        let y_val: Vec<u32> = val.iter().map(|&i| y[i]).collect();
        let gram = RidgeGram::new(&gather(xs, f, &fit), fit.len(), f, &y_fit, n_classes)?;
        let scan = select_lambda(
            &gram,
            &gather(xs, f, &val),
            val.len(),
            &y_val,
            &cfg.ridge_lambdas,
        )?;
        val_accuracy = scan.scores.iter().find(|s| s.0 == scan.best).map(|s| s.1);
        scan.best
    } else {
        cfg.ridge_lambdas
            .first()
            .copied()
            .unwrap_or(cfg.ridge_lambda)
    };
    let ridge = RidgeGram::new(xs, n, f, y, n_classes)?.solve(lambda)?;
    let scores = ridge.decision_function(xs, n);
    let mut sq = 0.0;
    for (row, &t) in scores.chunks_exact(n_classes).zip(y) {
        for (k, &s) in row.iter().enumerate() {
            let target = if k == t as usize { 1.0 } else { -1.0 };
            sq += (s - target) * (s - target);
        }
    }
    let report = EpochReport {
        epoch: 1,
        train_loss: sq / (n * n_classes) as f64,
        val_accuracy,
        val_loss: None,
        elapsed_s: start.elapsed().as_secs_f64(),
    };
    if let Some(p) = progress {
        p(&report);
    }
    Ok(Trained {
        kind: ReadoutKind::Ridge,
        n_features: f,
        n_classes,
        standardizer,
        model: Model::Ridge(ridge),
        history: vec![report],
        ridge_lambda: Some(lambda),
        config: cfg.clone(),
    })
}
