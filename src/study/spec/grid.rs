//! The `[grid]` and `[random]` tables of a sweep spec: axes, distributions,
//! their order-keeping readers and their checks.

use super::{MAX_POINTS, at, check_name};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One axis of the grid: the values one parameter takes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    /// `n` evenly spaced values from `start` to `end`, both included
    /// (NumPy's `linspace`; `n = 1` gives `[start]`).
    Linspace {
        /// First value.
        start: f64,
        /// Last value.
        end: f64,
        /// Number of values, >= 1.
        n: usize,
    },
    /// `n` geometrically spaced values from `start` to `end`, both included,
    /// `0 < start, end` (NumPy's `geomspace`: the bounds are values, not
    /// exponents).
    Logspace {
        /// First value, > 0.
        start: f64,
        /// Last value, > 0.
        end: f64,
        /// Number of values, >= 1.
        n: usize,
    },
    /// An explicit list of values, in the order given.
    Values(Vec<f64>),
}

impl Axis {
    /// The axis' values, in order. Endpoints are exact.
    pub fn values(&self) -> Vec<f64> {
        match self {
            Axis::Linspace { start, end, n } => (0..*n)
                .map(|i| {
                    if i + 1 == *n && *n > 1 {
                        *end
                    } else if i == 0 {
                        *start
                    } else {
                        start + (end - start) * (i as f64 / (*n - 1) as f64)
                    }
                })
                .collect(),
            Axis::Logspace { start, end, n } => {
                let (la, lb) = (start.ln(), end.ln());
                (0..*n)
                    .map(|i| {
                        if i + 1 == *n && *n > 1 {
                            *end
                        } else if i == 0 {
                            *start
                        } else {
                            (la + (lb - la) * (i as f64 / (*n - 1) as f64)).exp()
                        }
                    })
                    .collect()
            }
            Axis::Values(v) => v.clone(),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Axis::Linspace { n, .. } | Axis::Logspace { n, .. } => *n,
            Axis::Values(v) => v.len(),
        }
    }

    /// True when the axis has no values (never, once checked).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True for a logspace axis (plots use a log scale for it).
    pub fn is_log(&self) -> bool {
        matches!(self, Axis::Logspace { .. })
    }
}

/// A distribution a random parameter is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dist {
    /// Uniform on `[low, high)`, `low < high`.
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// Log-uniform on `[low, high)`, `0 < low < high`.
    LogUniform {
        /// Lower bound, > 0.
        low: f64,
        /// Upper bound.
        high: f64,
    },
}

impl Dist {
    /// Maps a uniform variate `u` in `[0, 1)` to this distribution.
    pub fn sample(&self, u: f64) -> f64 {
        match *self {
            Dist::Uniform { low, high } => low + (high - low) * u,
            Dist::LogUniform { low, high } => {
                let (la, lb) = (low.ln(), high.ln());
                (la + (lb - la) * u).exp()
            }
        }
    }
}

/// A named grid parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridParam {
    /// Parameter name (e.g. `alpha`).
    pub name: String,
    /// Its values.
    pub axis: Axis,
}

/// A named random parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RandomParam {
    /// Parameter name (e.g. `w0`).
    pub name: String,
    /// Its distribution.
    pub dist: Dist,
}

/// The `[random]` table: `n` draws of the listed parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RandomSpec {
    /// Draws (per grid point when a grid is present), >= 1.
    pub n: usize,
    /// The parameters, in the spec's order.
    pub params: Vec<RandomParam>,
}

// ------------------------------------------- order-keeping table readers

/// The axis as written: `{ linspace = [a, b, n] }` etc.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum RawAxis {
    Linspace(f64, f64, f64),
    Logspace(f64, f64, f64),
    Values(Vec<f64>),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum RawDist {
    Uniform(f64, f64),
    LogUniform(f64, f64),
}

fn count<E: de::Error>(n: f64) -> std::result::Result<usize, E> {
    if n.fract() == 0.0 && (0.0..=MAX_POINTS as f64).contains(&n) {
        Ok(n as usize)
    } else {
        Err(E::custom(format!(
            "count {n}: expected a whole number 0 ..= {MAX_POINTS}"
        )))
    }
}

impl RawAxis {
    fn check<E: de::Error>(self) -> std::result::Result<Axis, E> {
        Ok(match self {
            RawAxis::Linspace(start, end, n) => Axis::Linspace {
                start,
                end,
                n: count(n)?,
            },
            RawAxis::Logspace(start, end, n) => Axis::Logspace {
                start,
                end,
                n: count(n)?,
            },
            RawAxis::Values(v) => Axis::Values(v),
        })
    }
}

pub(super) fn de_grid<'de, D: de::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<GridParam>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<GridParam>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a table of parameter = { linspace | logspace | values = [...] }")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out: Vec<GridParam> = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                let axis = map.next_value::<RawAxis>()?.check()?;
                if out.iter().any(|g| g.name == name) {
                    return Err(de::Error::custom(format!(
                        "duplicate grid parameter `{name}`"
                    )));
                }
                out.push(GridParam { name, axis });
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

pub(super) fn ser_grid<S: serde::Serializer>(
    grid: &[GridParam],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(grid.len()))?;
    for g in grid {
        m.serialize_entry(&g.name, &g.axis)?;
    }
    m.end()
}

pub(super) fn de_random<'de, D: de::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<RandomSpec>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = RandomSpec;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(
                "a table with n = <count> and parameter = { uniform | loguniform = [low, high] }",
            )
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut n = None;
            let mut params: Vec<RandomParam> = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                if name == "n" {
                    n = Some(count(map.next_value::<f64>()?)?);
                    continue;
                }
                let dist = match map.next_value::<RawDist>()? {
                    RawDist::Uniform(low, high) => Dist::Uniform { low, high },
                    RawDist::LogUniform(low, high) => Dist::LogUniform { low, high },
                };
                if params.iter().any(|p| p.name == name) {
                    return Err(de::Error::custom(format!(
                        "duplicate random parameter `{name}`"
                    )));
                }
                params.push(RandomParam { name, dist });
            }
            let n = n.ok_or_else(|| de::Error::custom("[random] needs n = <number of draws>"))?;
            Ok(RandomSpec { n, params })
        }
    }
    d.deserialize_map(V).map(Some)
}

/// Checks the grid axes (names, bounds, counts; values strictly increasing,
/// so no point is planned twice and every axis can be drawn); returns the
/// number of grid points (1 without a grid).
pub(super) fn check_grid(
    grid: &[GridParam],
    l: &BTreeMap<String, usize>,
) -> std::result::Result<usize, String> {
    let mut total: usize = 1;
    for g in grid {
        let key = format!("grid.{}", g.name);
        let here = at(l, &key);
        check_name(&g.name).map_err(|m| format!("{here}{key}: {m}"))?;
        let kind = match &g.axis {
            Axis::Linspace { .. } => "linspace",
            Axis::Logspace { .. } => "logspace",
            Axis::Values(_) => "values",
        };
        match &g.axis {
            Axis::Linspace { start, end, n } | Axis::Logspace { start, end, n } => {
                if !start.is_finite() || !end.is_finite() {
                    return Err(format!("{here}{key}: {kind} bounds must be finite"));
                }
                if *n == 0 {
                    return Err(format!("{here}{key}: {kind} count 0: expected >= 1"));
                }
                if g.axis.is_log() && (*start <= 0.0 || *end <= 0.0) {
                    return Err(format!(
                        "{here}{key}: logspace [{start}, {end}, {n}]: expected 0 < start and 0 < end"
                    ));
                }
            }
            Axis::Values(v) => {
                if v.is_empty() {
                    return Err(format!(
                        "{here}{key}: values is empty: expected at least one value"
                    ));
                }
                if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
                    return Err(format!("{here}{key}: value {bad}: expected finite values"));
                }
            }
        }
        // Repeated values would plan the same point twice; a decreasing axis
        // cannot be drawn (and is the same grid as its increasing order).
        let values = g.axis.values();
        if let Some(w) = values.windows(2).find(|w| w[1] <= w[0]) {
            let what = if w[1] == w[0] {
                format!("value {} is repeated", w[0])
            } else {
                format!("{} follows {}", w[1], w[0])
            };
            let values_of = if kind == "values" {
                "values".to_string()
            } else {
                format!("{kind} values")
            };
            return Err(format!(
                "{here}{key}: {values_of} must strictly increase ({what}): list each value once, smallest first"
            ));
        }
        total = total.saturating_mul(g.axis.len());
    }
    Ok(total)
}

/// Checks the `[random]` table against the grid; returns its `n`.
pub(super) fn check_random(
    r: &RandomSpec,
    grid: &[GridParam],
    l: &BTreeMap<String, usize>,
) -> std::result::Result<usize, String> {
    if r.n == 0 {
        return Err(format!("{}random.n = 0: expected >= 1", at(l, "random.n")));
    }
    if r.params.is_empty() {
        return Err(format!(
            "{}[random] lists no parameter: expected e.g. w0 = {{ uniform = [0.5, 1.5] }}",
            at(l, "random")
        ));
    }
    for p in &r.params {
        let key = format!("random.{}", p.name);
        let here = at(l, &key);
        check_name(&p.name).map_err(|m| format!("{here}{key}: {m}"))?;
        if grid.iter().any(|g| g.name == p.name) {
            return Err(format!(
                "{here}{key}: `{}` is also a grid parameter",
                p.name
            ));
        }
        let (low, high, log) = match p.dist {
            Dist::Uniform { low, high } => (low, high, false),
            Dist::LogUniform { low, high } => (low, high, true),
        };
        if !(low.is_finite() && high.is_finite() && low < high) {
            return Err(format!(
                "{here}{key}: [{low}, {high}]: expected finite low < high"
            ));
        }
        if log && low <= 0.0 {
            return Err(format!(
                "{here}{key}: loguniform [{low}, {high}]: expected 0 < low < high"
            ));
        }
    }
    Ok(r.n)
}
