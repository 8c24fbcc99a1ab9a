//! Fault injection natively (lavapipe): the device destroyed in the middle of a generation, and
//! cancellation at every point (an interrupted load, after any step, right before the decode).
//! Each fault must come back as a typed error — never a panic or a hang — free every GPU
//! buffer it allocated, and leave the process able to generate the diffusers reference video
//! again (a new `Gpu` after a device loss; the same one after a cancel).

mod common;

use std::cell::Cell;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use animatediff_wgpu::load::{HostTensor, LoadError, LoadResult, WeightSource};
use animatediff_wgpu::pipeline::generate::{GenerateParams, InitLatents, Output};
use animatediff_wgpu::pipeline::load::{build_models, default_unet_options, open_pipeline, Components, HostPipeline, Precision};
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
