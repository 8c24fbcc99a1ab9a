//! `shaders/pad.wgsl`: zero padding at the bottom/right of channels-last images.

use super::util::{distinct_output, split_units, storage_type, to_u32, WG};
use crate::gpu::{Batch, GpuError, GpuResult, Grid, Spec, Tensor};
use crate::shader;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    c: u32,
}

/// `y [N, Ho, Wo, C]` = `x [N, H, W, C]` padded with zeros below and to the right
/// (`Ho ≥ H`, `Wo ≥ W`).
pub fn pad_bottom_right(bt: &mut Batch<'_>, x: &Tensor, y: &Tensor) -> GpuResult<()> {
    const OP: &str = "pad";
    distinct_output(OP, y, &[x])?;
    let ty = storage_type(OP, &[x, y])?;
    let (n, h, w, c, ho, wo) = match (x.dims(), y.dims()) {
        (&[n, h, w, c], &[n2, ho, wo, c2]) if n == n2 && c == c2 && ho >= h && wo >= w => (n, h, w, c, ho, wo),
        _ => return Err(GpuError::shape(OP, format!("cannot pad {x:?} into {y:?}"))),
    };
    let gpu = bt.gpu();
    let kernel = gpu.kernel(&shader!("pad"), &Spec::new().u32("WG", WG).ty("T", ty))?;
    let u = |what, v: usize| to_u32(OP, what, v as u64);
    for ch in split_units(gpu, OP, n as u64, &[x, y])? {
        let count = ch.count * (ho * wo * c) as u64;
        let params = Params { n: to_u32(OP, "elements", count)?, h: u("h", h)?, w: u("w", w)?, ho: u("ho", ho)?, wo: u("wo", wo)?, c: u("c", c)? };
        let grid = Grid::for_elements(count, WG, gpu.limits().max_compute_workgroups_per_dimension)?;
        bt.dispatch(&kernel, &params, &[&ch.parts[0], &ch.parts[1]], grid)?;
    }
    Ok(())
}
