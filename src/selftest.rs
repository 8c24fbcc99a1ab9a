//! A GPU self-test shared by the CLI (`animatediff selftest`), the web page's demo and the
//! tests: run the linear kernel on random data and compare with the CPU float64 reference.

use crate::gpu::{Gpu, GpuResult};
use crate::ops;
use crate::reference::{self, Rng};

/// Outcome of [`linear_selftest`].
#[derive(Debug, Clone)]
pub struct SelfTestReport {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub flops: u64,
    pub rel_l2_error: f64,
    pub max_abs_error: f64,
    /// Tolerance `rel_l2_error` was held to.
    pub tolerance: f64,
    pub passed: bool,
}

/// Relative L2 tolerance for f32 storage and accumulation (kernel issue contract).
pub const F32_TOLERANCE: f64 = 1e-5;

/// Run `y = x·wᵀ + b` for random `x [m,k]`, `w [n,k]`, `b [n]` on the GPU and check it.
/// The output is poisoned with NaN first, so an unwritten element fails.
pub async fn linear_selftest(gpu: &Gpu, m: usize, n: usize, k: usize, seed: u64) -> GpuResult<SelfTestReport> {
    let mut rng = Rng::new(seed);
    let x = rng.uniform_vec(m * k);
    let w = rng.uniform_vec(n * k);
    let bias = rng.uniform_vec(n);
    let xt = gpu.upload_f32(&x, [m, k], "selftest.x")?;
    let wt = gpu.upload_f32(&w, [n, k], "selftest.w")?;
    let bt = gpu.upload_f32(&bias, [n], "selftest.bias")?;
    let yt = gpu.empty([m, n], crate::DType::F32, "selftest.y")?;

    let mut batch = gpu.batch("selftest");
    ops::fill(&mut batch, &yt, f32::NAN)?;
    ops::linear(&mut batch, &xt, &wt, Some(&bt), &yt)?;
    batch.submit()?;
    let y = gpu.read_f32(&yt).await?;

    let want = reference::linear(&x, &w, Some(&bias), m, n, k);
    let rel = reference::rel_l2_error(&y, &want);
    Ok(SelfTestReport {
        m,
        n,
        k,
        flops: 2 * m as u64 * n as u64 * k as u64,
        rel_l2_error: rel,
        max_abs_error: reference::max_abs_error(&y, &want),
        tolerance: F32_TOLERANCE,
        passed: rel <= F32_TOLERANCE,
    })
}
