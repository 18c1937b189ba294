//! The GPU context: picking an adapter headlessly, or adopting a caller's device and queue.

use super::kernels::Pipelines;
use crate::error::{Error, Result};
use std::sync::Arc;

/// Which adapter to open. Unset fields fall back to `WGPU_BACKEND` / `WGPU_ADAPTER_NAME`, then to the
/// best adapter found (discrete, then integrated, then virtual, then CPU; Vulkan before the others).
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// One of `vulkan`, `metal`, `dx12`, `gl` (a comma list is accepted, as in `WGPU_BACKEND`).
    pub backend: Option<String>,
    /// Case-insensitive substring of the adapter's name, e.g. `llvmpipe` or `nvidia`.
    pub adapter: Option<String>,
}

/// A device and queue plus what gig needs to know about them.
#[derive(Clone)]
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// Compiled kernels, shared by every engine on this device.
    pub(crate) pipelines: Arc<Pipelines>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Parses `vulkan`, `metal`, `dx12`, `gl` or a comma list of them.
pub fn parse_backends(text: &str) -> Result<wgpu::Backends> {
    let mut all = wgpu::Backends::empty();
    for name in text.split(',').map(|s| s.trim().to_lowercase()) {
        all |= match name.as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            other => {
                return Err(Error::Input(format!(
                    "unknown backend `{other}`; expected vulkan, metal, dx12 or gl (or cpu for the f64 reference)"
                )));
            }
        };
    }
    Ok(all)
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

fn preference(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan => 0,
        wgpu::Backend::Metal => 1,
        wgpu::Backend::Dx12 => 2,
        _ => 3,
    };
    (kind, backend)
}

/// Every adapter wgpu finds for `backends`.
pub fn list_adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance(backends).enumerate_adapters(backends))
}

const NO_ADAPTER_HINT: &str = "on Linux without a GPU, install the CPU Vulkan driver (lavapipe): \
     `apt-get install mesa-vulkan-drivers`; or run with `--backend cpu` for the f64 reference";

impl Gpu {
    /// Opens a device on the adapter chosen by `options` (headless: no window or surface is needed).
    pub fn new(options: &GpuOptions) -> Result<Gpu> {
        let backends = match options
            .backend
            .clone()
            .or_else(|| std::env::var("WGPU_BACKEND").ok())
        {
            Some(b) => parse_backends(&b)?,
            None => wgpu::Backends::all(),
        };
        let wanted = options
            .adapter
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
            .map(|s| s.to_lowercase());
        // GL only when nothing else is there: probing it is slow and noisy (EGL looks for displays).
        let mut adapters = list_adapters(backends & !wgpu::Backends::GL);
        if adapters.is_empty() {
            adapters = list_adapters(backends & wgpu::Backends::GL);
        }
        if adapters.is_empty() {
            return Err(Error::Gpu(format!(
                "no adapter found for backends {backends:?}; {NO_ADAPTER_HINT}"
            )));
        }
        let names: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?})", i.name, i.backend)
            })
            .collect();
        if let Some(w) = &wanted {
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(w.as_str()));
            if adapters.is_empty() {
                return Err(Error::Gpu(format!(
                    "no adapter name contains `{w}`; available: {}",
                    names.join(", ")
                )));
            }
        }
        adapters.sort_by_key(|a| preference(&a.get_info()));
        let adapter = adapters.swap_remove(0);
        let info = adapter.get_info();
        let desc = wgpu::DeviceDescriptor {
            label: Some("gig"),
            // Timestamps let `gig bench` time every kernel; nothing else needs a feature.
            required_features: adapter.features() & wgpu::Features::TIMESTAMP_QUERY,
            // The adapter's own limits: bigger bindings mean fewer chunks.
            required_limits: adapter.limits(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|e| {
            Error::Gpu(format!(
                "cannot open a device on {} ({:?}): {e}",
                info.name, info.backend
            ))
        })?;
        Ok(Gpu::from_device(device, queue))
    }

    /// Uses a device and queue the caller already has (a renderer's); no second device is created.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Gpu {
        let info = device.adapter_info();
        Gpu {
            device,
            queue,
            info,
            pipelines: Arc::default(),
        }
    }

    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    /// The largest buffer the device lets one binding cover.
    pub fn binding_limit(&self) -> u64 {
        let l = self.device.limits();
        l.max_storage_buffer_binding_size.min(l.max_buffer_size)
    }

    /// "llvmpipe (LLVM 15.0.6, 256 bits) on Vulkan"
    pub fn describe(&self) -> String {
        format!("{} on {:?}", self.info.name, self.info.backend)
    }

    /// Blocks until the GPU is idle.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("waiting for the device failed: {e}")))
    }
}
