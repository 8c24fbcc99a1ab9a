//! Component parity with diffusers (teacher-forced): every network fed the oracle's inputs
//! from `tests/fixtures/tiny/reference/*.safetensors` and compared with its outputs.
//! f32 storage: relative L2 ≤ 1e-4; f16 storage (where the adapter has shader-f16): ≤ 1e-2.

mod common;

use animatediff_wgpu::gpu::DType;
use animatediff_wgpu::model::nn::layout;
use animatediff_wgpu::model::nn::Loader;
use animatediff_wgpu::model::{ClipTextModel, Decoder, MotionModule, MotionNorm, UNet, UNetOptions};
use common::*;
use pollster::block_on;

const F32_TOL: f64 = 1e-4;
const F16_TOL: f64 = 1e-2;

fn dtypes(gpu: &animatediff_wgpu::Gpu) -> Vec<(DType, f64)> {
    let mut v = vec![(DType::F32, F32_TOL)];
    if gpu.info().shader_f16 {
        v.push((DType::F16, F16_TOL));
    }
    v
}

fn clip_weights() -> animatediff_wgpu::load::MapSource {
    let m = read_safetensors(&tiny().join("diffusers/text_encoder/model.safetensors"));
    // transformers ≥ 5.6 writes CLIPTextModel without the `text_model.` prefix.
    if m.tensors.keys().any(|k| k.starts_with("text_model.")) {
        m
    } else {
        with_prefix(&m, "", "text_model.")
    }
}

#[test]
fn clip_text_embeddings_match_diffusers() {
    let gpu = gpu();
    let refs = read_safetensors(&tiny().join("reference/pipeline_diffusers.safetensors"));
    let w = clip_weights();
    for (dtype, tol) in dtypes(&gpu) {
        let clip = ClipTextModel::load(&gpu, &w, &tiny_clip_config(), dtype).unwrap();
        for (ids, want) in [("prompt_input_ids", "prompt_embeds"), ("negative_input_ids", "negative_prompt_embeds"), ("empty_input_ids", "empty_prompt_embeds")] {
            let y = clip.forward(&gpu, &common::ids(&refs, ids), 77, 0).unwrap();
            assert_close(&format!("{want} {dtype}"), &read(&gpu, &y), &get(&refs, want).data, tol);
        }
    }
}

#[test]
fn clip_skip_matches_diffusers() {
    let gpu = gpu();
    let comp = read_safetensors(&tiny().join("reference/components.safetensors"));
    let clip = ClipTextModel::load(&gpu, &clip_weights(), &tiny_clip_config(), DType::F32).unwrap();
    let ids = common::ids(&comp, "clip.ids");
    let y = clip.forward(&gpu, &ids, 77, 1).unwrap();
    assert_close("clip skip 1", &read(&gpu, &y), &get(&comp, "clip.hidden_states_minus2_final_ln").data, F32_TOL);
    let y = clip.forward(&gpu, &ids, 77, 0).unwrap();
    assert_close("clip", &read(&gpu, &y), &get(&comp, "clip.out").data, F32_TOL);
}

#[test]
fn motion_module_matches_diffusers_in_both_norm_modes() {
    let gpu = gpu();
    let comp = read_safetensors(&tiny().join("reference/components.safetensors"));
    let w = read_safetensors(&tiny().join("motion_adapter/diffusion_pytorch_model.safetensors"));
    let x = get(&comp, "motion_module.in");
    let [n, c, h, wd] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let xin = layout::nchw_to_nhwc(&x.data, n, c, h, wd);
    for (dtype, tol) in dtypes(&gpu) {
        let root = Loader::new(&gpu, &w, dtype);
        let p = root.child("down_blocks.1.motion_modules.0");
        let mm = MotionModule::load(&root.at(&p), c, 2, 4, 32).unwrap();
        let xt = gpu.upload_f32_as(&xin, [n, h, wd, c], dtype, "x").unwrap();
        for (mode, key) in [(MotionNorm::Diffusers, "motion_module.out_diffusers"), (MotionNorm::Original, "motion_module.out_original_per_frame_norm")] {
            let mut bt = gpu.batch("mm");
            let y = mm.forward(&mut bt, &xt, 8, mode).unwrap();
            bt.submit().unwrap();
            let got = layout::nhwc_to_nchw(&read(&gpu, &y), n, c, h, wd);
            assert_close(&format!("{key} {dtype}"), &got, &get(&comp, key).data, tol);
        }
    }
}

#[test]
fn unet2d_matches_diffusers() {
    let gpu = gpu();
    let comp = read_safetensors(&tiny().join("reference/components.safetensors"));
    let w = read_safetensors(&tiny().join("diffusers/unet/diffusion_pytorch_model.safetensors"));
    let s = get(&comp, "unet2d.sample");
    let [n, c, h, wd] = [s.shape[0], s.shape[1], s.shape[2], s.shape[3]];
    let t = get(&comp, "unet2d.timestep").data[0];
    let ehs = get(&comp, "unet2d.encoder_hidden_states");
    for (dtype, tol) in dtypes(&gpu) {
        let unet = UNet::load(&gpu, &w, &tiny_unet_config(), None, dtype).unwrap();
        let x = gpu.upload_f32_as(&layout::nchw_to_nhwc(&s.data, n, c, h, wd), [n, h, wd, c], dtype, "x").unwrap();
        let ctx = gpu.upload_f32_as(&ehs.data, ehs.shape.clone(), dtype, "ctx").unwrap();
        let y = unet.forward(&gpu, &x, t, &ctx, 1, &UNetOptions::default()).unwrap();
        let got = layout::nhwc_to_nchw(&read(&gpu, &y), n, 4, h, wd);
        assert_close(&format!("unet2d {dtype}"), &got, &get(&comp, "unet2d.out").data, tol);
    }
}

/// Teacher-forced UNetMotionModel calls: every denoising step's recorded input → its output.
#[test]
fn unet_motion_matches_diffusers_every_step() {
    let gpu = gpu();
    let refs = read_safetensors(&tiny().join("reference/pipeline_diffusers.safetensors"));
    let w = read_safetensors(&tiny().join("diffusers/unet/diffusion_pytorch_model.safetensors"));
    let mw = read_safetensors(&tiny().join("motion_adapter/diffusion_pytorch_model.safetensors"));
    let steps = get(&refs, "timesteps").data.len();
    for (dtype, tol) in dtypes(&gpu) {
        let unet = UNet::load(&gpu, &w, &tiny_unet_config(), Some((&mw, &tiny_motion_config())), dtype).unwrap();
        for s in 0..steps {
            let x = get(&refs, &format!("step{s}.unet_in_sample"));
            let [b, c, f, h, wd] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4]];
            let t = get(&refs, &format!("step{s}.timestep")).data[0];
            let ehs = get(&refs, &format!("step{s}.unet_in_encoder_hidden_states"));
            // [B·F, 77, D] repeated per frame → one row per video.
            let (l, d) = (ehs.shape[1], ehs.shape[2]);
            let ctx: Vec<f32> = (0..b).flat_map(|bi| ehs.data[bi * f * l * d..(bi * f + 1) * l * d].to_vec()).collect();
            let xt = gpu.upload_f32_as(&layout::bcfhw_to_nhwc(&x.data, b, c, f, h, wd), [b * f, h, wd, c], dtype, "x").unwrap();
            let ct = gpu.upload_f32_as(&ctx, [b, l, d], dtype, "ctx").unwrap();
            let y = unet.forward(&gpu, &xt, t, &ct, f, &UNetOptions::default()).unwrap();
            let got = layout::nhwc_to_bcfhw(&read(&gpu, &y), b, 4, f, h, wd);
            assert_close(&format!("step {s} unet_out {dtype}"), &got, &get(&refs, &format!("step{s}.unet_out")).data, tol);
        }
    }
}

/// f32, and f16 weights + activations (the f16-VAE memory lever; f32 accumulation).
#[test]
fn vae_decode_matches_diffusers() {
    let gpu = gpu();
    let comp = read_safetensors(&tiny().join("reference/components.safetensors"));
    let w = read_safetensors(&tiny().join("diffusers/vae/diffusion_pytorch_model.safetensors"));
    let z = get(&comp, "vae_decode.in");
    let [n, c, h, wd] = [z.shape[0], z.shape[1], z.shape[2], z.shape[3]];
    for (dtype, tol) in dtypes(&gpu) {
        let vae = Decoder::build(&Loader::new(&gpu, &w, dtype), &tiny_vae_config()).unwrap();
        let zt = gpu.upload_f32_as(&layout::nchw_to_nhwc(&z.data, n, c, h, wd), [n, h, wd, c], dtype, "z").unwrap();
        let y = block_on(vae.decode(&gpu, &zt, None)).unwrap();
        let got = layout::nhwc_to_nchw(&read(&gpu, &y), n, 3, h * 8, wd * 8);
        assert_close(&format!("vae decode {dtype}"), &got, &get(&comp, "vae_decode.out").data, tol);
    }
}

/// The real SD1.5 decoder widths (128…512 channels, the mid-block's single 512-channel
/// attention head) with random weights at a small spatial size: the tiny fixtures never reach
/// these sizes, so a kernel limit below them (the attention once stopped at head dim 256)
/// only showed in a full-size decode. Checked: it runs, the output has the right shape, every
/// value is finite and the image is not constant.
#[test]
fn sd15_vae_decoder_widths_decode() {
    use animatediff_wgpu::load::random::RandomWeights;
    use animatediff_wgpu::model::VaeConfig;
    let gpu = gpu();
    let cfg = VaeConfig::sd15();
    let w = RandomWeights::new(animatediff_wgpu::plan::vae_decoder_tensors(&cfg));
    let vae = Decoder::load(&gpu, &w, &cfg).unwrap();
    let (h, wd) = (4, 6);
    let z: Vec<f32> = (0..h * wd * 4).map(|i| ((i * 37 % 23) as f32 / 11.0) - 1.0).collect();
    let zt = gpu.upload_f32(&z, [1, h, wd, 4], "z").unwrap();
    let y = block_on(vae.decode(&gpu, &zt, None)).unwrap();
    assert_eq!(y.dims(), &[1, h * 8, wd * 8, 3]);
    let got = read(&gpu, &y);
    assert!(got.iter().all(|v| v.is_finite()), "non-finite output");
    let (lo, hi) = got.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(hi - lo > 1e-6, "constant output {lo}..{hi}");
}

#[test]
fn vae_encode_matches_diffusers() {
    use animatediff_wgpu::model::Encoder;
    let gpu = gpu();
    let comp = read_safetensors(&tiny().join("reference/components.safetensors"));
    let w = read_safetensors(&tiny().join("diffusers/vae/diffusion_pytorch_model.safetensors"));
    let enc = Encoder::load(&gpu, &w, &tiny_vae_config()).unwrap();
    let x = get(&comp, "vae_encode.in");
    let [n, c, h, wd] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let xt = gpu.upload_f32(&layout::nchw_to_nhwc(&x.data, n, c, h, wd), [n, h, wd, c], "x").unwrap();
    let y = enc.encode(&gpu, &xt).unwrap();
    let moments = layout::nhwc_to_nchw(&read(&gpu, &y), n, 8, h / 8, wd / 8);
    let per = 4 * (h / 8) * (wd / 8);
    let (mut mean, mut logvar) = (Vec::new(), Vec::new());
    for i in 0..n {
        mean.extend_from_slice(&moments[i * 2 * per..i * 2 * per + per]);
        logvar.extend_from_slice(&moments[i * 2 * per + per..(i + 1) * 2 * per]);
    }
    assert_close("vae encode mean", &mean, &get(&comp, "vae_encode.mean").data, F32_TOL);
    assert_close("vae encode logvar", &logvar, &get(&comp, "vae_encode.logvar").data, F32_TOL);
}

#[test]
fn time_embedding_matches_diffusers() {
    let gpu = gpu();
    let comp = read_safetensors(&tiny().join("reference/components.safetensors"));
    let w = read_safetensors(&tiny().join("diffusers/unet/diffusion_pytorch_model.safetensors"));
    let ts = get(&comp, "time_proj.t").data.clone();
    // The sinusoid alone (CPU, rounded like torch's float32 arithmetic).
    let sin = animatediff_wgpu::ops::timestep_embedding(&ts, 8, true, 0.0, 10000.0);
    assert_close("time_proj", &sin, &get(&comp, "time_proj.out").data, 1e-6);
    for (dtype, tol) in dtypes(&gpu) {
        let unet = UNet::load(&gpu, &w, &tiny_unet_config(), None, dtype).unwrap();
        let mut bt = gpu.batch("t");
        let y = unet.time_embedding(&mut bt, &ts).unwrap();
        bt.submit().unwrap();
        assert_close(&format!("time_embedding {dtype}"), &read(&gpu, &y), &get(&comp, "time_embedding.out").data, tol);
    }
}

/// Motion scale multiplies K (ComfyUI-AnimateDiff-Evolved): the same as loading the module
/// with both `to_k` weights (no bias) scaled.
#[test]
fn motion_scale_equals_scaled_key_weights() {
    let gpu = gpu();
    let comp = read_safetensors(&tiny().join("reference/components.safetensors"));
    let w = read_safetensors(&tiny().join("motion_adapter/diffusion_pytorch_model.safetensors"));
    let mut scaled = w.clone();
    for (k, t) in scaled.tensors.iter_mut() {
        if k.starts_with("down_blocks.1.motion_modules.0.") && k.ends_with("to_k.weight") {
            t.data.iter_mut().for_each(|v| *v *= 1.5);
        }
    }
    let x = get(&comp, "motion_module.in");
    let [n, c, h, wd] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let xt = gpu.upload_f32(&layout::nchw_to_nhwc(&x.data, n, c, h, wd), [n, h, wd, c], "x").unwrap();
    let run = |src: &animatediff_wgpu::load::MapSource, s: f32| {
        let root = Loader::new(&gpu, src, DType::F32);
        let p = root.child("down_blocks.1.motion_modules.0");
        let mm = MotionModule::load(&root.at(&p), c, 2, 4, 32).unwrap();
        let mut bt = gpu.batch("mm");
        let y = mm.forward_scaled(&mut bt, &xt, 8, MotionNorm::Diffusers, s).unwrap();
        bt.submit().unwrap();
        read(&gpu, &y)
    };
    let plain = run(&w, 1.0);
    let want = run(&scaled, 1.0);
    let got = run(&w, 1.5);
    assert_close("motion scale 1.5", &got, &want, F32_TOL);
    assert!(rel_l2(&plain, &want) > 1e-3, "scaling K must change the output");
}
