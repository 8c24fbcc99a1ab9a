//! Layers shared by every network: weights fetched by diffusers name from a
//! [`WeightSource`], converted to the kernels' layouts (K-major GEMM weights) and uploaded in
//! the model's storage type; plus the forward helpers that allocate outputs.

use crate::gpu::{Batch, DType, Gpu, Tensor};
use crate::load::{expect_tensor, WeightSource};
use super::offload::{DeviceWeight, Recorder, Replay};
use super::quant_policy::QuantPolicy;
use crate::ops::{self, Attention, Conv2d, Epilogue, GroupNorm, NormDomain, QuantizedWeight, TokenLayout, WeightRef};
use crate::Result;

/// Loads the weights under one name prefix (`down_blocks.0.resnets.1.` …).
#[derive(Clone, Copy)]
pub struct Loader<'a> {
    pub gpu: &'a Gpu,
    pub src: &'a dyn WeightSource,
    /// Storage type of weights and activations (F32 or F16).
    pub dtype: DType,
    /// Quantize GEMM weights on load per this policy (packed weights in the source are used
    /// whatever it says).
    pub quant: Option<&'a QuantPolicy>,
    /// Every device weight created is also pushed here ([`super::offload`]).
    pub(crate) record: Option<&'a Recorder>,
    /// Device weights come from these host copies, in order, instead of the source.
    pub(crate) replay: Option<&'a Replay>,
    prefix: &'a str,
}

/// Owned prefix storage for nested loaders (keeps [`Loader`] `Copy`).
pub struct Prefix(String);

impl<'a> Loader<'a> {
    pub fn new(gpu: &'a Gpu, src: &'a dyn WeightSource, dtype: DType) -> Loader<'a> {
        Loader { gpu, src, dtype, quant: None, record: None, replay: None, prefix: "" }
    }

    /// The same loader, recording every device weight it creates into `rec`.
    pub fn recording(self, rec: &'a Recorder) -> Loader<'a> {
        Loader { record: Some(rec), ..self }
    }

    /// The same loader, taking every device weight from `replay` (a host copy of what a
    /// recording loader created for the same model) instead of its source.
    pub fn replaying(self, replay: &'a Replay) -> Loader<'a> {
        Loader { replay: Some(replay), ..self }
    }

    /// The same loader quantizing GEMM weights per `policy` (see [`super::quant_policy`]).
    pub fn with_quant(self, policy: Option<&'a QuantPolicy>) -> Loader<'a> {
        Loader { quant: policy, ..self }
    }

    /// The prefix for a child module `name` (use with [`Loader::at`]).
    pub fn child(&self, name: &str) -> Prefix {
        Prefix(format!("{}{name}.", self.prefix))
    }

    /// A loader for the child whose prefix `p` came from [`Loader::child`].
    pub fn at<'b>(&self, p: &'b Prefix) -> Loader<'b>
    where
        'a: 'b,
    {
        Loader { gpu: self.gpu, src: self.src, dtype: self.dtype, quant: self.quant, record: self.record, replay: self.replay, prefix: &p.0 }
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.src.contains(&self.key(name))
    }

    /// The tensor `name` (shape-checked) as f32 on the host.
    pub fn host(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        Ok(expect_tensor(self.src, &self.key(name), shape)?.data)
    }

    /// Upload host data in the loader's storage type (a replaying loader uploads its next
    /// host copy instead).
    pub fn upload(&self, data: &[f32], shape: &[usize], label: &str) -> Result<Tensor> {
        if let Some(r) = self.replay {
            return r.dense(self.gpu, shape, self.dtype);
        }
        let t = self.gpu.upload_weight_f32_as(data, shape.to_vec(), self.dtype, label)?;
        if let Some(rec) = self.record {
            rec.push(DeviceWeight::Dense(t.clone()));
        }
        Ok(t)
    }

    /// The tensor `name` (shape-checked) uploaded in the loader's storage type.
    pub fn dense(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if let Some(r) = self.replay {
            return r.dense(self.gpu, shape, self.dtype);
        }
        let data = self.host(name, shape)?;
        self.upload(&data, shape, &self.key(name))
    }

    /// A tensor uploaded as stored (vectors: biases, norm parameters).
    pub fn vector(&self, name: &str, len: usize) -> Result<Tensor> {
        self.dense(name, &[len])
    }

    /// `nn.Linear(inp, out)` (torch weight `[out, in]`), stored `[in, out]`.
    pub fn linear(&self, name: &str, inp: usize, out: usize, bias: bool) -> Result<Linear> {
        self.linear_with(name, inp, out, bias, || self.host(&format!("{name}.weight"), &[out, inp]))
    }

    /// A 1×1 `nn.Conv2d(inp, out)` (weight `[out, in, 1, 1]`) used as a linear layer on
    /// channels-last activations. Also accepts a `[out, in]` weight (LDM files sometimes
    /// store VAE attention projections either way).
    pub fn pointwise(&self, name: &str, inp: usize, out: usize) -> Result<Linear> {
        let key = format!("{name}.weight");
        let shape = self.src.shape(&self.key(&key));
        self.linear_with(name, inp, out, true, || if shape.as_deref() == Some(&[out, inp][..]) { self.host(&key, &[out, inp]) } else { self.host(&key, &[out, inp, 1, 1]) })
    }

    fn linear_with(&self, name: &str, inp: usize, out: usize, bias: bool, torch: impl FnOnce() -> Result<Vec<f32>>) -> Result<Linear> {
        let w = self.gemm_weight(name, &[inp, out], || ops::linear_weight_from_torch(&torch()?, out, inp).ok_or_else(|| crate::Error::input(self.key(name), "weight size")))?;
        let b = if bias { Some(self.vector(&format!("{name}.bias"), out)?) } else { None };
        Ok(Linear { w, b, inp, out })
    }

    /// `nn.Conv2d(cin, cout, k)` with bias, stored `[k, k, cin, cout]`.
    pub fn conv(&self, name: &str, cin: usize, cout: usize, k: usize) -> Result<Conv> {
        let w = self.gemm_weight(name, &[k, k, cin, cout], || {
            let w = self.host(&format!("{name}.weight"), &[cout, cin, k, k])?;
            ops::conv_weight_from_torch(&w, cout, cin, k, k).ok_or_else(|| crate::Error::input(self.key(name), "weight size"))
        })?;
        let b = self.vector(&format!("{name}.bias"), cout)?;
        Ok(Conv { w, b, cout })
    }

    /// A GEMM weight in kernel layout: packed from a quantized file, quantized on the GPU
    /// per [`Loader::quant`], or dense ([`super::quant_policy::load_gemm_weight`]).
    fn gemm_weight(&self, name: &str, kshape: &[usize], kmajor: impl FnOnce() -> Result<Vec<f32>>) -> Result<Weight> {
        super::quant_policy::load_gemm_weight(self, name, kshape, kmajor)
    }

    /// GroupNorm / LayerNorm affine parameters.
    pub fn norm(&self, name: &str, c: usize) -> Result<Norm> {
        Ok(Norm { gamma: self.vector(&format!("{name}.weight"), c)?, beta: self.vector(&format!("{name}.bias"), c)? })
    }
}

/// Allocate an activation tensor.
pub fn alloc(gpu: &Gpu, dims: &[usize], dtype: DType, label: &str) -> Result<Tensor> {
    Ok(gpu.empty(dims.to_vec(), dtype, label)?)
}

/// `dims` with the last dimension replaced.
fn with_last(dims: &[usize], last: usize) -> Vec<usize> {
    let mut d = dims.to_vec();
    if let Some(l) = d.last_mut() {
        *l = last;
    }
    d
}

/// A GEMM weight (linear `[in, out]` or conv `[KH, KW, Cin, Cout]`): dense in the model's
/// storage type, or quantized (dequantized inside the kernels).
pub enum Weight {
    Dense(Tensor),
    Quant(QuantizedWeight),
}

impl Weight {
    pub fn dims(&self) -> &[usize] {
        self.as_ref().dims()
    }

    pub fn as_ref(&self) -> WeightRef<'_> {
        match self {
            Weight::Dense(t) => WeightRef::Dense(t),
            Weight::Quant(q) => WeightRef::Quant(q),
        }
    }
}

impl<'a> From<&'a Weight> for WeightRef<'a> {
    fn from(w: &'a Weight) -> WeightRef<'a> {
        w.as_ref()
    }
}

pub struct Linear {
    pub w: Weight,
    pub b: Option<Tensor>,
    pub inp: usize,
    pub out: usize,
}

impl Linear {
    /// `y = x·W + b (+ residual)`.
    pub fn run(&self, bt: &mut Batch<'_>, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let y = alloc(bt.gpu(), &with_last(x.dims(), self.out), x.dtype(), "linear")?;
        ops::linear_ex(bt, x, &self.w, self.b.as_ref(), &y, Epilogue { residual, ..Default::default() })?;
        Ok(y)
    }

    /// GEGLU projection: the weight holds `[value; gate]`, output `value·gelu(gate)`.
    pub fn run_geglu(&self, bt: &mut Batch<'_>, x: &Tensor) -> Result<Tensor> {
        let y = alloc(bt.gpu(), &with_last(x.dims(), self.out / 2), x.dtype(), "geglu")?;
        ops::linear_ex(bt, x, &self.w, self.b.as_ref(), &y, Epilogue { geglu: true, ..Default::default() })?;
        Ok(y)
    }
}

pub struct Conv {
    pub w: Weight,
    pub b: Tensor,
    pub cout: usize,
}

impl Conv {
    /// Convolution of channels-last `x [N, H, W, C]` (optionally `cat(x, x2)` read
    /// virtually) with an optional fused residual.
    pub fn run(&self, bt: &mut Batch<'_>, cfg: Conv2d, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let d = x.dims();
        let (kh, kw) = (self.w.dims()[0], self.w.dims()[1]);
        let (h, w) = (d.get(1).copied().unwrap_or(0), d.get(2).copied().unwrap_or(0));
        let (ho, wo) = cfg.output_size(h, w, kh, kw).ok_or_else(|| crate::Error::input("image size", format!("{h}×{w} is too small for a {kh}×{kw} convolution")))?;
        let y = alloc(bt.gpu(), &[d[0], ho, wo, self.cout], x.dtype(), "conv")?;
        ops::conv2d(bt, cfg, x, None, &self.w, &self.b, residual, &y)?;
        Ok(y)
    }
}

pub struct Norm {
    pub gamma: Tensor,
    pub beta: Tensor,
}

impl Norm {
    pub fn group(&self, bt: &mut Batch<'_>, groups: usize, eps: f32, domain: NormDomain, silu: bool, x: &Tensor) -> Result<Tensor> {
        let y = alloc(bt.gpu(), x.dims(), x.dtype(), "group_norm")?;
        ops::group_norm(bt, GroupNorm { groups: groups as u32, eps, domain, silu }, x, &self.gamma, &self.beta, &y)?;
        Ok(y)
    }

    pub fn layer(&self, bt: &mut Batch<'_>, eps: f32, x: &Tensor) -> Result<Tensor> {
        let y = alloc(bt.gpu(), x.dims(), x.dtype(), "layer_norm")?;
        ops::layer_norm(bt, eps, x, &self.gamma, &self.beta, &y)?;
        Ok(y)
    }
}

/// diffusers `Attention` (also CLIP's and the VAE's): separate q/k/v projections, `heads`
/// heads, output projection with bias and a fused residual.
pub struct MultiHeadAttention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Linear,
    pub heads: usize,
}

/// How the tokens of a [`MultiHeadAttention`] call are arranged.
#[derive(Debug, Clone, Copy)]
pub enum Tokens {
    /// `[S, T, C]` rows: self-attention within each sequence (`causal` for CLIP).
    Rows { causal: bool },
    /// Frame-major `[B·F, P, C]`: attention over the `frames` of each spatial position.
    Frames { frames: usize },
}

impl MultiHeadAttention {
    /// diffusers naming: `to_q`, `to_k`, `to_v` (bias optional), `to_out.0` (bias).
    pub fn load(l: &Loader<'_>, dim: usize, kv_dim: usize, heads: usize, qkv_bias: bool) -> Result<MultiHeadAttention> {
        Ok(MultiHeadAttention {
            to_q: l.linear("to_q", dim, dim, qkv_bias)?,
            to_k: l.linear("to_k", kv_dim, dim, qkv_bias)?,
            to_v: l.linear("to_v", kv_dim, dim, qkv_bias)?,
            to_out: l.linear("to_out.0", dim, dim, true)?,
            heads,
        })
    }

    fn head_dim(&self) -> usize {
        self.to_q.out / self.heads.max(1)
    }

    /// Self-attention over `x [S, T, C]` (or frame-major for [`Tokens::Frames`]);
    /// returns `to_out(attn) + residual`.
    pub fn self_attention(&self, bt: &mut Batch<'_>, x: &Tensor, tokens: Tokens, residual: Option<&Tensor>) -> Result<Tensor> {
        self.self_attention_scaled(bt, x, tokens, residual, 1.0)
    }

    /// [`MultiHeadAttention::self_attention`] with the softmax scale multiplied by
    /// `score_scale` (= scaling K, the motion modules' "motion scale").
    pub fn self_attention_scaled(&self, bt: &mut Batch<'_>, x: &Tensor, tokens: Tokens, residual: Option<&Tensor>, score_scale: f32) -> Result<Tensor> {
        let q = self.to_q.run(bt, x, None)?;
        let k = self.to_k.run(bt, x, None)?;
        let v = self.to_v.run(bt, x, None)?;
        let d = x.dims();
        let c = self.to_q.out as u32;
        let n = x.numel() as usize / (self.to_q.inp.max(1));
        let a = match tokens {
            Tokens::Rows { causal } => {
                let t = *d.get(d.len().wrapping_sub(2)).unwrap_or(&1);
                let seqs = n / t.max(1);
                let layout = TokenLayout::rows(t as u32, c);
                self.problem(seqs, t, t, layout, layout, 1, causal)
            }
            Tokens::Frames { frames } => {
                // x is [B·F, P(, ..), C]: n rows over d[0] images.
                let positions = n / d[0].max(1);
                let videos = d[0] / frames.max(1);
                let layout = TokenLayout::frames(frames as u32, positions as u32, c);
                self.problem(videos * positions, frames, frames, layout, layout, 1, false)
            }
        };
        let a = Attention { scale: a.scale * score_scale, ..a };
        let o = alloc(bt.gpu(), q.dims(), q.dtype(), "attention")?;
        ops::attention(bt, &a, &q, &k, &v, &o)?;
        drop((q, k, v));
        bt.release();
        self.to_out.run(bt, &o, residual)
    }

    /// Cross-attention of `x [S, T, C]` to `context [S / kv_div, L, D]`.
    pub fn cross_attention(&self, bt: &mut Batch<'_>, x: &Tensor, context: &Tensor, kv_div: usize, residual: Option<&Tensor>) -> Result<Tensor> {
        let q = self.to_q.run(bt, x, None)?;
        let k = self.to_k.run(bt, context, None)?;
        let v = self.to_v.run(bt, context, None)?;
        let (xd, cd) = (x.dims(), context.dims());
        let c = self.to_q.out as u32;
        let t = xd[xd.len() - 2];
        let l = cd[cd.len() - 2];
        let seqs = x.numel() as usize / self.to_q.inp / t;
        let a = self.problem(seqs, t, l, TokenLayout::rows(t as u32, c), TokenLayout::rows(l as u32, c), kv_div, false);
        let o = alloc(bt.gpu(), q.dims(), q.dtype(), "attention")?;
        ops::attention(bt, &a, &q, &k, &v, &o)?;
        drop((q, k, v));
        bt.release();
        self.to_out.run(bt, &o, residual)
    }

    #[allow(clippy::too_many_arguments)]
    fn problem(&self, seqs: usize, q_len: usize, kv_len: usize, ql: TokenLayout, kvl: TokenLayout, kv_div: usize, causal: bool) -> Attention {
        let hd = self.head_dim();
        Attention {
            sequences: seqs as u32,
            heads: self.heads as u32,
            head_dim: hd as u32,
            q_len: q_len as u32,
            kv_len: kv_len as u32,
            q_layout: ql,
            kv_layout: kvl,
            kv_div: kv_div as u32,
            causal,
            scale: 1.0 / (hd as f32).sqrt(),
        }
    }
}

/// diffusers `FeedForward(dim, activation_fn="geglu", mult=4)`: `net.0.proj` (dim → 8·dim,
/// `[value; gate]`), `net.2` (4·dim → dim).
pub struct GegluFeedForward {
    pub proj: Linear,
    pub out: Linear,
}

impl GegluFeedForward {
    pub fn load(l: &Loader<'_>, dim: usize) -> Result<GegluFeedForward> {
        let inner = dim * 4;
        Ok(GegluFeedForward { proj: l.linear("net.0.proj", dim, inner * 2, true)?, out: l.linear("net.2", inner, dim, true)? })
    }

    /// `net.2(value·gelu(gate)) + residual`. When the `[tokens, 4·dim]` intermediate exceeds
    /// the device's [`crate::gpu::MemoryStats::ff_chunk_bytes`], the tokens run in chunks
    /// through one reused intermediate buffer (every token is independent: same results;
    /// the dispatches of one batch are ordered, so reusing the buffer is safe).
    pub fn run(&self, bt: &mut Batch<'_>, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let (dim, inner) = (self.out.out, self.out.inp);
        let rows = x.numel() as usize / dim.max(1);
        let cap = bt.gpu().memory_stats().ff_chunk_bytes();
        let chunk = ff_chunk_rows(rows, x.dtype().storage_bytes(dim as u64), x.dtype().storage_bytes(inner as u64), cap);
        if chunk >= rows {
            let h = self.proj.run_geglu(bt, x)?;
            return self.out.run(bt, &h, Some(residual));
        }
        let h = alloc(bt.gpu(), &[chunk, inner], x.dtype(), "geglu")?;
        let y = alloc(bt.gpu(), &with_last(x.dims(), dim), x.dtype(), "linear")?;
        let slice = |t: &Tensor, at: usize, n: usize, units: usize| {
            t.slice_units(at as u64, n as u64, units as u64).ok_or_else(|| crate::Error::input("feed-forward chunk", format!("rows {at}..{} of {t:?}", at + n)))
        };
        let mut at = 0;
        while at < rows {
            let n = chunk.min(rows - at);
            let hc = slice(&h, 0, n, chunk)?;
            ops::linear_ex(bt, &slice(x, at, n, rows)?, &self.proj.w, self.proj.b.as_ref(), &hc, Epilogue { geglu: true, ..Default::default() })?;
            let r = slice(residual, at, n, rows)?;
            ops::linear_ex(bt, &hc, &self.out.w, self.out.b.as_ref(), &slice(&y, at, n, rows)?, Epilogue { residual: Some(&r), ..Default::default() })?;
            at += n;
        }
        Ok(y)
    }
}

/// Tokens per chunk of a GEGLU feed-forward whose intermediate (`h_row_bytes` a token) must
/// stay within `cap` bytes: a multiple of the token count that keeps `x_row_bytes`-wide row
/// slices [`crate::gpu::TENSOR_ALIGN`]ed; `rows` (one piece) when `cap` is 0 or already met.
/// The memory plan sizes the same chunks.
pub fn ff_chunk_rows(rows: usize, x_row_bytes: u64, h_row_bytes: u64, cap: u64) -> usize {
    if cap == 0 || rows as u64 * h_row_bytes <= cap {
        return rows;
    }
    let a = crate::gpu::TENSOR_ALIGN;
    let align = (a / crate::ops::util::gcd(x_row_bytes.max(1), a)) as usize;
    let fit = (cap / h_row_bytes.max(1)) as usize;
    (fit / align * align).max(align).min(rows)
}

/// Host-side layout helpers between PyTorch's channels-first tensors and the GPU's
/// channels-last activations.
pub mod layout {
    /// `[N, C, H, W]` → `[N, H, W, C]`.
    pub fn nchw_to_nhwc(x: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
        let mut y = vec![0.0; x.len()];
        for ni in 0..n {
            for ci in 0..c {
                for p in 0..h * w {
                    y[(ni * h * w + p) * c + ci] = x[(ni * c + ci) * h * w + p];
                }
            }
        }
        y
    }

    /// `[N, H, W, C]` → `[N, C, H, W]`.
    pub fn nhwc_to_nchw(x: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
        let mut y = vec![0.0; x.len()];
        for ni in 0..n {
            for ci in 0..c {
                for p in 0..h * w {
                    y[(ni * c + ci) * h * w + p] = x[(ni * h * w + p) * c + ci];
                }
            }
        }
        y
    }

    /// Video latents `[B, C, F, H, W]` (diffusers' layout) → `[B·F, H, W, C]`.
    pub fn bcfhw_to_nhwc(x: &[f32], b: usize, c: usize, f: usize, h: usize, w: usize) -> Vec<f32> {
        let mut y = vec![0.0; x.len()];
        for bi in 0..b {
            for ci in 0..c {
                for fi in 0..f {
                    for p in 0..h * w {
                        y[((bi * f + fi) * h * w + p) * c + ci] = x[((bi * c + ci) * f + fi) * h * w + p];
                    }
                }
            }
        }
        y
    }

    /// `[B·F, H, W, C]` → `[B, C, F, H, W]`.
    pub fn nhwc_to_bcfhw(x: &[f32], b: usize, c: usize, f: usize, h: usize, w: usize) -> Vec<f32> {
        let mut y = vec![0.0; x.len()];
        for bi in 0..b {
            for ci in 0..c {
                for fi in 0..f {
                    for p in 0..h * w {
                        y[((bi * c + ci) * f + fi) * h * w + p] = x[((bi * f + fi) * h * w + p) * c + ci];
                    }
                }
            }
        }
        y
    }
}
