//! `shaders/unary.wgsl`: activations (SiLU, GELU-erf, QuickGELU) and scaling.

use super::util::{distinct_output, same_numel, split_units, storage_type, to_u32, WG};
use crate::gpu::{Batch, GpuResult, Grid, Spec, Tensor};
use crate::shader;

/// The function applied by [`unary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity = 0,
    Silu = 1,
    /// Exact GELU, `0.5·x·(1 + erf(x/√2))` (torch's default, diffusers' GEGLU).
    GeluErf = 2,
    /// CLIP's `x·σ(1.702·x)`.
    QuickGelu = 3,
    /// Clamp to `[lo, hi]` (see [`clamp_affine`]).
    Clamp = 4,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    scale: f32,
    shift: f32,
    lo: f32,
    hi: f32,
}

/// `y = act(scale · x)`.
pub fn unary(b: &mut Batch<'_>, act: Activation, scale: f32, x: &Tensor, y: &Tensor) -> GpuResult<()> {
    run(b, act, Params { n: 0, scale, shift: 0.0, lo: f32::NEG_INFINITY, hi: f32::INFINITY }, x, y)
}

/// `y = clamp(scale·x + shift, lo, hi)` — e.g. VAE output to `[0, 1]` frames:
/// `clamp_affine(b, 0.5, 0.5, 0.0, 1.0, ..)`.
pub fn clamp_affine(b: &mut Batch<'_>, scale: f32, shift: f32, lo: f32, hi: f32, x: &Tensor, y: &Tensor) -> GpuResult<()> {
    run(b, Activation::Clamp, Params { n: 0, scale, shift, lo, hi }, x, y)
}

fn run(b: &mut Batch<'_>, act: Activation, params: Params, x: &Tensor, y: &Tensor) -> GpuResult<()> {
    const OP: &str = "unary";
    same_numel(OP, x, y)?;
    distinct_output(OP, y, &[x])?;
    let ty = storage_type(OP, &[x, y])?;
    let gpu = b.gpu();
    let spec = Spec::new().u32("WG", WG).u32("OP", act as u32).ty("T", ty);
    let kernel = gpu.kernel(&shader!("unary"), &spec)?;
    for ch in split_units(gpu, OP, x.numel(), &[x, y])? {
        let n = to_u32(OP, "elements", ch.count)?;
        let grid = Grid::for_elements(ch.count, WG, gpu.limits().max_compute_workgroups_per_dimension)?;
        b.dispatch(&kernel, &Params { n, ..params }, &[&ch.parts[0], &ch.parts[1]], grid)?;
    }
    Ok(())
}
