//! Quantized pipeline files (`animatediff quantize`): one safetensors file holding the text
//! encoder, UNet, motion modules and VAE decoder of a pipeline, with the GEMM weights the
//! policy ([`crate::model::quant_policy`]) quantizes stored packed exactly as the kernels read
//! them, so loading is a byte copy to the GPU (a small download for the web page).
//!
//! Layout:
//! - tensors under `text_encoder.`, `unet.`, `motion.`, `vae.` + their diffusers names; a
//!   quantized layer `X` as `X.qweight` (U8 `[K, N·bits/8]`: the little-endian bytes of the
//!   kernels' u32 words), `X.qscales` (F16 `[K / group, N]`) and, asymmetric, `X.qmins`; the
//!   other tensors dense (F16 by default, or F32); the VAE holds the decoder only;
//! - `__metadata__`: [`META_QUANT`] (JSON: scheme [`SCHEME`], weights q8/q4, dense dtype, the
//!   policy table and formats), the four configs as diffusers/transformers `config.json` text,
//!   the scheduler config, and the motion module's version/naming (its default semantics).
//!
//! Reading checks everything a file can get wrong: an unknown scheme, missing configs or
//! components, and (per layer, [`crate::model::quant_policy::read_packed`]) packed tensors
//! whose shapes, scales or codes do not fit → typed [`LoadError`]s naming file and tensor.

use std::sync::Arc;

use serde_json::{json, Value};

use super::scheduler::SchedulerConfig;
use crate::load::archive::TensorArchive;
use crate::load::component::{ComponentSource, MotionModel};
use crate::load::config::{parse_clip_config, parse_motion_config, parse_unet_config, parse_vae_config};
use crate::load::detect::MotionVersion;
use crate::load::keymap::{KeyMap, KeyTarget};
use crate::load::LoadError;
use crate::model::quant_policy::QuantScheme;
use crate::model::{ClipConfig, MotionConfig, UNetConfig, VaeConfig};
use crate::{Error, Result};

/// The packing/metadata scheme this build writes and reads.
pub const SCHEME: &str = "animatediff-wgpu/quant-v1";
/// Metadata keys.
pub const META_QUANT: &str = "animatediff.quantization";
pub const META_UNET: &str = "animatediff.unet_config";
pub const META_MOTION: &str = "animatediff.motion_config";
pub const META_VAE: &str = "animatediff.vae_config";
pub const META_CLIP: &str = "animatediff.text_encoder_config";
pub const META_SCHEDULER: &str = "animatediff.scheduler_config";
pub const META_MOTION_INFO: &str = "animatediff.motion";

/// Component prefixes in the file.
pub const TEXT_ENCODER: &str = "text_encoder.";
pub const UNET: &str = "unet.";
pub const MOTION: &str = "motion.";
pub const VAE: &str = "vae.";

/// A quantized file opened: components as weight sources plus everything the metadata says.
pub struct QuantizedModel {
    pub unet: ComponentSource,
    pub unet_config: UNetConfig,
    pub vae: ComponentSource,
    pub vae_config: VaeConfig,
    pub text_encoder: ComponentSource,
    pub clip_config: ClipConfig,
    pub motion: MotionModel,
    pub scheduler: SchedulerConfig,
    pub scheme: QuantScheme,
    /// The metadata's quantization record (scheme, policy, formats).
    pub info: Value,
}

// ---------------------------------------------------------------------------------------------
// Configs as diffusers / transformers config.json text.

pub fn unet_config_json(c: &UNetConfig) -> String {
    let down: Vec<&str> = c.down_block_attention.iter().map(|&a| if a { "CrossAttnDownBlock2D" } else { "DownBlock2D" }).collect();
    let up: Vec<&str> = c.up_block_attention.iter().map(|&a| if a { "CrossAttnUpBlock2D" } else { "UpBlock2D" }).collect();
    json!({
        "_class_name": "UNet2DConditionModel",
        "in_channels": c.in_channels,
        "out_channels": c.out_channels,
        "block_out_channels": c.block_out_channels,
        "layers_per_block": c.layers_per_block,
        "norm_num_groups": c.norm_num_groups,
        "norm_eps": c.norm_eps,
        "cross_attention_dim": c.cross_attention_dim,
        // diffusers' legacy name: for SD1.5 UNets it counts heads.
        "attention_head_dim": c.attention_heads,
        "down_block_types": down,
        "up_block_types": up,
        "flip_sin_to_cos": c.flip_sin_to_cos,
        "freq_shift": c.freq_shift,
        "transformer_layers_per_block": c.transformer_layers_per_block,
        "use_linear_projection": c.use_linear_projection,
        "sample_size": c.sample_size,
    })
    .to_string()
}

pub fn motion_config_json(c: &MotionConfig) -> String {
    json!({
        "_class_name": "MotionAdapter",
        "block_out_channels": c.block_out_channels,
        "motion_layers_per_block": c.motion_layers_per_block,
        "motion_num_attention_heads": c.motion_num_attention_heads,
        "motion_norm_num_groups": c.motion_norm_num_groups,
        "motion_max_seq_length": c.motion_max_seq_length,
        "use_motion_mid_block": c.use_motion_mid_block,
    })
    .to_string()
}

pub fn vae_config_json(c: &VaeConfig) -> String {
    json!({
        "_class_name": "AutoencoderKL",
        "in_channels": c.in_channels,
        "out_channels": c.out_channels,
        "latent_channels": c.latent_channels,
        "block_out_channels": c.block_out_channels,
        "layers_per_block": c.layers_per_block,
        "norm_num_groups": c.norm_num_groups,
        "scaling_factor": c.scaling_factor,
    })
    .to_string()
}

pub fn clip_config_json(c: &ClipConfig) -> String {
    json!({
        "model_type": "clip_text_model",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "max_position_embeddings": c.max_position_embeddings,
        "layer_norm_eps": c.layer_norm_eps,
        "hidden_act": c.hidden_act,
    })
    .to_string()
}

fn parse_motion_version(s: &str) -> Option<MotionVersion> {
    [MotionVersion::V1, MotionVersion::V2, MotionVersion::V3, MotionVersion::AnimateLcm].into_iter().find(|v| v.to_string() == s)
}

// ---------------------------------------------------------------------------------------------
// Reading (every target).

fn unsupported(file: &str, message: impl Into<String>) -> Error {
    Error::Load(LoadError::Unsupported { file: file.to_string(), message: message.into() })
}

fn config_err(file: &str, message: impl Into<String>) -> Error {
    Error::Load(LoadError::Config { file: file.to_string(), message: message.into() })
}

/// Whether `a` is a quantized pipeline file (it has the [`META_QUANT`] metadata).
pub fn is_quantized(a: &TensorArchive) -> bool {
    a.metadata().contains_key(META_QUANT)
}

/// The tensors under `prefix`, served under their names without it.
fn component(a: &Arc<TensorArchive>, prefix: &str) -> Result<ComponentSource> {
    let mut map = KeyMap::new();
    for k in a.keys() {
        if let Some(name) = k.strip_prefix(prefix) {
            map.insert(name.to_string(), KeyTarget { key: k.to_string(), reshape: None });
        }
    }
    if map.is_empty() {
        return Err(Error::Load(LoadError::Corrupt { file: a.origin(), format: "quantized pipeline", message: format!("no `{prefix}*` tensors") }));
    }
    Ok(ComponentSource::new(a.clone(), map)?)
}

/// Open an archive as a quantized pipeline: `None` when it is not one.
pub fn open_archive(a: Arc<TensorArchive>) -> Result<Option<QuantizedModel>> {
    let Some(q) = a.metadata().get(META_QUANT) else { return Ok(None) };
    let file = a.origin();
    let info: Value = serde_json::from_str(q).map_err(|e| config_err(&file, format!("metadata `{META_QUANT}` is not JSON: {e}")))?;
    let scheme = info.get("scheme").and_then(Value::as_str).unwrap_or("(none)");
    if scheme != SCHEME {
        return Err(unsupported(&file, format!("unknown quantization scheme `{scheme}` (this build reads `{SCHEME}`)")));
    }
    let weights = info.get("weights").and_then(Value::as_str).unwrap_or("(none)");
    let scheme = QuantScheme::parse(weights).ok_or_else(|| unsupported(&file, format!("unknown quantized weight format `{weights}` (q8 or q4)")))?;
    let meta = |key: &str| -> Result<(String, &str)> {
        let text = a.metadata().get(key).ok_or_else(|| config_err(&file, format!("metadata `{key}` is missing")))?;
        Ok((format!("{file} (metadata {key})"), text.as_str()))
    };
    let (f, t) = meta(META_UNET)?;
    let unet_config = parse_unet_config(&f, t)?;
    let (f, t) = meta(META_MOTION)?;
    let motion_config = parse_motion_config(&f, t)?;
    let (f, t) = meta(META_VAE)?;
    let vae_config = parse_vae_config(&f, t)?;
    let (f, t) = meta(META_CLIP)?;
    let clip_config = parse_clip_config(&f, t)?;
    let (f, t) = meta(META_SCHEDULER)?;
    let scheduler = SchedulerConfig::from_json(t).map_err(|e| config_err(&f, e.to_string()))?;
    let (f, t) = meta(META_MOTION_INFO)?;
    let mi: Value = serde_json::from_str(t).map_err(|e| config_err(&f, e.to_string()))?;
    let version = mi.get("version").and_then(Value::as_str).and_then(parse_motion_version).ok_or_else(|| config_err(&f, "no known motion module `version`"))?;
    let original_naming = mi.get("original_naming").and_then(Value::as_bool).ok_or_else(|| config_err(&f, "`original_naming` is missing"))?;
    let motion = MotionModel { source: component(&a, MOTION)?, config: motion_config, version, original_naming };
    Ok(Some(QuantizedModel {
        unet: component(&a, UNET)?,
        unet_config,
        vae: component(&a, VAE)?,
        vae_config,
        text_encoder: component(&a, TEXT_ENCODER)?,
        clip_config,
        motion,
        scheduler,
        scheme,
        info,
    }))
}

// ---------------------------------------------------------------------------------------------
// Native: opening by path, and writing.

#[cfg(not(target_arch = "wasm32"))]
pub use native::*;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::io::{BufWriter, Read, Write};
    use std::path::{Path, PathBuf};

    use half::f16;

    use super::*;
    use crate::load::archive::FileDType;
    use crate::load::WeightSource;
    use crate::model::quant_policy::{packed_bytes, QuantPolicy, QMINS, QSCALES, QWEIGHT};
    use crate::ops::{conv_weight_from_torch, linear_weight_from_torch};
    use crate::pipeline::load::{HostPipeline, ModelPaths};
    use crate::quant::{self, QuantFormat};

    /// If `paths.model` is a quantized file, the pipeline it holds (its own motion modules:
    /// `paths.motion` and `paths.loras` must be empty; a `paths.vae` is applied by the caller).
    pub fn open_quantized_pipeline(paths: &ModelPaths) -> Result<Option<HostPipeline>> {
        let path = &paths.model;
        if !path.is_file() {
            return Ok(None);
        }
        // Only safetensors files can be quantized files: skip zip checkpoints without parsing them.
        let mut head = [0u8; 4];
        let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).map_err(|source| LoadError::Io { file: path.display().to_string(), source })?;
        if n < 4 || &head == b"PK\x03\x04" || &head == b"PK\x05\x06" {
            return Ok(None);
        }
        let a = Arc::new(TensorArchive::open_path(path)?);
        let Some(m) = open_archive(a)? else { return Ok(None) };
        if !paths.loras.is_empty() {
            return Err(Error::input(
                "lora",
                format!("{} is a quantized pipeline file: LoRAs cannot be merged into packed weights; merge them when quantizing (`animatediff quantize --lora FILE[:WEIGHT]`)", path.display()),
            ));
        }
        if !paths.motion.as_os_str().is_empty() {
            return Err(Error::input(
                "motion",
                format!("{} is a quantized pipeline that already contains its motion modules; do not pass a motion module with it", path.display()),
            ));
        }
        let description = vec![
            format!("model: {} ({}-quantized pipeline file)", path.display(), m.scheme.name()),
            format!("motion: inside the quantized file ({}, {} naming)", m.motion.version, if m.motion.original_naming { "original AnimateDiff" } else { "diffusers" }),
        ];
        Ok(Some(HostPipeline {
            unet: m.unet,
            unet_config: m.unet_config,
            vae: m.vae,
            vae_config: m.vae_config,
            text_encoder: m.text_encoder,
            clip_config: m.clip_config,
            motion: m.motion,
            scheduler: m.scheduler,
            description,
            quantized: Some(m.scheme),
            bytes: 0.0,
        }))
    }

    /// Storage of the tensors that stay dense.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum DenseDType {
        #[default]
        F16,
        F32,
    }

    /// What [`write_quantized`] wrote.
    #[derive(Debug, Clone, Default)]
    pub struct QuantizeReport {
        pub quantized_layers: usize,
        pub q8_layers: usize,
        pub q4_layers: usize,
        pub dense_tensors: usize,
        /// Weights (elements) in quantized layers / in dense tensors.
        pub quantized_params: u64,
        pub dense_params: u64,
        pub file_bytes: u64,
    }

    /// One planned layer or tensor.
    enum Item {
        Dense { comp: usize, name: String, shape: Vec<usize>, dtype: FileDType },
        Packed { comp: usize, layer: String, torch_shape: Vec<usize>, k: usize, n: usize, format: QuantFormat },
    }

    struct Entry {
        name: String,
        dtype: FileDType,
        shape: Vec<usize>,
        bytes: u64,
    }

    /// The K-major `[k, n]` form of a linear `[out, in]` or conv `[out, in, kh, kw]` weight.
    fn gemm_shape(shape: &[usize]) -> Option<(usize, usize)> {
        match *shape {
            [out, inp] => Some((inp, out)),
            [out, inp, kh, kw] => Some((kh * kw * inp, out)),
            _ => None,
        }
    }

    fn to_kmajor(data: &[f32], shape: &[usize]) -> Option<Vec<f32>> {
        match *shape {
            [out, inp] => linear_weight_from_torch(data, out, inp),
            [out, inp, kh, kw] => conv_weight_from_torch(data, out, inp, kh, kw),
            _ => None,
        }
    }

    fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
        move |source| Error::Load(LoadError::Io { file: path.display().to_string(), source })
    }

    /// Quantize `host`'s text encoder, UNet and motion modules per `policy` (on the CPU, with
    /// the reference quantizer the GPU kernel is bit-exact with) and write them with the VAE
    /// decoder to `out` (streamed: one tensor in memory at a time; written to `out.partial`,
    /// renamed when complete). `progress` gets (done, total) tensor counts.
    pub fn write_quantized(host: &HostPipeline, policy: &QuantPolicy, dense: DenseDType, out: &Path, progress: &mut dyn FnMut(usize, usize)) -> Result<QuantizeReport> {
        let comps: [(&str, &ComponentSource, bool); 4] = [
            (TEXT_ENCODER, &host.text_encoder, true),
            (UNET, &host.unet, true),
            (MOTION, &host.motion.source, true),
            (VAE, &host.vae, false),
        ];
        let dense_dtype = match dense {
            DenseDType::F16 => FileDType::F16,
            DenseDType::F32 => FileDType::F32,
        };
        // Plan: every tensor's name, dtype and shape (from headers only).
        let mut items = Vec::new();
        let mut report = QuantizeReport::default();
        for (ci, (prefix, src, quantizable)) in comps.iter().enumerate() {
            for name in src.names() {
                if *prefix == VAE && !(name.starts_with("decoder.") || name.starts_with("post_quant_conv.")) {
                    continue;
                }
                let shape = src.shape(&name).ok_or_else(|| LoadError::MissingTensor { file: src.origin(), tensor: name.clone() })?;
                let layer = name.strip_suffix(".weight");
                let packed = match (layer, gemm_shape(&shape)) {
                    (Some(layer), Some((k, n))) if *quantizable => policy.format_for(layer, k, n).map(|f| (layer.to_string(), k, n, f)),
                    _ => None,
                };
                match packed {
                    Some((layer, k, n, format)) => {
                        report.quantized_layers += 1;
                        match format.bits {
                            8 => report.q8_layers += 1,
                            _ => report.q4_layers += 1,
                        }
                        report.quantized_params += (k * n) as u64;
                        items.push(Item::Packed { comp: ci, layer, torch_shape: shape, k, n, format });
                    }
                    None => {
                        // Integer tensors (position ids) stay exact in F32.
                        let dtype = match src.file_dtype(&name) {
                            Some(d) if !d.is_float() => FileDType::F32,
                            _ => dense_dtype,
                        };
                        report.dense_tensors += 1;
                        report.dense_params += shape.iter().product::<usize>() as u64;
                        items.push(Item::Dense { comp: ci, name, shape, dtype });
                    }
                }
            }
        }
        let mut entries = Vec::new();
        for it in &items {
            match it {
                Item::Dense { comp, name, shape, dtype } => {
                    let numel = shape.iter().product::<usize>() as u64;
                    entries.push(Entry { name: format!("{}{name}", comps[*comp].0), dtype: *dtype, shape: shape.clone(), bytes: numel * dtype.size() });
                }
                Item::Packed { comp, layer, k, n, format, .. } => {
                    let p = comps[*comp].0;
                    let row = n * format.bits as usize / 8;
                    let groups = k / format.group as usize;
                    entries.push(Entry { name: format!("{p}{layer}.{QWEIGHT}"), dtype: FileDType::U8, shape: vec![*k, row], bytes: (k * row) as u64 });
                    entries.push(Entry { name: format!("{p}{layer}.{QSCALES}"), dtype: FileDType::F16, shape: vec![groups, *n], bytes: (groups * n * 2) as u64 });
                    if format.asymmetric {
                        entries.push(Entry { name: format!("{p}{layer}.{QMINS}"), dtype: FileDType::F16, shape: vec![groups, *n], bytes: (groups * n * 2) as u64 });
                    }
                }
            }
        }

        // Header.
        let scheme = policy.scheme;
        let motion_info = json!({ "version": host.motion.version.to_string(), "original_naming": host.motion.original_naming });
        let quant_info = json!({
            "scheme": SCHEME,
            "weights": scheme.name(),
            "dense_dtype": dense_dtype.safetensors_name(),
            "packing": "X.qweight U8 [K, N*bits/8] = little-endian bytes of u32 words (element (k, n) at word (k*N + n) / (32/bits), bits ((k*N + n) % (32/bits))*bits; symmetric codes two's complement); X.qscales F16 [K/group, N]; X.qmins F16 [K/group, N] when asymmetric; K-major: K = in (linear) or kh*kw*in (conv, k ordered kh, kw, in)",
            "policy": policy.describe(),
            "quantized_layers": report.quantized_layers,
        });
        let mut header = serde_json::Map::new();
        let mut meta = serde_json::Map::new();
        meta.insert("format".into(), json!("pt"));
        meta.insert(META_QUANT.into(), json!(quant_info.to_string()));
        meta.insert(META_UNET.into(), json!(unet_config_json(&host.unet_config)));
        meta.insert(META_MOTION.into(), json!(motion_config_json(&host.motion.config)));
        meta.insert(META_VAE.into(), json!(vae_config_json(&host.vae_config)));
        meta.insert(META_CLIP.into(), json!(clip_config_json(&host.clip_config)));
        let sched = serde_json::to_string(&host.scheduler).map_err(|e| Error::input("scheduler config", e.to_string()))?;
        meta.insert(META_SCHEDULER.into(), json!(sched));
        meta.insert(META_MOTION_INFO.into(), json!(motion_info.to_string()));
        header.insert("__metadata__".into(), Value::Object(meta));
        let mut offset = 0u64;
        for e in &entries {
            header.insert(e.name.clone(), json!({ "dtype": e.dtype.safetensors_name(), "shape": e.shape, "data_offsets": [offset, offset + e.bytes] }));
            offset += e.bytes;
        }
        let mut hbytes = Value::Object(header).to_string().into_bytes();
        hbytes.resize(hbytes.len().next_multiple_of(8), b' ');

        let partial = PathBuf::from(format!("{}.partial", out.display()));
        let file = std::fs::File::create(&partial).map_err(io(&partial))?;
        let mut w = BufWriter::with_capacity(8 << 20, file);
        w.write_all(&(hbytes.len() as u64).to_le_bytes()).map_err(io(&partial))?;
        w.write_all(&hbytes).map_err(io(&partial))?;
        let total = items.len();
        let mut written = 0u64;
        let result = (|| -> Result<()> {
            for (i, it) in items.iter().enumerate() {
                progress(i, total);
                let chunks: Vec<Vec<u8>> = match it {
                    Item::Dense { comp, name, shape: _, dtype } => {
                        let src = comps[*comp].1;
                        let t = src.tensor(name)?;
                        vec![encode_dense(&t.data, *dtype).map_err(|m| Error::Load(LoadError::Corrupt { file: src.origin(), format: "weights", message: format!("tensor `{name}`: {m}") }))?]
                    }
                    Item::Packed { comp, layer, torch_shape, k, n, format } => {
                        let src = comps[*comp].1;
                        let wname = format!("{layer}.weight");
                        let t = src.tensor(&wname)?;
                        let bad = |m: String| Error::Load(LoadError::Corrupt { file: src.origin(), format: "weights", message: format!("tensor `{wname}`: {m}") });
                        let kn = to_kmajor(&t.data, torch_shape).ok_or_else(|| bad(format!("{} values do not fill {torch_shape:?}", t.data.len())))?;
                        let q = quant::quantize(&kn, *k, *n, *format).map_err(|e| bad(e.to_string()))?;
                        let (bytes, _) = packed_bytes(&q);
                        let halves = |v: &[f16]| v.iter().flat_map(|h| h.to_le_bytes()).collect::<Vec<u8>>();
                        let mut c = vec![bytes, halves(&q.scales)];
                        if format.asymmetric {
                            c.push(halves(&q.mins));
                        }
                        c
                    }
                };
                for c in chunks {
                    w.write_all(&c).map_err(io(&partial))?;
                    written += c.len() as u64;
                }
            }
            progress(total, total);
            if written != offset {
                return Err(Error::Load(LoadError::Corrupt { file: partial.display().to_string(), format: "safetensors", message: format!("wrote {written} data bytes, planned {offset}") }));
            }
            w.flush().map_err(io(&partial))?;
            Ok(())
        })();
        drop(w);
        if let Err(e) = result {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, out).map_err(io(out))?;
        report.file_bytes = 8 + hbytes.len() as u64 + offset;
        Ok(report)
    }

    fn encode_dense(data: &[f32], dtype: FileDType) -> std::result::Result<Vec<u8>, String> {
        match dtype {
            FileDType::F32 => Ok(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
            FileDType::F16 => {
                if let Some((i, v)) = data.iter().enumerate().find(|(_, v)| v.is_finite() && v.abs() > 65504.0) {
                    return Err(format!("value {v} at index {i} does not fit f16 (write dense tensors as f32)"));
                }
                Ok(data.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect())
            }
            other => Err(format!("cannot store dense tensors as {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::config::{parse_clip_config, parse_motion_config, parse_unet_config, parse_vae_config};

    #[test]
    fn configs_survive_json() {
        let mut u = UNetConfig::sd15();
        u.attention_heads = vec![2, 4, 8, 8];
        u.norm_eps = 1e-6;
        assert_eq!(parse_unet_config("x", &unet_config_json(&u)).unwrap(), u);
        let m = MotionConfig { use_motion_mid_block: false, motion_max_seq_length: 24, ..MotionConfig::sd15_v2() };
        assert_eq!(parse_motion_config("x", &motion_config_json(&m)).unwrap(), m);
        let v = VaeConfig::sd15();
        assert_eq!(parse_vae_config("x", &vae_config_json(&v)).unwrap(), v);
        let c = ClipConfig { intermediate_size: 37, hidden_act: "gelu".into(), ..ClipConfig::sd15() };
        assert_eq!(parse_clip_config("x", &clip_config_json(&c)).unwrap(), c);
        for v in [MotionVersion::V1, MotionVersion::V2, MotionVersion::V3, MotionVersion::AnimateLcm] {
            assert_eq!(parse_motion_version(&v.to_string()), Some(v));
        }
    }
}
