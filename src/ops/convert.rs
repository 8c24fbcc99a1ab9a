//! `shaders/convert.wgsl`: element type conversion between f32 and f16 storage.

use super::util::{distinct_output, same_numel, split_units, storage_type, to_u32, WG};
use crate::gpu::{Batch, GpuResult, Grid, Spec, Tensor};
use crate::shader;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
}

/// `y = x` converted to `y`'s dtype (f32 ↔ f16). f16 requires `shader-f16`.
pub fn convert(b: &mut Batch<'_>, x: &Tensor, y: &Tensor) -> GpuResult<()> {
    same_numel("convert", x, y)?;
    distinct_output("convert", y, &[x])?;
    let spec = Spec::new().u32("WG", WG).ty("SRC", storage_type("convert", &[x])?).ty("DST", storage_type("convert", &[y])?);
    let gpu = b.gpu();
    let kernel = gpu.kernel(&shader!("convert"), &spec)?;
    for ch in split_units(gpu, "convert", x.numel(), &[x, y])? {
        let n = to_u32("convert", "elements", ch.count)?;
        let grid = Grid::for_elements(ch.count, WG, gpu.limits().max_compute_workgroups_per_dimension)?;
        b.dispatch(&kernel, &Params { n }, &[&ch.parts[0], &ch.parts[1]], grid)?;
    }
    Ok(())
}
