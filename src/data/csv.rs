//! CSV datasets: one row per sample, the label (an integer class index) in the
//! first column, then the features.
//!
//! A header row is detected automatically (a first row whose fields are not
//! all numbers). With a header, an optional column named `split` holding
//! `train` or `test` gives the split; without one, the rows are split 80/20,
//! stratified by label, from a seed.

use std::path::Path;

use super::{Dataset, check_labels, read_file, split::stratified_split};
use crate::{Error, Result};

/// The seed of the initial 80/20 split of a CSV without a `split` column.
pub const CSV_SPLIT_SEED: u64 = 0;

/// Loads a CSV dataset (see the module docs for the layout).
pub fn load_csv(path: &Path) -> Result<Dataset> {
    let bytes = read_file(path)?;
    parse_csv(&bytes, path)
}

/// Parses CSV bytes; `path` names the file in errors.
pub fn parse_csv(bytes: &[u8], path: &Path) -> Result<Dataset> {
    let bad = |msg: String| Error::bad_file(path, msg);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut rows = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| bad(format!("line {}: {e}", i + 1)))?;
        if rec.iter().all(str::is_empty) {
            continue; // blank line
        }
        rows.push((i + 1, rec));
    }
    if rows.is_empty() {
        return Err(bad(
            "no rows; expected one sample per row: label, then features".into(),
        ));
    }
    let header_detected = rows[0].1.iter().any(|f| f.parse::<f64>().is_err());
    let (header, rows) = if header_detected {
        (Some(&rows[0].1), &rows[1..])
    } else {
        (None, &rows[..])
    };
    let split_col = header.and_then(|h| h.iter().position(|f| f.eq_ignore_ascii_case("split")));
    if split_col == Some(0) {
        return Err(bad(
            "column 1 is `split`, but the first column must be the label".into(),
        ));
    }
    let width = rows.first().map_or(0, |r| r.1.len());
    let n_features = width.saturating_sub(1 + usize::from(split_col.is_some()));
    if rows.is_empty() || n_features == 0 {
        return Err(bad(format!(
            "{} data rows with {width} columns: need at least one row with a label and one feature",
            rows.len()
        )));
    }
    let mut x = Vec::with_capacity(rows.len() * n_features);
    let mut y = Vec::with_capacity(rows.len());
    let mut is_test = Vec::with_capacity(rows.len());
    for (line, rec) in rows {
        if rec.len() != width {
            return Err(bad(format!(
                "line {line} has {} columns, expected {width} like the first data row",
                rec.len()
            )));
        }
        let label = &rec[0];
        let l: u32 = label
            .parse()
            .ok()
            .filter(|&l: &u32| (l as usize) < super::MAX_CLASSES)
            .ok_or_else(|| {
                bad(format!(
                    "line {line}, column 1 (label) = {label:?}: expected an integer in 0..{}",
                    super::MAX_CLASSES
                ))
            })?;
        y.push(l);
        for (c, f) in rec.iter().enumerate().skip(1) {
            if Some(c) == split_col {
                is_test.push(match f.to_ascii_lowercase().as_str() {
                    "train" => false,
                    "test" => true,
                    _ => {
                        return Err(bad(format!(
                            "line {line}, column `split` = {f:?}: expected train or test"
                        )));
                    }
                });
                continue;
            }
            let v: f32 = f
                .parse()
                .ok()
                .filter(|v: &f32| v.is_finite())
                .ok_or_else(|| {
                    bad(format!(
                        "line {line}, column {} = {f:?}: expected a finite number",
                        c + 1
                    ))
                })?;
            x.push(v);
        }
    }
    let n_classes = 1 + y.iter().copied().max().unwrap_or(0) as usize;
    check_labels(&y, n_classes, path)?;
    let (train, test): (Vec<usize>, Vec<usize>) = if split_col.is_some() {
        let (te, tr): (Vec<usize>, Vec<usize>) = (0..y.len()).partition(|&i| is_test[i]);
        (tr, te)
    } else {
        let s = stratified_split(&y, None, 0.2, CSV_SPLIT_SEED)
            .map_err(|e| bad(format!("cannot split {} rows 80/20: {e}", y.len())))?;
        (s.train, s.test)
    };
    let take = |idx: &[usize]| -> (Vec<f32>, Vec<u32>) {
        let xs = idx
            .iter()
            .flat_map(|&i| x[i * n_features..(i + 1) * n_features].iter().copied())
            .collect();
        (xs, idx.iter().map(|&i| y[i]).collect())
    };
    let (x_train, y_train) = take(&train);
    let (x_test, y_test) = take(&test);
    Ok(Dataset {
        name: path
            .file_stem()
            .map_or_else(|| "csv".into(), |s| s.to_string_lossy().into_owned()),
        x_train,
        y_train,
        x_test,
        y_test,
        sample_shape: vec![n_features],
        n_classes,
        class_names: (0..n_classes).map(|c| c.to_string()).collect(),
        groups_train: None,
        groups_test: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_without_header_is_split_80_20_by_label() {
        let text: String = (0..20)
            .map(|i| format!("{},{},{}\n", i % 2, i as f32 / 20.0, 0.5))
            .collect();
        let d = parse_csv(text.as_bytes(), Path::new("a.csv")).unwrap();
        assert_eq!(
            (d.n_train(), d.n_test(), d.sample_shape.clone(), d.n_classes),
            (16, 4, vec![2], 2)
        );
        assert_eq!(d.y_test.iter().filter(|&&l| l == 1).count(), 2);
        let i = (0..16).find(|&i| d.x_train[2 * i] == 0.35).unwrap();
        assert_eq!(d.y_train[i], 1);
    }

    #[test]
    fn csv_header_and_split_column_give_the_split() {
        let text = "label,f1,split,f2\n0,0.1,train,0.2\n1,0.3,test,0.4\n1,0.5,TRAIN,0.6\n";
        let d = parse_csv(text.as_bytes(), Path::new("b.csv")).unwrap();
        assert_eq!(d.x_train, vec![0.1, 0.2, 0.5, 0.6]);
        assert_eq!(
            (d.x_test.clone(), d.y_test.clone()),
            (vec![0.3, 0.4], vec![1])
        );
    }

    #[test]
    fn csv_errors_name_file_line_and_column() {
        let cases = [
            ("0,0.1\n-1,0.2\n", "line 2, column 1 (label) = \"-1\""),
            ("0,0.1\n1,abc\n", "line 2, column 2 = \"abc\""),
            ("0,0.1\n1,0.2,0.3\n", "line 2 has 3 columns, expected 2"),
            ("y,x,split\n0,0.1,dev\n", "`split` = \"dev\""),
            ("0,NaN\n", "finite"),
        ];
        for (text, want) in cases {
            let err = parse_csv(text.as_bytes(), Path::new("bad.csv"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("bad.csv: ") && err.contains(want), "{err}");
        }
    }
}
