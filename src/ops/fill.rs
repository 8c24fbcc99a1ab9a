//! `shaders/fill.wgsl`: set every element of an f32 tensor to one value.

use super::util::{split_units, to_u32, WG};
use crate::gpu::{Batch, DType, GpuError, GpuResult, Grid, Spec, Tensor};
use crate::shader;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    value: f32,
}

/// `y[..] = value`.
pub fn fill(b: &mut Batch<'_>, y: &Tensor, value: f32) -> GpuResult<()> {
    if y.dtype() != DType::F32 {
        return Err(GpuError::shape("fill", format!("expects an f32 tensor, got {y:?}")));
    }
    let gpu = b.gpu();
    let kernel = gpu.kernel(&shader!("fill"), &Spec::new().u32("WG", WG))?;
    for ch in split_units(gpu, "fill", y.numel(), &[y])? {
        let n = to_u32("fill", "elements", ch.count)?;
        let grid = Grid::for_elements(ch.count, WG, gpu.limits().max_compute_workgroups_per_dimension)?;
        b.dispatch(&kernel, &Params { n, value }, &[&ch.parts[0]], grid)?;
    }
    Ok(())
}
