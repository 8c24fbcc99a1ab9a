//! Long run natively (lavapipe): 20 generations in a row on one `Gpu`, alternating the two tiny
//! model formats (diffusers folder; LDM fp16 single file + original `.ckpt` motion module) and
//! three video sizes, the models rebuilt for every run. Asserts that nothing accumulates:
//! GPU memory accounting returns to its empty baseline after each run, each configuration's
//! peak is the same every time it recurs, the pipeline cache stops growing once every
//! configuration has been seen (bound: one pipeline per kernel variant), and a configuration's
//! output is bit-identical every time.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use animatediff_wgpu::pipeline::generate::{GenerateParams, InitLatents};
use animatediff_wgpu::pipeline::load::{build_models, default_unet_options, open_pipeline, ModelPaths, Precision};
use common::*;
use pollster::block_on;

const RUNS: usize = 20;
/// (frames, height, width)
const SIZES: [(usize, usize, usize); 3] = [(2, 64, 64), (1, 64, 128), (1, 128, 64)];

fn formats() -> [(&'static str, ModelPaths); 2] {
    [("diffusers", tiny_diffusers_paths()), ("single file", tiny_single_file_paths())]
}

#[test]
fn twenty_generations_return_to_baseline() {
    let t0 = Instant::now();
    let gpu = gpu();
    let hosts: Vec<_> = formats().into_iter().map(|(name, paths)| (name, open_pipeline(&paths).unwrap())).collect();
    let empty = gpu.memory();
    let mut peaks: HashMap<(usize, usize), u64> = HashMap::new();
    let mut frames: HashMap<(usize, usize), Vec<f32>> = HashMap::new();
    let mut pipelines_after_warmup = None;
    let combos = hosts.len() * SIZES.len();
    for run in 0..RUNS {
        let (fi, si) = (run % hosts.len(), run % SIZES.len());
        let (name, host) = &hosts[fi];
        let (f, h, w) = SIZES[si];
        gpu.reset_peak_memory();
        let models = build_models(&gpu, &host.components(), Precision::F32).unwrap();
        let mut p = GenerateParams::new("a corgi running on the beach", host.scheduler.clone());
        p.negative_prompt = "blurry".into();
        (p.frames, p.height, p.width, p.steps, p.guidance_scale) = (f, h, w, 1, 7.5);
        p.init = InitLatents::Seed(run as u64 % combos as u64);
        p.unet = default_unet_options(&host.motion);
        let out = block_on(models.generate(&gpu, &p, &mut |_| {})).unwrap();
        assert_eq!(out.frames.len(), f * h * w * 3);
        assert!(out.frames.iter().all(|v| v.is_finite()), "run {run}: non-finite frames");
        drop(models);
        block_on(gpu.sync()).unwrap();
        let m = gpu.memory();
        eprintln!(
            "run {run:2} ({name}, {f}×{h}×{w}): peak {:.1} MiB, live after {} B in {} buffers, {} pipelines, {:.1} s",
            m.peak_bytes as f64 / 1048576.0,
            m.live_bytes,
            m.live_buffers,
            gpu.pipeline_count(),
            t0.elapsed().as_secs_f64()
        );
        assert_eq!((m.live_bytes, m.live_buffers), (empty.live_bytes, empty.live_buffers), "run {run}: GPU memory not back to the baseline");
        let key = (fi, si);
        let peak = *peaks.entry(key).or_insert(m.peak_bytes);
        assert_eq!(m.peak_bytes, peak, "run {run}: peak memory of ({name}, {f}×{h}×{w}) grew since its first run");
        let first = frames.entry(key).or_insert_with(|| out.frames.clone());
        // Same configuration, same seed (run % 6 repeats with the configuration): same video.
        assert!(*first == out.frames, "run {run}: ({name}, {f}×{h}×{w}) gave a different video than its first run");
        if run + 1 == combos {
            pipelines_after_warmup = Some(gpu.pipeline_count());
        } else if let Some(n) = pipelines_after_warmup {
            assert_eq!(gpu.pipeline_count(), n, "run {run}: the pipeline cache grew after every configuration had run");
        }
    }
    eprintln!("{RUNS} generations in {:.1} s", t0.elapsed().as_secs_f64());
}
