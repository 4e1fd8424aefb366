//! MNIST-format IDX files, plain or gzip-compressed.
//!
//! An IDX file is a big-endian header — two zero bytes, a type byte (0x08 =
//! u8), the number of dimensions — then one u32 per dimension, then the data.
//! Images are `idx3` (magic 2051), labels `idx1` (magic 2049). A directory
//! holding the four standard files (`train-images-idx3-ubyte[.gz]`,
//! `train-labels-idx1-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]`,
//! `t10k-labels-idx1-ubyte[.gz]`) loads as a [`Dataset`]; Fashion-MNIST and
//! EMNIST use the same layout.

use std::path::{Path, PathBuf};

use super::{Dataset, check_labels, maybe_gunzip, read_file};
use crate::{Error, Result};

/// Magic number of an IDX file of u8 images (3 dimensions).
pub const IMAGES_MAGIC: u32 = 2051;
/// Magic number of an IDX file of u8 labels (1 dimension).
pub const LABELS_MAGIC: u32 = 2049;

/// The standard file stems, in the order train images, train labels, test
/// images, test labels.
pub const STEMS: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// A parsed IDX array of u8.
#[derive(Debug, Clone)]
pub struct IdxArray {
    /// The dimensions from the header.
    pub dims: Vec<usize>,
    /// The data, row-major.
    pub data: Vec<u8>,
}

/// Parses IDX bytes (gzip-compressed or not). `expected_magic` is
/// [`IMAGES_MAGIC`] or [`LABELS_MAGIC`]; `path` only names the file in errors.
pub fn parse_idx(bytes: &[u8], expected_magic: u32, path: &Path) -> Result<IdxArray> {
    let bytes = maybe_gunzip(bytes, path)?;
    let bad = |msg: String| Error::bad_file(path, msg);
    if bytes.len() < 4 {
        return Err(bad(format!(
            "{} bytes is too short for an IDX header (at least 4 bytes)",
            bytes.len()
        )));
    }
    let magic = u32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes"));
    if magic != expected_magic {
        return Err(bad(format!(
            "IDX magic number {magic}, expected {expected_magic} ({})",
            if expected_magic == IMAGES_MAGIC {
                "u8 images, idx3"
            } else {
                "u8 labels, idx1"
            }
        )));
    }
    let ndim = (magic & 0xff) as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(bad(format!(
            "truncated IDX header: {} bytes, the {ndim} dimensions need {header}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes(bytes[o..o + 4].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let n = super::checked_len(&dims).ok_or_else(|| {
        bad(format!(
            "IDX dimensions {dims:?} overflow: a corrupt header"
        ))
    })?;
    let have = bytes.len() - header;
    if have != n {
        return Err(bad(format!(
            "IDX dimensions {dims:?} need {n} data bytes, the file has {have} ({})",
            if have < n {
                "truncated"
            } else {
                "trailing bytes"
            }
        )));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Reads an IDX image file: returns pixels scaled by 1/255 and the image
/// shape `[rows, cols]`.
pub fn read_images(path: &Path) -> Result<(Vec<f32>, usize, [usize; 2])> {
    let bytes = read_file(path)?;
    images_from_bytes(&bytes, path)
}

pub(crate) fn images_from_bytes(
    bytes: &[u8],
    path: &Path,
) -> Result<(Vec<f32>, usize, [usize; 2])> {
    let a = parse_idx(bytes, IMAGES_MAGIC, path)?;
    let (n, h, w) = (a.dims[0], a.dims[1], a.dims[2]);
    if n == 0 || h == 0 || w == 0 {
        return Err(Error::bad_file(
            path,
            format!(
                "image dimensions {:?}: every dimension must be at least 1",
                a.dims
            ),
        ));
    }
    let pixels = a.data.iter().map(|&p| f32::from(p) / 255.0).collect();
    Ok((pixels, n, [h, w]))
}

/// Reads an IDX label file.
pub fn read_labels(path: &Path) -> Result<Vec<u32>> {
    let bytes = read_file(path)?;
    labels_from_bytes(&bytes, path)
}

pub(crate) fn labels_from_bytes(bytes: &[u8], path: &Path) -> Result<Vec<u32>> {
    let a = parse_idx(bytes, LABELS_MAGIC, path)?;
    Ok(a.data.iter().map(|&l| u32::from(l)).collect())
}

/// Finds `stem` or `stem.gz` (also the `train-images.idx3-ubyte` spelling)
/// in `dir`.
pub fn find_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    [stem, dotted.as_str()]
        .iter()
        .flat_map(|s| [format!("{s}.gz"), (*s).to_string()])
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// The four files of an IDX directory, or a [`Error::NotFound`] naming the
/// first one missing.
pub fn files_in(dir: &Path) -> Result<[PathBuf; 4]> {
    let mut out: [PathBuf; 4] = Default::default();
    for (slot, stem) in out.iter_mut().zip(STEMS) {
        *slot = find_file(dir, stem).ok_or_else(|| Error::NotFound {
            path: dir.join(format!("{stem}.gz")),
            hint: format!(
                "; an IDX dataset directory needs the four files {} (each may be gzipped, .gz)",
                STEMS.join(", ")
            ),
        })?;
    }
    Ok(out)
}

/// Builds a dataset from the four IDX files' bytes (already read, e.g. to
/// checksum them), in [`STEMS`] order.
pub(crate) fn dataset_from_bytes(
    name: &str,
    files: &[(PathBuf, Vec<u8>); 4],
    class_names: Option<Vec<String>>,
) -> Result<Dataset> {
    let (x_train, n_train, shape) = images_from_bytes(&files[0].1, &files[0].0)?;
    let y_train = labels_from_bytes(&files[1].1, &files[1].0)?;
    let (x_test, n_test, shape_test) = images_from_bytes(&files[2].1, &files[2].0)?;
    let y_test = labels_from_bytes(&files[3].1, &files[3].0)?;
    for (imgs, n, labels, lpath) in [
        (&files[0].0, n_train, &y_train, &files[1].0),
        (&files[2].0, n_test, &y_test, &files[3].0),
    ] {
        if labels.len() != n {
            return Err(Error::bad_file(
                lpath,
                format!(
                    "{} labels but {} has {n} images: the counts must match",
                    labels.len(),
                    imgs.display()
                ),
            ));
        }
    }
    if shape != shape_test {
        return Err(Error::bad_file(
            &files[2].0,
            format!(
                "test images are {shape_test:?}, the training images {shape:?}: they must match"
            ),
        ));
    }
    let n_classes = match &class_names {
        Some(c) => c.len(),
        None => 1 + y_train.iter().chain(&y_test).copied().max().unwrap_or(0) as usize,
    };
    check_labels(&y_train, n_classes, &files[1].0)?;
    check_labels(&y_test, n_classes, &files[3].0)?;
    let class_names =
        class_names.unwrap_or_else(|| (0..n_classes).map(|c| c.to_string()).collect());
    Ok(Dataset {
        name: name.to_string(),
        x_train,
        y_train,
        x_test,
        y_test,
        sample_shape: shape.to_vec(),
        n_classes,
        class_names,
        groups_train: None,
        groups_test: None,
    })
}

/// Loads an IDX dataset directory (MNIST layout), without checksums.
pub fn load_dir(dir: &Path) -> Result<Dataset> {
    let paths = files_in(dir)?;
    let files = paths.map(|p| {
        let b = read_file(&p);
        (p, b)
    });
    let [a, b, c, d] = files;
    let files = [(a.0, a.1?), (b.0, b.1?), (c.0, c.1?), (d.0, d.1?)];
    let name = dir
        .file_name()
        .map_or_else(|| "idx".to_string(), |n| n.to_string_lossy().into_owned());
    dataset_from_bytes(&name, &files, None)
}

/// Encodes u8 data as an IDX file (uncompressed); used by tests and tools.
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn write_dir(dir: &Path, n_train: usize, n_train_labels: usize, gz: bool) {
        let img = |n: usize| {
            encode_idx(
                &[n, 2, 3],
                &(0..n * 6).map(|i| (i * 40 % 256) as u8).collect::<Vec<_>>(),
            )
        };
        let lab = |n: usize| encode_idx(&[n], &(0..n).map(|i| (i % 3) as u8).collect::<Vec<_>>());
        let contents = [img(n_train), lab(n_train_labels), img(2), lab(2)];
        for (stem, c) in STEMS.iter().zip(contents) {
            let (name, c) = if gz {
                (format!("{stem}.gz"), gzip(&c))
            } else {
                (stem.to_string(), c)
            };
            std::fs::write(dir.join(name), c).unwrap();
        }
    }

    #[test]
    fn idx_directory_loads_plain_and_gzipped() {
        for gz in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            write_dir(dir.path(), 4, 4, gz);
            let d = load_dir(dir.path()).unwrap();
            assert_eq!((d.n_train(), d.n_test()), (4, 2));
            assert_eq!(d.sample_shape, vec![2, 3]);
            assert_eq!(d.n_classes, 3);
            assert_eq!(d.y_train, vec![0, 1, 2, 0]);
            assert!((d.x_train[1] - 40.0 / 255.0).abs() < 1e-7);
        }
    }

    #[test]
    fn idx_count_mismatch_names_the_label_file() {
        let dir = tempfile::tempdir().unwrap();
        write_dir(dir.path(), 4, 3, true);
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("train-labels-idx1-ubyte.gz") && err.contains("3 labels"),
            "{err}"
        );
    }

    #[test]
    fn idx_wrong_magic_is_an_error_naming_the_file() {
        let p = Path::new("labels-as-images.idx");
        let err = parse_idx(&encode_idx(&[3], &[1, 2, 3]), IMAGES_MAGIC, p)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("labels-as-images.idx") && err.contains("2049") && err.contains("2051"),
            "{err}"
        );
    }

    #[test]
    fn idx_truncated_gzip_is_an_error_not_a_panic() {
        let full = gzip(&encode_idx(&[50, 4, 4], &[7u8; 800]));
        for cut in [5, full.len() / 2, full.len() - 3] {
            let err = parse_idx(&full[..cut], IMAGES_MAGIC, Path::new("cut.gz")).unwrap_err();
            assert!(err.to_string().starts_with("cut.gz: "), "{err}");
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn idx_truncated_data_is_an_error() {
        let mut b = encode_idx(&[2, 2, 2], &[1; 8]);
        b.pop();
        let err = parse_idx(&b, IMAGES_MAGIC, Path::new("short.idx"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("short.idx") && err.contains("truncated"),
            "{err}"
        );
    }

    #[test]
    fn idx_missing_file_says_which_files_are_needed() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("train-images-idx3-ubyte") && err.contains("not found"),
            "{err}"
        );
    }
}
