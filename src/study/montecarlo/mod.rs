//! Device-variability Monte Carlo (`memkin mc`): the paper's "DDK-exp"
//! hardware model and more, evaluated over many random draws of the devices.
//!
//! # Protocol
//!
//! 1. A readout is trained at the nominal device parameters (or loaded from a
//!    `memkin run --save-model` file). Each side of the split is encoded
//!    once; the training side is featurised once to train it and the test
//!    side once for every readout's nominal accuracy, on the CPU engine
//!    whatever the study's backend, so the nominal readout under test does
//!    not depend on the backend. By default it reads the raw
//!    kinetics features, as the chip's readout does (spec key `standardize`,
//!    default false): a standardised readout divides each feature by its
//!    spread over the training set, and a shared device's alpha drift moves
//!    hundreds of features coherently by a large share of their (small)
//!    spread. Measured on MNIST (20,000 training images, 10 draws): sigma_alpha
//!    = 0.01 alone takes the standardised readout from 0.959 to 0.54 on
//!    average, the paper's sigma_alpha = 0.0955 to chance (0.15); the raw
//!    readout keeps 0.86 over 50 draws of the paper's full model.
//!    With `input_scaling = "centred"` the readout reads each feature minus
//!    its training mean times one common gain, folded into its first layer
//!    ([`crate::readout::scaling`]): the draws score the folded readout.
//! 2. Optionally the readout is fine-tuned with the noise in the loop (see
//!    [`Nonideal::fine_tune_epochs`], [`training`]), and/or a second readout
//!    is trained noise-aware from its initialisation
//!    ([`Nonideal::noise_aware_epochs`]); these trainings integrate their
//!    draws on the study's engine. Every readout is scored on every draw
//!    (columns `test_accuracy`, `test_accuracy_tuned`,
//!    `test_accuracy_noise_aware`). The authors' own hardware-aware
//!    procedure, and how it selects on test, is in `docs/mc_protocol.md`.
//! 3. Each draw samples its devices on the host ([`sample_devices`]), the
//!    engine integrates the *test* sequences of a whole batch of draws in one
//!    run (the inputs are shared, never copied per draw; cycle-to-cycle noise
//!    is generated inside the engine, on the GPU for the GPU backend), then the
//!    host adds read noise, programs the readout weights into noisy
//!    conductances ([`Conductance`]) and scores the draw.
//!
//! # Randomness
//!
//! Every random number is a pure function of (study seed, draw, device,
//! purpose, step) through Philox4x32-10 ([`crate::rng`]), so results do
//! not depend on the batch size, the GPU chunking, the shard count or the
//! backend (up to f32 rounding of the trajectories on the GPU):
//!
//! | quantity | counter `[draw, device, purpose, step]` | where |
//! |---|---|---|
//! | alpha, beta of device `g` | `[draw, g, ALPHA / BETA, attempt]` (truncated normal by rejection) | host |
//! | device `g` stuck | `[draw, g, STUCK, 0]`, stuck when `u < stuck_fraction` | host |
//! | cycle noise of sequence `s`, step `k` | `[draw, s, STATE_NOISE, k]` | engine (GPU or CPU) |
//! | read noise of sequence `s`, steps `2j`, `2j+1` | `[draw, s, READ_NOISE, j]` (the Box-Muller pair of the f32 uniforms of words 0, 1) | host, or device (`device`) |
//! | conductance noise of weights `2j`, `2j+1` | `[draw, j, CONDUCTANCE, 0]` (index in the flat parameter vector) | host |
//!
//! The key is the study seed for the draws; the fine-tuning draws use
//! [`fine_tune_seed`] and the noise-aware training draws [`noise_aware_seed`]
//! (the same counters under other keys), so they never coincide with a test
//! draw; [`Nominal::training_draws`] records the keys and counters used.
//!
//! # Non-idealities (the `[variability]` table of the spec)
//!
//! | key | default | meaning | range |
//! |---|---|---|---|
//! | `sigma_alpha`, `sigma_beta` | 0 (off) | device-to-device spread: alpha, beta ~ N(nominal, sigma^2) truncated to > 0. The paper: 0.0955, 0.276 | >= 0 |
//! | `relative` | false | sigmas are fractions of the nominal values | bool |
//! | `per_channel` | false | false: one device per draw shared by all sequences (the paper); true: one device per channel (`seqs_per_sample` devices per draw, e.g. 28 for MNIST rows) | bool |
//! | `cycle_noise` | 0 (off) | cycle-to-cycle noise: `w += sigma * N(0, 1)` after every step, in state units | >= 0 |
//! | `read_noise` | 0 (off) | `feature += sigma * N(0, 1)` on every read state, `w[0]` included | >= 0 |
//! | `stuck_fraction` | 0 (off) | probability that a device is stuck: it reads `stuck_w` at every step | 0 ..= 1 |
//! | `stuck_w` | the nominal `w0` (1) | the state a stuck device reads | > 0 |
//! | `g_min`, `g_max` | 40, 300 (the paper's) | conductance range of the readout weights | 0 <= g_min < g_max |
//! | `g_noise_mean`, `g_noise_std` | 0, 0 | additive programming noise on each conductance. The paper: 0.20329, 1.14726 | finite; std >= 0 |
//! | `quant_bits` | none | program each conductance to one of `2^bits` uniform levels over `[g_min, g_max]` | 1 ..= 16 |
//! | `fine_tune_epochs` | 0 | noise-aware fine-tuning epochs of the readout (MLP or softmax) | >= 0 |
//! | `noise_aware_epochs` | 0 | epochs of a second readout (same network and optimiser) trained from its initialisation with every step on fresh training draws; the last epoch is kept | >= 0 |
//!
//! The conductance model is on when any of `g_min`, `g_max`, `g_noise_mean`,
//! `g_noise_std`, `quant_bits` is given. It maps each weight matrix (per
//! layer, its own `max|W|`) to `g = c + s W` with `c = (g_min + g_max) / 2`,
//! `s = (g_max - g_min) / 2 / max|W|`, rounds to the quantisation levels,
//! adds the noise, clamps to `[g_min, g_max]` and maps back `W = (g - c) / s`.
//! Biases are not mapped: they stay digital, as in the paper, which maps the
//! weights (a ridge readout's intercepts likewise).
//!
//! A trajectory that diverges under a draw (`beta x > 2 sqrt(alpha)`, the
//! forward-Euler instability) gives no features: its readout sample counts as
//! wrong (and does not vote).
//!
//! # Modules
//!
//! - [`nonideal`]: the `[variability]` table resolved, device sampling,
//!   read noise and the host-side steps of a draw.
//! - [`conductance`]: the analog conductance model of the readout weights.
//! - [`training`]: noise-aware training of the readout through its own
//!   trainer, on draws that never meet the test draws.
//! - [`evaluator`]: [`McEvaluator`], the set-up and the scoring of draws.
//! - [`paper`]: `protocol = "paper"`, the authors' hardware-aware procedure,
//!   one training trial per draw, reported as selected on test.
//! - [`summary`]: the manifest keys and `summary.json` + histograms.
//!
//! The saved-model format is [`crate::saved_model`], the statistics
//! [`crate::report::stats`].

pub mod conductance;
pub mod device;
pub mod evaluator;
pub mod nonideal;
pub mod paper;
pub mod summary;
pub mod training;

pub use crate::report::stats::{Stats, t_quantile_975};
pub use crate::saved_model::SavedModel;
pub use conductance::{Conductance, PAPER_G_MAX, PAPER_G_MIN};
pub use evaluator::{DEFAULT_BATCH_BYTES, McEvaluator, McOptions, Nominal, accuracy_with_failures};
pub use nonideal::{
    DeviceDraw, Nonideal, VariedParam, add_read_noise, draws_params, resolve_device, sample_devices,
};
pub use paper::{PaperMcEvaluator, paper_seed};
pub use summary::{manifest_extra, stage_report, write_report};
pub use training::{FINE_TUNE_DRAWS_PER_EPOCH, TrainingDraws, fine_tune_seed, noise_aware_seed};
