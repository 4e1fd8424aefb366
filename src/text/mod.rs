//! Text classification through the device: the paper's AG News task, with a
//! word embedding trained end to end through the DDK layer by reverse mode
//! ([`crate::engine::vjp`]).
//!
//! - [`tokenize`]: the authors' cleaning (Kim-CNN `clean_str`, lower case) and
//!   word tokens;
//! - [`vocab`]: the most frequent words of the training split with PAD and UNK,
//!   samples padded or cut to a fixed length;
//! - [`net`]: Embedding, per-sample min-max, DDK over the tokens for each
//!   embedding dimension, Linear + tanh per token, max-pool, Linear, softmax
//!   cross-entropy; forward through an [`crate::engine::Engine`], backward
//!   through a [`crate::engine::vjp::VjpEngine`];
//! - [`train`]: Adam, early stopping on a validation side, seeded stratified
//!   splits.
//!
//! Data ([`TextData`]): a CSV without header, the label in the first column
//! and the text in the others (joined by a space): AG News's `class, title,
//! description`, or a user's `label, text`. See docs/text.md.

pub mod net;
pub mod tokenize;
pub mod train;
pub mod vocab;

use std::path::Path;

use crate::{Error, Result};

/// A labelled text dataset, tokenised.
#[derive(Debug, Clone, PartialEq)]
pub struct TextData {
    /// Name (for reports).
    pub name: String,
    /// The word tokens of each sample ([`tokenize::tokenize`]).
    pub texts: Vec<Vec<String>>,
    /// Class index of each sample, in `0..classes.len()`.
    pub labels: Vec<u32>,
    /// The class labels as written in the file, in index order (numeric order
    /// when every label is an integer, else lexicographic).
    pub classes: Vec<String>,
}

impl TextData {
    /// From raw `(label, text)` pairs: tokenises and indexes the classes.
    /// At least two classes, each with at least two samples.
    pub fn from_pairs(name: &str, rows: Vec<(String, String)>) -> Result<Self> {
        let mut classes: Vec<String> = rows.iter().map(|(l, _)| l.clone()).collect();
        classes.sort_unstable();
        classes.dedup();
        if classes.iter().all(|c| c.parse::<i64>().is_ok()) {
            classes.sort_by_key(|c| c.parse::<i64>().unwrap_or(0));
        }
        if classes.len() < 2 {
            return Err(Error::invalid(
                format!("{name}: classes"),
                classes.len(),
                "at least 2 distinct labels in the first column",
            ));
        }
        let labels: Vec<u32> = rows
            .iter()
            .map(|(l, _)| classes.iter().position(|c| c == l).unwrap_or(0) as u32)
            .collect();
        for (i, c) in classes.iter().enumerate() {
            let n = labels.iter().filter(|&&l| l as usize == i).count();
            if n < 2 {
                return Err(Error::invalid(
                    format!("{name}: samples of class '{c}'"),
                    n,
                    "at least 2 per class (for the stratified splits)",
                ));
            }
        }
        let texts = rows.iter().map(|(_, t)| tokenize::tokenize(t)).collect();
        Ok(TextData {
            name: name.to_string(),
            texts,
            labels,
            classes,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The samples at `rows`, in that order.
    pub fn subset(&self, rows: &[usize]) -> TextData {
        TextData {
            name: self.name.clone(),
            texts: rows.iter().map(|&r| self.texts[r].clone()).collect(),
            labels: rows.iter().map(|&r| self.labels[r]).collect(),
            classes: self.classes.clone(),
        }
    }
}

/// Reads a text CSV: no header (a first row whose label is `label` or
/// `class` is taken as one and skipped), the label in column 1, the text in
/// columns 2.. joined by a space. Quoted fields as RFC 4180.
pub fn load_csv(path: &Path) -> Result<TextData> {
    let bytes = crate::data::read_file(path)?;
    parse_csv(&bytes, path)
}

/// [`load_csv`] on bytes already read (`path` names them in errors).
pub fn parse_csv(bytes: &[u8], path: &Path) -> Result<TextData> {
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut rows = Vec::new();
    for (i, rec) in rd.records().enumerate() {
        let rec = rec.map_err(|e| Error::bad_file(path, format!("row {}: {e}", i + 1)))?;
        if rec.len() < 2 {
            return Err(Error::bad_file(
                path,
                format!(
                    "row {}: {} column(s): expected label,text (the label first, then one or more text columns)",
                    i + 1,
                    rec.len()
                ),
            ));
        }
        let label = rec[0].trim().to_string();
        if i == 0 && ["label", "class"].contains(&label.to_ascii_lowercase().as_str()) {
            continue;
        }
        if label.is_empty() {
            return Err(Error::bad_file(
                path,
                format!("row {}: empty label in column 1", i + 1),
            ));
        }
        let text = rec.iter().skip(1).collect::<Vec<_>>().join(" ");
        rows.push((label, text));
    }
    if rows.is_empty() {
        return Err(Error::bad_file(path, "no rows: expected label,text rows"));
    }
    let name = path
        .file_stem()
        .map_or_else(|| "text".to_string(), |s| s.to_string_lossy().into_owned());
    TextData::from_pairs(&name, rows).map_err(|e| match e {
        Error::InvalidParameter {
            field,
            value,
            expected,
        } => Error::bad_file(path, format!("{field} = {value}: {expected}")),
        other => other,
    })
}

/// AG News (the 7,600-row test split, `agnews/test.csv` under the data
/// directory, checked against its sha256); classes 1 World, 2 Sports,
/// 3 Business, 4 Sci/Tech become 0..3.
pub fn load_agnews(data_dir: Option<&Path>) -> Result<TextData> {
    let (path, bytes) = crate::data::named::read_agnews(data_dir)?;
    let mut d = parse_csv(&bytes, &path)?;
    d.name = "agnews".into();
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_header_and_extra_columns() {
        let csv = b"label,text\n\"2\",\"A, b\",\"c\"\n1,x y\n2,z\n1,w\n";
        let d = parse_csv(csv, Path::new("t.csv")).unwrap();
        assert_eq!(d.classes, ["1", "2"]);
        assert_eq!(d.labels, [1, 0, 1, 0]);
        assert_eq!(d.texts[0], ["a", ",", "b", "c"]);
    }

    #[test]
    fn csv_errors_name_the_row() {
        let e = parse_csv(b"1,a\n2\n", Path::new("t.csv")).unwrap_err();
        assert!(e.to_string().contains("row 2"), "{e}");
        let e = parse_csv(b"1,a\n1,b\n", Path::new("t.csv")).unwrap_err();
        assert!(e.to_string().contains("at least 2"), "{e}");
        let e = parse_csv(b"", Path::new("t.csv")).unwrap_err();
        assert!(e.to_string().contains("no rows"), "{e}");
    }
}
