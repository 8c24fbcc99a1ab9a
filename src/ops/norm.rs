//! `shaders/groupnorm_{stats,finalize,apply}.wgsl` (GroupNorm, optional
//! fused SiLU) and `shaders/layernorm.wgsl` / `shaders/layernorm_rows.wgsl`. Activations are
//! channels-last: `[N, .., C]`.

use super::util::{distinct_output, same_numel, split_units, storage_type, to_u32};
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

/// Invocations per workgroup of the GroupNorm kernels.
const GN_WG: u32 = 64;
/// Statistics: positions per run at least / runs per set at most (more runs: more
/// parallelism for few sets, but more partial results for `groupnorm_finalize` to merge).
const GN_MIN_RUN: u64 = 64;
const GN_MAX_RUNS: u64 = 64;

/// How `group_norm` cuts the `positions` of a statistic set into runs: `(runs, run length)`.
pub fn group_norm_runs(positions: u64) -> (u64, u64) {
    let len = GN_MIN_RUN.max(positions.div_ceil(GN_MAX_RUNS)).max(1);
    (positions.div_ceil(len).max(1), len)
}

/// Temporary f32 buffers of one `group_norm` dispatch chunk of `sets` statistic sets:
/// per-run partial statistics `[sets, runs, 2, C]` and the affine map `[sets, 2, C]`.
pub fn group_norm_scratch(sets: u64, positions: u64, channels: u64) -> [[usize; 4]; 2] {
    let (runs, _) = group_norm_runs(positions);
    [[sets as usize, runs as usize, 2, channels as usize], [sets as usize, 1, 2, channels as usize]]
}

/// GroupNorm settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupNorm {
    pub groups: u32,
    pub eps: f32,
    pub domain: NormDomain,
    /// Apply SiLU after the affine transform (ResNet `norm → SiLU`).
    pub silu: bool,
}

/// `groupnorm_stats` / `groupnorm_apply` parameters.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RunParams {
    sets: u32,
    positions: u32,
    cols: u32,
    chunks: u32,
    chunk_len: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FinalizeParams {
    sets: u32,
    positions: u32,
    channels: u32,
    groups: u32,
    chunks: u32,
    chunk_len: u32,
    eps: f32,
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
    // Three passes, none with barriers: per-run partial statistics (one read of x), a small
    // merge into a per-channel affine map, then y = x·scale + shift (one read, one write).
    // Vector loads along the channels when C % 4 == 0 (all of SD1.5).
    let vec4 = channels.is_multiple_of(4);
    let cv: u64 = if vec4 { 4 } else { 1 };
    let (v, vf) = match (vec4, ty) {
        (true, "f16") => ("vec4<f16>", "vec4<f32>"),
        (true, _) => ("vec4<f32>", "vec4<f32>"),
        (false, _) => (ty, "f32"),
    };
    let run_spec = Spec::new().u32("WG", GN_WG).ty("V", v).ty("VF", vf);
    let stats_kernel = gpu.kernel(&shader!("groupnorm_stats"), &run_spec)?;
    let apply_kernel = gpu.kernel(&shader!("groupnorm_apply"), &run_spec.bool("SILU", gn.silu))?;
    let finalize_kernel = gpu.kernel(&shader!("groupnorm_finalize"), &Spec::new().u32("WG", GN_WG).ty("T", ty))?;
    let (runs, run_len) = group_norm_runs(positions);
    // Whole statistic sets per chunk when x exceeds one binding.
    for ch in split_units(gpu, OP, sets, &[x, y])? {
        let (xs, ys) = (&ch.parts[0], &ch.parts[1]);
        let [part_dims, coef_dims] = group_norm_scratch(ch.count, positions, channels);
        let part = gpu.empty(part_dims, DType::F32, "group_norm.stats")?;
        let coef = gpu.empty(coef_dims, DType::F32, "group_norm.affine")?;
        to_u32(OP, "elements", xs.numel())?;
        let rp = RunParams {
            sets: to_u32(OP, "sets", ch.count)?,
            positions: to_u32(OP, "positions", positions)?,
            cols: to_u32(OP, "channels", channels / cv)?,
            chunks: to_u32(OP, "runs", runs)?,
            chunk_len: to_u32(OP, "run length", run_len)?,
        };
        let invocations = ch.count * runs * (channels / cv);
        to_u32(OP, "invocations", invocations)?;
        b.dispatch(&stats_kernel, &rp, &[xs, &part], Grid::for_elements(invocations, GN_WG, max_dim)?)?;
        let fp = FinalizeParams {
            sets: rp.sets,
            positions: rp.positions,
            channels: to_u32(OP, "channels", channels)?,
            groups: gn.groups,
            chunks: rp.chunks,
            chunk_len: rp.chunk_len,
            eps: gn.eps,
        };
        b.dispatch(&finalize_kernel, &fp, &[&part, gamma, beta, &coef], Grid::for_elements(ch.count * u64::from(gn.groups), GN_WG, max_dim)?)?;
        b.dispatch(&apply_kernel, &rp, &[xs, &coef, ys], Grid::for_elements(invocations, GN_WG, max_dim)?)?;
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
