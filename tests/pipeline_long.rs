//! Long videos against diffusers 0.42.1 on the tiny models (`scripts/make_long_video_fixtures.py`,
//! fixtures in `tests/fixtures/tiny/long/`; 64×64, 3 DDIM steps, CFG 7.5): prompt travel (lerp and
//! slerp embeddings, the per-frame text conditioning end to end), FreeNoise (windowed temporal
//! attentions with pyramid / flat weights, aligned and misaligned frame counts, the shuffled
//! seeded noise), whole-UNet context windows (ADE looped-uniform schedule, pyramid / flat fusion,
//! closed loop) and the per-block motion effect.

mod common;

use animatediff_wgpu::model::motion::{FuseMethod, TemporalWindows};
use animatediff_wgpu::model::unet::MotionEffect;
use animatediff_wgpu::pipeline::context::{free_noise_latents, ContextWindows, NoiseType};
use animatediff_wgpu::pipeline::generate::{GenerateParams, InitLatents, Models, Output};
use animatediff_wgpu::pipeline::load::{build_models, default_unet_options, open_pipeline, ModelPaths, Precision};
use animatediff_wgpu::pipeline::prompt_travel::{parse_keyframes, Interpolation};
use animatediff_wgpu::pipeline::rng::TorchGenerator;
use animatediff_wgpu::load::MapSource;
use animatediff_wgpu::Gpu;
use common::*;
use pollster::block_on;

fn meta() -> serde_json::Value {
    let path = tiny().join("long/long_video.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("json")
}

fn refs() -> MapSource {
    read_safetensors(&tiny().join("long/long_video.safetensors"))
}

fn setup(gpu: &Gpu) -> (Models, GenerateParams) {
    let m = meta();
    let host = open_pipeline(&ModelPaths { model: tiny().join("diffusers"), motion: tiny().join("motion_adapter"), ..Default::default() }).unwrap();
    let models = build_models(gpu, &host.components(), Precision::F32).unwrap();
    let mut p = GenerateParams::new(m["prompt"].as_str().unwrap(), host.scheduler.clone());
    p.negative_prompt = m["negative"].as_str().unwrap().into();
    (p.height, p.width, p.steps, p.guidance_scale) = (64, 64, m["steps"].as_u64().unwrap() as usize, m["guidance"].as_f64().unwrap() as f32);
    p.unet = default_unet_options(&host.motion);
    // Most checks compare final latents; the ones that check frames turn the VAE back on.
    p.decode = false;
    (models, p)
}

/// [`setup`] with f16 weights and activations.
fn setup_f16(gpu: &Gpu) -> (Models, GenerateParams) {
    let (_, p) = setup(gpu);
    let host = open_pipeline(&ModelPaths { model: tiny().join("diffusers"), motion: tiny().join("motion_adapter"), ..Default::default() }).unwrap();
    (build_models(gpu, &host.components(), Precision::F16).unwrap(), p)
}

fn explicit(p: &mut GenerateParams, r: &MapSource, name: &str) {
    let init = get(r, &format!("{name}.init_latents"));
    p.frames = init.shape[2];
    p.init = InitLatents::Tensor(init.data.clone());
}

fn generate(gpu: &Gpu, models: &Models, p: &GenerateParams) -> Output {
    block_on(models.generate(gpu, p, &mut |_| {})).unwrap()
}

fn check_latents(what: &str, out: &Output, r: &MapSource, name: &str) {
    assert_close(&format!("{what}: final latents"), &out.latents, &get(r, &format!("{name}.final_latents")).data, 1e-5);
}

/// Frames `from..` against the fixture's f16 frames.
fn check_frames(what: &str, out: &Output, r: &MapSource, key: &str, from: usize) {
    let want = get(r, key);
    let e = max_abs(&out.frames[from * out.width * out.height * 3..], &want.data);
    eprintln!("{what}: frames {from}.. max abs error {e:.2e} (reference f16)");
    assert!(e <= 3e-3, "{what}: frames differ by {e:.2e}");
}

fn travel_keys(m: &serde_json::Value, key: &str) -> Vec<String> {
    m["travel"][key].as_object().unwrap().iter().map(|(k, v)| format!("{k}:{}", v.as_str().unwrap())).collect()
}

fn travel_params(p: &mut GenerateParams) {
    let m = meta();
    p.prompt_travel = parse_keyframes("prompt", &travel_keys(&m, "prompts")).unwrap();
    p.negative_travel = parse_keyframes("negative prompt", &travel_keys(&m, "negatives")).unwrap();
}

#[test]
fn prompt_travel_lerp_matches_diffusers() {
    let gpu = gpu();
    let (models, mut p) = setup(&gpu);
    let r = refs();
    explicit(&mut p, &r, "travel_lerp");
    travel_params(&mut p);
    p.decode = true;
    let emb = block_on(models.encode_travel(&gpu, &p)).unwrap();
    assert_eq!(emb.dims(), &[2 * p.frames, 77, 16]);
    assert_close("lerp per-frame embeddings [neg; pos]", &read(&gpu, &emb), &get(&r, "travel_lerp.embeds").data, 1e-6);
    let out = generate(&gpu, &models, &p);
    check_latents("prompt travel (lerp)", &out, &r, "travel_lerp");
    check_frames("prompt travel (lerp)", &out, &r, "travel_lerp.frames_5_8", 5);
}

#[test]
fn prompt_travel_slerp_embeddings_match_a1111_formula() {
    let gpu = gpu();
    let (models, mut p) = setup(&gpu);
    let r = refs();
    explicit(&mut p, &r, "travel_lerp");
    travel_params(&mut p);
    p.interpolation = Interpolation::Slerp;
    let emb = block_on(models.encode_travel(&gpu, &p)).unwrap();
    let got = read(&gpu, &emb);
    assert_close("slerp per-frame embeddings", &got, &get(&r, "travel_slerp.embeds").data, 1e-6);
    // slerp differs from lerp between keyframes
    assert!(rel_l2(&got, &get(&r, "travel_lerp.embeds").data) > 1e-4);
}

fn free_noise(length: usize, stride: usize, weighting: FuseMethod) -> Option<TemporalWindows> {
    Some(TemporalWindows { length, stride, weighting })
}

#[test]
fn free_noise_pyramid_matches_diffusers() {
    let gpu = gpu();
    let (models, mut p) = setup(&gpu);
    let r = refs();
    explicit(&mut p, &r, "fn_pyramid");
    p.unet.free_noise = free_noise(8, 2, FuseMethod::Pyramid);
    let out = generate(&gpu, &models, &p);
    check_latents("FreeNoise 12 frames, context 8 stride 2, pyramid", &out, &r, "fn_pyramid");
    // and the windows matter: without them the result is another video
    p.unet.free_noise = None;
    let plain = generate(&gpu, &models, &p);
    assert!(rel_l2(&plain.latents, &get(&r, "fn_pyramid.final_latents").data) > 1e-3);
}

#[test]
fn free_noise_misaligned_flat_matches_diffusers() {
    let gpu = gpu();
    let (models, mut p) = setup(&gpu);
    let r = refs();
    explicit(&mut p, &r, "fn_flat_misaligned");
    p.unet.free_noise = free_noise(8, 2, FuseMethod::Flat);
    let out = generate(&gpu, &models, &p);
    check_latents("FreeNoise 11 frames (last window misaligned), flat", &out, &r, "fn_flat_misaligned");
}

#[test]
fn free_noise_seeded_noise_is_shuffled_like_diffusers() {
    let r = refs();
    let m = meta();
    let seed = m["seeds"]["fn_seed"].as_u64().unwrap();
    let want = get(&r, "fn_seed.init_latents");
    // host: randn then the randperm shuffles from the same generator, bit for bit
    let mut g = TorchGenerator::new(seed);
    let mut z = g.randn(&want.shape);
    free_noise_latents(&mut z, 4, 12, 8, 2, NoiseType::ShuffleContext, &mut g);
    assert_eq!(z, want.data, "shuffled initial noise");
    // frames 8, 9 are a permutation of frames 0, 1 (blocks of `stride` frames)
    let hw = 64;
    let frame = |f: usize| z[f * hw..(f + 1) * hw].to_vec();
    assert!(frame(8) == frame(0) || frame(8) == frame(1));

    let gpu = gpu();
    let (models, mut p) = setup(&gpu);
    p.frames = 12;
    p.init = InitLatents::Seed(seed);
    p.unet.free_noise = free_noise(8, 2, FuseMethod::Pyramid);
    p.decode = true;
    let out = generate(&gpu, &models, &p);
    check_latents("FreeNoise seeded (shuffle_context)", &out, &r, "fn_seed");
    check_frames("FreeNoise seeded", &out, &r, "fn_seed.frames_8_12", 8);
}

#[test]
fn context_window_schedule_matches_reference() {
    let m = meta();
    for (name, overlap, closed_loop) in [("ctx_pyramid", 2, false), ("ctx_flat_loop", 4, true)] {
        let c = ContextWindows { length: 8, stride: 1, overlap, closed_loop, fuse: FuseMethod::Flat };
        for (step, want) in m["windows"][name].as_array().unwrap().iter().enumerate() {
            let want: Vec<Vec<usize>> = serde_json::from_value(want.clone()).unwrap();
            assert_eq!(c.windows(12, step), want, "{name} step {step}");
        }
    }
    // strided levels: ⌈log₂(40/8)⌉ + 1 = 4 caps a stride of 5; hop-2 windows take every other frame
    let c = ContextWindows { length: 8, stride: 5, overlap: 2, closed_loop: false, fuse: FuseMethod::Pyramid };
    let w = c.windows(40, 0);
    assert!(w.iter().any(|win| win[..3] == [0, 2, 4]));
    assert!(w.iter().all(|win| win.len() == 8));
}

#[test]
fn context_windows_match_reference_per_window_unet() {
    let gpu = gpu();
    let (models, mut p) = setup(&gpu);
    let r = refs();
    for (name, overlap, closed_loop, fuse) in [("ctx_pyramid", 2, false, FuseMethod::Pyramid), ("ctx_flat_loop", 4, true, FuseMethod::Flat)] {
        explicit(&mut p, &r, name);
        p.context = Some(ContextWindows { length: 8, stride: 1, overlap, closed_loop, fuse });
        p.decode = closed_loop;
        let out = generate(&gpu, &models, &p);
        check_latents(&format!("context windows {name}"), &out, &r, name);
        if closed_loop {
            check_frames("context windows, closed loop", &out, &r, "ctx_flat_loop.frames_8_12", 8);
        }
    }
}

#[test]
fn motion_effect_matches_hooked_diffusers() {
    let gpu = gpu();
    let (models, mut p) = setup(&gpu);
    let r = refs();
    let m = meta();
    explicit(&mut p, &r, "effect");
    let e = |k: &str| m["effect"][k].as_f64().unwrap() as f32;
    p.unet.motion_effect = MotionEffect { down: e("down"), mid: e("mid"), up: e("up") };
    let out = generate(&gpu, &models, &p);
    check_latents("motion effect down 0.3 / mid 1 / up 0.7", &out, &r, "effect");
}

#[test]
fn long_videos_need_windows_and_memory_follows_the_window() {
    // Arena chunks of 64 KiB: with the default 16 MiB one chunk holds every tiny activation
    // of any of these runs, and the peaks below would not see the frames at all.
    let gpu = block_on(Gpu::new(animatediff_wgpu::GpuOptions { arena: animatediff_wgpu::gpu::ArenaConfig { chunk_bytes: 64 << 10 }, ..Default::default() })).unwrap();
    let (models, mut p) = setup(&gpu);
    p.steps = 1;
    p.frames = 40; // the tiny motion module has 32 positions
    let err = models.validate(&p).unwrap_err().to_string();
    assert!(err.contains("32"), "{err}");
    p.unet.free_noise = free_noise(48, 4, FuseMethod::Pyramid);
    assert!(models.validate(&p).is_err(), "a FreeNoise window longer than the module");
    p.unet.free_noise = free_noise(16, 4, FuseMethod::Pyramid);
    models.validate(&p).unwrap();
    // 40 frames through FreeNoise windows end to end (one step, VAE included)
    p.decode = true;
    let out = generate(&gpu, &models, &p);
    assert_eq!(out.frame_count, 40);
    assert!(out.frames.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
    p.unet.free_noise = None;
    p.context = Some(ContextWindows { length: 16, ..Default::default() });
    models.validate(&p).unwrap();
    p.decode = false;

    // Peak GPU memory of the denoising step (read in the step hook, before the VAE) above the
    // loaded models: with 8-frame windows it follows the window, not the video.
    let peak = |frames: usize, windows: bool| {
        let mut q = p.clone();
        q.frames = frames;
        q.context = windows.then_some(ContextWindows { length: 8, stride: 1, overlap: 2, closed_loop: false, fuse: FuseMethod::Pyramid });
        block_on(gpu.sync()).unwrap();
        gpu.reset_peak_memory();
        let base = gpu.memory().live_bytes;
        let mut step_peak = 0;
        block_on(models.generate_with(&gpu, &q, &mut |_| {
            step_peak = gpu.memory().peak_bytes - base;
            Ok(())
        }))
        .unwrap();
        step_peak
    };
    let (w12, w36, plain12, plain24) = (peak(12, true), peak(36, true), peak(12, false), peak(24, false));
    eprintln!("denoising-step peak GPU memory above the models: 8-frame windows: 12 frames {w12} B, 36 frames {w36} B; no windows: 12 frames {plain12} B, 24 frames {plain24} B");
    // Without windows the UNet's activations grow with the frames; with windows only the
    // latents-sized buffers do (a few KiB per frame here).
    let per_frame_windowed = (w36.saturating_sub(w12)) / 24;
    let per_frame_plain = (plain24.saturating_sub(plain12)) / 12;
    eprintln!("growth per frame: windowed {per_frame_windowed} B, unwindowed {per_frame_plain} B");
    assert!(per_frame_windowed * 10 < per_frame_plain, "windowed memory grows {per_frame_windowed} B/frame vs {per_frame_plain} B/frame unwindowed");
}

/// The CLI flags reach the pipeline: each run reproduces its diffusers fixture.
#[test]
fn cli_flags_reproduce_the_fixtures() {
    let m = meta();
    let r = refs();
    let dir = std::env::temp_dir().join(format!("animatediff-long-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |path: &std::path::Path| path.display().to_string();
    let init_file = |name: &str| {
        let t = get(&r, &format!("{name}.init_latents"));
        let path = dir.join(format!("{name}.init.safetensors"));
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), bytemuck::cast_slice(&t.data)).unwrap();
        safetensors::serialize_to_file([("latents", view)], None, &path).unwrap();
        (p(&path), t.shape[2].to_string())
    };
    let travel = |key: &str, flag: &str| -> Vec<String> { travel_keys(&m, key).into_iter().flat_map(|v| [flag.to_string(), v]).collect() };
    let (fn_seed, ctx, effect, lerp) = (m["seeds"]["fn_seed"].to_string(), init_file("ctx_flat_loop"), init_file("effect"), init_file("travel_lerp"));
    let prompt = ["--prompt".to_string(), m["prompt"].as_str().unwrap().into(), "--negative-prompt".into(), m["negative"].as_str().unwrap().into()];
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("fn_seed", [&prompt[..], &["--frames", "12", "--seed", &fn_seed, "--free-noise-length", "8", "--free-noise-stride", "2"].map(String::from)].concat()),
        ("ctx_flat_loop", [&prompt[..], &["--frames", &ctx.1, "--latents", &ctx.0, "--context-length", "8", "--context-overlap", "4", "--closed-loop", "--context-fuse", "flat"].map(String::from)].concat()),
        ("effect", [&prompt[..], &["--frames", &effect.1, "--latents", &effect.0, "--motion-effect", "down=0.3,mid=1,up=0.7"].map(String::from)].concat()),
        ("travel_lerp", [travel("prompts", "--prompt"), travel("negatives", "--negative-prompt"), ["--frames", &lerp.1, "--latents", &lerp.0].map(String::from).to_vec()].concat()),
    ];
    for (name, extra) in cases {
        let out_latents = dir.join(format!("{name}.final.safetensors"));
        let mut args: Vec<String> = ["generate", "--model", &p(&tiny().join("diffusers")), "--motion", &p(&tiny().join("motion_adapter")), "--width", "64", "--height", "64", "--steps", "3", "--no-decode", "--save-latents", &p(&out_latents)].map(String::from).to_vec();
        args.extend(extra);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_animatediff")).args(&args).env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into())).output().unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let got = read_safetensors(&out_latents);
        assert_close(&format!("CLI {name}"), &get(&got, "latents").data, &get(&r, &format!("{name}.final_latents")).data, 1e-5);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The windowed paths with f16 storage (window blends accumulate in f32).
#[test]
fn free_noise_and_context_windows_in_f16() {
    let gpu = gpu();
    if !gpu.info().shader_f16 {
        eprintln!("skipped: the adapter has no shader-f16");
        return;
    }
    let (models, mut p) = setup_f16(&gpu);
    let r = refs();
    explicit(&mut p, &r, "fn_pyramid");
    p.unet.free_noise = free_noise(8, 2, FuseMethod::Pyramid);
    let out = generate(&gpu, &models, &p);
    assert_close("f16 FreeNoise pyramid: final latents", &out.latents, &get(&r, "fn_pyramid.final_latents").data, 1e-2);
    p.unet.free_noise = None;
    explicit(&mut p, &r, "ctx_pyramid");
    p.context = Some(ContextWindows { length: 8, stride: 1, overlap: 2, closed_loop: false, fuse: FuseMethod::Pyramid });
    let out = generate(&gpu, &models, &p);
    assert_close("f16 context windows pyramid: final latents", &out.latents, &get(&r, "ctx_pyramid.final_latents").data, 1e-2);
}
