//! The named datasets: where their files live under the data directory, their
//! sha256 checksums (compiled in, from `shared/datasets/README.md`), how to
//! load each, and the fast [`list`] / thorough [`check`] status reports.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Dataset, SPLIT_SEED, digits, idx, mat, modelnet};
use crate::{Error, Result};

/// Every file of the data directory with its sha256, as `(folder/file, hex)`.
pub const CHECKSUMS: [(&str, &str); 11] = [
    (
        "agnews/test.csv",
        "521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb2c40d548c3c85699",
    ),
    (
        "mnist/t10k-images-idx3-ubyte.gz",
        "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b",
    ),
    (
        "mnist/t10k-labels-idx1-ubyte.gz",
        "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c",
    ),
    (
        "mnist/train-images-idx3-ubyte.gz",
        "db8f937d487057fb14a9f0fbe97f0bc8d311ab41b750d41e1ff37c43b9e55e19",
    ),
    (
        "mnist/train-labels-idx1-ubyte.gz",
        "ec02e7948609e5754d47881c09b8afdd8dfa60600b9e5388c8c54a67069ec772",
    ),
    (
        "modelnet10/chair.npy.gz",
        "cb33b51e8a5d65db881783fa19016d88e356ca33a7ca419e139520d086e38b69",
    ),
    (
        "modelnet10/monitor.npy.gz",
        "c7b5028678ce848ec98ca5d36a8a1f1786420de119b0532f53972ac093d08230",
    ),
    (
        "sitw/speaker_no_fft_norm_128_1250.mat",
        "164f357fb04ae727a70c4fb1da3bc08cbbbe4186c1cd75fa79d8b5f10830e860",
    ),
    (
        "sitw/targets_no_fft_norm_128_1250.mat",
        "39d45216ca7d5ad2835ae1f4656fcb85834d06770cd58d546f815c018c17f23a",
    ),
    (
        "wmms/WhaleSong_Raw_1Dconv.mat",
        "85ea17b4f594d73187edd48e131a8cd44a5be78585762706123619e191bb6ac3",
    ),
    (
        "wmms/WhaleSong_no_fft_abs_mean_64.mat",
        "acd6edbcb31ff65710aa1b4128950cfd0f52305719ad88f77c0c3cc8d656e510",
    ),
];

/// The datasets `load` knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NamedDataset {
    /// MNIST, IDX gzip, the standard 60k/10k split.
    Mnist,
    /// Watkins Marine Mammal Sounds, 4 whale species, 600 clips pooled to 64 bins.
    Wmms,
    /// Speakers in the Wild, 10 speakers x 125 clips, 128 features.
    Sitw,
    /// ModelNet10 chairs vs monitors, 32^3 voxel grids.
    Modelnet10,
    /// The embedded scikit-learn 8x8 digits (the default).
    Digits,
}

impl NamedDataset {
    /// All named datasets.
    pub const ALL: [NamedDataset; 5] = [
        Self::Mnist,
        Self::Wmms,
        Self::Sitw,
        Self::Modelnet10,
        Self::Digits,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::Wmms => "wmms",
            Self::Sitw => "sitw",
            Self::Modelnet10 => "modelnet10",
            Self::Digits => "digits",
        }
    }

    /// Parses a name (case-insensitive; `default` means `digits`).
    pub fn from_name(s: &str) -> Option<Self> {
        let s = s.to_ascii_lowercase();
        if s == "default" {
            return Some(Self::Digits);
        }
        Self::ALL.into_iter().find(|d| d.name() == s)
    }

    /// The files `load` reads, relative to the data directory (empty for the
    /// embedded digits).
    pub fn files(self) -> &'static [&'static str] {
        match self {
            Self::Mnist => &[
                "mnist/train-images-idx3-ubyte.gz",
                "mnist/train-labels-idx1-ubyte.gz",
                "mnist/t10k-images-idx3-ubyte.gz",
                "mnist/t10k-labels-idx1-ubyte.gz",
            ],
            Self::Wmms => &["wmms/WhaleSong_no_fft_abs_mean_64.mat"],
            Self::Sitw => &[
                "sitw/speaker_no_fft_norm_128_1250.mat",
                "sitw/targets_no_fft_norm_128_1250.mat",
            ],
            Self::Modelnet10 => &["modelnet10/chair.npy.gz", "modelnet10/monitor.npy.gz"],
            Self::Digits => &[],
        }
    }

    /// How to obtain the dataset (for "not found" messages).
    pub fn how_to_obtain(self) -> &'static str {
        match self {
            Self::Mnist => {
                "the four standard MNIST IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (yann.lecun.com/exdb/mnist or any mirror) go in <data dir>/mnist/"
            }
            Self::Wmms => {
                "the authors' preprocessed Watkins whale file WhaleSong_no_fft_abs_mean_64.mat goes in <data dir>/wmms/"
            }
            Self::Sitw => {
                "the authors' preprocessed SITW files speaker_no_fft_norm_128_1250.mat and targets_no_fft_norm_128_1250.mat go in <data dir>/sitw/"
            }
            Self::Modelnet10 => {
                "the voxelised ModelNet10 files chair.npy.gz and monitor.npy.gz go in <data dir>/modelnet10/"
            }
            Self::Digits => "embedded in the binary",
        }
    }

    /// Loads the dataset from `data_dir` (unused for digits), checking every
    /// file's sha256 first.
    pub fn load(self, data_dir: Option<&Path>) -> Result<Dataset> {
        match self {
            Self::Digits => digits::load_digits(),
            Self::Mnist => {
                let f = |i: usize| read_verified(self, self.files()[i], data_dir);
                let files = [f(0)?, f(1)?, f(2)?, f(3)?];
                idx::dataset_from_bytes(
                    "mnist",
                    &files,
                    Some((0..10).map(|c| c.to_string()).collect()),
                )
            }
            Self::Wmms => {
                let (path, bytes) = read_verified(self, self.files()[0], data_dir)?;
                let m = mat::parse_mat(&bytes, &path)?;
                let x = m.get_2d("whaleInputNorm", Some(64), None)?;
                let t = m.get_2d("whaleTargetNorm", Some(4), Some(x.dims[1]))?;
                let y = mat::one_hot_columns(t, &path)?;
                // Column-major storage: clip j is column j, already contiguous.
                let x: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
                // Class order as listed in the dataset README (alphabetical);
                // the one-hot rows are not labelled in the file itself.
                let names = ["blue", "dwarf", "fin", "humpback"]
                    .map(String::from)
                    .to_vec();
                Dataset::split_all("wmms", &x, &y, None, vec![64], names, 0.2, SPLIT_SEED)
            }
            Self::Sitw => {
                let (xp, xb) = read_verified(self, self.files()[0], data_dir)?;
                let (tp, tb) = read_verified(self, self.files()[1], data_dir)?;
                let x = mat::parse_mat(&xb, &xp)?;
                let x = x.get_2d("samples", Some(128), None)?;
                let t = mat::parse_mat(&tb, &tp)?;
                let t = t.get_2d("targets", Some(10), Some(x.dims[1]))?;
                let y = mat::one_hot_columns(t, &tp)?;
                let x: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
                let names = (0..10).map(|s| format!("speaker{s}")).collect();
                Dataset::split_all("sitw", &x, &y, None, vec![128], names, 0.2, SPLIT_SEED)
            }
            Self::Modelnet10 => {
                let mut x = Vec::new();
                let mut y = Vec::new();
                let mut grid0 = None;
                for (class, rel) in self.files().iter().enumerate() {
                    let path = verified_path(self, rel, data_dir)?;
                    let (v, n, grid) = modelnet::read_class(&path, true)?;
                    if grid0.is_some_and(|g| g != grid) {
                        return Err(Error::bad_file(
                            &path,
                            format!(
                                "voxel grid {grid:?} differs from the first class's {:?}",
                                grid0.unwrap_or(grid)
                            ),
                        ));
                    }
                    grid0 = Some(grid);
                    x.extend_from_slice(&v);
                    y.extend(std::iter::repeat_n(class as u32, n));
                }
                let groups: Vec<u32> = (0..y.len() as u32).collect();
                let names = vec!["chair".to_string(), "monitor".to_string()];
                let grid = grid0.expect("two class files").to_vec();
                Dataset::split_all(
                    "modelnet10",
                    &x,
                    &y,
                    Some(&groups),
                    grid,
                    names,
                    0.2,
                    SPLIT_SEED,
                )
            }
        }
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The expected sha256 of a data-directory file.
pub fn expected_sha256(rel: &str) -> Option<&'static str> {
    CHECKSUMS.iter().find(|(f, _)| *f == rel).map(|(_, h)| *h)
}

fn not_found(ds: NamedDataset, rel: &str, data_dir: Option<&Path>) -> Error {
    match data_dir {
        Some(dir) => Error::NotFound {
            path: dir.join(rel),
            hint: format!(
                "; dataset `{}` is looked for under the data directory {} (from --data-dir or {}): {}",
                ds.name(),
                dir.display(),
                super::DATA_ENV,
                ds.how_to_obtain()
            ),
        },
        None => Error::NotFound {
            path: PathBuf::from(rel),
            hint: format!(
                "; no data directory: set {} or pass --data-dir to the folder holding {}/ ({})",
                super::DATA_ENV,
                ds.name(),
                ds.how_to_obtain()
            ),
        },
    }
}

/// Reads `rel` under the data directory and checks its sha256.
fn read_verified(
    ds: NamedDataset,
    rel: &str,
    data_dir: Option<&Path>,
) -> Result<(PathBuf, Vec<u8>)> {
    let path = data_dir.ok_or_else(|| not_found(ds, rel, None))?.join(rel);
    if !path.is_file() {
        return Err(not_found(ds, rel, data_dir));
    }
    let bytes = super::read_file(&path)?;
    verify(&path, rel, &bytes)?;
    Ok((path, bytes))
}

/// Where AG News comes from (for "not found" messages).
pub const AGNEWS_HOW: &str = "the AG News test split test.csv (7,600 rows: class, title, description) goes in <data dir>/agnews/; `memkin run --dataset agnews` trains the text network (memkin::text)";

/// AG News's `agnews/test.csv` under the data directory, read and checked
/// against its sha256 (the text pipeline, [`crate::text::load_agnews`], parses it).
pub fn read_agnews(data_dir: Option<&Path>) -> Result<(PathBuf, Vec<u8>)> {
    let rel = "agnews/test.csv";
    let missing = |path: PathBuf| Error::NotFound {
        path,
        hint: format!(
            "; dataset `agnews` is looked for under the data directory (from --data-dir or {}): {AGNEWS_HOW}",
            super::DATA_ENV
        ),
    };
    let path = data_dir
        .ok_or_else(|| missing(PathBuf::from(rel)))?
        .join(rel);
    if !path.is_file() {
        return Err(missing(path));
    }
    let bytes = super::read_file(&path)?;
    verify(&path, rel, &bytes)?;
    Ok((path, bytes))
}

/// Checks `rel`'s sha256 and returns its path (the caller streams it).
fn verified_path(ds: NamedDataset, rel: &str, data_dir: Option<&Path>) -> Result<PathBuf> {
    read_verified(ds, rel, data_dir).map(|(p, _)| p)
}

fn verify(path: &Path, rel: &str, bytes: &[u8]) -> Result<()> {
    let Some(expected) = expected_sha256(rel) else {
        return Ok(());
    };
    let actual = sha256_hex(bytes);
    if actual != expected {
        return Err(Error::bad_file(
            path,
            format!(
                "sha256 mismatch: expected {expected}, got {actual} (a corrupt or different file; fetch it again)"
            ),
        ));
    }
    Ok(())
}

/// The state of one dataset in the data directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetStatus {
    /// The dataset's name (`mnist`, ..., `agnews`, `digits`).
    pub name: String,
    /// Its folder under the data directory (or the embedded file's name).
    pub path: PathBuf,
    /// Whether every file is present.
    pub present: bool,
    /// `Some(true)` when every file is present and matches its checksum,
    /// `Some(false)` when one is missing or differs, `None` when not checked
    /// ([`list`]).
    pub verified: Option<bool>,
    /// Each file (relative to the data directory) with `Some(checksum ok)`
    /// after [`check`], `None` when not hashed (by [`list`], or missing).
    pub files: Vec<(String, Option<bool>)>,
    /// Whether [`super::load`] accepts this name (`agnews` is listed but is
    /// loaded by the text pipeline, [`crate::text::load_agnews`]).
    pub loadable: bool,
    /// One line per problem: a missing file, a checksum mismatch.
    pub problems: Vec<String>,
    /// How to obtain it.
    pub hint: String,
}

/// Folders of the data directory, with the named dataset each holds.
fn folders() -> Vec<(&'static str, Option<NamedDataset>)> {
    vec![
        ("mnist", Some(NamedDataset::Mnist)),
        ("wmms", Some(NamedDataset::Wmms)),
        ("sitw", Some(NamedDataset::Sitw)),
        ("modelnet10", Some(NamedDataset::Modelnet10)),
        ("agnews", None),
    ]
}

fn status(data_dir: Option<&Path>, hash: bool) -> Vec<DatasetStatus> {
    let mut out: Vec<DatasetStatus> = folders()
        .into_iter()
        .map(|(folder, ds)| {
            let rels: Vec<&str> = CHECKSUMS
                .iter()
                .map(|(f, _)| *f)
                .filter(|f| f.starts_with(&format!("{folder}/")))
                .collect();
            let mut problems = Vec::new();
            let mut files = Vec::new();
            let mut all_present = data_dir.is_some();
            for rel in &rels {
                let ok = match data_dir.map(|d| d.join(rel)) {
                    Some(p) if p.is_file() => {
                        if hash {
                            match std::fs::read(&p) {
                                Ok(b) => match verify(&p, rel, &b) {
                                    Ok(()) => Some(true),
                                    Err(e) => {
                                        problems.push(e.to_string());
                                        Some(false)
                                    }
                                },
                                Err(e) => {
                                    problems.push(Error::io(&p, e).to_string());
                                    Some(false)
                                }
                            }
                        } else {
                            None
                        }
                    }
                    Some(p) => {
                        all_present = false;
                        problems.push(format!("{}: missing", p.display()));
                        None
                    }
                    None => {
                        all_present = false;
                        None
                    }
                };
                files.push((rel.to_string(), ok));
            }
            if data_dir.is_none() {
                problems.push(format!(
                    "no data directory: set {} or pass --data-dir",
                    super::DATA_ENV
                ));
            }
            let verified = (hash && data_dir.is_some())
                .then(|| all_present && files.iter().all(|(_, ok)| *ok == Some(true)));
            DatasetStatus {
                name: folder.to_string(),
                path: data_dir.map_or_else(|| PathBuf::from(folder), |d| d.join(folder)),
                present: all_present,
                verified,
                files,
                loadable: ds.is_some(),
                problems,
                hint: ds.map_or(AGNEWS_HOW, |d| d.how_to_obtain()).to_string(),
            }
        })
        .collect();
    let ok = !hash || sha256_hex(digits::DIGITS_NPZ) == digits::DIGITS_SHA256;
    out.push(DatasetStatus {
        name: "digits".into(),
        path: PathBuf::from(digits::DIGITS_PATH),
        present: true,
        verified: hash.then_some(ok),
        files: vec![("datasets/digits.npz".into(), hash.then_some(ok))],
        loadable: true,
        problems: if ok {
            vec![]
        } else {
            vec!["embedded digits.npz: sha256 mismatch".into()]
        },
        hint: NamedDataset::Digits.how_to_obtain().into(),
    });
    out
}

/// The datasets and whether their files are present (fast: no hashing).
pub fn list(data_dir: Option<&Path>) -> Vec<DatasetStatus> {
    status(data_dir, false)
}

/// The datasets with the sha256 of every file checked.
pub fn check(data_dir: Option<&Path>) -> Vec<DatasetStatus> {
    status(data_dir, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_named_dataset_says_where_and_how() {
        let dir = tempfile::tempdir().unwrap();
        let err = NamedDataset::Mnist.load(Some(dir.path())).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("train-images-idx3-ubyte.gz")
                && msg.contains("MEMKIN_DATA")
                && !msg.contains('\n'),
            "{msg}"
        );
        let msg = NamedDataset::Sitw.load(None).unwrap_err().to_string();
        assert!(
            msg.contains("no data directory") && msg.contains("--data-dir"),
            "{msg}"
        );
    }

    #[test]
    fn checksum_mismatch_names_file_and_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("wmms")).unwrap();
        std::fs::write(
            dir.path().join("wmms/WhaleSong_no_fft_abs_mean_64.mat"),
            b"not it",
        )
        .unwrap();
        let msg = NamedDataset::Wmms
            .load(Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("WhaleSong_no_fft_abs_mean_64.mat: sha256 mismatch: expected acd6edbc"),
            "{msg}"
        );
        assert!(msg.contains(&sha256_hex(b"not it")), "{msg}");
        let st = check(Some(dir.path()));
        let w = st.iter().find(|s| s.name == "wmms").unwrap();
        assert_eq!((w.present, w.verified), (false, Some(false)));
        assert!(
            w.files
                .contains(&("wmms/WhaleSong_no_fft_abs_mean_64.mat".into(), Some(false)))
        );
    }

    #[test]
    fn list_without_data_dir_reports_only_the_embedded_digits_present() {
        let st = list(None);
        assert_eq!(st.len(), 6);
        assert!(st.iter().all(|s| s.present == (s.name == "digits")));
        assert!(st.iter().all(|s| s.verified.is_none()));
    }
}
