//! Kernel library vs CPU float64 references, in f32 storage and (where the adapter has
//! shader-f16) f16 storage. Inputs are fresh random data each run; outputs are poisoned with
//! NaN first so an unwritten element fails.

use animatediff_wgpu::gpu::{DType, Gpu, GpuOptions, KernelPreference, Shape, Tensor};
use animatediff_wgpu::ops::{self, Activation, Broadcast, Conv2d, GroupNorm, NormDomain, TokenLayout};
use animatediff_wgpu::quant::{self, QuantFormat};
use animatediff_wgpu::reference::{self as r, Rng};
use pollster::block_on;

struct Case {
    gpu: Gpu,
    rng: Rng,
}

impl Case {
    fn new() -> Case {
        Case::with(GpuOptions::default())
    }

    fn with(opts: GpuOptions) -> Case {
        let gpu = block_on(Gpu::new(opts)).unwrap_or_else(|e| panic!("GPU adapter needed (lavapipe in CI): {e}"));
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        eprintln!("seed {seed}");
        Case { gpu, rng: Rng::new(seed) }
    }

    fn dtypes(&self) -> Vec<DType> {
        if self.gpu.info().shader_f16 {
            vec![DType::F32, DType::F16]
        } else {
            vec![DType::F32]
        }
    }

    /// Random values `scale·U(-1,1) + offset`, rounded to the storage type (so the reference
    /// sees exactly what the kernel reads).
    fn data(&mut self, n: usize, scale: f32, offset: f32, dtype: DType) -> Vec<f32> {
        let v: Vec<f32> = self.rng.uniform_vec(n).iter().map(|x| x * scale + offset).collect();
        if dtype == DType::F16 {
            r::round_f16(&v)
        } else {
            v
        }
    }

    fn upload(&self, data: &[f32], shape: impl Into<Shape>, dtype: DType) -> Tensor {
        self.gpu.upload_f32_as(data, shape, dtype, "in").unwrap()
    }

    fn poisoned(&self, shape: impl Into<Shape>, dtype: DType) -> Tensor {
        let shape = shape.into();
        self.upload(&vec![f32::NAN; shape.numel() as usize], shape, dtype)
    }

    fn read(&self, t: &Tensor) -> Vec<f32> {
        block_on(self.gpu.read_f32(t)).unwrap()
    }
}

/// PyTorch `[out, in]` linear weight → the kernels' K-major `[in, out]`.
fn kn(w: &[f32], n: usize, k: usize) -> Vec<f32> {
    ops::linear_weight_from_torch(w, n, k).unwrap()
}

/// PyTorch OIHW conv weight → the kernels' `[KH, KW, Cin, Cout]`.
fn hwio(w: &[f32], cout: usize, cin: usize, k: usize) -> Vec<f32> {
    ops::conv_weight_from_torch(w, cout, cin, k, k).unwrap()
}

fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => 3e-3,
        _ => 1e-5,
    }
}

fn check(what: &str, dtype: DType, got: &[f32], want: &[f64]) {
    let err = r::rel_l2_error(got, want);
    eprintln!("{what} [{dtype}]: rel L2 error {err:.2e}");
    assert!(err <= tolerance(dtype), "{what} [{dtype}]: rel L2 error {err:.3e} > {:.0e}", tolerance(dtype));
}

#[test]
fn activations() {
    let mut c = Case::new();
    let n = 7 * 13 * 24 + 5;
    for dtype in c.dtypes() {
        let x = c.data(n, 4.0, 0.0, dtype);
        let xt = c.upload(&x, [n], dtype);
        for (act, f) in [
            (Activation::Identity, (|v| v) as fn(f64) -> f64),
            (Activation::Silu, r::silu),
            (Activation::GeluErf, r::gelu_erf),
            (Activation::QuickGelu, r::quick_gelu),
        ] {
            let scale = 1.25f32;
            let y = c.poisoned([n], dtype);
            let mut b = c.gpu.batch("t");
            ops::unary(&mut b, act, scale, &xt, &y).unwrap();
            b.submit().unwrap();
            let want: Vec<f64> = x.iter().map(|&v| f(f64::from(scale) * f64::from(v))).collect();
            check(&format!("{act:?}"), dtype, &c.read(&y), &want);
        }
    }
}

#[test]
fn binary_broadcasts() {
    let mut c = Case::new();
    let (n, p, ch) = (2usize, 7 * 13, 24usize);
    for dtype in c.dtypes() {
        let a = c.data(n * p * ch, 1.0, 0.0, dtype);
        let at = c.upload(&a, [n, p, ch], dtype);
        for (bc, blen) in [(Broadcast::Same, n * p * ch), (Broadcast::LastDim, ch), (Broadcast::PerRow { positions: p as u32 }, n * ch)] {
            let bv = c.data(blen, 1.0, 0.0, dtype);
            let bt = c.upload(&bv, [blen], dtype);
            let bidx = |i: usize| match bc {
                Broadcast::Same => i,
                Broadcast::LastDim => i % ch,
                Broadcast::PerRow { .. } => (i / (p * ch)) * ch + i % ch,
                Broadcast::Periodic { .. } => unreachable!(),
            };
            // CFG-style combine y = (1−g)·a + g·b, g = 7.5
            let (alpha, beta) = (-6.5f32, 7.5f32);
            let y = c.poisoned([n, p, ch], dtype);
            let mut b = c.gpu.batch("t");
            ops::axpby(&mut b, alpha, &at, beta, &bt, bc, &y).unwrap();
            b.submit().unwrap();
            let want: Vec<f64> = (0..a.len()).map(|i| f64::from(alpha) * f64::from(a[i]) + f64::from(beta) * f64::from(bv[bidx(i)])).collect();
            check(&format!("axpby {bc:?}"), dtype, &c.read(&y), &want);

            let y = c.poisoned([n, p, ch], dtype);
            let mut b = c.gpu.batch("t");
            ops::mul(&mut b, &at, &bt, bc, &y).unwrap();
            b.submit().unwrap();
            let want: Vec<f64> = (0..a.len()).map(|i| f64::from(a[i]) * f64::from(bv[bidx(i)])).collect();
            check(&format!("mul {bc:?}"), dtype, &c.read(&y), &want);
        }
    }
}

#[test]
fn group_norm_per_image_and_joint_over_frames() {
    let mut c = Case::new();
    // (videos, frames, h, w, channels, groups): odd spatial sizes, C = 24 with 3 channels per
    // group, and SD's 32 groups on a scaled-down width.
    for &(videos, frames, h, w, ch, groups) in &[(2usize, 3usize, 7usize, 13usize, 24usize, 8u32), (1, 4, 8, 8, 64, 32)] {
        for dtype in c.dtypes() {
            let images = videos * frames;
            let x = c.data(images * h * w * ch, 3.0, 0.7, dtype);
            let gamma = c.data(ch, 0.2, 1.0, dtype);
            let beta = c.data(ch, 0.3, 0.0, dtype);
            let xt = c.upload(&x, [images, h, w, ch], dtype);
            let gt = c.upload(&gamma, [ch], dtype);
            let bt = c.upload(&beta, [ch], dtype);
            for (domain, sets, positions) in [
                (NormDomain::PerImage, images, h * w),
                (NormDomain::JointFrames { frames: frames as u32 }, videos, frames * h * w),
            ] {
                for silu in [false, true] {
                    let gn = GroupNorm { groups, eps: 1e-6, domain, silu };
                    let y = c.poisoned([images, h, w, ch], dtype);
                    let mut b = c.gpu.batch("t");
                    ops::group_norm(&mut b, gn, &xt, &gt, &bt, &y).unwrap();
                    b.submit().unwrap();
                    let want = r::group_norm(&x, &gamma, &beta, sets, positions, ch, groups as usize, 1e-6, silu);
                    check(&format!("group_norm {domain:?} silu={silu} [{images},{h},{w},{ch}]/{groups}"), dtype, &c.read(&y), &want);
                }
            }
        }
    }
}

#[test]
fn layer_norm_rows() {
    let mut c = Case::new();
    for &(rows, cols) in &[(7 * 13, 24usize), (5, 320), (3, 1280)] {
        for dtype in c.dtypes() {
            let x = c.data(rows * cols, 2.0, -0.4, dtype);
            let gamma = c.data(cols, 0.2, 1.0, dtype);
            let beta = c.data(cols, 0.3, 0.0, dtype);
            let xt = c.upload(&x, [rows, cols], dtype);
            let y = c.poisoned([rows, cols], dtype);
            let mut b = c.gpu.batch("t");
            ops::layer_norm(&mut b, 1e-5, &xt, &c.upload(&gamma, [cols], dtype), &c.upload(&beta, [cols], dtype), &y).unwrap();
            b.submit().unwrap();
            check(&format!("layer_norm [{rows},{cols}]"), dtype, &c.read(&y), &r::layer_norm(&x, &gamma, &beta, cols, 1e-5));
        }
    }
}

#[test]
fn ops_refuse_bad_shapes_and_aliasing() {
    let c = Case::new();
    let x = c.upload(&[1.0; 24], [2, 12], DType::F32);
    let g = c.upload(&[1.0; 12], [12], DType::F32);
    let mut b = c.gpu.batch("t");
    // 12 channels do not split into 5 groups.
    let gn = GroupNorm { groups: 5, eps: 1e-5, domain: NormDomain::PerImage, silu: false };
    let y = c.poisoned([2, 12], DType::F32);
    assert!(ops::group_norm(&mut b, gn, &x, &g, &g, &y).is_err());
    // 2 images are not whole videos of 3 frames.
    let gn = GroupNorm { groups: 4, eps: 1e-5, domain: NormDomain::JointFrames { frames: 3 }, silu: false };
    assert!(ops::group_norm(&mut b, gn, &x, &g, &g, &y).is_err());
    // In-place (output = input buffer) is refused rather than a validation error.
    assert!(ops::unary(&mut b, Activation::Silu, 1.0, &x, &x).is_err());
    // Broadcast that does not fit.
    assert!(ops::add(&mut b, &x, &c.upload(&[1.0; 5], [5], DType::F32), Broadcast::LastDim, &y).is_err());
}

#[test]
fn conv2d_variants() {
    // Both kernel families: software adapters with 8-wide subgroups (lavapipe) take
    // conv2d_sg for vec4 channels, the others (and scalar channels) conv2d; a plain 1×1
    // convolution is a linear layer (register or workgroup-tiled matmul).
    for pref in [KernelPreference::Registers, KernelPreference::Tiled] {
        let mut c = Case::with(GpuOptions { kernels: pref, ..GpuOptions::default() });
        conv2d_cases(&mut c, pref);
    }
}

fn conv2d_cases(c: &mut Case, family: KernelPreference) {
    // (name, cfg, n, h, w, c1, c2, cout, k, residual): 3×3 same / stride 2 / upsample on odd
    // sizes, 1×1 plain (a linear layer) and with the virtual concat (up-block shortcut), C = 24.
    let cases = [
        ("1x1", Conv2d::POINTWISE, 2, 7, 13, 24, 0, 20, 1, true),
        ("1x1 3ch", Conv2d::POINTWISE, 1, 5, 3, 3, 0, 10, 1, false),
        ("3x3", Conv2d::SAME_3X3, 2, 7, 13, 24, 0, 24, 3, false),
        ("3x3+residual", Conv2d::SAME_3X3, 1, 9, 6, 16, 0, 40, 3, true),
        ("3x3 stride 2", Conv2d::DOWN_3X3, 2, 7, 13, 24, 0, 16, 3, false),
        ("upsample 3x3", Conv2d::UP_3X3, 1, 5, 7, 24, 0, 24, 3, false),
        ("1x1 concat", Conv2d::POINTWISE, 2, 7, 13, 24, 8, 20, 1, true),
        ("3x3 concat", Conv2d::SAME_3X3, 1, 6, 5, 12, 20, 36, 3, false),
        ("conv_in 4ch", Conv2d::SAME_3X3, 2, 8, 8, 4, 0, 32, 3, false),
        // Channel counts that are not multiples of 4 take the scalar kernel (VAE encoder RGB input).
        ("rgb 3ch", Conv2d::SAME_3X3, 1, 8, 8, 3, 0, 16, 3, false),
        ("odd concat 5+6", Conv2d::UP_3X3, 1, 5, 4, 5, 6, 12, 3, true),
    ];
    for (name, cfg, n, h, w, c1, c2, cout, k, with_res) in cases {
        for dtype in c.dtypes() {
            let cin = c1 + c2;
            let x1 = c.data(n * h * w * c1, 1.0, 0.0, dtype);
            let x2 = c.data(n * h * w * c2, 1.0, 0.0, dtype);
            let w_oihw = c.data(cout * cin * k * k, 1.0 / ((cin * k * k) as f32).sqrt(), 0.0, dtype);
            let bias = c.data(cout, 0.1, 0.0, dtype);
            let (ho, wo) = cfg.output_size(h, w, k, k).unwrap();
            let res = c.data(n * ho * wo * cout, 1.0, 0.0, dtype);
            // CPU reference on the concatenated input and the PyTorch weight layout.
            let mut x = Vec::with_capacity(n * h * w * cin);
            for p in 0..n * h * w {
                x.extend_from_slice(&x1[p * c1..(p + 1) * c1]);
                x.extend_from_slice(&x2[p * c2..(p + 1) * c2]);
            }
            let mut want = r::conv2d_nhwc(&x, &w_oihw, &bias, [n, h, w, cin], cout, (k, k), cfg.stride as usize, cfg.padding as usize, cfg.upsample);
            if with_res {
                want.iter_mut().zip(&res).for_each(|(v, &r)| *v += f64::from(r));
            }

            let x1t = c.upload(&x1, [n, h, w, c1], dtype);
            let x2t = (c2 > 0).then(|| c.upload(&x2, [n, h, w, c2], dtype));
            let wt = c.upload(&hwio(&w_oihw, cout, cin, k), [k, k, cin, cout], dtype);
            let bt = c.upload(&bias, [cout], dtype);
            let rt = with_res.then(|| c.upload(&res, [n, ho, wo, cout], dtype));
            let y = c.poisoned([n, ho, wo, cout], dtype);
            let mut b = c.gpu.batch("t");
            ops::conv2d(&mut b, cfg, &x1t, x2t.as_ref(), &wt, &bt, rt.as_ref(), &y).unwrap();
            b.submit().unwrap();
            check(&format!("conv2d {name} ({family:?})"), dtype, &c.read(&y), &want);
        }
    }
}

#[test]
#[allow(clippy::type_complexity)]
fn attention_spatial_cross_causal_and_temporal() {
    // Both kernel families: register streaming (software adapters) and workgroup-memory
    // flash / temporal kernels (GPUs).
    for pref in [KernelPreference::Registers, KernelPreference::Tiled] {
        attention_cases(&mut Case::with(GpuOptions { kernels: pref, ..GpuOptions::default() }), &format!("{pref:?}"));
    }
}

#[allow(clippy::type_complexity)]
fn attention_cases(c: &mut Case, family: &str) {
    let lay = |l: TokenLayout| [l.inner as usize, l.outer_stride as usize, l.inner_stride as usize, l.token_stride as usize];
    // (name, sequences, heads, head_dim, q_len, kv_len, kv_div, causal, temporal frames)
    let cases: [(&str, u32, u32, u32, u32, u32, u32, bool, u32); 11] = [
        ("self 7x13 tokens, 2 heads of 12", 2, 2, 12, 91, 91, 1, false, 0),
        ("self, SD head dim 40", 1, 2, 40, 37, 37, 1, false, 0),
        ("self, SD head dim 80", 1, 2, 80, 29, 29, 1, false, 0),
        ("cross, SD head dim 160", 2, 1, 160, 13, 77, 1, false, 0),
        ("cross 77 text tokens shared by 3 frames", 6, 2, 16, 20, 77, 3, false, 0),
        ("causal CLIP", 2, 4, 8, 77, 77, 1, true, 0),
        ("single head 64 (tiny VAE mid)", 1, 1, 64, 49, 49, 1, false, 0),
        ("single head 512 (SD1.5 VAE mid)", 2, 1, 512, 35, 35, 1, false, 0),
        ("temporal over 16 frames", 2, 2, 12, 16, 16, 1, false, 16),
        // Head dims in multiples of 8 take the subgroup kernel on lavapipe: frame-major
        // layout, and blocks of 8 keys / 32 queries with ragged ends.
        ("temporal over 16 frames, head dim 16", 2, 2, 16, 16, 16, 1, false, 16),
        ("self 45 tokens, 3 heads of 24", 3, 3, 24, 45, 45, 1, false, 0),
    ];
    for (name, seqs, heads, hd, q_len, kv_len, kv_div, causal, frames) in cases {
        for dtype in c.dtypes() {
            let ch = heads * hd;
            let (ql, kvl, q_elems, kv_elems, sequences) = if frames > 0 {
                // Activations [videos·F, P, C] with P = 5 positions per frame; one sequence per
                // (video, position).
                let positions = 5;
                let l = TokenLayout::frames(frames, positions, ch);
                let n = (seqs * frames * positions * ch) as usize;
                (l, l, n, n, seqs * positions)
            } else {
                let kv_seqs = seqs.div_ceil(kv_div);
                (TokenLayout::rows(q_len, ch), TokenLayout::rows(kv_len, ch), (seqs * q_len * ch) as usize, (kv_seqs * kv_len * ch) as usize, seqs)
            };
            let q = c.data(q_elems, 1.0, 0.0, dtype);
            let k = c.data(kv_elems, 1.0, 0.0, dtype);
            let v = c.data(kv_elems, 1.0, 0.0, dtype);
            let a = ops::Attention {
                sequences,
                heads,
                head_dim: hd,
                q_len,
                kv_len,
                q_layout: ql,
                kv_layout: kvl,
                kv_div,
                causal,
                scale: 1.0 / (hd as f32).sqrt(),
            };
            let want = r::attention(&q, &k, &v, sequences as usize, heads as usize, hd as usize, q_len as usize, kv_len as usize, lay(ql), lay(kvl), kv_div as usize, causal, f64::from(a.scale));
            let (qt, kt, vt) = (c.upload(&q, [q_elems], dtype), c.upload(&k, [kv_elems], dtype), c.upload(&v, [kv_elems], dtype));
            let o = c.poisoned([q_elems], dtype);
            let mut b = c.gpu.batch("t");
            ops::attention(&mut b, &a, &qt, &kt, &vt, &o).unwrap();
            b.submit().unwrap();
            check(&format!("{family} attention {name}"), dtype, &c.read(&o), &want);
        }
    }
}

/// A device whose storage bindings are capped at 64 KiB: every op must split its work over
/// several dispatches / bindings and still match the references exactly as unsplit.
#[test]
fn ops_split_work_when_tensors_exceed_the_binding_limit() {
    let gpu = block_on(Gpu::new(GpuOptions { max_storage_binding_size: Some(64 << 10), ..GpuOptions::default() })).unwrap();
    assert_eq!(gpu.max_binding(), 64 << 10);
    let mut c = Case { gpu, rng: Rng::new(42 ^ std::process::id() as u64) };
    let dt = DType::F32;
    let run = |c: &Case, f: &dyn Fn(&mut animatediff_wgpu::gpu::Batch<'_>)| {
        let mut b = c.gpu.batch("t");
        f(&mut b);
        let dispatches = b.dispatch_count();
        b.submit().unwrap();
        dispatches
    };

    // unary over 200 KB
    let n = 50_000;
    let x = c.data(n, 3.0, 0.0, dt);
    let (xt, y) = (c.upload(&x, [n], dt), c.poisoned([n], dt));
    let d = run(&c, &|b| ops::unary(b, Activation::Silu, 1.0, &xt, &y).unwrap());
    assert!(d >= 4, "expected a split dispatch, got {d}");
    check("split unary", dt, &c.read(&y), &x.iter().map(|&v| r::silu(f64::from(v))).collect::<Vec<_>>());

    // binary, each broadcast mode, on [20, 91, 24] (175 KB)
    let (rows, p, ch) = (20usize, 91usize, 24usize);
    let a = c.data(rows * p * ch, 1.0, 0.0, dt);
    let at = c.upload(&a, [rows, p, ch], dt);
    for (bc, blen) in [(Broadcast::Same, rows * p * ch), (Broadcast::LastDim, ch), (Broadcast::PerRow { positions: p as u32 }, rows * ch)] {
        let bv = c.data(blen, 1.0, 0.0, dt);
        let bt = c.upload(&bv, [blen], dt);
        let y = c.poisoned([rows, p, ch], dt);
        assert!(run(&c, &|b| ops::axpby(b, 0.5, &at, 2.0, &bt, bc, &y).unwrap()) > 1);
        let bidx = |i: usize| match bc {
            Broadcast::Same => i,
            Broadcast::LastDim => i % ch,
            Broadcast::PerRow { .. } => (i / (p * ch)) * ch + i % ch,
            Broadcast::Periodic { .. } => unreachable!(),
        };
        let want: Vec<f64> = (0..a.len()).map(|i| 0.5 * f64::from(a[i]) + 2.0 * f64::from(bv[bidx(i)])).collect();
        check(&format!("split axpby {bc:?}"), dt, &c.read(&y), &want);
    }

    // linear: x [2000, 24] (192 KB), y [2000, 40]
    let (m, k, nn) = (2000, 24, 40);
    let (x, w, bias) = (c.data(m * k, 1.0, 0.0, dt), c.data(nn * k, 1.0, 0.0, dt), c.data(nn, 1.0, 0.0, dt));
    let (xt, wt, bt, y) = (c.upload(&x, [m, k], dt), c.upload(&kn(&w, nn, k), [k, nn], dt), c.upload(&bias, [nn], dt), c.poisoned([m, nn], dt));
    assert!(run(&c, &|b| ops::linear(b, &xt, &wt, Some(&bt), &y).unwrap()) > 1);
    check("split linear", dt, &c.read(&y), &r::linear(&x, &w, Some(&bias), m, nn, k));

    // layer norm rows [2000, 24]
    let (g, be) = (c.data(k, 0.2, 1.0, dt), c.data(k, 0.2, 0.0, dt));
    let (gt, bet, y) = (c.upload(&g, [k], dt), c.upload(&be, [k], dt), c.poisoned([m, k], dt));
    assert!(run(&c, &|b| ops::layer_norm(b, 1e-5, &xt, &gt, &bet, &y).unwrap()) > 1);
    check("split layer_norm", dt, &c.read(&y), &r::layer_norm(&x, &g, &be, k, 1e-5));

    // group norm: 12 images of 16×16×24 (288 KB), per image and joint over 2 frames
    let (imgs, hw) = (12usize, 16 * 16);
    let x = c.data(imgs * hw * k, 2.0, 0.3, dt);
    let xt = c.upload(&x, [imgs, 16, 16, k], dt);
    for (domain, sets, positions) in [(NormDomain::PerImage, imgs, hw), (NormDomain::JointFrames { frames: 2 }, imgs / 2, 2 * hw)] {
        let y = c.poisoned([imgs, 16, 16, k], dt);
        let gn = GroupNorm { groups: 8, eps: 1e-6, domain, silu: true };
        assert!(run(&c, &|b| ops::group_norm(b, gn, &xt, &gt, &bet, &y).unwrap()) > 2);
        check(&format!("split group_norm {domain:?}"), dt, &c.read(&y), &r::group_norm(&x, &g, &be, sets, positions, k, 8, 1e-6, true));
    }

    // conv 3×3 with residual over 12 images
    let cout = 16;
    let w_oihw = c.data(cout * k * 9, 0.2, 0.0, dt);
    let cb = c.data(cout, 0.1, 0.0, dt);
    let res = c.data(imgs * hw * cout, 1.0, 0.0, dt);
    let wt = c.upload(&hwio(&w_oihw, cout, k, 3), [3, 3, k, cout], dt);
    let (cbt, rt, y) = (c.upload(&cb, [cout], dt), c.upload(&res, [imgs, 16, 16, cout], dt), c.poisoned([imgs, 16, 16, cout], dt));
    assert!(run(&c, &|b| ops::conv2d(b, Conv2d::SAME_3X3, &xt, None, &wt, &cbt, Some(&rt), &y).unwrap()) > 1);
    let mut want = r::conv2d_nhwc(&x, &w_oihw, &cb, [imgs, 16, 16, k], cout, (3, 3), 1, 1, false);
    want.iter_mut().zip(&res).for_each(|(v, &r)| *v += f64::from(r));
    check("split conv2d", dt, &c.read(&y), &want);

    // temporal attention: 8 videos × 8 frames × 20 positions × 24 channels (123 KB)
    let (videos, frames, positions) = (8u32, 8u32, 20u32);
    let l = TokenLayout::frames(frames, positions, k as u32);
    let len = (videos * frames * positions) as usize * k;
    let (q, kk, v) = (c.data(len, 1.0, 0.0, dt), c.data(len, 1.0, 0.0, dt), c.data(len, 1.0, 0.0, dt));
    let (qt, kt, vt) = (c.upload(&q, [len], dt), c.upload(&kk, [len], dt), c.upload(&v, [len], dt));
    // 2 heads of 12: the register kernel on lavapipe; 3 heads of 8: the subgroup kernel.
    for (heads, head_dim) in [(2u32, 12u32), (3, 8)] {
        let o = c.poisoned([len], dt);
        let a = ops::Attention { sequences: videos * positions, heads, head_dim, q_len: frames, kv_len: frames, q_layout: l, kv_layout: l, kv_div: 1, causal: false, scale: 0.3 };
        assert!(run(&c, &|b| ops::attention(b, &a, &qt, &kt, &vt, &o).unwrap()) > 1);
        let lay = [l.inner as usize, l.outer_stride as usize, l.inner_stride as usize, l.token_stride as usize];
        let want = r::attention(&q, &kk, &v, (videos * positions) as usize, heads as usize, head_dim as usize, frames as usize, frames as usize, lay, lay, 1, false, 0.3);
        check(&format!("split temporal attention, {heads} heads of {head_dim}"), dt, &c.read(&o), &want);
    }
}

fn quant_formats(k: usize, n: usize) -> Vec<QuantFormat> {
    vec![
        QuantFormat::Q8,
        QuantFormat { bits: 8, group: 64, asymmetric: true },
        QuantFormat { bits: 8, group: k as u32, asymmetric: false }, // per output channel
        QuantFormat::Q4,
        QuantFormat { bits: 4, group: 64, asymmetric: false },
        QuantFormat { bits: 4, group: 32, asymmetric: true },
    ]
    .into_iter()
    .filter(|f| f.check(k, n).is_ok())
    .collect()
}

#[test]
fn linear_dense_and_quantized_weights() {
    let mut c = Case::new();
    // K = 30 / N = 37, 21: scalar loads of x / of the weights; N = 24: q8 but not q4 (N % 8).
    for &(m, n, k) in &[(7 * 13, 37, 64usize), (33, 24, 192), (19, 21, 30), (40, 48, 64)] {
        for dtype in c.dtypes() {
            let x = c.data(m * k, 1.0, 0.0, dtype);
            let w = c.data(n * k, 1.0 / (k as f32).sqrt(), 0.0, dtype);
            let bias = c.data(n, 0.1, 0.0, dtype);
            let (xt, bt) = (c.upload(&x, [m, k], dtype), c.upload(&bias, [n], dtype));
            // Dense weight in the activations' storage type.
            let y = c.poisoned([m, n], dtype);
            let mut b = c.gpu.batch("t");
            ops::linear(&mut b, &xt, &c.upload(&kn(&w, n, k), [k, n], dtype), Some(&bt), &y).unwrap();
            b.submit().unwrap();
            check(&format!("linear {m}x{n}x{k} dense"), dtype, &c.read(&y), &r::linear(&x, &w, Some(&bias), m, n, k));
            // Quantized weights: the reference uses the values the kernel decodes.
            for fmt in quant_formats(k, n) {
                let q = quant::quantize(&kn(&w, n, k), k, n, fmt).unwrap();
                let qw = ops::QuantizedWeight::upload(&c.gpu, &q, [k, n], "w").unwrap();
                let y = c.poisoned([m, n], dtype);
                let mut b = c.gpu.batch("t");
                ops::linear(&mut b, &xt, &qw, Some(&bt), &y).unwrap();
                b.submit().unwrap();
                check(&format!("linear {m}x{n}x{k} {fmt:?}"), dtype, &c.read(&y), &r::linear(&x, &r::transpose(&q.dequantize(), k, n), Some(&bias), m, n, k));
            }
        }
    }
}

#[test]
fn conv2d_quantized_weights() {
    let mut c = Case::new();
    let (n, h, w, cin, cout) = (2, 7, 13, 32, 24);
    for dtype in c.dtypes() {
        let x = c.data(n * h * w * cin, 1.0, 0.0, dtype);
        let w_oihw = c.data(cout * cin * 9, 0.1, 0.0, dtype);
        let w_hwio = hwio(&w_oihw, cout, cin, 3);
        let bias = c.data(cout, 0.1, 0.0, dtype);
        let (xt, bt) = (c.upload(&x, [n, h, w, cin], dtype), c.upload(&bias, [cout], dtype));
        for fmt in quant_formats(9 * cin, cout) {
            let q = quant::quantize(&w_hwio, 9 * cin, cout, fmt).unwrap();
            let qw = ops::QuantizedWeight::upload(&c.gpu, &q, [3, 3, cin, cout], "w").unwrap();
            // Reference: PyTorch-layout conv with the decoded weights.
            let deq = q.dequantize();
            let mut deq_oihw = vec![0f32; deq.len()];
            for o in 0..cout {
                for ky in 0..3 {
                    for kx in 0..3 {
                        for i in 0..cin {
                            deq_oihw[((o * cin + i) * 3 + ky) * 3 + kx] = deq[((ky * 3 + kx) * cin + i) * cout + o];
                        }
                    }
                }
            }
            let want = r::conv2d_nhwc(&x, &deq_oihw, &bias, [n, h, w, cin], cout, (3, 3), 1, 1, false);
            let y = c.poisoned([n, h, w, cout], dtype);
            let mut b = c.gpu.batch("t");
            ops::conv2d(&mut b, Conv2d::SAME_3X3, &xt, None, &qw, &bt, None, &y).unwrap();
            b.submit().unwrap();
            check(&format!("conv2d 3x3 {fmt:?}"), dtype, &c.read(&y), &want);
        }
    }
}

#[test]
fn linear_fused_epilogues_geglu_scale_residual() {
    let mut c = Case::new();
    let (m, inner, k) = (7 * 13, 24, 64);
    for dtype in c.dtypes() {
        let x = c.data(m * k, 1.0, 0.0, dtype);
        let w = c.data(2 * inner * k, 1.0 / (k as f32).sqrt(), 0.0, dtype);
        let bias = c.data(2 * inner, 0.3, 0.0, dtype);
        let res = c.data(m * inner, 1.0, 0.0, dtype);
        let (xt, bt, rt) = (c.upload(&x, [m, k], dtype), c.upload(&bias, [2 * inner], dtype), c.upload(&res, [m, inner], dtype));
        let q = quant::quantize(&kn(&w, 2 * inner, k), k, 2 * inner, QuantFormat::Q4).unwrap();
        let qw = ops::QuantizedWeight::upload(&c.gpu, &q, [k, 2 * inner], "w").unwrap();
        let wt = c.upload(&kn(&w, 2 * inner, k), [k, 2 * inner], dtype);
        let deq = r::transpose(&q.dequantize(), k, 2 * inner);
        for (label, weights, wref) in [("dense", w.clone(), ops::WeightRef::from(&wt)), ("q4", deq, ops::WeightRef::from(&qw))] {
            let full = r::linear(&x, &weights, Some(&bias), m, 2 * inner, k);
            // GEGLU + residual, alpha 1
            let want: Vec<f64> = (0..m * inner)
                .map(|e| {
                    let (row, col) = (e / inner, e % inner);
                    full[row * 2 * inner + col] * r::gelu_erf(full[row * 2 * inner + inner + col]) + f64::from(res[e])
                })
                .collect();
            let y = c.poisoned([m, inner], dtype);
            let mut b = c.gpu.batch("t");
            ops::linear_ex(&mut b, &xt, wref, Some(&bt), &y, ops::Epilogue { geglu: true, residual: Some(&rt), alpha: 1.0 }).unwrap();
            b.submit().unwrap();
            check(&format!("linear GEGLU+residual {label}"), dtype, &c.read(&y), &want);

            // scale only, no GEGLU (attention's output projection with a rescale)
            let y = c.poisoned([m, 2 * inner], dtype);
            let mut b = c.gpu.batch("t");
            ops::linear_ex(&mut b, &xt, wref, Some(&bt), &y, ops::Epilogue { alpha: 0.5, ..Default::default() }).unwrap();
            b.submit().unwrap();
            check(&format!("linear alpha {label}"), dtype, &c.read(&y), &full.iter().map(|v| 0.5 * v).collect::<Vec<_>>());
        }
    }
}

#[test]
fn embeddings_and_output_ops() {
    let mut c = Case::new();
    // Token + position gather, with the vocabulary table bound in slices (64 KiB bindings).
    let small = block_on(Gpu::new(GpuOptions { max_storage_binding_size: Some(64 << 10), ..GpuOptions::default() })).unwrap();
    for (gpu, vocab) in [(&c.gpu, 300usize), (&small, 3000)] {
        let (dim, positions, tokens) = (24usize, 77usize, 2 * 77);
        let table = c.rng.uniform_vec(vocab * dim);
        let pos = c.rng.uniform_vec(positions * dim);
        let ids: Vec<u32> = (0..tokens).map(|i| ((i * 7919 + 13) % vocab) as u32).collect();
        let tt = gpu.upload_f32(&table, [vocab, dim], "table").unwrap();
        let pt = gpu.upload_f32(&pos, [positions, dim], "pos").unwrap();
        let y = gpu.upload_f32(&vec![f32::NAN; tokens * dim], [2, positions, dim], "y").unwrap();
        let mut b = gpu.batch("t");
        ops::embedding(&mut b, &ids, &tt, &pt, &y).unwrap();
        b.submit().unwrap();
        let want: Vec<f64> = (0..tokens * dim)
            .map(|e| f64::from(table[ids[e / dim] as usize * dim + e % dim]) + f64::from(pos[(e / dim % positions) * dim + e % dim]))
            .collect();
        check(&format!("embedding vocab {vocab}"), DType::F32, &block_on(gpu.read_f32(&y)).unwrap(), &want);
        // An id outside the vocabulary is a typed error, not an out-of-bounds read.
        let mut b = gpu.batch("t");
        assert!(ops::embedding(&mut b, &[vocab as u32], &tt, &pt, &y).is_err());
    }

    // Timestep embedding: cos first, SD1.5's 320 channels; f32-rounded like diffusers.
    let temb = ops::timestep_embedding(&[0.0, 1.0, 981.0], 320, true, 0.0, 10000.0);
    assert_eq!(temb.len(), 3 * 320);
    assert_eq!((temb[0], temb[160]), (1.0, 0.0)); // t = 0: cos 0, sin 0
    for (b, t) in [(1usize, 1.0f64), (2, 981.0)] {
        for j in [0usize, 1, 80, 159] {
            let arg = t * (-(10000f64.ln()) * j as f64 / 160.0).exp();
            // f32 rounding of the argument (as torch does) bounds the error by |arg|·ulp.
            let tol = 1e-6 + 1.2e-7 * arg.abs();
            assert!((f64::from(temb[b * 320 + j]) - arg.cos()).abs() < tol, "cos t={t} j={j}");
            assert!((f64::from(temb[b * 320 + 160 + j]) - arg.sin()).abs() < tol, "sin t={t} j={j}");
        }
    }
    let pe = ops::sinusoidal_position_encoding(32, 24);
    assert_eq!((pe[0], pe[1]), (0.0, 1.0));
    assert!((f64::from(pe[3 * 24 + 2]) - (3.0 * (-(10000f64.ln()) * 2.0 / 24.0).exp()).sin()).abs() < 1e-6);

    for dtype in c.dtypes() {
        // Periodic broadcast: pe [F, C] added to [B·F, P, C] activations.
        let (videos, frames, p, ch) = (2usize, 4usize, 6usize, 24usize);
        let a = c.data(videos * frames * p * ch, 1.0, 0.0, dtype);
        let pe = c.data(frames * ch, 1.0, 0.0, dtype);
        let y = c.poisoned([videos * frames, p, ch], dtype);
        let mut b = c.gpu.batch("t");
        let bc = Broadcast::Periodic { period: frames as u32, positions: p as u32 };
        ops::add(&mut b, &c.upload(&a, [videos * frames, p, ch], dtype), &c.upload(&pe, [frames, ch], dtype), bc, &y).unwrap();
        b.submit().unwrap();
        let want: Vec<f64> = (0..a.len()).map(|i| f64::from(a[i]) + f64::from(pe[(i / (p * ch)) % frames * ch + i % ch])).collect();
        check("periodic position-encoding add", dtype, &c.read(&y), &want);

        // Decoded frames: clamp(x/2 + 0.5, 0, 1), then RGBA8.
        let n = 7 * 13;
        let x = c.data(n * 3, 1.5, 0.0, dtype);
        let xt = c.upload(&x, [n, 3], dtype);
        let f = c.poisoned([n, 3], dtype);
        let rgba = c.gpu.empty([n], DType::U32, "rgba").unwrap();
        let mut b = c.gpu.batch("t");
        ops::clamp_affine(&mut b, 0.5, 0.5, 0.0, 1.0, &xt, &f).unwrap();
        ops::to_rgba8(&mut b, &f, &rgba).unwrap();
        b.submit().unwrap();
        let frames_want: Vec<f64> = x.iter().map(|&v| (0.5 * f64::from(v) + 0.5).clamp(0.0, 1.0)).collect();
        let got = c.read(&f);
        check("clamp_affine", dtype, &got, &frames_want);
        let px: Vec<u32> = bytemuck::pod_collect_to_vec(&block_on(c.gpu.read_bytes(&rgba)).unwrap());
        for (i, &word) in px.iter().enumerate() {
            let bytes = word.to_le_bytes();
            assert_eq!(bytes[3], 255, "alpha of pixel {i}");
            for ch in 0..3 {
                let want = (f64::from(got[3 * i + ch]) * 255.0).round();
                assert!((f64::from(bytes[ch]) - want).abs() <= 1.0, "pixel {i} channel {ch}: {} vs {want}", bytes[ch]);
            }
        }
    }
}

/// The workgroup-tiled GEMM (chosen on real GPUs) must match too; lavapipe runs it when forced.
#[test]
fn tiled_matmul_kernel_matches_references() {
    for pref in [KernelPreference::Tiled, KernelPreference::Registers] {
        let mut c = Case::with(GpuOptions { kernels: pref, ..GpuOptions::default() });
        assert_eq!(c.gpu.info().tiled_kernels, pref == KernelPreference::Tiled);
        // K = 36: a partial last 16-wide k tile; M, N not multiples of 64.
        for &(m, n, k) in &[(130usize, 70usize, 36usize), (64, 64, 64), (7 * 13, 37, 96), (70, 40, 96)] {
            for dtype in c.dtypes() {
                let x = c.data(m * k, 1.0, 0.0, dtype);
                let w = c.data(n * k, 0.2, 0.0, dtype);
                let bias = c.data(n, 0.1, 0.0, dtype);
                let res = c.data(m * n, 1.0, 0.0, dtype);
                let (xt, bt, rt) = (c.upload(&x, [m, k], dtype), c.upload(&bias, [n], dtype), c.upload(&res, [m, n], dtype));
                let wt = c.upload(&kn(&w, n, k), [k, n], dtype);
                let y = c.poisoned([m, n], dtype);
                let mut b = c.gpu.batch("t");
                ops::linear_ex(&mut b, &xt, &wt, Some(&bt), &y, ops::Epilogue { alpha: 0.75, residual: Some(&rt), geglu: false }).unwrap();
                b.submit().unwrap();
                let want: Vec<f64> = r::linear(&x, &w, Some(&bias), m, n, k).iter().zip(&res).map(|(v, &r)| 0.75 * v + f64::from(r)).collect();
                check(&format!("{pref:?} linear {m}x{n}x{k}"), dtype, &c.read(&y), &want);
                if QuantFormat::Q4.check(k, n).is_ok() {
                    let q = quant::quantize(&kn(&w, n, k), k, n, QuantFormat::Q4).unwrap();
                    let qw = ops::QuantizedWeight::upload(&c.gpu, &q, [k, n], "w").unwrap();
                    let y = c.poisoned([m, n], dtype);
                    let mut b = c.gpu.batch("t");
                    ops::linear(&mut b, &xt, &qw, Some(&bt), &y).unwrap();
                    b.submit().unwrap();
                    check(&format!("{pref:?} linear q4 {m}x{n}x{k}"), dtype, &c.read(&y), &r::linear(&x, &r::transpose(&q.dequantize(), k, n), Some(&bias), m, n, k));
                }
            }
        }
    }
}

/// The workgroup-memory temporal attention (chosen on GPUs) against the reference, including
/// frame counts that are not powers of two and partial position tiles.
#[test]
fn temporal_attention_workgroup_kernel() {
    let mut c = Case::with(GpuOptions { kernels: KernelPreference::Tiled, ..GpuOptions::default() });
    for &(videos, frames, positions, heads, hd) in &[(2u32, 16u32, 5u32, 2u32, 12u32), (1, 24, 7, 1, 40), (1, 8, 3, 8, 40), (1, 32, 2, 2, 80)] {
        for dtype in c.dtypes() {
            let ch = heads * hd;
            let l = TokenLayout::frames(frames, positions, ch);
            let len = (videos * frames * positions * ch) as usize;
            let (q, k, v) = (c.data(len, 1.0, 0.0, dtype), c.data(len, 1.0, 0.0, dtype), c.data(len, 1.0, 0.0, dtype));
            let a = ops::Attention { sequences: videos * positions, heads, head_dim: hd, q_len: frames, kv_len: frames, q_layout: l, kv_layout: l, kv_div: 1, causal: false, scale: 1.3 / (hd as f32).sqrt() };
            let o = c.poisoned([len], dtype);
            let mut b = c.gpu.batch("t");
            ops::attention(&mut b, &a, &c.upload(&q, [len], dtype), &c.upload(&k, [len], dtype), &c.upload(&v, [len], dtype), &o).unwrap();
            b.submit().unwrap();
            let lay = [l.inner as usize, l.outer_stride as usize, l.inner_stride as usize, l.token_stride as usize];
            let want = r::attention(&q, &k, &v, (videos * positions) as usize, heads as usize, hd as usize, frames as usize, frames as usize, lay, lay, 1, false, f64::from(a.scale));
            check(&format!("temporal workgroup kernel {videos}v {frames}f {positions}p {heads}x{hd}"), dtype, &c.read(&o), &want);
        }
    }
}

/// The whole self-test suite with the GPU kernel family forced (what real GPUs run).
#[test]
fn kernel_suite_with_gpu_kernel_family() {
    let gpu = block_on(Gpu::new(GpuOptions { kernels: KernelPreference::Tiled, ..GpuOptions::default() })).unwrap();
    let checks = block_on(animatediff_wgpu::selftest::kernel_suite(&gpu, 99)).unwrap();
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "{failed:?}");
}

/// Regression: the pipeline cache once keyed kernels by file name + specialisation only, so
/// a linear layer with N % 4 ≠ 0 (scalar weight loads) after one with N % 4 = 0 (vec4 loads)
/// silently ran the vec4 pipeline. Both must be right in one context, in either order.
#[test]
fn kernels_differing_only_in_includes_are_distinct_pipelines() {
    let mut c = Case::new();
    for (m, k, n) in [(40usize, 16usize, 16usize), (40, 16, 37), (40, 16, 16)] {
        let x = c.data(m * k, 1.0, 0.0, DType::F32);
        let w = c.data(n * k, 1.0, 0.0, DType::F32);
        let xt = c.upload(&x, [m, k], DType::F32);
        let wt = c.upload(&ops::linear_weight_from_torch(&w, n, k).unwrap(), [k, n], DType::F32);
        let y = c.poisoned([m, n], DType::F32);
        let mut b = c.gpu.batch("t");
        ops::linear(&mut b, &xt, &wt, None, &y).unwrap();
        b.submit().unwrap();
        let e = r::rel_l2_error(&c.read(&y), &r::linear(&x, &w, None, m, n, k));
        assert!(e < 1e-5, "linear {m}×{k}×{n} after other widths: rel err {e:e}");
    }
}
