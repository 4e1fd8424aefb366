//! The continuous-time kernels on the GPU: one pipeline per device model
//! (compiled on first use), chunked with [`plan_chunks`] like the DDK kernel.
//! Shader: `shaders/ode.wgsl` after the model's WGSL and
//! `shaders/models/integrate.wgsl`; CPU twin: [`crate::engine::ode::run_ode_cpu`].

use super::context::GpuContext;
use super::ddk::{
    Chunk, ChunkLimits, bind_all, plan_chunks, staging, storage, uniform, unpack_status,
};
use super::shaders;
use crate::batch::Features;
use crate::engine::BackendInfo;
use crate::engine::ode::{OdeSpec, check_inputs};
use crate::model::integrate::Integrator;
use crate::model::{MAX_PARAMS, Model};
use crate::{Error, Result};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

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

/// The GPU engine of the continuous-time models.
pub struct GpuOdeEngine {
    ctx: Arc<GpuContext>,
    pipelines: Mutex<HashMap<Model, Arc<wgpu::ComputePipeline>>>,
    buffers: Mutex<Option<Box<OdeBuffers>>>,
}

/// The device buffers of one model's kernel and their bind group.
struct OdeBuffers {
    model: Model,
    /// Byte sizes: x, params, w0, out, status.
    sizes: [u64; 5],
    x: wgpu::Buffer,
    params: wgpu::Buffer,
    w0: wgpu::Buffer,
    out: wgpu::Buffer,
    status: wgpu::Buffer,
    out_stage: wgpu::Buffer,
    status_stage: wgpu::Buffer,
    uniform: wgpu::Buffer,
    bind: wgpu::BindGroup,
}

impl OdeBuffers {
    fn new(
        dev: &wgpu::Device,
        pipeline: &wgpu::ComputePipeline,
        model: Model,
        sizes: [u64; 5],
    ) -> Self {
        let cp = wgpu::BufferUsages::COPY_DST;
        let src = wgpu::BufferUsages::COPY_SRC;
        let x = storage(dev, "ode x", sizes[0], cp);
        let params = storage(dev, "ode params", sizes[1], cp);
        let w0 = storage(dev, "ode w0", sizes[2], cp);
        let out = storage(dev, "ode out", sizes[3], src);
        let status = storage(dev, "ode status", sizes[4], src);
        let out_stage = staging(dev, "ode out staging", sizes[3]);
        let status_stage = staging(dev, "ode status staging", sizes[4]);
        let uniform = uniform(dev, "ode uniform", &OdeUniform::default());
        let bind = bind_all(
            dev,
            pipeline,
            "ode bind group",
            &[&uniform, &x, &params, &w0, &out, &status],
        );
        Self {
            model,
            sizes,
            x,
            params,
            w0,
            out,
            status,
            out_stage,
            status_stage,
            uniform,
            bind,
        }
    }
}

impl GpuOdeEngine {
    /// An engine on `ctx`; pipelines are compiled on first use of each model.
    pub fn new(ctx: Arc<GpuContext>) -> Self {
        Self {
            ctx,
            pipelines: Mutex::new(HashMap::new()),
            buffers: Mutex::new(None),
        }
    }

    /// The shared context.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// What this engine runs on.
    pub fn info(&self) -> BackendInfo {
        self.ctx.backend_info()
    }

    /// Bytes moved to and from the device so far (see [`GpuContext::transfer`]).
    pub fn transfer(&self) -> super::Transfer {
        self.ctx.transfer()
    }

    fn pipeline(&self, model: Model) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut map = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(&model) {
            return Ok(p.clone());
        }
        let p = Arc::new(self.ctx.pipeline(shaders::ode_kernel(model))?);
        map.insert(model, p.clone());
        Ok(p)
    }

    /// Integrates every trajectory of `x` (`[seqs, steps]`) under every
    /// parameter set of `spec` in f32 (see [`crate::engine::ode`]). `chunk`
    /// bounds the trajectories per dispatch (tests force it tiny). The `exact`
    /// integrator runs the f32 closed form of `shaders/models/<model>.wgsl`
    /// (`model_exact`); for a model without one it is refused with an error
    /// naming the integrators the GPU runs.
    pub fn run(
        &self,
        x: &[f32],
        seqs: usize,
        steps: usize,
        spec: &OdeSpec,
        chunk: Option<usize>,
    ) -> Result<Features> {
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
        let pipeline = self.pipeline(spec.model)?;
        let ctx = &*self.ctx;
        let dev = &ctx.device;
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

        let sizes = [
            max_rows as u64 * t64 * 4,
            (max_sets * MAX_PARAMS) as u64 * 4,
            max_sets as u64 * 4,
            max_n as u64 * t64 * 4,
            max_n as u64 * 4,
        ];
        // Buffers of the last run are reused while the model (its pipeline's
        // layout) is the same and they are large enough: sweeps and Monte Carlo
        // studies run many batches of one shape.
        let mut cache = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        let fits = cache.as_ref().is_some_and(|c| {
            c.model == spec.model && c.sizes.iter().zip(&sizes).all(|(have, want)| have >= want)
        });
        if !fits {
            *cache = None; // free the old buffers first
            *cache = Some(Box::new(OdeBuffers::new(dev, &pipeline, spec.model, sizes)));
        }
        let OdeBuffers {
            x: x_buf,
            params: p_buf,
            w0: w0_buf,
            out: out_buf,
            status: st_buf,
            out_stage,
            status_stage: st_stage,
            uniform: uni_buf,
            bind,
            ..
        } = cache.as_deref().expect("just created");
        let mut f = Features::default();
        f.prepare_shape(p_all, seqs, t, false);
        let mut words = vec![0u32; max_n];
        let mut x_uploaded: Option<Range<usize>> = None;
        for c in &chunks {
            let n = c.len();
            if x_uploaded.as_ref() != Some(&c.seqs) {
                let xs = &x[c.seqs.start * t..c.seqs.end * t];
                ctx.write(x_buf, 0, bytemuck::cast_slice(xs));
                x_uploaded = Some(c.seqs.clone());
            }
            let pr = c.sets.start * MAX_PARAMS..c.sets.end * MAX_PARAMS;
            ctx.write(p_buf, 0, bytemuck::cast_slice(&params[pr]));
            ctx.write(
                w0_buf,
                0,
                bytemuck::cast_slice(&w0[c.sets.start..c.sets.end]),
            );
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
            ctx.write(uni_buf, 0, bytemuck::bytes_of(&uni));
            let out_bytes = n as u64 * t64 * 4;
            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("ode compute"),
            });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("ode pass"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, bind, &[]);
                pass.dispatch_workgroups(grid_x, grid_y, 1);
            }
            enc.copy_buffer_to_buffer(out_buf, 0, out_stage, 0, out_bytes);
            enc.copy_buffer_to_buffer(st_buf, 0, st_stage, 0, n as u64 * 4);
            ctx.queue.submit([enc.finish()]);
            // The chunk's trajectories are contiguous in the outputs (see plan_chunks).
            let first = c.sets.start * seqs + c.seqs.start;
            ctx.read_buffer(
                out_stage,
                out_bytes,
                bytemuck::cast_slice_mut(&mut f.w[first * t..(first + n) * t]),
            )?;
            ctx.read_buffer(
                st_stage,
                n as u64 * 4,
                bytemuck::cast_slice_mut(&mut words[..n]),
            )?;
            unpack_status(
                &words[..n],
                &mut f.status[first..first + n],
                &mut f.first_bad[first..first + n],
            );
        }
        Ok(f)
    }
}
