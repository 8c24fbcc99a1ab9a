//! animatediff-wgpu: AnimateDiff (Stable Diffusion 1.5 + motion modules) on the user's GPU,
//! in the browser through WebGPU (wasm32) and natively through wgpu (Vulkan/Metal/DX12).
//!
//! Layout: [`gpu`] is the runtime (device, tensors, pipelines, readback); [`ops`] holds one
//! Rust wrapper per WGSL kernel in `shaders/`; `web` is the wasm-bindgen API.

pub mod cancel;
pub mod error;
pub mod gpu;
pub mod load;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod plan;
pub mod quant;
pub mod reference;
pub mod selftest;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
pub use gpu::{DType, Gpu, GpuError, GpuOptions, GpuResult, Shape, Tensor};
