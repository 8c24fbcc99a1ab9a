//! End to end against diffusers' AnimateDiffPipeline (tiny models, 8 frames at 192×128,
//! 4 DDIM steps, CFG 7.5, explicit initial latents): the diffusers folder, and the same
//! weights from an LDM single file (fp16) + the original-format `.ckpt` motion module.

mod common;

use std::path::PathBuf;

use animatediff_wgpu::model::motion::MotionNorm;
use animatediff_wgpu::pipeline::generate::{GenerateParams, InitLatents, Output};
use animatediff_wgpu::pipeline::load::{build_models, default_unet_options, open_pipeline, ModelPaths, Precision};
use animatediff_wgpu::pipeline::scheduler::SchedulerConfig;
use animatediff_wgpu::Gpu;
use common::*;
use pollster::block_on;

const PROMPT: &str = "a corgi running on the beach, golden hour, highly detailed";
const NEGATIVE: &str = "blurry, low quality";

/// One generation; `decode: false` skips the VAE (references that record final latents only).
fn run(gpu: &Gpu, paths: &ModelPaths, norm: MotionNorm, scheduler: Option<SchedulerConfig>, decode: bool) -> Output {
    let host = open_pipeline(paths).unwrap();
    let models = build_models(gpu, &host.components(), Precision::F32).unwrap();
    let refs = read_safetensors(&tiny().join("reference/pipeline_diffusers.safetensors"));
    let mut p = GenerateParams::new(PROMPT, scheduler.unwrap_or_else(|| host.scheduler.clone()));
    p.negative_prompt = NEGATIVE.into();
    (p.frames, p.height, p.width, p.steps, p.guidance_scale) = (8, 128, 192, 4, 7.5);
    p.init = InitLatents::Tensor(get(&refs, "init_latents").data.clone());
    p.unet = default_unet_options(&host.motion);
    p.unet.motion_norm = norm;
    p.decode = decode;
    let mut steps = 0;
    let out = block_on(models.generate(gpu, &p, &mut |_| steps += 1)).unwrap();
    assert_eq!(steps, 4);
    out
}

fn check(what: &str, out: &Output, reference: &str) {
    let refs = read_safetensors(&tiny().join("reference").join(reference));
    let want_t: Vec<u32> = get(&refs, "timesteps").data.iter().map(|&t| t as u32).collect();
    assert_eq!(out.timesteps, want_t, "{what}: timesteps");
    // Final latents reach |x| ≈ 70 (CFG 7.5 on random models): compare relatively.
    assert_close(&format!("{what}: final latents"), &out.latents, &get(&refs, "final_latents").data, 1e-3);
    if let Some(frames) = refs.tensors.get("frames") {
        assert_eq!(out.frames.len(), frames.data.len(), "{what}: frames were not decoded");
        let e = max_abs(&out.frames, &frames.data);
        eprintln!("{what}: frames max abs error {e:.2e}");
        assert!(e <= 5e-3, "{what}: frames differ by {e:.2e} > 5e-3");
    }
}

#[test]
fn diffusers_folder_matches_animatediff_pipeline() {
    let gpu = gpu();
    let out = run(&gpu, &tiny_diffusers_paths(), MotionNorm::Diffusers, None, true);
    assert_eq!((out.frame_count, out.height, out.width), (8, 128, 192));
    check("diffusers folder", &out, "pipeline_diffusers.safetensors");
}

#[test]
fn ldm_single_file_and_original_ckpt_match_the_same_run() {
    let gpu = gpu();
    let out = run(&gpu, &tiny_single_file_paths(), MotionNorm::Diffusers, None, true);
    check("LDM fp16 + .ckpt", &out, "pipeline_diffusers.safetensors");
}

#[test]
fn original_motion_norm_and_leading_schedule_variants() {
    let gpu = gpu();
    // These references hold final latents only: no VAE decode.
    let out = run(&gpu, &tiny_single_file_paths(), MotionNorm::Original, None, false);
    assert!(out.frames.is_empty(), "decode: false must skip the VAE");
    check("per-frame motion norm", &out, "pipeline_original_mm_norm.safetensors");
    let mut leading = SchedulerConfig::animatediff_default();
    leading.set_alpha_to_one = true;
    let out = run(&gpu, &tiny_diffusers_paths(), MotionNorm::Diffusers, Some(leading), false);
    check("leading DDIM", &out, "pipeline_leading_sched.safetensors");
}

#[test]
fn original_files_default_to_original_semantics() {
    let host = open_pipeline(&tiny_single_file_paths()).unwrap();
    assert_eq!(default_unet_options(&host.motion).motion_norm, MotionNorm::Original);
    let host = open_pipeline(&tiny_diffusers_paths()).unwrap();
    assert_eq!(default_unet_options(&host.motion).motion_norm, MotionNorm::Diffusers);
    let _ = PathBuf::new();
}

/// `--vae` accepts a diffusers folder, a diffusers-named file and an LDM-named file (here the
/// whole single file: its `first_stage_model.*` keys): the same tensors under diffusers names.
#[test]
fn separate_vae_in_every_naming_gives_the_same_weights() {
    use animatediff_wgpu::load::WeightSource;
    let reference = open_pipeline(&tiny_diffusers_paths()).unwrap();
    for vae in [tiny().join("diffusers/vae"), tiny().join("diffusers/vae/diffusion_pytorch_model.safetensors"), tiny().join("original/sd15_tiny_ldm_fp16.safetensors")] {
        let host = open_pipeline(&ModelPaths { vae: Some(vae.clone()), ..tiny_diffusers_paths() }).unwrap();
        assert_eq!(host.vae_config, reference.vae_config, "{}", vae.display());
        for name in reference.vae.names() {
            assert_eq!(host.vae.tensor(&name).unwrap(), reference.vae.tensor(&name).unwrap(), "{}: {name}", vae.display());
        }
    }
}
