//! Memory plan (issue 5): from the model configs and a request, every device buffer the
//! runtime allocates — weights, activations, temporaries — with sizes and lifetimes, the
//! peak, the largest buffer and binding, and the levers that make a request fit.
//!
//! How: [`walk`] replays the runtime's allocation sequence (the UNet/VAE/CLIP forwards and
//! the generation loop, same scopes and batch boundaries) on a simulated device ([`sim`])
//! whose buffers free themselves when dropped, like `GpuBuffer`. The runtime counts the same
//! buffers in `gpu::MemoryStats`, so planned peak == measured peak (tests/memory_plan.rs).
//! Activations are placed in the activation arena (256-byte aligned sub-allocations of a few
//! chunk buffers) by the runtime's own placement code, [`crate::gpu::ArenaLayout`], so the
//! planned chunks are the runtime's. Pure Rust, no GPU.

pub mod sim;
pub mod walk;
pub mod weights;

use crate::gpu::{ArenaConfig, ArenaLayout, DType, ZERO_SLOTS};
use crate::model::quant_policy::QuantPolicy;
use crate::model::{ClipConfig, MotionConfig, UNetConfig, VaeConfig};
use crate::pipeline::load::Weights as WeightFormat;
use crate::pipeline::sampler::Sampler;
use sim::Sim;
use walk::{Env, GenerateWalk, StepShape, UNetWalk};

/// WebGPU's default `max_storage_buffer_binding_size` (128 MiB).
pub const DEFAULT_MAX_BINDING: u64 = 128 << 20;
/// WebGPU's default `max_buffer_size` (256 MiB).
pub const DEFAULT_MAX_BUFFER: u64 = 256 << 20;

/// The models and the generation request.
#[derive(Debug, Clone)]
pub struct Request {
    pub unet: UNetConfig,
    pub motion: Option<MotionConfig>,
    pub vae: VaeConfig,
    pub clip: ClipConfig,
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    /// Classifier-free guidance (guidance scale > 1): two videos per step.
    pub cfg: bool,
    /// Activation (and dense weight) storage type: F32 or F16.
    pub precision: DType,
    pub weights: WeightFormat,
    /// Motion-module GroupNorm jointly over frames (diffusers adapters) or per frame.
    pub motion_joint_norm: bool,
    /// Original v1: ResNet norms jointly over frames.
    pub joint_resnet_norm: bool,
    pub clip_skip: usize,
    /// Per denoising step: scaled input (Euler), fresh noise (LCM). The peak repeats every
    /// step, so one DDIM step (the default) plans the same peak as 25.
    pub steps: Vec<StepShape>,
    /// The final latents are decoded by the VAE (`GenerateParams::decode`).
    pub decode: bool,
}

impl Request {
    /// SD1.5 + AnimateDiff v2 motion module with diffusers' defaults (CFG on, 1 DDIM step).
    pub fn sd15(frames: usize, width: usize, height: usize, precision: DType, weights: WeightFormat) -> Request {
        Request {
            unet: UNetConfig::sd15(),
            motion: Some(MotionConfig::sd15_v2()),
            vae: VaeConfig::sd15(),
            clip: ClipConfig::sd15(),
            frames,
            width,
            height,
            cfg: true,
            precision,
            weights,
            motion_joint_norm: true,
            joint_resnet_norm: false,
            clip_skip: 0,
            steps: vec![StepShape { scaled_input: false, noise: false }],
            decode: true,
        }
    }

    /// The step shapes of a sampler (what `generate` will do each step).
    pub fn steps_of(sampler: &dyn Sampler) -> Vec<StepShape> {
        (0..sampler.len())
            .map(|i| StepShape { scaled_input: sampler.model_input_scale(i) != 1.0, noise: sampler.step(i).map(|s| s.noise != 0.0).unwrap_or(false) })
            .collect()
    }
}

/// Memory levers the runtime executes (`GenerateParams` fields of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levers {
    /// Run the CFG halves as two UNet passes (B = F) instead of one batch (B = 2F).
    pub cfg_split: bool,
    /// Frames per VAE decode call.
    pub decode_chunk: usize,
    /// Drop the text encoder's device weights after encoding (restored from a host copy
    /// when the prompts change).
    pub offload_text_encoder: bool,
    /// VAE decoder weights on the device only while decoding.
    pub offload_vae: bool,
    /// VAE decoder in f16 (only for f16 runs).
    pub vae_f16: bool,
    /// GEGLU feed-forward intermediates of at most this many bytes (0: whole).
    pub ff_chunk_bytes: u64,
    /// Batch flush threshold (0: the device's, 64 MiB by default).
    pub flush_bytes: u64,
}

impl Levers {
    /// No lever pulled: CFG as one batch, the whole video decoded at once, every model
    /// resident, nothing chunked.
    pub fn none(frames: usize) -> Levers {
        Levers { cfg_split: false, decode_chunk: frames.max(1), offload_text_encoder: false, offload_vae: false, vae_f16: false, ff_chunk_bytes: 0, flush_bytes: 0 }
    }

    /// Write these levers into generation parameters.
    pub fn apply_to(&self, p: &mut crate::pipeline::generate::GenerateParams) {
        p.cfg_split = self.cfg_split;
        p.decode_chunk = self.decode_chunk;
        p.offload_text_encoder = self.offload_text_encoder;
        p.offload_vae = self.offload_vae;
        p.vae_f16 = self.vae_f16;
        p.ff_chunk_bytes = self.ff_chunk_bytes;
        p.batch_flush_bytes = self.flush_bytes;
    }
}

impl std::fmt::Display for Levers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b >> 20;
        write!(f, "cfg {}, VAE decode {} frame(s) per call", if self.cfg_split { "split (two UNet passes)" } else { "batched (one UNet pass)" }, self.decode_chunk)?;
        if self.offload_text_encoder {
            write!(f, ", text encoder offloaded after encoding")?;
        }
        if self.offload_vae {
            write!(f, ", VAE resident only while decoding")?;
        }
        if self.vae_f16 {
            write!(f, ", VAE in f16")?;
        }
        if self.ff_chunk_bytes > 0 {
            write!(f, ", feed-forwards in chunks of ≤ {} MiB", mib(self.ff_chunk_bytes))?;
        }
        if self.flush_bytes > 0 {
            write!(f, ", batches flushed past {} MiB of dead buffers", mib(self.flush_bytes))?;
        }
        Ok(())
    }
}

/// Device limits a plan must respect.
#[derive(Debug, Clone, Copy)]
pub struct DeviceLimits {
    pub max_binding: u64,
    pub max_buffer: u64,
    /// Total bytes the run may use (None: no budget).
    pub budget: Option<u64>,
    /// The device's activation arena (`Gpu::arena_config`).
    pub arena: ArenaConfig,
}

impl Default for DeviceLimits {
    fn default() -> DeviceLimits {
        DeviceLimits { max_binding: DEFAULT_MAX_BINDING, max_buffer: DEFAULT_MAX_BUFFER, budget: None, arena: ArenaConfig::from_env() }
    }
}

/// The plan of one request.
#[derive(Debug, Clone)]
pub struct Plan {
    pub levers: Levers,
    /// Device bytes of all weights (UNet + motion modules, text encoder, VAE decoder) as
    /// loaded.
    pub weight_bytes: u64,
    /// Of which the text encoder's, and the VAE decoder's (f32, as loaded).
    pub clip_bytes: u64,
    pub vae_bytes: u64,
    /// Peak of live device bytes during generation, and its split.
    pub peak_bytes: u64,
    /// Peaks of the generation's phases: prompts (text encoder), denoising, VAE decode.
    pub encode_peak_bytes: u64,
    pub denoise_peak_bytes: u64,
    pub decode_peak_bytes: u64,
    pub peak_weights: u64,
    /// Buffers carried across kernel batches at the peak (latents, text embeddings, time
    /// embedding, hidden state, skip connections).
    pub peak_activations: u64,
    /// Buffers of the batch in progress at the peak (a batch keeps every buffer it binds
    /// until it is submitted).
    pub peak_temporaries: u64,
    /// Peak while loading (weights + one dense layer being quantized).
    pub load_peak_bytes: u64,
    /// The largest single device buffer (must be ≤ `max_buffer_size`) and its label
    /// (`"arena"`: an arena chunk).
    pub largest_buffer: u64,
    pub largest_buffer_label: &'static str,
    /// The largest single binding (ops split tensors over bindings; ≤ max_binding when every
    /// op could split).
    pub largest_binding: u64,
    /// Size of a new activation arena chunk (0: no arena, one buffer per activation).
    pub arena_chunk_bytes: u64,
    /// The arena chunks alive at the peak (their sizes, in chunk order).
    pub peak_arena: Vec<u64>,
    /// Most arena chunks alive at once.
    pub max_arena_chunks: usize,
    /// Number of tensors the run allocates (weights included).
    pub buffers: usize,
    /// Non-weight buffers live at the peak: (label, count, bytes), largest first.
    pub peak_buffers: Vec<(&'static str, usize, u64)>,
    /// The generation's allocation (+bytes) / free (−bytes) sequence (compare with
    /// `MemoryStats::take_trace`).
    pub trace: Vec<i64>,
}

/// Why a request cannot run.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{what}: {detail}")]
    Input { what: &'static str, detail: String },
    #[error("{request} needs {need} bytes ({why}) with every lever pulled ({levers}); {suggestion}")]
    DoesNotFit { request: String, need: u64, why: String, levers: Levers, suggestion: String },
}

fn policy(w: WeightFormat) -> Option<QuantPolicy> {
    w.scheme().map(QuantPolicy::new)
}

/// Plan `req` with `levers` under `max_binding`, for a device with the default batch flush
/// threshold ([`crate::gpu::DEFAULT_BATCH_FLUSH_BYTES`]) and activation arena
/// ([`ArenaConfig::from_env`], chunks within WebGPU's default 256 MiB buffers).
pub fn plan(req: &Request, levers: Levers, max_binding: u64) -> Result<Plan, PlanError> {
    plan_with(req, levers, max_binding, crate::gpu::DEFAULT_BATCH_FLUSH_BYTES)
}

/// [`plan`] for a device whose `MemoryStats::batch_flush_bytes` is `flush_bytes`.
pub fn plan_with(req: &Request, levers: Levers, max_binding: u64, flush_bytes: u64) -> Result<Plan, PlanError> {
    plan_after(req, levers, max_binding, flush_bytes, ArenaConfig::from_env().layout(DEFAULT_MAX_BUFFER), None)
}

/// [`plan`] for a device with `limits` (binding size, arena).
pub fn plan_for(req: &Request, levers: Levers, limits: &DeviceLimits) -> Result<Plan, PlanError> {
    plan_after(req, levers, limits.max_binding, crate::gpu::DEFAULT_BATCH_FLUSH_BYTES, limits.arena.layout(limits.max_buffer), None)
}

/// [`plan_with`] for a device whose activation arena starts as `arena` (`None`: no arena;
/// `Gpu::arena_layout` gives a device's), for a run on models a previous run with `previous`
/// levers left behind (text encoder / VAE offloaded, VAE in f16) instead of freshly loaded
/// ones. A fresh load (every model resident) is what [`choose`] plans: no later run peaks
/// higher.
pub fn plan_after(req: &Request, levers: Levers, max_binding: u64, flush_bytes: u64, arena: Option<ArenaLayout>, previous: Option<Levers>) -> Result<Plan, PlanError> {
    let levels = req.unet.block_out_channels.len();
    let m = 8 << levels.saturating_sub(1);
    use crate::pipeline::generate::{MAX_FRAMES, MAX_SIDE};
    let side_ok = |v: usize| v > 0 && v <= MAX_SIDE && v.is_multiple_of(m);
    if req.frames == 0 || req.frames > MAX_FRAMES || !side_ok(req.width) || !side_ok(req.height) {
        return Err(PlanError::Input { what: "size", detail: format!("{} frames of {}×{}: frames 1 to {MAX_FRAMES}, width and height multiples of {m} up to {MAX_SIDE}", req.frames, req.width, req.height) });
    }
    if !matches!(req.precision, DType::F32 | DType::F16) {
        return Err(PlanError::Input { what: "precision", detail: format!("{} (f32 or f16)", req.precision) });
    }
    if levers.vae_f16 && req.precision != DType::F16 {
        return Err(PlanError::Input { what: "levers", detail: "an f16 VAE needs an f16 run".into() });
    }
    let sim = Sim::default();
    sim.state.borrow_mut().flush_bytes = if levers.flush_bytes != 0 { levers.flush_bytes } else { flush_bytes };
    let arena_chunk_bytes = arena.as_ref().map_or(0, |a| a.chunk_bytes());
    sim.state.borrow_mut().arena = arena;
    // Gpu::new's zero buffer (ZERO_SLOTS ranges of 256 bytes).
    let _zeros = sim.weight(&[64 * ZERO_SLOTS], DType::F32, "zeros");
    let pol = policy(req.weights);
    let mut clip_w = weights::Weights::new(&sim, req.precision, pol.as_ref());
    clip_w.clip(&req.clip);
    let mut unet_w = weights::Weights::new(&sim, req.precision, pol.as_ref());
    unet_w.unet(&req.unet, req.motion.as_ref());
    let mut vae_w = weights::Weights::new(&sim, DType::F32, None);
    vae_w.vae_decoder(&req.vae);
    let load_peak = sim.peak();
    let weight_bytes = sim.live();
    let mut models = walk::Resident { clip: Some(std::mem::take(&mut clip_w.kept)), vae: Some((std::mem::take(&mut vae_w.kept), DType::F32)), clip_dtype: req.precision, policy: pol.as_ref() };
    if let Some(prev) = previous {
        models.settle(&sim, &req.vae, prev.offload_text_encoder, prev.offload_vae, prev.vae_f16);
    }
    sim.reset_peak();
    let trace_from = sim.state.borrow().trace.len();
    let env = Env { max_binding, ff_chunk_bytes: levers.ff_chunk_bytes };
    let g = GenerateWalk {
        unet: UNetWalk {
            cfg: &req.unet,
            motion: req.motion.as_ref(),
            dtype: req.precision,
            frames: req.frames,
            motion_joint_norm: req.motion_joint_norm,
            joint_resnet_norm: req.joint_resnet_norm,
        },
        clip: &req.clip,
        vae: &req.vae,
        latent_h: req.height / 8,
        latent_w: req.width / 8,
        cfg: req.cfg,
        cfg_split: levers.cfg_split,
        clip_skip: req.clip_skip,
        decode_chunk: levers.decode_chunk,
        steps: req.steps.clone(),
        decode: req.decode,
        offload_text_encoder: levers.offload_text_encoder,
        offload_vae: levers.offload_vae,
        vae_dtype: if levers.vae_f16 { DType::F16 } else { DType::F32 },
    };
    let phases = walk::generate(&sim, &env, &g, &mut models);
    drop(models);
    let st = sim.state.borrow();
    Ok(Plan {
        levers,
        weight_bytes,
        clip_bytes: clip_w.bytes,
        vae_bytes: vae_w.bytes,
        peak_bytes: st.peak,
        encode_peak_bytes: phases.encode,
        denoise_peak_bytes: phases.denoise,
        decode_peak_bytes: phases.decode,
        peak_weights: st.peak_split.0,
        peak_activations: st.peak_split.1,
        peak_temporaries: st.peak_split.2,
        load_peak_bytes: load_peak,
        largest_buffer: st.largest.0,
        largest_buffer_label: st.largest.1,
        largest_binding: st.largest_tensor.min(max_binding),
        arena_chunk_bytes,
        peak_arena: st.peak_arena.clone(),
        max_arena_chunks: st.max_arena_chunks,
        buffers: st.intervals.len(),
        trace: st.trace[trace_from..].to_vec(),
        peak_buffers: st.peak_buffers.clone(),
    })
}

impl Plan {
    /// Does this plan fit `limits`?
    pub fn fits(&self, limits: &DeviceLimits) -> bool {
        self.largest_buffer <= limits.max_buffer && limits.budget.is_none_or(|b| self.peak_bytes <= b)
    }

    fn why_not(&self, limits: &DeviceLimits) -> String {
        let mut why = Vec::new();
        if self.largest_buffer > limits.max_buffer {
            why.push(format!("buffer `{}` of {} bytes > max_buffer_size {}", self.largest_buffer_label, self.largest_buffer, limits.max_buffer));
        }
        if let Some(b) = limits.budget.filter(|&b| self.peak_bytes > b) {
            why.push(format!("peak {} bytes > budget {b}", self.peak_bytes));
        }
        why.join("; ")
    }
}

/// GEGLU intermediate caps and batch flush thresholds the ladder tries, largest first.
const FF_CHUNKS: [u64; 3] = [64 << 20, 32 << 20, 16 << 20];
const FLUSHES: [u64; 3] = [32 << 20, 16 << 20, 8 << 20];

/// Cumulative lever sets from the cheapest (fastest) to the smallest: smaller VAE chunks, the
/// text encoder then the VAE off the device between uses, split CFG, chunked feed-forwards,
/// earlier batch flushes, and last the one lever that changes results (within f16
/// tolerances): an f16 VAE for f16 runs.
fn lever_ladder(req: &Request) -> Vec<Levers> {
    let f = req.frames.max(1);
    let mut l = Levers::none(f);
    let mut out = vec![l];
    let mut c = f;
    while c > 1 {
        c = c.div_ceil(2);
        l.decode_chunk = c;
        out.push(l);
    }
    l.offload_text_encoder = true;
    out.push(l);
    l.offload_vae = true;
    out.push(l);
    if req.cfg {
        l.cfg_split = true;
        out.push(l);
    }
    for cap in FF_CHUNKS {
        l.ff_chunk_bytes = cap;
        out.push(l);
    }
    for flush in FLUSHES {
        l.flush_bytes = flush;
        out.push(l);
    }
    if req.precision == DType::F16 {
        l.vae_f16 = true;
        out.push(l);
    }
    out
}

/// Every lever the request can use pulled: the smallest plan (the last rung of the ladder).
pub fn smallest_levers(req: &Request) -> Levers {
    lever_ladder(req).last().copied().unwrap_or(Levers::none(req.frames))
}

/// Undo the levers a fitting plan does not need: each lever in turn (costliest first) back
/// to its cheapest setting that still fits.
fn relax(req: &Request, limits: &DeviceLimits, mut best: Plan) -> Result<Plan, PlanError> {
    let f = req.frames.max(1);
    let mut chunks = vec![f];
    while let Some(&c) = chunks.last().filter(|&&c| c > 1) {
        chunks.push(c.div_ceil(2));
    }
    type Edit = Box<dyn Fn(&Levers) -> Vec<Levers>>;
    let edits: Vec<Edit> = vec![
        Box::new(|l| vec![Levers { vae_f16: false, ..*l }]),
        Box::new(|l| std::iter::once(0).chain(FLUSHES).map(|b| Levers { flush_bytes: b, ..*l }).collect()),
        Box::new(|l| std::iter::once(0).chain(FF_CHUNKS).map(|b| Levers { ff_chunk_bytes: b, ..*l }).collect()),
        Box::new(|l| vec![Levers { cfg_split: false, ..*l }]),
        Box::new(|l| vec![Levers { offload_vae: false, ..*l }]),
        Box::new(|l| vec![Levers { offload_text_encoder: false, ..*l }]),
        Box::new(move |l| chunks.iter().map(|&d| Levers { decode_chunk: d, ..*l }).collect()),
    ];
    for edit in &edits {
        for cand in edit(&best.levers) {
            if cand == best.levers {
                break;
            }
            let p = plan_for(req, cand, limits)?;
            if p.fits(limits) {
                best = p;
                break;
            }
        }
    }
    Ok(best)
}

/// Pick the cheapest levers that fit `limits`; a request that fits with none of them is an
/// error that says what would fit (fewer frames, a smaller size, q4 weights).
pub fn choose(req: &Request, limits: &DeviceLimits) -> Result<Plan, PlanError> {
    let ladder = lever_ladder(req);
    let mut last = None;
    for levers in ladder {
        let p = plan_for(req, levers, limits)?;
        if p.fits(limits) {
            return relax(req, limits, p);
        }
        last = Some(p);
    }
    let Some(last) = last else {
        return Err(PlanError::Input { what: "request", detail: "no lever set".into() });
    };
    // The last rung (every lever pulled) is the smallest: a smaller request fits iff it does.
    let fits_with = |r: &Request| plan_for(r, smallest_levers(r), limits).is_ok_and(|p| p.fits(limits));
    let mut hints = Vec::new();
    if req.weights != WeightFormat::Q4 {
        let r = Request { weights: WeightFormat::Q4, ..req.clone() };
        if fits_with(&r) {
            hints.push("q4 weights fit".to_string());
        }
    }
    let mut f = req.frames;
    while f > 1 {
        f /= 2;
        if fits_with(&Request { frames: f, ..req.clone() }) {
            hints.push(format!("{f} frames fit"));
            break;
        }
    }
    let m = 8 << req.unet.block_out_channels.len().saturating_sub(1);
    let (mut w, mut h) = (req.width, req.height);
    while w > m || h > m {
        w = (w / 2).max(m) / m * m;
        h = (h / 2).max(m) / m * m;
        if fits_with(&Request { width: w, height: h, ..req.clone() }) {
            hints.push(format!("{w}×{h} fits"));
            break;
        }
    }
    let suggestion = if hints.is_empty() { "nothing smaller fits either: the weights alone exceed the limits".to_string() } else { hints.join(", ") };
    Err(PlanError::DoesNotFit {
        request: format!("{} frames of {}×{} ({}, {:?} weights)", req.frames, req.width, req.height, req.precision, req.weights),
        need: last.peak_bytes,
        why: last.why_not(limits),
        levers: last.levers,
        suggestion,
    })
}

/// FLOPs of one UNet call on `[videos·frames, h, w, 4]` latents (GEMMs, convolutions and
/// attentions; 2 per multiply-add), counted on the same walk as the memory plan.
pub fn unet_flops(req: &Request, videos: usize) -> f64 {
    let sim = Sim::default();
    let u = UNetWalk {
        cfg: &req.unet,
        motion: req.motion.as_ref(),
        dtype: req.precision,
        frames: req.frames,
        motion_joint_norm: req.motion_joint_norm,
        joint_resnet_norm: req.joint_resnet_norm,
    };
    let sample = sim.alloc(&[videos * req.frames, req.height / 8, req.width / 8, req.unet.in_channels], req.precision, "sample");
    let context = sim.alloc(&[videos, 77, req.unet.cross_attention_dim], req.precision, "context");
    let env = Env { max_binding: u64::MAX, ff_chunk_bytes: 0 };
    drop(walk::unet_forward(&sim, &env, &u, &sample, &context));
    let f = sim.state.borrow().flops;
    f
}

/// Every tensor `UNet::load` reads for `cfg` (+ `motion`'s modules): diffusers name and
/// PyTorch shape (the plan's weight list; `bench unet --random-weights` fills it randomly).
pub fn unet_tensors(cfg: &UNetConfig, motion: Option<&MotionConfig>) -> Vec<(String, Vec<usize>)> {
    let sim = Sim::default();
    let mut w = weights::Weights::new(&sim, DType::F32, None);
    w.unet(cfg, motion);
    std::mem::take(&mut w.names)
}

/// Every tensor `Decoder::load` reads for `cfg`: diffusers name and PyTorch shape.
pub fn vae_decoder_tensors(cfg: &VaeConfig) -> Vec<(String, Vec<usize>)> {
    let sim = Sim::default();
    let mut w = weights::Weights::new(&sim, DType::F32, None);
    w.vae_decoder(cfg);
    std::mem::take(&mut w.names)
}

/// [`choose`] for `req` and write the chosen levers into the generation parameters
/// (`cfg_split`, `decode_chunk`), so `Models::generate` executes the plan.
/// The plan request of a generation with these models, or `None` when it uses what the
/// planner does not model yet (FreeNoise, context windows, prompt travel, a per-module motion
/// effect ≠ 1): such runs keep the caller's levers.
pub fn request_for(
    c: &crate::pipeline::load::Components<'_>,
    p: &crate::pipeline::generate::GenerateParams,
    precision: DType,
    weights: WeightFormat,
) -> Result<Option<Request>, PlanError> {
    let e = p.unet.motion_effect;
    if p.context.is_some() || p.unet.free_noise.is_some() || !p.prompt_travel.is_empty() || !p.negative_travel.is_empty() || [e.down, e.mid, e.up] != [1.0; 3] {
        return Ok(None);
    }
    let sampler = crate::pipeline::sampler::make_sampler(&p.scheduler, p.scheduler_kind, p.steps)
        .map_err(|err| PlanError::Input { what: "scheduler", detail: err.to_string() })?;
    Ok(Some(Request {
        unet: c.unet_config.clone(),
        motion: Some(c.motion.config.clone()),
        vae: c.vae_config.clone(),
        clip: c.clip_config.clone(),
        frames: p.frames,
        width: p.width,
        height: p.height,
        cfg: p.guidance_scale > 1.0,
        precision,
        weights,
        motion_joint_norm: p.unet.motion_norm == crate::model::motion::MotionNorm::Diffusers,
        joint_resnet_norm: p.unet.joint_resnet_norm,
        clip_skip: p.clip_skip,
        steps: Request::steps_of(sampler.as_ref()),
        decode: p.decode,
    }))
}

pub fn apply(req: &Request, limits: &DeviceLimits, params: &mut crate::pipeline::generate::GenerateParams) -> Result<Plan, PlanError> {
    let p = choose(req, limits)?;
    p.levers.apply_to(params);
    Ok(p)
}
