//! The files a study depends on, whose sha256 its manifest records (see
//! [`crate::study::runner::StudyFiles::inputs`]): the dataset's files and a
//! Monte Carlo spec's saved model.

use crate::data::named::NamedDataset;
use crate::study::spec::{McModel, McSpec};
use std::path::{Path, PathBuf};

/// The files [`crate::data::load`] reads for `dataset` (a name under
/// `data_dir`, a file, or a directory of files): none for the embedded
/// digits, the named dataset's files that exist, the file itself, or every
/// regular file under the directory (sorted).
pub fn dataset_files(dataset: &str, data_dir: Option<&Path>) -> Vec<PathBuf> {
    if let Some(named) = NamedDataset::from_name(dataset) {
        let Some(dir) = data_dir else {
            return Vec::new();
        };
        return named
            .files()
            .iter()
            .map(|f| dir.join(f))
            .filter(|p| p.is_file())
            .collect();
    }
    let path = Path::new(dataset);
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    walk(path, &mut out);
    out.sort();
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&p, out),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
}

/// The saved readout a Monte Carlo spec evaluates (`model = "m.json"`),
/// resolved against the spec's folder; `None` without one.
pub fn model_file(spec: &McSpec) -> Option<PathBuf> {
    match spec.model.as_ref()? {
        McModel::File(m) if m.is_absolute() => Some(m.clone()),
        McModel::File(m) => Some(
            spec.path()
                .parent()
                .map_or_else(|| m.clone(), |d| d.join(m)),
        ),
        McModel::Device(_) => None,
    }
}

/// Every file a Monte Carlo study depends on: the dataset's and the model's.
pub fn mc_files(spec: &McSpec, data_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut v = dataset_files(&spec.dataset, data_dir);
    v.extend(model_file(spec).filter(|p| p.is_file()));
    v
}
