//! [`Batch`]: S input sequences of length T crossed with P parameter sets, and
//! [`Features`]: what an engine returns for it.
//!
//! A trajectory is identified by `(p, s)`: parameter set `p` applied to sequence
//! `s`. The inputs are stored once, `[S, T]` row-major, and never duplicated per
//! parameter set. Each parameter set may hold `G` devices ("groups", default 1):
//! sequence `s` is driven through device `s % G` of its set, which models one
//! device per channel (for MNIST rows, `G = 28`).
//!
//! Features are `[P, S, T]` f32 (the state after each step, `w[0]` included),
//! with a [`Status`] and the first bad step per trajectory, and optionally the
//! forward sensitivities `[P, S, T, 2]` (d/dalpha, d/dbeta).

use crate::{Error, Result};

/// Parameters of the DDK devices of a batch.
///
/// | field | shape | meaning | valid range |
/// |---|---|---|---|
/// | `alpha` | `[P*G]` or `[P*G*T]` | diffusion-limited growth rate | finite, > 0 |
/// | `beta` | `[P*G]` or `[P*G*T]` | field-driven drift coefficient | finite, > 0 |
/// | `w0` | `[P*G]` | initial state | finite, > 0 (default 1) |
///
/// With per-step parameters, entry `k` acts in the step from `w[k-1]` to `w[k]`;
/// entry 0 is unused (and not validated), as in the authors' code.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceParams {
    sets: usize,
    groups: usize,
    steps: Option<usize>,
    alpha: Vec<f64>,
    beta: Vec<f64>,
    w0: Vec<f64>,
}

impl DeviceParams {
    /// One scalar `(alpha, beta)` pair per parameter set, one device per set.
    pub fn scalar(pairs: &[(f64, f64)], w0: f64) -> Result<Self> {
        let alpha = pairs.iter().map(|p| p.0).collect();
        let beta = pairs.iter().map(|p| p.1).collect();
        Self::new(pairs.len(), 1, None, alpha, beta, vec![w0; pairs.len()])
    }

    /// Per-step parameters: `alpha`, `beta` are `[P, T]` row-major.
    pub fn per_step(
        sets: usize,
        steps: usize,
        alpha: Vec<f64>,
        beta: Vec<f64>,
        w0: f64,
    ) -> Result<Self> {
        Self::new(sets, 1, Some(steps), alpha, beta, vec![w0; sets])
    }

    /// The general constructor: `sets` parameter sets of `groups` devices each,
    /// scalar (`steps = None`) or per-step. Validates every value (see the table).
    pub fn new(
        sets: usize,
        groups: usize,
        steps: Option<usize>,
        alpha: Vec<f64>,
        beta: Vec<f64>,
        w0: Vec<f64>,
    ) -> Result<Self> {
        let params = Self::new_unchecked(sets, groups, steps, alpha, beta, w0)?;
        params.check_positive(false)?;
        Ok(params)
    }

    /// Like [`DeviceParams::new`] but allows `alpha = beta = 0` (a stuck device
    /// that holds its `w0`). Shapes and finiteness are still checked.
    pub fn new_allow_stuck(
        sets: usize,
        groups: usize,
        steps: Option<usize>,
        alpha: Vec<f64>,
        beta: Vec<f64>,
        w0: Vec<f64>,
    ) -> Result<Self> {
        let params = Self::new_unchecked(sets, groups, steps, alpha, beta, w0)?;
        params.check_positive(true)?;
        Ok(params)
    }

    fn new_unchecked(
        sets: usize,
        groups: usize,
        steps: Option<usize>,
        alpha: Vec<f64>,
        beta: Vec<f64>,
        w0: Vec<f64>,
    ) -> Result<Self> {
        if sets == 0 {
            return Err(Error::invalid("parameter sets", 0, "at least 1"));
        }
        if groups == 0 {
            return Err(Error::invalid("groups", 0, "at least 1"));
        }
        if steps == Some(0) {
            return Err(Error::invalid("steps", 0, "at least 1"));
        }
        let per_device = steps.unwrap_or(1);
        let want = sets * groups * per_device;
        for (name, len) in [("alpha", alpha.len()), ("beta", beta.len())] {
            if len != want {
                return Err(Error::invalid(
                    format!("{name} length"),
                    len,
                    format!("{want} (= {sets} sets x {groups} devices x {per_device} steps)"),
                ));
            }
        }
        if w0.len() != sets * groups {
            return Err(Error::invalid(
                "w0 length",
                w0.len(),
                format!("{}", sets * groups),
            ));
        }
        Ok(Self {
            sets,
            groups,
            steps,
            alpha,
            beta,
            w0,
        })
    }

    fn check_positive(&self, allow_stuck: bool) -> Result<()> {
        let per_device = self.steps.unwrap_or(1);
        for (name, v) in [("alpha", &self.alpha), ("beta", &self.beta)] {
            for (i, &a) in v.iter().enumerate() {
                if self.steps.is_some() && i % per_device == 0 {
                    continue; // entry 0 of a per-step vector is unused
                }
                let ok = a.is_finite() && (a > 0.0 || (allow_stuck && a == 0.0));
                if !ok {
                    let at = if self.steps.is_some() {
                        format!(
                            "{name}[set {}, step {}]",
                            i / per_device / self.groups,
                            i % per_device
                        )
                    } else {
                        format!("{name}[set {}]", i / self.groups)
                    };
                    return Err(Error::invalid(at, a, "finite and > 0"));
                }
            }
        }
        for (i, &w) in self.w0.iter().enumerate() {
            if !(w.is_finite() && w > 0.0) {
                return Err(Error::invalid(format!("w0[{i}]"), w, "finite and > 0"));
            }
        }
        Ok(())
    }

    /// Parameter sets from a table of `source` (a file, or an argument's
    /// name): shape `[P, 2]`, one `(alpha, beta)` row per set, or `[P, 2, T]`,
    /// per-step rows `alpha[0..T]`, `beta[0..T]` with `T = steps` (the
    /// input's). Every error names `source`: its shape, or the bad value
    /// (`beta[set 1] = -2: finite and > 0`).
    pub fn from_table(
        source: &std::path::Path,
        v: &[f32],
        shape: &[usize],
        steps: usize,
        w0: f64,
    ) -> Result<Self> {
        let named = |e: Error| match e {
            Error::InvalidParameter {
                field,
                value,
                expected,
            } => Error::bad_file(source, format!("{field} = {value}: {expected}")),
            other => other,
        };
        match *shape {
            [n, 2] if v.len() == 2 * n => {
                let pairs: Vec<(f64, f64)> = v
                    .chunks_exact(2)
                    .map(|p| (p[0] as f64, p[1] as f64))
                    .collect();
                Self::scalar(&pairs, w0).map_err(named)
            }
            [_, 2, t] if t != steps => Err(Error::bad_file(
                source,
                format!("shape {shape:?}: per-step T = {t} but the input has T = {steps}"),
            )),
            [n, 2, t] if v.len() == 2 * n * t => {
                let mut al = Vec::with_capacity(n * t);
                let mut be = Vec::with_capacity(n * t);
                for row in v.chunks_exact(2 * t) {
                    al.extend(row[..t].iter().map(|&z| z as f64));
                    be.extend(row[t..].iter().map(|&z| z as f64));
                }
                Self::per_step(n, t, al, be, w0).map_err(named)
            }
            _ => Err(Error::bad_file(
                source,
                format!("shape {shape:?}: expected [P, 2] or [P, 2, T]"),
            )),
        }
    }

    /// Number of parameter sets P.
    pub fn sets(&self) -> usize {
        self.sets
    }
    /// Devices per parameter set G.
    pub fn groups(&self) -> usize {
        self.groups
    }
    /// `Some(T)` for per-step parameters.
    pub fn steps(&self) -> Option<usize> {
        self.steps
    }
    /// All alphas, `[P*G]` or `[P*G*T]`.
    pub fn alpha(&self) -> &[f64] {
        &self.alpha
    }
    /// All betas, shaped like [`DeviceParams::alpha`].
    pub fn beta(&self) -> &[f64] {
        &self.beta
    }
    /// Initial states `[P*G]`.
    pub fn w0(&self) -> &[f64] {
        &self.w0
    }
    /// Index of the device that drives sequence `s` under parameter set `p`.
    #[inline]
    pub fn device(&self, p: usize, s: usize) -> usize {
        p * self.groups + s % self.groups
    }
    /// `(alpha, beta)` of `device` in the step that produces `w[k]` (k >= 1).
    #[inline]
    pub fn at(&self, device: usize, k: usize) -> (f64, f64) {
        match self.steps {
            None => (self.alpha[device], self.beta[device]),
            Some(t) => (self.alpha[device * t + k], self.beta[device * t + k]),
        }
    }
}

/// Checks an input block: `x` is `[seqs, steps]` row-major, finite, with
/// `1 <= T < 2^30` (the shaders pack the first bad step into 30 bits).
pub fn check_inputs(x: &[f32], seqs: usize, steps: usize) -> Result<()> {
    if seqs == 0 || steps == 0 {
        return Err(Error::invalid(
            "input shape",
            format!("[{seqs}, {steps}]"),
            "S >= 1 and T >= 1",
        ));
    }
    if steps >= (1 << 30) {
        return Err(Error::invalid("T", steps, "< 2^30"));
    }
    if x.len() != seqs * steps {
        return Err(Error::invalid(
            "input length",
            x.len(),
            format!("{seqs} x {steps} = {}", seqs * steps),
        ));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            format!("input[{}, {}]", i / steps, i % steps),
            x[i],
            "a finite number (inputs are normally scaled to [0, 1])",
        ));
    }
    Ok(())
}

/// `(S, T)` of an input block of `source` (a file, or an argument's name)
/// with shape `shape`: rank 2, S >= 1, T >= 1, every value finite, each
/// error naming `source` and the element.
pub fn sequences_shape(
    source: &std::path::Path,
    x: &[f32],
    shape: &[usize],
) -> Result<(usize, usize)> {
    let &[seqs, steps] = shape else {
        return Err(Error::bad_file(
            source,
            format!("shape {shape:?}: expected [S, T] (rank 2)"),
        ));
    };
    if seqs == 0 || steps == 0 {
        return Err(Error::bad_file(
            source,
            format!("shape {shape:?}: expected S >= 1 and T >= 1"),
        ));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::bad_file(
            source,
            format!(
                "element [{}, {}] is {}: expected finite values (normally in [0, 1])",
                i / steps,
                i % steps,
                x[i]
            ),
        ));
    }
    check_inputs(x, seqs, steps)?;
    Ok((seqs, steps))
}

/// A batch: `S` sequences of `T` steps crossed with the parameter sets.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    x: &'a [f32],
    seqs: usize,
    steps: usize,
    params: &'a DeviceParams,
}

impl<'a> Batch<'a> {
    /// Checks shapes and values: `x` is `[seqs, steps]` row-major and finite; per-step
    /// parameters must have the same `T`.
    pub fn new(x: &'a [f32], seqs: usize, steps: usize, params: &'a DeviceParams) -> Result<Self> {
        check_inputs(x, seqs, steps)?;
        if let Some(t) = params.steps()
            && t != steps
        {
            return Err(Error::invalid(
                "per-step parameter length T",
                t,
                format!("{steps}, the input's T"),
            ));
        }
        Ok(Self {
            x,
            seqs,
            steps,
            params,
        })
    }

    /// The inputs `[S, T]`.
    pub fn inputs(&self) -> &'a [f32] {
        self.x
    }
    /// Sequence `s`.
    pub fn sequence(&self, s: usize) -> &'a [f32] {
        &self.x[s * self.steps..(s + 1) * self.steps]
    }
    /// Number of sequences S.
    pub fn seqs(&self) -> usize {
        self.seqs
    }
    /// Steps per sequence T (feature length, `w[0]` included).
    pub fn steps(&self) -> usize {
        self.steps
    }
    /// The parameters.
    pub fn params(&self) -> &'a DeviceParams {
        self.params
    }
    /// Number of trajectories P * S.
    pub fn trajectories(&self) -> usize {
        self.params.sets() * self.seqs
    }
}

/// What happened to one trajectory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// All states finite and positive.
    Ok = 0,
    /// Some state went `<= 0` (the map's instability: `beta x > 2 sqrt(alpha)`).
    NonPositive = 1,
    /// Some state became infinite or NaN.
    NonFinite = 2,
}

impl Status {
    /// From the wire code (0, 1, 2).
    pub fn from_code(c: u8) -> Self {
        match c {
            0 => Status::Ok,
            1 => Status::NonPositive,
            _ => Status::NonFinite,
        }
    }
    /// Classifies one state value: the check every engine applies after each step.
    #[inline(always)]
    pub fn classify(w: f64) -> Status {
        if !w.is_finite() {
            Status::NonFinite
        } else if w <= 0.0 {
            Status::NonPositive
        } else {
            Status::Ok
        }
    }
}

/// The output of an engine run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Features {
    /// P.
    pub sets: usize,
    /// S.
    pub seqs: usize,
    /// T.
    pub steps: usize,
    /// States `[P, S, T]`; NaN from a trajectory's first bad step on.
    pub w: Vec<f32>,
    /// [`Status`] codes `[P, S]`.
    pub status: Vec<u8>,
    /// First bad step `[P, S]` (`u32::MAX` when ok).
    pub first_bad: Vec<u32>,
    /// Sensitivities `[P, S, T, 2]` (d/dalpha, d/dbeta) when requested.
    pub grad: Option<Vec<f32>>,
}

impl Features {
    /// Shapes the storage for `batch` (reusing the allocations). Every element is
    /// overwritten by the engine, so nothing is cleared.
    pub fn prepare(&mut self, batch: &Batch, sensitivities: bool) {
        self.prepare_shape(
            batch.params().sets(),
            batch.seqs(),
            batch.steps(),
            sensitivities,
        );
    }

    /// Shapes the storage for `sets x seqs` trajectories of `steps` states
    /// (reusing the allocations; nothing is cleared).
    pub fn prepare_shape(&mut self, sets: usize, seqs: usize, steps: usize, sensitivities: bool) {
        let n = sets * seqs;
        (self.sets, self.seqs, self.steps) = (sets, seqs, steps);
        self.w.resize(n * steps, 0.0);
        self.status.resize(n, 0);
        self.first_bad.resize(n, u32::MAX);
        if sensitivities {
            self.grad
                .get_or_insert_with(Vec::new)
                .resize(n * steps * 2, 0.0);
        } else {
            self.grad = None;
        }
    }

    /// The state `w[k]` of trajectory `(p, s)`.
    pub fn get(&self, p: usize, s: usize, k: usize) -> f32 {
        self.w[(p * self.seqs + s) * self.steps + k]
    }
    /// The whole feature map of trajectory `(p, s)`.
    pub fn trajectory(&self, p: usize, s: usize) -> &[f32] {
        let i = (p * self.seqs + s) * self.steps;
        &self.w[i..i + self.steps]
    }
    /// The status of trajectory `(p, s)`.
    pub fn status_of(&self, p: usize, s: usize) -> Status {
        Status::from_code(self.status[p * self.seqs + s])
    }
    /// Trajectories per status: `[ok, non_positive, non_finite]`.
    pub fn status_counts(&self) -> [usize; 3] {
        let mut c = [0usize; 3];
        for &s in &self.status {
            c[s.min(2) as usize] += 1;
        }
        c
    }
    /// Share of trajectories that are not ok.
    pub fn diverged_fraction(&self) -> f64 {
        let c = self.status_counts();
        (c[1] + c[2]) as f64 / self.status.len().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_tables_are_rows_of_alpha_beta_or_per_step_rows_and_errors_name_the_source() {
        let src = std::path::Path::new("p.npy");
        let p = DeviceParams::from_table(src, &[0.5, 0.25, 0.75, 2.0], &[2, 2], 5, 1.0).unwrap();
        assert_eq!(
            (p.alpha(), p.beta(), p.steps()),
            (&[0.5, 0.75][..], &[0.25, 2.0][..], None)
        );
        // [P, 2, T]: the alpha row, then the beta row, of each set.
        let v: Vec<f32> = (1..=12).map(|i| i as f32).collect();
        let p = DeviceParams::from_table(src, &v, &[2, 2, 3], 3, 1.0).unwrap();
        assert_eq!(p.at(1, 2), (9.0, 12.0));
        assert_eq!(p.at(0, 1), (2.0, 5.0));
        let msg = |v: &[f32], shape: &[usize]| {
            DeviceParams::from_table(src, v, shape, 3, 1.0)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            msg(&[0.5, 0.5, 0.5, -2.0], &[2, 2]),
            "p.npy: beta[set 1] = -2: finite and > 0"
        );
        assert_eq!(
            msg(&[0.5; 6], &[2, 3]),
            "p.npy: shape [2, 3]: expected [P, 2] or [P, 2, T]"
        );
        assert_eq!(
            msg(&[0.5; 8], &[2, 2, 2]),
            "p.npy: shape [2, 2, 2]: per-step T = 2 but the input has T = 3"
        );
    }

    #[test]
    fn sequence_shapes_are_rank_2_non_empty_and_finite_naming_the_element() {
        let src = std::path::Path::new("x.npy");
        assert_eq!(sequences_shape(src, &[0.0; 6], &[2, 3]).unwrap(), (2, 3));
        let msg =
            |x: &[f32], shape: &[usize]| sequences_shape(src, x, shape).unwrap_err().to_string();
        assert_eq!(
            msg(&[0.0; 6], &[6]),
            "x.npy: shape [6]: expected [S, T] (rank 2)"
        );
        assert_eq!(
            msg(&[], &[0, 6]),
            "x.npy: shape [0, 6]: expected S >= 1 and T >= 1"
        );
        let mut x = [0.0f32; 6];
        x[4] = f32::INFINITY;
        assert_eq!(
            msg(&x, &[2, 3]),
            "x.npy: element [1, 1] is inf: expected finite values (normally in [0, 1])"
        );
    }
}
