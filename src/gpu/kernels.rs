//! The WGSL kernels: their sources (shaders/common.wgsl prepended to each) and compiled pipelines.

use crate::error::{Error, Result};

const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// One compute kernel, one file under shaders/.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Path,
    Conv2dForward,
    Conv2dBackward,
    ReluForward,
    ReluBackward,
    MaxPoolForward,
    MaxPoolBackward,
    AvgPoolForward,
    AvgPoolBackward,
    LinearForward,
    LinearBackward,
    Seed,
    Accumulate,
    Finish,
    Diagnostics,
}

impl Kernel {
    pub const ALL: [Kernel; 15] = [
        Kernel::Path,
        Kernel::Conv2dForward,
        Kernel::Conv2dBackward,
        Kernel::ReluForward,
        Kernel::ReluBackward,
        Kernel::MaxPoolForward,
        Kernel::MaxPoolBackward,
        Kernel::AvgPoolForward,
        Kernel::AvgPoolBackward,
        Kernel::LinearForward,
        Kernel::LinearBackward,
        Kernel::Seed,
        Kernel::Accumulate,
        Kernel::Finish,
        Kernel::Diagnostics,
    ];

    /// The kernel's file under shaders/ (and its label in pipelines and timings).
    pub fn name(&self) -> &'static str {
        match self {
            Kernel::Path => "path",
            Kernel::Conv2dForward => "conv2d_forward",
            Kernel::Conv2dBackward => "conv2d_backward",
            Kernel::ReluForward => "relu_forward",
            Kernel::ReluBackward => "relu_backward",
            Kernel::MaxPoolForward => "maxpool_forward",
            Kernel::MaxPoolBackward => "maxpool_backward",
            Kernel::AvgPoolForward => "avgpool_forward",
            Kernel::AvgPoolBackward => "avgpool_backward",
            Kernel::LinearForward => "linear_forward",
            Kernel::LinearBackward => "linear_backward",
            Kernel::Seed => "seed",
            Kernel::Accumulate => "accumulate",
            Kernel::Finish => "finish",
            Kernel::Diagnostics => "diagnostics",
        }
    }

    fn body(&self) -> &'static str {
        match self {
            Kernel::Path => include_str!("../../shaders/path.wgsl"),
            Kernel::Conv2dForward => include_str!("../../shaders/conv2d_forward.wgsl"),
            Kernel::Conv2dBackward => include_str!("../../shaders/conv2d_backward.wgsl"),
            Kernel::ReluForward => include_str!("../../shaders/relu_forward.wgsl"),
            Kernel::ReluBackward => include_str!("../../shaders/relu_backward.wgsl"),
            Kernel::MaxPoolForward => include_str!("../../shaders/maxpool_forward.wgsl"),
            Kernel::MaxPoolBackward => include_str!("../../shaders/maxpool_backward.wgsl"),
            Kernel::AvgPoolForward => include_str!("../../shaders/avgpool_forward.wgsl"),
            Kernel::AvgPoolBackward => include_str!("../../shaders/avgpool_backward.wgsl"),
            Kernel::LinearForward => include_str!("../../shaders/linear_forward.wgsl"),
            Kernel::LinearBackward => include_str!("../../shaders/linear_backward.wgsl"),
            Kernel::Seed => include_str!("../../shaders/seed.wgsl"),
            Kernel::Accumulate => include_str!("../../shaders/accumulate.wgsl"),
            Kernel::Finish => include_str!("../../shaders/finish.wgsl"),
            Kernel::Diagnostics => include_str!("../../shaders/diagnostics.wgsl"),
        }
    }

    /// The complete WGSL source: shaders/common.wgsl followed by the kernel's own file.
    pub fn source(&self) -> String {
        format!(
            "{COMMON}\n// ---- shaders/{}.wgsl ----\n{}",
            self.name(),
            self.body()
        )
    }

    /// Workgroups of `WORKGROUP_SIZE` invocations, as in shaders/common.wgsl.
    pub const WORKGROUP_SIZE: u32 = 64;
}

/// Every kernel compiled for one device; bind group layouts come from the shaders themselves.
pub struct Pipelines {
    pipelines: Vec<wgpu::ComputePipeline>,
}

impl Pipelines {
    pub fn new(device: &wgpu::Device) -> Result<Pipelines> {
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipelines = Kernel::ALL
            .iter()
            .map(|k| {
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(k.name()),
                    source: wgpu::ShaderSource::Wgsl(k.source().into()),
                });
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(k.name()),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                })
            })
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("compiling the kernels failed: {e}")));
        }
        Ok(Pipelines { pipelines })
    }

    pub fn get(&self, kernel: Kernel) -> &wgpu::ComputePipeline {
        let i = Kernel::ALL.iter().position(|k| *k == kernel).unwrap();
        &self.pipelines[i]
    }
}
