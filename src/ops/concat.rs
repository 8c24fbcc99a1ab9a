//! `shaders/concat.wgsl`: concatenation along the last (channel) dimension.

use super::util::{distinct_output, split_units, storage_type, to_u32, WG};
use crate::gpu::{Batch, GpuError, GpuResult, Grid, Spec, Tensor};
use crate::shader;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    ca: u32,
    cb: u32,
}

/// `y [.., Ca+Cb] = cat(a [.., Ca], b [.., Cb], dim=-1)`; leading dims must agree in count.
pub fn concat(bt: &mut Batch<'_>, a: &Tensor, b: &Tensor, y: &Tensor) -> GpuResult<()> {
    const OP: &str = "concat";
    distinct_output(OP, y, &[a, b])?;
    let ty = storage_type(OP, &[a, b, y])?;
    let (ca, cb, cy) = match (a.shape().dim(-1), b.shape().dim(-1), y.shape().dim(-1)) {
        (Some(ca), Some(cb), Some(cy)) if ca > 0 && cb > 0 => (ca as u64, cb as u64, cy as u64),
        _ => return Err(GpuError::shape(OP, format!("inputs {a:?}, {b:?} need a channel dimension"))),
    };
    let rows = a.numel() / ca;
    if cy != ca + cb || b.numel() != rows * cb || y.numel() != rows * cy {
        return Err(GpuError::shape(OP, format!("cannot concatenate {a:?} and {b:?} into {y:?}")));
    }
    let gpu = bt.gpu();
    let kernel = gpu.kernel(&shader!("concat"), &Spec::new().u32("WG", WG).ty("T", ty))?;
    for ch in split_units(gpu, OP, rows, &[a, b, y])? {
        let params = Params { n: to_u32(OP, "elements", ch.count * cy)?, ca: to_u32(OP, "channels", ca)?, cb: to_u32(OP, "channels", cb)? };
        let grid = Grid::for_elements(ch.count * cy, WG, gpu.limits().max_compute_workgroups_per_dimension)?;
        bt.dispatch(&kernel, &params, &[&ch.parts[0], &ch.parts[1], &ch.parts[2]], grid)?;
    }
    Ok(())
}
