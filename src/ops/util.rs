//! Helpers shared by the op wrappers.

use crate::gpu::{DType, Gpu, GpuError, GpuResult, Tensor, TENSOR_ALIGN};

/// Workgroup size of the elementwise and reduction kernels (within every WebGPU device's
/// 256-invocation default).
pub(crate) const WG: u32 = 256;

/// Invocations per workgroup (= one subgroup) of the subgroup-sharing kernels
/// (`LANES` in shaders/include/subgroup_lanes.wgsl; conv2d_sg, attention_sg): lavapipe's SIMD
/// width, and the subgroup size those kernels require of the adapter.
pub(crate) const SUBGROUP_LANES: u32 = 8;

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

/// Outputs must not overlap inputs. With the arena on (every storage binding `read_write`)
/// tensors of one buffer are distinct when their byte ranges are; without it WebGPU forbids
/// binding one buffer as both read-only and writable storage in a dispatch, so any shared
/// buffer is refused.
pub(crate) fn distinct_output(op: &'static str, out: &Tensor, inputs: &[&Tensor]) -> GpuResult<()> {
    for t in inputs {
        let clash = if out.buffer().rw_bindings() { out.overlaps(t) } else { std::sync::Arc::ptr_eq(t.buffer(), out.buffer()) };
        if clash {
            return Err(GpuError::shape(op, format!("output {out:?} shares a buffer with input {t:?}")));
        }
    }
    Ok(())
}

pub(crate) fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// One chunk of a split dispatch: units `[start, start + count)` and the matching views of
/// the split tensors (in the order given to [`split_units`]).
pub(crate) struct Chunk {
    pub start: u64,
    pub count: u64,
    pub parts: Vec<Tensor>,
}

/// Cut `tensors` — each made of `units` equal blocks (rows, images, sequences…) — into
/// chunks whose every view fits in one storage binding and starts 256-byte aligned, so ops
/// work on tensors larger than `max_storage_buffer_binding_size` (128 MiB on most browsers)
/// by dispatching once per chunk. One chunk (the tensors themselves) when everything fits.
pub(crate) fn split_units(gpu: &Gpu, op: &'static str, units: u64, tensors: &[&Tensor]) -> GpuResult<Vec<Chunk>> {
    let limit = gpu.max_binding();
    if units == 0 {
        return Ok(Vec::new());
    }
    if tensors.iter().all(|t| t.size_bytes() <= limit) {
        return Ok(vec![Chunk { start: 0, count: units, parts: tensors.iter().map(|t| (*t).clone()).collect() }]);
    }
    // Largest unit count per chunk, as a multiple of the alignment step of every tensor.
    let mut step = 1u64;
    let mut max_units = units;
    for t in tensors {
        if t.numel() % units != 0 {
            return Err(GpuError::shape(op, format!("{t:?} is not {units} equal blocks")));
        }
        let unit_bytes = t.size_bytes() / units;
        if unit_bytes == 0 {
            continue;
        }
        let align = TENSOR_ALIGN / gcd(unit_bytes, TENSOR_ALIGN);
        step = step / gcd(step, align) * align;
        max_units = max_units.min(limit / unit_bytes);
    }
    let per_chunk = max_units / step * step;
    if per_chunk == 0 {
        let t = tensors.iter().max_by_key(|t| t.size_bytes() / units).map(|t| format!("{t:?}")).unwrap_or_default();
        return Err(GpuError::LimitExceeded {
            what: format!("{op}: one block of {t} (aligned group of {step})"),
            requested: tensors.iter().map(|t| t.size_bytes() / units * step).max().unwrap_or(0),
            limit,
            limit_name: "max_storage_buffer_binding_size",
        });
    }
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < units {
        let count = per_chunk.min(units - start);
        let parts = tensors
            .iter()
            .map(|t| t.slice_units(start, count, units).ok_or_else(|| GpuError::shape(op, format!("cannot slice {t:?} at block {start}"))))
            .collect::<GpuResult<Vec<_>>>()?;
        chunks.push(Chunk { start, count, parts });
        start += count;
    }
    Ok(chunks)
}
