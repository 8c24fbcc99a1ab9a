//! Quantization quality on the tiny fixtures against the f32 path (numbers for the issue):
//! - ε prediction of one UNetMotion call (the recorded step-0 inputs of the diffusers run):
//!   cosine similarity ≥ 0.999 with q8 weights;
//! - the same with q4 weights: cosine ≥ 0.99 (the target). Round-to-nearest int4 on
//!   these *random-init* weights (N(0, 1/fan_in), no structure) adds ≈ 8 % relative output
//!   noise per layer (asymmetric, 32 values per group), and the ~100 layers on the path add
//!   up: every class int4 → rel L2 0.41, cosine 0.9135. What the table keeps int8 under q4
//!   was chosen by measured error per SD1.5 byte (`format_and_class_sweep`,
//!   `q4_fit_and_policy_variants`, and the per-layer numbers in the policy table): shortcuts,
//!   samplers, spatial transformer projections and attention (cosine 0.951, +79 MB), then the
//!   full-resolution blocks (`down_blocks.0`, `up_blocks.3`: most of the error, 3 % of the
//!   GEMM weights) and `down_blocks.1`, the motion modules' proj_in/proj_out and their
//!   attention's to_v/to_out → cosine 0.9974 (+76 MB; 0.9943–0.9991 on six other random
//!   weight draws, `scripts/q4_policy_experiment.py SEED`). An
//!   error-compensating rounding (GPTQ, calibrated) did not help here: 0.947 calibrated on
//!   other inputs, 0.959 even on the test input itself; an MSE-optimal scale search lowers the
//!   weights' error 7 % but *worsens* ε (cosine 0.905 instead of 0.9135);
//! - the text encoder's prompt embeddings (cosine, printed);
//! - a whole tiny generation (4 frames 128×64, 3 DDIM steps, CFG 7.5): frames PSNR, printed.
//!
//! `cargo test --test quant_quality -- --nocapture` prints the numbers; the ignored
//! `format_and_class_sweep` prints the measurements behind the policy's format choices.

mod common;

use animatediff_wgpu::gpu::{DType, Gpu};
use animatediff_wgpu::load::MapSource;
use animatediff_wgpu::model::nn::layout;
use animatediff_wgpu::model::quant_policy::{Choice, QuantPolicy, QuantScheme, POLICY};
use animatediff_wgpu::model::{UNet, UNetOptions};
use animatediff_wgpu::pipeline::generate::{GenerateParams, InitLatents};
use animatediff_wgpu::pipeline::load::{build_models_with, open_pipeline, ModelPaths, Precision, Weights};
use animatediff_wgpu::quant::{code_max, nearest_code, quantize, scale_factor, QuantFormat, QuantizedMatrix};
use common::*;
use pollster::block_on;

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(1e-300)
}

/// PSNR of frames in [0, 1].
pub fn psnr(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (1.0 / mse.max(1e-20)).log10()
}

struct StepZero {
    weights: MapSource,
    motion: MapSource,
    x: Vec<f32>,
    shape: [usize; 5],
    t: f32,
    ctx: Vec<f32>,
    ctx_shape: [usize; 3],
}

fn step_zero() -> StepZero {
    let refs = read_safetensors(&tiny().join("reference/pipeline_diffusers.safetensors"));
    let x = get(&refs, "step0.unet_in_sample");
    let [b, c, f, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4]];
    let ehs = get(&refs, "step0.unet_in_encoder_hidden_states");
    let (l, d) = (ehs.shape[1], ehs.shape[2]);
    let ctx: Vec<f32> = (0..b).flat_map(|bi| ehs.data[bi * f * l * d..(bi * f + 1) * l * d].to_vec()).collect();
    StepZero {
        weights: read_safetensors(&tiny().join("diffusers/unet/diffusion_pytorch_model.safetensors")),
        motion: read_safetensors(&tiny().join("motion_adapter/diffusion_pytorch_model.safetensors")),
        x: layout::bcfhw_to_nhwc(&x.data, b, c, f, h, w),
        shape: [b, c, f, h, w],
        t: get(&refs, "step0.timestep").data[0],
        ctx,
        ctx_shape: [b, l, d],
    }
}

/// ε of the step-0 UNetMotion call with weights per `policy` (dense f32 without one).
fn epsilon(gpu: &Gpu, s: &StepZero, policy: Option<&QuantPolicy>) -> Vec<f32> {
    epsilon_as(gpu, s, policy, DType::F32)
}

/// [`epsilon`] with activations (and dense weights) stored as `dtype`.
fn epsilon_as(gpu: &Gpu, s: &StepZero, policy: Option<&QuantPolicy>, dtype: DType) -> Vec<f32> {
    let unet = UNet::load_quantized(gpu, &s.weights, &tiny_unet_config(), Some((&s.motion, &tiny_motion_config())), dtype, policy).unwrap();
    let [b, c, f, h, w] = s.shape;
    let xt = gpu.upload_f32_as(&s.x, [b * f, h, w, c], dtype, "x").unwrap();
    let ct = gpu.upload_f32_as(&s.ctx, s.ctx_shape, dtype, "ctx").unwrap();
    let y = unet.forward(gpu, &xt, s.t, &ct, f, &UNetOptions::default()).unwrap();
    read(gpu, &y)
}

fn generate(gpu: &Gpu, weights: Weights) -> Vec<f32> {
    let paths = ModelPaths { model: tiny().join("diffusers"), motion: tiny().join("motion_adapter"), ..Default::default() };
    let host = open_pipeline(&paths).unwrap();
    let models = build_models_with(gpu, &host.components(), Precision::F32, weights).unwrap();
    let mut p = GenerateParams::new("a corgi running on the beach, golden hour, highly detailed", host.scheduler.clone());
    p.negative_prompt = "blurry, low quality".into();
    // Smaller than the diffusers fixture (8 frames 192×128, 4 steps): the reference here is
    // our own f32 run, and the VAE at full size dominated this test's time on lavapipe.
    (p.frames, p.height, p.width, p.steps, p.guidance_scale) = (4, 64, 128, 3, 7.5);
    p.init = InitLatents::Seed(11);
    block_on(models.generate(gpu, &p, &mut |_| {})).unwrap().frames
}

#[test]
fn epsilon_cosine_similarity_of_quantized_unet_motion() {
    let gpu = gpu();
    let s = step_zero();
    let reference = epsilon(&gpu, &s, None);
    // (scheme, asserted, the target)
    for (scheme, min, target) in [(QuantScheme::Q8, 0.999, 0.999), (QuantScheme::Q4, 0.99, 0.99)] {
        let policy = QuantPolicy::new(scheme);
        let eps = epsilon(&gpu, &s, Some(&policy));
        let cos = cosine(&eps, &reference);
        let verdict = if cos >= target { "meets" } else { "BELOW" };
        eprintln!("quality: ε cosine similarity {} vs f32 = {cos:.6} (rel L2 {:.3e}; {verdict} the issue's {target})", scheme.name(), rel_l2(&eps, &reference));
        assert!(cos >= min, "{}: ε cosine {cos} < {min}", scheme.name());
    }
    if gpu.info().shader_f16 {
        // f16 activations: the storage-precision floor, and q8 weights on top of it.
        for (what, policy) in [("f16", None), ("q8 + f16 activations", Some(QuantPolicy::new(QuantScheme::Q8))), ("q4 + f16 activations", Some(QuantPolicy::new(QuantScheme::Q4)))] {
            let eps = epsilon_as(&gpu, &s, policy.as_ref(), DType::F16);
            let cos = cosine(&eps, &reference);
            eprintln!("quality: ε cosine similarity {what} vs f32 = {cos:.6} (rel L2 {:.3e})", rel_l2(&eps, &reference));
            assert!(cos >= 0.99, "{what}: ε cosine {cos}");
        }
    }
}

#[test]
fn text_embeddings_of_quantized_clip() {
    use animatediff_wgpu::model::{ClipConfig, ClipTextModel};
    let gpu = gpu();
    let refs = read_safetensors(&tiny().join("reference/pipeline_diffusers.safetensors"));
    let mut w = read_safetensors(&tiny().join("diffusers/text_encoder/model.safetensors"));
    if !w.tensors.keys().any(|k| k.starts_with("text_model.")) {
        w = with_prefix(&w, "", "text_model.");
    }
    let cfg = ClipConfig { hidden_size: 16, intermediate_size: 37, num_hidden_layers: 2, num_attention_heads: 2, ..ClipConfig::sd15() };
    let ids = ids(&refs, "prompt_input_ids");
    let embed = |p: Option<&QuantPolicy>| {
        let clip = ClipTextModel::load_quantized(&gpu, &w, &cfg, DType::F32, p).unwrap();
        read(&gpu, &clip.forward(&gpu, &ids, 77, 0).unwrap())
    };
    let reference = embed(None);
    for scheme in [QuantScheme::Q8, QuantScheme::Q4] {
        let e = embed(Some(&QuantPolicy::new(scheme)));
        let cos = cosine(&e, &reference);
        eprintln!("quality: prompt embeddings cosine {} vs f32 = {cos:.6} (rel L2 {:.3e})", scheme.name(), rel_l2(&e, &reference));
        assert!(cos >= 0.999, "{}: embeddings cosine {cos}", scheme.name());
    }
}

#[test]
fn tiny_generation_psnr_of_quantized_weights() {
    let gpu = gpu();
    let reference = generate(&gpu, Weights::Dense);
    for (weights, name) in [(Weights::Q8, "q8"), (Weights::Q4, "q4")] {
        let frames = generate(&gpu, weights);
        let p = psnr(&frames, &reference);
        eprintln!("quality: frames PSNR {name} vs f32 = {p:.2} dB (max abs {:.3e})", max_abs(&frames, &reference));
        assert!(p.is_finite() && p > 20.0, "{name}: PSNR {p}");
    }
}

/// The measurements behind the policy: every candidate format on all quantizable layers, then
/// each layer class alone at q4 (which classes are sensitive).
#[test]
#[ignore]
fn format_and_class_sweep() {
    let gpu = gpu();
    let s = step_zero();
    let reference = epsilon(&gpu, &s, None);
    let report = |what: &str, p: &QuantPolicy| {
        let eps = epsilon(&gpu, &s, Some(p));
        eprintln!("sweep: {what:<40} cosine {:.6}  rel L2 {:.3e}", cosine(&eps, &reference), rel_l2(&eps, &reference));
    };
    let all = |fmt: QuantFormat| {
        let mut p = QuantPolicy::new(if fmt.bits == 8 { QuantScheme::Q8 } else { QuantScheme::Q4 });
        (p.q8, p.q4) = (fmt, fmt);
        for r in POLICY {
            if r.q8 != Choice::Dense {
                p = p.with(r.class, if fmt.bits == 8 { Choice::Q8 } else { Choice::Q4 });
            }
        }
        p
    };
    for (bits, group, asymmetric) in [(8, 32, false), (8, 64, false), (8, 128, false), (8, 4096, false), (8, 64, true), (4, 32, false), (4, 32, true), (4, 64, false), (4, 64, true)] {
        let fmt = QuantFormat { bits, group, asymmetric };
        report(&format!("all layers q{bits} g{group}{}", if asymmetric { " asym" } else { " sym" }), &all(fmt));
    }
    for r in POLICY {
        if r.q8 == Choice::Dense {
            continue;
        }
        let mut p = QuantPolicy::new(QuantScheme::Q4);
        for o in POLICY {
            p = p.with(o.class, if o.class == r.class { Choice::Q4 } else { Choice::Dense });
        }
        report(&format!("only {} q4", r.class), &p);
    }
    for r in POLICY {
        // What keeping one class at the table's q8 fallback is worth: all q4 except this class dense.
        if r.q8 == Choice::Dense {
            continue;
        }
        let p = all(QuantPolicy::Q4_FORMAT).with(r.class, Choice::Dense);
        report(&format!("all q4 but {} dense", r.class), &p);
    }
}


/// How the q4 experiment fits a group's scale and minimum.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fit {
    /// The group's `[min, max]` (the quantizer's, CPU = GPU).
    MinMax,
    /// The range shrunk at either end by 0…5/32 of it, whichever of the 36 candidates gives the
    /// least squared reconstruction error (the MSE-optimal fit the issue suggested trying).
    MseSearch,
}

/// [`quantize`] with `fit`: the min-max result, each asymmetric group's scale/minimum then
/// replaced by the searched ones and its codes recomputed.
fn quantize_with(w: &[f32], k: usize, n: usize, f: QuantFormat, fit: Fit) -> QuantizedMatrix {
    let mut q = quantize(w, k, n, f).unwrap();
    if fit == Fit::MinMax || !f.asymmetric {
        return q;
    }
    let (g, top, rcp, bits, pw) = (f.group as usize, code_max(f), scale_factor(f), f.bits, f.per_word());
    let code = |v: f32, s: f32, m: f32| if s > 0.0 && v - m > 0.0 { nearest_code(v - m, s, top) } else { 0 };
    for gi in 0..k / g {
        for col in 0..n {
            let column: Vec<f32> = (0..g).map(|j| w[(gi * g + j) * n + col]).collect();
            let lo = column.iter().cloned().fold(f32::INFINITY, f32::min);
            let hi = column.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mut best = (f64::INFINITY, q.scales[gi * n + col], q.mins[gi * n + col]);
            for a in 0..6 {
                for b in 0..6 {
                    let r = hi - lo;
                    let (l, h) = (lo + a as f32 * r / 32.0, hi - b as f32 * r / 32.0);
                    let (s16, m16) = (half::f16::from_f32((h - l) * rcp), half::f16::from_f32(l));
                    let (s, m) = (s16.to_f32(), m16.to_f32());
                    let err: f64 = column.iter().map(|&v| f64::from(code(v, s, m) as f32 * s + m - v).powi(2)).sum();
                    if err < best.0 {
                        best = (err, s16, m16);
                    }
                }
            }
            (q.scales[gi * n + col], q.mins[gi * n + col]) = (best.1, best.2);
            let (s, m) = (best.1.to_f32(), best.2.to_f32());
            for (j, &v) in column.iter().enumerate() {
                let e = (gi * g + j) * n + col;
                let shift = (e % pw) as u32 * bits;
                q.words[e / pw] = (q.words[e / pw] & !(((1u32 << bits) - 1) << shift)) | (code(v, s, m) << shift);
            }
        }
    }
    q
}

thread_local! {
    static WEIGHT_ERR: std::cell::RefCell<(f64, f64)> = const { std::cell::RefCell::new((0.0, 0.0)) };
}

/// `src` with every layer `policy` quantizes replaced by its packed form (as a quantized
/// file holds it), fitted per `fit` on the CPU.
fn packed(src: &MapSource, policy: &QuantPolicy, fit: Fit) -> MapSource {
    use animatediff_wgpu::load::HostTensor;
    use animatediff_wgpu::model::quant_policy::packed_bytes;
    use animatediff_wgpu::ops::{conv_weight_from_torch, linear_weight_from_torch};
    let mut out = src.clone();
    for (name, t) in &src.tensors {
        let Some(key) = name.strip_suffix(".weight") else { continue };
        let (k, n, kmajor) = match t.shape[..] {
            [o, i] => (i, o, linear_weight_from_torch(&t.data, o, i)),
            [o, i, kh, kw] => (i * kh * kw, o, conv_weight_from_torch(&t.data, o, i, kh, kw)),
            _ => continue,
        };
        let Some(f) = policy.format_for(key, k, n) else { continue };
        let kmajor = kmajor.unwrap();
        let q = quantize_with(&kmajor, k, n, f, fit);
        let d = q.dequantize();
        let mse: f64 = kmajor.iter().zip(&d).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>();
        let ms: f64 = kmajor.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>();
        WEIGHT_ERR.with(|e| { let mut e = e.borrow_mut(); e.0 += mse; e.1 += ms; });
        let (bytes, shape) = packed_bytes(&q);
        let g = k / f.group as usize;
        out.tensors.insert(format!("{key}.qweight"), HostTensor::new(shape, bytes.iter().map(|&b| f32::from(b)).collect()));
        out.tensors.insert(format!("{key}.qscales"), HostTensor::new([g, n], q.scales.iter().map(|v| v.to_f32()).collect()));
        if f.asymmetric {
            out.tensors.insert(format!("{key}.qmins"), HostTensor::new([g, n], q.mins.iter().map(|v| v.to_f32()).collect()));
        }
    }
    out
}

/// The q4 quality levers measured (numbers in the policy table and the issue): the scale fit
/// (min-max vs an MSE-optimal search) and which layer classes stay int8, with the SD1.5 weight
/// bytes each adds to the q4 plan.
#[test]
#[ignore]
fn q4_fit_and_policy_variants() {
    let gpu = gpu();
    let s = step_zero();
    let reference = epsilon(&gpu, &s, None);
    let eps_packed = |policy: &QuantPolicy, fit: Fit| {
        let w = StepZero { weights: packed(&s.weights, policy, fit), motion: packed(&s.motion, policy, fit), x: s.x.clone(), ctx: s.ctx.clone(), ..s };
        epsilon(&gpu, &w, None)
    };
    // The classes the table keeps int8 under q4 because of their cost per byte saved
    // (format_and_class_sweep and the per-layer measurements): shortcuts, samplers, transformer
    // projections, attention, the full-resolution blocks and down_blocks.1, the motion
    // projections and the motion attention's value/output projections.
    let int8 = ["resnet_shortcut", "attention_proj", "attention", "sampler", "full_resolution", "down_half_resolution", "motion_proj", "motion_value_out"];
    let table = QuantPolicy::new(QuantScheme::Q4);
    let variants: Vec<(&str, QuantPolicy)> = vec![
        ("every class int4", int8.iter().fold(table.clone(), |p, c| p.with(c, Choice::Q4))),
        ("full-resolution blocks int4", table.clone().with("full_resolution", Choice::Q4)),
        ("down_blocks.1 int4", table.clone().with("down_half_resolution", Choice::Q4)),
        ("motion proj_in/out int4", table.clone().with("motion_proj", Choice::Q4)),
        ("motion to_v/to_out int4", table.clone().with("motion_value_out", Choice::Q4)),
        ("the q4 table", table.clone()),
        ("the q4 table + feed_forward int8", table.with("feed_forward", Choice::Q8)),
    ];
    for (what, policy) in &variants {
        for fit in [Fit::MinMax, Fit::MseSearch] {
            WEIGHT_ERR.with(|e| *e.borrow_mut() = (0.0, 0.0));
            let eps = eps_packed(policy, fit);
            WEIGHT_ERR.with(|e| { let e = e.borrow(); eprintln!("  weights rel L2 {:.4e}", (e.0 / e.1).sqrt()) });
            eprintln!("variant: {what:<32} {fit:?}: ε cosine {:.6} rel L2 {:.3e}", cosine(&eps, &reference), rel_l2(&eps, &reference));
        }
    }
}
