//! `shaders/binary.wgsl`: `alpha·a + beta·b` and `a·b` with `b` broadcast over `a`.

use super::util::{distinct_output, same_numel, storage_type, to_u32, WG};
use crate::gpu::{Batch, GpuError, GpuResult, Grid, Spec, Tensor};
use crate::shader;

/// How `b` lines up with `a` (see `shaders/binary.wgsl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broadcast {
    /// `b` has `a`'s shape.
    Same,
    /// `b` is `[C]`, repeated over every leading index of `a [.., C]` (bias).
    LastDim,
    /// `b` is `[N, C]` and `a` is `[N, P, C]`: one vector per leading index (time embedding).
    PerRow { positions: u32 },
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    inner: u32,
    rep: u32,
    alpha: f32,
    beta: f32,
}

fn dispatch(bt: &mut Batch<'_>, op_code: u32, a: &Tensor, b: &Tensor, y: &Tensor, bc: Broadcast, alpha: f32, beta: f32) -> GpuResult<()> {
    const OP: &str = "binary";
    same_numel(OP, a, y)?;
    distinct_output(OP, y, &[a, b])?;
    let ty = storage_type(OP, &[a, b, y])?;
    let n = a.numel();
    let c = a.shape().dim(-1).unwrap_or(1) as u64;
    let (inner, rep) = match bc {
        Broadcast::Same => (n, 1),
        Broadcast::LastDim => (c, n / c.max(1)),
        Broadcast::PerRow { positions } => (c, u64::from(positions)),
    };
    let expected_b = match bc {
        Broadcast::Same => n,
        Broadcast::LastDim => c,
        Broadcast::PerRow { .. } => n / (rep.max(1)),
    };
    if b.numel() != expected_b || inner == 0 || rep == 0 || n % (inner * rep) != 0 {
        return Err(GpuError::shape(OP, format!("{b:?} cannot broadcast over {a:?} as {bc:?}")));
    }
    let params = Params { n: to_u32(OP, "elements", n)?, inner: to_u32(OP, "inner", inner)?, rep: to_u32(OP, "rep", rep)?, alpha, beta };
    let gpu = bt.gpu();
    let spec = Spec::new().u32("WG", WG).u32("OP", op_code).ty("T", ty);
    let kernel = gpu.kernel(&shader!("binary"), &spec)?;
    let grid = Grid::for_elements(n, WG, gpu.limits().max_compute_workgroups_per_dimension)?;
    bt.dispatch(&kernel, &params, &[a, b, y], grid)
}

/// `y = alpha·a + beta·b` (`b` broadcast as `bc`).
pub fn axpby(bt: &mut Batch<'_>, alpha: f32, a: &Tensor, beta: f32, b: &Tensor, bc: Broadcast, y: &Tensor) -> GpuResult<()> {
    dispatch(bt, 0, a, b, y, bc, alpha, beta)
}

/// `y = a + b`.
pub fn add(bt: &mut Batch<'_>, a: &Tensor, b: &Tensor, bc: Broadcast, y: &Tensor) -> GpuResult<()> {
    dispatch(bt, 0, a, b, y, bc, 1.0, 1.0)
}

/// `y = a · b`.
pub fn mul(bt: &mut Batch<'_>, a: &Tensor, b: &Tensor, bc: Broadcast, y: &Tensor) -> GpuResult<()> {
    dispatch(bt, 1, a, b, y, bc, 1.0, 1.0)
}
