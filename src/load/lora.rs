//! LoRA files merged into weights on the host (model-spec §1.7, §2.4):
//!
//! * **kohya / A1111** (`lora_unet_…`, `lora_te_…` / `lora_te1_…`, `.lora_down.weight`,
//!   `.lora_up.weight`, `.alpha`), with diffusers module paths
//!   (`lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q`) or LDM ones
//!   (`lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q`, `…_in_layers_2`,
//!   `…_skip_connection`, `…_op`); linear, 1×1 and 3×3 conv (LoCon) modules. Names are
//!   resolved with a table built from the target component's own diffusers names (`.`→`_`),
//!   since underscores inside names (`to_q`, `proj_in`) make splitting ambiguous.
//!   Scale `alpha / rank`; no (or zero) `.alpha` → 1, as kohya does.
//! * **diffusers / PEFT** (`unet.….to_q.lora_A.weight`, `text_encoder.….q_proj.lora_B.weight`,
//!   older `….to_q.lora.down.weight`, `….lora_linear_layer.up.weight`), scale
//!   `lora_alpha / r` from the `lora_adapter_metadata` that `save_lora_weights` writes (per
//!   component prefix, with `alpha_pattern`/`rank_pattern`/`use_rslora`), `.alpha` keys where a
//!   file has them, else 1.
//! * **attention processors**: AnimateDiff **MotionLoRA**
//!   (`…motion_modules.j.temporal_transformer.transformer_blocks.0.attention_blocks.{0,1}.processor.to_q_lora.down.weight`,
//!   original naming, mid block included) and the v3 domain adapter / old diffusers files
//!   (`…attn1.processor.to_out_lora.up.weight`): scale 1 (no alpha/rank scaling), `to_out` is
//!   `to_out.0`.
//!
//! Merge: `W' = W + Σ multiplier · scale · (up @ down)`, the conv case as
//! `(up.reshape(out, r) @ down.reshape(r, in·kh·kw)).reshape(W.shape)`. [`LoraMerged`] is a
//! [`WeightSource`] that adds the deltas when a tensor is asked for (nothing is precomputed).
//! LoHa / LoKr / DoRA / LoCon-Tucker (`lora_mid`) / LoRA biases are refused with
//! [`LoadError::Unsupported`]; keys that match no weight are listed in [`LoraReport`], and a LoRA
//! none of whose modules for a component matches is an error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::archive::TensorArchive;
use super::keymap::{clip_key, ldm_unet_key, original_motion_key};
use super::{HostTensor, LoadError, LoadResult, WeightSource};

/// Which model component a LoRA is merged into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoraTarget {
    /// The SD1.5 UNet (spatial layers; diffusers `UNet2DConditionModel` names).
    Unet,
    /// The CLIP text encoder (`text_model.…` names).
    TextEncoder,
    /// The motion modules (diffusers `MotionAdapter` names).
    Motion,
}

impl LoraTarget {
    pub const ALL: [LoraTarget; 3] = [LoraTarget::Unet, LoraTarget::TextEncoder, LoraTarget::Motion];

    pub fn name(self) -> &'static str {
        match self {
            LoraTarget::Unet => "unet",
            LoraTarget::TextEncoder => "text encoder",
            LoraTarget::Motion => "motion modules",
        }
    }
}

/// The naming family of a file (for messages; every file may mix forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraFormat {
    /// `lora_unet_…` / `lora_te_…` with `lora_down`/`lora_up`/`alpha`.
    Kohya,
    /// `lora_A`/`lora_B` (PEFT) or `lora.down`/`lora_linear_layer` (diffusers).
    Diffusers,
    /// `processor.to_q_lora.down.weight` (MotionLoRA, v3 adapter, old diffusers).
    AttnProcessor,
}

/// How a module's name is written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ModulePath {
    /// kohya: underscores for dots, without the `lora_unet_` / `lora_te_` prefix.
    Kohya(String),
    /// dotted module path (diffusers, LDM-free), without the component prefix.
    Dotted(String),
}

/// Scale rule of one module.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    /// `alpha / rank` (kohya; `alpha` missing or 0 → 1).
    AlphaOverRank(Option<f32>),
    Fixed(f32),
}

/// One low-rank pair of a file.
#[derive(Debug, Clone)]
pub struct LoraModule {
    /// The module as written in the file (the keys without `.lora_down.weight` etc.).
    pub key: String,
    /// The component the file's prefix or path assigns it to (`None`: not an SD1.5 part,
    /// e.g. `lora_te2_`).
    pub target: Option<LoraTarget>,
    pub format: LoraFormat,
    path: ModulePath,
    down: String,
    up: String,
    down_shape: Vec<usize>,
    up_shape: Vec<usize>,
    scale: Scale,
}

impl LoraModule {
    pub fn rank(&self) -> usize {
        self.down_shape.first().copied().unwrap_or(0)
    }

    /// The scale applied before the user's multiplier.
    pub fn scale(&self) -> f32 {
        match self.scale {
            Scale::Fixed(s) => s,
            Scale::AlphaOverRank(a) => match a {
                Some(a) if a != 0.0 && self.rank() > 0 => a / self.rank() as f32,
                _ => 1.0,
            },
        }
    }
}

/// A parsed LoRA file (headers and `.alpha` scalars only; the pairs are read when merged).
#[derive(Debug, Clone)]
pub struct Lora {
    archive: Arc<TensorArchive>,
    modules: Vec<LoraModule>,
    /// Keys that are no part of a LoRA pair (or pairs missing their other half).
    pub ignored: Vec<String>,
}

/// What one LoRA did to one component.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoraReport {
    pub file: String,
    pub multiplier: f32,
    /// Modules merged (diffusers tensor names).
    pub matched: Vec<String>,
    /// Modules of this component that matched no weight, or whose shapes did not fit
    /// (`key: reason`).
    pub skipped: Vec<String>,
}

fn lora_err(file: &str, message: impl Into<String>) -> LoadError {
    LoadError::Unsupported { file: file.to_string(), message: message.into() }
}

/// The pair role a key plays.
enum Role {
    Down,
    Up,
    Alpha,
}

/// `(module key, role, format)` of a file key.
fn split_key(k: &str) -> Option<(String, Role, LoraFormat)> {
    const SUFFIXES: [(&str, u8, LoraFormat); 13] = [
        (".lora_down.weight", 0, LoraFormat::Kohya),
        (".lora_up.weight", 1, LoraFormat::Kohya),
        (".alpha", 2, LoraFormat::Kohya),
        (".lora_A.weight", 0, LoraFormat::Diffusers),
        (".lora_B.weight", 1, LoraFormat::Diffusers),
        (".lora_A.default.weight", 0, LoraFormat::Diffusers),
        (".lora_B.default.weight", 1, LoraFormat::Diffusers),
        (".lora_linear_layer.down.weight", 0, LoraFormat::Diffusers),
        (".lora_linear_layer.up.weight", 1, LoraFormat::Diffusers),
        ("_lora.down.weight", 0, LoraFormat::AttnProcessor),
        ("_lora.up.weight", 1, LoraFormat::AttnProcessor),
        (".lora.down.weight", 0, LoraFormat::Diffusers),
        (".lora.up.weight", 1, LoraFormat::Diffusers),
    ];
    SUFFIXES.iter().find_map(|&(suf, role, fmt)| {
        let m = k.strip_suffix(suf)?;
        let role = match role {
            0 => Role::Down,
            1 => Role::Up,
            _ => Role::Alpha,
        };
        Some((m.to_string(), role, fmt))
    })
}

/// Markers of LoRA variants we do not merge.
fn unsupported_variant(k: &str) -> Option<&'static str> {
    if k.contains("hada_w") || k.contains(".hada_") {
        Some("LoHa (LyCORIS `hada_*`)")
    } else if k.contains("lokr_w") || k.contains(".lokr_") {
        Some("LoKr (LyCORIS `lokr_*`)")
    } else if k.ends_with("dora_scale") || k.contains("lora_magnitude_vector") {
        Some("DoRA (`dora_scale` / `lora_magnitude_vector`)")
    } else if k.contains(".lora_mid.") {
        Some("LoCon with Tucker decomposition (`lora_mid`)")
    } else if (k.contains(".lora_B.") || k.contains(".lora_up.")) && k.ends_with(".bias") {
        Some("LoRA biases (`lora_B.bias`)")
    } else if k.contains(".diff") && (k.ends_with(".diff") || k.ends_with(".diff_b")) {
        Some("full weight differences (`.diff`)")
    } else {
        None
    }
}

/// Component and path of a module key.
fn route(module: &str, fmt: LoraFormat) -> (Option<LoraTarget>, ModulePath) {
    if fmt == LoraFormat::Kohya {
        if let Some(r) = module.strip_prefix("lora_unet_") {
            let t = if r.contains("motion_modules") { LoraTarget::Motion } else { LoraTarget::Unet };
            return (Some(t), ModulePath::Kohya(r.to_string()));
        }
        for p in ["lora_te_", "lora_te1_"] {
            if let Some(r) = module.strip_prefix(p) {
                return (Some(LoraTarget::TextEncoder), ModulePath::Kohya(r.to_string()));
            }
        }
        if module.starts_with("lora_te2_") {
            return (None, ModulePath::Kohya(module.to_string()));
        }
        // `.lora_down` under dotted names (some converters): fall through to dotted.
    }
    let (prefix_target, rest) = if let Some(r) = module.strip_prefix("unet.") {
        (Some(LoraTarget::Unet), r)
    } else if let Some(r) = module.strip_prefix("text_encoder.") {
        (Some(LoraTarget::TextEncoder), r)
    } else if module.starts_with("text_encoder_2.") {
        return (None, ModulePath::Dotted(module.to_string()));
    } else {
        (None, module)
    };
    let t = if rest.contains("motion_modules") {
        LoraTarget::Motion
    } else if let Some(t) = prefix_target {
        t
    } else if rest.starts_with("text_model.") || rest.starts_with("encoder.layers.") {
        LoraTarget::TextEncoder
    } else {
        LoraTarget::Unet
    };
    let mut path = rest.replace(".processor.", ".");
    if fmt == LoraFormat::AttnProcessor {
        // `…attn1.to_q` (from `…attn1.processor.to_q_lora.down.weight`).
        if t == LoraTarget::TextEncoder {
            for (a, b) in [("to_q", "q_proj"), ("to_k", "k_proj"), ("to_v", "v_proj"), ("to_out", "out_proj")] {
                if let Some(p) = path.strip_suffix(a) {
                    path = format!("{p}{b}");
                    break;
                }
            }
        } else if let Some(p) = path.strip_suffix(".to_out") {
            path = format!("{p}.to_out.0");
        }
    }
    (Some(t), ModulePath::Dotted(path))
}

/// PEFT `lora_adapter_metadata` of one component prefix.
#[derive(Debug, Clone, Default)]
struct PeftMeta {
    lora_alpha: Option<f64>,
    r: Option<f64>,
    alpha_pattern: BTreeMap<String, f64>,
    rank_pattern: BTreeMap<String, f64>,
    rslora: bool,
    dora: bool,
}

fn pattern_match(p: &BTreeMap<String, f64>, module: &str) -> Option<f64> {
    p.iter().find(|(k, _)| module == k.as_str() || module.ends_with(&format!(".{k}"))).map(|(_, v)| *v)
}

fn peft_meta(file: &str, a: &TensorArchive) -> LoadResult<HashMap<String, PeftMeta>> {
    let mut out: HashMap<String, PeftMeta> = HashMap::new();
    let Some(text) = a.metadata().get("lora_adapter_metadata") else { return Ok(out) };
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| LoadError::Config { file: file.to_string(), message: format!("lora_adapter_metadata: {e}") })?;
    let Some(obj) = v.as_object() else { return Ok(out) };
    let num_map = |v: &serde_json::Value| -> BTreeMap<String, f64> {
        v.as_object().map(|o| o.iter().filter_map(|(k, x)| x.as_f64().map(|f| (k.clone(), f))).collect()).unwrap_or_default()
    };
    for (k, val) in obj {
        // `unet.lora_alpha`, `text_encoder.r`, … (or unprefixed for single-model files).
        let (prefix, field) = match k.rsplit_once('.') {
            Some((p, f)) => (p.to_string(), f),
            None => (String::new(), k.as_str()),
        };
        let m = out.entry(prefix).or_default();
        match field {
            "lora_alpha" => m.lora_alpha = val.as_f64(),
            "r" => m.r = val.as_f64(),
            "alpha_pattern" => m.alpha_pattern = num_map(val),
            "rank_pattern" => m.rank_pattern = num_map(val),
            "use_rslora" => m.rslora = val.as_bool().unwrap_or(false),
            "use_dora" => m.dora = val.as_bool().unwrap_or(false),
            _ => {}
        }
    }
    Ok(out)
}

impl Lora {
    /// Parse an opened archive (safetensors or `.ckpt`).
    pub fn from_archive(archive: Arc<TensorArchive>) -> LoadResult<Lora> {
        let file = archive.origin();
        let meta = peft_meta(&file, &archive)?;
        if let Some((p, _)) = meta.iter().find(|(_, m)| m.dora) {
            return Err(lora_err(&file, format!("DoRA LoRAs are not supported (`{p}` has use_dora)")));
        }
        struct Parts {
            down: Option<String>,
            up: Option<String>,
            alpha: Option<String>,
            fmt: Option<LoraFormat>,
        }
        let mut parts: BTreeMap<String, Parts> = BTreeMap::new();
        let mut ignored = Vec::new();
        for e in archive.entries() {
            let k = e.name.as_str();
            if let Some(what) = unsupported_variant(k) {
                return Err(lora_err(&file, format!("{what} is not supported (tensor `{k}`); only plain LoRA / LoCon can be merged")));
            }
            let Some((module, role, fmt)) = split_key(k) else {
                ignored.push(k.to_string());
                continue;
            };
            let p = parts.entry(module).or_insert(Parts { down: None, up: None, alpha: None, fmt: None });
            if !matches!(role, Role::Alpha) {
                p.fmt = Some(fmt);
            }
            let slot = match role {
                Role::Down => &mut p.down,
                Role::Up => &mut p.up,
                Role::Alpha => &mut p.alpha,
            };
            if slot.replace(k.to_string()).is_some() {
                return Err(LoadError::Corrupt { file: file.clone(), format: "LoRA", message: format!("two tensors for `{k}`") });
            }
        }
        let mut modules = Vec::new();
        for (module, p) in parts {
            let (Some(down), Some(up), Some(fmt)) = (p.down.clone(), p.up.clone(), p.fmt) else {
                ignored.extend([p.down, p.up, p.alpha].into_iter().flatten());
                continue;
            };
            let shape = |k: &str| archive.entry(k).map(|e| e.shape.clone()).unwrap_or_default();
            let (down_shape, up_shape) = (shape(&down), shape(&up));
            let rank = down_shape.first().copied().unwrap_or(0);
            let fits = matches!(down_shape.len(), 2 | 4) && matches!(up_shape.len(), 2 | 4) && up_shape.get(1) == Some(&rank) && rank > 0;
            if !fits || up_shape.len() == 4 && (up_shape[2] != 1 || up_shape[3] != 1) {
                return Err(LoadError::Shape { file: file.clone(), tensor: up.clone(), expected: vec![up_shape.first().copied().unwrap_or(0), rank], found: up_shape });
            }
            let alpha = match &p.alpha {
                Some(k) => {
                    let t = archive.read_f32(k)?;
                    match t.data.as_slice() {
                        [a] if a.is_finite() => Some(*a),
                        _ => return Err(LoadError::Corrupt { file: file.clone(), format: "LoRA", message: format!("`{k}` is not a finite scalar") }),
                    }
                }
                None => None,
            };
            let (target, path) = route(&module, fmt);
            let scale = match fmt {
                LoraFormat::Kohya => Scale::AlphaOverRank(alpha),
                LoraFormat::AttnProcessor => Scale::Fixed(1.0),
                LoraFormat::Diffusers => {
                    if alpha.is_some() {
                        Scale::AlphaOverRank(alpha)
                    } else {
                        let prefix = module.split('.').next().unwrap_or("");
                        let m = meta.get(prefix).or_else(|| meta.get(""));
                        match m {
                            Some(m) => {
                                let inner = module.strip_prefix(&format!("{prefix}.")).unwrap_or(&module);
                                let r = pattern_match(&m.rank_pattern, inner).or(m.r).unwrap_or(rank as f64);
                                let a = pattern_match(&m.alpha_pattern, inner).or(m.lora_alpha).unwrap_or(r);
                                let s = if m.rslora { a / r.sqrt() } else { a / r };
                                Scale::Fixed(if s.is_finite() { s as f32 } else { 1.0 })
                            }
                            None => Scale::Fixed(1.0),
                        }
                    }
                }
            };
            modules.push(LoraModule { key: module, target, format: fmt, path, down, up, down_shape, up_shape, scale });
        }
        if modules.is_empty() {
            return Err(lora_err(&file, format!("no LoRA tensors (`*.lora_down.weight`, `*.lora_A.weight`, `*_lora.down.weight`) among {} keys", archive.len())));
        }
        Ok(Lora { archive, modules, ignored })
    }

    /// Open a LoRA file (safetensors or `.ckpt`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: impl AsRef<std::path::Path>) -> LoadResult<Lora> {
        Lora::from_archive(Arc::new(TensorArchive::open_path(path)?))
    }

    pub fn origin(&self) -> String {
        self.archive.origin()
    }

    pub fn modules(&self) -> &[LoraModule] {
        &self.modules
    }

    /// The components this file has modules for.
    pub fn targets(&self) -> BTreeSet<LoraTarget> {
        self.modules.iter().filter_map(|m| m.target).collect()
    }

    /// Modules for no SD1.5 component (SDXL's second text encoder, …).
    pub fn foreign_modules(&self) -> Vec<&str> {
        self.modules.iter().filter(|m| m.target.is_none()).map(|m| m.key.as_str()).collect()
    }
}

/// Open a LoRA file: safetensors or `.ckpt` (a path), or an opened archive.
#[cfg(not(target_arch = "wasm32"))]
pub fn open_lora(path: impl AsRef<std::path::Path>) -> LoadResult<Lora> {
    Lora::open(path)
}

// ---------------------------------------------------------------------------------------------
// Name tables

/// A diffusers UNet module path → its LDM path (inverse of [`ldm_unet_key`], checked by a round
/// trip).
fn unet_module_to_ldm(m: &str, lpb: usize, up_has_attn: &dyn Fn(usize) -> bool) -> Option<String> {
    let per = lpb + 1;
    let resnet = |r: &str| -> Option<String> {
        const MAP: [(&str, &str); 6] = [
            ("norm1", "in_layers.0"),
            ("conv1", "in_layers.2"),
            ("time_emb_proj", "emb_layers.1"),
            ("norm2", "out_layers.0"),
            ("conv2", "out_layers.3"),
            ("conv_shortcut", "skip_connection"),
        ];
        MAP.iter().find_map(|(d, l)| if r == *d || r.starts_with(&format!("{d}.")) { Some(format!("{l}{}", &r[d.len()..])) } else { None })
    };
    let simple = [("time_embedding.linear_1", "time_embed.0"), ("time_embedding.linear_2", "time_embed.2"), ("conv_in", "input_blocks.0.0"), ("conv_norm_out", "out.0"), ("conv_out", "out.2")];
    if let Some((_, l)) = simple.iter().find(|(d, _)| m == *d) {
        return Some(l.to_string());
    }
    let p: Vec<&str> = m.splitn(5, '.').collect();
    let num = |i: usize| p.get(i).and_then(|s| s.parse::<usize>().ok());
    match p.first().copied()? {
        "down_blocks" => {
            let b = num(1)?;
            match *p.get(2)? {
                "downsamplers" => {
                    let rest = m.splitn(4, '.').nth(3)?; // 0.conv…
                    let rest = rest.strip_prefix("0.conv")?;
                    Some(format!("input_blocks.{}.0.op{rest}", 1 + b * per + lpb))
                }
                kind => {
                    let j = num(3)?;
                    let rest = p.get(4).copied()?;
                    let i = 1 + b * per + j;
                    match kind {
                        "resnets" => resnet(rest).map(|r| format!("input_blocks.{i}.0.{r}")),
                        "attentions" => Some(format!("input_blocks.{i}.1.{rest}")),
                        _ => None,
                    }
                }
            }
        }
        "mid_block" => {
            let q: Vec<&str> = m.splitn(4, '.').collect();
            let j: usize = q.get(2)?.parse().ok()?;
            let rest = q.get(3).copied()?;
            match *q.get(1)? {
                "resnets" => resnet(rest).map(|r| format!("middle_block.{}.{r}", 2 * j)),
                "attentions" => Some(format!("middle_block.1.{rest}")),
                _ => None,
            }
        }
        "up_blocks" => {
            let b = num(1)?;
            match *p.get(2)? {
                "upsamplers" => {
                    let rest = m.splitn(4, '.').nth(3)?.strip_prefix("0.conv")?;
                    Some(format!("output_blocks.{}.{}.conv{rest}", b * per + lpb, if up_has_attn(b) { 2 } else { 1 }))
                }
                kind => {
                    let j = num(3)?;
                    let rest = p.get(4).copied()?;
                    let o = b * per + j;
                    match kind {
                        "resnets" => resnet(rest).map(|r| format!("output_blocks.{o}.0.{r}")),
                        "attentions" => Some(format!("output_blocks.{o}.1.{rest}")),
                        _ => None,
                    }
                }
            }
        }
        _ => None,
    }
}

/// Resolution tables for one component: kohya names (diffusers and LDM paths) and dotted
/// paths → the component's weight names.
struct NameTable {
    kohya: HashMap<String, String>,
    weights: BTreeSet<String>,
    target: LoraTarget,
}

impl NameTable {
    fn new(base: &dyn WeightSource, target: LoraTarget) -> NameTable {
        let names = base.names();
        let mut kohya = HashMap::new();
        let weights: BTreeSet<String> = names.iter().filter(|n| n.ends_with(".weight")).cloned().collect();
        let lpb = names
            .iter()
            .filter_map(|n| n.strip_prefix("down_blocks.0.resnets.")?.split('.').next()?.parse::<usize>().ok())
            .max()
            .map_or(2, |m| m + 1);
        let up_attn: BTreeSet<usize> =
            names.iter().filter_map(|n| n.strip_prefix("up_blocks.")?.split_once(".attentions.").and_then(|(b, _)| b.parse().ok())).collect();
        let has_attn = |b: usize| up_attn.contains(&b);
        for w in &weights {
            let m = &w[..w.len() - ".weight".len()];
            kohya.insert(m.replace('.', "_"), w.clone());
            if target == LoraTarget::Unet {
                if let Some(l) = unet_module_to_ldm(m, lpb, &has_attn) {
                    if ldm_unet_key(&format!("{l}.weight"), lpb).as_deref() == Some(w.as_str()) {
                        kohya.entry(l.replace('.', "_")).or_insert_with(|| w.clone());
                    }
                }
            }
        }
        NameTable { kohya, weights, target }
    }

    fn resolve(&self, path: &ModulePath) -> Option<String> {
        match path {
            ModulePath::Kohya(k) => {
                let k = match self.target {
                    // `lora_te_text_model_…` or without the `text_model` level.
                    LoraTarget::TextEncoder if !k.starts_with("text_model_") => format!("text_model_{k}"),
                    _ => k.clone(),
                };
                self.kohya.get(&k).cloned()
            }
            ModulePath::Dotted(p) => {
                let w = format!("{p}.weight");
                let w = match self.target {
                    LoraTarget::TextEncoder => clip_key(&w)?,
                    LoraTarget::Motion if w.contains(".temporal_transformer.") || w.contains(".attention_blocks.") => original_motion_key(&w)?,
                    _ => w,
                };
                self.weights.contains(&w).then_some(w)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Merging

#[derive(Debug, Clone)]
struct Delta {
    archive: Arc<TensorArchive>,
    down: String,
    up: String,
    /// multiplier × scale
    factor: f32,
}

/// The LoRA deltas of one component, resolved against its names: what [`LoraMerged`] (and a
/// [`ComponentSource`](super::component::ComponentSource) given them with `with_lora`) adds to
/// the tensors they affect when those are read.
#[derive(Debug, Clone)]
pub struct LoraDeltas {
    deltas: HashMap<String, Vec<Delta>>,
    reports: Vec<LoraReport>,
    target: LoraTarget,
}

impl LoraDeltas {
    /// Resolve `loras` (each with its multiplier) against `base`'s names for `target`.
    ///
    /// Errors: a LoRA that has modules for `target` none of which matches a weight
    /// ([`LoadError::Unsupported`] naming the file and a few keys). Modules that do not match or
    /// whose shapes do not fit are listed in the reports.
    pub fn resolve(base: &dyn WeightSource, loras: &[(Lora, f32)], target: LoraTarget) -> LoadResult<LoraDeltas> {
        let table = NameTable::new(base, target);
        let mut merged = LoraDeltas { deltas: HashMap::new(), reports: Vec::new(), target };
        merged.add(base, &table, loras)?;
        Ok(merged)
    }

    pub fn target(&self) -> LoraTarget {
        self.target
    }

    /// One report per LoRA, in the order given.
    pub fn reports(&self) -> &[LoraReport] {
        &self.reports
    }

    /// The tensors that get a delta (sorted).
    pub fn merged_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.deltas.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Whether `name` gets a delta.
    pub fn affects(&self, name: &str) -> bool {
        self.deltas.contains_key(name)
    }

    /// `t += Σ factor · up @ down` for `name` (no-op for tensors no LoRA touches).
    pub fn merge_into(&self, name: &str, t: &mut HostTensor) -> LoadResult<()> {
        let Some(ds) = self.deltas.get(name) else { return Ok(()) };
        for d in ds {
            let up = d.archive.read_f32(&d.up)?;
            let down = d.archive.read_f32(&d.down)?;
            add_delta(&mut t.data, &up, &down, d.factor).ok_or_else(|| LoadError::Shape {
                file: d.archive.origin(),
                tensor: format!("{} (LoRA for `{name}`)", d.up),
                expected: t.shape.clone(),
                found: vec![up.shape.first().copied().unwrap_or(0), down.shape[1..].iter().product()],
            })?;
        }
        Ok(())
    }

    /// `file@multiplier, …` for messages.
    pub fn describe(&self) -> String {
        let l: Vec<String> = self.reports.iter().map(|r| format!("{}@{}", r.file, r.multiplier)).collect();
        l.join(", ")
    }

    fn add(&mut self, base: &dyn WeightSource, table: &NameTable, loras: &[(Lora, f32)]) -> LoadResult<()> {
        let target = self.target;
        let merged = self;
        for (lora, multiplier) in loras {
        let mut report = LoraReport { file: lora.origin(), multiplier: *multiplier, ..Default::default() };
        for m in lora.modules.iter().filter(|m| m.target == Some(target)) {
            let Some(w) = table.resolve(&m.path) else {
                report.skipped.push(format!("{}: no such {} weight", m.key, target.name()));
                continue;
            };
            let Some(ws) = base.shape(&w) else {
                report.skipped.push(format!("{}: no shape for `{w}`", m.key));
                continue;
            };
            let out = m.up_shape[0];
            let cols: usize = m.down_shape[1..].iter().product();
            let numel: usize = ws.iter().product();
            let ok = ws.first() == Some(&out)
                && out.checked_mul(cols) == Some(numel)
                && match (ws.len(), m.down_shape.len()) {
                    (4, 4) => ws[1..] == m.down_shape[1..],
                    (2, 4) => m.down_shape[2..] == [1, 1],
                    (4, 2) => ws[2..] == [1, 1],
                    _ => true,
                };
            if !ok {
                report.skipped.push(format!("{}: LoRA [{out}, {}] × {:?} does not fit `{w}` {ws:?}", m.key, m.rank(), m.down_shape));
                continue;
            }
            merged.deltas.entry(w.clone()).or_default().push(Delta {
                archive: lora.archive.clone(),
                down: m.down.clone(),
                up: m.up.clone(),
                factor: multiplier * m.scale(),
            });
            report.matched.push(w);
        }
        let routed = lora.modules.iter().filter(|m| m.target == Some(target)).count();
        if routed > 0 && report.matched.is_empty() {
            let examples: Vec<&str> = report.skipped.iter().take(3).map(String::as_str).collect();
            return Err(lora_err(
                &report.file,
                format!("none of the {routed} LoRA modules for the {} matches a weight (e.g. {})", target.name(), examples.join("; ")),
            ));
        }
        merged.reports.push(report);
        }
        Ok(())
    }
}

/// A component with LoRAs merged in on request: `tensor(name)` = base + every delta for it.
#[derive(Debug, Clone)]
pub struct LoraMerged<B> {
    base: B,
    deltas: Arc<LoraDeltas>,
}

impl<B> LoraMerged<B> {
    pub fn new(base: B, deltas: Arc<LoraDeltas>) -> LoraMerged<B> {
        LoraMerged { base, deltas }
    }

    pub fn base(&self) -> &B {
        &self.base
    }

    pub fn deltas(&self) -> &Arc<LoraDeltas> {
        &self.deltas
    }

    pub fn target(&self) -> LoraTarget {
        self.deltas.target
    }

    /// One report per LoRA given to [`apply`].
    pub fn reports(&self) -> &[LoraReport] {
        &self.deltas.reports
    }

    /// The tensors that get a delta (sorted).
    pub fn merged_names(&self) -> Vec<&str> {
        self.deltas.merged_names()
    }
}

/// `base` with `loras` (each with its multiplier) merged into `target`'s weights (see
/// [`LoraDeltas::resolve`] for the errors).
pub fn apply<B: WeightSource>(base: B, loras: &[(Lora, f32)], target: LoraTarget) -> LoadResult<LoraMerged<B>> {
    let d = LoraDeltas::resolve(&base, loras, target)?;
    Ok(LoraMerged::new(base, Arc::new(d)))
}

/// `w += factor · (up @ down)` with `up` `[out, r]`, `down` `[r, cols]` (f64 accumulation).
fn add_delta(w: &mut [f32], up: &HostTensor, down: &HostTensor, factor: f32) -> Option<()> {
    let out = *up.shape.first()?;
    let r = *down.shape.first()?;
    let cols: usize = down.shape[1..].iter().product();
    if up.numel() != out * r || down.numel() != r * cols || w.len() != out * cols {
        return None;
    }
    let f = factor as f64;
    let mut row = vec![0f64; cols];
    for o in 0..out {
        row.iter_mut().for_each(|v| *v = 0.0);
        for k in 0..r {
            let u = up.data[o * r + k] as f64;
            if u == 0.0 {
                continue;
            }
            let d = &down.data[k * cols..(k + 1) * cols];
            for (acc, &dv) in row.iter_mut().zip(d) {
                *acc += u * dv as f64;
            }
        }
        for (wv, acc) in w[o * cols..(o + 1) * cols].iter_mut().zip(&row) {
            *wv = (*wv as f64 + f * *acc) as f32;
        }
    }
    Some(())
}

impl<B: WeightSource> WeightSource for LoraMerged<B> {
    fn tensor(&self, name: &str) -> LoadResult<HostTensor> {
        let mut t = self.base.tensor(name)?;
        self.deltas.merge_into(name, &mut t)?;
        Ok(t)
    }

    fn contains(&self, name: &str) -> bool {
        self.base.contains(name)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.base.shape(name)
    }

    fn names(&self) -> Vec<String> {
        self.base.names()
    }

    fn origin(&self) -> String {
        if self.deltas.reports.is_empty() {
            return self.base.origin();
        }
        format!("{} + LoRA {}", self.base.origin(), self.deltas.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::MapSource;

    #[test]
    fn ldm_aliases_round_trip() {
        let up_attn = |b: usize| b > 0;
        let cases = [
            ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", "input_blocks.1.1.transformer_blocks.0.attn1.to_q"),
            ("down_blocks.0.resnets.1.conv1", "input_blocks.2.0.in_layers.2"),
            ("down_blocks.1.resnets.0.conv_shortcut", "input_blocks.4.0.skip_connection"),
            ("down_blocks.0.downsamplers.0.conv", "input_blocks.3.0.op"),
            ("mid_block.attentions.0.proj_in", "middle_block.1.proj_in"),
            ("mid_block.resnets.1.time_emb_proj", "middle_block.2.emb_layers.1"),
            ("up_blocks.0.upsamplers.0.conv", "output_blocks.2.1.conv"),
            ("up_blocks.1.upsamplers.0.conv", "output_blocks.5.2.conv"),
            ("up_blocks.3.attentions.2.proj_out", "output_blocks.11.1.proj_out"),
            ("conv_in", "input_blocks.0.0"),
            ("time_embedding.linear_2", "time_embed.2"),
        ];
        for (d, l) in cases {
            assert_eq!(unet_module_to_ldm(d, 2, &up_attn).as_deref(), Some(l), "{d}");
            assert_eq!(ldm_unet_key(&format!("{l}.weight"), 2), Some(format!("{d}.weight")), "{l}");
        }
    }

    #[test]
    fn key_routing() {
        let (t, p) = route("lora_unet_down_blocks_0_attentions_0_proj_in", LoraFormat::Kohya);
        assert_eq!((t, p), (Some(LoraTarget::Unet), ModulePath::Kohya("down_blocks_0_attentions_0_proj_in".into())));
        let (t, p) = route("down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.processor.to_out", LoraFormat::AttnProcessor);
        assert_eq!(t, Some(LoraTarget::Motion));
        assert_eq!(p, ModulePath::Dotted("down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_out.0".into()));
        let (t, p) = route("text_encoder.text_model.encoder.layers.0.self_attn.to_k", LoraFormat::AttnProcessor);
        assert_eq!((t, p), (Some(LoraTarget::TextEncoder), ModulePath::Dotted("text_model.encoder.layers.0.self_attn.k_proj".into())));
        assert_eq!(route("lora_te2_text_model_encoder_layers_0_mlp_fc1", LoraFormat::Kohya).0, None);
        assert!(matches!(split_key("x.to_q.lora.up.weight"), Some((m, Role::Up, LoraFormat::Diffusers)) if m == "x.to_q"));
        assert!(matches!(split_key("x.processor.to_q_lora.down.weight"), Some((m, Role::Down, LoraFormat::AttnProcessor)) if m == "x.processor.to_q"));
        assert!(unsupported_variant("lora_unet_x.hada_w1_a").is_some());
        assert!(unsupported_variant("lora_unet_x.dora_scale").is_some());
        assert!(unsupported_variant("lora_unet_x.lora_down.weight").is_none());
    }

    #[test]
    fn delta_math_and_scales() {
        // W [2, 3] + 0.5 · up [2, 1] @ down [1, 3]
        let mut w = vec![1.0f32; 6];
        let up = HostTensor::new(vec![2, 1], vec![1.0, 2.0]);
        let down = HostTensor::new(vec![1, 3], vec![1.0, 0.0, -1.0]);
        add_delta(&mut w, &up, &down, 0.5).unwrap();
        assert_eq!(w, vec![1.5, 1.0, 0.5, 2.0, 1.0, 0.0]);
        let mut m = LoraModule {
            key: "k".into(),
            target: Some(LoraTarget::Unet),
            format: LoraFormat::Kohya,
            path: ModulePath::Kohya("k".into()),
            down: "d".into(),
            up: "u".into(),
            down_shape: vec![4, 8],
            up_shape: vec![8, 4],
            scale: Scale::AlphaOverRank(Some(2.0)),
        };
        assert_eq!(m.scale(), 0.5);
        m.scale = Scale::AlphaOverRank(None);
        assert_eq!(m.scale(), 1.0);
        m.scale = Scale::AlphaOverRank(Some(0.0));
        assert_eq!(m.scale(), 1.0);
        let _ = MapSource::default();
    }
}
