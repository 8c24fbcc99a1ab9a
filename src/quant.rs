//! Group-wise weight quantization formats (q8 / q4), packed exactly as the kernels read them
//! (`shaders/include/weights_quant.wgsl`).
//!
//! Weights are stored K-major like the dense ones: a matrix `[K, N]` (K = the reduction
//! dimension, for convolutions `KH·KW·Cin`; N = output features), i.e. the transpose of
//! PyTorch's `[out, in]`. For every output column `n`, each group of `group` consecutive `k`
//! has an f16 scale (and, asymmetric, an f16 minimum), stored `[K / group, N]`:
//! - symmetric: `s = f16(amax · (1/qmax))`, `q = round(w / s)` in `[-qmax, qmax]` (qmax 127 / 7),
//!   `w ≈ q·s`;
//! - asymmetric: `min = f16(lo)`, `s = f16((hi − lo) · (1/(2^bits − 1)))`,
//!   `q = round((w − min) / s)` in `[0, 2^bits − 1]`, `w ≈ q·s + min`.
//!
//! Every step is exactly reproducible on a GPU (`shaders/quantize.wgsl` is bit-exact with this
//! code): scales come from one correctly rounded f32 multiply and a round-to-nearest-even f16
//! conversion, and `round(x / s)` (ties away from zero) is decided exactly — the quotient only
//! proposes a code, which is then checked against the exact products `(q ± ½)·s` (an f16
//! scale times a ≤ 10-bit half-integer is exact in f32), so WGSL's 2.5-ulp division cannot
//! change a code.
//!
//! Values are packed 32/bits per `u32` along `n`: element `(k, n)` at word
//! `(k·N + n) / (32/bits)`, bit `((k·N + n) % (32/bits))·bits`. N must be a multiple of 8
//! (4 for q8). The CPU quantizer here is the reference and the offline path; quantizing on
//! the GPU at load time is the quantization/memory work.

use half::f16;
use thiserror::Error;

/// How a weight matrix is quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuantFormat {
    /// 8 or 4.
    pub bits: u32,
    /// Columns per scale; a multiple of 8 that divides the matrix's column count.
    pub group: u32,
    pub asymmetric: bool,
}

impl QuantFormat {
    pub const Q8: QuantFormat = QuantFormat { bits: 8, group: 32, asymmetric: false };
    pub const Q4: QuantFormat = QuantFormat { bits: 4, group: 32, asymmetric: false };

    pub fn per_word(&self) -> usize {
        (32 / self.bits) as usize
    }

    /// Check the format against a K-major `[k, n]` matrix.
    pub fn check(&self, k: usize, n: usize) -> Result<(), QuantError> {
        if self.bits != 8 && self.bits != 4 {
            return Err(QuantError::Format(format!("{} bits (8 or 4 supported)", self.bits)));
        }
        let g = self.group as usize;
        if g == 0 || !g.is_multiple_of(8) || !k.is_multiple_of(g) {
            return Err(QuantError::Format(format!("group {g} must be a multiple of 8 dividing K = {k}")));
        }
        // Whole words per row, and vec4 loads of four columns from one word.
        let step = self.per_word().max(4);
        if n == 0 || !n.is_multiple_of(step) {
            return Err(QuantError::Format(format!("q{} needs N (output features) to be a multiple of {step}, got {n}", self.bits)));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Error, PartialEq)]
pub enum QuantError {
    #[error("unsupported quantization: {0}")]
    Format(String),
    #[error("weight has {got} values, [{k}, {n}] needs {}", k * n)]
    Size { got: usize, k: usize, n: usize },
    #[error("weight contains a non-finite value at index {0}")]
    NonFinite(usize),
    /// Scales and minimums are f16: weights beyond its range cannot be represented.
    #[error("weight value {value} at index {index} is outside the f16 range of the scales (|w| ≤ {MAX_ABS})")]
    Range { index: usize, value: f32 },
}

/// Largest weight magnitude the formats take (f16's largest finite value).
pub const MAX_ABS: f32 = 65504.0;

/// Check weights before quantizing them (on the CPU or the GPU): finite and within [`MAX_ABS`].
pub fn check_values(w: &[f32]) -> Result<(), QuantError> {
    for (index, &value) in w.iter().enumerate() {
        if !value.is_finite() {
            return Err(QuantError::NonFinite(index));
        }
        if value.abs() > MAX_ABS {
            return Err(QuantError::Range { index, value });
        }
    }
    Ok(())
}

/// `1 / (largest code magnitude)` in f32: 1/127, 1/7 (symmetric), 1/255, 1/15 (asymmetric).
pub fn scale_factor(format: QuantFormat) -> f32 {
    1.0 / code_max(format) as f32
}

/// Largest code magnitude: qmax (symmetric) or `2^bits − 1` (asymmetric).
pub fn code_max(format: QuantFormat) -> u32 {
    if format.asymmetric {
        (1u32 << format.bits) - 1
    } else {
        (1u32 << (format.bits - 1)) - 1
    }
}

/// `min(round(a / s), top)` for `a ≥ 0`, `s > 0` an f16 value, rounding half away from zero,
/// decided exactly (see the module docs); the same steps as `nearest` in `shaders/quantize.wgsl`.
pub fn nearest_code(a: f32, s: f32, top: u32) -> u32 {
    let t = a / s;
    let mut q = if t < (top + 1) as f32 { (t + 0.5).floor() as u32 } else { top + 1 };
    if q > 0 && (q as f32 - 0.5) * s > a {
        q -= 1;
    }
    if (q as f32 + 0.5) * s <= a {
        q += 1;
    }
    q.min(top)
}

/// A quantized K-major `[k, n]` matrix in the kernels' packed layout.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedMatrix {
    pub k: usize,
    pub n: usize,
    pub format: QuantFormat,
    pub words: Vec<u32>,
    /// `[k / group, n]`.
    pub scales: Vec<f16>,
    /// `[k / group, n]`; empty when symmetric.
    pub mins: Vec<f16>,
}

/// Quantize a row-major K-major `[k, n]` f32 matrix (see [`crate::ops::linear_weight_from_torch`]
/// for PyTorch's `[out, in]`).
pub fn quantize(w: &[f32], k: usize, n: usize, format: QuantFormat) -> Result<QuantizedMatrix, QuantError> {
    format.check(k, n)?;
    if w.len() != k * n {
        return Err(QuantError::Size { got: w.len(), k, n });
    }
    check_values(w)?;
    let bits = format.bits;
    let per_word = format.per_word();
    let g = format.group as usize;
    let mut words = vec![0u32; (k * n).div_ceil(per_word)];
    let mut scales = vec![f16::ZERO; k / g * n];
    let mut mins = vec![f16::ZERO; if format.asymmetric { k / g * n } else { 0 }];
    let mask = (1u32 << bits) - 1;
    let top = code_max(format);
    let rcp = scale_factor(format);
    let mut column = Vec::with_capacity(g);
    for gi in 0..k / g {
        for col in 0..n {
            column.clear();
            column.extend((0..g).map(|j| w[(gi * g + j) * n + col]));
            let codes: Vec<u32> = if format.asymmetric {
                let lo = column.iter().cloned().fold(f32::INFINITY, f32::min);
                let hi = column.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let min16 = f16::from_f32(lo);
                let scale16 = f16::from_f32((hi - lo) * rcp);
                scales[gi * n + col] = scale16;
                mins[gi * n + col] = min16;
                let (s, m) = (scale16.to_f32(), min16.to_f32());
                column
                    .iter()
                    .map(|&v| {
                        let d = v - m;
                        if s > 0.0 && d > 0.0 { nearest_code(d, s, top) } else { 0 }
                    })
                    .collect()
            } else {
                let amax = column.iter().fold(0f32, |a, &v| a.max(v.abs()));
                let scale16 = f16::from_f32(amax * rcp);
                scales[gi * n + col] = scale16;
                let s = scale16.to_f32();
                column
                    .iter()
                    .map(|&v| {
                        let q = if s > 0.0 { nearest_code(v.abs(), s, top) as i32 } else { 0 };
                        ((if v < 0.0 { -q } else { q }) as u32) & mask
                    })
                    .collect()
            };
            for (j, code) in codes.into_iter().enumerate() {
                let e = (gi * g + j) * n + col;
                words[e / per_word] |= code << ((e % per_word) as u32 * bits);
            }
        }
    }
    Ok(QuantizedMatrix { k, n, format, words, scales, mins })
}

impl QuantizedMatrix {
    /// The `[k, n]` values exactly as the kernels decode them (f32 math on f16 scale/minimum).
    pub fn dequantize(&self) -> Vec<f32> {
        let bits = self.format.bits;
        let per_word = self.format.per_word();
        let g = self.format.group as usize;
        (0..self.k * self.n)
            .map(|e| {
                let (kk, col) = (e / self.n, e % self.n);
                let raw = (self.words[e / per_word] >> ((e % per_word) as u32 * bits)) & ((1u32 << bits) - 1);
                let si = (kk / g) * self.n + col;
                let s = self.scales[si].to_f32();
                if self.format.asymmetric {
                    raw as f32 * s + self.mins[si].to_f32()
                } else {
                    // Sign-extend the `bits`-bit code.
                    let q = ((raw << (32 - bits)) as i32) >> (32 - bits);
                    q as f32 * s
                }
            })
            .collect()
    }

    /// Bytes of packed values + scales (+ minimums).
    pub fn size_bytes(&self) -> usize {
        self.words.len() * 4 + (self.scales.len() + self.mins.len()) * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Rng;

    #[test]
    fn round_trip_error_is_bounded_by_half_a_step() {
        let (k, n) = (64, 40);
        let w = Rng::new(3).uniform_vec(k * n);
        for format in [
            QuantFormat::Q8,
            QuantFormat::Q4,
            QuantFormat { bits: 8, group: 64, asymmetric: true },
            QuantFormat { bits: 4, group: 32, asymmetric: true },
        ] {
            let q = quantize(&w, k, n, format).unwrap();
            let d = q.dequantize();
            let g = format.group as usize;
            for (e, (&a, &b)) in w.iter().zip(&d).enumerate() {
                let step = q.scales[(e / n / g) * n + e % n].to_f32();
                assert!((a - b).abs() <= 0.5 * step + 1e-3 * step + 1e-6, "{format:?} element {e}: {a} vs {b} (step {step})");
            }
        }
    }

    #[test]
    fn bad_formats_and_data_are_errors() {
        assert!(quantize(&[0.0; 24 * 8], 24, 8, QuantFormat::Q8).is_err()); // K = 24 % 32
        assert!(quantize(&[0.0; 32 * 6], 32, 6, QuantFormat::Q4).is_err()); // N = 6 % 8
        assert!(quantize(&[0.0; 32 * 8], 32, 8, QuantFormat { bits: 3, group: 32, asymmetric: false }).is_err());
        assert!(quantize(&[0.0; 31], 32, 1, QuantFormat::Q8).is_err());
        let mut w = vec![0.0; 32 * 4];
        w[5] = f32::NAN;
        assert_eq!(quantize(&w, 32, 4, QuantFormat::Q8), Err(QuantError::NonFinite(5)));
    }

    #[test]
    fn nearest_code_is_exact_rounding_half_away() {
        let s = f16::from_f32(0.013).to_f32();
        for q in 0..130u32 {
            // Exactly on the half-way point rounds up; one ulp below rounds down.
            let half = (q as f32 + 0.5) * s;
            assert_eq!(nearest_code(half, s, 127), (q + 1).min(127));
            assert_eq!(nearest_code(f32::from_bits(half.to_bits() - 1), s, 127), q.min(127));
        }
        assert_eq!(nearest_code(1e30, s, 7), 7);
        assert_eq!(nearest_code(0.0, s, 7), 0);
    }

    #[test]
    fn out_of_range_weights_are_errors() {
        let mut w = vec![0.0; 32 * 4];
        w[7] = 70000.0;
        assert_eq!(quantize(&w, 32, 4, QuantFormat::Q8), Err(QuantError::Range { index: 7, value: 70000.0 }));
    }

    #[test]
    fn zero_groups_decode_to_zero() {
        let q = quantize(&[0.0; 256], 32, 8, QuantFormat::Q4).unwrap();
        assert!(q.dequantize().iter().all(|&v| v == 0.0));
    }
}
