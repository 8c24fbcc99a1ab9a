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

// ---------------------------------------------------------------------------------------------
// Loading with a policy.

use animatediff_wgpu::load::{HostTensor, MapSource};
use animatediff_wgpu::model::nn::{Loader, Weight};
use animatediff_wgpu::model::quant_policy::{QuantPolicy, QuantScheme};
use animatediff_wgpu::model::{UNet, UNetOptions};

/// `[k, n]` K-major → torch layout (`[out, in]` or `[out, in, kh, kw]`).
fn from_kmajor(kn: &[f32], shape: &[usize]) -> Vec<f32> {
    let mut out = vec![0.0; kn.len()];
    match *shape {
        [o, i] => (0..i).for_each(|kk| (0..o).for_each(|nn| out[nn * i + kk] = kn[kk * o + nn])),
        [o, i, kh, kw] => {
            for y in 0..kh {
                for x in 0..kw {
                    for c in 0..i {
                        for nn in 0..o {
                            out[((nn * i + c) * kh + y) * kw + x] = kn[((y * kw + x) * i + c) * o + nn];
                        }
                    }
                }
            }
        }
        _ => panic!("{shape:?}"),
    }
    out
}

fn to_kmajor(w: &[f32], shape: &[usize]) -> (Vec<f32>, usize, usize) {
    match *shape {
        [o, i] => (ops::linear_weight_from_torch(w, o, i).unwrap(), i, o),
        [o, i, kh, kw] => (ops::conv_weight_from_torch(w, o, i, kh, kw).unwrap(), kh * kw * i, o),
        _ => panic!("{shape:?}"),
    }
}

/// A copy of `src` whose policy layers hold their dequantized values (and how many).
fn dequantized(src: &MapSource, policy: &QuantPolicy) -> (MapSource, usize) {
    let mut out = src.clone();
    let mut count = 0;
    for (name, t) in &src.tensors {
        let Some(layer) = name.strip_suffix(".weight") else { continue };
        if !(t.shape.len() == 2 || t.shape.len() == 4) {
            continue;
        }
        let (kn, k, n) = to_kmajor(&t.data, &t.shape);
        if let Some(fmt) = policy.format_for(layer, k, n) {
            let q = quant::quantize(&kn, k, n, fmt).unwrap();
            out.tensors.insert(name.clone(), HostTensor::new(t.shape.clone(), from_kmajor(&q.dequantize(), &t.shape)));
            count += 1;
        }
    }
    (out, count)
}

/// The UNetMotion ε on a small input.
fn epsilon(gpu: &Gpu, unet: &UNet) -> Vec<f32> {
    let (f, h, w) = (4, 8, 8);
    let x = Rng::new(9).uniform_vec(2 * f * h * w * 4);
    let ctx = Rng::new(10).uniform_vec(2 * 77 * 16);
    let xt = gpu.upload_f32(&x, [2 * f, h, w, 4], "x").unwrap();
    let ct = gpu.upload_f32(&ctx, [2, 77, 16], "ctx").unwrap();
    read(gpu, &unet.forward(gpu, &xt, 500.0, &ct, f, &UNetOptions::default()).unwrap())
}

#[test]
fn quantized_load_runs_the_dequantized_model_and_frees_dense_copies() {
    let gpu = gpu();
    let w = read_safetensors(&tiny().join("diffusers/unet/diffusion_pytorch_model.safetensors"));
    let mw = read_safetensors(&tiny().join("motion_adapter/diffusion_pytorch_model.safetensors"));
    for scheme in [QuantScheme::Q8, QuantScheme::Q4] {
        let policy = QuantPolicy::new(scheme);
        let (dw, nu) = dequantized(&w, &policy);
        let (dmw, nm) = dequantized(&mw, &policy);
        assert!(nu > 40 && nm > 40, "{scheme:?}: {nu} UNet / {nm} motion layers quantized");
        // Peak while loading: what stays + at most one dense f32 layer.
        let largest = w.tensors.values().chain(mw.tensors.values()).filter(|t| t.shape.len() >= 2).map(|t| t.numel() as u64 * 4).max().unwrap();
        let before = gpu.memory().live_bytes;
        gpu.reset_peak_memory();
        let unet = UNet::load_quantized(&gpu, &w, &tiny_unet_config(), Some((&mw, &tiny_motion_config())), DType::F32, Some(&policy)).unwrap();
        let mem = gpu.memory();
        let kept = mem.live_bytes - before;
        eprintln!("{scheme:?}: {nu}+{nm} layers quantized; model {kept} bytes on the GPU, load peak {} bytes above it (largest layer {largest} bytes f32)", mem.peak_bytes - mem.live_bytes);
        assert!(mem.peak_bytes - mem.live_bytes <= largest, "load peak {} exceeds the kept size + one layer", mem.peak_bytes);
        let dense = UNet::load(&gpu, &dw, &tiny_unet_config(), Some((&dmw, &tiny_motion_config())), DType::F32).unwrap();
        let (a, b) = (epsilon(&gpu, &unet), epsilon(&gpu, &dense));
        assert_close(&format!("{scheme:?} quantized kernels vs dense dequantized weights"), &a, &b, 1e-5);
    }
}

#[test]
fn policy_skips_what_the_kernels_cannot_take_and_packed_weights_win() {
    let gpu = gpu();
    let policy = QuantPolicy::new(QuantScheme::Q4);
    let mut src = MapSource { origin: "mem".into(), ..Default::default() };
    let mut rng = Rng::new(4);
    // A q4-able linear, one whose N = 37 is not a multiple of 8, and a policy-dense layer.
    for (name, o, i) in [("a.ff.net.2", 16, 32), ("b.ff.net.2", 37, 32), ("time_embedding.linear_1", 16, 32)] {
        src.tensors.insert(format!("{name}.weight"), HostTensor::new(vec![o, i], rng.uniform_vec(o * i)));
    }
    let l = Loader::new(&gpu, &src, DType::F32).with_quant(Some(&policy));
    assert!(matches!(l.linear("a.ff.net.2", 32, 16, false).unwrap().w, Weight::Quant(ref q) if q.format.bits == 4 && q.format.group == 32));
    assert!(matches!(l.linear("b.ff.net.2", 32, 37, false).unwrap().w, Weight::Dense(_)));
    assert!(matches!(l.linear("time_embedding.linear_1", 32, 16, false).unwrap().w, Weight::Dense(_)));
    // Without a policy everything is dense.
    let plain = Loader::new(&gpu, &src, DType::F32);
    assert!(matches!(plain.linear("a.ff.net.2", 32, 16, false).unwrap().w, Weight::Dense(_)));
    // Non-finite weights: a typed error naming the tensor.
    src.tensors.get_mut("a.ff.net.2.weight").unwrap().data[3] = f32::INFINITY;
    let l = Loader::new(&gpu, &src, DType::F32).with_quant(Some(&policy));
    let e = l.linear("a.ff.net.2", 32, 16, false).err().unwrap().to_string();
    assert!(e.contains("a.ff.net.2.weight") && e.contains("non-finite"), "{e}");
}

/// A source with one packed q4 layer `p` ([K = 32, N = 16]) built by the CPU quantizer.
fn packed_source(fmt: QuantFormat) -> (MapSource, QuantizedMatrix) {
    let (k, n) = (32, 16);
    let w = Rng::new(8).uniform_vec(k * n);
    let q = quant::quantize(&w, k, n, fmt).unwrap();
    let mut src = MapSource { origin: "packed.safetensors".into(), ..Default::default() };
    let bytes: Vec<f32> = q.words.iter().flat_map(|w| w.to_le_bytes()).map(f32::from).collect();
    src.tensors.insert("p.qweight".into(), HostTensor::new(vec![k, n * fmt.bits as usize / 8], bytes));
    src.tensors.insert("p.qscales".into(), HostTensor::new(vec![k / fmt.group as usize, n], q.scales.iter().map(|h| h.to_f32()).collect()));
    if fmt.asymmetric {
        src.tensors.insert("p.qmins".into(), HostTensor::new(vec![k / fmt.group as usize, n], q.mins.iter().map(|h| h.to_f32()).collect()));
    }
    (src, q)
}

#[test]
fn packed_weights_load_as_they_are_and_bad_ones_are_typed_errors() {
    let gpu = gpu();
    for fmt in [QuantFormat { bits: 4, group: 16, asymmetric: true }, QuantFormat { bits: 8, group: 32, asymmetric: false }] {
        let (src, q) = packed_source(fmt);
        // Packed tensors are used even by a loader without a policy, without a dense `.weight`.
        let lin = Loader::new(&gpu, &src, DType::F32).linear("p", 32, 16, false).unwrap();
        let Weight::Quant(qw) = &lin.w else { panic!("dense") };
        assert_eq!(qw.format, fmt);
        assert_eq!(bytes_u32(&block_on(gpu.read_bytes(&qw.words)).unwrap()), q.words);
    }
    let (good, _) = packed_source(QuantFormat { bits: 4, group: 16, asymmetric: true });
    type Corrupt = Box<dyn Fn(&mut MapSource)>;
    let cases: Vec<(&str, Corrupt)> = vec![
        ("qscales", Box::new(|s| s.tensors.get_mut("p.qscales").unwrap().data[5] = f32::NAN)),
        ("qscales", Box::new(|s| s.tensors.get_mut("p.qscales").unwrap().data[0] = -0.5)),
        ("qscales", Box::new(|s| s.tensors.get_mut("p.qscales").unwrap().data[1] = 0.1)), // not an f16 value
        ("qscales", Box::new(|s| s.tensors.get_mut("p.qscales").unwrap().shape = vec![3, 16])),
        ("qmins", Box::new(|s| s.tensors.get_mut("p.qmins").unwrap().data[2] = f32::INFINITY)),
        ("qmins", Box::new(|s| s.tensors.get_mut("p.qmins").unwrap().shape = vec![1, 32])),
        ("qweight", Box::new(|s| s.tensors.get_mut("p.qweight").unwrap().data[7] = 300.0)),
        ("qweight", Box::new(|s| s.tensors.get_mut("p.qweight").unwrap().shape = vec![32, 5])),
        ("qscales", Box::new(|s| drop(s.tensors.remove("p.qscales")))),
    ];
    for (what, corrupt) in cases {
        let mut s = good.clone();
        corrupt(&mut s);
        let e = Loader::new(&gpu, &s, DType::F32).linear("p", 32, 16, false).err().unwrap().to_string();
        assert!(e.contains("packed.safetensors") && e.contains(&format!("p.{what}")), "{what}: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Offline quantized files.

use animatediff_wgpu::load::archive::TensorArchive;
use animatediff_wgpu::pipeline::generate::{GenerateParams, InitLatents, Models};
use animatediff_wgpu::pipeline::load::{build_models, build_models_with, open_pipeline, HostPipeline, ModelPaths, Precision, Weights};
use animatediff_wgpu::pipeline::quantized::{write_quantized, DenseDType, META_QUANT};
use std::path::PathBuf;

fn tiny_paths() -> ModelPaths {
    ModelPaths { model: tiny().join("diffusers"), motion: tiny().join("motion_adapter"), ..Default::default() }
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("animatediff-quant-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A short generation (4 frames 64×64, 2 steps).
fn frames(gpu: &Gpu, models: &Models, host: &HostPipeline) -> Vec<f32> {
    let mut p = GenerateParams::new("a corgi", host.scheduler.clone());
    (p.frames, p.height, p.width, p.steps, p.guidance_scale) = (4, 64, 64, 2, 7.5);
    p.init = InitLatents::Seed(3);
    block_on(models.generate(gpu, &p, &mut |_| {})).unwrap().frames
}

#[test]
fn quantized_file_round_trips_to_the_quantize_on_load_outputs() {
    let gpu = gpu();
    let host = open_pipeline(&tiny_paths()).unwrap();
    for (scheme, weights, dense) in [(QuantScheme::Q4, Weights::Q4, DenseDType::F32), (QuantScheme::Q8, Weights::Q8, DenseDType::F16)] {
        let file = temp_file(&format!("tiny.{}.safetensors", scheme.name()));
        let report = write_quantized(&host, &QuantPolicy::new(scheme), dense, &file, &mut |_, _| {}).unwrap();
        let size = std::fs::metadata(&file).unwrap().len();
        eprintln!("{scheme:?} ({dense:?} dense): {report:?}, {size} bytes");
        assert_eq!(report.file_bytes, size);
        assert!(report.quantized_layers > 500 && report.q8_layers > 0);

        let q = open_pipeline(&ModelPaths { model: file.clone(), ..Default::default() }).unwrap();
        assert_eq!(q.quantized, Some(scheme));
        assert_eq!((&q.unet_config, &q.vae_config, &q.clip_config, &q.scheduler), (&host.unet_config, &host.vae_config, &host.clip_config, &host.scheduler));
        assert_eq!((&q.motion.config, q.motion.version, q.motion.original_naming), (&host.motion.config, host.motion.version, host.motion.original_naming));

        let from_file = frames(&gpu, &build_models(&gpu, &q.components(), Precision::F32).unwrap(), &q);
        let on_load = frames(&gpu, &build_models_with(&gpu, &host.components(), Precision::F32, weights).unwrap(), &host);
        if dense == DenseDType::F32 {
            assert_eq!(max_abs(&from_file, &on_load), 0.0, "{scheme:?}: the file must give exactly the quantize-on-load frames");
        } else {
            // Dense tensors rounded to f16 in the file.
            assert_close(&format!("{scheme:?} file with f16 dense tensors"), &from_file, &on_load, 2e-2);
        }
        // The file's own packed weights win over another requested scheme.
        assert!(build_models_with(&gpu, &q.components(), Precision::F32, Weights::Q8).is_ok());
        std::fs::remove_file(&file).unwrap();
    }
}

#[test]
fn bad_quantized_files_are_typed_errors() {
    let gpu = gpu();
    // Unknown scheme.
    let file = temp_file("unknown-scheme.safetensors");
    let header = format!(
        r#"{{"__metadata__":{{"{META_QUANT}":"{{\"scheme\":\"someone-else/q3\",\"weights\":\"q3\"}}"}},"unet.x":{{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}}}"#
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 4]);
    std::fs::write(&file, &bytes).unwrap();
    let e = open_pipeline(&ModelPaths { model: file.clone(), ..Default::default() }).err().unwrap().to_string();
    assert!(e.contains("unknown quantization scheme `someone-else/q3`") && e.contains("unknown-scheme.safetensors"), "{e}");

    // A real file: a motion module passed along, then a NaN scale.
    let host = open_pipeline(&tiny_paths()).unwrap();
    let file = temp_file("corrupt.q4.safetensors");
    write_quantized(&host, &QuantPolicy::new(QuantScheme::Q4), DenseDType::F16, &file, &mut |_, _| {}).unwrap();
    let e = open_pipeline(&ModelPaths { model: file.clone(), motion: tiny().join("motion_adapter"), ..Default::default() }).err().unwrap().to_string();
    assert!(e.contains("already contains its motion modules"), "{e}");
    let e = open_pipeline(&ModelPaths { model: file.clone(), loras: vec![(tiny().join("lora/none.safetensors"), 1.0)], ..Default::default() }).err().unwrap().to_string();
    assert!(e.contains("LoRAs cannot be merged into packed weights"), "{e}");
    let name = "unet.down_blocks.1.resnets.0.conv1.qscales";
    let offset = TensorArchive::open_path(&file).unwrap().entry(name).unwrap().offset as usize;
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[offset + 2..offset + 4].copy_from_slice(&half::f16::NAN.to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    let q = open_pipeline(&ModelPaths { model: file.clone(), ..Default::default() }).unwrap();
    let e = build_models(&gpu, &q.components(), Precision::F32).err().unwrap().to_string();
    assert!(e.contains("down_blocks.1.resnets.0.conv1.qscales") && e.contains("corrupt.q4.safetensors"), "{e}");
}
