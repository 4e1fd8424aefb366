//! The deterministic point list of a study, and how it is split into shards.
//!
//! A [`Plan`] numbers its points `0..len`. A point's parameters and its seed
//! are pure functions of (the spec, its index): never of the shard, the
//! machine or the order of evaluation, so N shards merged equal one unsharded
//! run row for row.
//!
//! Order of a sweep's points (index = position in this order):
//! - the grid is a full factorial with the **first parameter slowest** (row-major
//!   over the parameters as they appear in the spec; the last varies fastest);
//! - with a `[random]` table, each grid point is followed by its `n` random
//!   points (`index = grid_index * n + draw`); without a grid, the plan is the
//!   `n` random points.
//!
//! Randomness: the plan uses SplitMix64 (Steele, Lea and Flood 2014) keyed by
//! (spec seed, point index): [`point_rng`] for the random parameters, and
//! [`point_seed`] for the seed handed to the evaluator (another stream, so the
//! two never correlate). Changing the generator changes the plans: the plan
//! digest in every manifest then differs, and resume and merge refuse to mix.

use crate::study::spec::{Dist, McSpec, SweepSpec};
use crate::{Error, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::ops::Range;

/// One point of a study: its identity, parameters and seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Position in the full plan (not in the shard).
    pub index: usize,
    /// Parameter values by name, in the plan's column order.
    pub params: Vec<(String, f64)>,
    /// The point's own seed, derived from (spec seed, index).
    pub seed: u64,
}

impl Point {
    /// The value of a named parameter.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.params.iter().find(|(n, _)| n == name).map(|p| p.1)
    }
}

use crate::rng::SPLITMIX64_GAMMA as GOLDEN;
const STREAM_PARAMS: u64 = 0x5041_5241_4D53_0001; // "PARAMS" + stream 1
const STREAM_SEED: u64 = 0x5345_4544_0000_0002; // "SEED" + stream 2

pub use crate::rng::SplitMix64;
use crate::rng::splitmix64_mix as mix;

fn key(seed: u64, stream: u64, index: usize) -> u64 {
    mix(mix(seed ^ stream).wrapping_add((index as u64).wrapping_mul(GOLDEN)))
}

/// The generator of point `index`'s random parameters under study seed `seed`.
pub fn point_rng(seed: u64, index: usize) -> SplitMix64 {
    SplitMix64::new(key(seed, STREAM_PARAMS, index))
}

/// The seed of point `index` under study seed `seed` (what the evaluator uses
/// for its own randomness: device draws, readout initialisation).
pub fn point_seed(seed: u64, index: usize) -> u64 {
    key(seed, STREAM_SEED, index)
}

/// A study's deterministic list of points, computed on demand (a plan of
/// millions of points costs nothing until its points are asked for).
#[derive(Debug, Clone)]
pub struct Plan {
    seed: u64,
    grid: Vec<(String, Vec<f64>)>,
    random: Option<(usize, Vec<(String, Dist)>)>,
    len: usize,
}

impl Plan {
    /// The plan of a checked sweep spec.
    pub fn sweep(spec: &SweepSpec) -> Self {
        let grid: Vec<(String, Vec<f64>)> = spec
            .grid
            .iter()
            .map(|g| (g.name.clone(), g.axis.values()))
            .collect();
        let random = spec.random.as_ref().map(|r| {
            (
                r.n,
                r.params
                    .iter()
                    .map(|p| (p.name.clone(), p.dist))
                    .collect::<Vec<_>>(),
            )
        });
        Self::new(spec.seed, grid, random)
    }

    /// The plan of a checked Monte Carlo spec: `draws` points without
    /// parameters; the evaluator samples each draw from its seed.
    pub fn monte_carlo(spec: &McSpec) -> Self {
        Self::draws(spec.seed, spec.draws)
    }

    /// `n` parameter-free points under seed `seed`.
    pub fn draws(seed: u64, n: usize) -> Self {
        Self {
            seed,
            grid: Vec::new(),
            random: None,
            len: n,
        }
    }

    /// A plan from grid axes (first slowest) and optional random draws
    /// (`n` per grid point, with their distributions).
    pub fn new(
        seed: u64,
        grid: Vec<(String, Vec<f64>)>,
        random: Option<(usize, Vec<(String, Dist)>)>,
    ) -> Self {
        let grid_len = if grid.is_empty() && random.is_some() {
            1
        } else {
            grid.iter().map(|g| g.1.len()).product()
        };
        let len = grid_len * random.as_ref().map_or(1, |r| r.0);
        Self {
            seed,
            grid,
            random,
            len,
        }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the plan has no point.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The study seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Parameter names in column order: grid (spec order), then random.
    pub fn param_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.grid.iter().map(|g| g.0.clone()).collect();
        if let Some((_, r)) = &self.random {
            names.extend(r.iter().map(|p| p.0.clone()));
        }
        names
    }

    /// The grid axes (name, values), first slowest.
    pub fn grid(&self) -> &[(String, Vec<f64>)] {
        &self.grid
    }

    /// Point `index` (panics if `index >= len()`).
    pub fn point(&self, index: usize) -> Point {
        assert!(
            index < self.len,
            "point {index} of a {}-point plan",
            self.len
        );
        let n_random = self.random.as_ref().map_or(1, |r| r.0);
        let mut rest = index / n_random;
        let mut params = vec![(String::new(), 0.0); self.grid.len()];
        // Row-major: peel the fastest (last) axis first.
        for (slot, (name, values)) in params.iter_mut().zip(&self.grid).rev() {
            *slot = (name.clone(), values[rest % values.len()]);
            rest /= values.len();
        }
        if let Some((_, dists)) = &self.random {
            let mut rng = point_rng(self.seed, index);
            params.extend(
                dists
                    .iter()
                    .map(|(n, d)| (n.clone(), d.sample(rng.next_f64()))),
            );
        }
        Point {
            index,
            params,
            seed: point_seed(self.seed, index),
        }
    }

    /// The points of a range of indices, in order.
    pub fn points(&self, range: Range<usize>) -> Vec<Point> {
        range.map(|i| self.point(i)).collect()
    }

    /// A sha256 (hex) of everything that defines the points: seed, length,
    /// names, axis values (as exact bit patterns), distributions, and the
    /// generator version. Resume and merge compare it.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"memkin-plan-v1 splitmix64\n");
        h.update(format!("seed {} len {}\n", self.seed, self.len).as_bytes());
        for (name, values) in &self.grid {
            h.update(format!("grid {name} {}:", values.len()).as_bytes());
            for v in values {
                h.update(v.to_bits().to_le_bytes());
            }
            h.update(b"\n");
        }
        if let Some((n, dists)) = &self.random {
            h.update(format!("random {n}\n").as_bytes());
            for (name, d) in dists {
                let (kind, a, b) = match *d {
                    Dist::Uniform { low, high } => ("uniform", low, high),
                    Dist::LogUniform { low, high } => ("loguniform", low, high),
                };
                h.update(
                    format!("{name} {kind} {:016x} {:016x}\n", a.to_bits(), b.to_bits()).as_bytes(),
                );
            }
        }
        hex(&h.finalize())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The contiguous block of indices shard `i` of `n` takes from a plan of
/// `n_points`: the first `n_points % n` shards take one point more; every
/// index lands in exactly one shard. Panics unless `i < n`.
pub fn shard_range(n_points: usize, i: usize, n: usize) -> Range<usize> {
    assert!(i < n, "shard {i}/{n}");
    let (q, r) = (n_points / n, n_points % n);
    let start = i * q + i.min(r);
    start..start + q + usize::from(i < r)
}

/// Parses `I/N` (0-based shard `I` of `N`).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::invalid("--shard", s, "expected I/N with 0 <= I < N, e.g. 0/4");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n) = (
        i.trim().parse::<usize>().map_err(|_| bad())?,
        n.trim().parse::<usize>().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The shard this process runs: `--shard I/N` when given, else the first of
/// these environment variables that is set:
///
/// | variable(s) | shard |
/// |---|---|
/// | `MEMKIN_SHARD=I/N` | `I/N` (any scheduler: HTCondor `$(Process)/N`, HyperQueue `$HQ_TASK_ID/N`); `MEMKIN_SHARD=off` disables every fallback below |
/// | `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT` (and `SLURM_ARRAY_TASK_MIN`) | `(ID - MIN)/COUNT` (an array `--array=1-8` gives shards 0..7) |
/// | `JOB_COMPLETION_INDEX` (Kubernetes Indexed Job) with `MEMKIN_SHARD_COUNT`, else the spec's `shards` | `INDEX/COUNT` |
///
/// `None`: the whole plan. A variable that is set but malformed, or an index
/// without a count, is an error naming the variable.
pub fn resolve_shard(
    cli: Option<(usize, usize)>,
    spec_shards: Option<usize>,
) -> Result<Option<(usize, usize)>> {
    resolve_shard_with(cli, spec_shards, |k| std::env::var(k).ok())
}

/// [`resolve_shard`] with the environment given as a function (for tests).
pub fn resolve_shard_with(
    cli: Option<(usize, usize)>,
    spec_shards: Option<usize>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<(usize, usize)>> {
    if let Some((i, n)) = cli {
        if n == 0 || i >= n {
            return Err(Error::invalid(
                "--shard",
                format!("{i}/{n}"),
                "expected I/N with 0 <= I < N",
            ));
        }
        return Ok(Some((i, n)));
    }
    let num = |var: &str| -> Result<Option<usize>> {
        match env(var) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map(Some)
                .map_err(|_| Error::invalid(var, v, "expected a whole number >= 0")),
        }
    };
    let checked = |var: &str, i: usize, n: usize| -> Result<Option<(usize, usize)>> {
        if n == 0 || i >= n {
            return Err(Error::invalid(
                var,
                format!("{i}/{n}"),
                "expected shard index < shard count",
            ));
        }
        Ok(Some((i, n)))
    };
    if let Some(v) = env("MEMKIN_SHARD").filter(|v| !v.trim().is_empty()) {
        if v.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        return parse_shard(&v).map(Some).map_err(|_| {
            Error::invalid("MEMKIN_SHARD", v, "expected I/N with 0 <= I < N, or off")
        });
    }
    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        let count = num("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
            Error::invalid(
                "SLURM_ARRAY_TASK_COUNT",
                "unset",
                "set by Slurm 21.08+ with SLURM_ARRAY_TASK_ID; or pass --shard I/N",
            )
        })?;
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let i = id.checked_sub(min).ok_or_else(|| {
            Error::invalid(
                "SLURM_ARRAY_TASK_ID",
                id,
                format!("expected >= SLURM_ARRAY_TASK_MIN = {min}"),
            )
        })?;
        return checked("SLURM_ARRAY_TASK_ID", i, count);
    }
    if let Some(i) = num("JOB_COMPLETION_INDEX")? {
        let n = num("MEMKIN_SHARD_COUNT")?.or(spec_shards).ok_or_else(|| {
            Error::invalid(
                "MEMKIN_SHARD_COUNT",
                "unset",
                "JOB_COMPLETION_INDEX needs a shard count: set MEMKIN_SHARD_COUNT (= the Job's completions) or `shards` in the spec",
            )
        })?;
        return checked("JOB_COMPLETION_INDEX", i, n);
    }
    Ok(None)
}
