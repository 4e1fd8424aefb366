//! The continuous-time kernels on the GPU: one pipeline per device model
//! (compiled on first use), chunked with [`plan_chunks`] and dispatched by
//! [`super::dispatch`] like the DDK kernel.
//! Shader: `shaders/ode.wgsl` after the model's WGSL and
//! `shaders/models/integrate.wgsl`; CPU twin: [`crate::engine::ode::run_ode_cpu`].

use super::context::GpuContext;
use super::ddk::{Chunk, ChunkLimits, GpuEngine, plan_chunks};
use super::dispatch::{
    Binding, Dispatcher, Finished, Launch, Role, Slot, par_copy, unpack_status_bytes,
};
use super::shaders;
use crate::batch::{Batch, Features};
use crate::engine::ode::{OdeSpec, check_inputs};
use crate::engine::{BackendInfo, Engine, RunOptions};
use crate::model::integrate::Integrator;
use crate::model::{MAX_PARAMS, Model};
use crate::{Error, Result};
use std::ops::Range;
use std::sync::Arc;

/// Invocations per workgroup of `shaders/ode.wgsl`.
pub const ODE_WORKGROUP_SIZE: u32 = 64;

/// Method codes of `shaders/ode.wgsl` (`METHOD_*` in integrate.wgsl, and
/// `ODE_METHOD_ADAPTIVE`).
const METHOD_EULER: u32 = 0;
const METHOD_HEUN: u32 = 1;
const METHOD_RK4: u32 = 2;
const METHOD_ADAPTIVE: u32 = 3;
const METHOD_EXACT: u32 = 4;

/// Uniform block of `shaders/ode.wgsl`. Keep in sync with `OdeUniform` there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct OdeUniform {
    /// Trajectories in this chunk.
    pub n_traj: u32,
    /// Sequences bound in `x` (the chunk's sequence block).
    pub seqs: u32,
    /// T.
    pub steps: u32,
    /// Method code (0 Euler, 1 Heun, 2 RK4, 3 adaptive, 4 exact).
    pub method: u32,
    /// Sub-steps per segment (fixed-step methods).
    pub substeps: u32,
    /// Adaptive: step attempts per segment.
    pub max_steps: u32,
    /// Workgroups along x.
    pub grid_x: u32,
    /// Padding.
    pub _pad0: u32,
    /// Pulse width.
    pub tau: f32,
    /// Rest after each pulse.
    pub rest: f32,
    /// Volts per unit input.
    pub v_scale: f32,
    /// Adaptive: relative tolerance.
    pub rtol: f32,
    /// Adaptive: absolute tolerance.
    pub atol: f32,
    /// Padding to 64 bytes.
    pub _pad1: [u32; 3],
}

/// The integrators the GPU kernel runs for every model (`exact` too for the
/// models with a closed form, i.e. `ddk-ode`).
pub const GPU_INTEGRATORS: &str = "euler, heun, rk4, adaptive";

/// The GPU engine of the continuous-time models: a [`GpuEngine`] whose
/// pipelines are all compiled on first use (so its constructor cannot fail),
/// kept as its own name for the callers that only run models. It implements
/// [`Engine`] like every engine, the DDK map included. (Boxed: it sits in
/// enums such as `study::kinetics::Kinetics` beside a reference.)
pub struct GpuOdeEngine(Box<GpuEngine>);

impl GpuOdeEngine {
    /// An engine on `ctx`; pipelines are compiled on first use of each model.
    pub fn new(ctx: Arc<GpuContext>) -> Self {
        Self(Box::new(GpuEngine::lazy(ctx)))
    }

    /// The shared context.
    pub fn context(&self) -> &Arc<GpuContext> {
        self.0.context()
    }

    /// What this engine runs on.
    pub fn info(&self) -> BackendInfo {
        self.0.info()
    }

    /// Bytes moved to and from the device so far (see [`GpuContext::transfer`]).
    pub fn transfer(&self) -> super::Transfer {
        self.0.ctx.transfer()
    }

    /// Timing and dispatch counts of the last run.
    pub fn last_timing(&self) -> super::GpuTiming {
        self.0.last_timing()
    }

    /// Integrates every trajectory of `x` (`[seqs, steps]`) under every
    /// parameter set of `spec` into fresh [`Features`] (see
    /// [`Engine::run_model_into`]); `chunk` bounds the trajectories per
    /// dispatch (tests force it tiny).
    pub fn run(
        &self,
        x: &[f32],
        seqs: usize,
        steps: usize,
        spec: &OdeSpec,
        chunk: Option<usize>,
    ) -> Result<Features> {
        let mut f = Features::default();
        self.0.run_model(x, seqs, steps, spec, chunk, &mut f)?;
        Ok(f)
    }
}

impl Engine for GpuOdeEngine {
    fn info(&self) -> BackendInfo {
        self.0.info()
    }
    fn run_into(&self, batch: &Batch, opts: &RunOptions, out: &mut Features) -> Result<()> {
        self.0.run_into(batch, opts, out)
    }
    fn run_model_into(
        &self,
        x: &[f32],
        seqs: usize,
        steps: usize,
        spec: &OdeSpec,
        opts: &RunOptions,
        out: &mut Features,
    ) -> Result<()> {
        self.0.run_model_into(x, seqs, steps, spec, opts, out)
    }
    fn transfer(&self) -> super::Transfer {
        self.0.transfer()
    }
}

impl GpuEngine {
    fn model_pipeline(&self, model: Model) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut map = self.models.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(&model) {
            return Ok(p.clone());
        }
        let p = Arc::new(self.ctx.pipeline(shaders::ode_kernel(model))?);
        map.insert(model, p.clone());
        Ok(p)
    }

    /// The continuous-model run behind [`Engine::run_model_into`]: every
    /// trajectory of `x` (`[seqs, steps]`) under every parameter set of
    /// `spec` in f32 (see [`crate::engine::ode`]). The `exact` integrator runs
    /// the f32 closed form of `shaders/models/<model>.wgsl` (`model_exact`);
    /// for a model without one it is refused with an error naming the
    /// integrators the GPU runs.
    pub(super) fn run_model(
        &self,
        x: &[f32],
        seqs: usize,
        steps: usize,
        spec: &OdeSpec,
        chunk: Option<usize>,
        f: &mut Features,
    ) -> Result<()> {
        check_inputs(x, seqs, steps)?;
        spec.check()?;
        if chunk == Some(0) {
            return Err(Error::invalid("chunk", 0, "at least 1"));
        }
        let (method, substeps, rtol, atol, max_steps) = match spec.integrator {
            Integrator::Euler { substeps } => (METHOD_EULER, substeps, 0.0, 0.0, 0),
            Integrator::Heun { substeps } => (METHOD_HEUN, substeps, 0.0, 0.0, 0),
            Integrator::Rk4 { substeps } => (METHOD_RK4, substeps, 0.0, 0.0, 0),
            Integrator::Adaptive(o) => (METHOD_ADAPTIVE, 0, o.rtol, o.atol, o.max_steps),
            Integrator::Exact if spec.model.has_exact() => (METHOD_EXACT, 0, 0.0, 0.0, 0),
            Integrator::Exact => {
                return Err(Error::invalid(
                    "integrator on the gpu backend",
                    "exact",
                    format!(
                        "one of {GPU_INTEGRATORS} (model {} has no closed form)",
                        spec.model.name()
                    ),
                ));
            }
        };
        let pipeline = self.model_pipeline(spec.model)?;
        let ctx = &*self.ctx;
        let (p_all, t) = (spec.sets(), steps);
        let lim = ChunkLimits::for_shape(ctx.limits(), t, MAX_PARAMS as u64, false, chunk);
        let chunks = plan_chunks(p_all, seqs, lim);
        let max_n = chunks.iter().map(Chunk::len).max().unwrap_or(1);
        let max_rows = chunks.iter().map(|c| c.seqs.len()).max().unwrap_or(1);
        let max_sets = chunks.iter().map(|c| c.sets.len()).max().unwrap_or(1);
        let t64 = t as u64;

        // Parameters padded to MAX_PARAMS per set, as `OdeParams` in the shader.
        let n_par = spec.model.params().len();
        let mut params = vec![0f32; p_all * MAX_PARAMS];
        for p in 0..p_all {
            for (j, &v) in spec.set(p).iter().enumerate() {
                params[p * MAX_PARAMS + j] = v as f32;
            }
        }
        debug_assert!(n_par <= MAX_PARAMS);
        let w0: Vec<f32> = spec.w0.iter().map(|&v| v as f32).collect();

        let layout = [
            Binding {
                label: "ode x",
                bytes: max_rows as u64 * t64 * 4,
                role: Role::Shared,
            },
            Binding {
                label: "ode params",
                bytes: (max_sets * MAX_PARAMS) as u64 * 4,
                role: Role::Input,
            },
            Binding {
                label: "ode w0",
                bytes: max_sets as u64 * 4,
                role: Role::Input,
            },
            Binding {
                label: "ode out",
                bytes: max_n as u64 * t64 * 4,
                role: Role::Output,
            },
            Binding {
                label: "ode status",
                bytes: max_n as u64 * 4,
                role: Role::Output,
            },
        ];
        // Buffers of the last run are reused while the model (its pipeline's
        // layout) is the same and they are large enough: sweeps and Monte Carlo
        // studies run many batches of one shape.
        let mut cache = self.model_buffers.lock().unwrap_or_else(|e| e.into_inner());
        if !cache
            .as_ref()
            .is_some_and(|(m, d)| *m == spec.model && d.fits(&layout))
        {
            *cache = None; // free the old buffers first
            let d = Dispatcher::new(ctx, &pipeline, "ode", &layout, &OdeUniform::default());
            *cache = Some((spec.model, d));
        }
        let (_, disp) = cache.as_ref().expect("just created");
        f.prepare_shape(p_all, seqs, t, false);
        let mut x_block: Option<Range<usize>> = None;
        let prepare = |i: usize, slot: &Slot| -> Result<Launch> {
            let c = &chunks[i];
            let n = c.len();
            if x_block.as_ref() != Some(&c.seqs) {
                // Shared by both slots: once per sequence block.
                let xs = &x[c.seqs.start * t..c.seqs.end * t];
                ctx.write(slot.buffer(1), 0, bytemuck::cast_slice(xs));
                x_block = Some(c.seqs.clone());
            }
            let pr = c.sets.start * MAX_PARAMS..c.sets.end * MAX_PARAMS;
            ctx.write(slot.buffer(2), 0, bytemuck::cast_slice(&params[pr]));
            ctx.write(slot.buffer(3), 0, bytemuck::cast_slice(&w0[c.sets.clone()]));
            let (grid_x, grid_y) = ctx.grid(n, ODE_WORKGROUP_SIZE)?;
            let uni = OdeUniform {
                n_traj: n as u32,
                seqs: c.seqs.len() as u32,
                steps: t as u32,
                method,
                substeps,
                max_steps,
                grid_x,
                tau: spec.pulse.tau as f32,
                rest: spec.pulse.rest as f32,
                v_scale: spec.pulse.v_scale as f32,
                rtol: rtol as f32,
                atol: atol as f32,
                ..Default::default()
            };
            ctx.write(slot.uniform(), 0, bytemuck::bytes_of(&uni));
            Ok(Launch {
                grid: (grid_x, grid_y),
                out_bytes: vec![n as u64 * t64 * 4, n as u64 * 4],
            })
        };
        let Features {
            w,
            status,
            first_bad,
            ..
        } = f;
        let finish = |i: usize, done: &Finished| -> Result<()> {
            let c = &chunks[i];
            // The chunk's trajectories are contiguous in the outputs (see plan_chunks).
            let first = c.sets.start * seqs + c.seqs.start;
            let n = c.len();
            par_copy(
                bytemuck::cast_slice_mut(&mut w[first * t..(first + n) * t]),
                done.outputs[0],
            );
            unpack_status_bytes(
                done.outputs[1],
                &mut status[first..first + n],
                &mut first_bad[first..first + n],
            );
            Ok(())
        };
        let stats = disp.run(ctx, &pipeline, "ode", chunks.len(), prepare, finish)?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = stats.into();
        Ok(())
    }
}
