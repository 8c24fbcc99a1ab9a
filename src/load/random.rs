//! Random weights for a known list of tensors: full-size models on the device without a
//! download (`animatediff bench unet --random-weights`, and tests that run the real SD1.5
//! layer widths at small spatial sizes to catch size limits the tiny fixtures never reach).

use std::collections::HashMap;

use super::{HostTensor, LoadError, LoadResult, WeightSource};

/// Every tensor of `shapes`, filled with small deterministic uniform values: xorshift64*
/// seeded by the tensor's name, values in [−0.02, 0.02], norm scales near 1.
pub struct RandomWeights {
    shapes: HashMap<String, Vec<usize>>,
}

impl RandomWeights {
    /// From `(diffusers name, PyTorch shape)` pairs (e.g. [`crate::plan::unet_tensors`]).
    pub fn new(tensors: impl IntoIterator<Item = (String, Vec<usize>)>) -> RandomWeights {
        RandomWeights { shapes: tensors.into_iter().collect() }
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }
}

impl WeightSource for RandomWeights {
    fn tensor(&self, name: &str) -> LoadResult<HostTensor> {
        let shape = self.shapes.get(name).ok_or_else(|| LoadError::MissingTensor { file: self.origin(), tensor: name.to_string() })?;
        let n: usize = shape.iter().product();
        let mut s = name.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)) | 1;
        let unit = name.ends_with("norm.weight") || name.contains(".norm") && name.ends_with(".weight") && shape.len() == 1;
        let data = (0..n)
            .map(|_| {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                let u = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
                if unit {
                    1.0 + 0.04 * (u - 0.5)
                } else {
                    0.04 * (u - 0.5)
                }
            })
            .collect();
        Ok(HostTensor::new(shape.clone(), data))
    }
    fn contains(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.shapes.get(name).cloned()
    }
    fn names(&self) -> Vec<String> {
        self.shapes.keys().cloned().collect()
    }
    fn origin(&self) -> String {
        "random weights".into()
    }
}
