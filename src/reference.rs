//! CPU float64 references for the GPU kernels, plus a small deterministic RNG.
//!
//! Tests (native and browser) and `animatediff selftest` compare kernel output against these.

/// xorshift64* — deterministic, seedable, identical on every target.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Avoid the all-zero state.
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn uniform_vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
}

/// Transpose a row-major `[rows, cols]` matrix (e.g. a K-major `[K, N]` weight back to
/// PyTorch's `[N, K]`).
pub fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols).map(|e| w[(e % rows) * cols + e / rows]).collect()
}

/// `y[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n])` in f64 (PyTorch's `[out, in]` weight).
pub fn linear(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut y = vec![0f64; m * n];
    for r in 0..m {
        let xr = &x[r * k..(r + 1) * k];
        for c in 0..n {
            let wc = &w[c * k..(c + 1) * k];
            let mut acc: f64 = xr.iter().zip(wc).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
            if let Some(b) = bias {
                acc += f64::from(b[c]);
            }
            y[r * n + c] = acc;
        }
    }
    y
}

/// Exact GELU, `0.5·x·(1 + erf(x/√2))`, in f64.
pub fn gelu_erf(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// erf to ~1e-15 (series for |x| < 3, continued fraction beyond), for references only.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        // erf(x) = 2/√π · Σ (-1)^n x^(2n+1) / (n! (2n+1))
        let mut sum = 0f64;
        let mut term = a;
        let mut n = 0f64;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -a * a / n;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc continued fraction (Lentz), converges fast for a ≥ 3.
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
    };
    if x < 0.0 { -r } else { r }
}

pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

pub fn quick_gelu(x: f64) -> f64 {
    x / (1.0 + (-1.702 * x).exp())
}

/// GroupNorm over channels-last `x [sets, positions, channels]` (+ optional SiLU).
#[allow(clippy::too_many_arguments)]
pub fn group_norm(x: &[f32], gamma: &[f32], beta: &[f32], sets: usize, positions: usize, channels: usize, groups: usize, eps: f64, silu_after: bool) -> Vec<f64> {
    let cpg = channels / groups;
    let mut y = vec![0f64; x.len()];
    for s in 0..sets {
        for g in 0..groups {
            let idx = |p: usize, c: usize| s * positions * channels + p * channels + g * cpg + c;
            let count = (positions * cpg) as f64;
            let mut mean = 0.0;
            for p in 0..positions {
                for c in 0..cpg {
                    mean += f64::from(x[idx(p, c)]);
                }
            }
            mean /= count;
            let mut var = 0.0;
            for p in 0..positions {
                for c in 0..cpg {
                    var += (f64::from(x[idx(p, c)]) - mean).powi(2);
                }
            }
            let rstd = 1.0 / (var / count + eps).sqrt();
            for p in 0..positions {
                for c in 0..cpg {
                    let ch = g * cpg + c;
                    let v = (f64::from(x[idx(p, c)]) - mean) * rstd * f64::from(gamma[ch]) + f64::from(beta[ch]);
                    y[idx(p, c)] = if silu_after { silu(v) } else { v };
                }
            }
        }
    }
    y
}

/// LayerNorm over the last dimension of `x [rows, cols]`.
pub fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], cols: usize, eps: f64) -> Vec<f64> {
    let mut y = vec![0f64; x.len()];
    for (row, out) in x.chunks(cols).zip(y.chunks_mut(cols)) {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / cols as f64;
        let var = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / cols as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        for c in 0..cols {
            out[c] = (f64::from(row[c]) - mean) * rstd * f64::from(gamma[c]) + f64::from(beta[c]);
        }
    }
    y
}

/// 2-D convolution with PyTorch semantics — weight `[Cout, Cin, KH, KW]` (OIHW), zero
/// padding, optional nearest-×2 upsampling first — on channels-last `x [N, H, W, Cin]`;
/// returns `[N, Ho, Wo, Cout]`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_nhwc(x: &[f32], w_oihw: &[f32], bias: &[f32], dims: [usize; 4], cout: usize, kernel: (usize, usize), stride: usize, pad: usize, upsample: bool) -> Vec<f64> {
    let [n, h, wd, cin] = dims;
    let (kh, kw) = kernel;
    let f = if upsample { 2 } else { 1 };
    let (ih, iw) = (h * f, wd * f);
    let ho = (ih + 2 * pad - kh) / stride + 1;
    let wo = (iw + 2 * pad - kw) / stride + 1;
    let mut y = vec![0f64; n * ho * wo * cout];
    for b in 0..n {
        for oy in 0..ho {
            for ox in 0..wo {
                for o in 0..cout {
                    let mut acc = f64::from(bias[o]);
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let yy = (oy * stride + ky) as isize - pad as isize;
                            let xx = (ox * stride + kx) as isize - pad as isize;
                            if yy < 0 || xx < 0 || yy >= ih as isize || xx >= iw as isize {
                                continue;
                            }
                            let (sy, sx) = (yy as usize / f, xx as usize / f);
                            for i in 0..cin {
                                acc += f64::from(x[((b * h + sy) * wd + sx) * cin + i]) * f64::from(w_oihw[((o * cin + i) * kh + ky) * kw + kx]);
                            }
                        }
                    }
                    y[((b * ho + oy) * wo + ox) * cout + o] = acc;
                }
            }
        }
    }
    y
}

/// Multi-head attention in f64 with the same strided addressing as `ops::attention`:
/// `addr(layout, s, t, h) = (s / inner)·outer + (s % inner)·inner_stride + t·token_stride + h·D`,
/// layouts given as `(inner, outer_stride, inner_stride, token_stride)`. Returns a copy of
/// `q`'s buffer (as f64) with the attended rows written.
#[allow(clippy::too_many_arguments)]
pub fn attention(q: &[f32], k: &[f32], v: &[f32], sequences: usize, heads: usize, head_dim: usize, q_len: usize, kv_len: usize, q_layout: [usize; 4], kv_layout: [usize; 4], kv_div: usize, causal: bool, scale: f64) -> Vec<f64> {
    let addr = |l: [usize; 4], s: usize, t: usize, h: usize| (s / l[0]) * l[1] + (s % l[0]) * l[2] + t * l[3] + h * head_dim;
    let mut o: Vec<f64> = q.iter().map(|&x| f64::from(x)).collect();
    for s in 0..sequences {
        for h in 0..heads {
            for i in 0..q_len {
                let qa = addr(q_layout, s, i, h);
                let n = if causal { (i + 1).min(kv_len) } else { kv_len };
                let scores: Vec<f64> = (0..n)
                    .map(|j| {
                        let ka = addr(kv_layout, s / kv_div, j, h);
                        (0..head_dim).map(|d| f64::from(q[qa + d]) * f64::from(k[ka + d])).sum::<f64>() * scale
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..head_dim {
                    o[qa + d] = (0..n).map(|j| e[j] * f64::from(v[addr(kv_layout, s / kv_div, j, h) + d])).sum::<f64>() / z;
                }
            }
        }
    }
    o
}

/// Round every value through f16 (what f16 storage does to an input).
pub fn round_f16(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
}

/// `‖out − ref‖₂ / ‖ref‖₂`; NaN/inf anywhere in `out` gives +inf (so unwritten, NaN-poisoned
/// elements fail every tolerance).
pub fn rel_l2_error(out: &[f32], reference: &[f64]) -> f64 {
    if out.len() != reference.len() {
        return f64::INFINITY;
    }
    let mut num = 0f64;
    let mut den = 0f64;
    for (&o, &r) in out.iter().zip(reference) {
        if !o.is_finite() {
            return f64::INFINITY;
        }
        let d = f64::from(o) - r;
        num += d * d;
        den += r * r;
    }
    if den == 0.0 {
        return num.sqrt();
    }
    (num / den).sqrt()
}

/// Largest `|out − ref|` (+inf for a non-finite output).
pub fn max_abs_error(out: &[f32], reference: &[f64]) -> f64 {
    if out.len() != reference.len() {
        return f64::INFINITY;
    }
    out.iter()
        .zip(reference)
        .map(|(&o, &r)| if o.is_finite() { (f64::from(o) - r).abs() } else { f64::INFINITY })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let a = Rng::new(7).uniform_vec(1000);
        assert_eq!(a, Rng::new(7).uniform_vec(1000));
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
        assert!(a.iter().any(|&v| v < -0.5) && a.iter().any(|&v| v > 0.5));
    }

    #[test]
    fn linear_reference_small() {
        // [1 2; 3 4] · [[1 0], [1 1]]ᵀ + [10, 20]
        let y = linear(&[1., 2., 3., 4.], &[1., 0., 1., 1.], Some(&[10., 20.]), 2, 2, 2);
        assert_eq!(y, vec![11., 23., 13., 27.]);
    }

    #[test]
    fn erf_reference_is_accurate() {
        // Values from tables of erf.
        for (x, want) in [(0.5, 0.520_499_877_813_046_5), (1.0, 0.842_700_792_949_714_9), (2.0, 0.995_322_265_018_952_7), (3.5, 0.999_999_256_901_627_7)] {
            assert!((erf(x) - want).abs() < 1e-13, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + want).abs() < 1e-13);
        }
    }

    #[test]
    fn transpose_round_trips() {
        let w: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(transpose(&w, 2, 3), vec![0., 3., 1., 4., 2., 5.]);
        assert_eq!(transpose(&transpose(&w, 2, 3), 3, 2), w);
    }

    #[test]
    fn errors_flag_nan() {
        assert_eq!(rel_l2_error(&[f32::NAN], &[1.0]), f64::INFINITY);
        assert_eq!(max_abs_error(&[1.0, 2.0], &[1.0, 2.5]), 0.5);
    }
}
