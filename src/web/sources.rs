//! Model sources given from JS — URLs, Blobs/Files, or diffusers folders as a map of relative
//! path → URL/Blob — opened into the pipeline's components: the browser counterpart of
//! `pipeline::load::open_pipeline` (same formats, same configs and defaults).
//!
//! Only the files a component needs are downloaded (a folder map may list more: other
//! variants, safety checker, …). Downloads become Blobs; every archive reads its Blob lazily.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Array, Function, Object};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{AbortSignal, Blob};

use super::js::{aborted, object, report, WebError, WebResult};
use super::source::{blob_source, blob_text, download, fetch_text};
use crate::load::archive::TensorArchive;
use crate::load::component::{diffusers_component, open_motion_archives, open_single_file_archive, ComponentSource, MotionModel, OpenOptions};
use crate::load::config::{config_class_name, infer_clip_config, infer_motion_config, infer_unet_config, infer_vae_config, parse_clip_config, parse_motion_config, parse_unet_config, parse_vae_config};
use crate::load::detect::ComponentKind;
use crate::load::lora::Lora;
use crate::load::LoadError;
use crate::model::{ClipConfig, UNetConfig, VaeConfig};
use crate::pipeline::load::{merge_loras, scheduler_config};
pub use crate::pipeline::load::HostPipeline;

/// One file: a URL (absolute, or relative to the worker's location) or a Blob/File.
#[derive(Clone)]
pub enum Leaf {
    Url(String),
    Blob(Blob, String),
}

impl Leaf {
    pub fn name(&self) -> &str {
        match self {
            Leaf::Url(u) => u,
            Leaf::Blob(_, n) => n,
        }
    }
}

/// A source option: one file or several (shards), or a folder.
pub enum Spec {
    Files(Vec<Leaf>),
    Folder(BTreeMap<String, Leaf>),
}

fn leaf(v: &JsValue, label: &str) -> Option<Leaf> {
    if let Some(s) = v.as_string() {
        return Some(Leaf::Url(s));
    }
    let blob = v.dyn_ref::<Blob>()?;
    let name = v.dyn_ref::<web_sys::File>().map(|f| f.name()).filter(|n| !n.is_empty()).unwrap_or_else(|| label.to_string());
    Some(Leaf::Blob(blob.clone(), name))
}

/// Folder keys: `/`-separated relative paths; a common leading folder (what a directory
/// picker's `webkitRelativePath` has) is dropped when the pipeline's subfolders are below it.
fn normalize_folder(mut m: BTreeMap<String, Leaf>, markers: &[&str]) -> BTreeMap<String, Leaf> {
    let clean = |k: &str| k.replace('\\', "/").trim_start_matches("./").trim_start_matches('/').to_string();
    m = m.into_iter().map(|(k, v)| (clean(&k), v)).collect();
    let has_marker = |m: &BTreeMap<String, Leaf>| m.keys().any(|k| markers.iter().any(|mk| k == mk || k.starts_with(&format!("{mk}/"))));
    for _ in 0..4 {
        if has_marker(&m) {
            break;
        }
        let firsts: Vec<&str> = m.keys().filter_map(|k| k.split_once('/').map(|(a, _)| a)).collect();
        let Some(first) = firsts.first().copied() else { break };
        if firsts.len() != m.len() || firsts.iter().any(|f| *f != first) {
            break;
        }
        let prefix = format!("{first}/");
        m = m.into_iter().map(|(k, v)| (k.strip_prefix(&prefix).unwrap_or(&k).to_string(), v)).collect();
    }
    m
}

/// Parse one source option (`undefined` → `None`).
pub fn parse_spec(v: &JsValue, what: &str, markers: &[&str]) -> WebResult<Option<Spec>> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    let bad = || WebError::input(what, "must be a URL string, a Blob/File, an array of them (shards), or an object mapping a folder's relative paths (\"unet/config.json\", …) to URLs/Blobs");
    if let Some(l) = leaf(v, what) {
        return Ok(Some(Spec::Files(vec![l])));
    }
    if Array::is_array(v) {
        let a: &Array = v.unchecked_ref();
        let mut files = Vec::new();
        for (i, x) in a.iter().enumerate() {
            files.push(leaf(&x, &format!("{what}[{i}]")).ok_or_else(bad)?);
        }
        if files.is_empty() {
            return Err(WebError::input(what, "is an empty list"));
        }
        return Ok(Some(Spec::Files(files)));
    }
    if v.is_object() && !v.is_function() {
        let mut m = BTreeMap::new();
        for e in Object::entries(v.unchecked_ref()).iter() {
            let e: Array = e.unchecked_into();
            let k = e.get(0).as_string().unwrap_or_default();
            let l = leaf(&e.get(1), &format!("{what}/{k}")).ok_or_else(bad)?;
            m.insert(k, l);
        }
        if m.is_empty() {
            return Err(WebError::input(what, "is an empty folder"));
        }
        // Name picked files by their path in the folder (every component has a config.json).
        let m = normalize_folder(m, markers)
            .into_iter()
            .map(|(k, l)| {
                let l = match l {
                    Leaf::Blob(b, _) => Leaf::Blob(b, format!("{what}/{k}")),
                    url => url,
                };
                (k, l)
            })
            .collect();
        return Ok(Some(Spec::Folder(m)));
    }
    Err(bad())
}

/// All sources of one `load` call.
pub struct Sources {
    pub model: Spec,
    pub motion: Option<Spec>,
    pub vae: Option<Spec>,
    pub config: Option<Spec>,
    pub motion_config: Option<Spec>,
    /// LoRA files with their multipliers (`lora` then `motionLora`).
    pub loras: Vec<(Leaf, f32)>,
}

const PIPELINE_DIRS: &[&str] = &["unet", "vae", "text_encoder", "scheduler", "model_index.json"];
const COMPONENT_FILES: &[&str] = &["config.json", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors", "model.safetensors"];

impl Sources {
    pub fn parse(v: &JsValue) -> WebResult<Sources> {
        if !v.is_object() || v.is_function() || Array::is_array(v) || v.dyn_ref::<Blob>().is_some() {
            return Err(WebError::input("sources", "must be an object { model, motion, vae?, config?, motionConfig? }"));
        }
        let get = |k: &str| super::js::get(v, k);
        let model = parse_spec(&get("model"), "model", PIPELINE_DIRS)?.ok_or_else(|| WebError::input("model", "is required (a single-file checkpoint or a diffusers folder)"))?;
        let mut loras = parse_loras(&get("lora"), "lora")?;
        loras.extend(parse_loras(&get("motionLora"), "motionLora")?);
        Ok(Sources {
            model,
            motion: parse_spec(&get("motion"), "motion", COMPONENT_FILES)?,
            vae: parse_spec(&get("vae"), "vae", COMPONENT_FILES)?,
            config: parse_spec(&get("config"), "config", PIPELINE_DIRS)?,
            motion_config: parse_spec(&get("motionConfig"), "motionConfig", &["config.json"])?,
            loras,
        })
    }
}

/// `lora` / `motionLora`: an array of `{ source, weight? }` (weight 1 by default; a bare
/// URL/Blob is `{ source }`). Both lists are merged the same way — each LoRA module goes to
/// the component its names say (UNet, text encoder, motion modules), as `--lora` and
/// `--motion-lora` do natively.
fn parse_loras(v: &JsValue, what: &str) -> WebResult<Vec<(Leaf, f32)>> {
    if v.is_undefined() || v.is_null() {
        return Ok(Vec::new());
    }
    let items: Vec<JsValue> = if Array::is_array(v) { v.unchecked_ref::<Array>().iter().collect() } else { vec![v.clone()] };
    let bad = |i: usize| WebError::input(&format!("{what}[{i}]"), "must be { source: URL string | Blob/File, weight?: number }");
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let label = format!("{what}[{i}]");
        if let Some(l) = leaf(item, &label) {
            out.push((l, 1.0));
            continue;
        }
        if !item.is_object() {
            return Err(bad(i));
        }
        let l = leaf(&super::js::get(item, "source"), &label).ok_or_else(|| bad(i))?;
        let w = super::js::get(item, "weight");
        let weight = if w.is_undefined() {
            1.0
        } else {
            match w.as_f64() {
                Some(x) if x.is_finite() => x as f32,
                _ => return Err(WebError::input(&format!("{label}.weight"), "must be a finite number")),
            }
        };
        out.push((l, weight));
    }
    Ok(out)
}

/// Downloads/reads with progress and cancellation.
pub struct Fetcher {
    pub signal: Option<AbortSignal>,
    pub on_progress: Option<Function>,
    /// Downloads URLs instead of the plain ranged download (worker.js passes the model
    /// cache's, www/cache.js): `(url, chunkBytes, signal, onProgress) → Promise<Blob | undefined>`.
    pub downloader: Option<Function>,
    /// Weight bytes fetched or opened so far.
    done: Rc<Cell<f64>>,
    files: Cell<usize>,
}

impl Fetcher {
    pub fn new(signal: Option<AbortSignal>, on_progress: Option<Function>) -> Fetcher {
        Fetcher { signal, on_progress, downloader: None, done: Rc::new(Cell::new(0.0)), files: Cell::new(0) }
    }

    pub fn with_downloader(mut self, downloader: Option<Function>) -> Fetcher {
        self.downloader = downloader;
        self
    }

    pub fn check(&self) -> WebResult<()> {
        if aborted(self.signal.as_ref()) {
            return Err(WebError::aborted("loading"));
        }
        Ok(())
    }

    pub fn bytes(&self) -> f64 {
        self.done.get()
    }

    async fn text(&self, l: &Leaf) -> WebResult<(String, String)> {
        self.check()?;
        let t = match l {
            // Through the downloader too, so that configs are cached with the weights (a
            // second visit then makes no request at all).
            Leaf::Url(u) if self.downloader.is_some() => {
                let blob = download(u, self.signal.as_ref(), self.downloader.as_ref(), Rc::new(|_, _, _| {})).await?;
                blob_text(&blob, u).await?
            }
            Leaf::Url(u) => fetch_text(u, self.signal.as_ref()).await?,
            Leaf::Blob(b, n) => blob_text(b, n).await?,
        };
        Ok((l.name().to_string(), t))
    }

    /// Open a weight file as a tensor archive (downloading it first if it is a URL).
    #[allow(clippy::arc_with_non_send_sync)]
    async fn archive(&self, l: &Leaf) -> WebResult<Arc<TensorArchive>> {
        self.check()?;
        let (blob, name) = match l {
            Leaf::Blob(b, n) => (b.clone(), n.clone()),
            Leaf::Url(u) => {
                let start = self.done.get();
                let (cb, done, file) = (self.on_progress.clone(), self.done.clone(), u.clone());
                let t0 = super::js::now_ms();
                let progress = Rc::new(move |loaded: f64, total: f64, cached: f64| {
                    done.set(start + loaded);
                    let secs = ((super::js::now_ms() - t0) / 1000.0).max(1e-3);
                    report(
                        cb.as_ref(),
                        &object(&[
                            ("phase", "download".into()),
                            ("file", file.as_str().into()),
                            ("loaded", loaded.into()),
                            ("total", if total >= 0.0 { total.into() } else { JsValue::NULL }),
                            ("bytesPerSecond", ((loaded - cached).max(0.0) / secs).into()),
                            ("totalLoaded", (start + loaded).into()),
                            ("cached", cached.into()),
                        ]),
                    );
                });
                let blob = download(u, self.signal.as_ref(), self.downloader.as_ref(), progress).await?;
                self.done.set(start + blob.size());
                (blob, u.clone())
            }
        };
        if matches!(l, Leaf::Blob(..)) {
            self.done.set(self.done.get() + blob.size());
        }
        self.files.set(self.files.get() + 1);
        report(self.on_progress.as_ref(), &object(&[("phase", "open".into()), ("file", name.as_str().into()), ("bytes", blob.size().into())]));
        let src = blob_source(blob, name).await?;
        Ok(Arc::new(TensorArchive::open(src)?))
    }

    async fn archives(&self, leaves: &[Leaf]) -> WebResult<Vec<Arc<TensorArchive>>> {
        let mut v = Vec::with_capacity(leaves.len());
        for l in leaves {
            v.push(self.archive(l).await?);
        }
        Ok(v)
    }
}

fn folder_get<'a>(m: &'a BTreeMap<String, Leaf>, path: &str) -> Option<&'a Leaf> {
    m.get(path)
}

fn join(dir: &str, file: &str) -> String {
    if dir.is_empty() {
        file.to_string()
    } else {
        format!("{dir}/{file}")
    }
}

/// The weight files of component folder `dir` in a folder map, in the native loader's
/// preference order: safetensors before `.bin`, plain before the `fp16` variant, sharded
/// `*.index.json` sets too.
async fn weight_leaves(f: &Fetcher, m: &BTreeMap<String, Leaf>, dir: &str, what: &str) -> WebResult<Vec<Leaf>> {
    for ext in ["safetensors", "bin"] {
        for variant in [None, Some("fp16")] {
            for stem in ["diffusion_pytorch_model", "model", "pytorch_model"] {
                let base = match variant {
                    Some(v) => format!("{stem}.{v}.{ext}"),
                    None => format!("{stem}.{ext}"),
                };
                if let Some(l) = folder_get(m, &join(dir, &base)) {
                    return Ok(vec![l.clone()]);
                }
                let index = join(dir, &format!("{base}.index.json"));
                if let Some(l) = folder_get(m, &index) {
                    let (name, text) = f.text(l).await?;
                    return shard_leaves(m, dir, &name, &text);
                }
            }
        }
    }
    Err(LoadError::Unsupported {
        file: format!("{what}/{dir}"),
        message: "no weight file (diffusion_pytorch_model[.fp16].safetensors, model.safetensors, *.bin) in the folder".into(),
    }
    .into())
}

fn shard_leaves(m: &BTreeMap<String, Leaf>, dir: &str, index_name: &str, text: &str) -> WebResult<Vec<Leaf>> {
    let cfg = |message: String| WebError::from(LoadError::Config { file: index_name.to_string(), message });
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| cfg(format!("invalid JSON: {e}")))?;
    let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| cfg("no `weight_map` object".into()))?;
    let mut files: Vec<String> = map.values().filter_map(|f| f.as_str().map(str::to_string)).collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(cfg("empty `weight_map`".into()));
    }
    files
        .iter()
        .map(|f| folder_get(m, &join(dir, f)).cloned().ok_or_else(|| cfg(format!("shard {f} is not among the given files"))))
        .collect()
}

async fn folder_config(f: &Fetcher, m: &BTreeMap<String, Leaf>, path: &str) -> WebResult<Option<(String, String)>> {
    match folder_get(m, path) {
        Some(l) => Ok(Some(f.text(l).await?)),
        None => Ok(None),
    }
}

async fn required_config(f: &Fetcher, m: &BTreeMap<String, Leaf>, path: &str, what: &str) -> WebResult<(String, String)> {
    folder_config(f, m, path)
        .await?
        .ok_or_else(|| LoadError::Config { file: format!("{what}/{path}"), message: "missing from the folder".into() }.into())
}

/// A standalone VAE file: diffusers names or LDM names (shared with the native loader).
fn vae_file_component(a: Arc<TensorArchive>, levels: usize) -> WebResult<ComponentSource> {
    Ok(crate::pipeline::load::vae_file_component(a, levels)?)
}

struct BaseConfigs {
    unet: Option<UNetConfig>,
    vae: Option<VaeConfig>,
    clip: Option<ClipConfig>,
    scheduler: Option<(String, String)>,
}

async fn base_configs(f: &Fetcher, spec: Option<&Spec>) -> WebResult<BaseConfigs> {
    let mut b = BaseConfigs { unet: None, vae: None, clip: None, scheduler: None };
    let m = match spec {
        None => return Ok(b),
        Some(Spec::Folder(m)) => m,
        Some(Spec::Files(_)) => return Err(WebError::input("config", "must be a folder: an object mapping \"unet/config.json\", \"vae/config.json\", \"text_encoder/config.json\", \"scheduler/scheduler_config.json\" to URLs/Blobs")),
    };
    if let Some((n, t)) = folder_config(f, m, "unet/config.json").await? {
        b.unet = Some(parse_unet_config(&n, &t)?);
    }
    if let Some((n, t)) = folder_config(f, m, "vae/config.json").await? {
        b.vae = Some(parse_vae_config(&n, &t)?);
    }
    if let Some((n, t)) = folder_config(f, m, "text_encoder/config.json").await? {
        b.clip = Some(parse_clip_config(&n, &t)?);
    }
    b.scheduler = folder_config(f, m, "scheduler/scheduler_config.json").await?;
    Ok(b)
}

async fn open_motion(f: &Fetcher, spec: &Spec, motion_config: Option<&Spec>) -> WebResult<MotionModel> {
    let cfg_text = match motion_config {
        None => None,
        Some(Spec::Files(v)) if v.len() == 1 => Some(f.text(&v[0]).await?),
        Some(Spec::Folder(m)) => Some(required_config(f, m, "config.json", "motionConfig").await?),
        Some(Spec::Files(_)) => return Err(WebError::input("motionConfig", "must be one config.json (URL/Blob) or a folder containing it")),
    };
    match spec {
        Spec::Folder(m) => {
            let cfg = match cfg_text {
                Some(c) => Some(c),
                None => folder_config(f, m, "config.json").await?,
            };
            let leaves = weight_leaves(f, m, "", "motion").await?;
            let archives = f.archives(&leaves).await?;
            Ok(open_motion_archives(archives, cfg.as_ref().map(|(n, t)| (n.as_str(), t.as_str())))?)
        }
        Spec::Files(leaves) => {
            let archives = f.archives(leaves).await?;
            let mut m = open_motion_archives(archives, None)?;
            if let Some((n, t)) = cfg_text {
                let base = parse_motion_config(&n, &t)?;
                let pe = Some(m.config.motion_max_seq_length);
                m.config = infer_motion_config(&m.source, pe, Some(&base))?;
            }
            Ok(m)
        }
    }
}

async fn open_vae(f: &Fetcher, spec: &Spec, base: Option<&VaeConfig>) -> WebResult<(ComponentSource, VaeConfig)> {
    match spec {
        Spec::Folder(m) => {
            let (n, t) = required_config(f, m, "config.json", "vae").await?;
            let leaves = weight_leaves(f, m, "", "vae").await?;
            let src = diffusers_component(ComponentKind::Vae, f.archives(&leaves).await?)?;
            Ok((src, parse_vae_config(&n, &t)?))
        }
        Spec::Files(leaves) if leaves.len() == 1 => {
            let a = f.archive(&leaves[0]).await?;
            let src = vae_file_component(a, base.map_or(4, |b| b.block_out_channels.len()))?;
            let cfg = infer_vae_config(&src, base)?;
            Ok((src, cfg))
        }
        Spec::Files(_) => Err(WebError::input("vae", "give one VAE file, or a diffusers vae folder")),
    }
}

/// Open the LoRA files and merge them ([`crate::pipeline::load::merge_loras`], as `--lora`).
async fn merge_lora_files(
    f: &Fetcher,
    loras: &[(Leaf, f32)],
    unet: ComponentSource,
    text_encoder: ComponentSource,
    motion: MotionModel,
    description: &mut Vec<String>,
) -> WebResult<(ComponentSource, ComponentSource, MotionModel)> {
    let mut opened = Vec::with_capacity(loras.len());
    for (l, w) in loras {
        opened.push((Lora::from_archive(f.archive(l).await?)?, *w));
    }
    Ok(merge_loras(&opened, unet, text_encoder, motion, description)?)
}

/// Open every component (headers only; tensor data is read at upload time).
pub async fn open_pipeline(f: &Fetcher, s: &Sources) -> WebResult<HostPipeline> {
    let base = base_configs(f, s.config.as_ref()).await?;
    let mut description = Vec::new();

    // The model: a diffusers folder or an LDM single file.
    let (unet, unet_config, vae, vae_config, text_encoder, clip_config, sched_json, folder_motion) = match &s.model {
        Spec::Folder(m) => {
            let (ucf, uct) = required_config(f, m, "unet/config.json", "model").await?;
            let unet_motion = config_class_name(&uct).as_deref() == Some("UNetMotionModel");
            let unet_archives = f.archives(&weight_leaves(f, m, "unet", "model").await?).await?;
            let unet = diffusers_component(ComponentKind::Unet, unet_archives.clone())?.filter(|k| !k.contains("motion_modules."));
            let unet_config = parse_unet_config(&ucf, &uct)?;
            let inferred = infer_unet_config(&unet, Some(&unet_config))?;
            if inferred != unet_config {
                return Err(LoadError::Config { file: ucf, message: format!("config and weights disagree: config {unet_config:?}, weights {inferred:?}") }.into());
            }
            let (vcf, vct) = required_config(f, m, "vae/config.json", "model").await?;
            let vae = diffusers_component(ComponentKind::Vae, f.archives(&weight_leaves(f, m, "vae", "model").await?).await?)?;
            let vae_config = parse_vae_config(&vcf, &vct)?;
            let (tcf, tct) = required_config(f, m, "text_encoder/config.json", "model").await?;
            let te = diffusers_component(ComponentKind::TextEncoder, f.archives(&weight_leaves(f, m, "text_encoder", "model").await?).await?)?;
            let clip_config = parse_clip_config(&tcf, &tct)?;
            let sched = folder_config(f, m, "scheduler/scheduler_config.json").await?;
            let folder_motion = if s.motion.is_some() {
                None
            } else if m.contains_key("motion_adapter/config.json") {
                let sub: BTreeMap<String, Leaf> = m.iter().filter_map(|(k, v)| k.strip_prefix("motion_adapter/").map(|k| (k.to_string(), v.clone()))).collect();
                Some(open_motion(f, &Spec::Folder(sub), s.motion_config.as_ref()).await?)
            } else if unet_motion {
                Some(open_motion_archives(unet_archives, None)?)
            } else {
                None
            };
            description.push("model: diffusers folder".to_string());
            (unet, unet_config, Some(vae), Some(vae_config), te, clip_config, sched.or(base.scheduler), folder_motion)
        }
        Spec::Files(leaves) => {
            if leaves.len() != 1 {
                return Err(WebError::input("model", "give one single-file checkpoint, or an object mapping a diffusers folder's files"));
            }
            let a = f.archive(&leaves[0]).await?;
            let sf = open_single_file_archive(a, &OpenOptions::default())?;
            let unet_config = infer_unet_config(&sf.unet, base.unet.as_ref().or(Some(&sf.unet_config)))?;
            let te = sf.text_encoder.ok_or_else(|| {
                WebError::from(LoadError::Unsupported { file: leaves[0].name().to_string(), message: "the checkpoint has no text encoder (cond_stage_model.*)".into() })
            })?;
            let clip_config = infer_clip_config(&te, base.clip.as_ref().or(sf.clip_config.as_ref()))?;
            let vae_config = match &sf.vae {
                Some(v) => Some(infer_vae_config(v, base.vae.as_ref().or(sf.vae_config.as_ref()))?),
                None => None,
            };
            description.push(format!("model: {} (LDM single file{})", leaves[0].name(), if sf.ema_used { ", EMA weights" } else { "" }));
            (sf.unet, unet_config, sf.vae, vae_config, te, clip_config, base.scheduler, None)
        }
    };

    let motion = match (&s.motion, folder_motion) {
        (Some(spec), _) => open_motion(f, spec, s.motion_config.as_ref()).await?,
        (None, Some(m)) => m,
        (None, None) => return Err(WebError::input("motion", "is required: an AnimateDiff motion module (.ckpt/.safetensors) or a MotionAdapter folder")),
    };
    description.push(format!("motion: {:?}, {} naming", motion.version, if motion.original_naming { "original AnimateDiff" } else { "diffusers" }));
    let (unet, text_encoder, motion) = if s.loras.is_empty() { (unet, text_encoder, motion) } else { merge_lora_files(f, &s.loras, unet, text_encoder, motion, &mut description).await? };

    let (vae, vae_config) = match (&s.vae, vae, vae_config) {
        (Some(spec), _, cfg) => {
            description.push("vae: separate file".to_string());
            open_vae(f, spec, base.vae.as_ref().or(cfg.as_ref())).await?
        }
        (None, Some(v), Some(c)) => (v, c),
        _ => return Err(WebError::input("vae", "this checkpoint has no VAE (a \"noVAE\" file): give one with `vae` (e.g. the SD1.5 VAE or sd-vae-ft-mse)")),
    };
    let scheduler = scheduler_config(sched_json.as_ref().map(|(n, t)| (n.as_str(), t.as_str())))?;
    f.check()?;
    Ok(HostPipeline { unet, unet_config, vae, vae_config, text_encoder, clip_config, motion, scheduler, description, quantized: None, bytes: f.bytes() })
}
