//! Key maps from file names to diffusers names (model-spec §2.1, §2.3, §4):
//!
//! * LDM single-file SD1.5 checkpoints (`model.diffusion_model.*`, `first_stage_model.*`,
//!   `cond_stage_model.transformer.*`) → diffusers UNet / VAE / CLIP names, with the VAE
//!   attention 1×1 convs squeezed to linears and the decoder up blocks reversed;
//! * original AnimateDiff motion modules (`…motion_modules.j.temporal_transformer.…`) and
//!   diffusers `MotionAdapter` files → diffusers motion-adapter names;
//! * CLIP text encoders with or without the `text_model.` level.
//!
//! A map goes from diffusers name → [`KeyTarget`] (archive key + optional reshape), which is
//! what a [`crate::load::component::ComponentSource`] serves.

use std::collections::BTreeMap;

use super::archive::TensorArchive;
use super::{LoadError, LoadResult};

/// Where a diffusers-named tensor lives in an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTarget {
    /// The archive key.
    pub key: String,
    /// Serve the data under this shape instead (same element count; used to squeeze the
    /// LDM VAE attention's `[C, C, 1, 1]` convs to `[C, C]` linears).
    pub reshape: Option<Vec<usize>>,
}

impl KeyTarget {
    pub fn same(key: impl Into<String>) -> KeyTarget {
        KeyTarget { key: key.into(), reshape: None }
    }
}

/// diffusers name → archive location.
pub type KeyMap = BTreeMap<String, KeyTarget>;

pub const LDM_UNET_PREFIX: &str = "model.diffusion_model.";
pub const LDM_VAE_PREFIXES: [&str; 2] = ["first_stage_model.", "vae."];
pub const LDM_CLIP_PREFIX: &str = "cond_stage_model.transformer.";
pub const LDM_EMA_PREFIX: &str = "model_ema.";

/// Split `a.b.rest` at the first dot: (`a`, `b.rest`).
fn head(s: &str) -> Option<(&str, &str)> {
    s.split_once('.')
}

fn index(s: &str) -> Option<(usize, &str)> {
    let (i, rest) = head(s)?;
    Some((i.parse().ok()?, rest))
}

fn unet_resnet(rest: &str) -> Option<String> {
    const MAP: [(&str, &str); 6] = [
        ("in_layers.0.", "norm1."),
        ("in_layers.2.", "conv1."),
        ("emb_layers.1.", "time_emb_proj."),
        ("out_layers.0.", "norm2."),
        ("out_layers.3.", "conv2."),
        ("skip_connection.", "conv_shortcut."),
    ];
    MAP.iter().find_map(|(l, d)| rest.strip_prefix(l).map(|r| format!("{d}{r}")))
}

/// One LDM UNet key (without `model.diffusion_model.`) → diffusers. `layers_per_block` is 2
/// for SD1.5 (see [`ldm_unet_layers_per_block`]). `None` for keys that have no diffusers
/// counterpart (or are not SD1.5 UNet keys at all).
pub fn ldm_unet_key(k: &str, layers_per_block: usize) -> Option<String> {
    let per = layers_per_block + 1;
    if let Some(r) = k.strip_prefix("time_embed.0.") {
        return Some(format!("time_embedding.linear_1.{r}"));
    }
    if let Some(r) = k.strip_prefix("time_embed.2.") {
        return Some(format!("time_embedding.linear_2.{r}"));
    }
    if let Some(r) = k.strip_prefix("out.0.") {
        return Some(format!("conv_norm_out.{r}"));
    }
    if let Some(r) = k.strip_prefix("out.2.") {
        return Some(format!("conv_out.{r}"));
    }
    if let Some(r) = k.strip_prefix("input_blocks.0.0.") {
        return Some(format!("conv_in.{r}"));
    }
    if let Some(r) = k.strip_prefix("input_blocks.") {
        let (i, r) = index(r)?;
        let (s, r) = index(r)?;
        let i = i.checked_sub(1)?;
        let (b, j) = (i / per, i % per);
        return match (j == layers_per_block, s) {
            (true, 0) => r.strip_prefix("op.").map(|r| format!("down_blocks.{b}.downsamplers.0.conv.{r}")),
            (false, 0) => unet_resnet(r).map(|r| format!("down_blocks.{b}.resnets.{j}.{r}")),
            (false, 1) => Some(format!("down_blocks.{b}.attentions.{j}.{r}")),
            _ => None,
        };
    }
    if let Some(r) = k.strip_prefix("middle_block.") {
        let (s, r) = index(r)?;
        return match s {
            0 => unet_resnet(r).map(|r| format!("mid_block.resnets.0.{r}")),
            1 => Some(format!("mid_block.attentions.0.{r}")),
            2 => unet_resnet(r).map(|r| format!("mid_block.resnets.1.{r}")),
            _ => None,
        };
    }
    if let Some(r) = k.strip_prefix("output_blocks.") {
        let (o, r) = index(r)?;
        let (s, r) = index(r)?;
        let (b, j) = (o / per, o % per);
        return match s {
            0 => unet_resnet(r).map(|r| format!("up_blocks.{b}.resnets.{j}.{r}")),
            1 | 2 => match r.strip_prefix("conv.") {
                Some(r) if j == layers_per_block => Some(format!("up_blocks.{b}.upsamplers.0.conv.{r}")),
                _ if s == 1 => Some(format!("up_blocks.{b}.attentions.{j}.{r}")),
                _ => None,
            },
            _ => None,
        };
    }
    None
}

/// `layers_per_block` of an LDM UNet from its keys (without prefix): the first downsampler
/// sits at `input_blocks.{layers_per_block + 1}.0.op`.
pub fn ldm_unet_layers_per_block<'a>(keys: impl IntoIterator<Item = &'a str>) -> Option<usize> {
    let mut first_op = None;
    let mut max_in = None;
    for k in keys {
        let Some(r) = k.strip_prefix("input_blocks.") else { continue };
        let Some((i, r)) = index(r) else { continue };
        max_in = max_in.max(Some(i));
        if r.starts_with("0.op.") {
            first_op = Some(first_op.map_or(i, |f: usize| f.min(i)));
        }
    }
    match first_op {
        Some(i) => i.checked_sub(1),
        None => max_in,
    }
}

fn vae_resnet(rest: &str) -> String {
    match rest.strip_prefix("nin_shortcut.") {
        Some(r) => format!("conv_shortcut.{r}"),
        None => rest.to_string(),
    }
}

/// One LDM VAE key (without `first_stage_model.`) → (diffusers name, squeeze to 2-D?).
/// `up_levels` is the number of decoder levels (4 for SD1.5): LDM's `decoder.up.{i}` is
/// diffusers' `decoder.up_blocks.{up_levels − 1 − i}`.
pub fn ldm_vae_key(k: &str, up_levels: usize) -> Option<(String, bool)> {
    let (part, r) = head(k)?;
    match part {
        "quant_conv" | "post_quant_conv" => return Some((k.to_string(), false)),
        "encoder" | "decoder" => {}
        _ => return None,
    }
    let plain = |s: String| Some((format!("{part}.{s}"), false));
    if r.starts_with("conv_in.") || r.starts_with("conv_out.") {
        return plain(r.to_string());
    }
    if let Some(x) = r.strip_prefix("norm_out.") {
        return plain(format!("conv_norm_out.{x}"));
    }
    if let Some(x) = r.strip_prefix("mid.") {
        let (blk, x) = head(x)?;
        return match blk {
            "block_1" => plain(format!("mid_block.resnets.0.{}", vae_resnet(x))),
            "block_2" => plain(format!("mid_block.resnets.1.{}", vae_resnet(x))),
            "attn_1" => {
                let (l, x) = head(x)?;
                let (d, squeeze) = match l {
                    "norm" => ("group_norm", false),
                    "q" => ("to_q", true),
                    "k" => ("to_k", true),
                    "v" => ("to_v", true),
                    "proj_out" => ("to_out.0", true),
                    _ => return None,
                };
                Some((format!("{part}.mid_block.attentions.0.{d}.{x}"), squeeze && x == "weight"))
            }
            _ => None,
        };
    }
    let (dir, blocks) = if part == "encoder" { ("down", "down_blocks") } else { ("up", "up_blocks") };
    let x = r.strip_prefix(dir)?.strip_prefix('.')?;
    let (i, x) = index(x)?;
    let i = if part == "decoder" { up_levels.checked_sub(1)?.checked_sub(i)? } else { i };
    if let Some(x) = x.strip_prefix("block.") {
        let (j, x) = index(x)?;
        return plain(format!("{blocks}.{i}.resnets.{j}.{}", vae_resnet(x)));
    }
    let sampler = if part == "encoder" { "downsample.conv." } else { "upsample.conv." };
    let x = x.strip_prefix(sampler)?;
    let s = if part == "encoder" { "downsamplers" } else { "upsamplers" };
    plain(format!("{blocks}.{i}.{s}.0.conv.{x}"))
}

/// A CLIP text-model key in any layout (`text_model.…`, transformers ≥ 5.6's unprefixed
/// `embeddings.…`/`encoder.…`/`final_layer_norm.…`) → `text_model.…`. `position_ids`
/// buffers are dropped (`None`): positions are always `arange(77)`.
pub fn clip_key(k: &str) -> Option<String> {
    if k.ends_with("position_ids") {
        return None;
    }
    let k = k.strip_prefix("text_model.").unwrap_or(k);
    if ["embeddings.", "encoder.", "final_layer_norm."].iter().any(|p| k.starts_with(p)) {
        Some(format!("text_model.{k}"))
    } else {
        None
    }
}

/// An original AnimateDiff motion-module key → diffusers `MotionAdapter` name (§2.1).
/// `None` for keys outside motion modules and for `pos_encoder` buffers.
pub fn original_motion_key(k: &str) -> Option<String> {
    if !k.contains("motion_modules.") || k.contains("pos_encoder") {
        return None;
    }
    let start = ["down_blocks.", "up_blocks.", "mid_block."].iter().filter_map(|p| k.find(p)).min()?;
    let k = &k[start..];
    Some(
        k.replace(".norms.0", ".norm1")
            .replace(".norms.1", ".norm2")
            .replace(".ff_norm", ".norm3")
            .replace(".attention_blocks.0", ".attn1")
            .replace(".attention_blocks.1", ".attn2")
            .replace(".temporal_transformer", ""),
    )
}

/// Is this a positional-encoding buffer of a motion module (either naming)?
pub fn is_motion_pe(k: &str) -> bool {
    k.ends_with("pos_encoder.pe") || k.ends_with("pos_embed.pe")
}

fn insert(map: &mut KeyMap, file: &str, name: String, target: KeyTarget) -> LoadResult<()> {
    if let Some(prev) = map.get(&name) {
        return Err(LoadError::Corrupt {
            file: file.to_string(),
            format: "weights",
            message: format!("`{}` and `{}` both map to `{name}`", prev.key, target.key),
        });
    }
    map.insert(name, target);
    Ok(())
}

/// The three components of an LDM single-file checkpoint, mapped to diffusers names.
#[derive(Debug, Clone, Default)]
pub struct LdmMaps {
    pub unet: KeyMap,
    /// Empty when the file has no VAE ("noVAE" checkpoints).
    pub vae: KeyMap,
    /// Empty when the file has no text encoder.
    pub text_encoder: KeyMap,
    /// `model_ema.*` keys in the file (> 100 means EMA weights are present).
    pub ema_keys: usize,
    /// Whether the UNet map points at the EMA copy.
    pub ema_used: bool,
    pub layers_per_block: usize,
    /// UNet / VAE / CLIP keys that could not be mapped (with their file names).
    pub unmapped: Vec<String>,
}

/// Map an LDM single file. `use_ema`: serve the EMA UNet weights when the file has them
/// (default is the non-EMA weights, as diffusers does).
pub fn ldm_maps(a: &TensorArchive, use_ema: bool) -> LoadResult<LdmMaps> {
    let file = a.origin();
    let mut m = LdmMaps { ema_keys: a.keys().filter(|k| k.starts_with(LDM_EMA_PREFIX)).count(), ..LdmMaps::default() };
    let unet_keys: Vec<&str> = a.keys().filter_map(|k| k.strip_prefix(LDM_UNET_PREFIX)).collect();
    m.layers_per_block = ldm_unet_layers_per_block(unet_keys.iter().copied()).unwrap_or(2);
    let ema_ok = use_ema && m.ema_keys > 100;
    for k in &unet_keys {
        let full = format!("{LDM_UNET_PREFIX}{k}");
        match ldm_unet_key(k, m.layers_per_block) {
            Some(d) => {
                let ema = format!("{LDM_EMA_PREFIX}diffusion_model{}", k.replace('.', ""));
                let (key, used) = if ema_ok && a.contains(&ema) { (ema, true) } else { (full, false) };
                m.ema_used |= used;
                insert(&mut m.unet, &file, d, KeyTarget::same(key))?;
            }
            None => m.unmapped.push(full),
        }
    }
    let vae_prefix = LDM_VAE_PREFIXES.iter().copied().find(|p| a.keys().any(|k| k.starts_with(p)));
    if let Some(p) = vae_prefix {
        let up_levels = a
            .keys()
            .filter_map(|k| k.strip_prefix(p)?.strip_prefix("decoder.up.")).filter_map(|r| index(r).map(|(i, _)| i + 1))
            .max()
            .unwrap_or(0);
        for e in a.entries() {
            let Some(k) = e.name.strip_prefix(p) else { continue };
            match ldm_vae_key(k, up_levels) {
                Some((d, squeeze)) => {
                    let reshape = match e.shape.as_slice() {
                        [o, i, 1, 1] if squeeze => Some(vec![*o, *i]),
                        _ => None,
                    };
                    insert(&mut m.vae, &file, d, KeyTarget { key: e.name.clone(), reshape })?;
                }
                None => m.unmapped.push(e.name.clone()),
            }
        }
    }
    for k in a.keys() {
        let Some(r) = k.strip_prefix(LDM_CLIP_PREFIX) else { continue };
        match clip_key(r) {
            Some(d) => insert(&mut m.text_encoder, &file, d, KeyTarget::same(k))?,
            None if r.ends_with("position_ids") => {}
            None => m.unmapped.push(k.to_string()),
        }
    }
    Ok(m)
}

/// Motion-module keys of an archive in either naming, mapped to diffusers `MotionAdapter`
/// names, without the positional-encoding buffers (whose length is returned: `pe_len`).
#[derive(Debug, Clone, Default)]
pub struct MotionMap {
    pub map: KeyMap,
    /// `pos_encoder.pe` / `pos_embed.pe` length (the max frames), when the file has one.
    pub pe_len: Option<usize>,
    /// Whether any positional-encoding key exists.
    pub has_pe: bool,
    /// Original (`temporal_transformer`) naming?
    pub original: bool,
}

pub fn motion_map(a: &TensorArchive) -> LoadResult<MotionMap> {
    let file = a.origin();
    let original = a.keys().any(|k| k.contains("motion_modules.") && k.contains(".temporal_transformer."));
    let mut m = MotionMap { original, ..MotionMap::default() };
    for e in a.entries() {
        let k = e.name.as_str();
        if is_motion_pe(k) {
            m.has_pe = true;
            if let [_, n, _] = e.shape.as_slice() {
                m.pe_len = Some(m.pe_len.map_or(*n, |p| p.max(*n)));
            }
            continue;
        }
        let name = if original { original_motion_key(k) } else { Some(k.to_string()) };
        if let Some(d) = name {
            insert(&mut m.map, &file, d, KeyTarget::same(k))?;
        }
    }
    Ok(m)
}

/// A diffusers CLIP text encoder (`text_model.*` or transformers ≥ 5.6 unprefixed names).
pub fn clip_map(a: &TensorArchive) -> LoadResult<KeyMap> {
    let file = a.origin();
    let mut map = KeyMap::new();
    for k in a.keys() {
        if let Some(d) = clip_key(k) {
            insert(&mut map, &file, d, KeyTarget::same(k))?;
        }
    }
    Ok(map)
}

/// Names as they are (diffusers UNet / VAE files).
pub fn identity_map(a: &TensorArchive) -> KeyMap {
    a.keys().map(|k| (k.to_string(), KeyTarget::same(k))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unet_keys() {
        let cases = [
            ("time_embed.0.weight", "time_embedding.linear_1.weight"),
            ("time_embed.2.bias", "time_embedding.linear_2.bias"),
            ("input_blocks.0.0.weight", "conv_in.weight"),
            ("input_blocks.1.0.in_layers.0.weight", "down_blocks.0.resnets.0.norm1.weight"),
            ("input_blocks.2.0.emb_layers.1.bias", "down_blocks.0.resnets.1.time_emb_proj.bias"),
            ("input_blocks.2.1.proj_in.weight", "down_blocks.0.attentions.1.proj_in.weight"),
            ("input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"),
            ("input_blocks.4.0.skip_connection.weight", "down_blocks.1.resnets.0.conv_shortcut.weight"),
            (
                "input_blocks.8.1.transformer_blocks.0.attn2.to_k.weight",
                "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k.weight",
            ),
            ("input_blocks.11.0.out_layers.3.weight", "down_blocks.3.resnets.1.conv2.weight"),
            ("middle_block.0.out_layers.0.bias", "mid_block.resnets.0.norm2.bias"),
            ("middle_block.1.norm.weight", "mid_block.attentions.0.norm.weight"),
            ("middle_block.2.in_layers.2.weight", "mid_block.resnets.1.conv1.weight"),
            ("output_blocks.0.0.in_layers.0.weight", "up_blocks.0.resnets.0.norm1.weight"),
            ("output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"),
            ("output_blocks.3.1.proj_out.bias", "up_blocks.1.attentions.0.proj_out.bias"),
            ("output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"),
            ("output_blocks.8.2.conv.weight", "up_blocks.2.upsamplers.0.conv.weight"),
            ("output_blocks.11.1.transformer_blocks.0.ff.net.2.weight", "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.2.weight"),
            ("out.0.weight", "conv_norm_out.weight"),
            ("out.2.bias", "conv_out.bias"),
        ];
        for (l, d) in cases {
            assert_eq!(ldm_unet_key(l, 2).as_deref(), Some(d), "{l}");
        }
        for bad in ["label_emb.0.0.weight", "input_blocks.x.0.weight", "input_blocks.3.1.foo", "output_blocks.1.3.conv.weight", ""] {
            assert_eq!(ldm_unet_key(bad, 2), None, "{bad}");
        }
    }

    #[test]
    fn vae_keys() {
        let cases = [
            ("encoder.down.0.block.1.conv1.weight", "encoder.down_blocks.0.resnets.1.conv1.weight", false),
            ("encoder.down.1.block.0.nin_shortcut.bias", "encoder.down_blocks.1.resnets.0.conv_shortcut.bias", false),
            ("encoder.down.2.downsample.conv.weight", "encoder.down_blocks.2.downsamplers.0.conv.weight", false),
            ("decoder.up.3.block.0.norm1.weight", "decoder.up_blocks.0.resnets.0.norm1.weight", false),
            ("decoder.up.0.block.2.conv2.bias", "decoder.up_blocks.3.resnets.2.conv2.bias", false),
            ("decoder.up.1.upsample.conv.weight", "decoder.up_blocks.2.upsamplers.0.conv.weight", false),
            ("decoder.mid.attn_1.q.weight", "decoder.mid_block.attentions.0.to_q.weight", true),
            ("decoder.mid.attn_1.q.bias", "decoder.mid_block.attentions.0.to_q.bias", false),
            ("encoder.mid.attn_1.proj_out.weight", "encoder.mid_block.attentions.0.to_out.0.weight", true),
            ("encoder.mid.attn_1.norm.bias", "encoder.mid_block.attentions.0.group_norm.bias", false),
            ("decoder.mid.block_2.conv1.weight", "decoder.mid_block.resnets.1.conv1.weight", false),
            ("encoder.norm_out.weight", "encoder.conv_norm_out.weight", false),
            ("decoder.conv_in.bias", "decoder.conv_in.bias", false),
            ("post_quant_conv.weight", "post_quant_conv.weight", false),
        ];
        for (l, d, sq) in cases {
            assert_eq!(ldm_vae_key(l, 4), Some((d.to_string(), sq)), "{l}");
        }
        assert_eq!(ldm_vae_key("decoder.up.4.block.0.conv1.weight", 4), None);
        assert_eq!(ldm_vae_key("loss.logvar", 4), None);
    }

    #[test]
    fn clip_and_motion_keys() {
        assert_eq!(clip_key("text_model.encoder.layers.0.mlp.fc1.weight").as_deref(), Some("text_model.encoder.layers.0.mlp.fc1.weight"));
        assert_eq!(clip_key("encoder.layers.0.mlp.fc1.weight").as_deref(), Some("text_model.encoder.layers.0.mlp.fc1.weight"));
        assert_eq!(clip_key("embeddings.token_embedding.weight").as_deref(), Some("text_model.embeddings.token_embedding.weight"));
        assert_eq!(clip_key("text_model.embeddings.position_ids"), None);
        assert_eq!(clip_key("logit_scale"), None);
        assert_eq!(
            original_motion_key("down_blocks.0.motion_modules.1.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_out.0.weight")
                .as_deref(),
            Some("down_blocks.0.motion_modules.1.transformer_blocks.0.attn2.to_out.0.weight")
        );
        assert_eq!(
            original_motion_key("mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.ff_norm.bias").as_deref(),
            Some("mid_block.motion_modules.0.transformer_blocks.0.norm3.bias")
        );
        assert_eq!(
            original_motion_key("module.up_blocks.3.motion_modules.2.temporal_transformer.transformer_blocks.0.norms.0.weight").as_deref(),
            Some("up_blocks.3.motion_modules.2.transformer_blocks.0.norm1.weight")
        );
        assert_eq!(original_motion_key("up_blocks.3.motion_modules.2.temporal_transformer.proj_in.weight").as_deref(), Some("up_blocks.3.motion_modules.2.proj_in.weight"));
        assert_eq!(original_motion_key("down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe"), None);
        assert_eq!(original_motion_key("conv_in.weight"), None);
    }

    #[test]
    fn layers_per_block() {
        let k = ["input_blocks.0.0.weight", "input_blocks.1.0.x", "input_blocks.2.0.x", "input_blocks.3.0.op.weight", "input_blocks.6.0.op.weight"];
        assert_eq!(ldm_unet_layers_per_block(k), Some(2));
        assert_eq!(ldm_unet_layers_per_block(["input_blocks.2.0.op.weight"]), Some(1));
        assert_eq!(ldm_unet_layers_per_block(["input_blocks.0.0.weight", "input_blocks.1.0.x"]), Some(1));
        assert_eq!(ldm_unet_layers_per_block(["x"]), None);
    }
}
