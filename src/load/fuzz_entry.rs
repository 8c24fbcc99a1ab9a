//! Entry points for the parser fuzz targets (`fuzz/`, cargo-fuzz) and their regression replay
//! (`tests/fuzz_regressions.rs`, stable toolchain): both call exactly these functions, so a
//! crash found by the fuzzer is replayed by `cargo test` forever after.
//!
//! Every function takes arbitrary bytes and must return — `Ok` or a typed error — without
//! panicking, hanging, or allocating more than a small multiple of the input (a header that
//! claims 100 GB must not make us allocate it; the fuzzer runs under `-malloc_limit_mb`).
//! Not part of the supported API.

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;

use super::archive::TensorArchive;
use super::lora::{Lora, LoraDeltas, LoraTarget};
use super::source::MemorySource;
use super::{HostTensor, LoadError, MapSource, WeightSource};
use crate::pipeline::sampler::{make_sampler, recipe_config, SchedulerKind};
use crate::pipeline::scheduler::{SchedulerConfig, SchedulerError};
use crate::pipeline::tokenizer::{ClipTokenizer, TokenizerError, MAX_LEN};

/// What a fuzz entry can legitimately return: the crate's typed errors, nothing else.
#[derive(Debug, Error)]
pub enum FuzzError {
    #[error(transparent)]
    Crate(#[from] crate::Error),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
}

pub type FuzzResult = Result<(), FuzzError>;

/// One fuzz target: bytes in, `Ok` or a typed error out.
pub type FuzzFn = fn(&[u8]) -> FuzzResult;

/// Tensors read per input: enough to reach the conversion code for every dtype, few enough that
/// one input stays fast.
const MAX_TENSORS_READ: usize = 64;

fn archive(name: &str, data: &[u8]) -> Result<TensorArchive, LoadError> {
    TensorArchive::open(Arc::new(MemorySource::new(name, data.to_vec())))
}

/// Read (and convert) the archive's tensors, checking each against what its entry promised.
fn read_tensors(a: &TensorArchive) -> FuzzResult {
    for e in a.entries().iter().take(MAX_TENSORS_READ) {
        let t = a.read_f32(&e.name)?;
        assert_eq!(t.shape, e.shape, "read_f32 returned another shape than the header declared");
        assert_eq!(t.data.len() as u64, e.numel(), "read_f32 returned another element count than the shape");
        assert_eq!(a.read_raw(&e.name)?.len() as u64, e.len);
    }
    Ok(())
}

/// safetensors: the streaming header parser, then every tensor, then format detection (which
/// looks at names and shapes only).
pub fn safetensors(data: &[u8]) -> FuzzResult {
    let src: Arc<dyn super::source::ByteSource> = Arc::new(MemorySource::new("fuzz.safetensors", data.to_vec()));
    let a = super::safetensors::read_safetensors(src)?;
    let _ = a.total_bytes();
    let _ = a.dtype_counts();
    let _ = super::detect::classify_archive(&a);
    read_tensors(&a)
}

/// `.ckpt` / `.pt` / `.bin`: zip central directory, the allow-list unpickler, storage lookup,
/// every tensor.
pub fn ckpt(data: &[u8]) -> FuzzResult {
    let src: Arc<dyn super::source::ByteSource> = Arc::new(MemorySource::new("fuzz.ckpt", data.to_vec()));
    let a = super::ckpt::read_torch_zip(src)?;
    let _ = super::detect::classify_archive(&a);
    read_tensors(&a)
}

/// The unpickler alone on raw bytes (most of the `.ckpt` attack surface, without the zip
/// wrapper the fuzzer would otherwise have to discover first).
pub fn pickle(data: &[u8]) -> FuzzResult {
    super::ckpt::unpickle_state_dict("fuzz.pkl", data)?;
    Ok(())
}

/// A small SD1.5-named base for LoRA resolution: one linear and one conv per component, so
/// key mapping, routing, shape checks and the host-side merge all run.
fn lora_base(target: LoraTarget) -> MapSource {
    let t = |shape: &[usize]| HostTensor::new(shape.to_vec(), vec![0.5; shape.iter().product()]);
    let names: &[(&str, &[usize])] = match target {
        LoraTarget::Unet => &[
            ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight", &[4, 4]),
            ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", &[4, 8]),
            ("down_blocks.0.attentions.0.proj_in.weight", &[4, 4, 1, 1]),
            ("down_blocks.0.resnets.0.conv1.weight", &[4, 4, 3, 3]),
            ("mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", &[8, 4]),
            ("up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0.weight", &[4, 4]),
        ],
        LoraTarget::TextEncoder => &[
            ("text_model.encoder.layers.0.self_attn.q_proj.weight", &[4, 4]),
            ("text_model.encoder.layers.0.mlp.fc1.weight", &[8, 4]),
        ],
        LoraTarget::Motion => &[
            ("down_blocks.0.motion_modules.0.transformer_blocks.0.attention_blocks.0.to_q.weight", &[4, 4]),
            ("down_blocks.0.motion_modules.0.proj_in.weight", &[4, 4]),
        ],
    };
    let tensors: HashMap<String, HostTensor> = names.iter().map(|(n, s)| (n.to_string(), t(s))).collect();
    MapSource { origin: format!("fuzz base ({})", target.name()), tensors }
}

/// LoRA: parse the file (safetensors or `.ckpt`), map its keys for every component, and merge
/// the deltas that fit into a small base.
pub fn lora(data: &[u8]) -> FuzzResult {
    let a = archive("fuzz_lora.safetensors", data)?;
    let l = Lora::from_archive(Arc::new(a))?;
    let _ = l.targets();
    let _ = l.foreign_modules();
    for m in l.modules() {
        let _ = (m.rank(), m.scale());
    }
    let loras = [(l, 0.75f32)];
    for target in LoraTarget::ALL {
        let base = lora_base(target);
        let Ok(deltas) = LoraDeltas::resolve(&base, &loras, target) else { continue };
        let _ = deltas.describe();
        for name in base.names() {
            let mut t = base.tensor(&name)?;
            let shape = t.shape.clone();
            deltas.merge_into(&name, &mut t)?;
            assert_eq!(t.shape, shape, "a LoRA merge changed the shape of `{name}`");
        }
    }
    Ok(())
}

/// Quantized pipeline files: metadata (scheme, the five configs, motion info) and the
/// per-component views over the packed tensors.
pub fn quantized(data: &[u8]) -> FuzzResult {
    let a = Arc::new(archive("fuzz_quantized.safetensors", data)?);
    let _ = crate::pipeline::quantized::is_quantized(&a);
    let Some(q) = crate::pipeline::quantized::open_archive(a)? else { return Ok(()) };
    let _ = q.scheduler.validate();
    for c in [&q.unet, &q.vae, &q.text_encoder, &q.motion.source] {
        for name in c.names().iter().take(MAX_TENSORS_READ / 4) {
            c.raw(name)?;
        }
    }
    Ok(())
}

/// The CLIP tokenizer on arbitrary text (invalid UTF-8 replaced, as the page and CLI receive
/// only `str`). With a leading 0xff byte the rest is parsed as a BPE merges file instead.
pub fn tokenizer(data: &[u8]) -> FuzzResult {
    if let Some((&0xff, rest)) = data.split_first() {
        ClipTokenizer::from_bpe_bytes(rest)?;
        return Ok(());
    }
    let tok = ClipTokenizer::new()?;
    let text = String::from_utf8_lossy(data);
    let ids = tok.encode_padded(&text, MAX_LEN);
    assert_eq!(ids.len(), MAX_LEN);
    assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()), "token id out of the vocabulary");
    let n = tok.count_tokens(&text);
    assert_eq!(tok.encode(&text).len(), n);
    Ok(())
}

/// Config files: the first byte picks the parser (UNet, motion adapter, VAE, CLIP, scheduler),
/// the rest is the JSON text. A scheduler config is also validated and turned into each sampler.
pub fn config(data: &[u8]) -> FuzzResult {
    let Some((&which, rest)) = data.split_first() else { return Ok(()) };
    let text = String::from_utf8_lossy(rest);
    let _ = super::config::config_class_name(&text);
    match which % 5 {
        0 => drop(super::config::parse_unet_config("fuzz/config.json", &text)?),
        1 => drop(super::config::parse_motion_config("fuzz/config.json", &text)?),
        2 => drop(super::config::parse_vae_config("fuzz/config.json", &text)?),
        3 => drop(super::config::parse_clip_config("fuzz/config.json", &text)?),
        _ => {
            let c = SchedulerConfig::from_json(&text)?;
            c.validate()?;
            let steps = usize::from(which / 5 % 8) + 1;
            for kind in [SchedulerKind::Ddim, SchedulerKind::Euler, SchedulerKind::Lcm] {
                let _ = make_sampler(&recipe_config(&c, kind), kind, steps);
            }
        }
    }
    Ok(())
}

/// Every target by name (the regression test and `scripts/fuzz` iterate over this).
pub const TARGETS: [(&str, FuzzFn); 7] = [
    ("safetensors", safetensors),
    ("ckpt", ckpt),
    ("pickle", pickle),
    ("lora", lora),
    ("quantized", quantized),
    ("tokenizer", tokenizer),
    ("config", config),
];
