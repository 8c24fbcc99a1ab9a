//! Weights as the matmul / conv kernels see them: dense (f32/f16 tensor) or group-quantized
//! (q8/q4 packed words + f16 scales [+ minimums]), bound at fixed binding numbers 9–11 by the
//! `shaders/include/weights_*.wgsl` snippets.
//!
//! Layout: K-major. A linear weight is `[K, N]` = `[in, out]` (the transpose of PyTorch's
//! `[out, in]`), a convolution weight `[KH, KW, Cin, Cout]`: row `k` holds every output, so
//! neighbouring invocations (neighbouring outputs) read neighbouring memory. The loaders
//! convert PyTorch tensors once, at load time ([`linear_weight_from_torch`],
//! [`conv_weight_from_torch`]).

use crate::gpu::{DType, Gpu, GpuError, GpuResult, Shape, Spec, Tensor};
use crate::quant::{QuantFormat, QuantizedMatrix};

/// A quantized weight on the GPU.
#[derive(Debug, Clone)]
pub struct QuantizedWeight {
    /// Kernel-layout shape: `[K, N]` for linear layers, `[KH, KW, Cin, Cout]` for convolutions.
    pub shape: Shape,
    pub format: QuantFormat,
    pub words: Tensor,
    pub scales: Tensor,
    pub mins: Option<Tensor>,
}

impl QuantizedWeight {
    /// Upload a [`QuantizedMatrix`] `[K, N]` as a weight of kernel-layout `shape` (its last
    /// dimension is N, the others multiply to K).
    pub fn upload(gpu: &Gpu, q: &QuantizedMatrix, shape: impl Into<Shape>, label: &str) -> GpuResult<QuantizedWeight> {
        let shape = shape.into();
        if shape.dims().last() != Some(&q.n) || shape.numel() != (q.k * q.n) as u64 {
            return Err(GpuError::shape("QuantizedWeight::upload", format!("{label}: shape {shape} does not match a [{}, {}] matrix", q.k, q.n)));
        }
        let words = gpu.upload_weight_bytes(bytemuck::cast_slice(&q.words), [q.words.len()], DType::U32, label)?;
        let halves = |v: &[half::f16], what: &str| gpu.upload_weight_f16(v, [v.len()], &format!("{label}.{what}"));
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

    /// How the kernels read this weight, given whether its rows are vec4-aligned.
    pub(crate) fn kind(&self) -> WeightKind {
        match self {
            WeightRef::Dense(t) if t.dims().last().is_some_and(|n| n.is_multiple_of(4)) => WeightKind::Dense4,
            WeightRef::Dense(_) => WeightKind::Dense,
            WeightRef::Quant(_) => WeightKind::Quant,
        }
    }

    /// Add the quantization constants of a quantized weight to `spec`.
    pub(crate) fn spec(&self, spec: Spec) -> Spec {
        match self {
            WeightRef::Dense(_) => spec,
            WeightRef::Quant(q) => spec.u32("QBITS", q.format.bits).u32("QGROUP", q.format.group).bool("QASYM", q.format.asymmetric),
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

/// Which weight snippet a kernel is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WeightKind {
    /// `weights_dense`: scalar loads (N not a multiple of 4).
    Dense,
    /// `weights_dense4`: vec4 loads along N.
    Dense4,
    /// `weights_quant`.
    Quant,
}

/// PyTorch linear weight `[out = N, in = K]` → kernel layout `[K, N]`.
pub fn linear_weight_from_torch<T: Copy>(w: &[T], n: usize, k: usize) -> Option<Vec<T>> {
    if w.len() != n * k {
        return None;
    }
    let mut out = Vec::with_capacity(w.len());
    for kk in 0..k {
        out.extend((0..n).map(|o| w[o * k + kk]));
    }
    Some(out)
}

/// PyTorch conv weight `[Cout, Cin, KH, KW]` (OIHW) → kernel layout `[KH, KW, Cin, Cout]`.
pub fn conv_weight_from_torch<T: Copy>(w: &[T], cout: usize, cin: usize, kh: usize, kw: usize) -> Option<Vec<T>> {
    if w.len() != cout * cin * kh * kw {
        return None;
    }
    let mut out = Vec::with_capacity(w.len());
    for y in 0..kh {
        for x in 0..kw {
            for i in 0..cin {
                out.extend((0..cout).map(|o| w[((o * cin + i) * kh + y) * kw + x]));
            }
        }
    }
    Some(out)
}
