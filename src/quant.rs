//! Group-wise weight quantization formats (q8 / q4), packed exactly as the kernels read them
//! (`shaders/include/weights_quant.wgsl`).
//!
//! A weight matrix `[rows, cols]` (rows = output features; cols = the reduction dimension K,
//! for convolutions `KH·KW·Cin` in OHWI order) is cut into groups of `group` consecutive
//! columns; each group has an f16 scale (and, asymmetric, an f16 minimum):
//! - symmetric: `q = round(w / s)` in `[-qmax, qmax]` (qmax 127 / 7), `w ≈ q·s`;
//! - asymmetric: `q = round((w − min) / s)` in `[0, 2^bits − 1]`, `w ≈ q·s + min`.
//!
//! Values are packed 32/bits per `u32`, element `e` of the row-major matrix at word
//! `e / (32/bits)`, bit `(e % (32/bits))·bits`. The CPU quantizer here is the reference and
//! the offline path; quantizing on the GPU at load time is the quantization/memory work.

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

    /// Check the format against a `[rows, cols]` matrix.
    pub fn check(&self, rows: usize, cols: usize) -> Result<(), QuantError> {
        if self.bits != 8 && self.bits != 4 {
            return Err(QuantError::Format(format!("{} bits (8 or 4 supported)", self.bits)));
        }
        let g = self.group as usize;
        if g == 0 || !g.is_multiple_of(8) || !cols.is_multiple_of(g) {
            return Err(QuantError::Format(format!("group {g} must be a multiple of 8 dividing {cols} columns")));
        }
        if rows == 0 {
            return Err(QuantError::Format("empty matrix".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Error, PartialEq)]
pub enum QuantError {
    #[error("unsupported quantization: {0}")]
    Format(String),
    #[error("weight has {got} values, [{rows}, {cols}] needs {}", rows * cols)]
    Size { got: usize, rows: usize, cols: usize },
    #[error("weight contains a non-finite value at index {0}")]
    NonFinite(usize),
}

/// A quantized `[rows, cols]` matrix in the kernels' packed layout.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedMatrix {
    pub rows: usize,
    pub cols: usize,
    pub format: QuantFormat,
    pub words: Vec<u32>,
    /// `[rows, cols / group]`.
    pub scales: Vec<f16>,
    /// `[rows, cols / group]`; empty when symmetric.
    pub mins: Vec<f16>,
}

/// Quantize a row-major `[rows, cols]` f32 matrix.
pub fn quantize(w: &[f32], rows: usize, cols: usize, format: QuantFormat) -> Result<QuantizedMatrix, QuantError> {
    format.check(rows, cols)?;
    if w.len() != rows * cols {
        return Err(QuantError::Size { got: w.len(), rows, cols });
    }
    if let Some(i) = w.iter().position(|v| !v.is_finite()) {
        return Err(QuantError::NonFinite(i));
    }
    let bits = format.bits;
    let per_word = format.per_word();
    let g = format.group as usize;
    let groups = rows * cols / g;
    let mut words = vec![0u32; (rows * cols).div_ceil(per_word)];
    let mut scales = Vec::with_capacity(groups);
    let mut mins = Vec::with_capacity(if format.asymmetric { groups } else { 0 });
    let mask = (1u32 << bits) - 1;
    for (gi, chunk) in w.chunks(g).enumerate() {
        let codes: Vec<u32> = if format.asymmetric {
            let lo = chunk.iter().cloned().fold(f32::INFINITY, f32::min);
            let hi = chunk.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let levels = ((1u32 << bits) - 1) as f32;
            let min16 = f16::from_f32(lo);
            let scale16 = f16::from_f32((hi - lo) / levels);
            scales.push(scale16);
            mins.push(min16);
            let (s, m) = (scale16.to_f32(), min16.to_f32());
            chunk.iter().map(|&v| if s > 0.0 { ((v - m) / s).round().clamp(0.0, levels) as u32 } else { 0 }).collect()
        } else {
            let qmax = ((1i32 << (bits - 1)) - 1) as f32;
            let amax = chunk.iter().fold(0f32, |a, &v| a.max(v.abs()));
            let scale16 = f16::from_f32(amax / qmax);
            scales.push(scale16);
            let s = scale16.to_f32();
            chunk
                .iter()
                .map(|&v| {
                    let q = if s > 0.0 { (v / s).round().clamp(-qmax, qmax) as i32 } else { 0 };
                    (q as u32) & mask
                })
                .collect()
        };
        for (j, code) in codes.into_iter().enumerate() {
            let e = gi * g + j;
            words[e / per_word] |= code << ((e % per_word) as u32 * bits);
        }
    }
    Ok(QuantizedMatrix { rows, cols, format, words, scales, mins })
}

impl QuantizedMatrix {
    /// The values exactly as the kernels decode them (f32 math on f16 scale/minimum).
    pub fn dequantize(&self) -> Vec<f32> {
        let bits = self.format.bits;
        let per_word = self.format.per_word();
        let g = self.format.group as usize;
        (0..self.rows * self.cols)
            .map(|e| {
                let raw = (self.words[e / per_word] >> ((e % per_word) as u32 * bits)) & ((1u32 << bits) - 1);
                let s = self.scales[e / g].to_f32();
                if self.format.asymmetric {
                    raw as f32 * s + self.mins[e / g].to_f32()
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
        let (rows, cols) = (5, 64);
        let w = Rng::new(3).uniform_vec(rows * cols);
        for format in [
            QuantFormat::Q8,
            QuantFormat::Q4,
            QuantFormat { bits: 8, group: 64, asymmetric: true },
            QuantFormat { bits: 4, group: 32, asymmetric: true },
        ] {
            let q = quantize(&w, rows, cols, format).unwrap();
            let d = q.dequantize();
            let g = format.group as usize;
            for (e, (&a, &b)) in w.iter().zip(&d).enumerate() {
                let step = q.scales[e / g].to_f32();
                assert!((a - b).abs() <= 0.5 * step + 1e-3 * step + 1e-6, "{format:?} element {e}: {a} vs {b} (step {step})");
            }
        }
    }

    #[test]
    fn bad_formats_and_data_are_errors() {
        assert!(quantize(&[0.0; 24], 1, 24, QuantFormat::Q8).is_err()); // 24 % 32
        assert!(quantize(&[0.0; 32], 1, 32, QuantFormat { bits: 3, group: 32, asymmetric: false }).is_err());
        assert!(quantize(&[0.0; 31], 1, 32, QuantFormat::Q8).is_err());
        let mut w = vec![0.0; 32];
        w[5] = f32::NAN;
        assert_eq!(quantize(&w, 1, 32, QuantFormat::Q8), Err(QuantError::NonFinite(5)));
    }

    #[test]
    fn zero_groups_decode_to_zero() {
        let q = quantize(&[0.0; 64], 2, 32, QuantFormat::Q4).unwrap();
        assert!(q.dequantize().iter().all(|&v| v == 0.0));
    }
}
