//! wasm-bindgen API for the browser (the page and the npm package build on it).
//!
//! Rules: nothing here may panic (a panic kills the page's module), every GPU call is async
//! (readback is `map_async` + await), and every error reaches JS as a rejected promise with an
//! `Error` whose message names what failed.

mod generator;
mod heap;
mod js;
mod source;
mod sources;

use std::rc::Rc;

use js_sys::{Float32Array, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

pub use generator::{encode_gif, Generator};
use js::{object, Opts, WebError, WebResult};

use crate::gpu::{Gpu, GpuError, GpuOptions, KernelPreference};
use crate::ops;
use crate::selftest::{kernel_suite, linear_selftest};
use crate::DType;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js_err(e: GpuError) -> JsValue {
    JsError::new(&e.to_string()).into()
}

fn kernel_preference(kernels: Option<&str>) -> WebResult<KernelPreference> {
    match kernels {
        None | Some("auto") => Ok(KernelPreference::Auto),
        Some("registers") => Ok(KernelPreference::Registers),
        Some("tiled") => Ok(KernelPreference::Tiled),
        Some(other) => Err(WebError::new("InputError", format!("kernels must be \"auto\", \"registers\" or \"tiled\", got {other:?}"))),
    }
}

/// `{ allowF16?, maxBindingBytes?, kernels?, memoryCapBytes?, arena?, arenaChunkBytes? }` →
/// device options (`arena: false` or `arenaChunkBytes: 0`: one buffer per activation, for
/// debugging; `arenaChunkBytes`: size of a new activation arena chunk, default 16 MiB).
fn gpu_options(options: &JsValue) -> WebResult<GpuOptions> {
    let o = Opts(options);
    o.check_object("options")?;
    Ok(GpuOptions {
        allow_f16: o.boolean("allowF16")?.unwrap_or(true),
        max_storage_binding_size: o.number("maxBindingBytes")?.filter(|b| *b > 0.0).map(|b| b as u64),
        kernels: kernel_preference(o.string("kernels")?.as_deref())?,
        memory_cap: match o.number("memoryCapBytes")? {
            None => None,
            Some(b) if b >= 1.0 => Some(b as u64),
            Some(b) => return Err(WebError::input("memoryCapBytes", format!("must be a positive number of bytes, got {b}"))),
        },
        arena: match (o.boolean("arena")?, o.number("arenaChunkBytes")?) {
            (Some(false), _) => crate::gpu::ArenaConfig::OFF,
            (_, None) => crate::gpu::ArenaConfig::DEFAULT,
            (_, Some(b)) if b.is_finite() && b >= 0.0 => crate::gpu::ArenaConfig { chunk_bytes: b as u64 },
            (_, Some(b)) => return Err(WebError::input("arenaChunkBytes", format!("must be a number of bytes (0: no arena), got {b}"))),
        },
        ..GpuOptions::default()
    })
}

fn info_object(gpu: &Gpu) -> JsValue {
    let i = gpu.info();
    object(&[
        ("adapterName", i.adapter_name.as_str().into()),
        ("backend", i.backend.as_str().into()),
        ("deviceType", i.device_type.as_str().into()),
        ("shaderF16", i.shader_f16.into()),
        ("tiledKernels", i.tiled_kernels.into()),
        ("timestampQuery", i.timestamp_query.into()),
        ("maxBufferSize", (i.max_buffer_size as f64).into()),
        ("maxStorageBufferBindingSize", (i.max_storage_buffer_binding_size as f64).into()),
        ("maxComputeWorkgroupStorageSize", i.max_compute_workgroup_storage_size.into()),
        ("maxComputeInvocationsPerWorkgroup", i.max_compute_invocations_per_workgroup.into()),
        ("maxComputeWorkgroupsPerDimension", i.max_compute_workgroups_per_dimension.into()),
        ("maxStorageBuffersPerShaderStage", i.max_storage_buffers_per_shader_stage.into()),
    ])
}

fn memory_object(gpu: &Gpu) -> JsValue {
    let m = gpu.memory();
    object(&[
        ("liveBytes", (m.live_bytes as f64).into()),
        ("peakBytes", (m.peak_bytes as f64).into()),
        ("liveBuffers", (m.live_buffers as f64).into()),
        ("pipelines", (gpu.pipeline_count() as f64).into()),
        ("wasmHeapBytes", (heap::live_bytes() as f64).into()),
    ])
}

/// A WebGPU device with the adapter's maximum limits (shader-f16 when offered).
#[wasm_bindgen]
pub struct GpuContext {
    gpu: Rc<Gpu>,
}

#[wasm_bindgen]
impl GpuContext {
    /// Create the context. `allowF16 = false` forces the f32 path; `maxBindingBytes` caps the
    /// storage-binding size (to emulate smaller devices); `kernels` is `"auto"` (default:
    /// workgroup-tiled GEMM/attention on GPUs, register-blocked on software adapters),
    /// `"registers"` or `"tiled"`.
    #[wasm_bindgen(unchecked_return_type = "Promise<GpuContext>")]
    pub fn create(
        allow_f16: Option<bool>,
        max_binding_bytes: Option<f64>,
        #[wasm_bindgen(unchecked_param_type = "\"auto\" | \"registers\" | \"tiled\" | undefined")] kernels: Option<String>,
    ) -> Promise {
        let kernels = match kernel_preference(kernels.as_deref()) {
            Ok(k) => k,
            Err(e) => return Promise::reject(&e.to_js()),
        };
        let opts = GpuOptions {
            allow_f16: allow_f16.unwrap_or(true),
            max_storage_binding_size: max_binding_bytes.filter(|b| b.is_finite() && *b > 0.0).map(|b| b as u64),
            kernels,
            ..GpuOptions::default()
        };
        future_to_promise(async move {
            let gpu = Gpu::new(opts).await.map_err(js_err)?;
            Ok(GpuContext { gpu: Rc::new(gpu) }.into())
        })
    }

    /// Adapter, enabled features and limits.
    #[wasm_bindgen(unchecked_return_type = "GpuInfo")]
    pub fn info(&self) -> JsValue {
        info_object(&self.gpu)
    }

    /// GPU memory held by this context: `{ liveBytes, peakBytes, liveBuffers }`.
    #[wasm_bindgen(unchecked_return_type = "GpuMemory")]
    pub fn memory(&self) -> JsValue {
        memory_object(&self.gpu)
    }

    /// `y = x · wᵀ (+ bias)` on the GPU: `x` is `[m, k]`, `w` is `[n, k]` (PyTorch's `[out, in]`),
    /// `bias` is `[n]`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Float32Array>")]
    pub fn linear(&self, x: Vec<f32>, w: Vec<f32>, bias: Option<Vec<f32>>, m: u32, n: u32, k: u32) -> Promise {
        let gpu = self.gpu.clone();
        future_to_promise(async move {
            let (m, n, k) = (m as usize, n as usize, k as usize);
            let xt = gpu.upload_f32(&x, [m, k], "x").map_err(js_err)?;
            let w_kn = ops::linear_weight_from_torch(&w, n, k)
                .ok_or_else(|| js_err(GpuError::shape("linear", format!("w has {} values, [{n}, {k}] needs {}", w.len(), n * k))))?;
            let wt = gpu.upload_f32(&w_kn, [k, n], "w").map_err(js_err)?;
            let bt = match &bias {
                Some(b) => Some(gpu.upload_f32(b, [n], "bias").map_err(js_err)?),
                None => None,
            };
            let yt = gpu.empty([m, n], DType::F32, "y").map_err(js_err)?;
            let mut batch = gpu.batch("linear");
            ops::fill(&mut batch, &yt, f32::NAN).map_err(js_err)?;
            ops::linear(&mut batch, &xt, &wt, bt.as_ref(), &yt).map_err(js_err)?;
            batch.submit().map_err(js_err)?;
            let y = gpu.read_f32(&yt).await.map_err(js_err)?;
            Ok(Float32Array::from(&y[..]).into())
        })
    }

    /// Run the linear kernel on random data and compare with the CPU float64 reference.
    #[wasm_bindgen(js_name = selfTest, unchecked_return_type = "Promise<SelfTestReport>")]
    pub fn self_test(&self, m: u32, n: u32, k: u32, seed: f64) -> Promise {
        let gpu = self.gpu.clone();
        future_to_promise(async move {
            let r = linear_selftest(&gpu, m as usize, n as usize, k as usize, seed as u64).await.map_err(js_err)?;
            Ok(object(&[
                ("m", m.into()),
                ("n", n.into()),
                ("k", k.into()),
                ("flops", (r.flops as f64).into()),
                ("relL2Error", r.rel_l2_error.into()),
                ("maxAbsError", r.max_abs_error.into()),
                ("tolerance", r.tolerance.into()),
                ("passed", r.passed.into()),
            ]))
        })
    }

    /// Run the kernel self-test suite (every op family against CPU float64 references, f32
    /// and — with shader-f16 — f16 storage).
    #[wasm_bindgen(js_name = kernelSuite, unchecked_return_type = "Promise<KernelCheck[]>")]
    pub fn kernel_suite(&self, seed: f64) -> Promise {
        let gpu = self.gpu.clone();
        future_to_promise(async move {
            let checks = kernel_suite(&gpu, seed as u64).await.map_err(js_err)?;
            let out = js_sys::Array::new();
            for c in checks {
                out.push(&object(&[
                    ("name", c.name.as_str().into()),
                    ("dtype", c.dtype.name().into()),
                    ("relL2Error", c.rel_l2_error.into()),
                    ("tolerance", c.tolerance.into()),
                    ("passed", c.passed.into()),
                ]));
            }
            Ok(out.into())
        })
    }

    /// Destroy the device (frees GPU memory; also how tests simulate device loss).
    pub fn destroy(&self) {
        self.gpu.destroy();
    }
}

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
export interface GpuInfo {
  adapterName: string; backend: string; deviceType: string;
  shaderF16: boolean; timestampQuery: boolean; tiledKernels: boolean;
  maxBufferSize: number; maxStorageBufferBindingSize: number;
  maxComputeWorkgroupStorageSize: number; maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupsPerDimension: number; maxStorageBuffersPerShaderStage: number;
}
export interface GpuMemory {
  liveBytes: number; peakBytes: number; liveBuffers: number;
  /** Compute pipelines compiled so far (cached: one per kernel variant). */
  pipelines: number;
  /** Bytes live on the engine's wasm (Rust) heap. */
  wasmHeapBytes: number;
}
export interface KernelCheck {
  name: string; dtype: "f32" | "f16"; relL2Error: number; tolerance: number; passed: boolean;
}
export interface SelfTestReport {
  m: number; n: number; k: number; flops: number;
  relL2Error: number; maxAbsError: number; tolerance: number; passed: boolean;
}
"#;
