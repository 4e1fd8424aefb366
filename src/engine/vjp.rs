//! Reverse mode (the adjoint) of the DDK map: from the stored states `w` and
//! the cotangents `g = dL/dw` of a batch, the gradients `dL/dx` of every input
//! and `dL/dalpha`, `dL/dbeta` of every device.
//!
//! ```text
//! lambda[T-1] = g[T-1]
//! lambda[k-1] = g[k-1] + lambda[k] * (1 - alpha[k] / w[k-1]^2)        k = T-1 .. 1
//! dL/dx[k-1]  = -lambda[k] * beta[k]        dL/dx[T-1] = 0 (the last input drives no stored state)
//! dL/dalpha[k] = lambda[k] / w[k-1]         dL/dbeta[k] = -lambda[k] * x[k-1]     (k >= 1)
//! ```
//!
//! For scalar parameters the per-step terms are summed over `k` (from `T-1`
//! down to 1) and over every sequence a device drives; per-step parameters keep
//! one value per step (entry 0 is 0: it acts on no step). Twin of
//! `shaders/ddk_vjp.wgsl` ([`ddk_vjp_trajectory`] has its loop).
//!
//! Backends ([`VjpEngine`]):
//! - the CPU at f64 (the reference) recomputes each trajectory's states in f64
//!   from the inputs ([`crate::engine::cpu::ddk_trajectory`]) and ignores the
//!   stored f32 states beyond their shape: their rounding would cap its
//!   accuracy at f32's;
//! - the CPU at f32 (all cores, one trajectory per task) and the GPU
//!   ([`crate::engine::gpu::GpuVjpEngine`]) use the stored states.
//!
//! The per-device sums are formed on the host in f64, in trajectory order,
//! from one partial per trajectory (per step for per-step parameters), so they
//! do not depend on thread count or chunking. A trajectory that went bad in the
//! forward pass (NaN states) gives NaN gradients, and so does its device's
//! parameter gradient: check the forward [`crate::batch::Features::status`].

use super::cpu::{CpuEngine, ddk_trajectory};
use super::real::Real;
use super::{BackendChoice, BackendInfo, Engine, Precision};
use crate::batch::{Batch, DeviceParams};
use crate::{Error, Result};
use rayon::prelude::*;

/// Options of one reverse run.
#[derive(Clone, Debug, Default)]
pub struct VjpOptions {
    /// Largest number of trajectories per GPU dispatch (`None`: as large as
    /// the adapter allows). Tests force it tiny so the multi-chunk path runs.
    pub chunk: Option<usize>,
}

/// The gradients of one reverse run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vjp {
    /// P.
    pub sets: usize,
    /// S.
    pub seqs: usize,
    /// T.
    pub steps: usize,
    /// `Some(T)` for per-step parameters.
    pub per_step: Option<usize>,
    /// dL/dx `[P, S, T]` (the last step of each sequence is 0).
    pub grad_x: Vec<f32>,
    /// dL/dalpha per device, `[P*G]` or per step `[P*G, T]` (step 0 is 0).
    pub grad_alpha: Vec<f64>,
    /// dL/dbeta, shaped like `grad_alpha`.
    pub grad_beta: Vec<f64>,
}

impl Vjp {
    /// Shapes the storage for `batch`, reusing the allocations; `grad_x` is
    /// overwritten by the engine, the parameter gradients are zeroed.
    pub fn prepare(&mut self, batch: &Batch) {
        let params = batch.params();
        (self.sets, self.seqs, self.steps) = (params.sets(), batch.seqs(), batch.steps());
        self.per_step = params.steps();
        self.grad_x
            .resize(batch.trajectories() * batch.steps(), 0.0);
        let n = params.sets() * params.groups() * params.steps().unwrap_or(1);
        self.grad_alpha.clear();
        self.grad_alpha.resize(n, 0.0);
        self.grad_beta.clear();
        self.grad_beta.resize(n, 0.0);
    }

    /// The parameter gradients as `[P*G, 2]` (scalar) or `[P*G, 2, T]`
    /// (per step): alpha first, then beta, the layout of `simulate --params`.
    pub fn grad_params(&self) -> Vec<f64> {
        let per = self.per_step.unwrap_or(1);
        let devices = self.grad_alpha.len() / per.max(1);
        let mut out = Vec::with_capacity(2 * self.grad_alpha.len());
        for d in 0..devices {
            out.extend_from_slice(&self.grad_alpha[d * per..(d + 1) * per]);
            out.extend_from_slice(&self.grad_beta[d * per..(d + 1) * per]);
        }
        out
    }
}

/// A backend that runs the reverse pass of the DDK map.
pub trait VjpEngine: Send + Sync {
    /// What this engine runs on.
    fn info(&self) -> BackendInfo;

    /// Gradients of `batch` from its stored states `w` `[P, S, T]` (as the
    /// forward engine wrote them) and the cotangents `g = dL/dw` `[P, S, T]`,
    /// into `out` (reusing its storage).
    fn vjp_into(
        &self,
        batch: &Batch,
        w: &[f32],
        g: &[f32],
        opts: &VjpOptions,
        out: &mut Vjp,
    ) -> Result<()>;

    /// [`VjpEngine::vjp_into`] into fresh storage.
    fn vjp(&self, batch: &Batch, w: &[f32], g: &[f32], opts: &VjpOptions) -> Result<Vjp> {
        let mut v = Vjp::default();
        self.vjp_into(batch, w, g, opts, &mut v)?;
        Ok(v)
    }
}

/// Checks the shapes of the stored states and the cotangents (`[P, S, T]`
/// each) and that every cotangent is finite.
pub fn check_cotangents(batch: &Batch, w: &[f32], g: &[f32]) -> Result<()> {
    let want = batch.trajectories() * batch.steps();
    let shape = format!(
        "[{}, {}, {}] = {want} values",
        batch.params().sets(),
        batch.seqs(),
        batch.steps()
    );
    if w.len() != want {
        return Err(Error::invalid("states length", w.len(), shape));
    }
    if g.len() != want {
        return Err(Error::invalid("cotangents length", g.len(), shape));
    }
    if let Some(i) = g.iter().position(|v| !v.is_finite()) {
        let t = batch.steps();
        let s = batch.seqs();
        return Err(Error::invalid(
            format!("cotangent[{}, {}, {}]", i / t / s, (i / t) % s, i % t),
            g[i],
            "a finite number",
        ));
    }
    Ok(())
}

/// The loop of [`ddk_vjp_trajectory`] at either precision.
#[inline(always)]
fn vjp_loop<R: Real>(
    x: &[f32],
    params: &DeviceParams,
    device: usize,
    w: &[R],
    g: &[R],
    gx: &mut [R],
    ga: &mut [R],
    gb: &mut [R],
) -> R {
    let t = x.len();
    let per_step = params.steps().is_some();
    ga.fill(R::ZERO);
    gb.fill(R::ZERO);
    gx[t - 1] = R::ZERO;
    let mut lam = g[t - 1];
    for k in (1..t).rev() {
        let (a, b) = params.at(device, k);
        let (a, b) = (R::of(a), R::of(b));
        let wp = w[k - 1];
        let xp = R::of(x[k - 1] as f64);
        gx[k - 1] = -(lam * b);
        let da = lam / wp;
        let db = -(lam * xp);
        if per_step {
            ga[k] = da;
            gb[k] = db;
        } else {
            ga[0] += da;
            gb[0] += db;
        }
        lam = g[k - 1] + lam * (R::ONE - a / (wp * wp));
    }
    lam
}

/// The adjoint of one trajectory in f64, twin of `main` in
/// `shaders/ddk_vjp.wgsl`. `x` is the sequence (T inputs), `w` its T states,
/// `g` the T cotangents; writes `gx` (T values, the last 0) and the
/// trajectory's parameter terms into `ga`, `gb` (one value, the sum over the
/// steps, for scalar parameters; T values, the first 0, per step). Returns
/// `dL/dw[0]`.
pub fn ddk_vjp_trajectory(
    x: &[f32],
    params: &DeviceParams,
    device: usize,
    w: &[f64],
    g: &[f64],
    gx: &mut [f64],
    ga: &mut [f64],
    gb: &mut [f64],
) -> f64 {
    vjp_loop(x, params, device, w, g, gx, ga, gb)
}

/// [`ddk_vjp_trajectory`] in f32 (the CPU fast path; the same operations in
/// the same order as the shader).
pub fn ddk_vjp_trajectory_f32(
    x: &[f32],
    params: &DeviceParams,
    device: usize,
    w: &[f32],
    g: &[f32],
    gx: &mut [f32],
    ga: &mut [f32],
    gb: &mut [f32],
) -> f32 {
    vjp_loop(x, params, device, w, g, gx, ga, gb)
}

/// Sums per-trajectory parameter terms (`[n, per, 2]`: alpha and beta
/// interleaved, trajectories `first ..` in order) into the per-device
/// gradients of `out`, in f64 and in trajectory order.
pub(crate) fn reduce_partials<F: Copy + Into<f64>>(
    params: &DeviceParams,
    seqs: usize,
    first: usize,
    parts: &[F],
    out: &mut Vjp,
) {
    let per = params.steps().unwrap_or(1);
    for (j, row) in parts.chunks_exact(2 * per).enumerate() {
        let i = first + j;
        let o = params.device(i / seqs, i % seqs) * per;
        for k in 0..per {
            out.grad_alpha[o + k] += row[2 * k].into();
            out.grad_beta[o + k] += row[2 * k + 1].into();
        }
    }
}

impl VjpEngine for CpuEngine {
    fn info(&self) -> BackendInfo {
        Engine::info(self)
    }

    fn vjp_into(
        &self,
        batch: &Batch,
        w: &[f32],
        g: &[f32],
        _opts: &VjpOptions,
        out: &mut Vjp,
    ) -> Result<()> {
        check_cotangents(batch, w, g)?;
        out.prepare(batch);
        let (s, t) = (batch.seqs(), batch.steps());
        let params = batch.params();
        let per = params.steps().unwrap_or(1);
        let n = batch.trajectories();
        let precision = self.precision();
        let mut parts = vec![0f64; n * per * 2];
        out.grad_x
            .par_chunks_mut(t)
            .zip(parts.par_chunks_mut(2 * per))
            .enumerate()
            .with_min_len(64)
            .for_each_init(
                || Scratch::new(t, per),
                |sc, (i, (gx, part))| {
                    let (p, si) = (i / s, i % s);
                    let dev = params.device(p, si);
                    let xs = batch.sequence(si);
                    let gi = &g[i * t..(i + 1) * t];
                    match precision {
                        Precision::F64 => {
                            ddk_trajectory(xs, params, dev, &mut sc.w64, None, None);
                            for (o, &v) in sc.g64.iter_mut().zip(gi) {
                                *o = v as f64;
                            }
                            ddk_vjp_trajectory(
                                xs,
                                params,
                                dev,
                                &sc.w64,
                                &sc.g64,
                                &mut sc.gx64,
                                &mut sc.ga64,
                                &mut sc.gb64,
                            );
                            for (o, &v) in gx.iter_mut().zip(&sc.gx64) {
                                *o = v as f32;
                            }
                            for k in 0..per {
                                part[2 * k] = sc.ga64[k];
                                part[2 * k + 1] = sc.gb64[k];
                            }
                        }
                        Precision::F32 => {
                            let wi = &w[i * t..(i + 1) * t];
                            ddk_vjp_trajectory_f32(
                                xs,
                                params,
                                dev,
                                wi,
                                gi,
                                gx,
                                &mut sc.ga32,
                                &mut sc.gb32,
                            );
                            for k in 0..per {
                                part[2 * k] = sc.ga32[k] as f64;
                                part[2 * k + 1] = sc.gb32[k] as f64;
                            }
                        }
                    }
                },
            );
        reduce_partials(params, s, 0, &parts, out);
        Ok(())
    }
}

/// Per-worker buffers of the CPU reverse pass.
struct Scratch {
    w64: Vec<f64>,
    g64: Vec<f64>,
    gx64: Vec<f64>,
    ga64: Vec<f64>,
    gb64: Vec<f64>,
    ga32: Vec<f32>,
    gb32: Vec<f32>,
}

impl Scratch {
    fn new(t: usize, per: usize) -> Self {
        Self {
            w64: vec![0.0; t],
            g64: vec![0.0; t],
            gx64: vec![0.0; t],
            ga64: vec![0.0; per],
            gb64: vec![0.0; per],
            ga32: vec![0.0; per],
            gb32: vec![0.0; per],
        }
    }
}

/// A forward engine and a reverse engine for one backend choice, sharing one
/// GPU device when they run on the GPU (see [`super::select`] for the rules of
/// `auto` and of `gpu` with `f64`).
pub fn select_with_vjp(
    choice: BackendChoice,
    precision: Precision,
) -> Result<(Box<dyn Engine>, Box<dyn VjpEngine>)> {
    let ctx = super::engine_context(choice, precision)?;
    Ok(match ctx {
        Some(ctx) => (
            Box::new(super::gpu::GpuEngine::new(ctx.clone())?),
            Box::new(super::gpu::GpuVjpEngine::new(ctx)?),
        ),
        None => (
            Box::new(CpuEngine::new(precision)),
            Box::new(CpuEngine::new(precision)),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-step trajectory by hand: w1 = w0 + a/w0 - b x0, L = g0 w0 + g1 w1.
    #[test]
    fn two_step_adjoint_matches_hand_derivatives() {
        let params = DeviceParams::scalar(&[(0.7, 0.9)], 1.5).unwrap();
        let x = [0.4f32, 0.0];
        let w0 = 1.5f64;
        let w1 = w0 + 0.7 / w0 - 0.9 * 0.4f32 as f64;
        let (g0, g1) = (0.3, -1.2);
        let (mut gx, mut ga, mut gb) = ([0.0; 2], [0.0], [0.0]);
        let dw0 = ddk_vjp_trajectory(
            &x,
            &params,
            0,
            &[w0, w1],
            &[g0, g1],
            &mut gx,
            &mut ga,
            &mut gb,
        );
        assert!((gx[0] - (-0.9 * g1)).abs() < 1e-15);
        assert_eq!(gx[1], 0.0);
        assert!((ga[0] - g1 / w0).abs() < 1e-15);
        assert!((gb[0] - (-g1 * 0.4f32 as f64)).abs() < 1e-15);
        assert!((dw0 - (g0 + g1 * (1.0 - 0.7 / (w0 * w0)))).abs() < 1e-15);
    }
}
