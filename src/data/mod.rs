//! Datasets: one loader per format, a registry of the named datasets, and
//! seeded stratified splits.
//!
//! Every loader returns a [`Dataset`]: f32 samples (in [0, 1] for the named
//! datasets) with `u32` labels, already split into train and test. Named
//! datasets (`mnist`, `wmms`, `sitw`, `modelnet10`) live outside the
//! repository in a data directory (`--data-dir`, else the `MEMKIN_DATA`
//! environment variable) and are sha256-checked on every load; `digits` is a
//! small real dataset embedded in the binary so that memkin works offline.
//!
//! | spec | what | sample shape | split |
//! |---|---|---|---|
//! | `mnist` | `<dir>/mnist/*-idx?-ubyte.gz` | `[28, 28]` | the standard 60k/10k |
//! | `wmms` | `<dir>/wmms/WhaleSong_no_fft_abs_mean_64.mat` | `[64]` | seeded stratified 80/20 (480/120) |
//! | `sitw` | `<dir>/sitw/{speaker,targets}_no_fft_norm_128_1250.mat` | `[128]` | seeded stratified 80/20 (1000/250) |
//! | `modelnet10` | `<dir>/modelnet10/{chair,monitor}.npy.gz` | `[32, 32, 32]` | seeded stratified 80/20 by object |
//! | `digits`, `default` | embedded scikit-learn 8x8 digits | `[8, 8]` | seeded stratified 80/20 |
//! | a directory | IDX files (MNIST layout, also Fashion-MNIST) | `[H, W]` | as given |
//! | `*.npz` | `x_train, y_train, x_test, y_test` | `x.shape[1..]` | as given |
//! | `*.csv` | label, then features, optional `split` column | `[F]` | as given, else 80/20 |
//!
//! The initial split of the 80/20 datasets uses seed [`SPLIT_SEED`]; the
//! paper's protocol (repeated seeded splits) is [`Dataset::resplit`].
//!
//! ```
//! let digits = memkin::data::load("digits", None).unwrap();
//! assert_eq!(digits.sample_shape, vec![8, 8]);
//! assert_eq!(digits.n_train() + digits.n_test(), 1797);
//! let again = digits.resplit(0.2, 1).unwrap(); // another seeded 80/20 split
//! assert_eq!(again.n_test(), digits.n_test());
//! ```

pub mod csv;
pub mod digits;
pub mod idx;
pub mod mat;
pub mod modelnet;
pub mod named;
pub mod npy;
pub mod split;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use named::{DatasetStatus, NamedDataset, check, list};

use crate::{Error, Result};

/// The seed of the initial 80/20 split of datasets that ship without one.
pub const SPLIT_SEED: u64 = 0;

/// The largest number of classes a loader accepts (labels are `0..MAX_CLASSES`).
pub const MAX_CLASSES: usize = 65_536;

/// The environment variable naming the data directory.
pub const DATA_ENV: &str = "MEMKIN_DATA";

/// A loaded dataset, split into train and test.
///
/// Samples are stored flat: sample `i` of the training set is
/// `x_train[i * sample_len .. (i + 1) * sample_len]`, row-major in
/// `sample_shape`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Short name, e.g. `"mnist"`.
    pub name: String,
    /// Training samples, flat.
    pub x_train: Vec<f32>,
    /// Training labels in `0..n_classes`.
    pub y_train: Vec<u32>,
    /// Test samples, flat.
    pub x_test: Vec<f32>,
    /// Test labels in `0..n_classes`.
    pub y_test: Vec<u32>,
    /// Shape of one sample: `[28, 28]` MNIST, `[64]` WMMS, `[128]` SITW,
    /// `[32, 32, 32]` voxels.
    pub sample_shape: Vec<usize>,
    /// Number of classes.
    pub n_classes: usize,
    /// One name per class.
    pub class_names: Vec<String>,
    /// Object id of each training sample when samples are parts of objects
    /// (kept together by [`Dataset::resplit`], and used to vote).
    pub groups_train: Option<Vec<u32>>,
    /// Object id of each test sample (see `groups_train`).
    pub groups_test: Option<Vec<u32>>,
}

impl Dataset {
    /// Number of training samples.
    pub fn n_train(&self) -> usize {
        self.y_train.len()
    }

    /// Number of test samples.
    pub fn n_test(&self) -> usize {
        self.y_test.len()
    }

    /// Number of values in one sample (the product of `sample_shape`).
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// Training sample `i`.
    pub fn train_sample(&self, i: usize) -> &[f32] {
        let l = self.sample_len();
        &self.x_train[i * l..(i + 1) * l]
    }

    /// Test sample `i`.
    pub fn test_sample(&self, i: usize) -> &[f32] {
        let l = self.sample_len();
        &self.x_test[i * l..(i + 1) * l]
    }

    /// Merges train and test, then splits again: stratified by label, by
    /// object when groups exist (an object's samples never straddle the
    /// split), deterministic from `seed`. This is the paper's protocol for
    /// WMMS and SITW (repeated seeded 80/20 splits: `resplit(0.2, seed)`).
    pub fn resplit(&self, test_fraction: f64, seed: u64) -> Result<Dataset> {
        let mut x = Vec::with_capacity(self.x_train.len() + self.x_test.len());
        x.extend_from_slice(&self.x_train);
        x.extend_from_slice(&self.x_test);
        let mut y = self.y_train.clone();
        y.extend_from_slice(&self.y_test);
        let groups = match (&self.groups_train, &self.groups_test) {
            (Some(a), Some(b)) => Some([a.as_slice(), b.as_slice()].concat()),
            (None, None) => None,
            _ => {
                return Err(Error::Internal(format!(
                    "dataset {}: groups are set on only one of train and test",
                    self.name
                )));
            }
        };
        Self::split_all(
            &self.name,
            &x,
            &y,
            groups.as_deref(),
            self.sample_shape.clone(),
            self.class_names.clone(),
            test_fraction,
            seed,
        )
    }

    /// The first `n` training samples (all of them if `n >= n_train`), with
    /// the test set unchanged; for quick studies.
    pub fn subsample_train(&self, n: usize) -> Dataset {
        let n = n.min(self.n_train());
        Dataset {
            x_train: self.x_train[..n * self.sample_len()].to_vec(),
            y_train: self.y_train[..n].to_vec(),
            groups_train: self.groups_train.as_ref().map(|g| g[..n].to_vec()),
            ..self.clone()
        }
    }

    /// Samples per class in train and in test.
    pub fn class_counts(&self) -> (Vec<usize>, Vec<usize>) {
        (
            count_labels(&self.y_train, self.n_classes),
            count_labels(&self.y_test, self.n_classes),
        )
    }

    /// Builds a split dataset from all samples (`x` flat, `y` labels) with a
    /// seeded stratified split (by group when `groups` is given).
    pub fn split_all(
        name: &str,
        x: &[f32],
        y: &[u32],
        groups: Option<&[u32]>,
        sample_shape: Vec<usize>,
        class_names: Vec<String>,
        test_fraction: f64,
        seed: u64,
    ) -> Result<Dataset> {
        let len: usize = sample_shape.iter().product();
        if x.len() != y.len() * len {
            return Err(Error::Internal(format!(
                "dataset {name}: {} values for {} samples of shape {sample_shape:?}",
                x.len(),
                y.len()
            )));
        }
        let s = split::stratified_split(y, groups, test_fraction, seed)?;
        let gather_x = |idx: &[usize]| -> Vec<f32> {
            let mut out = Vec::with_capacity(idx.len() * len);
            for &i in idx {
                out.extend_from_slice(&x[i * len..(i + 1) * len]);
            }
            out
        };
        let gather = |v: &[u32], idx: &[usize]| -> Vec<u32> { idx.iter().map(|&i| v[i]).collect() };
        Ok(Dataset {
            name: name.to_string(),
            x_train: gather_x(&s.train),
            y_train: gather(y, &s.train),
            x_test: gather_x(&s.test),
            y_test: gather(y, &s.test),
            sample_shape,
            n_classes: class_names.len(),
            class_names,
            groups_train: groups.map(|g| gather(g, &s.train)),
            groups_test: groups.map(|g| gather(g, &s.test)),
        })
    }
}

/// Counts of each label in `0..n_classes` (labels outside are ignored).
pub fn count_labels(labels: &[u32], n_classes: usize) -> Vec<usize> {
    let mut c = vec![0; n_classes];
    for &l in labels {
        if let Some(slot) = c.get_mut(l as usize) {
            *slot += 1;
        }
    }
    c
}

/// The data directory: `cli` (from `--data-dir`) if given, else the
/// `MEMKIN_DATA` environment variable, else `None`.
pub fn data_dir(cli: Option<&Path>) -> Option<PathBuf> {
    cli.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(DATA_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// Loads a dataset. `spec` is a name (`mnist`, `wmms`, `sitw`, `modelnet10`,
/// `digits` or `default`), resolved under `data_dir`, or a path: a directory
/// of IDX files, an `.npz` or a `.csv` file (see the module docs).
pub fn load(spec: &str, data_dir: Option<&Path>) -> Result<Dataset> {
    if let Some(named) = NamedDataset::from_name(spec) {
        return named.load(data_dir);
    }
    let path = Path::new(spec);
    let formats = "a dataset name (mnist, wmms, sitw, modelnet10, digits/default) or a path to a directory of IDX files, an .npz or a .csv file";
    if !path.exists() {
        return Err(Error::NotFound {
            path: path.to_path_buf(),
            hint: format!("; expected {formats}"),
        });
    }
    if path.is_dir() {
        return idx::load_dir(path);
    }
    let lower = spec.to_ascii_lowercase();
    if lower.ends_with(".npz") {
        npy::load_npz(path)
    } else if lower.ends_with(".csv") {
        csv::load_csv(path)
    } else {
        Err(Error::invalid(
            "dataset",
            spec,
            format!("unsupported file type; expected {formats}"),
        ))
    }
}

/// Reads a whole file; a missing file is [`Error::NotFound`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| file_size_hint(path, e))
}

/// Maps an open/read error to NotFound or Io.
pub(crate) fn file_size_hint(path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound {
            path: path.to_path_buf(),
            hint: String::new(),
        }
    } else {
        Error::io(path, e)
    }
}

/// Decompresses gzip data (detected by its magic bytes), else borrows it.
/// A truncated or corrupt stream is a [`Error::BadFile`], never a panic.
pub(crate) fn maybe_gunzip<'a>(bytes: &'a [u8], path: &Path) -> Result<std::borrow::Cow<'a, [u8]>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| Error::bad_file(path, format!("truncated or corrupt gzip stream: {e}")))?;
    Ok(std::borrow::Cow::Owned(out))
}

/// The number of elements of `shape`, or `None` on overflow (a corrupt header).
pub(crate) fn checked_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Checks that every label is in `0..n_classes`.
pub(crate) fn check_labels(labels: &[u32], n_classes: usize, path: &Path) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= n_classes) {
        Some(i) => Err(Error::bad_file(
            path,
            format!(
                "label {} at index {i} is out of range: expected 0..{n_classes}",
                labels[i]
            ),
        )),
        None => Ok(()),
    }
}

/// A file of tests/fixtures/data (the loaders' unit tests).
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Dataset {
        let y: Vec<u32> = (0..40).map(|i| i % 4).collect();
        let x: Vec<f32> = (0..80).map(|i| i as f32).collect();
        Dataset::split_all(
            "toy",
            &x,
            &y,
            None,
            vec![2],
            (0..4).map(|c| c.to_string()).collect(),
            0.25,
            3,
        )
        .unwrap()
    }

    #[test]
    fn resplit_keeps_every_sample_once_with_its_label() {
        let d = toy();
        let r = d.resplit(0.5, 9).unwrap();
        assert_eq!((r.n_train(), r.n_test()), (20, 20));
        assert_eq!(r.class_counts(), (vec![5; 4], vec![5; 4]));
        let mut firsts: Vec<f32> = (0..20)
            .flat_map(|i| [r.train_sample(i)[0], r.test_sample(i)[0]])
            .collect();
        firsts.sort_by(f32::total_cmp);
        assert_eq!(firsts, (0..40).map(|i| 2.0 * i as f32).collect::<Vec<_>>());
        for i in 0..20 {
            assert_eq!(r.y_train[i], (r.train_sample(i)[0] as u32 / 2) % 4);
        }
        assert_eq!(r, d.resplit(0.5, 9).unwrap());
    }

    #[test]
    fn subsample_train_takes_the_first_samples() {
        let d = toy();
        let s = d.subsample_train(5);
        assert_eq!((s.n_train(), s.n_test()), (5, d.n_test()));
        assert_eq!(s.train_sample(4), d.train_sample(4));
        assert_eq!(d.subsample_train(1000).n_train(), d.n_train());
    }

    #[test]
    fn load_unknown_spec_says_what_is_accepted() {
        let err = load("no-such-dataset", None).unwrap_err().to_string();
        assert!(
            err.contains("no-such-dataset") && err.contains("mnist, wmms"),
            "{err}"
        );
    }

    #[test]
    fn data_dir_prefers_the_command_line() {
        assert_eq!(data_dir(Some(Path::new("/x"))), Some(PathBuf::from("/x")));
    }
}
