//! NumPy `.npy` (own streaming parser: any float or integer dtype, either
//! byte order, C or Fortran order, optionally gzip-compressed) and `.npz`
//! datasets (`x_train, y_train, x_test, y_test`, read with `ndarray-npy`).

use std::io::{BufReader, Read};
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{NpzReader, ReadNpyError, ReadNpzError, ReadableElement};

use super::{Dataset, check_labels, file_size_hint, read_file};
use crate::{Error, Result};

/// The elements of a `.npy` array: floats are converted to f32, integers
/// (and bools) to i64.
#[derive(Debug, Clone, PartialEq)]
pub enum Elements {
    /// From f2/f4/f8 data.
    Float(Vec<f32>),
    /// From i1..i8, u1..u8 or bool data.
    Int(Vec<i64>),
}

/// A `.npy` array in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The shape from the header.
    pub shape: Vec<usize>,
    /// The descriptor from the header, e.g. `"<f8"`.
    pub descr: String,
    /// The data, row-major.
    pub elements: Elements,
}

/// Reads a `.npy` file of floats (f32 or f64; f16 is accepted too) as f32
/// with its shape. Gzip-compressed files (`.npy.gz`) are detected by their
/// magic bytes. Any other dtype, or a malformed file, is a one-line
/// [`Error::BadFile`]. NaN values are passed through (the caller checks).
pub fn read_npy_f32(path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    let a = read_npy(path)?;
    match a.elements {
        Elements::Float(v) => Ok((v, a.shape)),
        Elements::Int(_) => Err(Error::bad_file(
            path,
            format!(
                "dtype {} is an integer type, expected float32 or float64",
                a.descr
            ),
        )),
    }
}

/// Input sequences from a `.npy` of shape `[S, T]` (float32 or float64):
/// the values and `(S, T)`, checked by [`crate::batch::sequences_shape`].
pub fn read_sequences(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let (x, shape) = read_npy_f32(path)?;
    let (s, t) = crate::batch::sequences_shape(path, &x, &shape)?;
    Ok((x, s, t))
}

/// Parameter sets from a `.npy` of shape `[P, 2]` or `[P, 2, T]` (see
/// [`crate::batch::DeviceParams::from_table`]), for inputs of `steps` steps.
pub fn read_device_params(
    path: &Path,
    steps: usize,
    w0: f64,
) -> Result<crate::batch::DeviceParams> {
    let (v, shape) = read_npy_f32(path)?;
    crate::batch::DeviceParams::from_table(path, &v, &shape, steps, w0)
}

/// Reads a `.npy` file (or gzip-compressed `.npy.gz`), streaming: the data is
/// converted while it is decompressed, so a large f64 file never sits in
/// memory twice.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let file = std::fs::File::open(path).map_err(|e| file_size_hint(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let gz = {
        use std::io::BufRead;
        let head = reader.fill_buf().map_err(|e| Error::io(path, e))?;
        head.starts_with(&[0x1f, 0x8b])
    };
    if gz {
        parse_npy(flate2::read::GzDecoder::new(reader), path)
    } else {
        parse_npy(reader, path)
    }
}

/// Parses a `.npy` stream (already decompressed); `path` names it in errors.
pub fn parse_npy(mut r: impl Read, path: &Path) -> Result<NpyArray> {
    let bad = |msg: String| Error::bad_file(path, msg);
    let read_err = |e: std::io::Error, what: &str| {
        bad(format!(
            "truncated or corrupt file while reading the {what}: {e}"
        ))
    };
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre).map_err(|e| read_err(e, "header"))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(bad(
            "not a .npy file (missing the \\x93NUMPY magic string)".into()
        ));
    }
    let header_len = match pre[6] {
        1 => {
            let mut l = [0u8; 2];
            r.read_exact(&mut l).map_err(|e| read_err(e, "header"))?;
            usize::from(u16::from_le_bytes(l))
        }
        2 | 3 => {
            let mut l = [0u8; 4];
            r.read_exact(&mut l).map_err(|e| read_err(e, "header"))?;
            u32::from_le_bytes(l) as usize
        }
        v => {
            return Err(bad(format!(
                ".npy format version {v}.{}, expected 1.0, 2.0 or 3.0",
                pre[7]
            )));
        }
    };
    if header_len > 1 << 20 {
        return Err(bad(format!(
            "header length {header_len} is implausible (at most 1 MiB)"
        )));
    }
    let mut header = vec![0u8; header_len];
    r.read_exact(&mut header)
        .map_err(|e| read_err(e, "header"))?;
    let header = String::from_utf8_lossy(&header);
    let (descr, fortran, shape) =
        parse_header(&header).map_err(|m| bad(format!("{m} in header {}", header.trim())))?;
    let n = super::checked_len(&shape)
        .ok_or_else(|| bad(format!("shape {shape:?} overflows: a corrupt header")))?;
    let little = match descr.as_bytes().first() {
        Some(b'<' | b'|' | b'=') => true,
        Some(b'>') => false,
        _ => {
            return Err(bad(format!(
                "dtype {descr}: expected a byte-order prefix <, > or |"
            )));
        }
    };
    let kind = &descr[1..];
    let size: usize = kind.get(1..).and_then(|s| s.parse().ok()).unwrap_or(0);
    let unsupported = || {
        bad(format!(
            "dtype {descr} is not supported; expected a float (f2, f4, f8), integer (i1-i8, u1-u8) or bool array"
        ))
    };
    let is_float = match (kind.as_bytes().first(), size) {
        (Some(b'f'), 2 | 4 | 8) => true,
        (Some(b'i' | b'u'), 1 | 2 | 4 | 8) | (Some(b'b'), 1) => false,
        _ => return Err(unsupported()),
    };
    let signed = kind.starts_with('i');
    let mut floats = Vec::new();
    let mut ints = Vec::new();
    if is_float {
        floats.reserve_exact(n.min(1 << 24))
    } else {
        ints.reserve_exact(n.min(1 << 24))
    }
    let mut buf = vec![0u8; (1 << 16) / size * size];
    let mut left = n;
    while left > 0 {
        let take = (left * size).min(buf.len());
        r.read_exact(&mut buf[..take]).map_err(|e| {
            bad(format!(
                "data ends before the {n} values of shape {shape:?} ({} bytes of dtype {descr}; truncated or corrupt: {e})",
                n * size
            ))
        })?;
        for c in buf[..take].chunks_exact(size) {
            let mut b = [0u8; 8];
            if little {
                b[..size].copy_from_slice(c)
            } else {
                b[..size].copy_from_slice(c);
                b[..size].reverse()
            }
            if is_float {
                floats.push(match size {
                    2 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
                    4 => f32::from_le_bytes(b[..4].try_into().expect("4")),
                    _ => f64::from_le_bytes(b) as f32,
                });
            } else {
                let u = u64::from_le_bytes(b);
                let v = if signed {
                    // sign-extend from `size` bytes
                    let shift = 64 - 8 * size as u32;
                    ((u << shift) as i64) >> shift
                } else {
                    i64::try_from(u).map_err(|_| bad(format!("value {u} does not fit in i64")))?
                };
                ints.push(v);
            }
        }
        left -= take / size;
    }
    let elements = if is_float {
        Elements::Float(floats)
    } else {
        Elements::Int(ints)
    };
    let elements = if fortran && shape.len() > 1 {
        match elements {
            Elements::Float(v) => Elements::Float(fortran_to_c(&v, &shape)),
            Elements::Int(v) => Elements::Int(fortran_to_c(&v, &shape)),
        }
    } else {
        elements
    };
    Ok(NpyArray {
        shape,
        descr,
        elements,
    })
}

/// Reorders column-major data of `shape` into row-major order.
fn fortran_to_c<T: Copy>(v: &[T], shape: &[usize]) -> Vec<T> {
    let rev: Vec<usize> = shape.iter().rev().copied().collect();
    // Viewed with reversed shape, Fortran data is C-ordered; transpose it back.
    let a = ArrayD::from_shape_vec(IxDyn(&rev), v.to_vec()).expect("shape matches length");
    a.reversed_axes().iter().copied().collect()
}

/// IEEE half to single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: normalise
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// Parses the Python dict literal of a `.npy` header.
fn parse_header(h: &str) -> std::result::Result<(String, bool, Vec<usize>), String> {
    let value_after = |key: &str| -> std::result::Result<&str, String> {
        let k = format!("'{key}'");
        let i = h.find(&k).ok_or_else(|| format!("missing key {k}"))?;
        let rest = &h[i + k.len()..];
        let rest = rest
            .trim_start()
            .strip_prefix(':')
            .ok_or_else(|| format!("no ':' after {k}"))?;
        Ok(rest.trim_start())
    };
    let d = value_after("descr")?;
    let descr = if let Some(s) = d.strip_prefix('\'') {
        s.split('\'').next().unwrap_or("").to_string()
    } else {
        return Err("structured dtypes are not supported (descr is not a string)".into());
    };
    let fortran = value_after("fortran_order")?.starts_with("True");
    let s = value_after("shape")?;
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("shape is not a tuple")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("shape entry {t:?} is not a size"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((descr, fortran, shape))
}

/// Reads one array of an npz trying each element type in turn.
fn npz_array<R: std::io::Read + std::io::Seek, T: ReadableElement>(
    npz: &mut NpzReader<R>,
    name: &str,
) -> std::result::Result<Option<ArrayD<T>>, ReadNpzError> {
    match npz.by_name::<ndarray::OwnedRepr<T>, IxDyn>(name) {
        Ok(a) => Ok(Some(a)),
        Err(ReadNpzError::Npy(ReadNpyError::WrongDescriptor(_))) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads float features `name` (f32 or f64) from an npz.
fn npz_floats<R: std::io::Read + std::io::Seek>(
    npz: &mut NpzReader<R>,
    name: &str,
    path: &Path,
) -> Result<(Vec<f32>, Vec<usize>)> {
    let err = |e: ReadNpzError| Error::bad_file(path, format!("array `{name}`: {e}"));
    if let Some(a) = npz_array::<_, f32>(npz, name).map_err(err)? {
        let shape = a.shape().to_vec();
        return Ok((a.iter().copied().collect(), shape));
    }
    if let Some(a) = npz_array::<_, f64>(npz, name).map_err(err)? {
        let shape = a.shape().to_vec();
        return Ok((a.iter().map(|&v| v as f32).collect(), shape));
    }
    Err(Error::bad_file(
        path,
        format!("array `{name}` has an unsupported dtype, expected float32 or float64"),
    ))
}

/// Reads integer labels `name` (any integer dtype) from an npz, as i64.
fn npz_labels<R: std::io::Read + std::io::Seek>(
    npz: &mut NpzReader<R>,
    name: &str,
    path: &Path,
) -> Result<Vec<i64>> {
    let err = |e: ReadNpzError| Error::bad_file(path, format!("array `{name}`: {e}"));
    macro_rules! try_int {
        ($($t:ty),*) => {$(
            if let Some(a) = npz_array::<_, $t>(npz, name).map_err(err)? {
                if a.ndim() != 1 {
                    return Err(Error::bad_file(path, format!("array `{name}` has shape {:?}, expected 1-D labels", a.shape())));
                }
                return a.iter().map(|&v| i64::try_from(v).map_err(|_| Error::bad_file(path, format!("array `{name}`: label {v} does not fit in i64")))).collect();
            }
        )*};
    }
    try_int!(i64, i32, i16, i8, u8, u16, u32, u64);
    Err(Error::bad_file(
        path,
        format!(
            "array `{name}` has an unsupported dtype, expected an integer type (int8..int64, uint8..uint64)"
        ),
    ))
}

/// Converts i64 labels to u32 class indices, checking the range.
pub(crate) fn labels_to_u32(labels: &[i64], field: &str, path: &Path) -> Result<Vec<u32>> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            u32::try_from(l)
                .ok()
                .filter(|&l| (l as usize) < super::MAX_CLASSES)
                .ok_or_else(|| {
                    Error::bad_file(
                        path,
                        format!(
                            "{field}[{i}] = {l}: labels must be integers in 0..{}",
                            super::MAX_CLASSES
                        ),
                    )
                })
        })
        .collect()
}

/// Loads an `.npz` dataset with arrays `x_train, y_train, x_test, y_test`
/// (x shaped `[N, T]`, `[N, C, T]`, `[N, H, W]` or `[N, D, H, W]`, f32 or
/// f64; labels of any integer dtype, in `0..n_classes`).
pub fn load_npz(path: &Path) -> Result<Dataset> {
    let bytes = read_file(path)?;
    npz_dataset_from_bytes(
        &bytes,
        path,
        &["x_train", "y_train", "x_test", "y_test"],
        None,
    )
}

/// Builds a dataset from npz bytes with the four arrays named in `names`
/// (x_train, y_train, x_test, y_test). When `x_test` is absent from `names`
/// (empty string) the caller splits afterwards.
pub(crate) fn npz_dataset_from_bytes(
    bytes: &[u8],
    path: &Path,
    names: &[&str; 4],
    class_names: Option<Vec<String>>,
) -> Result<Dataset> {
    let mut npz = NpzReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::bad_file(path, format!("not a readable .npz (zip) file: {e}")))?;
    let present = npz
        .names()
        .map_err(|e| Error::bad_file(path, format!("unreadable .npz directory: {e}")))?;
    for &n in names.iter().filter(|n| !n.is_empty()) {
        if !present.iter().any(|p| p == n) {
            return Err(Error::bad_file(
                path,
                format!(
                    "missing array `{n}`; the file has [{}], expected x_train, y_train, x_test, y_test",
                    present.join(", ")
                ),
            ));
        }
    }
    let (x_train, shape_train) = npz_floats(&mut npz, names[0], path)?;
    let y_train = npz_labels(&mut npz, names[1], path)?;
    let (x_test, y_test, shape_test) = if names[2].is_empty() {
        (Vec::new(), Vec::new(), shape_train.clone())
    } else {
        let (x, s) = npz_floats(&mut npz, names[2], path)?;
        (x, npz_labels(&mut npz, names[3], path)?, s)
    };
    if !(2..=4).contains(&shape_train.len()) {
        return Err(Error::bad_file(
            path,
            format!(
                "`{}` has shape {shape_train:?}, expected [N, T], [N, C, T], [N, H, W] or [N, D, H, W]",
                names[0]
            ),
        ));
    }
    if shape_train[1..] != shape_test[1..] {
        return Err(Error::bad_file(
            path,
            format!(
                "`{}` has samples of shape {:?} but `{}` {:?}: they must match",
                names[0],
                &shape_train[1..],
                names[2],
                &shape_test[1..]
            ),
        ));
    }
    for (xn, shape, yn, y) in [
        (names[0], &shape_train, names[1], &y_train),
        (names[2], &shape_test, names[3], &y_test),
    ] {
        if !xn.is_empty() && shape[0] != y.len() {
            return Err(Error::bad_file(
                path,
                format!(
                    "`{xn}` has {} samples but `{yn}` has {} labels: the counts must match",
                    shape[0],
                    y.len()
                ),
            ));
        }
    }
    if let Some(i) = x_train.iter().chain(&x_test).position(|v| !v.is_finite()) {
        let (name, i) = if i < x_train.len() {
            (names[0], i)
        } else {
            (names[2], i - x_train.len())
        };
        return Err(Error::bad_file(
            path,
            format!("`{name}` flat index {i} is not finite: features must be finite numbers"),
        ));
    }
    let y_train = labels_to_u32(&y_train, names[1], path)?;
    let y_test = labels_to_u32(&y_test, names[3], path)?;
    let n_classes = class_names.as_ref().map_or_else(
        || 1 + y_train.iter().chain(&y_test).copied().max().unwrap_or(0) as usize,
        Vec::len,
    );
    check_labels(&y_train, n_classes, path)?;
    check_labels(&y_test, n_classes, path)?;
    let name = path
        .file_stem()
        .map_or_else(|| "npz".into(), |s| s.to_string_lossy().into_owned());
    Ok(Dataset {
        name,
        x_train,
        y_train,
        x_test,
        y_test,
        sample_shape: shape_train[1..].to_vec(),
        n_classes,
        class_names: class_names.unwrap_or_else(|| (0..n_classes).map(|c| c.to_string()).collect()),
        groups_train: None,
        groups_test: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::fixture;

    #[test]
    fn npy_reads_fortran_order_big_endian_and_ints() {
        let (v, s) = read_npy_f32(&fixture("fortran_f64.npy")).unwrap();
        assert_eq!((v, s), (vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0], vec![2, 3]));
        let (v, s) = read_npy_f32(&fixture("big_endian_f4.npy")).unwrap();
        assert_eq!((v, s), (vec![0.0, 1.0, 2.0, 3.0], vec![4]));
        let a = read_npy(&fixture("int32.npy")).unwrap();
        assert_eq!(a.elements, Elements::Int(vec![0, 1, 2, 3]));
    }

    #[test]
    fn npy_wrong_dtype_is_a_one_line_bad_file() {
        for (f, want) in [
            ("int32.npy", "integer type"),
            ("strings.npy", "not supported"),
        ] {
            let err = read_npy_f32(&fixture(f)).unwrap_err();
            assert!(matches!(err, Error::BadFile { .. }));
            let msg = err.to_string();
            assert!(
                msg.contains(f) && msg.contains(want) && !msg.contains('\n'),
                "{msg}"
            );
        }
    }

    #[test]
    fn npy_truncated_and_gzipped_files() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(fixture("fortran_f64.npy")).unwrap();
        let p = dir.path().join("cut.npy");
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        let err = read_npy_f32(&p).unwrap_err().to_string();
        assert!(
            err.contains("cut.npy") && err.contains("before the 6 values"),
            "{err}"
        );
        let p = dir.path().join("x.npy.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, &bytes).unwrap();
        let gz = e.finish().unwrap();
        std::fs::write(&p, &gz).unwrap();
        assert_eq!(read_npy_f32(&p).unwrap().1, vec![2, 3]);
        std::fs::write(&p, &gz[..gz.len() / 2]).unwrap();
        assert!(
            read_npy_f32(&p)
                .unwrap_err()
                .to_string()
                .contains("x.npy.gz")
        );
        let p = dir.path().join("junk.npy");
        std::fs::write(&p, b"hello world").unwrap();
        assert!(read_npy_f32(&p).unwrap_err().to_string().contains("magic"));
    }

    #[test]
    fn f16_conversion_is_exact_on_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn npz_from_numpy_reads_f64_features_and_int64_labels() {
        let d = load_npz(&fixture("tiny.npz")).unwrap();
        assert_eq!(
            (d.n_train(), d.n_test(), d.sample_shape.clone(), d.n_classes),
            (6, 3, vec![2, 3], 3)
        );
        assert_eq!(d.y_test, vec![2, 1, 0]);
        let d = load_npz(&fixture("tiny_f32_u8.npz")).unwrap();
        assert_eq!(d.x_train[..3], [0.0, 0.125, 0.25]);
        assert_eq!((d.y_train.clone(), d.n_classes), (vec![1, 0, 1, 0], 2));
    }

    #[test]
    fn npz_with_wrong_shapes_is_an_error_naming_the_array() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("shapes.npz");
        let write = |x_train: ndarray::ArrayD<f64>, x_test: ndarray::ArrayD<f64>| {
            let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&p).unwrap());
            w.add_array("x_train", &x_train).unwrap();
            w.add_array("y_train", &ndarray::arr1(&[0u8, 1])).unwrap();
            w.add_array("x_test", &x_test).unwrap();
            w.add_array("y_test", &ndarray::arr1(&[1u8, 0])).unwrap();
            w.finish().unwrap();
        };
        let z = |s: &[usize]| ndarray::ArrayD::<f64>::zeros(s);
        write(z(&[2]), z(&[2]));
        let err = load_npz(&p).unwrap_err().to_string();
        assert!(
            err.contains("shapes.npz") && err.contains("`x_train` has shape [2]"),
            "{err}"
        );
        write(z(&[2, 3]), z(&[2, 4]));
        let err = load_npz(&p).unwrap_err().to_string();
        assert!(
            err.contains("[3]") && err.contains("[4]") && err.contains("must match"),
            "{err}"
        );
        write(z(&[2, 1, 2, 2, 2, 2]), z(&[2, 1, 2, 2, 2, 2]));
        assert!(
            load_npz(&p)
                .unwrap_err()
                .to_string()
                .contains("[N, D, H, W]")
        );
    }

    #[test]
    fn npz_round_trip_and_bad_labels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rt.npz");
        let write = |y_train: ndarray::Array1<i32>| {
            let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&p).unwrap());
            let x =
                ndarray::Array2::<f32>::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32 / 12.0);
            w.add_array("x_train", &x).unwrap();
            w.add_array("y_train", &y_train).unwrap();
            w.add_array("x_test", &x).unwrap();
            w.add_array("y_test", &ndarray::arr1(&[0i32, 1, 1]))
                .unwrap();
            w.finish().unwrap();
        };
        write(ndarray::arr1(&[0, 1, 0]));
        let d = load_npz(&p).unwrap();
        assert_eq!(d.x_train[5], 5.0 / 12.0);
        assert_eq!(d.sample_shape, vec![4]);
        write(ndarray::arr1(&[0, -1, 0]));
        let err = load_npz(&p).unwrap_err().to_string();
        assert!(
            err.contains("rt.npz") && err.contains("y_train[1] = -1") && err.contains("0.."),
            "{err}"
        );
        write(ndarray::arr1(&[0, 1]));
        let err = load_npz(&p).unwrap_err().to_string();
        assert!(
            err.contains("3 samples") && err.contains("2 labels"),
            "{err}"
        );
    }
}
