//! The CPU engine: the f64 reference twin of `shaders/ddk.wgsl`, and a fast f32
//! path that uses every core and vectorises across trajectories.
//!
//! Keep [`ddk_trajectory`] in step with `main` in `shaders/ddk.wgsl`: same loop,
//! same order of operations, same status rules.

use super::{BackendInfo, Engine, Precision, RunOptions};
use crate::Result;
use crate::batch::{Batch, DeviceParams, Features, Status};
use crate::model::ddk::{ddk_sens_step, ddk_step};
use crate::study::rng::{Stream, normal_pair, purpose, uniform_f32};
use rayon::prelude::*;

/// Lanes of the fast path: trajectories integrated side by side, the inner
/// (vectorised) dimension. 16 f32 fill one AVX-512 register or two AVX2 ones.
const LANES: usize = 16;

/// The native CPU engine.
#[derive(Clone, Debug)]
pub struct CpuEngine {
    precision: Precision,
}

impl CpuEngine {
    /// A CPU engine of the given precision.
    pub fn new(precision: Precision) -> Self {
        Self { precision }
    }
    /// The f64 reference.
    pub fn reference() -> Self {
        Self::new(Precision::F64)
    }
    /// The fast f32 path.
    pub fn fast() -> Self {
        Self::new(Precision::F32)
    }
}

/// The CPU model name from /proc/cpuinfo (or the architecture).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

impl Engine for CpuEngine {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: "cpu".into(),
            precision: match self.precision {
                Precision::F32 => "f32".into(),
                Precision::F64 => "f64".into(),
            },
            adapter: cpu_model(),
            adapter_type: "native-cpu".into(),
            api: format!("rayon threads = {}", rayon::current_num_threads()),
        }
    }

    fn run_into(&self, batch: &Batch, opts: &RunOptions, f: &mut Features) -> Result<()> {
        f.prepare(batch, opts.sensitivities);
        // Noisy runs take the reference loop at either precision (the fast path
        // has no in-loop random numbers).
        match (self.precision, opts.noise) {
            (Precision::F32, None) => run_fast(batch, f),
            _ => run_reference(batch, f, opts.noise),
        }
        Ok(())
    }
}

/// One cycle-to-cycle noise sample, twin of the noise lines in
/// `shaders/ddk.wgsl`: the same Philox counter and f32 uniforms, Box-Muller in f64.
pub fn step_noise(stream: &Stream, draw: u32, seq: u32, k: u32) -> f64 {
    let b = stream.at(draw, seq, purpose::STATE_NOISE, k);
    normal_pair(uniform_f32(b[0]) as f64, uniform_f32(b[1]) as f64).0
}

/// Noise of one trajectory: stream, sigma, draw and sequence indices.
#[derive(Clone, Copy, Debug)]
pub struct TrajectoryNoise {
    /// The Philox stream.
    pub stream: Stream,
    /// Standard deviation.
    pub sigma: f64,
    /// Global draw (parameter-set) index.
    pub draw: u32,
    /// Global sequence index.
    pub seq: u32,
}

/// Integrates one trajectory in f64: the reference, twin of `main` in
/// `shaders/ddk.wgsl`. Writes the T states (NaN from the first bad step on) and,
/// when `grad` is given, the sensitivities `[T, 2]`. Returns the status and the
/// first bad step (`u32::MAX` when ok).
pub fn ddk_trajectory(
    x: &[f32],
    params: &DeviceParams,
    device: usize,
    w_out: &mut [f64],
    mut grad: Option<&mut [f64]>,
    noise: Option<TrajectoryNoise>,
) -> (Status, u32) {
    let t = x.len();
    let mut w = params.w0()[device];
    let (mut da, mut db) = (0.0f64, 0.0f64);
    let mut status = Status::Ok;
    let mut first_bad = u32::MAX;
    w_out[0] = w;
    if let Some(g) = grad.as_deref_mut() {
        g[0] = 0.0;
        g[1] = 0.0;
    }
    for k in 1..t {
        let (alpha, beta) = params.at(device, k);
        let xk = x[k - 1] as f64;
        if status == Status::Ok {
            (da, db) = ddk_sens_step(w, xk, alpha, da, db);
            w = ddk_step(w, xk, alpha, beta);
            if let Some(n) = noise {
                w += n.sigma * step_noise(&n.stream, n.draw, n.seq, k as u32);
            }
            let c = Status::classify(w);
            if c != Status::Ok {
                status = c;
                first_bad = k as u32;
            }
        }
        let bad = status != Status::Ok;
        w_out[k] = if bad { f64::NAN } else { w };
        if let Some(g) = grad.as_deref_mut() {
            g[2 * k] = if bad { f64::NAN } else { da };
            g[2 * k + 1] = if bad { f64::NAN } else { db };
        }
    }
    (status, first_bad)
}

fn run_reference(batch: &Batch, f: &mut Features, noise: Option<super::StepNoise>) {
    let (s, t) = (batch.seqs(), batch.steps());
    let params = batch.params();
    let grad_chunks: Vec<Option<&mut [f32]>> = match f.grad.as_mut() {
        Some(g) => g.chunks_mut(2 * t).map(Some).collect(),
        None => (0..f.status.len()).map(|_| None).collect(),
    };
    f.w.par_chunks_mut(t)
        .zip(f.status.par_iter_mut())
        .zip(f.first_bad.par_iter_mut())
        .zip(grad_chunks.into_par_iter())
        .enumerate()
        .for_each_init(
            || (vec![0.0f64; t], vec![0.0f64; 2 * t]),
            |(w64, g64), (i, (((w, st), fb), g))| {
                let (p, si) = (i / s, i % s);
                let want_grad = g.is_some();
                let (status, first) = ddk_trajectory(
                    batch.sequence(si),
                    params,
                    params.device(p, si),
                    w64,
                    want_grad.then_some(g64.as_mut_slice()),
                    noise.map(|n| TrajectoryNoise {
                        stream: Stream::new(n.seed),
                        sigma: n.sigma,
                        draw: (n.set_offset + p as u64) as u32,
                        seq: si as u32,
                    }),
                );
                for (o, v) in w.iter_mut().zip(w64.iter()) {
                    *o = *v as f32;
                }
                if let Some(g) = g {
                    for (o, v) in g.iter_mut().zip(g64.iter()) {
                        *o = *v as f32;
                    }
                }
                *st = status as u8;
                *fb = first;
            },
        );
}

/// Scratch of one fast-path worker, reused across blocks (no per-step allocation).
struct Scratch {
    /// Inputs transposed to `[T, LANES]`.
    xt: Vec<f32>,
    /// States `[T, LANES]`.
    wt: Vec<f32>,
    /// Sensitivities `[T, LANES]` each.
    dat: Vec<f32>,
    dbt: Vec<f32>,
    /// Per-step alpha, beta `[T, LANES]` (per-step parameters only).
    at: Vec<f32>,
    bt: Vec<f32>,
}

fn run_fast(batch: &Batch, f: &mut Features) {
    let (s, t) = (batch.seqs(), batch.steps());
    let params = batch.params();
    let want_grad = f.grad.is_some();
    let mut empty: Vec<f32> = Vec::new();
    let grad = f.grad.as_mut().unwrap_or(&mut empty);
    let blocks_per_set = s.div_ceil(LANES);
    // Work item = (set p, block b): LANES consecutive sequences of one set, whose
    // outputs are contiguous in `w`.
    let mut items: Vec<(usize, usize, &mut [f32], &mut [u8], &mut [u32], &mut [f32])> = Vec::new();
    let mut w_rest = f.w.as_mut_slice();
    let mut st_rest = f.status.as_mut_slice();
    let mut fb_rest = f.first_bad.as_mut_slice();
    let mut g_rest = grad.as_mut_slice();
    for p in 0..params.sets() {
        for b in 0..blocks_per_set {
            let n = LANES.min(s - b * LANES);
            let (w, wr) = w_rest.split_at_mut(n * t);
            let (st, sr) = st_rest.split_at_mut(n);
            let (fb, fr) = fb_rest.split_at_mut(n);
            let gl = if want_grad { n * t * 2 } else { 0 };
            let (g, gr) = g_rest.split_at_mut(gl);
            items.push((p, b * LANES, w, st, fb, g));
            (w_rest, st_rest, fb_rest, g_rest) = (wr, sr, fr, gr);
        }
    }
    let arch = pulp::Arch::new();
    items.into_par_iter().for_each_init(
        || Scratch {
            xt: vec![0.0; t * LANES],
            wt: vec![0.0; t * LANES],
            dat: vec![0.0; if want_grad { t * LANES } else { 0 }],
            dbt: vec![0.0; if want_grad { t * LANES } else { 0 }],
            at: vec![
                0.0;
                if params.steps().is_some() {
                    t * LANES
                } else {
                    0
                }
            ],
            bt: vec![
                0.0;
                if params.steps().is_some() {
                    t * LANES
                } else {
                    0
                }
            ],
        },
        |sc, (p, s0, w, st, fb, g)| {
            let n = st.len();
            arch.dispatch(|| fast_block(batch, p, s0, n, sc, w, st, fb, g));
        },
    );
}

/// One block of up to LANES trajectories of set `p`, sequences `s0..s0+n`.
#[inline(always)]
fn fast_block(
    batch: &Batch,
    p: usize,
    s0: usize,
    n: usize,
    sc: &mut Scratch,
    w_out: &mut [f32],
    st: &mut [u8],
    fb: &mut [u32],
    g_out: &mut [f32],
) {
    let t = batch.steps();
    let params = batch.params();
    let want_grad = !g_out.is_empty();
    // Transpose the inputs to [T, LANES]; idle lanes get x = 0 and a copy of lane 0's device.
    let mut a = [0f32; LANES];
    let mut b = [0f32; LANES];
    let mut w = [1f32; LANES];
    for l in 0..LANES {
        let li = l.min(n - 1);
        let seq = batch.sequence(s0 + li);
        for k in 0..t {
            sc.xt[k * LANES + l] = if l < n { seq[k] } else { 0.0 };
        }
        let dev = params.device(p, s0 + li);
        w[l] = params.w0()[dev] as f32;
        match params.steps() {
            None => {
                let (al, be) = params.at(dev, 0);
                a[l] = al as f32;
                b[l] = be as f32;
            }
            Some(_) => {
                for k in 1..t {
                    let (al, be) = params.at(dev, k);
                    sc.at[k * LANES + l] = al as f32;
                    sc.bt[k * LANES + l] = be as f32;
                }
            }
        }
    }
    let per_step = params.steps().is_some();
    sc.wt[..LANES].copy_from_slice(&w);
    let mut da = [0f32; LANES];
    let mut db = [0f32; LANES];
    // Per lane: every state so far finite and positive (NaN fails both tests).
    // Kept in the vectorised loop so clean lanes need no classification pass.
    let mut clean = [1u32; LANES];
    if want_grad {
        sc.dat[..LANES].fill(0.0);
        sc.dbt[..LANES].fill(0.0);
    }
    for k in 1..t {
        let xs: &[f32; LANES] = sc.xt[(k - 1) * LANES..k * LANES].try_into().unwrap();
        if per_step {
            a.copy_from_slice(&sc.at[k * LANES..(k + 1) * LANES]);
            b.copy_from_slice(&sc.bt[k * LANES..(k + 1) * LANES]);
        }
        if want_grad {
            for l in 0..LANES {
                let j = 1.0 - a[l] / (w[l] * w[l]);
                da[l] = da[l] * j + 1.0 / w[l];
                db[l] = db[l] * j - xs[l];
            }
            sc.dat[k * LANES..(k + 1) * LANES].copy_from_slice(&da);
            sc.dbt[k * LANES..(k + 1) * LANES].copy_from_slice(&db);
        }
        for l in 0..LANES {
            w[l] = w[l] + a[l] / w[l] - b[l] * xs[l];
            clean[l] &= ((w[l] > 0.0) as u32) & ((w[l] <= f32::MAX) as u32);
        }
        sc.wt[k * LANES..(k + 1) * LANES].copy_from_slice(&w);
    }
    // Transpose back, classifying each state; NaN from the first bad step on.
    for l in 0..n {
        let out = &mut w_out[l * t..(l + 1) * t];
        if clean[l] != 0 {
            for k in 0..t {
                out[k] = sc.wt[k * LANES + l];
            }
            st[l] = Status::Ok as u8;
            fb[l] = u32::MAX;
            if want_grad {
                let g = &mut g_out[l * t * 2..(l + 1) * t * 2];
                for k in 0..t {
                    g[2 * k] = sc.dat[k * LANES + l];
                    g[2 * k + 1] = sc.dbt[k * LANES + l];
                }
            }
            continue;
        }
        let mut status = Status::Ok;
        let mut first = u32::MAX;
        for k in 0..t {
            let v = sc.wt[k * LANES + l];
            if status == Status::Ok {
                let c = Status::classify(v as f64);
                if c != Status::Ok {
                    status = c;
                    first = k as u32;
                }
            }
            out[k] = if status == Status::Ok { v } else { f32::NAN };
        }
        st[l] = status as u8;
        fb[l] = first;
        if want_grad {
            let g = &mut g_out[l * t * 2..(l + 1) * t * 2];
            for k in 0..t {
                let bad = status != Status::Ok && k as u32 >= first;
                g[2 * k] = if bad { f32::NAN } else { sc.dat[k * LANES + l] };
                g[2 * k + 1] = if bad { f32::NAN } else { sc.dbt[k * LANES + l] };
            }
        }
    }
}
