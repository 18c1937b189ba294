//! The GPU side: device selection, the WGSL kernels and the engine that runs them.

mod compiled;
mod context;
mod engine;
mod kernels;
mod layout;
mod profile;
mod program;
mod texture;
mod trainer;
mod windows;

pub use compiled::KernelTime;
pub use context::{Gpu, GpuOptions, list_adapters, parse_backends};
pub use engine::{DEFAULT_MAX_MEMORY, Engine, EngineOptions, GroupSink};
pub use kernels::{Kernel, Spec};
pub use layout::{ChunkUniform, RowEntry, SpanEntry, StepUniform};
pub use program::{Limits, Program, Purpose, Tiling, Winograd};
pub use texture::{Atlas, AttributionTexture, MAX_PIXELS, TEXTURE_FORMAT};
pub use trainer::{StepResult, Trainer};
