//! PyTorch's CPU random generator, bit for bit: `torch.Generator("cpu").manual_seed(seed)` and
//! `torch.randn(shape, generator=g)` in float32, so a seed gives the same initial latents as
//! diffusers / the original AnimateDiff scripts.
//!
//! What PyTorch does (ATen `CPUGeneratorImpl`, `core/MT19937RNGEngine.h`,
//! `core/DistributionsHelper.h`, `native/cpu/DistributionTemplates.h`, `avx_mathfun.h`):
//! - **Engine**: MT19937 seeded with the low 32 bits of the `u64` seed (standard
//!   `init_genrand`); `random()` is one 32-bit output, `random64()` is `(first << 32) | second`.
//! - **Uniform float**: `(random() & (2^24 − 1)) · 2^−24`; uniform double uses `random64()` and 53 bits.
//! - **randn, float32, numel ≥ 16** (`normal_fill`): fill every element with a uniform float, then
//!   Box–Muller on each block of 16: `u1 = 1 − d[j]`, `u2 = d[j+8]`, `r = √(−2 ln u1)`,
//!   `θ = 2π·u2`, `d[j] = r cos θ`, `d[j+8] = r sin θ` (j < 8). If numel is not a multiple of
//!   16, the last 16 positions are refilled with fresh uniforms and transformed again.
//!   On x86 PyTorch uses the AVX2 kernel for this (also on AVX-512 machines: `normal_stub` is
//!   registered `NO_AVX512`), whose `ln`, `sin`, `cos` are the Cephes polynomials of
//!   `avx_mathfun.h` in float32. They are ported here operation by operation, **with the fused
//!   multiply-adds GCC forms from them** (`-mfma`, `-ffp-contract=fast`: each `mul` whose only
//!   use is an `add`/`sub` becomes one FMA). Without those FMAs ~1% of the values differ by one
//!   ulp; with them the output is bit-identical to PyTorch 2.15 x86 wheels (all fixture cases),
//!   on every target, wasm32 included (`f32::mul_add` is an exact FMA everywhere). PyTorch on
//!   ARM (e.g. Apple silicon) uses the scalar kernel with libm's `logf`/`cosf`/`sinf` and can
//!   differ from x86 in the last bit.
//! - **randn, numel < 16**: one `at::normal_distribution<double>` per element, in float64:
//!   `u1, u2` uniform doubles, `r = √(−2·log1p(−u2))`, `θ = 2π·u1`; returns `r cos θ` and caches
//!   `r sin θ` in the generator for the next scalar normal draw; the value is cast to f32.

/// PyTorch's default CPU seed (`default_rng_seed_val`), used by an unseeded `torch.Generator()`.
pub const DEFAULT_SEED: u64 = 67_280_421_310_721;

const MT_N: usize = 624;
const MT_M: usize = 397;

/// MT19937, as `at::mt19937` (identical output to `std::mt19937`).
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; MT_N],
    index: usize,
}

impl Mt19937 {
    /// Seeds with the low 32 bits of `seed` (what `at::mt19937(uint64_t)` does).
    pub fn new(seed: u64) -> Self {
        let mut state = [0u32; MT_N];
        state[0] = seed as u32;
        for j in 1..MT_N {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(j as u32);
        }
        Self { state, index: MT_N }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..MT_N {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % MT_N] & LOWER);
            let mag = if y & 1 != 0 { MATRIX_A } else { 0 };
            self.state[i] = self.state[(i + MT_M) % MT_N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// Next 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= MT_N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937").field("index", &self.index).finish_non_exhaustive()
    }
}

/// `torch.Generator("cpu")`: the engine plus the cached second Box–Muller sample of the scalar
/// normal path.
#[derive(Clone, Debug)]
pub struct TorchGenerator {
    engine: Mt19937,
    seed: u64,
    next_double_normal: Option<f64>,
}

impl Default for TorchGenerator {
    /// An unseeded generator (PyTorch's default seed 67280421310721).
    fn default() -> Self {
        Self::new(DEFAULT_SEED)
    }
}

impl TorchGenerator {
    /// `torch.Generator("cpu").manual_seed(seed)`. Negative Python seeds are taken modulo 2^64
    /// by PyTorch; pass `seed as u64`.
    pub fn new(seed: u64) -> Self {
        Self { engine: Mt19937::new(seed), seed, next_double_normal: None }
    }

    /// `manual_seed`: restarts the engine and drops the cached normal sample.
    pub fn manual_seed(&mut self, seed: u64) {
        *self = Self::new(seed);
    }

    /// `initial_seed()`.
    pub fn initial_seed(&self) -> u64 {
        self.seed
    }

    /// `random()`: one 32-bit engine output.
    pub fn random(&mut self) -> u32 {
        self.engine.next_u32()
    }

    /// `random64()`: two outputs, the first in the high half.
    pub fn random64(&mut self) -> u64 {
        let hi = self.engine.next_u32() as u64;
        let lo = self.engine.next_u32() as u64;
        (hi << 32) | lo
    }

    /// `at::uniform_real_distribution<float>(0, 1)`: 24 random bits.
    pub fn uniform_f32(&mut self) -> f32 {
        (self.random() & ((1 << 24) - 1)) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// `at::uniform_real_distribution<double>(0, 1)`: 53 random bits.
    pub fn uniform_f64(&mut self) -> f64 {
        (self.random64() & ((1u64 << 53) - 1)) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `at::normal_distribution<double>(0, 1)`: Box–Muller with the second value cached in
    /// the generator.
    pub fn normal_f64(&mut self) -> f64 {
        if let Some(v) = self.next_double_normal.take() {
            return v;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_double_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// Fills `out` like `torch.randn(out.len(), generator=self)` (float32, contiguous).
    pub fn fill_randn(&mut self, out: &mut [f32]) {
        let n = out.len();
        if n < 16 {
            for v in out.iter_mut() {
                *v = self.normal_f64() as f32;
            }
            return;
        }
        for v in out.iter_mut() {
            *v = self.uniform_f32();
        }
        for block in out.chunks_exact_mut(16) {
            normal_fill_16(block);
        }
        if !n.is_multiple_of(16) {
            let tail = &mut out[n - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            normal_fill_16(tail);
        }
    }

    /// `torch.randn(shape, generator=self)` in float32 (row-major). The element count is the
    /// product of `shape` (1 for an empty shape); callers bound it (latent sizes).
    pub fn randn(&mut self, shape: &[usize]) -> Vec<f32> {
        let numel = shape.iter().product::<usize>();
        let mut out = vec![0.0f32; numel];
        self.fill_randn(&mut out);
        out
    }
}

/// `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))`, float32.
pub fn torch_randn(seed: u64, shape: &[usize]) -> Vec<f32> {
    TorchGenerator::new(seed).randn(shape)
}

/// `normal_fill_16_AVX2` on one block of 16 uniforms (mean 0, std 1).
fn normal_fill_16(data: &mut [f32]) {
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    for j in 0..8 {
        let u1 = 1.0f32 - data[j];
        let u2 = data[j + 8];
        let radius = (-2.0f32 * cephes::log(u1)).sqrt();
        let theta = two_pi * u2;
        let (s, c) = cephes::sincos(theta);
        // `_mm256_fmadd_ps(n, std = 1, mean = 0)`: exact, but turns −0 into +0.
        data[j] = radius * c + 0.0;
        data[j + 8] = radius * s + 0.0;
    }
}

/// Scalar ports of `log256_ps` and `sincos256_ps` (`avx_mathfun.h`, after Julien Pommier's
/// `sse_mathfun`, zlib licence, Cephes polynomials), one lane at a time, operation by operation,
/// with `mul_add` exactly where GCC contracts the AVX2 code into FMAs (see the module docs).
#[allow(clippy::excessive_precision)] // literals as written in avx_mathfun.h
mod cephes {
    // The C source writes these as double literals stored into float arrays: round via f64.
    const SQRTHF: f32 = std::f64::consts::FRAC_1_SQRT_2 as f32; // 0.707106781186547524
    const LOG_P: [f32; 9] = [
        7.037_683_629_2e-2_f64 as f32,
        -1.151_461_031_0e-1_f64 as f32,
        1.167_699_874_0e-1_f64 as f32,
        -1.242_014_084_6e-1_f64 as f32,
        1.424_932_278_7e-1_f64 as f32,
        -1.666_805_766_5e-1_f64 as f32,
        2.000_071_476_5e-1_f64 as f32,
        -2.499_999_399_3e-1_f64 as f32,
        3.333_333_117_4e-1_f64 as f32,
    ];
    const LOG_Q1: f32 = -2.121_944_40e-4_f64 as f32;
    const LOG_Q2: f32 = 0.693_359_375_f64 as f32;

    const MINUS_DP1: f32 = -0.785_156_25_f64 as f32;
    const MINUS_DP2: f32 = -2.418_756_484_985_351_562_5e-4_f64 as f32;
    const MINUS_DP3: f32 = -3.774_894_977_445_941_08e-8_f64 as f32;
    const SINCOF_P0: f32 = -1.951_529_589_1e-4_f64 as f32;
    const SINCOF_P1: f32 = 8.332_160_873_6e-3_f64 as f32;
    const SINCOF_P2: f32 = -1.666_665_461_1e-1_f64 as f32;
    const COSCOF_P0: f32 = 2.443_315_711_809_948e-5_f64 as f32;
    const COSCOF_P1: f32 = -1.388_731_625_493_765e-3_f64 as f32;
    const COSCOF_P2: f32 = 4.166_664_568_298_827e-2_f64 as f32;
    const FOPI: f32 = 1.273_239_544_735_16_f64 as f32;

    fn select(mask: bool, v: f32) -> f32 {
        // `_mm256_and_ps(mask, v)`: v or +0.
        if mask {
            v
        } else {
            0.0
        }
    }

    /// `log256_ps`: natural log; NaN for x ≤ 0.
    pub fn log(x: f32) -> f32 {
        let invalid = x <= 0.0 || x.is_nan();
        let x = x.max(f32::from_bits(0x0080_0000));
        let bits = x.to_bits();
        let exponent = (bits >> 23) as i32 - 0x7f;
        let mut x = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
        let mut e = exponent as f32;
        e += 1.0;
        let mask = x < SQRTHF;
        let tmp = select(mask, x);
        x -= 1.0;
        e -= select(mask, 1.0);
        x += tmp;
        let z = x * x;
        let mut y = LOG_P[0];
        for &p in &LOG_P[1..] {
            y = y.mul_add(x, p);
        }
        y *= x;
        y = y.mul_add(z, e * LOG_Q1);
        y = (-z).mul_add(0.5, y);
        x += y;
        x = e.mul_add(LOG_Q2, x);
        if invalid {
            f32::NAN
        } else {
            x
        }
    }

    /// `sincos256_ps`: (sin x, cos x).
    pub fn sincos(x: f32) -> (f32, f32) {
        let sign_bit_sin_in = x.to_bits() & 0x8000_0000;
        let mut x = f32::from_bits(x.to_bits() & 0x7fff_ffff);
        let y = x * FOPI;
        // `_mm256_cvttps_epi32`: truncation; out of range / NaN give i32::MIN.
        let mut j = if y.is_nan() || y >= 2_147_483_648.0 { i32::MIN } else { y as i32 };
        j = j.wrapping_add(1) & !1;
        let y = j as f32;
        let swap_sign_sin = ((j & 4) as u32) << 29;
        let poly_mask = (j & 2) == 0;
        x = y.mul_add(MINUS_DP1, x);
        x = y.mul_add(MINUS_DP2, x);
        x = y.mul_add(MINUS_DP3, x);
        let sign_bit_cos = ((!j.wrapping_sub(2) & 4) as u32) << 29;
        let sign_bit_sin = sign_bit_sin_in ^ swap_sign_sin;

        let z = x * x;
        let mut yc = COSCOF_P0.mul_add(z, COSCOF_P1);
        yc = yc.mul_add(z, COSCOF_P2);
        yc *= z;
        yc = yc.mul_add(z, -(z * 0.5));
        yc += 1.0;

        let mut ys = SINCOF_P0.mul_add(z, SINCOF_P1);
        ys = ys.mul_add(z, SINCOF_P2);
        ys *= z;
        ys = ys.mul_add(x, x);

        let ysin2 = select(poly_mask, ys);
        let ysin1 = select(!poly_mask, yc);
        let ys = ys - ysin2;
        let yc = yc - ysin1;
        let s = ysin1 + ysin2;
        let c = yc + ys;
        (f32::from_bits(s.to_bits() ^ sign_bit_sin), f32::from_bits(c.to_bits() ^ sign_bit_cos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_reference_outputs() {
        // std::mt19937 with the default seed 5489: first output and the 10000th (C++ standard).
        let mut mt = Mt19937::new(5489);
        assert_eq!(mt.next_u32(), 3_499_211_612);
        for _ in 1..9999 {
            mt.next_u32();
        }
        assert_eq!(mt.next_u32(), 4_123_659_995);
        // torch.manual_seed(0): first output 2357136044 (torch.rand(1) = 0.4963).
        assert_eq!(Mt19937::new(0).next_u32(), 2_357_136_044);
        // Only the low 32 bits of the seed are used.
        assert_eq!(Mt19937::new(1 << 32).next_u32(), 2_357_136_044);
    }

    #[test]
    fn uniform_matches_torch_rand() {
        let mut g = TorchGenerator::new(0);
        assert!((g.uniform_f32() - 0.4963).abs() < 1e-4);
    }

    #[test]
    fn randn_small_matches_torch() {
        // torch.manual_seed(0); torch.randn(2, 3)
        let expected = [1.5410, -0.2934, -2.1788, 0.5684, -1.0845, -1.3986];
        let got = torch_randn(0, &[2, 3]);
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-4, "{got:?}");
        }
    }

    #[test]
    fn randn_16_matches_torch() {
        // torch.manual_seed(0); torch.randn(4, 4)
        let expected = [
            -1.1258, -1.1524, -0.2506, -0.4339, 0.8487, 0.6920, -0.3160, -2.1152, 0.3223, -1.2633, 0.3500, 0.3081,
            0.1198, 1.2377, 1.1168, -0.2473,
        ];
        let got = torch_randn(0, &[4, 4]);
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-4, "{got:?}");
        }
    }

    #[test]
    fn tail_block_is_recomputed() {
        // 20 elements: block 0..16 as for 16, then 4..20 redrawn from 16 fresh uniforms.
        let a = torch_randn(3, &[20]);
        let b = torch_randn(3, &[16]);
        assert_eq!(a[..4], b[..4]);
        assert_ne!(a[4..16], b[4..16]);
    }

    #[test]
    fn scalar_normal_cache_carries_over() {
        let mut g = TorchGenerator::new(7);
        let first = g.randn(&[3]);
        let second = g.randn(&[3]);
        let all = torch_randn(7, &[6]);
        assert_eq!([first, second].concat(), all);
    }

    #[test]
    fn cephes_accuracy() {
        for i in 1..=1000 {
            let x = i as f32 / 1000.0;
            assert!((cephes::log(x) - x.ln()).abs() <= 2e-7 * x.ln().abs().max(1.0));
            let t = x * 6.2831855;
            let (s, c) = cephes::sincos(t);
            assert!((s - t.sin()).abs() < 3e-7 && (c - t.cos()).abs() < 3e-7, "{t}");
        }
        assert!(cephes::log(0.0).is_nan() && cephes::log(-1.0).is_nan());
    }
}
