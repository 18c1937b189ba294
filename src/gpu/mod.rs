//! The GPU side: device selection, the WGSL kernels and the engine that runs them.

mod context;
mod engine;
mod kernels;
mod layout;

pub use context::{Gpu, GpuOptions, list_adapters, parse_backends};
pub use engine::{DEFAULT_MAX_MEMORY, Engine, EngineOptions};
pub use kernels::Kernel;
pub use layout::{ChunkUniform, LayerUniform, RowEntry, SpanEntry};
