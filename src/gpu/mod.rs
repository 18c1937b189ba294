//! The GPU side: device selection, the WGSL kernels and the engine that runs them.

mod context;
mod engine;
mod kernels;
mod layout;
mod profile;
mod program;

pub use context::{Gpu, GpuOptions, list_adapters, parse_backends};
pub use engine::{DEFAULT_MAX_MEMORY, Engine, EngineOptions, KernelTime};
pub use kernels::{Kernel, Spec};
pub use layout::{ChunkUniform, RowEntry, SpanEntry};
pub use program::{Program, Tiling};
