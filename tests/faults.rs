//! Fault injection natively (lavapipe): the device destroyed in the middle of a generation,
//! cancellation at every point (an interrupted load, text encoding, after any step, inside the
//! VAE decode), and the device running out of memory at an allocation (a memory cap).
//! Each fault must come back as a typed error — never a panic or a hang — free every GPU
//! buffer it allocated, and leave the process able to generate the diffusers reference video
//! again (a new `Gpu` after a device loss; the same one after a cancel).

mod common;

use std::cell::Cell;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use animatediff_wgpu::gpu::{ArenaConfig, Gpu, GpuError, GpuOptions};
use animatediff_wgpu::load::{HostTensor, LoadError, LoadResult, WeightSource};
use animatediff_wgpu::pipeline::fit;
use animatediff_wgpu::pipeline::generate::{GenerateParams, Hooks, InitLatents, Output};
use animatediff_wgpu::pipeline::load::{build_models, default_unet_options, open_pipeline, Components, HostPipeline, Precision, Weights};
use animatediff_wgpu::plan::{self, DeviceLimits, PlanError};
use animatediff_wgpu::Error;
use common::*;
use pollster::block_on;

/// The settings of `reference/pipeline_diffusers.safetensors` (diffusers' AnimateDiffPipeline:
/// 8 frames 192×128, 4 DDIM steps, CFG 7.5, its initial latents).
fn reference_params(host: &HostPipeline) -> GenerateParams {
    let refs = read_safetensors(&tiny().join("reference/pipeline_diffusers.safetensors"));
    let mut p = GenerateParams::new("a corgi running on the beach, golden hour, highly detailed", host.scheduler.clone());
    p.negative_prompt = "blurry, low quality".into();
    (p.frames, p.height, p.width, p.steps, p.guidance_scale) = (8, 128, 192, 4, 7.5);
    p.init = InitLatents::Tensor(get(&refs, "init_latents").data.clone());
    p.unet = default_unet_options(&host.motion);
    p.unet.motion_norm = animatediff_wgpu::model::motion::MotionNorm::Diffusers;
    p
}

fn check_reference(what: &str, out: &Output) {
    let refs = read_safetensors(&tiny().join("reference/pipeline_diffusers.safetensors"));
    assert_close(&format!("{what}: final latents"), &out.latents, &get(&refs, "final_latents").data, 1e-3);
    let e = max_abs(&out.frames, &get(&refs, "frames").data);
    eprintln!("{what}: frames max abs error vs diffusers {e:.2e}");
    assert!(e <= 5e-3, "{what}: frames differ from diffusers by {e:.2e}");
}

/// Run `f` on its own thread and fail (instead of hanging the suite) if it takes longer than
/// `secs`. A panic inside `f` is re-raised here.
fn with_deadline<T: Send + 'static>(what: &str, secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Disconnected) => std::panic::resume_unwind(h.join().err().unwrap_or_else(|| Box::new("no result"))),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after {secs} s (hang)"),
    }
}

fn cancelled() -> Error {
    Error::input("cancel", "cancelled by the test")
}

fn is_cancel(e: &Error) -> bool {
    matches!(e, Error::Input { param, .. } if param == "cancel")
}

#[test]
fn device_lost_mid_generation_is_typed_and_a_new_device_generates_the_reference() {
    let out = with_deadline("device loss", 600, || {
        let host = open_pipeline(&tiny_diffusers_paths()).unwrap();
        let p = reference_params(&host);
        let gpu = gpu();
        let models = build_models(&gpu, &host.components(), Precision::F32).unwrap();
        let mut steps = 0;
        let t = Instant::now();
        let r = block_on(models.generate_with(&gpu, &p, &mut |pr| {
            steps += 1;
            if pr.step == 2 {
                gpu.destroy();
            }
            Ok(())
        }));
        let err = match r {
            Ok(_) => panic!("a generation whose device was destroyed at step 2 succeeded"),
            Err(e) => e,
        };
        eprintln!("device destroyed after step 2: {err} (reported after {:.1} s)", t.elapsed().as_secs_f64());
        assert!(matches!(&err, Error::Gpu(g) if g.is_device_lost()), "expected a device-lost error, got: {err:?}");
        assert_eq!(steps, 2, "the loop must stop at the step after the loss");
        assert!(gpu.is_lost());
        // The dead context keeps answering with the same typed error.
        let again = gpu.upload_f32(&[1.0, 2.0], [2], "after loss").unwrap_err();
        assert!(again.is_device_lost(), "{again:?}");
        assert!(matches!(block_on(gpu.sync()), Err(e) if e.is_device_lost()));
        drop(models);
        drop(gpu);

        // Same process: a new device and the models reloaded from the same host pipeline.
        let gpu = common::gpu();
        assert!(!gpu.is_lost());
        let models = build_models(&gpu, &host.components(), Precision::F32).unwrap();
        block_on(models.generate(&gpu, &p, &mut |_| {})).unwrap()
    });
    check_reference("after device loss, new device", &out);
}

/// A weight source that fails after `ok` tensor reads: a load interrupted part way (cancelled,
/// or a file that turns out to be truncated).
struct FailAfter<'a> {
    inner: &'a dyn WeightSource,
    ok: usize,
    reads: Cell<usize>,
}

impl WeightSource for FailAfter<'_> {
    fn tensor(&self, name: &str) -> LoadResult<HostTensor> {
        let n = self.reads.get();
        self.reads.set(n + 1);
        if n >= self.ok {
            return Err(LoadError::Io { file: self.origin(), source: std::io::Error::new(std::io::ErrorKind::Interrupted, format!("load cancelled at `{name}`")) });
        }
        self.inner.tensor(name)
    }
    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.inner.shape(name)
    }
    fn names(&self) -> Vec<String> {
        self.inner.names()
    }
    fn origin(&self) -> String {
        format!("{} (interrupted)", self.inner.origin())
    }
}

#[test]
fn cancel_at_any_point_frees_everything_and_the_next_run_matches() {
    let out = with_deadline("cancel", 900, || {
        let host = open_pipeline(&tiny_single_file_paths()).unwrap();
        let p = reference_params(&host);
        let gpu = gpu();
        let empty = gpu.memory();

        // Load interrupted in each component, early and late.
        let c = host.components();
        for (which, ok) in [("unet", 0), ("unet", 25), ("unet", 10_000), ("vae", 3), ("text_encoder", 7)] {
            let (unet, vae, te) = (FailAfter { inner: c.unet, ok, reads: Cell::new(0) }, FailAfter { inner: c.vae, ok, reads: Cell::new(0) }, FailAfter { inner: c.text_encoder, ok, reads: Cell::new(0) });
            let parts = Components {
                unet: if which == "unet" { &unet } else { c.unet },
                vae: if which == "vae" { &vae } else { c.vae },
                text_encoder: if which == "text_encoder" { &te } else { c.text_encoder },
                ..host.components()
            };
            match build_models(&gpu, &parts, Precision::F32) {
                Ok(_) if ok == 10_000 => {} // more reads allowed than the component has: a full load, dropped
                Ok(_) => panic!("load of a {which} failing after {ok} reads succeeded"),
                Err(e) => assert!(matches!(&e, Error::Load(LoadError::Io { .. })), "{which} after {ok}: {e:?}"),
            }
            let m = gpu.memory();
            assert_eq!((m.live_bytes, m.live_buffers), (empty.live_bytes, empty.live_buffers), "{which} interrupted after {ok} reads leaked GPU memory");
        }

        let models = build_models(&gpu, &host.components(), Precision::F32).unwrap();
        let loaded = gpu.memory();
        // Cancel after every step (the last one = right before the VAE decode); a small video
        // keeps this quick, the reference run below checks the result.
        let mut small = p.clone();
        (small.frames, small.height, small.width, small.steps) = (2, 64, 64, 3);
        small.init = InitLatents::Seed(7);
        for at in 1..=small.steps {
            let mut seen = 0;
            let r = block_on(models.generate_with(&gpu, &small, &mut |pr| {
                seen = pr.step;
                if pr.step == at {
                    Err(cancelled())
                } else {
                    Ok(())
                }
            }));
            let e = r.err().unwrap_or_else(|| panic!("cancel at step {at} was ignored"));
            assert!(is_cancel(&e), "cancel at step {at} came back as {e:?}");
            assert_eq!(seen, at);
            block_on(gpu.sync()).unwrap();
            let m = gpu.memory();
            assert_eq!((m.live_bytes, m.live_buffers), (loaded.live_bytes, loaded.live_buffers), "cancel at step {at} leaked GPU memory");
        }
        let out = block_on(models.generate(&gpu, &p, &mut |_| {})).unwrap();
        let m = gpu.memory();
        assert_eq!((m.live_bytes, m.live_buffers), (loaded.live_bytes, loaded.live_buffers), "a full run after the cancels leaked GPU memory");
        drop(models);
        let m = gpu.memory();
        assert_eq!((m.live_bytes, m.live_buffers), (empty.live_bytes, empty.live_buffers), "dropping the models did not free them");
        out
    });
    check_reference("after cancels", &out);
}

/// A small seeded video (2 frames 64², 1 DDIM step, CFG, VAE 1 frame per call: two chunks).
fn small_params(host: &HostPipeline) -> GenerateParams {
    let mut p = reference_params(host);
    (p.frames, p.height, p.width, p.steps) = (2, 64, 64, 1);
    p.init = InitLatents::Seed(7);
    p.decode_chunk = 1;
    p
}

#[test]
fn cancel_at_every_cancel_point_incl_text_encoding_and_inside_the_vae_decode() {
    with_deadline("cancel points", 900, || {
        let t0 = Instant::now();
        let host = open_pipeline(&tiny_diffusers_paths()).unwrap();
        let p = small_params(&host);
        let gpu = gpu();
        let models = build_models(&gpu, &host.components(), Precision::F32).unwrap();
        block_on(gpu.sync()).unwrap();
        let loaded = gpu.memory();
        let run = |cancel_at: Option<usize>| {
            let asked = Cell::new(0usize);
            let cancel = || {
                asked.set(asked.get() + 1);
                Some(asked.get()) == cancel_at
            };
            let before = gpu.memory().total_allocated_bytes;
            let r = block_on(models.generate_hooked(&gpu, &p, &mut Hooks { after_step: &mut |_| Ok(()), preview: None, cancel: Some(&cancel) }));
            (r, asked.get(), gpu.memory().total_allocated_bytes - before)
        };
        let (full, checks, full_bytes) = run(None);
        let full = full.unwrap();
        eprintln!("uncancelled run: {checks} cancel checks, {full_bytes} bytes allocated");
        // Cancel at the n-th check, for every n: every cancel point of the run.
        let mut wheres = Vec::new();
        for n in 1..=checks {
            let (r, asked, bytes) = run(Some(n));
            let during = match r {
                Err(Error::Cancelled { during }) => during,
                Err(e) => panic!("cancel at check {n} came back as {e:?}"),
                Ok(_) => panic!("cancel at check {n} of {checks} was ignored"),
            };
            assert_eq!(asked, n, "the run went on asking after cancel point {n} ({during})");
            // Prompt: the work after the cancel point was never queued.
            assert!(bytes < full_bytes, "cancel at {during}: allocated {bytes} bytes, as much as a whole run ({full_bytes})");
            block_on(gpu.sync()).unwrap();
            let m = gpu.memory();
            assert_eq!((m.live_bytes, m.live_buffers), (loaded.live_bytes, loaded.live_buffers), "cancel during {during} leaked GPU memory");
            assert!(!wheres.contains(&during), "two cancel points are both called {during:?}");
            wheres.push(during);
        }
        eprintln!("cancel points: {wheres:?}");
        for want in ["start (before text encoding)", "text encoding", "step 1 of 1", "the VAE decode (mid block), frames 1–1 of 2", "the VAE decode (up block 0), frames 2–2 of 2", "the VAE decode (after frame 1 of 2)"] {
            assert!(wheres.iter().any(|w| w == want), "no cancel point {want:?} in {wheres:?}");
        }
        // The next run after all those cancels is the same video, bit for bit.
        let (again, _, _) = run(None);
        let again = again.unwrap();
        assert!(again.frames == full.frames && again.latents == full.latents, "the run after the cancels differs from the one before");
        eprintln!("{} cancelled runs + 2 full runs in {:.1} s", checks, t0.elapsed().as_secs_f64());
    });
}

#[test]
fn out_of_memory_at_allocation_falls_back_to_a_smaller_plan_or_says_what_fits() {
    with_deadline("out of memory", 900, || {
        let t0 = Instant::now();
        let host = open_pipeline(&tiny_single_file_paths()).unwrap();
        // Arena chunks of 256 KiB: with the default 16 MiB one chunk holds every tiny
        // activation, and every plan (whatever its levers) peaks at the weights plus that chunk.
        let gpu = block_on(Gpu::new(GpuOptions { arena: ArenaConfig { chunk_bytes: 256 << 10 }, ..GpuOptions::default() })).unwrap();
        let models = build_models(&gpu, &host.components(), Precision::F32).unwrap();
        block_on(gpu.sync()).unwrap();
        let loaded = gpu.memory();
        let p = small_params(&host);
        let req = plan::request_for(&host.components(), &p, models.unet.dtype(), Weights::Dense).unwrap().expect("a plain run is planned");
        // The cheapest plan (no budget) and the smallest peak on the planner's ladder (lower
        // the budget below each chosen plan until none fits).
        let limits = fit::device_limits(&gpu, None);
        let first = plan::choose(&req, &limits).unwrap();
        let mut smallest = first.peak_bytes;
        loop {
            match plan::choose(&req, &DeviceLimits { budget: Some(smallest - 1), ..limits }) {
                Ok(pl) => smallest = pl.peak_bytes,
                Err(PlanError::DoesNotFit { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        eprintln!("plans: cheapest peak {} B ({}), smallest peak {smallest} B", first.peak_bytes, first.levers);
        assert!(smallest < first.peak_bytes, "the ladder has no smaller plan");
        // The cheapest plan's levers, run without the planner.
        let mut cheapest = p.clone();
        plan::apply(&req, &limits, &mut cheapest).unwrap();
        let reference = block_on(models.generate(&gpu, &cheapest, &mut |_| {})).unwrap();
        let generate = |cap: u64| {
            gpu.memory_stats().set_memory_cap(Some(cap));
            let mut q = p.clone();
            let mut lines = Vec::new();
            let r = block_on(fit::generate_fitted(fit::Loaded { models: &models, host: &host, weights: Weights::Dense }, &gpu, fit::device_limits(&gpu, None), &mut q, &mut Hooks { after_step: &mut |_| Ok(()), preview: None, cancel: None }, &mut |pl, why| lines.push((fit::describe(pl, why), why.is_some()))));
            gpu.memory_stats().set_memory_cap(None);
            block_on(gpu.sync()).unwrap();
            let m = gpu.memory();
            // Every activation freed; the weights of a model a smaller plan offloaded (text
            // encoder, VAE) may stay off the device until a run needs them again.
            assert!(m.live_bytes <= loaded.live_bytes && m.live_buffers <= loaded.live_buffers, "cap {cap}: {m:?} is more than the loaded baseline {loaded:?}");
            (r, lines, q)
        };

        // Without the planner the capped device fails typed, as a full GPU does.
        let cap = first.peak_bytes - 1;
        gpu.memory_stats().set_memory_cap(Some(cap));
        let e = block_on(models.generate(&gpu, &cheapest, &mut |_| {})).err().expect("a run over the cap succeeded");
        gpu.memory_stats().set_memory_cap(None);
        assert!(matches!(&e, Error::Gpu(GpuError::OutOfMemory { .. })), "expected OutOfMemory, got {e:?}");
        eprintln!("capped at {cap} B: {e}");

        // A device one byte short of the cheapest plan: fall back, same video.
        let (r, lines, q) = generate(cap);
        let out = r.unwrap_or_else(|e| panic!("cap {cap}: {e}"));
        eprintln!("{lines:#?}");
        assert!(lines.iter().any(|(l, fallback)| *fallback && l.contains("out of memory")), "no fallback reported: {lines:?}");
        assert!(gpu.memory().peak_bytes <= cap, "the run that succeeded went past the cap");
        assert!((q.cfg_split, q.decode_chunk) != (first.levers.cfg_split, first.levers.decode_chunk), "the fallback kept the failed levers");
        assert!(out.frames == reference.frames && out.latents == reference.latents, "the smaller plan changed the video");

        // A device smaller than the UNet's weights (which no lever moves off it): the
        // planner's error saying what would fit. (Just below the smallest plan's peak can still
        // succeed: that peak is the loaded weights, and offloading levers free some first.)
        let (r, lines, _) = generate(loaded.live_bytes / 4);
        let e = r.err().expect("a run on a device a quarter of the weights succeeded");
        eprintln!("below the smallest plan: {e}");
        match &e {
            Error::Plan(PlanError::DoesNotFit { why, suggestion, .. }) => {
                assert!(why.contains("ran out of memory"), "{why}");
                assert!(!suggestion.is_empty());
            }
            other => panic!("expected DoesNotFit, got {other:?}"),
        }
        assert!(lines.iter().filter(|(_, f)| *f).count() >= 1, "{lines:?}");
        // And the uncapped device generates the same video again.
        let again = block_on(models.generate(&gpu, &p, &mut |_| {})).unwrap();
        assert!(again.frames == reference.frames, "the run after the out-of-memory errors differs");
        eprintln!("out-of-memory test in {:.1} s", t0.elapsed().as_secs_f64());
    });
}
