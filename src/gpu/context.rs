//! The [`Gpu`] context: adapter + device + queue, created the same way natively and in the
//! browser, with typed error reporting and memory accounting.

use std::fmt;
use std::sync::{Arc, Mutex};

use super::arena::{Arena, ArenaConfig, ArenaLayout};
use super::error::{GpuError, GpuResult};
use super::memory::{MemorySnapshot, MemoryStats};
use super::pipeline::PipelineCache;
use super::tensor::{DType, GpuBuffer, Shape, Tensor, TENSOR_ALIGN};

/// Which family of GEMM kernels to use where both exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelPreference {
    /// Workgroup-memory tiling on GPUs; register-only kernels on CPU (software) adapters,
    /// where barriers are expensive.
    #[default]
    Auto,
    /// Register-blocked kernels without workgroup memory.
    Registers,
    /// Workgroup-memory tiled kernels.
    Tiled,
}

/// How to pick and configure the device.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    pub power_preference: wgpu::PowerPreference,
    /// Request a software / fallback adapter (lavapipe, SwiftShader, WARP).
    pub force_fallback_adapter: bool,
    /// Use `shader-f16` when the adapter offers it.
    pub allow_f16: bool,
    /// Cap `max_storage_buffer_binding_size` below the adapter's maximum (tests use this to
    /// prove that ops split work over bindings; users to emulate a smaller browser device).
    pub max_storage_binding_size: Option<u64>,
    /// Cap `max_buffer_size` below the adapter's maximum.
    pub max_buffer_size: Option<u64>,
    /// Round adapter limits down to the tiers browsers expose (wgpu's `apply_limit_buckets`).
    pub browser_limit_buckets: bool,
    pub kernels: KernelPreference,
    /// Refuse allocations past this many live bytes with [`GpuError::OutOfMemory`]: a GPU
    /// with that much memory (emulates a smaller device; tests run out of memory with it).
    pub memory_cap: Option<u64>,
    /// Sub-allocate activations from arena chunks (`crate::gpu::ArenaLayout`); default on
    /// (`ANIMATEDIFF_ARENA=0` natively: one buffer per activation, for debugging).
    pub arena: ArenaConfig,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            allow_f16: true,
            max_storage_binding_size: None,
            max_buffer_size: None,
            browser_limit_buckets: false,
            kernels: KernelPreference::Auto,
            memory_cap: None,
            arena: ArenaConfig::from_env(),
        }
    }
}

/// What the device can do, as negotiated at creation.
#[derive(Debug, Clone)]
pub struct GpuInfo {
    pub adapter_name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    /// `shader-f16` was offered *and* enabled: kernels may use `enable f16;`.
    pub shader_f16: bool,
    /// Pass-level timestamp queries are enabled (benchmarks).
    pub timestamp_query: bool,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    pub min_storage_buffer_offset_alignment: u32,
    /// GEMM-like ops use workgroup-memory tiled kernels (else register-only ones).
    pub tiled_kernels: bool,
    /// Subgroup operations are enabled and every subgroup has exactly this many invocations
    /// (lavapipe: 8, its SIMD width); 0 when subgroups are unavailable or vary in size.
    pub subgroup_size: u32,
}

impl fmt::Display for GpuInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.adapter_name.is_empty() { "(unnamed adapter)" } else { &self.adapter_name };
        writeln!(f, "adapter: {name} [{} via {}; {} {}]", self.device_type, self.backend, self.driver, self.driver_info)?;
        writeln!(
            f,
            "shader-f16: {}, timestamp-query: {}, subgroup size: {}, GEMM kernels: {}",
            self.shader_f16,
            self.timestamp_query,
            if self.subgroup_size > 0 { self.subgroup_size.to_string() } else { "-".into() },
            if self.tiled_kernels { "workgroup-tiled" } else { "register-blocked" }
        )?;
        writeln!(
            f,
            "max buffer {} MiB, max storage binding {} MiB, workgroup storage {} KiB, {} invocations/workgroup, {} workgroups/dim, {} storage buffers/stage",
            self.max_buffer_size >> 20,
            self.max_storage_buffer_binding_size >> 20,
            self.max_compute_workgroup_storage_size >> 10,
            self.max_compute_invocations_per_workgroup,
            self.max_compute_workgroups_per_dimension,
            self.max_storage_buffers_per_shader_stage,
        )
    }
}

/// Errors seen by wgpu's callbacks, waiting to be reported at the next sync point.
#[derive(Default)]
pub(crate) struct Health {
    lost: Mutex<Option<GpuError>>,
    pending: Mutex<Option<GpuError>>,
}

impl Health {
    fn record(&self, err: GpuError) {
        if let Ok(mut slot) = self.pending.lock() {
            // Keep the first error: later ones are usually consequences of it.
            slot.get_or_insert(err);
        }
    }

    fn lose(&self, err: GpuError) {
        if let Ok(mut slot) = self.lost.lock() {
            slot.get_or_insert(err);
        }
    }

    fn check(&self) -> GpuResult<()> {
        if let Some(err) = self.lost.lock().ok().and_then(|s| s.clone()) {
            return Err(err);
        }
        match self.pending.lock().ok().and_then(|mut s| s.take()) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// The GPU context. All GPU work of the crate goes through one of these.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: GpuInfo,
    limits: wgpu::Limits,
    health: Arc<Health>,
    memory: Arc<MemoryStats>,
    pub(crate) pipelines: PipelineCache,
    /// [`ZERO_SLOTS`] × 256 zero bytes, bound where a kernel's optional input (e.g. bias) is
    /// absent: distinct ranges, since two writable bindings may not overlap.
    zeros: Vec<Tensor>,
    arena: Option<Arc<Arena>>,
    arena_config: ArenaConfig,
    /// The running profile, if any (`Gpu::start_profile`).
    pub(crate) profile: std::sync::Mutex<Option<super::profile::Profile>>,
}

/// Distinct zero tensors a dispatch may bind at once.
pub const ZERO_SLOTS: usize = 4;

impl Gpu {
    /// Create a context on the best adapter. Async on every target; natively, drive it with
    /// `pollster::block_on` (it completes without waiting on the GPU).
    pub async fn new(opts: GpuOptions) -> GpuResult<Gpu> {
        #[cfg(target_arch = "wasm32")]
        let backends = wgpu::Backends::BROWSER_WEBGPU;
        #[cfg(not(target_arch = "wasm32"))]
        let backends = wgpu::Backends::PRIMARY.with_env();

        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            flags: wgpu::InstanceFlags::default().with_env(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: opts.power_preference,
                force_fallback_adapter: opts.force_fallback_adapter,
                compatible_surface: None,
                apply_limit_buckets: opts.browser_limit_buckets,
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;

        let adapter_info = adapter.get_info();
        let offered = adapter.features();
        let limits = requested_limits(&adapter.limits(), &opts);

        let mut features = wgpu::Features::empty();
        let shader_f16 = opts.allow_f16 && offered.contains(wgpu::Features::SHADER_F16);
        if shader_f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        let timestamp_query = offered.contains(wgpu::Features::TIMESTAMP_QUERY);
        if timestamp_query {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        // Subgroups of one fixed size (software adapters: the SIMD width) let the register
        // kernels share loads across a subgroup (`conv2d_sg`). Native only: naga takes the
        // subgroup builtins without WGSL's `enable subgroups;` (which it rejects), browsers
        // require it.
        let subgroup_size = if cfg!(not(target_arch = "wasm32"))
            && offered.contains(wgpu::Features::SUBGROUP)
            && adapter_info.subgroup_min_size == adapter_info.subgroup_max_size
        {
            features |= wgpu::Features::SUBGROUP;
            adapter_info.subgroup_min_size
        } else {
            0
        };

        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("animatediff"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice(e.to_string()))?;

        let health = Arc::new(Health::default());
        {
            let health = health.clone();
            device.on_uncaptured_error(Arc::new(move |e| health.record(GpuError::from_wgpu(e, None))));
        }
        {
            let health = health.clone();
            device.set_device_lost_callback(move |reason, message| {
                let reason = match reason {
                    wgpu::DeviceLostReason::Destroyed => "destroyed",
                    _ => "unknown",
                };
                health.lose(GpuError::DeviceLost { reason: reason.to_string(), message });
            });
        }

        let info = GpuInfo {
            adapter_name: adapter_info.name.clone(),
            backend: format!("{:?}", adapter_info.backend),
            device_type: format!("{:?}", adapter_info.device_type),
            driver: adapter_info.driver.clone(),
            driver_info: adapter_info.driver_info.clone(),
            shader_f16,
            timestamp_query,
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
            min_storage_buffer_offset_alignment: limits.min_storage_buffer_offset_alignment,
            tiled_kernels: match opts.kernels {
                KernelPreference::Auto => adapter_info.device_type != wgpu::DeviceType::Cpu,
                KernelPreference::Registers => false,
                KernelPreference::Tiled => true,
            },
            subgroup_size,
        };

        let memory = Arc::new(MemoryStats::default());
        memory.set_memory_cap(opts.memory_cap);
        let arena_config = opts.arena;
        let rw = arena_config.enabled();
        let zeros_buf = Arc::new(create_raw_buffer(&device, &memory, TENSOR_ALIGN * ZERO_SLOTS as u64, storage_usage(), "zeros", rw));
        let zeros = (0..ZERO_SLOTS as u64)
            .map(|i| Tensor::view(zeros_buf.clone(), i * TENSOR_ALIGN, [64], DType::F32).ok_or_else(|| GpuError::shape("Gpu::new", "zeros buffer too small")))
            .collect::<GpuResult<Vec<_>>>()?;
        // Newly created buffers are zero-initialised by WebGPU / wgpu.
        let arena = rw.then(|| Arc::new(Arena::new(arena_config.chunk_bytes, limits.max_buffer_size)));

        let gpu = Gpu { device, queue, info, limits, health, memory, pipelines: PipelineCache::default(), zeros, arena, arena_config, profile: Default::default() };
        gpu.check()?;
        Ok(gpu)
    }

    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Report (and clear) the first error wgpu reported since the last check, or the device
    /// loss if it happened. Called at every synchronisation point.
    pub fn check(&self) -> GpuResult<()> {
        // Natively, device-lost and map callbacks fire inside `poll`; a non-blocking poll
        // lets a pending loss be reported as such rather than as a later validation error.
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::Poll);
        self.health.check()
    }

    pub fn memory(&self) -> MemorySnapshot {
        self.memory.snapshot()
    }

    /// The live counters themselves (event tracing for the memory planner's tests).
    pub fn memory_stats(&self) -> &MemoryStats {
        &self.memory
    }

    pub fn reset_peak_memory(&self) {
        self.memory.reset_peak();
    }

    /// Whether the device was lost (or destroyed). Natively a pending loss is noticed at the
    /// next poll; in browsers once the `device.lost` promise has resolved (yield to the event
    /// loop first).
    pub fn is_lost(&self) -> bool {
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::Poll);
        self.health.lost.lock().map(|s| s.is_some()).unwrap_or(true)
    }

    /// Destroy the device (simulates device loss; the context is unusable afterwards).
    pub fn destroy(&self) {
        self.device.destroy();
    }

    /// 256 zero bytes; `slot` < [`ZERO_SLOTS`] picks one of distinct ranges (a dispatch binding
    /// several absent inputs gives each its own).
    pub(crate) fn zeros(&self, slot: usize) -> &Tensor {
        &self.zeros[slot.min(ZERO_SLOTS - 1)]
    }

    /// The arena this device sub-allocates activations from ([`ArenaConfig::OFF`]: none).
    pub fn arena_config(&self) -> ArenaConfig {
        self.arena_config
    }

    /// The arena's placement state now (`None`: arena off): the memory plan of a run on this
    /// device continues from it (`crate::plan::plan_after`).
    pub fn arena_layout(&self) -> Option<ArenaLayout> {
        self.arena.as_ref().map(|a| a.layout())
    }

    /// Sizes of the arena chunks alive now.
    pub fn arena_chunks(&self) -> Vec<u64> {
        self.arena.as_ref().map(|a| a.chunk_sizes()).unwrap_or_default()
    }

    /// Kernels declare every storage binding `read_write` (the arena is on).
    pub(crate) fn rw_bindings(&self) -> bool {
        self.arena.is_some()
    }

    /// Allocate `size` bytes for an activation: a range of an arena chunk when the arena is
    /// on, else a buffer of its own.
    pub fn create_activation(&self, size: u64, label: &str) -> GpuResult<Arc<GpuBuffer>> {
        let Some(arena) = &self.arena else { return self.create_buffer(size, label) };
        self.check()?;
        let size = size.max(4).next_multiple_of(4);
        let slot = arena.alloc(size, |chunk| {
            if let Err((live, cap)) = self.memory.admit(chunk) {
                return Err(GpuError::OutOfMemory { context: Some(format!("arena chunk of {chunk} bytes for {label:?} ({live} bytes live, memory cap {cap})")) });
            }
            let buffer = self.device.create_buffer(&wgpu::BufferDescriptor { label: Some("arena"), size: chunk, usage: storage_usage(), mapped_at_creation: false });
            Ok((buffer, self.memory.clone()))
        })?;
        match slot {
            Some(slot) => {
                self.memory.on_sub_alloc(size);
                Ok(Arc::new(GpuBuffer::sub(slot, size, label.to_string())))
            }
            None => Err(GpuError::LimitExceeded { what: format!("buffer {label:?}"), requested: size, limit: self.limits.max_buffer_size, limit_name: "max_buffer_size" }),
        }
    }

    /// Allocate a storage buffer of its own of at least `size` bytes (counted in
    /// [`Gpu::memory`]): weights, and activations when the arena is off.
    pub fn create_buffer(&self, size: u64, label: &str) -> GpuResult<Arc<GpuBuffer>> {
        self.check()?;
        let size = size.max(4).next_multiple_of(4);
        if size > self.limits.max_buffer_size {
            return Err(GpuError::LimitExceeded {
                what: format!("buffer {label:?}"),
                requested: size,
                limit: self.limits.max_buffer_size,
                limit_name: "max_buffer_size",
            });
        }
        if let Err((live, cap)) = self.memory.admit(size) {
            return Err(GpuError::OutOfMemory { context: Some(format!("buffer {label:?} of {size} bytes ({live} bytes live, memory cap {cap})")) });
        }
        Ok(Arc::new(create_raw_buffer(&self.device, &self.memory, size, storage_usage(), label, self.rw_bindings())))
    }

    /// A new activation tensor: in the arena when it is on (contents undefined: a reused
    /// range holds what an earlier tensor left there), else in its own buffer (zero).
    pub fn empty(&self, shape: impl Into<Shape>, dtype: DType, label: &str) -> GpuResult<Tensor> {
        self.empty_in(shape.into(), dtype, label, false)
    }

    /// A new tensor in a buffer of its own (contents zero): weights, which live as long as
    /// their model and are not part of the arena.
    pub fn empty_weight(&self, shape: impl Into<Shape>, dtype: DType, label: &str) -> GpuResult<Tensor> {
        self.empty_in(shape.into(), dtype, label, true)
    }

    fn empty_in(&self, shape: Shape, dtype: DType, label: &str, dedicated: bool) -> GpuResult<Tensor> {
        let bytes = dtype.storage_bytes(shape.numel());
        let buf = if dedicated { self.create_buffer(bytes, label)? } else { self.create_activation(bytes, label)? };
        Tensor::view(buf, 0, shape, dtype).ok_or_else(|| GpuError::shape("Gpu::empty", "buffer too small"))
    }

    /// Upload raw bytes into a new activation tensor ([`Gpu::empty`]). Data goes through
    /// `queue.write_buffer` in chunks, never through a mapped-at-creation allocation (which
    /// can throw in browsers).
    pub fn upload_bytes(&self, bytes: &[u8], shape: impl Into<Shape>, dtype: DType, label: &str) -> GpuResult<Tensor> {
        self.upload_bytes_in(bytes, shape.into(), dtype, label, false)
    }

    /// [`Gpu::upload_bytes`] into a weight buffer of its own ([`Gpu::empty_weight`]).
    pub fn upload_weight_bytes(&self, bytes: &[u8], shape: impl Into<Shape>, dtype: DType, label: &str) -> GpuResult<Tensor> {
        self.upload_bytes_in(bytes, shape.into(), dtype, label, true)
    }

    fn upload_bytes_in(&self, bytes: &[u8], shape: Shape, dtype: DType, label: &str, dedicated: bool) -> GpuResult<Tensor> {
        let want = dtype.storage_bytes(shape.numel());
        if bytes.len() as u64 != want {
            return Err(GpuError::shape(
                "upload",
                format!("{label}: {} bytes given, {dtype} {shape} needs {want}", bytes.len()),
            ));
        }
        let t = self.empty_in(shape, dtype, label, dedicated)?;
        self.write(&t, 0, bytes)?;
        Ok(t)
    }

    /// Upload f32 values.
    pub fn upload_f32(&self, data: &[f32], shape: impl Into<Shape>, label: &str) -> GpuResult<Tensor> {
        self.upload_bytes(bytemuck::cast_slice(data), shape, DType::F32, label)
    }

    /// Upload f16 values (an odd count is padded to whole 32-bit words).
    pub fn upload_f16(&self, data: &[half::f16], shape: impl Into<Shape>, label: &str) -> GpuResult<Tensor> {
        self.upload_f16_in(data, shape.into(), label, false)
    }

    /// [`Gpu::upload_f16`] into a weight buffer of its own.
    pub fn upload_weight_f16(&self, data: &[half::f16], shape: impl Into<Shape>, label: &str) -> GpuResult<Tensor> {
        self.upload_f16_in(data, shape.into(), label, true)
    }

    fn upload_f16_in(&self, data: &[half::f16], shape: Shape, label: &str, dedicated: bool) -> GpuResult<Tensor> {
        if data.len().is_multiple_of(2) {
            return self.upload_bytes_in(bytemuck::cast_slice(data), shape, DType::F16, label, dedicated);
        }
        let mut padded = data.to_vec();
        padded.push(half::f16::ZERO);
        self.upload_bytes_in(bytemuck::cast_slice(&padded), shape, DType::F16, label, dedicated)
    }

    /// Upload f32 values converted to f16 storage.
    pub fn upload_f32_as_f16(&self, data: &[f32], shape: impl Into<Shape>, label: &str) -> GpuResult<Tensor> {
        let halves: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
        self.upload_f16(&halves, shape, label)
    }

    /// Upload f32 values into a tensor of float storage type `dtype` (f32 or f16).
    pub fn upload_f32_as(&self, data: &[f32], shape: impl Into<Shape>, dtype: DType, label: &str) -> GpuResult<Tensor> {
        self.upload_f32_as_in(data, shape.into(), dtype, label, false)
    }

    /// [`Gpu::upload_f32_as`] into a weight buffer of its own.
    pub fn upload_weight_f32_as(&self, data: &[f32], shape: impl Into<Shape>, dtype: DType, label: &str) -> GpuResult<Tensor> {
        self.upload_f32_as_in(data, shape.into(), dtype, label, true)
    }

    fn upload_f32_as_in(&self, data: &[f32], shape: Shape, dtype: DType, label: &str, dedicated: bool) -> GpuResult<Tensor> {
        match dtype {
            DType::F32 => self.upload_bytes_in(bytemuck::cast_slice(data), shape, DType::F32, label, dedicated),
            DType::F16 => {
                let halves: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
                self.upload_f16_in(&halves, shape, label, dedicated)
            }
            other => Err(GpuError::shape("upload", format!("{label}: f32 data cannot be stored as {other}"))),
        }
    }

    /// Write `bytes` into `tensor` at byte offset `at` (chunked, 4-byte multiples).
    pub fn write(&self, tensor: &Tensor, at: u64, bytes: &[u8]) -> GpuResult<()> {
        const CHUNK: usize = 16 << 20;
        let end = at + bytes.len() as u64;
        if end > tensor.size_bytes() || !at.is_multiple_of(4) {
            return Err(GpuError::shape(
                "write",
                format!("{} bytes at {at} do not fit {tensor:?} ({} bytes)", bytes.len(), tensor.size_bytes()),
            ));
        }
        let mut off = tensor.device_offset() + at;
        for chunk in bytes.chunks(CHUNK) {
            if chunk.len() % 4 == 0 {
                self.queue.write_buffer(tensor.buffer().raw(), off, chunk);
            } else {
                // write_buffer needs 4-byte multiples; pad the (last) chunk.
                let mut padded = chunk.to_vec();
                padded.resize(chunk.len().next_multiple_of(4), 0);
                self.queue.write_buffer(tensor.buffer().raw(), off, &padded);
            }
            off += chunk.len() as u64;
        }
        self.check()
    }

    /// Largest storage binding, for ops that must split work.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size
    }
}

fn storage_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
}

fn create_raw_buffer(
    device: &wgpu::Device,
    memory: &Arc<MemoryStats>,
    size: u64,
    usage: wgpu::BufferUsages,
    label: &str,
    rw_bindings: bool,
) -> GpuBuffer {
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage,
        mapped_at_creation: false,
    });
    GpuBuffer::new(buffer, size, label.to_string(), memory.clone(), rw_bindings)
}

/// The device limits we ask for: WebGPU defaults, raised to the adapter's maxima for the
/// limits that bound our kernels and buffers, then capped by the options.
fn requested_limits(adapter: &wgpu::Limits, opts: &GpuOptions) -> wgpu::Limits {
    let mut l = wgpu::Limits::default();
    if !l.check_limits(adapter) {
        // Downlevel adapters (e.g. compatibility-mode WebGPU) cannot give the core defaults.
        l = wgpu::Limits::downlevel_defaults();
    }
    l.max_buffer_size = adapter.max_buffer_size;
    l.max_storage_buffer_binding_size = adapter.max_storage_buffer_binding_size;
    l.max_compute_workgroup_storage_size = adapter.max_compute_workgroup_storage_size;
    l.max_compute_invocations_per_workgroup = adapter.max_compute_invocations_per_workgroup;
    l.max_compute_workgroup_size_x = adapter.max_compute_workgroup_size_x;
    l.max_compute_workgroup_size_y = adapter.max_compute_workgroup_size_y;
    l.max_compute_workgroup_size_z = adapter.max_compute_workgroup_size_z;
    l.max_storage_buffers_per_shader_stage = adapter.max_storage_buffers_per_shader_stage;
    if let Some(cap) = opts.max_storage_binding_size {
        l.max_storage_buffer_binding_size = l.max_storage_buffer_binding_size.min(cap.max(1 << 16));
    }
    if let Some(cap) = opts.max_buffer_size {
        l.max_buffer_size = l.max_buffer_size.min(cap.max(1 << 16));
    }
    l
}
