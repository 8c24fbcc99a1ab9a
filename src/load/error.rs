//! Typed loading errors: every one names the file and, where it applies, the tensor.

use thiserror::Error;

pub type LoadResult<T> = Result<T, LoadError>;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },

    /// The file is not what its extension/header claims, or its structure is inconsistent
    /// (truncated, header offsets out of range or overlapping, bad zip/pickle).
    #[error("{file}: invalid {format} file: {message}")]
    Corrupt { file: String, format: &'static str, message: String },

    /// A tensor the model needs is absent.
    #[error("{file}: missing tensor `{tensor}`")]
    MissingTensor { file: String, tensor: String },

    /// A tensor has the wrong shape for the configured model.
    #[error("{file}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    Shape { file: String, tensor: String, expected: Vec<usize>, found: Vec<usize> },

    /// A tensor has a dtype we cannot convert to f32.
    #[error("{file}: tensor `{tensor}` has unsupported dtype {dtype}")]
    DType { file: String, tensor: String, dtype: String },

    /// A recognised but unsupported model (SDXL, inpainting, SD2, …) or an unknown file.
    #[error("{file}: {message}")]
    Unsupported { file: String, message: String },

    /// A config file (config.json, scheduler_config.json, …) is missing or invalid.
    #[error("{file}: {message}")]
    Config { file: String, message: String },
}
