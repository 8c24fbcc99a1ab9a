//! `shaders/fill.wgsl`: set every element of an f32 tensor to one value.

use crate::gpu::{Batch, DType, GpuError, GpuResult, Grid, Spec, Tensor};
use crate::shader;

const WG: u32 = 256;

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
    let n = u32::try_from(y.numel()).map_err(|_| GpuError::shape("fill", format!("{y:?} has more than 2^32 elements")))?;
    let gpu = b.gpu();
    let kernel = gpu.kernel(&shader!("fill"), &Spec::new().u32("WG", WG))?;
    let grid = Grid::for_elements(u64::from(n), WG, gpu.limits().max_compute_workgroups_per_dimension)?;
    b.dispatch(&kernel, &Params { n, value }, &[y], grid)
}
