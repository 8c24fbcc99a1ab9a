//! Model configurations: parsed from diffusers/transformers `config.json` files, or inferred
//! from tensor shapes (single files carry no config).
//!
//! diffusers quirk: `attention_head_dim` in SD1.5-era UNet configs means the number of
//! heads (8); `num_attention_heads`, when present and not null, overrides it.

use serde::Deserialize;
use serde_json::Value;

use super::{LoadError, LoadResult, WeightSource};
use crate::model::config::{ClipConfig, MotionConfig, UNetConfig, VaeConfig};

/// An int or a per-level list (diffusers accepts both for many fields).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(usize),
    Many(Vec<usize>),
}

impl OneOrMany {
    /// Expand to `n` levels.
    fn per_level(&self, n: usize) -> Option<Vec<usize>> {
        match self {
            OneOrMany::One(v) => Some(vec![*v; n]),
            OneOrMany::Many(v) if v.len() == n => Some(v.clone()),
            OneOrMany::Many(_) => None,
        }
    }
    /// The single value, if every level agrees.
    fn uniform(&self) -> Option<usize> {
        match self {
            OneOrMany::One(v) => Some(*v),
            OneOrMany::Many(v) => {
                let f = *v.first()?;
                v.iter().all(|&x| x == f).then_some(f)
            }
        }
    }
}

fn cfg_err(file: &str, message: impl Into<String>) -> LoadError {
    LoadError::Config { file: file.to_string(), message: message.into() }
}

fn unsupported(file: &str, message: impl Into<String>) -> LoadError {
    LoadError::Unsupported { file: file.to_string(), message: message.into() }
}

fn parse<T: for<'de> Deserialize<'de>>(file: &str, json: &str) -> LoadResult<T> {
    serde_json::from_str(json).map_err(|e| cfg_err(file, format!("invalid config: {e}")))
}

/// The `_class_name` of a diffusers config (or the first `architectures` entry of a
/// transformers one).
pub fn config_class_name(json: &str) -> Option<String> {
    let v: Value = serde_json::from_str(json).ok()?;
    if let Some(s) = v.get("_class_name").and_then(Value::as_str) {
        return Some(s.to_string());
    }
    v.get("architectures").and_then(Value::as_array).and_then(|a| a.first()).and_then(Value::as_str).map(str::to_string)
}

#[derive(Debug, Deserialize)]
struct UNetJson {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
    in_channels: Option<usize>,
    out_channels: Option<usize>,
    block_out_channels: Option<Vec<usize>>,
    layers_per_block: Option<OneOrMany>,
    norm_num_groups: Option<usize>,
    norm_eps: Option<f32>,
    cross_attention_dim: Option<OneOrMany>,
    attention_head_dim: Option<OneOrMany>,
    num_attention_heads: Option<OneOrMany>,
    down_block_types: Option<Vec<String>>,
    up_block_types: Option<Vec<String>>,
    mid_block_type: Option<String>,
    flip_sin_to_cos: Option<bool>,
    freq_shift: Option<f32>,
    transformer_layers_per_block: Option<OneOrMany>,
    use_linear_projection: Option<bool>,
    sample_size: Option<OneOrMany>,
    addition_embed_type: Option<String>,
    class_embed_type: Option<String>,
    time_cond_proj_dim: Option<usize>,
    encoder_hid_dim: Option<usize>,
}

fn has_attention(file: &str, t: &str) -> LoadResult<bool> {
    match t {
        "CrossAttnDownBlock2D" | "CrossAttnUpBlock2D" | "CrossAttnDownBlockMotion" | "CrossAttnUpBlockMotion" => Ok(true),
        "DownBlock2D" | "UpBlock2D" | "DownBlockMotion" | "UpBlockMotion" => Ok(false),
        other => Err(unsupported(file, format!("UNet block type `{other}` is not supported (SD1.5 blocks only)"))),
    }
}

/// diffusers `UNet2DConditionModel` (or `UNetMotionModel`) `config.json`. Missing fields take
/// diffusers' class defaults (except `cross_attention_dim`, whose class default 1280 is never
/// what an SD1.5 file means: 768).
pub fn parse_unet_config(file: &str, json: &str) -> LoadResult<UNetConfig> {
    let j: UNetJson = parse(file, json)?;
    if let Some(c) = &j.class_name {
        if !matches!(c.as_str(), "UNet2DConditionModel" | "UNetMotionModel") {
            return Err(unsupported(file, format!("`_class_name` is `{c}`, expected UNet2DConditionModel")));
        }
    }
    for (what, present) in [
        ("addition_embed_type (SDXL-style added conditioning)", j.addition_embed_type.is_some()),
        ("class_embed_type", j.class_embed_type.is_some()),
        ("time_cond_proj_dim (guidance-distilled UNet)", j.time_cond_proj_dim.is_some()),
        ("encoder_hid_dim", j.encoder_hid_dim.is_some()),
    ] {
        if present {
            return Err(unsupported(file, format!("UNet config sets {what}, which SD1.5 models do not have")));
        }
    }
    if let Some(m) = &j.mid_block_type {
        if !matches!(m.as_str(), "UNetMidBlock2DCrossAttn" | "UNetMidBlockCrossAttnMotion") {
            return Err(unsupported(file, format!("mid_block_type `{m}` is not supported")));
        }
    }
    let boc = j.block_out_channels.unwrap_or_else(|| vec![320, 640, 1280, 1280]);
    let n = boc.len();
    if n == 0 || boc.contains(&0) {
        return Err(cfg_err(file, "block_out_channels is empty or holds 0"));
    }
    let down_types = j.down_block_types.unwrap_or_else(|| {
        ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"].map(String::from).to_vec()
    });
    let up_types = j
        .up_block_types
        .unwrap_or_else(|| ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"].map(String::from).to_vec());
    if down_types.len() != n || up_types.len() != n {
        return Err(cfg_err(file, format!("{n} block_out_channels but {} down / {} up block types", down_types.len(), up_types.len())));
    }
    let down_block_attention = down_types.iter().map(|t| has_attention(file, t)).collect::<LoadResult<Vec<_>>>()?;
    let up_block_attention = up_types.iter().map(|t| has_attention(file, t)).collect::<LoadResult<Vec<_>>>()?;
    let heads = j.num_attention_heads.or(j.attention_head_dim).unwrap_or(OneOrMany::One(8));
    let attention_heads = heads.per_level(n).ok_or_else(|| cfg_err(file, format!("attention heads list does not have {n} entries")))?;
    let uniform = |v: Option<OneOrMany>, what: &str, default: usize| -> LoadResult<usize> {
        match v {
            None => Ok(default),
            Some(v) => v.uniform().ok_or_else(|| unsupported(file, format!("per-level `{what}` values differ"))),
        }
    };
    let cfg = UNetConfig {
        in_channels: j.in_channels.unwrap_or(4),
        out_channels: j.out_channels.unwrap_or(4),
        block_out_channels: boc,
        layers_per_block: uniform(j.layers_per_block, "layers_per_block", 2)?,
        norm_num_groups: j.norm_num_groups.unwrap_or(32),
        norm_eps: j.norm_eps.unwrap_or(1e-5),
        cross_attention_dim: uniform(j.cross_attention_dim, "cross_attention_dim", 768)?,
        attention_heads,
        down_block_attention,
        up_block_attention,
        flip_sin_to_cos: j.flip_sin_to_cos.unwrap_or(true),
        freq_shift: j.freq_shift.unwrap_or(0.0),
        transformer_layers_per_block: uniform(j.transformer_layers_per_block, "transformer_layers_per_block", 1)?,
        use_linear_projection: j.use_linear_projection.unwrap_or(false),
        sample_size: j.sample_size.and_then(|s| s.uniform()).unwrap_or(64),
    };
    if cfg.norm_num_groups == 0 || cfg.block_out_channels.iter().any(|c| c % cfg.norm_num_groups != 0) {
        return Err(cfg_err(file, format!("norm_num_groups {} does not divide block_out_channels", cfg.norm_num_groups)));
    }
    if cfg.attention_heads.contains(&0) {
        return Err(cfg_err(file, "0 attention heads"));
    }
    Ok(cfg)
}

#[derive(Debug, Deserialize)]
struct MotionJson {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
    block_out_channels: Option<Vec<usize>>,
    motion_layers_per_block: Option<OneOrMany>,
    motion_transformer_layers_per_block: Option<OneOrMany>,
    motion_mid_block_layers_per_block: Option<usize>,
    motion_num_attention_heads: Option<OneOrMany>,
    motion_norm_num_groups: Option<usize>,
    motion_max_seq_length: Option<usize>,
    use_motion_mid_block: Option<bool>,
    conv_in_channels: Option<usize>,
}

/// diffusers `MotionAdapter` `config.json`.
pub fn parse_motion_config(file: &str, json: &str) -> LoadResult<MotionConfig> {
    let j: MotionJson = parse(file, json)?;
    if let Some(c) = &j.class_name {
        if c != "MotionAdapter" {
            return Err(unsupported(file, format!("`_class_name` is `{c}`, expected MotionAdapter")));
        }
    }
    if j.conv_in_channels.is_some() {
        return Err(unsupported(file, "motion adapters with their own conv_in (PIA-style) are not supported"));
    }
    let one = |v: Option<OneOrMany>, what: &str, default: usize| -> LoadResult<usize> {
        match v {
            None => Ok(default),
            Some(v) => v.uniform().ok_or_else(|| unsupported(file, format!("per-level `{what}` values differ"))),
        }
    };
    if one(j.motion_transformer_layers_per_block, "motion_transformer_layers_per_block", 1)? != 1
        || j.motion_mid_block_layers_per_block.unwrap_or(1) != 1
    {
        return Err(unsupported(file, "motion modules with more than one transformer block are not supported"));
    }
    let c = MotionConfig {
        block_out_channels: j.block_out_channels.unwrap_or_else(|| vec![320, 640, 1280, 1280]),
        motion_layers_per_block: one(j.motion_layers_per_block, "motion_layers_per_block", 2)?,
        motion_num_attention_heads: one(j.motion_num_attention_heads, "motion_num_attention_heads", 8)?,
        motion_norm_num_groups: j.motion_norm_num_groups.unwrap_or(32),
        motion_max_seq_length: j.motion_max_seq_length.unwrap_or(32),
        use_motion_mid_block: j.use_motion_mid_block.unwrap_or(true),
    };
    if c.block_out_channels.is_empty() || c.motion_num_attention_heads == 0 || c.motion_norm_num_groups == 0 {
        return Err(cfg_err(file, "empty block_out_channels, 0 heads or 0 groups"));
    }
    Ok(c)
}

#[derive(Debug, Deserialize)]
struct VaeJson {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
    in_channels: Option<usize>,
    out_channels: Option<usize>,
    latent_channels: Option<usize>,
    block_out_channels: Option<Vec<usize>>,
    layers_per_block: Option<usize>,
    norm_num_groups: Option<usize>,
    scaling_factor: Option<f32>,
}

/// diffusers `AutoencoderKL` `config.json`.
pub fn parse_vae_config(file: &str, json: &str) -> LoadResult<VaeConfig> {
    let j: VaeJson = parse(file, json)?;
    if let Some(c) = &j.class_name {
        if c != "AutoencoderKL" {
            return Err(unsupported(file, format!("`_class_name` is `{c}`, expected AutoencoderKL")));
        }
    }
    let c = VaeConfig {
        in_channels: j.in_channels.unwrap_or(3),
        out_channels: j.out_channels.unwrap_or(3),
        latent_channels: j.latent_channels.unwrap_or(4),
        block_out_channels: j.block_out_channels.unwrap_or_else(|| vec![64]),
        layers_per_block: j.layers_per_block.unwrap_or(1),
        norm_num_groups: j.norm_num_groups.unwrap_or(32),
        scaling_factor: j.scaling_factor.unwrap_or(0.18215),
    };
    if c.block_out_channels.is_empty() || c.norm_num_groups == 0 || c.block_out_channels.iter().any(|b| b % c.norm_num_groups != 0) {
        return Err(cfg_err(file, "block_out_channels empty or not divisible by norm_num_groups"));
    }
    Ok(c)
}

#[derive(Debug, Deserialize)]
struct ClipJson {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    max_position_embeddings: Option<usize>,
    layer_norm_eps: Option<f32>,
    hidden_act: Option<String>,
    model_type: Option<String>,
    text_config: Option<Value>,
}

/// transformers `CLIPTextModel` `config.json` (or a full `CLIPModel` config's `text_config`).
pub fn parse_clip_config(file: &str, json: &str) -> LoadResult<ClipConfig> {
    let mut j: ClipJson = parse(file, json)?;
    if let Some(tc) = j.text_config.take() {
        if j.hidden_size.is_none() {
            j = serde_json::from_value(tc).map_err(|e| cfg_err(file, format!("invalid text_config: {e}")))?;
        }
    }
    if let Some(m) = &j.model_type {
        if !matches!(m.as_str(), "clip_text_model" | "clip") {
            return Err(unsupported(file, format!("text encoder model_type `{m}` is not CLIP")));
        }
    }
    let c = ClipConfig {
        vocab_size: j.vocab_size.unwrap_or(49408),
        hidden_size: j.hidden_size.unwrap_or(512),
        intermediate_size: j.intermediate_size.unwrap_or(2048),
        num_hidden_layers: j.num_hidden_layers.unwrap_or(12),
        num_attention_heads: j.num_attention_heads.unwrap_or(8),
        max_position_embeddings: j.max_position_embeddings.unwrap_or(77),
        layer_norm_eps: j.layer_norm_eps.unwrap_or(1e-5),
        hidden_act: j.hidden_act.unwrap_or_else(|| "quick_gelu".into()),
    };
    if !matches!(c.hidden_act.as_str(), "quick_gelu" | "gelu") {
        return Err(unsupported(file, format!("CLIP hidden_act `{}` is not supported", c.hidden_act)));
    }
    if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
        return Err(cfg_err(file, "hidden_size is not divisible by num_attention_heads"));
    }
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// Inference from shapes (diffusers names).

fn shape_of(src: &dyn WeightSource, name: &str) -> LoadResult<Vec<usize>> {
    src.shape(name).ok_or_else(|| LoadError::MissingTensor { file: src.origin(), tensor: name.to_string() })
}

fn dim(src: &dyn WeightSource, name: &str, axis: usize) -> LoadResult<usize> {
    let s = shape_of(src, name)?;
    s.get(axis).copied().ok_or_else(|| LoadError::Shape { file: src.origin(), tensor: name.to_string(), expected: vec![], found: s })
}

/// How many `prefix{i}.` indices exist (0, 1, 2, … without gaps).
fn count(names: &[String], prefix: &str) -> usize {
    let found: std::collections::BTreeSet<usize> = names
        .iter()
        .filter_map(|k| k.strip_prefix(prefix)?.split_once('.')?.0.parse().ok())
        .collect();
    (0..).take_while(|i| found.contains(i)).count()
}

/// Fill a [`UNetConfig`] from tensor shapes. What shapes cannot tell (heads, group count,
/// eps, timestep-embedding flags, sample size) comes from `base`, else SD1.5.
pub fn infer_unet_config(src: &dyn WeightSource, base: Option<&UNetConfig>) -> LoadResult<UNetConfig> {
    let sd = UNetConfig::sd15();
    let base = base.unwrap_or(&sd);
    let names = src.names();
    let conv_in = shape_of(src, "conv_in.weight")?;
    let levels = count(&names, "down_blocks.");
    if levels == 0 {
        return Err(LoadError::MissingTensor { file: src.origin(), tensor: "down_blocks.0.resnets.0.conv1.weight".into() });
    }
    let mut boc = Vec::with_capacity(levels);
    let mut down_att = Vec::with_capacity(levels);
    let mut up_att = Vec::with_capacity(levels);
    let mut cross = None;
    let mut tlayers = None;
    let mut linear = None;
    for i in 0..levels {
        boc.push(dim(src, &format!("down_blocks.{i}.resnets.0.conv1.weight"), 0)?);
        for (blocks, flags) in [("down_blocks", &mut down_att), ("up_blocks", &mut up_att)] {
            let p = format!("{blocks}.{i}.attentions.0.");
            let has = src.contains(&format!("{p}proj_in.weight"));
            flags.push(has);
            if has && cross.is_none() {
                cross = Some(dim(src, &format!("{p}transformer_blocks.0.attn2.to_k.weight"), 1)?);
                tlayers = Some(count(&names, &format!("{p}transformer_blocks.")));
                linear = Some(shape_of(src, &format!("{p}proj_in.weight"))?.len() == 2);
            }
        }
    }
    let layers_per_block = count(&names, "down_blocks.0.resnets.");
    let conv_out = shape_of(src, "conv_out.weight")?;
    let heads = if base.attention_heads.len() == levels {
        base.attention_heads.clone()
    } else {
        vec![base.attention_heads.first().copied().unwrap_or(8); levels]
    };
    Ok(UNetConfig {
        in_channels: conv_in.get(1).copied().unwrap_or(4),
        out_channels: conv_out.first().copied().unwrap_or(4),
        block_out_channels: boc,
        layers_per_block,
        norm_num_groups: base.norm_num_groups,
        norm_eps: base.norm_eps,
        cross_attention_dim: cross.unwrap_or(base.cross_attention_dim),
        attention_heads: heads,
        down_block_attention: down_att,
        up_block_attention: up_att,
        flip_sin_to_cos: base.flip_sin_to_cos,
        freq_shift: base.freq_shift,
        transformer_layers_per_block: tlayers.unwrap_or(base.transformer_layers_per_block),
        use_linear_projection: linear.unwrap_or(base.use_linear_projection),
        sample_size: base.sample_size,
    })
}

/// Fill a [`VaeConfig`] from tensor shapes (groups and scaling factor from `base`/SD1.5).
pub fn infer_vae_config(src: &dyn WeightSource, base: Option<&VaeConfig>) -> LoadResult<VaeConfig> {
    let sd = VaeConfig::sd15();
    let base = base.unwrap_or(&sd);
    let names = src.names();
    let levels = count(&names, "decoder.up_blocks.");
    if levels == 0 {
        return Err(LoadError::MissingTensor { file: src.origin(), tensor: "decoder.up_blocks.0.resnets.0.conv1.weight".into() });
    }
    // Decoder level i has the widths of encoder level (levels − 1 − i).
    let mut boc = Vec::with_capacity(levels);
    for i in (0..levels).rev() {
        boc.push(dim(src, &format!("decoder.up_blocks.{i}.resnets.0.conv2.weight"), 0)?);
    }
    let layers = count(&names, "decoder.up_blocks.0.resnets.").saturating_sub(1);
    let in_channels = if src.contains("encoder.conv_in.weight") { dim(src, "encoder.conv_in.weight", 1)? } else { base.in_channels };
    Ok(VaeConfig {
        in_channels,
        out_channels: dim(src, "decoder.conv_out.weight", 0)?,
        latent_channels: dim(src, "decoder.conv_in.weight", 1)?,
        block_out_channels: boc,
        layers_per_block: layers,
        norm_num_groups: base.norm_num_groups,
        scaling_factor: base.scaling_factor,
    })
}

/// Fill a [`ClipConfig`] from tensor shapes (`text_model.*` names). Heads: `base`'s when given,
/// else hidden/64 (CLIP's head width; 12 for SD1.5's 768).
pub fn infer_clip_config(src: &dyn WeightSource, base: Option<&ClipConfig>) -> LoadResult<ClipConfig> {
    let tok = shape_of(src, "text_model.embeddings.token_embedding.weight")?;
    let (Some(&vocab), Some(&hidden)) = (tok.first(), tok.get(1)) else {
        return Err(LoadError::Shape {
            file: src.origin(),
            tensor: "text_model.embeddings.token_embedding.weight".into(),
            expected: vec![49408, 768],
            found: tok,
        });
    };
    let names = src.names();
    let heads = match base {
        Some(b) => b.num_attention_heads,
        None if hidden % 64 == 0 => hidden / 64,
        None => ClipConfig::sd15().num_attention_heads,
    };
    let sd = ClipConfig::sd15();
    let base = base.unwrap_or(&sd);
    Ok(ClipConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: dim(src, "text_model.encoder.layers.0.mlp.fc1.weight", 0)?,
        num_hidden_layers: count(&names, "text_model.encoder.layers."),
        num_attention_heads: heads,
        max_position_embeddings: dim(src, "text_model.embeddings.position_embedding.weight", 0)?,
        layer_norm_eps: base.layer_norm_eps,
        hidden_act: base.hidden_act.clone(),
    })
}

/// Fill a [`MotionConfig`] from tensor shapes (diffusers motion-adapter names). `pe_len`: the
/// positional-encoding length found in the file (`None`: AnimateLCM-style files without one →
/// `base`'s, else 64 with a mid block, 32 without). Heads and groups come from `base`/SD1.5.
pub fn infer_motion_config(src: &dyn WeightSource, pe_len: Option<usize>, base: Option<&MotionConfig>) -> LoadResult<MotionConfig> {
    let sd = MotionConfig::sd15_v2();
    let names = src.names();
    let levels = count(&names, "down_blocks.");
    if levels == 0 {
        return Err(LoadError::MissingTensor { file: src.origin(), tensor: "down_blocks.0.motion_modules.0.proj_in.weight".into() });
    }
    let mut boc = Vec::with_capacity(levels);
    for i in 0..levels {
        boc.push(dim(src, &format!("down_blocks.{i}.motion_modules.0.proj_in.weight"), 0)?);
    }
    let mid = src.contains("mid_block.motion_modules.0.proj_in.weight");
    let max_len = pe_len.or(base.map(|b| b.motion_max_seq_length)).unwrap_or(if mid { 64 } else { 32 });
    let b = base.unwrap_or(&sd);
    Ok(MotionConfig {
        block_out_channels: boc,
        motion_layers_per_block: count(&names, "down_blocks.0.motion_modules."),
        motion_num_attention_heads: b.motion_num_attention_heads,
        motion_norm_num_groups: b.motion_norm_num_groups,
        motion_max_seq_length: max_len,
        use_motion_mid_block: mid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unet_json_legacy_heads_and_types() {
        let j = r#"{"_class_name":"UNet2DConditionModel","block_out_channels":[8,16,32,32],"norm_num_groups":4,
            "cross_attention_dim":16,"attention_head_dim":2,"layers_per_block":2,"sample_size":[16,16],
            "down_block_types":["CrossAttnDownBlock2D","CrossAttnDownBlock2D","CrossAttnDownBlock2D","DownBlock2D"],
            "up_block_types":["UpBlock2D","CrossAttnUpBlock2D","CrossAttnUpBlock2D","CrossAttnUpBlock2D"],
            "num_attention_heads":null,"transformer_layers_per_block":1}"#;
        let c = parse_unet_config("c.json", j).unwrap();
        assert_eq!(c.attention_heads, vec![2; 4]);
        assert_eq!(c.block_out_channels, vec![8, 16, 32, 32]);
        assert_eq!(c.down_block_attention, vec![true, true, true, false]);
        assert_eq!(c.up_block_attention, vec![false, true, true, true]);
        assert_eq!(c.cross_attention_dim, 16);
        assert_eq!(c.sample_size, 16);
        // num_attention_heads wins over attention_head_dim.
        let j2 = r#"{"attention_head_dim":[5,6,7,8],"num_attention_heads":3}"#;
        assert_eq!(parse_unet_config("c", j2).unwrap().attention_heads, vec![3; 4]);
        let j3 = r#"{"attention_head_dim":[5,6,7,8]}"#;
        assert_eq!(parse_unet_config("c", j3).unwrap().attention_heads, vec![5, 6, 7, 8]);
        // Defaults are SD1.5's.
        assert_eq!(parse_unet_config("c", "{}").unwrap(), UNetConfig::sd15());
    }

    #[test]
    fn unet_json_rejections() {
        assert!(matches!(parse_unet_config("c", "{"), Err(LoadError::Config { .. })));
        assert!(matches!(parse_unet_config("c", r#"{"block_out_channels":"x"}"#), Err(LoadError::Config { .. })));
        assert!(matches!(parse_unet_config("c", r#"{"addition_embed_type":"text_time"}"#), Err(LoadError::Unsupported { .. })));
        assert!(matches!(
            parse_unet_config("c", r#"{"down_block_types":["A","B","C","D"]}"#),
            Err(LoadError::Unsupported { .. })
        ));
        assert!(matches!(parse_unet_config("c", r#"{"attention_head_dim":[1,2]}"#), Err(LoadError::Config { .. })));
        assert!(matches!(parse_unet_config("c", r#"{"_class_name":"AutoencoderKL"}"#), Err(LoadError::Unsupported { .. })));
    }

    #[test]
    fn other_jsons() {
        let m = parse_motion_config("m", r#"{"_class_name":"MotionAdapter","block_out_channels":[8,16,32,32],"motion_num_attention_heads":2,"motion_norm_num_groups":4,"motion_max_seq_length":32,"use_motion_mid_block":true,"motion_layers_per_block":2}"#).unwrap();
        assert_eq!(m.motion_num_attention_heads, 2);
        assert!(m.use_motion_mid_block);
        assert_eq!(parse_motion_config("m", "{}").unwrap(), MotionConfig::sd15_v2());
        assert!(parse_motion_config("m", r#"{"conv_in_channels":9}"#).is_err());
        let v = parse_vae_config("v", r#"{"block_out_channels":[128,256,512,512],"layers_per_block":2}"#).unwrap();
        assert_eq!(v, VaeConfig::sd15());
        let c = parse_clip_config("t", r#"{"architectures":["CLIPTextModel"],"hidden_size":768,"intermediate_size":3072,"num_attention_heads":12,"model_type":"clip_text_model"}"#).unwrap();
        assert_eq!(c, ClipConfig::sd15());
        let c = parse_clip_config("t", r#"{"model_type":"clip","text_config":{"hidden_size":768,"intermediate_size":3072,"num_attention_heads":12}}"#).unwrap();
        assert_eq!(c, ClipConfig::sd15());
        assert!(parse_clip_config("t", r#"{"hidden_act":"relu"}"#).is_err());
        assert_eq!(config_class_name(r#"{"_class_name":"MotionAdapter"}"#).as_deref(), Some("MotionAdapter"));
        assert_eq!(config_class_name(r#"{"architectures":["CLIPTextModel"]}"#).as_deref(), Some("CLIPTextModel"));
    }
}
