//! Weight quantization policy: which GEMM weights of the UNet, motion modules and text
//! encoder become q8 / q4 and in which format, as one table ([`POLICY`]); and the loader path
//! that applies it ([`load_gemm_weight`]): weights already packed in a quantized file are
//! uploaded as they are, policy layers are quantized on the GPU right after upload (the dense
//! copy is dropped at once, so the device never holds more than one unquantized layer), the
//! rest stays dense in the model's storage type. The VAE never goes through a policy.
//!
//! Names are diffusers names without `.weight` (`down_blocks.1.attentions.0.proj_in`,
//! `up_blocks.2.motion_modules.1.transformer_blocks.0.attn1.to_q`,
//! `text_model.encoder.layers.3.mlp.fc1`); patterns match dot-separated segments, `*` one
//! segment, `**` any number; a rule's `within` limits it to blocks.
//!
//! Under q4 the table keeps int8 what measured the most ε error per SD1.5 byte saved: ResNet
//! shortcuts, samplers, spatial attention and projections, every GEMM of `down_blocks.0`,
//! `down_blocks.1` and `up_blocks.3`, and the motion modules' projections and value/output
//! weights (ε cosine 0.9974 on the fixtures, 0.9943–0.9991 on six other random draws;
//! `tests/quant_quality.rs`, `scripts/q4_policy_experiment.py`). The rest of the motion modules,
//! the other ResNet convolutions and the feed-forwards, most of the bytes, are int4.
//!
//! Formats (measured on the tiny fixtures, `tests/quant_quality.rs`; see the issue note):
//! q8 = int8 symmetric, one f16 scale per 64 values along K (K is the reduction dimension:
//! `in` for linears, `KH·KW·Cin` for convolutions); q4 = int4 asymmetric (f16 scale + f16
//! minimum) per 32 values along K. Where K is not a multiple of the group (tiny test models)
//! the largest multiple of 8 below it that divides K is used; a layer the kernels cannot take
//! at all (K not a multiple of 8, N not a multiple of 8 for q4 / 4 for q8) stays dense.

use crate::gpu::{DType, Tensor};
use crate::load::LoadError;
use crate::model::nn::{Loader, Weight};
use crate::ops::{self, QuantizedWeight};
use crate::quant::{self, QuantFormat, QuantizedMatrix};
use crate::{Error, Result};

/// The quantized weight formats a model can be loaded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantScheme {
    Q8,
    Q4,
}

impl QuantScheme {
    pub fn name(self) -> &'static str {
        match self {
            QuantScheme::Q8 => "q8",
            QuantScheme::Q4 => "q4",
        }
    }

    pub fn parse(s: &str) -> Option<QuantScheme> {
        match s {
            "q8" => Some(QuantScheme::Q8),
            "q4" => Some(QuantScheme::Q4),
            _ => None,
        }
    }
}

/// What a rule does with a layer under each scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Choice {
    Dense,
    Q8,
    Q4,
}

impl Choice {
    pub fn name(self) -> &'static str {
        match self {
            Choice::Dense => "dense",
            Choice::Q8 => "q8",
            Choice::Q4 => "q4",
        }
    }
}

/// One row of the policy table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// A short name for reports and overrides.
    pub class: &'static str,
    /// Name patterns (any may match).
    pub patterns: &'static [&'static str],
    /// Block prefixes the rule is limited to (empty: anywhere).
    pub within: &'static [&'static str],
    /// Under the q8 scheme.
    pub q8: Choice,
    /// Under the q4 scheme.
    pub q4: Choice,
    pub why: &'static str,
}

use Choice::{Dense, Q4, Q8};

/// Every GEMM weight of the UNet's blocks and the motion modules (ResNet convolutions and
/// projections, samplers, transformer projections, attention, feed-forwards), for rules that
/// cover whole blocks (norms and embeddings in a block stay dense).
pub const UNET_GEMMS: &[&str] = &[
    "**.resnets.*.conv1",
    "**.resnets.*.conv2",
    "**.resnets.*.conv_shortcut",
    "**.resnets.*.time_emb_proj",
    "**.downsamplers.*.conv",
    "**.upsamplers.*.conv",
    "**.proj_in",
    "**.proj_out",
    "**.to_q",
    "**.to_k",
    "**.to_v",
    "**.to_out.0",
    "**.ff.net.0.proj",
    "**.ff.net.2",
];

/// The policy table, first match wins. Layers no rule names stay dense (norms, biases,
/// embeddings are never GEMM weights; any GEMM weight not listed is kept dense on purpose).
pub const POLICY: &[Rule] = &[
    Rule { class: "conv_in", patterns: &["conv_in"], within: &[], q8: Dense, q4: Dense, why: "first layer: K = 9·4, sees the raw latents; 0.01 % of the weights" },
    Rule { class: "conv_out", patterns: &["conv_out"], within: &[], q8: Dense, q4: Dense, why: "last layer writes ε directly (N = 4); 0.01 % of the weights" },
    Rule {
        class: "time_embedding",
        patterns: &["time_embedding.**"],
        within: &[],
        q8: Dense,
        q4: Dense,
        why: "timestep MLP feeding every ResNet; 0.2 % of the weights",
    },
    Rule {
        class: "full_resolution",
        patterns: UNET_GEMMS,
        within: &["down_blocks.0", "up_blocks.3"],
        q8: Q8,
        q4: Q8,
        why: "every GEMM of the full-resolution blocks (SD1.5: 320 channels at 64² latents, 3 % of the GEMM weights): int8 even under q4 — they carry most of the int4 error (these blocks at int4, the rest of the table as is: ε cosine 0.935 instead of 0.997 on the fixtures; SD1.5: +12 MB)",
    },
    Rule {
        class: "down_half_resolution",
        patterns: UNET_GEMMS,
        within: &["down_blocks.1"],
        q8: Q8,
        q4: Q8,
        why: "every GEMM of the half-resolution down block (SD1.5: 640 channels at 32²): int8 even under q4 (at int4: ε cosine 0.984 instead of 0.997 on the fixtures, 0.933 instead of 0.994 on another random draw of the fixture models; SD1.5: +15 MB; up_blocks.2 costs twice the bytes for less)",
    },
    Rule {
        class: "motion_proj",
        patterns: &["**.motion_modules.*.proj_in", "**.motion_modules.*.proj_out"],
        within: &[],
        q8: Q8,
        q4: Q8,
        why: "motion-module input/output projections (around the temporal transformer, added to the residual stream): int8 even under q4 (at int4: ε cosine 0.994 instead of 0.997 on the fixtures, 0.988 on another random draw of the fixture models; SD1.5: +16 MB)",
    },
    Rule {
        class: "motion_value_out",
        patterns: &["**.motion_modules.*.**.to_v", "**.motion_modules.*.**.to_out.0"],
        within: &[],
        q8: Q8,
        q4: Q8,
        why: "value and output projections of the temporal attention (linear in the signal, where to_q/to_k errors only move softmax weights): int8 even under q4 (at int4: ε cosine 0.995 instead of 0.997 on the fixtures, 0.991 instead of 0.994 on another random draw of the fixture models; SD1.5: +33 MB)",
    },
    Rule {
        class: "motion",
        patterns: &["**.motion_modules.*.**.to_q", "**.motion_modules.*.**.to_k", "**.motion_modules.*.**.ff.net.0.proj", "**.motion_modules.*.**.ff.net.2"],
        within: &[],
        q8: Q8,
        q4: Q4,
        why: "motion-module query/key projections and feed-forward (temporal attention over ≤ 32 frames)",
    },
    Rule { class: "resnet_conv", patterns: &["**.resnets.*.conv1", "**.resnets.*.conv2"], within: &[], q8: Q8, q4: Q4, why: "ResNet 3×3 convolutions: most of the UNet's weights" },
    Rule {
        class: "resnet_shortcut",
        patterns: &["**.resnets.*.conv_shortcut"],
        within: &[],
        q8: Q8,
        q4: Q8,
        why: "1×1 channel-changing shortcuts: int8 even under q4 (alone at int4 they cost ε cosine 0.969 on the fixtures; SD1.5: +9 MB)",
    },
    Rule {
        class: "time_emb_proj",
        patterns: &["**.resnets.*.time_emb_proj"],
        within: &[],
        q8: Q8,
        q4: Q8,
        why: "per-ResNet timestep projection: one row per image, adds a bias to every pixel; int8 even under q4",
    },
    Rule {
        class: "sampler",
        patterns: &["**.downsamplers.*.conv", "**.upsamplers.*.conv"],
        within: &[],
        q8: Q8,
        q4: Q8,
        why: "down/up-sampling 3×3 convolutions: int8 even under q4 (alone at int4: cosine 0.987; SD1.5: +21 MB)",
    },
    Rule {
        class: "attention_proj",
        patterns: &["**.attentions.*.proj_in", "**.attentions.*.proj_out"],
        within: &[],
        q8: Q8,
        q4: Q8,
        why: "transformer input/output projections (1×1 conv or linear): int8 even under q4 (alone at int4: cosine 0.974; SD1.5: +10 MB)",
    },
    Rule {
        class: "attention",
        patterns: &["**.attn1.to_q", "**.attn1.to_k", "**.attn1.to_v", "**.attn1.to_out.0", "**.attn2.to_q", "**.attn2.to_k", "**.attn2.to_v", "**.attn2.to_out.0"],
        within: &[],
        q8: Q8,
        q4: Q8,
        why: "spatial self- and cross-attention projections: int8 even under q4 (alone at int4: cosine 0.976; SD1.5: +38 MB)",
    },
    Rule { class: "feed_forward", patterns: &["**.ff.net.0.proj", "**.ff.net.2"], within: &[], q8: Q8, q4: Q4, why: "GEGLU feed-forward" },
    Rule {
        class: "text_encoder",
        patterns: &["text_model.encoder.layers.*.self_attn.*", "text_model.encoder.layers.*.mlp.*"],
        within: &[],
        q8: Q8,
        q4: Q8,
        why: "CLIP runs once per prompt: int8 even under q4 (its output conditions every step)",
    },
];

/// Match dot-separated `name` against `pattern` (`*` = one segment, `**` = any number).
pub fn glob(pattern: &str, name: &str) -> bool {
    fn rec(p: &[&str], n: &[&str]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(&"**"), _) => rec(&p[1..], n) || (!n.is_empty() && rec(p, &n[1..])),
            (Some(&"*"), Some(_)) => rec(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let n: Vec<&str> = name.split('.').collect();
    rec(&p, &n)
}

/// The rule naming layer `name`, if any.
pub fn rule_for(name: &str) -> Option<&'static Rule> {
    POLICY.iter().find(|r| r.matches(name))
}

impl Rule {
    /// Whether the rule names layer `name`.
    pub fn matches(&self, name: &str) -> bool {
        let inside = |block: &&str| name.strip_prefix(block).is_some_and(|rest| rest.starts_with('.'));
        (self.within.is_empty() || self.within.iter().any(inside)) && self.patterns.iter().any(|p| glob(p, name))
    }
}

/// The largest group ≤ `preferred` that is a multiple of 8 and divides `k`.
pub fn fit_group(preferred: u32, k: usize) -> Option<u32> {
    let mut g = preferred - preferred % 8;
    while g >= 8 {
        if k.is_multiple_of(g as usize) {
            return Some(g);
        }
        g -= 8;
    }
    None
}

/// A scheme plus the concrete formats (and, for experiments, per-class overrides).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantPolicy {
    pub scheme: QuantScheme,
    /// The q8 format; its group is the preferred group size.
    pub q8: QuantFormat,
    /// The q4 format.
    pub q4: QuantFormat,
    /// `(class, choice)` replacing the table's choice for that class.
    pub overrides: Vec<(&'static str, Choice)>,
}

impl QuantPolicy {
    /// int8 symmetric, group 64.
    pub const Q8_FORMAT: QuantFormat = QuantFormat { bits: 8, group: 64, asymmetric: false };
    /// int4 asymmetric, group 32.
    pub const Q4_FORMAT: QuantFormat = QuantFormat { bits: 4, group: 32, asymmetric: true };

    pub fn new(scheme: QuantScheme) -> QuantPolicy {
        QuantPolicy { scheme, q8: Self::Q8_FORMAT, q4: Self::Q4_FORMAT, overrides: Vec::new() }
    }

    /// Override the table's choice for one class (quality experiments).
    pub fn with(mut self, class: &'static str, choice: Choice) -> QuantPolicy {
        self.overrides.push((class, choice));
        self
    }

    /// What the policy wants for layer `name` (before shape checks).
    pub fn choice(&self, name: &str) -> Choice {
        let Some(rule) = rule_for(name) else { return Choice::Dense };
        if let Some((_, c)) = self.overrides.iter().rev().find(|(class, _)| *class == rule.class) {
            return *c;
        }
        match self.scheme {
            QuantScheme::Q8 => rule.q8,
            QuantScheme::Q4 => rule.q4,
        }
    }

    /// The format of layer `name` with a K-major `[k, n]` weight, or `None` to keep it dense
    /// (policy, or a shape the kernels cannot take).
    pub fn format_for(&self, name: &str, k: usize, n: usize) -> Option<QuantFormat> {
        let base = match self.choice(name) {
            Choice::Dense => return None,
            Choice::Q8 => self.q8,
            Choice::Q4 => self.q4,
        };
        let group = fit_group(base.group, k)?;
        let f = QuantFormat { group, ..base };
        f.check(k, n).ok().map(|_| f)
    }

    /// The table and formats as JSON (quantized-file metadata, reports).
    pub fn describe(&self) -> serde_json::Value {
        let fmt = |f: QuantFormat| serde_json::json!({ "bits": f.bits, "group": f.group, "asymmetric": f.asymmetric });
        let rules: Vec<serde_json::Value> = POLICY
            .iter()
            .map(|r| {
                let c = self.overrides.iter().rev().find(|(class, _)| *class == r.class).map(|o| o.1).unwrap_or(match self.scheme {
                    QuantScheme::Q8 => r.q8,
                    QuantScheme::Q4 => r.q4,
                });
                serde_json::json!({ "class": r.class, "patterns": r.patterns, "within": r.within, "choice": c.name(), "why": r.why })
            })
            .collect();
        serde_json::json!({ "scheme": self.scheme.name(), "q8": fmt(self.q8), "q4": fmt(self.q4), "rules": rules, "default": "dense" })
    }
}

// ---------------------------------------------------------------------------------------------
// Loading.

/// Suffixes of a packed layer `X` in a quantized file: `X.qweight` (U8 `[K, N·bits/8]`, the
/// little-endian bytes of the kernels' u32 words), `X.qscales` (F16 `[K / group, N]`),
/// `X.qmins` (F16 `[K / group, N]`, asymmetric only).
pub const QWEIGHT: &str = "qweight";
pub const QSCALES: &str = "qscales";
pub const QMINS: &str = "qmins";

fn corrupt(file: String, message: String) -> Error {
    Error::Load(LoadError::Corrupt { file, format: "quantized weights", message })
}

/// The packed weight of layer `key` (K-major `[k, n]`) if the source holds one, validated.
pub fn read_packed(src: &dyn crate::load::WeightSource, key: &str, k: usize, n: usize) -> Result<Option<QuantizedMatrix>> {
    let (wname, sname, mname) = (format!("{key}.{QWEIGHT}"), format!("{key}.{QSCALES}"), format!("{key}.{QMINS}"));
    if !src.contains(&wname) {
        return Ok(None);
    }
    let origin = src.origin();
    let w = src.tensor(&wname)?;
    let s = src.tensor(&sname)?;
    let row = match w.shape[..] {
        [kk, row] if kk == k && row > 0 => row,
        _ => return Err(Error::Load(LoadError::Shape { file: origin, tensor: wname, expected: vec![k, n / 2], found: w.shape })),
    };
    let bits = if row * 8 == n * 4 {
        4
    } else if row == n {
        8
    } else {
        return Err(Error::Load(LoadError::Shape { file: origin, tensor: wname, expected: vec![k, n / 2], found: w.shape }));
    };
    let groups = match s.shape[..] {
        [g, nn] if nn == n && g > 0 && k.is_multiple_of(g) => g,
        _ => return Err(corrupt(origin, format!("`{sname}` has shape {:?}: expected [K / group, {n}] for `{wname}` {:?}", s.shape, w.shape))),
    };
    let asymmetric = src.contains(&mname);
    let format = QuantFormat { bits, group: (k / groups) as u32, asymmetric };
    format.check(k, n).map_err(|e| corrupt(origin.clone(), format!("`{key}`: {e}")))?;
    let mins = if asymmetric {
        let m = src.tensor(&mname)?;
        if m.shape != s.shape {
            return Err(Error::Load(LoadError::Shape { file: origin, tensor: mname, expected: s.shape.clone(), found: m.shape }));
        }
        if let Some(i) = m.data.iter().position(|&v| !v.is_finite() || half::f16::from_f32(v).to_f32() != v) {
            return Err(corrupt(origin, format!("`{mname}`: minimum {} at index {i} is not a finite f16 value", m.data[i])));
        }
        m.data.iter().map(|&v| half::f16::from_f32(v)).collect()
    } else {
        Vec::new()
    };
    if let Some(i) = s.data.iter().position(|v| !v.is_finite() || *v < 0.0) {
        return Err(corrupt(origin, format!("`{sname}`: scale {} at index {i} is not a finite non-negative number", s.data[i])));
    }
    if let Some(i) = s.data.iter().position(|&v| half::f16::from_f32(v).to_f32() != v) {
        return Err(corrupt(origin, format!("`{sname}`: scale {} at index {i} is not an f16 value (store scales as F16)", s.data[i])));
    }
    let mut bytes = Vec::with_capacity(w.data.len());
    for (i, &v) in w.data.iter().enumerate() {
        if !(0.0..=255.0).contains(&v) || v.fract() != 0.0 {
            return Err(corrupt(origin, format!("`{wname}`: element {i} is {v}, not a byte (store packed codes as U8)")));
        }
        bytes.push(v as u8);
    }
    let words = bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let scales = s.data.iter().map(|&v| half::f16::from_f32(v)).collect();
    Ok(Some(QuantizedMatrix { k, n, format, words, scales, mins }))
}

/// The packed file form of a quantized matrix: (`qweight` bytes, shape), scales, mins.
pub fn packed_bytes(q: &QuantizedMatrix) -> (Vec<u8>, [usize; 2]) {
    let bytes: Vec<u8> = q.words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let row = q.n * q.format.bits as usize / 8;
    (bytes, [q.k, row])
}

/// A GEMM weight for `l`'s layer `name` in kernel layout `kshape` (`[K, N]` or
/// `[KH, KW, Cin, Cout]`): packed from a quantized file; else quantized on the GPU if `l`'s
/// policy says so; else dense in `l`'s storage type. `kmajor` reads the dense weight and
/// converts it to kernel layout (called at most once).
pub fn load_gemm_weight(l: &Loader<'_>, name: &str, kshape: &[usize], kmajor: impl FnOnce() -> Result<Vec<f32>>) -> Result<Weight> {
    if let Some(r) = l.replay {
        return r.gemm(l.gpu, kshape, l.dtype);
    }
    let key = l.key(name);
    let n = kshape.last().copied().unwrap_or(0);
    let k = kshape.iter().product::<usize>().checked_div(n).unwrap_or(0);
    let quantized = if let Some(q) = read_packed(l.src, &key, k, n)? {
        QuantizedWeight::upload(l.gpu, &q, kshape.to_vec(), &key)?
    } else {
        let data = kmajor()?;
        match l.quant.and_then(|p| p.format_for(&key, k, n)) {
            Some(format) => {
                quant::check_values(&data).map_err(|e| corrupt(l.src.origin(), format!("`{key}.weight`: {e}")))?;
                quantize_on_gpu(l, &data, kshape, format, &key)?
            }
            // Recorded by the loader's upload.
            None => return Ok(Weight::Dense(l.upload(&data, kshape, &key)?)),
        }
    };
    let w = Weight::Quant(quantized);
    if let Some(rec) = l.record {
        rec.push_weight(&w);
    }
    Ok(w)
}

/// Upload `data` (f32), quantize it on the GPU, drop the dense copy.
fn quantize_on_gpu(l: &Loader<'_>, data: &[f32], kshape: &[usize], format: QuantFormat, key: &str) -> Result<QuantizedWeight> {
    let dense: Tensor = l.gpu.upload_weight_f32_as(data, kshape.to_vec(), DType::F32, key)?;
    let mut b = l.gpu.batch("quantize");
    let q = ops::quantize_weight(&mut b, &dense, format, key)?;
    b.submit()?;
    drop(dense);
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_segments() {
        assert!(glob("**.resnets.*.conv1", "down_blocks.0.resnets.1.conv1"));
        assert!(glob("**.resnets.*.conv1", "mid_block.resnets.0.conv1"));
        assert!(!glob("**.resnets.*.conv1", "down_blocks.0.resnets.1.conv1x"));
        assert!(glob("time_embedding.**", "time_embedding.linear_1"));
        assert!(glob("conv_in", "conv_in"));
        assert!(!glob("conv_in", "vae.conv_in"));
        assert!(glob("**.motion_modules.*.**", "up_blocks.3.motion_modules.2.transformer_blocks.0.attn1.to_q"));
    }

    #[test]
    fn the_table_classifies_sd_layers() {
        let q4 = QuantPolicy::new(QuantScheme::Q4);
        let q8 = QuantPolicy::new(QuantScheme::Q8);
        let cases = [
            ("conv_in", Dense, Dense),
            ("conv_out", Dense, Dense),
            ("time_embedding.linear_1", Dense, Dense),
            ("down_blocks.0.resnets.0.conv1", Q8, Q8),
            ("down_blocks.1.resnets.0.conv1", Q8, Q8),
            ("down_blocks.2.resnets.0.conv1", Q8, Q4),
            ("up_blocks.2.resnets.0.conv1", Q8, Q4),
            ("up_blocks.1.motion_modules.0.transformer_blocks.0.attn1.to_v", Q8, Q8),
            ("up_blocks.1.motion_modules.0.transformer_blocks.0.attn2.to_out.0", Q8, Q8),
            ("up_blocks.1.motion_modules.0.transformer_blocks.0.attn1.to_q", Q8, Q4),
            ("mid_block.motion_modules.0.transformer_blocks.0.ff.net.0.proj", Q8, Q4),
            ("up_blocks.3.motion_modules.2.transformer_blocks.0.ff.net.2", Q8, Q8),
            ("up_blocks.2.motion_modules.2.transformer_blocks.0.ff.net.2", Q8, Q4),
            ("down_blocks.2.motion_modules.0.proj_in", Q8, Q8),
            ("up_blocks.1.resnets.2.conv_shortcut", Q8, Q8),
            ("mid_block.resnets.1.time_emb_proj", Q8, Q8),
            ("down_blocks.2.downsamplers.0.conv", Q8, Q8),
            ("down_blocks.1.attentions.0.proj_in", Q8, Q8),
            ("up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k", Q8, Q8),
            ("mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj", Q8, Q4),
            ("down_blocks.2.motion_modules.1.transformer_blocks.0.attn1.to_k", Q8, Q4),
            ("down_blocks.0.motion_modules.1.transformer_blocks.0.attn1.to_out.0", Q8, Q8),
            ("mid_block.motion_modules.0.proj_out", Q8, Q8),
            ("text_model.encoder.layers.11.mlp.fc2", Q8, Q8),
            ("text_model.encoder.layers.0.self_attn.q_proj", Q8, Q8),
            ("text_model.embeddings.token_embedding", Dense, Dense),
            ("down_blocks.0.resnets.0.norm1", Dense, Dense),
            ("up_blocks.3.motion_modules.0.norm", Dense, Dense),
            ("up_blocks.2.motion_modules.0.norm", Dense, Dense),
            ("up_blocks.3.attentions.0.transformer_blocks.0.norm2", Dense, Dense),
            ("up_blocks.3.resnets.1.conv_shortcut", Q8, Q8),
            ("down_blocks.0.downsamplers.0.conv", Q8, Q8),
            ("down_blocks.00.resnets.0.conv1", Q8, Q4), // `within` matches whole segments
            ("down_blocks.10.resnets.0.conv1", Q8, Q4),
        ];
        for (name, c8, c4) in cases {
            assert_eq!((q8.choice(name), q4.choice(name)), (c8, c4), "{name}");
        }
        assert_eq!(q4.clone().with("attention", Dense).choice("down_blocks.2.attentions.0.transformer_blocks.0.attn1.to_q"), Dense);
    }

    #[test]
    fn groups_fit_k_or_the_layer_stays_dense() {
        assert_eq!(fit_group(32, 2880), Some(32));
        assert_eq!(fit_group(64, 320), Some(64));
        assert_eq!(fit_group(32, 72), Some(24));
        assert_eq!(fit_group(32, 16), Some(16));
        assert_eq!(fit_group(32, 37), None);
        let q4 = QuantPolicy::new(QuantScheme::Q4);
        let f = q4.format_for("down_blocks.2.resnets.0.conv1", 72, 8).unwrap();
        assert_eq!((f.bits, f.group, f.asymmetric), (4, 24, true));
        assert_eq!(q4.format_for("down_blocks.2.resnets.0.conv1", 72, 4), None); // N % 8
        assert_eq!(q4.format_for("conv_in", 2880, 320), None);
    }
}
