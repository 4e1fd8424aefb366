//! `memkin.Engine`: one backend, opened once, and the calls that run on it.

use crate::fail::{Fail, guarded};
use memkin::batch::{Batch, DeviceParams, Features};
use memkin::engine::cpu::CpuEngine;
use memkin::engine::gpu::{GpuContext, GpuEngine, GpuOdeEngine, GpuVjpEngine};
use memkin::engine::ode::{OdeSpec, run_ode_cpu};
use memkin::engine::vjp::{VjpEngine, VjpOptions};
use memkin::engine::{BackendChoice, BackendInfo, Engine, Precision, RunOptions};
use memkin::model::Model;
use memkin::model::integrate::{Integrator, PulseProtocol};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Trajectories per slice of a long call: between slices the GIL is taken
/// back briefly to honour Ctrl-C. A call within one slice hands the engine's
/// buffers to NumPy as they are; a longer one copies each slice's results once
/// into the output (one slice of scratch: 131,072 x T x 4 bytes).
pub const SLICE: usize = 1 << 17;

/// A compute backend opened once: the CPU engine, or a GPU device with the
/// DDK forward and reverse pipelines (the continuous models' are built on
/// first use), reused by every call.
#[pyclass(name = "Engine", module = "memkin._memkin", frozen)]
pub struct PyEngine {
    choice: BackendChoice,
    precision: Precision,
    ctx: Option<Arc<GpuContext>>,
    forward: Box<dyn Engine>,
    reverse: Mutex<Option<Arc<dyn VjpEngine>>>,
    ode: Mutex<Option<Arc<GpuOdeEngine>>>,
    /// Seconds the engine itself ran in the last call (f64 bits), summed over
    /// its slices: the binding's overhead is the call's wall time less this.
    last_seconds: std::sync::atomic::AtomicU64,
}

fn choice_of(s: &str) -> Result<BackendChoice, Fail> {
    Ok(match s {
        "cpu" => BackendChoice::Cpu,
        "gpu" => BackendChoice::Gpu,
        "auto" => BackendChoice::Auto,
        other => {
            return Err(Fail::value(
                "backend",
                format!("{other:?}"),
                "one of cpu, gpu, auto",
            ));
        }
    })
}

fn precision_of(s: &str) -> Result<Precision, Fail> {
    Ok(match s {
        "f32" => Precision::F32,
        "f64" => Precision::F64,
        other => return Err(Fail::value("precision", format!("{other:?}"), "f32 or f64")),
    })
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// The adapter whose name contains `want` (case-insensitive).
fn context_named(want: &str) -> Result<GpuContext, Fail> {
    let adapters = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
    let w = want.to_lowercase();
    match adapters
        .into_iter()
        .find(|a| a.get_info().name.to_lowercase().contains(&w))
    {
        Some(a) => Ok(GpuContext::from_adapter(a)?),
        None => Err(Fail::value(
            "adapter",
            format!("{want:?}"),
            &format!(
                "part of an adapter's name (found: {})",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ),
        )),
    }
}

/// The GPU context of a backend choice (the rules of `memkin::engine::select`):
/// `cpu` none; `gpu` any adapter (f32 only); `auto` a hardware GPU for f32,
/// else none. `adapter` picks the device by name (like WGPU_ADAPTER_NAME).
fn open(
    choice: BackendChoice,
    precision: Precision,
    adapter: Option<&str>,
) -> Result<Option<Arc<GpuContext>>, Fail> {
    let ctx = match choice {
        BackendChoice::Cpu => {
            if adapter.is_some() {
                return Err(Fail::value(
                    "adapter",
                    "given with backend=\"cpu\"",
                    "only with backend=\"gpu\" or \"auto\"",
                ));
            }
            None
        }
        BackendChoice::Gpu if precision == Precision::F64 => {
            return Err(Fail::value(
                "precision",
                "f64",
                "f32 with backend=\"gpu\" (WGSL has no portable f64)",
            ));
        }
        BackendChoice::Gpu => Some(match adapter {
            Some(a) => context_named(a)?,
            None => GpuContext::new()?,
        }),
        BackendChoice::Auto if precision == Precision::F64 => None,
        BackendChoice::Auto => match adapter {
            Some(a) => Some(context_named(a)?),
            None => GpuContext::new().ok().filter(|c| !c.is_software()),
        },
    };
    Ok(ctx.map(Arc::new))
}

/// Python's view of a [`BackendInfo`].
fn info_dict<'py>(
    py: Python<'py>,
    i: &BackendInfo,
    software: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("backend", &i.backend)?;
    d.set_item("precision", &i.precision)?;
    d.set_item("adapter", &i.adapter)?;
    d.set_item("adapter_type", &i.adapter_type)?;
    d.set_item("api", &i.api)?;
    d.set_item("software", software)?;
    Ok(d)
}

/// Every adapter wgpu sees, as `memkin devices` lists them (list of dicts).
#[pyfunction]
pub fn adapters(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let list = py
        .detach(|| guarded(|| Ok(memkin::engine::gpu::context::list_adapters())))
        .map_err(Fail::into_py)?;
    list.iter()
        .map(|a| {
            let d = PyDict::new(py);
            d.set_item("name", &a.name)?;
            d.set_item("device_type", &a.device_type)?;
            d.set_item("backend", &a.backend)?;
            d.set_item("driver", &a.driver)?;
            d.set_item(
                "max_storage_buffer_binding_size",
                a.max_storage_buffer_binding_size,
            )?;
            d.set_item("max_buffer_size", a.max_buffer_size)?;
            d.set_item("timestamp_query", a.timestamp_query)?;
            Ok(d)
        })
        .collect()
}

/// `[S, T]` of a C-contiguous float32 input, read in place (the messages of
/// `memkin simulate` for `--input`, naming `x`). Finiteness is checked by the
/// library as each slice is bound (one pass over the input, without the GIL);
/// [`non_finite`] words its error as the CLI does.
fn input<'a>(x: &'a PyReadonlyArray2<'_, f32>) -> Result<(&'a [f32], usize, usize), Fail> {
    let shape = x.shape();
    let (s, t) = (shape[0], shape[1]);
    if s == 0 || t == 0 {
        return Err(Fail::Mk(memkin::Error::bad_file(
            "x",
            format!("shape [{s}, {t}]: expected S >= 1 and T >= 1"),
        )));
    }
    let v = x.as_slice().map_err(|_| {
        Fail::Mk(memkin::Error::bad_file(
            "x",
            "not C-contiguous (memkin.simulate converts it; the native call reads the buffer in place)",
        ))
    })?;
    Ok((v, s, t))
}

/// The library's error for a non-finite input in rows `s0..` (`x` the
/// slice's elements) as `memkin simulate` words it, with the row counted
/// from the start of the whole input; other errors pass through.
fn non_finite(e: memkin::Error, x: &[f32], s0: usize, steps: usize) -> Fail {
    match x.iter().position(|v| !v.is_finite()) {
        Some(i) => Fail::Mk(memkin::Error::bad_file(
            "x",
            format!(
                "element [{}, {}] is {}: expected finite values (normally in [0, 1])",
                s0 + i / steps,
                i % steps,
                x[i]
            ),
        )),
        None => Fail::Mk(e),
    }
}

/// The DDK parameters: scalar `alpha`, `beta` (outputs without a P axis), or
/// `params` `[P, 2]` / `[P, 2, T]` (outputs `[P, ...]`); the messages of
/// `memkin simulate --alpha/--beta/--params`, naming the Python arguments.
fn ddk_params(
    alpha: Option<f64>,
    beta: Option<f64>,
    params: Option<&PyReadonlyArrayDyn<'_, f64>>,
    w0: f64,
    steps: usize,
) -> Result<(DeviceParams, bool), Fail> {
    if !(w0.is_finite() && w0 > 0.0) {
        return Err(Fail::value("w0", w0, "finite and > 0"));
    }
    match (params, alpha, beta) {
        (Some(p), None, None) => {
            let shape = p.shape().to_vec();
            let v = p
                .as_slice()
                .map_err(|_| Fail::value("params", "not C-contiguous", "a C-contiguous array"))?;
            let named = |e: memkin::Error| match e {
                memkin::Error::InvalidParameter {
                    field,
                    value,
                    expected,
                } => Fail::Mk(memkin::Error::bad_file(
                    "params",
                    format!("{field} = {value}: {expected}"),
                )),
                other => Fail::Mk(other),
            };
            match shape.as_slice() {
                [n, 2] if *n >= 1 => {
                    let pairs: Vec<(f64, f64)> =
                        (0..*n).map(|i| (v[2 * i], v[2 * i + 1])).collect();
                    Ok((DeviceParams::scalar(&pairs, w0).map_err(named)?, true))
                }
                [n, 2, t] if *n >= 1 => {
                    if *t != steps {
                        return Err(Fail::Mk(memkin::Error::bad_file(
                            "params",
                            format!(
                                "shape {shape:?}: per-step T = {t} but the input has T = {steps}"
                            ),
                        )));
                    }
                    let (mut al, mut be) = (Vec::with_capacity(n * t), Vec::with_capacity(n * t));
                    for i in 0..*n {
                        al.extend_from_slice(&v[i * 2 * t..i * 2 * t + t]);
                        be.extend_from_slice(&v[i * 2 * t + t..(i + 1) * 2 * t]);
                    }
                    Ok((
                        DeviceParams::per_step(*n, *t, al, be, w0).map_err(named)?,
                        true,
                    ))
                }
                _ => Err(Fail::Mk(memkin::Error::bad_file(
                    "params",
                    format!("shape {shape:?}: expected [P, 2] or [P, 2, T] with P >= 1"),
                ))),
            }
        }
        (None, Some(a), Some(b)) => {
            for (field, v) in [("alpha", a), ("beta", b)] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(Fail::value(field, v, "finite and > 0"));
                }
            }
            Ok((DeviceParams::scalar(&[(a, b)], w0)?, false))
        }
        (Some(_), _, _) => Err(Fail::value(
            "alpha/beta",
            "given with params",
            "either alpha and beta, or params",
        )),
        _ => Err(Fail::value(
            "parameters",
            "none",
            "give alpha and beta (scalars), or params ([P, 2] or [P, 2, T])",
        )),
    }
}

/// Runs `run(s0, s1, out)` over slices of at most `slice` trajectories of the
/// `sets x seqs` batch (`out`: the slice's features, storage reused), the GIL
/// released during each, Ctrl-C checked between them. One slice: its
/// features are returned as they are (no copy); more: each slice's results
/// are copied once into the output (appended when `sets == 1`, so the output
/// is written once, never zero-filled first).
fn sliced<F>(
    py: Python<'_>,
    sets: usize,
    seqs: usize,
    steps: usize,
    slice: usize,
    mut run: F,
) -> Result<Features, Fail>
where
    F: FnMut(usize, usize, &mut Features) -> Result<(), Fail> + Send,
{
    let per = (slice / sets).max(1);
    let mut f = Features::default();
    if seqs <= per {
        py.detach(|| guarded(|| run(0, seqs, &mut f)))?;
        return Ok(f);
    }
    let mut all = Features::default();
    let mut s0 = 0;
    while s0 < seqs {
        let s1 = (s0 + per).min(seqs);
        py.detach(|| {
            guarded(|| {
                run(s0, s1, &mut f)?;
                let n = s1 - s0;
                if sets == 1 {
                    if s0 == 0 {
                        all.sets = 1;
                        (all.seqs, all.steps) = (seqs, steps);
                        all.w.reserve_exact(seqs * steps);
                        all.status.reserve_exact(seqs);
                        all.first_bad.reserve_exact(seqs);
                        if f.grad.is_some() {
                            all.grad = Some(Vec::with_capacity(2 * seqs * steps));
                        }
                    }
                    all.w.extend_from_slice(&f.w);
                    all.status.extend_from_slice(&f.status);
                    all.first_bad.extend_from_slice(&f.first_bad);
                    if let (Some(g), Some(fg)) = (all.grad.as_mut(), f.grad.as_ref()) {
                        g.extend_from_slice(fg);
                    }
                    return Ok(());
                }
                if s0 == 0 {
                    all.prepare_shape(sets, seqs, steps, f.grad.is_some());
                }
                for p in 0..sets {
                    let (dst, src) = ((p * seqs + s0) * steps, p * n * steps);
                    all.w[dst..dst + n * steps].copy_from_slice(&f.w[src..src + n * steps]);
                    let (dst, src) = (p * seqs + s0, p * n);
                    all.status[dst..dst + n].copy_from_slice(&f.status[src..src + n]);
                    all.first_bad[dst..dst + n].copy_from_slice(&f.first_bad[src..src + n]);
                    if let (Some(g), Some(fg)) = (all.grad.as_mut(), f.grad.as_ref()) {
                        let (dst, src) = (2 * (p * seqs + s0) * steps, 2 * p * n * steps);
                        g[dst..dst + 2 * n * steps].copy_from_slice(&fg[src..src + 2 * n * steps]);
                    }
                }
                Ok(())
            })
        })?;
        py.check_signals()?;
        s0 = s1;
    }
    Ok(all)
}

/// A vector handed to NumPy as the buffer of an array of `shape` (no copy).
fn array<'py, T: numpy::Element>(
    py: Python<'py>,
    v: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let a = ndarray::Array::from_shape_vec(ndarray::IxDyn(shape), v).map_err(|e| {
        pyo3::exceptions::PyRuntimeError::new_err(format!("memkin: output shape: {e}"))
    })?;
    Ok(a.into_pyarray(py))
}

/// The features of a DDK call as `(w, status[, grad])`.
fn outputs<'py>(py: Python<'py>, f: Features, keep_sets: bool) -> PyResult<Bound<'py, PyTuple>> {
    let (p, s, t) = (f.sets, f.seqs, f.steps);
    let lead: Vec<usize> = if keep_sets { vec![p, s] } else { vec![s] };
    let w = array(py, f.w, &[lead.clone(), vec![t]].concat())?;
    let status = array(py, f.status, &lead)?;
    match f.grad {
        Some(g) => {
            let g = array(py, g, &[lead, vec![t, 2]].concat())?;
            PyTuple::new(py, [w.into_any(), status.into_any(), g.into_any()])
        }
        None => PyTuple::new(py, [w.into_any(), status.into_any()]),
    }
}

/// Refuses, before allocating, outputs that cannot fit in memory (the rule of
/// `memkin simulate`).
fn check_size(what: &str, traj: usize, steps: usize, per_step: u128) -> Result<(), Fail> {
    let traj = traj as u128;
    let needed = memkin::limits::product(&[traj, steps as u128, per_step]).saturating_add(traj);
    Ok(memkin::limits::check_memory(what.to_string(), needed)?)
}

fn integrator_of(name: &str, model: Model, substeps: u32, rtol: f64) -> Result<Integrator, Fail> {
    // The library's one builder: a name means the same numerics as in the CLI.
    let i = Integrator::from_name(name, substeps, rtol)?;
    i.check(model).map_err(|e| match e {
        memkin::Error::InvalidParameter {
            value, expected, ..
        } => Fail::value("integrator", value, &expected),
        other => Fail::Mk(other),
    })?;
    Ok(i)
}

impl PyEngine {
    fn reverse(&self) -> Result<Arc<dyn VjpEngine>, Fail> {
        let mut slot = self.reverse.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        let r: Arc<dyn VjpEngine> = match &self.ctx {
            Some(ctx) => Arc::new(GpuVjpEngine::new(ctx.clone())?),
            None => Arc::new(CpuEngine::new(self.precision)),
        };
        *slot = Some(r.clone());
        Ok(r)
    }

    fn set_seconds(&self, s: f64) {
        self.last_seconds
            .store(s.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }

    fn ode_gpu(&self, ctx: &Arc<GpuContext>) -> Arc<GpuOdeEngine> {
        let mut slot = self.ode.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert_with(|| Arc::new(GpuOdeEngine::new(ctx.clone())))
            .clone()
    }
}

#[pymethods]
impl PyEngine {
    /// Opens a backend: `backend` cpu, gpu (any adapter, the software one
    /// included) or auto (a hardware GPU when there is one, else the CPU);
    /// `adapter` a part of the GPU adapter's name; `precision` f32 or f64
    /// (f64: the CPU reference; the GPU is f32 only).
    #[new]
    #[pyo3(signature = (backend = "auto", adapter = None, precision = "f32"))]
    fn new(
        py: Python<'_>,
        backend: &str,
        adapter: Option<String>,
        precision: &str,
    ) -> PyResult<Self> {
        let (choice, precision) = (
            choice_of(backend).map_err(Fail::into_py)?,
            precision_of(precision).map_err(Fail::into_py)?,
        );
        py.detach(|| {
            guarded(|| {
                let ctx = open(choice, precision, adapter.as_deref())?;
                let forward: Box<dyn Engine> = match &ctx {
                    Some(c) => Box::new(GpuEngine::new(c.clone())?),
                    None => Box::new(CpuEngine::new(precision)),
                };
                Ok(PyEngine {
                    choice,
                    precision,
                    ctx,
                    forward,
                    reverse: Mutex::new(None),
                    ode: Mutex::new(None),
                    last_seconds: Default::default(),
                })
            })
        })
        .map_err(Fail::into_py)
    }

    /// What the engine runs on: a dict with backend, precision, adapter,
    /// adapter_type, api, software.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let software = self.ctx.as_ref().is_some_and(|c| c.is_software());
        info_dict(py, &self.forward.info(), software)
    }

    /// Seconds the engine itself ran during the last call on this engine
    /// (summed over its slices; excludes argument checks and conversions).
    #[getter]
    fn last_seconds(&self) -> f64 {
        f64::from_bits(self.last_seconds.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The DDK map over `x` `[S, T]` (C-contiguous float32, read in place).
    /// Returns `(w, status)` or `(w, status, grad)`; see `memkin.simulate`.
    #[pyo3(signature = (x, alpha = None, beta = None, *, params = None, w0 = 1.0, grad = false, chunk = None, slice = SLICE))]
    fn simulate<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        alpha: Option<f64>,
        beta: Option<f64>,
        params: Option<PyReadonlyArrayDyn<'py, f64>>,
        w0: f64,
        grad: bool,
        chunk: Option<usize>,
        slice: usize,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let (f, keep) = (|| -> Result<(Features, bool), Fail> {
            let (xs, seqs, steps) = input(&x)?;
            if chunk == Some(0) {
                return Err(Fail::value("chunk", 0, "at least 1"));
            }
            if slice == 0 {
                return Err(Fail::value("slice", 0, "at least 1"));
            }
            let (dp, keep) = ddk_params(alpha, beta, params.as_ref(), w0, steps)?;
            let sets = dp.sets();
            check_size(
                &format!(
                    "simulate: {sets} parameter set(s) x {seqs} sequences x {steps} steps{}",
                    if grad { " with grad=True" } else { "" }
                ),
                sets * seqs,
                steps,
                4 + if grad { 8 } else { 0 },
            )?;
            let opts = RunOptions {
                sensitivities: grad,
                chunk,
                noise: None,
            };
            let engine = self.forward.as_ref();
            let mut secs = 0.0;
            let f = sliced(py, sets, seqs, steps, slice, |s0, s1, out| {
                let xs = &xs[s0 * steps..s1 * steps];
                let b = Batch::new(xs, s1 - s0, steps, &dp)
                    .map_err(|e| non_finite(e, xs, s0, steps))?;
                let t0 = std::time::Instant::now();
                engine.run_into(&b, &opts, out)?;
                secs += t0.elapsed().as_secs_f64();
                Ok(())
            })?;
            self.set_seconds(secs);
            Ok((f, keep))
        })()
        .map_err(Fail::into_py)?;
        outputs(py, f, keep)
    }

    /// The reverse mode of the DDK map: from the inputs `x`, the stored states
    /// `w` (as `simulate` returned them) and the cotangents `g = dL/dw` (shaped
    /// like `w`), returns `(grad_x, grad_alpha, grad_beta)`; see `memkin.vjp`.
    #[pyo3(signature = (x, w, g, alpha = None, beta = None, *, params = None, w0 = 1.0, chunk = None))]
    fn vjp<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        w: PyReadonlyArrayDyn<'py, f32>,
        g: PyReadonlyArrayDyn<'py, f32>,
        alpha: Option<f64>,
        beta: Option<f64>,
        params: Option<PyReadonlyArrayDyn<'py, f64>>,
        w0: f64,
        chunk: Option<usize>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let (v, keep, shape) = (|| -> Result<_, Fail> {
            let (xs, seqs, steps) = input(&x)?;
            if chunk == Some(0) {
                return Err(Fail::value("chunk", 0, "at least 1"));
            }
            let (dp, keep) = ddk_params(alpha, beta, params.as_ref(), w0, steps)?;
            let shape: Vec<usize> = if keep {
                vec![dp.sets(), seqs, steps]
            } else {
                vec![seqs, steps]
            };
            for (name, a) in [("w", &w), ("g", &g)] {
                if a.shape() != shape.as_slice() {
                    return Err(Fail::Mk(memkin::Error::bad_file(
                        name,
                        format!(
                            "shape {:?}: expected {shape:?} (the shape of simulate's w)",
                            a.shape()
                        ),
                    )));
                }
            }
            let not_c = |n: &str| Fail::Mk(memkin::Error::bad_file(n, "not C-contiguous"));
            let ws = w.as_slice().map_err(|_| not_c("w"))?;
            let gs = g.as_slice().map_err(|_| not_c("g"))?;
            let reverse = self.reverse()?;
            let v = py.detach(|| {
                guarded(|| {
                    let b = Batch::new(xs, seqs, steps, &dp)
                        .map_err(|e| non_finite(e, xs, 0, steps))?;
                    let t0 = std::time::Instant::now();
                    let v = reverse.vjp(&b, ws, gs, &VjpOptions { chunk })?;
                    Ok((v, t0.elapsed().as_secs_f64()))
                })
            })?;
            let v = {
                self.set_seconds(v.1);
                v.0
            };
            py.check_signals()?;
            Ok((v, keep, shape))
        })()
        .map_err(Fail::into_py)?;
        let gx = array(py, v.grad_x, &shape)?;
        let pshape: Vec<usize> = match v.per_step {
            Some(t) => vec![v.sets, t],
            None => vec![v.sets],
        };
        if keep {
            let ga = array(py, v.grad_alpha, &pshape)?;
            let gb = array(py, v.grad_beta, &pshape)?;
            PyTuple::new(py, [gx.into_any(), ga.into_any(), gb.into_any()])
        } else {
            let (a, b) = (v.grad_alpha[0], v.grad_beta[0]);
            PyTuple::new(
                py,
                [
                    gx.into_any(),
                    a.into_pyobject(py)?.into_any(),
                    b.into_pyobject(py)?.into_any(),
                ],
            )
        }
    }

    /// A continuous-time device model driven by pulses over `x` `[S, T]`:
    /// returns `(w, status)`; see `memkin.simulate_model`.
    #[pyo3(signature = (x, model, integrator = "euler", *, substeps = 1, rtol = 1e-6, pulse_width = 1.0, rest = 0.0, v_scale = 1.0, w0 = None, chunk = None, params = None, slice = SLICE))]
    fn simulate_model<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        model: &str,
        integrator: &str,
        substeps: u32,
        rtol: f64,
        pulse_width: f64,
        rest: f64,
        v_scale: f64,
        w0: Option<f64>,
        chunk: Option<usize>,
        params: Option<HashMap<String, f64>>,
        slice: usize,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let f = (|| -> Result<Features, Fail> {
            if model == "ddk" {
                return Err(Fail::value(
                    "model",
                    "\"ddk\"",
                    "a continuous-time model (ddk-ode, diffusive, linear-drift); the discrete map is memkin.simulate",
                ));
            }
            let m = Model::from_name(model)?;
            let specs = m.params();
            let mut p = m.defaults();
            let mut given: Vec<(&String, &f64)> = params.iter().flatten().collect();
            given.sort_by(|a, b| a.0.cmp(b.0));
            for (name, &v) in given {
                let Some(j) = specs.iter().position(|s| s.name == name) else {
                    let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
                    return Err(Fail::value(
                        name,
                        v,
                        &format!("not a parameter of {}: one of {}", m.name(), names.join(", ")),
                    ));
                };
                specs[j].check(&format!("{}.{name}", m.name()), v)?;
                p[j] = v;
            }
            let w0 = w0.unwrap_or(m.w0_spec().default);
            m.w0_spec().check("w0", w0)?;
            let integrator = integrator_of(integrator, m, substeps, rtol)?;
            let pulse = PulseProtocol { v_scale, tau: pulse_width, rest };
            for (field, v, ok, range) in [
                ("v_scale", v_scale, v_scale.is_finite(), "finite"),
                ("pulse_width", pulse_width, pulse_width.is_finite() && pulse_width > 0.0, "finite, > 0"),
                ("rest", rest, rest.is_finite() && rest >= 0.0, "finite, >= 0"),
            ] {
                if !ok {
                    return Err(Fail::value(field, v, range));
                }
            }
            if chunk == Some(0) {
                return Err(Fail::value("chunk", 0, "at least 1"));
            }
            if slice == 0 {
                return Err(Fail::value("slice", 0, "at least 1"));
            }
            let exact = integrator == Integrator::Exact;
            if exact && !m.has_exact() && self.choice == BackendChoice::Gpu {
                return Err(Fail::value(
                    "integrator",
                    "exact",
                    &format!(
                        "one of {} with backend=\"gpu\" (model {} has no closed form)",
                        memkin::engine::gpu::ode::GPU_INTEGRATORS,
                        m.name()
                    ),
                ));
            }
            let spec = OdeSpec { model: m, integrator, pulse, params: p, w0: vec![w0] };
            spec.check()?;
            let (xs, seqs, steps) = input(&x)?;
            check_size(&format!("simulate_model: {seqs} sequences x {steps} steps"), seqs, steps, 4)?;
            // auto: the CPU (f64) when f64 or the closed form was asked for.
            let auto_cpu = self.choice == BackendChoice::Auto && (self.precision != Precision::F32 || exact);
            let gpu = match (&self.ctx, auto_cpu) {
                (Some(ctx), false) => Some(self.ode_gpu(ctx)),
                _ => None,
            };
            let mut secs = 0.0;
            let f = sliced(py, 1, seqs, steps, slice, |s0, s1, out| {
                let xs = &xs[s0 * steps..s1 * steps];
                let t0 = std::time::Instant::now();
                *out = match &gpu {
                    Some(g) => GpuOdeEngine::run(g, xs, s1 - s0, steps, &spec, chunk),
                    None => run_ode_cpu(xs, s1 - s0, steps, &spec),
                }
                .map_err(|e| non_finite(e, xs, s0, steps))?;
                secs += t0.elapsed().as_secs_f64();
                Ok(())
            })?;
            self.set_seconds(secs);
            Ok(f)
        })()
        .map_err(Fail::into_py)?;
        outputs(py, f, false)
    }

    fn __repr__(&self) -> String {
        let i = self.forward.info();
        format!(
            "memkin.Engine(backend={:?}, adapter={:?}, precision={:?})",
            i.backend, i.adapter, i.precision
        )
    }
}
