//! Helpers shared by the op wrappers.

use crate::gpu::{DType, GpuError, GpuResult, Tensor};

/// Workgroup size of the elementwise and reduction kernels (within every WebGPU device's
/// 256-invocation default).
pub(crate) const WG: u32 = 256;

/// The WGSL storage type shared by `tensors` (`"f32"` or `"f16"`), or a shape error naming
/// `op` when they differ or are not float tensors.
pub(crate) fn storage_type(op: &'static str, tensors: &[&Tensor]) -> GpuResult<&'static str> {
    let first = tensors.first().map(|t| t.dtype());
    for t in tensors {
        if Some(t.dtype()) != first {
            return Err(GpuError::shape(op, format!("mixed storage types: {t:?} vs {:?}", first)));
        }
    }
    match first {
        Some(DType::F32) | None => Ok("f32"),
        Some(DType::F16) => Ok("f16"),
        Some(other) => Err(GpuError::shape(op, format!("float tensors only, got {other}"))),
    }
}

/// `v` as a `u32` kernel parameter, or a shape error naming `op`.
pub(crate) fn to_u32(op: &'static str, what: &str, v: u64) -> GpuResult<u32> {
    u32::try_from(v).map_err(|_| GpuError::shape(op, format!("{what} = {v} exceeds 32-bit indexing")))
}

/// Require `a` and `b` to have the same element count.
pub(crate) fn same_numel(op: &'static str, a: &Tensor, b: &Tensor) -> GpuResult<()> {
    if a.numel() != b.numel() {
        return Err(GpuError::shape(op, format!("{a:?} and {b:?} differ in element count")));
    }
    Ok(())
}

/// Outputs must not share a buffer with inputs (WebGPU forbids binding one buffer as both
/// read-only and writable storage in a dispatch).
pub(crate) fn distinct_output(op: &'static str, out: &Tensor, inputs: &[&Tensor]) -> GpuResult<()> {
    for t in inputs {
        if std::sync::Arc::ptr_eq(t.buffer(), out.buffer()) {
            return Err(GpuError::shape(op, format!("output {out:?} shares a buffer with input {t:?}")));
        }
    }
    Ok(())
}
