//! What is this file or folder? LDM single-file SD1.5 checkpoints, original AnimateDiff
//! motion modules (v1/v2/v3/AnimateLCM, model-spec §1.1), diffusers `MotionAdapter`s,
//! diffusers component files and folders, diffusers pipeline folders. Recognised but
//! unsupported models (SDXL, inpainting, SD2, SDXL motion modules, MotionLoRA, …) are
//! [`LoadError::Unsupported`] naming the file and the key that gave them away.

use super::archive::{ArchiveFormat, TensorArchive};
use super::keymap::{ldm_maps, LDM_CLIP_PREFIX, LDM_EMA_PREFIX, LDM_UNET_PREFIX, LDM_VAE_PREFIXES};
use super::{LoadError, LoadResult};

/// AnimateDiff motion-module generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MotionVersion {
    /// `mm_sd_v14/v15`: no mid block, PE length 24, joint-over-frames ResNet GroupNorm.
    V1,
    /// `mm_sd_v15_v2`: mid block, PE length 32.
    V2,
    /// `v3_sd15_mm`: no mid block, PE length 32.
    V3,
    /// AnimateLCM: mid block, no stored PE (or a 64-long one), max length 64.
    AnimateLcm,
}

impl std::fmt::Display for MotionVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MotionVersion::V1 => "v1",
            MotionVersion::V2 => "v2",
            MotionVersion::V3 => "v3",
            MotionVersion::AnimateLcm => "AnimateLCM",
        })
    }
}

/// The rules other tools use (model-spec §1.1): a mid block means v2, or AnimateLCM when the
/// file has no positional encoding (or a 64-long one); otherwise PE length 24 means v1, else v3.
pub fn motion_version(has_mid_block: bool, has_pe: bool, pe_len: Option<usize>) -> MotionVersion {
    if has_mid_block {
        if !has_pe || pe_len == Some(64) {
            MotionVersion::AnimateLcm
        } else {
            MotionVersion::V2
        }
    } else if pe_len == Some(24) {
        MotionVersion::V1
    } else {
        MotionVersion::V3
    }
}

/// What a motion-module file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionInfo {
    pub version: MotionVersion,
    /// Original AnimateDiff naming (`temporal_transformer`), else diffusers `MotionAdapter`.
    pub original_naming: bool,
    pub has_mid_block: bool,
    /// Positional-encoding length in the file (`None` if it has none).
    pub pe_len: Option<usize>,
    /// Down levels with motion modules (4 for SD1.5).
    pub levels: usize,
    /// Number of motion modules (20 or 21 for SD1.5).
    pub modules: usize,
}

/// What an LDM single file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct LdmInfo {
    pub has_vae: bool,
    pub has_text_encoder: bool,
    /// `model_ema.*` keys (> 100: the file carries EMA weights too).
    pub ema_keys: usize,
    pub unet_in_channels: usize,
    pub cross_attention_dim: usize,
    /// Keys that belong to no component we load (DDPM buffers, `loss.*`, …): count.
    pub other_keys: usize,
}

impl LdmInfo {
    pub fn has_ema(&self) -> bool {
        self.ema_keys > 100
    }
}

/// What a single weight file holds.
#[derive(Debug, Clone, PartialEq)]
pub enum ArchiveKind {
    /// A civitai-style SD1.5 checkpoint (UNet + optional VAE + optional CLIP).
    LdmCheckpoint(LdmInfo),
    /// Motion modules (original AnimateDiff or diffusers `MotionAdapter` naming).
    MotionModule(MotionInfo),
    /// diffusers `UNet2DConditionModel` weights; `motion_modules`: a `UNetMotionModel` with
    /// the motion modules inside.
    DiffusersUnet { motion_modules: bool },
    /// diffusers `AutoencoderKL` weights.
    DiffusersVae,
    /// transformers `CLIPTextModel` weights (with or without the `text_model.` level).
    DiffusersTextEncoder,
}

impl ArchiveKind {
    pub fn describe(&self) -> String {
        match self {
            ArchiveKind::LdmCheckpoint(_) => "LDM single-file SD1.5 checkpoint".into(),
            ArchiveKind::MotionModule(m) => format!(
                "AnimateDiff motion module {} ({} naming)",
                m.version,
                if m.original_naming { "original" } else { "diffusers MotionAdapter" }
            ),
            ArchiveKind::DiffusersUnet { motion_modules: false } => "diffusers UNet2DConditionModel".into(),
            ArchiveKind::DiffusersUnet { motion_modules: true } => "diffusers UNetMotionModel".into(),
            ArchiveKind::DiffusersVae => "diffusers AutoencoderKL".into(),
            ArchiveKind::DiffusersTextEncoder => "CLIP text encoder".into(),
        }
    }
}

fn unsupported(a: &TensorArchive, message: String) -> LoadError {
    LoadError::Unsupported { file: a.origin(), message }
}

fn find_key(a: &TensorArchive, pred: impl Fn(&str) -> bool) -> Option<&str> {
    a.keys().find(|k| pred(k))
}

/// Check a UNet's input and cross-attention widths: 9 input channels is an inpainting model,
/// 1024-wide context SD2, 2048 SDXL.
fn check_unet_dims(a: &TensorArchive, conv_in: &str, attn2_suffix_prefix: &str) -> LoadResult<(usize, usize)> {
    let e = a.entry(conv_in).ok_or_else(|| unsupported(a, format!("not an SD1.5 UNet: key `{conv_in}` is missing")))?;
    let in_ch = e.shape.get(1).copied().unwrap_or(0);
    match in_ch {
        4 => {}
        9 => return Err(unsupported(a, format!("inpainting model (`{conv_in}` takes 9 input channels); only text-to-image SD1.5 models are supported"))),
        n => return Err(unsupported(a, format!("`{conv_in}` takes {n} input channels (SD1.5 text-to-image takes 4)"))),
    }
    let k = find_key(a, |k| k.starts_with(attn2_suffix_prefix) && k.ends_with("attn2.to_k.weight"));
    let ctx = match k.and_then(|k| a.entry(k)) {
        Some(e) => e.shape.get(1).copied().unwrap_or(0),
        None => return Err(unsupported(a, format!("no cross-attention found (`{attn2_suffix_prefix}…attn2.to_k.weight` is missing)"))),
    };
    let key = k.unwrap_or_default();
    match ctx {
        1024 => Err(unsupported(a, format!("Stable Diffusion 2.x model (`{key}` has a 1024-wide text context); only SD1.5 is supported"))),
        2048 => Err(unsupported(a, format!("SDXL model (`{key}` has a 2048-wide text context); only SD1.5 is supported"))),
        _ => Ok((in_ch, ctx)),
    }
}

/// Classify a weight file by its keys and shapes. Nothing but the header is read.
pub fn classify_archive(a: &TensorArchive) -> LoadResult<ArchiveKind> {
    if a.is_empty() {
        return Err(unsupported(a, "the file holds no tensors".into()));
    }
    // SDXL in any packaging.
    if let Some(k) = find_key(a, |k| {
        k.starts_with("conditioner.embedders") || k.starts_with("model.diffusion_model.label_emb") || k.starts_with("add_embedding.")
    }) {
        return Err(unsupported(a, format!("SDXL model (key `{k}`); only SD1.5 is supported")));
    }
    if let Some(k) = find_key(a, |k| k.contains("_lora.") || k.starts_with("lora_unet_") || k.starts_with("lora_te_") || k.contains(".lora_")) {
        return Err(unsupported(a, format!("LoRA weights (key `{k}`), not a model")));
    }
    if a.keys().any(|k| k.starts_with(LDM_UNET_PREFIX)) {
        return classify_ldm(a);
    }
    if a.keys().any(|k| k.contains("motion_modules.")) {
        if a.contains("conv_in.weight") && a.keys().any(|k| k.contains(".resnets.")) {
            check_unet_dims(a, "conv_in.weight", "down_blocks.")?;
            return Ok(ArchiveKind::DiffusersUnet { motion_modules: true });
        }
        return classify_motion(a);
    }
    if a.contains("conv_in.weight") && a.contains("time_embedding.linear_1.weight") {
        check_unet_dims(a, "conv_in.weight", "down_blocks.")?;
        return Ok(ArchiveKind::DiffusersUnet { motion_modules: false });
    }
    if a.contains("decoder.conv_in.weight") || a.contains("encoder.conv_in.weight") {
        return Ok(ArchiveKind::DiffusersVae);
    }
    if a.contains("text_model.embeddings.token_embedding.weight") || a.contains("embeddings.token_embedding.weight") {
        return Ok(ArchiveKind::DiffusersTextEncoder);
    }
    if let Some(k) = find_key(a, |k| k.starts_with("cond_stage_model.model.") || k.starts_with("model.diffusion_model.")) {
        return Err(unsupported(a, format!("unexpected key `{k}`")));
    }
    let first = a.keys().next().unwrap_or_default();
    Err(unsupported(
        a,
        format!(
            "unrecognised weights (first key `{first}`): expected an SD1.5 checkpoint (`{LDM_UNET_PREFIX}…`), a motion module (`…motion_modules…`) or a diffusers component"
        ),
    ))
}

fn classify_ldm(a: &TensorArchive) -> LoadResult<ArchiveKind> {
    if let Some(k) = find_key(a, |k| k.starts_with("cond_stage_model.model.")) {
        return Err(unsupported(a, format!("Stable Diffusion 2.x model (OpenCLIP text encoder key `{k}`); only SD1.5 is supported")));
    }
    let (in_ch, ctx) = check_unet_dims(a, "model.diffusion_model.input_blocks.0.0.weight", LDM_UNET_PREFIX)?;
    let maps = ldm_maps(a, false)?;
    if let Some(k) = maps.unmapped.iter().find(|k| k.starts_with(LDM_UNET_PREFIX)) {
        return Err(unsupported(a, format!("unexpected UNet key `{k}` (not an SD1.5 UNet layout)")));
    }
    for need in ["conv_out.weight", "time_embedding.linear_1.weight", "conv_norm_out.weight"] {
        if !maps.unet.contains_key(need) {
            let k = match need {
                "conv_out.weight" => "model.diffusion_model.out.2.weight",
                "conv_norm_out.weight" => "model.diffusion_model.out.0.weight",
                _ => "model.diffusion_model.time_embed.0.weight",
            };
            return Err(unsupported(a, format!("incomplete SD1.5 UNet: key `{k}` is missing")));
        }
    }
    if let Some(e) = a.entry(&format!("{LDM_CLIP_PREFIX}text_model.embeddings.token_embedding.weight")) {
        if let Some(&h) = e.shape.get(1) {
            if h != ctx {
                return Err(unsupported(a, format!("text encoder width {h} (`{}`) != UNet cross-attention width {ctx}", e.name)));
            }
        }
    }
    let has_vae = LDM_VAE_PREFIXES.iter().any(|p| a.keys().any(|k| k.starts_with(p)));
    if has_vae && !maps.vae.contains_key("decoder.conv_in.weight") {
        return Err(unsupported(a, "the VAE has no `decoder.conv_in.weight`".into()));
    }
    let known = maps.unet.len() + maps.vae.len() + maps.text_encoder.len();
    let ema_keys = a.keys().filter(|k| k.starts_with(LDM_EMA_PREFIX)).count();
    Ok(ArchiveKind::LdmCheckpoint(LdmInfo {
        has_vae,
        has_text_encoder: !maps.text_encoder.is_empty(),
        ema_keys,
        unet_in_channels: in_ch,
        cross_attention_dim: ctx,
        other_keys: a.len().saturating_sub(known + ema_keys),
    }))
}

fn classify_motion(a: &TensorArchive) -> LoadResult<ArchiveKind> {
    let m = super::keymap::motion_map(a)?;
    if m.map.is_empty() {
        return Err(unsupported(a, "motion-module file without any motion-module weights".into()));
    }
    let mut levels = 0;
    while m.map.keys().any(|k| k.starts_with(&format!("down_blocks.{levels}.motion_modules."))) {
        levels += 1;
    }
    if levels == 3 {
        return Err(unsupported(a, "SDXL motion module (3 levels, e.g. mm_sdxl_v10_beta / HotShot-XL); only SD1.5 ones are supported".into()));
    }
    if levels == 0 {
        let k = m.map.values().next().map(|t| t.key.clone()).unwrap_or_default();
        return Err(unsupported(a, format!("motion module without down blocks (first key `{k}`)")));
    }
    let has_mid = m.map.keys().any(|k| k.starts_with("mid_block.motion_modules."));
    // Two temporal attentions per module (SparseCtrl's have one).
    if let Some(k) = m.map.keys().find(|k| k.contains(".transformer_blocks.0.attn1.")) {
        let two = k.replacen(".attn1.", ".attn2.", 1);
        if !m.map.contains_key(&two) {
            return Err(unsupported(a, format!("motion module with a single temporal attention (SparseCtrl?): `{two}` is missing")));
        }
    } else {
        let k = m.map.values().next().map(|t| t.key.clone()).unwrap_or_default();
        return Err(unsupported(a, format!("motion module without temporal attentions (first key `{k}`)")));
    }
    let modules = m
        .map
        .keys()
        .filter_map(|k| k.split_once(".motion_modules.").and_then(|(b, r)| Some((b, r.split_once('.')?.0))))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    Ok(ArchiveKind::MotionModule(MotionInfo {
        version: motion_version(has_mid, m.has_pe, m.pe_len),
        original_naming: m.original,
        has_mid_block: has_mid,
        pe_len: m.pe_len,
        levels,
        modules,
    }))
}

/// What a diffusers / transformers folder is, from its `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    Unet,
    /// `UNetMotionModel` (a UNet with the motion modules inside).
    UnetMotion,
    Vae,
    TextEncoder,
    MotionAdapter,
    Scheduler,
}

impl ComponentKind {
    /// From a config's `_class_name` / `architectures[0]`.
    pub fn from_class(class: &str) -> Option<ComponentKind> {
        Some(match class {
            "UNet2DConditionModel" => ComponentKind::Unet,
            "UNetMotionModel" => ComponentKind::UnetMotion,
            "AutoencoderKL" => ComponentKind::Vae,
            "CLIPTextModel" | "CLIPTextModelWithProjection" => ComponentKind::TextEncoder,
            "MotionAdapter" => ComponentKind::MotionAdapter,
            c if c.ends_with("Scheduler") => ComponentKind::Scheduler,
            _ => return None,
        })
    }
}

/// A file or folder, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Detected {
    /// A diffusers pipeline folder (`model_index.json`, or `unet/`, `vae/`, `text_encoder/`).
    DiffusersPipeline { components: Vec<String> },
    /// A diffusers / transformers component folder.
    DiffusersComponent { kind: ComponentKind, class: String },
    /// A single weight file.
    File { format: ArchiveFormat, kind: ArchiveKind },
}

/// Classify a file or folder on disk.
#[cfg(not(target_arch = "wasm32"))]
pub fn detect_path(path: &std::path::Path) -> LoadResult<Detected> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Io { file: name.clone(), source })?;
    if meta.is_file() {
        let a = TensorArchive::open_path(path)?;
        let kind = classify_archive(&a)?;
        return Ok(Detected::File { format: a.format(), kind });
    }
    let config = path.join("config.json");
    if path.join("model_index.json").is_file() || ["unet", "vae", "text_encoder"].iter().all(|c| path.join(c).is_dir()) {
        let mut components: Vec<String> = std::fs::read_dir(path)
            .map_err(|source| LoadError::Io { file: name.clone(), source })?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        components.sort();
        return Ok(Detected::DiffusersPipeline { components });
    }
    let cfg_file = if config.is_file() { config } else { path.join("scheduler_config.json") };
    if cfg_file.is_file() {
        let text = std::fs::read_to_string(&cfg_file).map_err(|source| LoadError::Io { file: cfg_file.display().to_string(), source })?;
        let class = super::config::config_class_name(&text).ok_or_else(|| LoadError::Config {
            file: cfg_file.display().to_string(),
            message: "no `_class_name` or `architectures` entry".into(),
        })?;
        let kind = ComponentKind::from_class(&class).ok_or_else(|| LoadError::Unsupported {
            file: cfg_file.display().to_string(),
            message: format!("component class `{class}` is not supported"),
        })?;
        return Ok(Detected::DiffusersComponent { kind, class });
    }
    Err(LoadError::Unsupported {
        file: name,
        message: "folder without model_index.json, config.json or unet/vae/text_encoder subfolders".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(motion_version(true, true, Some(32)), MotionVersion::V2);
        assert_eq!(motion_version(true, false, None), MotionVersion::AnimateLcm);
        assert_eq!(motion_version(true, true, Some(64)), MotionVersion::AnimateLcm);
        assert_eq!(motion_version(false, true, Some(24)), MotionVersion::V1);
        assert_eq!(motion_version(false, true, Some(32)), MotionVersion::V3);
        assert_eq!(motion_version(false, false, None), MotionVersion::V3);
    }
}
