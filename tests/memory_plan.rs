//! The memory planner (`animatediff_wgpu::plan`) against the runtime's own accounting: on the
//! tiny models, for several frame counts, sizes, precisions, weight formats, levers, samplers
//! and binding limits, the planned weight bytes equal the device bytes after loading and the
//! planned peak equals `Gpu::memory().peak_bytes` measured over the whole generation (text
//! encoder → denoising → VAE), byte for byte. Also: the CFG-split lever gives the same
//! frames as one batch (and as diffusers), and `plan::choose` picks levers / refuses with a
//! suggestion.

mod common;

use animatediff_wgpu::gpu::{ArenaConfig, DType, Gpu, GpuOptions, KernelPreference};
use animatediff_wgpu::model::motion::MotionNorm;
use animatediff_wgpu::pipeline::generate::{GenerateParams, InitLatents, Output};
use animatediff_wgpu::pipeline::load::{build_models_with, default_unet_options, open_pipeline, HostPipeline, ModelPaths, Precision, Weights};
use animatediff_wgpu::pipeline::sampler::{make_sampler, SchedulerKind};
use animatediff_wgpu::plan::{self, DeviceLimits, Levers, PlanError, Request};
use common::*;
use pollster::block_on;

fn host() -> HostPipeline {
    open_pipeline(&ModelPaths { model: tiny().join("diffusers"), motion: tiny().join("motion_adapter"), ..Default::default() }).unwrap()
}

#[derive(Debug, Clone, Copy)]
struct Case {
    frames: usize,
    width: usize,
    height: usize,
    guidance: f32,
    precision: Precision,
    weights: Weights,
    levers: Levers,
    kind: SchedulerKind,
    steps: usize,
    max_binding: Option<u64>,
    /// Batch flush threshold (None: the default, 64 MiB, never reached on the tiny models).
    flush: Option<u64>,
    /// Decode with the VAE (`GenerateParams::decode`).
    decode: bool,
    /// Measure the second run on the models, after a first one with these levers (other
    /// prompts: the text encoder runs again).
    previous: Option<Levers>,
    /// The device's activation arena (`ArenaConfig::OFF`: one buffer per activation).
    arena: ArenaConfig,
    /// The kernel family (`Tiled`: what real GPUs run).
    kernels: KernelPreference,
}

fn params(host: &HostPipeline, c: &Case) -> GenerateParams {
    let mut p = GenerateParams::new("a corgi", host.scheduler.clone());
    p.negative_prompt = "blurry".into();
    (p.frames, p.width, p.height, p.steps, p.guidance_scale) = (c.frames, c.width, c.height, c.steps, c.guidance);
    p.scheduler_kind = c.kind;
    p.init = InitLatents::Seed(7);
    p.unet = default_unet_options(&host.motion);
    c.levers.apply_to(&mut p);
    p.decode = c.decode;
    p
}

fn request(host: &HostPipeline, p: &GenerateParams, dtype: DType, weights: Weights) -> Request {
    let sampler = make_sampler(&p.scheduler, p.scheduler_kind, p.steps).unwrap();
    Request {
        unet: host.unet_config.clone(),
        motion: Some(host.motion.config.clone()),
        vae: host.vae_config.clone(),
        clip: host.clip_config.clone(),
        frames: p.frames,
        width: p.width,
        height: p.height,
        cfg: p.guidance_scale > 1.0,
        precision: dtype,
        weights,
        motion_joint_norm: p.unet.motion_norm == MotionNorm::Diffusers,
        joint_resnet_norm: p.unet.joint_resnet_norm,
        clip_skip: p.clip_skip,
        steps: Request::steps_of(sampler.as_ref()),
        decode: p.decode,
    }
}

/// Run `c` on a fresh device; returns (planned, measured) weight bytes and peaks, and the output.
/// (planned, measured) weight bytes, (planned, measured) peak, and the generated video.
type Measured = ((u64, u64), (u64, u64), Output);

fn measure(host: &HostPipeline, c: &Case) -> Option<Measured> {
    let gpu = block_on(Gpu::new(GpuOptions { max_storage_binding_size: c.max_binding, arena: c.arena, kernels: c.kernels, ..GpuOptions::default() })).unwrap();
    let dtype = match c.precision.dtype(&gpu) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipping {c:?}: {e}");
            return None;
        }
    };
    if let Some(f) = c.flush {
        gpu.memory_stats().set_batch_flush_bytes(f);
    }
    let models = build_models_with(&gpu, &host.components(), c.precision, c.weights).unwrap();
    let loaded = gpu.memory().live_bytes;
    let p = params(host, c);
    if let Some(prev) = c.previous {
        let mut first = params(host, &Case { levers: prev, ..*c });
        first.prompt = "a cat".into();
        block_on(models.generate(&gpu, &first, &mut |_| {})).unwrap();
    }
    let req = request(host, &p, dtype, c.weights);
    // The plan continues from the device's arena as it is now (empty: every activation of
    // loading and of a previous run is gone).
    assert!(gpu.arena_chunks().is_empty(), "{c:?}: arena chunks left alive: {:?}", gpu.arena_chunks());
    let planned = plan::plan_after(&req, c.levers, gpu.max_binding(), gpu.memory_stats().batch_flush_bytes(), gpu.arena_layout(), c.previous).unwrap();
    gpu.reset_peak_memory();
    gpu.memory_stats().start_trace();
    let out = block_on(models.generate(&gpu, &p, &mut |_| {})).unwrap();
    let trace = gpu.memory_stats().take_trace();
    let peak = gpu.memory().peak_bytes;
    // Live bytes right after each allocation: equal sequences mean equal peaks (frees between
    // two allocations may come in a different order).
    let live_at_allocs = |t: &[i64]| {
        let mut live = 0i64;
        t.iter().filter_map(|&e| { live += e; (e > 0).then_some((e, live)) }).collect::<Vec<_>>()
    };
    let (rt, pl) = (live_at_allocs(&trace), live_at_allocs(&planned.trace));
    if let Some(i) = (0..rt.len().max(pl.len())).find(|&i| rt.get(i) != pl.get(i)) {
        panic!("{c:?}: (bytes, live) sequences differ at allocation {i} of {}/{}: runtime {:?} … plan {:?}", rt.len(), pl.len(), &rt[i.saturating_sub(3)..(i + 3).min(rt.len())], &pl[i.saturating_sub(3)..(i + 3).min(pl.len())]);
    }
    eprintln!(
        "{c:?}\n  weights planned {} measured {loaded}; peak planned {} measured {peak} (weights {} + activations {} + temporaries {}); largest buffer {} ({}); arena chunks at the peak {:?} (at most {})",
        planned.weight_bytes, planned.peak_bytes, planned.peak_weights, planned.peak_activations, planned.peak_temporaries, planned.largest_buffer, planned.largest_buffer_label, planned.peak_arena, planned.max_arena_chunks
    );
    Some(((planned.weight_bytes, loaded), (planned.peak_bytes, peak), out))
}

const BASE: Case = Case {
    frames: 4,
    width: 64,
    height: 64,
    guidance: 7.5,
    precision: Precision::F32,
    weights: Weights::Dense,
    levers: levers(false, 4),
    kind: SchedulerKind::Ddim,
    steps: 2,
    max_binding: None,
    flush: None,
    decode: true,
    previous: None,
    // Arena chunks of 256 KiB: the tiny models' activations (up to ~1 MiB) then spread over
    // several chunks, some shared, some of a large tensor's own size, as the full-size model's
    // do over 16 MiB ones (a 16 MiB chunk would hold every tiny activation at once).
    arena: ArenaConfig { chunk_bytes: 256 << 10 },
    kernels: KernelPreference::Auto,
};

const fn levers(cfg_split: bool, decode_chunk: usize) -> Levers {
    Levers { cfg_split, decode_chunk, offload_text_encoder: false, offload_vae: false, vae_f16: false, ff_chunk_bytes: 0, flush_bytes: 0 }
}

/// Every lever pulled (VAE in f16 for f16 runs), feed-forward chunks of 4 KiB (the tiny
/// intermediates are 16–64 KiB), 64 KiB batch flushes.
const fn all_levers(vae_f16: bool) -> Levers {
    Levers { cfg_split: true, decode_chunk: 1, offload_text_encoder: true, offload_vae: true, vae_f16, ff_chunk_bytes: 4 << 10, flush_bytes: 64 << 10 }
}

#[test]
fn planned_peak_equals_measured_peak() {
    let host = host();
    let cases = [
        BASE,
        // Sizes stay small: the byte-for-byte comparison needs no more, and lavapipe's time
        // goes mostly into the VAE at full resolution.
        Case { frames: 5, width: 128, height: 64, levers: levers(true, 3), ..BASE },
        Case { frames: 3, weights: Weights::Q8, levers: levers(true, 1), ..BASE },
        Case { frames: 2, width: 128, weights: Weights::Q4, guidance: 1.0, levers: levers(false, 2), ..BASE },
        Case { precision: Precision::F16, weights: Weights::Q4, ..BASE },
        Case { precision: Precision::F16, levers: levers(true, 2), ..BASE },
        Case { kind: SchedulerKind::Euler, ..BASE },
        Case { kind: SchedulerKind::Lcm, steps: 3, ..BASE },
        // Batches submit early once 64 KiB / 1 MiB of dropped buffers pile up in them.
        Case { flush: Some(64 << 10), ..BASE },
        Case { frames: 4, width: 128, height: 128, precision: Precision::F16, flush: Some(1 << 20), levers: levers(true, 4), ..BASE },
        // Latents only: no VAE in the plan or the run.
        Case { decode: false, ..BASE },
        // A 512 KiB binding limit: GroupNorms split their statistics over several buffers.
        Case { frames: 4, width: 128, height: 64, max_binding: Some(512 << 10), ..BASE },
        // Memory levers: models offloaded (read back into host copies), chunked feed-forwards,
        // early flushes; f16: the VAE rebuilt in f16.
        Case { weights: Weights::Q8, levers: all_levers(false), frames: 2, steps: 1, ..BASE },
        Case { precision: Precision::F16, weights: Weights::Q4, levers: all_levers(true), frames: 2, steps: 1, ..BASE },
        // The VAE converted to f16 in place (not offloaded), the text encoder offloaded alone.
        Case { precision: Precision::F16, levers: Levers { vae_f16: true, offload_text_encoder: true, ..levers(false, 2) }, frames: 2, steps: 1, ..BASE },
        // Second runs: models restored from their host copies (text encoder packed int8).
        Case { weights: Weights::Q8, levers: levers(true, 4), previous: Some(all_levers(false)), frames: 2, steps: 1, ..BASE },
        Case { precision: Precision::F16, levers: all_levers(true), previous: Some(Levers { vae_f16: true, ..levers(false, 4) }), frames: 2, steps: 1, ..BASE },
        // Latents only with the levers: the offloaded VAE is never restored.
        Case { decode: false, levers: all_levers(false), frames: 2, steps: 1, ..BASE },
        // The default arena (one 16 MiB chunk holds everything), 64 KiB chunks, and no arena
        // (one buffer per activation).
        Case { arena: ArenaConfig::DEFAULT, ..BASE },
        Case { arena: ArenaConfig { chunk_bytes: 64 << 10 }, frames: 2, ..BASE },
        Case { arena: ArenaConfig::OFF, frames: 2, steps: 1, ..BASE },
        // What real GPUs run (workgroup-tiled GEMM and attention): the plan does not depend on
        // the kernel family.
        Case { kernels: KernelPreference::Tiled, frames: 3, ..BASE },
        Case { kernels: KernelPreference::Tiled, precision: Precision::F16, weights: Weights::Q4, levers: all_levers(true), frames: 2, steps: 1, ..BASE },
    ];
    let mut ran = 0;
    for c in &cases {
        let Some(((pw, mw), (pp, mp), _)) = measure(&host, c) else { continue };
        assert_eq!(pw, mw, "{c:?}: planned weight bytes vs device bytes after loading");
        assert_eq!(pp, mp, "{c:?}: planned vs measured peak");
        ran += 1;
    }
    let f16_cases = cases.iter().filter(|c| c.precision == Precision::F16).count();
    assert!(ran == cases.len() || ran == cases.len() - f16_cases, "only {ran} cases ran");
}

/// The activation arena: activations share arena buffers at different 256-byte aligned
/// offsets, ops bind several ranges of one buffer in a dispatch (an output overlapping an
/// input is still refused), and a generation gives the same video as with one buffer per
/// activation.
#[test]
fn arena_shares_buffers_and_gives_the_same_video_as_without() {
    use animatediff_wgpu::ops::{self, Broadcast};
    let on = block_on(Gpu::new(GpuOptions { arena: ArenaConfig::DEFAULT, ..GpuOptions::default() })).unwrap();
    let off = block_on(Gpu::new(GpuOptions { arena: ArenaConfig::OFF, ..GpuOptions::default() })).unwrap();
    let n = 1000;
    let av: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let bv: Vec<f32> = (0..n).map(|i| 3.0 - i as f32).collect();
    let mut sums = Vec::new();
    for gpu in [&on, &off] {
        let a = gpu.upload_f32(&av, [n], "a").unwrap();
        let b = gpu.upload_f32(&bv, [n], "b").unwrap();
        let y = gpu.empty([n], DType::F32, "y").unwrap();
        if gpu.arena_config().enabled() {
            let (pa, pb, py) = (a.buffer().arena_placement().unwrap(), b.buffer().arena_placement().unwrap(), y.buffer().arena_placement().unwrap());
            assert!(pa.0 == pb.0 && pb.0 == py.0, "one chunk: {a:?} {b:?} {y:?}");
            assert!(pa.1 != pb.1 && pb.1 != py.1 && pa.1 != py.1, "distinct offsets: {a:?} {b:?} {y:?}");
            assert!([pa.1, pb.1, py.1].iter().all(|o| o % 256 == 0));
            assert_eq!(gpu.arena_chunks().len(), 1);
            // An output overlapping an input is refused (range-based).
            let mut bt = gpu.batch("overlap");
            assert!(ops::add(&mut bt, &a, &b, Broadcast::Same, &a).is_err(), "output = input accepted");
            // So is one tensor bound twice: every binding is writable, and WebGPU (Dawn)
            // rejects overlapping writable bindings.
            assert!(ops::add(&mut bt, &a, &a, Broadcast::Same, &y).is_err(), "overlapping bindings accepted");
            bt.submit().unwrap();
        } else {
            assert!(a.buffer().arena_placement().is_none());
            assert!(gpu.arena_chunks().is_empty());
        }
        let mut bt = gpu.batch("add");
        ops::add(&mut bt, &a, &b, Broadcast::Same, &y).unwrap();
        bt.submit().unwrap();
        sums.push(read(gpu, &y));
        // Freed ranges are reused: the next activation lands where `a` was.
        let at = a.buffer().arena_placement();
        drop(a);
        let z = gpu.empty([n], DType::F32, "z").unwrap();
        assert_eq!(z.buffer().arena_placement(), at);
    }
    assert_eq!(sums[0], sums[1]);
    assert_eq!(sums[0][10], 5.0 + 3.0 - 10.0);
    // A whole (small) generation: identical latents and frames.
    let host = host();
    let p = params(&host, &Case { frames: 2, steps: 2, ..BASE });
    let mut outs = Vec::new();
    for gpu in [&on, &off] {
        let models = build_models_with(gpu, &host.components(), Precision::F32, Weights::Q8).unwrap();
        gpu.reset_peak_memory();
        outs.push((block_on(models.generate(gpu, &p, &mut |_| {})).unwrap(), gpu.memory().peak_bytes));
        assert!(gpu.arena_chunks().is_empty(), "arena chunks left after the run: {:?}", gpu.arena_chunks());
    }
    eprintln!("peak with the arena {} bytes, without {} bytes", outs[0].1, outs[1].1);
    assert_eq!(outs[0].0.latents, outs[1].0.latents, "latents differ with the arena");
    assert_eq!(outs[0].0.frames, outs[1].0.frames, "frames differ with the arena");
}

#[test]
fn cfg_split_gives_the_same_video_and_less_memory() {
    let host = host();
    // Arena chunks of 256 KiB (a 16 MiB one holds every tiny activation: both peaks would be
    // the weights plus that chunk).
    let gpu = block_on(Gpu::new(GpuOptions { arena: ArenaConfig { chunk_bytes: 256 << 10 }, ..GpuOptions::default() })).unwrap();
    let models = build_models_with(&gpu, &host.components(), Precision::F32, Weights::Dense).unwrap();
    let mut p = GenerateParams::new("a corgi running on the beach, golden hour, highly detailed", host.scheduler.clone());
    p.negative_prompt = "blurry, low quality".into();
    p.unet = default_unet_options(&host.motion);
    // Split vs batched on a small seeded run: the same latents, a lower peak. One frame per
    // VAE call, so the UNet (not the VAE) sets the peak.
    (p.frames, p.height, p.width, p.steps, p.guidance_scale) = (4, 64, 128, 2, 7.5);
    p.init = InitLatents::Seed(5);
    p.decode_chunk = 1;
    let mut peaks = Vec::new();
    let mut outs = Vec::new();
    for split in [false, true] {
        p.cfg_split = split;
        gpu.reset_peak_memory();
        outs.push(block_on(models.generate(&gpu, &p, &mut |_| {})).unwrap());
        peaks.push(gpu.memory().peak_bytes);
    }
    let e = max_abs(&outs[1].latents, &outs[0].latents);
    eprintln!("cfg split vs batched: latents max abs diff {e:.2e}; peak {} vs {} bytes", peaks[1], peaks[0]);
    assert!(e <= 1e-5 * 70.0, "split CFG changed the latents by {e:.2e}");
    assert!(peaks[1] < peaks[0], "split CFG should lower the peak: {} vs {}", peaks[1], peaks[0]);
    // And split against diffusers' recorded run (the batched one is checked in pipeline_e2e).
    let refs = read_safetensors(&tiny().join("reference/pipeline_diffusers.safetensors"));
    (p.frames, p.height, p.width, p.steps) = (8, 128, 192, 4);
    p.init = InitLatents::Tensor(get(&refs, "init_latents").data.clone());
    p.cfg_split = true;
    let split = block_on(models.generate(&gpu, &p, &mut |_| {})).unwrap();
    assert_close("split CFG final latents vs diffusers", &split.latents, &get(&refs, "final_latents").data, 1e-3);
    let fe = max_abs(&split.frames, &get(&refs, "frames").data);
    assert!(fe <= 5e-3, "split CFG frames differ from diffusers by {fe:.2e}");
}

/// The exact levers (models offloaded and restored from their host copies, feed-forwards in
/// chunks, early batch flushes, one VAE frame per call) give the very same video; offloading
/// frees the text encoder's and the VAE's device bytes.
#[test]
fn levers_give_the_same_video_and_free_the_models() {
    let host = host();
    let gpu = gpu();
    // q8: the text encoder's int8 layers are restored packed.
    let models = build_models_with(&gpu, &host.components(), Precision::F32, Weights::Q8).unwrap();
    let loaded = gpu.memory().live_bytes;
    let base = Case { frames: 2, steps: 1, weights: Weights::Q8, ..BASE };
    let exact = Levers { cfg_split: false, decode_chunk: 2, ..all_levers(false) };
    let run = |levers: Levers, prompt: &str| {
        let mut p = params(&host, &Case { levers, ..base });
        p.prompt = prompt.into();
        block_on(models.generate(&gpu, &p, &mut |_| {})).unwrap()
    };
    let plain = run(levers(false, 2), "a corgi");
    // First offload: the device weights are read back into host copies and dropped.
    run(exact, "a cat");
    let (te, vae) = (models.text_encoder.resident().unwrap(), models.vae.resident().unwrap());
    assert_eq!((te, vae), (None, None), "both models should be offloaded");
    let req = request(&host, &params(&host, &base), DType::F32, Weights::Q8);
    let pl = plan::plan(&req, exact, gpu.max_binding()).unwrap();
    let freed = loaded - gpu.memory().live_bytes;
    eprintln!("offloaded: {freed} device bytes freed (text encoder {} + VAE {}), host copies {} + {} bytes", pl.clip_bytes, pl.vae_bytes, models.text_encoder.host_bytes().unwrap(), models.vae.host_bytes().unwrap());
    assert_eq!(freed, pl.clip_bytes + pl.vae_bytes);
    // Restored from the host copies (other prompts than the cached ones: the text encoder runs).
    let levered = run(exact, "a corgi");
    assert_eq!(levered.latents, plain.latents, "latents with levers differ");
    assert_eq!(levered.frames, plain.frames, "frames with levers differ");
    // Restored for good once no lever asks for offloading.
    let again = run(levers(false, 2), "a cat");
    assert_eq!(models.vae.resident().unwrap(), Some(DType::F32));
    assert_eq!(models.text_encoder.resident().unwrap(), Some(DType::F32));
    assert_eq!(again.frame_count, 2);
}

/// The f16 VAE (rebuilt in place from the f32 one's host copy) decodes the same latents to
/// frames within f16 tolerance of the f32 VAE.
#[test]
fn f16_vae_frames_are_within_f16_tolerance() {
    let host = host();
    let gpu = gpu();
    if !gpu.info().shader_f16 {
        eprintln!("skipping: no shader-f16");
        return;
    }
    let models = build_models_with(&gpu, &host.components(), Precision::F16, Weights::Dense).unwrap();
    let base = Case { frames: 2, steps: 1, precision: Precision::F16, ..BASE };
    let run = |vae_f16: bool| {
        let p = params(&host, &Case { levers: Levers { vae_f16, ..levers(false, 2) }, ..base });
        block_on(models.generate(&gpu, &p, &mut |_| {})).unwrap()
    };
    let (f32_vae, f16_vae) = (run(false), run(true));
    assert_eq!(models.vae.resident().unwrap(), Some(DType::F16));
    assert_eq!(f16_vae.latents, f32_vae.latents, "the VAE lever changed the latents");
    let e = max_abs(&f16_vae.frames, &f32_vae.frames);
    eprintln!("f16 VAE vs f32 VAE: frames max abs diff {e:.2e}, rel L2 {:.2e}", rel_l2(&f16_vae.frames, &f32_vae.frames));
    assert!(e <= 1e-2, "f16 VAE frames differ by {e:.2e}");
}

#[test]
fn choose_pulls_levers_to_fit_and_refuses_with_a_suggestion() {
    let req = Request::sd15(16, 512, 512, DType::F16, Weights::Q4);
    let free = plan::choose(&req, &DeviceLimits { max_binding: 1 << 40, max_buffer: 1 << 40, budget: None, ..DeviceLimits::default() }).unwrap();
    assert_eq!(free.levers, Levers::none(16));
    // A budget just below the unconstrained peak forces a lever; the chosen plan fits.
    let budget = free.peak_bytes - 1;
    let limited = plan::choose(&req, &DeviceLimits { max_binding: 1 << 40, max_buffer: 1 << 40, budget: Some(budget), ..DeviceLimits::default() }).unwrap();
    assert_ne!(limited.levers, free.levers);
    assert!(limited.peak_bytes <= budget);
    // WebGPU defaults: no buffer over 256 MiB; apply() writes the levers into the parameters.
    let mut params = GenerateParams::new("a corgi", animatediff_wgpu::pipeline::scheduler::SchedulerConfig::animatediff_default());
    let web = plan::apply(&req, &DeviceLimits::default(), &mut params).unwrap();
    assert!(web.largest_buffer <= plan::DEFAULT_MAX_BUFFER, "{web:?}");
    assert_eq!((params.cfg_split, params.decode_chunk), (web.levers.cfg_split, web.levers.decode_chunk));
    assert!(web.levers.cfg_split, "16 frames 512² f16 needs split CFG under 256 MiB buffers");
    // Dense f32 at 1 GB cannot fit; the error names the request and what would fit.
    let big = Request::sd15(16, 512, 512, DType::F32, Weights::Dense);
    match plan::choose(&big, &DeviceLimits { budget: Some(1 << 30), ..DeviceLimits::default() }) {
        Err(PlanError::DoesNotFit { suggestion, need, .. }) => {
            eprintln!("refused: needs {need}, {suggestion}");
            assert!(need > 1 << 30);
            assert!(!suggestion.is_empty());
        }
        other => panic!("expected DoesNotFit, got {other:?}"),
    }
}

/// The planner's weight list is the loader's: every UNet / motion-module tensor it sizes is in
/// the tiny model's files with the same shape, and every file tensor is in the list.
#[test]
fn planned_weight_list_is_the_files_tensor_list() {
    use animatediff_wgpu::load::WeightSource;
    let host = host();
    let planned = plan::unet_tensors(&host.unet_config, Some(&host.motion.config));
    let mut in_files = 0;
    for (name, shape) in &planned {
        let src: &dyn WeightSource = if name.contains("motion_modules") { &host.motion.source } else { &host.unet };
        let got = src.shape(name).unwrap_or_else(|| panic!("planned tensor {name} is not in the files"));
        // 1×1 convolutions (proj_in/proj_out, conv_shortcut) are read as linears either way.
        let got: Vec<usize> = if got.len() == 4 && shape.len() == 2 && got[2..] == [1, 1] { got[..2].to_vec() } else { got };
        assert_eq!(&got, shape, "{name}");
        in_files += 1;
    }
    let file_names = host.unet.names().len() + host.motion.source.names().iter().filter(|n| n.contains("motion_modules")).count();
    assert_eq!(in_files, file_names, "planned {} tensors, the files hold {file_names}", planned.len());
}

/// The step FLOP count from the config (the walk's GEMMs, convolutions and attentions) agrees
/// with PyTorch's FlopCounterMode on SD1.5 + v2 motion modules, batch 32 (16 frames × CFG):
/// 35.5 TFLOP at 64×64 latents and 8.2 at 32×32 (../shared/notes/webgpu.md §7).
#[test]
fn unet_flop_count_matches_torch_flop_counter() {
    for (size, want) in [(512, 35.5e12), (256, 8.2e12)] {
        let req = Request::sd15(16, size, size, DType::F16, Weights::Dense);
        let got = plan::unet_flops(&req, 2);
        eprintln!("{size}²: {:.2} TFLOP (torch {:.1})", got / 1e12, want / 1e12);
        assert!((got / want - 1.0).abs() < 0.02, "{size}²: {got:.3e} vs {want:.3e}");
    }
}
