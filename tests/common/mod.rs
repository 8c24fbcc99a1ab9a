//! Shared helpers for the model parity tests: fixture files written by
//! `scripts/make_fixtures.py` (diffusers is the oracle), read whole (they are small).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use animatediff_wgpu::gpu::{Gpu, GpuOptions};
use animatediff_wgpu::load::{HostTensor, MapSource};
use animatediff_wgpu::model::{ClipConfig, MotionConfig, UNetConfig, VaeConfig};
use animatediff_wgpu::pipeline::load::ModelPaths;
use pollster::block_on;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn tiny() -> PathBuf {
    fixtures().join("tiny")
}

/// Every tensor of a safetensors file, as f32 (f16/bf16/f64/i64 converted).
pub fn read_safetensors(path: &Path) -> MapSource {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut m = MapSource { origin: path.display().to_string(), ..Default::default() };
    for (name, view) in st.tensors() {
        let d = view.data();
        let data: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            safetensors::Dtype::F16 => d.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            safetensors::Dtype::BF16 => d.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            safetensors::Dtype::F64 => d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            safetensors::Dtype::I64 => d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            safetensors::Dtype::I32 => d.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            other => panic!("{name}: dtype {other:?}"),
        };
        m.tensors.insert(name, HostTensor::new(view.shape().to_vec(), data));
    }
    m
}

pub fn get<'a>(m: &'a MapSource, name: &str) -> &'a HostTensor {
    m.tensors.get(name).unwrap_or_else(|| panic!("{}: no tensor {name}", m.origin))
}

pub fn ids(m: &MapSource, name: &str) -> Vec<u32> {
    get(m, name).data.iter().map(|&v| v as u32).collect()
}

pub fn gpu() -> Gpu {
    block_on(Gpu::new(GpuOptions::default())).unwrap_or_else(|e| panic!("GPU adapter needed (lavapipe in CI): {e}"))
}

pub fn read(gpu: &Gpu, t: &animatediff_wgpu::Tensor) -> Vec<f32> {
    block_on(gpu.read_f32(t)).unwrap()
}

/// ‖a − b‖ / ‖b‖.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let d = f64::from(*x) - f64::from(*y);
        num += d * d;
        den += f64::from(*y) * f64::from(*y);
    }
    (num / den.max(1e-30)).sqrt()
}

pub fn max_abs(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs()).fold(0.0, f64::max)
}

/// Assert a relative L2 error bound, printing both error measures.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rel_tol: f64) {
    assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite output");
    let e = rel_l2(got, want);
    eprintln!("{what}: rel L2 {e:.3e}, max abs {:.3e}", max_abs(got, want));
    assert!(e <= rel_tol, "{what}: relative L2 error {e:.3e} > {rel_tol:.0e}");
}

/// A prefix-stripped (or prefixed) copy of a source's tensors.
pub fn with_prefix(m: &MapSource, strip: &str, add: &str) -> MapSource {
    let mut out = MapSource { origin: m.origin.clone(), ..Default::default() };
    for (k, v) in &m.tensors {
        let base = k.strip_prefix(strip).unwrap_or(k);
        out.tensors.insert(format!("{add}{base}"), v.clone());
    }
    out
}

/// The tiny fixture models' configs (`scripts/make_fixtures.py`): the real SD1.5 topology
/// with few channels.
pub fn tiny_unet_config() -> UNetConfig {
    UNetConfig {
        block_out_channels: vec![8, 16, 32, 32],
        norm_num_groups: 4,
        cross_attention_dim: 16,
        attention_heads: vec![2; 4],
        sample_size: 16,
        ..UNetConfig::sd15()
    }
}

pub fn tiny_motion_config() -> MotionConfig {
    MotionConfig { block_out_channels: vec![8, 16, 32, 32], motion_num_attention_heads: 2, motion_norm_num_groups: 4, ..MotionConfig::sd15_v2() }
}

pub fn tiny_vae_config() -> VaeConfig {
    VaeConfig { block_out_channels: vec![8, 16, 32, 32], norm_num_groups: 4, ..VaeConfig::sd15() }
}

pub fn tiny_clip_config() -> ClipConfig {
    ClipConfig { hidden_size: 16, intermediate_size: 37, num_hidden_layers: 2, num_attention_heads: 2, ..ClipConfig::sd15() }
}

/// The tiny pipeline as a diffusers folder + MotionAdapter folder.
pub fn tiny_diffusers_paths() -> ModelPaths {
    ModelPaths { model: tiny().join("diffusers"), motion: tiny().join("motion_adapter"), ..Default::default() }
}

/// The same pipeline as an LDM fp16 single file + original `.ckpt` motion module (configs from
/// the diffusers folders: shapes cannot tell heads and groups).
pub fn tiny_single_file_paths() -> ModelPaths {
    ModelPaths {
        model: tiny().join("original/sd15_tiny_ldm_fp16.safetensors"),
        motion: tiny().join("original/mm_tiny_v2_fp16.ckpt"),
        config: Some(tiny().join("diffusers")),
        motion_config: Some(tiny().join("motion_adapter")),
        ..Default::default()
    }
}
