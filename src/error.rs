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
}

impl Error {
    pub fn input(param: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Input { param: param.into(), message: message.into() }
    }
}
