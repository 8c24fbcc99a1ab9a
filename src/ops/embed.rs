//! Embeddings: `shaders/embedding.wgsl` (token + position gather) and the sinusoidal
//! timestep / position encodings, which are computed on the CPU in f64 and uploaded: WGSL
//! only guarantees sin/cos to 2⁻¹¹ absolute on [−π, π], while timesteps reach 999 rad, and
//! these tensors are tiny ([B, 320] per step, [F, C] per motion module).

use super::util::{split_units, storage_type, to_u32, WG};
use crate::gpu::{Batch, DType, GpuError, GpuResult, Grid, Spec, Tensor};
use crate::shader;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    tokens: u32,
    dim: u32,
    row0: u32,
    rows: u32,
    positions: u32,
}

/// `y[t] = table[ids[t]] + pos[t % positions]` for `table [vocab, D]`, `pos [positions, D]`,
/// `y [tokens, D]` (any leading shape). Ids are checked against the vocabulary here.
pub fn embedding(b: &mut Batch<'_>, ids: &[u32], table: &Tensor, pos: &Tensor, y: &Tensor) -> GpuResult<()> {
    const OP: &str = "embedding";
    let ty = storage_type(OP, &[table, pos, y])?;
    let (vocab, dim) = match *table.dims() {
        [v, d] if v > 0 && d > 0 => (v as u64, d as u64),
        _ => return Err(GpuError::shape(OP, format!("table must be [vocab, dim], got {table:?}"))),
    };
    let positions = pos.numel() / dim;
    if positions == 0 || !pos.numel().is_multiple_of(dim) {
        return Err(GpuError::shape(OP, format!("position table {pos:?} must be [positions, {dim}]")));
    }
    let tokens = ids.len() as u64;
    if y.numel() != tokens * dim {
        return Err(GpuError::shape(OP, format!("output {y:?} must hold {tokens} × {dim}")));
    }
    if let Some((i, id)) = ids.iter().enumerate().find(|(_, &id)| u64::from(id) >= vocab) {
        return Err(GpuError::shape(OP, format!("token {i} has id {id}, vocabulary has {vocab}")));
    }
    let gpu = b.gpu();
    let id_t = gpu.upload_bytes(bytemuck::cast_slice(ids), [ids.len()], DType::U32, "embedding.ids")?;
    let kernel = gpu.kernel(&shader!("embedding"), &Spec::new().u32("WG", WG).ty("T", ty))?;
    let grid = Grid::for_elements(tokens * dim, WG, gpu.limits().max_compute_workgroups_per_dimension)?;
    // A vocabulary table over the binding limit (CLIP's 49408×768 in f32 is 145 MiB) is bound
    // in row slices; every slice's dispatch writes only its own tokens.
    for ch in split_units(gpu, OP, vocab, &[table])? {
        let params = Params {
            tokens: to_u32(OP, "tokens", tokens)?,
            dim: to_u32(OP, "dim", dim)?,
            row0: to_u32(OP, "row", ch.start)?,
            rows: to_u32(OP, "rows", ch.count)?,
            positions: to_u32(OP, "positions", positions)?,
        };
        b.dispatch(&kernel, &params, &[&id_t, &ch.parts[0], pos, y], grid)?;
    }
    Ok(())
}

/// diffusers' `Timesteps(dim, flip_sin_to_cos, downscale_freq_shift)` for `timesteps [B]`:
/// `freq_j = exp(−ln(max_period)·j / (dim/2 − shift))`, output `[cos, sin]` when
/// `flip_sin_to_cos` (SD1.5), else `[sin, cos]`; `[B, dim]` row-major. The exponent and the
/// product are rounded to f32 as torch does, so results match diffusers' float32 tensors.
pub fn timestep_embedding(timesteps: &[f32], dim: usize, flip_sin_to_cos: bool, shift: f32, max_period: f32) -> Vec<f32> {
    let half = dim / 2;
    let mut out = vec![0f32; timesteps.len() * dim];
    for (b, &t) in timesteps.iter().enumerate() {
        for j in 0..half {
            let exponent = (-(f64::from(max_period).ln() as f32) * j as f32) / (half as f32 - shift);
            let arg = f64::from(t * exponent.exp());
            let (s, c) = (arg.sin() as f32, arg.cos() as f32);
            let row = &mut out[b * dim..(b + 1) * dim];
            if flip_sin_to_cos {
                row[j] = c;
                row[half + j] = s;
            } else {
                row[j] = s;
                row[half + j] = c;
            }
        }
        // Odd dims are zero-padded at the end, as in diffusers.
    }
    out
}

/// The motion modules' sinusoidal position encoding `pe [len, dim]` (original AnimateDiff /
/// diffusers `SinusoidalPositionalEmbedding`): `pe[p, 2i] = sin(p·d_i)`,
/// `pe[p, 2i+1] = cos(p·d_i)`, `d_i = exp(2i·(−ln 10000 / dim))`.
pub fn sinusoidal_position_encoding(len: usize, dim: usize) -> Vec<f32> {
    let mut pe = vec![0f32; len * dim];
    for p in 0..len {
        for i in (0..dim).step_by(2) {
            let div = ((i as f32) * ((-(10000f64.ln()) / dim as f64) as f32)).exp();
            let arg = f64::from(p as f32 * div);
            pe[p * dim + i] = arg.sin() as f32;
            if i + 1 < dim {
                pe[p * dim + i + 1] = arg.cos() as f32;
            }
        }
    }
    pe
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RgbaParams {
    pixels: u32,
}

/// Pack `x [.., 3]` values in `[0, 1]` into RGBA8 pixels `y` (u32 per pixel, alpha 255).
pub fn to_rgba8(b: &mut Batch<'_>, x: &Tensor, y: &Tensor) -> GpuResult<()> {
    const OP: &str = "to_rgba8";
    let ty = storage_type(OP, &[x])?;
    if x.shape().dim(-1) != Some(3) || y.dtype() != DType::U32 || y.numel() * 3 != x.numel() {
        return Err(GpuError::shape(OP, format!("expects x [.., 3] and a u32 output per pixel, got {x:?} → {y:?}")));
    }
    let gpu = b.gpu();
    let kernel = gpu.kernel(&shader!("to_rgba8"), &Spec::new().u32("WG", WG).ty("T", ty))?;
    for ch in split_units(gpu, OP, y.numel(), &[x, y])? {
        let params = RgbaParams { pixels: to_u32(OP, "pixels", ch.count)? };
        let grid = Grid::for_elements(ch.count, WG, gpu.limits().max_compute_workgroups_per_dimension)?;
        b.dispatch(&kernel, &params, &[&ch.parts[0], &ch.parts[1]], grid)?;
    }
    Ok(())
}
