//! The saved-model file: what `memkin run --save-model` writes
//! ([`SavedModel::to_json`]) and `memkin mc` reads back ([`SavedModel::load`]),
//! in one place so the two cannot drift apart.
//!
//! Format (JSON, version `memkin_model = 1`): `dataset`, `protocol` (the
//! run's [`Protocol`]), `alpha`, `beta` (the device the readout was trained
//! at), `readout` (the [`Trained`] readout, null when the run's trajectories
//! diverged), `test_accuracy`, `seed` (the run's seed: it fixes the split).

use crate::encode::Encoding;
use crate::pipeline::Protocol;
use crate::readout::Trained;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file's version number.
pub const MODEL_FORMAT: u32 = 1;

/// A readout saved by `memkin run --save-model`.
#[derive(Clone, Debug)]
pub struct SavedModel {
    /// The dataset it was trained on.
    pub dataset: String,
    /// Device alpha it was trained at.
    pub alpha: f64,
    /// Device beta.
    pub beta: f64,
    /// Initial state.
    pub w0: f64,
    /// Encoding of the samples.
    pub encoding: Encoding,
    /// Seeded splits of the run (its split 0 is the model's).
    pub repeats: usize,
    /// Test share of a re-split.
    pub test_fraction: f64,
    /// Majority vote over groups.
    pub vote: bool,
    /// Empty samples dropped.
    pub drop_empty: bool,
    /// The run's seed (fixes the split).
    pub seed: u64,
    /// The readout.
    pub readout: Trained,
}

#[derive(Deserialize)]
struct RawProtocol {
    encoding: Encoding,
    w0: f64,
    repeats: usize,
    test_fraction: f64,
    vote: bool,
    drop_empty: bool,
    device: bool,
}

#[derive(Deserialize)]
struct RawModel {
    memkin_model: u32,
    dataset: String,
    protocol: RawProtocol,
    alpha: f64,
    beta: f64,
    readout: Option<Trained>,
    #[serde(default)]
    seed: u64,
}

/// The file as written. Fields in alphabetical order, the order of the
/// JSON object the first writer produced, so files stay byte-identical.
#[derive(Serialize)]
struct ModelFile<'a> {
    alpha: f64,
    beta: f64,
    dataset: &'a str,
    memkin_model: u32,
    protocol: &'a Protocol,
    readout: Option<&'a Trained>,
    seed: u64,
    test_accuracy: f64,
}

impl SavedModel {
    /// The file `memkin run --save-model` writes for a readout trained on
    /// `dataset` under `proto` at the device (`alpha`, `beta`); `readout` is
    /// `None` when the run's trajectories diverged (such a file loads as an
    /// error naming why).
    #[allow(clippy::too_many_arguments)]
    pub fn to_json(
        dataset: &str,
        proto: &Protocol,
        alpha: f64,
        beta: f64,
        readout: Option<&Trained>,
        test_accuracy: f64,
        seed: u64,
    ) -> Result<String> {
        serde_json::to_string(&ModelFile {
            alpha,
            beta,
            dataset,
            memkin_model: MODEL_FORMAT,
            protocol: proto,
            readout,
            seed,
            test_accuracy,
        })
        .map_err(|e| Error::Internal(format!("saved model: {e}")))
    }

    /// Reads a `--save-model` file; errors name the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                path: path.into(),
                hint: "; expected a file written by `memkin run --save-model`".into(),
            },
            _ => Error::io(path, e),
        })?;
        let raw: RawModel = serde_json::from_str(&text).map_err(|e| {
            Error::bad_file(path, format!("not a `memkin run --save-model` file: {e}"))
        })?;
        if raw.memkin_model != MODEL_FORMAT {
            return Err(Error::bad_file(
                path,
                format!("memkin_model = {}: expected 1", raw.memkin_model),
            ));
        }
        if !raw.protocol.device {
            return Err(Error::bad_file(
                path,
                "a --no-device model has no kinetics layer to vary",
            ));
        }
        let readout = raw.readout.ok_or_else(|| {
            Error::bad_file(path, "holds no readout (the run's trajectories diverged)")
        })?;
        Ok(Self {
            dataset: raw.dataset,
            alpha: raw.alpha,
            beta: raw.beta,
            w0: raw.protocol.w0,
            encoding: raw.protocol.encoding,
            repeats: raw.protocol.repeats,
            test_fraction: raw.protocol.test_fraction,
            vote: raw.protocol.vote,
            drop_empty: raw.protocol.drop_empty,
            seed: raw.seed,
            readout,
        })
    }
}
