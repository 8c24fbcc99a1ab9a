//! Long videos beyond the motion module's length.
//!
//! * **Context windows over the whole UNet** ([`ContextWindows`]): each step the UNet runs on
//!   windows of frames and the ε predictions are fused with per-frame weights,
//!   `Σ w·ε / Σ w` (ComfyUI-AnimateDiff-Evolved, `animatediff/context.py` "looped_uniform"
//!   schedule and `sampling.py::sliding_calc_cond_batch`). The UNet's activations are those of
//!   one window, so memory grows with the window, not the video.
//! * **FreeNoise** (diffusers `enable_free_noise`): windows inside the motion modules only
//!   ([`crate::model::motion::TemporalWindows`]) and the initial noise of later frames made
//!   from shuffled earlier frames ([`NoiseType`], [`free_noise_latents`]).

use super::rng::TorchGenerator;
use crate::gpu::{DType, Gpu, Tensor};
use crate::model::nn::alloc;
use crate::model::unet::MotionEffect;
use crate::model::{UNet, UNetOptions};
use crate::ops::{self, Broadcast};
use crate::{Error, Result};

pub use crate::model::motion::{FuseMethod, TemporalWindows};

/// Sliding windows of frames over the whole UNet (ADE "looped uniform").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContextWindows {
    /// Frames per window (ADE `context_length`, default 16).
    pub length: usize,
    /// Strided windows: levels `1, 2, 4, …` of frame spacing (ADE `context_stride`, default 1).
    pub stride: usize,
    /// Frames shared by consecutive windows (ADE `context_overlap`, default 4).
    pub overlap: usize,
    /// Let the windows wrap from the last frames to the first (a looping video).
    pub closed_loop: bool,
    pub fuse: FuseMethod,
}

impl Default for ContextWindows {
    fn default() -> ContextWindows {
        ContextWindows { length: 16, stride: 1, overlap: 4, closed_loop: false, fuse: FuseMethod::Pyramid }
    }
}

/// `step`'s 64 bits reversed, as a fraction of 2⁶⁴: 0, ½, ¼, ¾, ⅛, … (ADE `ordered_halving`).
/// The window starts shift by this fraction of the video every step, which hides seams.
pub fn ordered_halving(step: usize) -> f64 {
    (step as u64).reverse_bits() as f64 / 18_446_744_073_709_551_616.0
}

impl ContextWindows {
    pub fn validate(&self) -> Result<()> {
        if self.length == 0 || self.stride == 0 {
            return Err(Error::input("context length", format!("length {} and stride {} must be ≥ 1", self.length, self.stride)));
        }
        if self.overlap >= self.length {
            return Err(Error::input("context overlap", format!("{} must be below the context length {}", self.overlap, self.length)));
        }
        Ok(())
    }

    /// Whether a `frames`-frame video is split at all (ADE uses context only when the video
    /// is longer than a window).
    pub fn active(&self, frames: usize) -> bool {
        frames > self.length
    }

    /// The windows (frame indices) of sampling step `step`: for each stride level
    /// `hop = 1, 2, 4, …` (at most `⌈log₂(F/L)⌉ + 1` levels), windows of `length` frames spaced
    /// `hop` apart, starting every `length·hop − overlap` frames from an offset that rotates
    /// with the step; indices wrap modulo F. Without `closed_loop` the last start stays
    /// `overlap` frames before the (rotated) end.
    pub fn windows(&self, frames: usize, step: usize) -> Vec<Vec<usize>> {
        if !self.active(frames) {
            return vec![(0..frames).collect()];
        }
        let levels = self.stride.min(((frames as f64) / (self.length as f64)).log2().ceil() as usize + 1);
        let oh = ordered_halving(step);
        let mut out = Vec::new();
        for k in 0..levels {
            let hop = 1usize << k;
            let pad = (frames as f64 * oh).round_ties_even() as usize; // Python's round()
            let first = (oh * hop as f64) as usize + pad;
            let stop = frames + pad - if self.closed_loop { 0 } else { self.overlap };
            let step_by = self.length * hop - self.overlap;
            let mut j = first;
            while j < stop {
                out.push((j..j + self.length * hop).step_by(hop).map(|e| e % frames).collect());
                j += step_by;
            }
        }
        out
    }
}

/// How FreeNoise builds the initial noise of frames past the first window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoiseType {
    /// Frames `L, L+s, …` take a random permutation of an earlier block of `stride` frames
    /// (diffusers' default): later frames re-use the first window's noise.
    #[default]
    ShuffleContext,
    /// Frame `f ≥ L` repeats frame `f mod L` (the documented intent; diffusers 0.42.1 compares
    /// `context_length` with the string "repeat_context", draws all F frames and leaves them).
    RepeatContext,
    /// Independent noise for every frame.
    Random,
}

impl NoiseType {
    pub fn parse(s: &str) -> Result<NoiseType> {
        match s {
            "shuffle_context" | "shuffle-context" | "shuffle" => Ok(NoiseType::ShuffleContext),
            "repeat_context" | "repeat-context" | "repeat" => Ok(NoiseType::RepeatContext),
            "random" => Ok(NoiseType::Random),
            _ => Err(Error::input("noise type", format!("`{s}`: expected shuffle_context, repeat_context or random"))),
        }
    }
}

/// `torch.randperm(n, generator=g)` on the CPU (Fisher–Yates with `random() % (n − i)`, the
/// small-n path of ATen's `randperm_cpu`).
pub fn randperm(n: usize, g: &mut TorchGenerator) -> Vec<usize> {
    let mut r: Vec<usize> = (0..n).collect();
    for i in 0..n.saturating_sub(1) {
        let z = (u64::from(g.random()) % (n - i) as u64) as usize;
        r.swap(i, z + i);
    }
    r
}

/// FreeNoise's initial noise, in place on `latents [1, C, F, h·w]` (diffusers layout) drawn
/// from `g` just before (diffusers `_prepare_latents_free_noise`: shuffles run in order and
/// may read frames an earlier shuffle wrote).
pub fn free_noise_latents(latents: &mut [f32], channels: usize, frames: usize, length: usize, stride: usize, noise: NoiseType, g: &mut TorchGenerator) {
    let hw = latents.len() / (channels * frames).max(1);
    let copy = |dst: usize, src: usize, lat: &mut [f32]| {
        for c in 0..channels {
            let base = c * frames * hw;
            lat.copy_within(base + src * hw..base + (src + 1) * hw, base + dst * hw);
        }
    };
    match noise {
        NoiseType::Random => {}
        NoiseType::RepeatContext => {
            for f in length..frames {
                copy(f, f % length.max(1), latents);
            }
        }
        NoiseType::ShuffleContext => {
            let mut i = length;
            while i < frames && stride > 0 {
                let start = i - length;
                let end = frames.min(start + stride);
                let n = end - start;
                if n == 0 {
                    break;
                }
                let perm: Vec<usize> = randperm(n, g).into_iter().map(|p| start + p).collect();
                let take = n.min(frames - i);
                // Gather first: torch evaluates `latents[:, :, idx]` before assigning.
                let src: Vec<Vec<f32>> = (0..channels)
                    .flat_map(|c| perm[..take].iter().map(move |&p| (c, p)))
                    .map(|(c, p)| latents[(c * frames + p) * hw..(c * frames + p + 1) * hw].to_vec())
                    .collect();
                for c in 0..channels {
                    for j in 0..take {
                        let d = (c * frames + i + j) * hw;
                        latents[d..d + hw].copy_from_slice(&src[c * take + j]);
                    }
                }
                i += stride;
            }
        }
    }
}

/// The UNet's ε for `input [V·F, h, w, C]` (V videos of F frames, the UNet's storage type) run
/// window by window per `ctx` for sampling step `step` and fused; `context` holds one text
/// embedding per video `[V, L, D]` or per frame `[V·F, L, D]`. Returns f32 `[V·F, h, w, C]`.
#[allow(clippy::too_many_arguments)]
pub fn windowed_eps(unet: &UNet, gpu: &Gpu, input: &Tensor, timestep: f32, context: &Tensor, frames: usize, step: usize, ctx: &ContextWindows, opts: &UNetOptions) -> Result<Tensor> {
    ctx.validate()?;
    let d = input.dims().to_vec();
    if d.len() != 4 || frames == 0 || !d[0].is_multiple_of(frames) {
        return Err(Error::input("latents", format!("{input:?} is not whole videos of {frames} frames")));
    }
    let videos = d[0] / frames;
    let cd = context.dims().to_vec();
    let per_frame_context = cd[0] == d[0];
    let frame_bytes = input.size_bytes() / d[0] as u64;
    let ctx_row = context.size_bytes() / cd[0].max(1) as u64;
    let positions = (d[1] * d[2]) as u32;
    let channels = d[3];

    let windows = ctx.windows(frames, step);
    // Total weight per frame; a frame listed twice in one window counts once, its last
    // occurrence (torch's `x[idx] += v` with repeated indices).
    let mut count = vec![0f32; frames];
    let window_weights: Vec<Vec<f32>> = windows
        .iter()
        .map(|win| {
            let w = ctx.fuse.weights(win.len());
            let mut per_frame = vec![0f32; frames];
            for (j, &f) in win.iter().enumerate() {
                per_frame[f] = w[j];
            }
            for (c, p) in count.iter_mut().zip(&per_frame) {
                *c += p;
            }
            per_frame
        })
        .collect();
    if let Some(f) = count.iter().position(|&c| c <= 0.0) {
        return Err(Error::input("context windows", format!("frame {f} is in no window ({ctx:?})")));
    }

    let acc_dims = [d[0], d[1], d[2], d[3]];
    let mut acc = alloc(gpu, &acc_dims, DType::F32, "context.eps")?;
    let mut bt = gpu.batch("context.init");
    ops::fill(&mut bt, &acc, 0.0)?;
    bt.submit()?;
    for (win, per_frame) in windows.iter().zip(&window_weights) {
        let l = win.len();
        let mut bt = gpu.batch("context.gather");
        let sub = alloc(gpu, &[videos * l, d[1], d[2], d[3]], input.dtype(), "context.window")?;
        for v in 0..videos {
            for (j, &f) in win.iter().enumerate() {
                bt.copy_bytes(input, (v * frames + f) as u64 * frame_bytes, &sub, (v * l + j) as u64 * frame_bytes, frame_bytes)?;
            }
        }
        let sub_ctx = if per_frame_context {
            let c = alloc(gpu, &[videos * l, cd[1], cd[2]], context.dtype(), "context.window.text")?;
            for v in 0..videos {
                for (j, &f) in win.iter().enumerate() {
                    bt.copy_bytes(context, (v * frames + f) as u64 * ctx_row, &c, (v * l + j) as u64 * ctx_row, ctx_row)?;
                }
            }
            c
        } else {
            context.clone()
        };
        bt.submit()?;
        let eps = unet.forward(gpu, &sub, timestep, &sub_ctx, l, opts)?;
        let mut bt = gpu.batch("context.fuse");
        let eps = if eps.dtype() == DType::F32 {
            eps
        } else {
            let c = alloc(gpu, eps.dims(), DType::F32, "context.window.eps")?;
            ops::convert(&mut bt, &eps, &c)?;
            c
        };
        // Scatter the window into a zeroed full-length tensor, weight it per frame and add:
        // the latents are small, and frames of a window need not be contiguous (wrapping).
        let scat = alloc(gpu, &acc_dims, DType::F32, "context.scatter")?;
        ops::fill(&mut bt, &scat, 0.0)?;
        let fb = eps.size_bytes() / (videos * l) as u64;
        for v in 0..videos {
            for (j, &f) in win.iter().enumerate() {
                bt.copy_bytes(&eps, (v * l + j) as u64 * fb, &scat, (v * frames + f) as u64 * fb, fb)?;
            }
        }
        let mut w = Vec::with_capacity(d[0] * channels);
        for _ in 0..videos {
            for f in 0..frames {
                w.extend(std::iter::repeat_n(per_frame[f] / count[f], channels));
            }
        }
        let wt = gpu.upload_f32(&w, [d[0], channels], "context.weights")?;
        let weighted = alloc(gpu, &acc_dims, DType::F32, "context.weighted")?;
        ops::mul(&mut bt, &scat, &wt, Broadcast::PerRow { positions }, &weighted)?;
        let next = alloc(gpu, &acc_dims, DType::F32, "context.eps")?;
        ops::add(&mut bt, &acc, &weighted, Broadcast::Same, &next)?;
        bt.submit()?;
        acc = next;
    }
    Ok(acc)
}

/// `E` (every motion module) or `down=E,mid=E,up=E` (any subset; the rest stay 1).
pub fn parse_motion_effect(s: &str) -> Result<MotionEffect> {
    let num = |v: &str| -> Result<f32> {
        v.trim().parse::<f32>().ok().filter(|e| e.is_finite()).ok_or_else(|| Error::input("motion effect", format!("`{v}` is not a finite number")))
    };
    if !s.contains('=') {
        return Ok(MotionEffect::uniform(num(s)?));
    }
    let mut e = MotionEffect::NONE;
    for part in s.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| Error::input("motion effect", format!("`{part}`: expected down=E, mid=E or up=E")))?;
        let slot = match k.trim() {
            "down" => &mut e.down,
            "mid" => &mut e.mid,
            "up" => &mut e.up,
            other => return Err(Error::input("motion effect", format!("unknown block group `{other}` (down, mid, up)"))),
        };
        *slot = num(v)?;
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn motion_effect_syntax() {
        assert_eq!(parse_motion_effect("0.5").unwrap(), MotionEffect::uniform(0.5));
        assert_eq!(parse_motion_effect("down=0.3, up=0.7").unwrap(), MotionEffect { down: 0.3, mid: 1.0, up: 0.7 });
        assert!(parse_motion_effect("left=1").is_err());
        assert!(parse_motion_effect("nan").is_err());
    }

    #[test]
    fn repeat_and_random_noise() {
        let (c, f, hw) = (2, 5, 3);
        let orig: Vec<f32> = (0..c * f * hw).map(|v| v as f32).collect();
        let mut g = TorchGenerator::new(0);
        let mut z = orig.clone();
        free_noise_latents(&mut z, c, f, 2, 1, NoiseType::Random, &mut g);
        assert_eq!(z, orig);
        free_noise_latents(&mut z, c, f, 2, 1, NoiseType::RepeatContext, &mut g);
        for ch in 0..c {
            for fr in 0..f {
                let at = |x: usize| (ch * f + x) * hw;
                assert_eq!(z[at(fr)..at(fr) + hw], orig[at(fr % 2)..at(fr % 2) + hw], "channel {ch} frame {fr}");
            }
        }
    }

    #[test]
    fn ordered_halving_sequence() {
        let v: Vec<f64> = (0..5).map(ordered_halving).collect();
        assert_eq!(v, vec![0.0, 0.5, 0.25, 0.75, 0.125]);
    }

    #[test]
    fn pyramid_and_sawtooth_weights() {
        assert_eq!(FuseMethod::Pyramid.weights(4), vec![1.0, 2.0, 2.0, 1.0]);
        assert_eq!(FuseMethod::Pyramid.weights(5), vec![1.0, 2.0, 3.0, 2.0, 1.0]);
        assert_eq!(FuseMethod::DelayedReverseSawtooth.weights(4), vec![0.01, 2.0, 2.0, 1.0]);
        // odd n: diffusers/ADE build n + 1 weights (a bug); here the first 0.01 is dropped
        assert_eq!(FuseMethod::DelayedReverseSawtooth.weights(5), vec![0.01, 0.01, 3.0, 2.0, 1.0]);
    }
}
