//! AnimateDiff motion module, diffusers `AnimateDiffTransformer3D` (original:
//! `VanillaTemporalModule`): `GN → proj_in → [LN → +PE → temporal self-attention] ×2 →
//! LN → GEGLU FF → proj_out` + input. Attention runs over the frames of each spatial
//! position, read directly from the frame-major activations `[B·F, H, W, C]`.

use super::nn::{GegluFeedForward, Linear, Loader, MultiHeadAttention, Norm, Tokens};
use crate::gpu::{Batch, Tensor};
use crate::ops::{self, sinusoidal_position_encoding, Broadcast, NormDomain};
use crate::Result;

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
        if !motion_scale.is_finite() {
            return Err(crate::Error::input("motion scale", format!("{motion_scale} is not finite")));
        }
        if frames > self.max_len {
            return Err(crate::Error::input("frames", format!("{frames} frames exceed this motion module's {} position encodings (use context windows)", self.max_len)));
        }
        let d = x.dims().to_vec();
        let positions = d[1] * d[2];
        let domain = match mode {
            MotionNorm::Diffusers => NormDomain::JointFrames { frames: frames as u32 },
            MotionNorm::Original => NormDomain::PerImage,
        };
        let h = self.norm.group(bt, self.groups, 1e-6, domain, false, x)?;
        let mut h = self.proj_in.run(bt, &h, None)?;
        let pe_host = sinusoidal_position_encoding(frames, self.channels);
        let pe = bt.gpu().upload_f32_as(&pe_host, [frames, self.channels], x.dtype(), "motion.pe")?;
        for (norm, attn) in self.norms.iter().zip(&self.attns) {
            let n = norm.layer(bt, LN_EPS, &h)?;
            let npe = super::nn::alloc(bt.gpu(), n.dims(), n.dtype(), "motion.pe_add")?;
            ops::add(bt, &n, &pe, Broadcast::Periodic { period: frames as u32, positions: positions as u32 }, &npe)?;
            h = attn.self_attention_scaled(bt, &npe, Tokens::Frames { frames }, Some(&h), motion_scale)?;
        }
        let n = self.norm3.layer(bt, LN_EPS, &h)?;
        let h = self.ff.run(bt, &n, &h)?;
        self.proj_out.run(bt, &h, Some(x))
    }
}
