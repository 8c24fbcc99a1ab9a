//! End to end against diffusers' AnimateDiffPipeline (tiny models, 8 frames at 192×128,
//! 4 DDIM steps, CFG 7.5, explicit initial latents): the diffusers folder, and the same
//! weights from an LDM single file (fp16) + the original-format `.ckpt` motion module.

mod common;

use std::path::PathBuf;

use animatediff_wgpu::model::motion::MotionNorm;
use animatediff_wgpu::pipeline::generate::{GenerateParams, InitLatents, Output};
use animatediff_wgpu::pipeline::load::{build_models_with, default_unet_options, open_pipeline, ModelPaths, Precision, Weights};
use animatediff_wgpu::pipeline::scheduler::SchedulerConfig;
use animatediff_wgpu::Gpu;
use common::*;
use pollster::block_on;

const PROMPT: &str = "a corgi running on the beach, golden hour, highly detailed";
const NEGATIVE: &str = "blurry, low quality";
/// f16 activations over four CFG-7.5 steps (f32 accumulation) vs diffusers' f32 run: final
/// latents' relative L2 and frames' max abs error. Measured on lavapipe: 1.04e-2 / 3.7e-2 with
/// the tiled kernels, 1.02e-2 / 2.8e-2 with the register ones (the storage rounding, not a
/// kernel family); a wrong kernel gives errors of order 1.
const F16_LATENTS_TOL: f64 = 2e-2;
const F16_FRAMES_TOL: f64 = 6e-2;

/// One generation; `decode: false` skips the VAE (references that record final latents only).
fn run(gpu: &Gpu, paths: &ModelPaths, norm: MotionNorm, scheduler: Option<SchedulerConfig>, decode: bool) -> Output {
    run_as(gpu, Precision::F32, Weights::Dense, paths, norm, scheduler, decode)
}

/// [`run`] with activations (and dense weights) stored in `precision`, GEMM weights per `weights`.
fn run_as(gpu: &Gpu, precision: Precision, weights: Weights, paths: &ModelPaths, norm: MotionNorm, scheduler: Option<SchedulerConfig>, decode: bool) -> Output {
    let host = open_pipeline(paths).unwrap();
    let models = build_models_with(gpu, &host.components(), precision, weights).unwrap();
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
    check_within(what, out, reference, 1e-3, 5e-3);
}

/// [`check`] with tolerances: final latents' relative L2, frames' max abs error.
fn check_within(what: &str, out: &Output, reference: &str, latents_tol: f64, frames_tol: f64) {
    let refs = read_safetensors(&tiny().join("reference").join(reference));
    let want_t: Vec<u32> = get(&refs, "timesteps").data.iter().map(|&t| t as u32).collect();
    assert_eq!(out.timesteps, want_t, "{what}: timesteps");
    // Final latents reach |x| ≈ 70 (CFG 7.5 on random models): compare relatively.
    assert_close(&format!("{what}: final latents"), &out.latents, &get(&refs, "final_latents").data, latents_tol);
    if let Some(frames) = refs.tensors.get("frames") {
        assert_eq!(out.frames.len(), frames.data.len(), "{what}: frames were not decoded");
        let e = max_abs(&out.frames, &frames.data);
        eprintln!("{what}: frames max abs error {e:.2e}");
        assert!(e <= frames_tol, "{what}: frames differ by {e:.2e} > {frames_tol:.0e}");
    }
}

#[test]
fn diffusers_folder_matches_animatediff_pipeline() {
    let gpu = gpu();
    let out = run(&gpu, &tiny_diffusers_paths(), MotionNorm::Diffusers, None, true);
    assert_eq!((out.frame_count, out.height, out.width), (8, 128, 192));
    check("diffusers folder", &out, "pipeline_diffusers.safetensors");
}

/// What a real GPU runs, end to end: the workgroup-tiled kernel family (flash attention and
/// the motion modules' tiled temporal attention, tiled GEMMs, per-workgroup LayerNorm), which
/// every non-software adapter gets and which the other tests here never take on lavapipe; in
/// f32 and, where the adapter has shader-f16, with f16 activations (a GPU's default then).
/// q4 weights (dequantized inside the tiled GEMM) have no diffusers reference: the same q4
/// run on the register kernels is the reference.
#[test]
fn gpu_kernel_family_matches_animatediff_pipeline() {
    use animatediff_wgpu::gpu::{GpuOptions, KernelPreference};
    let family = |kernels| block_on(Gpu::new(GpuOptions { kernels, ..GpuOptions::default() })).unwrap();
    let gpu = family(KernelPreference::Tiled);
    assert!(gpu.info().tiled_kernels);
    let paths = tiny_diffusers_paths();
    let out = run(&gpu, &paths, MotionNorm::Diffusers, None, true);
    check("tiled kernels, f32", &out, "pipeline_diffusers.safetensors");
    if gpu.info().shader_f16 {
        let out = run_as(&gpu, Precision::F16, Weights::Dense, &paths, MotionNorm::Diffusers, None, true);
        check_within("tiled kernels, f16 activations", &out, "pipeline_diffusers.safetensors", F16_LATENTS_TOL, F16_FRAMES_TOL);
    }
    let tiled = run_as(&gpu, Precision::F32, Weights::Q4, &paths, MotionNorm::Diffusers, None, false);
    let registers = run_as(&family(KernelPreference::Registers), Precision::F32, Weights::Q4, &paths, MotionNorm::Diffusers, None, false);
    assert_close("q4 weights: tiled vs register kernels, final latents", &tiled.latents, &registers.latents, 1e-4);
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
