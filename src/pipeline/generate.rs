//! Text → video with classifier-free guidance, as diffusers' `AnimateDiffPipeline`:
//! encode `[negative, prompt]`, denoise `[1, 4, F, H/8, W/8]` latents with the UNet + motion
//! modules and a scheduler, decode frame by frame with the VAE.
//!
//! The latents stay on the GPU in f32 (`[F, h, w, 4]` channels-last); guidance and the
//! scheduler update are single elementwise kernels per step.

use std::sync::Mutex;

use web_time::{Duration, Instant};

use super::context::{free_noise_latents, windowed_eps, ContextWindows, NoiseType};
use super::prompt_travel::{self, Interpolation, Keyframe};
use super::rng::TorchGenerator;
use super::sampler::{make_sampler, SchedulerKind};
use super::scheduler::SchedulerConfig;
use super::tokenizer::ClipTokenizer;
use crate::gpu::{DType, Gpu, Tensor};
use crate::model::nn::{alloc, layout};
use crate::model::offload::Offloadable;
use crate::model::{ClipTextModel, Decoder, UNet, UNetOptions};
use crate::ops::{self, Broadcast};
use crate::{Error, Result};

/// The three networks of a pipeline. The text encoder and the VAE decoder may leave the
/// device between uses (memory levers: [`GenerateParams::offload_text_encoder`],
/// [`GenerateParams::offload_vae`]).
pub struct Models {
    pub text_encoder: Offloadable<ClipTextModel>,
    pub unet: UNet,
    pub vae: Offloadable<Decoder>,
    /// The last prompts' embeddings, on the host (same prompts → no text encoder run, nor its
    /// upload when it is offloaded; nothing stays on the device between runs).
    prompt_cache: Mutex<Option<PromptCache>>,
}

/// Token ids and `clip_skip` → embeddings (values of the UNet's storage type, as f32).
struct PromptCache {
    ids: Vec<u32>,
    clip_skip: usize,
    dims: Vec<usize>,
    context: Vec<f32>,
}

/// Where the initial noise comes from.
#[derive(Debug, Clone)]
pub enum InitLatents {
    /// `torch.randn([1, 4, F, H/8, W/8], generator=torch.Generator("cpu").manual_seed(seed))`.
    Seed(u64),
    /// Explicit latents in diffusers' layout `[1, 4, F, H/8, W/8]` (row-major).
    Tensor(Vec<f32>),
}

/// Everything a generation needs besides the models.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    pub prompt: String,
    pub negative_prompt: String,
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub guidance_scale: f32,
    pub init: InitLatents,
    pub scheduler: SchedulerConfig,
    /// Which sampler runs `scheduler` (DDIM, Euler discrete, LCM); see
    /// [`super::sampler::recipe_config`] for the Lightning / AnimateLCM settings.
    pub scheduler_kind: SchedulerKind,
    /// Seed of the torch generator for stochastic schedulers' step noise (LCM) when the initial
    /// latents are explicit (`InitLatents::Tensor`). With `InitLatents::Seed` the noise
    /// continues that seed's generator after the initial latents, as diffusers does with one
    /// `generator`.
    pub noise_seed: u64,
    pub unet: UNetOptions,
    /// diffusers' `clip_skip` (0 = last layer).
    pub clip_skip: usize,
    /// Frames per VAE decode call.
    pub decode_chunk: usize,
    /// Prompt travel: prompts by frame (replace `prompt` when not empty); embeddings are
    /// interpolated between keyframes ([`super::prompt_travel`]).
    pub prompt_travel: Vec<Keyframe>,
    /// Negative prompts by frame (replace `negative_prompt` when not empty).
    pub negative_travel: Vec<Keyframe>,
    pub interpolation: Interpolation,
    /// Whole-UNet context windows, fused every step ([`super::context`]); used when the video
    /// is longer than a window.
    pub context: Option<ContextWindows>,
    /// FreeNoise's initial noise for seeded runs with `unet.free_noise` set.
    pub noise_type: NoiseType,
    /// Run the guidance halves (uncond, cond) as two UNet passes of F images instead of one
    /// of 2F: half the activation memory, same results (every norm and attention is per
    /// video). `crate::plan::choose` sets it when a request does not fit otherwise.
    pub cfg_split: bool,
    /// Decode the final latents with the VAE (false: `Output::frames` stays empty; for callers
    /// that only want the latents, e.g. `generate --no-decode --save-latents`).
    pub decode: bool,
    /// Drop the text encoder's device weights after encoding; the next encode of other
    /// prompts uploads them again from a host copy (same results).
    pub offload_text_encoder: bool,
    /// Keep the VAE decoder's weights on the device only while decoding (same results).
    pub offload_vae: bool,
    /// Decode in f16 (VAE weights and activations; f32 accumulation and frames). Needs
    /// shader-f16; within f16 tolerances of the f32 decode.
    pub vae_f16: bool,
    /// Run GEGLU feed-forwards over chunks of tokens so their `[tokens, 4·C]` intermediate
    /// stays within this many bytes (0: whole; same results).
    pub ff_chunk_bytes: u64,
    /// Dropped bytes a command batch may hold before it is submitted early (0: the device's
    /// [`crate::gpu::MemoryStats::batch_flush_bytes`]).
    pub batch_flush_bytes: u64,
}

impl GenerateParams {
    /// diffusers' defaults: 16 frames, 512×512, 25 steps (AnimateDiff's configs), CFG 7.5.
    pub fn new(prompt: impl Into<String>, scheduler: SchedulerConfig) -> GenerateParams {
        GenerateParams {
            prompt: prompt.into(),
            negative_prompt: String::new(),
            frames: 16,
            width: 512,
            height: 512,
            steps: 25,
            guidance_scale: 7.5,
            init: InitLatents::Seed(0),
            scheduler_kind: scheduler.kind().unwrap_or_default(),
            scheduler,
            noise_seed: 0,
            unet: UNetOptions::default(),
            clip_skip: 0,
            decode_chunk: 16,
            prompt_travel: Vec::new(),
            negative_travel: Vec::new(),
            interpolation: Interpolation::Lerp,
            context: None,
            noise_type: NoiseType::ShuffleContext,
            cfg_split: false,
            decode: true,
            offload_text_encoder: false,
            offload_vae: false,
            vae_f16: false,
            ff_chunk_bytes: 0,
            batch_flush_bytes: 0,
        }
    }

    /// Check the parameters against a UNet (and motion module) config, before any GPU work:
    /// a typed error naming the parameter, never a panic later.
    pub fn validate(&self, unet: &crate::model::UNetConfig, motion: Option<&crate::model::MotionConfig>) -> Result<()> {
        let levels = unet.block_out_channels.len();
        let m = (1usize << levels.saturating_sub(1).min(16)) * 8;
        for (name, v) in [("width", self.width), ("height", self.height)] {
            if v == 0 || v % 8 != 0 || v > MAX_SIDE {
                return Err(Error::input(name, format!("{v} is not a positive multiple of 8 up to {MAX_SIDE}")));
            }
            if v % m != 0 {
                return Err(Error::input(name, format!("{v} must be a multiple of {m} for this UNet's {levels} levels")));
            }
        }
        if self.frames == 0 || self.frames > MAX_FRAMES {
            return Err(Error::input("frames", format!("{} is not from 1 to {MAX_FRAMES}", self.frames)));
        }
        if let Some(c) = &self.context {
            c.validate()?;
        }
        if let Some(mc) = motion {
            let max = mc.motion_max_seq_length;
            if let Some(w) = &self.unet.free_noise {
                w.validate(max)?;
            }
            // Frames one UNet call sees, then what its motion modules attend over at once.
            let seen = match &self.context {
                Some(c) if c.active(self.frames) => c.length,
                _ => self.frames,
            };
            let attended = match &self.unet.free_noise {
                Some(w) if seen > w.length => w.length,
                _ => seen,
            };
            if attended > max {
                return Err(Error::input("frames", format!("{} frames exceed the motion module's {max} positions (use context windows or FreeNoise with a length ≤ {max})", self.frames)));
            }
        }
        for (name, keys) in [("prompt", &self.prompt_travel), ("negative prompt", &self.negative_travel)] {
            if !keys.is_empty() {
                prompt_travel::check_keyframes(name, keys, self.frames)?;
            }
        }
        if self.steps == 0 || self.steps > self.scheduler.num_train_timesteps {
            return Err(Error::input("steps", format!("{} must be in 1..={}", self.steps, self.scheduler.num_train_timesteps)));
        }
        if !self.guidance_scale.is_finite() {
            return Err(Error::input("guidance", "must be finite"));
        }
        if let InitLatents::Tensor(t) = &self.init {
            let want = [self.frames, self.height / 8, self.width / 8].iter().fold(4usize, |n, &d| n.saturating_mul(d));
            if t.len() != want {
                return Err(Error::input("latents", format!("{} values, expected [1, 4, {}, {}, {}] = {want}", t.len(), self.frames, self.height / 8, self.width / 8)));
            }
        }
        Ok(())
    }
}

/// Limits far beyond any SD1.5 video (a 16384² frame is 1 GiB of f32 pixels), so that the
/// sizes derived from a request never overflow and a typo is an error, not an allocation
/// failure minutes later (context windows and FreeNoise allow any number of frames).
pub const MAX_FRAMES: usize = 10_000;
pub const MAX_SIDE: usize = 16_384;

/// Progress report after each denoising step.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub step: usize,
    pub steps: usize,
    pub timestep: u32,
    pub elapsed: Duration,
}

/// A finished generation.
pub struct Output {
    /// `[F, H, W, 3]` in `[0, 1]`.
    pub frames: Vec<f32>,
    pub frame_count: usize,
    pub width: usize,
    pub height: usize,
    /// Final latents (before the VAE) in diffusers' layout `[1, 4, F, H/8, W/8]`.
    pub latents: Vec<f32>,
    /// Timesteps used.
    pub timesteps: Vec<u32>,
}

impl Models {
    pub fn new(text_encoder: Offloadable<ClipTextModel>, unet: UNet, vae: Offloadable<Decoder>) -> Models {
        Models { text_encoder, unet, vae, prompt_cache: Mutex::new(None) }
    }

    fn cache(&self) -> Result<std::sync::MutexGuard<'_, Option<PromptCache>>> {
        self.prompt_cache.lock().map_err(|_| Error::input("prompt cache", "a previous call panicked while using it"))
    }

    /// Check the parameters against these models before any GPU work.
    pub fn validate(&self, p: &GenerateParams) -> Result<()> {
        p.validate(self.unet.config(), self.unet.motion_config())
    }

    /// Text embeddings `[B, 77, D]`: `[negative, prompt]` with guidance, `[prompt]` without.
    /// The last result is cached: the same prompts again cost nothing.
    pub async fn encode_prompts(&self, gpu: &Gpu, p: &GenerateParams) -> Result<Tensor> {
        let tok = ClipTokenizer::new().map_err(|e| Error::input("tokenizer", e.to_string()))?;
        let mut ids = Vec::new();
        if uses_cfg(p.guidance_scale) {
            ids.extend(tok.encode_padded(&p.negative_prompt, 77));
        }
        ids.extend(tok.encode_padded(&p.prompt, 77));
        if let Some(c) = self.cache()?.as_ref().filter(|c| c.ids == ids && c.clip_skip == p.clip_skip) {
            return Ok(gpu.upload_f32_as(&c.context, c.dims.clone(), self.unet.dtype(), "context")?);
        }
        self.text_encoder.restore(gpu).await?;
        let ctx = self.text_encoder.with(|m| m.forward(gpu, &ids, 77, p.clip_skip))?;
        let ctx = if ctx.dtype() == self.unet.dtype() {
            ctx
        } else {
            let mut bt = gpu.batch("context.convert");
            let c = alloc(gpu, ctx.dims(), self.unet.dtype(), "context")?;
            ops::convert(&mut bt, &ctx, &c)?;
            bt.submit()?;
            c
        };
        let context = gpu.read_f32(&ctx).await?;
        *self.cache()? = Some(PromptCache { ids, clip_skip: p.clip_skip, dims: ctx.dims().to_vec(), context });
        Ok(ctx)
    }

    /// Per-frame text embeddings `[B·F, 77, D]` for prompt travel (`[negative; prompt]` rows,
    /// each interpolated between its keyframes, as diffusers' `_encode_prompt_free_noise`).
    pub async fn encode_travel(&self, gpu: &Gpu, p: &GenerateParams) -> Result<Tensor> {
        let tok = ClipTokenizer::new().map_err(|e| Error::input("tokenizer", e.to_string()))?;
        let keyed = |keys: &Vec<Keyframe>, text: &str| if keys.is_empty() { vec![Keyframe { frame: 0, text: text.to_string() }] } else { keys.clone() };
        let mut sets = Vec::new();
        if uses_cfg(p.guidance_scale) {
            sets.push(keyed(&p.negative_travel, &p.negative_prompt));
        }
        sets.push(keyed(&p.prompt_travel, &p.prompt));
        let mut rows = Vec::new();
        let mut d = 0;
        for keys in &sets {
            let ids: Vec<u32> = keys.iter().flat_map(|k| tok.encode_padded(&k.text, 77)).collect();
            self.text_encoder.restore(gpu).await?;
            let emb = self.text_encoder.with(|m| m.forward(gpu, &ids, 77, p.clip_skip))?;
            d = emb.dims()[2];
            let host = gpu.read_f32(&emb).await?;
            let frames: Vec<usize> = keys.iter().map(|k| k.frame).collect();
            rows.extend(prompt_travel::interpolate(&host, 77 * d, &prompt_travel::frame_plan(&frames, p.frames), p.interpolation));
        }
        Ok(gpu.upload_f32_as(&rows, [sets.len() * p.frames, 77, d], self.unet.dtype(), "context.per_frame")?)
    }

    /// The UNet's ε for one step: one call, or fused context windows when `p.context` splits
    /// the video (f32 then).
    #[allow(clippy::too_many_arguments)]
    fn unet_eps(&self, gpu: &Gpu, input: &Tensor, t: f32, context: &Tensor, frames: usize, step: usize, p: &GenerateParams) -> Result<Tensor> {
        match &p.context {
            Some(c) if c.active(frames) => windowed_eps(&self.unet, gpu, input, t, context, frames, step, c, &p.unet),
            _ => self.unet.forward(gpu, input, t, context, frames, &p.unet),
        }
    }

    /// Run the whole pipeline.
    pub async fn generate(&self, gpu: &Gpu, p: &GenerateParams, progress: &mut dyn FnMut(Progress)) -> Result<Output> {
        self.generate_with(gpu, p, &mut |s| {
            progress(s);
            Ok(())
        })
        .await
    }

    /// [`Models::generate`] with a hook after each step that can stop the run (cancellation):
    /// an error it returns ends the generation and is returned unchanged.
    pub async fn generate_with(&self, gpu: &Gpu, p: &GenerateParams, after_step: &mut dyn FnMut(Progress) -> Result<()>) -> Result<Output> {
        self.generate_with_preview(gpu, p, after_step, None).await
    }

    /// [`Models::generate_with`] plus an opt-in live preview: after each step (before
    /// `after_step`) `preview` gets that step's predicted clean latents, read back from the GPU
    /// (`[F, H/8, W/8, 4]`, small). Without it nothing is read back during the loop.
    pub async fn generate_with_preview<'a>(
        &self,
        gpu: &Gpu,
        p: &GenerateParams,
        after_step: &'a mut dyn FnMut(Progress) -> Result<()>,
        preview: Option<&'a mut dyn FnMut(Progress, PreviewLatents)>,
    ) -> Result<Output> {
        self.generate_hooked(gpu, p, &mut Hooks { after_step, preview, cancel: None }).await
    }

    /// Run the whole pipeline with [`Hooks`]: progress, preview, and cancellation at every
    /// cancel point ([`crate::cancel`]: text encoding, each step, inside the VAE decode).
    pub async fn generate_hooked(&self, gpu: &Gpu, p: &GenerateParams, hooks: &mut Hooks<'_>) -> Result<Output> {
        let (after_step, preview, cancel) = (&mut *hooks.after_step, &mut hooks.preview, hooks.cancel);
        self.validate(p)?;
        let (f, h, w) = (p.frames, p.height / 8, p.width / 8);
        let sched = make_sampler(&p.scheduler, p.scheduler_kind, p.steps).map_err(|e| Error::input("scheduler", e.to_string()))?;
        if p.vae_f16 && !gpu.info().shader_f16 {
            return Err(Error::input("vae_f16", "an f16 VAE needs the shader-f16 GPU feature, which this adapter lacks"));
        }
        let _knobs = RunKnobs::set(gpu, p);
        crate::cancel::check(cancel, "start (before text encoding)")?;
        // Memory levers (crate::plan mirrors this order): the VAE leaves before the text
        // encoder runs, the text encoder right after.
        if p.offload_vae {
            self.vae.offload(gpu).await?;
        }
        let context = if p.prompt_travel.is_empty() && p.negative_travel.is_empty() { self.encode_prompts(gpu, p).await? } else { self.encode_travel(gpu, p).await? };
        if p.offload_text_encoder {
            self.text_encoder.offload(gpu).await?;
        }
        crate::cancel::point(gpu, cancel, || "text encoding".into()).await?;
        let cfg = uses_cfg(p.guidance_scale);
        let halves = if cfg && p.cfg_split { Some(context_halves(gpu, &context)?) } else { None };
        let videos = if cfg && halves.is_none() { 2 } else { 1 };

        let mut generator = TorchGenerator::new(match &p.init {
            InitLatents::Seed(seed) => *seed,
            InitLatents::Tensor(_) => p.noise_seed,
        });
        let init = match &p.init {
            InitLatents::Seed(_) => {
                let mut z = generator.randn(&[1, 4, f, h, w]);
                if let Some(win) = &p.unet.free_noise {
                    // diffusers draws FreeNoise's permutations from the same generator.
                    free_noise_latents(&mut z, 4, f, win.length, win.stride, p.noise_type, &mut generator);
                }
                z
            }
            InitLatents::Tensor(t) => t.clone(),
        };
        let init: Vec<f32> = init.iter().map(|v| v * sched.init_noise_sigma()).collect();
        let mut x = gpu.upload_f32(&layout::bcfhw_to_nhwc(&init, 1, 4, f, h, w), [f, h, w, 4], "latents")?;
        let unet_dtype = self.unet.dtype();
        let bytes = x.size_bytes();
        let start = Instant::now();
        let timesteps: Vec<u32> = sched.timesteps().iter().map(|&t| t.round() as u32).collect();
        for (i, &t_unet) in sched.timesteps().iter().enumerate() {
            let t = timesteps[i];
            // UNet input: [s·x; s·x] (uncond, cond) in the UNet's storage type.
            let mut bt = gpu.batch("step.in");
            let input = alloc(gpu, &[videos * f, h, w, 4], DType::F32, "unet.in")?;
            let scale = sched.model_input_scale(i);
            let scaled = if scale == 1.0 {
                None
            } else {
                let s = alloc(gpu, x.dims(), DType::F32, "latents.scaled")?;
                ops::unary(&mut bt, ops::Activation::Identity, scale, &x, &s)?;
                Some(s)
            };
            for v in 0..videos {
                bt.copy_bytes(scaled.as_ref().unwrap_or(&x), 0, &input, v as u64 * bytes, bytes)?;
            }
            let input = if unet_dtype == DType::F32 {
                input
            } else {
                let c = alloc(gpu, input.dims(), unet_dtype, "unet.in")?;
                ops::convert(&mut bt, &input, &c)?;
                c
            };
            bt.submit()?;
            let (mut bt, guided) = if let Some([cu, cc]) = &halves {
                let eu = self.unet_eps(gpu, &input, t_unet, cu, f, i, p)?;
                let ec = self.unet_eps(gpu, &input, t_unet, cc, f, i, p)?;
                let mut bt = gpu.batch("step.update");
                let eu = eps_f32(&mut bt, eu)?;
                let ec = eps_f32(&mut bt, ec)?;
                let g = alloc(gpu, eu.dims(), DType::F32, "eps.guided")?;
                ops::axpby(&mut bt, 1.0 - p.guidance_scale, &eu, p.guidance_scale, &ec, Broadcast::Same, &g)?;
                (bt, g)
            } else {
                let eps = self.unet_eps(gpu, &input, t_unet, &context, f, i, p)?;
                let mut bt = gpu.batch("step.update");
                let eps = eps_f32(&mut bt, eps)?;
                let guided = if cfg {
                    let u = half(&eps, 0, f)?;
                    let c = half(&eps, 1, f)?;
                    let g = alloc(gpu, u.dims(), DType::F32, "eps.guided")?;
                    // u + g·(c − u) = (1 − g)·u + g·c
                    ops::axpby(&mut bt, 1.0 - p.guidance_scale, &u, p.guidance_scale, &c, Broadcast::Same, &g)?;
                    g
                } else {
                    eps
                };
                (bt, guided)
            };
            let k = sched.step(i).map_err(|e| Error::input("scheduler", e.to_string()))?;
            let mut next = alloc(gpu, x.dims(), DType::F32, "latents")?;
            ops::axpby(&mut bt, k.sample, &x, k.eps, &guided, Broadcast::Same, &next)?;
            if k.noise != 0.0 {
                // diffusers: randn_tensor(model_output.shape, generator) inside scheduler.step.
                let z = generator.randn(&[1, 4, f, h, w]);
                let z = gpu.upload_f32(&layout::bcfhw_to_nhwc(&z, 1, 4, f, h, w), [f, h, w, 4], "step.noise")?;
                let noisy = alloc(gpu, x.dims(), DType::F32, "latents")?;
                ops::axpby(&mut bt, 1.0, &next, k.noise, &z, Broadcast::Same, &noisy)?;
                next = noisy;
            }
            let x0 = match preview {
                Some(_) => Some(predicted_original(gpu, &mut bt, &p.scheduler, t_unet, scale, &x, &guided)?),
                None => None,
            };
            bt.submit()?;
            x = next;
            gpu.sync().await?;
            let progress = Progress { step: i + 1, steps: timesteps.len(), timestep: t, elapsed: start.elapsed() };
            if let (Some(cb), Some(x0)) = (preview.as_mut(), x0) {
                let latents = gpu.read_f32(&x0).await?;
                cb(progress, PreviewLatents { latents, frames: f, height: h, width: w });
            }
            after_step(progress)?;
            crate::cancel::check(cancel, &format!("step {} of {}", i + 1, timesteps.len()))?;
        }

        let latents_nhwc = gpu.read_f32(&x).await?;
        let frames = if p.decode {
            self.vae.ensure(gpu, if p.vae_f16 { DType::F16 } else { DType::F32 }).await?;
            let frames_t = self.vae.with_async(async |v| v.decode_to_frames(gpu, &x, p.decode_chunk, cancel).await).await?;
            let frames = gpu.read_f32(&frames_t).await?;
            drop(frames_t);
            if p.offload_vae {
                self.vae.offload(gpu).await?;
            }
            frames
        } else {
            Vec::new()
        };
        Ok(Output {
            frames,
            frame_count: f,
            width: p.width,
            height: p.height,
            latents: layout::nhwc_to_bcfhw(&latents_nhwc, 1, 4, f, h, w),
            timesteps,
        })
    }
}

/// What a caller hooks into a running generation.
pub struct Hooks<'a> {
    /// After each denoising step: progress; an error it returns ends the run unchanged.
    pub after_step: &'a mut dyn FnMut(Progress) -> Result<()>,
    /// Opt-in live preview (see [`Models::generate_with_preview`]).
    pub preview: Option<&'a mut dyn FnMut(Progress, PreviewLatents)>,
    /// Asked at every cancel point; `true` stops the run with [`Error::Cancelled`].
    pub cancel: Option<crate::cancel::CancelCheck<'a>>,
}

/// One step's predicted clean latents for the live preview, channels-last `[F, h, w, 4]`.
pub struct PreviewLatents {
    pub latents: Vec<f32>,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
}

/// The ε-prediction estimate of x₀ from the UNet input `s·x` at timestep `t`:
/// `(s·x − √(1−ᾱ_t)·ε) / √ᾱ_t`. The same formula for DDIM/LCM (s = 1) and Euler
/// (s = 1/√(σ²+1) = √ᾱ_t, where diffusers' `x − σ·ε` is this identity), so no sampler needs to
/// expose it. Fractional Euler timesteps use the nearest ᾱ: it is only a preview.
fn predicted_original(gpu: &Gpu, bt: &mut crate::gpu::Batch, cfg: &SchedulerConfig, t: f32, s: f32, x: &Tensor, eps: &Tensor) -> Result<Tensor> {
    let ac = super::scheduler::alphas_cumprod(&cfg.betas().map_err(|e| Error::input("scheduler", e.to_string()))?);
    let a = ac.get((t.round().max(0.0) as usize).min(ac.len().saturating_sub(1))).copied().unwrap_or(1.0).max(1e-8);
    let out = alloc(gpu, x.dims(), DType::F32, "preview.x0")?;
    ops::axpby(bt, s / a.sqrt(), x, -(1.0 - a).sqrt() / a.sqrt(), eps, Broadcast::Same, &out)?;
    Ok(out)
}

/// SD1.5 latent → RGB, the standard cheap approximation: `rgb = clamp((latent · M + 1) / 2)`
/// with M from ComfyUI (`comfy/latent_formats.py` `SD15.latent_rgb_factors`, applied in
/// `latent_preview.py` `Latent2RGBPreviewer`; rows = latent channels 0–3, columns = R, G, B).
/// Input channels-last `[F, h, w, 4]`; returns one RGBA8 image (`h·w·4` bytes) per frame.
pub fn latent_preview_rgba(latents: &[f32], frames: usize, height: usize, width: usize) -> Vec<Vec<u8>> {
    const M: [[f32; 3]; 4] = [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]];
    let px = height * width;
    (0..frames)
        .map(|f| {
            let mut img = vec![255u8; px * 4];
            for (i, d) in img.chunks_exact_mut(4).enumerate() {
                let Some(l) = latents.get((f * px + i) * 4..(f * px + i) * 4 + 4) else { break };
                for (c, out) in d[..3].iter_mut().enumerate() {
                    let v = (l[0] * M[0][c] + l[1] * M[1][c] + l[2] * M[2][c] + l[3] * M[3][c] + 1.0) / 2.0;
                    // NaN → 0 (`as u8` saturates and maps NaN to 0).
                    *out = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
            img
        })
        .collect()
}

/// A run's execution levers on the device ([`GenerateParams::ff_chunk_bytes`],
/// [`GenerateParams::batch_flush_bytes`]), restored when the run ends.
struct RunKnobs<'g> {
    gpu: &'g Gpu,
    ff_chunk: u64,
    flush: u64,
}

impl<'g> RunKnobs<'g> {
    fn set(gpu: &'g Gpu, p: &GenerateParams) -> RunKnobs<'g> {
        let m = gpu.memory_stats();
        let knobs = RunKnobs { gpu, ff_chunk: m.ff_chunk_bytes(), flush: m.batch_flush_bytes() };
        m.set_ff_chunk_bytes(p.ff_chunk_bytes);
        if p.batch_flush_bytes != 0 {
            m.set_batch_flush_bytes(p.batch_flush_bytes);
        }
        knobs
    }
}

impl Drop for RunKnobs<'_> {
    fn drop(&mut self) {
        let m = self.gpu.memory_stats();
        m.set_ff_chunk_bytes(self.ff_chunk);
        m.set_batch_flush_bytes(self.flush);
    }
}

/// diffusers: guidance applies when `guidance_scale > 1`.
fn uses_cfg(g: f32) -> bool {
    g > 1.0
}

/// The UNet's ε in f32 (the latents' type).
fn eps_f32(bt: &mut crate::gpu::Batch<'_>, eps: Tensor) -> Result<Tensor> {
    if eps.dtype() == DType::F32 {
        return Ok(eps);
    }
    let c = alloc(bt.gpu(), eps.dims(), DType::F32, "eps")?;
    ops::convert(bt, &eps, &c)?;
    Ok(c)
}

/// `[negative, prompt]` embeddings `[2, L, D]` as two `[1, L, D]` tensors (copies: a row
/// offset need not be 256-byte aligned).
fn context_halves(gpu: &Gpu, context: &Tensor) -> Result<[Tensor; 2]> {
    let d = context.dims();
    let bytes = context.size_bytes() / 2;
    let mut bt = gpu.batch("context.halves");
    let mut half_at = |v: u64| -> Result<Tensor> {
        // [1, L, D] per video, or [F, L, D] per frame (prompt travel)
        let c = alloc(gpu, &[d[0] / 2, d[1], d[2]], context.dtype(), "context.half")?;
        bt.copy_bytes(context, v * bytes, &c, 0, bytes)?;
        Ok(c)
    };
    let halves = [half_at(0)?, half_at(1)?];
    bt.submit()?;
    Ok(halves)
}

/// Video `v` (0 = uncond, 1 = cond) of a `[2·F, h, w, C]` tensor.
fn half(t: &Tensor, v: u64, frames: usize) -> Result<Tensor> {
    let d = t.dims();
    t.slice_units(v, 1, 2)
        .and_then(|s| s.reshape(vec![frames, d[1], d[2], d[3]]))
        .ok_or_else(|| Error::input("latents", format!("{t:?} cannot be split into two 256-byte aligned videos")))
}
