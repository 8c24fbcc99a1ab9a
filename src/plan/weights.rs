//! Weight bytes on the device, tensor by tensor, as the loaders allocate them: every GEMM
//! weight sized by the real quantization policy ([`QuantPolicy::format_for`] on the same
//! diffusers key the loader uses), biases / norms / embeddings in the storage type, the VAE
//! decoder in f32. Allocated on the [`Sim`] (they live for the whole run).

use super::sim::{Sim, T};
use crate::gpu::DType;
use crate::model::quant_policy::QuantPolicy;
use crate::model::{ClipConfig, MotionConfig, UNetConfig, VaeConfig};

/// Allocates one network's weights under a key prefix (mirrors `nn::Loader`).
pub struct Weights<'a> {
    pub sim: &'a Sim,
    pub dtype: DType,
    pub policy: Option<&'a QuantPolicy>,
    pub kept: Vec<T>,
    /// Bytes of the weights allocated through this loader.
    pub bytes: u64,
    /// Every tensor the loader reads: diffusers name and PyTorch shape (what a source must
    /// hold; `bench unet --random-weights` builds one from it).
    pub names: Vec<(String, Vec<usize>)>,
    /// Quantized layers arrive packed (a replayed host copy, `model::offload`): no dense
    /// upload before quantizing.
    pub packed: bool,
}

impl<'a> Weights<'a> {
    pub fn new(sim: &'a Sim, dtype: DType, policy: Option<&'a QuantPolicy>) -> Weights<'a> {
        Weights { sim, dtype, policy, kept: Vec::new(), bytes: 0, names: Vec::new(), packed: false }
    }

    /// The same loader for packed quantized layers.
    pub fn packed(self) -> Weights<'a> {
        Weights { packed: true, ..self }
    }

    fn keep(&mut self, t: T) {
        self.bytes += t.size_bytes().max(4).next_multiple_of(4);
        self.kept.push(t);
    }

    fn keep_new(&mut self, dims: &[usize], dtype: DType) {
        let t = self.sim.weight(dims, dtype, "weight");
        self.keep(t);
    }

    pub fn tensor(&mut self, key: &str, dims: &[usize], dtype: DType) {
        self.names.push((key.to_string(), dims.to_vec()));
        let t = self.sim.weight(dims, dtype, "weight");
        self.keep(t);
    }

    pub fn vector(&mut self, key: &str, len: usize) {
        self.tensor(key, &[len], self.dtype);
    }

    /// `load_gemm_weight`: dense, or uploaded f32 then quantized on the GPU (dense copy freed).
    fn gemm(&mut self, key: &str, kshape: &[usize], torch: Vec<usize>) {
        self.names.push((format!("{key}.weight"), torch));
        let n = kshape.last().copied().unwrap_or(0);
        let k = kshape.iter().product::<usize>().checked_div(n).unwrap_or(0);
        match self.policy.and_then(|p| p.format_for(key, k, n)) {
            Some(f) if self.packed => {
                let g = f.group as usize;
                self.keep_new(&[k * n / f.per_word()], DType::U32);
                self.keep_new(&[k / g * n], DType::F16);
                if f.asymmetric {
                    self.keep_new(&[k / g * n], DType::F16);
                }
            }
            Some(f) => {
                let dense = self.sim.weight(kshape, DType::F32, "weight.dense");
                let mut bt = self.sim.batch();
                let g = f.group as usize;
                let words = self.sim.weight(&[k * n / f.per_word()], DType::U32, "weight.q");
                let scales = self.sim.weight(&[k / g * n], DType::F16, "weight.scales");
                bt.bind(&[&dense, &words, &scales]);
                self.keep(words);
                self.keep(scales);
                if f.asymmetric {
                    let mins = self.sim.weight(&[k / g * n], DType::F16, "weight.mins");
                    self.keep(mins);
                }
                bt.submit();
                drop(dense);
            }
            None => {
                let t = self.sim.weight(kshape, self.dtype, "weight");
                self.keep(t);
            }
        }
    }

    pub fn linear(&mut self, key: &str, inp: usize, out: usize, bias: bool) {
        self.gemm(key, &[inp, out], vec![out, inp]);
        if bias {
            self.vector(&format!("{key}.bias"), out);
        }
    }

    pub fn conv(&mut self, key: &str, cin: usize, cout: usize, k: usize) {
        self.gemm(key, &[k, k, cin, cout], vec![cout, cin, k, k]);
        self.vector(&format!("{key}.bias"), cout);
    }

    pub fn norm(&mut self, key: &str, c: usize) {
        self.vector(&format!("{key}.weight"), c);
        self.vector(&format!("{key}.bias"), c);
    }

    fn attention(&mut self, p: &str, dim: usize, kv_dim: usize, qkv_bias: bool) {
        self.linear(&format!("{p}.to_q"), dim, dim, qkv_bias);
        self.linear(&format!("{p}.to_k"), kv_dim, dim, qkv_bias);
        self.linear(&format!("{p}.to_v"), kv_dim, dim, qkv_bias);
        self.linear(&format!("{p}.to_out.0"), dim, dim, true);
    }

    fn feed_forward(&mut self, p: &str, dim: usize) {
        self.linear(&format!("{p}.net.0.proj"), dim, dim * 8, true);
        self.linear(&format!("{p}.net.2"), dim * 4, dim, true);
    }

    fn resnet(&mut self, p: &str, cin: usize, cout: usize, temb: Option<usize>) {
        self.norm(&format!("{p}.norm1"), cin);
        self.conv(&format!("{p}.conv1"), cin, cout, 3);
        if let Some(t) = temb {
            self.linear(&format!("{p}.time_emb_proj"), t, cout, true);
        }
        self.norm(&format!("{p}.norm2"), cout);
        self.conv(&format!("{p}.conv2"), cout, cout, 3);
        if cin != cout {
            self.linear(&format!("{p}.conv_shortcut"), cin, cout, true);
        }
    }

    fn transformer(&mut self, p: &str, dim: usize, ctx: usize, layers: usize) {
        for i in 0..layers {
            let b = format!("{p}.transformer_blocks.{i}");
            self.norm(&format!("{b}.norm1"), dim);
            self.attention(&format!("{b}.attn1"), dim, dim, false);
            self.norm(&format!("{b}.norm2"), dim);
            self.attention(&format!("{b}.attn2"), dim, ctx, false);
            self.norm(&format!("{b}.norm3"), dim);
            self.feed_forward(&format!("{b}.ff"), dim);
        }
        self.norm(&format!("{p}.norm"), dim);
        self.linear(&format!("{p}.proj_in"), dim, dim, true);
        self.linear(&format!("{p}.proj_out"), dim, dim, true);
    }

    fn motion_module(&mut self, p: &str, c: usize) {
        self.norm(&format!("{p}.norm"), c);
        self.linear(&format!("{p}.proj_in"), c, c, true);
        let b = format!("{p}.transformer_blocks.0");
        self.norm(&format!("{b}.norm1"), c);
        self.norm(&format!("{b}.norm2"), c);
        self.attention(&format!("{b}.attn1"), c, c, false);
        self.attention(&format!("{b}.attn2"), c, c, false);
        self.norm(&format!("{b}.norm3"), c);
        self.feed_forward(&format!("{b}.ff"), c);
        self.linear(&format!("{p}.proj_out"), c, c, true);
    }

    /// `UNet::load_quantized` (with the motion adapter's modules).
    pub fn unet(&mut self, cfg: &UNetConfig, motion: Option<&MotionConfig>) {
        let boc = &cfg.block_out_channels;
        let levels = boc.len();
        let temb = cfg.time_embed_dim();
        let (ctx, tl) = (cfg.cross_attention_dim, cfg.transformer_layers_per_block);
        let mut out_ch = boc[0];
        for (i, &ch) in boc.iter().enumerate() {
            let in_ch = out_ch;
            out_ch = ch;
            for j in 0..cfg.layers_per_block {
                self.resnet(&format!("down_blocks.{i}.resnets.{j}"), if j == 0 { in_ch } else { out_ch }, out_ch, Some(temb));
                if cfg.down_block_attention[i] {
                    self.transformer(&format!("down_blocks.{i}.attentions.{j}"), out_ch, ctx, tl);
                }
            }
            if let Some(m) = motion {
                for j in 0..m.motion_layers_per_block {
                    self.motion_module(&format!("down_blocks.{i}.motion_modules.{j}"), out_ch);
                }
            }
            if i + 1 < levels {
                self.conv(&format!("down_blocks.{i}.downsamplers.0.conv"), out_ch, out_ch, 3);
            }
        }
        let top = boc[levels - 1];
        self.resnet("mid_block.resnets.0", top, top, Some(temb));
        self.resnet("mid_block.resnets.1", top, top, Some(temb));
        self.transformer("mid_block.attentions.0", top, ctx, tl);
        if let Some(m) = motion.filter(|m| m.use_motion_mid_block) {
            let _ = m;
            self.motion_module("mid_block.motion_modules.0", top);
        }
        let rev: Vec<usize> = boc.iter().rev().copied().collect();
        let mut out_ch = rev[0];
        for (i, &ch) in rev.iter().enumerate() {
            let prev = out_ch;
            out_ch = ch;
            let in_ch = rev[(i + 1).min(levels - 1)];
            let layers = cfg.layers_per_block + 1;
            for j in 0..layers {
                let skip = if j + 1 == layers { in_ch } else { out_ch };
                let res_in = if j == 0 { prev } else { out_ch };
                self.resnet(&format!("up_blocks.{i}.resnets.{j}"), res_in + skip, out_ch, Some(temb));
                if cfg.up_block_attention[i] {
                    self.transformer(&format!("up_blocks.{i}.attentions.{j}"), out_ch, ctx, tl);
                }
            }
            if let Some(m) = motion {
                for j in 0..m.motion_layers_per_block + 1 {
                    self.motion_module(&format!("up_blocks.{i}.motion_modules.{j}"), out_ch);
                }
            }
            if i + 1 < levels {
                self.conv(&format!("up_blocks.{i}.upsamplers.0.conv"), out_ch, out_ch, 3);
            }
        }
        self.linear("time_embedding.linear_1", boc[0], temb, true);
        self.linear("time_embedding.linear_2", temb, temb, true);
        self.conv("conv_in", cfg.in_channels, boc[0], 3);
        self.norm("conv_norm_out", boc[0]);
        self.conv("conv_out", boc[0], cfg.out_channels, 3);
    }

    /// `ClipTextModel::load_quantized`.
    pub fn clip(&mut self, cfg: &ClipConfig) {
        let d = cfg.hidden_size;
        for i in 0..cfg.num_hidden_layers {
            let p = format!("text_model.encoder.layers.{i}");
            self.norm(&format!("{p}.layer_norm1"), d);
            for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                self.linear(&format!("{p}.self_attn.{proj}"), d, d, true);
            }
            self.norm(&format!("{p}.layer_norm2"), d);
            self.linear(&format!("{p}.mlp.fc1"), d, cfg.intermediate_size, true);
            self.linear(&format!("{p}.mlp.fc2"), cfg.intermediate_size, d, true);
        }
        self.tensor("text_model.embeddings.token_embedding.weight", &[cfg.vocab_size, d], self.dtype);
        self.tensor("text_model.embeddings.position_embedding.weight", &[cfg.max_position_embeddings, d], self.dtype);
        self.norm("text_model.final_layer_norm", d);
    }

    /// `Decoder::build` (f32 as loaded, f16 when rebuilt for the f16-VAE lever; never
    /// quantized).
    pub fn vae_decoder(&mut self, cfg: &VaeConfig) {
        let boc = &cfg.block_out_channels;
        let levels = boc.len();
        let top = boc[levels - 1];
        let rev: Vec<usize> = boc.iter().rev().copied().collect();
        let mut out_ch = rev[0];
        for (i, &ch) in rev.iter().enumerate() {
            let prev = out_ch;
            out_ch = ch;
            for j in 0..cfg.layers_per_block + 1 {
                self.resnet(&format!("decoder.up_blocks.{i}.resnets.{j}"), if j == 0 { prev } else { out_ch }, out_ch, None);
            }
            if i + 1 < levels {
                self.conv(&format!("decoder.up_blocks.{i}.upsamplers.0.conv"), out_ch, out_ch, 3);
            }
        }
        self.linear("post_quant_conv", cfg.latent_channels, cfg.latent_channels, true);
        self.conv("decoder.conv_in", cfg.latent_channels, top, 3);
        // Mid: two resnets and the single-head attention (1×1 projections).
        self.resnet("decoder.mid_block.resnets.0", top, top, None);
        self.resnet("decoder.mid_block.resnets.1", top, top, None);
        self.norm("decoder.mid_block.attentions.0.group_norm", top);
        for p in ["to_q", "to_k", "to_v", "to_out.0"] {
            self.linear(&format!("decoder.mid_block.attentions.0.{p}"), top, top, true);
        }
        self.norm("decoder.conv_norm_out", boc[0]);
        self.conv("decoder.conv_out", boc[0], cfg.out_channels, 3);
    }
}
