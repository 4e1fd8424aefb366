//! A MATLAB v5 `.mat` reader (numeric matrices only), written from the
//! MathWorks "MAT-File Format" specification.
//!
//! Layout: a 128-byte header (116 bytes of text, 8 of subsystem offset, a
//! 2-byte version 0x0100 and the endian indicator `IM` little / `MI` big),
//! then data elements. Each element has an 8-byte tag (u32 type, u32 byte
//! count) — or, in the *small element* format, a 4-byte tag (u16 byte count
//! in the upper half, u16 type in the lower) with up to 4 data bytes — and is
//! padded to 8 bytes. A variable is a `miMATRIX` (14), possibly inside a
//! zlib-compressed `miCOMPRESSED` (15) element; its subelements are the array
//! flags, the dimensions, the name and the real part (then the imaginary part
//! for complex arrays, which is ignored). The stored mi type of the real part
//! may be narrower than the array class (MATLAB stores a double matrix of
//! small integers as `miUINT8`), so values are widened by their mi type.
//!
//! Cell arrays, structs, chars, sparse and object arrays are skipped: asking
//! for one by name is an error that says so.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::read_file;
use crate::{Error, Result};

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// MATLAB array classes (`mxCLASS`) that hold plain numbers.
const NUMERIC_CLASSES: [(u8, &str); 10] = [
    (6, "double"),
    (7, "single"),
    (8, "int8"),
    (9, "uint8"),
    (10, "int16"),
    (11, "uint16"),
    (12, "int32"),
    (13, "uint32"),
    (14, "int64"),
    (15, "uint64"),
];

/// One numeric variable of a `.mat` file.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    /// The variable name.
    pub name: String,
    /// MATLAB dimensions (at least 2), e.g. `[64, 600]`.
    pub dims: Vec<usize>,
    /// The MATLAB class, e.g. `"double"`, `"uint8"`.
    pub class: &'static str,
    /// The real part, widened to f64, in MATLAB's column-major order: for a
    /// 2-D `[rows, cols]` array, column `j` is `data[j*rows..(j+1)*rows]`.
    pub data: Vec<f64>,
}

impl MatArray {
    /// Column `j` of a 2-D array (contiguous in column-major order).
    pub fn column(&self, j: usize) -> &[f64] {
        let rows = self.dims[0];
        &self.data[j * rows..(j + 1) * rows]
    }
}

/// The numeric variables of a `.mat` file, plus the names of skipped ones.
#[derive(Debug, Clone)]
pub struct MatFile {
    /// The file it was read from (for error messages).
    pub path: PathBuf,
    /// Numeric variables, in file order.
    pub arrays: Vec<MatArray>,
    /// Variables of other classes (cell, struct, char, sparse...): name and class.
    pub skipped: Vec<(String, String)>,
}

impl MatFile {
    /// The numeric variable `name`, or an error listing what the file holds.
    pub fn get(&self, name: &str) -> Result<&MatArray> {
        if let Some(a) = self.arrays.iter().find(|a| a.name == name) {
            return Ok(a);
        }
        if let Some((_, class)) = self.skipped.iter().find(|(n, _)| n == name) {
            return Err(Error::bad_file(
                &self.path,
                format!(
                    "variable `{name}` is a {class} array; only numeric matrices are supported"
                ),
            ));
        }
        let names: Vec<&str> = self.arrays.iter().map(|a| a.name.as_str()).collect();
        Err(Error::bad_file(
            &self.path,
            format!(
                "no variable `{name}`; numeric variables present: [{}]",
                names.join(", ")
            ),
        ))
    }

    /// The 2-D variable `name`, checked to be `rows x cols` (either may be
    /// `None` for "any").
    pub fn get_2d(
        &self,
        name: &str,
        rows: Option<usize>,
        cols: Option<usize>,
    ) -> Result<&MatArray> {
        let a = self.get(name)?;
        let ok = a.dims.len() == 2
            && rows.is_none_or(|r| a.dims[0] == r)
            && cols.is_none_or(|c| a.dims[1] == c);
        if !ok {
            let want = |d: Option<usize>| d.map_or("any".to_string(), |d| d.to_string());
            return Err(Error::bad_file(
                &self.path,
                format!(
                    "variable `{name}` has dimensions {:?}, expected {} x {}",
                    a.dims,
                    want(rows),
                    want(cols)
                ),
            ));
        }
        Ok(a)
    }
}

/// Reads a MATLAB v5 `.mat` file.
pub fn read_mat(path: &Path) -> Result<MatFile> {
    let bytes = read_file(path)?;
    parse_mat(&bytes, path)
}

/// Parses the bytes of a MATLAB v5 `.mat` file; `path` names it in errors.
pub fn parse_mat(bytes: &[u8], path: &Path) -> Result<MatFile> {
    let bad = |msg: String| Error::bad_file(path, msg);
    if bytes.len() < 128 {
        return Err(bad(format!(
            "{} bytes is too short for a MATLAB v5 .mat header (128 bytes)",
            bytes.len()
        )));
    }
    if bytes.starts_with(b"\x89HDF") || bytes[..128].windows(4).any(|w| w == b"7.3 ") {
        return Err(bad(
            "MATLAB v7.3 (HDF5) .mat files are not supported; save with -v7 or -v6".into(),
        ));
    }
    let big = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        other => {
            return Err(bad(format!(
                "endian indicator {other:?} at byte 126, expected \"IM\" or \"MI\" (not a MATLAB v5 .mat file)"
            )));
        }
    };
    let mut file = MatFile {
        path: path.to_path_buf(),
        arrays: Vec::new(),
        skipped: Vec::new(),
    };
    let r = Reader { big, path };
    r.elements(&bytes[128..], 128, &mut file, true)?;
    Ok(file)
}

struct Reader<'a> {
    big: bool,
    path: &'a Path,
}

/// A parsed element tag: type, data slice, and total size consumed.
struct Element<'b> {
    mi: u32,
    data: &'b [u8],
    consumed: usize,
}

impl Reader<'_> {
    fn bad(&self, offset: usize, msg: impl std::fmt::Display) -> Error {
        Error::bad_file(self.path, format!("at byte {offset}: {msg}"))
    }

    fn u32_at(&self, b: &[u8]) -> u32 {
        let a: [u8; 4] = b[..4].try_into().expect("4 bytes");
        if self.big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    /// Reads one element tag at the start of `b` (`offset` is for messages).
    fn element<'b>(&self, b: &'b [u8], offset: usize) -> Result<Element<'b>> {
        if b.len() < 8 {
            return Err(self.bad(
                offset,
                format!("truncated element tag ({} bytes left, 8 needed)", b.len()),
            ));
        }
        let first = self.u32_at(b);
        if first >> 16 != 0 {
            // Small element: u16 count (upper), u16 type (lower), data in the next 4 bytes.
            let n = (first >> 16) as usize;
            if n > 4 {
                return Err(self.bad(offset, format!("small element of {n} bytes (at most 4)")));
            }
            return Ok(Element {
                mi: first & 0xffff,
                data: &b[4..4 + n],
                consumed: 8,
            });
        }
        let n = self.u32_at(&b[4..]) as usize;
        if b.len() - 8 < n {
            return Err(self.bad(
                offset,
                format!(
                    "element of type {first} claims {n} bytes but only {} remain (truncated file)",
                    b.len() - 8
                ),
            ));
        }
        // Compressed elements are not padded; everything else is padded to 8.
        let consumed = if first == MI_COMPRESSED {
            8 + n
        } else {
            (8 + n).div_ceil(8) * 8
        };
        Ok(Element {
            mi: first,
            data: &b[8..8 + n],
            consumed: consumed.min(b.len()),
        })
    }

    /// Parses a sequence of top-level elements.
    fn elements(
        &self,
        mut b: &[u8],
        mut offset: usize,
        file: &mut MatFile,
        top: bool,
    ) -> Result<()> {
        while !b.is_empty() {
            let e = self.element(b, offset)?;
            match e.mi {
                MI_COMPRESSED if top => {
                    let mut inflated = Vec::new();
                    flate2::read::ZlibDecoder::new(e.data)
                        .read_to_end(&mut inflated)
                        .map_err(|err| self.bad(offset, format!("corrupt or truncated zlib stream in a compressed variable: {err}")))?;
                    self.elements(&inflated, offset, file, false)?;
                }
                MI_MATRIX => self.matrix(e.data, offset + 8, file)?,
                other => {
                    return Err(self.bad(offset, format!(
                        "top-level element of type {other}, expected a matrix (14) or a compressed variable (15)"
                    )));
                }
            }
            b = &b[e.consumed..];
            offset += e.consumed;
        }
        Ok(())
    }

    /// Parses the body of a miMATRIX element.
    fn matrix(&self, mut b: &[u8], mut offset: usize, file: &mut MatFile) -> Result<()> {
        if b.is_empty() {
            return Ok(()); // an empty matrix element (allowed by the format)
        }
        let mut next = |what: &str| -> Result<(u32, &[u8], usize)> {
            if b.is_empty() {
                return Err(self.bad(offset, format!("matrix ends before its {what}")));
            }
            let e = self.element(b, offset)?;
            let at = offset;
            b = &b[e.consumed..];
            offset += e.consumed;
            Ok((e.mi, e.data, at))
        };
        let (mi, flags, at) = next("array flags")?;
        if mi != MI_UINT32 || flags.len() < 8 {
            return Err(self.bad(
                at,
                format!(
                    "array flags of type {mi} and {} bytes, expected uint32 (6), 8 bytes",
                    flags.len()
                ),
            ));
        }
        let class_code = (self.u32_at(flags) & 0xff) as u8;
        let (mi, dims_raw, at) = next("dimensions")?;
        if mi != MI_INT32 || dims_raw.len() % 4 != 0 || dims_raw.len() < 8 {
            return Err(self.bad(
                at,
                format!(
                    "dimensions of type {mi} and {} bytes, expected int32 (5), at least 2 values",
                    dims_raw.len()
                ),
            ));
        }
        let dims: Vec<usize> = dims_raw
            .chunks_exact(4)
            .map(|c| self.u32_at(c) as usize)
            .collect();
        let (mi, name_raw, at) = next("name")?;
        if mi != MI_INT8 && mi != MI_UINT8 {
            return Err(self.bad(at, format!("array name of type {mi}, expected int8 (1)")));
        }
        let name = String::from_utf8_lossy(name_raw).into_owned();
        let Some(&(_, class)) = NUMERIC_CLASSES.iter().find(|(c, _)| *c == class_code) else {
            let class = match class_code {
                1 => "cell",
                2 => "struct",
                3 => "object",
                4 => "char",
                5 => "sparse",
                _ => "unknown-class",
            };
            file.skipped.push((name, class.to_string()));
            return Ok(());
        };
        let (mi, real, at) = next("real part")?;
        let n = super::checked_len(&dims)
            .ok_or_else(|| self.bad(at, format!("dimensions {dims:?} overflow: a corrupt file")))?;
        let data = self.widen(mi, real, at)?;
        if data.len() != n {
            return Err(self.bad(at, format!(
                "variable `{name}` has dimensions {dims:?} ({n} values) but its real part holds {}", data.len()
            )));
        }
        file.arrays.push(MatArray {
            name,
            dims,
            class,
            data,
        });
        Ok(())
    }

    /// Widens numeric element data of mi type `mi` to f64.
    fn widen(&self, mi: u32, b: &[u8], at: usize) -> Result<Vec<f64>> {
        macro_rules! conv {
            ($t:ty, $n:expr) => {{
                if b.len() % $n != 0 {
                    return Err(self.bad(
                        at,
                        format!(
                            "{} bytes of data is not a whole number of {}-byte values",
                            b.len(),
                            $n
                        ),
                    ));
                }
                b.chunks_exact($n)
                    .map(|c| {
                        let a = c.try_into().expect("chunk");
                        (if self.big {
                            <$t>::from_be_bytes(a)
                        } else {
                            <$t>::from_le_bytes(a)
                        }) as f64
                    })
                    .collect()
            }};
        }
        Ok(match mi {
            MI_INT8 => b.iter().map(|&v| f64::from(v as i8)).collect(),
            MI_UINT8 => b.iter().map(|&v| f64::from(v)).collect(),
            MI_INT16 => conv!(i16, 2),
            MI_UINT16 => conv!(u16, 2),
            MI_INT32 => conv!(i32, 4),
            MI_UINT32 => conv!(u32, 4),
            MI_SINGLE => conv!(f32, 4),
            MI_DOUBLE => conv!(f64, 8),
            MI_INT64 => conv!(i64, 8),
            MI_UINT64 => conv!(u64, 8),
            other => {
                return Err(self.bad(
                    at,
                    format!("numeric data of mi type {other}, expected one of 1-7, 9, 12, 13"),
                ));
            }
        })
    }
}

/// Converts a one-hot matrix (`classes x samples`, column-major, as the
/// authors store targets) to class indices. Every column must hold exactly
/// one 1 and zeros elsewhere.
pub fn one_hot_columns(a: &MatArray, path: &Path) -> Result<Vec<u32>> {
    let (k, n) = (a.dims[0], a.dims[1]);
    (0..n)
        .map(|j| {
            let col = a.column(j);
            let ones: Vec<usize> = (0..k).filter(|&i| col[i] == 1.0).collect();
            if ones.len() != 1 || col.iter().any(|&v| v != 0.0 && v != 1.0) {
                return Err(Error::bad_file(
                    path,
                    format!("`{}` column {j} is not one-hot (values {col:?}): each column needs exactly one 1, zeros elsewhere", a.name),
                ));
            }
            Ok(ones[0] as u32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::fixture;

    /// The values scipy.io.savemat wrote (see tests/fixtures/data/make_fixtures.py).
    fn check_fixture(f: &MatFile) {
        let a = f.get_2d("a", Some(3), Some(4)).unwrap();
        assert_eq!(a.class, "double");
        // a[i, j] = i + 10 j + 0.5: column-major storage
        assert_eq!(a.data[..4], [0.5, 1.5, 2.5, 10.5]);
        assert_eq!(a.column(3), [30.5, 31.5, 32.5]);
        let t = f.get_2d("onehot", Some(3), Some(5)).unwrap();
        assert_eq!(t.class, "uint8");
        assert_eq!(one_hot_columns(t, &f.path).unwrap(), vec![0, 1, 2, 1, 0]);
        let s = f.get("small").unwrap();
        assert_eq!(
            (s.class, s.dims.as_slice(), s.data.as_slice()),
            ("single", &[1usize, 1][..], &[2.5][..])
        );
        let i = f.get("ints").unwrap();
        assert_eq!(
            (i.class, i.data.as_slice()),
            ("int16", &[-3.0, 7.0, 300.0][..])
        );
        assert_eq!(f.get("vec").unwrap().data, vec![1.0, 2.0, 3.0, 4.0]);
        let err = f.get("nope").unwrap_err().to_string();
        assert!(
            err.contains("no variable `nope`") && err.contains("a, "),
            "{err}"
        );
        let err = f.get("label").unwrap_err().to_string();
        assert!(err.contains("char"), "{err}");
    }

    #[test]
    fn mat_reader_matches_scipy_uncompressed() {
        check_fixture(&read_mat(&fixture("small_v5.mat")).unwrap());
    }

    #[test]
    fn mat_reader_matches_scipy_compressed() {
        check_fixture(&read_mat(&fixture("small_v5_compressed.mat")).unwrap());
    }

    #[test]
    fn mat_truncated_file_is_an_error_naming_the_file() {
        for name in ["small_v5.mat", "small_v5_compressed.mat"] {
            let bytes = std::fs::read(fixture(name)).unwrap();
            for cut in [100, 140, bytes.len() - 5] {
                let err = parse_mat(&bytes[..cut], Path::new("cut.mat"))
                    .unwrap_err()
                    .to_string();
                assert!(err.starts_with("cut.mat: ") && !err.contains('\n'), "{err}");
            }
        }
    }

    #[test]
    fn mat_not_a_mat_file_is_an_error() {
        let err = parse_mat(&[b'x'; 200], Path::new("junk.mat"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("junk.mat") && err.contains("endian indicator"),
            "{err}"
        );
    }
}
