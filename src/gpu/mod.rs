//! GPU runtime: device context, tensors, pipelines, dispatch and readback.
//!
//! One [`Gpu`] is created asynchronously the same way natively (Vulkan/Metal/DX12) and in
//! the browser (WebGPU). Everything fallible returns [`GpuError`]; nothing here panics on a
//! GPU or user error.

mod arena;
mod batch;
mod context;
mod dispatch;
mod error;
mod memory;
mod pipeline;
mod profile;
mod readback;
mod tensor;

pub use arena::{ArenaConfig, ArenaLayout, Placement, DEFAULT_ARENA_CHUNK_BYTES};
pub use batch::Batch;
pub use context::{Gpu, GpuInfo, GpuOptions, KernelPreference, ZERO_SLOTS};
pub use dispatch::Grid;
pub use error::{GpuError, GpuResult};
pub use memory::{MemorySnapshot, MemoryStats, DEFAULT_BATCH_FLUSH_BYTES};
pub use profile::KernelTime;
pub use pipeline::{compose_source, Kernel, PipelineCache, ShaderDef, Spec, SpecValue};
pub use tensor::{DType, GpuBuffer, Shape, Tensor, TENSOR_ALIGN};
