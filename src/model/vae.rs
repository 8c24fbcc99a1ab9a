//! diffusers `AutoencoderKL` decoder (and encoder): channels-last, one image per row of the
//! batch. AnimateDiff decodes frame by frame, so every op here works per image; run it in
//! f32 (fp16 VAEs produce NaNs/black frames).

use super::config::VaeConfig;
use super::nn::{alloc, Conv, Linear, Loader, MultiHeadAttention, Norm, Tokens};
use super::resnet::ResnetBlock2D;
use crate::cancel::{self, CancelCheck};
use crate::gpu::{Batch, DType, Gpu, Tensor};
use crate::load::WeightSource;
use crate::ops::{self, Conv2d, NormDomain};
use crate::{Error, Result};

const EPS: f32 = 1e-6;

/// GN → single-head attention over all pixels → `to_out` + input.
struct VaeAttention {
    group_norm: Norm,
    attn: MultiHeadAttention,
}

impl VaeAttention {
    fn load(l: &Loader<'_>, c: usize) -> Result<VaeAttention> {
        Ok(VaeAttention {
            group_norm: l.norm("group_norm", c)?,
            attn: MultiHeadAttention {
                to_q: l.pointwise("to_q", c, c)?,
                to_k: l.pointwise("to_k", c, c)?,
                to_v: l.pointwise("to_v", c, c)?,
                to_out: l.pointwise("to_out.0", c, c)?,
                heads: 1,
            },
        })
    }

    fn forward(&self, bt: &mut Batch<'_>, x: &Tensor, groups: usize) -> Result<Tensor> {
        let d = x.dims().to_vec();
        let tokens = vec![d[0], d[1] * d[2], d[3]];
        let h = self.group_norm.group(bt, groups, EPS, NormDomain::PerImage, false, x)?;
        let h = h.reshape(tokens.clone()).ok_or_else(|| Error::input("vae attention", "reshape"))?;
        let r = x.reshape(tokens).ok_or_else(|| Error::input("vae attention", "reshape"))?;
        let y = self.attn.self_attention(bt, &h, Tokens::Rows { causal: false }, Some(&r))?;
        y.reshape(d).ok_or_else(|| Error::input("vae attention", "reshape"))
    }
}

struct Mid {
    resnets: [ResnetBlock2D; 2],
    attention: VaeAttention,
}

impl Mid {
    fn load(l: &Loader<'_>, c: usize, groups: usize) -> Result<Mid> {
        let (r0, r1, a) = (l.child("resnets.0"), l.child("resnets.1"), l.child("attentions.0"));
        Ok(Mid {
            resnets: [ResnetBlock2D::load(&l.at(&r0), c, c, None, groups, EPS)?, ResnetBlock2D::load(&l.at(&r1), c, c, None, groups, EPS)?],
            attention: VaeAttention::load(&l.at(&a), c)?,
        })
    }

    fn forward(&self, bt: &mut Batch<'_>, x: &Tensor, groups: usize) -> Result<Tensor> {
        let x = self.resnets[0].forward(bt, x, None, NormDomain::PerImage)?;
        let x = self.attention.forward(bt, &x, groups)?;
        self.resnets[1].forward(bt, &x, None, NormDomain::PerImage)
    }
}

struct UpDecoderBlock {
    resnets: Vec<ResnetBlock2D>,
    upsampler: Option<Conv>,
}

pub struct Decoder {
    cfg: VaeConfig,
    /// Storage type of weights and activations (f32; f16 as a memory lever).
    dtype: DType,
    post_quant_conv: Linear,
    conv_in: Conv,
    mid: Mid,
    up: Vec<UpDecoderBlock>,
    conv_norm_out: Norm,
    conv_out: Conv,
}

impl Decoder {
    /// `post_quant_conv` + `decoder.*` of an AutoencoderKL (diffusers names), in f32.
    pub fn load(gpu: &Gpu, src: &dyn WeightSource, cfg: &VaeConfig) -> Result<Decoder> {
        Decoder::build(&Loader::new(gpu, src, DType::F32), cfg)
    }

    /// The decoder from `root` in its storage type: f32, or f16 (weights and activations, f32
    /// accumulation; the f16 memory lever) — or a replay of an offloaded copy.
    pub fn build(root: &Loader<'_>, cfg: &VaeConfig) -> Result<Decoder> {
        let dp = root.child("decoder");
        let l = root.at(&dp);
        let boc = &cfg.block_out_channels;
        let levels = boc.len();
        if levels == 0 {
            return Err(Error::input("VAE config", "no blocks"));
        }
        let g = cfg.norm_num_groups;
        let top = boc[levels - 1];
        let mp = l.child("mid_block");
        let rev: Vec<usize> = boc.iter().rev().copied().collect();
        let mut up = Vec::with_capacity(levels);
        let mut out_ch = rev[0];
        for (i, &level_ch) in rev.iter().enumerate() {
            let prev = out_ch;
            out_ch = level_ch;
            let mut resnets = Vec::new();
            for j in 0..cfg.layers_per_block + 1 {
                let p = l.child(&format!("up_blocks.{i}.resnets.{j}"));
                resnets.push(ResnetBlock2D::load(&l.at(&p), if j == 0 { prev } else { out_ch }, out_ch, None, g, EPS)?);
            }
            let upsampler = if i + 1 < levels { Some(l.conv(&format!("up_blocks.{i}.upsamplers.0.conv"), out_ch, out_ch, 3)?) } else { None };
            up.push(UpDecoderBlock { resnets, upsampler });
        }
        Ok(Decoder {
            cfg: cfg.clone(),
            dtype: root.dtype,
            post_quant_conv: root.pointwise("post_quant_conv", cfg.latent_channels, cfg.latent_channels)?,
            conv_in: l.conv("conv_in", cfg.latent_channels, top, 3)?,
            mid: Mid::load(&l.at(&mp), top, g)?,
            up,
            conv_norm_out: l.norm("conv_norm_out", boc[0])?,
            conv_out: l.conv("conv_out", boc[0], cfg.out_channels, 3)?,
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `z [N, h, w, latent]` (already divided by the scaling factor, in the decoder's storage
    /// type) → `[N, 8h, 8w, 3]` in about [−1, 1]. With `cancel`, a cancel point after each of
    /// its batches (mid block, every up block).
    pub async fn decode(&self, gpu: &Gpu, z: &Tensor, cancel: Option<CancelCheck<'_>>) -> Result<Tensor> {
        if z.dims().len() != 4 || z.dims()[3] != self.cfg.latent_channels || z.dtype() != self.dtype {
            return Err(Error::input("latents", format!("{z:?}: the VAE decoder takes [N, h, w, {}] {}", self.cfg.latent_channels, self.dtype)));
        }
        let g = self.cfg.norm_num_groups;
        let mut bt = gpu.batch("vae.decoder");
        let x = self.post_quant_conv.run(&mut bt, z, None)?;
        let x = self.conv_in.run(&mut bt, Conv2d::SAME_3X3, &x, None)?;
        let mut x = self.mid.forward(&mut bt, &x, g)?;
        bt.submit()?;
        cancel::point(gpu, cancel, || "the VAE decode (mid block)".into()).await?;
        for (i, blk) in self.up.iter().enumerate() {
            let mut bt = gpu.batch("vae.up");
            for r in &blk.resnets {
                x = r.forward(&mut bt, &x, None, NormDomain::PerImage)?;
            }
            if let Some(u) = &blk.upsampler {
                x = u.run(&mut bt, Conv2d::UP_3X3, &x, None)?;
            }
            bt.submit()?;
            cancel::point(gpu, cancel, || format!("the VAE decode (up block {i})")).await?;
        }
        let mut bt = gpu.batch("vae.out");
        let h = self.conv_norm_out.group(&mut bt, g, EPS, NormDomain::PerImage, true, &x)?;
        let y = self.conv_out.run(&mut bt, Conv2d::SAME_3X3, &h, None)?;
        bt.submit()?;
        Ok(y)
    }

    /// Decode `latents [N, h, w, C]` (model scale) in chunks of `chunk` images, returning
    /// frames `[N, 8h, 8w, 3]` in `[0, 1]` (`clamp(x/2 + 0.5)`), as diffusers' pipeline.
    /// With `cancel`, cancel points inside every chunk's decode and between chunks.
    pub async fn decode_to_frames(&self, gpu: &Gpu, latents: &Tensor, chunk: usize, cancel: Option<CancelCheck<'_>>) -> Result<Tensor> {
        let d = latents.dims().to_vec();
        if d.len() != 4 || latents.dtype() != DType::F32 {
            return Err(Error::input("latents", format!("{latents:?}: expected [N, h, w, C] f32")));
        }
        let n = d[0];
        let chunk = chunk.max(1);
        let s = self.cfg.block_out_channels.len() - 1;
        let (ho, wo) = (d[1] << s, d[2] << s);
        let out = alloc(gpu, &[n, ho, wo, self.cfg.out_channels], DType::F32, "vae.frames")?;
        let in_bytes = (d[1] * d[2] * d[3] * 4) as u64;
        let out_bytes = (ho * wo * self.cfg.out_channels * 4) as u64;
        let mut i = 0;
        while i < n {
            let c = chunk.min(n - i);
            let mut bt = gpu.batch("vae.in");
            let raw = alloc(gpu, &[c, d[1], d[2], d[3]], DType::F32, "vae.chunk")?;
            bt.copy_bytes(latents, i as u64 * in_bytes, &raw, 0, c as u64 * in_bytes)?;
            let z = alloc(gpu, raw.dims(), DType::F32, "vae.z")?;
            ops::unary(&mut bt, ops::Activation::Identity, 1.0 / self.cfg.scaling_factor, &raw, &z)?;
            let z = to_dtype(&mut bt, z, self.dtype, "vae.z")?;
            bt.submit()?;
            let y = self.decode(gpu, &z, cancel).await.map_err(|e| match e {
                Error::Cancelled { during } => Error::Cancelled { during: format!("{during}, frames {}–{} of {n}", i + 1, i + c) },
                e => e,
            })?;
            let mut bt = gpu.batch("vae.post");
            // Frames are computed in f32 whatever the storage type.
            let y = to_dtype(&mut bt, y, DType::F32, "vae.out")?;
            let f = alloc(gpu, y.dims(), DType::F32, "vae.frames.chunk")?;
            ops::clamp_affine(&mut bt, 0.5, 0.5, 0.0, 1.0, &y, &f)?;
            bt.copy_bytes(&f, 0, &out, i as u64 * out_bytes, c as u64 * out_bytes)?;
            bt.submit()?;
            i += c;
            if i < n {
                cancel::point(gpu, cancel, || format!("the VAE decode (after frame {i} of {n})")).await?;
            }
        }
        Ok(out)
    }
}

/// `x` in `dtype` (a converted copy when it differs).
fn to_dtype(bt: &mut Batch<'_>, x: Tensor, dtype: DType, label: &str) -> Result<Tensor> {
    if x.dtype() == dtype {
        return Ok(x);
    }
    let y = alloc(bt.gpu(), x.dims(), dtype, label)?;
    ops::convert(bt, &x, &y)?;
    Ok(y)
}

struct DownEncoderBlock {
    resnets: Vec<ResnetBlock2D>,
    downsampler: Option<Conv>,
}

/// `encoder.*` + `quant_conv` of an AutoencoderKL: images → latent distribution.
pub struct Encoder {
    cfg: VaeConfig,
    conv_in: Conv,
    down: Vec<DownEncoderBlock>,
    mid: Mid,
    conv_norm_out: Norm,
    conv_out: Conv,
    quant_conv: Linear,
}

impl Encoder {
    pub fn load(gpu: &Gpu, src: &dyn WeightSource, cfg: &VaeConfig) -> Result<Encoder> {
        let root = Loader::new(gpu, src, DType::F32);
        let ep = root.child("encoder");
        let l = root.at(&ep);
        let boc = &cfg.block_out_channels;
        let levels = boc.len();
        if levels == 0 {
            return Err(Error::input("VAE config", "no blocks"));
        }
        let g = cfg.norm_num_groups;
        let mut down = Vec::with_capacity(levels);
        let mut out_ch = boc[0];
        for (i, &level_ch) in boc.iter().enumerate() {
            let in_ch = out_ch;
            out_ch = level_ch;
            let mut resnets = Vec::new();
            for j in 0..cfg.layers_per_block {
                let p = l.child(&format!("down_blocks.{i}.resnets.{j}"));
                resnets.push(ResnetBlock2D::load(&l.at(&p), if j == 0 { in_ch } else { out_ch }, out_ch, None, g, EPS)?);
            }
            let downsampler = if i + 1 < levels { Some(l.conv(&format!("down_blocks.{i}.downsamplers.0.conv"), out_ch, out_ch, 3)?) } else { None };
            down.push(DownEncoderBlock { resnets, downsampler });
        }
        let top = boc[levels - 1];
        let mp = l.child("mid_block");
        Ok(Encoder {
            cfg: cfg.clone(),
            conv_in: l.conv("conv_in", cfg.in_channels, boc[0], 3)?,
            down,
            mid: Mid::load(&l.at(&mp), top, g)?,
            conv_norm_out: l.norm("conv_norm_out", top)?,
            conv_out: l.conv("conv_out", top, 2 * cfg.latent_channels, 3)?,
            quant_conv: root.pointwise("quant_conv", 2 * cfg.latent_channels, 2 * cfg.latent_channels)?,
        })
    }

    /// `images [N, H, W, 3]` in [−1, 1] → moments `[N, H/8, W/8, 2·latent]` (mean, then
    /// log-variance, along channels), before the scaling factor.
    pub fn encode(&self, gpu: &Gpu, images: &Tensor) -> Result<Tensor> {
        let d = images.dims().to_vec();
        let m = 1 << (self.cfg.block_out_channels.len() - 1);
        if d.len() != 4 || d[3] != self.cfg.in_channels || images.dtype() != DType::F32 || !d[1].is_multiple_of(m) || !d[2].is_multiple_of(m) {
            return Err(Error::input("images", format!("{images:?}: the VAE encoder takes [N, H, W, {}] f32 with H, W multiples of {m}", self.cfg.in_channels)));
        }
        let g = self.cfg.norm_num_groups;
        let mut bt = gpu.batch("vae.encoder");
        let mut x = self.conv_in.run(&mut bt, Conv2d::SAME_3X3, images, None)?;
        bt.submit()?;
        for blk in &self.down {
            let mut bt = gpu.batch("vae.down");
            for r in &blk.resnets {
                x = r.forward(&mut bt, &x, None, NormDomain::PerImage)?;
            }
            if let Some(ds) = &blk.downsampler {
                // diffusers' Downsample2D(padding=0): pad (0, 1, 0, 1), then stride 2.
                let xd = x.dims().to_vec();
                let padded = alloc(gpu, &[xd[0], xd[1] + 1, xd[2] + 1, xd[3]], DType::F32, "vae.pad")?;
                ops::pad_bottom_right(&mut bt, &x, &padded)?;
                x = ds.run(&mut bt, Conv2d { stride: 2, padding: 0, upsample: false }, &padded, None)?;
            }
            bt.submit()?;
        }
        let mut bt = gpu.batch("vae.encoder.out");
        let x = self.mid.forward(&mut bt, &x, g)?;
        let h = self.conv_norm_out.group(&mut bt, g, EPS, NormDomain::PerImage, true, &x)?;
        let h = self.conv_out.run(&mut bt, Conv2d::SAME_3X3, &h, None)?;
        let y = self.quant_conv.run(&mut bt, &h, None)?;
        bt.submit()?;
        Ok(y)
    }
}
