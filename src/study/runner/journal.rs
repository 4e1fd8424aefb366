//! The study's CSV as a journal: its header and rows, read back after a
//! kill (longest valid prefix, damaged lines), reopened for appending.

use crate::report::output::write_atomic;
use crate::study::plan::{Plan, Point};
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;

pub(super) fn check_column_name(name: &str) -> Result<()> {
    let mut c = name.chars();
    let ok = c
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Internal(format!(
            "metric name `{name}`: expected letters, digits and `_`"
        )))
    }
}

/// `index,seed,<params>,<metrics>`.
pub(super) fn header(params: &[String], metrics: &[String]) -> String {
    let mut cols = vec!["index".to_string(), "seed".to_string()];
    cols.extend(params.iter().cloned());
    cols.extend(metrics.iter().cloned());
    cols.join(",")
}

/// The row prefix a point fixes: `index,seed,<params>`.
pub(super) fn row_prefix(p: &Point) -> String {
    let mut s = format!("{},{}", p.index, p.seed);
    for (_, v) in &p.params {
        s.push(',');
        s.push_str(&fmt_f64(*v));
    }
    s
}

/// Rust's shortest round-trip form: `0.1`, `1e-7`, `1.0`, `NaN`, `inf`.
pub(super) fn fmt_f64(v: f64) -> String {
    format!("{v:?}")
}

/// `5, 9, 12` (at most 5 shown).
pub(super) fn lines_text(lines: &[usize]) -> String {
    let mut v: Vec<String> = lines.iter().take(5).map(usize::to_string).collect();
    if lines.len() > 5 {
        v.push(format!("and {} more", lines.len() - 5));
    }
    v.join(", ")
}

/// The study's rows read back from its CSV.
pub(super) struct Journal {
    /// Row text (without newline) per shard-relative index.
    pub(super) rows: Vec<Option<String>>,
    pub(super) done: usize,
    /// True while the file's rows are in strictly increasing index order.
    pub(super) in_order: bool,
    pub(super) last_index: Option<usize>,
}

/// The study's CSV as read back (nothing changed yet).
pub(super) struct JournalRead {
    pub(super) journal: Journal,
    /// Bytes of the file's longest valid prefix.
    pub(super) keep: usize,
    /// Bytes of the file.
    pub(super) len: usize,
    /// Line numbers (1-based) of invalid lines that other lines follow: not a
    /// torn write but an edited or damaged file.
    pub(super) damaged: Vec<usize>,
    /// Row texts in file order (the valid ones).
    pub(super) order: Vec<usize>,
}

/// Reads `path`, changing nothing: every valid row (a row must end in a
/// newline, have every column and carry exactly the index, seed and
/// parameters the plan gives its index), the length of the longest valid
/// prefix, and the damaged lines (invalid, with lines after them).
pub(super) fn read_journal(
    path: &Path,
    header: &str,
    plan: &Plan,
    range: &Range<usize>,
    n_metrics: usize,
) -> Result<JournalRead> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut j = Journal {
        rows: vec![None; range.len()],
        done: 0,
        in_order: true,
        last_index: None,
    };
    let n_cols = 2 + plan.param_names().len() + n_metrics;
    let mut keep = 0usize;
    let mut prefix_valid = true;
    let mut pos = 0usize;
    let mut first = true;
    let mut line_no = 0usize;
    let mut damaged = Vec::new();
    let mut order = Vec::new();
    while let Some(nl) = bytes[pos..].iter().position(|&b| b == b'\n') {
        let line = &bytes[pos..pos + nl];
        let next = pos + nl + 1;
        line_no += 1;
        if first {
            first = false;
            if line != header.as_bytes() {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "columns `{}` differ from `{header}` (written by another memkin or evaluator): use a new --out",
                        String::from_utf8_lossy(line)
                    ),
                ));
            }
            keep = next;
            pos = next;
            continue;
        }
        let row = std::str::from_utf8(line)
            .ok()
            .and_then(|l| valid_row(l, plan, range, n_cols))
            .filter(|(index, _)| j.rows[index - range.start].is_none());
        match row {
            Some((index, text)) => {
                j.rows[index - range.start] = Some(text.to_string());
                j.done += 1;
                if j.last_index.is_some_and(|l| l >= index) {
                    j.in_order = false;
                }
                j.last_index = Some(index);
                order.push(index);
                if prefix_valid {
                    keep = next;
                }
            }
            None => {
                prefix_valid = false;
                if next < bytes.len() {
                    damaged.push(line_no);
                }
            }
        }
        pos = next;
    }
    if first {
        // New file, or killed while writing the header.
        keep = 0;
    }
    Ok(JournalRead {
        journal: j,
        keep,
        len: bytes.len(),
        damaged,
        order,
    })
}

/// Opens the journal for appending. A torn last row is cut off; a damaged
/// file is first rewritten (atomically) with its valid rows only; a new file
/// gets its header.
pub(super) fn open_journal(
    path: &Path,
    header: &str,
    r: &JournalRead,
    range: &Range<usize>,
) -> Result<File> {
    if !r.damaged.is_empty() {
        let mut text = format!("{header}\n");
        for &i in &r.order {
            if let Some(row) = &r.journal.rows[i - range.start] {
                text.push_str(row);
                text.push('\n');
            }
        }
        write_atomic(path, text.as_bytes())?;
    }
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    if r.damaged.is_empty() && r.keep < r.len {
        f.set_len(r.keep as u64).map_err(|e| Error::io(path, e))?;
    }
    f.seek(SeekFrom::End(0)).map_err(|e| Error::io(path, e))?;
    if r.keep == 0 && r.damaged.is_empty() {
        f.write_all(format!("{header}\n").as_bytes())
            .map_err(|e| Error::io(path, e))?;
    }
    f.sync_data().map_err(|e| Error::io(path, e))?;
    Ok(f)
}

/// `Some((index, line))` when `line` is a complete row of a point of `range`
/// whose index, seed and parameters match the plan.
pub(super) fn valid_row<'l>(
    line: &'l str,
    plan: &Plan,
    range: &Range<usize>,
    n_cols: usize,
) -> Option<(usize, &'l str)> {
    if line.split(',').count() != n_cols {
        return None;
    }
    let index: usize = line.split(',').next()?.parse().ok()?;
    if !range.contains(&index) {
        return None;
    }
    let prefix = row_prefix(&plan.point(index));
    let rest = line.strip_prefix(prefix.as_str())?.strip_prefix(',')?;
    rest.split(',')
        .all(|m| m.parse::<f64>().is_ok())
        .then_some((index, line))
}
