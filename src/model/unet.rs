//! diffusers `UNet2DConditionModel`, optionally with AnimateDiff motion modules inserted
//! after every ResNet/attention pair (= diffusers `UNetMotionModel`). Activations are
//! channels-last `[B·F, H, W, C]` with image index `b·F + f`; text embeddings are one per
//! video (`[B, L, D]`, shared by its frames through the attention's `kv_div`) or one per frame
//! (`[B·F, L, D]`, prompt travel; `kv_div` 1).

use super::config::{MotionConfig, UNetConfig};
use super::motion::{MotionCall, MotionModule, MotionNorm, TemporalWindows};
use super::nn::{alloc, Conv, Linear, Loader, Norm};
use super::quant_policy::QuantPolicy;
use super::resnet::ResnetBlock2D;
use super::transformer_2d::Transformer2DModel;
use crate::gpu::{Batch, DType, Gpu, Tensor};
use crate::load::WeightSource;
use crate::ops::{self, timestep_embedding, Activation, Conv2d, NormDomain};
use crate::{Error, Result};

/// Forward-pass semantics that differ between implementations, and motion controls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UNetOptions {
    /// Motion-module GroupNorm domain (diffusers: joint over frames; original: per frame).
    pub motion_norm: MotionNorm,
    /// Original AnimateDiff v1: ResNet and `conv_norm_out` GroupNorms jointly over frames.
    pub joint_resnet_norm: bool,
    /// Motion scale (ComfyUI-AnimateDiff-Evolved's `scale_multival`): multiplies K in every
    /// temporal attention, sharpening (> 1) or flattening (< 1) the softmax over frames.
    pub motion_scale: f32,
    /// FreeNoise: sliding windows inside the motion modules' temporal attentions (frames
    /// beyond the modules' position encodings).
    pub free_noise: Option<TemporalWindows>,
    /// Per-block motion-module effect blend `x + e·(module(x) − x)`.
    pub motion_effect: MotionEffect,
}

/// ComfyUI-AnimateDiff-Evolved's `effect_multival` per block group (1 = unchanged).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionEffect {
    pub down: f32,
    pub mid: f32,
    pub up: f32,
}

impl MotionEffect {
    pub const NONE: MotionEffect = MotionEffect { down: 1.0, mid: 1.0, up: 1.0 };

    pub fn uniform(e: f32) -> MotionEffect {
        MotionEffect { down: e, mid: e, up: e }
    }
}

impl Default for MotionEffect {
    fn default() -> MotionEffect {
        MotionEffect::NONE
    }
}

impl Default for UNetOptions {
    fn default() -> UNetOptions {
        UNetOptions { motion_norm: MotionNorm::Diffusers, joint_resnet_norm: false, motion_scale: 1.0, free_noise: None, motion_effect: MotionEffect::NONE }
    }
}

struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    motion: Vec<MotionModule>,
    downsampler: Option<Conv>,
}

struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    motion: Vec<MotionModule>,
    upsampler: Option<Conv>,
}

struct MidBlock {
    resnets: [ResnetBlock2D; 2],
    attention: Transformer2DModel,
    motion: Option<MotionModule>,
}

pub struct UNet {
    cfg: UNetConfig,
    motion_cfg: Option<MotionConfig>,
    dtype: DType,
    time_linear_1: Linear,
    time_linear_2: Linear,
    conv_in: Conv,
    down: Vec<DownBlock>,
    mid: MidBlock,
    up: Vec<UpBlock>,
    conv_norm_out: Norm,
    conv_out: Conv,
}

/// Loads motion modules from the adapter's source, if there is one.
struct MotionLoader<'a> {
    l: Loader<'a>,
    cfg: &'a MotionConfig,
}

impl MotionLoader<'_> {
    fn module(&self, name: &str, channels: usize) -> Result<MotionModule> {
        let p = self.l.child(name);
        MotionModule::load(&self.l.at(&p), channels, self.cfg.motion_num_attention_heads, self.cfg.motion_norm_num_groups, self.cfg.motion_max_seq_length)
    }
}

impl UNet {
    /// Load the UNet (diffusers names) and, with `motion`, a `MotionAdapter`'s modules.
    pub fn load(gpu: &Gpu, unet: &dyn WeightSource, cfg: &UNetConfig, motion: Option<(&dyn WeightSource, &MotionConfig)>, dtype: DType) -> Result<UNet> {
        UNet::load_quantized(gpu, unet, cfg, motion, dtype, None)
    }

    /// [`UNet::load`], quantizing the UNet's and motion modules' GEMM weights on the GPU per
    /// `policy` (weights already packed in the sources are used as they are).
    pub fn load_quantized(
        gpu: &Gpu,
        unet: &dyn WeightSource,
        cfg: &UNetConfig,
        motion: Option<(&dyn WeightSource, &MotionConfig)>,
        dtype: DType,
        policy: Option<&QuantPolicy>,
    ) -> Result<UNet> {
        let levels = cfg.block_out_channels.len();
        if levels == 0 || cfg.attention_heads.len() != levels || cfg.down_block_attention.len() != levels || cfg.up_block_attention.len() != levels {
            return Err(Error::input("UNet config", format!("{levels} levels but {} head counts / {} down / {} up block types", cfg.attention_heads.len(), cfg.down_block_attention.len(), cfg.up_block_attention.len())));
        }
        if let Some((_, m)) = motion {
            if m.block_out_channels != cfg.block_out_channels {
                return Err(Error::input("motion module", format!("channels {:?} do not match the UNet's {:?} (an SDXL motion module?)", m.block_out_channels, cfg.block_out_channels)));
            }
        }
        let l = Loader::new(gpu, unet, dtype).with_quant(policy);
        let ml = motion.map(|(src, cfg)| MotionLoader { l: Loader::new(gpu, src, dtype).with_quant(policy), cfg });
        let boc = &cfg.block_out_channels;
        let temb = cfg.time_embed_dim();
        let (g, eps, ctx, tl) = (cfg.norm_num_groups, cfg.norm_eps, cfg.cross_attention_dim, cfg.transformer_layers_per_block);
        let transformer = |p: &str, c: usize, heads: usize| {
            let pre = l.child(p);
            Transformer2DModel::load(&l.at(&pre), c, ctx, heads, g, tl, cfg.use_linear_projection)
        };
        let resnet = |p: &str, cin: usize, cout: usize| {
            let pre = l.child(p);
            ResnetBlock2D::load(&l.at(&pre), cin, cout, Some(temb), g, eps)
        };

        let mut down = Vec::with_capacity(levels);
        let mut out_ch = boc[0];
        for (i, &level_ch) in boc.iter().enumerate() {
            let in_ch = out_ch;
            out_ch = level_ch;
            let last = i + 1 == levels;
            let mut blk = DownBlock { resnets: vec![], attentions: vec![], motion: vec![], downsampler: None };
            for j in 0..cfg.layers_per_block {
                blk.resnets.push(resnet(&format!("down_blocks.{i}.resnets.{j}"), if j == 0 { in_ch } else { out_ch }, out_ch)?);
                if cfg.down_block_attention[i] {
                    blk.attentions.push(transformer(&format!("down_blocks.{i}.attentions.{j}"), out_ch, cfg.attention_heads[i])?);
                }
            }
            if let Some(m) = &ml {
                for j in 0..m.cfg.motion_layers_per_block {
                    blk.motion.push(m.module(&format!("down_blocks.{i}.motion_modules.{j}"), out_ch)?);
                }
            }
            if !last {
                blk.downsampler = Some(l.conv(&format!("down_blocks.{i}.downsamplers.0.conv"), out_ch, out_ch, 3)?);
            }
            down.push(blk);
        }

        let top = boc[levels - 1];
        let heads_top = cfg.attention_heads[levels - 1];
        let mid = MidBlock {
            resnets: [resnet("mid_block.resnets.0", top, top)?, resnet("mid_block.resnets.1", top, top)?],
            attention: transformer("mid_block.attentions.0", top, heads_top)?,
            motion: match &ml {
                Some(m) if m.cfg.use_motion_mid_block => Some(m.module("mid_block.motion_modules.0", top)?),
                _ => None,
            },
        };

        let rev: Vec<usize> = boc.iter().rev().copied().collect();
        let rev_heads: Vec<usize> = cfg.attention_heads.iter().rev().copied().collect();
        let mut up = Vec::with_capacity(levels);
        let mut out_ch = rev[0];
        for (i, &level_ch) in rev.iter().enumerate() {
            let prev_out = out_ch;
            out_ch = level_ch;
            let in_ch = rev[(i + 1).min(levels - 1)];
            let layers = cfg.layers_per_block + 1;
            let mut blk = UpBlock { resnets: vec![], attentions: vec![], motion: vec![], upsampler: None };
            for j in 0..layers {
                let skip = if j + 1 == layers { in_ch } else { out_ch };
                let res_in = if j == 0 { prev_out } else { out_ch };
                blk.resnets.push(resnet(&format!("up_blocks.{i}.resnets.{j}"), res_in + skip, out_ch)?);
                if cfg.up_block_attention[i] {
                    blk.attentions.push(transformer(&format!("up_blocks.{i}.attentions.{j}"), out_ch, rev_heads[i])?);
                }
            }
            if let Some(m) = &ml {
                for j in 0..m.cfg.motion_layers_per_block + 1 {
                    blk.motion.push(m.module(&format!("up_blocks.{i}.motion_modules.{j}"), out_ch)?);
                }
            }
            if i + 1 < levels {
                blk.upsampler = Some(l.conv(&format!("up_blocks.{i}.upsamplers.0.conv"), out_ch, out_ch, 3)?);
            }
            up.push(blk);
        }

        Ok(UNet {
            cfg: cfg.clone(),
            motion_cfg: motion.map(|(_, m)| m.clone()),
            dtype,
            time_linear_1: l.linear("time_embedding.linear_1", boc[0], temb, true)?,
            time_linear_2: l.linear("time_embedding.linear_2", temb, temb, true)?,
            conv_in: l.conv("conv_in", cfg.in_channels, boc[0], 3)?,
            down,
            mid,
            up,
            conv_norm_out: l.norm("conv_norm_out", boc[0])?,
            conv_out: l.conv("conv_out", boc[0], cfg.out_channels, 3)?,
        })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    pub fn motion_config(&self) -> Option<&MotionConfig> {
        self.motion_cfg.as_ref()
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Latent sizes must survive `levels − 1` halvings and doublings exactly.
    pub fn size_multiple(&self) -> usize {
        1 << (self.cfg.block_out_channels.len() - 1)
    }

    /// diffusers' `time_embedding(time_proj(t))` = `linear_2(SiLU(linear_1(sinusoid(t))))`
    /// for each of `timesteps`: `[len, temb_dim]`.
    pub fn time_embedding(&self, bt: &mut Batch<'_>, timesteps: &[f32]) -> Result<Tensor> {
        let c0 = self.cfg.block_out_channels[0];
        let sin = timestep_embedding(timesteps, c0, self.cfg.flip_sin_to_cos, self.cfg.freq_shift, 10000.0);
        let t = bt.gpu().upload_f32_as(&sin, [timesteps.len(), c0], self.dtype, "unet.time_proj")?;
        let h = self.time_linear_1.run(bt, &t, None)?;
        let hs = alloc(bt.gpu(), h.dims(), self.dtype, "unet.time_silu")?;
        ops::unary(bt, Activation::Silu, 1.0, &h, &hs)?;
        self.time_linear_2.run(bt, &hs, None)
    }

    /// SiLU of the time embedding, one row per image (every ResNet applies SiLU before its
    /// projection).
    fn time_embedding_silu(&self, bt: &mut Batch<'_>, timestep: f32, images: usize) -> Result<Tensor> {
        let emb = self.time_embedding(bt, &vec![timestep; images])?;
        let es = alloc(bt.gpu(), emb.dims(), self.dtype, "unet.temb_silu")?;
        ops::unary(bt, Activation::Silu, 1.0, &emb, &es)?;
        Ok(es)
    }

    /// ε prediction for `sample [B·F, H, W, C_in]` at `timestep`, conditioned on
    /// `context [B, L, D]` (one per video; `frames` = F, 1 for plain images) or `[B·F, L, D]`
    /// (one per frame: prompt travel).
    pub fn forward(&self, gpu: &Gpu, sample: &Tensor, timestep: f32, context: &Tensor, frames: usize, opts: &UNetOptions) -> Result<Tensor> {
        let d = sample.dims().to_vec();
        let [n, h, w, c] = match d[..] {
            [n, h, w, c] => [n, h, w, c],
            _ => return Err(Error::input("sample", format!("expected [B·F, H, W, C], got {d:?}"))),
        };
        if c != self.cfg.in_channels || sample.dtype() != self.dtype {
            return Err(Error::input("sample", format!("{sample:?}: the UNet takes {} channels of {}", self.cfg.in_channels, self.dtype)));
        }
        let m = self.size_multiple();
        if h == 0 || w == 0 || h % m != 0 || w % m != 0 {
            return Err(Error::input("latent size", format!("{h}×{w} latents must be multiples of {m} (images multiples of {})", m * 8)));
        }
        if frames == 0 || n % frames != 0 {
            return Err(Error::input("frames", format!("{n} images are not whole videos of {frames} frames")));
        }
        let videos = n / frames;
        let cd = context.dims();
        if cd.len() != 3 || cd[2] != self.cfg.cross_attention_dim || cd[0] == 0 || n % cd[0] != 0 {
            return Err(Error::input("text embeddings", format!("{context:?} must be [{videos}, L, {}] (one per video) or [{n}, L, {0}] (one per frame)", self.cfg.cross_attention_dim)));
        }
        let kv_div = n / cd[0];
        let call = |effect: f32| MotionCall { mode: opts.motion_norm, scale: opts.motion_scale, windows: opts.free_noise, effect };
        let (down_call, mid_call, up_call) = (call(opts.motion_effect.down), call(opts.motion_effect.mid), call(opts.motion_effect.up));
        let motion = |bt: &mut Batch<'_>, mm: Option<&MotionModule>, x: Tensor, call: &MotionCall| -> Result<Tensor> {
            match mm {
                Some(mm) => mm.forward_with(bt, &x, frames, call),
                None => Ok(x),
            }
        };
        let res_domain = if opts.joint_resnet_norm { NormDomain::JointFrames { frames: frames as u32 } } else { NormDomain::PerImage };

        let mut bt = gpu.batch("unet.in");
        let temb = self.time_embedding_silu(&mut bt, timestep, n)?;
        let mut x = self.conv_in.run(&mut bt, Conv2d::SAME_3X3, sample, None)?;
        let mut skips = vec![x.clone()];
        bt.submit()?;

        for blk in &self.down {
            let mut bt = gpu.batch("unet.down");
            for (j, r) in blk.resnets.iter().enumerate() {
                x = r.forward(&mut bt, &x, Some(&temb), res_domain)?;
                if let Some(a) = blk.attentions.get(j) {
                    x = a.forward(&mut bt, &x, context, kv_div)?;
                }
                x = motion(&mut bt, blk.motion.get(j), x, &down_call)?;
                skips.push(x.clone());
            }
            if let Some(ds) = &blk.downsampler {
                x = ds.run(&mut bt, Conv2d::DOWN_3X3, &x, None)?;
                skips.push(x.clone());
            }
            bt.submit()?;
        }

        let mut bt = gpu.batch("unet.mid");
        x = self.mid.resnets[0].forward(&mut bt, &x, Some(&temb), res_domain)?;
        x = self.mid.attention.forward(&mut bt, &x, context, kv_div)?;
        x = motion(&mut bt, self.mid.motion.as_ref(), x, &mid_call)?;
        x = self.mid.resnets[1].forward(&mut bt, &x, Some(&temb), res_domain)?;
        bt.submit()?;

        for blk in &self.up {
            let mut bt = gpu.batch("unet.up");
            for (j, r) in blk.resnets.iter().enumerate() {
                let skip = skips.pop().ok_or_else(|| Error::input("UNet", "skip connections exhausted"))?;
                let xd = x.dims();
                let cat = alloc(gpu, &[xd[0], xd[1], xd[2], xd[3] + skip.dims()[3]], self.dtype, "unet.cat")?;
                ops::concat(&mut bt, &x, &skip, &cat)?;
                x = r.forward(&mut bt, &cat, Some(&temb), res_domain)?;
                if let Some(a) = blk.attentions.get(j) {
                    x = a.forward(&mut bt, &x, context, kv_div)?;
                }
                x = motion(&mut bt, blk.motion.get(j), x, &up_call)?;
            }
            if let Some(us) = &blk.upsampler {
                x = us.run(&mut bt, Conv2d::UP_3X3, &x, None)?;
            }
            bt.submit()?;
        }

        let mut bt = gpu.batch("unet.out");
        // Original v1 normalises conv_norm_out like the ResNets (jointly over frames).
        let hn = self.conv_norm_out.group(&mut bt, self.cfg.norm_num_groups, self.cfg.norm_eps, res_domain, true, &x)?;
        let out = self.conv_out.run(&mut bt, Conv2d::SAME_3X3, &hn, None)?;
        bt.submit()?;
        Ok(out)
    }
}
