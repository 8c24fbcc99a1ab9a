//! Weights as the matmul / conv kernels see them: dense (f32/f16 tensor) or group-quantized
//! (q8/q4 packed words + f16 scales [+ minimums]), bound at fixed binding numbers 9–11 by the
//! `shaders/include/weights_*.wgsl` snippets.

use crate::gpu::{DType, Gpu, GpuError, GpuResult, Shape, ShaderDef, Spec, Tensor};
use crate::quant::{QuantFormat, QuantizedMatrix};

/// A quantized weight on the GPU.
#[derive(Debug, Clone)]
pub struct QuantizedWeight {
    /// Logical shape: `[out, in]` for linear layers, `[Cout, KH, KW, Cin]` for convolutions.
    pub shape: Shape,
    pub format: QuantFormat,
    pub words: Tensor,
    pub scales: Tensor,
    pub mins: Option<Tensor>,
}

impl QuantizedWeight {
    /// Upload a [`QuantizedMatrix`] whose rows are `shape[0]` and columns the rest of `shape`.
    pub fn upload(gpu: &Gpu, q: &QuantizedMatrix, shape: impl Into<Shape>, label: &str) -> GpuResult<QuantizedWeight> {
        let shape = shape.into();
        let rows = shape.dims().first().copied().unwrap_or(0);
        if rows != q.rows || shape.numel() != (q.rows * q.cols) as u64 {
            return Err(GpuError::shape("QuantizedWeight::upload", format!("{label}: shape {shape} does not match a [{}, {}] matrix", q.rows, q.cols)));
        }
        let words = gpu.upload_bytes(bytemuck::cast_slice(&q.words), [q.words.len()], DType::U32, label)?;
        let halves = |v: &[half::f16], what: &str| -> GpuResult<Tensor> {
            let mut v = v.to_vec();
            let n = v.len();
            if n % 2 == 1 {
                v.push(half::f16::ZERO);
            }
            gpu.upload_bytes(bytemuck::cast_slice(&v), [n], DType::F16, &format!("{label}.{what}"))
        };
        let scales = halves(&q.scales, "scales")?;
        let mins = if q.format.asymmetric { Some(halves(&q.mins, "mins")?) } else { None };
        Ok(QuantizedWeight { shape, format: q.format, words, scales, mins })
    }
}

/// A weight argument: dense tensor or quantized.
#[derive(Debug, Clone, Copy)]
pub enum WeightRef<'a> {
    Dense(&'a Tensor),
    Quant(&'a QuantizedWeight),
}

impl<'a> From<&'a Tensor> for WeightRef<'a> {
    fn from(t: &'a Tensor) -> Self {
        WeightRef::Dense(t)
    }
}

impl<'a> From<&'a QuantizedWeight> for WeightRef<'a> {
    fn from(q: &'a QuantizedWeight) -> Self {
        WeightRef::Quant(q)
    }
}

impl<'a> WeightRef<'a> {
    pub fn dims(&self) -> &'a [usize] {
        match self {
            WeightRef::Dense(t) => t.dims(),
            WeightRef::Quant(q) => q.shape.dims(),
        }
    }

    /// The dense tensor (its dtype must match the activations), if any.
    pub(crate) fn dense(&self) -> Option<&'a Tensor> {
        match self {
            WeightRef::Dense(t) => Some(t),
            WeightRef::Quant(_) => None,
        }
    }

    /// Pick the dense or quantized build of a kernel and add the weight constants.
    pub(crate) fn select(&self, dense: ShaderDef, quant: ShaderDef, spec: Spec) -> (ShaderDef, Spec) {
        match self {
            WeightRef::Dense(_) => (dense, spec),
            WeightRef::Quant(q) => (
                quant,
                spec.u32("QBITS", q.format.bits).u32("QGROUP", q.format.group).bool("QASYM", q.format.asymmetric),
            ),
        }
    }

    /// Bindings 9.. of the weight.
    pub(crate) fn bindings(&self, zeros: &'a Tensor) -> Vec<(u32, &'a Tensor)> {
        match self {
            WeightRef::Dense(t) => vec![(9, *t)],
            WeightRef::Quant(q) => vec![(9, &q.words), (10, &q.scales), (11, q.mins.as_ref().unwrap_or(zeros))],
        }
    }
}
