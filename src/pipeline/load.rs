//! Building [`Models`] from weight sources: any SD1.5 model (diffusers folder or LDM single
//! file, optional separate VAE) plus any motion module (original `.ckpt`/`.safetensors` or a
//! diffusers `MotionAdapter`), with the configs and defaults each format implies.

use super::generate::Models;
use super::scheduler::SchedulerConfig;
use crate::gpu::{DType, Gpu};
use std::sync::Arc;

use crate::load::component::{ComponentSource, MotionModel};
use crate::load::lora::{Lora, LoraDeltas, LoraReport, LoraTarget};
use crate::load::LoadError;
use crate::load::detect::MotionVersion;
use crate::load::WeightSource;
use crate::model::motion::MotionNorm;
use crate::model::offload::Offloadable;
use crate::model::quant_policy::{QuantPolicy, QuantScheme};
use crate::model::{ClipConfig, ClipTextModel, Decoder, UNet, UNetConfig, UNetOptions, VaeConfig};
use crate::{Error, Result};

/// Storage type of the UNet, motion modules and text encoder (the VAE loads in f32; the memory
/// plan may rebuild it in f16 for f16 runs, `GenerateParams::vae_f16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    /// Needs shader-f16.
    F16,
}

impl Precision {
    pub fn dtype(self, gpu: &Gpu) -> Result<DType> {
        match self {
            Precision::F32 => Ok(DType::F32),
            Precision::F16 if gpu.info().shader_f16 => Ok(DType::F16),
            Precision::F16 => Err(Error::input("precision", "f16 needs the shader-f16 GPU feature, which this adapter lacks (use f32)")),
        }
    }
}

/// How the UNet, motion modules and text encoder store their GEMM weights (the VAE is always
/// dense f32). Quantized weights are dequantized inside the matmul/conv kernels; activations
/// keep the [`Precision`] storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Weights {
    /// In the [`Precision`] storage type.
    #[default]
    Dense,
    /// int8 per the policy table ([`crate::model::quant_policy`]), quantized on the GPU at load.
    Q8,
    /// int4 (int8 for the layers the policy keeps at 8 bits), quantized on the GPU at load.
    Q4,
}

impl Weights {
    pub fn scheme(self) -> Option<QuantScheme> {
        match self {
            Weights::Dense => None,
            Weights::Q8 => Some(QuantScheme::Q8),
            Weights::Q4 => Some(QuantScheme::Q4),
        }
    }
}

/// The components of one pipeline, format-independent.
pub struct Components<'a> {
    pub unet: &'a dyn WeightSource,
    pub unet_config: &'a UNetConfig,
    pub vae: &'a dyn WeightSource,
    pub vae_config: &'a VaeConfig,
    pub text_encoder: &'a dyn WeightSource,
    pub clip_config: &'a ClipConfig,
    pub motion: &'a MotionModel,
}

/// Upload everything to the GPU.
pub fn build_models(gpu: &Gpu, c: &Components<'_>, precision: Precision) -> Result<Models> {
    build_models_with(gpu, c, precision, Weights::Dense)
}

/// Upload everything, quantizing GEMM weights on the GPU per `weights`. Weights stored packed
/// (a quantized file, [`crate::pipeline::quantized`]) are uploaded as they are, whatever
/// `weights` says.
pub fn build_models_with(gpu: &Gpu, c: &Components<'_>, precision: Precision, weights: Weights) -> Result<Models> {
    let dtype = precision.dtype(gpu)?;
    let policy = weights.scheme().map(QuantPolicy::new);
    let policy = policy.as_ref();
    let clip_cfg = c.clip_config.clone();
    let text_encoder = Offloadable::load(gpu, c.text_encoder, dtype, policy, "text encoder", Box::new(move |l| ClipTextModel::build(l, &clip_cfg)))?;
    let unet = UNet::load_quantized(gpu, c.unet, c.unet_config, Some((&c.motion.source, &c.motion.config)), dtype, policy)?;
    let vae_cfg = c.vae_config.clone();
    let vae = Offloadable::load(gpu, c.vae, DType::F32, None, "VAE decoder", Box::new(move |l| Decoder::build(l, &vae_cfg)))?;
    Ok(Models::new(text_encoder, unet, vae))
}

/// The forward semantics matching how a motion module was trained and distributed:
/// original AnimateDiff files (guoyww's `.ckpt`, A1111/ComfyUI) normalise the motion module
/// per frame, and v1 additionally normalises every ResNet jointly over frames; diffusers
/// `MotionAdapter`s follow diffusers' `UNetMotionModel` (motion norm joint over frames).
pub fn default_unet_options(motion: &MotionModel) -> UNetOptions {
    if motion.original_naming {
        UNetOptions { motion_norm: MotionNorm::Original, joint_resnet_norm: motion.version == MotionVersion::V1, ..UNetOptions::default() }
    } else {
        UNetOptions { motion_norm: MotionNorm::Diffusers, joint_resnet_norm: false, ..UNetOptions::default() }
    }
}

/// A model's scheduler: its `scheduler_config.json` when it has one, else AnimateDiff's
/// (linear 0.00085→0.012, steps_offset 1, leading, set_alpha_to_one).
pub fn scheduler_config(json: Option<(&str, &str)>) -> Result<SchedulerConfig> {
    match json {
        Some((file, text)) => SchedulerConfig::from_json(text).map_err(|e| Error::input(format!("scheduler config {file}"), e.to_string())),
        None => Ok(SchedulerConfig::animatediff_default()),
    }
}

/// A standalone VAE file: diffusers names, or LDM names (`decoder.up.0.block.0…`, as in
/// `vae-ft-mse-840000-ema-pruned.safetensors`), with or without `first_stage_model.`.
pub fn vae_file_component(a: std::sync::Arc<crate::load::archive::TensorArchive>, levels: usize) -> crate::load::LoadResult<crate::load::component::ComponentSource> {
    use crate::load::component::ComponentSource;
    use crate::load::keymap::{ldm_vae_key, KeyMap, KeyTarget};
    let ldm = a.keys().any(|k| k.contains("decoder.mid.block_1.") || k.contains("decoder.up.0."));
    if !ldm {
        return Ok(ComponentSource::identity(a));
    }
    let mut map = KeyMap::new();
    for k in a.keys() {
        let base = k.strip_prefix("first_stage_model.").or_else(|| k.strip_prefix("vae.")).unwrap_or(k);
        if let Some((name, squeeze)) = ldm_vae_key(base, levels) {
            let reshape = if squeeze { a.entry(k).map(|e| e.shape.iter().copied().take(2).collect()) } else { None };
            map.insert(name, KeyTarget { key: k.to_string(), reshape });
        }
    }
    if map.is_empty() {
        return Err(crate::load::LoadError::Unsupported { file: a.origin(), message: "no VAE tensors found".into() });
    }
    ComponentSource::new(a, map)
}

/// Weights on the host (streamed from their files or Blobs on demand), ready to upload: what
/// `open_pipeline` returns natively (below) and in the browser (`web::sources`).
pub struct HostPipeline {
    pub unet: ComponentSource,
    pub unet_config: UNetConfig,
    pub vae: ComponentSource,
    pub vae_config: VaeConfig,
    pub text_encoder: ComponentSource,
    pub clip_config: ClipConfig,
    pub motion: MotionModel,
    pub scheduler: SchedulerConfig,
    /// One line per component: what was loaded from where.
    pub description: Vec<String>,
    /// Packed weights of this scheme (a quantized file, [`crate::pipeline::quantized`]).
    pub quantized: Option<QuantScheme>,
    /// Bytes of all weight files, for progress reports (0 where they are not counted).
    pub bytes: f64,
}

impl HostPipeline {
    pub fn components(&self) -> Components<'_> {
        Components {
            unet: &self.unet,
            unet_config: &self.unet_config,
            vae: &self.vae,
            vae_config: &self.vae_config,
            text_encoder: &self.text_encoder,
            clip_config: &self.clip_config,
            motion: &self.motion,
        }
    }
}

/// Merge opened LoRAs (with their multipliers) into the three components (on the host,
/// tensor by tensor when the weights are read); one description line per file (what
/// matched, what was skipped). A file none of whose modules matches any component is an
/// error. Native (`--lora`) and browser (`load({ lora })`) share it.
pub fn merge_loras(
    opened: &[(Lora, f32)],
    unet: ComponentSource,
    text_encoder: ComponentSource,
    mut motion: MotionModel,
    description: &mut Vec<String>,
) -> Result<(ComponentSource, ComponentSource, MotionModel)> {
    let parts = [
        LoraDeltas::resolve(&unet, opened, LoraTarget::Unet)?,
        LoraDeltas::resolve(&text_encoder, opened, LoraTarget::TextEncoder)?,
        LoraDeltas::resolve(&motion.source, opened, LoraTarget::Motion)?,
    ];
    for (i, (lora, w)) in opened.iter().enumerate() {
        let reports: Vec<(LoraTarget, &LoraReport)> = parts.iter().filter_map(|d| d.reports().get(i).map(|r| (d.target(), r))).collect();
        let matched: usize = reports.iter().map(|(_, r)| r.matched.len()).sum();
        let foreign = lora.foreign_modules();
        if matched == 0 {
            return Err(Error::Load(LoadError::Unsupported {
                file: lora.origin(),
                message: format!("no LoRA module matches this SD1.5 pipeline ({} modules for other models, e.g. {:?})", foreign.len(), &foreign[..foreign.len().min(3)]),
            }));
        }
        let counts: Vec<String> = reports.iter().filter(|(_, r)| !r.matched.is_empty()).map(|(t, r)| format!("{} {}", t.name(), r.matched.len())).collect();
        let mut line = format!("lora: {} ×{w}: {matched} modules merged ({})", lora.origin(), counts.join(", "));
        let mut skipped: Vec<String> = reports.iter().flat_map(|(_, r)| r.skipped.iter().cloned()).collect();
        skipped.extend(foreign.iter().map(|k| format!("{k}: not an SD1.5 component")));
        if !skipped.is_empty() || !lora.ignored.is_empty() {
            line.push_str(&format!("; {} modules skipped, {} keys ignored", skipped.len(), lora.ignored.len()));
            if !skipped.is_empty() {
                line.push_str(&format!(" (e.g. {})", skipped[..skipped.len().min(3)].join("; ")));
            }
        }
        description.push(line);
    }
    let [u, t, m] = parts.map(Arc::new);
    motion.source = motion.source.with_lora(m);
    Ok((unet.with_lora(u), text_encoder.with_lora(t), motion))
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::*;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use super::*;
    use crate::load::archive::TensorArchive;
    use crate::load::component::{diffusers_component, open_diffusers_dir, open_motion, open_single_file, ComponentSource};
    use crate::load::config::{infer_clip_config, infer_motion_config, infer_unet_config, infer_vae_config, parse_clip_config, parse_motion_config, parse_unet_config, parse_vae_config};
    use crate::load::detect::ComponentKind;
    use crate::load::lora::Lora;
    use crate::load::LoadError;

    /// Where the weights come from.
    #[derive(Debug, Clone, Default)]
    pub struct ModelPaths {
        /// A diffusers pipeline folder or an LDM single-file checkpoint.
        pub model: PathBuf,
        /// A VAE replacing (or supplying) the model's: diffusers folder or weight file.
        pub vae: Option<PathBuf>,
        /// Motion module: original `.ckpt`/`.safetensors`, diffusers file or folder.
        pub motion: PathBuf,
        /// A diffusers pipeline folder whose `unet/`, `vae/`, `text_encoder/` configs
        /// describe a single-file model (what shapes cannot tell: heads, groups). Like
        /// diffusers' `from_single_file(config=…)`; SD1.5's values otherwise.
        pub config: Option<PathBuf>,
        /// A `MotionAdapter` folder or `config.json` for a motion module file.
        pub motion_config: Option<PathBuf>,
        /// LoRA files with their multipliers, merged into the UNet, text encoder and motion
        /// modules (each module goes where its names say: kohya / diffusers image LoRAs,
        /// MotionLoRAs, the v3 adapter); see [`crate::load::lora`].
        pub loras: Vec<(PathBuf, f32)>,
    }

    fn read_text(path: &Path) -> Result<String> {
        std::fs::read_to_string(path).map_err(|source| Error::Load(LoadError::Io { file: path.display().to_string(), source }))
    }

    fn config_json(dir: &Path) -> Result<Option<(String, String)>> {
        let f = dir.join("config.json");
        if f.is_file() {
            Ok(Some((f.display().to_string(), read_text(&f)?)))
        } else {
            Ok(None)
        }
    }

    fn open_vae_file(path: &Path, levels: usize) -> Result<ComponentSource> {
        Ok(vae_file_component(Arc::new(TensorArchive::open_path(path)?), levels)?)
    }

    fn open_vae(path: &Path, base: Option<&VaeConfig>) -> Result<(ComponentSource, VaeConfig)> {
        if path.is_dir() {
            let (file, text) = config_json(path)?.ok_or_else(|| Error::Load(LoadError::Config { file: path.join("config.json").display().to_string(), message: "missing".into() }))?;
            let files = crate::load::component::component_weight_files(path, None)?;
            let archives = files.iter().map(|f| TensorArchive::open_path(f).map(Arc::new)).collect::<std::result::Result<Vec<_>, _>>()?;
            let src = diffusers_component(ComponentKind::Vae, archives)?;
            return Ok((src, parse_vae_config(&file, &text)?));
        }
        let levels = base.map_or(4, |b| b.block_out_channels.len());
        let src = open_vae_file(path, levels)?;
        let cfg = infer_vae_config(&src, base)?;
        Ok((src, cfg))
    }

    /// Configs from a diffusers folder given with `--config`.
    struct BaseConfigs {
        unet: Option<UNetConfig>,
        vae: Option<VaeConfig>,
        clip: Option<ClipConfig>,
        scheduler: Option<(String, String)>,
    }

    fn base_configs(dir: Option<&Path>) -> Result<BaseConfigs> {
        let mut b = BaseConfigs { unet: None, vae: None, clip: None, scheduler: None };
        let Some(dir) = dir else { return Ok(b) };
        if let Some((f, t)) = config_json(&dir.join("unet"))? {
            b.unet = Some(parse_unet_config(&f, &t)?);
        }
        if let Some((f, t)) = config_json(&dir.join("vae"))? {
            b.vae = Some(parse_vae_config(&f, &t)?);
        }
        if let Some((f, t)) = config_json(&dir.join("text_encoder"))? {
            b.clip = Some(parse_clip_config(&f, &t)?);
        }
        let s = dir.join("scheduler").join("scheduler_config.json");
        if s.is_file() {
            b.scheduler = Some((s.display().to_string(), read_text(&s)?));
        }
        Ok(b)
    }

    fn motion_with_config(path: &Path, config: Option<&Path>) -> Result<MotionModel> {
        if path.as_os_str().is_empty() {
            return Err(Error::input("motion", "a motion module is required (--motion: an AnimateDiff .ckpt/.safetensors or a MotionAdapter folder)"));
        }
        let mut m = open_motion(path)?;
        if let Some(c) = config {
            let file = if c.is_dir() { c.join("config.json") } else { c.to_path_buf() };
            let base = parse_motion_config(&file.display().to_string(), &read_text(&file)?)?;
            let pe = Some(m.config.motion_max_seq_length);
            m.config = infer_motion_config(&m.source, pe, Some(&base))?;
        }
        Ok(m)
    }

    /// Open the LoRA files and merge them ([`super::merge_loras`]).
    fn merge_lora_files(
        loras: &[(PathBuf, f32)],
        unet: ComponentSource,
        text_encoder: ComponentSource,
        motion: MotionModel,
        description: &mut Vec<String>,
    ) -> Result<(ComponentSource, ComponentSource, MotionModel)> {
        let opened = loras.iter().map(|(p, w)| Ok((Lora::open(p)?, *w))).collect::<Result<Vec<_>>>()?;
        merge_loras(&opened, unet, text_encoder, motion, description)
    }

    /// Open every component (headers only: tensor data is read at upload time).
    pub fn open_pipeline(paths: &ModelPaths) -> Result<HostPipeline> {
        if let Some(mut h) = crate::pipeline::quantized::open_quantized_pipeline(paths)? {
            if let Some(p) = &paths.vae {
                (h.vae, h.vae_config) = open_vae(p, Some(&h.vae_config))?;
                h.description.push(format!("vae: {}", p.display()));
            }
            return Ok(h);
        }
        let base = base_configs(paths.config.as_deref())?;
        let motion = motion_with_config(&paths.motion, paths.motion_config.as_deref())?;
        let mut description = vec![format!("motion: {} ({:?}, {} naming)", paths.motion.display(), motion.version, if motion.original_naming { "original AnimateDiff" } else { "diffusers" })];
        let model = &paths.model;
        let (unet, unet_config, vae, vae_config, text_encoder, clip_config, sched_json) = if model.is_dir() {
            let d = open_diffusers_dir(model)?;
            let sched = d.scheduler_config.map(|t| (model.join("scheduler/scheduler_config.json").display().to_string(), t));
            description.push(format!("model: {} (diffusers folder)", model.display()));
            (d.unet, d.unet_config, Some(d.vae), Some(d.vae_config), d.text_encoder, d.clip_config, sched.or(base.scheduler))
        } else {
            let s = open_single_file(model)?;
            let unet_config = infer_unet_config(&s.unet, base.unet.as_ref().or(Some(&s.unet_config)))?;
            let text_encoder = s.text_encoder.ok_or_else(|| {
                Error::Load(LoadError::Unsupported { file: model.display().to_string(), message: "the checkpoint has no text encoder (cond_stage_model.*)".into() })
            })?;
            let clip_config = infer_clip_config(&text_encoder, base.clip.as_ref().or(s.clip_config.as_ref()))?;
            let vae_config = match &s.vae {
                Some(v) => Some(infer_vae_config(v, base.vae.as_ref().or(s.vae_config.as_ref()))?),
                None => None,
            };
            description.push(format!("model: {} (LDM single file{})", model.display(), if s.ema_used { ", EMA weights" } else { "" }));
            (s.unet, unet_config, s.vae, vae_config, text_encoder, clip_config, base.scheduler)
        };
        let (vae, vae_config) = match (&paths.vae, vae, vae_config) {
            (Some(p), _, cfg) => {
                description.push(format!("vae: {}", p.display()));
                open_vae(p, base.vae.as_ref().or(cfg.as_ref()))?
            }
            (None, Some(v), Some(c)) => (v, c),
            _ => {
                return Err(Error::input(
                    "vae",
                    format!("{} has no VAE (a \"noVAE\" checkpoint): pass one with --vae (e.g. the SD1.5 VAE or sd-vae-ft-mse)", model.display()),
                ))
            }
        };
        let scheduler = scheduler_config(sched_json.as_ref().map(|(f, t)| (f.as_str(), t.as_str())))?;
        let (unet, text_encoder, motion) =
            if paths.loras.is_empty() { (unet, text_encoder, motion) } else { merge_lora_files(&paths.loras, unet, text_encoder, motion, &mut description)? };
        Ok(HostPipeline { unet, unet_config, vae, vae_config, text_encoder, clip_config, motion, scheduler, description, quantized: None, bytes: 0.0 })
    }
}
