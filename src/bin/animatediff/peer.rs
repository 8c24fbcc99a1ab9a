//! burn-wgpu as the performance peer for `animatediff bench kernels --peer` (feature `burn-peer`).
//!
//! Runs the same op families as our hand-written WGSL kernels through burn 0.22.1 on the wgpu
//! runtime pinned to the Vulkan graphics API (burn's CubeCL kernels, with operation fusion and
//! kernel autotune enabled, as the `burn-peer` feature selects them).
//!
//! burn 0.22 API used throughout: tensors are `burn::tensor::Tensor<D>` (rank only); the backend
//! is carried by a runtime `burn::tensor::Device`, created here with
//! `Device::wgpu_options().graphics_api(WgpuBackend::Vulkan).init_with_setup()`.
//!
//! Timing protocol of every op function (see [`Peer::time`]):
//! 1. inputs are drawn with `Tensor::random(shape, Distribution::Uniform(-1, 1), (&device, dtype))`;
//! 2. one warm-up run (burn's autotune benchmarks its candidates and CubeCL compiles the
//!    kernels here), followed by `Device::flush` + `Device::sync` and a one-element readback;
//! 3. `iters` timed runs measured with `std::time::Instant`. Each run's output is held until
//!    `Device::flush` has handed the queued operations to the runtime (so the fusion backend
//!    cannot drop an unread result as dead work), and the timer stops after `Device::sync`;
//! 4. one element of the last output is read back (outside the timed window) and must be
//!    finite, proving that the work really ran.
//!
//! The returned value is wall-clock seconds per run including submission, like our own
//! benchmark. Panics inside burn (shape checks, kernel launch failures, unsupported dtypes) are
//! caught and returned as `Err(String)`.
//!
//! Adapter selection: burn's `DeviceKind::DefaultDevice` on Vulkan (the high-performance
//! adapter if there is one, otherwise e.g. lavapipe). CubeCL's `CUBECL_WGPU_DEFAULT_DEVICE`
//! environment variable overrides it (e.g. `CUBECL_WGPU_DEFAULT_DEVICE=Cpu` for lavapipe on a
//! machine that also has a GPU), to match `--fallback-adapter`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::time::Instant;

use burn::module::Param;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::module::{attention, conv2d, layer_norm};
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};
use burn::tensor::wgpu::WgpuBackend;
use burn::tensor::{DType, Device, DeviceKind, Distribution, Tensor};

/// burn's wgpu runtime can be initialised once per (adapter selector, graphics API) in a
/// process; `Device::wgpu_options().init*()` fails on a second call. Every [`Peer`] therefore
/// shares one device, created on first use.
static DEVICE: OnceLock<Result<(Device, String), String>> = OnceLock::new();

/// Epsilon of [`Peer::layer_norm`] (PyTorch's `nn.LayerNorm` default, as in AnimateDiff's
/// transformer blocks).
const LAYER_NORM_EPS: f64 = 1e-5;
/// Epsilon of [`Peer::group_norm`] (AnimateDiff's ResNet blocks).
const GROUP_NORM_EPS: f64 = 1e-6;

/// A burn device on the wgpu runtime with the Vulkan graphics API.
pub struct Peer {
    device: Device,
    description: String,
}

/// Turns a panic payload into a message.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs `f`, turning a panic inside burn into `Err`.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(|e| format!("burn {what}: {e}")),
        Err(payload) => Err(format!("burn {what} panicked: {}", panic_message(payload))),
    }
}

/// Creates the shared device with `Device::wgpu_options().device_kind(DefaultDevice)
/// .graphics_api(WgpuBackend::Vulkan).init_with_setup()`, and describes it from the returned
/// `WgpuSetup` (`setup.adapter.get_info()`, `setup.backend`).
fn init_device() -> Result<(Device, String), String> {
    guarded("wgpu init", || {
        let (device, setup) = Device::wgpu_options()
            .device_kind(DeviceKind::DefaultDevice)
            .graphics_api(WgpuBackend::Vulkan)
            .init_with_setup()
            .map_err(|e| e.to_string())?;
        let info = setup.adapter.get_info();
        let f16 = if device.supports_dtype(DType::F16) { "yes" } else { "no" };
        let description = format!(
            "burn 0.22.1 wgpu on {:?} (fusion, autotune): {} ({:?}, driver {} {}), f16: {f16}",
            setup.backend, info.name, info.device_type, info.driver, info.driver_info
        );
        Ok((device, description))
    })
}

/// Checks that every dimension is non-zero.
fn nonzero(what: &str, dims: &[(&str, usize)]) -> Result<(), String> {
    match dims.iter().find(|(_, v)| *v == 0) {
        Some((name, _)) => Err(format!("{what}: {name} must be > 0")),
        None => Ok(()),
    }
}

/// Reads the first element of `t` back to the host (`Tensor::slice` +
/// `Tensor::try_into_vec_as::<f32>`), which also waits for the work that produced it.
fn first_element<const D: usize>(t: Tensor<D>) -> Result<f32, String> {
    let first: [std::ops::Range<usize>; D] = std::array::from_fn(|_| 0..1);
    let values = t.slice(first).try_into_vec_as::<f32>().map_err(|e| e.to_string())?;
    values.first().copied().ok_or_else(|| "empty output".to_string())
}

impl Peer {
    /// Create a burn device on wgpu with the Vulkan graphics API.
    ///
    /// burn API: `Device::wgpu_options().device_kind(DeviceKind::DefaultDevice)
    /// .graphics_api(burn::tensor::wgpu::WgpuBackend::Vulkan).init_with_setup()` (once per
    /// process; later calls share that device).
    pub fn new() -> Result<Peer, String> {
        let (device, description) = DEVICE.get_or_init(init_device).clone()?;
        Ok(Peer { device, description })
    }

    /// Short description of the device/backend for printing (adapter name, device type and
    /// driver from `WgpuSetup::adapter.get_info()`, and `Device::supports_dtype(DType::F16)`).
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// The tensor dtype for `f16`: `DType::F16` if `Device::supports_dtype(DType::F16)`,
    /// otherwise an error; `DType::F32` for `!f16`.
    fn dtype(&self, f16: bool) -> Result<DType, String> {
        if !f16 {
            Ok(DType::F32)
        } else if self.device.supports_dtype(DType::F16) {
            Ok(DType::F16)
        } else {
            Err("f16 is not supported by burn on this device (Device::supports_dtype(F16) is false)".into())
        }
    }

    /// A random tensor, uniform in [-1, 1): `Tensor::random(shape, Distribution::Uniform(-1, 1),
    /// (&device, dtype))`.
    fn random<const D: usize>(&self, shape: [usize; D], dtype: DType) -> Tensor<D> {
        Tensor::<D>::random(shape, Distribution::Uniform(-1.0, 1.0), (&self.device, dtype))
    }

    /// Maps a device error (`ExecutionError`) to a message.
    fn sync(&self) -> Result<(), String> {
        self.device.sync().map_err(|e| format!("device sync: {e}"))
    }

    fn flush(&self) -> Result<(), String> {
        self.device.flush().map_err(|e| format!("device flush: {e}"))
    }

    /// The shared timing protocol (see the module docs): warm-up (autotune + compile), flush,
    /// sync and a readback; then `iters` runs, each output held across `Device::flush`, timed
    /// up to `Device::sync`; then a finiteness check on one element of the last output.
    /// Returns seconds per run.
    fn time<const D: usize>(&self, iters: usize, mut op: impl FnMut() -> Tensor<D>) -> Result<f64, String> {
        let iters = iters.max(1);

        let warm = op();
        self.flush()?;
        self.sync()?;
        let v = first_element(warm)?;
        if !v.is_finite() {
            return Err(format!("warm-up output is not finite ({v})"));
        }

        let start = Instant::now();
        let mut last = None;
        for _ in 0..iters {
            let out = op();
            // Hand the queued work to the runtime while its result is still alive.
            self.flush()?;
            last = Some(out);
        }
        self.sync()?;
        let secs = start.elapsed().as_secs_f64() / iters as f64;

        let out = last.ok_or_else(|| "no timed run".to_string())?;
        let v = first_element(out)?;
        if !v.is_finite() {
            return Err(format!("output is not finite ({v})"));
        }
        Ok(secs)
    }

    /// `[m, k] × [k, n]` matrix product.
    ///
    /// burn API: `Tensor::<2>::matmul` (CubeCL matmul, kernel chosen by autotune).
    pub fn matmul(&self, m: usize, n: usize, k: usize, f16: bool, iters: usize) -> Result<f64, String> {
        nonzero("matmul", &[("m", m), ("n", n), ("k", k)])?;
        guarded("matmul", || {
            let dtype = self.dtype(f16)?;
            let a = self.random([m, k], dtype);
            let b = self.random([k, n], dtype);
            self.time(iters, || a.clone().matmul(b.clone()))
        })
    }

    /// 2-D convolution of an NCHW input `[batch, cin, h, w]` with a `[cout, cin, kernel, kernel]`
    /// weight and a `[cout]` bias, square stride and zero padding, dilation 1, groups 1.
    ///
    /// burn API: `burn::tensor::module::conv2d(x, weight, Some(bias),
    /// ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1))` (CubeCL conv, autotuned).
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &self,
        batch: usize,
        h: usize,
        w: usize,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        f16: bool,
        iters: usize,
    ) -> Result<f64, String> {
        nonzero(
            "conv2d",
            &[("batch", batch), ("h", h), ("w", w), ("cin", cin), ("cout", cout), ("kernel", kernel), ("stride", stride)],
        )?;
        if h + 2 * padding < kernel || w + 2 * padding < kernel {
            return Err(format!("conv2d: kernel {kernel} larger than the padded {h}x{w} input (padding {padding})"));
        }
        guarded("conv2d", || {
            let dtype = self.dtype(f16)?;
            let x = self.random([batch, cin, h, w], dtype);
            let weight = self.random([cout, cin, kernel, kernel], dtype);
            let bias = self.random([cout], dtype);
            let options = ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1);
            self.time(iters, || conv2d(x.clone(), weight.clone(), Some(bias.clone()), options.clone()))
        })
    }

    /// Group normalisation of an NCHW input `[batch, channels, h, w]` over `groups` groups,
    /// affine (random per-channel gamma and beta), eps 1e-6.
    ///
    /// burn API: `burn::nn::GroupNormConfig::new(groups, channels).with_epsilon(1e-6).init(&device)`
    /// with `gamma`/`beta` replaced by `Param::from_tensor` of random tensors in the requested
    /// dtype, then `GroupNorm::forward`. burn has no dedicated group-norm kernel: `forward`
    /// composes `reshape`, `mean_dim`, `sub`, `square`, `add_scalar`, `sqrt`, `div`, `mul`, `add`
    /// (statistics widened to f32 for f16 inputs), which the fusion backend fuses.
    #[allow(clippy::too_many_arguments)]
    pub fn group_norm(
        &self,
        batch: usize,
        channels: usize,
        h: usize,
        w: usize,
        groups: usize,
        f16: bool,
        iters: usize,
    ) -> Result<f64, String> {
        nonzero("group_norm", &[("batch", batch), ("channels", channels), ("h", h), ("w", w), ("groups", groups)])?;
        if !channels.is_multiple_of(groups) {
            return Err(format!("group_norm: {channels} channels are not divisible into {groups} groups"));
        }
        guarded("group_norm", || {
            let dtype = self.dtype(f16)?;
            let x = self.random([batch, channels, h, w], dtype);
            let mut norm: GroupNorm =
                GroupNormConfig::new(groups, channels).with_epsilon(GROUP_NORM_EPS).init(&self.device);
            norm.gamma = Some(Param::from_tensor(self.random([channels], dtype)));
            norm.beta = Some(Param::from_tensor(self.random([channels], dtype)));
            self.time(iters, || norm.forward(x.clone()))
        })
    }

    /// Layer normalisation of a `[rows, cols]` input over its last dimension, affine (random
    /// gamma and beta), eps 1e-5.
    ///
    /// burn API: `burn::tensor::module::layer_norm(x, gamma, Some(beta), 1e-5)` (the backend's
    /// `ModuleOps::layer_norm`; on CubeCL this is the default composition `mean_dim`/`sub`/`mul`/
    /// `sqrt`/`div`/`mul`/`add`, fused by the fusion backend).
    pub fn layer_norm(&self, rows: usize, cols: usize, f16: bool, iters: usize) -> Result<f64, String> {
        nonzero("layer_norm", &[("rows", rows), ("cols", cols)])?;
        guarded("layer_norm", || {
            let dtype = self.dtype(f16)?;
            let x = self.random([rows, cols], dtype);
            let gamma = self.random([cols], dtype);
            let beta = self.random([cols], dtype);
            self.time(iters, || layer_norm(x.clone(), gamma.clone(), Some(beta.clone()), LAYER_NORM_EPS))
        })
    }

    /// Scaled dot-product attention, q/k/v `[batch, heads, seq, head_dim]`, no mask, scale
    /// 1/sqrt(head_dim).
    ///
    /// burn API: `burn::tensor::module::attention(q, k, v, None, None,
    /// AttentionModuleOptions::default())`. With no mask/bias/softcap/custom scale, CubeCL's
    /// attention autotunes between its flash-attention kernels and the unfused fallback
    /// (`softmax(q kᵀ / sqrt(d)) v` as separate kernels); a flash config that cannot launch on
    /// the shape degrades to the fallback.
    pub fn attention(&self, batch: usize, heads: usize, seq: usize, head_dim: usize, f16: bool, iters: usize) -> Result<f64, String> {
        nonzero("attention", &[("batch", batch), ("heads", heads), ("seq", seq), ("head_dim", head_dim)])?;
        guarded("attention", || {
            let dtype = self.dtype(f16)?;
            let q = self.random([batch, heads, seq, head_dim], dtype);
            let k = self.random([batch, heads, seq, head_dim], dtype);
            let v = self.random([batch, heads, seq, head_dim], dtype);
            self.time(iters, || {
                attention(q.clone(), k.clone(), v.clone(), None, None, AttentionModuleOptions::default())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use burn::tensor::activation::softmax;
    use std::sync::Mutex;

    /// Reference for [`Peer::attention`]'s fused op, composed from basic tensor ops:
    /// `softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(1/sqrt(d)), 3).matmul(v)`.
    fn attention_reference(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let d = q.dims()[3] as f64;
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / d.sqrt());
        softmax(scores, 3).matmul(v)
    }

    /// The tests share one device; run them one at a time so the printed times are not
    /// disturbed by each other.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn peer() -> Peer {
        match Peer::new() {
            Ok(p) => p,
            Err(e) => panic!("Peer::new failed: {e}"),
        }
    }

    /// Runs `f` once with iters = 2, checks the result, and prints the steady-state time and
    /// the whole call's time (the difference is warm-up: autotune, compile, input generation).
    fn check(name: &str, f: impl Fn(&Peer, bool) -> Result<f64, String>) {
        let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let p = peer();
        println!("peer: {}", p.describe());
        let start = Instant::now();
        let secs = match f(&p, false) {
            Ok(s) => s,
            Err(e) => panic!("{name} f32 failed: {e}"),
        };
        let total = start.elapsed().as_secs_f64();
        println!("{name} f32: {:.3} ms/iter, whole call {:.3} s", secs * 1e3, total);
        assert!(secs.is_finite() && secs > 0.0, "{name}: {secs}");

        let start = Instant::now();
        match f(&p, true) {
            Ok(s) => {
                let total = start.elapsed().as_secs_f64();
                println!("{name} f16: {:.3} ms/iter, whole call {:.3} s", s * 1e3, total);
                assert!(s.is_finite() && s > 0.0, "{name} f16: {s}");
            }
            Err(e) => println!("{name} f16: unsupported: {e}"),
        }
    }

    #[test]
    fn peer_matmul_tiny() {
        check("matmul 64x64x64", |p, f16| p.matmul(64, 64, 64, f16, 2));
    }

    #[test]
    fn peer_conv2d_tiny() {
        check("conv2d 1x8x16x16 -> 8, 3x3", |p, f16| p.conv2d(1, 16, 16, 8, 8, 3, 1, 1, f16, 2));
    }

    #[test]
    fn peer_group_norm_tiny() {
        check("group_norm 1x32x8x8 g=8", |p, f16| p.group_norm(1, 32, 8, 8, 8, f16, 2));
    }

    #[test]
    fn peer_layer_norm_tiny() {
        check("layer_norm 16x64", |p, f16| p.layer_norm(16, 64, f16, 2));
    }

    #[test]
    fn peer_attention_tiny() {
        check("attention 1x2x16x8", |p, f16| p.attention(1, 2, 16, 8, f16, 2));
    }

    #[test]
    fn peer_rejects_bad_shapes() {
        let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let p = peer();
        assert!(p.matmul(0, 4, 4, false, 1).is_err());
        assert!(p.group_norm(1, 30, 4, 4, 8, false, 1).is_err());
        assert!(p.conv2d(1, 2, 2, 4, 4, 5, 1, 0, false, 1).is_err());
    }

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12_345);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn read(t: Tensor<2>) -> Vec<f32> {
        match t.try_into_vec_as::<f32>() {
            Ok(v) => v,
            Err(e) => panic!("readback failed: {e}"),
        }
    }

    #[test]
    fn peer_matmul_matches_cpu() {
        let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let p = peer();
        let (m, n, k) = (16, 16, 16);
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let ta = Tensor::<2>::from_data(TensorData::new(a.clone(), [m, k]), &p.device);
        let tb = Tensor::<2>::from_data(TensorData::new(b.clone(), [k, n]), &p.device);
        let got = read(ta.matmul(tb));
        let mut max_err = 0f64;
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k).map(|l| a[i * k + l] as f64 * b[l * n + j] as f64).sum();
                max_err = max_err.max((got[i * n + j] as f64 - want).abs());
            }
        }
        println!("matmul 16x16x16 vs CPU: max abs error {max_err:.2e}");
        assert!(max_err < 1e-4, "max abs error {max_err}");
    }

    #[test]
    fn peer_attention_matches_composition() {
        let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let p = peer();
        let shape = [1, 2, 16, 8];
        let q = p.random(shape, DType::F32);
        let k = p.random(shape, DType::F32);
        let v = p.random(shape, DType::F32);
        let fused = attention(q.clone(), k.clone(), v.clone(), None, None, AttentionModuleOptions::default());
        let reference = attention_reference(q, k, v);
        let fused = read(fused.reshape([32, 8]));
        let reference = read(reference.reshape([32, 8]));
        let max_err = fused.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("attention 1x2x16x8 fused vs softmax(qk^T/sqrt d)v: max abs error {max_err:.2e}");
        assert!(max_err < 1e-4, "max abs error {max_err}");
    }
}

