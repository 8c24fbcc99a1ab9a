//! Typed errors for everything the GPU runtime can report.
//!
//! wgpu reports validation / out-of-memory problems through callbacks (its default handler
//! panics, which would kill a wasm module), so the runtime installs its own handlers, records
//! what they saw, and turns it into a [`GpuError`] at the next synchronisation point.

use thiserror::Error;

/// Result alias for the GPU runtime.
pub type GpuResult<T> = Result<T, GpuError>;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum GpuError {
    /// No WebGPU / Vulkan / Metal / DX12 adapter could be found.
    #[error("no GPU adapter available ({0}); natively install a Vulkan driver (e.g. mesa-vulkan-drivers), in a browser enable WebGPU")]
    NoAdapter(String),

    /// The adapter refused to create a device with the requested features/limits.
    #[error("could not create a GPU device: {0}")]
    RequestDevice(String),

    /// The device was lost (driver reset, out of memory, `destroy()`); recreate the context.
    #[error("GPU device lost ({reason}): {message}")]
    DeviceLost { reason: String, message: String },

    /// wgpu / the browser rejected a call: a bug in a kernel, its bindings, or its dispatch.
    #[error("GPU validation error{}: {message}", context_suffix(.context))]
    Validation { context: Option<String>, message: String },

    /// Allocation failed on the device.
    #[error("GPU out of memory{}", context_suffix(.context))]
    OutOfMemory { context: Option<String> },

    /// An internal driver / implementation error.
    #[error("GPU internal error{}: {message}", context_suffix(.context))]
    Internal { context: Option<String>, message: String },

    /// A buffer or binding would exceed the device's limits.
    #[error("{what} needs {requested} bytes but the device allows at most {limit} ({limit_name})")]
    LimitExceeded { what: String, requested: u64, limit: u64, limit_name: &'static str },

    /// A dispatch grid that cannot be expressed within `max_compute_workgroups_per_dimension`³.
    #[error("dispatch of {workgroups} workgroups exceeds the device grid limit ({max_per_dim} per dimension)")]
    GridTooLarge { workgroups: u64, max_per_dim: u32 },

    /// Mapping a buffer for readback failed.
    #[error("GPU readback failed: {0}")]
    Readback(String),

    /// A tensor argument has the wrong shape, dtype or size for an op.
    #[error("{op}: {message}")]
    Shape { op: &'static str, message: String },

    /// A kernel needs a device feature this adapter lacks (e.g. shader-f16).
    #[error("{what} needs the `{feature}` GPU feature, which this adapter does not offer")]
    MissingFeature { what: String, feature: &'static str },
}

fn context_suffix(context: &Option<String>) -> String {
    match context {
        Some(c) => format!(" in {c}"),
        None => String::new(),
    }
}

impl GpuError {
    /// Convert a wgpu error (from a handler or an error scope), naming where it happened.
    pub(crate) fn from_wgpu(err: wgpu::Error, context: Option<String>) -> Self {
        match err {
            wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory { context },
            wgpu::Error::Validation { description, .. } => {
                GpuError::Validation { context, message: description }
            }
            wgpu::Error::Internal { description, .. } => {
                GpuError::Internal { context, message: description }
            }
        }
    }

    pub(crate) fn shape(op: &'static str, message: impl Into<String>) -> Self {
        GpuError::Shape { op, message: message.into() }
    }

    /// True when the context must be recreated before any more GPU work.
    pub fn is_device_lost(&self) -> bool {
        matches!(self, GpuError::DeviceLost { .. })
    }
}
