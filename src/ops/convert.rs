//! `shaders/convert.wgsl`: element type conversion between f32 and f16 storage.

use super::util::{distinct_output, split_units, to_u32, WG};
use crate::gpu::{Batch, DType, GpuError, GpuResult, Grid, Spec, Tensor};
use crate::shader;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
}

fn wgsl_type(op: &'static str, t: &Tensor) -> GpuResult<&'static str> {
    match t.dtype() {
        DType::F32 => Ok("f32"),
        DType::F16 => Ok("f16"),
        _ => Err(GpuError::shape(op, format!("only f32/f16 tensors, got {t:?}"))),
    }
}

/// `y = x` converted to `y`'s dtype (f32 ↔ f16). f16 requires `shader-f16`.
pub fn convert(b: &mut Batch<'_>, x: &Tensor, y: &Tensor) -> GpuResult<()> {
    if x.numel() != y.numel() {
        return Err(GpuError::shape("convert", format!("{x:?} and {y:?} differ in element count")));
    }
    distinct_output("convert", y, &[x])?;
    let spec = Spec::new().u32("WG", WG).ty("SRC", wgsl_type("convert", x)?).ty("DST", wgsl_type("convert", y)?);
    let gpu = b.gpu();
    let kernel = gpu.kernel(&shader!("convert"), &spec)?;
    for ch in split_units(gpu, "convert", x.numel(), &[x, y])? {
        let n = to_u32("convert", "elements", ch.count)?;
        let grid = Grid::for_elements(ch.count, WG, gpu.limits().max_compute_workgroups_per_dimension)?;
        b.dispatch(&kernel, &Params { n }, &[&ch.parts[0], &ch.parts[1]], grid)?;
    }
    Ok(())
}
