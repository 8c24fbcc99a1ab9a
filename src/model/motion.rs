//! AnimateDiff motion module, diffusers `AnimateDiffTransformer3D` (original:
//! `VanillaTemporalModule`): `GN → proj_in → [LN → +PE → temporal self-attention] ×2 →
//! LN → GEGLU FF → proj_out` + input. Attention runs over the frames of each spatial
//! position, read directly from the frame-major activations `[B·F, H, W, C]`.

use super::nn::{GegluFeedForward, Linear, Loader, MultiHeadAttention, Norm, Tokens};
use crate::gpu::{Batch, Tensor};
use crate::ops::{self, sinusoidal_position_encoding, Broadcast, NormDomain};
use crate::{Error, Result};

/// Which frames share the motion module's GroupNorm statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MotionNorm {
    /// diffusers `UNetMotionModel`: statistics jointly over all frames of a video.
    #[default]
    Diffusers,
    /// Original AnimateDiff (guoyww): statistics per frame.
    Original,
}

const LN_EPS: f32 = 1e-5;

/// Per-frame weights of a window when overlapping windows are blended (diffusers FreeNoise
/// `weighting_scheme`, ComfyUI-AnimateDiff-Evolved `fuse_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FuseMethod {
    /// `[1, 2, …, n/2, n/2, …, 2, 1]` (odd n: `[1, …, (n+1)/2, …, 1]`): the FreeNoise paper's weights.
    #[default]
    Pyramid,
    /// All 1.
    Flat,
    /// `[0.01, …, 0.01, n/2, n/2, …, 1]` (diffusers / ADE "delayed reverse sawtooth";
    /// odd n: `[0.01, …, (n+1)/2, …, 1]`).
    DelayedReverseSawtooth,
}

impl FuseMethod {
    pub fn parse(s: &str) -> Result<FuseMethod> {
        match s {
            "pyramid" => Ok(FuseMethod::Pyramid),
            "flat" => Ok(FuseMethod::Flat),
            "delayed_reverse_sawtooth" | "delayed-reverse-sawtooth" => Ok(FuseMethod::DelayedReverseSawtooth),
            _ => Err(Error::input("fuse method", format!("`{s}`: expected pyramid, flat or delayed_reverse_sawtooth"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FuseMethod::Pyramid => "pyramid",
            FuseMethod::Flat => "flat",
            FuseMethod::DelayedReverseSawtooth => "delayed_reverse_sawtooth",
        }
    }

    /// The weights of a window of `n` frames (diffusers `_get_frame_weights`).
    pub fn weights(self, n: usize) -> Vec<f32> {
        let even = n.is_multiple_of(2);
        let mid = if even { n / 2 } else { n.div_ceil(2) };
        match self {
            FuseMethod::Flat => vec![1.0; n],
            FuseMethod::Pyramid => {
                let up: Vec<f32> = (1..if even { mid + 1 } else { mid }).map(|v| v as f32).collect();
                let mut w = up.clone();
                if !even {
                    w.push(mid as f32);
                }
                w.extend(up.iter().rev());
                w
            }
            FuseMethod::DelayedReverseSawtooth => {
                // Odd n: diffusers and ADE write `[0.01]·mid + [mid, …, 1]`, n + 1 weights
                // (unusable); one 0.01 fewer keeps n.
                let mut w = vec![0.01; mid.saturating_sub(1)];
                if even {
                    w.push(mid as f32);
                }
                w.extend((1..=mid).rev().map(|v| v as f32));
                w
            }
        }
    }
}

/// Sliding windows over the frames inside the temporal attentions (diffusers
/// `enable_free_noise(context_length, context_stride, weighting_scheme)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemporalWindows {
    /// Frames per window (≤ the module's position encodings).
    pub length: usize,
    /// Frames between window starts.
    pub stride: usize,
    pub weighting: FuseMethod,
}

/// One window of [`TemporalWindows::plan`]: frames `start..start + length`, and the weight of
/// each of its frames in the blend, already divided by the frame's total weight.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowWeights {
    pub start: usize,
    pub weights: Vec<f32>,
}

impl TemporalWindows {
    pub fn validate(&self, max_len: usize) -> Result<()> {
        if self.length == 0 || self.stride == 0 {
            return Err(Error::input("context length", format!("length {} and stride {} must be ≥ 1", self.length, self.stride)));
        }
        if self.length > max_len {
            return Err(Error::input("context length", format!("{} frames exceed the motion module's {max_len} position encodings", self.length)));
        }
        Ok(())
    }

    /// The windows of a `frames`-frame video as diffusers `FreeNoiseTransformerBlock.forward`
    /// builds them: starts `0, stride, …` while a whole window fits, plus `(F − L, F)` when the
    /// last one does not end at F; of that last window only the frames after the previous
    /// window's end are blended. diffusers then adds one scalar, the weight at the first of
    /// those k tail frames (`weights[:, -k]`), to each tail frame's count; reproduced here
    /// (parity), so for misaligned frame counts those frames' weights do not sum to exactly 1.
    /// Empty when `frames ≤ length` (one window equals no windowing).
    pub fn plan(&self, frames: usize) -> Vec<WindowWeights> {
        let l = self.length;
        if frames <= l || l == 0 || self.stride == 0 {
            return Vec::new();
        }
        let w = self.weighting.weights(l);
        let mut raw: Vec<(usize, Vec<f32>)> = (0..=frames - l).step_by(self.stride).map(|s| (s, w.clone())).collect();
        let mut count = vec![0f32; frames];
        for (s, ws) in &raw {
            for (j, v) in ws.iter().enumerate() {
                count[s + j] += v;
            }
        }
        let last_end = raw.last().map_or(0, |(s, _)| s + l);
        if last_end != frames {
            let k = frames - last_end;
            let ws: Vec<f32> = (0..l).map(|j| if j >= l - k { w[j] } else { 0.0 }).collect();
            for c in &mut count[frames - k..] {
                *c += w[l - k];
            }
            raw.push((frames - l, ws));
        }
        raw.into_iter()
            .map(|(start, ws)| WindowWeights { start, weights: ws.iter().enumerate().map(|(j, v)| if *v == 0.0 { 0.0 } else { v / count[start + j] }).collect() })
            .collect()
    }
}

/// How one motion module runs (from `UNetOptions`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionCall {
    pub mode: MotionNorm,
    /// K scale of the temporal attentions (motion scale).
    pub scale: f32,
    /// Sliding temporal-attention windows (FreeNoise); `None` = all frames at once.
    pub windows: Option<TemporalWindows>,
    /// `out = x + effect·(module(x) − x)`: 1 = the module as trained, 0 = no motion.
    pub effect: f32,
}

impl Default for MotionCall {
    fn default() -> MotionCall {
        MotionCall { mode: MotionNorm::Diffusers, scale: 1.0, windows: None, effect: 1.0 }
    }
}

pub struct MotionModule {
    norm: Norm,
    proj_in: Linear,
    norms: [Norm; 2],
    attns: [MultiHeadAttention; 2],
    norm3: Norm,
    ff: GegluFeedForward,
    proj_out: Linear,
    groups: usize,
    channels: usize,
    max_len: usize,
}

impl MotionModule {
    /// diffusers names under `…motion_modules.j.`.
    pub fn load(l: &Loader<'_>, channels: usize, heads: usize, groups: usize, max_len: usize) -> Result<MotionModule> {
        let b = l.child("transformer_blocks.0");
        let bl = l.at(&b);
        let (a1, a2, ff) = (bl.child("attn1"), bl.child("attn2"), bl.child("ff"));
        Ok(MotionModule {
            norm: l.norm("norm", channels)?,
            proj_in: l.linear("proj_in", channels, channels, true)?,
            norms: [bl.norm("norm1", channels)?, bl.norm("norm2", channels)?],
            attns: [
                MultiHeadAttention::load(&bl.at(&a1), channels, channels, heads, false)?,
                MultiHeadAttention::load(&bl.at(&a2), channels, channels, heads, false)?,
            ],
            norm3: bl.norm("norm3", channels)?,
            ff: GegluFeedForward::load(&bl.at(&ff), channels)?,
            proj_out: l.linear("proj_out", channels, channels, true)?,
            groups,
            channels,
            max_len,
        })
    }

    /// `x [B·F, H, W, C]` with `frames` = F.
    pub fn forward(&self, bt: &mut Batch<'_>, x: &Tensor, frames: usize, mode: MotionNorm) -> Result<Tensor> {
        self.forward_scaled(bt, x, frames, mode, 1.0)
    }

    /// [`MotionModule::forward`] with K scaled by `motion_scale` in both temporal attentions
    /// (`softmax(q·(s·k)ᵀ/√d)` = the attention with its softmax scale multiplied by `s`).
    pub fn forward_scaled(&self, bt: &mut Batch<'_>, x: &Tensor, frames: usize, mode: MotionNorm, motion_scale: f32) -> Result<Tensor> {
        self.forward_with(bt, x, frames, &MotionCall { mode, scale: motion_scale, ..MotionCall::default() })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The module with every option of [`MotionCall`].
    pub fn forward_with(&self, bt: &mut Batch<'_>, x: &Tensor, frames: usize, call: &MotionCall) -> Result<Tensor> {
        let motion_scale = call.scale;
        if !motion_scale.is_finite() {
            return Err(Error::input("motion scale", format!("{motion_scale} is not finite")));
        }
        if !call.effect.is_finite() {
            return Err(Error::input("motion effect", format!("{} is not finite", call.effect)));
        }
        let plan = match &call.windows {
            Some(w) => {
                w.validate(self.max_len)?;
                w.plan(frames)
            }
            None => Vec::new(),
        };
        if plan.is_empty() && frames > self.max_len {
            return Err(Error::input("frames", format!("{frames} frames exceed this motion module's {} position encodings (use context windows or FreeNoise)", self.max_len)));
        }
        let d = x.dims().to_vec();
        let domain = match call.mode {
            MotionNorm::Diffusers => NormDomain::JointFrames { frames: frames as u32 },
            MotionNorm::Original => NormDomain::PerImage,
        };
        // Each normalised copy is dropped once consumed (a batch flush can then free it).
        let h = {
            let n = self.norm.group(bt, self.groups, 1e-6, domain, false, x)?;
            self.proj_in.run(bt, &n, None)?
        };
        let h = match &call.windows {
            Some(w) if !plan.is_empty() => self.windowed_attentions(bt, &h, frames, w.length, &plan, motion_scale)?,
            _ => self.attentions(bt, h, frames, motion_scale)?,
        };
        let n = self.norm3.layer(bt, LN_EPS, &h)?;
        let h = self.ff.run(bt, &n, &h)?;
        let y = self.proj_out.run(bt, &h, Some(x))?;
        if call.effect == 1.0 {
            return Ok(y);
        }
        // x + e·(y − x) = (1 − e)·x + e·y
        let out = super::nn::alloc(bt.gpu(), &d, x.dtype(), "motion.effect")?;
        ops::axpby(bt, 1.0 - call.effect, x, call.effect, &y, Broadcast::Same, &out)?;
        Ok(out)
    }

    /// `[LN → +PE → temporal self-attention] ×2` with residuals over all `frames` of `h`.
    fn attentions(&self, bt: &mut Batch<'_>, mut h: Tensor, frames: usize, motion_scale: f32) -> Result<Tensor> {
        let d = h.dims().to_vec();
        let positions = d[1] * d[2];
        let pe_host = sinusoidal_position_encoding(frames, self.channels);
        let pe = bt.gpu().upload_f32_as(&pe_host, [frames, self.channels], h.dtype(), "motion.pe")?;
        for (norm, attn) in self.norms.iter().zip(&self.attns) {
            let npe = {
                let n = norm.layer(bt, LN_EPS, &h)?;
                let npe = super::nn::alloc(bt.gpu(), n.dims(), n.dtype(), "motion.pe_add")?;
                ops::add(bt, &n, &pe, Broadcast::Periodic { period: frames as u32, positions: positions as u32 }, &npe)?;
                npe
            };
            h = attn.self_attention_scaled(bt, &npe, Tokens::Frames { frames }, Some(&h), motion_scale)?;
        }
        Ok(h)
    }

    /// [`MotionModule::attentions`] on each window of `plan` (frames copied out of every
    /// video of `h [B·F, H, W, C]`), blended as `Σ wₙ·windowₙ` with the normalised weights.
    fn windowed_attentions(&self, bt: &mut Batch<'_>, h: &Tensor, frames: usize, length: usize, plan: &[WindowWeights], motion_scale: f32) -> Result<Tensor> {
        let d = h.dims().to_vec();
        let videos = d[0] / frames;
        let positions = d[1] * d[2];
        let frame_bytes = h.size_bytes() / d[0] as u64;
        let win_bytes = frame_bytes * length as u64;
        let gpu = bt.gpu();
        let win_dims = [videos * length, d[1], d[2], d[3]];
        // The blend accumulates in f32 whatever the storage type (diffusers: hidden dtype).
        let acc_dims = d.clone();
        let mut acc = super::nn::alloc(gpu, &acc_dims, crate::gpu::DType::F32, "motion.windows.acc")?;
        ops::fill(bt, &acc, 0.0)?;
        let acc_frame = acc.size_bytes() / d[0] as u64;
        for win in plan {
            let hw = super::nn::alloc(gpu, &win_dims, h.dtype(), "motion.window")?;
            for v in 0..videos {
                bt.copy_bytes(h, (v * frames + win.start) as u64 * frame_bytes, &hw, v as u64 * win_bytes, win_bytes)?;
            }
            let out = self.attentions(bt, hw, length, motion_scale)?;
            let out = if out.dtype() == crate::gpu::DType::F32 {
                out
            } else {
                let c = super::nn::alloc(gpu, &win_dims, crate::gpu::DType::F32, "motion.window.f32")?;
                ops::convert(bt, &out, &c)?;
                c
            };
            let mut w = Vec::with_capacity(videos * length * self.channels);
            for _ in 0..videos {
                for &wj in &win.weights {
                    w.extend(std::iter::repeat_n(wj, self.channels));
                }
            }
            let wt = gpu.upload_f32(&w, [videos * length, self.channels], "motion.window.weights")?;
            let weighted = super::nn::alloc(gpu, &win_dims, crate::gpu::DType::F32, "motion.window.weighted")?;
            ops::mul(bt, &out, &wt, Broadcast::PerRow { positions: positions as u32 }, &weighted)?;
            // acc[window frames] += weighted: the window's rows are contiguous per video.
            let region = super::nn::alloc(gpu, &win_dims, crate::gpu::DType::F32, "motion.windows.region")?;
            let region_bytes = acc_frame * length as u64;
            for v in 0..videos {
                bt.copy_bytes(&acc, (v * frames + win.start) as u64 * acc_frame, &region, v as u64 * region_bytes, region_bytes)?;
            }
            let sum = super::nn::alloc(gpu, &win_dims, crate::gpu::DType::F32, "motion.windows.sum")?;
            ops::add(bt, &region, &weighted, Broadcast::Same, &sum)?;
            for v in 0..videos {
                bt.copy_bytes(&sum, v as u64 * region_bytes, &acc, (v * frames + win.start) as u64 * acc_frame, region_bytes)?;
            }
        }
        if h.dtype() != crate::gpu::DType::F32 {
            let c = super::nn::alloc(gpu, &acc_dims, h.dtype(), "motion.windows.out")?;
            ops::convert(bt, &acc, &c)?;
            acc = c;
        }
        Ok(acc)
    }
}
