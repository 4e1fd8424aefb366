//! [`GpuContext`]: the adapter, device and queue, created once and borrowed by
//! every kernel (wgpu's `repeated_compute` pattern).

use crate::{Error, Result};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes moved across the host-device boundary (in total, both directions
/// counted apart). What `--json` and every study manifest report as
/// `"transfer"`; the CPU engine moves none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Transfer {
    /// Bytes written from host memory into device buffers.
    pub host_to_device_bytes: u64,
    /// Bytes read back from device buffers into host memory.
    pub device_to_host_bytes: u64,
}

impl Transfer {
    /// The traffic between two readings (`self` later than `before`).
    pub fn since(self, before: Transfer) -> Transfer {
        Transfer {
            host_to_device_bytes: self.host_to_device_bytes - before.host_to_device_bytes,
            device_to_host_bytes: self.device_to_host_bytes - before.device_to_host_bytes,
        }
    }
}

/// A read-back requested by [`GpuContext::begin_read`] and not yet finished.
#[derive(Debug)]
pub struct PendingRead {
    buf: wgpu::Buffer,
    len: u64,
    submission: wgpu::SubmissionIndex,
    rx: std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
}

impl std::ops::Add for Transfer {
    type Output = Transfer;
    fn add(self, o: Transfer) -> Transfer {
        Transfer {
            host_to_device_bytes: self.host_to_device_bytes + o.host_to_device_bytes,
            device_to_host_bytes: self.device_to_host_bytes + o.device_to_host_bytes,
        }
    }
}

/// An adapter as `memkin devices` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterSummary {
    /// Adapter name.
    pub name: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `Cpu` (software), ...
    pub device_type: String,
    /// `Vulkan`, `Metal`, `Dx12`, `Gl`.
    pub backend: String,
    /// Driver and its version.
    pub driver: String,
    /// Largest storage buffer binding, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Timestamp queries available (kernel timing).
    pub timestamp_query: bool,
}

fn summarize(a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let l = a.limits();
    AdapterSummary {
        name: info.name.clone(),
        device_type: format!("{:?}", info.device_type),
        backend: format!("{:?}", info.backend),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
        max_buffer_size: l.max_buffer_size,
        max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
        max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
        timestamp_query: a.features().contains(wgpu::Features::TIMESTAMP_QUERY),
    }
}

fn instance() -> wgpu::Instance {
    // Honours WGPU_BACKEND (and the other WGPU_* instance variables).
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter wgpu can see (respecting WGPU_BACKEND).
pub fn list_adapters() -> Vec<AdapterSummary> {
    let inst = instance();
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(summarize)
        .collect()
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// The device and queue memkin computes on, with the adapter's description.
pub struct GpuContext {
    /// The adapter the device was created on.
    pub adapter: wgpu::Adapter,
    /// The logical device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    timestamps: bool,
    h2d: AtomicU64,
    d2h: AtomicU64,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.info.name)
            .finish()
    }
}

impl GpuContext {
    /// Picks an adapter: the one whose name contains WGPU_ADAPTER_NAME
    /// (case-insensitive) when set, else the best by type (discrete, integrated,
    /// virtual, other, software). Fails cleanly, listing what exists, when nothing fits.
    pub fn new() -> Result<Self> {
        let inst = instance();
        let adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        let chosen = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(want) if !want.is_empty() => {
                let w = want.to_lowercase();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&w))
                    .ok_or_else(|| {
                        Error::Gpu(format!(
                            "WGPU_ADAPTER_NAME={want:?} matches no adapter (found: {})",
                            if names.is_empty() { "none".to_string() } else { names.join(", ") }
                        ))
                    })?
            }
            _ => adapters.into_iter().min_by_key(|a| rank(a.get_info().device_type)).ok_or_else(|| {
                Error::Gpu(
                    "no GPU adapter found (for a software one on Debian: apt-get install mesa-vulkan-drivers libvulkan1)"
                        .into(),
                )
            })?,
        };
        Self::from_adapter(chosen)
    }

    /// Creates the device on `adapter`, asking for all the limits it offers.
    pub fn from_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let required_features = if timestamps {
            wgpu::Features::TIMESTAMP_QUERY
        } else {
            wgpu::Features::empty()
        };
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("memkin device"),
            required_features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Gpu(format!("request_device on '{}': {e}", info.name)))?;
        Ok(Self {
            adapter,
            device,
            queue,
            info,
            limits,
            timestamps,
            h2d: AtomicU64::new(0),
            d2h: AtomicU64::new(0),
        })
    }

    /// The adapter's description.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }
    /// What every engine on this context reports of itself (always f32).
    pub fn backend_info(&self) -> crate::engine::BackendInfo {
        let i = &self.info;
        crate::engine::BackendInfo {
            backend: "gpu".into(),
            precision: "f32".into(),
            adapter: i.name.clone(),
            adapter_type: format!("{:?}", i.device_type),
            api: format!("{:?}", i.backend),
        }
    }
    /// The device's limits (the adapter's best).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }
    /// True when the adapter is a software rasteriser running on the CPU (lavapipe).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }
    /// True when kernel time can be measured with timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.timestamps
    }

    /// Compiles a registered shader into a compute pipeline (auto layout), turning
    /// validation errors into [`Error::Gpu`] instead of a panic.
    pub fn pipeline(&self, src: &super::shaders::ShaderSource) -> Result<wgpu::ComputePipeline> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(src.name),
                source: wgpu::ShaderSource::Wgsl(src.full_source().into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(src.name),
                layout: None,
                module: &module,
                entry_point: Some(src.entry),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("shader '{}': {e}", src.name)));
        }
        Ok(pipeline)
    }

    /// The 2-D workgroup grid `(x, y)` covering `n` invocations in workgroups of
    /// `wg`: x up to the per-dimension limit, y as many rows as needed (the
    /// shaders linearise `wid.y * grid_x + wid.x` and idle the excess).
    pub fn grid(&self, n: usize, wg: u32) -> Result<(u32, u32)> {
        let max_wg = self.limits.max_compute_workgroups_per_dimension.max(1) as u64;
        let n_wg = (n as u64).div_ceil(wg as u64).max(1);
        let x = n_wg.min(max_wg);
        let y = n_wg.div_ceil(x);
        if y > max_wg {
            return Err(Error::Gpu(format!(
                "{n} invocations need {n_wg} workgroups, beyond {max_wg}^2"
            )));
        }
        Ok((x as u32, y as u32))
    }

    /// Blocks until the queue is idle.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("poll: {e}")))
    }

    /// Writes `data` into `buf` at `offset` (queued; the next submit carries
    /// it), counting the bytes as host-to-device traffic. Every upload of every
    /// kernel goes through here, so [`GpuContext::transfer`] is complete.
    pub fn write(&self, buf: &wgpu::Buffer, offset: u64, data: &[u8]) {
        self.h2d.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.queue.write_buffer(buf, offset, data);
    }

    /// Bytes moved between host and device on this context since it was
    /// created (every engine sharing it adds to the same counters).
    pub fn transfer(&self) -> Transfer {
        Transfer {
            host_to_device_bytes: self.h2d.load(Ordering::Relaxed),
            device_to_host_bytes: self.d2h.load(Ordering::Relaxed),
        }
    }

    /// Starts mapping a MAP_READ buffer's first `len` bytes, to be read once
    /// `submission` (the submit that filled it) has completed. The map is
    /// requested now, so the wait for it can come later, while other work runs
    /// (the chunked dispatcher's overlap). Finish it with
    /// [`GpuContext::finish_read`], or [`GpuContext::abandon_read`] on an error path.
    pub fn begin_read(
        &self,
        buf: &wgpu::Buffer,
        len: u64,
        submission: wgpu::SubmissionIndex,
    ) -> PendingRead {
        let (tx, rx) = std::sync::mpsc::channel();
        buf.slice(..len).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        PendingRead {
            buf: buf.clone(),
            len,
            submission,
            rx,
        }
    }

    /// Waits for the submission behind `p` only (not for later ones), hands
    /// the mapped bytes to `f`, unmaps, and counts `len` bytes as
    /// device-to-host traffic. One poll per read, however many outputs the
    /// buffer holds.
    pub fn finish_read<R>(&self, p: PendingRead, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        let waited = self
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(p.submission.clone()),
                timeout: None,
            })
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("poll: {e}")));
        let mapped = waited.and_then(|_| {
            p.rx.recv()
                .map_err(|e| Error::Gpu(format!("map: {e}")))?
                .map_err(|e| Error::Gpu(format!("map: {e}")))
        });
        if let Err(e) = mapped {
            p.buf.unmap();
            return Err(e);
        }
        let out = {
            let slice = p.buf.slice(..p.len);
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("mapped range: {e}")));
            match view {
                Ok(v) => f(&v),
                Err(e) => Err(e),
            }
        };
        p.buf.unmap();
        self.d2h.fetch_add(p.len, Ordering::Relaxed);
        out
    }

    /// Gives up a read begun with [`GpuContext::begin_read`] (after an error
    /// elsewhere): waits for the queue and unmaps, so the buffer can be reused.
    pub fn abandon_read(&self, p: PendingRead) {
        let _ = self.wait();
        p.buf.unmap();
    }

    /// Reads a MAP_READ buffer's first `len` bytes into `out` (counted as
    /// device-to-host traffic: `out.len()` bytes).
    pub fn read_buffer(&self, buf: &wgpu::Buffer, len: u64, out: &mut [u8]) -> Result<()> {
        let slice = buf.slice(..len);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|e| Error::Gpu(format!("map: {e}")))?
            .map_err(|e| Error::Gpu(format!("map: {e}")))?;
        {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("mapped range: {e}")))?;
            out.copy_from_slice(&view[..out.len()]);
        }
        buf.unmap();
        self.d2h.fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
