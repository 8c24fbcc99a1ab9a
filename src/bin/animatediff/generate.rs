//! `animatediff generate`: text → GIF (and optionally frames / latents as safetensors, PNGs)
//! with any SD1.5 model and any AnimateDiff motion module.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use animatediff_wgpu::gpu::Gpu;
use animatediff_wgpu::model::motion::MotionNorm;
use animatediff_wgpu::pipeline::fit;
use animatediff_wgpu::pipeline::generate::{GenerateParams, Hooks, InitLatents, Progress};
use animatediff_wgpu::pipeline::load::{build_models_with, default_unet_options, Weights, open_pipeline, ModelPaths, Precision};
use animatediff_wgpu::pipeline::sampler::{recipe_config, SchedulerKind};
use animatediff_wgpu::model::UNetOptions;
use animatediff_wgpu::pipeline::scheduler::{SchedulerConfig, TimestepSpacing};
use animatediff_wgpu::pipeline::{context, gif, prompt_travel, rng};
use clap::{Args, ValueEnum};

use crate::cli::DeviceArgs;

#[derive(Clone, Copy, ValueEnum)]
pub enum Spacing {
    Linspace,
    Leading,
    Trailing,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum NormArg {
    Diffusers,
    Original,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PrecisionArg {
    F32,
    F16,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum WeightsArg {
    Dense,
    Q8,
    Q4,
}

/// Which model files to load: shared by `generate` and `quantize`.
#[derive(Args)]
pub struct ModelArgs {
    /// SD1.5 model: LDM single file (.safetensors / .ckpt) or diffusers folder.
    #[arg(long)]
    pub model: PathBuf,
    /// VAE file or diffusers folder (for "noVAE" checkpoints, or to replace the model's).
    #[arg(long)]
    pub vae: Option<PathBuf>,
    /// Motion module: original AnimateDiff .ckpt/.safetensors, diffusers file or MotionAdapter
    /// folder; default: the model folder's `motion_adapter/` (not with a file from
    /// `animatediff quantize`, which holds its own).
    #[arg(long)]
    pub motion: Option<PathBuf>,
    /// diffusers folder with unet/vae/text_encoder configs for a single-file model (what
    /// shapes cannot tell, e.g. attention heads); SD1.5's values otherwise.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// MotionAdapter folder or config.json describing the motion module (heads, groups).
    #[arg(long)]
    pub motion_config: Option<PathBuf>,
    /// LoRA (kohya/A1111 or diffusers/PEFT; UNet and/or text encoder) with its weight,
    /// `FILE[:WEIGHT]` (default 1); repeatable.
    #[arg(long, value_name = "FILE[:WEIGHT]", value_parser = parse_lora)]
    pub lora: Vec<(PathBuf, f32)>,
    /// Motion LoRA (AnimateDiff MotionLoRA .ckpt, diffusers format) or the v3 domain adapter,
    /// `FILE[:WEIGHT]` (default 1); repeatable.
    #[arg(long, value_name = "FILE[:WEIGHT]", value_parser = parse_lora)]
    pub motion_lora: Vec<(PathBuf, f32)>,
}

impl ModelArgs {
    /// The files as [`ModelPaths`]. Without `--motion`, a diffusers AnimateDiff pipeline
    /// folder's `motion_adapter/` is used (what `AnimateDiffPipeline.save_pretrained` writes);
    /// a file from `animatediff quantize` holds its own motion modules.
    pub fn paths(&self) -> ModelPaths {
        let motion = match &self.motion {
            Some(m) => m.clone(),
            None if self.model.join("motion_adapter").is_dir() => self.model.join("motion_adapter"),
            None => PathBuf::new(),
        };
        let loras = self.lora.iter().chain(&self.motion_lora).cloned().collect();
        // `..Default::default()`: ModelPaths grows without breaking this call.
        #[allow(clippy::needless_update)]
        ModelPaths { model: self.model.clone(), vae: self.vae.clone(), motion, config: self.config.clone(), motion_config: self.motion_config.clone(), loras, ..Default::default() }
    }
}

/// `FILE[:WEIGHT]`; a suffix that is not a number stays part of the path (`C:\x.safetensors`).
fn parse_lora(s: &str) -> Result<(PathBuf, f32), String> {
    if let Some((f, w)) = s.rsplit_once(':') {
        if let Ok(w) = w.trim().parse::<f32>() {
            if !w.is_finite() {
                return Err(format!("LoRA weight `{w}` is not finite"));
            }
            return Ok((PathBuf::from(f), w));
        }
    }
    Ok((PathBuf::from(s), 1.0))
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub models: ModelArgs,
    /// Sampler: ddim, euler (AnimateDiff-Lightning: trailing spacing, linear betas, use with
    /// --guidance 1 and the checkpoint's step count) or lcm (AnimateLCM). Default: the model's
    /// scheduler config (DDIM).
    #[arg(long, value_parser = parse_scheduler)]
    pub scheduler: Option<SchedulerKind>,
    /// Prompt; repeat as `--prompt "0:a cat sitting" --prompt "8:a cat running"` for prompt
    /// travel (per-frame embeddings interpolated between keyframes; no `N:` prefix = frame 0).
    #[arg(long, required = true)]
    pub prompt: Vec<String>,
    /// Negative prompt; keyframed like --prompt.
    #[arg(long)]
    pub negative_prompt: Vec<String>,
    /// Prompt-travel interpolation between keyframes: lerp (diffusers) or slerp (A1111).
    #[arg(long, default_value = "lerp", value_parser = ["lerp", "slerp"])]
    pub prompt_interpolation: String,
    /// FreeNoise: sliding windows of this many frames inside the motion modules' temporal
    /// attentions (≤ the module's positions, e.g. 16), for videos longer than the module.
    #[arg(long)]
    pub free_noise_length: Option<usize>,
    /// FreeNoise: frames between window starts.
    #[arg(long, default_value_t = 4)]
    pub free_noise_stride: usize,
    /// FreeNoise window weights: pyramid, flat or delayed_reverse_sawtooth.
    #[arg(long, default_value = "pyramid")]
    pub free_noise_weights: String,
    /// FreeNoise initial noise (seeded runs): shuffle_context, repeat_context or random.
    #[arg(long, default_value = "shuffle_context")]
    pub noise_type: String,
    /// Context windows: run the whole UNet on windows of this many frames each step and fuse
    /// them (memory of one window; ComfyUI-AnimateDiff-Evolved's looped uniform schedule).
    #[arg(long)]
    pub context_length: Option<usize>,
    /// Context windows: strided levels (1 = contiguous windows only).
    #[arg(long, default_value_t = 1)]
    pub context_stride: usize,
    /// Context windows: frames shared by consecutive windows.
    #[arg(long, default_value_t = 4)]
    pub context_overlap: usize,
    /// Context windows may wrap from the last frames to the first (looping video).
    #[arg(long)]
    pub closed_loop: bool,
    /// Context-window fusion: pyramid, flat or delayed_reverse_sawtooth.
    #[arg(long, default_value = "pyramid")]
    pub context_fuse: String,
    /// Motion effect: out = x + E·(motion_module(x) − x); `E` or `down=E,mid=E,up=E`.
    #[arg(long, default_value = "1")]
    pub motion_effect: String,
    #[arg(long, default_value_t = 16)]
    pub frames: usize,
    #[arg(long, default_value_t = 512)]
    pub width: usize,
    #[arg(long, default_value_t = 512)]
    pub height: usize,
    #[arg(long, default_value_t = 25)]
    pub steps: usize,
    /// Classifier-free guidance scale (≤ 1 disables the unconditional pass).
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f32,
    /// Seed for torch-compatible initial noise (random when neither --seed nor --latents).
    #[arg(long, conflicts_with = "latents")]
    pub seed: Option<u64>,
    /// Initial latents: safetensors with tensor "latents" [1, 4, F, H/8, W/8].
    #[arg(long)]
    pub latents: Option<PathBuf>,
    /// Overrides the scheduler config's timestep spacing.
    #[arg(long, value_enum)]
    pub timestep_spacing: Option<Spacing>,
    /// Overrides `set_alpha_to_one` (`--set-alpha-to-one` alone means true).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub set_alpha_to_one: Option<bool>,
    /// Motion-module GroupNorm: diffusers (joint over frames) or original (per frame). Default:
    /// the loaded motion module's family (original files → original).
    #[arg(long, value_enum)]
    pub motion_norm: Option<NormArg>,
    /// Motion scale: multiplies K in the temporal attentions (> 1 sharper, < 1 smoother motion).
    #[arg(long, default_value_t = 1.0)]
    pub motion_scale: f32,
    /// Weights/activations of the UNet and text encoder (the VAE runs in f32 unless the memory
    /// plan needs it in f16).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    /// GEMM weights of the UNet, motion modules and text encoder: dense (in --precision) or
    /// quantized on load on the GPU (q8: int8; q4: int4 groups, see the policy table).
    #[arg(long, value_enum, default_value = "dense")]
    pub weights: WeightsArg,
    /// GPU memory this run may use, in bytes: the memory plan (`animatediff plan`) then picks
    /// the cheapest levers that fit it (VAE decode chunk, text encoder / VAE off the GPU
    /// between uses, CFG halves as two passes, chunked feed-forwards, earlier batch flushes,
    /// f16 VAE for f16 runs), or says what would fit.
    /// Default: only the adapter's buffer limits.
    #[arg(long, value_name = "BYTES")]
    pub memory_budget: Option<u64>,
    /// Time every kernel on the GPU (pass timestamp queries; needs timestamp-query) and print
    /// the GPU time per kernel over the whole generation.
    #[arg(long)]
    pub profile: bool,
    /// diffusers' clip_skip (A1111 "CLIP skip 2" = 1).
    #[arg(long, default_value_t = 0)]
    pub clip_skip: usize,
    #[arg(long, default_value = "out.gif")]
    pub out: PathBuf,
    /// Also write frames [F, H, W, 3] f32 in [0, 1] as safetensors (tensor "frames").
    #[arg(long)]
    pub save_frames: Option<PathBuf>,
    /// Also write the final latents [1, 4, F, H/8, W/8] (before the VAE), tensor "latents".
    #[arg(long)]
    pub save_latents: Option<PathBuf>,
    /// Also write one PNG per frame into this folder.
    #[arg(long)]
    pub png_dir: Option<PathBuf>,
    /// Stop after denoising: write only the `--save-latents` file (no VAE decode, no GIF),
    /// e.g. to decode later with another VAE.
    #[arg(long, requires = "save_latents", conflicts_with_all = ["png_dir", "save_frames"])]
    pub no_decode: bool,
    #[arg(long, default_value_t = 8.0)]
    pub fps: f32,
}

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

fn parse_scheduler(s: &str) -> Result<SchedulerKind, String> {
    s.parse().map_err(|e: animatediff_wgpu::pipeline::scheduler::SchedulerError| e.to_string())
}

fn read_latents(path: &Path, want: &[usize]) -> BoxResult<Vec<f32>> {
    use animatediff_wgpu::load::archive::TensorArchive;
    let a = TensorArchive::open_path(path)?;
    let t = a.read_f32("latents").map_err(|e| format!("{e} (expected a tensor named \"latents\" {want:?})"))?;
    if t.shape != want {
        return Err(format!("{}: tensor \"latents\" has shape {:?}, expected {want:?} for these --frames/--height/--width", path.display(), t.shape).into());
    }
    Ok(t.data)
}

fn write_tensor(path: &Path, name: &str, shape: &[usize], data: &[f32]) -> BoxResult<()> {
    let bytes: &[u8] = bytemuck::cast_slice(data);
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), bytes)?;
    safetensors::serialize_to_file([(name, view)], None, path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

fn progress_bar(p: Progress) {
    let width = 30;
    let done = width * p.step / p.steps.max(1);
    let per = p.elapsed.as_secs_f64() / p.step.max(1) as f64;
    let eta = per * (p.steps - p.step) as f64;
    let line = format!("step {:>3}/{} [{}{}] t={:<4} {:.2} s/step, ETA {:.0} s ", p.step, p.steps, "#".repeat(done), " ".repeat(width - done), p.timestep, per, eta);
    // A terminal gets one line redrawn in place; a log file or pipe one line per step.
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprint!("\r{line}");
        if p.step == p.steps {
            eprintln!();
        }
    } else {
        eprintln!("{}", line.trim_end());
    }
    let _ = std::io::stderr().flush();
}

/// The generation parameters the arguments describe (all but the initial latents, which
/// `run` reads from `--latents` or draws from `--seed`), for a model whose scheduler config
/// is `scheduler` and whose motion module asks for `unet` options. Pure: no file, no GPU
/// (the CLI fuzz target calls it on arbitrary arguments).
pub fn params(a: &GenerateArgs, scheduler: &SchedulerConfig, unet: UNetOptions) -> BoxResult<GenerateParams> {
    let mut sched = match a.scheduler {
        Some(k) => recipe_config(scheduler, k),
        None => scheduler.clone(),
    };
    if let Some(s) = a.timestep_spacing {
        sched.timestep_spacing = match s {
            Spacing::Linspace => TimestepSpacing::Linspace,
            Spacing::Leading => TimestepSpacing::Leading,
            Spacing::Trailing => TimestepSpacing::Trailing,
        };
    }
    if let Some(v) = a.set_alpha_to_one {
        sched.set_alpha_to_one = v;
    }
    let prompts = prompt_travel::parse_keyframes("prompt", &a.prompt)?;
    let negatives = prompt_travel::parse_keyframes("negative prompt", &a.negative_prompt)?;
    let first = |keys: &[prompt_travel::Keyframe]| keys.first().map(|k| k.text.clone()).unwrap_or_default();
    let travels = |keys: &[prompt_travel::Keyframe]| keys.len() > 1 || keys.iter().any(|k| k.frame > 0);
    let mut p = GenerateParams::new(first(&prompts), sched);
    p.negative_prompt = first(&negatives);
    if travels(&prompts) || travels(&negatives) {
        (p.prompt_travel, p.negative_travel) = (prompts, negatives);
    }
    p.interpolation = prompt_travel::Interpolation::parse(&a.prompt_interpolation)?;
    if let Some(k) = a.scheduler {
        p.scheduler_kind = k;
    }
    (p.frames, p.width, p.height, p.steps, p.guidance_scale, p.clip_skip) = (a.frames, a.width, a.height, a.steps, a.guidance, a.clip_skip);
    p.decode = !a.no_decode;
    p.unet = unet;
    p.unet.motion_scale = a.motion_scale;
    p.unet.motion_effect = context::parse_motion_effect(&a.motion_effect)?;
    if let Some(length) = a.free_noise_length {
        p.unet.free_noise = Some(context::TemporalWindows { length, stride: a.free_noise_stride, weighting: context::FuseMethod::parse(&a.free_noise_weights)? });
    }
    p.noise_type = context::NoiseType::parse(&a.noise_type)?;
    if let Some(length) = a.context_length {
        p.context = Some(context::ContextWindows { length, stride: a.context_stride, overlap: a.context_overlap, closed_loop: a.closed_loop, fuse: context::FuseMethod::parse(&a.context_fuse)? });
    }
    if let Some(n) = a.motion_norm {
        p.unet.motion_norm = match n {
            NormArg::Diffusers => MotionNorm::Diffusers,
            NormArg::Original => MotionNorm::Original,
        };
    }
    if a.width == 0 || a.height == 0 || !a.width.is_multiple_of(8) || !a.height.is_multiple_of(8) {
        return Err(format!("--width {} / --height {} must be positive multiples of 8", a.width, a.height).into());
    }
    Ok(p)
}

pub fn run(a: GenerateArgs) -> BoxResult<()> {
    let t0 = Instant::now();
    let paths = a.models.paths();
    let host = open_pipeline(&paths)?;
    for line in &host.description {
        eprintln!("{line}");
    }
    let mut p = params(&a, &host.scheduler, default_unet_options(&host.motion))?;
    p.init = match (&a.latents, a.seed) {
        (Some(path), _) => InitLatents::Tensor(read_latents(path, &[1, 4, a.frames, a.height / 8, a.width / 8])?),
        (None, Some(seed)) => InitLatents::Seed(seed),
        (None, None) => {
            // Any 53-bit value: printed so the run can be reproduced with --seed.
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
            let seed = rng::Mt19937::new(nanos).next_u32() as u64;
            eprintln!("seed: {seed}");
            InitLatents::Seed(seed)
        }
    };

    let gpu = pollster::block_on(Gpu::new(a.device.options()))?;
    eprintln!("adapter: {} ({})", gpu.info().adapter_name, gpu.info().backend);
    let precision = match a.precision {
        PrecisionArg::F32 => Precision::F32,
        PrecisionArg::F16 => Precision::F16,
    };
    let weights = match a.weights {
        WeightsArg::Dense => Weights::Dense,
        WeightsArg::Q8 => Weights::Q8,
        WeightsArg::Q4 => Weights::Q4,
    };
    let models = build_models_with(&gpu, &host.components(), precision, weights)?;
    models.validate(&p)?;
    eprintln!("loaded in {:.1} s; GPU memory {:.1} MiB", t0.elapsed().as_secs_f64(), gpu.memory().live_bytes as f64 / (1 << 20) as f64);
    // Levers from the memory plan: what fits this adapter's limits (and --memory-budget);
    // out of memory anyway → the next smaller plan, or what would fit.
    let limits = fit::device_limits(&gpu, a.memory_budget);
    let mut after_step = |s: Progress| {
        progress_bar(s);
        Ok(())
    };
    let mut hooks = Hooks { after_step: &mut after_step, preview: None, cancel: None };
    if a.profile {
        gpu.start_profile()?;
    }
    let out = pollster::block_on(fit::generate_fitted(fit::Loaded { models: &models, host: &host, weights }, &gpu, limits, &mut p, &mut hooks, &mut |plan, why| eprintln!("{}", fit::describe(plan, why))))?;
    let (f, h, w) = (out.frame_count, out.height, out.width);
    if a.profile {
        eprint!("{}", crate::bench::profile_table("whole generation", &pollster::block_on(gpu.take_profile())?));
    }

    if p.decode {
        let gif_bytes = gif::encode_gif_f32(&out.frames, f, h, w, a.fps)?;
        gif::write_file(&a.out, &gif_bytes)?;
        eprintln!("wrote {} ({f} frames, {w}×{h}, {} fps)", a.out.display(), a.fps);
    }
    if let Some(dir) = &a.png_dir {
        gif::write_png_frames(dir, &gif::frames_to_u8(&out.frames), f, h, w)?;
        eprintln!("wrote {f} PNG frames to {}", dir.display());
    }
    if let Some(path) = &a.save_frames {
        write_tensor(path, "frames", &[f, h, w, 3], &out.frames)?;
    }
    if let Some(path) = &a.save_latents {
        write_tensor(path, "latents", &[1, 4, f, h / 8, w / 8], &out.latents)?;
    }
    eprintln!("total {:.1} s, peak GPU memory {:.1} MiB", t0.elapsed().as_secs_f64(), gpu.memory().peak_bytes as f64 / (1 << 20) as f64);
    Ok(())
}
