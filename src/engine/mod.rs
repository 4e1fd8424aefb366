//! Engines: one trait, two backends.
//!
//! - [`cpu::CpuEngine`]: the reference (f64, a readable twin of the shader) and a
//!   fast f32 path (all cores, trajectories in the inner, vectorised dimension).
//! - [`gpu::GpuEngine`]: `shaders/ddk.wgsl` (and the continuous models'
//!   `shaders/ode.wgsl`) through wgpu, one invocation per trajectory looping
//!   over all T steps; batches beyond the adapter's limits are split into
//!   chunks transparently ([`gpu::dispatch`]).
//! - [`vjp`]: the reverse mode (adjoint) of the DDK map on both backends
//!   ([`vjp::VjpEngine`]: dL/dx, dL/dalpha, dL/dbeta from dL/dw).
//! - [`ode`]: continuous-time device models over a pulse protocol
//!   ([`Engine::run_model_into`] on both backends: [`ode::run_ode_cpu`] on the
//!   CPU, `shaders/ode.wgsl` on the GPU).
//!
//! [`select`] resolves `cpu | gpu | auto` into an engine.

pub mod cpu;
pub mod gpu;
pub mod ode;
mod real;
pub mod tolerance;
pub mod vjp;

use crate::batch::{Batch, Features};
use crate::{Error, Result};
pub use gpu::Transfer;
use serde::Serialize;

/// Options of one engine run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Also compute the forward sensitivities d w / d(alpha, beta).
    pub sensitivities: bool,
    /// Largest number of trajectories per GPU dispatch (`None`: as large as the
    /// adapter allows). Tests force it tiny so the multi-chunk path runs.
    pub chunk: Option<usize>,
    /// Cycle-to-cycle noise on the state (off when `None`).
    pub noise: Option<StepNoise>,
}

/// Cycle-to-cycle noise: after every step, `w += sigma * n` with `n ~ N(0, 1)`
/// drawn from Philox4x32-10 at the counter `[set_offset + p, s, STATE_NOISE, k]`
/// under the key `seed`: a pure function of (seed, draw, sequence, step), so the
/// numbers do not depend on batch size, chunking or backend. The uniforms are
/// bit-identical on CPU and GPU; the Box-Muller transform differs only by f32
/// rounding of log/sqrt/cos.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepNoise {
    /// Standard deviation of the additive noise (state units), >= 0.
    pub sigma: f64,
    /// The stream's seed (Philox key).
    pub seed: u64,
    /// Global draw index of parameter set 0 of this batch.
    pub set_offset: u64,
}

/// Which adapter or CPU ran a batch; printed in every report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BackendInfo {
    /// `cpu` or `gpu`.
    pub backend: String,
    /// `f64` or `f32`.
    pub precision: String,
    /// Adapter name (GPU) or CPU model.
    pub adapter: String,
    /// Adapter type (`DiscreteGpu`, `Cpu`...) or `native-cpu`.
    pub adapter_type: String,
    /// Graphics API (`Vulkan`...) or `rayon threads = N`.
    pub api: String,
}

/// A backend that integrates batches.
pub trait Engine: Send + Sync {
    /// What this engine runs on.
    fn info(&self) -> BackendInfo;
    /// Integrates every trajectory of `batch` into `out`, reusing its storage
    /// (sweeps and benchmarks call this in a loop without reallocating).
    fn run_into(&self, batch: &Batch, opts: &RunOptions, out: &mut Features) -> Result<()>;

    /// Integrates a continuous-time device model over a pulse protocol (see
    /// [`ode`]): every sequence of `x` (`[seqs, steps]`) under every
    /// parameter set of `spec`, into `out`, reusing its storage. The same
    /// contract as [`Engine::run_into`], so a caller runs either family
    /// without knowing the backend; `opts.chunk` bounds the GPU's chunks,
    /// sensitivities and noise are not defined for the models (refused).
    /// The default is the CPU's f64 reference ([`ode::run_ode_cpu_into`],
    /// all cores), what the CPU engine runs whatever its precision; the GPU
    /// engine runs `shaders/ode.wgsl` in f32.
    fn run_model_into(
        &self,
        x: &[f32],
        seqs: usize,
        steps: usize,
        spec: &ode::OdeSpec,
        opts: &RunOptions,
        out: &mut Features,
    ) -> Result<()> {
        ode::refuse_ddk_options(opts)?;
        ode::run_ode_cpu_into(x, seqs, steps, spec, out)
    }

    /// Integrates every trajectory of `batch` into fresh [`Features`].
    fn run(&self, batch: &Batch, opts: &RunOptions) -> Result<Features> {
        let mut f = Features::default();
        self.run_into(batch, opts, &mut f)?;
        Ok(f)
    }

    /// Bytes this engine's device has moved to and from the host so far (in
    /// total; take [`Transfer::since`] of two readings for one run). The CPU
    /// engine moves none.
    fn transfer(&self) -> Transfer {
        Transfer::default()
    }
}

/// A shared engine is an engine (a caller keeps an `Arc` for the engine's own
/// accessors, e.g. [`gpu::GpuEngine::last_timing`], while handing it on as a
/// `Box<dyn Engine>`).
impl<E: Engine + ?Sized> Engine for std::sync::Arc<E> {
    fn info(&self) -> BackendInfo {
        (**self).info()
    }
    fn run_into(&self, batch: &Batch, opts: &RunOptions, out: &mut Features) -> Result<()> {
        (**self).run_into(batch, opts, out)
    }
    fn run_model_into(
        &self,
        x: &[f32],
        seqs: usize,
        steps: usize,
        spec: &ode::OdeSpec,
        opts: &RunOptions,
        out: &mut Features,
    ) -> Result<()> {
        (**self).run_model_into(x, seqs, steps, spec, opts, out)
    }
    fn transfer(&self) -> Transfer {
        (**self).transfer()
    }
}

/// The user's backend choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The native CPU engine.
    Cpu,
    /// Any wgpu adapter, the lavapipe software one included.
    Gpu,
    /// A hardware GPU when there is one, else the native CPU engine.
    Auto,
}

/// Arithmetic precision of the CPU engine (the GPU is f32 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Single precision: the fast, vectorised path.
    F32,
    /// Double precision: the reference.
    F64,
}

/// The GPU context for a backend choice, for drivers other than the DDK
/// engine (the continuous-time models): `cpu` none, `gpu` any adapter (an error
/// when there is none), `auto` a hardware GPU when there is one.
pub fn select_gpu_context(choice: BackendChoice) -> Result<Option<gpu::GpuContext>> {
    Ok(match choice {
        BackendChoice::Cpu => None,
        BackendChoice::Gpu => Some(gpu::GpuContext::new()?),
        BackendChoice::Auto => gpu::GpuContext::new().ok().filter(|c| !c.is_software()),
    })
}

/// The GPU context the engines of a backend choice run on, or `None` for the
/// CPU. `gpu` with `f64` is an error (WGSL has no portable f64); a software
/// adapter chosen with `gpu` is announced on stderr; `auto` picks a hardware
/// GPU when there is one (and always the CPU for `f64`).
pub(crate) fn engine_context(
    choice: BackendChoice,
    precision: Precision,
) -> Result<Option<std::sync::Arc<gpu::GpuContext>>> {
    let ctx = match choice {
        BackendChoice::Cpu => None,
        BackendChoice::Gpu => {
            if precision == Precision::F64 {
                return Err(Error::invalid(
                    "precision",
                    "f64",
                    "f32 with --backend gpu (WGSL has no portable f64)",
                ));
            }
            let ctx = gpu::GpuContext::new()?;
            if ctx.is_software() {
                eprintln!(
                    "memkin: note: GPU adapter '{}' is a software rasteriser (CPU); its speed says nothing about a GPU",
                    ctx.adapter_info().name
                );
            }
            Some(ctx)
        }
        BackendChoice::Auto if precision == Precision::F32 => {
            gpu::GpuContext::new().ok().filter(|c| !c.is_software())
        }
        BackendChoice::Auto => None,
    };
    Ok(ctx.map(std::sync::Arc::new))
}

/// Builds the engine for a backend choice. `gpu` with `f64` is an error (WGSL has
/// no portable f64). `auto` picks a hardware GPU when there is one, else the CPU.
pub fn select(choice: BackendChoice, precision: Precision) -> Result<Box<dyn Engine>> {
    Ok(match engine_context(choice, precision)? {
        Some(ctx) => Box::new(gpu::GpuEngine::new(ctx)?),
        None => Box::new(cpu::CpuEngine::new(precision)),
    })
}
