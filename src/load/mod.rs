//! Weight loading: safetensors (streamed: only the header and the tensors asked for are
//! read), PyTorch `.ckpt` (zip + a minimal, code-free unpickler), key maps from LDM
//! single-file / original AnimateDiff names to diffusers names, and format detection.
//!
//! The model code in [`crate::model`] only ever sees diffusers names through a
//! [`WeightSource`]; everything format-specific lives here.

mod error;

pub mod archive;
pub mod ckpt;
pub mod component;
pub mod config;
pub mod detect;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod keymap;
pub mod lora;
pub mod random;
pub mod safetensors;
pub mod source;

pub use error::{LoadError, LoadResult};

use std::collections::HashMap;

/// A tensor on the host in f32 (whatever the file's dtype was), row-major, PyTorch layout.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: impl Into<Vec<usize>>, data: Vec<f32>) -> HostTensor {
        HostTensor { shape: shape.into(), data }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The weights of one model component (UNet, motion adapter, VAE, text encoder) under their
/// diffusers names (`down_blocks.0.resnets.0.conv1.weight`, `text_model.encoder.layers.0…`).
pub trait WeightSource {
    /// The tensor `name`, converted to f32. [`LoadError::MissingTensor`] when absent.
    fn tensor(&self, name: &str) -> LoadResult<HostTensor>;
    /// Whether `name` exists (cheap: no data is read).
    fn contains(&self, name: &str) -> bool;
    /// The shape of `name` without reading its data.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// All tensor names (diffusers naming).
    fn names(&self) -> Vec<String>;
    /// What to call this source in error messages (usually a file path).
    fn origin(&self) -> String;
}

/// Borrowed sources are sources (e.g. a [`lora::LoraMerged`] over `&dyn WeightSource`).
impl<T: WeightSource + ?Sized> WeightSource for &T {
    fn tensor(&self, name: &str) -> LoadResult<HostTensor> {
        (**self).tensor(name)
    }
    fn contains(&self, name: &str) -> bool {
        (**self).contains(name)
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        (**self).shape(name)
    }
    fn names(&self) -> Vec<String> {
        (**self).names()
    }
    fn origin(&self) -> String {
        (**self).origin()
    }
}

/// In-memory weights (tests, converted LoRA merges).
#[derive(Debug, Clone, Default)]
pub struct MapSource {
    pub origin: String,
    pub tensors: HashMap<String, HostTensor>,
}

impl WeightSource for MapSource {
    fn tensor(&self, name: &str) -> LoadResult<HostTensor> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| LoadError::MissingTensor { file: self.origin.clone(), tensor: name.to_string() })
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.shape.clone())
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tensors.keys().cloned().collect();
        v.sort();
        v
    }

    fn origin(&self) -> String {
        self.origin.clone()
    }
}

/// Fetch `name` and check its shape, naming the file and tensor on mismatch.
pub fn expect_tensor(src: &dyn WeightSource, name: &str, shape: &[usize]) -> LoadResult<HostTensor> {
    let t = src.tensor(name)?;
    if t.shape != shape {
        return Err(LoadError::Shape { file: src.origin(), tensor: name.to_string(), expected: shape.to_vec(), found: t.shape });
    }
    Ok(t)
}
