//! The GPU runtime on a real adapter (lavapipe in CI): device creation, kernels against CPU
//! float64 references, grid splitting, memory accounting, pipeline cache and typed errors.

use std::sync::Arc;

use animatediff_wgpu::gpu::{DType, Gpu, GpuError, GpuOptions, ShaderDef, Spec};
use animatediff_wgpu::ops;
use animatediff_wgpu::reference::{self, Rng};
use animatediff_wgpu::selftest::{kernel_suite, linear_selftest, F32_TOLERANCE};
use pollster::block_on;

fn gpu_with(opts: GpuOptions) -> Gpu {
    match block_on(Gpu::new(opts)) {
        Ok(g) => g,
        Err(e) => panic!("these tests need a GPU adapter (lavapipe: apt install mesa-vulkan-drivers): {e}"),
    }
}

fn gpu() -> Gpu {
    gpu_with(GpuOptions::default())
}

fn seed() -> u64 {
    // Fresh inputs every run (never fixed data a kernel could be tuned to), reproducible
    // from the printed seed.
    let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    eprintln!("seed {s}");
    s
}

#[test]
fn device_gets_the_adapters_maximum_limits() {
    let gpu = gpu();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY.with_env(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapter = block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .expect("adapter");
    let al = adapter.limits();
    let info = gpu.info();
    eprint!("{info}");
    assert_eq!(info.max_buffer_size, al.max_buffer_size);
    assert_eq!(info.max_storage_buffer_binding_size, al.max_storage_buffer_binding_size);
    assert_eq!(info.max_compute_workgroup_storage_size, al.max_compute_workgroup_storage_size);
    assert_eq!(info.max_compute_invocations_per_workgroup, al.max_compute_invocations_per_workgroup);
    assert_eq!(info.shader_f16, adapter.features().contains(wgpu::Features::SHADER_F16));
    if std::env::var_os("ANIMATEDIFF_EXPECT_F16").is_some() {
        assert!(info.shader_f16, "this adapter should offer shader-f16");
    }
}

#[test]
fn linear_matches_cpu_reference_on_odd_shapes() {
    let gpu = gpu();
    let s = seed();
    // Edges that are not multiples of the 32×32 tile, K not a multiple of 4, tiny and
    // SD-like (HW = 7×13 tokens, C = 24) shapes.
    for (i, &(m, n, k)) in [(1, 1, 1), (7 * 13, 24, 24), (37, 91, 13), (65, 33, 129), (128, 96, 64)].iter().enumerate() {
        let r = block_on(linear_selftest(&gpu, m, n, k, s + i as u64)).expect("linear");
        assert!(r.passed, "linear {m}x{n}x{k}: rel L2 error {} > {F32_TOLERANCE}", r.rel_l2_error);
    }
}

#[test]
fn linear_without_bias_and_batched_input() {
    let gpu = gpu();
    let mut rng = Rng::new(seed());
    let (b, t, k, n) = (3, 17, 40, 21);
    let x = rng.uniform_vec(b * t * k);
    let w = rng.uniform_vec(n * k);
    let xt = gpu.upload_f32(&x, [b, t, k], "x").unwrap();
    let wt = gpu.upload_f32(&ops::linear_weight_from_torch(&w, n, k).unwrap(), [k, n], "w").unwrap();
    let yt = gpu.empty([b, t, n], DType::F32, "y").unwrap();
    let mut batch = gpu.batch("test");
    ops::fill(&mut batch, &yt, f32::NAN).unwrap();
    ops::linear(&mut batch, &xt, &wt, None, &yt).unwrap();
    batch.submit().unwrap();
    let y = block_on(gpu.read_f32(&yt)).unwrap();
    let err = reference::rel_l2_error(&y, &reference::linear(&x, &w, None, b * t, n, k));
    assert!(err <= F32_TOLERANCE, "rel error {err}");
}

#[test]
fn grids_beyond_65535_workgroups_cover_every_element() {
    let gpu = gpu();
    // 256 elements per workgroup → 65 537 workgroups: needs the folded 2-D grid.
    let n = 65_536 * 256 + 17;
    let t = gpu.empty([n], DType::F32, "big").unwrap();
    let mut batch = gpu.batch("test");
    ops::fill(&mut batch, &t, 3.5).unwrap();
    batch.submit().unwrap();
    let v = block_on(gpu.read_f32(&t)).unwrap();
    assert_eq!(v.len(), n);
    let bad = v.iter().position(|&x| x != 3.5);
    assert_eq!(bad, None, "element {bad:?} not written");
}

#[test]
fn f16_storage_round_trip_when_available() {
    let gpu = gpu();
    if !gpu.info().shader_f16 {
        eprintln!("adapter has no shader-f16: f16 conversion is covered by the MissingFeature test");
        return;
    }
    let mut rng = Rng::new(seed());
    let n = 1001; // odd: the packed tail must work
    let x: Vec<f32> = rng.uniform_vec(n).iter().map(|v| v * 100.0).collect();
    let xt = gpu.upload_f32(&x, [n], "x").unwrap();
    let h = gpu.empty([n], DType::F16, "h").unwrap();
    let back = gpu.empty([n], DType::F32, "back").unwrap();
    let mut batch = gpu.batch("test");
    ops::fill(&mut batch, &back, f32::NAN).unwrap();
    ops::convert(&mut batch, &xt, &h).unwrap();
    ops::convert(&mut batch, &h, &back).unwrap();
    batch.submit().unwrap();
    let got = block_on(gpu.read_f32(&back)).unwrap();
    let via_half = block_on(gpu.read_f32(&h)).unwrap();
    for i in 0..n {
        let want = half::f16::from_f32(x[i]).to_f32();
        assert_eq!(got[i], want, "element {i}");
        assert_eq!(via_half[i], want, "element {i} (f16 readback)");
    }
}

#[test]
fn f16_kernels_report_missing_feature_without_shader_f16() {
    let gpu = gpu_with(GpuOptions { allow_f16: false, ..GpuOptions::default() });
    assert!(!gpu.info().shader_f16);
    let x = gpu.upload_f32(&[1.0, 2.0], [2], "x").unwrap();
    let h = gpu.empty([2], DType::F16, "h").unwrap();
    let mut batch = gpu.batch("test");
    let err = ops::convert(&mut batch, &x, &h).unwrap_err();
    assert!(matches!(err, GpuError::MissingFeature { feature: "shader-f16", .. }), "{err}");
}

#[test]
fn memory_accounting_tracks_live_and_peak() {
    use animatediff_wgpu::gpu::ArenaConfig;
    for arena in [ArenaConfig::OFF, ArenaConfig::DEFAULT] {
        let gpu = block_on(Gpu::new(GpuOptions { arena, ..GpuOptions::default() })).unwrap();
        let base = gpu.memory();
        gpu.reset_peak_memory();
        let a = gpu.empty([1 << 18], DType::F32, "a").unwrap(); // 1 MiB
        let b = gpu.empty([1 << 17], DType::F16, "b").unwrap(); // 256 KiB
        // A weight is a buffer of its own either way.
        let w = gpu.empty_weight([1 << 10], DType::F32, "w").unwrap(); // 4 KiB
        let during = gpu.memory();
        if arena.enabled() {
            // Both activations in one arena chunk: the device holds the chunk.
            assert_eq!(during.live_bytes, base.live_bytes + arena.chunk_bytes + (1 << 12));
            assert_eq!(during.live_buffers, base.live_buffers + 2);
            assert_eq!(gpu.arena_chunks(), vec![arena.chunk_bytes]);
        } else {
            assert_eq!(during.live_bytes, base.live_bytes + (1 << 20) + (1 << 18) + (1 << 12));
            assert_eq!(during.live_buffers, base.live_buffers + 3);
        }
        drop(a);
        // The chunk lives while `b` does.
        assert_eq!(gpu.memory().live_bytes, if arena.enabled() { during.live_bytes } else { during.live_bytes - (1 << 20) });
        drop(b);
        drop(w);
        let after = gpu.memory();
        assert_eq!(after.live_bytes, base.live_bytes);
        assert_eq!(after.peak_bytes, during.live_bytes);
    }
}

#[test]
fn pipeline_cache_reuses_compiled_kernels() {
    let gpu = gpu();
    let def = ShaderDef { name: "fill", source: include_str!("../shaders/fill.wgsl"), entry: "main", includes: &[], include_names: &[] };
    let before = gpu.pipeline_count();
    let a = gpu.kernel(&def, &Spec::new().u32("WG", 64)).unwrap();
    let b = gpu.kernel(&def, &Spec::new().u32("WG", 64)).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(gpu.pipeline_count(), before + 1);
    let c = gpu.kernel(&def, &Spec::new().u32("WG", 128)).unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(gpu.pipeline_count(), before + 2);
}

#[test]
fn invalid_shader_is_a_typed_validation_error() {
    let gpu = gpu();
    let def = ShaderDef { name: "broken", source: "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }", entry: "main", includes: &[], include_names: &[] };
    let err = gpu.kernel(&def, &Spec::new()).unwrap_err();
    match &err {
        GpuError::Validation { context, .. } => assert_eq!(context.as_deref(), Some("shader `broken`")),
        other => panic!("expected a validation error, got {other}"),
    }
    // The context stays usable.
    assert!(block_on(linear_selftest(&gpu, 5, 6, 7, 1)).unwrap().passed);
}

#[test]
fn bindings_over_the_limit_are_refused_not_crashed() {
    // Activations are split across bindings by the ops (tests/kernels.rs); a single weight
    // larger than a binding cannot be, and must be a typed error rather than a GPU error.
    let gpu = gpu_with(GpuOptions { max_storage_binding_size: Some(1 << 20), ..GpuOptions::default() });
    assert_eq!(gpu.max_binding(), 1 << 20);
    let x = gpu.empty([4, 600], DType::F32, "x").unwrap();
    let w = gpu.empty([600, 512], DType::F32, "w").unwrap(); // 1.2 MB
    let y = gpu.empty([4, 512], DType::F32, "y").unwrap();
    let mut batch = gpu.batch("test");
    let err = ops::linear(&mut batch, &x, &w, None, &y).unwrap_err();
    assert!(matches!(err, GpuError::LimitExceeded { limit_name: "max_storage_buffer_binding_size", .. }), "{err}");
}

#[test]
fn oversized_buffer_is_refused() {
    let gpu = gpu();
    let err = gpu.create_buffer(gpu.limits().max_buffer_size + 4, "huge").unwrap_err();
    assert!(matches!(err, GpuError::LimitExceeded { limit_name: "max_buffer_size", .. }), "{err}");
}

#[test]
fn shape_mismatch_is_a_typed_error() {
    let gpu = gpu();
    let x = gpu.empty([4, 8], DType::F32, "x").unwrap();
    let w = gpu.empty([9, 3], DType::F32, "w").unwrap();
    let y = gpu.empty([4, 3], DType::F32, "y").unwrap();
    let mut batch = gpu.batch("test");
    let err = ops::linear(&mut batch, &x, &w, None, &y).unwrap_err();
    assert!(matches!(err, GpuError::Shape { op: "linear", .. }), "{err}");
}

#[test]
fn device_loss_is_reported_and_a_new_context_works() {
    let gpu = gpu();
    assert!(block_on(linear_selftest(&gpu, 8, 8, 8, 2)).unwrap().passed);
    gpu.destroy();
    let err = block_on(linear_selftest(&gpu, 8, 8, 8, 3)).unwrap_err();
    assert!(err.is_device_lost(), "expected device lost, got {err}");
    // Every later call keeps saying so instead of crashing.
    assert!(gpu.empty([4], DType::F32, "after").unwrap_err().is_device_lost());
    let fresh = self::gpu();
    assert!(block_on(linear_selftest(&fresh, 8, 8, 8, 4)).unwrap().passed);
}

#[test]
fn kernel_suite_passes_on_this_device() {
    // The suite the CLI, the page and the browser test run.
    let gpu = gpu();
    let checks = block_on(kernel_suite(&gpu, seed())).unwrap();
    assert!(checks.len() >= 20, "only {} checks", checks.len());
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "failed: {failed:?}");
}

/// Pass-timestamp profiling (`bench unet --profile`): every dispatch of the batches submitted
/// while it runs is counted under its kernel's name, also past one query set's 2048
/// dispatches (the batch is then submitted in parts), and the work still computes the same.
#[test]
fn profile_counts_every_dispatch_by_kernel() {
    let gpu = gpu();
    if !gpu.info().timestamp_query {
        eprintln!("skipping: the adapter has no timestamp-query");
        return;
    }
    assert!(block_on(gpu.take_profile()).is_err(), "no profile was started");
    let t = gpu.empty([4096], DType::F32, "t").unwrap();
    let (m, k, n) = (8, 16, 8);
    let x = gpu.upload_f32(&vec![0.5; m * k], [m, k], "x").unwrap();
    let w = gpu.upload_f32(&vec![0.25; k * n], [k, n], "w").unwrap();
    let y = gpu.empty([m, n], DType::F32, "y").unwrap();
    gpu.start_profile().unwrap();
    let mut batch = gpu.batch("profiled");
    let fills = 2100;
    for i in 0..fills {
        ops::fill(&mut batch, &t, i as f32).unwrap();
    }
    ops::linear(&mut batch, &x, &w, None, &y).unwrap();
    batch.submit().unwrap();
    let profile = block_on(gpu.take_profile()).unwrap();
    eprintln!("{profile:?}");
    let fill = profile.iter().find(|p| p.name == "fill").expect("fill timed");
    assert_eq!(fill.dispatches, fills);
    assert_eq!(profile.iter().map(|p| p.dispatches).sum::<u64>(), fills + 1, "one linear dispatch besides the fills");
    assert!(profile.iter().all(|p| p.nanoseconds >= 0.0) && profile.iter().any(|p| p.nanoseconds > 0.0));
    assert!(profile.windows(2).all(|w| w[0].nanoseconds >= w[1].nanoseconds), "most time first");
    assert!(block_on(gpu.read_f32(&t)).unwrap().iter().all(|&v| v == (fills - 1) as f32));
    assert!(block_on(gpu.read_f32(&y)).unwrap().iter().all(|&v| (v - 2.0).abs() < 1e-6), "16 × 0.5 × 0.25");
    // Stopped: later batches are not timed.
    let mut batch = gpu.batch("after");
    ops::fill(&mut batch, &t, 1.0).unwrap();
    batch.submit().unwrap();
    assert!(block_on(gpu.take_profile()).is_err());
}
