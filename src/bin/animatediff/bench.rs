//! `animatediff bench kernels`: time each kernel family on this device and, with the
//! `burn-peer` feature and `--peer`, the same op in burn-wgpu on the same adapter in the same
//! run. A benchmark, not a test: it prints numbers and asserts nothing.

use std::time::Instant;

use animatediff_wgpu::gpu::{Batch, DType, Gpu, GpuResult, Shape, Tensor};
use animatediff_wgpu::ops::{self, Conv2d, GroupNorm, NormDomain, TokenLayout};
use animatediff_wgpu::quant::{self, QuantFormat};
use animatediff_wgpu::reference::Rng;

/// Problem sizes: `small` runs in seconds on a software adapter; `sd` uses SD1.5's real
/// 512×512 shapes (one image / one video where batching does not change the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Size {
    Small,
    Sd,
}

/// One benchmarked op at one shape.
#[derive(Debug, Clone)]
pub enum Case {
    Matmul { m: usize, n: usize, k: usize, quant: Option<QuantFormat> },
    Conv { n: usize, h: usize, w: usize, cin: usize, cout: usize, k: usize, stride: usize },
    GroupNorm { n: usize, h: usize, w: usize, c: usize, groups: usize },
    LayerNorm { rows: usize, cols: usize },
    Attention { batch: usize, heads: usize, seq: usize, head_dim: usize },
    Temporal { videos: usize, frames: usize, positions: usize, heads: usize, head_dim: usize },
}

impl Case {
    fn name(&self) -> String {
        match self {
            Case::Matmul { m, n, k, quant: None } => format!("matmul {m}x{n}x{k}"),
            Case::Matmul { m, n, k, quant: Some(q) } => format!("matmul q{} g{} {m}x{n}x{k}", q.bits, q.group),
            Case::Conv { n, h, w, cin, cout, k, stride } => format!("conv{k}x{k}/s{stride} {n}x{h}x{w}x{cin}->{cout}"),
            Case::GroupNorm { n, h, w, c, groups } => format!("group_norm {n}x{h}x{w}x{c} g{groups}"),
            Case::LayerNorm { rows, cols } => format!("layer_norm {rows}x{cols}"),
            Case::Attention { batch, heads, seq, head_dim } => format!("attention {batch}x{heads}x{seq}x{head_dim}"),
            Case::Temporal { videos, frames, positions, heads, head_dim } => {
                format!("temporal attn {videos}v x{frames}f x{positions}p {heads}x{head_dim}")
            }
        }
    }

    /// (FLOP, bytes moved at minimum) per run.
    fn work(&self, elem: usize) -> (f64, f64) {
        let e = elem as f64;
        match *self {
            Case::Matmul { m, n, k, quant } => {
                let wbytes = match quant {
                    Some(q) => (n * k) as f64 * f64::from(q.bits) / 8.0,
                    None => (n * k) as f64 * e,
                };
                (2.0 * (m * n * k) as f64, (m * k + m * n) as f64 * e + wbytes)
            }
            Case::Conv { n, h, w, cin, cout, k, stride } => {
                let (ho, wo) = (h.div_ceil(stride), w.div_ceil(stride));
                (2.0 * (n * ho * wo * cout * cin * k * k) as f64, ((n * h * w * cin) + (n * ho * wo * cout) + cout * cin * k * k) as f64 * e)
            }
            Case::GroupNorm { n, h, w, c, .. } => (8.0 * (n * h * w * c) as f64, 2.0 * (n * h * w * c) as f64 * e),
            Case::LayerNorm { rows, cols } => (8.0 * (rows * cols) as f64, 2.0 * (rows * cols) as f64 * e),
            Case::Attention { batch, heads, seq, head_dim } => {
                (4.0 * (batch * heads * seq * seq * head_dim) as f64, 4.0 * (batch * heads * seq * head_dim) as f64 * e)
            }
            Case::Temporal { videos, frames, positions, heads, head_dim } => {
                let seqs = videos * positions;
                (4.0 * (seqs * heads * frames * frames * head_dim) as f64, 4.0 * (seqs * heads * frames * head_dim) as f64 * e)
            }
        }
    }
}

pub fn cases(size: Size) -> Vec<Case> {
    let q8 = Some(QuantFormat::Q8);
    let q4 = Some(QuantFormat::Q4);
    match size {
        Size::Small => vec![
            Case::Matmul { m: 1024, n: 1024, k: 1024, quant: None },
            Case::Matmul { m: 1024, n: 320, k: 320, quant: None },
            Case::Matmul { m: 1024, n: 320, k: 320, quant: q8 },
            Case::Matmul { m: 1024, n: 320, k: 320, quant: q4 },
            Case::Conv { n: 1, h: 32, w: 32, cin: 320, cout: 320, k: 3, stride: 1 },
            Case::Conv { n: 1, h: 32, w: 32, cin: 320, cout: 320, k: 3, stride: 2 },
            Case::GroupNorm { n: 2, h: 64, w: 64, c: 320, groups: 32 },
            Case::LayerNorm { rows: 4096, cols: 320 },
            Case::Attention { batch: 1, heads: 8, seq: 1024, head_dim: 40 },
            Case::Temporal { videos: 1, frames: 16, positions: 1024, heads: 8, head_dim: 40 },
        ],
        Size::Sd => vec![
            Case::Matmul { m: 4096, n: 320, k: 320, quant: None },
            Case::Matmul { m: 4096, n: 2560, k: 320, quant: None },
            Case::Matmul { m: 4096, n: 2560, k: 320, quant: q8 },
            Case::Matmul { m: 4096, n: 2560, k: 320, quant: q4 },
            Case::Matmul { m: 256, n: 1280, k: 5120, quant: None },
            Case::Conv { n: 1, h: 64, w: 64, cin: 320, cout: 320, k: 3, stride: 1 },
            Case::Conv { n: 1, h: 32, w: 32, cin: 640, cout: 640, k: 3, stride: 1 },
            Case::Conv { n: 1, h: 16, w: 16, cin: 1280, cout: 1280, k: 3, stride: 1 },
            Case::Conv { n: 1, h: 64, w: 64, cin: 320, cout: 320, k: 3, stride: 2 },
            Case::GroupNorm { n: 16, h: 64, w: 64, c: 320, groups: 32 },
            Case::LayerNorm { rows: 16 * 4096, cols: 320 },
            Case::Attention { batch: 1, heads: 8, seq: 4096, head_dim: 40 },
            Case::Attention { batch: 1, heads: 8, seq: 1024, head_dim: 80 },
            Case::Temporal { videos: 1, frames: 16, positions: 4096, heads: 8, head_dim: 40 },
        ],
    }
}

/// Inputs for one case, created once; `record` adds one run to a batch.
struct Prepared {
    tensors: Vec<Tensor>,
    qweight: Option<ops::QuantizedWeight>,
}

fn rand_tensor(gpu: &Gpu, rng: &mut Rng, shape: impl Into<Shape>, dtype: DType) -> GpuResult<Tensor> {
    let shape = shape.into();
    let data = rng.uniform_vec(shape.numel() as usize);
    gpu.upload_f32_as(&data, shape, dtype, "bench")
}

fn prepare(gpu: &Gpu, case: &Case, dtype: DType) -> Result<Prepared, Box<dyn std::error::Error>> {
    let mut rng = Rng::new(7);
    let mut r = |shape: Vec<usize>| rand_tensor(gpu, &mut rng, shape, dtype);
    Ok(match *case {
        Case::Matmul { m, n, k, quant } => {
            let qweight = match quant {
                Some(fmt) => {
                    let w = Rng::new(8).uniform_vec(n * k);
                    Some(ops::QuantizedWeight::upload(gpu, &quant::quantize(&w, k, n, fmt)?, [k, n], "bench.q")?)
                }
                None => None,
            };
            Prepared { tensors: vec![r(vec![m, k])?, r(vec![k, n])?, r(vec![n])?, gpu.empty([m, n], dtype, "bench.y")?], qweight }
        }
        Case::Conv { n, h, w, cin, cout, k, stride } => {
            let cfg = Conv2d { stride: stride as u32, padding: (k / 2) as u32, upsample: false };
            let (ho, wo) = cfg.output_size(h, w, k, k).ok_or("conv size")?;
            Prepared { tensors: vec![r(vec![n, h, w, cin])?, r(vec![k, k, cin, cout])?, r(vec![cout])?, gpu.empty([n, ho, wo, cout], dtype, "bench.y")?], qweight: None }
        }
        Case::GroupNorm { n, h, w, c, .. } => {
            Prepared { tensors: vec![r(vec![n, h, w, c])?, r(vec![c])?, r(vec![c])?, gpu.empty([n, h, w, c], dtype, "bench.y")?], qweight: None }
        }
        Case::LayerNorm { rows, cols } => {
            Prepared { tensors: vec![r(vec![rows, cols])?, r(vec![cols])?, r(vec![cols])?, gpu.empty([rows, cols], dtype, "bench.y")?], qweight: None }
        }
        Case::Attention { batch, heads, seq, head_dim } => {
            let n = batch * seq * heads * head_dim;
            Prepared { tensors: vec![r(vec![n])?, r(vec![n])?, r(vec![n])?, gpu.empty([n], dtype, "bench.o")?], qweight: None }
        }
        Case::Temporal { videos, frames, positions, heads, head_dim } => {
            let n = videos * frames * positions * heads * head_dim;
            Prepared { tensors: vec![r(vec![n])?, r(vec![n])?, r(vec![n])?, gpu.empty([n], dtype, "bench.o")?], qweight: None }
        }
    })
}

fn record(b: &mut Batch<'_>, case: &Case, p: &Prepared) -> GpuResult<()> {
    let t = &p.tensors;
    match *case {
        Case::Matmul { .. } => match &p.qweight {
            Some(q) => ops::linear(b, &t[0], q, Some(&t[2]), &t[3]),
            None => ops::linear(b, &t[0], &t[1], Some(&t[2]), &t[3]),
        },
        Case::Conv { k, stride, .. } => {
            let cfg = Conv2d { stride: stride as u32, padding: (k / 2) as u32, upsample: false };
            ops::conv2d(b, cfg, &t[0], None, &t[1], &t[2], None, &t[3])
        }
        Case::GroupNorm { groups, .. } => {
            let gn = GroupNorm { groups: groups as u32, eps: 1e-6, domain: NormDomain::PerImage, silu: false };
            ops::group_norm(b, gn, &t[0], &t[1], &t[2], &t[3])
        }
        Case::LayerNorm { .. } => ops::layer_norm(b, 1e-5, &t[0], &t[1], &t[2], &t[3]),
        Case::Attention { batch, heads, seq, head_dim } => {
            let l = TokenLayout::rows(seq as u32, (heads * head_dim) as u32);
            attention(b, t, l, batch, heads, head_dim, seq)
        }
        Case::Temporal { videos, frames, positions, heads, head_dim } => {
            let l = TokenLayout::frames(frames as u32, positions as u32, (heads * head_dim) as u32);
            attention(b, t, l, videos * positions, heads, head_dim, frames)
        }
    }
}

fn attention(b: &mut Batch<'_>, t: &[Tensor], l: TokenLayout, sequences: usize, heads: usize, head_dim: usize, len: usize) -> GpuResult<()> {
    let a = ops::Attention {
        sequences: sequences as u32,
        heads: heads as u32,
        head_dim: head_dim as u32,
        q_len: len as u32,
        kv_len: len as u32,
        q_layout: l,
        kv_layout: l,
        kv_div: 1,
        causal: false,
        scale: 1.0 / (head_dim as f32).sqrt(),
    };
    ops::attention(b, &a, &t[0], &t[1], &t[2], &t[3])
}

/// Seconds per run (steady state: after a warm-up run that compiles the pipelines).
fn time_ours(gpu: &Gpu, case: &Case, p: &Prepared, iters: usize) -> GpuResult<f64> {
    let mut b = gpu.batch("bench.warmup");
    record(&mut b, case, p)?;
    b.submit()?;
    pollster::block_on(gpu.sync())?;
    let t0 = Instant::now();
    for _ in 0..iters {
        let mut b = gpu.batch("bench");
        record(&mut b, case, p)?;
        b.submit()?;
    }
    pollster::block_on(gpu.sync())?;
    Ok(t0.elapsed().as_secs_f64() / iters as f64)
}

#[cfg(feature = "burn-peer")]
fn time_peer(peer: &crate::peer::Peer, case: &Case, f16: bool, iters: usize) -> Result<f64, String> {
    match *case {
        Case::Matmul { quant: Some(_), .. } | Case::Temporal { .. } => Err("no equivalent op".into()),
        Case::Matmul { m, n, k, .. } => peer.matmul(m, n, k, f16, iters),
        Case::Conv { n, h, w, cin, cout, k, stride } => peer.conv2d(n, h, w, cin, cout, k, stride, k / 2, f16, iters),
        Case::GroupNorm { n, h, w, c, groups } => peer.group_norm(n, c, h, w, groups, f16, iters),
        Case::LayerNorm { rows, cols } => peer.layer_norm(rows, cols, f16, iters),
        Case::Attention { batch, heads, seq, head_dim } => peer.attention(batch, heads, seq, head_dim, f16, iters),
    }
}

pub fn run(gpu: &Gpu, size: Size, f16: bool, iters: usize, peer: bool, filter: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let dtype = if f16 { DType::F16 } else { DType::F32 };
    if f16 && !gpu.info().shader_f16 {
        return Err("--f16 needs an adapter with shader-f16".into());
    }
    #[cfg(feature = "burn-peer")]
    let peer_dev = if peer {
        let p = crate::peer::Peer::new()?;
        println!("peer: {}", p.describe());
        Some(p)
    } else {
        None
    };
    #[cfg(not(feature = "burn-peer"))]
    if peer {
        return Err("--peer needs a build with `--features burn-peer`".into());
    }
    let iters = iters.max(1);
    println!("{:<44} {:>10} {:>10} {:>9} {:>12} {:>8}", "op", "ms", "GFLOP/s", "GB/s", "peer ms", "ratio");
    for case in cases(size) {
        let name = case.name();
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        gpu.reset_peak_memory();
        let prepared = prepare(gpu, &case, dtype)?;
        let secs = time_ours(gpu, &case, &prepared, iters)?;
        let (flop, bytes) = case.work(if f16 { 2 } else { 4 });
        #[allow(unused_mut)]
        let mut peer_cols = ("-".to_string(), "-".to_string());
        #[cfg(feature = "burn-peer")]
        if let Some(p) = &peer_dev {
            peer_cols = match time_peer(p, &case, f16, iters) {
                Ok(ps) => (format!("{:.2}", ps * 1e3), format!("{:.2}x", ps / secs)),
                Err(e) => (format!("({e})"), "-".into()),
            };
        }
        println!(
            "{name:<44} {:>10.2} {:>10.2} {:>9.2} {:>12} {:>8}   peak {} MiB",
            secs * 1e3,
            flop / secs / 1e9,
            bytes / secs / 1e9,
            peer_cols.0,
            peer_cols.1,
            gpu.memory().peak_bytes >> 20
        );
    }
    println!("ratio = peer time / our time (> 1: we are faster). Times are wall-clock per run incl. submit.");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `animatediff bench quant`: dense vs q8 vs q4 weights in the GEMM kernels on SD1.5 shapes,
// and the cost of quantizing on the GPU at load time.

/// One GEMM shape: a linear `m × n × k` or a 3×3 convolution (stride 1) on `n` images.
#[derive(Debug, Clone, Copy)]
enum QuantCase {
    Linear { m: usize, n: usize, k: usize },
    Conv { n: usize, h: usize, w: usize, cin: usize, cout: usize },
}

impl QuantCase {
    fn name(&self) -> String {
        match *self {
            QuantCase::Linear { m, n, k } => format!("linear {m}x{n}x{k}"),
            QuantCase::Conv { n, h, w, cin, cout } => format!("conv3x3 {n}x{h}x{w}x{cin}->{cout}"),
        }
    }

    /// (K, N) of the weight.
    fn kn(&self) -> (usize, usize) {
        match *self {
            QuantCase::Linear { n, k, .. } => (k, n),
            QuantCase::Conv { cin, cout, .. } => (9 * cin, cout),
        }
    }

    fn flops(&self) -> f64 {
        match *self {
            QuantCase::Linear { m, n, k } => 2.0 * (m * n * k) as f64,
            QuantCase::Conv { n, h, w, cin, cout } => 2.0 * (n * h * w * cout * 9 * cin) as f64,
        }
    }

    fn weight_shape(&self) -> Vec<usize> {
        match *self {
            QuantCase::Linear { n, k, .. } => vec![k, n],
            QuantCase::Conv { cin, cout, .. } => vec![3, 3, cin, cout],
        }
    }
}

fn quant_cases(size: Size) -> Vec<QuantCase> {
    use QuantCase::{Conv, Linear};
    match size {
        Size::Small => vec![
            Linear { m: 1024, n: 320, k: 320 },
            Linear { m: 1024, n: 1280, k: 320 },
            Linear { m: 256, n: 320, k: 1280 },
            Conv { n: 1, h: 32, w: 32, cin: 320, cout: 320 },
            Conv { n: 1, h: 8, w: 8, cin: 640, cout: 640 },
        ],
        // 512×512 latents (64×64), one image per call; the GEGLU projection half and the
        // feed-forward output, attention projections per level, ResNet convolutions per level.
        Size::Sd => vec![
            Linear { m: 4096, n: 320, k: 320 },
            Linear { m: 4096, n: 2560, k: 320 },
            Linear { m: 4096, n: 320, k: 1280 },
            Linear { m: 1024, n: 640, k: 640 },
            Linear { m: 256, n: 1280, k: 1280 },
            Linear { m: 256, n: 1280, k: 5120 },
            Linear { m: 64, n: 1280, k: 1280 },
            Conv { n: 1, h: 64, w: 64, cin: 320, cout: 320 },
            Conv { n: 1, h: 32, w: 32, cin: 640, cout: 640 },
            Conv { n: 1, h: 16, w: 16, cin: 1280, cout: 1280 },
            Conv { n: 1, h: 8, w: 8, cin: 2560, cout: 1280 },
        ],
    }
}

/// Seconds per run of `record` (after a warm-up run).
fn time_runs(gpu: &Gpu, iters: usize, record: &dyn Fn(&mut Batch<'_>) -> GpuResult<()>) -> GpuResult<f64> {
    let mut b = gpu.batch("bench.warmup");
    record(&mut b)?;
    b.submit()?;
    pollster::block_on(gpu.sync())?;
    let t0 = Instant::now();
    for _ in 0..iters {
        let mut b = gpu.batch("bench");
        record(&mut b)?;
        b.submit()?;
    }
    pollster::block_on(gpu.sync())?;
    Ok(t0.elapsed().as_secs_f64() / iters as f64)
}

pub fn run_quant(gpu: &Gpu, size: Size, f16: bool, iters: usize) -> Result<(), Box<dyn std::error::Error>> {
    use animatediff_wgpu::model::quant_policy::QuantPolicy;
    let dtype = if f16 { DType::F16 } else { DType::F32 };
    if f16 && !gpu.info().shader_f16 {
        return Err("--f16 needs an adapter with shader-f16".into());
    }
    let iters = iters.max(1);
    let formats = [("q8", QuantPolicy::Q8_FORMAT), ("q4", QuantPolicy::Q4_FORMAT)];
    println!(
        "{:<34} {:>6} {:>9} {:>9} {:>10} {:>8} {:>12}",
        "op", "weight", "ms", "TFLOP/s", "weight MiB", "vs dense", "quantize ms"
    );
    for case in quant_cases(size) {
        let mut rng = Rng::new(7);
        let (k, n) = case.kn();
        let (x, y) = match case {
            QuantCase::Linear { m, .. } => (rand_tensor(gpu, &mut rng, [m, k], dtype)?, gpu.empty([m, n], dtype, "bench.y")?),
            QuantCase::Conv { n: imgs, h, w, cin, cout } => {
                (rand_tensor(gpu, &mut rng, [imgs, h, w, cin], dtype)?, gpu.empty([imgs, h, w, cout], dtype, "bench.y")?)
            }
        };
        let bias = rand_tensor(gpu, &mut rng, [n], dtype)?;
        let w_kn: Vec<f32> = Rng::new(8).uniform_vec(k * n).iter().map(|v| v * 0.05).collect();
        let dense = gpu.upload_f32_as(&w_kn, case.weight_shape(), dtype, "bench.w")?;
        let run = |b: &mut Batch<'_>, w: ops::WeightRef<'_>| -> GpuResult<()> {
            match case {
                QuantCase::Linear { .. } => ops::linear(b, &x, w, Some(&bias), &y),
                QuantCase::Conv { .. } => ops::conv2d(b, Conv2d::SAME_3X3, &x, None, w, &bias, None, &y),
            }
        };
        let t_dense = time_runs(gpu, iters, &|b| run(b, ops::WeightRef::Dense(&dense)))?;
        let row = |label: &str, secs: f64, bytes: u64, quant_ms: Option<f64>| {
            println!(
                "{:<34} {label:>6} {:>9.3} {:>9.3} {:>10.2} {:>7.2}x {:>12}",
                case.name(),
                secs * 1e3,
                case.flops() / secs / 1e12,
                bytes as f64 / (1 << 20) as f64,
                t_dense / secs,
                quant_ms.map_or("-".into(), |ms| format!("{ms:.3}"))
            )
        };
        row(dtype.name(), t_dense, dense.size_bytes(), None);
        // The load-time quantizer reads f32 weights.
        let w32 = gpu.upload_f32(&w_kn, case.weight_shape(), "bench.w32")?;
        for (label, base) in formats {
            let group = animatediff_wgpu::model::quant_policy::fit_group(base.group, k).ok_or("no group fits K")?;
            let fmt = QuantFormat { group, ..base };
            let t_quantize = time_runs(gpu, iters, &|b| ops::quantize_weight(b, &w32, fmt, "bench.q").map(|_| ()))?;
            let q = ops::QuantizedWeight::upload(gpu, &quant::quantize(&w_kn, k, n, fmt)?, case.weight_shape(), "bench.q")?;
            let bytes = q.words.size_bytes() + q.scales.size_bytes() + q.mins.as_ref().map_or(0, |m| m.size_bytes());
            let secs = time_runs(gpu, iters, &|b| run(b, ops::WeightRef::Quant(&q)))?;
            row(label, secs, bytes, Some(t_quantize * 1e3));
        }
    }
    println!("vs dense = dense time / this time (> 1: faster). quantize ms = the GPU quantize kernel on this weight (load-time cost).");
    Ok(())
}

/// `bench unet --random-weights`: full-size SD1.5 UNet + v2 motion modules with random weights
/// created tensor by tensor (no download), then timed denoising steps.
pub mod unet {
    use std::time::Instant;

    use animatediff_wgpu::gpu::{DType, Gpu};
    use animatediff_wgpu::load::random::RandomWeights;
    use animatediff_wgpu::model::quant_policy::QuantPolicy;
    use animatediff_wgpu::model::{UNet, UNetOptions};
    use animatediff_wgpu::pipeline::load::Weights;
    use animatediff_wgpu::plan::{self, Request};

    #[allow(clippy::too_many_arguments)]
    pub fn run(gpu: &Gpu, frames: usize, width: usize, height: usize, weights: Weights, f16: bool, steps: usize, profile: bool) -> Result<(), Box<dyn std::error::Error>> {
        let dtype = if f16 && gpu.info().shader_f16 { DType::F16 } else { DType::F32 };
        let req = Request { frames, width, height, ..Request::sd15(frames, width, height, dtype, weights) };
        let src = RandomWeights::new(plan::unet_tensors(&req.unet, req.motion.as_ref()));
        let policy = weights.scheme().map(QuantPolicy::new);
        let motion = req.motion.clone().ok_or("no motion config")?;
        let t = Instant::now();
        let unet = UNet::load_quantized(gpu, &src, &req.unet, Some((&src, &motion)), dtype, policy.as_ref())?;
        let weight_bytes = gpu.memory().live_bytes;
        println!("UNet + motion modules ({} tensors, {weights:?} weights, {dtype} activations): {:.1} MiB on the device, created in {:.1} s", src.len(), weight_bytes as f64 / (1 << 20) as f64, t.elapsed().as_secs_f64());
        // One denoising step with CFG = one UNet call on 2 videos.
        let (h, w) = (height / 8, width / 8);
        let sample = gpu.upload_f32_as(&vec![0.1; 2 * frames * h * w * 4], [2 * frames, h, w, 4], dtype, "bench.sample")?;
        let context = gpu.upload_f32_as(&vec![0.01; 2 * 77 * req.unet.cross_attention_dim], [2, 77, req.unet.cross_attention_dim], dtype, "bench.context")?;
        let flops = plan::unet_flops(&req, 2);
        let opts = UNetOptions::default();
        let mut times = Vec::new();
        gpu.reset_peak_memory();
        for i in 0..steps + 1 {
            let t = Instant::now();
            let eps = unet.forward(gpu, &sample, 999.0 - i as f32, &context, frames, &opts)?;
            pollster::block_on(gpu.read_f32(&eps.slice_units(0, 1, eps.dims()[0] as u64).ok_or("slice")?))?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if i > 0 {
                times.push(ms);
            } else {
                println!("warm-up step (pipeline compilation): {ms:.1} ms");
            }
        }
        let ms = times.iter().sum::<f64>() / times.len().max(1) as f64;
        let peak = gpu.memory().peak_bytes;
        println!(
            "{frames} frames {width}×{height}, CFG (batch {}): {ms:.1} ms/step, {:.3} TFLOP/step → {:.3} TFLOP/s; peak GPU memory {:.1} MiB (weights {:.1} MiB)",
            2 * frames,
            flops / 1e12,
            flops / (ms / 1e3) / 1e12,
            peak as f64 / (1 << 20) as f64,
            weight_bytes as f64 / (1 << 20) as f64
        );
        if profile {
            // One more step with pass timestamps (they add a little overhead per dispatch).
            gpu.start_profile()?;
            let eps = unet.forward(gpu, &sample, 999.0, &context, frames, &opts)?;
            pollster::block_on(gpu.read_f32(&eps.slice_units(0, 1, eps.dims()[0] as u64).ok_or("slice")?))?;
            print!("{}", super::profile_table("one step", &pollster::block_on(gpu.take_profile())?));
        }
        Ok(())
    }
}

/// GPU time per kernel of a profile (`Gpu::take_profile`), most first, as a table.
pub fn profile_table(what: &str, times: &[animatediff_wgpu::gpu::KernelTime]) -> String {
    use std::fmt::Write;
    let total: f64 = times.iter().map(|t| t.nanoseconds).sum();
    let dispatches: u64 = times.iter().map(|t| t.dispatches).sum();
    let mut out = format!("GPU time per kernel ({what}, pass timestamps): {:.1} ms in {dispatches} dispatches\n", total / 1e6);
    let _ = writeln!(out, "{:<28} {:>10} {:>10} {:>7}", "kernel", "dispatches", "ms", "%");
    for t in times {
        let _ = writeln!(out, "{:<28} {:>10} {:>10.2} {:>6.1}%", t.name, t.dispatches, t.nanoseconds / 1e6, 100.0 * t.nanoseconds / total.max(1.0));
    }
    out
}
