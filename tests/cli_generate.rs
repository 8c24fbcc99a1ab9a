//! `animatediff generate` as users run it: the tiny LDM single file + original `.ckpt`
//! motion module with the diffusers oracle's initial latents reproduce the oracle's frames;
//! bad requests fail with a clear message and exit code 1, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("animatediff-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn animatediff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_animatediff")).args(args).env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into())).output().unwrap()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn base_args(dir: &Path) -> Vec<String> {
    let t = tiny();
    [
        "generate",
        "--model",
        &p(&t.join("original/sd15_tiny_ldm_fp16.safetensors")),
        "--motion",
        &p(&t.join("original/mm_tiny_v2_fp16.ckpt")),
        "--config",
        &p(&t.join("diffusers")),
        "--motion-config",
        &p(&t.join("motion_adapter")),
        "--prompt",
        "a corgi running on the beach, golden hour, highly detailed",
        "--negative-prompt",
        "blurry, low quality",
        "--out",
        &p(&dir.join("out.gif")),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_with(dir: &Path, extra: &[&str]) -> Output {
    let mut args = base_args(dir);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    animatediff(&refs)
}

#[test]
fn generate_reproduces_the_diffusers_frames() {
    let dir = tmp("e2e");
    let refs = read_safetensors(&tiny().join("reference/pipeline_diffusers.safetensors"));
    let init = get(&refs, "init_latents");
    let bytes: &[u8] = bytemuck::cast_slice(&init.data);
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, init.shape.clone(), bytes).unwrap();
    safetensors::serialize_to_file([("latents", view)], None, &dir.join("init.safetensors")).unwrap();
    let (frames, latents) = (dir.join("frames.safetensors"), dir.join("latents.safetensors"));
    let out = run_with(
        &dir,
        &[
            "--frames", "8", "--width", "192", "--height", "128", "--steps", "4", "--guidance", "7.5",
            "--latents", &p(&dir.join("init.safetensors")),
            // The oracle ran diffusers' semantics (joint motion-module norm), not the original
            // file family's default.
            "--motion-norm", "diffusers",
            "--save-frames", &p(&frames), "--save-latents", &p(&latents), "--png-dir", &p(&dir.join("png")),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "generate failed: {stderr}");
    assert!(stderr.contains("step   4/4"), "no progress output: {stderr}");
    let got = read_safetensors(&frames);
    let f = get(&got, "frames");
    assert_eq!(f.shape, vec![8, 128, 192, 3]);
    let e = max_abs(&f.data, &get(&refs, "frames").data);
    eprintln!("CLI frames max abs error vs diffusers: {e:.2e}");
    assert!(e <= 5e-3, "frames differ by {e:.2e}");
    let l = read_safetensors(&latents);
    assert_close("CLI final latents", &get(&l, "latents").data, &get(&refs, "final_latents").data, 1e-3);
    let gif = std::fs::read(dir.join("out.gif")).unwrap();
    assert!(gif.starts_with(b"GIF89a") && gif.len() > 1000);
    assert_eq!(std::fs::read_dir(dir.join("png")).unwrap().count(), 8);
    let _ = std::fs::remove_dir_all(&dir);
}

fn assert_fails(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "expected exit 1: {stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
}

#[test]
fn bad_requests_fail_with_clear_errors() {
    let dir = tmp("bad");
    // Not a multiple of 8.
    assert_fails(&run_with(&dir, &["--frames", "8", "--width", "100", "--height", "128", "--steps", "1", "--seed", "1"]), "multiples of 8");
    // A multiple of 8 the 4-level UNet cannot halve three times.
    assert_fails(&run_with(&dir, &["--frames", "8", "--width", "200", "--height", "128", "--steps", "1", "--seed", "1"]), "multiple of 64");
    // More frames than the motion module's positional encoding.
    assert_fails(&run_with(&dir, &["--frames", "33", "--width", "64", "--height", "64", "--steps", "1", "--seed", "1"]), "33 frames exceed");
    // Latents of the wrong shape.
    let refs = read_safetensors(&tiny().join("reference/pipeline_diffusers.safetensors"));
    let init = get(&refs, "init_latents");
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, init.shape.clone(), bytemuck::cast_slice(&init.data)).unwrap();
    safetensors::serialize_to_file([("latents", view)], None, &dir.join("init.safetensors")).unwrap();
    assert_fails(&run_with(&dir, &["--frames", "4", "--width", "192", "--height", "128", "--latents", &p(&dir.join("init.safetensors"))]), "expected [1, 4, 4, 16, 24]");
    // Zero steps.
    assert_fails(&run_with(&dir, &["--frames", "8", "--width", "64", "--height", "64", "--steps", "0", "--seed", "1"]), "steps");
    // --no-decode writes only the latents, so it needs --save-latents (a usage error, exit 2).
    let out = run_with(&dir, &["--frames", "8", "--width", "64", "--height", "64", "--steps", "1", "--seed", "1", "--no-decode"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--save-latents"), "{stderr}");
    // A motion module where the model goes, and a truncated model file.
    let t = tiny();
    let out = animatediff(&["generate", "--model", &p(&t.join("original/mm_tiny_v2.safetensors")), "--motion", &p(&t.join("original/mm_tiny_v2.safetensors")), "--prompt", "x"]);
    assert_fails(&out, "mm_tiny_v2.safetensors");
    let bytes = std::fs::read(t.join("original/sd15_tiny_ldm_fp16.safetensors")).unwrap();
    std::fs::write(dir.join("cut.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let out = animatediff(&["generate", "--model", &p(&dir.join("cut.safetensors")), "--motion", &p(&t.join("original/mm_tiny_v2.safetensors")), "--prompt", "x"]);
    assert_fails(&out, "cut.safetensors");
    // A missing file.
    let out = animatediff(&["generate", "--model", "/nonexistent/model.safetensors", "--motion", &p(&t.join("motion_adapter")), "--prompt", "x"]);
    assert_fails(&out, "/nonexistent/model.safetensors");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--memory-budget`: the memory plan picks levers that fit (the measured peak is the planned
/// one, the video is unchanged); a budget below the weights is an error saying so.
/// `--memory-cap`: running out of memory at an allocation falls back to a smaller plan.
#[test]
fn memory_budget_picks_levers_that_fit() {
    let dir = tmp("budget");
    // Arena chunks of 256 KiB: with the default 16 MiB one chunk holds every tiny activation,
    // and every plan (whatever its levers) peaks at the weights plus that chunk.
    let small = ["--frames", "4", "--width", "64", "--height", "64", "--steps", "1", "--seed", "3", "--arena-chunk", "262144"];
    let mib = |out: &Output, prefix: &str| -> f64 {
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        let line = stderr.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` line in {stderr}"));
        let v = line.split(" peak ").nth(1).and_then(|r| r.split_whitespace().nth(if prefix == "total" { 2 } else { 0 })).unwrap_or_else(|| panic!("{line}"));
        v.trim_end_matches(';').parse().unwrap_or_else(|_| panic!("{line}"))
    };
    let free = run_with(&dir, &small);
    let gif_free = std::fs::read(dir.join("out.gif")).unwrap();
    let (planned_free, measured_free) = (mib(&free, "memory plan:"), mib(&free, "total"));
    assert_eq!(planned_free, measured_free, "planned vs measured peak (MiB, no budget)");
    let budget = ((planned_free - 1.0) * (1 << 20) as f64) as u64;
    let tight = run_with(&dir, &[&small[..], &["--memory-budget", &budget.to_string()]].concat());
    let (planned, measured) = (mib(&tight, "memory plan:"), mib(&tight, "total"));
    eprintln!("peak without budget {planned_free} MiB; with a {budget} B budget {planned} MiB planned, {measured} MiB measured");
    assert_eq!(planned, measured, "planned vs measured peak (MiB, budget)");
    assert!(measured < planned_free, "the budget must lower the peak: {measured} vs {planned_free}");
    assert_eq!(std::fs::read(dir.join("out.gif")).unwrap(), gif_free, "levers must not change the video");
    assert_fails(&run_with(&dir, &[&small[..], &["--memory-budget", "3000000"]].concat()), "the weights alone exceed");
    // `--memory-cap`: a device that small runs out of memory at an allocation; generate falls
    // back to a smaller plan by itself, same video.
    let capped = run_with(&dir, &[&small[..], &["--memory-cap", &budget.to_string()]].concat());
    let stderr = String::from_utf8_lossy(&capped.stderr);
    assert!(capped.status.success(), "{stderr}");
    assert!(stderr.contains("GPU out of memory") && stderr.contains("retrying with a smaller plan"), "{stderr}");
    assert_eq!(std::fs::read(dir.join("out.gif")).unwrap(), gif_free, "the fallback must not change the video");
    assert_fails(&run_with(&dir, &[&small[..], &["--memory-cap", "3000000"]].concat()), "GPU out of memory");
}
