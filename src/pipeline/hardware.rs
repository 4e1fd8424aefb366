//! The authors' hardware-aware ("simulation", the paper's "DDK-exp")
//! training, as their published code has it (github gllspeed/DDK, the
//! `*_simulation` folders; docs/mc_protocol.md cites every line).
//!
//! It is the software protocol of [`super::paper`] with the chip in the loop:
//!
//! 1. at the start of epoch 1, alpha and beta are redrawn around their
//!    initial values from normals truncated to `> 0`, at 5.1 times the
//!    measured device-to-device spreads ([`SIGMA_ALPHA`], [`SIGMA_BETA`]);
//! 2. every gradient step may be clipped to an L2 norm over all learned
//!    parameters (`torch.nn.utils.clip_grad_norm_`, [`clip_grad_norm`]);
//! 3. every `eval_every` epochs the readout's weight matrices are programmed
//!    into noisy conductances **and kept** (training continues from the noisy
//!    weights), beta (and, for the audio scripts, alpha) is redrawn around its
//!    current value, also kept, and the test split is scored;
//! 4. the figure of a trial is its best evaluation: **selected on test**.
//!
//! The randomness of the chip (the redraws and the conductance noise) comes
//! from a [`Chip`] the caller provides: the Monte Carlo study's one
//! (`study::montecarlo::paper`) addresses it by Philox counters under its own
//! key, so a trial is a pure function of (study seed, trial index).

use super::paper::{PaperRecipe, PaperSplit};
use crate::Result;
use crate::readout::{Activation, Network, Optimizer};
use serde::Serialize;

/// The measured device-to-device spread of alpha (0.01873) times the
/// authors' factor 5.1 (`utils.py` `alpha_beta_add_noise`).
pub const SIGMA_ALPHA: f64 = 5.1 * 0.01873;
/// The measured spread of beta (0.05411) times 5.1 (`utils.py`).
pub const SIGMA_BETA: f64 = 5.1 * 0.05411;

/// What a hardware-aware recipe adds to the software one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hardware {
    /// alpha is learned (false: `requires_grad=False`, it only moves by the
    /// redraws).
    pub learn_alpha: bool,
    /// `clip_grad_norm_(model.parameters(), max_norm)` after every backward
    /// pass (`None`: not clipped).
    pub clip_norm: Option<f64>,
    /// The test split is scored (after programming the noisy weights) every
    /// this many epochs.
    pub eval_every: usize,
    /// alpha is redrawn at each evaluation too (beta always is).
    pub redraw_alpha_at_eval: bool,
    /// Spread of the alpha redraws.
    pub sigma_alpha: f64,
    /// Spread of the beta redraws.
    pub sigma_beta: f64,
    /// Smallest conductance of the weight map.
    pub g_min: f64,
    /// Largest conductance.
    pub g_max: f64,
    /// Mean of the additive conductance noise at each evaluation.
    pub g_noise_mean: f64,
    /// Its standard deviation.
    pub g_noise_std: f64,
}

/// Which device parameter a redraw is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// alpha.
    Alpha,
    /// beta.
    Beta,
}

/// The chip's randomness during a hardware-aware trial. `event` is 0 for
/// the redraw at the start of epoch 1 and `k` for the `k`-th evaluation.
pub trait Chip {
    /// A draw from `N(mean, sigma^2)` conditioned on `> 0`.
    fn redraw(&mut self, p: Param, event: u32, mean: f64, sigma: f64) -> Result<f64>;
    /// Programs every weight matrix of `net` into noisy conductances and maps
    /// it back, in place (biases and BatchNorm stay digital).
    fn program(&mut self, net: &mut Network, event: u32);
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=2)`: the L2
/// norm over every gradient given (the network's and the device's learned
/// parameters); when it exceeds `max_norm`, every gradient is scaled by
/// `max_norm / (norm + 1e-6)`. Returns the norm before clipping.
pub fn clip_grad_norm(net: &mut [f32], device: &mut [f64], max_norm: f64) -> f64 {
    let sq = net.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>()
        + device.iter().map(|g| g * g).sum::<f64>();
    let norm = sq.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for g in net.iter_mut() {
            *g = (*g as f64 * coef) as f32;
        }
        for g in device.iter_mut() {
            *g *= coef;
        }
    }
    norm
}

/// Datasets [`PaperRecipe::hardware_aware`] knows.
pub const HARDWARE_DATASETS: [&str; 3] = ["mnist", "sitw", "wmms"];

impl PaperRecipe {
    /// The authors' hardware-aware recipe for a named dataset (see the module
    /// docs; each setting with its source line is in docs/mc_protocol.md).
    ///
    /// | field | MNIST | SITW | WMMS |
    /// |---|---|---|---|
    /// | network | 784-64 BN ReLU 64-10 | 128-16 sigmoid 16-10 | 64-8 sigmoid 8-4 |
    /// | alpha | fixed (redraws only) | learned | learned |
    /// | optimiser | Adam, lr 0.01 | Adam, lr 0.01, weight decay 1e-3 | as SITW |
    /// | clipping | L2 norm 20 | none | none |
    /// | batch, shuffle, epochs | 64, yes, 50 | 1000 (full), no, 500 | 480 (full), no, 500 |
    /// | evaluation | every 5 epochs, beta redrawn | every 10, alpha and beta redrawn | as SITW |
    /// | trials in the script | 50 | 20 | - |
    /// | published DDK-exp | 0.926 | 0.925 | - |
    pub fn hardware_aware(name: &str) -> Result<Self> {
        let chip = |learn_alpha: bool, clip_norm: Option<f64>, eval_every: usize| Hardware {
            learn_alpha,
            clip_norm,
            eval_every,
            redraw_alpha_at_eval: learn_alpha,
            sigma_alpha: SIGMA_ALPHA,
            sigma_beta: SIGMA_BETA,
            g_min: 40.0,
            g_max: 300.0,
            g_noise_mean: 0.20329,
            g_noise_std: 1.14726,
        };
        let sim = "DDK/Audio_recognition/DDK+FC/adapt_convNet_pytorch_SITW1_simulation/train.py";
        let audio = |base: PaperRecipe| PaperRecipe {
            source: Some(sim.into()),
            paper_trials: 20,
            published: Some(0.925),
            note: String::new(),
            hardware: Some(chip(true, None, 10)),
            ..base
        };
        match name {
            "mnist" => Ok(PaperRecipe {
                source: Some(
                    "DDK/Image_classification/mnist_classification_64_simulation/train.py".into(),
                ),
                sizes: vec![784, 64, 10],
                activation: Activation::Relu,
                batch_norm: true,
                optimizer: Optimizer::Adam,
                lr: 0.01,
                momentum: 0.0,
                weight_decay: 0.0,
                clamp: None,
                split: PaperSplit::Standard,
                paper_trials: 50,
                published: Some(0.926),
                note: "alpha is not learned (requires_grad=False): it moves only by the redraws".into(),
                hardware: Some(chip(false, Some(20.0), 5)),
                ..PaperRecipe::for_dataset("mnist")?
            }),
            "sitw" => Ok(audio(PaperRecipe::for_dataset("sitw")?)),
            "wmms" => Ok(PaperRecipe {
                source: None,
                published: None,
                note: "no published WMMS simulation code: the SITW simulation script's recipe with FC 64-8 sigmoid, FC 8-4".into(),
                ..audio(PaperRecipe::for_dataset("wmms")?)
            }),
            _ => Err(crate::Error::invalid(
                "dataset",
                name,
                format!(
                    "one of {} with protocol = \"paper\" (the datasets with a hardware-aware recipe)",
                    HARDWARE_DATASETS.join(", ")
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_recipes_resolve_to_the_documented_settings() {
        let m = PaperRecipe::hardware_aware("mnist").unwrap();
        assert_eq!(m.sizes, [784, 64, 10]);
        assert_eq!(
            (m.optimizer, m.lr, m.weight_decay),
            (Optimizer::Adam, 0.01, 0.0)
        );
        assert_eq!(
            (m.batch_size, m.shuffle, m.epochs, m.clamp),
            (64, true, 50, None)
        );
        let h = m.hardware.unwrap();
        assert_eq!(
            (h.learn_alpha, h.clip_norm, h.eval_every),
            (false, Some(20.0), 5)
        );
        assert!(!h.redraw_alpha_at_eval);
        assert!((h.sigma_alpha - 0.095523).abs() < 1e-6 && (h.sigma_beta - 0.275961).abs() < 1e-6);
        assert_eq!(
            (h.g_min, h.g_max, h.g_noise_mean, h.g_noise_std),
            (40.0, 300.0, 0.20329, 1.14726)
        );
        let s = PaperRecipe::hardware_aware("sitw").unwrap();
        assert_eq!(
            (s.sizes.clone(), s.batch_size, s.epochs),
            (vec![128, 16, 10], 1000, 500)
        );
        assert_eq!(
            (s.optimizer, s.lr, s.weight_decay),
            (Optimizer::Adam, 0.01, 1e-3)
        );
        assert_eq!((s.paper_trials, s.published), (20, Some(0.925)));
        let h = s.hardware.unwrap();
        assert_eq!(
            (
                h.learn_alpha,
                h.clip_norm,
                h.eval_every,
                h.redraw_alpha_at_eval
            ),
            (true, None, 10, true)
        );
        let w = PaperRecipe::hardware_aware("wmms").unwrap();
        assert_eq!(
            (w.sizes.clone(), w.batch_size, w.source),
            (vec![64, 8, 4], 480, None)
        );
        assert_eq!(
            w.hardware,
            PaperRecipe::hardware_aware("sitw").unwrap().hardware
        );
        let e = PaperRecipe::hardware_aware("digits")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mnist, sitw, wmms"), "{e}");
    }

    #[test]
    fn clipping_scales_the_whole_gradient_to_the_norm_as_torch_does() {
        // |(30, 40, 0, 0)| = 50 > 20: scaled by 20 / (50 + 1e-6).
        let mut net = vec![30.0f32, 0.0];
        let mut dev = vec![40.0f64, 0.0];
        let n = clip_grad_norm(&mut net, &mut dev, 20.0);
        assert!((n - 50.0).abs() < 1e-9);
        let after = ((net[0] as f64).powi(2) + dev[0].powi(2)).sqrt();
        assert!(after <= 20.0 && after > 20.0 - 1e-5, "{after}");
        assert!(
            (net[0] as f64 / dev[0] - 0.75).abs() < 1e-6,
            "direction kept"
        );
        // Below the norm: untouched.
        let (mut a, mut b) = (vec![3.0f32], vec![4.0f64]);
        assert!((clip_grad_norm(&mut a, &mut b, 20.0) - 5.0).abs() < 1e-12);
        assert_eq!((a[0], b[0]), (3.0, 4.0));
    }
}
