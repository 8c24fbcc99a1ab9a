//! `shaders/binary.wgsl`: `alpha·a + beta·b` and `a·b` with `b` broadcast over `a`.

use super::util::{distinct_output, same_numel, split_units, storage_type, to_u32, WG};
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
    /// `b` is `[F, C]` and `a` is `[B·F, P, C]`: vector `f` for every image `b·F + f`
    /// (the motion module's sinusoidal position encoding over frames).
    Periodic { period: u32, positions: u32 },
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    inner: u32,
    rep: u32,
    alpha: f32,
    beta: f32,
    i0: u32,
    outer: u32,
}

#[allow(clippy::too_many_arguments)]
fn dispatch(bt: &mut Batch<'_>, op_code: u32, a: &Tensor, b: &Tensor, y: &Tensor, bc: Broadcast, alpha: f32, beta: f32) -> GpuResult<()> {
    const OP: &str = "binary";
    same_numel(OP, a, y)?;
    distinct_output(OP, y, &[a, b])?;
    let ty = storage_type(OP, &[a, b, y])?;
    let n = a.numel();
    let c = a.shape().dim(-1).unwrap_or(1) as u64;
    // (inner, rep) of the kernel's broadcast rule and the expected size of b. When a binding
    // is too small the work splits by elements: b is split alongside a when it has a's shape,
    // otherwise shared and indexed by the element's global position (`i0`).
    let (inner, rep, b_len, split_b) = match bc {
        Broadcast::Same => (n, 1, n, true),
        Broadcast::LastDim => (c, n / c.max(1), c, false),
        Broadcast::PerRow { positions } => {
            let p = u64::from(positions);
            (c, p, n / p.max(1), false)
        }
        Broadcast::Periodic { period, positions } => (c, u64::from(positions), u64::from(period) * c, false),
    };
    if b.numel() != b_len || inner == 0 || rep == 0 || !n.is_multiple_of(inner * rep) {
        return Err(GpuError::shape(OP, format!("{b:?} cannot broadcast over {a:?} as {bc:?}")));
    }
    let gpu = bt.gpu();
    let spec = Spec::new().u32("WG", WG).u32("OP", op_code).ty("T", ty);
    let kernel = gpu.kernel(&shader!("binary"), &spec)?;
    let split: Vec<&Tensor> = if split_b { vec![a, y, b] } else { vec![a, y] };
    for ch in split_units(gpu, OP, n, &split)? {
        let (a_c, y_c) = (&ch.parts[0], &ch.parts[1]);
        let b_c = ch.parts.get(2).unwrap_or(b);
        let n_c = a_c.numel();
        let (inner_c, rep_c) = match bc {
            Broadcast::Same => (n_c, 1),
            _ => (inner, rep),
        };
        let params = Params {
            n: to_u32(OP, "elements", n_c)?,
            inner: to_u32(OP, "inner", inner_c)?,
            rep: to_u32(OP, "rep", rep_c)?,
            alpha,
            beta,
            i0: if split_b { 0 } else { to_u32(OP, "element offset", ch.start)? },
            outer: match bc {
                Broadcast::Periodic { period, .. } => period,
                Broadcast::PerRow { .. } => to_u32(OP, "rows", b_len / c)?,
                _ => 1,
            },
        };
        let grid = Grid::for_elements(n_c, WG, gpu.limits().max_compute_workgroups_per_dimension)?;
        bt.dispatch(&kernel, &params, &[a_c, b_c, y_c], grid)?;
    }
    Ok(())
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
