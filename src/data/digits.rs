//! The embedded default dataset: scikit-learn's 8x8 handwritten digits
//! (1797 images, pixel values 0..16; UCI Optical Recognition of Handwritten
//! Digits, CC BY 4.0). See `datasets/README.md` for provenance.

use std::path::Path;

use ndarray::{Array1, Array3};
use ndarray_npy::NpzReader;

use super::{Dataset, SPLIT_SEED};
use crate::{Error, Result};

/// The committed file `datasets/digits.npz`, compiled into the binary.
pub const DIGITS_NPZ: &[u8] = include_bytes!("../../datasets/digits.npz");

/// sha256 of [`DIGITS_NPZ`] (also listed in `datasets/README.md`).
pub const DIGITS_SHA256: &str = "6f801551877abf69fbf3711373bb642a18dc933430a3385cd6febc235225ea6f";

/// How the embedded file is named in errors and statuses.
pub const DIGITS_PATH: &str = "<embedded>/datasets/digits.npz";

/// Loads the embedded digits, pixels scaled by 1/16, split 80/20 stratified
/// with seed [`SPLIT_SEED`] (1438 train / 359 test: 20% of each class, rounded).
pub fn load_digits() -> Result<Dataset> {
    let path = Path::new(DIGITS_PATH);
    let bad =
        |e: &dyn std::fmt::Display| Error::bad_file(path, format!("embedded file unreadable: {e}"));
    let mut npz = NpzReader::new(std::io::Cursor::new(DIGITS_NPZ)).map_err(|e| bad(&e))?;
    let x: Array3<u8> = npz.by_name("x").map_err(|e| bad(&e))?;
    let y: Array1<u8> = npz.by_name("y").map_err(|e| bad(&e))?;
    let (n, h, w) = x.dim();
    if y.len() != n {
        return Err(bad(&format!("{n} images but {} labels", y.len())));
    }
    let x: Vec<f32> = x.iter().map(|&p| f32::from(p) / 16.0).collect();
    let y: Vec<u32> = y.iter().map(|&l| u32::from(l)).collect();
    super::check_labels(&y, 10, path)?;
    Dataset::split_all(
        "digits",
        &x,
        &y,
        None,
        vec![h, w],
        (0..10).map(|c| c.to_string()).collect(),
        0.2,
        SPLIT_SEED,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_digits_match_their_checksum_and_shape() {
        assert_eq!(super::super::named::sha256_hex(DIGITS_NPZ), DIGITS_SHA256);
        let d = load_digits().unwrap();
        assert_eq!(
            (d.n_train(), d.n_test(), d.sample_shape.clone()),
            (1438, 359, vec![8, 8])
        );
        assert!(d.x_train.iter().all(|&v| (0.0..=1.0).contains(&v)));
        let all: Vec<u32> = d.y_train.iter().chain(&d.y_test).copied().collect();
        assert_eq!(
            super::super::count_labels(&all, 10),
            [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
        );
    }
}
