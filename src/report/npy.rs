//! Outputs written atomically: `.npy` arrays (they load with `numpy.load`),
//! text and plots. Reading `.npy` lives in [`crate::data::npy`].

use crate::{Error, Result};
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::WriteNpyExt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A set of output files that appear together or not at all: each is written
/// to a temporary name beside its target and renamed on [`Outputs::commit`];
/// dropping without commit removes the temporaries.
#[derive(Debug, Default)]
pub struct Outputs {
    pending: Vec<(PathBuf, PathBuf)>,
}

fn temp_name(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

impl Outputs {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn create(&mut self, target: &Path) -> Result<(PathBuf, BufWriter<File>)> {
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let tmp = temp_name(target);
        let f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        self.pending.push((tmp.clone(), target.to_path_buf()));
        Ok((tmp, BufWriter::new(f)))
    }

    /// Stages an array `.npy` of any ndarray-npy element type.
    pub fn npy<T: ndarray_npy::WritableElement>(
        &mut self,
        target: &Path,
        data: Vec<T>,
        shape: &[usize],
    ) -> Result<()> {
        let arr = ArrayD::from_shape_vec(IxDyn(shape), data)
            .map_err(|e| Error::Internal(format!("npy shape: {e}")))?;
        let (tmp, mut w) = self.create(target)?;
        arr.write_npy(&mut w)
            .map_err(|e| Error::Internal(format!("{}: {e}", tmp.display())))?;
        w.flush().map_err(|e| Error::io(&tmp, e))
    }

    /// Stages a text file (JSON, CSV).
    pub fn text(&mut self, target: &Path, contents: &str) -> Result<()> {
        let (tmp, mut w) = self.create(target)?;
        w.write_all(contents.as_bytes())
            .map_err(|e| Error::io(&tmp, e))?;
        w.flush().map_err(|e| Error::io(&tmp, e))
    }

    /// Stages a file written by `write` into a temporary path (e.g. a PNG plot).
    pub fn with_path(
        &mut self,
        target: &Path,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        // Keep the extension: plotting backends choose the format from it.
        let ext = target
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = temp_name(target).with_extension(ext);
        self.pending.push((tmp.clone(), target.to_path_buf()));
        write(&tmp)
    }

    /// Renames every staged file to its target.
    pub fn commit(mut self) -> Result<()> {
        for (tmp, target) in std::mem::take(&mut self.pending) {
            std::fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))?;
        }
        Ok(())
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        for (tmp, _) in &self.pending {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Writes one file atomically (temporary name, then rename).
pub fn write_atomic(target: &Path, contents: &[u8]) -> Result<()> {
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = temp_name(target);
    std::fs::write(&tmp, contents).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, target).map_err(|e| Error::io(target, e))
}
