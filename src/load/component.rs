//! Model components as [`WeightSource`]s under diffusers names, whatever the files look like:
//! diffusers folders (`unet/`, `vae/`, `text_encoder/`, `motion_adapter/`), LDM single-file
//! checkpoints, original AnimateDiff motion modules (`.ckpt` or `.safetensors`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::archive::{FileDType, TensorArchive};
use super::config::{infer_clip_config, infer_motion_config, infer_unet_config, infer_vae_config, parse_motion_config};
use super::detect::{classify_archive, motion_version, ArchiveKind, LdmInfo, MotionVersion};
use super::keymap::{clip_map, identity_map, ldm_maps, motion_map, KeyMap, KeyTarget};
use super::lora::LoraDeltas;
use super::{HostTensor, LoadError, LoadResult, WeightSource};
use crate::model::config::{ClipConfig, MotionConfig, UNetConfig, VaeConfig};

/// A tensor as stored: file dtype, (possibly reshaped) shape, little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: FileDType,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// One model component: archive(s) plus a diffusers-name → archive-key map.
#[derive(Debug, Clone)]
pub struct ComponentSource {
    archives: Vec<Arc<TensorArchive>>,
    map: BTreeMap<String, (usize, KeyTarget)>,
    origin: String,
    /// LoRA deltas added to the tensors they affect ([`ComponentSource::with_lora`]).
    lora: Option<Arc<LoraDeltas>>,
}

impl ComponentSource {
    /// `map` must point at keys of `archive` (checked: a dangling key is an error).
    pub fn new(archive: Arc<TensorArchive>, map: KeyMap) -> LoadResult<ComponentSource> {
        ComponentSource::from_shards(vec![(archive, map)])
    }

    /// Several files (sharded checkpoints), each with its own map. A diffusers name served by
    /// two shards is an error.
    pub fn from_shards(shards: Vec<(Arc<TensorArchive>, KeyMap)>) -> LoadResult<ComponentSource> {
        let origin = shards.iter().map(|(a, _)| a.origin()).collect::<Vec<_>>().join(" + ");
        let mut archives = Vec::with_capacity(shards.len());
        let mut map = BTreeMap::new();
        for (i, (a, m)) in shards.into_iter().enumerate() {
            for (name, t) in m {
                let e = a.entry(&t.key).ok_or_else(|| LoadError::MissingTensor { file: a.origin(), tensor: t.key.clone() })?;
                if let Some(r) = &t.reshape {
                    if r.iter().product::<usize>() as u64 != e.numel() {
                        return Err(LoadError::Shape { file: a.origin(), tensor: t.key.clone(), expected: r.clone(), found: e.shape.clone() });
                    }
                }
                if map.insert(name.clone(), (i, t)).is_some() {
                    return Err(LoadError::Corrupt { file: origin.clone(), format: "weights", message: format!("`{name}` is in more than one file") });
                }
            }
            archives.push(a);
        }
        Ok(ComponentSource { archives, map, origin, lora: None })
    }

    /// Every tensor of `archive` under its own name.
    pub fn identity(archive: Arc<TensorArchive>) -> ComponentSource {
        let map = identity_map(&archive);
        let origin = archive.origin();
        ComponentSource { map: map.into_iter().map(|(k, t)| (k, (0, t))).collect(), archives: vec![archive], origin, lora: None }
    }

    /// Keep only the names `keep` accepts.
    pub fn filter(mut self, keep: impl Fn(&str) -> bool) -> ComponentSource {
        self.map.retain(|k, _| keep(k));
        self
    }

    /// Serve the tensors with these LoRA deltas merged in (resolved against this component's
    /// names, [`LoraDeltas::resolve`]); [`Self::raw`] then returns merged tensors as F32.
    pub fn with_lora(mut self, deltas: Arc<LoraDeltas>) -> ComponentSource {
        self.lora = Some(deltas);
        self
    }

    /// The LoRA deltas this component merges in, if any.
    pub fn lora(&self) -> Option<&Arc<LoraDeltas>> {
        self.lora.as_ref()
    }

    pub fn archives(&self) -> &[Arc<TensorArchive>] {
        &self.archives
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Where `name` lives: (archive, target).
    pub fn target(&self, name: &str) -> Option<(&Arc<TensorArchive>, &KeyTarget)> {
        let (i, t) = self.map.get(name)?;
        Some((self.archives.get(*i)?, t))
    }

    fn resolve(&self, name: &str) -> LoadResult<(&Arc<TensorArchive>, &KeyTarget)> {
        self.target(name).ok_or_else(|| LoadError::MissingTensor { file: self.origin.clone(), tensor: name.to_string() })
    }

    /// The dtype `name` has in its file.
    pub fn file_dtype(&self, name: &str) -> Option<FileDType> {
        let (a, t) = self.target(name)?;
        a.entry(&t.key).map(|e| e.dtype)
    }

    /// How many tensors of each file dtype this component serves.
    pub fn dtype_counts(&self) -> BTreeMap<FileDType, usize> {
        let mut m = BTreeMap::new();
        for name in self.map.keys() {
            if let Some(d) = self.file_dtype(name) {
                *m.entry(d).or_insert(0) += 1;
            }
        }
        m
    }

    /// The tensor as stored (no conversion), under its diffusers shape; tensors a LoRA changes
    /// come merged, as F32.
    pub fn raw(&self, name: &str) -> LoadResult<RawTensor> {
        if self.lora.as_ref().is_some_and(|l| l.affects(name)) {
            let t = self.tensor(name)?;
            return Ok(RawTensor { dtype: FileDType::F32, shape: t.shape, bytes: t.data.iter().flat_map(|v| v.to_le_bytes()).collect() });
        }
        let (a, t) = self.resolve(name)?;
        let e = a.entry(&t.key).ok_or_else(|| LoadError::MissingTensor { file: a.origin(), tensor: t.key.clone() })?;
        let bytes = a.read_raw(&t.key)?;
        Ok(RawTensor { dtype: e.dtype, shape: t.reshape.clone().unwrap_or_else(|| e.shape.clone()), bytes })
    }
}

impl WeightSource for ComponentSource {
    fn tensor(&self, name: &str) -> LoadResult<HostTensor> {
        let (a, t) = self.resolve(name)?;
        let mut h = a.read_f32(&t.key).map_err(|e| match e {
            // Name the diffusers tensor too, so errors make sense to model code.
            LoadError::MissingTensor { file, tensor } => LoadError::MissingTensor { file, tensor: format!("{tensor} (for `{name}`)") },
            other => other,
        })?;
        if let Some(r) = &t.reshape {
            h.shape = r.clone();
        }
        if let Some(l) = &self.lora {
            l.merge_into(name, &mut h)?;
        }
        Ok(h)
    }

    fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let (a, t) = self.target(name)?;
        t.reshape.clone().or_else(|| a.entry(&t.key).map(|e| e.shape.clone()))
    }

    fn names(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }

    fn origin(&self) -> String {
        self.origin.clone()
    }
}

/// Options for opening models.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Use the EMA UNet weights of LDM files that carry them (default: the non-EMA ones).
    pub use_ema: bool,
    /// Prefer this weight-file variant in diffusers folders (`"fp16"` →
    /// `diffusion_pytorch_model.fp16.safetensors`). Without it the plain file is preferred
    /// and the fp16 one is the fallback.
    pub variant: Option<String>,
}

/// A diffusers pipeline: the three SD1.5 components, their configs, the scheduler config text
/// and (for AnimateDiff pipelines) the motion adapter.
#[derive(Debug, Clone)]
pub struct DiffusersModel {
    pub unet: ComponentSource,
    pub unet_config: UNetConfig,
    pub vae: ComponentSource,
    pub vae_config: VaeConfig,
    pub text_encoder: ComponentSource,
    pub clip_config: ClipConfig,
    /// `scheduler/scheduler_config.json`, verbatim.
    pub scheduler_config: Option<String>,
    /// `motion_adapter/`, or the motion modules of a `UNetMotionModel` `unet/`.
    pub motion: Option<MotionModel>,
}

/// An LDM single-file checkpoint split into components.
#[derive(Debug, Clone)]
pub struct SingleFileModel {
    pub unet: ComponentSource,
    /// Inferred from shapes, SD1.5 for what shapes cannot say (groups 32, heads 8).
    pub unet_config: UNetConfig,
    pub vae: Option<ComponentSource>,
    pub vae_config: Option<VaeConfig>,
    pub text_encoder: Option<ComponentSource>,
    pub clip_config: Option<ClipConfig>,
    pub info: LdmInfo,
    /// Whether the UNet serves the EMA weights.
    pub ema_used: bool,
}

/// Motion modules under diffusers `MotionAdapter` names (positional-encoding buffers are not
/// served: they are computed; their length is `config.motion_max_seq_length`).
#[derive(Debug, Clone)]
pub struct MotionModel {
    pub source: ComponentSource,
    pub config: MotionConfig,
    pub version: MotionVersion,
    /// Original AnimateDiff naming in the file.
    pub original_naming: bool,
}

/// A diffusers-folder component from its weight file(s): the right key map for its kind.
pub fn diffusers_component(kind: super::detect::ComponentKind, shards: Vec<Arc<TensorArchive>>) -> LoadResult<ComponentSource> {
    use super::detect::ComponentKind as K;
    let mut v = Vec::with_capacity(shards.len());
    for a in shards {
        let m = match kind {
            K::TextEncoder => clip_map(&a)?,
            K::MotionAdapter => motion_map(&a)?.map,
            _ => identity_map(&a),
        };
        v.push((a, m));
    }
    ComponentSource::from_shards(v)
}

/// Split an LDM single file (already opened) into components.
pub fn open_single_file_archive(a: Arc<TensorArchive>, opts: &OpenOptions) -> LoadResult<SingleFileModel> {
    let info = match classify_archive(&a)? {
        ArchiveKind::LdmCheckpoint(i) => i,
        other => {
            return Err(LoadError::Unsupported {
                file: a.origin(),
                message: format!("expected an LDM single-file SD1.5 checkpoint, found {}", other.describe()),
            })
        }
    };
    let maps = ldm_maps(&a, opts.use_ema)?;
    let unet = ComponentSource::new(a.clone(), maps.unet)?;
    let unet_config = infer_unet_config(&unet, None)?;
    let vae = if maps.vae.is_empty() { None } else { Some(ComponentSource::new(a.clone(), maps.vae)?) };
    let vae_config = vae.as_ref().map(|v| infer_vae_config(v, None)).transpose()?;
    let text_encoder = if maps.text_encoder.is_empty() { None } else { Some(ComponentSource::new(a.clone(), maps.text_encoder)?) };
    let clip_config = text_encoder.as_ref().map(|t| infer_clip_config(t, None)).transpose()?;
    Ok(SingleFileModel { unet, unet_config, vae, vae_config, text_encoder, clip_config, info, ema_used: maps.ema_used })
}

/// Motion modules from an opened file (original or diffusers naming, or a `UNetMotionModel`),
/// with an optional `MotionAdapter` `config.json` text (else the config is inferred).
pub fn open_motion_archives(shards: Vec<Arc<TensorArchive>>, config_json: Option<(&str, &str)>) -> LoadResult<MotionModel> {
    let mut v = Vec::with_capacity(shards.len());
    let (mut has_pe, mut pe_len, mut original) = (false, None, false);
    for a in shards {
        match classify_archive(&a)? {
            ArchiveKind::MotionModule(_) | ArchiveKind::DiffusersUnet { motion_modules: true } => {}
            other => {
                return Err(LoadError::Unsupported {
                    file: a.origin(),
                    message: format!("expected AnimateDiff motion modules, found {}", other.describe()),
                })
            }
        }
        let m = motion_map(&a)?;
        has_pe |= m.has_pe;
        pe_len = pe_len.max(m.pe_len);
        original |= m.original;
        let map = m.map.into_iter().filter(|(k, _)| k.contains("motion_modules.")).collect();
        v.push((a, map));
    }
    let source = ComponentSource::from_shards(v)?;
    let base = config_json.map(|(file, text)| parse_motion_config(file, text)).transpose()?;
    let config = infer_motion_config(&source, pe_len, base.as_ref())?;
    if let Some(b) = &base {
        if b.block_out_channels != config.block_out_channels || b.use_motion_mid_block != config.use_motion_mid_block {
            return Err(LoadError::Config {
                file: config_json.map(|c| c.0.to_string()).unwrap_or_default(),
                message: format!(
                    "config says block_out_channels {:?} / mid block {}, the weights have {:?} / {}",
                    b.block_out_channels, b.use_motion_mid_block, config.block_out_channels, config.use_motion_mid_block
                ),
            });
        }
    }
    let version = motion_version(config.use_motion_mid_block, has_pe || base.is_some(), Some(config.motion_max_seq_length).filter(|_| has_pe || base.is_some()));
    Ok(MotionModel { source, config, version, original_naming: original })
}

// ---------------------------------------------------------------------------------------------
// Native: paths and folders.

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::load::config::{parse_clip_config, parse_unet_config, parse_vae_config};
    use crate::load::detect::ComponentKind;

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
        move |source| LoadError::Io { file: path.display().to_string(), source }
    }

    fn read_text(path: &Path) -> LoadResult<String> {
        std::fs::read_to_string(path).map_err(io(path))
    }

    /// The weight files of a diffusers / transformers component folder, in preference order:
    /// safetensors before `.bin`, the plain file before a variant (or the requested variant
    /// first), sharded `*.index.json` sets too.
    pub fn component_weight_files(dir: &Path, variant: Option<&str>) -> LoadResult<Vec<PathBuf>> {
        let stems = ["diffusion_pytorch_model", "model", "pytorch_model"];
        let mut variants: Vec<Option<&str>> = vec![None, Some("fp16")];
        if let Some(v) = variant {
            variants.retain(|x| *x != Some(v));
            variants.insert(0, Some(v));
        }
        for ext in ["safetensors", "bin"] {
            for v in &variants {
                for stem in stems {
                    let base = match v {
                        Some(v) => format!("{stem}.{v}.{ext}"),
                        None => format!("{stem}.{ext}"),
                    };
                    let single = dir.join(&base);
                    if single.is_file() {
                        return Ok(vec![single]);
                    }
                    let index = dir.join(format!("{base}.index.json"));
                    if index.is_file() {
                        return shard_files(dir, &index);
                    }
                }
            }
        }
        Err(LoadError::Unsupported {
            file: dir.display().to_string(),
            message: "no weight file (diffusion_pytorch_model[.fp16].safetensors, model.safetensors, *.bin)".into(),
        })
    }

    fn shard_files(dir: &Path, index: &Path) -> LoadResult<Vec<PathBuf>> {
        let text = read_text(index)?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| LoadError::Config { file: index.display().to_string(), message: format!("invalid JSON: {e}") })?;
        let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| LoadError::Config {
            file: index.display().to_string(),
            message: "no `weight_map` object".into(),
        })?;
        let mut files: Vec<String> = map.values().filter_map(|f| f.as_str().map(str::to_string)).collect();
        files.sort();
        files.dedup();
        if files.is_empty() || files.iter().any(|f| f.contains('/') || f.contains('\\') || f.contains("..")) {
            return Err(LoadError::Config { file: index.display().to_string(), message: "bad shard file names".into() });
        }
        Ok(files.into_iter().map(|f| dir.join(f)).collect())
    }

    fn open_archives(files: &[PathBuf]) -> LoadResult<Vec<Arc<TensorArchive>>> {
        files.iter().map(|f| TensorArchive::open_path(f).map(Arc::new)).collect()
    }

    fn component(dir: &Path, kind: ComponentKind, opts: &OpenOptions) -> LoadResult<(ComponentSource, String, String)> {
        let cfg_path = dir.join("config.json");
        let cfg = read_text(&cfg_path)?;
        let files = component_weight_files(dir, opts.variant.as_deref())?;
        let src = diffusers_component(kind, open_archives(&files)?)?;
        Ok((src, cfg_path.display().to_string(), cfg))
    }

    /// A diffusers pipeline folder (`unet/`, `vae/`, `text_encoder/`, optional `scheduler/`,
    /// optional `motion_adapter/`).
    pub fn open_diffusers_dir(dir: impl AsRef<Path>) -> LoadResult<DiffusersModel> {
        open_diffusers_dir_with(dir, &OpenOptions::default())
    }

    pub fn open_diffusers_dir_with(dir: impl AsRef<Path>, opts: &OpenOptions) -> LoadResult<DiffusersModel> {
        let dir = dir.as_ref();
        let unet_dir = dir.join("unet");
        let unet_cfg_text = read_text(&unet_dir.join("config.json"))?;
        let unet_cfg_file = unet_dir.join("config.json").display().to_string();
        let unet_class = crate::load::config::config_class_name(&unet_cfg_text).unwrap_or_default();
        let unet_motion = unet_class == "UNetMotionModel";
        let unet_files = open_archives(&component_weight_files(&unet_dir, opts.variant.as_deref())?)?;
        let unet = diffusers_component(ComponentKind::Unet, unet_files.clone())?.filter(|k| !k.contains("motion_modules."));
        let unet_config = parse_unet_config(&unet_cfg_file, &unet_cfg_text)?;
        check_unet(&unet, &unet_config, &unet_cfg_file)?;

        let (vae, vae_cfg_file, vae_cfg) = component(&dir.join("vae"), ComponentKind::Vae, opts)?;
        let vae_config = parse_vae_config(&vae_cfg_file, &vae_cfg)?;
        let (text_encoder, te_cfg_file, te_cfg) = component(&dir.join("text_encoder"), ComponentKind::TextEncoder, opts)?;
        let clip_config = parse_clip_config(&te_cfg_file, &te_cfg)?;
        let sched = dir.join("scheduler").join("scheduler_config.json");
        let scheduler_config = if sched.is_file() { Some(read_text(&sched)?) } else { None };

        let motion_dir = dir.join("motion_adapter");
        let motion = if motion_dir.join("config.json").is_file() {
            Some(open_motion(&motion_dir)?)
        } else if unet_motion {
            Some(open_motion_archives(unet_files, None)?)
        } else {
            None
        };
        Ok(DiffusersModel { unet, unet_config, vae, vae_config, text_encoder, clip_config, scheduler_config, motion })
    }

    /// The config and the weights must agree on what shapes can tell.
    fn check_unet(unet: &ComponentSource, cfg: &UNetConfig, cfg_file: &str) -> LoadResult<()> {
        let inferred = infer_unet_config(unet, Some(cfg))?;
        if inferred != *cfg {
            return Err(LoadError::Config {
                file: cfg_file.to_string(),
                message: format!("config and weights disagree: config {cfg:?}, weights {inferred:?}"),
            });
        }
        Ok(())
    }

    /// An LDM single-file checkpoint (`.safetensors` or `.ckpt`).
    pub fn open_single_file(path: impl AsRef<Path>) -> LoadResult<SingleFileModel> {
        open_single_file_with(path, &OpenOptions::default())
    }

    pub fn open_single_file_with(path: impl AsRef<Path>, opts: &OpenOptions) -> LoadResult<SingleFileModel> {
        open_single_file_archive(Arc::new(TensorArchive::open_path(path)?), opts)
    }

    /// Motion modules from a file (original `.ckpt`/`.safetensors`, diffusers
    /// `diffusion_pytorch_model.safetensors`) or a `MotionAdapter` folder.
    pub fn open_motion(path: impl AsRef<Path>) -> LoadResult<MotionModel> {
        let path = path.as_ref();
        if path.is_dir() {
            let cfg_path = path.join("config.json");
            let cfg = if cfg_path.is_file() { Some(read_text(&cfg_path)?) } else { None };
            let files = component_weight_files(path, None)?;
            let cfg_name = cfg_path.display().to_string();
            open_motion_archives(open_archives(&files)?, cfg.as_deref().map(|c| (cfg_name.as_str(), c)))
        } else {
            open_motion_archives(vec![Arc::new(TensorArchive::open_path(path)?)], None)
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::{component_weight_files, open_diffusers_dir, open_diffusers_dir_with, open_motion, open_single_file, open_single_file_with};
