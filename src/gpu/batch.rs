//! Recording kernel dispatches into one command buffer.
//!
//! Bind-group convention for every kernel in `shaders/`: `@binding(0)` is the op's uniform
//! parameter struct, `@binding(1..)` are the tensors in the order the op passes them.

use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::context::Gpu;
use super::dispatch::Grid;
use super::error::{GpuError, GpuResult};
use super::pipeline::Kernel;
use super::profile::EncoderQueries;
use super::tensor::{DType, GpuBuffer, Tensor, TENSOR_ALIGN};

/// A sequence of dispatches submitted together.
///
/// A batch holds every buffer it binds until [`Batch::submit`]: wgpu keeps them alive for the
/// unsubmitted command buffer anyway, so a tensor dropped in the middle of a batch still
/// occupies device memory, and [`Gpu::memory`] must count it until then (the memory plan,
/// `crate::plan`, models the same retention).
pub struct Batch<'g> {
    gpu: &'g Gpu,
    encoder: wgpu::CommandEncoder,
    dispatches: u32,
    held: Vec<Arc<GpuBuffer>>,
    /// Pass timestamps of this encoder's dispatches while a profile runs.
    queries: Option<EncoderQueries>,
}

impl Gpu {
    /// Start recording dispatches.
    pub fn batch(&self, label: &str) -> Batch<'_> {
        let encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        Batch { gpu: self, encoder, dispatches: 0, held: Vec::new(), queries: None }
    }
}

impl<'g> Batch<'g> {
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Record one dispatch of `kernel` over `grid` with uniform `params` and `tensors` bound
    /// at bindings 1, 2, ….
    pub fn dispatch<P: bytemuck::Pod>(&mut self, kernel: &Kernel, params: &P, tensors: &[&Tensor], grid: Grid) -> GpuResult<()> {
        let numbered: Vec<(u32, &Tensor)> = tensors.iter().enumerate().map(|(i, t)| (i as u32 + 1, *t)).collect();
        self.dispatch_at(kernel, params, &numbered, grid)
    }

    /// Like [`Batch::dispatch`] with explicit binding numbers (kernels whose weight snippet
    /// binds at fixed numbers, see `shaders/include/weights_*.wgsl`).
    pub fn dispatch_at<P: bytemuck::Pod>(&mut self, kernel: &Kernel, params: &P, tensors: &[(u32, &Tensor)], grid: Grid) -> GpuResult<()> {
        let max_binding = self.gpu.max_binding();
        for (_, t) in tensors {
            if t.size_bytes() > max_binding {
                return Err(GpuError::LimitExceeded {
                    what: format!("kernel `{}` binding {t:?}", kernel.name),
                    requested: t.size_bytes(),
                    limit: max_binding,
                    limit_name: "max_storage_buffer_binding_size",
                });
            }
        }
        if self.gpu.rw_bindings() {
            // Every storage binding is `read_write` (the arena is on): WebGPU (Dawn) rejects two
            // writable bindings that overlap, so refuse them here too, where lavapipe would not.
            for (i, (bi, a)) in tensors.iter().enumerate() {
                if let Some((bj, b)) = tensors[..i].iter().find(|(_, b)| a.overlaps(b)) {
                    return Err(GpuError::shape(kernel.name, format!("bindings {bj} {b:?} and {bi} {a:?} overlap")));
                }
            }
        }
        if grid.launched() == 0 {
            return Ok(());
        }
        self.flush_dead();
        for (_, t) in tensors {
            self.hold(t);
        }
        // Uniform structs are sized in multiples of 16 bytes in WGSL.
        let mut bytes = bytemuck::bytes_of(params).to_vec();
        bytes.resize(bytes.len().max(16).next_multiple_of(16), 0);
        let uniform = self.gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(kernel.name),
            contents: &bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = Vec::with_capacity(tensors.len() + 1);
        entries.push(wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() });
        for (binding, t) in tensors {
            entries.push(wgpu::BindGroupEntry { binding: *binding, resource: t.binding() });
        }
        let bind_group = self.gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &kernel.layout,
            entries: &entries,
        });
        if self.gpu.profiling() {
            if self.queries.as_ref().is_some_and(|q| !q.has_room()) {
                // The query set is full: submit what is recorded (its timestamps resolved).
                self.submit_part();
            }
            if self.queries.is_none() {
                self.queries = Some(EncoderQueries::new(self.gpu));
            }
        }
        let timestamp_writes = self.queries.as_mut().map(|q| q.next(kernel.name));
        let mut pass = self.encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(kernel.name), timestamp_writes });
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(grid.x, grid.y, grid.z);
        drop(pass);
        self.dispatches += 1;
        Ok(())
    }

    /// Keep `t`'s buffer alive (and counted) until submit.
    fn hold(&mut self, t: &Tensor) {
        if !self.held.iter().any(|b| Arc::ptr_eq(b, t.buffer())) {
            self.held.push(t.buffer().clone());
        }
    }

    /// Submit the commands recorded so far when the buffers only this batch still holds exceed
    /// [`super::MemoryStats::batch_flush_bytes`], releasing them (called before recording a
    /// dispatch or copy; `crate::plan` replays the same rule).
    fn flush_dead(&mut self) {
        let dead: u64 = self.held.iter().filter(|b| Arc::strong_count(b) == 1).map(|b| b.size()).sum();
        if dead <= self.gpu.memory_stats().batch_flush_bytes() {
            return;
        }
        self.submit_part();
        self.held.clear();
    }

    /// Record the resolve of this encoder's profile timestamps, if any (before it is finished).
    fn resolve_timestamps(&mut self) {
        if let Some(q) = self.queries.take() {
            q.resolve(self.gpu, &mut self.encoder);
        }
    }

    /// Submit the commands recorded so far (resolving their profile timestamps) and go on
    /// recording into a new encoder.
    fn submit_part(&mut self) {
        self.resolve_timestamps();
        let next = self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("batch.flushed") });
        let done = std::mem::replace(&mut self.encoder, next);
        self.gpu.queue.submit([done.finish()]);
    }

    /// Submit early now if the buffers only this batch still holds exceed the flush
    /// threshold (as every dispatch does first). Call it right after dropping large consumed
    /// temporaries, before allocating the next output: otherwise the dead buffers still count
    /// while that output is allocated (the memory plan replays the same call).
    pub fn release(&mut self) {
        self.flush_dead();
    }

    pub fn dispatch_count(&self) -> u32 {
        self.dispatches
    }

    /// Copy `src` into `dst` (same byte size).
    pub fn copy(&mut self, src: &Tensor, dst: &Tensor) -> GpuResult<()> {
        if src.size_bytes() != dst.size_bytes() {
            return Err(GpuError::shape("copy", format!("{src:?} and {dst:?} differ in size")));
        }
        self.copy_bytes(src, 0, dst, 0, src.size_bytes())
    }

    /// Copy `bytes` bytes from `src` at byte `src_at` to `dst` at byte `dst_at` (offsets
    /// relative to the tensors; multiples of 4, within both tensors).
    pub fn copy_bytes(&mut self, src: &Tensor, src_at: u64, dst: &Tensor, dst_at: u64, bytes: u64) -> GpuResult<()> {
        let fits = |t: &Tensor, at: u64| at.checked_add(bytes).is_some_and(|end| end <= t.size_bytes());
        if !fits(src, src_at) || !fits(dst, dst_at) || !(src_at | dst_at | bytes).is_multiple_of(4) {
            return Err(GpuError::shape("copy", format!("{bytes} bytes from {src:?}+{src_at} to {dst:?}+{dst_at}")));
        }
        if bytes == 0 {
            return Ok(());
        }
        if src.buffer().raw_key() == dst.buffer().raw_key() {
            return self.copy_within(src, src_at, dst, dst_at, bytes);
        }
        self.flush_dead();
        self.encoder.copy_buffer_to_buffer(src.buffer().raw(), src.device_offset() + src_at, dst.buffer().raw(), dst.device_offset() + dst_at, bytes);
        self.hold(src);
        self.hold(dst);
        Ok(())
    }

    /// [`Batch::copy_bytes`] between two ranges of one device buffer (tensors of one arena
    /// chunk): `copyBufferToBuffer` refuses that, so a kernel copies the words, binding the
    /// 256-byte aligned ranges around source and destination, in pieces within a binding.
    fn copy_within(&mut self, src: &Tensor, src_at: u64, dst: &Tensor, dst_at: u64, bytes: u64) -> GpuResult<()> {
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        struct Params {
            n: u32,
            src_at: u32,
            dst_at: u32,
        }
        const WG: u32 = 256;
        let gpu = self.gpu;
        let kernel = gpu.kernel(&crate::shader!("copy_words"), &super::Spec::new().u32("WG", WG))?;
        // Pieces small enough that each aligned window stays within a binding.
        let piece = (gpu.max_binding() / 2).max(TENSOR_ALIGN) / TENSOR_ALIGN * TENSOR_ALIGN;
        let window = |t: &Tensor, at: u64, len: u64| -> GpuResult<(Tensor, u32)> {
            let start = (t.offset() + at) / TENSOR_ALIGN * TENSOR_ALIGN;
            let words = (t.offset() + at + len - start).div_ceil(4);
            let view = Tensor::view(t.buffer().clone(), start, [words as usize], DType::U32)
                .ok_or_else(|| GpuError::shape("copy", format!("window of {t:?} at {at}")))?;
            Ok((view, ((t.offset() + at - start) / 4) as u32))
        };
        let mut done = 0;
        while done < bytes {
            let len = piece.min(bytes - done);
            let (s, s_at) = window(src, src_at + done, len)?;
            let (d, d_at) = window(dst, dst_at + done, len)?;
            let n = (len / 4) as u32;
            let grid = Grid::for_elements(u64::from(n), WG, gpu.limits().max_compute_workgroups_per_dimension)?;
            self.dispatch(&kernel, &Params { n, src_at: s_at, dst_at: d_at }, &[&s, &d], grid)?;
            done += len;
        }
        Ok(())
    }

    pub(crate) fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        &mut self.encoder
    }

    /// Submit everything recorded. Errors wgpu reported while recording surface here.
    pub fn submit(mut self) -> GpuResult<()> {
        self.gpu.check()?;
        self.resolve_timestamps();
        self.gpu.queue.submit([self.encoder.finish()]);
        drop(self.held);
        self.gpu.check()
    }
}
