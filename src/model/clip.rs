//! transformers `CLIPTextModel` (SD1.5's text encoder): token + position embeddings, pre-LN
//! transformer layers with causal self-attention and QuickGELU MLPs, final LayerNorm. No
//! padding mask: pad tokens are processed like any other (as diffusers does).

use super::config::ClipConfig;
use super::nn::{alloc, Linear, Loader, MultiHeadAttention, Norm, Tokens};
use super::quant_policy::QuantPolicy;
use crate::gpu::{DType, Gpu, Tensor};
use crate::load::WeightSource;
use crate::ops::{self, Activation};
use crate::{Error, Result};

struct EncoderLayer {
    layer_norm1: Norm,
    self_attn: MultiHeadAttention,
    layer_norm2: Norm,
    fc1: Linear,
    fc2: Linear,
}

pub struct ClipTextModel {
    cfg: ClipConfig,
    dtype: DType,
    token_embedding: Tensor,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_layer_norm: Norm,
    activation: Activation,
}

impl ClipTextModel {
    /// Weights under `text_model.` (transformers ≥ 5.6 files without the prefix are mapped by
    /// the loader).
    pub fn load(gpu: &Gpu, src: &dyn WeightSource, cfg: &ClipConfig, dtype: DType) -> Result<ClipTextModel> {
        ClipTextModel::load_quantized(gpu, src, cfg, dtype, None)
    }

    /// [`ClipTextModel::load`], quantizing GEMM weights on the GPU per `policy`.
    pub fn load_quantized(gpu: &Gpu, src: &dyn WeightSource, cfg: &ClipConfig, dtype: DType, policy: Option<&QuantPolicy>) -> Result<ClipTextModel> {
        ClipTextModel::build(&Loader::new(gpu, src, dtype).with_quant(policy), cfg)
    }

    /// The model from `root` (its source, storage type and quantization policy; or a replay
    /// of an offloaded copy, [`super::offload`]).
    pub fn build(root: &Loader<'_>, cfg: &ClipConfig) -> Result<ClipTextModel> {
        let dtype = root.dtype;
        let activation = match cfg.hidden_act.as_str() {
            "quick_gelu" => Activation::QuickGelu,
            "gelu" => Activation::GeluErf,
            other => return Err(Error::input("text encoder hidden_act", format!("`{other}` is not supported (quick_gelu, gelu)"))),
        };
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(Error::input("text encoder config", format!("{} heads do not divide width {}", cfg.num_attention_heads, cfg.hidden_size)));
        }
        let tp = root.child("text_model");
        let l = root.at(&tp);
        let d = cfg.hidden_size;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = l.child(&format!("encoder.layers.{i}"));
            let ll = l.at(&p);
            let ap = ll.child("self_attn");
            let al = ll.at(&ap);
            layers.push(EncoderLayer {
                layer_norm1: ll.norm("layer_norm1", d)?,
                self_attn: MultiHeadAttention {
                    to_q: al.linear("q_proj", d, d, true)?,
                    to_k: al.linear("k_proj", d, d, true)?,
                    to_v: al.linear("v_proj", d, d, true)?,
                    to_out: al.linear("out_proj", d, d, true)?,
                    heads: cfg.num_attention_heads,
                },
                layer_norm2: ll.norm("layer_norm2", d)?,
                fc1: ll.linear("mlp.fc1", d, cfg.intermediate_size, true)?,
                fc2: ll.linear("mlp.fc2", cfg.intermediate_size, d, true)?,
            });
        }
        Ok(ClipTextModel {
            cfg: cfg.clone(),
            dtype,
            token_embedding: l.dense("embeddings.token_embedding.weight", &[cfg.vocab_size, d])?,
            position_embedding: l.dense("embeddings.position_embedding.weight", &[cfg.max_position_embeddings, d])?,
            layers,
            final_layer_norm: l.norm("final_layer_norm", d)?,
            activation,
        })
    }

    pub fn config(&self) -> &ClipConfig {
        &self.cfg
    }

    /// Embeddings `[B, T, D]` for `ids` (B sequences of T ≤ 77 tokens, row-major).
    /// `clip_skip = k` uses the hidden state k layers before the last, then the final LN
    /// (diffusers' `clip_skip`; A1111's "CLIP skip 2" is k = 1).
    pub fn forward(&self, gpu: &Gpu, ids: &[u32], tokens_per_sequence: usize, clip_skip: usize) -> Result<Tensor> {
        let t = tokens_per_sequence;
        if t == 0 || t > self.cfg.max_position_embeddings || ids.is_empty() || !ids.len().is_multiple_of(t) {
            return Err(Error::input("token ids", format!("{} ids are not sequences of {t} ≤ {} tokens", ids.len(), self.cfg.max_position_embeddings)));
        }
        if clip_skip >= self.layers.len() {
            return Err(Error::input("clip_skip", format!("{clip_skip} must be below the {} layers", self.layers.len())));
        }
        let b = ids.len() / t;
        let d = self.cfg.hidden_size;
        let mut bt = gpu.batch("clip");
        let mut x = alloc(gpu, &[b, t, d], self.dtype, "clip.embeddings")?;
        let pos = self.position_embedding.slice_units(0, t as u64, self.cfg.max_position_embeddings as u64);
        let pos = match pos {
            Some(p) => p,
            None => self.position_embedding.clone(),
        };
        ops::embedding(&mut bt, ids, &self.token_embedding, &pos, &x)?;
        bt.submit()?;
        let mut bt = gpu.batch("clip.layers");
        let used = self.layers.len() - clip_skip;
        for layer in &self.layers[..used] {
            let n = layer.layer_norm1.layer(&mut bt, self.cfg.layer_norm_eps, &x)?;
            x = layer.self_attn.self_attention(&mut bt, &n, Tokens::Rows { causal: true }, Some(&x))?;
            let n = layer.layer_norm2.layer(&mut bt, self.cfg.layer_norm_eps, &x)?;
            let h = layer.fc1.run(&mut bt, &n, None)?;
            let a = alloc(gpu, h.dims(), self.dtype, "clip.act")?;
            ops::unary(&mut bt, self.activation, 1.0, &h, &a)?;
            x = layer.fc2.run(&mut bt, &a, Some(&x))?;
        }
        let y = self.final_layer_norm.layer(&mut bt, self.cfg.layer_norm_eps, &x)?;
        bt.submit()?;
        Ok(y)
    }
}
