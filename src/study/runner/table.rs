//! A study CSV read back as numbers, for plots, selections and summaries.

use crate::{Error, Result};
use std::path::Path;

/// A study CSV read back as numbers (for plots and summaries).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultsTable {
    /// Column names (`index`, `seed`, parameters, metrics).
    pub columns: Vec<String>,
    /// Rows, as f64 (the seed column loses precision above 2^53; use the
    /// CSV text for exact seeds).
    pub rows: Vec<Vec<f64>>,
}

impl ResultsTable {
    /// Reads a study CSV (complete rows only).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, &text)
    }

    /// Parses a study CSV's text (complete rows only); `path` names it in
    /// errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let mut lines = text.split_inclusive('\n');
        let columns: Vec<String> = lines
            .next()
            .ok_or_else(|| Error::bad_file(path, "empty: expected a header line"))?
            .trim_end()
            .split(',')
            .map(str::to_string)
            .collect();
        let mut rows = Vec::new();
        for line in lines {
            let Some(line) = line.strip_suffix('\n') else {
                break;
            };
            let row: Vec<f64> = line
                .split(',')
                .map(|s| s.parse::<f64>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| Error::bad_file(path, format!("malformed row `{line}`")))?;
            if row.len() != columns.len() {
                return Err(Error::bad_file(
                    path,
                    format!("row `{line}`: expected {} columns", columns.len()),
                ));
            }
            rows.push(row);
        }
        Ok(Self { columns, rows })
    }

    /// The values of a column, in row order.
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        let k = self.columns.iter().position(|c| c == name)?;
        Some(self.rows.iter().map(|r| r[k]).collect())
    }

    /// A metric over a 2-D grid, row-major with `ys` as rows and `xs` as
    /// columns (`z[iy * xs.len() + ix]`), NaN where no row has those exact
    /// parameter values (or several do, e.g. with random draws per grid
    /// point: then their mean).
    pub fn grid_matrix(
        &self,
        x: &str,
        xs: &[f64],
        y: &str,
        ys: &[f64],
        metric: &str,
    ) -> Option<Vec<f64>> {
        let (cx, cy, cm) = (
            self.columns.iter().position(|c| c == x)?,
            self.columns.iter().position(|c| c == y)?,
            self.columns.iter().position(|c| c == metric)?,
        );
        let mut sum = vec![0.0; xs.len() * ys.len()];
        let mut n = vec![0usize; xs.len() * ys.len()];
        for r in &self.rows {
            let (Some(ix), Some(iy)) = (
                xs.iter().position(|v| *v == r[cx]),
                ys.iter().position(|v| *v == r[cy]),
            ) else {
                continue;
            };
            sum[iy * xs.len() + ix] += r[cm];
            n[iy * xs.len() + ix] += 1;
        }
        Some(
            sum.iter()
                .zip(&n)
                .map(|(s, &k)| if k == 0 { f64::NAN } else { s / k as f64 })
                .collect(),
        )
    }
}
