//! `shaders/quantize.wgsl`: quantize a dense K-major weight on the GPU into the q8/q4 layout
//! the matmul / conv kernels read ([`QuantizedWeight`], `shaders/include/weights_quant.wgsl`),
//! bit-exact with the CPU reference [`crate::quant::quantize`]. Used at load time so that
//! only one layer ever exists unquantized on the device.

use super::util::{split_units, to_u32, WG};
use super::weights::QuantizedWeight;
use crate::gpu::{Batch, DType, GpuError, GpuResult, Grid, Spec, Tensor};
use crate::quant::{scale_factor, QuantFormat};
use crate::shader;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    wcols: u32,
    count: u32,
    rcp: f32,
}

/// Quantize `w` (f32 or f16 storage, kernel layout: `[K, N]` linear or `[KH, KW, Cin, Cout]`
/// conv, last dimension N) into a new [`QuantizedWeight`] with the same shape. The dispatches
/// are recorded into `b`; `w` may be dropped once `b` is submitted.
///
/// The values must be finite and within ±65504 (check them on the host with
/// [`crate::quant::check_values`]): the kernel cannot report errors.
pub fn quantize_weight(b: &mut Batch<'_>, w: &Tensor, format: QuantFormat, label: &str) -> GpuResult<QuantizedWeight> {
    const OP: &str = "quantize";
    let f16_in = match w.dtype() {
        DType::F32 => false,
        DType::F16 => true,
        other => return Err(GpuError::shape(OP, format!("{label}: weights must be f32 or f16, got {other}"))),
    };
    let n = w.shape().dim(-1).unwrap_or(0);
    let numel = w.numel() as usize;
    let k = numel.checked_div(n).unwrap_or(0);
    format.check(k, n).map_err(|e| GpuError::shape(OP, format!("{label} {}: {e}", w.shape())))?;
    let pw = format.per_word();
    let g = format.group as usize;
    let gpu = b.gpu();
    // Weights: buffers of their own, not arena ranges.
    let words = gpu.empty_weight([numel / pw], DType::U32, label)?;
    let scales = gpu.empty_weight([k / g * n], DType::F16, &format!("{label}.scales"))?;
    let mins = if format.asymmetric { Some(gpu.empty_weight([k / g * n], DType::F16, &format!("{label}.mins"))?) } else { None };

    let spec = Spec::new()
        .u32("WG", WG)
        .u32("QBITS", format.bits)
        .u32("QGROUP", format.group)
        .bool("QASYM", format.asymmetric)
        .bool("F16_IN", f16_in)
        .ty("WT", if f16_in { "u32" } else { "f32" });
    let kernel = gpu.kernel(&shader!("quantize"), &spec)?;
    let wcols = n / pw;
    let mut split = vec![w, &words, &scales];
    split.extend(mins.as_ref());
    for ch in split_units(gpu, OP, (k / g) as u64, &split)? {
        let count = ch.count * wcols as u64;
        let params = Params {
            n: to_u32(OP, "columns", n as u64)?,
            wcols: to_u32(OP, "words per row", wcols as u64)?,
            count: to_u32(OP, "invocations", count)?,
            rcp: scale_factor(format),
        };
        // Row indices inside one chunk stay within 32 bits.
        to_u32(OP, "elements", ch.parts[0].numel())?;
        let grid = Grid::for_elements(count, WG, gpu.limits().max_compute_workgroups_per_dimension)?;
        let mins_part = ch.parts.get(3).unwrap_or(gpu.zeros(0));
        b.dispatch(&kernel, &params, &[&ch.parts[0], &ch.parts[1], &ch.parts[2], mins_part], grid)?;
    }
    Ok(QuantizedWeight { shape: w.shape().clone(), format, words, scales, mins })
}
