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

/// `y[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n])` in f64.
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
    fn errors_flag_nan() {
        assert_eq!(rel_l2_error(&[f32::NAN], &[1.0]), f64::INFINITY);
        assert_eq!(max_abs_error(&[1.0, 2.0], &[1.0, 2.5]), 0.5);
    }
}
