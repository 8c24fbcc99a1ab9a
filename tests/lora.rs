//! LoRA parsing and merging against diffusers (`scripts/make_lora_fixtures.py`): kohya (diffusers
//! and LDM module paths, LoCon convs, text encoder), diffusers/PEFT (metadata alpha), AnimateDiff
//! MotionLoRA (original `.ckpt` and diffusers naming), the typed errors, and the tiny
//! AnimateDiffPipeline with three LoRAs fused.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use animatediff_wgpu::load::archive::TensorArchive;
use animatediff_wgpu::load::component::{open_diffusers_dir, open_motion, open_single_file};
use animatediff_wgpu::load::lora::{apply, open_lora, Lora, LoraDeltas, LoraTarget};
use animatediff_wgpu::load::{HostTensor, LoadError, MapSource, WeightSource};
use common::*;

fn lora_dir() -> PathBuf {
    tiny().join("lora")
}

fn refs() -> MapSource {
    read_safetensors(&lora_dir().join("reference.safetensors"))
}

/// Compare every `<prefix>.<name>` reference with `src.tensor(name)`; returns the count.
fn check_refs(what: &str, refs: &MapSource, prefix: &str, src: &dyn WeightSource, filter: impl Fn(&str) -> bool) -> usize {
    let mut n = 0;
    let mut worst = 0f64;
    for (k, want) in &refs.tensors {
        let Some(name) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else { continue };
        if !filter(name) {
            continue;
        }
        let got = src.tensor(name).unwrap_or_else(|e| panic!("{what}: {name}: {e}"));
        assert_eq!(got.shape, want.shape, "{what}: {name}");
        let e = max_abs(&got.data, &want.data);
        assert!(e <= 2e-6, "{what}: {name}: max abs {e:.2e}");
        worst = worst.max(e);
        n += 1;
    }
    eprintln!("{what}: {n} merged tensors, max abs error {worst:.2e}");
    assert!(n > 0, "{what}: no references");
    n
}

fn te_name(n: &str) -> bool {
    n.starts_with("text_model.")
}

#[test]
fn kohya_unet_and_text_encoder_match_diffusers() {
    let d = open_diffusers_dir(tiny().join("diffusers")).unwrap();
    let lora = open_lora(lora_dir().join("kohya_unet_te.safetensors")).unwrap();
    assert!(lora.targets().contains(&LoraTarget::Unet) && lora.targets().contains(&LoraTarget::TextEncoder));
    assert!(lora.ignored.is_empty(), "{:?}", lora.ignored);
    let loras = [(lora, 0.8)];
    let unet = apply(&d.unet, &loras, LoraTarget::Unet).unwrap();
    let r = &unet.reports()[0];
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    // 16 transformers × 10 modules + 14 LoCon / linear resnet modules (see the script).
    eprintln!("kohya unet: {} modules merged", r.matched.len());
    assert!(r.matched.len() >= 160);
    check_refs("kohya unet", &refs(), "kohya", &unet, |n| !te_name(n));
    let te = apply(&d.text_encoder, &loras, LoraTarget::TextEncoder).unwrap();
    assert_eq!(te.reports()[0].matched.len(), 12);
    check_refs("kohya text encoder", &refs(), "kohya", &te, te_name);
    // untouched tensors are the base's
    let n = "down_blocks.0.resnets.0.norm1.weight";
    assert_eq!(unet.tensor(n).unwrap(), d.unet.tensor(n).unwrap());
    // no motion modules in this file: applying to the motion modules is a no-op, not an error
    let m = open_motion(tiny().join("motion_adapter")).unwrap();
    let mm = apply(&m.source, &loras, LoraTarget::Motion).unwrap();
    assert!(mm.merged_names().is_empty());
}

#[test]
fn kohya_ldm_paths_match_diffusers_on_both_unet_layouts() {
    let lora = open_lora(lora_dir().join("kohya_ldm_paths.safetensors")).unwrap();
    let loras = [(lora, 1.0)];
    let d = open_diffusers_dir(tiny().join("diffusers")).unwrap();
    let unet = apply(&d.unet, &loras, LoraTarget::Unet).unwrap();
    assert_eq!(unet.reports()[0].matched.len(), 10, "{:?}", unet.reports()[0].skipped);
    check_refs("kohya LDM paths (diffusers folder)", &refs(), "ldm", &unet, |_| true);
    // The same LoRA on the LDM single file's UNet (fp16 file, same weights).
    let s = open_single_file(tiny().join("original/sd15_tiny_ldm_fp16.safetensors")).unwrap();
    let unet = apply(&s.unet, &loras, LoraTarget::Unet).unwrap();
    check_refs("kohya LDM paths (LDM single file)", &refs(), "ldm", &unet, |_| true);
}

#[test]
fn peft_format_uses_metadata_alpha() {
    let d = open_diffusers_dir(tiny().join("diffusers")).unwrap();
    let lora = open_lora(lora_dir().join("peft_unet_te.safetensors")).unwrap();
    assert!(lora.modules().iter().all(|m| (m.scale() - 0.5).abs() < 1e-7), "lora_alpha 2 / r 4");
    let loras = [(lora, 0.6)];
    let unet = apply(&d.unet, &loras, LoraTarget::Unet).unwrap();
    assert!(unet.reports()[0].skipped.is_empty(), "{:?}", unet.reports()[0].skipped);
    check_refs("peft unet", &refs(), "peft", &unet, |n| !te_name(n));
    let te = apply(&d.text_encoder, &loras, LoraTarget::TextEncoder).unwrap();
    assert_eq!(te.reports()[0].matched.len(), 4);
    check_refs("peft text encoder", &refs(), "peft", &te, te_name);
}

#[test]
fn motion_lora_original_ckpt_and_diffusers_naming() {
    let refs = refs();
    for (file, motion) in [
        ("motion_lora_orig.ckpt", tiny().join("motion_adapter")),
        ("motion_lora_diffusers.safetensors", tiny().join("motion_adapter")),
        ("motion_lora_orig.ckpt", tiny().join("original/mm_tiny_v2_fp16.ckpt")),
    ] {
        let lora = open_lora(lora_dir().join(file)).unwrap();
        assert_eq!(lora.targets().into_iter().collect::<Vec<_>>(), vec![LoraTarget::Motion], "{file}");
        assert!(lora.modules().iter().all(|m| m.scale() == 1.0), "{file}: MotionLoRA has no alpha scaling");
        let m = open_motion(&motion).unwrap();
        let merged = apply(&m.source, &[(lora, 1.0)], LoraTarget::Motion).unwrap();
        let r = &merged.reports()[0];
        // 21 motion modules (8 down, 1 mid, 12 up) × 2 attentions × q/k/v/out.
        assert_eq!(r.matched.len(), 168, "{file}: {:?}", r.skipped);
        assert!(r.matched.iter().any(|n| n.starts_with("mid_block.")));
        check_refs(&format!("{file} on {}", motion.display()), &refs, "motion", &merged, |_| true);
    }
}

// --- errors and reports on synthetic files -------------------------------------------------------

fn write_st(dir: &Path, name: &str, tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> PathBuf {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.iter().map(|(k, s, v)| (k.to_string(), s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(k, s, b)| (k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    let path = dir.join(name);
    safetensors::serialize_to_file(views, None, &path).unwrap();
    path
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("adwgpu-lora-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn base() -> MapSource {
    let mut m = MapSource { origin: "base".into(), ..Default::default() };
    m.tensors.insert("down_blocks.0.attentions.0.proj_in.weight".into(), HostTensor::new(vec![4, 4, 1, 1], vec![0.0; 16]));
    m.tensors.insert("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight".into(), HostTensor::new(vec![4, 4], vec![0.0; 16]));
    m.tensors.insert("down_blocks.0.resnets.0.conv1.weight".into(), HostTensor::new(vec![4, 4, 3, 3], vec![0.0; 144]));
    m
}

#[test]
fn kohya_alpha_rules_partial_matches_and_errors() {
    let dir = tmpdir("synthetic");
    let ones = |n: usize| vec![1.0f32; n];
    // alpha 1 at rank 2 → ½; no alpha → 1; alpha 0 → 1 (kohya); conv LoRA on a 1×1 conv; a 3×3 LoCon;
    // one module for a layer the model does not have.
    let p = write_st(&dir, "k.safetensors", &[
        ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", vec![2, 4, 1, 1], ones(8)),
        ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", vec![4, 2, 1, 1], ones(8)),
        ("lora_unet_down_blocks_0_attentions_0_proj_in.alpha", vec![], vec![1.0]),
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", vec![2, 4], ones(8)),
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight", vec![4, 2], ones(8)),
        ("lora_unet_input_blocks_1_0_in_layers_2.lora_down.weight", vec![1, 4, 3, 3], ones(36)),
        ("lora_unet_input_blocks_1_0_in_layers_2.lora_up.weight", vec![4, 1, 1, 1], ones(4)),
        ("lora_unet_input_blocks_1_0_in_layers_2.alpha", vec![], vec![0.0]),
        ("lora_unet_down_blocks_9_attentions_0_proj_out.lora_down.weight", vec![2, 4], ones(8)),
        ("lora_unet_down_blocks_9_attentions_0_proj_out.lora_up.weight", vec![4, 2], ones(8)),
        ("lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", vec![2, 4], ones(8)),
        ("lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", vec![4, 2], ones(8)),
        ("some_metadata_tensor", vec![1], ones(1)),
    ]);
    let lora = Lora::open(&p).unwrap();
    assert_eq!(lora.ignored, vec!["some_metadata_tensor".to_string()]);
    assert_eq!(lora.foreign_modules(), vec!["lora_te2_text_model_encoder_layers_0_mlp_fc1"]);
    let m = apply(base(), &[(lora.clone(), 2.0)], LoraTarget::Unet).unwrap();
    let r = &m.reports()[0];
    assert_eq!(r.matched.len(), 3, "{r:?}");
    assert_eq!(r.skipped.len(), 1);
    assert!(r.skipped[0].starts_with("lora_unet_down_blocks_9"), "{:?}", r.skipped);
    // up @ down = rank (2) everywhere; × multiplier 2 × scale
    assert_eq!(m.tensor("down_blocks.0.attentions.0.proj_in.weight").unwrap().data, vec![2.0; 16]);
    assert_eq!(m.tensor("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight").unwrap().data, vec![4.0; 16]);
    assert_eq!(m.tensor("down_blocks.0.resnets.0.conv1.weight").unwrap().data, vec![2.0; 144]);
    // Nothing matches the text encoder names → a LoRA with TE modules errors; this one has none (te2 is foreign).
    let mut te = MapSource { origin: "te".into(), ..Default::default() };
    te.tensors.insert("text_model.encoder.layers.0.mlp.fc1.weight".into(), HostTensor::new(vec![4, 4], vec![0.0; 16]));
    assert!(apply(&te, &[(lora, 1.0)], LoraTarget::TextEncoder).unwrap().merged_names().is_empty());

    // A LoRA for another model: all modules unmatched → typed error naming the file.
    let p = write_st(&dir, "other.safetensors", &[
        ("lora_unet_single_blocks_0_linear1.lora_down.weight", vec![2, 4], ones(8)),
        ("lora_unet_single_blocks_0_linear1.lora_up.weight", vec![4, 2], ones(8)),
    ]);
    let err = apply(base(), &[(Lora::open(&p).unwrap(), 1.0)], LoraTarget::Unet).unwrap_err();
    assert!(matches!(&err, LoadError::Unsupported { file, .. } if file.contains("other.safetensors")), "{err}");
    // Shape that does not fit → skipped with a reason (and here: nothing left → error).
    let p = write_st(&dir, "shape.safetensors", &[
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", vec![2, 5], ones(10)),
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight", vec![4, 2], ones(8)),
    ]);
    let err = apply(base(), &[(Lora::open(&p).unwrap(), 1.0)], LoraTarget::Unet).unwrap_err().to_string();
    assert!(err.contains("does not fit"), "{err}");

    // LoHa / DoRA / LoRA-bias files → Unsupported; not a LoRA at all → Unsupported.
    for (name, key) in [("loha", "lora_unet_x.hada_w1_a"), ("dora", "lora_unet_x.dora_scale"), ("bias", "unet.x.lora_B.bias")] {
        let p = write_st(&dir, &format!("{name}.safetensors"), &[(key, vec![2], ones(2))]);
        let err = Lora::open(&p).unwrap_err();
        assert!(matches!(err, LoadError::Unsupported { .. }), "{name}: {err}");
    }
    let p = write_st(&dir, "plain.safetensors", &[("conv_in.weight", vec![2], ones(2))]);
    assert!(matches!(Lora::open(&p).unwrap_err(), LoadError::Unsupported { .. }));
    // A down without an up is ignored (listed), not merged.
    let p = write_st(&dir, "half.safetensors", &[
        ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", vec![2, 4, 1, 1], ones(8)),
        ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", vec![4, 2, 1, 1], ones(8)),
        ("lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight", vec![2, 4, 3, 3], ones(72)),
    ]);
    assert_eq!(Lora::open(&p).unwrap().ignored.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn several_loras_add_up_and_deltas_attach_to_components() {
    let d = open_diffusers_dir(tiny().join("diffusers")).unwrap();
    let k = open_lora(lora_dir().join("kohya_unet_te.safetensors")).unwrap();
    let p = open_lora(lora_dir().join("peft_unet_te.safetensors")).unwrap();
    let n = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight";
    let base = d.unet.tensor(n).unwrap();
    let only_k = apply(&d.unet, &[(k.clone(), 0.8)], LoraTarget::Unet).unwrap().tensor(n).unwrap();
    let only_p = apply(&d.unet, &[(p.clone(), 0.6)], LoraTarget::Unet).unwrap().tensor(n).unwrap();
    let deltas = Arc::new(LoraDeltas::resolve(&d.unet, &[(k, 0.8), (p, 0.6)], LoraTarget::Unet).unwrap());
    // The same deltas served by the ComponentSource itself (what open_pipeline does), raw() included.
    let unet = d.unet.clone().with_lora(deltas);
    let both = unet.tensor(n).unwrap();
    for i in 0..base.data.len() {
        let want = only_k.data[i] + only_p.data[i] - base.data[i];
        assert!((both.data[i] - want).abs() < 1e-6);
    }
    let raw = unet.raw(n).unwrap();
    assert_eq!(raw.bytes.len(), both.data.len() * 4);
    let _ = TensorArchive::open_path(lora_dir().join("kohya_unet_te.safetensors")).unwrap();
}

// --- end to end -----------------------------------------------------------------------------------

#[test]
fn pipeline_with_kohya_peft_and_motion_loras_matches_diffusers() {
    use animatediff_wgpu::pipeline::generate::{GenerateParams, InitLatents};
    use animatediff_wgpu::pipeline::load::{build_models, default_unet_options, open_pipeline, ModelPaths, Precision};
    let gpu = gpu();
    let refs = refs();
    let dir = lora_dir();
    let paths = ModelPaths {
        model: tiny().join("diffusers"),
        motion: tiny().join("motion_adapter"),
        loras: vec![(dir.join("kohya_unet_te.safetensors"), 0.8), (dir.join("peft_unet_te.safetensors"), 0.6), (dir.join("motion_lora_orig.ckpt"), 1.0)],
        ..Default::default()
    };
    let host = open_pipeline(&paths).unwrap();
    let lines: Vec<&String> = host.description.iter().filter(|l| l.starts_with("lora: ")).collect();
    eprintln!("{}", host.description.join("\n"));
    assert_eq!(lines.len(), 3);
    let models = build_models(&gpu, &host.components(), Precision::F32).unwrap();
    let mut p = GenerateParams::new("a corgi running on the beach, golden hour, highly detailed", host.scheduler.clone());
    p.negative_prompt = "blurry, low quality".into();
    (p.frames, p.height, p.width, p.steps, p.guidance_scale) = (8, 64, 64, 4, 7.5);
    p.init = InitLatents::Tensor(get(&refs, "pipeline.init_latents").data.clone());
    p.unet = default_unet_options(&host.motion);

    let ctx = read(&gpu, &pollster::block_on(models.encode_prompts(&gpu, &p)).unwrap());
    let mut want = get(&refs, "pipeline.negative_prompt_embeds").data.clone();
    want.extend_from_slice(&get(&refs, "pipeline.prompt_embeds").data);
    assert_close("LoRA text encoder: [negative, prompt] embeddings", &ctx, &want, 1e-4);

    let out = pollster::block_on(models.generate(&gpu, &p, &mut |_| {})).unwrap();
    let want_t: Vec<u32> = get(&refs, "pipeline.timesteps").data.iter().map(|&t| t as u32).collect();
    assert_eq!(out.timesteps, want_t);
    assert_close("LoRA pipeline: final latents", &out.latents, &get(&refs, "pipeline.final_latents").data, 1e-3);
    let e = max_abs(&out.frames, &get(&refs, "pipeline.frames").data);
    eprintln!("LoRA pipeline: frames max abs error {e:.2e}");
    assert!(e <= 5e-3, "frames differ by {e:.2e}");

    // Without the LoRAs the result is different (the merge did something).
    let plain = open_pipeline(&ModelPaths { loras: Vec::new(), ..paths }).unwrap();
    let plain_models = build_models(&gpu, &plain.components(), Precision::F32).unwrap();
    let ctx0 = read(&gpu, &pollster::block_on(plain_models.encode_prompts(&gpu, &p)).unwrap());
    assert!(rel_l2(&ctx0, &want) > 1e-2);
}
