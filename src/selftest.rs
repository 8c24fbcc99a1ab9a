//! GPU self-tests shared by the CLI (`animatediff selftest`), the web page and the tests:
//! kernels run on random data and are compared with the CPU float64 references.

use crate::gpu::{DType, Gpu, GpuError, GpuResult, Shape, Tensor};
use crate::ops;
use crate::quant::{self, QuantFormat};
use crate::reference::{self, Rng};

/// Outcome of [`linear_selftest`].
#[derive(Debug, Clone)]
pub struct SelfTestReport {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub flops: u64,
    pub rel_l2_error: f64,
    pub max_abs_error: f64,
    /// Tolerance `rel_l2_error` was held to.
    pub tolerance: f64,
    pub passed: bool,
}

/// Relative L2 tolerance for f32 storage and accumulation (kernel issue contract).
pub const F32_TOLERANCE: f64 = 1e-5;

/// Run `y = x·wᵀ + b` for random `x [m,k]`, `w [n,k]`, `b [n]` on the GPU and check it.
/// The output is poisoned with NaN first, so an unwritten element fails.
pub async fn linear_selftest(gpu: &Gpu, m: usize, n: usize, k: usize, seed: u64) -> GpuResult<SelfTestReport> {
    let mut rng = Rng::new(seed);
    let x = rng.uniform_vec(m * k);
    let w = rng.uniform_vec(n * k);
    let bias = rng.uniform_vec(n);
    let xt = gpu.upload_f32(&x, [m, k], "selftest.x")?;
    let w_kn = ops::linear_weight_from_torch(&w, n, k).ok_or_else(|| GpuError::shape("selftest", "weight size"))?;
    let wt = gpu.upload_f32(&w_kn, [k, n], "selftest.w")?;
    let bt = gpu.upload_f32(&bias, [n], "selftest.bias")?;
    let yt = gpu.empty([m, n], crate::DType::F32, "selftest.y")?;

    let mut batch = gpu.batch("selftest");
    ops::fill(&mut batch, &yt, f32::NAN)?;
    ops::linear(&mut batch, &xt, &wt, Some(&bt), &yt)?;
    batch.submit()?;
    let y = gpu.read_f32(&yt).await?;

    let want = reference::linear(&x, &w, Some(&bias), m, n, k);
    let rel = reference::rel_l2_error(&y, &want);
    Ok(SelfTestReport {
        m,
        n,
        k,
        flops: 2 * m as u64 * n as u64 * k as u64,
        rel_l2_error: rel,
        max_abs_error: reference::max_abs_error(&y, &want),
        tolerance: F32_TOLERANCE,
        passed: rel <= F32_TOLERANCE,
    })
}

/// One kernel check of [`kernel_suite`].
#[derive(Debug, Clone)]
pub struct KernelCheck {
    pub name: String,
    /// Storage type the kernel ran with.
    pub dtype: DType,
    pub rel_l2_error: f64,
    pub tolerance: f64,
    pub passed: bool,
}

struct Suite<'g> {
    gpu: &'g Gpu,
    rng: Rng,
    dtype: DType,
    checks: Vec<KernelCheck>,
}

impl Suite<'_> {
    /// Random data rounded to the storage type (the reference sees what the kernel reads).
    fn data(&mut self, n: usize, scale: f32) -> Vec<f32> {
        let v: Vec<f32> = self.rng.uniform_vec(n).iter().map(|x| x * scale).collect();
        if self.dtype == DType::F16 {
            reference::round_f16(&v)
        } else {
            v
        }
    }

    fn upload(&self, data: &[f32], shape: impl Into<Shape>) -> GpuResult<Tensor> {
        self.gpu.upload_f32_as(data, shape, self.dtype, "selftest")
    }

    /// Output tensor filled with NaN, so an element the kernel does not write fails.
    fn poisoned(&self, shape: impl Into<Shape>) -> GpuResult<Tensor> {
        let shape = shape.into();
        self.upload(&vec![f32::NAN; shape.numel() as usize], shape)
    }

    async fn check(&mut self, name: &str, out: &Tensor, want: &[f64]) -> GpuResult<()> {
        let got = self.gpu.read_f32(out).await?;
        let err = reference::rel_l2_error(&got, want);
        let tolerance = if self.dtype == DType::F16 { F16_TOLERANCE } else { F32_TOLERANCE };
        self.checks.push(KernelCheck { name: name.to_string(), dtype: self.dtype, rel_l2_error: err, tolerance, passed: err <= tolerance });
        Ok(())
    }
}

/// Relative L2 tolerance for f16 storage (f32 accumulation).
pub const F16_TOLERANCE: f64 = 3e-3;

/// Run a representative subset of the kernel library (every op family, dense and quantized
/// weights, every attention layout) on random data against the CPU float64 references, in
/// f32 storage and — when the device has shader-f16 — f16 storage. Used by
/// `animatediff selftest`, the page and the browser tests.
pub async fn kernel_suite(gpu: &Gpu, seed: u64) -> GpuResult<Vec<KernelCheck>> {
    let mut dtypes = vec![DType::F32];
    if gpu.info().shader_f16 {
        dtypes.push(DType::F16);
    }
    let mut checks = Vec::new();
    for dtype in dtypes {
        let mut s = Suite { gpu, rng: Rng::new(seed), dtype, checks: Vec::new() };
        run_suite(&mut s).await?;
        checks.append(&mut s.checks);
    }
    Ok(checks)
}

async fn run_suite(s: &mut Suite<'_>) -> GpuResult<()> {
    let gpu = s.gpu;
    // Linear: dense, q8, asymmetric q4, GEGLU with residual.
    let (m, n, k) = (7 * 13, 40, 64);
    let x = s.data(m * k, 1.0);
    let w = s.data(2 * n * k, 0.125);
    let bias = s.data(2 * n, 0.1);
    let (xt, bt) = (s.upload(&x, [m, k])?, s.upload(&bias[..n], [n])?);
    let torch_layout = |w: &[f32], n: usize| ops::linear_weight_from_torch(w, n, k).ok_or_else(|| GpuError::shape("selftest", "weight size"));
    let w_kn = torch_layout(&w[..n * k], n)?;
    let wt = s.upload(&w_kn, [k, n])?;
    let y = s.poisoned([m, n])?;
    let mut b = gpu.batch("selftest");
    ops::linear(&mut b, &xt, &wt, Some(&bt), &y)?;
    b.submit()?;
    s.check("linear", &y, &reference::linear(&x, &w[..n * k], Some(&bias[..n]), m, n, k)).await?;
    for fmt in [QuantFormat::Q8, QuantFormat { bits: 4, group: 32, asymmetric: true }] {
        let q = quant::quantize(&w_kn, k, n, fmt).map_err(|e| GpuError::shape("selftest", e.to_string()))?;
        let qw = ops::QuantizedWeight::upload(gpu, &q, [k, n], "selftest.q")?;
        let y = s.poisoned([m, n])?;
        let mut b = gpu.batch("selftest");
        ops::linear(&mut b, &xt, &qw, Some(&bt), &y)?;
        b.submit()?;
        s.check(&format!("linear q{}{}", fmt.bits, if fmt.asymmetric { " asym" } else { "" }), &y, &reference::linear(&x, &reference::transpose(&q.dequantize(), k, n), Some(&bias[..n]), m, n, k)).await?;
    }
    {
        let w2 = s.upload(&torch_layout(&w, 2 * n)?, [k, 2 * n])?;
        let b2 = s.upload(&bias, [2 * n])?;
        let res = s.data(m * n, 1.0);
        let rt = s.upload(&res, [m, n])?;
        let y = s.poisoned([m, n])?;
        let mut b = gpu.batch("selftest");
        ops::linear_ex(&mut b, &xt, &w2, Some(&b2), &y, ops::Epilogue { geglu: true, residual: Some(&rt), alpha: 1.0 })?;
        b.submit()?;
        let full = reference::linear(&x, &w, Some(&bias), m, 2 * n, k);
        let want: Vec<f64> = (0..m * n).map(|e| full[(e / n) * 2 * n + e % n] * reference::gelu_erf(full[(e / n) * 2 * n + n + e % n]) + f64::from(res[e])).collect();
        s.check("linear GEGLU + residual", &y, &want).await?;
    }

    // Convolutions on channels-last [2, 7, 13, C].
    let (bn, h, wd, c1, c2, cout) = (2, 7, 13, 24, 8, 16);
    let x1 = s.data(bn * h * wd * c1, 1.0);
    let x2 = s.data(bn * h * wd * c2, 1.0);
    let x1t = s.upload(&x1, [bn, h, wd, c1])?;
    let x2t = s.upload(&x2, [bn, h, wd, c2])?;
    let cb = s.data(cout, 0.1);
    let cbt = s.upload(&cb, [cout])?;
    for (name, cfg, concat, kk) in [
        ("conv2d 3x3", ops::Conv2d::SAME_3X3, false, 3),
        ("conv2d 3x3 stride 2", ops::Conv2d::DOWN_3X3, false, 3),
        ("conv2d upsample + 3x3", ops::Conv2d::UP_3X3, false, 3),
        ("conv2d 1x1 virtual concat", ops::Conv2d::POINTWISE, true, 1),
    ] {
        let cin = if concat { c1 + c2 } else { c1 };
        let w_oihw = s.data(cout * cin * kk * kk, 0.2);
        let w_hwio = ops::conv_weight_from_torch(&w_oihw, cout, cin, kk, kk).ok_or_else(|| GpuError::shape("selftest", "weight size"))?;
        let wt = s.upload(&w_hwio, [kk, kk, cin, cout])?;
        let (ho, wo) = cfg.output_size(h, wd, kk, kk).ok_or_else(|| GpuError::shape("selftest", "conv size"))?;
        let y = s.poisoned([bn, ho, wo, cout])?;
        let mut b = gpu.batch("selftest");
        ops::conv2d(&mut b, cfg, &x1t, concat.then_some(&x2t), &wt, &cbt, None, &y)?;
        b.submit()?;
        let xin: Vec<f32> = if concat {
            (0..bn * h * wd).flat_map(|p| x1[p * c1..(p + 1) * c1].iter().chain(&x2[p * c2..(p + 1) * c2]).copied()).collect()
        } else {
            x1.clone()
        };
        let want = reference::conv2d_nhwc(&xin, &w_oihw, &cb, [bn, h, wd, cin], cout, (kk, kk), cfg.stride as usize, cfg.padding as usize, cfg.upsample);
        s.check(name, &y, &want).await?;
    }

    // GroupNorm (+SiLU) per image and jointly over frames; LayerNorm.
    let gamma = s.data(c1, 0.2).iter().map(|v| v + 1.0).collect::<Vec<_>>();
    let beta = s.data(c1, 0.3);
    let (gt, bet) = (s.upload(&gamma, [c1])?, s.upload(&beta, [c1])?);
    for (name, domain, sets, positions) in [
        ("group_norm + SiLU per image", ops::NormDomain::PerImage, bn, h * wd),
        ("group_norm + SiLU joint over frames", ops::NormDomain::JointFrames { frames: 2 }, 1, 2 * h * wd),
    ] {
        let y = s.poisoned([bn, h, wd, c1])?;
        let mut b = gpu.batch("selftest");
        ops::group_norm(&mut b, ops::GroupNorm { groups: 8, eps: 1e-6, domain, silu: true }, &x1t, &gt, &bet, &y)?;
        b.submit()?;
        s.check(name, &y, &reference::group_norm(&x1, &gamma, &beta, sets, positions, c1, 8, 1e-6, true)).await?;
    }
    let y = s.poisoned([bn * h * wd, c1])?;
    let mut b = gpu.batch("selftest");
    ops::layer_norm(&mut b, 1e-5, &x1t, &gt, &bet, &y)?;
    b.submit()?;
    s.check("layer_norm", &y, &reference::layer_norm(&x1, &gamma, &beta, c1, 1e-5)).await?;

    // Attention: spatial self (head dim 40), cross with per-video K/V, causal, temporal, and the
    // SD1.5 VAE mid-block's single 512-channel head (the largest per-invocation state).
    let lay = |l: ops::TokenLayout| [l.inner as usize, l.outer_stride as usize, l.inner_stride as usize, l.token_stride as usize];
    for (name, seqs, heads, hd, q_len, kv_len, kv_div, causal, frames) in [
        ("attention self, head dim 40", 2u32, 2u32, 40u32, 37u32, 37u32, 1u32, false, 0u32),
        ("attention cross, text K/V shared by frames", 4, 2, 16, 20, 77, 2, false, 0),
        ("attention causal (CLIP)", 1, 4, 8, 77, 77, 1, true, 0),
        ("attention temporal over frames", 2, 2, 12, 16, 16, 1, false, 16),
        ("attention single head 512 (VAE mid-block)", 1, 1, 512, 21, 21, 1, false, 0),
    ] {
        let ch = heads * hd;
        let (ql, kvl, q_elems, kv_elems, sequences) = if frames > 0 {
            let positions = 5;
            let l = ops::TokenLayout::frames(frames, positions, ch);
            let n = (seqs * frames * positions * ch) as usize;
            (l, l, n, n, seqs * positions)
        } else {
            (ops::TokenLayout::rows(q_len, ch), ops::TokenLayout::rows(kv_len, ch), (seqs * q_len * ch) as usize, (seqs.div_ceil(kv_div) * kv_len * ch) as usize, seqs)
        };
        let (q, kd, v) = (s.data(q_elems, 1.0), s.data(kv_elems, 1.0), s.data(kv_elems, 1.0));
        let a = ops::Attention { sequences, heads, head_dim: hd, q_len, kv_len, q_layout: ql, kv_layout: kvl, kv_div, causal, scale: 1.0 / (hd as f32).sqrt() };
        let (qt, kt, vt) = (s.upload(&q, [q_elems])?, s.upload(&kd, [kv_elems])?, s.upload(&v, [kv_elems])?);
        let o = s.poisoned([q_elems])?;
        let mut b = gpu.batch("selftest");
        ops::attention(&mut b, &a, &qt, &kt, &vt, &o)?;
        b.submit()?;
        let want = reference::attention(&q, &kd, &v, sequences as usize, heads as usize, hd as usize, q_len as usize, kv_len as usize, lay(ql), lay(kvl), kv_div as usize, causal, f64::from(a.scale));
        s.check(name, &o, &want).await?;
    }

    // Activations and the motion-module position-encoding add.
    for (name, act, f) in [
        ("SiLU", ops::Activation::Silu, reference::silu as fn(f64) -> f64),
        ("GELU (erf)", ops::Activation::GeluErf, reference::gelu_erf),
        ("QuickGELU", ops::Activation::QuickGelu, reference::quick_gelu),
    ] {
        let y = s.poisoned([bn, h, wd, c1])?;
        let mut b = gpu.batch("selftest");
        ops::unary(&mut b, act, 1.0, &x1t, &y)?;
        b.submit()?;
        s.check(name, &y, &x1.iter().map(|&v| f(f64::from(v))).collect::<Vec<_>>()).await?;
    }
    let pe = s.data(2 * c1, 1.0);
    let y = s.poisoned([bn, h, wd, c1])?;
    let mut b = gpu.batch("selftest");
    ops::add(&mut b, &x1t, &s.upload(&pe, [2, c1])?, ops::Broadcast::Periodic { period: 2, positions: (h * wd) as u32 }, &y)?;
    b.submit()?;
    let want: Vec<f64> = (0..x1.len()).map(|i| f64::from(x1[i]) + f64::from(pe[(i / (h * wd * c1)) % 2 * c1 + i % c1])).collect();
    s.check("position-encoding add (periodic broadcast)", &y, &want).await?;
    Ok(())
}
