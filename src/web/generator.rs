//! `Generator`: the wasm API for text → video. Create it on a WebGPU device, `load` models
//! from URLs / Blobs / folder maps, `generate` (progress callback, AbortSignal at every cancel point),
//! `dispose` to free the GPU. Meant to run inside a Web Worker (`www/worker.js`); the page
//! talks to it through `www/animatediff.js`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Float32Array, Function, Promise, Uint8Array, Uint8ClampedArray};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;

use super::js::{aborted, now_ms, object, report, yield_to_event_loop, Opts, WebError, WebResult};
use super::sources::{open_pipeline, Fetcher, HostPipeline, Sources};
use super::{gpu_options, info_object, memory_object};
use crate::gpu::Gpu;
use crate::load::{HostTensor, LoadResult, WeightSource};
use crate::model::motion::MotionNorm;
use crate::pipeline::fit;
use crate::pipeline::generate::{latent_preview_rgba, GenerateParams, Hooks, InitLatents, Models, PreviewLatents};
use crate::pipeline::{context, gif, prompt_travel};
use crate::pipeline::load::{build_models_with, default_unet_options, Components, Precision, Weights};
use crate::pipeline::sampler::{recipe_config, SchedulerKind};
use crate::pipeline::scheduler::TimestepSpacing;

struct Inner {
    gpu: Gpu,
    host: RefCell<Option<Rc<HostPipeline>>>,
    models: RefCell<Option<(Rc<Models>, Precision)>>,
    /// GEMM weight storage chosen at load (re-uploads keep it).
    weights: Cell<Weights>,
    /// `load({ memoryBudget })`: every generate() pulls the memory levers that fit it.
    budget: Cell<Option<u64>>,
    busy: Cell<bool>,
    disposed: Cell<bool>,
}

/// Marks the generator busy for one load/generate call.
struct Busy(Rc<Inner>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.set(false);
    }
}

impl Inner {
    fn begin(self: &Rc<Self>) -> WebResult<Busy> {
        if self.disposed.get() {
            return Err(WebError::state("this generator was disposed: create a new one"));
        }
        if self.busy.get() {
            return Err(WebError::state("another load() or generate() is still running on this generator: wait for it (or cancel it with its AbortSignal)"));
        }
        self.busy.set(true);
        Ok(Busy(self.clone()))
    }

    /// An error from a job: a disposed generator explains itself instead of "device lost".
    fn job_error(&self, e: WebError) -> JsValue {
        if self.disposed.get() && e.name != "AbortError" {
            return WebError::state("the generator was disposed while this call was running").to_js();
        }
        e.to_js()
    }

    fn unload(&self) {
        self.models.borrow_mut().take();
        self.host.borrow_mut().take();
    }
}

/// Text → video on one WebGPU device.
#[wasm_bindgen]
pub struct Generator {
    inner: Rc<Inner>,
}

fn parse_precision(v: Option<String>, gpu: &Gpu) -> Precision {
    match v.as_deref() {
        Some("f16") => Precision::F16,
        Some("auto") if gpu.info().shader_f16 => Precision::F16,
        _ => Precision::F32,
    }
}

fn parse_weights(v: Option<String>) -> Weights {
    match v.as_deref() {
        Some("q8") => Weights::Q8,
        Some("q4") => Weights::Q4,
        _ => Weights::Dense,
    }
}

/// The chosen weights, why, and each format's planned peak (bytes).
type AutoWeights = (Weights, String, Vec<(Weights, u64)>);

/// `weights: "auto"` (issue 6): the first of dense → q8 → q4 whose memory plan for a typical
/// request (`plan` option, default 16 frames 512×512 clamped to the motion module, CFG on,
/// `precision`) fits the adapter's buffer limits and `budget`; q4 when none does (generate's
/// own planning then says what fits). Returns the format, why, and each format's planned
/// peak with every lever pulled (bytes).
fn auto_weights(host: &HostPipeline, gpu: &Gpu, precision: Precision, budget: Option<u64>, size: (usize, usize, usize)) -> WebResult<AutoWeights> {
    let mut p = GenerateParams::new("", host.scheduler.clone());
    p.unet = default_unet_options(&host.motion);
    (p.frames, p.width, p.height) = size;
    let info = gpu.info();
    let limits = crate::plan::DeviceLimits { max_binding: info.max_storage_buffer_binding_size, max_buffer: info.max_buffer_size, budget, arena: gpu.arena_config() };
    let dtype = precision.dtype(gpu)?;
    let mb = |b: u64| format!("{:.2} MB", b as f64 / 1e6);
    let (mut peaks, mut why, mut chosen) = (Vec::new(), Vec::new(), None);
    for w in [Weights::Dense, Weights::Q8, Weights::Q4] {
        let plan_err = |e: crate::plan::PlanError| WebError::input("plan", e);
        let req = crate::plan::request_for(&host.components(), &p, dtype, w).map_err(plan_err)?.ok_or_else(|| WebError::input("plan", "no plan for this request"))?;
        let smallest = crate::plan::smallest_levers(&req);
        let pl = crate::plan::plan_for(&req, smallest, &limits).map_err(plan_err)?;
        peaks.push((w, pl.peak_bytes));
        if chosen.is_some() {
            continue;
        }
        if pl.fits(&limits) {
            why.push(format!("{} fits ({})", weights_name(w), mb(pl.peak_bytes)));
            chosen = Some(w);
        } else if pl.largest_buffer > limits.max_buffer {
            why.push(format!("{}: largest buffer {} > max buffer size {}", weights_name(w), mb(pl.largest_buffer), mb(limits.max_buffer)));
        } else {
            why.push(format!("{}: planned peak {} > budget {}", weights_name(w), mb(pl.peak_bytes), mb(budget.unwrap_or(0))));
        }
    }
    let (f, wd, h) = size;
    let mut reason = format!("{f} frames {wd}×{h}: {}", why.join("; "));
    if chosen.is_none() {
        reason.push_str("; none fits, using q4");
    }
    Ok((chosen.unwrap_or(Weights::Q4), reason, peaks))
}

fn weights_name(w: Weights) -> &'static str {
    match w {
        Weights::Dense => "dense",
        Weights::Q8 => "q8",
        Weights::Q4 => "q4",
    }
}

fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::F32 => "f32",
        Precision::F16 => "f16",
    }
}

/// A weight source that reports each tensor read (upload progress).
struct Counted<'a> {
    inner: &'a dyn WeightSource,
    tick: &'a dyn Fn(),
}

impl WeightSource for Counted<'_> {
    fn tensor(&self, name: &str) -> LoadResult<HostTensor> {
        let t = self.inner.tensor(name);
        (self.tick)();
        t
    }
    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.inner.shape(name)
    }
    fn names(&self) -> Vec<String> {
        self.inner.names()
    }
    fn origin(&self) -> String {
        self.inner.origin()
    }
}

/// Upload the host weights in `precision`, GEMM weights quantized per `inner.weights`
/// (synchronous reads from the Blobs; progress per tensor).
async fn upload(inner: &Inner, host: &HostPipeline, precision: Precision, on_progress: Option<&Function>, signal: Option<&web_sys::AbortSignal>) -> WebResult<Models> {
    // Free the previous models first: two pipelines may not fit.
    inner.models.borrow_mut().take();
    let total = host.unet.len() + host.vae.len() + host.text_encoder.len() + host.motion.source.len();
    let done = Cell::new(0usize);
    let phase = |done: usize| object(&[("phase", "upload".into()), ("tensors", (done as f64).into()), ("totalTensors", (total as f64).into())]);
    report(on_progress, &phase(0));
    // Deliver that message and any cancel request before the synchronous part.
    yield_to_event_loop().await;
    if aborted(signal) {
        return Err(WebError::aborted("loading"));
    }
    let tick = || {
        let d = done.get() + 1;
        done.set(d);
        if d.is_multiple_of(16) {
            report(on_progress, &phase(d));
        }
    };
    let unet = Counted { inner: &host.unet, tick: &tick };
    let vae = Counted { inner: &host.vae, tick: &tick };
    let te = Counted { inner: &host.text_encoder, tick: &tick };
    let c = host.components();
    let models = build_models_with(&inner.gpu, &Components { unet: &unet, vae: &vae, text_encoder: &te, ..c }, precision, inner.weights.get())?;
    // Surface asynchronous GPU errors (out of memory) now rather than at the first step.
    inner.gpu.sync().await?;
    report(on_progress, &phase(total));
    Ok(models)
}

fn parse_seed(v: &JsValue) -> WebResult<u64> {
    if let Some(x) = v.as_f64() {
        if x.fract() == 0.0 && (0.0..18446744073709551616.0).contains(&x) {
            return Ok(x as u64);
        }
        return Err(WebError::input("seed", format!("must be a whole number from 0 to 2^64-1, got {x}")));
    }
    if let Some(s) = v.as_string() {
        return s.trim().parse::<u64>().map_err(|_| WebError::input("seed", format!("{s:?} is not a whole number from 0 to 2^64-1")));
    }
    if v.is_bigint() {
        return u64::try_from(v.clone()).map_err(|_| WebError::input("seed", "must be from 0 to 2^64-1"));
    }
    Err(WebError::input("seed", "must be a number, a BigInt or a string of digits"))
}

fn seed_to_js(seed: u64) -> JsValue {
    if seed < (1u64 << 53) {
        JsValue::from(seed as f64)
    } else {
        JsValue::from(seed)
    }
}

/// Largest frames × width × height per generation (the f32 frames are 12 bytes a pixel).
const MAX_VIDEO_PIXELS: u64 = 32 * 1024 * 1024;

/// Everything `generate` reads from its options object.
struct Request {
    params: GenerateParams,
    seed: Option<u64>,
    precision: Option<Precision>,
    on_progress: Option<Function>,
    /// Opt-in live preview (each step's predicted latents → RGBA at 1/8 size).
    on_preview: Option<Function>,
    signal: Option<web_sys::AbortSignal>,
}

/// A prompt option: a string, an array of strings (`"N:text"` keys frame N), or an object
/// `{ frame: text }` (prompt travel).
fn keyed_values(o: &Opts<'_>, key: &str) -> WebResult<Vec<String>> {
    let Some(v) = o.raw(key) else { return Ok(Vec::new()) };
    if let Some(s) = v.as_string() {
        return Ok(vec![s]);
    }
    let bad = || WebError::input(key, "must be a string, an array of \"frame:text\" strings or an object { frame: text }");
    if js_sys::Array::is_array(&v) {
        return js_sys::Array::from(&v).iter().map(|e| e.as_string().ok_or_else(bad)).collect();
    }
    if !v.is_object() {
        return Err(bad());
    }
    let obj = js_sys::Object::from(v);
    js_sys::Object::entries(&obj)
        .iter()
        .map(|pair| {
            let pair = js_sys::Array::from(&pair);
            let (k, t) = (pair.get(0).as_string().ok_or_else(bad)?, pair.get(1).as_string().ok_or_else(bad)?);
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) {
                return Err(WebError::input(key, format!("key {k:?} is not a frame index")));
            }
            Ok(format!("{k}:{t}"))
        })
        .collect()
}

fn parse_request(o: &JsValue, host: &HostPipeline, gpu: &Gpu, extra_progress: Option<Function>) -> WebResult<Request> {
    let o = Opts(o);
    o.check_object("options")?;
    let prompts = prompt_travel::parse_keyframes("prompt", &keyed_values(&o, "prompt")?)?;
    let negatives = prompt_travel::parse_keyframes("negativePrompt", &keyed_values(&o, "negativePrompt")?)?;
    let prompt = prompts.first().map(|k| k.text.clone()).ok_or_else(|| WebError::input("prompt", "is required"))?;
    let kind = match o.choice("scheduler", &["ddim", "euler", "lcm"])?.as_deref() {
        Some("euler") => Some(SchedulerKind::Euler),
        Some("lcm") => Some(SchedulerKind::Lcm),
        Some(_) => Some(SchedulerKind::Ddim),
        None => None,
    };
    // As the CLI: a named scheduler applies its usual recipe to the model's config.
    let mut sched = match kind {
        Some(k) => recipe_config(&host.scheduler, k),
        None => host.scheduler.clone(),
    };
    if let Some(s) = o.choice("timestepSpacing", &["linspace", "leading", "trailing"])? {
        sched.timestep_spacing = match s.as_str() {
            "linspace" => TimestepSpacing::Linspace,
            "leading" => TimestepSpacing::Leading,
            _ => TimestepSpacing::Trailing,
        };
    }
    if let Some(v) = o.boolean("setAlphaToOne")? {
        sched.set_alpha_to_one = v;
    }
    let mut p = GenerateParams::new(prompt, sched);
    if let Some(k) = kind {
        p.scheduler_kind = k;
    }
    p.negative_prompt = negatives.first().map(|k| k.text.clone()).unwrap_or_default();
    let travels = |keys: &[prompt_travel::Keyframe]| keys.len() > 1 || keys.iter().any(|k| k.frame > 0);
    if travels(&prompts) || travels(&negatives) {
        (p.prompt_travel, p.negative_travel) = (prompts, negatives);
    }
    if let Some(i) = o.choice("promptInterpolation", &["lerp", "slerp"])? {
        p.interpolation = prompt_travel::Interpolation::parse(&i)?;
    }
    p.frames = o.integer("frames", 1, 1024)?.unwrap_or(p.frames);
    p.width = o.integer("width", 8, 2048)?.unwrap_or(p.width);
    p.height = o.integer("height", 8, 2048)?.unwrap_or(p.height);
    p.steps = o.integer("steps", 1, 1000)?.unwrap_or(p.steps);
    p.guidance_scale = o.number("guidance")?.map(|g| g as f32).unwrap_or(p.guidance_scale);
    p.clip_skip = o.integer("clipSkip", 0, 64)?.unwrap_or(0);
    p.unet = default_unet_options(&host.motion);
    p.unet.motion_scale = o.number("motionScale")?.map(|v| v as f32).unwrap_or(p.unet.motion_scale);
    // Long videos, as the CLI's flags (same defaults).
    p.unet.motion_effect = match o.raw("motionEffect") {
        None => p.unet.motion_effect,
        Some(v) => match (v.as_f64(), v.as_string()) {
            (Some(e), _) => context::parse_motion_effect(&e.to_string())?,
            (_, Some(s)) => context::parse_motion_effect(&s)?,
            _ => return Err(WebError::input("motionEffect", "must be a number or \"down=E,mid=E,up=E\"")),
        },
    };
    const FUSE: &[&str] = &["pyramid", "flat", "delayed_reverse_sawtooth"];
    if let Some(length) = o.integer("freeNoiseLength", 1, 1024)? {
        let weighting = context::FuseMethod::parse(&o.choice("freeNoiseWeights", FUSE)?.unwrap_or_else(|| "pyramid".into()))?;
        p.unet.free_noise = Some(context::TemporalWindows { length, stride: o.integer("freeNoiseStride", 1, 1024)?.unwrap_or(4), weighting });
    }
    if let Some(n) = o.choice("noiseType", &["shuffle_context", "repeat_context", "random"])? {
        p.noise_type = context::NoiseType::parse(&n)?;
    }
    if let Some(length) = o.integer("contextLength", 1, 1024)? {
        p.context = Some(context::ContextWindows {
            length,
            stride: o.integer("contextStride", 1, 16)?.unwrap_or(1),
            overlap: o.integer("contextOverlap", 0, 1023)?.unwrap_or(4),
            closed_loop: o.boolean("closedLoop")?.unwrap_or(false),
            fuse: context::FuseMethod::parse(&o.choice("contextFuse", FUSE)?.unwrap_or_else(|| "pyramid".into()))?,
        });
    }
    if let Some(n) = o.choice("motionNorm", &["diffusers", "original"])? {
        p.unet.motion_norm = if n == "original" { MotionNorm::Original } else { MotionNorm::Diffusers };
    }
    if !p.width.is_multiple_of(8) || !p.height.is_multiple_of(8) {
        return Err(WebError::input("width/height", format!("{}×{} must be multiples of 8", p.width, p.height)));
    }
    // The frames come back through wasm memory (32-bit): keep a video well inside it.
    let pixels = (p.frames as u64) * (p.width as u64) * (p.height as u64);
    if pixels > MAX_VIDEO_PIXELS {
        return Err(WebError::input(
            "frames/width/height",
            format!("{} frames of {}×{} are {:.1} megapixels, more than the {:.1} a browser video can hold here (e.g. 32 frames at 1024×1024)", p.frames, p.width, p.height, pixels as f64 / 1e6, MAX_VIDEO_PIXELS as f64 / 1e6),
        ));
    }
    let seed = o.raw("seed");
    let latents = o.raw("latents");
    let (init, seed) = match (seed, latents) {
        (Some(_), Some(_)) => return Err(WebError::input("seed", "give either seed or latents, not both")),
        (_, Some(l)) => {
            let want = 4 * p.frames * (p.height / 8) * (p.width / 8);
            let arr = l.dyn_into::<Float32Array>().map_err(|_| WebError::input("latents", "must be a Float32Array [1, 4, frames, height/8, width/8]"))?;
            if arr.length() as usize != want {
                return Err(WebError::input("latents", format!("has {} values, [1, 4, {}, {}, {}] needs {want}", arr.length(), p.frames, p.height / 8, p.width / 8)));
            }
            (InitLatents::Tensor(arr.to_vec()), None)
        }
        (Some(s), None) => {
            let s = parse_seed(&s)?;
            (InitLatents::Seed(s), Some(s))
        }
        (None, None) => {
            // Below 2^53 so it survives a round trip through a JS number (and a URL).
            let s = (js_sys::Math::random() * 9007199254740992.0).floor() as u64;
            (InitLatents::Seed(s), Some(s))
        }
    };
    p.init = init;
    let precision = o.choice("precision", &["f32", "f16", "auto"])?.map(|s| parse_precision(Some(s), gpu));
    let on_progress = o.function("onProgress")?.or(extra_progress);
    Ok(Request { params: p, seed, precision, on_progress, on_preview: o.function("onPreview")?, signal: o.signal()? })
}

fn result_object(out: crate::pipeline::generate::Output, seed: Option<u64>, total_ms: f64, steps_ms: f64, steps: usize) -> JsValue {
    let (f, h, w) = (out.frame_count, out.height, out.width);
    let rgb = gif::frames_to_u8(&out.frames);
    let rgba = Array::new();
    let px = h * w;
    for i in 0..f {
        let mut frame = vec![255u8; px * 4];
        if let Some(src) = rgb.get(i * px * 3..(i + 1) * px * 3) {
            for (d, s) in frame.chunks_exact_mut(4).zip(src.chunks_exact(3)) {
                d[..3].copy_from_slice(s);
            }
        }
        rgba.push(&Uint8ClampedArray::from(&frame[..]));
    }
    let timesteps = Array::new();
    for t in &out.timesteps {
        timesteps.push(&JsValue::from(*t));
    }
    object(&[
        ("frames", Float32Array::from(&out.frames[..]).into()),
        ("rgba", rgba.into()),
        ("frameCount", (f as f64).into()),
        ("width", (w as f64).into()),
        ("height", (h as f64).into()),
        ("seed", seed.map(seed_to_js).unwrap_or(JsValue::UNDEFINED)),
        ("timesteps", timesteps.into()),
        ("latents", Float32Array::from(&out.latents[..]).into()),
        (
            "timings",
            object(&[
                ("totalMs", total_ms.into()),
                ("stepsMs", steps_ms.into()),
                ("secondsPerStep", (steps_ms / 1000.0 / steps.max(1) as f64).into()),
            ]),
        ),
    ])
}

#[wasm_bindgen]
impl Generator {
    /// Start WebGPU (the adapter's maximum limits, shader-f16 when offered). Options:
    /// `{ allowF16?, maxBindingBytes?, kernels?: "auto" | "registers" | "tiled", memoryCapBytes? }`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Generator>")]
    pub fn create(#[wasm_bindgen(unchecked_param_type = "GeneratorOptions | undefined")] options: JsValue) -> Promise {
        let opts = match gpu_options(&options) {
            Ok(o) => o,
            Err(e) => return Promise::reject(&e.to_js()),
        };
        future_to_promise(async move {
            let gpu = Gpu::new(opts).await.map_err(|e| WebError::from(e).to_js())?;
            let inner = Rc::new(Inner { gpu, host: RefCell::new(None), models: RefCell::new(None), weights: Cell::new(Weights::Dense), budget: Cell::new(None), busy: Cell::new(false), disposed: Cell::new(false) });
            Ok(Generator { inner }.into())
        })
    }

    /// Adapter, enabled features and limits.
    #[wasm_bindgen(unchecked_return_type = "GpuInfo")]
    pub fn info(&self) -> JsValue {
        info_object(&self.inner.gpu)
    }

    /// GPU memory held by this generator's buffers.
    #[wasm_bindgen(unchecked_return_type = "GpuMemory")]
    pub fn memory(&self) -> JsValue {
        memory_object(&self.inner.gpu)
    }

    /// Load models (replacing any loaded ones). Sources are URL strings, Blobs/Files, arrays of
    /// them (shards) or, for diffusers folders, objects mapping relative paths to them.
    /// Options: `{ precision?: "f32" | "f16" | "auto", weights?: "dense" | "q8" | "q4" | "auto",
    /// memoryBudget? (bytes: "auto" picks the weights for it, every generate pulls the memory
    /// levers that fit it), plan? ({ frames, width, height } "auto" plans for),
    /// onProgress?, signal? }`.
    #[wasm_bindgen(unchecked_return_type = "Promise<LoadInfo>")]
    pub fn load(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ModelSources")] sources: JsValue,
        #[wasm_bindgen(unchecked_param_type = "LoadOptions | undefined")] options: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let busy = inner.begin().map_err(|e| e.to_js())?;
            let r = Self::load_inner(&inner, &sources, &options).await;
            drop(busy);
            r.map_err(|e| inner.job_error(e))
        })
    }

    async fn load_inner(inner: &Rc<Inner>, sources: &JsValue, options: &JsValue) -> WebResult<JsValue> {
        let t0 = now_ms();
        let o = Opts(options);
        o.check_object("options")?;
        let precision = parse_precision(o.choice("precision", &["f32", "f16", "auto"])?, &inner.gpu);
        let weights_opt = o.choice("weights", &["dense", "q8", "q4", "auto"])?;
        let budget = match o.raw("memoryBudget") {
            None => None,
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && x > 0.0 => Some(x as u64),
                _ => return Err(WebError::input("memoryBudget", format!("must be a positive number of bytes, got {}", super::js::describe(&v)))),
            },
        };
        let plan_opts = o.raw("plan");
        let plan_size = match &plan_opts {
            None => None,
            Some(v) => {
                let po = Opts(v);
                po.check_object("plan")?;
                Some((po.integer("frames", 1, 1024)?, po.integer("width", 8, 2048)?, po.integer("height", 8, 2048)?))
            }
        };
        let auto = weights_opt.as_deref() == Some("auto");
        let mut weights = parse_weights(weights_opt);
        let signal = o.signal()?;
        let on_progress = o.function("onProgress")?;
        let sources = Sources::parse(sources)?;
        if aborted(signal.as_ref()) {
            return Err(WebError::aborted("loading"));
        }
        inner.unload();
        inner.weights.set(weights);
        inner.budget.set(budget);
        let f = Fetcher::new(signal.clone(), on_progress.clone()).with_downloader(o.function("download")?);
        let host = Rc::new(open_pipeline(&f, &sources).await?);
        let mut auto_info = None;
        if auto {
            let max = host.motion.config.motion_max_seq_length;
            let (f, w, h) = plan_size.unwrap_or((None, None, None));
            let f = f.unwrap_or(if max > 0 { max.min(16) } else { 16 });
            let (w, h) = (w.unwrap_or(512), h.unwrap_or(512));
            let (chosen, reason, peaks) = auto_weights(&host, &inner.gpu, precision, budget, (f, w, h))?;
            weights = chosen;
            inner.weights.set(weights);
            auto_info = Some((reason, peaks));
        }
        let models = upload(inner, &host, precision, on_progress.as_ref(), signal.as_ref()).await?;
        let max_frames = models.unet.motion_config().map(|m| m.motion_max_seq_length).unwrap_or(0);
        let size_multiple = models.unet.size_multiple() * 8;
        *inner.models.borrow_mut() = Some((Rc::new(models), precision));
        *inner.host.borrow_mut() = Some(host.clone());
        let desc = Array::new();
        for d in &host.description {
            desc.push(&d.as_str().into());
        }
        let (reason, peaks) = match auto_info {
            Some((r, peaks)) => {
                let o = js_sys::Object::new();
                for (w, b) in peaks {
                    js_sys::Reflect::set(&o, &weights_name(w).into(), &(b as f64).into()).ok();
                }
                (r, o.into())
            }
            None => ("requested".to_string(), JsValue::UNDEFINED),
        };
        Ok(object(&[
            ("description", desc.into()),
            ("precision", precision_name(precision).into()),
            ("weights", weights_name(weights).into()),
            ("weightsReason", reason.into()),
            ("plannedPeakBytes", peaks),
            ("weightBytes", host.bytes.into()),
            ("gpuBytes", (inner.gpu.memory().live_bytes as f64).into()),
            ("maxFrames", (max_frames as f64).into()),
            ("sizeMultiple", (size_multiple as f64).into()),
            ("motionVersion", format!("{:?}", host.motion.version).into()),
            ("loadMs", (now_ms() - t0).into()),
        ]))
    }

    /// Generate a video. Options are the CLI's flags in camelCase with its defaults (`prompt`,
    /// `negativePrompt`, `frames` 16, `width`/`height` 512, `steps` 25, `guidance` 7.5, `seed` |
    /// `latents`, `scheduler`, `timestepSpacing`, `setAlphaToOne`, `motionNorm`, `motionScale`,
    /// `precision`, `clipSkip`; long videos: `promptInterpolation`, `freeNoiseLength`,
    /// `freeNoiseStride`, `freeNoiseWeights`, `noiseType`, `contextLength`, `contextStride`,
    /// `contextOverlap`, `closedLoop`, `contextFuse`, `motionEffect`) plus
    /// `onProgress` and `signal` (checked at every cancel point, also inside the VAE decode).
    #[wasm_bindgen(unchecked_return_type = "Promise<GenerateResult>")]
    pub fn generate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "GenerateOptions")] options: JsValue,
        #[wasm_bindgen(js_name = onProgress, unchecked_param_type = "((p: GenerateProgress) => void) | undefined")] on_progress: Option<Function>,
    ) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let busy = inner.begin().map_err(|e| e.to_js())?;
            let mut r = Self::generate_inner(&inner, &options, on_progress).await;
            drop(busy);
            if let Err(e) = &r {
                // A device lost mid-run often surfaces as some other failure first (a readback
                // that cannot map); once `device.lost` has resolved, report the cause.
                if e.name != "AbortError" && e.name != "DeviceLostError" && !inner.disposed.get() {
                    yield_to_event_loop().await;
                    if inner.gpu.is_lost() {
                        r = Err(WebError::from(crate::gpu::GpuError::DeviceLost { reason: "lost".into(), message: format!("during generation ({})", e.message) }));
                    }
                }
            }
            r.map_err(|e| inner.job_error(e))
        })
    }

    async fn generate_inner(inner: &Rc<Inner>, options: &JsValue, on_progress: Option<Function>) -> WebResult<JsValue> {
        let t0 = now_ms();
        let host = inner.host.borrow().clone().ok_or_else(|| WebError::state("no models loaded: call load() first"))?;
        let mut req = parse_request(options, &host, &inner.gpu, on_progress)?;
        let signal = req.signal.clone();
        if aborted(signal.as_ref()) {
            return Err(WebError::aborted("generation"));
        }
        let current = inner.models.borrow().clone();
        let models = match (current, req.precision) {
            (Some((m, have)), want) if want.is_none_or(|w| w == have) => m,
            (_, want) => {
                let p = want.unwrap_or_default();
                let m = Rc::new(upload(inner, &host, p, req.on_progress.as_ref(), signal.as_ref()).await?);
                *inner.models.borrow_mut() = Some((m.clone(), p));
                m
            }
        };
        models.validate(&req.params)?;
        report(req.on_progress.as_ref(), &object(&[("phase", "encode".into())]));
        let steps_ms = Cell::new(0.0);
        let mut hook = |s: crate::pipeline::generate::Progress| -> crate::Result<()> {
            let elapsed = s.elapsed.as_secs_f64();
            let per = elapsed / s.step.max(1) as f64;
            steps_ms.set(elapsed * 1000.0);
            report(
                req.on_progress.as_ref(),
                &object(&[
                    ("phase", "step".into()),
                    ("step", (s.step as f64).into()),
                    ("steps", (s.steps as f64).into()),
                    ("timestep", s.timestep.into()),
                    ("elapsedMs", (elapsed * 1000.0).into()),
                    ("secondsPerStep", per.into()),
                    ("etaSeconds", (per * (s.steps - s.step) as f64).into()),
                ]),
            );
            if s.step == s.steps {
                report(req.on_progress.as_ref(), &object(&[("phase", "decode".into())]));
            }
            Ok(())
        };
        let mut preview = |s: crate::pipeline::generate::Progress, l: PreviewLatents| {
            let frames = Array::new();
            for img in latent_preview_rgba(&l.latents, l.frames, l.height, l.width) {
                frames.push(&Uint8ClampedArray::from(&img[..]));
            }
            report(
                req.on_preview.as_ref(),
                &object(&[
                    ("step", (s.step as f64).into()),
                    ("steps", (s.steps as f64).into()),
                    ("frameCount", (l.frames as f64).into()),
                    ("width", (l.width as f64).into()),
                    ("height", (l.height as f64).into()),
                    ("rgba", frames.into()),
                ]),
            );
        };
        let preview_hook: Option<&mut dyn FnMut(crate::pipeline::generate::Progress, PreviewLatents)> = if req.on_preview.is_some() { Some(&mut preview) } else { None };
        // Checked at every cancel point (text encoding, each step, inside the VAE decode).
        let cancel = || aborted(signal.as_ref());
        let mut hooks = Hooks { after_step: &mut hook, preview: preview_hook, cancel: Some(&cancel) };
        // Levers from the memory plan (split CFG, VAE decode chunk, text encoder / VAE offload,
        // f16 VAE, chunked feed-forwards, early flushes) that fit this adapter's buffer limits
        // and the load's memoryBudget, as `animatediff generate` does; out of memory anyway →
        // the next smaller plan; a run that cannot fit is an OutOfMemoryError saying what would.
        let on_plan = req.on_progress.clone();
        let mut planned = |pl: &crate::plan::Plan, why: Option<&str>| {
            let fields = [("phase", "plan".into()), ("peakBytes", (pl.peak_bytes as f64).into()), ("levers", pl.levers.to_string().into()), ("message", fit::describe(pl, why).into())];
            let fallback = why.map(|w| ("fallback", JsValue::from(w)));
            report(on_plan.as_ref(), &object(&fields.into_iter().chain(fallback).collect::<Vec<_>>()));
        };
        let limits = fit::device_limits(&inner.gpu, inner.budget.get());
        let out = fit::generate_fitted(fit::Loaded { models: &models, host: &host, weights: inner.weights.get() }, &inner.gpu, limits, &mut req.params, &mut hooks, &mut planned).await?;
        Ok(result_object(out, req.seed, now_ms() - t0, steps_ms.get(), req.params.steps))
    }

    /// Free the models' GPU memory (the device stays; `load` again to continue).
    pub fn unload(&self) {
        self.inner.unload();
    }

    /// Free everything: models and the GPU device. The generator is unusable afterwards.
    pub fn dispose(&self) {
        if self.inner.disposed.replace(true) {
            return;
        }
        self.inner.unload();
        self.inner.gpu.destroy();
    }

    /// Whether models are loaded.
    #[wasm_bindgen(getter)]
    pub fn loaded(&self) -> bool {
        self.inner.models.borrow().is_some()
    }

    /// Whether this generator's GPU device was lost (the worker then creates a new generator
    /// and reloads the models from the same sources).
    #[wasm_bindgen(getter, js_name = deviceLost)]
    pub fn device_lost(&self) -> bool {
        self.inner.gpu.is_lost()
    }

    /// Test hook: destroy the device without disposing the generator (what a driver reset
    /// looks like to the page).
    #[doc(hidden)]
    #[wasm_bindgen(js_name = loseDeviceForTest)]
    pub fn lose_device_for_test(&self) {
        self.inner.gpu.destroy();
    }
}

/// Encode frames (`[F, H, W, 3]` in [0, 1], as `GenerateResult.frames`) as a looping GIF.
#[wasm_bindgen(js_name = encodeGif)]
pub fn encode_gif(frames: &[f32], frame_count: u32, height: u32, width: u32, fps: f64) -> Result<Uint8Array, JsValue> {
    let bytes = gif::encode_gif_f32(frames, frame_count as usize, height as usize, width as usize, fps as f32)
        .map_err(|e| WebError::new("InputError", format!("GIF export: {e}")).to_js())?;
    Ok(Uint8Array::from(&bytes[..]))
}

/// The initial latents `generate({ seed })` starts from: `torch.randn([1, 4, frames, height/8,
/// width/8], generator=torch.Generator("cpu").manual_seed(seed))` (before the scheduler's
/// init-noise scale), the same call `Models::generate_with` makes. For checking that seeds
/// match the native CLI / diffusers bit for bit.
#[wasm_bindgen(js_name = initialLatents)]
pub fn initial_latents(#[wasm_bindgen(unchecked_param_type = "number | bigint | string")] seed: JsValue, frames: u32, height: u32, width: u32) -> Result<Float32Array, JsValue> {
    let seed = parse_seed(&seed).map_err(|e| e.to_js())?;
    if frames == 0 || frames > 1024 || !height.is_multiple_of(8) || !width.is_multiple_of(8) || height == 0 || width == 0 || height > 2048 || width > 2048 {
        return Err(WebError::input("frames/width/height", format!("{frames} frames of {width}×{height}: frames 1–1024, sizes multiples of 8 up to 2048")).to_js());
    }
    // As generate(): 1024 frames of 2048² would be 1 GiB of latents in the wasm heap.
    if u64::from(frames) * u64::from(height) * u64::from(width) > MAX_VIDEO_PIXELS {
        return Err(WebError::input("frames/width/height", format!("{frames} frames of {width}×{height} are more than the {:.1} megapixels a browser video can hold here", MAX_VIDEO_PIXELS as f64 / 1e6)).to_js());
    }
    let v = crate::pipeline::rng::torch_randn(seed, &[1, 4, frames as usize, height as usize / 8, width as usize / 8]);
    Ok(Float32Array::from(&v[..]))
}

#[wasm_bindgen(typescript_custom_section)]
const TS_GENERATOR: &'static str = r#"
export interface GeneratorOptions {
  /** false forces f32 compute even where shader-f16 exists. */
  allowF16?: boolean;
  /** Cap the storage-binding size in bytes (emulate smaller GPUs). */
  maxBindingBytes?: number;
  kernels?: "auto" | "registers" | "tiled";
  /** Refuse GPU allocations past this many live bytes, as a GPU with that much memory would
   * (emulate a smaller device: generate() then falls back to a smaller memory plan). */
  memoryCapBytes?: number;
}
/** One file: a URL (absolute or relative to the worker) or a Blob/File. */
export type FileSource = string | Blob;
/** A diffusers folder: relative path ("unet/config.json", …) → file. */
export type FolderSource = Record<string, FileSource>;
export interface ModelSources {
  /** An LDM single-file checkpoint (.safetensors/.ckpt) or a diffusers pipeline folder. */
  model: FileSource | FolderSource;
  /** An AnimateDiff motion module (original .ckpt/.safetensors, diffusers file), shards, or a MotionAdapter folder. */
  motion?: FileSource | FileSource[] | FolderSource;
  /** A VAE replacing the model's: one file (diffusers or LDM names) or a diffusers vae folder. */
  vae?: FileSource | FolderSource;
  /** Configs for a single-file model: a diffusers folder's unet/vae/text_encoder/scheduler configs (like --config). */
  config?: FolderSource;
  /** A MotionAdapter config.json (or a folder holding it) for a motion module file (like --motion-config). */
  motionConfig?: FileSource | FolderSource;
  /** LoRAs merged into the UNet / text encoder / motion modules (kohya/A1111, diffusers/PEFT, MotionLoRA), like --lora FILE:WEIGHT. */
  lora?: LoraSource[];
  /** MotionLoRAs (e.g. v2_lora_PanLeft.ckpt), like --motion-lora; merged by the same rules as `lora`. */
  motionLora?: LoraSource[];
}
/** A LoRA file and its multiplier (default 1); a bare file means weight 1. */
export type LoraSource = FileSource | { source: FileSource; weight?: number };
export type Precision = "f32" | "f16" | "auto";
export type LoadProgress =
  | { phase: "download"; file: string; loaded: number; total: number | null; bytesPerSecond: number; totalLoaded: number; /** bytes of `loaded` that came from the model cache */ cached: number }
  | { phase: "open"; file: string; bytes: number }
  | { phase: "upload"; tensors: number; totalTensors: number };
export interface LoadOptions {
  /** Weight storage type: f32 (default, as the CLI), f16 (needs shader-f16), auto (f16 when available). */
  precision?: Precision;
  /** GEMM weights of the UNet, motion modules and text encoder: dense (default), or int8 / int4 quantized on the GPU at load (less memory). */
  weights?: "dense" | "q8" | "q4" | "auto";
  /** For weights "auto": GPU memory to plan within, in bytes (positive; default: only the adapter's buffer limits). */
  memoryBudget?: number;
  /** For weights "auto": the request to plan for (default 16 frames, 512×512, CFG on). */
  plan?: { frames?: number; width?: number; height?: number };
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Downloads URLs instead of the plain ranged download: `(url, chunkBytes, signal, onProgress(loaded, total, cached))` → a Blob, or undefined to fall back (worker.js passes the model cache's). */
  download?: (url: string, chunkBytes: number, signal: AbortSignal | undefined, onProgress: (loaded: number, total: number, cached: number) => void) => Promise<Blob | undefined>;
}
export interface LoadInfo {
  description: string[]; precision: "f32" | "f16"; weights: "dense" | "q8" | "q4"; weightBytes: number; gpuBytes: number;
  /** Why these weights: "requested", or for "auto" each format's planned peak against the budget/limits. */
  weightsReason: string;
  /** For "auto": each format's planned peak (bytes, every memory lever pulled) for the planned request. */
  plannedPeakBytes?: { dense: number; q8: number; q4: number };
  maxFrames: number; sizeMultiple: number; motionVersion: string; loadMs: number;
}
export type GenerateProgress =
  | { phase: "encode" }
  | { phase: "step"; step: number; steps: number; timestep: number; elapsedMs: number; secondsPerStep: number; etaSeconds: number }
  | { phase: "decode" }
  /** The memory plan chosen for the run (planned peak GPU bytes, levers); with `fallback` (why) when the GPU
   * ran out of memory and the run starts again with this smaller plan. */
  | { phase: "plan"; peakBytes: number; levers: string; message: string; fallback?: string }
  | { phase: "upload"; tensors: number; totalTensors: number };
export interface GenerateOptions {
  /** A prompt, or prompt travel: ["0:a cat sitting", "8:a cat running"] or { 0: "a cat sitting", 8: "a cat running" }
   * (per-frame embeddings interpolated between keyframes; a string without "N:" is frame 0). */
  prompt: string | string[] | Record<number, string>;
  negativePrompt?: string | string[] | Record<number, string>;
  /** Prompt-travel interpolation: "lerp" (default, diffusers) or "slerp" (A1111). */
  promptInterpolation?: "lerp" | "slerp";
  /** FreeNoise: windows of this many frames inside the motion modules (≤ the module's positions) for long videos. */
  freeNoiseLength?: number;
  /** FreeNoise: frames between window starts, default 4. */ freeNoiseStride?: number;
  /** FreeNoise window weights, default "pyramid". */ freeNoiseWeights?: "pyramid" | "flat" | "delayed_reverse_sawtooth";
  /** FreeNoise initial noise for seeded runs, default "shuffle_context". */ noiseType?: "shuffle_context" | "repeat_context" | "random";
  /** Context windows: the whole UNet on windows of this many frames each step, fused (memory of one window). */
  contextLength?: number;
  /** Default 1. */ contextStride?: number;
  /** Default 4. */ contextOverlap?: number;
  /** Windows may wrap from the last frames to the first (looping video), default false. */ closedLoop?: boolean;
  /** Default "pyramid". */ contextFuse?: "pyramid" | "flat" | "delayed_reverse_sawtooth";
  /** Motion effect x + e·(module(x) − x): a number (all modules, default 1) or "down=E,mid=E,up=E". */
  motionEffect?: number | string;
  /** Default 16. */ frames?: number;
  /** Default 512. */ width?: number;
  /** Default 512. */ height?: number;
  /** Default 25. */ steps?: number;
  /** Classifier-free guidance scale, default 7.5 (≤ 1 disables guidance). */ guidance?: number;
  /** torch.manual_seed-compatible seed (random when neither seed nor latents are given). */
  seed?: number | bigint | string;
  /** Initial latents [1, 4, frames, height/8, width/8] instead of a seed. */
  latents?: Float32Array;
  /** DDIM (default, the model's scheduler config), Euler discrete (AnimateDiff-Lightning recipe: trailing spacing) or LCM (AnimateLCM). */
  scheduler?: "ddim" | "euler" | "lcm";
  timestepSpacing?: "linspace" | "leading" | "trailing";
  setAlphaToOne?: boolean;
  motionNorm?: "diffusers" | "original";
  /** Strength of the motion modules' temporal attention (K scale), default 1. */
  motionScale?: number;
  /** Re-uploads the weights when it differs from the loaded precision. */
  precision?: Precision;
  clipSkip?: number;
  onProgress?: (p: GenerateProgress) => void;
  /** Opt-in live preview: after each step, that step's predicted video as cheap latent→RGB images at 1/8 size (reads the small latents back each step; off by default). */
  onPreview?: (p: GeneratePreview) => void;
  /** Checked at every cancel point: before and after text encoding, after each step, inside the VAE decode. */
  signal?: AbortSignal;
}
export interface GeneratePreview {
  step: number; steps: number; frameCount: number;
  /** width/8 × height/8 of the video. */
  width: number; height: number;
  /** One RGBA image (width × height × 4) per frame. */
  rgba: Uint8ClampedArray[];
}
export interface GenerateResult {
  /** [frames, height, width, 3] RGB in [0, 1]. */
  frames: Float32Array;
  /** One RGBA image per frame (width × height × 4), for ImageData. */
  rgba: Uint8ClampedArray[];
  frameCount: number; width: number; height: number;
  /** The seed used (undefined when latents were given). */
  seed?: number | bigint;
  timesteps: number[];
  /** Final latents [1, 4, frames, height/8, width/8] before the VAE. */
  latents: Float32Array;
  timings: { totalMs: number; stepsMs: number; secondsPerStep: number };
}
"#;
