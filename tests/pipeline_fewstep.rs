//! Few-step samplers end to end against diffusers' AnimateDiffPipeline (tiny models, 8 frames at
//! 64×64, 4 steps, seeded generator; `scripts/make_scheduler_fixtures.py`):
//! Euler discrete with trailing spacing and guidance 1.0 (AnimateDiff-Lightning: one batch, no
//! CFG, model input scaled by 1/√(σ²+1), initial noise × σ_max), and LCM with guidance 1.5
//! (AnimateLCM: step noise drawn from the same torch generator after the initial latents).

mod common;

use animatediff_wgpu::pipeline::generate::{GenerateParams, InitLatents, Output};
use animatediff_wgpu::pipeline::load::{build_models, default_unet_options, open_pipeline, ModelPaths, Precision};
use animatediff_wgpu::pipeline::sampler::{recipe_config, SchedulerKind};
use animatediff_wgpu::Gpu;
use common::*;
use pollster::block_on;

fn meta() -> serde_json::Value {
    let path = tiny().join("reference/schedulers_fewstep.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str::<serde_json::Value>(&text).expect("json")["meta"].clone()
}

fn run(gpu: &Gpu, kind: SchedulerKind, guidance: f32, seed: u64) -> Output {
    let m = meta();
    let host = open_pipeline(&ModelPaths { model: tiny().join("diffusers"), motion: tiny().join("motion_adapter"), ..Default::default() }).unwrap();
    let models = build_models(gpu, &host.components(), Precision::F32).unwrap();
    let mut p = GenerateParams::new(m["e2e"]["prompt"].as_str().unwrap(), recipe_config(&host.scheduler, kind));
    p.scheduler_kind = kind;
    p.negative_prompt = m["e2e"]["negative"].as_str().unwrap().into();
    let n = |k: &str| m["e2e"][k].as_u64().unwrap() as usize;
    (p.frames, p.height, p.width, p.steps, p.guidance_scale) = (n("frames"), n("height"), n("width"), n("steps"), guidance);
    p.init = InitLatents::Seed(seed);
    p.unet = default_unet_options(&host.motion);
    let mut steps = 0;
    let out = block_on(models.generate(gpu, &p, &mut |_| steps += 1)).unwrap();
    assert_eq!(steps, p.steps);
    out
}

fn check(what: &str, out: &Output, prefix: &str) {
    let refs = read_safetensors(&tiny().join("reference/schedulers_fewstep.safetensors"));
    let want_t: Vec<u32> = get(&refs, &format!("{prefix}timesteps")).data.iter().map(|&t| t as u32).collect();
    assert_eq!(out.timesteps, want_t, "{what}: timesteps");
    assert_close(&format!("{what}: final latents"), &out.latents, &get(&refs, &format!("{prefix}final_latents")).data, 1e-3);
    let e = max_abs(&out.frames, &get(&refs, &format!("{prefix}frames")).data);
    eprintln!("{what}: frames max abs error {e:.2e}");
    assert!(e <= 5e-3, "{what}: frames differ by {e:.2e} > 5e-3");
}

#[test]
fn euler_trailing_without_cfg_matches_diffusers() {
    let gpu = gpu();
    let seed = meta()["seeds"]["e2e_euler"].as_u64().unwrap();
    let out = run(&gpu, SchedulerKind::Euler, 1.0, seed);
    check("euler trailing, 4 steps, CFG 1", &out, "e2e_euler.");
}

#[test]
fn lcm_with_generator_noise_matches_diffusers() {
    let gpu = gpu();
    let seed = meta()["seeds"]["e2e_lcm"].as_u64().unwrap();
    let out = run(&gpu, SchedulerKind::Lcm, 1.5, seed);
    check("lcm, 4 steps, CFG 1.5", &out, "e2e_lcm.");
}
