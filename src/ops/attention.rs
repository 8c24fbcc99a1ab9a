//! `shaders/attention.wgsl`: multi-head attention with an online softmax, over any token
//! layout expressible as (sequence, token, head) strides — spatial self-attention,
//! cross-attention with per-video text K/V, causal CLIP attention, and temporal (motion
//! module) attention directly on frame-major activations (on GPUs, a workgroup-memory kernel
//! for the latter: `shaders/temporal_attention.wgsl`).

use super::util::{distinct_output, gcd, split_units, storage_type, to_u32, SUBGROUP_LANES};
use crate::gpu::{Batch, GpuError, GpuResult, Grid, Spec, Tensor};
use crate::shader;

const WG: u32 = 64;

/// Where the tokens of each sequence live (element strides; a token's heads are contiguous:
/// `[.., heads·head_dim]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct TokenLayout {
    pub inner: u32,
    pub outer_stride: u32,
    pub inner_stride: u32,
    pub token_stride: u32,
}

impl TokenLayout {
    /// `[S, T, C]`: sequence `s` is row block `s`.
    pub fn rows(tokens: u32, channels: u32) -> TokenLayout {
        TokenLayout { inner: 1, outer_stride: tokens * channels, inner_stride: 0, token_stride: channels }
    }

    /// Frame-major `[B·F, P, C]` activations attended over frames: sequence `b·P + p`, token
    /// = frame.
    pub fn frames(frames: u32, positions: u32, channels: u32) -> TokenLayout {
        TokenLayout { inner: positions, outer_stride: frames * positions * channels, inner_stride: channels, token_stride: positions * channels }
    }
}

/// Attention problem description.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attention {
    pub sequences: u32,
    pub heads: u32,
    pub head_dim: u32,
    pub q_len: u32,
    pub kv_len: u32,
    pub q_layout: TokenLayout,
    pub kv_layout: TokenLayout,
    /// Query sequence `s` uses K/V sequence `s / kv_div`.
    pub kv_div: u32,
    pub causal: bool,
    /// Softmax scale (usually `1/√head_dim`).
    pub scale: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    q: TokenLayout,
    kv: TokenLayout,
    sequences: u32,
    heads: u32,
    q_len: u32,
    kv_len: u32,
    kv_div: u32,
    scale: f32,
    _pad: [u32; 2],
}

fn max_index(l: &TokenLayout, seqs: u64, len: u64, heads: u64, head_dim: u64) -> u64 {
    let s = seqs.saturating_sub(1);
    (s / u64::from(l.inner.max(1))) * u64::from(l.outer_stride)
        + (s % u64::from(l.inner.max(1))) * u64::from(l.inner_stride)
        + len.saturating_sub(1) * u64::from(l.token_stride)
        + heads * head_dim
}

/// Queries per invocation of the register kernel: each loaded K/V row serves this many
/// queries, bounded so the per-invocation state (2·QPT·head_dim floats) stays modest.
fn queries_per_invocation(head_dim: u32) -> u32 {
    match head_dim {
        0..=64 => 4,
        65..=128 => 2,
        _ => 1,
    }
}

/// Largest head dimension the kernels take: the SD1.5 VAE mid-block attends with one head of
/// 512 channels (each invocation holds a query row and an accumulator of this many floats).
pub const MAX_HEAD_DIM: u32 = 512;

/// Which kernel runs an attention.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// shaders/flash_attention.wgsl with this many keys per workgroup-memory tile (GPUs).
    Flash(u32),
    /// shaders/attention_sg.wgsl with this many queries per lane (software adapters).
    Subgroup(u32),
    /// shaders/attention.wgsl.
    Register,
}

/// Largest head dimension of the subgroup kernel: each lane holds its key and value rows
/// besides its queries' rows and accumulators (SD1.5's 40/80/160, CLIP's 64).
const SG_MAX_HEAD_DIM: u32 = 160;

/// Whether shaders/attention_sg.wgsl runs this head dimension on this adapter: a software
/// adapter (no GEMM tiling) with 8-wide subgroups; the kernel walks the head in groups of 8.
fn subgroup_kernel(gpu: &crate::gpu::Gpu, head_dim: u32) -> bool {
    gpu.info().subgroup_size == SUBGROUP_LANES && head_dim.is_multiple_of(8) && head_dim <= SG_MAX_HEAD_DIM
}

/// Queries per lane of the subgroup kernel: as many as keep the per-lane state modest, but
/// no more than the sequence fills (motion modules attend over 16 frames).
fn subgroup_queries_per_lane(head_dim: u32, q_len: u32) -> u32 {
    // Two queries up to 80 channels (lavapipe, 1×8×1024×80: 92 ms against 112 ms with one);
    // the unrolled kernel's per-lane state (query rows and accumulators) grows with
    // head_dim·QPT, and past that lavapipe compiles it for seconds (4 queries of 40: 7.7 s
    // against 0.5 s with 2) and runs it no faster.
    let most = if head_dim <= 80 { 2 } else { 1 };
    most.min(q_len.div_ceil(SUBGROUP_LANES)).max(1)
}

fn vec4_type(ty: &'static str) -> &'static str {
    if ty == "f16" {
        "vec4<f16>"
    } else {
        "vec4<f32>"
    }
}

/// Queries per workgroup of the flash kernel.
const FLASH_BQ: u32 = 64;

/// Keys per workgroup-memory tile of the flash kernel: the largest that fits K and V.
fn flash_kv_tile(gpu: &crate::gpu::Gpu, head_dim: u32) -> Option<u32> {
    let limits = gpu.limits();
    if FLASH_BQ > limits.max_compute_invocations_per_workgroup {
        return None;
    }
    [32u32, 16, 8, 4].into_iter().find(|&bkv| 2 * bkv * head_dim * 4 <= limits.max_compute_workgroup_storage_size)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TemporalParams {
    positions: u32,
    heads: u32,
    channels: u32,
    tiles: u32,
    pos_tiles: u32,
    scale: f32,
}

/// Positions per workgroup for the workgroup-memory temporal kernel, if K/V of one fits.
fn temporal_tile(gpu: &crate::gpu::Gpu, frames: u32, head_dim: u32) -> Option<u32> {
    let limits = gpu.limits();
    [8u32, 4, 2, 1].into_iter().find(|&tp| {
        2 * tp * frames * head_dim * 4 <= limits.max_compute_workgroup_storage_size
            && tp * frames <= limits.max_compute_invocations_per_workgroup
            && tp * frames <= limits.max_compute_workgroup_size_x
    })
}

/// The motion-module case: self-attention over all frames of frame-major activations.
fn temporal_shape(a: &Attention) -> Option<(u32, u32)> {
    let l = a.q_layout;
    let frames = a.q_len;
    let channels = a.heads * a.head_dim;
    let is_frames = l == TokenLayout::frames(frames, l.inner, channels);
    (is_frames && a.kv_layout == l && a.kv_len == frames && a.kv_div == 1 && !a.causal && frames <= 64).then_some((frames, l.inner))
}

/// `o = softmax(q·kᵀ·scale)·v` per head; `o` has `q`'s layout.
pub fn attention(b: &mut Batch<'_>, a: &Attention, q: &Tensor, k: &Tensor, v: &Tensor, o: &Tensor) -> GpuResult<()> {
    const OP: &str = "attention";
    distinct_output(OP, o, &[q, k, v])?;
    let ty = storage_type(OP, &[q, k, v, o])?;
    if a.head_dim == 0 || a.head_dim > MAX_HEAD_DIM || a.heads == 0 || a.kv_len == 0 || a.kv_div == 0 || a.q_layout.inner == 0 || a.kv_layout.inner == 0 {
        return Err(GpuError::shape(OP, format!("invalid problem {a:?}")));
    }
    let (hs, hd) = (u64::from(a.heads), u64::from(a.head_dim));
    let kv_seqs = u64::from(a.sequences).div_ceil(u64::from(a.kv_div));
    if max_index(&a.q_layout, a.sequences.into(), a.q_len.into(), hs, hd) > q.numel().min(o.numel())
        || max_index(&a.kv_layout, kv_seqs, a.kv_len.into(), hs, hd) > k.numel().min(v.numel())
    {
        return Err(GpuError::shape(OP, format!("{a:?} reads past q {q:?} / k {k:?} / v {v:?} / o {o:?}")));
    }
    let gpu = b.gpu();
    // Motion modules on GPUs: K/V of a tile of positions × all frames in workgroup memory.
    if gpu.info().tiled_kernels {
        if let Some((frames, positions)) = temporal_shape(a) {
            if let Some(tp) = temporal_tile(gpu, frames, a.head_dim) {
                return temporal(b, a, ty, frames, positions, tp, q, k, v, o);
            }
        }
    }
    // GPUs: K/V tiles through workgroup memory; software adapters: K/V rows shared across a
    // subgroup where it has 8 lanes, else the register kernel.
    let path = if gpu.info().tiled_kernels {
        flash_kv_tile(gpu, a.head_dim).map_or(Path::Register, Path::Flash)
    } else if subgroup_kernel(gpu, a.head_dim) {
        Path::Subgroup(subgroup_queries_per_lane(a.head_dim, a.q_len))
    } else {
        Path::Register
    };
    let qpt = queries_per_invocation(a.head_dim);
    let spec = Spec::new().u32("HEAD_DIM", a.head_dim).bool("CAUSAL", a.causal).ty("T", ty);
    let kernel = match path {
        Path::Flash(bkv) => gpu.kernel(&shader!("flash_attention", "attention_io"), &spec.ty("E", ty).u32("BQ", FLASH_BQ).u32("BKV", bkv))?,
        Path::Subgroup(qpl) => gpu.kernel(&shader!("attention_sg", "subgroup_lanes", "attention_io"), &spec.ty("E", vec4_type(ty)).u32("QPT", qpl))?,
        Path::Register => gpu.kernel(&shader!("attention", "attention_io"), &spec.ty("E", ty).u32("WG", WG).u32("QPT", qpt))?,
    };
    // Split into groups of whole q blocks and whole K/V blocks when a tensor exceeds one
    // binding: a group is lcm(q inner, kv_div · kv inner) sequences.
    let (qi, kvb) = (u64::from(a.q_layout.inner), u64::from(a.kv_div) * u64::from(a.kv_layout.inner));
    let group = qi / gcd(qi, kvb) * kvb;
    let sequences = u64::from(a.sequences);
    let units = if sequences % group == 0 && q.numel().is_multiple_of(sequences / group) && k.numel().is_multiple_of(sequences / group) {
        sequences / group
    } else {
        1
    };
    for ch in split_units(gpu, OP, units, &[q, k, v, o])? {
        let seqs = if units == 1 { sequences } else { ch.count * group };
        let threads = seqs * hs * u64::from(a.q_len);
        let params = Params {
            q: a.q_layout,
            kv: a.kv_layout,
            sequences: to_u32(OP, "sequences", seqs)?,
            heads: a.heads,
            q_len: a.q_len,
            kv_len: a.kv_len,
            kv_div: a.kv_div,
            scale: a.scale,
            _pad: [0; 2],
        };
        to_u32(OP, "queries", threads)?;
        let max_dim = gpu.limits().max_compute_workgroups_per_dimension;
        let grid = match path {
            Path::Flash(_) => Grid::linear(seqs * hs * u64::from(a.q_len.div_ceil(FLASH_BQ)), max_dim)?,
            Path::Subgroup(qpl) => Grid::linear(seqs * hs * u64::from(a.q_len.div_ceil(SUBGROUP_LANES * qpl)), max_dim)?,
            Path::Register => Grid::for_elements(seqs * hs * u64::from(a.q_len.div_ceil(qpt)), WG, max_dim)?,
        };
        let p = &ch.parts;
        b.dispatch(&kernel, &params, &[&p[0], &p[1], &p[2], &p[3]], grid)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn temporal(b: &mut Batch<'_>, a: &Attention, ty: &'static str, frames: u32, positions: u32, tp: u32, q: &Tensor, k: &Tensor, v: &Tensor, o: &Tensor) -> GpuResult<()> {
    const OP: &str = "attention";
    let gpu = b.gpu();
    let spec = Spec::new().u32("TP", tp).u32("FR", frames).u32("HEAD_DIM", a.head_dim).ty("T", ty);
    let kernel = gpu.kernel(&shader!("temporal_attention"), &spec)?;
    let videos = u64::from(a.sequences) / u64::from(positions.max(1));
    let pos_tiles = positions.div_ceil(tp);
    // Whole videos per chunk when activations exceed one storage binding.
    for ch in split_units(gpu, OP, videos, &[q, k, v, o])? {
        let tiles = ch.count * u64::from(a.heads) * u64::from(pos_tiles);
        let params = TemporalParams {
            positions,
            heads: a.heads,
            channels: a.heads * a.head_dim,
            tiles: to_u32(OP, "workgroups", tiles)?,
            pos_tiles,
            scale: a.scale,
        };
        let grid = Grid::linear(tiles, gpu.limits().max_compute_workgroups_per_dimension)?;
        let p = &ch.parts;
        b.dispatch(&kernel, &params, &[&p[0], &p[1], &p[2], &p[3]], grid)?;
    }
    Ok(())
}
