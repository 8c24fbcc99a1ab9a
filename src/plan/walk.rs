//! The runtime's allocation sequence, replayed on a [`Sim`]: one function per runtime
//! function, same order of allocations, same scopes (so the same frees) and the same batch
//! boundaries as `src/model/*.rs` and `src/pipeline/generate.rs`. Keep the two in step: a
//! change to an allocation or a `submit` in the runtime belongs here too, and
//! `tests/memory_plan.rs` fails (planned ≠ measured peak) until it is.

use super::sim::{split_counts, Sim, SimBatch, T};
use super::weights::Weights;
use crate::gpu::DType;
use crate::model::nn::ff_chunk_rows;
use crate::model::quant_policy::QuantPolicy;
use crate::model::{ClipConfig, MotionConfig, UNetConfig, VaeConfig};

/// The device limits and execution levers a walk needs besides the configs.
#[derive(Debug, Clone, Copy)]
pub struct Env {
    pub max_binding: u64,
    /// `MemoryStats::ff_chunk_bytes` (0: feed-forwards are not chunked).
    pub ff_chunk_bytes: u64,
}

fn with_last(dims: &[usize], last: usize) -> Vec<usize> {
    let mut d = dims.to_vec();
    if let Some(l) = d.last_mut() {
        *l = last;
    }
    d
}

/// `nn::Linear::run`.
fn linear(bt: &mut SimBatch, x: &T, out: usize, residual: Option<&T>) -> T {
    let inp = x.dims.last().copied().unwrap_or(0);
    bt.sim.add_flops(2.0 * (x.numel() / inp.max(1) as u64) as f64 * inp as f64 * out as f64);
    let y = bt.alloc(&with_last(&x.dims, out), x.dtype, "linear");
    bt.bind(&[x, &y]);
    if let Some(r) = residual {
        bt.bind(&[r]);
    }
    y
}

/// `nn::Linear::run_geglu` (`out` = the projection's width, value + gate).
fn geglu(bt: &mut SimBatch, x: &T, out: usize) -> T {
    let inp = x.dims.last().copied().unwrap_or(0);
    bt.sim.add_flops(2.0 * (x.numel() / inp.max(1) as u64) as f64 * inp as f64 * out as f64);
    let y = bt.alloc(&with_last(&x.dims, out / 2), x.dtype, "geglu");
    bt.bind(&[x, &y]);
    y
}

#[derive(Clone, Copy)]
enum ConvKind {
    Same,
    Down,
    Up,
}

/// `nn::Conv::run` (3×3 kernels).
fn conv(bt: &mut SimBatch, kind: ConvKind, x: &T, cout: usize, residual: Option<&T>) -> T {
    let (h, w) = (x.dims[1], x.dims[2]);
    let (ho, wo) = match kind {
        ConvKind::Same => (h, w),
        ConvKind::Down => ((h + 2 - 3) / 2 + 1, (w + 2 - 3) / 2 + 1),
        ConvKind::Up => (2 * h, 2 * w),
    };
    bt.sim.add_flops(2.0 * (x.dims[0] * ho * wo) as f64 * (9 * x.dims[3]) as f64 * cout as f64);
    let y = bt.alloc(&[x.dims[0], ho, wo, cout], x.dtype, "conv");
    bt.bind(&[x, &y]);
    if let Some(r) = residual {
        bt.bind(&[r]);
    }
    y
}

/// `nn::Norm::group` → `ops::group_norm` (partial statistics and an affine map per
/// binding-sized chunk; their sizes do not depend on the group count).
fn group_norm(bt: &mut SimBatch, env: &Env, _groups: usize, frames: usize, x: &T) -> T {
    let y = bt.alloc(&x.dims, x.dtype, "group_norm");
    let sets = (x.dims[0] / frames.max(1)) as u64;
    let channels = *x.dims.last().unwrap_or(&1) as u64;
    let positions = x.dims.iter().product::<usize>() as u64 / (sets.max(1) * channels.max(1));
    // Where one set is already larger than a binding the runtime refuses the op: the plan
    // records it (it does not fit) and walks it as one piece.
    let counts = split_counts(env.max_binding, sets, &[x.size_bytes(), y.size_bytes()]).unwrap_or_else(|bytes| {
        let mut st = bt.sim.state.borrow_mut();
        st.unsplittable = st.unsplittable.max(bytes);
        vec![sets]
    });
    for count in counts {
        let [part_dims, coef_dims] = crate::ops::group_norm_scratch(count, positions, channels);
        let part = bt.alloc(&part_dims, DType::F32, "group_norm.stats");
        let coef = bt.alloc(&coef_dims, DType::F32, "group_norm.affine");
        bt.bind(&[x, &part, &coef, &y]);
    }
    y
}

/// `nn::Norm::layer`.
fn layer_norm(bt: &mut SimBatch, x: &T) -> T {
    let y = bt.alloc(&x.dims, x.dtype, "layer_norm");
    bt.bind(&[x, &y]);
    y
}

/// `MultiHeadAttention::self_attention_scaled` (q/k/v/out all `dim` wide) over sequences of
/// `seq` tokens (for the FLOP count: QKᵀ and PV).
fn self_attention(bt: &mut SimBatch, x: &T, dim: usize, seq: usize, residual: Option<&T>) -> T {
    bt.sim.add_flops(4.0 * (x.numel() / dim.max(1) as u64) as f64 * seq as f64 * dim as f64);
    let q = linear(bt, x, dim, None);
    let k = linear(bt, x, dim, None);
    let v = linear(bt, x, dim, None);
    let o = bt.alloc(&q.dims, q.dtype, "attention");
    bt.bind(&[&q, &k, &v, &o]);
    drop((q, k, v));
    bt.release();
    linear(bt, &o, dim, residual)
}

/// `MultiHeadAttention::cross_attention`.
fn cross_attention(bt: &mut SimBatch, x: &T, context: &T, dim: usize, residual: Option<&T>) -> T {
    bt.sim.add_flops(4.0 * (x.numel() / dim.max(1) as u64) as f64 * context.dims[1] as f64 * dim as f64);
    let q = linear(bt, x, dim, None);
    let k = linear(bt, context, dim, None);
    let v = linear(bt, context, dim, None);
    let o = bt.alloc(&q.dims, q.dtype, "attention");
    bt.bind(&[&q, &k, &v, &o]);
    drop((q, k, v));
    bt.release();
    linear(bt, &o, dim, residual)
}

/// `GegluFeedForward::run` (over chunks of tokens through one intermediate when it exceeds
/// `env.ff_chunk_bytes`).
fn feed_forward(bt: &mut SimBatch, env: &Env, x: &T, residual: &T, dim: usize) -> T {
    let inner = dim * 4;
    let rows = (x.numel() / dim.max(1) as u64) as usize;
    let chunk = ff_chunk_rows(rows, x.dtype.storage_bytes(dim as u64), x.dtype.storage_bytes(inner as u64), env.ff_chunk_bytes);
    if chunk >= rows {
        let h = geglu(bt, x, dim * 8);
        return linear(bt, &h, dim, Some(residual));
    }
    bt.sim.add_flops(2.0 * rows as f64 * dim as f64 * (inner * 3) as f64);
    let h = bt.alloc(&[chunk, inner], x.dtype, "geglu");
    let y = bt.alloc(&with_last(&x.dims, dim), x.dtype, "linear");
    // Every chunk binds the same tensors and allocates nothing: after the first (which may
    // flush what the batch held before) the second finds the state it leaves, so two walk
    // all of them (a huge request has billions of chunks).
    for _ in 0..rows.div_ceil(chunk).min(2) {
        bt.bind(&[x, &h]);
        bt.bind(&[&h, &y, residual]);
    }
    y
}

/// `ResnetBlock2D::forward`.
fn resnet(bt: &mut SimBatch, env: &Env, groups: usize, norm_frames: usize, x: &T, cout: usize, temb: Option<&T>) -> T {
    let cin = x.dims[3];
    let mut h = {
        let n = group_norm(bt, env, groups, norm_frames, x);
        conv(bt, ConvKind::Same, &n, cout, None)
    };
    if let Some(t) = temb {
        let tp = linear(bt, t, cout, None);
        let sum = bt.alloc(&h.dims, h.dtype, "resnet.temb");
        bt.bind(&[&h, &tp, &sum]);
        h = sum;
    }
    let n = group_norm(bt, env, groups, norm_frames, &h);
    drop(h);
    let shortcut = if cin != cout { linear(bt, x, cout, None) } else { x.clone() };
    conv(bt, ConvKind::Same, &n, cout, Some(&shortcut))
}

/// `Transformer2DModel::forward` (SD1.5: 1×1-conv projections = linears on tokens).
fn transformer(bt: &mut SimBatch, env: &Env, groups: usize, layers: usize, x: &T, context: &T) -> T {
    let d = x.dims.clone();
    let c = d[3];
    let tokens = vec![d[0], d[1] * d[2], d[3]];
    let mut h = {
        let n = group_norm(bt, env, groups, 1, x);
        let n = n.reshape(tokens.clone());
        linear(bt, &n, c, None)
    };
    for _ in 0..layers {
        // BasicTransformerBlock::forward
        let x1 = {
            let n = layer_norm(bt, &h);
            self_attention(bt, &n, c, d[1] * d[2], Some(&h))
        };
        let x2 = {
            let n = layer_norm(bt, &x1);
            cross_attention(bt, &n, context, c, Some(&x1))
        };
        drop(x1);
        let n = layer_norm(bt, &x2);
        h = feed_forward(bt, env, &n, &x2, c);
    }
    let residual = x.reshape(tokens);
    let out = linear(bt, &h, c, Some(&residual));
    out.reshape(d)
}

/// `MotionModule::forward_scaled`.
fn motion(bt: &mut SimBatch, env: &Env, groups: usize, norm_frames: usize, frames: usize, x: &T) -> T {
    let c = x.dims[3];
    let mut h = {
        let n = group_norm(bt, env, groups, norm_frames, x);
        linear(bt, &n, c, None)
    };
    // MotionModule::attentions (its own function: the position encoding dies with it).
    {
        let pe = bt.alloc(&[frames, c], x.dtype, "motion.pe");
        for _ in 0..2 {
            let npe = {
                let n = layer_norm(bt, &h);
                let npe = bt.alloc(&n.dims, n.dtype, "motion.pe_add");
                bt.bind(&[&n, &pe, &npe]);
                npe
            };
            h = self_attention(bt, &npe, c, frames, Some(&h));
        }
    }
    let n = layer_norm(bt, &h);
    let h = feed_forward(bt, env, &n, &h, c);
    linear(bt, &h, c, Some(x))
}

/// What the UNet walk needs to know about the request.
#[derive(Debug, Clone)]
pub struct UNetWalk<'a> {
    pub cfg: &'a UNetConfig,
    pub motion: Option<&'a MotionConfig>,
    pub dtype: DType,
    pub frames: usize,
    /// Motion-module GroupNorm jointly over frames (diffusers) or per frame (original).
    pub motion_joint_norm: bool,
    /// Original v1: ResNet norms jointly over frames.
    pub joint_resnet_norm: bool,
}

/// `UNet::time_embedding` + `time_embedding_silu`.
fn time_embedding_silu(bt: &mut SimBatch, u: &UNetWalk<'_>, images: usize) -> T {
    let c0 = u.cfg.block_out_channels[0];
    let temb = u.cfg.time_embed_dim();
    let emb = {
        let t = bt.alloc(&[images, c0], u.dtype, "unet.time_proj");
        let h = linear(bt, &t, temb, None);
        let hs = bt.alloc(&h.dims, u.dtype, "unet.time_silu");
        bt.bind(&[&h, &hs]);
        linear(bt, &hs, temb, None)
    };
    let es = bt.alloc(&emb.dims, u.dtype, "unet.temb_silu");
    bt.bind(&[&emb, &es]);
    es
}

/// `UNet::forward` for `sample [N, h, w, C_in]` and `context [B, L, D]`.
pub fn unet_forward(sim: &Sim, env: &Env, u: &UNetWalk<'_>, sample: &T, context: &T) -> T {
    let cfg = u.cfg;
    let n = sample.dims[0];
    let g = cfg.norm_num_groups;
    let mg = u.motion.map_or(g, |m| m.motion_norm_num_groups);
    let res_frames = if u.joint_resnet_norm { u.frames } else { 1 };
    let mm_frames = if u.motion_joint_norm { u.frames } else { 1 };
    let tl = cfg.transformer_layers_per_block;
    let boc = &cfg.block_out_channels;
    let levels = boc.len();
    let has_motion = u.motion.is_some();
    let mm_per_down = u.motion.map_or(0, |m| m.motion_layers_per_block);
    let mid_motion = u.motion.is_some_and(|m| m.use_motion_mid_block);
    let motion = |bt: &mut SimBatch, present: bool, x: T| if present { motion(bt, env, mg, mm_frames, u.frames, &x) } else { x };

    let mut bt = sim.batch();
    let temb = time_embedding_silu(&mut bt, u, n);
    let mut x = conv(&mut bt, ConvKind::Same, sample, boc[0], None);
    let mut skips = vec![x.clone()];
    bt.submit();

    for (i, &ch) in boc.iter().enumerate() {
        let mut bt = sim.batch();
        for j in 0..cfg.layers_per_block {
            x = resnet(&mut bt, env, g, res_frames, &x, ch, Some(&temb));
            if cfg.down_block_attention[i] {
                x = transformer(&mut bt, env, g, tl, &x, context);
            }
            x = motion(&mut bt, has_motion && j < mm_per_down, x);
            skips.push(x.clone());
        }
        if i + 1 < levels {
            x = conv(&mut bt, ConvKind::Down, &x, ch, None);
            skips.push(x.clone());
        }
        bt.submit();
    }

    let top = boc[levels - 1];
    let mut bt = sim.batch();
    x = resnet(&mut bt, env, g, res_frames, &x, top, Some(&temb));
    x = transformer(&mut bt, env, g, tl, &x, context);
    x = motion(&mut bt, mid_motion, x);
    x = resnet(&mut bt, env, g, res_frames, &x, top, Some(&temb));
    bt.submit();

    let rev: Vec<usize> = boc.iter().rev().copied().collect();
    let up_attention: Vec<bool> = cfg.up_block_attention.clone();
    for (i, &ch) in rev.iter().enumerate() {
        let mut bt = sim.batch();
        for j in 0..cfg.layers_per_block + 1 {
            let Some(skip) = skips.pop() else { break };
            let xd = x.dims.clone();
            let cat = bt.alloc(&[xd[0], xd[1], xd[2], xd[3] + skip.dims[3]], u.dtype, "unet.cat");
            bt.bind(&[&x, &skip, &cat]);
            x = resnet(&mut bt, env, g, res_frames, &cat, ch, Some(&temb));
            if up_attention[i] {
                x = transformer(&mut bt, env, g, tl, &x, context);
            }
            x = motion(&mut bt, has_motion && j < mm_per_down + 1, x);
        }
        if i + 1 < levels {
            x = conv(&mut bt, ConvKind::Up, &x, ch, None);
        }
        bt.submit();
    }

    let mut bt = sim.batch();
    let hn = group_norm(&mut bt, env, g, res_frames, &x);
    let out = conv(&mut bt, ConvKind::Same, &hn, cfg.out_channels, None);
    bt.submit();
    out
}

/// `ClipTextModel::forward` for `sequences` prompts of 77 tokens.
pub fn clip_forward(sim: &Sim, cfg: &ClipConfig, dtype: DType, sequences: usize, clip_skip: usize) -> T {
    let (t, d) = (77usize.min(cfg.max_position_embeddings), cfg.hidden_size);
    let mut bt = sim.batch();
    let mut x = bt.alloc(&[sequences, t, d], dtype, "clip.embeddings");
    let ids = bt.alloc(&[sequences * t], DType::U32, "embedding.ids");
    bt.bind(&[&ids, &x]);
    drop(ids);
    bt.submit();
    let mut bt = sim.batch();
    for _ in 0..cfg.num_hidden_layers.saturating_sub(clip_skip) {
        let n = layer_norm(&mut bt, &x);
        x = self_attention(&mut bt, &n, d, t, Some(&x));
        let n = layer_norm(&mut bt, &x);
        let h = linear(&mut bt, &n, cfg.intermediate_size, None);
        let a = bt.alloc(&h.dims, dtype, "clip.act");
        bt.bind(&[&h, &a]);
        x = linear(&mut bt, &a, d, Some(&x));
    }
    let y = layer_norm(&mut bt, &x);
    bt.submit();
    y
}

/// `Decoder::decode` of `z [N, h, w, latent]` (in the decoder's storage type).
fn vae_decode(sim: &Sim, env: &Env, cfg: &VaeConfig, z: &T) -> T {
    let g = cfg.norm_num_groups;
    let boc = &cfg.block_out_channels;
    let top = boc[boc.len() - 1];
    let mut bt = sim.batch();
    let x = linear(&mut bt, z, cfg.latent_channels, None);
    let x = conv(&mut bt, ConvKind::Same, &x, top, None);
    // Mid::forward (its own function: its intermediates are dropped when it returns).
    let mut x = {
        let x = resnet(&mut bt, env, g, 1, &x, top, None);
        let x = {
            let d = x.dims.clone();
            let tokens = vec![d[0], d[1] * d[2], d[3]];
            let h = group_norm(&mut bt, env, g, 1, &x);
            let h = h.reshape(tokens.clone());
            let r = x.reshape(tokens);
            let y = self_attention(&mut bt, &h, top, d[1] * d[2], Some(&r));
            y.reshape(d)
        };
        resnet(&mut bt, env, g, 1, &x, top, None)
    };
    bt.submit();
    let levels = boc.len();
    for (i, &ch) in boc.iter().rev().enumerate() {
        let mut bt = sim.batch();
        for _ in 0..cfg.layers_per_block + 1 {
            x = resnet(&mut bt, env, g, 1, &x, ch, None);
        }
        if i + 1 < levels {
            x = conv(&mut bt, ConvKind::Up, &x, ch, None);
        }
        bt.submit();
    }
    let mut bt = sim.batch();
    let h = group_norm(&mut bt, env, g, 1, &x);
    let y = conv(&mut bt, ConvKind::Same, &h, cfg.out_channels, None);
    bt.submit();
    y
}

/// `vae::to_dtype`: `x` converted to `dtype` when it differs.
fn to_dtype(bt: &mut SimBatch, x: T, dtype: DType, label: &'static str) -> T {
    if x.dtype == dtype {
        return x;
    }
    let y = bt.alloc(&x.dims, dtype, label);
    bt.bind(&[&x, &y]);
    y
}

/// `Decoder::decode_to_frames`: `latents [N, h, w, C]` in chunks of `chunk` frames, decoded
/// in `dtype`.
pub fn vae_decode_to_frames(sim: &Sim, env: &Env, cfg: &VaeConfig, latents: &T, chunk: usize, dtype: DType) -> T {
    let d = latents.dims.clone();
    let n = d[0];
    let chunk = chunk.max(1);
    let s = cfg.block_out_channels.len() - 1;
    let (ho, wo) = (d[1] << s, d[2] << s);
    let out = sim.alloc(&[n, ho, wo, cfg.out_channels], DType::F32, "vae.frames");
    let mut i = 0;
    // Planning time must not grow with the video: once a full chunk leaves the state as it
    // found it, the other full chunks replay it exactly and are accounted for, not walked
    // (a 10 000-frame plan walked 10 000 decoders: seconds, a fuzzer timeout).
    let mut repeated = false;
    while i < n {
        let c = chunk.min(n - i);
        let before = (!repeated && c == chunk && i + 2 * chunk <= n).then(|| {
            let st = sim.state.borrow();
            (st.snapshot(), st.mark())
        });
        {
            let mut bt = sim.batch();
            let raw = bt.alloc(&[c, d[1], d[2], d[3]], DType::F32, "vae.chunk");
            bt.bind(&[latents, &raw]);
            let z = bt.alloc(&raw.dims, DType::F32, "vae.z");
            bt.bind(&[&raw, &z]);
            let z = to_dtype(&mut bt, z, dtype, "vae.z");
            bt.submit();
            let y = vae_decode(sim, env, cfg, &z);
            let mut bt = sim.batch();
            let y = to_dtype(&mut bt, y, DType::F32, "vae.out");
            let f = bt.alloc(&y.dims, DType::F32, "vae.frames.chunk");
            bt.bind(&[&y, &f, &out]);
            bt.submit();
        }
        i += c;
        if let Some((snap, mark)) = before {
            let mut st = sim.state.borrow_mut();
            if st.snapshot() == snap {
                // The full chunks after this one, except the last: the last may be followed
                // by a shorter one and ends the loop, so it is walked.
                let times = (n - i) / chunk - 1;
                st.repeat_since(mark, times);
                i += times * chunk;
                repeated = true;
            }
        }
    }
    out
}

/// Per-step facts of the sampler that change allocations.
#[derive(Debug, Clone, Copy)]
pub struct StepShape {
    /// The model input is scaled (`model_input_scale ≠ 1`: Euler).
    pub scaled_input: bool,
    /// The step adds fresh noise (LCM).
    pub noise: bool,
}

/// What `Models::generate_with` does with the GPU, from the text encoder to the frames.
#[derive(Debug, Clone)]
pub struct GenerateWalk<'a> {
    pub unet: UNetWalk<'a>,
    pub clip: &'a ClipConfig,
    pub vae: &'a VaeConfig,
    pub latent_h: usize,
    pub latent_w: usize,
    pub cfg: bool,
    /// Classifier-free guidance halves as two UNet passes (else one batch of 2 videos).
    pub cfg_split: bool,
    pub clip_skip: usize,
    pub decode_chunk: usize,
    pub steps: Vec<StepShape>,
    pub decode: bool,
    /// Drop the text encoder's weights after encoding.
    pub offload_text_encoder: bool,
    /// VAE weights on the device only while decoding.
    pub offload_vae: bool,
    /// The VAE decoder's storage type.
    pub vae_dtype: DType,
}

/// The offloadable models' device weights during a walk (`model::offload::Offloadable`):
/// `None` while offloaded.
pub struct Resident<'p> {
    pub clip: Option<Vec<T>>,
    pub vae: Option<(Vec<T>, DType)>,
    /// The text encoder's storage type and quantization policy (for restoring it).
    pub clip_dtype: DType,
    pub policy: Option<&'p QuantPolicy>,
}

impl Resident<'_> {
    /// `Offloadable::restore` of the text encoder: its host copy replayed (packed layers).
    fn restore_clip(&mut self, sim: &Sim, cfg: &ClipConfig) {
        if self.clip.is_none() {
            let mut w = Weights::new(sim, self.clip_dtype, self.policy).packed();
            w.clip(cfg);
            self.clip = Some(w.kept);
        }
    }

    /// The state a generation with these levers leaves the models in.
    pub fn settle(&mut self, sim: &Sim, vae: &VaeConfig, offload_text_encoder: bool, offload_vae: bool, vae_f16: bool) {
        if offload_text_encoder {
            self.clip = None;
        }
        if offload_vae {
            self.vae = None;
        } else if vae_f16 {
            self.ensure_vae(sim, vae, DType::F16);
        }
    }

    /// `Offloadable::ensure` of the VAE decoder in `dtype`.
    fn ensure_vae(&mut self, sim: &Sim, cfg: &VaeConfig, dtype: DType) {
        if self.vae.as_ref().is_some_and(|v| v.1 == dtype) {
            return;
        }
        self.vae = None;
        let mut w = Weights::new(sim, dtype, None).packed();
        w.vae_decoder(cfg);
        self.vae = Some((w.kept, dtype));
    }
}

/// Peaks of the three phases of a generation (each from its start to its end).
#[derive(Debug, Clone, Copy, Default)]
pub struct PhasePeaks {
    /// VAE offload, text encoder (restored, run, offloaded), context copies.
    pub encode: u64,
    /// The denoising steps.
    pub denoise: u64,
    /// VAE (restored) decode.
    pub decode: u64,
}

/// `Models::generate_with` (after validation) with the models' weights in `models`; the
/// whole run is in the simulator's state.
pub fn generate(sim: &Sim, env: &Env, g: &GenerateWalk<'_>, models: &mut Resident<'_>) -> PhasePeaks {
    let u = &g.unet;
    let (f, h, w) = (u.frames, g.latent_h, g.latent_w);
    let dtype = u.dtype;
    sim.take_phase_peak();
    if g.offload_vae {
        models.vae = None;
    }
    // encode_prompts (other prompts than the cached ones): [negative, prompt] with guidance.
    let context = {
        models.restore_clip(sim, g.clip);
        let ctx = clip_forward(sim, g.clip, dtype, if g.cfg { 2 } else { 1 }, g.clip_skip);
        if ctx.dtype == dtype {
            ctx
        } else {
            let mut bt = sim.batch();
            let c = bt.alloc(&ctx.dims, dtype, "context");
            bt.bind(&[&ctx, &c]);
            bt.submit();
            c
        }
    };
    if g.offload_text_encoder {
        models.clip = None;
    }
    // Split guidance: one text embedding per pass.
    let halves = if g.cfg && g.cfg_split {
        let mut bt = sim.batch();
        let d = &context.dims;
        let hv: Vec<T> = (0..2)
            .map(|_| {
                let c = bt.alloc(&[d[0] / 2, d[1], d[2]], dtype, "context.half");
                bt.bind(&[&context, &c]);
                c
            })
            .collect();
        bt.submit();
        Some(hv)
    } else {
        None
    };
    let videos = if g.cfg && !g.cfg_split { 2 } else { 1 };
    let encode = sim.take_phase_peak();
    let mut x = sim.alloc(&[f, h, w, 4], DType::F32, "latents");
    for s in &g.steps {
        let mut bt = sim.batch();
        let input = bt.alloc(&[videos * f, h, w, 4], DType::F32, "unet.in");
        let scaled = s.scaled_input.then(|| {
            let t = bt.alloc(&x.dims, DType::F32, "latents.scaled");
            bt.bind(&[&x, &t]);
            t
        });
        bt.bind(&[scaled.as_ref().unwrap_or(&x), &input]);
        let input = if dtype == DType::F32 {
            input
        } else {
            let c = bt.alloc(&input.dims, dtype, "unet.in");
            bt.bind(&[&input, &c]);
            c
        };
        bt.submit();
        let to_f32 = |bt: &mut SimBatch, eps: T| {
            if dtype == DType::F32 {
                eps
            } else {
                let c = bt.alloc(&eps.dims, DType::F32, "eps");
                bt.bind(&[&eps, &c]);
                c
            }
        };
        let (mut bt, guided) = match &halves {
            Some(hv) => {
                let eu = unet_forward(sim, env, u, &input, &hv[0]);
                let ec = unet_forward(sim, env, u, &input, &hv[1]);
                let mut bt = sim.batch();
                let eu = to_f32(&mut bt, eu);
                let ec = to_f32(&mut bt, ec);
                let gd = bt.alloc(&eu.dims, DType::F32, "eps.guided");
                bt.bind(&[&eu, &ec, &gd]);
                (bt, gd)
            }
            None => {
                let eps = unet_forward(sim, env, u, &input, &context);
                let mut bt = sim.batch();
                let eps = to_f32(&mut bt, eps);
                let gd = if g.cfg {
                    let gd = bt.alloc(&[f, h, w, 4], DType::F32, "eps.guided");
                    bt.bind(&[&eps, &gd]);
                    gd
                } else {
                    eps
                };
                (bt, gd)
            }
        };
        let mut next = bt.alloc(&x.dims, DType::F32, "latents");
        bt.bind(&[&x, &guided, &next]);
        if s.noise {
            let z = bt.alloc(&x.dims, DType::F32, "step.noise");
            let noisy = bt.alloc(&x.dims, DType::F32, "latents");
            bt.bind(&[&next, &z, &noisy]);
            next = noisy;
        }
        bt.submit();
        x = next;
    }
    let denoise = sim.take_phase_peak();
    if g.decode {
        models.ensure_vae(sim, g.vae, g.vae_dtype);
        drop(vae_decode_to_frames(sim, env, g.vae, &x, g.decode_chunk, g.vae_dtype));
        if g.offload_vae {
            models.vae = None;
        }
    }
    PhasePeaks { encode, denoise, decode: sim.take_phase_peak() }
}
