//! `shaders/groupnorm_stats.wgsl` + `shaders/groupnorm_apply.wgsl` (GroupNorm, optional
//! fused SiLU) and `shaders/layernorm.wgsl` / `shaders/layernorm_rows.wgsl`. Activations are
//! channels-last: `[N, .., C]`.

use super::util::{distinct_output, same_numel, split_units, storage_type, to_u32, WG};
use crate::gpu::{Batch, DType, GpuError, GpuResult, Grid, Spec, Tensor};
use crate::shader;

/// Which elements share one mean/variance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormDomain {
    /// Statistics per image (SD ResNets / attention; original AnimateDiff motion modules).
    PerImage,
    /// Statistics over `frames` consecutive images jointly (diffusers motion modules,
    /// original v1 ResNets): the image index is `video·F + frame`.
    JointFrames { frames: u32 },
}

/// Rows (positions) per workgroup of `groupnorm_apply`.
const APPLY_WG: u32 = 64;

/// GroupNorm settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupNorm {
    pub groups: u32,
    pub eps: f32,
    pub domain: NormDomain,
    /// Apply SiLU after the affine transform (ResNet `norm → SiLU`).
    pub silu: bool,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct StatsParams {
    sets: u32,
    positions: u32,
    channels: u32,
    groups: u32,
    eps: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ApplyParams {
    rows: u32,
    positions: u32,
    channels: u32,
    groups: u32,
}

/// `y = GroupNorm(x)·gamma + beta` (then SiLU if asked) for `x [N, .., C]`.
pub fn group_norm(b: &mut Batch<'_>, gn: GroupNorm, x: &Tensor, gamma: &Tensor, beta: &Tensor, y: &Tensor) -> GpuResult<()> {
    const OP: &str = "group_norm";
    same_numel(OP, x, y)?;
    distinct_output(OP, y, &[x, gamma, beta])?;
    let ty = storage_type(OP, &[x, gamma, beta, y])?;
    let dims = x.dims();
    let (images, channels) = match (dims.first(), dims.last()) {
        (Some(&n), Some(&c)) if dims.len() >= 2 && c > 0 && n > 0 => (n as u64, c as u64),
        _ => return Err(GpuError::shape(OP, format!("expects [N, .., C], got {x:?}"))),
    };
    if gn.groups == 0 || channels % u64::from(gn.groups) != 0 {
        return Err(GpuError::shape(OP, format!("{} channels do not split into {} groups", channels, gn.groups)));
    }
    if gamma.numel() != channels || beta.numel() != channels {
        return Err(GpuError::shape(OP, format!("gamma {gamma:?} / beta {beta:?} must have {channels} elements")));
    }
    let frames = match gn.domain {
        NormDomain::PerImage => 1,
        NormDomain::JointFrames { frames } => u64::from(frames),
    };
    if frames == 0 || images % frames != 0 {
        return Err(GpuError::shape(OP, format!("{images} images are not whole videos of {frames} frames")));
    }
    let sets = images / frames;
    let positions = x.numel() / (sets * channels);

    let gpu = b.gpu();
    let max_dim = gpu.limits().max_compute_workgroups_per_dimension;
    let stats_kernel = gpu.kernel(&shader!("groupnorm_stats", "reduce"), &Spec::new().u32("WG", WG).ty("T", ty))?;
    let apply_kernel = gpu.kernel(&shader!("groupnorm_apply"), &Spec::new().u32("WG", APPLY_WG).bool("SILU", gn.silu).ty("T", ty))?;
    // Whole statistic sets per chunk when x exceeds one binding.
    for ch in split_units(gpu, OP, sets, &[x, y])? {
        let (xs, ys) = (&ch.parts[0], &ch.parts[1]);
        let stats = gpu.empty([ch.count as usize, gn.groups as usize, 2], DType::F32, "group_norm.stats")?;
        let sp = StatsParams {
            sets: to_u32(OP, "sets", ch.count)?,
            positions: to_u32(OP, "positions", positions)?,
            channels: to_u32(OP, "channels", channels)?,
            groups: gn.groups,
            eps: gn.eps,
        };
        b.dispatch(&stats_kernel, &sp, &[xs, &stats], Grid::linear(ch.count * u64::from(gn.groups), max_dim)?)?;
        let rows = ch.count * positions;
        to_u32(OP, "elements", xs.numel())?;
        let ap = ApplyParams { rows: to_u32(OP, "rows", rows)?, positions: sp.positions, channels: sp.channels, groups: gn.groups };
        b.dispatch(&apply_kernel, &ap, &[xs, &stats, gamma, beta, ys], Grid::for_elements(rows, APPLY_WG, max_dim)?)?;
    }
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LayerParams {
    rows: u32,
    cols: u32,
    eps: f32,
}

/// Workgroup size of the LayerNorm kernel (rows are ≤ 1280 wide in SD1.5).
const LN_WG: u32 = 64;

/// `y = LayerNorm(x)·gamma + beta` over the last dimension.
pub fn layer_norm(b: &mut Batch<'_>, eps: f32, x: &Tensor, gamma: &Tensor, beta: &Tensor, y: &Tensor) -> GpuResult<()> {
    const OP: &str = "layer_norm";
    same_numel(OP, x, y)?;
    distinct_output(OP, y, &[x, gamma, beta])?;
    let ty = storage_type(OP, &[x, gamma, beta, y])?;
    let cols = x.shape().dim(-1).unwrap_or(0) as u64;
    if cols == 0 || gamma.numel() != cols || beta.numel() != cols {
        return Err(GpuError::shape(OP, format!("gamma {gamma:?} / beta {beta:?} must match the last dim of {x:?}")));
    }
    let rows = x.numel() / cols;
    let gpu = b.gpu();
    // GPUs: a workgroup reduces each row; CPU adapters: one invocation per row, no barriers.
    let per_workgroup = gpu.info().tiled_kernels;
    let k = if per_workgroup {
        gpu.kernel(&shader!("layernorm", "reduce", "layernorm_io"), &Spec::new().u32("WG", LN_WG).ty("T", ty))?
    } else {
        gpu.kernel(&shader!("layernorm_rows", "layernorm_io"), &Spec::new().u32("WG", LN_WG).ty("T", ty))?
    };
    for ch in split_units(gpu, OP, rows, &[x, y])? {
        let params = LayerParams { rows: to_u32(OP, "rows", ch.count)?, cols: to_u32(OP, "cols", cols)?, eps };
        let max_dim = gpu.limits().max_compute_workgroups_per_dimension;
        let grid = if per_workgroup { Grid::linear(ch.count, max_dim)? } else { Grid::for_elements(ch.count, LN_WG, max_dim)? };
        b.dispatch(&k, &params, &[&ch.parts[0], gamma, beta, &ch.parts[1]], grid)?;
    }
    Ok(())
}
