//! `shaders/conv2d.wgsl`: 2-D convolution (3×3 stride 1/2, 1×1, any odd kernel) as implicit
//! GEMM on channels-last activations, with nearest-×2 upsampling folded into the input read,
//! a "virtual concat" second input, bias and an optional fused residual add.

use super::util::{distinct_output, split_units, storage_type, to_u32, SUBGROUP_LANES};
use super::matmul::{linear_ex, Epilogue};
use super::weights::{QuantizedWeight, WeightKind, WeightRef};
use crate::gpu::{Batch, GpuError, GpuResult, Grid, Shape, Spec, Tensor};
use crate::shader;

/// Invocations per workgroup (WGN along output channels × WGM along pixels).
const WG_INVOCATIONS: u64 = 64;
/// Output pixels per invocation with vec4 loads / with scalar loads.
const V4_ROWS: u64 = 8;
const SCALAR_ROWS: u64 = 4;
/// `conv2d_sg`: invocations per workgroup (= one subgroup) and pixels each lane loads
/// (the workgroup covers SG_LANES·SG_ROWS pixels × 8·SG_LANES output channels).
const SG_LANES: u64 = SUBGROUP_LANES as u64;
const SG_ROWS: u64 = 8;
// conv2d_sg.wgsl holds accumulators for up to 8 (MAX_R). On lavapipe 8 runs the SD1.5 3×3
// convs 10–20 % faster than 4 (7.3–8.2 → 8.5–9.4 GFLOP/s) and compiles in ~4.5 s instead of
// ~2.2 s per variant (few variants: dtype × virtual concat).
const _: () = assert!(SG_ROWS >= 1 && SG_ROWS <= 8);

/// Convolution settings (padding is zero padding on every side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2d {
    pub stride: u32,
    pub padding: u32,
    /// Nearest-neighbour ×2 upsampling of the input before the convolution (`Upsample2D`).
    pub upsample: bool,
}

impl Conv2d {
    pub const SAME_3X3: Conv2d = Conv2d { stride: 1, padding: 1, upsample: false };
    pub const DOWN_3X3: Conv2d = Conv2d { stride: 2, padding: 1, upsample: false };
    pub const UP_3X3: Conv2d = Conv2d { stride: 1, padding: 1, upsample: true };
    pub const POINTWISE: Conv2d = Conv2d { stride: 1, padding: 0, upsample: false };

    /// Output height/width for an `h × w` input and a `kh × kw` kernel.
    pub fn output_size(&self, h: usize, w: usize, kh: usize, kw: usize) -> Option<(usize, usize)> {
        let f = if self.upsample { 2 } else { 1 };
        let s = self.stride.max(1) as usize;
        let p = self.padding as usize;
        let oh = (h * f + 2 * p).checked_sub(kh)? / s + 1;
        let ow = (w * f + 2 * p).checked_sub(kw)? / s + 1;
        Some((oh, ow))
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    h: u32,
    w: u32,
    c1: u32,
    c2: u32,
    ho: u32,
    wo: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    tiles_n: u32,
    tiles: u32,
    upsample: u32,
    has_residual: u32,
}

/// `y = conv(concat(x1, x2)) + bias (+ residual)`: `x1 [N, H, W, C1]`, optional
/// `x2 [N, H, W, C2]`, `w [KH, KW, C1+C2, Cout]` (see [`super::conv_weight_from_torch`]),
/// `bias [Cout]`, `y` and `residual` `[N, Ho, Wo, Cout]`. The weight may be quantized
/// (a `[KH·KW·Cin, Cout]` matrix, groups along KH·KW·Cin).
#[allow(clippy::too_many_arguments)]
pub fn conv2d<'w>(
    b: &mut Batch<'_>,
    cfg: Conv2d,
    x1: &Tensor,
    x2: Option<&Tensor>,
    w: impl Into<WeightRef<'w>>,
    bias: &Tensor,
    residual: Option<&Tensor>,
    y: &Tensor,
) -> GpuResult<()> {
    conv2d_impl(b, cfg, x1, x2, w.into(), bias, residual, y, true)
}

/// Does this device run a convolution / linear layer of `cin` → `cout` channels with this
/// weight kind in shaders/conv2d_sg.wgsl? Software adapters with 8-wide subgroups, vec4
/// channels, dense weights and at least 16 output channels (narrower layers, e.g. conv_out,
/// would leave most of its 64 columns idle). Quantized weights stay on conv2d.wgsl: their
/// dequantizing loads make the large kernel slower still to compile on lavapipe.
pub(crate) fn subgroup_kernel(gpu: &crate::gpu::Gpu, cin: usize, cout: usize, kind: WeightKind) -> bool {
    !gpu.info().tiled_kernels && gpu.info().subgroup_size == SUBGROUP_LANES && cin.is_multiple_of(4) && kind == WeightKind::Dense4 && cout >= 16
}

/// A dense linear layer `y [M, N] = x [M, K] · w [K, N] + bias (+ residual)` as a 1×1
/// convolution over M pixels in conv2d_sg.wgsl, where [`subgroup_kernel`] says so: on
/// lavapipe every storage load is a per-lane loop, and sharing the input across the subgroup
/// makes this several times faster than shaders/matmul.wgsl. `None`: not this path.
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_on_subgroups(b: &mut Batch<'_>, x: &Tensor, w: &Tensor, bias: &Tensor, residual: Option<&Tensor>, y: &Tensor, m: usize, k: usize, n: usize) -> Option<GpuResult<()>> {
    if !subgroup_kernel(b.gpu(), k, n, WeightRef::Dense(w).kind()) {
        return None;
    }
    let x4 = x.reshape([m, 1, 1, k])?;
    let y4 = y.reshape([m, 1, 1, n])?;
    let w4 = w.reshape([1, 1, k, n])?;
    let r4 = match residual {
        Some(r) => Some(r.reshape([m, 1, 1, n])?),
        None => None,
    };
    Some(conv2d_impl(b, Conv2d::POINTWISE, &x4, None, WeightRef::Dense(&w4), bias, r4.as_ref(), &y4, false))
}

/// [`conv2d`]; `as_linear`: a plain 1×1 convolution may take the matmul kernels (false when
/// called for a linear layer).
#[allow(clippy::too_many_arguments)]
fn conv2d_impl(
    b: &mut Batch<'_>,
    cfg: Conv2d,
    x1: &Tensor,
    x2: Option<&Tensor>,
    w: WeightRef<'_>,
    bias: &Tensor,
    residual: Option<&Tensor>,
    y: &Tensor,
    as_linear: bool,
) -> GpuResult<()> {
    const OP: &str = "conv2d";
    let inputs: Vec<&Tensor> = [Some(x1), x2, w.dense(), Some(bias), residual].into_iter().flatten().collect();
    distinct_output(OP, y, &inputs)?;
    let ty = storage_type(OP, &[inputs.as_slice(), &[y]].concat())?;

    let [n, h, wd, c1] = match *x1.dims() {
        [n, h, w, c] => [n, h, w, c],
        _ => return Err(GpuError::shape(OP, format!("input must be [N, H, W, C], got {x1:?}"))),
    };
    let c2 = match x2 {
        Some(t) => match *t.dims() {
            [n2, h2, w2, c] if (n2, h2, w2) == (n, h, wd) => c,
            _ => return Err(GpuError::shape(OP, format!("second input {t:?} must be [{n}, {h}, {wd}, C2]"))),
        },
        None => 0,
    };
    let [kh, kw, cin, cout] = match *w.dims() {
        [kh, kw, i, o] => [kh, kw, i, o],
        _ => return Err(GpuError::shape(OP, format!("weight must be [KH, KW, Cin, Cout], got {:?}", w.dims()))),
    };
    if cin != c1 + c2 || cout == 0 || cin == 0 {
        return Err(GpuError::shape(OP, format!("weight {:?} expects {cin} input channels, inputs have {}", w.dims(), c1 + c2)));
    }
    if bias.numel() != cout as u64 {
        return Err(GpuError::shape(OP, format!("bias {bias:?} must have {cout} elements")));
    }
    let (ho, wo) = cfg
        .output_size(h, wd, kh, kw)
        .ok_or_else(|| GpuError::shape(OP, format!("kernel {kh}×{kw} larger than the padded input {h}×{wd}")))?;
    let out_dims = [n, ho, wo, cout];
    if y.dims() != out_dims {
        return Err(GpuError::shape(OP, format!("output must be {out_dims:?}, got {y:?}")));
    }
    if let Some(r) = residual {
        if r.dims() != out_dims {
            return Err(GpuError::shape(OP, format!("residual must be {out_dims:?}, got {r:?}")));
        }
    }

    // A 1×1 stride-1 unpadded convolution of one input is a linear layer over the pixels
    // (same K-major weight layout, [1, 1, Cin, Cout] = [Cin, Cout]): take the matmul kernels.
    if as_linear && (kh, kw, cfg.stride.max(1), cfg.padding, cfg.upsample, x2.is_none()) == (1, 1, 1, 0, false, true) {
        let ep = Epilogue { residual, ..Epilogue::default() };
        return match w {
            WeightRef::Dense(t) => {
                let t = t.reshape([cin, cout]).ok_or_else(|| GpuError::shape(OP, format!("cannot view {t:?} as [{cin}, {cout}]")))?;
                linear_ex(b, x1, &t, Some(bias), y, ep)
            }
            WeightRef::Quant(q) => {
                let q = QuantizedWeight { shape: Shape::new([cin, cout]), ..q.clone() };
                linear_ex(b, x1, &q, Some(bias), y, ep)
            }
        };
    }

    let gpu = b.gpu();
    // Channel counts that are multiples of 4 (all of SD1.5) take vec4 loads of the input.
    let vec4 = c1.is_multiple_of(4) && c2.is_multiple_of(4);
    // Software adapters with 8-wide subgroups: the subgroup-sharing kernel.
    let sg = vec4 && subgroup_kernel(gpu, c1 + c2, cout, w.kind());
    let spec = Spec::new().bool("HAS_X2", x2.is_some()).ty("T", ty);
    let spec = if sg { spec } else { spec.bool("UPSAMPLE", cfg.upsample).bool("HAS_RESIDUAL", residual.is_some()) };
    let tm = if vec4 { V4_ROWS } else { SCALAR_ROWS };
    // Narrow layers (the VAE's 3-channel and the UNet's 4-channel conv_out) would leave most
    // of an 8×8 workgroup idle: put fewer invocations along the outputs and more along pixels.
    let wgn: u64 = [1u64, 2, 4, 8].into_iter().find(|&g| 8 * g >= cout as u64).unwrap_or(8);
    let wgm = WG_INVOCATIONS / wgn;
    let (tile_n, tile_m) = if sg { (8 * SG_LANES, SG_LANES * SG_ROWS) } else { (8 * wgn, wgm * tm) };
    let spec = if sg { w.spec(spec.u32("R", SG_ROWS as u32)) } else { w.spec(spec.u32("TM", tm as u32).u32("WGN", wgn as u32).u32("WGM", wgm as u32)) };
    let def = match (sg, vec4, w.kind()) {
        (true, _, _) => shader!("conv2d_sg", "subgroup_lanes", "conv_io", "weights_dense4", "load_vec4"),
        (false, true, WeightKind::Dense4) => shader!("conv2d", "conv_io", "weights_dense4", "load_vec4", "gemm_wmat"),
        (false, true, WeightKind::Dense) => shader!("conv2d", "conv_io", "weights_dense", "load_vec4", "gemm_wmat"),
        (false, true, WeightKind::Quant) => shader!("conv2d", "conv_io", "weights_quant", "load_vec4", "gemm_wmat"),
        (false, false, WeightKind::Dense4) => shader!("conv2d", "conv_io", "weights_dense4", "load_scalar", "gemm_wmat"),
        (false, false, WeightKind::Dense) => shader!("conv2d", "conv_io", "weights_dense", "load_scalar", "gemm_wmat"),
        (false, false, WeightKind::Quant) => shader!("conv2d", "conv_io", "weights_quant", "load_scalar", "gemm_wmat"),
    };
    let kernel = gpu.kernel(&def, &spec)?;
    // Absent inputs bind distinct zero ranges (two writable bindings may not overlap).
    let zeros = |slot| gpu.zeros(slot);
    let u = |what, v: usize| to_u32(OP, what, v as u64);
    // Whole images per chunk when activations exceed one storage binding.
    let split: Vec<&Tensor> = [Some(x1), Some(y), x2, residual].into_iter().flatten().collect();
    for ch in split_units(gpu, OP, n as u64, &split)? {
        let (x1c, yc) = (&ch.parts[0], &ch.parts[1]);
        let mut rest = ch.parts[2..].iter();
        let x2c = x2.and_then(|_| rest.next());
        let rc = residual.and_then(|_| rest.next());
        let m = ch.count * (ho * wo) as u64;
        let tiles_n = (cout as u64).div_ceil(tile_n);
        let tiles = m.div_ceil(tile_m) * tiles_n;
        // Indices inside the kernel are u32 over whole bindings.
        to_u32(OP, "elements", x1c.numel().max(m * cout as u64))?;
        let params = Params {
            n: to_u32(OP, "batch", ch.count)?,
            h: u("height", h)?,
            w: u("width", wd)?,
            c1: u("channels", c1)?,
            c2: u("channels", c2)?,
            ho: u("height", ho)?,
            wo: u("width", wo)?,
            cout: u("out channels", cout)?,
            kh: u("kernel", kh)?,
            kw: u("kernel", kw)?,
            stride: cfg.stride.max(1),
            pad: cfg.padding,
            tiles_n: to_u32(OP, "tiles", tiles_n)?,
            tiles: to_u32(OP, "tiles", tiles)?,
            upsample: cfg.upsample.into(),
            has_residual: residual.is_some().into(),
        };
        let grid = Grid::linear(tiles, gpu.limits().max_compute_workgroups_per_dimension)?;
        let mut bindings = vec![(1, x1c), (2, x2c.unwrap_or(zeros(0))), (4, bias), (5, rc.unwrap_or(zeros(1))), (6, yc)];
        bindings.extend(w.bindings(zeros(2)));
        b.dispatch_at(&kernel, &params, &bindings, grid)?;
    }
    Ok(())
}
