//! ModelNet voxel grids: one gzip-compressed `.npy` per class, shape
//! `(n, 1, 32, 32, 32)` (or `(n, 32, 32, 32)`), f64 occupancy 0/1.
//!
//! In the files prepared for this project row 0 of each class file is an
//! all-zero placeholder; [`read_class`] drops it when `drop_first` is set.

use std::path::Path;

use super::npy::read_npy_f32;
use crate::{Error, Result};

/// Reads one class file: returns the voxels (`[n, D, H, W]` row-major) and
/// the grid shape `[D, H, W]`. With `drop_first`, row 0 (a placeholder) is
/// removed.
pub fn read_class(path: &Path, drop_first: bool) -> Result<(Vec<f32>, usize, [usize; 3])> {
    let (mut v, shape) = read_npy_f32(path)?;
    let grid: [usize; 3] = match shape.as_slice() {
        [_, 1, d, h, w] | [_, d, h, w] => [*d, *h, *w],
        _ => {
            return Err(Error::bad_file(
                path,
                format!("shape {shape:?}, expected (n, 1, D, H, W) or (n, D, H, W) voxel grids"),
            ));
        }
    };
    let per = grid.iter().product::<usize>();
    let mut n = shape[0];
    if drop_first {
        if n < 2 {
            return Err(Error::bad_file(
                path,
                format!("{n} rows: need the placeholder row 0 and at least one object"),
            ));
        }
        v.drain(..per);
        n -= 1;
    }
    if let Some(i) = v
        .iter()
        .position(|x| !x.is_finite() || !(0.0..=1.0).contains(x))
    {
        return Err(Error::bad_file(
            path,
            format!(
                "voxel value {} at object {}, flat index {}: occupancies must be in [0, 1]",
                v[i],
                i / per,
                i % per
            ),
        ));
    }
    Ok((v, n, grid))
}
