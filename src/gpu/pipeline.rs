//! Shader sources, specialisation and the compute-pipeline cache.
//!
//! Kernels live in `shaders/*.wgsl`, one op per file. A kernel is *specialised* by
//! prepending constants and type aliases (`const TILE: u32 = 4u;`, `alias T = f16;`) to its
//! source: plain WGSL that both naga (native) and Tint (browsers) accept, unlike pipeline
//! overrides in `@workgroup_size`, and it lets one file serve f32 and f16 storage.
//! Pipelines are cached by (shader, specialisation).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use super::context::Gpu;
use super::error::{GpuError, GpuResult};

/// Helpers shared by every kernel (linear workgroup index, activations).
const COMMON: &str = include_str!("../../shaders/include/common.wgsl");

/// A WGSL compute shader from `shaders/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShaderDef {
    /// File stem, e.g. `"matmul"`: names the kernel in errors and in the cache.
    pub name: &'static str,
    pub source: &'static str,
    pub entry: &'static str,
    /// Helper snippets from `shaders/include/`, placed before `source`.
    pub includes: &'static [&'static str],
    /// Their names: part of the pipeline-cache key (the same kernel built with
    /// `weights_dense` and `weights_dense4` is two different pipelines).
    pub include_names: &'static [&'static str],
}

/// Declares a [`ShaderDef`] for `shaders/<name>.wgsl` with entry point `main`, optionally
/// preceded by helper snippets `shaders/include/<inc>.wgsl`.
#[macro_export]
macro_rules! shader {
    ($name:literal $(, $inc:literal)*) => {
        $crate::gpu::ShaderDef {
            name: $name,
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $name, ".wgsl")),
            entry: "main",
            includes: &[$(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/include/", $inc, ".wgsl"))),*],
            include_names: &[$($inc),*],
        }
    };
}

/// One specialisation value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpecValue {
    U32(u32),
    I32(i32),
    Bool(bool),
    /// A type alias, e.g. `Type("f16")` → `alias NAME = f16;`.
    Type(&'static str),
}

/// The specialisation of a kernel: named constants / type aliases, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Spec(Vec<(&'static str, SpecValue)>);

impl Spec {
    pub fn new() -> Spec {
        Spec::default()
    }

    pub fn u32(mut self, name: &'static str, v: u32) -> Spec {
        self.0.push((name, SpecValue::U32(v)));
        self
    }

    pub fn i32(mut self, name: &'static str, v: i32) -> Spec {
        self.0.push((name, SpecValue::I32(v)));
        self
    }

    pub fn bool(mut self, name: &'static str, v: bool) -> Spec {
        self.0.push((name, SpecValue::Bool(v)));
        self
    }

    pub fn ty(mut self, name: &'static str, ty: &'static str) -> Spec {
        self.0.push((name, SpecValue::Type(ty)));
        self
    }

    /// Whether the specialisation needs `enable f16;`.
    pub fn uses_f16(&self) -> bool {
        self.0.iter().any(|(_, v)| matches!(v, SpecValue::Type(t) if t.contains("f16")))
    }

    fn prelude(&self) -> String {
        let mut s = String::new();
        if self.uses_f16() {
            s.push_str("enable f16;\n");
        }
        for (name, v) in &self.0 {
            // Writing to a String cannot fail.
            let _ = match v {
                SpecValue::U32(x) => writeln!(s, "const {name}: u32 = {x}u;"),
                SpecValue::I32(x) => writeln!(s, "const {name}: i32 = {x}i;"),
                SpecValue::Bool(x) => writeln!(s, "const {name}: bool = {x};"),
                SpecValue::Type(t) => writeln!(s, "alias {name} = {t};"),
            };
        }
        s
    }
}

/// Full WGSL text of `def` specialised by `spec` (also what the browser compiles).
pub fn compose_source(def: &ShaderDef, spec: &Spec) -> String {
    compose(spec, COMMON, def.includes.iter().copied(), def.source)
}

/// The specialisation prelude, the common helpers, the includes and the kernel, in that order.
fn compose<'a>(spec: &Spec, common: &str, includes: impl IntoIterator<Item = &'a str>, source: &str) -> String {
    let prelude = spec.prelude();
    let mut s = String::with_capacity(prelude.len() + common.len() + source.len() + 64);
    s.push_str(&prelude);
    s.push_str(common);
    for inc in includes {
        s.push('\n');
        s.push_str(inc);
    }
    s.push('\n');
    s.push_str(source);
    s
}

/// Kernel development: with `ANIMATEDIFF_SHADER_DIR` set (native builds), kernels are read
/// from that directory (`<name>.wgsl`, `include/<inc>.wgsl`, as in `shaders/`) when first
/// compiled instead of the copies built into the binary, so a shader edit needs no rebuild.
/// `None` when unset; an unreadable file is an error naming it.
#[cfg(not(target_arch = "wasm32"))]
fn dev_source(def: &ShaderDef, spec: &Spec) -> Option<GpuResult<String>> {
    let dir = std::path::PathBuf::from(std::env::var_os("ANIMATEDIFF_SHADER_DIR")?);
    let read = |path: std::path::PathBuf| {
        std::fs::read_to_string(&path).map_err(|e| GpuError::Internal { context: Some(def.name.into()), message: format!("ANIMATEDIFF_SHADER_DIR: {}: {e}", path.display()) })
    };
    let build = || -> GpuResult<String> {
        let includes = def.include_names.iter().map(|inc| read(dir.join(format!("include/{inc}.wgsl")))).collect::<GpuResult<Vec<_>>>()?;
        let common = read(dir.join("include/common.wgsl"))?;
        Ok(compose(spec, &common, includes.iter().map(String::as_str), &read(dir.join(format!("{}.wgsl", def.name)))?))
    };
    Some(build())
}

#[cfg(target_arch = "wasm32")]
fn dev_source(_: &ShaderDef, _: &Spec) -> Option<GpuResult<String>> {
    None
}

/// A compiled kernel: pipeline plus its (auto-derived) bind group layout.
#[derive(Debug)]
pub struct Kernel {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    pub name: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: &'static str,
    includes: &'static [&'static str],
    entry: &'static str,
    spec: Spec,
}

/// Compiled pipelines by (shader, entry, specialisation).
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<PipelineKey, Arc<Kernel>>>,
}

impl PipelineCache {
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Gpu {
    /// The compiled pipeline for `def` specialised by `spec` (compiled on first use).
    pub fn kernel(&self, def: &ShaderDef, spec: &Spec) -> GpuResult<Arc<Kernel>> {
        let key = PipelineKey { shader: def.name, includes: def.include_names, entry: def.entry, spec: spec.clone() };
        let lock_err = || GpuError::Internal { context: Some(def.name.into()), message: "pipeline cache poisoned".into() };
        if let Some(k) = self.pipelines.map.lock().map_err(|_| lock_err())?.get(&key) {
            return Ok(k.clone());
        }
        if spec.uses_f16() && !self.info().shader_f16 {
            return Err(GpuError::MissingFeature { what: format!("kernel `{}`", def.name), feature: "shader-f16" });
        }
        self.check()?;
        let mut source = match dev_source(def, spec) {
            Some(s) => s?,
            None => compose_source(def, spec),
        };
        if self.rw_bindings() {
            // Arena on: tensors of one arena chunk are bound together, and WebGPU forbids one
            // buffer bound read-only and writable in a dispatch, so every storage binding is
            // declared read_write (the auto-derived layout follows: `read_only: false`). The
            // cache is per device and a device uses one form only, so the key needs no flag.
            source = source.replace("var<storage, read>", "var<storage, read_write>");
        }
        let kernel = self.compile(def, source)?;
        let kernel = Arc::new(kernel);
        self.pipelines.map.lock().map_err(|_| lock_err())?.insert(key, kernel.clone());
        Ok(kernel)
    }

    fn compile(&self, def: &ShaderDef, source: String) -> GpuResult<Kernel> {
        // Natively wgpu validates synchronously, so an error scope tells us right here which
        // shader failed. In the browser the scope would resolve on the event loop; there the
        // error reaches the uncaptured-error handler and the next `check()`.
        #[cfg(not(target_arch = "wasm32"))]
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);

        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(def.name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(def.name),
            layout: None,
            module: &module,
            entry_point: Some(def.entry),
            compilation_options: Default::default(),
            cache: None,
        });

        #[cfg(not(target_arch = "wasm32"))]
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(GpuError::from_wgpu(err, Some(format!("shader `{}`", def.name))));
        }
        let layout = pipeline.get_bind_group_layout(0);
        Ok(Kernel { pipeline, layout, name: def.name })
    }

    /// Number of compiled pipelines (bounded: one per kernel variant).
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.len()
    }
}
