//! Encoders: how a sample becomes input sequences for the kinetics engine.
//!
//! | encoding | sample shape | sequences per sample | steps | readout samples per input sample |
//! |---|---|---|---|---|
//! | [`Encoding::Rows`] | `[H, W]` (an image) | H (one per row) | W | 1 |
//! | [`Encoding::Sequence`] | `[T]` (or any shape, flattened) | 1 | T | 1 |
//! | [`Encoding::Channels`] | `[C, T]` | C (one per channel) | T | 1 |
//! | [`Encoding::VoxelSlices`] | `[D, H, W]` (a voxel grid) | H per slice | W | D (one per slice; vote over them) |
//!
//! The output is one flat row-major `[S, T]` buffer, sample-major: all
//! sequences of (readout) sample 0, then those of sample 1, and so on — the
//! layout [`crate::batch::Batch`] takes. For [`Encoding::VoxelSlices`] each
//! object becomes D readout samples, so labels and groups expand with
//! [`expand_labels`].
//!
//! ```
//! use memkin::encode::{encode, Encoding};
//! // Two 2x3 images -> 4 sequences of 3 steps.
//! let x = [0.0f32, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5];
//! let e = encode(&x, &[2, 3], Encoding::Rows).unwrap();
//! assert_eq!((e.seqs, e.steps, e.seqs_per_sample, e.samples), (4, 3, 2, 2));
//! assert_eq!(e.sequence(1), &[0.3, 0.4, 0.5]);
//! ```

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How a sample becomes sequences (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Image `[H, W]` -> H sequences of W steps (MNIST: 28 of 28).
    Rows,
    /// 1-D `[T]` -> one sequence of T steps (higher ranks are flattened).
    Sequence,
    /// Voxels `[D, H, W]` -> D slice-samples, each H sequences of W steps.
    VoxelSlices,
    /// Channels `[C, T]` -> C sequences of T steps.
    Channels,
}

impl Encoding {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rows => "rows",
            Self::Sequence => "sequence",
            Self::VoxelSlices => "voxel_slices",
            Self::Channels => "channels",
        }
    }

    /// Parses a command-line name (`rows`, `sequence`, `voxel_slices` or
    /// `voxel-slices`, `channels`).
    pub fn from_name(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "rows" => Ok(Self::Rows),
            "sequence" => Ok(Self::Sequence),
            "voxel_slices" | "voxels" => Ok(Self::VoxelSlices),
            "channels" => Ok(Self::Channels),
            _ => Err(Error::invalid(
                "encoding",
                s,
                "one of rows, sequence, voxel_slices, channels",
            )),
        }
    }

    /// How many readout samples one input sample becomes (D for voxel
    /// slices, else 1).
    pub fn samples_per_input(self, sample_shape: &[usize]) -> usize {
        match self {
            Self::VoxelSlices => sample_shape.first().copied().unwrap_or(1),
            _ => 1,
        }
    }
}

/// The encoding that fits a sample shape: `[T]` -> Sequence, `[H, W]` ->
/// Rows, `[D, H, W]` -> VoxelSlices, anything else -> Sequence (flattened).
pub fn default_encoding(sample_shape: &[usize]) -> Encoding {
    match sample_shape.len() {
        2 => Encoding::Rows,
        3 => Encoding::VoxelSlices,
        _ => Encoding::Sequence,
    }
}

/// Encoded sequences, ready for a [`crate::batch::Batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// `[seqs, steps]` row-major, sample-major.
    pub x: Vec<f32>,
    /// Number of sequences (`samples * seqs_per_sample`).
    pub seqs: usize,
    /// Steps per sequence (T).
    pub steps: usize,
    /// Sequences per readout sample.
    pub seqs_per_sample: usize,
    /// Readout samples (input samples times the expansion, e.g. D slices).
    pub samples: usize,
}

impl Encoded {
    /// Sequence `s`.
    pub fn sequence(&self, s: usize) -> &[f32] {
        &self.x[s * self.steps..(s + 1) * self.steps]
    }

    /// All sequences of readout sample `i`, flat.
    pub fn sample(&self, i: usize) -> &[f32] {
        let l = self.seqs_per_sample * self.steps;
        &self.x[i * l..(i + 1) * l]
    }
}

/// Encodes flat `samples` of `sample_shape` (row-major, sample after sample).
///
/// The data is already in the sample-major `[S, T]` order for every
/// encoding, so this validates and reinterprets: each sample's values must be
/// finite, the shape must have the rank the encoding needs, and no
/// dimension may be 0.
pub fn encode(samples: &[f32], sample_shape: &[usize], enc: Encoding) -> Result<Encoded> {
    let shape_str = format!("{sample_shape:?}");
    let rank_err = |want: &str| {
        Error::invalid(
            format!("sample shape for encoding {}", enc.name()),
            &shape_str,
            want.to_string(),
        )
    };
    if sample_shape.is_empty() || sample_shape.contains(&0) {
        return Err(Error::invalid(
            "sample shape",
            &shape_str,
            "at least one dimension, none of them 0",
        ));
    }
    let len: usize = sample_shape.iter().product();
    let (steps, seqs_per_input, expand) = match (enc, sample_shape) {
        (Encoding::Sequence, s) => (s.iter().product(), 1, 1),
        (Encoding::Rows | Encoding::Channels, [h, w]) => (*w, *h, 1),
        (Encoding::Rows, _) => return Err(rank_err("[H, W] (an image)")),
        (Encoding::Channels, _) => return Err(rank_err("[C, T] (channels by steps)")),
        (Encoding::VoxelSlices, [d, h, w]) => (*w, *h, *d),
        (Encoding::VoxelSlices, _) => return Err(rank_err("[D, H, W] (a voxel grid)")),
    };
    if !samples.len().is_multiple_of(len) {
        return Err(Error::invalid(
            "input length",
            samples.len(),
            format!("a multiple of the sample size {len} (shape {shape_str})"),
        ));
    }
    if let Some(i) = samples.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            format!("input sample {} element {}", i / len, i % len),
            samples[i],
            "a finite number",
        ));
    }
    let n = samples.len() / len;
    Ok(Encoded {
        x: samples.to_vec(),
        seqs: n * expand * seqs_per_input,
        steps,
        seqs_per_sample: seqs_per_input,
        samples: n * expand,
    })
}

/// Repeats each label (or group id) `factor` times: the labels of the
/// readout samples after an encoding that expands samples (voxel slices).
pub fn expand_labels(labels: &[u32], factor: usize) -> Vec<u32> {
    labels
        .iter()
        .flat_map(|&l| std::iter::repeat_n(l, factor))
        .collect()
}

/// Pools a raw waveform: `|x|` averaged over `bins` equal bins (bin `i`
/// covers samples `floor(i n / bins) .. floor((i + 1) n / bins)`; an empty
/// bin, when `n < bins`, takes the one sample at its start), then min-max
/// scaled to [0, 1]. A constant result (including an empty input) gives
/// zeros; `bins = 0` gives an empty vector.
pub fn pool_waveform(raw: &[f32], bins: usize) -> Vec<f32> {
    let n = raw.len();
    if bins == 0 {
        return Vec::new();
    }
    if n == 0 {
        return vec![0.0; bins];
    }
    let pooled: Vec<f64> = (0..bins)
        .map(|i| {
            let a = i * n / bins;
            let b = ((i + 1) * n / bins).max(a + 1).min(n);
            let a = a.min(n - 1);
            raw[a..b].iter().map(|v| f64::from(v.abs())).sum::<f64>() / (b - a) as f64
        })
        .collect();
    let lo = pooled.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = pooled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // Constant (hi == lo), or no finite bin at all (hi < lo): zeros.
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![0.0; bins];
    }
    pooled
        .iter()
        .map(|&p| ((p - lo) / (hi - lo)) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_encoding_gives_one_sequence_per_image_row() {
        let x: Vec<f32> = (0..2 * 28 * 28).map(|i| (i % 256) as f32 / 255.0).collect();
        let e = encode(&x, &[28, 28], Encoding::Rows).unwrap();
        assert_eq!(
            (e.seqs, e.steps, e.seqs_per_sample, e.samples),
            (56, 28, 28, 2)
        );
        assert_eq!(e.sequence(29), &x[29 * 28..30 * 28]);
        assert_eq!(e.sample(1), &x[784..]);
    }

    #[test]
    fn voxel_slices_expand_each_object_into_d_slice_samples() {
        let x: Vec<f32> = (0..3 * 4 * 5 * 6).map(|i| (i % 2) as f32).collect();
        let e = encode(&x, &[4, 5, 6], Encoding::VoxelSlices).unwrap();
        assert_eq!(
            (e.seqs, e.steps, e.seqs_per_sample, e.samples),
            (60, 6, 5, 12)
        );
        // readout sample 5 is object 1, slice 1
        assert_eq!(e.sample(5), &x[120 + 30..120 + 60]);
        assert_eq!(
            expand_labels(&[7, 9, 8], 4),
            vec![7, 7, 7, 7, 9, 9, 9, 9, 8, 8, 8, 8]
        );
        assert_eq!(Encoding::VoxelSlices.samples_per_input(&[4, 5, 6]), 4);
    }

    #[test]
    fn sequence_and_channels_encodings() {
        let e = encode(&[0.1, 0.2, 0.3, 0.4], &[2], Encoding::Sequence).unwrap();
        assert_eq!((e.seqs, e.steps, e.samples), (2, 2, 2));
        let e = encode(&[0.1; 12], &[3, 2], Encoding::Channels).unwrap();
        assert_eq!(
            (e.seqs, e.steps, e.seqs_per_sample, e.samples),
            (6, 2, 3, 2)
        );
    }

    #[test]
    fn encode_rejects_wrong_rank_length_and_nan() {
        let err = encode(&[0.0; 8], &[8], Encoding::Rows)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rows") && err.contains("[8]") && err.contains("[H, W]"),
            "{err}"
        );
        let err = encode(&[0.0; 7], &[2, 2], Encoding::Rows)
            .unwrap_err()
            .to_string();
        assert!(err.contains("multiple of the sample size 4"), "{err}");
        let err = encode(&[0.0, 0.0, 0.0, 0.0, f32::NAN], &[1], Encoding::Sequence)
            .unwrap_err()
            .to_string();
        assert!(err.contains("input sample 4 element 0"), "{err}");
    }

    #[test]
    fn default_encoding_follows_the_rank() {
        assert_eq!(default_encoding(&[64]), Encoding::Sequence);
        assert_eq!(default_encoding(&[28, 28]), Encoding::Rows);
        assert_eq!(default_encoding(&[32, 32, 32]), Encoding::VoxelSlices);
        assert_eq!(
            Encoding::from_name("voxel-slices").unwrap(),
            Encoding::VoxelSlices
        );
        assert!(
            Encoding::from_name("pixels")
                .unwrap_err()
                .to_string()
                .contains("rows, sequence")
        );
    }

    #[test]
    fn pool_waveform_averages_abs_and_scales_to_unit_range() {
        let raw = [1.0, -1.0, 2.0, -4.0, 0.0, 0.0];
        assert_eq!(pool_waveform(&raw, 3), vec![1.0 / 3.0, 1.0, 0.0]);
        // 3 = 1 + 2, 1 + 0 => bins of uneven size [1,-1,2] and [-4,0,0]: means 4/3, 4/3 -> constant
        assert_eq!(pool_waveform(&raw, 2), vec![0.0, 0.0]);
        assert_eq!(pool_waveform(&[5.0; 10], 4), vec![0.0; 4]);
        assert_eq!(pool_waveform(&[], 3), vec![0.0; 3]);
        assert!(pool_waveform(&raw, 0).is_empty());
        // more bins than samples: each bin takes the sample at its start
        assert_eq!(pool_waveform(&[0.0, -2.0], 4), vec![0.0, 0.0, 1.0, 1.0]);
    }
}
