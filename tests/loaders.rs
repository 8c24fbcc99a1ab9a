//! Weight loading end to end: synthetic SD1.5-topology checkpoints (tiny widths) written in
//! every supported format — LDM single file (safetensors / `.ckpt`), diffusers folders,
//! original and diffusers motion modules — must give identical tensors under diffusers
//! names; broken and unsupported files must give typed errors naming the file and key.
//! Tests against the diffusers-generated fixtures in `tests/fixtures/tiny/` run when present.

#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::needless_range_loop)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use animatediff_wgpu::load::archive::{ArchiveFormat, FileDType, TensorArchive};
use animatediff_wgpu::load::ckpt::fixture;
use animatediff_wgpu::load::component::{
    open_diffusers_dir, open_motion, open_single_file, open_single_file_with, OpenOptions,
};
use animatediff_wgpu::load::config::{infer_clip_config, infer_unet_config, infer_vae_config};
use animatediff_wgpu::load::detect::{classify_archive, detect_path, ArchiveKind, ComponentKind, Detected, MotionVersion};
use animatediff_wgpu::load::source::{ByteSource, FileSource, MemorySource};
use animatediff_wgpu::load::{LoadError, WeightSource};
use animatediff_wgpu::model::config::{ClipConfig, MotionConfig, UNetConfig, VaeConfig};
use common::tiny_unet_config;

// ---------------------------------------------------------------------------------------------
// A synthetic model: (file name, diffusers name, file shape, diffusers shape) for every tensor.

#[derive(Clone)]
struct T {
    file: String,
    diff: Option<String>,
    shape: Vec<usize>,
    diff_shape: Vec<usize>,
    dtype: FileDType,
}

#[derive(Default, Clone)]
struct Model {
    ts: Vec<T>,
}

impl Model {
    fn add(&mut self, file: String, diff: impl Into<Option<String>>, shape: &[usize]) {
        self.ts.push(T { file, diff: diff.into(), shape: shape.to_vec(), diff_shape: shape.to_vec(), dtype: FileDType::F32 });
    }
    fn add_squeezed(&mut self, file: String, diff: String, shape: &[usize]) {
        self.ts.push(T { file, diff: Some(diff), shape: shape.to_vec(), diff_shape: shape[..2].to_vec(), dtype: FileDType::F32 });
    }
}

/// Deterministic values, exactly representable in f16 and bf16 (k/64, |k| ≤ 127).
fn values(name: &str, n: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    (0..n)
        .map(|i| {
            let x = h.wrapping_add((i as u64).wrapping_mul(0x9e3779b97f4a7c15));
            let x = (x ^ (x >> 29)).wrapping_mul(0xbf58476d1ce4e5b9);
            ((x >> 40) % 255) as f32 / 64.0 - 127.0 / 64.0
        })
        .collect()
}

fn encode(dtype: FileDType, v: &[f32]) -> Vec<u8> {
    match dtype {
        FileDType::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        FileDType::F16 => v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
        FileDType::BF16 => v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect(),
        FileDType::I64 => v.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect(),
        d => panic!("{d}"),
    }
}

/// Values are keyed by the diffusers name (so every format holds the same numbers).
fn tensor_bytes(t: &T, dtype: FileDType) -> Vec<u8> {
    let key = t.diff.clone().unwrap_or_else(|| t.file.clone());
    let n: usize = t.shape.iter().product();
    encode(dtype, &values(&key, n))
}

fn st_dtype(d: FileDType) -> safetensors::Dtype {
    match d {
        FileDType::F32 => safetensors::Dtype::F32,
        FileDType::F16 => safetensors::Dtype::F16,
        FileDType::BF16 => safetensors::Dtype::BF16,
        FileDType::I64 => safetensors::Dtype::I64,
        d => panic!("{d}"),
    }
}

/// Serialize with the reference `safetensors` crate; names through `name`.
fn write_safetensors(path: &Path, m: &Model, dtype: FileDType, name: impl Fn(&T) -> Option<String>) {
    let data: Vec<(String, FileDType, Vec<usize>, Vec<u8>)> = m
        .ts
        .iter()
        .filter_map(|t| {
            let d = if t.dtype == FileDType::I64 { FileDType::I64 } else { dtype };
            let shape = if name(t).as_deref() == Some(t.file.as_str()) { t.shape.clone() } else { t.diff_shape.clone() };
            name(t).map(|n| (n, d, shape, tensor_bytes(t, d)))
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(st_dtype(*d), s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::tensor::serialize(views, None).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn write_ckpt(path: &Path, m: &Model, dtype: FileDType, wrap: bool, zip64: bool) {
    let data: Vec<(String, FileDType, Vec<u64>, Vec<u8>)> = m
        .ts
        .iter()
        .map(|t| {
            let d = if t.dtype == FileDType::I64 { FileDType::I64 } else { dtype };
            (t.file.clone(), d, t.shape.iter().map(|&x| x as u64).collect(), tensor_bytes(t, d))
        })
        .collect();
    let refs: Vec<(&str, FileDType, &[u64], Vec<u8>)> = data.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.clone())).collect();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, fixture::torch_save(&refs, wrap, zip64)).unwrap();
}

struct Tiny {
    boc: Vec<usize>,
    ctx: usize,
    in_ch: usize,
}

const TINY: Tiny = Tiny { boc: Vec::new(), ctx: 16, in_ch: 4 };

fn tiny() -> Tiny {
    Tiny { boc: vec![8, 16, 32, 32], ..TINY }
}

fn ldm_resnet(m: &mut Model, l: &str, d: &str, cin: usize, cout: usize, temb: Option<usize>) {
    let pairs: Vec<(&str, &str, Vec<usize>)> = if let Some(temb) = temb {
        vec![
            ("in_layers.0.weight", "norm1.weight", vec![cin]),
            ("in_layers.0.bias", "norm1.bias", vec![cin]),
            ("in_layers.2.weight", "conv1.weight", vec![cout, cin, 3, 3]),
            ("in_layers.2.bias", "conv1.bias", vec![cout]),
            ("emb_layers.1.weight", "time_emb_proj.weight", vec![cout, temb]),
            ("emb_layers.1.bias", "time_emb_proj.bias", vec![cout]),
            ("out_layers.0.weight", "norm2.weight", vec![cout]),
            ("out_layers.0.bias", "norm2.bias", vec![cout]),
            ("out_layers.3.weight", "conv2.weight", vec![cout, cout, 3, 3]),
            ("out_layers.3.bias", "conv2.bias", vec![cout]),
            ("skip_connection.weight", "conv_shortcut.weight", vec![cout, cin, 1, 1]),
            ("skip_connection.bias", "conv_shortcut.bias", vec![cout]),
        ]
    } else {
        vec![
            ("norm1.weight", "norm1.weight", vec![cin]),
            ("norm1.bias", "norm1.bias", vec![cin]),
            ("conv1.weight", "conv1.weight", vec![cout, cin, 3, 3]),
            ("conv1.bias", "conv1.bias", vec![cout]),
            ("norm2.weight", "norm2.weight", vec![cout]),
            ("norm2.bias", "norm2.bias", vec![cout]),
            ("conv2.weight", "conv2.weight", vec![cout, cout, 3, 3]),
            ("conv2.bias", "conv2.bias", vec![cout]),
            ("nin_shortcut.weight", "conv_shortcut.weight", vec![cout, cin, 1, 1]),
            ("nin_shortcut.bias", "conv_shortcut.bias", vec![cout]),
        ]
    };
    for (lk, dk, s) in pairs {
        if (lk.starts_with("skip") || lk.starts_with("nin")) && cin == cout {
            continue;
        }
        m.add(format!("{l}{lk}"), format!("{d}{dk}"), &s);
    }
}

fn transformer(m: &mut Model, l: &str, d: &str, c: usize, ctx: usize) {
    let mut add = |k: &str, s: &[usize]| m.add(format!("{l}{k}"), format!("{d}{k}"), s);
    add("norm.weight", &[c]);
    add("norm.bias", &[c]);
    add("proj_in.weight", &[c, c, 1, 1]);
    add("proj_in.bias", &[c]);
    let tb = "transformer_blocks.0.";
    for a in ["attn1", "attn2"] {
        let kv = if a == "attn2" { ctx } else { c };
        add(&format!("{tb}{a}.to_q.weight"), &[c, c]);
        add(&format!("{tb}{a}.to_k.weight"), &[c, kv]);
        add(&format!("{tb}{a}.to_v.weight"), &[c, kv]);
        add(&format!("{tb}{a}.to_out.0.weight"), &[c, c]);
        add(&format!("{tb}{a}.to_out.0.bias"), &[c]);
    }
    add(&format!("{tb}ff.net.0.proj.weight"), &[8 * c, c]);
    add(&format!("{tb}ff.net.0.proj.bias"), &[8 * c]);
    add(&format!("{tb}ff.net.2.weight"), &[c, 4 * c]);
    add(&format!("{tb}ff.net.2.bias"), &[c]);
    for n in ["norm1", "norm2", "norm3"] {
        add(&format!("{tb}{n}.weight"), &[c]);
        add(&format!("{tb}{n}.bias"), &[c]);
    }
    add("proj_out.weight", &[c, c, 1, 1]);
    add("proj_out.bias", &[c]);
}

/// SD1.5 UNet topology (3 cross-attention levels + 1 plain, 2 layers per block).
fn unet(t: &Tiny, m: &mut Model, p: &str) {
    let boc = &t.boc;
    let n = boc.len();
    let temb = boc[0] * 4;
    let attn: Vec<bool> = (0..n).map(|i| i + 1 < n).collect();
    m.add(format!("{p}input_blocks.0.0.weight"), "conv_in.weight".to_string(), &[boc[0], t.in_ch, 3, 3]);
    m.add(format!("{p}input_blocks.0.0.bias"), "conv_in.bias".to_string(), &[boc[0]]);
    m.add(format!("{p}time_embed.0.weight"), "time_embedding.linear_1.weight".to_string(), &[temb, boc[0]]);
    m.add(format!("{p}time_embed.0.bias"), "time_embedding.linear_1.bias".to_string(), &[temb]);
    m.add(format!("{p}time_embed.2.weight"), "time_embedding.linear_2.weight".to_string(), &[temb, temb]);
    m.add(format!("{p}time_embed.2.bias"), "time_embedding.linear_2.bias".to_string(), &[temb]);
    let mut prev = boc[0];
    for b in 0..n {
        let c = boc[b];
        for j in 0..2 {
            let i = 1 + b * 3 + j;
            let cin = if j == 0 { prev } else { c };
            ldm_resnet(m, &format!("{p}input_blocks.{i}.0."), &format!("down_blocks.{b}.resnets.{j}."), cin, c, Some(temb));
            if attn[b] {
                transformer(m, &format!("{p}input_blocks.{i}.1."), &format!("down_blocks.{b}.attentions.{j}."), c, t.ctx);
            }
        }
        if b + 1 < n {
            let i = 1 + b * 3 + 2;
            m.add(format!("{p}input_blocks.{i}.0.op.weight"), format!("down_blocks.{b}.downsamplers.0.conv.weight"), &[c, c, 3, 3]);
            m.add(format!("{p}input_blocks.{i}.0.op.bias"), format!("down_blocks.{b}.downsamplers.0.conv.bias"), &[c]);
        }
        prev = c;
    }
    let c = boc[n - 1];
    ldm_resnet(m, &format!("{p}middle_block.0."), "mid_block.resnets.0.", c, c, Some(temb));
    transformer(m, &format!("{p}middle_block.1."), "mid_block.attentions.0.", c, t.ctx);
    ldm_resnet(m, &format!("{p}middle_block.2."), "mid_block.resnets.1.", c, c, Some(temb));
    let rev: Vec<usize> = boc.iter().rev().copied().collect();
    let mut prev_out = boc[n - 1];
    for k in 0..n {
        let out = rev[k];
        let input = rev[(k + 1).min(n - 1)];
        let up_attn = k > 0;
        for j in 0..3 {
            let o = 3 * k + j;
            let skip = if j == 2 { input } else { out };
            let rin = if j == 0 { prev_out } else { out };
            ldm_resnet(m, &format!("{p}output_blocks.{o}.0."), &format!("up_blocks.{k}.resnets.{j}."), rin + skip, out, Some(temb));
            if up_attn {
                transformer(m, &format!("{p}output_blocks.{o}.1."), &format!("up_blocks.{k}.attentions.{j}."), out, t.ctx);
            }
        }
        if k + 1 < n {
            let o = 3 * k + 2;
            let s = if up_attn { 2 } else { 1 };
            m.add(format!("{p}output_blocks.{o}.{s}.conv.weight"), format!("up_blocks.{k}.upsamplers.0.conv.weight"), &[out, out, 3, 3]);
            m.add(format!("{p}output_blocks.{o}.{s}.conv.bias"), format!("up_blocks.{k}.upsamplers.0.conv.bias"), &[out]);
        }
        prev_out = out;
    }
    m.add(format!("{p}out.0.weight"), "conv_norm_out.weight".to_string(), &[boc[0]]);
    m.add(format!("{p}out.0.bias"), "conv_norm_out.bias".to_string(), &[boc[0]]);
    m.add(format!("{p}out.2.weight"), "conv_out.weight".to_string(), &[4, boc[0], 3, 3]);
    m.add(format!("{p}out.2.bias"), "conv_out.bias".to_string(), &[4]);
}

fn vae_mid(m: &mut Model, p: &str, part: &str, c: usize) {
    ldm_resnet(m, &format!("{p}{part}.mid.block_1."), &format!("{part}.mid_block.resnets.0."), c, c, None);
    ldm_resnet(m, &format!("{p}{part}.mid.block_2."), &format!("{part}.mid_block.resnets.1."), c, c, None);
    let a = format!("{part}.mid_block.attentions.0.");
    m.add(format!("{p}{part}.mid.attn_1.norm.weight"), format!("{a}group_norm.weight"), &[c]);
    m.add(format!("{p}{part}.mid.attn_1.norm.bias"), format!("{a}group_norm.bias"), &[c]);
    for (l, d) in [("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")] {
        m.add_squeezed(format!("{p}{part}.mid.attn_1.{l}.weight"), format!("{a}{d}.weight"), &[c, c, 1, 1]);
        m.add(format!("{p}{part}.mid.attn_1.{l}.bias"), format!("{a}{d}.bias"), &[c]);
    }
}

fn vae(t: &Tiny, m: &mut Model, p: &str) {
    let boc = &t.boc;
    let n = boc.len();
    m.add(format!("{p}encoder.conv_in.weight"), "encoder.conv_in.weight".to_string(), &[boc[0], 3, 3, 3]);
    m.add(format!("{p}encoder.conv_in.bias"), "encoder.conv_in.bias".to_string(), &[boc[0]]);
    let mut prev = boc[0];
    for i in 0..n {
        for j in 0..2 {
            let cin = if j == 0 { prev } else { boc[i] };
            ldm_resnet(m, &format!("{p}encoder.down.{i}.block.{j}."), &format!("encoder.down_blocks.{i}.resnets.{j}."), cin, boc[i], None);
        }
        if i + 1 < n {
            m.add(format!("{p}encoder.down.{i}.downsample.conv.weight"), format!("encoder.down_blocks.{i}.downsamplers.0.conv.weight"), &[boc[i], boc[i], 3, 3]);
            m.add(format!("{p}encoder.down.{i}.downsample.conv.bias"), format!("encoder.down_blocks.{i}.downsamplers.0.conv.bias"), &[boc[i]]);
        }
        prev = boc[i];
    }
    let c = boc[n - 1];
    vae_mid(m, p, "encoder", c);
    m.add(format!("{p}encoder.norm_out.weight"), "encoder.conv_norm_out.weight".to_string(), &[c]);
    m.add(format!("{p}encoder.norm_out.bias"), "encoder.conv_norm_out.bias".to_string(), &[c]);
    m.add(format!("{p}encoder.conv_out.weight"), "encoder.conv_out.weight".to_string(), &[8, c, 3, 3]);
    m.add(format!("{p}encoder.conv_out.bias"), "encoder.conv_out.bias".to_string(), &[8]);
    m.add(format!("{p}quant_conv.weight"), "quant_conv.weight".to_string(), &[8, 8, 1, 1]);
    m.add(format!("{p}quant_conv.bias"), "quant_conv.bias".to_string(), &[8]);
    m.add(format!("{p}post_quant_conv.weight"), "post_quant_conv.weight".to_string(), &[4, 4, 1, 1]);
    m.add(format!("{p}post_quant_conv.bias"), "post_quant_conv.bias".to_string(), &[4]);
    m.add(format!("{p}decoder.conv_in.weight"), "decoder.conv_in.weight".to_string(), &[c, 4, 3, 3]);
    m.add(format!("{p}decoder.conv_in.bias"), "decoder.conv_in.bias".to_string(), &[c]);
    vae_mid(m, p, "decoder", c);
    let rev: Vec<usize> = boc.iter().rev().copied().collect();
    let mut prev = rev[0];
    for i in 0..n {
        let l = n - 1 - i;
        for j in 0..3 {
            let cin = if j == 0 { prev } else { rev[i] };
            ldm_resnet(m, &format!("{p}decoder.up.{l}.block.{j}."), &format!("decoder.up_blocks.{i}.resnets.{j}."), cin, rev[i], None);
        }
        if i + 1 < n {
            m.add(format!("{p}decoder.up.{l}.upsample.conv.weight"), format!("decoder.up_blocks.{i}.upsamplers.0.conv.weight"), &[rev[i], rev[i], 3, 3]);
            m.add(format!("{p}decoder.up.{l}.upsample.conv.bias"), format!("decoder.up_blocks.{i}.upsamplers.0.conv.bias"), &[rev[i]]);
        }
        prev = rev[i];
    }
    m.add(format!("{p}decoder.norm_out.weight"), "decoder.conv_norm_out.weight".to_string(), &[boc[0]]);
    m.add(format!("{p}decoder.norm_out.bias"), "decoder.conv_norm_out.bias".to_string(), &[boc[0]]);
    m.add(format!("{p}decoder.conv_out.weight"), "decoder.conv_out.weight".to_string(), &[3, boc[0], 3, 3]);
    m.add(format!("{p}decoder.conv_out.bias"), "decoder.conv_out.bias".to_string(), &[3]);
}

const VOCAB: usize = 100;

fn clip(h: usize, m: &mut Model, p: &str) {
    let mut add = |k: &str, s: &[usize]| m.add(format!("{p}{k}"), format!("text_model.{k}"), s);
    add("embeddings.token_embedding.weight", &[VOCAB, h]);
    add("embeddings.position_embedding.weight", &[77, h]);
    for l in 0..2 {
        for pr in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            add(&format!("encoder.layers.{l}.self_attn.{pr}.weight"), &[h, h]);
            add(&format!("encoder.layers.{l}.self_attn.{pr}.bias"), &[h]);
        }
        for ln in ["layer_norm1", "layer_norm2"] {
            add(&format!("encoder.layers.{l}.{ln}.weight"), &[h]);
            add(&format!("encoder.layers.{l}.{ln}.bias"), &[h]);
        }
        add(&format!("encoder.layers.{l}.mlp.fc1.weight"), &[37, h]);
        add(&format!("encoder.layers.{l}.mlp.fc1.bias"), &[37]);
        add(&format!("encoder.layers.{l}.mlp.fc2.weight"), &[h, 37]);
        add(&format!("encoder.layers.{l}.mlp.fc2.bias"), &[h]);
    }
    add("final_layer_norm.weight", &[h]);
    add("final_layer_norm.bias", &[h]);
    m.ts.push(T {
        file: format!("{p}embeddings.position_ids"),
        diff: None,
        shape: vec![1, 77],
        diff_shape: vec![1, 77],
        dtype: FileDType::I64,
    });
}

/// A complete LDM single file: UNet + VAE + CLIP + the DDPM buffers.
fn ldm(t: &Tiny) -> Model {
    let mut m = Model::default();
    unet(t, &mut m, "model.diffusion_model.");
    vae(t, &mut m, "first_stage_model.");
    clip(t.ctx, &mut m, "cond_stage_model.transformer.text_model.");
    for b in ["betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "log_one_minus_alphas_cumprod"] {
        m.add(b.to_string(), None, &[1000]);
    }
    m
}

/// Motion modules in the original naming (`diff` = diffusers naming).
fn motion(boc: &[usize], mid: bool, pe: Option<usize>) -> Model {
    let mut m = Model::default();
    let module = |m: &mut Model, b: &str, c: usize| {
        let o = format!("{b}.temporal_transformer.");
        let d = format!("{b}.");
        let mut add = |ok: &str, dk: &str, s: &[usize]| m.add(format!("{o}{ok}"), format!("{d}{dk}"), s);
        add("norm.weight", "norm.weight", &[c]);
        add("norm.bias", "norm.bias", &[c]);
        add("proj_in.weight", "proj_in.weight", &[c, c]);
        add("proj_in.bias", "proj_in.bias", &[c]);
        let tb = "transformer_blocks.0.";
        for (a, da) in [("attention_blocks.0", "attn1"), ("attention_blocks.1", "attn2")] {
            for w in ["to_q", "to_k", "to_v"] {
                add(&format!("{tb}{a}.{w}.weight"), &format!("{tb}{da}.{w}.weight"), &[c, c]);
            }
            add(&format!("{tb}{a}.to_out.0.weight"), &format!("{tb}{da}.to_out.0.weight"), &[c, c]);
            add(&format!("{tb}{a}.to_out.0.bias"), &format!("{tb}{da}.to_out.0.bias"), &[c]);
        }
        for (n, dn) in [("norms.0", "norm1"), ("norms.1", "norm2"), ("ff_norm", "norm3")] {
            add(&format!("{tb}{n}.weight"), &format!("{tb}{dn}.weight"), &[c]);
            add(&format!("{tb}{n}.bias"), &format!("{tb}{dn}.bias"), &[c]);
        }
        add(&format!("{tb}ff.net.0.proj.weight"), &format!("{tb}ff.net.0.proj.weight"), &[8 * c, c]);
        add(&format!("{tb}ff.net.0.proj.bias"), &format!("{tb}ff.net.0.proj.bias"), &[8 * c]);
        add(&format!("{tb}ff.net.2.weight"), &format!("{tb}ff.net.2.weight"), &[c, 4 * c]);
        add(&format!("{tb}ff.net.2.bias"), &format!("{tb}ff.net.2.bias"), &[c]);
        add("proj_out.weight", "proj_out.weight", &[c, c]);
        add("proj_out.bias", "proj_out.bias", &[c]);
        if let Some(l) = pe {
            for a in ["attention_blocks.0", "attention_blocks.1"] {
                m.add(format!("{o}{tb}{a}.pos_encoder.pe"), None, &[1, l, c]);
            }
        }
    };
    for (b, &c) in boc.iter().enumerate() {
        for j in 0..2 {
            module(&mut m, &format!("down_blocks.{b}.motion_modules.{j}"), c);
        }
    }
    if mid {
        module(&mut m, "mid_block.motion_modules.0", boc[boc.len() - 1]);
    }
    for (k, &c) in boc.iter().rev().enumerate() {
        for j in 0..3 {
            module(&mut m, &format!("up_blocks.{k}.motion_modules.{j}"), c);
        }
    }
    m
}

/// The diffusers MotionAdapter naming of the same model (with one `pos_embed.pe` per module).
fn write_motion_adapter_dir(dir: &Path, m: &Model, boc: &[usize], pe: usize) {
    let mut d = Model::default();
    for t in &m.ts {
        if let Some(n) = &t.diff {
            d.add(n.clone(), n.clone(), &t.shape);
        }
    }
    let modules: BTreeSet<String> =
        d.ts.iter().filter_map(|t| t.file.split_once(".transformer_blocks.").map(|(a, _)| a.to_string())).collect();
    for md in modules {
        let c = d.ts.iter().find(|t| t.file == format!("{md}.norm.weight")).unwrap().shape[0];
        d.add(format!("{md}.transformer_blocks.0.pos_embed.pe"), None, &[1, pe, c]);
    }
    write_safetensors(&dir.join("diffusion_pytorch_model.safetensors"), &d, FileDType::F32, |t| Some(t.file.clone()));
    let cfg = serde_json::json!({
        "_class_name": "MotionAdapter",
        "block_out_channels": boc,
        "motion_layers_per_block": 2,
        "motion_mid_block_layers_per_block": 1,
        "motion_transformer_layers_per_block": 1,
        "motion_num_attention_heads": 2,
        "motion_norm_num_groups": 4,
        "motion_max_seq_length": pe,
        "use_motion_mid_block": true,
        "conv_in_channels": null
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("adload-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn unet_config_json(t: &Tiny) -> serde_json::Value {
    serde_json::json!({
        "_class_name": "UNet2DConditionModel",
        "in_channels": 4, "out_channels": 4,
        "block_out_channels": t.boc, "layers_per_block": 2, "norm_num_groups": 4, "norm_eps": 1e-5,
        "cross_attention_dim": t.ctx, "attention_head_dim": 2, "num_attention_heads": null,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "flip_sin_to_cos": true, "freq_shift": 0, "use_linear_projection": false, "sample_size": 16
    })
}

/// Write a diffusers pipeline folder (f32) of the model: `unet/`, `vae/`, `text_encoder/`
/// (transformers ≥ 5.6 layout: no `text_model.` prefix), `scheduler/`.
fn write_diffusers_dir(dir: &Path, m: &Model, t: &Tiny) {
    let pick = |pfx: &'static str| move |x: &T| x.diff.clone().filter(|_| x.file.starts_with(pfx));
    write_safetensors(&dir.join("unet/diffusion_pytorch_model.safetensors"), m, FileDType::F32, pick("model.diffusion_model."));
    std::fs::write(dir.join("unet/config.json"), unet_config_json(t).to_string()).unwrap();
    // The VAE as an fp16 variant only (exercises the variant fallback).
    write_safetensors(&dir.join("vae/diffusion_pytorch_model.fp16.safetensors"), m, FileDType::F16, pick("first_stage_model."));
    let vcfg = serde_json::json!({"_class_name": "AutoencoderKL", "block_out_channels": t.boc, "layers_per_block": 2,
        "latent_channels": 4, "norm_num_groups": 4, "scaling_factor": 0.18215});
    std::fs::write(dir.join("vae/config.json"), vcfg.to_string()).unwrap();
    write_safetensors(&dir.join("text_encoder/model.safetensors"), m, FileDType::F32, |x| {
        x.diff.as_ref().filter(|_| x.file.starts_with("cond_stage_model.")).map(|d| d.trim_start_matches("text_model.").to_string())
    });
    let ccfg = serde_json::json!({"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_size": t.ctx,
        "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": VOCAB,
        "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5});
    std::fs::write(dir.join("text_encoder/config.json"), ccfg.to_string()).unwrap();
    std::fs::create_dir_all(dir.join("scheduler")).unwrap();
    std::fs::write(dir.join("scheduler/scheduler_config.json"), r#"{"_class_name":"DDIMScheduler","beta_schedule":"linear"}"#).unwrap();
    std::fs::write(dir.join("model_index.json"), r#"{"_class_name":"StableDiffusionPipeline"}"#).unwrap();
}

/// Every expected diffusers name has the expected shape and values; no extra names.
fn check_component(src: &dyn WeightSource, m: &Model, file_prefix: &str) {
    let expected: BTreeMap<&str, &T> =
        m.ts.iter().filter(|t| t.file.starts_with(file_prefix)).filter_map(|t| t.diff.as_deref().map(|d| (d, t))).collect();
    let names: BTreeSet<String> = src.names().into_iter().collect();
    let want: BTreeSet<String> = expected.keys().map(|s| s.to_string()).collect();
    assert_eq!(names.difference(&want).collect::<Vec<_>>(), Vec::<&String>::new(), "extra names in {}", src.origin());
    assert_eq!(want.difference(&names).collect::<Vec<_>>(), Vec::<&String>::new(), "missing names in {}", src.origin());
    for (d, t) in expected {
        let h = src.tensor(d).unwrap();
        assert_eq!(h.shape, t.diff_shape, "{d}");
        assert_eq!(src.shape(d).unwrap(), t.diff_shape, "{d}");
        assert_eq!(h.data, values(d, h.data.len()), "{d}");
    }
}

fn assert_same(a: &dyn WeightSource, b: &dyn WeightSource) {
    assert_eq!(a.names(), b.names(), "{} vs {}", a.origin(), b.origin());
    for n in a.names() {
        assert_eq!(a.tensor(&n).unwrap(), b.tensor(&n).unwrap(), "{n}: {} vs {}", a.origin(), b.origin());
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn ldm_single_file_maps_every_tensor() {
    let t = tiny();
    let m = ldm(&t);
    let d = tmp("ldm");
    let st = d.join("m.safetensors");
    write_safetensors(&st, &m, FileDType::F16, |x| Some(x.file.clone()));
    let s = open_single_file(&st).unwrap();
    assert!(!s.ema_used);
    assert!(s.info.has_vae && s.info.has_text_encoder && !s.info.has_ema());
    assert_eq!(s.info.cross_attention_dim, 16);
    check_component(&s.unet, &m, "model.diffusion_model.");
    check_component(s.vae.as_ref().unwrap(), &m, "first_stage_model.");
    check_component(s.text_encoder.as_ref().unwrap(), &m, "cond_stage_model.");
    // VAE attention convs are served squeezed.
    assert_eq!(s.vae.as_ref().unwrap().shape("decoder.mid_block.attentions.0.to_q.weight"), Some(vec![32, 32]));
    assert_eq!(s.unet.dtype_counts().keys().copied().collect::<Vec<_>>(), vec![FileDType::F16]);

    // Inferred configs (with SD1.5 defaults for groups/heads) and with a base.
    let base = tiny_unet_config();
    assert_eq!(s.unet_config, UNetConfig { norm_num_groups: 32, attention_heads: vec![8; 4], sample_size: 64, ..base.clone() });
    assert_eq!(infer_unet_config(&s.unet, Some(&base)).unwrap(), base);
    let vae = s.vae_config.clone().unwrap();
    assert_eq!(vae, VaeConfig { block_out_channels: vec![8, 16, 32, 32], ..VaeConfig::sd15() });
    let clip = s.clip_config.clone().unwrap();
    assert_eq!((clip.hidden_size, clip.intermediate_size, clip.num_hidden_layers, clip.vocab_size), (16, 37, 2, VOCAB));

    // The same file as a torch.save .ckpt (wrapped in `state_dict`, zip64) gives the same tensors.
    let ck = d.join("m.ckpt");
    write_ckpt(&ck, &m, FileDType::F16, true, true);
    let c = open_single_file(&ck).unwrap();
    assert_same(&s.unet, &c.unet);
    assert_same(s.vae.as_ref().unwrap(), c.vae.as_ref().unwrap());
    assert_same(s.text_encoder.as_ref().unwrap(), c.text_encoder.as_ref().unwrap());

    // bf16 and f32 copies too.
    for dt in [FileDType::BF16, FileDType::F32] {
        let p = d.join(format!("m-{dt}.safetensors"));
        write_safetensors(&p, &m, dt, |x| Some(x.file.clone()));
        assert_same(&s.unet, &open_single_file(&p).unwrap().unet);
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn diffusers_dir_equals_single_file() {
    let t = tiny();
    let m = ldm(&t);
    let d = tmp("dir");
    write_safetensors(&d.join("single.safetensors"), &m, FileDType::F16, |x| Some(x.file.clone()));
    let pipe = d.join("pipe");
    write_diffusers_dir(&pipe, &m, &t);
    let s = open_single_file(d.join("single.safetensors")).unwrap();
    let p = open_diffusers_dir(&pipe).unwrap();
    assert_same(&s.unet, &p.unet);
    assert_same(s.vae.as_ref().unwrap(), &p.vae);
    assert_same(s.text_encoder.as_ref().unwrap(), &p.text_encoder);
    assert_eq!(p.unet_config, tiny_unet_config());
    assert_eq!(infer_unet_config(&s.unet, Some(&p.unet_config)).unwrap(), p.unet_config);
    assert_eq!(infer_vae_config(s.vae.as_ref().unwrap(), Some(&p.vae_config)).unwrap(), p.vae_config);
    assert_eq!(infer_clip_config(s.text_encoder.as_ref().unwrap(), Some(&p.clip_config)).unwrap(), p.clip_config);
    assert_eq!(p.clip_config, ClipConfig { hidden_size: 16, intermediate_size: 37, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: VOCAB, ..ClipConfig::sd15() });
    assert!(p.scheduler_config.unwrap().contains("DDIMScheduler"));
    assert!(p.motion.is_none());
    assert!(matches!(detect_path(&pipe).unwrap(), Detected::DiffusersPipeline { .. }));
    assert!(matches!(detect_path(&pipe.join("unet")).unwrap(), Detected::DiffusersComponent { kind: ComponentKind::Unet, .. }));
    assert!(matches!(detect_path(&pipe.join("text_encoder")).unwrap(), Detected::DiffusersComponent { kind: ComponentKind::TextEncoder, .. }));

    // A config that disagrees with the weights is a Config error naming the config file.
    let mut bad = unet_config_json(&t);
    bad["block_out_channels"] = serde_json::json!([8, 16, 32, 64]);
    std::fs::write(pipe.join("unet/config.json"), bad.to_string()).unwrap();
    let e = open_diffusers_dir(&pipe).unwrap_err();
    assert!(matches!(&e, LoadError::Config { file, .. } if file.ends_with("config.json")), "{e}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn motion_modules_in_every_format() {
    let boc = [8, 16, 32, 32];
    let m = motion(&boc, true, Some(32));
    let d = tmp("mm");
    let ck = d.join("mm.ckpt");
    write_ckpt(&ck, &m, FileDType::F16, false, false);
    let st = d.join("mm.safetensors");
    write_safetensors(&st, &m, FileDType::F32, |x| Some(x.file.clone()));
    let ad = d.join("adapter");
    std::fs::create_dir_all(&ad).unwrap();
    write_motion_adapter_dir(&ad, &m, &boc, 32);

    let a = open_motion(&ck).unwrap();
    let b = open_motion(&st).unwrap();
    let c = open_motion(&ad).unwrap();
    for x in [&a, &b, &c] {
        assert_eq!(x.version, MotionVersion::V2, "{}", x.source.origin());
        assert_eq!(x.source.len(), 21 * 26);
    }
    assert!(a.original_naming && !c.original_naming);
    check_component(&a.source, &m, "");
    assert_same(&a.source, &b.source);
    assert_same(&a.source, &c.source);
    let want = MotionConfig { block_out_channels: boc.to_vec(), motion_num_attention_heads: 8, motion_norm_num_groups: 32, ..MotionConfig::sd15_v2() };
    assert_eq!(a.config, want);
    assert_eq!(c.config, MotionConfig { motion_num_attention_heads: 2, motion_norm_num_groups: 4, ..want });
    match detect_path(&ck).unwrap() {
        Detected::File { format: ArchiveFormat::TorchZip, kind: ArchiveKind::MotionModule(i) } => {
            assert_eq!((i.version, i.pe_len, i.modules, i.levels), (MotionVersion::V2, Some(32), 21, 4));
        }
        other => panic!("{other:?}"),
    }

    // v1 / v3 / AnimateLCM by the §1.1 rules.
    for (mid, pe, v, len) in [
        (false, Some(24), MotionVersion::V1, 24),
        (false, Some(32), MotionVersion::V3, 32),
        (true, None, MotionVersion::AnimateLcm, 64),
    ] {
        let p = d.join(format!("{v}.safetensors"));
        write_safetensors(&p, &motion(&boc, mid, pe), FileDType::F16, |x| Some(x.file.clone()));
        let mm = open_motion(&p).unwrap();
        assert_eq!((mm.version, mm.config.motion_max_seq_length, mm.config.use_motion_mid_block), (v, len, mid));
        assert_eq!(mm.source.len(), if mid { 21 } else { 20 } * 26);
    }

    // SDXL motion modules (3 levels) are refused.
    let p = d.join("sdxl_mm.safetensors");
    write_safetensors(&p, &motion(&[8, 16, 32], false, Some(32)), FileDType::F16, |x| Some(x.file.clone()));
    let e = open_motion(&p).unwrap_err();
    assert!(matches!(&e, LoadError::Unsupported { message, .. } if message.contains("SDXL")), "{e}");
    // A motion module is not a single-file checkpoint, and vice versa.
    assert!(matches!(open_single_file(&st), Err(LoadError::Unsupported { .. })));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn ema_weights() {
    let t = tiny();
    let mut m = ldm(&t);
    let unet_keys: Vec<T> = m.ts.iter().filter(|x| x.file.starts_with("model.diffusion_model.")).cloned().collect();
    for u in unet_keys {
        let k = u.file.trim_start_matches("model.diffusion_model.").replace('.', "");
        // Different values: keyed by the EMA file name.
        m.ts.push(T { file: format!("model_ema.diffusion_model{k}"), diff: None, ..u });
    }
    m.add("model_ema.decay".into(), None, &[]);
    let d = tmp("ema");
    let p = d.join("ema.safetensors");
    write_safetensors(&p, &m, FileDType::F16, |x| Some(x.file.clone()));
    let s = open_single_file(&p).unwrap();
    assert!(s.info.has_ema() && !s.ema_used);
    check_component(&s.unet, &m, "model.diffusion_model.");
    let e = open_single_file_with(&p, &OpenOptions { use_ema: true, ..Default::default() }).unwrap();
    assert!(e.ema_used);
    let k = "model_ema.diffusion_modelinput_blocks00weight";
    let want = values(k, 8 * 4 * 9);
    assert_eq!(e.unet.tensor("conv_in.weight").unwrap().data, want);
    std::fs::remove_dir_all(&d).ok();
}

fn unsupported_message(m: &Model) -> String {
    let d = tmp("uns");
    let p = d.join(format!("x{}.safetensors", m.ts.len()));
    write_safetensors(&p, m, FileDType::F16, |x| Some(x.file.clone()));
    let e = open_single_file(&p).unwrap_err();
    std::fs::remove_dir_all(&d).ok();
    match e {
        LoadError::Unsupported { file, message } => {
            assert!(file.ends_with(".safetensors"));
            message
        }
        other => panic!("{other}"),
    }
}

#[test]
fn unsupported_models_are_named() {
    let t = tiny();
    // SDXL: conditioner embedders / label_emb.
    let mut m = ldm(&t);
    m.add("conditioner.embedders.0.transformer.text_model.final_layer_norm.weight".into(), None, &[16]);
    assert!(unsupported_message(&m).contains("SDXL"));
    let mut m = ldm(&t);
    m.add("model.diffusion_model.label_emb.0.0.weight".into(), None, &[64, 16]);
    let msg = unsupported_message(&m);
    assert!(msg.contains("SDXL") && msg.contains("label_emb"), "{msg}");
    // SDXL by its 2048 context; SD2 by 1024.
    let msg = unsupported_message(&ldm(&Tiny { ctx: 2048, ..tiny() }));
    assert!(msg.contains("SDXL") && msg.contains("attn2.to_k.weight"), "{msg}");
    let msg = unsupported_message(&ldm(&Tiny { ctx: 1024, ..tiny() }));
    assert!(msg.contains("2.x"), "{msg}");
    // Inpainting: 9 input channels.
    let msg = unsupported_message(&ldm(&Tiny { in_ch: 9, ..tiny() }));
    assert!(msg.contains("inpainting") && msg.contains("input_blocks.0.0.weight"), "{msg}");
    // Missing key.
    let mut m = ldm(&t);
    m.ts.retain(|x| x.file != "model.diffusion_model.out.2.weight");
    let msg = unsupported_message(&m);
    assert!(msg.contains("model.diffusion_model.out.2.weight"), "{msg}");
    // Unexpected UNet key.
    let mut m = ldm(&t);
    m.add("model.diffusion_model.input_blocks.1.7.weird".into(), None, &[3]);
    assert!(unsupported_message(&m).contains("input_blocks.1.7.weird"));
    // Unknown file.
    let mut m = Model::default();
    m.add("foo.bar".into(), None, &[3]);
    let msg = unsupported_message(&m);
    assert!(msg.contains("foo.bar"), "{msg}");
}

#[test]
fn missing_tensor_names_file_and_tensor() {
    let t = tiny();
    let m = ldm(&t);
    let d = tmp("miss");
    let p = d.join("m.safetensors");
    write_safetensors(&p, &m, FileDType::F16, |x| Some(x.file.clone()));
    let s = open_single_file(&p).unwrap();
    match s.unet.tensor("down_blocks.9.resnets.0.conv1.weight").unwrap_err() {
        LoadError::MissingTensor { file, tensor } => {
            assert!(file.ends_with("m.safetensors"));
            assert_eq!(tensor, "down_blocks.9.resnets.0.conv1.weight");
        }
        e => panic!("{e}"),
    }
    let e = animatediff_wgpu::load::expect_tensor(&s.unet, "conv_in.bias", &[9]).unwrap_err();
    assert!(matches!(e, LoadError::Shape { .. }), "{e}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn corrupt_and_truncated_files() {
    let t = tiny();
    let m = motion(&t.boc, true, Some(32));
    let d = tmp("corrupt");
    let st = d.join("mm.safetensors");
    write_safetensors(&st, &m, FileDType::F16, |x| Some(x.file.clone()));
    let ck = d.join("mm.ckpt");
    write_ckpt(&ck, &m, FileDType::F16, false, false);
    for p in [&st, &ck] {
        let full = std::fs::read(p).unwrap();
        for cut in [0, 5, 8, 100, full.len() / 2, full.len() - 1] {
            let q = d.join(format!("cut{cut}"));
            std::fs::write(&q, &full[..cut]).unwrap();
            let e = TensorArchive::open_path(&q).map(|_| ()).unwrap_err();
            assert!(matches!(e, LoadError::Corrupt { .. }), "{} cut at {cut}: {e}", p.display());
            assert!(e.to_string().contains(&q.display().to_string()), "{e}");
        }
    }
    // Random bytes.
    let q = d.join("noise.bin");
    std::fs::write(&q, values("noise", 4096).iter().map(|x| (x * 60.0) as i8 as u8).collect::<Vec<_>>()).unwrap();
    assert!(TensorArchive::open_path(&q).is_err());
    // Not found / a directory.
    assert!(matches!(TensorArchive::open_path(d.join("nope")), Err(LoadError::Io { .. })));
    assert!(matches!(open_motion(d.join("nope.ckpt")), Err(LoadError::Io { .. })));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn pickle_with_disallowed_global_is_refused() {
    // A .ckpt whose pickle would run `os.system("touch …")` under torch.load.
    let marker = std::env::temp_dir().join(format!("adload-pwned-{}", std::process::id()));
    let mut p = fixture::Pickle::new();
    p.global("os", "system");
    p.str(&format!("touch {}", marker.display()));
    p.op(0x85).op(b'R').op(b'.');
    let z = fixture::zip_stored(&[("archive/data.pkl", &p.out), ("archive/version", b"3\n")], false);
    let e = TensorArchive::open(Arc::new(MemorySource::new("evil.ckpt", z))).unwrap_err();
    assert!(matches!(&e, LoadError::Unsupported { file, message } if file == "evil.ckpt" && message.contains("os.system")), "{e}");
    assert!(!marker.exists());
}

#[test]
fn safetensors_with_offsets_beyond_4_gib() {
    // A sparse file: a 4.5 GiB U8 tensor (a hole) followed by a small f32 tensor, read with
    // positioned u64 reads. Needs a filesystem with sparse files; skipped if set_len fails.
    let d = tmp("big");
    let p = d.join("big.safetensors");
    let big: u64 = 4_500_000_000;
    let header = format!(
        r#"{{"big":{{"dtype":"U8","shape":[{big}],"data_offsets":[0,{big}]}},"small":{{"dtype":"F32","shape":[2],"data_offsets":[{big},{}]}}}}"#,
        big + 8
    );
    let mut head = (header.len() as u64).to_le_bytes().to_vec();
    head.extend(header.as_bytes());
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(&head).unwrap();
        if f.set_len(head.len() as u64 + big + 8).is_err() {
            eprintln!("skipping: no sparse files");
            return;
        }
        f.seek(SeekFrom::Start(head.len() as u64 + big)).unwrap();
        f.write_all(&1.5f32.to_le_bytes()).unwrap();
        f.write_all(&(-2.0f32).to_le_bytes()).unwrap();
    }
    let a = TensorArchive::open_path(&p).unwrap();
    assert_eq!(a.entry("big").unwrap().len, big);
    assert!(a.entry("small").unwrap().offset > u64::from(u32::MAX));
    assert_eq!(a.read_f32("small").unwrap().data, vec![1.5, -2.0]);
    let src = FileSource::open(&p).unwrap();
    assert_eq!(src.len(), head.len() as u64 + big + 8);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn classify_in_memory_archives() {
    // Works without the filesystem (the wasm path): a diffusers UNet file in memory.
    let t = tiny();
    let m = ldm(&t);
    let views: Vec<(String, Vec<usize>, Vec<u8>)> = m
        .ts
        .iter()
        .filter(|x| x.file.starts_with("model.diffusion_model."))
        .map(|x| (x.diff.clone().unwrap(), x.shape.clone(), tensor_bytes(x, FileDType::F16)))
        .collect();
    let bytes = safetensors::tensor::serialize(
        views.iter().map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b).unwrap())),
        None,
    )
    .unwrap();
    let a = TensorArchive::open(Arc::new(MemorySource::new("unet.safetensors", bytes))).unwrap();
    assert_eq!(classify_archive(&a).unwrap(), ArchiveKind::DiffusersUnet { motion_modules: false });
    assert_eq!(infer_unet_config(&a, Some(&tiny_unet_config())).unwrap(), tiny_unet_config());
}

// ---------------------------------------------------------------------------------------------
// The diffusers-generated fixtures (tests/fixtures/tiny), when present.

fn fixtures() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    d.join("diffusers/unet/config.json").is_file().then_some(d)
}

#[test]
fn fixture_single_file_equals_diffusers_dir() {
    let Some(d) = fixtures() else {
        eprintln!("skipping: tests/fixtures/tiny not generated");
        return;
    };
    let ldm = d.join("original/sd15_tiny_ldm_fp16.safetensors");
    if !ldm.is_file() {
        eprintln!("skipping: {} missing", ldm.display());
        return;
    }
    let s = open_single_file(&ldm).unwrap();
    let p = open_diffusers_dir(d.join("diffusers")).unwrap();
    assert_same(&s.unet, &p.unet);
    assert_same(s.vae.as_ref().unwrap(), &p.vae);
    assert_same(s.text_encoder.as_ref().unwrap(), &p.text_encoder);
    assert_eq!(infer_unet_config(&s.unet, Some(&p.unet_config)).unwrap(), p.unet_config);
    assert_eq!(infer_vae_config(s.vae.as_ref().unwrap(), Some(&p.vae_config)).unwrap(), p.vae_config);
    assert_eq!(infer_clip_config(s.text_encoder.as_ref().unwrap(), Some(&p.clip_config)).unwrap(), p.clip_config);
    let f32_ldm = d.join("original/sd15_tiny_ldm.safetensors");
    if f32_ldm.is_file() {
        assert_same(&open_single_file(&f32_ldm).unwrap().unet, &p.unet);
    }
}

#[test]
fn fixture_motion_formats_agree() {
    let Some(d) = fixtures() else {
        eprintln!("skipping: tests/fixtures/tiny not generated");
        return;
    };
    let files = [d.join("original/mm_tiny_v2_fp16.ckpt"), d.join("original/mm_tiny_v2.safetensors"), d.join("motion_adapter")];
    if files.iter().any(|f| !f.exists()) {
        eprintln!("skipping: motion fixtures missing");
        return;
    }
    let mms: Vec<_> = files.iter().map(|f| open_motion(f).unwrap()).collect();
    for m in &mms {
        assert_eq!(m.version, MotionVersion::V2, "{}", m.source.origin());
        assert_eq!(m.config.motion_max_seq_length, 32);
        assert!(m.config.use_motion_mid_block);
    }
    assert_same(&mms[0].source, &mms[1].source);
    assert_same(&mms[1].source, &mms[2].source);
    assert_eq!(mms[0].config.block_out_channels, mms[2].config.block_out_channels);
}

#[test]
fn cli_inspect() {
    let exe = env!("CARGO_BIN_EXE_animatediff");
    let run = |p: &Path| std::process::Command::new(exe).arg("inspect").arg(p).output().unwrap();
    let t = tiny();
    let d = tmp("cli");
    let mm = d.join("mm.ckpt");
    write_ckpt(&mm, &motion(&t.boc, true, Some(32)), FileDType::F16, false, false);
    let single = d.join("single.safetensors");
    let m = ldm(&t);
    write_safetensors(&single, &m, FileDType::F16, |x| Some(x.file.clone()));
    let pipe = d.join("pipe");
    write_diffusers_dir(&pipe, &m, &t);

    let o = run(&mm);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{s}{}", String::from_utf8_lossy(&o.stderr));
    assert!(s.contains("PyTorch zip") && s.contains("motion module v2") && s.contains("modules: 21"), "{s}");
    let o = run(&single);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && s.contains("LDM single-file") && s.contains("F16") && s.contains("block_out_channels: [8, 16, 32, 32]"), "{s}");
    for p in [pipe.clone(), pipe.join("unet"), pipe.join("vae"), pipe.join("text_encoder")] {
        let o = run(&p);
        assert!(o.status.success(), "{}: {}", p.display(), String::from_utf8_lossy(&o.stderr));
    }

    // Bad input: exit code 1 and the typed error naming the file.
    let bad = d.join("bad.safetensors");
    std::fs::write(&bad, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}").unwrap();
    let o = run(&bad);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("bad.safetensors") && e.contains("invalid safetensors"), "{e}");
    let o = run(&d.join("missing"));
    assert_eq!(o.status.code(), Some(1));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn diffusers_bin_shards_and_unet_motion_model() {
    let t = tiny();
    let m = ldm(&t);
    let d = tmp("bin");
    let pipe = d.join("pipe");
    write_diffusers_dir(&pipe, &m, &t);
    let reference = open_diffusers_dir(&pipe).unwrap();

    // unet as a torch.save `.bin` (diffusers names), text encoder as two safetensors shards.
    let unet_only = Model {
        ts: m.ts.iter().filter(|x| x.file.starts_with("model.diffusion_model.")).map(|x| T { file: x.diff.clone().unwrap(), ..x.clone() }).collect(),
    };
    std::fs::remove_file(pipe.join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    write_ckpt(&pipe.join("unet/diffusion_pytorch_model.bin"), &unet_only, FileDType::F32, false, false);
    std::fs::remove_file(pipe.join("text_encoder/model.safetensors")).unwrap();
    let te: Vec<&T> = m.ts.iter().filter(|x| x.file.starts_with("cond_stage_model.") && x.diff.is_some()).collect();
    let mut weight_map = serde_json::Map::new();
    for (i, half) in te.chunks(te.len() / 2 + 1).enumerate() {
        let shard = Model { ts: half.iter().map(|&x| x.clone()).collect() };
        let name = format!("model-0000{}-of-00002.safetensors", i + 1);
        write_safetensors(&pipe.join("text_encoder").join(&name), &shard, FileDType::F32, |x| x.diff.clone());
        for x in half {
            weight_map.insert(x.diff.clone().unwrap(), name.clone().into());
        }
    }
    std::fs::write(pipe.join("text_encoder/model.safetensors.index.json"), serde_json::json!({"weight_map": weight_map}).to_string()).unwrap();
    let p = open_diffusers_dir(&pipe).unwrap();
    assert_eq!(p.unet.archives()[0].format(), ArchiveFormat::TorchZip);
    assert_eq!(p.text_encoder.archives().len(), 2);
    assert_same(&reference.unet, &p.unet);
    assert_same(&reference.text_encoder, &p.text_encoder);

    // A UNetMotionModel unet/ (motion modules inside): split into UNet + motion.
    let boc = t.boc.clone();
    let mm = motion(&boc, true, Some(32));
    let mut both = unet_only.clone();
    for x in &mm.ts {
        if let Some(dn) = &x.diff {
            both.ts.push(T { file: dn.clone(), ..x.clone() });
        }
    }
    std::fs::remove_file(pipe.join("unet/diffusion_pytorch_model.bin")).unwrap();
    write_safetensors(&pipe.join("unet/diffusion_pytorch_model.safetensors"), &both, FileDType::F16, |x| Some(x.file.clone()));
    let mut cfg = unet_config_json(&t);
    cfg["_class_name"] = "UNetMotionModel".into();
    cfg["down_block_types"] = serde_json::json!(["CrossAttnDownBlockMotion", "CrossAttnDownBlockMotion", "CrossAttnDownBlockMotion", "DownBlockMotion"]);
    cfg["up_block_types"] = serde_json::json!(["UpBlockMotion", "CrossAttnUpBlockMotion", "CrossAttnUpBlockMotion", "CrossAttnUpBlockMotion"]);
    std::fs::write(pipe.join("unet/config.json"), cfg.to_string()).unwrap();
    let p = open_diffusers_dir(&pipe).unwrap();
    assert_same(&reference.unet, &p.unet);
    let motion = p.motion.unwrap();
    assert_eq!(motion.source.len(), 21 * 26);
    assert_eq!(motion.version, MotionVersion::AnimateLcm); // no stored PE in this file
    check_component(&motion.source, &mm, "");
    std::fs::remove_dir_all(&d).ok();
}
