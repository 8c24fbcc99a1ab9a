//! `shaders/matmul.wgsl` / `shaders/matmul_tiled.wgsl`: linear layer `y = x · w (+ bias)`
//! with the weight K-major `[in, out]` (see [`super::weights`]), dense (f32/f16 like the
//! activations) or q8/q4 quantized, with fused epilogues.

use super::util::{distinct_output, split_units, storage_type};
use super::weights::{WeightKind, WeightRef};
use crate::gpu::{Batch, GpuError, GpuResult, Grid, Spec, Tensor};
use crate::shader;

const TILE: usize = 32;
/// Rows per invocation of the vec4 kernel.
const V4_ROWS: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    tiles_n: u32,
    tiles: u32,
    alpha: f32,
}

/// Shapes of one linear call: `x [.., K]` (M rows in all), `w [K, N]`, `y [.., N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linear {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl Linear {
    /// Check the operands and derive M, N, K.
    pub fn infer(x: &Tensor, w: WeightRef<'_>, bias: Option<&Tensor>, y: &Tensor) -> GpuResult<Linear> {
        Linear::infer_with(x, w, bias, y, false)
    }

    /// [`Linear::infer`]; with `geglu` the weight (and bias) hold 2·N columns and `y` N.
    pub fn infer_with(x: &Tensor, w: WeightRef<'_>, bias: Option<&Tensor>, y: &Tensor, geglu: bool) -> GpuResult<Linear> {
        const OP: &str = "linear";
        let mut typed = vec![x, y];
        typed.extend(bias);
        typed.extend(w.dense());
        storage_type(OP, &typed)?;
        let (k, rows) = match *w.dims() {
            [k, n] => (k, n),
            _ => return Err(GpuError::shape(OP, format!("weight must be [in, out], got {:?}", w.dims()))),
        };
        if geglu && !rows.is_multiple_of(2) {
            return Err(GpuError::shape(OP, format!("GEGLU weight needs an even output count, got {:?}", w.dims())));
        }
        let n = if geglu { rows / 2 } else { rows };
        if x.shape().dim(-1) != Some(k) || k == 0 {
            return Err(GpuError::shape(OP, format!("input {x:?} does not end in K = {k} (weight {:?})", w.dims())));
        }
        let m = (x.numel() / k as u64) as usize;
        if y.shape().dim(-1) != Some(n) || y.numel() != (m * n) as u64 {
            return Err(GpuError::shape(OP, format!("output {y:?} must hold {m} × {n}")));
        }
        if let Some(b) = bias {
            if b.numel() != rows as u64 {
                return Err(GpuError::shape(OP, format!("bias {b:?} must have {rows} elements")));
            }
        }
        Ok(Linear { m, n, k })
    }

    pub fn flops(&self) -> u64 {
        2 * self.m as u64 * self.n as u64 * self.k as u64
    }
}

/// What happens to `x·wᵀ + bias` before it is stored.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    /// Multiply by this (after GEGLU).
    pub alpha: f32,
    /// Add this `[M, N]` tensor last (residual connection).
    pub residual: Option<&'a Tensor>,
    /// The weight holds `[value; gate]` (2·N rows): store `value·gelu_erf(gate)`.
    pub geglu: bool,
}

impl Default for Epilogue<'_> {
    fn default() -> Self {
        Epilogue { alpha: 1.0, residual: None, geglu: false }
    }
}

/// `y = x · w (+ bias)` with a dense or quantized `[in, out]` weight. Inputs larger than one
/// storage binding are processed in row chunks; the weight must fit in one binding.
pub fn linear<'w>(b: &mut Batch<'_>, x: &Tensor, w: impl Into<WeightRef<'w>>, bias: Option<&Tensor>, y: &Tensor) -> GpuResult<()> {
    linear_ex(b, x, w, bias, y, Epilogue::default())
}

/// [`linear`] with a fused [`Epilogue`] (scale, residual add, GEGLU).
pub fn linear_ex<'w>(b: &mut Batch<'_>, x: &Tensor, w: impl Into<WeightRef<'w>>, bias: Option<&Tensor>, y: &Tensor, ep: Epilogue<'_>) -> GpuResult<()> {
    let w = w.into();
    let s = Linear::infer_with(x, w, bias, y, ep.geglu)?;
    let mut inputs = vec![x];
    inputs.extend(w.dense());
    distinct_output("linear", y, &inputs)?;
    let mut typed = vec![x, y];
    if let Some(r) = ep.residual {
        if r.numel() != y.numel() {
            return Err(GpuError::shape("linear", format!("residual {r:?} must match the output {y:?}")));
        }
        distinct_output("linear", y, &[r])?;
        typed.push(r);
    }
    let ty = storage_type("linear", &typed)?;
    // Software adapters with 8-wide subgroups: dense layers with a bias as 1×1 convolutions
    // in the subgroup-sharing kernel (no GEGLU / scale epilogue there).
    if let (Some(bias), WeightRef::Dense(t), false, true) = (bias, w, ep.geglu, ep.alpha == 1.0) {
        if let Some(r) = super::conv2d::linear_on_subgroups(b, x, t, bias, ep.residual, y, s.m, s.k, s.n) {
            return r;
        }
    }
    let gpu = b.gpu();
    let spec = Spec::new().bool("HAS_BIAS", bias.is_some()).bool("HAS_RESIDUAL", ep.residual.is_some()).bool("GEGLU", ep.geglu).ty("T", ty);
    // Every SD1.5 layer has K and N multiples of 4: vec4 loads of x along K and of the weights
    // along N. The workgroup-tiled kernel is for real GPUs (see `GpuInfo::tiled_kernels`).
    let x_vec4 = s.k.is_multiple_of(4);
    let kind = w.kind();
    let tiled = x_vec4 && !ep.geglu && gpu.info().tiled_kernels;
    // Register kernel: 8 columns per invocation (fewer loads per FMA) unless GEGLU uses the
    // second accumulator for the gate.
    let wide = !tiled && !ep.geglu;
    let (tile_m, tile_n) = if tiled {
        (64, 64)
    } else if x_vec4 {
        (8 * V4_ROWS, if wide { 2 * TILE } else { TILE })
    } else {
        (TILE, if wide { 2 * TILE } else { TILE })
    };
    let spec = w.spec(spec.u32("TM", (tile_m / 8) as u32).bool("WIDE", wide));
    let def = match (tiled, x_vec4, kind) {
        (true, _, WeightKind::Quant) => shader!("matmul_tiled", "weights_quant", "load_vec4", "matmul_io"),
        (true, _, WeightKind::Dense4) => shader!("matmul_tiled", "weights_dense4", "load_vec4", "matmul_io"),
        (true, _, WeightKind::Dense) => shader!("matmul_tiled", "weights_dense", "load_vec4", "matmul_io"),
        (false, true, WeightKind::Dense4) => shader!("matmul", "weights_dense4", "load_vec4", "gemm_wmat", "matmul_io"),
        (false, true, WeightKind::Dense) => shader!("matmul", "weights_dense", "load_vec4", "gemm_wmat", "matmul_io"),
        (false, true, WeightKind::Quant) => shader!("matmul", "weights_quant", "load_vec4", "gemm_wmat", "matmul_io"),
        (false, false, WeightKind::Dense4) => shader!("matmul", "weights_dense4", "load_scalar", "gemm_wmat", "matmul_io"),
        (false, false, WeightKind::Dense) => shader!("matmul", "weights_dense", "load_scalar", "gemm_wmat", "matmul_io"),
        (false, false, WeightKind::Quant) => shader!("matmul", "weights_quant", "load_scalar", "gemm_wmat", "matmul_io"),
    };
    let kernel = gpu.kernel(&def, &spec)?;
    // Absent inputs bind distinct zero ranges (two writable bindings may not overlap).
    let bias = bias.unwrap_or(gpu.zeros(0));
    let mut split = vec![x, y];
    split.extend(ep.residual);
    for ch in split_units(gpu, "linear", s.m as u64, &split)? {
        let m = ch.count as usize;
        let too_big = || GpuError::shape("linear", format!("{s:?} exceeds 32-bit indexing"));
        let tiles_n = s.n.div_ceil(tile_n);
        let tiles = m.div_ceil(tile_m).checked_mul(tiles_n).ok_or_else(too_big)?;
        let params = Params {
            m: u32::try_from(m).map_err(|_| too_big())?,
            n: u32::try_from(s.n).map_err(|_| too_big())?,
            k: u32::try_from(s.k).map_err(|_| too_big())?,
            tiles_n: u32::try_from(tiles_n).map_err(|_| too_big())?,
            tiles: u32::try_from(tiles).map_err(|_| too_big())?,
            alpha: ep.alpha,
        };
        let grid = Grid::linear(tiles as u64, gpu.limits().max_compute_workgroups_per_dimension)?;
        let residual = ch.parts.get(2).unwrap_or(gpu.zeros(1));
        let mut bindings = vec![(1, &ch.parts[0]), (3, bias), (4, &ch.parts[1]), (5, residual)];
        bindings.extend(w.bindings(gpu.zeros(2)));
        b.dispatch_at(&kernel, &params, &bindings, grid)?;
    }
    Ok(())
}
