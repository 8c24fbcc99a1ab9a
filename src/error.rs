//! The crate-level error: GPU runtime, weight loading, or a bad user parameter.

use thiserror::Error;

use crate::gpu::GpuError;
use crate::load::LoadError;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A generation parameter or input tensor is unusable (named, with the reason).
    #[error("invalid {param}: {message}")]
    Input { param: String, message: String },
    /// The caller cancelled the run ([`crate::cancel`]); `during` says where it stopped.
    #[error("cancelled during {during}")]
    Cancelled { during: String },
    /// The memory plan cannot fit the request (it says what would), or the request cannot be
    /// planned.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
}

impl Error {
    pub fn input(param: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Input { param: param.into(), message: message.into() }
    }

    /// Whether the device ran out of memory (the run may fit with a smaller plan).
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, Error::Gpu(GpuError::OutOfMemory { .. }))
    }
}
