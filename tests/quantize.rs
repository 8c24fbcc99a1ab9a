//! Quantization on load: the GPU quantize kernel against the CPU reference (bit-exact), the
//! policy-driven loader (which layers become q8/q4, peak memory while loading), and the
//! offline quantized file (round trip, bad files).

mod common;

use animatediff_wgpu::gpu::{DType, Gpu, GpuOptions};
use animatediff_wgpu::ops;
use animatediff_wgpu::quant::{self, QuantFormat, QuantizedMatrix};
use animatediff_wgpu::reference::Rng;
use common::*;
use half::f16;
use pollster::block_on;

fn bytes_u32(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn bytes_f16(b: &[u8], n: usize) -> Vec<f16> {
    b.chunks_exact(2).take(n).map(|c| f16::from_le_bytes([c[0], c[1]])).collect()
}

/// Quantize `w [k, n]` on the GPU (stored as `dtype`) and read the packed result back.
fn gpu_quantize(gpu: &Gpu, w: &[f32], k: usize, n: usize, fmt: QuantFormat, dtype: DType) -> QuantizedMatrix {
    let t = gpu.upload_f32_as(w, [k, n], dtype, "w").unwrap();
    let mut b = gpu.batch("quantize");
    let q = ops::quantize_weight(&mut b, &t, fmt, "w").unwrap();
    b.submit().unwrap();
    drop(t);
    let words = bytes_u32(&block_on(gpu.read_bytes(&q.words)).unwrap());
    let ns = k / fmt.group as usize * n;
    let scales = bytes_f16(&block_on(gpu.read_bytes(&q.scales)).unwrap(), ns);
    let mins = match &q.mins {
        Some(m) => bytes_f16(&block_on(gpu.read_bytes(m)).unwrap(), ns),
        None => vec![],
    };
    QuantizedMatrix { k, n, format: fmt, words, scales, mins }
}

/// Weights that stress every branch: ordinary random groups, exact rounding ties, zero
/// groups, tiny groups (subnormal f16 scales), one-signed and constant groups.
fn hard_weights(k: usize, n: usize, fmt: QuantFormat, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut w: Vec<f32> = rng.uniform_vec(k * n).iter().map(|v| v * 0.2).collect();
    let g = fmt.group as usize;
    let top = quant::code_max(fmt) as i64;
    for gi in 0..k / g {
        for col in 0..n {
            let idx = |j: usize| (gi * g + j) * n + col;
            match (gi * n + col) % 7 {
                // Ties: with the group's amax (or range) fixed, every other value sits exactly
                // half-way between two codes.
                1 | 2 => {
                    let amax = 0.37f32 + 0.01 * (col % 5) as f32;
                    let (s, m) = if fmt.asymmetric {
                        let (lo, hi) = (-0.11f32, amax);
                        w[idx(0)] = lo;
                        w[idx(1)] = hi;
                        (f16::from_f32((hi - lo) * quant::scale_factor(fmt)).to_f32(), f16::from_f32(lo).to_f32())
                    } else {
                        w[idx(0)] = if col % 2 == 0 { amax } else { -amax };
                        (f16::from_f32(amax * quant::scale_factor(fmt)).to_f32(), 0.0)
                    };
                    let start = if fmt.asymmetric { 2 } else { 1 };
                    for j in start..g {
                        let r = rng.uniform_vec(1)[0];
                        let q = if fmt.asymmetric { ((r + 1.0) * 0.5 * top as f32) as i64 % top } else { (r * top as f32) as i64 };
                        let q = q.clamp(if fmt.asymmetric { 0 } else { -top }, top - 1);
                        w[idx(j)] = (q as f32 + 0.5) * s + m;
                    }
                }
                3 => (0..g).for_each(|j| w[idx(j)] = 0.0),
                4 => (0..g).for_each(|j| w[idx(j)] = (j as f32 - 3.0) * 1.3e-7),
                5 => (0..g).for_each(|j| w[idx(j)] = -0.05 - 0.001 * j as f32),
                6 => (0..g).for_each(|j| w[idx(j)] = 0.25),
                _ => {}
            }
        }
    }
    w
}

fn formats(k: usize) -> Vec<QuantFormat> {
    vec![
        QuantFormat { bits: 8, group: 32, asymmetric: false },
        QuantFormat { bits: 8, group: k as u32, asymmetric: false },
        QuantFormat { bits: 8, group: 64, asymmetric: true },
        QuantFormat { bits: 4, group: 32, asymmetric: false },
        QuantFormat { bits: 4, group: 64, asymmetric: false },
        QuantFormat { bits: 4, group: 32, asymmetric: true },
        QuantFormat { bits: 4, group: 24, asymmetric: true },
    ]
}

fn assert_same(what: &str, got: &QuantizedMatrix, want: &QuantizedMatrix) {
    let bad_words = got.words.iter().zip(&want.words).filter(|(a, b)| a != b).count();
    let bad_scales = got.scales.iter().zip(&want.scales).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    let bad_mins = got.mins.iter().zip(&want.mins).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!((got.words.len(), got.scales.len(), got.mins.len()), (want.words.len(), want.scales.len(), want.mins.len()), "{what}: sizes");
    assert_eq!((bad_words, bad_scales, bad_mins), (0, 0, 0), "{what}: differing words / scales / mins");
}

#[test]
fn gpu_quantizer_is_bit_exact_with_the_cpu_reference() {
    let gpu = gpu();
    let (k, n) = (192, 40);
    for (i, fmt) in formats(k).into_iter().enumerate() {
        if fmt.check(k, n).is_err() {
            continue;
        }
        let w = hard_weights(k, n, fmt, 11 + i as u64);
        let want = quant::quantize(&w, k, n, fmt).unwrap();
        assert_same(&format!("{fmt:?} f32"), &gpu_quantize(&gpu, &w, k, n, fmt, DType::F32), &want);
        if gpu.info().shader_f16 {
            // f16 storage: the same as quantizing the f16-rounded values.
            let w16: Vec<f32> = w.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
            let want = quant::quantize(&w16, k, n, fmt).unwrap();
            assert_same(&format!("{fmt:?} f16"), &gpu_quantize(&gpu, &w16, k, n, fmt, DType::F16), &want);
        }
    }
}

#[test]
fn gpu_quantizer_splits_weights_larger_than_one_binding() {
    // 64 KiB bindings: a [1152, 64] f32 weight (288 KiB) is quantized in several dispatches.
    let gpu = block_on(Gpu::new(GpuOptions { max_storage_binding_size: Some(1 << 16), ..GpuOptions::default() })).unwrap();
    let (k, n) = (1152, 64);
    for fmt in [QuantFormat { bits: 4, group: 32, asymmetric: true }, QuantFormat { bits: 8, group: 64, asymmetric: false }] {
        let w = hard_weights(k, n, fmt, 5);
        assert_same(&format!("split {fmt:?}"), &gpu_quantize(&gpu, &w, k, n, fmt, DType::F32), &quant::quantize(&w, k, n, fmt).unwrap());
    }
}

#[test]
fn gpu_quantizer_rejects_shapes_the_kernels_cannot_take() {
    let gpu = gpu();
    let mut b = gpu.batch("bad");
    for (k, n, fmt) in [(72, 16, QuantFormat::Q4), (64, 12, QuantFormat::Q4), (64, 6, QuantFormat::Q8)] {
        let t = gpu.upload_f32(&vec![0.5; k * n], [k, n], "w").unwrap();
        let e = ops::quantize_weight(&mut b, &t, fmt, "layer.x").unwrap_err();
        assert!(e.to_string().contains("layer.x"), "{e}");
    }
    let t = gpu.empty([32, 8], DType::U32, "w").unwrap();
    assert!(ops::quantize_weight(&mut b, &t, QuantFormat::Q8, "u").is_err());
}
